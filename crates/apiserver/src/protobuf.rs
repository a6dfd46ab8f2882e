//! Decoding of Kubernetes protobuf request bodies into JSON, for the kinds
//! kubectl's typed clients POST as protobuf (`kubectl create namespace`,
//! `create configmap`, `create secret`, `create serviceaccount`, `create
//! token`, `create service`). Field numbers follow k8s.io/api's
//! generated.proto; TokenRequest goes through k8s-pb's generated types, which
//! also encode it for the answer (other answers are JSON, which those clients
//! accept).

use serde_json::{json, Map, Value};

const MAGIC: &[u8] = b"k8s\0";

pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";

#[derive(Debug)]
pub struct DecodeError(pub String);

fn err<T>(m: impl Into<String>) -> Result<T, DecodeError> {
    Err(DecodeError(m.into()))
}

enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

/// Iterates the (field number, value) pairs of one message.
struct Reader<'a> {
    buf: &'a [u8],
}

fn varint(buf: &mut &[u8]) -> Result<u64, DecodeError> {
    let mut v = 0u64;
    for i in 0..10 {
        let Some((&b, rest)) = buf.split_first() else {
            return err("truncated varint");
        };
        *buf = rest;
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    err("varint too long")
}

impl<'a> Iterator for Reader<'a> {
    type Item = Result<(u64, Field<'a>), DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.buf.is_empty() {
            return None;
        }
        Some((|| {
            let key = varint(&mut self.buf)?;
            let (num, wire) = (key >> 3, key & 7);
            match wire {
                0 => Ok((num, Field::Varint(varint(&mut self.buf)?))),
                2 => {
                    let len = usize::try_from(varint(&mut self.buf)?).unwrap_or(usize::MAX);
                    if len > self.buf.len() {
                        return err("length past the end of the message");
                    }
                    let (b, rest) = self.buf.split_at(len);
                    self.buf = rest;
                    Ok((num, Field::Bytes(b)))
                }
                1 => {
                    if self.buf.len() < 8 {
                        return err("truncated fixed64");
                    }
                    self.buf = &self.buf[8..];
                    Ok((num, Field::Varint(0)))
                }
                5 => {
                    if self.buf.len() < 4 {
                        return err("truncated fixed32");
                    }
                    self.buf = &self.buf[4..];
                    Ok((num, Field::Varint(0)))
                }
                w => err(format!("unsupported wire type {w}")),
            }
        })())
    }
}

fn fields(buf: &[u8]) -> Reader<'_> {
    Reader { buf }
}

fn string(b: &[u8]) -> Result<Value, DecodeError> {
    std::str::from_utf8(b)
        .map(|s| Value::String(s.to_string()))
        .map_err(|_| DecodeError("a string field is not UTF-8".into()))
}

fn bytes_b64(b: &[u8]) -> Value {
    use base64::Engine;
    Value::String(base64::engine::general_purpose::STANDARD.encode(b))
}

/// A map entry message {1: key, 2: value}.
fn map_entry(b: &[u8], value_bytes: bool) -> Result<(String, Value), DecodeError> {
    let mut k = String::new();
    let mut v = Value::String(String::new());
    for f in fields(b) {
        match f? {
            (1, Field::Bytes(x)) => k = string(x)?.as_str().unwrap_or_default().to_string(),
            (2, Field::Bytes(x)) => {
                v = if value_bytes {
                    bytes_b64(x)
                } else {
                    string(x)?
                }
            }
            _ => {}
        }
    }
    Ok((k, v))
}

fn push_map(obj: &mut Map<String, Value>, name: &str, entry: (String, Value)) {
    let m = obj.entry(name).or_insert_with(|| json!({}));
    if let Some(m) = m.as_object_mut() {
        m.insert(entry.0, entry.1);
    }
}

fn push_list(obj: &mut Map<String, Value>, name: &str, v: Value) {
    let l = obj.entry(name).or_insert_with(|| json!([]));
    if let Some(l) = l.as_array_mut() {
        l.push(v);
    }
}

