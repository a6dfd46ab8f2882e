//! The endpoints and endpointslice controllers against a real API server,
//! driven and read through the real kubectl. The test plays the kubelet as
//! the reference capture did: pods are bound to nodes and their status is
//! patched Running/Ready by hand. What kubectl shows is compared with
//! `platform/02-endpoints-ready-pods.txt`, `02-get-svc.txt` and
//! `02-describe-svc.txt`.

use std::sync::Arc;
use std::time::Duration;

use orca_testkit::wait_for;
use serde_json::{json, Value};

const REF: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../testdata/kubernetes-v1.32/platform"
);
const WAIT: Duration = Duration::from_secs(30);

/// The output of one `$ command` block of a reference capture.
fn reference(file: &str, command: &str) -> String {
    let text = std::fs::read_to_string(format!("{REF}/{file}"))
        .unwrap_or_else(|e| panic!("reading {REF}/{file}: {e}"));
    let start = text
        .find(&format!("$ {command}\n"))
        .unwrap_or_else(|| panic!("{file} has no `$ {command}`"));
    let body = &text[start + command.len() + 3..];
    let end = body.find("\n$ ").map(|i| i + 1).unwrap_or(body.len());
    body[..end].trim_end_matches('\n').to_string()
}

struct Cluster {
    dir: tempfile::TempDir,
    _server: orca_apiserver::ApiServer,
    controllers: tokio::task::JoinHandle<()>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.controllers.abort();
    }
}

impl Cluster {
    async fn start(max_per_slice: usize) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let store = orca_store::sqlite::SqliteStore::open(
            &dir.path().join("db/state.db"),
            Default::default(),
        )
        .unwrap();
        // The reference's service range, so that addresses read alike.
        let server = orca_apiserver::start(
            orca_apiserver::Config {
                data_dir: dir.path().to_path_buf(),
                https_port: 0,
                service_network: orca_apiserver::ServiceNetwork::new("10.0.0.0/24", "30000-32767")
                    .unwrap(),
                endpoint_reconciler: orca_apiserver::EndpointReconciler::None,
                ..Default::default()
            },
            Arc::new(store),
        )
        .await
        .unwrap();
        // The controllers with the identities `orca server` gives them, so
        // that the bootstrap policy's roles are what lets them work.
        let local = server.local_clients();
        orca_testkit::default_service_account(
            &local.client(orca_apiserver::auth::UserInfo::admin()),
            "default",
        )
        .await;
        let per_controller = local.clone();
        let clients = orca_controllers::Clients::new(
            local.client(orca_apiserver::auth::UserInfo::kube_controller_manager()),
            move |name| per_controller.client(orca_apiserver::auth::UserInfo::controller(name)),
        );
        let controllers = tokio::spawn(async move {
            orca_controllers::run_endpoints(&clients, max_per_slice)
                .await
                .expect("the endpoints controllers run");
        });
        Cluster {
            dir,
            _server: server,
            controllers,
        }
    }

    async fn kubectl_out(&self, args: &[&str], stdin: Option<&str>) -> std::process::Output {
        use tokio::io::AsyncWriteExt;
        let mut child = tokio::process::Command::new("/usr/bin/kubectl")
            .arg("--kubeconfig")
            .arg(self.dir.path().join("kubeconfig"))
            .arg("--cache-dir")
            .arg(self.dir.path().join("kubectl-cache"))
            .args(args)
            .env("HOME", self.dir.path())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("kubectl at /usr/bin/kubectl");
        let mut pipe = child.stdin.take().unwrap();
        if let Some(s) = stdin {
            pipe.write_all(s.as_bytes()).await.unwrap();
        }
        drop(pipe);
        child.wait_with_output().await.unwrap()
    }

    async fn kubectl_stdin(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.kubectl_out(args, stdin).await;
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    async fn kubectl(&self, args: &[&str]) -> String {
        self.kubectl_stdin(args, None).await
    }

    async fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        serde_json::from_str(&self.kubectl(&a).await).unwrap()
    }

    /// A pod bound to `node`, as a Deployment's would be.
    async fn bound_pod(&self, name: &str, node: &str, extra_spec: Value) {
        let mut spec = json!({"nodeName": node,
            "containers": [{"name": "nginx", "image": "nginx", "ports": [{"containerPort": 80, "name": "http"}]}]});
        for (k, v) in extra_spec.as_object().unwrap() {
            spec[k] = v.clone();
        }
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": "web"}}, "spec": spec});
        self.kubectl_stdin(&["create", "-f", "-"], Some(&pod.to_string()))
            .await;
    }

    /// What a kubelet reports of a started pod.
    async fn set_status(&self, name: &str, ip: &str, ready: bool) {
        let r = if ready { "True" } else { "False" };
        let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
        let status = json!({"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
            "hostIP": "192.0.2.10", "startTime": now,
            "conditions": [{"type": "Ready", "status": r, "lastTransitionTime": now},
                           {"type": "ContainersReady", "status": r, "lastTransitionTime": now}],
            "containerStatuses": [{"name": "nginx", "image": "nginx", "imageID": "", "ready": ready,
                "restartCount": 0, "started": true, "state": {"running": {"startedAt": now}}}]}});
        self.kubectl(&[
            "patch",
            "pod",
            name,
            "--subresource=status",
            "--type=merge",
            "-p",
            &status.to_string(),
        ])
        .await;
    }
}

