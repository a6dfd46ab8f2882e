use super::*;
use serde_json::json;

const NOW: &str = "2026-12-05T08:01:25Z";
const LATER: &str = "2026-12-05T08:01:26Z";

fn writer(manager: &str) -> Writer<'_> {
    Writer {
        manager,
        api_version: "v1",
        subresource: "",
    }
}

fn cm(data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa", "namespace": "default"}, "data": data})
}

/// Server-side apply of a ConfigMap configuration by `manager`.
fn apply_cm(
    m: &mut Managed,
    live: &Value,
    config: &Value,
    manager: &str,
    force: bool,
    now: &str,
) -> Result<Value, Vec<Conflict>> {
    apply(
        "ConfigMap",
        &Set::new(),
        m,
        live,
        config,
        &writer(manager),
        force,
        now,
    )
}

/// An update of a ConfigMap by `manager`.
fn update_cm(m: &mut Managed, old: &Value, new: &Value, manager: &str, now: &str) {
    update("ConfigMap", &Set::new(), m, old, new, &writer(manager), now);
}

fn owners(m: &Managed) -> Vec<(String, &'static str, Value)> {
    let mut v: Vec<_> = m
        .entries
        .iter()
        .map(|e| {
            (
                e.manager.clone(),
                e.operation.as_str(),
                e.fields.to_fields_v1(),
            )
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// The transcript of the reference 07-server-side-apply.txt.
#[test]
fn configmap_apply_patch_conflict_force() {
    let mut m = Managed::default();
    let zero = zero_object("ConfigMap");
    let config = cm(json!({"a": "1", "b": "2"}));
    let created = apply_cm(&mut m, &zero, &config, "kubectl", false, NOW).unwrap();
    assert_eq!(created["data"], json!({"a": "1", "b": "2"}));
    let encoded = m.encode();
    assert_eq!(
        encoded,
        json!([{"apiVersion": "v1", "fieldsType": "FieldsV1",
            "fieldsV1": {"f:data": {"f:a": {}, "f:b": {}}},
            "manager": "kubectl", "operation": "Apply", "time": NOW}])
    );
    assert_eq!(Managed::decode(Some(&encoded)).unwrap(), m);

    // kubectl patch data.a: kubectl-patch takes it.
    let mut patched = created.clone();
    patched["data"]["a"] = json!("changed");
    update_cm(&mut m, &created, &patched, "kubectl-patch", LATER);
    assert_eq!(
        owners(&m),
        vec![
            ("kubectl".into(), "Apply", json!({"f:data": {"f:b": {}}})),
            (
                "kubectl-patch".into(),
                "Update",
                json!({"f:data": {"f:a": {}}})
            ),
        ]
    );
    // Applying again conflicts.
    let err = apply_cm(&mut m.clone(), &patched, &config, "kubectl", false, LATER).unwrap_err();
    assert_eq!(
        err,
        vec![Conflict {
            manager: "\"kubectl-patch\" using v1".into(),
            path: ".data.a".into()
        }]
    );
    assert_eq!(
        conflict_message(&err),
        "Apply failed with 1 conflict: conflict with \"kubectl-patch\" using v1: .data.a"
    );
    // Forced, kubectl owns both again.
    let forced = apply_cm(&mut m, &patched, &config, "kubectl", true, LATER).unwrap();
    assert_eq!(forced["data"]["a"], "1");
    assert_eq!(
        owners(&m),
        vec![(
            "kubectl".into(),
            "Apply",
            json!({"f:data": {"f:a": {}, "f:b": {}}})
        )]
    );
    // Another applier: an Apply manager is named without a version.
    let other = cm(json!({"b": "20", "c": "3"}));
    let err = apply_cm(&mut m.clone(), &forced, &other, "other", false, LATER).unwrap_err();
    assert_eq!(
        conflict_message(&err),
        "Apply failed with 1 conflict: conflict with \"kubectl\": .data.b"
    );
    let both = apply_cm(&mut m, &forced, &other, "other", true, LATER).unwrap();
    assert_eq!(both["data"], json!({"a": "1", "b": "20", "c": "3"}));
    assert_eq!(
        owners(&m),
        vec![
            ("kubectl".into(), "Apply", json!({"f:data": {"f:a": {}}})),
            (
                "other".into(),
                "Apply",
                json!({"f:data": {"f:b": {}, "f:c": {}}})
            ),
        ]
    );
    // Same value: shared, no conflict.
    let same = cm(json!({"b": "20"}));
    let mut shared = m.clone();
    apply_cm(&mut shared, &both, &same, "third", false, LATER).unwrap();
    assert_eq!(shared.entries.len(), 3);
}

#[test]
fn fields_no_longer_applied_are_removed_unless_owned_elsewhere() {
    let mut m = Managed::default();
    let zero = zero_object("ConfigMap");
    let v1 = apply_cm(
        &mut m,
        &zero,
        &cm(json!({"a": "1", "b": "2"})),
        "kubectl",
        false,
        NOW,
    )
    .unwrap();
    // Another manager co-owns b.
    apply_cm(&mut m, &v1, &cm(json!({"b": "2"})), "other", false, NOW).unwrap();
    let v2 = apply_cm(&mut m, &v1, &cm(json!({"c": "3"})), "kubectl", false, LATER).unwrap();
    assert_eq!(
        v2["data"],
        json!({"b": "2", "c": "3"}),
        "a goes, b stays (other owns it)"
    );
    assert_eq!(
        owners(&m),
        vec![
            ("kubectl".into(), "Apply", json!({"f:data": {"f:c": {}}})),
            ("other".into(), "Apply", json!({"f:data": {"f:b": {}}})),
        ]
    );
    // The same configuration again changes nothing, time included.
    let before = m.clone();
    let v3 = apply_cm(
        &mut m,
        &v2,
        &cm(json!({"c": "3"})),
        "kubectl",
        false,
        "2030-01-01T00:00:00Z",
    )
    .unwrap();
    assert_eq!(v3, v2);
    assert_eq!(m, before);
}

#[test]
fn create_update_owns_defaults_but_not_server_metadata() {
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "namespace": "default", "uid": "u", "labels": {"run": "p"}},
        "spec": {"containers": [{"name": "c", "image": "busybox", "resources": {}}], "dnsPolicy": "ClusterFirst"},
        "status": {"phase": "Pending"}
    });
    let mut m = Managed::default();
    update(
        "Pod",
        &ignored("", true),
        &mut m,
        &zero_object("Pod"),
        &pod,
        &writer("kubectl-run"),
        NOW,
    );
    assert_eq!(
        m.encode()[0]["fieldsV1"],
        json!({
            "f:metadata": {"f:labels": {".": {}, "f:run": {}}},
            "f:spec": {
                "f:containers": {"k:{\"name\":\"c\"}": {".": {}, "f:image": {}, "f:name": {}, "f:resources": {}}},
                "f:dnsPolicy": {}
            }
        })
    );
    // A status write by the kubelet: its own entry with the subresource.
    let mut running = pod.clone();
    running["status"] = json!({"phase": "Running", "podIP": "10.0.0.2"});
    let kubelet = Writer {
        manager: "kubelet",
        api_version: "v1",
        subresource: "status",
    };
    update(
        "Pod",
        &ignored("status", true),
        &mut m,
        &pod,
        &running,
        &kubelet,
        LATER,
    );
    let encoded = m.encode();
    assert_eq!(encoded[1]["manager"], "kubelet");
    assert_eq!(encoded[1]["subresource"], "status");
    assert_eq!(
        encoded[1]["fieldsV1"],
        json!({"f:status": {"f:phase": {}, "f:podIP": {}}})
    );
    // A no-op update records nothing.
    let before = m.clone();
    update(
        "Pod",
        &Set::new(),
        &mut m,
        &running,
        &running,
        &writer("kubectl"),
        LATER,
    );
    assert_eq!(m, before);
}

