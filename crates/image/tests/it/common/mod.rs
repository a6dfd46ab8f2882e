//! Helpers shared by the image store tests: the test services, temporary
//! stores, and hand-crafted archives.
#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};

use orca_image::{ImageStore, RegistriesConfig};
use sha2::{Digest, Sha256};

/// A test service variable, or a clear failure (never a silent skip).
pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests through scripts/test.sh, which starts the registry and builds the test images")
    })
}

pub fn test_image(file: &str) -> PathBuf {
    let path = Path::new(&env("ORCA_TEST_IMAGES")).join(file);
    assert!(
        path.exists(),
        "{} is missing (scripts/build-test-images.sh builds it)",
        path.display()
    );
    path
}

pub fn store(dir: &tempfile::TempDir) -> ImageStore {
    store_with(dir, RegistriesConfig::default())
}

pub fn store_with(dir: &tempfile::TempDir, registries: RegistriesConfig) -> ImageStore {
    ImageStore::open(dir.path().join("images"), registries).expect("open store")
}

/// Names of the entries of `dir` (empty when it does not exist).
pub fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// One tar entry, written with raw header fields so tests can craft what
/// well-behaved tar writers refuse to produce (`../`, absolute links).
pub struct Entry {
    pub name: &'static str,
    pub kind: tar::EntryType,
    pub link: Option<&'static str>,
    pub data: Vec<u8>,
    pub mode: u32,
}

pub fn file(name: &'static str, data: &str) -> Entry {
    Entry {
        name,
        kind: tar::EntryType::Regular,
        link: None,
        data: data.as_bytes().to_vec(),
        mode: 0o644,
    }
}

pub fn directory(name: &'static str) -> Entry {
    Entry {
        name,
        kind: tar::EntryType::Directory,
        link: None,
        data: Vec::new(),
        mode: 0o755,
    }
}

pub fn symlink(name: &'static str, target: &'static str) -> Entry {
    Entry {
        name,
        kind: tar::EntryType::Symlink,
        link: Some(target),
        data: Vec::new(),
        mode: 0o777,
    }
}

pub fn hardlink(name: &'static str, target: &'static str) -> Entry {
    Entry {
        name,
        kind: tar::EntryType::Link,
        link: Some(target),
        data: Vec::new(),
        mode: 0o644,
    }
}

pub fn layer_tar(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        let mut header = tar::Header::new_ustar();
        {
            let raw = header.as_ustar_mut().unwrap();
            raw.name[..e.name.len()].copy_from_slice(e.name.as_bytes());
            if let Some(link) = e.link {
                raw.linkname[..link.len()].copy_from_slice(link.as_bytes());
            }
        }
        header.set_entry_type(e.kind);
        header.set_size(e.data.len() as u64);
        header.set_mode(e.mode);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(1_700_000_000);
        header.set_cksum();
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(&e.data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

pub fn zstd(bytes: &[u8]) -> Vec<u8> {
    zstd::encode_all(bytes, 3).unwrap()
}

/// A layer as stored in an archive: the (maybe compressed) blob, its
/// media type, and the uncompressed tar.
pub struct Layer {
    pub blob: Vec<u8>,
    pub media_type: &'static str,
    pub tar: Vec<u8>,
}

pub fn plain(tar: Vec<u8>) -> Layer {
    Layer {
        blob: tar.clone(),
        media_type: "application/vnd.oci.image.layer.v1.tar",
        tar,
    }
}

pub fn gzipped(tar: Vec<u8>) -> Layer {
    Layer {
        blob: gzip(&tar),
        media_type: "application/vnd.oci.image.layer.v1.tar+gzip",
        tar,
    }
}

pub fn zstded(tar: Vec<u8>) -> Layer {
    Layer {
        blob: zstd(&tar),
        media_type: "application/vnd.oci.image.layer.v1.tar+zstd",
        tar,
    }
}

/// The blobs of one image: (manifest, blobs including the manifest).
pub fn image_blobs(layers: &[Layer], cmd: &[&str]) -> (Vec<u8>, Vec<Vec<u8>>) {
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": cmd, "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| sha256(&l.tar)).collect::<Vec<_>>()},
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(&config), "size": config.len()},
        "layers": layers.iter().map(|l| serde_json::json!({
            "mediaType": l.media_type, "digest": sha256(&l.blob), "size": l.blob.len()
        })).collect::<Vec<_>>(),
    }))
    .unwrap();
    let mut blobs = vec![manifest.clone(), config];
    blobs.extend(layers.iter().map(|l| l.blob.clone()));
    (manifest, blobs)
}

