//! Scheduling throughput at cluster scale, in one process: the API server
//! (SQLite store on a temp dir), N virtual nodes and the scheduler on the
//! API server's in-process client (as in `orca server --virtual-nodes N`),
//! and a load generator and observer over HTTPS, like kubectl.
//!
//! `cargo bench -p orca-scheduler --bench scheduler_throughput -- --nodes 1000 --pods 10000`
//!
//! Phase 1 (end to end): the scheduler is running; P pods are created with
//! bounded concurrency; measures create -> bound for all of them.
//! Phase 2 (scheduler alone): P more pods are created with no scheduler
//! running; then a fresh scheduler starts (informers list everything) and
//! we measure until all are bound, i.e. bind throughput without the
//! create path competing.
//! Phase 0 (decisions only): the same cluster fed straight into the
//! scheduler's cache, no API: how fast the scheduler itself decides.
//! Reports process RSS (current and peak) sampled throughout, and the CPU
//! time the whole process used per phase. Asserts nothing.
//!
//! `--in-process-clients` puts the load generator and the observer on the
//! in-process client too: no TLS or HTTP framing on their side, so the
//! figures show what the control plane itself sustains when its clients
//! cost (almost) nothing on these cores.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::PostParams;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};

// The allocator the `orca` binary uses, so the figures are the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Args {
    nodes: usize,
    pods: usize,
    create_parallelism: usize,
    in_process_clients: bool,
}

fn args() -> Args {
    let mut a = Args {
        nodes: 1000,
        pods: 10_000,
        create_parallelism: 64,
        in_process_clients: false,
    };
    let argv: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < argv.len() {
        if argv[i] == "--in-process-clients" {
            a.in_process_clients = true;
            i += 1;
            continue;
        }
        let value = argv.get(i + 1).and_then(|v| v.parse::<usize>().ok());
        match (argv[i].as_str(), value) {
            ("--nodes", Some(v)) => a.nodes = v,
            ("--pods", Some(v)) => a.pods = v,
            ("--create-parallelism", Some(v)) => a.create_parallelism = v.max(1),
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    a
}

fn rss_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// User+system CPU seconds used by this process (all threads) so far.
fn cpu_seconds() -> f64 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_PROCESS_CPUTIME_ID)
        .expect("the process CPU clock");
    t.tv_sec() as f64 + t.tv_nsec() as f64 * 1e-9
}

/// Phase 0: decisions per second with no API in the way.
fn decision_rate(nodes: usize, pods: usize) -> (f64, usize) {
    use orca_scheduler::cache::{Cache, Decision};
    let now = Instant::now();
    let mut cache = Cache::new("default-scheduler");
    for i in 0..nodes {
        let node: k8s_openapi::api::core::v1::Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("virtual-node-{i}"), "labels": {"type": "virtual"}},
            "spec": {"taints": [{"key": orca_virtual_nodes::VIRTUAL_TAINT_KEY, "value": "true", "effect": "NoSchedule"}]},
            "status": {
                "allocatable": {"cpu": "32", "memory": "256Gi", "pods": "110"},
                "conditions": [{"type": "Ready", "status": "True"}],
            },
        }))
        .expect("node");
        cache.node_applied(&node, now);
    }
    for i in 0..pods {
        let mut p = pod(&format!("decide-{i}"));
        p.metadata.uid = Some(format!("uid-{i}"));
        cache.pod_applied(p, now);
    }
    let t = Instant::now();
    let mut bound = 0;
    while let Some(p) = cache.queue.pop(now) {
        if let Decision::Bind(_) = cache.schedule(&p, now) {
            bound += 1;
        }
    }
    (bound as f64 / t.elapsed().as_secs_f64(), bound)
}

fn pod(name: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "containers": [{"name": "main", "image": "busybox",
                            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}],
            "tolerations": [{"key": orca_virtual_nodes::VIRTUAL_TAINT_KEY, "operator": "Exists"}],
        },
    }))
    .expect("pod manifest")
}

/// Counts pods with a node, by UID, from one watch, until aborted.
fn count_bound(client: Client) -> (Arc<AtomicU64>, tokio::task::JoinHandle<()>) {
    let bound = Arc::new(AtomicU64::new(0));
    let counter = bound.clone();
    let task = tokio::spawn(async move {
        let mut seen: HashSet<String> = HashSet::new();
        // With back-off: once the server is gone, reconnecting fails at once,
        // and a watcher without it would retry in a loop that never yields.
        let stream =
            watcher::watcher(Api::<Pod>::all(client), watcher::Config::default()).default_backoff();
        futures::pin_mut!(stream);
        while let Some(ev) = stream.next().await {
            if let Ok(Event::Apply(p) | Event::InitApply(p)) = ev {
                if p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some() {
                    if let Some(uid) = p.metadata.uid {
                        if seen.insert(uid) {
                            counter.store(seen.len() as u64, Ordering::Relaxed);
                        }
                    }
                }
            }
        }
    });
    (bound, task)
}

async fn create_pods(client: &Client, prefix: &str, n: usize, parallelism: usize) {
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    futures::stream::iter(0..n)
        .for_each_concurrent(parallelism, |i| {
            let api = api.clone();
            async move {
                let p = pod(&format!("{prefix}-{i}"));
                if let Err(e) = api.create(&PostParams::default(), &p).await {
                    eprintln!("create {prefix}-{i} failed: {e}");
                }
            }
        })
        .await;
}

