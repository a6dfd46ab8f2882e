//! Pod sandboxes: the pause process holding the pod's namespaces, its
//! network, volumes, shared /dev/shm and /etc files.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use nix::mount::{mount, MsFlags};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::linux::{blocking, Inner};
use crate::network::veth_name;
use crate::state::{process_start_time, read_json, write_json, SandboxRecord};
use crate::{Error, Result, SandboxConfig, SandboxStatus};

fn other(what: impl std::fmt::Display) -> Error {
    Error::Other(what.to_string())
}

fn status(rec: &SandboxRecord) -> SandboxStatus {
    SandboxStatus {
        pod_uid: rec.pod_uid.clone(),
        namespace: rec.namespace.clone(),
        pod_name: rec.pod_name.clone(),
        ip: rec.ip,
        ready: !rec.stopped && pause_alive(rec),
        created_at: rec.created_at,
    }
}

struct PreparedPod {
    ip: Option<std::net::Ipv4Addr>,
    volumes: std::collections::BTreeMap<String, crate::state::VolumeRecord>,
}

pub(crate) fn pause_alive(rec: &SandboxRecord) -> bool {
    process_start_time(rec.pause_pid) == Some(rec.pause_start_time)
}

/// Starts the pause process with the pod's namespaces; returns its pid.
async fn spawn_pause(inner: &Inner, config: &SandboxConfig) -> Result<i32> {
    let mut kinds = Vec::new();
    if !config.host_ipc {
        kinds.push("ipc");
    }
    if !config.host_network {
        kinds.extend(["net", "uts"]);
    }
    if config.share_process_namespace && !config.host_pid {
        kinds.push("pid");
    }
    let mut child = tokio::process::Command::new(&inner.shim_exe)
        .args([crate::pause::PAUSE, &kinds.join(","), &config.hostname])
        .envs(crate::internal::LEAN_ENV)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            other(format!(
                "pod {}/{}: cannot start the pause process {}: {e}",
                config.namespace,
                config.pod_name,
                inner.shim_exe.display()
            ))
        })?;
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        let _ = BufReader::new(out).read_line(&mut line).await;
    }
    match line.trim().parse::<i32>() {
        Ok(pid) => Ok(pid),
        Err(_) => {
            let out = child.wait_with_output().await.map_err(other)?;
            Err(other(format!(
                "pod {}/{}: the pause process failed: {} (is {} calling orca_runtime::run_internal_command_if_requested?)",
                config.namespace,
                config.pod_name,
                String::from_utf8_lossy(&out.stderr).trim(),
                inner.shim_exe.display()
            )))
        }
    }
}

pub(crate) async fn run(inner: &Arc<Inner>, config: SandboxConfig) -> Result<SandboxStatus> {
    let uid = config.pod_uid.clone();
    let existing = blocking(inner, move |i| {
        let Ok(rec) = read_json::<SandboxRecord>(&i.layout.sandbox_file(&uid)) else {
            return Ok(None);
        };
        if !rec.stopped && pause_alive(&rec) {
            return Ok(Some(status(&rec)));
        }
        // A dead or stopped sandbox is replaced by a new one, as the kubelet does.
        i.teardown(&rec)?;
        Ok(None)
    })
    .await?;
    if let Some(s) = existing {
        return Ok(s);
    }
    // The first container's move into its cgroup waits on the kernel: that
    // wait starts now, while the sandbox is made.
    crate::cgroups::start_migration_grace_period();
    // The pause process starts (an exec of this binary) while the pod's IP,
    // files and mounts are prepared: neither needs the other.
    let pause = spawn_pause(inner, &config);
    let prepared = {
        let config = config.clone();
        blocking(inner, move |i| i.prepare_pod(&config))
    };
    let (pid, prepared) = tokio::join!(pause, prepared);
    blocking(inner, move |i| {
        let kill_pause = |pid: i32| {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        };
        let result = match (pid, prepared) {
            (Ok(pid), Ok(prepared)) => i
                .finish_sandbox(&config, pid, prepared)
                .inspect_err(|_| kill_pause(pid)),
            (Ok(pid), Err(e)) => {
                kill_pause(pid);
                Err(e)
            }
            (Err(e), _) => Err(e),
        };
        if result.is_err() {
            let _ = i.network.release(&config.pod_uid);
            let _ = i.cleanup_pod_mounts(&i.layout.pod(&config.pod_uid));
        }
        result
    })
    .await
}

