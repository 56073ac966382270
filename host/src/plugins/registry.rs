//! Plugins by reference: a plan names `p95-bandwidth@1.0.0`; the registry holds the component that
//! reference is pinned to (by sha256) and implements the engine's [`PluginHost`] with it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ratecard_engine::plugin::{
    MetricAccumulator, PluginError, PluginHost, PriceRequest, PricedLine,
};
use serde::{Deserialize, Serialize};

use crate::plugins::error::LoadError;
use crate::plugins::runtime::{
    LoadedPlugin, PluginRuntime, read_bounded, read_component, sha256_hex,
};

/// Largest manifest read, in bytes.
const MANIFEST_BYTES: usize = 1 << 20;

/// `plugins.json`: the plugins a host may run, each pinned by hash.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub plugins: Vec<ManifestEntry>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestEntry {
    /// `name@version`, as plans reference it.
    pub reference: String,
    /// The component file, relative to the manifest.
    pub path: PathBuf,
    /// Hex sha256 of the component.
    pub sha256: String,
}

/// Loaded plugins by `name@version`.
#[derive(Debug)]
pub struct PluginRegistry {
    runtime: PluginRuntime,
    plugins: BTreeMap<String, LoadedPlugin>,
}

impl PluginRegistry {
    pub fn new(runtime: PluginRuntime) -> PluginRegistry {
        PluginRegistry {
            runtime,
            plugins: BTreeMap::new(),
        }
    }

    /// Loads every plugin of a manifest file, checking each hash (before any of the component
    /// is compiled or run) and reference.
    pub fn from_manifest(runtime: PluginRuntime, path: &Path) -> Result<PluginRegistry, LoadError> {
        let bytes = read_bounded(path, MANIFEST_BYTES, |size| LoadError::Io {
            path: path.display().to_string(),
            message: format!("{size}: a manifest is at most {MANIFEST_BYTES} bytes"),
        })?;
        let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| LoadError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut registry = PluginRegistry::new(runtime);
        for entry in manifest.plugins {
            let file = base.join(&entry.path);
            let bytes = read_component(&file, registry.runtime.limits().component_bytes)?;
            registry.add(&entry.reference, &bytes, Some(&entry.sha256))?;
        }
        Ok(registry)
    }

    /// Loads a component under a reference, checking its hash when pinned (first: a component
    /// that is not the one pinned is never compiled, and none of its code runs) and that it
    /// describes itself as that reference. Returns the component's sha256.
    pub fn add(
        &mut self,
        reference: &str,
        bytes: &[u8],
        sha256: Option<&str>,
    ) -> Result<String, LoadError> {
        let actual = sha256_hex(bytes);
        if let Some(expected) = sha256
            && !expected.eq_ignore_ascii_case(&actual)
        {
            return Err(LoadError::HashMismatch {
                reference: reference.to_owned(),
                expected: expected.to_owned(),
                actual,
            });
        }
        let plugin = self.runtime.load(bytes)?;
        if plugin.reference() != reference {
            return Err(LoadError::NameMismatch {
                expected: reference.to_owned(),
                actual: plugin.reference(),
            });
        }
        self.plugins.insert(reference.to_owned(), plugin);
        Ok(actual)
    }

    pub fn get(&self, reference: &str) -> Option<&LoadedPlugin> {
        self.plugins.get(reference)
    }

    fn lookup(&self, reference: &str) -> Result<&LoadedPlugin, PluginError> {
        self.plugins
            .get(reference)
            .ok_or_else(|| PluginError::NotFound(reference.to_owned()))
    }
}

impl PluginHost for PluginRegistry {
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
