//! The Node authorizer: what a node agent (`system:node:<name>` in
//! `system:nodes`) may do, as Kubernetes 1.32's (with
//! AuthorizeNodeWithSelectors): its own Node and Lease, the pods bound to it,
//! and only the Secrets, ConfigMaps, PersistentVolumeClaims and service
//! account tokens those pods reference — found in a graph of pod → node
//! edges kept from the watch cache. Everything else is judged by the static
//! `system:node` rules. Writes it lets through are narrowed further by
//! NodeRestriction admission.

use std::collections::HashMap;
use std::sync::RwLock;

use serde::Deserialize;

use super::rbac::Rule;
use super::Attributes;
use crate::cache::{CacheHook, CachedObj};
use crate::resources::ResourceDef;

pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RefKind {
    Pod,
    Secret,
    ConfigMap,
    PersistentVolumeClaim,
    ServiceAccount,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Ref {
    kind: RefKind,
    namespace: String,
    name: String,
}

#[derive(Default)]
struct Graph {
    /// Bound pods by storage key: their node and what they reference.
    pods: HashMap<String, (String, Vec<Ref>)>,
    /// For each referenced object, how many pods on each node reference it.
    edges: HashMap<Ref, HashMap<String, u32>>,
}

impl Graph {
    fn remove_pod(&mut self, key: &str) {
        let Some((node, refs)) = self.pods.remove(key) else {
            return;
        };
        for r in refs {
            if let Some(nodes) = self.edges.get_mut(&r) {
                if let Some(n) = nodes.get_mut(&node) {
                    *n -= 1;
                    if *n == 0 {
                        nodes.remove(&node);
                    }
                }
                if nodes.is_empty() {
                    self.edges.remove(&r);
                }
            }
        }
    }

    fn add_pod(&mut self, key: &str, node: String, refs: Vec<Ref>) {
        for r in &refs {
            *self
                .edges
                .entry(r.clone())
                .or_default()
                .entry(node.clone())
                .or_default() += 1;
        }
        self.pods.insert(key.to_string(), (node, refs));
    }
}

/// The pod → node graph.
#[derive(Default)]
pub struct NodeGraph {
    graph: RwLock<Graph>,
}

impl NodeGraph {
    /// Whether a pod bound to `node` references this object.
    pub fn related(&self, node: &str, kind: RefKind, namespace: &str, name: &str) -> bool {
        let g = self.graph.read().unwrap_or_else(|e| e.into_inner());
        g.edges
            .get(&Ref {
                kind,
                namespace: namespace.to_string(),
                name: name.to_string(),
            })
            .is_some_and(|nodes| nodes.contains_key(node))
    }
}

impl CacheHook for NodeGraph {
    fn wants(&self, def: &ResourceDef) -> bool {
        def.group.is_empty() && def.name == "pods"
    }

    fn changed(&self, _def: &'static ResourceDef, key: &str, obj: Option<&CachedObj>) {
        let node = obj
            .and_then(|o| o.meta.fields.get("spec.nodeName"))
            .unwrap_or_default();
        let mut g = self.graph.write().unwrap_or_else(|e| e.into_inner());
        if node.is_empty() {
            g.remove_pod(key);
            return;
        }
        // A bound pod's node and references do not change (only ephemeral
        // containers may be added later, which this does not follow).
        if g.pods.get(key).is_some_and(|(n, _)| n == node) {
            return;
        }
        g.remove_pod(key);
        let Some(refs) = obj.and_then(|o| pod_refs(&o.bytes)) else {
            return;
        };
        g.add_pod(key, node.to_string(), refs);
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Named {
    name: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct KeyRefs {
    secret_key_ref: Option<Named>,
    config_map_key_ref: Option<Named>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct EnvVar {
    value_from: Option<KeyRefs>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct EnvFrom {
    secret_ref: Option<Named>,
    config_map_ref: Option<Named>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct Container {
    env: Vec<EnvVar>,
    env_from: Vec<EnvFrom>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct SecretVolume {
    secret_name: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct Projection {
    secret: Option<Named>,
    config_map: Option<Named>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct Projected {
    sources: Vec<Projection>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct Claim {
    claim_name: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct SecretRefHolder {
    secret_ref: Option<Named>,
    node_publish_secret_ref: Option<Named>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct Volume {
    name: String,
    secret: Option<SecretVolume>,
    config_map: Option<Named>,
    projected: Option<Projected>,
    persistent_volume_claim: Option<Claim>,
    ephemeral: Option<serde::de::IgnoredAny>,
    csi: Option<SecretRefHolder>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct Spec {
    service_account_name: Option<String>,
    containers: Vec<Container>,
    init_containers: Vec<Container>,
    ephemeral_containers: Vec<Container>,
    volumes: Vec<Volume>,
    image_pull_secrets: Vec<Named>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PodMeta {
    name: String,
    namespace: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PodRefs {
    metadata: PodMeta,
    spec: Spec,
}

/// What a pod references, as Kubernetes' graph populator collects it.
fn pod_refs(bytes: &[u8]) -> Option<Vec<Ref>> {
    let pod: PodRefs = serde_json::from_slice(bytes).ok()?;
    let ns = pod.metadata.namespace;
    let mut refs = vec![Ref {
        kind: RefKind::Pod,
        namespace: ns.clone(),
        name: pod.metadata.name.clone(),
    }];
    let mut add = |kind: RefKind, name: Option<&String>| {
        if let Some(name) = name.filter(|n| !n.is_empty()) {
            let r = Ref {
                kind,
                namespace: ns.clone(),
                name: name.clone(),
            };
            if !refs.contains(&r) {
                refs.push(r);
            }
        }
    };
    let spec = &pod.spec;
    let sa = spec
        .service_account_name
        .clone()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "default".into());
    add(RefKind::ServiceAccount, Some(&sa));
    for s in &spec.image_pull_secrets {
        add(RefKind::Secret, s.name.as_ref());
    }
    for c in spec
        .containers
        .iter()
        .chain(&spec.init_containers)
        .chain(&spec.ephemeral_containers)
    {
        for e in &c.env {
            if let Some(vf) = &e.value_from {
                add(
                    RefKind::Secret,
                    vf.secret_key_ref.as_ref().and_then(|r| r.name.as_ref()),
                );
                add(
                    RefKind::ConfigMap,
                    vf.config_map_key_ref.as_ref().and_then(|r| r.name.as_ref()),
                );
            }
        }
        for e in &c.env_from {
            add(
                RefKind::Secret,
                e.secret_ref.as_ref().and_then(|r| r.name.as_ref()),
            );
            add(
                RefKind::ConfigMap,
                e.config_map_ref.as_ref().and_then(|r| r.name.as_ref()),
            );
        }
    }
    for v in &spec.volumes {
        add(
            RefKind::Secret,
            v.secret.as_ref().and_then(|s| s.secret_name.as_ref()),
        );
        add(
            RefKind::ConfigMap,
            v.config_map.as_ref().and_then(|c| c.name.as_ref()),
        );
        if let Some(p) = &v.projected {
            for src in &p.sources {
                add(
                    RefKind::Secret,
                    src.secret.as_ref().and_then(|s| s.name.as_ref()),
                );
                add(
                    RefKind::ConfigMap,
                    src.config_map.as_ref().and_then(|c| c.name.as_ref()),
                );
            }
        }
        add(
            RefKind::PersistentVolumeClaim,
            v.persistent_volume_claim
                .as_ref()
                .and_then(|c| c.claim_name.as_ref()),
        );
        if v.ephemeral.is_some() {
            let claim = format!("{}-{}", pod.metadata.name, v.name);
            add(RefKind::PersistentVolumeClaim, Some(&claim));
        }
        if let Some(csi) = &v.csi {
            add(
                RefKind::Secret,
                csi.node_publish_secret_ref
                    .as_ref()
                    .or(csi.secret_ref.as_ref())
                    .and_then(|s| s.name.as_ref()),
            );
        }
    }
    Some(refs)
}

/// The node authorizer's decision for `node`: allowed, or the reason it has
/// no opinion.
pub fn authorize(
    graph: &NodeGraph,
    static_rules: &[Rule],
    node: &str,
    a: &Attributes,
) -> Result<(), String> {
    if a.resource_request {
        let core = a.api_group.is_empty();
        match (a.api_group.as_str(), a.resource.as_str()) {
            ("", "secrets") => return read_namespaced(graph, node, RefKind::Secret, a),
            ("", "configmaps") => return read_namespaced(graph, node, RefKind::ConfigMap, a),
            ("", "persistentvolumeclaims") => {
                if a.subresource == "status" {
                    if !matches!(a.verb.as_str(), "update" | "patch") {
                        return Err("can only get/update/patch this type".into());
                    }
                    return related(graph, node, RefKind::PersistentVolumeClaim, a);
                }
                return get_related(graph, node, RefKind::PersistentVolumeClaim, a);
            }
            ("", "persistentvolumes") => {
                return Err(format!(
                    "no relationship found between node '{node}' and this object"
                ))
            }
            ("", "serviceaccounts") => {
                if a.verb != "create" || a.name.is_empty() {
                    return Err("can only create tokens for individual service accounts".into());
                }
                if a.subresource != "token" {
                    return Err("can only create token subresource of serviceaccount".into());
                }
                return related(graph, node, RefKind::ServiceAccount, a);
            }
            ("coordination.k8s.io", "leases") => return lease(node, a),
            ("", "nodes") if core => return node_object(node, a),
            ("", "pods") if core => {
                if let Some(r) = pod(graph, node, a) {
                    return r;
                }
            }
            _ => {}
        }
    }
    if static_rules.iter().any(|r| r.allows(a)) {
        Ok(())
    } else {
        Err(String::new())
    }
}

fn related(graph: &NodeGraph, node: &str, kind: RefKind, a: &Attributes) -> Result<(), String> {
    if a.name.is_empty() {
        return Err("No Object name found".into());
    }
    if graph.related(node, kind, &a.namespace, &a.name) {
        Ok(())
    } else {
        Err(format!(
            "no relationship found between node '{node}' and this object"
        ))
    }
}

fn get_related(graph: &NodeGraph, node: &str, kind: RefKind, a: &Attributes) -> Result<(), String> {
    if a.verb != "get" {
        return Err("can only get individual resources of this type".into());
    }
    if !a.subresource.is_empty() {
        return Err("cannot get subresource".into());
    }
    related(graph, node, kind, a)
}

fn read_namespaced(
    graph: &NodeGraph,
    node: &str,
    kind: RefKind,
    a: &Attributes,
) -> Result<(), String> {
    if !matches!(a.verb.as_str(), "get" | "list" | "watch") {
        return Err("can only read resources of this type".into());
    }
    if !a.subresource.is_empty() {
        return Err("cannot read subresource".into());
    }
    if a.namespace.is_empty() {
        return Err("can only read namespaced object of this type".into());
    }
    related(graph, node, kind, a)
}

fn lease(node: &str, a: &Attributes) -> Result<(), String> {
    if !matches!(
        a.verb.as_str(),
        "get" | "create" | "update" | "patch" | "delete"
    ) {
        return Err("can only get, create, update, patch, or delete a node lease".into());
    }
    if a.namespace != NODE_LEASE_NAMESPACE {
        return Err(format!(
            "can only access leases in the {NODE_LEASE_NAMESPACE:?} system namespace"
        ));
    }
    if a.verb != "create" && a.name != node {
        return Err("can only access node lease with the same name as the requesting node".into());
    }
    Ok(())
}

fn node_object(node: &str, a: &Attributes) -> Result<(), String> {
    match (a.subresource.as_str(), a.verb.as_str()) {
        // NodeRestriction admission keeps a node to its own Node object.
        ("", "create" | "update" | "patch") | ("status", "update" | "patch") => Ok(()),
        ("", "get" | "list" | "watch") => {
            if a.name == node {
                Ok(())
            } else if a.name.is_empty() {
                Err(format!(
                    "node '{node}' cannot read all nodes, only its own Node object"
                ))
            } else {
                Err(format!(
                    "node '{node}' cannot read '{}', only its own Node object",
                    a.name
                ))
            }
        }
        _ => Err(String::new()),
    }
}

/// `None` when the static rules decide.
fn pod(graph: &NodeGraph, node: &str, a: &Attributes) -> Option<Result<(), String>> {
    Some(match (a.subresource.as_str(), a.verb.as_str()) {
        ("", "get") => get_related(graph, node, RefKind::Pod, a),
        ("", "list" | "watch") => {
            if a.node_name_selector.as_deref() == Some(node) {
                Ok(())
            } else if !a.name.is_empty() {
                related(graph, node, RefKind::Pod, a)
            } else {
                Err("can only list/watch pods with spec.nodeName field selector".into())
            }
        }
        // NodeRestriction admission keeps these to the node's own pods.
        ("", "create" | "delete") | ("status", "update" | "patch") | ("eviction", "create") => {
            Ok(())
        }
        _ => Err(String::new()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_reference_their_secrets_config_maps_claims_and_account() {
        let pod = serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {
                "serviceAccountName": "sa",
                "imagePullSecrets": [{"name": "pull"}],
                "containers": [{"name": "c", "env": [
                    {"name": "A", "valueFrom": {"secretKeyRef": {"name": "s1", "key": "k"}}},
                    {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "c1", "key": "k"}}}],
                    "envFrom": [{"secretRef": {"name": "s2"}}]}],
                "volumes": [
                    {"name": "v1", "secret": {"secretName": "s3"}},
                    {"name": "v2", "configMap": {"name": "c2"}},
                    {"name": "v3", "projected": {"sources": [{"configMap": {"name": "c3"}}]}},
                    {"name": "v4", "persistentVolumeClaim": {"claimName": "data"}}]
            }
        });
        let refs = pod_refs(pod.to_string().as_bytes()).unwrap();
        let names = |k: RefKind| -> Vec<String> {
            refs.iter()
                .filter(|r| r.kind == k)
                .map(|r| r.name.clone())
                .collect()
        };
        assert_eq!(names(RefKind::Secret), vec!["pull", "s1", "s2", "s3"]);
        assert_eq!(names(RefKind::ConfigMap), vec!["c1", "c2", "c3"]);
        assert_eq!(names(RefKind::PersistentVolumeClaim), vec!["data"]);
        assert_eq!(names(RefKind::ServiceAccount), vec!["sa"]);
    }

    #[test]
    fn nodes_read_only_what_their_pods_reference() {
        let g = NodeGraph::default();
        let refs = pod_refs(
            br#"{"metadata":{"name":"p","namespace":"ns"},"spec":{"volumes":[{"name":"v","secret":{"secretName":"s"}}]}}"#,
        )
        .unwrap();
        g.graph
            .write()
            .unwrap()
            .add_pod("/registry/pods/ns/p", "n1".into(), refs);
        let get = |name: &str| Attributes::resource("get", "", "secrets", "", "ns", name);
        assert!(authorize(&g, &[], "n1", &get("s")).is_ok());
        assert!(authorize(&g, &[], "n2", &get("s")).is_err());
        assert!(authorize(&g, &[], "n1", &get("other")).is_err());
        let list_all = Attributes::resource("list", "", "secrets", "", "ns", "");
        assert!(authorize(&g, &[], "n1", &list_all).is_err());
        g.graph.write().unwrap().remove_pod("/registry/pods/ns/p");
        assert!(authorize(&g, &[], "n1", &get("s")).is_err());
        let own_lease = Attributes::resource(
            "update",
            "coordination.k8s.io",
            "leases",
            "",
            NODE_LEASE_NAMESPACE,
            "n1",
        );
        assert!(authorize(&g, &[], "n1", &own_lease).is_ok());
        assert!(authorize(&g, &[], "n2", &own_lease).is_err());
    }
}
