//! A SPDY/3.1 session over any byte stream: one task reads frames and routes
//! stream data, one task writes the frames every stream hands it (so header
//! compression sees them in wire order).
//!
//! Flow control: received data is acknowledged with WINDOW_UPDATE frames,
//! but the peer's windows are not enforced on what we send, because Go's
//! spdystream (kubectl, client-go, the kubelet) never sends WINDOW_UPDATE
//! and would stall after the first 64 KiB.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use crate::frame::{Decoder, Encoder, Frame, Headers, FLAG_FIN, RST_CANCEL, RST_PROTOCOL_ERROR};

/// Which end of the connection this is: clients open odd-numbered streams
/// and pings, servers even ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Client,
    Server,
}

/// Data frames carry at most this much of a write.
const CHUNK: usize = 32 * 1024;
/// Received bytes acknowledged per WINDOW_UPDATE.
const WINDOW_ACK: u32 = 32 * 1024;

enum Out {
    Frame(Frame),
    /// Flush, then close the write side.
    Shutdown,
}

struct Shared {
    /// Stream id -> where its data goes; dropped on FIN, reset or the end.
    routes: Mutex<HashMap<u32, mpsc::Sender<Bytes>>>,
    /// Streams we opened, waiting for SYN_REPLY (true) or RST_STREAM (false).
    replies: Mutex<HashMap<u32, oneshot::Sender<bool>>>,
    last_received: AtomicU32,
}

/// A running session. Dropping it (and every [`StreamWriter`]) closes the
/// connection.
pub struct Session {
    out: mpsc::Sender<Out>,
    shared: Arc<Shared>,
    next_id: AtomicU32,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// One stream: its headers, the data the peer sends (until its FIN) and a
/// handle to send ours.
pub struct Stream {
    pub id: u32,
    pub headers: Headers,
    pub data: mpsc::Receiver<Bytes>,
    pub writer: StreamWriter,
}

impl Stream {
    /// The first value of a header (names are lowercase on the wire).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

pub fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.split('\0').next().unwrap_or(""))
}

/// Sends on one stream; cheap to clone.
#[derive(Clone)]
pub struct StreamWriter {
    id: u32,
    out: mpsc::Sender<Out>,
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the SPDY session is closed")
}

impl StreamWriter {
    async fn send(&self, frame: Frame) -> io::Result<()> {
        self.out.send(Out::Frame(frame)).await.map_err(|_| closed())
    }

    /// Accepts a stream the peer opened (SYN_REPLY).
    pub async fn reply(&self) -> io::Result<()> {
        self.send(Frame::SynReply {
            stream_id: self.id,
            flags: 0,
            headers: Vec::new(),
        })
        .await
    }

    pub async fn write(&self, data: &[u8]) -> io::Result<()> {
        for chunk in data.chunks(CHUNK) {
            self.send(Frame::Data {
                stream_id: self.id,
                flags: 0,
                data: Bytes::copy_from_slice(chunk),
            })
            .await?;
        }
        Ok(())
    }

    /// Half-closes: we send no more on this stream (an empty DATA with FIN).
    pub async fn finish(&self) -> io::Result<()> {
        self.send(Frame::Data {
            stream_id: self.id,
            flags: FLAG_FIN,
            data: Bytes::new(),
        })
        .await
    }

    /// Aborts the stream both ways (RST_STREAM), e.g. to refuse it.
    pub async fn reset(&self, status: u32) -> io::Result<()> {
        self.send(Frame::RstStream {
            stream_id: self.id,
            status,
        })
        .await
    }
}

