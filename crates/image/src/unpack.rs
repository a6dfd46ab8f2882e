//! Unpacks one layer tar (plain, gzip or zstd) into its own directory, in
//! the form overlayfs wants for a lowerdir: whiteouts `.wh.NAME` become
//! 0:0 character devices and `.wh..wh..opq` becomes the
//! `trusted.overlay.opaque=y` xattr on its directory.
//!
//! Every entry is confined to the layer directory: paths that climb out
//! with `..`, hard links to absolute or escaping targets, and entries
//! reached through a symlink are refused, and nothing is ever written
//! through an existing symlink.

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::sys::stat::{makedev, mknod, utimensat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchownat, Gid, Uid};

use crate::digest::HashingReader;
use crate::Error;

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// What unpacking learned about the layer.
#[derive(Debug)]
pub(crate) struct Unpacked {
    /// sha256 of the uncompressed tar: the layer's diff ID.
    pub diff_id: String,
    /// sha256 of the bytes as read (the blob digest).
    pub blob_digest: String,
    /// Bytes of regular file content.
    pub size: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Compression {
    None,
    Gzip,
    Zstd,
}

fn detect(magic: &[u8]) -> Compression {
    if magic.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// Unpacks `src` into the empty directory `dest`. `layer` names the layer
/// in errors.
pub(crate) fn unpack_layer(src: impl Read, dest: &Path, layer: &str) -> Result<Unpacked, Error> {
    let io_err = |e: io::Error| Error::io(format!("unpacking layer {layer}"), e);
    let mut blob = BufReader::with_capacity(256 * 1024, HashingReader::new(src));
    let compression = detect(blob.fill_buf().map_err(io_err)?);
    let decoded: Box<dyn Read + '_> = match compression {
        Compression::None => Box::new(&mut blob),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(&mut blob)),
        Compression::Zstd => {
            Box::new(zstd::stream::read::Decoder::with_buffer(&mut blob).map_err(io_err)?)
        }
    };
    let mut tar = HashingReader::new(decoded);
    let size = {
        let mut unpacker = Unpacker {
            root: dest,
            layer,
            dirs: Vec::new(),
            size: 0,
        };
        unpacker.run(&mut tar)?;
        unpacker.size
    };
    let (diff_id, _) = tar.finish().map_err(io_err)?;
    // Whatever follows the compressed stream still belongs to the blob.
    io::copy(&mut blob, &mut io::sink()).map_err(io_err)?;
    let (blob_digest, _) = blob.into_inner().finish().map_err(io_err)?;
    Ok(Unpacked {
        diff_id,
        blob_digest,
        size,
    })
}

struct Unpacker<'a> {
    root: &'a Path,
    layer: &'a str,
    /// Directories and their mtimes, set last (creating entries in a
    /// directory changes its mtime).
    dirs: Vec<(PathBuf, u64)>,
    size: u64,
}

