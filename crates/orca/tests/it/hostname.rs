//! A pod whose name is longer than a hostname may be (the upstream suite's
//! pods carry a uuid) runs, with its name cut to 63 characters as the
//! kubelet does (needs root, ORCA_TEST_REGISTRY and ORCA_TEST_IMAGES).

use crate::common;

use common::Cluster;

#[test]
fn a_pod_with_a_long_name_runs_under_a_63_character_hostname() {
    let c = Cluster::start();
    let name = "termination-message-container69f32b4d-bc49-485e-80cf-404213b90d74";
    let manifest = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  restartPolicy: Never\n  containers: [{{name: c, image: busybox, command: [hostname]}}]\n"
    );
    let path = c.dir.path().join("long.yaml");
    std::fs::write(&path, manifest).unwrap();
    c.kubectl_ok(&["create", "-f", path.to_str().unwrap()]);
    c.kubectl_ok(&[
        "wait",
        "--for=jsonpath={.status.phase}=Succeeded",
        &format!("pod/{name}"),
        "--timeout=120s",
    ]);
    assert_eq!(
        c.kubectl_ok(&["logs", name]).trim(),
        "termination-message-container69f32b4d-bc49-485e-80cf-404213b90d"
    );
}
