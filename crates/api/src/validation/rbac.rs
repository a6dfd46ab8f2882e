//! Validation of the RBAC kinds (Kubernetes' `pkg/apis/rbac/validation`).

use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{validate_object_meta, FieldError};

const GROUP: &str = "rbac.authorization.k8s.io";

/// RBAC names are path segments, not DNS names (`system:node` is valid).
pub fn name_is_path_segment(name: &str, prefix: bool) -> Vec<String> {
    if prefix {
        return Vec::new();
    }
    let mut errs = Vec::new();
    if name == "." || name == ".." {
        errs.push(format!("may not be '{name}'"));
    }
    for bad in ["/", "%"] {
        if name.contains(bad) {
            errs.push(format!("may not contain '{bad}'"));
        }
    }
    errs
}

fn meta(meta: &ObjectMeta, namespaced: bool) -> Vec<FieldError> {
    validate_object_meta(meta, namespaced, name_is_path_segment)
}

fn rules(rules: &[PolicyRule], namespaced: bool) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, r) in rules.iter().enumerate() {
        let path = format!("rules[{i}]");
        if r.verbs.is_empty() {
            errs.push(FieldError::required(
                format!("{path}.verbs"),
                "verbs must contain at least one value",
            ));
        }
        let urls = r.non_resource_urls.as_deref().unwrap_or_default();
        let resources = r.resources.as_deref().unwrap_or_default();
        if !urls.is_empty() {
            if namespaced {
                errs.push(FieldError::invalid(
                    format!("{path}.nonResourceURLs"),
                    urls.join(","),
                    "namespaced rules cannot apply to non-resource URLs",
                ));
            }
            if !resources.is_empty() || r.api_groups.as_ref().is_some_and(|g| !g.is_empty()) {
                errs.push(FieldError::invalid(
                    format!("{path}.nonResourceURLs"),
                    urls.join(","),
                    "rules cannot apply to both regular resources and non-resource URLs",
                ));
            }
            continue;
        }
        if r.api_groups.as_ref().is_none_or(|g| g.is_empty()) {
            errs.push(FieldError::required(
                format!("{path}.apiGroups"),
                "resource rules must supply at least one api group",
            ));
        }
        if resources.is_empty() {
            errs.push(FieldError::required(
                format!("{path}.resources"),
                "resource rules must supply at least one resource",
            ));
        }
    }
    errs
}

pub fn validate_role(r: &Role) -> Vec<FieldError> {
    let mut errs = meta(&r.metadata, true);
    errs.extend(rules(r.rules.as_deref().unwrap_or_default(), true));
    errs
}

pub fn validate_cluster_role(r: &ClusterRole) -> Vec<FieldError> {
    let mut errs = meta(&r.metadata, false);
    errs.extend(rules(r.rules.as_deref().unwrap_or_default(), false));
    errs
}

fn role_ref(r: &RoleRef, cluster_binding: bool) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if r.api_group != GROUP {
        errs.push(FieldError::not_supported(
            "roleRef.apiGroup",
            r.api_group.as_str(),
            &[GROUP],
        ));
    }
    let kinds: &[&str] = if cluster_binding {
        &["ClusterRole"]
    } else {
        &["Role", "ClusterRole"]
    };
    if !kinds.contains(&r.kind.as_str()) {
        errs.push(FieldError::not_supported(
            "roleRef.kind",
            r.kind.as_str(),
            kinds,
        ));
    }
    if r.name.is_empty() {
        errs.push(FieldError::required("roleRef.name", ""));
    } else {
        for msg in name_is_path_segment(&r.name, false) {
            errs.push(FieldError::invalid("roleRef.name", r.name.as_str(), msg));
        }
    }
    errs
}

fn subjects(subjects: &[Subject], cluster_binding: bool) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, s) in subjects.iter().enumerate() {
        let path = format!("subjects[{i}]");
        if s.name.is_empty() {
            errs.push(FieldError::required(format!("{path}.name"), ""));
        }
        match s.kind.as_str() {
            "ServiceAccount" => {
                if s.namespace.as_deref().is_none_or(str::is_empty) && cluster_binding {
                    errs.push(FieldError::required(format!("{path}.namespace"), ""));
                }
                if s.api_group.as_deref().is_some_and(|g| !g.is_empty()) {
                    errs.push(FieldError::not_supported(
                        format!("{path}.apiGroup"),
                        s.api_group.clone(),
                        &[""],
                    ));
                }
            }
            "User" | "Group" => {
                if s.api_group.as_deref() != Some(GROUP) {
                    errs.push(FieldError::not_supported(
                        format!("{path}.apiGroup"),
                        s.api_group.clone().unwrap_or_default(),
                        &[GROUP],
                    ));
                }
            }
            other => errs.push(FieldError::not_supported(
                format!("{path}.kind"),
                other,
                &["ServiceAccount", "User", "Group"],
            )),
        }
    }
    errs
}

pub fn validate_role_binding(b: &RoleBinding) -> Vec<FieldError> {
    let mut errs = meta(&b.metadata, true);
    errs.extend(role_ref(&b.role_ref, false));
    errs.extend(subjects(b.subjects.as_deref().unwrap_or_default(), false));
    errs
}

pub fn validate_cluster_role_binding(b: &ClusterRoleBinding) -> Vec<FieldError> {
    let mut errs = meta(&b.metadata, false);
    errs.extend(role_ref(&b.role_ref, true));
    errs.extend(subjects(b.subjects.as_deref().unwrap_or_default(), true));
    errs
}

/// A binding's roleRef may not change (delete and recreate it instead).
pub fn binding_update_rules(new: &serde_json::Value, old: &serde_json::Value) -> Vec<FieldError> {
    if new.get("roleRef") != old.get("roleRef") {
        return vec![FieldError::invalid(
            "roleRef",
            super::BadValue::Omit,
            "cannot change roleRef",
        )];
    }
    Vec::new()
}
