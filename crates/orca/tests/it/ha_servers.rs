//! Three `orca server`s on a 3-member etcd (control plane only): the second
//! and third join with `--datastore-endpoint ... --token-file TOKEN`, take
//! the cluster CA and keys the first stored there encrypted with the token,
//! and so serve one cluster (one kubeconfig works against each; a service
//! account token issued by one is accepted by the others; logs and exec
//! reach an agent through every server). A server with no token or a wrong
//! one refuses to start, saying why. The scheduler's Lease moves at once
//! when its server stops, and after its expiry when it is SIGKILLed; so does
//! the controllers' Lease. Printed for BENCHMARKS.md: each server's start
//! to /readyz ok, and the time from a SIGKILL to the next pod bound by the
//! scheduler and to the next pod created by the controllers.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use orca_testkit::etcd::EtcdCluster;
use orca_testkit::lan::Lan;
use orca_testkit::orca::{busybox_pod, Agent, Backend, Kubectl, Server, WAIT};
use orca_testkit::process::{free_port, wait_until, Process};

const ORCA: &str = env!("CARGO_BIN_EXE_orca");

/// `kubectl` with `kubeconfig`, against the server at `url`.
fn kubectl_at(kubeconfig: &Kubectl, url: &str, args: &[&str]) -> (bool, String) {
    let mut all = vec!["--server", url];
    all.extend_from_slice(args);
    let out = kubeconfig.run(&all);
    (out.success, format!("{}{}", out.stdout, out.stderr))
}

/// Whether `server` is the candidate `identity` of a leader election (as
/// its log says when it acquires a Lease).
fn runs_as(server: &Server, identity: &str) -> bool {
    std::fs::read_to_string(server.process.log_path())
        .unwrap_or_default()
        .contains(&format!("identity={identity}"))
}

/// Starts a server expected to fail; returns its log once it has exited.
fn failing_server(endpoints: &str, token_file: Option<&Path>) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(ORCA);
    command
        .args([
            "server",
            "--disable-agent",
            "--datastore-endpoint",
            endpoints,
        ])
        .args(["--https-port", &free_port().to_string()])
        .arg("--data-dir")
        .arg(dir.path());
    if let Some(token) = token_file {
        command.arg("--token-file").arg(token);
    }
    let log = dir.path().join("server.log");
    let mut server = Process::spawn(&mut command, &log);
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_until("the server exits", WAIT, || !server.running(), read_log);
    read_log()
}

