//! Validation of the workload kinds (apps/v1 Deployment and ReplicaSet,
//! core/v1 ReplicationController and PodTemplate) and of autoscaling/v1
//! Scale, with Kubernetes' messages: `spec.template.metadata.labels:
//! Invalid value: map[string]string{"app":"x"}: `selector` does not match
//! template `labels``.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStatus, ReplicaSet, ReplicaSetStatus,
};
use k8s_openapi::api::autoscaling::v1::Scale;
use k8s_openapi::api::core::v1::{
    PodTemplate, PodTemplateSpec, ReplicationController, ReplicationControllerStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{
    go_quote, is_qualified_name, is_valid_label_value, name_is_dns_subdomain, validate_annotations,
    validate_labels, validate_object_meta, validate_object_meta_update, validate_pod_spec,
    BadValue, FieldError,
};

pub(super) const NONNEGATIVE: &str = "must be greater than or equal to 0";

// ---- Go's `%#v`, for values Kubernetes prints that way ----

/// `map[string]string{"a":"b", "c":"d"}` (keys sorted, as Go prints maps),
/// or `map[string]string(nil)`.
pub fn go_string_map(m: Option<&BTreeMap<String, String>>) -> String {
    match m {
        None => "map[string]string(nil)".into(),
        Some(m) => {
            let items: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{}:{}", go_quote(k), go_quote(v)))
                .collect();
            format!("map[string]string{{{}}}", items.join(", "))
        }
    }
}

fn go_string_slice(v: Option<&Vec<String>>) -> String {
    match v {
        None => "[]string(nil)".into(),
        Some(v) => {
            let items: Vec<String> = v.iter().map(|s| go_quote(s)).collect();
            format!("[]string{{{}}}", items.join(", "))
        }
    }
}

/// `v1.LabelSelector{MatchLabels:..., MatchExpressions:...}`.
pub fn go_label_selector(sel: &LabelSelector) -> String {
    let exprs = match &sel.match_expressions {
        None => "[]v1.LabelSelectorRequirement(nil)".to_string(),
        Some(e) => {
            let items: Vec<String> = e
                .iter()
                .map(|r| {
                    format!(
                        "v1.LabelSelectorRequirement{{Key:{}, Operator:{}, Values:{}}}",
                        go_quote(&r.key),
                        go_quote(&r.operator),
                        go_string_slice(r.values.as_ref())
                    )
                })
                .collect();
            format!("[]v1.LabelSelectorRequirement{{{}}}", items.join(", "))
        }
    };
    format!(
        "v1.LabelSelector{{MatchLabels:{}, MatchExpressions:{exprs}}}",
        go_string_map(sel.match_labels.as_ref())
    )
}

pub(super) fn go_int_or_string(v: &IntOrString) -> String {
    match v {
        IntOrString::Int(i) => format!("intstr.IntOrString{{Type:0, IntVal:{i}, StrVal:\"\"}}"),
        IntOrString::String(s) => {
            format!(
                "intstr.IntOrString{{Type:1, IntVal:0, StrVal:{}}}",
                go_quote(s)
            )
        }
    }
}

pub(super) fn nonnegative(v: i64, path: &str, errs: &mut Vec<FieldError>) {
    if v < 0 {
        errs.push(FieldError::invalid(path, v, NONNEGATIVE));
    }
}

// ---- selectors and templates ----

/// `ValidateLabelSelector`: label keys and values, and each expression's
/// key, operator and values.
pub(super) fn validate_label_selector(sel: &LabelSelector, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(l) = &sel.match_labels {
        errs.extend(validate_labels(l, &format!("{path}.matchLabels")));
    }
    for (i, e) in sel.match_expressions.iter().flatten().enumerate() {
        let p = format!("{path}.matchExpressions[{i}]");
        let values = e.values.as_deref().unwrap_or_default();
        match e.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => errs.push(FieldError::required(
                format!("{p}.values"),
                "must be specified when `operator` is 'In' or 'NotIn'",
            )),
            "Exists" | "DoesNotExist" if !values.is_empty() => errs.push(FieldError::forbidden(
                format!("{p}.values"),
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            )),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => errs.push(FieldError::invalid(
                format!("{p}.operator"),
                other,
                "not a valid selector operator",
            )),
        }
        errs.extend(
            is_qualified_name(&e.key)
                .into_iter()
                .map(|m| FieldError::invalid(format!("{p}.key"), &e.key, m)),
        );
        for v in values {
            errs.extend(
                is_valid_label_value(v)
                    .into_iter()
                    .map(|m| FieldError::invalid(format!("{p}.values"), v, m)),
            );
        }
    }
    errs
}

