//! The ReplicaSet controller against a real API server (SQLite store on a
//! temp dir), with no scheduler or node: its pods stay unscheduled and go
//! at once when deleted. The test plays the kubelet where readiness
//! matters (patching pod status).

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Event, Pod, ReplicationController};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::{Client, ResourceExt};
use orca_testkit::wait_for;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

struct Cluster {
    _dir: tempfile::TempDir,
    _server: orca_apiserver::ApiServer,
    client: Client,
    controller: tokio::task::JoinHandle<()>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.controller.abort();
    }
}

impl Cluster {
    async fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let server = orca_testkit::api_server(dir.path()).await;
        let client = orca_testkit::admin_client(&server).await;
        let controller = Cluster::run_controller(&server);
        Cluster {
            _dir: dir,
            _server: server,
            client,
            controller,
        }
    }

    fn run_controller(server: &orca_apiserver::ApiServer) -> tokio::task::JoinHandle<()> {
        // The identities `orca server` gives the controllers: the bootstrap
        // policy's roles are what lets them work.
        let (manager, per_controller) = orca_testkit::controller_identities(server);
        let clients = orca_controllers::Clients::new(manager, per_controller);
        tokio::spawn(async move {
            orca_controllers::replicaset::run(&clients)
                .await
                .expect("the replicaset controller runs");
        })
    }

    /// Stops the controller and starts a new one, as a restart or a new
    /// leader does.
    async fn restart_controller(&mut self) {
        self.controller.abort();
        let _ = (&mut self.controller).await;
        self.controller = Cluster::run_controller(&self._server);
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), "default")
    }

    async fn pods_of(&self, uid: &str) -> Vec<Pod> {
        self.pods()
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|p| {
                p.owner_references()
                    .iter()
                    .any(|r| r.uid == uid && r.controller == Some(true))
            })
            .collect()
    }

    async fn wait_pods(&self, uid: &str, n: usize) -> Vec<Pod> {
        wait_for(&format!("{n} pods"), WAIT, || async {
            let p = self.pods_of(uid).await;
            (p.len() == n).then_some(p)
        })
        .await
    }
}

