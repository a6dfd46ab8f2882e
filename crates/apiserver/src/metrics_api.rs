//! `metrics.k8s.io/v1beta1` served by the API server itself, as
//! metrics-server serves it (no add-on to install): NodeMetrics and
//! PodMetrics, listed and read, pods by namespace and label selector, from
//! each node agent's Summary API (`/stats/summary`), read when asked. The
//! agent samples every 10 s and its CPU rates span two samples, so that is
//! the `window`, and `timestamp` is the later sample's time.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, Response};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use orca_api::selectors::LabelSelector;
use serde_json::{json, Value};

use crate::proxy::agent_endpoint;
use crate::resources::{self, ResourceDef};
use crate::selectors::{field_set, FieldSelector};
use crate::server::{json_response, parse_query, q1, Body, State};
use crate::status::ApiError;

pub const GROUP: &str = "metrics.k8s.io";
pub const VERSION: &str = "v1beta1";

/// The agents' sampling interval, which their CPU rates span.
const WINDOW: &str = "10s";

/// How long one agent has to answer (metrics-server's scrape timeout).
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);

/// The resources as the legacy APIResourceList lists them.
pub fn resource_list() -> Value {
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": format!("{GROUP}/{VERSION}"),
        "resources": [
            {"name": "nodes", "singularName": "node", "namespaced": false, "kind": "NodeMetrics", "verbs": ["get", "list"]},
            {"name": "pods", "singularName": "pod", "namespaced": true, "kind": "PodMetrics", "verbs": ["get", "list"]},
        ],
    })
}

/// The group in aggregated discovery.
pub fn group_discovery() -> Value {
    let res = |name: &str, singular: &str, kind: &str, scope: &str| {
        json!({"resource": name, "responseKind": {"group": GROUP, "version": VERSION, "kind": kind},
               "scope": scope, "singularResource": singular, "verbs": ["get", "list"]})
    };
    json!({
        "metadata": {"name": GROUP, "creationTimestamp": null},
        "versions": [{"version": VERSION, "freshness": "Current", "resources": [
            res("nodes", "node", "NodeMetrics", "Cluster"),
            res("pods", "pod", "PodMetrics", "Namespaced"),
        ]}],
    })
}

fn not_found_path() -> ApiError {
    ApiError::new(
        404,
        "NotFound",
        "the server could not find the requested resource",
    )
    .with_details(json!({}))
}

/// Answers `/apis/metrics.k8s.io/v1beta1/<rest>`.
pub async fn serve(
    state: &Arc<State>,
    method: &Method,
    query: Option<&str>,
    rest: &[&str],
) -> Result<Response<Body>, ApiError> {
    let (resource, ns, name) = match rest {
        [] => return Ok(json_response(200, &resource_list())),
        ["nodes"] => ("nodes", None, None),
        ["nodes", name] => ("nodes", None, Some(*name)),
        ["pods"] => ("pods", None, None),
        ["namespaces", ns, "pods"] => ("pods", Some(*ns), None),
        ["namespaces", ns, "pods", name] => ("pods", Some(*ns), Some(*name)),
        _ => return Err(not_found_path()),
    };
    let q = parse_query(query);
    if method != Method::GET || matches!(q1(&q, "watch"), Some("1" | "true")) {
        return Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource: {method} {resource}"
        )));
    }
    let labels = LabelSelector::parse(q1(&q, "labelSelector").unwrap_or(""))
        .map_err(|e| ApiError::bad_request(format!("unable to parse labelSelector: {}", e.0)))?;
    // Field selectors are the core kind's (`kubectl top pod --field-selector`).
    let def = resources::find("", "v1", resource).ok_or_else(not_found_path)?;
    let fields = FieldSelector::parse(q1(&q, "fieldSelector").unwrap_or(""), def)
        .map_err(|e| ApiError::bad_request(format!("unable to parse fieldSelector: {e}")))?;
    let selector = Selector {
        labels,
        fields,
        def,
    };
    // A named object that does not exist is the core resource's NotFound,
    // as metrics-server answers.
    if let Some(n) = name {
        let key = match ns {
            Some(ns) => format!("{ns}/{n}"),
            None => n.to_string(),
        };
        if cached(state, resource, ns)
            .iter()
            .all(|o| o["metadata"]["name"] != n)
        {
            return Err(ApiError::not_found(resource, "", &key));
        }
    }
    let summaries = scrape_all(state).await;
    if resource == "nodes" {
        let items = node_metrics(state, &summaries, name, &selector);
        return match name {
            Some(n) => items
                .into_iter()
                .next()
                .map(|v| json_response(200, &v))
                .ok_or_else(|| ApiError::not_found("nodemetrics", GROUP, n)),
            None => Ok(list("NodeMetricsList", items)),
        };
    }
    let items = pod_metrics(state, &summaries, ns, name, &selector);
    match (ns, name) {
        (Some(ns), Some(n)) => items
            .into_iter()
            .next()
            .map(|v| json_response(200, &v))
            .ok_or_else(|| ApiError::not_found("podmetrics", GROUP, &format!("{ns}/{n}"))),
        _ => Ok(list("PodMetricsList", items)),
    }
}

