//! `dryRun=All` on every write of every served resource and subresource:
//! the store is untouched (same revision, same keys and bytes), and the
//! response is what the same request without dryRun returns, apart from the
//! fields the server sets (uid, timestamps, resourceVersion).

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use common::send;
use orca_store::{ListOptions, Store};
use serde_json::{json, Value};

/// The whole store: its revision and every key with its bytes.
async fn snapshot(store: &Arc<dyn Store>) -> (i64, BTreeMap<String, Vec<u8>>) {
    let page = store
        .list("/", ListOptions::default())
        .await
        .expect("store lists");
    let kvs = page.kvs.into_iter().map(|kv| (kv.key, kv.value)).collect();
    (page.revision, kvs)
}

/// The ServiceAccount admission plugin names each pod's token volume with a
/// random suffix.
fn without_volume_suffixes(v: &mut Value) {
    match v {
        Value::String(s) if s.starts_with("kube-api-access-") => {
            *s = "kube-api-access-".into();
        }
        Value::Array(items) => items.iter_mut().for_each(without_volume_suffixes),
        Value::Object(m) => m.values_mut().for_each(without_volume_suffixes),
        _ => {}
    }
}

/// Drops what the server sets differently on every request, so a dry run's
/// answer can be compared with the real one. (A Service's dry-run create
/// reports the range's network address and first node port, as
/// kube-apiserver does, where the real one takes free ones.)
fn comparable(mut v: Value) -> Value {
    without_volume_suffixes(&mut v);
    if v["kind"] == "Service" {
        if let Some(spec) = v["spec"].as_object_mut() {
            spec.remove("clusterIP");
            spec.remove("clusterIPs");
        }
        for p in v["spec"]["ports"].as_array_mut().into_iter().flatten() {
            if let Some(p) = p.as_object_mut() {
                p.remove("nodePort");
            }
        }
    }
    // A Job's generated selector and pod labels carry its uid, new on
    // every create.
    if let Some(uid) = v["metadata"]["uid"].as_str().map(str::to_string) {
        let text = serde_json::to_string(&v).unwrap().replace(&uid, "UID");
        v = serde_json::from_str(&text).unwrap();
    }
    if let Some(m) = v["metadata"].as_object_mut() {
        for f in [
            "uid",
            "creationTimestamp",
            "resourceVersion",
            "deletionTimestamp",
            "managedFields",
        ] {
            m.remove(f);
        }
    }
    // A TokenRequest's token is new on every request, dry run or not.
    if v["kind"] == "TokenRequest" {
        if let Some(st) = v["status"].as_object_mut() {
            st.remove("token");
            st.remove("expirationTimestamp");
        }
    }
    let conds = v.get_mut("status").and_then(|s| s.get_mut("conditions"));
    if let Some(conds) = conds.and_then(Value::as_array_mut) {
        for c in conds {
            if let Some(c) = c.as_object_mut() {
                c.remove("lastTransitionTime");
            }
        }
    }
    v
}

/// One write, sent once with `dryRun=All` and then for real.
struct Write {
    what: String,
    method: &'static str,
    uri: String,
    content_type: &'static str,
    body: Value,
    /// kubectl puts dryRun in the DeleteOptions body rather than the query.
    dry_in_body: bool,
}

impl Write {
    fn new(what: &str, method: &'static str, uri: &str, body: Value) -> Write {
        Write {
            what: what.to_string(),
            method,
            uri: uri.to_string(),
            content_type: "application/json",
            body,
            dry_in_body: false,
        }
    }

    fn merge_patch(what: &str, uri: &str, body: Value) -> Write {
        Write {
            content_type: "application/merge-patch+json",
            ..Write::new(what, "PATCH", uri, body)
        }
    }

    fn delete(what: &str, uri: &str, dry_in_body: bool) -> Write {
        Write {
            dry_in_body,
            ..Write::new(
                what,
                "DELETE",
                uri,
                json!({"propagationPolicy": "Background"}),
            )
        }
    }
}