/// Blanks what differs between runs: ages, times, uids, versions, the
/// random suffix of slice names, and allocated addresses.
fn masked(text: &str) -> String {
    let mut lines = Vec::new();
    for line in text.lines() {
        let mut l = line.to_string();
        for key in [
            "creationTimestamp: ",
            "resourceVersion: ",
            "uid: ",
            "endpoints.kubernetes.io/last-change-trigger-time: ",
            "generation: ",
        ] {
            if let Some(i) = l.find(key) {
                l.truncate(i + key.len());
                l.push('*');
            }
        }
        lines.push(l);
    }
    let mut s = String::new();
    let joined = lines.join("\n");
    for w in joined.split_inclusive(|c: char| !c.is_ascii_alphanumeric() && c != '.' && c != '-') {
        let core = w.trim_end_matches(|c: char| !c.is_ascii_alphanumeric() && c != '.' && c != '-');
        let tail = &w[core.len()..];
        let m = if core.starts_with("10.0.0.") && core != "10.0.0.1" {
            "10.0.0.X".to_string()
        } else if core.len() == 5
            && core.starts_with('3')
            && core.chars().all(|c| c.is_ascii_digit())
        {
            "3XXXX".into()
        } else if core.len() > 6
            && core.as_bytes()[core.len() - 6] == b'-'
            && !core.contains('.')
            && core.starts_with(|c: char| c.is_ascii_lowercase())
            && core[core.len() - 5..]
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            && !["managed-by", "endpointslice"]
                .iter()
                .any(|x| core.ends_with(x))
        {
            format!("{}-XXXXX", &core[..core.len() - 6])
        } else if core.len() >= 2
            && core.ends_with('s')
            && core[..core.len() - 1].chars().all(|c| c.is_ascii_digit())
        {
            "AGE".into()
        } else {
            core.to_string()
        };
        s.push_str(&m);
        s.push_str(tail);
    }
    s
}

