//! The agent's HTTPS streaming server, which the API server proxies to, with
//! the kubelet's paths and protocols: `/containerLogs/{ns}/{pod}/{container}`,
//! `/exec/...` and `/attach/...` over WebSocket channel protocols or SPDY,
//! and `/portForward/{ns}/{pod}` over SPDY, SPDY tunnelled in a WebSocket, or
//! the WebSocket channel protocol; `/pods`, `/healthz`, `/stats/summary`,
//! `/metrics` and `/metrics/resource` as the kubelet's.
//! Errors are plain text, as the kubelet's:
//! the API server turns them into Statuses.

mod channel;
mod container_logs;
mod portforward;
mod remotecommand;

use std::sync::Arc;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{FromRequestParts, Path, RawQuery, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use hyper_util::rt::TokioIo;
use orca_runtime::{ContainerState, ContainerStatus, StreamSession};

use crate::{Ctx, Error};

pub(crate) async fn serve(
    ctx: Arc<Ctx>,
    listener: tokio::net::TcpListener,
    tls: rustls::ServerConfig,
) -> Result<(), Error> {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let app = router(ctx);
    loop {
        let (tcp, peer) = listener.accept().await.map_err(|e| Error::Io {
            what: "accepting a streaming connection".into(),
            source: e,
        })?;
        // Interactive streams send small frames; Nagle would hold them for
        // the peer's delayed ACK.
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(t) => t,
                Err(e) => {
                    tracing::debug!(%peer, "streaming TLS handshake failed: {e}");
                    return;
                }
            };
            // Every client certificate the cluster CA signs is accepted by
            // the handshake (users', nodes'); only the API server's
            // kubelet client, in system:masters, may stream.
            let admitted = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .is_some_and(|c| crate::tls::in_system_masters(c));
            if !admitted {
                tracing::warn!(%peer, "refused a streaming connection whose client certificate is not the API server's (not in system:masters)");
                return;
            }
            let svc = hyper_util::service::TowerToHyperService::new(app);
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                .with_upgrades()
                .await
            {
                tracing::debug!(%peer, "streaming connection ended: {e}");
            }
        });
    }
}

fn router(ctx: Arc<Ctx>) -> Router {
    Router::new()
        .route(
            "/containerLogs/{ns}/{pod}/{container}",
            get(container_logs::container_logs),
        )
        .route("/exec/{ns}/{pod}/{container}", any(exec))
        .route("/attach/{ns}/{pod}/{container}", any(attach))
        .route("/portForward/{ns}/{pod}", any(port_forward))
        .route("/pods", get(pods))
        .route("/healthz", get(|| async { "ok" }))
        .route("/stats/summary", get(stats_summary))
        .route("/metrics/resource", get(resource_metrics))
        .route("/metrics", get(metrics))
        .with_state(ctx)
}

/// The kubelet's Summary API (`nodes/NAME/proxy/stats/summary`).
async fn stats_summary(State(ctx): State<Arc<Ctx>>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        crate::stats::summary(&ctx).await.to_string(),
    )
        .into_response()
}

const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

async fn resource_metrics(State(ctx): State<Arc<Ctx>>) -> Response {
    (
        [(header::CONTENT_TYPE, PROMETHEUS_TEXT)],
        crate::stats::resource_metrics(&ctx).await,
    )
        .into_response()
}

/// The kubelet's own gauges of what runs here.
async fn metrics(State(ctx): State<Arc<Ctx>>) -> Response {
    use prometheus::{Encoder, IntGauge, IntGaugeVec, Opts, Registry};
    let containers = ctx.runtime.list_containers(None).await.unwrap_or_default();
    let sandboxes = ctx.runtime.list_sandboxes().await.unwrap_or_default();
    let registry = Registry::new();
    let pods = IntGauge::new(
        "kubelet_running_pods",
        "[ALPHA] Number of pods that have a running pod sandbox",
    )
    .expect("valid metric");
    pods.set(sandboxes.len() as i64);
    let by_state = IntGaugeVec::new(
        Opts::new(
            "kubelet_running_containers",
            "[ALPHA] Number of containers currently running",
        ),
        &["container_state"],
    )
    .expect("valid metric");
    for c in &containers {
        let state = match c.state {
            ContainerState::Created => "created",
            ContainerState::Running { .. } => "running",
            ContainerState::Exited { .. } => "exited",
        };
        by_state.with_label_values(&[state]).inc();
    }
    let _ = registry.register(Box::new(pods));
    let _ = registry.register(Box::new(by_state));
    let mut out = Vec::new();
    let _ = prometheus::TextEncoder::new().encode(&registry.gather(), &mut out);
    ([(header::CONTENT_TYPE, PROMETHEUS_TEXT)], out).into_response()
}

