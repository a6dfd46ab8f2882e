//! The CronJob controller, as kube-controller-manager's (its v2): at each
//! time the schedule names (in `spec.timeZone`, else the controller's own
//! zone: `TZ`, else the system's, as Go's `time.Local`), creates a Job `<cronjob>-<minutes since the epoch>` from the Job
//! template, unless the time is further back than `startingDeadlineSeconds`
//! or a previous Job still runs and `concurrencyPolicy` is Forbid (Replace
//! deletes it first); keeps `status.active`, `lastScheduleTime` and
//! `lastSuccessfulTime`, and deletes finished Jobs beyond the successful and
//! failed history limits. Only the most recent missed time runs after a
//! pause, as in Kubernetes.
//!
//! Reads: cronjobs, jobs. Writes: jobs (create, delete), cronjobs/status,
//! events (`system:controller:cronjob-controller`).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, DeleteParams, PostParams, PropagationPolicy};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};
use orca_api::cron::Schedule;

use crate::events::Recorder;
use crate::pods;
use crate::wiring::{controller_key, key_of, Key, Wiring};

/// The zone of schedules without `spec.timeZone`, read once.
static LOCAL_ZONE: std::sync::LazyLock<Tz> = std::sync::LazyLock::new(|| {
    local_zone(
        std::env::var("TZ").ok().as_deref(),
        iana_time_zone::get_timezone().ok(),
    )
});

/// `TZ` (`:Europe/Paris` or `Europe/Paris`; empty means UTC), else the
/// system's zone, else UTC: how Go's `time.Local` is chosen.
fn local_zone(tz_env: Option<&str>, system: Option<String>) -> Tz {
    match tz_env {
        Some(v) => v.trim_start_matches(':').parse().unwrap_or(chrono_tz::UTC),
        None => system
            .and_then(|s| s.parse().ok())
            .unwrap_or(chrono_tz::UTC),
    }
}

const NAME: &str = "cronjob-controller";
const WORKERS: usize = 5;
pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// More missed times than this is reported (clock skew or a long pause).
const TOO_MANY_MISSED: usize = 100;

struct Controller {
    client: Client,
    cron_jobs: Store<CronJob>,
    jobs: Store<Job>,
    events: Recorder,
}

pub async fn run(clients: &crate::Clients) -> anyhow::Result<()> {
    let writer = clients.controller(NAME);
    let mut w = Wiring::new(NAME, clients.informers());
    let cron_jobs = w.watch(|cj: &CronJob| Some(key_of(cj)));
    let jobs = w.watch(|j: &Job| controller_key(j, "CronJob"));
    let c = Arc::new(Controller {
        client: writer.clone(),
        cron_jobs,
        jobs,
        events: Recorder::new(writer, NAME),
    });
    w.run(c, WORKERS, |c, key| async move { c.sync(&key).await })
        .await;
    Ok(())
}

/// The scheduled times between the last one (or the CronJob's creation,
/// or the starting deadline, whichever is later) and `now`: the most
/// recent, and how many there were (counting stops past
/// [`TOO_MANY_MISSED`]).
pub fn missed_times(
    schedule: &Schedule,
    tz: Tz,
    earliest: DateTime<Utc>,
    starting_deadline: Option<i64>,
    now: DateTime<Utc>,
) -> (Option<DateTime<Utc>>, usize) {
    let mut from = earliest;
    if let Some(d) = starting_deadline {
        from = from.max(now - chrono::Duration::seconds(d));
    }
    let mut most_recent = None;
    let mut count = 0;
    let mut t = from;
    while let Some(next) = schedule.next(t, tz) {
        if next > now {
            break;
        }
        most_recent = Some(next);
        count += 1;
        if count > TOO_MANY_MISSED {
            // Skip ahead: only the latest still matters.
            let mut later = next;
            while let Some(n) = schedule.next(later, tz).filter(|n| *n <= now) {
                later = n;
            }
            most_recent = Some(later);
            break;
        }
        t = next;
    }
    (most_recent, count)
}

