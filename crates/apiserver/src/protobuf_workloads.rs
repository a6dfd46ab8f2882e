//! Protobuf bodies of the workload kinds kubectl's typed clients POST
//! (`kubectl create deployment` sends a Deployment as protobuf), decoded
//! with k8s-pb's generated types and turned into their JSON form.
//!
//! Go encodes its non-pointer fields even when unset (empty strings,
//! zeros, false), so those read as absent here, as their JSON would be.
//! The pod template covers what a pod created from a command line or a
//! simple manifest holds: containers (command, args, ports, env, resources,
//! pull policy), restart and DNS policy, service account, node selector and
//! grace period; other fields are not carried over.

use std::collections::BTreeMap;

use k8s_pb::api::apps::v1 as apps;
use k8s_pb::api::core::v1 as core;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use prost::Message;
use serde_json::{json, Map, Value};

use crate::protobuf::DecodeError;

/// Decodes the raw object of a workload `kind` (Deployment, ReplicaSet).
pub fn decode(kind: &str, raw: &[u8]) -> Result<Value, DecodeError> {
    let bad = |e: prost::DecodeError| DecodeError(format!("malformed {kind}: {e}"));
    match kind {
        "Deployment" => apps::Deployment::decode(raw)
            .map_err(bad)
            .map(|d| object(d.metadata, d.spec.map(deployment_spec))),
        "ReplicaSet" => apps::ReplicaSet::decode(raw).map_err(bad).map(|rs| {
            object(
                rs.metadata,
                rs.spec.map(|s| {
                    let mut m = Map::new();
                    put_i32(&mut m, "replicas", s.replicas);
                    put_nonzero(&mut m, "minReadySeconds", s.min_ready_seconds);
                    put(&mut m, "selector", s.selector.map(selector));
                    put(&mut m, "template", s.template.map(template));
                    Value::Object(m)
                }),
            )
        }),
        other => Err(DecodeError(format!("{other} is not a workload kind"))),
    }
}

fn object(metadata: Option<meta::ObjectMeta>, spec: Option<Value>) -> Value {
    let mut o = Map::new();
    put(&mut o, "metadata", metadata.map(object_meta));
    put(&mut o, "spec", spec);
    Value::Object(o)
}

fn put(m: &mut Map<String, Value>, k: &str, v: Option<Value>) {
    if let Some(v) = v {
        m.insert(k.into(), v);
    }
}

fn put_str(m: &mut Map<String, Value>, k: &str, v: Option<String>) {
    put(m, k, v.filter(|s| !s.is_empty()).map(Value::String));
}

fn put_i32(m: &mut Map<String, Value>, k: &str, v: Option<i32>) {
    put(m, k, v.map(|v| json!(v)));
}

fn put_nonzero<T: Into<i64>>(m: &mut Map<String, Value>, k: &str, v: Option<T>) {
    put(
        m,
        k,
        v.map(Into::into).filter(|v| *v != 0).map(|v| json!(v)),
    );
}

fn put_true(m: &mut Map<String, Value>, k: &str, v: Option<bool>) {
    put(m, k, v.filter(|b| *b).map(|b| json!(b)));
}

fn put_list<T>(m: &mut Map<String, Value>, k: &str, v: Vec<T>, f: impl Fn(T) -> Value) {
    if !v.is_empty() {
        m.insert(k.into(), Value::Array(v.into_iter().map(f).collect()));
    }
}

fn put_map(m: &mut Map<String, Value>, k: &str, v: BTreeMap<String, String>) {
    if !v.is_empty() {
        m.insert(k.into(), json!(v));
    }
}

fn object_meta(m: meta::ObjectMeta) -> Value {
    let mut o = Map::new();
    put_str(&mut o, "name", m.name);
    put_str(&mut o, "generateName", m.generate_name);
    put_str(&mut o, "namespace", m.namespace);
    put_str(&mut o, "resourceVersion", m.resource_version);
    put_map(&mut o, "labels", m.labels);
    put_map(&mut o, "annotations", m.annotations);
    put_list(&mut o, "finalizers", m.finalizers, Value::String);
    Value::Object(o)
}

fn selector(s: meta::LabelSelector) -> Value {
    let mut o = Map::new();
    put_map(&mut o, "matchLabels", s.match_labels);
    put_list(&mut o, "matchExpressions", s.match_expressions, |r| {
        let mut e = Map::new();
        put_str(&mut e, "key", r.key);
        put_str(&mut e, "operator", r.operator);
        put_list(&mut e, "values", r.values, Value::String);
        Value::Object(e)
    });
    Value::Object(o)
}

fn int_or_string(v: IntOrString) -> Value {
    match v.r#type {
        Some(1) => json!(v.str_val.unwrap_or_default()),
        _ => json!(v.int_val.unwrap_or(0)),
    }
}

