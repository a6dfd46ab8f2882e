//! A real `orca server` on a temporary data dir, in a network namespace of
//! its own (a machine: its pods, bridge, service proxy rules and cluster
//! DNS address stay there), and the real kubectl run in that namespace.
//!
//! The node namespace is joined by a veth pair to an "outside" namespace
//! (node 10.251.0.1/24, outside 10.251.0.2, the node's default route), so
//! the node has an address of its own and a machine beside it. The test
//! registry, on the host's 127.0.0.1, is relayed to the node's 127.0.0.1 on
//! the same port. Both namespaces go when the `Cluster` drops.

#![allow(dead_code)] // each test binary uses a different part of this harness

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The node's address, on its link to the outside machine.
pub const NODE_IP: Ipv4Addr = Ipv4Addr::new(10, 251, 0, 1);
/// The machine beside the node (also the node's only resolver).
pub const OUTSIDE_IP: Ipv4Addr = Ipv4Addr::new(10, 251, 0, 2);

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
    pub node_name: String,
    /// The machine the server runs on.
    pub node: Netns,
    /// Another machine on the node's network.
    pub outside: Netns,
    server: Child,
    relay: Relay,
}

pub struct KubectlOutput {
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Debug for KubectlOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\nstdout:\n{}\nstderr:\n{}",
            self.status.code(),
            self.stdout,
            self.stderr
        )
    }
}

pub fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the suite with scripts/test.sh, which starts the test registry and builds the test images")
    })
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn run(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd).args(args).output().expect("run command");
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A named network namespace, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    fn create(role: &str) -> Netns {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "orcae2e-{}-{}-{role}",
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

    /// A command run in this namespace (`nsenter --net`, which keeps the
    /// host's mounts and cgroups).
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new("nsenter");
        command.arg(format!("--net={}", self.path())).arg(program);
        command
    }

    /// Runs `f` on a thread inside this namespace.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = self.path();
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).expect("open netns");
            nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            f()
        })
        .join()
        .expect("thread in netns panicked")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Relays connections to 127.0.0.1:`port` in a namespace to the host's
/// 127.0.0.1:`port` (the test registry), until dropped.
struct Relay {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Relay {
    fn start(ns: &Netns, port: u16) -> Relay {
        // A socket stays in the namespace it was made in, whichever thread
        // uses it: bound there, accepted and forwarded from here.
        let listener = ns.run(move || TcpListener::bind((Ipv4Addr::LOCALHOST, port)));
        let listener = listener.expect("relay the test registry into the node");
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((inbound, _)) => {
                        std::thread::spawn(move || relay_connection(inbound, port));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Relay {
            stop,
            thread: Some(thread),
        }
    }
}

fn relay_connection(inbound: TcpStream, port: u16) {
    let _ = inbound.set_nonblocking(false);
    let Ok(outbound) = TcpStream::connect((Ipv4Addr::LOCALHOST, port)) else {
        return;
    };
    let (Ok(mut in_read), Ok(mut out_write)) = (inbound.try_clone(), outbound.try_clone()) else {
        return;
    };
    let upstream = std::thread::spawn(move || {
        let _ = std::io::copy(&mut in_read, &mut out_write);
        let _ = out_write.shutdown(std::net::Shutdown::Write);
    });
    let (mut out_read, mut in_write) = (outbound, inbound);
    let _ = std::io::copy(&mut out_read, &mut in_write);
    let _ = in_write.shutdown(std::net::Shutdown::Write);
    let _ = upstream.join();
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Cluster {
    /// Starts `orca server` with a node agent, pulling `docker.io` images
    /// from the local test registry (a k3s-style mirror in registries.yaml).
    pub fn start() -> Cluster {
        Self::start_with(&[])
    }

    pub fn start_with(extra_args: &[&str]) -> Cluster {
        let registry = required_env("ORCA_TEST_REGISTRY");
        let registry_port: u16 = registry
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .expect("ORCA_TEST_REGISTRY is HOST:PORT");
        let node = Netns::create("node");
        let outside = Netns::create("out");
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
            &outside.name,
        ]);
        node.ip(&["addr", "add", &format!("{NODE_IP}/24"), "dev", "ext0"]);
        node.ip(&["link", "set", "ext0", "up"]);
        node.ip(&["route", "add", "default", "via", &OUTSIDE_IP.to_string()]);
        outside.ip(&["addr", "add", &format!("{OUTSIDE_IP}/24"), "dev", "eth0"]);
        outside.ip(&["link", "set", "eth0", "up"]);
        let relay = Relay::start(&node, registry_port);

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("registries.yaml"),
            format!("mirrors:\n  docker.io:\n    endpoint:\n      - \"http://{registry}\"\n"),
        )
        .unwrap();
        // The node's resolver is the machine beside it (where nothing
        // answers): names outside the cluster fail there, inside this host.
        let resolv_conf = dir.path().join("node-resolv.conf");
        std::fs::write(&resolv_conf, format!("nameserver {OUTSIDE_IP}\n")).unwrap();
        let node_name = format!("node-{}", std::process::id());
        let api_port = free_port().to_string();
        let agent_port = free_port().to_string();
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let server = node
            .command(env!("CARGO_BIN_EXE_orca"))
            .args(["server", "--data-dir"])
            .arg(dir.path())
            .args([
                "--https-port",
                &api_port,
                "--node-ip",
                &NODE_IP.to_string(),
                "--node-name",
                &node_name,
            ])
            .args(["--agent-port", &agent_port])
            .args(["--cluster-cidr", "10.252.0.0/16", "--resolv-conf"])
            .arg(&resolv_conf)
            .args(extra_args)
            .env("RUST_LOG", "info")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting orca server");
        let kubeconfig = dir.path().join("kubeconfig");
        let cluster = Cluster {
            dir,
            kubeconfig,
            node_name,
            node,
            outside,
            server,
            relay,
        };
        cluster.wait_until("the API server answers", Duration::from_secs(60), || {
            cluster.kubeconfig.exists()
                && cluster
                    .kubectl(&["get", "--raw", "/readyz"])
                    .status
                    .success()
        });
        if !extra_args.contains(&"--disable-agent") {
            // `kubectl wait` fails at once on a node not registered yet.
            let node = format!("node/{}", cluster.node_name);
            cluster.wait_until("the node registers", Duration::from_secs(60), || {
                cluster.kubectl(&["get", &node]).status.success()
            });
            cluster.kubectl_ok(&[
                "wait",
                "--for=condition=Ready",
                &format!("node/{}", cluster.node_name),
                "--timeout=60s",
            ]);
        }
        cluster
    }

