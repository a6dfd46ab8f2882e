//! Validation of batch/v1 Jobs and CronJobs and policy/v1
//! PodDisruptionBudgets, with Kubernetes' messages: `spec.template.spec.
//! restartPolicy: Required value: valid values: "OnFailure", "Never"`.

use k8s_openapi::api::batch::v1::{CronJob, Job, JobSpec, JobStatus};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::workloads::{
    go_int_or_string, go_label_selector, go_string_map, int_or_percent, int_or_percent_value,
    nonnegative, validate_label_selector, validate_template,
};
use super::{
    is_dns1123_label, name_is_dns_subdomain, validate_object_meta, validate_object_meta_update,
    BadValue, FieldError,
};

pub const LEGACY_CONTROLLER_UID: &str = "controller-uid";
pub const LEGACY_JOB_NAME: &str = "job-name";
pub const CONTROLLER_UID: &str = "batch.kubernetes.io/controller-uid";
pub const JOB_NAME: &str = "batch.kubernetes.io/job-name";

const MAX_PARALLELISM_INDEXED: i32 = 100_000;

fn has_label(job: &Job, key: &str, want: &str, errs: &mut Vec<FieldError>) {
    let labels = job
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.labels.as_ref());
    let path = format!("spec.template.metadata.labels[{key}]");
    match labels.and_then(|l| l.get(key)) {
        None => errs.push(FieldError::required(path, format!("must be '{want}'"))),
        Some(v) if v != want => errs.push(FieldError::invalid(
            path,
            BadValue::Raw(go_string_map(labels)),
            format!("must be '{want}'"),
        )),
        Some(_) => {}
    }
}

/// `validateGeneratedSelector`: unless the selector is manual, the
/// template carries the generated labels and the selector selects them.
fn generated_selector(job: &Job, batch_labels: bool, errs: &mut Vec<FieldError>) {
    let spec = job.spec.clone().unwrap_or_default();
    if spec.manual_selector == Some(true) {
        return;
    }
    let Some(sel) = spec.selector.as_ref() else {
        return;
    };
    let uid = job.metadata.uid.clone().unwrap_or_default();
    let name = job.metadata.name.clone().unwrap_or_default();
    if uid.is_empty() {
        errs.push(FieldError::required("metadata.uid", ""));
    }
    has_label(job, LEGACY_CONTROLLER_UID, &uid, errs);
    has_label(job, LEGACY_JOB_NAME, &name, errs);
    let mut expected = std::collections::BTreeMap::new();
    if batch_labels {
        has_label(job, CONTROLLER_UID, &uid, errs);
        has_label(job, JOB_NAME, &name, errs);
        expected.insert(CONTROLLER_UID.to_string(), uid.clone());
        expected.insert(JOB_NAME.to_string(), name.clone());
    }
    expected.insert(LEGACY_CONTROLLER_UID.to_string(), uid);
    expected.insert(LEGACY_JOB_NAME.to_string(), name);
    if let Ok(parsed) = crate::selectors::LabelSelector::from_api(sel) {
        if !parsed.matches(&expected) {
            errs.push(FieldError::invalid(
                "spec.selector",
                BadValue::Raw(go_label_selector(sel)),
                "`selector` not auto-generated",
            ));
        }
    }
}

