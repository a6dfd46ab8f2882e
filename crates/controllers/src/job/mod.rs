//! The Job controller (batch/v1), as kube-controller-manager's: runs pods
//! until `completions` succeed, at most `parallelism` at a time; replaces
//! failed pods after the pod-failure back-off (10 s doubling, at most six
//! minutes) until `backoffLimit` failures, fails a Job active longer than
//! `activeDeadlineSeconds`, gives Indexed Jobs' pods their completion index
//! (annotation, label, `JOB_COMPLETION_INDEX`, hostname `<job>-<index>`),
//! deletes the active pods of a suspended Job and starts again on resume.
//! Its `podFailurePolicy`, `successPolicy` and `backoffLimitPerIndex` are
//! read in [`policy`].
//!
//! Finished pods are counted once and never lost, as Kubernetes does with
//! the `batch.kubernetes.io/job-tracking` finalizer every Job pod carries:
//! a finished pod's uid is first written to `status.uncountedTerminatedPods`,
//! then its finalizer is removed, then it moves into the `succeeded` or
//! `failed` count. A Job reaching its end first gets the interim condition
//! (`SuccessCriteriaMet` or `FailureTarget`), its remaining pods are
//! deleted, and once none is left the terminal one (`Complete` or `Failed`).
//!
//! Reads: jobs, pods. Writes: pods (create, delete, patch finalizers),
//! jobs/status, events (Kubernetes' `system:controller:job-controller`).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::{
    EnvVar, EnvVarSource, ObjectFieldSelector, ObjectReference, Pod, PodTemplateSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};

use crate::events::Recorder;
use crate::pods::{self, Expectations};
use crate::wiring::{key_of, Key, Wiring};

mod policy;

const NAME: &str = "job-controller";
/// Syncs running at once (--concurrent-job-syncs).
const WORKERS: usize = 5;
/// Pods created in one sync at most.
const BURST: usize = 500;
pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";
const INDEX_ENV: &str = "JOB_COMPLETION_INDEX";
const BACKOFF_BASE: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(360);

/// Failures since the last success and when the latest was seen, per Job
/// uid (kube-controller-manager keeps this in memory too).
#[derive(Clone, Copy)]
struct Backoff {
    failures: u32,
    last: DateTime<Utc>,
}

struct Controller {
    client: Client,
    jobs: Store<Job>,
    pods: Store<Pod>,
    expectations: Expectations,
    backoff: Mutex<HashMap<String, Backoff>>,
    events: Recorder,
}

pub async fn run(clients: &crate::Clients) -> anyhow::Result<()> {
    let writer = clients.controller(NAME);
    let mut w = Wiring::new(NAME, clients.informers());
    let jobs = w.watch(|j: &Job| Some(key_of(j)));
    let pods = w.watch(|p: &Pod| {
        pods::controller_of(&p.metadata)
            .filter(|r| r.api_version == "batch/v1" && r.kind == "Job")
            .map(|r| (p.namespace().unwrap_or_default(), r.name.clone()))
    });
    let c = Arc::new(Controller {
        client: writer.clone(),
        jobs,
        pods,
        expectations: Expectations::default(),
        backoff: Mutex::default(),
        events: Recorder::new(writer, NAME),
    });
    w.run(c, WORKERS, |c, key| async move { c.sync(&key).await })
        .await;
    Ok(())
}

fn reference(job: &Job) -> ObjectReference {
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

fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn has_finalizer(p: &Pod) -> bool {
    p.finalizers().iter().any(|f| f == TRACKING_FINALIZER)
}

pub fn completion_index(p: &Pod) -> Option<i32> {
    p.annotations().get(COMPLETION_INDEX)?.parse().ok()
}

fn condition_true(s: &JobStatus, type_: &str) -> bool {
    s.conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == type_ && c.status == "True")
}

fn condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: DateTime<Utc>,
) -> JobCondition {
    JobCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// Sets a condition, keeping its transition time when its status holds.
fn set_condition(s: &mut JobStatus, c: JobCondition) {
    let conds = s.conditions.get_or_insert_with(Vec::new);
    match conds.iter_mut().find(|o| o.type_ == c.type_) {
        Some(o) if o.status == c.status => {
            o.reason = c.reason;
            o.message = c.message;
        }
        Some(o) => *o = c,
        None => conds.push(c),
    }
}

/// `1,3-5`: indexes as Kubernetes writes `completedIndexes`.
pub fn format_indexes(idx: &BTreeSet<i32>) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut iter = idx.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end = iter.next().unwrap_or(end);
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    out.join(",")
}