#[test]
fn client_side_apply_then_server_side_apply() {
    // kubectl apply (client-side) created it.
    let last = r#"{"apiVersion":"v1","data":{"a":"1"},"kind":"ConfigMap","metadata":{"annotations":{},"name":"ssa","namespace":"default"}}"#;
    let mut live = cm(json!({"a": "1"}));
    live["metadata"]["annotations"] = json!({LAST_APPLIED: last});
    let mut m = Managed::default();
    update_cm(
        &mut m,
        &zero_object("ConfigMap"),
        &live,
        "kubectl-client-side-apply",
        NOW,
    );
    // Server-side apply changes a: the conflict is with the last-applied
    // fields only, so it goes through.
    let config = cm(json!({"a": "2"}));
    let out = apply_cm(&mut m, &live, &config, "kubectl", false, LATER).unwrap();
    assert_eq!(out["data"]["a"], "2");
    let annotation: Value = serde_json::from_str(
        out["metadata"]["annotations"][LAST_APPLIED]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        annotation["data"],
        json!({"a": "2"}),
        "kubectl's annotation follows"
    );
    assert_eq!(
        owners(&m)[0],
        ("kubectl".into(), "Apply", json!({"f:data": {"f:a": {}}}))
    );
    // Fields outside the annotation still conflict.
    let mut m2 = Managed::default();
    let mut live2 = live.clone();
    live2["data"]["x"] = json!("1");
    update_cm(
        &mut m2,
        &zero_object("ConfigMap"),
        &live2,
        "kubectl-edit",
        NOW,
    );
    let err = apply_cm(
        &mut m2,
        &live2,
        &cm(json!({"x": "2"})),
        "kubectl",
        false,
        LATER,
    )
    .unwrap_err();
    assert_eq!(err[0].path, ".data.x");
    // So do annotated fields changed since by someone else.
    let mut patched = live.clone();
    patched["data"]["a"] = json!("changed");
    update_cm(&mut m, &live, &patched, "kubectl-patch", LATER);
    let err = apply_cm(&mut m, &patched, &config, "kubectl", false, LATER).unwrap_err();
    assert_eq!(err[0].manager, "\"kubectl-patch\" using v1");
}

