//! `kubectl debug` in its three modes against a real `orca server` running
//! real containers: an ephemeral container in a running pod (in the
//! target container's PID namespace, attached with `-i` and with `-it`,
//! its logs and status, never restarted, stopped with the pod), a copy of
//! the pod sharing its processes (`--copy-to`), and a pod on the node
//! (`node/NAME`: the host's processes, network and `/` at `/host`). Needs
//! root, ORCA_TEST_REGISTRY and ORCA_TEST_IMAGES (see scripts/test.sh).

use crate::common;

use std::time::Duration;

use common::Cluster;

/// A pod whose container runs a command ps shows recognisably (`sleep
/// SECONDS`, a number of its own per test: tests run side by side and the
/// node's processes are all in one PID namespace).
fn web(cluster: &Cluster, seconds: &str) {
    cluster.kubectl_ok(&[
        "run",
        "web",
        "--image=busybox",
        "--restart=Never",
        "--",
        "sleep",
        seconds,
    ]);
    cluster.kubectl_ok(&["wait", "--for=condition=Ready", "pod/web", "--timeout=90s"]);
}

fn jsonpath(cluster: &Cluster, what: &str, path: &str) -> String {
    let out = cluster.kubectl(&["get", what, "-o", &format!("jsonpath={path}")]);
    out.stdout
}

