//! Probes (liveness, readiness, startup) and lifecycle hooks: the pure
//! result tracking with Kubernetes' thresholds, and the actions themselves
//! (exec through the runtime, HTTP GET and TCP connect to the pod IP).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Container, HTTPGetAction, LifecycleHandler, Probe, TCPSocketAction,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use orca_runtime::{ExecRequest, Runtime};
use tokio::io::AsyncReadExt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Liveness,
    Readiness,
    Startup,
}

impl Kind {
    pub fn title(self) -> &'static str {
        match self {
            Kind::Liveness => "Liveness",
            Kind::Readiness => "Readiness",
            Kind::Startup => "Startup",
        }
    }
}

/// A probe's timing fields with Kubernetes' defaults applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

impl Timing {
    pub fn of(p: &Probe) -> Timing {
        let secs = |v: Option<i32>, d: i32| Duration::from_secs(v.unwrap_or(d).max(0) as u64);
        Timing {
            initial_delay: secs(p.initial_delay_seconds, 0),
            period: secs(p.period_seconds, 10).max(Duration::from_secs(1)),
            timeout: secs(p.timeout_seconds, 1).max(Duration::from_secs(1)),
            success_threshold: p.success_threshold.unwrap_or(1).max(1) as u32,
            failure_threshold: p.failure_threshold.unwrap_or(3).max(1) as u32,
        }
    }
}

/// Consecutive-result tracking: the result flips only after
/// `success_threshold` successes or `failure_threshold` failures in a row.
#[derive(Clone, Debug)]
pub struct Tracker {
    timing: Timing,
    pub result: bool,
    successes: u32,
    failures: u32,
}

impl Tracker {
    /// Liveness starts out passing; readiness and startup start out failing.
    pub fn new(kind: Kind, timing: Timing) -> Tracker {
        Tracker {
            timing,
            result: kind == Kind::Liveness,
            successes: 0,
            failures: 0,
        }
    }

    /// Records one probe outcome; returns the new result when it flipped.
    pub fn record(&mut self, ok: bool) -> Option<bool> {
        if ok {
            self.failures = 0;
            self.successes += 1;
            if !self.result && self.successes >= self.timing.success_threshold {
                self.result = true;
                return Some(true);
            }
        } else {
            self.successes = 0;
            self.failures += 1;
            if self.result && self.failures >= self.timing.failure_threshold {
                self.result = false;
                return Some(false);
            }
            // A startup or readiness probe that never passed still reports
            // the failure once the threshold is reached.
            if !self.result && self.failures == self.timing.failure_threshold {
                return Some(false);
            }
        }
        None
    }
}

/// What a probe or hook does.
#[derive(Clone, Debug)]
pub enum Action {
    Exec(Vec<String>),
    Http(HTTPGetAction),
    Tcp(TCPSocketAction),
    Sleep(u64),
    Grpc { port: i32, service: String },
    Unsupported(&'static str),
}

impl Action {
    pub fn of_probe(p: &Probe) -> Action {
        if let Some(e) = &p.exec {
            Action::Exec(e.command.clone().unwrap_or_default())
        } else if let Some(h) = &p.http_get {
            Action::Http(h.clone())
        } else if let Some(t) = &p.tcp_socket {
            Action::Tcp(t.clone())
        } else if let Some(g) = &p.grpc {
            Action::Grpc {
                port: g.port,
                service: g.service.clone().unwrap_or_default(),
            }
        } else {
            Action::Unsupported("probe has no action")
        }
    }

