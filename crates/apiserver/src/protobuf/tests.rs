use k8s_pb::api::core::v1 as core;
use serde_json::json;

use super::*;

/// `kubectl create token default` (v1.32), from the reference -v=8 log.
const KUBECTL_TOKEN_REQUEST: &[u8] = b"k8s\0\x0a\x28\x0a\x18authentication.k8s.io/v1\x12\x0cTokenRequest\x12\x1a\x0a\x10\x0a\x00\x12\x00\x1a\x00\x22\x00\x2a\x00\x32\x00\x38\x00\x42\x00\x12\x00\x1a\x04\x0a\x00\x12\x00\x1a\x00\x22\x00";

/// Go writes an unset non-pointer Time as null; protobuf has no null, so
/// such fields come back absent.
fn without_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, v| !v.is_null());
            m.values_mut().for_each(without_nulls);
        }
        Value::Array(a) => a.iter_mut().for_each(without_nulls),
        _ => {}
    }
}

fn reference_pod() -> Value {
    let text = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/kubernetes-v1.32/a-running.yaml"
    ));
    let mut pod = serde_yaml::from_str(text).unwrap();
    without_nulls(&mut pod);
    pod
}

fn raw_of(framed: &[u8]) -> Vec<u8> {
    Unknown::decode(framed.strip_prefix(MAGIC).unwrap())
        .unwrap()
        .raw
        .unwrap()
}

#[test]
fn decodes_kubectls_token_request_leaving_out_go_zero_values() {
    let v = decode(KUBECTL_TOKEN_REQUEST).unwrap();
    assert_eq!(
        v,
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
               "metadata": {}, "spec": {}})
    );
}

#[test]
fn a_full_pod_round_trips_through_k8s_pb() {
    let pod = reference_pod();
    let framed = encode(&pod).unwrap();
    // What a Go client reads: k8s-pb's Pod.
    let pb = core::Pod::decode(raw_of(&framed).as_slice()).unwrap();
    let spec = pb.spec.clone().unwrap();
    let c = &spec.containers[0];
    assert_eq!(c.name.as_deref(), Some("main"));
    assert_eq!(
        c.command[2],
        "echo hello from ref-running; echo second line; exec sleep 3600"
    );
    assert_eq!(c.volume_mounts[0].read_only, Some(true));
    assert_eq!(spec.termination_grace_period_seconds, Some(30));
    assert_eq!(spec.tolerations[0].toleration_seconds, Some(300));
    let projected = spec.volumes[0]
        .volume_source
        .as_ref()
        .unwrap()
        .projected
        .clone()
        .unwrap();
    assert_eq!(projected.default_mode, Some(420));
    let meta = pb.metadata.clone().unwrap();
    assert_eq!(meta.labels["app"], "ref-running");
    let created = meta.creation_timestamp.unwrap();
    assert_eq!(
        chrono::DateTime::from_timestamp(created.seconds.unwrap(), 0)
            .unwrap()
            .to_rfc3339(),
        "2026-11-28T10:37:45+00:00"
    );
    let status = pb.status.clone().unwrap();
    assert_eq!(status.phase.as_deref(), Some("Running"));
    assert_eq!(status.container_statuses[0].restart_count, Some(0));
    // And back, from bytes prost wrote.
    let again = envelope("v1", "Pod", pb.encode_to_vec());
    assert_eq!(decode(&again).unwrap(), pod);
}

