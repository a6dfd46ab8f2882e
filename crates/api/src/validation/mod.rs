//! Validation with Kubernetes' rules and its exact message wording, so a
//! rejected request reads as it would from kube-apiserver:
//! `Pod "x" is invalid: spec.containers[0].image: Required value`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, ContainerPort, Endpoints, EnvVar, Event, Namespace, Node, Pod, PodSpec,
    Probe, ResourceRequirements, Secret, Service, ServiceAccount, Toleration, Volume, VolumeMount,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{json, Value};

use crate::quantity::parse_nanos;

mod certificates;
mod rbac;
pub use rbac::name_is_path_segment;
mod apps;
mod batch;
mod endpoints;
mod ephemeral;
mod node;
mod services;
mod storage;
pub use storage::{
    validate_csi_driver, validate_csi_driver_update, validate_csi_node, validate_csi_node_update,
    validate_csi_storage_capacity, validate_csi_storage_capacity_update,
    validate_persistent_volume, validate_persistent_volume_claim,
    validate_persistent_volume_claim_status_update, validate_persistent_volume_claim_update,
    validate_persistent_volume_status_update, validate_persistent_volume_update,
    validate_storage_class, validate_storage_class_update, validate_volume_attachment,
    validate_volume_attachment_status_update, validate_volume_attachment_update,
};

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

pub use endpoints::{
    validate_endpoint_slice, validate_endpoint_slice_create, validate_endpoint_slice_update,
    validate_endpoints, validate_endpoints_update,
};
pub use ephemeral::validate_pod_ephemeral_containers_update;
pub use node::{validate_runtime_class, validate_runtime_class_update};
pub use services::{
    externally_accessible, is_dns1035_label, is_headless, needs_health_check, validate_cluster_ips,
    validate_non_special_ip, validate_service, validate_service_status_update,
    validate_service_update,
};
mod workloads;
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

// ---- name and label checks (k8s.io/apimachinery/pkg/util/validation) ----

const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_SUBDOMAIN_FMT: &str =
    "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const QUALIFIED_NAME_MSG: &str =
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";

fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    let mut s = format!("{msg} (e.g. ");
    for (i, e) in examples.iter().enumerate() {
        if i > 0 {
            s.push_str(" or ");
        }
        s.push_str(&format!("'{e}', "));
    }
    s.push_str(&format!("regex used for validation is '{fmt}')"));
    s
}

fn max_len_error(n: usize) -> String {
    format!("must be no more than {n} characters")
}

fn is_label_chars(s: &str) -> bool {
    let b = s.as_bytes();
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    !b.is_empty()
        && alnum(b[0])
        && alnum(b[b.len() - 1])
        && b.iter().all(|&c| alnum(c) || c == b'-')
}

/// RFC 1123 label (pods' container names, namespace names): at most 63
/// characters of `[a-z0-9-]`, alphanumeric at both ends.
pub fn is_dns1123_label(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > 63 {
        errs.push(max_len_error(63));
    }
    if !is_label_chars(value) {
        errs.push(regex_error(
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character",
            DNS1123_LABEL_FMT,
            &["my-name", "123-abc"],
        ));
    }
    errs
}

/// RFC 1123 subdomain (most object names): at most 253 characters, dot
/// separated labels.
pub fn is_dns1123_subdomain(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > 253 {
        errs.push(max_len_error(253));
    }
    if !value.split('.').all(is_label_chars) {
        errs.push(regex_error(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
            DNS1123_SUBDOMAIN_FMT,
            &["example.com"],
        ));
    }
    errs
}

fn is_qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// A label/annotation key: `[prefix/]name`, prefix a DNS subdomain, name at
/// most 63 characters.
pub fn is_qualified_name(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = value.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_string());
            } else {
                errs.extend(is_dns1123_subdomain(prefix).into_iter().map(|m| format!("prefix part {m}")));
            }
            *name
        }
        _ => {
            return vec![format!(
                "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(QUALIFIED_NAME_MSG, QUALIFIED_NAME_FMT, &["MyName", "my.name", "123-abc"])
            )]
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".to_string());
    } else if name.len() > 63 {
        errs.push(format!("name part {}", max_len_error(63)));
    }
    if !is_qualified_name_part(name) {
        errs.push(format!(
            "name part {}",
            regex_error(
                QUALIFIED_NAME_MSG,
                QUALIFIED_NAME_FMT,
                &["MyName", "my.name", "123-abc"]
            )
        ));
    }
    errs
}

/// A label value: empty, or at most 63 characters like a qualified name.
pub fn is_valid_label_value(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > 63 {
        errs.push(max_len_error(63));
    }
    if !value.is_empty() && !is_qualified_name_part(value) {
        errs.push(regex_error(
            LABEL_VALUE_MSG,
            &format!("({QUALIFIED_NAME_FMT})?"),
            &["MyValue", "my_value", "12345"],
        ));
    }
    errs
}

/// Object names validated as DNS subdomains; with `prefix` (a
/// generateName) a trailing '-' is allowed.
pub fn name_is_dns_subdomain(name: &str, prefix: bool) -> Vec<String> {
    is_dns1123_subdomain(&mask_trailing_dash(name, prefix))
}

/// Object names validated as DNS labels (namespaces).
pub fn name_is_dns_label(name: &str, prefix: bool) -> Vec<String> {
    is_dns1123_label(&mask_trailing_dash(name, prefix))
}

fn mask_trailing_dash(name: &str, prefix: bool) -> String {
    if prefix && name.len() > 1 && name.ends_with('-') {
        format!("{}a", &name[..name.len() - 1])
    } else {
        name.to_string()
    }
}

fn is_valid_port_name(port: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if port.len() > 15 {
        errs.push(max_len_error(15));
    }
    if port.is_empty()
        || !port
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
    {
        errs.push(
            "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".to_string(),
        );
    }
    if !port.bytes().any(|c| c.is_ascii_lowercase()) {
        errs.push("must contain at least one letter (a-z)".to_string());
    }
    if port.contains("--") {
        errs.push("must not contain consecutive hyphens".to_string());
    }
    if port.starts_with('-') || port.ends_with('-') {
        errs.push("must not begin or end with a hyphen".to_string());
    }
    errs
}

const PORT_RANGE_MSG: &str = "must be between 1 and 65535, inclusive";

// ---- object meta ----

/// Labels: keys qualified names, values label values.
pub fn validate_labels(labels: &BTreeMap<String, String>, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (k, v) in labels {
        errs.extend(
            is_qualified_name(k)
                .into_iter()
                .map(|m| FieldError::invalid(path, k, m)),
        );
        errs.extend(
            is_valid_label_value(v)
                .into_iter()
                .map(|m| FieldError::invalid(path, v, m)),
        );
    }
    errs
}

/// Total size of all annotation keys and values, 256 KiB.
const ANNOTATIONS_MAX_BYTES: usize = 256 * 1024;

/// Annotations: keys qualified names (case-insensitive), total size limit.
pub fn validate_annotations(annotations: &BTreeMap<String, String>, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut total = 0;
    for (k, v) in annotations {
        errs.extend(
            is_qualified_name(&k.to_lowercase())
                .into_iter()
                .map(|m| FieldError::invalid(path, k, m)),
        );
        total += k.len() + v.len();
    }
    if total > ANNOTATIONS_MAX_BYTES {
        errs.push(FieldError::too_long(path, ANNOTATIONS_MAX_BYTES));
    }
    errs
}

/// How an object's name is checked (by its kind).
pub type NameValidator = fn(&str, bool) -> Vec<String>;

/// `ValidateObjectMeta`: name or generateName, namespace presence, labels,
/// annotations, finalizers.
pub fn validate_object_meta(
    meta: &ObjectMeta,
    requires_namespace: bool,
    name_fn: NameValidator,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(g) = meta.generate_name.as_deref().filter(|g| !g.is_empty()) {
        errs.extend(
            name_fn(g, true)
                .into_iter()
                .map(|m| FieldError::invalid("metadata.generateName", g, m)),
        );
    }
    match meta.name.as_deref().filter(|n| !n.is_empty()) {
        None => errs.push(FieldError::required(
            "metadata.name",
            "name or generateName is required",
        )),
        Some(n) => errs.extend(
            name_fn(n, false)
                .into_iter()
                .map(|m| FieldError::invalid("metadata.name", n, m)),
        ),
    }
    let ns = meta.namespace.as_deref().unwrap_or("");
    if requires_namespace {
        if ns.is_empty() {
            errs.push(FieldError::required("metadata.namespace", ""));
        } else {
            errs.extend(
                name_is_dns_label(ns, false)
                    .into_iter()
                    .map(|m| FieldError::invalid("metadata.namespace", ns, m)),
            );
        }
    } else if !ns.is_empty() {
        errs.push(FieldError::forbidden(
            "metadata.namespace",
            "not allowed on this type",
        ));
    }
    if let Some(g) = meta.generation.filter(|g| *g < 0) {
        errs.push(FieldError::invalid(
            "metadata.generation",
            g,
            "must be greater than or equal to 0",
        ));
    }
    if let Some(l) = &meta.labels {
        errs.extend(validate_labels(l, "metadata.labels"));
    }
    if let Some(a) = &meta.annotations {
        errs.extend(validate_annotations(a, "metadata.annotations"));
    }
    for f in meta.finalizers.iter().flatten() {
        errs.extend(
            is_qualified_name(f)
                .into_iter()
                .map(|m| FieldError::invalid("metadata.finalizers", f, m)),
        );
    }
    for r in meta.owner_references.iter().flatten() {
        let p = "metadata.ownerReferences";
        if r.api_version.is_empty() {
            errs.push(FieldError::invalid(
                format!("{p}.apiVersion"),
                &r.api_version,
                "version must not be empty",
            ));
        }
        if r.kind.is_empty() {
            errs.push(FieldError::invalid(
                format!("{p}.kind"),
                &r.kind,
                "kind must not be empty",
            ));
        }
        if r.name.is_empty() {
            errs.push(FieldError::invalid(
                format!("{p}.name"),
                &r.name,
                "name must not be empty",
            ));
        }
        if r.uid.is_empty() {
            errs.push(FieldError::invalid(
                format!("{p}.uid"),
                &r.uid,
                "uid must not be empty",
            ));
        }
    }
    let controllers = meta
        .owner_references
        .iter()
        .flatten()
        .filter(|r| r.controller == Some(true))
        .count();
    if controllers > 1 {
        errs.push(FieldError::invalid(
            "metadata.ownerReferences",
            BadValue::Omit,
            "Only one reference can have Controller set to true",
        ));
    }
    errs
}

