//! The built-in Linux runtime: pod sandboxes held by pause processes,
//! containers run by per-container shims through libcontainer. All state
//! lives on disk under the root, so a new `LinuxRuntime` over the same root
//! takes over the sandboxes and containers of a previous one.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::images::ImageProvider;
use crate::network::Network;
use crate::state::Layout;
use crate::{
    ContainerConfig, ContainerStatus, Error, ExecRequest, ImageInfo, RegistryAuth, Result, Runtime,
    SandboxConfig, SandboxStatus, StreamSession,
};

pub struct RuntimeConfig {
    /// `DATA_DIR/agent`.
    pub root: PathBuf,
    /// The node's pod CIDR (`10.42.0.0/24`); the bridge holds its first address.
    pub pod_cidr: String,
    /// The bridge pods are attached to (`orca0`).
    pub bridge: String,
    /// The binary re-exec'd as shim, pause and exec helper; it must call
    /// [`crate::run_internal_command_if_requested`] first thing in `main`.
    pub shim_exe: PathBuf,
    pub images: Arc<dyn ImageProvider>,
}

impl RuntimeConfig {
    /// Defaults: CIDR 10.42.0.0/24, bridge `orca0`, this executable as shim.
    pub fn new(root: impl Into<PathBuf>, images: Arc<dyn ImageProvider>) -> RuntimeConfig {
        RuntimeConfig {
            root: root.into(),
            pod_cidr: "10.42.0.0/24".into(),
            bridge: "orca0".into(),
            shim_exe: std::env::current_exe().unwrap_or_else(|_| "/proc/self/exe".into()),
            images,
        }
    }
}

pub struct LinuxRuntime {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub layout: Layout,
    pub shim_exe: PathBuf,
    pub images: Arc<dyn ImageProvider>,
    pub network: Network,
    pub held_caps: Vec<&'static str>,
}

impl LinuxRuntime {
    pub fn new(config: RuntimeConfig) -> Result<LinuxRuntime> {
        let layout = Layout { root: config.root };
        for dir in [
            layout.pods(),
            layout.containers(),
            layout.youki(),
            layout.network(),
        ] {
            std::fs::create_dir_all(&dir)
                .map_err(|e| Error::Other(format!("create {}: {e}", dir.display())))?;
        }
        let network = Network::new(layout.network(), &config.bridge, &config.pod_cidr)
            .map_err(|e| Error::Other(e.to_string()))?;
        Ok(LinuxRuntime {
            inner: Arc::new(Inner {
                layout,
                shim_exe: config.shim_exe,
                images: config.images,
                network,
                held_caps: crate::spec::held_capabilities(),
            }),
        })
    }

    /// The host directory of a container (its bundle, rootfs and state),
    /// for diagnostics and tests.
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.inner.layout.container(id)
    }

    /// The bridge and gateway pods are attached to.
    pub fn bridge(&self) -> &str {
        &self.inner.network.bridge
    }
}

/// Runs blocking work (mounts, files, processes) off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    inner: &Arc<Inner>,
    f: impl FnOnce(&Inner) -> Result<T> + Send + 'static,
) -> Result<T> {
    let inner = inner.clone();
    tokio::task::spawn_blocking(move || f(&inner))
        .await
        .map_err(|e| Error::Other(format!("runtime task failed: {e}")))?
}

fn image_info(i: crate::RuntimeImage) -> ImageInfo {
    ImageInfo {
        reference: i.reference,
        id: i.digest,
        size_bytes: i.size,
    }
}

#[async_trait::async_trait]
impl Runtime for LinuxRuntime {
    async fn pull_image(&self, image: &str, auth: Option<RegistryAuth>) -> Result<ImageInfo> {
        Ok(image_info(self.inner.images.pull(image, auth).await?))
    }

    async fn image_status(&self, image: &str) -> Result<Option<ImageInfo>> {
        Ok(self.inner.images.get(image).await?.map(image_info))
    }

    async fn run_sandbox(&self, config: &SandboxConfig) -> Result<SandboxStatus> {
        crate::sandbox::run(&self.inner, config.clone()).await
    }

    async fn stop_sandbox(&self, pod_uid: &str) -> Result<()> {
        crate::sandbox::stop(&self.inner, pod_uid).await
    }

    async fn remove_sandbox(&self, pod_uid: &str) -> Result<()> {
        crate::sandbox::remove(&self.inner, pod_uid).await
    }

    async fn list_sandboxes(&self) -> Result<Vec<SandboxStatus>> {
        blocking(&self.inner, |i| i.list_sandboxes()).await
    }

    async fn create_container(&self, pod_uid: &str, config: &ContainerConfig) -> Result<String> {
        crate::create::create(&self.inner, pod_uid, config.clone()).await
    }

    async fn start_container(&self, id: &str) -> Result<()> {
        crate::start::start(&self.inner, id).await
    }

    async fn stop_container(&self, id: &str, grace: Duration) -> Result<()> {
        crate::stop::stop(&self.inner, id, grace).await
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        crate::remove::remove(&self.inner, id).await
    }

    async fn container_status(&self, id: &str) -> Result<ContainerStatus> {
        let id = id.to_string();
        blocking(&self.inner, move |i| i.container_status(&id)).await
    }

    async fn list_containers(&self, pod_uid: Option<&str>) -> Result<Vec<ContainerStatus>> {
        let uid = pod_uid.map(String::from);
        blocking(&self.inner, move |i| i.list_containers(uid.as_deref())).await
    }

    async fn container_stats(&self, id: &str) -> Result<Option<crate::ContainerStats>> {
        let path = crate::cgroups::container_path(id);
        tokio::task::spawn_blocking(move || crate::cgroups::usage(&path))
            .await
            .map_err(|e| Error::Other(format!("runtime task failed: {e}")))
    }

    async fn exec(&self, id: &str, request: ExecRequest) -> Result<StreamSession> {
        crate::exec::exec(&self.inner, id, request).await
    }

    async fn attach(&self, id: &str, stdin: bool, tty: bool) -> Result<StreamSession> {
        let status = {
            let id = id.to_string();
            blocking(&self.inner, move |i| i.container_status(&id)).await?
        };
        if !matches!(status.state, crate::ContainerState::Running { .. }) {
            return Err(Error::NotRunning { id: id.to_string() });
        }
        crate::attach::attach(&self.inner.layout.container(id), id, stdin, tty).await
    }

    async fn status(&self) -> crate::RuntimeStatus {
        let runtime_ready = match crate::cgroups::unavailable() {
            None => crate::RuntimeCondition::ready(),
            Some(message) => crate::RuntimeCondition {
                status: false,
                reason: "CgroupsUnavailable".into(),
                message,
            },
        };
        crate::RuntimeStatus {
            runtime_ready,
            // The pod CIDR was given at construction; the bridge is made
            // with the first sandbox.
            network_ready: crate::RuntimeCondition::ready(),
        }
    }

    async fn port_forward(&self, pod_uid: &str, port: u16) -> Result<tokio::net::TcpStream> {
        crate::portforward::connect(&self.inner, pod_uid, port).await
    }
}
