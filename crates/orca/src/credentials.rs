//! A node's own API credential, as the kubelet's TLS bootstrap and
//! certificate rotation: with the join token (a bootstrap identity) the
//! agent asks for a client certificate for `system:node:<name>` in
//! `system:nodes` through a CertificateSigningRequest, which the server
//! approves and signs; key and certificate live in
//! `DATA_DIR/agent/kubelet-client.{key,crt}` (0600) and are used for every
//! later request. At 80% of the certificate's lifetime the agent requests a
//! new one with its current identity and switches to it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context};
use base64::Engine;
use serde_json::{json, Value};

const SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";
const CSRS: &str = "/apis/certificates.k8s.io/v1/certificatesigningrequests";

/// A certificate and its key, as PEM.
#[derive(Clone)]
pub struct Credential {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Credential {
    /// When the certificate became valid and when it expires.
    fn validity(&self) -> Option<(SystemTime, SystemTime)> {
        use rustls_pki_types::pem::PemObject;
        let der =
            rustls_pki_types::CertificateDer::from_pem_slice(self.cert_pem.as_bytes()).ok()?;
        let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
        let at = |t: i64| SystemTime::UNIX_EPOCH + Duration::from_secs(t.max(0) as u64);
        Some((
            at(cert.validity().not_before.timestamp()),
            at(cert.validity().not_after.timestamp()),
        ))
    }

    /// The subject's common name.
    fn common_name(&self) -> Option<String> {
        use rustls_pki_types::pem::PemObject;
        let der =
            rustls_pki_types::CertificateDer::from_pem_slice(self.cert_pem.as_bytes()).ok()?;
        let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
        let cn = cert
            .subject()
            .iter_common_name()
            .next()?
            .as_str()
            .ok()?
            .to_string();
        Some(cn)
    }

    /// When to request the next one: at 80% of its lifetime.
    pub fn renew_at(&self) -> Option<SystemTime> {
        let (from, until) = self.validity()?;
        let life = until.duration_since(from).ok()?;
        Some(from + life.mul_f64(0.8))
    }
}

/// Where a node keeps its credential.
pub struct Store {
    cert: PathBuf,
    key: PathBuf,
}

impl Store {
    pub fn new(agent_dir: &Path) -> Store {
        Store {
            cert: agent_dir.join("kubelet-client.crt"),
            key: agent_dir.join("kubelet-client.key"),
        }
    }

    /// The stored credential, if it is for `node` and not due for renewal.
    pub fn load_current(&self, node: &str) -> Option<Credential> {
        let c = Credential {
            cert_pem: std::fs::read_to_string(&self.cert).ok()?,
            key_pem: std::fs::read_to_string(&self.key).ok()?,
        };
        (c.common_name()? == format!("system:node:{node}") && c.renew_at()? > SystemTime::now())
            .then_some(c)
    }

