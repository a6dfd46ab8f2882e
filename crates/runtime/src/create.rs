//! create_container: the bundle (overlay rootfs + OCI spec) and a shim that
//! creates the container, which then waits for `start`.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::linux::{blocking, Inner};
use crate::spec::{BindMount, PodNamespaces, SpecInputs};
use crate::state::{
    process_start_time, random_id, read_json, write_json, ContainerFiles, ContainerRecord,
    SandboxRecord, ShimState, Status,
};
use crate::{ContainerConfig, Error, Result, RuntimeImage};

pub(crate) async fn create(
    inner: &Arc<Inner>,
    pod_uid: &str,
    config: ContainerConfig,
) -> Result<String> {
    let image = inner
        .images
        .get(&config.image)
        .await?
        .ok_or_else(|| Error::ImageNotPresent(config.image.clone()))?;
    let name = config.name.clone();
    let fail = |message: String| Error::CreateContainer {
        name: name.clone(),
        message,
    };
    // The container's move into its cgroup waits on the kernel: that wait
    // starts now, while the shim starts and the bundle is written.
    crate::cgroups::start_migration_grace_period();
    let id = random_id().map_err(|e| fail(e.to_string()))?;
    let dir = inner.layout.container(&id);
    std::fs::create_dir_all(&dir).map_err(|e| fail(e.to_string()))?;
    // The shim starts (an exec of this binary) while the bundle is
    // prepared; it waits for the word to go before reading it.
    let shim = match spawn_shim(inner, &dir) {
        Ok(shim) => shim,
        Err(message) => {
            inner.discard_bundle(&id);
            return Err(fail(message));
        }
    };
    // The image's layers are the container's rootfs: keep them from GC. The
    // lease is written while the bundle is prepared.
    let leased = {
        let (id, image) = (id.clone(), image.clone());
        blocking(inner, move |i| i.images.lease(&id, &image))
    };
    let bundled = {
        let (uid, id) = (pod_uid.to_string(), id.clone());
        blocking(inner, move |i| i.prepare_bundle(&uid, &id, &config, &image))
    };
    let prepared = match tokio::join!(leased, bundled) {
        (Ok(()), bundled) => bundled,
        (Err(e), _) => Err(e),
    };
    let result = match prepared {
        Ok(()) => wait_for_shim(inner, &id, &dir, shim).await.map_err(fail),
        Err(e) => {
            // No "go": the shim reads end of file and leaves.
            let mut shim = shim;
            drop(shim.stdin.take());
            let _ = shim.wait().await;
            Err(e)
        }
    };
    if result.is_err() {
        let cleanup_id = id.clone();
        blocking(inner, move |i| {
            i.discard_bundle(&cleanup_id);
            Ok(())
        })
        .await?;
    }
    result.map(|()| id)
}

/// Starts the shim for the container in `dir`; it waits for "go" on its stdin.
fn spawn_shim(inner: &Inner, dir: &Path) -> Result<tokio::process::Child, String> {
    let shim_log = std::fs::File::create(dir.join(ContainerFiles::SHIM_LOG))
        .map_err(|e| format!("create shim log: {e}"))?;
    tokio::process::Command::new(&inner.shim_exe)
        .arg(crate::shim::SHIM)
        .arg(dir)
        .arg(inner.layout.youki())
        .envs(crate::internal::LEAN_ENV)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(shim_log)
        .spawn()
        .map_err(|e| format!("start shim {}: {e}", inner.shim_exe.display()))
}

/// Tells the shim to go and waits for its first line: the container's pid
/// once it is created, or the error.
async fn wait_for_shim(
    inner: &Inner,
    id: &str,
    dir: &Path,
    mut child: tokio::process::Child,
) -> Result<(), String> {
    if let Some(mut stdin) = child.stdin.take() {
        // A shim that already died shows up below, through its stdout.
        let _ = stdin.write_all(crate::shim::GO).await;
    }
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        let _ = BufReader::new(out).read_line(&mut line).await;
    }
    // The child handle is dropped without waiting: the shim outlives this
    // call (and the agent); tokio reaps it if it exits while we run.
    let line = line.trim();
    if line.parse::<i32>().is_ok() {
        return Ok(());
    }
    let _ = child.wait().await;
    Err(match line.strip_prefix("error: ") {
        Some(e) => e.to_string(),
        None => format!(
            "container {id}: the shim exited without creating the container: {} (is {} calling orca_runtime::run_internal_command_if_requested?)",
            std::fs::read_to_string(dir.join(ContainerFiles::SHIM_LOG)).unwrap_or_default().trim(),
            inner.shim_exe.display()
        ),
    })
}

/// Why a bundle could not be written: the kubelet tells a container whose
/// configuration can never work (CreateContainerConfigError) from one the
/// runtime failed to create (CreateContainerError).
enum BundleError {
    Config(String),
    Other(String),
}

impl From<String> for BundleError {
    fn from(message: String) -> Self {
        BundleError::Other(message)
    }
}

impl Inner {
    fn prepare_bundle(
        &self,
        pod_uid: &str,
        id: &str,
        config: &ContainerConfig,
        image: &RuntimeImage,
    ) -> Result<()> {
        let sandbox = self.sandbox(pod_uid)?;
        let dir = self.layout.container(id);
        self.write_bundle(id, &dir, &sandbox, config, image)
            .map_err(|e| match e {
                BundleError::Config(message) => Error::ContainerConfig {
                    name: config.name.clone(),
                    message,
                },
                BundleError::Other(message) => Error::CreateContainer {
                    name: config.name.clone(),
                    message,
                },
            })
    }

