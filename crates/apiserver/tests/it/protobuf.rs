//! Requests shaped as client-go sends them with protobuf as its content type
//! (kube-scheduler, kubelet, controllers): bodies are k8s-pb messages in the
//! `k8s\0` envelope, answers are read back with k8s-pb.

use std::collections::BTreeMap;

use bytes::Bytes;
use http::Request;
use k8s_pb::api::apps::v1 as apps;
use k8s_pb::api::coordination::v1 as coordination;
use k8s_pb::api::core::v1 as core;
use k8s_pb::api::rbac::v1 as rbac;
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use prost::Message;
use serde_json::{json, Value};

use crate::common;

const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";
/// client-go's Accept when its content type is protobuf.
const CLIENT_GO_ACCEPT: &str = "application/vnd.kubernetes.protobuf,application/json";

fn framed<M: Message>(api_version: &str, kind: &str, m: &M) -> Vec<u8> {
    let u = Unknown {
        type_meta: Some(TypeMeta {
            api_version: Some(api_version.into()),
            kind: Some(kind.into()),
        }),
        raw: Some(m.encode_to_vec()),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    [b"k8s\0".as_slice(), &u.encode_to_vec()].concat()
}

/// The envelope's type and the raw object of a protobuf answer.
fn unframe(body: &[u8]) -> (String, String, Vec<u8>) {
    let env = body
        .strip_prefix(b"k8s\0")
        .unwrap_or_else(|| panic!("not protobuf: {}", String::from_utf8_lossy(body)));
    let u = Unknown::decode(env).expect("an Unknown envelope");
    let tm = u.type_meta.unwrap_or_default();
    (
        tm.api_version.unwrap_or_default(),
        tm.kind.unwrap_or_default(),
        u.raw.unwrap_or_default(),
    )
}

struct Answer {
    code: u16,
    content_type: String,
    body: Bytes,
}

impl Answer {
    fn object<M: Message + Default>(&self, kind: &str) -> M {
        assert_eq!(self.content_type, PROTOBUF, "answer: {:?}", self.body);
        let (_, k, raw) = unframe(&self.body);
        assert_eq!(k, kind);
        M::decode(raw.as_slice()).expect("the answer decodes")
    }

    fn status(&self) -> meta::Status {
        self.object("Status")
    }
}

async fn call(
    client: &kube::Client,
    method: &str,
    uri: &str,
    accept: &str,
    body: Option<Vec<u8>>,
) -> Answer {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header("Accept", accept);
    if body.is_some() {
        req = req.header("Content-Type", PROTOBUF);
    }
    let req = req
        .body(kube::client::Body::from(body.unwrap_or_default()))
        .expect("request");
    let resp = client.send(req).await.expect("the server answers");
    let code = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap_or_default().to_string())
        .unwrap_or_default();
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .expect("body")
        .to_bytes();
    Answer {
        code,
        content_type,
        body,
    }
}

async fn get_json(client: &kube::Client, uri: &str) -> Value {
    let a = call(client, "GET", uri, "application/json", None).await;
    assert_eq!(a.code, 200, "{}", String::from_utf8_lossy(&a.body));
    serde_json::from_slice(&a.body).unwrap()
}

fn object_meta(name: &str) -> Option<meta::ObjectMeta> {
    Some(meta::ObjectMeta {
        name: Some(name.into()),
        // Go writes every non-pointer field; an empty string is "unset".
        namespace: Some(String::new()),
        generate_name: Some(String::new()),
        labels: BTreeMap::from([("app".to_string(), name.to_string())]),
        ..Default::default()
    })
}

fn quantity(s: &str) -> Quantity {
    Quantity {
        string: Some(s.into()),
    }
}

fn node(name: &str) -> core::Node {
    core::Node {
        metadata: object_meta(name),
        spec: Some(core::NodeSpec {
            unschedulable: Some(false),
            ..Default::default()
        }),
        status: Some(core::NodeStatus {
            capacity: BTreeMap::from([
                ("cpu".to_string(), quantity("4")),
                ("memory".to_string(), quantity("8Gi")),
                ("pods".to_string(), quantity("110")),
            ]),
            ..Default::default()
        }),
    }
}

