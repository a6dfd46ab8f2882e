//! pods/log, pods/exec, pods/attach and pods/portforward: proxied to the node
//! agent that runs the pod, over TLS with the apiserver-kubelet-client
//! certificate. Upgrades (WebSocket, SPDY) are passed through byte for byte,
//! and so is an agent's refusal of one, as Kubernetes' upgrade-aware proxy
//! does; a failed log request becomes a `Status` as kube-apiserver makes it.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Request, Response};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::resources;
use crate::server::{q1, Body, Query, RequestBody, State, Target};
use crate::status::ApiError;

/// How long the TCP connect and, separately, the TLS handshake to an agent
/// may take (kube-apiserver's TLS handshake timeout to kubelets).
const AGENT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an agent may take to answer once the request is sent.
const AGENT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);

/// Query parameters forwarded to the agent for each subresource.
const LOG_PARAMS: &[&str] = &[
    "follow",
    "tailLines",
    "sinceSeconds",
    "sinceTime",
    "timestamps",
    "previous",
    "limitBytes",
];
const EXEC_PARAMS: &[&str] = &["command", "stdin", "stdout", "stderr", "tty"];
const PORTFORWARD_PARAMS: &[&str] = &["ports"];

/// Headers that carry a protocol upgrade end to end.
const UPGRADE_HEADERS: &[&str] = &[
    "connection",
    "upgrade",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
    "x-stream-protocol-version",
];
const UPGRADE_RESPONSE_HEADERS: &[&str] = &[
    "connection",
    "upgrade",
    "sec-websocket-accept",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
    "x-stream-protocol-version",
];

pub(crate) async fn read_json(state: &State, key: &str) -> Result<Option<Value>, ApiError> {
    Ok(state
        .store
        .get(key)
        .await?
        .and_then(|kv| serde_json::from_slice(&kv.value).ok()))
}

fn container_for(pod: &Value, name: &str, asked: Option<&str>) -> Result<String, ApiError> {
    let names: Vec<String> = ["containers", "initContainers", "ephemeralContainers"]
        .iter()
        .flat_map(|f| pod["spec"][f].as_array().cloned().unwrap_or_default())
        .filter_map(|c| c["name"].as_str().map(str::to_string))
        .collect();
    match asked.filter(|c| !c.is_empty()) {
        Some(c) if names.iter().any(|n| n == c) => Ok(c.to_string()),
        Some(c) => Err(ApiError::bad_request(format!(
            "container {c} is not valid for pod {name}"
        ))),
        None => {
            if let Some(d) =
                pod["metadata"]["annotations"]["kubectl.kubernetes.io/default-container"].as_str()
            {
                return Ok(d.to_string());
            }
            let main: Vec<&str> = pod["spec"]["containers"]
                .as_array()
                .map(|a| a.iter().filter_map(|c| c["name"].as_str()).collect())
                .unwrap_or_default();
            match main.as_slice() {
                [one] => Ok(one.to_string()),
                _ => Err(ApiError::bad_request(format!(
                    "a container name must be specified for pod {name}, choose one of: [{}]",
                    main.join(" ")
                ))),
            }
        }
    }
}

