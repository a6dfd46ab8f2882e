//! Validation with Kubernetes' rules and its exact message wording, so a
//! rejected request reads as it would from kube-apiserver:
//! `Pod "x" is invalid: spec.containers[0].image: Required value`.

use std::collections::HashSet;
use std::fmt;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ConfigMap, Endpoints, Event, Namespace, Node, Pod, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{json, Value};

mod apps;
mod batch;
mod certificates;
mod containers;
mod core_kinds;
mod endpoints;
mod ephemeral;
mod meta;
mod names;
mod node;
mod pod;
mod pod_update;
mod probes;
mod rbac;
mod services;
mod storage;
mod volumes;
mod workloads;

pub use apps::{
    validate_controller_revision, validate_controller_revision_update, validate_daemon_set,
    validate_daemon_set_status_update, validate_daemon_set_update, validate_stateful_set,
    validate_stateful_set_status_update, validate_stateful_set_update, TEMPLATE_GENERATION,
};
pub use batch::{
    pdb_selects, validate_cron_job, validate_cron_job_update, validate_job,
    validate_job_status_update, validate_job_update, validate_pod_disruption_budget,
    validate_pod_disruption_budget_status_update, validate_pod_disruption_budget_update,
    CONTROLLER_UID, JOB_NAME, LEGACY_CONTROLLER_UID, LEGACY_JOB_NAME,
};
pub use core_kinds::{
    validate_config_map, validate_event, validate_lease, validate_namespace, validate_node,
    validate_secret, validate_service_account,
};
pub use endpoints::{
    validate_endpoint_slice, validate_endpoint_slice_create, validate_endpoint_slice_update,
    validate_endpoints, validate_endpoints_update,
};
pub use ephemeral::validate_pod_ephemeral_containers_update;
pub use meta::{
    validate_annotations, validate_labels, validate_object_meta, validate_object_meta_update,
    NameValidator,
};
pub use names::{
    is_dns1123_label, is_dns1123_subdomain, is_qualified_name, is_valid_label_value,
    name_is_dns_label, name_is_dns_subdomain,
};
pub use node::{validate_runtime_class, validate_runtime_class_update};
pub use pod::{validate_pod, validate_pod_spec, validate_tolerations};
pub use pod_update::{validate_pod_status_update, validate_pod_update};
pub use rbac::name_is_path_segment;
pub use services::{
    externally_accessible, is_dns1035_label, is_headless, needs_health_check, validate_cluster_ips,
    validate_non_special_ip, validate_service, validate_service_status_update,
    validate_service_update,
};
pub use storage::{
    validate_csi_driver, validate_csi_driver_update, validate_csi_node, validate_csi_node_update,
    validate_csi_storage_capacity, validate_csi_storage_capacity_update,
    validate_persistent_volume, validate_persistent_volume_claim,
    validate_persistent_volume_claim_status_update, validate_persistent_volume_claim_update,
    validate_persistent_volume_status_update, validate_persistent_volume_update,
    validate_storage_class, validate_storage_class_update, validate_volume_attachment,
    validate_volume_attachment_status_update, validate_volume_attachment_update,
};
pub use workloads::{
    go_label_selector, go_string_map, validate_deployment, validate_deployment_status_update,
    validate_deployment_update, validate_pod_template, validate_replica_set,
    validate_replica_set_status_update, validate_replica_set_update,
    validate_replication_controller, validate_replication_controller_status_update,
    validate_replication_controller_update, validate_scale,
};

/// The `reason` of a Status cause (`metav1.CauseType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CauseType {
    NotFound,
    Required,
    Duplicate,
    Invalid,
    NotSupported,
    Forbidden,
    TooLong,
    TooMany,
    Internal,
    TypeInvalid,
}