/// `ValidateObjectMetaUpdate`: name, namespace, uid and creationTimestamp
/// never change; the new labels and annotations must be valid.
pub fn validate_object_meta_update(new: &ObjectMeta, old: &ObjectMeta) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let immutable =
        |field: &str, n: &Option<String>, o: &Option<String>, errs: &mut Vec<FieldError>| {
            if n.as_deref().unwrap_or("") != o.as_deref().unwrap_or("") {
                errs.push(FieldError::invalid(
                    field,
                    n.as_deref().unwrap_or(""),
                    "field is immutable",
                ));
            }
        };
    immutable("metadata.name", &new.name, &old.name, &mut errs);
    immutable(
        "metadata.namespace",
        &new.namespace,
        &old.namespace,
        &mut errs,
    );
    if new.uid.is_some() {
        immutable("metadata.uid", &new.uid, &old.uid, &mut errs);
    }
    if new.creation_timestamp.is_some() && new.creation_timestamp != old.creation_timestamp {
        let v = new
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.to_rfc3339())
            .unwrap_or_default();
        errs.push(FieldError::invalid(
            "metadata.creationTimestamp",
            v,
            "field is immutable",
        ));
    }
    if let Some(g) = new.generation.filter(|g| *g < 0) {
        errs.push(FieldError::invalid(
            "metadata.generation",
            g,
            "must be greater than or equal to 0",
        ));
    }
    if let Some(l) = &new.labels {
        errs.extend(validate_labels(l, "metadata.labels"));
    }
    if let Some(a) = &new.annotations {
        errs.extend(validate_annotations(a, "metadata.annotations"));
    }
    errs
}

// ---- pods ----

/// Everything `ValidatePodCreate` checks that Orca serves: metadata and the
/// whole spec.
pub fn validate_pod(pod: &Pod) -> Vec<FieldError> {
    let mut errs = validate_object_meta(&pod.metadata, true, name_is_dns_subdomain);
    match &pod.spec {
        Some(spec) => errs.extend(validate_pod_spec(spec, "spec")),
        None => errs.push(FieldError::required("spec.containers", "")),
    }
    // They are added later, through pods/ephemeralcontainers.
    if pod
        .spec
        .as_ref()
        .and_then(|s| s.ephemeral_containers.as_ref())
        .is_some_and(|e| !e.is_empty())
    {
        errs.push(FieldError::forbidden(
            "spec.ephemeralContainers",
            "cannot be set on create",
        ));
    }
    errs
}

/// `ValidatePodSpec` for the fields a Linux pod platform uses.
pub fn validate_pod_spec(spec: &PodSpec, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let volumes = validate_volumes(
        spec.volumes.as_deref().unwrap_or(&[]),
        &format!("{path}.volumes"),
        &mut errs,
    );
    let restart_policy = spec.restart_policy.as_deref().unwrap_or("");
    errs.extend(validate_containers(
        &spec.containers,
        &volumes,
        &format!("{path}.containers"),
    ));
    errs.extend(validate_init_containers(
        spec.init_containers.as_deref().unwrap_or(&[]),
        &spec.containers,
        &volumes,
        &format!("{path}.initContainers"),
    ));
    errs.extend(ephemeral::validate_ephemeral_containers(
        spec.ephemeral_containers.as_deref().unwrap_or(&[]),
        &spec.containers,
        spec.init_containers.as_deref().unwrap_or(&[]),
        &volumes,
        &format!("{path}.ephemeralContainers"),
    ));
    errs.extend(host_port_conflicts(
        &spec.containers,
        &format!("{path}.containers"),
    ));
    for (i, c) in spec.init_containers.iter().flatten().enumerate() {
        // Each init container alone, as they never run together.
        errs.extend(
            host_port_conflicts(std::slice::from_ref(c), &format!("{path}.initContainers"))
                .into_iter()
                .map(|mut e| {
                    e.field = e.field.replacen("[0]", &format!("[{i}]"), 1);
                    e
                }),
        );
    }
    if let Some(psc) = &spec.security_context {
        errs.extend(validate_sysctls(
            psc.sysctls.as_deref().unwrap_or_default(),
            spec.host_network == Some(true),
            spec.host_ipc == Some(true),
            &format!("{path}.securityContext.sysctls"),
        ));
        for (field, v) in [
            ("runAsUser", psc.run_as_user),
            ("runAsGroup", psc.run_as_group),
            ("fsGroup", psc.fs_group),
        ] {
            if let Some(v) = v.filter(|v| !(0..=i64::from(i32::MAX)).contains(v)) {
                errs.push(FieldError::invalid(
                    format!("{path}.securityContext.{field}"),
                    v,
                    "must be between 0 and 2147483647, inclusive",
                ));
            }
        }
    }
    if spec.share_process_namespace == Some(true) && spec.host_pid == Some(true) {
        errs.push(FieldError::invalid(
            format!("{path}.securityContext.shareProcessNamespace"),
            true,
            "ShareProcessNamespace and HostPID cannot both be enabled",
        ));
    }
    let rp_path = format!("{path}.restartPolicy");
    match restart_policy {
        "Always" | "OnFailure" | "Never" => {}
        "" => errs.push(FieldError::required(rp_path, "")),
        other => errs.push(FieldError::not_supported(
            rp_path,
            other,
            &["Always", "OnFailure", "Never"],
        )),
    }
    let dns_path = format!("{path}.dnsPolicy");
    match spec.dns_policy.as_deref().unwrap_or("") {
        "ClusterFirstWithHostNet" | "ClusterFirst" | "Default" | "None" => {}
        "" => errs.push(FieldError::required(dns_path, "")),
        other => errs.push(FieldError::not_supported(
            dns_path,
            other,
            &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
        )),
    }
    if spec.dns_policy.as_deref() == Some("None")
        && spec
            .dns_config
            .as_ref()
            .is_none_or(|c| c.nameservers.as_ref().is_none_or(|n| n.is_empty()))
    {
        errs.push(FieldError::required(
            format!("{path}.dnsConfig"),
            "must provide `dnsConfig` when `dnsPolicy` is None",
        ));
    }
    if let Some(sel) = &spec.node_selector {
        errs.extend(validate_labels(sel, &format!("{path}.nodeSelector")));
    }
    for (i, s) in spec.image_pull_secrets.iter().flatten().enumerate() {
        if s.name.is_empty() {
            errs.push(FieldError::required(
                format!("{path}.imagePullSecrets[{i}].name"),
                "",
            ));
        }
    }
    for (i, g) in spec.readiness_gates.iter().flatten().enumerate() {
        let p = format!("{path}.readinessGates[{i}].conditionType");
        errs.extend(
            is_qualified_name(&g.condition_type)
                .into_iter()
                .map(|m| FieldError::invalid(p.clone(), &g.condition_type, m)),
        );
    }
    for (field, value) in [
        ("serviceAccountName", &spec.service_account_name),
        ("nodeName", &spec.node_name),
    ] {
        if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
            let p = format!("{path}.{field}");
            errs.extend(
                is_dns1123_subdomain(v)
                    .into_iter()
                    .map(|m| FieldError::invalid(p.clone(), v, m)),
            );
        }
    }
    if let Some(v) = spec.active_deadline_seconds {
        if !(1..=i64::from(i32::MAX)).contains(&v) {
            errs.push(FieldError::invalid(
                format!("{path}.activeDeadlineSeconds"),
                v,
                "must be between 1 and 2147483647, inclusive",
            ));
        }
    }
    for (field, value) in [("hostname", &spec.hostname), ("subdomain", &spec.subdomain)] {
        if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
            let p = format!("{path}.{field}");
            errs.extend(
                is_dns1123_label(v)
                    .into_iter()
                    .map(|m| FieldError::invalid(p.clone(), v, m)),
            );
        }
    }
    if let Some(t) = &spec.tolerations {
        errs.extend(validate_tolerations(t, &format!("{path}.tolerations")));
    }
    if let Some(p) = spec.preemption_policy.as_deref() {
        if !matches!(p, "PreemptLowerPriority" | "Never") {
            errs.push(FieldError::not_supported(
                format!("{path}.preemptionPolicy"),
                p,
                &["Never", "PreemptLowerPriority"],
            ));
        }
    }
    if let Some(v) = spec.termination_grace_period_seconds.filter(|v| *v < 0) {
        errs.push(FieldError::invalid(
            format!("{path}.terminationGracePeriodSeconds"),
            v,
            "must be greater than or equal to 0",
        ));
    }
    errs
}

/// Checks the volumes and returns the names of the valid ones, which
/// volume mounts may refer to.
fn validate_volumes(volumes: &[Volume], path: &str, errs: &mut Vec<FieldError>) -> HashSet<String> {
    let mut names = HashSet::new();
    for (i, v) in volumes.iter().enumerate() {
        let idx = format!("{path}[{i}]");
        let mut el = validate_volume_source(v, &idx);
        let name_path = format!("{idx}.name");
        if v.name.is_empty() {
            el.push(FieldError::required(name_path.clone(), ""));
        } else {
            el.extend(
                is_dns1123_label(&v.name)
                    .into_iter()
                    .map(|m| FieldError::invalid(name_path.clone(), &v.name, m)),
            );
        }
        if names.contains(&v.name) {
            el.push(FieldError::duplicate(name_path, &v.name));
        }
        if el.is_empty() {
            names.insert(v.name.clone());
        } else {
            errs.extend(el);
        }
    }
    names
}

