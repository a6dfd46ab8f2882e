//! The core/v1 kinds without a module of their own (Namespaces, Nodes,
//! ConfigMaps, Secrets, ServiceAccounts, Events) and coordination.k8s.io
//! Leases.

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Namespace, Node, Secret, ServiceAccount};
use serde_json::Value;

use super::meta::validate_object_meta;
use super::names::{
    is_qualified_name, max_len_error, name_is_dns_label, name_is_dns_subdomain, regex_error,
};
use super::FieldError;

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

/// A node's podCIDRs and providerID may be set once, never changed (the
/// IPAM controller assigns them).
pub(super) fn node_update_rules(new: &Value, old: &Value) -> Vec<FieldError> {
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
pub(super) fn immutable_data_rules(kind: &str, new: &Value, old: &Value) -> Vec<FieldError> {
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
    use crate::validation::tests::messages;
    use crate::validation::{validate_new, validate_update};
    use serde_json::json;

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
}