async fn wait_count(counter: &AtomicU64, target: u64, peak: &mut u64) {
    let mut last_report = Instant::now();
    loop {
        let n = counter.load(Ordering::Relaxed);
        *peak = (*peak).max(rss_kib().0);
        if n >= target {
            return;
        }
        if last_report.elapsed() > Duration::from_secs(5) {
            eprintln!("  ... {n}/{target} bound");
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn start_scheduler(client: Client) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let config = orca_scheduler::Config {
            leader_elect: false,
            ..Default::default()
        };
        if let Err(e) = orca_scheduler::run(client, config).await {
            eprintln!("scheduler: {e}");
        }
    })
}

fn main() {
    // Warnings (e.g. a watcher falling behind) explain odd runs; RUST_LOG
    // overrides.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let a = args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(bench(a));
}

async fn bench(a: Args) {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = orca_testkit::api_server(dir.path()).await;
    let client = if a.in_process_clients {
        // The load generator and observer act as the admin, as kubectl would.
        server.local_client(orca_apiserver::auth::UserInfo::admin())
    } else {
        orca_testkit::admin_client(&server).await
    };
    println!(
        "scheduler_throughput: {} virtual nodes, {} pods per phase, create parallelism {}, load generator and observer {}",
        a.nodes,
        a.pods,
        a.create_parallelism,
        if a.in_process_clients { "in process" } else { "over HTTPS" }
    );

    let (rate, decided) = decision_rate(a.nodes, a.pods);
    println!(
        "phase 0: scheduler decisions alone (no API): {decided} pods onto {} nodes at {rate:.0} pods/s",
        a.nodes
    );

    let t = Instant::now();
    let (tx, rx) = tokio::sync::oneshot::channel();
    // The virtual nodes and the scheduler use the in-process client, as in
    // `orca server --virtual-nodes N`; the load generator and the observer
    // come over HTTPS like kubectl unless `--in-process-clients`.
    let vn_client = server.local_client(orca_apiserver::auth::UserInfo::virtual_nodes());
    let local = server.local_client(orca_apiserver::auth::UserInfo::kube_scheduler());
    let nodes = a.nodes;
    let virtual_nodes = tokio::spawn(async move {
        let config = orca_virtual_nodes::Config {
            count: nodes,
            ..Default::default()
        };
        if let Err(e) = orca_virtual_nodes::run_with_ready(vn_client, config, Some(tx)).await {
            eprintln!("virtual nodes: {e}");
        }
    });
    rx.await.expect("virtual nodes registered");
    println!(
        "registered {} virtual nodes in {:.2}s; RSS {} MiB",
        a.nodes,
        t.elapsed().as_secs_f64(),
        rss_kib().0 / 1024
    );

    let (bound, observer) = count_bound(client.clone());
    let mut peak = rss_kib().0;

    // Phase 1: end to end.
    let scheduler = start_scheduler(local.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t0 = Instant::now();
    let cpu0 = cpu_seconds();
    let creating = create_pods(&client, "e2e", a.pods, a.create_parallelism);
    let watching = wait_count(&bound, a.pods as u64, &mut peak);
    let (_, _) = futures::join!(
        async {
            creating.await;
            let created = t0.elapsed().as_secs_f64();
            println!(
                "phase 1: created {} pods in {:.2}s ({:.0} creates/s)",
                a.pods,
                created,
                a.pods as f64 / created
            );
        },
        watching
    );
    let e2e = t0.elapsed().as_secs_f64();
    println!(
        "phase 1: create -> bound for {} pods in {:.2}s = {:.0} pods/s; process CPU {:.1}s; RSS now {} MiB, peak {} MiB",
        a.pods,
        e2e,
        a.pods as f64 / e2e,
        cpu_seconds() - cpu0,
        rss_kib().0 / 1024,
        peak / 1024
    );

    // Phase 2: the scheduler alone, on a backlog.
    scheduler.abort();
    let _ = scheduler.await;
    let t1 = Instant::now();
    create_pods(&client, "backlog", a.pods, a.create_parallelism).await;
    let created = t1.elapsed().as_secs_f64();
    println!(
        "phase 2: created {} pending pods (no scheduler) in {:.2}s ({:.0} creates/s)",
        a.pods,
        created,
        a.pods as f64 / created
    );
    // Let the virtual nodes' status writes for phase 1 finish first.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let t2 = Instant::now();
    let cpu2 = cpu_seconds();
    let scheduler = start_scheduler(local.clone());
    wait_count(&bound, 2 * a.pods as u64, &mut peak).await;
    let alone = t2.elapsed().as_secs_f64();
    println!(
        "phase 2: scheduler start -> {} backlog pods bound in {:.2}s = {:.0} pods/s; process CPU {:.1}s; RSS now {} MiB, peak {} MiB (VmHWM {} MiB)",
        a.pods,
        alone,
        a.pods as f64 / alone,
        cpu_seconds() - cpu2,
        rss_kib().0 / 1024,
        peak / 1024,
        rss_kib().1 / 1024
    );
    // Stopped before the server, so that their writes in flight do not fail
    // (and warn) as it goes away.
    for task in [observer, virtual_nodes, scheduler] {
        task.abort();
        let _ = task.await;
    }
    server.shutdown().await;
}
