//! Where a container's cgroup lives and what it says after the container
//! ended. libcontainer creates and removes the cgroups; we only read them,
//! and start the kernel's wait that moving a process into one costs early.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The container's cgroup path (`linux.cgroupsPath`), under one `orca` parent.
pub(crate) fn container_path(id: &str) -> String {
    format!("/orca/{id}")
}

/// Why containers cannot get cgroups here, if they cannot: no cgroup
/// filesystem where libcontainer looks for one (v2 at the root, or v1's
/// memory hierarchy under it), as in a mount namespace whose /sys was
/// mounted again without it (`ip netns exec` does that).
pub(crate) fn unavailable() -> Option<String> {
    use nix::sys::statfs::{statfs, CGROUP2_SUPER_MAGIC, CGROUP_SUPER_MAGIC};
    let root = Path::new(CGROUP_ROOT);
    let is = |path: &Path, magic| statfs(path).is_ok_and(|s| s.filesystem_type() == magic);
    if is(root, CGROUP2_SUPER_MAGIC) || is(&root.join("memory"), CGROUP_SUPER_MAGIC) {
        return None;
    }
    Some(format!(
        "no cgroup filesystem is mounted at {CGROUP_ROOT} in the agent's mount namespace, so no container can be created; \
         start the agent where the host's /sys/fs/cgroup is visible (enter a network namespace with nsenter --net, not ip netns exec)"
    ))
}

fn unified_mounted_at_root() -> bool {
    Path::new(CGROUP_ROOT).join("cgroup.controllers").exists()
}

/// Directories of the container's cgroup that hold memory accounting.
fn memory_dirs(path: &str) -> Vec<PathBuf> {
    let rel = path.trim_start_matches('/');
    if unified_mounted_at_root() {
        vec![Path::new(CGROUP_ROOT).join(rel)]
    } else {
        vec![Path::new(CGROUP_ROOT).join("memory").join(rel)]
    }
}

/// What a container's cgroup has used, read as cAdvisor does for the
/// kubelet: CPU time from `cpu.stat` (v2) or `cpuacct.usage` (v1), memory
/// usage from `memory.current` or `memory.usage_in_bytes`, and the working
/// set, usage less the inactive page cache (`inactive_file`, or v1's
/// hierarchical `total_inactive_file`). `None` when the cgroup is gone.
pub(crate) fn usage(path: &str) -> Option<crate::ContainerStats> {
    let rel = path.trim_start_matches('/');
    let read = |dir: PathBuf, file: &str| std::fs::read_to_string(dir.join(file)).ok();
    let (cpu_ns, usage, stat, inactive_key) = if unified_mounted_at_root() {
        let dir = Path::new(CGROUP_ROOT).join(rel);
        let cpu_usec = stat_value(&read(dir.clone(), "cpu.stat")?, "usage_usec")?;
        let usage = read(dir.clone(), "memory.current")?.trim().parse().ok()?;
        (
            cpu_usec * 1000,
            usage,
            read(dir, "memory.stat"),
            "inactive_file",
        )
    } else {
        // cpuacct is mounted alone or with cpu, depending on the distribution.
        let cpuacct = ["cpuacct", "cpu,cpuacct", "cpuacct,cpu"]
            .iter()
            .map(|d| Path::new(CGROUP_ROOT).join(d).join(rel))
            .find(|d| d.is_dir())?;
        let cpu_ns = read(cpuacct, "cpuacct.usage")?.trim().parse().ok()?;
        let dir = Path::new(CGROUP_ROOT).join("memory").join(rel);
        let usage = read(dir.clone(), "memory.usage_in_bytes")?
            .trim()
            .parse()
            .ok()?;
        (
            cpu_ns,
            usage,
            read(dir, "memory.stat"),
            "total_inactive_file",
        )
    };
    let inactive = stat
        .as_deref()
        .and_then(|s| stat_value(s, inactive_key))
        .unwrap_or(0);
    Some(crate::ContainerStats {
        timestamp: std::time::SystemTime::now(),
        cpu_usage_core_nanoseconds: cpu_ns,
        memory_usage_bytes: usage,
        memory_working_set_bytes: usage.saturating_sub(inactive),
    })
}

