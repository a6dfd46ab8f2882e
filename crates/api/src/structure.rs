//! How the lists and objects of the served kinds merge: one table for both
//! strategic merge patch (the Go types' `patchStrategy`/`patchMergeKey`
//! tags) and server-side apply (their `listType`/`listMapKey` and
//! `structType=atomic`/`mapType=atomic` tags). Paths are field names from
//! the object root, list positions left out. Lists not named here are
//! atomic for both.

use crate::patch::ListStrategy;

/// A list's `x-kubernetes-list-type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListType {
    /// Replaced as a whole; one owner.
    Atomic,
    /// Scalars, each item owned on its own.
    Set,
    /// Objects identified by these key fields (sorted by name).
    Map(&'static [&'static str]),
}

const CONTAINER_LISTS: [&str; 3] = ["containers", "initContainers", "ephemeralContainers"];

/// The server-side apply list type and the strategic merge strategy of the
/// list at `path` in an object of `kind`.
pub fn list_rules(kind: &str, path: &[&str]) -> (ListType, ListStrategy) {
    use ListStrategy::*;
    use ListType::*;
    let n = path.len();
    let last = path.last().copied().unwrap_or("");
    let parent = if n >= 2 { path[n - 2] } else { "" };
    let in_container = CONTAINER_LISTS.contains(&parent);
    match (parent, last) {
        ("metadata", "finalizers") => (Set, MergePrimitives),
        ("metadata", "ownerReferences") => (Map(&["uid"]), MergeKey("uid")),
        ("spec", c) if CONTAINER_LISTS.contains(&c) => (Map(&["name"]), MergeKey("name")),
        (_, "env") if in_container => (Map(&["name"]), MergeKey("name")),
        (_, "ports") if in_container => (
            Map(&["containerPort", "protocol"]),
            MergeKey("containerPort"),
        ),
        (_, "volumeMounts") if in_container => (Map(&["mountPath"]), MergeKey("mountPath")),
        (_, "volumeDevices") if in_container => (Map(&["devicePath"]), MergeKey("devicePath")),
        ("spec", "volumes") => (Map(&["name"]), MergeKey("name")),
        ("spec", "imagePullSecrets") => (Map(&["name"]), MergeKey("name")),
        ("spec", "hostAliases") => (Map(&["ip"]), MergeKey("ip")),
        ("spec", "schedulingGates") => (Map(&["name"]), MergeKey("name")),
        ("spec", "resourceClaims") => (Map(&["name"]), MergeKey("name")),
        ("spec", "topologySpreadConstraints") => (
            Map(&["topologyKey", "whenUnsatisfiable"]),
            MergeKey("topologyKey"),
        ),
        ("spec", "ports") if kind == "Service" => (Map(&["port", "protocol"]), MergeKey("port")),
        ("spec", "podCIDRs") if kind == "Node" => (Set, MergePrimitives),
        // JobStatus.conditions is `listType=atomic` despite its patch tags.
        ("status", "conditions") if kind == "Job" => (Atomic, MergeKey("type")),
        ("status", "conditions") => (Map(&["type"]), MergeKey("type")),
        ("status", "podIPs") | ("status", "hostIPs") => (Map(&["ip"]), MergeKey("ip")),
        ("status", "addresses") if kind == "Node" => (Map(&["type"]), MergeKey("type")),
        ("", "secrets") if kind == "ServiceAccount" => (Map(&["name"]), MergeKey("name")),
        _ => (Atomic, Replace),
    }
}

/// A key field's value when an item leaves it out: the defaulted keys
/// (`protocol: TCP` of ports), as structured-merge-diff takes them from the
/// schema's defaults.
pub fn key_default(key: &str) -> Option<serde_json::Value> {
    (key == "protocol").then(|| serde_json::Value::String("TCP".into()))
}

/// Whether the object at `path` is owned and replaced as a whole
/// (`structType=atomic` structs such as LabelSelector and object
/// references, `mapType=atomic` maps such as a Service's selector).
pub fn atomic_object(path: &[&str]) -> bool {
    let n = path.len();
    let last = path.last().copied().unwrap_or("");
    let parent = if n >= 2 { path[n - 2] } else { "" };
    matches!(
        last,
        "secretKeyRef"
            | "configMapKeyRef"
            | "fieldRef"
            | "resourceFieldRef"
            | "labelSelector"
            | "namespaceSelector"
            | "involvedObject"
            | "targetRef"
            | "related"
    ) || (parent == "spec" && last == "selector")
        || (parent == "nodeAffinity" && last == "requiredDuringSchedulingIgnoredDuringExecution")
}

/// Whether each item of the associative list at `path` is atomic (its
/// element type is an atomic struct: owner and local object references).
pub fn atomic_items(path: &[&str]) -> bool {
    matches!(
        path.last().copied(),
        Some("ownerReferences" | "imagePullSecrets")
    )
}