/// What a list is narrowed to, by the core object's labels and fields.
struct Selector {
    labels: LabelSelector,
    fields: FieldSelector,
    def: &'static ResourceDef,
}

impl Selector {
    fn matches(&self, obj: &Value) -> bool {
        self.labels.matches_object(obj) && self.fields.matches(&field_set(self.def, obj))
    }
}

fn list(kind: &str, items: Vec<Value>) -> Response<Body> {
    json_response(
        200,
        &json!({"kind": kind, "apiVersion": format!("{GROUP}/{VERSION}"), "metadata": {}, "items": items}),
    )
}

/// The objects of a core resource from the watch cache.
fn cached(state: &State, resource: &str, ns: Option<&str>) -> Vec<Value> {
    let Some(def) = resources::find("", "v1", resource) else {
        return Vec::new();
    };
    let prefix = match ns {
        Some(ns) => format!("{}{ns}/", def.prefix()),
        None => def.prefix(),
    };
    let (objs, _) = state.cache.resource(def).list(&prefix);
    objs.iter()
        .filter_map(|o| serde_json::from_slice(&o.bytes).ok())
        .collect()
}

/// Each reachable node's Summary, by node name. Nodes that advertise no
/// agent port (virtual nodes, which run no containers and so have no
/// usage to report) are left out, as are agents that do not answer in
/// time; `kubectl top node` shows both as `<unknown>`, as it shows nodes
/// metrics-server cannot scrape.
async fn scrape_all(state: &Arc<State>) -> HashMap<String, Value> {
    let names: Vec<String> = cached(state, "nodes", None)
        .iter()
        .filter(|n| {
            n["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
                .as_u64()
                .is_some_and(|p| p > 0)
        })
        .filter_map(|n| n["metadata"]["name"].as_str().map(String::from))
        .collect();
    let scrapes = names.into_iter().map(|name| async move {
        let summary = tokio::time::timeout(SCRAPE_TIMEOUT, scrape(state, &name)).await;
        match summary {
            Ok(Ok(v)) => Some((name, v)),
            Ok(Err(e)) => {
                tracing::debug!(node = %name, error = %e, "could not read the node's summary");
                None
            }
            Err(_) => None,
        }
    });
    futures::future::join_all(scrapes)
        .await
        .into_iter()
        .flatten()
        .collect()
}

async fn scrape(state: &State, node: &str) -> Result<Value, String> {
    let (ip, port) = agent_endpoint(state, node)
        .await
        .map_err(|e| e.message.clone())?;
    let tcp = tokio::net::TcpStream::connect((ip, port))
        .await
        .map_err(|e| e.to_string())?;
    let name = rustls_pki_types::ServerName::IpAddress(ip.into());
    let tls = tokio_rustls::TlsConnector::from(state.kubelet_tls.clone())
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = Request::get("/stats/summary")
        .header(header::HOST, crate::proxy::host_port(ip, port))
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("the agent answered {}", resp.status()));
    }
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    serde_json::from_slice(&body).map_err(|e| e.to_string())
}

/// A CPU rate in nanocores as metrics-server writes it (a Quantity of
/// scale -9 in canonical form: `123456789n`, `250m`, `2`).
pub fn cpu_quantity(nanocores: u64) -> String {
    if nanocores == 0 {
        return "0".into();
    }
    let (mut v, mut exp) = (nanocores, -9i32);
    while v % 1000 == 0 && exp < 9 {
        v /= 1000;
        exp += 3;
    }
    let suffix = match exp {
        -9 => "n",
        -6 => "u",
        -3 => "m",
        0 => "",
        3 => "k",
        6 => "M",
        _ => "G",
    };
    format!("{v}{suffix}")
}

