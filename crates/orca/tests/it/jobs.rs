//! Jobs end to end: the real kubectl against a real `orca server` running
//! real containers (needs root, ORCA_TEST_REGISTRY and ORCA_TEST_IMAGES;
//! see scripts/test.sh). A Job with parallelism 3 completes 6 pods; a
//! failing one stops at its backoffLimit.

use crate::common;

use common::Cluster;

const SIX: &str = r#"apiVersion: batch/v1
kind: Job
metadata:
  name: six
spec:
  completions: 6
  parallelism: 3
  template:
    spec:
      restartPolicy: Never
      terminationGracePeriodSeconds: 2
      containers:
      - name: work
        image: busybox
        command: ["sh", "-c", "echo done $HOSTNAME; sleep 1"]
"#;

const BAD: &str = r#"apiVersion: batch/v1
kind: Job
metadata:
  name: bad
spec:
  backoffLimit: 1
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: work
        image: busybox
        command: ["sh", "-c", "exit 3"]
"#;

fn create(c: &Cluster, name: &str, manifest: &str) -> String {
    let path = c.dir.path().join(format!("{name}.yaml"));
    std::fs::write(&path, manifest).unwrap();
    c.kubectl_ok(&["create", "-f", path.to_str().unwrap()])
}

#[test]
fn a_job_completes_six_pods_three_at_a_time_and_a_failing_one_stops() {
    let c = Cluster::start();
    assert_eq!(create(&c, "six", SIX).trim(), "job.batch/six created");
    assert_eq!(create(&c, "bad", BAD).trim(), "job.batch/bad created");
    c.kubectl_ok(&[
        "wait",
        "--for=condition=complete",
        "job/six",
        "--timeout=300s",
    ]);
    let out = c.kubectl_ok(&["get", "job", "six"]);
    let row: Vec<&str> = out.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(&row[..3], ["six", "Complete", "6/6"], "{out}");
    let pods = c.kubectl_ok(&[
        "get",
        "pods",
        "-l",
        "batch.kubernetes.io/job-name=six",
        "-o",
        "jsonpath={range .items[*]}{.status.phase} {.metadata.finalizers}{\"\\n\"}{end}",
    ]);
    let phases: Vec<&str> = pods.lines().collect();
    assert_eq!(phases.len(), 6, "{pods}");
    assert!(phases.iter().all(|l| l.trim() == "Succeeded"), "{pods}");
    let logs = c.kubectl_ok(&["logs", "job/six"]);
    assert!(logs.starts_with("done six-"), "{logs}");

    c.kubectl_ok(&[
        "wait",
        "--for=condition=failed",
        "job/bad",
        "--timeout=300s",
    ]);
    let reason = c.kubectl_ok(&[
        "get",
        "job",
        "bad",
        "-o",
        r#"jsonpath={.status.conditions[?(@.type=="Failed")].reason} {.status.failed}"#,
    ]);
    assert_eq!(reason.trim(), "BackoffLimitExceeded 2");
    let events = c.kubectl_ok(&["get", "events"]);
    assert!(
        events.contains("Job has reached the specified backoff limit"),
        "{events}"
    );
}
