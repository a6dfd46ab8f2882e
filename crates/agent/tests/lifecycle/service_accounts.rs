//! A pod's service account credentials: the token volume, its refresh,
//! and calling the API server with it.

use super::*;

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
pub(crate) async fn service_account_credentials_are_on_tmpfs_and_refreshed() {
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
pub(crate) async fn a_pod_calls_the_api_server_with_its_token() {
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
