//! The agent's HTTPS streaming server, which the API server proxies to:
//! `/containerLogs/{ns}/{pod}/{container}`, and `/exec/...` and
//! `/attach/...` over WebSocket with the `v5.channel.k8s.io` and
//! `v4.channel.k8s.io` channel protocols.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use orca_runtime::{ContainerState, ContainerStatus, StreamSession, TerminalSize};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::logs::{self, LogOptions};
use crate::{Ctx, Error};

pub const PROTOCOL_V5: &str = "v5.channel.k8s.io";
pub const PROTOCOL_V4: &str = "v4.channel.k8s.io";

pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const ERROR: u8 = 3;
pub const RESIZE: u8 = 4;
/// v5 only: `[255, channel]` closes that channel (stdin EOF).
pub const CLOSE: u8 = 255;

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
        .route("/containerLogs/{ns}/{pod}/{container}", get(container_logs))
        .route("/exec/{ns}/{pod}/{container}", any(exec))
        .route("/attach/{ns}/{pod}/{container}", any(attach))
        .with_state(ctx)
}

fn error(code: StatusCode, msg: String) -> Response {
    (code, msg).into_response()
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

/// Finds the container (its newest attempt, or the one before with
/// `previous`) of a pod bound here.
async fn find_container(
    ctx: &Ctx,
    ns: &str,
    pod: &str,
    container: &str,
    previous: bool,
) -> Result<ContainerStatus, Response> {
    let uid = ctx
        .pods
        .lock()
        .ok()
        .and_then(|m| m.get(&(ns.to_string(), pod.to_string())).cloned());
    let Some(uid) = uid else {
        return Err(error(
            StatusCode::NOT_FOUND,
            format!("pod {ns}/{pod} is not running on this node"),
        ));
    };
    let mut attempts: Vec<ContainerStatus> = ctx
        .runtime
        .list_containers(Some(&uid))
        .await
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .into_iter()
        .filter(|c| c.name == container)
        .collect();
    attempts.sort_by_key(|c| std::cmp::Reverse(c.attempt));
    let pick = if previous {
        attempts.get(1)
    } else {
        attempts.first()
    };
    pick.cloned().ok_or_else(|| {
        if previous {
            error(
                StatusCode::BAD_REQUEST,
                format!("previous terminated container {container:?} in pod {pod:?} not found"),
            )
        } else {
            error(
                StatusCode::BAD_REQUEST,
                format!(
                    "container {container:?} in pod {pod:?} is waiting to start: ContainerCreating"
                ),
            )
        }
    })
}

async fn container_logs(
    State(ctx): State<Arc<Ctx>>,
    Path((ns, pod, container)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
) -> Response {
    let q = parse_query(query.as_deref().unwrap_or(""));
    let previous = flag(&q, &["previous"]);
    let follow = flag(&q, &["follow"]) && !previous;
    let since = match (value(&q, "sinceTime"), value(&q, "sinceSeconds")) {
        (Some(t), _) => match chrono::DateTime::parse_from_rfc3339(t) {
            Ok(t) => Some(t.with_timezone(&chrono::Utc)),
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("sinceTime {t:?}: {e}")),
        },
        (None, Some(s)) => match s.parse::<i64>() {
            Ok(s) => Some(chrono::Utc::now() - chrono::Duration::seconds(s)),
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("sinceSeconds {s:?}: {e}")),
        },
        _ => None,
    };
    let parse_int = |name: &str| -> Result<Option<i64>, String> {
        value(&q, name)
            .map(|v| v.parse::<i64>().map_err(|e| format!("{name} {v:?}: {e}")))
            .transpose()
    };
    let opts = LogOptions {
        tail_lines: match parse_int("tailLines") {
            Ok(v) => v,
            Err(msg) => return error(StatusCode::BAD_REQUEST, msg),
        },
        limit_bytes: match parse_int("limitBytes") {
            Ok(v) => v,
            Err(msg) => return error(StatusCode::BAD_REQUEST, msg),
        },
        since,
        timestamps: flag(&q, &["timestamps"]),
    };
    let c = match find_container(&ctx, &ns, &pod, &container, previous).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let content = match tokio::fs::read(&c.log_path).await {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("reading the log of container {container:?}: {e}"),
            )
        }
    };
    let complete = content
        .iter()
        .rposition(|b| *b == b'\n')
        .map(|i| i + 1)
        .unwrap_or(0);
    let head = logs::render(&String::from_utf8_lossy(&content[..complete]), &opts);
    if !follow {
        return Response::builder()
            .header("Content-Type", "text/plain")
            .body(Body::from(head))
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response());
    }
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    tokio::spawn(follow_log(ctx, c, complete as u64, head, opts, tx));
    Response::builder()
        .header("Content-Type", "text/plain")
        .body(Body::from_stream(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        ))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// Streams a log as it grows, until the container stops or the client leaves.
