//! Services benchmark (reports, asserts nothing): an API server (SQLite
//! store on a temp dir) and the endpoints controllers in this process,
//! driven over HTTPS with the admin certificate as kubectl would. Measures
//! Service creates per second with cluster IP (and node port) allocation at
//! 32 concurrent clients, and the time from a pod's status turning Ready to
//! its endpoint showing `ready: true` in its Service's EndpointSlice (the
//! test plays the kubelet by patching the status, as the reference capture
//! did).
//!
//! `cargo run --release -p orca-controllers --example services_bench [SERVICES] [PODS]`
//! (defaults 2000 and 300).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use serde_json::json;

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[(((sorted.len() - 1) as f64) * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

async fn create_services(client: &kube::Client, n: usize, kind: &str) {
    let api: Api<Service> = Api::namespaced(client.clone(), "default");
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(n)));
    let t0 = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..32 {
        let (api, next, latencies, kind) = (
            api.clone(),
            next.clone(),
            latencies.clone(),
            kind.to_string(),
        );
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    return;
                }
                let svc: Service = serde_json::from_value(json!({
                    "metadata": {"name": format!("{}-{i}", kind.to_lowercase())},
                    "spec": {"type": kind, "selector": {"app": format!("s{i}")}, "ports": [{"port": 80}]}}))
                .unwrap();
                let t = Instant::now();
                api.create(&PostParams::default(), &svc).await.expect("create service");
                latencies.lock().unwrap().push(t.elapsed());
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let wall = t0.elapsed();
    let mut l = latencies.lock().unwrap().clone();
    l.sort();
    println!(
        "{kind} Service create, 32 clients, {n} services: {:.0}/s; p50 {}, p99 {}",
        n as f64 / wall.as_secs_f64(),
        ms(pct(&l, 0.5)),
        ms(pct(&l, 0.99))
    );
}

async fn ready_to_slice(client: &kube::Client, pods: usize) {
    let ns = "default";
    let svc: Service = serde_json::from_value(json!({"metadata": {"name": "lat"},
        "spec": {"selector": {"app": "lat"}, "ports": [{"port": 80}]}}))
    .unwrap();
    Api::<Service>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &svc)
        .await
        .unwrap();
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), ns);
    for i in 0..pods {
        let pod: Pod = serde_json::from_value(
            json!({"metadata": {"name": format!("lat-{i}"), "labels": {"app": "lat"}},
            "spec": {"nodeName": "bench-node", "containers": [{"name": "c", "image": "nginx"}]}}),
        )
        .unwrap();
        pod_api.create(&PostParams::default(), &pod).await.unwrap();
        let ip = format!("10.42.{}.{}", i / 200, i % 200 + 2);
        let status = json!({"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
            "conditions": [{"type": "Ready", "status": "False"}]}});
        pod_api
            .patch_status(
                &format!("lat-{i}"),
                &PatchParams::default(),
                &Patch::Merge(&status),
            )
            .await
            .unwrap();
    }
    // When each pod's endpoint was first seen ready.
    let seen: Arc<Mutex<HashMap<String, Instant>>> = Default::default();
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), ns);
    let watch = {
        let seen = seen.clone();
        tokio::spawn(async move {
            let config = watcher::Config::default().labels("kubernetes.io/service-name=lat");
            let mut s = watcher(slices, config).applied_objects().boxed();
            while let Some(Ok(slice)) = s.next().await {
                let now = Instant::now();
                let mut seen = seen.lock().unwrap();
                for e in &slice.endpoints {
                    let ready = e.conditions.as_ref().and_then(|c| c.ready) == Some(true);
                    let name = e.target_ref.as_ref().and_then(|r| r.name.clone());
                    if let (true, Some(name)) = (ready, name) {
                        seen.entry(name).or_insert(now);
                    }
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut latencies = Vec::new();
    for i in 0..pods {
        let name = format!("lat-{i}");
        let now = chrono::Utc::now();
        let status = json!({"status": {"conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}]}});
        let t = Instant::now();
        pod_api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .unwrap();
        loop {
            if let Some(at) = seen.lock().unwrap().get(&name) {
                latencies.push(at.saturating_duration_since(t));
                break;
            }
            if t.elapsed() > Duration::from_secs(30) {
                panic!("{name} never showed ready in its slice");
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    }
    watch.abort();
    latencies.sort();
    println!(
        "pod Ready (status write sent) -> ready in its EndpointSlice (watch event), {pods} pods in {} slices of 100: p50 {}, p99 {}, max {}",
        pods.div_ceil(100),
        ms(pct(&latencies, 0.5)),
        ms(pct(&latencies, 0.99)),
        ms(*latencies.last().unwrap_or(&Duration::ZERO))
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let services: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(2000);
    let pods: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(300);
    let dir = tempfile::tempdir().unwrap();
    let store =
        orca_store::sqlite::SqliteStore::open(&dir.path().join("db/state.db"), Default::default())
            .unwrap();
    let server = orca_apiserver::start(
        orca_apiserver::Config {
            data_dir: dir.path().to_path_buf(),
            https_port: 0,
            endpoint_reconciler: orca_apiserver::EndpointReconciler::None,
            ..Default::default()
        },
        Arc::new(store),
    )
    .await
    .unwrap();
    // The controllers with their own identities, as in `orca server`.
    let local = server.local_clients();
    let per_controller = local.clone();
    let clients = orca_controllers::Clients::new(
        local.client(orca_apiserver::auth::UserInfo::kube_controller_manager()),
        move |name| per_controller.client(orca_apiserver::auth::UserInfo::controller(name)),
    );
    let controllers =
        tokio::spawn(async move { orca_controllers::run_endpoints(&clients, 100).await });
    let client = orca_testkit::admin_client(&server).await;
    create_services(&client, services, "ClusterIP").await;
    create_services(&client, services.min(2500), "NodePort").await;
    ready_to_slice(&client, pods).await;
    controllers.abort();
    server.shutdown().await;
}