/// The kubelet's `/pods`: the pods bound to this node, as a PodList (what
/// `nodes/NAME/proxy/pods` answers; the upstream e2e suite dumps it).
async fn pods(State(ctx): State<Arc<Ctx>>) -> Response {
    let api = kube::Api::<k8s_openapi::api::core::v1::Pod>::all(ctx.client.clone());
    let lp =
        kube::api::ListParams::default().fields(&format!("spec.nodeName={}", ctx.config.node_name));
    match api.list(&lp).await {
        Ok(list) => {
            let body = serde_json::json!({
                "kind": "PodList",
                "apiVersion": "v1",
                "metadata": {},
                "items": list.items,
            });
            (
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                body.to_string(),
            )
                .into_response()
        }
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("listing the pods of node {}: {e}", ctx.config.node_name),
        ),
    }
}

fn error(code: StatusCode, msg: String) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        msg,
    )
        .into_response()
}

/// Decodes `a=1&b=x%20y&b=z` into pairs, keeping repeated keys.
pub fn parse_query(q: &str) -> Vec<(String, String)> {
    fn decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                    match u8::from_str_radix(hex, 16) {
                        Ok(b) => {
                            out.push(b);
                            i += 2;
                        }
                        Err(_) => out.push(b'%'),
                    }
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).to_string()
    }
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

fn flag(q: &[(String, String)], names: &[&str]) -> bool {
    q.iter()
        .any(|(k, v)| names.contains(&k.as_str()) && matches!(v.as_str(), "true" | "1" | "True"))
}

fn value<'a>(q: &'a [(String, String)], name: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// The uid of a pod bound here, by namespace and name.
fn pod_uid(ctx: &Ctx, ns: &str, pod: &str) -> Option<String> {
    ctx.pods
        .lock()
        .ok()
        .and_then(|m| m.get(&(ns.to_string(), pod.to_string())).cloned())
}

/// A container's attempts, newest first.
async fn attempts(ctx: &Ctx, uid: &str, container: &str) -> Result<Vec<ContainerStatus>, Response> {
    let mut attempts: Vec<ContainerStatus> = ctx
        .runtime
        .list_containers(Some(uid))
        .await
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .into_iter()
        .filter(|c| c.name == container)
        .collect();
    attempts.sort_by_key(|c| std::cmp::Reverse(c.attempt));
    Ok(attempts)
}

/// How a streaming request wants its connection upgraded.
enum Upgrade {
    WebSocket(WebSocketUpgrade),
    /// SPDY/3.1 with the sub-protocols the client offers, in its order.
    Spdy(Vec<String>),
}

async fn upgrade_kind(req: &mut Request) -> Result<Upgrade, Response> {
    let upgrade = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if upgrade == "websocket" {
        let (mut parts, body) = std::mem::take(req).into_parts();
        let ws = WebSocketUpgrade::from_request_parts(&mut parts, &()).await;
        *req = Request::from_parts(parts, body);
        return ws.map(Upgrade::WebSocket).map_err(|e| {
            error(
                StatusCode::BAD_REQUEST,
                format!("unable to upgrade websocket connection: {e}"),
            )
        });
    }
    if upgrade.contains("spdy/3.1") {
        return Ok(Upgrade::Spdy(offered_protocols(req.headers())));
    }
    Err(error(
        StatusCode::BAD_REQUEST,
        "unable to upgrade: missing upgrade headers in request".into(),
    ))
}

/// `X-Stream-Protocol-Version` values, comma-separated or repeated.
fn offered_protocols(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all("x-stream-protocol-version")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

/// Picks the first protocol the client offers that we speak, or answers as
/// the kubelet's handshake does.
fn negotiate(offered: &[String], ours: &[&str]) -> Result<String, Box<Response>> {
    if offered.is_empty() {
        return Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            "unable to upgrade: X-Stream-Protocol-Version is required".into(),
        )));
    }
    offered
        .iter()
        .find(|p| ours.contains(&p.as_str()))
        .cloned()
        .ok_or_else(|| {
            let mut r = error(
                StatusCode::FORBIDDEN,
                format!(
                    "unable to upgrade: unable to negotiate protocol: client supports [{}], server accepts [{}]",
                    offered.join(" "),
                    ours.join(" ")
                ),
            );
            for p in ours {
                if let Ok(v) = p.parse() {
                    r.headers_mut().append("x-accepted-stream-protocol-versions", v);
                }
            }
            Box::new(r)
        })
}