async fn follow_log(
    ctx: Arc<Ctx>,
    c: ContainerStatus,
    offset: u64,
    head: Vec<u8>,
    opts: LogOptions,
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
) {
    let mut sent = head.len() as i64;
    if tx.send(Ok(Bytes::from(head))).await.is_err() {
        return;
    }
    let budget_left = |sent: i64| opts.limit_bytes.map(|l| l - sent);
    if budget_left(sent).is_some_and(|b| b <= 0) {
        return;
    }
    let mut follower = logs::Follower::default();
    let mut pos = offset;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let mut got_any = false;
        if let Ok(mut f) = tokio::fs::File::open(&c.log_path).await {
            if f.seek(std::io::SeekFrom::Start(pos)).await.is_ok() {
                loop {
                    let n = match f.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    got_any = true;
                    pos += n as u64;
                    let mut out = follower.feed(&buf[..n], &opts);
                    if let Some(left) = budget_left(sent) {
                        logs::limit(&mut out, Some(left));
                    }
                    sent += out.len() as i64;
                    if !out.is_empty() && tx.send(Ok(Bytes::from(out))).await.is_err() {
                        return;
                    }
                    if budget_left(sent).is_some_and(|b| b <= 0) {
                        return;
                    }
                }
            }
        }
        if !got_any {
            let running = matches!(
                ctx.runtime.container_status(&c.id).await.map(|s| s.state),
                Ok(ContainerState::Running { .. }) | Ok(ContainerState::Created)
            );
            if !running {
                return;
            }
            if tx.is_closed() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    V4,
    V5,
}

async fn exec(
    State(ctx): State<Arc<Ctx>>,
    Path((ns, pod, container)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
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
    let tty = flag(&q, &["tty"]);
    let stdin = flag(&q, &["stdin", "input"]);
    upgrade(ctx, ns, pod, container, ws, move |rt, id| {
        Box::pin(async move {
            rt.exec(
                &id,
                orca_runtime::ExecRequest {
                    command,
                    tty,
                    stdin,
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
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let q = parse_query(query.as_deref().unwrap_or(""));
    let tty = flag(&q, &["tty"]);
    let stdin = flag(&q, &["stdin", "input"]);
    upgrade(ctx, ns, pod, container, ws, move |rt, id| {
        Box::pin(async move { rt.attach(&id, stdin, tty).await })
    })
    .await
}

async fn upgrade(
    ctx: Arc<Ctx>,
    ns: String,
    pod: String,
    container: String,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    open: impl FnOnce(
            Arc<dyn orca_runtime::Runtime>,
            String,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = orca_runtime::Result<StreamSession>> + Send>,
        > + Send
        + 'static,
) -> Response {
    let Ok(ws) = ws else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("exec and attach need a WebSocket upgrade with {PROTOCOL_V5} or {PROTOCOL_V4}"),
        );
    };
    let c = match find_container(&ctx, &ns, &pod, &container, false).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    if !matches!(c.state, ContainerState::Running { .. }) {
        return error(
            StatusCode::BAD_REQUEST,
            format!("container {container:?} in pod {pod:?} is not running"),
        );
    }
    let session = match open(ctx.runtime.clone(), c.id.clone()).await {
        Ok(s) => s,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let ws = ws.protocols([PROTOCOL_V5, PROTOCOL_V4]);
    let protocol = match ws.selected_protocol().and_then(|p| p.to_str().ok()) {
        Some(PROTOCOL_V5) => Protocol::V5,
        Some(PROTOCOL_V4) => Protocol::V4,
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("no supported channel protocol requested; this node speaks {PROTOCOL_V5} and {PROTOCOL_V4}"),
            )
        }
    };
    ws.on_upgrade(move |socket| run_session(socket, session, protocol))
}

/// The error-channel Status for an exit code (v4 and v5 semantics).
pub fn exit_status(code: i32) -> serde_json::Value {
    if code == 0 {
        serde_json::json!({"metadata": {}, "status": "Success"})
    } else {
        serde_json::json!({
            "metadata": {},
            "status": "Failure",
            "message": format!("command terminated with non-zero exit code: error executing command, exit code {code}"),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]}
        })
    }
}

/// A frame on a channel: the channel byte, then the data.
pub fn frame(channel: u8, data: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(data.len() + 1);
    v.push(channel);
    v.extend_from_slice(data);
    v
}

/// What an incoming frame asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    Stdin(Vec<u8>),
    Resize(TerminalSize),
    CloseStdin,
    Ignore,
}

pub fn parse_incoming(data: &[u8], protocol: Protocol) -> Incoming {
    let Some((&channel, rest)) = data.split_first() else {
        return Incoming::Ignore;
    };
    match channel {
        STDIN => Incoming::Stdin(rest.to_vec()),
        RESIZE => {
            #[derive(serde::Deserialize)]
            struct Size {
                #[serde(rename = "Width")]
                width: u16,
                #[serde(rename = "Height")]
                height: u16,
            }
            match serde_json::from_slice::<Size>(rest) {
                Ok(s) => Incoming::Resize(TerminalSize {
                    width: s.width,
                    height: s.height,
                }),
                Err(_) => Incoming::Ignore,
            }
        }
        CLOSE if protocol == Protocol::V5 && rest.first() == Some(&STDIN) => Incoming::CloseStdin,
        _ => Incoming::Ignore,
    }
}

async fn pump(mut reader: orca_runtime::BoxedReader, channel: u8, tx: mpsc::Sender<Vec<u8>>) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if tx.send(frame(channel, &buf[..n])).await.is_err() {
                    return;
                }
            }
        }
    }
}

