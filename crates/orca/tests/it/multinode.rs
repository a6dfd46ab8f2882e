//! Three nodes, each `orca agent` in a network namespace of its own on a
//! simulated LAN, joined to one `orca server`: pods reach pods on other
//! nodes (ping and TCP, both ways), a node's host reaches a pod on another
//! node, a pod reaches another node's address; with VXLAN, then with
//! host-gw after restarting the agents; pod traffic to a machine outside
//! the cluster is masqueraded; routes follow a deleted node that comes back
//! and one that leaves.

use std::path::Path;
use std::time::{Duration, Instant};

use orca_testkit::lan::{Lan, Machine};
use orca_testkit::orca::{busybox_pod, Agent, Backend, Kubectl, Server, WAIT};
use orca_testkit::process::{wait_until, Process};

const ORCA: &str = env!("CARGO_BIN_EXE_orca");
const NODES: [&str; 3] = ["mn1", "mn2", "mn3"];
const CLUSTER_CIDR: &str = "10.244.0.0/16";

struct Cluster {
    // Dropped in order: agents, then their machines, then the server and LAN.
    agents: Vec<Option<Agent>>,
    machines: Vec<Machine>,
    _outside_server: Process,
    /// A machine on the LAN that is no node: it has no route to pods, so
    /// it answers them only if their traffic is masqueraded.
    outside: Machine,
    server: Server,
    _lan: Lan,
    dirs: tempfile::TempDir,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Pods outlive their agents by design: remove them while the agents run.
        let _ = self.kubectl().run(&[
            "delete",
            "pods",
            "--all",
            "--grace-period=1",
            "--timeout=60s",
        ]);
    }
}

impl Cluster {
    fn start(backend: Backend) -> Cluster {
        assert!(
            std::env::var("ORCA_TEST_IMAGES").is_ok(),
            "ORCA_TEST_IMAGES is not set: run the suite with scripts/test.sh, which builds the test images"
        );
        let lan = Lan::new();
        let server = Server::start(
            Path::new(ORCA),
            lan.host_ip(),
            &["--cluster-cidr", CLUSTER_CIDR],
        );
        let machines: Vec<Machine> = NODES.iter().map(|n| lan.add_machine(n)).collect();
        let outside = lan.add_machine("outside");
        let dirs = tempfile::Builder::new()
            .prefix("orca-nodes-")
            .tempdir()
            .unwrap();
        let outside_server = Process::spawn(
            outside
                .command("busybox")
                .args(["nc", "-ll", "-p", "9000", "-e", "echo", "outside"]),
            &dirs.path().join("outside.log"),
        );
        let mut cluster = Cluster {
            agents: Vec::new(),
            machines,
            _outside_server: outside_server,
            outside,
            server,
            _lan: lan,
            dirs,
        };
        let mut started = Vec::new();
        for i in 0..NODES.len() {
            started.push(Instant::now());
            let agent = cluster.start_agent(i, backend);
            cluster.agents.push(Some(agent));
        }
        let ready = cluster.wait_nodes_ready();
        for (i, node) in NODES.iter().enumerate() {
            eprintln!(
                "{node}: agent start to node Ready {:?}",
                ready[i] - started[i]
            );
        }
        cluster
    }

    fn start_agent(&self, i: usize, backend: Backend) -> Agent {
        Agent::start(
            Path::new(ORCA),
            &self.machines[i],
            &self.server.url,
            &self.server.token_file(),
            &self.dirs.path().join(NODES[i]),
            backend,
            &["--cluster-cidr", CLUSTER_CIDR],
        )
    }

    fn kubectl(&self) -> Kubectl {
        self.server.kubectl()
    }

    fn logs(&self) -> String {
        let mut out = self.server.process.log_tail(20);
        for a in self.agents.iter().flatten() {
            out.push('\n');
            out.push_str(&a.process.log_tail(20));
        }
        out
    }

