//! Forwarding to the node's own resolvers: the client's query as it came,
//! under a fresh ID from a fresh port, over UDP and again over TCP when the
//! answer was truncated; the next resolver when one fails or is silent.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hickory_server::proto::op::{Message, Query};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tracing::warn;

pub(crate) struct Forwarder {
    upstreams: Vec<SocketAddr>,
    timeout: Duration,
    started: Instant,
    /// Seconds after `started` of the last "all resolvers failed" warning.
    last_warning: AtomicU64,
}

impl Forwarder {
    pub fn new(upstreams: Vec<SocketAddr>, timeout: Duration) -> Forwarder {
        Forwarder {
            upstreams,
            timeout,
            started: Instant::now(),
            last_warning: AtomicU64::new(u64::MAX),
        }
    }

    /// Sends the wire-format `query` (any ID) to the resolvers in order and
    /// returns the first well-formed answer to it. `tcp` starts over TCP (the
    /// client came over TCP, so the answer may be large); `udp_payload` is
    /// the largest UDP answer the query allows (512, or its EDNS size).
    pub async fn exchange(
        &self,
        query: &[u8],
        expected: &Query,
        tcp: bool,
        udp_payload: u16,
    ) -> Option<Message> {
        if query.len() < 12 || self.upstreams.is_empty() {
            return None;
        }
        let mut query = query.to_vec();
        let mut last_error = String::new();
        for upstream in &self.upstreams {
            let id: u16 = rand::random();
            query[..2].copy_from_slice(&id.to_be_bytes());
            let attempt = async {
                if !tcp {
                    let answer = self
                        .udp(*upstream, &query, id, expected, udp_payload)
                        .await?;
                    if !answer.metadata.truncation {
                        return Ok(answer);
                    }
                }
                self.tcp(*upstream, &query, id, expected).await
            };
            match tokio::time::timeout(self.timeout, attempt).await {
                Ok(Ok(answer)) => return Some(answer),
                Ok(Err(e)) => last_error = format!("{upstream}: {e}"),
                Err(_) => last_error = format!("{upstream}: no answer in {:?}", self.timeout),
            }
        }
        self.warn_rarely(&last_error);
        None
    }

    async fn udp(
        &self,
        upstream: SocketAddr,
        query: &[u8],
        id: u16,
        expected: &Query,
        udp_payload: u16,
    ) -> std::io::Result<Message> {
        let local: SocketAddr = match upstream {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let socket = UdpSocket::bind(local).await?;
        // A connected socket only hears from the resolver it asked.
        socket.connect(upstream).await?;
        socket.send(query).await?;
        let mut buf = vec![0u8; usize::from(udp_payload.max(512))];
        loop {
            let n = socket.recv(&mut buf).await?;
            if let Some(answer) = matching(&buf[..n], id, expected) {
                return Ok(answer);
            }
        }
    }

    async fn tcp(
        &self,
        upstream: SocketAddr,
        query: &[u8],
        id: u16,
        expected: &Query,
    ) -> std::io::Result<Message> {
        let mut stream = TcpStream::connect(upstream).await?;
        let len = u16::try_from(query.len()).map_err(std::io::Error::other)?;
        let mut framed = Vec::with_capacity(query.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(query);
        stream.write_all(&framed).await?;
        loop {
            let len = stream.read_u16().await? as usize;
            let mut buf = vec![0u8; len];
            stream.read_exact(&mut buf).await?;
            if let Some(answer) = matching(&buf, id, expected) {
                return Ok(answer);
            }
        }
    }

    fn warn_rarely(&self, error: &str) {
        let now = self.started.elapsed().as_secs();
        let last = self.last_warning.load(Ordering::Relaxed);
        if last == u64::MAX || now >= last + 10 {
            self.last_warning.store(now, Ordering::Relaxed);
            warn!(
                "cluster DNS: no upstream resolver answered ({error}); names outside the \
                 cluster domain fail with SERVFAIL until one does: check the node's \
                 resolv.conf and that its resolvers are reachable"
            );
        }
    }
}

/// The answer to our question, or None for a stray or spoofed packet.
fn matching(bytes: &[u8], id: u16, expected: &Query) -> Option<Message> {
    let message = Message::from_vec(bytes).ok()?;
    let same_question = message.queries.len() == 1
        && message.queries[0].name() == expected.name()
        && message.queries[0].query_type() == expected.query_type()
        && message.queries[0].query_class() == expected.query_class();
    (message.metadata.id == id && same_question).then_some(message)
}