impl CauseType {
    /// The machine-readable reason, e.g. `FieldValueRequired`.
    pub fn as_str(self) -> &'static str {
        match self {
            CauseType::NotFound => "FieldValueNotFound",
            CauseType::Required => "FieldValueRequired",
            CauseType::Duplicate => "FieldValueDuplicate",
            CauseType::Invalid => "FieldValueInvalid",
            CauseType::NotSupported => "FieldValueNotSupported",
            CauseType::Forbidden => "FieldValueForbidden",
            CauseType::TooLong => "FieldValueTooLong",
            CauseType::TooMany => "FieldValueTooMany",
            CauseType::Internal => "InternalError",
            CauseType::TypeInvalid => "FieldValueTypeInvalid",
        }
    }

    /// The human phrase that starts the message, e.g. `Required value`.
    pub fn phrase(self) -> &'static str {
        match self {
            CauseType::NotFound => "Not found",
            CauseType::Required => "Required value",
            CauseType::Duplicate => "Duplicate value",
            CauseType::Invalid | CauseType::TypeInvalid => "Invalid value",
            CauseType::NotSupported => "Unsupported value",
            CauseType::Forbidden => "Forbidden",
            CauseType::TooLong => "Too long",
            CauseType::TooMany => "Too many",
            CauseType::Internal => "Internal error",
        }
    }
}

/// The offending value as Kubernetes prints it: strings quoted, numbers and
/// booleans bare, `null` for an unset optional.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadValue {
    Omit,
    Null,
    Str(String),
    Int(i64),
    Bool(bool),
    /// A `[]string`, printed as Go's `%#v`: `[]string{"a", "b"}`.
    StrList(Vec<String>),
    /// Printed as it is (a Go `%#v` of a value the other forms cannot say).
    Raw(String),
}

impl From<&str> for BadValue {
    fn from(s: &str) -> Self {
        BadValue::Str(s.to_string())
    }
}
impl From<String> for BadValue {
    fn from(s: String) -> Self {
        BadValue::Str(s)
    }
}
impl From<&String> for BadValue {
    fn from(s: &String) -> Self {
        BadValue::Str(s.clone())
    }
}
impl From<i64> for BadValue {
    fn from(v: i64) -> Self {
        BadValue::Int(v)
    }
}
impl From<i32> for BadValue {
    fn from(v: i32) -> Self {
        BadValue::Int(v.into())
    }
}
impl From<bool> for BadValue {
    fn from(v: bool) -> Self {
        BadValue::Bool(v)
    }
}
impl<T: Into<BadValue>> From<Option<T>> for BadValue {
    fn from(v: Option<T>) -> Self {
        v.map_or(BadValue::Null, Into::into)
    }
}

/// One field-level validation error (`field.Error`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub cause_type: CauseType,
    /// Path of the field, e.g. `spec.containers[0].image`.
    pub field: String,
    pub bad_value: BadValue,
    /// Kubernetes' explanation, may be empty.
    pub detail: String,
}