pub fn parse_indexes(s: &str) -> BTreeSet<i32> {
    let mut out = BTreeSet::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        let mut ends = part.splitn(2, '-').map(|n| n.parse::<i32>().ok());
        match (ends.next().flatten(), ends.next()) {
            (Some(a), None) => {
                out.insert(a);
            }
            (Some(a), Some(Some(b))) => out.extend(a..=b),
            _ => {}
        }
    }
    out
}

/// The delay before a replacement after `failures` consecutive failures.
fn backoff_delay(failures: u32) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    let factor = 1u32 << (failures - 1).min(16);
    (BACKOFF_BASE * factor).min(BACKOFF_MAX)
}

/// What one sync knows about a Job's pods.
struct PodsView {
    /// Every pod the Job owns, finished ones included.
    all: Vec<Arc<Pod>>,
    active: Vec<Arc<Pod>>,
    terminating: i32,
    /// Finished pods carrying the finalizer, not yet in uncounted.
    new_succeeded: Vec<Arc<Pod>>,
    new_failed: Vec<Arc<Pod>>,
    /// Pods the Job stops itself (suspended, or succeeded): their
    /// finalizer goes without a count.
    release: Vec<Arc<Pod>>,
}

impl Controller {
    async fn sync(&self, key: &Key) -> anyhow::Result<Option<Duration>> {
        let (ns, name) = key;
        let job = self.jobs.get(&ObjectRef::new(name).within(ns));
        let pod_api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let in_ns: Vec<Arc<Pod>> = self
            .pods
            .state()
            .into_iter()
            .filter(|p| p.namespace().as_deref() == Some(ns.as_str()))
            .collect();
        let live_uid = job
            .as_ref()
            .filter(|j| j.metadata.deletion_timestamp.is_none())
            .and_then(|j| j.uid());
        // Pods of a Job that is gone or being deleted keep nothing to count:
        // their finalizers go so that they can be deleted.
        let stale: Vec<&Arc<Pod>> = in_ns
            .iter()
            .filter(|p| has_finalizer(p))
            .filter(|p| {
                pods::controller_of(&p.metadata).is_some_and(|r| {
                    r.kind == "Job" && &r.name == name && Some(&r.uid) != live_uid.as_ref()
                })
            })
            .collect();
        for p in stale {
            self.remove_finalizer(&pod_api, p).await?;
        }
        let Some(job) = job.clone().filter(|_| live_uid.is_some()) else {
            if let Some(uid) = job.and_then(|j| j.uid()) {
                self.expectations.forget(&uid);
                self.lock_backoff().remove(&uid);
            }
            return Ok(None);
        };
        let uid = live_uid.unwrap_or_default();
        let owned: Vec<Arc<Pod>> = in_ns
            .into_iter()
            .filter(|p| pods::controller_of(&p.metadata).is_some_and(|r| r.uid == uid))
            .collect();
        let status = job.status.clone().unwrap_or_default();
        if condition_true(&status, "Complete") || condition_true(&status, "Failed") {
            for p in owned.iter().filter(|p| has_finalizer(p)) {
                self.remove_finalizer(&pod_api, p).await?;
            }
            return Ok(None);
        }
        let satisfied = self.expectations.satisfied(&uid, |n| {
            owned
                .iter()
                .find(|p| p.metadata.name.as_deref() == Some(n))
                .map(|p| p.metadata.deletion_timestamp.is_some())
        });
        if !satisfied {
            return Ok(None);
        }
        let mut job = (*job).clone();
        let view = self.view(&job, &owned);

        // Count finished pods: uncounted first, then finalizers off, then counts.
        if !view.new_succeeded.is_empty() || !view.new_failed.is_empty() {
            let mut s = job.status.clone().unwrap_or_default();
            let u = s
                .uncounted_terminated_pods
                .get_or_insert_with(Default::default);
            u.succeeded
                .get_or_insert_with(Vec::new)
                .extend(view.new_succeeded.iter().filter_map(|p| p.uid()));
            u.failed
                .get_or_insert_with(Vec::new)
                .extend(view.new_failed.iter().filter_map(|p| p.uid()));
            job = self.write_status(&job, s).await?;
        }
        let uncounted = job
            .status
            .as_ref()
            .and_then(|s| s.uncounted_terminated_pods.clone())
            .unwrap_or_default();
        let mut counted_succeeded = Vec::new();
        let mut counted_failed = Vec::new();
        for (uids, counted) in [
            (&uncounted.succeeded, &mut counted_succeeded),
            (&uncounted.failed, &mut counted_failed),
        ] {
            for u in uids.iter().flatten() {
                match owned.iter().find(|p| p.uid().as_ref() == Some(u)) {
                    Some(p) if has_finalizer(p) => {
                        if self.remove_finalizer(&pod_api, p).await.is_ok() {
                            counted.push((u.clone(), Some(p.clone())));
                        }
                    }
                    p => counted.push((u.clone(), p.cloned())),
                }
            }
        }
        for p in &view.release {
            self.remove_finalizer(&pod_api, p).await?;
        }
        self.manage(
            job,
            view,
            uncounted,
            counted_succeeded,
            counted_failed,
            &pod_api,
        )
        .await
    }

