//! Shared test harness: an in-process API server on a temp data dir backed by
//! the SQLite store, and a runner for the real kubectl against it.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Output;
use std::sync::Arc;

use http::Request;
use orca_apiserver::{ApiServer, Config};
use orca_store::sqlite::{SqliteOptions, SqliteStore};
use orca_store::Store;
use serde_json::{json, Value};

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub server: ApiServer,
}

pub const KUBECTL: &str = "/usr/bin/kubectl";

impl Harness {
    pub async fn start() -> Harness {
        let dir = tempfile::tempdir().expect("temp dir");
        let server = start_in(dir.path().to_path_buf()).await;
        Harness { dir, server }
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.server.kubeconfig_path().to_path_buf()
    }

    /// Runs kubectl with this server's kubeconfig and a private cache dir.
    pub async fn kubectl_out(&self, args: &[&str], stdin: Option<&str>) -> Output {
        self.kubectl_with(&self.kubeconfig(), args, stdin).await
    }

    /// A kubeconfig for a user with a client certificate for `name` in
    /// `groups` (CN and O), signed by the cluster CA under DATA_DIR/tls.
    pub fn user_kubeconfig(&self, name: &str, groups: &[&str]) -> PathBuf {
        let (cert, key) = self.user_certificate(name, groups);
        let admin = std::fs::read_to_string(self.kubeconfig()).expect("kubeconfig");
        let b64 = |s: &str| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, s);
        let mut out = String::new();
        for line in admin.lines() {
            let line = match line.trim_start() {
                l if l.starts_with("client-certificate-data:") => {
                    format!("    client-certificate-data: {}", b64(&cert))
                }
                l if l.starts_with("client-key-data:") => {
                    format!("    client-key-data: {}", b64(&key))
                }
                _ => line.to_string(),
            };
            out.push_str(&line);
            out.push('\n');
        }
        let path = self
            .dir
            .path()
            .join(format!("kubeconfig-{}", name.replace(':', "_")));
        std::fs::write(&path, out).expect("write kubeconfig");
        path
    }

    /// A client certificate and key (PEM) for `name` in `groups`.
    pub fn user_certificate(&self, name: &str, groups: &[&str]) -> (String, String) {
        let tls = self.dir.path().join("tls");
        let ca_key =
            rcgen::KeyPair::from_pem(&std::fs::read_to_string(tls.join("ca.key")).expect("ca.key"))
                .expect("ca key");
        let ca_cert = std::fs::read_to_string(tls.join("ca.crt")).expect("ca.crt");
        let issuer = rcgen::Issuer::from_ca_cert_pem(&ca_cert, ca_key).expect("issuer");
        let mut p = rcgen::CertificateParams::default();
        p.distinguished_name.push(rcgen::DnType::CommonName, name);
        for g in groups {
            p.distinguished_name
                .push(rcgen::DnType::OrganizationName, *g);
        }
        p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = p.signed_by(&key, &issuer).expect("sign");
        (cert.pem(), key.serialize_pem())
    }

    /// A kube client for a user (see [`Harness::user_kubeconfig`]).
    pub async fn client_as(&self, name: &str, groups: &[&str]) -> kube::Client {
        let kc = kube::config::Kubeconfig::read_from(self.user_kubeconfig(name, groups))
            .expect("kubeconfig");
        let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .expect("client config");
        kube::Client::try_from(cfg).expect("client")
    }

    /// Runs kubectl with `kubeconfig` and this harness's cache dir.
    pub async fn kubectl_with(
        &self,
        kubeconfig: &std::path::Path,
        args: &[&str],
        stdin: Option<&str>,
    ) -> Output {
        use tokio::io::AsyncWriteExt;
        let mut cmd = tokio::process::Command::new(KUBECTL);
        cmd.arg("--kubeconfig")
            .arg(kubeconfig)
            .arg("--cache-dir")
            .arg(self.dir.path().join("kubectl-cache"))
            .args(args)
            .env("HOME", self.dir.path())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .expect("kubectl must be installed at /usr/bin/kubectl");
        let mut pipe = child.stdin.take().expect("stdin");
        if let Some(s) = stdin {
            pipe.write_all(s.as_bytes()).await.expect("write stdin");
        }
        drop(pipe);
        child.wait_with_output().await.expect("kubectl ran")
    }

    /// Runs kubectl and returns stdout, failing the test (with stderr) if it fails.
    pub async fn kubectl(&self, args: &[&str]) -> String {
        self.kubectl_stdin(args, None).await
    }

    pub async fn kubectl_stdin(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.kubectl_out(args, stdin).await;
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}\nstdout: {stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    /// Runs kubectl expecting failure; returns stderr.
    pub async fn kubectl_fails(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.kubectl_out(args, stdin).await;
        assert!(
            !out.status.success(),
            "kubectl {args:?} should have failed; stdout: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).to_string()
    }

    pub async fn client(&self) -> kube::Client {
        let kc = kube::config::Kubeconfig::read_from(self.kubeconfig()).expect("kubeconfig");
        let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .expect("client config");
        kube::Client::try_from(cfg).expect("client")
    }

    /// A raw HTTPS client trusting the cluster CA, with no credentials.
    pub fn anonymous_https(&self) -> (String, Vec<u8>) {
        let ca = std::fs::read(self.dir.path().join("tls/ca.crt")).expect("ca.crt");
        (format!("https://{}", self.server.addr()), ca)
    }
}

pub async fn open_store(dir: &std::path::Path) -> Arc<dyn Store> {
    let store = SqliteStore::open(&dir.join("db/state.db"), SqliteOptions::default())
        .expect("open sqlite store");
    Arc::new(store)
}

/// A server over `store` in `dir` whose own compactor runs every
/// `compaction_interval` (zero: never).
pub async fn start_compacting(
    dir: &std::path::Path,
    store: Arc<dyn Store>,
    compaction_interval: std::time::Duration,
) -> ApiServer {
    let server = orca_apiserver::start(
        Config {
            data_dir: dir.to_path_buf(),
            https_port: 0,
            compaction_interval,
            // No lease renewals: tests here compare the whole store.
            endpoint_reconciler: orca_apiserver::EndpointReconciler::None,
            ..Default::default()
        },
        store,
    )
    .await
    .expect("API server starts");
    default_service_account(
        &server.local_client(orca_apiserver::auth::UserInfo::admin()),
        "default",
    )
    .await;
    server
}

pub async fn start_in(dir: PathBuf) -> ApiServer {
    let store = open_store(&dir).await;
    let server = orca_apiserver::start(
        Config {
            data_dir: dir,
            bind_address: "127.0.0.1".into(),
            https_port: 0,
            tls_sans: vec![],
            endpoint_reconciler: orca_apiserver::EndpointReconciler::None,
            ..Default::default()
        },
        store,
    )
    .await
    .expect("API server starts");
    default_service_account(
        &server.local_client(orca_apiserver::auth::UserInfo::admin()),
        "default",
    )
    .await;
    server
}

/// Creates the `default` ServiceAccount of `namespace`, which the
/// ServiceAccount admission plugin wants for every pod (in a cluster, a
/// controller makes it).
pub async fn default_service_account(client: &kube::Client, namespace: &str) {
    let body =
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}});
    let (code, v, _) = send(
        client,
        "POST",
        &format!("/api/v1/namespaces/{namespace}/serviceaccounts"),
        "application/json",
        body.to_string().into_bytes(),
    )
    .await;
    assert!(code == 201 || code == 409, "default service account: {v}");
}

/// Sends a raw request; returns (status code, body as JSON, Warning headers).
pub async fn send(
    client: &kube::Client,
    method: &str,
    uri: &str,
    ct: &str,
    body: Vec<u8>,
) -> (u16, Value, Vec<String>) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("Content-Type", ct)
        .header("Accept", "application/json")
        .body(kube::client::Body::from(body))
        .expect("request");
    let resp = client.send(req).await.expect("the server answers");
    let code = resp.status().as_u16();
    let warnings = resp
        .headers()
        .get_all("warning")
        .iter()
        .map(|v| v.to_str().unwrap_or_default().to_string())
        .collect();
    let bytes = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .expect("body")
        .to_bytes();
    let v = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| json!({"raw": String::from_utf8_lossy(&bytes)}));
    (code, v, warnings)
}
