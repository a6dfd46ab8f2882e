//! The JSON documents of OCI and Docker v2 schema 2 images, as far as the
//! store reads them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Error, ImageConfig};

pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub(crate) const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub(crate) const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub(crate) const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub(crate) const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Descriptor {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub media_type: String,
    pub digest: String,
    #[serde(default)]
    pub size: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Platform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// A manifest or an index: which one is told by `mediaType`, or by which
/// fields are present when it is missing (as OCI allows).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Document {
    #[serde(default)]
    pub schema_version: u32,
    #[serde(default)]
    pub media_type: Option<String>,
    #[serde(default)]
    pub config: Option<Descriptor>,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    #[serde(default)]
    pub manifests: Option<Vec<Descriptor>>,
}

impl Document {
    pub fn parse(bytes: &[u8], what: &str) -> Result<Self, String> {
        let doc: Self =
            serde_json::from_slice(bytes).map_err(|e| format!("{what} is not valid JSON: {e}"))?;
        if doc.schema_version != 2 {
            return Err(format!(
                "{what} has schemaVersion {} (only schema 2 manifests are supported)",
                doc.schema_version
            ));
        }
        Ok(doc)
    }

    pub fn is_index(&self) -> bool {
        match self.media_type.as_deref() {
            Some(OCI_INDEX) | Some(DOCKER_LIST) => true,
            Some(_) => false,
            None => self.manifests.is_some() && self.config.is_none(),
        }
    }
}

/// The architecture name OCI uses for this machine.
pub(crate) fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        other => other,
    }
}

/// The index entry for linux on this machine's architecture; an index with
/// a single entry that names no platform is taken as is.
pub(crate) fn pick_platform(manifests: &[Descriptor]) -> Option<&Descriptor> {
    manifests
        .iter()
        .find(|d| {
            d.platform
                .as_ref()
                .is_some_and(|p| p.os == "linux" && p.architecture == host_arch())
        })
        .or_else(|| match manifests {
            [only] if only.platform.is_none() => Some(only),
            _ => None,
        })
}

#[derive(Debug, Deserialize)]
pub(crate) struct ConfigFile {
    #[serde(default)]
    pub config: Option<ContainerConfig>,
    pub rootfs: RootFs,
}

#[derive(Debug, Deserialize)]
pub(crate) struct RootFs {
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ContainerConfig {
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    #[serde(default)]
    pub env: Option<Vec<String>>,
    #[serde(default)]
    pub working_dir: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub stop_signal: Option<String>,
    #[serde(default)]
    pub exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
}

impl ConfigFile {
    pub fn parse(bytes: &[u8], reference: &str) -> Result<Self, Error> {
        let config: Self = serde_json::from_slice(bytes).map_err(|e| Error::InvalidImage {
            reference: reference.to_string(),
            reason: format!("image config is not valid: {e}"),
        })?;
        if let Some(bad) = config.rootfs.diff_ids.iter().find(|d| !crate::is_digest(d)) {
            return Err(Error::InvalidImage {
                reference: reference.to_string(),
                reason: format!("image config has an unsupported diff ID {bad:?}"),
            });
        }
        Ok(config)
    }

    pub fn image_config(&self) -> ImageConfig {
        let c = self.config.as_ref();
        let non_empty = |s: Option<&String>| s.filter(|s| !s.is_empty()).cloned();
        ImageConfig {
            entrypoint: c.and_then(|c| c.entrypoint.clone()).unwrap_or_default(),
            cmd: c.and_then(|c| c.cmd.clone()).unwrap_or_default(),
            env: c.and_then(|c| c.env.clone()).unwrap_or_default(),
            working_dir: non_empty(c.and_then(|c| c.working_dir.as_ref())),
            user: non_empty(c.and_then(|c| c.user.as_ref())),
            stop_signal: non_empty(c.and_then(|c| c.stop_signal.as_ref())),
            exposed_ports: c
                .and_then(|c| c.exposed_ports.as_ref())
                .map(|p| p.keys().cloned().collect())
                .unwrap_or_default(),
        }
    }
}

/// Whether a layer media type is one this store can unpack.
pub(crate) fn is_layer_media_type(media_type: &str) -> bool {
    media_type.is_empty() || (media_type.contains("tar") && !media_type.contains("encrypted"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_config_from_docker_config_json() {
        let json = br#"{"architecture":"amd64","os":"linux","config":{"Entrypoint":["/docker-entrypoint.sh"],"Cmd":["nginx","-g","daemon off;"],"Env":["PATH=/bin"],"WorkingDir":"","User":"101:101","StopSignal":"SIGQUIT","ExposedPorts":{"80/tcp":{},"443/tcp":{}}},"rootfs":{"type":"layers","diff_ids":["sha256:0000000000000000000000000000000000000000000000000000000000000000"]}}"#;
        let cfg = ConfigFile::parse(json, "x").unwrap().image_config();
        assert_eq!(cfg.entrypoint, vec!["/docker-entrypoint.sh"]);
        assert_eq!(cfg.cmd, vec!["nginx", "-g", "daemon off;"]);
        assert_eq!(cfg.env, vec!["PATH=/bin"]);
        assert_eq!(cfg.working_dir, None);
        assert_eq!(cfg.user.as_deref(), Some("101:101"));
        assert_eq!(cfg.stop_signal.as_deref(), Some("SIGQUIT"));
        assert_eq!(cfg.exposed_ports, vec!["443/tcp", "80/tcp"]);
    }

    #[test]
    fn picks_linux_on_this_arch_from_an_index() {
        let entry = |os: &str, arch: &str, digest: &str| Descriptor {
            digest: digest.into(),
            platform: Some(Platform {
                os: os.into(),
                architecture: arch.into(),
                variant: None,
            }),
            ..Default::default()
        };
        let list = vec![
            entry("unknown", "unknown", "attestation"),
            entry("linux", "s390x-not-this", "other"),
            entry("linux", host_arch(), "ours"),
        ];
        assert_eq!(pick_platform(&list).unwrap().digest, "ours");
        assert!(pick_platform(&list[..2]).is_none());
    }
}