    fn lock_backoff(&self) -> std::sync::MutexGuard<'_, HashMap<String, Backoff>> {
        self.backoff.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn view(&self, job: &Job, owned: &[Arc<Pod>]) -> PodsView {
        let spec = job.spec.clone().unwrap_or_default();
        let status = job.status.clone().unwrap_or_default();
        let uncounted = status.uncounted_terminated_pods.clone().unwrap_or_default();
        let listed = |l: &Option<Vec<String>>, p: &Pod| {
            p.uid().is_some_and(|u| l.iter().flatten().any(|x| *x == u))
        };
        // With podReplacementPolicy Failed a pod counts only once Failed;
        // otherwise a terminating pod counts as failed at once (an orphan
        // may never reach a phase), unless the Job stops its pods itself.
        let stopping = spec.suspend == Some(true) || condition_true(&status, "SuccessCriteriaMet");
        let terminating_fails =
            spec.pod_replacement_policy.as_deref() != Some("Failed") && !stopping;
        let mut v = PodsView {
            all: owned.to_vec(),
            active: Vec::new(),
            terminating: 0,
            new_succeeded: Vec::new(),
            new_failed: Vec::new(),
            release: Vec::new(),
        };
        for p in owned {
            let deleting = p.metadata.deletion_timestamp.is_some();
            match phase(p) {
                "Succeeded" => {
                    if has_finalizer(p) && !listed(&uncounted.succeeded, p) {
                        v.new_succeeded.push(p.clone());
                    }
                }
                "Failed" => {
                    if has_finalizer(p) && !listed(&uncounted.failed, p) {
                        // Ignored failures lose their finalizer uncounted.
                        match policy::judge(spec.pod_failure_policy.as_ref(), p) {
                            policy::Verdict::Ignore => v.release.push(p.clone()),
                            _ => v.new_failed.push(p.clone()),
                        }
                    }
                }
                _ if deleting => {
                    v.terminating += 1;
                    if has_finalizer(p) && !listed(&uncounted.failed, p) {
                        if terminating_fails {
                            v.new_failed.push(p.clone());
                        } else if stopping {
                            v.release.push(p.clone());
                        }
                    }
                }
                _ => v.active.push(p.clone()),
            }
        }
        v
    }