    /// Waits until every node is Ready; returns when each was first seen so.
    fn wait_nodes_ready(&self) -> Vec<Instant> {
        let kubectl = self.kubectl();
        let mut ready: Vec<Option<Instant>> = vec![None; NODES.len()];
        wait_until(
            "every node is Ready",
            WAIT,
            || {
                for (n, seen) in NODES.iter().zip(ready.iter_mut()) {
                    if seen.is_none()
                        && kubectl.jsonpath(
                            &["node", n],
                            r#"{.status.conditions[?(@.type=="Ready")].status}"#,
                        ) == "True"
                    {
                        *seen = Some(Instant::now());
                    }
                }
                ready.iter().all(Option::is_some)
            },
            || self.logs(),
        );
        ready.into_iter().flatten().collect()
    }

    /// Waits until `machine`'s routes satisfy `check`.
    fn wait_routes(&self, machine: usize, what: &str, check: impl Fn(&str) -> bool) {
        let m = &self.machines[machine];
        wait_until(
            &format!("{}: {what}", m.name),
            WAIT,
            || check(&m.routes()),
            || format!("routes of {}:\n{}\n{}", m.name, m.routes(), self.logs()),
        );
    }

    fn pod_cidr(&self, node: &str) -> String {
        self.kubectl().jsonpath(&["node", node], "{.spec.podCIDR}")
    }

    /// `kubectl exec POD -- ARGS`: (success, stdout + stderr).
    fn exec(&self, pod: &str, args: &[&str]) -> (bool, String) {
        let mut all = vec!["exec", pod, "--"];
        all.extend_from_slice(args);
        let out = self.kubectl().run(&all);
        (out.success, format!("{}{}", out.stdout, out.stderr))
    }
}

/// What `nc` reads from the server pod at ip:port: the pod's hostname.
fn tcp_from_pod(c: &Cluster, pod: &str, ip: &str, port: &str) -> String {
    let (ok, out) = c.exec(pod, &["nc", "-w", "5", ip, port]);
    assert!(ok, "{pod} -> {ip}:{port}: {out}\n{}", c.logs());
    out.trim().to_string()
}

fn ping_from_pod(c: &Cluster, pod: &str, ip: &str) {
    let (ok, out) = c.exec(pod, &["ping", "-c", "1", "-W", "5", ip]);
    assert!(ok, "{pod} cannot ping {ip}: {out}\n{}", c.logs());
}

/// Prints the round trip from `srv-mn1` to a pod on its own node and to
/// one on another node (BENCHMARKS.md), as busybox ping sums it up.
fn print_round_trips(c: &Cluster, backend: &str, same_node_ip: &str, other_node_ip: &str) {
    for (what, ip) in [("same node", same_node_ip), ("across nodes", other_node_ip)] {
        let (ok, out) = c.exec("srv-mn1", &["ping", "-q", "-c", "20", "-i", "0.1", ip]);
        assert!(ok, "{out}");
        let summary = out.lines().last().unwrap_or_default();
        eprintln!("{backend}: pod to pod {what}: {summary}");
    }
}

/// Bytes a throughput run sends: 200 MiB.
const THROUGHPUT_MIB: u32 = 200;

/// Prints the TCP throughput to `peer-mn1` (at `sink_ip`) from a pod on its
/// node and from one on another node (BENCHMARKS.md): `dd` from /dev/zero
/// piped into `nc`, timed inside the sending pod until the sink has counted
/// every byte and closed the connection.
fn print_throughputs(c: &Cluster, backend: &str, sink_ip: &str) {
    for (what, pod) in [("same node", "srv-mn1"), ("across nodes", "srv-mn2")] {
        let send =
            format!("dd if=/dev/zero bs=1M count={THROUGHPUT_MIB} 2>/dev/null | nc {sink_ip} 5001");
        let (ok, out) = c.exec(pod, &["time", "sh", "-c", &send]);
        let bytes = u64::from(THROUGHPUT_MIB) << 20;
        assert!(
            ok && out.lines().next() == Some(bytes.to_string().as_str()),
            "{pod} -> peer-mn1: {out}"
        );
        let seconds = busybox_real_seconds(&out).unwrap_or_else(|| panic!("{out}"));
        eprintln!(
            "{backend}: pod to pod TCP {what}: {THROUGHPUT_MIB} MiB in {seconds:.2} s, {:.0} MiB/s",
            f64::from(THROUGHPUT_MIB) / seconds
        );
    }
}

