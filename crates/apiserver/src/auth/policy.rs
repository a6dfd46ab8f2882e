//! Kubernetes' bootstrap RBAC policy (`bootstrap-policy.txt`), reconciled
//! into the store at every start as kube-apiserver's `rbac/bootstrap-roles`
//! post-start hook does: missing objects are created; existing ones whose
//! `rbac.authorization.kubernetes.io/autoupdate` annotation is not "false"
//! get the missing rules, subjects, labels and annotations added (nothing
//! is removed, so an operator's additions stay).

use std::sync::{Arc, OnceLock};

use serde_json::{json, Map, Value};

use super::rbac::{covers, Rule, GROUP};
use crate::handlers::now;
use crate::resources::{self, ResourceDef};
use crate::server::State;

const DATA: &str = include_str!("bootstrap-policy.txt");
const AUTOUPDATE: &str = "rbac.authorization.kubernetes.io/autoupdate";
const BOOTSTRAPPING: &str = "kubernetes.io/bootstrapping";

/// One object of the policy.
pub struct Object {
    pub kind: &'static str,
    pub namespace: Option<String>,
    pub name: String,
    pub body: Value,
}

fn list(s: &str) -> Vec<String> {
    s.split(',')
        .map(|x| if x == "core" { "" } else { x }.to_string())
        .collect()
}

fn new_object(kind: &'static str, namespace: Option<&str>, name: &str, defaults: bool) -> Object {
    let mut meta = json!({"name": name});
    if let Some(ns) = namespace {
        meta["namespace"] = json!(ns);
    }
    if defaults {
        meta["labels"] = json!({BOOTSTRAPPING: "rbac-defaults"});
        meta["annotations"] = json!({AUTOUPDATE: "true"});
    }
    let mut body = json!({"apiVersion": format!("{GROUP}/v1"), "kind": kind, "metadata": meta});
    if kind.ends_with("Role") {
        body["rules"] = json!([]);
    } else {
        body["subjects"] = json!([]);
    }
    Object {
        kind,
        namespace: namespace.map(str::to_string),
        name: name.to_string(),
        body,
    }
}

fn role_ref(kind_name: &str) -> Value {
    let (kind, name) = kind_name
        .split_once('/')
        .unwrap_or(("ClusterRole", kind_name));
    json!({"apiGroup": GROUP, "kind": kind, "name": name})
}

fn parse() -> Vec<Object> {
    let mut out: Vec<Object> = Vec::new();
    let mut defaults = true;
    for line in DATA.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let w: Vec<&str> = line.split_whitespace().collect();
        match w.as_slice() {
            ["orca"] => defaults = false,
            ["clusterrole", name] => out.push(new_object("ClusterRole", None, name, defaults)),
            ["role", ns, name] => out.push(new_object("Role", Some(ns), name, defaults)),
            ["controller", name] => {
                let full = format!("system:controller:{name}");
                out.push(new_object("ClusterRole", None, &full, defaults));
                // Its rules follow: `last_role` skips this binding.
                let mut b = new_object("ClusterRoleBinding", None, &full, defaults);
                b.body["roleRef"] = role_ref(&full);
                b.body["subjects"] =
                    json!([{"kind": "ServiceAccount", "name": name, "namespace": "kube-system"}]);
                out.push(b);
            }
            ["clusterrolebinding", name, role] => {
                let mut b = new_object("ClusterRoleBinding", None, name, defaults);
                b.body["roleRef"] = role_ref(role);
                out.push(b);
            }
            ["rolebinding", ns, name, role] => {
                let mut b = new_object("RoleBinding", Some(ns), name, defaults);
                b.body["roleRef"] = role_ref(role);
                out.push(b);
            }
            ["label", kv] | ["aggregate", kv] => {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                let Some(o) = last_role(&mut out) else {
                    continue;
                };
                if w[0] == "label" {
                    o.body["metadata"]["labels"][k] = json!(v);
                } else {
                    let sel = json!({"matchLabels": {k: v}});
                    match o.body["aggregationRule"]["clusterRoleSelectors"].as_array_mut() {
                        Some(a) => a.push(sel),
                        None => o.body["aggregationRule"] = json!({"clusterRoleSelectors": [sel]}),
                    }
                }
            }
            ["rule", verbs, groups, resources, names @ ..] => {
                let mut r = json!({"verbs": list(verbs), "apiGroups": list(groups), "resources": list(resources)});
                if let [names] = names {
                    r["resourceNames"] = json!(list(names));
                }
                if let Some(o) = last_role(&mut out) {
                    push(&mut o.body["rules"], r);
                }
            }
            ["url", verbs, urls] => {
                let r = json!({"verbs": list(verbs), "nonResourceURLs": list(urls)});
                if let Some(o) = last_role(&mut out) {
                    push(&mut o.body["rules"], r);
                }
            }
            [kind @ ("user" | "group" | "sa"), who] => {
                let s = match *kind {
                    "user" => json!({"apiGroup": GROUP, "kind": "User", "name": who}),
                    "group" => json!({"apiGroup": GROUP, "kind": "Group", "name": who}),
                    _ => {
                        let (ns, name) = who.split_once('/').unwrap_or(("kube-system", who));
                        json!({"kind": "ServiceAccount", "name": name, "namespace": ns})
                    }
                };
                if let Some(o) = out.last_mut().filter(|o| o.kind.ends_with("Binding")) {
                    push(&mut o.body["subjects"], s);
                }
            }
            _ => tracing::error!(line, "unreadable line in the bootstrap RBAC policy"),
        }
    }
    // Aggregated roles start without rules: the aggregation fills them.
    for o in &mut out {
        if o.body.get("aggregationRule").is_some() {
            o.body["rules"] = Value::Null;
        }
    }
    out
}

