//! OpenAPI v3 documents (for `kubectl explain` and kubectl's check that the
//! server does strict field validation) and the unknown-field check behind
//! `fieldValidation=Strict`. Both come from the JSON schemas k8s-openapi
//! derives for its types, so descriptions and fields match Kubernetes 1.32.

use std::collections::HashMap;
use std::sync::OnceLock;

use bytes::Bytes;
use schemars::generate::SchemaSettings;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::resources::{ResourceDef, GROUPS, RESOURCES};

pub mod v2_protobuf;

const REF_PREFIX: &str = "#/components/schemas/";

fn definitions() -> Map<String, Value> {
    use k8s_openapi::api::apps::v1 as apps;
    use k8s_openapi::api::authentication::v1 as authn;
    use k8s_openapi::api::autoscaling::v1 as autoscaling;
    use k8s_openapi::api::coordination::v1 as coord;
    use k8s_openapi::api::core::v1 as core;
    use k8s_openapi::api::discovery::v1 as discovery;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
    let mut g = SchemaSettings::openapi3().into_generator();
    g.subschema_for::<core::PodTemplate>();
    g.subschema_for::<core::ReplicationController>();
    g.subschema_for::<apps::Deployment>();
    g.subschema_for::<apps::ReplicaSet>();
    g.subschema_for::<apps::DaemonSet>();
    g.subschema_for::<apps::StatefulSet>();
    g.subschema_for::<apps::ControllerRevision>();
    g.subschema_for::<k8s_openapi::api::batch::v1::Job>();
    g.subschema_for::<k8s_openapi::api::batch::v1::CronJob>();
    g.subschema_for::<k8s_openapi::api::policy::v1::PodDisruptionBudget>();
    g.subschema_for::<k8s_openapi::api::policy::v1::Eviction>();
    g.subschema_for::<k8s_openapi::api::node::v1::RuntimeClass>();
    g.subschema_for::<core::PersistentVolume>();
    g.subschema_for::<core::PersistentVolumeClaim>();
    {
        use k8s_openapi::api::storage::v1 as storage;
        g.subschema_for::<storage::StorageClass>();
        g.subschema_for::<storage::CSIDriver>();
        g.subschema_for::<storage::CSINode>();
        g.subschema_for::<storage::CSIStorageCapacity>();
        g.subschema_for::<storage::VolumeAttachment>();
    }
    g.subschema_for::<autoscaling::Scale>();
    g.subschema_for::<core::Pod>();
    g.subschema_for::<core::Namespace>();
    g.subschema_for::<core::Node>();
    g.subschema_for::<core::Event>();
    g.subschema_for::<core::ConfigMap>();
    g.subschema_for::<core::Secret>();
    g.subschema_for::<core::ServiceAccount>();
    g.subschema_for::<core::Service>();
    g.subschema_for::<core::Endpoints>();
    g.subschema_for::<discovery::EndpointSlice>();
    g.subschema_for::<core::Binding>();
    g.subschema_for::<authn::TokenRequest>();
    g.subschema_for::<coord::Lease>();
    {
        use k8s_openapi::api::authentication::v1 as authn;
        use k8s_openapi::api::authorization::v1 as authz;
        use k8s_openapi::api::rbac::v1 as rbac;
        g.subschema_for::<rbac::Role>();
        g.subschema_for::<rbac::ClusterRole>();
        g.subschema_for::<rbac::RoleBinding>();
        g.subschema_for::<rbac::ClusterRoleBinding>();
        g.subschema_for::<authz::SelfSubjectAccessReview>();
        g.subschema_for::<authz::SelfSubjectRulesReview>();
        g.subschema_for::<authz::SubjectAccessReview>();
        g.subschema_for::<authz::LocalSubjectAccessReview>();
        g.subschema_for::<authn::SelfSubjectReview>();
        g.subschema_for::<authn::TokenReview>();
        g.subschema_for::<k8s_openapi::api::certificates::v1::CertificateSigningRequest>();
    }
    g.subschema_for::<meta::Status>();
    g.subschema_for::<meta::DeleteOptions>();
    let mut defs = g.take_definitions(true);
    for def in defs.values_mut() {
        // k8s-openapi marks `metadata` required because the Rust field is not
        // optional; Kubernetes does not.
        if let Some(req) = def.get_mut("required").and_then(Value::as_array_mut) {
            req.retain(|f| f != "metadata");
            if req.is_empty() {
                def.as_object_mut().map(|o| o.remove("required"));
            }
        }
    }
    for r in RESOURCES {
        if let Some(def) = defs.get_mut(r.schema).and_then(Value::as_object_mut) {
            def.insert(
                "x-kubernetes-group-version-kind".into(),
                json!([r.gvk_json()]),
            );
        }
    }
    // The kinds only subresources take.
    for (schema, group, version, kind) in [
        (
            "io.k8s.api.autoscaling.v1.Scale",
            "autoscaling",
            "v1",
            "Scale",
        ),
        ("io.k8s.api.core.v1.Binding", "", "v1", "Binding"),
        ("io.k8s.api.policy.v1.Eviction", "policy", "v1", "Eviction"),
    ] {
        if let Some(def) = defs.get_mut(schema).and_then(Value::as_object_mut) {
            def.insert(
                "x-kubernetes-group-version-kind".into(),
                json!([{"group": group, "version": version, "kind": kind}]),
            );
        }
    }
    defs
}

