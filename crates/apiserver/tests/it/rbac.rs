//! Authentication and RBAC through the real kubectl, with distinct users
//! holding client certificates (CN = user, O = groups) minted from the
//! cluster CA: Kubernetes' 403 wording, `auth whoami`, `auth can-i` (also
//! `--list`), a can-i matrix for view, edit and admin bound in one
//! namespace, escalation prevention, aggregation, and what the bootstrap
//! policy looks like.

use crate::common;

use std::path::Path;
use std::time::Duration;

use common::Harness;

struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

async fn run(h: &Harness, kc: &Path, args: &[&str]) -> Out {
    let o = h.kubectl_with(kc, args, None).await;
    Out {
        ok: o.status.success(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

fn forbidden(verb: &str, what: &str, resource: &str, scope: &str) -> String {
    format!(
        "Error from server (Forbidden): {what} is forbidden: User \"bob\" cannot {verb} resource \"{resource}\" in API group \"\" {scope}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_without_bindings_is_refused_in_kubernetes_words() {
    let h = Harness::start().await;
    let bob = h.user_kubeconfig("bob", &["dev"]);
    let ns = "in the namespace \"default\"";
    let cluster = "at the cluster scope";
    for (args, want) in [
        (vec!["get", "pods"], forbidden("list", "pods", "pods", ns)),
        (
            vec!["get", "secrets", "-A"],
            forbidden("list", "secrets", "secrets", cluster),
        ),
        (
            vec!["get", "nodes"],
            forbidden("list", "nodes", "nodes", cluster),
        ),
        (
            vec!["get", "ns", "default"],
            forbidden("get", "namespaces \"default\"", "namespaces", ns),
        ),
        (
            vec!["delete", "configmap", "x"],
            forbidden("delete", "configmaps \"x\"", "configmaps", ns),
        ),
    ] {
        let out = run(&h, &bob, &args).await;
        assert!(!out.ok, "{args:?} succeeded");
        assert_eq!(out.stderr, want, "{args:?}");
    }
    let out = run(
        &h,
        &bob,
        &["create", "configmap", "c1", "--from-literal=a=b"],
    )
    .await;
    assert_eq!(
        out.stderr,
        "error: failed to create configmap: configmaps is forbidden: User \"bob\" cannot create resource \"configmaps\" in API group \"\" in the namespace \"default\"\n"
    );

    // whoami, for the admin and for bob (directly and impersonated).
    let admin = h.kubectl(&["auth", "whoami"]).await;
    assert_eq!(
        admin,
        "ATTRIBUTE   VALUE\nUsername    system:admin\nGroups      [system:masters system:authenticated]\n"
    );
    let bob_whoami = "ATTRIBUTE   VALUE\nUsername    bob\nGroups      [dev system:authenticated]\n";
    assert_eq!(run(&h, &bob, &["auth", "whoami"]).await.stdout, bob_whoami);
    assert_eq!(
        h.kubectl(&["auth", "whoami", "--as=bob", "--as-group=dev"])
            .await,
        bob_whoami
    );
    let yaml = h.kubectl(&["auth", "whoami", "-o", "yaml"]).await;
    assert!(
        yaml.starts_with("apiVersion: authentication.k8s.io/v1\nkind: SelfSubjectReview\n"),
        "{yaml}"
    );

    // can-i before and after a binding.
    let out = run(&h, &bob, &["auth", "can-i", "list", "pods"]).await;
    assert_eq!((out.ok, out.stdout.as_str()), (false, "no\n"));
    assert_eq!(h.kubectl(&["auth", "can-i", "*", "*"]).await, "yes\n");
    let admin_list = h.kubectl(&["auth", "can-i", "--list"]).await;
    let rows: Vec<Vec<&str>> = admin_list
        .lines()
        .skip(1)
        .take(2)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows,
        vec![vec!["*.*", "[]", "[]", "[*]"], vec!["[*]", "[]", "[*]"]],
        "{admin_list}"
    );
    assert_eq!(
        admin_list.lines().filter(|l| l.starts_with("*.*")).count(),
        1
    );
    let list = run(&h, &bob, &["auth", "can-i", "--list"]).await.stdout;
    assert!(list.starts_with("Resources "), "{list}");
    assert!(
        has_row(
            &list,
            "selfsubjectreviews.authentication.k8s.io",
            "[create]"
        ),
        "{list}"
    );
    assert!(has_row(&list, "[/api]", "[get]"), "{list}");
    assert!(!has_row(&list, "pods", "[get list watch]"), "{list}");

    let created = h
        .kubectl(&[
            "create",
            "rolebinding",
            "bob-view",
            "--clusterrole=view",
            "--user=bob",
        ])
        .await;
    assert_eq!(
        created,
        "rolebinding.rbac.authorization.k8s.io/bob-view created\n"
    );
    let wide = h
        .kubectl(&["get", "rolebinding", "bob-view", "-o", "wide"])
        .await;
    let mut lines = wide.lines();
    assert_eq!(
        lines.next().unwrap().trim_end(),
        "NAME       ROLE               AGE   USERS   GROUPS   SERVICEACCOUNTS"
    );
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        (row[0], row[1], row[3]),
        ("bob-view", "ClusterRole/view", "bob")
    );

    let out = run(&h, &bob, &["get", "pods"]).await;
    assert!(out.ok, "{}", out.stderr);
    let out = run(&h, &bob, &["get", "secrets"]).await;
    assert_eq!(out.stderr, forbidden("list", "secrets", "secrets", ns));
    let out = run(&h, &bob, &["get", "pods", "-n", "kube-system"]).await;
    assert_eq!(
        out.stderr,
        forbidden("list", "pods", "pods", "in the namespace \"kube-system\"")
    );
    assert_eq!(
        run(&h, &bob, &["auth", "can-i", "list", "pods"])
            .await
            .stdout,
        "yes\n"
    );
    let out = run(
        &h,
        &bob,
        &["auth", "can-i", "list", "pods", "-n", "kube-system"],
    )
    .await;
    assert_eq!(out.stdout, "no\n");
    assert_eq!(
        run(&h, &bob, &["auth", "can-i", "list", "secrets"])
            .await
            .stdout,
        "no\n"
    );
    let list = run(&h, &bob, &["auth", "can-i", "--list"]).await.stdout;
    assert!(has_row(&list, "pods", "[get list watch]"), "{list}");
    assert!(
        has_row(&list, "deployments.apps", "[get list watch]"),
        "{list}"
    );

    // Impersonation needs the impersonate verb.
    let out = run(&h, &bob, &["get", "pods", "--as=alice"]).await;
    assert_eq!(
        out.stderr,
        "Error from server (Forbidden): users \"alice\" is forbidden: User \"bob\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope\n"
    );

    // The raw 403 as Kubernetes sends it.
    let client = h.client_as("bob", &["dev"]).await;
    let (code, v, _) = common::send(
        &client,
        "GET",
        "/api/v1/namespaces/default/secrets",
        "application/json",
        vec![],
    )
    .await;
    assert_eq!(code, 403);
    assert_eq!(
        v,
        serde_json::json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "secrets is forbidden: User \"bob\" cannot list resource \"secrets\" in API group \"\" in the namespace \"default\"",
            "reason": "Forbidden", "details": {"kind": "secrets"}, "code": 403})
    );
}