struct Checker {
    client: kube::Client,
    store: Arc<dyn Store>,
    covered: BTreeSet<String>,
}

impl Checker {
    /// Sends `w` as a dry run, checks that nothing was stored, then sends it
    /// for real and checks that both answers agree.
    async fn check(&mut self, covers: &str, w: Write) -> Value {
        self.covered.insert(covers.to_string());
        let before = snapshot(&self.store).await;
        let sep = if w.uri.contains('?') { '&' } else { '?' };
        let (dry_uri, mut dry_body) = if w.dry_in_body {
            let mut b = w.body.clone();
            b["dryRun"] = json!(["All"]);
            (w.uri.clone(), b)
        } else {
            (format!("{}{sep}dryRun=All", w.uri), w.body.clone())
        };
        if w.method == "DELETE" && dry_body == json!({}) {
            dry_body = Value::Null;
        }
        let body = |b: &Value| {
            if b.is_null() {
                vec![]
            } else {
                b.to_string().into_bytes()
            }
        };
        let (dry_code, dry_resp, _) = send(
            &self.client,
            w.method,
            &dry_uri,
            w.content_type,
            body(&dry_body),
        )
        .await;
        assert!(
            dry_code < 300,
            "{}: dry run answered {dry_code}: {dry_resp}",
            w.what
        );
        let after = snapshot(&self.store).await;
        assert_eq!(
            before.0, after.0,
            "{}: the dry run moved the store's revision",
            w.what
        );
        assert!(
            before.1 == after.1,
            "{}: the dry run changed what is stored",
            w.what
        );
        // An unknown dryRun value is refused before anything runs.
        let bad_uri = format!("{}{sep}dryRun=Some", w.uri);
        let (bad_code, bad, _) = send(
            &self.client,
            w.method,
            &bad_uri,
            w.content_type,
            body(&w.body),
        )
        .await;
        assert_eq!(bad_code, 422, "{}: dryRun=Some answered {bad}", w.what);
        assert!(
            bad["message"].as_str().unwrap_or_default().contains(
                r#"dryRun: Unsupported value: []string{"Some"}: supported values: "All""#
            ),
            "{}: {bad}",
            w.what
        );
        assert_eq!(
            snapshot(&self.store).await.0,
            before.0,
            "{}: a refused dryRun value wrote",
            w.what
        );

        let (code, resp, _) = send(
            &self.client,
            w.method,
            &w.uri,
            w.content_type,
            body(&w.body),
        )
        .await;
        assert_eq!(code, dry_code, "{}: real request answered {resp}", w.what);
        // A deleted namespace is cleaned up in the background: wait for it
        // to end, so that the next check's snapshots see a quiet store.
        if w.method == "DELETE" && w.uri.contains("/namespaces/dry-") {
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while send(&self.client, "GET", &w.uri, "application/json", vec![])
                .await
                .0
                != 404
            {
                assert!(
                    std::time::Instant::now() < deadline,
                    "{}: namespace never went away",
                    w.what
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        assert_eq!(
            comparable(dry_resp),
            comparable(resp.clone()),
            "{}: the dry run answered differently from the real request",
            w.what
        );
        resp
    }
}

fn sample(resource: &str, name: &str) -> Value {
    let meta = json!({"name": name, "labels": {"dry-run-test": "yes"}});
    match resource {
        "pods" => json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}),
        "namespaces" => json!({"apiVersion": "v1", "kind": "Namespace", "metadata": meta}),
        "nodes" => json!({"apiVersion": "v1", "kind": "Node", "metadata": meta}),
        "events" => json!({"apiVersion": "v1", "kind": "Event", "metadata": meta,
            "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"},
            "reason": "Tested", "message": "m", "type": "Normal"}),
        "configmaps" => json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta,
            "data": {"k": "v"}}),
        "secrets" => json!({"apiVersion": "v1", "kind": "Secret", "metadata": meta,
            "data": {"k": "dg=="}}),
        "serviceaccounts" => {
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta})
        }
        "leases" => json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": meta, "spec": {"holderIdentity": "h"}}),
        "clusterroles" | "roles" => json!({"apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": if resource == "roles" { "Role" } else { "ClusterRole" }, "metadata": meta,
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}),
        "clusterrolebindings" | "rolebindings" => {
            json!({"apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": if resource == "rolebindings" { "RoleBinding" } else { "ClusterRoleBinding" },
            "metadata": meta,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "bob"}]})
        }
        "selfsubjectaccessreviews" => json!({"apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview", "metadata": {},
            "spec": {"resourceAttributes": {"namespace": "default", "verb": "list", "resource": "pods"}}}),
        "subjectaccessreviews" | "localsubjectaccessreviews" => {
            json!({"apiVersion": "authorization.k8s.io/v1",
            "kind": if resource == "subjectaccessreviews" { "SubjectAccessReview" } else { "LocalSubjectAccessReview" },
            "metadata": {},
            "spec": {"user": "bob", "resourceAttributes": {"namespace": "default", "verb": "list", "resource": "pods"}}})
        }
        "selfsubjectrulesreviews" => json!({"apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectRulesReview", "metadata": {}, "spec": {"namespace": "default"}}),
        "selfsubjectreviews" => json!({"apiVersion": "authentication.k8s.io/v1",
            "kind": "SelfSubjectReview", "metadata": {}}),
        "certificatesigningrequests" => {
            let key = rcgen::KeyPair::generate().expect("key");
            let mut p = rcgen::CertificateParams::default();
            p.distinguished_name
                .push(rcgen::DnType::CommonName, "dry-run");
            let pem = p.serialize_request(&key).expect("csr").pem().expect("pem");
            let request = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, pem);
            json!({"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
                "metadata": meta, "spec": {"request": request, "signerName": "example.com/dry-run",
                "usages": ["client auth"]}})
        }
        "tokenreviews" => json!({"apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview", "metadata": {}, "spec": {"token": "not-a-token"}}),
        "services" => json!({"apiVersion": "v1", "kind": "Service", "metadata": meta,
            "spec": {"type": "NodePort", "selector": {"app": "a"}, "ports": [{"port": 80}]}}),
        "endpoints" => json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": meta,
            "subsets": [{"addresses": [{"ip": "10.42.0.9"}], "ports": [{"port": 80}]}]}),
        "endpointslices" => json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": meta, "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.42.0.9"], "conditions": {"ready": true}}],
            "ports": [{"port": 80}]}),
        "podtemplates" => json!({"apiVersion": "v1", "kind": "PodTemplate", "metadata": meta,
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}),
        "replicationcontrollers" => json!({"apiVersion": "v1", "kind": "ReplicationController",
            "metadata": meta, "spec": {"replicas": 0, "selector": {"app": name},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}),
        "deployments" | "replicasets" => {
            let kind = if resource == "deployments" {
                "Deployment"
            } else {
                "ReplicaSet"
            };
            json!({"apiVersion": "apps/v1", "kind": kind, "metadata": meta,
                "spec": {"replicas": 0, "selector": {"matchLabels": {"app": name}},
                "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}})
        }
        "daemonsets" => json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": meta,
            "spec": {"selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}),
        "statefulsets" => json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": meta,
            "spec": {"replicas": 0, "serviceName": name, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}),
        "controllerrevisions" => json!({"apiVersion": "apps/v1", "kind": "ControllerRevision",
            "metadata": meta, "revision": 1, "data": {"spec": {}}}),
        "jobs" => json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": meta,
            "spec": {"suspend": true, "template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "c", "image": "busybox"}]}}}}),
        "cronjobs" => json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": meta,
            "spec": {"schedule": "*/5 * * * *", "suspend": true, "jobTemplate": {"spec": {"template": {"spec": {
            "restartPolicy": "OnFailure", "containers": [{"name": "c", "image": "busybox"}]}}}}}}),
        "poddisruptionbudgets" => json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": meta, "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": name}}}}),
        "runtimeclasses" => json!({"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
            "metadata": meta, "handler": "runc"}),
        "persistentvolumes" => json!({"apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": meta, "spec": {"capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteOnce"], "hostPath": {"path": "/srv"}}}),
        "persistentvolumeclaims" => json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": meta, "spec": {"accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1Gi"}}}}),
        "storageclasses" => json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": meta, "provisioner": "example.com/disk"}),
        "csidrivers" => json!({"apiVersion": "storage.k8s.io/v1", "kind": "CSIDriver",
            "metadata": meta, "spec": {}}),
        "csinodes" => json!({"apiVersion": "storage.k8s.io/v1", "kind": "CSINode",
            "metadata": meta, "spec": {"drivers": []}}),
        "csistoragecapacities" => json!({"apiVersion": "storage.k8s.io/v1",
            "kind": "CSIStorageCapacity", "metadata": meta, "storageClassName": "fast"}),
        "volumeattachments" => {
            json!({"apiVersion": "storage.k8s.io/v1", "kind": "VolumeAttachment",
            "metadata": meta, "spec": {"attacher": "example.com", "nodeName": "n1",
            "source": {"persistentVolumeName": "pv1"}}})
        }
        other => panic!(
            "the server serves {other:?} but this test has no sample of it: add one, \
             so that its writes are checked for dry run too"
        ),
    }
}