// ---------------------------------------------------------------------------
// Documents

pub struct Doc {
    pub body: Bytes,
    pub hash: String,
}

/// Path of a group version as it appears in the /openapi/v3 index.
pub fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

fn all_gvs() -> Vec<(&'static str, &'static str)> {
    let mut v = vec![("", "v1")];
    v.extend(GROUPS.iter().copied());
    v
}

/// The GV documents, built once on first use and kept as bytes.
pub fn docs() -> &'static HashMap<String, Doc> {
    static DOCS: OnceLock<HashMap<String, Doc>> = OnceLock::new();
    DOCS.get_or_init(|| {
        let defs = Value::Object(definitions());
        all_gvs()
            .into_iter()
            .map(|(g, v)| {
                let doc = gv_doc(g, v, &defs);
                let body = Bytes::from(serde_json::to_vec(&doc).unwrap_or_default());
                let hash = hex::encode_upper(Sha256::digest(&body));
                (gv_path(g, v), Doc { body, hash })
            })
            .collect()
    })
}

pub fn index() -> Value {
    let paths: Map<String, Value> = docs()
        .iter()
        .map(|(p, d)| {
            (
                p.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={}", d.hash)}),
            )
        })
        .collect();
    json!({ "paths": paths })
}

// ---------------------------------------------------------------------------
// OpenAPI v2

/// The Swagger 2.0 document of every served group (`/openapi/v2`), derived
/// from the v3 documents above so both describe the same paths and
/// schemas: components become definitions, a request body a `body`
/// parameter, media types `consumes`/`produces`, parameter schemas inline.
pub fn v2() -> &'static Doc {
    static DOC: OnceLock<Doc> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut paths = Map::new();
        let mut definitions = Map::new();
        let mut gvs: Vec<_> = docs().iter().collect();
        gvs.sort_by(|a, b| a.0.cmp(b.0));
        for (_, doc) in gvs {
            let Ok(mut v3) = serde_json::from_slice::<Value>(&doc.body) else {
                continue;
            };
            v3_refs_to_v2(&mut v3);
            if let Some(schemas) = v3["components"]["schemas"].as_object() {
                definitions.extend(schemas.clone());
            }
            for (path, item) in v3["paths"].as_object().into_iter().flatten() {
                let ops: Map<String, Value> = item
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(method, op)| (method.clone(), v2_operation(op)))
                    .collect();
                paths.insert(path.clone(), Value::Object(ops));
            }
        }
        let doc = json!({
            "swagger": "2.0",
            "info": {"title": "Kubernetes", "version": "v1.32.0"},
            "paths": paths,
            "definitions": definitions,
            "securityDefinitions": {"BearerToken": {"description": "Bearer Token authentication", "type": "apiKey", "name": "authorization", "in": "header"}},
            "security": [{"BearerToken": []}],
        });
        let body = Bytes::from(serde_json::to_vec(&doc).unwrap_or_default());
        let hash = hex::encode_upper(Sha256::digest(&body));
        Doc { body, hash }
    })
}

/// Points every `$ref` at `#/definitions/` and writes what Swagger 2.0
/// has no word for as Kubernetes' v2 document does: a reference with a
/// description (v3's one-element `allOf`) as a `$ref` beside it, an
/// int-or-string as a string of format `int-or-string`, no `nullable`.
fn v3_refs_to_v2(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.remove("nullable");
            if let Some(Value::Array(all)) = m.get("allOf") {
                if let [one] = all.as_slice() {
                    if let Some(r) = one.get("$ref").cloned() {
                        m.remove("allOf");
                        m.insert("$ref".into(), r);
                    }
                }
            }
            if m.remove("x-kubernetes-int-or-string") == Some(Value::Bool(true)) {
                m.insert("type".into(), json!("string"));
                m.insert("format".into(), json!("int-or-string"));
            }
            if let Some(Value::String(r)) = m.get_mut("$ref") {
                if let Some(name) = r.strip_prefix(REF_PREFIX) {
                    *r = format!("#/definitions/{name}");
                }
            }
            m.values_mut().for_each(v3_refs_to_v2);
        }
        Value::Array(a) => a.iter_mut().for_each(v3_refs_to_v2),
        _ => {}
    }
}

