//! Kubernetes' protobuf wire (`application/vnd.kubernetes.protobuf`) for
//! every kind k8s-pb has a message for: request bodies are read into the
//! JSON objects the server keeps, answers and watch events are written from
//! them. One generic mechanism, driven by the messages' descriptors
//! (schema.rs) and Kubernetes' JSON rules (convert.rs).
//!
//! An object on the wire is `k8s\0` followed by a runtime.Unknown whose
//! typeMeta names the kind and whose raw holds the object's message.

mod convert;
#[cfg(test)]
mod generate;
mod schema;

use bytes::Bytes;
use k8s_pb::apimachinery::pkg::apis::meta::v1::WatchEvent;
use k8s_pb::apimachinery::pkg::runtime::{RawExtension, TypeMeta, Unknown};
use prost::Message;
use prost_reflect::DynamicMessage;
use serde_json::Value;

pub const MAGIC: &[u8] = b"k8s\0";
pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";
pub const WATCH_CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf;stream=watch";

#[derive(Debug)]
pub struct DecodeError(pub String);

/// Reads a `k8s\0`-framed object into its JSON form. Errors are worded as
/// kube-apiserver words a body it cannot decode.
pub fn decode(body: &[u8]) -> Result<Value, DecodeError> {
    let unrecognized = |why: String| {
        let summary: String = String::from_utf8_lossy(&body[..body.len().min(30)]).into();
        let more = if body.len() > 30 { " ..." } else { "" };
        DecodeError(format!(
            "the object provided is unrecognized: {why} ({summary:?}{more})"
        ))
    };
    let Some(envelope) = body.strip_prefix(MAGIC) else {
        return Err(unrecognized(
            "provided data does not appear to be a protobuf message, expected prefix [107 56 115 0]".into(),
        ));
    };
    let unknown = Unknown::decode(envelope).map_err(|e| unrecognized(e.to_string()))?;
    let type_meta = unknown.type_meta.unwrap_or_default();
    let api_version = type_meta.api_version.unwrap_or_default();
    let kind = type_meta.kind.unwrap_or_default();
    let cannot = |why: String| {
        let version = api_version.rsplit('/').next().unwrap_or_default();
        DecodeError(format!(
            "{kind} in version \"{version}\" cannot be handled as a {kind}: {why}"
        ))
    };
    let schema = schema::schema();
    let Some(desc) = schema.message(&api_version, &kind) else {
        return Err(cannot(format!(
            "no kind \"{kind}\" is registered for version \"{api_version}\""
        )));
    };
    let raw = unknown.raw.unwrap_or_default();
    let msg = DynamicMessage::decode(desc, raw.as_slice()).map_err(|e| cannot(e.to_string()))?;
    let mut v = convert::to_json(schema, &msg);
    if let Some(o) = v.as_object_mut() {
        // The envelope carries the type; Go's raw object leaves it empty.
        o.insert("apiVersion".into(), Value::String(api_version));
        o.insert("kind".into(), Value::String(kind));
    }
    Ok(v)
}

/// The `k8s\0`-framed protobuf form of the object `v`, or why it has none
/// (a kind without a message, such as Table, or a value its message cannot
/// hold).
pub fn encode(v: &Value) -> Result<Vec<u8>, String> {
    let api_version = v["apiVersion"].as_str().unwrap_or_default();
    let kind = v["kind"].as_str().unwrap_or_default();
    let desc = schema::schema()
        .message(api_version, kind)
        .ok_or_else(|| format!("{kind} ({api_version}) has no protobuf form"))?;
    let mut raw = Vec::with_capacity(1024);
    convert::encode_json(&desc, v, &mut raw)?;
    Ok(envelope(api_version, kind, raw))
}

fn envelope(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: Some(api_version.to_string()),
            kind: Some(kind.to_string()),
        }),
        raw: Some(raw),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    let mut out = Vec::with_capacity(MAGIC.len() + unknown.encoded_len());
    out.extend_from_slice(MAGIC);
    unknown.encode(&mut out).unwrap_or_default();
    out
}

/// One event of a protobuf watch stream: a meta/v1 WatchEvent (not framed
/// itself) whose object is the framed object, behind its length as four
/// big-endian bytes (client-go's length-delimited framer).
pub fn watch_frame(event_type: &str, object: &Value) -> Result<Bytes, String> {
    let event = WatchEvent {
        r#type: Some(event_type.to_string()),
        object: Some(RawExtension {
            raw: Some(encode(object)?),
        }),
    };
    let len = u32::try_from(event.encoded_len()).map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(4 + len as usize);
    out.extend_from_slice(&len.to_be_bytes());
    event.encode(&mut out).map_err(|e| e.to_string())?;
    Ok(Bytes::from(out))
}

/// The wire an answer goes out in, chosen from the Accept header as
/// kube-apiserver does: the first media range (by q-value, then order)
/// that the server can write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wire {
    Json,
    Yaml,
    Protobuf,
}

pub struct Negotiated {
    /// The wires acceptable, best first.
    pub wires: Vec<Wire>,
}

impl Negotiated {
    pub fn first(&self) -> Option<Wire> {
        self.wires.first().copied()
    }

