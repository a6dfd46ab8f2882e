//! The RBAC authorizer over an in-memory index of Roles, ClusterRoles and
//! their bindings, kept by the watch cache as objects change (no store read
//! per request). Bindings are indexed by subject, so a request looks only at
//! the bindings that name its user or one of its groups.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use serde::Deserialize;
use serde_json::{json, Value};

use super::{Attributes, UserInfo};
use crate::cache::{CacheHook, CachedObj};
use crate::resources::ResourceDef;

pub const GROUP: &str = "rbac.authorization.k8s.io";

/// A PolicyRule, as stored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    #[serde(default)]
    pub verbs: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub api_groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resource_names: Vec<String>,
    #[serde(
        default,
        rename = "nonResourceURLs",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub non_resource_urls: Vec<String>,
}

fn has(list: &[String], want: &str) -> bool {
    list.iter().any(|x| x == "*" || x == want)
}

impl Rule {
    /// Kubernetes' RuleAllows.
    pub fn allows(&self, a: &Attributes) -> bool {
        if !has(&self.verbs, &a.verb) {
            return false;
        }
        if !a.resource_request {
            return self.non_resource_urls.iter().any(|u| {
                u == "*"
                    || *u == a.path
                    || (u.ends_with('*') && a.path.starts_with(&u[..u.len() - 1]))
            });
        }
        has(&self.api_groups, &a.api_group)
            && self.resource_matches(a)
            && (self.resource_names.is_empty() || self.resource_names.contains(&a.name))
    }

    fn resource_matches(&self, a: &Attributes) -> bool {
        self.resources.iter().any(|r| {
            if r == "*" {
                return true;
            }
            if a.subresource.is_empty() {
                return *r == a.resource;
            }
            // `pods/log`, or `*/log` for that subresource of anything.
            match r.split_once('/') {
                Some((res, sub)) => sub == a.subresource && (res == "*" || res == a.resource),
                None => false,
            }
        })
    }
}

/// Who a binding names, by user name or group name; a service account is
/// its user `system:serviceaccount:<namespace>:<name>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Subject {
    User(String),
    Group(String),
}

#[derive(Clone, Debug)]
struct Binding {
    /// A RoleBinding's namespace (None for a ClusterRoleBinding).
    namespace: Option<String>,
    role_is_cluster: bool,
    role: String,
    subjects: Vec<Subject>,
}

#[derive(Default)]
struct Index {
    roles: HashMap<(String, String), Arc<Vec<Rule>>>,
    cluster_roles: HashMap<String, Arc<Vec<Rule>>>,
    bindings: HashMap<String, Binding>,
    by_user: HashMap<String, BTreeSet<String>>,
    by_group: HashMap<String, BTreeSet<String>>,
}

#[derive(Deserialize)]
struct Meta {
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: String,
}

#[derive(Deserialize)]
struct RoleObj {
    metadata: Meta,
    #[serde(default)]
    rules: Option<Vec<Rule>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RoleRef {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    name: String,
}

#[derive(Deserialize)]
struct SubjectObj {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BindingObj {
    metadata: Meta,
    role_ref: RoleRef,
    #[serde(default)]
    subjects: Option<Vec<SubjectObj>>,
}

fn subject_of(s: &SubjectObj) -> Option<Subject> {
    match s.kind.as_str() {
        "User" => Some(Subject::User(s.name.clone())),
        "Group" => Some(Subject::Group(s.name.clone())),
        "ServiceAccount" if !s.namespace.is_empty() => Some(Subject::User(format!(
            "{}{}:{}",
            super::SERVICE_ACCOUNT_PREFIX,
            s.namespace,
            s.name
        ))),
        _ => None,
    }
}

/// The RBAC policy as the cache last saw it.
#[derive(Default)]
pub struct Rbac {
    index: RwLock<Index>,
}

impl Index {
    fn unindex(&mut self, key: &str) {
        if let Some(old) = self.bindings.remove(key) {
            for s in &old.subjects {
                let map = match s {
                    Subject::User(n) => self.by_user.get_mut(n),
                    Subject::Group(n) => self.by_group.get_mut(n),
                };
                if let Some(set) = map {
                    set.remove(key);
                }
            }
        }
    }

