//! Cluster DNS queries/s and latency: `cargo bench -p orca-dns` (as root,
//! for the pod's view; otherwise only on loopback).
//!
//! The zone holds 1,000 ClusterIP Services and 100 headless ones with 10
//! ready endpoints each. In a network namespace of its own (the "node"),
//! the server listens on 10.43.0.10:53, put on the node by
//! `add_dns_address`, and forwards other names to a resolver of the
//! bench's own on the node's 127.0.0.1. Clients ask from a second namespace
//! joined by a veth pair (the "pod", reaching the address by its default
//! route) and from the node itself. Each client keeps one UDP query in
//! flight; the server, the upstream and the clients share the machine's
//! cores.

#[path = "../tests/it/common/mod.rs"]
mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use hickory_server::proto::op::{Message, Query};
use hickory_server::proto::rr::{Name, RecordType};
use orca_dns::interface::add_dns_address;
use orca_dns::{DnsConfig, DnsServer, SharedIndex};
use tokio::net::UdpSocket;

const DNS_IP: Ipv4Addr = Ipv4Addr::new(10, 43, 0, 10);
const CLIENTS: usize = 16;
const RUN: Duration = Duration::from_secs(4);

fn fill(index: &SharedIndex) -> Duration {
    let mut services = Vec::new();
    let mut slices = Vec::new();
    for i in 0..1000u32 {
        let ip = format!("10.43.{}.{}", 1 + i / 250, i % 250 + 1);
        services.push(cluster_ip(
            &format!("ns-{}", i % 10),
            &format!("svc-{i}"),
            &ip,
        ));
    }
    for i in 0..100u32 {
        let ns = format!("ns-{}", i % 10);
        let name = format!("hl-{i}");
        services.push(headless(&ns, &name));
        let ips: Vec<String> = (0..10).map(|e| format!("10.42.{i}.{}", e + 1)).collect();
        let endpoints: Vec<(&str, Option<&str>)> =
            ips.iter().map(|ip| (ip.as_str(), None)).collect();
        slices.push(slice(&ns, &format!("{name}-1"), &name, &endpoints));
    }
    let started = Instant::now();
    let mut index = index.write().unwrap();
    index.replace_services(&services);
    index.replace_endpoint_slices(&slices);
    started.elapsed()
}

/// Wire-format queries for `names`, any ID.
fn queries(names: &[String], qtype: RecordType) -> Vec<Vec<u8>> {
    names
        .iter()
        .map(|name| {
            let mut m = Message::query();
            m.metadata.recursion_desired = true;
            m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
            m.to_vec().unwrap()
        })
        .collect()
}

struct Result {
    queries: usize,
    per_second: f64,
    p50: Duration,
    p99: Duration,
    errors: usize,
}

