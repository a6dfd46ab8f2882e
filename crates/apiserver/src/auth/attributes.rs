//! What a request asks to do, in the terms authorizers judge: kube-apiserver's
//! RequestInfo (verb from the method and path, resource, subresource, name,
//! namespace) and the 403 it answers when no authorizer allows it.

use http::Method;
use serde_json::json;

use super::UserInfo;
use crate::server::{parse_query, q1};
use crate::status::ApiError;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attributes {
    pub verb: String,
    pub resource_request: bool,
    /// The URL path (non-resource requests are judged by it).
    pub path: String,
    pub api_group: String,
    pub api_version: String,
    pub resource: String,
    pub subresource: String,
    pub name: String,
    pub namespace: String,
    /// `spec.nodeName` required by an exact field selector (node
    /// authorizer: a node may list only its own pods).
    pub node_name_selector: Option<String>,
}

impl Attributes {
    /// A resource request (for reviews and internal checks).
    pub fn resource(
        verb: &str,
        group: &str,
        resource: &str,
        subresource: &str,
        namespace: &str,
        name: &str,
    ) -> Attributes {
        Attributes {
            verb: verb.into(),
            resource_request: true,
            api_group: group.into(),
            resource: resource.into(),
            subresource: subresource.into(),
            namespace: namespace.into(),
            name: name.into(),
            ..Default::default()
        }
    }

    pub fn non_resource(verb: &str, path: &str) -> Attributes {
        Attributes {
            verb: verb.into(),
            path: path.into(),
            ..Default::default()
        }
    }

    /// Parses a request as kube-apiserver's RequestInfoFactory does.
    pub fn from_request(method: &Method, path: &str, query: Option<&str>) -> Attributes {
        let mut a = Attributes {
            path: path.to_string(),
            verb: method.as_str().to_ascii_lowercase(),
            ..Default::default()
        };
        let parts: Vec<&str> = path
            .trim_matches('/')
            .split('/')
            .filter(|s| !s.is_empty())
            .collect();
        if parts.len() < 3 {
            return a;
        }
        let mut rest: &[&str] = match parts[0] {
            "api" => &parts[1..],
            "apis" if parts.len() >= 4 => {
                a.api_group = parts[1].to_string();
                &parts[2..]
            }
            _ => return a,
        };
        a.resource_request = true;
        a.api_version = rest[0].to_string();
        rest = &rest[1..];
        if matches!(rest[0], "watch" | "proxy") {
            if rest.len() < 2 {
                // Kubernetes refuses such a path; judge it as a non-resource.
                a.resource_request = false;
                return a;
            }
            a.verb = rest[0].to_string();
            rest = &rest[1..];
        } else {
            a.verb = match *method {
                Method::POST => "create",
                Method::GET | Method::HEAD => "get",
                Method::PUT => "update",
                Method::PATCH => "patch",
                Method::DELETE => "delete",
                _ => "",
            }
            .to_string();
        }
        if rest[0] == "namespaces" && rest.len() > 1 {
            a.namespace = rest[1].to_string();
            if rest.len() > 2 && !matches!(rest[2], "status" | "finalize") {
                rest = &rest[2..];
            }
        }
        if rest.len() >= 3 && a.verb != "proxy" {
            a.subresource = rest[2].to_string();
        }
        if rest.len() >= 2 {
            a.name = rest[1].to_string();
        }
        if !rest.is_empty() {
            a.resource = rest[0].to_string();
        }
        if a.name.is_empty() && a.verb == "get" {
            let q = parse_query(query);
            let watch = q1(&q, "watch").is_some_and(|w| !matches!(w, "false" | "0" | ""));
            a.verb = if watch { "watch" } else { "list" }.into();
            if let Some(fs) = q1(&q, "fieldSelector") {
                for term in fs.split(',') {
                    let (k, v) = match term.split_once("==").or_else(|| term.split_once('=')) {
                        Some(kv) if !term.contains("!=") => kv,
                        _ => continue,
                    };
                    match k.trim() {
                        "metadata.name" if is_path_segment(v.trim()) => {
                            a.name = v.trim().to_string()
                        }
                        "spec.nodeName" => a.node_name_selector = Some(v.trim().to_string()),
                        _ => {}
                    }
                }
            }
        }
        if a.name.is_empty() && a.verb == "delete" {
            a.verb = "deletecollection".into();
        }
        a
    }

    /// Mutating verbs count against the mutating in-flight limit.
    pub fn is_mutating(&self) -> bool {
        !matches!(self.verb.as_str(), "get" | "list" | "watch")
    }

    /// Watches and streams (logs, exec, attach, port-forward, proxy) hold
    /// their request open; the in-flight limit does not count them.
    pub fn is_long_running(&self, follow: bool) -> bool {
        self.verb == "watch"
            || self.verb == "proxy"
            || matches!(
                self.subresource.as_str(),
                "exec" | "attach" | "portforward" | "proxy"
            )
            || (self.subresource == "log" && follow)
    }

    /// The resource as RBAC names it: `pods/status`.
    pub fn combined_resource(&self) -> String {
        if self.subresource.is_empty() {
            self.resource.clone()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        }
    }

