//! Where a container's cgroup lives and what it says after the container
//! ended. libcontainer creates and removes the cgroups; we only read them.

use std::path::{Path, PathBuf};

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The container's cgroup path (`linux.cgroupsPath`), under one `orca` parent.
pub(crate) fn container_path(id: &str) -> String {
    format!("/orca/{id}")
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
    contents
        .lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
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
}
