//! `orca virtual-nodes` against a real `orca server` running the control
//! plane only (`--disable-agent`: no real node, no bridge, no root needed),
//! checked with the real kubectl.

use crate::common;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Generous: tests run in parallel on a 2-core machine.
const WAIT: Duration = Duration::from_secs(90);

/// A process this test started, stopped by pid (SIGTERM, then SIGKILL).
struct Process {
    child: Child,
    log: std::path::PathBuf,
}

impl Process {
    fn spawn(command: &mut Command, log: &Path) -> Process {
        let file = std::fs::File::create(log).unwrap();
        let child = command
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("starting orca");
        Process {
            child,
            log: log.to_path_buf(),
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        format!(
            "--- {} (tail) ---\n{}",
            self.log.display(),
            lines[lines.len().saturating_sub(30)..].join("\n")
        )
    }

    /// SIGTERM, and the exit status once it has stopped.
    fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        self.child.wait().unwrap()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.terminate();
        }
    }
}

struct Server {
    // Declared before `dir` so the server stops before its data dir goes.
    process: Process,
    url: String,
    dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let port = common::free_port();
        let process = Process::spawn(
            Command::new(env!("CARGO_BIN_EXE_orca"))
                .args(["server", "--disable-agent", "--https-port"])
                .arg(port.to_string())
                .arg("--data-dir")
                .arg(dir.path()),
            &dir.path().join("server.log"),
        );
        let server = Server {
            process,
            url: format!("https://127.0.0.1:{port}"),
            dir,
        };
        server.wait_until("the API server answers", || {
            server.path("kubeconfig").exists()
                && server
                    .kubectl(&["get", "--raw", "/readyz"], None)
                    .status
                    .success()
        });
        server
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> Output {
        use std::io::Write;
        let mut child = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(self.path("kubeconfig"))
            .arg("--cache-dir")
            .arg(self.path("kubectl-cache"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running kubectl");
        let mut pipe = child.stdin.take().unwrap();
        if let Some(input) = stdin {
            pipe.write_all(input.as_bytes()).unwrap();
        }
        drop(pipe);
        child.wait_with_output().unwrap()
    }

    fn kubectl_ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.kubectl(args, stdin);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.process.log_tail()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn wait_until(&self, what: &str, mut done: impl FnMut() -> bool) {
        let start = Instant::now();
        while !done() {
            assert!(
                start.elapsed() < WAIT,
                "timed out waiting until {what}\n{}",
                self.process.log_tail()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn virtual_nodes(&self, args: &[&str], log: &str) -> Process {
        Process::spawn(
            Command::new(env!("CARGO_BIN_EXE_orca"))
                .arg("virtual-nodes")
                .args(args),
            &self.path(log),
        )
    }

    /// `name=ReadyStatus` of every node carrying `selector`, sorted.
    fn node_readiness(&self, selector: &str) -> Vec<String> {
        let out = self.kubectl_ok(
            &[
                "get",
                "nodes",
                "-l",
                selector,
                "-o",
                r#"jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}"#,
            ],
            None,
        );
        let mut nodes: Vec<String> = out.lines().map(str::to_string).collect();
        nodes.sort();
        nodes
    }

    fn pod_field(&self, pod: &str, path: &str) -> String {
        self.kubectl_ok(
            &["get", "pod", pod, "-o", &format!("jsonpath={{{path}}}")],
            None,
        )
    }

    /// Waits until the pod is Running and Ready; returns (node, pod IP).
    fn wait_running(&self, pod: &str, nodes: &Process) -> (String, String) {
        let out = self.kubectl(
            &[
                "wait",
                "--for=condition=Ready",
                &format!("pod/{pod}"),
                "--timeout=90s",
            ],
            None,
        );
        assert!(
            out.status.success(),
            "pod {pod} never became Ready: {}\n{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.process.log_tail(),
            nodes.log_tail()
        );
        assert_eq!(self.pod_field(pod, ".status.phase"), "Running");
        (
            self.pod_field(pod, ".spec.nodeName"),
            self.pod_field(pod, ".status.podIP"),
        )
    }

    /// Deletes the pod (kubectl waits for it to go) and checks it is gone.
    fn delete_pod(&self, pod: &str) {
        self.kubectl_ok(&["delete", "pod", pod, "--timeout=90s"], None);
        let out = self.kubectl(&["get", "pod", pod], None);
        assert!(!out.status.success(), "pod {pod} is still there");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("NotFound"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

const TOLERATING_POD: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: sim
spec:
  terminationGracePeriodSeconds: 1
  tolerations:
  - key: orca.dev/virtual-node
    operator: Exists
    effect: NoSchedule
  containers:
  - name: main
    image: busybox
    command: ["sleep", "3600"]
"#;

/// The node index in `vn-<i>`, whose pod range is 10.128.<i>.0/24.
fn pod_range_of(node: &str, prefix: &str) -> String {
    let index: u32 = node
        .strip_prefix(prefix)
        .and_then(|i| i.parse().ok())
        .unwrap_or_else(|| panic!("pod landed on {node}, not a {prefix}N node"));
    format!("10.128.{index}.")
}

#[test]
fn virtual_nodes_join_with_the_node_token_and_run_tolerating_pods() {
    let server = Server::start();
    let token = server.path("token");
    let mut nodes = server.virtual_nodes(
        &[
            "--count",
            "3",
            "--server",
            &server.url,
            "--token-file",
            token.to_str().unwrap(),
            "--name-prefix",
            "vn-",
        ],
        "virtual-nodes.log",
    );
    let expected = ["vn-0=True", "vn-1=True", "vn-2=True"];
    server.wait_until("3 virtual nodes are Ready", || {
        server.node_readiness("type=virtual") == expected
    });
    // They keep real workloads away unless those opt in.
    assert_eq!(
        server.kubectl_ok(
            &[
                "get",
                "node",
                "vn-0",
                "-o",
                "jsonpath={.spec.taints[*].key}"
            ],
            None
        ),
        "orca.dev/virtual-node"
    );

    server.kubectl_ok(&["apply", "-f", "-"], Some(TOLERATING_POD));
    let (node, ip) = server.wait_running("sim", &nodes);
    assert!(
        ip.starts_with(&pod_range_of(&node, "vn-")),
        "pod IP {ip} is not in {node}'s pod range"
    );
    assert_eq!(
        server.pod_field("sim", ".status.containerStatuses[0].ready"),
        "true"
    );
    server.delete_pod("sim");

    let status = nodes.terminate();
    assert!(
        status.success(),
        "orca virtual-nodes did not stop cleanly on SIGTERM: {status}\n{}",
        nodes.log_tail()
    );
}

#[test]
fn virtual_nodes_join_with_a_kubeconfig_and_can_be_untainted() {
    let server = Server::start();
    let kubeconfig = server.path("kubeconfig");
    let nodes = server.virtual_nodes(
        &[
            "--count",
            "1",
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
            "--name-prefix",
            "open-",
            "--pod-cidr-base",
            "10.129.0.0",
            "--register-with-taints",
            "",
            "--node-labels",
            "pool=open",
        ],
        "virtual-nodes.log",
    );
    server.wait_until("the virtual node is Ready", || {
        server.node_readiness("pool=open") == ["open-0=True"]
    });
    assert_eq!(
        server.kubectl_ok(
            &["get", "node", "open-0", "-o", "jsonpath={.spec.taints}"],
            None
        ),
        ""
    );
    // A pod with no toleration lands on it.
    server.kubectl_ok(
        &[
            "run",
            "plain",
            "--image=busybox",
            "--overrides",
            r#"{"spec":{"terminationGracePeriodSeconds":1}}"#,
        ],
        None,
    );
    let (node, ip) = server.wait_running("plain", &nodes);
    assert_eq!(node, "open-0");
    assert!(ip.starts_with("10.129.0."), "pod IP {ip}");
    server.delete_pod("plain");
}

#[test]
fn virtual_nodes_refuse_a_token_for_another_cluster() {
    let server = Server::start();
    let token = std::fs::read_to_string(server.path("token")).unwrap();
    let (_, secret) = token.trim().split_once("::").unwrap();
    let forged = server.path("forged-token");
    std::fs::write(&forged, format!("K10{}::{secret}", "0".repeat(64))).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_orca"))
        .args(["virtual-nodes", "--count", "1", "--server", &server.url])
        .arg("--token-file")
        .arg(&forged)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "joined with a forged token");
    assert!(
        stderr.contains("does not match the token's")
            && stderr.contains("wrong server or wrong token"),
        "{stderr}"
    );
    assert!(
        server.node_readiness("type=virtual").is_empty(),
        "a node registered anyway"
    );
}

/// A Deployment of 10,000 replicas over 1,000 virtual nodes reaches all
/// Ready. Minutes on 2 cores: run with `--ignored` (BENCHMARKS.md,
/// Workloads, has the figures from `orca-bench workloads`).
#[test]
#[ignore]
fn a_deployment_of_ten_thousand_replicas_on_a_thousand_virtual_nodes() {
    let server = Server::start();
    let kubeconfig = server.path("kubeconfig");
    let _nodes = server.virtual_nodes(
        &[
            "--count",
            "1000",
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
        ],
        "virtual-nodes.log",
    );
    server.wait_until("1000 virtual nodes", || {
        server
            .node_readiness("type=virtual")
            .iter()
            .filter(|n| n.ends_with("=True"))
            .count()
            == 1000
    });
    let manifest = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: big
spec:
  replicas: 10000
  selector:
    matchLabels:
      app: big
  template:
    metadata:
      labels:
        app: big
    spec:
      tolerations:
      - key: orca.dev/virtual-node
        operator: Exists
        effect: NoSchedule
      containers:
      - name: c
        image: busybox
"#;
    server.kubectl_ok(&["create", "-f", "-"], Some(manifest));
    let start = Instant::now();
    while server
        .kubectl_ok(
            &[
                "get",
                "deploy",
                "big",
                "-o",
                "jsonpath={.status.readyReplicas}",
            ],
            None,
        )
        .trim()
        != "10000"
    {
        assert!(
            start.elapsed() < Duration::from_secs(900),
            "not all Ready after 15 min\n{}",
            server.process.log_tail()
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    let pods = server.kubectl_ok(&["get", "pods", "-l", "app=big", "--no-headers"], None);
    assert_eq!(
        pods.lines().filter(|l| l.contains(" Running ")).count(),
        10000
    );
}

const AGENT_DAEMON_SET: &str = r#"apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: agent
spec:
  selector:
    matchLabels:
      app: agent
  template:
    metadata:
      labels:
        app: agent
    spec:
      tolerations:
      - key: orca.dev/virtual-node
        operator: Exists
        effect: NoSchedule
      containers:
      - name: main
        image: busybox
        command: ["sleep", "3600"]
"#;

/// `node=phase` of the DaemonSet's pods, sorted.
fn daemon_pods(server: &Server) -> Vec<String> {
    let out = server.kubectl_ok(
        &[
            "get",
            "pods",
            "-l",
            "app=agent",
            "-o",
            r#"jsonpath={range .items[*]}{.spec.nodeName}={.status.phase}{"\n"}{end}"#,
        ],
        None,
    );
    let mut pods: Vec<String> = out.lines().map(str::to_string).collect();
    pods.sort();
    pods
}

#[test]
fn a_daemon_set_covers_every_virtual_node_including_one_that_joins_later() {
    let server = Server::start();
    let token = server.path("token");
    let token = token.to_str().unwrap();
    let mut first = server.virtual_nodes(
        &[
            "--count",
            "2",
            "--server",
            &server.url,
            "--token-file",
            token,
            "--name-prefix",
            "vn-",
        ],
        "virtual-nodes.log",
    );
    server.wait_until("2 virtual nodes are Ready", || {
        server.node_readiness("type=virtual") == ["vn-0=True", "vn-1=True"]
    });
    server.kubectl_ok(&["apply", "-f", "-"], Some(AGENT_DAEMON_SET));
    server.wait_until("a running pod on each node", || {
        daemon_pods(&server) == ["vn-0=Running", "vn-1=Running"]
    });

    // Another fleet joins (its own pod range): its node gets a pod too.
    let mut later = server.virtual_nodes(
        &[
            "--count",
            "1",
            "--server",
            &server.url,
            "--token-file",
            token,
            "--name-prefix",
            "late-",
            "--pod-cidr-base",
            "10.129.0.0",
        ],
        "late-nodes.log",
    );
    server.wait_until("a running pod on the late node as well", || {
        daemon_pods(&server) == ["late-0=Running", "vn-0=Running", "vn-1=Running"]
    });
    server.wait_until("the status counts 3", || {
        server.kubectl_ok(
            &["get", "daemonset", "agent", "-o",
              "jsonpath={.status.desiredNumberScheduled} {.status.numberReady} {.status.updatedNumberScheduled}"],
            None,
        ) == "3 3 3"
    });
    server.kubectl_ok(&["delete", "daemonset", "agent", "--wait=false"], None);
    assert!(later.terminate().success());
    assert!(first.terminate().success());
}