/// CLIENTS clients, one query in flight each, for RUN.
async fn load(server: SocketAddr, queries: &[Vec<u8>]) -> Result {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let queries = queries.to_vec();
        tasks.push(tokio::spawn(async move {
            let socket = UdpSocket::bind("0.0.0.0:0").await.unwrap();
            socket.connect(server).await.unwrap();
            let mut latencies = Vec::new();
            let mut errors = 0;
            let mut buf = vec![0u8; 4096];
            let mut i = c;
            let mut id: u16 = c as u16;
            while started.elapsed() < RUN {
                let mut q = queries[i % queries.len()].clone();
                id = id.wrapping_add(CLIENTS as u16);
                q[..2].copy_from_slice(&id.to_be_bytes());
                let sent = Instant::now();
                socket.send(&q).await.unwrap();
                match tokio::time::timeout(Duration::from_secs(2), socket.recv(&mut buf)).await {
                    Ok(Ok(n)) if n >= 12 && buf[..2] == id.to_be_bytes() => {
                        latencies.push(sent.elapsed());
                    }
                    _ => errors += 1,
                }
                i += 1;
            }
            (latencies, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.unwrap();
        all.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed();
    all.sort();
    let at = |q: f64| all[((all.len() as f64 * q) as usize).min(all.len() - 1)];
    Result {
        queries: all.len(),
        per_second: all.len() as f64 / elapsed.as_secs_f64(),
        p50: at(0.50),
        p99: at(0.99),
        errors,
    }
}

fn scenarios() -> Vec<(&'static str, Vec<Vec<u8>>)> {
    let cluster: Vec<String> = (0..1000)
        .map(|i| format!("svc-{i}.ns-{}.svc.cluster.local.", i % 10))
        .collect();
    let headless: Vec<String> = (0..100)
        .map(|i| format!("hl-{i}.ns-{}.svc.cluster.local.", i % 10))
        .collect();
    let miss: Vec<String> = (0..100)
        .map(|i| format!("www.example{i}.com.ns-1.svc.cluster.local."))
        .collect();
    vec![
        ("ClusterIP Service A", queries(&cluster, RecordType::A)),
        (
            "headless Service A (10 endpoints)",
            queries(&headless, RecordType::A),
        ),
        ("search-path miss (NXDOMAIN)", queries(&miss, RecordType::A)),
        (
            "forwarded name (upstream on 127.0.0.1)",
            queries(&["www.example.test.".to_string()], RecordType::A),
        ),
    ]
}

fn report(from: &str, results: Vec<(&'static str, Result)>) {
    for (what, r) in results {
        println!(
            "| {from} | {what} | {:.0} | {:.0} us | {:.0} us | {} queries, {} lost |",
            r.per_second,
            r.p50.as_secs_f64() * 1e6,
            r.p99.as_secs_f64() * 1e6,
            r.queries,
            r.errors
        );
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let root = nix::unistd::geteuid().is_root();
    println!("| client | query | queries/s | p50 | p99 | |");
    println!("|---|---|---|---|---|---|");
    if !root {
        eprintln!("not root: measuring on 127.0.0.1 only");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (server, build) = start(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await;
            eprintln!("index of 1,100 Services and 1,000 endpoints built in {build:?}");
            let mut results = Vec::new();
            for (what, qs) in scenarios() {
                results.push((what, load(server, &qs).await));
            }
            report("node (loopback)", results);
        });
        return;
    }

    let (pod_tid_tx, pod_tid_rx) = mpsc::channel::<i32>();
    let (wired_tx, wired_rx) = mpsc::channel::<()>();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let (node_results_tx, node_results_rx) = mpsc::channel::<()>();
    let pod = thread::spawn(move || {
        new_netns();
        pod_tid_tx.send(nix::unistd::gettid().as_raw()).unwrap();
        wired_rx.recv().unwrap();
        ip("addr add 10.42.255.5/24 dev veth-pod");
        ip("link set veth-pod up");
        ip("route add default via 10.42.255.1");
        node_results_rx.recv().unwrap();
        let rt = runtime();
        let mut results = Vec::new();
        for (what, qs) in scenarios() {
            results.push((what, rt.block_on(load(SocketAddr::from((DNS_IP, 53)), &qs))));
        }
        report("pod (veth to the node)", results);
        done_tx.send(()).unwrap();
    });
    let node = thread::spawn(move || {
        new_netns();
        add_dns_address(DNS_IP).unwrap();
        let pod_tid = pod_tid_rx.recv().unwrap();
        ip(&format!(
            "link add veth-node type veth peer name veth-pod netns {pod_tid}"
        ));
        ip("addr add 10.42.255.1/24 dev veth-node");
        ip("link set veth-node up");
        // The server's own runtime: two workers, as in the agent.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (server, build) = rt.block_on(start(SocketAddr::from((DNS_IP, 53))));
        eprintln!("index of 1,100 Services and 1,000 endpoints built in {build:?}");
        wired_tx.send(()).unwrap();
        // From the node itself first, then from the pod.
        let client_rt = runtime();
        let mut results = Vec::new();
        for (what, qs) in scenarios() {
            results.push((what, client_rt.block_on(load(server, &qs))));
        }
        report("node (its own address)", results);
        node_results_tx.send(()).unwrap();
        done_rx.recv().unwrap();
        drop(rt);
    });
    pod.join().unwrap();
    node.join().unwrap();
}

/// Starts the upstream and the server (kept running in the current
/// runtime until it is dropped); returns the server's address.
async fn start(listen: SocketAddr) -> (SocketAddr, Duration) {
    let upstream = start_upstream().await;
    let mut config = DnsConfig::new(DNS_IP);
    config.listen = listen;
    config.upstreams = vec![upstream.addr];
    let index = config.new_index().unwrap();
    let build = fill(&index);
    let server = DnsServer::bind(&config, index).await.unwrap();
    let addr = server.local_addr();
    tokio::spawn(async move {
        let _upstream = upstream;
        server.serve(std::future::pending()).await
    });
    (addr, build)
}
