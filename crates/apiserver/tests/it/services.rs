//! Services through the real kubectl, against Kubernetes' output in the
//! reference captures (`platform/02-*`): every type, kubectl's create,
//! expose, get, describe and cluster-info, allocation errors word for word,
//! and the `kubernetes` Service (see also `service_allocation.rs`).

use crate::common;

use std::time::Duration;

use common::{send, Harness};
use serde_json::{json, Value};

const REF: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../testdata/kubernetes-v1.32/platform"
);

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
            // From the range's static band, which random picks avoid (an
            // address above it could already be taken by a service above).
            vec![
                "create",
                "service",
                "clusterip",
                "web",
                "--clusterip=10.0.0.12",
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
                "--clusterip=10.0.0.12",
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
        // The reference took 10.0.0.164; here it is from the static band.
        assert_eq!(
            err.trim_end(),
            reference("02-svc-errors.txt", &command).replace("10.0.0.164", "10.0.0.12"),
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
            "--clusterip=10.0.0.12",
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
        "spec": {"clusterIP": "10.0.0.12", "ports": [{"port": 80}]}});
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
        "curl -sk -X POST -H 'Authorization: Bearer benchtoken' -H 'Content-Type: application/json' https://127.0.0.1:6543/api/v1/namespaces/default/services --data @dupip.json").replace("10.0.0.164", "10.0.0.12")).unwrap();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_and_replace_keep_the_allocated_values() {
    let h = Harness::start().await;
    let manifest = r#"apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  type: NodePort
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: http}
"#;
    let file = h.dir.path().join("svc.yaml");
    std::fs::write(&file, manifest).unwrap();
    let file = file.to_str().unwrap();
    assert_eq!(
        h.kubectl(&["apply", "-f", file]).await.trim(),
        "service/web created"
    );
    let before: Value =
        serde_json::from_str(&h.kubectl(&["get", "svc", "web", "-o", "json"]).await).unwrap();
    assert_eq!(
        h.kubectl(&["apply", "-f", file]).await.trim(),
        "service/web unchanged"
    );
    // A replace without the allocated values keeps them too.
    assert_eq!(
        h.kubectl(&["replace", "-f", file]).await.trim(),
        "service/web replaced"
    );
    let after: Value =
        serde_json::from_str(&h.kubectl(&["get", "svc", "web", "-o", "json"]).await).unwrap();
    assert_eq!(before["spec"], after["spec"]);
    // Changing an allocated value is refused with Kubernetes' words.
    let err = h
        .kubectl_fails(
            &[
                "patch",
                "svc",
                "web",
                "-p",
                r#"{"spec":{"clusterIP":"10.43.200.200","clusterIPs":["10.43.200.200"]}}"#,
            ],
            None,
        )
        .await;
    assert!(err.contains("spec.clusterIPs[0]: Invalid value: []string{\"10.43.200.200\"}: may not change once set"), "{err}");
}