pub async fn pod_stream<B: RequestBody>(
    state: &Arc<State>,
    mut req: Request<B>,
    t: &Target,
    q: &Query,
) -> Result<Response<Body>, ApiError> {
    let ns = t.namespace.as_deref().unwrap_or("default");
    let name = t
        .name
        .as_deref()
        .ok_or_else(|| ApiError::bad_request("a pod name is required"))?;
    let sub = t.sub.as_deref().unwrap_or("log");
    let pods = resources::pods();
    let pod = read_json(state, &pods.key(Some(ns), name))
        .await?
        .ok_or_else(|| ApiError::not_found("pods", "", name))?;
    let container = if sub == "portforward" {
        String::new()
    } else {
        container_for(&pod, name, q1(q, "container"))?
    };
    let node_name = pod["spec"]["nodeName"].as_str().unwrap_or("");
    if node_name.is_empty() {
        return Err(ApiError::bad_request(format!(
            "pod {name} does not have a host assigned"
        )));
    }
    let (ip, port) = agent_endpoint(state, node_name).await?;

    let (base, allowed) = match sub {
        "log" => ("containerLogs", LOG_PARAMS),
        "exec" => ("exec", EXEC_PARAMS),
        "portforward" => ("portForward", PORTFORWARD_PARAMS),
        _ => ("attach", EXEC_PARAMS),
    };
    let qs = {
        let mut qs = form_urlencoded::Serializer::new(String::new());
        for k in allowed {
            for v in q.get(*k).into_iter().flatten() {
                // pods/portforward takes `ports`, the kubelet `port`.
                qs.append_pair(if *k == "ports" { "port" } else { k }, v);
            }
        }
        qs.finish()
    };
    let mut path = format!("/{base}/{}/{}", enc(ns), enc(name));
    if sub != "portforward" {
        path.push('/');
        path.push_str(&enc(&container));
    }
    if !qs.is_empty() {
        path.push('?');
        path.push_str(&qs);
    }

    // Failing to reach the agent, in kube-apiserver's words for each
    // subresource: they differ because different code paths dial the kubelet.
    let url = format!("https://{}{path}", host_port(ip, port));
    let unreachable = |dial: String| match sub {
        "log" => ApiError::new(500, "", format!("Get {url:?}: {dial}")),
        "portforward" => ApiError::new(500, "", format!("error dialing backend: {dial}")),
        _ => {
            let cause = format!("error sending request: Post {url:?}: {dial}");
            ApiError::internal(format!("Internal error occurred: {cause}"))
                .with_details(serde_json::json!({"causes": [{"message": cause}]}))
        }
    };
    let tcp = match tokio::time::timeout(
        AGENT_HANDSHAKE_TIMEOUT,
        tokio::net::TcpStream::connect((ip, port)),
    )
    .await
    {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => {
            return Err(unreachable(format!(
                "dial tcp {}: {}",
                host_port(ip, port),
                go_dial_error(&e)
            )))
        }
        Err(_) => {
            return Err(unreachable(format!(
                "dial tcp {}: i/o timeout: no answer from node {node_name} within {}s; is it up and its agent port reachable?",
                host_port(ip, port),
                AGENT_HANDSHAKE_TIMEOUT.as_secs()
            )))
        }
    };
    // Streams carry small interactive frames: no Nagle delay.
    let _ = tcp.set_nodelay(true);
    let server_name = rustls_pki_types::ServerName::IpAddress(ip.into());
    let tls = match tokio::time::timeout(
        AGENT_HANDSHAKE_TIMEOUT,
        tokio_rustls::TlsConnector::from(state.kubelet_tls.clone()).connect(server_name, tcp),
    )
    .await
    {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => return Err(unreachable(stream_error(&e, node_name))),
        Err(_) => {
            return Err(unreachable(format!(
                "net/http: TLS handshake timeout: the node agent of {node_name} accepted the connection but did not answer within {}s; it is frozen or overloaded",
                AGENT_HANDSHAKE_TIMEOUT.as_secs()
            )))
        }
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| unreachable(hyper_error(&e, node_name)))?;
    // A request fails only as "canceled" when the connection fails under
    // it (an agent refusing this server's certificate): the cause is the
    // connection's error.
    let (conn_failed, conn_error) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "agent connection ended");
            let _ = conn_failed.send(e);
        }
    });

    let upgrading = req.headers().contains_key(header::UPGRADE);
    let mut up = Request::builder()
        .method(req.method().clone())
        .uri(path.as_str())
        .header(header::HOST, format!("{ip}:{port}"));
    for h in UPGRADE_HEADERS {
        for v in req.headers().get_all(*h) {
            up = up.header(*h, v.clone());
        }
    }
    let up = up
        .body(Empty::<Bytes>::new())
        .map_err(|e| ApiError::internal(format!("building the agent request: {e}")))?;
    let client_upgrade = upgrading.then(|| hyper::upgrade::on(&mut req));
    let mut resp = match tokio::time::timeout(AGENT_RESPONSE_TIMEOUT, sender.send_request(up)).await
    {
        Ok(Ok(resp)) => resp,
        Ok(Err(e)) => {
            let e = match tokio::time::timeout(Duration::from_secs(1), conn_error).await {
                Ok(Ok(conn)) => conn,
                _ => e,
            };
            let cause = match tls_cause(&e, node_name) {
                Some(cause) => cause,
                None => refusal_cause(state, ip, port, node_name)
                    .await
                    .unwrap_or_else(|| hyper_error(&e, node_name)),
            };
            return Err(unreachable(cause));
        }
        Err(_) => {
            return Err(unreachable(format!(
                "net/http: timeout awaiting response headers: the node agent of {node_name} did not answer within {}s",
                AGENT_RESPONSE_TIMEOUT.as_secs()
            )))
        }
    };

    if resp.status() == http::StatusCode::SWITCHING_PROTOCOLS {
        let Some(client_upgrade) = client_upgrade else {
            return Err(ApiError::internal(
                "the agent upgraded a request that did not ask for it",
            ));
        };
        let mut out = Response::builder().status(101);
        for h in UPGRADE_RESPONSE_HEADERS {
            for v in resp.headers().get_all(*h) {
                out = out.header(*h, v.clone());
            }
        }
        let agent_upgrade = hyper::upgrade::on(&mut resp);
        tokio::spawn(async move {
            let (Ok(agent), Ok(client)) = (agent_upgrade.await, client_upgrade.await) else {
                tracing::debug!("stream upgrade failed on one side");
                return;
            };
            let mut agent = TokioIo::new(agent);
            let mut client = TokioIo::new(client);
            let _ = tokio::io::copy_bidirectional(&mut client, &mut agent).await;
        });
        return out
            .body(crate::server::full(Bytes::new()))
            .map_err(|e| ApiError::internal(e.to_string()));
    }
    if !upgrading && !resp.status().is_success() {
        return Err(agent_refusal(resp, sub, name).await);
    }
    let (parts, body) = resp.into_parts();
    let body = body.map_err(|e| Box::new(e) as crate::server::BoxError);
    let following = q1(q, "follow") == Some("true");
    let body = if sub == "log" && !following {
        // A log that stops flowing before its end means a stuck agent: cut
        // it off rather than hang the client.
        use tokio_stream::StreamExt;
        let node = node_name.to_string();
        let frames = http_body_util::BodyStream::new(body)
            .timeout(AGENT_RESPONSE_TIMEOUT)
            .map(move |frame| {
                frame.unwrap_or_else(|_| {
                    Err(format!(
                        "the node agent of {node} sent nothing for {}s in the middle of the log",
                        AGENT_RESPONSE_TIMEOUT.as_secs()
                    )
                    .into())
                })
            });
        http_body_util::StreamBody::new(frames).boxed_unsync()
    } else {
        body.boxed_unsync()
    };
    let mut out = Response::from_parts(parts, body);
    out.headers_mut().remove(header::CONNECTION);
    out.headers_mut().remove(header::TRANSFER_ENCODING);
    Ok(out)
}