/// The Job for the run scheduled at `at` (`getJobFromTemplate2`).
pub fn job_for(cj: &CronJob, at: DateTime<Utc>, tz: Tz) -> Job {
    let spec = cj.spec.clone().unwrap_or_default();
    let template = spec.job_template;
    let tmeta = template.metadata.unwrap_or_default();
    let mut annotations = tmeta.annotations.unwrap_or_default();
    annotations.insert(
        SCHEDULED_TIMESTAMP.into(),
        at.with_timezone(&tz)
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    );
    Job {
        metadata: ObjectMeta {
            name: Some(format!("{}-{}", cj.name_any(), at.timestamp() / 60)),
            namespace: cj.namespace(),
            labels: tmeta.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![pods::controller_ref(
                "batch/v1",
                "CronJob",
                &cj.name_any(),
                &cj.uid().unwrap_or_default(),
            )]),
            ..Default::default()
        },
        spec: template.spec,
        status: None,
    }
}

fn finished(job: &Job) -> Option<&str> {
    job.status
        .as_ref()?
        .conditions
        .iter()
        .flatten()
        .find(|c| c.status == "True" && matches!(c.type_.as_str(), "Complete" | "Failed"))
        .map(|c| c.type_.as_str())
}

fn job_ref(job: &Job) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        name: job.metadata.name.clone(),
        namespace: job.metadata.namespace.clone(),
        uid: job.metadata.uid.clone(),
        resource_version: job.metadata.resource_version.clone(),
        ..Default::default()
    }
}

fn rfc1123(t: DateTime<Utc>) -> String {
    t.format("%a, %d %b %Y %H:%M:%S %z").to_string()
}

