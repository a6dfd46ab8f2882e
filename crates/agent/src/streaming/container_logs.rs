//! `/containerLogs/{ns}/{pod}/{container}`: a container's log as
//! `kubectl logs` asks for it, plain or over a WebSocket, with the kubelet's
//! errors for containers that have no log yet.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocketUpgrade};
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use orca_runtime::{ContainerState, ContainerStatus};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc;

use super::{error, flag, parse_query, value};
use crate::logs::{self, LogOptions};
use crate::Ctx;

/// The attempt whose log is asked for, or the kubelet's error: 404 for a
/// pod not on this node, 400 for a container that has no log to show.
async fn log_container(
    ctx: &Ctx,
    ns: &str,
    pod: &str,
    container: &str,
    previous: bool,
) -> Result<ContainerStatus, Response> {
    let Some(uid) = super::pod_uid(ctx, ns, pod) else {
        return Err(error(
            StatusCode::NOT_FOUND,
            format!("pod {pod:?} does not exist"),
        ));
    };
    let mut attempts = super::attempts(ctx, &uid, container).await?;
    let pick = if previous {
        attempts.drain(..).nth(1)
    } else {
        attempts.drain(..).next()
    };
    if let Some(c) = pick {
        return Ok(c);
    }
    if previous {
        return Err(error(
            StatusCode::BAD_REQUEST,
            format!("previous terminated container {container:?} in pod {pod:?} not found"),
        ));
    }
    // No attempt yet: say why from the status this agent reported.
    let reported = kube::Api::<Pod>::namespaced(ctx.client.clone(), ns)
        .get(pod)
        .await
        .ok();
    Err(error(
        StatusCode::BAD_REQUEST,
        waiting_message(reported.as_ref(), pod, container),
    ))
}

/// The kubelet's words for a container that has not run yet.
fn waiting_message(pod: Option<&Pod>, name: &str, container: &str) -> String {
    let status = pod.and_then(|p| p.status.as_ref()).and_then(|s| {
        [
            &s.container_statuses,
            &s.init_container_statuses,
            &s.ephemeral_container_statuses,
        ]
        .into_iter()
        .flatten()
        .flatten()
        .find(|c| c.name == container)
    });
    let Some(status) = status else {
        return format!("container {container:?} in pod {name:?} is not available");
    };
    let waiting = status.state.as_ref().and_then(|s| s.waiting.as_ref());
    match waiting.and_then(|w| w.reason.as_deref()) {
        Some("ErrImagePull") => {
            format!("container {container:?} in pod {name:?} is waiting to start: image can't be pulled")
        }
        Some("ImagePullBackOff") => format!(
            "container {container:?} in pod {name:?} is waiting to start: trying and failing to pull image"
        ),
        Some(reason) => {
            format!("container {container:?} in pod {name:?} is waiting to start: {reason}")
        }
        None if waiting.is_some() => {
            format!("container {container:?} in pod {name:?} is waiting to start: ")
        }
        None => format!("container {container:?} in pod {name:?} is waiting to start - no logs yet"),
    }
}

pub(super) async fn container_logs(
    State(ctx): State<Arc<Ctx>>,
    Path((ns, pod, container)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
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
    let c = match log_container(&ctx, &ns, &pod, &container, previous).await {
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
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    if follow {
        tokio::spawn(follow_log(ctx, c, complete as u64, head, opts, tx));
    } else {
        let _ = tx.try_send(Ok(Bytes::from(head)));
    }
    if let Ok(ws) = ws {
        return websocket(ws, rx);
    }
    Response::builder()
        .header("Content-Type", "text/plain")
        .body(Body::from_stream(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        ))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// Logs over a WebSocket, as the API server serves any stream to one: each
/// chunk one message, binary (`binary.k8s.io`, or no protocol) or base64
/// text (`base64.binary.k8s.io`).
fn websocket(
    ws: WebSocketUpgrade,
    mut rx: mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> Response {
    let ws = ws.protocols(["binary.k8s.io", "base64.binary.k8s.io"]);
    let base64 = ws
        .selected_protocol()
        .is_some_and(|p| p.as_bytes() == b"base64.binary.k8s.io");
    ws.on_upgrade(move |socket| async move {
        let (mut sink, _) = socket.split();
        while let Some(Ok(chunk)) = rx.recv().await {
            let msg = if base64 {
                Message::Text(
                    base64::engine::general_purpose::STANDARD
                        .encode(&chunk)
                        .into(),
                )
            } else {
                Message::Binary(chunk)
            };
            if sink.send(msg).await.is_err() {
                return;
            }
        }
        let _ = sink
            .send(Message::Close(Some(axum::extract::ws::CloseFrame {
                code: axum::extract::ws::close_code::NORMAL,
                reason: "".into(),
            })))
            .await;
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(state: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web"},
            "status": {"containerStatuses": [{"name": "web", "image": "x", "imageID": "", "ready": false, "restartCount": 0, "state": state}]}
        }))
        .unwrap()
    }

    #[test]
    fn waiting_reasons_in_the_kubelets_words() {
        let msg = |state| waiting_message(Some(&pod(state)), "web", "web");
        assert_eq!(
            msg(serde_json::json!({"waiting": {"reason": "ImagePullBackOff"}})),
            "container \"web\" in pod \"web\" is waiting to start: trying and failing to pull image"
        );
        assert_eq!(
            msg(serde_json::json!({"waiting": {"reason": "ErrImagePull"}})),
            "container \"web\" in pod \"web\" is waiting to start: image can't be pulled"
        );
        assert_eq!(
            msg(serde_json::json!({"waiting": {"reason": "ContainerCreating"}})),
            "container \"web\" in pod \"web\" is waiting to start: ContainerCreating"
        );
        assert_eq!(
            msg(serde_json::json!({})),
            "container \"web\" in pod \"web\" is waiting to start - no logs yet"
        );
        assert_eq!(
            waiting_message(None, "web", "web"),
            "container \"web\" in pod \"web\" is not available"
        );
    }
}