/// Where the agent of `node_name` listens: its InternalIP and the kubelet
/// port it registered.
pub(crate) async fn agent_endpoint(
    state: &State,
    node_name: &str,
) -> Result<(IpAddr, u16), ApiError> {
    let node = read_json(
        state,
        &resources::find("", "v1", "nodes")
            .map(|d| d.key(None, node_name))
            .unwrap_or_default(),
    )
    .await?
    .ok_or_else(|| ApiError::not_found("nodes", "", node_name))?;
    let ip: IpAddr = node["status"]["addresses"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["type"] == "InternalIP"))
        .and_then(|x| x["address"].as_str())
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            ApiError::new(
                503,
                "ServiceUnavailable",
                format!("node {node_name} has no InternalIP address to reach its agent"),
            )
        })?;
    let port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
        .as_u64()
        .filter(|p| *p > 0 && *p < 65536)
        .unwrap_or(10250) as u16;
    Ok((ip, port))
}

/// The TLS failure behind an I/O error on the connection to an agent, if
/// there is one: an agent that does not trust this server's client
/// certificate (another cluster CA) refuses it with an alert, which TLS 1.3
/// delivers only once the request is sent.
fn tls_cause(e: &(dyn std::error::Error + 'static), node: &str) -> Option<String> {
    use rustls::AlertDescription as A;
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        // An io::Error's source() skips the error it wraps: look inside.
        let inner = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|e| e.downcast_ref::<rustls::Error>());
        if let Some(tls) = inner.or_else(|| err.downcast_ref::<rustls::Error>()) {
            return Some(match tls {
                rustls::Error::AlertReceived(
                    A::UnknownCA | A::BadCertificate | A::CertificateUnknown | A::CertificateRequired,
                ) => format!(
                    "remote error: tls: {tls}: the node agent of {node} does not trust this API server's client certificate: \
                     the agent joined a cluster whose CA differs from this server's (servers of one cluster share their CA: \
                     start each with --token-file of the first)"
                ),
                other => format!("tls: {other} (node agent of {node})"),
            });
        }
        source = err.source();
    }
    None
}