/// Answers a SPDY upgrade and runs `serve` on the upgraded connection.
fn spdy_upgrade<F, Fut>(mut req: Request, protocol: String, serve: F) -> Response
where
    F: FnOnce(TokioIo<hyper::upgrade::Upgraded>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let on = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match on.await {
            Ok(upgraded) => serve(TokioIo::new(upgraded)).await,
            Err(e) => tracing::debug!("SPDY upgrade failed: {e}"),
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "SPDY/3.1")
        .header("X-Stream-Protocol-Version", protocol)
        .body(axum::body::Body::empty())
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

async fn exec(
    State(ctx): State<Arc<Ctx>>,
    Path((ns, pod, container)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
    req: Request,
) -> Response {
    let q = parse_query(query.as_deref().unwrap_or(""));
    let command: Vec<String> = q
        .iter()
        .filter(|(k, _)| k == "command")
        .map(|(_, v)| v.clone())
        .collect();
    if command.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "you must specify at least one command for the container".into(),
        );
    }
    let opts = match options(&q) {
        Ok(o) => o,
        Err(r) => return *r,
    };
    remote_command(ctx, ns, pod, container, req, opts, false, move |rt, id| {
        Box::pin(async move {
            rt.exec(
                &id,
                orca_runtime::ExecRequest {
                    command,
                    tty: opts.tty,
                    stdin: opts.stdin,
                },
            )
            .await
        })
    })
    .await
}

async fn attach(
    State(ctx): State<Arc<Ctx>>,
    Path((ns, pod, container)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
    req: Request,
) -> Response {
    let q = parse_query(query.as_deref().unwrap_or(""));
    let opts = match options(&q) {
        Ok(o) => o,
        Err(r) => return *r,
    };
    remote_command(ctx, ns, pod, container, req, opts, true, move |rt, id| {
        Box::pin(async move { rt.attach(&id, opts.stdin, opts.tty).await })
    })
    .await
}

/// The streams asked for (the API server sends `stdin=true`, the kubelet's
/// own clients `input=1`); a terminal merges stderr into stdout.
fn options(q: &[(String, String)]) -> Result<remotecommand::Options, Box<Response>> {
    let tty = flag(q, &["tty"]);
    let opts = remotecommand::Options {
        stdin: flag(q, &["stdin", "input"]),
        stdout: flag(q, &["stdout", "output"]),
        stderr: flag(q, &["stderr", "error"]) && !tty,
        tty,
    };
    if !opts.stdin && !opts.stdout && !opts.stderr {
        return Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            "you must specify at least 1 of stdin, stdout, stderr".into(),
        )));
    }
    Ok(opts)
}

#[allow(clippy::too_many_arguments)]
async fn remote_command(
    ctx: Arc<Ctx>,
    ns: String,
    pod: String,
    container: String,
    mut req: Request,
    opts: remotecommand::Options,
    attach: bool,
    open: impl FnOnce(
            Arc<dyn orca_runtime::Runtime>,
            String,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = orca_runtime::Result<StreamSession>> + Send>,
        > + Send
        + 'static,
) -> Response {
    let upgrade = match upgrade_kind(&mut req).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let Some(uid) = pod_uid(&ctx, &ns, &pod) else {
        return error(StatusCode::NOT_FOUND, "pod does not exist".into());
    };
    // The kubelet finds only running containers.
    let running = match attempts(&ctx, &uid, &container).await {
        Ok(a) => a
            .into_iter()
            .next()
            .filter(|c| matches!(c.state, ContainerState::Running { .. })),
        Err(r) => return r,
    };
    let Some(c) = running else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("container not found ({container:?})"),
        );
    };
    match upgrade {
        Upgrade::WebSocket(ws) => {
            let ws = ws.protocols(channel::REMOTE_COMMAND.iter().copied());
            let protocol = ws
                .selected_protocol()
                .and_then(|p| p.to_str().ok())
                .unwrap_or("")
                .to_string();
            if protocol.is_empty() && ws_requested_protocols(&req) {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "requested protocol(s) are not supported; supports {:?}",
                        channel::REMOTE_COMMAND
                    ),
                );
            }
            let session = match open(ctx.runtime.clone(), c.id.clone()).await {
                Ok(s) => s,
                Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            };
            ws.on_upgrade(move |socket| {
                remotecommand::serve_websocket(socket, protocol, session, opts, attach)
            })
        }
        Upgrade::Spdy(offered) => {
            let protocol = match negotiate(&offered, remotecommand::SPDY_PROTOCOLS) {
                Ok(p) => p,
                Err(r) => return *r,
            };
            let session = match open(ctx.runtime.clone(), c.id.clone()).await {
                Ok(s) => s,
                Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            };
            let p = protocol.clone();
            spdy_upgrade(req, protocol, move |io| {
                remotecommand::serve_spdy(io, p, session, opts, attach)
            })
        }
    }
}