/// An OCI image-layout archive: index.json lists `top` (named `ref_name`),
/// and every blob is stored.
pub fn layout_archive(ref_name: &str, top: (&str, &[u8]), blobs: &[Vec<u8>]) -> Vec<u8> {
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": top.0,
            "digest": sha256(top.1), "size": top.1.len(),
            "annotations": {"org.opencontainers.image.ref.name": ref_name},
        }],
    }))
    .unwrap();
    let mut builder = tar::Builder::new(Vec::new());
    let mut add = |name: String, data: &[u8]| {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, name, data).unwrap();
    };
    add("oci-layout".into(), br#"{"imageLayoutVersion":"1.0.0"}"#);
    add("index.json".into(), &index);
    for blob in blobs {
        add(
            format!(
                "blobs/sha256/{}",
                sha256(blob).trim_start_matches("sha256:")
            ),
            blob,
        );
    }
    builder.into_inner().unwrap()
}

/// An OCI image-layout archive holding one image named `ref_name`.
pub fn oci_archive(ref_name: &str, layers: &[Layer], cmd: &[&str]) -> Vec<u8> {
    let (manifest, blobs) = image_blobs(layers, cmd);
    layout_archive(
        ref_name,
        ("application/vnd.oci.image.manifest.v1+json", &manifest),
        &blobs,
    )
}

/// A multi-platform image: an index with one image per `(arch, layers, cmd)`.
pub fn multi_arch_archive(ref_name: &str, images: &[(&str, &[Layer], &[&str])]) -> Vec<u8> {
    let mut all = Vec::new();
    let mut entries = Vec::new();
    for (arch, layers, cmd) in images {
        let (manifest, blobs) = image_blobs(layers, cmd);
        entries.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": sha256(&manifest), "size": manifest.len(),
            "platform": {"architecture": arch, "os": "linux"},
        }));
        all.extend(blobs);
    }
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": entries,
    }))
    .unwrap();
    all.push(index.clone());
    layout_archive(
        ref_name,
        ("application/vnd.oci.image.index.v1+json", &index),
        &all,
    )
}

pub fn write(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// A docker-registry started by a test on a free loopback port (with
/// basic auth and/or a self-signed TLS certificate), killed by pid when
/// dropped.
pub struct Registry {
    child: std::process::Child,
    pub addr: String,
    pub dir: tempfile::TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Registry {
    pub fn start(htpasswd: Option<&str>, tls: bool) -> Registry {
        use std::process::{Command, Stdio};
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().display().to_string();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let mut config = format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {root}/data\nhttp:\n  addr: {addr}\n"
        );
        if tls {
            // A private CA (ca.pem) and a server certificate it signed.
            let openssl = |args: &[&str]| {
                let status = Command::new("openssl")
                    .args(args)
                    .current_dir(dir.path())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .expect("openssl is not installed");
                assert!(status.success(), "openssl {args:?} failed");
            };
            let ec = [
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
            ];
            openssl(
                &[
                    &["req", "-x509"][..],
                    &ec,
                    &[
                        "-days",
                        "1",
                        "-subj",
                        "/CN=orca test CA",
                        "-keyout",
                        "ca.key",
                        "-out",
                        "ca.pem",
                    ],
                ]
                .concat(),
            );
            openssl(
                &[
                    &["req"][..],
                    &ec,
                    &[
                        "-subj",
                        "/CN=127.0.0.1",
                        "-keyout",
                        "key.pem",
                        "-out",
                        "server.csr",
                    ],
                ]
                .concat(),
            );
            std::fs::write(dir.path().join("ext.cnf"), "subjectAltName=IP:127.0.0.1\n").unwrap();
            openssl(&[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "1",
                "-extfile",
                "ext.cnf",
                "-out",
                "cert.pem",
            ]);
            config.push_str(&format!(
                "  tls:\n    certificate: {root}/cert.pem\n    key: {root}/key.pem\n"
            ));
        }
        if let Some(htpasswd) = htpasswd {
            std::fs::write(dir.path().join("htpasswd"), htpasswd).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: orca-test\n    path: {root}/htpasswd\n"
            ));
        }
        std::fs::write(dir.path().join("config.yml"), config).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry is not installed (scripts/test.sh installs it)");
        let registry = Registry { child, addr, dir };
        for _ in 0..100 {
            if std::net::TcpStream::connect(&registry.addr).is_ok() {
                return registry;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!(
            "docker-registry on {} never started listening",
            registry.addr
        );
    }

    /// Pushes a test archive (`docker-archive:` or `oci-archive:` source) as `repo:latest`.
    pub fn push(&self, source: &str, repo: &str, creds: Option<&str>) -> String {
        let mut cmd = std::process::Command::new("skopeo");
        cmd.args(["copy", "-q", "--dest-tls-verify=false"]);
        if let Some(creds) = creds {
            cmd.args(["--dest-creds", creds]);
        }
        let reference = format!("{}/{repo}:latest", self.addr);
        let status = cmd
            .arg(source)
            .arg(format!("docker://{reference}"))
            .status()
            .expect("skopeo is not installed (scripts/test.sh installs it)");
        assert!(status.success(), "pushing {source} with skopeo failed");
        reference
    }
}
