//! The workload kinds' API with the real kubectl and no controllers:
//! defaults and dry-run output as Kubernetes prints them, printing columns,
//! the `scale` subresource, validation messages, generations, discovery
//! and the garbage collector's finalizers on DELETE.

use crate::common;

use common::{send, Harness};
use serde_json::{json, Value};

const PLATFORM: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../testdata/kubernetes-v1.32/platform"
);

/// The output of the first `$ command` in a reference file starting with
/// `command`.
fn reference_block(file: &str, command: &str) -> String {
    let text = std::fs::read_to_string(format!("{PLATFORM}/{file}"))
        .unwrap_or_else(|e| panic!("reading {file}: {e}"));
    let start = text
        .find(&format!("$ {command}\n"))
        .unwrap_or_else(|| panic!("{file} has no `{command}`"));
    let body = &text[start..];
    let body = &body[body.find('\n').unwrap() + 1..];
    let end = body.find("\n$ ").unwrap_or(body.len());
    body[..end].trim_end().to_string()
}

/// Replaces the values that differ on every run (timestamps, uids).
fn scrub(yaml: &str) -> String {
    yaml.lines()
        .map(|l| {
            let t = l.trim_start();
            let indent = &l[..l.len() - t.len()];
            if t.starts_with("creationTimestamp: \"") {
                format!("{indent}creationTimestamp: X")
            } else if t.starts_with("uid: ") {
                format!("{indent}uid: X")
            } else if t.starts_with("resourceVersion: ") {
                format!("{indent}resourceVersion: X")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_deployment_dry_run_prints_kubernetes_defaults() {
    let h = Harness::start().await;
    let out = h
        .kubectl(&[
            "create",
            "deployment",
            "dd",
            "--image=nginx",
            "--dry-run=server",
            "-o",
            "yaml",
        ])
        .await;
    let want = reference_block(
        "05-dry-run.txt",
        "kubectl create deployment dd --image=nginx --dry-run=server -o yaml",
    );
    assert_eq!(scrub(out.trim_end()), scrub(&want));
    let err = h.kubectl_fails(&["get", "deploy", "dd"], None).await;
    assert_eq!(
        err.trim(),
        r#"Error from server (NotFound): deployments.apps "dd" not found"#
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployments_print_scale_and_count_generations() {
    let h = Harness::start().await;
    let out = h
        .kubectl(&[
            "create",
            "deployment",
            "web",
            "--image=nginx",
            "--replicas=3",
        ])
        .await;
    assert_eq!(out.trim(), "deployment.apps/web created");
    let get = h.kubectl(&["get", "deploy", "-o", "wide"]).await;
    let header = get.lines().next().unwrap();
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>(),
        [
            "NAME",
            "READY",
            "UP-TO-DATE",
            "AVAILABLE",
            "AGE",
            "CONTAINERS",
            "IMAGES",
            "SELECTOR"
        ]
    );
    let row: Vec<&str> = get.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row[..4], ["web", "0/3", "0", "0"]);
    assert_eq!(row[5..], ["nginx", "nginx", "app=web"]);

    let out = h.kubectl(&["scale", "deploy", "web", "--replicas=5"]).await;
    assert_eq!(out.trim(), "deployment.apps/web scaled");
    let d: Value =
        serde_json::from_str(&h.kubectl(&["get", "deploy", "web", "-o", "json"]).await).unwrap();
    assert_eq!(d["spec"]["replicas"], 5);
    assert_eq!(d["metadata"]["generation"], 2);

    // A status write changes neither the spec nor the generation.
    let client = h.client().await;
    let uri = "/apis/apps/v1/namespaces/default/deployments/web/status";
    let (code, v, _) = send(
        &client,
        "PATCH",
        uri,
        "application/merge-patch+json",
        json!({"spec": {"replicas": 9}, "status": {"observedGeneration": 2, "replicas": 5}})
            .to_string()
            .into_bytes(),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["spec"]["replicas"], 5);
    assert_eq!(v["metadata"]["generation"], 2);
    assert_eq!(v["status"]["replicas"], 5);

    // The Scale as kubectl sees it.
    let (code, scale, _) = send(
        &client,
        "GET",
        "/apis/apps/v1/namespaces/default/deployments/web/scale",
        "application/json",
        vec![],
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["apiVersion"], "autoscaling/v1");
    assert_eq!(scale["spec"], json!({"replicas": 5}));
    assert_eq!(
        scale["status"],
        json!({"replicas": 5, "selector": "app=web"})
    );

    let err = h
        .kubectl_fails(&["scale", "deploy", "web", "--replicas=-1"], None)
        .await;
    assert!(
        err.contains("--replicas=COUNT") || err.contains("must be greater than or equal to 0"),
        "{err}"
    );
    let (code, v, _) = send(
        &client,
        "PATCH",
        "/apis/apps/v1/namespaces/default/deployments/web/scale",
        "application/merge-patch+json",
        br#"{"spec":{"replicas":-1}}"#.to_vec(),
    )
    .await;
    assert_eq!(code, 422, "{v}");
    assert_eq!(
        v["message"],
        r#"Scale.autoscaling "web" is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0"#
    );

    let out = h
        .kubectl(&["set", "image", "deploy/web", "nginx=nginx:1.27"])
        .await;
    assert_eq!(out.trim(), "deployment.apps/web image updated");
    let gen = h
        .kubectl(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.metadata.generation}",
        ])
        .await;
    assert_eq!(gen, "3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_workloads_are_refused_with_kubernetes_messages() {
    let h = Harness::start().await;
    let mismatch = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: bad
spec:
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: other
    spec:
      containers:
      - name: c
        image: nginx
"#;
    let err = h
        .kubectl_fails(&["create", "-f", "-"], Some(mismatch))
        .await;
    assert_eq!(
        err.trim(),
        "The Deployment \"bad\" is invalid: spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"other\"}: `selector` does not match template `labels`"
    );

    h.kubectl(&["create", "deployment", "web", "--image=nginx"])
        .await;
    let err = h
        .kubectl_fails(
            &[
                "patch",
                "deploy",
                "web",
                "--type=merge",
                "-p",
                r#"{"spec":{"selector":{"matchLabels":{"app":"x"}},"template":{"metadata":{"labels":{"app":"x"}}}}}"#,
            ],
            None,
        )
        .await;
    assert!(
        err.contains("spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"x\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_controllers_default_from_their_template() {
    let h = Harness::start().await;
    let rc = reference_block("01-replicationcontroller.txt", "cat rc.yaml");
    let out = h.kubectl_stdin(&["create", "-f", "-"], Some(&rc)).await;
    assert_eq!(out.trim(), "replicationcontroller/legacy created");
    let get = h.kubectl(&["get", "rc", "-o", "wide"]).await;
    let row: Vec<&str> = get.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row[..4], ["legacy", "2", "0", "0"]);
    assert_eq!(row[5..], ["legacy", "nginx", "app=legacy"]);
    let labels = h
        .kubectl(&[
            "get",
            "rc",
            "legacy",
            "-o",
            "jsonpath={.metadata.labels.app}",
        ])
        .await;
    assert_eq!(labels, "legacy");
    let out = h.kubectl(&["scale", "rc", "legacy", "--replicas=4"]).await;
    assert_eq!(out.trim(), "replicationcontroller/legacy scaled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_lists_apps_v1_as_kubernetes() {
    let h = Harness::start().await;
    let out = h.kubectl(&["api-resources", "-o", "wide"]).await;
    let reference = reference_block("08-api-resources.txt", "kubectl api-resources -o wide");
    for name in [
        "deployments",
        "replicasets",
        "replicationcontrollers",
        "podtemplates",
    ] {
        let line = |t: &str| {
            t.lines()
                .find(|l| l.split_whitespace().next() == Some(name))
                .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        };
        assert_eq!(line(&out), line(&reference), "{name}");
    }
    let versions = h.kubectl(&["api-versions"]).await;
    assert!(versions.lines().any(|l| l == "apps/v1"), "{versions}");
    let client = h.client().await;
    let (_, list, _) = send(&client, "GET", "/apis/apps/v1", "application/json", vec![]).await;
    let scale = list["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "deployments/scale")
        .expect("deployments/scale is listed");
    assert_eq!(
        scale,
        &json!({"name": "deployments/scale", "singularName": "", "namespaced": true,
            "group": "autoscaling", "version": "v1", "kind": "Scale",
            "verbs": ["get", "patch", "update"]})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_sets_the_garbage_collectors_finalizers() {
    let h = Harness::start().await;
    let client = h.client().await;
    for name in ["fg", "orphan", "bg"] {
        h.kubectl(&["create", "deployment", name, "--image=nginx"])
            .await;
    }
    let del = |name: &str, body: Value| {
        let client = client.clone();
        let uri = format!("/apis/apps/v1/namespaces/default/deployments/{name}");
        async move {
            send(
                &client,
                "DELETE",
                &uri,
                "application/json",
                body.to_string().into_bytes(),
            )
            .await
        }
    };
    let (code, v, _) = del("fg", json!({"propagationPolicy": "Foreground"})).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["metadata"]["finalizers"], json!(["foregroundDeletion"]));
    assert!(v["metadata"]["deletionTimestamp"].is_string());
    // Asked again to orphan: the finalizer follows the new request.
    let (_, v, _) = del("fg", json!({"propagationPolicy": "Orphan"})).await;
    assert_eq!(v["metadata"]["finalizers"], json!(["orphan"]));

    let (_, v, _) = del("orphan", json!({"orphanDependents": true})).await;
    assert_eq!(v["metadata"]["finalizers"], json!(["orphan"]));

    // Background: gone at once, answered with a Status as Kubernetes does.
    let (code, v, _) = del("bg", json!({"propagationPolicy": "Background"})).await;
    assert_eq!(code, 200);
    assert_eq!(v["kind"], "Status");
    assert_eq!(v["status"], "Success");
    assert_eq!(v["details"]["name"], "bg");
    assert_eq!(v["details"]["group"], "apps");
    assert_eq!(v["details"]["kind"], "deployments");

    let (code, v, _) = del("fg", json!({"propagationPolicy": "Sometimes"})).await;
    assert_eq!(code, 422);
    assert_eq!(
        v["message"],
        r#"DeleteOptions.meta.k8s.io "" is invalid: propagationPolicy: Unsupported value: "Sometimes": supported values: "Foreground", "Background", "Orphan", "nil""#
    );

    // A ReplicationController orphans its pods unless told otherwise.
    let rc = reference_block("01-replicationcontroller.txt", "cat rc.yaml");
    h.kubectl_stdin(&["create", "-f", "-"], Some(&rc)).await;
    let (code, v, _) = send(
        &client,
        "DELETE",
        "/api/v1/namespaces/default/replicationcontrollers/legacy",
        "application/json",
        vec![],
    )
    .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["metadata"]["finalizers"], json!(["orphan"]));
}