/// Whether `--list` output has a row starting with `first` and ending with
/// `verbs`.
fn has_row(list: &str, first: &str, verbs: &str) -> bool {
    list.lines()
        .any(|l| l.split_whitespace().next() == Some(first) && l.trim_end().ends_with(verbs))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn view_edit_and_admin_grant_what_kubernetes_grants_in_their_namespace_only() {
    let h = Harness::start().await;
    h.kubectl(&["create", "namespace", "team"]).await;
    h.kubectl(&["create", "namespace", "other"]).await;
    let users = ["viewer", "editor", "adminer"];
    for (user, role) in users.iter().zip(["view", "edit", "admin"]) {
        h.kubectl(&[
            "create",
            "rolebinding",
            &format!("{user}-binding"),
            &format!("--clusterrole={role}"),
            &format!("--user={user}"),
            "-n",
            "team",
        ])
        .await;
    }
    // (verb, resource, allowed for viewer, editor, adminer in "team")
    let matrix: &[(&str, &str, [bool; 3])] = &[
        ("get", "pods", [true, true, true]),
        ("list", "configmaps", [true, true, true]),
        ("get", "pods/log", [true, true, true]),
        ("create", "pods", [false, true, true]),
        ("create", "pods/exec", [false, true, true]),
        ("delete", "configmaps", [false, true, true]),
        ("get", "secrets", [false, true, true]),
        ("create", "serviceaccounts", [false, true, true]),
        ("update", "leases.coordination.k8s.io", [false, true, true]),
        (
            "create",
            "rolebindings.rbac.authorization.k8s.io",
            [false, false, true],
        ),
        (
            "delete",
            "roles.rbac.authorization.k8s.io",
            [false, false, true],
        ),
        (
            "create",
            "localsubjectaccessreviews.authorization.k8s.io",
            [false, false, true],
        ),
    ];
    for (i, user) in users.iter().enumerate() {
        let kc = h.user_kubeconfig(user, &[]);
        for (verb, resource, allowed) in matrix {
            let out = run(&h, &kc, &["auth", "can-i", verb, resource, "-n", "team"]).await;
            let want = if allowed[i] { "yes\n" } else { "no\n" };
            assert_eq!(out.stdout, want, "{user} {verb} {resource} in team");
            let out = run(&h, &kc, &["auth", "can-i", verb, resource, "-n", "other"]).await;
            assert_eq!(out.stdout, "no\n", "{user} {verb} {resource} in other");
        }
        for cluster_wide in [
            ["list", "nodes"],
            ["create", "namespaces"],
            ["list", "clusterroles"],
        ] {
            let out = run(
                &h,
                &kc,
                &["auth", "can-i", cluster_wide[0], cluster_wide[1]],
            )
            .await;
            assert_eq!(out.stdout, "no\n", "{user} {cluster_wide:?}");
        }
        // The admin side asks the same with a SubjectAccessReview-like
        // impersonated SelfSubjectAccessReview.
        let as_user = format!("--as={user}");
        let out = h
            .kubectl_out(
                &["auth", "can-i", "create", "pods", "-n", "team", &as_user],
                None,
            )
            .await;
        let want = if i > 0 { "yes\n" } else { "no\n" };
        assert_eq!(String::from_utf8_lossy(&out.stdout), want, "--as={user}");
    }

    // Escalation: the namespace admin may grant what it holds, not more.
    let adminer = h.user_kubeconfig("adminer", &[]);
    let out = run(
        &h,
        &adminer,
        &[
            "create",
            "role",
            "pod-reader",
            "--verb=get",
            "--resource=pods",
            "-n",
            "team",
        ],
    )
    .await;
    assert!(out.ok, "{}", out.stderr);
    let out = run(
        &h,
        &adminer,
        &[
            "create",
            "role",
            "node-reader",
            "--verb=list",
            "--resource=nodes",
            "-n",
            "team",
        ],
    )
    .await;
    assert!(!out.ok);
    assert!(
        out.stderr.contains(
            "roles.rbac.authorization.k8s.io \"node-reader\" is forbidden: user \"adminer\" (groups=[\"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"\"], Resources:[\"nodes\"], Verbs:[\"list\"]}"
        ),
        "{}",
        out.stderr
    );
    let out = run(
        &h,
        &adminer,
        &[
            "create",
            "rolebinding",
            "grab",
            "--clusterrole=cluster-admin",
            "--user=adminer",
            "-n",
            "team",
        ],
    )
    .await;
    assert!(!out.ok);
    assert!(
        out.stderr.contains(
            "rolebindings.rbac.authorization.k8s.io \"grab\" is forbidden: user \"adminer\""
        ) && out
            .stderr
            .contains("is attempting to grant RBAC permissions not currently held"),
        "{}",
        out.stderr
    );
    let out = run(
        &h,
        &adminer,
        &[
            "create",
            "rolebinding",
            "share-view",
            "--clusterrole=view",
            "--user=someone",
            "-n",
            "team",
        ],
    )
    .await;
    assert!(out.ok, "{}", out.stderr);
    let editor = h.user_kubeconfig("editor", &[]);
    let out = run(
        &h,
        &editor,
        &[
            "create",
            "role",
            "r",
            "--verb=get",
            "--resource=pods",
            "-n",
            "team",
        ],
    )
    .await;
    assert!(
        out.stderr.contains("roles.rbac.authorization.k8s.io is forbidden: User \"editor\" cannot create resource \"roles\" in API group \"rbac.authorization.k8s.io\" in the namespace \"team\""),
        "{}",
        out.stderr
    );

    // Aggregation: a ClusterRole labelled aggregate-to-view extends view
    // (and so edit and admin, which aggregate view).
    let widget = r#"{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "widget-viewer", "labels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}},
        "rules": [{"apiGroups": ["example.com"], "resources": ["widgets"], "verbs": ["get", "list"]}]}"#;
    h.kubectl_stdin(&["create", "-f", "-"], Some(widget)).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !h
        .kubectl(&["get", "clusterrole", "view", "-o", "json"])
        .await
        .contains("widgets")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "view never aggregated widget-viewer"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let client = h.client_as("viewer", &[]).await;
    let review = serde_json::json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": {"namespace": "team", "verb": "list", "group": "example.com", "resource": "widgets"}}});
    let (code, v, _) = common::send(
        &client,
        "POST",
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        "application/json",
        review.to_string().into_bytes(),
    )
    .await;
    assert_eq!(
        (code, &v["status"]["allowed"]),
        (201, &serde_json::json!(true)),
        "{v}"
    );
    let view = h
        .kubectl(&["get", "clusterrole", "view", "-o", "json"])
        .await;
    assert!(view.contains("widgets"), "{view}");
    let admin_role = h
        .kubectl(&["get", "clusterrole", "admin", "-o", "json"])
        .await;
    assert!(admin_role.contains("widgets"), "{admin_role}");
}

