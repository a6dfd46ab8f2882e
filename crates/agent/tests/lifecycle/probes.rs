//! Liveness and readiness probes, and readiness gates, deciding restarts
//! and the Ready condition.

use super::*;

pub(crate) async fn liveness_failure_restarts_and_readiness_flips_ready() {
    let env = Env::new(8).await;
    let img = busybox();
    env.create(&format!(
        r#"
metadata: {{name: probed}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: live
    image: "{img}"
    imagePullPolicy: IfNotPresent
    command: [sh, -c, "touch /tmp/alive; exec sleep 3600"]
    livenessProbe: {{exec: {{command: [cat, /tmp/alive]}}, periodSeconds: 1, failureThreshold: 1}}
  - name: ready
    image: "{img}"
    imagePullPolicy: IfNotPresent
    command: [sh, -c, "exec sleep 3600"]
    readinessProbe: {{exec: {{command: [cat, /tmp/ready]}}, periodSeconds: 1}}
"#
    ))
    .await;
    let p = env
        .wait("probed", T, "running", |p| {
            is_running(p, "live") && is_running(p, "ready")
        })
        .await;
    assert_eq!(condition(&p, "Ready").as_deref(), Some("False"));
    assert!(!container(&p, "ready").unwrap().ready);
    let mut attached = env
        .pods()
        .exec(
            "probed",
            vec!["touch", "/tmp/ready"],
            &kube::api::AttachParams::default()
                .container("ready")
                .stderr(false),
        )
        .await
        .unwrap();
    let _ = attached.take_status().unwrap().await;
    env.wait("probed", T, "Ready", |p| {
        condition(p, "Ready").as_deref() == Some("True")
    })
    .await;
    let mut attached = env
        .pods()
        .exec(
            "probed",
            vec!["rm", "/tmp/alive"],
            &kube::api::AttachParams::default()
                .container("live")
                .stderr(false),
        )
        .await
        .unwrap();
    let _ = attached.take_status().unwrap().await;
    let p = env
        .wait("probed", T, "liveness restart", |p| {
            container(p, "live").is_some_and(|c| c.restart_count >= 1) && is_running(p, "live")
        })
        .await;
    assert!(container(&p, "live")
        .unwrap()
        .last_state
        .as_ref()
        .unwrap()
        .terminated
        .is_some());
    let events = env.events_with("probed", &["Killing:", "Unhealthy:"]).await;
    assert!(
        events.contains(
            &"Killing: Container live failed liveness probe, will be restarted".to_string()
        ),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e.starts_with("Unhealthy: Liveness probe failed: ")),
        "{events:?}"
    );
    env.teardown().await;
}

/// A readiness gate holds Ready at False until whoever owns its condition
/// sets it True through pods/status; the agent then flips Ready.
pub(crate) async fn readiness_gates_decide_ready() {
    use kube::api::{Patch, PatchParams};
    let env = Env::new(20).await;
    env.create(&format!(
        r#"
metadata: {{name: gated}}
spec:
  readinessGates: [{{conditionType: "example.com/lb"}}]
  terminationGracePeriodSeconds: 1
  containers:
  - {{name: main, image: "{}", imagePullPolicy: IfNotPresent, command: [sleep, "3600"]}}
"#,
        busybox()
    ))
    .await;
    let p = env
        .wait("gated", T, "containers ready", |p| {
            condition(p, "ContainersReady").as_deref() == Some("True")
        })
        .await;
    let ready = status(&p)
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Ready")
        .cloned()
        .unwrap();
    assert_eq!(ready.status, "False");
    assert_eq!(ready.reason.as_deref(), Some("ReadinessGatesNotReady"));
    assert_eq!(
        ready.message.as_deref(),
        Some("corresponding condition of pod readiness gate \"example.com/lb\" does not exist.")
    );

    let patch = serde_json::json!({"status": {"conditions": [
        {"type": "example.com/lb", "status": "True"}
    ]}});
    env.pods()
        .patch_status("gated", &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .expect("set the gate's condition");
    let p = env
        .wait("gated", T, "Ready", |p| {
            condition(p, "Ready").as_deref() == Some("True")
        })
        .await;
    assert_eq!(condition(&p, "example.com/lb").as_deref(), Some("True"));
    env.teardown().await;
}
