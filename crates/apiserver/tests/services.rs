//! Services through the real kubectl, against Kubernetes' output in the
//! reference captures (`platform/02-*`): every type, kubectl's create,
//! expose, get, describe and cluster-info, allocation errors word for word,
//! release and reuse of addresses and node ports, dry runs that take
//! nothing, the repair pass, and two API servers on one etcd never handing
//! out a value twice.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use common::{send, Harness};
use orca_store::{ListOptions, Store};
use serde_json::{json, Value};

const REF: &str = "/work/shared/reference/kubernetes-v1.32/platform";

/// The output of one `$ command` block of a reference capture.
fn reference(file: &str, command: &str) -> String {
    let text = std::fs::read_to_string(format!("{REF}/{file}"))
        .unwrap_or_else(|e| panic!("reading {REF}/{file}: {e}"));
    let start = text
        .find(&format!("$ {command}\n"))
        .unwrap_or_else(|| panic!("{file} has no `$ {command}`"));
    let body = &text[start + command.len() + 3..];
    let end = body.find("\n$ ").map(|i| i + 1).unwrap_or(body.len());
    body[..end]
        .trim_end_matches('\n')
        .trim_end_matches("[exit status 1]")
        .trim_end_matches('\n')
        .to_string()
}

/// The reference's range (10.0.0.0/24), so that messages naming it match.
async fn harness() -> Harness {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = common::open_store(dir.path()).await;
    let server = orca_apiserver::start(
        orca_apiserver::Config {
            data_dir: dir.path().to_path_buf(),
            https_port: 0,
            service_network: orca_apiserver::ServiceNetwork::new("10.0.0.0/24", "30000-32767")
                .unwrap(),
            ..Default::default()
        },
        store,
    )
    .await
    .expect("API server starts");
    Harness { dir, server }
}

/// Blanks what differs between runs: ages, timestamps, uids, resource
/// versions, the addresses and ports a range hands out, and the API
/// server's own address.
fn masked(text: &str) -> String {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut l = line.to_string();
        for (key, keep) in [
            ("creationTimestamp: ", 0),
            ("resourceVersion: ", 0),
            ("uid: ", 0),
            ("\"uid\": ", 0),
            ("\"creationTimestamp\": ", 0),
        ] {
            if let Some(i) = l.find(key) {
                l.truncate(i + key.len() + keep);
                l.push('*');
            }
        }
        out.push(l);
    }
    let joined = out.join("\n");
    let mut s = String::new();
    // Numbers after "10.0.0." and 5-digit node ports, and ages.
    let words: Vec<&str> = joined
        .split_inclusive(|c: char| !c.is_ascii_alphanumeric() && c != '.')
        .collect();
    for w in words {
        let core = w.trim_end_matches(|c: char| !c.is_ascii_alphanumeric() && c != '.');
        let tail = &w[core.len()..];
        let masked = if core.starts_with("10.0.0.") && core != "10.0.0.0" && core != "10.0.0.1" {
            "10.0.0.X".to_string()
        } else if core.len() == 5
            && core.starts_with('3')
            && core.chars().all(|c| c.is_ascii_digit())
        {
            "3XXXX".to_string()
        } else if core.len() >= 2
            && core.ends_with('s')
            && core[..core.len() - 1].chars().all(|c| c.is_ascii_digit())
        {
            "AGE".to_string()
        } else {
            core.to_string()
        };
        s.push_str(&masked);
        s.push_str(tail);
    }
    s
}