fn reference(file: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/kubernetes-v1.32/platform")
        .join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The output of `$ <command>` in a reference file.
fn reference_block(file: &str, command: &str) -> Option<String> {
    let text = reference(file);
    let start = text.find(&format!("$ {command}\n"))? + command.len() + 3;
    let rest = &text[start..];
    let end = rest.find("\n$ ").map(|e| e + 1).unwrap_or(rest.len());
    Some(rest[..end].trim_end_matches('\n').to_string() + "\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bootstrap_policy_reads_as_kubernetes_1_32() {
    let h = Harness::start().await;
    // Names as the reference cluster lists them, less its fork's own.
    let fork_only = [
        "system:openshift:public-info-viewer",
        "system:controller:service-ca-cert-publisher",
    ];
    let names = |out: &str| -> Vec<String> {
        out.lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next())
            .filter(|n| !fork_only.contains(n))
            .map(str::to_string)
            .collect()
    };
    let got = h.kubectl(&["get", "clusterroles"]).await;
    let orca_roles = ["orca:node-pod-network", "orca:node-service-routing"];
    let upstream_roles: Vec<String> = names(&got)
        .into_iter()
        .filter(|n| !orca_roles.contains(&n.as_str()))
        .collect();
    if let Some(want) = reference_block("03-clusterroles.txt", "kubectl get clusterroles") {
        assert_eq!(upstream_roles, names(&want));
    }
    assert_eq!(upstream_roles.len(), 64);
    let got = h.kubectl(&["get", "clusterrolebindings"]).await;
    let orca = [
        "orca:node-autoapprove-bootstrap",
        "orca:node-autoapprove-certificate-rotation",
        "orca:node-bootstrapper",
        "orca:node-pod-network",
        "orca:node-service-routing",
    ];
    let upstream: Vec<String> = names(&got)
        .into_iter()
        .filter(|n| !orca.contains(&n.as_str()))
        .collect();
    if let Some(want) = reference_block(
        "03-clusterrolebindings.txt",
        "kubectl get clusterrolebindings",
    ) {
        assert_eq!(upstream, names(&want));
    }
    assert_eq!(upstream.len(), 45);
    let wide = h
        .kubectl(&["get", "clusterrolebindings", "-o", "wide"])
        .await;
    let row = wide
        .lines()
        .find(|l| l.starts_with("system:public-info-viewer "))
        .unwrap();
    assert!(
        row.trim_end()
            .ends_with("system:authenticated, system:unauthenticated"),
        "{row}"
    );

    // describe reads the objects: the view role as Kubernetes shows it.
    if let Some(want) = reference_block(
        "03-describe-clusterrole-view.txt",
        "kubectl describe clusterrole view | head -60",
    ) {
        let got = h.kubectl(&["describe", "clusterrole", "view"]).await;
        let got: Vec<&str> = got.lines().take(60).collect();
        assert_eq!(got.join("\n") + "\n", want);
    }
    if let Some(want) = reference_block(
        "03-describe-clusterrole-system-node.txt",
        "kubectl describe clusterrole system:node | head -60",
    ) {
        let got = h.kubectl(&["describe", "clusterrole", "system:node"]).await;
        assert_eq!(got, want);
    }
    if let Some(want) = reference_block(
        "03-describe-clusterrole-view.txt",
        "kubectl describe clusterrolebinding cluster-admin",
    ) {
        assert_eq!(
            h.kubectl(&["describe", "clusterrolebinding", "cluster-admin"])
                .await,
            want
        );
    }
    let roles = h.kubectl(&["get", "roles,rolebindings", "-A"]).await;
    assert_eq!(
        roles.lines().filter(|l| l.contains("role.rbac")).count(),
        7,
        "{roles}"
    );
    assert_eq!(
        roles
            .lines()
            .filter(|l| l.contains("rolebinding.rbac"))
            .count(),
        7,
        "{roles}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_endpoints_answer_as_kube_apiserver() {
    let h = Harness::start().await;
    let verbose = h.kubectl(&["get", "--raw", "/readyz?verbose"]).await;
    assert!(
        verbose.starts_with("[+]ping ok\n[+]log ok\n[+]etcd ok\n"),
        "{verbose}"
    );
    assert!(
        verbose.contains("[+]poststarthook/rbac/bootstrap-roles ok\n"),
        "{verbose}"
    );
    assert!(
        verbose.ends_with("[+]shutdown ok\nreadyz check passed\n"),
        "{verbose}"
    );
    let livez = h.kubectl(&["get", "--raw", "/livez?verbose"]).await;
    assert!(
        livez.ends_with("livez check passed\n") && !livez.contains("shutdown"),
        "{livez}"
    );
    assert_eq!(h.kubectl(&["get", "--raw", "/readyz/etcd"]).await, "ok");
    let excluded = h
        .kubectl(&[
            "get",
            "--raw",
            "/readyz?exclude=nosuch&exclude=etcd&verbose",
        ])
        .await;
    assert!(!excluded.contains("[+]etcd ok"), "{excluded}");
    assert!(
        excluded.ends_with(
            "warn: some health checks cannot be excluded: no matches for \"nosuch\"\nreadyz check passed\n"
        ),
        "{excluded}"
    );
    let out = h
        .kubectl_out(&["get", "--raw", "/readyz/nosuch"], None)
        .await;
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "Error from server (NotFound): the server could not find the requested resource\n"
    );
    // Checks one by one are for system:monitoring, not for everyone.
    let bob = h.user_kubeconfig("bob", &[]);
    let out = run(&h, &bob, &["get", "--raw", "/readyz/etcd"]).await;
    assert_eq!(
        out.stderr,
        "Error from server (Forbidden): forbidden: User \"bob\" cannot get path \"/readyz/etcd\"\n"
    );
    assert_eq!(
        run(&h, &bob, &["get", "--raw", "/readyz"]).await.stdout,
        "ok"
    );
    let monitor = h.user_kubeconfig("prometheus", &["system:monitoring"]);
    assert_eq!(
        run(&h, &monitor, &["get", "--raw", "/readyz/etcd"])
            .await
            .stdout,
        "ok"
    );
}

/// Clients that leave a binding's `roleRef.apiGroup` (and a User subject's
/// group) empty, as the upstream e2e suite does, get the scheme defaults
/// instead of a 422.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_api_groups_of_bindings_are_defaulted() {
    use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding};
    use kube::api::{Api, PostParams};
    let h = Harness::start().await;
    let client = h.client().await;
    let binding = |kind: &str| {
        serde_json::json!({
            "metadata": {"name": "readers"},
            "roleRef": {"apiGroup": "", "kind": kind, "name": "view"},
            "subjects": [{"kind": "User", "name": "bob"}],
        })
    };
    let rb: RoleBinding = serde_json::from_value(binding("ClusterRole")).unwrap();
    let rb = Api::<RoleBinding>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &rb)
        .await
        .unwrap();
    let crb: ClusterRoleBinding = serde_json::from_value(binding("ClusterRole")).unwrap();
    let crb = Api::<ClusterRoleBinding>::all(client)
        .create(&PostParams::default(), &crb)
        .await
        .unwrap();
    for (role_ref, subjects) in [(rb.role_ref, rb.subjects), (crb.role_ref, crb.subjects)] {
        assert_eq!(role_ref.api_group, "rbac.authorization.k8s.io");
        assert_eq!(
            subjects.unwrap()[0].api_group.as_deref(),
            Some("rbac.authorization.k8s.io")
        );
    }
    let out = run(
        &h,
        &h.kubeconfig(),
        &["auth", "can-i", "list", "pods", "--as", "bob"],
    )
    .await;
    assert_eq!(out.stdout, "yes\n", "{}", out.stderr);
}