#[test]
fn ephemeral_container_joins_the_target_and_is_attached() {
    let cluster = Cluster::start();
    web(&cluster, "3611");

    // -i with piped input: kubectl adds the container, waits for it to run
    // and attaches its stdin, stdout and stderr.
    let out = cluster.kubectl_env(
        &[],
        &[
            "debug",
            "web",
            "-i",
            "--image=busybox",
            "--target=web",
            "-c",
            "dbg",
            "--profile=general",
        ],
        "ps; echo DONE\nexit 0\n",
    );
    assert!(out.status.success(), "{out:?}\n{}", cluster.log_tail());
    // The target's process is visible: the same PID namespace.
    assert!(out.stdout.contains("sleep 3611"), "{out:?}");
    assert!(out.stdout.contains("DONE"), "{out:?}");

    // Its log, its status: terminated, never restarted.
    let logs = cluster.kubectl_ok(&["logs", "web", "-c", "dbg"]);
    assert!(logs.contains("sleep 3611"), "{logs}");
    cluster.wait_until(
        "dbg is reported terminated",
        Duration::from_secs(30),
        || {
            jsonpath(
            &cluster,
            "pod/web",
            "{.status.ephemeralContainerStatuses[?(@.name==\"dbg\")].state.terminated.exitCode}",
        ) == "0"
        },
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        jsonpath(
            &cluster,
            "pod/web",
            "{.status.ephemeralContainerStatuses[?(@.name==\"dbg\")].restartCount}"
        ),
        "0"
    );
    // The pod itself is untouched.
    assert_eq!(jsonpath(&cluster, "pod/web", "{.status.phase}"), "Running");
    let described = cluster.kubectl_ok(&["describe", "pod", "web"]);
    let section = described
        .split("Ephemeral Containers:")
        .nth(1)
        .expect("an Ephemeral Containers section");
    assert!(section.trim_start().starts_with("dbg:"), "{described}");
    assert!(section.contains("Reason:       Completed"), "{described}");

    // -it under a terminal, the way people use it.
    let (shown, code) = cluster.kubectl_in_terminal(
        &[
            "debug",
            "web",
            "-it",
            "--image=busybox",
            "--target=web",
            "-c",
            "tty",
        ],
        "ps; tty\nexit\n",
    );
    assert_eq!(code, 0, "{shown}");
    assert!(shown.contains("sleep 3611"), "{shown}");
    assert!(shown.contains("/dev/pts/"), "{shown}");

    // Without a target it shares the pod's network, not its processes.
    let ip = jsonpath(&cluster, "pod/web", "{.status.podIP}");
    let out = cluster.kubectl_env(
        &[],
        &["debug", "web", "-i", "--image=busybox", "-c", "plain"],
        "ps; ip addr\nexit 0\n",
    );
    assert!(out.status.success(), "{out:?}");
    assert!(!out.stdout.contains("sleep 3611"), "{out:?}");
    assert!(out.stdout.contains(&format!("inet {ip}/")), "{out:?}");

    // A running ephemeral container goes with its pod.
    cluster.kubectl_ok(&[
        "debug",
        "web",
        "--image=busybox",
        "--target=web",
        "-c",
        "sleeper",
        "--",
        "sleep",
        "3612",
    ]);
    cluster.wait_until("sleeper runs", Duration::from_secs(60), || {
        !jsonpath(
            &cluster,
            "pod/web",
            "{.status.ephemeralContainerStatuses[?(@.name==\"sleeper\")].state.running}",
        )
        .is_empty()
    });
    // exec reaches it by name, as any container.
    let said = cluster.kubectl_ok(&["exec", "web", "-c", "sleeper", "--", "echo", "marco"]);
    assert_eq!(said, "marco\n");
    cluster.kubectl_ok(&["delete", "pod", "web", "--grace-period=5", "--timeout=60s"]);
    let left = cluster.node.run(|| {
        std::process::Command::new("pgrep")
            .args(["-f", "sleep 361[12]"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
            .unwrap_or_default()
    });
    assert!(left.trim().is_empty(), "processes left: {left}");
}

#[test]
fn debug_copy_to_shares_the_copy_processes() {
    let cluster = Cluster::start();
    web(&cluster, "3621");
    let out = cluster.kubectl_env(
        &[],
        &[
            "debug",
            "web",
            "-i",
            "--copy-to=web-copy",
            "--image=busybox",
            "--share-processes",
            "-c",
            "dbg",
        ],
        "ps; echo DONE\nexit 0\n",
    );
    assert!(out.status.success(), "{out:?}\n{}", cluster.log_tail());
    assert!(out.stdout.contains("sleep 3621"), "{out:?}");
    assert!(out.stdout.contains("DONE"), "{out:?}");
    assert_eq!(
        jsonpath(&cluster, "pod/web-copy", "{.spec.shareProcessNamespace}"),
        "true"
    );
    assert_eq!(
        jsonpath(&cluster, "pod/web-copy", "{.spec.containers[*].name}"),
        "web dbg"
    );
    cluster.kubectl_ok(&["delete", "pod", "web-copy", "--grace-period=1"]);
}

#[test]
fn debug_node_runs_in_the_host_namespaces() {
    let cluster = Cluster::start();
    let data_dir = cluster.dir.path().display().to_string();
    let out = cluster.kubectl_env(
        &[],
        &[
            "debug",
            &format!("node/{}", cluster.node_name),
            "-i",
            "--image=busybox",
        ],
        &format!("ps -o args; ip addr; cat /host{data_dir}/registries.yaml; echo DONE\nexit 0\n"),
    );
    assert!(out.status.success(), "{out:?}\n{}", cluster.log_tail());
    assert!(
        out.stdout.contains(&format!(
            "Creating debugging pod node-debugger-{}",
            cluster.node_name
        )),
        "{out:?}"
    );
    // The host's processes (this very server), its network (the node's
    // interface), its files under /host.
    assert!(
        out.stdout.contains(&format!("--data-dir {data_dir}")),
        "{out:?}"
    );
    assert!(out.stdout.contains("ext0"), "{out:?}");
    assert!(out.stdout.contains("mirrors:"), "{out:?}");
    assert!(out.stdout.contains("DONE"), "{out:?}");
    let pods = cluster.kubectl_ok(&["get", "pods", "-o", "name"]);
    let pod = pods
        .lines()
        .find(|p| p.starts_with("pod/node-debugger-"))
        .expect("the debugging pod")
        .to_string();
    assert_eq!(
        jsonpath(
            &cluster,
            &pod,
            "{.spec.hostPID} {.spec.hostNetwork} {.spec.hostIPC}"
        ),
        "true true true"
    );
    cluster.kubectl_ok(&["delete", &pod, "--grace-period=1"]);
}