fn cells(table: &str) -> Vec<Vec<String>> {
    table
        .lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_of_ready_pods_read_as_in_kubernetes() {
    let c = Cluster::start(100).await;
    // The reference's web pods, named as a Deployment's.
    let pods = [
        ("web-65d846d465-596np", "node-1", "10.88.0.11"),
        ("web-65d846d465-jbblh", "node-2", "10.88.0.12"),
        ("web-65d846d465-xj99j", "node-1", "10.88.0.13"),
    ];
    for (name, node, _) in pods {
        c.bound_pod(name, node, json!({})).await;
    }
    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {"clusterIP": "10.0.0.164", "selector": {"app": "web"},
                 "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}]}});
    c.kubectl_stdin(&["create", "-f", "-"], Some(&svc.to_string()))
        .await;

    // No ready pod yet: empty Endpoints, a placeholder slice.
    wait_for("the placeholder slice", WAIT, || async {
        let out = c.kubectl(&["get", "endpointslices"]).await;
        out.contains("web-").then_some(())
    })
    .await;
    let got = c.kubectl(&["get", "endpoints"]).await;
    let want: Vec<Vec<String>> = cells(&masked(&reference(
        "02-get-svc.txt",
        "kubectl get endpoints",
    )))
    .into_iter()
    .filter(|r| r[0] == "NAME" || r[0] == "web")
    .collect();
    assert_eq!(cells(&masked(&got)), want, "{got}");
    let got = c.kubectl(&["get", "endpointslices"]).await;
    let want: Vec<Vec<String>> = cells(&masked(&reference(
        "02-get-svc.txt",
        "kubectl get endpointslices",
    )))
    .into_iter()
    .filter(|r| r[0] == "NAME" || r[0].starts_with("web-"))
    .collect();
    assert_eq!(cells(&masked(&got)), want, "{got}");

    for (name, _, ip) in pods {
        c.set_status(name, ip, true).await;
    }
    wait_for("three ready endpoints", WAIT, || async {
        let v = c.json(&["get", "endpoints", "web"]).await;
        (v["subsets"][0]["addresses"].as_array().map(Vec::len) == Some(3)).then_some(())
    })
    .await;
    wait_for("three ready slice endpoints", WAIT, || async {
        let v = c
            .json(&[
                "get",
                "endpointslices",
                "-l",
                "kubernetes.io/service-name=web",
            ])
            .await;
        (v["items"][0]["endpoints"].as_array().map(Vec::len) == Some(3)).then_some(())
    })
    .await;

    let file = "02-endpoints-ready-pods.txt";
    let got = c.kubectl(&["get", "endpoints", "web"]).await;
    assert_eq!(
        cells(&masked(&got)),
        cells(&masked(&reference(file, "kubectl get endpoints web")))
    );
    for (args, command) in [
        (
            vec!["get", "endpoints", "web", "-o", "yaml"],
            "kubectl get endpoints web -o yaml",
        ),
        (
            vec![
                "get",
                "endpointslices",
                "-l",
                "kubernetes.io/service-name=web",
                "-o",
                "yaml",
            ],
            "kubectl get endpointslices -l kubernetes.io/service-name=web -o yaml",
        ),
        (vec!["describe", "svc", "web"], "kubectl describe svc web"),
        (
            vec![
                "describe",
                "endpointslice",
                "-l",
                "kubernetes.io/service-name=web",
            ],
            "kubectl describe endpointslice -l kubernetes.io/service-name=web",
        ),
    ] {
        let got = c.kubectl(&args).await;
        assert_eq!(
            masked(got.trim_end()),
            masked(&reference(file, command)),
            "{command}"
        );
    }
    let got = c
        .kubectl(&[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=web",
        ])
        .await;
    assert_eq!(
        cells(&masked(&got)),
        cells(&masked(&reference(
            file,
            "kubectl get endpointslices -l kubernetes.io/service-name=web"
        )))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_of_every_service_type_reads_as_in_kubernetes() {
    let c = Cluster::start(100).await;
    for args in [
        vec!["create", "service", "nodeport", "np", "--tcp=80:8080"],
        vec![
            "create",
            "service",
            "clusterip",
            "headless",
            "--clusterip=None",
            "--tcp=80:80",
        ],
        vec!["create", "service", "loadbalancer", "lb", "--tcp=443:8443"],
        vec![
            "create",
            "service",
            "externalname",
            "ext",
            "--external-name=example.com",
        ],
    ] {
        c.kubectl(&args).await;
    }
    wait_for("placeholder slices", WAIT, || async {
        let out = c.kubectl(&["get", "endpointslices", "--no-headers"]).await;
        (out.lines().count() == 3).then_some(())
    })
    .await;
    for name in ["np", "headless", "lb", "ext"] {
        let got = c.kubectl(&["describe", "svc", name]).await;
        let want = reference(
            "02-describe-svc.txt",
            &format!("kubectl describe svc {name}"),
        );
        assert_eq!(masked(got.trim_end()), masked(&want), "describe svc {name}");
    }
    // The headless Service's Endpoints carry Kubernetes' headless label.
    let ep = c.json(&["get", "endpoints", "headless"]).await;
    assert_eq!(
        ep["metadata"]["labels"]["service.kubernetes.io/headless"],
        ""
    );
    // No Endpoints or slices for the ExternalName Service.
    assert!(!c
        .kubectl_out(&["get", "endpoints", "ext"], None)
        .await
        .status
        .success());
}

/// The slice endpoint of `pod` (by name) in the Service's slices.
async fn slice_endpoint(c: &Cluster, svc: &str, pod: &str) -> Option<Value> {
    let v = c
        .json(&[
            "get",
            "endpointslices",
            "-l",
            &format!("kubernetes.io/service-name={svc}"),
        ])
        .await;
    v["items"]
        .as_array()?
        .iter()
        .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
        .find(|e| e["targetRef"]["name"] == pod)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_follow_readiness_and_termination() {
    let c = Cluster::start(100).await;
    c.bound_pod("a", "node-1", json!({"terminationGracePeriodSeconds": 300}))
        .await;
    c.bound_pod("b", "node-1", json!({})).await;
    c.set_status("a", "10.42.0.5", true).await;
    c.set_status("b", "10.42.0.6", true).await;
    c.kubectl(&["create", "service", "clusterip", "web", "--tcp=80:http"])
        .await;
    wait_for("both ready", WAIT, || async {
        let v = c.json(&["get", "endpoints", "web"]).await;
        (v["subsets"][0]["addresses"].as_array().map(Vec::len) == Some(2)).then_some(())
    })
    .await;
    // The named target port resolved on the pods.
    let v = c.json(&["get", "endpoints", "web"]).await;
    assert_eq!(
        v["subsets"][0]["ports"],
        json!([{"name": "80-http", "port": 80, "protocol": "TCP"}])
    );

    // b turns unready: it moves to notReadyAddresses; its slice endpoint
    // is neither ready nor serving.
    c.set_status("b", "10.42.0.6", false).await;
    wait_for("b not ready", WAIT, || async {
        let v = c.json(&["get", "endpoints", "web"]).await;
        (v["subsets"][0]["notReadyAddresses"][0]["ip"] == "10.42.0.6").then_some(())
    })
    .await;
    let v = c.json(&["get", "endpoints", "web"]).await;
    assert_eq!(v["subsets"][0]["addresses"][0]["ip"], "10.42.0.5");
    let b = wait_for("b's slice endpoint unready", WAIT, || async {
        slice_endpoint(&c, "web", "b")
            .await
            .filter(|e| e["conditions"]["ready"] == false)
    })
    .await;
    assert_eq!(
        b["conditions"],
        json!({"ready": false, "serving": false, "terminating": false})
    );

    // a is deleted (bound, so it terminates gracefully): it leaves the
    // Endpoints and stays in its slice as terminating and still serving.
    c.kubectl(&["delete", "pod", "a", "--wait=false"]).await;
    let a = wait_for("a terminating", WAIT, || async {
        slice_endpoint(&c, "web", "a")
            .await
            .filter(|e| e["conditions"]["terminating"] == true)
    })
    .await;
    assert_eq!(
        a["conditions"],
        json!({"ready": false, "serving": true, "terminating": true})
    );
    let v = c.json(&["get", "endpoints", "web"]).await;
    assert!(v["subsets"][0].get("addresses").is_none(), "{v}");

    // publishNotReadyAddresses lists every pod as ready, terminating too.
    c.kubectl(&[
        "patch",
        "svc",
        "web",
        "-p",
        r#"{"spec":{"publishNotReadyAddresses":true}}"#,
    ])
    .await;
    wait_for("both published", WAIT, || async {
        let v = c.json(&["get", "endpoints", "web"]).await;
        (v["subsets"][0]["addresses"].as_array().map(Vec::len) == Some(2)).then_some(())
    })
    .await;
    let a = wait_for("a published", WAIT, || async {
        slice_endpoint(&c, "web", "a")
            .await
            .filter(|e| e["conditions"]["ready"] == true)
    })
    .await;
    assert_eq!(a["conditions"]["terminating"], true);

    // Deleting the Service deletes its Endpoints and slices.
    c.kubectl(&["delete", "svc", "web"]).await;
    wait_for("endpoints gone", WAIT, || async {
        let out = c
            .kubectl(&["get", "endpoints,endpointslices", "--no-headers"])
            .await;
        (!out.contains("web")).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headless_hostnames_selectorless_services_and_slice_limits() {
    let c = Cluster::start(2).await;
    for (i, name) in ["s0", "s1", "s2", "s3", "s4"].iter().enumerate() {
        c.bound_pod(name, "node-1", json!({"hostname": name, "subdomain": "db"}))
            .await;
        c.set_status(name, &format!("10.42.0.{}", 10 + i), i != 4)
            .await;
    }
    c.kubectl(&[
        "create",
        "service",
        "clusterip",
        "db",
        "--clusterip=None",
        "--tcp=80:80",
    ])
    .await;
    c.kubectl(&[
        "patch",
        "svc",
        "db",
        "-p",
        r#"{"spec":{"selector":{"app":"web"}}}"#,
    ])
    .await;
    // Five endpoints at two per slice: three slices, the headless label.
    let slices = wait_for("three slices", WAIT, || async {
        let v = c
            .json(&[
                "get",
                "endpointslices",
                "-l",
                "kubernetes.io/service-name=db",
            ])
            .await;
        let items = v["items"].as_array().cloned().unwrap_or_default();
        let n: usize = items
            .iter()
            .map(|s| s["endpoints"].as_array().map_or(0, Vec::len))
            .sum();
        (n == 5).then_some(items)
    })
    .await;
    assert_eq!(slices.len(), 3);
    for s in &slices {
        assert!(s["endpoints"].as_array().unwrap().len() <= 2);
        assert_eq!(
            s["metadata"]["labels"]["service.kubernetes.io/headless"],
            ""
        );
        for e in s["endpoints"].as_array().unwrap() {
            assert_eq!(e["hostname"], e["targetRef"]["name"]);
            assert_eq!(e["nodeName"], "node-1");
        }
    }
    let ep = c.json(&["get", "endpoints", "db"]).await;
    let ready: Vec<&str> = ep["subsets"][0]["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["hostname"].as_str().unwrap())
        .collect();
    assert_eq!(ready, ["s0", "s1", "s2", "s3"]);
    assert_eq!(ep["subsets"][0]["notReadyAddresses"][0]["hostname"], "s4");

    // A Service without a selector: its hand-made Endpoints are kept, no
    // slices are made for it.
    c.kubectl(&["create", "service", "clusterip", "manual", "--tcp=80:80"])
        .await;
    c.kubectl(&[
        "patch",
        "svc",
        "manual",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/spec/selector"}]"#,
    ])
    .await;
    let manual = json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "manual"},
        "subsets": [{"addresses": [{"ip": "192.0.2.77"}], "ports": [{"port": 80}]}]});
    c.kubectl_stdin(&["apply", "-f", "-"], Some(&manual.to_string()))
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ep = c.json(&["get", "endpoints", "manual"]).await;
    assert_eq!(ep["subsets"][0]["addresses"][0]["ip"], "192.0.2.77");
    let v = c
        .json(&[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=manual",
        ])
        .await;
    assert_eq!(v["items"], json!([]));
}
