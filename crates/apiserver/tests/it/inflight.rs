//! The in-flight limit: beyond `max_mutating_requests_inflight` mutating
//! requests at once, kube-apiserver's 429 with `Retry-After: 1`; members of
//! system:masters are still served, and the slot frees when the request
//! ends.

use crate::common;

use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A TLS connection to the server as the holder of `cert`/`key`.
async fn connect(
    addr: std::net::SocketAddr,
    ca_pem: &[u8],
    cert: &str,
    key: &str,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(c.expect("ca")).expect("root");
    }
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert.as_bytes())
        .collect::<Result<_, _>>()
        .expect("cert");
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("key");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("tls versions")
    .with_root_certificates(roots)
    .with_client_auth_cert(certs, key)
    .expect("client config");
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("127.0.0.1").expect("name"), tcp)
        .await
        .expect("tls")
}

fn post_head(len: usize) -> String {
    format!(
        "POST /api/v1/namespaces/default/configmaps HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\r\n"
    )
}

const BODY: &str = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"NAME"}}"#;

/// Sends a whole POST and returns the response's head and body.
async fn post(
    stream: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    name: &str,
) -> String {
    let body = BODY.replace("NAME", name);
    let req = format!("{}{body}", post_head(body.len()))
        .replace("HTTP/1.1\r\n", "HTTP/1.1\r\nConnection: close\r\n");
    stream.write_all(req.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    stream.read_to_end(&mut out).await.ok();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutating_requests_beyond_the_limit_get_429_with_retry_after() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = common::open_store(dir.path()).await;
    let server = orca_apiserver::start(
        orca_apiserver::Config {
            data_dir: dir.path().to_path_buf(),
            https_port: 0,
            max_mutating_requests_inflight: 1,
            ..Default::default()
        },
        store,
    )
    .await
    .expect("server");
    let h = common::Harness { dir, server };
    h.kubectl(&[
        "create",
        "rolebinding",
        "bob-edit",
        "--clusterrole=edit",
        "--user=bob",
    ])
    .await;
    let ca = std::fs::read(h.dir.path().join("tls/ca.crt")).expect("ca");
    let (cert, key) = h.user_certificate("bob", &[]);
    let addr = h.server.addr();

    // A write whose body has not all arrived holds the only slot.
    let mut slow = connect(addr, &ca, &cert, &key).await;
    let body = BODY.replace("NAME", "slow");
    slow.write_all(post_head(body.len()).as_bytes())
        .await
        .expect("head");
    slow.write_all(&body.as_bytes()[..10]).await.expect("part");
    slow.flush().await.expect("flush");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    let mut second = connect(addr, &ca, &cert, &key).await;
    let resp = post(&mut second, "second").await;
    assert!(resp.starts_with("HTTP/1.1 429 "), "{resp}");
    let lower = resp.to_ascii_lowercase();
    assert!(lower.contains("\r\nretry-after: 1\r\n"), "{resp}");
    assert!(
        resp.ends_with("\r\n\r\nToo many requests, please try again later.\n"),
        "{resp}"
    );

    // Reads have their own limit; system:masters is always served.
    h.kubectl(&["get", "configmaps"]).await;
    h.kubectl(&["create", "configmap", "by-admin"]).await;

    // Once the slow write ends, the slot is free again.
    slow.write_all(&body.as_bytes()[10..]).await.expect("rest");
    let mut out = vec![0u8; 4096];
    let n = slow.read(&mut out).await.expect("response");
    assert!(String::from_utf8_lossy(&out[..n]).starts_with("HTTP/1.1 201 "));
    let mut third = connect(addr, &ca, &cert, &key).await;
    let resp = post(&mut third, "third").await;
    assert!(resp.starts_with("HTTP/1.1 201 "), "{resp}");
}