fn validate_volume_source(v: &Volume, path: &str) -> Vec<FieldError> {
    let sources: Vec<&str> = [
        ("hostPath", v.host_path.is_some()),
        ("emptyDir", v.empty_dir.is_some()),
        ("secret", v.secret.is_some()),
        ("configMap", v.config_map.is_some()),
        ("projected", v.projected.is_some()),
        ("downwardAPI", v.downward_api.is_some()),
        ("persistentVolumeClaim", v.persistent_volume_claim.is_some()),
        ("nfs", v.nfs.is_some()),
        ("csi", v.csi.is_some()),
        ("ephemeral", v.ephemeral.is_some()),
        ("image", v.image.is_some()),
        ("iscsi", v.iscsi.is_some()),
        ("awsElasticBlockStore", v.aws_elastic_block_store.is_some()),
        ("azureDisk", v.azure_disk.is_some()),
        ("azureFile", v.azure_file.is_some()),
        ("cephfs", v.cephfs.is_some()),
        ("cinder", v.cinder.is_some()),
        ("fc", v.fc.is_some()),
        ("flexVolume", v.flex_volume.is_some()),
        ("flocker", v.flocker.is_some()),
        ("gcePersistentDisk", v.gce_persistent_disk.is_some()),
        ("gitRepo", v.git_repo.is_some()),
        ("glusterfs", v.glusterfs.is_some()),
        ("photonPersistentDisk", v.photon_persistent_disk.is_some()),
        ("portworxVolume", v.portworx_volume.is_some()),
        ("quobyte", v.quobyte.is_some()),
        ("rbd", v.rbd.is_some()),
        ("scaleIO", v.scale_io.is_some()),
        ("storageos", v.storageos.is_some()),
        ("vsphereVolume", v.vsphere_volume.is_some()),
    ]
    .into_iter()
    .filter_map(|(n, set)| set.then_some(n))
    .collect();
    let mut errs = Vec::new();
    match sources.as_slice() {
        [] => errs.push(FieldError::required(path, "must specify a volume type")),
        [_] => {}
        [_, rest @ ..] => {
            for s in rest {
                errs.push(FieldError::forbidden(
                    format!("{path}.{s}"),
                    "may not specify more than 1 volume type",
                ));
            }
        }
    }
    if let Some(h) = &v.host_path {
        if h.path.is_empty() {
            errs.push(FieldError::required(format!("{path}.hostPath.path"), ""));
        }
        if let Some(t) = h.type_.as_deref() {
            const TYPES: [&str; 8] = [
                "",
                "BlockDevice",
                "CharDevice",
                "Directory",
                "DirectoryOrCreate",
                "File",
                "FileOrCreate",
                "Socket",
            ];
            if !TYPES.contains(&t) {
                errs.push(FieldError::not_supported(
                    format!("{path}.hostPath.type"),
                    t,
                    &TYPES,
                ));
            }
        }
    }
    if let Some(sv) = &v.secret {
        if sv.secret_name.as_deref().unwrap_or("").is_empty() {
            errs.push(FieldError::required(
                format!("{path}.secret.secretName"),
                "",
            ));
        }
    }
    if let Some(c) = &v.config_map {
        if c.name.is_empty() {
            errs.push(FieldError::required(format!("{path}.configMap.name"), ""));
        }
    }
    if let Some(c) = &v.persistent_volume_claim {
        if c.claim_name.is_empty() {
            errs.push(FieldError::required(
                format!("{path}.persistentVolumeClaim.claimName"),
                "",
            ));
        }
    }
    for (field, mode) in [
        ("secret", v.secret.as_ref().and_then(|s| s.default_mode)),
        (
            "configMap",
            v.config_map.as_ref().and_then(|s| s.default_mode),
        ),
        (
            "projected",
            v.projected.as_ref().and_then(|s| s.default_mode),
        ),
        (
            "downwardAPI",
            v.downward_api.as_ref().and_then(|s| s.default_mode),
        ),
    ] {
        if let Some(m) = mode.filter(|m| !(0..=0o777).contains(m)) {
            errs.push(FieldError::invalid(
                format!("{path}.{field}.defaultMode"),
                m,
                "must be a number between 0 and 0777 (octal), both inclusive",
            ));
        }
    }
    errs
}

/// Two containers may not claim the same host port (with protocol and
/// host IP); init containers run one at a time and are checked alone.
fn host_port_conflicts(containers: &[Container], path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut seen = HashSet::new();
    for (ci, c) in containers.iter().enumerate() {
        for (pi, p) in c.ports.iter().flatten().enumerate() {
            let Some(hp) = p.host_port.filter(|hp| *hp != 0) else {
                continue;
            };
            let key = format!(
                "{}/{}/{hp}",
                p.host_ip.as_deref().unwrap_or(""),
                p.protocol.as_deref().unwrap_or("")
            );
            if !seen.insert(key.clone()) {
                errs.push(FieldError::duplicate(
                    format!("{path}[{ci}].ports[{pi}].hostPort"),
                    key,
                ));
            }
        }
    }
    errs
}

fn validate_security_context(
    sc: &k8s_openapi::api::core::v1::SecurityContext,
    path: &str,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (field, v) in [
        ("runAsUser", sc.run_as_user),
        ("runAsGroup", sc.run_as_group),
    ] {
        if let Some(v) = v.filter(|v| !(0..=i64::from(i32::MAX)).contains(v)) {
            errs.push(FieldError::invalid(
                format!("{path}.{field}"),
                v,
                "must be between 0 and 2147483647, inclusive",
            ));
        }
    }
    if sc.privileged == Some(true) && sc.allow_privilege_escalation == Some(false) {
        errs.push(FieldError::invalid(
            path,
            BadValue::Omit,
            "cannot set `allowPrivilegeEscalation` to false and `privileged` to true",
        ));
    }
    errs
}

fn validate_containers(
    containers: &[Container],
    volumes: &HashSet<String>,
    path: &str,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if containers.is_empty() {
        errs.push(FieldError::required(path, ""));
    }
    let mut names = HashSet::new();
    for (i, c) in containers.iter().enumerate() {
        let idx = format!("{path}[{i}]");
        errs.extend(validate_container_common(c, volumes, &idx));
        if !names.insert(c.name.as_str()) {
            errs.push(FieldError::duplicate(format!("{idx}.name"), &c.name));
        }
        errs.extend(validate_probes(c, &idx));
        if c.restart_policy.is_some() {
            errs.push(FieldError::forbidden(
                format!("{idx}.restartPolicy"),
                "may not be set for non-init containers",
            ));
        }
    }
    errs
}

fn validate_init_containers(
    containers: &[Container],
    app: &[Container],
    volumes: &HashSet<String>,
    path: &str,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut names: HashSet<&str> = app.iter().map(|c| c.name.as_str()).collect();
    for (i, c) in containers.iter().enumerate() {
        let idx = format!("{path}[{i}]");
        errs.extend(validate_container_common(c, volumes, &idx));
        let mut sidecar = false;
        if let Some(rp) = c.restart_policy.as_deref() {
            if rp == "Always" {
                sidecar = true;
            } else {
                errs.push(FieldError::not_supported(
                    format!("{idx}.restartPolicy"),
                    rp,
                    &["Always"],
                ));
            }
        }
        if names.contains(c.name.as_str()) {
            errs.push(FieldError::duplicate(format!("{idx}.name"), &c.name));
        } else if !c.name.is_empty() {
            names.insert(c.name.as_str());
        }
        if sidecar {
            errs.extend(validate_probes(c, &idx));
        } else {
            const WHY: &str = "may not be set for init containers without restartPolicy=Always";
            let set = [
                ("lifecycle", c.lifecycle.is_some()),
                ("livenessProbe", c.liveness_probe.is_some()),
                ("readinessProbe", c.readiness_probe.is_some()),
                ("startupProbe", c.startup_probe.is_some()),
            ];
            for (field, present) in set {
                if present {
                    errs.push(FieldError::forbidden(format!("{idx}.{field}"), WHY));
                }
            }
        }
    }
    errs
}

fn validate_container_common(
    c: &Container,
    volumes: &HashSet<String>,
    idx: &str,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let name_path = format!("{idx}.name");
    if c.name.is_empty() {
        errs.push(FieldError::required(name_path, ""));
    } else {
        errs.extend(
            is_dns1123_label(&c.name)
                .into_iter()
                .map(|m| FieldError::invalid(name_path.clone(), &c.name, m)),
        );
    }
    let image = c.image.as_deref().unwrap_or("");
    if image.is_empty() {
        errs.push(FieldError::required(format!("{idx}.image"), ""));
    } else if image.trim() != image {
        errs.push(FieldError::invalid(
            format!("{idx}.image"),
            image,
            "must not have leading or trailing whitespace",
        ));
    }
    let tmp_path = format!("{idx}.terminationMessagePolicy");
    match c.termination_message_policy.as_deref().unwrap_or("") {
        "File" | "FallbackToLogsOnError" => {}
        "" => errs.push(FieldError::required(
            tmp_path,
            "must be 'File' or 'FallbackToLogsOnError'",
        )),
        other => errs.push(FieldError::not_supported(
            tmp_path,
            other,
            &["File", "FallbackToLogsOnError"],
        )),
    }
    errs.extend(validate_ports(
        c.ports.as_deref().unwrap_or(&[]),
        &format!("{idx}.ports"),
    ));
    errs.extend(validate_env(
        c.env.as_deref().unwrap_or(&[]),
        &format!("{idx}.env"),
    ));
    errs.extend(validate_volume_mounts(
        c.volume_mounts.as_deref().unwrap_or(&[]),
        volumes,
        &format!("{idx}.volumeMounts"),
    ));
    let ipp_path = format!("{idx}.imagePullPolicy");
    match c.image_pull_policy.as_deref().unwrap_or("") {
        "Always" | "IfNotPresent" | "Never" => {}
        "" => errs.push(FieldError::required(ipp_path, "")),
        other => errs.push(FieldError::not_supported(
            ipp_path,
            other,
            &["Always", "IfNotPresent", "Never"],
        )),
    }
    if let Some(r) = &c.resources {
        errs.extend(validate_resources(r, &format!("{idx}.resources")));
    }
    if let Some(sc) = &c.security_context {
        errs.extend(validate_security_context(
            sc,
            &format!("{idx}.securityContext"),
        ));
    }
    errs
}

