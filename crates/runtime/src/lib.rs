//! The container runtime the node agent drives: pod sandboxes (shared
//! network, IPC and UTS namespaces, volumes) and the containers in them.
//!
//! The agent sees only the [`Runtime`] trait, shaped like Kubernetes' CRI, so
//! another backend (a `runc` CLI, or CRI to containerd) can replace the
//! built-in Linux one without touching the agent.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncRead, AsyncWrite};

mod attach;
mod cgroups;
mod create;
mod exec;
mod images;
mod internal;
mod linux;
mod logs;
mod netlink;
mod network;
mod pause;
mod portforward;
mod remove;
mod rootfs;
mod sandbox;
mod seccomp;
mod shim;
mod spec;
mod start;
mod state;
mod status;
mod stop;
mod sys;
mod sysctl;
mod volumes;

pub use images::{ImageProvider, RuntimeImage};
pub use internal::run_internal_command_if_requested;
pub use linux::{LinuxRuntime, RuntimeConfig};
pub use volumes::{set_volume_ownership, FsGroupChangePolicy};

/// Everything about a pod that its sandbox needs.
#[derive(Clone, Debug, Default)]
pub struct SandboxConfig {
    pub pod_uid: String,
    pub namespace: String,
    pub pod_name: String,
    /// The pod's hostname (its name unless `spec.hostname` says otherwise).
    pub hostname: String,
    /// Use the node's network namespace instead of a pod IP.
    pub host_network: bool,
    /// Containers see the node's processes (`hostPID`).
    pub host_pid: bool,
    /// Containers use the node's IPC namespace (`hostIPC`).
    pub host_ipc: bool,
    /// The pod's whole `/etc/resolv.conf` (the agent forms it from the
    /// pod's dnsPolicy and the node's settings; empty gives an empty file).
    pub dns: DnsConfig,
    /// Extra `/etc/hosts` entries (`spec.hostAliases`): ip -> hostnames.
    pub host_aliases: Vec<(String, Vec<String>)>,
    /// The pod's volumes, by name.
    pub volumes: BTreeMap<String, VolumeSource>,
    /// Share one PID namespace among the pod's containers.
    pub share_process_namespace: bool,
    /// Namespaced sysctls set in the pod's network and IPC namespaces
    /// (`spec.securityContext.sysctls`), names dot-separated. Net ones are
    /// refused for host-network pods: they would change the node.
    pub sysctls: Vec<(String, String)>,
    /// `securityContext.fsGroup` and its change policy: the group of the
    /// pod's emptyDir and file volumes (the agent also adds it to each
    /// container's supplementary groups, as the kubelet does).
    pub fs_group: Option<(u32, FsGroupChangePolicy)>,
}

