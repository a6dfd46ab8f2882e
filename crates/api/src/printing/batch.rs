//! Table columns of batch/v1 Jobs and CronJobs and policy/v1
//! PodDisruptionBudgets, as Kubernetes' printers fill them: `NAME STATUS
//! COMPLETIONS DURATION AGE`, `NAME SCHEDULE TIMEZONE SUSPEND ACTIVE LAST
//! SCHEDULE AGE` and `NAME MIN AVAILABLE MAX UNAVAILABLE ALLOWED
//! DISRUPTIONS AGE`.

use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::{CronJob, Job, JobCondition};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{json, Value};

use super::workloads::{containers_and_images, format_label_selector};
use super::{age, age_col, col, from_value, human_duration, name_col, name_of};

const CONTAINERS_DESC: &str = "Names of each container in the template.";
const IMAGES_DESC: &str = "Images referenced by each container in the template.";
const JOB_SELECTOR_DESC: &str = "A label query over pods that should match the pod count. Normally, the system sets this field for you. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors";

pub(super) fn columns(kind: &str) -> Option<Vec<Value>> {
    Some(match kind {
        "Job" => vec![
            name_col(),
            col("Status", "string", "", 0, "Status of the job."),
            col("Completions", "string", "", 0, "The number of pods which reached phase Succeeded. The value increases monotonically for a given spec. However, it may decrease in reaction to scale down of elastic indexed jobs."),
            col("Duration", "string", "", 0, "Time required to complete the job."),
            age_col(),
            col("Containers", "string", "", 1, CONTAINERS_DESC),
            col("Images", "string", "", 1, IMAGES_DESC),
            col("Selector", "string", "", 1, JOB_SELECTOR_DESC),
        ],
        "CronJob" => vec![
            name_col(),
            col("Schedule", "string", "", 0, "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron."),
            col("Timezone", "string", "", 0, "The time zone name for the given schedule, see https://en.wikipedia.org/wiki/List_of_tz_database_time_zones. If not specified, this will default to the time zone of the kube-controller-manager process. The set of valid time zone names and the time zone offset is loaded from the system-wide time zone database by the API server during CronJob validation and the controller manager during execution. If no system-wide time zone database can be found a bundled version of the database is used instead. If the time zone name becomes invalid during the lifetime of a CronJob or due to a change in host configuration, the controller will stop creating new new Jobs and will create a system event with the reason UnknownTimeZone. More information can be found in https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/#time-zones"),
            col("Suspend", "boolean", "", 0, "This flag tells the controller to suspend subsequent executions, it does not apply to already started executions.  Defaults to false."),
            col("Active", "integer", "", 0, "A list of pointers to currently running jobs."),
            col("Last Schedule", "string", "", 0, "Information when was the last time the job was successfully scheduled."),
            age_col(),
            col("Containers", "string", "", 1, CONTAINERS_DESC),
            col("Images", "string", "", 1, IMAGES_DESC),
            col("Selector", "string", "", 1, JOB_SELECTOR_DESC),
        ],
        "PodDisruptionBudget" => vec![
            name_col(),
            col("Min Available", "string", "", 0, "The minimum number of pods that must be available."),
            col("Max Unavailable", "string", "", 0, "The maximum number of pods that may be unavailable."),
            col("Allowed Disruptions", "integer", "", 0, "Calculated number of pods that may be disrupted at this time."),
            age_col(),
        ],
        _ => return None,
    })
}

pub(super) fn cells(kind: &str, obj: &Value, now: DateTime<Utc>) -> Option<Vec<Value>> {
    Some(match kind {
        "Job" => job_cells(&from_value(obj), now),
        "CronJob" => {
            let cj: CronJob = from_value(obj);
            let spec = cj.spec.unwrap_or_default();
            let status = cj.status.unwrap_or_default();
            let job_spec = spec.job_template.spec.unwrap_or_default();
            let [containers, images] = containers_and_images(Some(&job_spec.template));
            let last = status
                .last_schedule_time
                .as_ref()
                .map_or_else(|| "<none>".to_string(), |t| age(Some(t), now));
            vec![
                json!(name_of(&cj.metadata)),
                json!(spec.schedule),
                json!(spec.time_zone.unwrap_or_else(|| "<none>".into())),
                json!(bool_ptr(spec.suspend)),
                json!(status.active.map_or(0, |a| a.len())),
                json!(last),
                json!(age(cj.metadata.creation_timestamp.as_ref(), now)),
                json!(containers),
                json!(images),
                json!(format_label_selector(job_spec.selector.as_ref())),
            ]
        }
        "PodDisruptionBudget" => {
            let pdb: PodDisruptionBudget = from_value(obj);
            let spec = pdb.spec.unwrap_or_default();
            let shown = |v: Option<IntOrString>| match v {
                Some(IntOrString::Int(i)) => i.to_string(),
                Some(IntOrString::String(s)) => s,
                None => "N/A".into(),
            };
            vec![
                json!(name_of(&pdb.metadata)),
                json!(shown(spec.min_available)),
                json!(shown(spec.max_unavailable)),
                json!(pdb.status.map_or(0, |s| s.disruptions_allowed)),
                json!(age(pdb.metadata.creation_timestamp.as_ref(), now)),
            ]
        }
        _ => return None,
    })
}

