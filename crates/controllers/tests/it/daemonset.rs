//! The DaemonSet controller with the real scheduler and virtual nodes
//! (which run pods and report them Ready) against a real API server, and
//! the real kubectl's rollout commands.

use std::collections::{BTreeMap, BTreeSet};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::ResourceExt;
use orca_testkit::wait_for;
use serde_json::json;

use crate::common::{Cluster, Controller, WAIT};

const CONTROLLERS: &[Controller] =
    &[|c| Box::pin(async move { orca_controllers::daemonset::run(&c).await.unwrap() })];

fn daemon_set(name: &str, image: &str, extra: serde_json::Value) -> DaemonSet {
    let mut ds = json!({
        "metadata": {"name": name},
        "spec": {"selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": image}],
                    "tolerations": [{"key": "orca.dev/virtual-node", "operator": "Exists"}]}}}
    });
    for (k, v) in extra.as_object().unwrap() {
        if k == "spec" {
            for (sk, sv) in v.as_object().unwrap() {
                ds["spec"][sk] = sv.clone();
            }
        } else {
            ds["spec"]["template"]["spec"][k] = v.clone();
        }
    }
    serde_json::from_value(ds).unwrap()
}

/// Nodes of the DaemonSet's live pods.
async fn nodes_of(c: &Cluster, uid: &str) -> Vec<String> {
    let mut nodes: Vec<String> = c
        .pods_of(uid)
        .await
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| p.spec?.node_name)
        .collect();
    nodes.sort();
    nodes
}

