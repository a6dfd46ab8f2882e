//! TLS for the streaming server (a self-signed serving certificate kept
//! under DATA_DIR/agent, client certificates required and checked against
//! the cluster CA) and the unverified client HTTPS probes use.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::Error;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)
}

/// Loads DATA_DIR/agent/serving.{crt,key}, creating a self-signed pair for
/// the node's name and IP on first start.
pub fn serving_identity(
    dir: &Path,
    node_name: &str,
    node_ip: &str,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), Error> {
    let crt = dir.join("serving.crt");
    let key = dir.join("serving.key");
    let io = |what: &str, path: &Path, e: std::io::Error| Error::Io {
        what: format!("{what} {}", path.display()),
        source: e,
    };
    if !crt.exists() || !key.exists() {
        std::fs::create_dir_all(dir).map_err(|e| io("creating", dir, e))?;
        let mut sans = vec![node_name.to_string(), "localhost".to_string()];
        if !node_ip.is_empty() {
            sans.push(node_ip.to_string());
        }
        sans.push("127.0.0.1".to_string());
        let certified = rcgen::generate_simple_self_signed(sans)
            .map_err(|e| Error::Tls(format!("generating the serving certificate: {e}")))?;
        write_private(&key, certified.signing_key.serialize_pem().as_bytes())
            .map_err(|e| io("writing", &key, e))?;
        write_private(&crt, certified.cert.pem().as_bytes()).map_err(|e| io("writing", &crt, e))?;
    }
    let certs = CertificateDer::pem_file_iter(&crt)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| Error::Tls(format!("reading {}: {e}", crt.display())))?;
    let key = PrivateKeyDer::from_pem_file(&key)
        .map_err(|e| Error::Tls(format!("reading {}: {e}", key.display())))?;
    Ok((certs, key))
}

/// Server config requiring client certificates signed by `ca_pem`.
pub fn server_config(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    ca_pem: &[u8],
) -> Result<rustls::ServerConfig, Error> {
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(ca_pem) {
        let ca = ca.map_err(|e| Error::Tls(format!("parsing the cluster CA: {e}")))?;
        roots
            .add(ca)
            .map_err(|e| Error::Tls(format!("adding the cluster CA: {e}")))?;
    }
    if roots.is_empty() {
        return Err(Error::Tls(
            "the cluster CA PEM holds no certificate; pass the API server's ca.crt".into(),
        ));
    }
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .map_err(|e| Error::Tls(format!("client verifier: {e}")))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| Error::Tls(format!("serving certificate: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Whether a (verified) client certificate names a member of
/// system:masters, as the API server's kubelet client certificate does.
pub fn in_system_masters(der: &CertificateDer<'_>) -> bool {
    x509_parser::parse_x509_certificate(der).is_ok_and(|(_, cert)| {
        cert.subject()
            .iter_organization()
            .any(|o| o.as_str() == Ok("system:masters"))
    })
}

/// HTTPS probes do not verify the container's certificate, as in Kubernetes.
pub fn insecure_connector() -> tokio_rustls::TlsConnector {
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(NoVerify))
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

#[derive(Debug)]
struct NoVerify;

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(orgs: &[&str]) -> CertificateDer<'static> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::default();
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "someone");
        for o in orgs {
            p.distinguished_name
                .push(rcgen::DnType::OrganizationName, *o);
        }
        p.self_signed(&key).unwrap().der().clone()
    }

    #[test]
    fn only_system_masters_may_stream() {
        assert!(in_system_masters(&cert(&["system:masters"])));
        assert!(!in_system_masters(&cert(&["system:nodes"])));
        assert!(!in_system_masters(&cert(&[])));
    }
}