    async fn remove_finalizer(&self, api: &Api<Pod>, p: &Pod) -> anyhow::Result<()> {
        let kept: Vec<&String> = p
            .finalizers()
            .iter()
            .filter(|f| *f != TRACKING_FINALIZER)
            .collect();
        // None left: the field goes, as Kubernetes' omitempty shows it.
        let finalizers = if kept.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::json!(kept)
        };
        let patch = serde_json::json!({"metadata": {
            "finalizers": finalizers, "resourceVersion": p.metadata.resource_version}});
        match api
            .patch(
                &p.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// After counting: decides the Job's fate, creates or deletes pods and
    /// writes the status.
    async fn manage(
        &self,
        job: Job,
        view: PodsView,
        uncounted: UncountedTerminatedPods,
        counted_succeeded: Vec<(String, Option<Arc<Pod>>)>,
        counted_failed: Vec<(String, Option<Arc<Pod>>)>,
        pod_api: &Api<Pod>,
    ) -> anyhow::Result<Option<Duration>> {
        let now = Utc::now();
        let uid = job.uid().unwrap_or_default();
        let spec = job.spec.clone().unwrap_or_default();
        let old = job.status.clone().unwrap_or_default();
        let mut s = old.clone();
        let reference = reference(&job);
        let indexed = spec.completion_mode.as_deref() == Some("Indexed");
        let suspended = spec.suspend == Some(true);

        // Move the counted uids out of uncounted into the counts.
        let remaining = |l: &Option<Vec<String>>, done: &[(String, Option<Arc<Pod>>)]| {
            l.iter()
                .flatten()
                .filter(|u| !done.iter().any(|(d, _)| d == *u))
                .cloned()
                .collect::<Vec<_>>()
        };
        s.uncounted_terminated_pods = Some(UncountedTerminatedPods {
            succeeded: Some(remaining(&uncounted.succeeded, &counted_succeeded))
                .filter(|v| !v.is_empty()),
            failed: Some(remaining(&uncounted.failed, &counted_failed)).filter(|v| !v.is_empty()),
        });
        let mut completed: BTreeSet<i32> =
            parse_indexes(old.completed_indexes.as_deref().unwrap_or(""));
        for (_, p) in &counted_succeeded {
            if let Some(i) = p.as_deref().and_then(completion_index) {
                completed.insert(i);
            }
        }
        if indexed {
            let n = spec.completions.unwrap_or(0);
            completed.retain(|i| *i < n);
            s.succeeded = Some(completed.len() as i32);
            s.completed_indexes = Some(format_indexes(&completed));
        } else {
            s.succeeded = Some(old.succeeded.unwrap_or(0) + counted_succeeded.len() as i32);
        }
        s.failed = Some(old.failed.unwrap_or(0) + counted_failed.len() as i32);
        let succeeded = s.succeeded.unwrap_or(0);
        let failed = s.failed.unwrap_or(0);
        {
            let mut b = self.lock_backoff();
            if !counted_succeeded.is_empty() {
                b.remove(&uid);
            }
            if !counted_failed.is_empty() {
                let e = b.entry(uid.clone()).or_insert(Backoff {
                    failures: 0,
                    last: now,
                });
                e.failures += counted_failed.len() as u32;
                e.last = now;
            }
        }

        // Suspension and start time.
        let was_suspended = condition_true(&old, "Suspended");
        if suspended && !was_suspended {
            set_condition(
                &mut s,
                condition("Suspended", "True", "JobSuspended", "Job suspended", now),
            );
            s.start_time = None;
            self.events
                .normal(&reference, "Suspended", "Job suspended")
                .await;
        } else if !suspended && was_suspended {
            set_condition(
                &mut s,
                condition("Suspended", "False", "JobResumed", "Job resumed", now),
            );
            self.events
                .normal(&reference, "Resumed", "Job resumed")
                .await;
        }
        if !suspended && s.start_time.is_none() {
            s.start_time = Some(Time(now));
        }

        // Has the Job reached its end?
        let restarts: i32 = if spec
            .template
            .spec
            .as_ref()
            .and_then(|p| p.restart_policy.as_deref())
            == Some("OnFailure")
        {
            view.active
                .iter()
                .flat_map(|p| {
                    p.status
                        .iter()
                        .flat_map(|s| s.container_statuses.iter().flatten())
                })
                .map(|c| c.restart_count)
                .sum()
        } else {
            0
        };
        let mut next: Option<Duration> = None;
        let mut requeue = |d: Duration| next = Some(next.map_or(d, |n: Duration| n.min(d)));
        let completions = spec.completions.unwrap_or(0);
        let per_index = indexed && spec.backoff_limit_per_index.is_some();
        let mut failed_indexes = parse_indexes(old.failed_indexes.as_deref().unwrap_or(""));
        if per_index {
            failed_indexes.extend(
                counted_failed
                    .iter()
                    .filter_map(|(_, p)| p.as_deref())
                    .filter(|p| policy::index_failed(&job, p))
                    .filter_map(completion_index)
                    .filter(|i| *i < completions),
            );
            s.failed_indexes = Some(format_indexes(&failed_indexes));
        }
        // Kubernetes' order: the failure policy, the back-off limit, the
        // deadline, failed indexes; then the success policy, completions.
        if !condition_true(&s, "FailureTarget") && !condition_true(&s, "SuccessCriteriaMet") {
            let done = match spec.completions {
                Some(c) => succeeded >= c,
                None => succeeded > 0 && view.active.is_empty(),
            };
            let deadline = spec
                .active_deadline_seconds
                .filter(|_| !suspended)
                .and_then(|secs| {
                    let start = s.start_time.as_ref()?.0;
                    Some(start + chrono::Duration::seconds(secs))
                });
            let failure: Option<(&str, String)> =
                if let Some(msg) = policy::fail_job_message(&job, view.all.iter().map(|p| &**p)) {
                    Some(("PodFailurePolicy", msg))
                } else if failed + restarts > spec.backoff_limit.unwrap_or(6) {
                    Some((
                        "BackoffLimitExceeded",
                        "Job has reached the specified backoff limit".into(),
                    ))
                } else if deadline.is_some_and(|at| at <= now) {
                    Some((
                        "DeadlineExceeded",
                        "Job was active longer than specified deadline".into(),
                    ))
                } else if per_index
                    && spec
                        .max_failed_indexes
                        .is_some_and(|m| failed_indexes.len() as i32 > m)
                {
                    Some((
                        "MaxFailedIndexesExceeded",
                        "Job has exceeded the specified maximal number of failed indexes".into(),
                    ))
                } else if per_index
                    && !failed_indexes.is_empty()
                    && (failed_indexes.len() + completed.len()) as i32 >= completions
                {
                    Some(("FailedIndexes", "Job has failed indexes".into()))
                } else {
                    None
                };
            let success_policy = indexed
                .then(|| {
                    policy::success_policy_met(
                        spec.success_policy.as_ref(),
                        completions,
                        &completed,
                    )
                })
                .flatten();
            if let Some((reason, message)) = failure {
                set_condition(
                    &mut s,
                    condition("FailureTarget", "True", reason, &message, now),
                );
            } else if let Some(message) = success_policy {
                set_condition(
                    &mut s,
                    condition("SuccessCriteriaMet", "True", "SuccessPolicy", &message, now),
                );
            } else if done {
                set_condition(
                    &mut s,
                    condition(
                        "SuccessCriteriaMet",
                        "True",
                        "CompletionsReached",
                        "Reached expected number of succeeded pods",
                        now,
                    ),
                );
            } else if let Some(at) = deadline {
                requeue((at - now).to_std().unwrap_or_default() + Duration::from_millis(50));
            }
        }
        let finishing =
            condition_true(&s, "FailureTarget") || condition_true(&s, "SuccessCriteriaMet");

        // Pods: none while suspended or finishing, else up to parallelism.
        let mut active = view.active.clone();
        if finishing || suspended {
            self.delete_pods(&job, &active, pod_api).await;
            active.clear();
        } else {
            let settled = completed.len() + failed_indexes.len();
            let wanted = self.wanted_active(&spec, succeeded, settled, &active);
            if (active.len() as i32) > wanted {
                let mut ranked: Vec<(&Pod, usize)> =
                    active.iter().map(|p| (p.as_ref(), 0)).collect();
                pods::deletion_order(&mut ranked, now);
                let surplus: Vec<Arc<Pod>> = ranked
                    .iter()
                    .take(active.len() - wanted as usize)
                    .map(|(p, _)| Arc::new((*p).clone()))
                    .collect();
                self.delete_pods(&job, &surplus, pod_api).await;
                active.retain(|p| !surplus.iter().any(|x| x.uid() == p.uid()));
            } else if (active.len() as i32) < wanted {
                let n = (wanted as usize - active.len()).min(BURST);
                let slots = if per_index {
                    // Each index backs off on its own failures.
                    let busy: BTreeSet<i32> =
                        active.iter().filter_map(|p| completion_index(p)).collect();
                    let mut slots = Vec::new();
                    for i in (0..completions).filter(|i| {
                        !completed.contains(i) && !failed_indexes.contains(i) && !busy.contains(i)
                    }) {
                        let last = policy::last_failed(view.all.iter().map(|p| &**p), i);
                        let wait = last.and_then(|l| {
                            let until = policy::finished_at(l)
                                + chrono::Duration::from_std(backoff_delay(
                                    policy::index_failures(l),
                                ))
                                .ok()?;
                            (until > now).then(|| (until - now).to_std().unwrap_or_default())
                        });
                        match wait {
                            Some(d) => requeue(d + Duration::from_millis(50)),
                            None if slots.len() < n => slots.push(Slot {
                                index: Some(i),
                                failure_counts: Some(policy::replacement_counts(&job, last)),
                            }),
                            None => {}
                        }
                    }
                    Some(slots)
                } else {
                    let wait = self.lock_backoff().get(&uid).and_then(|b| {
                        let until =
                            b.last + chrono::Duration::from_std(backoff_delay(b.failures)).ok()?;
                        (until > now).then(|| (until - now).to_std().unwrap_or_default())
                    });
                    match wait {
                        Some(d) => {
                            requeue(d + Duration::from_millis(50));
                            None
                        }
                        None if indexed => {
                            let busy: BTreeSet<i32> =
                                active.iter().filter_map(|p| completion_index(p)).collect();
                            Some(
                                (0..completions)
                                    .filter(|i| !completed.contains(i) && !busy.contains(i))
                                    .take(n)
                                    .map(|i| Slot {
                                        index: Some(i),
                                        failure_counts: None,
                                    })
                                    .collect(),
                            )
                        }
                        None => Some(
                            (0..n)
                                .map(|_| Slot {
                                    index: None,
                                    failure_counts: None,
                                })
                                .collect(),
                        ),
                    }
                };
                if let Some(slots) = slots.filter(|s| !s.is_empty()) {
                    if let Err(msg) = self.create_pods(&job, &slots, pod_api).await {
                        tracing::debug!(job = job.name_any(), "creating pods failed: {msg}");
                        requeue(Duration::from_secs(1));
                    }
                }
            }
        }

        // The terminal condition waits until no pod of the Job runs.
        let unfinished = s.uncounted_terminated_pods.as_ref().is_some_and(|u| {
            u.succeeded.as_ref().is_some_and(|v| !v.is_empty())
                || u.failed.as_ref().is_some_and(|v| !v.is_empty())
        });
        let mut terminal_event = None;
        if finishing && active.is_empty() && view.terminating == 0 && !unfinished {
            let target = s
                .conditions
                .iter()
                .flatten()
                .find(|c| {
                    c.status == "True"
                        && matches!(c.type_.as_str(), "FailureTarget" | "SuccessCriteriaMet")
                })
                .cloned();
            if let Some(t) = target {
                let reason = t.reason.clone().unwrap_or_default();
                let message = t.message.clone().unwrap_or_default();
                if t.type_ == "SuccessCriteriaMet" {
                    set_condition(
                        &mut s,
                        condition("Complete", "True", &reason, &message, now),
                    );
                    s.completion_time = Some(Time(now));
                    terminal_event = Some((
                        "Normal",
                        "Completed".to_string(),
                        "Job completed".to_string(),
                    ));
                } else {
                    set_condition(&mut s, condition("Failed", "True", &reason, &message, now));
                    terminal_event = Some(("Warning", reason, message));
                }
            }
        }

        s.active = Some(active.len() as i32).filter(|n| *n > 0);
        s.ready = Some(active.iter().filter(|p| pods::is_ready(p)).count() as i32);
        s.terminating = Some(view.terminating);
        s.succeeded = Some(succeeded).filter(|n| *n > 0);
        s.failed = Some(failed).filter(|n| *n > 0);
        if s.uncounted_terminated_pods.is_none() {
            s.uncounted_terminated_pods = Some(Default::default());
        }
        if s != old {
            self.write_status(&job, s).await?;
        }
        if let Some((type_, reason, message)) = terminal_event {
            if type_ == "Normal" {
                self.events.normal(&reference, &reason, &message).await;
            } else {
                self.events.warning(&reference, &reason, &message).await;
            }
        }
        Ok(next)
    }

    /// How many pods should run now (`wantActive`).
    fn wanted_active(
        &self,
        spec: &k8s_openapi::api::batch::v1::JobSpec,
        succeeded: i32,
        settled_indexes: usize,
        active: &[Arc<Pod>],
    ) -> i32 {
        let parallelism = spec.parallelism.unwrap_or(1);
        match spec.completions {
            // A work queue: once one pod succeeded no new pod starts.
            None if succeeded > 0 => active.len() as i32,
            None => parallelism,
            Some(c) if spec.completion_mode.as_deref() == Some("Indexed") => {
                parallelism.min(c - settled_indexes as i32).max(0)
            }
            Some(c) => parallelism.min(c - succeeded).max(0),
        }
    }

    async fn create_pods(&self, job: &Job, slots: &[Slot], api: &Api<Pod>) -> Result<(), String> {
        let uid = job.uid().unwrap_or_default();
        let name = job.name_any();
        let ns = job.namespace().unwrap_or_default();
        let template = job
            .spec
            .as_ref()
            .map(|s| s.template.clone())
            .unwrap_or_default();
        let me = pods::controller_ref("batch/v1", "Job", &name, &uid);
        let reference = reference(job);
        let mut made = 0;
        let mut batch = 1;
        while made < slots.len() {
            let chunk = &slots[made..(made + batch).min(slots.len())];
            let creates = chunk.iter().map(|slot| {
                let pod = job_pod(&template, &ns, &name, slot, me.clone());
                async move { api.create(&PostParams::default(), &pod).await }
            });
            let mut error = None;
            for r in futures::future::join_all(creates).await {
                match r {
                    Ok(p) => {
                        self.expectations.created(&uid, &p.name_any());
                        self.events
                            .normal(
                                &reference,
                                "SuccessfulCreate",
                                &format!("Created pod: {}", p.name_any()),
                            )
                            .await;
                    }
                    Err(e) => error = Some(e),
                }
            }
            if let Some(e) = error {
                let msg = match &e {
                    kube::Error::Api(s) => s.message.clone(),
                    other => other.to_string(),
                };
                self.events
                    .warning(
                        &reference,
                        "FailedCreate",
                        &format!("Error creating: {msg}"),
                    )
                    .await;
                return Err(msg);
            }
            made += chunk.len();
            batch *= 2;
        }
        Ok(())
    }

    async fn delete_pods(&self, job: &Job, victims: &[Arc<Pod>], api: &Api<Pod>) {
        let uid = job.uid().unwrap_or_default();
        let reference = reference(job);
        let deletes = victims.iter().map(|p| {
            let name = p.name_any();
            self.expectations.deleting(&uid, &name);
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: p.uid(),
                    resource_version: None,
                }),
                ..Default::default()
            };
            async move { (name.clone(), api.delete(&name, &params).await) }
        });
        for (name, r) in futures::future::join_all(deletes).await {
            match r {
                Ok(_) => {
                    self.events
                        .normal(
                            &reference,
                            "SuccessfulDelete",
                            &format!("Deleted pod: {name}"),
                        )
                        .await
                }
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => {
                    self.expectations.delete_failed(&uid, &name);
                    self.events
                        .warning(&reference, "FailedDelete", &format!("Error deleting: {e}"))
                        .await;
                }
            }
        }
    }

    /// Replaces the Job's status (an update, as the bootstrap role grants),
    /// returning the Job as stored.
    async fn write_status(&self, job: &Job, status: JobStatus) -> anyhow::Result<Job> {
        let api: Api<Job> =
            Api::namespaced(self.client.clone(), &job.namespace().unwrap_or_default());
        let mut body = job.clone();
        body.status = Some(status);
        let bytes = serde_json::to_vec(&body)?;
        Ok(api
            .replace_status(&job.name_any(), &PostParams::default(), bytes)
            .await?)
    }
}