/// meta.v1.Time {1: seconds, 2: nanos} as RFC 3339.
fn time(b: &[u8]) -> Result<Value, DecodeError> {
    let mut secs = 0i64;
    for f in fields(b) {
        if let (1, Field::Varint(v)) = f? {
            secs = v as i64;
        }
    }
    Ok(chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| json!(t.format("%Y-%m-%dT%H:%M:%SZ").to_string()))
        .unwrap_or(Value::Null))
}

fn object_meta(b: &[u8]) -> Result<Value, DecodeError> {
    let mut m = Map::new();
    for f in fields(b) {
        match f? {
            (1, Field::Bytes(x)) => {
                m.insert("name".into(), string(x)?);
            }
            (2, Field::Bytes(x)) => {
                m.insert("generateName".into(), string(x)?);
            }
            (3, Field::Bytes(x)) => {
                m.insert("namespace".into(), string(x)?);
            }
            (5, Field::Bytes(x)) => {
                m.insert("uid".into(), string(x)?);
            }
            (6, Field::Bytes(x)) => {
                m.insert("resourceVersion".into(), string(x)?);
            }
            // Go writes the zero generation too; it means "unset".
            (7, Field::Varint(v)) if v != 0 => {
                m.insert("generation".into(), json!(v as i64));
            }
            (8, Field::Bytes(x)) => {
                m.insert("creationTimestamp".into(), time(x)?);
            }
            (11, Field::Bytes(x)) => push_map(&mut m, "labels", map_entry(x, false)?),
            (12, Field::Bytes(x)) => push_map(&mut m, "annotations", map_entry(x, false)?),
            (14, Field::Bytes(x)) => push_list(&mut m, "finalizers", string(x)?),
            _ => {}
        }
    }
    // Empty strings are protobuf's defaults, not values the client set.
    m.retain(|_, v| v.as_str() != Some(""));
    Ok(Value::Object(m))
}

fn strings_message(b: &[u8], names: &[(u64, &str)]) -> Result<Value, DecodeError> {
    let mut m = Map::new();
    for f in fields(b) {
        if let (n, Field::Bytes(x)) = f? {
            if let Some((_, name)) = names.iter().find(|(k, _)| *k == n) {
                m.insert((*name).to_string(), string(x)?);
            }
        }
    }
    Ok(Value::Object(m))
}

/// intstr.IntOrString {1: type (0 int, 1 string), 2: intVal, 3: strVal}.
fn int_or_string(b: &[u8]) -> Result<Value, DecodeError> {
    let (mut ty, mut int, mut text) = (0, 0i64, Value::String(String::new()));
    for f in fields(b) {
        match f? {
            (1, Field::Varint(v)) => ty = v,
            (2, Field::Varint(v)) => int = i64::from(v as i32),
            (3, Field::Bytes(x)) => text = string(x)?,
            _ => {}
        }
    }
    Ok(if ty == 1 { text } else { json!(int) })
}

/// Go marshals a non-pointer field even when it holds its zero value;
/// JSON leaves those out.
fn put_unless_zero(m: &mut Map<String, Value>, name: &str, v: Value) {
    let zero = matches!(&v, Value::String(s) if s.is_empty()) || v == json!(0) || v == json!(false);
    if !zero {
        m.insert(name.to_string(), v);
    }
}

fn service_port(b: &[u8]) -> Result<Value, DecodeError> {
    let mut m = Map::new();
    for f in fields(b) {
        match f? {
            (1, Field::Bytes(x)) => put_unless_zero(&mut m, "name", string(x)?),
            (2, Field::Bytes(x)) => put_unless_zero(&mut m, "protocol", string(x)?),
            (3, Field::Varint(v)) => put_unless_zero(&mut m, "port", json!(v as i32)),
            (4, Field::Bytes(x)) => put_unless_zero(&mut m, "targetPort", int_or_string(x)?),
            (5, Field::Varint(v)) => put_unless_zero(&mut m, "nodePort", json!(v as i32)),
            (6, Field::Bytes(x)) => {
                m.insert("appProtocol".into(), string(x)?);
            }
            _ => {}
        }
    }
    Ok(Value::Object(m))
}

