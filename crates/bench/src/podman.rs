//! Podman `kube play` as the peer: its own storage and run roots in a
//! temporary directory, and a containers.conf the bench writes (never /etc).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::procs::{self, Mem};
use crate::results::Overhead;

/// Facts about podman 4.3 on this kind of host: crun 1.8 fails on a hybrid
/// cgroup v1/v2 host, so runc; the default nofile/nproc limits are too low
/// for a hundred pods; no systemd as pid 1, so cgroupfs and file events.
const CONTAINERS_CONF: &str = r#"[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"#;

pub struct Podman {
    dir: tempfile::TempDir,
    pub version: String,
}

impl Podman {
    /// Installs podman (with catatonit, its pause process, and runc) with
    /// apt-get when missing, and loads the test images into a private store.
    pub fn start(images: &Path) -> anyhow::Result<Podman> {
        install_if_missing()?;
        let dir = tempfile::Builder::new()
            .prefix("orca-bench-podman.")
            .tempdir()?;
        std::fs::write(dir.path().join("containers.conf"), CONTAINERS_CONF)?;
        let mut podman = Podman {
            dir,
            version: String::new(),
        };
        let version = podman.run(&["--version"])?;
        podman.version = String::from_utf8_lossy(&version.stdout)
            .trim()
            .replace("podman version ", "");
        for name in ["busybox", "nginx"] {
            let archive = images.join(format!("{name}.docker.tar"));
            podman
                .run(&["load", "-q", "-i", &archive.to_string_lossy()])
                .with_context(|| format!("podman load {}", archive.display()))?;
        }
        Ok(podman)
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("podman");
        cmd.env("CONTAINERS_CONF", self.dir.path().join("containers.conf"))
            .arg("--root")
            .arg(self.root())
            .arg("--runroot")
            .arg(self.dir.path().join("runroot"))
            .args(args);
        cmd
    }

    pub fn run(&self, args: &[&str]) -> anyhow::Result<Output> {
        let out = self
            .command(args)
            .output()
            .context("running podman (is it installed?)")?;
        if !out.status.success() {
            bail!(
                "podman {} failed: {}{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(out)
    }

    /// Writes `manifest` (one or more YAML documents) to a file in the
    /// bench's directory and returns its path.
    pub fn manifest(&self, name: &str, manifest: &str) -> anyhow::Result<PathBuf> {
        let path = self.dir.path().join(format!("{name}.yaml"));
        std::fs::write(&path, manifest)?;
        Ok(path)
    }

    /// `podman kube play FILE`: returns once every container runs.
    pub fn play(&self, file: &Path) -> anyhow::Result<Duration> {
        let start = Instant::now();
        self.run(&["kube", "play", &file.to_string_lossy()])?;
        Ok(start.elapsed())
    }

    /// `podman kube down FILE`: stops (SIGTERM, SIGKILL after podman's stop
    /// timeout) and removes the pods.
    pub fn down(&self, file: &Path) -> anyhow::Result<Duration> {
        let start = Instant::now();
        self.run(&["kube", "down", &file.to_string_lossy()])?;
        Ok(start.elapsed())
    }

    /// `podman pod stop NAME` (SIGTERM, SIGKILL after podman's own stop
    /// timeout) then `podman pod rm NAME`.
    pub fn stop_and_remove(&self, pod: &str) -> anyhow::Result<Duration> {
        let start = Instant::now();
        self.run(&["pod", "stop", pod])?;
        self.run(&["pod", "rm", pod])?;
        Ok(start.elapsed())
    }

    /// Memory of podman's per-pod helpers: conmon (one per container,
    /// infra included) and the infra container's catatonit. The
    /// containers' own processes are not counted, as for Orca.
    pub fn overhead(&self, pods: usize) -> Overhead {
        let root = self.dir.path().to_string_lossy().into_owned();
        let all = procs::all();
        let conmons: Vec<&procs::Proc> = all
            .iter()
            .filter(|p| p.comm == "conmon" && p.cmdline.contains(&root))
            .collect();
        let mut catatonits = Vec::new();
        for conmon in &conmons {
            for pid in procs::descendants(&all, conmon.pid) {
                if let Some(p) = all.iter().find(|p| p.pid == pid) {
                    if p.comm == "catatonit" {
                        catatonits.push(p.pid);
                    }
                }
            }
        }
        let mut total = Mem::default();
        for pid in conmons
            .iter()
            .map(|p| p.pid)
            .chain(catatonits.iter().copied())
        {
            total = total + procs::mem(pid).unwrap_or_default();
        }
        Overhead {
            pods,
            processes: vec![
                ("conmon".to_string(), conmons.len()),
                ("catatonit".to_string(), catatonits.len()),
            ],
            total,
        }
    }

    /// Removes every pod (at once, no grace) and everything in the private store.
    pub fn cleanup(&self) {
        let _ = self.run(&["pod", "rm", "-a", "-f", "-t", "0"]);
        let _ = self.run(&["system", "reset", "-f"]);
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        self.cleanup();
    }
}

fn install_if_missing() -> anyhow::Result<()> {
    let have = |bin: &str| {
        [
            "/usr/bin",
            "/usr/sbin",
            "/usr/local/bin",
            "/usr/libexec/podman",
        ]
        .iter()
        .any(|d| Path::new(d).join(bin).exists())
    };
    if have("podman") && have("catatonit") && have("runc") {
        return Ok(());
    }
    eprintln!("== installing podman, catatonit and runc with apt-get");
    let update = Command::new("apt-get").args(["update", "-qq"]).status()?;
    if !update.success() {
        bail!("apt-get update failed: install podman, catatonit and runc yourself");
    }
    let status = Command::new("apt-get")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(["podman", "catatonit", "runc"])
        .status()?;
    if !status.success() {
        bail!("apt-get install podman catatonit runc failed");
    }
    Ok(())
}
