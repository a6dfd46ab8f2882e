//! The API server's `/metrics` in Prometheus' text format, with
//! kube-apiserver's names, labels and buckets: requests counted and timed
//! per verb (as `apiserver_request_total` reports it: `LIST`, `WATCH`,
//! `APPLY`, `CONNECT`...), group, version, resource, subresource and scope,
//! the requests in flight under the max-in-flight limits, and the objects
//! stored per resource. One registry per server, so several servers in one
//! process (the tests) count apart.

use http::{HeaderMap, Method};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
};

use crate::auth::Attributes;
use crate::resources::RESOURCES;
use crate::server::State;

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    durations: HistogramVec,
    inflight: IntGaugeVec,
    storage_objects: IntGaugeVec,
}

/// kube-apiserver's `apiserver_request_duration_seconds` buckets.
const DURATION_BUCKETS: &[f64] = &[
    0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0,
    10.0, 15.0, 20.0, 30.0, 45.0, 60.0,
];

const LABELS: &[&str] = &[
    "verb",
    "dry_run",
    "group",
    "version",
    "resource",
    "subresource",
    "scope",
    "component",
];

/// What one request is counted under.
pub struct RequestLabels {
    values: [String; 8],
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut with_code = LABELS.to_vec();
        with_code.push("code");
        let requests = IntCounterVec::new(
            Opts::new(
                "apiserver_request_total",
                "Counter of apiserver requests broken out for each verb, dry run value, group, version, resource, scope, component, and HTTP response code.",
            ),
            &with_code,
        )
        .expect("valid metric");
        let durations = HistogramVec::new(
            HistogramOpts::new(
                "apiserver_request_duration_seconds",
                "Response latency distribution in seconds for each verb, dry run value, group, version, resource, subresource, scope and component.",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
            LABELS,
        )
        .expect("valid metric");
        let inflight = IntGaugeVec::new(
            Opts::new(
                "apiserver_current_inflight_requests",
                "Number of requests currently executing in this apiserver per request kind (readOnly, mutating).",
            ),
            &["request_kind"],
        )
        .expect("valid metric");
        let storage_objects = IntGaugeVec::new(
            Opts::new(
                "apiserver_storage_objects",
                "Number of stored objects at the time of last check split by kind.",
            ),
            &["resource"],
        )
        .expect("valid metric");
        let registry = Registry::new();
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(durations.clone()),
            Box::new(inflight.clone()),
            Box::new(storage_objects.clone()),
        ] {
            registry.register(c).expect("metrics are registered once");
        }
        Metrics {
            registry,
            requests,
            durations,
            inflight,
            storage_objects,
        }
    }

    /// Counts a request answered with `code` after `seconds`.
    pub fn observe(&self, labels: &RequestLabels, code: u16, seconds: f64) {
        let v: Vec<&str> = labels.values.iter().map(String::as_str).collect();
        self.durations.with_label_values(&v).observe(seconds);
        let mut with_code = v;
        let code = code.to_string();
        with_code.push(&code);
        self.requests.with_label_values(&with_code).inc();
    }
}