fn push(list: &mut Value, v: Value) {
    if let Some(a) = list.as_array_mut() {
        a.push(v);
    }
}

/// The role a `rule`/`label` line belongs to: the last role, skipping the
/// binding a `controller` line adds after its role.
fn last_role(out: &mut [Object]) -> Option<&mut Object> {
    out.iter_mut().rev().find(|o| o.kind.ends_with("Role"))
}

/// The whole policy, parsed once.
pub fn objects() -> &'static [Object] {
    static OBJECTS: OnceLock<Vec<Object>> = OnceLock::new();
    OBJECTS.get_or_init(parse)
}

/// The `system:node` ClusterRole's rules: what the node authorizer grants
/// nodes beyond the objects it relates to them.
pub fn node_rules() -> &'static [Rule] {
    static RULES: OnceLock<Vec<Rule>> = OnceLock::new();
    RULES.get_or_init(|| {
        objects()
            .iter()
            .find(|o| o.kind == "ClusterRole" && o.name == "system:node")
            .and_then(|o| serde_json::from_value(o.body["rules"].clone()).ok())
            .unwrap_or_default()
    })
}

fn def_of(kind: &str) -> &'static ResourceDef {
    let name = match kind {
        "ClusterRole" => "clusterroles",
        "ClusterRoleBinding" => "clusterrolebindings",
        "Role" => "roles",
        _ => "rolebindings",
    };
    resources::find(GROUP, "v1", name).expect("the RBAC kinds are served")
}

/// Creates or updates every object of the policy.
pub async fn reconcile(state: &Arc<State>) -> Result<(), orca_store::Error> {
    for o in objects() {
        let def = def_of(o.kind);
        let key = def.key(o.namespace.as_deref(), &o.name);
        for _attempt in 0..5 {
            match state.store.get(&key).await? {
                None => {
                    let mut v = o.body.clone();
                    v["metadata"]["uid"] = json!(uuid::Uuid::new_v4().to_string());
                    v["metadata"]["creationTimestamp"] = json!(now());
                    match state
                        .store
                        .create(&key, serde_json::to_vec(&v).unwrap_or_default())
                        .await
                    {
                        Ok(kv) => state.cache.wait_for(kv.mod_revision).await,
                        Err(orca_store::Error::AlreadyExists(_)) => continue,
                        Err(e) => return Err(e),
                    }
                }
                Some(kv) => {
                    let Ok(current) = serde_json::from_slice::<Value>(&kv.value) else {
                        tracing::warn!(key, "stored RBAC object is not JSON; left alone");
                        break;
                    };
                    if current["metadata"]["annotations"][AUTOUPDATE] == "false" {
                        break;
                    }
                    let Some(updated) = merged(o, &current) else {
                        break;
                    };
                    if o.kind.ends_with("Binding") && updated.is_null() {
                        // The role it refers to changed: Kubernetes recreates it.
                        state.store.delete(&key, Some(kv.mod_revision)).await.ok();
                        continue;
                    }
                    match state
                        .store
                        .update(
                            &key,
                            serde_json::to_vec(&updated).unwrap_or_default(),
                            kv.mod_revision,
                        )
                        .await
                    {
                        Ok(kv) => state.cache.wait_for(kv.mod_revision).await,
                        Err(orca_store::Error::Conflict { .. }) => continue,
                        Err(e) => return Err(e),
                    }
                }
            }
            break;
        }
    }
    Ok(())
}