fn validate_ports(ports: &[ContainerPort], path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut names = HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        let idx = format!("{path}[{i}]");
        if let Some(name) = p.name.as_deref().filter(|n| !n.is_empty()) {
            let np = format!("{idx}.name");
            errs.extend(
                is_valid_port_name(name)
                    .into_iter()
                    .map(|m| FieldError::invalid(np.clone(), name, m)),
            );
            if !names.insert(name) {
                errs.push(FieldError::duplicate(np, name));
            }
        }
        if !(1..=65535).contains(&p.container_port) {
            errs.push(FieldError::invalid(
                format!("{idx}.containerPort"),
                p.container_port,
                PORT_RANGE_MSG,
            ));
        }
        if let Some(hp) = p.host_port.filter(|hp| *hp != 0) {
            if !(1..=65535).contains(&hp) {
                errs.push(FieldError::invalid(
                    format!("{idx}.hostPort"),
                    hp,
                    PORT_RANGE_MSG,
                ));
            }
        }
        let pp = format!("{idx}.protocol");
        match p.protocol.as_deref().unwrap_or("") {
            "TCP" | "UDP" | "SCTP" => {}
            "" => errs.push(FieldError::required(pp, "")),
            other => errs.push(FieldError::not_supported(
                pp,
                other,
                &["SCTP", "TCP", "UDP"],
            )),
        }
    }
    errs
}

fn validate_env(env: &[EnvVar], path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, e) in env.iter().enumerate() {
        let np = format!("{path}[{i}].name");
        if e.name.is_empty() {
            errs.push(FieldError::required(np, ""));
        } else if !e
            .name
            .bytes()
            .all(|b| (0x20..0x7f).contains(&b) && b != b'=')
        {
            // RelaxedEnvironmentVariableValidation is on by default in v1.32.
            errs.push(FieldError::invalid(
                np,
                &e.name,
                "a valid environment variable name must consist only of printable ASCII characters other than '='",
            ));
        }
        if let Some(from) = &e.value_from {
            let vf = format!("{path}[{i}].valueFrom");
            if e.value.as_deref().is_some_and(|v| !v.is_empty()) {
                errs.push(FieldError::invalid(
                    vf.clone(),
                    "",
                    "may not be specified when `value` is not empty",
                ));
            }
            let n = [
                from.field_ref.is_some(),
                from.resource_field_ref.is_some(),
                from.config_map_key_ref.is_some(),
                from.secret_key_ref.is_some(),
            ]
            .iter()
            .filter(|b| **b)
            .count();
            if n == 0 {
                errs.push(FieldError::invalid(vf, "", "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`"));
            } else if n > 1 {
                errs.push(FieldError::invalid(
                    vf,
                    "",
                    "may not have more than one field specified at a time",
                ));
            }
        }
    }
    errs
}

fn validate_volume_mounts(
    mounts: &[VolumeMount],
    volumes: &HashSet<String>,
    path: &str,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut paths = HashSet::new();
    for (i, m) in mounts.iter().enumerate() {
        let idx = format!("{path}[{i}]");
        if m.name.is_empty() {
            errs.push(FieldError::required(format!("{idx}.name"), ""));
        } else if !volumes.contains(&m.name) {
            errs.push(FieldError::not_found(format!("{idx}.name"), &m.name));
        }
        if m.mount_path.is_empty() {
            errs.push(FieldError::required(format!("{idx}.mountPath"), ""));
        } else if !paths.insert(m.mount_path.as_str()) {
            errs.push(FieldError::invalid(
                format!("{idx}.mountPath"),
                &m.mount_path,
                "must be unique",
            ));
        }
        // Kubernetes names these two without the mount's index.
        let sub_path = m.sub_path.as_deref().filter(|s| !s.is_empty());
        if let Some(sp) = sub_path {
            local_descending_path(sp, &format!("{path}.subPath"), &mut errs);
        }
        if let Some(expr) = m.sub_path_expr.as_deref().filter(|s| !s.is_empty()) {
            if sub_path.is_some() {
                errs.push(FieldError::invalid(
                    format!("{idx}.subPathExpr"),
                    expr,
                    "subPathExpr and subPath are mutually exclusive",
                ));
            }
            local_descending_path(expr, &format!("{path}.subPathExpr"), &mut errs);
        }
    }
    errs
}

/// A path relative to a volume that stays inside it.
fn local_descending_path(p: &str, field: &str, errs: &mut Vec<FieldError>) {
    if p.starts_with('/') {
        errs.push(FieldError::invalid(field, p, "must be a relative path"));
    }
    if p.split('/').any(|part| part == "..") {
        errs.push(FieldError::invalid(field, p, "must not contain '..'"));
    }
}

fn is_standard_or_qualified_resource(name: &str) -> bool {
    name.contains('/')
        || matches!(
            name,
            "cpu" | "memory" | "ephemeral-storage" | "storage" | "pods"
        )
        || name.starts_with("hugepages-")
        || name.starts_with("requests.")
        || name.starts_with("limits.")
}

fn validate_resources(r: &ResourceRequirements, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut limits = HashMap::new();
    for (kind, map) in [("limits", &r.limits), ("requests", &r.requests)] {
        for (name, q) in map.iter().flatten() {
            let p = format!("{path}.{kind}[{name}]");
            if !is_standard_or_qualified_resource(name) {
                errs.push(FieldError::invalid(
                    p.clone(),
                    name,
                    "must be a standard resource type or fully qualified",
                ));
            }
            match parse_nanos(&q.0) {
                Err(e) => errs.push(FieldError::invalid(p, &q.0, e.to_string())),
                Ok(v) if v < 0 => errs.push(FieldError::invalid(
                    p,
                    &q.0,
                    "must be greater than or equal to 0",
                )),
                Ok(v) if kind == "limits" => {
                    limits.insert(name.as_str(), (v, q.0.as_str()));
                }
                Ok(v) => {
                    if let Some((lim, lim_str)) = limits.get(name.as_str()) {
                        if v > *lim {
                            errs.push(FieldError::invalid(
                                p,
                                &q.0,
                                format!("must be less than or equal to {name} limit of {lim_str}"),
                            ));
                        }
                    }
                }
            }
        }
    }
    errs
}

fn validate_probes(c: &Container, idx: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (field, probe) in [
        ("livenessProbe", &c.liveness_probe),
        ("readinessProbe", &c.readiness_probe),
        ("startupProbe", &c.startup_probe),
    ] {
        let Some(p) = probe else { continue };
        let path = format!("{idx}.{field}");
        errs.extend(validate_probe(p, &path));
        if field != "readinessProbe" && p.success_threshold.is_some_and(|s| s != 1) {
            errs.push(FieldError::invalid(
                format!("{path}.successThreshold"),
                p.success_threshold,
                "must be 1",
            ));
        }
        if field == "readinessProbe" && p.termination_grace_period_seconds.is_some() {
            errs.push(FieldError::invalid(
                format!("{path}.terminationGracePeriodSeconds"),
                p.termination_grace_period_seconds,
                "must not be set for readinessProbes",
            ));
        }
    }
    errs
}

fn validate_probe(p: &Probe, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let handlers: Vec<&str> = [
        ("exec", p.exec.is_some()),
        ("httpGet", p.http_get.is_some()),
        ("tcpSocket", p.tcp_socket.is_some()),
        ("grpc", p.grpc.is_some()),
    ]
    .into_iter()
    .filter_map(|(n, s)| s.then_some(n))
    .collect();
    match handlers.as_slice() {
        [] => errs.push(FieldError::required(path, "must specify a handler type")),
        [_] => {}
        [_, rest @ ..] => {
            for h in rest {
                errs.push(FieldError::forbidden(
                    format!("{path}.{h}"),
                    "may not specify more than 1 handler type",
                ));
            }
        }
    }
    for (field, v) in [
        ("initialDelaySeconds", p.initial_delay_seconds),
        ("timeoutSeconds", p.timeout_seconds),
        ("periodSeconds", p.period_seconds),
        ("successThreshold", p.success_threshold),
        ("failureThreshold", p.failure_threshold),
    ] {
        if let Some(v) = v.filter(|v| *v < 0) {
            errs.push(FieldError::invalid(
                format!("{path}.{field}"),
                v,
                "must be greater than or equal to 0",
            ));
        }
    }
    if let Some(v) = p.termination_grace_period_seconds.filter(|v| *v <= 0) {
        errs.push(FieldError::invalid(
            format!("{path}.terminationGracePeriodSeconds"),
            v,
            "must be greater than 0",
        ));
    }
    if let Some(h) = &p.http_get {
        errs.extend(validate_port_num_or_name(
            &h.port,
            &format!("{path}.httpGet.port"),
        ));
        if let Some(s) = h.scheme.as_deref() {
            if !matches!(s, "HTTP" | "HTTPS") {
                errs.push(FieldError::not_supported(
                    format!("{path}.httpGet.scheme"),
                    s,
                    &["HTTP", "HTTPS"],
                ));
            }
        }
    }
    if let Some(t) = &p.tcp_socket {
        errs.extend(validate_port_num_or_name(
            &t.port,
            &format!("{path}.tcpSocket.port"),
        ));
    }
    if let Some(e) = &p.exec {
        if e.command.as_ref().is_none_or(|c| c.is_empty()) {
            errs.push(FieldError::required(format!("{path}.exec.command"), ""));
        }
    }
    errs
}

fn validate_port_num_or_name(
    port: &k8s_openapi::apimachinery::pkg::util::intstr::IntOrString,
    path: &str,
) -> Vec<FieldError> {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    match port {
        IntOrString::Int(n) if !(1..=65535).contains(n) => {
            vec![FieldError::invalid(path, *n, PORT_RANGE_MSG)]
        }
        IntOrString::Int(_) => vec![],
        IntOrString::String(s) if s.is_empty() => vec![FieldError::required(path, "")],
        IntOrString::String(s) => is_valid_port_name(s)
            .into_iter()
            .map(|m| FieldError::invalid(path, s, m))
            .collect(),
    }
}