pub(crate) async fn stop(inner: &Arc<Inner>, pod_uid: &str) -> Result<()> {
    for c in inner.container_ids_of(Some(pod_uid))? {
        crate::stop::stop(inner, &c, Duration::ZERO).await?;
    }
    let uid = pod_uid.to_string();
    blocking(inner, move |i| {
        let path = i.layout.sandbox_file(&uid);
        let Ok(mut rec) = read_json::<SandboxRecord>(&path) else {
            return Ok(());
        };
        i.stop_pause_and_network(&rec)?;
        rec.stopped = true;
        write_json(&path, &rec).map_err(other)
    })
    .await
}

pub(crate) async fn remove(inner: &Arc<Inner>, pod_uid: &str) -> Result<()> {
    for c in inner.container_ids_of(Some(pod_uid))? {
        crate::remove::remove(inner, &c).await?;
    }
    let uid = pod_uid.to_string();
    blocking(inner, move |i| {
        let dir = i.layout.pod(&uid);
        if let Ok(rec) = read_json::<SandboxRecord>(&i.layout.sandbox_file(&uid)) {
            i.teardown(&rec)?;
        }
        i.network.release(&uid).map_err(other)?;
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(other(format!("remove {}: {e}", dir.display()))),
        }
    })
    .await
}

impl Inner {
    /// What a sandbox needs besides its pause process: the pod's IP,
    /// volumes, shared /dev/shm and /etc files.
    fn prepare_pod(&self, config: &SandboxConfig) -> Result<PreparedPod> {
        let uid = &config.pod_uid;
        let dir = self.layout.pod(uid);
        std::fs::create_dir_all(&dir).map_err(other)?;
        let ip = if config.host_network {
            None
        } else {
            Some(self.network.allocate(uid).map_err(other)?)
        };
        let volumes =
            crate::volumes::prepare(&dir.join("volumes"), &config.volumes, config.fs_group)
                .map_err(|e| other(format!("pod {}/{}: {e}", config.namespace, config.pod_name)))?;
        let shm = dir.join("shm");
        std::fs::create_dir_all(&shm).map_err(other)?;
        if !crate::rootfs::is_mounted(&shm) {
            mount(
                Some("shm"),
                &shm,
                Some("tmpfs"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                Some("mode=1777,size=65536k"),
            )
            .map_err(|e| other(format!("pod {uid}: mount /dev/shm: {e}")))?;
        }
        write_etc_files(&dir.join("etc"), config, ip.map(std::net::IpAddr::V4)).map_err(other)?;
        Ok(PreparedPod { ip, volumes })
    }

    /// Connects the pause process's network namespace and records the sandbox.
    fn finish_sandbox(
        &self,
        config: &SandboxConfig,
        pid: i32,
        prepared: PreparedPod,
    ) -> Result<SandboxStatus> {
        let uid = &config.pod_uid;
        let pause_start_time = process_start_time(pid)
            .ok_or_else(|| other(format!("pod {uid}: the pause process {pid} died")))?;
        let veth = match prepared.ip {
            Some(ip) => {
                let veth = veth_name(uid);
                self.network.attach(pid, &veth, ip).map_err(|e| {
                    other(format!("pod {}/{}: {e}", config.namespace, config.pod_name))
                })?;
                Some(veth)
            }
            None => None,
        };
        crate::sysctl::apply(pid, &config.sysctls, config.host_network)
            .map_err(|e| other(format!("pod {}/{}: {e}", config.namespace, config.pod_name)))?;
        let rec = SandboxRecord {
            pod_uid: uid.clone(),
            namespace: config.namespace.clone(),
            pod_name: config.pod_name.clone(),
            hostname: config.hostname.clone(),
            host_network: config.host_network,
            host_pid: config.host_pid,
            host_ipc: config.host_ipc,
            share_pid: config.share_process_namespace,
            pause_pid: pid,
            pause_start_time,
            ip: prepared.ip.map(std::net::IpAddr::V4),
            veth,
            bridge: self.network.bridge.clone(),
            volumes: prepared.volumes,
            created_at: SystemTime::now(),
            stopped: false,
        };
        write_json(&self.layout.sandbox_file(uid), &rec).map_err(other)?;
        Ok(status(&rec))
    }

    fn stop_pause_and_network(&self, rec: &SandboxRecord) -> Result<()> {
        if pause_alive(rec) {
            let _ = kill(Pid::from_raw(rec.pause_pid), Signal::SIGKILL);
        }
        if let Some(veth) = &rec.veth {
            self.network.detach(veth).map_err(other)?;
        }
        self.network.release(&rec.pod_uid).map_err(other)
    }

    /// Stops the pause process, frees the network and unmounts the pod's
    /// tmpfs mounts; the directory itself stays (logs live there).
    pub(crate) fn teardown(&self, rec: &SandboxRecord) -> Result<()> {
        self.stop_pause_and_network(rec)?;
        self.cleanup_pod_mounts(&self.layout.pod(&rec.pod_uid))
    }

    fn cleanup_pod_mounts(&self, dir: &Path) -> Result<()> {
        crate::rootfs::unmount(&dir.join("shm")).map_err(other)?;
        if let Ok(entries) = std::fs::read_dir(dir.join("volumes")) {
            for e in entries.flatten() {
                if crate::rootfs::is_mounted(&e.path()) {
                    crate::rootfs::unmount(&e.path()).map_err(other)?;
                }
            }
        }
        Ok(())
    }

    pub(crate) fn list_sandboxes(&self) -> Result<Vec<SandboxStatus>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(self.layout.pods())
            .map_err(other)?
            .flatten()
        {
            if let Ok(rec) = read_json::<SandboxRecord>(&e.path().join("sandbox.json")) {
                out.push(status(&rec));
            }
        }
        Ok(out)
    }

