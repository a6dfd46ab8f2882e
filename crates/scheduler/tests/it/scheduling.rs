//! The scheduler against the real API server, with virtual nodes standing
//! in for kubelets: every filter, Kubernetes' messages and events, retries
//! on cluster changes, and pods running on virtual nodes.

use crate::common;

use std::collections::HashMap;

use common::{pod, wait_for, Cluster, Pool, WAIT};
use kube::api::{DeleteParams, ListParams};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unschedulable_pod_reports_why_then_binds_when_a_node_is_added() {
    let mut c = Cluster::start().await;
    c.add_pool(Pool::new("tainted-", 1, "4", 1).taint("node-role", "x", "NoSchedule"))
        .await;
    c.add_pool(Pool::new("small-", 2, "1", 2)).await;
    c.start_scheduler();

    c.create_pod(pod("web", Some("2"))).await;
    let expected = "0/3 nodes are available: 1 node(s) had untolerated taint {node-role: x}, \
                    2 Insufficient cpu. preemption: 0/3 nodes are available: \
                    1 Preemption is not helpful for scheduling, \
                    2 No preemption victims found for incoming pod..";
    assert_eq!(c.wait_unschedulable("web").await, expected);
    let failed = c.wait_event("web", "FailedScheduling").await;
    assert_eq!(failed.type_.as_deref(), Some("Warning"));
    assert_eq!(failed.message.as_deref(), Some(expected));
    assert_eq!(
        failed.reporting_component.as_deref(),
        Some("default-scheduler")
    );
    assert_eq!(failed.action.as_deref(), Some("Scheduling"));
    assert!(c.pod("web").await.spec.unwrap().node_name.is_none());

    // A node that fits arrives: the parked pod is retried without polling.
    c.add_pool(Pool::new("big-", 1, "4", 3)).await;
    assert_eq!(c.wait_bound("web").await, "big-0");
    let scheduled = c.wait_event("web", "Scheduled").await;
    assert_eq!(scheduled.type_.as_deref(), Some("Normal"));
    assert_eq!(
        scheduled.message.as_deref(),
        Some("Successfully assigned default/web to big-0")
    );
    assert_eq!(
        scheduled.reporting_component.as_deref(),
        Some("default-scheduler")
    );

    // The virtual node runs it: Running, Ready, an IP from big-0's /24.
    let pods = c.pods();
    let status = wait_for("web to run on the virtual node", WAIT, || async {
        let s = pods.get("web").await.ok()?.status?;
        (s.phase.as_deref() == Some("Running")).then_some(s)
    })
    .await;
    assert!(
        status
            .pod_ip
            .as_deref()
            .unwrap_or("")
            .starts_with("10.103.0."),
        "{:?}",
        status.pod_ip
    );
    assert_eq!(status.host_ip.as_deref(), Some("10.103.0.1"));
    let ready = status
        .conditions
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .expect("Ready condition");
    assert_eq!(ready.status, "True");
    let main = &status.container_statuses.expect("container statuses")[0];
    assert!(main.ready && main.state.as_ref().unwrap().running.is_some());

    // Deleting it: gone once its (1 s) grace period is over.
    c.pods()
        .delete("web", &DeleteParams::default().grace_period(1))
        .await
        .expect("delete");
    wait_for("web to disappear", WAIT, || async {
        pods.get_opt("web")
            .await
            .ok()
            .and_then(|p| p.is_none().then_some(()))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tolerations_decide_who_may_use_a_tainted_node() {
    let mut c = Cluster::start().await;
    c.add_pool(Pool::new("plain-", 2, "8", 1)).await;
    c.add_pool(Pool::new("gpu-", 1, "8", 2).label("pool", "gpu").taint(
        "dedicated",
        "gpu",
        "NoSchedule",
    ))
    .await;
    c.start_scheduler();

    for i in 0..10 {
        c.create_pod(pod(&format!("plain-{i}"), None)).await;
    }
    let toleration =
        json!([{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]);
    let mut tolerating = pod("tolerating", None);
    tolerating["spec"]["tolerations"] = toleration;
    tolerating["spec"]["nodeSelector"] = json!({"pool": "gpu"});
    c.create_pod(tolerating).await;
    let mut wrong = pod("wrong-value", None);
    wrong["spec"]["tolerations"] =
        json!([{"key": "dedicated", "operator": "Equal", "value": "cpu", "effect": "NoSchedule"}]);
    wrong["spec"]["nodeSelector"] = json!({"pool": "gpu"});
    c.create_pod(wrong).await;

    for i in 0..10 {
        let node = c.wait_bound(&format!("plain-{i}")).await;
        assert!(node.starts_with("plain-"), "plain-{i} went to {node}");
    }
    assert_eq!(c.wait_bound("tolerating").await, "gpu-0");
    assert_eq!(
        c.wait_unschedulable("wrong-value").await,
        "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, \
         2 node(s) didn't match Pod's node affinity/selector. preemption: 0/3 nodes are available: \
         3 Preemption is not helpful for scheduling.."
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_selector_and_required_affinity() {
    let mut c = Cluster::start().await;
    c.add_pool(
        Pool::new("zone-a-", 2, "8", 1)
            .label("zone", "a")
            .label("cores", "8"),
    )
    .await;
    c.add_pool(
        Pool::new("zone-b-", 2, "8", 2)
            .label("zone", "b")
            .label("cores", "16"),
    )
    .await;
    c.start_scheduler();

    let affinity = |exprs: serde_json::Value, fields: serde_json::Value| {
        let mut term = json!({});
        if !exprs.is_null() {
            term["matchExpressions"] = exprs;
        }
        if !fields.is_null() {
            term["matchFields"] = fields;
        }
        json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}}})
    };
    let cases: Vec<(&str, &str, serde_json::Value)> = vec![
        (
            "selector-b",
            "zone-b-",
            json!({"nodeSelector": {"zone": "b"}}),
        ),
        (
            "in-a",
            "zone-a-",
            json!({"affinity": affinity(json!([{"key": "zone", "operator": "In", "values": ["a"]}]), json!(null))}),
        ),
        (
            "notin-a",
            "zone-b-",
            json!({"affinity": affinity(json!([{"key": "zone", "operator": "NotIn", "values": ["a"]}]), json!(null))}),
        ),
        (
            "exists",
            "zone-",
            json!({"affinity": affinity(json!([{"key": "cores", "operator": "Exists"}]), json!(null))}),
        ),
        (
            "gt-10",
            "zone-b-",
            json!({"affinity": affinity(json!([{"key": "cores", "operator": "Gt", "values": ["10"]}]), json!(null))}),
        ),
        (
            "lt-10",
            "zone-a-",
            json!({"affinity": affinity(json!([{"key": "cores", "operator": "Lt", "values": ["10"]}]), json!(null))}),
        ),
        (
            "by-name",
            "zone-a-1",
            json!({"affinity": affinity(json!(null), json!([{"key": "metadata.name", "operator": "In", "values": ["zone-a-1"]}]))}),
        ),
    ];
    for (name, _, extra) in &cases {
        let mut p = pod(name, None);
        for (k, v) in extra.as_object().unwrap() {
            p["spec"][k] = v.clone();
        }
        c.create_pod(p).await;
    }
    for (name, prefix, _) in &cases {
        let node = c.wait_bound(name).await;
        assert!(
            node.starts_with(prefix),
            "{name} went to {node}, expected {prefix}*"
        );
    }

    let mut none = pod("does-not-exist", None);
    none["spec"]["affinity"] = affinity(
        json!([{"key": "zone", "operator": "DoesNotExist"}]),
        json!(null),
    );
    c.create_pod(none).await;
    assert_eq!(
        c.wait_unschedulable("does-not-exist").await,
        "0/4 nodes are available: 4 node(s) didn't match Pod's node affinity/selector. \
         preemption: 0/4 nodes are available: 4 Preemption is not helpful for scheduling.."
    );
    let mut missing = pod("missing-node", None);
    missing["spec"]["affinity"] = affinity(
        json!(null),
        json!([{"key": "metadata.name", "operator": "In", "values": ["zone-a-0"]}]),
    );
    missing["spec"]["nodeSelector"] = json!({"zone": "b"});
    c.create_pod(missing).await;
    assert_eq!(
        c.wait_unschedulable("missing-node").await,
        "0/4 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, \
         3 node(s) didn't satisfy plugin(s) [NodeAffinity]. preemption: 0/4 nodes are available: \
         4 Preemption is not helpful for scheduling.."
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_fill_nodes_exactly_and_the_rest_wait_for_a_new_node() {
    let mut c = Cluster::start().await;
    c.add_pool(Pool::new("full-", 2, "2", 1)).await;
    c.start_scheduler();

    for i in 0..7 {
        c.create_pod(pod(&format!("one-{i}"), Some("1"))).await;
    }
    let pods = c.pods();
    let node_of =
        |p: &k8s_openapi::api::core::v1::Pod| p.spec.as_ref().and_then(|s| s.node_name.clone());
    // 2 nodes x 2 cpu: exactly four 1-cpu pods fit, two per node.
    let list = wait_for("four pods bound and three parked", WAIT, || async {
        let list = pods.list(&ListParams::default()).await.ok()?.items;
        let parked = list
            .iter()
            .filter(|p| {
                p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| {
                        c.iter()
                            .any(|c| c.type_ == "PodScheduled" && c.status == "False")
                    })
            })
            .count();
        (list.iter().filter(|p| node_of(p).is_some()).count() == 4 && parked == 3).then_some(list)
    })
    .await;
    let mut per_node: HashMap<String, u32> = HashMap::new();
    for p in &list {
        if let Some(n) = node_of(p) {
            *per_node.entry(n).or_default() += 1;
        }
    }
    assert_eq!(per_node.values().copied().collect::<Vec<_>>(), vec![2, 2]);
    for p in list.iter().filter(|p| node_of(p).is_none()) {
        assert_eq!(
            c.wait_unschedulable(p.metadata.name.as_deref().unwrap())
                .await,
            "0/2 nodes are available: 2 Insufficient cpu. preemption: 0/2 nodes are available: \
             2 No preemption victims found for incoming pod.."
        );
    }

    // A 2-cpu node takes two of the three waiting pods; one still waits.
    c.add_pool(Pool::new("extra-", 1, "2", 2)).await;
    let list = wait_for("two waiting pods to land on extra-0", WAIT, || async {
        let list = pods.list(&ListParams::default()).await.ok()?.items;
        let on_extra = list
            .iter()
            .filter(|p| node_of(p).as_deref() == Some("extra-0"))
            .count();
        (on_extra == 2).then_some(list)
    })
    .await;
    let waiting: Vec<&str> = list
        .iter()
        .filter(|p| node_of(p).is_none())
        .filter_map(|p| p.metadata.name.as_deref())
        .collect();
    assert_eq!(waiting.len(), 1, "{waiting:?}");
    let last = waiting[0].to_string();

    // Deleting a bound pod frees room: the last one gets in.
    let victim = list
        .iter()
        .find(|p| node_of(p).is_some())
        .and_then(|p| p.metadata.name.clone())
        .unwrap();
    pods.delete(&victim, &DeleteParams::default().grace_period(0))
        .await
        .expect("delete");
    c.wait_bound(&last).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_ports_and_pod_count_limits() {
    let mut c = Cluster::start().await;
    c.add_pool(Pool::new("ports-", 1, "8", 1).pods("2")).await;
    c.start_scheduler();

    let with_port = |name: &str| {
        let mut p = pod(name, None);
        p["spec"]["containers"][0]["ports"] = json!([{"containerPort": 80, "hostPort": 8080}]);
        p
    };
    c.create_pod(with_port("port-1")).await;
    assert_eq!(c.wait_bound("port-1").await, "ports-0");
    c.create_pod(with_port("port-2")).await;
    assert_eq!(
        c.wait_unschedulable("port-2").await,
        "0/1 nodes are available: 1 node(s) didn't have free ports for the requested pod ports. \
         preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.."
    );
    c.create_pod(pod("second", None)).await;
    assert_eq!(c.wait_bound("second").await, "ports-0");
    c.create_pod(pod("third", None)).await;
    assert_eq!(
        c.wait_unschedulable("third").await,
        "0/1 nodes are available: 1 Too many pods. preemption: 0/1 nodes are available: \
         1 No preemption victims found for incoming pod.."
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cordoned_nodes_and_pods_for_other_schedulers_are_left_alone() {
    let mut c = Cluster::start().await;
    c.add_pool(Pool::new("cordon-", 1, "8", 1)).await;
    let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(c.client.clone());
    nodes
        .patch(
            "cordon-0",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"spec": {"unschedulable": true}})),
        )
        .await
        .expect("cordon");
    c.start_scheduler();

    c.create_pod(pod("cordoned", None)).await;
    assert_eq!(
        c.wait_unschedulable("cordoned").await,
        "0/1 nodes are available: 1 node(s) were unschedulable. preemption: 0/1 nodes are available: \
         1 Preemption is not helpful for scheduling.."
    );
    let mut other = pod("other-scheduler", None);
    other["spec"]["schedulerName"] = json!("someone-else");
    c.create_pod(other).await;
    let mut preset = pod("preset", None);
    preset["spec"]["nodeName"] = json!("cordon-0");
    c.create_pod(preset).await;

    // Uncordoning is a node change: the parked pod is retried and bound.
    nodes
        .patch(
            "cordon-0",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"spec": {"unschedulable": false}})),
        )
        .await
        .expect("uncordon");
    assert_eq!(c.wait_bound("cordoned").await, "cordon-0");
    let other = c.pod("other-scheduler").await;
    assert!(other.spec.unwrap().node_name.is_none());
    assert!(c.events_for("other-scheduler").await.is_empty());
    // A pod created with nodeName skips the scheduler: no Scheduled event.
    assert!(c
        .events_for("preset")
        .await
        .iter()
        .all(|e| e.reason.as_deref() != Some("Scheduled")));
}
