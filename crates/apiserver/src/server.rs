//! HTTPS accept loop, authentication and routing of Kubernetes API paths.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderMap, Method, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use orca_store::Store;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::auth::authn::{self, TokenAuthenticator};
use crate::auth::inflight::Inflight;
use crate::auth::node::NodeGraph;
use crate::auth::rbac::Rbac;
use crate::auth::{Attributes, Caller};
use crate::cache::Cache;
use crate::resources::{self, ResourceDef};
use crate::status::ApiError;
use crate::{discovery, handlers, openapi, proxy};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

/// Largest request body accepted, as Kubernetes (3 MiB).
pub const MAX_BODY: usize = 3 * 1024 * 1024;

pub struct State {
    pub store: Arc<dyn Store>,
    pub cache: Arc<Cache>,
    /// Bearer-token authenticators, asked in turn (see [`crate::auth::authn`]).
    pub token_authenticators: Vec<Arc<dyn TokenAuthenticator>>,
    pub rbac: Arc<Rbac>,
    pub node_graph: Arc<NodeGraph>,
    pub inflight: Inflight,
    pub ca_pem: String,
    /// Signs approved client certificate requests.
    pub signer: Arc<crate::tls::Signer>,
    /// The longest client certificate it signs.
    pub cluster_signing_duration: Duration,
    pub kubelet_tls: Arc<rustls::ClientConfig>,
    pub server_url: String,
    /// Issues and verifies service account tokens.
    pub sa_tokens: crate::sa_tokens::ServiceAccountTokens,
    /// The ranges Service cluster IPs and node ports come from.
    pub service_network: crate::registry::ServiceNetwork,
    /// Request counters and timings for `/metrics`.
    pub metrics: crate::metrics::Metrics,
}

pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|e| match e {}).boxed_unsync()
}

pub fn json_response(code: u16, v: &Value) -> Response<Body> {
    // Straight into a buffer: `to_string` goes through `fmt` and is slower.
    let body = serde_json::to_vec(v).unwrap_or_default();
    bytes_response(code, "application/json", Bytes::from(body))
}

pub fn bytes_response(code: u16, content_type: &str, b: Bytes) -> Response<Body> {
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CACHE_CONTROL, "no-cache, private")
        .body(full(b))
        .unwrap_or_else(|_| Response::new(full(Bytes::new())))
}

pub fn error_response(e: &ApiError) -> Response<Body> {
    let mut r = json_response(e.code, &e.to_status());
    // As kube-apiserver: a suggested delay is also a Retry-After header,
    // which client-go honours by retrying the request itself.
    let retry_after = e
        .details
        .as_ref()
        .and_then(|d| d["retryAfterSeconds"].as_i64());
    if let Some(secs) = retry_after.filter(|s| *s > 0) {
        if let Ok(v) = http::HeaderValue::from_str(&secs.to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    r
}

/// Who the connection's client certificate names, decided once per
/// connection (a bearer token is read per request).
#[derive(Clone)]
struct Conn {
    cert_user: Option<Caller>,
}

pub async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    state: Arc<State>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => {
                let Ok((tcp, peer)) = accepted else { continue };
                let _ = tcp.set_nodelay(true);
                let acceptor = acceptor.clone();
                let state = state.clone();
                conns.spawn(async move {
                    let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                        Ok(Ok(t)) => t,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => return,
                    };
                    let cert_user = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .and_then(|c| authn::certificate_user(c))
                        .map(Arc::new);
                    let conn = Conn { cert_user };
                    let svc = hyper::service::service_fn(move |req| {
                        let state = state.clone();
                        let conn = conn.clone();
                        async move { Ok::<_, Infallible>(handle(state, conn, req).await) }
                    });
                    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    if let Err(e) = builder.serve_connection_with_upgrades(TokioIo::new(tls), svc).await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    // Waits for the aborted connections to drop what they hold (the store
    // among it), so a restarted server in this process can reopen it.
    conns.shutdown().await;
}

pub type Query = HashMap<String, Vec<String>>;

pub fn parse_query(q: Option<&str>) -> Query {
    let mut m: Query = HashMap::new();
    if let Some(q) = q {
        for (k, v) in form_urlencoded::parse(q.as_bytes()) {
            m.entry(k.into_owned()).or_default().push(v.into_owned());
        }
    }
    m
}

pub fn q1<'a>(q: &'a Query, k: &str) -> Option<&'a str> {
    q.get(k).and_then(|v| v.first()).map(String::as_str)
}

async fn handle(state: Arc<State>, conn: Conn, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let caller = match authn::authenticate(&state, conn.cert_user.as_ref(), req.headers()).await {
        Ok(c) => c,
        Err(e) => return error_response(&e),
    };
    let resp = match authn::impersonate(&state, caller, req.headers()) {
        Ok(caller) => guarded(&state, caller, req).await,
        Err(e) => error_response(&e),
    };
    tracing::debug!(%method, path, code = resp.status().as_u16(), "request");
    resp
}

/// The in-flight limit and the authorizers, then the route; the answer in
/// the wire the client asked for.
async fn guarded<B: RequestBody>(
    state: &Arc<State>,
    caller: Caller,
    req: Request<B>,
) -> Response<Body> {
    let accept = req
        .headers()
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",");
    let resp = guarded_json(state, caller, req).await;
    crate::protobuf::respond(&accept, resp).await
}

