//! TLS material under DATA_DIR/tls, the admin kubeconfig and the node join
//! token. Created on first start; later starts reuse the CA and credentials so
//! existing kubeconfigs and agents keep working.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

use crate::Error;

const CA_CN: &str = "orca-ca";

/// Everything the server needs to terminate TLS and authenticate clients.
pub struct Material {
    pub ca_pem: String,
    pub server_config: Arc<rustls::ServerConfig>,
    /// Client identity the server presents to node agents (log/exec/attach).
    pub kubelet_client_config: Arc<rustls::ClientConfig>,
    /// The whole `K10...::node:...` line agents present as a bearer token.
    pub node_token: String,
    /// Signs client certificates for approved certificate requests.
    pub signer: Arc<Signer>,
}

/// The cluster CA's signing side (kube-controller-manager's csrsigning).
pub struct Signer {
    ca_pem: String,
    ca_key_pem: String,
}

impl Signer {
    /// A client certificate for the PEM request `csr_pem` (its subject and
    /// key; usages digital signature, key encipherment and client auth),
    /// valid from a little before now (for clock skew: 5 minutes, less for
    /// short lifetimes so that renewal at 80% still lies ahead) until
    /// `lifetime` from now.
    pub fn sign_client(
        &self,
        csr_pem: &str,
        lifetime: std::time::Duration,
    ) -> Result<String, Error> {
        let key = KeyPair::from_pem(&self.ca_key_pem).map_err(tls_err)?;
        let issuer = Issuer::from_ca_cert_pem(&self.ca_pem, key).map_err(tls_err)?;
        let mut csr = rcgen::CertificateSigningRequestParams::from_pem(csr_pem).map_err(tls_err)?;
        let now = time::OffsetDateTime::now_utc();
        let p = &mut csr.params;
        let backdate = (lifetime.as_secs() / 10).min(300) as i64;
        p.not_before = now - time::Duration::seconds(backdate);
        p.not_after = now + time::Duration::seconds(lifetime.as_secs() as i64);
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        p.subject_alt_names.clear();
        p.use_authority_key_identifier_extension = true;
        let cert = csr.signed_by(&issuer).map_err(tls_err)?;
        Ok(cert.pem())
    }
}

fn tls_err(what: impl std::fmt::Display) -> Error {
    Error::Tls(what.to_string())
}

/// Writes `contents` to `path` with mode 0600 (atomically via a temp file).
pub fn write_private(path: &Path, contents: &[u8]) -> Result<(), Error> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| Error::io(&tmp, e))?;
        f.write_all(contents).map_err(|e| Error::io(&tmp, e))?;
        f.sync_all().map_err(|e| Error::io(&tmp, e))?;
    }
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600)).map_err(|e| Error::io(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

fn read(path: &Path) -> Result<String, Error> {
    fs::read_to_string(path).map_err(|e| Error::io(path, e))
}

fn ca_params() -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_CN);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p
}

fn validity(p: &mut CertificateParams, years: i32) {
    let now = chrono::Utc::now();
    p.not_before = rcgen::date_time_ymd(
        now.format("%Y").to_string().parse().unwrap_or(2025) - 1,
        1,
        1,
    );
    p.not_after = rcgen::date_time_ymd(
        now.format("%Y").to_string().parse().unwrap_or(2025) + years,
        1,
        1,
    );
}

fn client_params(cn: &str, org: &str) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn.push(DnType::OrganizationName, org);
    p.distinguished_name = dn;
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    validity(&mut p, 10);
    p
}

fn issue(
    dir: &Path,
    name: &str,
    params: CertificateParams,
    ca: &Issuer<'_, KeyPair>,
) -> Result<(), Error> {
    let key = KeyPair::generate().map_err(tls_err)?;
    let cert = params.signed_by(&key, ca).map_err(tls_err)?;
    write_private(
        &dir.join(format!("{name}.key")),
        key.serialize_pem().as_bytes(),
    )?;
    write_private(&dir.join(format!("{name}.crt")), cert.pem().as_bytes())
}

