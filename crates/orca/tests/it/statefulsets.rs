//! StatefulSets end to end: the real kubectl against a real `orca server`
//! running real containers (needs root, ORCA_TEST_REGISTRY and
//! ORCA_TEST_IMAGES; see scripts/test.sh). Pods keep their names, their
//! hostnames, and their DNS names under the headless Service.

use crate::common;

use std::time::Duration;

use common::Cluster;

const WAIT: Duration = Duration::from_secs(180);

const WEB: &str = r#"apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  clusterIP: None
  selector:
    app: web
  ports:
  - port: 80
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
spec:
  serviceName: web
  replicas: 2
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: nginx
        image: nginx
        readinessProbe:
          tcpSocket:
            port: 80
          periodSeconds: 1
"#;

fn pod_ip(c: &Cluster, pod: &str) -> String {
    c.kubectl_ok(&["get", "pod", pod, "-o", "jsonpath={.status.podIP}"])
}

fn lookup(c: &Cluster, from: &str, name: &str) -> String {
    c.kubectl_ok(&[
        "exec",
        from,
        "--",
        "sh",
        "-c",
        &format!("nslookup {name}; true"),
    ])
}

#[test]
fn pods_keep_their_names_hostnames_and_dns_names() {
    let c = Cluster::start();
    let path = c.dir.path().join("web.yaml");
    std::fs::write(&path, WEB).unwrap();
    c.kubectl_ok(&["create", "-f", path.to_str().unwrap()]);
    c.kubectl_ok(&["rollout", "status", "statefulset/web", "--timeout=180s"]);
    let out = c.kubectl_ok(&["get", "statefulset", "web"]);
    let row: Vec<&str> = out.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(&row[..2], ["web", "2/2"], "{out}");
    assert_eq!(
        c.kubectl_ok(&["exec", "web-0", "--", "hostname"]).trim(),
        "web-0"
    );
    // Each pod by its own name under the headless Service.
    let ip0 = pod_ip(&c, "web-0");
    c.wait_until("web-0.web resolves to web-0", WAIT, || {
        lookup(&c, "web-1", "web-0.web.default.svc.cluster.local")
            .contains(&format!("Address: {ip0}"))
    });

    // Deleted, web-0 comes back under its name, and its DNS name follows.
    let uid =
        |c: &Cluster| c.kubectl_ok(&["get", "pod", "web-0", "-o", "jsonpath={.metadata.uid}"]);
    let before = uid(&c);
    c.kubectl_ok(&["delete", "pod", "web-0"]);
    c.wait_until("web-0 back and ready", WAIT, || {
        let now = c.kubectl(&[
            "get",
            "pod",
            "web-0",
            "-o",
            "jsonpath={.metadata.uid} {.status.conditions[?(@.type==\"Ready\")].status}",
        ]);
        let out = now.stdout.trim().to_string();
        !out.starts_with(&before) && out.ends_with("True")
    });
    let ip0 = pod_ip(&c, "web-0");
    c.wait_until("web-0.web resolves to the new web-0", WAIT, || {
        lookup(&c, "web-1", "web-0.web.default.svc.cluster.local")
            .contains(&format!("Address: {ip0}"))
    });
}