async fn guarded_json<B: RequestBody>(
    state: &Arc<State>,
    caller: Caller,
    req: Request<B>,
) -> Response<Body> {
    let attrs = Attributes::from_request(req.method(), req.uri().path(), req.uri().query());
    let follow = req.uri().query().is_some_and(|q| {
        q1(&parse_query(Some(q)), "follow").is_some_and(|f| f == "true" || f == "1")
    });
    let _permit = match state
        .inflight
        .admit(&attrs, &caller, attrs.is_long_running(follow))
    {
        Ok(p) => p,
        Err(_) => return too_many_requests(),
    };
    // The cluster CA is public: a joining node reads it before it can
    // authenticate (the token it holds pins its hash).
    let public = req.uri().path() == "/cacerts";
    if !public {
        if let Err(reason) = crate::auth::authorize(state, &caller, &attrs) {
            return error_response(&attrs.forbidden(&caller, &reason));
        }
    }
    let started = std::time::Instant::now();
    let labels = crate::metrics::labels(&attrs, req.method(), req.uri().query(), req.headers());
    let resp = route(state, &caller, req)
        .await
        .unwrap_or_else(|e| error_response(&e));
    if let Some(labels) = labels {
        state.metrics.observe(
            &labels,
            resp.status().as_u16(),
            started.elapsed().as_secs_f64(),
        );
    }
    resp
}

/// kube-apiserver's answer beyond the in-flight limit (plain text).
fn too_many_requests() -> Response<Body> {
    let mut r = text(429, "Too many requests, please try again later.\n");
    r.headers_mut()
        .insert(header::RETRY_AFTER, http::HeaderValue::from_static("1"));
    r
}

fn text(code: u16, s: &str) -> Response<Body> {
    bytes_response(
        code,
        "text/plain; charset=utf-8",
        Bytes::from(s.to_string()),
    )
}

/// A client for a component in this process acting as `identity` (see
/// [`crate::ApiServer::local_client`]).
pub fn local_client(state: Arc<State>, identity: crate::auth::UserInfo) -> kube::Client {
    let user_agent = component_user_agent(&identity);
    let caller: Caller = Arc::new(identity);
    let service = tower::service_fn(move |mut req: http::Request<kube::client::Body>| {
        let state = state.clone();
        let caller = caller.clone();
        if let Some(ua) = &user_agent {
            req.headers_mut()
                .entry(http::header::USER_AGENT)
                .or_insert_with(|| ua.clone());
        }
        async move { Ok::<_, Infallible>(handle_local(state, caller, req).await) }
    });
    kube::Client::new(service, "default")
}

