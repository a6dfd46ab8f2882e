//! Validation of apps/v1 DaemonSets, StatefulSets and ControllerRevisions
//! with Kubernetes' messages. A StatefulSet's `volumeClaimTemplates` are
//! refused: this cluster has no persistent volumes yet.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    ControllerRevision, DaemonSet, DaemonSetSpec, DaemonSetStatus, StatefulSet, StatefulSetSpec,
    StatefulSetStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::workloads::{
    go_int_or_string, go_label_selector, go_string_map, int_or_percent, int_or_percent_value,
    nonnegative, selector_unchanged, validate_label_selector, validate_workload_template,
};
use super::{
    name_is_dns_label, name_is_dns_subdomain, validate_annotations, validate_labels,
    validate_object_meta, validate_object_meta_update, BadValue, FieldError,
};

/// Where the pod template's generation is kept in apps/v1 (the internal
/// `spec.templateGeneration`).
pub const TEMPLATE_GENERATION: &str = "deprecated.daemonset.template.generation";

/// A selector the object was sent without reads as the empty default.
fn given(sel: &LabelSelector) -> Option<&LabelSelector> {
    Some(sel).filter(|s| *s != &LabelSelector::default())
}

fn selector_matches(
    sel: Option<&LabelSelector>,
    labels: &BTreeMap<String, String>,
) -> Option<bool> {
    match sel {
        // Kubernetes' selector of nothing.
        None => Some(false),
        Some(s) => crate::selectors::LabelSelector::from_api(s)
            .ok()
            .map(|p| p.matches(labels)),
    }
}

fn empty_selector(sel: &LabelSelector) -> bool {
    sel.match_labels.as_ref().is_none_or(|m| m.is_empty())
        && sel.match_expressions.as_ref().is_none_or(|e| e.is_empty())
}

/// `IsNotMoreThan100Percent`.
fn at_most_100_percent(v: &IntOrString, path: &str, errs: &mut Vec<FieldError>) {
    if let IntOrString::String(_) = v {
        if int_or_percent_value(Some(v)).is_some_and(|p| p > 100) {
            errs.push(FieldError::invalid(
                path,
                BadValue::Raw(go_int_or_string(v)),
                "must not be greater than 100%",
            ));
        }
    }
}

// ---- DaemonSet ----

pub fn validate_daemon_set(ds: &DaemonSet) -> Vec<FieldError> {
    let mut errs = validate_object_meta(&ds.metadata, true, name_is_dns_subdomain);
    errs.extend(validate_daemon_set_spec(
        &ds.spec.clone().unwrap_or_default(),
    ));
    errs
}

fn validate_daemon_set_spec(spec: &DaemonSetSpec) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let sel = given(&spec.selector);
    if let Some(s) = sel {
        errs.extend(validate_label_selector(s, "spec.selector"));
    }
    let labels = spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let matches = selector_matches(sel, &labels);
    errs.extend(validate_workload_template(
        &spec.template,
        matches,
        "DaemonSet",
    ));
    nonnegative(
        spec.min_ready_seconds.unwrap_or(0).into(),
        "spec.minReadySeconds",
        &mut errs,
    );
    let path = "spec.updateStrategy";
    let strategy = spec.update_strategy.clone().unwrap_or_default();
    match strategy.type_.as_deref().unwrap_or("") {
        "OnDelete" => {}
        "RollingUpdate" => match &strategy.rolling_update {
            None => errs.push(FieldError::required(format!("{path}.rollingUpdate"), "")),
            Some(r) => {
                let zero = IntOrString::Int(0);
                let mu = r.max_unavailable.clone().unwrap_or(zero.clone());
                let ms = r.max_surge.clone().unwrap_or(zero);
                let (mu_path, ms_path) = (
                    format!("{path}.rollingUpdate.maxUnavailable"),
                    format!("{path}.rollingUpdate.maxSurge"),
                );
                int_or_percent(&mu, &mu_path, &mut errs);
                int_or_percent(&ms, &ms_path, &mut errs);
                at_most_100_percent(&mu, &mu_path, &mut errs);
                at_most_100_percent(&ms, &ms_path, &mut errs);
                let has_unavailable = int_or_percent_value(Some(&mu)).unwrap_or(0) != 0;
                let has_surge = int_or_percent_value(Some(&ms)).unwrap_or(0) != 0;
                if has_unavailable && has_surge {
                    errs.push(FieldError::invalid(
                        ms_path,
                        BadValue::Raw(go_int_or_string(&ms)),
                        "may not be set when maxUnavailable is non-zero",
                    ));
                } else if !has_unavailable && !has_surge {
                    errs.push(FieldError::required(
                        mu_path,
                        "cannot be 0 when maxSurge is 0",
                    ));
                }
            }
        },
        other => errs.push(FieldError::not_supported(
            path,
            BadValue::Raw(format!("apps.DaemonSetUpdateStrategy{{Type:{:?}}}", other)),
            &["RollingUpdate", "OnDelete"],
        )),
    }
    if let Some(r) = spec.revision_history_limit {
        nonnegative(r.into(), "spec.revisionHistoryLimit", &mut errs);
    }
    if let Some(s) = sel.filter(|s| empty_selector(s)) {
        errs.push(FieldError::invalid(
            "spec.selector",
            BadValue::Raw(go_label_selector(s)),
            "empty selector is invalid for daemonset",
        ));
    }
    errs
}