/// The `real` time busybox `time` prints (`real\t0m 1.27s`), in seconds.
fn busybox_real_seconds(out: &str) -> Option<f64> {
    let rest = out.lines().find_map(|l| l.strip_prefix("real"))?.trim();
    let (minutes, seconds) = rest.split_once('m')?;
    Some(
        minutes.trim().parse::<f64>().ok()? * 60.0
            + seconds.trim().trim_end_matches('s').parse::<f64>().ok()?,
    )
}

/// The checks both backends must pass.
fn pods_reach_across_nodes(c: &Cluster, pod_ips: &[String]) {
    // Pod to pod, every ordered pair of nodes, over TCP; ping both ways.
    for (i, from) in NODES.iter().enumerate() {
        for (j, ip) in pod_ips.iter().enumerate() {
            if i != j {
                let answer = tcp_from_pod(c, &format!("srv-{from}"), ip, "8080");
                assert_eq!(answer, format!("srv-{}", NODES[j]));
            }
        }
    }
    ping_from_pod(c, "srv-mn1", &pod_ips[1]);
    ping_from_pod(c, "srv-mn2", &pod_ips[0]);
    // A node's host to a pod on another node.
    let (ok, out) = c.machines[0].run("busybox", &["nc", "-w", "5", &pod_ips[2], "8080"]);
    assert!(ok && out.trim() == "srv-mn3", "mn1 -> srv-mn3: {out}");
    // A pod to another node's address: the host-network pod on mn2.
    let mn2 = c.machines[1].ip.to_string();
    assert!(!tcp_from_pod(c, "srv-mn1", &mn2, "8081").is_empty());
    ping_from_pod(c, "srv-mn3", &mn2);
    // A pod to a machine outside the cluster, which has no route back to
    // pods: it answers because the node masquerades pod traffic leaving
    // the cluster CIDR.
    let routes = c.outside.routes();
    assert!(!routes.contains("10.244."), "{routes}");
    let outside = c.outside.ip.to_string();
    for pod in ["srv-mn1", "srv-mn2"] {
        assert_eq!(tcp_from_pod(c, pod, &outside, "9000"), "outside");
    }
}