/// `validateJobSpec`: what a Job and a CronJob's job template share.
fn validate_job_spec_fields(spec: &JobSpec, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let p = |f: &str| format!("{path}.{f}");
    for (f, v) in [
        ("parallelism", spec.parallelism.map(i64::from)),
        ("completions", spec.completions.map(i64::from)),
        ("activeDeadlineSeconds", spec.active_deadline_seconds),
        ("backoffLimit", spec.backoff_limit.map(i64::from)),
        (
            "ttlSecondsAfterFinished",
            spec.ttl_seconds_after_finished.map(i64::from),
        ),
        (
            "backoffLimitPerIndex",
            spec.backoff_limit_per_index.map(i64::from),
        ),
        ("maxFailedIndexes", spec.max_failed_indexes.map(i64::from)),
    ] {
        if let Some(v) = v {
            nonnegative(v, &p(f), &mut errs);
        }
    }
    if spec.max_failed_indexes.is_some() && spec.backoff_limit_per_index.is_none() {
        errs.push(FieldError::required(
            p("backoffLimitPerIndex"),
            "when maxFailedIndexes is specified",
        ));
    }
    if let Some(m) = &spec.managed_by {
        if m.len() > 63 {
            errs.push(FieldError::too_long(p("managedBy"), 63));
        }
    }
    let indexed = spec.completion_mode.as_deref() == Some("Indexed");
    if let Some(mode) = spec.completion_mode.as_deref() {
        if mode != "NonIndexed" && mode != "Indexed" {
            errs.push(FieldError::not_supported(
                p("completionMode"),
                mode,
                &["NonIndexed", "Indexed"],
            ));
        }
        if indexed {
            if spec.completions.is_none() {
                errs.push(FieldError::required(
                    p("completions"),
                    "when completion mode is Indexed",
                ));
            }
            if let Some(par) = spec.parallelism.filter(|p| *p > MAX_PARALLELISM_INDEXED) {
                errs.push(FieldError::invalid(
                    p("parallelism"),
                    par,
                    format!("must be less than or equal to {MAX_PARALLELISM_INDEXED} when completion mode is Indexed"),
                ));
            }
            if let (Some(c), Some(m)) = (spec.completions, spec.max_failed_indexes) {
                if m > c {
                    errs.push(FieldError::invalid(
                        p("maxFailedIndexes"),
                        m,
                        "must be less than or equal to completions",
                    ));
                }
            }
        }
    }
    if !indexed {
        if let Some(v) = spec.backoff_limit_per_index {
            errs.push(FieldError::invalid(
                p("backoffLimitPerIndex"),
                v,
                "requires indexed completion mode",
            ));
        }
        if let Some(v) = spec.max_failed_indexes {
            errs.push(FieldError::invalid(
                p("maxFailedIndexes"),
                v,
                "requires indexed completion mode",
            ));
        }
        if spec.success_policy.is_some() {
            errs.push(FieldError::invalid(
                p("successPolicy"),
                BadValue::Omit,
                "requires indexed completion mode",
            ));
        }
    }
    if let Some(r) = spec.pod_replacement_policy.as_deref() {
        if spec.pod_failure_policy.is_some() {
            if r != "Failed" {
                errs.push(FieldError::not_supported(
                    p("podReplacementPolicy"),
                    r,
                    &["Failed"],
                ));
            }
        } else if r != "Failed" && r != "TerminatingOrFailed" {
            errs.push(FieldError::not_supported(
                p("podReplacementPolicy"),
                r,
                &["Failed", "TerminatingOrFailed"],
            ));
        }
    }
    errs.extend(validate_template(&spec.template, &p("template")));
    let restart = spec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("");
    let restart_path = p("template.spec.restartPolicy");
    match restart {
        "" | "Always" => errs.push(FieldError::required(
            restart_path,
            "valid values: \"OnFailure\", \"Never\"",
        )),
        "OnFailure" | "Never" => {
            if spec.pod_failure_policy.is_some() && restart != "Never" {
                errs.push(FieldError::invalid(
                    restart_path,
                    restart,
                    "only \"Never\" is supported when podFailurePolicy is specified",
                ));
            }
        }
        other => errs.push(FieldError::not_supported(
            restart_path,
            other,
            &["OnFailure", "Never"],
        )),
    }
    errs
}

/// `ValidateJobSpec`: the shared fields plus a selector that selects the
/// template.
fn validate_job_spec(spec: &JobSpec) -> Vec<FieldError> {
    let mut errs = validate_job_spec_fields(spec, "spec");
    match &spec.selector {
        None => errs.push(FieldError::required("spec.selector", "")),
        Some(sel) => {
            errs.extend(validate_label_selector(sel, "spec.selector"));
            let labels = spec
                .template
                .metadata
                .as_ref()
                .and_then(|m| m.labels.clone())
                .unwrap_or_default();
            if let Ok(parsed) = crate::selectors::LabelSelector::from_api(sel) {
                if !parsed.matches(&labels) {
                    errs.push(FieldError::invalid(
                        "spec.template.metadata.labels",
                        BadValue::Raw(go_string_map(
                            spec.template
                                .metadata
                                .as_ref()
                                .and_then(|m| m.labels.as_ref()),
                        )),
                        "`selector` does not match template `labels`",
                    ));
                }
            }
        }
    }
    errs
}

