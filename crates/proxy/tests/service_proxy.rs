//! The proxier programmed in a real network namespace "node" with pods
//! behind a bridge, checked with real TCP connections. Needs root.

mod common;

use std::collections::BTreeSet;
use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::{ask, pod_ip, Cluster, Netns, BRIDGE_IP, NODE_IP, OUTSIDE_IP, PORT};
use orca_proxy::{inspect, Endpoint, HostPortMapping, Protocol, Proxier, ProxyConfig, ServicePort};

const CLUSTER_IP: Ipv4Addr = Ipv4Addr::new(10, 243, 64, 10);
const NODE_PORT: u16 = 30080;

fn config() -> ProxyConfig {
    ProxyConfig::new("10.243.0.0/20".parse().unwrap())
}

fn proxier(node: &Netns, config: ProxyConfig) -> Proxier {
    node.run(move || Proxier::new(config))
        .expect("start the proxier")
}

fn web(backends: &[&str]) -> ServicePort {
    ServicePort {
        namespace: "default".into(),
        name: "web".into(),
        port_name: "http".into(),
        protocol: Protocol::Tcp,
        cluster_ip: CLUSTER_IP,
        port: 80,
        node_port: NODE_PORT,
        external_ips: vec![],
        session_affinity_timeout: None,
        external_traffic_local: false,
        internal_traffic_local: false,
        endpoints: backends
            .iter()
            .map(|b| Endpoint::ready(pod_ip(b), PORT))
            .collect(),
    }
}

/// Who answered `n` connections.
fn answers(from: &Netns, ip: Ipv4Addr, port: u16, n: usize) -> BTreeSet<String> {
    (0..n)
        .map(|_| ask(from, ip, port).expect("connect through the proxy").0)
        .collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[test]
fn cluster_ip_balances_follows_endpoints_and_rejects_without_any() {
    let cluster = Cluster::new();
    let mut proxier = proxier(&cluster.node, config());
    proxier.sync(&[web(&["pod1", "pod2"])]).unwrap();

    let client = cluster.pod("client");
    assert_eq!(answers(client, CLUSTER_IP, 80, 40), set(&["pod1", "pod2"]));
    // From the node itself too.
    assert_eq!(
        answers(&cluster.node, CLUSTER_IP, 80, 40),
        set(&["pod1", "pod2"])
    );
    // A pod keeps its own address towards the backend; the node's traffic
    // is masqueraded (it does not come from the cluster CIDR).
    assert_eq!(ask(client, CLUSTER_IP, 80).unwrap().1, pod_ip("client"));
    assert_eq!(ask(&cluster.node, CLUSTER_IP, 80).unwrap().1, BRIDGE_IP);

    proxier.sync(&[web(&["pod2"])]).unwrap();
    assert_eq!(answers(client, CLUSTER_IP, 80, 20), set(&["pod2"]));

    proxier.sync(&[web(&[])]).unwrap();
    for from in [client, &cluster.node] {
        let started = Instant::now();
        let err = ask(from, CLUSTER_IP, 80).expect_err("no endpoint: refused");
        assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "rejected promptly"
        );
        // The NodePort too.
        let err = ask(from, NODE_IP, NODE_PORT).expect_err("no endpoint: refused");
        assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
    }

    // Endpoints back: served again.
    proxier.sync(&[web(&["pod1"])]).unwrap();
    assert_eq!(answers(client, CLUSTER_IP, 80, 5), set(&["pod1"]));
}

#[test]
fn unready_endpoints_are_skipped_and_terminating_ones_used_as_last_resort() {
    let cluster = Cluster::new();
    let mut proxier = proxier(&cluster.node, config());
    let mut sp = web(&["pod1", "pod2"]);
    sp.endpoints[1].ready = false;
    sp.endpoints[1].serving = false;
    proxier.sync(std::slice::from_ref(&sp)).unwrap();
    let client = cluster.pod("client");
    assert_eq!(answers(client, CLUSTER_IP, 80, 20), set(&["pod1"]));

    // pod1 terminating but still serving, pod2 not serving: pod1 it is.
    sp.endpoints[0].ready = false;
    sp.endpoints[0].terminating = true;
    proxier.sync(&[sp]).unwrap();
    assert_eq!(answers(client, CLUSTER_IP, 80, 10), set(&["pod1"]));
}

