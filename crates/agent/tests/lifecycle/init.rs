//! Init containers: run in order before the app containers, shown as
//! kubectl shows them, and failing the pod when it does not restart.

use super::*;

pub(crate) async fn init_containers_run_in_order_before_the_app() {
    let env = Env::new(2).await;
    let img = busybox();
    env.create(&format!(
        r#"
metadata: {{name: init}}
spec:
  volumes: [{{name: shared, emptyDir: {{}}}}]
  initContainers:
  - {{name: first, image: "{img}", imagePullPolicy: IfNotPresent, command: [sh, -c, "sleep 1; echo first >> /shared/order"], volumeMounts: [{{name: shared, mountPath: /shared}}]}}
  - {{name: second, image: "{img}", imagePullPolicy: IfNotPresent, command: [sh, -c, "echo second >> /shared/order"], volumeMounts: [{{name: shared, mountPath: /shared}}]}}
  containers:
  - {{name: app, image: "{img}", imagePullPolicy: IfNotPresent, command: [sh, -c, "echo app >> /shared/order; cat /shared/order; exec sleep 3600"], volumeMounts: [{{name: shared, mountPath: /shared}}]}}
"#
    ))
    .await;
    // While the first init container runs the pod is Pending, not initialized.
    let p = env
        .wait("init", T, "first init container running", |p| {
            is_running(p, "first")
        })
        .await;
    assert_eq!(phase(&p), "Pending");
    assert_eq!(condition(&p, "Initialized").as_deref(), Some("False"));
    assert_eq!(
        waiting_reason(&p, "app").as_deref(),
        Some("PodInitializing")
    );
    let p = env
        .wait("init", T, "Ready", |p| {
            condition(p, "Ready").as_deref() == Some("True")
        })
        .await;
    assert_eq!(phase(&p), "Running");
    for name in ["first", "second"] {
        let c = container(&p, name).unwrap();
        let t = c
            .state
            .as_ref()
            .unwrap()
            .terminated
            .as_ref()
            .expect("init terminated");
        assert_eq!((t.exit_code, t.reason.as_deref()), (0, Some("Completed")));
        assert!(c.ready);
    }
    let logs = env
        .pods()
        .logs(
            "init",
            &kube::api::LogParams {
                container: Some("app".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(logs, "first\nsecond\napp\n");
    env.teardown().await;
}

/// What `kubectl get pods -w` prints in the STATUS column while a pod with
/// two init containers starts: the real kubectl, reading the API server's
/// tables, over the agent's status writes.
pub(crate) async fn kubectl_watch_shows_init_progress_then_running() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let env = Env::new(16).await;
    let kubeconfig = env.api.as_ref().unwrap().kubeconfig_path().to_path_buf();
    // Watch the namespace (a named pod cannot be watched before it exists);
    // -v=6 logs each request, so stderr tells when the watch is open.
    let mut kubectl = tokio::process::Command::new("/usr/bin/kubectl")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["get", "pods", "-w", "--no-headers", "-v=6"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run /usr/bin/kubectl");
    let pid = kubectl.id().expect("kubectl pid");
    let mut stderr = BufReader::new(kubectl.stderr.take().unwrap()).lines();
    let opened = tokio::time::timeout(T, async {
        while let Ok(Some(line)) = stderr.next_line().await {
            if line.contains("watch=true") && line.contains("200 OK") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(opened, Ok(true), "kubectl never opened its watch");
    // Keep draining kubectl's log so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = stderr.next_line().await {} });
    let img = busybox();
    env.create(&format!(
        r#"
metadata: {{name: phases}}
spec:
  initContainers:
  - {{name: one, image: "{img}", imagePullPolicy: IfNotPresent, command: [sleep, "2"]}}
  - {{name: two, image: "{img}", imagePullPolicy: IfNotPresent, command: [sleep, "2"]}}
  containers:
  - {{name: app, image: "{img}", imagePullPolicy: IfNotPresent, command: [sleep, "3600"]}}
"#
    ))
    .await;
    let mut stdout = BufReader::new(kubectl.stdout.take().unwrap()).lines();
    let mut seen: Vec<String> = Vec::new();
    let outcome = tokio::time::timeout(T, async {
        while let Ok(Some(line)) = stdout.next_line().await {
            let cols: Vec<&str> = line.split_whitespace().collect();
            assert!(cols.len() >= 3, "unexpected kubectl line {line:?}");
            assert_eq!(cols[0], "phases", "{line:?}");
            seen.push(cols[2].to_string());
            if cols[2] == "Running" {
                return true;
            }
        }
        false
    })
    .await;
    // Stop kubectl by its pid (the watch never ends by itself).
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = kubectl.wait().await;
    assert_eq!(outcome, Ok(true), "never saw Running; STATUS went {seen:?}");
    // Each status once, in order; the pod may show Pending before the agent's first write.
    let mut steps = seen.clone();
    steps.dedup();
    if steps.first().map(String::as_str) == Some("Pending") {
        steps.remove(0);
    }
    assert_eq!(
        steps,
        ["Init:0/2", "Init:1/2", "PodInitializing", "Running"],
        "STATUS went {seen:?}"
    );
    env.teardown().await;
}

pub(crate) async fn failing_init_container_with_never_fails_the_pod() {
    let env = Env::new(3).await;
    let img = busybox();
    env.create(&format!(
        r#"
metadata: {{name: badinit}}
spec:
  restartPolicy: Never
  initContainers:
  - {{name: init, image: "{img}", imagePullPolicy: IfNotPresent, command: [sh, -c, "exit 2"]}}
  containers:
  - {{name: app, image: "{img}", imagePullPolicy: IfNotPresent, command: [sleep, "3600"]}}
"#
    ))
    .await;
    let p = env.wait_phase("badinit", T, "Failed").await;
    let t = container(&p, "init")
        .unwrap()
        .state
        .clone()
        .unwrap()
        .terminated
        .unwrap();
    assert_eq!((t.exit_code, t.reason.as_deref()), (2, Some("Error")));
    assert_eq!(
        waiting_reason(&p, "app").as_deref(),
        Some("PodInitializing")
    );
    assert_eq!(condition(&p, "Initialized").as_deref(), Some("False"));
    env.teardown().await;
}
