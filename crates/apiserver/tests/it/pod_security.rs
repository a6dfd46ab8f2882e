//! PodSecurity admission through the API: `enforce` refuses a violating
//! pod with Kubernetes' message, `warn` answers with a Warning header,
//! `baseline` admits a plain pod.

use crate::common;

use common::{default_service_account, send, Harness};
use serde_json::json;

async fn namespace(client: &kube::Client, name: &str, labels: serde_json::Value) {
    let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}});
    let (code, v, _) = send(
        client,
        "POST",
        "/api/v1/namespaces",
        "application/json",
        body.to_string().into_bytes(),
    )
    .await;
    assert_eq!(code, 201, "{v}");
    default_service_account(client, name).await;
}

fn pod(name: &str, privileged: bool) -> Vec<u8> {
    let mut c = json!({"name": "c", "image": "busybox"});
    if privileged {
        c["securityContext"] = json!({"privileged": true});
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {"containers": [c]}})
        .to_string()
        .into_bytes()
}

#[tokio::test]
async fn enforce_refuses_warn_warns_and_baseline_admits() {
    let h = Harness::start().await;
    let client = h.client().await;
    namespace(
        &client,
        "strict",
        json!({"pod-security.kubernetes.io/enforce": "restricted"}),
    )
    .await;
    namespace(
        &client,
        "warned",
        json!({"pod-security.kubernetes.io/warn": "baseline"}),
    )
    .await;
    namespace(
        &client,
        "base",
        json!({"pod-security.kubernetes.io/enforce": "baseline"}),
    )
    .await;

    for uri in [
        "/api/v1/namespaces/strict/pods?dryRun=All",
        "/api/v1/namespaces/strict/pods",
    ] {
        let (code, v, _) = send(&client, "POST", uri, "application/json", pod("x", true)).await;
        assert_eq!(code, 403, "{v}");
        assert_eq!(
            v["message"],
            "pods \"x\" is forbidden: violates PodSecurity \"restricted:latest\": \
             privileged (container \"c\" must not set securityContext.privileged=true), \
             allowPrivilegeEscalation != false (container \"c\" must set securityContext.allowPrivilegeEscalation=false), \
             unrestricted capabilities (container \"c\" must set securityContext.capabilities.drop=[\"ALL\"]), \
             runAsNonRoot != true (pod or container \"c\" must set securityContext.runAsNonRoot=true), \
             seccompProfile (pod or container \"c\" must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")"
        );
    }

    let (code, v, warnings) = send(
        &client,
        "POST",
        "/api/v1/namespaces/warned/pods",
        "application/json",
        pod("w", true),
    )
    .await;
    assert_eq!(code, 201, "{v}");
    assert_eq!(
        warnings,
        vec!["299 - \"would violate PodSecurity \\\"baseline:latest\\\": privileged (container \\\"c\\\" must not set securityContext.privileged=true)\"".to_string()]
    );

    let (code, v, warnings) = send(
        &client,
        "POST",
        "/api/v1/namespaces/base/pods",
        "application/json",
        pod("p", false),
    )
    .await;
    assert_eq!(code, 201, "{v}");
    assert!(warnings.is_empty(), "{warnings:?}");

    // Tightening a namespace warns about the pods already there.
    let patch = json!({"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "baseline"}}});
    let (code, v, warnings) = send(
        &client,
        "PATCH",
        "/api/v1/namespaces/warned",
        "application/merge-patch+json",
        patch.to_string().into_bytes(),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings[0].contains("existing pods in namespace \\\"warned\\\" violate the new PodSecurity enforce level \\\"baseline:latest\\\""), "{warnings:?}");
    assert!(warnings[1].contains("w: privileged"), "{warnings:?}");
}

/// What the real kubectl prints for a warned and for a refused pod.
#[tokio::test]
async fn kubectl_prints_the_warning_and_the_refusal() {
    let h = Harness::start().await;
    let client = h.client().await;
    namespace(
        &client,
        "ps",
        json!({"pod-security.kubernetes.io/warn": "restricted", "pod-security.kubernetes.io/enforce": "baseline"}),
    )
    .await;
    let plain = h
        .kubectl_out(&["-n", "ps", "run", "plain", "--image=busybox"], None)
        .await;
    let stderr = String::from_utf8_lossy(&plain.stderr);
    assert!(plain.status.success(), "{stderr}");
    assert!(
        stderr.contains("Warning: would violate PodSecurity \"restricted:latest\": allowPrivilegeEscalation != false"),
        "{stderr}"
    );
    let overrides = r#"{"spec":{"containers":[{"name":"bad","image":"busybox","securityContext":{"privileged":true}}]}}"#;
    let bad = h
        .kubectl_out(
            &[
                "-n",
                "ps",
                "run",
                "bad",
                "--image=busybox",
                "--overrides",
                overrides,
            ],
            None,
        )
        .await;
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success());
    assert!(
        stderr.contains("Error from server (Forbidden): pods \"bad\" is forbidden: violates PodSecurity \"baseline:latest\": privileged (container \"bad\" must not set securityContext.privileged=true)"),
        "{stderr}"
    );
}
