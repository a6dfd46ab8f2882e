//! Measurements of the Service path on a real node (BENCHMARKS.md,
//! "Services on a node"): a real `orca server` in a network namespace of
//! its own, real nginx pods, the node's service proxy and cluster DNS.
//! Not a test: run it on purpose, as root, with the test registry and
//! images (see scripts/test.sh), in a release build:
//!
//! ```text
//! cargo test --release -p orca --test it services_bench -- --ignored --nocapture
//! ```
//!
//! - pod Ready (its watch event seen by a client) to the first connection
//!   through its Service's ClusterIP that reaches it, one fresh Service
//!   and pod per round;
//! - TCP request latency (connect, HTTP/1.0 GET, answer, close) from inside
//!   a pod's network namespace, to an nginx pod's IP and to the ClusterIP;
//! - DNS queries per second and latency from inside a pod's network
//!   namespace to the cluster DNS address, closed loop.

use crate::common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use common::Cluster;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher;

const ROUNDS: usize = 30;
const REQUESTS: usize = 2000;
const DNS_CLIENTS: usize = 4;
const DNS_SECONDS: u64 = 4;

fn apply(cluster: &Cluster, name: &str, yaml: &str) {
    let path = cluster.dir.path().join(format!("{name}.yaml"));
    std::fs::write(&path, yaml).unwrap();
    cluster.kubectl_ok(&["apply", "-f", path.to_str().unwrap()]);
}

fn jsonpath(cluster: &Cluster, args: &[&str], path: &str) -> String {
    let mut all = args.to_vec();
    let expr = format!("jsonpath={path}");
    all.extend(["-o", &expr]);
    cluster.kubectl_ok(&all)
}

/// Runs `f` on a thread in the network namespace at `path`.
fn in_netns<T: Send + 'static>(path: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = path.to_string();
    std::thread::spawn(move || {
        let ns = std::fs::File::open(&path).expect("open netns");
        nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        f()
    })
    .join()
    .expect("thread in netns panicked")
}

/// The network namespace of a running pod: its pause process's.
fn pod_netns(cluster: &Cluster, pod: &str) -> String {
    let uid = jsonpath(cluster, &["get", "pod", pod], "{.metadata.uid}");
    let record = cluster
        .dir
        .path()
        .join(format!("agent/pods/{uid}/sandbox.json"));
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&record).unwrap()).unwrap();
    format!("/proc/{}/ns/net", record["pause_pid"])
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn summary(mut samples: Vec<Duration>) -> String {
    samples.sort();
    format!(
        "n={} p50 {:.2?} p99 {:.2?} max {:.2?}",
        samples.len(),
        percentile(&samples, 0.5),
        percentile(&samples, 0.99),
        samples.last().unwrap()
    )
}

/// One HTTP/1.0 request, answered and closed.
fn request(addr: SocketAddr) -> std::io::Result<()> {
    let mut conn = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    conn.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
    let mut answer = Vec::new();
    conn.read_to_end(&mut answer)?;
    if answer.starts_with(b"HTTP/1.1 200") {
        Ok(())
    } else {
        Err(std::io::Error::other("not a 200"))
    }
}

const BACKENDS: &str = r#"apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports:
  - {port: 80}
---
apiVersion: v1
kind: Service
metadata:
  name: web-headless
spec:
  clusterIP: None
  selector: {app: web}
  ports:
  - {port: 80}
---
apiVersion: v1
kind: Pod
metadata:
  name: web-1
  labels: {app: web}
spec:
  containers:
  - {name: nginx, image: nginx}
---
apiVersion: v1
kind: Pod
metadata:
  name: web-2
  labels: {app: web}
spec:
  containers:
  - {name: nginx, image: nginx}
---
apiVersion: v1
kind: Pod
metadata:
  name: client
spec:
  containers:
  - {name: main, image: busybox, command: [sleep, "36000"]}
"#;