    pub fn of_handler(h: &LifecycleHandler) -> Action {
        if let Some(e) = &h.exec {
            Action::Exec(e.command.clone().unwrap_or_default())
        } else if let Some(g) = &h.http_get {
            Action::Http(g.clone())
        } else if let Some(t) = &h.tcp_socket {
            Action::Tcp(t.clone())
        } else if let Some(s) = &h.sleep {
            Action::Sleep(s.seconds.max(0) as u64)
        } else {
            Action::Unsupported("lifecycle handler has no action")
        }
    }
}

/// Resolves a named or numbered port against the container's ports.
pub fn resolve_port(port: &IntOrString, container: &Container) -> Result<u16, String> {
    match port {
        IntOrString::Int(p) => u16::try_from(*p).map_err(|_| format!("invalid port {p}")),
        IntOrString::String(name) => {
            if let Ok(p) = name.parse::<u16>() {
                return Ok(p);
            }
            container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .and_then(|p| u16::try_from(p.container_port).ok())
                .ok_or_else(|| {
                    format!(
                        "couldn't find port {name:?} in container {:?}",
                        container.name
                    )
                })
        }
    }
}

/// Runs an action against a container. `Ok` holds the output (for events);
/// `Err` says why it failed, in the kubelet's words where it has them.
pub async fn run(
    runtime: &Arc<dyn Runtime>,
    container_id: &str,
    container: &Container,
    pod_ip: Option<IpAddr>,
    action: &Action,
    timeout: Duration,
) -> Result<String, String> {
    match action {
        Action::Exec(cmd) => {
            match tokio::time::timeout(timeout, exec(runtime, container_id, cmd)).await {
                Ok(r) => r,
                Err(_) => Err(format!(
                    "command {cmd:?} timed out after {}",
                    crate::backoff::go_duration(timeout)
                )),
            }
        }
        Action::Http(h) => {
            let port = resolve_port(&h.port, container)?;
            let host = h
                .host
                .clone()
                .or_else(|| pod_ip.map(|ip| ip.to_string()))
                .unwrap_or_else(|| "127.0.0.1".into());
            run_http(&host, port, h, timeout).await
        }
        Action::Tcp(t) => {
            let port = resolve_port(&t.port, container)?;
            let host = t
                .host
                .clone()
                .or_else(|| pod_ip.map(|ip| ip.to_string()))
                .unwrap_or_else(|| "127.0.0.1".into());
            run_tcp(&host, port, timeout).await
        }
        Action::Sleep(secs) => {
            tokio::time::sleep(Duration::from_secs(*secs)).await;
            Ok(String::new())
        }
        Action::Grpc { port, service } => {
            let port = u16::try_from(*port).map_err(|_| format!("invalid port {port}"))?;
            let host = pod_ip
                .map(|ip| ip.to_string())
                .unwrap_or_else(|| "127.0.0.1".into());
            crate::grpc_probe::check(&host, port, service, timeout).await
        }
        Action::Unsupported(why) => Err(why.to_string()),
    }
}

async fn run_http(
    host: &str,
    port: u16,
    h: &HTTPGetAction,
    timeout: Duration,
) -> Result<String, String> {
    match tokio::time::timeout(timeout, http_get(host, port, h)).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "Get \"{}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)",
            url(host, port, h)
        )),
    }
}

async fn run_tcp(host: &str, port: u16, timeout: Duration) -> Result<String, String> {
    let addr = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&addr)).await {
        Ok(Ok(_)) => Ok(String::new()),
        Ok(Err(e)) => Err(format!("dial tcp {addr}: connect: {}", os_error(&e))),
        Err(_) => Err(format!("dial tcp {addr}: i/o timeout")),
    }
}

/// The OS error text without Rust's " (os error N)" suffix, as Go prints it.
fn os_error(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_lowercase(),
        None => s,
    }
}

async fn exec(runtime: &Arc<dyn Runtime>, id: &str, cmd: &[String]) -> Result<String, String> {
    let session = runtime
        .exec(
            id,
            ExecRequest {
                command: cmd.to_vec(),
                tty: false,
                stdin: false,
            },
        )
        .await
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    let mut err = Vec::new();
    let read_out = async {
        if let Some(mut r) = session.stdout {
            let _ = r.read_to_end(&mut out).await;
        }
    };
    let read_err = async {
        if let Some(mut r) = session.stderr {
            let _ = r.read_to_end(&mut err).await;
        }
    };
    tokio::join!(read_out, read_err);
    let code = session.exit.await.unwrap_or(-1);
    out.extend_from_slice(&err);
    let text = String::from_utf8_lossy(&out).to_string();
    if code == 0 {
        Ok(text)
    } else if text.is_empty() {
        Err(format!("command {cmd:?} exited with {code}"))
    } else {
        Err(text)
    }
}

fn url(host: &str, port: u16, h: &HTTPGetAction) -> String {
    let scheme = h.scheme.as_deref().unwrap_or("HTTP").to_lowercase();
    let path = h.path.as_deref().unwrap_or("/");
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    let sep = if path.starts_with('/') { "" } else { "/" };
    format!("{scheme}://{host}:{port}{sep}{path}")
}

