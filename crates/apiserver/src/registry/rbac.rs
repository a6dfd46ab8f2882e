//! Roles, ClusterRoles and their bindings: validation comes from
//! `orca-api`; what is particular here is Kubernetes' escalation
//! prevention. A user may write a role only with permissions they hold (or
//! the `escalate` verb on it), and bind a role only if they hold its
//! permissions (or the `bind` verb on it); system:masters may do both.

use k8s_openapi::api::rbac::v1 as rbac;
use orca_api::validation::{validate_new, validate_update};
use serde_json::Value;

use super::{typed, validated, Strategy};
use crate::auth::attributes::forbidden_error;
use crate::auth::rbac::{covers, Rule, GROUP};
use crate::auth::{authorize, Attributes, UserInfo, SYSTEM_MASTERS};
use crate::handlers::Ctx;
use crate::resources::ResourceDef;
use crate::status::ApiError;

pub struct RoleStrategy;
pub static ROLE: RoleStrategy = RoleStrategy;

pub struct BindingStrategy;
pub static BINDING: BindingStrategy = BindingStrategy;

fn meta<'a>(v: &'a Value, field: &str) -> &'a str {
    v["metadata"][field].as_str().unwrap_or_default()
}

/// Kubernetes' CompactString of one rule, e.g.
/// `{APIGroups:[""], Resources:["pods"], Verbs:["delete"]}`.
fn compact(r: &Rule) -> String {
    let q = |l: &[String]| -> String {
        let items: Vec<String> = l.iter().map(|s| format!("{s:?}")).collect();
        format!("[{}]", items.join(" "))
    };
    let mut parts = Vec::new();
    if !r.api_groups.is_empty() {
        parts.push(format!("APIGroups:{}", q(&r.api_groups)));
    }
    if !r.resources.is_empty() {
        parts.push(format!("Resources:{}", q(&r.resources)));
    }
    if !r.non_resource_urls.is_empty() {
        parts.push(format!("NonResourceURLs:{}", q(&r.non_resource_urls)));
    }
    if !r.resource_names.is_empty() {
        parts.push(format!("ResourceNames:{}", q(&r.resource_names)));
    }
    if !r.verbs.is_empty() {
        parts.push(format!("Verbs:{}", q(&r.verbs)));
    }
    format!("{{{}}}", parts.join(", "))
}

/// Kubernetes' ConfirmNoEscalation: the user holds every permission in
/// `want` within `namespace`; otherwise the message listing what is missing.
fn confirm_no_escalation(
    ctx: &Ctx<'_>,
    user: &UserInfo,
    namespace: &str,
    want: &[Rule],
) -> Result<(), String> {
    let have = ctx.state.rbac.rules_for(user, namespace);
    let mut missing: Vec<String> = covers(&have, want).iter().map(compact).collect();
    if missing.is_empty() {
        return Ok(());
    }
    missing.sort();
    missing.dedup();
    let groups: Vec<String> = user.groups.iter().map(|g| format!("{g:?}")).collect();
    Err(format!(
        "user {:?} (groups=[{}]) is attempting to grant RBAC permissions not currently held:\n{}",
        user.name,
        groups.join(" "),
        missing.join("\n")
    ))
}

fn allowed(ctx: &Ctx<'_>, verb: &str, resource: &str, namespace: &str, name: &str) -> bool {
    let attrs = Attributes::resource(verb, GROUP, resource, "", namespace, name);
    authorize(ctx.state, ctx.user, &attrs).is_ok()
}

impl Strategy for RoleStrategy {
    fn authorize_write(
        &self,
        ctx: &Ctx<'_>,
        _sub: Option<&str>,
        new: &Value,
        _old: Option<&Value>,
    ) -> Result<(), ApiError> {
        if ctx.user.in_group(SYSTEM_MASTERS) {
            return Ok(());
        }
        let (ns, name) = (meta(new, "namespace"), meta(new, "name"));
        if allowed(ctx, "escalate", ctx.def.name, ns, name) {
            return Ok(());
        }
        let forbid = |why: String| forbidden_error(GROUP, ctx.def.name, name, &why);
        if new.get("aggregationRule").is_some_and(|a| !a.is_null()) {
            // An aggregation rule can gather anything: cluster-admin only.
            let all = Rule {
                verbs: vec!["*".into()],
                api_groups: vec!["*".into()],
                resources: vec!["*".into()],
                ..Default::default()
            };
            let urls = Rule {
                verbs: vec!["*".into()],
                non_resource_urls: vec!["*".into()],
                ..Default::default()
            };
            if confirm_no_escalation(ctx, ctx.user, ns, &[all, urls]).is_err() {
                return Err(forbid(
                    "must have cluster-admin privileges to use the aggregationRule".into(),
                ));
            }
        }
        let rules: Vec<Rule> = serde_json::from_value(new["rules"].clone()).unwrap_or_default();
        confirm_no_escalation(ctx, ctx.user, ns, &rules).map_err(forbid)
    }
}

/// The scheme defaults of either kind of binding.
fn default_binding(def: &ResourceDef, obj: &mut Value) -> Result<(), ApiError> {
    if def.kind == "ClusterRoleBinding" {
        typed::<rbac::ClusterRoleBinding>(obj, orca_api::defaults::cluster_role_binding)
    } else {
        typed::<rbac::RoleBinding>(obj, orca_api::defaults::role_binding)
    }
}

impl Strategy for BindingStrategy {
    fn prepare_create(&self, def: &ResourceDef, obj: &mut Value) -> Result<(), ApiError> {
        default_binding(def, obj)?;
        validated(def, obj, validate_new(def.kind, obj, def.namespaced))
    }

    fn prepare_update(
        &self,
        def: &ResourceDef,
        new: &mut Value,
        old: &Value,
    ) -> Result<(), ApiError> {
        default_binding(def, new)?;
        validated(
            def,
            new,
            validate_update(def.kind, new, old, def.namespaced),
        )
    }

    fn authorize_write(
        &self,
        ctx: &Ctx<'_>,
        _sub: Option<&str>,
        new: &Value,
        _old: Option<&Value>,
    ) -> Result<(), ApiError> {
        if ctx.user.in_group(SYSTEM_MASTERS) {
            return Ok(());
        }
        let (ns, name) = (meta(new, "namespace"), meta(new, "name"));
        let cluster = new["roleRef"]["kind"] == "ClusterRole";
        let role = new["roleRef"]["name"].as_str().unwrap_or_default();
        let role_resource = if cluster { "clusterroles" } else { "roles" };
        if allowed(ctx, "bind", role_resource, ns, role) {
            return Ok(());
        }
        let Some(rules) = ctx.state.rbac.role_rules(cluster, ns, role) else {
            return Err(ApiError::not_found(role_resource, GROUP, role));
        };
        confirm_no_escalation(ctx, ctx.user, ns, &rules)
            .map_err(|why| forbidden_error(GROUP, ctx.def.name, name, &why))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_permissions_read_as_kubernetes_prints_them() {
        let r = Rule {
            verbs: vec!["delete".into()],
            api_groups: vec!["".into()],
            resources: vec!["pods".into()],
            ..Default::default()
        };
        assert_eq!(
            compact(&r),
            r#"{APIGroups:[""], Resources:["pods"], Verbs:["delete"]}"#
        );
    }
}