    fn rules_of(&self, b: &Binding) -> Result<Arc<Vec<Rule>>, String> {
        if b.role_is_cluster {
            self.cluster_roles.get(&b.role).cloned().ok_or_else(|| {
                format!(
                    "clusterrole.rbac.authorization.k8s.io {:?} not found",
                    b.role
                )
            })
        } else {
            let ns = b.namespace.clone().unwrap_or_default();
            self.roles
                .get(&(ns, b.role.clone()))
                .cloned()
                .ok_or_else(|| format!("role.rbac.authorization.k8s.io {:?} not found", b.role))
        }
    }

    /// Calls `f` with the rules of every binding that applies to `user` in
    /// `namespace` (cluster-wide bindings always; role bindings only in their
    /// namespace). Stops when `f` returns true.
    fn visit(
        &self,
        user: &UserInfo,
        namespace: &str,
        errors: &mut Vec<String>,
        mut f: impl FnMut(&[Rule]) -> bool,
    ) -> bool {
        let sets = std::iter::once(self.by_user.get(&user.name))
            .chain(user.groups.iter().map(|g| self.by_group.get(g)))
            .flatten();
        for set in sets {
            for key in set {
                let Some(b) = self.bindings.get(key) else {
                    continue;
                };
                if b.namespace.as_deref().is_some_and(|ns| ns != namespace) {
                    continue;
                }
                match self.rules_of(b) {
                    Ok(rules) => {
                        if f(&rules) {
                            return true;
                        }
                    }
                    Err(e) => errors.push(e),
                }
            }
        }
        false
    }
}

impl Rbac {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Index> {
        self.index.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Allowed, or the reason RBAC gives for having no opinion (empty, or
    /// the bindings whose roles are missing).
    pub fn authorize(&self, user: &UserInfo, a: &Attributes) -> Result<(), String> {
        let mut errors = Vec::new();
        let ns = if a.resource_request {
            a.namespace.as_str()
        } else {
            ""
        };
        // Role bindings never grant non-resource URLs.
        let idx = self.read();
        let allowed = idx.visit(user, ns, &mut errors, |rules| {
            rules.iter().any(|r| r.allows(a))
        });
        if allowed {
            return Ok(());
        }
        if errors.is_empty() {
            Err(String::new())
        } else {
            Err(format!("RBAC: [{}]", errors.join(", ")))
        }
    }

    /// Every rule that applies to `user` in `namespace` (for
    /// SelfSubjectRulesReview and escalation checks).
    pub fn rules_for(&self, user: &UserInfo, namespace: &str) -> Vec<Rule> {
        let mut out = Vec::new();
        let mut errors = Vec::new();
        self.read().visit(user, namespace, &mut errors, |rules| {
            out.extend(rules.iter().cloned());
            false
        });
        out
    }

    /// The rules of a role a binding refers to (for escalation checks).
    pub fn role_rules(&self, cluster: bool, namespace: &str, name: &str) -> Option<Vec<Rule>> {
        let idx = self.read();
        if cluster {
            idx.cluster_roles.get(name).map(|r| r.to_vec())
        } else {
            idx.roles
                .get(&(namespace.to_string(), name.to_string()))
                .map(|r| r.to_vec())
        }
    }
}

impl CacheHook for Rbac {
    fn wants(&self, def: &ResourceDef) -> bool {
        def.group == GROUP
    }

