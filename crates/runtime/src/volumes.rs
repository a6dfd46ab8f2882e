//! Pod volumes on the host (emptyDir, hostPath, files written for
//! configMap/secret/downwardAPI) and the bind mounts a container gets from them.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use nix::mount::{mount, MsFlags};

use crate::spec::BindMount;
use crate::state::VolumeRecord;
use crate::{Mount, VolumeSource};

#[derive(Debug, thiserror::Error)]
pub(crate) enum VolumeError {
    #[error("volume {volume}: {message}")]
    Setup { volume: String, message: String },
    #[error("volumeMount {0} refers to a volume the pod does not have")]
    UnknownVolume(String),
    #[error("subPath {0:?} must be a relative path without '..'")]
    BadSubPath(String),
    #[error("subPath {sub_path:?} of volume {volume} resolves outside the volume")]
    SubPathEscapes { volume: String, sub_path: String },
}

fn setup_err(volume: &str, e: impl std::fmt::Display) -> VolumeError {
    VolumeError::Setup {
        volume: volume.to_string(),
        message: e.to_string(),
    }
}

/// `fsGroupChangePolicy`: whether a volume whose root already has the
/// group and modes is walked again.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FsGroupChangePolicy {
    #[default]
    Always,
    OnRootMismatch,
}

/// The pod's `fsGroup` as the kubelet applies it to a volume (its
/// SetVolumeOwnership): everything in it belongs to the group, files get
/// group read (and write unless the volume is read-only, as API-data
/// volumes are) on top of their mode, directories also group search and
/// the setgid bit, so that new files inherit the group. Symlinks get the
/// group only.
pub fn set_volume_ownership(
    root: &Path,
    gid: u32,
    read_only: bool,
    policy: FsGroupChangePolicy,
) -> std::io::Result<()> {
    let mask = if read_only { 0o440 } else { 0o660 };
    let wanted = |meta: &std::fs::Metadata| {
        let extra = if meta.is_dir() { 0o2110 } else { 0 };
        (meta.permissions().mode() & 0o7777) | mask | extra
    };
    if policy == FsGroupChangePolicy::OnRootMismatch {
        let meta = std::fs::metadata(root)?;
        if meta.gid() == gid && meta.permissions().mode() & 0o7777 == wanted(&meta) {
            return Ok(());
        }
    }
    let mut pending = vec![root.to_path_buf()];
    while let Some(path) = pending.pop() {
        let meta = std::fs::symlink_metadata(&path)?;
        std::os::unix::fs::lchown(&path, None, Some(gid))?;
        if meta.file_type().is_symlink() {
            continue;
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(wanted(&meta)))?;
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path)? {
                pending.push(entry?.path());
            }
        }
    }
    Ok(())
}

/// Creates the pod's volumes under `dir` (`pods/<uid>/volumes`), owned by
/// the pod's fsGroup if it has one (host paths never are).
pub(crate) fn prepare(
    dir: &Path,
    volumes: &BTreeMap<String, VolumeSource>,
    fs_group: Option<(u32, FsGroupChangePolicy)>,
) -> Result<BTreeMap<String, VolumeRecord>, VolumeError> {
    let mut out = BTreeMap::new();
    for (name, source) in volumes {
        let record = match source {
            VolumeSource::EmptyDir { memory, size_limit } => {
                let path = dir.join(name);
                std::fs::create_dir_all(&path).map_err(|e| setup_err(name, e))?;
                // emptyDir is world-writable, as the kubelet makes it.
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777))
                    .map_err(|e| setup_err(name, e))?;
                if *memory {
                    let mut opts = "mode=1777".to_string();
                    if let Some(limit) = size_limit {
                        opts.push_str(&format!(",size={limit}"));
                    }
                    if !crate::rootfs::is_mounted(&path) {
                        mount(
                            Some("tmpfs"),
                            &path,
                            Some("tmpfs"),
                            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                            Some(opts.as_str()),
                        )
                        .map_err(|e| setup_err(name, format!("mount tmpfs: {e}")))?;
                    }
                }
                VolumeRecord {
                    path,
                    tmpfs: *memory,
                }
            }
            VolumeSource::HostPath { path } => VolumeRecord {
                path: path.clone(),
                tmpfs: false,
            },
            VolumeSource::Files {
                files,
                default_mode,
            } => {
                let path = dir.join(name);
                write_files(&path, files, *default_mode).map_err(|e| setup_err(name, e))?;
                VolumeRecord { path, tmpfs: false }
            }
        };
        if let Some((gid, policy)) = fs_group {
            let read_only = match source {
                VolumeSource::EmptyDir { .. } => Some(false),
                VolumeSource::Files { .. } => Some(true),
                VolumeSource::HostPath { .. } => None,
            };
            if let Some(read_only) = read_only {
                set_volume_ownership(&record.path, gid, read_only, policy)
                    .map_err(|e| setup_err(name, format!("applying fsGroup {gid}: {e}")))?;
            }
        }
        out.insert(name.clone(), record);
    }
    Ok(out)
}

fn write_files(
    root: &Path,
    files: &BTreeMap<String, (Vec<u8>, u32)>,
    default_mode: u32,
) -> std::io::Result<()> {
    std::fs::create_dir_all(root)?;
    for (rel, (content, mode)) in files {
        let rel_path = Path::new(rel);
        if !is_plain_relative(rel_path) {
            return Err(std::io::Error::other(format!(
                "file path {rel:?} must be relative without '..'"
            )));
        }
        let path = root.join(rel_path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, content)?;
        let mode = if *mode == 0 { default_mode } else { *mode };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & 0o7777))?;
    }
    Ok(())
}

fn is_plain_relative(p: &Path) -> bool {
    !p.as_os_str().is_empty() && p.components().all(|c| matches!(c, Component::Normal(_)))
}