/// `ValidateTolerations`.
pub fn validate_tolerations(tolerations: &[Toleration], path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, t) in tolerations.iter().enumerate() {
        let idx = format!("{path}[{i}]");
        let key = t.key.as_deref().unwrap_or("");
        let op = t.operator.as_deref().unwrap_or("");
        let effect = t.effect.as_deref().unwrap_or("");
        if !key.is_empty() {
            let kp = format!("{idx}.key");
            errs.extend(
                is_qualified_name(key)
                    .into_iter()
                    .map(|m| FieldError::invalid(kp.clone(), key, m)),
            );
        }
        if key.is_empty() && op != "Exists" {
            errs.push(FieldError::invalid(
                format!("{idx}.operator"),
                op,
                "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
            ));
        }
        if t.toleration_seconds.is_some() && effect != "NoExecute" {
            errs.push(FieldError::invalid(
                format!("{idx}.effect"),
                effect,
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            ));
        }
        let value = t.value.as_deref().unwrap_or("");
        match op {
            "" | "Equal" => {
                let vp = format!("{idx}.operator");
                errs.extend(
                    is_valid_label_value(value)
                        .into_iter()
                        .map(|m| FieldError::invalid(vp.clone(), value, m)),
                );
            }
            "Exists" => {
                if !value.is_empty() {
                    errs.push(FieldError::invalid(
                        format!("{idx}.operator"),
                        value,
                        "value must be empty when `operator` is 'Exists'",
                    ));
                }
            }
            other => errs.push(FieldError::not_supported(
                format!("{idx}.operator"),
                other,
                &["Equal", "Exists"],
            )),
        }
        if !effect.is_empty() && !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute")
        {
            errs.push(FieldError::not_supported(
                format!("{idx}.effect"),
                effect,
                &["NoSchedule", "PreferNoSchedule", "NoExecute"],
            ));
        }
    }
    errs
}

const SYSCTL_MAX_LENGTH: usize = 253;
const SYSCTL_REGEX: &str =
    r"^([a-z0-9]([-_a-z0-9]*[a-z0-9])?[\./])*[a-z0-9]([-_a-z0-9]*[a-z0-9])?$";

/// Kubernetes' `IsValidSysctlName`: segments of `[a-z0-9]([-_a-z0-9]*[a-z0-9])?`
/// joined by `.` or `/`, at most 253 characters.
fn is_valid_sysctl_name(name: &str) -> bool {
    let segment = |s: &str| {
        let b = s.as_bytes();
        let edge = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
        b.first().is_some_and(edge)
            && b.last().is_some_and(edge)
            && b.iter().all(|c| edge(c) || *c == b'-' || *c == b'_')
    };
    name.len() <= SYSCTL_MAX_LENGTH && name.split(['.', '/']).all(segment)
}

/// The kernel namespace a sysctl belongs to (the kubelet's `GetNamespace`,
/// on the dotted form), for the ones a pod shares with the host.
fn sysctl_namespace(name: &str) -> Option<&'static str> {
    // `net/ipv4/conf/eth0.100/rp_filter` is `net.ipv4.conf.eth0/100.rp_filter`.
    let dotted: String = match name.find(['.', '/']) {
        Some(i) if name.as_bytes()[i] == b'/' => name
            .chars()
            .map(|c| match c {
                '.' => '/',
                '/' => '.',
                c => c,
            })
            .collect(),
        _ => name.to_string(),
    };
    const IPC: &[&str] = &[
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
        "kernel.shm",
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.msg",
    ];
    if IPC.contains(&dotted.as_str()) || dotted.starts_with("fs.mqueue.") {
        Some("ipc")
    } else if dotted.starts_with("net.") {
        Some("net")
    } else {
        None
    }
}

/// `validateSysctls`: valid, distinct names; none of a namespace the pod
/// shares with the host.
fn validate_sysctls(
    sysctls: &[k8s_openapi::api::core::v1::Sysctl],
    host_network: bool,
    host_ipc: bool,
    path: &str,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut seen = HashSet::new();
    for (i, s) in sysctls.iter().enumerate() {
        let field = format!("{path}[{i}].name");
        if s.name.is_empty() {
            errs.push(FieldError::required(field.clone(), ""));
        } else if !is_valid_sysctl_name(&s.name) {
            errs.push(FieldError::invalid(
                field.clone(),
                s.name.as_str(),
                format!("must have at most {SYSCTL_MAX_LENGTH} characters and match regex {SYSCTL_REGEX}"),
            ));
        } else if seen.contains(&s.name) {
            errs.push(FieldError::duplicate(field.clone(), s.name.as_str()));
        }
        match sysctl_namespace(&s.name) {
            Some("net") if host_network => errs.push(FieldError::invalid(
                field,
                s.name.as_str(),
                "may not be specified when 'hostNetwork' is true",
            )),
            Some("ipc") if host_ipc => errs.push(FieldError::invalid(
                field,
                s.name.as_str(),
                "may not be specified when 'hostIPC' is true",
            )),
            _ => {}
        }
        seen.insert(s.name.clone());
    }
    errs
}

/// The spec fields a pod update may change, in Kubernetes' wording.
const POD_UPDATABLE_FIELDS: &str = "`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// `ValidatePodUpdate`: the new pod must be valid and its spec equal to the
/// old one except for images, a lowered or newly set activeDeadlineSeconds,
/// and added tolerations.
pub fn validate_pod_update(new: &Pod, old: &Pod) -> Vec<FieldError> {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    match &new.spec {
        Some(spec) => errs.extend(validate_pod_spec(spec, "spec")),
        None => errs.push(FieldError::required("spec.containers", "")),
    }
    let (Some(new_spec), Some(old_spec)) = (&new.spec, &old.spec) else {
        return errs;
    };
    for (field, n, o) in [
        (
            "containers",
            &new_spec.containers[..],
            &old_spec.containers[..],
        ),
        (
            "initContainers",
            new_spec.init_containers.as_deref().unwrap_or(&[]),
            old_spec.init_containers.as_deref().unwrap_or(&[]),
        ),
    ] {
        if n.len() != o.len() {
            errs.push(FieldError::forbidden(
                format!("spec.{field}"),
                "pod updates may not add or remove containers",
            ));
            return errs;
        }
    }
    match (
        new_spec.active_deadline_seconds,
        old_spec.active_deadline_seconds,
    ) {
        (Some(n), _) if !(0..=i64::from(i32::MAX)).contains(&n) => {
            errs.push(FieldError::invalid(
                "spec.activeDeadlineSeconds",
                n,
                "must be between 0 and 2147483647, inclusive",
            ));
            return errs;
        }
        (Some(n), Some(o)) if o < n => {
            errs.push(FieldError::invalid(
                "spec.activeDeadlineSeconds",
                n,
                "must be less than or equal to previous value",
            ));
            return errs;
        }
        (None, Some(_)) => errs.push(FieldError::invalid(
            "spec.activeDeadlineSeconds",
            BadValue::Null,
            "must not update from a positive integer to nil value",
        )),
        _ => {}
    }
    let new_tol = new_spec.tolerations.as_deref().unwrap_or(&[]);
    for old_t in old_spec.tolerations.iter().flatten() {
        let kept = new_tol.iter().any(|n| {
            let mut o = old_t.clone();
            o.toleration_seconds = n.toleration_seconds;
            o == *n
        });
        if !kept {
            errs.push(FieldError::forbidden(
                "spec.tolerations",
                "existing toleration can not be modified except its tolerationSeconds",
            ));
            return errs;
        }
    }
    // Undo the allowed changes; whatever still differs is forbidden.
    let mut munged = new_spec.clone();
    for (m, o) in munged.containers.iter_mut().zip(&old_spec.containers) {
        m.image = o.image.clone();
    }
    for (m, o) in munged
        .init_containers
        .iter_mut()
        .flatten()
        .zip(old_spec.init_containers.iter().flatten())
    {
        m.image = o.image.clone();
    }
    munged.active_deadline_seconds = old_spec.active_deadline_seconds;
    munged.tolerations = old_spec.tolerations.clone();
    if old_spec
        .termination_grace_period_seconds
        .is_some_and(|g| g < 0)
        && munged.termination_grace_period_seconds == Some(1)
    {
        munged.termination_grace_period_seconds = old_spec.termination_grace_period_seconds;
    }
    let munged_v = normalized(&munged);
    let old_v = normalized(old_spec);
    if munged_v != old_v {
        let mut changed = Vec::new();
        diff_paths("spec", &old_v, &munged_v, &mut changed);
        let diff: String = changed
            .iter()
            .map(|p| format!("\n  {p}: changed"))
            .collect();
        errs.push(FieldError::forbidden(
            "spec",
            format!("pod updates may not change fields other than {POD_UPDATABLE_FIELDS}{diff}"),
        ));
    }
    errs
}

/// `ValidatePodStatusUpdate` (the `pods/status` subresource): metadata
/// stays, the node binding is not changed here, containers of a pod that
/// does not restart them do not come back from terminated, and pod/host IPs
/// are IP addresses with `podIPs[0]` equal to `podIP`.
pub fn validate_pod_status_update(new: &Pod, old: &Pod) -> Vec<FieldError> {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    let node = |p: &Pod| {
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default()
    };
    if node(new) != node(old) {
        errs.push(FieldError::forbidden(
            "status.nodeName",
            "may not be changed directly",
        ));
    }
    let status = new.status.clone().unwrap_or_default();
    let old_status = old.status.clone().unwrap_or_default();
    if let Some(n) = status
        .nominated_node_name
        .as_deref()
        .filter(|n| !n.is_empty())
    {
        if old_status.nominated_node_name.as_deref() != Some(n) {
            errs.extend(
                is_dns1123_subdomain(n)
                    .into_iter()
                    .map(|m| FieldError::invalid("status.nominatedNodeName", n, m)),
            );
        }
    }
    let restart_policy = old
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.clone())
        .unwrap_or_default();
    for (field, new_cs, old_cs) in [
        (
            "containerStatuses",
            &status.container_statuses,
            &old_status.container_statuses,
        ),
        (
            "initContainerStatuses",
            &status.init_container_statuses,
            &old_status.init_container_statuses,
        ),
    ] {
        for (i, cs) in new_cs.iter().flatten().enumerate() {
            let Some(prev) = old_cs.iter().flatten().find(|o| o.name == cs.name) else {
                continue;
            };
            let Some(term) = prev.state.as_ref().and_then(|s| s.terminated.as_ref()) else {
                continue;
            };
            let still_terminated = cs.state.as_ref().is_some_and(|s| s.terminated.is_some());
            // OnFailure restarts only failed containers; init containers of
            // such pods likewise.
            let may_restart = restart_policy == "OnFailure" && term.exit_code != 0;
            if !still_terminated && !may_restart {
                errs.push(FieldError::forbidden(
                    format!("status.{field}[{i}].state"),
                    "may not be transitioned to non-terminated state",
                ));
            }
        }
    }
    let pod_ip = status.pod_ip.clone().unwrap_or_default();
    let ips: Vec<String> = status
        .pod_ips
        .iter()
        .flatten()
        .map(|p| p.ip.clone())
        .collect();
    if !ips.is_empty() && ips[0] != pod_ip {
        errs.push(FieldError::invalid(
            "status.podIPs[0].ip",
            &ips[0],
            "must be equal to `podIP`",
        ));
    }
    for (i, ip) in ips.iter().enumerate() {
        if ip.parse::<std::net::IpAddr>().is_err() {
            errs.push(FieldError::invalid(
                format!("status.podIPs[{i}].ip"),
                ip,
                "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
            ));
        }
    }
    let host_ips: Vec<String> = status
        .host_ips
        .iter()
        .flatten()
        .map(|p| p.ip.clone())
        .collect();
    for (i, ip) in host_ips.iter().enumerate() {
        if ip.parse::<std::net::IpAddr>().is_err() {
            errs.push(FieldError::invalid(
                format!("status.hostIPs[{i}].ip"),
                ip,
                "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
            ));
        }
    }
    errs
}