/// The DaemonSet's live pods (not being deleted) and the nodes where one
/// of them is Ready.
/// The pods not being deleted, and the nodes where one of them is Ready.
fn live_and_ready_of<'a>(pods: impl Iterator<Item = &'a Pod>) -> (Vec<&'a Pod>, BTreeSet<String>) {
    let live: Vec<&Pod> = pods
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    let ready_nodes = live
        .iter()
        .filter(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .filter_map(|p| p.spec.as_ref()?.node_name.clone())
        .collect();
    (live, ready_nodes)
}

/// Starts a pod watch, runs `roll` (the template change), and folds every pod event of the set
/// in order until `nodes` pods run `image`, all Ready: returns the fewest nodes that had a Ready pod
/// and the most pods alive at once. Folding events sees states that last only milliseconds, which
/// polling lists missed.
async fn follow_rollout<F: std::future::Future<Output = ()>>(
    pods: &Api<Pod>,
    uid: &str,
    image: &str,
    nodes: usize,
    roll: impl FnOnce() -> F,
) -> (usize, usize) {
    let ours = |p: &Pod| p.owner_references().iter().any(|o| o.uid == uid);
    let start = pods.list(&ListParams::default()).await.unwrap();
    let mut seen: BTreeMap<String, Pod> = start
        .items
        .into_iter()
        .filter(|p| ours(p))
        .map(|p| (p.name_any(), p))
        .collect();
    let rv = start.metadata.resource_version.unwrap();
    let mut events = pods
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    roll().await;
    let (mut fewest_ready, mut most_live) = (nodes, 0);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (live, ready_nodes) = live_and_ready_of(seen.values());
        fewest_ready = fewest_ready.min(ready_nodes.len());
        most_live = most_live.max(live.len());
        let updated = live
            .iter()
            .filter(|p| p.spec.as_ref().unwrap().containers[0].image.as_deref() == Some(image))
            .count();
        if updated == nodes && live.len() == nodes && ready_nodes.len() == nodes {
            return (fewest_ready, most_live);
        }
        let event = tokio::time::timeout_at(deadline, events.next())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "the rollout did not finish: {} live, {updated} updated",
                    live.len()
                )
            })
            .expect("the pod watch ended")
            .unwrap();
        match event {
            WatchEvent::Added(p) | WatchEvent::Modified(p) if ours(&p) => {
                seen.insert(p.name_any(), p);
            }
            WatchEvent::Deleted(p) => {
                seen.remove(&p.name_any());
            }
            WatchEvent::Error(e) => panic!("pod watch: {e:?}"),
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_pod_per_eligible_node_including_nodes_that_join_later() {
    let mut c = Cluster::start(CONTROLLERS, false).await;
    c.start_scheduler();
    c.add_nodes("ssd-", 2, &[("disk", "ssd")]).await;
    c.add_nodes("hdd-", 1, &[("disk", "hdd")]).await;
    let sets: Api<DaemonSet> = c.api();
    let uid = sets
        .create(
            &PostParams::default(),
            &daemon_set("agent", "agent:1", json!({"nodeSelector": {"disk": "ssd"}})),
        )
        .await
        .unwrap()
        .uid()
        .unwrap();
    // Without a toleration of the virtual nodes' taint, no node qualifies.
    let mut picky = daemon_set("picky", "agent:1", json!({}));
    picky
        .spec
        .as_mut()
        .unwrap()
        .template
        .spec
        .as_mut()
        .unwrap()
        .tolerations = None;
    let picky_uid = sets
        .create(&PostParams::default(), &picky)
        .await
        .unwrap()
        .uid()
        .unwrap();

    wait_for("a pod on each ssd node", WAIT, || async {
        (nodes_of(&c, &uid).await == ["ssd-0", "ssd-1"]).then_some(())
    })
    .await;
    let ds = wait_for("the status counts", WAIT, || async {
        let ds = sets.get("agent").await.ok()?;
        let s = ds.status.clone()?;
        (s.desired_number_scheduled == 2
            && s.current_number_scheduled == 2
            && s.number_ready == 2
            && s.number_available == Some(2)
            && s.updated_number_scheduled == Some(2)
            && s.number_misscheduled == 0
            && s.observed_generation == Some(1))
        .then_some(ds)
    })
    .await;
    assert_eq!(ds.status.unwrap().number_unavailable, None);
    let picky = sets.get("picky").await.unwrap();
    assert_eq!(picky.status.unwrap().desired_number_scheduled, 0);
    assert!(c.pods_of(&picky_uid).await.is_empty());

    // The template's revision, and the pods labelled with it.
    let revs: Vec<ControllerRevision> = c
        .api::<ControllerRevision>()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|r| r.owner_references().iter().any(|o| o.uid == uid))
        .collect();
    assert_eq!(revs.len(), 1);
    assert_eq!(revs[0].revision, 1);
    let hash = revs[0].labels()["controller-revision-hash"].clone();
    assert_eq!(revs[0].name_any(), format!("agent-{hash}"));
    let pods = c.pods_of(&uid).await;
    for p in &pods {
        assert_eq!(p.labels()["controller-revision-hash"], hash);
        assert_eq!(p.labels()["pod-template-generation"], "1");
        let tolerations = p.spec.as_ref().unwrap().tolerations.clone().unwrap();
        assert!(tolerations.iter().any(|t| t.key.as_deref()
            == Some("node.kubernetes.io/unreachable")
            && t.effect.as_deref() == Some("NoExecute")));
    }

    // A node that joins gets its pod.
    c.add_nodes("late-ssd-", 1, &[("disk", "ssd")]).await;
    wait_for("a pod on the new node", WAIT, || async {
        (nodes_of(&c, &uid).await == ["late-ssd-0", "ssd-0", "ssd-1"]).then_some(())
    })
    .await;
    // A node that stops matching loses its pod.
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(c.client.clone());
    nodes
        .patch(
            "ssd-1",
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"labels": {"disk": "hdd"}}})),
        )
        .await
        .unwrap();
    wait_for("the pod gone from the relabelled node", WAIT, || async {
        (nodes_of(&c, &uid).await == ["late-ssd-0", "ssd-0"]).then_some(())
    })
    .await;
    let reasons = c.reasons_once("agent", "SuccessfulDelete").await;
    assert_eq!(
        reasons.iter().filter(|r| *r == "SuccessfulCreate").count(),
        3
    );
    assert!(reasons.contains(&"SuccessfulDelete".to_string()));
    let out = c.kubectl(&["describe", "daemonset", "agent"]).await;
    assert!(
        out.contains("Desired Number of Nodes Scheduled: 2"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_update_keeps_max_unavailable_and_kubectl_follows_it() {
    let mut c = Cluster::start(CONTROLLERS, false).await;
    c.start_scheduler();
    c.add_nodes("n-", 4, &[]).await;
    let sets: Api<DaemonSet> = c.api();
    let uid = sets
        .create(
            &PostParams::default(),
            &daemon_set(
                "proxy",
                "proxy:1",
                json!({"spec": {"updateStrategy": {
                "type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}}}}),
            ),
        )
        .await
        .unwrap()
        .uid()
        .unwrap();
    wait_for("4 available", WAIT, || async {
        (sets.get("proxy").await.ok()?.status?.number_available == Some(4)).then_some(())
    })
    .await;
    let out = c
        .kubectl(&["rollout", "status", "daemonset/proxy", "--timeout=30s"])
        .await;
    assert!(
        out.contains("daemon set \"proxy\" successfully rolled out"),
        "{out}"
    );

    let update = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "proxy:2"}]}}}});
    // Never more than one node without a ready pod.
    let pods: Api<Pod> = c.api();
    let (fewest, _) = follow_rollout(&pods, &uid, "proxy:2", 4, || async {
        sets.patch("proxy", &PatchParams::default(), &Patch::Strategic(&update))
            .await
            .unwrap();
    })
    .await;
    assert!(fewest >= 3, "{fewest} nodes kept a ready pod");
    let out = c
        .kubectl(&["rollout", "status", "daemonset/proxy", "--timeout=30s"])
        .await;
    assert!(out.contains("successfully rolled out"), "{out}");
    let out = c.kubectl(&["rollout", "history", "daemonset/proxy"]).await;
    let revisions: Vec<&str> = out
        .lines()
        .skip(2)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(revisions, ["1", "2"], "{out}");

    // Undo: the first template comes back as revision 3.
    let out = c.kubectl(&["rollout", "undo", "daemonset/proxy"]).await;
    assert!(out.contains("rolled back"), "{out}");
    wait_for("all back on proxy:1", WAIT, || async {
        let live: Vec<Pod> = c
            .pods_of(&uid)
            .await
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect();
        (live.len() == 4
            && live.iter().all(|p| {
                p.spec.as_ref().unwrap().containers[0].image.as_deref() == Some("proxy:1")
            }))
        .then_some(())
    })
    .await;
    let out = c.kubectl(&["rollout", "history", "daemonset/proxy"]).await;
    let revisions: Vec<&str> = out
        .lines()
        .skip(2)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(revisions, ["2", "3"], "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_surging_rollout_never_leaves_a_node_without_a_ready_pod() {
    let mut c = Cluster::start(CONTROLLERS, false).await;
    c.start_scheduler();
    c.add_nodes("s-", 3, &[]).await;
    let sets: Api<DaemonSet> = c.api();
    let uid = sets
        .create(
            &PostParams::default(),
            &daemon_set(
                "surge",
                "surge:1",
                json!({"spec": {"updateStrategy": {"type": "RollingUpdate",
                    "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}}}),
            ),
        )
        .await
        .unwrap()
        .uid()
        .unwrap();
    wait_for("3 available", WAIT, || async {
        (sets.get("surge").await.ok()?.status?.number_available == Some(3)).then_some(())
    })
    .await;
    let update = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "surge:2"}]}}}});
    let pods: Api<Pod> = c.api();
    let (fewest_ready, most_live) = follow_rollout(&pods, &uid, "surge:2", 3, || async {
        sets.patch("surge", &PatchParams::default(), &Patch::Strategic(&update))
            .await
            .unwrap();
    })
    .await;
    assert_eq!(fewest_ready, 3, "a node was left without a ready pod");
    assert!(most_live >= 4, "the new pods never surged beside the old");
    assert!(most_live <= 4, "{most_live} pods at once with maxSurge 1");
    assert_eq!(nodes_of(&c, &uid).await, ["s-0", "s-1", "s-2"]);
}
