//! The Job controller (with the TTL-after-finished controller and the
//! garbage collector) against a real API server; the test's kubelet makes
//! pods succeed, fail or run by their image.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::ResourceExt;
use orca_testkit::wait_for;
use serde_json::json;

use crate::common::{Cluster, Controller, WAIT};

const CONTROLLERS: &[Controller] = &[
    |c| Box::pin(async move { orca_controllers::job::run(&c).await.unwrap() }),
    |c| Box::pin(async move { orca_controllers::ttl_after_finished::run(&c).await.unwrap() }),
    |c| Box::pin(async move { orca_controllers::gc::run(&c).await.unwrap() }),
];

fn job(name: &str, image: &str, spec: serde_json::Value) -> Job {
    let mut j = json!({
        "metadata": {"name": name},
        "spec": {"template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "c", "image": image}]}}}
    });
    for (k, v) in spec.as_object().unwrap() {
        j["spec"][k] = v.clone();
    }
    serde_json::from_value(j).unwrap()
}

fn condition(j: &Job, type_: &str) -> Option<(String, String)> {
    j.status
        .as_ref()?
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == type_ && c.status == "True")
        .map(|c| {
            (
                c.reason.clone().unwrap_or_default(),
                c.message.clone().unwrap_or_default(),
            )
        })
}

/// Creates the Job; returns its uid.
async fn create(jobs: &Api<Job>, j: Job) -> String {
    jobs.create(&PostParams::default(), &j)
        .await
        .unwrap()
        .uid()
        .unwrap()
}

