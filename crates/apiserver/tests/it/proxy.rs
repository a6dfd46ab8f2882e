//! pods/log and pods/exec are proxied to the node agent named by the pod's
//! node (InternalIP + kubeletEndpoint port) with the apiserver's client
//! certificate; upgrades pass bytes through both ways. A fake agent here
//! stands in for orca-agent's streaming server.

use crate::common;

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, PostParams};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A TLS server that requires a client certificate from the cluster CA,
/// answers logs with the request path, and echoes bytes after an upgrade.
async fn fake_agent(ca_pem: &[u8]) -> u16 {
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .expect("params")
        .self_signed(&key)
        .expect("cert");
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem).expect("ca"))
        .expect("root");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .expect("verifier");
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).expect("key"),
        )
        .expect("config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper::service::service_fn(
                    |mut req: hyper::Request<Incoming>| async move {
                        let path = req.uri().to_string();
                        if req.headers().contains_key("upgrade") {
                            let spdy = req.headers().get("x-stream-protocol-version").cloned();
                            let on = hyper::upgrade::on(&mut req);
                            tokio::spawn(async move {
                                let Ok(up) = on.await else { return };
                                let mut io = TokioIo::new(up);
                                let mut buf = [0u8; 64];
                                while let Ok(n) = io.read(&mut buf).await {
                                    if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                                        return;
                                    }
                                }
                            });
                            let mut r = hyper::Response::builder()
                                .status(101)
                                .header("connection", "Upgrade");
                            r = match spdy {
                                Some(p) => r
                                    .header("upgrade", "SPDY/3.1")
                                    .header("x-stream-protocol-version", p),
                                None => r
                                    .header("upgrade", "websocket")
                                    .header("sec-websocket-protocol", "v5.channel.k8s.io"),
                            };
                            return Ok::<_, std::convert::Infallible>(
                                r.body(Full::new(Bytes::new())).expect("response"),
                            );
                        }
                        if path.contains("/containerLogs/default/web/bad") {
                            return Ok(hyper::Response::builder()
                                .status(400)
                                .header("content-type", "text/plain")
                                .body(Full::new(Bytes::from(
                                    "container \"bad\" in pod \"web\" is waiting to start: trying and failing to pull image",
                                )))
                                .expect("response"));
                        }
                        Ok(hyper::Response::new(Full::new(Bytes::from(format!(
                            "agent saw {path}\n"
                        )))))
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_and_exec_reach_the_agent() {
    let h = common::Harness::start().await;
    let ca = std::fs::read(h.dir.path().join("tls/ca.crt")).expect("ca");
    let port = fake_agent(&ca).await;
    let client = h.client().await;
    let node: Node = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-a"},
        "status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                   "daemonEndpoints": {"kubeletEndpoint": {"Port": port}}},
    }))
    .expect("node");
    Api::<Node>::all(client.clone())
        .create(&PostParams::default(), &node)
        .await
        .expect("node");
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
        "spec": {"nodeName": "node-a", "containers": [{"name": "c", "image": "busybox"}, {"name": "bad", "image": "nosuch"}]},
    }))
    .expect("pod");
    Api::<Pod>::namespaced(client, "default")
        .create(&PostParams::default(), &pod)
        .await
        .expect("pod");

    let out = h.kubectl(&["logs", "web", "-c", "c", "--tail=5"]).await;
    assert_eq!(out, "agent saw /containerLogs/default/web/c?tailLines=5\n");
    // The agent's plain-text refusal reaches kubectl as a Status.
    let err = h.kubectl_fails(&["logs", "web", "-c", "bad"], None).await;
    assert_eq!(
        err.trim(),
        "Error from server (BadRequest): container \"bad\" in pod \"web\" is waiting to start: trying and failing to pull image"
    );

    // An exec upgrade, driven by hand: bytes go through unchanged.
    let dir = h.dir.path().join("tls");
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(&ca).expect("ca"))
        .expect("root");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_client_auth_cert(
        CertificateDer::pem_file_iter(dir.join("admin.crt"))
            .expect("crt")
            .collect::<Result<Vec<_>, _>>()
            .expect("crt"),
        PrivateKeyDer::from_pem_file(dir.join("admin.key")).expect("key"),
    )
    .expect("client config");
    let tcp = tokio::net::TcpStream::connect(h.server.addr())
        .await
        .expect("connect");
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config.clone()))
        .connect(
            rustls_pki_types::ServerName::try_from("127.0.0.1").expect("name"),
            tcp,
        )
        .await
        .expect("tls");
    tls.write_all(
        b"GET /api/v1/namespaces/default/pods/web/exec?container=c&command=sh&stdin=true&stdout=true HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n",
    )
    .await
    .expect("write");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        tls.read_exact(&mut b).await.expect("response head");
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(
        head.contains("sec-websocket-protocol: v5.channel.k8s.io"),
        "{head}"
    );
    tls.write_all(b"ping").await.expect("write");
    let mut echo = [0u8; 4];
    tls.read_exact(&mut echo).await.expect("echo");
    assert_eq!(&echo, b"ping");

    // pods/portforward reaches the agent's /portForward with `port`.
    let tcp = tokio::net::TcpStream::connect(h.server.addr())
        .await
        .expect("connect");
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(
            rustls_pki_types::ServerName::try_from("127.0.0.1").expect("name"),
            tcp,
        )
        .await
        .expect("tls");
    tls.write_all(
        b"POST /api/v1/namespaces/default/pods/web/portforward?ports=80 HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: portforward.k8s.io\r\n\r\n",
    )
    .await
    .expect("write");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        tls.read_exact(&mut b).await.expect("response head");
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(
        head.contains("x-stream-protocol-version: portforward.k8s.io"),
        "{head}"
    );

    // A pod with no node has nowhere to proxy to.
    let err = h.kubectl_fails(&["logs", "missing"], None).await;
    assert!(err.contains("pods \"missing\" not found"), "{err}");
}

