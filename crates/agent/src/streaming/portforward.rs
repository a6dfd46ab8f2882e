//! Port forwarding, the kubelet's three ways: SPDY/3.1 after an HTTP upgrade
//! (`portforward.k8s.io`), the same SPDY session tunnelled through a
//! WebSocket (`SPDY/3.1+portforward.k8s.io`, what kubectl v1.32 tries
//! first), and the WebSocket channel protocol (`v4.channel.k8s.io`: a data
//! and an error channel per port named in the query).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use orca_spdy::{Role, Session, Stream, StreamWriter};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::channel::{self, Codec, Incoming};
use crate::Ctx;

pub const PROTOCOL: &str = "portforward.k8s.io";
/// The WebSocket sub-protocol that tunnels a SPDY port-forward session.
pub const TUNNEL_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";
/// WebSocket channel protocols for port-forward, most preferred first.
pub const CHANNEL_PROTOCOLS: &[&str] = &[channel::V4, channel::V4_BASE64];

/// How long the second stream of a pair may take to arrive.
const STREAM_PAIR_TIMEOUT: Duration = Duration::from_secs(30);

/// Whom connections go to.
#[derive(Clone)]
pub struct Target {
    pub ctx: Arc<Ctx>,
    pub pod_uid: String,
}

impl Target {
    /// Dials `port` in the pod; the error as the kubelet words it.
    async fn dial(&self, port: u16) -> Result<tokio::net::TcpStream, String> {
        self.ctx
            .runtime
            .port_forward(&self.pod_uid, port)
            .await
            .map_err(|e| {
                // The kubelet names the pod by its sandbox and leaves the
                // uid empty when the runtime serves the stream.
                format!(
                    "error forwarding port {port} to pod {}, uid : {e}",
                    self.pod_uid
                )
            })
    }
}

/// Copies both ways between a client stream and a pod connection. The
/// client's end of input half-closes the pod connection; the pod's end of
/// output ends the forwarding.
async fn splice(
    tcp: tokio::net::TcpStream,
    mut from_client: mpsc::Receiver<Bytes>,
    to_client: impl Fn(Bytes) -> futures::future::BoxFuture<'static, bool> + Send + 'static,
) {
    // Bytes arrive already batched by the client; pass them on at once.
    let _ = tcp.set_nodelay(true);
    let (mut rd, mut wr) = tcp.into_split();
    let upstream = tokio::spawn(async move {
        while let Some(b) = from_client.recv().await {
            if wr.write_all(&b).await.is_err() {
                return;
            }
        }
        let _ = wr.shutdown().await;
    });
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match rd.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if !to_client(Bytes::copy_from_slice(&buf[..n])).await {
                    break;
                }
            }
        }
    }
    upstream.abort();
}

struct Pair {
    data: Option<Stream>,
    error: Option<Stream>,
}

/// Serves a SPDY port-forward session: the client opens a data and an error
/// stream per connection, tied by a `requestID` header.
pub async fn serve_spdy<T>(io: T, target: Target)
where
    T: AsyncRead + AsyncWrite + Send + 'static,
{
    let (spdy, mut streams) = Session::start(io, Role::Server);
    let mut pairs: HashMap<String, Pair> = HashMap::new();
    let (expire_tx, mut expire_rx) = mpsc::channel::<String>(16);
    loop {
        let stream = tokio::select! {
            s = streams.recv() => match s {
                Some(s) => s,
                None => break,
            },
            Some(id) = expire_rx.recv() => {
                if pairs.remove(&id).is_some() {
                    tracing::debug!(request = %id, "timed out waiting for the other stream of a port-forward pair");
                }
                continue;
            }
        };
        let port = stream.header("port").and_then(|p| p.parse::<u16>().ok());
        let kind = stream.header("streamtype").map(str::to_string);
        if port.is_none_or(|p| p == 0) || !matches!(kind.as_deref(), Some("data" | "error")) {
            // The kubelet refuses such streams before replying.
            let _ = stream
                .writer
                .reset(orca_spdy::frame::RST_PROTOCOL_ERROR)
                .await;
            continue;
        }
        let request = match stream.header("requestid") {
            Some(r) if !r.is_empty() => r.to_string(),
            // Old clients: the error stream, then its data stream two ids on.
            _ if kind.as_deref() == Some("error") => stream.id.to_string(),
            _ => stream.id.saturating_sub(2).to_string(),
        };
        if stream.writer.reply().await.is_err() {
            break;
        }
        let pair = pairs.entry(request.clone()).or_insert_with(|| {
            let tx = expire_tx.clone();
            let id = request.clone();
            tokio::spawn(async move {
                tokio::time::sleep(STREAM_PAIR_TIMEOUT).await;
                let _ = tx.send(id).await;
            });
            Pair {
                data: None,
                error: None,
            }
        });
        let slot = if kind.as_deref() == Some("data") {
            &mut pair.data
        } else {
            &mut pair.error
        };
        if slot.is_some() {
            let _ = stream
                .writer
                .reset(orca_spdy::frame::RST_PROTOCOL_ERROR)
                .await;
            continue;
        }
        *slot = Some(stream);
        if pair.data.is_some() && pair.error.is_some() {
            let pair = pairs.remove(&request).expect("the pair just completed");
            let (Some(data), Some(error)) = (pair.data, pair.error) else {
                continue;
            };
            tokio::spawn(forward_pair(target.clone(), port.unwrap_or(0), data, error));
        }
    }
    drop(spdy);
}