/// `ValidatePodTemplateSpec`: the template's labels and annotations, and
/// its pod spec.
pub(super) fn validate_template(t: &PodTemplateSpec, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(m) = &t.metadata {
        if let Some(l) = &m.labels {
            errs.extend(validate_labels(l, &format!("{path}.metadata.labels")));
        }
        if let Some(a) = &m.annotations {
            errs.extend(validate_annotations(
                a,
                &format!("{path}.metadata.annotations"),
            ));
        }
    }
    match &t.spec {
        Some(spec) => {
            errs.extend(validate_pod_spec(spec, &format!("{path}.spec")));
            if spec
                .ephemeral_containers
                .as_ref()
                .is_some_and(|e| !e.is_empty())
            {
                errs.push(FieldError::forbidden(
                    format!("{path}.spec.ephemeralContainers"),
                    "ephemeral containers not allowed in pod template",
                ));
            }
        }
        None => errs.push(FieldError::required(format!("{path}.spec.containers"), "")),
    }
    errs
}

/// A workload's template: selected by its selector, restarted always, no
/// active deadline (`owner` names the kind in the message).
pub(super) fn validate_workload_template(
    t: &PodTemplateSpec,
    matches: Option<bool>,
    owner: &str,
) -> Vec<FieldError> {
    let path = "spec.template";
    let mut errs = Vec::new();
    let labels = t.metadata.as_ref().and_then(|m| m.labels.as_ref());
    if matches == Some(false) {
        errs.push(FieldError::invalid(
            format!("{path}.metadata.labels"),
            BadValue::Raw(go_string_map(labels)),
            "`selector` does not match template `labels`",
        ));
    }
    errs.extend(validate_template(t, path));
    let spec = t.spec.clone().unwrap_or_default();
    let policy = spec.restart_policy.as_deref().unwrap_or("");
    if !policy.is_empty() && policy != "Always" {
        errs.push(FieldError::not_supported(
            format!("{path}.spec.restartPolicy"),
            policy,
            &["Always"],
        ));
    }
    if spec.active_deadline_seconds.is_some() {
        errs.push(FieldError::forbidden(
            format!("{path}.spec.activeDeadlineSeconds"),
            format!("activeDeadlineSeconds in {owner} is not Supported"),
        ));
    }
    errs
}

/// The selector checks of Deployments and ReplicaSets; returns whether it
/// matches the template's labels (None when it cannot be judged).
fn validate_selector(
    sel: Option<&LabelSelector>,
    template: &PodTemplateSpec,
    errs: &mut Vec<FieldError>,
) -> Option<bool> {
    let path = "spec.selector";
    let Some(sel) = sel else {
        errs.push(FieldError::required(path, ""));
        return None;
    };
    errs.extend(validate_label_selector(sel, path));
    let n = sel.match_labels.as_ref().map_or(0, BTreeMap::len)
        + sel.match_expressions.as_ref().map_or(0, Vec::len);
    if n == 0 {
        errs.push(FieldError::invalid(
            path,
            BadValue::Raw(go_label_selector(sel)),
            "empty selector is invalid for deployment",
        ));
        return None;
    }
    match crate::selectors::LabelSelector::from_api(sel) {
        Ok(parsed) => {
            let labels = template
                .metadata
                .as_ref()
                .and_then(|m| m.labels.clone())
                .unwrap_or_default();
            Some(parsed.matches(&labels))
        }
        Err(_) => {
            errs.push(FieldError::invalid(
                path,
                BadValue::Raw(go_label_selector(sel)),
                "invalid label selector",
            ));
            None
        }
    }
}