    /// Runs kubectl on the node.
    pub fn kubectl(&self, args: &[&str]) -> KubectlOutput {
        let out: Output = self
            .node
            .command("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .output()
            .expect("running kubectl");
        KubectlOutput {
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs kubectl on the node with extra environment variables, feeding
    /// it `stdin`.
    pub fn kubectl_env(&self, env: &[(&str, &str)], args: &[&str], stdin: &str) -> KubectlOutput {
        let mut child = self
            .kubectl_command(env, args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running kubectl");
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin.as_bytes()).unwrap();
        drop(input);
        let out = child.wait_with_output().unwrap();
        KubectlOutput {
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// kubectl on the node, with this cluster's kubeconfig and extra
    /// environment.
    pub fn kubectl_command(&self, env: &[(&str, &str)], args: &[&str]) -> Command {
        let mut cmd = self.node.command("kubectl");
        cmd.arg("--kubeconfig").arg(&self.kubeconfig).args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs kubectl and returns its stdout, failing the test (with the
    /// server's log tail) when it fails.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {out:?}\n{}",
            self.log_tail()
        );
        out.stdout
    }

    /// Runs kubectl under a pseudo-terminal (util-linux `script`), typing
    /// `input`; returns what the terminal showed and kubectl's exit code.
    pub fn kubectl_in_terminal(&self, args: &[&str], input: &str) -> (String, i32) {
        let command = format!(
            "nsenter --net={} kubectl --kubeconfig {} {}",
            self.node.path(),
            self.kubeconfig.display(),
            args.iter()
                .map(|a| format!("'{a}'"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        let mut child = Command::new("script")
            .args(["-qefc", &command, "/dev/null"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running script(1)");
        let mut stdin = child.stdin.take().unwrap();
        // Let the session open before typing, as a person would.
        std::thread::sleep(Duration::from_secs(2));
        stdin.write_all(input.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        drop(stdin);
        let shown = String::from_utf8_lossy(&out.stdout).into_owned();
        (shown, out.status.code().unwrap_or(-1))
    }

    pub fn wait_until(&self, what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
        let start = Instant::now();
        while !done() {
            assert!(
                start.elapsed() < timeout,
                "timed out waiting until {what}\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        format!(
            "--- server log (tail) ---\n{}",
            lines[lines.len().saturating_sub(40)..].join("\n")
        )
    }

    /// A plain HTTP/1.1 GET from the node, returning the whole response.
    pub fn http_get(&self, addr: &str, path: &str) -> String {
        let (addr, path) = (addr.to_string(), path.to_string());
        self.node.run(move || http_get(&addr, &path))
    }

    /// Removes the pods (their containers, IPs and mounts go with them:
    /// pods outlive an agent restart by design), then stops the server
    /// with SIGTERM; returns whether it exited of itself.
    pub fn stop(&mut self) -> bool {
        // Workloads first: their controllers would replace deleted pods
        // (a StatefulSet's web-0 came back and outlived the test).
        let _ = self.kubectl(&[
            "delete",
            "deployments,replicasets,statefulsets,daemonsets,jobs,cronjobs",
            "--all",
            "--all-namespaces",
            "--cascade=orphan",
            "--timeout=60s",
        ]);
        let _ = self.kubectl(&[
            "delete",
            "pods",
            "--all",
            "--all-namespaces",
            "--grace-period=1",
            "--timeout=60s",
        ]);
        if let Ok(Some(status)) = self.server.try_wait() {
            return status.success();
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.server.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.server.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.server.kill();
        let _ = self.server.wait();
        false
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
        // The namespaces go next (declared after `dir`'s users): with them
        // the bridge, veths, nftables table and the DNS address.
    }
}

/// A plain HTTP/1.1 GET, returning the whole response. A container counts as
/// ready once it runs (no readiness probe), which can be a moment before it
/// listens, so refused connections are retried for a while.
pub fn http_get(addr: &str, path: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    let socket: SocketAddr = addr.parse().expect("IP:PORT");
    let mut stream = loop {
        match TcpStream::connect_timeout(&socket, Duration::from_secs(5)) {
            Ok(stream) => break stream,
            Err(e) if Instant::now() < deadline => {
                eprintln!("connecting to {addr}: {e}; retrying");
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("connecting to {addr}: {e}"),
        }
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}