async fn run_session(socket: WebSocket, session: StreamSession, protocol: Protocol) {
    let (mut sink, mut incoming) = socket.split();
    let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(32);
    let mut readers = Vec::new();
    if let Some(r) = session.stdout {
        readers.push(tokio::spawn(pump(r, STDOUT, out_tx.clone())));
    }
    if let Some(r) = session.stderr {
        readers.push(tokio::spawn(pump(r, STDERR, out_tx.clone())));
    }
    let mut stdin = session.stdin;
    let resize = session.resize;
    // Client -> process.
    let input = tokio::spawn(async move {
        while let Some(Ok(msg)) = incoming.next().await {
            let data = match msg {
                Message::Binary(b) => b.to_vec(),
                Message::Text(t) => t.as_bytes().to_vec(),
                Message::Close(_) => break,
                _ => continue,
            };
            match parse_incoming(&data, protocol) {
                Incoming::Stdin(bytes) => {
                    if let Some(w) = stdin.as_mut() {
                        if w.write_all(&bytes).await.is_err() || w.flush().await.is_err() {
                            stdin = None;
                        }
                    }
                }
                Incoming::Resize(size) => {
                    if let Some(r) = &resize {
                        let _ = r.send(size).await;
                    }
                }
                Incoming::CloseStdin => {
                    if let Some(mut w) = stdin.take() {
                        let _ = w.shutdown().await;
                    }
                }
                Incoming::Ignore => {}
            }
        }
    });
    // Process -> client, then the exit status on the error channel.
    let exit = session.exit;
    let finisher = tokio::spawn(async move {
        for r in readers {
            let _ = r.await;
        }
        let code = exit.await.unwrap_or(-1);
        let status = serde_json::to_vec(&exit_status(code)).unwrap_or_default();
        let _ = out_tx.send(frame(ERROR, &status)).await;
    });
    while let Some(frame) = out_rx.recv().await {
        if sink
            .send(Message::Binary(Bytes::from(frame)))
            .await
            .is_err()
        {
            break;
        }
    }
    // A normal closure (1000): client-go treats any other close code, even
    // "no status" (1005), as a failed stream.
    let close = axum::extract::ws::CloseFrame {
        code: axum::extract::ws::close_code::NORMAL,
        reason: "".into(),
    };
    let _ = sink.send(Message::Close(Some(close))).await;
    input.abort();
    finisher.abort();
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
    fn channel_frames() {
        assert_eq!(frame(STDOUT, b"hi"), vec![1, b'h', b'i']);
        assert_eq!(
            parse_incoming(&[0, b'x'], Protocol::V5),
            Incoming::Stdin(vec![b'x'])
        );
        assert_eq!(
            parse_incoming(b"\x04{\"Width\":80,\"Height\":24}", Protocol::V4),
            Incoming::Resize(TerminalSize {
                width: 80,
                height: 24
            })
        );
        assert_eq!(
            parse_incoming(&[255, 0], Protocol::V5),
            Incoming::CloseStdin
        );
        assert_eq!(parse_incoming(&[255, 0], Protocol::V4), Incoming::Ignore);
        assert_eq!(parse_incoming(&[], Protocol::V5), Incoming::Ignore);
    }

    #[test]
    fn exit_status_carries_the_code() {
        assert_eq!(exit_status(0)["status"], "Success");
        let s = exit_status(3);
        assert_eq!(s["status"], "Failure");
        assert_eq!(s["reason"], "NonZeroExitCode");
        assert_eq!(s["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(s["details"]["causes"][0]["message"], "3");
    }
}
