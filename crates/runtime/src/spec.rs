//! The OCI runtime spec of a container, from the pod's container, the image
//! config and the sandbox. Pure functions: everything read from disk
//! (`/etc/passwd` of the rootfs, the runtime's capability set) comes in as data.

use std::path::PathBuf;

use oci_spec::runtime::Spec;
use serde_json::{json, Value};

use crate::{ContainerConfig, RuntimeImage, SeccompProfile, SecurityConfig};

/// containerd's default capability set for unprivileged containers.
pub(crate) const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every capability, in kernel bit order (CAP_CHOWN is bit 0).
pub(crate) const ALL_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Kernel paths hidden from unprivileged containers, as runc's defaults.
const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Kernel paths made read-only for unprivileged containers, as runc's defaults.
const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum SpecError {
    #[error("no command specified: the container sets no command and the image has no Entrypoint or Cmd")]
    NoCommand,
    #[error("unable to find user {0}: no matching entries in passwd file")]
    UnknownUser(String),
    #[error("unable to find group {0}: no matching entries in group file")]
    UnknownGroup(String),
    #[error("container has runAsNonRoot and image has non-numeric user ({0}), cannot verify user is non-root")]
    NonNumericUser(String),
    #[error("container has runAsNonRoot and image will run as root")]
    RunsAsRoot,
    #[error("container's runAsUser breaks non-root policy")]
    RunAsUserRoot,
    #[error("invalid runtime spec: {0}")]
    Invalid(String),
}

/// The process arguments as Kubernetes applies them: `command` replaces the
/// image's Entrypoint (and drops its Cmd), `args` replaces Cmd.
pub(crate) fn process_args(
    c: &ContainerConfig,
    image: &RuntimeImage,
) -> Result<Vec<String>, SpecError> {
    let mut argv = if c.command.is_empty() {
        image.entrypoint.clone()
    } else {
        c.command.clone()
    };
    if !c.args.is_empty() {
        argv.extend(c.args.iter().cloned());
    } else if c.command.is_empty() {
        argv.extend(image.cmd.iter().cloned());
    }
    if argv.is_empty() {
        return Err(SpecError::NoCommand);
    }
    Ok(argv)
}

/// Image env first, overridden (in place) and extended by the container's.
pub(crate) fn merge_env(image_env: &[String], env: &[(String, String)]) -> Vec<String> {
    let mut out: Vec<String> = image_env.to_vec();
    for (k, v) in env {
        let entry = format!("{k}={v}");
        match out
            .iter_mut()
            .find(|e| e.split_once('=').map(|(n, _)| n) == Some(k.as_str()))
        {
            Some(existing) => *existing = entry,
            None => out.push(entry),
        }
    }
    if !out.iter().any(|e| e.starts_with("PATH=")) {
        out.insert(0, DEFAULT_PATH.to_string());
    }
    out
}

/// A resolved process identity.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct User {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub home: String,
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

fn passwd_entries(passwd: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    passwd.lines().filter_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 6 {
            return None;
        }
        Some(PasswdEntry {
            name: f[0],
            uid: f[2].parse().ok()?,
            gid: f[3].parse().ok()?,
            home: f[5],
        })
    })
}

fn group_gid(group: &str, name: &str) -> Option<u32> {
    group.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 3 && f[0] == name)
            .then(|| f[2].parse().ok())
            .flatten()
    })
}