/// The User-Agent of the Kubernetes component an in-process client stands
/// for (kubelet, scheduler, controller manager, the API server's own
/// loopback client), which names it as a field manager as in Kubernetes.
fn component_user_agent(identity: &crate::auth::UserInfo) -> Option<http::HeaderValue> {
    let product = match identity.name.as_str() {
        _ if identity.node_name().is_some() => "kubelet",
        "system:kube-scheduler" => "kube-scheduler",
        "system:kube-controller-manager" => "kube-controller-manager",
        _ if identity
            .service_account_name()
            .is_some_and(|(ns, _)| ns == "kube-system") =>
        {
            "kube-controller-manager"
        }
        "system:apiserver" => "kube-apiserver",
        _ => return None,
    };
    http::HeaderValue::from_str(&format!(
        "{product}/{} (linux/amd64) kubernetes/orca",
        crate::discovery::GIT_VERSION
    ))
    .ok()
}

/// Serves a request from a component in this process (see
/// [`crate::ApiServer::local_client`]) as `caller`: same limits,
/// authorizers, routing and handlers, no TLS.
pub async fn handle_local<B: RequestBody>(
    state: Arc<State>,
    caller: Caller,
    req: Request<B>,
) -> Response<Body> {
    match authn::impersonate(&state, caller, req.headers()) {
        Ok(caller) => guarded(&state, caller, req).await,
        Err(e) => error_response(&e),
    }
}

/// A request body from the network or from an in-process client.
pub trait RequestBody:
    http_body::Body<Data = Bytes, Error: std::fmt::Display> + Send + Unpin + 'static
{
}
impl<B> RequestBody for B where
    B: http_body::Body<Data = Bytes, Error: std::fmt::Display> + Send + Unpin + 'static
{
}

async fn route<B: RequestBody>(
    state: &Arc<State>,
    caller: &Caller,
    req: Request<B>,
) -> Result<Response<Body>, ApiError> {
    let path = req.uri().path().trim_end_matches('/').to_string();
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let get = req.method() == Method::GET;
    match segs.as_slice() {
        [endpoint @ ("healthz" | "livez" | "readyz"), check @ ..] => {
            return crate::health::serve(state, endpoint, check, req.uri().query()).await
        }
        ["version"] => return Ok(json_response(200, &discovery::version())),
        ["metrics"] if get => {
            return Ok(bytes_response(
                200,
                "text/plain; version=0.0.4; charset=utf-8",
                Bytes::from(crate::metrics::render(state)),
            ))
        }
        ["cacerts"] => {
            return Ok(bytes_response(
                200,
                "application/x-pem-file",
                Bytes::from(state.ca_pem.clone()),
            ))
        }
        [".well-known", "openid-configuration"] if get => {
            return Ok(crate::sa_tokens::oidc::configuration(
                &state.sa_tokens,
                &state.server_url,
            ))
        }
        ["openid", "v1", "jwks"] if get => {
            return Ok(crate::sa_tokens::oidc::jwks(&state.sa_tokens))
        }
        ["openapi", "v2"] if get => return Ok(openapi_v2(req.headers())),
        ["openapi", "v3"] if get => {
            return Ok(bytes_response(
                200,
                "application/json",
                Bytes::from(openapi::index().to_string()),
            ))
        }
        ["openapi", "v3", rest @ ..] if get => {
            let key = rest.join("/");
            let Some(doc) = openapi::docs().get(&key) else {
                return Err(ApiError::new(
                    404,
                    "NotFound",
                    format!("the OpenAPI document {key} is not served here"),
                ));
            };
            let q = parse_query(req.uri().query());
            let cache = if q1(&q, "hash") == Some(doc.hash.as_str()) {
                "public, immutable"
            } else {
                "no-cache, private"
            };
            return Ok(Response::builder()
                .status(200)
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::CACHE_CONTROL, cache)
                .header(header::ETAG, format!("\"{}\"", doc.hash))
                .body(full(doc.body.clone()))
                .unwrap_or_else(|_| Response::new(full(Bytes::new()))));
        }
        ["api"] if get => return Ok(discovery::api(req.headers(), &state.server_url)),
        ["apis"] if get => return Ok(discovery::apis(req.headers())),
        ["api", "v1"] if get => return Ok(discovery::resource_list("", "v1")),
        ["apis", crate::metrics_api::GROUP, crate::metrics_api::VERSION, rest @ ..] => {
            let (method, query) = (req.method().clone(), req.uri().query().map(String::from));
            return crate::metrics_api::serve(state, &method, query.as_deref(), rest).await;
        }
        ["apis", group] if get => return discovery::group(group),
        ["apis", group, version] if get && resources::GROUPS.contains(&(*group, *version)) => {
            return Ok(discovery::resource_list(group, version));
        }
        _ => {}
    }
    // Resource paths: /api/v1/... or /apis/{group}/{version}/...
    let (group, version, rest) = match segs.as_slice() {
        ["api", "v1", rest @ ..] => ("", "v1", rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Err(not_found_resource()),
    };
    let target = parse_target(group, version, rest)?;
    dispatch(state, caller, req, target).await
}

