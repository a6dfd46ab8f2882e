//! Service account tokens through the real kubectl and raw requests: the
//! TokenRequest API (`kubectl create token`), bearer authentication with
//! the tokens it issues, what stops a token from working, OIDC discovery,
//! and the ServiceAccount admission of pods, checked against what
//! Kubernetes v1.32 prints (the reference captures).

use crate::common;

use base64::Engine;
use common::{send, Harness};
use serde_json::{json, Value};

const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
const PLATFORM: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../testdata/kubernetes-v1.32/platform"
);

fn b64(part: &str) -> Vec<u8> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .expect("base64url part")
}

/// The header and payload of a JWT.
fn decode(jwt: &str) -> (Value, Value) {
    let parts: Vec<&str> = jwt.trim().split('.').collect();
    assert_eq!(parts.len(), 3, "not a JWT: {jwt}");
    (
        serde_json::from_slice(&b64(parts[0])).expect("header"),
        serde_json::from_slice(&b64(parts[1])).expect("payload"),
    )
}

/// A kubeconfig that trusts the cluster CA and authenticates with `token`
/// alone (no client certificate).
fn token_kubeconfig(h: &Harness, name: &str, token: &str) -> String {
    let path = h.dir.path().join(format!("kubeconfig-{name}"));
    let config = format!(
        "apiVersion: v1
kind: Config
clusters:
- cluster:
    certificate-authority: {ca}
    server: https://{addr}
  name: c
contexts:
- context: {{cluster: c, user: u, namespace: default}}
  name: c
current-context: c
users:
- name: u
  user:
    token: {token}
",
        ca = h.dir.path().join("tls/ca.crt").display(),
        addr = h.server.addr(),
    );
    std::fs::write(&path, config).expect("write kubeconfig");
    path.display().to_string()
}

