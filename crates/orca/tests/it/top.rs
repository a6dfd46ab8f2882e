//! `kubectl top` end to end: a real container burning CPU shows in
//! `kubectl top pod` (by pod, by container, across namespaces) and the node
//! in `kubectl top node`, from the agent's usage samples of the containers'
//! cgroups, which `nodes/NAME/proxy/stats/summary` and
//! `.../proxy/metrics/resource` show as the kubelet's; a virtual node shows
//! `<unknown>`, as a node metrics-server cannot scrape. Needs root,
//! ORCA_TEST_REGISTRY and ORCA_TEST_IMAGES (see scripts/test.sh).

use crate::common;

use std::time::Duration;

use common::Cluster;

const POD: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: burner
  labels: {app: burner}
spec:
  containers:
  - name: burn
    image: busybox
    command: [sh, -c, 'while :; do :; done']
  - name: idle
    image: busybox
    command: [sleep, "3600"]
"#;

/// The rows of kubectl's table output, split on whitespace.
fn rows(out: &str) -> Vec<Vec<String>> {
    out.lines()
        .map(|l| l.split_whitespace().map(String::from).collect())
        .collect()
}

/// Millicores from kubectl's CPU column (`123m`).
fn millicores(s: &str) -> u64 {
    s.trim_end_matches('m').parse().unwrap_or(0)
}

#[test]
fn top_shows_a_busy_pod_and_its_node() {
    // A virtual node too: it has no agent to read usage from.
    let cluster = Cluster::start_with(&["--virtual-nodes", "1"]);
    let path = cluster.dir.path().join("burner.yaml");
    std::fs::write(&path, POD).unwrap();
    cluster.kubectl_ok(&["apply", "-f", path.to_str().unwrap()]);
    cluster.kubectl_ok(&[
        "wait",
        "--for=condition=Ready",
        "pod/burner",
        "--timeout=90s",
    ]);

    // Rates need two samples of the agent, ten seconds apart.
    let mut top = String::new();
    cluster.wait_until(
        "kubectl top pod shows burner",
        Duration::from_secs(90),
        || {
            let out = cluster.kubectl(&["top", "pod"]);
            top = out.stdout;
            rows(&top)
                .iter()
                .any(|r| r.first().is_some_and(|n| n == "burner"))
        },
    );
    let r = rows(&top);
    assert_eq!(r[0], ["NAME", "CPU(cores)", "MEMORY(bytes)"], "{top}");
    let burner = r.iter().find(|r| r[0] == "burner").unwrap();
    // A busy loop takes what it can of a core (a share of a loaded machine
    // here).
    assert!(millicores(&burner[1]) > 100, "{top}");
    assert!(burner[2].ends_with("Mi"), "{top}");

    let by_container = cluster.kubectl_ok(&["top", "pod", "burner", "--containers"]);
    let r = rows(&by_container);
    assert_eq!(
        r[0],
        ["POD", "NAME", "CPU(cores)", "MEMORY(bytes)"],
        "{by_container}"
    );
    let burn = r.iter().find(|r| r[1] == "burn").expect("burn row");
    let idle = r.iter().find(|r| r[1] == "idle").expect("idle row");
    assert!(millicores(&burn[2]) > 100, "{by_container}");
    assert!(millicores(&idle[2]) < 50, "{by_container}");

    let all = cluster.kubectl_ok(&["top", "pod", "-A", "-l", "app=burner"]);
    let r = rows(&all);
    assert_eq!(
        r[0],
        ["NAMESPACE", "NAME", "CPU(cores)", "MEMORY(bytes)"],
        "{all}"
    );
    assert_eq!(r.len(), 2, "{all}");
    assert_eq!(r[1][..2], ["default", "burner"], "{all}");

    let selector = format!("spec.nodeName={}", cluster.node_name);
    let on_node = cluster.kubectl_ok(&["top", "pod", "-A", "--field-selector", &selector]);
    assert!(on_node.contains("\ndefault     burner "), "{on_node}");

    let nodes = cluster.kubectl_ok(&["top", "node"]);
    let r = rows(&nodes);
    assert_eq!(
        r[0],
        ["NAME", "CPU(cores)", "CPU(%)", "MEMORY(bytes)", "MEMORY(%)"],
        "{nodes}"
    );
    let node = r
        .iter()
        .find(|r| r[0] == cluster.node_name)
        .unwrap_or_else(|| panic!("{nodes}"));
    assert!(millicores(&node[1]) > 100, "{nodes}");
    assert!(node[2].ends_with('%') && node[4].ends_with('%'), "{nodes}");
    let virtual_node = cluster.kubectl_ok(&["get", "nodes", "-l", "type=virtual", "-o", "name"]);
    let virtual_node = virtual_node.trim().trim_start_matches("node/");
    let unknown = r
        .iter()
        .find(|r| r[0] == virtual_node)
        .unwrap_or_else(|| panic!("{nodes}"));
    assert_eq!(unknown[1..], ["<unknown>"; 4], "{nodes}");

    // The kubelet's Summary API through the node proxy.
    let node = &cluster.node_name;
    let raw = cluster.kubectl_ok(&[
        "get",
        "--raw",
        &format!("/api/v1/nodes/{node}/proxy/stats/summary"),
    ]);
    let summary: serde_json::Value = serde_json::from_str(&raw).expect("summary JSON");
    assert_eq!(summary["node"]["nodeName"], node.as_str());
    assert!(
        summary["node"]["memory"]["workingSetBytes"].as_u64() > Some(0),
        "{raw}"
    );
    let pod = summary["pods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["podRef"]["name"] == "burner")
        .unwrap_or_else(|| panic!("{raw}"));
    assert_eq!(pod["podRef"]["namespace"], "default");
    let burn = pod["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "burn")
        .unwrap_or_else(|| panic!("{raw}"));
    assert!(
        burn["cpu"]["usageNanoCores"].as_u64() > Some(100_000_000),
        "{raw}"
    );
    assert!(
        burn["cpu"]["usageCoreNanoSeconds"].as_u64() > Some(0),
        "{raw}"
    );
    assert!(
        burn["memory"]["workingSetBytes"].as_u64() > Some(0),
        "{raw}"
    );

    let resource = cluster.kubectl_ok(&[
        "get",
        "--raw",
        &format!("/api/v1/nodes/{node}/proxy/metrics/resource"),
    ]);
    assert!(
        resource.contains("container_cpu_usage_seconds_total{container=\"burn\",namespace=\"default\",pod=\"burner\"}"),
        "{resource}"
    );
    assert!(
        resource.contains("\nnode_memory_working_set_bytes "),
        "{resource}"
    );

    let own = cluster.kubectl_ok(&[
        "get",
        "--raw",
        &format!("/api/v1/nodes/{node}/proxy/metrics"),
    ]);
    assert!(
        own.contains("kubelet_running_containers{container_state=\"running\"} ")
            && own.contains("\nkubelet_running_pods "),
        "{own}"
    );

    cluster.kubectl_ok(&["delete", "pod", "burner", "--grace-period=1"]);
}
