//! API server benchmark (reports, asserts nothing). Runs the `serve` example
//! as a separate process on a temp data dir (SQLite store) and measures:
//! pod creates at 32 concurrent clients, GETs of single pods, LIST of all
//! pods, watch event latency with 100 watchers, and the server's RSS.
//!
//! `cargo build --release -p orca-apiserver --examples &&
//!  target/release/examples/bench [PODS] [--as-user]` (default 10000). With
//! `--as-user` the load comes from a user bound to `edit` in `default`
//! (RBAC decides every request) instead of the admin (system:masters).
//! With `--protobuf` creates, GETs and LISTs go as client-go sends them by
//! default: k8s-pb messages in `application/vnd.kubernetes.protobuf`.

use std::io::BufRead;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams, WatchEvent, WatchParams};

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";

/// The bench's pod as a protobuf body (`k8s\0` + runtime.Unknown).
fn pod_protobuf(name: &str) -> Vec<u8> {
    use k8s_pb::api::core::v1 as core;
    use prost::Message;
    let pod = core::Pod {
        metadata: Some(k8s_pb::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some(name.into()),
            labels: [("app", "bench"), ("tier", "web")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }),
        spec: Some(core::PodSpec {
            containers: vec![core::Container {
                name: Some("c".into()),
                image: Some("busybox:1.36".into()),
                command: vec!["sleep".into(), "3600".into()],
                ports: vec![core::ContainerPort {
                    container_port: Some(80),
                    ..Default::default()
                }],
                env: vec![core::EnvVar {
                    name: Some("A".into()),
                    value: Some("b".into()),
                    value_from: None,
                }],
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: None,
    };
    let unknown = k8s_pb::apimachinery::pkg::runtime::Unknown {
        type_meta: Some(k8s_pb::apimachinery::pkg::runtime::TypeMeta {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
        }),
        raw: Some(pod.encode_to_vec()),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    [b"k8s\0".as_slice(), &unknown.encode_to_vec()].concat()
}

/// A request in protobuf both ways; fails unless the answer is `code`.
async fn send_protobuf(
    client: &kube::Client,
    method: &str,
    uri: &str,
    body: Vec<u8>,
    code: u16,
) -> Result<bytes::Bytes, Box<dyn std::error::Error + Send + Sync>> {
    let req = http::Request::builder()
        .method(method)
        .uri(uri)
        .header("Content-Type", PROTOBUF)
        .header("Accept", format!("{PROTOBUF},application/json"))
        .body(kube::client::Body::from(body))?;
    let resp = client.send(req).await?;
    let status = resp.status().as_u16();
    let bytes = http_body_util::BodyExt::collect(resp.into_body())
        .await?
        .to_bytes();
    if status != code || !bytes.starts_with(b"k8s\0") {
        return Err(format!(
            "{method} {uri}: {status} {:?}",
            &bytes[..bytes.len().min(200)]
        )
        .into());
    }
    Ok(bytes)
}

fn pod(name: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "bench", "tier": "web"}},
        "spec": {"containers": [{"name": "c", "image": "busybox:1.36",
            "command": ["sleep", "3600"], "ports": [{"containerPort": 80}],
            "env": [{"name": "A", "value": "b"}]}]},
    }))
    .expect("pod")
}

