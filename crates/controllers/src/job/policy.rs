//! The Job's own rules about its pods' ends, as kube-controller-manager
//! reads them: `podFailurePolicy` (which failures fail the Job, fail an
//! index, are ignored or counted), `successPolicy` (which succeeded indexes
//! are enough), and `backoffLimitPerIndex`'s failure counts, carried from a
//! failed pod to its replacement in annotations.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::{
    Job, PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement, SuccessPolicy,
};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use kube::ResourceExt;

use super::{completion_index, parse_indexes, phase};

pub const INDEX_FAILURE_COUNT: &str = "batch.kubernetes.io/job-index-failure-count";
pub const INDEX_IGNORED_FAILURE_COUNT: &str = "batch.kubernetes.io/job-index-ignored-failure-count";

/// What a failed pod means under the Job's `podFailurePolicy`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No rule matched, or a `Count` rule: an ordinary failure.
    Count,
    /// An `Ignore` rule: not counted against any limit; the pod is replaced.
    Ignore,
    /// A `FailIndex` rule: the pod's index fails at once.
    FailIndex,
    /// A `FailJob` rule, with the Job's failure message.
    FailJob(String),
}

impl Verdict {
    /// Whether the failure counts towards `failed` and the back-off limits.
    pub fn counts(&self) -> bool {
        *self != Verdict::Ignore
    }
}

/// The first rule of the policy that matches the failed pod (Kubernetes'
/// `matchPodFailurePolicy`).
pub fn judge(policy: Option<&PodFailurePolicy>, pod: &Pod) -> Verdict {
    let Some(policy) = policy else {
        return Verdict::Count;
    };
    let ns = pod.namespace().unwrap_or_default();
    let name = pod.name_any();
    let status = pod.status.clone().unwrap_or_default();
    for (index, rule) in policy.rules.iter().enumerate() {
        let failure_job_message = if let Some(req) = &rule.on_exit_codes {
            let Some((container, code)) = matching_container(
                status
                    .container_statuses
                    .iter()
                    .flatten()
                    .chain(status.init_container_statuses.iter().flatten()),
                req,
            ) else {
                continue;
            };
            format!(
                "Container {container} for pod {ns}/{name} failed with exit code {code} \
                 matching {} rule at index {index}",
                rule.action
            )
        } else if let Some(patterns) = &rule.on_pod_conditions {
            let Some(cond) = status.conditions.iter().flatten().find(|c| {
                patterns
                    .iter()
                    .any(|p| p.type_ == c.type_ && p.status == c.status)
            }) else {
                continue;
            };
            format!(
                "Pod {ns}/{name} has condition {} matching {} rule at index {index}",
                cond.type_, rule.action
            )
        } else {
            continue;
        };
        return match rule.action.as_str() {
            "Ignore" => Verdict::Ignore,
            "FailIndex" => Verdict::FailIndex,
            "FailJob" => Verdict::FailJob(failure_job_message),
            _ => Verdict::Count,
        };
    }
    Verdict::Count
}

/// The first terminated container, with a non-zero exit code, that the
/// requirement matches.
fn matching_container<'a>(
    statuses: impl Iterator<Item = &'a ContainerStatus>,
    req: &PodFailurePolicyOnExitCodesRequirement,
) -> Option<(&'a str, i32)> {
    statuses
        .filter(|c| req.container_name.as_deref().is_none_or(|n| n == c.name))
        .filter_map(|c| {
            let code = c.state.as_ref()?.terminated.as_ref()?.exit_code;
            let listed = req.values.contains(&code);
            let matches = match req.operator.as_str() {
                "In" => listed,
                "NotIn" => !listed,
                _ => false,
            };
            (code != 0 && matches).then_some((c.name.as_str(), code))
        })
        .next()
}

/// The message of the first failed pod that a `FailJob` rule matches.
pub fn fail_job_message<'a>(job: &Job, pods: impl Iterator<Item = &'a Pod>) -> Option<String> {
    let policy = job.spec.as_ref()?.pod_failure_policy.as_ref()?;
    pods.filter(|p| phase(p) == "Failed")
        .find_map(|p| match judge(Some(policy), p) {
            Verdict::FailJob(msg) => Some(msg),
            _ => None,
        })
}

/// `Matched rules at index N` when the succeeded indexes satisfy a rule of
/// the `successPolicy` (Kubernetes' `matchSuccessPolicy`).
pub fn success_policy_met(
    policy: Option<&SuccessPolicy>,
    completions: i32,
    succeeded: &BTreeSet<i32>,
) -> Option<String> {
    let policy = policy?;
    if succeeded.is_empty() {
        return None;
    }
    policy.rules.iter().enumerate().find_map(|(index, rule)| {
        let met = match &rule.succeeded_indexes {
            Some(list) => {
                let wanted: BTreeSet<i32> = parse_indexes(list)
                    .into_iter()
                    .filter(|i| *i < completions)
                    .collect();
                if wanted.is_empty() {
                    return None;
                }
                let done = wanted.intersection(succeeded).count();
                done == wanted.len() || rule.succeeded_count.is_some_and(|n| done >= n as usize)
            }
            None => rule
                .succeeded_count
                .is_some_and(|n| succeeded.len() >= n as usize),
        };
        met.then(|| format!("Matched rules at index {index}"))
    })
}