    fn changed(&self, def: &'static ResourceDef, key: &str, obj: Option<&CachedObj>) {
        let value = obj.map(|o| &o.bytes[..]);
        let mut idx = self.write();
        match def.kind {
            "Role" | "ClusterRole" => {
                let Some(role) = value.and_then(|v| serde_json::from_slice::<RoleObj>(v).ok())
                else {
                    // Deleted: the key names it.
                    let (ns, name) = ns_name(def, key);
                    if def.kind == "Role" {
                        idx.roles.remove(&(ns, name));
                    } else {
                        idx.cluster_roles.remove(&name);
                    }
                    return;
                };
                let rules = Arc::new(role.rules.unwrap_or_default());
                if def.kind == "Role" {
                    idx.roles
                        .insert((role.metadata.namespace, role.metadata.name), rules);
                } else {
                    idx.cluster_roles.insert(role.metadata.name, rules);
                }
            }
            _ => {
                idx.unindex(key);
                let Some(b) = value.and_then(|v| serde_json::from_slice::<BindingObj>(v).ok())
                else {
                    return;
                };
                let binding = Binding {
                    namespace: (def.kind == "RoleBinding").then_some(b.metadata.namespace),
                    role_is_cluster: b.role_ref.kind == "ClusterRole",
                    role: b.role_ref.name,
                    subjects: b
                        .subjects
                        .unwrap_or_default()
                        .iter()
                        .filter_map(subject_of)
                        .collect(),
                };
                for s in &binding.subjects {
                    let set = match s {
                        Subject::User(n) => idx.by_user.entry(n.clone()).or_default(),
                        Subject::Group(n) => idx.by_group.entry(n.clone()).or_default(),
                    };
                    set.insert(key.to_string());
                }
                idx.bindings.insert(key.to_string(), binding);
            }
        }
    }
}

/// The namespace and name a storage key stands for.
fn ns_name(def: &ResourceDef, key: &str) -> (String, String) {
    let rest = key.strip_prefix(&def.prefix()).unwrap_or(key);
    match rest.split_once('/') {
        Some((ns, name)) if def.namespaced => (ns.to_string(), name.to_string()),
        _ => (String::new(), rest.to_string()),
    }
}

/// Whether `have` covers every permission in `want` (Kubernetes'
/// `Covers`, used to stop escalation): each wanted rule, split into single
/// verb/group/resource/name/URL parts, is allowed by some held rule.
pub fn covers(have: &[Rule], want: &[Rule]) -> Vec<Rule> {
    let mut missing = Vec::new();
    for w in want {
        for part in breakdown(w) {
            if !have.iter().any(|h| rule_covers(h, &part)) {
                missing.push(part);
            }
        }
    }
    missing
}

fn breakdown(r: &Rule) -> Vec<Rule> {
    let mut out = Vec::new();
    let one = |s: &str| vec![s.to_string()];
    for v in &r.verbs {
        for g in &r.api_groups {
            for res in &r.resources {
                if r.resource_names.is_empty() {
                    out.push(Rule {
                        verbs: one(v),
                        api_groups: one(g),
                        resources: one(res),
                        ..Default::default()
                    });
                }
                for n in &r.resource_names {
                    out.push(Rule {
                        verbs: one(v),
                        api_groups: one(g),
                        resources: one(res),
                        resource_names: one(n),
                        ..Default::default()
                    });
                }
            }
        }
        for u in &r.non_resource_urls {
            out.push(Rule {
                verbs: one(v),
                non_resource_urls: one(u),
                ..Default::default()
            });
        }
    }
    out
}

/// Whether `owner` covers the single-part rule `want`.
fn rule_covers(owner: &Rule, want: &Rule) -> bool {
    let verb_ok = want.verbs.iter().all(|v| has(&owner.verbs, v));
    if !verb_ok {
        return false;
    }
    if !want.non_resource_urls.is_empty() {
        return want.non_resource_urls.iter().all(|u| {
            owner.non_resource_urls.iter().any(|o| {
                o == "*" || o == u || (o.ends_with('*') && u.starts_with(&o[..o.len() - 1]))
            })
        });
    }
    let groups_ok = want.api_groups.iter().all(|g| has(&owner.api_groups, g));
    let resources_ok = want.resources.iter().all(|r| {
        owner.resources.iter().any(|o| {
            o == "*"
                || o == r
                || (o.starts_with("*/") && r.split_once('/').is_some_and(|(_, s)| &o[2..] == s))
                || (o.ends_with("/*")
                    && r.split_once('/')
                        .is_some_and(|(p, _)| &o[..o.len() - 2] == p))
        })
    });
    let names_ok = owner.resource_names.is_empty()
        || (!want.resource_names.is_empty()
            && want
                .resource_names
                .iter()
                .all(|n| owner.resource_names.contains(n)));
    groups_ok && resources_ok && names_ok
}

/// The rules as SelfSubjectRulesReview reports them.
pub fn rules_json(rules: &[Rule]) -> (Vec<Value>, Vec<Value>) {
    let mut resource = Vec::new();
    let mut non_resource = Vec::new();
    for r in rules {
        if !r.non_resource_urls.is_empty() {
            non_resource.push(json!({"verbs": r.verbs, "nonResourceURLs": r.non_resource_urls}));
        }
        if !r.resources.is_empty() {
            let mut v =
                json!({"verbs": r.verbs, "apiGroups": r.api_groups, "resources": r.resources});
            if !r.resource_names.is_empty() {
                v["resourceNames"] = json!(r.resource_names);
            }
            resource.push(v);
        }
    }
    (resource, non_resource)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(verbs: &[&str], groups: &[&str], resources: &[&str]) -> Rule {
        let s = |l: &[&str]| l.iter().map(|x| x.to_string()).collect();
        Rule {
            verbs: s(verbs),
            api_groups: s(groups),
            resources: s(resources),
            ..Default::default()
        }
    }

    #[test]
    fn rules_match_verbs_resources_subresources_and_names() {
        let r = rule(&["get", "list"], &[""], &["pods", "pods/log"]);
        let a = |verb: &str, res: &str, sub: &str, name: &str| {
            Attributes::resource(verb, "", res, sub, "default", name)
        };
        assert!(r.allows(&a("get", "pods", "", "p")));
        assert!(r.allows(&a("get", "pods", "log", "p")));
        assert!(!r.allows(&a("get", "pods", "exec", "p")));
        assert!(!r.allows(&a("delete", "pods", "", "p")));
        assert!(!r.allows(&Attributes::resource("get", "apps", "pods", "", "", "")));
        let star = rule(&["get"], &["*"], &["*/scale"]);
        assert!(star.allows(&Attributes::resource(
            "get",
            "apps",
            "deployments",
            "scale",
            "d",
            "x"
        )));
        assert!(!star.allows(&Attributes::resource(
            "get",
            "apps",
            "deployments",
            "",
            "d",
            "x"
        )));
        let mut named = rule(&["get"], &[""], &["configmaps"]);
        named.resource_names = vec!["only".into()];
        assert!(named.allows(&a("get", "configmaps", "", "only")));
        assert!(!named.allows(&a("get", "configmaps", "", "other")));
        assert!(!named.allows(&a("get", "configmaps", "", "")));
        let urls = Rule {
            verbs: vec!["get".into()],
            non_resource_urls: vec!["/healthz".into(), "/api/*".into()],
            ..Default::default()
        };
        assert!(urls.allows(&Attributes::non_resource("get", "/healthz")));
        assert!(urls.allows(&Attributes::non_resource("get", "/api/v1")));
        assert!(!urls.allows(&Attributes::non_resource("get", "/api")));
        assert!(!urls.allows(&Attributes::non_resource("get", "/metrics")));
    }

    #[test]
    fn covering_spots_missing_permissions() {
        let have = vec![rule(
            &["get", "list", "watch"],
            &[""],
            &["pods", "configmaps"],
        )];
        assert!(covers(&have, &[rule(&["get"], &[""], &["pods"])]).is_empty());
        let missing = covers(&have, &[rule(&["get", "delete"], &[""], &["pods"])]);
        assert_eq!(missing, vec![rule(&["delete"], &[""], &["pods"])]);
        let all = vec![rule(&["*"], &["*"], &["*"])];
        assert!(covers(
            &all,
            &[rule(
                &["escalate"],
                &["rbac.authorization.k8s.io"],
                &["roles"]
            )]
        )
        .is_empty());
    }
}
