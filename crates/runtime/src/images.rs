//! What the runtime needs from an image store: unpacked layers and the image
//! config. A trait, so the runtime is tested without a registry and the
//! store's own API can evolve on its side.

use std::path::PathBuf;

use crate::{Error, RegistryAuth, Result};

/// An image present on the node, as the runtime uses it.
#[derive(Clone, Debug, Default)]
pub struct RuntimeImage {
    /// Canonical reference (`docker.io/library/busybox:latest`).
    pub reference: String,
    /// `sha256:...` image id (the config's digest).
    pub digest: String,
    /// `repository@sha256:...`: what Kubernetes shows as a container's
    /// `imageID` (empty when unknown; `digest` is shown then).
    pub repo_digest: String,
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
    /// Keeps the image's layers while container `id` uses them.
    fn lease(&self, _id: &str, _image: &RuntimeImage) -> Result<()> {
        Ok(())
    }
    /// Ends a lease taken by [`ImageProvider::lease`].
    fn release(&self, _id: &str) -> Result<()> {
        Ok(())
    }
}

fn runtime_image(i: orca_image::Image) -> RuntimeImage {
    RuntimeImage {
        reference: i.reference,
        digest: i.digest,
        repo_digest: i.repo_digest,
        entrypoint: i.config.entrypoint,
        cmd: i.config.cmd,
        env: i.config.env,
        working_dir: i.config.working_dir,
        user: i.config.user,
        stop_signal: i.config.stop_signal,
        layers: i.layers,
        size: i.size,
    }
}

/// The node's image store, as the agent runs it.
#[async_trait::async_trait]
impl ImageProvider for orca_image::ImageStore {
    async fn pull(&self, reference: &str, auth: Option<RegistryAuth>) -> Result<RuntimeImage> {
        let auth = auth.map(|a| orca_image::Credentials {
            username: a.username,
            password: a.password,
        });
        orca_image::ImageStore::pull(self, reference, auth)
            .await
            .map(runtime_image)
            .map_err(|e| Error::ImagePull {
                image: reference.to_string(),
                message: e.to_string(),
            })
    }

    async fn get(&self, reference: &str) -> Result<Option<RuntimeImage>> {
        let store = self.clone();
        let reference = reference.to_string();
        tokio::task::spawn_blocking(move || store.get(&reference))
            .await
            .map_err(|e| Error::Other(format!("image store task: {e}")))?
            .map(|i| i.map(runtime_image))
            .map_err(|e| Error::Other(e.to_string()))
    }

    fn lease(&self, id: &str, image: &RuntimeImage) -> Result<()> {
        let Some(found) = self
            .get(&image.reference)
            .map_err(|e| Error::Other(e.to_string()))?
        else {
            return Err(Error::ImageNotPresent(image.reference.clone()));
        };
        orca_image::ImageStore::lease(self, id, &found).map_err(|e| Error::Other(e.to_string()))
    }

    fn release(&self, id: &str) -> Result<()> {
        orca_image::ImageStore::release(self, id).map_err(|e| Error::Other(e.to_string()))
    }
}
