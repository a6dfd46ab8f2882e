//! A node with pods, built from network namespaces: the node holds a bridge
//! (10.243.1.1/24) with three pods on veths (as the runtime wires them,
//! hairpin mode on) and a link to an "outside" machine (node 10.243.128.1,
//! outside 10.243.128.2, also the node's default gateway). Each pod and the
//! outside machine answer TCP on 8080 with their name and the address they
//! saw the client come from. Everything is deleted when the `Cluster` drops.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

pub const NODE_IP: Ipv4Addr = Ipv4Addr::new(10, 243, 128, 1);
pub const OUTSIDE_IP: Ipv4Addr = Ipv4Addr::new(10, 243, 128, 2);
pub const BRIDGE_IP: Ipv4Addr = Ipv4Addr::new(10, 243, 1, 1);
pub const PORT: u16 = 8080;

/// Pods: name and address.
pub const PODS: [(&str, Ipv4Addr); 3] = [
    ("pod1", Ipv4Addr::new(10, 243, 1, 2)),
    ("pod2", Ipv4Addr::new(10, 243, 1, 3)),
    ("client", Ipv4Addr::new(10, 243, 1, 4)),
];

pub fn pod_ip(name: &str) -> Ipv4Addr {
    PODS.iter().find(|(n, _)| *n == name).expect("known pod").1
}

/// A named network namespace, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    fn create(role: &str) -> Netns {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "orcapx-{}-{}-{role}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        run("ip", &["netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    pub fn path(&self) -> String {
        format!("/var/run/netns/{}", self.name)
    }

    pub fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", &self.name];
        all.extend_from_slice(args);
        run("ip", &all);
    }

    fn sysctl(&self, key: &str, value: &str) {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        run(
            "nsenter",
            &[
                &format!("--net={}", self.path()),
                "sh",
                "-c",
                &format!("echo {value} > {path}"),
            ],
        );
    }

    /// Runs `f` on a thread inside this namespace.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        self.spawn(f).join().expect("thread in netns panicked")
    }

    pub fn spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> JoinHandle<T> {
        let path = self.path();
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).expect("open netns");
            nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            f()
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn run(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd).args(args).output().expect("run command");
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub struct Cluster {
    pub node: Netns,
    pub outside: Netns,
    pods: Vec<Netns>,
    stop: Arc<AtomicBool>,
    servers: Vec<JoinHandle<()>>,
}

impl Cluster {
    pub fn new() -> Cluster {
        let node = Netns::create("node");
        let outside = Netns::create("outside");
        let mut cluster = Cluster {
            node,
            outside,
            pods: Vec::new(),
            stop: Arc::new(AtomicBool::new(false)),
            servers: Vec::new(),
        };
        let node = &cluster.node;
        node.sysctl("net.ipv4.ip_forward", "1");
        node.ip(&["link", "add", "br0", "type", "bridge"]);
        node.ip(&["addr", "add", "10.243.1.1/24", "dev", "br0"]);
        node.ip(&["link", "set", "br0", "up"]);
        node.ip(&[
            "link",
            "add",
            "ext0",
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &cluster.outside.name,
        ]);
        node.ip(&["addr", "add", "10.243.128.1/24", "dev", "ext0"]);
        node.ip(&["link", "set", "ext0", "up"]);
        node.ip(&["route", "add", "default", "via", "10.243.128.2"]);
        cluster
            .outside
            .ip(&["addr", "add", "10.243.128.2/24", "dev", "eth0"]);
        cluster.outside.ip(&["link", "set", "eth0", "up"]);

        for (i, (name, ip)) in PODS.iter().enumerate() {
            let pod = Netns::create(name);
            let veth = format!("veth{i}");
            cluster.node.ip(&[
                "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &pod.name,
            ]);
            cluster
                .node
                .ip(&["link", "set", &veth, "master", "br0", "up"]);
            // A pod reaching itself through a Service comes back on its own port.
            cluster.node.ip(&[
                "link",
                "set",
                &veth,
                "type",
                "bridge_slave",
                "hairpin",
                "on",
            ]);
            pod.ip(&["addr", "add", &format!("{ip}/24"), "dev", "eth0"]);
            pod.ip(&["link", "set", "eth0", "up"]);
            pod.ip(&["route", "add", "default", "via", "10.243.1.1"]);
            cluster.pods.push(pod);
        }
        let mut servers: Vec<_> = cluster
            .pods
            .iter()
            .zip(PODS)
            .map(|(pod, (name, _))| cluster.serve(pod, name))
            .collect();
        servers.push(cluster.serve(&cluster.outside, "outside"));
        cluster.servers = servers;
        cluster
    }

    pub fn pod(&self, name: &str) -> &Netns {
        let i = PODS
            .iter()
            .position(|(n, _)| *n == name)
            .expect("known pod");
        &self.pods[i]
    }

    /// Answers each connection on :8080 with "NAME PEER-IP".
    fn serve(&self, ns: &Netns, name: &str) -> JoinHandle<()> {
        let (name, stop) = (name.to_string(), self.stop.clone());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let handle = ns.spawn(move || {
            let listener = TcpListener::bind(("0.0.0.0", PORT)).expect("bind");
            ready_tx.send(()).expect("ready");
            for conn in listener.incoming() {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                if let Ok(mut conn) = conn {
                    let peer = conn
                        .peer_addr()
                        .map(|p| p.ip().to_string())
                        .unwrap_or_default();
                    let _ = writeln!(conn, "{name} {peer}");
                }
            }
        });
        ready_rx.recv().expect("server started");
        handle
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake each server from its accept so it sees the flag.
        let namespaces = self.pods.iter().chain(std::iter::once(&self.outside));
        for (ns, server) in namespaces.zip(self.servers.drain(..)) {
            let _ = ns.run(|| TcpStream::connect((Ipv4Addr::LOCALHOST, PORT)).map(drop));
            let _ = server.join();
        }
    }
}

/// Connects from `ns` to `ip:port` and returns (who answered, the client
/// address it saw).
pub fn ask(ns: &Netns, ip: Ipv4Addr, port: u16) -> std::io::Result<(String, Ipv4Addr)> {
    ns.run(move || {
        let addr = SocketAddr::V4(SocketAddrV4::new(ip, port));
        let mut conn = TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
        conn.set_read_timeout(Some(Duration::from_secs(3)))?;
        let mut answer = String::new();
        conn.read_to_string(&mut answer)?;
        let (name, peer) = answer
            .trim()
            .split_once(' ')
            .ok_or_else(|| std::io::Error::other(format!("bad answer {answer:?}")))?;
        let peer = peer.parse().map_err(std::io::Error::other)?;
        Ok((name.to_string(), peer))
    })
}
