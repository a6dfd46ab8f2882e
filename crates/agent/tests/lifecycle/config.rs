//! Configuration reaching containers: ConfigMaps, Secrets and the
//! downward API as env and volumes (and their updates), postStart hooks
//! and termination messages.

use super::*;

pub(crate) async fn config_sources_hooks_and_termination_messages() {
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

/// configMap and downwardAPI volumes follow their sources while the pod
/// runs (the kubelet's `..data` layout, swapped atomically); an optional
/// configMap created later fills its volume; a subPath mount keeps the
/// content it started with.
pub(crate) async fn api_data_volumes_follow_their_sources() {
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
