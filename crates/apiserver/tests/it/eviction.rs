//! pods/eviction against PodDisruptionBudgets whose status is written here
//! as the disruption controller would: graceful deletion without a budget,
//! 429 with Kubernetes' wording when the budget has no disruption left, the
//! decrement recorded in the budget, dry run, RBAC, discovery and OpenAPI.

use crate::common;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{json, Value};

/// A pod of `app`, bound to node-a and Running and Ready (or just Running
/// when `ready` is false).
async fn running_pod(client: &kube::Client, name: &str, app: &str, ready: bool) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": app}},
        "spec": {"nodeName": "node-a", "terminationGracePeriodSeconds": 20,
                 "containers": [{"name": "c", "image": "busybox"}]},
    }))
    .expect("pod");
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("create pod");
    let ready = if ready { "True" } else { "False" };
    let status = json!({"status": {"phase": "Running", "conditions": [
        {"type": "Ready", "status": ready, "lastTransitionTime": "2026-01-01T00:00:00Z"}]}});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("pod status");
}

/// A budget over `app` whose status says `allowed` disruptions, as the
/// disruption controller would have computed for `healthy` of `desired`.
async fn budget(client: &kube::Client, name: &str, app: &str, desired: i32, healthy: i32) {
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), "default");
    let pdb: PodDisruptionBudget = serde_json::from_value(json!({
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"name": name},
        "spec": {"minAvailable": desired, "selector": {"matchLabels": {"app": app}}},
    }))
    .expect("pdb");
    pdbs.create(&PostParams::default(), &pdb)
        .await
        .expect("create pdb");
    set_budget_status(client, name, desired, healthy, 1).await;
}

async fn set_budget_status(
    client: &kube::Client,
    name: &str,
    desired: i32,
    healthy: i32,
    observed: i64,
) {
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), "default");
    let status = json!({"status": {
        "observedGeneration": observed, "desiredHealthy": desired, "currentHealthy": healthy,
        "expectedPods": healthy, "disruptionsAllowed": (healthy - desired).max(0)}});
    pdbs.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("pdb status");
}

fn eviction(name: &str, api_version: &str, delete_options: Value) -> Vec<u8> {
    let mut e = json!({"apiVersion": api_version, "kind": "Eviction",
                       "metadata": {"name": name, "namespace": "default"}});
    if !delete_options.is_null() {
        e["deleteOptions"] = delete_options;
    }
    e.to_string().into_bytes()
}

async fn evict(client: &kube::Client, pod: &str, query: &str, body: Vec<u8>) -> (u16, Value) {
    let (code, v, _) = common::send(
        client,
        "POST",
        &format!("/api/v1/namespaces/default/pods/{pod}/eviction{query}"),
        "application/json",
        body,
    )
    .await;
    (code, v)
}

/// The Retry-After header of an eviction's answer.
async fn retry_after_of(client: &kube::Client, pod: &str) -> Option<String> {
    let req = http::Request::builder()
        .method("POST")
        .uri(format!("/api/v1/namespaces/default/pods/{pod}/eviction"))
        .header("Content-Type", "application/json")
        .body(kube::client::Body::from(eviction(
            pod,
            "policy/v1",
            Value::Null,
        )))
        .unwrap();
    let resp = client.send(req).await.expect("the server answers");
    resp.headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string())
}

