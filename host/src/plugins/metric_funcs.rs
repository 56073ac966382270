//! The `metric` interface's functions, each looked up and type-checked in an instance at its
//! first call.
//!
//! wasmtime checks a component function's type once per instance (`get_typed_func`), and the
//! check walks every record, variant and name of the signature: for `result<_, plugin-error>` that
//! is five cases and the `event-error` record, per function. The bindings' `load` checks all six
//! functions of `metric` when an instance is made. Looking each up at its first call instead
//! means creating an accumulator checks `create` alone, and an aggregation that is never saved or
//! merged does not pay for `save` and `merge` at all. (Loading a plugin still checks every export
//! of the contract, once, in its dry run.)

use wasmtime::Store;
use wasmtime::component::{
    ComponentExportIndex, ComponentNamedList, Instance, InstancePre, Lift, Lower, TypedFunc,
};

use crate::plugins::bindings::ratecard::plugin::types::{EventFields, PluginError};

/// The interface a metric plugin exports.
const METRIC_INTERFACE: &str = "ratecard:plugin/metric@0.1.0";

/// Where each function of `metric` is among a component's exports: looked up by name once, at
/// load.
#[derive(Debug)]
pub(crate) struct MetricExports {
    create: ComponentExportIndex,
    reads: ComponentExportIndex,
    update: ComponentExportIndex,
    save: ComponentExportIndex,
    merge: ComponentExportIndex,
    finish: ComponentExportIndex,
}

impl MetricExports {
    pub(crate) fn new<T>(pre: &InstancePre<T>) -> wasmtime::Result<MetricExports> {
        let component = pre.component();
        let interface = component
            .get_export_index(None, METRIC_INTERFACE)
            .ok_or_else(|| wasmtime::format_err!("no exported instance `{METRIC_INTERFACE}`"))?;
        let lookup = |name: &str| {
            component
                .get_export_index(Some(&interface), name)
                .ok_or_else(|| {
                    wasmtime::format_err!("`{METRIC_INTERFACE}` does not have export `{name}`")
                })
        };
        Ok(MetricExports {
            create: lookup("create")?,
            reads: lookup("reads")?,
            update: lookup("update")?,
            save: lookup("save")?,
            merge: lookup("merge")?,
            finish: lookup("finish")?,
        })
    }
}

type Fallible<T> = (Result<T, PluginError>,);

/// One instance's `metric` functions, each type-checked at its first call.
///
/// A parameter of `&'static` type is no restriction: a `TypedFunc` is covariant in its
/// parameters (wasmtime copies them into the guest during the call and keeps nothing), so a
/// stored function takes borrows of any lifetime.
pub(crate) struct MetricFuncs {
    instance: Instance,
    exports: std::sync::Arc<MetricExports>,
    create: Option<TypedFunc<(&'static str,), Fallible<()>>>,
    reads: Option<TypedFunc<(), (EventFields,)>>,
    update: Option<TypedFunc<(&'static [u8],), Fallible<()>>>,
    save: Option<TypedFunc<(), Fallible<Vec<u8>>>>,
    merge: Option<TypedFunc<(&'static [u8],), Fallible<()>>>,
    finish: Option<TypedFunc<(), Fallible<String>>>,
}

/// The function in `slot`, looked up and type-checked first if this is its first call.
fn typed<P, R, T>(
    slot: &mut Option<TypedFunc<P, R>>,
    instance: &Instance,
    store: &mut Store<T>,
    index: &ComponentExportIndex,
) -> wasmtime::Result<TypedFunc<P, R>>
where
    P: ComponentNamedList + Lower,
    R: ComponentNamedList + Lift,
{
    if let Some(func) = slot {
        return Ok(*func);
    }
    let func = instance.get_typed_func::<P, R>(store, index)?;
    *slot = Some(func);
    Ok(func)
}

impl MetricFuncs {
    /// Nothing is looked up yet.
    pub(crate) fn new(instance: Instance, exports: std::sync::Arc<MetricExports>) -> MetricFuncs {
        MetricFuncs {
            instance,
            exports,
            create: None,
            reads: None,
            update: None,
            save: None,
            merge: None,
            finish: None,
        }
    }

    /// Looks up and type-checks every function of `metric` (the dry run at load), naming the
    /// function whose type is not the contract's.
    pub(crate) fn check_types<T>(&mut self, store: &mut Store<T>) -> wasmtime::Result<()> {
        let named = |name: &str| format!("export `{name}` of `{METRIC_INTERFACE}`");
        let exports = std::sync::Arc::clone(&self.exports);
        let instance = self.instance;
        typed(&mut self.create, &instance, store, &exports.create)
            .map_err(|e| e.context(named("create")))?;
        typed(&mut self.reads, &instance, store, &exports.reads)
            .map_err(|e| e.context(named("reads")))?;
        typed(&mut self.update, &instance, store, &exports.update)
            .map_err(|e| e.context(named("update")))?;
        typed(&mut self.save, &instance, store, &exports.save)
            .map_err(|e| e.context(named("save")))?;
        typed(&mut self.merge, &instance, store, &exports.merge)
            .map_err(|e| e.context(named("merge")))?;
        typed(&mut self.finish, &instance, store, &exports.finish)
            .map_err(|e| e.context(named("finish")))?;
        Ok(())
    }

    pub(crate) fn create<T>(
        &mut self,
        store: &mut Store<T>,
        config: &str,
    ) -> wasmtime::Result<Result<(), PluginError>> {
        let func = typed(
            &mut self.create,
            &self.instance,
            store,
            &self.exports.create,
        )?;
        Ok(func.call(store, (config,))?.0)
    }

    pub(crate) fn reads<T>(&mut self, store: &mut Store<T>) -> wasmtime::Result<EventFields> {
        let func = typed(&mut self.reads, &self.instance, store, &self.exports.reads)?;
        Ok(func.call(store, ())?.0)
    }

    pub(crate) fn update<T>(
        &mut self,
        store: &mut Store<T>,
        batch: &[u8],
    ) -> wasmtime::Result<Result<(), PluginError>> {
        let func = typed(
            &mut self.update,
            &self.instance,
            store,
            &self.exports.update,
        )?;
        Ok(func.call(store, (batch,))?.0)
    }

    pub(crate) fn save<T>(
        &mut self,
        store: &mut Store<T>,
    ) -> wasmtime::Result<Result<Vec<u8>, PluginError>> {
        let func = typed(&mut self.save, &self.instance, store, &self.exports.save)?;
        Ok(func.call(store, ())?.0)
    }

    pub(crate) fn merge<T>(
        &mut self,
        store: &mut Store<T>,
        state: &[u8],
    ) -> wasmtime::Result<Result<(), PluginError>> {
        let func = typed(&mut self.merge, &self.instance, store, &self.exports.merge)?;
        Ok(func.call(store, (state,))?.0)
    }

    pub(crate) fn finish<T>(
        &mut self,
        store: &mut Store<T>,
    ) -> wasmtime::Result<Result<String, PluginError>> {
        let func = typed(
            &mut self.finish,
            &self.instance,
            store,
            &self.exports.finish,
        )?;
        Ok(func.call(store, ())?.0)
    }
}
