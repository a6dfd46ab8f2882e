//! `subPathExpr` expanded from the container's environment as the kubelet
//! does, and expansions that would leave the volume refused with
//! CreateContainerConfigError (needs root, ORCA_TEST_REGISTRY and
//! ORCA_TEST_IMAGES).

use std::time::Duration;

use crate::common;

use common::Cluster;

#[test]
fn sub_path_expressions_expand_and_stay_inside_the_volume() {
    let c = Cluster::start();
    let manifest = r#"
apiVersion: v1
kind: Pod
metadata: {name: expand}
spec:
  restartPolicy: Never
  volumes: [{name: data, emptyDir: {}}]
  containers:
  - name: c
    image: busybox
    env:
    - name: POD_NAME
      valueFrom: {fieldRef: {fieldPath: metadata.name}}
    command: [sh, -c, "echo hi > /sub/f && cat /all/logs/expand/f"]
    volumeMounts:
    - {name: data, mountPath: /all}
    - {name: data, mountPath: /sub, subPathExpr: logs/$(POD_NAME)}
---
apiVersion: v1
kind: Pod
metadata: {name: escape}
spec:
  restartPolicy: Never
  volumes: [{name: data, emptyDir: {}}]
  containers:
  - name: c
    image: busybox
    command: [sh, -c, "ls /sub"]
    env: [{name: UP, value: ".."}]
    volumeMounts: [{name: data, mountPath: /sub, subPathExpr: $(UP)}]
"#;
    let path = c.dir.path().join("pods.yaml");
    std::fs::write(&path, manifest).unwrap();
    c.kubectl_ok(&["create", "-f", path.to_str().unwrap()]);
    c.kubectl_ok(&[
        "wait",
        "--for=jsonpath={.status.phase}=Succeeded",
        "pod/expand",
        "--timeout=120s",
    ]);
    assert_eq!(c.kubectl_ok(&["logs", "expand"]).trim(), "hi");

    let waiting = || {
        c.kubectl_ok(&[
            "get",
            "pod",
            "escape",
            "-o",
            "jsonpath={.status.containerStatuses[0].state.waiting}",
        ])
    };
    c.wait_until(
        "the escaping pod to wait with CreateContainerConfigError",
        Duration::from_secs(60),
        || waiting().contains("CreateContainerConfigError"),
    );
    assert!(
        waiting().contains("unable to provision SubPath `..`: must not contain '..'"),
        "{}",
        waiting()
    );
    c.kubectl_ok(&["delete", "pod", "expand", "escape", "--wait"]);
}
