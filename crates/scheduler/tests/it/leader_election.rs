//! Two schedulers against one store never bind a pod twice: with leader
//! election only the Lease holder schedules, and when it dies the other
//! takes over; without it, the API's bind-once rule still holds.

use crate::common;

use std::collections::HashMap;
use std::time::Duration;

use common::{pod, wait_for, Cluster, Pool, WAIT};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Event;
use kube::api::ListParams;
use kube::Api;

fn elected(identity: &str) -> orca_scheduler::Config {
    orca_scheduler::Config {
        leader_elect: true,
        identity: identity.to_string(),
        lease_duration: Duration::from_secs(3),
        renew_deadline: Duration::from_secs(2),
        retry_period: Duration::from_millis(300),
        ..Default::default()
    }
}

/// Scheduled events per pod (their messages), once `n` pods have one.
async fn scheduled_events(c: &Cluster, n: usize) -> HashMap<String, Vec<String>> {
    let events = wait_for(&format!("Scheduled events for {n} pods"), WAIT, || async {
        let e = list_scheduled(c).await;
        (e.len() >= n).then_some(e)
    })
    .await;
    // Events are written after the bind returns: give a duplicate (if
    // there were one) the chance to show up before judging.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let again = list_scheduled(c).await;
    assert_eq!(events.len(), again.len());
    again
}

async fn list_scheduled(c: &Cluster) -> HashMap<String, Vec<String>> {
    let api: Api<Event> = Api::namespaced(c.client.clone(), "default");
    let mut per_pod: HashMap<String, Vec<String>> = HashMap::new();
    for e in api
        .list(&ListParams::default())
        .await
        .expect("list events")
        .items
    {
        if e.reason.as_deref() == Some("Scheduled") {
            per_pod
                .entry(e.involved_object.name.clone().unwrap_or_default())
                .or_default()
                .push(e.message.clone().unwrap_or_default());
        }
    }
    per_pod
}

async fn create_and_wait(c: &Cluster, prefix: &str, n: usize) {
    futures::future::join_all((0..n).map(|i| c.create_pod(pod(&format!("{prefix}-{i}"), None))))
        .await;
    let pods = c.pods();
    wait_for(&format!("all {prefix} pods bound"), WAIT, || async {
        let list = pods.list(&ListParams::default()).await.ok()?;
        list.items
            .iter()
            .filter(|p| p.metadata.name.as_deref().unwrap_or("").starts_with(prefix))
            .all(|p| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some())
            .then_some(())
    })
    .await;
}

async fn holder(c: &Cluster) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(c.client.clone(), "kube-system");
    leases
        .get_opt("orca-scheduler")
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec?.holder_identity)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_elected_schedulers_bind_each_pod_once_and_fail_over() {
    let mut c = Cluster::start().await;
    c.add_pool(Pool::new("node-", 10, "32", 1)).await;
    let mut a = Some(c.scheduler(elected("sched-a")));
    let mut b = Some(c.scheduler(elected("sched-b")));

    create_and_wait(&c, "first", 200).await;
    // Reports of the first batch are written asynchronously; a killed
    // process would lose its unsent ones, which is not what this test is about.
    scheduled_events(&c, 200).await;
    let leader = holder(&c).await.expect("a leader holds the Lease");

    // Kill the leader; the other takes over once the Lease expires.
    if leader == "sched-a" {
        a.take().unwrap().stop();
    } else {
        b.take().unwrap().stop();
    }
    create_and_wait(&c, "second", 100).await;
    let new_leader = holder(&c).await.expect("a leader holds the Lease");
    assert_ne!(new_leader, leader);

    let events = scheduled_events(&c, 300).await;
    assert_eq!(events.len(), 300);
    for (pod, messages) in &events {
        assert_eq!(
            messages.len(),
            1,
            "{pod} was reported scheduled {messages:?}"
        );
        let node = c.pod(pod).await.spec.unwrap().node_name.unwrap();
        assert!(
            messages[0].ends_with(&format!(" to {node}")),
            "{pod}: {messages:?} vs {node}"
        );
    }
    drop((a, b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_unelected_schedulers_still_bind_each_pod_once() {
    let mut c = Cluster::start().await;
    c.add_pool(Pool::new("node-", 10, "32", 1)).await;
    let unelected = |id: &str| orca_scheduler::Config {
        leader_elect: false,
        identity: id.to_string(),
        ..Default::default()
    };
    let _a = c.scheduler(unelected("racer-a"));
    let _b = c.scheduler(unelected("racer-b"));

    create_and_wait(&c, "race", 300).await;
    let events = scheduled_events(&c, 300).await;
    assert_eq!(events.len(), 300);
    for (pod, messages) in &events {
        assert_eq!(
            messages.len(),
            1,
            "{pod} was reported scheduled {messages:?}"
        );
        let node = c.pod(pod).await.spec.unwrap().node_name.unwrap();
        assert!(messages[0].ends_with(&format!(" to {node}")));
    }
}