async fn forward_pair(target: Target, port: u16, data: Stream, error: Stream) {
    let tcp = match target.dial(port).await {
        Ok(t) => t,
        Err(msg) => {
            tracing::debug!("{msg}");
            let _ = error.writer.write(msg.as_bytes()).await;
            let _ = error.writer.finish().await;
            let _ = data.writer.finish().await;
            return;
        }
    };
    let writer: StreamWriter = data.writer.clone();
    splice(tcp, data.data, move |b| {
        let w = writer.clone();
        Box::pin(async move { w.write(&b).await.is_ok() })
    })
    .await;
    let _ = data.writer.finish().await;
    let _ = error.writer.finish().await;
}

/// Turns a WebSocket carrying binary messages into a byte stream, for the
/// SPDY session tunnelled inside it.
pub fn tunnel(socket: WebSocket) -> tokio::io::DuplexStream {
    let (ours, theirs) = tokio::io::duplex(256 * 1024);
    let (mut rd, mut wr) = tokio::io::split(ours);
    let (mut sink, mut messages) = socket.split();
    tokio::spawn(async move {
        while let Some(Ok(msg)) = messages.next().await {
            match msg {
                Message::Binary(b) if wr.write_all(&b).await.is_err() => break,
                Message::Close(_) => break,
                _ => {}
            }
        }
        let _ = wr.shutdown().await;
    });
    tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let msg = Message::Binary(Bytes::copy_from_slice(&buf[..n]));
                    if sink.send(msg).await.is_err() {
                        return;
                    }
                }
            }
        }
        let _ = sink
            .send(Message::Close(Some(axum::extract::ws::CloseFrame {
                code: axum::extract::ws::close_code::NORMAL,
                reason: "".into(),
            })))
            .await;
    });
    theirs
}

/// Ports from the query (`port=80&port=443` or `port=80,443`), as the
/// kubelet reads them for the WebSocket protocol.
pub fn ports(values: &[&str]) -> Result<Vec<u16>, String> {
    if values.is_empty() {
        return Err("query parameter \"port\" is required".into());
    }
    let mut ports = Vec::new();
    for v in values {
        if v.is_empty() {
            return Err("query parameter \"port\" cannot be empty".into());
        }
        for p in v.split(',') {
            let port: u16 = p
                .parse()
                .map_err(|e| format!("unable to parse {v:?} as a port: {e}"))?;
            if port < 1 {
                return Err(format!("port {v:?} must be > 0"));
            }
            ports.push(port);
        }
    }
    Ok(ports)
}

/// Serves the WebSocket channel protocol: channel 2i carries port i's data,
/// 2i+1 its errors; each channel first says its port (16 bits, little
/// endian). One connection per port for the session's life.
pub async fn serve_channels(socket: WebSocket, protocol: String, target: Target, ports: Vec<u16>) {
    let codec = Codec::for_protocol(&protocol);
    let (mut sink, mut messages) = socket.split();
    let to_ws = |m: channel::Message| match m {
        channel::Message::Binary(b) => Message::Binary(Bytes::from(b)),
        channel::Message::Text(t) => Message::Text(t.into()),
    };
    let (out_tx, mut out_rx) = mpsc::channel::<(u8, Bytes)>(32);
    let mut inputs = Vec::new();
    let mut forwards = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let (data_ch, err_ch) = ((2 * i) as u8, (2 * i + 1) as u8);
        for ch in [data_ch, err_ch] {
            if sink
                .send(to_ws(codec.encode(ch, &port.to_le_bytes())))
                .await
                .is_err()
            {
                return;
            }
        }
        let (in_tx, in_rx) = mpsc::channel::<Bytes>(16);
        inputs.push(in_tx);
        let (target, out, port) = (target.clone(), out_tx.clone(), *port);
        forwards.push(tokio::spawn(async move {
            match target.dial(port).await {
                Ok(tcp) => {
                    splice(tcp, in_rx, move |b| {
                        let out = out.clone();
                        Box::pin(async move { out.send((data_ch, b)).await.is_ok() })
                    })
                    .await
                }
                Err(msg) => {
                    tracing::debug!("{msg}");
                    let _ = out.send((err_ch, Bytes::from(msg))).await;
                }
            }
        }));
    }
    drop(out_tx);
    let reader = tokio::spawn(async move {
        while let Some(Ok(msg)) = messages.next().await {
            let data = match msg {
                Message::Binary(b) => b.to_vec(),
                Message::Text(t) => t.as_bytes().to_vec(),
                Message::Close(_) => break,
                _ => continue,
            };
            if let Some(Incoming::Data(ch, d)) = codec.decode(&data) {
                if ch % 2 == 0 {
                    if let Some(tx) = inputs.get(ch as usize / 2) {
                        let _ = tx.send(Bytes::from(d)).await;
                    }
                }
            }
        }
        // Dropping the inputs half-closes every pod connection.
    });
    while let Some((ch, b)) = out_rx.recv().await {
        if sink.send(to_ws(codec.encode(ch, &b))).await.is_err() {
            break;
        }
    }
    let _ = sink
        .send(Message::Close(Some(axum::extract::ws::CloseFrame {
            code: axum::extract::ws::close_code::NORMAL,
            reason: "".into(),
        })))
        .await;
    reader.abort();
    for f in forwards {
        f.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_from_the_query() {
        assert_eq!(ports(&["80"]), Ok(vec![80]));
        assert_eq!(ports(&["80,443", "8080"]), Ok(vec![80, 443, 8080]));
        assert_eq!(
            ports(&[]),
            Err("query parameter \"port\" is required".to_string())
        );
        assert!(ports(&["0"]).unwrap_err().contains("must be > 0"));
        assert!(ports(&["x"])
            .unwrap_err()
            .starts_with("unable to parse \"x\" as a port"));
    }
}