    pub fn save(&self, c: &Credential) -> anyhow::Result<()> {
        write_private(&self.key, c.key_pem.as_bytes())?;
        write_private(&self.cert, c.cert_pem.as_bytes())
    }
}

fn write_private(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// Asks the server (as whoever `client` is) for a client certificate for
/// `node`, and waits until it is issued.
pub async fn request(client: &kube::Client, node: &str) -> anyhow::Result<Credential> {
    let key = rcgen::KeyPair::generate().context("generating the node's key")?;
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("system:node:{node}"));
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "system:nodes");
    let csr = params
        .serialize_request(&key)
        .and_then(|c| c.pem())
        .context("building the certificate request")?;
    let body = json!({
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"generateName": "node-csr-"},
        "spec": {
            "request": base64::engine::general_purpose::STANDARD.encode(csr),
            "signerName": SIGNER,
            "usages": ["digital signature", "client auth"],
        },
    });
    let req = http::Request::post(CSRS)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(serde_json::to_vec(&body)?)?;
    let created: Value = client
        .request(req)
        .await
        .context("creating a CertificateSigningRequest for this node (is the join token valid?)")?;
    let name = created["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    tracing::info!(csr = %name, node, "requested a node client certificate");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    loop {
        let req = http::Request::get(format!("{CSRS}/{name}")).body(Vec::new())?;
        let csr: Value = client
            .request(req)
            .await
            .with_context(|| format!("reading CertificateSigningRequest {name}"))?;
        if let Some(cert) = csr["status"]["certificate"]
            .as_str()
            .filter(|c| !c.is_empty())
        {
            let pem = base64::engine::general_purpose::STANDARD.decode(cert)?;
            return Ok(Credential {
                cert_pem: String::from_utf8(pem).context("the issued certificate is not PEM")?,
                key_pem: key.serialize_pem(),
            });
        }
        let conditions = csr["status"]["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if let Some(c) = conditions
            .iter()
            .find(|c| c["type"] == "Denied" || c["type"] == "Failed")
        {
            bail!(
                "CertificateSigningRequest {name} was {}: {}",
                c["type"].as_str().unwrap_or_default(),
                c["message"].as_str().unwrap_or_default()
            );
        }
        if tokio::time::Instant::now() > deadline {
            bail!("CertificateSigningRequest {name} was not issued within 5 minutes; approve it with `kubectl certificate approve {name}`");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A kube client whose TLS identity can be replaced while it is in use:
/// requests go through the current inner client; connections made with an
/// old certificate end with the old client.
#[derive(Clone)]
pub struct Rotating {
    current: Arc<RwLock<kube::Client>>,
}

impl Rotating {
    pub fn new(client: kube::Client) -> Rotating {
        Rotating {
            current: Arc::new(RwLock::new(client)),
        }
    }

    pub fn replace(&self, client: kube::Client) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = client;
    }

    fn inner(&self) -> kube::Client {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A client that always uses the current identity.
    pub fn client(&self) -> kube::Client {
        let this = self.clone();
        let service = tower::service_fn(move |req: http::Request<kube::client::Body>| {
            let inner = this.inner();
            async move { inner.send(req).await }
        });
        kube::Client::new(service, "default")
    }
}

/// A client for `server` trusting `ca_pem` and presenting `c`.
pub fn client_with(server: &str, ca: Vec<Vec<u8>>, c: &Credential) -> anyhow::Result<kube::Client> {
    let url: http::Uri = server
        .parse()
        .with_context(|| format!("--server {server}"))?;
    let mut config = kube::Config::new(url);
    config.root_cert = Some(ca);
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    config.auth_info.client_certificate_data = Some(b64(&c.cert_pem));
    config.auth_info.client_key_data = Some(b64(&c.key_pem).into());
    // A node's client is its kubelet: named so as a field manager.
    let agent = format!(
        "kubelet/{} (linux/amd64) kubernetes/orca",
        orca_apiserver::GIT_VERSION
    );
    config.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_str(&agent)?,
    ));
    Ok(kube::Client::try_from(config)?)
}

/// Renews the credential at 80% of its lifetime, for as long as the agent
/// runs: asks with the current identity, stores, then switches.
pub async fn keep_renewed(
    server: String,
    ca: Vec<Vec<u8>>,
    node: String,
    store: Store,
    mut current: Credential,
    rotating: Rotating,
) {
    loop {
        let wait = current
            .renew_at()
            .and_then(|t| t.duration_since(SystemTime::now()).ok())
            .unwrap_or_default();
        tokio::time::sleep(wait).await;
        let renewed = match request(&rotating.client(), &node).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(
                    "renewing the node client certificate failed (retrying in 30s): {e:#}"
                );
                tokio::time::sleep(Duration::from_secs(30)).await;
                continue;
            }
        };
        if let Err(e) = store.save(&renewed) {
            tracing::warn!("could not store the renewed node certificate: {e:#}");
        }
        match client_with(&server, ca.clone(), &renewed) {
            Ok(client) => {
                rotating.replace(client);
                tracing::info!(node, "switched to a renewed node client certificate");
                current = renewed;
            }
            Err(e) => tracing::warn!("cannot use the renewed node certificate: {e:#}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_falls_at_eighty_percent_of_the_lifetime() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::default();
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "system:node:n1");
        p.not_before = rcgen::date_time_ymd(2030, 1, 1);
        p.not_after = rcgen::date_time_ymd(2030, 1, 11);
        let cert = p.self_signed(&key).unwrap();
        let c = Credential {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        };
        let (from, _) = c.validity().unwrap();
        assert_eq!(
            c.renew_at().unwrap().duration_since(from).unwrap(),
            Duration::from_secs(8 * 24 * 3600)
        );
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        store.save(&c).unwrap();
        assert!(store.load_current("n1").is_some());
        assert!(
            store.load_current("n2").is_none(),
            "another node's credential"
        );
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.path().join("kubelet-client.key"))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
    }
}
