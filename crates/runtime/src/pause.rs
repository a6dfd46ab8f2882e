//! The pause process: it creates the pod's shared namespaces and holds them
//! by staying alive, reaping whatever ends up as its child.
//!
//! `SHIM_EXE __orca-pause <net,ipc,uts,pid> <hostname>` unshares the listed
//! namespaces and prints the pid of the holder on stdout. A new PID namespace
//! only applies to children, so with `pid` the holder is a re-exec'd child
//! (`__orca-pause-hold`), PID 1 of the pod; otherwise the process holds itself.

use std::io::Write;
use std::process::{Command, Stdio};

use nix::sched::{unshare, CloneFlags};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::SignalFd;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

pub(crate) const PAUSE: &str = "__orca-pause";
const HOLD: &str = "__orca-pause-hold";

pub(crate) fn pause_main(args: &[String]) -> ! {
    match setup(args) {
        Ok(()) => hold(),
        Err(e) => {
            eprintln!("orca pause: {e}");
            std::process::exit(1)
        }
    }
}

pub(crate) fn hold_main() -> ! {
    hold()
}

pub(crate) fn is_hold(arg: &str) -> bool {
    arg == HOLD
}

fn setup(args: &[String]) -> Result<(), String> {
    let (kinds, hostname) = match args {
        [kinds, hostname] => (kinds.as_str(), hostname.as_str()),
        _ => return Err("usage: __orca-pause <net,ipc,uts,pid> <hostname>".into()),
    };
    let mut flags = CloneFlags::empty();
    for kind in kinds.split(',').filter(|k| !k.is_empty()) {
        flags |= match kind {
            "net" => CloneFlags::CLONE_NEWNET,
            "ipc" => CloneFlags::CLONE_NEWIPC,
            "uts" => CloneFlags::CLONE_NEWUTS,
            "pid" => CloneFlags::CLONE_NEWPID,
            other => return Err(format!("unknown namespace {other:?}")),
        };
    }
    unshare(flags).map_err(|e| format!("unshare {kinds}: {e}"))?;
    if flags.contains(CloneFlags::CLONE_NEWUTS) {
        nix::unistd::sethostname(hostname).map_err(|e| format!("sethostname: {e}"))?;
    }
    // Own session: the agent's terminal or process group must not take the pod down.
    let _ = nix::unistd::setsid();
    let holder = if flags.contains(CloneFlags::CLONE_NEWPID) {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let child = Command::new(exe)
            .arg(HOLD)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("spawn pause holder: {e}"))?;
        child.id()
    } else {
        std::process::id()
    };
    let mut out = std::io::stdout();
    writeln!(out, "{holder}")
        .and_then(|()| out.flush())
        .map_err(|e| e.to_string())?;
    if flags.contains(CloneFlags::CLONE_NEWPID) {
        std::process::exit(0);
    }
    // The agent stops reading after the pid: no pipe to it may stay open.
    redirect_to_null(&[0, 1, 2]);
    Ok(())
}

/// Points the given descriptors at /dev/null.
pub(crate) fn redirect_to_null(fds: &[i32]) {
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        use std::os::fd::AsRawFd;
        for &fd in fds {
            let _ = nix::unistd::dup2(null.as_raw_fd(), fd);
        }
    }
}

/// Sleeps until told to stop, reaping children (as PID 1 of a shared PID
/// namespace, orphans of every container land here).
fn hold() -> ! {
    let mut mask = SigSet::empty();
    for s in [Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGINT] {
        mask.add(s);
    }
    if mask.thread_block().is_err() {
        std::process::exit(1);
    }
    let Ok(sfd) = SignalFd::new(&mask) else {
        std::process::exit(1)
    };
    loop {
        match sfd.read_signal() {
            Ok(Some(info)) if info.ssi_signo == Signal::SIGCHLD as u32 => loop {
                match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::StillAlive) | Err(_) => break,
                    Ok(_) => continue,
                }
            },
            Ok(Some(_)) => std::process::exit(0),
            Ok(None) | Err(_) => {}
        }
    }
}