/// Why an agent dropped the connection right after the TLS handshake, if
/// it refuses this server's certificate. In TLS 1.3 that refusal comes
/// after the handshake and is lost when the connection closes under the
/// request; so ask again in TLS 1.2, where it comes within the handshake.
async fn refusal_cause(state: &State, ip: IpAddr, port: u16, node: &str) -> Option<String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12])
        .ok()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(crate::tls::AnyServerCert(
            rustls::crypto::ring::default_provider(),
        )))
        .with_client_cert_resolver(state.kubelet_tls.client_auth_cert_resolver.clone());
    let probe = async {
        let tcp = tokio::net::TcpStream::connect((ip, port)).await.ok()?;
        let name = rustls_pki_types::ServerName::IpAddress(ip.into());
        match tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
        {
            Ok(_) => None,
            Err(e) => tls_cause(&e, node),
        }
    };
    tokio::time::timeout(AGENT_HANDSHAKE_TIMEOUT, probe)
        .await
        .ok()
        .flatten()
}

fn stream_error(e: &std::io::Error, node: &str) -> String {
    tls_cause(e, node).unwrap_or_else(|| format!("{e} (node agent of {node})"))
}

fn hyper_error(e: &hyper::Error, node: &str) -> String {
    tls_cause(e, node).unwrap_or_else(|| format!("{e} (node agent of {node})"))
}

/// What kube-apiserver makes of an agent's error answer to a plain
/// (not upgraded) request: its generic HTTP response checker.
async fn agent_refusal(resp: Response<hyper::body::Incoming>, sub: &str, name: &str) -> ApiError {
    let code = resp.status().as_u16();
    let body = http_body_util::Limited::new(resp.into_body(), 64 * 1024)
        .collect()
        .await
        .map(|b| {
            String::from_utf8_lossy(&b.to_bytes())
                .trim_end()
                .to_string()
        })
        .unwrap_or_default();
    match code {
        500 => ApiError::internal(format!("Internal error occurred: {body}"))
            .with_details(serde_json::json!({"causes": [{"message": body}]})),
        400 => ApiError::bad_request(body),
        404 => ApiError::new(
            404,
            "NotFound",
            format!("the server could not find the requested resource ( pods/{sub} {name})"),
        )
        .with_details(serde_json::json!({"name": name, "kind": format!("pods/{sub}")})),
        _ => ApiError::new(code, "", body),
    }
}

/// `host:port`, with brackets around an IPv6 host.
pub(crate) fn host_port(ip: IpAddr, port: u16) -> String {
    std::net::SocketAddr::from((ip, port)).to_string()
}

/// A connect error in the words of Go's net package, which Kubernetes users
/// see in these messages.
pub(crate) fn go_dial_error(e: &std::io::Error) -> String {
    let errno = match e.raw_os_error() {
        Some(111) => "connection refused".to_string(),
        Some(113) => "no route to host".to_string(),
        Some(101) => "network is unreachable".to_string(),
        Some(110) => "connection timed out".to_string(),
        _ => {
            let s = e.to_string();
            s.split(" (os error").next().unwrap_or(&s).to_lowercase()
        }
    };
    format!("connect: {errno}")
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
