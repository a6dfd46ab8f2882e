//! Server-side apply and managedFields with the real kubectl: creates,
//! updates, removals, conflicts between managers and their 409, forced
//! takeovers, dry runs, `--show-managed-fields`, and the move from
//! client-side to server-side apply, against the reference transcript of
//! Kubernetes 1.32 (testdata/kubernetes-v1.32/platform/07-server-side-apply.txt).

use crate::common;

use common::{send, Harness};
use serde_json::{json, Value};

const REF: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../testdata/kubernetes-v1.32/platform/07-server-side-apply.txt"
);

const CM: &str =
    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa\ndata:\n  a: \"1\"\n  b: \"2\"\n";
const CM_OTHER: &str =
    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa\ndata:\n  b: \"20\"\n  c: \"3\"\n";

/// The reference's error output of `cmd` (its first run that failed),
/// without the `[exit status 1]` line.
fn reference_error(cmd: &str) -> String {
    let text = std::fs::read_to_string(REF).expect("reference transcript");
    let start = text
        .find(&format!("$ {cmd}\nerror:"))
        .expect("command in the reference");
    let rest = &text[start..];
    let body = &rest[rest.find('\n').unwrap() + 1..];
    let end = body.find("\n$ ").unwrap_or(body.len());
    body[..end]
        .lines()
        .filter(|l| !l.starts_with("[exit status"))
        .collect::<Vec<_>>()
        .join("\n")
        .trim_end()
        .to_string()
}

async fn get_json(h: &Harness, args: &[&str]) -> Value {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", "json", "--show-managed-fields"]);
    serde_json::from_str(&h.kubectl(&all).await).expect("JSON")
}

/// (manager, operation, fieldsV1) of each entry, in the order served.
fn entries(obj: &Value) -> Vec<(String, String, Value)> {
    obj["metadata"]["managedFields"]
        .as_array()
        .expect("managedFields")
        .iter()
        .map(|e| {
            assert_eq!(e["fieldsType"], "FieldsV1");
            // An apply that changes nothing gives a new co-owner no time
            // (kubectl's own apply of the last-applied annotation).
            let no_op = e["manager"] == "kubectl-last-applied";
            assert!(
                no_op || e["time"].as_str().is_some_and(|t| t.ends_with('Z')),
                "{e}"
            );
            (
                e["manager"].as_str().unwrap().to_string(),
                e["operation"].as_str().unwrap().to_string(),
                e["fieldsV1"].clone(),
            )
        })
        .collect()
}

fn entry(manager: &str, op: &str, fields: Value) -> (String, String, Value) {
    (manager.into(), op.into(), fields)
}

fn files(h: &Harness) -> (String, String) {
    let cm = h.dir.path().join("cm.yaml");
    let other = h.dir.path().join("cm-other.yaml");
    std::fs::write(&cm, CM).unwrap();
    std::fs::write(&other, CM_OTHER).unwrap();
    (
        cm.to_string_lossy().into_owned(),
        other.to_string_lossy().into_owned(),
    )
}

