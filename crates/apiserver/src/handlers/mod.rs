//! The verbs: create, get, list, watch, update, patch, delete,
//! deletecollection, pods/binding and pods/eviction, over any resource in
//! [`crate::resources::RESOURCES`]. This module holds what the verbs share
//! (content negotiation, decoding, options, store access); each verb family
//! has its own file.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::{BufMut, Bytes, BytesMut};
use futures::StreamExt;
use http::{header, HeaderMap, HeaderValue, Response};
use orca_store::Revision;
use serde_json::{json, Value};

use crate::cache::{self, CacheEvent, CachedObj, EventType};
use crate::registry::Write;
use crate::resources::ResourceDef;
use crate::selectors::{FieldSelector, LabelSelector};
use crate::server::{bytes_response, json_response, q1, Body, Query, State};
use crate::status::{success_status, ApiError};
use orca_api::patch::{PatchError, PatchType};
use orca_api::printing::{IncludeObject, TableOptions};

mod apply;
mod binding;
mod delete;
mod eviction;
mod field_manager;
mod read;
mod scale;
mod subresource;
mod watch;
mod write;

pub use binding::bind;
pub use delete::{delete, delete_collection};
pub use eviction::evict;
pub use read::{get, list};
pub use scale::{get_scale, patch_scale, update_scale};
pub use subresource::create_subresource;
pub use watch::watch;
pub use write::create;
pub use write::{patch, update};

use read::{include_object, list_response, table, Filter};
use write::{guaranteed_update, guaranteed_write, respond, Outcome};

pub struct Ctx<'a> {
    pub state: &'a Arc<State>,
    pub def: &'static ResourceDef,
    pub namespace: Option<&'a str>,
    pub query: &'a Query,
    pub headers: &'a HeaderMap,
    /// Who asked (admission checks that depend on the caller use it).
    pub user: &'a crate::auth::UserInfo,
}

pub fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn name_of(v: &Value) -> &str {
    v["metadata"]["name"].as_str().unwrap_or_default()
}

fn accept(h: &HeaderMap) -> String {
    h.get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",")
}

/// Kubernetes' Table output, which kubectl asks for in `get`.
fn wants_table(h: &HeaderMap) -> bool {
    accept(h).split(',').any(|m| {
        let m: String = m.chars().filter(|c| !c.is_whitespace()).collect();
        m.starts_with("application/json") && m.contains("as=Table") && m.contains("g=meta.k8s.io")
    })
}

/// Every media type the client accepts is a Table (no plain fallback).
fn only_tables(h: &HeaderMap) -> bool {
    wants_table(h) && accept(h).split(',').all(|m| m.contains("as=Table"))
}

fn not_acceptable(asked: &str) -> ApiError {
    ApiError::new(
        406,
        "NotAcceptable",
        format!("only the following media types are accepted: application/json, application/yaml, application/vnd.kubernetes.protobuf (asked for {asked})"),
    )
}

/// Refuses Accept headers we cannot satisfy (an image type, say).
fn check_accept(h: &HeaderMap) -> Result<(), ApiError> {
    let a = accept(h);
    if crate::protobuf::negotiate(&a).first().is_some() {
        Ok(())
    } else {
        Err(not_acceptable(&a))
    }
}

fn yaml_first(h: &HeaderMap) -> bool {
    crate::protobuf::negotiate(&accept(h)).first() == Some(crate::protobuf::Wire::Yaml)
}

/// Serialises `v` as JSON or YAML as the client asked (protobuf answers
/// are made from the JSON one, see [`crate::protobuf::respond`]).
fn object_response(code: u16, h: &HeaderMap, v: &Value) -> Response<Body> {
    if yaml_first(h) {
        if let Ok(s) = serde_yaml::to_string(v) {
            return bytes_response(code, "application/yaml", Bytes::from(s));
        }
    }
    json_response(code, v)
}

// Decoding

#[derive(Clone, Copy, PartialEq, Eq)]
enum Validation {
    Ignore,
    Warn,
    Strict,
}

fn validation_mode(q: &Query) -> Result<Validation, ApiError> {
    match q1(q, "fieldValidation") {
        None | Some("") | Some("Warn") => Ok(Validation::Warn),
        Some("Ignore") => Ok(Validation::Ignore),
        Some("Strict") => Ok(Validation::Strict),
        Some(other) => Err(ApiError::bad_request(format!(
            "fieldValidation parameter unsupported: {other}; valid values are Ignore, Warn and Strict"
        ))),
    }
}

