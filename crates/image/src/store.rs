//! The store itself: records, layers, locking and garbage collection.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::digest::{hex_of, sha256, sha256_file, write_atomic};
use crate::reference::{is_hex64, ImageRef};
use crate::registries::{Credentials, RegistriesConfig};
use crate::unpack::Unpacked;
use crate::{Error, Image, ImageConfig, Result};

static SERIAL: AtomicU64 = AtomicU64::new(0);

/// A number unique within this process, for temporary names.
pub(crate) fn next_serial() -> u64 {
    SERIAL.fetch_add(1, Ordering::Relaxed)
}

/// The image store. Cheap to clone; every clone shares the same state, and
/// several processes may use one root at once (records are replaced
/// atomically, removal and GC take an exclusive file lock).
#[derive(Clone)]
pub struct ImageStore {
    pub(crate) inner: Arc<Inner>,
}

/// The last successful pull of a reference and when it finished.
type PullSlot = Arc<tokio::sync::Mutex<Option<(Instant, Image)>>>;

impl std::fmt::Debug for ImageStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageStore")
            .field("root", &self.inner.root)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    pub root: PathBuf,
    pub registries: RegistriesConfig,
    /// One slot per reference being pulled: later callers wait for the
    /// first and take its result.
    pulls: Mutex<HashMap<String, PullSlot>>,
    /// One lock per layer diff ID, so a layer is downloaded and unpacked
    /// once even when several images share it.
    layer_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Set when a name moved to another image, leaving the old one to collect.
    orphaned: AtomicBool,
}

/// What the startup import did with each archive.
#[derive(Debug, Default)]
pub struct ImportDirReport {
    pub imported: Vec<(PathBuf, Vec<Image>)>,
    /// Archives whose content digest was imported before and whose images
    /// are all still present.
    pub skipped: Vec<PathBuf>,
    pub failed: Vec<(PathBuf, Error)>,
}

