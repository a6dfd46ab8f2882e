//! A client of the agent's streaming server, authenticated like the API
//! server (apiserver-kubelet-client certificate) and trusting the agent's
//! self-signed serving certificate.

use std::sync::Arc;

use futures::{SinkExt, StreamExt};
use http_body_util::BodyExt;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use super::Env;

pub type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl Env {
    /// The streaming port the node reports.
    pub async fn streaming_port(&self) -> u16 {
        let node: k8s_openapi::api::core::v1::Node = kube::Api::all(self.client.clone())
            .get(&self.node)
            .await
            .unwrap();
        node.status
            .unwrap()
            .daemon_endpoints
            .unwrap()
            .kubelet_endpoint
            .unwrap()
            .port as u16
    }

    /// Opens TLS to the streaming server; with `client_cert` false the
    /// client presents no certificate.
    pub async fn streaming_tls(&self, client_cert: bool) -> std::io::Result<Tls> {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(self.dir.path().join("agent/serving.crt")).unwrap() {
            roots.add(c.unwrap()).unwrap();
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let config = if client_cert {
            let tls = self.dir.path().join("tls");
            let certs = CertificateDer::pem_file_iter(tls.join("apiserver-kubelet-client.crt"))
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key =
                PrivateKeyDer::from_pem_file(tls.join("apiserver-kubelet-client.key")).unwrap();
            builder.with_client_auth_cert(certs, key).unwrap()
        } else {
            builder.with_no_client_auth()
        };
        let port = self.streaming_port().await;
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let mut tls = connector
            .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
            .await?;
        // TLS 1.3 reports a rejected client certificate on the first read.
        use tokio::io::AsyncWriteExt;
        tls.flush().await?;
        Ok(tls)
    }

    /// GET on the streaming server; returns the status code and body.
    pub async fn streaming_get(&self, path: &str) -> (u16, String) {
        let tls = self.streaming_tls(true).await.unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .unwrap();
        tokio::spawn(conn);
        let req = hyper::Request::get(path)
            .header("Host", "127.0.0.1")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        let code = resp.status().as_u16();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (code, String::from_utf8_lossy(&body).to_string())
    }

    /// A WebSocket session on the streaming server with one channel protocol.
    pub async fn streaming_ws(&self, path: &str, protocol: &str) -> Ws {
        let tls = self.streaming_tls(true).await.unwrap();
        let mut req = format!("wss://127.0.0.1{path}")
            .into_client_request()
            .unwrap();
        req.headers_mut()
            .insert("Sec-WebSocket-Protocol", protocol.parse().unwrap());
        let (ws, resp) = tokio_tungstenite::client_async(req, tls)
            .await
            .expect("websocket upgrade");
        assert_eq!(
            resp.headers()
                .get("Sec-WebSocket-Protocol")
                .and_then(|v| v.to_str().ok()),
            Some(protocol)
        );
        Ws { ws }
    }
}

pub struct Ws {
    ws: tokio_tungstenite::WebSocketStream<Tls>,
}

/// Everything a session printed, and its error channel (a JSON Status for
/// v4 and v5, plain text before).
#[derive(Debug, Default)]
pub struct Output {
    pub stdout: String,
    pub stderr: String,
    pub status: Option<serde_json::Value>,
    pub error_text: String,
    /// Every (channel, data) received, in order.
    pub frames: Vec<(u8, Vec<u8>)>,
}

impl Ws {
    pub async fn send(&mut self, channel: u8, data: &[u8]) {
        let mut frame = vec![channel];
        frame.extend_from_slice(data);
        self.ws.send(Message::Binary(frame.into())).await.unwrap();
    }

    /// Reads until stdout contains `want` (or the session ends).
    pub async fn read_until(&mut self, out: &mut Output, want: &str) {
        while !out.stdout.contains(want) {
            if !self.read_one(out).await {
                return;
            }
        }
    }

    /// Reads frames until the server closes the session.
    pub async fn finish(mut self) -> Output {
        let mut out = Output::default();
        while self.read_one(&mut out).await {}
        out
    }

    /// Sends a `base64.channel.k8s.io` frame: the channel as a digit, then
    /// the data in base64.
    pub async fn send_base64(&mut self, channel: u8, data: &[u8]) {
        use base64::Engine;
        let text = format!(
            "{}{}",
            (b'0' + channel) as char,
            base64::engine::general_purpose::STANDARD.encode(data)
        );
        self.ws.send(Message::Text(text.into())).await.unwrap();
    }

    async fn read_one(&mut self, out: &mut Output) -> bool {
        let (channel, data) = match self.ws.next().await {
            Some(Ok(Message::Binary(b))) if !b.is_empty() => (b[0], b[1..].to_vec()),
            Some(Ok(Message::Text(t))) if !t.is_empty() => {
                use base64::Engine;
                let data = base64::engine::general_purpose::STANDARD
                    .decode(&t.as_bytes()[1..])
                    .expect("base64 frame");
                (t.as_bytes()[0] - b'0', data)
            }
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return false,
            Some(Ok(_)) => return true,
        };
        let text = String::from_utf8_lossy(&data).to_string();
        match channel {
            1 => out.stdout.push_str(&text),
            2 => out.stderr.push_str(&text),
            3 => {
                out.status = serde_json::from_str(&text).ok();
                out.error_text.push_str(&text);
            }
            _ => {}
        }
        out.frames.push((channel, data));
        true
    }

    /// Reads frames until one arrives on `channel`.
    pub async fn next_on(&mut self, out: &mut Output, channel: u8) -> Vec<u8> {
        loop {
            let seen = out.frames.len();
            assert!(self.read_one(out).await, "the session ended: {out:?}");
            if let Some((c, d)) = out.frames.get(seen) {
                if *c == channel {
                    return d.clone();
                }
            }
        }
    }
}