fn annotation_count(pod: &Pod, key: &str) -> i32 {
    pod.annotations()
        .get(key)
        .and_then(|v| v.parse::<i32>().ok())
        .filter(|n| *n >= 0)
        .unwrap_or(0)
}

/// Whether this failed pod makes its index failed: a `FailIndex` verdict, or
/// a counted failure of a pod whose index had already failed
/// `backoffLimitPerIndex` times.
pub fn index_failed(job: &Job, pod: &Pod) -> bool {
    let spec = job.spec.as_ref();
    let Some(limit) = spec.and_then(|s| s.backoff_limit_per_index) else {
        return false;
    };
    match judge(spec.and_then(|s| s.pod_failure_policy.as_ref()), pod) {
        Verdict::FailIndex => true,
        Verdict::Ignore => false,
        _ => annotation_count(pod, INDEX_FAILURE_COUNT) >= limit,
    }
}

/// When the pod ended: its containers' latest finish, else when it turned
/// unready, else its deletion, else its creation (`getFinishedTime`).
pub fn finished_at(pod: &Pod) -> DateTime<Utc> {
    let status = pod.status.as_ref();
    let containers = status
        .into_iter()
        .flat_map(|s| s.container_statuses.iter().flatten())
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref())
        .map(|t| t.0)
        .max();
    let unready = || {
        status?
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == "Ready" && c.status == "False")?
            .last_transition_time
            .as_ref()
            .map(|t| t.0)
    };
    let deleted = || {
        let at = pod.metadata.deletion_timestamp.as_ref()?.0;
        let grace = pod.metadata.deletion_grace_period_seconds.unwrap_or(0);
        Some(at - chrono::Duration::seconds(grace))
    };
    containers
        .or_else(unready)
        .or_else(deleted)
        .or_else(|| pod.creation_timestamp().map(|t| t.0))
        .unwrap_or_else(Utc::now)
}

/// The index's latest failed pod: the most failures behind it, then the
/// latest to end; its replacement continues its counts.
pub fn last_failed<'a>(pods: impl Iterator<Item = &'a Pod>, index: i32) -> Option<&'a Pod> {
    let absolute = |p: &Pod| {
        annotation_count(p, INDEX_FAILURE_COUNT) + annotation_count(p, INDEX_IGNORED_FAILURE_COUNT)
    };
    pods.filter(|p| phase(p) == "Failed" && completion_index(p) == Some(index))
        .max_by_key(|p| (absolute(p), finished_at(p)))
}

/// The failure and ignored-failure counts a replacement of `last` starts
/// with (`getNewIndexFailureCounts`).
pub fn replacement_counts(job: &Job, last: Option<&Pod>) -> (i32, i32) {
    let Some(last) = last else {
        return (0, 0);
    };
    let failures = annotation_count(last, INDEX_FAILURE_COUNT);
    let ignored = annotation_count(last, INDEX_IGNORED_FAILURE_COUNT);
    let policy = job
        .spec
        .as_ref()
        .and_then(|s| s.pod_failure_policy.as_ref());
    if judge(policy, last).counts() {
        (failures + 1, ignored)
    } else {
        (failures, ignored + 1)
    }
}