/// kubectl's column padding depends on the values' widths; compare the
/// cells.
fn cells(table: &str) -> Vec<Vec<String>> {
    table
        .lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

async fn create_reference_services(h: &Harness) {
    for (args, out) in [
        (
            vec!["create", "service", "clusterip", "x", "--tcp=80:8080"],
            "service/x created",
        ),
        (
            vec!["create", "service", "nodeport", "np", "--tcp=80:8080"],
            "service/np created",
        ),
        (
            vec![
                "create",
                "service",
                "clusterip",
                "headless",
                "--clusterip=None",
                "--tcp=80:80",
            ],
            "service/headless created",
        ),
        (
            vec![
                "create",
                "service",
                "externalname",
                "ext",
                "--external-name=example.com",
            ],
            "service/ext created",
        ),
        (
            vec!["create", "service", "loadbalancer", "lb", "--tcp=443:8443"],
            "service/lb created",
        ),
        (
            vec![
                "create",
                "service",
                "clusterip",
                "web",
                "--clusterip=10.0.0.164",
                "--tcp=80:80",
            ],
            "service/web created",
        ),
    ] {
        assert_eq!(h.kubectl(&args).await.trim(), out);
    }
}

async fn wait_for_kubernetes_service(h: &Harness) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !h
        .kubectl_out(&["get", "svc", "kubernetes"], None)
        .await
        .status
        .success()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the kubernetes Service never appeared"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_type_reads_as_in_kubernetes() {
    let h = harness().await;
    wait_for_kubernetes_service(&h).await;
    create_reference_services(&h).await;

    for name in ["np", "headless", "ext"] {
        let got = h.kubectl(&["get", "svc", name, "-o", "yaml"]).await;
        let want = reference(
            "02-create-svc.txt",
            &format!("kubectl get svc {name} -o yaml"),
        );
        assert_eq!(
            masked(got.trim_end()),
            masked(&want),
            "get svc {name} -o yaml"
        );
    }

    let got = h.kubectl(&["get", "svc"]).await;
    let mut want = reference("02-get-svc.txt", "kubectl get svc");
    // The reference's web Service was made by `kubectl expose`, ours by
    // `create service` (a named port): the rows read the same.
    want = masked(&want);
    assert_eq!(cells(&masked(&got)), cells(&want), "get svc:\n{got}");
    let got = h.kubectl(&["get", "svc", "-o", "wide"]).await;
    let want = masked(&reference("02-get-svc.txt", "kubectl get svc -o wide"));
    assert_eq!(
        cells(&masked(&got)),
        cells(&want),
        "get svc -o wide:\n{got}"
    );

    // (The others' `Endpoints:` line needs the endpointslice controller:
    // see the controllers' tests.)
    for name in ["ext"] {
        let got = h.kubectl(&["describe", "svc", name]).await;
        let want = reference(
            "02-describe-svc.txt",
            &format!("kubectl describe svc {name}"),
        );
        assert_eq!(masked(got.trim_end()), masked(&want), "describe svc {name}");
    }

    let got = h.kubectl(&["cluster-info"]).await;
    let want = reference("02-cluster-info.txt", "kubectl cluster-info");
    let url = format!("https://{}", h.server.addr());
    assert_eq!(got.trim_end(), want.replace("https://127.0.0.1:6543", &url));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_expose_makes_a_service_from_a_pods_labels_and_ports() {
    let h = Harness::start().await;
    h.kubectl(&[
        "run",
        "web",
        "--image=nginx",
        "--port=80",
        "--labels=app=web",
    ])
    .await;
    let out = h.kubectl(&["expose", "pod", "web", "--port=80"]).await;
    assert_eq!(out.trim(), "service/web exposed");
    let svc: Value =
        serde_json::from_str(&h.kubectl(&["get", "svc", "web", "-o", "json"]).await).unwrap();
    assert_eq!(svc["spec"]["selector"], json!({"app": "web"}));
    assert_eq!(
        svc["spec"]["ports"],
        json!([{"port": 80, "protocol": "TCP", "targetPort": 80}])
    );
    let ip = svc["spec"]["clusterIP"].as_str().unwrap();
    assert!(
        ip.starts_with("10.43."),
        "{ip} is not from the default range 10.43.0.0/16"
    );
    assert_eq!(svc["spec"]["clusterIPs"], json!([ip]));
    assert_eq!(svc["spec"]["ipFamilies"], json!(["IPv4"]));
    assert_eq!(svc["spec"]["ipFamilyPolicy"], "SingleStack");
    assert_eq!(svc["spec"]["internalTrafficPolicy"], "Cluster");
    assert_eq!(svc["spec"]["sessionAffinity"], "None");
    assert_eq!(svc["status"], json!({"loadBalancer": {}}));
    // `get all` lists Services (category "all").
    let all = h.kubectl(&["get", "all"]).await;
    assert!(all.contains("service/web"), "{all}");
    assert!(all.contains("pod/web"), "{all}");
    h.kubectl(&["delete", "svc", "web"]).await;
    let err = h.kubectl_fails(&["get", "svc", "web"], None).await;
    assert!(err.contains("services \"web\" not found"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allocation_errors_read_as_in_kubernetes() {
    let h = harness().await;
    create_reference_services(&h).await;
    let np: Value =
        serde_json::from_str(&h.kubectl(&["get", "svc", "np", "-o", "json"]).await).unwrap();
    let taken_port = np["spec"]["ports"][0]["nodePort"]
        .as_i64()
        .unwrap()
        .to_string();

    let cases = [
        (
            vec![
                "create",
                "service",
                "clusterip",
                "dup",
                "--clusterip=10.0.0.164",
                "--tcp=80:80",
            ],
            "kubectl create service clusterip dup --clusterip=10.0.0.164 --tcp=80:80".to_string(),
        ),
        (
            vec![
                "create",
                "service",
                "clusterip",
                "outofrange",
                "--clusterip=10.1.0.5",
                "--tcp=80:80",
            ],
            "kubectl create service clusterip outofrange --clusterip=10.1.0.5 --tcp=80:80".into(),
        ),
        (
            vec![
                "create",
                "service",
                "nodeport",
                "badnp",
                "--tcp=80:80",
                "--node-port=40000",
            ],
            "kubectl create service nodeport badnp --tcp=80:80 --node-port=40000".into(),
        ),
        (
            vec!["create", "service", "clusterip", "x", "--tcp=80:80"],
            "kubectl create service clusterip x --tcp=80:80".into(),
        ),
    ];
    for (args, command) in cases {
        let err = h.kubectl_fails(&args, None).await;
        assert_eq!(
            err.trim_end(),
            reference("02-svc-errors.txt", &command),
            "{command}"
        );
    }
    let flag = format!("--node-port={taken_port}");
    let err = h
        .kubectl_fails(
            &[
                "create",
                "service",
                "nodeport",
                "dupnp",
                "--tcp=80:80",
                &flag,
            ],
            None,
        )
        .await;
    let want = reference(
        "02-svc-errors.txt",
        "kubectl create service nodeport dupnp --tcp=80:80 --node-port=32543",
    )
    .replace("32543", &taken_port);
    assert_eq!(err.trim_end(), want);

    // A server-side dry run of a taken address is accepted (Kubernetes does
    // not check a dry run's address) and takes nothing.
    let out = h
        .kubectl(&[
            "create",
            "service",
            "clusterip",
            "dup",
            "--clusterip=10.0.0.164",
            "--tcp=80:80",
            "-o",
            "json",
            "--dry-run=server",
        ])
        .await;
    let want = reference(
        "02-svc-errors.txt",
        "kubectl create service clusterip dup --clusterip=10.0.0.164 --tcp=80:80 -o json --dry-run=server",
    );
    assert_eq!(masked(out.trim_end()), masked(&want));
    h.kubectl_fails(&["get", "svc", "dup"], None).await;

    // The raw 422 bodies.
    let client = h.client().await;
    let dup = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "dup"},
        "spec": {"clusterIP": "10.0.0.164", "ports": [{"port": 80}]}});
    let (code, body, _) = send(
        &client,
        "POST",
        "/api/v1/namespaces/default/services",
        "application/json",
        dup.to_string().into_bytes(),
    )
    .await;
    assert_eq!(code, 422);
    let want: Value = serde_json::from_str(&reference("02-svc-errors.txt",
        "curl -sk -X POST -H 'Authorization: Bearer benchtoken' -H 'Content-Type: application/json' https://127.0.0.1:6543/api/v1/namespaces/default/services --data @dupip.json")).unwrap();
    assert_eq!(body, want);
    let badnp = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "badnp"},
        "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 40000}]}});
    let (code, body, _) = send(
        &client,
        "POST",
        "/api/v1/namespaces/default/services",
        "application/json",
        badnp.to_string().into_bytes(),
    )
    .await;
    assert_eq!(code, 422);
    let want: Value = serde_json::from_str(&reference("02-svc-errors.txt",
        "curl -sk -X POST -H 'Authorization: Bearer benchtoken' -H 'Content-Type: application/json' https://127.0.0.1:6543/api/v1/namespaces/default/services --data @badnp.json")).unwrap();
    assert_eq!(body, want);
}