/// The bind mounts for a container's volumeMounts. A subPath is created if
/// missing (as the kubelet does) and must stay inside its volume.
pub(crate) fn binds(
    volumes: &BTreeMap<String, VolumeRecord>,
    mounts: &[Mount],
) -> Result<Vec<BindMount>, VolumeError> {
    mounts
        .iter()
        .map(|m| {
            let vol = volumes
                .get(&m.volume)
                .ok_or_else(|| VolumeError::UnknownVolume(m.volume.clone()))?;
            let source = match m.sub_path.as_deref().filter(|s| !s.is_empty()) {
                None => vol.path.clone(),
                Some(sub) => sub_path_source(&m.volume, &vol.path, sub)?,
            };
            Ok(BindMount {
                source,
                destination: m.container_path.clone(),
                read_only: m.read_only,
            })
        })
        .collect()
}

fn sub_path_source(volume: &str, root: &Path, sub: &str) -> Result<PathBuf, VolumeError> {
    if !is_plain_relative(Path::new(sub)) {
        return Err(VolumeError::BadSubPath(sub.to_string()));
    }
    let path = root.join(sub);
    if !path.exists() {
        std::fs::create_dir_all(&path).map_err(|e| setup_err(volume, e))?;
    }
    // A symlink inside the volume must not lead out of it.
    let real = path.canonicalize().map_err(|e| setup_err(volume, e))?;
    let real_root = root.canonicalize().map_err(|e| setup_err(volume, e))?;
    if !real.starts_with(&real_root) {
        return Err(VolumeError::SubPathEscapes {
            volume: volume.to_string(),
            sub_path: sub.to_string(),
        });
    }
    Ok(real)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_volumes_and_sub_paths() {
        let dir = tempfile::tempdir().unwrap();
        let mut vols = BTreeMap::new();
        let mut files = BTreeMap::new();
        files.insert("conf/app.yaml".to_string(), (b"a: 1".to_vec(), 0));
        files.insert("key".to_string(), (b"s3cret".to_vec(), 0o400));
        vols.insert(
            "cfg".to_string(),
            VolumeSource::Files {
                files,
                default_mode: 0o644,
            },
        );
        vols.insert(
            "scratch".to_string(),
            VolumeSource::EmptyDir {
                memory: false,
                size_limit: None,
            },
        );
        let rec = prepare(dir.path(), &vols, None).unwrap();
        let cfg = &rec["cfg"].path;
        assert_eq!(
            std::fs::read_to_string(cfg.join("conf/app.yaml")).unwrap(),
            "a: 1"
        );
        let mode = |p: PathBuf| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(cfg.join("key")), 0o400);
        assert_eq!(mode(cfg.join("conf/app.yaml")), 0o644);

        let m = |vol: &str, sub: Option<&str>| Mount {
            volume: vol.into(),
            container_path: "/x".into(),
            sub_path: sub.map(String::from),
            read_only: true,
        };
        let b = binds(&rec, &[m("scratch", Some("a/b"))]).unwrap();
        assert!(b[0].source.ends_with("scratch/a/b") && b[0].source.is_dir());
        assert!(b[0].read_only);
        assert!(matches!(
            binds(&rec, &[m("scratch", Some("../etc"))]),
            Err(VolumeError::BadSubPath(_))
        ));
        assert!(matches!(
            binds(&rec, &[m("nope", None)]),
            Err(VolumeError::UnknownVolume(_))
        ));
        std::os::unix::fs::symlink("/etc", rec["scratch"].path.join("out")).unwrap();
        assert!(matches!(
            binds(&rec, &[m("scratch", Some("out"))]),
            Err(VolumeError::SubPathEscapes { .. })
        ));
    }

    #[test]
    fn fs_group_owns_volumes_as_the_kubelet_does() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let mut vols = BTreeMap::new();
        let mut files = BTreeMap::new();
        files.insert("conf/app.yaml".to_string(), (b"a: 1".to_vec(), 0));
        files.insert("key".to_string(), (b"s3cret".to_vec(), 0o400));
        vols.insert(
            "cfg".to_string(),
            VolumeSource::Files {
                files,
                default_mode: 0o644,
            },
        );
        vols.insert(
            "scratch".to_string(),
            VolumeSource::EmptyDir {
                memory: false,
                size_limit: None,
            },
        );
        let rec = prepare(dir.path(), &vols, Some((2000, FsGroupChangePolicy::Always))).unwrap();
        let stat = |p: PathBuf| {
            let m = std::fs::metadata(p).unwrap();
            (m.gid(), m.permissions().mode() & 0o7777)
        };
        assert_eq!(stat(rec["scratch"].path.clone()), (2000, 0o2777));
        let cfg = &rec["cfg"].path;
        assert_eq!(stat(cfg.join("key")), (2000, 0o440));
        assert_eq!(stat(cfg.join("conf/app.yaml")), (2000, 0o644));
        assert_eq!(stat(cfg.join("conf")).1 & 0o2550, 0o2550);

        // OnRootMismatch leaves a volume whose root is right alone.
        let inner = rec["scratch"].path.join("later");
        std::fs::write(&inner, b"").unwrap();
        // Not the group that the setgid directory gave it.
        std::os::unix::fs::lchown(&inner, None, Some(0)).unwrap();
        let policy = FsGroupChangePolicy::OnRootMismatch;
        set_volume_ownership(&rec["scratch"].path, 2000, false, policy).unwrap();
        assert_ne!(stat(inner.clone()).0, 2000);
        set_volume_ownership(
            &rec["scratch"].path,
            2000,
            false,
            FsGroupChangePolicy::Always,
        )
        .unwrap();
        assert_eq!(stat(inner).0, 2000);
    }
}
