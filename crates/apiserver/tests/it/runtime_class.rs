//! RuntimeClasses (node.k8s.io/v1) through the real kubectl, and the
//! RuntimeClass admission plugin on pods: a missing class refuses the pod,
//! the class's overhead and scheduling constraints are given to the pod.

use crate::common;

use common::{default_service_account, Harness};

const CLASSES: &str = r#"
apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata: {name: plain}
handler: runc
---
apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata: {name: sandboxed}
handler: kata
overhead: {podFixed: {cpu: 10m, memory: 1Mi}}
scheduling:
  nodeSelector: {sandbox: "yes"}
  tolerations: [{key: sandbox, operator: Exists, effect: NoSchedule}]
"#;

fn pod(name: &str, class: &str, extra: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  runtimeClassName: {class}\n  containers: [{{name: c, image: busybox}}]\n{extra}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classes_are_served_and_pods_get_their_overhead_and_scheduling() {
    let h = Harness::start().await;
    let client = h.client().await;
    default_service_account(&client, "default").await;

    let out = h.kubectl_stdin(&["apply", "-f", "-"], Some(CLASSES)).await;
    assert_eq!(
        out.trim(),
        "runtimeclass.node.k8s.io/plain created\nruntimeclass.node.k8s.io/sandboxed created"
    );
    let out = h.kubectl(&["get", "runtimeclass"]).await;
    let rows: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0], ["NAME", "HANDLER", "AGE"], "{out}");
    assert_eq!(&rows[1][..2], ["plain", "runc"], "{out}");
    assert_eq!(&rows[2][..2], ["sandboxed", "kata"], "{out}");
    let resources = h
        .kubectl(&["api-resources", "--api-group=node.k8s.io"])
        .await;
    assert!(
        resources.contains("runtimeclasses") && resources.contains("node.k8s.io/v1"),
        "{resources}"
    );

    // The handler is fixed; a bad one is refused with Kubernetes' words.
    let err = h
        .kubectl_fails(
            &[
                "patch",
                "runtimeclass",
                "plain",
                "-p",
                r#"{"handler":"crun"}"#,
            ],
            None,
        )
        .await;
    assert!(
        err.contains("handler: Invalid value: \"crun\": field is immutable"),
        "{err}"
    );
    let err = h
        .kubectl_fails(
            &["create", "-f", "-"],
            Some("apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata: {name: bad}\nhandler: Not_A_Label\n"),
        )
        .await;
    assert!(
        err.contains("The RuntimeClass \"bad\" is invalid: handler: Invalid value: \"Not_A_Label\": a lowercase RFC 1123 label"),
        "{err}"
    );

    // A missing class refuses the pod (403), dry run included.
    for args in [
        &["create", "-f", "-"][..],
        &["create", "--dry-run=server", "-f", "-"][..],
    ] {
        let err = h
            .kubectl_fails(args, Some(&pod("lost", "missing", "")))
            .await;
        assert_eq!(
            err.trim(),
            "Error from server (Forbidden): error when creating \"STDIN\": pods \"lost\" is forbidden: pod rejected: RuntimeClass \"missing\" not found"
        );
    }

    // The class's overhead and scheduling constraints join the pod's.
    h.kubectl_stdin(
        &["create", "-f", "-"],
        Some(&pod(
            "boxed",
            "sandboxed",
            "  nodeSelector: {disk: ssd}\n  tolerations: [{key: other, operator: Exists}]\n",
        )),
    )
    .await;
    let spec = h
        .kubectl(&[
            "get",
            "pod",
            "boxed",
            "-o",
            "jsonpath={.spec.overhead} {.spec.nodeSelector} {.spec.tolerations[*].key}",
        ])
        .await;
    assert_eq!(
        spec,
        r#"{"cpu":"10m","memory":"1Mi"} {"disk":"ssd","sandbox":"yes"} other sandbox node.kubernetes.io/not-ready node.kubernetes.io/unreachable"#
    );

    // A pod may not bring its own overhead, nor contradict the class.
    let err = h
        .kubectl_fails(
            &["create", "-f", "-"],
            Some(&pod("greedy", "plain", "  overhead: {cpu: 1}\n")),
        )
        .await;
    assert!(
        err.contains("pods \"greedy\" is forbidden: pod rejected: Pod Overhead set without corresponding RuntimeClass defined Overhead"),
        "{err}"
    );
    let err = h
        .kubectl_fails(
            &["create", "-f", "-"],
            Some(&pod(
                "torn",
                "sandboxed",
                "  nodeSelector: {sandbox: \"no\"}\n",
            )),
        )
        .await;
    assert!(
        err.contains("pods \"torn\" is forbidden: conflict: runtimeClass.scheduling.nodeSelector[sandbox] = yes; pod.spec.nodeSelector[sandbox] = no"),
        "{err}"
    );
}
