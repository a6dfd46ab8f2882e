//! Checks orca-api's patches against the real kubectl, which applies
//! strategic, merge and JSON patches with Kubernetes' own code when run
//! with `kubectl patch --local` (no server involved).

use std::process::Command;

use orca_api::patch::{apply, PatchType};
use serde_json::{json, Value};

fn kubectl() -> String {
    let path = std::env::var("KUBECTL").unwrap_or_else(|_| "/usr/bin/kubectl".into());
    assert!(
        std::path::Path::new(&path).exists(),
        "this test compares against the real kubectl: install kubectl v1.32 at /usr/bin/kubectl or set KUBECTL"
    );
    path
}

/// Drops nulls and empty lists/maps: kubectl round-trips through typed
/// objects, which omit empty fields.
fn normalized(v: &Value) -> Option<Value> {
    match v {
        Value::Null => None,
        Value::Array(a) if a.is_empty() => None,
        Value::Array(a) => Some(Value::Array(a.iter().filter_map(normalized).collect())),
        Value::Object(o) => {
            let m: serde_json::Map<String, Value> = o
                .iter()
                .filter_map(|(k, v)| normalized(v).map(|v| (k.clone(), v)))
                .collect();
            (!m.is_empty()).then_some(Value::Object(m))
        }
        other => Some(other.clone()),
    }
}

fn kubectl_patch(doc: &Value, patch: &Value, ty: &str) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("obj.json");
    std::fs::write(&file, doc.to_string()).unwrap();
    let out = Command::new(kubectl())
        .env("KUBECONFIG", dir.path().join("none"))
        .args(["patch", "--local", "-o", "json", "--type", ty, "-f"])
        .arg(&file)
        .arg("-p")
        .arg(patch.to_string())
        .output()
        .expect("run kubectl");
    assert!(
        out.status.success(),
        "kubectl patch --local failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn check(kind: &str, doc: &Value, patch: &Value, ty: PatchType) {
    let ty_name = match ty {
        PatchType::Strategic => "strategic",
        PatchType::Merge => "merge",
        PatchType::Json => "json",
        PatchType::Apply => unreachable!("kubectl patch has no apply type"),
    };
    let want = kubectl_patch(doc, patch, ty_name);
    let got = apply(kind, doc, ty, patch).unwrap();
    assert_eq!(normalized(&got), normalized(&want), "patch {patch}");
}

fn pod() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "labels": {"app": "web", "tier": "front"}, "finalizers": ["x", "y"],
                     "annotations": {"a": "1"}},
        "spec": {
            "containers": [
                {"name": "a", "image": "nginx:1.25",
                 "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                 "ports": [{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 443, "protocol": "TCP"}],
                 "volumeMounts": [{"name": "data", "mountPath": "/data"}, {"name": "cache", "mountPath": "/cache"}],
                 "command": ["sh", "-c", "sleep 1"]},
                {"name": "b", "image": "busybox"}
            ],
            "tolerations": [{"key": "k", "operator": "Exists"}],
            "volumes": [{"name": "data", "emptyDir": {}}, {"name": "cache", "hostPath": {"path": "/c"}}],
            "securityContext": {"runAsUser": 1000, "fsGroup": 2000}
        }
    })
}

#[test]
fn strategic_patches_match_kubectl() {
    let cases = [
        // New container named first, env merged by name.
        json!({"spec": {"containers": [{"name": "c", "image": "c"}, {"name": "a", "env": [{"name": "C", "value": "3"}]}]}}),
        // What `kubectl apply` sends: order directive, changes, a deletion.
        json!({"metadata": {"labels": {"tier": null, "v": "2"}},
               "spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
                        "containers": [{"name": "a", "image": "nginx:1.27", "$setElementOrder/env": [{"name": "B"}, {"name": "A"}]}]}}),
        json!({"spec": {"containers": [{"name": "b", "$patch": "delete"}]}}),
        json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["x"]}}),
        json!({"metadata": {"finalizers": ["z", "x"]}}),
        json!({"spec": {"volumes": [{"name": "cache", "$retainKeys": ["name", "emptyDir"], "emptyDir": {}}]}}),
        json!({"spec": {"tolerations": [{"operator": "Exists"}]}}),
        json!({"spec": {"containers": [{"$patch": "replace"}, {"name": "solo", "image": "x"}]}}),
        json!({"spec": {"securityContext": {"$patch": "replace", "runAsGroup": 5}}}),
        json!({"spec": {"containers": [{"name": "a", "ports": [{"containerPort": 8080}, {"containerPort": 80, "name": "http"}],
                                        "volumeMounts": [{"mountPath": "/cache", "$patch": "delete"}],
                                        "command": ["true"]}]}}),
        json!({"metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}}}),
    ];
    for patch in cases {
        check("Pod", &pod(), &patch, PatchType::Strategic);
    }
}

#[test]
fn node_status_patches_match_kubectl() {
    let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"},
        "spec": {"podCIDRs": ["10.42.1.0/24"]},
        "status": {"conditions": [{"type": "Ready", "status": "False", "reason": "KubeletNotReady"},
                                  {"type": "MemoryPressure", "status": "False"}],
                   "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}, {"type": "Hostname", "address": "n1"}]}});
    let patch = json!({"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
                                  "addresses": [{"type": "ExternalIP", "address": "1.2.3.4"}]}});
    check("Node", &node, &patch, PatchType::Strategic);
}

#[test]
fn merge_and_json_patches_match_kubectl() {
    check(
        "Pod",
        &pod(),
        &json!({"metadata": {"labels": {"app": null, "x": "y"}}, "spec": {"tolerations": []}}),
        PatchType::Merge,
    );
    check(
        "Pod",
        &pod(),
        &json!({"spec": {"containers": [{"name": "only", "image": "x"}]}}),
        PatchType::Merge,
    );
    check(
        "Pod",
        &pod(),
        &json!([
            {"op": "replace", "path": "/spec/containers/0/image", "value": "nginx:1.26"},
            {"op": "add", "path": "/metadata/labels/new", "value": "v"},
            {"op": "remove", "path": "/metadata/finalizers/0"},
            {"op": "add", "path": "/spec/containers/0/env/-", "value": {"name": "Z", "value": "9"}},
            {"op": "move", "from": "/metadata/annotations/a", "path": "/metadata/annotations/b"},
            {"op": "test", "path": "/spec/containers/1/name", "value": "b"}
        ]),
        PatchType::Json,
    );
}