/// Every (resource, subresource) the server's discovery lists, with where
/// it lives.
async fn served(client: &kube::Client) -> Vec<(String, String, bool, Vec<String>)> {
    let mut lists = vec!["/api/v1".to_string()];
    let (_, apis, _) = send(client, "GET", "/apis", "application/json", vec![]).await;
    for g in apis["groups"].as_array().expect("groups") {
        lists.push(format!(
            "/apis/{}",
            g["preferredVersion"]["groupVersion"].as_str().unwrap()
        ));
    }
    let mut out = Vec::new();
    for base in lists {
        let (_, l, _) = send(client, "GET", &base, "application/json", vec![]).await;
        for r in l["resources"].as_array().expect("resources") {
            let verbs = r["verbs"].as_array().expect("verbs");
            out.push((
                base.clone(),
                r["name"].as_str().unwrap().to_string(),
                r["namespaced"].as_bool().unwrap(),
                verbs
                    .iter()
                    .map(|v| v.as_str().unwrap().to_string())
                    .collect(),
            ));
        }
    }
    out
}

/// Subresources that stream (no object is written) are not dry-run writes.
fn is_connect(name: &str) -> bool {
    ["/log", "/exec", "/attach", "/portforward", "/proxy"]
        .iter()
        .any(|s| name.ends_with(s))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_never_writes_and_answers_as_the_real_request() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = common::open_store(dir.path()).await;
    let server = common::start_compacting(dir.path(), store.clone(), Duration::ZERO).await;
    let kc = kube::config::Kubeconfig::read_from(server.kubeconfig_path()).expect("kubeconfig");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("client config");
    let client = kube::Client::try_from(cfg).expect("client");
    let mut c = Checker {
        client: client.clone(),
        store,
        covered: BTreeSet::new(),
    };

    // Namespaces go last: deleting one starts a cleanup in the background.
    let mut resources = served(&client).await;
    resources.sort_by_key(|(_, name, _, _)| name.starts_with("namespaces"));
    for (base, name, namespaced, verbs) in &resources {
        // Subresources are reached through their objects; read-only
        // resources (metrics.k8s.io's) have no write to check.
        if name.contains('/') || !verbs.iter().any(|v| v == "create") {
            continue;
        }
        let coll = if *namespaced {
            format!("{base}/namespaces/default/{name}")
        } else {
            format!("{base}/{name}")
        };
        let obj = |n: &str| sample(name, &format!("dry-{name}-{n}"));
        let one = |n: &str| format!("{coll}/dry-{name}-{n}");

        let created = c
            .check(
                name,
                Write::new(&format!("create {name}"), "POST", &coll, obj("a")),
            )
            .await;
        if !verbs.iter().any(|v| v == "update") {
            // Create-only kinds (the reviews) store nothing to change.
            continue;
        }

        let mut updated = created.clone();
        updated["metadata"]["labels"]["updated"] = json!("yes");
        c.check(
            name,
            Write::new(&format!("update {name}"), "PUT", &one("a"), updated),
        )
        .await;
        c.check(
            name,
            Write::merge_patch(
                &format!("patch {name}"),
                &one("a"),
                json!({"metadata": {"annotations": {"patched": "yes"}}}),
            ),
        )
        .await;

        let subs: Vec<&str> = resources
            .iter()
            .filter(|(b, n, _, _)| b == base && n.starts_with(&format!("{name}/")))
            .map(|(_, n, _, _)| n.as_str())
            .filter(|n| !is_connect(n))
            .collect();
        for sub in subs {
            let uri = format!("{}/{}", one("a"), sub.split('/').nth(1).unwrap());
            match sub {
                s if s.ends_with("/status") => {
                    let (_, cur, _) =
                        send(&client, "GET", &one("a"), "application/json", vec![]).await;
                    let mut st = cur.clone();
                    st["status"]["dryRunTest"] = json!(null);
                    c.check(sub, Write::new(&format!("update {sub}"), "PUT", &uri, st))
                        .await;
                    c.check(
                        sub,
                        Write::merge_patch(
                            &format!("patch {sub}"),
                            &uri,
                            json!({"metadata": {"labels": {"status-patched": "yes"}}}),
                        ),
                    )
                    .await;
                }
                "certificatesigningrequests/approval" => {
                    let (_, cur, _) =
                        send(&client, "GET", &one("a"), "application/json", vec![]).await;
                    let mut denied = cur.clone();
                    denied["status"]["conditions"] = json!([{"type": "Denied", "status": "True",
                        "reason": "DryRunTest", "lastUpdateTime": "2026-01-01T00:00:00Z"}]);
                    c.check(sub, Write::new("deny a request", "PUT", &uri, denied))
                        .await;
                }
                s if s.ends_with("/scale") => {
                    let (_, cur, _) = send(&client, "GET", &uri, "application/json", vec![]).await;
                    let mut scale = cur.clone();
                    scale["spec"]["replicas"] = json!(2);
                    c.check(
                        sub,
                        Write::new(&format!("update {sub}"), "PUT", &uri, scale),
                    )
                    .await;
                    c.check(
                        sub,
                        Write::merge_patch(
                            &format!("patch {sub}"),
                            &uri,
                            json!({"spec": {"replicas": 0}}),
                        ),
                    )
                    .await;
                }
                "pods/binding" => {
                    let binding = json!({"apiVersion": "v1", "kind": "Binding",
                        "metadata": {"name": "dry-pods-a"},
                        "target": {"kind": "Node", "name": "some-node"}});
                    c.check(sub, Write::new("bind a pod", "POST", &uri, binding))
                        .await;
                }
                "pods/ephemeralcontainers" => {
                    let (_, cur, _) = send(&client, "GET", &uri, "application/json", vec![]).await;
                    let mut with = cur.clone();
                    with["spec"]["ephemeralContainers"] =
                        json!([{"name": "dbg", "image": "busybox"}]);
                    c.check(
                        sub,
                        Write::new("add an ephemeral container", "PUT", &uri, with),
                    )
                    .await;
                    c.check(
                        sub,
                        Write::merge_patch(
                            "patch in an ephemeral container",
                            &uri,
                            // A merge patch replaces the list: the first one stays.
                            json!({"spec": {"ephemeralContainers": [
                                {"name": "dbg", "image": "busybox"},
                                {"name": "dbg2", "image": "busybox"}]}}),
                        ),
                    )
                    .await;
                }
                "pods/eviction" => {
                    let eviction = json!({"apiVersion": "policy/v1", "kind": "Eviction",
                        "metadata": {"name": "dry-pods-a"}});
                    c.check(sub, Write::new("evict a pod", "POST", &uri, eviction))
                        .await;
                }
                "serviceaccounts/token" => {
                    let request = json!({"apiVersion": "authentication.k8s.io/v1",
                        "kind": "TokenRequest", "spec": {"audiences": ["dry-run-test"]}});
                    c.check(sub, Write::new("request a token", "POST", &uri, request))
                        .await;
                }
                "namespaces/finalize" => {
                    let (_, cur, _) =
                        send(&client, "GET", &one("a"), "application/json", vec![]).await;
                    let mut fin = cur.clone();
                    fin["spec"]["finalizers"] = json!([]);
                    c.check(sub, Write::new("finalize a namespace", "PUT", &uri, fin))
                        .await;
                }
                other => panic!(
                    "the server serves the subresource {other:?} but this test has no \
                     write for it: add one, so that it is checked for dry run too"
                ),
            }
        }

        // kubectl's form (dryRun in the body), then a client's (in the query).
        c.check(
            name,
            Write::delete(&format!("delete {name} (kubectl)"), &one("a"), true),
        )
        .await;
        for n in ["b", "c"] {
            let (code, v, _) = send(
                &client,
                "POST",
                &coll,
                "application/json",
                obj(n).to_string().into_bytes(),
            )
            .await;
            assert_eq!(code, 201, "{v}");
        }
        c.check(
            name,
            Write::delete(&format!("delete {name} (query)"), &one("b"), false),
        )
        .await;
        if !verbs.iter().any(|v| v == "deletecollection") {
            continue;
        }
        c.check(
            name,
            Write::delete(
                &format!("deletecollection {name}"),
                &format!("{coll}?labelSelector=dry-run-test%3Dyes"),
                false,
            ),
        )
        .await;
    }

    let served_writable: BTreeSet<String> = resources
        .iter()
        .map(|(_, n, _, _)| n.clone())
        .filter(|n| !is_connect(n))
        .collect();
    assert_eq!(
        served_writable, c.covered,
        "every resource and subresource is covered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_delete_dry_run_server_keeps_the_object() {
    let h = common::Harness::start().await;
    h.kubectl(&["create", "configmap", "keep", "--from-literal=a=b"])
        .await;
    h.kubectl(&["run", "web", "--image=busybox"]).await;
    let out = h
        .kubectl(&["delete", "pod", "web", "--dry-run=server"])
        .await;
    assert_eq!(out.trim(), r#"pod "web" deleted (server dry run)"#);
    let out = h
        .kubectl(&["delete", "configmap", "keep", "--dry-run=server"])
        .await;
    assert_eq!(out.trim(), r#"configmap "keep" deleted (server dry run)"#);
    h.kubectl(&["create", "namespace", "keepme"]).await;
    let out = h
        .kubectl(&["delete", "namespace", "keepme", "--dry-run=server"])
        .await;
    assert_eq!(out.trim(), r#"namespace "keepme" deleted (server dry run)"#);
    // No cleanup started: the namespace stays Active, its content stays.
    h.kubectl(&["create", "configmap", "inside", "-n", "keepme"])
        .await;
    let phase = h
        .kubectl(&[
            "get",
            "namespace",
            "keepme",
            "-o",
            "jsonpath={.status.phase}",
        ])
        .await;
    assert_eq!(phase, "Active");
    h.kubectl(&["get", "pod", "web"]).await;
    h.kubectl(&["get", "configmap", "keep"]).await;
    let pod = h.kubectl(&["get", "pod", "web", "-o", "json"]).await;
    let pod: Value = serde_json::from_str(&pod).expect("pod json");
    assert!(
        pod["metadata"]["deletionTimestamp"].is_null(),
        "a dry-run delete marked the pod: {pod}"
    );
}
