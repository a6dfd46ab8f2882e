//! exec and attach: a process's streams relayed to the client over a
//! WebSocket channel protocol ([`super::channel`]) or SPDY/3.1, the
//! kubelet's `remotecommand` protocols.

use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use orca_runtime::{StreamSession, TerminalSize};
use orca_spdy::{Role, Session};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::channel::{self, Codec, Incoming};

/// SPDY sub-protocols exec and attach accept (`X-Stream-Protocol-Version`).
pub const SPDY_PROTOCOLS: &[&str] = &[
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
];

/// How long a SPDY client has to open the streams it asked for.
const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);
/// How long we wait for a SPDY client to hang up after the end.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(10);

/// Which streams the client asked for.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

/// What ends the session on the error channel.
#[derive(Clone, Copy, Debug)]
pub enum Ending {
    /// exec: the command's exit code.
    Exit(i32),
    /// attach: the container's output ended (Kubernetes reports success).
    Detached,
}

impl Ending {
    /// The Status v4 and v5 clients read.
    pub fn status(self) -> serde_json::Value {
        match self {
            Ending::Exit(code) if code != 0 => serde_json::json!({
                "metadata": {},
                "status": "Failure",
                "message": format!("command terminated with non-zero exit code: error executing command, exit code {code}"),
                "reason": "NonZeroExitCode",
                "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]}
            }),
            _ => serde_json::json!({"metadata": {}, "status": "Success"}),
        }
    }

    /// What the older protocols send: the failure's message, nothing on
    /// success.
    pub fn text(self) -> Option<String> {
        let s = self.status();
        (s["status"] == "Failure").then(|| s["message"].as_str().unwrap_or("").to_string())
    }
}

enum Input {
    Stdin(Bytes),
    CloseStdin,
    Resize(TerminalSize),
}

enum Output {
    Stdout(Bytes),
    Stderr(Bytes),
}

/// A terminal size as clients send it: `{"Width":80,"Height":24}`.
#[derive(serde::Deserialize)]
struct Size {
    #[serde(rename = "Width")]
    width: u16,
    #[serde(rename = "Height")]
    height: u16,
}

impl From<Size> for TerminalSize {
    fn from(s: Size) -> Self {
        TerminalSize {
            width: s.width,
            height: s.height,
        }
    }
}

fn parse_size(data: &[u8]) -> Option<TerminalSize> {
    serde_json::from_slice::<Size>(data).ok().map(Into::into)
}

async fn pump(
    mut reader: orca_runtime::BoxedReader,
    wrap: fn(Bytes) -> Output,
    tx: Option<mpsc::Sender<Output>>,
) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                // Output the client did not ask for is read and dropped.
                if let Some(tx) = &tx {
                    if tx
                        .send(wrap(Bytes::copy_from_slice(&buf[..n])))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
    }
}

/// Feeds client input to the process and its output to `output` until the
/// output ends; returns the exit code.
async fn relay(
    session: StreamSession,
    opts: Options,
    mut input: mpsc::Receiver<Input>,
    output: mpsc::Sender<Output>,
) -> i32 {
    let mut readers = Vec::new();
    if let Some(r) = session.stdout {
        let tx = opts.stdout.then(|| output.clone());
        readers.push(tokio::spawn(pump(r, Output::Stdout, tx)));
    }
    if let Some(r) = session.stderr {
        let tx = opts.stderr.then(|| output.clone());
        readers.push(tokio::spawn(pump(r, Output::Stderr, tx)));
    }
    drop(output);
    let mut stdin = session.stdin;
    let resize = session.resize;
    let feeder = tokio::spawn(async move {
        while let Some(i) = input.recv().await {
            match i {
                Input::Stdin(bytes) => {
                    if let Some(w) = stdin.as_mut() {
                        if w.write_all(&bytes).await.is_err() || w.flush().await.is_err() {
                            stdin = None;
                        }
                    }
                }
                Input::Resize(size) => {
                    if let Some(r) = &resize {
                        let _ = r.send(size).await;
                    }
                }
                Input::CloseStdin => {
                    if let Some(mut w) = stdin.take() {
                        let _ = w.shutdown().await;
                    }
                }
            }
        }
        // The client is gone: its input has ended.
        if let Some(mut w) = stdin.take() {
            let _ = w.shutdown().await;
        }
    });
    for r in readers {
        let _ = r.await;
    }
    let code = session.exit.await.unwrap_or(-1);
    feeder.abort();
    code
}