fn pod(name: &str) -> core::Pod {
    let http_get = core::HttpGetAction {
        path: Some("/healthz".into()),
        port: Some(IntOrString {
            r#type: Some(1),
            int_val: Some(0),
            str_val: Some("http".into()),
        }),
        ..Default::default()
    };
    core::Pod {
        metadata: object_meta(name),
        spec: Some(core::PodSpec {
            containers: vec![core::Container {
                name: Some("main".into()),
                image: Some("busybox:1.36".into()),
                command: vec!["sleep".into(), "3600".into()],
                ports: vec![core::ContainerPort {
                    name: Some("http".into()),
                    container_port: Some(8080),
                    host_port: Some(0),
                    protocol: Some("TCP".into()),
                    ..Default::default()
                }],
                env: vec![core::EnvVar {
                    name: Some("MODE".into()),
                    value: Some("test".into()),
                    value_from: None,
                }],
                resources: Some(core::ResourceRequirements {
                    limits: BTreeMap::from([("memory".to_string(), quantity("64Mi"))]),
                    requests: BTreeMap::from([("cpu".to_string(), quantity("100m"))]),
                    ..Default::default()
                }),
                liveness_probe: Some(core::Probe {
                    handler: Some(core::ProbeHandler {
                        http_get: Some(http_get),
                        ..Default::default()
                    }),
                    period_seconds: Some(5),
                    ..Default::default()
                }),
                volume_mounts: vec![core::VolumeMount {
                    name: Some("config".into()),
                    mount_path: Some("/etc/config".into()),
                    read_only: Some(true),
                    ..Default::default()
                }],
                stdin: Some(false),
                tty: Some(false),
                ..Default::default()
            }],
            volumes: vec![core::Volume {
                name: Some("config".into()),
                volume_source: Some(core::VolumeSource {
                    config_map: Some(core::ConfigMapVolumeSource {
                        local_object_reference: Some(core::LocalObjectReference {
                            name: Some("settings".into()),
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            }],
            termination_grace_period_seconds: Some(0),
            security_context: Some(core::PodSecurityContext {
                run_as_user: Some(0),
                ..Default::default()
            }),
            host_network: Some(false),
            ..Default::default()
        }),
        status: Some(core::PodStatus::default()),
    }
}

#[tokio::test]
async fn pods_and_nodes_over_protobuf() {
    let h = common::Harness::start().await;
    let c = h.client().await;

    // Nodes (cluster-scoped), as a kubelet registers itself.
    let body = framed("v1", "Node", &node("pb-node"));
    let a = call(&c, "POST", "/api/v1/nodes", CLIENT_GO_ACCEPT, Some(body)).await;
    assert_eq!(a.code, 201, "{:?}", a.body);
    let n: core::Node = a.object("Node");
    let md = n.metadata.unwrap();
    assert!(md.uid.is_some_and(|u| !u.is_empty()));
    assert!(md.creation_timestamp.and_then(|t| t.seconds).unwrap_or(0) > 0);
    let status = n.status.unwrap();
    assert_eq!(status.capacity["memory"].string.as_deref(), Some("8Gi"));

    // Pods: create, and the answer carries what was sent.
    let body = framed("v1", "Pod", &pod("pb-pod"));
    let a = call(
        &c,
        "POST",
        "/api/v1/namespaces/default/pods",
        CLIENT_GO_ACCEPT,
        Some(body),
    )
    .await;
    assert_eq!(a.code, 201, "{:?}", a.body);
    let p: core::Pod = a.object("Pod");
    // managedFields over protobuf: the entry, FieldsV1 as its raw JSON.
    let entry = &p.metadata.as_ref().unwrap().managed_fields[0];
    assert_eq!(entry.operation.as_deref(), Some("Update"));
    assert_eq!(entry.fields_type.as_deref(), Some("FieldsV1"));
    assert!(entry.time.as_ref().and_then(|t| t.seconds).unwrap_or(0) > 0);
    let raw = entry
        .fields_v1
        .as_ref()
        .and_then(|f| f.raw.as_ref())
        .unwrap();
    let fields: Value = serde_json::from_slice(raw).unwrap();
    assert!(fields["f:spec"]["f:containers"].is_object(), "{fields}");
    let spec = p.spec.unwrap();
    assert_eq!(spec.termination_grace_period_seconds, Some(0));
    assert_eq!(spec.security_context.unwrap().run_as_user, Some(0));
    let container = &spec.containers[0];
    let probe = container.liveness_probe.clone().unwrap();
    let port = probe.handler.unwrap().http_get.unwrap().port.unwrap();
    assert_eq!(port.str_val.as_deref(), Some("http"));
    assert_eq!(
        container.resources.clone().unwrap().limits["memory"]
            .string
            .as_deref(),
        Some("64Mi")
    );
    let cm = spec.volumes[0]
        .volume_source
        .clone()
        .unwrap()
        .config_map
        .unwrap();
    assert_eq!(
        cm.local_object_reference.unwrap().name.as_deref(),
        Some("settings")
    );

    // The stored object is the one a JSON client would have made: Go's
    // zero values of non-pointer fields are absent, pointer zeros kept.
    let stored = get_json(&c, "/api/v1/namespaces/default/pods/pb-pod").await;
    assert_eq!(stored["spec"]["terminationGracePeriodSeconds"], 0);
    assert_eq!(stored["spec"]["securityContext"]["runAsUser"], 0);
    assert_eq!(
        stored["spec"]["volumes"][0]["configMap"]["name"],
        "settings"
    );
    assert_eq!(
        stored["spec"]["containers"][0]["livenessProbe"]["httpGet"]["port"],
        "http"
    );
    assert_eq!(
        stored["spec"]["containers"][0]["resources"]["requests"]["cpu"],
        "100m"
    );
    let spec_json = stored["spec"].as_object().unwrap();
    assert!(!spec_json.contains_key("hostNetwork"), "{stored}");
    let c0 = stored["spec"]["containers"][0].as_object().unwrap();
    assert!(
        !c0.contains_key("stdin") && !c0.contains_key("tty"),
        "{stored}"
    );
    assert!(
        !stored["spec"]["containers"][0]["ports"][0]
            .as_object()
            .unwrap()
            .contains_key("hostPort"),
        "{stored}"
    );

    // Get, as protobuf.
    let a = call(
        &c,
        "GET",
        "/api/v1/namespaces/default/pods/pb-pod",
        CLIENT_GO_ACCEPT,
        None,
    )
    .await;
    assert_eq!(a.code, 200);
    let got: core::Pod = a.object("Pod");
    let md = got.metadata.clone().unwrap();
    assert_eq!(md.name.as_deref(), Some("pb-pod"));
    assert_eq!(md.labels["app"], "pb-pod");

    // Update, as protobuf, from what was read.
    let mut changed = got;
    if let Some(m) = changed.metadata.as_mut() {
        m.labels.insert("tier".into(), "backend".into());
    }
    let a = call(
        &c,
        "PUT",
        "/api/v1/namespaces/default/pods/pb-pod",
        CLIENT_GO_ACCEPT,
        Some(framed("v1", "Pod", &changed)),
    )
    .await;
    assert_eq!(a.code, 200, "{:?}", a.body);
    let updated: core::Pod = a.object("Pod");
    assert_eq!(updated.metadata.unwrap().labels["tier"], "backend");

    // List, as protobuf.
    let a = call(&c, "GET", "/api/v1/pods", CLIENT_GO_ACCEPT, None).await;
    assert_eq!(a.code, 200);
    let list: core::PodList = a.object("PodList");
    assert_eq!(list.items.len(), 1);
    assert!(list
        .metadata
        .unwrap()
        .resource_version
        .is_some_and(|rv| !rv.is_empty()));
    let a = call(&c, "GET", "/api/v1/nodes", CLIENT_GO_ACCEPT, None).await;
    let nodes: core::NodeList = a.object("NodeList");
    assert_eq!(
        nodes.items[0].metadata.as_ref().unwrap().name.as_deref(),
        Some("pb-node")
    );

    // Errors are protobuf Status objects.
    let a = call(
        &c,
        "GET",
        "/api/v1/namespaces/default/pods/nope",
        CLIENT_GO_ACCEPT,
        None,
    )
    .await;
    assert_eq!(a.code, 404);
    let s = a.status();
    assert_eq!(s.code, Some(404));
    assert_eq!(s.reason.as_deref(), Some("NotFound"));
    assert_eq!(s.message.as_deref(), Some("pods \"nope\" not found"));

    // Delete with protobuf DeleteOptions, as client-go sends them.
    let opts = meta::DeleteOptions {
        grace_period_seconds: Some(0),
        ..Default::default()
    };
    let a = call(
        &c,
        "DELETE",
        "/api/v1/namespaces/default/pods/pb-pod",
        CLIENT_GO_ACCEPT,
        Some(framed("v1", "DeleteOptions", &opts)),
    )
    .await;
    assert_eq!(a.code, 200, "{:?}", a.body);
    let a = call(
        &c,
        "GET",
        "/api/v1/namespaces/default/pods/pb-pod",
        CLIENT_GO_ACCEPT,
        None,
    )
    .await;
    assert_eq!(a.code, 404, "a zero grace period deletes at once");
}

/// Reads length-framed WatchEvents from a protobuf watch stream.
async fn next_event(body: &mut kube::client::Body, buf: &mut Vec<u8>) -> (String, String, Vec<u8>) {
    use http_body_util::BodyExt;
    loop {
        if buf.len() >= 4 {
            let len = u32::from_be_bytes(buf[..4].try_into().unwrap()) as usize;
            if buf.len() >= 4 + len {
                let ev = meta::WatchEvent::decode(&buf[4..4 + len]).expect("a WatchEvent");
                buf.drain(..4 + len);
                let raw = ev.object.unwrap().raw.unwrap();
                let (_, kind, obj) = unframe(&raw);
                return (ev.r#type.unwrap(), kind, obj);
            }
        }
        let frame = tokio::time::timeout(std::time::Duration::from_secs(10), body.frame())
            .await
            .expect("an event within 10s")
            .expect("the stream stays open")
            .expect("a frame");
        if let Ok(data) = frame.into_data() {
            buf.extend_from_slice(&data);
        }
    }
}

#[tokio::test]
async fn watches_stream_length_framed_protobuf_events() {
    let h = common::Harness::start().await;
    let c = h.client().await;
    let a = call(
        &c,
        "GET",
        "/api/v1/namespaces/default/pods",
        CLIENT_GO_ACCEPT,
        None,
    )
    .await;
    let list: core::PodList = a.object("PodList");
    let rv = list.metadata.unwrap().resource_version.unwrap();

    let req = Request::builder()
        .uri(format!(
            "/api/v1/namespaces/default/pods?watch=true&resourceVersion={rv}&allowWatchBookmarks=true"
        ))
        .header("Accept", CLIENT_GO_ACCEPT)
        .body(kube::client::Body::empty())
        .unwrap();
    let resp = c.send(req).await.expect("watch opens");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"],
        "application/vnd.kubernetes.protobuf;stream=watch"
    );
    let mut body = resp.into_body();

    let a = call(
        &c,
        "POST",
        "/api/v1/namespaces/default/pods",
        CLIENT_GO_ACCEPT,
        Some(framed("v1", "Pod", &pod("watched"))),
    )
    .await;
    assert_eq!(a.code, 201);
    let json_patch = json!({"metadata": {"labels": {"seen": "yes"}}});
    let req = Request::builder()
        .method("PATCH")
        .uri("/api/v1/namespaces/default/pods/watched")
        .header("Content-Type", "application/merge-patch+json")
        .body(kube::client::Body::from(
            json_patch.to_string().into_bytes(),
        ))
        .unwrap();
    assert_eq!(c.send(req).await.unwrap().status(), 200);

    let mut buf = Vec::new();
    let (ty, kind, raw) = next_event(&mut body, &mut buf).await;
    assert_eq!((ty.as_str(), kind.as_str()), ("ADDED", "Pod"));
    let p = core::Pod::decode(raw.as_slice()).unwrap();
    assert_eq!(p.metadata.unwrap().name.as_deref(), Some("watched"));
    let (ty, _, raw) = next_event(&mut body, &mut buf).await;
    assert_eq!(ty, "MODIFIED");
    let p = core::Pod::decode(raw.as_slice()).unwrap();
    assert_eq!(p.metadata.unwrap().labels["seen"], "yes");
}

#[tokio::test]
async fn other_kinds_over_protobuf() {
    let h = common::Harness::start().await;
    let c = h.client().await;

    let cm = core::ConfigMap {
        metadata: object_meta("settings"),
        data: BTreeMap::from([("mode".to_string(), "fast".to_string())]),
        binary_data: BTreeMap::from([("blob".to_string(), vec![0u8, 1, 2, 255])]),
        immutable: Some(false),
    };
    let secret = core::Secret {
        metadata: object_meta("creds"),
        data: BTreeMap::from([("password".to_string(), b"hunter2".to_vec())]),
        r#type: Some("Opaque".into()),
        ..Default::default()
    };
    let svc = core::Service {
        metadata: object_meta("web"),
        spec: Some(core::ServiceSpec {
            selector: BTreeMap::from([("app".to_string(), "web".to_string())]),
            ports: vec![core::ServicePort {
                name: Some("http".into()),
                protocol: Some("TCP".into()),
                port: Some(80),
                target_port: Some(IntOrString {
                    r#type: Some(0),
                    int_val: Some(8080),
                    str_val: Some(String::new()),
                }),
                node_port: Some(0),
                ..Default::default()
            }],
            r#type: Some("ClusterIP".into()),
            ..Default::default()
        }),
        status: None,
    };
    let labels = BTreeMap::from([("app".to_string(), "d".to_string())]);
    let deployment = apps::Deployment {
        metadata: object_meta("d"),
        spec: Some(apps::DeploymentSpec {
            replicas: Some(0),
            selector: Some(meta::LabelSelector {
                match_labels: labels.clone(),
                ..Default::default()
            }),
            template: Some(core::PodTemplateSpec {
                metadata: Some(meta::ObjectMeta {
                    labels,
                    ..Default::default()
                }),
                spec: pod("x").spec,
            }),
            strategy: Some(apps::DeploymentStrategy {
                r#type: Some("RollingUpdate".into()),
                rolling_update: Some(apps::RollingUpdateDeployment {
                    max_unavailable: Some(IntOrString {
                        r#type: Some(0),
                        int_val: Some(0),
                        str_val: Some(String::new()),
                    }),
                    max_surge: Some(IntOrString {
                        r#type: Some(1),
                        int_val: Some(0),
                        str_val: Some("50%".into()),
                    }),
                }),
            }),
            ..Default::default()
        }),
        status: None,
    };
    let lease = coordination::Lease {
        metadata: object_meta("holder"),
        spec: Some(coordination::LeaseSpec {
            holder_identity: Some("node-1".into()),
            lease_duration_seconds: Some(40),
            renew_time: Some(meta::MicroTime {
                seconds: Some(1_780_000_000),
                nanos: Some(123_456_000),
            }),
            ..Default::default()
        }),
    };
    let role = rbac::Role {
        metadata: object_meta("reader"),
        rules: vec![rbac::PolicyRule {
            verbs: vec!["get".into(), "list".into()],
            api_groups: vec![String::new()],
            resources: vec!["pods".into()],
            ..Default::default()
        }],
    };
    let ns = core::Namespace {
        metadata: object_meta("pb-ns"),
        ..Default::default()
    };

    let creates: Vec<(&str, &str, &str, Vec<u8>)> = vec![
        (
            "/api/v1/namespaces",
            "v1",
            "Namespace",
            framed("v1", "Namespace", &ns),
        ),
        (
            "/api/v1/namespaces/default/configmaps",
            "v1",
            "ConfigMap",
            framed("v1", "ConfigMap", &cm),
        ),
        (
            "/api/v1/namespaces/default/secrets",
            "v1",
            "Secret",
            framed("v1", "Secret", &secret),
        ),
        (
            "/api/v1/namespaces/default/services",
            "v1",
            "Service",
            framed("v1", "Service", &svc),
        ),
        (
            "/apis/apps/v1/namespaces/default/deployments",
            "apps/v1",
            "Deployment",
            framed("apps/v1", "Deployment", &deployment),
        ),
        (
            "/apis/coordination.k8s.io/v1/namespaces/default/leases",
            "coordination.k8s.io/v1",
            "Lease",
            framed("coordination.k8s.io/v1", "Lease", &lease),
        ),
        (
            "/apis/rbac.authorization.k8s.io/v1/namespaces/default/roles",
            "rbac.authorization.k8s.io/v1",
            "Role",
            framed("rbac.authorization.k8s.io/v1", "Role", &role),
        ),
    ];
    for (uri, api_version, kind, body) in creates {
        let a = call(&c, "POST", uri, CLIENT_GO_ACCEPT, Some(body)).await;
        assert_eq!(a.code, 201, "{kind}: {}", String::from_utf8_lossy(&a.body));
        let (av, k, _) = unframe(&a.body);
        assert_eq!((av.as_str(), k.as_str()), (api_version, kind));
    }

    let v = get_json(&c, "/api/v1/namespaces/default/configmaps/settings").await;
    assert_eq!(v["data"]["mode"], "fast");
    assert_eq!(v["binaryData"]["blob"], "AAEC/w==");
    let a = call(
        &c,
        "GET",
        "/api/v1/namespaces/default/secrets/creds",
        CLIENT_GO_ACCEPT,
        None,
    )
    .await;
    let s: core::Secret = a.object("Secret");
    assert_eq!(s.data["password"], b"hunter2");

    let v = get_json(&c, "/api/v1/namespaces/default/services/web").await;
    let port = &v["spec"]["ports"][0];
    assert_eq!(port["targetPort"], 8080);
    assert!(
        port["nodePort"].is_null(),
        "no node port for ClusterIP: {v}"
    );
    assert!(v["spec"]["clusterIP"]
        .as_str()
        .is_some_and(|ip| !ip.is_empty()));

    let v = get_json(&c, "/apis/apps/v1/namespaces/default/deployments/d").await;
    assert_eq!(v["spec"]["replicas"], 0);
    assert_eq!(v["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"], 0);
    assert_eq!(v["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "50%");
    let a = call(
        &c,
        "GET",
        "/apis/apps/v1/namespaces/default/deployments",
        CLIENT_GO_ACCEPT,
        None,
    )
    .await;
    let list: apps::DeploymentList = a.object("DeploymentList");
    assert_eq!(list.items[0].spec.as_ref().unwrap().replicas, Some(0));

    let v = get_json(
        &c,
        "/apis/coordination.k8s.io/v1/namespaces/default/leases/holder",
    )
    .await;
    assert_eq!(v["spec"]["renewTime"], "2026-05-28T20:26:40.123456Z");
    let v = get_json(
        &c,
        "/apis/rbac.authorization.k8s.io/v1/namespaces/default/roles/reader",
    )
    .await;
    assert_eq!(v["rules"][0]["verbs"], json!(["get", "list"]));
}

#[tokio::test]
async fn bad_protobuf_bodies_get_a_bad_request_status() {
    let h = common::Harness::start().await;
    let c = h.client().await;
    let pods = "/api/v1/namespaces/default/pods";

    let a = call(
        &c,
        "POST",
        pods,
        CLIENT_GO_ACCEPT,
        Some(b"{\"kind\":\"Pod\"}".to_vec()),
    )
    .await;
    assert_eq!(a.code, 400);
    let s = a.status();
    assert_eq!(s.reason.as_deref(), Some("BadRequest"));
    assert!(
        s.message.as_deref().unwrap().contains(
            "provided data does not appear to be a protobuf message, expected prefix [107 56 115 0]"
        ),
        "{s:?}"
    );

    let a = call(
        &c,
        "POST",
        pods,
        CLIENT_GO_ACCEPT,
        Some(b"k8s\0\x0a\xff\xff".to_vec()),
    )
    .await;
    assert_eq!(a.code, 400);
    assert!(a
        .status()
        .message
        .unwrap()
        .starts_with("the object provided is unrecognized"));

    let body = framed("v1", "Gizmo", &core::ConfigMap::default());
    let a = call(&c, "POST", pods, CLIENT_GO_ACCEPT, Some(body)).await;
    assert_eq!(a.code, 400);
    assert!(a
        .status()
        .message
        .unwrap()
        .contains("no kind \"Gizmo\" is registered for version \"v1\""),);

    // A well-framed object of another kind than the URL serves.
    let body = framed(
        "v1",
        "ConfigMap",
        &core::ConfigMap {
            metadata: object_meta("x"),
            ..Default::default()
        },
    );
    let a = call(&c, "POST", pods, CLIENT_GO_ACCEPT, Some(body)).await;
    assert_eq!(a.code, 400);
    assert!(a
        .status()
        .message
        .unwrap()
        .contains("cannot be handled as a Pod"));

    // A Pod whose raw bytes are cut short.
    let full = pod("cut").encode_to_vec();
    let u = Unknown {
        type_meta: Some(TypeMeta {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
        }),
        raw: Some(full[..full.len() / 2].to_vec()),
        ..Default::default()
    };
    let body = [b"k8s\0".as_slice(), &u.encode_to_vec()].concat();
    let a = call(&c, "POST", pods, CLIENT_GO_ACCEPT, Some(body)).await;
    assert_eq!(a.code, 400);
    assert!(a
        .status()
        .message
        .unwrap()
        .starts_with("Pod in version \"v1\" cannot be handled as a Pod"));
}

#[tokio::test]
async fn tables_stay_json_when_protobuf_is_asked_first() {
    let h = common::Harness::start().await;
    let c = h.client().await;
    let pods = "/api/v1/namespaces/default/pods";
    let a = call(
        &c,
        "POST",
        pods,
        CLIENT_GO_ACCEPT,
        Some(framed("v1", "Pod", &pod("t"))),
    )
    .await;
    assert_eq!(a.code, 201);

    // What client-go's table printers send with protobuf preferred.
    let accept = "application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1;g=meta.k8s.io,application/json";
    let a = call(&c, "GET", pods, accept, None).await;
    assert_eq!(a.code, 200);
    assert!(
        a.content_type.starts_with("application/json"),
        "{}",
        a.content_type
    );
    let t: Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(t["kind"], "Table");
    assert_eq!(t["rows"][0]["cells"][0], "t");

    // Protobuf, then anything: protobuf.
    let a = call(
        &c,
        "GET",
        &format!("{pods}/t"),
        "application/vnd.kubernetes.protobuf, */*",
        None,
    )
    .await;
    let _: core::Pod = a.object("Pod");
    // JSON first still wins when asked first.
    let a = call(
        &c,
        "GET",
        &format!("{pods}/t"),
        "application/json, application/vnd.kubernetes.protobuf",
        None,
    )
    .await;
    assert_eq!(a.content_type, "application/json");
    // Documents that are not objects stay JSON, as from kube-apiserver.
    let a = call(&c, "GET", "/version", PROTOBUF, None).await;
    assert_eq!((a.code, a.content_type.as_str()), (200, "application/json"));
    // Nothing the server writes.
    let a = call(&c, "GET", &format!("{pods}/t"), "image/png", None).await;
    assert_eq!(a.code, 406);
}

#[tokio::test]
async fn kubectl_create_still_works_over_protobuf() {
    let h = common::Harness::start().await;
    h.kubectl(&["create", "namespace", "kc"]).await;
    h.kubectl(&[
        "create",
        "configmap",
        "cfg",
        "-n",
        "kc",
        "--from-literal=a=b",
    ])
    .await;
    h.kubectl(&[
        "create",
        "secret",
        "generic",
        "sec",
        "-n",
        "kc",
        "--from-literal=p=q",
    ])
    .await;
    h.kubectl(&[
        "create",
        "deployment",
        "web",
        "-n",
        "kc",
        "--image=nginx",
        "--replicas=2",
        "--port=80",
    ])
    .await;
    h.kubectl(&[
        "create",
        "service",
        "clusterip",
        "web",
        "-n",
        "kc",
        "--tcp=80:8080",
    ])
    .await;
    h.kubectl(&["create", "serviceaccount", "bot", "-n", "kc"])
        .await;
    let v: Value = serde_json::from_str(
        &h.kubectl(&["get", "deployment", "web", "-n", "kc", "-o", "json"])
            .await,
    )
    .unwrap();
    assert_eq!(v["spec"]["replicas"], 2);
    let c0 = &v["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c0["image"], "nginx");
    assert_eq!(c0["ports"][0]["containerPort"], 80);
    assert_eq!(c0["resources"], json!({}));
    let v: Value = serde_json::from_str(
        &h.kubectl(&["get", "service", "web", "-n", "kc", "-o", "json"])
            .await,
    )
    .unwrap();
    assert_eq!(v["spec"]["ports"][0]["targetPort"], 8080);
    let v: Value = serde_json::from_str(
        &h.kubectl(&["get", "configmap", "cfg", "-n", "kc", "-o", "json"])
            .await,
    )
    .unwrap();
    assert_eq!(v["data"]["a"], "b");
    let out = h
        .kubectl(&[
            "get",
            "secret",
            "sec",
            "-n",
            "kc",
            "-o",
            "jsonpath={.data.p}",
        ])
        .await;
    assert_eq!(out.trim(), "cQ==");
}

/// client-go's `UpdateEphemeralContainers` (the conformance spec "should
/// update the ephemeral containers in an existing pod"): GET and PUT of
/// `pods/ephemeralcontainers` with protobuf bodies and answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ephemeral_containers_over_protobuf() {
    let h = common::Harness::start().await;
    h.kubectl(&["run", "pb-debug", "--image=busybox", "--", "sleep", "3600"])
        .await;
    let c = h.client().await;
    let uri = "/api/v1/namespaces/default/pods/pb-debug/ephemeralcontainers";
    let a = call(&c, "GET", uri, CLIENT_GO_ACCEPT, None).await;
    assert_eq!(a.code, 200);
    let mut pod: core::Pod = a.object("Pod");
    let spec = pod.spec.as_mut().unwrap();
    assert!(spec.ephemeral_containers.is_empty());
    spec.ephemeral_containers.push(core::EphemeralContainer {
        ephemeral_container_common: Some(core::EphemeralContainerCommon {
            name: Some("debugger".into()),
            image: Some("busybox".into()),
            command: vec!["sh".into()],
            stdin: Some(true),
            tty: Some(true),
            ..Default::default()
        }),
        target_container_name: Some("pb-debug".into()),
    });
    let a = call(
        &c,
        "PUT",
        uri,
        CLIENT_GO_ACCEPT,
        Some(framed("v1", "Pod", &pod)),
    )
    .await;
    assert_eq!(a.code, 200, "{:?}", a.body);
    let updated: core::Pod = a.object("Pod");
    let ec = &updated.spec.unwrap().ephemeral_containers[0];
    let common = ec.ephemeral_container_common.as_ref().unwrap();
    assert_eq!(common.name.as_deref(), Some("debugger"));
    assert_eq!(common.image_pull_policy.as_deref(), Some("Always"));
    assert_eq!(ec.target_container_name.as_deref(), Some("pb-debug"));
    let stored = get_json(&c, "/api/v1/namespaces/default/pods/pb-debug").await;
    assert_eq!(stored["spec"]["ephemeralContainers"][0]["tty"], true);
}

/// A pod bound to a node whose kubelet never answers: deleting it is
/// graceful, so the grace period stored shows which one the eviction asked.
async fn bound_pod(c: &kube::Client, name: &str) {
    let mut p = pod(name);
    let spec = p.spec.as_mut().unwrap();
    spec.node_name = Some("node-a".into());
    spec.termination_grace_period_seconds = Some(30);
    let body = framed("v1", "Pod", &p);
    let uri = "/api/v1/namespaces/default/pods";
    let a = call(c, "POST", uri, CLIENT_GO_ACCEPT, Some(body)).await;
    assert_eq!(a.code, 201, "{:?}", a.body);
}

/// pods/eviction as client-go sends it with protobuf: policy/v1, and the
/// policy/v1beta1 Eviction of older clients (`kubectl drain` before 1.22).
#[tokio::test]
async fn evictions_over_protobuf() {
    let h = common::Harness::start().await;
    let c = h.client().await;
    let delete_options = |grace: i64| meta::DeleteOptions {
        grace_period_seconds: Some(grace),
        ..Default::default()
    };
    let mut metadata = object_meta("pb-new");
    metadata.as_mut().unwrap().namespace = Some("default".into());
    let v1 = framed(
        "policy/v1",
        "Eviction",
        &k8s_pb::api::policy::v1::Eviction {
            metadata,
            delete_options: Some(delete_options(7)),
        },
    );
    let mut metadata = object_meta("pb-old");
    metadata.as_mut().unwrap().namespace = Some("default".into());
    let v1beta1 = framed(
        "policy/v1beta1",
        "Eviction",
        &k8s_pb::api::policy::v1beta1::Eviction {
            metadata,
            delete_options: Some(delete_options(9)),
        },
    );
    for (pod, body, grace) in [("pb-new", v1, 7), ("pb-old", v1beta1, 9)] {
        bound_pod(&c, pod).await;
        let uri = format!("/api/v1/namespaces/default/pods/{pod}/eviction");
        let a = call(&c, "POST", &uri, CLIENT_GO_ACCEPT, Some(body)).await;
        assert_eq!(a.code, 201, "{pod}: {}", String::from_utf8_lossy(&a.body));
        let status = a.status();
        assert_eq!(status.status.as_deref(), Some("Success"));
        let stored = get_json(&c, &format!("/api/v1/namespaces/default/pods/{pod}")).await;
        assert!(
            stored["metadata"]["deletionTimestamp"].is_string(),
            "{stored}"
        );
        assert_eq!(stored["metadata"]["deletionGracePeriodSeconds"], grace);
    }

    // The name in the body still has to be the pod's.
    bound_pod(&c, "pb-other").await;
    let mut metadata = object_meta("someone-else");
    metadata.as_mut().unwrap().namespace = Some("default".into());
    let body = framed(
        "policy/v1beta1",
        "Eviction",
        &k8s_pb::api::policy::v1beta1::Eviction {
            metadata,
            delete_options: None,
        },
    );
    let uri = "/api/v1/namespaces/default/pods/pb-other/eviction";
    let a = call(&c, "POST", uri, CLIENT_GO_ACCEPT, Some(body)).await;
    assert_eq!(a.code, 400);
    assert_eq!(
        a.status().message.as_deref(),
        Some("name in URL does not match name in Eviction object")
    );
}