fn content_type(h: &HeaderMap) -> String {
    h.get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

fn unsupported_media(ct: &str) -> ApiError {
    ApiError::new(
        415,
        "UnsupportedMediaType",
        format!("the body of the request was in an unknown format ({ct}) - accepted media types include: application/json, application/yaml"),
    )
}

/// Parses a request body as JSON or YAML (by Content-Type) into an object.
pub fn decode_body(h: &HeaderMap, body: &[u8]) -> Result<Value, ApiError> {
    let ct = content_type(h);
    let v: Value = match ct.as_str() {
        "" | "application/json" => serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
        })?,
        "application/yaml" | "application/x-yaml" | "text/yaml" => serde_yaml::from_slice(body)
            .map_err(|e| {
                ApiError::bad_request(format!("couldn't get version/kind; yaml parse error: {e}"))
            })?,
        crate::protobuf::CONTENT_TYPE => {
            crate::protobuf::decode(body).map_err(|e| ApiError::bad_request(e.0))?
        }
        other => return Err(unsupported_media(other)),
    };
    if !v.is_object() {
        return Err(ApiError::bad_request(
            "the request body must be a JSON or YAML object",
        ));
    }
    Ok(v)
}

/// Checks apiVersion/kind, unknown fields and field types; returns the
/// normalised object and any warnings (for fieldValidation=Warn).
fn admit_body(
    ctx: &Ctx<'_>,
    mut v: Value,
    api_version: &str,
    expect_kind: &str,
    schema: &str,
    normalize: fn(Value) -> Result<Value, String>,
) -> Result<(Value, Vec<String>), ApiError> {
    let kind = v["kind"].as_str().map(str::to_string);
    let av = v["apiVersion"].as_str().map(str::to_string);
    let cannot = |msg: String| {
        ApiError::bad_request(format!(
            "{} in version \"{}\" cannot be handled as a {expect_kind}: {msg}",
            kind.as_deref().unwrap_or(expect_kind),
            av.as_deref().unwrap_or(api_version)
        ))
    };
    match &av {
        Some(a) if *a != api_version => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({a}) does not match the expected API version ({api_version})"
            )))
        }
        _ => {}
    }
    match &kind {
        Some(k) if k != expect_kind => {
            return Err(cannot(format!(
                "the object is a {k}, but this URL serves {expect_kind} objects"
            )))
        }
        _ => {}
    }
    v["apiVersion"] = json!(api_version);
    v["kind"] = json!(expect_kind);
    let mut warnings = Vec::new();
    let mode = validation_mode(ctx.query)?;
    if mode != Validation::Ignore {
        let unknown = crate::openapi::unknown_fields(schema, &v);
        if !unknown.is_empty() {
            let msgs: Vec<String> = unknown
                .iter()
                .map(|f| format!("unknown field \"{f}\""))
                .collect();
            if mode == Validation::Strict {
                return Err(cannot(format!(
                    "strict decoding error: {}",
                    msgs.join(", ")
                )));
            }
            warnings = msgs;
        }
    }
    let v = normalize(v).map_err(cannot)?;
    Ok((v, warnings))
}

fn with_warnings(mut r: Response<Body>, warnings: &[String]) -> Response<Body> {
    for w in warnings {
        let text = format!("299 - \"{}\"", w.replace('"', "\\\""));
        if let Ok(v) = HeaderValue::from_str(&text) {
            r.headers_mut().append(header::WARNING, v);
        }
    }
    r
}

/// Whether a write is a dry run, from its `dryRun` values (the query's, or
/// for deletes the DeleteOptions body's). Kubernetes validates them as part
/// of the verb's options (`CreateOptions`, `DeleteOptions`, ...): anything
/// but `All` is 422 and nothing runs.
fn dry_run_values(values: Option<&[String]>, options_kind: &str) -> Result<bool, ApiError> {
    match values {
        None | Some([]) => Ok(false),
        Some(vals) if vals.iter().all(|v| v == "All") => Ok(true),
        Some(vals) => Err(ApiError::invalid(
            options_kind,
            "meta.k8s.io",
            "",
            vec![(
                "FieldValueNotSupported".into(),
                "dryRun".into(),
                format!(
                    "Unsupported value: {}: supported values: \"All\"",
                    go_string_slice(vals)
                ),
            )],
        )),
    }
}

