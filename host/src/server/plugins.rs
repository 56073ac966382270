//! Plugins on the server: components uploaded through the API, checked as `ratecard plugin
//! check` checks them (the contract, the limits, a dry run), kept in the store by
//! `name@version` and sha256, and run once activated: [`ServerPlugins`] is the engine's
//! [`PluginHost`] of the active version of each reference (the pin: a plan naming
//! `p95-bandwidth@1.0.0` runs exactly the component with the activated hash).

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};

use ratecard_engine::plugin::{
    MetricAccumulator, PluginError, PluginHost, PriceRequest, PricedLine,
};
use serde::Serialize;

use super::store::StoredPlugin;
use super::{Server, ServerError};
use crate::plugins::{LoadedPlugin, PluginRuntime};

/// The active plugins, by reference, and the runtime that loads uploads.
pub struct ServerPlugins {
    runtime: PluginRuntime,
    active: RwLock<BTreeMap<String, Arc<LoadedPlugin>>>,
}

impl std::fmt::Debug for ServerPlugins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerPlugins").finish_non_exhaustive()
    }
}

/// What an upload's check found (`POST /v1/plugins`).
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct PluginCheck {
    pub reference: String,
    pub sha256: String,
    pub size: usize,
    pub description: String,
    pub kinds: Vec<String>,
    /// JSON Schema of the plugin's config.
    pub config_schema: serde_json::Value,
    /// The dry run's steps, each passed.
    pub dry_run: Vec<String>,
    /// Whether this version is the one plans run now.
    pub active: bool,
}

impl ServerPlugins {
    pub fn new(runtime: PluginRuntime) -> ServerPlugins {
        ServerPlugins {
            runtime,
            active: RwLock::new(BTreeMap::new()),
        }
    }

    fn lookup(&self, reference: &str) -> Result<Arc<LoadedPlugin>, PluginError> {
        self.active
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(reference)
            .cloned()
            .ok_or_else(|| PluginError::NotFound(reference.to_owned()))
    }

    fn activate(&self, plugin: LoadedPlugin) {
        self.active
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(plugin.reference(), Arc::new(plugin));
    }

    /// Loads a component and dry-runs it with `config` (a plan's config for it; `{}` when
    /// none is given): the report, or why it is refused (every step must pass).
    fn check(
        &self,
        bytes: &[u8],
        config: &serde_json::Value,
    ) -> Result<(LoadedPlugin, PluginCheck), String> {
        let plugin = self.runtime.load(bytes).map_err(|e| e.to_string())?;
        let metadata = plugin.metadata().clone();
        let mut dry_run = Vec::new();
        if metadata.kinds.iter().any(|k| k == "metric") {
            let mut metric = plugin
                .metric(config)
                .map_err(|e| format!("dry run: create: {e}"))?;
            metric
                .update(&[])
                .map_err(|e| format!("dry run: update: {e}"))?;
            let state = metric.save().map_err(|e| format!("dry run: save: {e}"))?;
            metric
                .merge(&state)
                .map_err(|e| format!("dry run: merge: {e}"))?;
            let quantity = metric
                .finish()
                .map_err(|e| format!("dry run: finish: {e}"))?;
            dry_run.push(format!("metric on no events = {quantity}"));
        }
        if metadata.kinds.iter().any(|k| k == "price") {
            let request = crate::plugins::dry_run_request(config.clone());
            let lines = plugin
                .price(&request)
                .map_err(|e| format!("dry run: price: {e}"))?;
            dry_run.push(format!("price of no quantities = {} lines", lines.len()));
        }
        let check = PluginCheck {
            reference: plugin.reference(),
            sha256: plugin.sha256().to_owned(),
            size: plugin.size(),
            description: metadata.description.clone(),
            kinds: metadata.kinds.clone(),
            config_schema: metadata.config_schema.clone(),
            dry_run,
            active: false,
        };
        Ok((plugin, check))
    }
}

impl PluginHost for ServerPlugins {
    fn metric(
        &self,
        plugin: &str,
        config: &serde_json::Value,
    ) -> Result<Box<dyn MetricAccumulator>, PluginError> {
        Ok(Box::new(self.lookup(plugin)?.metric(config)?))
    }

    fn price(&self, plugin: &str, request: &PriceRequest) -> Result<Vec<PricedLine>, PluginError> {
        self.lookup(plugin)?.price(request)
    }
}