/// The value of `key` in a flat-keyed cgroup file (`key value` lines).
fn stat_value(contents: &str, key: &str) -> Option<u64> {
    contents.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// Whether the kernel's OOM killer killed a process of the cgroup
/// (`oom_kill` in memory.events on v2, memory.oom_control on v1).
pub(crate) fn oom_killed(path: &str) -> bool {
    memory_dirs(path).iter().any(|dir| {
        ["memory.events", "memory.oom_control"].iter().any(|file| {
            std::fs::read_to_string(dir.join(file))
                .map(|s| oom_kill_count(&s) > 0)
                .unwrap_or(false)
        })
    })
}

fn oom_kill_count(contents: &str) -> u64 {
    stat_value(contents, "oom_kill").unwrap_or(0)
}

/// Moving a process into a cgroup (writing `cgroup.procs`, as libcontainer
/// does for every new container) takes the kernel's cgroup threadgroup
/// lock, and its first writer waits out an RCU grace period: 8 ms on an idle
/// host, 25 ms on a busy one, half of a container's start. Writers that come
/// while that wait is under way, or within about one grace period after it,
/// pass at once. So when a pod or container starts being set up, this
/// rewrites this process's own membership (a move to where it already is,
/// which changes nothing) to start the wait in parallel with that setup.
/// The write waits on a blocking thread; while one waits, further calls
/// (many pods starting at once) join its grace period and start nothing.
/// Best effort. Call from within the runtime's tokio context.
pub(crate) fn start_migration_grace_period() {
    static WAITING: AtomicBool = AtomicBool::new(false);
    if WAITING.swap(true, Ordering::AcqRel) {
        return;
    }
    tokio::task::spawn_blocking(|| {
        rewrite_own_membership();
        WAITING.store(false, Ordering::Release);
    });
}

fn rewrite_own_membership() {
    let Ok(own) = std::fs::read_to_string("/proc/self/cgroup") else {
        return;
    };
    if let Some(procs) = own_procs_file(&own, unified_mount()) {
        if let Ok(mut file) = std::fs::OpenOptions::new().write(true).open(procs) {
            use std::io::Write;
            // "0" is the writing process itself.
            let _ = file.write_all(b"0");
        }
    }
}

/// Where the cgroup2 hierarchy is mounted: the root on a unified host, or
/// `unified` beside the v1 hierarchies on a hybrid one.
fn unified_mount() -> Option<PathBuf> {
    if unified_mounted_at_root() {
        return Some(PathBuf::from(CGROUP_ROOT));
    }
    let hybrid = Path::new(CGROUP_ROOT).join("unified");
    hybrid.join("cgroup.procs").exists().then_some(hybrid)
}

/// The `cgroup.procs` of this process's own cgroup, from /proc/self/cgroup:
/// in the cgroup2 hierarchy if mounted, else in the first v1 hierarchy (the
/// lock is one for all hierarchies).
fn own_procs_file(proc_self_cgroup: &str, unified: Option<PathBuf>) -> Option<PathBuf> {
    let mut v1 = None;
    for line in proc_self_cgroup.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let rel = path.trim_start_matches('/');
        if id == "0" && controllers.is_empty() {
            if let Some(mount) = &unified {
                return Some(mount.join(rel).join("cgroup.procs"));
            }
        } else if v1.is_none() && !controllers.is_empty() {
            let name = controllers.trim_start_matches("name=");
            v1 = Some(
                Path::new(CGROUP_ROOT)
                    .join(name)
                    .join(rel)
                    .join("cgroup.procs"),
            );
        }
    }
    v1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_oom_kill_counters() {
        assert_eq!(
            oom_kill_count("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n"),
            2
        );
        assert_eq!(
            oom_kill_count("low 0\nhigh 0\nmax 1\noom 1\noom_kill 0\n"),
            0
        );
        assert_eq!(container_path("abc"), "/orca/abc");
    }

    #[test]
    fn finds_own_procs_file() {
        let hybrid = "9:name=systemd:/\n4:memory:/a/b\n0::/svc\n";
        assert_eq!(
            own_procs_file(hybrid, Some("/sys/fs/cgroup/unified".into())),
            Some(PathBuf::from("/sys/fs/cgroup/unified/svc/cgroup.procs"))
        );
        assert_eq!(
            own_procs_file(hybrid, None),
            Some(PathBuf::from("/sys/fs/cgroup/systemd/cgroup.procs"))
        );
        assert_eq!(own_procs_file("", None), None);
    }
}
