//! Load-time errors. Call-time errors are the engine's [`ratecard_engine::plugin::PluginError`].

use crate::plugins::limits::Limit;

/// Why a component was refused at load.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read plugin `{path}`: {message}")]
    Io { path: String, message: String },
    /// A size or shape limit is exceeded by the component itself.
    #[error("plugin exceeds its {limit} limit: {message}")]
    LimitExceeded { limit: Limit, message: String },
    /// The bytes are not a valid WebAssembly component.
    #[error("not a valid WebAssembly component: {0}")]
    InvalidComponent(String),
    /// The component does not implement the plugin contract (missing or mistyped exports).
    #[error("does not implement the plugin contract: {0}")]
    Contract(String),
    /// The component imports something other than `ratecard:plugin/log`.
    #[error("imports `{0}`: plugins may import only `ratecard:plugin/log`")]
    ForbiddenImport(String),
    /// The dry run at load (`describe`) failed.
    #[error("the plugin failed to describe itself: {0}")]
    DryRun(String),
    /// A pinned hash does not match the component.
    #[error(
        "plugin `{reference}`: the file's sha256 {actual} differs from the pinned {expected} (refused before running any of it)"
    )]
    HashMismatch {
        reference: String,
        expected: String,
        actual: String,
    },
    /// The component's metadata does not match its reference.
    #[error("plugin describes itself as `{actual}`, referenced as `{expected}`")]
    NameMismatch { expected: String, actual: String },
    /// The engine could not be set up (cache directory, ...).
    #[error("cannot set up the plugin engine: {0}")]
    Engine(String),
}
