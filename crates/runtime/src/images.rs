//! What the runtime needs from an image store: unpacked layers and the image
//! config. A trait, so the runtime is tested without a registry and the
//! store's own API can evolve on its side.

use std::path::PathBuf;

use crate::{RegistryAuth, Result};

/// An image present on the node, as the runtime uses it.
#[derive(Clone, Debug, Default)]
pub struct RuntimeImage {
    /// Canonical reference (`docker.io/library/busybox:latest`).
    pub reference: String,
    /// `sha256:...` image id.
    pub digest: String,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `NAME=value` entries.
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    /// `uid`, `uid:gid`, `name` or `name:group`, as in the image config.
    pub user: Option<String>,
    /// `SIGQUIT` or `3`; SIGTERM when absent.
    pub stop_signal: Option<String>,
    /// Unpacked layer directories, bottom layer first.
    pub layers: Vec<PathBuf>,
    pub size: u64,
}

#[async_trait::async_trait]
pub trait ImageProvider: Send + Sync + 'static {
    /// Pulls the image (or returns it when already present).
    async fn pull(&self, reference: &str, auth: Option<RegistryAuth>) -> Result<RuntimeImage>;
    /// The image if it is present on the node.
    async fn get(&self, reference: &str) -> Result<Option<RuntimeImage>>;
}