/// A node whose agent cannot be reached: each subresource fails with
/// kube-apiserver's message for it (see the reference's 10-port-forward.txt).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_agent_fails_as_kubernetes_words_it() {
    let h = common::Harness::start().await;
    let client = h.client().await;
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let node: Node = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-b"},
        "status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                   "daemonEndpoints": {"kubeletEndpoint": {"Port": port}}},
    }))
    .expect("node");
    Api::<Node>::all(client.clone())
        .create(&PostParams::default(), &node)
        .await
        .expect("node");
    let pods = Api::<Pod>::namespaced(client, "default");
    for (name, node) in [("web", "node-b"), ("pending", "")] {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeName": node, "containers": [{"name": "nginx", "image": "nginx"}]},
        }))
        .expect("pod");
        pods.create(&PostParams::default(), &pod)
            .await
            .expect("pod");
    }
    pods.patch_status(
        "web",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(serde_json::json!({"status": {"phase": "Running"}})),
    )
    .await
    .expect("status");

    let err = h
        .kubectl_fails(&["port-forward", "pod/pending", "18080:80"], None)
        .await;
    assert_eq!(
        err.trim(),
        "error: unable to forward port because pod is not running. Current status=Pending"
    );
    let dial = format!("dial tcp 127.0.0.1:{port}: connect: connection refused");
    let err = h
        .kubectl_fails(&["port-forward", "pod/web", "18080:80"], None)
        .await;
    assert_eq!(
        err.trim(),
        format!("error: error upgrading connection: error dialing backend: {dial}")
    );
    let err = h.kubectl_fails(&["logs", "web"], None).await;
    assert_eq!(
        err.trim(),
        format!("Error from server: Get \"https://127.0.0.1:{port}/containerLogs/default/web/nginx\": {dial}")
    );
    let err = h.kubectl_fails(&["exec", "web", "--", "true"], None).await;
    assert!(
        err.contains(&format!(
            "Internal error occurred: error sending request: Post \"https://127.0.0.1:{port}/exec/default/web/nginx?command=true"
        )) && err.trim().ends_with(&dial),
        "{err}"
    );
    let discovery = h.kubectl(&["get", "--raw", "/api/v1"]).await;
    let v: serde_json::Value = serde_json::from_str(&discovery).expect("json");
    let pf = v["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .find(|r| r["name"] == "pods/portforward")
        .expect("pods/portforward is listed");
    assert_eq!(pf["kind"], "PodPortForwardOptions");
    assert_eq!(pf["verbs"], serde_json::json!(["create", "get"]));
}

/// A Node named `name` whose agent listens at 127.0.0.1:`port`, and a pod
/// `pod` on it.
async fn pod_on_node(client: &kube::Client, name: &str, port: u16, pod: &str) {
    let node: Node = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
        "status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                   "daemonEndpoints": {"kubeletEndpoint": {"Port": port}}},
    }))
    .expect("node");
    Api::<Node>::all(client.clone())
        .create(&PostParams::default(), &node)
        .await
        .expect("node");
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod},
        "spec": {"nodeName": name, "containers": [{"name": "c", "image": "busybox"}]},
    }))
    .expect("pod");
    Api::<Pod>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &pod)
        .await
        .expect("pod");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_failures_name_their_cause() {
    let h = common::Harness::start().await;
    let client = h.client().await;

    // An agent of another cluster (another CA) refuses this server's
    // client certificate.
    let other_ca = rcgen::CertificateParams::default()
        .self_signed(&rcgen::KeyPair::generate().expect("key"))
        .expect("ca");
    let port = fake_agent(other_ca.pem().as_bytes()).await;
    pod_on_node(&client, "stranger", port, "web").await;
    let err = h.kubectl_fails(&["logs", "web"], None).await;
    assert!(
        err.contains(&format!(
            "Error from server: Get \"https://127.0.0.1:{port}/containerLogs/default/web/c\""
        )) && err.contains(
            "the node agent of stranger does not trust this API server's client certificate"
        ),
        "{err}"
    );
    let err = h.kubectl_fails(&["exec", "web", "--", "true"], None).await;
    assert!(
        err.contains("Internal error occurred: error sending request: Post ")
            && err.contains("does not trust"),
        "{err}"
    );
}