/// Go's `%#v` of a `[]string`, as Kubernetes' field errors print it.
fn go_string_slice(vals: &[String]) -> String {
    let quoted: Vec<String> = vals.iter().map(|v| format!("{v:?}")).collect();
    format!("[]string{{{}}}", quoted.join(", "))
}

fn dry_run(q: &Query, options_kind: &str) -> Result<bool, ApiError> {
    dry_run_values(q.get("dryRun").map(Vec::as_slice), options_kind)
}

fn parse_num<T: std::str::FromStr>(q: &Query, k: &str) -> Result<Option<T>, ApiError> {
    match q1(q, k) {
        None | Some("") => Ok(None),
        Some(s) => s
            .parse()
            .map(Some)
            .map_err(|_| ApiError::bad_request(format!("invalid value for {k}: {s:?}"))),
    }
}

fn parse_rv(q: &Query) -> Result<Option<Revision>, ApiError> {
    match q1(q, "resourceVersion") {
        None | Some("") => Ok(None),
        Some(s) => s
            .parse()
            .map(Some)
            .map_err(|_| ApiError::bad_request(format!("invalid resource version: {s:?}"))),
    }
}

fn key_for(ctx: &Ctx<'_>, name: &str) -> String {
    ctx.def.key(ctx.namespace, name)
}

fn not_found(ctx: &Ctx<'_>, name: &str) -> ApiError {
    ApiError::not_found(ctx.def.name, ctx.def.group, name)
}

async fn read(ctx: &Ctx<'_>, name: &str) -> Result<(Value, Revision), ApiError> {
    let key = key_for(ctx, name);
    let kv = ctx
        .state
        .store
        .get(&key)
        .await?
        .ok_or_else(|| not_found(ctx, name))?;
    let v = cache::decode_with_rv(&kv.value, kv.mod_revision)
        .ok_or_else(|| ApiError::internal(format!("stored object {key} is not valid JSON")))?;
    Ok((v, kv.mod_revision))
}

/// The watch cache's copy of `key` and its revision, if it has one.
fn cached_current(ctx: &Ctx<'_>, key: &str) -> Option<(Value, Revision)> {
    let obj = ctx.state.cache.resource(ctx.def).get(key)?;
    let v: Value = serde_json::from_slice(&obj.bytes).ok()?;
    let rev = v["metadata"]["resourceVersion"].as_str()?.parse().ok()?;
    Some((v, rev))
}

/// Waits for the watch cache to include `rev`, then answers with `v`.
async fn written(
    ctx: &Ctx<'_>,
    code: u16,
    v: &Value,
    rev: Revision,
    warnings: &[String],
) -> Response<Body> {
    ctx.state.cache.wait_for(rev).await;
    with_warnings(object_response(code, ctx.headers, v), warnings)
}

/// The response to a create or update: the stored bytes with the new
/// resourceVersion spliced in, rather than encoding the object again.
async fn stored(
    ctx: &Ctx<'_>,
    code: u16,
    v: &mut Value,
    kv: &orca_store::KeyValue,
    warnings: &[String],
) -> Response<Body> {
    let rv = kv.mod_revision.to_string();
    if !yaml_first(ctx.headers) {
        if let Some(b) = crate::rawjson::insert_first(&kv.value, "metadata", "resourceVersion", &rv)
        {
            ctx.state.cache.wait_for(kv.mod_revision).await;
            let resp = bytes_response(code, "application/json", Bytes::from(b));
            return with_warnings(resp, warnings);
        }
    }
    set_rv(v, kv.mod_revision);
    written(ctx, code, v, kv.mod_revision, warnings).await
}

fn set_rv(v: &mut Value, rev: Revision) {
    v["metadata"]["resourceVersion"] = json!(rev.to_string());
}

/// The stored form: the object without its resourceVersion (the store's
/// revision is the version). Taken out and put back rather than cloning.
fn storage_bytes(v: &mut Value) -> Result<Vec<u8>, ApiError> {
    let rv = v["metadata"]
        .as_object_mut()
        .and_then(|m| m.remove("resourceVersion"));
    let bytes = serde_json::to_vec(&*v);
    if let (Some(rv), Some(m)) = (rv, v["metadata"].as_object_mut()) {
        m.insert("resourceVersion".into(), rv);
    }
    bytes.map_err(|e| ApiError::internal(format!("cannot encode object: {e}")))
}