/// Loads (or creates on first start) the CA, serving and client certificates
/// and the node token under `data_dir`.
pub fn load_or_create(data_dir: &Path, sans: &[String]) -> Result<Material, Error> {
    let dir = data_dir.join("tls");
    fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).map_err(|e| Error::io(&dir, e))?;

    let ca_crt = dir.join("ca.crt");
    let ca_key_path = dir.join("ca.key");
    if !ca_crt.exists() || !ca_key_path.exists() {
        let key = KeyPair::generate().map_err(tls_err)?;
        let mut p = ca_params();
        validity(&mut p, 10);
        let cert = p.self_signed(&key).map_err(tls_err)?;
        write_private(&ca_key_path, key.serialize_pem().as_bytes())?;
        write_private(&ca_crt, cert.pem().as_bytes())?;
        // A new CA invalidates everything it signed before.
        for n in ["serving", "admin", "apiserver-kubelet-client"] {
            let _ = fs::remove_file(dir.join(format!("{n}.crt")));
        }
    }
    let ca_key = KeyPair::from_pem(&read(&ca_key_path)?).map_err(tls_err)?;
    let issuer = Issuer::new(ca_params(), ca_key);

    // The serving certificate is re-issued when the wanted names change
    // (e.g. a new --tls-san), still signed by the same CA.
    let sans_record = dir.join("serving.sans");
    let wanted = sans.join("\n");
    if !dir.join("serving.crt").exists()
        || fs::read_to_string(&sans_record).ok().as_deref() != Some(wanted.as_str())
    {
        let mut p = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "kube-apiserver");
        p.distinguished_name = dn;
        p.subject_alt_names = sans
            .iter()
            .map(|s| match s.parse::<std::net::IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => s.clone().try_into().map(SanType::DnsName).map_err(tls_err),
            })
            .collect::<Result<_, _>>()?;
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        validity(&mut p, 10);
        issue(&dir, "serving", p, &issuer)?;
        write_private(&sans_record, wanted.as_bytes())?;
    }
    if !dir.join("admin.crt").exists() {
        issue(
            &dir,
            "admin",
            client_params("system:admin", "system:masters"),
            &issuer,
        )?;
    }
    if !dir.join("apiserver-kubelet-client.crt").exists() {
        issue(
            &dir,
            "apiserver-kubelet-client",
            client_params("kube-apiserver-kubelet-client", "system:masters"),
            &issuer,
        )?;
    }

    let ca_pem = read(&ca_crt)?;
    let token_path = data_dir.join("token");
    let node_token = match fs::read_to_string(&token_path) {
        Ok(t) if !t.trim().is_empty() => t.trim().to_string(),
        _ => {
            let secret: [u8; 16] = rand::random();
            let t = format!("{}::node:{}", token_prefix(&ca_pem), hex::encode(secret));
            write_private(&token_path, format!("{t}\n").as_bytes())?;
            t
        }
    };

    let mut roots = rustls::RootCertStore::empty();
    for c in certs(&ca_crt)? {
        roots.add(c).map_err(tls_err)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()
    .map_err(tls_err)?;
    let mut server_config = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(tls_err)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            certs(&dir.join("serving.crt"))?,
            key(&dir.join("serving.key"))?,
        )
        .map_err(tls_err)?;
    server_config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];

    let kubelet_client_config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(tls_err)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServerCert(
            rustls::crypto::ring::default_provider(),
        )))
        .with_client_auth_cert(
            certs(&dir.join("apiserver-kubelet-client.crt"))?,
            key(&dir.join("apiserver-kubelet-client.key"))?,
        )
        .map_err(tls_err)?;

    let signer = Arc::new(Signer {
        ca_pem: ca_pem.clone(),
        ca_key_pem: read(&ca_key_path)?,
    });
    Ok(Material {
        signer,
        ca_pem,
        server_config: Arc::new(server_config),
        kubelet_client_config: Arc::new(kubelet_client_config),
        node_token,
    })
}

/// `K10` + hex sha256 of the CA PEM: lets an agent check the CA it downloads
/// from `/cacerts` before trusting it.
pub fn token_prefix(ca_pem: &str) -> String {
    format!("K10{}", hex::encode(Sha256::digest(ca_pem.as_bytes())))
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    CertificateDer::pem_file_iter(path)
        .map_err(|e| Error::Tls(format!("{}: {e}", path.display())))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Tls(format!("{}: {e}", path.display())))
}

fn key(path: &Path) -> Result<PrivateKeyDer<'static>, Error> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| Error::Tls(format!("{}: {e}", path.display())))
}

/// Writes DATA_DIR/kubeconfig for the admin identity against `server_url`.
pub fn write_kubeconfig(data_dir: &Path, server_url: &str) -> Result<PathBuf, Error> {
    let dir = data_dir.join("tls");
    let b64 = |p: &str| -> Result<String, Error> {
        Ok(base64::engine::general_purpose::STANDARD.encode(read(&dir.join(p))?))
    };
    let config = format!(
        "apiVersion: v1
kind: Config
clusters:
- cluster:
    certificate-authority-data: {ca}
    server: {server_url}
  name: orca
contexts:
- context:
    cluster: orca
    user: admin
    namespace: default
  name: orca
current-context: orca
preferences: {{}}
users:
- name: admin
  user:
    client-certificate-data: {crt}
    client-key-data: {key}
",
        ca = b64("ca.crt")?,
        crt = b64("admin.crt")?,
        key = b64("admin.key")?,
    );
    let path = data_dir.join("kubeconfig");
    write_private(&path, config.as_bytes())?;
    Ok(path)
}

/// Node agents serve their streaming endpoints with self-signed certificates
/// that Kubernetes' API server does not verify by default; neither do we.
#[derive(Debug)]
pub(crate) struct AnyServerCert(pub(crate) rustls::crypto::CryptoProvider);

impl rustls::client::danger::ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &rustls_pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