pub fn validate_daemon_set_update(new: &DaemonSet, old: &DaemonSet) -> Vec<FieldError> {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    errs.extend(validate_daemon_set_spec(
        &new.spec.clone().unwrap_or_default(),
    ));
    let sel = |d: &DaemonSet| d.spec.as_ref().map(|s| s.selector.clone());
    errs.extend(selector_unchanged(sel(new).as_ref(), sel(old).as_ref()));
    errs
}

pub fn validate_daemon_set_status_update(new: &DaemonSet, old: &DaemonSet) -> Vec<FieldError> {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    let s: DaemonSetStatus = new.status.clone().unwrap_or_default();
    for (f, v) in [
        ("currentNumberScheduled", Some(s.current_number_scheduled)),
        ("numberMisscheduled", Some(s.number_misscheduled)),
        ("desiredNumberScheduled", Some(s.desired_number_scheduled)),
        ("numberReady", Some(s.number_ready)),
        ("updatedNumberScheduled", s.updated_number_scheduled),
        ("numberAvailable", s.number_available),
        ("numberUnavailable", s.number_unavailable),
        ("collisionCount", s.collision_count),
    ] {
        nonnegative(v.unwrap_or(0).into(), &format!("status.{f}"), &mut errs);
    }
    nonnegative(
        s.observed_generation.unwrap_or(0),
        "status.observedGeneration",
        &mut errs,
    );
    errs.extend(collision_count_kept(
        s.collision_count,
        old.status.as_ref().and_then(|s| s.collision_count),
    ));
    errs
}

fn collision_count_kept(new: Option<i32>, old: Option<i32>) -> Option<FieldError> {
    let decremented = match (new, old) {
        (None, Some(_)) => true,
        (Some(n), Some(o)) => n < o,
        _ => false,
    };
    decremented.then(|| {
        FieldError::invalid(
            "status.collisionCount",
            new.unwrap_or(0),
            "cannot be decremented",
        )
    })
}

// ---- StatefulSet ----

pub fn validate_stateful_set(sts: &StatefulSet) -> Vec<FieldError> {
    let mut errs = validate_object_meta(&sts.metadata, true, name_is_dns_label);
    errs.extend(validate_stateful_set_spec(
        &sts.spec.clone().unwrap_or_default(),
    ));
    errs
}

