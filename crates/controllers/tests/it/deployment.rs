//! The Deployment and ReplicaSet controllers together against a real API
//! server, with no scheduler or node. The test plays the kubelet: a task
//! marks pods Running and Ready (only those whose image it is told is
//! healthy), so readiness gates the rollouts as it would on a node.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use orca_testkit::wait_for;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

struct Cluster {
    _dir: tempfile::TempDir,
    _server: orca_apiserver::ApiServer,
    client: Client,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Images whose pods the fake kubelet reports Ready.
    healthy: Arc<Mutex<HashSet<String>>>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Cluster {
    async fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let server = orca_testkit::api_server(dir.path()).await;
        let client = orca_testkit::admin_client(&server).await;
        let healthy: Arc<Mutex<HashSet<String>>> = Arc::default();
        // The identities `orca server` gives the controllers: the bootstrap
        // policy's roles are what lets them work.
        let (manager, per_controller) = orca_testkit::controller_identities(&server);
        let clients = orca_controllers::Clients::new(manager, per_controller);
        let tasks = vec![
            tokio::spawn({
                let c = clients.clone();
                async move { orca_controllers::replicaset::run(&c).await.unwrap() }
            }),
            tokio::spawn(async move { orca_controllers::deployment::run(&clients).await.unwrap() }),
            tokio::spawn(kubelet(client.clone(), healthy.clone())),
        ];
        Cluster {
            _dir: dir,
            _server: server,
            client,
            tasks,
            healthy,
        }
    }

    fn deployments(&self) -> Api<Deployment> {
        Api::namespaced(self.client.clone(), "default")
    }

    async fn replica_sets(&self) -> Vec<ReplicaSet> {
        Api::<ReplicaSet>::namespaced(self.client.clone(), "default")
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
    }
}

/// Marks pods whose image is healthy Running and Ready, every 100 ms.
async fn kubelet(client: Client, healthy: Arc<Mutex<HashSet<String>>>) {
    let pods: Api<Pod> = Api::namespaced(client, "default");
    loop {
        for p in pods
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default()
        {
            let image = p
                .spec
                .as_ref()
                .and_then(|s| s.containers[0].image.clone())
                .unwrap_or_default();
            let ready = p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
            if ready || !healthy.lock().unwrap().contains(&image) {
                continue;
            }
            let status = json!({"status": {"phase": "Running", "conditions": [
                {"type": "Ready", "status": "True", "lastTransitionTime": chrono::Utc::now().to_rfc3339()}]}});
            let _ = pods
                .patch_status(
                    &p.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&status),
                )
                .await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn deployment(name: &str, replicas: i32, image: &str) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": image}]}}}
    }))
    .unwrap()
}