/// What garbage collection removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GcStats {
    pub images: usize,
    pub blobs: usize,
    pub layers: usize,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct ImageRecord {
    pub manifest_digest: String,
    pub config_digest: String,
    /// The index the manifest was chosen from, when there was one.
    #[serde(default)]
    pub index_digest: Option<String>,
    pub layers: Vec<LayerRecord>,
    pub config: ImageConfig,
    pub size: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct LayerRecord {
    pub diff_id: String,
    pub size: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct NameRecord {
    name: String,
    manifest_digest: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct ImportRecord {
    source: PathBuf,
    names: Vec<String>,
}

/// What an archive file looked like when its digest was computed, so an
/// unchanged file is not hashed again at the next start.
#[derive(Debug, Serialize, Deserialize)]
struct SeenArchive {
    size: u64,
    mtime_ns: i128,
    dev: u64,
    ino: u64,
    digest: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct LeaseRecord {
    manifest_digest: String,
}

/// A path under `tmp/` removed when dropped.
pub(crate) struct TmpPath(pub PathBuf);

impl Drop for TmpPath {
    fn drop(&mut self) {
        remove_any(&self.0);
    }
}

fn remove_any(path: &Path) {
    let result = match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(_) => Ok(()),
    };
    if let Err(e) = result {
        tracing::warn!(path = %path.display(), error = %e, "cannot remove temporary data");
    }
}

fn io_ctx(what: impl std::fmt::Display) -> impl FnOnce(io::Error) -> Error {
    move |e| Error::io(what.to_string(), e)
}

impl ImageStore {
    /// Opens (creating if needed) the store at `root`, and drops temporary
    /// data left by processes that died mid-operation.
    pub fn open(root: impl Into<PathBuf>, registries: RegistriesConfig) -> Result<Self> {
        let root = root.into();
        for dir in [
            "blobs/sha256",
            "layers/sha256",
            "images/by-digest",
            "images/by-name",
            "imports/seen",
            "leases",
            "tmp",
        ] {
            let path = root.join(dir);
            fs::create_dir_all(&path).map_err(io_ctx(format!("creating {}", path.display())))?;
        }
        let inner = Inner {
            root,
            registries,
            pulls: Mutex::default(),
            layer_locks: Mutex::default(),
            orphaned: AtomicBool::new(false),
        };
        inner.clean_stale_tmp();
        Ok(ImageStore {
            inner: Arc::new(inner),
        })
    }

    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// Looks an image up by name (`busybox`, `docker.io/library/busybox:latest`,
    /// `repo@sha256:...`) or by ID / manifest digest (`sha256:...`, or a
    /// unique hex prefix of at least 12 digits).
    pub fn get(&self, reference: &str) -> Result<Option<Image>> {
        self.inner.get(reference)
    }

    /// One entry per name, sorted by name.
    pub fn list(&self) -> Result<Vec<Image>> {
        self.inner.list()
    }

    /// Pulls an image from its registry (or the mirrors registries.yaml
    /// gives). `auth` (e.g. from imagePullSecrets) overrides registries.yaml
    /// credentials. Concurrent pulls of one reference share one download.
    pub async fn pull(&self, reference: &str, auth: Option<Credentials>) -> Result<Image> {
        let r = ImageRef::parse(reference)?;
        let key = r.to_string();
        let slot = {
            let mut pulls = self.inner.pulls.lock().unwrap_or_else(|e| e.into_inner());
            pulls.entry(key.clone()).or_default().clone()
        };
        let asked = Instant::now();
        let result = {
            let mut last = slot.lock().await;
            match last.as_ref() {
                // Finished while we waited: that pull was ours too.
                Some((done, image)) if *done >= asked => Ok(image.clone()),
                _ => {
                    let result = crate::pull::pull(self, &r, auth).await;
                    if result.is_ok() {
                        let store = self.clone();
                        let _ = tokio::task::spawn_blocking(move || store.inner.collect_orphans())
                            .await;
                    }
                    if let Ok(image) = &result {
                        *last = Some((Instant::now(), image.clone()));
                    }
                    result
                }
            }
        };
        let mut pulls = self.inner.pulls.lock().unwrap_or_else(|e| e.into_inner());
        if Arc::strong_count(&slot) == 2 {
            pulls.remove(&key);
        }
        result
    }

    /// Imports a `docker save` archive or an OCI image-layout archive
    /// (optionally gzip/zstd-compressed). Images named only by a tag in the
    /// archive, or not named at all, take the file name before the first
    /// `.` as repository (`busybox.oci.tar` -> `docker.io/library/busybox`).
    pub async fn import_archive(&self, path: &Path) -> Result<Vec<Image>> {
        let store = self.clone();
        let path = path.to_path_buf();
        blocking(move || {
            let _lock = store.inner.lock(false)?;
            let digest =
                sha256_file(&path).map_err(io_ctx(format!("reading {}", path.display())))?;
            store.inner.import_archive_locked(&path, &digest)
        })
        .await
    }

    /// Imports a plain root filesystem tarball as a one-layer image named
    /// `name`, like `podman import`. The image has no command.
    pub async fn import_rootfs(&self, tar_path: &Path, name: &str) -> Result<Image> {
        let r = ImageRef::parse(name)?;
        let store = self.clone();
        let path = tar_path.to_path_buf();
        blocking(move || {
            let lock = store.inner.lock(false)?;
            let image = store.inner.import_rootfs_locked(&path, &r);
            drop(lock);
            store.inner.collect_orphans();
            image
        })
        .await
    }

    /// The startup import: every `*.tar` (also `.tar.gz`, `.tgz`,
    /// `.tar.zst`) in `dir`, skipping archives whose content digest was
    /// imported before while their images are still here. One bad archive
    /// does not stop the others.
    pub async fn import_dir(&self, dir: &Path) -> Result<ImportDirReport> {
        let store = self.clone();
        let dir = dir.to_path_buf();
        blocking(move || {
            let report = store.inner.import_dir(&dir);
            store.inner.collect_orphans();
            report
        })
        .await
    }

    /// Removes a name, or every name of an image given by ID or digest, then
    /// collects what no image uses any more. Returns the names removed.
    pub async fn remove(&self, reference: &str) -> Result<Vec<String>> {
        let store = self.clone();
        let reference = reference.to_string();
        blocking(move || store.inner.remove(&reference)).await
    }

    /// Removes records, blobs and layers no name or lease refers to.
    pub async fn gc(&self) -> Result<GcStats> {
        let store = self.clone();
        blocking(move || {
            let _lock = store.inner.lock(true)?;
            store.inner.gc_locked()
        })
        .await
    }

    /// Keeps `image`'s layers on disk while `id` (e.g. a container) uses
    /// them, even if the image's names are removed.
    pub fn lease(&self, id: &str, image: &Image) -> Result<()> {
        let record = LeaseRecord {
            manifest_digest: image.manifest_digest.clone(),
        };
        self.inner.write_json(&self.inner.lease_path(id)?, &record)
    }

    /// Ends a lease; the layers go at the next removal or GC if unused.
    pub fn release(&self, id: &str) -> Result<()> {
        let path = self.inner.lease_path(id)?;
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(Error::io(format!("removing {}", path.display()), e))
            }
            _ => Ok(()),
        }
    }
}

/// Runs blocking file work off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(Error::io(
            "image store task",
            io::Error::other(e.to_string()),
        ))
    })
}