/// Resolves the user the container runs as: `runAsUser`/`runAsGroup` over
/// the image's `User`, names looked up in the rootfs' passwd and group files.
pub(crate) fn resolve_user(
    sec: &SecurityConfig,
    image_user: Option<&str>,
    passwd: &str,
    group: &str,
) -> Result<User, SpecError> {
    let image_user = image_user.filter(|u| !u.is_empty());
    let (user_part, group_part) = match image_user {
        Some(u) => match u.split_once(':') {
            Some((u, g)) => (Some(u), Some(g)),
            None => (Some(u), None),
        },
        None => (None, None),
    };
    if sec.run_as_non_root && sec.run_as_user.is_none() {
        if let Some(u) = user_part {
            if u.parse::<u32>().is_err() {
                return Err(SpecError::NonNumericUser(u.to_string()));
            }
        }
    }
    let (uid, mut gid, home) = match (sec.run_as_user, user_part) {
        (Some(uid), _) => {
            let uid = uid as u32;
            let e = passwd_entries(passwd).find(|e| e.uid == uid);
            (
                uid,
                e.as_ref().map_or(0, |e| e.gid),
                e.map_or("/".to_string(), |e| e.home.to_string()),
            )
        }
        (None, Some(u)) => match u.parse::<u32>() {
            Ok(uid) => {
                let e = passwd_entries(passwd).find(|e| e.uid == uid);
                (
                    uid,
                    e.as_ref().map_or(0, |e| e.gid),
                    e.map_or("/".to_string(), |e| e.home.to_string()),
                )
            }
            Err(_) => {
                let e = passwd_entries(passwd)
                    .find(|e| e.name == u)
                    .ok_or_else(|| SpecError::UnknownUser(u.to_string()))?;
                (e.uid, e.gid, e.home.to_string())
            }
        },
        (None, None) => {
            let home = passwd_entries(passwd)
                .find(|e| e.uid == 0)
                .map_or("/root".to_string(), |e| e.home.to_string());
            (0, 0, home)
        }
    };
    if let Some(g) = group_part.filter(|g| !g.is_empty()) {
        gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => group_gid(group, g).ok_or_else(|| SpecError::UnknownGroup(g.to_string()))?,
        };
    }
    if let Some(g) = sec.run_as_group {
        gid = g as u32;
    }
    if sec.run_as_non_root && uid == 0 {
        return Err(if sec.run_as_user.is_some() {
            SpecError::RunAsUserRoot
        } else {
            SpecError::RunsAsRoot
        });
    }
    Ok(User {
        uid,
        gid,
        additional_gids: sec.supplemental_groups.iter().map(|g| *g as u32).collect(),
        home,
    })
}

fn cap_name(name: &str) -> String {
    let upper = name.to_ascii_uppercase();
    if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    }
}

/// The container's capabilities: containerd's default set, `drop: [ALL]`
/// first, then `add`, then the other drops; privileged gets everything.
/// Capabilities the runtime itself lacks (`held`) cannot be granted.
pub(crate) fn capabilities(sec: &SecurityConfig, held: &[&str]) -> Vec<String> {
    let mut caps: Vec<String> = if sec.privileged {
        ALL_CAPS.iter().map(|c| c.to_string()).collect()
    } else {
        let mut caps: Vec<String> = DEFAULT_CAPS.iter().map(|c| c.to_string()).collect();
        if sec
            .capabilities_drop
            .iter()
            .any(|c| c.eq_ignore_ascii_case("ALL"))
        {
            caps.clear();
        }
        for add in &sec.capabilities_add {
            if add.eq_ignore_ascii_case("ALL") {
                caps = ALL_CAPS.iter().map(|c| c.to_string()).collect();
            } else if !caps.contains(&cap_name(add)) {
                caps.push(cap_name(add));
            }
        }
        let drops: Vec<String> = sec
            .capabilities_drop
            .iter()
            .filter(|c| !c.eq_ignore_ascii_case("ALL"))
            .map(|c| cap_name(c))
            .collect();
        caps.retain(|c| !drops.contains(c));
        caps
    };
    caps.retain(|c| held.contains(&c.as_str()));
    caps
}

/// The capabilities in this process' bounding set.
pub(crate) fn held_capabilities() -> Vec<&'static str> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let bits = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        .unwrap_or(0);
    ALL_CAPS
        .iter()
        .enumerate()
        .filter(|(i, _)| bits & (1 << i) != 0)
        .map(|(_, c)| *c)
        .collect()
}

/// A bind mount into the container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BindMount {
    pub source: PathBuf,
    pub destination: String,
    pub read_only: bool,
}