/// The reference transcript, step by step.
#[tokio::test]
async fn configmap_apply_conflicts_and_force_as_kubernetes() {
    let h = Harness::start().await;
    let (cm, other) = files(&h);
    let out = h.kubectl(&["apply", "--server-side", "-f", &cm]).await;
    assert_eq!(out.trim(), "configmap/ssa serverside-applied");
    let yaml = h
        .kubectl(&["get", "cm", "ssa", "-o", "yaml", "--show-managed-fields"])
        .await;
    for line in [
        "  managedFields:",
        "  - apiVersion: v1",
        "    fieldsType: FieldsV1",
        "      f:data:",
        "        f:a: {}",
        "    manager: kubectl",
        "    operation: Apply",
    ] {
        assert!(yaml.contains(&format!("{line}\n")), "{line:?} in:\n{yaml}");
    }
    // Hidden unless asked for, as kubectl does.
    let plain = h.kubectl(&["get", "cm", "ssa", "-o", "yaml"]).await;
    assert!(!plain.contains("managedFields"), "{plain}");

    h.kubectl(&["patch", "cm", "ssa", "-p", r#"{"data":{"a":"changed"}}"#])
        .await;
    let v = get_json(&h, &["cm", "ssa"]).await;
    assert_eq!(
        entries(&v),
        vec![
            entry("kubectl", "Apply", json!({"f:data": {"f:b": {}}})),
            entry("kubectl-patch", "Update", json!({"f:data": {"f:a": {}}})),
        ]
    );

    let err = h
        .kubectl_fails(&["apply", "--server-side", "-f", &cm], None)
        .await;
    assert_eq!(
        err.trim_end(),
        reference_error("kubectl apply --server-side -f cm.yaml"),
    );

    let out = h
        .kubectl(&["apply", "--server-side", "-f", &cm, "--force-conflicts"])
        .await;
    assert_eq!(out.trim(), "configmap/ssa serverside-applied");
    let v = get_json(&h, &["cm", "ssa"]).await;
    assert_eq!(v["data"], json!({"a": "1", "b": "2"}));
    assert_eq!(
        entries(&v),
        vec![entry(
            "kubectl",
            "Apply",
            json!({"f:data": {"f:a": {}, "f:b": {}}})
        )]
    );

    let args = [
        "apply",
        "--server-side",
        "--field-manager=other",
        "-f",
        &other,
    ];
    let err = h.kubectl_fails(&args, None).await;
    assert_eq!(
        err.trim_end(),
        reference_error("kubectl apply --server-side --field-manager=other -f cm-other.yaml"),
    );
    let mut forced = args.to_vec();
    forced.push("--force-conflicts");
    h.kubectl(&forced).await;
    let v = get_json(&h, &["cm", "ssa"]).await;
    assert_eq!(v["data"], json!({"a": "1", "b": "20", "c": "3"}));
    assert_eq!(
        entries(&v),
        vec![
            entry("kubectl", "Apply", json!({"f:data": {"f:a": {}}})),
            entry("other", "Apply", json!({"f:data": {"f:b": {}, "f:c": {}}})),
        ]
    );

    // Client-side apply on top: an Update entry of its own.
    let out = h.kubectl_out(&["apply", "-f", &cm], None).await;
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "configmap/ssa configured"
    );
    let v = get_json(&h, &["cm", "ssa"]).await;
    assert_eq!(v["data"], json!({"a": "1", "b": "2", "c": "3"}));
    assert_eq!(
        entries(&v),
        vec![
            entry("kubectl", "Apply", json!({"f:data": {"f:a": {}}})),
            entry("other", "Apply", json!({"f:data": {"f:c": {}}})),
            entry(
                "kubectl-client-side-apply",
                "Update",
                json!({"f:data": {"f:b": {}}, "f:metadata": {"f:annotations": {
                    ".": {}, "f:kubectl.kubernetes.io/last-applied-configuration": {}}}})
            ),
        ]
    );

    // The raw 409 of kube-apiserver.
    h.kubectl(&[
        "patch",
        "cm",
        "ssa",
        "-p",
        r#"{"data":{"a":"changed-again"}}"#,
    ])
    .await;
    let (code, status, _) = send(
        &h.client().await,
        "PATCH",
        "/api/v1/namespaces/default/configmaps/ssa?fieldManager=kubectl&force=false",
        "application/apply-patch+yaml",
        CM.as_bytes().to_vec(),
    )
    .await;
    assert_eq!(code, 409);
    assert_eq!(
        status,
        json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "Apply failed with 1 conflict: conflict with \"kubectl-patch\" using v1: .data.a",
            "reason": "Conflict",
            "details": {"causes": [{
                "reason": "FieldManagerConflict",
                "message": "conflict with \"kubectl-patch\" using v1",
                "field": ".data.a"
            }]},
            "code": 409
        })
    );
}

const DEPLOYMENT: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels:
    app: web
    tier: front
spec:
  replicas: 2
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: nginx
        image: nginx:1.25
        ports:
        - containerPort: 80
        env:
        - name: A
          value: "1"
        - name: B
          value: "2"
"#;

