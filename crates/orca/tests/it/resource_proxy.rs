//! The proxy subresources end to end: `kubectl get --raw` through
//! `pods/NAME/proxy`, `services/NAME/proxy` and `nodes/NAME/proxy` reaching a
//! real nginx container and the node's agent, with kube-apiserver's errors
//! when nothing answers. Needs root, ORCA_TEST_REGISTRY and ORCA_TEST_IMAGES
//! (see scripts/test.sh).

use crate::common;

use std::time::Duration;

use common::Cluster;

const POD: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {app: web}
spec:
  containers:
  - name: nginx
    image: nginx
    command: [sh, -c, 'echo proxied-page > /usr/share/nginx/html/index.html && exec nginx -g "daemon off;"']
    ports:
    - {name: http, containerPort: 80}
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports:
  - {name: http, port: 8080, targetPort: http}
---
apiVersion: v1
kind: Service
metadata:
  name: nobody
spec:
  selector: {app: nobody}
  ports:
  - {port: 80}
"#;

#[test]
fn proxy_subresources_reach_pods_services_and_nodes() {
    let cluster = Cluster::start();
    let path = cluster.dir.path().join("web.yaml");
    std::fs::write(&path, POD).unwrap();
    cluster.kubectl_ok(&["apply", "-f", path.to_str().unwrap()]);
    cluster.kubectl_ok(&["wait", "--for=condition=Ready", "pod/web", "--timeout=90s"]);
    let raw = |p: &str| cluster.kubectl(&["get", "--raw", p]);

    // A pod: its first declared port, a port by number, a port by name.
    for id in ["web", "web:80", "web:http", "http:web:80"] {
        let out = raw(&format!("/api/v1/namespaces/default/pods/{id}/proxy/"));
        assert!(
            out.stdout.contains("proxied-page"),
            "pods/{id}/proxy: {out:?}"
        );
    }
    // A Service: a ready endpoint behind the named service port, once the
    // endpoints controller has caught up.
    cluster.wait_until(
        "services/web/proxy answers",
        Duration::from_secs(30),
        || {
            raw("/api/v1/namespaces/default/services/web:http/proxy/index.html")
                .stdout
                .contains("proxied-page")
        },
    );
    let by_number = raw("/api/v1/namespaces/default/services/web:8080/proxy/");
    assert!(by_number.stdout.contains("proxied-page"), "{by_number:?}");

    // Nothing listens: kube-apiserver's 503 wording.
    let refused = raw("/api/v1/namespaces/default/pods/web:81/proxy/");
    assert!(!refused.status.success());
    assert!(
        refused
            .stderr
            .contains("error trying to reach service: dial tcp")
            && refused.stderr.contains(":81: connect: connection refused"),
        "{refused:?}"
    );
    let none = raw("/api/v1/namespaces/default/services/nobody/proxy/");
    assert!(
        none.stderr.contains("ServiceUnavailable")
            && none
                .stderr
                .contains("no endpoints available for service \"nobody\""),
        "{none:?}"
    );
    let missing = raw("/api/v1/namespaces/default/pods/absent/proxy/");
    assert!(
        missing.stderr.contains("pods \"absent\" not found"),
        "{missing:?}"
    );

    // The node's agent: the kubelet's /pods and /healthz.
    let node = &cluster.node_name;
    let pods = raw(&format!("/api/v1/nodes/{node}/proxy/pods"));
    let list: serde_json::Value = serde_json::from_str(&pods.stdout)
        .unwrap_or_else(|e| panic!("nodes/{node}/proxy/pods is not JSON ({e}): {pods:?}"));
    assert_eq!(list["kind"], "PodList");
    assert!(
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["metadata"]["name"] == "web"),
        "{list}"
    );
    let healthz = raw(&format!("/api/v1/nodes/{node}/proxy/healthz"));
    assert_eq!(healthz.stdout.trim(), "ok", "{healthz:?}");

    cluster.kubectl_ok(&["delete", "pod", "web", "--grace-period=1"]);
}