#[derive(Clone, Debug, Default)]
pub struct DnsConfig {
    pub nameservers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

/// A pod volume. ConfigMap, Secret and downward API volumes reach the
/// runtime already resolved into files by the agent.
#[derive(Clone, Debug)]
pub enum VolumeSource {
    EmptyDir {
        memory: bool,
        size_limit: Option<u64>,
    },
    HostPath {
        path: PathBuf,
    },
    /// Relative path -> (content, file mode).
    Files {
        files: BTreeMap<String, (Vec<u8>, u32)>,
        default_mode: u32,
    },
}

/// What the runtime reports about a sandbox.
#[derive(Clone, Debug)]
pub struct SandboxStatus {
    pub pod_uid: String,
    pub namespace: String,
    pub pod_name: String,
    pub ip: Option<IpAddr>,
    pub ready: bool,
    pub created_at: SystemTime,
}

/// One container of a pod, as the agent asks for it.
#[derive(Clone, Debug, Default)]
pub struct ContainerConfig {
    pub name: String,
    /// How many times this container has been restarted (0 for the first run).
    pub attempt: u32,
    /// The image reference as written in the pod.
    pub image: String,
    /// `command` and `args` from the pod; image defaults apply when empty.
    pub command: Vec<String>,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub working_dir: Option<String>,
    pub mounts: Vec<Mount>,
    pub resources: Resources,
    pub security: SecurityConfig,
    pub tty: bool,
    pub stdin: bool,
    pub stdin_once: bool,
    /// Absolute path in the container whose content becomes the termination message.
    pub termination_message_path: Option<String>,
    /// The id of a running container of the same pod whose PID namespace
    /// this one joins (an ephemeral container's `targetContainerName`).
    pub target_container: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub struct Mount {
    /// Name of a volume of the sandbox.
    pub volume: String,
    pub container_path: String,
    pub sub_path: Option<String>,
    pub read_only: bool,
}

#[derive(Clone, Debug, Default)]
pub struct Resources {
    pub memory_limit_bytes: Option<i64>,
    /// cgroup v1 shares derived from the CPU request (Kubernetes' formula).
    pub cpu_shares: Option<u64>,
    /// CPU limit as quota per period, in microseconds.
    pub cpu_quota_us: Option<i64>,
    pub cpu_period_us: Option<u64>,
    pub pids_limit: Option<i64>,
}

#[derive(Clone, Debug, Default)]
pub struct SecurityConfig {
    pub run_as_user: Option<i64>,
    pub run_as_group: Option<i64>,
    pub run_as_non_root: bool,
    pub supplemental_groups: Vec<i64>,
    pub privileged: bool,
    pub capabilities_add: Vec<String>,
    pub capabilities_drop: Vec<String>,
    pub read_only_root_filesystem: bool,
    pub allow_privilege_escalation: Option<bool>,
    pub seccomp: SeccompProfile,
}

/// `securityContext.seccompProfile`, the container's over the pod's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum SeccompProfile {
    /// Kubernetes' default: no filter.
    #[default]
    Unconfined,
    RuntimeDefault,
    /// A profile file on the node (`localhostProfile`); not supported.
    Localhost(String),
}

/// A container's state, as Kubernetes distinguishes them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ContainerState {
    Created,
    Running {
        started_at: SystemTime,
    },
    Exited {
        exit_code: i32,
        /// `Completed`, `Error` or `OOMKilled`.
        reason: String,
        started_at: SystemTime,
        finished_at: SystemTime,
        /// The termination message, if the container wrote one.
        message: Option<String>,
    },
}

#[derive(Clone, Debug)]
pub struct ContainerStatus {
    /// Runtime-wide id; the API shows it as `orca://<id>`.
    pub id: String,
    pub pod_uid: String,
    pub name: String,
    pub attempt: u32,
    pub state: ContainerState,
    /// The image reference as asked for, and the resolved image digest.
    pub image: String,
    pub image_id: String,
    pub log_path: PathBuf,
}

/// What a running container uses now (CRI's ContainerStats).
#[derive(Clone, Debug)]
pub struct ContainerStats {
    pub timestamp: SystemTime,
    /// CPU time used since the container started, in nanoseconds.
    pub cpu_usage_core_nanoseconds: u64,
    pub memory_usage_bytes: u64,
    /// Memory usage less the inactive page cache (what the kubelet evicts
    /// on and `kubectl top` shows).
    pub memory_working_set_bytes: u64,
}

/// An image present on the node.
#[derive(Clone, Debug)]
pub struct ImageInfo {
    /// Canonical reference (`docker.io/library/nginx:latest`).
    pub reference: String,
    /// `sha256:...` digest the API shows as `imageID`.
    pub id: String,
    pub size_bytes: u64,
}

/// Registry credentials from a pod's `imagePullSecrets`.
#[derive(Clone, Debug)]
pub struct RegistryAuth {
    pub username: String,
    pub password: String,
}

/// One of CRI's runtime conditions: `RuntimeReady` (containers can be
/// run) or `NetworkReady` (pods get a network).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeCondition {
    pub status: bool,
    /// A CamelCase cause when `status` is false.
    pub reason: String,
    pub message: String,
}

impl RuntimeCondition {
    pub fn ready() -> RuntimeCondition {
        RuntimeCondition {
            status: true,
            reason: String::new(),
            message: String::new(),
        }
    }
}

/// What the runtime says about itself (CRI's `Status`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeStatus {
    pub runtime_ready: RuntimeCondition,
    pub network_ready: RuntimeCondition,
}

/// A command to run in a running container (`kubectl exec`).
#[derive(Clone, Debug, Default)]
pub struct ExecRequest {
    pub command: Vec<String>,
    pub tty: bool,
    pub stdin: bool,
}

