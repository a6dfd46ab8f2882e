//! The disruption controller with the ReplicaSet and Deployment
//! controllers, the real scheduler and virtual nodes (which run pods, report
//! them Ready and remove deleted ones at once) against a real API server:
//! PodDisruptionBudget status as Kubernetes computes it, and the real
//! `kubectl cordon`, `uncordon` and `drain` evicting through the budget.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::ResourceExt;
use orca_testkit::wait_for;
use serde_json::json;

use crate::common::{Cluster, Controller, WAIT};

const CONTROLLERS: &[Controller] = &[
    |c| Box::pin(async move { orca_controllers::replicaset::run(&c).await.unwrap() }),
    |c| Box::pin(async move { orca_controllers::deployment::run(&c).await.unwrap() }),
    |c| Box::pin(async move { orca_controllers::disruption::run(&c).await.unwrap() }),
];

fn deployment(name: &str, replicas: i32) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "nginx"}],
                    "tolerations": [{"key": "orca.dev/virtual-node", "operator": "Exists"}]}}}
    }))
    .unwrap()
}

async fn create_budget(c: &Cluster, name: &str, app: &str, spec: serde_json::Value) {
    let mut spec = spec;
    spec["selector"] = json!({"matchLabels": {"app": app}});
    let pdb: PodDisruptionBudget =
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap();
    c.api::<PodDisruptionBudget>()
        .create(&PostParams::default(), &pdb)
        .await
        .unwrap();
}

/// (expectedPods, desiredHealthy, currentHealthy, disruptionsAllowed) once
/// the controller has observed the budget's generation and they are `want`.
async fn status_becomes(
    c: &Cluster,
    name: &str,
    want: (i32, i32, i32, i32),
) -> PodDisruptionBudget {
    let api = c.api::<PodDisruptionBudget>();
    wait_for(&format!("{name}'s status to be {want:?}"), WAIT, || async {
        let pdb = api.get(name).await.ok()?;
        let s = pdb.status.clone()?;
        let numbers = (
            s.expected_pods,
            s.desired_healthy,
            s.current_healthy,
            s.disruptions_allowed,
        );
        (numbers == want && s.observed_generation == pdb.metadata.generation).then_some(pdb)
    })
    .await
}