#[test]
fn node_port_from_outside_is_masqueraded() {
    let cluster = Cluster::new();
    let mut proxier = proxier(&cluster.node, config());
    proxier.sync(&[web(&["pod1", "pod2"])]).unwrap();
    assert_eq!(
        answers(&cluster.outside, NODE_IP, NODE_PORT, 40),
        set(&["pod1", "pod2"])
    );
    // The backend sees the node (its bridge address), so its reply returns
    // through the node to be un-NATed.
    assert_eq!(
        ask(&cluster.outside, NODE_IP, NODE_PORT).unwrap().1,
        BRIDGE_IP
    );
    // From a pod and from the node, on the node's address.
    assert!(ask(cluster.pod("client"), NODE_IP, NODE_PORT).is_ok());
    assert!(ask(&cluster.node, NODE_IP, NODE_PORT).is_ok());
    // Another port of the node is not forwarded.
    assert!(ask(&cluster.outside, NODE_IP, NODE_PORT + 1).is_err());
}

#[test]
fn node_ports_answer_only_on_configured_addresses() {
    let cluster = Cluster::new();
    let mut config = config();
    config.node_port_addresses = vec![NODE_IP];
    let mut proxier = proxier(&cluster.node, config);
    proxier.sync(&[web(&["pod1"])]).unwrap();
    assert!(ask(&cluster.outside, NODE_IP, NODE_PORT).is_ok());
    // The bridge address is local too, but not a NodePort address.
    let err = ask(cluster.pod("client"), BRIDGE_IP, NODE_PORT).expect_err("not a NodePort address");
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
}

#[test]
fn hairpin_a_pod_reaches_itself_through_its_service() {
    let cluster = Cluster::new();
    let mut proxier = proxier(&cluster.node, config());
    proxier.sync(&[web(&["pod1"])]).unwrap();
    let (who, seen) = ask(cluster.pod("pod1"), CLUSTER_IP, 80).expect("hairpin connection");
    assert_eq!(who, "pod1");
    assert_eq!(seen, BRIDGE_IP, "hairpin traffic is masqueraded");
}

#[test]
fn session_affinity_keeps_a_client_on_one_backend() {
    let cluster = Cluster::new();
    let mut proxier = proxier(&cluster.node, config());
    let mut sp = web(&["pod1", "pod2"]);
    sp.session_affinity_timeout = Some(10800);
    proxier.sync(&[sp.clone()]).unwrap();
    let client = cluster.pod("client");
    assert_eq!(answers(client, CLUSTER_IP, 80, 30).len(), 1);
    assert_eq!(answers(&cluster.node, CLUSTER_IP, 80, 30).len(), 1);

    // Without affinity the same clients spread again.
    sp.session_affinity_timeout = None;
    proxier.sync(&[sp]).unwrap();
    assert_eq!(answers(client, CLUSTER_IP, 80, 40).len(), 2);
}

#[test]
fn host_ports_from_outside_the_node_and_the_pod_itself() {
    let cluster = Cluster::new();
    let mut proxier = proxier(&cluster.node, config());
    let mapping = HostPortMapping {
        protocol: Protocol::Tcp,
        host_port: 18088,
        host_ip: None,
        pod_ip: pod_ip("pod2"),
        container_port: PORT,
    };
    proxier.set_host_ports(vec![mapping]).unwrap();
    let (who, seen) = ask(&cluster.outside, NODE_IP, 18088).expect("hostPort from outside");
    assert_eq!(
        (who.as_str(), seen),
        ("pod2", OUTSIDE_IP),
        "hostPorts keep the client address"
    );
    assert_eq!(ask(&cluster.node, NODE_IP, 18088).unwrap().0, "pod2");
    assert_eq!(
        ask(cluster.pod("client"), NODE_IP, 18088).unwrap().0,
        "pod2"
    );
    let (who, seen) = ask(cluster.pod("pod2"), NODE_IP, 18088).expect("hostPort hairpin");
    assert_eq!((who.as_str(), seen), ("pod2", BRIDGE_IP));

    // Bound to one host IP: only that address answers.
    let bound = HostPortMapping {
        host_ip: Some(BRIDGE_IP),
        ..mapping
    };
    proxier.set_host_ports(vec![bound]).unwrap();
    assert_eq!(
        ask(cluster.pod("client"), BRIDGE_IP, 18088).unwrap().0,
        "pod2"
    );
    assert!(ask(&cluster.outside, NODE_IP, 18088).is_err());

    proxier.set_host_ports(vec![]).unwrap();
    assert!(ask(cluster.pod("client"), BRIDGE_IP, 18088).is_err());
}

