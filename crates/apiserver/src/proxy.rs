//! pods/log, pods/exec, pods/attach and pods/portforward: proxied to the node
//! agent that runs the pod, over TLS with the apiserver-kubelet-client
//! certificate. Upgrades (WebSocket, SPDY) are passed through byte for byte,
//! and so is an agent's refusal of one, as Kubernetes' upgrade-aware proxy
//! does; a failed log request becomes a `Status` as kube-apiserver makes it.

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, Request, Response};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::resources;
use crate::server::{q1, Body, Query, RequestBody, State, Target};
use crate::status::ApiError;

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

async fn read_json(state: &State, key: &str) -> Result<Option<Value>, ApiError> {
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
    let tcp = tokio::net::TcpStream::connect((ip, port))
        .await
        .map_err(|e| {
            unreachable(format!(
                "dial tcp {}: {}",
                host_port(ip, port),
                go_dial_error(&e)
            ))
        })?;
    // Streams carry small interactive frames: no Nagle delay.
    let _ = tcp.set_nodelay(true);
    let server_name = rustls_pki_types::ServerName::IpAddress(ip.into());
    let tls = tokio_rustls::TlsConnector::from(state.kubelet_tls.clone())
        .connect(server_name, tcp)
        .await
        .map_err(|e| unreachable(format!("tls: {e}")))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "agent connection ended");
        }
    });

    let upgrading = req.headers().contains_key(header::UPGRADE);
    let mut up = Request::builder()
        .method(req.method().clone())
        .uri(path)
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
    let mut resp = sender
        .send_request(up)
        .await
        .map_err(|e| unreachable(e.to_string()))?;

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
    let mut out = Response::from_parts(
        parts,
        body.map_err(|e| Box::new(e) as crate::server::BoxError)
            .boxed_unsync(),
    );
    out.headers_mut().remove(header::CONNECTION);
    out.headers_mut().remove(header::TRANSFER_ENCODING);
    Ok(out)
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
fn host_port(ip: IpAddr, port: u16) -> String {
    std::net::SocketAddr::from((ip, port)).to_string()
}

/// A connect error in the words of Go's net package, which Kubernetes users
/// see in these messages.
fn go_dial_error(e: &std::io::Error) -> String {
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