impl FieldError {
    pub fn required(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(CauseType::Required, field, BadValue::Omit, detail)
    }
    pub fn invalid(
        field: impl Into<String>,
        value: impl Into<BadValue>,
        detail: impl Into<String>,
    ) -> Self {
        Self::new(CauseType::Invalid, field, value.into(), detail)
    }
    pub fn duplicate(field: impl Into<String>, value: impl Into<BadValue>) -> Self {
        Self::new(CauseType::Duplicate, field, value.into(), "")
    }
    pub fn not_found(field: impl Into<String>, value: impl Into<BadValue>) -> Self {
        Self::new(CauseType::NotFound, field, value.into(), "")
    }
    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(CauseType::Forbidden, field, BadValue::Omit, detail)
    }
    pub fn too_long(field: impl Into<String>, max_bytes: usize) -> Self {
        Self::new(
            CauseType::TooLong,
            field,
            BadValue::Omit,
            format!("may not be more than {max_bytes} bytes"),
        )
    }
    /// An enum field with a value outside `supported`, listed in its order.
    pub fn not_supported(
        field: impl Into<String>,
        value: impl Into<BadValue>,
        supported: &[&str],
    ) -> Self {
        let detail = if supported.is_empty() {
            String::new()
        } else {
            let quoted: Vec<String> = supported.iter().map(|s| go_quote(s)).collect();
            format!("supported values: {}", quoted.join(", "))
        };
        Self::new(CauseType::NotSupported, field, value.into(), detail)
    }

    fn new(
        cause_type: CauseType,
        field: impl Into<String>,
        bad_value: BadValue,
        detail: impl Into<String>,
    ) -> Self {
        FieldError {
            cause_type,
            field: field.into(),
            bad_value,
            detail: detail.into(),
        }
    }

    /// The message without the field (a Status cause's `message`), e.g.
    /// `Invalid value: "Foo": a lowercase RFC 1123 ...`.
    pub fn body(&self) -> String {
        let hides_value = matches!(
            self.cause_type,
            CauseType::Required | CauseType::Forbidden | CauseType::TooLong | CauseType::Internal
        );
        let mut s = self.cause_type.phrase().to_string();
        if !hides_value {
            match &self.bad_value {
                BadValue::Omit => {}
                BadValue::Null => s.push_str(": \"null\""),
                BadValue::Str(v) => {
                    s.push_str(": ");
                    s.push_str(&go_quote(v));
                }
                BadValue::Int(v) => s.push_str(&format!(": {v}")),
                BadValue::Bool(v) => s.push_str(&format!(": {v}")),
                BadValue::StrList(v) => {
                    let quoted: Vec<String> = v.iter().map(|x| go_quote(x)).collect();
                    s.push_str(&format!(": []string{{{}}}", quoted.join(", ")));
                }
                BadValue::Raw(v) => {
                    s.push_str(": ");
                    s.push_str(v);
                }
            }
        }
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }

    /// The full line, `field: body`.
    pub fn message(&self) -> String {
        format!("{}: {}", self.field, self.body())
    }

    /// This error as a `metav1.StatusCause`.
    pub fn cause(&self) -> Value {
        json!({"reason": self.cause_type.as_str(), "message": self.body(), "field": self.field})
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}

impl std::error::Error for FieldError {}

/// Go's `%q` for the strings we meet: double quotes, backslash escapes.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `Kind.group` as Kubernetes names a kind in messages (`Pod`,
/// `Lease.coordination.k8s.io`).
fn qualified_kind(group: &str, kind: &str) -> String {
    if group.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}.{group}")
    }
}

/// The 422 message: `Pod "x" is invalid: a` or `... is invalid: [a, b]`;
/// repeated lines are shown once.
pub fn invalid_message(group: &str, kind: &str, name: &str, errs: &[FieldError]) -> String {
    let mut seen = HashSet::new();
    let lines: Vec<String> = errs
        .iter()
        .map(FieldError::message)
        .filter(|m| seen.insert(m.clone()))
        .collect();
    let head = format!(
        "{} {} is invalid",
        qualified_kind(group, kind),
        go_quote(name)
    );
    match lines.len() {
        0 => head,
        1 => format!("{head}: {}", lines[0]),
        _ => format!("{head}: [{}]", lines.join(", ")),
    }
}

/// The whole 422 `Status` body for these errors.
pub fn invalid_status(group: &str, kind: &str, name: &str, errs: &[FieldError]) -> Value {
    let mut details = serde_json::Map::new();
    details.insert("name".into(), json!(name));
    if !group.is_empty() {
        details.insert("group".into(), json!(group));
    }
    details.insert("kind".into(), json!(kind));
    details.insert(
        "causes".into(),
        Value::Array(errs.iter().map(FieldError::cause).collect()),
    );
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": invalid_message(group, kind, name, errs),
        "reason": "Invalid",
        "details": Value::Object(details),
        "code": 422,
    })
}

