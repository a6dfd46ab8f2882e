//! On-disk state, so a runtime built anew over the same root (after an agent
//! restart) finds the sandboxes and containers that outlived the old one.
//!
//! Layout under the root (`DATA_DIR/agent`):
//! - `pods/<uid>/sandbox.json`, its volumes, `/etc` files and shm, and the
//!   logs `pods/<uid>/<container>/<attempt>.log`;
//! - `containers/<id>/`: the OCI bundle, `record.json` (what was asked),
//!   `state.json` (written by the shim), the shim's socket and log;
//! - `youki/`: libcontainer's own state; `network/`: IP allocations.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{de::DeserializeOwned, Deserialize, Serialize};

#[derive(Clone, Debug)]
pub(crate) struct Layout {
    pub root: PathBuf,
}

impl Layout {
    pub fn pods(&self) -> PathBuf {
        self.root.join("pods")
    }
    pub fn pod(&self, uid: &str) -> PathBuf {
        self.pods().join(uid)
    }
    pub fn sandbox_file(&self, uid: &str) -> PathBuf {
        self.pod(uid).join("sandbox.json")
    }
    pub fn containers(&self) -> PathBuf {
        self.root.join("containers")
    }
    pub fn container(&self, id: &str) -> PathBuf {
        self.containers().join(id)
    }
    pub fn youki(&self) -> PathBuf {
        self.root.join("youki")
    }
    pub fn network(&self) -> PathBuf {
        self.root.join("network")
    }
    pub fn log_path(&self, uid: &str, name: &str, attempt: u32) -> PathBuf {
        self.pod(uid).join(name).join(format!("{attempt}.log"))
    }
}

/// Files of one container directory, shared by the runtime and the shim.
pub(crate) struct ContainerFiles;

impl ContainerFiles {
    pub const RECORD: &'static str = "record.json";
    pub const STATE: &'static str = "state.json";
    pub const SOCKET: &'static str = "shim.sock";
    pub const SHIM_LOG: &'static str = "shim.log";
    pub const ROOTFS: &'static str = "rootfs";
    pub const TERMINATION_LOG: &'static str = "termination-log";
}

/// A sandbox as created, enough to tear it down later.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct SandboxRecord {
    pub pod_uid: String,
    pub namespace: String,
    pub pod_name: String,
    pub hostname: String,
    pub host_network: bool,
    /// Absent in records written before hostPID and hostIPC were served.
    #[serde(default)]
    pub host_pid: bool,
    #[serde(default)]
    pub host_ipc: bool,
    pub share_pid: bool,
    /// The pause process, identified by pid and start time (pids get reused).
    pub pause_pid: i32,
    pub pause_start_time: u64,
    pub ip: Option<IpAddr>,
    pub veth: Option<String>,
    pub bridge: String,
    /// Volume name -> host directory (or file source) and whether it is a tmpfs we mounted.
    pub volumes: BTreeMap<String, VolumeRecord>,
    pub created_at: SystemTime,
    pub stopped: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct VolumeRecord {
    pub path: PathBuf,
    pub tmpfs: bool,
}

/// What the agent asked for; written once at create time.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct ContainerRecord {
    pub id: String,
    pub pod_uid: String,
    pub name: String,
    pub attempt: u32,
    pub image: String,
    pub image_id: String,
    pub log_path: PathBuf,
    pub stop_signal: i32,
    pub termination_message_path: Option<String>,
    /// Keep the container's stdin open for attach.
    pub stdin: bool,
    /// Close the container's stdin when the first attach session's input
    /// ends; otherwise it stays open for the next session.
    #[serde(default)]
    pub stdin_once: bool,
    pub created_at: SystemTime,
}

/// A container's lifecycle as the shim drives it. The guard methods say
/// which verbs each state allows, so every verb checks the same rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Status {
    Created,
    Running,
    Exited,
}

impl Status {
    pub fn can_start(self) -> bool {
        self == Status::Created
    }
    pub fn can_signal(self) -> bool {
        matches!(self, Status::Created | Status::Running)
    }
    pub fn can_exec(self) -> bool {
        self == Status::Running
    }
    pub fn is_exited(self) -> bool {
        self == Status::Exited
    }
}

/// Written by the shim at each transition.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct ShimState {
    pub status: Status,
    /// Host pid of the container's init process.
    pub pid: i32,
    pub started_at: Option<SystemTime>,
    pub finished_at: Option<SystemTime>,
    pub exit_code: Option<i32>,
    pub oom_killed: bool,
}

/// Writes through a temporary file and a rename, so readers never see half
/// a file. Not synced to disk: these records describe processes that do not
/// survive the machine, and an fsync per record cost milliseconds per
/// container start. An agent restart sees them in the page cache.
pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    write_file(path, value, false)
}

/// [`write_json`] synced to disk, for what must survive a reboot.
pub(crate) fn write_json_durable<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    write_file(path, value, true)
}

fn write_file<T: Serialize>(path: &Path, value: &T, sync: bool) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&serde_json::to_vec(value).map_err(std::io::Error::other)?)?;
    if sync {
        f.sync_data()?;
    }
    std::fs::rename(&tmp, path)
}

pub(crate) fn read_json<T: DeserializeOwned>(path: &Path) -> std::io::Result<T> {
    let data = std::fs::read(path)?;
    serde_json::from_slice(&data).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{}: {e}", path.display()),
        )
    })
}

/// Start time of a live (not zombie) process in clock ticks since boot
/// (field 22 of /proc/PID/stat), to tell it from a reused pid.
pub(crate) fn process_start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces; fields resume after its ')'.
    let mut fields = stat[stat.rfind(')')? + 2..].split(' ');
    if fields.next()? == "Z" {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

/// A random 32-hex-digit id.
pub(crate) fn random_id() -> std::io::Result<String> {
    let mut bytes = [0u8; 16];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_guards() {
        assert!(Status::Created.can_start());
        assert!(!Status::Running.can_start());
        assert!(Status::Running.can_exec());
        assert!(!Status::Created.can_exec());
        assert!(!Status::Exited.can_signal());
        assert!(Status::Exited.is_exited());
    }

    #[test]
    fn start_time_of_self_is_known() {
        let me = std::process::id() as i32;
        assert!(process_start_time(me).is_some());
        assert_eq!(process_start_time(me), process_start_time(me));
    }

    #[test]
    fn json_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.json");
        let s = ShimState {
            status: Status::Running,
            pid: 7,
            started_at: Some(SystemTime::UNIX_EPOCH),
            finished_at: None,
            exit_code: None,
            oom_killed: false,
        };
        write_json(&p, &s).unwrap();
        let back: ShimState = read_json(&p).unwrap();
        assert_eq!(back.status, Status::Running);
        assert_eq!(back.pid, 7);
        assert_eq!(random_id().unwrap().len(), 32);
    }
}
