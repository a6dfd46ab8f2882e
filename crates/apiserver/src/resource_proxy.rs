//! `pods/NAME/proxy/...`, `services/NAME/proxy/...` and
//! `nodes/NAME/proxy/...`: plain HTTP requests passed on to a pod, to a ready
//! endpoint of a Service, or to a node's agent, as kube-apiserver's proxy
//! subresources do. NAME may be `name`, `name:port` or `scheme:name:port`.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderName, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::proxy::{agent_endpoint, go_dial_error, host_port, read_json};
use crate::resources;
use crate::server::{read_body, Body, RequestBody, State, Target};
use crate::status::ApiError;

/// How long connecting (and a TLS handshake) to the target may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Hop-by-hop headers, and the caller's credentials, which stay here.
const DROPPED_HEADERS: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "authorization",
    "impersonate-user",
    "impersonate-group",
    "impersonate-uid",
];

/// Where a proxied request goes.
struct Location {
    https: bool,
    ip: IpAddr,
    port: u16,
}

pub async fn serve<B: RequestBody>(
    state: &Arc<State>,
    req: Request<B>,
    t: &Target,
) -> Result<Response<Body>, ApiError> {
    let id = t.name.as_deref().unwrap_or_default();
    let (scheme, name, port) = split_scheme_name_port(id).ok_or_else(|| {
        ApiError::bad_request(format!("invalid {} request {id:?}", t.def.singular))
    })?;
    let ns = t.namespace.as_deref().unwrap_or("default");
    let loc = match t.def.name {
        "pods" => pod_location(state, ns, name, port).await?,
        "services" => service_location(state, ns, id, name, port).await?,
        _ => {
            let (ip, agent_port) = agent_endpoint(state, name).await?;
            Location {
                https: true,
                ip,
                port: match port {
                    "" => agent_port,
                    p => parse_port(p)?,
                },
            }
        }
    };
    let https = match scheme {
        "" => loc.https,
        s => s == "https",
    };
    forward(state, req, id, Location { https, ..loc }).await
}

/// kube's `SplitSchemeNamePort`.
fn split_scheme_name_port(id: &str) -> Option<(&str, &str, &str)> {
    let parts: Vec<&str> = id.split(':').collect();
    let (scheme, name, port) = match parts[..] {
        [name] => ("", name, ""),
        [name, port] => ("", name, port),
        [scheme, name, port] => (scheme, name, port),
        _ => return None,
    };
    (!name.is_empty() && matches!(scheme, "" | "http" | "https")).then_some((scheme, name, port))
}

fn parse_port(p: &str) -> Result<u16, ApiError> {
    p.parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| ApiError::bad_request(format!("invalid port {p:?}")))
}

async fn read(state: &State, resource: &str, ns: &str, name: &str) -> Result<Value, ApiError> {
    let def = resources::find("", "v1", resource).ok_or_else(|| ApiError::internal(resource))?;
    read_json(state, &def.key(Some(ns), name))
        .await?
        .ok_or_else(|| ApiError::not_found(resource, "", name))
}