fn validate_stateful_set_spec(spec: &StatefulSetSpec) -> Vec<FieldError> {
    let mut errs = Vec::new();
    match spec.pod_management_policy.as_deref().unwrap_or("") {
        "" => errs.push(FieldError::required("spec.podManagementPolicy", "")),
        "OrderedReady" | "Parallel" => {}
        other => errs.push(FieldError::invalid(
            "spec.podManagementPolicy",
            other,
            "must be 'OrderedReady' or 'Parallel'",
        )),
    }
    let strategy = spec.update_strategy.clone().unwrap_or_default();
    match strategy.type_.as_deref().unwrap_or("") {
        "" => errs.push(FieldError::required("spec.updateStrategy", "")),
        "OnDelete" => {
            if strategy.rolling_update.is_some() {
                errs.push(FieldError::invalid(
                    "spec.updateStrategy.rollingUpdate",
                    BadValue::Omit,
                    "only allowed for updateStrategy 'RollingUpdate'",
                ));
            }
        }
        "RollingUpdate" => {
            if let Some(r) = &strategy.rolling_update {
                let p = "spec.updateStrategy.rollingUpdate";
                nonnegative(
                    r.partition.unwrap_or(0).into(),
                    &format!("{p}.partition"),
                    &mut errs,
                );
                if let Some(mu) = &r.max_unavailable {
                    let path = format!("{p}.maxUnavailable");
                    int_or_percent(mu, &path, &mut errs);
                    if int_or_percent_value(Some(mu)).unwrap_or(0) == 0 {
                        errs.push(FieldError::invalid(
                            path.clone(),
                            BadValue::Raw(go_int_or_string(mu)),
                            "cannot be 0",
                        ));
                    }
                    at_most_100_percent(mu, &path, &mut errs);
                }
            }
        }
        other => errs.push(FieldError::invalid(
            "spec.updateStrategy",
            BadValue::Raw(format!("apps.StatefulSetUpdateStrategy{{Type:{other:?}}}")),
            "must be 'RollingUpdate' or 'OnDelete'",
        )),
    }
    if let Some(policy) = &spec.persistent_volume_claim_retention_policy {
        for (f, v) in [
            ("whenDeleted", &policy.when_deleted),
            ("whenScaled", &policy.when_scaled),
        ] {
            let v = v.as_deref().unwrap_or("");
            if !matches!(v, "Retain" | "Delete") {
                errs.push(FieldError::not_supported(
                    format!("spec.persistentVolumeClaimRetentionPolicy.{f}"),
                    v,
                    &["Retain", "Delete"],
                ));
            }
        }
    }
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
    if let Some(o) = &spec.ordinals {
        nonnegative(
            o.start.unwrap_or(0).into(),
            "spec.ordinals.start",
            &mut errs,
        );
    }
    let sel = given(&spec.selector);
    match sel {
        None => errs.push(FieldError::required("spec.selector", "")),
        Some(s) => {
            errs.extend(validate_label_selector(s, "spec.selector"));
            if empty_selector(s) {
                errs.push(FieldError::invalid(
                    "spec.selector",
                    BadValue::Raw(go_label_selector(s)),
                    "empty selector is invalid for statefulset",
                ));
            }
        }
    }
    // Kubernetes checks the template's labels and annotations here; its pod
    // spec is checked when pods are made from it.
    let meta = spec.template.metadata.clone().unwrap_or_default();
    let labels = meta.labels.clone().unwrap_or_default();
    let selects_all = sel.is_some_and(empty_selector);
    if !selects_all && selector_matches(sel, &labels) == Some(false) {
        errs.push(FieldError::invalid(
            "spec.template.metadata.labels",
            BadValue::Raw(go_string_map(meta.labels.as_ref())),
            "`selector` does not match template `labels`",
        ));
    }
    errs.extend(validate_labels(&labels, "spec.template.labels"));
    if let Some(a) = &meta.annotations {
        errs.extend(validate_annotations(a, "spec.template.annotations"));
    }
    let pod = spec.template.spec.clone().unwrap_or_default();
    let policy = pod.restart_policy.as_deref().unwrap_or("");
    if policy != "Always" {
        errs.push(FieldError::not_supported(
            "spec.template.spec.restartPolicy",
            policy,
            &["Always"],
        ));
    }
    if pod.active_deadline_seconds.is_some() {
        errs.push(FieldError::forbidden(
            "spec.template.spec.activeDeadlineSeconds",
            "activeDeadlineSeconds in StatefulSet is not Supported",
        ));
    }
    if spec
        .volume_claim_templates
        .as_ref()
        .is_some_and(|v| !v.is_empty())
    {
        errs.push(FieldError::forbidden(
            "spec.volumeClaimTemplates",
            "this cluster has no persistent volumes yet: leave volumeClaimTemplates out and use emptyDir or hostPath volumes in the pod template",
        ));
    }
    errs
}

