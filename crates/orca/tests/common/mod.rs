//! A real `orca server` on a temporary data dir, and the real kubectl.

#![allow(dead_code)] // each test binary uses a different part of this harness

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The test node's bridge, apart from any other Orca on this machine.
const BRIDGE: &str = "orcae2e";

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
    pub node_name: String,
    server: Child,
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

impl Cluster {
    /// Starts `orca server` with a node agent, pulling `docker.io` images
    /// from the local test registry (a k3s-style mirror in registries.yaml).
    pub fn start() -> Cluster {
        Self::start_with(&[])
    }

    pub fn start_with(extra_args: &[&str]) -> Cluster {
        let registry = required_env("ORCA_TEST_REGISTRY");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("registries.yaml"),
            format!("mirrors:\n  docker.io:\n    endpoint:\n      - \"http://{registry}\"\n"),
        )
        .unwrap();
        let node_name = format!("node-{}", std::process::id());
        let api_port = free_port().to_string();
        let agent_port = free_port().to_string();
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let server = Command::new(env!("CARGO_BIN_EXE_orca"))
            .args(["server", "--data-dir"])
            .arg(dir.path())
            .args([
                "--https-port",
                &api_port,
                "--node-ip",
                "127.0.0.1",
                "--node-name",
                &node_name,
            ])
            .args(["--agent-port", &agent_port])
            .args(["--pod-bridge", BRIDGE, "--cluster-cidr", "10.252.0.0/16"])
            .args(extra_args)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting orca server");
        let kubeconfig = dir.path().join("kubeconfig");
        let cluster = Cluster {
            dir,
            kubeconfig,
            node_name,
            server,
        };
        cluster.wait_until("the API server answers", Duration::from_secs(60), || {
            cluster.kubeconfig.exists()
                && cluster
                    .kubectl(&["get", "--raw", "/readyz"])
                    .status
                    .success()
        });
        if !extra_args.contains(&"--disable-agent") {
            cluster.kubectl_ok(&[
                "wait",
                "--for=condition=Ready",
                &format!("node/{}", cluster.node_name),
                "--timeout=60s",
            ]);
        }
        cluster
    }

    pub fn kubectl(&self, args: &[&str]) -> KubectlOutput {
        let out: Output = Command::new("kubectl")
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

    /// Runs kubectl with extra environment variables, feeding it `stdin`.
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

    /// kubectl with this cluster's kubeconfig and extra environment.
    pub fn kubectl_command(&self, env: &[(&str, &str)], args: &[&str]) -> Command {
        let mut cmd = Command::new("kubectl");
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
            "kubectl --kubeconfig {} {}",
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
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Pods outlive an agent restart by design, so remove them before
        // stopping the server: their containers, IPs and mounts go with them.
        let _ = self.kubectl(&[
            "delete",
            "pods",
            "--all",
            "--all-namespaces",
            "--grace-period=1",
            "--timeout=60s",
        ]);
        let _ = nix_kill(self.server.id());
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline && !matches!(self.server.try_wait(), Ok(Some(_))) {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.server.kill();
        let _ = self.server.wait();
        // A node keeps its bridge across restarts; this test node is gone for good.
        let _ = Command::new("ip").args(["link", "delete", BRIDGE]).status();
    }
}

fn nix_kill(pid: u32) -> std::io::Result<()> {
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other("kill failed"))
    }
}

/// A plain HTTP/1.1 GET, returning the whole response. A container counts as
/// ready once it runs (no readiness probe), which can be a moment before it
/// listens, so refused connections are retried for a while.
pub fn http_get(addr: &str, path: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut stream = loop {
        match TcpStream::connect(addr) {
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