fn service_spec(b: &[u8]) -> Result<Value, DecodeError> {
    let mut m = Map::new();
    for f in fields(b) {
        match f? {
            (1, Field::Bytes(x)) => push_list(&mut m, "ports", service_port(x)?),
            (2, Field::Bytes(x)) => push_map(&mut m, "selector", map_entry(x, false)?),
            (3, Field::Bytes(x)) => put_unless_zero(&mut m, "clusterIP", string(x)?),
            (4, Field::Bytes(x)) => put_unless_zero(&mut m, "type", string(x)?),
            (5, Field::Bytes(x)) => push_list(&mut m, "externalIPs", string(x)?),
            (7, Field::Bytes(x)) => put_unless_zero(&mut m, "sessionAffinity", string(x)?),
            (8, Field::Bytes(x)) => put_unless_zero(&mut m, "loadBalancerIP", string(x)?),
            (9, Field::Bytes(x)) => push_list(&mut m, "loadBalancerSourceRanges", string(x)?),
            (10, Field::Bytes(x)) => put_unless_zero(&mut m, "externalName", string(x)?),
            (11, Field::Bytes(x)) => put_unless_zero(&mut m, "externalTrafficPolicy", string(x)?),
            (12, Field::Varint(v)) => {
                put_unless_zero(&mut m, "healthCheckNodePort", json!(v as i32))
            }
            (13, Field::Varint(v)) => {
                put_unless_zero(&mut m, "publishNotReadyAddresses", json!(v != 0))
            }
            (14, Field::Bytes(x)) => {
                let mut timeout = None;
                for g in fields(x) {
                    if let (1, Field::Bytes(c)) = g? {
                        for h in fields(c) {
                            if let (1, Field::Varint(t)) = h? {
                                timeout = Some(t as i32);
                            }
                        }
                    }
                }
                let client_ip = match timeout {
                    Some(t) => json!({"timeoutSeconds": t}),
                    None => json!({}),
                };
                m.insert(
                    "sessionAffinityConfig".into(),
                    json!({"clientIP": client_ip}),
                );
            }
            (17, Field::Bytes(x)) => {
                m.insert("ipFamilyPolicy".into(), string(x)?);
            }
            (18, Field::Bytes(x)) => push_list(&mut m, "clusterIPs", string(x)?),
            (19, Field::Bytes(x)) => push_list(&mut m, "ipFamilies", string(x)?),
            (20, Field::Varint(v)) => {
                m.insert("allocateLoadBalancerNodePorts".into(), json!(v != 0));
            }
            (21, Field::Bytes(x)) => {
                m.insert("loadBalancerClass".into(), string(x)?);
            }
            (22, Field::Bytes(x)) => {
                m.insert("internalTrafficPolicy".into(), string(x)?);
            }
            (23, Field::Bytes(x)) => {
                m.insert("trafficDistribution".into(), string(x)?);
            }
            _ => {}
        }
    }
    Ok(Value::Object(m))
}

/// A message whose fields are strings, repeated strings or nested
/// messages, described by a table of (field number, JSON name, shape).
#[derive(Clone, Copy)]
enum Shape {
    Str,
    Strings,
    Msg(&'static [(u64, &'static str, Shape)]),
    Msgs(&'static [(u64, &'static str, Shape)]),
    /// map<string, string>
    StrMap,
    /// map<string, {repeated string items = 1}>
    StringsMap,
}

fn message(b: &[u8], table: &[(u64, &str, Shape)]) -> Result<Value, DecodeError> {
    let mut m = Map::new();
    for f in fields(b) {
        let (n, Field::Bytes(x)) = f? else { continue };
        let Some((_, name, shape)) = table.iter().find(|(k, _, _)| *k == n) else {
            continue;
        };
        match shape {
            Shape::Str => {
                m.insert((*name).into(), string(x)?);
            }
            Shape::Strings => push_list(&mut m, name, string(x)?),
            Shape::Msg(t) => {
                m.insert((*name).into(), message(x, t)?);
            }
            Shape::Msgs(t) => push_list(&mut m, name, message(x, t)?),
            Shape::StrMap => push_map(&mut m, name, map_entry(x, false)?),
            Shape::StringsMap => {
                let mut key = String::new();
                let mut items = Vec::new();
                for g in fields(x) {
                    match g? {
                        (1, Field::Bytes(k)) => key = String::from_utf8_lossy(k).into_owned(),
                        (2, Field::Bytes(v)) => {
                            for h in fields(v) {
                                if let (1, Field::Bytes(i)) = h? {
                                    items.push(string(i)?);
                                }
                            }
                        }
                        _ => {}
                    }
                }
                push_map(&mut m, name, (key, Value::Array(items)));
            }
        }
    }
    Ok(Value::Object(m))
}

