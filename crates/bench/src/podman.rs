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
    /// netavark's iptables rules that existed before we started podman
    /// (ours are removed at the end, anyone else's are left alone).
    rules_before: Vec<(String, String)>,
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
            rules_before: netavark_rules(),
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

    /// Removes every pod (at once, no grace), everything in the private
    /// store, and the iptables chains netavark added for them.
    pub fn cleanup(&self) {
        let _ = self.run(&["pod", "rm", "-a", "-f", "-t", "0"]);
        let _ = self.run(&["system", "reset", "-f"]);
        let added: Vec<(String, String)> = netavark_rules()
            .into_iter()
            .filter(|r| !self.rules_before.contains(r))
            .collect();
        for (table, args) in undo_rules(&added) {
            let _ = Command::new("iptables")
                .args(["-t", &table])
                .args(&args)
                .output();
        }
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// netavark's rules as `iptables -S` prints them, per table.
fn netavark_rules() -> Vec<(String, String)> {
    let mut rules = Vec::new();
    for table in ["filter", "nat"] {
        let Ok(out) = Command::new("iptables").args(["-t", table, "-S"]).output() else {
            continue;
        };
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if line.contains("NETAVARK") {
                rules.push((table.to_string(), line.to_string()));
            }
        }
    }
    rules
}

/// The iptables commands that remove `rules` (lines of `iptables -S`):
/// the rules first, newest first, then the chains they left empty.
pub fn undo_rules(rules: &[(String, String)]) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for (table, line) in rules.iter().rev() {
        let mut args = split_iptables(line);
        if args.first().map(String::as_str) == Some("-A") {
            args[0] = "-D".to_string();
            out.push((table.clone(), args));
        }
    }
    for (table, line) in rules {
        let args = split_iptables(line);
        if let [flag, chain] = args.as_slice() {
            if flag != "-N" {
                continue;
            }
            out.push((table.clone(), vec!["-F".to_string(), chain.clone()]));
            out.push((table.clone(), vec!["-X".to_string(), chain.clone()]));
        }
    }
    out
}

/// Splits an `iptables -S` line into arguments (double quotes group words).
fn split_iptables(line: &str) -> Vec<String> {
    let mut args = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut started = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                started = true;
            }
            c if c.is_whitespace() && !quoted => {
                if started {
                    args.push(std::mem::take(&mut current));
                    started = false;
                }
            }
            c => {
                current.push(c);
                started = true;
            }
        }
    }
    if started {
        args.push(current);
    }
    args
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iptables_lines_split_with_quotes() {
        assert_eq!(
            split_iptables(
                r#"-A FORWARD -m comment --comment "netavark firewall plugin rules" -j X"#
            ),
            vec![
                "-A",
                "FORWARD",
                "-m",
                "comment",
                "--comment",
                "netavark firewall plugin rules",
                "-j",
                "X"
            ]
        );
    }

    #[test]
    fn undo_deletes_rules_newest_first_then_chains() {
        let rules = vec![
            ("nat".to_string(), "-N NETAVARK-DNAT".to_string()),
            ("nat".to_string(), "-A OUTPUT -j NETAVARK-DNAT".to_string()),
            (
                "nat".to_string(),
                "-A NETAVARK-DNAT -m mark --mark 0x2000/0x2000 -j MASQUERADE".to_string(),
            ),
        ];
        let undo: Vec<String> = undo_rules(&rules)
            .into_iter()
            .map(|(t, a)| format!("{t} {}", a.join(" ")))
            .collect();
        assert_eq!(
            undo,
            vec![
                "nat -D NETAVARK-DNAT -m mark --mark 0x2000/0x2000 -j MASQUERADE",
                "nat -D OUTPUT -j NETAVARK-DNAT",
                "nat -F NETAVARK-DNAT",
                "nat -X NETAVARK-DNAT",
            ]
        );
    }
}