/// The labels of a request, or `None` for a path kube-apiserver does not
/// count (non-resource paths other than the health endpoints).
pub fn labels(
    attrs: &Attributes,
    method: &Method,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Option<RequestLabels> {
    let q = crate::server::parse_query(query);
    let dry_run = crate::server::q1(&q, "dryRun").unwrap_or("").to_string();
    if !attrs.resource_request {
        let root = attrs.path.trim_end_matches('/');
        if !matches!(root, "/healthz" | "/livez" | "/readyz") {
            return None;
        }
        // As kube-apiserver's health handlers: the path as the subresource,
        // no component.
        let values = [
            method.as_str().to_string(),
            dry_run,
            String::new(),
            String::new(),
            String::new(),
            root.to_string(),
            String::new(),
            String::new(),
        ];
        return Some(RequestLabels { values });
    }
    let watch = crate::server::q1(&q, "watch").is_some_and(|w| !matches!(w, "false" | "0"));
    let apply = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/apply-patch"));
    let verb = match attrs.verb.as_str() {
        _ if watch => "WATCH",
        _ if matches!(
            attrs.subresource.as_str(),
            "exec" | "attach" | "portforward" | "proxy"
        ) =>
        {
            "CONNECT"
        }
        "proxy" => "CONNECT",
        "create" => "POST",
        "update" => "PUT",
        "patch" if apply => "APPLY",
        other => return Some(resource_labels(attrs, &other.to_ascii_uppercase(), dry_run)),
    };
    Some(resource_labels(attrs, verb, dry_run))
}

fn resource_labels(attrs: &Attributes, verb: &str, dry_run: String) -> RequestLabels {
    let scope = if !attrs.namespace.is_empty() {
        "namespace"
    } else if !attrs.name.is_empty() {
        "resource"
    } else {
        "cluster"
    };
    RequestLabels {
        values: [
            verb.to_string(),
            dry_run,
            attrs.api_group.clone(),
            attrs.api_version.clone(),
            attrs.resource.clone(),
            attrs.subresource.clone(),
            scope.to_string(),
            "apiserver".to_string(),
        ],
    }
}

/// The text exposition of every metric, with the gauges read now.
pub fn render(state: &State) -> Vec<u8> {
    let m = &state.metrics;
    let (read_only, mutating) = state.inflight.in_use();
    m.inflight
        .with_label_values(&["readOnly"])
        .set(read_only as i64);
    m.inflight
        .with_label_values(&["mutating"])
        .set(mutating as i64);
    for def in RESOURCES.iter().filter(|d| d.verbs().contains(&"get")) {
        let resource = if def.group.is_empty() {
            def.name.to_string()
        } else {
            format!("{}.{}", def.name, def.group)
        };
        m.storage_objects
            .with_label_values(&[&resource])
            .set(state.cache.resource(def).len() as i64);
    }
    let mut out = Vec::new();
    let _ = prometheus::TextEncoder::new().encode(&m.registry.gather(), &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verb_scope(
        method: Method,
        path: &str,
        query: Option<&str>,
        ct: &str,
    ) -> Option<(String, String)> {
        let attrs = Attributes::from_request(&method, path, query);
        let mut h = HeaderMap::new();
        h.insert(http::header::CONTENT_TYPE, ct.parse().unwrap());
        labels(&attrs, &method, query, &h).map(|l| (l.values[0].clone(), l.values[6].clone()))
    }

    #[test]
    fn verbs_and_scopes_as_kube_apiserver_reports_them() {
        let v = |m, p, q, ct| verb_scope(m, p, q, ct).unwrap();
        let pair = |a: &str, b: &str| (a.to_string(), b.to_string());
        assert_eq!(
            v(Method::GET, "/api/v1/pods", None, ""),
            pair("LIST", "cluster")
        );
        assert_eq!(
            v(
                Method::GET,
                "/api/v1/namespaces/d/pods",
                Some("watch=true"),
                ""
            ),
            pair("WATCH", "namespace")
        );
        assert_eq!(
            v(Method::GET, "/api/v1/nodes/n", None, ""),
            pair("GET", "resource")
        );
        assert_eq!(
            v(
                Method::PATCH,
                "/apis/apps/v1/namespaces/d/deployments/x",
                None,
                "application/apply-patch+yaml"
            ),
            pair("APPLY", "namespace")
        );
        assert_eq!(
            v(
                Method::PATCH,
                "/apis/apps/v1/namespaces/d/deployments/x",
                None,
                "application/merge-patch+json"
            ),
            pair("PATCH", "namespace")
        );
        assert_eq!(
            v(Method::POST, "/api/v1/namespaces/d/pods/p/exec", None, ""),
            pair("CONNECT", "namespace")
        );
        assert_eq!(
            v(Method::GET, "/api/v1/nodes/n/proxy/stats/summary", None, ""),
            pair("CONNECT", "resource")
        );
        assert_eq!(
            v(Method::DELETE, "/api/v1/namespaces/d/pods", None, ""),
            pair("DELETECOLLECTION", "namespace")
        );
        assert_eq!(v(Method::GET, "/livez", None, ""), pair("GET", ""));
        assert!(verb_scope(Method::GET, "/version", None, "").is_none());
    }
}