async fn wait_condition(c: &Cluster, name: &str, type_: &str) -> Job {
    let jobs: Api<Job> = c.api();
    wait_for(&format!("{name} {type_}"), WAIT, || async {
        let j = jobs.get(name).await.ok()?;
        condition(&j, type_).map(|_| j)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_completions_three_at_a_time() {
    let c = Cluster::start(CONTROLLERS, true).await;
    let jobs: Api<Job> = c.api();
    let created = jobs
        .create(
            &PostParams::default(),
            &job(
                "work",
                "succeed",
                json!({"completions": 6, "parallelism": 3}),
            ),
        )
        .await
        .unwrap();
    let uid = created.uid().unwrap();
    // Never more than parallelism pods at once.
    let most = std::cell::Cell::new(0);
    let done = wait_for("work Complete", WAIT, || async {
        let running = c
            .pods_of(&uid)
            .await
            .iter()
            .filter(|p| {
                p.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Succeeded")
                    && p.metadata.deletion_timestamp.is_none()
            })
            .count();
        most.set(most.get().max(running));
        let j = jobs.get("work").await.ok()?;
        condition(&j, "Complete").map(|_| j)
    })
    .await;
    assert!(most.get() <= 3, "{} pods ran at once", most.get());
    let s = done.status.clone().unwrap();
    assert_eq!(s.succeeded, Some(6));
    assert_eq!(s.failed, None);
    assert_eq!(s.active, None);
    assert!(s.completion_time.is_some() && s.start_time.is_some());
    assert_eq!(
        condition(&done, "Complete").unwrap(),
        (
            "CompletionsReached".into(),
            "Reached expected number of succeeded pods".into()
        )
    );
    assert!(condition(&done, "SuccessCriteriaMet").is_some());
    let pods = c.pods_of(&uid).await;
    assert_eq!(pods.len(), 6);
    for p in &pods {
        assert!(p.name_any().starts_with("work-"));
        assert!(p.finalizers().is_empty(), "counted pods keep no finalizer");
        assert_eq!(p.labels()["batch.kubernetes.io/job-name"], "work");
    }
    let events = c
        .events_until("work", |e| {
            e.iter().any(|e| e.reason.as_deref() == Some("Completed"))
        })
        .await;
    assert_eq!(
        events
            .iter()
            .filter(|e| e.reason.as_deref() == Some("SuccessfulCreate"))
            .count(),
        6
    );
    let completed = events
        .iter()
        .find(|e| e.reason.as_deref() == Some("Completed"))
        .unwrap();
    assert_eq!(completed.message.as_deref(), Some("Job completed"));
    assert_eq!(
        completed.source.as_ref().unwrap().component.as_deref(),
        Some("job-controller")
    );

    // kubectl's columns for it.
    let out = c.kubectl(&["get", "job", "work"]).await;
    let row: Vec<&str> = out.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(&row[..3], ["work", "Complete", "6/6"], "{out}");
    let out = c.kubectl(&["describe", "job", "work"]).await;
    assert!(
        out.contains("Pods Statuses:    0 Active (0 Ready) / 6 Succeeded / 0 Failed"),
        "{out}"
    );
    assert!(out.contains("Normal  Completed"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_job_backs_off_and_stops_at_its_backoff_limit() {
    let c = Cluster::start(CONTROLLERS, true).await;
    let jobs: Api<Job> = c.api();
    let uid = jobs
        .create(
            &PostParams::default(),
            &job("flaky", "fail", json!({"backoffLimit": 1})),
        )
        .await
        .unwrap()
        .uid()
        .unwrap();
    let failed = wait_condition(&c, "flaky", "Failed").await;
    assert_eq!(
        condition(&failed, "Failed").unwrap(),
        (
            "BackoffLimitExceeded".into(),
            "Job has reached the specified backoff limit".into()
        )
    );
    assert!(condition(&failed, "FailureTarget").is_some());
    let s = failed.status.unwrap();
    assert_eq!((s.failed, s.succeeded, s.active), (Some(2), None, None));
    assert!(s.completion_time.is_none());
    // Two pods: the replacement came after the ten-second back-off.
    let mut pods = c.pods_of(&uid).await;
    assert_eq!(pods.len(), 2);
    pods.sort_by_key(|p| p.creation_timestamp().map(|t| t.0));
    let first_failed = pods[0]
        .status
        .as_ref()
        .unwrap()
        .container_statuses
        .as_ref()
        .unwrap()[0]
        .state
        .as_ref()
        .unwrap()
        .terminated
        .as_ref()
        .unwrap()
        .finished_at
        .clone()
        .unwrap()
        .0;
    let second = pods[1].creation_timestamp().unwrap().0;
    assert!(
        second - first_failed >= chrono::Duration::seconds(9),
        "replaced {:?} after the failure",
        second - first_failed
    );
    let events = c.events_of("flaky").await;
    let last = events.last().unwrap();
    assert_eq!(
        (
            last.type_.as_deref(),
            last.reason.as_deref(),
            last.message.as_deref()
        ),
        (
            Some("Warning"),
            Some("BackoffLimitExceeded"),
            Some("Job has reached the specified backoff limit")
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_past_its_deadline_fails_and_its_pods_go() {
    let c = Cluster::start(CONTROLLERS, true).await;
    let jobs: Api<Job> = c.api();
    let uid = create(
        &jobs,
        job(
            "slow",
            "sleep",
            json!({"parallelism": 2, "completions": 4,
                "activeDeadlineSeconds": 2}),
        ),
    )
    .await;
    wait_for("2 pods running", WAIT, || async {
        (c.pods_of(&uid).await.len() == 2).then_some(())
    })
    .await;
    let failed = wait_condition(&c, "slow", "Failed").await;
    assert_eq!(
        condition(&failed, "Failed").unwrap(),
        (
            "DeadlineExceeded".into(),
            "Job was active longer than specified deadline".into()
        )
    );
    assert_eq!(failed.status.unwrap().active, None);
    wait_for("the pods deleted", WAIT, || async {
        c.pods_of(&uid).await.is_empty().then_some(())
    })
    .await;
    let reasons = c.reasons_once("slow", "SuccessfulDelete").await;
    assert!(
        reasons.contains(&"SuccessfulDelete".to_string()),
        "{reasons:?}"
    );
    assert!(
        reasons.contains(&"DeadlineExceeded".to_string()),
        "{reasons:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indexed_pods_get_their_index_and_complete_every_index() {
    let c = Cluster::start(CONTROLLERS, true).await;
    let jobs: Api<Job> = c.api();
    let uid = create(
        &jobs,
        job(
            "idx",
            "succeed",
            json!({"completions": 3, "parallelism": 3,
                "completionMode": "Indexed"}),
        ),
    )
    .await;
    let done = wait_condition(&c, "idx", "Complete").await;
    let s = done.status.unwrap();
    assert_eq!(s.completed_indexes.as_deref(), Some("0-2"));
    assert_eq!(s.succeeded, Some(3));
    let mut pods = c.pods_of(&uid).await;
    pods.sort_by_key(|p| p.name_any());
    assert_eq!(pods.len(), 3);
    for (i, p) in pods.iter().enumerate() {
        assert!(
            p.name_any().starts_with(&format!("idx-{i}-")),
            "{}",
            p.name_any()
        );
        assert_eq!(
            p.annotations()["batch.kubernetes.io/job-completion-index"],
            i.to_string()
        );
        assert_eq!(
            p.labels()["batch.kubernetes.io/job-completion-index"],
            i.to_string()
        );
        let spec = p.spec.as_ref().unwrap();
        assert_eq!(spec.hostname.as_deref(), Some(format!("idx-{i}").as_str()));
        let env = &spec.containers[0].env.as_ref().unwrap()[0];
        assert_eq!(env.name, "JOB_COMPLETION_INDEX");
        assert_eq!(
            env.value_from
                .as_ref()
                .unwrap()
                .field_ref
                .as_ref()
                .unwrap()
                .field_path,
            "metadata.annotations['batch.kubernetes.io/job-completion-index']"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspend_resume_and_ttl_after_finished() {
    let c = Cluster::start(CONTROLLERS, true).await;
    let jobs: Api<Job> = c.api();
    let uid = create(
        &jobs,
        job(
            "later",
            "sleep",
            json!({"suspend": true, "parallelism": 2,
                "completions": 2, "ttlSecondsAfterFinished": 1}),
        ),
    )
    .await;
    let suspended = wait_condition(&c, "later", "Suspended").await;
    assert_eq!(
        condition(&suspended, "Suspended").unwrap(),
        ("JobSuspended".into(), "Job suspended".into())
    );
    assert!(suspended.status.unwrap().start_time.is_none());
    assert!(c.pods_of(&uid).await.is_empty());

    let resume = json!({"spec": {"suspend": false}});
    jobs.patch("later", &PatchParams::default(), &Patch::Merge(&resume))
        .await
        .unwrap();
    let running = wait_for("2 pods ready", WAIT, || async {
        let j = jobs.get("later").await.ok()?;
        (j.status.as_ref()?.ready == Some(2)).then_some(j)
    })
    .await;
    assert!(running.status.unwrap().start_time.is_some());

    // Suspended again: the running pods go and are not counted as failed.
    let suspend = json!({"spec": {"suspend": true}});
    jobs.patch("later", &PatchParams::default(), &Patch::Merge(&suspend))
        .await
        .unwrap();
    wait_for("the pods deleted", WAIT, || async {
        c.pods_of(&uid).await.is_empty().then_some(())
    })
    .await;
    let j = jobs.get("later").await.unwrap();
    assert_eq!(j.status.as_ref().unwrap().failed, None);
    let reasons = c.reasons_once("later", "Resumed").await;
    assert!(reasons.contains(&"Suspended".into()), "{reasons:?}");

    // A finished Job with a TTL is deleted, its pods first.
    let brief = jobs
        .create(
            &PostParams::default(),
            &job("brief", "succeed", json!({"ttlSecondsAfterFinished": 1})),
        )
        .await
        .unwrap();
    wait_condition(&c, "brief", "Complete").await;
    wait_for("the Job deleted after its TTL", WAIT, || async {
        match jobs.get("brief").await {
            Err(kube::Error::Api(s)) if s.code == 404 => Some(()),
            _ => None,
        }
    })
    .await;
    assert!(c.pods_of(&brief.uid().unwrap()).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_pod_counts_as_failed_and_a_deleted_job_frees_its_pods() {
    let c = Cluster::start(CONTROLLERS, true).await;
    let jobs: Api<Job> = c.api();
    let uid = jobs
        .create(&PostParams::default(), &job("svc", "sleep", json!({})))
        .await
        .unwrap()
        .uid()
        .unwrap();
    let pods: Api<Pod> = c.api();
    let first = wait_for("a pod", WAIT, || async {
        c.pods_of(&uid).await.into_iter().next()
    })
    .await;
    pods.delete(&first.name_any(), &DeleteParams::default())
        .await
        .unwrap();
    wait_for("counted failed, finalizer gone", WAIT, || async {
        let j = jobs.get("svc").await.ok()?;
        let gone = pods.get_opt(&first.name_any()).await.ok()?.is_none();
        (j.status?.failed == Some(1) && gone).then_some(())
    })
    .await;
    let second = wait_for("a replacement", WAIT, || async {
        c.pods_of(&uid).await.into_iter().next()
    })
    .await;
    assert_ne!(second.name_any(), first.name_any());
    // Deleting the Job: the garbage collector deletes the pod, which the
    // Job controller releases from its finalizer.
    jobs.delete("svc", &DeleteParams::background())
        .await
        .unwrap();
    wait_for("the pod gone", WAIT, || async {
        pods.get_opt(&second.name_any())
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_create_job_runs_to_completion() {
    let c = Cluster::start(CONTROLLERS, true).await;
    let out = c
        .kubectl(&[
            "create",
            "job",
            "hello",
            "--image=succeed",
            "--",
            "echo",
            "hi",
        ])
        .await;
    assert_eq!(out.trim(), "job.batch/hello created");
    wait_condition(&c, "hello", "Complete").await;
    let out = c
        .kubectl(&["get", "pods", "-l", "batch.kubernetes.io/job-name=hello"])
        .await;
    let row: Vec<&str> = out.lines().nth(1).unwrap().split_whitespace().collect();
    assert!(row[0].starts_with("hello-"), "{out}");
    assert_eq!(row[2], "Completed", "{out}");
}

fn index_of(p: &Pod) -> i32 {
    p.annotations()["batch.kubernetes.io/job-completion-index"]
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fail_job_rule_fails_the_job_at_the_first_matching_exit_code() {
    let c = Cluster::start(CONTROLLERS, true).await;
    let jobs: Api<Job> = c.api();
    let uid = create(
        &jobs,
        job(
            "policy",
            "exit-42",
            json!({"backoffLimit": 6, "podFailurePolicy": {"rules": [
                    {"action": "Count", "onExitCodes": {"operator": "In", "values": [1]}},
                    {"action": "FailJob", "onExitCodes": {"containerName": "c",
                        "operator": "In", "values": [40, 42]}}]}}),
        ),
    )
    .await;
    let failed = wait_condition(&c, "policy", "Failed").await;
    let pods = c.pods_of(&uid).await;
    assert_eq!(pods.len(), 1, "no replacement after a FailJob match");
    let (reason, message) = condition(&failed, "Failed").unwrap();
    assert_eq!(reason, "PodFailurePolicy");
    assert_eq!(
        message,
        format!(
            "Container c for pod default/{} failed with exit code 42 matching FailJob rule at index 1",
            pods[0].name_any()
        )
    );
    assert!(condition(&failed, "FailureTarget").is_some());
    assert_eq!(failed.status.unwrap().failed, Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ignored_failures_are_replaced_without_counting() {
    let c = Cluster::start(CONTROLLERS, true).await;
    let jobs: Api<Job> = c.api();
    let uid = create(
        &jobs,
        job(
            "evicted",
            "disrupted",
            json!({"backoffLimit": 0, "podFailurePolicy": {"rules": [
                    {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]}}),
        ),
    )
    .await;
    // backoffLimit 0 would fail the Job at its first counted failure; an
    // ignored one is replaced at once, without the back-off.
    wait_for("three disrupted pods", WAIT, || async {
        let pods = c.pods_of(&uid).await;
        let failed = pods
            .iter()
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed"))
            .count();
        (failed >= 3).then_some(())
    })
    .await;
    let j = jobs.get("evicted").await.unwrap();
    assert_eq!(condition(&j, "Failed"), None);
    assert_eq!(condition(&j, "FailureTarget"), None);
    let s = j.status.unwrap();
    assert_eq!(s.failed, None, "ignored failures are not counted");
    // Their finalizers go all the same.
    wait_for("finalizers removed", WAIT, || async {
        c.pods_of(&uid)
            .await
            .iter()
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed"))
            .all(|p| p.finalizers().is_empty())
            .then_some(())
    })
    .await;
    jobs.delete("evicted", &DeleteParams::default())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_fails_after_its_own_backoff_limit() {
    let c = Cluster::start(CONTROLLERS, true).await;
    let jobs: Api<Job> = c.api();
    let uid = create(
        &jobs,
        job(
            "per-index",
            "by-index:0=succeed,1=fail,2=succeed",
            json!({"completions": 3, "parallelism": 3, "completionMode": "Indexed",
                    "backoffLimitPerIndex": 1}),
        ),
    )
    .await;
    let failed = wait_condition(&c, "per-index", "Failed").await;
    assert_eq!(
        condition(&failed, "Failed").unwrap(),
        ("FailedIndexes".into(), "Job has failed indexes".into())
    );
    let s = failed.status.unwrap();
    assert_eq!(s.failed_indexes.as_deref(), Some("1"));
    assert_eq!(s.completed_indexes.as_deref(), Some("0,2"));
    assert_eq!((s.succeeded, s.failed), (Some(2), Some(2)));
    // Index 1 ran twice, its replacement carrying the failure count, after
    // the index's own back-off.
    let mut ones: Vec<Pod> = c
        .pods_of(&uid)
        .await
        .into_iter()
        .filter(|p| index_of(p) == 1)
        .collect();
    ones.sort_by_key(|p| p.creation_timestamp().map(|t| t.0));
    let counts: Vec<&str> = ones
        .iter()
        .map(|p| p.annotations()["batch.kubernetes.io/job-index-failure-count"].as_str())
        .collect();
    assert_eq!(counts, ["0", "1"]);
    let gap = ones[1].creation_timestamp().unwrap().0 - ones[0].creation_timestamp().unwrap().0;
    assert!(
        gap >= chrono::Duration::seconds(9),
        "replaced after {gap:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fail_index_rule_and_max_failed_indexes_end_the_job() {
    let c = Cluster::start(CONTROLLERS, true).await;
    let jobs: Api<Job> = c.api();
    let uid = create(
        &jobs,
        job(
            "fail-index",
            "by-index:2=exit-42",
            json!({"completions": 4, "parallelism": 4, "completionMode": "Indexed",
                    "backoffLimitPerIndex": 3, "maxFailedIndexes": 0,
                    "podFailurePolicy": {"rules": [{"action": "FailIndex",
                        "onExitCodes": {"operator": "In", "values": [42]}}]}}),
        ),
    )
    .await;
    let failed = wait_condition(&c, "fail-index", "Failed").await;
    assert_eq!(
        condition(&failed, "Failed").unwrap(),
        (
            "MaxFailedIndexesExceeded".into(),
            "Job has exceeded the specified maximal number of failed indexes".into()
        )
    );
    let s = failed.status.unwrap();
    assert_eq!(s.failed_indexes.as_deref(), Some("2"));
    assert_eq!(s.active, None);
    // No retry of index 2 despite its back-off limit of 3; the running
    // indexes were stopped.
    let pods = c.pods_of(&uid).await;
    assert_eq!(pods.iter().filter(|p| index_of(p) == 2).count(), 1);
    wait_for("the running pods deleted", WAIT, || async {
        (c.pods_of(&uid).await.len() == 1).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_success_policy_completes_the_job_early() {
    let c = Cluster::start(CONTROLLERS, true).await;
    let jobs: Api<Job> = c.api();
    let uid = create(
        &jobs,
        job(
            "leader",
            "by-index:0=succeed",
            json!({"completions": 3, "parallelism": 3, "completionMode": "Indexed",
                    "successPolicy": {"rules": [{"succeededIndexes": "0"}]}}),
        ),
    )
    .await;
    let done = wait_condition(&c, "leader", "Complete").await;
    let expected = (
        "SuccessPolicy".to_string(),
        "Matched rules at index 0".to_string(),
    );
    assert_eq!(condition(&done, "Complete").unwrap(), expected);
    assert_eq!(condition(&done, "SuccessCriteriaMet").unwrap(), expected);
    let s = done.status.unwrap();
    assert_eq!(s.completed_indexes.as_deref(), Some("0"));
    assert_eq!((s.succeeded, s.active), (Some(1), None));
    // The workers of indexes 1 and 2 were stopped.
    wait_for("the workers deleted", WAIT, || async {
        (c.pods_of(&uid).await.len() == 1).then_some(())
    })
    .await;
}