/// Validates a new object of a kind Orca serves, given as JSON. Kinds this
/// module does not know get metadata checks only (`namespaced` says whether
/// the kind lives in a namespace).
pub fn validate_new(kind: &str, obj: &Value, namespaced: bool) -> Vec<FieldError> {
    fn typed<T: serde::de::DeserializeOwned>(
        obj: &Value,
        f: fn(&T) -> Vec<FieldError>,
    ) -> Vec<FieldError> {
        // Straight from the JSON tree, without copying it first.
        match T::deserialize(obj) {
            Ok(t) => f(&t),
            Err(e) => vec![FieldError::invalid("", BadValue::Omit, e.to_string())],
        }
    }
    match kind {
        "Pod" => typed::<Pod>(obj, validate_pod),
        "Namespace" => typed::<Namespace>(obj, validate_namespace),
        "Node" => typed::<Node>(obj, validate_node),
        "ConfigMap" => typed::<ConfigMap>(obj, validate_config_map),
        "Secret" => typed::<Secret>(obj, validate_secret),
        "ServiceAccount" => typed::<ServiceAccount>(obj, validate_service_account),
        "Lease" => typed::<Lease>(obj, validate_lease),
        "Role" => typed(obj, rbac::validate_role),
        "CertificateSigningRequest" => {
            typed(obj, certificates::validate_certificate_signing_request)
        }
        "ClusterRole" => typed(obj, rbac::validate_cluster_role),
        "RoleBinding" => typed(obj, rbac::validate_role_binding),
        "ClusterRoleBinding" => typed(obj, rbac::validate_cluster_role_binding),
        "Event" if crate::convert::is_events_v1(obj) => {
            typed::<Event>(&crate::convert::event_v1_to_core(obj), validate_event)
        }
        "Event" => typed::<Event>(obj, validate_event),
        "Service" => typed::<Service>(obj, validate_service),
        "Endpoints" => typed::<Endpoints>(obj, validate_endpoints),
        "EndpointSlice" => typed::<EndpointSlice>(obj, validate_endpoint_slice_create),
        "Deployment" => typed(obj, workloads::validate_deployment),
        "ReplicaSet" => typed(obj, workloads::validate_replica_set),
        "ReplicationController" => typed(obj, workloads::validate_replication_controller),
        "PodTemplate" => typed(obj, workloads::validate_pod_template),
        _ => {
            let meta: ObjectMeta = obj
                .get("metadata")
                .and_then(|m| serde_json::from_value(m.clone()).ok())
                .unwrap_or_default();
            validate_object_meta(&meta, namespaced, name_is_dns_subdomain)
        }
    }
}

/// Validates an update of an object given as JSON: pods by
/// [`validate_pod_update`], other kinds as new objects plus immutable
/// metadata.
pub fn validate_update(kind: &str, new: &Value, old: &Value, namespaced: bool) -> Vec<FieldError> {
    match kind {
        "Pod" => return with_pods(new, old, validate_pod_update),
        "Service" => return with_typed(new, old, validate_service_update),
        "Endpoints" => return with_typed(new, old, validate_endpoints_update),
        "EndpointSlice" => return with_typed(new, old, validate_endpoint_slice_update),
        "Deployment" => return with_typed(new, old, workloads::validate_deployment_update),
        "ReplicaSet" => return with_typed(new, old, workloads::validate_replica_set_update),
        "ReplicationController" => {
            return with_typed(new, old, workloads::validate_replication_controller_update)
        }
        _ => {}
    }
    let meta = |v: &Value| -> ObjectMeta {
        v.get("metadata")
            .and_then(|m| serde_json::from_value(m.clone()).ok())
            .unwrap_or_default()
    };
    let mut errs = validate_object_meta_update(&meta(new), &meta(old));
    errs.extend(
        validate_new(kind, new, namespaced)
            .into_iter()
            .filter(|e| !e.field.starts_with("metadata.")),
    );
    match kind {
        "Node" => errs.extend(core_kinds::node_update_rules(new, old)),
        "ConfigMap" | "Secret" => errs.extend(core_kinds::immutable_data_rules(kind, new, old)),
        "RoleBinding" | "ClusterRoleBinding" => errs.extend(rbac::binding_update_rules(new, old)),
        _ => {}
    }
    errs
}