#[test]
fn special_json_forms_survive_the_wire() {
    let svc = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {"ports": [{"port": 80, "targetPort": "http"}, {"port": 81, "targetPort": 8081}],
                 "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 10}}}});
    assert_eq!(decode(&encode(&svc).unwrap()).unwrap(), svc);
    let quota = json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "q"},
        "spec": {"hard": {"cpu": "1500m", "memory": "1Gi"}}});
    assert_eq!(decode(&encode(&quota).unwrap()).unwrap(), quota);
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
        "data": {"k": "aGVsbG8="}, "type": "Opaque"});
    assert_eq!(decode(&encode(&secret).unwrap()).unwrap(), secret);
    let sar = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "metadata": {}, "spec": {"user": "u", "extra": {"scopes": ["a", "b"]},
        "resourceAttributes": {"verb": "get", "resource": "pods"}}, "status": {"allowed": true}});
    assert_eq!(decode(&encode(&sar).unwrap()).unwrap(), sar);
    let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "l"},
        "spec": {"holderIdentity": "n1", "leaseDurationSeconds": 40,
                 "renewTime": "2026-12-06T01:02:03.456789Z"}});
    assert_eq!(decode(&encode(&lease).unwrap()).unwrap(), lease);
    let deploy = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "d"}},
                 "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                 "template": {"metadata": {"labels": {"app": "d"}},
                              "spec": {"containers": [{"name": "c", "image": "i"}]}}}});
    assert_eq!(decode(&encode(&deploy).unwrap()).unwrap(), deploy);
    // Pointer fields whose explicit 0 means something (the conformance
    // suite's Lease spec sends leaseTransitions: 0).
    let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "l"},
        "spec": {"holderIdentity": "n1", "leaseDurationSeconds": 40, "leaseTransitions": 0}});
    assert_eq!(decode(&encode(&lease).unwrap()).unwrap(), lease);
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "i"}],
                 "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoExecute",
                                  "tolerationSeconds": 0}]}});
    assert_eq!(decode(&encode(&pod).unwrap()).unwrap(), pod);
    let set = json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "s"},
        "spec": {"selector": {"matchLabels": {"app": "s"}}, "serviceName": "s",
                 "template": {"metadata": {"labels": {"app": "s"}},
                              "spec": {"containers": [{"name": "c", "image": "i",
                                  "securityContext": {"privileged": false, "runAsNonRoot": false}}]}}},
        "status": {"replicas": 1, "collisionCount": 0}});
    assert_eq!(decode(&encode(&set).unwrap()).unwrap(), set);
    let job = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"},
        "spec": {"suspend": false, "manualSelector": false,
                 "template": {"spec": {"containers": [{"name": "c", "image": "i",
                     "env": [{"name": "E", "valueFrom": {"configMapKeyRef":
                         {"name": "m", "key": "k", "optional": false}}}]}]}}}});
    assert_eq!(decode(&encode(&job).unwrap()).unwrap(), job);
}

#[test]
fn status_errors_encode_with_their_details() {
    let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": "pods \"x\" not found", "reason": "NotFound",
        "details": {"name": "x", "kind": "pods"}, "code": 404});
    let framed = encode(&status).unwrap();
    let pb = k8s_pb::apimachinery::pkg::apis::meta::v1::Status::decode(raw_of(&framed).as_slice())
        .unwrap();
    assert_eq!(pb.code, Some(404));
    assert_eq!(pb.reason.as_deref(), Some("NotFound"));
    assert_eq!(decode(&framed).unwrap(), status);
}

#[test]
fn lists_are_spliced_item_by_item() {
    let pod = reference_pod();
    let item = Bytes::from(serde_json::to_vec(&pod).unwrap());
    let framed = encode_list(
        "v1",
        "PodList",
        &json!({"resourceVersion": "7", "continue": "c"}),
        &[item.clone(), item],
    )
    .unwrap();
    let list = core::PodList::decode(raw_of(&framed).as_slice()).unwrap();
    assert_eq!(list.items.len(), 2);
    assert_eq!(
        list.metadata.unwrap().resource_version.as_deref(),
        Some("7")
    );
    assert_eq!(
        list.items[1].metadata.as_ref().unwrap().name.as_deref(),
        Some("ref-running")
    );
}