/// Ready pods of `app` that are not being deleted.
async fn ready_pods(pods: &Api<Pod>, app: &str) -> Vec<Pod> {
    pods.list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budget_status_follows_min_available_and_max_unavailable() {
    let mut c = Cluster::start(CONTROLLERS, false).await;
    c.start_scheduler();
    c.add_nodes("vn-", 2, &[]).await;
    c.api::<Deployment>()
        .create(&PostParams::default(), &deployment("web", 4))
        .await
        .unwrap();
    wait_for("4 ready pods", WAIT, || async {
        (ready_pods(&c.api(), "web").await.len() == 4).then_some(())
    })
    .await;

    create_budget(&c, "min-int", "web", json!({"minAvailable": 3})).await;
    create_budget(&c, "min-pct", "web", json!({"minAvailable": "30%"})).await;
    create_budget(&c, "max-int", "web", json!({"maxUnavailable": 1})).await;
    create_budget(&c, "max-pct", "web", json!({"maxUnavailable": "60%"})).await;
    create_budget(&c, "nothing", "none", json!({"minAvailable": 1})).await;
    let pdb = status_becomes(&c, "min-int", (4, 3, 4, 1)).await;
    let cond = &pdb.status.unwrap().conditions.unwrap()[0];
    assert_eq!(
        (
            cond.type_.as_str(),
            cond.status.as_str(),
            cond.reason.as_str()
        ),
        ("DisruptionAllowed", "True", "SufficientPods")
    );
    // 30% of 4 rounds up to 2.
    status_becomes(&c, "min-pct", (4, 2, 4, 2)).await;
    status_becomes(&c, "max-int", (4, 3, 4, 1)).await;
    // 60% of 4 unavailable rounds up to 3: one must stay.
    status_becomes(&c, "max-pct", (4, 1, 4, 3)).await;
    let pdb = status_becomes(&c, "nothing", (0, 1, 0, 0)).await;
    let cond = &pdb.status.unwrap().conditions.unwrap()[0];
    assert_eq!(
        (cond.status.as_str(), cond.reason.as_str()),
        ("False", "InsufficientPods")
    );
    c.reasons_once("nothing", "NoPods").await;

    // The Deployment's scale, not the pods there are, is what percentages
    // and maxUnavailable count against.
    c.api::<Deployment>()
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 6}})),
        )
        .await
        .unwrap();
    status_becomes(&c, "max-int", (6, 5, 6, 1)).await;
    // A new spec is observed.
    c.api::<PodDisruptionBudget>()
        .patch(
            "min-int",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"minAvailable": 6}})),
        )
        .await
        .unwrap();
    let pdb = status_becomes(&c, "min-int", (6, 6, 6, 0)).await;
    assert_eq!(pdb.status.unwrap().observed_generation, Some(2));
    // describe's Status section, as kubectl shows it from real Kubernetes.
    let describe = c.kubectl(&["describe", "pdb", "min-int"]).await;
    for line in [
        "Min available:  6",
        "Selector:       app=web",
        "    Allowed disruptions:  0",
        "    Current:              6",
        "    Desired:              6",
        "    Total:                6",
    ] {
        assert!(
            describe.lines().any(|l| l == line),
            "{line:?} in {describe}"
        );
    }

    // kubectl's columns, as real Kubernetes prints them.
    let reference = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/kubernetes-v1.32/platform/01-pdb.txt"
    ))
    .unwrap();
    let header = reference
        .lines()
        .find(|l| l.starts_with("NAME "))
        .unwrap()
        .to_string();
    let table = c.kubectl(&["get", "pdb"]).await;
    let lines: Vec<&str> = table.lines().collect();
    let columns = |l: &str| -> Vec<String> {
        l.split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_string)
            .collect()
    };
    assert_eq!(columns(lines[0]), columns(&header), "{table}");
    assert!(
        lines
            .iter()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()[..4] == ["max-int", "N/A", "1", "1"]),
        "{table}"
    );
}

/// A Ready pod of `app` whose controller is `owner` (apiVersion, kind,
/// name, uid), as if that controller had made it.
async fn owned_pod(c: &Cluster, name: &str, app: &str, owner: (&str, &str, &str, &str)) {
    let (api_version, kind, owner_name, uid) = owner;
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": app},
            "ownerReferences": [{"apiVersion": api_version, "kind": kind, "name": owner_name,
                                 "uid": uid, "controller": true}]},
        "spec": {"containers": [{"name": "c", "image": "nginx"}]},
    }))
    .unwrap();
    let pods = c.api::<Pod>();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let status = json!({"status": {"phase": "Running",
        "conditions": [{"type": "Ready", "status": "True"}]}});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
}

/// The budget's SyncFailed message, once it has one.
async fn sync_failure(c: &Cluster, name: &str) -> String {
    let api = c.api::<PodDisruptionBudget>();
    wait_for(&format!("{name} to fail its sync"), WAIT, || async {
        let status = api.get(name).await.ok()?.status?;
        let cond = status.conditions?.into_iter().next()?;
        (cond.reason == "SyncFailed" && status.disruptions_allowed == 0).then_some(cond.message)
    })
    .await
}

