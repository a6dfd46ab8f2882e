use super::*;

// Reads

pub(super) struct Filter {
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Filter {
    pub(super) fn from_query(ctx: &Ctx<'_>) -> Result<Filter, ApiError> {
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

    pub(super) fn matches(&self, o: &CachedObj) -> bool {
        self.matches_meta(&o.meta)
    }

    pub(super) fn matches_meta(&self, m: &cache::ObjMeta) -> bool {
        crate::selectors::labels_match(&self.labels, &m.labels) && self.fields.matches(&m.fields)
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

fn list_head_meta(rv: Revision, cont: Option<&str>, remaining: Option<usize>) -> Value {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if let Some(c) = cont {
        meta["continue"] = json!(c);
    }
    if let Some(r) = remaining {
        meta["remainingItemCount"] = json!(r);
    }
    meta
}

fn list_head(
    def: &ResourceDef,
    rv: Revision,
    cont: Option<&str>,
    remaining: Option<usize>,
) -> String {
    let meta = list_head_meta(rv, cont, remaining);
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

pub(super) fn list_response(
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
    let negotiated = crate::protobuf::negotiate(&accept(ctx.headers));
    if negotiated.first() == Some(crate::protobuf::Wire::Protobuf) {
        let head = list_head_meta(rv, cont.as_deref(), remaining);
        match crate::protobuf::encode_list(
            &ctx.def.api_version(),
            &ctx.def.list_kind(),
            &head,
            &items,
        ) {
            Ok(pb) => {
                return Ok(bytes_response(
                    200,
                    crate::protobuf::CONTENT_TYPE,
                    Bytes::from(pb),
                ))
            }
            Err(why) if !negotiated.json_fallback() => {
                return Err(ApiError::new(406, "NotAcceptable", why))
            }
            Err(_) => {}
        }
    }
    Ok(list_response(
        ctx.def,
        rv,
        cont.as_deref(),
        remaining,
        items,
    ))
}

pub(super) fn include_object(q: &Query) -> Result<IncludeObject, ApiError> {
    let s = q1(q, "includeObject").unwrap_or("");
    IncludeObject::parse(s).ok_or_else(|| {
        ApiError::bad_request(format!(
            "includeObject must be None, Metadata or Object, not {s:?}"
        ))
    })
}

pub(super) fn table(def: &ResourceDef, objs: &[Value], include: IncludeObject) -> Value {
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
