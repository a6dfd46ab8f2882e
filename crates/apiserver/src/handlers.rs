//! The verbs: create, get, list, watch, update, patch, delete,
//! deletecollection and pods/binding, over any resource in
//! [`crate::resources::RESOURCES`].

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::{BufMut, Bytes, BytesMut};
use futures::StreamExt;
use http::{header, HeaderMap, HeaderValue, Response};
use orca_store::Revision;
use serde_json::{json, Value};

use crate::admission;
use crate::cache::{self, CacheEvent, CachedObj, EventType};
use crate::resources::{ResourceDef, Special};
use crate::selectors::{FieldSelector, LabelSelector};
use crate::server::{bytes_response, json_response, q1, Body, Query, State};
use crate::status::{success_status, ApiError};
use orca_api::patch::{PatchError, PatchType};
use orca_api::printing::{IncludeObject, TableOptions};

pub struct Ctx<'a> {
    pub state: &'a Arc<State>,
    pub def: &'static ResourceDef,
    pub namespace: Option<&'a str>,
    pub query: &'a Query,
    pub headers: &'a HeaderMap,
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

/// Refuses Accept headers we cannot satisfy (protobuf only, say).
fn check_accept(h: &HeaderMap) -> Result<(), ApiError> {
    let a = accept(h);
    if a.is_empty() {
        return Ok(());
    }
    let ok = a.split(',').any(|m| {
        let mt = m.split(';').next().unwrap_or("").trim();
        matches!(
            mt,
            "application/json" | "*/*" | "application/*" | "application/yaml" | ""
        )
    });
    if ok {
        Ok(())
    } else {
        Err(ApiError::new(
            406,
            "NotAcceptable",
            format!("only the following media types are accepted: application/json, application/yaml (asked for {a})"),
        ))
    }
}

fn yaml_first(h: &HeaderMap) -> bool {
    accept(h)
        .split(',')
        .next()
        .is_some_and(|m| m.trim().starts_with("application/yaml"))
}

/// Serialises `v` as JSON or YAML as the client asked.
fn object_response(code: u16, h: &HeaderMap, v: &Value) -> Response<Body> {
    if yaml_first(h) {
        if let Ok(s) = serde_yaml::to_string(v) {
            return bytes_response(code, "application/yaml", Bytes::from(s));
        }
    }
    json_response(code, v)
}

