//! The CronJob controller with the Job controller against a real API
//! server, on real minutes (these tests wait for one or two minute
//! boundaries), and through the real kubectl.

use std::time::Duration;

use k8s_openapi::api::batch::v1::{CronJob, Job};
use kube::api::{Api, ListParams, PostParams};
use kube::ResourceExt;
use orca_testkit::wait_for;
use serde_json::json;

use crate::common::{Cluster, Controller};

const CONTROLLERS: &[Controller] = &[
    |c| Box::pin(async move { orca_controllers::cronjob::run(&c).await.unwrap() }),
    |c| Box::pin(async move { orca_controllers::job::run(&c).await.unwrap() }),
    |c| Box::pin(async move { orca_controllers::gc::run(&c).await.unwrap() }),
];

/// Long enough for the next minute boundary and the run after it.
const MINUTE_AND_A_BIT: Duration = Duration::from_secs(75);

fn cron_job(name: &str, image: &str, spec: serde_json::Value) -> CronJob {
    let mut cj = json!({
        "metadata": {"name": name},
        "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": {"spec": {
            "restartPolicy": "Never", "containers": [{"name": "c", "image": image}]}}}}}
    });
    for (k, v) in spec.as_object().unwrap() {
        cj["spec"][k] = v.clone();
    }
    serde_json::from_value(cj).unwrap()
}

async fn jobs_of(c: &Cluster, uid: &str) -> Vec<Job> {
    let mut jobs: Vec<Job> = c
        .api::<Job>()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|j| j.owner_references().iter().any(|r| r.uid == uid))
        .collect();
    jobs.sort_by_key(|j| j.name_any());
    jobs
}