/// Re-applying changes what changed and removes what the configuration
/// no longer sets; what another manager set stays.
#[tokio::test]
async fn deployment_reapply_updates_and_removes_fields() {
    let h = Harness::start().await;
    let out = h
        .kubectl_stdin(&["apply", "--server-side", "-f", "-"], Some(DEPLOYMENT))
        .await;
    assert_eq!(out.trim(), "deployment.apps/web serverside-applied");
    let v = get_json(&h, &["deployment", "web"]).await;
    assert_eq!(v["metadata"]["generation"], 1);
    // Defaults are in the object but nobody's.
    assert_eq!(v["spec"]["strategy"]["type"], "RollingUpdate");
    let e = entries(&v);
    assert_eq!(e.len(), 1);
    let f = &e[0].2;
    assert_eq!(f["f:spec"]["f:selector"], json!({}));
    assert!(f["f:spec"].get("f:strategy").is_none(), "{f}");
    let c = &f["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"nginx\"}"];
    assert_eq!(
        c["f:ports"],
        json!({"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}})
    );
    assert_eq!(
        c["f:env"]["k:{\"name\":\"A\"}"],
        json!({".": {}, "f:name": {}, "f:value": {}})
    );

    // Another manager labels it.
    h.kubectl(&["label", "deployment", "web", "owner=ops"])
        .await;
    // The configuration drops the tier label and env B, changes replicas
    // and the image.
    let changed = DEPLOYMENT
        .replace("    tier: front\n", "")
        .replace("replicas: 2", "replicas: 3")
        .replace("nginx:1.25", "nginx:1.27")
        .replace("        - name: B\n          value: \"2\"\n", "");
    h.kubectl_stdin(&["apply", "--server-side", "-f", "-"], Some(&changed))
        .await;
    let v = get_json(&h, &["deployment", "web"]).await;
    assert_eq!(
        v["metadata"]["labels"],
        json!({"app": "web", "owner": "ops"})
    );
    assert_eq!(v["spec"]["replicas"], 3);
    assert_eq!(v["metadata"]["generation"], 2);
    let c = &v["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["image"], "nginx:1.27");
    assert_eq!(c["env"], json!([{"name": "A", "value": "1"}]));
    let e = entries(&v);
    assert_eq!(e[0].0, "kubectl");
    assert_eq!(e[1].0, "kubectl-label");
    assert_eq!(e[1].2, json!({"f:metadata": {"f:labels": {"f:owner": {}}}}));
    // The same configuration again writes nothing.
    let rv = v["metadata"]["resourceVersion"].clone();
    h.kubectl_stdin(&["apply", "--server-side", "-f", "-"], Some(&changed))
        .await;
    let v = get_json(&h, &["deployment", "web"]).await;
    assert_eq!(v["metadata"]["resourceVersion"], rv);
    // kubectl diff --server-side: a dry-run apply, shown as a diff.
    let out = h
        .kubectl_out(
            &["diff", "--server-side", "-f", "-"],
            Some(&changed.replace("replicas: 3", "replicas: 4")),
        )
        .await;
    let diff = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{diff}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        diff.contains("-  replicas: 3") && diff.contains("+  replicas: 4"),
        "{diff}"
    );
    assert_eq!(
        get_json(&h, &["deployment", "web"]).await["spec"]["replicas"],
        3
    );

    // kubectl scale then apply: a conflict on .spec.replicas.
    h.kubectl(&["scale", "deployment", "web", "--replicas=5"])
        .await;
    let err = h
        .kubectl_fails(&["apply", "--server-side", "-f", "-"], Some(&changed))
        .await;
    assert!(
        err.contains("Apply failed with 1 conflict: conflict with \"kubectl\" with subresource \"scale\" using apps/v1: .spec.replicas"),
        "{err}"
    );
    h.kubectl(&["delete", "deployment", "web"]).await;
}

const POD: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: app
spec:
  containers:
  - name: main
    image: busybox
    command: ["sleep", "3600"]
"#;

/// A pod applied: created (201), the applier owns what it sent, not the
/// defaults or the service account volume admission adds; `kubectl create`
/// owns the defaults it was created with.
#[tokio::test]
async fn pod_apply_and_create_ownership() {
    let h = Harness::start().await;
    let client = h.client().await;
    let (code, v, _) = send(
        &client,
        "PATCH",
        "/api/v1/namespaces/default/pods/app?fieldManager=tool&fieldValidation=Strict&force=false",
        "application/apply-patch+yaml",
        POD.as_bytes().to_vec(),
    )
    .await;
    assert_eq!(code, 201, "{v}");
    assert_eq!(
        entries(&v),
        vec![entry(
            "tool",
            "Apply",
            json!({"f:spec": {"f:containers": {"k:{\"name\":\"main\"}": {
                ".": {}, "f:command": {}, "f:image": {}, "f:name": {}}}}})
        )]
    );
    assert!(v["spec"]["volumes"][0]["name"]
        .as_str()
        .is_some_and(|n| n.starts_with("kube-api-access-")));

    let created = POD.replace("name: app", "name: created");
    h.kubectl_stdin(&["create", "-f", "-"], Some(&created))
        .await;
    let v = get_json(&h, &["pod", "created"]).await;
    let e = entries(&v);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(
        (e[0].0.as_str(), e[0].1.as_str()),
        ("kubectl-create", "Update")
    );
    let spec = &e[0].2["f:spec"];
    assert!(spec.get(".").is_none());
    for f in [
        "f:dnsPolicy",
        "f:restartPolicy",
        "f:schedulerName",
        "f:terminationGracePeriodSeconds",
    ] {
        assert_eq!(spec[f], json!({}), "{f} in {spec}");
    }
    let c = &spec["f:containers"]["k:{\"name\":\"main\"}"];
    assert_eq!(c["f:terminationMessagePath"], json!({}), "{c}");
    assert!(c.get("f:volumeMounts").is_none(), "admission's mount: {c}");
    assert!(
        spec.get("f:volumes").is_none(),
        "admission's volume: {spec}"
    );
    assert!(spec.get("f:serviceAccountName").is_none(), "{spec}");
    assert!(e[0].2.get("f:status").is_none());
}

/// `--dry-run=server` answers what would be written and writes nothing.
#[tokio::test]
async fn dry_run_applies_write_nothing() {
    let h = Harness::start().await;
    let (cm, _) = files(&h);
    let out = h
        .kubectl(&["apply", "--server-side", "--dry-run=server", "-f", &cm])
        .await;
    assert_eq!(
        out.trim(),
        "configmap/ssa serverside-applied (server dry run)"
    );
    let missing = h.kubectl_fails(&["get", "cm", "ssa"], None).await;
    assert!(missing.contains("not found"), "{missing}");

    h.kubectl(&["apply", "--server-side", "-f", &cm]).await;
    let before = get_json(&h, &["cm", "ssa"]).await;
    let changed = CM.replace("b: \"2\"", "b: \"9\"");
    let out = h
        .kubectl_stdin(
            &[
                "apply",
                "--server-side",
                "--dry-run=server",
                "-f",
                "-",
                "-o",
                "json",
            ],
            Some(&changed),
        )
        .await;
    let answered: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(answered["data"]["b"], "9");
    assert_eq!(get_json(&h, &["cm", "ssa"]).await, before);
    // A dry-run conflict is still a conflict.
    h.kubectl(&["patch", "cm", "ssa", "-p", r#"{"data":{"a":"x"}}"#])
        .await;
    let err = h
        .kubectl_fails(
            &["apply", "--server-side", "--dry-run=server", "-f", &cm],
            None,
        )
        .await;
    assert!(
        err.contains("conflict with \"kubectl-patch\" using v1: .data.a"),
        "{err}"
    );
}

/// kubectl's move from client-side to server-side apply: the fields the
/// client-side apply set (in its annotation) pass to the applier without a
/// conflict, and kubectl moves the client-side manager's fields to it.
#[tokio::test]
async fn client_side_then_server_side_apply() {
    let h = Harness::start().await;
    let (cm, _) = files(&h);
    h.kubectl(&["apply", "-f", &cm]).await;
    let v = get_json(&h, &["cm", "ssa"]).await;
    assert_eq!(entries(&v)[0].0, "kubectl-client-side-apply");
    let changed = CM.replace("a: \"1\"", "a: \"5\"");
    let out = h
        .kubectl_stdin(&["apply", "--server-side", "-f", "-"], Some(&changed))
        .await;
    assert_eq!(out.trim(), "configmap/ssa serverside-applied");
    let v = get_json(&h, &["cm", "ssa"]).await;
    assert_eq!(v["data"], json!({"a": "5", "b": "2"}));
    let e = entries(&v);
    let (_, _, applied) = e
        .iter()
        .find(|(m, op, _)| m == "kubectl" && op == "Apply")
        .expect("kubectl's Apply entry");
    assert_eq!(applied["f:data"], json!({"f:a": {}, "f:b": {}}));
    assert!(
        e.iter()
            .all(|(m, _, f)| m != "kubectl-client-side-apply" || f.get("f:data").is_none()),
        "the client-side manager's fields moved: {e:?}"
    );
    // The annotation follows kubectl's server-side applies.
    let last: Value = serde_json::from_str(
        v["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .as_str()
            .expect("annotation kept"),
    )
    .unwrap();
    assert_eq!(last["data"]["a"], "5");
    // And a later client-side apply still works from it.
    h.kubectl(&["apply", "-f", &cm]).await;
    let v = get_json(&h, &["cm", "ssa"]).await;
    assert_eq!(v["data"]["a"], "1");
}

/// The patch options Kubernetes checks, and apply through `status`.
#[tokio::test]
async fn apply_options_and_status_subresource() {
    let h = Harness::start().await;
    let client = h.client().await;
    let cm = CM.as_bytes().to_vec();
    let (code, v, _) = send(
        &client,
        "PATCH",
        "/api/v1/namespaces/default/configmaps/ssa",
        "application/apply-patch+yaml",
        cm.clone(),
    )
    .await;
    assert_eq!(code, 422);
    assert_eq!(
        v["message"],
        "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch"
    );
    let (code, v, _) = send(
        &client,
        "PATCH",
        "/api/v1/namespaces/default/configmaps/ssa?force=true",
        "application/merge-patch+json",
        b"{}".to_vec(),
    )
    .await;
    assert_eq!(code, 422);
    assert_eq!(
        v["message"],
        "PatchOptions.meta.k8s.io \"\" is invalid: force: Forbidden: may not be specified for non-apply patch"
    );
    let (code, v, _) = send(
        &client,
        "PATCH",
        "/api/v1/namespaces/default/configmaps/ssa?fieldManager=m",
        "application/apply-patch+yaml",
        b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: other\n".to_vec(),
    )
    .await;
    assert_eq!(code, 400, "{v}");
    let unknown = CM.replace("\ndata:", "\nbogus: 1\ndata:");
    let (code, v, _) = send(
        &client,
        "PATCH",
        "/api/v1/namespaces/default/configmaps/ssa?fieldManager=m&fieldValidation=Ignore",
        "application/apply-patch+yaml",
        unknown.into_bytes(),
    )
    .await;
    // Kubernetes 1.32's answer, whatever fieldValidation says.
    assert_eq!(
        v,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "failed to create typed patch object (default/ssa; /v1, Kind=ConfigMap): .bogus: field not declared in schema",
            "code": 500})
    );
    assert_eq!(code, 500);
    let (code, _, _) = send(
        &client,
        "PATCH",
        "/api/v1/namespaces/default/configmaps/ssa?fieldManager=m",
        "application/apply-patch+cbor",
        vec![0xa0],
    )
    .await;
    assert_eq!(code, 415);

    // Status through its subresource: a separate entry; the spec stays.
    h.kubectl_stdin(&["apply", "--server-side", "-f", "-"], Some(DEPLOYMENT))
        .await;
    let status = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 9\nstatus:\n  observedGeneration: 1\n  replicas: 2\n";
    let (code, v, _) = send(
        &client,
        "PATCH",
        "/apis/apps/v1/namespaces/default/deployments/web/status?fieldManager=ctl&force=true",
        "application/apply-patch+yaml",
        status.as_bytes().to_vec(),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["spec"]["replicas"], 2);
    assert_eq!(v["status"]["replicas"], 2);
    let e = v["metadata"]["managedFields"].as_array().unwrap();
    let ctl = e
        .iter()
        .find(|e| e["manager"] == "ctl")
        .expect("ctl's entry");
    assert_eq!(ctl["subresource"], "status");
    assert_eq!(ctl["operation"], "Apply");
    assert_eq!(
        ctl["fieldsV1"],
        json!({"f:status": {"f:observedGeneration": {}, "f:replicas": {}}})
    );
    // Applying to the status of a missing object is 404.
    let (code, _, _) = send(
        &client,
        "PATCH",
        "/apis/apps/v1/namespaces/default/deployments/none/status?fieldManager=ctl",
        "application/apply-patch+yaml",
        status.replace("name: web", "name: none").into_bytes(),
    )
    .await;
    assert_eq!(code, 404);
}

/// A kubectl -v=8 log with the JSON quoted into its lines unquoted, from
/// the first `"fieldsV1":` on.
fn logged_from_fields_v1(log: &str) -> String {
    let path = format!(
        "{}/../../testdata/kubernetes-v1.32/{log}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(path).expect("reference log");
    let unquoted = text
        .replace("\\\\", "\u{1}")
        .replace("\\\"", "\"")
        .replace('\u{1}', "\\");
    let start = unquoted.find("\"fieldsV1\":").expect("fieldsV1 in the log") + 11;
    unquoted[start..].to_string()
}

/// The first `"fieldsV1":{...}` in a kubectl -v=8 log's response bodies.
fn logged_fields_v1(log: &str) -> Value {
    let unquoted = logged_from_fields_v1(log);
    let mut depth = 0;
    for (i, c) in unquoted.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return serde_json::from_str(&unquoted[..i + 1]).expect("JSON");
                }
            }
            _ => {}
        }
    }
    panic!("unterminated fieldsV1 in {log}");
}