impl Server {
    /// Uses `plugins` for uploads and as the plans' plugin host, with the active versions in
    /// the store loaded (each checked against its stored hash).
    pub async fn with_plugins(
        mut self,
        plugins: &'static ServerPlugins,
    ) -> Result<Server, ServerError> {
        for stored in self.store.plugins().await? {
            if !stored.active {
                continue;
            }
            let component = self
                .store
                .plugin_component(&stored.reference, &stored.sha256)
                .await?
                .unwrap_or_default();
            let plugin = plugins.runtime.load(&component).map_err(|e| {
                ServerError::Invalid(format!("stored plugin {}: {e}", stored.reference))
            })?;
            if plugin.sha256() != stored.sha256 {
                return Err(ServerError::Invalid(format!(
                    "stored plugin {}: its component is not the one uploaded",
                    stored.reference
                )));
            }
            plugins.activate(plugin);
        }
        self.plugins = plugins;
        self.plugin_admin = Some(plugins);
        Ok(self)
    }

    fn plugin_admin(&self) -> Result<&'static ServerPlugins, ServerError> {
        self.plugin_admin.ok_or_else(|| {
            ServerError::Invalid("this server runs without a plugin runtime".to_owned())
        })
    }

    /// Checks and stores an uploaded component (not active yet: `activate_plugin`). The dry
    /// run gives it `dry_run_config` (`{}` when `None`), as `ratecard plugin check --config`.
    pub async fn upload_plugin(
        &self,
        component: &[u8],
        dry_run_config: Option<serde_json::Value>,
    ) -> Result<PluginCheck, ServerError> {
        let admin = self.plugin_admin()?;
        let given = dry_run_config.is_some();
        let config = dry_run_config.unwrap_or_else(|| serde_json::json!({}));
        let (_plugin, mut check) = admin.check(component, &config).map_err(|reason| {
            let hint = if given || !reason.starts_with("dry run") {
                String::new()
            } else {
                " (the dry run gave it the config `{}`: upload with `?config=` and the config a plan gives it)".to_owned()
            };
            ServerError::Invalid(format!("the plugin is refused: {reason}{hint}"))
        })?;
        let stored = StoredPlugin {
            reference: check.reference.clone(),
            sha256: check.sha256.clone(),
            description: check.description.clone(),
            kinds: check.kinds.clone(),
            uploaded_at: self.now(),
            active: false,
        };
        self.store
            .add_plugin(&stored, component, self.now())
            .await?;
        check.active = self
            .store
            .plugins()
            .await?
            .iter()
            .any(|p| p.reference == check.reference && p.sha256 == check.sha256 && p.active);
        Ok(check)
    }

    /// The `name@version` a component describes itself as (loaded, not stored).
    pub fn plugin_reference(&self, component: &[u8]) -> Result<String, ServerError> {
        let admin = self.plugin_admin()?;
        let plugin = admin
            .runtime
            .load(component)
            .map_err(|e| ServerError::Invalid(format!("the plugin is refused: {e}")))?;
        Ok(plugin.reference())
    }

    /// Every uploaded plugin version.
    pub async fn plugins_uploaded(&self) -> Result<Vec<StoredPlugin>, ServerError> {
        Ok(self.store.plugins().await?)
    }

    /// Makes the uploaded `reference` with hash `sha256` the one plans run.
    pub async fn activate_plugin(
        &self,
        reference: &str,
        sha256: &str,
    ) -> Result<StoredPlugin, ServerError> {
        let admin = self.plugin_admin()?;
        let not_found = || ServerError::NotFound {
            what: "plugin version",
            id: format!("{reference} ({sha256})"),
        };
        let component = self
            .store
            .plugin_component(reference, sha256)
            .await?
            .ok_or_else(not_found)?;
        let plugin = admin
            .runtime
            .load(&component)
            .map_err(|e| ServerError::Invalid(format!("stored plugin {reference}: {e}")))?;
        if !self.store.activate_plugin(reference, sha256).await? {
            return Err(not_found());
        }
        admin.activate(plugin);
        // Live raters made before ran the previous version.
        self.live.forget_all();
        self.store
            .plugins()
            .await?
            .into_iter()
            .find(|p| p.reference == reference && p.sha256 == sha256)
            .ok_or_else(not_found)
    }
}