fn v2_operation(op: &Value) -> Value {
    let Some(src) = op.as_object() else {
        return op.clone();
    };
    let mut out = src.clone();
    let mut params: Vec<Value> = src
        .get("parameters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|p| {
            let mut p = p.clone();
            if let Some(schema) = p.as_object_mut().and_then(|o| o.remove("schema")) {
                for (k, v) in schema.as_object().into_iter().flatten() {
                    p[k] = v.clone();
                }
            }
            p
        })
        .collect();
    if let Some(body) = out.remove("requestBody") {
        let content = body["content"].as_object().cloned().unwrap_or_default();
        if let Some((_, media)) = content.iter().next() {
            params.push(
                json!({"name": "body", "in": "body", "required": true, "schema": media["schema"]}),
            );
        }
        out.insert("consumes".into(), json!(content.keys().collect::<Vec<_>>()));
    }
    out.insert("parameters".into(), Value::Array(params));
    let mut produces: Vec<String> = Vec::new();
    let responses: Map<String, Value> = src
        .get("responses")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(code, r)| {
            let mut r2 = json!({"description": r["description"]});
            if let Some(content) = r["content"].as_object() {
                for (media, m) in content {
                    if !produces.contains(media) {
                        produces.push(media.clone());
                    }
                    r2["schema"] = m["schema"].clone();
                }
            }
            (code.clone(), r2)
        })
        .collect();
    out.insert("responses".into(), Value::Object(responses));
    out.insert("produces".into(), json!(produces));
    out.insert("schemes".into(), json!(["https"]));
    Value::Object(out)
}

fn param(name: &str, desc: &str) -> Value {
    json!({"name": name, "in": "query", "description": desc, "schema": {"type": "string", "uniqueItems": true}})
}

fn path_param(name: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "description": format!("{name} of the object"), "schema": {"type": "string", "uniqueItems": true}})
}

fn body_of(schema: &str) -> Value {
    json!({"content": {"application/json": {"schema": {"$ref": format!("{REF_PREFIX}{schema}")}},
                       "application/yaml": {"schema": {"$ref": format!("{REF_PREFIX}{schema}")}}},
           "required": true})
}

fn ok_of(schema: &str) -> Value {
    json!({"200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": format!("{REF_PREFIX}{schema}")}}}},
           "401": {"description": "Unauthorized"}})
}

/// The answers of a POST, as kube-apiserver documents them.
fn created_of(schema: &str) -> Value {
    let of = |description: &str| json!({"description": description, "content": {"application/json": {"schema": {"$ref": format!("{REF_PREFIX}{schema}")}}}});
    json!({"200": of("OK"), "201": of("Created"), "202": of("Accepted"),
           "401": {"description": "Unauthorized"}})
}

fn op(r: &ResourceDef, action: &str, id: String, params: Vec<Value>, extra: Value) -> Value {
    let mut o = json!({
        "operationId": id,
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": r.gvk_json(),
        "parameters": params,
        "responses": ok_of(r.schema),
    });
    if let (Some(o), Some(extra)) = (o.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            o.insert(k.clone(), v.clone());
        }
    }
    o
}

fn write_params() -> Vec<Value> {
    vec![
        param("dryRun", "When present, indicates that modifications should not be persisted."),
        param("fieldManager", "fieldManager is a name associated with the actor or entity that is making these changes."),
        param("fieldValidation", "fieldValidation instructs the server on how to handle objects in the request containing unknown or duplicate fields. Valid values are: Ignore, Warn, Strict."),
    ]
}

