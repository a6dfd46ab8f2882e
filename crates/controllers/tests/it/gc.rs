//! The garbage collector with the ReplicaSet and Deployment controllers
//! against a real API server: background, foreground and orphan deletion
//! as Kubernetes carries them out. Pods hold a finalizer of the test's
//! where it must see the order of deletions (no node removes them).

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use orca_testkit::wait_for;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);
const HOLD: &str = "test.orca.dev/hold";

struct Cluster {
    _dir: tempfile::TempDir,
    _server: orca_apiserver::ApiServer,
    client: Client,
    tasks: Vec<tokio::task::JoinHandle<()>>,
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
        // The identities `orca server` gives the controllers: the bootstrap
        // policy's roles are what lets them work.
        let (manager, per_controller) = orca_testkit::controller_identities(&server);
        let clients = orca_controllers::Clients::new(manager, per_controller);
        let tasks = vec![
            tokio::spawn({
                let c = clients.clone();
                async move { orca_controllers::replicaset::run(&c).await.unwrap() }
            }),
            tokio::spawn({
                let c = clients.clone();
                async move { orca_controllers::deployment::run(&c).await.unwrap() }
            }),
            tokio::spawn(async move { orca_controllers::gc::run(&clients).await.unwrap() }),
        ];
        Cluster {
            _dir: dir,
            _server: server,
            client,
            tasks,
        }
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), "default")
    }

    fn sets(&self) -> Api<ReplicaSet> {
        Api::namespaced(self.client.clone(), "default")
    }

    async fn pods_labelled(&self, app: &str) -> Vec<Pod> {
        self.pods()
            .list(&ListParams::default().labels(&format!("app={app}")))
            .await
            .unwrap()
            .items
    }

    async fn replica_set(&self, name: &str, hold: bool) -> Vec<Pod> {
        let mut rs = json!({"metadata": {"name": name},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}},
                "template": {"metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}});
        if hold {
            rs["spec"]["template"]["metadata"]["finalizers"] = json!([HOLD]);
        }
        self.sets()
            .create(&PostParams::default(), &serde_json::from_value(rs).unwrap())
            .await
            .unwrap();
        wait_for("2 pods", WAIT, || async {
            let p = self.pods_labelled(name).await;
            (p.len() == 2).then_some(p)
        })
        .await
    }

    async fn release(&self, pods: &[Pod]) {
        for p in pods {
            let _ = self
                .pods()
                .patch(
                    &p.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&json!({"metadata": {"finalizers": null}})),
                )
                .await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_deletes_the_owner_then_its_dependents() {
    let c = Cluster::start().await;
    c.replica_set("bg", false).await;
    c.sets()
        .delete("bg", &DeleteParams::background())
        .await
        .unwrap();
    assert!(
        c.sets().get_opt("bg").await.unwrap().is_none(),
        "the owner goes at once"
    );
    wait_for("its pods deleted", WAIT, || async {
        c.pods_labelled("bg").await.is_empty().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreground_deletes_dependents_before_the_owner() {
    let c = Cluster::start().await;
    let pods = c.replica_set("fg", true).await;
    c.sets()
        .delete("fg", &DeleteParams::foreground())
        .await
        .unwrap();
    // The pods are being deleted while their owner waits for them.
    wait_for("pods marked for deletion", WAIT, || async {
        let p = c.pods_labelled("fg").await;
        p.iter()
            .all(|p| p.metadata.deletion_timestamp.is_some())
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let owner = c.sets().get("fg").await.expect("the owner waits");
    assert!(owner.metadata.deletion_timestamp.is_some());
    assert_eq!(owner.finalizers(), ["foregroundDeletion"]);
    c.release(&pods).await;
    wait_for("the owner gone after its pods", WAIT, || async {
        c.sets()
            .get_opt("fg")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    assert!(c.pods_labelled("fg").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreground_waits_for_the_whole_tree() {
    let c = Cluster::start().await;
    let deployments: Api<Deployment> = Api::namespaced(c.client.clone(), "default");
    let d = json!({"metadata": {"name": "tree"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "tree"}},
            "template": {"metadata": {"labels": {"app": "tree"}, "finalizers": [HOLD]},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}});
    deployments
        .create(&PostParams::default(), &serde_json::from_value(d).unwrap())
        .await
        .unwrap();
    let pods = wait_for("2 pods", WAIT, || async {
        let p = c.pods_labelled("tree").await;
        (p.len() == 2).then_some(p)
    })
    .await;
    deployments
        .delete("tree", &DeleteParams::foreground())
        .await
        .unwrap();
    // The ReplicaSet, which has dependents, is deleted in the foreground
    // too: the Deployment waits for the pods, not only for the set.
    wait_for("pods marked for deletion", WAIT, || async {
        let p = c.pods_labelled("tree").await;
        p.iter()
            .all(|p| p.metadata.deletion_timestamp.is_some())
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sets = c.sets().list(&ListParams::default()).await.unwrap().items;
    assert_eq!(sets.len(), 1);
    assert_eq!(sets[0].finalizers(), ["foregroundDeletion"]);
    let owner = deployments.get("tree").await.expect("the Deployment waits");
    assert_eq!(owner.finalizers(), ["foregroundDeletion"]);
    c.release(&pods).await;
    wait_for("the Deployment gone after its pods", WAIT, || async {
        deployments
            .get_opt("tree")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    assert!(c.pods_labelled("tree").await.is_empty());
    assert!(c
        .sets()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphan_keeps_the_dependents_without_their_owner() {
    let c = Cluster::start().await;
    let pods = c.replica_set("or", false).await;
    let params = DeleteParams {
        propagation_policy: Some(kube::api::PropagationPolicy::Orphan),
        ..Default::default()
    };
    c.sets().delete("or", &params).await.unwrap();
    wait_for("the owner gone", WAIT, || async {
        c.sets()
            .get_opt("or")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    let left = c.pods_labelled("or").await;
    assert_eq!(left.len(), 2);
    for p in &left {
        assert!(
            p.owner_references().is_empty(),
            "{:?}",
            p.owner_references()
        );
        assert!(pods.iter().any(|o| o.uid() == p.uid()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_deployment_removes_its_replica_sets_and_pods() {
    let c = Cluster::start().await;
    let deployments: Api<Deployment> = Api::namespaced(c.client.clone(), "default");
    let d = json!({"metadata": {"name": "web"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}});
    deployments
        .create(&PostParams::default(), &serde_json::from_value(d).unwrap())
        .await
        .unwrap();
    wait_for("2 pods", WAIT, || async {
        (c.pods_labelled("web").await.len() == 2).then_some(())
    })
    .await;
    deployments
        .delete("web", &DeleteParams::background())
        .await
        .unwrap();
    wait_for("replica sets and pods gone", WAIT, || async {
        let sets = c.sets().list(&ListParams::default()).await.ok()?.items;
        (sets.is_empty() && c.pods_labelled("web").await.is_empty()).then_some(())
    })
    .await;
}