#[test]
#[ignore = "a benchmark: run with --ignored --nocapture, in a release build"]
fn service_path() {
    let cluster = Cluster::start();
    apply(&cluster, "backends", BACKENDS);
    cluster.kubectl_ok(&[
        "wait",
        "--for=condition=Ready",
        "pod/web-1",
        "pod/web-2",
        "pod/client",
        "--timeout=120s",
    ]);
    let cluster_ip: Ipv4Addr = jsonpath(&cluster, &["get", "svc", "web"], "{.spec.clusterIP}")
        .parse()
        .unwrap();
    let pod_ip: Ipv4Addr = jsonpath(&cluster, &["get", "pod", "web-1"], "{.status.podIP}")
        .parse()
        .unwrap();
    let client = pod_netns(&cluster, "client");

    // Requests from inside the client pod, alternating pod IP and ClusterIP.
    let (direct, proxied) = in_netns(&client, move || {
        let (pod, service) = (
            SocketAddr::from((pod_ip, 80)),
            SocketAddr::from((cluster_ip, 80)),
        );
        for _ in 0..200 {
            request(pod).unwrap();
            request(service).unwrap();
        }
        let (mut direct, mut proxied) = (Vec::new(), Vec::new());
        for _ in 0..REQUESTS {
            let t = Instant::now();
            request(pod).unwrap();
            direct.push(t.elapsed());
            let t = Instant::now();
            request(service).unwrap();
            proxied.push(t.elapsed());
        }
        (direct, proxied)
    });
    println!("request to the pod IP:    {}", summary(direct));
    println!("request to the ClusterIP: {}", summary(proxied));

    // DNS from inside the client pod.
    for name in [
        "web.default.svc.cluster.local.",
        "web-headless.default.svc.cluster.local.",
        "nothing.default.svc.cluster.local.",
    ] {
        let (count, latencies) = in_netns(&client, move || dns_load(name));
        println!(
            "DNS A {name}: {:.0} queries/s, {}",
            count as f64 / DNS_SECONDS as f64,
            summary(latencies)
        );
    }

    // Pod Ready to its first proxied connection.
    let node = cluster.node.path();
    let kubeconfig = cluster.kubeconfig.clone();
    let mut samples = Vec::new();
    for round in 0..ROUNDS {
        let name = format!("ready-{round}");
        apply(
            &cluster,
            &name,
            &format!(
                "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  selector: {{app: {name}}}\n  ports:\n  - {{port: 80}}\n"
            ),
        );
        let ip: Ipv4Addr = jsonpath(&cluster, &["get", "svc", &name], "{.spec.clusterIP}")
            .parse()
            .unwrap();
        let addr = SocketAddr::from((ip, 80));
        // Programmed without endpoints: refused at once.
        cluster.wait_until("the Service is programmed", Duration::from_secs(30), || {
            let node = node.clone();
            in_netns(&node, move || {
                matches!(
                    TcpStream::connect_timeout(&addr, Duration::from_millis(200)),
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
                )
            })
        });
        let (watch_name, kc) = (name.clone(), kubeconfig.clone());
        let ready_seen = std::thread::spawn({
            let node = node.clone();
            move || in_netns(&node, move || ready_instant(&kc, &watch_name))
        });
        let connected = std::thread::spawn({
            let node = node.clone();
            move || in_netns(&node, move || first_connection(addr))
        });
        apply(
            &cluster,
            &format!("{name}-pod"),
            &format!(
                r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels: {{app: {name}}}
spec:
  containers:
  - name: nginx
    image: nginx
    imagePullPolicy: IfNotPresent
    readinessProbe:
      tcpSocket: {{port: 80}}
      periodSeconds: 1
"#
            ),
        );
        let (ready, connected) = (ready_seen.join().unwrap(), connected.join().unwrap());
        // Negative when the proxy was quicker than the watch event reached
        // this client.
        let latency_ms = if connected >= ready {
            (connected - ready).as_secs_f64() * 1e3
        } else {
            -(ready - connected).as_secs_f64() * 1e3
        };
        println!("round {round}: Ready -> first proxied connection {latency_ms:.2} ms");
        samples.push(latency_ms);
        cluster.kubectl_ok(&["delete", "pod", &name, "--grace-period=1", "--wait=false"]);
        cluster.kubectl_ok(&["delete", "svc", &name]);
    }
    samples.sort_by(f64::total_cmp);
    let at = |p: f64| samples[((samples.len() - 1) as f64 * p).round() as usize];
    println!(
        "pod Ready (watch event) -> first connection through its ClusterIP: n={} \
         min {:.2} ms p50 {:.2} ms p99 {:.2} ms max {:.2} ms",
        samples.len(),
        at(0.0),
        at(0.5),
        at(0.99),
        at(1.0)
    );
}

/// When this namespace's client saw pod `name` turn Ready.
fn ready_instant(kubeconfig: &std::path::Path, name: &str) -> Instant {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let kubeconfig = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .unwrap();
        let client = kube::Client::try_from(config).unwrap();
        let pods: kube::Api<Pod> = kube::Api::namespaced(client, "default");
        let selector = format!("metadata.name={name}");
        let mut events =
            std::pin::pin!(watcher(pods, watcher::Config::default().fields(&selector)));
        while let Some(event) = events.next().await {
            let pod = match event {
                Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => p,
                _ => continue,
            };
            let ready = pod
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            if ready {
                return Instant::now();
            }
        }
        panic!("the pod watch ended");
    })
}

/// When a connection to `addr` first succeeded (tried every millisecond).
fn first_connection(addr: SocketAddr) -> Instant {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Instant::now();
        }
        assert!(Instant::now() < deadline, "no connection through {addr}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A query for the A records of `name` (absolute, with its final dot).
fn dns_query(id: u16, name: &str) -> Vec<u8> {
    let mut q = Vec::new();
    q.extend(id.to_be_bytes());
    q.extend([0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]); // RD; one question
    for label in name.trim_end_matches('.').split('.') {
        q.push(label.len() as u8);
        q.extend(label.as_bytes());
    }
    q.extend([0, 0, 1, 0, 1]); // root, type A, class IN
    q
}

/// `DNS_CLIENTS` closed-loop clients querying `name` for `DNS_SECONDS`:
/// the answers received and their latencies.
fn dns_load(name: &'static str) -> (usize, Vec<Duration>) {
    let server = SocketAddr::from((Ipv4Addr::new(10, 43, 0, 10), 53));
    let end = Instant::now() + Duration::from_secs(DNS_SECONDS);
    let clients: Vec<_> = (0..DNS_CLIENTS)
        .map(|_| {
            // The socket is made in the pod's namespace (this thread's);
            // the client threads use it from theirs.
            let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
            socket.connect(server).unwrap();
            socket
                .set_read_timeout(Some(Duration::from_secs(1)))
                .unwrap();
            std::thread::spawn(move || {
                let mut latencies = Vec::new();
                let mut buf = [0u8; 1500];
                let mut id: u16 = 0;
                while Instant::now() < end {
                    id = id.wrapping_add(1);
                    let t = Instant::now();
                    socket.send(&dns_query(id, name)).unwrap();
                    loop {
                        match socket.recv(&mut buf) {
                            Ok(n) if n >= 12 && buf[..2] == id.to_be_bytes() => {
                                latencies.push(t.elapsed());
                                break;
                            }
                            Ok(_) => continue,
                            Err(e) => panic!("no DNS answer for {name}: {e}"),
                        }
                    }
                }
                latencies
            })
        })
        .collect();
    let latencies: Vec<Duration> = clients
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    (latencies.len(), latencies)
}
