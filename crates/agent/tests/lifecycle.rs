//! The agent driving real containers through a real API server: pods with
//! `spec.nodeName` preset, checked through the API as kubectl would see
//! them. Runs as root. The test binary doubles as the runtime's shim and
//! pause process, hence its own `main` (harness = false).

mod common;
#[path = "lifecycle/security.rs"]
mod security;

use std::time::Duration;

use common::stream;
use common::*;
use libtest_mimic::{Arguments, Failed, Trial};
use orca_runtime::Runtime;

type Case = fn() -> futures::future::BoxFuture<'static, ()>;

fn main() {
    orca_runtime::run_internal_command_if_requested();
    let args = Arguments::from_args();
    let tests: Vec<(&str, Case)> = vec![
        ("pod_runs_with_kubernetes_status_and_events", || {
            Box::pin(pod_runs_with_kubernetes_status_and_events())
        }),
        ("init_containers_run_in_order_before_the_app", || {
            Box::pin(init_containers_run_in_order_before_the_app())
        }),
        ("kubectl_watch_shows_init_progress_then_running", || {
            Box::pin(kubectl_watch_shows_init_progress_then_running())
        }),
        ("failing_init_container_with_never_fails_the_pod", || {
            Box::pin(failing_init_container_with_never_fails_the_pod())
        }),
        ("crashing_container_enters_crash_loop_back_off", || {
            Box::pin(crashing_container_enters_crash_loop_back_off())
        }),
        ("restart_policies_decide_the_final_phase", || {
            Box::pin(restart_policies_decide_the_final_phase())
        }),
        ("cooperative_pod_is_gone_before_its_grace_period", || {
            Box::pin(cooperative_pod_is_gone_before_its_grace_period())
        }),
        ("sigterm_ignoring_pod_is_killed_at_the_grace_period", || {
            Box::pin(sigterm_ignoring_pod_is_killed_at_the_grace_period())
        }),
        (
            "liveness_failure_restarts_and_readiness_flips_ready",
            || Box::pin(liveness_failure_restarts_and_readiness_flips_ready()),
        ),
        ("missing_image_shows_err_image_pull_then_back_off", || {
            Box::pin(missing_image_shows_err_image_pull_then_back_off())
        }),
        ("agent_restart_keeps_pods_running", || {
            Box::pin(agent_restart_keeps_pods_running())
        }),
        ("config_sources_hooks_and_termination_messages", || {
            Box::pin(config_sources_hooks_and_termination_messages())
        }),
        (
            "pods_deleted_while_pulling_or_initializing_are_cleaned_up",
            || Box::pin(pods_deleted_while_pulling_or_initializing_are_cleaned_up()),
        ),
        ("active_deadline_fails_the_pod", || {
            Box::pin(active_deadline_fails_the_pod())
        }),
        ("readiness_gates_decide_ready", || {
            Box::pin(readiness_gates_decide_ready())
        }),
        ("safe_sysctls_apply_and_unsafe_ones_are_refused", || {
            Box::pin(safe_sysctls_apply_and_unsafe_ones_are_refused())
        }),
        ("image_update_restarts_only_that_container", || {
            Box::pin(image_update_restarts_only_that_container())
        }),
        ("image_update_resets_the_crash_back_off", || {
            Box::pin(image_update_resets_the_crash_back_off())
        }),
        ("api_data_volumes_follow_their_sources", || {
            Box::pin(api_data_volumes_follow_their_sources())
        }),
        (
            "service_account_credentials_are_on_tmpfs_and_refreshed",
            || Box::pin(service_account_credentials_are_on_tmpfs_and_refreshed()),
        ),
        ("a_pod_calls_the_api_server_with_its_token", || {
            Box::pin(a_pod_calls_the_api_server_with_its_token())
        }),
        ("streaming_logs_honour_kubectl_options", || {
            Box::pin(streaming_logs_honour_kubectl_options())
        }),
        ("streaming_exec_speaks_v5_and_v4_with_tty", || {
            Box::pin(streaming_exec_speaks_v5_and_v4_with_tty())
        }),
        ("seccomp_and_fs_group_apply_to_running_pods", || {
            Box::pin(security::seccomp_and_fs_group_apply_to_running_pods())
        }),
    ];
    let trials = tests
        .into_iter()
        .map(|(name, f)| {
            Trial::test(name, move || {
                std::panic::catch_unwind(|| {
                    tokio::runtime::Builder::new_multi_thread()
                        .worker_threads(2)
                        .enable_all()
                        .build()
                        .unwrap()
                        .block_on(f())
                })
                .map_err(|e| {
                    Failed::from(
                        e.downcast_ref::<String>()
                            .cloned()
                            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_default(),
                    )
                })
            })
        })
        .collect();
    libtest_mimic::run(&args, trials).exit();
}

const T: Duration = Duration::from_secs(60);