/// Bytes as a binary-SI Quantity in canonical form (`1536Ki`, `1000`).
pub fn memory_quantity(bytes: u64) -> String {
    if bytes < 1024 {
        return bytes.to_string();
    }
    let (mut v, mut i) = (bytes, 0);
    while v % 1024 == 0 && i < 6 {
        v /= 1024;
        i += 1;
    }
    let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][i];
    format!("{v}{suffix}")
}

/// `{cpu, memory}` of a Summary entry with a CPU rate; `None` without one
/// (the first sample after a start), as metrics-server skips those.
fn usage(entry: &Value) -> Option<Value> {
    let cpu = entry["cpu"]["usageNanoCores"].as_u64()?;
    let mem = entry["memory"]["workingSetBytes"].as_u64()?;
    Some(json!({"cpu": cpu_quantity(cpu), "memory": memory_quantity(mem)}))
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn metadata(obj: &Value) -> Value {
    let mut m = json!({"name": obj["metadata"]["name"], "creationTimestamp": now()});
    if let Some(ns) = obj["metadata"]["namespace"].as_str() {
        m["namespace"] = json!(ns);
    }
    if let Some(l) = obj["metadata"]["labels"].as_object() {
        m["labels"] = json!(l);
    }
    m
}

fn node_metrics(
    state: &State,
    summaries: &HashMap<String, Value>,
    name: Option<&str>,
    selector: &Selector,
) -> Vec<Value> {
    let mut nodes = cached(state, "nodes", None);
    nodes.retain(|n| name.is_none_or(|want| n["metadata"]["name"] == want));
    nodes.retain(|n| selector.matches(n));
    nodes
        .iter()
        .filter_map(|n| {
            let node = &summaries.get(n["metadata"]["name"].as_str()?)?["node"];
            Some(json!({
                "kind": "NodeMetrics",
                "apiVersion": format!("{GROUP}/{VERSION}"),
                "metadata": metadata(n),
                "timestamp": node["cpu"]["time"],
                "window": WINDOW,
                "usage": usage(node)?,
            }))
        })
        .collect()
}

fn pod_metrics(
    state: &State,
    summaries: &HashMap<String, Value>,
    ns: Option<&str>,
    name: Option<&str>,
    selector: &Selector,
) -> Vec<Value> {
    // (namespace, name) -> the pod's entry in its node's summary.
    let stats: HashMap<(&str, &str), &Value> = summaries
        .values()
        .flat_map(|s| s["pods"].as_array().into_iter().flatten())
        .filter_map(|p| {
            let r = &p["podRef"];
            Some(((r["namespace"].as_str()?, r["name"].as_str()?), p))
        })
        .collect();
    let mut pods = cached(state, "pods", ns);
    pods.retain(|p| name.is_none_or(|want| p["metadata"]["name"] == want));
    pods.retain(|p| selector.matches(p));
    pods.iter()
        .filter_map(|p| {
            let key = (
                p["metadata"]["namespace"].as_str()?,
                p["metadata"]["name"].as_str()?,
            );
            let entry = stats.get(&key)?;
            // Only the incarnation the API knows (a pod recreated under the
            // same name is another pod).
            if entry["podRef"]["uid"] != p["metadata"]["uid"] {
                return None;
            }
            let containers = entry["containers"]
                .as_array()?
                .iter()
                .map(|c| Some(json!({"name": c["name"], "usage": usage(c)?})))
                .collect::<Option<Vec<Value>>>()?;
            let timestamp = entry["containers"]
                .as_array()?
                .iter()
                .filter_map(|c| c["cpu"]["time"].as_str())
                .max()?;
            Some(json!({
                "kind": "PodMetrics",
                "apiVersion": format!("{GROUP}/{VERSION}"),
                "metadata": metadata(p),
                "timestamp": timestamp,
                "window": WINDOW,
                "containers": containers,
            }))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_are_canonical_as_metrics_server_writes_them() {
        assert_eq!(cpu_quantity(0), "0");
        assert_eq!(cpu_quantity(123_456_789), "123456789n");
        assert_eq!(cpu_quantity(250_000_000), "250m");
        assert_eq!(cpu_quantity(2_000_000_000), "2");
        assert_eq!(cpu_quantity(1_500), "1500n");
        assert_eq!(memory_quantity(1000), "1000");
        assert_eq!(memory_quantity(1536 * 1024), "1536Ki");
        assert_eq!(memory_quantity(64 * 1024 * 1024), "64Mi");
        assert_eq!(memory_quantity(1_000_001), "1000001");
    }
}
