//! Node IPAM against a real API server: nodes that register together each
//! get a pod CIDR of their own, and a node that registers asking for the
//! pod CIDR it already uses (an agent whose Node was deleted) keeps it.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, PostParams};
use orca_testkit::wait_for;

fn node(name: &str, pod_cidr: Option<&str>) -> Node {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {"podCIDR": pod_cidr},
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_registering_together_get_distinct_pod_cidrs() {
    let dir = tempfile::tempdir().unwrap();
    let server = orca_testkit::api_server(dir.path()).await;
    let client = orca_testkit::admin_client(&server).await;
    let nodes: Api<Node> = Api::all(client.clone());
    // One already holds the first subnet; one came back asking for the
    // subnet it used before, leaving a hole below it.
    for (name, cidr) in [("old", "10.42.0.0/24"), ("back", "10.42.2.0/24")] {
        nodes
            .create(&PostParams::default(), &node(name, Some(cidr)))
            .await
            .unwrap();
    }
    let config = orca_controllers::Config::default();
    let clients = orca_controllers::Clients::single(client.clone());
    let ipam = tokio::spawn(async move { orca_controllers::ipam::run(&clients, config).await });
    let names: Vec<String> = (0..6).map(|i| format!("n{i}")).collect();
    futures::future::join_all(names.iter().map(|n| async {
        nodes
            .create(&PostParams::default(), &node(n, None))
            .await
            .unwrap()
    }))
    .await;
    let cidrs: Vec<String> = wait_for(
        "every node has a pod CIDR",
        Duration::from_secs(30),
        || async {
            let mut cidrs = Vec::new();
            for n in &names {
                let cidr = nodes.get(n).await.ok()?.spec?.pod_cidr?;
                cidrs.push(cidr);
            }
            Some(cidrs)
        },
    )
    .await;
    let distinct: BTreeSet<&String> = cidrs.iter().collect();
    assert_eq!(distinct.len(), names.len(), "{cidrs:?}");
    for taken in ["10.42.0.0/24", "10.42.2.0/24"] {
        assert!(!distinct.contains(&taken.to_string()), "{cidrs:?}");
    }
    let back = nodes.get("back").await.unwrap().spec.unwrap().pod_cidr;
    assert_eq!(back.as_deref(), Some("10.42.2.0/24"));
    ipam.abort();
}