const POLICY_RULE: &[(u64, &str, Shape)] = &[
    (1, "verbs", Shape::Strings),
    (2, "apiGroups", Shape::Strings),
    (3, "resources", Shape::Strings),
    (4, "resourceNames", Shape::Strings),
    (5, "nonResourceURLs", Shape::Strings),
];
const LABEL_SELECTOR: &[(u64, &str, Shape)] = &[
    (1, "matchLabels", Shape::StrMap),
    (
        2,
        "matchExpressions",
        Shape::Msgs(&[
            (1, "key", Shape::Str),
            (2, "operator", Shape::Str),
            (3, "values", Shape::Strings),
        ]),
    ),
];
const SUBJECT: &[(u64, &str, Shape)] = &[
    (1, "kind", Shape::Str),
    (2, "apiGroup", Shape::Str),
    (3, "name", Shape::Str),
    (4, "namespace", Shape::Str),
];
const ROLE_REF: &[(u64, &str, Shape)] = &[
    (1, "apiGroup", Shape::Str),
    (2, "kind", Shape::Str),
    (3, "name", Shape::Str),
];
const RESOURCE_ATTRIBUTES: &[(u64, &str, Shape)] = &[
    (1, "namespace", Shape::Str),
    (2, "verb", Shape::Str),
    (3, "group", Shape::Str),
    (4, "version", Shape::Str),
    (5, "resource", Shape::Str),
    (6, "subresource", Shape::Str),
    (7, "name", Shape::Str),
];
const NON_RESOURCE_ATTRIBUTES: &[(u64, &str, Shape)] =
    &[(1, "path", Shape::Str), (2, "verb", Shape::Str)];
const SUBJECT_ACCESS_REVIEW_SPEC: &[(u64, &str, Shape)] = &[
    (1, "resourceAttributes", Shape::Msg(RESOURCE_ATTRIBUTES)),
    (
        2,
        "nonResourceAttributes",
        Shape::Msg(NON_RESOURCE_ATTRIBUTES),
    ),
    (3, "user", Shape::Str),
    (4, "groups", Shape::Strings),
    (5, "extra", Shape::StringsMap),
    (6, "uid", Shape::Str),
];

/// The fields after `metadata` (number 1) of the kinds read by table.
fn table_of(kind: &str) -> Option<&'static [(u64, &'static str, Shape)]> {
    Some(match kind {
        "Role" => &[(2, "rules", Shape::Msgs(POLICY_RULE))],
        "ClusterRole" => &[
            (2, "rules", Shape::Msgs(POLICY_RULE)),
            (
                3,
                "aggregationRule",
                Shape::Msg(&[(1, "clusterRoleSelectors", Shape::Msgs(LABEL_SELECTOR))]),
            ),
        ],
        "RoleBinding" | "ClusterRoleBinding" => &[
            (2, "subjects", Shape::Msgs(SUBJECT)),
            (3, "roleRef", Shape::Msg(ROLE_REF)),
        ],
        "SelfSubjectAccessReview" => &[(
            2,
            "spec",
            Shape::Msg(&[
                (1, "resourceAttributes", Shape::Msg(RESOURCE_ATTRIBUTES)),
                (
                    2,
                    "nonResourceAttributes",
                    Shape::Msg(NON_RESOURCE_ATTRIBUTES),
                ),
            ]),
        )],
        "SubjectAccessReview" | "LocalSubjectAccessReview" => {
            &[(2, "spec", Shape::Msg(SUBJECT_ACCESS_REVIEW_SPEC))]
        }
        "SelfSubjectRulesReview" => &[(2, "spec", Shape::Msg(&[(1, "namespace", Shape::Str)]))],
        "SelfSubjectReview" => &[],
        "TokenReview" => &[(
            2,
            "spec",
            Shape::Msg(&[(1, "token", Shape::Str), (2, "audiences", Shape::Strings)]),
        )],
        _ => return None,
    })
}

