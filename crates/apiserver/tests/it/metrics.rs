//! `/metrics` (Prometheus text, kube-apiserver's names and labels, for
//! system:monitoring), `/openapi/v2`, the health checks one by one, and
//! metrics.k8s.io in discovery.

use serde_json::Value;

use crate::common::Harness;

/// The value of the sample whose name and labels start with `prefix`
/// (labels in the encoder's order, which is alphabetical).
fn sample(metrics: &str, prefix: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

const LIST_PODS: &str = "apiserver_request_total{code=\"200\",component=\"apiserver\",dry_run=\"\",group=\"\",resource=\"pods\",scope=\"namespace\",subresource=\"\",verb=\"LIST\",version=\"v1\"}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_with_kube_apiserver_labels() {
    let h = Harness::start().await;
    h.kubectl(&["get", "pods"]).await;
    let before = h.kubectl(&["get", "--raw", "/metrics"]).await;
    let listed = sample(&before, LIST_PODS).unwrap_or_else(|| panic!("{before}"));
    h.kubectl(&["get", "pods"]).await;
    h.kubectl(&["get", "pods"]).await;
    let after = h.kubectl(&["get", "--raw", "/metrics"]).await;
    assert_eq!(sample(&after, LIST_PODS), Some(listed + 2.0), "{after}");
    // Created objects are POSTs, a named read is a GET of scope resource
    // for a cluster-scoped object (a namespace's is of scope namespace, as
    // kube-apiserver's request info reads it), a missing one with its 404.
    h.kubectl(&["create", "namespace", "metrics-ns"]).await;
    h.kubectl_fails(&["get", "node", "nosuch"], None).await;
    let m = h.kubectl(&["get", "--raw", "/metrics"]).await;
    assert!(
        m.contains("apiserver_request_total{code=\"201\",component=\"apiserver\",dry_run=\"\",group=\"\",resource=\"namespaces\",scope=\"cluster\",subresource=\"\",verb=\"POST\",version=\"v1\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("apiserver_request_total{code=\"404\",component=\"apiserver\",dry_run=\"\",group=\"\",resource=\"nodes\",scope=\"resource\",subresource=\"\",verb=\"GET\",version=\"v1\"} 1"),
        "{m}"
    );
    // The histogram: buckets up to +Inf, a count equal to the requests.
    let count = sample(
        &m,
        "apiserver_request_duration_seconds_count{component=\"apiserver\",dry_run=\"\",group=\"\",resource=\"pods\",scope=\"namespace\",subresource=\"\",verb=\"LIST\",version=\"v1\"}",
    );
    assert_eq!(count, Some(listed + 2.0), "{m}");
    assert!(
        m.contains("# TYPE apiserver_request_duration_seconds histogram"),
        "{m}"
    );
    assert!(m.contains("apiserver_request_duration_seconds_bucket{component=\"apiserver\",dry_run=\"\",group=\"\",resource=\"pods\",scope=\"namespace\",subresource=\"\",verb=\"LIST\",version=\"v1\",le=\"0.005\"}"), "{m}");
    assert!(m.contains("le=\"+Inf\""), "{m}");
    assert!(
        m.contains("apiserver_current_inflight_requests{request_kind=\"readOnly\"}"),
        "{m}"
    );
    assert!(
        sample(&m, "apiserver_storage_objects{resource=\"namespaces\"}").is_some_and(|n| n >= 5.0),
        "{m}"
    );
    // A server-side apply is APPLY, not PATCH.
    h.kubectl_stdin(
        &["apply", "--server-side", "-f", "-"],
        Some("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: applied, namespace: default}\ndata: {a: b}\n"),
    )
    .await;
    let m = h.kubectl(&["get", "--raw", "/metrics"]).await;
    assert!(
        m.contains("apiserver_request_total{code=\"201\",component=\"apiserver\",dry_run=\"\",group=\"\",resource=\"configmaps\",scope=\"namespace\",subresource=\"\",verb=\"APPLY\",version=\"v1\"} 1"),
        "{m}"
    );
    // Health probes are counted under their path.
    h.kubectl(&["get", "--raw", "/readyz"]).await;
    let m = h.kubectl(&["get", "--raw", "/metrics"]).await;
    assert!(
        m.contains("apiserver_request_total{code=\"200\",component=\"\",dry_run=\"\",group=\"\",resource=\"\",scope=\"\",subresource=\"/readyz\",verb=\"GET\",version=\"\"}"),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_for_monitoring_only() {
    let h = Harness::start().await;
    let bob = h.user_kubeconfig("bob", &[]);
    let out = h
        .kubectl_with(&bob, &["get", "--raw", "/metrics"], None)
        .await;
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "Error from server (Forbidden): forbidden: User \"bob\" cannot get path \"/metrics\"\n"
    );
    let prom = h.user_kubeconfig("prometheus", &["system:monitoring"]);
    let out = h
        .kubectl_with(&prom, &["get", "--raw", "/metrics"], None)
        .await;
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("# TYPE apiserver_request_total counter"));
    // The single health checks too.
    let out = h
        .kubectl_with(&prom, &["get", "--raw", "/livez/ping"], None)
        .await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_are_listed_and_served_one_by_one() {
    let h = Harness::start().await;
    assert_eq!(h.kubectl(&["get", "--raw", "/livez/ping"]).await, "ok");
    let livez = h.kubectl(&["get", "--raw", "/livez?verbose"]).await;
    assert!(
        livez.starts_with("[+]ping ok\n[+]log ok\n[+]etcd ok\n"),
        "{livez}"
    );
    let readyz = h.kubectl(&["get", "--raw", "/readyz?verbose"]).await;
    assert!(readyz.ends_with("readyz check passed\n"), "{readyz}");
    // Every listed check has its own path.
    for line in readyz.lines().filter_map(|l| l.strip_prefix("[+]")) {
        let name = line.trim_end_matches(" ok");
        assert_eq!(
            h.kubectl(&["get", "--raw", &format!("/readyz/{name}")])
                .await,
            "ok",
            "{name}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_v2_describes_every_group() {
    let h = Harness::start().await;
    let doc: Value =
        serde_json::from_str(&h.kubectl(&["get", "--raw", "/openapi/v2"]).await).expect("JSON");
    assert_eq!(doc["swagger"], "2.0");
    let defs = &doc["definitions"];
    let pod = &defs["io.k8s.api.core.v1.Pod"];
    assert_eq!(pod["x-kubernetes-group-version-kind"][0]["kind"], "Pod");
    assert_eq!(
        pod["properties"]["spec"]["$ref"],
        "#/definitions/io.k8s.api.core.v1.PodSpec"
    );
    assert!(defs["io.k8s.api.apps.v1.Deployment"]["properties"]["spec"].is_object());
    assert!(defs["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]["replicas"].is_object());
    // Operations in Swagger 2.0's shape: the body as a parameter, inline
    // parameter types, a response schema.
    let create = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments"]["post"];
    let params = create["parameters"].as_array().expect("parameters");
    let body = params.iter().find(|p| p["in"] == "body").expect("body");
    assert_eq!(
        body["schema"]["$ref"],
        "#/definitions/io.k8s.api.apps.v1.Deployment"
    );
    let ns = params
        .iter()
        .find(|p| p["name"] == "namespace")
        .expect("ns");
    assert_eq!(ns["type"], "string");
    assert_eq!(
        create["responses"]["200"]["schema"]["$ref"],
        "#/definitions/io.k8s.api.apps.v1.Deployment"
    );
    assert!(!doc.to_string().contains("#/components/schemas/"));
    // client-go asks for gnostic's protobuf alone, under its older name,
    // and gets it under the newer one, with the JSON's ETag; a type neither
    // form matches gets 406.
    let admin = h.client().await;
    let get = |accept: &str| {
        let req = http::Request::get("/openapi/v2")
            .header("accept", accept)
            .body(kube::client::Body::empty())
            .unwrap();
        admin.send(req)
    };
    let json = get("application/json").await.expect("JSON answer");
    let proto = get("application/com.github.proto-openapi.spec.v2@v1.0+protobuf")
        .await
        .expect("protobuf answer");
    assert_eq!(proto.status(), 200);
    assert_eq!(
        proto.headers()["content-type"],
        "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
    );
    assert_eq!(proto.headers()["etag"], json.headers()["etag"]);
    let req = http::Request::get("/openapi/v2")
        .header("accept", "application/json")
        .header("if-none-match", json.headers()["etag"].clone())
        .body(kube::client::Body::empty())
        .unwrap();
    let unchanged = admin.send(req).await.expect("an answer");
    assert_eq!(unchanged.status(), 304);
    let image = get("image/png").await.expect("an answer");
    assert_eq!(image.status(), 406);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_api_is_discovered() {
    let h = Harness::start().await;
    let out = h
        .kubectl(&["api-resources", "--api-group=metrics.k8s.io"])
        .await;
    let lines: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines,
        vec![
            vec!["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"],
            vec!["nodes", "metrics.k8s.io/v1beta1", "false", "NodeMetrics"],
            vec!["pods", "metrics.k8s.io/v1beta1", "true", "PodMetrics"],
        ],
        "{out}"
    );
    // No node has an agent here: nothing to show, in kubectl's words.
    let out = h.kubectl_out(&["top", "pod"], None).await;
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "No resources found in default namespace.\n"
    );
    let got = h
        .kubectl_fails(
            &[
                "get",
                "--raw",
                "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/nosuch",
            ],
            None,
        )
        .await;
    assert_eq!(
        got,
        "Error from server (NotFound): pods \"default/nosuch\" not found\n"
    );
    // Selectors are read as the core kinds' and checked.
    let list = h
        .kubectl(&["get", "--raw", "/apis/metrics.k8s.io/v1beta1/pods?labelSelector=app%3Dx&fieldSelector=spec.nodeName%3Dn"])
        .await;
    let list: Value = serde_json::from_str(&list).unwrap();
    assert_eq!(list["kind"], "PodMetricsList");
    assert_eq!(list["items"], serde_json::json!([]));
    let bad = h
        .kubectl_fails(
            &[
                "get",
                "--raw",
                "/apis/metrics.k8s.io/v1beta1/pods?fieldSelector=spec.bogus%3Dx",
            ],
            None,
        )
        .await;
    assert!(
        bad.starts_with("Error from server (BadRequest): unable to parse fieldSelector"),
        "{bad}"
    );
}