/// The namespaces a container joins: those of its pod's pause process, or
/// the node's (hostNetwork, hostPID, hostIPC).
#[derive(Clone, Debug, Default)]
pub(crate) struct PodNamespaces {
    pub pause_pid: i32,
    pub host_network: bool,
    pub host_pid: bool,
    pub host_ipc: bool,
    pub share_pid: bool,
    /// The init process of a container whose PID namespace to join (an
    /// ephemeral container's target), over all of the above.
    pub target_pid: Option<i32>,
}

/// Everything besides the container config that goes into its spec.
pub(crate) struct SpecInputs<'a> {
    pub container: &'a ContainerConfig,
    pub image: &'a RuntimeImage,
    pub user: &'a User,
    pub rootfs: PathBuf,
    pub cgroups_path: String,
    pub namespaces: PodNamespaces,
    /// Pod `/etc` files, `/dev/shm`, the termination log and volumes.
    pub binds: Vec<BindMount>,
    pub held_caps: Vec<&'static str>,
}

/// The process' capabilities and the annotations that ask its executor for
/// a seccomp filter. Without `no_new_privs`, installing a filter takes
/// CAP_SYS_ADMIN: the process keeps what it needs and the annotation names
/// the container's own set, which it drops to once the filter is in place.
fn seccomp_annotations(
    sec: &SecurityConfig,
    caps: &[String],
    no_new_privileges: bool,
) -> (Vec<String>, serde_json::Map<String, Value>) {
    let mut annotations = serde_json::Map::new();
    // A privileged container runs unconfined, as with containerd.
    if sec.seccomp != SeccompProfile::RuntimeDefault || sec.privileged {
        return (caps.to_vec(), annotations);
    }
    annotations.insert(
        crate::seccomp::PROFILE_ANNOTATION.into(),
        json!(crate::seccomp::RUNTIME_DEFAULT),
    );
    let missing: Vec<&str> = crate::seccomp::INSTALL_CAPS
        .iter()
        .copied()
        .filter(|c| !caps.iter().any(|have| have == c))
        .collect();
    if no_new_privileges || missing.is_empty() {
        return (caps.to_vec(), annotations);
    }
    annotations.insert(
        crate::seccomp::CAPS_ANNOTATION.into(),
        json!(caps.join(",")),
    );
    let mut process_caps = caps.to_vec();
    process_caps.extend(missing.iter().map(|c| c.to_string()));
    (process_caps, annotations)
}