#[test]
fn watch_events_are_length_framed_watch_events() {
    let pod = reference_pod();
    let frame = watch_frame("ADDED", &pod).unwrap();
    let len = u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
    assert_eq!(len, frame.len() - 4);
    let ev = WatchEvent::decode(&frame[4..]).unwrap();
    assert_eq!(ev.r#type.as_deref(), Some("ADDED"));
    let obj = ev.object.unwrap().raw.unwrap();
    assert_eq!(decode(&obj).unwrap(), pod);
}

#[test]
fn bad_bodies_are_errors_in_kubernetes_words() {
    let e = decode(b"{\"kind\":\"Pod\"}").unwrap_err().0;
    assert!(e.contains("expected prefix [107 56 115 0]"), "{e}");
    let e = decode(b"k8s\0\x0a\xff\xff\xff").unwrap_err().0;
    assert!(e.starts_with("the object provided is unrecognized"), "{e}");
    let unknown = envelope("v1", "Gizmo", vec![]);
    let e = decode(&unknown).unwrap_err().0;
    assert!(
        e.contains("no kind \"Gizmo\" is registered for version \"v1\""),
        "{e}"
    );
    let bad_raw = envelope("v1", "Pod", vec![0x0a, 0x05, 0x01]);
    let e = decode(&bad_raw).unwrap_err().0;
    assert!(
        e.starts_with("Pod in version \"v1\" cannot be handled as a Pod"),
        "{e}"
    );
}

#[test]
fn accept_headers_negotiate_as_kube_apiserver() {
    let n = negotiate("application/vnd.kubernetes.protobuf, */*");
    assert_eq!(n.wires, vec![Wire::Protobuf, Wire::Json]);
    let n = negotiate("application/json;as=Table;v=v1;g=meta.k8s.io,application/json");
    assert_eq!(n.first(), Some(Wire::Json));
    let n = negotiate(
        "application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io,application/json",
    );
    assert_eq!(n.wires, vec![Wire::Json]);
    let n = negotiate("application/json;q=0.5, application/vnd.kubernetes.protobuf");
    assert_eq!(n.wires, vec![Wire::Protobuf, Wire::Json]);
    assert_eq!(negotiate("").first(), Some(Wire::Json));
    assert_eq!(negotiate("image/png").first(), None);
    assert!(!negotiate("application/vnd.kubernetes.protobuf").json_fallback());
}

#[test]
fn every_served_kind_its_list_and_its_subresources_have_a_message() {
    let schema = schema::schema();
    for r in crate::resources::RESOURCES {
        let av = r.api_version();
        assert!(schema.message(&av, r.kind).is_some(), "{av} {}", r.kind);
        let list = r.list_kind();
        // Reviews are create-only and have no list.
        if r.verbs().contains(&"list") {
            assert!(schema.message(&av, &list).is_some(), "{av} {list}");
        }
        for sub in r.subresources {
            let (kind, _) = r.subresource(sub);
            let (group, version) = r.subresource_group_version(sub);
            let av = if group.is_empty() {
                version.to_string()
            } else {
                format!("{group}/{version}")
            };
            assert!(schema.message(&av, kind).is_some(), "{av} {kind} ({sub})");
        }
    }
    for kind in [
        "Status",
        "DeleteOptions",
        "APIVersions",
        "APIGroupList",
        "APIResourceList",
    ] {
        assert!(schema.message("v1", kind).is_some(), "{kind}");
    }
}

/// VolumeSource and PersistentVolumeSource are inlined in k8s-openapi, so
/// `generate.rs` takes their JSON names from the proto names: it wrote
/// `downwardApi` and `scaleIo` (Go: `downwardAPI`, `scaleIO`) and every
/// protobuf client's downwardAPI volume was dropped. schema.txt carries the
/// Go names by hand until the generator reads them from the embedding type.
#[test]
fn downward_api_volume_items_survive_the_wire() {
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "i",
            "volumeMounts": [{"name": "podinfo", "mountPath": "/etc/podinfo"}]}],
        "volumes": [{"name": "podinfo", "downwardAPI": {"defaultMode": 420, "items": [
            {"path": "podname", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}},
            {"path": "cpu_limit", "resourceFieldRef": {"containerName": "c",
                "resource": "limits.cpu", "divisor": "1m"}}]}}]}});
    let framed = encode(&pod).unwrap();
    assert_eq!(decode(&framed).unwrap(), pod);
    let scale_io = json!({"apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": "pv"}, "spec": {"scaleIO": {"gateway": "g", "system": "s",
            "secretRef": {"name": "x"}}}});
    assert_eq!(decode(&encode(&scale_io).unwrap()).unwrap(), scale_io);
}
