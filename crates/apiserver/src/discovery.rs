//! API discovery: legacy (/api, /apis, APIResourceList per group version) and
//! aggregated (apidiscovery.k8s.io/v2, which kubectl 1.32 asks for first).

use bytes::Bytes;
use http::{header, HeaderMap, Response};
use serde_json::{json, Value};

use crate::resources::{ResourceDef, GROUPS, RESOURCES};
use crate::server::{bytes_response, json_response, Body};
use crate::status::ApiError;

const AGGREGATED: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// The server's version as `/version` reports it.
pub const GIT_VERSION: &str = "v1.32.0-orca";

pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "32",
        "gitVersion": GIT_VERSION,
        "gitCommit": "orca",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "n/a (rust)",
        "compiler": "rustc",
        "platform": "linux/amd64",
    })
}

/// True when the client accepts the aggregated v2 discovery document.
fn wants_aggregated(h: &HeaderMap) -> bool {
    h.get_all(header::ACCEPT).iter().any(|v| {
        v.to_str().is_ok_and(|s| {
            s.split(',').any(|m| {
                let m: String = m.chars().filter(|c| !c.is_whitespace()).collect();
                m.contains("g=apidiscovery.k8s.io")
                    && m.contains("v=v2")
                    && !m.contains("v=v2beta1")
                    && m.contains("as=APIGroupDiscoveryList")
            })
        })
    })
}

fn aggregated(groups: Vec<Value>) -> Response<Body> {
    let doc = json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": groups,
    });
    let mut r = bytes_response(200, AGGREGATED, Bytes::from(doc.to_string()));
    r.headers_mut()
        .insert(header::VARY, http::HeaderValue::from_static("Accept"));
    r
}

fn resource_discovery(r: &ResourceDef) -> Value {
    let subs: Vec<Value> = r
        .subresources
        .iter()
        .map(|s| {
            let (kind, verbs) = r.subresource(s);
            let (group, version) = r.subresource_group_version(s);
            json!({"subresource": s, "responseKind": {"group": group, "version": version, "kind": kind}, "verbs": verbs})
        })
        .collect();
    let mut v = json!({
        "resource": r.name,
        "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
        "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": r.singular,
        "verbs": r.verbs(),
    });
    if !r.short_names.is_empty() {
        v["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        v["categories"] = json!(r.categories);
    }
    if !subs.is_empty() {
        v["subresources"] = json!(subs);
    }
    v
}

fn group_discovery(group: &str, version: &str) -> Value {
    let resources: Vec<Value> = RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .map(resource_discovery)
        .collect();
    let mut g = json!({
        "metadata": {"creationTimestamp": null},
        "versions": [{"version": version, "resources": resources, "freshness": "Current"}],
    });
    if !group.is_empty() {
        g["metadata"]["name"] = json!(group);
    }
    g
}

pub fn api(h: &HeaderMap, server_url: &str) -> Response<Body> {
    if wants_aggregated(h) {
        return aggregated(vec![group_discovery("", "v1")]);
    }
    let addr = server_url.trim_start_matches("https://");
    json_response(
        200,
        &json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": addr}],
        }),
    )
}

fn api_group(group: &str, version: &str) -> Value {
    let gv = format!("{group}/{version}");
    json!({
        "name": group,
        "versions": [{"groupVersion": gv, "version": version}],
        "preferredVersion": {"groupVersion": gv, "version": version},
    })
}

/// The groups of `/apis`: those of [`GROUPS`], then metrics.k8s.io (last,
/// as an aggregated API is listed after the built-in groups).
pub fn apis(h: &HeaderMap) -> Response<Body> {
    use crate::metrics_api;
    if wants_aggregated(h) {
        let mut groups: Vec<Value> = GROUPS.iter().map(|(g, v)| group_discovery(g, v)).collect();
        groups.push(metrics_api::group_discovery());
        return aggregated(groups);
    }
    let mut groups: Vec<Value> = GROUPS.iter().map(|(g, v)| api_group(g, v)).collect();
    groups.push(api_group(metrics_api::GROUP, metrics_api::VERSION));
    json_response(
        200,
        &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}),
    )
}

pub fn group(group: &str) -> Result<Response<Body>, ApiError> {
    let metrics = (crate::metrics_api::GROUP, crate::metrics_api::VERSION);
    let (g, v) = GROUPS
        .iter()
        .chain([&metrics])
        .find(|(g, _)| *g == group)
        .ok_or_else(|| {
            ApiError::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            )
        })?;
    let mut doc = api_group(g, v);
    doc["kind"] = json!("APIGroup");
    doc["apiVersion"] = json!("v1");
    Ok(json_response(200, &doc))
}

pub fn resource_list(group: &str, version: &str) -> Response<Body> {
    let mut list = Vec::new();
    for r in RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        let mut e = json!({
            "name": r.name,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": r.verbs(),
        });
        if !r.short_names.is_empty() {
            e["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            e["categories"] = json!(r.categories);
        }
        list.push(e);
        for s in r.subresources {
            let (kind, verbs) = r.subresource(s);
            let mut sub = json!({
                "name": format!("{}/{s}", r.name),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": kind,
                "verbs": verbs,
            });
            // A kind from another group version names it
            // (`deployments/scale` answers autoscaling/v1 Scale).
            let (sub_group, sub_version) = r.subresource_group_version(s);
            if (sub_group, sub_version) != (r.group, r.version) {
                sub["group"] = json!(sub_group);
                sub["version"] = json!(sub_version);
            }
            list.push(sub);
        }
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    json_response(
        200,
        &json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": list}),
    )
}