/// The keys of the allocation records.
async fn allocations(store: &Arc<dyn Store>) -> BTreeSet<String> {
    store
        .list("/registry/ranges/", ListOptions::default())
        .await
        .unwrap()
        .kvs
        .into_iter()
        .map(|kv| kv.key)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_are_released_on_delete_and_type_change_and_dry_runs_take_none() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open_store(dir.path()).await;
    let server = common::start_compacting(dir.path(), store.clone(), Duration::ZERO).await;
    let h = Harness { dir, server };
    wait_for_kubernetes_service(&h).await;
    let base = allocations(&store).await;
    assert!(
        base.contains("/registry/ranges/serviceips/10.43.0.1"),
        "{base:?}"
    );

    h.kubectl(&[
        "create",
        "service",
        "nodeport",
        "a",
        "--tcp=80:80",
        "--node-port=30500",
    ])
    .await;
    let svc: Value =
        serde_json::from_str(&h.kubectl(&["get", "svc", "a", "-o", "json"]).await).unwrap();
    let ip = svc["spec"]["clusterIP"].as_str().unwrap().to_string();
    let with_a = allocations(&store).await;
    assert_eq!(with_a.len(), base.len() + 2, "{with_a:?}");
    assert!(with_a.contains(&format!("/registry/ranges/serviceips/{ip}")));
    assert!(with_a.contains("/registry/ranges/servicenodeports/30500"));

    // Dry runs, of a create and of an update to another port, take nothing.
    h.kubectl(&[
        "create",
        "service",
        "nodeport",
        "b",
        "--tcp=80:80",
        "--dry-run=server",
    ])
    .await;
    h.kubectl(&["patch", "svc", "a", "--dry-run=server", "-p",
        r#"{"spec":{"ports":[{"port":80,"targetPort":80,"protocol":"TCP","name":"80-80","nodePort":30501}]}}"#]).await;
    assert_eq!(allocations(&store).await, with_a);

    // NodePort -> ClusterIP gives the node port back; the address stays.
    h.kubectl(&[
        "patch",
        "svc",
        "a",
        "-p",
        r#"{"spec":{"type":"ClusterIP"}}"#,
    ])
    .await;
    let svc: Value =
        serde_json::from_str(&h.kubectl(&["get", "svc", "a", "-o", "json"]).await).unwrap();
    assert_eq!(svc["spec"]["clusterIP"], ip.as_str());
    assert_eq!(svc["spec"]["ports"][0].get("nodePort"), None, "{svc}");
    assert!(!allocations(&store)
        .await
        .contains("/registry/ranges/servicenodeports/30500"));
    h.kubectl(&[
        "create",
        "service",
        "nodeport",
        "c",
        "--tcp=80:80",
        "--node-port=30500",
    ])
    .await;

    // Deleting gives the address back; it can be asked for again.
    h.kubectl(&["delete", "svc", "a"]).await;
    assert!(!allocations(&store)
        .await
        .contains(&format!("/registry/ranges/serviceips/{ip}")));
    let flag = format!("--clusterip={ip}");
    h.kubectl(&[
        "create",
        "service",
        "clusterip",
        "again",
        &flag,
        "--tcp=80:80",
    ])
    .await;

    // ClusterIP -> ExternalName gives the address back too.
    h.kubectl(&[
        "patch",
        "svc",
        "again",
        "-p",
        r#"{"spec":{"type":"ExternalName","externalName":"example.com"}}"#,
    ])
    .await;
    let svc: Value =
        serde_json::from_str(&h.kubectl(&["get", "svc", "again", "-o", "json"]).await).unwrap();
    assert_eq!(svc["spec"].get("clusterIP"), None, "{svc}");
    assert!(!allocations(&store)
        .await
        .contains(&format!("/registry/ranges/serviceips/{ip}")));
    // And back to ClusterIP takes a new one.
    h.kubectl(&["patch", "svc", "again", "--type=json", "-p",
        r#"[{"op":"replace","path":"/spec/type","value":"ClusterIP"},{"op":"remove","path":"/spec/externalName"}]"#]).await;
    let svc: Value =
        serde_json::from_str(&h.kubectl(&["get", "svc", "again", "-o", "json"]).await).unwrap();
    let new_ip = svc["spec"]["clusterIP"].as_str().expect("a new cluster IP");
    assert!(allocations(&store)
        .await
        .contains(&format!("/registry/ranges/serviceips/{new_ip}")));

    // A failed create (the name is taken) keeps nothing.
    let before = allocations(&store).await;
    h.kubectl_fails(&["create", "service", "nodeport", "c", "--tcp=81:81"], None)
        .await;
    assert_eq!(allocations(&store).await, before);

    // Deleting a namespace's Services gives their values back.
    h.kubectl(&["create", "namespace", "gone"]).await;
    h.kubectl(&[
        "create",
        "service",
        "nodeport",
        "n",
        "-n",
        "gone",
        "--tcp=80:80",
    ])
    .await;
    assert_eq!(allocations(&store).await.len(), before.len() + 2);
    h.kubectl(&["delete", "namespace", "gone"]).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while allocations(&store).await != before {
        assert!(
            std::time::Instant::now() < deadline,
            "the namespace's Service kept its values"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_repair_pass_at_start_releases_leaks_and_records_what_services_hold() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open_store(dir.path()).await;
    // A value taken an hour ago by a server that died before storing its
    // Service, one taken just now (a create in flight elsewhere), and a
    // stored Service whose values have no record.
    let old = json!({"namespace": "default", "name": "ghost", "uid": "u1",
        "allocatedAt": "2020-01-01T00:00:00Z"});
    store
        .create(
            "/registry/ranges/serviceips/10.43.9.9",
            old.to_string().into_bytes(),
        )
        .await
        .unwrap();
    store
        .create(
            "/registry/ranges/servicenodeports/31999",
            old.to_string().into_bytes(),
        )
        .await
        .unwrap();
    let young = json!({"namespace": "default", "name": "inflight", "uid": "u2",
        "allocatedAt": chrono::Utc::now().to_rfc3339()});
    store
        .create(
            "/registry/ranges/serviceips/10.43.9.10",
            young.to_string().into_bytes(),
        )
        .await
        .unwrap();
    let svc = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "restored", "namespace": "default", "uid": "u3",
                     "creationTimestamp": "2020-01-01T00:00:00Z"},
        "spec": {"type": "NodePort", "clusterIP": "10.43.9.11", "clusterIPs": ["10.43.9.11"],
                 "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80, "nodePort": 31000}]}});
    store
        .create(
            "/registry/services/default/restored",
            svc.to_string().into_bytes(),
        )
        .await
        .unwrap();

    let server = common::start_compacting(dir.path(), store.clone(), Duration::ZERO).await;
    let keys = allocations(&store).await;
    assert!(
        !keys.contains("/registry/ranges/serviceips/10.43.9.9"),
        "{keys:?}"
    );
    assert!(
        !keys.contains("/registry/ranges/servicenodeports/31999"),
        "{keys:?}"
    );
    assert!(
        keys.contains("/registry/ranges/serviceips/10.43.9.10"),
        "{keys:?}"
    );
    assert!(
        keys.contains("/registry/ranges/serviceips/10.43.9.11"),
        "{keys:?}"
    );
    assert!(
        keys.contains("/registry/ranges/servicenodeports/31000"),
        "{keys:?}"
    );
    let h = Harness { dir, server };
    let err = h
        .kubectl_fails(
            &[
                "create",
                "service",
                "clusterip",
                "dup",
                "--clusterip=10.43.9.11",
                "--tcp=80:80",
            ],
            None,
        )
        .await;
    assert!(err.contains("provided IP is already allocated"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kubernetes_service_points_at_the_advertised_address() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open_store(dir.path()).await;
    // The default: the address of this machine's default route (the test
    // only reads the objects naming it).
    let server = orca_apiserver::start(
        orca_apiserver::Config {
            data_dir: dir.path().to_path_buf(),
            https_port: 0,
            ..Default::default()
        },
        store,
    )
    .await
    .unwrap();
    let Some(ip) = server.advertise_address() else {
        panic!("this machine has no default route, so the server advertises no address");
    };
    assert!(!ip.is_loopback());
    let port = server.addr().port();
    let h = Harness { dir, server };
    wait_for_kubernetes_service(&h).await;
    let got = h.kubectl(&["get", "svc", "kubernetes", "-o", "yaml"]).await;
    let want = reference(
        "02-svc-kubernetes.txt",
        "kubectl get svc kubernetes -o yaml",
    )
    .replace("10.0.0.1", "10.43.0.1")
    .replace("6543", &port.to_string());
    assert_eq!(masked(got.trim_end()), masked(&want));

    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let out = h
            .kubectl_out(&["get", "endpoints", "kubernetes", "-o", "yaml"], None)
            .await;
        if out.status.success() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no kubernetes endpoints"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let fix = |s: String| {
        s.replace("192.0.2.2", &ip.to_string())
            .replace("6543", &port.to_string())
    };
    for (args, command) in [
        (
            vec!["get", "endpoints", "kubernetes", "-o", "yaml"],
            "kubectl get endpoints kubernetes -o yaml",
        ),
        (
            vec!["get", "endpointslices", "-A", "-o", "yaml"],
            "kubectl get endpointslices -A -o yaml",
        ),
    ] {
        let got = h.kubectl(&args).await;
        let want = fix(reference("02-svc-kubernetes.txt", command));
        assert_eq!(masked(got.trim_end()), masked(&want), "{command}");
    }
    for (args, command) in [
        (
            vec!["get", "endpointslices", "-A"],
            "kubectl get endpointslices -A",
        ),
        (vec!["get", "endpoints", "-A"], "kubectl get endpoints -A"),
    ] {
        let got = h.kubectl(&args).await;
        let want = fix(reference("02-svc-kubernetes.txt", command));
        assert_eq!(cells(&masked(&got)), cells(&masked(&want)), "{command}");
    }
    let got = h.kubectl(&["describe", "svc", "kubernetes"]).await;
    let want = fix(reference(
        "02-svc-kubernetes.txt",
        "kubectl describe svc kubernetes",
    ))
    .replace("10.0.0.1", "10.43.0.1");
    assert_eq!(got.trim_end(), want);

    // The serving certificate names what pods connect to.
    let cert = std::fs::read_to_string(h.dir.path().join("tls/serving.sans")).unwrap();
    for name in [
        "10.43.0.1",
        "kubernetes.default.svc.cluster.local",
        &ip.to_string(),
    ] {
        assert!(
            cert.lines().any(|l| l == name),
            "{name} missing from {cert}"
        );
    }
}

/// An etcd process on loopback ports, killed (by its pid) when dropped.
struct Etcd {
    child: std::process::Child,
    endpoint: String,
    _dir: tempfile::TempDir,
}

impl Etcd {
    fn start() -> Etcd {
        let dir = tempfile::tempdir().unwrap();
        let port = || {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        };
        let endpoint = format!("http://127.0.0.1:{}", port());
        let peer = format!("http://127.0.0.1:{}", port());
        let log = std::fs::File::create(dir.path().join("etcd.log")).unwrap();
        let child = std::process::Command::new("etcd")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--name", "svc-test", "--listen-client-urls", &endpoint])
            .args([
                "--advertise-client-urls",
                &endpoint,
                "--listen-peer-urls",
                &peer,
            ])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("svc-test={peer}")])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting etcd: install Debian's etcd-server (scripts/test.sh does)");
        Etcd {
            child,
            endpoint,
            _dir: dir,
        }
    }

    async fn connect(&self) -> Arc<dyn Store> {
        for _ in 0..100 {
            if let Ok(s) =
                orca_store::etcd::EtcdStore::connect(std::slice::from_ref(&self.endpoint)).await
            {
                return Arc::new(s);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("etcd at {} never answered", self.endpoint);
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_etcd_never_hand_out_a_value_twice() {
    let etcd = Etcd::start();
    // A small range, so that the two servers compete for the same values.
    let net = orca_apiserver::ServiceNetwork::new("10.96.0.0/26", "30000-30079").unwrap();
    let mut servers = Vec::new();
    let mut dirs = Vec::new();
    for _ in 0..2 {
        let dir = tempfile::tempdir().unwrap();
        let store = etcd.connect().await;
        let server = orca_apiserver::start(
            orca_apiserver::Config {
                data_dir: dir.path().to_path_buf(),
                https_port: 0,
                service_network: net.clone(),
                ..Default::default()
            },
            store,
        )
        .await
        .unwrap();
        servers.push(server);
        dirs.push(dir);
    }
    let clients: Vec<kube::Client> = servers.iter().map(|s| s.local_client()).collect();
    // The kubernetes Service takes the range's first address first.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while send(
        &clients[0],
        "GET",
        "/api/v1/namespaces/default/services/kubernetes",
        "application/json",
        vec![],
    )
    .await
    .0 != 200
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no kubernetes Service"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // 60 NodePort Services, half through each server, all at once: the
    // range has 62 addresses (one is the kubernetes Service's) and 80 ports.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..60 {
        let client = clients[i % 2].clone();
        tasks.spawn(async move {
            let body = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": format!("s{i}")},
                "spec": {"type": "NodePort", "ports": [{"port": 80}]}});
            let (code, v, _) = send(&client, "POST", "/api/v1/namespaces/default/services",
                "application/json", body.to_string().into_bytes()).await;
            assert_eq!(code, 201, "{v}");
            (v["spec"]["clusterIP"].as_str().unwrap().to_string(),
             v["spec"]["ports"][0]["nodePort"].as_i64().unwrap())
        });
    }
    let mut ips = BTreeSet::new();
    let mut ports = BTreeSet::new();
    while let Some(r) = tasks.join_next().await {
        let (ip, port) = r.unwrap();
        assert!(ips.insert(ip.clone()), "{ip} handed out twice");
        assert!(ports.insert(port), "node port {port} handed out twice");
    }
    // The range is now nearly full: one more address, then none.
    let one_more = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "last"},
        "spec": {"ports": [{"port": 80}]}});
    let (code, v, _) = send(
        &clients[1],
        "POST",
        "/api/v1/namespaces/default/services",
        "application/json",
        one_more.to_string().into_bytes(),
    )
    .await;
    assert_eq!(code, 201, "{v}");
    assert!(ips.insert(v["spec"]["clusterIP"].as_str().unwrap().to_string()));
    let full = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "full"},
        "spec": {"ports": [{"port": 80}]}});
    let (code, v, _) = send(
        &clients[0],
        "POST",
        "/api/v1/namespaces/default/services",
        "application/json",
        full.to_string().into_bytes(),
    )
    .await;
    assert_eq!(code, 500, "{v}");
    assert_eq!(
        v["message"],
        "Internal error occurred: failed to allocate a serviceIP: range is full"
    );
    // Deleting through one server frees the value for the other.
    let (code, _, _) = send(
        &clients[0],
        "DELETE",
        "/api/v1/namespaces/default/services/s3",
        "application/json",
        vec![],
    )
    .await;
    assert_eq!(code, 200);
    let (code, v, _) = send(
        &clients[1],
        "POST",
        "/api/v1/namespaces/default/services",
        "application/json",
        full.to_string().into_bytes(),
    )
    .await;
    assert_eq!(code, 201, "{v}");
    for s in servers {
        s.shutdown().await;
    }
}