/// Serves a session over a WebSocket channel protocol (`protocol` is the
/// negotiated one, empty when the client named none).
pub async fn serve_websocket(
    socket: WebSocket,
    protocol: String,
    session: StreamSession,
    opts: Options,
    attach: bool,
) {
    let codec = Codec::for_protocol(&protocol);
    let (mut sink, mut incoming) = socket.split();
    let send = |m: channel::Message| match m {
        channel::Message::Binary(b) => Message::Binary(Bytes::from(b)),
        channel::Message::Text(t) => Message::Text(t.into()),
    };
    // An empty first frame tells the client the streams are open, as the
    // kubelet does.
    let first = if opts.stdout {
        channel::STDOUT
    } else if opts.stderr {
        channel::STDERR
    } else {
        channel::ERROR
    };
    if sink.send(send(codec.encode(first, &[]))).await.is_err() {
        return;
    }
    let (in_tx, in_rx) = mpsc::channel(32);
    let reader = tokio::spawn(async move {
        while let Some(Ok(msg)) = incoming.next().await {
            let data = match msg {
                Message::Binary(b) => b.to_vec(),
                Message::Text(t) => t.as_bytes().to_vec(),
                Message::Close(_) => break,
                _ => continue,
            };
            let event = match codec.decode(&data) {
                Some(Incoming::Data(channel::STDIN, d)) if opts.stdin => {
                    Input::Stdin(Bytes::from(d))
                }
                Some(Incoming::Data(channel::RESIZE, d)) => match parse_size(&d) {
                    Some(size) => Input::Resize(size),
                    None => continue,
                },
                Some(Incoming::Close(channel::STDIN)) => Input::CloseStdin,
                _ => continue,
            };
            if in_tx.send(event).await.is_err() {
                break;
            }
        }
    });
    let (out_tx, mut out_rx) = mpsc::channel(32);
    let mut relay = tokio::spawn(relay(session, opts, in_rx, out_tx));
    let mut client_gone = false;
    while let Some(out) = out_rx.recv().await {
        let m = match out {
            Output::Stdout(b) => codec.encode(channel::STDOUT, &b),
            Output::Stderr(b) => codec.encode(channel::STDERR, &b),
        };
        if sink.send(send(m)).await.is_err() {
            client_gone = true;
            break;
        }
    }
    if client_gone {
        relay.abort();
        reader.abort();
        return;
    }
    let code = (&mut relay).await.unwrap_or(-1);
    let ending = if attach {
        Ending::Detached
    } else {
        Ending::Exit(code)
    };
    let status = if codec.json_status {
        Some(ending.status().to_string())
    } else {
        ending.text()
    };
    if let Some(s) = status {
        let _ = sink
            .send(send(codec.encode(channel::ERROR, s.as_bytes())))
            .await;
    }
    // A normal closure (1000): client-go treats any other close code, even
    // "no status" (1005), as a failed stream.
    let _ = sink
        .send(Message::Close(Some(axum::extract::ws::CloseFrame {
            code: axum::extract::ws::close_code::NORMAL,
            reason: "".into(),
        })))
        .await;
    reader.abort();
}