// ---- Deployment ----

pub fn validate_deployment(d: &Deployment) -> Vec<FieldError> {
    let mut errs = validate_object_meta(&d.metadata, true, name_is_dns_subdomain);
    errs.extend(validate_deployment_spec(
        &d.spec.clone().unwrap_or_default(),
    ));
    errs
}

fn validate_deployment_spec(spec: &DeploymentSpec) -> Vec<FieldError> {
    let mut errs = Vec::new();
    nonnegative(
        spec.replicas.unwrap_or(1).into(),
        "spec.replicas",
        &mut errs,
    );
    let matches = validate_selector(spec.selector_opt(), &spec.template, &mut errs);
    errs.extend(validate_workload_template(
        &spec.template,
        matches,
        "ReplicaSet",
    ));
    validate_strategy(spec, &mut errs);
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    nonnegative(min_ready.into(), "spec.minReadySeconds", &mut errs);
    if let Some(r) = spec.revision_history_limit {
        nonnegative(r.into(), "spec.revisionHistoryLimit", &mut errs);
    }
    if let Some(p) = spec.progress_deadline_seconds {
        nonnegative(p.into(), "spec.progressDeadlineSeconds", &mut errs);
        if p <= min_ready {
            errs.push(FieldError::invalid(
                "spec.progressDeadlineSeconds",
                p,
                "must be greater than minReadySeconds",
            ));
        }
    }
    errs
}

/// k8s-openapi's DeploymentSpec has a required selector; an object sent
/// without one decodes with an empty selector, which reads as missing.
trait SelectorOpt {
    fn selector_opt(&self) -> Option<&LabelSelector>;
}

impl SelectorOpt for DeploymentSpec {
    fn selector_opt(&self) -> Option<&LabelSelector> {
        Some(&self.selector).filter(|s| *s != &LabelSelector::default())
    }
}

pub(super) fn int_or_percent(v: &IntOrString, path: &str, errs: &mut Vec<FieldError>) {
    match v {
        IntOrString::Int(i) => nonnegative((*i).into(), path, errs),
        IntOrString::String(s) => {
            let digits = s.strip_suffix('%').unwrap_or("");
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                errs.push(FieldError::invalid(
                    path,
                    BadValue::Raw(go_int_or_string(v)),
                    "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
                ));
            }
        }
    }
}

/// The value of an int or a valid percent (None for an invalid string).
pub(super) fn int_or_percent_value(v: Option<&IntOrString>) -> Option<i64> {
    match v? {
        IntOrString::Int(i) => Some((*i).into()),
        IntOrString::String(s) => s.strip_suffix('%')?.parse().ok(),
    }
}

fn validate_strategy(spec: &DeploymentSpec, errs: &mut Vec<FieldError>) {
    let path = "spec.strategy";
    let strategy = spec.strategy.clone().unwrap_or_default();
    match strategy.type_.as_deref().unwrap_or("") {
        "Recreate" => {
            if strategy.rolling_update.is_some() {
                errs.push(FieldError::forbidden(
                    format!("{path}.rollingUpdate"),
                    "may not be specified when strategy `type` is 'Recreate'",
                ));
            }
        }
        "RollingUpdate" => {
            let Some(r) = &strategy.rolling_update else {
                errs.push(FieldError::required(
                    format!("{path}.rollingUpdate"),
                    "this should be defaulted and never be nil",
                ));
                return;
            };
            let (mu, ms) = (
                format!("{path}.rollingUpdate.maxUnavailable"),
                format!("{path}.rollingUpdate.maxSurge"),
            );
            if let Some(v) = &r.max_unavailable {
                int_or_percent(v, &mu, errs);
            }
            if let Some(v) = &r.max_surge {
                int_or_percent(v, &ms, errs);
            }
            let unavailable = int_or_percent_value(r.max_unavailable.as_ref());
            if unavailable == Some(0) && int_or_percent_value(r.max_surge.as_ref()) == Some(0) {
                let shown = r
                    .max_unavailable
                    .as_ref()
                    .map_or(BadValue::Null, |v| BadValue::Raw(go_int_or_string(v)));
                errs.push(FieldError::invalid(
                    mu.clone(),
                    shown,
                    "may not be 0 when `maxSurge` is 0",
                ));
            }
            if let Some(v @ IntOrString::String(_)) = &r.max_unavailable {
                if unavailable.is_some_and(|p| p > 100) {
                    errs.push(FieldError::invalid(
                        mu,
                        BadValue::Raw(go_int_or_string(v)),
                        "must not be greater than 100%",
                    ));
                }
            }
        }
        other => errs.push(FieldError::not_supported(
            format!("{path}.type"),
            other,
            &["Recreate", "RollingUpdate"],
        )),
    }
}