fn gv_doc(group: &str, version: &str, defs: &Value) -> Value {
    let mut paths = Map::new();
    for r in RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        let base = if group.is_empty() {
            format!("/api/{version}")
        } else {
            format!("/apis/{group}/{version}")
        };
        let (coll, scope_params) = if r.namespaced {
            (
                format!("{base}/namespaces/{{namespace}}/{}", r.name),
                vec![path_param("namespace")],
            )
        } else {
            (format!("{base}/{}", r.name), vec![])
        };
        let kind = r.kind;
        let mut create_params = scope_params.clone();
        create_params.extend(write_params());
        if !r.verbs().contains(&"get") {
            // Create-only kinds (the reviews).
            paths.insert(
                coll,
                json!({"post": op(r, "post", format!("create{kind}"), create_params, json!({"requestBody": body_of(r.schema)}))}),
            );
            continue;
        }
        paths.insert(
            coll.clone(),
            json!({
                "get": op(r, "list", format!("list{kind}"), scope_params.clone(), json!({})),
                "post": op(r, "post", format!("create{kind}"), create_params, json!({"requestBody": body_of(r.schema)})),
            }),
        );
        let item = format!("{coll}/{{name}}");
        let mut item_params = scope_params.clone();
        item_params.push(path_param("name"));
        let mut upd = item_params.clone();
        upd.extend(write_params());
        let patch_body = json!({"content": {
            "application/json-patch+json": {"schema": {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"}},
            "application/merge-patch+json": {"schema": {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"}}},
            "required": true});
        paths.insert(
            item.clone(),
            json!({
                "get": op(r, "get", format!("read{kind}"), item_params.clone(), json!({})),
                "put": op(r, "put", format!("replace{kind}"), upd.clone(), json!({"requestBody": body_of(r.schema)})),
                "patch": op(r, "patch", format!("patch{kind}"), upd.clone(), json!({"requestBody": patch_body})),
                "delete": op(r, "delete", format!("delete{kind}"), item_params.clone(), json!({})),
            }),
        );
        for sub in r
            .subresources
            .iter()
            .filter(|s| matches!(**s, "status" | "approval"))
        {
            let title = if *sub == "status" {
                "Status"
            } else {
                "Approval"
            };
            paths.insert(
                format!("{item}/{sub}"),
                json!({
                    "get": op(r, "get", format!("read{kind}{title}"), item_params.clone(), json!({})),
                    "put": op(r, "put", format!("replace{kind}{title}"), upd.clone(), json!({"requestBody": body_of(r.schema)})),
                    "patch": op(r, "patch", format!("patch{kind}{title}"), upd.clone(), json!({"requestBody": patch_body})),
                }),
            );
        }
        if r.subresources.contains(&"scale") {
            let scale = "io.k8s.api.autoscaling.v1.Scale";
            let scale_op = |action: &str, id: String, params: Vec<Value>, extra: Value| {
                let mut o = op(r, action, id, params, extra);
                o["x-kubernetes-group-version-kind"] =
                    json!({"group": "autoscaling", "version": "v1", "kind": "Scale"});
                o["responses"] = ok_of(scale);
                o
            };
            paths.insert(
                format!("{item}/scale"),
                json!({
                    "get": scale_op("get", format!("read{kind}Scale"), item_params.clone(), json!({})),
                    "put": scale_op("put", format!("replace{kind}Scale"), upd.clone(), json!({"requestBody": body_of(scale)})),
                    "patch": scale_op("patch", format!("patch{kind}Scale"), upd.clone(), json!({"requestBody": patch_body})),
                }),
            );
        }
        // pods/binding and pods/eviction: a POST of a kind of their own.
        for sub in r
            .subresources
            .iter()
            .filter(|s| matches!(**s, "binding" | "eviction"))
        {
            let (sub_kind, _) = r.subresource(sub);
            let (group, version) = r.subresource_group_version(sub);
            let package = if group.is_empty() { "core" } else { group };
            let schema = format!("io.k8s.api.{package}.{version}.{sub_kind}");
            let mut post = op(
                r,
                "post",
                format!("create{kind}{sub_kind}"),
                upd.clone(),
                json!({"requestBody": body_of(&schema)}),
            );
            post["x-kubernetes-group-version-kind"] =
                json!({"group": group, "version": version, "kind": sub_kind});
            post["responses"] = created_of(&schema);
            paths.insert(format!("{item}/{sub}"), json!({ "post": post }));
        }
    }
    let mut schemas = defs.clone();
    if let Some(s) = schemas.as_object_mut() {
        s.insert(
            "io.k8s.apimachinery.pkg.apis.meta.v1.Patch".into(),
            json!({"description": "Patch is provided to give a concrete name and type to the Kubernetes PATCH request body.", "type": "object"}),
        );
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.32.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    })
}

// ---------------------------------------------------------------------------
// Unknown-field detection

/// The shape of a schema, enough to spot unknown fields (descriptions dropped
/// to keep this small in memory).
enum Shape {
    Object(HashMap<String, Shape>),
    Map(Box<Shape>),
    Array(Box<Shape>),
    Ref(String),
    Any,
}

fn shape_of(s: &Value) -> Shape {
    if let Some(r) = s.get("$ref").and_then(Value::as_str) {
        return Shape::Ref(r.trim_start_matches(REF_PREFIX).to_string());
    }
    if let Some([one]) = s.get("allOf").and_then(Value::as_array).map(Vec::as_slice) {
        return shape_of(one);
    }
    if s.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
        return Shape::Any;
    }
    if let Some(props) = s.get("properties").and_then(Value::as_object) {
        return Shape::Object(
            props
                .iter()
                .map(|(k, v)| (k.clone(), shape_of(v)))
                .collect(),
        );
    }
    if let Some(ap) = s.get("additionalProperties").filter(|v| v.is_object()) {
        return Shape::Map(Box::new(shape_of(ap)));
    }
    if let Some(items) = s.get("items") {
        return Shape::Array(Box::new(shape_of(items)));
    }
    Shape::Any
}

fn shapes() -> &'static HashMap<String, Shape> {
    static SHAPES: OnceLock<HashMap<String, Shape>> = OnceLock::new();
    SHAPES.get_or_init(|| {
        definitions()
            .iter()
            .map(|(k, v)| (k.clone(), shape_of(v)))
            .collect()
    })
}

/// Paths of fields in `value` that the schema `schema_name` does not define,
/// written as Kubernetes does (`spec.containers[0].foo`).
pub fn unknown_fields(schema_name: &str, value: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let shapes = shapes();
    if let Some(s) = shapes.get(schema_name) {
        walk(s, value, &mut String::new(), shapes, &mut out, 0);
    }
    out
}

/// `path` is one buffer, extended and cut back around each step, so that
/// known fields (nearly all) cost no allocation.
fn walk(
    shape: &Shape,
    value: &Value,
    path: &mut String,
    shapes: &HashMap<String, Shape>,
    out: &mut Vec<String>,
    depth: usize,
) {
    use std::fmt::Write;
    if depth > 64 || out.len() > 100 {
        return;
    }
    let len = path.len();
    let push_key = |path: &mut String, k: &str| {
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(k);
    };
    match (shape, value) {
        (Shape::Ref(name), _) => {
            if let Some(s) = shapes.get(name) {
                walk(s, value, path, shapes, out, depth + 1);
            }
        }
        (Shape::Object(props), Value::Object(map)) => {
            for (k, v) in map {
                push_key(path, k);
                match props.get(k) {
                    Some(s) => walk(s, v, path, shapes, out, depth + 1),
                    None => out.push(path.clone()),
                }
                path.truncate(len);
            }
        }
        (Shape::Map(inner), Value::Object(map)) => {
            for (k, v) in map {
                push_key(path, k);
                walk(inner, v, path, shapes, out, depth + 1);
                path.truncate(len);
            }
        }
        (Shape::Array(inner), Value::Array(items)) => {
            for (i, v) in items.iter().enumerate() {
                let _ = write!(path, "[{i}]");
                walk(inner, v, path, shapes, out, depth + 1);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_unknown_fields_with_kubernetes_paths() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a", "bogus": 1},
            "spec": {"containers": [{"name": "c", "image": "i", "foo": true}], "bar": {}}});
        let mut found = unknown_fields("io.k8s.api.core.v1.Pod", &pod);
        found.sort();
        assert_eq!(
            found,
            vec!["metadata.bogus", "spec.bar", "spec.containers[0].foo"]
        );
    }

    #[test]
    fn known_fields_pass() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a", "labels": {"x": "y"}},
            "spec": {"containers": [{"name": "c", "image": "i", "resources": {"limits": {"cpu": "1"}},
              "ports": [{"containerPort": 80}], "env": [{"name": "A", "value": "b"}]}]}});
        assert!(unknown_fields("io.k8s.api.core.v1.Pod", &pod).is_empty());
    }

    #[test]
    fn docs_carry_gvk_and_field_validation() {
        let d = docs().get("api/v1").expect("core doc");
        let v: Value = serde_json::from_slice(&d.body).unwrap();
        let patch = &v["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"];
        assert_eq!(patch["x-kubernetes-group-version-kind"]["kind"], "Pod");
        assert!(patch["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "fieldValidation"));
        let pod = &v["components"]["schemas"]["io.k8s.api.core.v1.Pod"];
        assert_eq!(pod["x-kubernetes-group-version-kind"][0]["kind"], "Pod");
        assert!(
            v["components"]["schemas"]["io.k8s.api.core.v1.Container"]["properties"]["image"]
                .is_object()
        );
    }
}