pub fn validate_stateful_set_update(new: &StatefulSet, old: &StatefulSet) -> Vec<FieldError> {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    let spec = new.spec.clone().unwrap_or_default();
    errs.extend(validate_stateful_set_spec(&spec));
    // Only these fields may change.
    let old_spec = old.spec.clone().unwrap_or_default();
    let mut kept = spec;
    kept.replicas = old_spec.replicas;
    kept.template = old_spec.template.clone();
    kept.update_strategy = old_spec.update_strategy.clone();
    kept.min_ready_seconds = old_spec.min_ready_seconds;
    kept.ordinals = old_spec.ordinals.clone();
    kept.persistent_volume_claim_retention_policy =
        old_spec.persistent_volume_claim_retention_policy.clone();
    if kept != old_spec {
        errs.push(FieldError::forbidden(
            "spec",
            "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
        ));
    }
    errs
}

pub fn validate_stateful_set_status_update(
    new: &StatefulSet,
    old: &StatefulSet,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let s: StatefulSetStatus = new.status.clone().unwrap_or_default();
    let p = |f: &str| format!("status.{f}");
    for (f, v) in [
        ("replicas", Some(s.replicas)),
        ("readyReplicas", s.ready_replicas),
        ("currentReplicas", s.current_replicas),
        ("updatedReplicas", s.updated_replicas),
        ("availableReplicas", s.available_replicas),
    ] {
        nonnegative(v.unwrap_or(0).into(), &p(f), &mut errs);
    }
    if let Some(g) = s.observed_generation {
        nonnegative(g, &p("observedGeneration"), &mut errs);
    }
    if let Some(c) = s.collision_count {
        nonnegative(c.into(), &p("collisionCount"), &mut errs);
    }
    let msg = "cannot be greater than status.replicas";
    for (f, v) in [
        ("readyReplicas", s.ready_replicas),
        ("currentReplicas", s.current_replicas),
        ("updatedReplicas", s.updated_replicas),
        ("availableReplicas", s.available_replicas),
    ] {
        let v = v.unwrap_or(0);
        if v > s.replicas {
            errs.push(FieldError::invalid(p(f), v, msg));
        }
    }
    if s.available_replicas.unwrap_or(0) > s.ready_replicas.unwrap_or(0) {
        errs.push(FieldError::invalid(
            p("availableReplicas"),
            s.available_replicas.unwrap_or(0),
            "cannot be greater than status.readyReplicas",
        ));
    }
    errs.extend(validate_object_meta_update(&new.metadata, &old.metadata));
    errs.extend(collision_count_kept(
        s.collision_count,
        old.status.as_ref().and_then(|s| s.collision_count),
    ));
    errs
}

// ---- ControllerRevision ----

fn validate_controller_revision_fields(cr: &ControllerRevision) -> Vec<FieldError> {
    let mut errs = Vec::new();
    nonnegative(cr.revision, "revision", &mut errs);
    errs
}

pub fn validate_controller_revision(cr: &ControllerRevision) -> Vec<FieldError> {
    let mut errs = validate_object_meta(&cr.metadata, true, name_is_dns_subdomain);
    errs.extend(validate_controller_revision_fields(cr));
    match cr.data.as_ref().map(|d| &d.0) {
        None | Some(serde_json::Value::Null) => {
            errs.push(FieldError::required("data", "data is mandatory"))
        }
        Some(serde_json::Value::Object(_)) => {}
        Some(_) => errs.push(FieldError::required(
            "data",
            "data must be a valid JSON object",
        )),
    }
    errs
}

