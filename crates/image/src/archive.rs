//! Image archives: `docker save` tarballs (manifest.json) and OCI
//! image-layout archives (index.json), possibly gzip- or zstd-compressed.
//! The archive is indexed once, then each layer is unpacked straight from
//! its place in the file.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::digest::sha256;
use crate::oci::{is_layer_media_type, pick_platform, ConfigFile, Descriptor, Document};
use crate::reference::ImageRef;
use crate::store::{synthesized_manifest, Inner, LayerRecord, TmpPath};
use crate::unpack::unpack_layer;
use crate::{Error, Image, Result};

/// JSON documents inside an archive are small; refuse absurd ones.
const MAX_DOCUMENT: u64 = 16 << 20;

pub(crate) fn import(inner: &Inner, path: &Path) -> Result<Vec<Image>> {
    let (tar_path, _tmp) = decompressed(inner, path)?;
    let archive = Archive::index(&tar_path, path)?;
    if archive.entries.contains_key("index.json") {
        import_oci(inner, &archive)
    } else if archive.entries.contains_key("manifest.json") {
        import_docker(inner, &archive)
    } else {
        Err(archive.invalid(
            "neither manifest.json (docker save) nor index.json (OCI layout) is in it; \
             a plain root filesystem is imported with `orca images import --rootfs FILE --name NAME`",
        ))
    }
}

/// A gzip/zstd archive is decompressed into `tmp/` first, as indexing
/// needs to seek.
fn decompressed(inner: &Inner, path: &Path) -> Result<(PathBuf, Option<TmpPath>)> {
    let ctx = |e| Error::io(format!("reading {}", path.display()), e);
    let mut file = File::open(path).map_err(ctx)?;
    let mut magic = [0u8; 4];
    let n = file.read(&mut magic).map_err(ctx)?;
    file.seek(SeekFrom::Start(0)).map_err(ctx)?;
    let decoder: Box<dyn Read> = if magic[..n].starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(file))
    } else if magic[..n].starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::stream::read::Decoder::new(file).map_err(ctx)?)
    } else {
        return Ok((path.to_path_buf(), None));
    };
    let tmp = inner.tmp("archive.tar");
    let mut out =
        File::create(&tmp.0).map_err(|e| Error::io(format!("creating {}", tmp.0.display()), e))?;
    let mut decoder = decoder;
    io::copy(&mut decoder, &mut out).map_err(ctx)?;
    Ok((tmp.0.clone(), Some(tmp)))
}

struct Archive {
    /// The (uncompressed) tar to read from.
    file: PathBuf,
    /// The archive as the user named it, for messages and default names.
    source: PathBuf,
    /// Entry name (no leading `./`) -> (data offset, size).
    entries: HashMap<String, (u64, u64)>,
}

fn clean_name(raw: &[u8]) -> String {
    let s = String::from_utf8_lossy(raw);
    let mut s: &str = &s;
    loop {
        if let Some(rest) = s.strip_prefix("./") {
            s = rest;
        } else if let Some(rest) = s.strip_prefix('/') {
            s = rest;
        } else {
            break;
        }
    }
    s.to_string()
}