#[test]
fn servers_join_a_cluster_with_its_token() {
    let etcd = EtcdCluster::start(3);
    let endpoints = etcd.endpoints().join(",");
    let lan = Lan::new();
    let started = Instant::now();
    let mut first = Server::start(
        Path::new(ORCA),
        lan.host_ip(),
        // The agent's server: the scheduler runs in the others, which
        // this test stops.
        &["--datastore-endpoint", &endpoints, "--disable-scheduler"],
    );
    eprintln!(
        "the first server: start to /readyz ok {:?}",
        started.elapsed()
    );
    let token = first.token_file();
    let token_arg = token.display().to_string();
    let mut joined: Vec<Server> = (0..2)
        .map(|_| {
            let started = Instant::now();
            let server = Server::start(
                Path::new(ORCA),
                lan.host_ip(),
                &[
                    "--datastore-endpoint",
                    &endpoints,
                    "--token-file",
                    &token_arg,
                ],
            );
            eprintln!(
                "a server joining with the token: start to /readyz ok {:?}",
                started.elapsed()
            );
            server
        })
        .collect();
    let ca = std::fs::read(first.dir.path().join("tls/ca.crt")).unwrap();
    let kubectl = first.kubectl();
    for server in &joined {
        assert_eq!(
            std::fs::read(server.dir.path().join("tls/ca.crt")).unwrap(),
            ca
        );
        // The first server's admin credentials, checked by this server's
        // TLS against the shared CA.
        let (ok, out) = kubectl_at(&kubectl, &server.url, &["get", "namespaces"]);
        assert!(ok && out.contains("kube-system"), "{out}");
        // The Services the first server made are left alone.
        let log = std::fs::read_to_string(server.process.log_path()).unwrap();
        assert!(
            !log.contains("could not create the cluster DNS Service"),
            "{log}"
        );
    }

    // A token one server signs (with the shared service-account key) is
    // accepted by another, as a TokenReview there says.
    kubectl.ok(&["create", "serviceaccount", "robot"]);
    let sa_token = kubectl.ok(&["create", "token", "robot"]);
    let review = serde_json::json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "spec": {"token": sa_token.trim()},
    })
    .to_string();
    let out = kubectl.run_with_input(
        &[
            "--server",
            &joined[1].url,
            "create",
            "--validate=false",
            "-f",
            "-",
            "-o",
            "jsonpath={.status.user.username}",
        ],
        Some(&review),
    );
    assert!(out.success, "{out:?}");
    assert_eq!(out.stdout, "system:serviceaccount:default:robot");

    // An agent joined through the first server: its logs and exec work
    // through every server (each has its own client certificate for
    // agents, under the shared CA).
    let machine = lan.add_machine("ha1");
    let data = tempfile::tempdir().unwrap();
    let agent = Agent::start(
        Path::new(ORCA),
        &machine,
        &first.url,
        &token,
        data.path(),
        Backend::Vxlan,
        &[],
    );
    struct DeletePods(Kubectl);
    impl Drop for DeletePods {
        fn drop(&mut self) {
            let _ = self.0.run(&["delete", "pods", "--all", "--grace-period=1"]);
        }
    }
    let _cleanup = DeletePods(kubectl.clone());
    kubectl.apply(&busybox_pod(
        "talker",
        "ha1",
        "echo hello; exec sleep 3600",
        false,
    ));
    kubectl.wait_pods_ready(&["talker"]);
    for server in std::iter::once(&first).chain(&joined) {
        let (ok, out) = kubectl_at(&kubectl, &server.url, &["logs", "talker"]);
        assert!(ok && out == "hello\n", "logs through {}: {out}", server.url);
        let (ok, out) = kubectl_at(
            &kubectl,
            &server.url,
            &["exec", "talker", "--", "echo", "hi"],
        );
        assert!(ok && out == "hi\n", "exec through {}: {out}", server.url);
    }

    // The scheduler's server stops: it releases the Lease, the other takes
    // it at once (well before the 15 s lease would expire).
    let holder = || {
        kubectl.jsonpath(
            &["lease", "-n", "kube-system", "orca-scheduler"],
            "{.spec.holderIdentity}",
        )
    };
    let server_of =
        |identity: &str, servers: &[Server]| servers.iter().position(|s| runs_as(s, identity));
    let mut leader = String::new();
    wait_until(
        "a scheduler leader",
        WAIT,
        || {
            leader = holder();
            !leader.is_empty()
        },
        String::new,
    );
    let stopping = server_of(&leader, &joined).expect("the scheduler runs in a joined server");
    let stopped = Instant::now();
    joined[stopping].process.terminate(Duration::from_secs(20));
    wait_until(
        "another scheduler leader",
        WAIT,
        || {
            let h = holder();
            !h.is_empty() && h != leader
        },
        String::new,
    );
    let handover = stopped.elapsed();
    eprintln!("scheduler Lease handed over {handover:?} after a graceful stop");
    assert!(handover < Duration::from_secs(10), "{handover:?}");

    // The new leader is SIGKILLed: a restarted server takes over once the
    // Lease expires, and binds the next pod.
    joined.remove(stopping);
    joined.push(Server::start(
        Path::new(ORCA),
        lan.host_ip(),
        &[
            "--datastore-endpoint",
            &endpoints,
            "--token-file",
            &token_arg,
        ],
    ));
    let killed = Instant::now();
    joined[0].process.kill();
    kubectl.apply(
        &busybox_pod("after-kill", "", "exec sleep 3600", false).replace("  nodeName: \n", ""),
    );
    wait_until(
        "the pod is bound after the scheduler's server was killed",
        WAIT,
        || {
            !kubectl
                .jsonpath(&["pod", "after-kill"], "{.spec.nodeName}")
                .is_empty()
        },
        String::new,
    );
    eprintln!(
        "a pod was bound {:?} after the scheduler's server was SIGKILLed",
        killed.elapsed()
    );

    // Without the token, or with another cluster's, a server refuses.
    let log = failing_server(&endpoints, None);
    assert!(
        log.contains("the datastore already holds a cluster: join it with --token-file"),
        "{log}"
    );
    let wrong = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(wrong.path(), format!("K10{}::node:0123", "0".repeat(64))).unwrap();
    let log = failing_server(&endpoints, Some(wrong.path()));
    assert!(log.contains("wrong token"), "{log}");

    // The controllers' server is SIGKILLed: another takes their Lease once
    // it expires and creates the pod of a new ReplicaSet (the time is
    // printed). The agent and its pods go first: the first server, theirs,
    // may be the one killed.
    kubectl.ok(&["delete", "pods", "--all", "--grace-period=1"]);
    drop(agent);
    let mut controllers = String::new();
    wait_until(
        "a running server holds the controllers' Lease",
        WAIT,
        || {
            controllers = kubectl.jsonpath(
                &["lease", "-n", "kube-system", "kube-controller-manager"],
                "{.spec.holderIdentity}",
            );
            !controllers.is_empty()
                && (runs_as(&first, &controllers) || runs_as(&joined[1], &controllers))
        },
        String::new,
    );
    let killed = Instant::now();
    let (victim, survivor_url) = if runs_as(&first, &controllers) {
        first.process.kill();
        ("the first server", joined[1].url.clone())
    } else {
        joined[1].process.kill();
        ("a joined server", first.url.clone())
    };
    // A node selector no node has: the pod stays Pending, left to the
    // controllers alone.
    let replicaset = r#"apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: after-kill
spec:
  replicas: 1
  selector:
    matchLabels: {app: after-kill}
  template:
    metadata:
      labels: {app: after-kill}
    spec:
      nodeSelector: {orca-test: nowhere}
      containers:
      - name: c
        image: busybox
"#;
    let out = kubectl.run_with_input(
        &["--server", &survivor_url, "apply", "-f", "-"],
        Some(replicaset),
    );
    assert!(out.success, "{out:?}");
    wait_until(
        "the ReplicaSet's pod is created after the controllers' server was killed",
        WAIT,
        || {
            let (ok, out) = kubectl_at(
                &kubectl,
                &survivor_url,
                &["get", "pods", "-l", "app=after-kill", "-o", "name"],
            );
            ok && out.starts_with("pod/")
        },
        String::new,
    );
    eprintln!(
        "a ReplicaSet's pod was created {:?} after the controllers' server ({victim}) was SIGKILLed",
        killed.elapsed()
    );
}