fn revision(rs: &ReplicaSet) -> String {
    rs.annotations()
        .get("deployment.kubernetes.io/revision")
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolls_out_gated_by_readiness_and_rolls_back() {
    let c = Cluster::start().await;
    c.healthy.lock().unwrap().insert("good:1".into());
    c.deployments()
        .create(&PostParams::default(), &deployment("web", 3, "good:1"))
        .await
        .unwrap();
    let d = wait_for("web available", WAIT, || async {
        let d = c.deployments().get("web").await.ok()?;
        let s = d.status.clone()?;
        (s.available_replicas == Some(3) && s.updated_replicas == Some(3)).then_some(d)
    })
    .await;
    assert_eq!(d.annotations()["deployment.kubernetes.io/revision"], "1");
    let conds = d.status.unwrap().conditions.unwrap();
    let summary: Vec<(String, String, String)> = conds
        .iter()
        .map(|c| {
            (
                c.type_.clone(),
                c.status.clone(),
                c.reason.clone().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                "Available".into(),
                "True".into(),
                "MinimumReplicasAvailable".into()
            ),
            (
                "Progressing".into(),
                "True".into(),
                "NewReplicaSetAvailable".into()
            )
        ]
    );
    let first = c.replica_sets().await;
    assert_eq!(first.len(), 1);
    let hash = &first[0].labels()["pod-template-hash"];
    assert_eq!(first[0].name_any(), format!("web-{hash}"));
    assert_eq!(
        first[0].annotations()["deployment.kubernetes.io/max-replicas"],
        "4"
    );

    // A new image whose pods never become ready: one surge pod, and no
    // ready old pod goes (maxUnavailable 25% of 3 is 0).
    c.deployments()
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "bad:2"}]}}}})),
        )
        .await
        .unwrap();
    wait_for("the new ReplicaSet at 1", WAIT, || async {
        let sets = c.replica_sets().await;
        let new = sets.iter().find(|rs| revision(rs) == "2")?;
        (new.spec.as_ref()?.replicas == Some(1)).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let d = c.deployments().get("web").await.unwrap();
    let s = d.status.unwrap();
    assert_eq!(
        s.available_replicas,
        Some(3),
        "no available pod was taken down"
    );
    let old = c
        .replica_sets()
        .await
        .into_iter()
        .find(|rs| revision(rs) == "1")
        .unwrap();
    assert_eq!(old.spec.as_ref().unwrap().replicas, Some(3));

    // Back to the first template (as `kubectl rollout undo` patches it):
    // its ReplicaSet becomes revision 3 and the broken one goes to zero.
    c.deployments()
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "good:1"}]}}}})),
        )
        .await
        .unwrap();
    wait_for("rolled back", WAIT, || async {
        let sets = c.replica_sets().await;
        let back = sets.iter().find(|rs| rs.name_any() == old.name_any())?;
        let broken = sets.iter().find(|rs| rs.name_any() != old.name_any())?;
        (revision(back) == "3"
            && back
                .annotations()
                .get("deployment.kubernetes.io/revision-history")
                .map(String::as_str)
                == Some("1")
            && broken.spec.as_ref()?.replicas == Some(0))
        .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_update_and_scale_record_events() {
    let c = Cluster::start().await;
    c.healthy
        .lock()
        .unwrap()
        .extend(["a:1".to_string(), "a:2".to_string()]);
    c.deployments()
        .create(&PostParams::default(), &deployment("app", 4, "a:1"))
        .await
        .unwrap();
    wait_for("app available", WAIT, || async {
        let s = c.deployments().get("app").await.ok()?.status?;
        (s.available_replicas == Some(4)).then_some(())
    })
    .await;
    c.deployments()
        .patch(
            "app",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "a:2"}]}}}})),
        )
        .await
        .unwrap();
    wait_for("rolled out", WAIT, || async {
        let d = c.deployments().get("app").await.ok()?;
        let s = d.status?;
        (s.observed_generation == d.metadata.generation
            && s.updated_replicas == Some(4)
            && s.replicas == Some(4)
            && s.available_replicas == Some(4))
        .then_some(())
    })
    .await;
    c.deployments()
        .patch_scale(
            "app",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 6}})),
        )
        .await
        .unwrap();
    wait_for("scaled to 6", WAIT, || async {
        let s = c.deployments().get("app").await.ok()?.status?;
        (s.available_replicas == Some(6)).then_some(())
    })
    .await;
    let events: Api<Event> = Api::namespaced(c.client.clone(), "default");
    let msgs: Vec<String> = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("ScalingReplicaSet"))
        .map(|e| {
            // The 10th different message on to are combined into one event,
            // which shows the latest.
            let m = e.message.unwrap_or_default();
            m.trim_start_matches("(combined from similar events): ")
                .to_string()
        })
        .collect();
    let sets = c.replica_sets().await;
    let new = sets
        .iter()
        .find(|rs| revision(rs) == "2")
        .unwrap()
        .name_any();
    let old = sets
        .iter()
        .find(|rs| revision(rs) == "1")
        .unwrap()
        .name_any();
    assert!(
        msgs.contains(&format!("Scaled up replica set {old} from 0 to 4")),
        "{msgs:?}"
    );
    assert!(
        msgs.iter()
            .any(|m| m.starts_with(&format!("Scaled up replica set {new} from 0 to "))),
        "{msgs:?}"
    );
    assert!(
        msgs.iter()
            .any(|m| m.starts_with(&format!("Scaled down replica set {old} from "))),
        "{msgs:?}"
    );
    assert!(
        msgs.contains(&format!("Scaled up replica set {new} from 4 to 6")),
        "{msgs:?}"
    );
}