/// JSON form with empty lists and maps dropped: Kubernetes compares specs
/// semantically, where an empty list equals an absent one.
fn normalized<T: serde::Serialize>(v: &T) -> Value {
    fn strip(v: Value) -> Option<Value> {
        match v {
            Value::Null => None,
            Value::Array(a) if a.is_empty() => None,
            Value::Array(a) => Some(Value::Array(
                a.into_iter()
                    .map(|x| strip(x).unwrap_or(Value::Null))
                    .collect(),
            )),
            Value::Object(o) => {
                let m: serde_json::Map<String, Value> = o
                    .into_iter()
                    .filter_map(|(k, v)| strip(v).map(|v| (k, v)))
                    .collect();
                Some(Value::Object(m))
            }
            other => Some(other),
        }
    }
    strip(serde_json::to_value(v).unwrap_or(Value::Null)).unwrap_or(Value::Null)
}

/// Paths (Kubernetes style) where two JSON values differ.
fn diff_paths(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let (va, vb) = (
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                );
                if va != vb {
                    diff_paths(&format!("{path}.{k}"), va, vb, out);
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                if va != vb {
                    diff_paths(&format!("{path}[{i}]"), va, vb, out);
                }
            }
        }
        _ => out.push(path.to_string()),
    }
}

// ---- other kinds ----

/// Namespaces: names are DNS labels; cluster-scoped.
pub fn validate_namespace(ns: &Namespace) -> Vec<FieldError> {
    let mut errs = validate_object_meta(&ns.metadata, false, name_is_dns_label);
    for (i, f) in ns
        .spec
        .iter()
        .flat_map(|s| s.finalizers.iter().flatten())
        .enumerate()
    {
        let p = format!("spec.finalizers[{i}]");
        if !f.contains('/') && f != "kubernetes" {
            errs.push(FieldError::invalid(
                p,
                f,
                "name is neither a standard finalizer name nor is it fully qualified",
            ));
        }
    }
    errs
}

fn is_cidr(s: &str) -> bool {
    let Some((ip, bits)) = s.split_once('/') else {
        return false;
    };
    let Ok(bits) = bits.parse::<u8>() else {
        return false;
    };
    match ip.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(_)) => bits <= 32,
        Ok(std::net::IpAddr::V6(_)) => bits <= 128,
        Err(_) => false,
    }
}

/// Nodes: names are DNS subdomains; cluster-scoped.
pub fn validate_node(node: &Node) -> Vec<FieldError> {
    let mut errs = validate_object_meta(&node.metadata, false, name_is_dns_subdomain);
    if let Some(spec) = &node.spec {
        let cidrs = spec.pod_cidrs.as_deref().unwrap_or(&[]);
        for (i, c) in cidrs.iter().enumerate() {
            if !is_cidr(c) {
                errs.push(FieldError::invalid(
                    format!("spec.podCIDRs[{i}]"),
                    c,
                    "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
                ));
            }
        }
        if cidrs.len() > 1 && cidrs.iter().filter(|c| c.contains(':')).count() != 1 {
            errs.push(FieldError::invalid(
                "spec.podCIDRs",
                cidrs.join(","),
                "may specify no more than one CIDR for each IP family",
            ));
        }
        for (i, t) in spec.taints.iter().flatten().enumerate() {
            let idx = format!("spec.taints[{i}]");
            if t.key.is_empty() {
                errs.push(FieldError::required(format!("{idx}.key"), ""));
            } else {
                let kp = format!("{idx}.key");
                errs.extend(
                    is_qualified_name(&t.key)
                        .into_iter()
                        .map(|m| FieldError::invalid(kp.clone(), &t.key, m)),
                );
            }
            if !matches!(
                t.effect.as_str(),
                "NoSchedule" | "PreferNoSchedule" | "NoExecute"
            ) {
                let ep = format!("{idx}.effect");
                if t.effect.is_empty() {
                    errs.push(FieldError::required(ep, ""));
                } else {
                    errs.push(FieldError::not_supported(
                        ep,
                        &t.effect,
                        &["NoSchedule", "PreferNoSchedule", "NoExecute"],
                    ));
                }
            }
        }
    }
    errs
}

fn is_config_map_key(key: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if key.len() > 253 {
        errs.push(max_len_error(253));
    }
    if key.is_empty()
        || !key
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
    {
        errs.push(regex_error(
            "a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
            "[-._a-zA-Z0-9]+",
            &["key.name", "KEY_NAME", "key-name"],
        ));
    }
    match key {
        "." => errs.push("must not be '.'".into()),
        ".." => errs.push("must not be '..'".into()),
        k if k.starts_with("..") => errs.push("must not start with '..'".into()),
        _ => {}
    }
    errs
}

/// ConfigMaps: DNS subdomain names, valid and unique keys, 1 MiB total.
pub fn validate_config_map(cm: &ConfigMap) -> Vec<FieldError> {
    let mut errs = validate_object_meta(&cm.metadata, true, name_is_dns_subdomain);
    let mut total = 0;
    for (k, v) in cm.data.iter().flatten() {
        errs.extend(
            is_config_map_key(k)
                .into_iter()
                .map(|m| FieldError::invalid("data", k, m)),
        );
        total += v.len();
    }
    for (k, v) in cm.binary_data.iter().flatten() {
        errs.extend(
            is_config_map_key(k)
                .into_iter()
                .map(|m| FieldError::invalid("binaryData", k, m)),
        );
        if cm.data.as_ref().is_some_and(|d| d.contains_key(k)) {
            errs.push(FieldError::invalid(
                "data",
                k,
                "duplicate of key present in binaryData",
            ));
        }
        total += v.0.len();
    }
    if total > 1024 * 1024 {
        errs.push(FieldError::too_long("[]", 1024 * 1024));
    }
    errs
}

/// Secrets: DNS subdomain names, valid keys, 1 MiB total.
pub fn validate_secret(s: &Secret) -> Vec<FieldError> {
    let mut errs = validate_object_meta(&s.metadata, true, name_is_dns_subdomain);
    let mut total = 0;
    for (k, v) in s.data.iter().flatten() {
        errs.extend(
            is_config_map_key(k)
                .into_iter()
                .map(|m| FieldError::invalid(format!("data[{k}]"), k, m)),
        );
        total += v.0.len();
    }
    if total > 1024 * 1024 {
        errs.push(FieldError::too_long("data", 1024 * 1024));
    }
    errs
}

/// ServiceAccounts: DNS subdomain names.
pub fn validate_service_account(sa: &ServiceAccount) -> Vec<FieldError> {
    validate_object_meta(&sa.metadata, true, name_is_dns_subdomain)
}

/// Leases: DNS subdomain names, non-negative durations.
pub fn validate_lease(l: &Lease) -> Vec<FieldError> {
    let mut errs = validate_object_meta(&l.metadata, true, name_is_dns_subdomain);
    if let Some(spec) = &l.spec {
        if let Some(d) = spec.lease_duration_seconds.filter(|d| *d <= 0) {
            errs.push(FieldError::invalid(
                "spec.leaseDurationSeconds",
                d,
                "must be greater than 0",
            ));
        }
        if let Some(t) = spec.lease_transitions.filter(|t| *t < 0) {
            errs.push(FieldError::invalid(
                "spec.leaseTransitions",
                t,
                "must be greater than or equal to 0",
            ));
        }
    }
    errs
}

