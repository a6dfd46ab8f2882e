//! Service proxy benchmark: `cargo bench -p orca-proxy` (as root; about a
//! minute). In network namespaces (a node with pods behind a bridge, as the
//! tests build it) it measures
//! - the time to program 1,000 Services with 10 endpoints each into an
//!   empty table (one transaction),
//! - the time of an incremental sync changing one endpoint among them,
//! - the extra latency of a TCP connection (connect, one answer, close)
//!   through a ClusterIP over the same connection straight to the pod IP.
//!
//! It prints the figures; nothing is asserted.

#[allow(dead_code)]
#[path = "../tests/common/mod.rs"]
mod common;

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::time::{Duration, Instant};

use common::{pod_ip, Cluster, PORT};
use orca_proxy::{Endpoint, Protocol, Proxier, ProxyConfig, ServicePort};

const SERVICES: usize = 1000;
const ENDPOINTS: usize = 10;
const CLUSTER_IP: Ipv4Addr = Ipv4Addr::new(10, 243, 64, 10);

fn service(i: usize) -> ServicePort {
    ServicePort {
        namespace: "bench".into(),
        name: format!("svc-{i}"),
        port_name: "http".into(),
        protocol: Protocol::Tcp,
        cluster_ip: Ipv4Addr::new(10, 243, 96 + (i / 250) as u8, (i % 250) as u8 + 1),
        port: 80,
        node_port: 0,
        external_ips: vec![],
        session_affinity_timeout: None,
        external_traffic_local: false,
        internal_traffic_local: false,
        endpoints: (0..ENDPOINTS)
            .map(|e| {
                Endpoint::ready(
                    Ipv4Addr::new(10, 243, 8 + (i / 250) as u8, (i % 250) as u8),
                    8000 + e as u16,
                )
            })
            .collect(),
    }
}

fn web() -> ServicePort {
    ServicePort {
        name: "web".into(),
        cluster_ip: CLUSTER_IP,
        endpoints: vec![Endpoint::ready(pod_ip("pod1"), PORT)],
        ..service(0)
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn us(d: Duration) -> String {
    format!("{:.0} us", d.as_secs_f64() * 1e6)
}

/// Connect, read the answer to EOF, close: `n` times, each timed.
fn connections(addr: SocketAddr, n: usize) -> Vec<Duration> {
    let mut times: Vec<Duration> = (0..n)
        .map(|_| {
            let start = Instant::now();
            let mut conn = TcpStream::connect(addr).expect("connect");
            let mut answer = String::new();
            conn.read_to_string(&mut answer).expect("answer");
            start.elapsed()
        })
        .collect();
    times.sort();
    times
}

fn main() {
    let cluster = Cluster::new();
    let config = ProxyConfig::new("10.243.0.0/20".parse().unwrap());
    let mut services: Vec<ServicePort> = (0..SERVICES).map(service).collect();
    services.push(web());

    // The same one-endpoint change on a table holding a single Service:
    // the kernel's fixed cost of a transaction.
    {
        let config = config.clone();
        let mut small: Proxier = cluster
            .node
            .run(move || Proxier::new(config))
            .expect("proxier");
        let mut one = vec![service(0)];
        let mut times = Vec::new();
        for round in 0..100 {
            one[0].endpoints[3].port = if round % 2 == 0 { 9000 } else { 8003 };
            times.push(small.sync(&one).expect("sync").transaction);
        }
        times.sort();
        println!(
            "incremental sync on a table of one Service: kernel's transaction p50 {}, p99 {}",
            ms(percentile(&times, 0.5)),
            ms(percentile(&times, 0.99)),
        );
    }

    // From empty: a fresh table each round.
    let mut full = Vec::new();
    let mut full_kernel = Vec::new();
    let mut messages = 0;
    let mut proxier = None;
    for _ in 0..5 {
        let config = config.clone();
        let mut p: Proxier = cluster
            .node
            .run(move || Proxier::new(config))
            .expect("proxier");
        let start = Instant::now();
        let report = p.sync(&services).expect("sync");
        full.push(start.elapsed());
        full_kernel.push(report.transaction);
        messages = report.messages;
        proxier = Some(p);
    }
    let mut proxier = proxier.expect("a proxier");
    full.sort();
    full_kernel.sort();
    println!(
        "program {SERVICES} Services x {ENDPOINTS} endpoints from empty: median {}, min {}, max {}, of which the kernel's transaction median {} ({messages} messages in one transaction)",
        ms(percentile(&full, 0.5)),
        ms(full[0]),
        ms(full[full.len() - 1]),
        ms(percentile(&full_kernel, 0.5)),
    );

    // One endpoint changes, back and forth.
    let mut incremental = Vec::new();
    let mut incremental_kernel = Vec::new();
    for round in 0..100 {
        services[500].endpoints[3].port = if round % 2 == 0 { 9000 } else { 8003 };
        let start = Instant::now();
        let report = proxier.sync(&services).expect("sync");
        incremental.push(start.elapsed());
        incremental_kernel.push(report.transaction);
        messages = report.messages;
    }
    incremental.sort();
    incremental_kernel.sort();
    println!(
        "incremental sync, one endpoint changed: p50 {}, p99 {}, of which the kernel's transaction p50 {} ({messages} messages)",
        ms(percentile(&incremental, 0.5)),
        ms(percentile(&incremental, 0.99)),
        ms(percentile(&incremental_kernel, 0.5)),
    );

    // ClusterIP against the pod IP, from a pod, alternating in batches.
    let client = cluster.pod("client");
    let target = SocketAddr::V4(SocketAddrV4::new(pod_ip("pod1"), PORT));
    let service = SocketAddr::V4(SocketAddrV4::new(CLUSTER_IP, 80));
    let (direct, via_service) = client.run(move || {
        connections(target, 200);
        connections(service, 200);
        let (mut direct, mut via) = (Vec::new(), Vec::new());
        for _ in 0..10 {
            direct.extend(connections(target, 300));
            via.extend(connections(service, 300));
        }
        direct.sort();
        via.sort();
        (direct, via)
    });
    for (name, times) in [("pod IP", &direct), ("ClusterIP", &via_service)] {
        println!(
            "connection to the {name} (connect, answer, close), {} connections: p50 {}, p99 {}",
            times.len(),
            us(percentile(times, 0.5)),
            us(percentile(times, 0.99)),
        );
    }
    let extra =
        |p| percentile(&via_service, p).as_secs_f64() - percentile(&direct, p).as_secs_f64();
    println!(
        "extra latency through the ClusterIP ({SERVICES} other Services programmed): p50 {:.0} us, p99 {:.0} us",
        extra(0.5) * 1e6,
        extra(0.99) * 1e6,
    );
    proxier.shutdown().expect("shutdown");
}