/// Whether the client named WebSocket sub-protocols at all.
fn ws_requested_protocols(req: &Request) -> bool {
    req.headers()
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|p| !p.trim().is_empty()))
}

async fn port_forward(
    State(ctx): State<Arc<Ctx>>,
    Path((ns, pod)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    mut req: Request,
) -> Response {
    let upgrade = match upgrade_kind(&mut req).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let Some(pod_uid) = pod_uid(&ctx, &ns, &pod) else {
        return error(StatusCode::NOT_FOUND, "pod does not exist".into());
    };
    let target = portforward::Target { ctx, pod_uid };
    match upgrade {
        Upgrade::Spdy(offered) => {
            let protocol = match negotiate(&offered, &[portforward::PROTOCOL]) {
                Ok(p) => p,
                Err(r) => return *r,
            };
            spdy_upgrade(req, protocol, move |io| portforward::serve_spdy(io, target))
        }
        Upgrade::WebSocket(ws) => {
            let mut ours = vec![portforward::TUNNEL_PROTOCOL];
            ours.extend(portforward::CHANNEL_PROTOCOLS);
            let ws = ws.protocols(ours);
            let protocol = ws
                .selected_protocol()
                .and_then(|p| p.to_str().ok())
                .unwrap_or("")
                .to_string();
            if protocol == portforward::TUNNEL_PROTOCOL {
                return ws.on_upgrade(move |socket| {
                    portforward::serve_spdy(portforward::tunnel(socket), target)
                });
            }
            if protocol.is_empty() && ws_requested_protocols(&req) {
                return error(
                    StatusCode::BAD_REQUEST,
                    "unable to upgrade: no supported port-forward protocol requested".into(),
                );
            }
            let q = parse_query(query.as_deref().unwrap_or(""));
            let values: Vec<&str> = q
                .iter()
                .filter(|(k, _)| k == "port" || k == "ports")
                .map(|(_, v)| v.as_str())
                .collect();
            let ports = match portforward::ports(&values) {
                Ok(p) => p,
                Err(msg) => return error(StatusCode::BAD_REQUEST, msg),
            };
            ws.on_upgrade(move |socket| {
                portforward::serve_channels(socket, protocol, target, ports)
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_keeps_repeated_commands() {
        let q = parse_query(
            "command=sh&command=-c&command=echo+hi%3B+tty&container=main&stdin=true&tty=1",
        );
        let cmds: Vec<&str> = q
            .iter()
            .filter(|(k, _)| k == "command")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(cmds, vec!["sh", "-c", "echo hi; tty"]);
        assert!(flag(&q, &["stdin"]));
        assert!(flag(&q, &["tty"]));
        assert!(!flag(&q, &["stdout"]));
        assert_eq!(value(&q, "container"), Some("main"));
        assert_eq!(
            parse_query("a=%zz&b=%4"),
            vec![("a".into(), "%zz".into()), ("b".into(), "%4".into())]
        );
    }

    #[test]
    fn spdy_protocol_negotiation() {
        let offered = offered_protocols(&{
            let mut h = HeaderMap::new();
            h.append(
                "x-stream-protocol-version",
                "v4.channel.k8s.io".parse().unwrap(),
            );
            h.append(
                "x-stream-protocol-version",
                "v3.channel.k8s.io, channel.k8s.io".parse().unwrap(),
            );
            h
        });
        assert_eq!(
            offered,
            ["v4.channel.k8s.io", "v3.channel.k8s.io", "channel.k8s.io"]
        );
        assert_eq!(
            negotiate(&offered[1..], remotecommand::SPDY_PROTOCOLS)
                .ok()
                .as_deref(),
            Some("v3.channel.k8s.io")
        );
        let refused = negotiate(&["v9".to_string()], &["portforward.k8s.io"])
            .err()
            .unwrap();
        assert_eq!(refused.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            negotiate(&[], &["x"]).err().unwrap().status(),
            StatusCode::BAD_REQUEST
        );
    }
}