/// Serves a session over SPDY/3.1 after the HTTP upgrade: the client opens
/// one stream per channel, named by its `streamType` header.
pub async fn serve_spdy<T>(
    io: T,
    protocol: String,
    session: StreamSession,
    opts: Options,
    attach: bool,
) where
    T: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut spdy, mut streams) = Session::start(io, Role::Server);
    let resizable = matches!(protocol.as_str(), "v4.channel.k8s.io" | "v3.channel.k8s.io");
    let expected = 1
        + usize::from(opts.stdin)
        + usize::from(opts.stdout)
        + usize::from(opts.stderr)
        + usize::from(opts.tty && resizable);
    let (mut error, mut stdin, mut stdout, mut stderr, mut resize) = (None, None, None, None, None);
    let deadline = tokio::time::sleep(STREAM_CREATION_TIMEOUT);
    tokio::pin!(deadline);
    let mut received = 0;
    while received < expected {
        let stream = tokio::select! {
            s = streams.recv() => match s {
                Some(s) => s,
                None => return,
            },
            _ = &mut deadline => {
                tracing::debug!("timed out waiting for the client to create streams");
                return;
            }
        };
        let slot = match stream.header("streamtype") {
            Some("error") => &mut error,
            Some("stdin") => &mut stdin,
            Some("stdout") => &mut stdout,
            Some("stderr") => &mut stderr,
            Some("resize") => &mut resize,
            other => {
                tracing::debug!("unexpected stream type {other:?}");
                let _ = stream
                    .writer
                    .reset(orca_spdy::frame::RST_PROTOCOL_ERROR)
                    .await;
                continue;
            }
        };
        if stream.writer.reply().await.is_err() {
            return;
        }
        *slot = Some(stream);
        received += 1;
    }

    let (in_tx, in_rx) = mpsc::channel(32);
    let mut feeders = Vec::new();
    if let Some(mut s) = stdin {
        let tx = in_tx.clone();
        feeders.push(tokio::spawn(async move {
            while let Some(b) = s.data.recv().await {
                if tx.send(Input::Stdin(b)).await.is_err() {
                    return;
                }
            }
            let _ = tx.send(Input::CloseStdin).await;
        }));
    }
    if let Some(mut s) = resize {
        let tx = in_tx.clone();
        feeders.push(tokio::spawn(async move {
            // A stream of JSON objects, not aligned with data frames.
            let mut buf = Vec::new();
            while let Some(b) = s.data.recv().await {
                buf.extend_from_slice(&b);
                let mut sizes =
                    serde_json::Deserializer::from_slice(&buf).into_iter::<serde_json::Value>();
                let mut used = 0;
                while let Some(Ok(v)) = sizes.next() {
                    used = sizes.byte_offset();
                    if let Ok(size) = serde_json::from_value::<Size>(v) {
                        if tx.send(Input::Resize(size.into())).await.is_err() {
                            return;
                        }
                    }
                }
                buf.drain(..used);
            }
        }));
    }
    drop(in_tx);
    let (out_tx, mut out_rx) = mpsc::channel(32);
    let relay = tokio::spawn(relay(session, opts, in_rx, out_tx));
    let (out_w, err_w) = (
        stdout.as_ref().map(|s| s.writer.clone()),
        stderr.as_ref().map(|s| s.writer.clone()),
    );
    while let Some(out) = out_rx.recv().await {
        let (w, b) = match out {
            Output::Stdout(b) => (&out_w, b),
            Output::Stderr(b) => (&err_w, b),
        };
        if let Some(w) = w {
            if w.write(&b).await.is_err() {
                break;
            }
        }
    }
    let code = relay.await.unwrap_or(-1);
    for w in [&out_w, &err_w].into_iter().flatten() {
        let _ = w.finish().await;
    }
    if let Some(e) = &error {
        let ending = if attach {
            Ending::Detached
        } else {
            Ending::Exit(code)
        };
        let status = if protocol == "v4.channel.k8s.io" {
            Some(ending.status().to_string())
        } else {
            ending.text()
        };
        if let Some(s) = status {
            let _ = e.writer.write(s.as_bytes()).await;
        }
        let _ = e.writer.finish().await;
    }
    spdy.close().await;
    let _ = tokio::time::timeout(GOODBYE_TIMEOUT, spdy.closed()).await;
    for f in feeders {
        f.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endings_as_each_protocol_words_them() {
        let s = Ending::Exit(3).status();
        assert_eq!(s["status"], "Failure");
        assert_eq!(s["reason"], "NonZeroExitCode");
        assert_eq!(s["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(s["details"]["causes"][0]["message"], "3");
        assert_eq!(
            Ending::Exit(3).text().as_deref(),
            Some(
                "command terminated with non-zero exit code: error executing command, exit code 3"
            )
        );
        assert_eq!(Ending::Exit(0).status()["status"], "Success");
        assert_eq!(Ending::Exit(0).text(), None);
        // attach ends in success whatever the container's exit code.
        assert_eq!(Ending::Detached.status()["status"], "Success");
    }

    #[test]
    fn terminal_sizes() {
        assert_eq!(
            parse_size(br#"{"Width":80,"Height":24}"#),
            Some(TerminalSize {
                width: 80,
                height: 24
            })
        );
        assert_eq!(parse_size(b"{}"), None);
    }
}