impl Archive {
    fn index(file: &Path, source: &Path) -> Result<Self> {
        let ctx = |e| Error::io(format!("reading archive {}", source.display()), e);
        let mut tar = tar::Archive::new(File::open(file).map_err(ctx)?);
        let mut entries = HashMap::new();
        let mut links = Vec::new();
        for entry in tar.entries().map_err(ctx)? {
            let entry = entry.map_err(ctx)?;
            let name = clean_name(&entry.path_bytes());
            match entry.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    entries.insert(name, (entry.raw_file_position(), entry.size()));
                }
                tar::EntryType::Link => {
                    if let Some(target) = entry.link_name_bytes() {
                        links.push((name, clean_name(&target)));
                    }
                }
                _ => {}
            }
        }
        for (name, target) in links {
            if let Some(place) = entries.get(&target).copied() {
                entries.insert(name, place);
            }
        }
        Ok(Archive {
            file: file.to_path_buf(),
            source: source.to_path_buf(),
            entries,
        })
    }

    fn invalid(&self, reason: impl Into<String>) -> Error {
        Error::InvalidArchive {
            path: self.source.clone(),
            reason: reason.into(),
        }
    }

    fn open(&self, name: &str) -> Result<io::Take<File>> {
        let name = clean_name(name.as_bytes());
        let (offset, size) = *self
            .entries
            .get(&name)
            .ok_or_else(|| self.invalid(format!("{name} is missing")))?;
        let ctx = |e| Error::io(format!("reading {name} in {}", self.source.display()), e);
        let mut file = File::open(&self.file).map_err(ctx)?;
        file.seek(SeekFrom::Start(offset)).map_err(ctx)?;
        Ok(file.take(size))
    }

    fn read_document(&self, name: &str) -> Result<Vec<u8>> {
        let mut reader = self.open(name)?;
        if reader.limit() > MAX_DOCUMENT {
            return Err(self.invalid(format!("{name} is larger than {MAX_DOCUMENT} bytes")));
        }
        let mut bytes = Vec::new();
        reader
            .read_to_end(&mut bytes)
            .map_err(|e| Error::io(format!("reading {name} in {}", self.source.display()), e))?;
        Ok(bytes)
    }

    /// An OCI blob, checked against its digest.
    fn read_blob(&self, descriptor: &Descriptor) -> Result<Vec<u8>> {
        let bytes = self.read_document(&blob_name(&descriptor.digest))?;
        let actual = sha256(&bytes);
        if actual != descriptor.digest {
            return Err(Error::DigestMismatch {
                what: format!("blob {} in {}", descriptor.digest, self.source.display()),
                expected: descriptor.digest.clone(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// `busybox` from `/x/busybox.oci.tar`, for images the archive does not name.
    fn default_repository(&self) -> Result<String> {
        let file = self
            .source
            .file_name()
            .unwrap_or_default()
            .to_string_lossy();
        let stem = file.split('.').next().unwrap_or_default().to_lowercase();
        ImageRef::parse(&stem).map(|r| r.name()).map_err(|_| {
            self.invalid(
                "the archive does not name its image and its file name is not a valid image name",
            )
        })
    }

    /// Unpacks (unless present) each layer, in order, checking each against
    /// the config's diff IDs.
    fn layers(
        &self,
        inner: &Inner,
        reference: &str,
        config: &ConfigFile,
        layers: &[(String, Option<String>)],
    ) -> Result<Vec<LayerRecord>> {
        if layers.len() != config.rootfs.diff_ids.len() {
            return Err(Error::InvalidImage {
                reference: reference.to_string(),
                reason: format!(
                    "{} layers but the config lists {} diff IDs",
                    layers.len(),
                    config.rootfs.diff_ids.len()
                ),
            });
        }
        let mut out = Vec::new();
        for ((entry, blob_digest), diff_id) in layers.iter().zip(&config.rootfs.diff_ids) {
            let lock = inner.layer_lock(diff_id);
            let _guard = lock.blocking_lock();
            let label = format!("{entry} of {reference}");
            out.push(inner.install_layer(Some(diff_id), &label, |dest| {
                let unpacked = unpack_layer(self.open(entry)?, dest, &label)?;
                match blob_digest {
                    Some(expected) if *expected != unpacked.blob_digest => {
                        Err(Error::DigestMismatch {
                            what: format!("layer {label}"),
                            expected: expected.clone(),
                            actual: unpacked.blob_digest,
                        })
                    }
                    _ => Ok(unpacked),
                }
            })?);
        }
        Ok(out)
    }
}

fn blob_name(digest: &str) -> String {
    match digest.split_once(':') {
        Some((alg, hex)) => format!("blobs/{alg}/{hex}"),
        None => format!("blobs/sha256/{digest}"),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

fn import_docker(inner: &Inner, archive: &Archive) -> Result<Vec<Image>> {
    let manifest = archive.read_document("manifest.json")?;
    let entries: Vec<DockerManifestEntry> = serde_json::from_slice(&manifest)
        .map_err(|e| archive.invalid(format!("manifest.json is not valid: {e}")))?;
    if entries.is_empty() {
        return Err(archive.invalid("manifest.json lists no images"));
    }
    let mut images = Vec::new();
    for entry in entries {
        let mut names = Vec::new();
        for tag in entry.repo_tags.iter().flatten() {
            names.push(ImageRef::parse(tag)?.to_string());
        }
        if names.is_empty() {
            names.push(format!("{}:latest", archive.default_repository()?));
        }
        let config_bytes = archive.read_document(&entry.config)?;
        let config = ConfigFile::parse(&config_bytes, &names[0])?;
        let layers: Vec<(String, Option<String>)> =
            entry.layers.iter().map(|l| (l.clone(), None)).collect();
        let layers = archive.layers(inner, &names[0], &config, &layers)?;
        let manifest = synthesized_manifest(&config_bytes, &layers);
        images.push(inner.commit(
            &names,
            &manifest,
            &config_bytes,
            None,
            layers,
            config.image_config(),
        )?);
    }
    Ok(images)
}

fn import_oci(inner: &Inner, archive: &Archive) -> Result<Vec<Image>> {
    let index_bytes = archive.read_document("index.json")?;
    let index = Document::parse(&index_bytes, "index.json").map_err(|e| archive.invalid(e))?;
    let descriptors = index.manifests.unwrap_or_default();
    if descriptors.is_empty() {
        return Err(archive.invalid("index.json lists no images"));
    }
    let mut images = Vec::new();
    for descriptor in descriptors {
        let name = oci_name(archive, &descriptor)?;
        let mut bytes = archive.read_blob(&descriptor)?;
        let mut doc =
            Document::parse(&bytes, &descriptor.digest).map_err(|e| archive.invalid(e))?;
        let mut nested_index = None;
        if doc.is_index() {
            let manifests = doc.manifests.take().unwrap_or_default();
            let chosen = pick_platform(&manifests).ok_or_else(|| Error::InvalidImage {
                reference: name.clone(),
                reason: format!("no linux/{} image in its index", crate::oci::host_arch()),
            })?;
            let manifest = archive.read_blob(chosen)?;
            doc = Document::parse(&manifest, &chosen.digest).map_err(|e| archive.invalid(e))?;
            nested_index = Some(std::mem::replace(&mut bytes, manifest));
        }
        let config_descriptor = doc.config.as_ref().ok_or_else(|| Error::InvalidImage {
            reference: name.clone(),
            reason: "manifest has no config".to_string(),
        })?;
        let config_bytes = archive.read_blob(config_descriptor)?;
        let config = ConfigFile::parse(&config_bytes, &name)?;
        if let Some(bad) = doc
            .layers
            .iter()
            .find(|l| !is_layer_media_type(&l.media_type))
        {
            return Err(Error::InvalidImage {
                reference: name,
                reason: format!(
                    "layer {} has unsupported media type {}",
                    bad.digest, bad.media_type
                ),
            });
        }
        let layers: Vec<(String, Option<String>)> = doc
            .layers
            .iter()
            .map(|l| (blob_name(&l.digest), Some(l.digest.clone())))
            .collect();
        let layers = archive.layers(inner, &name, &config, &layers)?;
        images.push(inner.commit(
            &[name],
            &bytes,
            &config_bytes,
            nested_index.as_deref(),
            layers,
            config.image_config(),
        )?);
    }
    Ok(images)
}

/// The name an OCI layout gives an entry: containerd's full-name
/// annotation, else the ref.name annotation (a full reference, or just a
/// tag of the repository the file name gives).
fn oci_name(archive: &Archive, descriptor: &Descriptor) -> Result<String> {
    let annotations = &descriptor.annotations;
    if let Some(full) = annotations.get("io.containerd.image.name") {
        return Ok(ImageRef::parse(full)?.to_string());
    }
    match annotations.get("org.opencontainers.image.ref.name") {
        Some(r) if r.contains('/') || r.contains(':') || r.contains('@') => {
            Ok(ImageRef::parse(r)?.to_string())
        }
        Some(tag) => {
            Ok(ImageRef::parse(&format!("{}:{tag}", archive.default_repository()?))?.to_string())
        }
        None => Ok(format!("{}:latest", archive.default_repository()?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_names_are_cleaned() {
        assert_eq!(clean_name(b"./blobs/sha256/ab"), "blobs/sha256/ab");
        assert_eq!(clean_name(b"/manifest.json"), "manifest.json");
        assert_eq!(blob_name("sha256:ab"), "blobs/sha256/ab");
    }
}