/// `/openapi/v2` as kube-apiserver serves it (kube-openapi's handler):
/// JSON, or gnostic's protobuf (which client-go's `OpenAPISchema` asks for
/// alone, under either of its two names) answered under the newer name.
/// The best Accept range (by q-value, then specific before wildcard, then
/// order) that one of them matches decides; none is a bare 406. Both forms
/// carry the JSON's ETag, so a client's HTTP cache can revalidate.
fn openapi_v2(headers: &HeaderMap) -> Response<Body> {
    const PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";
    const PROTOBUF_OLD: &str = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";
    let doc = openapi::v2();
    let etag = format!("\"{}\"", doc.hash);
    // Asked for, answered as, and the body, made on first use.
    type Form = (&'static str, &'static str, fn() -> &'static Bytes);
    let forms: [Form; 3] = [
        ("application/json", "application/json", || {
            &openapi::v2().body
        }),
        (PROTOBUF_OLD, PROTOBUF, openapi::v2_protobuf::body),
        (PROTOBUF, PROTOBUF, openapi::v2_protobuf::body),
    ];
    let chosen = accept_ranges(headers).into_iter().find_map(|range| {
        forms
            .iter()
            .find(|(media, _, _)| match range.split_once('/') {
                Some(("*", "*")) => true,
                Some((t, "*")) => media.split('/').next() == Some(t),
                _ => *media == range,
            })
    });
    let Some((_, content_type, body)) = chosen else {
        return Response::builder()
            .status(406)
            .header(header::VARY, "Accept")
            .body(full(Bytes::new()))
            .unwrap_or_else(|_| Response::new(full(Bytes::new())));
    };
    let revalidated = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|t| t == "*" || t == etag);
    let (status, body) = if revalidated {
        (304, Bytes::new())
    } else {
        (200, body().clone())
    };
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, *content_type)
        .header(header::ETAG, etag)
        .header(header::VARY, "Accept")
        .header(header::CACHE_CONTROL, "no-cache, private")
        .body(full(body))
        .unwrap_or_else(|_| Response::new(full(Bytes::new())))
}