impl Session {
    /// Starts the session's reader and writer tasks on `io`. Streams the
    /// peer opens arrive on the returned receiver, unanswered: reply or
    /// reset each. It ends when the peer goes away or the connection closes.
    pub fn start<T>(io: T, role: Role) -> (Session, mpsc::Receiver<Stream>)
    where
        T: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (rd, wr) = tokio::io::split(io);
        let (out_tx, out_rx) = mpsc::channel(64);
        let (incoming_tx, incoming_rx) = mpsc::channel(16);
        let shared = Arc::new(Shared {
            routes: Mutex::new(HashMap::new()),
            replies: Mutex::new(HashMap::new()),
            last_received: AtomicU32::new(0),
        });
        tokio::spawn(write_loop(wr, out_rx));
        let reader = tokio::spawn(read_loop(
            rd,
            role,
            shared.clone(),
            out_tx.clone(),
            incoming_tx,
        ));
        let session = Session {
            out: out_tx,
            shared,
            next_id: AtomicU32::new(if role == Role::Client { 1 } else { 2 }),
            reader,
        };
        (session, incoming_rx)
    }

    /// Opens a stream and waits for the peer's reply.
    pub async fn open(&self, headers: Headers, fin: bool) -> io::Result<Stream> {
        let id = self.next_id.fetch_add(2, Ordering::Relaxed);
        let (data_tx, data_rx) = mpsc::channel(16);
        let (reply_tx, reply_rx) = oneshot::channel();
        self.shared.replies.lock().unwrap().insert(id, reply_tx);
        self.shared.routes.lock().unwrap().insert(id, data_tx);
        let writer = StreamWriter {
            id,
            out: self.out.clone(),
        };
        writer
            .send(Frame::SynStream {
                stream_id: id,
                associated_to: 0,
                priority: 0,
                flags: if fin { FLAG_FIN } else { 0 },
                headers: headers.clone(),
            })
            .await?;
        match reply_rx.await {
            Ok(true) => Ok(Stream {
                id,
                headers,
                data: data_rx,
                writer,
            }),
            Ok(false) => Err(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                format!("the peer reset stream {id}"),
            )),
            Err(_) => Err(closed()),
        }
    }

    /// Says goodbye (GOAWAY naming the last stream the peer opened), then
    /// flushes and closes our side once every frame queued before is out.
    pub async fn close(&self) {
        let last = self.shared.last_received.load(Ordering::Relaxed);
        let _ = self
            .out
            .send(Out::Frame(Frame::GoAway {
                last_good_stream_id: last,
                status: 0,
            }))
            .await;
        let _ = self.out.send(Out::Shutdown).await;
    }

    /// Resolves when the peer has gone away or closed the connection.
    pub async fn closed(&mut self) {
        let _ = (&mut self.reader).await;
    }
}

async fn write_loop<W: AsyncWrite>(wr: W, mut rx: mpsc::Receiver<Out>) {
    let mut wr = std::pin::pin!(wr);
    let mut encoder = Encoder::new();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    while let Some(first) = rx.recv().await {
        let mut shutdown = false;
        let mut next = Some(first);
        // Batch what is already queued into one write.
        while let Some(out) = next.take() {
            match out {
                Out::Frame(f) => encoder.encode(&f, &mut buf),
                Out::Shutdown => {
                    shutdown = true;
                    break;
                }
            }
            if buf.len() < 256 * 1024 {
                next = rx.try_recv().ok();
            }
        }
        if wr.write_all(&buf).await.is_err() || wr.flush().await.is_err() {
            return;
        }
        buf.clear();
        if shutdown {
            break;
        }
    }
    let _ = wr.shutdown().await;
}