async fn reasons(c: &Cluster, name: &str) -> Vec<String> {
    c.events_of(name)
        .await
        .into_iter()
        .filter_map(|e| e.reason)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_each_minute_in_its_zone_and_forbid_skips_while_one_runs() {
    let c = Cluster::start(CONTROLLERS, true).await;
    let cjs: Api<CronJob> = c.api();
    let uid = cjs
        .create(
            &PostParams::default(),
            &cron_job(
                "tick",
                "sleep",
                json!({"concurrencyPolicy": "Forbid",
                "timeZone": "Asia/Kolkata"}),
            ),
        )
        .await
        .unwrap()
        .uid()
        .unwrap();
    let first = wait_for("the first run", MINUTE_AND_A_BIT, || async {
        jobs_of(&c, &uid).await.into_iter().next()
    })
    .await;
    let cj = wait_for("status.active", Duration::from_secs(10), || async {
        let cj = cjs.get("tick").await.ok()?;
        (cj.status.as_ref()?.active.as_ref()?.len() == 1).then_some(cj)
    })
    .await;
    let s = cj.status.unwrap();
    let scheduled = s.last_schedule_time.unwrap().0;
    assert_eq!(
        first.name_any(),
        format!("tick-{}", scheduled.timestamp() / 60)
    );
    let stamp = &first.annotations()["batch.kubernetes.io/cronjob-scheduled-timestamp"];
    assert!(stamp.ends_with("+05:30"), "{stamp}");
    assert_eq!(
        chrono::DateTime::parse_from_rfc3339(stamp).unwrap(),
        scheduled
    );
    assert_eq!(
        s.active.unwrap()[0].name.as_deref(),
        Some(first.name_any().as_str())
    );

    // The next minute: the first still runs, so nothing new starts.
    wait_for("JobAlreadyActive", MINUTE_AND_A_BIT, || async {
        reasons(&c, "tick")
            .await
            .contains(&"JobAlreadyActive".to_string())
            .then_some(())
    })
    .await;
    assert_eq!(jobs_of(&c, &uid).await.len(), 1);
    let events = c.events_of("tick").await;
    let created = events
        .iter()
        .find(|e| e.reason.as_deref() == Some("SuccessfulCreate"))
        .unwrap();
    assert_eq!(
        created.message.as_deref(),
        Some(format!("Created job {}", first.name_any()).as_str())
    );
    assert_eq!(
        created.source.as_ref().unwrap().component.as_deref(),
        Some("cronjob-controller")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replace_deletes_the_running_job_for_the_next() {
    let c = Cluster::start(CONTROLLERS, true).await;
    let cjs: Api<CronJob> = c.api();
    let uid = cjs
        .create(
            &PostParams::default(),
            &cron_job("swap", "sleep", json!({"concurrencyPolicy": "Replace"})),
        )
        .await
        .unwrap()
        .uid()
        .unwrap();
    let first = wait_for("the first run", MINUTE_AND_A_BIT, || async {
        jobs_of(&c, &uid).await.into_iter().next()
    })
    .await;
    let second = wait_for("the second run", MINUTE_AND_A_BIT, || async {
        jobs_of(&c, &uid)
            .await
            .into_iter()
            .find(|j| j.name_any() != first.name_any())
    })
    .await;
    wait_for("the first deleted", Duration::from_secs(20), || async {
        let jobs = jobs_of(&c, &uid).await;
        jobs.iter()
            .all(|j| j.name_any() != first.name_any() || j.metadata.deletion_timestamp.is_some())
            .then_some(())
    })
    .await;
    let active = cjs
        .get("swap")
        .await
        .unwrap()
        .status
        .unwrap()
        .active
        .unwrap();
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].name, second.metadata.name);
    let events = c
        .events_until("swap", |e| {
            e.iter()
                .any(|e| e.reason.as_deref() == Some("SuccessfulDelete"))
        })
        .await;
    assert!(events
        .iter()
        .any(|e| e.reason.as_deref() == Some("SuccessfulDelete")
            && e.message.as_deref() == Some(format!("Deleted job {}", first.name_any()).as_str())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_runs_are_kept_to_the_history_limit() {
    let c = Cluster::start(CONTROLLERS, true).await;
    let cjs: Api<CronJob> = c.api();
    let uid = cjs
        .create(
            &PostParams::default(),
            &cron_job("hist", "succeed", json!({"successfulJobsHistoryLimit": 1})),
        )
        .await
        .unwrap()
        .uid()
        .unwrap();
    let first = wait_for("the first run", MINUTE_AND_A_BIT, || async {
        jobs_of(&c, &uid).await.into_iter().next()
    })
    .await;
    let cj = wait_for("lastSuccessfulTime", Duration::from_secs(20), || async {
        let cj = cjs.get("hist").await.ok()?;
        let s = cj.status.clone()?;
        (s.last_successful_time.is_some() && s.active.is_none()).then_some(cj)
    })
    .await;
    assert!(cj.status.unwrap().last_schedule_time.is_some());
    c.reasons_once("hist", "SawCompletedJob").await;
    wait_for(
        "the second run, and the first deleted",
        MINUTE_AND_A_BIT,
        || async {
            let jobs = jobs_of(&c, &uid).await;
            let live: Vec<&Job> = jobs
                .iter()
                .filter(|j| j.metadata.deletion_timestamp.is_none())
                .collect();
            (live.len() == 1 && live[0].name_any() != first.name_any()).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_creates_a_cron_job_and_a_job_from_it() {
    let c = Cluster::start(CONTROLLERS, true).await;
    let out = c
        .kubectl(&[
            "create",
            "cronjob",
            "nightly",
            "--image=succeed",
            "--schedule=0 3 * * *",
            "--",
            "echo",
            "hi",
        ])
        .await;
    assert_eq!(out.trim(), "cronjob.batch/nightly created");
    let out = c.kubectl(&["get", "cronjob", "nightly"]).await;
    let header: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST", "SCHEDULE", "AGE"]
    );
    assert!(
        out.lines()
            .nth(1)
            .unwrap()
            .starts_with("nightly   0 3 * * *   <none>     False     0        <none>"),
        "{out}"
    );

    let out = c
        .kubectl(&["create", "job", "by-hand", "--from=cronjob/nightly"])
        .await;
    assert_eq!(out.trim(), "job.batch/by-hand created");
    let jobs: Api<Job> = c.api();
    let job = jobs.get("by-hand").await.unwrap();
    assert_eq!(
        job.annotations()["cronjob.kubernetes.io/instantiate"],
        "manual"
    );
    let owner = &job.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("CronJob", "nightly")
    );
    wait_for(
        "the manual run completes",
        Duration::from_secs(30),
        || async {
            let j = jobs.get("by-hand").await.ok()?;
            (j.status?.succeeded == Some(1)).then_some(())
        },
    )
    .await;
}