/// A client certificate for `name`, signed by the server's CA.
fn user_certificate(
    data_dir: &std::path::Path,
    name: &str,
) -> Result<(String, String), Box<dyn std::error::Error>> {
    let tls = data_dir.join("tls");
    let ca_key = rcgen::KeyPair::from_pem(&std::fs::read_to_string(tls.join("ca.key"))?)?;
    let issuer =
        rcgen::Issuer::from_ca_cert_pem(&std::fs::read_to_string(tls.join("ca.crt"))?, ca_key)?;
    let mut p = rcgen::CertificateParams::default();
    p.distinguished_name.push(rcgen::DnType::CommonName, name);
    p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let key = rcgen::KeyPair::generate()?;
    let cert = p.signed_by(&key, &issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// What a client pays to turn a LIST of every pod into typed objects, per
/// pod, in each wire: JSON into k8s-openapi's `Pod` (what kube-rs clients,
/// Orca's in-process components among them, decode) and protobuf into
/// k8s-pb's `Pod` (client-go's way). The server's side of each wire is the
/// LIST latency above. Best of 5 decodes of one body.
async fn decode_costs(
    client: &kube::Client,
    total: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    use prost::Message;
    let uri = "/api/v1/namespaces/default/pods";
    let json = client
        .request_text(http::Request::get(uri).body(Vec::new())?)
        .await?;
    let proto = send_protobuf(client, "GET", uri, Vec::new(), 200)
        .await
        .map_err(|e| e.to_string())?;
    let best_per_pod = |decode: &dyn Fn() -> usize| {
        (0..5)
            .map(|_| {
                let t = Instant::now();
                assert_eq!(decode(), total, "every pod decoded");
                t.elapsed()
            })
            .min()
            .unwrap_or_default()
            .as_secs_f64()
            * 1e6
            / total as f64
    };
    let json_us = best_per_pod(&|| {
        serde_json::from_str::<kube::core::ObjectList<Pod>>(&json)
            .expect("a JSON PodList")
            .items
            .len()
    });
    let proto_us = best_per_pod(&|| {
        let unknown = k8s_pb::apimachinery::pkg::runtime::Unknown::decode(&proto[4..])
            .expect("a runtime.Unknown");
        k8s_pb::api::core::v1::PodList::decode(unknown.raw.unwrap_or_default().as_slice())
            .expect("a protobuf PodList")
            .items
            .len()
    });
    println!(
        "client decode of the LIST into typed pods: JSON (k8s-openapi) {json_us:.1} us/pod, protobuf (k8s-pb) {proto_us:.1} us/pod"
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let total: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(10_000);
    let as_user = std::env::args().any(|a| a == "--as-user");
    let protobuf = std::env::args().any(|a| a == "--protobuf");
    let dir = tempfile::tempdir()?;
    let serve = std::env::current_exe()?.with_file_name("serve");
    let mut child = std::process::Command::new(&serve)
        .arg(dir.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| {
            format!(
                "starting {}: {e} (build the examples first)",
                serve.display()
            )
        })?;
    let pid = child.id();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().ok_or("stdout")?).read_line(&mut line)?;
    println!("server pid {pid}: {}", line.trim());
    let idle_rss = rss_kib(pid, "VmRSS:");

    let kc = kube::config::Kubeconfig::read_from(dir.path().join("kubeconfig"))?;
    let mut config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
    if as_user {
        let admin = kube::Client::try_from(config.clone())?;
        let binding = serde_json::json!({"apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding", "metadata": {"name": "bench-edit", "namespace": "default"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "bench"}]});
        let req = http::Request::post(
            "/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings",
        )
        .header("Content-Type", "application/json")
        .body(serde_json::to_vec(&binding)?)?;
        admin.request_text(req).await?;
        let (cert, key) = user_certificate(dir.path(), "bench")?;
        use base64::Engine;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        config.auth_info.client_certificate_data = Some(b64(&cert));
        config.auth_info.client_key_data = Some(b64(&key).into());
        println!("load from user \"bench\" (RoleBinding to edit in default)");
    }
    let client = kube::Client::try_from(config)?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    // ServiceAccount admission wants it for every pod (in a cluster, a
    // controller makes it; `serve` runs none).
    let sa = serde_json::json!({"apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": "default", "namespace": "default"}});
    let req = http::Request::post("/api/v1/namespaces/default/serviceaccounts")
        .header("Content-Type", "application/json")
        .body(serde_json::to_vec(&sa)?)?;
    let _ = client.request_text(req).await;

    // Creates: 32 concurrent clients.
    let started = Instant::now();
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let pods = pods.clone();
        let next = next.clone();
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total {
                    return lat;
                }
                let name = format!("bench-{i:05}");
                let t = Instant::now();
                if protobuf {
                    let uri = "/api/v1/namespaces/default/pods";
                    send_protobuf(&client, "POST", uri, pod_protobuf(&name), 201)
                        .await
                        .expect("create");
                } else {
                    pods.create(&PostParams::default(), &pod(&name))
                        .await
                        .expect("create");
                }
                lat.push(t.elapsed());
            }
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await?);
    }
    let elapsed = started.elapsed();
    lat.sort();
    println!(
        "wire: {}",
        if protobuf {
            PROTOBUF
        } else {
            "application/json"
        }
    );
    println!(
        "create x{total} @32 clients: {:.0} creates/s, p50 {}, p99 {}",
        total as f64 / elapsed.as_secs_f64(),
        ms(pct(&lat, 0.5)),
        ms(pct(&lat, 0.99))
    );
    let rss_after_create = rss_kib(pid, "VmRSS:");

    // GET of single pods, one at a time.
    let gets = total.min(2_000);
    let mut lat = Vec::with_capacity(gets);
    for i in 0..gets {
        let name = format!("bench-{i:05}");
        let t = Instant::now();
        if protobuf {
            let uri = format!("/api/v1/namespaces/default/pods/{name}");
            send_protobuf(&client, "GET", &uri, Vec::new(), 200)
                .await
                .map_err(|e| e.to_string())?;
        } else {
            pods.get(&name).await?;
        }
        lat.push(t.elapsed());
    }
    lat.sort();
    println!(
        "GET x{gets} sequential: p50 {}, p99 {}",
        ms(pct(&lat, 0.5)),
        ms(pct(&lat, 0.99))
    );

    // LIST of every pod (one full body), 20 times.
    let mut lat = Vec::new();
    let mut bytes = 0;
    for _ in 0..20 {
        let uri = "/api/v1/namespaces/default/pods";
        let t = Instant::now();
        bytes = if protobuf {
            send_protobuf(&client, "GET", uri, Vec::new(), 200)
                .await
                .map_err(|e| e.to_string())?
                .len()
        } else {
            let req = http::Request::get(uri).body(Vec::new())?;
            client.request_text(req).await?.len()
        };
        lat.push(t.elapsed());
    }
    lat.sort();
    println!(
        "LIST {total} pods ({:.1} MB): p50 {}, p99 {}",
        bytes as f64 / 1e6,
        ms(pct(&lat, 0.5)),
        ms(pct(&lat, 0.99))
    );
    let rss_after_list = rss_kib(pid, "VmRSS:");
    decode_costs(&client, total).await?;

    // Watch latency: 100 watchers, 100 creates one at a time.
    let rv = pods
        .list_metadata(&Default::default())
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();
    let sent: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, Instant>>> =
        Default::default();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Duration>();
    let mut watchers = Vec::new();
    for _ in 0..100 {
        let mut stream = pods
            .watch(&WatchParams::default().labels("app=watched"), &rv)
            .await?
            .boxed();
        let sent = sent.clone();
        let tx = tx.clone();
        watchers.push(tokio::spawn(async move {
            while let Some(Ok(ev)) = stream.next().await {
                if let WatchEvent::Added(p) = ev {
                    let at = Instant::now();
                    let name = p.metadata.name.unwrap_or_default();
                    if let Some(t0) = sent.lock().expect("lock").get(&name) {
                        let _ = tx.send(at - *t0);
                    }
                }
            }
        }));
    }
    drop(tx);
    tokio::time::sleep(Duration::from_millis(500)).await;
    for i in 0..100 {
        let name = format!("watched-{i:03}");
        let mut p = pod(&name);
        p.metadata.labels = Some([("app".to_string(), "watched".to_string())].into());
        sent.lock().expect("lock").insert(name, Instant::now());
        pods.create(&PostParams::default(), &p).await?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut lat = Vec::new();
    while lat.len() < 100 * 100 {
        match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
            Ok(Some(d)) => lat.push(d),
            _ => break,
        }
    }
    lat.sort();
    println!(
        "watch: 100 watchers x 100 creates, {} events delivered: create sent -> event received p50 {}, p99 {}",
        lat.len(),
        ms(pct(&lat, 0.5)),
        ms(pct(&lat, 0.99))
    );
    for w in watchers {
        w.abort();
    }
    println!(
        "server RSS: idle {} MiB, after {total} creates {} MiB, after LISTs {} MiB, peak {} MiB",
        idle_rss / 1024,
        rss_after_create / 1024,
        rss_after_list / 1024,
        rss_kib(pid, "VmHWM:") / 1024
    );
    let _ = std::process::Command::new("kill")
        .arg(pid.to_string())
        .status();
    let _ = child.wait();
    Ok(())
}
