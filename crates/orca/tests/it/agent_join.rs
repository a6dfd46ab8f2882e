//! `orca agent` joining with the node token: it turns the bootstrap token
//! into its own client certificate (a CertificateSigningRequest approved
//! and signed by the server), stores it (0600), runs pods with it (the node
//! authorizer lets it read the Secret its pod mounts) and renews it before
//! it expires. Needs root, ORCA_TEST_REGISTRY and ORCA_TEST_IMAGES (see
//! scripts/test.sh).

use crate::common;

use std::process::{Child, Command};
use std::time::Duration;

use common::Cluster;

struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.0.id().to_string()).status();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::time::Instant::now() < deadline && !matches!(self.0.try_wait(), Ok(Some(_))) {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn csr_rows(cluster: &Cluster) -> Vec<(String, String)> {
    let out = cluster.kubectl_ok(&[
        "get",
        "csr",
        "-o",
        r#"jsonpath={range .items[*]}{.spec.username} {.status.certificate}{"\n"}{end}"#,
    ]);
    out.lines()
        .map(|l| {
            let (user, cert) = l.split_once(' ').unwrap_or((l, ""));
            (user.to_string(), cert.to_string())
        })
        .collect()
}

#[test]
fn an_agent_joins_with_the_token_and_runs_on_its_own_renewed_certificate() {
    let cluster = Cluster::start_with(&["--disable-agent", "--cluster-signing-duration", "60s"]);
    let server = std::fs::read_to_string(&cluster.kubeconfig)
        .unwrap()
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: ").map(str::to_string))
        .expect("server URL in the kubeconfig");
    let agent_dir = tempfile::tempdir().unwrap();
    let registry = common::required_env("ORCA_TEST_REGISTRY");
    std::fs::write(
        agent_dir.path().join("registries.yaml"),
        format!("mirrors:\n  docker.io:\n    endpoint:\n      - \"http://{registry}\"\n"),
    )
    .unwrap();
    let log = std::fs::File::create(agent_dir.path().join("agent.log")).unwrap();
    let _agent = Agent(
        cluster
            .node
            .command(env!("CARGO_BIN_EXE_orca"))
            .args(["agent", "--server", &server, "--token-file"])
            .arg(cluster.dir.path().join("token"))
            .arg("--data-dir")
            .arg(agent_dir.path())
            .args(["--node-name", "joiner", "--node-ip", "127.0.0.1"])
            .args(["--agent-port", &common::free_port().to_string()])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting orca agent"),
    );
    let agent_log =
        || std::fs::read_to_string(agent_dir.path().join("agent.log")).unwrap_or_default();
    cluster.wait_until(
        "the agent registers its node",
        Duration::from_secs(90),
        || cluster.kubectl(&["get", "node", "joiner"]).status.success(),
    );
    let ready = cluster.kubectl(&[
        "wait",
        "--for=condition=Ready",
        "node/joiner",
        "--timeout=90s",
    ]);
    assert!(
        ready.status.success(),
        "{ready:?}\n--- agent log ---\n{}",
        agent_log()
    );

    // Its credential: requested with the bootstrap identity, kept private.
    let key = agent_dir.path().join("agent/kubelet-client.key");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let rows = csr_rows(&cluster);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(
        rows[0].0.starts_with("system:bootstrap:") && !rows[0].1.is_empty(),
        "{rows:?}"
    );

    // A pod on it mounting a Secret: the node reads only what it mounts.
    cluster.kubectl_ok(&[
        "create",
        "secret",
        "generic",
        "app-secret",
        "--from-literal=word=hello",
    ]);
    let pod = r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "on-joiner"},
      "spec": {"nodeName": "joiner", "containers": [{"name": "c", "image": "busybox",
        "command": ["sh", "-c", "cat /s/word; sleep 3600"], "volumeMounts": [{"name": "s", "mountPath": "/s"}]}],
        "volumes": [{"name": "s", "secret": {"secretName": "app-secret"}}]}}"#;
    let path = agent_dir.path().join("pod.json");
    std::fs::write(&path, pod).unwrap();
    cluster.kubectl_ok(&["create", "-f", path.to_str().unwrap()]);
    let ready = cluster.kubectl(&[
        "wait",
        "--for=condition=Ready",
        "pod/on-joiner",
        "--timeout=90s",
    ]);
    assert!(
        ready.status.success(),
        "{ready:?}\n--- agent log ---\n{}",
        agent_log()
    );

    // Renewal at 80% of 60 s: a second request, by the node itself.
    cluster.wait_until(
        "the agent renews its certificate",
        Duration::from_secs(90),
        || {
            csr_rows(&cluster)
                .iter()
                .any(|(user, cert)| user == "system:node:joiner" && !cert.is_empty())
        },
    );
    // It keeps working on the new one (its Lease renews, status reports).
    std::thread::sleep(Duration::from_secs(15));
    let ready = cluster.kubectl_ok(&[
        "get",
        "node",
        "joiner",
        "-o",
        r#"jsonpath={.status.conditions[?(@.type=="Ready")].status}"#,
    ]);
    assert_eq!(ready, "True", "--- agent log ---\n{}", agent_log());
    assert!(
        agent_log().contains("switched to a renewed node client certificate"),
        "{}",
        agent_log()
    );
    cluster.kubectl_ok(&["delete", "pod", "on-joiner", "--grace-period=1"]);
}
