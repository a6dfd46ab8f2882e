//! configMap, secret, downwardAPI and projected volumes, written by the
//! agent so it can keep them current while the pod runs.
//!
//! The layout is the kubelet's: the files live in a hidden timestamped
//! directory (`..2026_11_28_15_40_00.123456789`), `..data` is a symlink to
//! it, and each top-level name the user sees is a symlink into `..data`.
//! An update writes a new timestamped directory and swaps `..data` with one
//! rename, so a reader sees either the old set of files or the new one,
//! never a mix. A subPath mount binds the resolved file of the directory of
//! its time, so it keeps that content (as in Kubernetes).
//!
//! Secret, downwardAPI and projected volumes (service account tokens) are
//! written on a tmpfs of their own, never on the node's disk, as the
//! kubelet does; configMap volumes stay on disk.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

/// Relative path -> (content, mode), as the resolver produces them.
pub type Files = BTreeMap<String, (Vec<u8>, u32)>;

const DATA: &str = "..data";
const DATA_TMP: &str = "..data_tmp";

/// Where the agent keeps the volumes of one pod.
pub fn pod_dir(agent_dir: &Path, uid: &str) -> PathBuf {
    agent_dir.join("volumes").join(uid)
}

fn invalid(msg: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, msg)
}

/// Names starting with `..` are the writer's own; paths must stay inside.
fn check_path(rel: &str) -> std::io::Result<()> {
    let p = Path::new(rel);
    let plain = !rel.is_empty() && p.components().all(|c| matches!(c, Component::Normal(_)));
    if !plain || rel.starts_with("..") {
        return Err(invalid(format!(
            "file path {rel:?} must be relative, without '..' and not start with '..'"
        )));
    }
    Ok(())
}

/// The files under the current data directory, to skip writes that would
/// change nothing.
fn read_tree(root: &Path, rel: &Path, out: &mut Files) -> std::io::Result<()> {
    for entry in std::fs::read_dir(root.join(rel))? {
        let entry = entry?;
        let rel = rel.join(entry.file_name());
        let meta = entry.metadata()?;
        if meta.is_dir() {
            read_tree(root, &rel, out)?;
        } else {
            let content = std::fs::read(root.join(&rel))?;
            out.insert(
                rel.to_string_lossy().into_owned(),
                (content, meta.permissions().mode() & 0o7777),
            );
        }
    }
    Ok(())
}

/// Makes `dir` show exactly `files`; returns whether anything changed.
pub fn write(dir: &Path, files: &Files) -> std::io::Result<bool> {
    for rel in files.keys() {
        check_path(rel)?;
    }
    std::fs::create_dir_all(dir)?;
    let old = std::fs::read_link(dir.join(DATA)).ok();
    if let Some(old) = &old {
        let mut current = Files::new();
        if read_tree(&dir.join(old), Path::new(""), &mut current).is_ok() && current == *files {
            return Ok(false);
        }
    }
    // Unique even for two writes within the same nanosecond.
    let stamp = chrono::Utc::now()
        .format("..%Y_%m_%d_%H_%M_%S.%f")
        .to_string();
    let mut ts_name = stamp.clone();
    let mut n = 0;
    while let Err(e) = std::fs::create_dir(dir.join(&ts_name)) {
        if e.kind() != std::io::ErrorKind::AlreadyExists {
            return Err(e);
        }
        n += 1;
        ts_name = format!("{stamp}{n}");
    }
    let ts = dir.join(&ts_name);
    std::fs::set_permissions(&ts, std::fs::Permissions::from_mode(0o755))?;
    for (rel, (content, mode)) in files {
        let path = ts.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, content)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & 0o7777))?;
    }
    // The swap: a new symlink renamed over the old one.
    let tmp = dir.join(DATA_TMP);
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&ts_name, &tmp)?;
    std::fs::rename(&tmp, dir.join(DATA))?;
    // The visible names: one symlink per top-level entry.
    let wanted: BTreeSet<String> = files
        .keys()
        .filter_map(|rel| Path::new(rel).components().next())
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    for name in &wanted {
        let link = dir.join(name);
        let target = Path::new(DATA).join(name);
        if std::fs::read_link(&link).ok().as_deref() != Some(target.as_path()) {
            let tmp = dir.join(format!("{DATA_TMP}.{name}"));
            let _ = std::fs::remove_file(&tmp);
            std::os::unix::fs::symlink(&target, &tmp)?;
            std::fs::rename(&tmp, &link)?;
        }
    }
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if !name.starts_with("..") && !wanted.contains(&name) {
            std::fs::remove_file(dir.join(&name))?;
        }
    }
    if let Some(old) = old {
        if old != Path::new(&ts_name) {
            std::fs::remove_dir_all(dir.join(old))?;
        }
    }
    Ok(true)
}

/// Whether something is mounted at `dir` (it is on another device than
/// its parent).
fn is_mount_point(dir: &Path) -> std::io::Result<bool> {
    let Some(parent) = dir.parent() else {
        return Ok(true);
    };
    Ok(std::fs::metadata(dir)?.dev() != std::fs::metadata(parent)?.dev())
}

