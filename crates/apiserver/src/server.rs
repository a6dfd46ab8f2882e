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
    pub node_token: String,
    pub ca_pem: String,
    pub kubelet_tls: Arc<rustls::ClientConfig>,
    pub server_url: String,
    /// Issues and verifies service account tokens.
    pub sa_tokens: crate::sa_tokens::ServiceAccountTokens,
    /// The ranges Service cluster IPs and node ports come from.
    pub service_network: crate::registry::ServiceNetwork,
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
    json_response(e.code, &e.to_status())
}

/// Who is calling, decided once per connection (certificate) and per
/// request (bearer token).
#[derive(Clone, Copy)]
struct Conn {
    client_cert: bool,
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
                    let conn = Conn { client_cert: tls.get_ref().1.peer_certificates().is_some_and(|c| !c.is_empty()) };
                    let svc = hyper::service::service_fn(move |req| {
                        let state = state.clone();
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

fn is_anonymous(path: &str) -> bool {
    matches!(
        path,
        "/healthz" | "/livez" | "/readyz" | "/version" | "/version/" | "/cacerts"
    )
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

fn bearer_ok(headers: &HeaderMap, token: &str) -> bool {
    bearer(headers).is_some_and(|t| {
        // Constant-time comparison: this is a secret.
        t.len() == token.len()
            && t.bytes()
                .zip(token.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    })
}

/// Whether the request's bearer token is a valid service account token.
async fn service_account_ok(state: &State, headers: &HeaderMap) -> bool {
    let Some(token) = bearer(headers) else {
        return false;
    };
    match state.sa_tokens.verify(state, token).await {
        Ok(_) => true,
        Err(e) => {
            tracing::debug!(error = %e, "bearer token rejected");
            false
        }
    }
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
    if !is_anonymous(&path)
        && !conn.client_cert
        && !bearer_ok(req.headers(), &state.node_token)
        && !service_account_ok(&state, req.headers()).await
    {
        return error_response(&ApiError::unauthorized());
    }
    let method = req.method().clone();
    let resp = route(&state, req).await;
    let resp = resp.unwrap_or_else(|e| error_response(&e));
    tracing::debug!(%method, path, code = resp.status().as_u16(), "request");
    resp
}

fn text(code: u16, s: &str) -> Response<Body> {
    bytes_response(
        code,
        "text/plain; charset=utf-8",
        Bytes::from(s.to_string()),
    )
}

/// A client for components in this process (see
/// [`crate::ApiServer::local_client`]).
pub fn local_client(state: Arc<State>) -> kube::Client {
    let service = tower::service_fn(move |req: http::Request<kube::client::Body>| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(handle_local(state, req).await) }
    });
    kube::Client::new(service, "default")
}

/// Serves a request from a component in this process (see
/// [`crate::ApiServer::local_client`]): same routing and handlers, no TLS,
/// trusted like the admin certificate.
pub async fn handle_local<B: RequestBody>(state: Arc<State>, req: Request<B>) -> Response<Body> {
    route(&state, req)
        .await
        .unwrap_or_else(|e| error_response(&e))
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
    req: Request<B>,
) -> Result<Response<Body>, ApiError> {
    let path = req.uri().path().trim_end_matches('/').to_string();
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let get = req.method() == Method::GET;
    match segs.as_slice() {
        ["healthz"] | ["livez"] => return Ok(text(200, "ok")),
        ["readyz"] => {
            return Ok(match state.store.current_revision().await {
                Ok(_) => text(200, "ok"),
                Err(e) => text(500, &format!("store not ready: {e}")),
            })
        }
        ["version"] => return Ok(json_response(200, &discovery::version())),
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
    dispatch(state, req, target).await
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
        [res, name, sub] => {
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
    req: Request<B>,
    t: Target,
) -> Result<Response<Body>, ApiError> {
    let q = parse_query(req.uri().query());
    let method = req.method().clone();
    let sub = t.sub.as_deref();
    if matches!(sub, Some("log" | "exec" | "attach" | "portforward")) {
        return proxy::pod_stream(state, req, &t, &q).await;
    }
    let (parts, body) = req.into_parts();
    let h = &parts.headers;
    let ctx = handlers::Ctx {
        state,
        def: t.def,
        namespace: t.namespace.as_deref(),
        query: &q,
        headers: h,
    };
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
        (&Method::GET, Some(name), None | Some("status")) => handlers::get(&ctx, name).await,
        (&Method::PUT, Some(name), None | Some("status")) => {
            let body = read_body(body, h).await?;
            handlers::update(&ctx, name, sub, &body).await
        }
        (&Method::PATCH, Some(name), None | Some("status")) => {
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