// ---------------------------------------------------------------------------
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
        "application/vnd.kubernetes.protobuf" => crate::protobuf::decode(body).map_err(|e| {
            ApiError::bad_request(format!("cannot decode the protobuf body: {}", e.0))
        })?,
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
    expect_kind: &str,
    schema: &str,
    normalize: fn(Value) -> Result<Value, String>,
) -> Result<(Value, Vec<String>), ApiError> {
    let api_version = if expect_kind == "Binding" {
        "v1".to_string()
    } else {
        ctx.def.api_version()
    };
    let kind = v["kind"].as_str().map(str::to_string);
    let av = v["apiVersion"].as_str().map(str::to_string);
    let cannot = |msg: String| {
        ApiError::bad_request(format!(
            "{} in version \"{}\" cannot be handled as a {expect_kind}: {msg}",
            kind.as_deref().unwrap_or(expect_kind),
            av.as_deref().unwrap_or(&api_version)
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

// ---------------------------------------------------------------------------
// Reads

struct Filter {
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Filter {
    fn from_query(ctx: &Ctx<'_>) -> Result<Filter, ApiError> {
        let labels =
            LabelSelector::parse(q1(ctx.query, "labelSelector").unwrap_or("")).map_err(|e| {
                ApiError::bad_request(format!("unable to parse labelSelector: {}", e.0))
            })?;
        let fields = FieldSelector::parse(q1(ctx.query, "fieldSelector").unwrap_or(""), ctx.def)
            .map_err(|e| ApiError::bad_request(format!("unable to parse fieldSelector: {e}")))?;
        Ok(Filter { labels, fields })
    }

    fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.fields.is_empty()
    }

    fn matches(&self, o: &CachedObj) -> bool {
        self.matches_meta(&o.meta)
    }

    fn matches_meta(&self, m: &cache::ObjMeta) -> bool {
        crate::selectors::labels_match(&self.labels, &m.labels) && self.fields.matches(&m.fields)
    }
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

#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    v: String,
    rv: Revision,
    start: String,
}

fn encode_continue(rv: Revision, key: &str) -> String {
    let t = ContinueToken {
        v: "meta.k8s.io/v1".into(),
        rv,
        start: key.to_string(),
    };
    base64::engine::general_purpose::URL_SAFE.encode(serde_json::to_vec(&t).unwrap_or_default())
}

fn decode_continue(s: &str) -> Result<ContinueToken, ApiError> {
    base64::engine::general_purpose::URL_SAFE
        .decode(s)
        .ok()
        .and_then(|b| serde_json::from_slice::<ContinueToken>(&b).ok())
        .ok_or_else(|| ApiError::bad_request("continue key is not valid: malformed token"))
}

fn list_head(
    def: &ResourceDef,
    rv: Revision,
    cont: Option<&str>,
    remaining: Option<usize>,
) -> String {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if let Some(c) = cont {
        meta["continue"] = json!(c);
    }
    if let Some(r) = remaining {
        meta["remainingItemCount"] = json!(r);
    }
    format!(
        "{{\"kind\":\"{}\",\"apiVersion\":\"{}\",\"metadata\":{},\"items\":[",
        def.list_kind(),
        def.api_version(),
        meta
    )
}

/// A list response streamed in chunks of about 64 KiB, so listing ten
/// thousand pods never holds the whole body in memory at once.
fn list_body(head: String, items: Vec<Bytes>) -> Body {
    const CHUNK: usize = 64 * 1024;
    let state = (Some(head), items.into_iter(), false, true);
    let stream = futures::stream::unfold(state, |(head, mut items, done, mut first)| async move {
        if done {
            return None;
        }
        let mut out = BytesMut::with_capacity(CHUNK + 4096);
        if let Some(h) = &head {
            out.put_slice(h.as_bytes());
        }
        loop {
            if out.len() >= CHUNK {
                return Some((
                    Ok(hyper::body::Frame::data(out.freeze())),
                    (None, items, false, first),
                ));
            }
            match items.next() {
                Some(b) => {
                    if !first {
                        out.put_u8(b',');
                    }
                    first = false;
                    out.put_slice(&b);
                }
                None => {
                    out.put_slice(b"]}");
                    return Some((
                        Ok(hyper::body::Frame::data(out.freeze())),
                        (None, items, true, first),
                    ));
                }
            }
        }
    });
    http_body_util::BodyExt::boxed_unsync(http_body_util::StreamBody::new(stream))
}

fn list_response(
    def: &ResourceDef,
    rv: Revision,
    cont: Option<&str>,
    remaining: Option<usize>,
    items: Vec<Bytes>,
) -> Response<Body> {
    Response::builder()
        .status(200)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-cache, private")
        .body(list_body(list_head(def, rv, cont, remaining), items))
        .unwrap_or_else(|_| Response::new(crate::server::full(Bytes::new())))
}

/// How a list without a continue token picks its revision, per
/// https://kubernetes.io/docs/reference/using-api/api-concepts/#semantics-for-get-and-list
enum ListAt {
    /// No resourceVersion: the store's current revision (a consistent read).
    Latest,
    /// resourceVersion=0: whatever the cache holds.
    Any,
    NotOlderThan(Revision),
    Exact(Revision),
}

/// How long a consistent list waits for the cache to reach the store's
/// revision before reading the store instead, and how long a NotOlderThan
/// list waits before answering 504 (kube-apiserver's 3 s).
const CONSISTENT_WAIT: Duration = Duration::from_secs(1);
const NOT_OLDER_THAN_WAIT: Duration = Duration::from_secs(3);

const LIST_EXPIRED: &str = "The resourceVersion for the provided list is too old.";
const CONTINUE_EXPIRED: &str = "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.";

/// kube-apiserver's checks of ListOptions (422), then the revision to read.
fn list_at(ctx: &Ctx<'_>, limit: usize, has_continue: bool) -> Result<ListAt, ApiError> {
    let rv = q1(ctx.query, "resourceVersion").unwrap_or("");
    let m = q1(ctx.query, "resourceVersionMatch").unwrap_or("");
    let field = "resourceVersionMatch".to_string();
    let mut causes = Vec::new();
    if !m.is_empty() {
        let forbidden = |msg: &str| {
            (
                "FieldValueForbidden".to_string(),
                field.clone(),
                format!("Forbidden: {msg}"),
            )
        };
        if rv.is_empty() {
            causes.push(forbidden(
                "resourceVersionMatch is forbidden unless resourceVersion is provided",
            ));
        }
        if has_continue {
            causes.push(forbidden(
                "resourceVersionMatch is forbidden when continue is provided",
            ));
        }
        if m != "Exact" && m != "NotOlderThan" {
            causes.push((
                "FieldValueNotSupported".to_string(),
                field.clone(),
                format!(
                    "Unsupported value: {m:?}: supported values: \"Exact\", \"NotOlderThan\", \"\""
                ),
            ));
        }
        if m == "Exact" && rv == "0" {
            causes.push(forbidden(
                "resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"",
            ));
        }
    }
    if !causes.is_empty() {
        return Err(ApiError::invalid("ListOptions", "meta.k8s.io", "", causes));
    }
    if has_continue {
        if !rv.is_empty() && rv != "0" {
            return Err(ApiError::bad_request(
                "specifying resource version is not allowed when using continue",
            ));
        }
        return Ok(ListAt::Latest);
    }
    Ok(match parse_rv(ctx.query)? {
        None => ListAt::Latest,
        Some(0) => ListAt::Any,
        // A limit with a resourceVersion and no match is the legacy exact read.
        Some(n) if m == "Exact" || (m.is_empty() && limit > 0) => ListAt::Exact(n),
        Some(n) => ListAt::NotOlderThan(n),
    })
}

/// kube-apiserver's answer when a resourceVersion is ahead of what it has.
fn too_large_rv(requested: Revision, current: Revision) -> ApiError {
    ApiError::new(
        504,
        "Timeout",
        format!("Too large resource version: {requested}, current: {current}"),
    )
    .with_details(json!({
        "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
        "retryAfterSeconds": 1,
    }))
}

/// A page: its items, its revision, a continue token when more follow, and
/// how many follow (only without selectors, as Kubernetes does).
type Page = (Vec<Bytes>, Revision, Option<String>, Option<usize>);

/// Lists are served from the watch cache (kube-apiserver's
/// ConsistentListFromCache): a consistent read first waits for the cache to
/// reach the store's revision. A paginated list keeps its snapshot so every
/// page comes from the same revision; pages the cache cannot answer (an
/// exact revision it no longer holds) are read from the store at that
/// revision.
pub async fn list(ctx: &Ctx<'_>) -> Result<Response<Body>, ApiError> {
    check_accept(ctx.headers)?;
    let filter = Filter::from_query(ctx)?;
    let limit: usize = parse_num(ctx.query, "limit")?.unwrap_or(0);
    let prefix = ctx.def.ns_prefix(ctx.namespace);
    let cont = q1(ctx.query, "continue").filter(|c| !c.is_empty());
    let at = list_at(ctx, limit, cont.is_some())?;
    let cache = &ctx.state.cache;
    let rc = cache.resource(ctx.def);
    let (items, rv, cont, remaining) = if let Some(c) = cont {
        let tok = decode_continue(c)?;
        if !tok.start.starts_with(&prefix) {
            return Err(ApiError::bad_request(
                "continue key is not valid: it belongs to another list",
            ));
        }
        match rc.snapshot_at(&prefix, tok.rv) {
            Some(snap) => {
                not_compacted(ctx, &snap, CONTINUE_EXPIRED).await?;
                page_from_cache(rc, &snap, &prefix, Some(&tok.start), &filter, limit)
            }
            None => list_from_store(ctx, &prefix, &filter, limit, Some(tok.start), Some(tok.rv))
                .await
                .map_err(|e| expired_as(e, CONTINUE_EXPIRED))?,
        }
    } else {
        let snap = match at {
            ListAt::Latest => {
                let rev = ctx.state.store.current_revision().await?;
                if cache.wait_until(rev, CONSISTENT_WAIT).await {
                    Some(rc.snapshot(&prefix))
                } else {
                    tracing::warn!(
                        rev,
                        "watch cache behind the store; list read from the store"
                    );
                    None
                }
            }
            ListAt::Any => Some(rc.snapshot(&prefix)),
            ListAt::NotOlderThan(n) => {
                if !cache.wait_until(n, NOT_OLDER_THAN_WAIT).await {
                    return Err(too_large_rv(n, cache.revision()));
                }
                Some(rc.snapshot(&prefix))
            }
            ListAt::Exact(n) => match rc.snapshot_at(&prefix, n) {
                Some(snap) => {
                    not_compacted(ctx, &snap, LIST_EXPIRED).await?;
                    Some(snap)
                }
                None => None,
            },
        };
        match snap {
            Some(snap) => page_from_cache(rc, &snap, &prefix, None, &filter, limit),
            None => {
                let exact = match at {
                    ListAt::Exact(n) => Some(n),
                    _ => None,
                };
                list_from_store(ctx, &prefix, &filter, limit, None, exact)
                    .await
                    .map_err(|e| expired_as(e, LIST_EXPIRED))?
            }
        }
    };
    render_list(ctx, rv, cont, remaining, items)
}

/// A kept snapshot expires with its revision: once the store has compacted
/// it, the list answers 410 as Kubernetes does.
async fn not_compacted(
    ctx: &Ctx<'_>,
    snap: &cache::Snapshot,
    expired: &str,
) -> Result<(), ApiError> {
    if snap.rev < ctx.state.cache.revision()
        && ctx.state.store.status().await?.compact_revision > snap.rev
    {
        return Err(ApiError::gone(expired));
    }
    Ok(())
}

/// A page cut from a cache snapshot, using the precomputed summaries for
/// selectors; the snapshot is kept when pages follow.
fn page_from_cache(
    rc: &cache::ResourceCache,
    snap: &Arc<cache::Snapshot>,
    prefix: &str,
    after: Option<&str>,
    filter: &Filter,
    limit: usize,
) -> Page {
    let objs = snap.range(prefix, after);
    let mut items = Vec::new();
    for (i, o) in objs.iter().enumerate() {
        if !filter.matches(o) {
            continue;
        }
        if limit > 0 && items.len() == limit {
            // Another match follows: continue after the last one returned,
            // which is just before this one.
            let last = &objs[i - 1].key;
            let remaining = filter.is_empty().then_some(objs.len() - i);
            rc.keep(snap);
            return (
                items,
                snap.rev,
                Some(encode_continue(snap.rev, last)),
                remaining,
            );
        }
        items.push(o.bytes.clone());
    }
    (items, snap.rev, None, None)
}

fn render_list(
    ctx: &Ctx<'_>,
    rv: Revision,
    cont: Option<String>,
    remaining: Option<usize>,
    items: Vec<Bytes>,
) -> Result<Response<Body>, ApiError> {
    if wants_table(ctx.headers) {
        let objs: Vec<Value> = items
            .iter()
            .filter_map(|b| serde_json::from_slice(b).ok())
            .collect();
        let mut t = table(ctx.def, &objs, include_object(ctx.query)?);
        t["metadata"] = json!({"resourceVersion": rv.to_string()});
        if let Some(c) = cont {
            t["metadata"]["continue"] = json!(c);
        }
        return Ok(json_response(200, &t));
    }
    Ok(list_response(
        ctx.def,
        rv,
        cont.as_deref(),
        remaining,
        items,
    ))
}

fn include_object(q: &Query) -> Result<IncludeObject, ApiError> {
    let s = q1(q, "includeObject").unwrap_or("");
    IncludeObject::parse(s).ok_or_else(|| {
        ApiError::bad_request(format!(
            "includeObject must be None, Metadata or Object, not {s:?}"
        ))
    })
}

fn table(def: &ResourceDef, objs: &[Value], include: IncludeObject) -> Value {
    let mut opts = TableOptions::new(chrono::Utc::now());
    opts.include_object = include;
    orca_api::printing::table(def.kind, objs, &opts)
}

/// A page read from the store: after `start` (a continuation), at
/// `revision` (the token's or an exact request's; `None` for the newest).
async fn list_from_store(
    ctx: &Ctx<'_>,
    prefix: &str,
    filter: &Filter,
    limit: usize,
    mut start: Option<String>,
    revision: Option<Revision>,
) -> Result<Page, orca_store::Error> {
    let mut items = Vec::new();
    let mut at = revision;
    let rc = ctx.state.cache.resource(ctx.def);
    loop {
        let page = ctx
            .state
            .store
            .list(
                prefix,
                orca_store::ListOptions {
                    limit: if limit == 0 { 0 } else { limit + 1 },
                    start_after: start.clone(),
                    revision: at,
                },
            )
            .await?;
        // Later reads of this list stay at the first one's revision.
        let rv = *at.get_or_insert(page.revision);
        for kv in &page.kvs {
            let Some(o) = rc.build_obj(&kv.key, &kv.value, kv.mod_revision) else {
                continue;
            };
            if filter.matches(&o) {
                if limit > 0 && items.len() == limit {
                    let last = start.as_deref().unwrap_or(prefix);
                    return Ok((items, rv, Some(encode_continue(rv, last)), None));
                }
                items.push(o.bytes.clone());
            }
            start = Some(kv.key.clone());
        }
        if !page.more || page.kvs.is_empty() {
            return Ok((items, rv, None, None));
        }
    }
}

/// Store errors for a list: a compacted revision is 410 with `expired`, a
/// future one is kube-apiserver's "too large" 504.
fn expired_as(e: orca_store::Error, expired: &str) -> ApiError {
    match e {
        orca_store::Error::Compacted { .. } => ApiError::gone(expired),
        orca_store::Error::FutureRevision { requested, current } => {
            too_large_rv(requested, current)
        }
        other => other.into(),
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

pub async fn get(ctx: &Ctx<'_>, name: &str) -> Result<Response<Body>, ApiError> {
    check_accept(ctx.headers)?;
    let (v, _) = read(ctx, name).await?;
    if wants_table(ctx.headers) {
        let mut t = table(
            ctx.def,
            std::slice::from_ref(&v),
            include_object(ctx.query)?,
        );
        t["metadata"] = json!({"resourceVersion": v["metadata"]["resourceVersion"]});
        return Ok(json_response(200, &t));
    }
    Ok(object_response(200, ctx.headers, &v))
}

// ---------------------------------------------------------------------------
// Watch

fn watch_line(kind: &str, obj: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(obj.len() + 32);
    b.put_slice(b"{\"type\":\"");
    b.put_slice(kind.as_bytes());
    b.put_slice(b"\",\"object\":");
    b.put_slice(obj);
    b.put_slice(b"}\n");
    b.freeze()
}

struct WatchOut {
    def: &'static ResourceDef,
    table: bool,
    include: IncludeObject,
    filter: Filter,
    prefix: String,
    tx: tokio::sync::mpsc::Sender<Bytes>,
    last_rev: Revision,
}

impl WatchOut {
    /// Sends one event if it passes the filter; false when the client left.
    async fn event(&mut self, ev: &CacheEvent) -> bool {
        if ev.rev <= self.last_rev {
            return true;
        }
        self.last_rev = ev.rev;
        if !ev.obj.key.starts_with(&self.prefix) {
            return true;
        }
        let cur = self.filter.matches(&ev.obj);
        let kind = match ev.kind {
            EventType::Added if cur => EventType::Added,
            EventType::Deleted if cur => EventType::Deleted,
            EventType::Modified => {
                let prev = ev
                    .prev
                    .as_ref()
                    .is_some_and(|p| self.filter.matches_meta(p));
                match (prev, cur) {
                    (true, true) => EventType::Modified,
                    (false, true) => EventType::Added,
                    (true, false) => EventType::Deleted,
                    (false, false) => return true,
                }
            }
            _ => return true,
        };
        self.send(kind.as_str(), &ev.obj.bytes).await
    }

    async fn send(&self, kind: &str, obj: &Bytes) -> bool {
        let line = if self.table {
            let v: Value = serde_json::from_slice(obj).unwrap_or(Value::Null);
            let t = table(self.def, std::slice::from_ref(&v), self.include);
            watch_line(kind, t.to_string().as_bytes())
        } else {
            watch_line(kind, obj)
        };
        self.tx.send(line).await.is_ok()
    }

    async fn bookmark(&self, rev: Revision, initial_end: bool) -> bool {
        let mut meta = json!({"resourceVersion": rev.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let obj =
            json!({"kind": self.def.kind, "apiVersion": self.def.api_version(), "metadata": meta});
        self.tx
            .send(watch_line("BOOKMARK", obj.to_string().as_bytes()))
            .await
            .is_ok()
    }

    async fn error(&self, e: &ApiError) {
        let _ = self
            .tx
            .send(watch_line("ERROR", e.to_status().to_string().as_bytes()))
            .await;
    }
}

pub async fn watch(ctx: &Ctx<'_>) -> Result<Response<Body>, ApiError> {
    check_accept(ctx.headers)?;
    let filter = Filter::from_query(ctx)?;
    let rv = parse_rv(ctx.query)?;
    let timeout: Option<u64> = parse_num(ctx.query, "timeoutSeconds")?;
    let bookmarks = matches!(q1(ctx.query, "allowWatchBookmarks"), Some("true" | "1"));
    let send_initial = match q1(ctx.query, "sendInitialEvents") {
        Some("true") => Some(true),
        Some("false") => Some(false),
        _ => None,
    };
    if send_initial.is_some() && !bookmarks {
        return Err(ApiError::new(
            422,
            "Invalid",
            "sendInitialEvents is forbidden for watch unless allowWatchBookmarks=true",
        ));
    }
    let prefix = ctx.def.ns_prefix(ctx.namespace);
    let rc = ctx.state.cache.resource(ctx.def).clone();
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(256);
    let mut out = WatchOut {
        def: ctx.def,
        table: wants_table(ctx.headers),
        include: include_object(ctx.query)?,
        filter,
        prefix: prefix.clone(),
        tx,
        last_rev: 0,
    };
    // RV unset or "0" starts with the current state as ADDED events.
    let initial = match (rv, send_initial) {
        (_, Some(b)) => b,
        (None | Some(0), None) => true,
        _ => false,
    };
    let store = ctx.state.store.clone();
    let def = ctx.def;
    tokio::spawn(async move {
        let deadline = timeout.map(|s| tokio::time::Instant::now() + Duration::from_secs(s.max(1)));
        let sub = if initial {
            let (objs, at, sub) = rc.snapshot_and_subscribe(&prefix);
            for o in objs.iter().filter(|o| out.filter.matches(o)) {
                if !out.send("ADDED", &o.bytes).await {
                    return;
                }
            }
            out.last_rev = at;
            if send_initial == Some(true) && !out.bookmark(at, true).await {
                return;
            }
            sub
        } else {
            // No initial state asked for and no resourceVersion: start now.
            let from = match rv {
                None | Some(0) => rc.revision(),
                Some(r) => r,
            };
            out.last_rev = from;
            match rc.subscribe(from) {
                Some(s) => s,
                None => {
                    // Older than the cache window: replay from the store.
                    watch_store(&mut out, &*store, def, &prefix, from, deadline).await;
                    return;
                }
            }
        };
        for ev in &sub.backlog {
            if !out.event(ev).await {
                return;
            }
        }
        let mut rx = sub.rx;
        let mut tick = tokio::time::interval(Duration::from_secs(30));
        tick.tick().await;
        loop {
            let sleep_until = deadline
                .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(86_400));
            tokio::select! {
                r = rx.recv() => match r {
                    Ok(ev) => if !out.event(&ev).await { return },
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(skipped = n, "watcher fell behind; closing its watch so it resumes");
                        return;
                    }
                    Err(_) => return,
                },
                _ = tick.tick() => {
                    if bookmarks && !out.bookmark(out.last_rev.max(rc.revision()), false).await { return }
                    if out.tx.is_closed() { return }
                }
                _ = tokio::time::sleep_until(sleep_until) => return,
            }
        }
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx)
        .map(|b| Ok::<_, crate::server::BoxError>(hyper::body::Frame::data(b)));
    let body = http_body_util::BodyExt::boxed_unsync(http_body_util::StreamBody::new(stream));
    Ok(Response::builder()
        .status(200)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-cache, private")
        .body(body)
        .unwrap_or_else(|_| Response::new(crate::server::full(Bytes::new()))))
}

async fn watch_store(
    out: &mut WatchOut,
    store: &dyn orca_store::Store,
    def: &'static ResourceDef,
    prefix: &str,
    from: Revision,
    deadline: Option<tokio::time::Instant>,
) {
    let mut stream = match store.watch(prefix, from).await {
        Ok(s) => s,
        Err(e) => {
            out.error(&ApiError::from(e)).await;
            return;
        }
    };
    let build = |key: &str, value: &[u8], rev| cache::build(def, key, value, rev);
    loop {
        let next = match deadline {
            Some(d) => match tokio::time::timeout_at(d, stream.next()).await {
                Ok(n) => n,
                Err(_) => return,
            },
            None => stream.next().await,
        };
        let ev = match next {
            Some(Ok(ev)) => ev,
            Some(Err(e)) => {
                out.error(&ApiError::from(e)).await;
                return;
            }
            None => return,
        };
        let ce = match ev {
            orca_store::WatchEvent::Put { kv, prev } => {
                let Some(obj) = build(&kv.key, &kv.value, kv.mod_revision) else {
                    continue;
                };
                CacheEvent {
                    kind: if prev.is_some() {
                        EventType::Modified
                    } else {
                        EventType::Added
                    },
                    rev: kv.mod_revision,
                    obj,
                    prev: prev
                        .and_then(|p| build(&p.key, &p.value, p.mod_revision))
                        .map(|o| o.meta.clone()),
                }
            }
            orca_store::WatchEvent::Delete { prev, revision } => {
                let Some(obj) = build(&prev.key, &prev.value, revision) else {
                    continue;
                };
                CacheEvent {
                    kind: EventType::Deleted,
                    rev: revision,
                    obj,
                    prev: None,
                }
            }
        };
        if !out.event(&ce).await {
            return;
        }
    }
}

// ---------------------------------------------------------------------------
// Writes

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

const GENERATE_CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

fn generate_suffix() -> String {
    (0..5)
        .map(|_| GENERATE_CHARS[rand::random_range(0..GENERATE_CHARS.len())] as char)
        .collect()
}

async fn namespace_usable(ctx: &Ctx<'_>, ns: &str) -> Result<(), ApiError> {
    let nsdef = crate::resources::namespaces();
    let key = nsdef.key(None, ns);
    // The cache's field summary of a namespace carries its phase.
    let phase = match ctx.state.cache.resource(nsdef).get(&key) {
        Some(o) => Some(
            o.meta
                .fields
                .get("status.phase")
                .unwrap_or_default()
                .to_string(),
        ),
        None => ctx
            .state
            .store
            .get(&key)
            .await?
            .and_then(|kv| serde_json::from_slice::<Value>(&kv.value).ok())
            .map(|v| {
                v["status"]["phase"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            }),
    };
    match phase {
        None => Err(ApiError::not_found("namespaces", "", ns)),
        Some(p) if p == "Terminating" => Err(ApiError::forbidden(format!(
            "{} is forbidden: unable to create new content in namespace {ns} because it is being terminated",
            ctx.def.name
        ))
        .with_details(json!({"name": ns, "kind": "namespaces"}))),
        Some(_) => Ok(()),
    }
}

pub async fn create(ctx: &Ctx<'_>, body: &[u8]) -> Result<Response<Body>, ApiError> {
    let dry = dry_run(ctx.query, "CreateOptions")?;
    let raw = decode_body(ctx.headers, body)?;
    let (mut v, warnings) = admit_body(ctx, raw, ctx.def.kind, ctx.def.schema, ctx.def.normalize)?;
    if ctx.def.namespaced {
        let ns = ctx.namespace.ok_or_else(|| {
            ApiError::method_not_allowed(format!(
                "{} must be created in a namespace: POST to /api/v1/namespaces/NAMESPACE/{}",
                ctx.def.name, ctx.def.name
            ))
        })?;
        match v["metadata"]["namespace"].as_str() {
            Some(n) if !n.is_empty() && n != ns => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ))
            }
            _ => v["metadata"]["namespace"] = json!(ns),
        }
        namespace_usable(ctx, ns).await?;
    } else if let Some(m) = v["metadata"].as_object_mut() {
        m.remove("namespace");
    }
    let generate = v["metadata"]["generateName"]
        .as_str()
        .unwrap_or("")
        .to_string();
    if name_of(&v).is_empty() && generate.is_empty() {
        return Err(ApiError::invalid(
            ctx.def.kind,
            ctx.def.group,
            "",
            vec![(
                "FieldValueRequired".into(),
                "metadata.name".into(),
                "name or generateName is required".into(),
            )],
        ));
    }
    // System fields are the server's to set.
    if let Some(m) = v["metadata"].as_object_mut() {
        m.remove("resourceVersion");
        m.remove("deletionTimestamp");
        m.remove("deletionGracePeriodSeconds");
        m.remove("managedFields");
        m.remove("selfLink");
        m.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
        m.insert("creationTimestamp".into(), json!(now()));
    }
    for attempt in 0..5 {
        let mut obj = v.clone();
        if name_of(&obj).is_empty() || (attempt > 0 && !generate.is_empty()) {
            obj["metadata"]["name"] = json!(format!("{generate}{}", generate_suffix()));
        }
        admission::on_create(ctx.def, &mut obj)?;
        let name = name_of(&obj).to_string();
        if dry {
            return Ok(with_warnings(
                object_response(201, ctx.headers, &obj),
                &warnings,
            ));
        }
        let key = key_for(ctx, &name);
        match ctx.state.store.create(&key, storage_bytes(&mut obj)?).await {
            Ok(kv) => return Ok(stored(ctx, 201, &mut obj, &kv, &warnings).await),
            Err(orca_store::Error::AlreadyExists(_))
                if !generate.is_empty() && name_of(&v).is_empty() =>
            {
                continue
            }
            Err(orca_store::Error::AlreadyExists(_)) => {
                return Err(ApiError::already_exists(ctx.def.name, ctx.def.group, &name))
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::new(
        500,
        "AlreadyExists",
        format!("could not generate a unique name from generateName {generate:?}; try again"),
    ))
}

/// The outcome of preparing a write against the current object.
enum Write {
    /// Store this new version.
    Update(Value),
    /// Remove the object.
    Remove,
    /// Nothing changes; answer with the current object.
    Unchanged,
}

/// Read-modify-write with compare-and-swap, retried on conflicts unless the
/// caller pinned a resourceVersion.
async fn guaranteed_update<F>(
    ctx: &Ctx<'_>,
    name: &str,
    dry: bool,
    mut f: F,
    warnings: &[String],
) -> Result<Response<Body>, ApiError>
where
    F: FnMut(&Value) -> Result<(Write, bool), ApiError>,
{
    let key = key_for(ctx, name);
    for attempt in 0..16 {
        // The first try starts from the watch cache, as kube-apiserver's
        // GuaranteedUpdate does: the write is a compare-and-swap on the
        // revision read, so a stale copy cannot be written over. Anything
        // but a successful write from a cached copy (a conflict, an error or
        // "nothing to change" decided on old data) is redone from the store.
        let cached = if attempt == 0 && !dry {
            cached_current(ctx, &key)
        } else {
            None
        };
        let from_cache = cached.is_some();
        let (current, rev) = match cached {
            Some(c) => c,
            None => read(ctx, name).await?,
        };
        let (write, pinned) = match f(&current) {
            Ok(w) => w,
            Err(_) if from_cache => continue,
            Err(e) => return Err(e),
        };
        match write {
            Write::Unchanged if from_cache => continue,
            Write::Unchanged => {
                return Ok(with_warnings(
                    object_response(200, ctx.headers, &current),
                    warnings,
                ))
            }
            Write::Update(mut new) => {
                if dry {
                    return Ok(with_warnings(
                        object_response(200, ctx.headers, &new),
                        warnings,
                    ));
                }
                // An object being deleted whose last finalizer went away is
                // removed (pods only once their grace period is over).
                if finished_deleting(ctx.def, &new) {
                    match remove(ctx, &key, name, rev, warnings).await {
                        Err(e) if e.code == 409 && from_cache => continue,
                        other => return other,
                    }
                }
                match ctx
                    .state
                    .store
                    .update(&key, storage_bytes(&mut new)?, rev)
                    .await
                {
                    Ok(kv) => return Ok(stored(ctx, 200, &mut new, &kv, warnings).await),
                    Err(orca_store::Error::Conflict { .. } | orca_store::Error::NotFound(_))
                        if from_cache =>
                    {
                        continue
                    }
                    Err(orca_store::Error::Conflict { .. }) if !pinned => continue,
                    Err(orca_store::Error::Conflict { .. }) => {
                        return Err(ApiError::modified(ctx.def.name, ctx.def.group, name))
                    }
                    Err(orca_store::Error::NotFound(_)) => return Err(not_found(ctx, name)),
                    Err(e) => return Err(e.into()),
                }
            }
            Write::Remove => {
                if dry {
                    return Ok(with_warnings(
                        object_response(200, ctx.headers, &current),
                        warnings,
                    ));
                }
                match remove(ctx, &key, name, rev, warnings).await {
                    Err(e) if e.code == 409 && (from_cache || !pinned) => continue,
                    other => return other,
                }
            }
        }
    }
    Err(ApiError::new(
        409,
        "Conflict",
        format!(
            "{} \"{name}\" is being changed too often to update it; try again",
            ctx.def.name
        ),
    ))
}

async fn remove(
    ctx: &Ctx<'_>,
    key: &str,
    name: &str,
    rev: Revision,
    warnings: &[String],
) -> Result<Response<Body>, ApiError> {
    match ctx.state.store.delete(key, Some(rev)).await {
        Ok((kv, del_rev)) => {
            let mut v = cache::decode_with_rv(&kv.value, del_rev).unwrap_or(Value::Null);
            set_rv(&mut v, del_rev);
            Ok(written(ctx, 200, &v, del_rev, warnings).await)
        }
        Err(orca_store::Error::Conflict { .. }) => {
            Err(ApiError::modified(ctx.def.name, ctx.def.group, name))
        }
        Err(orca_store::Error::NotFound(_)) => Err(not_found(ctx, name)),
        Err(e) => Err(e.into()),
    }
}

fn finished_deleting(def: &ResourceDef, v: &Value) -> bool {
    let md = &v["metadata"];
    if md["deletionTimestamp"].is_null() {
        return false;
    }
    let no_finalizers = md["finalizers"].as_array().is_none_or(|f| f.is_empty());
    match def.special {
        Special::Pod => no_finalizers && md["deletionGracePeriodSeconds"].as_i64() == Some(0),
        Special::Namespace => {
            no_finalizers
                && v["spec"]["finalizers"]
                    .as_array()
                    .is_none_or(|f| f.is_empty())
        }
        _ => no_finalizers,
    }
}

/// Whether two objects are equal but for metadata.resourceVersion (compared
/// in place: cloning two whole objects cost more than the comparison).
fn same_ignoring_rv(a: &Value, b: &Value) -> bool {
    fn same_except(
        a: &serde_json::Map<String, Value>,
        b: &serde_json::Map<String, Value>,
        skip: &str,
        same: impl Fn(&str, &Value, &Value) -> bool,
    ) -> bool {
        let count = |m: &serde_json::Map<String, Value>| m.keys().filter(|k| *k != skip).count();
        count(a) == count(b)
            && a.iter()
                .filter(|(k, _)| *k != skip)
                .all(|(k, va)| b.get(k).is_some_and(|vb| same(k, va, vb)))
    }
    match (a.as_object(), b.as_object()) {
        (Some(a), Some(b)) => same_except(a, b, "", |k, va, vb| {
            match (k, va.as_object(), vb.as_object()) {
                ("metadata", Some(ma), Some(mb)) => {
                    same_except(ma, mb, "resourceVersion", |_, x, y| x == y)
                }
                _ => va == vb,
            }
        }),
        _ => a == b,
    }
}

/// Sets `metadata.<field>` of `new` to the current object's (absent if
/// absent there): fields that only the server changes.
fn restore(new: &mut Value, current: &Value, field: &str) {
    match current["metadata"].get(field) {
        Some(x) => new["metadata"][field] = x.clone(),
        None => {
            if let Some(m) = new["metadata"].as_object_mut() {
                m.remove(field);
            }
        }
    }
}

/// Builds the new stored version from a client's full object, borrowed
/// when the caller may need it again (a retried PUT), owned otherwise.
fn merge_update(
    ctx: &Ctx<'_>,
    sub: Option<&str>,
    new: Cow<'_, Value>,
    current: &Value,
) -> Result<(Write, bool), ApiError> {
    let name = name_of(current).to_string();
    let pinned = match new["metadata"]["resourceVersion"].as_str() {
        Some(rv) if !rv.is_empty() => {
            if Some(rv) != current["metadata"]["resourceVersion"].as_str() {
                return Err(ApiError::modified(ctx.def.name, ctx.def.group, &name));
            }
            true
        }
        _ => false,
    };
    let mut new = if sub == Some("status") {
        // Kubernetes' status strategies: through /status the stored spec
        // (and for pods the owner references) stay, while the status and
        // metadata such as labels and annotations change as in an update.
        let mut out = current.clone();
        for part in ["metadata", "status"] {
            out[part] = new.get(part).cloned().unwrap_or_default();
        }
        if ctx.def.special == Special::Pod {
            restore(&mut out, current, "ownerReferences");
            // Set at creation; a writer that drops it does not clear it.
            if out["status"]["qosClass"].as_str().is_none_or(str::is_empty) {
                if let Some(q) = current["status"].get("qosClass") {
                    out["status"]["qosClass"] = q.clone();
                }
            }
        }
        out
    } else {
        let mut new = new.into_owned();
        // Status has its own subresource for kinds that have one.
        if ctx.def.subresources.contains(&"status") {
            new["status"] = current["status"].clone();
        }
        new
    };
    for f in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "namespace",
        "generation",
    ] {
        restore(&mut new, current, f);
    }
    if ctx.def.special == Special::Pod && new["spec"] != current["spec"] {
        let g = current["metadata"]["generation"].as_i64().unwrap_or(1);
        new["metadata"]["generation"] = json!(g + 1);
    }
    if let Some(m) = new["metadata"].as_object_mut() {
        m.remove("managedFields");
        m.remove("selfLink");
    }
    new["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"].clone();
    admission::on_update(ctx.def, &mut new, current, sub == Some("status"))?;
    if same_ignoring_rv(&new, current) {
        return Ok((Write::Unchanged, pinned));
    }
    Ok((Write::Update(new), pinned))
}

pub async fn update(
    ctx: &Ctx<'_>,
    name: &str,
    sub: Option<&str>,
    body: &[u8],
) -> Result<Response<Body>, ApiError> {
    let dry = dry_run(ctx.query, "UpdateOptions")?;
    let raw = decode_body(ctx.headers, body)?;
    let (new, warnings) = admit_body(ctx, raw, ctx.def.kind, ctx.def.schema, ctx.def.normalize)?;
    let body_name = name_of(&new);
    if body_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    if let (Some(ns), Some(bns)) = (ctx.namespace, new["metadata"]["namespace"].as_str()) {
        if !bns.is_empty() && bns != ns {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
    }
    guaranteed_update(
        ctx,
        name,
        dry,
        |cur| merge_update(ctx, sub, Cow::Borrowed(&new), cur),
        &warnings,
    )
    .await
}

pub async fn patch(
    ctx: &Ctx<'_>,
    name: &str,
    sub: Option<&str>,
    body: &[u8],
) -> Result<Response<Body>, ApiError> {
    let dry = dry_run(ctx.query, "PatchOptions")?;
    let ct = content_type(ctx.headers);
    let kind = match PatchType::from_content_type(&ct) {
        Some(PatchType::Apply) => {
            return Err(ApiError::new(
                415,
                "UnsupportedMediaType",
                "server-side apply is not supported by this server; use client-side `kubectl apply` (without --server-side)",
            ))
        }
        Some(k) => k,
        None => return Err(unsupported_media(&ct)),
    };
    let patch: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the patch is not valid JSON: {e}")))?;
    let mode = validation_mode(ctx.query)?;
    let mut warnings = Vec::new();
    let resp = guaranteed_update(
        ctx,
        name,
        dry,
        |cur| {
            let patched =
                orca_api::patch::apply(ctx.def.kind, cur, kind, &patch).map_err(|e| match e {
                    PatchError::Malformed(m) => ApiError::bad_request(m),
                    PatchError::Conflict(m) => ApiError::new(
                        422,
                        "Invalid",
                        format!(
                            "the patch could not be applied to {} \"{name}\": {m}",
                            ctx.def.name
                        ),
                    ),
                })?;
            // Unknown fields are judged on the result, then the typed round
            // trip normalises it as for a PUT.
            let unknown = if mode == Validation::Ignore {
                vec![]
            } else {
                crate::openapi::unknown_fields(ctx.def.schema, &patched)
            };
            if !unknown.is_empty() && mode == Validation::Strict {
                let msgs: Vec<String> = unknown
                    .iter()
                    .map(|f| format!("unknown field \"{f}\""))
                    .collect();
                return Err(ApiError::bad_request(format!(
                    "strict decoding error: {}",
                    msgs.join(", ")
                )));
            }
            let normalized = (ctx.def.normalize)(patched).map_err(|e| {
                ApiError::new(
                    422,
                    "Invalid",
                    format!(
                        "{} \"{name}\" is invalid after the patch: {e}",
                        ctx.def.kind
                    ),
                )
            })?;
            if name_of(&normalized) != name {
                return Err(ApiError::bad_request(
                    "the patch may not change metadata.name",
                ));
            }
            // The patched object carries the current resourceVersion, so it
            // is pinned only when the patch itself names one; otherwise a
            // concurrent write is retried, as Kubernetes does.
            let (w, _) = merge_update(ctx, sub, Cow::Owned(normalized), cur)?;
            let pinned = patch["metadata"]["resourceVersion"]
                .as_str()
                .is_some_and(|rv| !rv.is_empty());
            warnings = unknown
                .iter()
                .map(|f| format!("unknown field \"{f}\""))
                .collect();
            Ok((w, pinned))
        },
        &[],
    )
    .await?;
    Ok(with_warnings(resp, &warnings))
}

#[derive(Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeleteOptions {
    grace_period_seconds: Option<i64>,
    propagation_policy: Option<String>,
    preconditions: Option<Preconditions>,
    dry_run: Option<Vec<String>>,
    orphan_dependents: Option<bool>,
    /// `dryRun` from the body, or from the query when the body has none.
    #[serde(skip)]
    dry: bool,
}

#[derive(Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Preconditions {
    uid: Option<String>,
    resource_version: Option<String>,
}

fn delete_options(ctx: &Ctx<'_>, body: &[u8]) -> Result<DeleteOptions, ApiError> {
    let mut o: DeleteOptions = if body.iter().all(u8::is_ascii_whitespace) {
        DeleteOptions::default()
    } else {
        let v = decode_body(ctx.headers, body)?;
        serde_json::from_value(v)
            .map_err(|e| ApiError::bad_request(format!("invalid DeleteOptions: {e}")))?
    };
    if let Some(g) = parse_num::<i64>(ctx.query, "gracePeriodSeconds")? {
        o.grace_period_seconds = Some(g);
    }
    if let Some(p) = q1(ctx.query, "propagationPolicy") {
        o.propagation_policy = Some(p.to_string());
    }
    if let Some(p) = &o.propagation_policy {
        if !matches!(p.as_str(), "Orphan" | "Background" | "Foreground") {
            return Err(ApiError::bad_request(format!(
                "propagationPolicy {p:?} is not supported: use Orphan, Background or Foreground"
            )));
        }
    }
    let _ = o.orphan_dependents;
    if let Some(g) = o.grace_period_seconds {
        if g < 0 {
            return Err(ApiError::bad_request(
                "gracePeriodSeconds must be 0 or more",
            ));
        }
    }
    // kubectl sends dryRun in the body; other clients in the query.
    let dry_values = o
        .dry_run
        .as_deref()
        .or(ctx.query.get("dryRun").map(Vec::as_slice));
    o.dry = dry_run_values(dry_values, "DeleteOptions")?;
    Ok(o)
}

fn delete_decision(
    ctx: &Ctx<'_>,
    opts: &DeleteOptions,
    cur: &Value,
) -> Result<(Write, bool), ApiError> {
    let name = name_of(cur).to_string();
    let md = &cur["metadata"];
    if let Some(p) = &opts.preconditions {
        if let Some(uid) = &p.uid {
            if md["uid"].as_str() != Some(uid) {
                return Err(ApiError::conflict(
                    ctx.def.name,
                    ctx.def.group,
                    &name,
                    &format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                        md["uid"].as_str().unwrap_or("")
                    ),
                ));
            }
        }
        if let Some(rv) = &p.resource_version {
            if md["resourceVersion"].as_str() != Some(rv) {
                return Err(ApiError::conflict(ctx.def.name, ctx.def.group, &name, &format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                    md["resourceVersion"].as_str().unwrap_or("")
                )));
            }
        }
    }
    let pinned = opts
        .preconditions
        .as_ref()
        .is_some_and(|p| p.resource_version.is_some());
    let has_finalizers = md["finalizers"].as_array().is_some_and(|f| !f.is_empty());
    let mut new = cur.clone();
    let write = match ctx.def.special {
        Special::Pod => {
            let bound = cur["spec"]["nodeName"]
                .as_str()
                .is_some_and(|n| !n.is_empty());
            let terminal = matches!(
                cur["status"]["phase"].as_str(),
                Some("Succeeded" | "Failed")
            );
            let mut grace = opts
                .grace_period_seconds
                .or_else(|| cur["spec"]["terminationGracePeriodSeconds"].as_i64())
                .unwrap_or(30);
            if !bound || terminal {
                grace = 0;
            }
            let existing = md["deletionGracePeriodSeconds"].as_i64();
            if grace == 0 && !has_finalizers {
                Write::Remove
            } else if existing.is_some_and(|e| e <= grace) {
                Write::Unchanged
            } else {
                let at = chrono::Utc::now() + chrono::Duration::seconds(grace);
                new["metadata"]["deletionTimestamp"] =
                    json!(at.format("%Y-%m-%dT%H:%M:%SZ").to_string());
                new["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
                Write::Update(new)
            }
        }
        Special::Namespace => {
            if matches!(name.as_str(), "default" | "kube-system" | "kube-public") {
                return Err(ApiError::forbidden(format!(
                    "namespaces \"{name}\" is forbidden: this namespace may not be deleted"
                )));
            }
            if !md["deletionTimestamp"].is_null() {
                Write::Unchanged
            } else {
                new["metadata"]["deletionTimestamp"] = json!(now());
                new["metadata"]["deletionGracePeriodSeconds"] = json!(0);
                new["status"]["phase"] = json!("Terminating");
                new["spec"]["finalizers"] = json!(["kubernetes"]);
                Write::Update(new)
            }
        }
        _ if has_finalizers => {
            if md["deletionTimestamp"].is_null() {
                new["metadata"]["deletionTimestamp"] = json!(now());
                new["metadata"]["deletionGracePeriodSeconds"] = json!(0);
                Write::Update(new)
            } else {
                Write::Unchanged
            }
        }
        _ => Write::Remove,
    };
    Ok((write, pinned))
}

pub async fn delete(ctx: &Ctx<'_>, name: &str, body: &[u8]) -> Result<Response<Body>, ApiError> {
    let opts = delete_options(ctx, body)?;
    let resp = guaranteed_update(
        ctx,
        name,
        opts.dry,
        |cur| delete_decision(ctx, &opts, cur),
        &[],
    )
    .await?;
    if ctx.def.special == Special::Namespace && !opts.dry {
        crate::namespaces::spawn_cleanup(ctx.state.clone(), name.to_string());
    }
    Ok(resp)
}

pub async fn delete_collection(ctx: &Ctx<'_>, body: &[u8]) -> Result<Response<Body>, ApiError> {
    let opts = delete_options(ctx, body)?;
    let filter = Filter::from_query(ctx)?;
    let prefix = ctx.def.ns_prefix(ctx.namespace);
    let (objs, _) = ctx.state.cache.resource(ctx.def).list(&prefix);
    let mut deleted = Vec::new();
    for o in objs.into_iter().filter(|o| filter.matches(o)) {
        let sub = Ctx {
            state: ctx.state,
            def: ctx.def,
            namespace: if ctx.def.namespaced {
                Some(&*o.meta.namespace)
            } else {
                None
            },
            query: ctx.query,
            headers: ctx.headers,
        };
        match guaranteed_update(
            &sub,
            &o.meta.name,
            opts.dry,
            |cur| delete_decision(&sub, &opts, cur),
            &[],
        )
        .await
        {
            Ok(_) => deleted.push(o.bytes.clone()),
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    let rv = ctx.state.cache.revision();
    Ok(list_response(ctx.def, rv, None, None, deleted))
}

/// pods/binding: assigns a pod to a node, once.
pub async fn bind(ctx: &Ctx<'_>, name: &str, body: &[u8]) -> Result<Response<Body>, ApiError> {
    let dry = dry_run(ctx.query, "CreateOptions")?;
    let raw = decode_body(ctx.headers, body)?;
    let (b, _) = admit_body(ctx, raw, "Binding", "io.k8s.api.core.v1.Binding", |v| {
        serde_json::from_value::<k8s_openapi::api::core::v1::Binding>(v.clone())
            .map(|_| v)
            .map_err(|e| e.to_string())
    })?;
    let node = b["target"]["name"].as_str().unwrap_or("").to_string();
    if node.is_empty() {
        return Err(ApiError::invalid(
            "Binding",
            "",
            name,
            vec![(
                "FieldValueRequired".into(),
                "target.name".into(),
                "Required value".into(),
            )],
        ));
    }
    guaranteed_update(
        ctx,
        name,
        dry,
        |cur| {
            if !cur["metadata"]["deletionTimestamp"].is_null() {
                return Err(ApiError::conflict("pods", "", name, &format!(
                    "pod {name} is being deleted, cannot be assigned to a host")));
            }
            match cur["spec"]["nodeName"].as_str() {
                Some(n) if !n.is_empty() => {
                    return Err(ApiError::conflict("pods", "", name, &format!(
                        "pod {name} is already assigned to node \"{n}\"")))
                }
                _ => {}
            }
            let mut new = cur.clone();
            new["spec"]["nodeName"] = json!(node);
            let cond = json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now()});
            let conds = new["status"]["conditions"].as_array().cloned().unwrap_or_default();
            let mut conds: Vec<Value> = conds.into_iter().filter(|c| c["type"] != "PodScheduled").collect();
            conds.push(cond);
            new["status"]["conditions"] = json!(conds);
            Ok((Write::Update(new), false))
        },
        &[],
    )
    .await?;
    Ok(json_response(201, &success_status(None)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sameness_ignores_only_the_resource_version() {
        let a = json!({"kind": "Pod", "metadata": {"name": "a", "resourceVersion": "1"}, "spec": {"x": 1}});
        let same = json!({"kind": "Pod", "metadata": {"name": "a", "resourceVersion": "9"}, "spec": {"x": 1}});
        let no_rv = json!({"kind": "Pod", "metadata": {"name": "a"}, "spec": {"x": 1}});
        assert!(same_ignoring_rv(&a, &same));
        assert!(same_ignoring_rv(&a, &no_rv));
        assert!(same_ignoring_rv(&no_rv, &a));
        let relabeled =
            json!({"kind": "Pod", "metadata": {"name": "a", "labels": {}}, "spec": {"x": 1}});
        assert!(!same_ignoring_rv(&a, &relabeled));
        assert!(!same_ignoring_rv(&relabeled, &a));
        let respec = json!({"kind": "Pod", "metadata": {"name": "a"}, "spec": {"x": 2}});
        assert!(!same_ignoring_rv(&a, &respec));
        let extra =
            json!({"kind": "Pod", "metadata": {"name": "a"}, "spec": {"x": 1}, "status": {}});
        assert!(!same_ignoring_rv(&a, &extra));
        assert!(!same_ignoring_rv(&extra, &a));
    }

    #[test]
    fn stored_bytes_leave_out_the_resource_version_and_keep_the_object() {
        let mut v = json!({"metadata": {"name": "a", "resourceVersion": "7"}, "spec": {}});
        let bytes = storage_bytes(&mut v).unwrap();
        let stored: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(stored, json!({"metadata": {"name": "a"}, "spec": {}}));
        assert_eq!(v["metadata"]["resourceVersion"], "7");
    }
}