impl Inner {
    // ---- paths -------------------------------------------------------------

    pub fn blob_path(&self, digest: &str) -> PathBuf {
        self.root.join("blobs/sha256").join(hex_of(digest))
    }

    fn layer_path(&self, diff_id: &str) -> PathBuf {
        self.root.join("layers/sha256").join(hex_of(diff_id))
    }

    fn record_path(&self, manifest_digest: &str) -> PathBuf {
        self.root
            .join("images/by-digest")
            .join(format!("{}.json", hex_of(manifest_digest)))
    }

    fn name_path(&self, name: &str) -> PathBuf {
        let encoded = name.replace('%', "%25").replace('/', "%2F");
        self.root
            .join("images/by-name")
            .join(format!("{encoded}.json"))
    }

    fn lease_path(&self, id: &str) -> Result<PathBuf> {
        if id.is_empty() || id.contains('/') || id.starts_with('.') {
            return Err(Error::io(
                format!("lease id {id:?}"),
                io::Error::new(io::ErrorKind::InvalidInput, "must be a plain file name"),
            ));
        }
        Ok(self.root.join("leases").join(format!("{id}.json")))
    }

    /// A fresh path under `tmp/`, removed when the guard drops.
    pub fn tmp(&self, purpose: &str) -> TmpPath {
        TmpPath(self.root.join("tmp").join(format!(
            "{}-{}-{purpose}",
            std::process::id(),
            next_serial()
        )))
    }