/// A review has no Table form: asked only for a Table it is a 406 (as
/// kube-apiserver answers the conformance suite), with a plain fallback in
/// the Accept header it is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reviews_asked_only_as_tables_are_not_acceptable() {
    let h = Harness::start().await;
    let client = h.client().await;
    let review = serde_json::json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
        "spec": {"nonResourceAttributes": {"path": "/", "verb": "get"}}});
    let post = |accept: &'static str| {
        let client = client.clone();
        let body = review.to_string();
        async move {
            let req = http::Request::post("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews")
                .header("Content-Type", "application/json")
                .header("Accept", accept)
                .body(kube::client::Body::from(body.into_bytes()))
                .unwrap();
            let resp = client.send(req).await.unwrap();
            let code = resp.status().as_u16();
            let body = http_body_util::BodyExt::collect(resp.into_body())
                .await
                .unwrap()
                .to_bytes();
            (
                code,
                serde_json::from_slice::<serde_json::Value>(&body).unwrap(),
            )
        }
    };
    let (code, v) = post("application/json;as=Table;v=v1;g=meta.k8s.io").await;
    assert_eq!(
        (code, v["reason"].as_str()),
        (406, Some("NotAcceptable")),
        "{v}"
    );
    let (code, v) = post("application/json;as=Table;v=v1;g=meta.k8s.io,application/json").await;
    assert_eq!(
        (code, v["status"]["allowed"].as_bool()),
        (201, Some(true)),
        "{v}"
    );
}
