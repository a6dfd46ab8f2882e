//! Real `orca server` and `orca agent` processes for multi-node tests: the
//! servers on the host (listening on the LAN's host address too), each agent
//! on a [`Machine`] of its own with its own data dir, and kubectl against
//! any server.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::lan::Machine;
use crate::process::{free_port, wait_until, Process};

/// How long a test waits for a cluster to get somewhere (2 shared cores).
pub const WAIT: Duration = Duration::from_secs(90);

pub struct KubectlOutput {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Debug for KubectlOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "success {}\nstdout:\n{}\nstderr:\n{}",
            self.success, self.stdout, self.stderr
        )
    }
}

/// The real kubectl with one kubeconfig.
#[derive(Clone)]
pub struct Kubectl {
    pub kubeconfig: PathBuf,
}

impl Kubectl {
    pub fn run(&self, args: &[&str]) -> KubectlOutput {
        self.run_with_input(args, None)
    }

    pub fn run_with_input(&self, args: &[&str], input: Option<&str>) -> KubectlOutput {
        use std::io::Write;
        let mut child = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running kubectl");
        let mut stdin = child.stdin.take().unwrap();
        if let Some(input) = input {
            stdin.write_all(input.as_bytes()).unwrap();
        }
        drop(stdin);
        let out = child.wait_with_output().unwrap();
        KubectlOutput {
            success: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs kubectl and returns its stdout; panics (with `context`) when it fails.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.success, "kubectl {args:?} failed: {out:?}");
        out.stdout
    }

    /// `kubectl apply -f -` of `manifest`.
    pub fn apply(&self, manifest: &str) {
        let out = self.run_with_input(&["apply", "-f", "-"], Some(manifest));
        assert!(out.success, "kubectl apply failed: {out:?}\n{manifest}");
    }

    /// `kubectl get ... -o jsonpath=TEMPLATE`, empty on failure.
    pub fn jsonpath(&self, what: &[&str], template: &str) -> String {
        let mut args = vec!["get"];
        args.extend_from_slice(what);
        let output = format!("jsonpath={template}");
        args.extend(["-o", &output]);
        let out = self.run(&args);
        if out.success {
            out.stdout
        } else {
            String::new()
        }
    }

    /// Waits until every named pod is Ready.
    pub fn wait_pods_ready(&self, pods: &[&str]) {
        let names: Vec<String> = pods.iter().map(|p| format!("pod/{p}")).collect();
        let mut args = vec!["wait", "--for=condition=Ready", "--timeout=120s"];
        args.extend(names.iter().map(String::as_str));
        self.ok(&args);
    }

    /// A pod's IP once it has one.
    pub fn pod_ip(&self, pod: &str) -> String {
        let mut ip = String::new();
        wait_until(
            &format!("pod {pod} has an IP"),
            WAIT,
            || {
                ip = self.jsonpath(&["pod", pod], "{.status.podIP}");
                !ip.is_empty()
            },
            String::new,
        );
        ip
    }
}

/// An `orca server` on the host.
pub struct Server {
    // Before `dir`: the process stops before its data dir goes.
    pub process: Process,
    pub port: u16,
    /// `https://ADDRESS:PORT` agents join at.
    pub url: String,
    pub dir: tempfile::TempDir,
}

impl Server {
    /// Starts `orca server --disable-agent` (plus `args`) listening on
    /// 127.0.0.1 and on `advertise` (the LAN's host address) at a free port,
    /// and waits until it is ready.
    pub fn start(orca: &Path, advertise: std::net::Ipv4Addr, args: &[&str]) -> Server {
        let dir = tempfile::Builder::new()
            .prefix("orca-server-")
            .tempdir()
            .unwrap();
        Server::start_in(orca, dir, advertise, args)
    }

    /// As [`Server::start`], with a data dir the caller prepared.
    pub fn start_in(
        orca: &Path,
        dir: tempfile::TempDir,
        advertise: std::net::Ipv4Addr,
        args: &[&str],
    ) -> Server {
        let port = free_port();
        let process = Process::spawn(
            Command::new(orca)
                .args(["server", "--disable-agent", "--data-dir"])
                .arg(dir.path())
                .args(["--https-port", &port.to_string()])
                .args(["--advertise-address", &advertise.to_string()])
                .args(args),
            &dir.path().join("server.log"),
        );
        let server = Server {
            process,
            port,
            url: format!("https://{advertise}:{port}"),
            dir,
        };
        server.wait_ready(WAIT);
        server
    }

    pub fn wait_ready(&self, limit: Duration) {
        let kubectl = self.kubectl();
        wait_until(
            "the API server is ready",
            limit,
            || kubectl.kubeconfig.exists() && kubectl.run(&["get", "--raw", "/readyz"]).success,
            || self.process.log_tail(30),
        );
    }

    pub fn kubectl(&self) -> Kubectl {
        Kubectl {
            kubeconfig: self.dir.path().join("kubeconfig"),
        }
    }

    pub fn token_file(&self) -> PathBuf {
        self.dir.path().join("token")
    }
}

/// The overlay backend an agent runs (`--flannel-backend`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Vxlan,
    HostGw,
}

impl Backend {
    pub fn flag(self) -> &'static str {
        match self {
            Backend::Vxlan => "vxlan",
            Backend::HostGw => "host-gw",
        }
    }
}

/// An `orca agent` on a [`Machine`], named as the machine.
pub struct Agent {
    pub process: Process,
    pub data_dir: PathBuf,
}

impl Agent {
    /// Starts `orca agent` in `machine`'s network namespace joining
    /// `server_url` with `token_file`, its data in `data_dir` (kept across
    /// restarts). The test images in `ORCA_TEST_IMAGES` are dropped in its
    /// image directory, as the agent cannot reach the host's test registry:
    /// pods use them with `imagePullPolicy: IfNotPresent`. `args` go last
    /// (e.g. the server's `--cluster-cidr`).
    pub fn start(
        orca: &Path,
        machine: &Machine,
        server_url: &str,
        token_file: &Path,
        data_dir: &Path,
        backend: Backend,
        args: &[&str],
    ) -> Agent {
        let images = data_dir.join("agent/images");
        std::fs::create_dir_all(&images).unwrap();
        if let Ok(dir) = std::env::var("ORCA_TEST_IMAGES") {
            let target = images.join("busybox.docker.tar");
            if !target.exists() {
                let source = Path::new(&dir).join("busybox.docker.tar");
                std::fs::copy(&source, &target)
                    .unwrap_or_else(|e| panic!("copying {}: {e}", source.display()));
            }
        }
        let mut command = machine.command(&orca.display().to_string());
        command
            .args(["agent", "--server", server_url, "--token-file"])
            .arg(token_file)
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--node-name", &machine.name])
            .args(["--node-ip", &machine.ip.to_string()])
            .args(["--flannel-backend", backend.flag()])
            .args(args);
        let process = Process::spawn(&mut command, &data_dir.join("agent.log"));
        Agent {
            process,
            data_dir: data_dir.to_path_buf(),
        }
    }
}

/// A pod manifest: busybox running `command` (a shell line) on `node`.
pub fn busybox_pod(name: &str, node: &str, command: &str, host_network: bool) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  nodeName: {node}
  hostNetwork: {host_network}
  terminationGracePeriodSeconds: 1
  automountServiceAccountToken: false
  containers:
  - name: main
    image: busybox
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", {command:?}]
"#
    )
}