/// Owners other than the ReplicaSets, Deployments, StatefulSets and
/// ReplicationControllers the controller caches count by their `scale`
/// subresource, as in Kubernetes; an owner without one, of a kind not
/// served, or gone fails the budget's sync with Kubernetes' message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_owners_count_through_their_scale_subresource() {
    const DISRUPTION_ONLY: &[Controller] =
        &[|c| Box::pin(async move { orca_controllers::disruption::run(&c).await.unwrap() })];
    let c = Cluster::start(DISRUPTION_ONLY, false).await;
    // A Deployment owning pods itself (no controller runs to make any).
    let web = c
        .api::<Deployment>()
        .create(&PostParams::default(), &deployment("web", 5))
        .await
        .unwrap();
    let web_uid = web.uid().unwrap();
    for name in ["direct-0", "direct-1"] {
        owned_pod(
            &c,
            name,
            "direct",
            ("apps/v1", "Deployment", "web", &web_uid),
        )
        .await;
    }
    create_budget(&c, "direct", "direct", json!({"maxUnavailable": 1})).await;
    // Expected: the Deployment's 5, of which 4 must stay; 2 are healthy.
    status_becomes(&c, "direct", (5, 4, 2, 0)).await;
    c.api::<Deployment>()
        .patch_scale(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 2}})),
        )
        .await
        .unwrap();
    // The controller reads scales at each sync; a pod change triggers one.
    c.api::<Pod>()
        .patch(
            "direct-0",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"touch": "1"}}})),
        )
        .await
        .unwrap();
    status_becomes(&c, "direct", (2, 1, 2, 1)).await;

    let daemon: k8s_openapi::api::apps::v1::DaemonSet = serde_json::from_value(json!({
        "metadata": {"name": "agent"},
        "spec": {"selector": {"matchLabels": {"app": "agent"}},
            "template": {"metadata": {"labels": {"app": "agent"}},
                "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}
    }))
    .unwrap();
    let daemon = c
        .api::<k8s_openapi::api::apps::v1::DaemonSet>()
        .create(&PostParams::default(), &daemon)
        .await
        .unwrap();
    let daemon_uid = daemon.uid().unwrap();
    owned_pod(
        &c,
        "agent-0",
        "agent",
        ("apps/v1", "DaemonSet", "agent", &daemon_uid),
    )
    .await;
    owned_pod(
        &c,
        "widget-0",
        "widget",
        ("example.com/v1", "Widget", "w", "uid-w"),
    )
    .await;
    owned_pod(
        &c,
        "orphan-0",
        "orphan",
        ("apps/v1", "Deployment", "web", "uid-gone"),
    )
    .await;
    let cases = [
        (
            "agent",
            "daemonsets.apps does not implement the scale subresource",
        ),
        (
            "widget",
            "no matches for kind \"Widget\" in version \"example.com/v1\"",
        ),
        ("orphan", "found no controllers for pod \"orphan-0\""),
    ];
    for (app, _) in cases {
        create_budget(&c, app, app, json!({"minAvailable": "50%"})).await;
    }
    for (app, message) in cases {
        assert_eq!(sync_failure(&c, app).await, message, "{app}");
        let events = c
            .events_until(app, |e| {
                e.iter()
                    .any(|e| e.reason.as_deref() == Some("CalculateExpectedPodCountFailed"))
            })
            .await;
        let failed = events
            .iter()
            .find(|e| e.reason.as_deref() == Some("CalculateExpectedPodCountFailed"))
            .unwrap();
        assert_eq!(
            failed.message.as_deref(),
            Some(format!("Failed to calculate the number of expected pods: {message}").as_str())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_evicts_through_the_budget_one_pod_at_a_time() {
    let mut c = Cluster::start(CONTROLLERS, false).await;
    c.start_scheduler();
    c.add_nodes("old-", 1, &[]).await;
    let pods: Api<Pod> = c.api();
    c.api::<Deployment>()
        .create(&PostParams::default(), &deployment("web", 3))
        .await
        .unwrap();
    wait_for("3 ready pods on old-0", WAIT, || async {
        (ready_pods(&pods, "web").await.len() == 3).then_some(())
    })
    .await;
    c.add_nodes("new-", 1, &[]).await;
    create_budget(&c, "web-pdb", "web", json!({"minAvailable": 2})).await;
    status_becomes(&c, "web-pdb", (3, 2, 3, 1)).await;

    // cordon and uncordon, as kubectl prints them.
    assert_eq!(
        c.kubectl(&["cordon", "new-0"]).await,
        "node/new-0 cordoned\n"
    );
    let nodes: Api<Node> = Api::all(c.client.clone());
    let node = nodes.get("new-0").await.unwrap();
    assert_eq!(node.spec.unwrap().unschedulable, Some(true));
    assert_eq!(
        c.kubectl(&["uncordon", "new-0"]).await,
        "node/new-0 uncordoned\n"
    );
    let node = nodes.get("new-0").await.unwrap();
    assert_ne!(node.spec.unwrap().unschedulable, Some(true));

    // A server-side dry run evicts nothing and leaves the node schedulable.
    let dry = c
        .kubectl(&["drain", "old-0", "--ignore-daemonsets", "--dry-run=server"])
        .await;
    assert!(
        dry.lines()
            .any(|l| l == "node/old-0 cordoned (server dry run)"),
        "{dry}"
    );
    assert!(
        dry.lines()
            .any(|l| l == "node/old-0 drained (server dry run)"),
        "{dry}"
    );
    let node = nodes.get("old-0").await.unwrap();
    assert_ne!(node.spec.unwrap().unschedulable, Some(true));
    assert_eq!(ready_pods(&pods, "web").await.len(), 3);
    status_becomes(&c, "web-pdb", (3, 2, 3, 1)).await;

    // While the drain runs, the budget's 2 ready pods are never lost.
    let fewest = Arc::new(AtomicUsize::new(usize::MAX));
    let sampler = tokio::spawn({
        let fewest = fewest.clone();
        let pods = pods.clone();
        async move {
            loop {
                let n = ready_pods(&pods, "web").await.len();
                fewest.fetch_min(n, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });
    let out = c
        .kubectl_out(&[
            "drain",
            "old-0",
            "--ignore-daemonsets",
            "--delete-emptydir-data",
            "--timeout=120s",
        ])
        .await;
    sampler.abort();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "drain failed: {stderr}\n{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.first(), Some(&"node/old-0 cordoned"), "{stdout}");
    assert_eq!(lines.last(), Some(&"node/old-0 drained"), "{stdout}");
    let all = format!("{stdout}{stderr}");
    let evicted = all
        .lines()
        .filter(|l| l.starts_with("pod/web-") && l.ends_with(" evicted"))
        .count();
    assert_eq!(evicted, 3, "{all}");
    assert!(
        all.lines()
            .any(|l| l.starts_with("evicting pod default/web-")),
        "{all}"
    );
    // Three pods asked at once with one disruption allowed: some wait.
    let blocked = all
        .lines()
        .filter(|l| {
            l.starts_with("error when evicting pods/\"web-")
                && l.ends_with(" -n \"default\" (will retry after 5s): Cannot evict pod as it would violate the pod's disruption budget.")
        })
        .count();
    assert!(blocked >= 1, "no eviction was refused: {all}");
    assert!(
        fewest.load(Ordering::SeqCst) >= 2,
        "the drain left fewer than 2 ready pods"
    );

    // No pod is left on old-0, which stays cordoned.
    let left: Vec<String> = pods
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| p.spec.as_ref().unwrap().node_name.as_deref() == Some("old-0"))
        .map(|p| p.name_any())
        .collect();
    assert!(left.is_empty(), "{left:?}");
    let node = nodes.get("old-0").await.unwrap();
    assert_eq!(node.spec.unwrap().unschedulable, Some(true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_disruption_target_is_reset() {
    let c = Cluster::start(&CONTROLLERS[2..], false).await;
    let pods: Api<Pod> = c.api();
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "marked"},
        "spec": {"nodeName": "elsewhere", "containers": [{"name": "c", "image": "nginx"}]},
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    // An eviction marked it three minutes ago, then failed to delete it.
    let then = (chrono::Utc::now() - chrono::Duration::minutes(3))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let status = json!({"status": {"phase": "Running", "conditions": [
        {"type": "Ready", "status": "True", "lastTransitionTime": then},
        {"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI",
         "message": "Eviction API: evicting", "lastTransitionTime": then}]}});
    pods.patch_status("marked", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    let cond = wait_for("the condition to be reset", WAIT, || async {
        let p = pods.get("marked").await.ok()?;
        let conds = p.status?.conditions?;
        let target = conds.into_iter().find(|c| c.type_ == "DisruptionTarget")?;
        (target.status == "False").then_some(target)
    })
    .await;
    assert_eq!(cond.reason.as_deref(), Some("EvictionByEvictionAPI"));
    let ready = pods
        .get("marked")
        .await
        .unwrap()
        .status
        .unwrap()
        .conditions
        .unwrap();
    assert!(ready
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True"));
}