fn decode_kind(kind: &str, raw: &[u8]) -> Result<Value, DecodeError> {
    if let Some(table) = table_of(kind) {
        let mut v = message(raw, table)?;
        for f in fields(raw) {
            if let (1, Field::Bytes(x)) = f? {
                v["metadata"] = object_meta(x)?;
            }
        }
        return Ok(v);
    }
    let mut o = Map::new();
    for f in fields(raw) {
        let (n, field) = f?;
        match (kind, n, field) {
            (_, 1, Field::Bytes(x)) => {
                o.insert("metadata".into(), object_meta(x)?);
            }
            ("Namespace", 2, Field::Bytes(x)) => {
                let mut spec = Map::new();
                for g in fields(x) {
                    if let (1, Field::Bytes(s)) = g? {
                        push_list(&mut spec, "finalizers", string(s)?);
                    }
                }
                o.insert("spec".into(), Value::Object(spec));
            }
            ("ConfigMap", 2, Field::Bytes(x)) => push_map(&mut o, "data", map_entry(x, false)?),
            ("ConfigMap", 3, Field::Bytes(x)) => {
                push_map(&mut o, "binaryData", map_entry(x, true)?)
            }
            ("ConfigMap", 4, Field::Varint(v)) => {
                o.insert("immutable".into(), json!(v != 0));
            }
            ("Secret", 2, Field::Bytes(x)) => push_map(&mut o, "data", map_entry(x, true)?),
            ("Secret", 3, Field::Bytes(x)) => {
                o.insert("type".into(), string(x)?);
            }
            ("Secret", 4, Field::Bytes(x)) => push_map(&mut o, "stringData", map_entry(x, false)?),
            ("Secret", 5, Field::Varint(v)) => {
                o.insert("immutable".into(), json!(v != 0));
            }
            ("ServiceAccount", 2, Field::Bytes(x)) => push_list(
                &mut o,
                "secrets",
                strings_message(
                    x,
                    &[
                        (1, "kind"),
                        (2, "namespace"),
                        (3, "name"),
                        (4, "uid"),
                        (5, "apiVersion"),
                    ],
                )?,
            ),
            ("ServiceAccount", 3, Field::Bytes(x)) => push_list(
                &mut o,
                "imagePullSecrets",
                strings_message(x, &[(1, "name")])?,
            ),
            ("Service", 2, Field::Bytes(x)) => {
                o.insert("spec".into(), service_spec(x)?);
            }
            ("ServiceAccount", 4, Field::Varint(v)) => {
                o.insert("automountServiceAccountToken".into(), json!(v != 0));
            }
            _ => {}
        }
    }
    Ok(Value::Object(o))
}

/// Decodes a `k8s\0`-framed protobuf object into its JSON form.
pub fn decode(body: &[u8]) -> Result<Value, DecodeError> {
    let Some(env) = body.strip_prefix(MAGIC) else {
        return err("the body does not start with the Kubernetes protobuf magic number");
    };
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &[][..]);
    for f in fields(env) {
        match f? {
            (1, Field::Bytes(tm)) => {
                for g in fields(tm) {
                    match g? {
                        (1, Field::Bytes(x)) => {
                            api_version = string(x)?.as_str().unwrap_or_default().into()
                        }
                        (2, Field::Bytes(x)) => {
                            kind = string(x)?.as_str().unwrap_or_default().into()
                        }
                        _ => {}
                    }
                }
            }
            (2, Field::Bytes(x)) => raw = x,
            _ => {}
        }
    }
    let mut v = match kind.as_str() {
        "Namespace" | "ConfigMap" | "Secret" | "ServiceAccount" | "Service" => {
            decode_kind(&kind, raw)?
        }
        "TokenRequest" => token_request::decode(raw)?,
        "Deployment" | "ReplicaSet" => crate::protobuf_workloads::decode(&kind, raw)?,
        k if table_of(k).is_some() => decode_kind(&kind, raw)?,
        _ => {
            return err(format!(
                "protobuf bodies are accepted for Namespace, ConfigMap, Secret, ServiceAccount, Service, TokenRequest, Deployment, ReplicaSet, the RBAC kinds and the reviews only, not {kind:?}; send application/json"
            ))
        }
    };
    v["apiVersion"] = json!(api_version);
    v["kind"] = json!(kind);
    Ok(v)
}