/// The root of a volume on the node's disk: world-writable, as the
/// kubelet's (the container mounts it read-only).
pub fn ensure_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    if std::fs::metadata(dir)?.permissions().mode() & 0o777 != 0o777 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777))?;
    }
    Ok(())
}

/// Mounts a tmpfs at `dir` unless one is there already (after an agent
/// restart), so that what is written there stays in memory. Its root is
/// world-writable with the sticky bit, as the kubelet's (the container
/// mounts it read-only).
pub fn ensure_tmpfs(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    if is_mount_point(dir)? {
        return Ok(());
    }
    mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=1777"),
    )
    .map_err(|e| std::io::Error::other(format!("mounting a tmpfs at {}: {e}", dir.display())))
}

/// Unmounts the tmpfs volumes under a pod's directory.
fn unmount_volumes(pod_dir: &Path) {
    for entry in std::fs::read_dir(pod_dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if is_mount_point(&path).unwrap_or(false) {
            if let Err(e) = umount2(&path, MntFlags::MNT_DETACH) {
                tracing::warn!("unmounting the volume {}: {e}", path.display());
            }
        }
    }
}

/// The pods that have volume files here.
pub fn pod_uids(agent_dir: &Path) -> Vec<String> {
    std::fs::read_dir(agent_dir.join("volumes"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// Removes the volumes of a pod that is gone.
pub fn remove_pod(agent_dir: &Path, uid: &str) {
    let dir = pod_dir(agent_dir, uid);
    unmount_volumes(&dir);
    if let Err(e) = std::fs::remove_dir_all(&dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(pod_uid = %uid, "removing the pod's volume files in {}: {e}", dir.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(entries: &[(&str, &str, u32)]) -> Files {
        entries
            .iter()
            .map(|(p, c, m)| (p.to_string(), (c.as_bytes().to_vec(), *m)))
            .collect()
    }

    #[test]
    fn updates_swap_the_data_link_and_keep_visible_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let vol = dir.path().join("cfg");
        let v1 = files(&[("key", "one", 0o644), ("conf/app.yaml", "a: 1", 0o400)]);
        assert!(write(&vol, &v1).unwrap());
        assert_eq!(
            std::fs::read_link(vol.join("key")).unwrap(),
            Path::new("..data/key")
        );
        assert_eq!(
            std::fs::read_link(vol.join("conf")).unwrap(),
            Path::new("..data/conf")
        );
        assert_eq!(std::fs::read_to_string(vol.join("key")).unwrap(), "one");
        let mode = std::fs::metadata(vol.join("conf/app.yaml"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o400);
        let first = std::fs::read_link(vol.join(DATA)).unwrap();
        // The file a subPath mount would bind.
        let pinned = vol.join("key").canonicalize().unwrap();

        // Same content: nothing is rewritten.
        assert!(!write(&vol, &v1).unwrap());
        assert_eq!(std::fs::read_link(vol.join(DATA)).unwrap(), first);

        let v2 = files(&[("key", "two", 0o644), ("new", "n", 0o644)]);
        assert!(write(&vol, &v2).unwrap());
        assert_ne!(std::fs::read_link(vol.join(DATA)).unwrap(), first);
        assert_eq!(std::fs::read_to_string(vol.join("key")).unwrap(), "two");
        assert_eq!(std::fs::read_to_string(vol.join("new")).unwrap(), "n");
        assert!(!vol.join("conf").exists(), "dropped paths disappear");
        assert!(!pinned.exists(), "the old data directory is removed");
        let names: BTreeSet<String> = std::fs::read_dir(&vol)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names.len(),
            4,
            "key, new, ..data and one data dir: {names:?}"
        );
    }

    #[test]
    fn memory_volumes_are_a_tmpfs_until_the_pod_goes() {
        let dir = tempfile::tempdir().unwrap();
        let vol = pod_dir(dir.path(), "uid-1").join("token");
        ensure_tmpfs(&vol).unwrap();
        let fs = nix::sys::statfs::statfs(&vol).unwrap();
        assert_eq!(fs.filesystem_type(), nix::sys::statfs::TMPFS_MAGIC);
        // Again (an agent restart): the same mount, its files kept.
        write(&vol, &files(&[("token", "t", 0o644)])).unwrap();
        ensure_tmpfs(&vol).unwrap();
        assert_eq!(std::fs::read_to_string(vol.join("token")).unwrap(), "t");
        let mounts = || {
            std::fs::read_to_string("/proc/self/mountinfo")
                .unwrap()
                .lines()
                .filter(|l| l.contains(&*dir.path().to_string_lossy()))
                .count()
        };
        assert_eq!(mounts(), 1);
        remove_pod(dir.path(), "uid-1");
        assert_eq!(mounts(), 0, "the tmpfs is unmounted");
        assert!(!pod_dir(dir.path(), "uid-1").exists());
    }

    #[test]
    fn paths_must_stay_inside_and_leave_the_writers_names_alone() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["../x", "/etc/passwd", "..data", "a/../../b", ""] {
            assert!(
                write(dir.path(), &files(&[(bad, "x", 0o644)])).is_err(),
                "{bad:?} accepted"
            );
        }
    }
}