/// What a create owns, field for field as Kubernetes 1.32 records it for
/// the same requests (`kubectl create --dry-run=server` of a bare pod,
/// `kubectl run`'s pod, `kubectl create deployment`): the defaults, not the
/// admission's additions.
#[tokio::test]
async fn created_objects_own_what_kubernetes_records() {
    let h = Harness::start().await;
    let dry = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"dry","namespace":"default"},"spec":{"containers":[{"image":"nginx","name":"c"}]}}"#;
    let out = h
        .kubectl_stdin(
            &[
                "create",
                "-f",
                "-",
                "--dry-run=server",
                "-o",
                "json",
                "--show-managed-fields",
            ],
            Some(dry),
        )
        .await;
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        entries(&v),
        vec![entry(
            "kubectl-create",
            "Update",
            logged_fields_v1("platform/v8-create-pod-dry-run-server.txt")
        )]
    );
    let run = r#"{"kind":"Pod","apiVersion":"v1","metadata":{"name":"v8-run","creationTimestamp":null,"labels":{"run":"v8-run"}},"spec":{"containers":[{"name":"v8-run","image":"busybox:latest","args":["/bin/sh","-c","sleep 3600"],"resources":{},"imagePullPolicy":"IfNotPresent"}],"restartPolicy":"Always","dnsPolicy":"ClusterFirst"},"status":{}}"#;
    let (code, v, _) = send(
        &h.client().await,
        "POST",
        "/api/v1/namespaces/default/pods?fieldManager=kubectl-run",
        "application/json",
        run.as_bytes().to_vec(),
    )
    .await;
    assert_eq!(code, 201, "{v}");
    assert_eq!(
        entries(&v),
        vec![entry(
            "kubectl-run",
            "Update",
            logged_fields_v1("v8-run.log")
        )]
    );
    // The reference log cuts this one short: compared as far as it goes.
    h.kubectl(&[
        "create",
        "deployment",
        "web",
        "--image=nginx",
        "--replicas=3",
    ])
    .await;
    let v = get_json(&h, &["deployment", "web"]).await;
    let e = entries(&v);
    assert_eq!(
        (e[0].0.as_str(), e[0].1.as_str()),
        ("kubectl-create", "Update")
    );
    let logged = logged_from_fields_v1("platform/v8-scale.txt");
    let logged = &logged[..logged.find(" [truncated").expect("a cut log line")];
    let ours = e[0].2.to_string();
    assert!(
        logged.len() > 500 && ours.starts_with(logged),
        "{ours}\n{logged}"
    );
    // kubectl scale: the scale subresource's entry, without a time as in
    // Kubernetes; kubectl-create no longer owns the replicas.
    h.kubectl(&["scale", "deployment", "web", "--replicas=2"])
        .await;
    let v = get_json(&h, &["deployment", "web"]).await;
    let scale = v["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["subresource"] == "scale")
        .expect("the scale entry");
    assert_eq!(
        scale,
        &json!({"apiVersion": "apps/v1", "fieldsType": "FieldsV1",
            "fieldsV1": {"f:spec": {"f:replicas": {}}},
            "manager": "kubectl", "operation": "Update", "subresource": "scale"})
    );
    // Without a time it sorts first, as in the reference.
    assert_eq!(&v["metadata"]["managedFields"][0], scale);
    let created = &v["metadata"]["managedFields"][1];
    assert_eq!(created["manager"], "kubectl-create");
    assert!(created["fieldsV1"]["f:spec"].get("f:replicas").is_none());
}