/// The protobuf form of `v`, for the kinds that have one here.
pub fn encode(v: &Value) -> Option<Vec<u8>> {
    match (v["apiVersion"].as_str()?, v["kind"].as_str()?) {
        ("authentication.k8s.io/v1", "TokenRequest") => Some(token_request::encode(v)),
        _ => None,
    }
}

/// TokenRequest through k8s-pb's types.
mod token_request {
    use k8s_pb::api::authentication::v1 as pb;
    use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
    use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
    use prost::Message;
    use serde_json::{json, Map, Value};

    use super::{DecodeError, MAGIC};

    fn non_empty(s: Option<String>) -> Option<Value> {
        s.filter(|s| !s.is_empty()).map(Value::String)
    }

    pub fn decode(raw: &[u8]) -> Result<Value, DecodeError> {
        let tr =
            pb::TokenRequest::decode(raw).map_err(|e| DecodeError(format!("TokenRequest: {e}")))?;
        let mut out = Map::new();
        if let Some(m) = tr.metadata {
            let mut md = Map::new();
            let fields = [
                ("name", m.name),
                ("generateName", m.generate_name),
                ("namespace", m.namespace),
                ("uid", m.uid),
                ("resourceVersion", m.resource_version),
            ];
            for (k, v) in fields {
                if let Some(v) = non_empty(v) {
                    md.insert(k.into(), v);
                }
            }
            if !m.labels.is_empty() {
                md.insert("labels".into(), json!(m.labels));
            }
            if !m.annotations.is_empty() {
                md.insert("annotations".into(), json!(m.annotations));
            }
            out.insert("metadata".into(), Value::Object(md));
        }
        let spec = tr.spec.unwrap_or_default();
        let mut sp = Map::new();
        if !spec.audiences.is_empty() {
            sp.insert("audiences".into(), json!(spec.audiences));
        }
        if let Some(e) = spec.expiration_seconds {
            sp.insert("expirationSeconds".into(), json!(e));
        }
        if let Some(r) = spec.bound_object_ref {
            let mut b = Map::new();
            let fields = [
                ("kind", r.kind),
                ("apiVersion", r.api_version),
                ("name", r.name),
                ("uid", r.u_id),
            ];
            for (k, v) in fields {
                if let Some(v) = non_empty(v) {
                    b.insert(k.into(), v);
                }
            }
            sp.insert("boundObjectRef".into(), Value::Object(b));
        }
        out.insert("spec".into(), Value::Object(sp));
        Ok(Value::Object(out))
    }

    fn string(v: &Value) -> Option<String> {
        v.as_str().map(str::to_string)
    }

    fn time(v: &Value) -> Option<meta::Time> {
        let t = chrono::DateTime::parse_from_rfc3339(v.as_str()?).ok()?;
        Some(meta::Time {
            seconds: Some(t.timestamp()),
            nanos: Some(0),
        })
    }