/// A Deployment's or ReplicaSet's selector never changes.
pub(super) fn selector_unchanged(
    new: Option<&LabelSelector>,
    old: Option<&LabelSelector>,
) -> Option<FieldError> {
    (new != old).then(|| {
        FieldError::invalid(
            "spec.selector",
            new.map_or(BadValue::Null, |s| BadValue::Raw(go_label_selector(s))),
            "field is immutable",
        )
    })
}

pub fn validate_deployment_update(new: &Deployment, old: &Deployment) -> Vec<FieldError> {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    let spec = new.spec.clone().unwrap_or_default();
    errs.extend(validate_deployment_spec(&spec));
    let old_spec = old.spec.clone().unwrap_or_default();
    errs.extend(selector_unchanged(
        spec.selector_opt(),
        old_spec.selector_opt(),
    ));
    errs
}

pub fn validate_deployment_status_update(new: &Deployment, old: &Deployment) -> Vec<FieldError> {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    let s: DeploymentStatus = new.status.clone().unwrap_or_default();
    let p = |f: &str| format!("status.{f}");
    for (f, v) in [
        ("replicas", s.replicas),
        ("updatedReplicas", s.updated_replicas),
        ("readyReplicas", s.ready_replicas),
        ("availableReplicas", s.available_replicas),
        ("unavailableReplicas", s.unavailable_replicas),
        ("collisionCount", s.collision_count),
    ] {
        nonnegative(v.unwrap_or(0).into(), &p(f), &mut errs);
    }
    if let Some(g) = s.observed_generation {
        nonnegative(g, &p("observedGeneration"), &mut errs);
    }
    let replicas = s.replicas.unwrap_or(0);
    replica_bounds(
        &[
            ("updatedReplicas", s.updated_replicas),
            ("readyReplicas", s.ready_replicas),
            ("availableReplicas", s.available_replicas),
        ],
        replicas,
        s.ready_replicas.unwrap_or(0),
        s.available_replicas.unwrap_or(0),
        &mut errs,
    );
    errs
}

/// Counts of a subset of the replicas are at most `status.replicas`, and
/// available ones at most the ready ones.
fn replica_bounds(
    counts: &[(&str, Option<i32>)],
    replicas: i32,
    ready: i32,
    available: i32,
    errs: &mut Vec<FieldError>,
) {
    for (f, v) in counts {
        let v = v.unwrap_or(0);
        if v > replicas {
            errs.push(FieldError::invalid(
                format!("status.{f}"),
                v,
                "cannot be greater than status.replicas",
            ));
        }
    }
    if available > ready {
        errs.push(FieldError::invalid(
            "status.availableReplicas",
            available,
            "cannot be greater than readyReplicas",
        ));
    }
}

// ---- ReplicaSet ----

pub fn validate_replica_set(rs: &ReplicaSet) -> Vec<FieldError> {
    let mut errs = validate_object_meta(&rs.metadata, true, name_is_dns_subdomain);
    let spec = rs.spec.clone().unwrap_or_default();
    nonnegative(
        spec.replicas.unwrap_or(1).into(),
        "spec.replicas",
        &mut errs,
    );
    nonnegative(
        spec.min_ready_seconds.unwrap_or(0).into(),
        "spec.minReadySeconds",
        &mut errs,
    );
    let template = spec.template.clone().unwrap_or_default();
    let selector = Some(&spec.selector).filter(|s| *s != &LabelSelector::default());
    let matches = validate_selector(selector, &template, &mut errs);
    if spec.template.is_none() {
        errs.push(FieldError::required("spec.template", ""));
    } else {
        errs.extend(validate_workload_template(&template, matches, "ReplicaSet"));
    }
    errs
}

