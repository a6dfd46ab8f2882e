//! A plain pod end to end: its status, conditions and events as
//! Kubernetes writes them, the node's Ready condition and lease, and logs
//! and exec through the API server.

use super::*;

pub(crate) async fn pod_runs_with_kubernetes_status_and_events() {
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
