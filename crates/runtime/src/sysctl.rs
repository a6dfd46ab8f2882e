//! Pod sysctls, written once when the sandbox is made. `/proc/sys` shows the
//! namespaces of the thread that opens it, so a short-lived thread joins the
//! pause process's network and IPC namespaces (setns changes only that
//! thread) and writes them there: net.* land in the pod's network
//! namespace, kernel.shm*/msg*/sem and fs.mqueue.* in its IPC namespace.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::path::PathBuf;

use nix::sched::{setns, CloneFlags};

pub(crate) fn apply(
    pause_pid: i32,
    sysctls: &[(String, String)],
    host_network: bool,
) -> io::Result<()> {
    if sysctls.is_empty() {
        return Ok(());
    }
    if let Some((name, _)) = sysctls
        .iter()
        .find(|(n, _)| host_network && n.starts_with("net."))
    {
        return Err(io::Error::other(format!(
            "sysctl {name} would change the node's own network settings (the pod uses the host network)"
        )));
    }
    let net = File::open(format!("/proc/{pause_pid}/ns/net"))?;
    let ipc = File::open(format!("/proc/{pause_pid}/ns/ipc"))?;
    std::thread::scope(|s| {
        s.spawn(|| {
            if !host_network {
                setns(net.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|e| {
                    io::Error::other(format!("enter the pod's network namespace: {e}"))
                })?;
            }
            setns(ipc.as_fd(), CloneFlags::CLONE_NEWIPC)
                .map_err(|e| io::Error::other(format!("enter the pod's IPC namespace: {e}")))?;
            for (name, value) in sysctls {
                std::fs::write(proc_path(name), value).map_err(|e| {
                    io::Error::new(e.kind(), format!("setting sysctl {name}={value}: {e}"))
                })?;
            }
            Ok(())
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("sysctl thread panicked")))
    })
}

/// `/proc/sys` path of a dot-separated name; a `/` inside a name (as in
/// `net.ipv4.conf.eth0/100.forwarding`) stands for a literal dot.
fn proc_path(name: &str) -> PathBuf {
    let path: String = name
        .chars()
        .map(|c| match c {
            '.' => '/',
            '/' => '.',
            c => c,
        })
        .collect();
    PathBuf::from("/proc/sys").join(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_proc_sys_paths() {
        assert_eq!(
            proc_path("kernel.shm_rmid_forced"),
            PathBuf::from("/proc/sys/kernel/shm_rmid_forced")
        );
        assert_eq!(
            proc_path("net.ipv4.conf.eth0/100.forwarding"),
            PathBuf::from("/proc/sys/net/ipv4/conf/eth0.100/forwarding")
        );
    }
}
