//! An agent that stops and comes back: its pods keep their containers and
//! processes; what was deleted meanwhile is cleaned up.

use super::*;

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

pub(crate) async fn agent_restart_keeps_pods_running() {
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
