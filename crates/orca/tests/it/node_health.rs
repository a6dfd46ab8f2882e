//! Nodes that fail honestly, each agent in a network namespace of its own:
//! a frozen agent (SIGSTOP) makes `kubectl logs` fail within the API
//! server's 10 s handshake timeout with a message saying so; a stopped one
//! is named as not running; an agent that cannot create containers (its
//! cgroups hidden, as `ip netns exec` does) keeps its node NotReady with
//! the reason.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use orca_testkit::lan::Lan;
use orca_testkit::orca::{busybox_pod, Agent, Backend, Server, WAIT};
use orca_testkit::process::{wait_until, Process, Signal};

const ORCA: &str = env!("CARGO_BIN_EXE_orca");
const CLUSTER_CIDR: &str = "10.245.0.0/16";

#[test]
fn nodes_fail_honestly() {
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
    let kubectl = server.kubectl();
    let dirs = tempfile::Builder::new()
        .prefix("orca-nodes-")
        .tempdir()
        .unwrap();
    let healthy = lan.add_machine("hn1");
    let mut agent = Agent::start(
        Path::new(ORCA),
        &healthy,
        &server.url,
        &server.token_file(),
        &dirs.path().join("hn1"),
        Backend::Vxlan,
        &["--cluster-cidr", CLUSTER_CIDR],
    );
    // Pods outlive their agent: remove them while it runs.
    struct DeletePods(orca_testkit::orca::Kubectl);
    impl Drop for DeletePods {
        fn drop(&mut self) {
            let _ = self.0.run(&[
                "delete",
                "pods",
                "--all",
                "--grace-period=1",
                "--timeout=60s",
            ]);
        }
    }
    let _cleanup = DeletePods(kubectl.clone());
    kubectl.apply(&busybox_pod(
        "talker",
        "hn1",
        "echo hello; exec sleep 3600",
        false,
    ));
    kubectl.wait_pods_ready(&["talker"]);
    wait_until(
        "the log has the line",
        WAIT,
        || kubectl.run(&["logs", "talker"]).stdout == "hello\n",
        || agent.process.log_tail(20),
    );

    // Frozen: the kernel still accepts the connection, nothing answers.
    agent.process.signal(Signal::SIGSTOP);
    let start = Instant::now();
    let out = kubectl.run(&["logs", "talker", "--request-timeout=60s"]);
    let took = start.elapsed();
    agent.process.signal(Signal::SIGCONT);
    eprintln!("kubectl logs against a frozen agent failed after {took:?}");
    assert!(!out.success, "{out:?}");
    assert!(
        out.stderr.contains("TLS handshake timeout")
            && out.stderr.contains(
                "the node agent of hn1 accepted the connection but did not answer within 10s"
            ),
        "{out:?}"
    );
    assert!(took < Duration::from_secs(30), "took {took:?}");
    assert_eq!(kubectl.ok(&["logs", "talker"]), "hello\n");

    // Stopped: refused, in kube-apiserver's words.
    agent.process.terminate(Duration::from_secs(20));
    let out = kubectl.run(&["logs", "talker"]);
    assert!(
        !out.success
            && out.stderr.contains(&format!(
                "/containerLogs/default/talker/main\": dial tcp {}:10250: connect: connection refused",
                healthy.ip
            )),
        "{out:?}"
    );
    let agent = Agent::start(
        Path::new(ORCA),
        &healthy,
        &server.url,
        &server.token_file(),
        &dirs.path().join("hn1"),
        Backend::Vxlan,
        &["--cluster-cidr", CLUSTER_CIDR],
    );
    let _cleanup_after_restart = DeletePods(kubectl.clone());

    // No cgroups: `ip netns exec` mounts a /sys of its own without them.
    let blind = lan.add_machine("hn2");
    let data = dirs.path().join("hn2");
    std::fs::create_dir_all(&data).unwrap();
    let blind_agent = Process::spawn(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &blind.netns,
                ORCA,
                "agent",
                "--server",
                &server.url,
            ])
            .arg("--token-file")
            .arg(server.token_file())
            .arg("--data-dir")
            .arg(&data)
            .args(["--node-name", "hn2", "--node-ip", &blind.ip.to_string()])
            .args(["--cluster-cidr", CLUSTER_CIDR]),
        &data.join("agent.log"),
    );
    let ready = r#"{.status.conditions[?(@.type=="Ready")].status} {.status.conditions[?(@.type=="Ready")].reason} {.status.conditions[?(@.type=="Ready")].message}"#;
    let mut condition = String::new();
    wait_until(
        "node hn2 reports why it is not ready",
        WAIT,
        || {
            condition = kubectl.jsonpath(&["node", "hn2"], ready);
            // Until its pod network is set up the message also says so,
            // as the kubelet aggregates errors: "[runtime..., network...]".
            condition.contains("RuntimeReady=false") && !condition.contains("NetworkReady=false")
        },
        || blind_agent.log_tail(20),
    );
    assert!(
        condition.starts_with("False KubeletNotReady container runtime not ready: RuntimeReady=false reason:CgroupsUnavailable message:no cgroup filesystem is mounted at /sys/fs/cgroup"),
        "{condition}"
    );
    // The healthy node is Ready again after its restart.
    wait_until(
        "node hn1 is Ready",
        WAIT,
        || {
            kubectl
                .jsonpath(&["node", "hn1"], ready)
                .starts_with("True KubeletReady")
        },
        || agent.process.log_tail(20),
    );
    drop(blind_agent);
}
