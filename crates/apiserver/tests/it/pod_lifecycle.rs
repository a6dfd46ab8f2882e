//! Binding and graceful deletion of pods, as a scheduler and node agent
//! drive them.

use crate::common;

use k8s_openapi::api::core::v1::{Binding, Pod};
use kube::api::{Api, DeleteParams, PostParams};

fn pod(name: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox"}], "terminationGracePeriodSeconds": 20},
    }))
    .expect("pod")
}

fn binding(pod: &str, node: &str) -> Vec<u8> {
    let b: Binding = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Binding",
        "metadata": {"name": pod},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    }))
    .expect("binding");
    serde_json::to_vec(&b).expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bound_pods_terminate_gracefully_until_a_grace_zero_delete() {
    let h = common::Harness::start().await;
    let pods: Api<Pod> = Api::namespaced(h.client().await, "default");
    pods.create(&PostParams::default(), &pod("web"))
        .await
        .expect("create");

    pods.create_subresource::<serde_json::Value>(
        "binding",
        "web",
        &PostParams::default(),
        binding("web", "node-a"),
    )
    .await
    .expect("bind");
    let p = pods.get("web").await.expect("get");
    assert_eq!(
        p.spec.as_ref().and_then(|s| s.node_name.as_deref()),
        Some("node-a")
    );
    let cond = p
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"))
        .expect("PodScheduled");
    assert_eq!(cond.status, "True");

    // A second binding conflicts.
    let err = pods
        .create_subresource::<serde_json::Value>(
            "binding",
            "web",
            &PostParams::default(),
            binding("web", "node-b"),
        )
        .await
        .expect_err("already bound");
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 409 && s.message.contains("already assigned to node \"node-a\"")),
        "{err}"
    );

    // Delete: the pod stays, marked with the spec's grace period.
    pods.delete("web", &DeleteParams::default())
        .await
        .expect("delete");
    let p = pods.get("web").await.expect("still there");
    assert!(p.metadata.deletion_timestamp.is_some());
    assert_eq!(p.metadata.deletion_grace_period_seconds, Some(20));
    let table = h.kubectl(&["get", "pod", "web"]).await;
    assert!(table.contains("Terminating"), "{table}");
    // A shorter grace period shortens it; a longer one does not lengthen it.
    pods.delete(
        "web",
        &DeleteParams {
            grace_period_seconds: Some(5),
            ..Default::default()
        },
    )
    .await
    .expect("delete");
    pods.delete(
        "web",
        &DeleteParams {
            grace_period_seconds: Some(50),
            ..Default::default()
        },
    )
    .await
    .expect("delete");
    let p = pods.get("web").await.expect("still there");
    assert_eq!(p.metadata.deletion_grace_period_seconds, Some(5));
    // The node agent confirms with grace 0 (and the uid as a precondition).
    let uid = p.metadata.uid.clone().expect("uid");
    pods.delete(
        "web",
        &DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(kube::api::Preconditions {
                uid: Some(uid),
                resource_version: None,
            }),
            ..Default::default()
        },
    )
    .await
    .expect("final delete");
    assert!(pods.get_opt("web").await.expect("get").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_delete_and_preconditions() {
    let h = common::Harness::start().await;
    let pods: Api<Pod> = Api::namespaced(h.client().await, "default");
    pods.create(&PostParams::default(), &pod("forced"))
        .await
        .expect("create");
    pods.create_subresource::<serde_json::Value>(
        "binding",
        "forced",
        &PostParams::default(),
        binding("forced", "node-a"),
    )
    .await
    .expect("bind");
    let err = pods
        .delete(
            "forced",
            &DeleteParams {
                preconditions: Some(kube::api::Preconditions {
                    uid: Some("other".into()),
                    resource_version: None,
                }),
                ..Default::default()
            },
        )
        .await
        .expect_err("wrong uid");
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 409 && s.message.contains("Precondition failed: UID in precondition: other")),
        "{err}"
    );
    let out = h
        .kubectl(&["delete", "pod", "forced", "--grace-period=0", "--force"])
        .await;
    assert!(out.contains("pod \"forced\" force deleted"), "{out}");
    assert!(pods.get_opt("forced").await.expect("get").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_deletion_empties_it() {
    let h = common::Harness::start().await;
    h.kubectl(&["create", "namespace", "scratch"]).await;
    common::default_service_account(&h.client().await, "scratch").await;
    h.kubectl(&["run", "p", "-n", "scratch", "--image=busybox"])
        .await;
    h.kubectl(&[
        "create",
        "configmap",
        "cm",
        "-n",
        "scratch",
        "--from-literal=a=b",
    ])
    .await;
    let out = h.kubectl(&["delete", "namespace", "scratch"]).await;
    assert_eq!(out.trim(), "namespace \"scratch\" deleted");
    // kubectl waits for the namespace to be gone; nothing is left in it.
    let err = h
        .kubectl_fails(&["get", "namespace", "scratch"], None)
        .await;
    assert!(err.contains("not found"), "{err}");
    let err = h
        .kubectl_fails(&["delete", "namespace", "default"], None)
        .await;
    assert!(err.contains("this namespace may not be deleted"), "{err}");
}
