//! A pod's securityContext as the agent applies it: seccomp profiles,
//! fsGroup on its volumes and groups, and sysctls.

use super::*;

/// RuntimeDefault from the pod's securityContext filters a non-root
/// container (privilege escalation unset) that keeps running; fsGroup owns
/// its emptyDir and secret volumes and is among its groups; a container's
/// own Unconfined wins over the pod's profile; Localhost is refused.
pub(crate) async fn seccomp_and_fs_group_apply_to_running_pods() {
    use k8s_openapi::api::core::v1::Secret;
    let env = Env::new(24).await;
    let secrets: kube::Api<Secret> = kube::Api::namespaced(env.client.clone(), "default");
    let secret: Secret =
        serde_yaml::from_str("metadata: {name: creds}\nstringData: {token: s3cret}").unwrap();
    secrets.create(&Default::default(), &secret).await.unwrap();
    let img = busybox();
    env.create(&format!(
        r#"
metadata: {{name: guarded}}
spec:
  terminationGracePeriodSeconds: 1
  securityContext: {{runAsUser: 1000, fsGroup: 2000, seccompProfile: {{type: RuntimeDefault}}}}
  volumes:
  - {{name: scratch, emptyDir: {{}}}}
  - {{name: creds, secret: {{secretName: creds}}}}
  containers:
  - name: main
    image: "{img}"
    imagePullPolicy: IfNotPresent
    command: [sleep, "3600"]
    volumeMounts:
    - {{name: scratch, mountPath: /scratch}}
    - {{name: creds, mountPath: /creds}}
"#
    ))
    .await;
    env.wait("guarded", T, "running", |p| is_running(p, "main"))
        .await;
    let (out, code) = sh(
        &env,
        "guarded",
        "SA=/var/run/secrets/kubernetes.io/serviceaccount; \
         id -G; grep Seccomp: /proc/self/status; \
         stat -L -c '%n %g %a' /scratch /creds /creds/token $SA/token $SA/ca.crt; \
         cat $SA/token >/dev/null && echo token=readable; \
         touch /scratch/mine; stat -c '%n %u %g' /scratch/mine; \
         unshare -U true 2>/dev/null && echo userns=ok || echo userns=denied",
    )
    .await;
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "0 2000",
            "Seccomp:\t2",
            // Kubernetes' numbers: emptyDir 0777 and the secret tmpfs 1777
            // gain setgid; the secret file keeps 0644, with the group.
            "/scratch 2000 2777",
            "/creds 2000 3777",
            "/creds/token 2000 644",
            // The service account token is written 0600, then gets group read.
            "/var/run/secrets/kubernetes.io/serviceaccount/token 2000 640",
            "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt 2000 644",
            "token=readable",
            "/scratch/mine 1000 2000",
            "userns=denied",
        ],
        "{out}"
    );
    assert_eq!(code, Some(0));
    // The filter does not disturb the pod: it is still Running and ready.
    let pod = env.pods().get("guarded").await.unwrap();
    assert_eq!(phase(&pod), "Running");
    assert_eq!(condition(&pod, "Ready").as_deref(), Some("True"));

    env.create(&format!(
        r#"
metadata: {{name: mixed}}
spec:
  terminationGracePeriodSeconds: 1
  securityContext: {{seccompProfile: {{type: RuntimeDefault}}}}
  containers:
  - name: loose
    image: "{img}"
    imagePullPolicy: IfNotPresent
    command: [sleep, "3600"]
    securityContext: {{seccompProfile: {{type: Unconfined}}}}
"#
    ))
    .await;
    env.wait("mixed", T, "running", |p| is_running(p, "loose"))
        .await;
    let (out, _) = sh(&env, "mixed", "grep Seccomp: /proc/self/status").await;
    assert_eq!(out, "Seccomp:\t0\n");

    env.create(&format!(
        r#"
metadata: {{name: local}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: "{img}"
    imagePullPolicy: IfNotPresent
    command: [sleep, "3600"]
    securityContext: {{seccompProfile: {{type: Localhost, localhostProfile: profiles/audit.json}}}}
"#
    ))
    .await;
    let pod = env
        .wait("local", T, "CreateContainerError", |p| {
            waiting_reason(p, "main").as_deref() == Some("CreateContainerError")
        })
        .await;
    let message = container(&pod, "main")
        .and_then(|c| c.state.as_ref()?.waiting.as_ref()?.message.clone())
        .unwrap_or_default();
    assert!(message.contains("Localhost"), "{message}");
    env.teardown().await;
}

/// Pod sysctls from the kubelet's safe set are set in the pod's namespaces;
/// any other one makes the node refuse the pod (SysctlForbidden).
pub(crate) async fn safe_sysctls_apply_and_unsafe_ones_are_refused() {
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
