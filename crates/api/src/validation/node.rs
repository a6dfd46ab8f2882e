//! node.k8s.io/v1 RuntimeClasses (`ValidateRuntimeClass`), with Kubernetes'
//! wording.

use std::collections::HashSet;

use k8s_openapi::api::core::v1::{ResourceRequirements, Toleration};
use k8s_openapi::api::node::v1::RuntimeClass;

use super::containers::validate_resources;
use super::{
    go_quote, name_is_dns_label, name_is_dns_subdomain, validate_labels, validate_object_meta,
    validate_object_meta_update, validate_tolerations, BadValue, FieldError,
};

pub fn validate_runtime_class(rc: &RuntimeClass) -> Vec<FieldError> {
    let mut errs = validate_object_meta(&rc.metadata, false, name_is_dns_subdomain);
    errs.extend(
        name_is_dns_label(&rc.handler, false)
            .into_iter()
            .map(|m| FieldError::invalid("handler", rc.handler.as_str(), m)),
    );
    if let Some(overhead) = &rc.overhead {
        // As kube-apiserver: the overhead is checked as container limits.
        let as_limits = ResourceRequirements {
            limits: overhead.pod_fixed.clone(),
            ..Default::default()
        };
        errs.extend(validate_resources(&as_limits, "overhead"));
    }
    if let Some(scheduling) = &rc.scheduling {
        if let Some(selector) = &scheduling.node_selector {
            errs.extend(validate_labels(selector, "scheduling.nodeSelector"));
        }
        let tolerations = scheduling.tolerations.as_deref().unwrap_or_default();
        // kube-apiserver names the list `tolerations` twice here.
        errs.extend(validate_tolerations(
            tolerations,
            "scheduling.tolerations.tolerations",
        ));
        let mut seen = HashSet::new();
        for (i, t) in tolerations.iter().enumerate() {
            let key = (&t.key, &t.operator, &t.value, &t.effect);
            if !seen.insert(key) {
                errs.push(FieldError::duplicate(
                    format!("scheduling.tolerations[{i}]"),
                    BadValue::Raw(go_toleration(t)),
                ));
            }
        }
    }
    errs
}

/// A toleration as Go's `%#v` prints kube-apiserver's internal type.
fn go_toleration(t: &Toleration) -> String {
    let seconds = match t.toleration_seconds {
        Some(s) => format!("(*int64)({s})"),
        None => "(*int64)(nil)".into(),
    };
    format!(
        "core.Toleration{{Key:{}, Operator:{}, Value:{}, Effect:{}, TolerationSeconds:{seconds}}}",
        go_quote(t.key.as_deref().unwrap_or_default()),
        go_quote(t.operator.as_deref().unwrap_or_default()),
        go_quote(t.value.as_deref().unwrap_or_default()),
        go_quote(t.effect.as_deref().unwrap_or_default()),
    )
}

/// The handler is fixed at creation.
pub fn validate_runtime_class_update(new: &RuntimeClass, old: &RuntimeClass) -> Vec<FieldError> {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    errs.extend(
        validate_runtime_class(new)
            .into_iter()
            .filter(|e| !e.field.starts_with("metadata.")),
    );
    if new.handler != old.handler {
        errs.push(FieldError::invalid(
            "handler",
            new.handler.as_str(),
            "field is immutable",
        ));
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rc(v: serde_json::Value) -> RuntimeClass {
        serde_json::from_value(v).unwrap()
    }

    fn messages(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn handler_is_a_dns_label() {
        let ok = rc(json!({"metadata": {"name": "gvisor"}, "handler": "runsc"}));
        assert!(validate_runtime_class(&ok).is_empty());
        let bad = rc(json!({"metadata": {"name": "x"}, "handler": "Bad_Handler"}));
        assert_eq!(
            messages(&validate_runtime_class(&bad)),
            ["handler: Invalid value: \"Bad_Handler\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"]
        );
    }

    #[test]
    fn overhead_and_scheduling_are_checked() {
        let bad = rc(json!({
            "metadata": {"name": "x"}, "handler": "runc",
            "overhead": {"podFixed": {"cpu": "-1"}},
            "scheduling": {"nodeSelector": {"a b": "c"},
                           "tolerations": [{"key": "k", "operator": "Exists"},
                                           {"key": "k", "operator": "Exists"}]}
        }));
        let got = messages(&validate_runtime_class(&bad));
        assert!(
            got.iter().any(|m| m.starts_with(
                "overhead.limits[cpu]: Invalid value: \"-1\": must be greater than or equal to 0"
            )),
            "{got:?}"
        );
        assert!(
            got.iter()
                .any(|m| m.starts_with("scheduling.nodeSelector: Invalid value: \"a b\"")),
            "{got:?}"
        );
        assert!(
            got.iter()
                .any(|m| m == "scheduling.tolerations[1]: Duplicate value: core.Toleration{Key:\"k\", Operator:\"Exists\", Value:\"\", Effect:\"\", TolerationSeconds:(*int64)(nil)}"),
            "{got:?}"
        );
    }

    #[test]
    fn the_handler_cannot_change() {
        let old = rc(json!({"metadata": {"name": "x", "resourceVersion": "1"}, "handler": "runc"}));
        let new = rc(json!({"metadata": {"name": "x", "resourceVersion": "1"}, "handler": "kata"}));
        assert_eq!(
            messages(&validate_runtime_class_update(&new, &old)),
            ["handler: Invalid value: \"kata\": field is immutable"]
        );
    }
}