/// The pod's IP and the given port, else its first declared container port.
async fn pod_location(
    state: &State,
    ns: &str,
    name: &str,
    port: &str,
) -> Result<Location, ApiError> {
    let pod = read(state, "pods", ns, name).await?;
    let port = match port {
        "" => pod["spec"]["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .find_map(|c| c["ports"][0]["containerPort"].as_u64())
            .map(|p| p as u16)
            .unwrap_or(80),
        p => match p.parse::<u16>() {
            Ok(n) => n,
            // A named port: the container port of that name.
            Err(_) => pod["spec"]["containers"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|c| c["ports"].as_array().into_iter().flatten())
                .find(|cp| cp["name"] == p)
                .and_then(|cp| cp["containerPort"].as_u64())
                .map(|n| n as u16)
                .ok_or_else(|| ApiError::bad_request(format!("invalid port {p:?}")))?,
        },
    };
    let ip = pod["status"]["podIP"]
        .as_str()
        .and_then(|s| s.parse::<IpAddr>().ok())
        .filter(is_global_unicast)
        .ok_or_else(|| ApiError::bad_request("address not allowed"))?;
    Ok(Location {
        https: false,
        ip,
        port,
    })
}

fn is_global_unicast(ip: &IpAddr) -> bool {
    let v4_local = matches!(ip, IpAddr::V4(v4) if v4.is_link_local() || v4.is_broadcast());
    !(ip.is_unspecified() || ip.is_loopback() || ip.is_multicast() || v4_local)
}

/// A ready pod endpoint of the Service for the port given by name (or by
/// service port number), as kube-apiserver picks one.
async fn service_location(
    state: &State,
    ns: &str,
    id: &str,
    name: &str,
    port: &str,
) -> Result<Location, ApiError> {
    let mut port_name = port.to_string();
    if let Ok(number) = port.parse::<i64>() {
        let svc = read(state, "services", ns, name).await?;
        port_name = svc["spec"]["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["port"].as_i64() == Some(number))
            .map(|p| p["name"].as_str().unwrap_or_default().to_string())
            .ok_or_else(|| {
                unavailable(format!(
                    "no service port {number} found for service {name:?}"
                ))
            })?;
    }
    let eps = read(state, "endpoints", ns, name).await?;
    let subsets = eps["subsets"].as_array().cloned().unwrap_or_default();
    if subsets.is_empty() {
        return Err(unavailable(format!(
            "no endpoints available for service {name:?}"
        )));
    }
    // Spread requests over endpoints as kube-apiserver's random pick does.
    let seed = rand::random::<u32>() as usize;
    for i in 0..subsets.len() {
        let ss = &subsets[(seed + i) % subsets.len()];
        let addrs: Vec<&Value> = ss["addresses"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| a["targetRef"]["kind"] == "Pod")
            .collect();
        let Some(sp) = ss["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"].as_str().unwrap_or_default() == port_name)
        else {
            continue;
        };
        if addrs.is_empty() {
            continue;
        }
        let addr = addrs[(seed / subsets.len()) % addrs.len()];
        if let (Some(ip), Some(port)) = (
            addr["ip"].as_str().and_then(|s| s.parse().ok()),
            sp["port"].as_u64(),
        ) {
            return Ok(Location {
                https: false,
                ip,
                port: port as u16,
            });
        }
    }
    Err(unavailable(format!(
        "no endpoints available for service {id:?}"
    )))
}

fn unavailable(msg: String) -> ApiError {
    ApiError::new(503, "ServiceUnavailable", msg)
}

/// The rest of the path after `/{id}/proxy`, and the query, for the target.
fn target_path(uri: &http::Uri, id: &str) -> String {
    let path = uri.path();
    let marker = format!("/{id}/proxy");
    let rest = path
        .find(&marker)
        .map(|i| &path[i + marker.len()..])
        .unwrap_or("");
    let mut out = if rest.is_empty() { "/" } else { rest }.to_string();
    if let Some(q) = uri.query() {
        out.push('?');
        out.push_str(q);
    }
    out
}

async fn forward<B: RequestBody>(
    state: &State,
    req: Request<B>,
    id: &str,
    loc: Location,
) -> Result<Response<Body>, ApiError> {
    let authority = host_port(loc.ip, loc.port);
    let reach = |cause: String| unavailable(format!("error trying to reach service: {cause}"));
    let tcp = match tokio::time::timeout(
        CONNECT_TIMEOUT,
        tokio::net::TcpStream::connect((loc.ip, loc.port)),
    )
    .await
    {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => {
            return Err(reach(format!(
                "dial tcp {authority}: {}",
                go_dial_error(&e)
            )))
        }
        Err(_) => return Err(reach(format!("dial tcp {authority}: i/o timeout"))),
    };
    let path = target_path(req.uri(), id);
    let (parts, body) = req.into_parts();
    let body = read_body(body, &parts.headers).await?;
    let mut up = Request::builder()
        .method(parts.method.clone())
        .uri(path.as_str())
        .header(header::HOST, authority.as_str());
    for (k, v) in &parts.headers {
        if k != header::HOST && !DROPPED_HEADERS.contains(&k.as_str()) {
            up = up.header(k, v);
        }
    }
    let up = up
        .body(Full::new(body))
        .map_err(|e| ApiError::internal(format!("building the proxied request: {e}")))?;
    let resp = if loc.https {
        let name = rustls_pki_types::ServerName::IpAddress(loc.ip.into());
        let tls = tokio::time::timeout(
            CONNECT_TIMEOUT,
            tokio_rustls::TlsConnector::from(state.kubelet_tls.clone()).connect(name, tcp),
        )
        .await
        .map_err(|_| reach("net/http: TLS handshake timeout".into()))?
        .map_err(|e| reach(e.to_string()))?;
        send(TokioIo::new(tls), up).await
    } else {
        send(TokioIo::new(tcp), up).await
    }
    .map_err(|e| reach(e.to_string()))?;
    let (mut parts, body) = resp.into_parts();
    for h in DROPPED_HEADERS {
        parts.headers.remove(HeaderName::from_static(h));
    }
    let body = body.map_err(|e| Box::new(e) as crate::server::BoxError);
    Ok(Response::from_parts(parts, body.boxed_unsync()))
}

async fn send<IO>(
    io: IO,
    req: Request<Full<Bytes>>,
) -> Result<Response<hyper::body::Incoming>, hyper::Error>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "proxied connection ended");
        }
    });
    sender.send_request(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_split_as_kubernetes_does() {
        assert_eq!(split_scheme_name_port("web"), Some(("", "web", "")));
        assert_eq!(
            split_scheme_name_port("web:8080"),
            Some(("", "web", "8080"))
        );
        assert_eq!(
            split_scheme_name_port("https:web:443"),
            Some(("https", "web", "443"))
        );
        assert_eq!(split_scheme_name_port("ftp:web:21"), None);
        assert_eq!(split_scheme_name_port(":80"), None);
        assert_eq!(split_scheme_name_port("a:b:c:d"), None);
    }

    #[test]
    fn the_path_after_proxy_goes_to_the_target() {
        let uri: http::Uri = "/api/v1/namespaces/d/pods/web:80/proxy/read?x=1"
            .parse()
            .unwrap();
        assert_eq!(target_path(&uri, "web:80"), "/read?x=1");
        let uri: http::Uri = "/api/v1/nodes/n1/proxy".parse().unwrap();
        assert_eq!(target_path(&uri, "n1"), "/");
    }
}