fn deployment_spec(s: apps::DeploymentSpec) -> Value {
    let mut o = Map::new();
    put_i32(&mut o, "replicas", s.replicas);
    put(&mut o, "selector", s.selector.map(selector));
    put(&mut o, "template", s.template.map(template));
    if let Some(st) = s.strategy {
        let mut m = Map::new();
        put_str(&mut m, "type", st.r#type);
        if let Some(r) = st.rolling_update {
            let mut ru = Map::new();
            put(
                &mut ru,
                "maxUnavailable",
                r.max_unavailable.map(int_or_string),
            );
            put(&mut ru, "maxSurge", r.max_surge.map(int_or_string));
            m.insert("rollingUpdate".into(), Value::Object(ru));
        }
        o.insert("strategy".into(), Value::Object(m));
    }
    put_nonzero(&mut o, "minReadySeconds", s.min_ready_seconds);
    put_i32(&mut o, "revisionHistoryLimit", s.revision_history_limit);
    put_true(&mut o, "paused", s.paused);
    put_i32(
        &mut o,
        "progressDeadlineSeconds",
        s.progress_deadline_seconds,
    );
    Value::Object(o)
}

fn template(t: core::PodTemplateSpec) -> Value {
    let mut o = Map::new();
    put(&mut o, "metadata", t.metadata.map(object_meta));
    put(&mut o, "spec", t.spec.map(pod_spec));
    Value::Object(o)
}

fn pod_spec(s: core::PodSpec) -> Value {
    let mut o = Map::new();
    put_list(&mut o, "initContainers", s.init_containers, container);
    put_list(&mut o, "containers", s.containers, container);
    put_str(&mut o, "restartPolicy", s.restart_policy);
    put(
        &mut o,
        "terminationGracePeriodSeconds",
        s.termination_grace_period_seconds.map(|v| json!(v)),
    );
    put(
        &mut o,
        "activeDeadlineSeconds",
        s.active_deadline_seconds.map(|v| json!(v)),
    );
    put_str(&mut o, "dnsPolicy", s.dns_policy);
    put_map(&mut o, "nodeSelector", s.node_selector);
    put_str(&mut o, "serviceAccountName", s.service_account_name);
    put_str(&mut o, "schedulerName", s.scheduler_name);
    put_true(&mut o, "hostNetwork", s.host_network);
    Value::Object(o)
}

fn container(c: core::Container) -> Value {
    let mut o = Map::new();
    put_str(&mut o, "name", c.name);
    put_str(&mut o, "image", c.image);
    put_list(&mut o, "command", c.command, Value::String);
    put_list(&mut o, "args", c.args, Value::String);
    put_str(&mut o, "workingDir", c.working_dir);
    put_list(&mut o, "ports", c.ports, |p| {
        let mut m = Map::new();
        put_str(&mut m, "name", p.name);
        put_nonzero(&mut m, "hostPort", p.host_port);
        put_i32(&mut m, "containerPort", p.container_port);
        put_str(&mut m, "protocol", p.protocol);
        put_str(&mut m, "hostIP", p.host_ip);
        Value::Object(m)
    });
    put_list(&mut o, "env", c.env, |e| {
        let mut m = Map::new();
        put_str(&mut m, "name", e.name);
        put_str(&mut m, "value", e.value);
        Value::Object(m)
    });
    if let Some(r) = c.resources {
        let quantities =
            |q: BTreeMap<String, k8s_pb::apimachinery::pkg::api::resource::Quantity>| {
                q.into_iter()
                    .map(|(k, v)| (k, json!(v.string.unwrap_or_default())))
                    .collect::<Map<String, Value>>()
            };
        let mut m = Map::new();
        if !r.limits.is_empty() {
            m.insert("limits".into(), Value::Object(quantities(r.limits)));
        }
        if !r.requests.is_empty() {
            m.insert("requests".into(), Value::Object(quantities(r.requests)));
        }
        o.insert("resources".into(), Value::Object(m));
    }
    put_str(&mut o, "terminationMessagePath", c.termination_message_path);
    put_str(
        &mut o,
        "terminationMessagePolicy",
        c.termination_message_policy,
    );
    put_str(&mut o, "imagePullPolicy", c.image_pull_policy);
    put_true(&mut o, "stdin", c.stdin);
    put_true(&mut o, "tty", c.tty);
    Value::Object(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deployment_reads_as_its_json() {
        let d = apps::Deployment {
            metadata: Some(meta::ObjectMeta {
                name: Some("web".into()),
                namespace: Some(String::new()),
                labels: [("app".to_string(), "web".to_string())].into(),
                ..Default::default()
            }),
            spec: Some(apps::DeploymentSpec {
                replicas: Some(3),
                selector: Some(meta::LabelSelector {
                    match_labels: [("app".to_string(), "web".to_string())].into(),
                    ..Default::default()
                }),
                template: Some(core::PodTemplateSpec {
                    metadata: None,
                    spec: Some(core::PodSpec {
                        containers: vec![core::Container {
                            name: Some("nginx".into()),
                            image: Some("nginx".into()),
                            termination_message_path: Some(String::new()),
                            resources: Some(Default::default()),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }),
                }),
                strategy: Some(Default::default()),
                min_ready_seconds: Some(0),
                ..Default::default()
            }),
            status: None,
        };
        let v = decode("Deployment", &d.encode_to_vec()).unwrap();
        assert_eq!(
            v,
            json!({"metadata": {"name": "web", "labels": {"app": "web"}},
                "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                    "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx", "resources": {}}]}},
                    "strategy": {}}})
        );
    }
}
