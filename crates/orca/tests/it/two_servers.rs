//! Two `orca server`s on one etcd (started by the test, on loopback): the
//! controllers run in one of them only (each pod is created once), and when
//! that server stops it releases their Lease, so the other carries on at
//! once. Control plane only (`--disable-agent`), checked with the real
//! kubectl.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::free_port;

const WAIT: Duration = Duration::from_secs(90);

/// A process this test started, stopped by pid.
struct Proc(Child);

impl Proc {
    fn terminate(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            self.terminate();
        }
    }
}

fn spawn(cmd: &mut Command, log: &Path) -> Proc {
    let f = std::fs::File::create(log).unwrap();
    Proc(
        cmd.stdout(f.try_clone().unwrap())
            .stderr(f)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}")),
    )
}

fn kubectl(kubeconfig: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .expect("running kubectl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < WAIT, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A server on `etcd`; the second joins the first's cluster with its token.
fn server(dir: &Path, etcd: &str, join_token: Option<&Path>) -> (Proc, PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_orca"));
    command
        .args(["server", "--disable-agent", "--datastore-endpoint", etcd])
        .args(["--https-port", &free_port().to_string()])
        .arg("--data-dir")
        .arg(dir);
    if let Some(token) = join_token {
        command.arg("--token-file").arg(token);
    }
    let proc = spawn(&mut command, &dir.join("server.log"));
    let kubeconfig = dir.join("kubeconfig");
    wait_until("the API server answers", || {
        kubeconfig.exists() && kubectl(&kubeconfig, &["get", "--raw", "/readyz"]).0
    });
    (proc, kubeconfig)
}

fn holder(kubeconfig: &Path) -> String {
    kubectl(
        kubeconfig,
        &[
            "get",
            "lease",
            "-n",
            "kube-system",
            "kube-controller-manager",
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ],
    )
    .1
}

fn pods(kubeconfig: &Path) -> usize {
    kubectl(kubeconfig, &["get", "pods", "-l", "app=web", "-o", "name"])
        .1
        .lines()
        .filter(|l| l.starts_with("pod/"))
        .count()
}

#[test]
fn two_servers_on_one_etcd_run_the_controllers_once() {
    let dir = tempfile::tempdir().unwrap();
    let (client, peer) = (free_port(), free_port());
    let etcd_url = format!("http://127.0.0.1:{client}");
    let _etcd = spawn(
        Command::new("etcd")
            .arg("--data-dir")
            .arg(dir.path().join("etcd"))
            .args(["--name", "two-servers"])
            .args([
                "--listen-client-urls",
                &etcd_url,
                "--advertise-client-urls",
                &etcd_url,
            ])
            .args([
                "--listen-peer-urls",
                &format!("http://127.0.0.1:{peer}"),
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{peer}"),
                "--initial-cluster",
                &format!("two-servers=http://127.0.0.1:{peer}"),
            ]),
        &dir.path().join("etcd.log"),
    );
    wait_until("etcd listens", || {
        std::net::TcpStream::connect(("127.0.0.1", client)).is_ok()
    });
    let (mut a, kc_a) = server(&dir.path().join("a"), &etcd_url, None);
    let (mut b, kc_b) = server(
        &dir.path().join("b"),
        &etcd_url,
        Some(&dir.path().join("a/token")),
    );
    wait_until("a controller leader", || !holder(&kc_a).is_empty());
    let leader = holder(&kc_a);

    let (ok, out) = kubectl(
        &kc_a,
        &[
            "create",
            "deployment",
            "web",
            "--image=nginx",
            "--replicas=3",
        ],
    );
    assert!(ok, "{out}");
    wait_until("3 pods", || pods(&kc_b) == 3);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(pods(&kc_b), 3, "a pod was created twice");
    let events = kubectl(
        &kc_b,
        &[
            "get",
            "events",
            "--field-selector",
            "reason=SuccessfulCreate",
            "-o",
            "name",
        ],
    )
    .1;
    assert_eq!(events.lines().count(), 3, "{events}");

    // The leader's server stops: the other takes over well before the
    // 15 s lease would have expired.
    let (stopping, remaining) = {
        let la = std::fs::read_to_string(dir.path().join("a/server.log")).unwrap_or_default();
        if la.contains(&format!("identity={leader}")) {
            (&mut a, kc_b.clone())
        } else {
            (&mut b, kc_a.clone())
        }
    };
    let stopped = Instant::now();
    stopping.terminate();
    wait_until("another leader", || {
        let h = holder(&remaining);
        !h.is_empty() && h != leader
    });
    assert!(
        stopped.elapsed() < Duration::from_secs(10),
        "the controllers moved only after {:?}",
        stopped.elapsed()
    );
    let (ok, out) = kubectl(&remaining, &["scale", "deploy", "web", "--replicas=5"]);
    assert!(ok, "{out}");
    wait_until("5 pods", || pods(&remaining) == 5);
}