pub fn validate_job(job: &Job) -> Vec<FieldError> {
    let mut errs = validate_object_meta(&job.metadata, true, name_is_dns_subdomain);
    generated_selector(job, true, &mut errs);
    let spec = job.spec.clone().unwrap_or_default();
    errs.extend(validate_job_spec(&spec));
    if spec.completion_mode.as_deref() == Some("Indexed") {
        if let Some(c) = spec.completions.filter(|c| *c > 0) {
            let name = job.metadata.name.clone().unwrap_or_default();
            let hostname = format!("{name}-{}", c - 1);
            if !is_dns1123_label(&hostname).is_empty() {
                errs.push(FieldError::invalid(
                    "metadata.name",
                    name,
                    format!("will not able to create pod with invalid DNS label: {hostname}"),
                ));
            }
        }
    }
    errs
}

fn immutable<T: PartialEq + serde::Serialize>(
    new: &T,
    old: &T,
    path: &str,
    errs: &mut Vec<FieldError>,
) {
    if new != old {
        let shown = match serde_json::to_value(new) {
            Ok(serde_json::Value::Null) => BadValue::Null,
            Ok(serde_json::Value::Number(n)) => BadValue::Raw(n.to_string()),
            Ok(serde_json::Value::String(s)) => BadValue::Str(s),
            _ => BadValue::Omit,
        };
        errs.push(FieldError::invalid(path, shown, "field is immutable"));
    }
}

pub fn validate_job_update(new: &Job, old: &Job) -> Vec<FieldError> {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    // The generated labels are checked as on create, the batch.kubernetes.io
    // ones only for Jobs that were made with them.
    let old_labels = old
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.labels.as_ref());
    let batch_labels = old_labels.is_some_and(|l| l.contains_key(CONTROLLER_UID));
    generated_selector(new, batch_labels, &mut errs);
    let spec = new.spec.clone().unwrap_or_default();
    let old_spec = old.spec.clone().unwrap_or_default();
    errs.extend(validate_job_spec(&spec));
    let indexed = spec.completion_mode.as_deref() == Some("Indexed");
    if !indexed {
        immutable(
            &spec.completions,
            &old_spec.completions,
            "spec.completions",
            &mut errs,
        );
    } else if spec.completions != old_spec.completions
        && spec.completions.is_some()
        && spec.completions != spec.parallelism
    {
        errs.push(FieldError::invalid(
            "spec.completions",
            spec.completions.unwrap_or(0),
            "can only be modified in tandem with spec.parallelism",
        ));
    }
    immutable(
        &spec.selector,
        &old_spec.selector,
        "spec.selector",
        &mut errs,
    );
    // A suspended Job that never started may change where its pods run.
    let mut old_template = old_spec.template.clone();
    let never_started = old
        .status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .is_none();
    if spec.suspend == Some(true) && never_started {
        let (new_t, old_t) = (&spec.template, &mut old_template);
        let new_pod = new_t.spec.clone().unwrap_or_default();
        if let Some(op) = old_t.spec.as_mut() {
            op.node_selector = new_pod.node_selector;
            op.tolerations = new_pod.tolerations;
            op.scheduling_gates = new_pod.scheduling_gates;
            let node_affinity = new_pod.affinity.and_then(|a| a.node_affinity);
            let aff = op.affinity.get_or_insert_with(Default::default);
            aff.node_affinity = node_affinity;
            if aff == &Default::default() {
                op.affinity = None;
            }
        }
        let om = old_t.metadata.get_or_insert_with(Default::default);
        let nm = new_t.metadata.clone().unwrap_or_default();
        om.labels = nm.labels;
        om.annotations = nm.annotations;
    }
    if spec.template != old_template {
        errs.push(FieldError::invalid(
            "spec.template",
            BadValue::Omit,
            "field is immutable",
        ));
    }
    immutable(
        &spec.completion_mode,
        &old_spec.completion_mode,
        "spec.completionMode",
        &mut errs,
    );
    immutable(
        &spec.pod_failure_policy,
        &old_spec.pod_failure_policy,
        "spec.podFailurePolicy",
        &mut errs,
    );
    immutable(
        &spec.backoff_limit_per_index,
        &old_spec.backoff_limit_per_index,
        "spec.backoffLimitPerIndex",
        &mut errs,
    );
    immutable(
        &spec.managed_by,
        &old_spec.managed_by,
        "spec.managedBy",
        &mut errs,
    );
    immutable(
        &spec.success_policy,
        &old_spec.success_policy,
        "spec.successPolicy",
        &mut errs,
    );
    errs
}

fn condition_true(s: &JobStatus, type_: &str) -> bool {
    s.conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == type_ && c.status == "True")
}

