//! Images: pull failures and their back-off, and image updates on a
//! running pod.

use super::*;

pub(crate) async fn missing_image_shows_err_image_pull_then_back_off() {
    let env = Env::new(9).await;
    let image = format!("{}/orca/doesnotexist:1.0", registry());
    env.create(&format!(
        r#"
metadata: {{name: badimage}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {{name: main, image: "{image}", command: [sleep, "3600"]}}
"#
    ))
    .await;
    let p = env
        .wait("badimage", T, "ErrImagePull", |p| {
            waiting_reason(p, "main").as_deref() == Some("ErrImagePull")
        })
        .await;
    assert_eq!(phase(&p), "Pending");
    let p = env
        .wait("badimage", T, "ImagePullBackOff", |p| {
            waiting_reason(p, "main").as_deref() == Some("ImagePullBackOff")
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
        msg.starts_with(&format!(
            "Back-off pulling image \"{image}\": ErrImagePull: "
        )),
        "{msg}"
    );
    let events = env
        .events_with(
            "badimage",
            &[
                "Pulling:",
                "Failed: Failed to pull",
                "Failed: Error: ErrImagePull",
                "BackOff:",
                "Failed: Error: ImagePullBackOff",
            ],
        )
        .await;
    assert!(
        events.contains(&format!("Pulling: Pulling image \"{image}\"")),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e.starts_with(&format!("Failed: Failed to pull image \"{image}\": "))),
        "{events:?}"
    );
    assert!(
        events.contains(&"Failed: Error: ErrImagePull".to_string()),
        "{events:?}"
    );
    assert!(
        events.contains(&format!("BackOff: Back-off pulling image \"{image}\"")),
        "{events:?}"
    );
    assert!(
        events.contains(&"Failed: Error: ImagePullBackOff".to_string()),
        "{events:?}"
    );

    // Fixing the image: the new one is pulled without the old one's
    // back-off and the container starts.
    use kube::api::{Patch, PatchParams};
    let good = busybox();
    env.pods()
        .patch(
            "badimage",
            &PatchParams::default(),
            &Patch::Strategic(serde_json::json!({
                "spec": {"containers": [{"name": "main", "image": good}]}
            })),
        )
        .await
        .expect("the API server accepts an image update");
    let p = env
        .wait("badimage", T, "running the fixed image", |p| {
            is_running(p, "main")
        })
        .await;
    let main = container(&p, "main").unwrap();
    assert_eq!(
        (main.image.as_str(), main.restart_count),
        (good.as_str(), 0)
    );
    env.teardown().await;
}

/// `kubectl set image` on a running pod: the changed container is killed and
/// started again from the new image; its sibling keeps running untouched.
pub(crate) async fn image_update_restarts_only_that_container() {
    use kube::api::{Patch, PatchParams};
    let env = Env::new(17).await;
    let img = busybox();
    env.create(&format!(
        r#"
metadata: {{name: imgupd}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {{name: changed, image: "{img}", imagePullPolicy: IfNotPresent, command: [sleep, "3600"]}}
  - {{name: kept, image: "{img}", imagePullPolicy: IfNotPresent, command: [sleep, "3600"]}}
"#
    ))
    .await;
    let before = env
        .wait("imgupd", T, "both containers running", |p| {
            is_running(p, "changed") && is_running(p, "kept")
        })
        .await;
    let id = |p: &k8s_openapi::api::core::v1::Pod, c: &str| {
        container(p, c)
            .and_then(|s| s.container_id.clone())
            .unwrap()
    };
    // The same image under a second name the registry serves.
    let new_img = format!("{}/library/busybox:latest", registry());
    env.pods()
        .patch(
            "imgupd",
            &PatchParams::default(),
            &Patch::Strategic(serde_json::json!({
                "spec": {"containers": [{"name": "changed", "image": new_img}]}
            })),
        )
        .await
        .expect("the API server accepts an image update");
    let after = env
        .wait("imgupd", T, "the changed container restarted", |p| {
            container(p, "changed").is_some_and(|c| c.restart_count == 1)
                && is_running(p, "changed")
        })
        .await;
    let changed = container(&after, "changed").unwrap();
    assert_ne!(changed.container_id, Some(id(&before, "changed")));
    assert_eq!(changed.image, new_img);
    assert!(
        changed
            .last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .is_some(),
        "the killed run is the last state: {changed:?}"
    );
    let kept = container(&after, "kept").unwrap();
    assert_eq!(kept.container_id, Some(id(&before, "kept")));
    assert_eq!((kept.restart_count, kept.image.as_str()), (0, img.as_str()));
    assert!(is_running(&after, "kept"));
    let events = env
        .events_with("imgupd", &["Killing: Container changed definition changed"])
        .await;
    assert!(
        events
            .iter()
            .any(|e| e == "Killing: Container changed definition changed, will be restarted"),
        "{events:?}"
    );
    assert!(
        !events.iter().any(|e| e.contains("Stopping container kept")),
        "{events:?}"
    );
    env.teardown().await;
}

/// Kubernetes' "auto-restart back-off timer reset on image update": a
/// crash-looping container whose image changes starts over at the first
/// back-off step.
pub(crate) async fn image_update_resets_the_crash_back_off() {
    use kube::api::{Patch, PatchParams};
    let env = Env::new(19).await;
    let img = busybox();
    env.create(&format!(
        r#"
metadata: {{name: backoff}}
spec:
  containers:
  - {{name: crash, image: "{img}", imagePullPolicy: IfNotPresent, command: [sh, -c, "exit 1"]}}
"#
    ))
    .await;
    let message = |p: &k8s_openapi::api::core::v1::Pod| {
        container(p, "crash")
            .and_then(|c| c.state.as_ref()?.waiting.as_ref()?.message.clone())
            .unwrap_or_default()
    };
    env.wait("backoff", T, "the second back-off step", |p| {
        message(p).starts_with("back-off 20s ")
    })
    .await;
    let new_img = format!("{}/library/busybox:latest", registry());
    env.pods()
        .patch(
            "backoff",
            &PatchParams::default(),
            &Patch::Strategic(serde_json::json!({
                "spec": {"containers": [{"name": "crash", "image": new_img}]}
            })),
        )
        .await
        .unwrap();
    let p = env
        .wait("backoff", T, "the new image crash-looping", |p| {
            container(p, "crash").is_some_and(|c| c.image == new_img)
                && waiting_reason(p, "crash").as_deref() == Some("CrashLoopBackOff")
        })
        .await;
    assert!(
        message(&p).starts_with("back-off 10s "),
        "the back-off starts over: {}",
        message(&p)
    );
    env.teardown().await;
}
