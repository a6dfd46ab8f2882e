//! Graceful deletion: SIGTERM, the grace period and preStop hooks, and
//! pods deleted before their containers ever ran.

use super::*;

pub(crate) async fn cooperative_pod_is_gone_before_its_grace_period() {
    let env = Env::new(6).await;
    env.create(&format!(
        r#"
metadata: {{name: coop}}
spec:
  terminationGracePeriodSeconds: 30
  containers:
  - {{name: main, image: "{}", imagePullPolicy: IfNotPresent, command: [sh, -c, "trap 'exit 0' TERM; while true; do sleep 0.1; done"]}}
"#,
        busybox()
    ))
    .await;
    env.wait("coop", T, "running", |p| is_running(p, "main"))
        .await;
    let t0 = std::time::Instant::now();
    env.pods()
        .delete("coop", &Default::default())
        .await
        .unwrap();
    env.wait_gone("coop", Duration::from_secs(30)).await;
    // Well before the 30 s grace period: the container exited on SIGTERM.
    assert!(
        t0.elapsed() < Duration::from_secs(15),
        "took {:?}",
        t0.elapsed()
    );
    let events = env.events_with("coop", &["Killing:"]).await;
    assert!(
        events.contains(&"Killing: Stopping container main".to_string()),
        "{events:?}"
    );
    assert!(env.runtime.list_containers(None).await.unwrap().is_empty());
    env.teardown().await;
}

pub(crate) async fn sigterm_ignoring_pod_is_killed_at_the_grace_period() {
    let env = Env::new(7).await;
    env.create(&format!(
        r#"
metadata: {{name: stubborn}}
spec:
  terminationGracePeriodSeconds: 3
  containers:
  - {{name: main, image: "{}", imagePullPolicy: IfNotPresent, command: [sh, -c, "trap '' TERM; while true; do sleep 0.1; done"], lifecycle: {{preStop: {{exec: {{command: [sh, -c, "exit 7"]}}}}}}}}
"#,
        busybox()
    ))
    .await;
    env.wait("stubborn", T, "running", |p| is_running(p, "main"))
        .await;
    let t0 = std::time::Instant::now();
    env.pods()
        .delete("stubborn", &Default::default())
        .await
        .unwrap();
    // Still there (terminating) before the grace period ends.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let p = env
        .pods()
        .get_opt("stubborn")
        .await
        .unwrap()
        .expect("still terminating");
    assert!(p.metadata.deletion_timestamp.is_some());
    env.wait_gone("stubborn", Duration::from_secs(30)).await;
    let events = env.events_with("stubborn", &["FailedPreStopHook:"]).await;
    assert!(
        events
            .iter()
            .any(|e| e.starts_with("FailedPreStopHook: PreStopHook failed: ")),
        "{events:?}"
    );
    assert!(
        t0.elapsed() >= Duration::from_secs(3),
        "gone after {:?}",
        t0.elapsed()
    );
    env.teardown().await;
}

pub(crate) async fn pods_deleted_while_pulling_or_initializing_are_cleaned_up() {
    let env = Env::new(14).await;
    let img = busybox();
    env.create(&format!(
        r#"
metadata: {{name: initializing}}
spec:
  terminationGracePeriodSeconds: 1
  initContainers:
  - {{name: init, image: "{img}", imagePullPolicy: IfNotPresent, command: [sleep, "3600"]}}
  containers:
  - {{name: main, image: "{img}", imagePullPolicy: IfNotPresent, command: [sleep, "3600"]}}
"#
    ))
    .await;
    env.create(&format!(
        r#"
metadata: {{name: pulling}}
spec:
  containers:
  - {{name: main, image: "{}/orca/never-there:1.0"}}
"#,
        registry()
    ))
    .await;
    env.wait("initializing", T, "init running", |p| is_running(p, "init"))
        .await;
    env.wait("pulling", T, "ErrImagePull", |p| {
        matches!(
            waiting_reason(p, "main").as_deref(),
            Some("ErrImagePull" | "ImagePullBackOff")
        )
    })
    .await;
    for name in ["initializing", "pulling"] {
        env.pods().delete(name, &Default::default()).await.unwrap();
    }
    env.wait_gone("initializing", T).await;
    env.wait_gone("pulling", T).await;
    assert!(env.runtime.list_containers(None).await.unwrap().is_empty());
    assert!(env.runtime.list_sandboxes().await.unwrap().is_empty());
    env.teardown().await;
}