    fn write_bundle(
        &self,
        id: &str,
        dir: &Path,
        sandbox: &SandboxRecord,
        config: &ContainerConfig,
        image: &RuntimeImage,
    ) -> Result<(), BundleError> {
        let log_path = self
            .layout
            .log_path(&sandbox.pod_uid, &config.name, config.attempt);
        if let Some(parent) = log_path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
        }
        if let Some(message) = crate::seccomp::unsupported(&config.security.seccomp) {
            return Err(BundleError::Other(message));
        }
        let rootfs = crate::rootfs::mount_overlay(dir, &image.layers).map_err(|e| e.to_string())?;
        let user = crate::spec::resolve_user(
            &config.security,
            image.user.as_deref(),
            &crate::rootfs::read_in_rootfs(&rootfs, "etc/passwd"),
            &crate::rootfs::read_in_rootfs(&rootfs, "etc/group"),
        )
        .map_err(|e| match e {
            crate::spec::SpecError::RunsAsRoot
            | crate::spec::SpecError::RunAsUserRoot
            | crate::spec::SpecError::NonNumericUser(_) => BundleError::Config(format!(
                "{e} (pod: \"{}_{}({})\", container: {})",
                sandbox.pod_name, sandbox.namespace, sandbox.pod_uid, config.name
            )),
            other => BundleError::Other(other.to_string()),
        })?;

        let pod_dir = self.layout.pod(&sandbox.pod_uid);
        let mut binds: Vec<BindMount> = ["hosts", "hostname", "resolv.conf"]
            .iter()
            .map(|f| BindMount {
                source: pod_dir.join("etc").join(f),
                destination: format!("/etc/{f}"),
                read_only: false,
            })
            .collect();
        binds.push(BindMount {
            source: pod_dir.join("shm"),
            destination: "/dev/shm".into(),
            read_only: false,
        });
        if let Some(path) = config
            .termination_message_path
            .as_deref()
            .filter(|p| !p.is_empty())
        {
            let file = dir.join(ContainerFiles::TERMINATION_LOG);
            std::fs::write(&file, b"").map_err(|e| e.to_string())?;
            // World-writable as the kubelet makes it: a container running as
            // any user writes its message there.
            std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o666))
                .map_err(|e| e.to_string())?;
            binds.push(BindMount {
                source: file,
                destination: path.to_string(),
                read_only: false,
            });
        }
        binds.extend(
            crate::volumes::binds(&sandbox.volumes, &config.mounts).map_err(|e| e.to_string())?,
        );

        let spec = crate::spec::build(&SpecInputs {
            container: config,
            image,
            user: &user,
            rootfs: rootfs.clone(),
            cgroups_path: crate::cgroups::container_path(id),
            namespaces: PodNamespaces {
                pause_pid: sandbox.pause_pid,
                host_network: sandbox.host_network,
                host_pid: sandbox.host_pid,
                host_ipc: sandbox.host_ipc,
                share_pid: sandbox.share_pid,
                target_pid: match &config.target_container {
                    Some(target) => Some(self.running_pid(target)?),
                    None => None,
                },
            },
            binds,
            held_caps: self.held_caps.clone(),
        })
        .map_err(|e| e.to_string())?;
        // The working directory is created if the image lacks it, as runc does.
        if let Some(cwd) = spec.process().as_ref().map(|p| p.cwd().clone()) {
            let rel = cwd.strip_prefix("/").unwrap_or(&cwd);
            if rel
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_)))
            {
                let _ = std::fs::create_dir_all(rootfs.join(rel));
            }
        }
        spec.save(dir.join("config.json"))
            .map_err(|e| format!("write spec: {e}"))?;
        let stop_signal = image
            .stop_signal
            .as_deref()
            .and_then(parse_signal)
            .unwrap_or(libc::SIGTERM);
        let record = ContainerRecord {
            id: id.to_string(),
            pod_uid: sandbox.pod_uid.clone(),
            name: config.name.clone(),
            attempt: config.attempt,
            image: config.image.clone(),
            image_id: if image.repo_digest.is_empty() {
                image.digest.clone()
            } else {
                image.repo_digest.clone()
            },
            log_path,
            stop_signal,
            termination_message_path: config.termination_message_path.clone(),
            stdin: config.stdin,
            stdin_once: config.stdin_once,
            created_at: SystemTime::now(),
        };
        write_json(&dir.join(ContainerFiles::RECORD), &record)
            .map_err(|e| BundleError::Other(e.to_string()))
    }

    /// The host pid of a running container's init process.
    fn running_pid(&self, id: &str) -> Result<i32, BundleError> {
        let state: ShimState = read_json(&self.layout.container(id).join(ContainerFiles::STATE))
            .map_err(|_| BundleError::Other(format!("target container {id} not found")))?;
        if state.status != Status::Running || process_start_time(state.pid).is_none() {
            return Err(BundleError::Other(format!(
                "target container {id} is not running"
            )));
        }
        Ok(state.pid)
    }

    /// Undoes a bundle that never became a container.
    pub(crate) fn discard_bundle(&self, id: &str) {
        let _ = self.images.release(id);
        let dir = self.layout.container(id);
        let _ = crate::rootfs::unmount(&dir.join(ContainerFiles::ROOTFS));
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// `SIGQUIT`, `QUIT` or `3`.
pub(crate) fn parse_signal(s: &str) -> Option<i32> {
    if let Ok(n) = s.parse::<i32>() {
        return Some(n);
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<nix::sys::signal::Signal>()
        .ok()
        .map(|s| s as i32)
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_stop_signals() {
        assert_eq!(super::parse_signal("SIGQUIT"), Some(libc::SIGQUIT));
        assert_eq!(super::parse_signal("term"), Some(libc::SIGTERM));
        assert_eq!(super::parse_signal("9"), Some(9));
        assert_eq!(super::parse_signal("NOPE"), None);
    }
}
