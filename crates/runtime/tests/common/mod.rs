//! Shared setup for the runtime's integration tests and benchmark: test
//! images unpacked from `$ORCA_TEST_IMAGES/NAME.rootfs.tar`, a runtime on
//! its own root, bridge and CIDR, and checks that nothing is left behind.
#![allow(dead_code)] // each test binary uses its own subset

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use orca_image::{ImageStore, RegistriesConfig};
use orca_runtime::{
    ContainerConfig, ContainerState, ContainerStatus, LinuxRuntime, Runtime, RuntimeConfig,
    SandboxConfig,
};

fn images_dir() -> PathBuf {
    PathBuf::from(std::env::var("ORCA_TEST_IMAGES").expect(
        "ORCA_TEST_IMAGES is not set: run scripts/build-test-images.sh DIR and export ORCA_TEST_IMAGES=DIR (scripts/test.sh does both)",
    ))
}

/// The node's image store with the test images (busybox, nginx) imported
/// from their `docker save` archives.
fn image_store(root: &Path) -> ImageStore {
    let store = ImageStore::open(root.join("images"), RegistriesConfig::default()).unwrap();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            for name in ["busybox", "nginx"] {
                let archive = images_dir().join(format!("{name}.docker.tar"));
                store
                    .import_archive(&archive)
                    .await
                    .unwrap_or_else(|e| panic!("import {}: {e}", archive.display()));
            }
        });
    store
}

pub struct Env {
    pub dir: tempfile::TempDir,
    pub images: Arc<ImageStore>,
    pub bridge: String,
    pub cidr: String,
    pub runtime: LinuxRuntime,
}

impl Env {
    /// `n` (1..=250) picks the bridge `orcat<n>` and CIDR 10.250.<n>.0/24, so
    /// tests running in parallel do not share a network.
    pub fn new(n: u8) -> Env {
        let dir = tempfile::Builder::new()
            .prefix("orca-rt-")
            .tempdir()
            .unwrap();
        let images = Arc::new(image_store(&dir.path().join("agent")));
        let bridge = format!("orcat{n}");
        let cidr = format!("10.250.{n}.0/24");
        let runtime = new_runtime(dir.path(), &bridge, &cidr, images.clone());
        Env {
            dir,
            images,
            bridge,
            cidr,
            runtime,
        }
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("agent")
    }

    /// A second runtime over the same root (as after an agent restart).
    pub fn reopen(&self) -> LinuxRuntime {
        new_runtime(
            self.dir.path(),
            &self.bridge,
            &self.cidr,
            self.images.clone(),
        )
    }

    /// Asserts nothing of the runtime is left on the host, then deletes the bridge.
    pub fn assert_clean(&self, ids: &[String]) {
        let root = self.root().display().to_string();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(
            !mounts.contains(&root),
            "mounts left under {root}:\n{}",
            mounts
                .lines()
                .filter(|l| l.contains(&root))
                .collect::<Vec<_>>()
                .join("\n")
        );
        for id in ids {
            for ctl in ["memory", "pids", "cpu"] {
                let p = Path::new("/sys/fs/cgroup").join(ctl).join("orca").join(id);
                assert!(!p.exists(), "cgroup left: {}", p.display());
            }
            assert!(!self.root().join("containers").join(id).exists());
            assert!(!self.root().join("youki").join(id).exists());
        }
        let brif = Path::new("/sys/class/net").join(&self.bridge).join("brif");
        let ports: Vec<_> = std::fs::read_dir(&brif)
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(ports.is_empty(), "veths left on {}: {ports:?}", self.bridge);
        let ips = std::fs::read_to_string(
            self.root()
                .join("network")
                .join(format!("{}-ips.json", self.bridge)),
        )
        .unwrap_or_else(|_| "{}".into());
        assert_eq!(ips.trim(), "{}", "IP allocations left");
        let pods = std::fs::read_dir(self.root().join("pods")).unwrap().count();
        assert_eq!(pods, 0, "pod directories left");
    }
}