impl Controller {
    async fn sync(&self, key: &Key) -> anyhow::Result<Option<Duration>> {
        let (ns, name) = key;
        let Some(cj) = self.cron_jobs.get(&ObjectRef::new(name).within(ns)) else {
            return Ok(None);
        };
        if cj.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        let uid = cj.uid().unwrap_or_default();
        let reference = ObjectReference {
            api_version: Some("batch/v1".into()),
            kind: Some("CronJob".into()),
            name: Some(name.clone()),
            namespace: Some(ns.clone()),
            uid: Some(uid.clone()),
            ..Default::default()
        };
        let old = cj.status.clone().unwrap_or_default();
        let mut status = old.clone();
        let children: Vec<Arc<Job>> = self
            .jobs
            .state()
            .into_iter()
            .filter(|j| j.namespace().as_deref() == Some(ns.as_str()))
            .filter(|j| pods::controller_of(&j.metadata).is_some_and(|r| r.uid == uid))
            .collect();
        let jobs_api: Api<Job> = Api::namespaced(self.client.clone(), ns);

        // Reconcile the active list with the Jobs as they are.
        let in_active = |s: &CronJobStatus, j: &Job| {
            s.active
                .iter()
                .flatten()
                .any(|r| r.uid.is_some() && r.uid == j.metadata.uid)
        };
        for j in &children {
            let done = finished(j);
            if !in_active(&status, j) && done.is_none() {
                self.events
                    .warning(
                        &reference,
                        "UnexpectedJob",
                        &format!(
                            "Saw a job that the controller did not create or forgot: {}",
                            j.name_any()
                        ),
                    )
                    .await;
            } else if let Some(kind) = done {
                if in_active(&status, j) {
                    status
                        .active
                        .get_or_insert_with(Vec::new)
                        .retain(|r| r.uid != j.metadata.uid);
                    self.events
                        .normal(
                            &reference,
                            "SawCompletedJob",
                            &format!("Saw completed job: {}, condition: {kind}", j.name_any()),
                        )
                        .await;
                }
                if kind == "Complete" {
                    let at = j.status.as_ref().and_then(|s| s.completion_time.clone());
                    if at.as_ref().map(|t| t.0) > status.last_successful_time.as_ref().map(|t| t.0)
                    {
                        status.last_successful_time = at;
                    }
                }
            }
        }
        let active_refs = status.active.clone().unwrap_or_default();
        for r in active_refs {
            if children.iter().any(|j| j.metadata.uid == r.uid) {
                continue;
            }
            let name = r.name.clone().unwrap_or_default();
            let gone = match jobs_api.get_opt(&name).await? {
                None => true,
                Some(j) => j.metadata.uid != r.uid,
            };
            if gone {
                self.events
                    .normal(
                        &reference,
                        "MissingJob",
                        &format!("Active job went missing: {name}"),
                    )
                    .await;
                status
                    .active
                    .get_or_insert_with(Vec::new)
                    .retain(|a| a.uid != r.uid);
            }
        }
        self.cleanup_history(&cj, &children, &jobs_api, &reference)
            .await;

        let result = self
            .schedule(&cj, &mut status, &children, &jobs_api, &reference)
            .await;
        if status.active.as_ref().is_some_and(Vec::is_empty) {
            status.active = None;
        }
        if status != old {
            let mut body = (*cj).clone();
            body.status = Some(status);
            let api: Api<CronJob> = Api::namespaced(self.client.clone(), ns);
            match api
                .replace_status(name, &PostParams::default(), serde_json::to_vec(&body)?)
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => {
                    return Ok(Some(Duration::from_millis(200)))
                }
                Err(e) => return Err(e.into()),
            }
        }
        result
    }

    /// Starts the run that is due, if any; returns when to look again.
    async fn schedule(
        &self,
        cj: &CronJob,
        status: &mut CronJobStatus,
        children: &[Arc<Job>],
        jobs_api: &Api<Job>,
        reference: &ObjectReference,
    ) -> anyhow::Result<Option<Duration>> {
        let spec = cj.spec.clone().unwrap_or_default();
        let tz = match spec.time_zone.as_deref() {
            None => *LOCAL_ZONE,
            Some(name) => match orca_api::cron::time_zone(name) {
                Ok(tz) => tz,
                Err(e) => {
                    self.events
                        .warning(
                            reference,
                            "UnknownTimeZone",
                            &format!("invalid timeZone: {name:?}: {e}"),
                        )
                        .await;
                    return Ok(None);
                }
            },
        };
        let schedule = match Schedule::parse(&spec.schedule) {
            Ok(s) => s,
            Err(e) => {
                self.events
                    .warning(
                        reference,
                        "UnparseableSchedule",
                        &format!("unparseable schedule: {:?} : {e}", spec.schedule),
                    )
                    .await;
                return Ok(None);
            }
        };
        if spec.suspend == Some(true) {
            return Ok(None);
        }
        let now = Utc::now();
        let until_next = |after: DateTime<Utc>| {
            schedule
                .next(after, tz)
                .map(|t| (t - Utc::now()).to_std().unwrap_or_default() + Duration::from_millis(100))
        };
        let earliest = status
            .last_schedule_time
            .as_ref()
            .map(|t| t.0)
            .or(cj.creation_timestamp().map(|t| t.0))
            .unwrap_or(now);
        let (due, missed) =
            missed_times(&schedule, tz, earliest, spec.starting_deadline_seconds, now);
        if missed > TOO_MANY_MISSED {
            self.events
                .warning(reference, "TooManyMissedTimes", "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew")
                .await;
        }
        let Some(at) = due else {
            return Ok(until_next(now));
        };
        if let Some(d) = spec.starting_deadline_seconds {
            if at + chrono::Duration::seconds(d) < now {
                self.events
                    .warning(
                        reference,
                        "MissSchedule",
                        &format!("Missed scheduled time to start a job: {}", rfc1123(at)),
                    )
                    .await;
                return Ok(until_next(now));
            }
        }
        let job = job_for(cj, at, tz);
        let job_name = job.metadata.name.clone().unwrap_or_default();
        let already = status
            .active
            .iter()
            .flatten()
            .any(|r| r.name.as_deref() == Some(job_name.as_str()))
            || status.last_schedule_time.as_ref().map(|t| t.0) == Some(at);
        if already {
            return Ok(until_next(now));
        }
        let running: Vec<ObjectReference> = status.active.clone().unwrap_or_default();
        match spec.concurrency_policy.as_deref() {
            Some("Forbid") if !running.is_empty() => {
                self.events
                    .normal(reference, "JobAlreadyActive", "Not starting job because prior execution is running and concurrency policy is Forbid")
                    .await;
                return Ok(until_next(now));
            }
            Some("Replace") => {
                for r in &running {
                    let name = r.name.clone().unwrap_or_default();
                    match jobs_api
                        .delete(
                            &name,
                            &DeleteParams {
                                propagation_policy: Some(PropagationPolicy::Background),
                                ..Default::default()
                            },
                        )
                        .await
                    {
                        Ok(_) => {
                            self.events
                                .normal(
                                    reference,
                                    "SuccessfulDelete",
                                    &format!("Deleted job {name}"),
                                )
                                .await;
                            status
                                .active
                                .get_or_insert_with(Vec::new)
                                .retain(|a| a.uid != r.uid);
                        }
                        Err(kube::Error::Api(s)) if s.code == 404 => {
                            status
                                .active
                                .get_or_insert_with(Vec::new)
                                .retain(|a| a.uid != r.uid);
                        }
                        Err(e) => {
                            self.events
                                .warning(reference, "FailedDelete", &format!("Deleted job: {e}"))
                                .await;
                            return Ok(Some(Duration::from_secs(1)));
                        }
                    }
                }
            }
            _ => {}
        }
        match jobs_api.create(&PostParams::default(), &job).await {
            Ok(created) => {
                self.events
                    .normal(
                        reference,
                        "SuccessfulCreate",
                        &format!("Created job {job_name}"),
                    )
                    .await;
                status
                    .active
                    .get_or_insert_with(Vec::new)
                    .push(job_ref(&created));
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                // Created before a status write was lost: it is this run.
                if let Some(j) = children.iter().find(|j| j.name_any() == job_name) {
                    if finished(j).is_none() {
                        status.active.get_or_insert_with(Vec::new).push(job_ref(j));
                    }
                }
            }
            Err(e) => {
                let msg = match &e {
                    kube::Error::Api(s) => s.message.clone(),
                    other => other.to_string(),
                };
                self.events
                    .warning(
                        reference,
                        "FailedCreate",
                        &format!("Error creating job: {msg}"),
                    )
                    .await;
                return Ok(Some(Duration::from_secs(1)));
            }
        }
        status.last_schedule_time = Some(Time(at));
        Ok(until_next(now))
    }

    /// Deletes the oldest finished Jobs beyond the history limits.
    async fn cleanup_history(
        &self,
        cj: &CronJob,
        children: &[Arc<Job>],
        jobs_api: &Api<Job>,
        reference: &ObjectReference,
    ) {
        let spec = cj.spec.clone().unwrap_or_default();
        for (kind, limit) in [
            ("Complete", spec.successful_jobs_history_limit),
            ("Failed", spec.failed_jobs_history_limit),
        ] {
            let Some(limit) = limit else { continue };
            let mut done: Vec<&Arc<Job>> = children
                .iter()
                .filter(|j| finished(j) == Some(kind) && j.metadata.deletion_timestamp.is_none())
                .collect();
            let excess = done.len().saturating_sub(limit.max(0) as usize);
            if excess == 0 {
                continue;
            }
            done.sort_by_key(|j| {
                (
                    j.status
                        .as_ref()
                        .and_then(|s| s.start_time.clone())
                        .map(|t| t.0),
                    j.name_any(),
                )
            });
            for j in done.into_iter().take(excess) {
                let name = j.name_any();
                let params = DeleteParams {
                    propagation_policy: Some(PropagationPolicy::Background),
                    ..Default::default()
                };
                match jobs_api.delete(&name, &params).await {
                    Ok(_) => {
                        self.events
                            .normal(
                                reference,
                                "SuccessfulDelete",
                                &format!("Deleted job {name}"),
                            )
                            .await
                    }
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(e) => {
                        self.events
                            .warning(reference, "FailedDelete", &format!("Deleted job: {e}"))
                            .await
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn only_the_most_recent_missed_time_runs() {
        let every_5 = Schedule::parse("*/5 * * * *").unwrap();
        let (due, n) = missed_times(
            &every_5,
            chrono_tz::UTC,
            at("2026-01-01T10:00:00Z"),
            None,
            at("2026-01-01T10:17:30Z"),
        );
        assert_eq!((due, n), (Some(at("2026-01-01T10:15:00Z")), 3));
        let (due, n) = missed_times(
            &every_5,
            chrono_tz::UTC,
            at("2026-01-01T10:15:00Z"),
            None,
            at("2026-01-01T10:17:30Z"),
        );
        assert_eq!((due, n), (None, 0));
    }

    #[test]
    fn the_starting_deadline_bounds_the_look_back() {
        let hourly = Schedule::parse("0 * * * *").unwrap();
        // Created long ago, never run: only times within the deadline count.
        let (due, _) = missed_times(
            &hourly,
            chrono_tz::UTC,
            at("2025-01-01T00:00:00Z"),
            Some(600),
            at("2026-01-01T10:30:00Z"),
        );
        assert_eq!(due, None);
        let (due, n) = missed_times(
            &hourly,
            chrono_tz::UTC,
            at("2025-01-01T00:00:00Z"),
            None,
            at("2026-01-01T10:30:00Z"),
        );
        assert_eq!(due, Some(at("2026-01-01T10:00:00Z")));
        assert!(n > TOO_MANY_MISSED);
    }

    #[test]
    fn a_run_is_named_by_its_minute_and_stamped_in_its_zone() {
        let cj: CronJob = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "tick", "namespace": "default", "uid": "u1"},
            "spec": {"schedule": "30 9 * * *", "timeZone": "Asia/Kolkata",
                "jobTemplate": {"metadata": {"labels": {"app": "tick"}},
                    "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}}
        }))
        .unwrap();
        let tz = orca_api::cron::time_zone("Asia/Kolkata").unwrap();
        let schedule = Schedule::parse("30 9 * * *").unwrap();
        let run = schedule.next(at("2026-01-01T00:00:00Z"), tz).unwrap();
        assert_eq!(run, at("2026-01-01T04:00:00Z"));
        let job = job_for(&cj, run, tz);
        assert_eq!(job.name_any(), format!("tick-{}", run.timestamp() / 60));
        assert_eq!(
            job.annotations()[SCHEDULED_TIMESTAMP],
            "2026-01-01T09:30:00+05:30"
        );
        assert_eq!(job.labels()["app"], "tick");
        let owner = &job.owner_references()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.controller),
            ("CronJob", Some(true))
        );
    }

    #[test]
    fn schedules_without_a_zone_use_the_controllers_own() {
        assert_eq!(
            local_zone(Some(":Asia/Tokyo"), None),
            chrono_tz::Asia::Tokyo
        );
        assert_eq!(
            local_zone(Some(""), Some("Europe/Paris".into())),
            chrono_tz::UTC
        );
        assert_eq!(
            local_zone(None, Some("Europe/Paris".into())),
            chrono_tz::Europe::Paris
        );
        assert_eq!(local_zone(None, None), chrono_tz::UTC);
    }
}