async fn http_get(host: &str, port: u16, h: &HTTPGetAction) -> Result<String, String> {
    use http_body_util::BodyExt;
    let target = url(host, port, h);
    let addr = format!("{host}:{port}");
    let tcp = tokio::net::TcpStream::connect(&addr).await.map_err(|e| {
        format!(
            "Get \"{target}\": dial tcp {addr}: connect: {}",
            os_error(&e)
        )
    })?;
    let path = h.path.clone().unwrap_or_else(|| "/".into());
    let mut req = hyper::Request::get(if path.starts_with('/') {
        path
    } else {
        format!("/{path}")
    });
    let mut has_host = false;
    let mut has_ua = false;
    for header in h.http_headers.iter().flatten() {
        has_host |= header.name.eq_ignore_ascii_case("host");
        has_ua |= header.name.eq_ignore_ascii_case("user-agent");
        req = req.header(header.name.as_str(), header.value.as_str());
    }
    if !has_host {
        req = req.header("Host", format!("{host}:{port}"));
    }
    if !has_ua {
        req = req.header("User-Agent", "kube-probe/1.32");
    }
    let req = req
        .header("Accept", "*/*")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|e| e.to_string())?;
    let https = h.scheme.as_deref() == Some("HTTPS");
    let response = if https {
        let tls = crate::tls::insecure_connector()
            .connect(
                rustls_pki_types::ServerName::try_from(host.to_string())
                    .map_err(|e| e.to_string())?,
                tcp,
            )
            .await
            .map_err(|e| format!("Get \"{target}\": {e}"))?;
        send(tls, req).await
    } else {
        send(tcp, req).await
    }
    .map_err(|e| format!("Get \"{target}\": {e}"))?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let body = String::from_utf8_lossy(&body[..body.len().min(10 * 1024)]).to_string();
    if (200..400).contains(&status) {
        Ok(body)
    } else {
        Err(format!("HTTP probe failed with statuscode: {status}"))
    }
}

async fn send<S>(
    io: S,
    req: hyper::Request<http_body_util::Empty<bytes::Bytes>>,
) -> Result<hyper::Response<hyper::body::Incoming>, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    sender.send_request(req).await.map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing(success: u32, failure: u32) -> Timing {
        Timing {
            initial_delay: Duration::ZERO,
            period: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            success_threshold: success,
            failure_threshold: failure,
        }
    }

    #[test]
    fn defaults_follow_kubernetes() {
        let t = Timing::of(&Probe::default());
        assert_eq!(t.period, Duration::from_secs(10));
        assert_eq!(t.timeout, Duration::from_secs(1));
        assert_eq!(t.success_threshold, 1);
        assert_eq!(t.failure_threshold, 3);
        assert_eq!(t.initial_delay, Duration::ZERO);
    }

    #[test]
    fn liveness_fails_after_threshold() {
        let mut t = Tracker::new(Kind::Liveness, timing(1, 3));
        assert!(t.result);
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(true), None);
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(false), Some(false));
    }

    #[test]
    fn readiness_needs_consecutive_successes() {
        let mut t = Tracker::new(Kind::Readiness, timing(2, 1));
        assert!(!t.result);
        assert_eq!(t.record(true), None);
        assert_eq!(t.record(false), Some(false));
        assert_eq!(t.record(true), None);
        assert_eq!(t.record(true), Some(true));
        assert_eq!(t.record(false), Some(false));
    }

    #[test]
    fn ports_resolve_by_name() {
        let c = Container {
            name: "web".into(),
            ports: Some(vec![k8s_openapi::api::core::v1::ContainerPort {
                name: Some("http".into()),
                container_port: 8080,
                ..Default::default()
            }]),
            ..Default::default()
        };
        assert_eq!(
            resolve_port(&IntOrString::String("http".into()), &c),
            Ok(8080)
        );
        assert_eq!(resolve_port(&IntOrString::Int(80), &c), Ok(80));
        assert!(resolve_port(&IntOrString::String("nope".into()), &c).is_err());
    }

    #[tokio::test]
    async fn tcp_and_http_actions_against_a_local_server() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                let mut buf = [0u8; 1024];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                let status = if req.starts_with("GET /ok") {
                    "200 OK"
                } else {
                    "500 Oops"
                };
                let _ = s
                    .write_all(
                        format!("HTTP/1.1 {status}\r\ncontent-length: 2\r\n\r\nhi").as_bytes(),
                    )
                    .await;
            }
        });
        let http = |path: &str| HTTPGetAction {
            host: Some("127.0.0.1".into()),
            path: Some(path.into()),
            port: IntOrString::Int(port as i32),
            ..Default::default()
        };
        let t = Duration::from_secs(2);
        assert_eq!(
            run_http("127.0.0.1", port, &http("/ok"), t).await,
            Ok("hi".into())
        );
        assert_eq!(
            run_http("127.0.0.1", port, &http("/bad"), t).await,
            Err("HTTP probe failed with statuscode: 500".into())
        );
        assert!(run_tcp("127.0.0.1", port, t).await.is_ok());
        // A port nobody listens on: bind one, note it, close it.
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let err = run_tcp("127.0.0.1", closed, t).await.unwrap_err();
        assert_eq!(
            err,
            format!("dial tcp 127.0.0.1:{closed}: connect: connection refused")
        );
    }
}