async fn read_loop<R: AsyncRead>(
    rd: R,
    role: Role,
    shared: Arc<Shared>,
    out: mpsc::Sender<Out>,
    incoming: mpsc::Sender<Stream>,
) {
    let mut rd = std::pin::pin!(rd);
    let mut decoder = Decoder::new();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut unacked: HashMap<u32, u32> = HashMap::new();
    let mut session_unacked = 0u32;
    'read: loop {
        loop {
            let frame = match decoder.decode(&mut buf) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!("SPDY protocol error: {e}");
                    let last = shared.last_received.load(Ordering::Relaxed);
                    let _ = out
                        .send(Out::Frame(Frame::GoAway {
                            last_good_stream_id: last,
                            status: RST_PROTOCOL_ERROR,
                        }))
                        .await;
                    break 'read;
                }
            };
            match frame {
                Frame::SynStream {
                    stream_id,
                    flags,
                    headers,
                    ..
                } => {
                    shared.last_received.fetch_max(stream_id, Ordering::Relaxed);
                    let (tx, rx) = mpsc::channel(16);
                    if flags & FLAG_FIN == 0 {
                        shared.routes.lock().unwrap().insert(stream_id, tx);
                    }
                    let stream = Stream {
                        id: stream_id,
                        headers,
                        data: rx,
                        writer: StreamWriter {
                            id: stream_id,
                            out: out.clone(),
                        },
                    };
                    if incoming.send(stream).await.is_err() {
                        // Nobody takes streams any more.
                        let _ = out
                            .send(Out::Frame(Frame::RstStream {
                                stream_id,
                                status: RST_CANCEL,
                            }))
                            .await;
                    }
                }
                Frame::SynReply { stream_id, .. } => {
                    if let Some(w) = shared.replies.lock().unwrap().remove(&stream_id) {
                        let _ = w.send(true);
                    }
                }
                Frame::RstStream { stream_id, .. } => {
                    shared.routes.lock().unwrap().remove(&stream_id);
                    if let Some(w) = shared.replies.lock().unwrap().remove(&stream_id) {
                        let _ = w.send(false);
                    }
                }
                Frame::Data {
                    stream_id,
                    flags,
                    data,
                } => {
                    let n = data.len() as u32;
                    let route = shared.routes.lock().unwrap().get(&stream_id).cloned();
                    if let Some(route) = route {
                        if !data.is_empty() && route.send(data).await.is_err() {
                            // The stream's reader is gone: drop its data.
                            shared.routes.lock().unwrap().remove(&stream_id);
                        }
                    }
                    if flags & FLAG_FIN != 0 {
                        shared.routes.lock().unwrap().remove(&stream_id);
                        unacked.remove(&stream_id);
                    } else if n > 0 {
                        let u = unacked.entry(stream_id).or_default();
                        *u += n;
                        if *u >= WINDOW_ACK {
                            let delta = std::mem::take(u);
                            let _ = out
                                .send(Out::Frame(Frame::WindowUpdate { stream_id, delta }))
                                .await;
                        }
                    }
                    session_unacked += n;
                    if session_unacked >= WINDOW_ACK {
                        let delta = std::mem::take(&mut session_unacked);
                        let _ = out
                            .send(Out::Frame(Frame::WindowUpdate {
                                stream_id: 0,
                                delta,
                            }))
                            .await;
                    }
                }
                Frame::Headers {
                    stream_id, flags, ..
                } => {
                    if flags & FLAG_FIN != 0 {
                        shared.routes.lock().unwrap().remove(&stream_id);
                    }
                }
                Frame::Ping { id } => {
                    // Answer the peer's pings; ours come back with our parity.
                    let peer_parity = if role == Role::Server { 1 } else { 0 };
                    if id % 2 == peer_parity {
                        let _ = out.send(Out::Frame(Frame::Ping { id })).await;
                    }
                }
                Frame::GoAway { .. } => break 'read,
                Frame::Settings { .. } | Frame::WindowUpdate { .. } => {}
            }
        }
        match rd.read_buf(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    // Every stream sees the end of its data; pending opens fail.
    shared.routes.lock().unwrap().clear();
    shared.replies.lock().unwrap().clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (
        (Session, mpsc::Receiver<Stream>),
        (Session, mpsc::Receiver<Stream>),
    ) {
        let (a, b) = tokio::io::duplex(1 << 16);
        (
            Session::start(a, Role::Client),
            Session::start(b, Role::Server),
        )
    }

    async fn read_all(rx: &mut mpsc::Receiver<Bytes>) -> Vec<u8> {
        let mut v = Vec::new();
        while let Some(b) = rx.recv().await {
            v.extend_from_slice(&b);
        }
        v
    }

    #[tokio::test]
    async fn streams_carry_data_both_ways_until_fin() {
        let ((client, _), (_server, mut incoming)) = pair();
        let server = tokio::spawn(async move {
            let mut s = incoming.recv().await.unwrap();
            assert_eq!(s.header("streamtype"), Some("stdin"));
            s.writer.reply().await.unwrap();
            let got = read_all(&mut s.data).await;
            s.writer.write(&got).await.unwrap();
            s.writer.write(b" back").await.unwrap();
            s.writer.finish().await.unwrap();
            got.len()
        });
        let mut s = client
            .open(vec![("streamtype".into(), "stdin".into())], false)
            .await
            .unwrap();
        assert_eq!(s.id, 1);
        // More than one window's worth, in several frames.
        let big = vec![b'x'; 200 * 1024];
        s.writer.write(&big).await.unwrap();
        s.writer.finish().await.unwrap();
        let back = read_all(&mut s.data).await;
        assert_eq!(back.len(), big.len() + 5);
        assert!(back.ends_with(b"x back"));
        assert_eq!(server.await.unwrap(), big.len());
    }

    #[tokio::test]
    async fn refused_streams_and_goaway() {
        let ((client, _), (server, mut incoming)) = pair();
        tokio::spawn(async move {
            let s = incoming.recv().await.unwrap();
            s.writer
                .reset(crate::frame::RST_REFUSED_STREAM)
                .await
                .unwrap();
            let s = incoming.recv().await.unwrap();
            s.writer.reply().await.unwrap();
            server.close().await;
            // Hold the session open until the client has seen the GOAWAY.
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        });
        let err = client.open(vec![], false).await.err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
        let mut s = client.open(vec![], false).await.unwrap();
        assert_eq!(s.id, 3);
        // GOAWAY ends the session: the open stream sees its end.
        assert!(s.data.recv().await.is_none());
    }

    #[tokio::test]
    async fn pings_from_the_peer_are_echoed() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let (_server, _incoming) = Session::start(b, Role::Server);
        let (mut rd, mut wr) = tokio::io::split(a);
        let mut enc = Encoder::new();
        let mut buf = BytesMut::new();
        enc.encode(&Frame::Ping { id: 7 }, &mut buf);
        // A server-parity ping (ours) is not echoed.
        enc.encode(&Frame::Ping { id: 8 }, &mut buf);
        enc.encode(&Frame::Ping { id: 9 }, &mut buf);
        wr.write_all(&buf).await.unwrap();
        let mut dec = Decoder::new();
        let mut got = BytesMut::new();
        let mut frames = Vec::new();
        while frames.len() < 2 {
            rd.read_buf(&mut got).await.unwrap();
            while let Some(f) = dec.decode(&mut got).unwrap() {
                frames.push(f);
            }
        }
        assert_eq!(frames, vec![Frame::Ping { id: 7 }, Frame::Ping { id: 9 }]);
    }
}