pub(crate) fn build(inputs: &SpecInputs) -> Result<Spec, SpecError> {
    let c = inputs.container;
    let sec = &c.security;
    let args = process_args(c, inputs.image)?;
    let mut env = merge_env(&inputs.image.env, &c.env);
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", inputs.user.home));
    }
    let cwd = c
        .working_dir
        .clone()
        .filter(|d| !d.is_empty())
        .or_else(|| inputs.image.working_dir.clone().filter(|d| !d.is_empty()))
        .unwrap_or_else(|| "/".to_string());
    let caps = capabilities(sec, &inputs.held_caps);
    let no_new_privileges = sec.allow_privilege_escalation == Some(false);
    let (process_caps, annotations) = seccomp_annotations(sec, &caps, no_new_privileges);

    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
               "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs",
               "options": ["nosuid", "noexec", "nodev", if sec.privileged { "rw" } else { "ro" }]}),
    ];
    for b in &inputs.binds {
        let mut options = vec!["rbind", "rprivate"];
        if b.read_only {
            options.push("ro");
        }
        mounts.push(json!({"destination": b.destination, "type": "bind",
                           "source": b.source, "options": options}));
    }

    let ns = &inputs.namespaces;
    let ns_path = |kind: &str| format!("/proc/{}/ns/{kind}", ns.pause_pid);
    // A namespace left out of the list is the node's.
    let mut namespaces = vec![json!({"type": "mount"})];
    if !ns.host_ipc {
        namespaces.push(json!({"type": "ipc", "path": ns_path("ipc")}));
    }
    if let Some(target) = ns.target_pid {
        namespaces.push(json!({"type": "pid", "path": format!("/proc/{target}/ns/pid")}));
    } else if ns.share_pid && !ns.host_pid {
        namespaces.push(json!({"type": "pid", "path": ns_path("pid")}));
    } else if !ns.host_pid {
        namespaces.push(json!({"type": "pid"}));
    }
    if !ns.host_network {
        namespaces.push(json!({"type": "network", "path": ns_path("net")}));
        namespaces.push(json!({"type": "uts", "path": ns_path("uts")}));
    }

    let r = &c.resources;
    let mut resources = json!({
        "devices": [{"allow": sec.privileged, "access": "rwm"}],
    });
    if let Some(limit) = r.memory_limit_bytes {
        resources["memory"] = json!({"limit": limit});
    }
    let mut cpu = serde_json::Map::new();
    if let Some(shares) = r.cpu_shares {
        cpu.insert("shares".into(), json!(shares));
    }
    if let Some(quota) = r.cpu_quota_us {
        cpu.insert("quota".into(), json!(quota));
    }
    if let Some(period) = r.cpu_period_us {
        cpu.insert("period".into(), json!(period));
    }
    if !cpu.is_empty() {
        resources["cpu"] = Value::Object(cpu);
    }
    if let Some(pids) = r.pids_limit {
        resources["pids"] = json!({"limit": pids});
    }

    let mut linux = json!({
        "namespaces": namespaces,
        "cgroupsPath": inputs.cgroups_path,
        "resources": resources,
    });
    if !sec.privileged {
        linux["maskedPaths"] = json!(MASKED_PATHS);
        linux["readonlyPaths"] = json!(READONLY_PATHS);
    }

    let spec = json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": c.tty,
            "user": {"uid": inputs.user.uid, "gid": inputs.user.gid,
                     "additionalGids": inputs.user.additional_gids},
            "args": args,
            "env": env,
            "cwd": cwd,
            "capabilities": {"bounding": process_caps, "effective": process_caps,
                             "permitted": process_caps},
            "noNewPrivileges": no_new_privileges,
        },
        "annotations": annotations,
        "root": {"path": inputs.rootfs, "readonly": sec.read_only_root_filesystem},
        "mounts": mounts,
        "linux": linux,
    });
    serde_json::from_value(spec).map_err(|e| SpecError::Invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(entrypoint: &[&str], cmd: &[&str]) -> RuntimeImage {
        RuntimeImage {
            entrypoint: entrypoint.iter().map(|s| s.to_string()).collect(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn container(command: &[&str], args: &[&str]) -> ContainerConfig {
        ContainerConfig {
            command: command.iter().map(|s| s.to_string()).collect(),
            args: args.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn command_and_args_as_kubernetes_applies_them() {
        let img = image(&["/entry"], &["cmd1"]);
        assert_eq!(
            process_args(&container(&[], &[]), &img).unwrap(),
            ["/entry", "cmd1"]
        );
        assert_eq!(
            process_args(&container(&["/bin/x"], &[]), &img).unwrap(),
            ["/bin/x"]
        );
        assert_eq!(
            process_args(&container(&[], &["a"]), &img).unwrap(),
            ["/entry", "a"]
        );
        assert_eq!(
            process_args(&container(&["/bin/x"], &["a"]), &img).unwrap(),
            ["/bin/x", "a"]
        );
        assert_eq!(
            process_args(&container(&[], &[]), &image(&[], &[])),
            Err(SpecError::NoCommand)
        );
    }

    #[test]
    fn container_env_overrides_image_env() {
        let env = merge_env(
            &["PATH=/bin".into(), "A=1".into()],
            &[("A".into(), "2".into()), ("B".into(), "3".into())],
        );
        assert_eq!(env, ["PATH=/bin", "A=2", "B=3"]);
        assert!(merge_env(&[], &[])[0].starts_with("PATH="));
    }

    const PASSWD: &str =
        "root:x:0:0:root:/root:/bin/sh\nwww-data:x:33:33:www:/var/www:/bin/false\n";
    const GROUP: &str = "root:x:0:\nstaff:x:50:\n";

    #[test]
    fn users_resolve_from_image_and_security_context() {
        let sec = SecurityConfig::default();
        let u = resolve_user(&sec, Some("www-data"), PASSWD, GROUP).unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (33, 33, "/var/www"));
        let u = resolve_user(&sec, Some("1000:staff"), PASSWD, GROUP).unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (1000, 50, "/"));
        let u = resolve_user(&sec, None, PASSWD, GROUP).unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (0, 0, "/root"));
        let sec = SecurityConfig {
            run_as_user: Some(33),
            run_as_group: Some(7),
            supplemental_groups: vec![9],
            ..Default::default()
        };
        let u = resolve_user(&sec, Some("root"), PASSWD, GROUP).unwrap();
        assert_eq!((u.uid, u.gid, u.additional_gids), (33, 7, vec![9]));
        assert_eq!(
            resolve_user(&SecurityConfig::default(), Some("nobody"), PASSWD, GROUP),
            Err(SpecError::UnknownUser("nobody".into()))
        );
    }

    #[test]
    fn run_as_non_root_refuses_root_and_names() {
        let sec = SecurityConfig {
            run_as_non_root: true,
            ..Default::default()
        };
        assert_eq!(
            resolve_user(&sec, None, PASSWD, GROUP),
            Err(SpecError::RunsAsRoot)
        );
        assert_eq!(
            resolve_user(&sec, Some("www-data"), PASSWD, GROUP),
            Err(SpecError::NonNumericUser("www-data".into()))
        );
        assert!(resolve_user(&sec, Some("33"), PASSWD, GROUP).is_ok());
        let root_uid = SecurityConfig {
            run_as_user: Some(0),
            ..sec
        };
        assert_eq!(
            resolve_user(&root_uid, Some("33"), PASSWD, GROUP),
            Err(SpecError::RunAsUserRoot)
        );
    }

    #[test]
    fn capabilities_add_and_drop_over_defaults() {
        let held: Vec<&str> = ALL_CAPS
            .iter()
            .copied()
            .filter(|c| *c != "CAP_SYS_RESOURCE")
            .collect();
        let sec = SecurityConfig {
            capabilities_add: vec!["NET_ADMIN".into()],
            capabilities_drop: vec!["chown".into()],
            ..Default::default()
        };
        let caps = capabilities(&sec, &held);
        assert!(caps.contains(&"CAP_NET_ADMIN".to_string()));
        assert!(!caps.contains(&"CAP_CHOWN".to_string()));
        assert!(caps.contains(&"CAP_KILL".to_string()));
        let sec = SecurityConfig {
            capabilities_add: vec!["NET_BIND_SERVICE".into()],
            capabilities_drop: vec!["ALL".into()],
            ..Default::default()
        };
        assert_eq!(capabilities(&sec, &held), ["CAP_NET_BIND_SERVICE"]);
        let sec = SecurityConfig {
            privileged: true,
            ..Default::default()
        };
        let caps = capabilities(&sec, &held);
        assert_eq!(caps.len(), ALL_CAPS.len() - 1);
        assert!(!caps.contains(&"CAP_SYS_RESOURCE".to_string()));
    }

    /// The namespaces entries of a default container's spec.
    fn namespaces_of(ns: PodNamespaces) -> Vec<(String, Option<String>)> {
        let c = ContainerConfig {
            command: vec!["sh".into()],
            ..Default::default()
        };
        let user = User {
            uid: 0,
            gid: 0,
            additional_gids: vec![],
            home: "/root".into(),
        };
        let spec = build(&SpecInputs {
            container: &c,
            image: &RuntimeImage::default(),
            user: &user,
            rootfs: "/r".into(),
            cgroups_path: "/orca/x".into(),
            namespaces: ns,
            binds: vec![],
            held_caps: held_capabilities(),
        })
        .unwrap();
        let v = serde_json::to_value(&spec).unwrap();
        v["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| {
                (
                    n["type"].as_str().unwrap().to_string(),
                    n["path"].as_str().map(str::to_string),
                )
            })
            .collect()
    }

    #[test]
    fn host_namespaces_are_left_out_and_a_target_gives_its_pid_namespace() {
        let host = namespaces_of(PodNamespaces {
            pause_pid: 42,
            host_network: true,
            host_pid: true,
            host_ipc: true,
            ..Default::default()
        });
        assert_eq!(host, vec![("mount".to_string(), None)]);
        let target = namespaces_of(PodNamespaces {
            pause_pid: 42,
            share_pid: true,
            target_pid: Some(77),
            ..Default::default()
        });
        let path = |kind: &str| {
            target
                .iter()
                .find(|(k, _)| k == kind)
                .and_then(|(_, p)| p.clone())
        };
        assert_eq!(path("pid").as_deref(), Some("/proc/77/ns/pid"));
        assert_eq!(path("ipc").as_deref(), Some("/proc/42/ns/ipc"));
        assert_eq!(path("network").as_deref(), Some("/proc/42/ns/net"));
        assert_eq!(path("uts").as_deref(), Some("/proc/42/ns/uts"));
    }

    #[test]
    fn spec_carries_namespaces_resources_and_security() {
        let c = ContainerConfig {
            command: vec!["sh".into()],
            resources: crate::Resources {
                memory_limit_bytes: Some(64 << 20),
                cpu_quota_us: Some(50_000),
                cpu_period_us: Some(100_000),
                pids_limit: Some(100),
                ..Default::default()
            },
            security: SecurityConfig {
                read_only_root_filesystem: true,
                allow_privilege_escalation: Some(false),
                ..Default::default()
            },
            ..Default::default()
        };
        let img = RuntimeImage::default();
        let user = User {
            uid: 0,
            gid: 0,
            additional_gids: vec![],
            home: "/root".into(),
        };
        let spec = build(&SpecInputs {
            container: &c,
            image: &img,
            user: &user,
            rootfs: "/r".into(),
            cgroups_path: "/orca/x".into(),
            namespaces: PodNamespaces {
                pause_pid: 42,
                ..Default::default()
            },
            binds: vec![BindMount {
                source: "/v".into(),
                destination: "/data".into(),
                read_only: true,
            }],
            held_caps: held_capabilities(),
        })
        .unwrap();
        let v = serde_json::to_value(&spec).unwrap();
        assert_eq!(v["root"]["readonly"], true);
        assert_eq!(v["process"]["noNewPrivileges"], true);
        assert_eq!(v["linux"]["resources"]["memory"]["limit"], 64 << 20);
        assert_eq!(v["linux"]["resources"]["cpu"]["quota"], 50_000);
        assert_eq!(v["linux"]["resources"]["pids"]["limit"], 100);
        let ns = v["linux"]["namespaces"].as_array().unwrap();
        assert!(ns
            .iter()
            .any(|n| n["type"] == "network" && n["path"] == "/proc/42/ns/net"));
        assert!(ns
            .iter()
            .any(|n| n["type"] == "pid" && n.get("path").is_none()));
        let data = v["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == "/data")
            .unwrap();
        assert!(data["options"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("ro")));
        assert!(v["linux"]["maskedPaths"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("/proc/kcore")));
    }

    #[test]
    fn runtime_default_keeps_what_installing_the_filter_needs() {
        let sec = SecurityConfig {
            seccomp: SeccompProfile::RuntimeDefault,
            ..Default::default()
        };
        let caps = capabilities(&sec, ALL_CAPS);
        let (process, annotations) = seccomp_annotations(&sec, &caps, false);
        assert_eq!(process.last().map(String::as_str), Some("CAP_SYS_ADMIN"));
        assert_eq!(annotations[crate::seccomp::CAPS_ANNOTATION], caps.join(","));
        // With no_new_privs the filter needs no privilege.
        let (process, annotations) = seccomp_annotations(&sec, &caps, true);
        assert_eq!(process, caps);
        assert_eq!(annotations.len(), 1);
        // Privileged and Unconfined containers get no filter.
        let privileged = SecurityConfig {
            privileged: true,
            ..sec
        };
        assert!(seccomp_annotations(&privileged, &caps, false).1.is_empty());
        let unconfined = SecurityConfig::default();
        assert!(seccomp_annotations(&unconfined, &caps, false).1.is_empty());
    }
}