/// The media ranges of the Accept headers (`*/*` if none), best first.
fn accept_ranges(headers: &HeaderMap) -> Vec<String> {
    let accept: Vec<&str> = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter(|v| !v.trim().is_empty())
        .collect();
    let accept = if accept.is_empty() {
        "*/*".to_string()
    } else {
        accept.join(",")
    };
    let mut ranges: Vec<(f32, usize, String)> = accept
        .split(',')
        .filter_map(|range| {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next()?.to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.strip_prefix("q="))
                .find_map(|q| q.parse().ok())
                .unwrap_or(1.0f32);
            let wildcards = media.matches('*').count();
            (!media.is_empty() && q > 0.0).then_some((q, wildcards, media))
        })
        .collect();
    ranges.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    ranges.into_iter().map(|(_, _, media)| media).collect()
}

/// A request's object path after the group version.
pub struct Target {
    pub def: &'static ResourceDef,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub sub: Option<String>,
}

/// kube-apiserver's answer for a path it does not serve. Its empty
/// `details` matter: kubectl reads `details.name` to tell a missing
/// subresource (e.g. `kubectl debug` on a cluster without ephemeral
/// containers) from a missing object.
fn not_found_resource() -> ApiError {
    ApiError::new(
        404,
        "NotFound",
        "the server could not find the requested resource",
    )
    .with_details(serde_json::json!({}))
}

fn parse_target(group: &str, version: &str, rest: &[&str]) -> Result<Target, ApiError> {
    let find = |name: &str| resources::find(group, version, name).ok_or_else(not_found_resource);
    let t = match rest {
        // namespaces/{ns}/status and /finalize are namespace subresources.
        ["namespaces", name, sub @ ("status" | "finalize")] => Target {
            def: find("namespaces")?,
            namespace: None,
            name: Some(name.to_string()),
            sub: Some(sub.to_string()),
        },
        ["namespaces", ns, res, more @ ..] => {
            let def = find(res)?;
            if !def.namespaced {
                return Err(not_found_resource());
            }
            Target {
                def,
                namespace: Some(ns.to_string()),
                name: more.first().map(|s| s.to_string()),
                sub: match more {
                    [_, "proxy", ..] => Some("proxy".to_string()),
                    [_, sub] => Some(sub.to_string()),
                    [_] => None,
                    [] => None,
                    _ => return Err(not_found_resource()),
                },
            }
        }
        [res] => Target {
            def: find(res)?,
            namespace: None,
            name: None,
            sub: None,
        },
        [res, name] => {
            let def = find(res)?;
            if def.namespaced {
                return Err(not_found_resource());
            }
            Target {
                def,
                namespace: None,
                name: Some(name.to_string()),
                sub: None,
            }
        }
        [res, name, sub] | [res, name, sub @ "proxy", ..] => {
            let def = find(res)?;
            if def.namespaced {
                return Err(not_found_resource());
            }
            Target {
                def,
                namespace: None,
                name: Some(name.to_string()),
                sub: Some(sub.to_string()),
            }
        }
        _ => return Err(not_found_resource()),
    };
    if let Some(sub) = &t.sub {
        if !t.def.subresources.contains(&sub.as_str()) {
            return Err(not_found_resource());
        }
    }
    Ok(t)
}

