//! Why a sandbox could not be started. Every variant names the check that
//! failed and, where there is one, the value expected and the value found.

use std::io;
use std::path::PathBuf;

use crate::layers::LayerName;
use crate::limits::LimitsError;

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("invalid sandbox spec: {0}")]
    InvalidSpec(String),

    #[error(transparent)]
    Limits(#[from] LimitsError),

    #[error("the {layer} layer cannot be set up on this machine: {reason}")]
    LayerUnavailable { layer: LayerName, reason: String },

    #[error("the {layer} layer does not exist on this platform (it has: {available})")]
    LayerNotOnPlatform { layer: LayerName, available: String },

    #[error("path {path}: {reason}")]
    Path { path: PathBuf, reason: String },

    #[error("preparing the sandbox ({step}): {source}")]
    Prepare {
        step: &'static str,
        #[source]
        source: io::Error,
    },

    #[error("starting the sandboxed process ({step}): {source}")]
    Start {
        step: &'static str,
        #[source]
        source: io::Error,
    },

    /// The child reported a failure between fork and exec.
    #[error("sandbox set-up failed in the child at {stage}{}: {source}", layer.map(|l| format!(" (layer {l})")).unwrap_or_default())]
    ChildSetup {
        stage: String,
        layer: Option<LayerName>,
        #[source]
        source: io::Error,
    },
}

impl SpawnError {
    /// The layer a failure is attributable to, if any: what an operator
    /// would have to allow degraded to get past it.
    pub fn layer(&self) -> Option<LayerName> {
        match self {
            SpawnError::LayerUnavailable { layer, .. }
            | SpawnError::LayerNotOnPlatform { layer, .. } => Some(*layer),
            SpawnError::ChildSetup { layer, .. } => *layer,
            _ => None,
        }
    }

    pub(crate) fn prepare(step: &'static str) -> impl FnOnce(io::Error) -> SpawnError {
        move |source| SpawnError::Prepare { step, source }
    }
}