impl Drop for Env {
    /// Tears down whatever a failed test left (a passing test already did).
    fn drop(&mut self) {
        if std::thread::panicking() {
            // The shims' own error logs explain most failures.
            for e in std::fs::read_dir(self.root().join("containers"))
                .into_iter()
                .flatten()
                .flatten()
            {
                let log = std::fs::read_to_string(e.path().join("shim.log")).unwrap_or_default();
                if !log.is_empty() {
                    eprintln!("shim.log of {}:\n{log}", e.file_name().to_string_lossy());
                }
            }
        }
        let rt = self.reopen();
        let cleanup = async {
            for s in rt.list_sandboxes().await.unwrap_or_default() {
                let _ = rt.remove_sandbox(&s.pod_uid).await;
            }
            for c in rt.list_containers(None).await.unwrap_or_default() {
                let _ = rt.remove_container(&c.id).await;
            }
        };
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(cleanup);
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .status();
    }
}

/// A runtime over an existing test root (its images already imported), as
/// another agent process would open it.
pub fn runtime_at(dir: &Path, bridge: &str, cidr: &str) -> LinuxRuntime {
    let images = ImageStore::open(dir.join("agent/images"), RegistriesConfig::default()).unwrap();
    new_runtime(dir, bridge, cidr, Arc::new(images))
}

fn new_runtime(dir: &Path, bridge: &str, cidr: &str, images: Arc<ImageStore>) -> LinuxRuntime {
    let mut config = RuntimeConfig::new(dir.join("agent"), images);
    config.bridge = bridge.to_string();
    config.pod_cidr = cidr.to_string();
    LinuxRuntime::new(config).unwrap()
}

pub fn sandbox(uid: &str, name: &str) -> SandboxConfig {
    SandboxConfig {
        pod_uid: uid.to_string(),
        namespace: "default".into(),
        pod_name: name.to_string(),
        hostname: name.to_string(),
        ..Default::default()
    }
}

pub fn busybox(name: &str, script: &str) -> ContainerConfig {
    ContainerConfig {
        name: name.to_string(),
        image: "busybox".into(),
        command: vec!["sh".into(), "-c".into(), script.to_string()],
        ..Default::default()
    }
}

/// Creates and starts a container, then waits for it to exit.
pub async fn run_to_exit(rt: &LinuxRuntime, uid: &str, c: &ContainerConfig) -> ContainerStatus {
    let id = rt.create_container(uid, c).await.unwrap();
    rt.start_container(&id).await.unwrap();
    wait_exited(rt, &id, Duration::from_secs(30)).await
}

/// Waits until the container's log has a line containing `text`.
pub async fn wait_log(rt: &LinuxRuntime, id: &str, text: &str) {
    let path = rt.container_status(id).await.unwrap().log_path;
    for _ in 0..500 {
        if std::fs::read_to_string(&path)
            .unwrap_or_default()
            .contains(text)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{text:?} never appeared in {}", path.display());
}

/// Polls until the container has exited (or panics after `limit`).
pub async fn wait_exited(rt: &LinuxRuntime, id: &str, limit: Duration) -> ContainerStatus {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let s = rt.container_status(id).await.unwrap();
        if matches!(s.state, ContainerState::Exited { .. }) {
            return s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "container {id} still {:?} after {limit:?}",
            s.state
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn exit_code(s: &ContainerStatus) -> (i32, String) {
    match &s.state {
        ContainerState::Exited {
            exit_code, reason, ..
        } => (*exit_code, reason.clone()),
        other => panic!("not exited: {other:?}"),
    }
}

/// The lines of a CRI log file, without timestamps: `stdout F text`.
pub fn log_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            l.split_once(' ')
                .map(|(_, r)| r.to_string())
                .unwrap_or_default()
        })
        .collect()
}

/// Runs a command in a container and returns (exit code, stdout, stderr).
pub async fn exec(rt: &LinuxRuntime, id: &str, cmd: &[&str]) -> (i32, String, String) {
    use tokio::io::AsyncReadExt;
    let mut s = rt
        .exec(
            id,
            orca_runtime::ExecRequest {
                command: cmd.iter().map(|s| s.to_string()).collect(),
                tty: false,
                stdin: false,
            },
        )
        .await
        .unwrap();
    let mut out = String::new();
    let mut err = String::new();
    let mut so = s.stdout.take().unwrap();
    let mut se = s.stderr.take().unwrap();
    let (a, b) = tokio::join!(so.read_to_string(&mut out), se.read_to_string(&mut err));
    a.unwrap();
    b.unwrap();
    (s.exit.await.unwrap(), out, err)
}