/// Validates a write through the `status` subresource, which keeps the
/// stored spec: pods by [`validate_pod_status_update`] (as Kubernetes' pod
/// status strategy), other kinds as [`validate_update`].
pub fn validate_status_update(
    kind: &str,
    new: &Value,
    old: &Value,
    namespaced: bool,
) -> Vec<FieldError> {
    match kind {
        "Pod" => with_pods(new, old, validate_pod_status_update),
        "Service" => with_typed(new, old, validate_service_status_update),
        "Deployment" => with_typed(new, old, workloads::validate_deployment_status_update),
        "ReplicaSet" => with_typed(new, old, workloads::validate_replica_set_status_update),
        "ReplicationController" => with_typed(
            new,
            old,
            workloads::validate_replication_controller_status_update,
        ),
        _ => validate_update(kind, new, old, namespaced),
    }
}

/// Decodes both pods straight from the JSON (no copy) and validates them.
fn with_pods(new: &Value, old: &Value, f: fn(&Pod, &Pod) -> Vec<FieldError>) -> Vec<FieldError> {
    with_typed(new, old, f)
}

/// Decodes both versions straight from the JSON (no copy) and validates
/// the update.
fn with_typed<T: serde::de::DeserializeOwned>(
    new: &Value,
    old: &Value,
    f: fn(&T, &T) -> Vec<FieldError>,
) -> Vec<FieldError> {
    match (T::deserialize(new), T::deserialize(old)) {
        (Ok(n), Ok(o)) => f(&n, &o),
        (Err(e), _) | (_, Err(e)) => vec![FieldError::invalid("", BadValue::Omit, e.to_string())],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // Pod fixtures the pod, container and metadata tests share.
    pub(super) fn pod(v: Value) -> Pod {
        let mut p: Pod = serde_json::from_value(v).unwrap();
        crate::defaults::pod(&mut p);
        p
    }

    pub(super) fn ok_pod() -> Value {
        json!({"metadata": {"name": "web", "namespace": "default"},
               "spec": {"containers": [{"name": "nginx", "image": "nginx:1.25",
                  "ports": [{"containerPort": 80, "name": "http"}]}]}})
    }

    pub(super) fn messages(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(FieldError::message).collect()
    }

    #[test]
    fn bad_name_has_kubernetes_wording_and_status() {
        let mut v = ok_pod();
        v["metadata"]["name"] = json!("Bad_Name");
        let errs = validate_pod(&pod(v));
        assert_eq!(
            messages(&errs),
            vec![
                r#"metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"#
            ]
        );
        let status = invalid_status("", "Pod", "Bad_Name", &errs);
        assert_eq!(status["code"], 422);
        assert_eq!(status["reason"], "Invalid");
        assert_eq!(status["details"]["kind"], "Pod");
        assert_eq!(
            status["details"]["causes"][0]["reason"],
            "FieldValueInvalid"
        );
        assert_eq!(status["details"]["causes"][0]["field"], "metadata.name");
        assert!(status["message"].as_str().unwrap().starts_with(
            "Pod \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\": a lowercase"
        ));
        // Serialised, the regex backslash is escaped as in kube-apiserver's JSON.
        assert!(status.to_string().contains(r"(\\.[a-z0-9]"));
    }

    #[test]
    fn invalid_message_joins_and_dedups() {
        let a = FieldError::required("spec.containers[0].image", "");
        let b = FieldError::required("spec.containers[1].image", "");
        assert_eq!(
            invalid_message("", "Pod", "x", std::slice::from_ref(&a)),
            "Pod \"x\" is invalid: spec.containers[0].image: Required value"
        );
        assert_eq!(
            invalid_message("", "Pod", "x", &[a.clone(), b, a]),
            "Pod \"x\" is invalid: [spec.containers[0].image: Required value, spec.containers[1].image: Required value]"
        );
        assert_eq!(
            invalid_message("coordination.k8s.io", "Lease", "l", &[]),
            "Lease.coordination.k8s.io \"l\" is invalid"
        );
    }

    #[test]
    fn go_quoting() {
        assert_eq!(go_quote("a\"b\\c\n"), r#""a\"b\\c\n""#);
        let e = FieldError::invalid("x", BadValue::Null, "must be set");
        assert_eq!(e.message(), "x: Invalid value: \"null\": must be set");
    }
}