    fn clean_stale_tmp(&self) {
        let Ok(entries) = fs::read_dir(self.root.join("tmp")) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let pid = name.split('-').next().and_then(|p| p.parse::<u32>().ok());
            let alive = pid.is_some_and(|p| Path::new(&format!("/proc/{p}")).exists());
            if !alive {
                remove_any(&entry.path());
            }
        }
    }

    /// Shared for adding images, exclusive for removing: GC never deletes
    /// a layer an import in another process is about to record.
    pub fn lock(&self, exclusive: bool) -> Result<Flock<File>> {
        let path = self.root.join("lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_ctx(format!("opening {}", path.display())))?;
        let arg = if exclusive {
            FlockArg::LockExclusive
        } else {
            FlockArg::LockShared
        };
        Flock::lock(file, arg)
            .map_err(|(_, e)| Error::io(format!("locking {}", path.display()), e.into()))
    }

    pub fn layer_lock(&self, diff_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.layer_locks.lock().unwrap_or_else(|e| e.into_inner());
        locks.retain(|_, l| Arc::strong_count(l) > 1);
        locks.entry(diff_id.to_string()).or_default().clone()
    }

    // ---- records -----------------------------------------------------------

    pub fn write_json(&self, path: &Path, value: &impl Serialize) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(value)
            .map_err(|e| Error::io(format!("encoding {}", path.display()), io::Error::other(e)))?;
        write_atomic(&self.root.join("tmp"), path, &bytes)
            .map_err(io_ctx(format!("writing {}", path.display())))
    }

    fn read_json<T: for<'de> Deserialize<'de>>(&self, path: &Path) -> Result<Option<T>> {
        match fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                Error::io(
                    format!("{} is corrupt (remove it and re-import)", path.display()),
                    io::Error::other(e),
                )
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
        }
    }

    fn records(&self) -> Result<Vec<ImageRecord>> {
        let dir = self.root.join("images/by-digest");
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_ctx(format!("listing {}", dir.display())))? {
            let entry = entry.map_err(io_ctx(format!("listing {}", dir.display())))?;
            if entry.file_name().to_string_lossy().ends_with(".json") {
                out.extend(self.read_json::<ImageRecord>(&entry.path())?);
            }
        }
        Ok(out)
    }

    fn name_records(&self) -> Result<Vec<NameRecord>> {
        let dir = self.root.join("images/by-name");
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_ctx(format!("listing {}", dir.display())))? {
            let entry = entry.map_err(io_ctx(format!("listing {}", dir.display())))?;
            if entry.file_name().to_string_lossy().ends_with(".json") {
                out.extend(self.read_json::<NameRecord>(&entry.path())?);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn image(&self, name: &str, record: &ImageRecord, names: Vec<String>) -> Image {
        let repo_digest = match ImageRef::parse(name) {
            Ok(r) => r.with_digest(&record.manifest_digest),
            Err(_) => record.manifest_digest.clone(),
        };
        Image {
            reference: name.to_string(),
            digest: record.config_digest.clone(),
            manifest_digest: record.manifest_digest.clone(),
            repo_digest,
            names,
            config: record.config.clone(),
            layers: record
                .layers
                .iter()
                .map(|l| self.layer_path(&l.diff_id).join("rootfs"))
                .collect(),
            size: record.size,
        }
    }

    fn names_of(&self, manifest_digest: &str) -> Result<Vec<String>> {
        Ok(self
            .name_records()?
            .into_iter()
            .filter(|n| n.manifest_digest == manifest_digest)
            .map(|n| n.name)
            .collect())
    }

    /// Records whose config (ID) or manifest digest starts with `id`.
    fn records_by_id(&self, id: &str) -> Result<Vec<ImageRecord>> {
        let hex = hex_of(id);
        Ok(self
            .records()?
            .into_iter()
            .filter(|r| {
                hex_of(&r.config_digest).starts_with(hex)
                    || hex_of(&r.manifest_digest).starts_with(hex)
            })
            .collect())
    }

    pub fn get(&self, reference: &str) -> Result<Option<Image>> {
        let reference = reference.trim();
        if let Some(id) = id_like(reference) {
            let found = self.records_by_id(id)?;
            match found.as_slice() {
                [record] => {
                    let names = self.names_of(&record.manifest_digest)?;
                    let name = names
                        .first()
                        .cloned()
                        .unwrap_or_else(|| record.config_digest.clone());
                    return Ok(Some(self.image(&name, record, names)));
                }
                [] if reference.starts_with("sha256:") => return Ok(None),
                [] => {}
                _ => {
                    return Err(Error::InvalidReference {
                        reference: reference.to_string(),
                        reason: "ambiguous: more than one image ID starts with it".to_string(),
                    })
                }
            }
        }
        let r = ImageRef::parse(reference)?;
        let name = r.to_string();
        let manifest_digest = match self.read_json::<NameRecord>(&self.name_path(&name))? {
            Some(n) => n.manifest_digest,
            None => match &r.digest {
                Some(d) => d.clone(),
                None => return Ok(None),
            },
        };
        let Some(record) = self.read_json::<ImageRecord>(&self.record_path(&manifest_digest))?
        else {
            return Ok(None);
        };
        let names = self.names_of(&record.manifest_digest)?;
        Ok(Some(self.image(&name, &record, names)))
    }

    pub fn list(&self) -> Result<Vec<Image>> {
        let names = self.name_records()?;
        let mut by_manifest: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for n in &names {
            by_manifest
                .entry(&n.manifest_digest)
                .or_default()
                .push(n.name.clone());
        }
        let mut out = Vec::new();
        for n in &names {
            if let Some(record) =
                self.read_json::<ImageRecord>(&self.record_path(&n.manifest_digest))?
            {
                out.push(self.image(
                    &n.name,
                    &record,
                    by_manifest[n.manifest_digest.as_str()].clone(),
                ));
            }
        }
        Ok(out)
    }

    // ---- adding images -----------------------------------------------------

    /// The unpacked layer `diff_id` if present.
    pub fn layer_present(&self, diff_id: &str) -> Result<Option<LayerRecord>> {
        self.read_json(&self.layer_path(diff_id).join("meta.json"))
    }

    /// Makes layer `expected` (or whatever `unpack` yields, when the diff ID
    /// is not known in advance) present: unpacks into `tmp/`, checks the
    /// diff ID, syncs, and renames into place. Call with the store lock held.
    pub fn install_layer(
        &self,
        expected: Option<&str>,
        label: &str,
        unpack: impl FnOnce(&Path) -> Result<Unpacked>,
    ) -> Result<LayerRecord> {
        if let Some(diff_id) = expected {
            if let Some(layer) = self.layer_present(diff_id)? {
                return Ok(layer);
            }
        }
        let tmp = self.tmp("layer");
        let rootfs = tmp.0.join("rootfs");
        fs::create_dir_all(&rootfs).map_err(io_ctx(format!("creating {}", rootfs.display())))?;
        let unpacked = unpack(&rootfs)?;
        if let Some(diff_id) = expected {
            if unpacked.diff_id != diff_id {
                return Err(Error::DigestMismatch {
                    what: format!("uncompressed content of layer {label}"),
                    expected: diff_id.to_string(),
                    actual: unpacked.diff_id,
                });
            }
        }
        let record = LayerRecord {
            diff_id: unpacked.diff_id.clone(),
            size: unpacked.size,
        };
        if let Some(existing) = self.layer_present(&record.diff_id)? {
            return Ok(existing);
        }
        let meta = serde_json::to_vec(&record)
            .map_err(|e| Error::io("encoding layer metadata", io::Error::other(e)))?;
        fs::write(tmp.0.join("meta.json"), meta).map_err(io_ctx("writing layer metadata"))?;
        sync_filesystem(&tmp.0)?;
        let dest = self.layer_path(&record.diff_id);
        match fs::rename(&tmp.0, &dest) {
            Ok(()) => {
                let parent = dest.parent().unwrap_or(&self.root);
                File::open(parent)
                    .and_then(|d| d.sync_all())
                    .map_err(io_ctx(format!("syncing {}", parent.display())))?;
                Ok(record)
            }
            // Another process installed the same layer meanwhile.
            Err(e) if dest.join("meta.json").exists() => {
                tracing::debug!(layer = %record.diff_id, error = %e, "layer installed concurrently");
                Ok(record)
            }
            Err(e) => Err(Error::io(
                format!("installing layer into {}", dest.display()),
                e,
            )),
        }
    }

    /// Writes the blobs, the image record, then the names (last, so a name
    /// only ever points at a complete image). Call with the store lock held.
    pub fn commit(
        &self,
        names: &[String],
        manifest: &[u8],
        config: &[u8],
        index: Option<&[u8]>,
        layers: Vec<LayerRecord>,
        image_config: ImageConfig,
    ) -> Result<Image> {
        let manifest_digest = sha256(manifest);
        let config_digest = sha256(config);
        let mut blobs = vec![
            (manifest_digest.clone(), manifest),
            (config_digest.clone(), config),
        ];
        let index_digest = index.map(|i| {
            let d = sha256(i);
            blobs.push((d.clone(), i));
            d
        });
        for (digest, bytes) in blobs {
            let path = self.blob_path(&digest);
            if !path.exists() {
                write_atomic(&self.root.join("tmp"), &path, bytes)
                    .map_err(io_ctx(format!("writing {}", path.display())))?;
            }
        }
        let record = ImageRecord {
            manifest_digest: manifest_digest.clone(),
            config_digest,
            index_digest,
            size: layers.iter().map(|l| l.size).sum(),
            layers,
            config: image_config,
        };
        self.write_json(&self.record_path(&manifest_digest), &record)?;
        for name in names {
            let path = self.name_path(name);
            if let Some(old) = self.read_json::<NameRecord>(&path)? {
                if old.manifest_digest != manifest_digest {
                    self.orphaned.store(true, Ordering::Relaxed);
                }
            }
            let n = NameRecord {
                name: name.clone(),
                manifest_digest: manifest_digest.clone(),
            };
            self.write_json(&path, &n)?;
        }
        let all_names = self.names_of(&manifest_digest)?;
        let first = names
            .first()
            .cloned()
            .unwrap_or_else(|| manifest_digest.clone());
        Ok(self.image(&first, &record, all_names))
    }

    fn import_rootfs_locked(&self, path: &Path, r: &ImageRef) -> Result<Image> {
        let layer = self.install_layer(None, &path.display().to_string(), |dest| {
            crate::unpack::unpack_file(path, dest, &path.display().to_string())
        })?;
        // Deterministic (no timestamp), so importing the same tarball twice
        // yields the same image ID.
        let config = serde_json::json!({
            "architecture": crate::oci::host_arch(),
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]},
        });
        let config = serde_json::to_vec(&config).unwrap_or_default();
        let manifest = synthesized_manifest(&config, std::slice::from_ref(&layer));
        self.commit(
            &[r.to_string()],
            &manifest,
            &config,
            None,
            vec![layer],
            ImageConfig::default(),
        )
    }

    fn import_archive_locked(&self, path: &Path, digest: &str) -> Result<Vec<Image>> {
        let images = crate::archive::import(self, path)?;
        let record = ImportRecord {
            source: path.to_path_buf(),
            names: images.iter().flat_map(|i| i.names.clone()).collect(),
        };
        self.write_json(
            &self
                .root
                .join("imports")
                .join(format!("{}.json", hex_of(digest))),
            &record,
        )?;
        Ok(images)
    }

    fn import_dir(&self, dir: &Path) -> Result<ImportDirReport> {
        let mut report = ImportDirReport::default();
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(report),
            Err(e) => return Err(Error::io(format!("listing {}", dir.display()), e)),
        };
        let mut files: Vec<PathBuf> = entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .map(|e| e.path())
            .filter(|p| {
                let name = p.file_name().unwrap_or_default().to_string_lossy();
                [".tar", ".tar.gz", ".tgz", ".tar.zst"]
                    .iter()
                    .any(|s| name.ends_with(s))
            })
            .collect();
        files.sort();
        let _lock = self.lock(false)?;
        for path in files {
            let result = self.archive_digest(&path).and_then(|digest| {
                let known = self.read_json::<ImportRecord>(
                    &self
                        .root
                        .join("imports")
                        .join(format!("{}.json", hex_of(&digest))),
                )?;
                if let Some(known) = known {
                    let mut all_present = true;
                    for name in &known.names {
                        all_present &= self.get(name)?.is_some();
                    }
                    if all_present {
                        return Ok(None);
                    }
                }
                self.import_archive_locked(&path, &digest).map(Some)
            });
            match result {
                Ok(Some(images)) => {
                    tracing::info!(archive = %path.display(), images = images.len(), "imported image archive");
                    report.imported.push((path, images));
                }
                Ok(None) => report.skipped.push(path),
                Err(e) => {
                    tracing::warn!(archive = %path.display(), error = %e, "image archive not imported");
                    report.failed.push((path, e));
                }
            }
        }
        Ok(report)
    }

    /// The content digest of an archive in the auto-import directory,
    /// hashing it only when it changed since it was last seen.
    fn archive_digest(&self, path: &Path) -> Result<String> {
        use std::os::unix::fs::MetadataExt;
        let meta = fs::metadata(path).map_err(io_ctx(format!("reading {}", path.display())))?;
        let mut seen = SeenArchive {
            size: meta.len(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            dev: meta.dev(),
            ino: meta.ino(),
            digest: String::new(),
        };
        let name = path
            .display()
            .to_string()
            .replace('%', "%25")
            .replace('/', "%2F");
        let cache = self.root.join("imports/seen").join(format!("{name}.json"));
        if let Some(known) = self.read_json::<SeenArchive>(&cache)? {
            let unchanged = (known.size, known.mtime_ns, known.dev, known.ino)
                == (seen.size, seen.mtime_ns, seen.dev, seen.ino);
            if unchanged && crate::is_digest(&known.digest) {
                return Ok(known.digest);
            }
        }
        seen.digest = sha256_file(path).map_err(io_ctx(format!("reading {}", path.display())))?;
        self.write_json(&cache, &seen)?;
        Ok(seen.digest)
    }

    // ---- removing ----------------------------------------------------------

    fn remove(&self, reference: &str) -> Result<Vec<String>> {
        let _lock = self.lock(true)?;
        let reference = reference.trim();
        let mut names = Vec::new();
        if let Some(id) = id_like(reference) {
            let found = self.records_by_id(id)?;
            if found.len() > 1 {
                return Err(Error::InvalidReference {
                    reference: reference.to_string(),
                    reason: "ambiguous: more than one image ID starts with it".to_string(),
                });
            }
            if let Some(record) = found.first() {
                names = self.names_of(&record.manifest_digest)?;
            }
        }
        if names.is_empty() {
            if reference.starts_with("sha256:") {
                return Err(Error::ImageNotPresent(reference.to_string()));
            }
            let r = ImageRef::parse(reference)?;
            let name = r.to_string();
            if self.name_path(&name).exists() {
                names.push(name);
            } else {
                // `repo@sha256:...` of an image pulled by tag: all its names.
                names = match &r.digest {
                    Some(digest) => self.names_of(digest)?,
                    None => Vec::new(),
                };
                if names.is_empty() {
                    return Err(Error::ImageNotPresent(name));
                }
            }
        }
        for name in &names {
            let path = self.name_path(name);
            fs::remove_file(&path).map_err(io_ctx(format!("removing {}", path.display())))?;
        }
        self.gc_locked()?;
        Ok(names)
    }

    /// Collects images a moved name left behind, if no other operation
    /// holds the store right now (otherwise a later call does it).
    fn collect_orphans(&self) {
        if !self.orphaned.swap(false, Ordering::Relaxed) {
            return;
        }
        let path = self.root.join("lock");
        let Ok(file) = OpenOptions::new().write(true).open(&path) else {
            return;
        };
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(_lock) => match self.gc_locked() {
                Ok(stats) => tracing::debug!(?stats, "collected images whose names moved"),
                Err(e) => tracing::warn!(error = %e, "collecting unused images failed"),
            },
            Err(_) => self.orphaned.store(true, Ordering::Relaxed),
        }
    }

    pub fn gc_locked(&self) -> Result<GcStats> {
        let mut stats = GcStats::default();
        let mut live: BTreeSet<String> = self
            .name_records()?
            .into_iter()
            .map(|n| n.manifest_digest)
            .collect();
        let leases = self.root.join("leases");
        for entry in fs::read_dir(&leases)
            .map_err(io_ctx(format!("listing {}", leases.display())))?
            .flatten()
        {
            if let Some(lease) = self.read_json::<LeaseRecord>(&entry.path())? {
                live.insert(lease.manifest_digest);
            }
        }
        let mut blobs = BTreeSet::new();
        let mut layers = BTreeSet::new();
        for record in self.records()? {
            if !live.contains(&record.manifest_digest) {
                let path = self.record_path(&record.manifest_digest);
                fs::remove_file(&path).map_err(io_ctx(format!("removing {}", path.display())))?;
                stats.images += 1;
                continue;
            }
            blobs.insert(hex_of(&record.manifest_digest).to_string());
            blobs.insert(hex_of(&record.config_digest).to_string());
            if let Some(index) = &record.index_digest {
                blobs.insert(hex_of(index).to_string());
            }
            layers.extend(record.layers.iter().map(|l| hex_of(&l.diff_id).to_string()));
        }
        for (dir, keep, count) in [
            ("blobs/sha256", &blobs, &mut stats.blobs),
            ("layers/sha256", &layers, &mut stats.layers),
        ] {
            let dir = self.root.join(dir);
            for entry in fs::read_dir(&dir)
                .map_err(io_ctx(format!("listing {}", dir.display())))?
                .flatten()
            {
                let name = entry.file_name().to_string_lossy().into_owned();
                if !is_hex64(&name) || keep.contains(&name) {
                    continue;
                }
                // Out of sight first (one rename), then deleted at leisure.
                let doomed = self.tmp("gc");
                fs::rename(entry.path(), &doomed.0)
                    .map_err(io_ctx(format!("removing {}", entry.path().display())))?;
                *count += 1;
            }
        }
        Ok(stats)
    }
}

