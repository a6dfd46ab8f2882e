//! The seed's kubectl cheat sheet, end to end: the real kubectl against a
//! real `orca server` (API server, scheduler, controllers, node agent) running
//! real containers, on a node of its own (a network namespace). Needs root,
//! ORCA_TEST_REGISTRY and ORCA_TEST_IMAGES (see scripts/test.sh).

use crate::common;

use common::Cluster;

const POD_DEFINITION: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: web
  labels:
    app: web
    tier: frontend
spec:
  containers:
  - name: nginx
    image: nginx
    ports:
    - containerPort: 80
    env:
    - name: GREETING
      value: "hello from orca"
"#;

#[test]
fn seed_cheat_sheet() {
    let cluster = Cluster::start();
    let manifest = cluster.dir.path().join("pod-definition.yaml");
    std::fs::write(&manifest, POD_DEFINITION).unwrap();
    let manifest = manifest.to_str().unwrap();

    // kubectl create -f pod-definition.yaml
    assert_eq!(
        cluster.kubectl_ok(&["create", "-f", manifest]).trim(),
        "pod/web created"
    );
    // kubectl run [podname] --image=busybox -- /bin/sh -c "sleep 3600"
    assert_eq!(
        cluster
            .kubectl_ok(&[
                "run",
                "bb",
                "--image=busybox",
                "--",
                "/bin/sh",
                "-c",
                "sleep 3600"
            ])
            .trim(),
        "pod/bb created"
    );
    cluster.kubectl_ok(&[
        "wait",
        "--for=condition=Ready",
        "pod/web",
        "pod/bb",
        "--timeout=90s",
    ]);

    // kubectl get pods
    let pods = cluster.kubectl_ok(&["get", "pods"]);
    let lines: Vec<&str> = pods.lines().collect();
    assert_eq!(
        columns(lines[0]),
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
        "{pods}"
    );
    for (line, name) in lines[1..].iter().zip(["bb", "web"]) {
        assert_eq!(&columns(line)[..4], [name, "1/1", "Running", "0"], "{pods}");
    }

    // kubectl get pods -o wide: the IP and NODE columns are filled.
    let wide = cluster.kubectl_ok(&["get", "pods", "-o", "wide"]);
    let header = columns(wide.lines().next().unwrap());
    assert_eq!(
        header,
        [
            "NAME",
            "READY",
            "STATUS",
            "RESTARTS",
            "AGE",
            "IP",
            "NODE",
            "NOMINATED",
            "NODE",
            "READINESS",
            "GATES"
        ]
    );
    let web_row = wide.lines().find(|l| l.starts_with("web ")).unwrap();
    let web_ip = columns(web_row)[5].to_string();
    assert!(
        web_ip.starts_with("10.252."),
        "pod IP from the node's pod CIDR: {wide}"
    );
    assert_eq!(columns(web_row)[6], cluster.node_name, "{wide}");

    // The nginx page is served on the pod IP, port 80.
    let page = cluster.http_get(&format!("{web_ip}:80"), "/");
    assert!(page.contains("Welcome to nginx"), "{page}");

    // kubectl describe pod: events in the order Kubernetes records them.
    let describe = cluster.kubectl_ok(&["describe", "pod", "bb"]);
    assert!(describe.contains("Status:           Running"), "{describe}");
    let events = describe.split("Events:").nth(1).expect("an Events section");
    let order: Vec<usize> = ["Scheduled", "Pulling", "Pulled", "Created", "Started"]
        .iter()
        .map(|reason| {
            events
                .find(reason)
                .unwrap_or_else(|| panic!("no {reason} event: {describe}"))
        })
        .collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "events out of order: {describe}"
    );

    // kubectl get pod [podname] -o yaml > file.yaml
    let yaml = cluster.kubectl_ok(&["get", "pod", "web", "-o", "yaml"]);
    assert!(yaml.contains("phase: Running"), "{yaml}");
    assert!(yaml.contains(&format!("podIP: {web_ip}")), "{yaml}");
    assert!(yaml.contains("value: hello from orca"), "{yaml}");

    // kubectl exec -it [podname] -- sh, typed at a terminal.
    let (out, code) =
        cluster.kubectl_in_terminal(&["exec", "-it", "bb", "--", "sh"], "echo hi; exit 3\n");
    assert!(out.contains("hi"), "{out}");
    assert_eq!(code, 3, "{out}");
    assert_eq!(
        cluster
            .kubectl_ok(&["exec", "bb", "--", "cat", "/etc/hostname"])
            .trim(),
        "bb"
    );
    assert_eq!(
        cluster
            .kubectl_ok(&["exec", "web", "--", "sh", "-c", "echo $GREETING"])
            .trim(),
        "hello from orca"
    );

    // kubectl logs: nginx logged the request above.
    let logs = cluster.kubectl_ok(&["logs", "web"]);
    assert!(logs.contains("GET / HTTP/1.1"), "{logs}");

    // kubectl delete -f pod-definition.yaml, and by name.
    assert_eq!(
        cluster.kubectl_ok(&["delete", "-f", manifest]).trim(),
        "pod \"web\" deleted"
    );
    assert_eq!(
        cluster
            .kubectl_ok(&["delete", "pod", "bb", "--grace-period=2"])
            .trim(),
        "pod \"bb\" deleted"
    );
    let left = cluster.kubectl(&["get", "pods"]);
    assert!(
        left.stderr
            .contains("No resources found in default namespace."),
        "{left:?}"
    );
}

fn columns(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}