/// A pod to create: its completion index (Indexed Jobs) and, with
/// `backoffLimitPerIndex`, the failure counts of its index so far.
struct Slot {
    index: Option<i32>,
    failure_counts: Option<(i32, i32)>,
}

/// A pod of the Job from its template, with the tracking finalizer and,
/// for an Indexed Job, its completion index.
fn job_pod(
    template: &PodTemplateSpec,
    namespace: &str,
    job: &str,
    slot: &Slot,
    owner: k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
) -> Pod {
    let index = slot.index;
    let prefix = match index {
        Some(i) => format!("{job}-{i}"),
        None => job.to_string(),
    };
    let mut pod = pods::pod_from_template(template, namespace, &prefix, owner);
    pod.metadata
        .finalizers
        .get_or_insert_with(Vec::new)
        .push(TRACKING_FINALIZER.into());
    let Some(i) = index else {
        return pod;
    };
    let annotations = pod
        .metadata
        .annotations
        .get_or_insert_with(Default::default);
    annotations.insert(COMPLETION_INDEX.into(), i.to_string());
    if let Some((failures, ignored)) = slot.failure_counts {
        annotations.insert(policy::INDEX_FAILURE_COUNT.into(), failures.to_string());
        if ignored > 0 {
            annotations.insert(
                policy::INDEX_IGNORED_FAILURE_COUNT.into(),
                ignored.to_string(),
            );
        }
    }
    pod.metadata
        .labels
        .get_or_insert_with(Default::default)
        .insert(COMPLETION_INDEX.into(), i.to_string());
    if let Some(spec) = pod.spec.as_mut() {
        if spec.hostname.as_deref().is_none_or(str::is_empty) {
            spec.hostname = Some(format!("{job}-{i}"));
        }
        let env = EnvVar {
            name: INDEX_ENV.into(),
            value: None,
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    api_version: None,
                    field_path: format!("metadata.annotations['{COMPLETION_INDEX}']"),
                }),
                ..Default::default()
            }),
        };
        for c in spec
            .init_containers
            .iter_mut()
            .flatten()
            .chain(spec.containers.iter_mut())
        {
            let vars = c.env.get_or_insert_with(Vec::new);
            if !vars.iter().any(|v| v.name == INDEX_ENV) {
                vars.push(env.clone());
            }
        }
    }
    pod
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completed_indexes_read_and_write_as_kubernetes_ranges() {
        let set: BTreeSet<i32> = [0, 1, 2, 4, 6, 7].into_iter().collect();
        assert_eq!(format_indexes(&set), "0-2,4,6-7");
        assert_eq!(parse_indexes("0-2,4,6-7"), set);
        assert_eq!(format_indexes(&BTreeSet::new()), "");
    }

    #[test]
    fn the_failure_backoff_doubles_from_ten_seconds_to_six_minutes() {
        assert_eq!(backoff_delay(0), Duration::ZERO);
        assert_eq!(backoff_delay(1), Duration::from_secs(10));
        assert_eq!(backoff_delay(3), Duration::from_secs(40));
        assert_eq!(backoff_delay(10), Duration::from_secs(360));
    }

    #[test]
    fn indexed_pods_carry_their_index() {
        let template: PodTemplateSpec = serde_json::from_value(serde_json::json!({
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}))
        .unwrap();
        let owner = pods::controller_ref("batch/v1", "Job", "pi", "u1");
        let slot = Slot {
            index: Some(2),
            failure_counts: Some((1, 0)),
        };
        let p = job_pod(&template, "default", "pi", &slot, owner);
        assert_eq!(p.metadata.generate_name.as_deref(), Some("pi-2-"));
        assert_eq!(completion_index(&p), Some(2));
        assert_eq!(p.labels()[COMPLETION_INDEX], "2");
        assert_eq!(p.annotations()[policy::INDEX_FAILURE_COUNT], "1");
        assert!(!p
            .annotations()
            .contains_key(policy::INDEX_IGNORED_FAILURE_COUNT));
        let spec = p.spec.unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("pi-2"));
        assert_eq!(spec.containers[0].env.as_ref().unwrap()[0].name, INDEX_ENV);
        assert_eq!(p.metadata.finalizers.unwrap(), [TRACKING_FINALIZER]);
    }
}
