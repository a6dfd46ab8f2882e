//! The container's root filesystem: an overlay of the image's unpacked
//! layers (read-only) with a per-container upper directory.

use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

/// Mounts the overlay at `dir/rootfs`, with `dir/upper` and `dir/work`.
pub(crate) fn mount_overlay(dir: &Path, layers: &[PathBuf]) -> std::io::Result<PathBuf> {
    if layers.is_empty() {
        return Err(std::io::Error::other("the image has no layers"));
    }
    let rootfs = dir.join(crate::state::ContainerFiles::ROOTFS);
    let upper = dir.join("upper");
    let work = dir.join("work");
    for d in [&rootfs, &upper, &work] {
        std::fs::create_dir_all(d)?;
    }
    // overlayfs lists lower directories top layer first.
    let lower: Vec<String> = layers
        .iter()
        .rev()
        .map(|l| l.display().to_string())
        .collect();
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        upper.display(),
        work.display()
    );
    mount(
        Some("overlay"),
        &rootfs,
        Some("overlay"),
        MsFlags::empty(),
        Some(options.as_str()),
    )
    .map_err(|e| std::io::Error::other(format!("mount overlay at {}: {e}", rootfs.display())))?;
    Ok(rootfs)
}

/// Unmounts whatever is mounted at `path` (lazily, so a straggling process
/// holding it does not block removal). Not mounted is fine.
pub(crate) fn unmount(path: &Path) -> std::io::Result<()> {
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => Ok(()),
        Err(e) => Err(std::io::Error::other(format!(
            "unmount {}: {e}",
            path.display()
        ))),
    }
}

/// Whether `path` is a mount point (per /proc/self/mountinfo).
pub(crate) fn is_mounted(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let p = path.display().to_string();
    info.lines()
        .any(|l| l.split(' ').nth(4).is_some_and(|mp| mp == p))
}

/// Reads a file of the rootfs without following symlinks out of it.
pub(crate) fn read_in_rootfs(rootfs: &Path, rel: &str) -> String {
    let path = rootfs.join(rel);
    match std::fs::symlink_metadata(&path) {
        Ok(m) if m.is_file() => std::fs::read_to_string(path).unwrap_or_default(),
        _ => String::new(),
    }
}