pub fn validate_job_status_update(new: &Job, old: &Job) -> Vec<FieldError> {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    let s = new.status.clone().unwrap_or_default();
    let p = |f: &str| format!("status.{f}");
    for (f, v) in [
        ("active", s.active),
        ("succeeded", s.succeeded),
        ("failed", s.failed),
        ("ready", s.ready),
        ("terminating", s.terminating),
    ] {
        if let Some(v) = v {
            nonnegative(v.into(), &p(f), &mut errs);
        }
    }
    let complete = condition_true(&s, "Complete");
    let failed = condition_true(&s, "Failed");
    if complete && failed {
        errs.push(FieldError::invalid(
            p("conditions"),
            BadValue::Omit,
            "cannot set Complete=True and Failed=true conditions",
        ));
    }
    if s.completion_time.is_some() && !complete {
        errs.push(FieldError::invalid(
            p("completionTime"),
            BadValue::Omit,
            "cannot set completionTime when there is no Complete=True condition",
        ));
    }
    if s.completion_time.is_none() && complete {
        errs.push(FieldError::required(
            p("completionTime"),
            "completionTime is required for Complete jobs",
        ));
    }
    if (complete || failed) && s.active.unwrap_or(0) > 0 {
        errs.push(FieldError::invalid(
            p("active"),
            s.active.unwrap_or(0),
            "active>0 is invalid for finished job",
        ));
    }
    let old_s = old.status.clone().unwrap_or_default();
    for c in ["Failed", "Complete", "FailureTarget"] {
        if condition_true(&old_s, c) && !condition_true(&s, c) {
            errs.push(FieldError::invalid(
                p("conditions"),
                BadValue::Omit,
                format!("cannot disable the terminal {c}=True condition"),
            ));
        }
    }
    errs
}

// ---- CronJob ----

fn validate_time_zone(tz: &str, errs: &mut Vec<FieldError>) {
    let path = "spec.timeZone";
    if tz.is_empty() {
        errs.push(FieldError::invalid(
            path,
            tz,
            "timeZone must be nil or non-empty string",
        ));
        return;
    }
    let ok_part = |part: &str| {
        part != "."
            && part != ".."
            && !part.starts_with('-')
            && (1..=14).contains(&part.len())
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '+'))
    };
    if !tz.split('/').all(ok_part) {
        errs.push(FieldError::invalid(
            path,
            tz,
            format!("unknown time zone {tz}"),
        ));
        return;
    }
    if tz.eq_ignore_ascii_case("Local") {
        errs.push(FieldError::invalid(
            path,
            tz,
            "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones",
        ));
    }
    if let Err(e) = crate::cron::time_zone(tz) {
        errs.push(FieldError::invalid(path, tz, e));
    }
}

fn validate_cron_job_spec(cj: &CronJob, old: Option<&CronJob>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let spec = cj.spec.clone().unwrap_or_default();
    let old_spec = old.and_then(|o| o.spec.clone());
    if spec.schedule.is_empty() {
        errs.push(FieldError::required("spec.schedule", ""));
    } else {
        let allow_tz = old_spec.as_ref().is_some_and(|o| o.schedule.contains("TZ"));
        if let Err(e) = crate::cron::Schedule::parse(&spec.schedule) {
            errs.push(FieldError::invalid(
                "spec.schedule",
                spec.schedule.as_str(),
                e,
            ));
        }
        let has_tz = spec.schedule.contains("TZ");
        if allow_tz && has_tz && spec.time_zone.is_some() {
            errs.push(FieldError::invalid(
                "spec.schedule",
                spec.schedule.as_str(),
                "cannot use both timeZone field and TZ or CRON_TZ in schedule",
            ));
        } else if !allow_tz && has_tz {
            errs.push(FieldError::invalid(
                "spec.schedule",
                spec.schedule.as_str(),
                "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
            ));
        }
    }
    if let Some(s) = spec.starting_deadline_seconds {
        nonnegative(s, "spec.startingDeadlineSeconds", &mut errs);
    }
    if old_spec.as_ref().map(|o| &o.time_zone) != Some(&spec.time_zone) {
        if let Some(tz) = &spec.time_zone {
            validate_time_zone(tz, &mut errs);
        }
    }
    match spec.concurrency_policy.as_deref().unwrap_or("") {
        "Allow" | "Forbid" | "Replace" => {}
        "" => errs.push(FieldError::required("spec.concurrencyPolicy", "")),
        other => errs.push(FieldError::not_supported(
            "spec.concurrencyPolicy",
            other,
            &["Allow", "Forbid", "Replace"],
        )),
    }
    let js = spec.job_template.spec.clone().unwrap_or_default();
    errs.extend(validate_job_spec_fields(&js, "spec.jobTemplate.spec"));
    if let Some(sel) = &js.selector {
        errs.push(FieldError::invalid(
            "spec.jobTemplate.spec.selector",
            BadValue::Raw(go_label_selector(sel)),
            "`selector` will be auto-generated",
        ));
    }
    if js.manual_selector == Some(true) {
        errs.push(FieldError::not_supported(
            "spec.jobTemplate.spec.manualSelector",
            true,
            &["nil", "false"],
        ));
    }
    for (f, v) in [
        (
            "successfulJobsHistoryLimit",
            spec.successful_jobs_history_limit,
        ),
        ("failedJobsHistoryLimit", spec.failed_jobs_history_limit),
    ] {
        if let Some(v) = v {
            nonnegative(v.into(), &format!("spec.{f}"), &mut errs);
        }
    }
    errs
}

