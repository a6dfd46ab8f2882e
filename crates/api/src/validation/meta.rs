//! Object metadata (`ValidateObjectMeta`, `ValidateObjectMetaUpdate`):
//! names, namespace, labels, annotations, finalizers, owner references.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::names::{is_qualified_name, is_valid_label_value, name_is_dns_label};
use super::{BadValue, FieldError};

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

#[cfg(test)]
mod tests {
    use crate::validation::tests::{messages, ok_pod, pod};
    use crate::validation::validate_pod;
    use serde_json::json;

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
}