fn replica_set(name: &str, replicas: i32) -> ReplicaSet {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keeps_replicas_replaces_deleted_pods_and_scales_down() {
    let c = Cluster::start().await;
    let sets: Api<ReplicaSet> = Api::namespaced(c.client.clone(), "default");
    let rs = sets
        .create(&PostParams::default(), &replica_set("web", 3))
        .await
        .unwrap();
    let uid = rs.uid().unwrap();
    let pods = c.wait_pods(&uid, 3).await;
    for p in &pods {
        let name = p.name_any();
        assert!(
            name.starts_with("web-") && name.len() == "web-".len() + 5,
            "{name}"
        );
        let r = &p.owner_references()[0];
        assert_eq!(
            (r.kind.as_str(), r.name.as_str(), r.block_owner_deletion),
            ("ReplicaSet", "web", Some(true))
        );
    }
    wait_for("status.replicas 3", WAIT, || async {
        let rs = sets.get("web").await.ok()?;
        let s = rs.status?;
        (s.replicas == 3 && s.observed_generation == Some(1) && s.fully_labeled_replicas == Some(3))
            .then_some(())
    })
    .await;

    // A deleted pod is replaced by a new one.
    let gone = pods[0].name_any();
    c.pods()
        .delete(&gone, &DeleteParams::default())
        .await
        .unwrap();
    let after = wait_for("a replacement", WAIT, || async {
        let p = c.pods_of(&uid).await;
        (p.len() == 3 && p.iter().all(|p| p.name_any() != gone)).then_some(p)
    })
    .await;
    assert_eq!(after.len(), 3);

    // Readiness counts once the kubelet (here the test) says so.
    let ready_one = after[0].name_any();
    let status = json!({"status": {"phase": "Running", "conditions": [
        {"type": "Ready", "status": "True", "lastTransitionTime": "2020-01-01T00:00:00Z"}]}});
    c.pods()
        .patch_status(&ready_one, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    wait_for("one ready and available", WAIT, || async {
        let s = sets.get("web").await.ok()?.status?;
        (s.ready_replicas == Some(1) && s.available_replicas == Some(1)).then_some(())
    })
    .await;

    // Scaling down keeps the ready pod: the not ready ones go first.
    sets.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"replicas": 1}})),
    )
    .await
    .unwrap();
    let left = c.wait_pods(&uid, 1).await;
    assert_eq!(left[0].name_any(), ready_one);

    // Events are posted after the pods they describe are written: wait for them.
    let events: Api<Event> = Api::namespaced(c.client.clone(), "default");
    let (created, e) = wait_for("a SuccessfulDelete event", WAIT, || async {
        let events = events.list(&ListParams::default()).await.ok()?.items;
        let created = events
            .iter()
            .filter(|e| e.reason.as_deref() == Some("SuccessfulCreate"))
            .count();
        let deleted = events
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("SuccessfulDelete"))?;
        (created == 4).then_some((created, deleted))
    })
    .await;
    assert_eq!(created, 4, "3 pods then a replacement");
    assert!(e
        .message
        .as_deref()
        .unwrap()
        .starts_with("Deleted pod: web-"));
    assert_eq!(
        e.source.as_ref().unwrap().component.as_deref(),
        Some("replicaset-controller")
    );
    assert_eq!(e.involved_object.kind.as_deref(), Some("ReplicaSet"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adopts_orphans_and_releases_pods_that_stop_matching() {
    let c = Cluster::start().await;
    // An orphan that the ReplicaSet's selector matches, created first.
    let orphan: Pod = serde_json::from_value(json!({
        "metadata": {"name": "stray", "labels": {"app": "db"}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}
    }))
    .unwrap();
    c.pods()
        .create(&PostParams::default(), &orphan)
        .await
        .unwrap();
    let sets: Api<ReplicaSet> = Api::namespaced(c.client.clone(), "default");
    let uid = sets
        .create(&PostParams::default(), &replica_set("db", 2))
        .await
        .unwrap()
        .uid()
        .unwrap();
    let pods = c.wait_pods(&uid, 2).await;
    assert!(
        pods.iter().any(|p| p.name_any() == "stray"),
        "the orphan was adopted"
    );

    // Relabelled, a pod is released (no longer owned) and replaced.
    c.pods()
        .patch(
            "stray",
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"labels": {"app": "debugging"}}})),
        )
        .await
        .unwrap();
    wait_for("stray released", WAIT, || async {
        let p = c.pods().get("stray").await.ok()?;
        p.owner_references().is_empty().then_some(())
    })
    .await;
    let now = c.wait_pods(&uid, 2).await;
    assert!(now.iter().all(|p| p.name_any() != "stray"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_controllers_run_the_same_way() {
    let c = Cluster::start().await;
    let rcs: Api<ReplicationController> = Api::namespaced(c.client.clone(), "default");
    let rc: ReplicationController = serde_json::from_value(json!({
        "metadata": {"name": "legacy"},
        "spec": {"replicas": 2, "template": {"metadata": {"labels": {"app": "legacy"}},
            "spec": {"containers": [{"name": "legacy", "image": "nginx"}]}}}
    }))
    .unwrap();
    let uid = rcs
        .create(&PostParams::default(), &rc)
        .await
        .unwrap()
        .uid()
        .unwrap();
    let pods = c.wait_pods(&uid, 2).await;
    assert!(pods[0].name_any().starts_with("legacy-"));
    assert_eq!(pods[0].owner_references()[0].api_version, "v1");
    wait_for("status.replicas 2", WAIT, || async {
        (rcs.get("legacy").await.ok()?.status?.replicas == 2).then_some(())
    })
    .await;
    let events: Api<Event> = Api::namespaced(c.client.clone(), "default");
    let e = events.list(&ListParams::default()).await.unwrap().items;
    assert!(e
        .iter()
        .any(|e| e.source.as_ref().and_then(|s| s.component.as_deref())
            == Some("replication-controller")));
}

/// A controller starting over syncs no ReplicaSet before it has listed the
/// pods: it would count none and create a second set. Many other pods make
/// the pod list the slower of the two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_controller_creates_no_pods_its_sets_already_have() {
    let mut c = Cluster::start().await;
    let sets: Api<ReplicaSet> = Api::namespaced(c.client.clone(), "default");
    let uid = sets
        .create(&PostParams::default(), &replica_set("web", 3))
        .await
        .unwrap()
        .uid()
        .unwrap();
    c.wait_pods(&uid, 3).await;
    futures::stream::iter(0..600)
        .for_each_concurrent(16, |i| {
            let pods = c.pods();
            async move {
                let p: Pod = serde_json::from_value(json!({
                    "metadata": {"name": format!("other-{i}"), "labels": {"app": "other"}},
                    "spec": {"containers": [{"name": "c", "image": "busybox"}]}
                }))
                .unwrap();
                pods.create(&PostParams::default(), &p).await.unwrap();
            }
        })
        .await;
    let since = c
        .pods()
        .list_metadata(&ListParams::default().limit(1))
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();

    c.restart_controller().await;
    // A ReplicaSet created after the restart is synced after "web" was
    // first queued: once its pod exists, a premature sync of "web" has
    // shown.
    sets.create(&PostParams::default(), &replica_set("marker", 1))
        .await
        .unwrap();
    let mut events = c
        .pods()
        .watch(&WatchParams::default(), &since)
        .await
        .unwrap()
        .boxed();
    let mut created_for_web = Vec::new();
    tokio::time::timeout(WAIT, async {
        while let Some(ev) = events.try_next().await.unwrap() {
            let WatchEvent::Added(p) = ev else { continue };
            if p.name_any().starts_with("marker-") {
                return;
            }
            if p.owner_references().iter().any(|r| r.uid == uid) {
                created_for_web.push(p.name_any());
            }
        }
    })
    .await
    .expect("the marker ReplicaSet's pod");
    assert_eq!(created_for_web, Vec::<String>::new());
}