/// Reads the request body, refusing more than [`MAX_BODY`] bytes. An
/// oversized body is still drained (up to a bound) so the client gets our
/// 413 instead of a reset connection.
pub async fn read_body<B: RequestBody>(
    mut body: B,
    _headers: &HeaderMap,
) -> Result<Bytes, ApiError> {
    const DRAIN_LIMIT: usize = 64 * 1024 * 1024;
    let mut buf = bytes::BytesMut::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame
            .map_err(|e| ApiError::bad_request(format!("could not read the request body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            seen += data.len();
            if seen <= MAX_BODY {
                buf.extend_from_slice(&data);
            } else if seen > DRAIN_LIMIT {
                break;
            }
        }
    }
    if seen > MAX_BODY {
        return Err(ApiError::new(
            413,
            "RequestEntityTooLarge",
            format!("Request entity too large: limit is {MAX_BODY}"),
        ));
    }
    Ok(buf.freeze())
}

async fn dispatch<B: RequestBody>(
    state: &Arc<State>,
    caller: &Caller,
    req: Request<B>,
    t: Target,
) -> Result<Response<Body>, ApiError> {
    let q = parse_query(req.uri().query());
    let method = req.method().clone();
    let sub = t.sub.as_deref();
    if matches!(sub, Some("log" | "exec" | "attach" | "portforward")) {
        return proxy::pod_stream(state, req, &t, &q).await;
    }
    if sub == Some("proxy") {
        return crate::resource_proxy::serve(state, req, &t).await;
    }
    let (parts, body) = req.into_parts();
    let h = &parts.headers;
    let ctx = handlers::Ctx {
        state,
        def: t.def,
        namespace: t.namespace.as_deref(),
        query: &q,
        headers: h,
        user: caller,
    };
    let verb = match (&method, t.name.as_deref(), sub) {
        (&Method::GET, None, None) => "list",
        (&Method::POST, None, None) => "create",
        (&Method::DELETE, None, None) => "deletecollection",
        (&Method::GET, _, None) => "get",
        (&Method::PUT, _, None) => "update",
        (&Method::PATCH, _, None) => "patch",
        (&Method::DELETE, _, None) => "delete",
        _ => "",
    };
    if !verb.is_empty() && !t.def.verbs().contains(&verb) {
        return Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource: {method} {}",
            t.def.name
        )));
    }
    match (&method, t.name.as_deref(), sub) {
        (&Method::GET, None, None) => {
            let watch = matches!(q1(&q, "watch"), Some("1" | "true"));
            if watch {
                handlers::watch(&ctx).await
            } else {
                handlers::list(&ctx).await
            }
        }
        (&Method::POST, None, None) => {
            let body = read_body(body, h).await?;
            handlers::create(&ctx, &body).await
        }
        (&Method::DELETE, None, None) if t.def.verbs().contains(&"deletecollection") => {
            let body = read_body(body, h).await?;
            handlers::delete_collection(&ctx, &body).await
        }
        (&Method::GET, Some(name), Some("scale")) => handlers::get_scale(&ctx, name).await,
        (&Method::PUT, Some(name), Some("scale")) => {
            let body = read_body(body, h).await?;
            handlers::update_scale(&ctx, name, &body).await
        }
        (&Method::PATCH, Some(name), Some("scale")) => {
            let body = read_body(body, h).await?;
            handlers::patch_scale(&ctx, name, &body).await
        }
        (&Method::GET, Some(name), None | Some("status" | "approval" | "ephemeralcontainers")) => {
            handlers::get(&ctx, name).await
        }
        (&Method::PUT, Some(name), None | Some("status" | "approval" | "ephemeralcontainers")) => {
            let body = read_body(body, h).await?;
            handlers::update(&ctx, name, sub, &body).await
        }
        (
            &Method::PATCH,
            Some(name),
            None | Some("status" | "approval" | "ephemeralcontainers"),
        ) => {
            let body = read_body(body, h).await?;
            handlers::patch(&ctx, name, sub, &body).await
        }
        (&Method::DELETE, Some(name), None) => {
            let body = read_body(body, h).await?;
            handlers::delete(&ctx, name, &body).await
        }
        (&Method::POST, Some(name), Some("binding")) => {
            let body = read_body(body, h).await?;
            handlers::bind(&ctx, name, &body).await
        }
        (&Method::POST, Some(name), Some("eviction")) => {
            let body = read_body(body, h).await?;
            handlers::evict(&ctx, name, &body).await
        }
        (&Method::POST, Some(name), Some(sub)) if t.def.subresource(sub).1.contains(&"create") => {
            let body = read_body(body, h).await?;
            handlers::create_subresource(&ctx, name, sub, &body).await
        }
        (&Method::PUT, Some(name), Some("finalize")) => {
            let body = read_body(body, h).await?;
            handlers::update(&ctx, name, None, &body).await
        }
        _ => Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource: {method} {}",
            t.def.name
        ))),
    }
}
