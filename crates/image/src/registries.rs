//! `DATA_DIR/registries.yaml` in k3s's format: per-registry mirrors and
//! per-host auth/TLS settings.
//!
//! ```yaml
//! mirrors:
//!   docker.io:
//!     endpoint: ["http://127.0.0.1:5000"]
//! configs:
//!   "127.0.0.1:5000":
//!     auth: { username: u, password: p }
//!     tls: { insecure_skip_verify: true }
//! ```
//! An `http://` endpoint is plain HTTP. After the mirrors, the registry
//! itself is tried (as k3s does). A loopback registry with no TLS settings
//! is insecure, as Docker treats 127.0.0.0/8: HTTPS without certificate
//! checks, falling back to plain HTTP.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use serde::Deserialize;

use crate::Error;

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistriesConfig {
    #[serde(default)]
    pub mirrors: BTreeMap<String, Mirror>,
    #[serde(default)]
    pub configs: BTreeMap<String, HostConfig>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct Mirror {
    #[serde(default)]
    pub endpoint: Vec<String>,
    /// Repository rewrites for this mirror's endpoints: regex -> replacement
    /// (`"^library/(.*)": "hub/$1"`); the first matching rule applies.
    #[serde(default)]
    pub rewrite: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct HostConfig {
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct AuthConfig {
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// base64 of `username:password`, as in a Docker config.json.
    #[serde(default)]
    pub auth: Option<String>,
    #[serde(default)]
    pub identitytoken: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct TlsConfig {
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// Credentials for one registry (from registries.yaml or a pod's
/// imagePullSecrets).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

/// One place to try pulling from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Endpoint {
    /// `host[:port]` as used in URLs and as the key of `configs`.
    pub host: String,
    pub transport: Transport,
    /// The mirror's rewrite rules (validated when the config was parsed).
    pub rewrite: Vec<(String, String)>,
}

impl Endpoint {
    /// The repository path to ask this endpoint for.
    pub fn repository(&self, repository: &str) -> String {
        for (pattern, replacement) in &self.rewrite {
            if let Ok(re) = regex::Regex::new(pattern) {
                if re.is_match(repository) {
                    return re.replace(repository, replacement.as_str()).into_owned();
                }
            }
        }
        repository.to_string()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Transport {
    Https,
    Http,
    /// Docker's default for loopback registries (insecure by default):
    /// HTTPS without certificate checks, then plain HTTP.
    Loopback,
}

impl RegistriesConfig {
    /// Reads the file; a missing file means no mirrors and no settings.
    pub fn load(path: &Path) -> Result<Self, Error> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text).map_err(|reason| Error::RegistriesConfig {
                path: path.to_path_buf(),
                reason,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
        }
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        let config: Self = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
        for (registry, mirror) in &config.mirrors {
            for pattern in mirror.rewrite.keys() {
                regex::Regex::new(pattern)
                    .map_err(|e| format!("mirrors.{registry}.rewrite {pattern:?}: {e}"))?;
            }
            for endpoint in &mirror.endpoint {
                parse_endpoint(endpoint)
                    .map_err(|e| format!("mirrors.{registry}.endpoint {endpoint:?}: {e}"))?;
            }
        }
        for (host, cfg) in &config.configs {
            if let Some(auth) = &cfg.auth {
                auth.credentials()
                    .map_err(|e| format!("configs.{host}.auth: {e}"))?;
            }
        }
        Ok(config)
    }

    /// Where to pull `registry`'s images from, in order: its mirrors (or
    /// the `"*"` mirrors), then the registry itself unless a mirror is it.
    pub(crate) fn endpoints(&self, registry: &str) -> Vec<Endpoint> {
        let mirror = self.mirrors.get(registry).or_else(|| self.mirrors.get("*"));
        let mut endpoints: Vec<Endpoint> = mirror
            .map(|m| {
                m.endpoint
                    .iter()
                    .filter_map(|e| parse_endpoint(e).ok())
                    .map(|e| Endpoint {
                        rewrite: m
                            .rewrite
                            .iter()
                            .map(|(p, r)| (p.clone(), r.clone()))
                            .collect(),
                        ..e
                    })
                    .collect()
            })
            .unwrap_or_default();
        let upstream = if registry == "docker.io" {
            "registry-1.docker.io"
        } else {
            registry
        };
        if !endpoints
            .iter()
            .any(|e| e.host == upstream || e.host == registry)
        {
            let configured_tls = self.host_config(upstream).is_some_and(|c| c.tls.is_some());
            endpoints.push(Endpoint {
                host: upstream.to_string(),
                transport: if is_loopback_host(upstream) && !configured_tls {
                    Transport::Loopback
                } else {
                    Transport::Https
                },
                rewrite: Vec::new(),
            });
        }
        endpoints
    }

    /// Settings for an endpoint host (`configs` is keyed by endpoint host;
    /// `docker.io` settings also apply to Docker Hub's real host).
    pub(crate) fn host_config(&self, host: &str) -> Option<&HostConfig> {
        self.configs.get(host).or_else(|| {
            (host == "registry-1.docker.io")
                .then(|| self.configs.get("docker.io"))
                .flatten()
        })
    }
}

impl AuthConfig {
    /// Username and password, from the fields or the base64 `auth`. An
    /// identity token is sent as the password with an empty user name, as
    /// Docker's credential helpers do.
    pub fn credentials(&self) -> Result<Option<Credentials>, String> {
        if let (Some(username), Some(password)) = (&self.username, &self.password) {
            return Ok(Some(Credentials {
                username: username.clone(),
                password: password.clone(),
            }));
        }
        if let Some(auth) = &self.auth {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .map_err(|e| format!("auth is not base64: {e}"))?;
            let text = String::from_utf8(raw).map_err(|_| "auth is not UTF-8".to_string())?;
            let (username, password) = text
                .split_once(':')
                .ok_or_else(|| "auth must encode username:password".to_string())?;
            return Ok(Some(Credentials {
                username: username.to_string(),
                password: password.to_string(),
            }));
        }
        if let Some(token) = &self.identitytoken {
            return Ok(Some(Credentials {
                username: String::new(),
                password: token.clone(),
            }));
        }
        if self.username.is_some() || self.password.is_some() {
            return Err("username and password must be given together".to_string());
        }
        Ok(None)
    }
}

fn parse_endpoint(endpoint: &str) -> Result<Endpoint, String> {
    let (transport, rest) = if let Some(rest) = endpoint.strip_prefix("http://") {
        (Transport::Http, rest)
    } else if let Some(rest) = endpoint.strip_prefix("https://") {
        (Transport::Https, rest)
    } else if endpoint.contains("://") {
        return Err("only http:// and https:// endpoints are supported".to_string());
    } else {
        (Transport::Https, endpoint)
    };
    let host = rest.trim_end_matches('/');
    let host = host.strip_suffix("/v2").unwrap_or(host);
    if host.is_empty() {
        return Err("endpoint has no host".to_string());
    }
    if host.contains('/') {
        return Err("endpoint paths other than /v2 are not supported".to_string());
    }
    Ok(Endpoint {
        host: host.to_string(),
        transport,
        rewrite: Vec::new(),
    })
}

fn is_loopback_host(host: &str) -> bool {
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name == "localhost"
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_k3s_registries_yaml() {
        let cfg = RegistriesConfig::parse(
            r#"
mirrors:
  docker.io:
    endpoint:
      - "http://127.0.0.1:5000"
      - "https://mirror.example.com/v2"
configs:
  "127.0.0.1:5000":
    auth:
      username: alice
      password: secret
    tls:
      insecure_skip_verify: true
  "mirror.example.com":
    auth:
      auth: Ym9iOnB3
"#,
        )
        .unwrap();
        let endpoints = cfg.endpoints("docker.io");
        assert_eq!(
            endpoints,
            vec![
                Endpoint {
                    host: "127.0.0.1:5000".into(),
                    transport: Transport::Http,
                    rewrite: vec![]
                },
                Endpoint {
                    host: "mirror.example.com".into(),
                    transport: Transport::Https,
                    rewrite: vec![]
                },
                Endpoint {
                    host: "registry-1.docker.io".into(),
                    transport: Transport::Https,
                    rewrite: vec![]
                },
            ]
        );
        let creds = cfg
            .host_config("mirror.example.com")
            .unwrap()
            .auth
            .as_ref()
            .unwrap();
        assert_eq!(
            creds.credentials().unwrap(),
            Some(Credentials {
                username: "bob".into(),
                password: "pw".into()
            })
        );
        assert!(
            cfg.host_config("127.0.0.1:5000")
                .unwrap()
                .tls
                .as_ref()
                .unwrap()
                .insecure_skip_verify
        );
    }

    #[test]
    fn mirror_rewrites_apply_to_mirror_endpoints_only() {
        let cfg = RegistriesConfig::parse(
            "mirrors:\n  docker.io:\n    endpoint: [\"http://m:5000\"]\n    rewrite:\n      \"^library/(.*)$\": \"hub/$1\"\n",
        )
        .unwrap();
        let endpoints = cfg.endpoints("docker.io");
        assert_eq!(endpoints[0].repository("library/busybox"), "hub/busybox");
        assert_eq!(endpoints[0].repository("user/app"), "user/app");
        assert_eq!(
            endpoints[1].repository("library/busybox"),
            "library/busybox"
        );
        let err = RegistriesConfig::parse("mirrors:\n  docker.io:\n    rewrite:\n      \"(\": x\n")
            .unwrap_err();
        assert!(err.contains("mirrors.docker.io.rewrite"), "{err}");
    }

    #[test]
    fn loopback_registries_are_insecure_by_default() {
        let cfg = RegistriesConfig::default();
        assert_eq!(
            cfg.endpoints("127.0.0.1:5000")[0].transport,
            Transport::Loopback
        );
        assert_eq!(
            cfg.endpoints("localhost:5000")[0].transport,
            Transport::Loopback
        );
        assert_eq!(
            cfg.endpoints("[::1]:5000")[0].transport,
            Transport::Loopback
        );
        assert_eq!(cfg.endpoints("ghcr.io")[0].transport, Transport::Https);
        // TLS settings for the host make it an ordinary HTTPS registry.
        let cfg = RegistriesConfig::parse(
            "configs:\n  \"127.0.0.1:5000\":\n    tls:\n      ca_file: /x.pem\n",
        )
        .unwrap();
        assert_eq!(
            cfg.endpoints("127.0.0.1:5000")[0].transport,
            Transport::Https
        );
    }

    #[test]
    fn rejects_bad_config_clearly() {
        let err = RegistriesConfig::parse("mirrors:\n  docker.io:\n    endpoint: [\"ftp://x\"]\n")
            .unwrap_err();
        assert!(err.contains("mirrors.docker.io.endpoint"), "{err}");
        let err =
            RegistriesConfig::parse("configs:\n  x:\n    auth:\n      username: u\n").unwrap_err();
        assert!(err.contains("together"), "{err}");
    }
}