/// How many failures in a row the index has had, for its back-off.
pub fn index_failures(last: &Pod) -> u32 {
    (annotation_count(last, INDEX_FAILURE_COUNT)
        + annotation_count(last, INDEX_IGNORED_FAILURE_COUNT)) as u32
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn failed_pod(code: i32, conditions: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns",
                "annotations": {"batch.kubernetes.io/job-completion-index": "1",
                    INDEX_FAILURE_COUNT: "2"}},
            "status": {"phase": "Failed", "conditions": conditions,
                "initContainerStatuses": [{"name": "init", "image": "i", "imageID": "",
                    "ready": false, "restartCount": 0,
                    "state": {"terminated": {"exitCode": 0}}}],
                "containerStatuses": [{"name": "main", "image": "i", "imageID": "",
                    "ready": false, "restartCount": 0,
                    "state": {"terminated": {"exitCode": code,
                        "finishedAt": "2026-01-01T00:00:10Z"}}}]}
        }))
        .unwrap()
    }

    fn policy(rules: serde_json::Value) -> PodFailurePolicy {
        serde_json::from_value(json!({ "rules": rules })).unwrap()
    }

    #[test]
    fn the_first_matching_rule_decides() {
        let p = policy(json!([
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
            {"action": "Count", "onExitCodes": {"operator": "NotIn", "values": [3, 42]}},
            {"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In", "values": [42]}},
        ]));
        assert_eq!(
            judge(Some(&p), &failed_pod(42, json!([]))),
            Verdict::FailJob(
                "Container main for pod ns/p failed with exit code 42 matching FailJob rule at index 2"
                    .into()
            )
        );
        assert_eq!(judge(Some(&p), &failed_pod(1, json!([]))), Verdict::Count);
        // 3 matches no rule: an ordinary failure.
        assert_eq!(judge(Some(&p), &failed_pod(3, json!([]))), Verdict::Count);
        let disrupted = json!([{"type": "DisruptionTarget", "status": "True"}]);
        assert_eq!(judge(Some(&p), &failed_pod(42, disrupted)), Verdict::Ignore);
        assert_eq!(judge(None, &failed_pod(42, json!([]))), Verdict::Count);
    }

    #[test]
    fn exit_code_zero_and_other_containers_never_match() {
        // NotIn [1] would match 0: zero exits are never a failure cause.
        let p = policy(json!([
            {"action": "FailJob", "onExitCodes": {"operator": "NotIn", "values": [1]}}]));
        assert_eq!(judge(Some(&p), &failed_pod(1, json!([]))), Verdict::Count);
        let named = policy(json!([
            {"action": "FailJob", "onExitCodes": {"containerName": "side", "operator": "In", "values": [5]}}]));
        assert_eq!(
            judge(Some(&named), &failed_pod(5, json!([]))),
            Verdict::Count
        );
        let on_condition = policy(json!([
            {"action": "FailJob", "onPodConditions": [{"type": "ConfigIssue", "status": "True"}]}]));
        assert_eq!(
            judge(
                Some(&on_condition),
                &failed_pod(5, json!([{"type": "ConfigIssue", "status": "True"}]))
            ),
            Verdict::FailJob(
                "Pod ns/p has condition ConfigIssue matching FailJob rule at index 0".into()
            )
        );
    }

    #[test]
    fn success_rules_by_indexes_or_count() {
        let sp: SuccessPolicy = serde_json::from_value(json!({"rules": [
            {"succeededIndexes": "0-2,9", "succeededCount": 2},
            {"succeededCount": 3},
        ]}))
        .unwrap();
        let set = |v: &[i32]| v.iter().copied().collect::<BTreeSet<i32>>();
        assert_eq!(success_policy_met(Some(&sp), 5, &set(&[0])), None);
        // Two of the listed indexes (9 is beyond completions, left out).
        assert_eq!(
            success_policy_met(Some(&sp), 5, &set(&[0, 2])),
            Some("Matched rules at index 0".into())
        );
        // One listed index only: the second rule's count decides.
        assert_eq!(
            success_policy_met(Some(&sp), 5, &set(&[3, 4, 2])),
            Some("Matched rules at index 1".into())
        );
        assert_eq!(
            success_policy_met(Some(&sp), 9, &set(&[3, 4, 5])),
            Some("Matched rules at index 1".into())
        );
        let all: SuccessPolicy =
            serde_json::from_value(json!({"rules": [{"succeededIndexes": "1,3"}]})).unwrap();
        assert_eq!(success_policy_met(Some(&all), 4, &set(&[1])), None);
        assert_eq!(
            success_policy_met(Some(&all), 4, &set(&[1, 3])),
            Some("Matched rules at index 0".into())
        );
        assert_eq!(success_policy_met(None, 4, &set(&[1, 3])), None);
    }

    #[test]
    fn failure_counts_carry_over_to_the_replacement() {
        let job: Job = serde_json::from_value(json!({"spec": {
            "template": {}, "backoffLimitPerIndex": 2,
            "podFailurePolicy": {"rules": [
                {"action": "Ignore", "onExitCodes": {"operator": "In", "values": [137]}},
                {"action": "FailIndex", "onExitCodes": {"operator": "In", "values": [42]}}]}}}))
        .unwrap();
        // The pod had two failures behind it: a third counted one fails the index.
        let counted = failed_pod(1, json!([]));
        assert!(index_failed(&job, &counted));
        assert_eq!(replacement_counts(&job, Some(&counted)), (3, 0));
        let ignored = failed_pod(137, json!([]));
        assert!(!index_failed(&job, &ignored));
        assert_eq!(replacement_counts(&job, Some(&ignored)), (2, 1));
        assert_eq!(index_failures(&ignored), 3);
        assert!(index_failed(&job, &failed_pod(42, json!([]))));
        assert_eq!(replacement_counts(&job, None), (0, 0));
        assert_eq!(
            last_failed([&counted, &ignored].into_iter(), 1).map(|p| p.name_any()),
            Some("p".into())
        );
        assert_eq!(last_failed([&counted].into_iter(), 0), None);
        assert_eq!(
            finished_at(&counted),
            "2026-01-01T00:00:10Z".parse::<DateTime<Utc>>().unwrap()
        );
    }
}
