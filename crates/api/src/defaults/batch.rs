//! Defaults of batch/v1 Jobs and CronJobs, as the v1 scheme sets them. A
//! CronJob's job template gets only its pod template's defaults (the Job
//! defaults come when the controller creates the Job).

use k8s_openapi::api::batch::v1::{CronJob, Job};

use super::set_str;
use super::workloads::template;

/// One completion at parallelism one unless either is given, six retries,
/// NonIndexed, not suspended, failed or terminating pods replaced, a
/// generated selector; the Job takes its template's labels when it has
/// none of its own.
pub fn job(job: &mut Job) {
    let spec = job.spec.get_or_insert_with(Default::default);
    if spec.completions.is_none() && spec.parallelism.is_none() {
        spec.completions = Some(1);
    }
    spec.parallelism.get_or_insert(1);
    if spec.backoff_limit.is_none() {
        spec.backoff_limit = Some(if spec.backoff_limit_per_index.is_some() {
            i32::MAX
        } else {
            6
        });
    }
    set_str(&mut spec.completion_mode, "NonIndexed");
    spec.suspend.get_or_insert(false);
    for rule in spec
        .pod_failure_policy
        .iter_mut()
        .flat_map(|p| p.rules.iter_mut())
    {
        for pattern in rule.on_pod_conditions.iter_mut().flatten() {
            if pattern.status.is_empty() {
                pattern.status = "True".into();
            }
        }
    }
    if spec.pod_replacement_policy.is_none() {
        spec.pod_replacement_policy = Some(if spec.pod_failure_policy.is_some() {
            "Failed".into()
        } else {
            "TerminatingOrFailed".into()
        });
    }
    spec.manual_selector.get_or_insert(false);
    template(&mut spec.template);
    let template_labels = spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone());
    if template_labels.is_some() && job.metadata.labels.as_ref().is_none_or(|l| l.is_empty()) {
        job.metadata.labels = template_labels;
    }
}

/// Allow concurrent runs, not suspended, three successful and one failed
/// Job kept.
pub fn cron_job(cj: &mut CronJob) {
    let spec = cj.spec.get_or_insert_with(Default::default);
    set_str(&mut spec.concurrency_policy, "Allow");
    spec.suspend.get_or_insert(false);
    spec.successful_jobs_history_limit.get_or_insert(3);
    spec.failed_jobs_history_limit.get_or_insert(1);
    if let Some(js) = spec.job_template.spec.as_mut() {
        template(&mut js.template);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_job_gets_the_reference_defaults() {
        let mut j: Job = serde_json::from_value(json!({"metadata": {"name": "hello"},
            "spec": {"template": {"spec": {"restartPolicy": "Never",
                "containers": [{"name": "hello", "image": "busybox"}]}}}}))
        .unwrap();
        job(&mut j);
        let v = serde_json::to_value(&j).unwrap();
        let spec = &v["spec"];
        assert_eq!(spec["backoffLimit"], 6);
        assert_eq!(spec["completionMode"], "NonIndexed");
        assert_eq!(spec["completions"], 1);
        assert_eq!(spec["parallelism"], 1);
        assert_eq!(spec["manualSelector"], false);
        assert_eq!(spec["podReplacementPolicy"], "TerminatingOrFailed");
        assert_eq!(spec["suspend"], false);
        assert_eq!(spec["template"]["spec"]["dnsPolicy"], "ClusterFirst");
    }

    #[test]
    fn parallelism_alone_leaves_completions_unset() {
        let mut j: Job = serde_json::from_value(json!({"spec": {"parallelism": 3}})).unwrap();
        job(&mut j);
        let spec = j.spec.unwrap();
        assert_eq!(spec.completions, None);
        assert_eq!(spec.parallelism, Some(3));
    }

    #[test]
    fn a_cron_job_gets_the_reference_defaults() {
        let mut c: CronJob = serde_json::from_value(json!({"spec": {"schedule": "* * * * *",
            "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "OnFailure",
                "containers": [{"name": "tick", "image": "busybox"}]}}}}}}))
        .unwrap();
        cron_job(&mut c);
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["spec"]["concurrencyPolicy"], "Allow");
        assert_eq!(v["spec"]["successfulJobsHistoryLimit"], 3);
        assert_eq!(v["spec"]["failedJobsHistoryLimit"], 1);
        assert_eq!(v["spec"]["suspend"], false);
        // The Job's own defaults wait for the Job.
        assert!(v["spec"]["jobTemplate"]["spec"]
            .get("backoffLimit")
            .is_none());
    }
}