    pub(crate) fn sandbox(&self, pod_uid: &str) -> Result<SandboxRecord> {
        match read_json::<SandboxRecord>(&self.layout.sandbox_file(pod_uid)) {
            Ok(rec) if !rec.stopped => Ok(rec),
            _ => Err(Error::SandboxNotFound(pod_uid.to_string())),
        }
    }
}

fn write_etc_files(
    dir: &Path,
    config: &SandboxConfig,
    ip: Option<std::net::IpAddr>,
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let (hosts, hostname) = if config.host_network {
        (
            std::fs::read_to_string("/etc/hosts").unwrap_or_default(),
            std::fs::read_to_string("/proc/sys/kernel/hostname")?
                .trim()
                .to_string(),
        )
    } else {
        let mut hosts = String::from(
            "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
        );
        if let Some(ip) = ip {
            hosts.push_str(&format!("{ip}\t{}\n", config.hostname));
        }
        (hosts, config.hostname.clone())
    };
    let mut hosts = hosts;
    if !config.host_aliases.is_empty() {
        hosts.push_str("\n# Entries added by HostAliases.\n");
        for (ip, names) in &config.host_aliases {
            hosts.push_str(&format!("{ip}\t{}\n", names.join("\t")));
        }
    }
    std::fs::write(dir.join("hosts"), hosts)?;
    std::fs::write(dir.join("hostname"), format!("{hostname}\n"))?;
    // Written as given, even empty: the agent forms the whole file from the
    // pod's dnsPolicy (`None` without dnsConfig is an empty file).
    let dns = &config.dns;
    let mut resolv = String::new();
    if !dns.searches.is_empty() {
        resolv.push_str(&format!("search {}\n", dns.searches.join(" ")));
    }
    for ns in &dns.nameservers {
        resolv.push_str(&format!("nameserver {ns}\n"));
    }
    if !dns.options.is_empty() {
        resolv.push_str(&format!("options {}\n", dns.options.join(" ")));
    }
    std::fs::write(dir.join("resolv.conf"), resolv)
}