    /// Whether the client takes a JSON answer when protobuf has none.
    pub fn json_fallback(&self) -> bool {
        self.wires.contains(&Wire::Json)
    }
}

/// Parses an Accept header. Protobuf ranges asking for a conversion
/// (`as=Table`, `as=PartialObjectMetadata`) are not served in protobuf.
pub fn negotiate(accept: &str) -> Negotiated {
    if accept.trim().is_empty() {
        return Negotiated {
            wires: vec![Wire::Json],
        };
    }
    let mut ranges: Vec<(f32, usize, Wire)> = Vec::new();
    for (i, range) in accept.split(',').enumerate() {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or("").to_ascii_lowercase();
        let mut q = 1.0f32;
        let mut converts = false;
        for p in parts {
            match p.split_once('=') {
                Some(("q", v)) => q = v.trim().parse().unwrap_or(0.0),
                Some(("as", _)) => converts = true,
                _ => {}
            }
        }
        let wire = match media.as_str() {
            "application/json" | "*/*" | "application/*" | "" => Wire::Json,
            "application/yaml" => Wire::Yaml,
            "application/vnd.kubernetes.protobuf" if !converts => Wire::Protobuf,
            _ => continue,
        };
        if q > 0.0 {
            ranges.push((q, i, wire));
        }
    }
    ranges.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut wires = Vec::new();
    for (_, _, w) in ranges {
        if !wires.contains(&w) {
            wires.push(w);
        }
    }
    Negotiated { wires }
}

/// A list of `item_kind` objects (given as their JSON bytes, as the cache
/// keeps them) in protobuf: each item is encoded on its own and written as
/// one `items` entry of the list message.
pub fn encode_list(
    api_version: &str,
    list_kind: &str,
    metadata: &Value,
    items: &[Bytes],
) -> Result<Vec<u8>, String> {
    let schema = schema::schema();
    let list = schema
        .message(api_version, list_kind)
        .ok_or_else(|| format!("{list_kind} ({api_version}) has no protobuf form"))?;
    let (Some(meta_field), Some(items_field)) = (
        list.get_field_by_json_name("metadata"),
        list.get_field_by_json_name("items"),
    ) else {
        return Err(format!("{list_kind} is not a list"));
    };
    let prost_reflect::Kind::Message(item) = items_field.kind() else {
        return Err(format!("{list_kind} is not a list of objects"));
    };
    let prost_reflect::Kind::Message(meta) = meta_field.kind() else {
        return Err("list metadata is not a message".into());
    };
    let mut raw = Vec::with_capacity(items.iter().map(|b| b.len() / 2).sum());
    let mut buf = Vec::new();
    convert::encode_json(&meta, metadata, &mut buf)?;
    write_field(meta_field.number(), &buf, &mut raw);
    for b in items {
        let v: Value = serde_json::from_slice(b).map_err(|e| e.to_string())?;
        buf.clear();
        convert::encode_json(&item, &v, &mut buf)?;
        write_field(items_field.number(), &buf, &mut raw);
    }
    Ok(envelope(api_version, list_kind, raw))
}

fn write_field(number: u32, message: &[u8], out: &mut Vec<u8>) {
    prost::encoding::encode_key(number, prost::encoding::WireType::LengthDelimited, out);
    prost::encoding::encode_varint(message.len() as u64, out);
    out.extend_from_slice(message);
}

/// Rewrites a whole JSON answer (an object, a Status) as protobuf when the
/// client prefers it. Streamed answers (lists, watches) choose their wire
/// themselves. An object protobuf cannot carry goes out as JSON if the
/// client takes JSON, and as 406 if not.
pub async fn respond(
    accept: &str,
    resp: http::Response<crate::server::Body>,
) -> http::Response<crate::server::Body> {
    use http_body::Body as _;
    use http_body_util::BodyExt;
    let negotiated = negotiate(accept);
    let is_json = resp
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|c| c == "application/json");
    if negotiated.first() != Some(Wire::Protobuf)
        || !is_json
        || resp.body().size_hint().exact().is_none()
    {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let Ok(collected) = body.collect().await else {
        return crate::server::error_response(&crate::status::ApiError::internal(
            "the answer could not be read",
        ));
    };
    let json = collected.to_bytes();
    let Ok(v) = serde_json::from_slice::<Value>(&json) else {
        return http::Response::from_parts(parts, crate::server::full(json));
    };
    // Documents that are not API objects (/version) are JSON whatever the
    // client asks, as in kube-apiserver.
    if v.get("kind").is_none() {
        return http::Response::from_parts(parts, crate::server::full(json));
    }
    match encode(&v) {
        Ok(pb) => {
            parts.headers.insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static(CONTENT_TYPE),
            );
            parts.headers.remove(http::header::CONTENT_LENGTH);
            http::Response::from_parts(parts, crate::server::full(pb))
        }
        Err(_) if negotiated.json_fallback() => {
            http::Response::from_parts(parts, crate::server::full(json))
        }
        Err(why) => crate::server::error_response(&crate::status::ApiError::new(
            406,
            "NotAcceptable",
            format!("only the following media types are accepted: application/json, application/yaml ({why})"),
        )),
    }
}

#[cfg(test)]
mod tests;