/// An OCI manifest for an image that came without one (rootfs tarballs and
/// `docker save` archives), naming each layer by its uncompressed digest.
pub(crate) fn synthesized_manifest(config: &[u8], layers: &[LayerRecord]) -> Vec<u8> {
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": crate::oci::OCI_MANIFEST,
        "config": {
            "mediaType": crate::oci::OCI_CONFIG,
            "digest": sha256(config),
            "size": config.len(),
        },
        "layers": layers.iter().map(|l| serde_json::json!({
            "mediaType": crate::oci::OCI_LAYER_TAR,
            "digest": l.diff_id,
            "size": l.size,
        })).collect::<Vec<_>>(),
    });
    serde_json::to_vec(&manifest).unwrap_or_default()
}

/// `sha256:<hex prefix>` or a bare hex prefix of 12+ digits: an ID, not a name.
fn id_like(s: &str) -> Option<&str> {
    let hex = |t: &str| !t.is_empty() && t.len() <= 64 && t.bytes().all(|b| b.is_ascii_hexdigit());
    match s.strip_prefix("sha256:") {
        Some(rest) if hex(rest) => Some(s),
        Some(_) => None,
        None if s.len() >= 12 && hex(s) => Some(s),
        None => None,
    }
}

/// Flushes an unpacked layer to disk before it becomes visible.
fn sync_filesystem(path: &Path) -> Result<()> {
    let dir = File::open(path).map_err(io_ctx(format!("opening {}", path.display())))?;
    nix::unistd::syncfs(std::os::fd::AsRawFd::as_raw_fd(&dir))
        .map_err(|e| Error::io(format!("syncing {}", path.display()), e.into()))
}