pub fn validate_replica_set_update(new: &ReplicaSet, old: &ReplicaSet) -> Vec<FieldError> {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    errs.extend(
        validate_replica_set(new)
            .into_iter()
            .filter(|e| !e.field.starts_with("metadata.")),
    );
    let sel = |rs: &ReplicaSet| rs.spec.as_ref().map(|s| s.selector.clone());
    let (n, o) = (sel(new), sel(old));
    errs.extend(selector_unchanged(n.as_ref(), o.as_ref()));
    errs
}

fn replica_set_like_status(
    replicas: Option<i32>,
    fully_labeled: Option<i32>,
    ready: Option<i32>,
    available: Option<i32>,
    observed_generation: Option<i64>,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (f, v) in [
        ("replicas", replicas),
        ("fullyLabeledReplicas", fully_labeled),
        ("readyReplicas", ready),
        ("availableReplicas", available),
    ] {
        nonnegative(v.unwrap_or(0).into(), &format!("status.{f}"), &mut errs);
    }
    nonnegative(
        observed_generation.unwrap_or(0),
        "status.observedGeneration",
        &mut errs,
    );
    replica_bounds(
        &[
            ("fullyLabeledReplicas", fully_labeled),
            ("readyReplicas", ready),
            ("availableReplicas", available),
        ],
        replicas.unwrap_or(0),
        ready.unwrap_or(0),
        available.unwrap_or(0),
        &mut errs,
    );
    errs
}

pub fn validate_replica_set_status_update(new: &ReplicaSet, old: &ReplicaSet) -> Vec<FieldError> {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    let s: ReplicaSetStatus = new.status.clone().unwrap_or_default();
    errs.extend(replica_set_like_status(
        Some(s.replicas),
        s.fully_labeled_replicas,
        s.ready_replicas,
        s.available_replicas,
        s.observed_generation,
    ));
    errs
}

// ---- ReplicationController ----

pub fn validate_replication_controller(rc: &ReplicationController) -> Vec<FieldError> {
    let mut errs = validate_object_meta(&rc.metadata, true, name_is_dns_subdomain);
    let spec = rc.spec.clone().unwrap_or_default();
    nonnegative(
        spec.min_ready_seconds.unwrap_or(0).into(),
        "spec.minReadySeconds",
        &mut errs,
    );
    let selector = spec.selector.clone().unwrap_or_default();
    if selector.is_empty() {
        errs.push(FieldError::required("spec.selector", ""));
    } else {
        errs.extend(validate_labels(&selector, "spec.selector"));
    }
    nonnegative(
        spec.replicas.unwrap_or(1).into(),
        "spec.replicas",
        &mut errs,
    );
    match &spec.template {
        None => errs.push(FieldError::required("spec.template", "")),
        Some(t) => {
            let labels = t
                .metadata
                .as_ref()
                .and_then(|m| m.labels.clone())
                .unwrap_or_default();
            let matches = (!selector.is_empty())
                .then(|| selector.iter().all(|(k, v)| labels.get(k) == Some(v)));
            errs.extend(validate_workload_template(
                t,
                matches,
                "ReplicationController",
            ));
        }
    }
    errs
}

pub fn validate_replication_controller_update(
    new: &ReplicationController,
    old: &ReplicationController,
) -> Vec<FieldError> {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    errs.extend(
        validate_replication_controller(new)
            .into_iter()
            .filter(|e| !e.field.starts_with("metadata.")),
    );
    errs
}

pub fn validate_replication_controller_status_update(
    new: &ReplicationController,
    old: &ReplicationController,
) -> Vec<FieldError> {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    let s: ReplicationControllerStatus = new.status.clone().unwrap_or_default();
    errs.extend(replica_set_like_status(
        Some(s.replicas),
        s.fully_labeled_replicas,
        s.ready_replicas,
        s.available_replicas,
        s.observed_generation,
    ));
    errs
}

