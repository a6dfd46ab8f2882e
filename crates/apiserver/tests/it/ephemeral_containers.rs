//! `pods/ephemeralcontainers`: what `kubectl debug` writes (a strategic
//! merge patch, answered in protobuf), GET/PUT/PATCH of the subresource,
//! Kubernetes' refusals (422) of a changed or removed ephemeral container,
//! dry run, and RBAC on the subresource's own verbs.

use crate::common::{self, send, Harness};

use serde_json::{json, Value};

const BASE: &str = "/api/v1/namespaces/default/pods";

async fn pod(h: &Harness, name: &str) -> Value {
    let (code, v, _) = send(
        &h.client().await,
        "GET",
        &format!("{BASE}/{name}"),
        "application/json",
        vec![],
    )
    .await;
    assert_eq!(code, 200, "{v}");
    v
}

fn ephemeral_names(pod: &Value) -> Vec<String> {
    pod["spec"]["ephemeralContainers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| c["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_debug_adds_an_ephemeral_container_with_defaults() {
    let h = Harness::start().await;
    h.kubectl(&["run", "target", "--image=busybox", "--", "sleep", "3600"])
        .await;
    let out = h
        .kubectl_out(
            &[
                "debug",
                "target",
                "--image=busybox",
                "-c",
                "dbg",
                "--target=target",
                "--profile=general",
                "--",
                "true",
            ],
            None,
        )
        .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("Targeting container \"target\""),
        "{stdout}"
    );
    let p = pod(&h, "target").await;
    let ec = &p["spec"]["ephemeralContainers"][0];
    assert_eq!(ec["name"], "dbg");
    assert_eq!(ec["targetContainerName"], "target");
    assert_eq!(ec["command"], json!(["true"]));
    // The v1 defaults, as for any container.
    assert_eq!(ec["imagePullPolicy"], "Always");
    assert_eq!(ec["terminationMessagePath"], "/dev/termination-log");
    assert_eq!(ec["terminationMessagePolicy"], "File");
    assert_eq!(
        ec["securityContext"]["capabilities"]["add"],
        json!(["SYS_PTRACE"])
    );

    // describe shows them from the spec.
    let described = h.kubectl(&["describe", "pod", "target"]).await;
    let section = described
        .split("Ephemeral Containers:")
        .nth(1)
        .expect("an Ephemeral Containers section");
    assert!(section.trim_start().starts_with("dbg:"), "{described}");

    // A target that is not one of the pod's containers: Kubernetes' words.
    let err = h
        .kubectl_fails(
            &[
                "debug",
                "target",
                "--image=busybox",
                "-c",
                "dbg2",
                "--target=nosuch",
                "--",
                "true",
            ],
            None,
        )
        .await;
    assert!(
        err.contains(
            "The Pod \"target\" is invalid: spec.ephemeralContainers[1].targetContainerName: Not found: \"nosuch\""
        ),
        "{err}"
    );
    // A name the pod's containers already use.
    let err = h
        .kubectl_fails(
            &[
                "debug",
                "target",
                "--image=busybox",
                "-c",
                "target",
                "--",
                "true",
            ],
            None,
        )
        .await;
    assert!(
        err.contains("spec.ephemeralContainers[1].name: Duplicate value: \"target\""),
        "{err}"
    );
    assert_eq!(ephemeral_names(&pod(&h, "target").await), ["dbg"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_subresource_adds_but_never_changes_or_removes() {
    let h = Harness::start().await;
    let client = h.client().await;
    h.kubectl(&["run", "web", "--image=busybox", "--", "sleep", "3600"])
        .await;
    let uri = format!("{BASE}/web/ephemeralcontainers");

    // GET answers the pod.
    let (code, got, _) = send(&client, "GET", &uri, "application/json", vec![]).await;
    assert_eq!(code, 200, "{got}");
    assert_eq!(got["kind"], "Pod");
    assert_eq!(got["metadata"]["name"], "web");

    // PUT adds one; the rest of the body is not the subresource's to change.
    let mut put = got.clone();
    put["spec"]["ephemeralContainers"] = json!([{"name": "one", "image": "busybox"}]);
    put["metadata"]["labels"] = json!({"sneaked": "in"});
    put["spec"]["containers"][0]["image"] = json!("nginx");
    let (code, v, _) = send(
        &client,
        "PUT",
        &uri,
        "application/json",
        put.to_string().into_bytes(),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(ephemeral_names(&v), ["one"]);
    assert!(v["metadata"]["labels"].get("sneaked").is_none(), "{v}");
    assert_eq!(v["spec"]["containers"][0]["image"], "busybox");

    // A strategic merge patch as kubectl debug sends it (a two-way patch:
    // the new container and the order of the whole list) merges by name.
    let (code, v, _) = send(
        &client,
        "PATCH",
        &uri,
        "application/strategic-merge-patch+json",
        json!({"spec": {
            "$setElementOrder/ephemeralContainers": [{"name": "one"}, {"name": "two"}],
            "ephemeralContainers": [{"name": "two", "image": "busybox", "stdin": true, "tty": true}]}})
            .to_string()
            .into_bytes(),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(ephemeral_names(&v), ["one", "two"]);

    // A JSON patch appending.
    let (code, v, _) = send(
        &client,
        "PATCH",
        &uri,
        "application/json-patch+json",
        json!([{"op": "add", "path": "/spec/ephemeralContainers/-",
                "value": {"name": "three", "image": "busybox"}}])
        .to_string()
        .into_bytes(),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(ephemeral_names(&v), ["one", "two", "three"]);

    // Changing one: 422 with Kubernetes' message.
    let (code, v, _) = send(
        &client,
        "PATCH",
        &uri,
        "application/json-patch+json",
        json!([{"op": "replace", "path": "/spec/ephemeralContainers/0/image", "value": "alpine"}])
            .to_string()
            .into_bytes(),
    )
    .await;
    assert_eq!(code, 422, "{v}");
    assert_eq!(v["reason"], "Invalid");
    let msg = v["message"].as_str().unwrap();
    assert!(
        msg.starts_with("Pod \"web\" is invalid: spec.ephemeralContainers[one]: Forbidden: existing ephemeral containers \"one\" may not be changed\n"),
        "{msg}"
    );
    assert_eq!(
        v["details"]["causes"][0]["field"],
        "spec.ephemeralContainers[one]"
    );

    // Removing one: 422.
    let (code, v, _) = send(
        &client,
        "PATCH",
        &uri,
        "application/json-patch+json",
        json!([{"op": "remove", "path": "/spec/ephemeralContainers/1"}])
            .to_string()
            .into_bytes(),
    )
    .await;
    assert_eq!(code, 422, "{v}");
    assert_eq!(
        v["message"],
        "Pod \"web\" is invalid: spec.ephemeralContainers: Forbidden: existing ephemeral containers \"two\" may not be removed\n"
    );

    // Fields ephemeral containers may not have. (Without an order
    // directive a strategic merge puts the new item first, as Kubernetes'.)
    let (code, v, _) = send(
        &client,
        "PATCH",
        &uri,
        "application/strategic-merge-patch+json",
        json!({"spec": {"ephemeralContainers": [{"name": "four", "image": "busybox",
            "ports": [{"containerPort": 80}]}]}})
        .to_string()
        .into_bytes(),
    )
    .await;
    assert_eq!(code, 422, "{v}");
    assert_eq!(
        v["message"],
        "Pod \"web\" is invalid: spec.ephemeralContainers[0].ports: Forbidden: cannot be set for an Ephemeral Container"
    );

    // Dry run answers with the container and stores nothing.
    let (code, v, _) = send(
        &client,
        "PATCH",
        &format!("{uri}?dryRun=All"),
        "application/strategic-merge-patch+json",
        json!({"spec": {"ephemeralContainers": [{"name": "dry", "image": "busybox"}]}})
            .to_string()
            .into_bytes(),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(ephemeral_names(&v), ["dry", "one", "two", "three"]);
    assert_eq!(
        ephemeral_names(&pod(&h, "web").await),
        ["one", "two", "three"]
    );

    // The main resource does not take them on create, nor changes to them.
    let err = h
        .kubectl_fails(
            &["create", "-f", "-"],
            Some(
                &json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "eph"},
                    "spec": {"containers": [{"name": "c", "image": "busybox"}],
                             "ephemeralContainers": [{"name": "d", "image": "busybox"}]}})
                .to_string(),
            ),
        )
        .await;
    assert!(
        err.contains(
            "The Pod \"eph\" is invalid: spec.ephemeralContainers: Forbidden: cannot be set on create"
        ),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_lists_the_subresource() {
    let h = Harness::start().await;
    let (_, v, _) = send(
        &h.client().await,
        "GET",
        "/api/v1",
        "application/json",
        vec![],
    )
    .await;
    let r = v["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "pods/ephemeralcontainers")
        .expect("pods/ephemeralcontainers is listed");
    assert_eq!(r["kind"], "Pod");
    assert_eq!(r["verbs"], json!(["get", "patch", "update"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rbac_checks_the_subresource_verbs() {
    let h = Harness::start().await;
    common::default_service_account(&h.client().await, "default").await;
    h.kubectl(&["run", "web", "--image=busybox", "--", "sleep", "3600"])
        .await;
    // May read and patch pods, not their ephemeral containers.
    h.kubectl(&[
        "create",
        "role",
        "pod-editor",
        "--verb=get,list,watch,patch,update",
        "--resource=pods",
    ])
    .await;
    h.kubectl(&[
        "create",
        "rolebinding",
        "bob-pods",
        "--role=pod-editor",
        "--user=bob",
    ])
    .await;
    let bob = h.user_kubeconfig("bob", &[]);
    let debug = ["debug", "web", "--image=busybox", "-c", "dbg", "--", "true"];
    let out = h.kubectl_with(&bob, &debug, None).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(
            "pods \"web\" is forbidden: User \"bob\" cannot patch resource \"pods/ephemeralcontainers\" in API group \"\" in the namespace \"default\""
        ),
        "{stderr}"
    );
    assert!(ephemeral_names(&pod(&h, "web").await).is_empty());

    h.kubectl(&[
        "create",
        "role",
        "debugger",
        "--verb=patch",
        "--resource=pods/ephemeralcontainers",
    ])
    .await;
    h.kubectl(&[
        "create",
        "rolebinding",
        "bob-debug",
        "--role=debugger",
        "--user=bob",
    ])
    .await;
    let out = h.kubectl_with(&bob, &debug, None).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(ephemeral_names(&pod(&h, "web").await), ["dbg"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_security_judges_an_added_ephemeral_container() {
    let h = Harness::start().await;
    h.kubectl(&["create", "namespace", "guarded"]).await;
    common::default_service_account(&h.client().await, "guarded").await;
    h.kubectl(&[
        "label",
        "namespace",
        "guarded",
        "pod-security.kubernetes.io/enforce=baseline",
    ])
    .await;
    h.kubectl(&[
        "run",
        "web",
        "-n",
        "guarded",
        "--image=busybox",
        "--",
        "sleep",
        "3600",
    ])
    .await;
    // The sysadmin profile asks for a privileged container.
    let err = h
        .kubectl_fails(
            &[
                "debug",
                "web",
                "-n",
                "guarded",
                "--image=busybox",
                "-c",
                "root",
                "--profile=sysadmin",
                "--",
                "true",
            ],
            None,
        )
        .await;
    assert!(
        err.contains("pods \"web\" is forbidden: violates PodSecurity \"baseline:latest\": privileged (container \"root\" must not set securityContext.privileged=true)"),
        "{err}"
    );
    // So does the general one (SYS_PTRACE is not a baseline capability).
    let err = h
        .kubectl_fails(
            &[
                "debug",
                "web",
                "-n",
                "guarded",
                "--image=busybox",
                "-c",
                "ptrace",
                "--profile=general",
                "--",
                "true",
            ],
            None,
        )
        .await;
    assert!(
        err.contains("non-default capabilities (container \"ptrace\" must not include \"SYS_PTRACE\" in securityContext.capabilities.add)"),
        "{err}"
    );
    // The baseline profile passes.
    h.kubectl(&[
        "debug",
        "web",
        "-n",
        "guarded",
        "--image=busybox",
        "-c",
        "plain",
        "--profile=baseline",
        "--",
        "true",
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_restriction_keeps_nodes_from_adding_ephemeral_containers() {
    let h = Harness::start().await;
    h.kubectl(&["run", "web", "--image=busybox", "--", "sleep", "3600"])
        .await;
    // Even with RBAC granting it, a node may not write the subresource.
    h.kubectl(&[
        "create",
        "clusterrole",
        "node-debugger",
        "--verb=get,patch",
        "--resource=pods,pods/ephemeralcontainers",
    ])
    .await;
    h.kubectl(&[
        "create",
        "clusterrolebinding",
        "node-debugger",
        "--clusterrole=node-debugger",
        "--user=system:node:n1",
    ])
    .await;
    let node = h.user_kubeconfig("system:node:n1", &["system:nodes"]);
    let out = h
        .kubectl_with(
            &node,
            &["debug", "web", "--image=busybox", "-c", "dbg", "--", "true"],
            None,
        )
        .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(
            "pods \"web\" is forbidden: unexpected pod subresource \"ephemeralcontainers\", only 'status' and 'eviction' are allowed"
        ),
        "{stderr}"
    );
    assert!(ephemeral_names(&pod(&h, "web").await).is_empty());
}