pub fn validate_cron_job(cj: &CronJob) -> Vec<FieldError> {
    let mut errs = validate_object_meta(&cj.metadata, true, name_is_dns_subdomain);
    errs.extend(validate_cron_job_spec(cj, None));
    let name = cj.metadata.name.clone().unwrap_or_default();
    // The controller appends `-<11 digits>` for its Jobs.
    if name.len() > 52 {
        errs.push(FieldError::invalid(
            "metadata.name",
            name,
            "must be no more than 52 characters",
        ));
    }
    errs
}

pub fn validate_cron_job_update(new: &CronJob, old: &CronJob) -> Vec<FieldError> {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    errs.extend(validate_cron_job_spec(new, Some(old)));
    errs
}

// ---- PodDisruptionBudget ----

pub fn validate_pod_disruption_budget(pdb: &PodDisruptionBudget) -> Vec<FieldError> {
    let mut errs = validate_object_meta(&pdb.metadata, true, name_is_dns_subdomain);
    errs.extend(validate_pdb_spec(pdb));
    errs
}

fn validate_pdb_spec(pdb: &PodDisruptionBudget) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let spec = pdb.spec.clone().unwrap_or_default();
    if spec.min_available.is_some() && spec.max_unavailable.is_some() {
        errs.push(FieldError::invalid(
            "spec",
            BadValue::Omit,
            "minAvailable and maxUnavailable cannot be both set",
        ));
    }
    for (f, v) in [
        ("minAvailable", &spec.min_available),
        ("maxUnavailable", &spec.max_unavailable),
    ] {
        if let Some(v) = v {
            let path = format!("spec.{f}");
            int_or_percent(v, &path, &mut errs);
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
    }
    if let Some(sel) = &spec.selector {
        errs.extend(validate_label_selector(sel, "spec.selector"));
    }
    if let Some(p) = spec.unhealthy_pod_eviction_policy.as_deref() {
        if p != "AlwaysAllow" && p != "IfHealthyBudget" {
            errs.push(FieldError::not_supported(
                "spec.unhealthyPodEvictionPolicy",
                p,
                &["AlwaysAllow", "IfHealthyBudget"],
            ));
        }
    }
    errs
}

pub fn validate_pod_disruption_budget_update(
    new: &PodDisruptionBudget,
    old: &PodDisruptionBudget,
) -> Vec<FieldError> {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    errs.extend(validate_pdb_spec(new));
    errs
}

pub fn validate_pod_disruption_budget_status_update(
    new: &PodDisruptionBudget,
    old: &PodDisruptionBudget,
) -> Vec<FieldError> {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    let s: PodDisruptionBudgetStatus = new.status.clone().unwrap_or_default();
    for (f, v) in [
        ("disruptionsAllowed", s.disruptions_allowed),
        ("currentHealthy", s.current_healthy),
        ("desiredHealthy", s.desired_healthy),
        ("expectedPods", s.expected_pods),
    ] {
        nonnegative(v.into(), &format!("status.{f}"), &mut errs);
    }
    errs
}