/// Events (core/v1): the name may be anything a DNS subdomain allows and
/// the involved object's namespace must match the event's.
pub fn validate_event(e: &Event) -> Vec<FieldError> {
    let mut errs = validate_object_meta(&e.metadata, true, name_is_dns_subdomain);
    let ns = e.metadata.namespace.as_deref().unwrap_or("");
    let io_ns = e.involved_object.namespace.as_deref().unwrap_or("");
    if !io_ns.is_empty() && io_ns != ns {
        errs.push(FieldError::invalid(
            "involvedObject.namespace",
            io_ns,
            "does not match event.namespace",
        ));
    }
    if let Some(t) = e.type_.as_deref() {
        if !t.is_empty() && !matches!(t, "Normal" | "Warning") {
            errs.push(FieldError::not_supported("type", t, &["Normal", "Warning"]));
        }
    }
    errs
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
        "Node" => errs.extend(node_update_rules(new, old)),
        "ConfigMap" | "Secret" => errs.extend(immutable_data_rules(kind, new, old)),
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

/// A node's podCIDRs and providerID may be set once, never changed (the
/// IPAM controller assigns them).
fn node_update_rules(new: &Value, old: &Value) -> Vec<FieldError> {
    const WHY_CIDR: &str = "node updates may not change podCIDR except from \"\" to valid";
    let mut errs = Vec::new();
    let cidrs = |v: &Value| -> Vec<Value> {
        v.pointer("/spec/podCIDRs")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let (n, o) = (cidrs(new), cidrs(old));
    if !o.is_empty() {
        if n.len() != o.len() {
            errs.push(FieldError::forbidden("spec.podCIDRs", WHY_CIDR));
        } else {
            for (i, (a, b)) in n.iter().zip(&o).enumerate() {
                if a != b {
                    errs.push(FieldError::forbidden(
                        format!("spec.podCIDRs[{i}]"),
                        WHY_CIDR,
                    ));
                }
            }
        }
    }
    let provider = |v: &Value| {
        v.pointer("/spec/providerID")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let old_provider = provider(old);
    if !old_provider.is_empty() && old_provider != provider(new) {
        errs.push(FieldError::forbidden(
            "spec.providerID",
            "node updates may not change providerID except from \"\" to valid",
        ));
    }
    errs
}

/// ConfigMaps and Secrets marked `immutable: true` keep their data and the
/// mark itself.
fn immutable_data_rules(kind: &str, new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if old.get("immutable").and_then(Value::as_bool) != Some(true) {
        return errs;
    }
    if new.get("immutable").and_then(Value::as_bool) != Some(true) {
        errs.push(FieldError::forbidden(
            "immutable",
            "field is immutable when `immutable` is set",
        ));
    }
    let fields: &[&str] = if kind == "Secret" {
        &["data", "type"]
    } else {
        &["data", "binaryData"]
    };
    for f in fields {
        let norm = |v: &Value| {
            v.get(*f)
                .cloned()
                .filter(|x| !x.is_null())
                .unwrap_or(Value::Null)
        };
        if norm(new) != norm(old) {
            if *f == "type" {
                errs.push(FieldError::invalid(
                    "type",
                    new.get("type").and_then(Value::as_str).unwrap_or(""),
                    "field is immutable",
                ));
            } else {
                errs.push(FieldError::forbidden(
                    *f,
                    "field is immutable when `immutable` is set",
                ));
            }
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(v: Value) -> Pod {
        let mut p: Pod = serde_json::from_value(v).unwrap();
        crate::defaults::pod(&mut p);
        p
    }

    fn ok_pod() -> Value {
        json!({"metadata": {"name": "web", "namespace": "default"},
               "spec": {"containers": [{"name": "nginx", "image": "nginx:1.25",
                  "ports": [{"containerPort": 80, "name": "http"}]}]}})
    }

    fn messages(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(FieldError::message).collect()
    }

    #[test]
    fn valid_pod_passes() {
        assert_eq!(
            messages(&validate_pod(&pod(ok_pod()))),
            Vec::<String>::new()
        );
    }

    #[test]
    fn reference_pods_validate_clean() {
        // Pods as Kubernetes v1.32 stored them: defaulting them again and
        // validating must find nothing, and an unchanged update is fine.
        for file in [
            "a-running",
            "b1-init-initializing",
            "c1-crashloopbackoff",
            "d-terminating",
            "e1-badimage-backoff",
        ] {
            let path = format!("{}/testdata/{file}.yaml", env!("CARGO_MANIFEST_DIR"));
            let stored: Pod =
                serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
            let mut p = stored.clone();
            crate::defaults::pod_spec(p.spec.as_mut().unwrap());
            assert_eq!(
                p.spec, stored.spec,
                "{file}: defaulting a stored pod changes nothing"
            );
            assert_eq!(messages(&validate_pod(&p)), Vec::<String>::new(), "{file}");
            assert_eq!(
                messages(&validate_pod_update(&p, &stored)),
                Vec::<String>::new(),
                "{file}"
            );
        }
    }

    #[test]
    fn sub_paths_stay_inside_their_volume() {
        let mut v = ok_pod();
        v["spec"]["volumes"] = json!([{"name": "data", "emptyDir": {}}]);
        v["spec"]["containers"][0]["volumeMounts"] = json!([
            {"name": "data", "mountPath": "/a", "subPath": "/etc"},
            {"name": "data", "mountPath": "/b", "subPathExpr": "$(POD)/../x"},
            {"name": "data", "mountPath": "/c", "subPath": "x", "subPathExpr": "$(POD)"},
            {"name": "data", "mountPath": "/d", "subPathExpr": "logs/$(POD)"},
        ]);
        assert_eq!(
            messages(&validate_pod(&pod(v))),
            vec![
                r#"spec.containers[0].volumeMounts.subPath: Invalid value: "/etc": must be a relative path"#,
                r#"spec.containers[0].volumeMounts.subPathExpr: Invalid value: "$(POD)/../x": must not contain '..'"#,
                r#"spec.containers[0].volumeMounts[2].subPathExpr: Invalid value: "$(POD)": subPathExpr and subPath are mutually exclusive"#,
            ]
        );
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
    fn long_name_reports_length() {
        let mut v = ok_pod();
        v["metadata"]["name"] = json!("a".repeat(254));
        let errs = validate_pod(&pod(v));
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].detail, "must be no more than 253 characters");
        // The server derives the name from generateName before validating.
        let mut v = ok_pod();
        v["metadata"]["name"] = json!("web-x7k2p");
        v["metadata"]["generateName"] = json!("web-");
        assert!(
            validate_pod(&pod(v)).is_empty(),
            "generateName with trailing dash is fine"
        );
        let mut v = ok_pod();
        v["metadata"]["generateName"] = json!("Web-");
        assert_eq!(validate_pod(&pod(v))[0].field, "metadata.generateName");
        let mut v = ok_pod();
        v["metadata"].as_object_mut().unwrap().remove("name");
        assert_eq!(
            messages(&validate_pod(&pod(v))),
            vec!["metadata.name: Required value: name or generateName is required"]
        );
    }

    #[test]
    fn container_rules() {
        let v = json!({"metadata": {"name": "p", "namespace": "default"},
        "spec": {
          "initContainers": [{"name": "app", "image": "busybox", "livenessProbe": {"exec": {"command": ["true"]}}}],
          "containers": [
            {"name": "app", "image": "", "ports": [{"containerPort": 0, "name": "web"}, {"containerPort": 70000, "name": "web"}],
             "env": [{"name": "A=B", "value": "x"}],
             "volumeMounts": [{"name": "missing", "mountPath": "/data"}]},
            {"name": "app", "image": "x"},
            {"name": "Bad", "image": "x", "resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}}
          ],
          "volumes": [{"name": "v", "emptyDir": {}}, {"name": "v", "emptyDir": {}}],
          "restartPolicy": "Sometimes",
          "activeDeadlineSeconds": 0
        }});
        let got = messages(&validate_pod(&pod(v)));
        let want = [
            r#"spec.volumes[1].name: Duplicate value: "v""#,
            "spec.containers[0].image: Required value",
            r#"spec.containers[0].ports[0].containerPort: Invalid value: 0: must be between 1 and 65535, inclusive"#,
            r#"spec.containers[0].ports[1].name: Duplicate value: "web""#,
            r#"spec.containers[0].ports[1].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive"#,
            r#"spec.containers[0].env[0].name: Invalid value: "A=B": a valid environment variable name must consist only of printable ASCII characters other than '='"#,
            r#"spec.containers[0].volumeMounts[0].name: Not found: "missing""#,
            r#"spec.containers[1].name: Duplicate value: "app""#,
            r#"spec.containers[2].name: Invalid value: "Bad": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"#,
            r#"spec.containers[2].resources.requests[cpu]: Invalid value: "2": must be less than or equal to cpu limit of 1"#,
            r#"spec.initContainers[0].name: Duplicate value: "app""#,
            "spec.initContainers[0].livenessProbe: Forbidden: may not be set for init containers without restartPolicy=Always",
            r#"spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never""#,
            "spec.activeDeadlineSeconds: Invalid value: 0: must be between 1 and 2147483647, inclusive",
        ];
        for w in want {
            assert!(got.iter().any(|g| g == w), "missing {w}\n got: {got:#?}");
        }
        assert_eq!(got.len(), want.len(), "{got:#?}");
    }

    #[test]
    fn host_pid_excludes_a_shared_process_namespace() {
        let v = json!({"metadata": {"name": "p", "namespace": "default"}, "spec": {
            "hostPID": true, "shareProcessNamespace": true,
            "containers": [{"name": "a", "image": "x"}]}});
        assert_eq!(
            messages(&validate_pod(&pod(v))),
            ["spec.securityContext.shareProcessNamespace: Invalid value: true: ShareProcessNamespace and HostPID cannot both be enabled"]
        );
    }

    #[test]
    fn volumes_ports_and_security_context() {
        let v = json!({"metadata": {"name": "p", "namespace": "default"}, "spec": {
            "containers": [
                {"name": "a", "image": "x", "ports": [{"containerPort": 80, "hostPort": 8080}],
                 "securityContext": {"runAsUser": -1}},
                {"name": "b", "image": "x", "ports": [{"containerPort": 81, "hostPort": 8080}]}],
            "volumes": [{"name": "s", "secret": {}}, {"name": "h", "hostPath": {"path": "/x", "type": "Dir"}},
                        {"name": "two", "emptyDir": {}, "configMap": {"name": "c"}}]}});
        let got = messages(&validate_pod(&pod(v)));
        let want = [
            "spec.volumes[0].secret.secretName: Required value",
            r#"spec.volumes[1].hostPath.type: Unsupported value: "Dir": supported values: "", "BlockDevice", "CharDevice", "Directory", "DirectoryOrCreate", "File", "FileOrCreate", "Socket""#,
            "spec.volumes[2].configMap: Forbidden: may not specify more than 1 volume type",
            "spec.containers[0].securityContext.runAsUser: Invalid value: -1: must be between 0 and 2147483647, inclusive",
            r#"spec.containers[1].ports[0].hostPort: Duplicate value: "/TCP/8080""#,
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn sysctl_names_are_checked_as_kubernetes_does() {
        // The upstream conformance spec's pod: two bad names, two good.
        let v = json!({"metadata": {"name": "p", "namespace": "default"}, "spec": {
            "containers": [{"name": "a", "image": "x"}],
            "hostNetwork": true,
            "securityContext": {"sysctls": [
                {"name": "foo-", "value": "bar"},
                {"name": "kernel.shmmax", "value": "100000000"},
                {"name": "safe-and-unsafe", "value": "100000000"},
                {"name": "bar..", "value": "42"},
                {"name": "net/ipv4/conf/eth0.100/rp_filter", "value": "1"},
                {"name": "kernel.shmmax", "value": "1"}]}}});
        let got = messages(&validate_pod(&pod(v)));
        let regex = r"must have at most 253 characters and match regex ^([a-z0-9]([-_a-z0-9]*[a-z0-9])?[\./])*[a-z0-9]([-_a-z0-9]*[a-z0-9])?$";
        let want = [
            format!(r#"spec.securityContext.sysctls[0].name: Invalid value: "foo-": {regex}"#),
            format!(r#"spec.securityContext.sysctls[3].name: Invalid value: "bar..": {regex}"#),
            r#"spec.securityContext.sysctls[4].name: Invalid value: "net/ipv4/conf/eth0.100/rp_filter": may not be specified when 'hostNetwork' is true"#.into(),
            r#"spec.securityContext.sysctls[5].name: Duplicate value: "kernel.shmmax""#.into(),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn no_containers_and_sidecar_probes() {
        let v =
            json!({"metadata": {"name": "p", "namespace": "default"}, "spec": {"containers": []}});
        assert_eq!(
            messages(&validate_pod(&pod(v))),
            vec!["spec.containers: Required value"]
        );
        let v = json!({"metadata": {"name": "p", "namespace": "default"}, "spec": {
            "initContainers": [{"name": "side", "image": "x", "restartPolicy": "Always",
                "readinessProbe": {"tcpSocket": {"port": 80}}}],
            "containers": [{"name": "c", "image": "x"}]}});
        assert!(validate_pod(&pod(v)).is_empty());
    }

    #[test]
    fn labels_and_annotations() {
        let mut v = ok_pod();
        v["metadata"]["labels"] = json!({"app": "bad value!", "example.com/ok": "yes", "/x": "y"});
        v["metadata"]["annotations"] = json!({"a//b": "x"});
        let got = messages(&validate_pod(&pod(v)));
        assert!(
            got.contains(
                &r#"metadata.labels: Invalid value: "/x": prefix part must be non-empty"#
                    .to_string()
            ),
            "{got:#?}"
        );
        assert!(got.iter().any(|m| m.starts_with(
            r#"metadata.labels: Invalid value: "bad value!": a valid label must be an empty string"#
        )));
        assert!(got.iter().any(|m| m.starts_with(
            r#"metadata.annotations: Invalid value: "a//b": a qualified name must consist"#
        )));
        assert_eq!(got.len(), 3, "{got:#?}");
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
    fn pod_update_rules() {
        let old = pod(ok_pod());
        let mut new = old.clone();
        new.spec.as_mut().unwrap().containers[0].image = Some("nginx:1.26".into());
        new.spec.as_mut().unwrap().active_deadline_seconds = Some(60);
        new.spec
            .as_mut()
            .unwrap()
            .tolerations
            .as_mut()
            .unwrap()
            .push(Toleration {
                key: Some("k".into()),
                operator: Some("Exists".into()),
                ..Default::default()
            });
        new.metadata.labels = Some([("tier".to_string(), "web".to_string())].into());
        assert_eq!(
            messages(&validate_pod_update(&new, &old)),
            Vec::<String>::new()
        );

        let mut raised = new.clone();
        raised.spec.as_mut().unwrap().active_deadline_seconds = Some(120);
        assert_eq!(
            messages(&validate_pod_update(&raised, &new)),
            vec!["spec.activeDeadlineSeconds: Invalid value: 120: must be less than or equal to previous value"]
        );

        let mut removed = new.clone();
        removed
            .spec
            .as_mut()
            .unwrap()
            .tolerations
            .as_mut()
            .unwrap()
            .pop();
        removed
            .spec
            .as_mut()
            .unwrap()
            .tolerations
            .as_mut()
            .unwrap()
            .pop();
        assert_eq!(
            messages(&validate_pod_update(&removed, &new)),
            vec!["spec.tolerations: Forbidden: existing toleration can not be modified except its tolerationSeconds"]
        );

        let mut ports = old.clone();
        ports.spec.as_mut().unwrap().containers[0]
            .ports
            .as_mut()
            .unwrap()[0]
            .container_port = 8080;
        let errs = validate_pod_update(&ports, &old);
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].field, "spec");
        assert_eq!(errs[0].cause_type, CauseType::Forbidden);
        assert!(errs[0].message().starts_with("spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)"));
        assert!(
            errs[0]
                .detail
                .contains("spec.containers[0].ports[0].containerPort"),
            "{}",
            errs[0].detail
        );

        let mut renamed = old.clone();
        renamed.metadata.name = Some("other".into());
        assert_eq!(
            messages(&validate_pod_update(&renamed, &old)),
            vec![r#"metadata.name: Invalid value: "other": field is immutable"#]
        );

        let mut extra = old.clone();
        extra.spec.as_mut().unwrap().containers.push(Container {
            name: "two".into(),
            image: Some("x".into()),
            ..old.spec.as_ref().unwrap().containers[0].clone()
        });
        assert_eq!(
            messages(&validate_pod_update(&extra, &old)),
            vec!["spec.containers: Forbidden: pod updates may not add or remove containers"]
        );
    }

    #[test]
    fn pod_status_updates() {
        let mut old = pod(json!({"metadata": {"name": "p", "namespace": "default"},
            "spec": {"nodeName": "n1", "restartPolicy": "Never", "containers": [{"name": "c", "image": "x"}]}}));
        old.status = Some(
            serde_json::from_value(json!({"phase": "Failed", "containerStatuses": [{
            "name": "c", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 1}}}]}))
            .unwrap(),
        );
        let mut revived = old.clone();
        revived
            .status
            .as_mut()
            .unwrap()
            .container_statuses
            .as_mut()
            .unwrap()[0]
            .state = Some(serde_json::from_value(json!({"running": {}})).unwrap());
        assert_eq!(
            messages(&validate_pod_status_update(&revived, &old)),
            vec!["status.containerStatuses[0].state: Forbidden: may not be transitioned to non-terminated state"]
        );
        let mut ips = old.clone();
        ips.status.as_mut().unwrap().pod_ip = Some("10.42.0.5".into());
        ips.status.as_mut().unwrap().pod_ips =
            Some(vec![
                serde_json::from_value(json!({"ip": "10.42.0.5"})).unwrap()
            ]);
        assert!(validate_pod_status_update(&ips, &old).is_empty());
        ips.status.as_mut().unwrap().pod_ips =
            Some(vec![
                serde_json::from_value(json!({"ip": "10.42.0.6"})).unwrap()
            ]);
        assert_eq!(
            validate_pod_status_update(&ips, &old)[0].field,
            "status.podIPs[0].ip"
        );
        let mut moved = old.clone();
        moved.spec.as_mut().unwrap().node_name = Some("n2".into());
        assert_eq!(
            messages(&validate_pod_status_update(&moved, &old)),
            vec!["status.nodeName: Forbidden: may not be changed directly"]
        );
    }

    #[test]
    fn other_kinds() {
        let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "my.ns"}})).unwrap();
        assert_eq!(
            validate_namespace(&ns).len(),
            1,
            "namespace names are DNS labels"
        );
        let ns: Namespace =
            serde_json::from_value(json!({"metadata": {"name": "dev", "namespace": "x"}})).unwrap();
        assert_eq!(
            messages(&validate_namespace(&ns)),
            vec!["metadata.namespace: Forbidden: not allowed on this type"]
        );
        let cm = json!({"metadata": {"name": "c", "namespace": "d"}, "data": {"ok.key": "1", "bad/key": "2"}});
        let errs = validate_new("ConfigMap", &cm, true);
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].field, "data");
        let node = json!({"metadata": {"name": "n1"}, "spec": {"taints": [{"key": "k", "effect": "Sometimes"}]}});
        assert_eq!(
            messages(&validate_new("Node", &node, false)),
            vec![
                r#"spec.taints[0].effect: Unsupported value: "Sometimes": supported values: "NoSchedule", "PreferNoSchedule", "NoExecute""#
            ]
        );
        let old = json!({"metadata": {"name": "c", "namespace": "d", "uid": "1"}});
        let new = json!({"metadata": {"name": "c", "namespace": "d", "uid": "2"}});
        assert_eq!(
            validate_update("ConfigMap", &new, &old, true)[0].field,
            "metadata.uid"
        );
    }

    #[test]
    fn too_long_wording() {
        let big = "x".repeat(1024 * 1024 + 1);
        let cm = json!({"metadata": {"name": "c", "namespace": "d"}, "data": {"k": big}});
        assert_eq!(
            messages(&validate_new("ConfigMap", &cm, true)),
            vec!["[]: Too long: may not be more than 1048576 bytes"]
        );
    }

    #[test]
    fn node_and_immutable_updates() {
        let old = json!({"metadata": {"name": "n1"}, "spec": {"podCIDR": "10.42.1.0/24", "podCIDRs": ["10.42.1.0/24"]}});
        let same = old.clone();
        assert!(validate_update("Node", &same, &old, false).is_empty());
        let moved = json!({"metadata": {"name": "n1"}, "spec": {"podCIDR": "10.42.2.0/24", "podCIDRs": ["10.42.2.0/24"]}});
        assert_eq!(
            messages(&validate_update("Node", &moved, &old, false)),
            vec![
                r#"spec.podCIDRs[0]: Forbidden: node updates may not change podCIDR except from "" to valid"#
            ]
        );
        let bad = json!({"metadata": {"name": "n1"}, "spec": {"podCIDRs": ["10.42.1.0/33"]}});
        assert_eq!(
            validate_new("Node", &bad, false)[0].field,
            "spec.podCIDRs[0]"
        );
        let unset = json!({"metadata": {"name": "n1"}});
        assert!(
            validate_update("Node", &old, &unset, false).is_empty(),
            "first assignment is allowed"
        );

        let cm = json!({"metadata": {"name": "c", "namespace": "d"}, "immutable": true, "data": {"a": "1"}});
        let changed = json!({"metadata": {"name": "c", "namespace": "d"}, "immutable": true, "data": {"a": "2"}});
        assert_eq!(
            messages(&validate_update("ConfigMap", &changed, &cm, true)),
            vec!["data: Forbidden: field is immutable when `immutable` is set"]
        );
    }

    #[test]
    fn go_quoting() {
        assert_eq!(go_quote("a\"b\\c\n"), r#""a\"b\\c\n""#);
        let e = FieldError::invalid("x", BadValue::Null, "must be set");
        assert_eq!(e.message(), "x: Invalid value: \"null\": must be set");
    }
}
