//! Containers that exit: the crash-loop back-off, the restart policies'
//! final phases, and activeDeadlineSeconds.

use super::*;

pub(crate) async fn crashing_container_enters_crash_loop_back_off() {
    let env = Env::new(4).await;
    env.create(&format!(
        r#"
metadata: {{name: crash}}
spec:
  containers:
  - {{name: main, image: "{}", imagePullPolicy: IfNotPresent, command: [sh, -c, "echo about to fail; exit 1"]}}
"#,
        busybox()
    ))
    .await;
    let p = env
        .wait("crash", T, "CrashLoopBackOff", |p| {
            waiting_reason(p, "main").as_deref() == Some("CrashLoopBackOff")
        })
        .await;
    assert_eq!(phase(&p), "Running");
    let c = container(&p, "main").unwrap();
    let msg = c
        .state
        .as_ref()
        .unwrap()
        .waiting
        .as_ref()
        .unwrap()
        .message
        .clone()
        .unwrap();
    let uid = p.metadata.uid.clone().unwrap();
    assert_eq!(
        msg,
        format!("back-off 10s restarting failed container=main pod=crash_default({uid})")
    );
    let last = c
        .last_state
        .as_ref()
        .unwrap()
        .terminated
        .as_ref()
        .expect("lastState terminated");
    assert_eq!((last.exit_code, last.reason.as_deref()), (1, Some("Error")));
    assert_eq!(c.restart_count, 1);
    let events = env.events_with("crash", &["BackOff:"]).await;
    assert!(
        events.contains(&format!(
            "BackOff: Back-off restarting failed container main in pod crash_default({uid})"
        )),
        "{events:?}"
    );
    // Identical events fold into one whose count grows.
    let all: Vec<k8s_openapi::api::core::v1::Event> =
        kube::Api::namespaced(env.client.clone(), "default")
            .list(&Default::default())
            .await
            .unwrap()
            .items;
    let started: Vec<_> = all
        .iter()
        .filter(|e| {
            e.involved_object.name.as_deref() == Some("crash")
                && e.reason.as_deref() == Some("Started")
        })
        .collect();
    assert_eq!(started.len(), 1, "{started:?}");
    assert!(started[0].count.unwrap_or(0) >= 2, "{:?}", started[0]);
    assert_eq!(
        started[0]
            .source
            .as_ref()
            .and_then(|s| s.component.as_deref()),
        Some("kubelet")
    );
    assert_eq!(started[0].reporting_component.as_deref(), Some("kubelet"));
    assert_eq!(
        started[0].involved_object.field_path.as_deref(),
        Some("spec.containers{main}")
    );
    // The next restart waits the back-off out, then the delay doubles.
    let p = env
        .wait("crash", Duration::from_secs(40), "second restart", |p| {
            container(p, "main").is_some_and(|c| c.restart_count == 2)
                && waiting_reason(p, "main").as_deref() == Some("CrashLoopBackOff")
        })
        .await;
    let msg = container(&p, "main")
        .unwrap()
        .state
        .clone()
        .unwrap()
        .waiting
        .unwrap()
        .message
        .unwrap();
    assert!(
        msg.starts_with("back-off 20s restarting failed container=main"),
        "{msg}"
    );
    let previous = env
        .pods()
        .logs(
            "crash",
            &kube::api::LogParams {
                previous: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(previous, "about to fail\n");
    env.teardown().await;
}

pub(crate) async fn restart_policies_decide_the_final_phase() {
    let env = Env::new(5).await;
    let img = busybox();
    for (name, policy, code) in [
        ("onfailure-ok", "OnFailure", 0),
        ("never-bad", "Never", 1),
        ("never-ok", "Never", 0),
    ] {
        env.create(&format!(
            r#"
metadata: {{name: {name}}}
spec:
  restartPolicy: {policy}
  containers:
  - {{name: main, image: "{img}", imagePullPolicy: IfNotPresent, command: [sh, -c, "exit {code}"]}}
"#
        ))
        .await;
    }
    let p = env.wait_phase("onfailure-ok", T, "Succeeded").await;
    assert_eq!(condition(&p, "Ready").as_deref(), Some("False"));
    let p = env.wait_phase("never-bad", T, "Failed").await;
    let t = container(&p, "main")
        .unwrap()
        .state
        .clone()
        .unwrap()
        .terminated
        .unwrap();
    assert_eq!((t.exit_code, t.reason.as_deref()), (1, Some("Error")));
    assert_eq!(container(&p, "main").unwrap().restart_count, 0);
    env.wait_phase("never-ok", T, "Succeeded").await;
    env.teardown().await;
}

pub(crate) async fn active_deadline_fails_the_pod() {
    let env = Env::new(15).await;
    env.create(&format!(
        r#"
metadata: {{name: deadline}}
spec:
  activeDeadlineSeconds: 2
  terminationGracePeriodSeconds: 1
  containers:
  - {{name: main, image: "{}", imagePullPolicy: IfNotPresent, command: [sleep, "3600"]}}
"#,
        busybox()
    ))
    .await;
    let p = env.wait_phase("deadline", T, "Failed").await;
    let st = status(&p);
    assert_eq!(st.reason.as_deref(), Some("DeadlineExceeded"));
    assert_eq!(
        st.message.as_deref(),
        Some("Pod was active on the node longer than the specified deadline")
    );
    assert!(container(&p, "main")
        .unwrap()
        .state
        .as_ref()
        .unwrap()
        .terminated
        .is_some());
    let events = env.events_with("deadline", &["DeadlineExceeded:"]).await;
    assert!(
        events.contains(
            &"DeadlineExceeded: Pod was active on the node longer than the specified deadline"
                .to_string()
        ),
        "{events:?}"
    );
    env.teardown().await;
}
