//! Table columns of the RBAC bindings (Kubernetes' printers): `NAME ROLE
//! AGE`, and with `-o wide` the users, groups and service accounts bound.
//! Roles and ClusterRoles print as the default `NAME CREATED AT`.

use chrono::{DateTime, Utc};
use k8s_openapi::api::rbac::v1::{RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{age, age_col, col, name_col};

pub fn binding_columns() -> Vec<Value> {
    vec![
        name_col(),
        col("Role", "string", "", 0, "RoleRef can reference a Role in the current namespace or a ClusterRole in the global namespace. If the RoleRef cannot be resolved, the Authorizer must return an error. This field is immutable."),
        age_col(),
        col("Users", "string", "", 1, "Users in the roleBinding"),
        col("Groups", "string", "", 1, "Groups in the roleBinding"),
        col("ServiceAccounts", "string", "", 1, "ServiceAccounts in the roleBinding"),
    ]
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct Binding {
    metadata: ObjectMeta,
    role_ref: Option<RoleRef>,
    subjects: Option<Vec<Subject>>,
}

pub fn binding_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let b = Binding::deserialize(obj).unwrap_or_default();
    let role = b
        .role_ref
        .map(|r| format!("{}/{}", r.kind, r.name))
        .unwrap_or_default();
    let subjects = b.subjects.unwrap_or_default();
    let of = |kind: &str| -> String {
        subjects
            .iter()
            .filter(|s| s.kind == kind)
            .map(|s| match (kind, s.namespace.as_deref()) {
                ("ServiceAccount", Some(ns)) => format!("{ns}/{}", s.name),
                _ => s.name.clone(),
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    vec![
        json!(b.metadata.name.unwrap_or_default()),
        json!(role),
        json!(age(b.metadata.creation_timestamp.as_ref(), now)),
        json!(of("User")),
        json!(of("Group")),
        json!(of("ServiceAccount")),
    ]
}
