//! Two controller managers against one API server: only the holder of the
//! `kube-system/kube-controller-manager` Lease runs the controllers (each
//! pod is created once), and one that shuts down releases the Lease, so
//! the other takes over at once rather than after the lease duration.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::Client;
use orca_testkit::wait_for;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

struct Manager {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

fn manager(server: &orca_apiserver::ApiServer, identity: &str) -> Manager {
    let config = orca_controllers::Config {
        identity: identity.into(),
        // Long enough that a take-over within it can only come from a
        // release.
        lease_duration: Duration::from_secs(30),
        renew_deadline: Duration::from_secs(20),
        retry_period: Duration::from_millis(200),
        ..Default::default()
    };
    let (stop, rx) = tokio::sync::oneshot::channel();
    // The identities `orca server` gives the controllers: the Lease is the
    // controller manager's to take.
    let (manager, per_controller) = orca_testkit::controller_identities(server);
    let clients = orca_controllers::Clients::new(manager, per_controller);
    let task = tokio::spawn(orca_controllers::run(clients, config, async {
        let _ = rx.await;
    }));
    Manager { stop, task }
}

async fn holder(client: &Client) -> Option<String> {
    Api::<Lease>::namespaced(client.clone(), "kube-system")
        .get_opt("kube-controller-manager")
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec?.holder_identity)
        .filter(|h| !h.is_empty())
}

async fn pods(client: &Client) -> usize {
    Api::<Pod>::namespaced(client.clone(), "default")
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_manager_runs_the_controllers_and_hands_over_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let server = orca_testkit::api_server(dir.path()).await;
    let client = orca_testkit::admin_client(&server).await;
    let mut managers = vec![
        Some(manager(&server, "cm-a")),
        Some(manager(&server, "cm-b")),
    ];
    let leader = wait_for("a leader", WAIT, || holder(&client)).await;

    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let rs = json!({"metadata": {"name": "web"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}});
    sets.create(&PostParams::default(), &serde_json::from_value(rs).unwrap())
        .await
        .unwrap();
    wait_for("3 pods", WAIT, || async {
        (pods(&client).await == 3).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(pods(&client).await, 3, "each pod was created once");
    let events = Api::<Event>::namespaced(client.clone(), "default")
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    let creates = events
        .iter()
        .filter(|e| e.reason.as_deref() == Some("SuccessfulCreate"))
        .count();
    assert_eq!(creates, 3);

    // The leader shuts down: the other takes over well within the lease
    // duration, and runs the controllers.
    let idx = if leader == "cm-a" { 0 } else { 1 };
    let m = managers[idx].take().unwrap();
    let stopped = Instant::now();
    let _ = m.stop.send(());
    m.task.await.unwrap().unwrap();
    let next = wait_for("a new leader", WAIT, || async {
        holder(&client).await.filter(|h| *h != leader)
    })
    .await;
    assert!(
        stopped.elapsed() < Duration::from_secs(10),
        "took over only after {:?}",
        stopped.elapsed()
    );
    assert_ne!(next, leader);
    sets.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"replicas": 5}})),
    )
    .await
    .unwrap();
    wait_for("5 pods", WAIT, || async {
        (pods(&client).await == 5).then_some(())
    })
    .await;
    for m in managers.into_iter().flatten() {
        let _ = m.stop.send(());
        let _ = m.task.await;
    }
}