// ---- PodTemplate and Scale ----

pub fn validate_pod_template(pt: &PodTemplate) -> Vec<FieldError> {
    let mut errs = validate_object_meta(&pt.metadata, true, name_is_dns_subdomain);
    match &pt.template {
        Some(t) => errs.extend(validate_template(t, "template")),
        None => errs.push(FieldError::required("template.spec.containers", "")),
    }
    errs
}

/// `ValidateScale`: the Scale's metadata, and no negative replicas.
pub fn validate_scale(scale: &Scale) -> Vec<FieldError> {
    let mut errs = validate_object_meta(&scale.metadata, true, name_is_dns_subdomain);
    let replicas = scale.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
    nonnegative(replicas.into(), "spec.replicas", &mut errs);
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(v: serde_json::Value) -> Deployment {
        let mut d: Deployment = serde_json::from_value(v).unwrap();
        crate::defaults::deployment(&mut d);
        d
    }

    fn web() -> serde_json::Value {
        json!({"metadata": {"name": "web", "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "nginx", "image": "nginx"}]}}}})
    }

    fn messages(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(FieldError::message).collect()
    }

    #[test]
    fn a_valid_deployment_passes() {
        assert_eq!(
            messages(&validate_deployment(&deployment(web()))),
            Vec::<String>::new()
        );
    }

    #[test]
    fn the_selector_must_select_the_template() {
        let mut v = web();
        v["spec"]["template"]["metadata"]["labels"] = json!({"app": "other"});
        assert_eq!(
            messages(&validate_deployment(&deployment(v))),
            vec![
                "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"other\"}: `selector` does not match template `labels`"
            ]
        );
    }

    #[test]
    fn deployment_spec_rules_read_as_kubernetes() {
        let mut v = web();
        v["spec"]["replicas"] = json!(-1);
        v["spec"]["template"]["spec"]["restartPolicy"] = json!("Never");
        v["spec"]["strategy"] = json!({"type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}});
        v["spec"]["minReadySeconds"] = json!(700);
        let got = messages(&validate_deployment(&deployment(v)));
        assert_eq!(
            got,
            vec![
                "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
                "spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\"",
                "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: intstr.IntOrString{Type:1, IntVal:0, StrVal:\"0%\"}: may not be 0 when `maxSurge` is 0",
                "spec.progressDeadlineSeconds: Invalid value: 600: must be greater than minReadySeconds",
            ]
        );
    }

    #[test]
    fn the_selector_is_immutable() {
        let old = deployment(web());
        let mut v = web();
        v["spec"]["selector"] = json!({"matchLabels": {"app": "web", "tier": "x"}});
        v["spec"]["template"]["metadata"]["labels"] = json!({"app": "web", "tier": "x"});
        let new = deployment(v);
        assert_eq!(
            messages(&validate_deployment_update(&new, &old)),
            vec![
                "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"web\", \"tier\":\"x\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"
            ]
        );
    }

    #[test]
    fn a_replication_controller_needs_a_selector_and_a_template() {
        let rc: ReplicationController =
            serde_json::from_value(json!({"metadata": {"name": "rc", "namespace": "default"}}))
                .unwrap();
        assert_eq!(
            messages(&validate_replication_controller(&rc)),
            vec![
                "spec.selector: Required value",
                "spec.template: Required value"
            ]
        );
    }

    #[test]
    fn status_counts_stay_within_replicas() {
        let old: ReplicaSet = serde_json::from_value(json!({"metadata": {"name": "rs"}})).unwrap();
        let mut new = old.clone();
        new.status = Some(ReplicaSetStatus {
            replicas: 1,
            ready_replicas: Some(2),
            available_replicas: Some(3),
            ..Default::default()
        });
        assert_eq!(
            messages(&validate_replica_set_status_update(&new, &old)),
            vec![
                "status.readyReplicas: Invalid value: 2: cannot be greater than status.replicas",
                "status.availableReplicas: Invalid value: 3: cannot be greater than status.replicas",
                "status.availableReplicas: Invalid value: 3: cannot be greater than readyReplicas",
            ]
        );
    }
}
