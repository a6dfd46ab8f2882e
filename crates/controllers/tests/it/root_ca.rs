//! The root CA publisher against a real API server: `kube-root-ca.crt` in
//! every namespace, new ones included, made again after a delete and put
//! back after an edit, shaped as Kubernetes' (04-kube-root-ca.txt).

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use orca_testkit::wait_for;

const WAIT: Duration = Duration::from_secs(30);

/// The ConfigMap in `namespace` once it holds `ca`.
async fn published(client: &kube::Client, namespace: &str, ca: &str) -> ConfigMap {
    let api = Api::<ConfigMap>::namespaced(client.clone(), namespace);
    wait_for(
        &format!("kube-root-ca.crt in {namespace}"),
        WAIT,
        || async {
            api.get_opt("kube-root-ca.crt")
                .await
                .ok()
                .flatten()
                .filter(|cm| {
                    cm.data
                        .as_ref()
                        .and_then(|d| d.get("ca.crt"))
                        .map(String::as_str)
                        == Some(ca)
                })
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_namespace_gets_the_cluster_ca_and_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = orca_testkit::api_server(dir.path()).await;
    let client = orca_testkit::admin_client(&server).await;
    let ca = std::fs::read_to_string(dir.path().join("tls/ca.crt")).unwrap();
    // With the identities `orca server` gives it: the bootstrap policy's
    // roles are what lets it read and write.
    use orca_apiserver::auth::UserInfo;
    let controller = tokio::spawn(orca_controllers::rootca::run(
        server.local_client(UserInfo::kube_controller_manager()),
        server.local_client(UserInfo::controller("root-ca-cert-publisher")),
        ca.clone(),
    ));

    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        published(&client, ns, &ca).await;
    }
    let cm = published(&client, "default", &ca).await;
    let annotations = cm.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        annotations.get("kubernetes.io/description").map(String::as_str),
        Some("Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.")
    );
    assert_eq!(cm.data.unwrap().len(), 1);

    let mut ns = Namespace::default();
    ns.metadata.name = Some("fresh".into());
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    published(&client, "fresh", &ca).await;

    let api = Api::<ConfigMap>::namespaced(client.clone(), "fresh");
    let old_uid = api.get("kube-root-ca.crt").await.unwrap().metadata.uid;
    api.delete("kube-root-ca.crt", &DeleteParams::default())
        .await
        .unwrap();
    let again = published(&client, "fresh", &ca).await;
    assert_ne!(again.metadata.uid, old_uid, "made again after the delete");

    let edit = serde_json::json!({"data": {"ca.crt": "not a CA", "extra": "x"},
        "metadata": {"annotations": {"kubernetes.io/description": null}}});
    api.patch(
        "kube-root-ca.crt",
        &PatchParams::default(),
        &Patch::Merge(&edit),
    )
    .await
    .unwrap();
    let repaired = published(&client, "fresh", &ca).await;
    assert_eq!(repaired.data.unwrap().len(), 1, "the extra key is gone");
    assert!(repaired
        .metadata
        .annotations
        .unwrap()
        .contains_key("kubernetes.io/description"));
    controller.abort();
}