#[test]
fn pod_network_spans_nodes_with_vxlan_and_host_gw() {
    let mut c = Cluster::start(Backend::Vxlan);
    let kubectl = c.kubectl();
    let cidrs: Vec<String> = NODES.iter().map(|n| c.pod_cidr(n)).collect();
    for (i, cidr) in cidrs.iter().enumerate() {
        assert!(cidr.starts_with("10.244."), "{}: {cidr}", NODES[i]);
    }

    // VXLAN: a route per remote pod CIDR through orca.1, MTU of eth0 less 50.
    for i in 0..NODES.len() {
        let remote: Vec<String> = (0..NODES.len())
            .filter(|j| *j != i)
            .map(|j| {
                let network = cidrs[j].trim_end_matches("/24");
                format!("{} via {network} dev orca.1 proto 79 onlink", cidrs[j])
            })
            .collect();
        c.wait_routes(i, "routes to the other nodes through orca.1", |routes| {
            remote.iter().all(|r| routes.contains(r.as_str()))
        });
    }
    let (_, device) = c.machines[0].run("ip", &["-d", "link", "show", "orca.1"]);
    assert!(
        device.contains("mtu 1450")
            && device.contains("vxlan id 1")
            && device.contains("dstport 8472"),
        "{device}"
    );

    let mut manifests = String::new();
    for n in NODES {
        manifests.push_str(&busybox_pod(
            &format!("srv-{n}"),
            n,
            "exec nc -ll -p 8080 -e hostname",
            false,
        ));
        manifests.push_str("---\n");
    }
    // Also the sink of the throughput runs: counts what it is sent.
    manifests.push_str(&busybox_pod(
        "peer-mn1",
        "mn1",
        "exec nc -ll -p 5001 -e wc -c",
        false,
    ));
    manifests.push_str("---\n");
    manifests.push_str(&busybox_pod(
        "hostsrv",
        "mn2",
        "exec nc -ll -p 8081 -e hostname",
        true,
    ));
    kubectl.apply(&manifests);
    kubectl.wait_pods_ready(&["srv-mn1", "srv-mn2", "srv-mn3", "hostsrv", "peer-mn1"]);
    let peer_ip = kubectl.pod_ip("peer-mn1");
    let pod_ips: Vec<String> = NODES
        .iter()
        .map(|n| kubectl.pod_ip(&format!("srv-{n}")))
        .collect();
    pods_reach_across_nodes(&c, &pod_ips);
    print_round_trips(&c, "vxlan", &peer_ip, &pod_ips[1]);
    print_throughputs(&c, "vxlan", &peer_ip);

    // A graceful stop removes the node's device and routes; its pods keep
    // running and are adopted again by the next agent, here with host-gw.
    for (agent, machine) in c.agents.iter_mut().zip(&c.machines) {
        agent
            .as_mut()
            .unwrap()
            .process
            .terminate(Duration::from_secs(20));
        let routes = machine.routes();
        assert!(!routes.contains("proto 79"), "{}: {routes}", machine.name);
        let (exists, _) = machine.run("ip", &["link", "show", "orca.1"]);
        assert!(!exists, "orca.1 outlived the agent of {}", machine.name);
    }
    for i in 0..NODES.len() {
        c.agents[i] = Some(c.start_agent(i, Backend::HostGw));
    }
    c.wait_nodes_ready();
    for i in 0..NODES.len() {
        let remote: Vec<String> = (0..NODES.len())
            .filter(|j| *j != i)
            .map(|j| format!("{} via {} dev eth0 proto 79", cidrs[j], c.machines[j].ip))
            .collect();
        c.wait_routes(i, "host-gw routes to the other nodes", |routes| {
            remote.iter().all(|r| routes.contains(r.as_str())) && !routes.contains("orca.1")
        });
    }
    pods_reach_across_nodes(&c, &pod_ips);
    print_round_trips(&c, "host-gw", &peer_ip, &pod_ips[1]);
    print_throughputs(&c, "host-gw", &peer_ip);

    // A deleted Node comes back (its agent registers it again, with the
    // pod CIDR it uses), and so do the routes to it.
    let uid = kubectl.jsonpath(&["node", "mn2"], "{.metadata.uid}");
    kubectl.ok(&["delete", "node", "mn2", "--wait=false"]);
    wait_until(
        "node mn2 is registered again",
        WAIT,
        || {
            let again = kubectl.jsonpath(&["node", "mn2"], "{.metadata.uid}");
            !again.is_empty() && again != uid
        },
        || c.logs(),
    );
    assert_eq!(c.pod_cidr("mn2"), cidrs[1]);
    c.wait_nodes_ready();
    let to_mn2 = format!("{} via {} dev eth0 proto 79", cidrs[1], c.machines[1].ip);
    c.wait_routes(0, "the route to mn2 again", |routes| {
        routes.contains(&to_mn2)
    });
    assert_eq!(tcp_from_pod(&c, "srv-mn1", &pod_ips[1], "8080"), "srv-mn2");

    // A node that leaves: its routes go from the others.
    kubectl.ok(&["delete", "pod", "srv-mn3", "--grace-period=1"]);
    c.agents[2]
        .take()
        .unwrap()
        .process
        .terminate(Duration::from_secs(20));
    kubectl.ok(&["delete", "node", "mn3"]);
    for i in 0..2 {
        let cidr = cidrs[2].clone();
        c.wait_routes(i, "no route to mn3's pods", |routes| {
            !routes.contains(&cidr)
        });
    }
    assert_eq!(tcp_from_pod(&c, "srv-mn2", &pod_ips[0], "8080"), "srv-mn1");
}