#[test]
fn pod_traffic_leaving_the_cluster_is_masqueraded() {
    let cluster = Cluster::new();
    let client = cluster.pod("client");
    // Without the proxy the outside machine has no route back to pods.
    assert!(ask(client, OUTSIDE_IP, PORT).is_err());

    let mut proxier = proxier(&cluster.node, config());
    let (who, seen) = ask(client, OUTSIDE_IP, PORT).expect("pod reaches another machine");
    assert_eq!((who.as_str(), seen), ("outside", NODE_IP));
    // Pod to pod stays unmasqueraded.
    assert_eq!(
        ask(client, pod_ip("pod1"), PORT).unwrap().1,
        pod_ip("client")
    );

    proxier.shutdown().unwrap();
    assert!(ask(client, OUTSIDE_IP, PORT).is_err());
}

#[test]
fn shutdown_removes_the_table_and_a_restart_replaces_leftovers() {
    let cluster = Cluster::new();
    let mut first = proxier(&cluster.node, config());
    first.sync(&[web(&["pod1", "pod2"])]).unwrap();
    let summary = cluster.node.run(inspect).unwrap().expect("table exists");
    assert!(summary.chains.keys().any(|c| c.starts_with("service-")));
    assert_eq!(summary.sets["service-ips"], 1);
    drop(first); // a crash: the rules stay behind
    assert!(ask(cluster.pod("client"), CLUSTER_IP, 80).is_ok());

    let mut second = proxier(&cluster.node, config());
    let summary = cluster.node.run(inspect).unwrap().expect("table exists");
    assert!(
        !summary.chains.keys().any(|c| c.starts_with("service-")),
        "{summary:?}"
    );
    assert_eq!(summary.sets["service-ips"], 0);
    assert!(ask(cluster.pod("client"), CLUSTER_IP, 80).is_err());

    second.sync(&[web(&["pod1"])]).unwrap();
    second.shutdown().unwrap();
    assert_eq!(cluster.node.run(inspect).unwrap(), None);
    assert!(ask(cluster.pod("client"), CLUSTER_IP, 80).is_err());
}

#[test]
fn udp_services_answer_from_the_cluster_ip() {
    let cluster = Cluster::new();
    let mut proxier = proxier(&cluster.node, config());
    let mut dns = web(&["pod1"]);
    dns.name = "dns".into();
    dns.protocol = Protocol::Udp;
    dns.port = 53;
    dns.node_port = 0;
    dns.endpoints[0].port = 5353;
    proxier.sync(&[dns]).unwrap();

    // The query goes out only once the server is bound: a datagram to an
    // unbound port is simply dropped.
    let (bound_tx, bound_rx) = std::sync::mpsc::channel();
    let server = cluster.pod("pod1").spawn(move || {
        let socket = UdpSocket::bind(("0.0.0.0", 5353)).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        bound_tx.send(()).unwrap();
        let mut buf = [0u8; 64];
        let (n, peer) = socket.recv_from(&mut buf).unwrap();
        socket.send_to(&buf[..n], peer).unwrap();
    });
    bound_rx.recv().unwrap();
    let (answer, from) = cluster.pod("client").run(|| {
        let socket = UdpSocket::bind(("0.0.0.0", 0)).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        socket.send_to(b"query", (CLUSTER_IP, 53)).unwrap();
        let mut buf = [0u8; 64];
        let (n, from) = socket.recv_from(&mut buf).expect("an answer");
        (buf[..n].to_vec(), from)
    });
    server.join().unwrap();
    assert_eq!(answer, b"query");
    // The reply is un-NATed: it comes from the Service's address.
    assert_eq!(from, SocketAddr::from((CLUSTER_IP, 53)));
}

#[test]
fn a_table_changed_behind_its_back_is_rebuilt_after_one_failed_sync() {
    let cluster = Cluster::new();
    let mut proxier = proxier(&cluster.node, config());
    proxier.sync(&[web(&["pod1", "pod2"])]).unwrap();
    // Another process replaces the table (here: a second proxier's start).
    let _other = self::proxier(&cluster.node, config());
    assert!(ask(cluster.pod("client"), CLUSTER_IP, 80).is_err());

    // The next change refers to chains that are gone: refused, naming what.
    let err = proxier.sync(&[web(&["pod1"])]).expect_err("table drifted");
    assert!(err.to_string().contains("chain"), "{err}");
    // Then the table is rebuilt whole.
    let report = proxier.sync(&[web(&["pod1"])]).unwrap();
    assert!(report.rebuilt);
    assert_eq!(
        answers(cluster.pod("client"), CLUSTER_IP, 80, 5),
        set(&["pod1"])
    );
}

