//! The StatefulSet controller against a real API server; the test's
//! kubelet runs pods (Ready at once) except `hang` ones, which stay
//! Pending until the test marks them Ready.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::ResourceExt;
use orca_testkit::wait_for;
use serde_json::json;

use crate::common::{Cluster, Controller, WAIT};

const CONTROLLERS: &[Controller] =
    &[|c| Box::pin(async move { orca_controllers::statefulset::run(&c).await.unwrap() })];

fn stateful_set(name: &str, replicas: i32, image: &str, spec: serde_json::Value) -> StatefulSet {
    let mut s = json!({
        "metadata": {"name": name},
        "spec": {"replicas": replicas, "serviceName": name,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": image}]}}}
    });
    for (k, v) in spec.as_object().unwrap() {
        s["spec"][k] = v.clone();
    }
    serde_json::from_value(s).unwrap()
}

fn ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn image(p: &Pod) -> String {
    p.spec.as_ref().unwrap().containers[0]
        .image
        .clone()
        .unwrap_or_default()
}

/// The set's live pods by name.
async fn live(c: &Cluster, uid: &str) -> Vec<Pod> {
    let mut pods: Vec<Pod> = c
        .pods_of(uid)
        .await
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    pods.sort_by_key(|p| p.name_any());
    pods
}

async fn mark_ready(c: &Cluster, name: &str) {
    let status = json!({"status": {"phase": "Running", "conditions": [
        {"type": "Ready", "status": "True", "lastTransitionTime": chrono::Utc::now().to_rfc3339()}]}});
    c.api::<Pod>()
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
}

/// Polls the set's pods until `done`, asserting at every look that they
/// are a prefix `web-0..web-k` whose pods are Ready but for the last.
async fn watch_ordered(c: &Cluster, uid: &str, set: &str, done: impl Fn(&[Pod]) -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let pods = live(c, uid).await;
        let ordinals: Vec<usize> = pods
            .iter()
            .map(|p| p.name_any()[set.len() + 1..].parse().unwrap())
            .collect();
        let mut sorted = ordinals.clone();
        sorted.sort();
        assert_eq!(
            sorted,
            (0..pods.len()).collect::<Vec<_>>(),
            "pods not a prefix"
        );
        let by_ordinal = |i: usize| &pods[ordinals.iter().position(|o| *o == i).unwrap()];
        for i in 0..pods.len().saturating_sub(1) {
            assert!(
                ready(by_ordinal(i)),
                "{set}-{i} not ready while a later pod exists"
            );
        }
        if done(&pods) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_pods_with_stable_identities_up_and_down_in_order() {
    let c = Cluster::start(CONTROLLERS, true).await;
    let sets: Api<StatefulSet> = c.api();
    let uid = sets
        .create(
            &PostParams::default(),
            &stateful_set("web", 3, "web:1", json!({})),
        )
        .await
        .unwrap()
        .uid()
        .unwrap();
    watch_ordered(&c, &uid, "web", |p| p.len() == 3 && p.iter().all(ready)).await;
    let pods = live(&c, &uid).await;
    for (i, p) in pods.iter().enumerate() {
        let spec = p.spec.as_ref().unwrap();
        assert_eq!(spec.hostname.as_deref(), Some(format!("web-{i}").as_str()));
        assert_eq!(spec.subdomain.as_deref(), Some("web"));
        assert_eq!(
            p.labels()["statefulset.kubernetes.io/pod-name"],
            format!("web-{i}")
        );
        assert_eq!(p.labels()["apps.kubernetes.io/pod-index"], i.to_string());
    }
    let sts = wait_for("the status", WAIT, || async {
        let s = sets.get("web").await.ok()?;
        let st = s.status.clone()?;
        (st.replicas == 3 && st.ready_replicas == Some(3) && st.available_replicas == Some(3))
            .then_some(s)
    })
    .await;
    let st = sts.status.unwrap();
    assert_eq!(st.current_revision, st.update_revision);
    let revision = st.current_revision.unwrap();
    assert!(revision.starts_with("web-"), "{revision}");
    assert_eq!(pods[0].labels()["controller-revision-hash"], revision);

    // A deleted pod comes back under its name.
    let pods_api: Api<Pod> = c.api();
    let old_uid = pods[1].uid();
    pods_api.delete("web-1", &Default::default()).await.unwrap();
    wait_for("web-1 recreated", WAIT, || async {
        let p = pods_api.get("web-1").await.ok()?;
        (p.uid() != old_uid && ready(&p)).then_some(())
    })
    .await;

    // Scaled down with the real kubectl: the highest ordinals go first.
    let out = c
        .kubectl(&["scale", "statefulset", "web", "--replicas=1"])
        .await;
    assert_eq!(out.trim(), "statefulset.apps/web scaled");
    watch_ordered(&c, &uid, "web", |p| p.len() == 1).await;
    let messages: Vec<String> = c
        .events_until("web", |e| {
            e.iter().any(|e| {
                e.message.as_deref() == Some("delete Pod web-1 in StatefulSet web successful")
            })
        })
        .await
        .into_iter()
        .filter_map(|e| e.message)
        .collect();
    let deletes: Vec<&String> = messages
        .iter()
        .filter(|m| m.starts_with("delete Pod"))
        .collect();
    assert_eq!(
        deletes[deletes.len() - 2..],
        [
            "delete Pod web-2 in StatefulSet web successful",
            "delete Pod web-1 in StatefulSet web successful"
        ]
    );
    assert!(messages.contains(&"create Pod web-0 in StatefulSet web successful".to_string()));
    let out = c.kubectl(&["get", "statefulset", "web"]).await;
    let row: Vec<&str> = out.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(&row[..2], ["web", "1/1"], "{out}");
    let out = c.kubectl(&["describe", "statefulset", "web"]).await;
    assert!(
        out.contains("Pods Status:        1 Running / 0 Waiting / 0 Succeeded / 0 Failed"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_ready_waits_and_parallel_does_not() {
    let c = Cluster::start(CONTROLLERS, true).await;
    let sets: Api<StatefulSet> = c.api();
    let ordered = sets
        .create(
            &PostParams::default(),
            &stateful_set("db", 2, "hang", json!({})),
        )
        .await
        .unwrap()
        .uid()
        .unwrap();
    let parallel = sets
        .create(
            &PostParams::default(),
            &stateful_set(
                "cache",
                3,
                "hang",
                json!({"podManagementPolicy": "Parallel"}),
            ),
        )
        .await
        .unwrap()
        .uid()
        .unwrap();
    wait_for("all 3 parallel pods, none ready", WAIT, || async {
        (live(&c, &parallel).await.len() == 3).then_some(())
    })
    .await;
    // By now db-0 exists and, not being ready, holds back db-1.
    let names: Vec<String> = live(&c, &ordered)
        .await
        .iter()
        .map(|p| p.name_any())
        .collect();
    assert_eq!(names, ["db-0"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(live(&c, &ordered).await.len(), 1);
    mark_ready(&c, "db-0").await;
    wait_for("db-1 once db-0 is ready", WAIT, || async {
        (live(&c, &ordered).await.len() == 2).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_update_goes_down_the_ordinals_to_the_partition() {
    let c = Cluster::start(CONTROLLERS, true).await;
    let sets: Api<StatefulSet> = c.api();
    let uid = sets
        .create(
            &PostParams::default(),
            &stateful_set(
                "web",
                3,
                "web:1",
                json!({"updateStrategy": {
                "type": "RollingUpdate", "rollingUpdate": {"partition": 1}}}),
            ),
        )
        .await
        .unwrap()
        .uid()
        .unwrap();
    wait_for("3 ready", WAIT, || async {
        let p = live(&c, &uid).await;
        (p.len() == 3 && p.iter().all(ready)).then_some(())
    })
    .await;
    let update =
        json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "web:2"}]}}}});
    sets.patch("web", &PatchParams::default(), &Patch::Strategic(&update))
        .await
        .unwrap();
    // web-2 goes before web-1; web-0 stays below the partition.
    wait_for("web-1 and web-2 updated", WAIT, || async {
        let pods = live(&c, &uid).await;
        let images: Vec<String> = pods.iter().map(image).collect();
        (pods.len() == 3 && images == ["web:1", "web:2", "web:2"] && pods.iter().all(ready))
            .then_some(())
    })
    .await;
    let deletes: Vec<String> = c
        .events_until("web", |e| {
            e.iter().any(|e| {
                e.message.as_deref() == Some("delete Pod web-1 in StatefulSet web successful")
            })
        })
        .await
        .into_iter()
        .filter_map(|e| e.message)
        .filter(|m| m.starts_with("delete Pod"))
        .collect();
    assert_eq!(
        deletes,
        [
            "delete Pod web-2 in StatefulSet web successful",
            "delete Pod web-1 in StatefulSet web successful"
        ]
    );
    let st = wait_for("updatedReplicas 2", WAIT, || async {
        let st = sets.get("web").await.ok()?.status?;
        (st.updated_replicas == Some(2) && st.current_replicas == Some(1)).then_some(st)
    })
    .await;
    assert_ne!(st.current_revision, st.update_revision);
    // A pod below the partition comes back at the current revision.
    c.api::<Pod>()
        .delete("web-0", &Default::default())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let web0 = wait_for("web-0 back", WAIT, || async {
        c.api::<Pod>().get("web-0").await.ok().filter(ready)
    })
    .await;
    assert_eq!(image(&web0), "web:1");

    // Partition 0: web-0 updates too and the update revision is current.
    sets.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"updateStrategy": {"rollingUpdate": {"partition": 0}}}})),
    )
    .await
    .unwrap();
    let st = wait_for("all updated", WAIT, || async {
        let st = sets.get("web").await.ok()?.status?;
        (st.updated_replicas == Some(3) && st.current_revision == st.update_revision).then_some(st)
    })
    .await;
    assert_eq!(st.current_replicas, Some(3));
    let images: BTreeSet<String> = live(&c, &uid).await.iter().map(image).collect();
    assert_eq!(images, BTreeSet::from(["web:2".to_string()]));
    let revs = c
        .api::<ControllerRevision>()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    let mut numbers: Vec<i64> = revs.iter().map(|r| r.revision).collect();
    numbers.sort();
    assert_eq!(numbers, [1, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volume_claim_templates_are_refused_with_a_clear_message() {
    let c = Cluster::start(CONTROLLERS, false).await;
    let manifest = c.dir.path().join("sts.json");
    let mut sts = serde_json::to_value(stateful_set("db", 1, "db", json!({}))).unwrap();
    sts["apiVersion"] = json!("apps/v1");
    sts["kind"] = json!("StatefulSet");
    sts["spec"]["volumeClaimTemplates"] = json!([{"metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]);
    std::fs::write(&manifest, sts.to_string()).unwrap();
    let out = c
        .kubectl_out(&["create", "-f", manifest.to_str().unwrap()])
        .await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "spec.volumeClaimTemplates: Forbidden: this cluster has no persistent volumes yet"
        ),
        "{err}"
    );
}