/// `current` with what the policy adds, `None` when nothing is missing,
/// `Some(Null)` when a binding must be recreated.
fn merged(o: &Object, current: &Value) -> Option<Value> {
    let mut v = current.clone();
    let mut changed = false;
    for part in ["labels", "annotations"] {
        if let Some(want) = o.body["metadata"][part].as_object() {
            let have = v["metadata"][part].as_object().cloned().unwrap_or_default();
            let mut m: Map<String, Value> = have.clone();
            for (k, val) in want {
                if !m.contains_key(k) {
                    m.insert(k.clone(), val.clone());
                }
            }
            if m != have {
                v["metadata"][part] = Value::Object(m);
                changed = true;
            }
        }
    }
    if o.kind.ends_with("Role") {
        if let Some(agg) = o.body.get("aggregationRule") {
            if v.get("aggregationRule") != Some(agg) {
                v["aggregationRule"] = agg.clone();
                changed = true;
            }
        } else {
            let want: Vec<Rule> =
                serde_json::from_value(o.body["rules"].clone()).unwrap_or_default();
            let have: Vec<Rule> = serde_json::from_value(v["rules"].clone()).unwrap_or_default();
            if !covers(&have, &want).is_empty() {
                let mut rules = v["rules"].as_array().cloned().unwrap_or_default();
                for (w, raw) in want
                    .iter()
                    .zip(o.body["rules"].as_array().into_iter().flatten())
                {
                    if !covers(&have, std::slice::from_ref(w)).is_empty() {
                        rules.push(raw.clone());
                    }
                }
                v["rules"] = Value::Array(rules);
                changed = true;
            }
        }
    } else {
        if v["roleRef"] != o.body["roleRef"] {
            return Some(Value::Null);
        }
        let mut subjects = v["subjects"].as_array().cloned().unwrap_or_default();
        for s in o.body["subjects"].as_array().into_iter().flatten() {
            if !subjects.contains(s) {
                subjects.push(s.clone());
                changed = true;
            }
        }
        if changed {
            v["subjects"] = Value::Array(subjects);
        }
    }
    changed.then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_has_kubernetes_counts() {
        let count = |kind: &str| objects().iter().filter(|o| o.kind == kind).count();
        // Kubernetes 1.32: 64 ClusterRoles, 45 ClusterRoleBindings (plus
        // Orca's node-service-routing and node-pod-network roles and their
        // bindings, and three node-joining bindings), 7 Roles, 7
        // RoleBindings.
        assert_eq!(count("ClusterRole"), 66);
        assert_eq!(count("ClusterRoleBinding"), 50);
        assert_eq!(count("Role"), 7);
        assert_eq!(count("RoleBinding"), 7);
        let view = objects().iter().find(|o| o.name == "view").unwrap();
        assert!(view.body["rules"].is_null());
        assert_eq!(
            view.body["aggregationRule"]["clusterRoleSelectors"][0]["matchLabels"]
                ["rbac.authorization.k8s.io/aggregate-to-view"],
            "true"
        );
        let binding = objects()
            .iter()
            .find(|o| {
                o.kind == "ClusterRoleBinding" && o.name == "system:controller:node-controller"
            })
            .unwrap();
        assert_eq!(binding.body["subjects"][0]["name"], "node-controller");
        assert!(node_rules()
            .iter()
            .any(|r| r.resources.contains(&"pods/status".to_string())));
        let orca = objects()
            .iter()
            .find(|o| o.name == "orca:node-bootstrapper")
            .unwrap();
        assert!(orca.body["metadata"]["labels"].is_null());
    }
}