/// Go's `printBoolPtr`.
fn bool_ptr(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => "True",
        Some(false) => "False",
        None => "<unset>",
    }
}

fn has_condition(conds: &[JobCondition], type_: &str) -> bool {
    conds.iter().any(|c| c.type_ == type_ && c.status == "True")
}

/// A Job's STATUS: the first of Complete, Failed, Terminating, Suspended,
/// FailureTarget that applies, else Running.
pub fn job_status(job: &Job) -> &'static str {
    let conds = job
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default();
    if has_condition(conds, "Complete") {
        "Complete"
    } else if has_condition(conds, "Failed") {
        "Failed"
    } else if job.metadata.deletion_timestamp.is_some() {
        "Terminating"
    } else if has_condition(conds, "Suspended") {
        "Suspended"
    } else if has_condition(conds, "FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    }
}

fn job_cells(job: &Job, now: DateTime<Utc>) -> Vec<Value> {
    let spec = job.spec.clone().unwrap_or_default();
    let status = job.status.clone().unwrap_or_default();
    let succeeded = status.succeeded.unwrap_or(0);
    let completions = match spec.completions {
        Some(c) => format!("{succeeded}/{c}"),
        None => match spec.parallelism.unwrap_or(0) {
            p if p > 1 => format!("{succeeded}/1 of {p}"),
            _ => format!("{succeeded}/1"),
        },
    };
    let duration = match (&status.start_time, &status.completion_time) {
        (None, _) => String::new(),
        (Some(start), None) => human_duration(now - start.0),
        (Some(start), Some(end)) => human_duration(end.0 - start.0),
    };
    let [containers, images] = containers_and_images(Some(&spec.template));
    vec![
        json!(name_of(&job.metadata)),
        json!(job_status(job)),
        json!(completions),
        json!(duration),
        json!(age(job.metadata.creation_timestamp.as_ref(), now)),
        json!(containers),
        json!(images),
        json!(format_label_selector(spec.selector.as_ref())),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_running_job_shows_its_completions_and_duration() {
        let now = Utc::now();
        let start = (now - chrono::Duration::seconds(8)).to_rfc3339();
        let job = json!({"metadata": {"name": "hello", "creationTimestamp": start},
            "spec": {"completions": 1, "parallelism": 1,
                "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u"}},
                "template": {"spec": {"containers": [{"name": "hello", "image": "busybox"}]}}},
            "status": {"active": 1, "startTime": start}});
        let c = cells("Job", &job, now).unwrap();
        assert_eq!(
            c,
            vec![
                json!("hello"),
                json!("Running"),
                json!("0/1"),
                json!("8s"),
                json!("8s"),
                json!("hello"),
                json!("busybox"),
                json!("batch.kubernetes.io/controller-uid=u")
            ]
        );
    }

    #[test]
    fn a_budget_shows_na_for_the_other_bound() {
        let pdb = json!({"metadata": {"name": "db-pdb"}, "spec": {"maxUnavailable": 1},
            "status": {"disruptionsAllowed": 0, "currentHealthy": 0, "desiredHealthy": 0, "expectedPods": 0}});
        let c = cells("PodDisruptionBudget", &pdb, Utc::now()).unwrap();
        assert_eq!(
            &c[..4],
            &[json!("db-pdb"), json!("N/A"), json!("1"), json!(0)]
        );
    }

    #[test]
    fn a_cron_job_without_runs_shows_none() {
        let cj = json!({"metadata": {"name": "tick"}, "spec": {"schedule": "*/1 * * * *",
            "suspend": false, "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "tick", "image": "busybox"}]}}}}}});
        let c = cells("CronJob", &cj, Utc::now()).unwrap();
        assert_eq!(
            &c[..6],
            &[
                json!("tick"),
                json!("*/1 * * * *"),
                json!("<none>"),
                json!("False"),
                json!(0),
                json!("<none>")
            ]
        );
        assert_eq!(c[9], json!("<none>"));
    }
}
