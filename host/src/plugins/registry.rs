//! Plugins by reference: a plan names `p95-bandwidth@1.0.0`; the registry holds the component that
//! reference is pinned to (by sha256) and implements the engine's [`PluginHost`] with it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ratecard_engine::plugin::{
    MetricAccumulator, PluginError, PluginHost, PriceRequest, PricedLine,
};
use serde::{Deserialize, Serialize};

use crate::plugins::error::LoadError;
use crate::plugins::runtime::{LoadedPlugin, PluginRuntime};

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

    /// Loads every plugin of a manifest file, checking each hash and reference.
    pub fn from_manifest(runtime: PluginRuntime, path: &Path) -> Result<PluginRegistry, LoadError> {
        let io = |e: std::io::Error| LoadError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        let manifest: Manifest = serde_json::from_slice(&std::fs::read(path).map_err(io)?)
            .map_err(|e| LoadError::Io {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut registry = PluginRegistry::new(runtime);
        for entry in manifest.plugins {
            let file = base.join(&entry.path);
            let bytes = std::fs::read(&file).map_err(|e| LoadError::Io {
                path: file.display().to_string(),
                message: e.to_string(),
            })?;
            registry.add(&entry.reference, &bytes, Some(&entry.sha256))?;
        }
        Ok(registry)
    }

    /// Loads a component under a reference, checking its hash when pinned and that it
    /// describes itself as that reference. Returns the component's sha256.
    pub fn add(
        &mut self,
        reference: &str,
        bytes: &[u8],
        sha256: Option<&str>,
    ) -> Result<String, LoadError> {
        let plugin = self.runtime.load(bytes)?;
        if let Some(expected) = sha256
            && !expected.eq_ignore_ascii_case(plugin.sha256())
        {
            return Err(LoadError::HashMismatch {
                reference: reference.to_owned(),
                expected: expected.to_owned(),
                actual: plugin.sha256().to_owned(),
            });
        }
        if plugin.reference() != reference {
            return Err(LoadError::NameMismatch {
                expected: reference.to_owned(),
                actual: plugin.reference(),
            });
        }
        let sha256 = plugin.sha256().to_owned();
        self.plugins.insert(reference.to_owned(), plugin);
        Ok(sha256)
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
