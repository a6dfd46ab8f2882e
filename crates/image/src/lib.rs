//! The node's image store under `DATA_DIR/agent/images`: blobs by digest,
//! unpacked layers by diff ID, and image records by name and digest.
//!
//! Layout (every record is written to a temporary file, fsynced and
//! renamed, so a crash never leaves a half image visible):
//! - `blobs/sha256/<hex>`: manifests and configs.
//! - `layers/sha256/<diff-id hex>/rootfs`: a layer unpacked for overlayfs
//!   (whiteouts as 0:0 character devices, opaque dirs as
//!   `trusted.overlay.opaque=y`), shared by every image that has it, with
//!   its size in `meta.json` beside it.
//! - `images/by-digest/<manifest hex>.json`: the image record.
//! - `images/by-name/<name>.json`: name -> manifest digest.
//! - `imports/<archive hex>.json`: archives already imported at startup.
//! - `leases/<id>.json`: images kept while a container uses them.
//! - `tmp/`: work in progress, named by the owning pid.

mod archive;
mod digest;
mod oci;
mod pull;
mod reference;
mod registries;
mod store;
mod unpack;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use reference::{is_digest, normalize_reference, ImageRef, DEFAULT_REGISTRY};
pub use registries::{AuthConfig, Credentials, HostConfig, Mirror, RegistriesConfig, TlsConfig};
pub use store::{GcStats, ImageStore, ImportDirReport};

/// An image present in the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    /// The canonical name this image was looked up or listed by
    /// (`docker.io/library/nginx:latest`).
    pub reference: String,
    /// The image ID: digest of its config (`sha256:...`), as `crictl images`
    /// shows it.
    pub digest: String,
    /// `repository@sha256:<manifest digest>`: what Kubernetes shows as a
    /// container's `imageID`.
    pub repo_digest: String,
    /// `sha256:...` of the manifest (the image's content address).
    pub manifest_digest: String,
    /// Every name that points at this image.
    pub names: Vec<String>,
    pub config: ImageConfig,
    /// Unpacked layer directories, bottom first (overlayfs lowerdirs are
    /// given top first: reverse this).
    pub layers: Vec<PathBuf>,
    /// Bytes the unpacked layers hold.
    pub size: u64,
}

/// What the image says to run, from its config JSON.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `NAME=value` entries.
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    /// `user`, `uid`, `user:group` or `uid:gid`, as written in the image.
    pub user: Option<String>,
    /// `SIGQUIT`, `15`, ...
    pub stop_signal: Option<String>,
    /// `80/tcp`, sorted.
    pub exposed_ports: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference { reference: String, reason: String },
    #[error("image {reference} not found: {detail}")]
    NotFound { reference: String, detail: String },
    #[error("cannot pull {reference}: registry unreachable: {detail}")]
    RegistryUnreachable { reference: String, detail: String },
    #[error(
        "pull access denied for {reference}: {detail} (check the credentials in registries.yaml or the pod's imagePullSecrets)"
    )]
    Unauthorized { reference: String, detail: String },
    #[error("cannot pull {reference}: {detail}")]
    Registry { reference: String, detail: String },
    #[error("image {reference} is invalid: {reason}")]
    InvalidImage { reference: String, reason: String },
    #[error("image {0} is not in the image store")]
    ImageNotPresent(String),
    #[error("archive {path}: {reason}")]
    InvalidArchive { path: PathBuf, reason: String },
    #[error("layer {layer}: refusing entry {entry:?}: {reason}")]
    UnsafeLayer {
        layer: String,
        entry: String,
        reason: String,
    },
    #[error("{what}: digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },
    #[error("registries config {path}: {reason}")]
    RegistriesConfig { path: PathBuf, reason: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