    /// The `k8s\0` envelope around the TokenRequest `v`.
    pub fn encode(v: &Value) -> Vec<u8> {
        let spec = &v["spec"];
        let bound = &spec["boundObjectRef"];
        let tr = pb::TokenRequest {
            metadata: Some(meta::ObjectMeta {
                name: string(&v["metadata"]["name"]),
                namespace: string(&v["metadata"]["namespace"]),
                creation_timestamp: time(&v["metadata"]["creationTimestamp"]),
                ..Default::default()
            }),
            spec: Some(pb::TokenRequestSpec {
                audiences: spec["audiences"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(string)
                    .collect(),
                expiration_seconds: spec["expirationSeconds"].as_i64(),
                bound_object_ref: bound.is_object().then(|| pb::BoundObjectReference {
                    kind: string(&bound["kind"]),
                    api_version: string(&bound["apiVersion"]),
                    name: string(&bound["name"]),
                    u_id: string(&bound["uid"]),
                }),
            }),
            status: Some(pb::TokenRequestStatus {
                token: string(&v["status"]["token"]),
                expiration_timestamp: time(&v["status"]["expirationTimestamp"]),
            }),
        };
        let envelope = Unknown {
            type_meta: Some(TypeMeta {
                api_version: string(&v["apiVersion"]),
                kind: string(&v["kind"]),
            }),
            raw: Some(tr.encode_to_vec()),
            content_encoding: Some(String::new()),
            content_type: Some(String::new()),
        };
        [MAGIC, &envelope.encode_to_vec()].concat()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `kubectl create token default` (v1.32), from the reference -v=8 log.
    const KUBECTL_TOKEN_REQUEST: &[u8] = b"k8s\0\x0a\x28\x0a\x18authentication.k8s.io/v1\x12\x0cTokenRequest\x12\x1a\x0a\x10\x0a\x00\x12\x00\x1a\x00\x22\x00\x2a\x00\x32\x00\x38\x00\x42\x00\x12\x00\x1a\x04\x0a\x00\x12\x00\x1a\x00\x22\x00";

    #[test]
    fn decodes_kubectls_token_request() {
        let v = decode(KUBECTL_TOKEN_REQUEST).unwrap();
        assert_eq!(
            v,
            json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                   "metadata": {}, "spec": {}})
        );
    }

    #[test]
    fn token_requests_round_trip() {
        let answer = json!({
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "metadata": {"name": "default", "namespace": "default", "creationTimestamp": "2026-12-05T08:00:18Z"},
            "spec": {"audiences": ["a", "b"], "expirationSeconds": 600,
                     "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "p", "uid": "u"}},
            "status": {"token": "t", "expirationTimestamp": "2026-12-05T08:10:18Z"},
        });
        let pb = encode(&answer).unwrap();
        assert!(pb.starts_with(MAGIC));
        let back = decode(&pb).unwrap();
        assert_eq!(back["spec"], answer["spec"]);
        assert_eq!(back["metadata"]["name"], "default");
        assert!(encode(&json!({"apiVersion": "v1", "kind": "Pod"})).is_none());
    }

    fn field(n: u8, b: &[u8]) -> Vec<u8> {
        let mut v = vec![(n << 3) | 2, b.len() as u8];
        v.extend_from_slice(b);
        v
    }

    #[test]
    fn decodes_a_namespace_envelope() {
        let tm = [field(1, b"v1"), field(2, b"Namespace")].concat();
        let meta = [
            field(1, b"foo"),
            field(11, &[field(1, b"a"), field(2, b"b")].concat()),
        ]
        .concat();
        let raw = field(1, &meta);
        let body = [b"k8s\0".to_vec(), field(1, &tm), field(2, &raw)].concat();
        let v = decode(&body).unwrap();
        assert_eq!(
            v,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "foo", "labels": {"a": "b"}}})
        );
    }

    fn varint_field(n: u8, v: u8) -> Vec<u8> {
        vec![n << 3, v]
    }

    #[test]
    fn decodes_a_service_leaving_out_go_zero_values() {
        let tm = [field(1, b"v1"), field(2, b"Service")].concat();
        let target = [varint_field(1, 0), varint_field(2, 80), field(3, b"")].concat();
        let port = [
            field(1, b"80-80"),
            field(2, b"TCP"),
            varint_field(3, 80),
            field(4, &target),
            varint_field(5, 0),
        ]
        .concat();
        let spec = [
            field(1, &port),
            field(2, &[field(1, b"app"), field(2, b"web")].concat()),
            field(3, b"None"),
            field(4, b"ClusterIP"),
            field(10, b""),
            varint_field(13, 0),
        ]
        .concat();
        let raw = [field(1, &field(1, b"web")), field(2, &spec)].concat();
        let body = [b"k8s\0".to_vec(), field(1, &tm), field(2, &raw)].concat();
        assert_eq!(
            decode(&body).unwrap(),
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                   "spec": {"ports": [{"name": "80-80", "protocol": "TCP", "port": 80, "targetPort": 80}],
                            "selector": {"app": "web"}, "clusterIP": "None", "type": "ClusterIP"}})
        );
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        assert!(decode(b"k8s\0\x0a\xff\xff\xff").is_err());
        assert!(decode(b"nope").is_err());
        assert!(decode(b"k8s\0\x12\x05ab").is_err());
    }
}