/// Runs `kubectl auth whoami` (which every authenticated user may) as the
/// holder of `token`; returns whether it was let in, and stderr.
async fn works(h: &Harness, token: &str) -> (bool, String) {
    let kc = token_kubeconfig(h, "probe", token);
    let out = h
        .kubectl_out(&["--kubeconfig", &kc, "auth", "whoami"], None)
        .await;
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

async fn assert_unauthorized(h: &Harness, token: &str, what: &str) {
    let (ok, err) = works(h, token).await;
    assert!(!ok, "{what}: the token still works");
    assert!(
        err.contains("Unauthorized"),
        "{what}: expected 401 Unauthorized, got {err}"
    );
}

async fn create_token(h: &Harness, args: &[&str]) -> String {
    let mut all = vec!["create", "token"];
    all.extend_from_slice(args);
    h.kubectl(&all).await
}

/// The cluster's signing key, as a test could steal it.
fn signing_key(h: &Harness) -> jsonwebtoken::EncodingKey {
    use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey};
    let pem =
        std::fs::read_to_string(h.dir.path().join("tls/service-account.key")).expect("key file");
    let key = rsa::RsaPrivateKey::from_pkcs1_pem(&pem).expect("RSA key");
    jsonwebtoken::EncodingKey::from_rsa_der(key.to_pkcs1_der().unwrap().as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_create_token_prints_a_kubernetes_jwt_that_authenticates() {
    let h = Harness::start().await;
    let out = create_token(&h, &["default"]).await;
    assert!(!out.ends_with('\n'), "kubectl prints no newline after it");
    let (header, claims) = decode(&out);
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header.as_object().unwrap().len(), 2, "{header}");
    let kid = header["kid"].as_str().unwrap().to_string();
    let sa: Value =
        serde_json::from_str(&h.kubectl(&["get", "sa", "default", "-o", "json"]).await).unwrap();
    let sa_uid = sa["metadata"]["uid"].as_str().unwrap();
    assert_eq!(claims["aud"], json!([ISSUER]));
    assert_eq!(claims["iss"], ISSUER);
    assert_eq!(claims["sub"], "system:serviceaccount:default:default");
    assert_eq!(
        claims["kubernetes.io"],
        json!({"namespace": "default", "serviceaccount": {"name": "default", "uid": sa_uid}})
    );
    let iat = claims["iat"].as_i64().unwrap();
    assert_eq!(claims["exp"].as_i64().unwrap() - iat, 3600);
    assert_eq!(claims["nbf"].as_i64().unwrap(), iat);
    assert!(uuid::Uuid::parse_str(claims["jti"].as_str().unwrap()).is_ok());
    let keys: Vec<&str> = claims
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "aud",
            "exp",
            "iat",
            "iss",
            "jti",
            "kubernetes.io",
            "nbf",
            "sub"
        ]
    );

    // The token is a credential of its own, for a user RBAC knows nothing
    // about until a binding names it (the reference's 403).
    let (ok, err) = works(&h, &out).await;
    assert!(ok, "the token was refused: {err}");
    let kc = token_kubeconfig(&h, "sa", &out);
    let err = h
        .kubectl_fails(&["--kubeconfig", &kc, "get", "pods"], None)
        .await;
    assert_eq!(
        err.trim(),
        r#"Error from server (Forbidden): pods is forbidden: User "system:serviceaccount:default:default" cannot list resource "pods" in API group "" in the namespace "default""#
    );
    h.kubectl(&[
        "create",
        "rolebinding",
        "sa-view",
        "--clusterrole=view",
        "--serviceaccount=default:default",
    ])
    .await;
    let listed = h
        .kubectl_with(std::path::Path::new(&kc), &["get", "pods"], None)
        .await;
    assert!(
        listed.status.success(),
        "bound to view, the account lists pods: {}",
        String::from_utf8_lossy(&listed.stderr)
    );

    // kubectl POSTs protobuf and gets protobuf back, as from Kubernetes.
    let v8 = h
        .kubectl_out(&["create", "token", "default", "-v=8"], None)
        .await;
    let log = String::from_utf8_lossy(&v8.stderr);
    assert!(v8.status.success(), "{log}");
    assert!(log.contains("Response Status: 201 Created"), "{log}");
    assert!(
        log.contains("Content-Type: application/vnd.kubernetes.protobuf"),
        "{log}"
    );
    assert_eq!(decode(&String::from_utf8_lossy(&v8.stdout)).0["kid"], kid);

    // --duration and --audience: a token for someone else is no key here.
    let other = create_token(&h, &["default", "--duration=10m", "--audience=my-aud"]).await;
    let (_, c) = decode(&other);
    assert_eq!(c["aud"], json!(["my-aud"]));
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 600);
    assert_unauthorized(&h, &other, "a token for audience my-aud").await;

    let err = h
        .kubectl_fails(&["create", "token", "nosuchsa"], None)
        .await;
    assert_eq!(
        err.trim(),
        r#"error: failed to create token: serviceaccounts "nosuchsa" not found"#
    );
    let err = h
        .kubectl_fails(&["create", "token", "default", "--duration=1m"], None)
        .await;
    assert_eq!(
        err.trim(),
        r#"error: failed to create token: TokenRequest.authentication.k8s.io "" is invalid: spec.expirationSeconds: Invalid value: 60: may not specify a duration less than 10 minutes"#
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_bound_tokens_name_pod_and_node_and_die_with_the_pod() {
    let h = Harness::start().await;
    let client = h.client().await;
    h.kubectl(&["run", "sa-demo", "--image=nginx"]).await;
    let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-2"}});
    let (code, node, _) = send(
        &client,
        "POST",
        "/api/v1/nodes",
        "application/json",
        node.to_string().into_bytes(),
    )
    .await;
    assert_eq!(code, 201, "{node}");
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "sa-demo"},
        "target": {"kind": "Node", "name": "node-2"}});
    let (code, b, _) = send(
        &client,
        "POST",
        "/api/v1/namespaces/default/pods/sa-demo/binding",
        "application/json",
        binding.to_string().into_bytes(),
    )
    .await;
    assert_eq!(code, 201, "{b}");
    let pod: Value =
        serde_json::from_str(&h.kubectl(&["get", "pod", "sa-demo", "-o", "json"]).await).unwrap();
    let pod_uid = pod["metadata"]["uid"].as_str().unwrap();

    let token = create_token(
        &h,
        &[
            "default",
            "--bound-object-kind",
            "Pod",
            "--bound-object-name",
            "sa-demo",
        ],
    )
    .await;
    let (_, c) = decode(&token);
    assert_eq!(
        c["kubernetes.io"]["pod"],
        json!({"name": "sa-demo", "uid": pod_uid})
    );
    assert_eq!(
        c["kubernetes.io"]["node"],
        json!({"name": "node-2", "uid": node["metadata"]["uid"]})
    );
    assert_eq!(
        c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(),
        3600
    );
    assert!(
        works(&h, &token).await.0,
        "a pod-bound token works while its pod lives"
    );

    let err = h
        .kubectl_fails(
            &[
                "create",
                "token",
                "default",
                "--bound-object-kind",
                "Pod",
                "--bound-object-name",
                "nosuchpod",
            ],
            None,
        )
        .await;
    assert_eq!(
        err.trim(),
        r#"error: failed to create token: pods "nosuchpod" not found"#
    );

    // The projected volume's request: 3607 s is issued for a year, with a
    // warning time at the hour; the answer still says the hour.
    let req = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
        "spec": {"expirationSeconds": 3607,
                 "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "sa-demo", "uid": pod_uid}}});
    let uri = "/api/v1/namespaces/default/serviceaccounts/default/token";
    let (code, tr, _) = send(
        &client,
        "POST",
        uri,
        "application/json",
        req.to_string().into_bytes(),
    )
    .await;
    assert_eq!(code, 201, "{tr}");
    let (_, c) = decode(tr["status"]["token"].as_str().unwrap());
    let iat = c["iat"].as_i64().unwrap();
    assert_eq!(c["exp"].as_i64().unwrap() - iat, 365 * 24 * 3600);
    assert_eq!(
        c["kubernetes.io"]["warnafter"].as_i64().unwrap() - iat,
        3607
    );
    let expires =
        chrono::DateTime::parse_from_rfc3339(tr["status"]["expirationTimestamp"].as_str().unwrap())
            .unwrap();
    assert!((expires.timestamp() - iat - 3607).abs() <= 1, "{tr}");
    assert_eq!(tr["spec"]["boundObjectRef"]["name"], "sa-demo");

    // A pod that is gone, or a new one under the same name, ends it.
    h.kubectl(&["delete", "pod", "sa-demo", "--grace-period=0", "--force"])
        .await;
    assert_unauthorized(&h, &token, "a token of a deleted pod").await;
    h.kubectl(&["run", "sa-demo", "--image=nginx"]).await;
    assert_unauthorized(&h, &token, "a token of a replaced pod").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_requests_validate_as_kubernetes() {
    let h = Harness::start().await;
    let client = h.client().await;
    let uri = "/api/v1/namespaces/default/serviceaccounts/default/token";
    let post = |body: Value, query: &'static str| {
        let client = client.clone();
        async move {
            send(
                &client,
                "POST",
                &format!("{uri}{query}"),
                "application/json",
                body.to_string().into_bytes(),
            )
            .await
        }
    };
    let tr = |spec: Value| json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec});

    let (code, v, _) = post(tr(json!({})), "").await;
    assert_eq!(code, 201, "{v}");
    assert_eq!(v["kind"], "TokenRequest");
    assert_eq!(v["apiVersion"], "authentication.k8s.io/v1");
    assert_eq!(v["metadata"]["name"], "default");
    assert_eq!(v["metadata"]["namespace"], "default");
    assert_eq!(v["spec"]["audiences"], json!([ISSUER]));
    assert_eq!(v["spec"]["expirationSeconds"], 3600);

    let (code, v, _) = post(
        tr(json!({"audiences": ["a", "b"], "expirationSeconds": 7200})),
        "",
    )
    .await;
    assert_eq!(code, 201, "{v}");
    let (_, c) = decode(v["status"]["token"].as_str().unwrap());
    assert_eq!(c["aud"], json!(["a", "b"]));
    assert_eq!(
        c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(),
        7200
    );

    // A dry run stores nothing anyway: it is answered as the real request.
    let (code, v, _) = post(tr(json!({})), "?dryRun=All").await;
    assert_eq!(code, 201, "{v}");
    assert!(v["status"]["token"].is_string());
    let (code, v, _) = post(tr(json!({})), "?dryRun=Some").await;
    assert_eq!(code, 422, "{v}");

    for (spec, message) in [
        (
            json!({"expirationSeconds": 599}),
            r#"TokenRequest.authentication.k8s.io "" is invalid: spec.expirationSeconds: Invalid value: 599: may not specify a duration less than 10 minutes"#,
        ),
        (
            json!({"expirationSeconds": 4294967297i64}),
            r#"TokenRequest.authentication.k8s.io "" is invalid: spec.expirationSeconds: Invalid value: 4294967297: may not specify a duration larger than 2^32 seconds"#,
        ),
    ] {
        let (code, v, _) = post(tr(spec), "").await;
        assert_eq!(
            (code, v["message"].as_str().unwrap_or_default()),
            (422, message),
            "{v}"
        );
        assert_eq!(v["reason"], "Invalid");
    }
    let (code, v, _) = post(
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "metadata": {"name": "other"}}),
        "",
    )
    .await;
    assert_eq!(code, 422, "{v}");
    assert_eq!(
        v["message"],
        r#"TokenRequest.authentication.k8s.io "default" is invalid: metadata.name: Invalid value: "other": must match the service account name if specified"#
    );
    let (code, v, _) = post(
        tr(json!({"boundObjectRef": {"kind": "ConfigMap", "apiVersion": "v1", "name": "x"}})),
        "",
    )
    .await;
    assert_eq!(code, 400, "{v}");
    assert_eq!(
        v["message"],
        "cannot bind token to object of type /v1, Kind=ConfigMap"
    );

    h.kubectl(&["run", "p", "--image=nginx"]).await;
    h.kubectl(&["create", "serviceaccount", "robot"]).await;
    let bound = |uid: &str| {
        tr(json!({"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "p", "uid": uid}}))
    };
    let (code, v, _) = post(bound("not-the-uid"), "").await;
    assert_eq!(code, 409, "{v}");
    assert_eq!(
        v["message"],
        r#"Operation cannot be fulfilled on Pod "p": the UID in the bound object reference (not-the-uid) does not match the UID in record. The object might have been deleted and then recreated"#
    );
    let (code, v, _) = send(
        &client,
        "POST",
        "/api/v1/namespaces/default/serviceaccounts/robot/token",
        "application/json",
        bound("").to_string().into_bytes(),
    )
    .await;
    assert_eq!(code, 400, "{v}");
    assert_eq!(
        v["message"],
        r#"cannot bind token for serviceaccount "robot" to pod running with different serviceaccount name."#
    );
    let (code, v, _) = post(json!({"apiVersion": "v1", "kind": "TokenRequest"}), "").await;
    assert_eq!(code, 400, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("does not match the expected API version (authentication.k8s.io/v1)"),
        "{v}"
    );

    // Discovery lists the subresource with its kind's group.
    let (_, list, _) = send(&client, "GET", "/api/v1", "application/json", vec![]).await;
    let token = list["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "serviceaccounts/token")
        .expect("serviceaccounts/token in discovery");
    assert_eq!(
        *token,
        json!({"name": "serviceaccounts/token", "singularName": "", "namespaced": true,
               "group": "authentication.k8s.io", "version": "v1", "kind": "TokenRequest", "verbs": ["create"]})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_foreign_and_orphaned_tokens_get_401() {
    let h = Harness::start().await;
    h.kubectl(&["create", "serviceaccount", "robot"]).await;
    let sa: Value =
        serde_json::from_str(&h.kubectl(&["get", "sa", "robot", "-o", "json"]).await).unwrap();
    let uid = sa["metadata"]["uid"].as_str().unwrap().to_string();
    let kid = decode(&create_token(&h, &["robot"]).await).0["kid"]
        .as_str()
        .unwrap()
        .to_string();
    let now = chrono::Utc::now().timestamp();
    let claims = |iat: i64, exp: i64| {
        json!({"aud": [ISSUER], "exp": exp, "iat": iat, "iss": ISSUER, "jti": "x",
               "kubernetes.io": {"namespace": "default", "serviceaccount": {"name": "robot", "uid": uid}},
               "nbf": iat, "sub": "system:serviceaccount:default:robot"})
    };
    let header = jsonwebtoken::Header {
        typ: None,
        kid: Some(kid),
        ..jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256)
    };
    let sign =
        |c: &Value, key: &jsonwebtoken::EncodingKey| jsonwebtoken::encode(&header, c, key).unwrap();
    let key = signing_key(&h);
    // Signed with the cluster's key, the token works: the rest is what fails.
    assert!(works(&h, &sign(&claims(now, now + 600), &key)).await.0);
    // Kubernetes' 60 s leeway, and past it.
    assert!(works(&h, &sign(&claims(now - 700, now - 30), &key)).await.0);
    assert_unauthorized(
        &h,
        &sign(&claims(now - 700, now - 90), &key),
        "an expired token",
    )
    .await;
    let foreign = {
        use rsa::pkcs1::EncodeRsaPrivateKey;
        let k = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048).unwrap();
        jsonwebtoken::EncodingKey::from_rsa_der(k.to_pkcs1_der().unwrap().as_bytes())
    };
    assert_unauthorized(
        &h,
        &sign(&claims(now, now + 600), &foreign),
        "a foreign-signed token",
    )
    .await;
    assert_unauthorized(&h, "garbage.token.here", "garbage").await;

    let token = create_token(&h, &["robot"]).await;
    assert!(works(&h, &token).await.0);
    h.kubectl(&["delete", "serviceaccount", "robot"]).await;
    assert_unauthorized(&h, &token, "a token of a deleted service account").await;
    h.kubectl(&["create", "serviceaccount", "robot"]).await;
    assert_unauthorized(&h, &token, "a token of a recreated service account").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_discovery_documents_describe_the_signing_key() {
    let h = Harness::start().await;
    let doc = h
        .kubectl(&["get", "--raw", "/.well-known/openid-configuration"])
        .await;
    let want = format!(
        r#"{{"issuer":"{ISSUER}","jwks_uri":"https://{}/openid/v1/jwks","response_types_supported":["id_token"],"subject_types_supported":["public"],"id_token_signing_alg_values_supported":["RS256"]}}"#,
        h.server.addr()
    );
    assert_eq!(doc, want);
    // The reference's document has the same fields in the same order.
    let reference = std::fs::read_to_string(format!("{PLATFORM}/04-oidc-discovery.txt")).unwrap();
    let ref_doc = reference
        .lines()
        .find(|l| l.starts_with("{\"issuer\""))
        .unwrap();
    assert_eq!(
        doc.replace(&h.server.addr().to_string(), "192.0.2.2:6543"),
        ref_doc
    );

    let client = h.client().await;
    let req = http::Request::get("/openid/v1/jwks")
        .body(kube::client::Body::empty())
        .unwrap();
    let resp = client.send(req).await.unwrap();
    assert_eq!(resp.headers()["content-type"], "application/jwk-set+json");
    assert_eq!(resp.headers()["cache-control"], "public, max-age=3600");
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    let jwks: Value = serde_json::from_slice(&body).unwrap();
    let key = &jwks["keys"][0];
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);
    let fields: Vec<&str> = key
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut sorted = vec!["use", "kty", "kid", "alg", "n", "e"];
    sorted.sort();
    assert_eq!(fields, sorted);
    assert_eq!(
        (
            key["use"].as_str(),
            key["kty"].as_str(),
            key["alg"].as_str(),
            key["e"].as_str()
        ),
        (Some("sig"), Some("RSA"), Some("RS256"), Some("AQAB"))
    );

    // Anyone with the JWKS verifies a token of this cluster.
    let token = create_token(&h, &["default"]).await;
    assert_eq!(decode(&token).0["kid"], key["kid"]);
    let verifier = jsonwebtoken::DecodingKey::from_rsa_components(
        key["n"].as_str().unwrap(),
        key["e"].as_str().unwrap(),
    )
    .unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&[ISSUER]);
    validation.set_issuer(&[ISSUER]);
    jsonwebtoken::decode::<Value>(&token, &verifier, &validation)
        .expect("token verifies with the JWKS");

    // Who may read them, as Kubernetes decides: service accounts (bound to
    // system:service-account-issuer-discovery), neither anonymous callers
    // nor users outside system:serviceaccounts.
    let (url, ca_pem) = h.anonymous_https();
    use rustls_pki_types::pem::PemObject;
    let ca = rustls_pki_types::CertificateDer::from_pem_slice(&ca_pem).expect("ca pem");
    let mut config = kube::Config::new(url.parse().expect("url"));
    config.root_cert = Some(vec![ca.to_vec()]);
    let anonymous = kube::Client::try_from(config.clone()).expect("client");
    config.auth_info.token = Some(token.clone().into());
    let account = kube::Client::try_from(config).expect("client");
    let bob = h.client_as("bob", &[]).await;
    for path in ["/.well-known/openid-configuration", "/openid/v1/jwks"] {
        let (code, v, _) = send(&account, "GET", path, "application/json", vec![]).await;
        assert_eq!(code, 200, "{path}: {v}");
        let (code, v, _) = send(&anonymous, "GET", path, "application/json", vec![]).await;
        assert_eq!(
            (code, v["message"].as_str()),
            (
                403,
                Some(
                    format!(r#"forbidden: User "system:anonymous" cannot get path "{path}""#)
                        .as_str()
                )
            )
        );
        let (code, v, _) = send(&bob, "GET", path, "application/json", vec![]).await;
        assert_eq!(code, 403, "{path}: {v}");
    }
}

/// `05-dry-run.txt`'s pod, but for the fork's 4th projected source.
fn reference_dry_run_pod() -> Value {
    let text = std::fs::read_to_string(format!("{PLATFORM}/05-dry-run.txt")).unwrap();
    let start = text
        .find("$ kubectl create -f dry-pod.yaml --dry-run=server -o yaml\n")
        .unwrap();
    let yaml: String = text[start..]
        .lines()
        .skip(1)
        .take_while(|l| !l.is_empty())
        .map(|l| format!("{l}\n"))
        .collect();
    let mut pod: Value = serde_yaml::from_str(&yaml).unwrap();
    let sources = pod["spec"]["volumes"][0]["projected"]["sources"]
        .as_array_mut()
        .unwrap();
    sources.retain(|s| s["configMap"]["name"] != "openshift-service-ca.crt");
    pod
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_injects_the_api_access_volume_as_kubernetes() {
    let h = Harness::start().await;
    let file = h.dir.path().join("dry-pod.yaml");
    std::fs::write(
        &file,
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: dry\nspec:\n  containers:\n  - name: c\n    image: nginx\n",
    )
    .unwrap();
    let file = file.display().to_string();
    let out = h
        .kubectl(&["create", "-f", &file, "--dry-run=server", "-o", "json"])
        .await;
    let got: Value = serde_json::from_str(&out).unwrap();
    let want = reference_dry_run_pod();
    let volume = got["spec"]["volumes"][0]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let suffix = volume
        .strip_prefix("kube-api-access-")
        .expect("volume name");
    assert_eq!(suffix.len(), 5);
    assert!(suffix
        .bytes()
        .all(|b| b"bcdfghjklmnpqrstvwxz2456789".contains(&b)));
    let mut want_spec = want["spec"].clone();
    want_spec["volumes"][0]["name"] = json!(volume);
    want_spec["containers"][0]["volumeMounts"][0]["name"] = json!(volume);
    assert_eq!(got["spec"], want_spec);
    assert_eq!(got["status"], want["status"]);
    assert!(
        h.kubectl_fails(&["get", "pod", "dry"], None)
            .await
            .contains("not found"),
        "the dry run stored the pod"
    );

    // Every container and init container, except one that mounts
    // something at the path itself.
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "many"},
        "spec": {"initContainers": [{"name": "i", "image": "busybox"}],
                 "containers": [{"name": "a", "image": "busybox"},
                                {"name": "b", "image": "busybox", "volumeMounts": [
                                    {"name": "own", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]}],
                 "volumes": [{"name": "own", "emptyDir": {}}]}});
    let client = h.client().await;
    let (code, v, _) = send(
        &client,
        "POST",
        "/api/v1/namespaces/default/pods",
        "application/json",
        pod.to_string().into_bytes(),
    )
    .await;
    assert_eq!(code, 201, "{v}");
    let spec = &v["spec"];
    let access = spec["volumes"][1]["name"].as_str().unwrap();
    assert!(access.starts_with("kube-api-access-"), "{spec}");
    assert_eq!(spec["initContainers"][0]["volumeMounts"][0]["name"], access);
    assert_eq!(spec["containers"][0]["volumeMounts"][0]["name"], access);
    assert_eq!(
        spec["containers"][1]["volumeMounts"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automount_opt_outs_and_missing_accounts() {
    let h = Harness::start().await;
    let client = h.client().await;
    let create = |name: &str, spec: Value| {
        let client = client.clone();
        let pod =
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec});
        async move {
            send(
                &client,
                "POST",
                "/api/v1/namespaces/default/pods",
                "application/json",
                pod.to_string().into_bytes(),
            )
            .await
        }
    };
    let containers = json!([{"name": "c", "image": "busybox"}]);
    let (code, v, _) = create(
        "off",
        json!({"automountServiceAccountToken": false, "containers": containers}),
    )
    .await;
    assert_eq!(code, 201, "{v}");
    assert!(v["spec"]["volumes"].is_null(), "{v}");
    assert!(v["spec"]["containers"][0]["volumeMounts"].is_null(), "{v}");

    let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "quiet"},
        "automountServiceAccountToken": false, "imagePullSecrets": [{"name": "regcred"}]});
    let (code, v, _) = send(
        &client,
        "POST",
        "/api/v1/namespaces/default/serviceaccounts",
        "application/json",
        sa.to_string().into_bytes(),
    )
    .await;
    assert_eq!(code, 201, "{v}");
    let (code, v, _) = create(
        "quiet",
        json!({"serviceAccountName": "quiet", "containers": containers}),
    )
    .await;
    assert_eq!(code, 201, "{v}");
    assert!(v["spec"]["volumes"].is_null(), "the account's opt-out: {v}");
    assert_eq!(v["spec"]["imagePullSecrets"], json!([{"name": "regcred"}]));
    assert_eq!(v["spec"]["serviceAccount"], "quiet");
    // The pod's own choice wins over the account's.
    let (code, v, _) = create("loud", json!({"serviceAccountName": "quiet", "automountServiceAccountToken": true, "containers": containers})).await;
    assert_eq!(code, 201, "{v}");
    assert!(v["spec"]["volumes"][0]["name"]
        .as_str()
        .unwrap()
        .starts_with("kube-api-access-"));

    let (code, v, _) = create(
        "lost",
        json!({"serviceAccountName": "nosa", "containers": containers}),
    )
    .await;
    assert_eq!(code, 403, "{v}");
    assert_eq!(
        v["message"],
        r#"pods "lost" is forbidden: error looking up service account default/nosa: serviceaccount "nosa" not found"#
    );
    assert_eq!(v["reason"], "Forbidden");
}