#[test]
fn unmanaged_objects_belong_to_before_first_apply() {
    let live = cm(json!({"a": "1"}));
    let mut m = Managed::default();
    let err = apply_cm(&mut m, &live, &cm(json!({"a": "2"})), "mine", false, NOW).unwrap_err();
    assert_eq!(err[0].manager, "\"before-first-apply\" using v1");
}

#[test]
fn multiple_conflicts_message() {
    let c = |m: &str, p: &str| Conflict {
        manager: m.into(),
        path: p.into(),
    };
    assert_eq!(
        conflict_message(&[c("\"a\"", ".x"), c("\"a\"", ".y"), c("\"b\" using v1", ".z")]),
        "Apply failed with 3 conflicts: conflicts with \"a\":\n- .x\n- .y\nconflicts with \"b\" using v1:\n- .z"
    );
}

#[test]
fn update_entries_are_capped_into_ancient_changes() {
    let mut m = Managed::default();
    let mut obj = cm(json!({}));
    for i in 0..12 {
        let mut next = obj.clone();
        next["data"][format!("k{i}")] = json!("v");
        let manager = format!("m{i:02}");
        let time = format!("2026-12-05T08:00:{i:02}Z");
        update_cm(&mut m, &obj, &next, &manager, &time);
        obj = next;
    }
    let managers: Vec<&str> = m.entries.iter().map(|e| e.manager.as_str()).collect();
    assert_eq!(m.entries.len(), 10, "{managers:?}");
    let ancient = m
        .entries
        .iter()
        .find(|e| e.manager == "ancient-changes")
        .expect("bucket");
    assert_eq!(
        ancient.fields.to_fields_v1(),
        json!({"f:data": {"f:k0": {}, "f:k1": {}, "f:k2": {}}})
    );
    assert_eq!(ancient.time.as_deref(), Some("2026-12-05T08:00:02Z"));
    assert!(!managers.contains(&"m01") && !managers.contains(&"m02"));
    assert!(managers.contains(&"m03"));
}
