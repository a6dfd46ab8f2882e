//! Bad requests get a Kubernetes Status with the right code and a readable
//! message, and change nothing stored; requests without credentials get 401.

use crate::common;

use common::send;

use serde_json::{json, Value};

const PODS: &str = "/api/v1/namespaces/default/pods";

fn pod_json(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
           "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
}

async fn list_rv(client: &kube::Client) -> (String, usize) {
    let (code, v, _) = send(client, "GET", PODS, "application/json", vec![]).await;
    assert_eq!(code, 200);
    (
        v["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        v["items"].as_array().map_or(0, Vec::len),
    )
}

fn assert_status(v: &Value, code: u16, reason: &str, message_part: &str) {
    assert_eq!(v["kind"], "Status", "{v}");
    assert_eq!(v["status"], "Failure", "{v}");
    assert_eq!(v["code"], code, "{v}");
    assert_eq!(v["reason"], reason, "{v}");
    let msg = v["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains(message_part),
        "message {msg:?} lacks {message_part:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bodies_get_a_status_and_change_nothing() {
    let h = common::Harness::start().await;
    let c = h.client().await;
    let before = list_rv(&c).await;
    let strict = format!("{PODS}?fieldValidation=Strict");

    let (code, v, _) = send(
        &c,
        "POST",
        PODS,
        "application/json",
        b"{\"apiVersion\": \"v1\", \"kind\": ".to_vec(),
    )
    .await;
    assert_eq!(code, 400);
    assert_status(&v, 400, "BadRequest", "json parse error");

    let (code, v, _) = send(
        &c,
        "POST",
        PODS,
        "application/yaml",
        b"apiVersion: v1\nkind: [Pod\n  metadata: {".to_vec(),
    )
    .await;
    assert_eq!(code, 400);
    assert_status(&v, 400, "BadRequest", "yaml parse error");

    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}});
    let (code, v, _) = send(
        &c,
        "POST",
        PODS,
        "application/json",
        cm.to_string().into_bytes(),
    )
    .await;
    assert_eq!(code, 400);
    assert_status(&v, 400, "BadRequest", "cannot be handled as a Pod");

    let mut wrong_version = pod_json("x");
    wrong_version["apiVersion"] = json!("apps/v1");
    let (code, v, _) = send(
        &c,
        "POST",
        PODS,
        "application/json",
        wrong_version.to_string().into_bytes(),
    )
    .await;
    assert_eq!(code, 400);
    assert_status(
        &v,
        400,
        "BadRequest",
        "the API version in the data (apps/v1) does not match the expected API version (v1)",
    );

    let mut unknown = pod_json("x");
    unknown["spec"]["foo"] = json!(1);
    let (code, v, _) = send(
        &c,
        "POST",
        &strict,
        "application/json",
        unknown.to_string().into_bytes(),
    )
    .await;
    assert_eq!(code, 400);
    assert_status(
        &v,
        400,
        "BadRequest",
        r#"strict decoding error: unknown field "spec.foo""#,
    );

    let mut wrong_type = pod_json("x");
    wrong_type["spec"]["containers"] = json!("nginx");
    let (code, v, _) = send(
        &c,
        "POST",
        PODS,
        "application/json",
        wrong_type.to_string().into_bytes(),
    )
    .await;
    assert_eq!(code, 400);
    assert_status(&v, 400, "BadRequest", "cannot be handled as a Pod");

    let long = "a".repeat(254);
    let (code, v, _) = send(
        &c,
        "POST",
        PODS,
        "application/json",
        pod_json(&long).to_string().into_bytes(),
    )
    .await;
    assert_eq!(code, 422);
    assert_status(&v, 422, "Invalid", "must be no more than 253 characters");
    assert_eq!(v["details"]["causes"][0]["field"], "metadata.name", "{v}");

    let mut no_image = pod_json("x");
    no_image["spec"]["containers"][0]
        .as_object_mut()
        .expect("container")
        .remove("image");
    let (code, v, _) = send(
        &c,
        "POST",
        PODS,
        "application/json",
        no_image.to_string().into_bytes(),
    )
    .await;
    assert_eq!(code, 422);
    assert_status(
        &v,
        422,
        "Invalid",
        "spec.containers[0].image: Required value",
    );

    let mut huge = pod_json("x");
    huge["metadata"]["annotations"] = json!({"big": "x".repeat(3 * 1024 * 1024)});
    let (code, v, _) = send(
        &c,
        "POST",
        PODS,
        "application/json",
        huge.to_string().into_bytes(),
    )
    .await;
    assert_eq!(code, 413);
    assert_status(&v, 413, "RequestEntityTooLarge", "limit is 3145728");

    let (code, v, _) = send(
        &c,
        "POST",
        PODS,
        "text/plain",
        pod_json("x").to_string().into_bytes(),
    )
    .await;
    assert_eq!(code, 415);
    assert_status(&v, 415, "UnsupportedMediaType", "text/plain");

    let (code, v, _) = send(
        &c,
        "POST",
        PODS,
        "application/vnd.kubernetes.protobuf",
        b"k8s\0\x0a\xff".to_vec(),
    )
    .await;
    assert_eq!(code, 400);
    assert_status(&v, 400, "BadRequest", "the object provided is unrecognized");

    let (code, v, _) = send(
        &c,
        "POST",
        "/api/v1/namespaces/nope/pods",
        "application/json",
        pod_json("x").to_string().into_bytes(),
    )
    .await;
    assert_eq!(code, 404);
    assert_status(&v, 404, "NotFound", "namespaces \"nope\" not found");

    let (code, v, _) = send(
        &c,
        "GET",
        &format!("{PODS}?labelSelector=a%20in%20(b"),
        "application/json",
        vec![],
    )
    .await;
    assert_eq!(code, 400);
    assert_status(&v, 400, "BadRequest", "labelSelector");

    let (code, v, _) = send(
        &c,
        "GET",
        &format!("{PODS}?fieldSelector=spec.bogus%3Dx"),
        "application/json",
        vec![],
    )
    .await;
    assert_eq!(code, 400);
    assert_status(
        &v,
        400,
        "BadRequest",
        "field label not supported: spec.bogus",
    );

    let (code, v, _) = send(
        &c,
        "PATCH",
        &format!("{PODS}/missing"),
        "application/merge-patch+json",
        b"{}".to_vec(),
    )
    .await;
    assert_eq!(code, 404);
    assert_status(&v, 404, "NotFound", "pods \"missing\" not found");

    assert_eq!(
        list_rv(&c).await,
        before,
        "a rejected request changed the store"
    );

    // With the default fieldValidation (Warn) an unknown field is dropped
    // and reported in a Warning header.
    let (code, v, warnings) = send(
        &c,
        "POST",
        PODS,
        "application/json",
        unknown.to_string().into_bytes(),
    )
    .await;
    assert_eq!(code, 201, "{v}");
    assert!(v["spec"].get("foo").is_none());
    assert!(
        warnings
            .iter()
            .any(|w| w.contains(r#"unknown field \"spec.foo\""#)),
        "{warnings:?}"
    );

    // dryRun=All validates without storing.
    let (code, _, _) = send(
        &c,
        "POST",
        &format!("{PODS}?dryRun=All"),
        "application/json",
        pod_json("dry").to_string().into_bytes(),
    )
    .await;
    assert_eq!(code, 201);
    let (code, _, _) = send(
        &c,
        "GET",
        &format!("{PODS}/dry"),
        "application/json",
        vec![],
    )
    .await;
    assert_eq!(code, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_and_join_token_requests_get_what_kubernetes_gives_them() {
    let h = common::Harness::start().await;
    let (url, ca_pem) = h.anonymous_https();
    use rustls_pki_types::pem::PemObject;
    let ca = rustls_pki_types::CertificateDer::from_pem_slice(&ca_pem).expect("ca pem");
    let mut config = kube::Config::new(url.parse().expect("url"));
    config.root_cert = Some(vec![ca.to_vec()]);
    config.default_namespace = "default".into();
    let anon = kube::Client::try_from(config.clone()).expect("client");

    // Anonymous requests are system:anonymous: 403 in Kubernetes' words.
    let (code, v, _) = send(&anon, "GET", "/api/v1/pods", "application/json", vec![]).await;
    assert_eq!(code, 403);
    assert_status(
        &v,
        403,
        "Forbidden",
        r#"pods is forbidden: User "system:anonymous" cannot list resource "pods" in API group "" at the cluster scope"#,
    );
    for path in ["/api", "/", "/metrics"] {
        let (code, v, _) = send(&anon, "GET", path, "application/json", vec![]).await;
        assert_eq!(code, 403, "{path}");
        assert_status(
            &v,
            403,
            "Forbidden",
            &format!(r#"forbidden: User "system:anonymous" cannot get path "{path}""#),
        );
        assert_eq!(v["details"], serde_json::json!({}));
    }

    // Health, version and the CA are public.
    for path in ["/healthz", "/livez", "/readyz"] {
        let (code, v, _) = send(&anon, "GET", path, "application/json", vec![]).await;
        assert_eq!((code, v["raw"].as_str()), (200, Some("ok")), "{path}");
    }
    let (code, v, _) = send(&anon, "GET", "/version", "application/json", vec![]).await;
    assert_eq!((code, v["minor"].as_str()), (200, Some("32")));
    let (code, v, _) = send(&anon, "GET", "/cacerts", "application/json", vec![]).await;
    assert_eq!(code, 200);
    assert_eq!(
        v["raw"].as_str().map(str::as_bytes),
        Some(ca_pem.as_slice())
    );

    // The join token authenticates as a bootstrap identity that may not
    // read Secrets (or pods); a wrong token is 401 with no details.
    let token = std::fs::read_to_string(h.dir.path().join("token")).expect("token file");
    assert!(
        token.starts_with("K10") && token.contains("::node:"),
        "{token}"
    );
    let mut with_token = config.clone();
    with_token.auth_info.token = Some(token.trim().to_string().into());
    let node = kube::Client::try_from(with_token).expect("client");
    for path in [
        "/api/v1/secrets",
        "/api/v1/namespaces/default/secrets",
        PODS,
    ] {
        let (code, v, _) = send(&node, "GET", path, "application/json", vec![]).await;
        assert_eq!(code, 403, "{path}: {v}");
        let msg = v["message"].as_str().unwrap_or_default();
        assert!(msg.contains(r#"User "system:bootstrap:"#), "{msg}");
    }
    let (code, v, _) = send(
        &node,
        "POST",
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        "application/json",
        br#"{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}"#.to_vec(),
    )
    .await;
    assert_eq!(code, 201, "{v}");
    assert_eq!(
        v["status"]["userInfo"]["groups"],
        serde_json::json!(["system:bootstrappers", "system:authenticated"])
    );
    let mut wrong = config;
    wrong.auth_info.token = Some("K10abc::node:wrong".to_string().into());
    let bad = kube::Client::try_from(wrong).expect("client");
    let (code, v, _) = send(&bad, "GET", PODS, "application/json", vec![]).await;
    assert_eq!(code, 401);
    assert_eq!(
        v,
        serde_json::json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "Unauthorized", "reason": "Unauthorized", "code": 401})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_reuses_credentials_and_data() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = common::start_in(dir.path().to_path_buf()).await;
    let ca = std::fs::read(dir.path().join("tls/ca.crt")).expect("ca");
    let token = std::fs::read(dir.path().join("token")).expect("token");
    for f in ["tls/ca.key", "tls/admin.key", "kubeconfig", "token"] {
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.path().join(f))
                .expect("file")
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600, "{f}");
    }
    let c = kube::Client::try_from(
        kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(server.kubeconfig_path()).expect("kubeconfig"),
            &Default::default(),
        )
        .await
        .expect("config"),
    )
    .expect("client");
    let (code, _, _) = send(
        &c,
        "POST",
        PODS,
        "application/json",
        pod_json("kept").to_string().into_bytes(),
    )
    .await;
    assert_eq!(code, 201);
    server.shutdown().await;

    let server = common::start_in(dir.path().to_path_buf()).await;
    assert_eq!(
        std::fs::read(dir.path().join("tls/ca.crt")).expect("ca"),
        ca
    );
    assert_eq!(
        std::fs::read(dir.path().join("token")).expect("token"),
        token
    );
    let c = kube::Client::try_from(
        kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(server.kubeconfig_path()).expect("kubeconfig"),
            &Default::default(),
        )
        .await
        .expect("config"),
    )
    .expect("client");
    let (code, v, _) = send(
        &c,
        "GET",
        &format!("{PODS}/kept"),
        "application/json",
        vec![],
    )
    .await;
    assert_eq!(code, 200, "{v}");
    server.shutdown().await;
}