async fn pod_runs_with_kubernetes_status_and_events() {
    let env = Env::new(1).await;
    env.create(&format!(
        r#"
metadata: {{name: web, labels: {{app: web}}}}
spec:
  containers:
  - name: main
    image: {}
    imagePullPolicy: IfNotPresent
    command: [sh, -c, "echo hello from web; echo second line; exec sleep 3600"]
    env:
    - {{name: MY_POD, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}
    - {{name: GREETING, value: "hi $(MY_POD)"}}
"#,
        busybox()
    ))
    .await;
    let p = env
        .wait("web", T, "Ready", |p| {
            condition(p, "Ready").as_deref() == Some("True")
        })
        .await;
    let st = status(&p);
    assert_eq!(st.phase.as_deref(), Some("Running"));
    assert_eq!(st.host_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(st.qos_class.as_deref(), Some("BestEffort"));
    let ip = st.pod_ip.clone().expect("pod IP");
    assert!(ip.starts_with("10.249.1."), "{ip}");
    assert!(st.start_time.is_some());
    let types: Vec<&str> = st
        .conditions
        .iter()
        .flatten()
        .map(|c| c.type_.as_str())
        .collect();
    assert_eq!(
        types,
        vec![
            "PodReadyToStartContainers",
            "Initialized",
            "Ready",
            "ContainersReady",
            "PodScheduled"
        ]
    );
    let c = container(&p, "main").unwrap();
    assert!(c.container_id.as_deref().unwrap().starts_with("orca://"));
    assert_eq!(c.restart_count, 0);
    assert!(c.ready);
    assert_eq!(c.started, Some(true));
    assert!(!c.image_id.is_empty());
    let events = env
        .events_with("web", &["Pulling:", "Pulled:", "Created:", "Started:"])
        .await;
    let want = [
        format!("Pulling: Pulling image \"{}\"", busybox()),
        "Created: Created container: main".to_string(),
        "Started: Started container main".to_string(),
    ];
    for w in &want {
        assert!(events.contains(w), "missing event {w:?} in {events:?}");
    }
    assert!(
        events.iter().any(|e| e.starts_with(&format!(
            "Pulled: Successfully pulled image \"{}\" in ",
            busybox()
        ))),
        "{events:?}"
    );
    // The node is Ready with a lease.
    let node: k8s_openapi::api::core::v1::Node = kube::Api::all(env.client.clone())
        .get(&env.node)
        .await
        .unwrap();
    let ready = node
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_deref()),
        ("True", Some("KubeletReady"))
    );
    let lease: k8s_openapi::api::coordination::v1::Lease =
        kube::Api::namespaced(env.client.clone(), "kube-node-lease")
            .get(&env.node)
            .await
            .unwrap();
    assert_eq!(
        lease.spec.unwrap().holder_identity.as_deref(),
        Some(env.node.as_str())
    );

    // Logs and exec through the API server's proxy to the streaming server.
    let logs = env.pods().logs("web", &Default::default()).await.unwrap();
    assert_eq!(logs, "hello from web\nsecond line\n");
    let tail = env
        .pods()
        .logs(
            "web",
            &kube::api::LogParams {
                tail_lines: Some(1),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(tail, "second line\n");
    let (out, code) = exec(
        &env,
        "web",
        &["sh", "-c", "echo $GREETING; cat /etc/hostname; exit 3"],
    )
    .await;
    assert_eq!(out, "hi web\nweb\n");
    assert_eq!(code, Some(3));
    env.teardown().await;
}

/// Runs a command through pods/exec; returns stdout and the exit code.
async fn exec(env: &Env, pod: &str, cmd: &[&str]) -> (String, Option<i32>) {
    use tokio::io::AsyncReadExt;
    let mut attached = env
        .pods()
        .exec(
            pod,
            cmd.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            &kube::api::AttachParams::default().stderr(false),
        )
        .await
        .expect("exec");
    let mut out = String::new();
    attached
        .stdout()
        .unwrap()
        .read_to_string(&mut out)
        .await
        .unwrap();
    let status = attached.take_status().unwrap().await;
    let code = status.map(|s| {
        if s.status.as_deref() == Some("Success") {
            0
        } else {
            s.details
                .and_then(|d| d.causes)
                .and_then(|c| {
                    c.into_iter()
                        .find(|c| c.reason.as_deref() == Some("ExitCode"))
                })
                .and_then(|c| c.message)
                .and_then(|m| m.parse().ok())
                .unwrap_or(-1)
        }
    });
    (out, code)
}

async fn init_containers_run_in_order_before_the_app() {
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
async fn kubectl_watch_shows_init_progress_then_running() {
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

async fn failing_init_container_with_never_fails_the_pod() {
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

async fn crashing_container_enters_crash_loop_back_off() {
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

async fn restart_policies_decide_the_final_phase() {
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

async fn cooperative_pod_is_gone_before_its_grace_period() {
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

async fn sigterm_ignoring_pod_is_killed_at_the_grace_period() {
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

async fn liveness_failure_restarts_and_readiness_flips_ready() {
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

async fn missing_image_shows_err_image_pull_then_back_off() {
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

/// The host pid of a container's process and that process's start time
/// (field 22 of /proc/PID/stat, which tells it from a reused pid), read from
/// the state its shim keeps under DATA_DIR/agent/containers/ID.
fn container_process(env: &Env, container_id: &str) -> (i32, u64) {
    let id = container_id.trim_start_matches("orca://");
    let path = env
        .dir
        .path()
        .join("agent/containers")
        .join(id)
        .join("state.json");
    let state: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap();
    let pid = state["pid"].as_i64().expect("pid in the shim's state") as i32;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("container {id}: process {pid} is gone: {e}"));
    let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
    let start = after_comm.split(' ').nth(19).unwrap().parse().unwrap();
    (pid, start)
}

async fn agent_restart_keeps_pods_running() {
    const PODS: usize = 10;
    let mut env = Env::new(10).await;
    let img = busybox();
    let spec = |name: &str| {
        format!(
            r#"
metadata: {{name: {name}}}
spec:
  containers:
  - {{name: main, image: "{img}", imagePullPolicy: IfNotPresent, command: [sleep, "3600"]}}
"#
        )
    };
    // Ten pods that must survive, and one deleted while the agent is away.
    let names: Vec<String> = (0..PODS).map(|i| format!("keep-{i}")).collect();
    let specs: Vec<String> = names
        .iter()
        .map(|n| spec(n))
        .chain([spec("gone")])
        .collect();
    futures::future::join_all(specs.iter().map(|s| env.create(s))).await;
    let ready =
        |p: &k8s_openapi::api::core::v1::Pod| condition(p, "Ready").as_deref() == Some("True");
    let before = futures::future::join_all(
        names
            .iter()
            .chain([&"gone".to_string()])
            .map(|n| env.wait(n, T, "Ready", ready)),
    )
    .await;
    // containerID, startedAt and the process behind each kept container.
    let observe = |p: &k8s_openapi::api::core::v1::Pod| {
        let c = container(p, "main").unwrap().clone();
        let started = c
            .state
            .as_ref()
            .and_then(|s| s.running.as_ref())
            .and_then(|r| r.started_at.clone())
            .expect("running with startedAt");
        let id = c.container_id.clone().expect("containerID");
        (id, started)
    };
    let kept: Vec<_> = before[..PODS]
        .iter()
        .map(|p| {
            let (id, started) = observe(p);
            let process = container_process(&env, &id);
            (id, started, process)
        })
        .collect();

    // A pod force-deleted while the agent is away is cleaned up when it
    // returns; the others keep their containers.
    env.stop_agent().await;
    env.pods()
        .delete("gone", &kube::api::DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    env.wait_gone("gone", T).await;
    // Volume files of a pod that vanished before it got a sandbox.
    let stray = env.dir.path().join("agent/volumes/no-such-pod/cfg");
    std::fs::create_dir_all(&stray).unwrap();
    env.restart_agent().await;
    env.wait_node_ready().await;
    let t0 = std::time::Instant::now();
    while env.runtime.list_sandboxes().await.unwrap().len() != PODS || stray.exists() {
        assert!(
            t0.elapsed() < T,
            "the deleted pod's sandbox or the stray volume files were not removed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Give the new workers time to (wrongly) restart anything.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (name, (id, started, process)) in names.iter().zip(&kept) {
        let p = env.pods().get(name).await.unwrap();
        assert!(is_running(&p, "main"), "{name} is not running");
        let (now_id, now_started) = observe(&p);
        assert_eq!(&now_id, id, "{name} got a new container");
        assert_eq!(&now_started, started, "{name}: startedAt changed");
        assert_eq!(container(&p, "main").unwrap().restart_count, 0, "{name}");
        assert_eq!(condition(&p, "Ready").as_deref(), Some("True"), "{name}");
        assert_eq!(
            &container_process(&env, id),
            process,
            "{name}: its process was replaced"
        );
    }
    assert_eq!(env.runtime.list_containers(None).await.unwrap().len(), PODS);
    env.teardown().await;
}

async fn streaming_logs_honour_kubectl_options() {
    let env = Env::new(11).await;
    env.create(&format!(
        r#"
metadata: {{name: talker}}
spec:
  restartPolicy: Never
  containers:
  - {{name: main, image: "{}", imagePullPolicy: IfNotPresent, command: [sh, -c, "echo one; sleep 0.5; echo two >&2; sleep 2; echo three; sleep 1"]}}
"#,
        busybox()
    ))
    .await;
    env.wait("talker", T, "running", |p| is_running(p, "main"))
        .await;
    let base = "/containerLogs/default/talker/main";
    // follow streams until the container exits.
    let (code, body) = env.streaming_get(&format!("{base}?follow=true")).await;
    assert_eq!((code, body.as_str()), (200, "one\ntwo\nthree\n"));
    let (_, body) = env.streaming_get(&format!("{base}?tailLines=1")).await;
    assert_eq!(body, "three\n");
    let (_, body) = env.streaming_get(&format!("{base}?limitBytes=6")).await;
    assert_eq!(body, "one\ntw");
    let (_, body) = env
        .streaming_get(&format!("{base}?timestamps=true&tailLines=1"))
        .await;
    let (ts, rest) = body.split_once(' ').unwrap();
    assert_eq!(rest, "three\n");
    assert!(chrono::DateTime::parse_from_rfc3339(ts).is_ok(), "{ts}");
    let future = (chrono::Utc::now() + chrono::Duration::hours(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let (_, body) = env
        .streaming_get(&format!("{base}?sinceTime={future}"))
        .await;
    assert_eq!(body, "");
    let (_, body) = env
        .streaming_get(&format!("{base}?sinceSeconds=3600"))
        .await;
    assert_eq!(body, "one\ntwo\nthree\n");
    let (code, body) = env
        .streaming_get("/containerLogs/default/nosuch/main")
        .await;
    assert_eq!(code, 404, "{body}");
    // No client certificate, no logs.
    let denied = match env.streaming_tls(false).await {
        Err(_) => true,
        Ok(mut tls) => {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let _ = tls
                .write_all(b"GET /containerLogs/default/talker/main HTTP/1.1\r\nHost: x\r\n\r\n")
                .await;
            let mut buf = Vec::new();
            matches!(tls.read_to_end(&mut buf).await, Err(_) | Ok(0))
        }
    };
    assert!(
        denied,
        "the streaming server served a client without a certificate"
    );
    env.teardown().await;
}

async fn streaming_exec_speaks_v5_and_v4_with_tty() {
    let env = Env::new(12).await;
    env.create(&format!(
        r#"
metadata: {{name: shell}}
spec:
  containers:
  - {{name: main, image: "{}", imagePullPolicy: IfNotPresent, command: [sleep, "3600"]}}
"#,
        busybox()
    ))
    .await;
    env.wait("shell", T, "running", |p| is_running(p, "main"))
        .await;
    // v5 with a terminal: resize, type a command, read the exit code.
    let mut ws = env
        .streaming_ws(
            "/exec/default/shell/main?command=sh&stdin=true&stdout=true&tty=true",
            "v5.channel.k8s.io",
        )
        .await;
    ws.send(4, br#"{"Width":100,"Height":40}"#).await;
    // The resize reaches the terminal on its own path, so under load the
    // typed line can overtake it (as in Kubernetes): wait for a size first.
    // The terminal echoes the input, hence output matched with line ends.
    ws.send(
        0,
        b"for i in $(seq 50); do stty size >/dev/null 2>&1 && break; sleep 0.1; done; stty size; echo hi; exit 3\n",
    )
    .await;
    let out = ws.finish().await;
    assert!(out.stdout.contains("\n40 100\r\n"), "{out:?}");
    assert!(out.stdout.contains("\nhi\r\n"), "{out:?}");
    let status = out.status.expect("exit status on the error channel");
    assert_eq!(status["status"], "Failure");
    assert_eq!(status["details"]["causes"][0]["message"], "3");
    // v5 without a terminal: stdin closed by the client's close frame.
    let mut ws = env
        .streaming_ws(
            "/exec/default/shell/main?command=cat&stdin=true&stdout=true&stderr=true",
            "v5.channel.k8s.io",
        )
        .await;
    ws.send(0, b"abc").await;
    ws.send(255, &[0]).await;
    let out = ws.finish().await;
    assert_eq!(out.stdout, "abc");
    assert_eq!(out.status.unwrap()["status"], "Success");
    // v4: separate stderr, exit status.
    let ws = env
        .streaming_ws(
            "/exec/default/shell/main?command=sh&command=-c&command=echo%20out%3B%20echo%20err%20%3E%262%3B%20exit%205&stdout=true&stderr=true",
            "v4.channel.k8s.io",
        )
        .await;
    let out = ws.finish().await;
    assert_eq!(
        (out.stdout.as_str(), out.stderr.as_str()),
        ("out\n", "err\n")
    );
    assert_eq!(out.status.unwrap()["details"]["causes"][0]["message"], "5");
    // attach to a container's own stdin and stdout.
    env.create(&format!(
        r#"
metadata: {{name: reader}}
spec:
  containers:
  - {{name: main, image: "{}", imagePullPolicy: IfNotPresent, stdin: true, command: [sh, -c, "read x; echo got $x; sleep 3600"]}}
"#,
        busybox()
    ))
    .await;
    env.wait("reader", T, "running", |p| is_running(p, "main"))
        .await;
    let mut ws = env
        .streaming_ws(
            "/attach/default/reader/main?stdin=true&stdout=true&stderr=true",
            "v5.channel.k8s.io",
        )
        .await;
    ws.send(0, b"hello\n").await;
    let mut out = stream::Output::default();
    ws.read_until(&mut out, "got hello").await;
    assert!(out.stdout.contains("got hello"), "{out:?}");

    // The protocols before v4, which the upstream e2e suite still uses: no
    // Status, the failure as text on the error channel.
    let ws = env
        .streaming_ws(
            "/exec/default/shell/main?command=sh&command=-c&command=echo%20remote%20execution%20test%3B%20exit%204&stdout=1&stderr=1",
            "channel.k8s.io",
        )
        .await;
    let out = ws.finish().await;
    assert_eq!(out.stdout, "remote execution test\n", "{out:?}");
    assert_eq!(
        out.error_text,
        "command terminated with non-zero exit code: error executing command, exit code 4"
    );
    // base64: text frames, the channel as a digit; stdin travels the same way.
    let mut ws = env
        .streaming_ws(
            "/exec/default/shell/main?command=sh&command=-c&command=read%20x%3B%20echo%20got%20%24x&stdin=1&stdout=1",
            "base64.channel.k8s.io",
        )
        .await;
    ws.send_base64(0, b"b64\n").await;
    let out = ws.finish().await;
    assert_eq!(out.stdout, "got b64\n", "{out:?}");
    assert_eq!(out.error_text, "", "success sends nothing: {out:?}");

    // Port-forward over the WebSocket channel protocol (as the e2e suite's
    // "should support forwarding over websockets"): each channel first says
    // its port, then data flows on channel 0.
    env.create(&format!(
        r#"
metadata: {{name: greeter}}
spec:
  containers:
  - {{name: main, image: "{}", imagePullPolicy: IfNotPresent, command: [sh, -c, "while true; do echo hello from the pod | nc -l -p 8080; done"]}}
"#,
        busybox()
    ))
    .await;
    env.wait("greeter", T, "running", |p| is_running(p, "main"))
        .await;
    let mut ws = env
        .streaming_ws(
            "/portForward/default/greeter?port=8080",
            "v4.channel.k8s.io",
        )
        .await;
    let mut out = stream::Output::default();
    assert_eq!(ws.next_on(&mut out, 0).await, 8080u16.to_le_bytes());
    assert_eq!(ws.next_on(&mut out, 1).await, 8080u16.to_le_bytes());
    ws.send(0, b"hi\n").await;
    let data = ws.next_on(&mut out, 0).await;
    assert_eq!(String::from_utf8_lossy(&data), "hello from the pod\n");
    env.teardown().await;
}

async fn config_sources_hooks_and_termination_messages() {
    use k8s_openapi::api::core::v1::{ConfigMap, Secret};
    let env = Env::new(13).await;
    let cms: kube::Api<ConfigMap> = kube::Api::namespaced(env.client.clone(), "default");
    let cm: ConfigMap =
        serde_yaml::from_str("metadata: {name: settings}\ndata: {color: blue, size: large}")
            .unwrap();
    cms.create(&Default::default(), &cm).await.unwrap();
    let secrets: kube::Api<Secret> = kube::Api::namespaced(env.client.clone(), "default");
    let secret: Secret =
        serde_yaml::from_str("metadata: {name: creds}\nstringData: {password: s3cret}").unwrap();
    secrets.create(&Default::default(), &secret).await.unwrap();
    let img = busybox();
    env.create(&format!(
        r#"
metadata: {{name: configured, labels: {{tier: front}}}}
spec:
  restartPolicy: Never
  volumes:
  - {{name: cfg, configMap: {{name: settings, items: [{{key: color, path: dir/color.txt}}]}}}}
  - {{name: sec, secret: {{secretName: creds, defaultMode: 256}}}}
  - {{name: info, downwardAPI: {{items: [{{path: labels, fieldRef: {{fieldPath: metadata.labels}}}}]}}}}
  containers:
  - name: main
    image: "{img}"
    imagePullPolicy: IfNotPresent
    envFrom: [{{prefix: CFG_, configMapRef: {{name: settings}}}}]
    env:
    - {{name: PASSWORD, valueFrom: {{secretKeyRef: {{name: creds, key: password}}}}}}
    - {{name: NODE, valueFrom: {{fieldRef: {{fieldPath: spec.nodeName}}}}}}
    - {{name: POD_IP, valueFrom: {{fieldRef: {{fieldPath: status.podIP}}}}}}
    lifecycle:
      postStart: {{exec: {{command: [sh, -c, "echo started > /tmp/poststart"]}}}}
    volumeMounts:
    - {{name: cfg, mountPath: /etc/cfg}}
    - {{name: sec, mountPath: /etc/sec}}
    - {{name: info, mountPath: /etc/info}}
    command:
    - sh
    - -c
    - |
      sleep 1
      echo "color=$(cat /etc/cfg/dir/color.txt) size=$CFG_size pw=$PASSWORD/$(cat /etc/sec/password) node=$NODE ip=${{POD_IP:+set}} $(cat /etc/info/labels) $(cat /tmp/poststart)"
      echo "all done" > /dev/termination-log
  - name: fallback
    image: "{img}"
    imagePullPolicy: IfNotPresent
    terminationMessagePolicy: FallbackToLogsOnError
    command: [sh, -c, "echo last words; exit 4"]
  - name: unterminated
    image: "{img}"
    imagePullPolicy: IfNotPresent
    terminationMessagePolicy: FallbackToLogsOnError
    command: [sh, -c, "echo -n DONE; exit 1"]
  - name: nonroot
    image: "{img}"
    imagePullPolicy: IfNotPresent
    securityContext: {{runAsUser: 1000}}
    terminationMessagePath: /dev/termination-custom-log
    command: [sh, -c, "echo -n DONE > /dev/termination-custom-log"]
"#
    ))
    .await;
    let p = env.wait_phase("configured", T, "Failed").await;
    // A last line without a newline stays without one (the conformance
    // suite's "termination message from log output" spec), and any user may
    // write the termination message file, wherever it is.
    for (name, code) in [("unterminated", 1), ("nonroot", 0)] {
        let t = container(&p, name)
            .unwrap()
            .state
            .clone()
            .unwrap()
            .terminated
            .unwrap();
        assert_eq!(
            (t.exit_code, t.message.as_deref()),
            (code, Some("DONE")),
            "{name}"
        );
    }
    let logs = env
        .pods()
        .logs(
            "configured",
            &kube::api::LogParams {
                container: Some("main".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        logs,
        format!(
            "color=blue size=large pw=s3cret/s3cret node={} ip=set tier=\"front\" started\n",
            env.node
        )
    );
    let main = container(&p, "main")
        .unwrap()
        .state
        .clone()
        .unwrap()
        .terminated
        .unwrap();
    assert_eq!(
        (main.exit_code, main.message.as_deref()),
        (0, Some("all done\n"))
    );
    let fallback = container(&p, "fallback")
        .unwrap()
        .state
        .clone()
        .unwrap()
        .terminated
        .unwrap();
    assert_eq!(
        (fallback.exit_code, fallback.message.as_deref()),
        (4, Some("last words\n"))
    );

    // A missing configMap keeps the pod in ContainerCreating with FailedMount.
    env.create(&format!(
        r#"
metadata: {{name: nocfg}}
spec:
  volumes: [{{name: cfg, configMap: {{name: absent}}}}]
  containers:
  - {{name: main, image: "{img}", imagePullPolicy: IfNotPresent, command: [sleep, "3600"]}}
"#
    ))
    .await;
    let t0 = std::time::Instant::now();
    loop {
        let events = env.events("nocfg").await;
        if events.contains(&r#"FailedMount: MountVolume.SetUp failed for volume "cfg" : configmap "absent" not found"#.to_string()) {
            break;
        }
        assert!(t0.elapsed() < T, "no FailedMount event: {events:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let p = env.pods().get("nocfg").await.unwrap();
    assert_eq!(
        waiting_reason(&p, "main").as_deref(),
        Some("ContainerCreating")
    );
    env.teardown().await;
}

async fn pods_deleted_while_pulling_or_initializing_are_cleaned_up() {
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

async fn active_deadline_fails_the_pod() {
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

/// A readiness gate holds Ready at False until whoever owns its condition
/// sets it True through pods/status; the agent then flips Ready.
async fn readiness_gates_decide_ready() {
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

/// Pod sysctls from the kubelet's safe set are set in the pod's namespaces;
/// any other one makes the node refuse the pod (SysctlForbidden).
async fn safe_sysctls_apply_and_unsafe_ones_are_refused() {
    let env = Env::new(21).await;
    env.create(&format!(
        r#"
metadata: {{name: tuned}}
spec:
  restartPolicy: Never
  securityContext:
    sysctls: [{{name: kernel.shm_rmid_forced, value: "1"}}, {{name: net.ipv4.ip_local_port_range, value: "20000 30000"}}]
  containers:
  - {{name: main, image: "{}", imagePullPolicy: IfNotPresent,
     command: [sh, -c, "cat /proc/sys/kernel/shm_rmid_forced /proc/sys/net/ipv4/ip_local_port_range"]}}
"#,
        busybox()
    ))
    .await;
    env.wait_phase("tuned", T, "Succeeded").await;
    let logs = env
        .pods()
        .logs("tuned", &Default::default())
        .await
        .expect("logs");
    // ip_local_port_range separates its two numbers with a tab.
    let lines: Vec<String> = logs
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(lines, ["1", "20000 30000"], "{logs:?}");

    env.create(&format!(
        r#"
metadata: {{name: greedy}}
spec:
  securityContext:
    sysctls: [{{name: kernel.msgmax, value: "10000"}}]
  containers:
  - {{name: main, image: "{}", imagePullPolicy: IfNotPresent, command: [sleep, "3600"]}}
"#,
        busybox()
    ))
    .await;
    let p = env.wait_phase("greedy", T, "Failed").await;
    let st = status(&p);
    assert_eq!(st.reason.as_deref(), Some("SysctlForbidden"));
    assert_eq!(
        st.message.as_deref(),
        Some("forbidden sysctl: \"kernel.msgmax\" not allowlisted")
    );
    assert!(env
        .runtime
        .list_containers(Some(p.metadata.uid.as_deref().unwrap()))
        .await
        .unwrap()
        .is_empty());
    let events = env.events_with("greedy", &["SysctlForbidden:"]).await;
    assert!(
        events.contains(
            &"SysctlForbidden: forbidden sysctl: \"kernel.msgmax\" not allowlisted".to_string()
        ),
        "{events:?}"
    );
    env.teardown().await;
}

/// `kubectl set image` on a running pod: the changed container is killed and
/// started again from the new image; its sibling keeps running untouched.
async fn image_update_restarts_only_that_container() {
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

/// configMap and downwardAPI volumes follow their sources while the pod
/// runs (the kubelet's `..data` layout, swapped atomically); an optional
/// configMap created later fills its volume; a subPath mount keeps the
/// content it started with.
async fn sh(env: &Env, pod: &str, script: &str) -> (String, Option<i32>) {
    exec(env, pod, &["sh", "-c", script]).await
}

/// Kubernetes' "auto-restart back-off timer reset on image update": a
/// crash-looping container whose image changes starts over at the first
/// back-off step.
async fn image_update_resets_the_crash_back_off() {
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

/// Runs `script` in the pod until it prints `want`; panics after `T`.
async fn wait_output(env: &Env, pod: &str, script: &str, want: &str) {
    let t0 = std::time::Instant::now();
    loop {
        let (out, _) = sh(env, pod, script).await;
        if out == want {
            return;
        }
        assert!(
            t0.elapsed() < T,
            "{script:?} printed {out:?} after {T:?}, not {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn api_data_volumes_follow_their_sources() {
    use k8s_openapi::api::core::v1::{ConfigMap, Secret};
    use kube::api::{Patch, PatchParams};
    let env = Env::new(18).await;
    let cms: kube::Api<ConfigMap> = kube::Api::namespaced(env.client.clone(), "default");
    let cm: ConfigMap = serde_yaml::from_str("metadata: {name: live}\ndata: {key: one}").unwrap();
    cms.create(&Default::default(), &cm).await.unwrap();
    let secrets: kube::Api<Secret> = kube::Api::namespaced(env.client.clone(), "default");
    let secret: Secret =
        serde_yaml::from_str("metadata: {name: pw}\nstringData: {password: old}").unwrap();
    secrets.create(&Default::default(), &secret).await.unwrap();
    let img = busybox();
    env.create(&format!(
        r#"
metadata: {{name: volupd, labels: {{version: one}}}}
spec:
  terminationGracePeriodSeconds: 1
  volumes:
  - {{name: cfg, configMap: {{name: live}}}}
  - {{name: later, configMap: {{name: later, optional: true}}}}
  - {{name: info, downwardAPI: {{items: [{{path: labels, fieldRef: {{fieldPath: metadata.labels}}}}]}}}}
  - {{name: proj, projected: {{sources: [{{secret: {{name: pw}}}}]}}}}
  containers:
  - name: main
    image: "{img}"
    imagePullPolicy: IfNotPresent
    command: [sleep, "3600"]
    volumeMounts:
    - {{name: proj, mountPath: /etc/proj}}
    - {{name: cfg, mountPath: /etc/cfg}}
    - {{name: cfg, mountPath: /etc/pinned, subPath: key}}
    - {{name: later, mountPath: /etc/later}}
    - {{name: info, mountPath: /etc/info}}
"#
    ))
    .await;
    env.wait("volupd", T, "running", |p| is_running(p, "main"))
        .await;
    assert_eq!(
        sh(&env, "volupd", "cat /etc/cfg/key; echo; readlink /etc/cfg/key; cat /etc/pinned; echo; cat /etc/info/labels").await,
        ("one\n..data/key\none\nversion=\"one\"".to_string(), Some(0))
    );
    assert_eq!(
        sh(&env, "volupd", "ls /etc/later | wc -l").await.0.trim(),
        "0"
    );
    let (_, code) = sh(&env, "volupd", "echo x > /etc/cfg/new").await;
    assert_ne!(code, Some(0), "API-data volumes are mounted read-only");

    // The configMaps change with the pod untouched: the agent notices on
    // its own.
    let mut cm = cms.get("live").await.unwrap();
    cm.data = Some([("key".to_string(), "two".to_string())].into());
    cms.replace("live", &Default::default(), &cm).await.unwrap();
    let later: ConfigMap =
        serde_yaml::from_str("metadata: {name: later}\ndata: {extra: here}").unwrap();
    cms.create(&Default::default(), &later).await.unwrap();
    let mut secret = secrets.get("pw").await.unwrap();
    secret.data = None;
    secret.string_data = Some([("password".to_string(), "new".to_string())].into());
    secrets
        .replace("pw", &Default::default(), &secret)
        .await
        .unwrap();
    let script = "cat /etc/cfg/key /etc/later/extra /etc/proj/password; echo; cat /etc/info/labels";
    wait_output(&env, "volupd", script, "twoherenew\nversion=\"one\"").await;

    env.pods()
        .patch(
            "volupd",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"labels": {"version": "two"}}})),
        )
        .await
        .unwrap();
    wait_output(&env, "volupd", script, "twoherenew\nversion=\"two\"").await;

    // A source that disappears: the files stay as they were, and the
    // failure is reported.
    cms.delete("live", &Default::default()).await.unwrap();
    let events = env
        .events_with(
            "volupd",
            &["FailedMount: MountVolume.SetUp failed for volume \"cfg\""],
        )
        .await;
    assert!(
        events.contains(
            &r#"FailedMount: MountVolume.SetUp failed for volume "cfg" : configmap "live" not found"#
                .to_string()
        ),
        "{events:?}"
    );
    assert_eq!(sh(&env, "volupd", "cat /etc/cfg/key").await.0, "two");
    assert_eq!(
        sh(&env, "volupd", "cat /etc/pinned").await.0,
        "one",
        "subPath mounts are never updated"
    );
    let p = env.pods().get("volupd").await.unwrap();
    assert_eq!(container(&p, "main").unwrap().restart_count, 0);
    env.teardown().await;
}

/// The claims of a JWT.
fn jwt_claims(token: &str) -> serde_json::Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON claims")
}

/// Whether the API server authenticates `token`: `kubectl auth whoami`
/// (which every authenticated user may) holding only it.
fn token_works(env: &Env, token: &str) -> bool {
    let kubeconfig = env.dir.path().join("kubeconfig-token");
    let server = format!("https://{}", env.api.as_ref().unwrap().addr());
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- cluster: {{certificate-authority: {ca}, server: \"{server}\"}}\n  name: c\ncontexts:\n- context: {{cluster: c, user: u}}\n  name: c\ncurrent-context: c\nusers:\n- name: u\n  user: {{token: \"{token}\"}}\n",
            ca = env.ca().display()
        ),
    )
    .unwrap();
    std::process::Command::new("/usr/bin/kubectl")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["auth", "whoami"])
        .env("HOME", env.dir.path())
        .output()
        .expect("kubectl runs")
        .status
        .success()
}

/// The ServiceAccount admission's volume, as a container sees it: token,
/// CA and namespace on a tmpfs (as a secret volume), the token bound to the
/// pod, good for the API server, and replaced once too old.
async fn service_account_credentials_are_on_tmpfs_and_refreshed() {
    use k8s_openapi::api::core::v1::Secret;
    let env = Env::with_token_max_age(22, Duration::from_secs(2)).await;
    let secrets: kube::Api<Secret> = kube::Api::namespaced(env.client.clone(), "default");
    let secret: Secret =
        serde_yaml::from_str("metadata: {name: pw}\nstringData: {password: p}").unwrap();
    secrets.create(&Default::default(), &secret).await.unwrap();
    let img = busybox();
    let pod = env
        .create(&format!(
            r#"
metadata: {{name: creds}}
spec:
  terminationGracePeriodSeconds: 1
  volumes:
  - {{name: pw, secret: {{secretName: pw}}}}
  containers:
  - name: main
    image: "{img}"
    imagePullPolicy: IfNotPresent
    command: [sleep, "3600"]
    volumeMounts:
    - {{name: pw, mountPath: /etc/pw}}
"#
        ))
        .await;
    env.wait("creds", T, "running", |p| is_running(p, "main"))
        .await;
    let dir = "/var/run/secrets/kubernetes.io/serviceaccount";
    let (out, code) = sh(
        &env,
        "creds",
        &format!("ls {dir}; cat {dir}/namespace; echo; head -1 {dir}/ca.crt; readlink {dir}/token"),
    )
    .await;
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(
        out,
        format!("ca.crt\nnamespace\ntoken\ndefault\n-----BEGIN CERTIFICATE-----\n..data/token\n")
    );
    let ca = std::fs::read_to_string(env.ca()).unwrap();
    assert_eq!(sh(&env, "creds", &format!("cat {dir}/ca.crt")).await.0, ca);
    // Both volumes are tmpfs mounts, read-only in the container.
    let (mounts, _) = sh(&env, "creds", "cat /proc/mounts").await;
    for path in [dir, "/etc/pw"] {
        let line = mounts
            .lines()
            .find(|l| l.split(' ').nth(1) == Some(path))
            .unwrap_or_else(|| panic!("{path} is not a mount: {mounts}"));
        let fields: Vec<&str> = line.split(' ').collect();
        assert_eq!(fields[2], "tmpfs", "{line}");
        assert!(fields[3].starts_with("ro,"), "{line}");
    }
    // And on the node, nothing of them reaches the disk.
    let uid = pod.metadata.uid.clone().unwrap();
    let host_dir = env.dir.path().join("agent/volumes").join(&uid);
    for entry in std::fs::read_dir(&host_dir).unwrap() {
        let path = entry.unwrap().path();
        let fs = nix::sys::statfs::statfs(&path).unwrap();
        assert_eq!(
            fs.filesystem_type(),
            nix::sys::statfs::TMPFS_MAGIC,
            "{}",
            path.display()
        );
    }

    let token = sh(&env, "creds", &format!("cat {dir}/token")).await.0;
    let claims = jwt_claims(&token);
    assert_eq!(claims["sub"], "system:serviceaccount:default:default");
    assert_eq!(claims["kubernetes.io"]["pod"]["name"], "creds");
    assert_eq!(claims["kubernetes.io"]["pod"]["uid"], uid.as_str());
    assert_eq!(claims["kubernetes.io"]["node"]["name"], env.node.as_str());
    assert_eq!(
        claims["kubernetes.io"]["warnafter"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        3607
    );
    assert!(token_works(&env, &token), "the pod's token is refused");

    // Older than the agent's limit: a new token replaces it in place.
    let t0 = std::time::Instant::now();
    let fresh = loop {
        let now = sh(&env, "creds", &format!("cat {dir}/token")).await.0;
        if !now.is_empty() && now != token {
            break now;
        }
        assert!(t0.elapsed() < T, "the token was never refreshed");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_ne!(jwt_claims(&fresh)["jti"], claims["jti"]);
    assert!(token_works(&env, &fresh));
    assert_eq!(
        sh(&env, "creds", &format!("readlink {dir}/token")).await.0,
        "..data/token\n"
    );
    let p = env.pods().get("creds").await.unwrap();
    assert_eq!(container(&p, "main").unwrap().restart_count, 0);
    env.teardown().await;
}

/// In-cluster access as client libraries do it: KUBERNETES_SERVICE_HOST and
/// _PORT, the mounted CA and token. Until the `kubernetes` Service exists,
/// the test relays the node's bridge address to the API server (which
/// listens on loopback here), and curl names the server
/// kubernetes.default.svc, one of its certificate's names.
async fn a_pod_calls_the_api_server_with_its_token() {
    let env = Env::new(23).await;
    let gateway = "10.249.23.1";
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let curl = format!("{}/curl:latest", registry());
    env.create(&format!(
        r#"
metadata: {{name: incluster}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: "{curl}"
    imagePullPolicy: IfNotPresent
    command: [sleep, "3600"]
    env:
    - {{name: KUBERNETES_SERVICE_HOST, value: "{gateway}"}}
    - {{name: KUBERNETES_SERVICE_PORT, value: "{port}"}}
"#
    ))
    .await;
    env.wait("incluster", T, "running", |p| is_running(p, "main"))
        .await;
    // The bridge exists now: relay its address to the API server.
    let api = env.api.as_ref().unwrap().addr();
    let listener = tokio::net::TcpListener::bind((gateway, port))
        .await
        .unwrap();
    let relay = tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(api).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    let script = r#"SA=/var/run/secrets/kubernetes.io/serviceaccount
api() { curl -s -o /tmp/body -w '%{http_code}' --cacert $SA/ca.crt --resolve kubernetes.default.svc:$KUBERNETES_SERVICE_PORT:$KUBERNETES_SERVICE_HOST "$@"; }
URL=https://kubernetes.default.svc:$KUBERNETES_SERVICE_PORT/api/v1/namespaces/$(cat $SA/namespace)/pods
api -H "Authorization: Bearer $(cat $SA/token)" $URL; echo; cp /tmp/body /tmp/denied
api $URL; echo; api -H "Authorization: Bearer not.a.token" $URL"#;
    // The token authenticates the pod's service account, which RBAC does
    // not let list pods; anonymous is 403 too, a forged token 401.
    let (out, code) = sh(&env, "incluster", script).await;
    assert_eq!(
        (out.as_str(), code),
        ("403\n403\n401", Some(0)),
        "without a RoleBinding, the pod's account may not list pods"
    );
    let (body, _) = sh(&env, "incluster", "cat /tmp/denied").await;
    assert!(
        body.contains(r#"User \"system:serviceaccount:default:default\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""#),
        "{body}"
    );
    // Bound to `view` in its namespace, it may.
    use k8s_openapi::api::rbac::v1::RoleBinding;
    let bindings: kube::Api<RoleBinding> = kube::Api::namespaced(env.client.clone(), "default");
    let binding: RoleBinding = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "default-view"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": "default"}]
    }))
    .unwrap();
    bindings
        .create(&Default::default(), &binding)
        .await
        .unwrap();
    let script = r#"SA=/var/run/secrets/kubernetes.io/serviceaccount
URL=https://kubernetes.default.svc:$KUBERNETES_SERVICE_PORT/api/v1/namespaces/$(cat $SA/namespace)/pods
curl -s -o /tmp/body -w '%{http_code}' --cacert $SA/ca.crt --resolve kubernetes.default.svc:$KUBERNETES_SERVICE_PORT:$KUBERNETES_SERVICE_HOST -H "Authorization: Bearer $(cat $SA/token)" $URL; echo; grep -o '"kind":"PodList"' /tmp/body"#;
    let (out, code) = sh(&env, "incluster", script).await;
    relay.abort();
    assert_eq!(
        (out.as_str(), code),
        ("200\n\"kind\":\"PodList\"\n", Some(0)),
        "with a RoleBinding to view, the pod lists the pods of its namespace"
    );
    env.teardown().await;
}