/// In-process components write as their Kubernetes counterparts, so the
/// managers are named as in Kubernetes.
#[tokio::test]
async fn in_process_components_are_named_managers() {
    use orca_apiserver::auth::UserInfo;
    let h = Harness::start().await;
    for (who, manager) in [
        // Its role may write ConfigMaps (kube-root-ca.crt).
        (
            UserInfo::controller("root-ca-cert-publisher"),
            "kube-controller-manager",
        ),
        (UserInfo::apiserver(), "kube-apiserver"),
        // No component: no User-Agent, no name, as in Kubernetes.
        (UserInfo::admin(), ""),
    ] {
        let client = h.server.local_client(who);
        let name = format!("by{}", manager.replace('-', ""));
        let body = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name}, "data": {"k": "v"}});
        let (code, v, _) = send(
            &client,
            "POST",
            "/api/v1/namespaces/default/configmaps",
            "application/json",
            body.to_string().into_bytes(),
        )
        .await;
        assert_eq!(code, 201, "{v}");
        assert_eq!(v["metadata"]["managedFields"][0]["manager"], manager);
    }
}

const SERVICE: &str = r#"apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector:
    app: web
  ports:
  - name: http
    port: 80
    targetPort: 8080
  - name: https
    port: 443
"#;

/// A Service's ports are keyed by port and protocol (TCP when left out);
/// what the server allocated stays through re-applies, a port the
/// configuration drops goes.
#[tokio::test]
async fn service_ports_by_port_and_protocol() {
    let h = Harness::start().await;
    h.kubectl_stdin(&["apply", "--server-side", "-f", "-"], Some(SERVICE))
        .await;
    let v = get_json(&h, &["service", "web"]).await;
    let ip = v["spec"]["clusterIP"].clone();
    assert!(ip.as_str().is_some_and(|ip| !ip.is_empty()));
    let f = &entries(&v)[0].2["f:spec"];
    assert_eq!(f["f:selector"], json!({}), "a Service's selector is atomic");
    assert_eq!(
        f["f:ports"]["k:{\"port\":80,\"protocol\":\"TCP\"}"],
        json!({".": {}, "f:name": {}, "f:port": {}, "f:targetPort": {}})
    );
    assert!(f.get("f:clusterIP").is_none(), "{f}");
    let fewer = SERVICE.replace("  - name: https\n    port: 443\n", "");
    h.kubectl_stdin(&["apply", "--server-side", "-f", "-"], Some(&fewer))
        .await;
    let v = get_json(&h, &["service", "web"]).await;
    assert_eq!(v["spec"]["clusterIP"], ip);
    let ports = v["spec"]["ports"].as_array().unwrap();
    assert_eq!(ports.len(), 1, "{ports:?}");
    assert_eq!(ports[0]["port"], 80);
    assert_eq!(ports[0]["protocol"], "TCP");
    assert_eq!(ports[0]["targetPort"], 8080);
}

/// Strategic merge now merges a Service's ports by port, as Kubernetes
/// does: a client-side apply that drops a port still removes it.
#[tokio::test]
async fn client_side_apply_drops_a_service_port() {
    let h = Harness::start().await;
    h.kubectl_stdin(&["apply", "-f", "-"], Some(SERVICE)).await;
    let fewer = SERVICE.replace("  - name: https\n    port: 443\n", "");
    h.kubectl_stdin(&["apply", "-f", "-"], Some(&fewer)).await;
    let v = get_json(&h, &["service", "web"]).await;
    let ports = v["spec"]["ports"].as_array().unwrap();
    assert_eq!(ports.len(), 1, "{ports:?}");
    assert_eq!(ports[0]["port"], 80);
}
