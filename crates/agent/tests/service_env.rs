//! Service environment variables in real containers, as Kubernetes'
//! [sig-node] conformance spec "Pods should contain environment variables
//! for services" checks them (test/e2e/common/node/pods.go): a server pod,
//! a Service `fooservice` on port 8765 selecting it, then a client pod
//! running `env` must show the `FOOSERVICE_*` variables; plus the
//! `kubernetes` Service's, `enableServiceLinks: false`, a container's own
//! variables winning, and `$(VAR)` expanding Service variables. Runs as
//! root; the test binary doubles as the runtime's shim and pause process
//! (harness = false).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use kube::api::LogParams;

const T: Duration = Duration::from_secs(60);

fn main() {
    orca_runtime::run_internal_command_if_requested();
    let args = libtest_mimic::Arguments::from_args();
    let trial =
        libtest_mimic::Trial::test("pods_contain_environment_variables_for_services", || {
            std::panic::catch_unwind(|| {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .unwrap()
                    .block_on(pods_contain_environment_variables_for_services())
            })
            .map_err(|e| {
                libtest_mimic::Failed::from(
                    e.downcast_ref::<String>()
                        .cloned()
                        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default(),
                )
            })
        });
    libtest_mimic::run(&args, vec![trial]).exit();
}

async fn kubectl(env: &Env, args: &[&str]) -> String {
    let out = tokio::process::Command::new("/usr/bin/kubectl")
        .arg("--kubeconfig")
        .arg(env.dir.path().join("kubeconfig"))
        .arg("--cache-dir")
        .arg(env.dir.path().join("kubectl-cache"))
        .args(args)
        .env("HOME", env.dir.path())
        .output()
        .await
        .expect("kubectl at /usr/bin/kubectl");
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Runs `env` in a pod and returns what it printed, as variables.
async fn env_of(env: &Env, name: &str, extra: &str) -> BTreeMap<String, String> {
    env.create(&format!(
        r#"
metadata: {{name: {name}, labels: {{name: {name}}}}}
spec:
  restartPolicy: Never
  {extra}
  containers:
  - name: env3cont
    image: {}
    imagePullPolicy: IfNotPresent
    command: [sh, -c, env]
"#,
        busybox(),
    ))
    .await;
    env.wait_phase(name, T, "Succeeded").await;
    let logs = env
        .pods()
        .logs(name, &LogParams::default())
        .await
        .expect("the client pod's logs");
    logs.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn pods_contain_environment_variables_for_services() {
    let env = Env::new(22).await;
    // The server pod the Service selects (it serves nothing the test
    // needs: the spec is about the client's environment).
    env.create(&format!(
        r#"
metadata: {{name: server-envvars, labels: {{name: server-envvars}}}}
spec:
  containers:
  - name: srv
    image: {}
    imagePullPolicy: IfNotPresent
    command: [sh, -c, "exec sleep 3600"]
    ports: [{{containerPort: 9376}}]
"#,
        busybox()
    ))
    .await;
    env.wait_phase("server-envvars", T, "Running").await;
    let svc = serde_json::json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "fooservice", "labels": {"name": "fooservice"}},
        "spec": {"ports": [{"port": 8765, "targetPort": 8080}], "selector": {"name": "server-envvars"}}});
    let file = env.dir.path().join("fooservice.json");
    std::fs::write(&file, svc.to_string()).unwrap();
    kubectl(&env, &["create", "-f", file.to_str().unwrap()]).await;
    // Services elsewhere and without an address give no variables.
    kubectl(&env, &["create", "namespace", "other"]).await;
    kubectl(
        &env,
        &[
            "create",
            "service",
            "clusterip",
            "elsewhere",
            "-n",
            "other",
            "--tcp=80:80",
        ],
    )
    .await;
    kubectl(
        &env,
        &[
            "create",
            "service",
            "clusterip",
            "nohost",
            "--clusterip=None",
            "--tcp=80:80",
        ],
    )
    .await;
    let ip = kubectl(
        &env,
        &[
            "get",
            "svc",
            "fooservice",
            "-o",
            "jsonpath={.spec.clusterIP}",
        ],
    )
    .await;

    let got = env_of(&env, "client-envvars", "").await;
    let want = [
        ("FOOSERVICE_SERVICE_HOST", ip.clone()),
        ("FOOSERVICE_SERVICE_PORT", "8765".into()),
        ("FOOSERVICE_PORT", format!("tcp://{ip}:8765")),
        ("FOOSERVICE_PORT_8765_TCP_PORT", "8765".into()),
        ("FOOSERVICE_PORT_8765_TCP_PROTO", "tcp".into()),
        ("FOOSERVICE_PORT_8765_TCP", format!("tcp://{ip}:8765")),
        ("FOOSERVICE_PORT_8765_TCP_ADDR", ip.clone()),
        ("KUBERNETES_SERVICE_HOST", "10.43.0.1".into()),
        ("KUBERNETES_SERVICE_PORT", "443".into()),
        ("KUBERNETES_SERVICE_PORT_HTTPS", "443".into()),
        ("KUBERNETES_PORT", "tcp://10.43.0.1:443".into()),
    ];
    for (k, v) in &want {
        assert_eq!(got.get(*k), Some(v), "{k} in the client's env: {got:#?}");
    }
    assert!(
        !got.keys()
            .any(|k| k.starts_with("ELSEWHERE_") || k.starts_with("NOHOST_")),
        "{got:#?}"
    );

    // Without service links only the kubernetes Service's variables.
    let got = env_of(&env, "no-links", "enableServiceLinks: false").await;
    assert!(!got.contains_key("FOOSERVICE_SERVICE_HOST"), "{got:#?}");
    assert_eq!(
        got.get("KUBERNETES_SERVICE_HOST").map(String::as_str),
        Some("10.43.0.1")
    );

    // The container's own variables win; `$(VAR)` sees the Service's.
    env.create(&format!(
        r#"
metadata: {{name: own-env}}
spec:
  restartPolicy: Never
  containers:
  - name: env3cont
    image: {}
    imagePullPolicy: IfNotPresent
    command: [sh, -c, env]
    env:
    - {{name: FOOSERVICE_SERVICE_HOST, value: mine}}
    - {{name: FOO_URL, value: "http://$(FOOSERVICE_SERVICE_PORT_8765_TCP_ADDR):$(FOOSERVICE_SERVICE_PORT)"}}
"#,
        busybox()
    ))
    .await;
    env.wait_phase("own-env", T, "Succeeded").await;
    let logs = env
        .pods()
        .logs("own-env", &LogParams::default())
        .await
        .unwrap();
    let got: BTreeMap<&str, &str> = logs.lines().filter_map(|l| l.split_once('=')).collect();
    assert_eq!(got.get("FOOSERVICE_SERVICE_HOST"), Some(&"mine"));
    // Kubernetes expands only names that exist: `_SERVICE_PORT_8765_TCP_ADDR`
    // is not one, `_SERVICE_PORT` is.
    assert_eq!(
        got.get("FOO_URL").copied(),
        Some("http://$(FOOSERVICE_SERVICE_PORT_8765_TCP_ADDR):8765")
    );
    env.teardown().await;
}