pub fn validate_controller_revision_update(
    new: &ControllerRevision,
    old: &ControllerRevision,
) -> Vec<FieldError> {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    errs.extend(validate_controller_revision_fields(new));
    if new.data != old.data {
        let shown = new
            .data
            .as_ref()
            .map_or(BadValue::Null, |d| BadValue::Raw(d.0.to_string()));
        errs.push(FieldError::invalid("data", shown, "field is immutable"));
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn messages(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(FieldError::message).collect()
    }

    fn ds(v: serde_json::Value) -> DaemonSet {
        let mut d: DaemonSet = serde_json::from_value(v).unwrap();
        crate::defaults::daemon_set(&mut d);
        d
    }

    fn logger() -> serde_json::Value {
        json!({"metadata": {"name": "logger", "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": "logger"}},
                "template": {"metadata": {"labels": {"app": "logger"}},
                    "spec": {"containers": [{"name": "logger", "image": "busybox"}]}}}})
    }

    #[test]
    fn a_valid_daemon_set_passes_and_surge_excludes_unavailability() {
        assert_eq!(
            messages(&validate_daemon_set(&ds(logger()))),
            Vec::<String>::new()
        );
        let mut v = logger();
        v["spec"]["updateStrategy"] = json!({"type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}});
        assert_eq!(
            messages(&validate_daemon_set(&ds(v))),
            vec!["spec.updateStrategy.rollingUpdate.maxSurge: Invalid value: intstr.IntOrString{Type:0, IntVal:1, StrVal:\"\"}: may not be set when maxUnavailable is non-zero"]
        );
        let mut v = logger();
        v["spec"]["updateStrategy"] = json!({"type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}});
        assert_eq!(
            messages(&validate_daemon_set(&ds(v))),
            vec!["spec.updateStrategy.rollingUpdate.maxUnavailable: Required value: cannot be 0 when maxSurge is 0"]
        );
    }

    #[test]
    fn a_daemon_set_template_restarts_always() {
        let mut v = logger();
        v["spec"]["template"]["spec"]["restartPolicy"] = json!("Never");
        assert_eq!(
            messages(&validate_daemon_set(&ds(v))),
            vec!["spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\""]
        );
    }

    fn sts(v: serde_json::Value) -> StatefulSet {
        let mut s: StatefulSet = serde_json::from_value(v).unwrap();
        crate::defaults::stateful_set(&mut s);
        s
    }

    fn db() -> serde_json::Value {
        json!({"metadata": {"name": "db", "namespace": "default"},
            "spec": {"serviceName": "db", "replicas": 2, "selector": {"matchLabels": {"app": "db"}},
                "template": {"metadata": {"labels": {"app": "db"}},
                    "spec": {"containers": [{"name": "db", "image": "nginx"}]}}}})
    }

    #[test]
    fn stateful_set_rules_read_as_kubernetes() {
        assert_eq!(
            messages(&validate_stateful_set(&sts(db()))),
            Vec::<String>::new()
        );
        let mut v = db();
        v["metadata"]["name"] = json!("db.one");
        v["spec"]["podManagementPolicy"] = json!("Random");
        v["spec"]["volumeClaimTemplates"] = json!([{"metadata": {"name": "data"}}]);
        let got = messages(&validate_stateful_set(&sts(v)));
        assert_eq!(got.len(), 3, "{got:?}");
        assert!(got[0].starts_with("metadata.name: Invalid value: \"db.one\""));
        assert_eq!(
            got[1],
            "spec.podManagementPolicy: Invalid value: \"Random\": must be 'OrderedReady' or 'Parallel'"
        );
        assert!(got[2].starts_with(
            "spec.volumeClaimTemplates: Forbidden: this cluster has no persistent volumes"
        ));
    }

    #[test]
    fn only_some_stateful_set_fields_change() {
        let old = sts(db());
        let mut v = db();
        v["spec"]["replicas"] = json!(5);
        v["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.27");
        assert_eq!(
            messages(&validate_stateful_set_update(&sts(v), &old)),
            Vec::<String>::new()
        );
        let mut v = db();
        v["spec"]["serviceName"] = json!("other");
        assert_eq!(
            messages(&validate_stateful_set_update(&sts(v), &old)),
            vec!["spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"]
        );
    }

    #[test]
    fn a_controller_revision_needs_object_data() {
        let cr: ControllerRevision = serde_json::from_value(
            json!({"metadata": {"name": "r", "namespace": "default"}, "revision": 1}),
        )
        .unwrap();
        assert_eq!(
            messages(&validate_controller_revision(&cr)),
            vec!["data: Required value: data is mandatory"]
        );
    }
}