/// Service `i` of many, with ten (unreachable) endpoints.
fn many(i: usize) -> ServicePort {
    ServicePort {
        namespace: "bulk".into(),
        name: format!("svc-{i}"),
        port_name: String::new(),
        protocol: Protocol::Tcp,
        cluster_ip: Ipv4Addr::new(10, 243, 96 + (i / 250) as u8, (i % 250) as u8 + 1),
        port: 80,
        node_port: 0,
        external_ips: vec![],
        session_affinity_timeout: None,
        external_traffic_local: false,
        internal_traffic_local: false,
        endpoints: (0..10)
            .map(|e| {
                Endpoint::ready(
                    Ipv4Addr::new(10, 243, 8 + (i / 250) as u8, (i % 250) as u8),
                    8000 + e,
                )
            })
            .collect(),
    }
}

#[test]
fn a_sync_touches_only_what_changed() {
    let cluster = Cluster::new();
    let mut proxier = proxier(&cluster.node, config());
    let mut services: Vec<ServicePort> = (0..300).map(many).collect();
    services.push(web(&["pod1", "pod2"]));
    let first = proxier.sync(&services).unwrap();
    // Per bulk Service a service chain and ten endpoint chains; web has an
    // external chain (NodePort) and two endpoints more.
    assert_eq!(first.chains_created, 300 * 11 + 4);
    let before = cluster.node.run(inspect).unwrap().unwrap();

    // One endpoint of one Service moves.
    services[42].endpoints[3].port = 9000;
    let report = proxier.sync(&services).unwrap();
    assert_eq!(
        (
            report.chains_created,
            report.chains_written,
            report.chains_retired
        ),
        (1, 2, 1),
        "{report:?}"
    );
    assert_eq!((report.elements_added, report.elements_removed), (0, 0));
    // New endpoint chain, its rules (3), the service chain flushed and
    // rewritten (masquerade, the choice: its map, elements, rule), the old
    // endpoint chain flushed.
    assert!(report.messages <= 10, "{report:?}");
    let after = cluster.node.run(inspect).unwrap().unwrap();
    let changed: BTreeSet<&String> = before
        .chains
        .iter()
        .filter(|(c, n)| after.chains.get(*c) != Some(n))
        .map(|(c, _)| c)
        .chain(
            after
                .chains
                .keys()
                .filter(|c| !before.chains.contains_key(*c)),
        )
        .collect();
    assert!(
        changed.iter().all(|c| c.contains("bulk/svc-42/")),
        "{changed:?}"
    );
    // The new endpoint chain appeared, the old one was emptied (the
    // service chain was rewritten with as many rules as before).
    assert_eq!(changed.len(), 2, "{changed:?}");

    // The same input again: nothing to send (but the deletion of the old
    // endpoint chain, if a second has passed).
    let again = proxier.sync(&services).unwrap();
    assert_eq!(
        (again.units_changed, again.messages),
        (0, again.chains_deleted)
    );
    // Other Services still work.
    assert_eq!(
        answers(cluster.pod("client"), CLUSTER_IP, 80, 20),
        set(&["pod1", "pod2"])
    );

    // A deleted Service: its elements go at once, its chains once unused
    // for the grace period.
    services.remove(7);
    let removal = proxier.sync(&services).unwrap();
    assert_eq!((removal.elements_removed, removal.chains_retired), (1, 11));
    let mut deleted = again.chains_deleted + removal.chains_deleted;
    while let Some(due) = proxier.cleanup_due() {
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        deleted += proxier.sync(&services).unwrap().chains_deleted;
    }
    // With svc-42's old endpoint chain.
    assert_eq!(deleted, 12);
    assert!(proxier.cleanup_due().is_none());
    let summary = cluster.node.run(inspect).unwrap().unwrap();
    assert!(!summary
        .chains
        .keys()
        .any(|c| c.contains("bulk/svc-7/") || c.contains("bulk/svc-42/tcp/__10.243.8.42/8003")));
}