pub type BoxedReader = Pin<Box<dyn AsyncRead + Send>>;
pub type BoxedWriter = Pin<Box<dyn AsyncWrite + Send>>;

/// The streams of an exec or attach session. With a TTY, stderr is merged
/// into stdout and `resize` changes the terminal size.
pub struct StreamSession {
    pub stdin: Option<BoxedWriter>,
    pub stdout: Option<BoxedReader>,
    pub stderr: Option<BoxedReader>,
    pub resize: Option<tokio::sync::mpsc::Sender<TerminalSize>>,
    /// Resolves to the exit code when the process ends.
    pub exit: tokio::sync::oneshot::Receiver<i32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TerminalSize {
    pub width: u16,
    pub height: u16,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("image {image}: {message}")]
    ImagePull { image: String, message: String },
    #[error("image {0} is not present on this node")]
    ImageNotPresent(String),
    #[error("sandbox of pod {0} not found")]
    SandboxNotFound(String),
    #[error("container {0} not found")]
    ContainerNotFound(String),
    #[error("cannot create container {name}: {message}")]
    CreateContainer { name: String, message: String },
    /// The container's configuration cannot work as written (the kubelet's
    /// CreateContainerConfigError), e.g. runAsNonRoot with a root image.
    #[error("container {name} is misconfigured: {message}")]
    ContainerConfig { name: String, message: String },
    #[error("container {id} is not running")]
    NotRunning { id: String },
    #[error("{0}")]
    Other(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What the node agent needs from a container runtime.
#[async_trait::async_trait]
pub trait Runtime: Send + Sync + 'static {
    async fn pull_image(&self, image: &str, auth: Option<RegistryAuth>) -> Result<ImageInfo>;
    async fn image_status(&self, image: &str) -> Result<Option<ImageInfo>>;

    /// Creates the pod's namespaces, network and volumes. Idempotent per pod uid.
    async fn run_sandbox(&self, config: &SandboxConfig) -> Result<SandboxStatus>;
    /// Kills every container of the pod and its pause process.
    async fn stop_sandbox(&self, pod_uid: &str) -> Result<()>;
    /// Frees the sandbox's IP, volumes, mounts and on-disk state.
    async fn remove_sandbox(&self, pod_uid: &str) -> Result<()>;
    async fn list_sandboxes(&self) -> Result<Vec<SandboxStatus>>;

    /// Creates (but does not start) a container in the pod's sandbox; returns its id.
    async fn create_container(&self, pod_uid: &str, config: &ContainerConfig) -> Result<String>;
    async fn start_container(&self, id: &str) -> Result<()>;
    /// Sends the stop signal, waits up to `grace`, then SIGKILLs.
    async fn stop_container(&self, id: &str, grace: Duration) -> Result<()>;
    async fn remove_container(&self, id: &str) -> Result<()>;
    async fn container_status(&self, id: &str) -> Result<ContainerStatus>;
    /// Containers of one pod, or of all pods when `pod_uid` is `None`.
    async fn list_containers(&self, pod_uid: Option<&str>) -> Result<Vec<ContainerStatus>>;
    /// What the container's cgroup has used; `None` once it has none (not
    /// started, or ended).
    async fn container_stats(&self, id: &str) -> Result<Option<ContainerStats>>;

    async fn exec(&self, id: &str, request: ExecRequest) -> Result<StreamSession>;
    async fn attach(&self, id: &str, stdin: bool, tty: bool) -> Result<StreamSession>;

    /// Whether containers can be run and pods get networks now.
    async fn status(&self) -> RuntimeStatus;
    /// A connection to `port` on the pod's loopback, made inside the pod's
    /// network namespace (`kubectl port-forward`).
    async fn port_forward(&self, pod_uid: &str, port: u16) -> Result<tokio::net::TcpStream>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exited_states_compare_by_value() {
        let t = SystemTime::UNIX_EPOCH;
        let a = ContainerState::Exited {
            exit_code: 1,
            reason: "Error".into(),
            started_at: t,
            finished_at: t,
            message: None,
        };
        assert_ne!(a, ContainerState::Created);
        assert_eq!(a.clone(), a);
    }
}