    /// The 403 kube-apiserver answers when no authorizer allowed this,
    /// worded as its `Forbidden` response writer does.
    pub fn forbidden(&self, user: &UserInfo, reason: &str) -> ApiError {
        let msg = if !self.resource_request {
            format!(
                "User {:?} cannot {} path {:?}",
                user.name, self.verb, self.path
            )
        } else if !self.namespace.is_empty() {
            format!(
                "User {:?} cannot {} resource {:?} in API group {:?} in the namespace {:?}",
                user.name,
                self.verb,
                self.combined_resource(),
                self.api_group,
                self.namespace
            )
        } else {
            format!(
                "User {:?} cannot {} resource {:?} in API group {:?} at the cluster scope",
                user.name,
                self.verb,
                self.combined_resource(),
                self.api_group
            )
        };
        let msg = if reason.is_empty() {
            msg
        } else {
            format!("{msg}: {reason}")
        };
        forbidden_error(&self.api_group, &self.resource, &self.name, &msg)
    }
}

/// Kubernetes' NewForbidden: `<resource>[.<group>] ["<name>"] is forbidden:
/// <why>`, with the resource as `details.kind`.
pub fn forbidden_error(group: &str, resource: &str, name: &str, why: &str) -> ApiError {
    if resource.is_empty() {
        return ApiError::forbidden(format!("forbidden: {why}")).with_details(json!({}));
    }
    let qualified = if group.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}.{group}")
    };
    let message = if name.is_empty() {
        format!("{qualified} is forbidden: {why}")
    } else {
        format!("{qualified} {name:?} is forbidden: {why}")
    };
    let mut details = serde_json::Map::new();
    if !name.is_empty() {
        details.insert("name".into(), json!(name));
    }
    if !group.is_empty() {
        details.insert("group".into(), json!(group));
    }
    details.insert("kind".into(), json!(resource));
    ApiError::forbidden(message).with_details(serde_json::Value::Object(details))
}

/// What Kubernetes accepts as a name in a URL path segment.
fn is_path_segment(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '%'])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(method: Method, uri: &str) -> Attributes {
        let (path, query) = match uri.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (uri, None),
        };
        Attributes::from_request(&method, path, query)
    }

    #[test]
    fn verbs_and_scopes_as_kube_apiserver_reads_them() {
        let a = parse(Method::GET, "/api/v1/namespaces/default/pods");
        assert_eq!(
            (a.verb.as_str(), a.resource.as_str(), a.namespace.as_str()),
            ("list", "pods", "default")
        );
        let a = parse(Method::GET, "/api/v1/pods?watch=1");
        assert_eq!((a.verb.as_str(), a.namespace.as_str()), ("watch", ""));
        let a = parse(Method::GET, "/api/v1/namespaces/default");
        assert_eq!(
            (a.resource.as_str(), a.name.as_str(), a.namespace.as_str()),
            ("namespaces", "default", "default")
        );
        let a = parse(Method::PUT, "/api/v1/namespaces/ns1/finalize");
        assert_eq!(
            (
                a.verb.as_str(),
                a.resource.as_str(),
                a.name.as_str(),
                a.subresource.as_str()
            ),
            ("update", "namespaces", "ns1", "finalize")
        );
        let a = parse(Method::POST, "/api/v1/namespaces/d/pods/p/exec?command=ls");
        assert_eq!(
            (a.verb.as_str(), a.combined_resource().as_str()),
            ("create", "pods/exec")
        );
        let a = parse(Method::DELETE, "/apis/apps/v1/namespaces/d/deployments");
        assert_eq!(
            (a.verb.as_str(), a.api_group.as_str()),
            ("deletecollection", "apps")
        );
        let a = parse(
            Method::GET,
            "/api/v1/namespaces/d/secrets?fieldSelector=metadata.name%3Ds1",
        );
        assert_eq!((a.verb.as_str(), a.name.as_str()), ("list", "s1"));
        let a = parse(Method::GET, "/api/v1/pods?fieldSelector=spec.nodeName%3Dn1");
        assert_eq!(a.node_name_selector.as_deref(), Some("n1"));
        let a = parse(Method::GET, "/apis");
        assert!(!a.resource_request);
        assert_eq!(a.verb, "get");
        let a = parse(Method::GET, "/api/v1");
        assert!(!a.resource_request);
    }

    #[test]
    fn forbidden_messages_match_kubernetes() {
        let bob = UserInfo::authenticated("bob", &["dev"]);
        let a = parse(Method::GET, "/api/v1/namespaces/default/pods");
        let e = a.forbidden(&bob, "");
        assert_eq!(
            e.message,
            r#"pods is forbidden: User "bob" cannot list resource "pods" in API group "" in the namespace "default""#
        );
        assert_eq!(e.details, Some(json!({"kind": "pods"})));
        let a = parse(Method::GET, "/api/v1/nodes");
        assert_eq!(
            a.forbidden(&bob, "").message,
            r#"nodes is forbidden: User "bob" cannot list resource "nodes" in API group "" at the cluster scope"#
        );
        let a = parse(Method::DELETE, "/api/v1/namespaces/default/services/x");
        let e = a.forbidden(&bob, "");
        assert_eq!(
            e.message,
            r#"services "x" is forbidden: User "bob" cannot delete resource "services" in API group "" in the namespace "default""#
        );
        assert_eq!(e.details, Some(json!({"name": "x", "kind": "services"})));
        let a = parse(Method::GET, "/api");
        let e = a.forbidden(&UserInfo::anonymous(), "");
        assert_eq!(
            e.message,
            r#"forbidden: User "system:anonymous" cannot get path "/api""#
        );
        assert_eq!(e.details, Some(json!({})));
    }
}