/// A selector that selects nothing (`LabelSelectorAsSelector(nil)`) or
/// everything; a PDB's pods, an Eviction's budgets.
pub fn pdb_selects(
    pdb: &PodDisruptionBudget,
    labels: &std::collections::BTreeMap<String, String>,
) -> bool {
    let Some(sel) = pdb.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
        return false;
    };
    if *sel == LabelSelector::default() {
        return false;
    }
    crate::selectors::LabelSelector::from_api(sel).is_ok_and(|s| !s.is_empty() && s.matches(labels))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn messages(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(FieldError::message).collect()
    }

    fn job(v: serde_json::Value) -> Job {
        let mut j: Job = serde_json::from_value(v).unwrap();
        crate::defaults::job(&mut j);
        j
    }

    fn hello() -> serde_json::Value {
        json!({"metadata": {"name": "hello", "namespace": "default", "uid": "u1"},
            "spec": {"selector": {"matchLabels": {CONTROLLER_UID: "u1"}},
                "template": {"metadata": {"labels": {CONTROLLER_UID: "u1", JOB_NAME: "hello",
                    LEGACY_CONTROLLER_UID: "u1", LEGACY_JOB_NAME: "hello"}},
                    "spec": {"restartPolicy": "Never", "containers": [{"name": "hello", "image": "busybox"}]}}}})
    }

    #[test]
    fn a_job_restarts_never_or_on_failure() {
        assert_eq!(messages(&validate_job(&job(hello()))), Vec::<String>::new());
        let mut v = hello();
        v["spec"]["template"]["spec"]
            .as_object_mut()
            .unwrap()
            .remove("restartPolicy");
        assert_eq!(
            messages(&validate_job(&job(v))),
            vec!["spec.template.spec.restartPolicy: Required value: valid values: \"OnFailure\", \"Never\""]
        );
    }

    #[test]
    fn a_generated_selector_needs_its_labels() {
        let mut v = hello();
        v["spec"]["template"]["metadata"]["labels"]
            .as_object_mut()
            .unwrap()
            .remove(LEGACY_JOB_NAME);
        assert_eq!(
            messages(&validate_job(&job(v))),
            vec!["spec.template.metadata.labels[job-name]: Required value: must be 'hello'"]
        );
    }

    #[test]
    fn a_job_template_is_immutable_and_completions_too() {
        let old = job(hello());
        let mut v = hello();
        v["spec"]["template"]["spec"]["containers"][0]["image"] = json!("busybox:1");
        v["spec"]["completions"] = json!(3);
        assert_eq!(
            messages(&validate_job_update(&job(v), &old)),
            vec![
                "spec.completions: Invalid value: 3: field is immutable",
                "spec.template: Invalid value: field is immutable"
            ]
        );
        // Parallelism may change (the update carries the stored, defaulted
        // completions).
        let mut v = serde_json::to_value(&old).unwrap();
        v["spec"]["parallelism"] = json!(4);
        assert_eq!(
            messages(&validate_job_update(&job(v), &old)),
            Vec::<String>::new()
        );
    }

    fn cron(schedule: &str) -> CronJob {
        let mut c: CronJob = serde_json::from_value(json!({"metadata": {"name": "tick", "namespace": "default"},
            "spec": {"schedule": schedule, "jobTemplate": {"spec": {"template": {"spec": {
                "restartPolicy": "OnFailure", "containers": [{"name": "tick", "image": "busybox"}]}}}}}}))
        .unwrap();
        crate::defaults::cron_job(&mut c);
        c
    }

    #[test]
    fn a_cron_schedule_reads_as_kubernetes() {
        assert!(validate_cron_job(&cron("*/1 * * * *")).is_empty());
        assert_eq!(
            messages(&validate_cron_job(&cron("bad"))),
            vec![
                "spec.schedule: Invalid value: \"bad\": expected exactly 5 fields, found 1: [bad]"
            ]
        );
        assert_eq!(
            messages(&validate_cron_job(&cron("TZ=UTC * * * * *"))),
            vec!["spec.schedule: Invalid value: \"TZ=UTC * * * * *\": cannot use TZ or CRON_TZ in schedule, use timeZone field instead"]
        );
        let mut c = cron("* * * * *");
        c.spec.as_mut().unwrap().time_zone = Some("Mars/Base".into());
        assert_eq!(
            messages(&validate_cron_job(&c)),
            vec!["spec.timeZone: Invalid value: \"Mars/Base\": unknown time zone Mars/Base"]
        );
    }

    #[test]
    fn a_budget_has_one_bound() {
        let pdb: PodDisruptionBudget =
            serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "default"},
            "spec": {"minAvailable": "150%", "selector": {"matchLabels": {"app": "db"}}}}))
            .unwrap();
        assert_eq!(
            messages(&validate_pod_disruption_budget(&pdb)),
            vec!["spec.minAvailable: Invalid value: intstr.IntOrString{Type:1, IntVal:0, StrVal:\"150%\"}: must not be greater than 100%"]
        );
    }
}
