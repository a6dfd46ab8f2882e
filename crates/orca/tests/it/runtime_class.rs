//! RuntimeClasses end to end: the node agent runs pods whose class names
//! the handler it has (`runc`), and leaves others Pending with the
//! kubelet's FailedCreatePodSandBox event (needs root, ORCA_TEST_REGISTRY
//! and ORCA_TEST_IMAGES; see scripts/test.sh).

use std::time::Duration;

use crate::common;

use common::Cluster;

const MANIFESTS: &str = r#"apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata: {name: standard}
handler: runc
---
apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata: {name: vm}
handler: kata
---
apiVersion: v1
kind: Pod
metadata: {name: runs}
spec:
  runtimeClassName: standard
  terminationGracePeriodSeconds: 1
  containers: [{name: c, image: busybox, command: [sleep, "3600"]}]
---
apiVersion: v1
kind: Pod
metadata: {name: waits}
spec:
  runtimeClassName: vm
  containers: [{name: c, image: busybox, command: [sleep, "3600"]}]
"#;

#[test]
fn a_known_handler_runs_and_an_unknown_one_waits_with_the_kubelets_event() {
    let c = Cluster::start();
    let path = c.dir.path().join("classes.yaml");
    std::fs::write(&path, MANIFESTS).unwrap();
    c.kubectl_ok(&["create", "-f", path.to_str().unwrap()]);
    c.kubectl_ok(&[
        "wait",
        "--for=condition=Ready",
        "pod/runs",
        "--timeout=120s",
    ]);

    c.wait_until("the FailedCreatePodSandBox event", Duration::from_secs(60), || {
        c.kubectl_ok(&[
            "get",
            "events",
            "--field-selector=involvedObject.name=waits,reason=FailedCreatePodSandBox",
            "-o",
            "jsonpath={.items[*].message}",
        ])
        .contains(r#"Failed to create pod sandbox: rpc error: code = Unknown desc = failed to get sandbox runtime: no runtime for "kata" is configured"#)
    });
    let phase = c.kubectl_ok(&["get", "pod", "waits", "-o", "jsonpath={.status.phase}"]);
    assert_eq!(phase, "Pending");
}