async fn get(client: &kube::Client, path: &str) -> Value {
    let (code, v, _) = common::send(client, "GET", path, "application/json", vec![]).await;
    assert_eq!(code, 200, "GET {path}: {v}");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_without_budget_is_deleted_gracefully() {
    let h = common::Harness::start().await;
    let c = h.client().await;
    running_pod(&c, "web", "web", true).await;

    let (code, v) = evict(&c, "web", "", eviction("other", "policy/v1", Value::Null)).await;
    assert_eq!(code, 400, "{v}");
    assert_eq!(
        v["message"],
        "name in URL does not match name in Eviction object"
    );

    let (code, v) = evict(&c, "web", "", eviction("web", "policy/v1", Value::Null)).await;
    assert_eq!(code, 201, "{v}");
    assert_eq!(v["status"], "Success");
    let pod = get(&c, "/api/v1/namespaces/default/pods/web").await;
    assert_eq!(pod["metadata"]["deletionGracePeriodSeconds"], 20, "{pod}");
    let target = pod["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "DisruptionTarget")
        .cloned()
        .expect("DisruptionTarget condition");
    assert_eq!(target["reason"], "EvictionByEvictionAPI");

    // policy/v1beta1 bodies are accepted, with their deleteOptions.
    running_pod(&c, "old", "old", true).await;
    let (code, v) = evict(
        &c,
        "old",
        "",
        eviction("old", "policy/v1beta1", json!({"gracePeriodSeconds": 0})),
    )
    .await;
    assert_eq!(code, 201, "{v}");
    let (code, _, _) = common::send(
        &c,
        "GET",
        "/api/v1/namespaces/default/pods/old",
        "application/json",
        vec![],
    )
    .await;
    assert_eq!(code, 404, "grace 0 removes the pod at once");

    let (code, v) = evict(&c, "gone", "", eviction("gone", "policy/v1", Value::Null)).await;
    assert_eq!(code, 404, "{v}");
    assert_eq!(v["message"], "pods \"gone\" not found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_without_disruptions_left_answers_429() {
    let h = common::Harness::start().await;
    let c = h.client().await;
    running_pod(&c, "web-1", "web", true).await;
    running_pod(&c, "web-2", "web", true).await;
    budget(&c, "web-pdb", "web", 2, 2).await;

    // Real Kubernetes' answer, for its budget `legacy-pdb` in the same state.
    let (code, v) = evict(&c, "web-1", "", eviction("web-1", "policy/v1", Value::Null)).await;
    assert_eq!(code, 429, "{v}");
    let reference = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/kubernetes-v1.32/platform/01-eviction-api-429.txt"
    ))
    .unwrap();
    let body = &reference[reference.find("\n{").unwrap()..];
    let expected: Value = serde_json::from_str(&body.replace("legacy-pdb", "web-pdb")).unwrap();
    assert_eq!(v, expected);

    // One disruption allowed: taken by the eviction, recorded for the pod.
    set_budget_status(&c, "web-pdb", 1, 2, 1).await;
    let (code, v) = evict(&c, "web-1", "", eviction("web-1", "policy/v1", Value::Null)).await;
    assert_eq!(code, 201, "{v}");
    let pdb = get(
        &c,
        "/apis/policy/v1/namespaces/default/poddisruptionbudgets/web-pdb",
    )
    .await;
    assert_eq!(pdb["status"]["disruptionsAllowed"], 0, "{pdb}");
    assert!(pdb["status"]["disruptedPods"]["web-1"].is_string(), "{pdb}");
    assert_eq!(pdb["status"]["conditions"][0]["type"], "DisruptionAllowed");
    assert_eq!(pdb["status"]["conditions"][0]["reason"], "InsufficientPods");
    let pod = get(&c, "/api/v1/namespaces/default/pods/web-1").await;
    assert!(pod["metadata"]["deletionTimestamp"].is_string(), "{pod}");

    // The next one is refused.
    let (code, v) = evict(&c, "web-2", "", eviction("web-2", "policy/v1", Value::Null)).await;
    assert_eq!(code, 429, "{v}");

    // A budget the controller has not looked at since its spec changed.
    set_budget_status(&c, "web-pdb", 1, 2, 0).await;
    let (code, v) = evict(&c, "web-2", "", eviction("web-2", "policy/v1", Value::Null)).await;
    assert_eq!(code, 429, "{v}");
    assert_eq!(
        v["details"]["causes"][0]["message"],
        "The disruption budget web-pdb is still being processed by the server."
    );
    assert_eq!(v["details"]["retryAfterSeconds"], 10);
    let retry_after = retry_after_of(&c, "web-2").await;
    assert_eq!(retry_after.as_deref(), Some("10"));

    // An unready pod goes without a disruption while the budget is met.
    running_pod(&c, "web-3", "web", false).await;
    set_budget_status(&c, "web-pdb", 1, 1, 1).await;
    let (code, v) = evict(&c, "web-3", "", eviction("web-3", "policy/v1", Value::Null)).await;
    assert_eq!(code, 201, "{v}");

    // Two budgets over one pod: the subresource refuses.
    budget(&c, "second", "web", 0, 1).await;
    let (code, v) = evict(&c, "web-2", "", eviction("web-2", "policy/v1", Value::Null)).await;
    assert_eq!(code, 500, "{v}");
    assert_eq!(
        v["message"],
        "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_and_finished_pods_are_evicted_whatever_the_budget() {
    let h = common::Harness::start().await;
    let c = h.client().await;
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    running_pod(&c, "done", "web", true).await;
    let status = json!({"status": {"phase": "Succeeded"}});
    pods.patch_status("done", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("status");
    let pending: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "pending", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pending).await.unwrap();
    budget(&c, "web-pdb", "web", 5, 0).await;
    for name in ["done", "pending"] {
        let (code, v) = evict(&c, name, "", eviction(name, "policy/v1", Value::Null)).await;
        assert_eq!(code, 201, "{name}: {v}");
        let (code, _, _) = common::send(
            &c,
            "GET",
            &format!("/api/v1/namespaces/default/pods/{name}"),
            "application/json",
            vec![],
        )
        .await;
        assert_eq!(code, 404, "{name} is removed at once");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_eviction_writes_nothing() {
    let h = common::Harness::start().await;
    let c = h.client().await;
    running_pod(&c, "web-1", "web", true).await;
    running_pod(&c, "solo", "solo", true).await;
    budget(&c, "web-pdb", "web", 0, 1).await;
    let pod_path = "/api/v1/namespaces/default/pods/web-1";
    let pdb_path = "/apis/policy/v1/namespaces/default/poddisruptionbudgets/web-pdb";
    let (pod, pdb) = (get(&c, pod_path).await, get(&c, pdb_path).await);

    // In the query, and in the deleteOptions (as kubectl drain --dry-run=server).
    let (code, v) = evict(
        &c,
        "web-1",
        "?dryRun=All",
        eviction("web-1", "policy/v1", Value::Null),
    )
    .await;
    assert_eq!(code, 201, "{v}");
    let (code, v) = evict(
        &c,
        "solo",
        "",
        eviction("solo", "policy/v1", json!({"dryRun": ["All"]})),
    )
    .await;
    assert_eq!(code, 201, "{v}");
    assert_eq!(get(&c, pod_path).await, pod);
    assert_eq!(get(&c, pdb_path).await, pdb);
    let solo = get(&c, "/api/v1/namespaces/default/pods/solo").await;
    assert!(solo["metadata"]["deletionTimestamp"].is_null(), "{solo}");

    let (code, v) = evict(
        &c,
        "solo",
        "?dryRun=Some",
        eviction("solo", "policy/v1", Value::Null),
    )
    .await;
    assert_eq!(code, 422, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evicting_takes_create_on_pods_eviction() {
    let h = common::Harness::start().await;
    let c = h.client().await;
    running_pod(&c, "web", "web", true).await;
    let kc = h.user_kubeconfig("bob", &[]);
    let kc = kc.to_str().unwrap();

    let bob = h.client_as("bob", &[]).await;
    let (code, v) = evict(&bob, "web", "", eviction("web", "policy/v1", Value::Null)).await;
    assert_eq!(code, 403, "{v}");
    assert_eq!(
        v["message"],
        "pods \"web\" is forbidden: User \"bob\" cannot create resource \"pods/eviction\" in API group \"\" in the namespace \"default\""
    );

    // The edit role grants it (and what drain reads besides).
    h.kubectl(&[
        "create",
        "rolebinding",
        "bob-edit",
        "--clusterrole=edit",
        "--user=bob",
    ])
    .await;
    let out = h
        .kubectl_with(
            std::path::Path::new(kc),
            &["auth", "can-i", "create", "pods/eviction"],
            None,
        )
        .await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "yes\n");
    let (code, v) = evict(&bob, "web", "", eviction("web", "policy/v1", Value::Null)).await;
    assert_eq!(code, 201, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_lists_pods_eviction_as_kubernetes() {
    let h = common::Harness::start().await;
    let c = h.client().await;
    let v1 = get(&c, "/api/v1").await;
    let eviction = v1["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "pods/eviction")
        .cloned()
        .expect("pods/eviction");
    assert_eq!(
        eviction,
        json!({"name": "pods/eviction", "singularName": "", "namespaced": true,
               "group": "policy", "version": "v1", "kind": "Eviction", "verbs": ["create"]})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_documents_pods_eviction_as_kubernetes() {
    let h = common::Harness::start().await;
    let c = h.client().await;
    const PATH: &str = "/api/v1/namespaces/{namespace}/pods/{name}/eviction";
    let params = |op: &Value| -> Vec<String> {
        op["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                format!(
                    "{}:{}",
                    p["in"].as_str().unwrap(),
                    p["name"].as_str().unwrap()
                )
            })
            .collect()
    };
    let want_params = [
        "path:namespace",
        "path:name",
        "query:dryRun",
        "query:fieldManager",
        "query:fieldValidation",
    ];

    let index = get(&c, "/openapi/v3").await;
    let url = index["paths"]["api/v1"]["serverRelativeURL"]
        .as_str()
        .expect("api/v1 in the index")
        .to_string();
    let v3 = get(&c, &url).await;
    let item = v3["paths"][PATH].as_object().expect("the eviction path");
    assert_eq!(item.keys().collect::<Vec<_>>(), ["post"], "POST only");
    let post = &item["post"];
    assert_eq!(post["x-kubernetes-action"], "post");
    assert_eq!(
        post["x-kubernetes-group-version-kind"],
        json!({"group": "policy", "version": "v1", "kind": "Eviction"})
    );
    assert_eq!(params(post), want_params);
    let eviction_ref = json!({"$ref": "#/components/schemas/io.k8s.api.policy.v1.Eviction"});
    assert_eq!(
        post["requestBody"]["content"]["application/json"]["schema"],
        eviction_ref
    );
    for code in ["200", "201", "202"] {
        assert_eq!(
            post["responses"][code]["content"]["application/json"]["schema"], eviction_ref,
            "{code}"
        );
    }
    let schema = &v3["components"]["schemas"]["io.k8s.api.policy.v1.Eviction"];
    assert!(
        schema["properties"]["deleteOptions"].is_object(),
        "{schema}"
    );
    assert_eq!(
        schema["x-kubernetes-group-version-kind"],
        json!([{"group": "policy", "version": "v1", "kind": "Eviction"}])
    );

    let v2 = get(&c, "/openapi/v2").await;
    let post = &v2["paths"][PATH]["post"];
    assert_eq!(
        post["x-kubernetes-group-version-kind"]["kind"], "Eviction",
        "{post}"
    );
    let mut v2_params = want_params.to_vec();
    v2_params.push("body:body");
    assert_eq!(params(post), v2_params);
    let body = post["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["in"] == "body")
        .unwrap();
    assert_eq!(
        body["schema"],
        json!({"$ref": "#/definitions/io.k8s.api.policy.v1.Eviction"})
    );
    assert!(v2["definitions"]["io.k8s.api.policy.v1.Eviction"].is_object());
    // pods/binding, the other POST-only subresource, is documented alike.
    assert_eq!(
        v2["paths"]["/api/v1/namespaces/{namespace}/pods/{name}/binding"]["post"]
            ["x-kubernetes-group-version-kind"],
        json!({"group": "", "version": "v1", "kind": "Binding"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_evicts_only_its_own_pods() {
    let h = common::Harness::start().await;
    let c = h.client().await;
    running_pod(&c, "web", "web", true).await;
    let other = h.client_as("system:node:node-b", &["system:nodes"]).await;
    let (code, v) = evict(&other, "web", "", eviction("web", "policy/v1", Value::Null)).await;
    assert_eq!(code, 403, "{v}");
    assert_eq!(
        v["message"],
        "pods \"web\" is forbidden: node node-b can only evict pods with spec.nodeName set to itself"
    );
    let own = h.client_as("system:node:node-a", &["system:nodes"]).await;
    let (code, v) = evict(&own, "web", "", eviction("web", "policy/v1", Value::Null)).await;
    assert_eq!(code, 201, "{v}");
}