impl Unpacker<'_> {
    fn run(&mut self, src: &mut dyn Read) -> Result<(), Error> {
        let mut archive = tar::Archive::new(src);
        let entries = archive.entries().map_err(|e| self.io("reading tar", e))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| self.io("reading tar entry", e))?;
            self.entry(&mut entry)?;
        }
        // Children before parents, so setting a child's time doesn't move
        // the parent's.
        for (path, mtime) in self.dirs.iter().rev() {
            set_mtime(path, *mtime).map_err(|e| self.io(&path.display().to_string(), e))?;
        }
        Ok(())
    }

    fn entry(&mut self, entry: &mut tar::Entry<'_, &mut dyn Read>) -> Result<(), Error> {
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let rel = self.confine(&raw, &shown)?;
        let header = entry.header().clone();
        let kind = header.entry_type();

        let Some(rel) = rel else {
            // The layer root itself (`./`): keep its metadata.
            if kind.is_dir() {
                self.apply_metadata(self.root, &header, entry, false)?;
                self.dirs
                    .push((self.root.to_path_buf(), header.mtime().unwrap_or(0)));
            }
            return Ok(());
        };
        let name = rel
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
            return self.whiteout(&rel, hidden, &header, &shown);
        }

        self.make_parents(&rel, &shown)?;
        let path = self.root.join(&rel);
        match kind {
            tar::EntryType::Directory => {
                let existing = fs::symlink_metadata(&path).ok();
                if !existing.is_some_and(|m| m.is_dir()) {
                    self.clear(&path)?;
                    fs::create_dir(&path).map_err(|e| self.io(&shown, e))?;
                }
                self.apply_metadata(&path, &header, entry, false)?;
                self.dirs.push((path, header.mtime().unwrap_or(0)));
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                self.clear(&path)?;
                // O_EXCL: never writes through a symlink planted meanwhile.
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .map_err(|e| self.io(&shown, e))?;
                self.size += io::copy(entry, &mut file).map_err(|e| self.io(&shown, e))?;
                drop(file);
                self.apply_metadata(&path, &header, entry, false)?;
                set_mtime(&path, header.mtime().unwrap_or(0)).map_err(|e| self.io(&shown, e))?;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| self.unsafe_entry(&shown, "symlink without a target"))?
                    .into_owned();
                self.clear(&path)?;
                std::os::unix::fs::symlink(OsStr::from_bytes(&target), &path)
                    .map_err(|e| self.io(&shown, e))?;
                self.apply_metadata(&path, &header, entry, true)?;
                set_mtime(&path, header.mtime().unwrap_or(0)).map_err(|e| self.io(&shown, e))?;
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| self.unsafe_entry(&shown, "hard link without a target"))?
                    .into_owned();
                if target.starts_with(b"/") {
                    return Err(self.unsafe_entry(
                        &shown,
                        &format!(
                            "hard link target {:?} is an absolute path",
                            String::from_utf8_lossy(&target)
                        ),
                    ));
                }
                let target_rel = self
                    .confine(&target, &shown)?
                    .ok_or_else(|| self.unsafe_entry(&shown, "hard link to the layer root"))?;
                self.check_no_symlink_parents(&target_rel, &shown)?;
                let target_path = self.root.join(&target_rel);
                match fs::symlink_metadata(&target_path) {
                    Ok(m) if !m.is_dir() => {}
                    _ => {
                        return Err(self.unsafe_entry(
                            &shown,
                            &format!(
                                "hard link target {:?} is not a file earlier in this layer",
                                target_rel.display()
                            ),
                        ))
                    }
                }
                if target_path != path {
                    self.clear(&path)?;
                    fs::hard_link(&target_path, &path).map_err(|e| self.io(&shown, e))?;
                }
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                self.clear(&path)?;
                let mode = Mode::from_bits_truncate(header.mode().unwrap_or(0o644) & 0o7777);
                let (flag, dev) = match kind {
                    tar::EntryType::Char => (SFlag::S_IFCHR, device(&header)),
                    tar::EntryType::Block => (SFlag::S_IFBLK, device(&header)),
                    _ => (SFlag::S_IFIFO, 0),
                };
                match mknod(&path, flag, mode, dev) {
                    Ok(()) => {
                        self.apply_metadata(&path, &header, entry, false)?;
                        set_mtime(&path, header.mtime().unwrap_or(0))
                            .map_err(|e| self.io(&shown, e))?;
                    }
                    // Without CAP_MKNOD device nodes are skipped, as
                    // rootless runtimes do; containers get /dev from the runtime.
                    Err(Errno::EPERM) => {
                        tracing::debug!(layer = self.layer, entry = %shown, "device node skipped: no CAP_MKNOD");
                    }
                    Err(e) => return Err(self.io(&shown, e.into())),
                }
            }
            other => {
                tracing::debug!(layer = self.layer, entry = %shown, kind = ?other, "tar entry type ignored");
            }
        }
        Ok(())
    }

    /// `.wh.NAME` hides NAME of lower layers; `.wh..wh..opq` hides every
    /// lower entry of its directory.
    fn whiteout(
        &mut self,
        rel: &Path,
        hidden: &str,
        header: &tar::Header,
        shown: &str,
    ) -> Result<(), Error> {
        let parent = rel.parent().unwrap_or(Path::new(""));
        if rel.file_name() == Some(OsStr::new(OPAQUE_MARKER)) {
            self.make_parents(rel, shown)?;
            let dir = self.root.join(parent);
            return xattr::set(&dir, OPAQUE_XATTR, b"y").map_err(|e| {
                self.io(
                    &format!("{shown}: marking directory opaque (needs CAP_SYS_ADMIN for trusted.* xattrs)"),
                    e,
                )
            });
        }
        if hidden.starts_with(".wh.") || hidden.is_empty() {
            // Other `.wh..wh.` names are aufs bookkeeping, meaningless here.
            return Ok(());
        }
        let target_rel = parent.join(hidden);
        self.make_parents(&target_rel, shown)?;
        let target = self.root.join(&target_rel);
        self.clear(&target)?;
        mknod(&target, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0)).map_err(|e| {
            self.io(
                &format!("{shown}: creating overlay whiteout (needs CAP_MKNOD)"),
                e.into(),
            )
        })?;
        chown(&target, header).map_err(|e| self.io(shown, e))?;
        Ok(())
    }

    /// Lexically resolves an archive path inside the layer root; `None` is
    /// the root itself. Leading `/` is dropped, as tar does.
    fn confine(&self, raw: &[u8], shown: &str) -> Result<Option<PathBuf>, Error> {
        let mut parts: Vec<&OsStr> = Vec::new();
        for component in Path::new(OsStr::from_bytes(raw)).components() {
            match component {
                Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
                Component::ParentDir => {
                    if parts.pop().is_none() {
                        return Err(
                            self.unsafe_entry(shown, "path escapes the layer root with `..`")
                        );
                    }
                }
                Component::Normal(part) => parts.push(part),
            }
        }
        Ok((!parts.is_empty()).then(|| parts.iter().collect()))
    }

    /// Creates missing parent directories, refusing to pass through a
    /// symlink or a non-directory.
    fn make_parents(&self, rel: &Path, shown: &str) -> Result<(), Error> {
        let mut dir = self.root.to_path_buf();
        let Some(parent) = rel.parent() else {
            return Ok(());
        };
        for part in parent.components() {
            dir.push(part);
            match fs::symlink_metadata(&dir) {
                Ok(m) if m.is_dir() => {}
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(self.unsafe_entry(shown, "a parent directory is a symlink"))
                }
                Ok(_) => return Err(self.unsafe_entry(shown, "a parent path is not a directory")),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::create_dir(&dir).map_err(|e| self.io(shown, e))?;
                    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))
                        .map_err(|e| self.io(shown, e))?;
                }
                Err(e) => return Err(self.io(shown, e)),
            }
        }
        Ok(())
    }

    fn check_no_symlink_parents(&self, rel: &Path, shown: &str) -> Result<(), Error> {
        let mut dir = self.root.to_path_buf();
        for part in rel.parent().into_iter().flat_map(Path::components) {
            dir.push(part);
            if fs::symlink_metadata(&dir).is_ok_and(|m| !m.is_dir()) {
                return Err(
                    self.unsafe_entry(shown, "hard link target is reached through a symlink")
                );
            }
        }
        Ok(())
    }

    /// Removes whatever is at `path` (never following a symlink).
    fn clear(&self, path: &Path) -> Result<(), Error> {
        match fs::symlink_metadata(path) {
            Ok(m) if m.is_dir() => fs::remove_dir_all(path),
            Ok(_) => fs::remove_file(path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
        .map_err(|e| self.io(&path.display().to_string(), e))
    }

    /// Owner, then mode (chown clears set-id bits), then xattrs (chown
    /// clears file capabilities).
    fn apply_metadata(
        &self,
        path: &Path,
        header: &tar::Header,
        entry: &mut tar::Entry<'_, &mut dyn Read>,
        symlink: bool,
    ) -> Result<(), Error> {
        let ctx = |e| self.io(&path.display().to_string(), e);
        chown(path, header).map_err(ctx)?;
        if !symlink {
            let mode = header.mode().unwrap_or(0o644) & 0o7777;
            fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(ctx)?;
        }
        if let Ok(Some(extensions)) = entry.pax_extensions() {
            for ext in extensions.flatten() {
                let Ok(key) = ext.key() else { continue };
                let Some(name) = key.strip_prefix("SCHILY.xattr.") else {
                    continue;
                };
                // An image must not steer overlayfs (redirects, metacopy).
                if name.starts_with("trusted.overlay.") || symlink {
                    continue;
                }
                if let Err(e) = xattr::set(path, name, ext.value_bytes()) {
                    tracing::debug!(layer = self.layer, path = %path.display(), xattr = name, error = %e, "xattr not applied");
                }
            }
        }
        Ok(())
    }

    fn unsafe_entry(&self, entry: &str, reason: &str) -> Error {
        Error::UnsafeLayer {
            layer: self.layer.to_string(),
            entry: entry.to_string(),
            reason: reason.to_string(),
        }
    }

    fn io(&self, what: &str, e: io::Error) -> Error {
        Error::io(format!("unpacking layer {}: {what}", self.layer), e)
    }
}

fn device(header: &tar::Header) -> nix::libc::dev_t {
    let major = header.device_major().ok().flatten().unwrap_or(0);
    let minor = header.device_minor().ok().flatten().unwrap_or(0);
    makedev(major.into(), minor.into())
}

/// Ownership as recorded, when we may (an unprivileged store keeps its own).
fn chown(path: &Path, header: &tar::Header) -> io::Result<()> {
    let uid = header.uid().unwrap_or(0) as u32;
    let gid = header.gid().unwrap_or(0) as u32;
    match fchownat(
        None,
        path,
        Some(Uid::from_raw(uid)),
        Some(Gid::from_raw(gid)),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    ) {
        Ok(()) | Err(Errno::EPERM) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn set_mtime(path: &Path, mtime: u64) -> io::Result<()> {
    let t = TimeSpec::new(mtime as i64, 0);
    utimensat(None, path, &t, &t, UtimensatFlags::NoFollowSymlink).map_err(io::Error::from)
}

/// Unpacks a layer from a file on disk.
pub(crate) fn unpack_file(path: &Path, dest: &Path, layer: &str) -> Result<Unpacked, Error> {
    let file = File::open(path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    unpack_layer(file, dest, layer)
}
