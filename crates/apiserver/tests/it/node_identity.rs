//! Node identities: a joining node turns the bootstrap token into its own
//! client certificate through a CertificateSigningRequest (approved and
//! signed by the server), and the node authorizer with NodeRestriction
//! keeps that identity to its own Node and pods and to what they reference.

use crate::common;

use std::time::Duration;

use base64::Engine;
use common::{send, Harness};
use serde_json::{json, Value};

fn csr_pem(cn: &str, orgs: &[&str]) -> (String, String) {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut p = rcgen::CertificateParams::default();
    p.distinguished_name.push(rcgen::DnType::CommonName, cn);
    for o in orgs {
        p.distinguished_name
            .push(rcgen::DnType::OrganizationName, *o);
    }
    let csr = p.serialize_request(&key).expect("csr");
    (csr.pem().expect("pem"), key.serialize_pem())
}

fn csr_object(name: &str, pem: &str, signer: &str) -> Value {
    json!({"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
        "metadata": {"name": name},
        "spec": {"request": base64::engine::general_purpose::STANDARD.encode(pem),
                 "signerName": signer, "usages": ["digital signature", "client auth"]}})
}

const CSRS: &str = "/apis/certificates.k8s.io/v1/certificatesigningrequests";
const KUBELET: &str = "kubernetes.io/kube-apiserver-client-kubelet";

async fn token_client(h: &Harness) -> kube::Client {
    let (url, ca_pem) = h.anonymous_https();
    use rustls_pki_types::pem::PemObject;
    let ca = rustls_pki_types::CertificateDer::from_pem_slice(&ca_pem).expect("ca pem");
    let mut config = kube::Config::new(url.parse().expect("url"));
    config.root_cert = Some(vec![ca.to_vec()]);
    let token = std::fs::read_to_string(h.dir.path().join("token")).expect("token");
    config.auth_info.token = Some(token.trim().to_string().into());
    kube::Client::try_from(config).expect("client")
}

/// A client presenting this certificate and key.
async fn cert_client(h: &Harness, cert: &str, key: &str) -> kube::Client {
    let (url, ca_pem) = h.anonymous_https();
    use rustls_pki_types::pem::PemObject;
    let ca = rustls_pki_types::CertificateDer::from_pem_slice(&ca_pem).expect("ca pem");
    let mut config = kube::Config::new(url.parse().expect("url"));
    config.root_cert = Some(vec![ca.to_vec()]);
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    config.auth_info.client_certificate_data = Some(b64(cert));
    config.auth_info.client_key_data = Some(b64(key).into());
    kube::Client::try_from(config).expect("client")
}

async fn issued(client: &kube::Client, name: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (code, v, _) = send(
            client,
            "GET",
            &format!("{CSRS}/{name}"),
            "application/json",
            vec![],
        )
        .await;
        assert_eq!(code, 200, "{v}");
        if let Some(c) = v["status"]["certificate"]
            .as_str()
            .filter(|c| !c.is_empty())
        {
            let pem = base64::engine::general_purpose::STANDARD
                .decode(c)
                .expect("base64");
            return String::from_utf8(pem).expect("pem");
        }
        assert!(std::time::Instant::now() < deadline, "never issued: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_credential_reaches_only_its_own_node_pods_and_their_objects() {
    let h = Harness::start().await;
    let bootstrap = token_client(&h).await;

    // The join token alone reads no Secrets.
    let (code, v, _) = send(
        &bootstrap,
        "GET",
        "/api/v1/secrets",
        "application/json",
        vec![],
    )
    .await;
    assert_eq!(code, 403, "{v}");

    // It requests a node client certificate, which is approved and signed.
    let (pem, key) = csr_pem("system:node:n1", &["system:nodes"]);
    let (code, v, _) = send(
        &bootstrap,
        "POST",
        CSRS,
        "application/json",
        csr_object("node-csr-n1", &pem, KUBELET)
            .to_string()
            .into_bytes(),
    )
    .await;
    assert_eq!(code, 201, "{v}");
    assert!(
        v["spec"]["username"]
            .as_str()
            .unwrap()
            .starts_with("system:bootstrap:"),
        "{v}"
    );
    let cert = issued(&bootstrap, "node-csr-n1").await;
    let table = h.kubectl(&["get", "csr"]).await;
    let mut lines = table.lines();
    assert_eq!(
        lines.next().unwrap().split_whitespace().collect::<Vec<_>>(),
        [
            "NAME",
            "AGE",
            "SIGNERNAME",
            "REQUESTOR",
            "REQUESTEDDURATION",
            "CONDITION"
        ]
    );
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        (row[0], row[2], row[4], row[5]),
        ("node-csr-n1", KUBELET, "<none>", "Approved,Issued")
    );

    let node = cert_client(&h, &cert, &key).await;
    let (code, v, _) = send(
        &node,
        "POST",
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        "application/json",
        br#"{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}"#.to_vec(),
    )
    .await;
    assert_eq!(code, 201);
    assert_eq!(
        v["status"]["userInfo"],
        json!({"username": "system:node:n1", "groups": ["system:nodes", "system:authenticated"]})
    );

    // A request for a masters subject is not approved; the
    // kube-apiserver-client signer refuses it outright.
    let (pem2, _) = csr_pem("system:node:n1", &["system:masters"]);
    let (code, _, _) = send(
        &bootstrap,
        "POST",
        CSRS,
        "application/json",
        csr_object("sneaky", &pem2, KUBELET)
            .to_string()
            .into_bytes(),
    )
    .await;
    assert_eq!(code, 201);
    let (code, v, _) = send(
        &bootstrap,
        "POST",
        CSRS,
        "application/json",
        csr_object("sneakier", &pem2, "kubernetes.io/kube-apiserver-client")
            .to_string()
            .into_bytes(),
    )
    .await;
    assert_eq!(code, 403, "{v}");
    assert_eq!(v["message"], "certificatesigningrequests.certificates.k8s.io \"sneakier\" is forbidden: use of kubernetes.io/kube-apiserver-client signer with system:masters group is not allowed");
    // Approving is for those with `approve` on the signer.
    let (code, mut sneaky, _) = send(
        &bootstrap,
        "GET",
        &format!("{CSRS}/sneaky"),
        "application/json",
        vec![],
    )
    .await;
    assert_eq!(code, 200);
    assert!(sneaky["status"]["conditions"].is_null(), "{sneaky}");
    sneaky["status"]["conditions"] =
        json!([{"type": "Approved", "status": "True", "reason": "Please"}]);
    let (code, v, _) = send(
        &bootstrap,
        "PUT",
        &format!("{CSRS}/sneaky/approval"),
        "application/json",
        sneaky.to_string().into_bytes(),
    )
    .await;
    assert_eq!(code, 403, "{v}");

    // The cluster: nodes n1 and n2, a pod on each, Secrets one referenced.
    h.kubectl(&["create", "namespace", "work"]).await;
    h.kubectl(&["create", "serviceaccount", "default", "-n", "work"])
        .await;
    h.kubectl(&["create", "serviceaccount", "robot", "-n", "work"])
        .await;
    h.kubectl(&[
        "create",
        "secret",
        "generic",
        "mounted",
        "--from-literal=a=b",
        "-n",
        "work",
    ])
    .await;
    h.kubectl(&[
        "create",
        "secret",
        "generic",
        "unrelated",
        "--from-literal=a=b",
        "-n",
        "work",
    ])
    .await;
    let admin = h.client().await;
    let mut uids = std::collections::HashMap::new();
    for (pod, node, secret) in [("p1", "n1", "mounted"), ("p2", "n2", "unrelated")] {
        let body = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}],
                     "volumes": [{"name": "s", "secret": {"secretName": secret}}]}});
        let (code, v, _) = send(
            &admin,
            "POST",
            "/api/v1/namespaces/work/pods",
            "application/json",
            body.to_string().into_bytes(),
        )
        .await;
        assert_eq!(code, 201, "{v}");
        uids.insert(pod, v["metadata"]["uid"].as_str().unwrap().to_string());
    }
    let (code, v, _) = send(
        &admin,
        "POST",
        "/api/v1/nodes",
        "application/json",
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n2"}})
            .to_string()
            .into_bytes(),
    )
    .await;
    assert_eq!(code, 201, "{v}");

    // Its own Node: created and patched; another node's: refused.
    let (code, v, _) = send(
        &node,
        "POST",
        "/api/v1/nodes",
        "application/json",
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}})
            .to_string()
            .into_bytes(),
    )
    .await;
    assert_eq!(code, 201, "{v}");
    let label = json!({"metadata": {"labels": {"x": "y"}}})
        .to_string()
        .into_bytes();
    let (code, _, _) = send(
        &node,
        "PATCH",
        "/api/v1/nodes/n1",
        "application/merge-patch+json",
        label.clone(),
    )
    .await;
    assert_eq!(code, 200);
    let (code, v, _) = send(
        &node,
        "PATCH",
        "/api/v1/nodes/n2",
        "application/merge-patch+json",
        label.clone(),
    )
    .await;
    assert_eq!(code, 403, "{v}");
    assert_eq!(
        v["message"],
        "nodes \"n2\" is forbidden: node \"n1\" is not allowed to modify node \"n2\""
    );
    let (code, _, _) = send(&node, "GET", "/api/v1/nodes/n2", "application/json", vec![]).await;
    assert_eq!(code, 403);

    // Secrets: only the one its pod mounts.
    let (code, _, _) = send(
        &node,
        "GET",
        "/api/v1/namespaces/work/secrets/mounted",
        "application/json",
        vec![],
    )
    .await;
    assert_eq!(code, 200);
    let (code, v, _) = send(
        &node,
        "GET",
        "/api/v1/namespaces/work/secrets/unrelated",
        "application/json",
        vec![],
    )
    .await;
    assert_eq!(code, 403);
    assert_eq!(v["message"], "secrets \"unrelated\" is forbidden: User \"system:node:n1\" cannot get resource \"secrets\" in API group \"\" in the namespace \"work\": no relationship found between node 'n1' and this object");
    let (code, _, _) = send(
        &node,
        "GET",
        "/api/v1/namespaces/work/secrets",
        "application/json",
        vec![],
    )
    .await;
    assert_eq!(code, 403);
    let (code, _, _) = send(
        &node,
        "GET",
        "/api/v1/namespaces/work/secrets?fieldSelector=metadata.name%3Dmounted",
        "application/json",
        vec![],
    )
    .await;
    assert_eq!(code, 200);

    // Pods: its own pods' status and deletion; not another node's.
    let status = json!({"status": {"phase": "Running"}})
        .to_string()
        .into_bytes();
    let (code, v, _) = send(
        &node,
        "PATCH",
        "/api/v1/namespaces/work/pods/p1/status",
        "application/merge-patch+json",
        status.clone(),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    let (code, v, _) = send(
        &node,
        "PATCH",
        "/api/v1/namespaces/work/pods/p2/status",
        "application/merge-patch+json",
        status,
    )
    .await;
    assert_eq!(code, 403, "{v}");
    assert_eq!(v["message"], "pods \"p2\" is forbidden: node \"n1\" can only update pod status for pods with spec.nodeName set to itself");
    let (code, _, _) = send(
        &node,
        "DELETE",
        "/api/v1/namespaces/work/pods/p2",
        "application/json",
        vec![],
    )
    .await;
    assert_eq!(code, 403);
    let (code, _, _) = send(
        &node,
        "GET",
        "/api/v1/pods?fieldSelector=spec.nodeName%3Dn1",
        "application/json",
        vec![],
    )
    .await;
    assert_eq!(code, 200);
    let (code, _, _) = send(&node, "GET", "/api/v1/pods", "application/json", vec![]).await;
    assert_eq!(code, 403);
    let (code, _, _) = send(&node, "POST", "/api/v1/namespaces/work/pods", "application/json",
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p3"}, "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox"}]}}).to_string().into_bytes()).await;
    assert_eq!(code, 403);

    // Service account tokens: only for its pods' accounts, bound to one of
    // its pods.
    let token_request = |account: &str, pod: Option<&str>| {
        let mut spec = json!({"expirationSeconds": 3607});
        if let Some(p) = pod {
            spec["boundObjectRef"] =
                json!({"apiVersion": "v1", "kind": "Pod", "name": p, "uid": uids[p]});
        }
        (
            format!("/api/v1/namespaces/work/serviceaccounts/{account}/token"),
            json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec})
                .to_string()
                .into_bytes(),
        )
    };
    let (path, body) = token_request("default", Some("p1"));
    let (code, v, _) = send(&node, "POST", &path, "application/json", body).await;
    assert_eq!(code, 201, "{v}");
    assert!(v["status"]["token"].as_str().is_some_and(|t| !t.is_empty()));
    for (account, pod, message) in [
        (
            "default",
            None,
            r#"serviceaccounts "default" is forbidden: node requested token not bound to a pod"#,
        ),
        (
            "default",
            Some("p2"),
            r#"serviceaccounts "default" is forbidden: node requested token bound to a pod scheduled on a different node"#,
        ),
        (
            "robot",
            Some("p1"),
            r#"serviceaccounts "robot" is forbidden: User "system:node:n1" cannot create resource "serviceaccounts/token" in API group "" in the namespace "work": no relationship found between node 'n1' and this object"#,
        ),
    ] {
        let (path, body) = token_request(account, pod);
        let (code, v, _) = send(&node, "POST", &path, "application/json", body).await;
        assert_eq!((code, v["message"].as_str()), (403, Some(message)), "{v}");
    }

    // Services (for pods' environment) and, for the Service proxy and
    // cluster DNS it runs, EndpointSlices of every namespace: read-only.
    for path in [
        "/api/v1/services",
        "/api/v1/namespaces/work/services",
        "/apis/discovery.k8s.io/v1/endpointslices",
        "/apis/discovery.k8s.io/v1/endpointslices?watch=true&timeoutSeconds=1",
    ] {
        let (code, v, _) = send(&node, "GET", path, "application/json", vec![]).await;
        assert_eq!(code, 200, "{path}: {v}");
    }
    let slice = json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "fake"}, "addressType": "IPv4", "endpoints": []});
    let (code, v, _) = send(
        &node,
        "POST",
        "/apis/discovery.k8s.io/v1/namespaces/work/endpointslices",
        "application/json",
        slice.to_string().into_bytes(),
    )
    .await;
    assert_eq!(code, 403, "{v}");
    let (code, _, _) = send(
        &node,
        "GET",
        "/api/v1/namespaces/work/endpoints",
        "application/json",
        vec![],
    )
    .await;
    assert_eq!(code, 403, "Endpoints are not the node's to read");

    // A node renews its own certificate.
    let (pem3, key3) = csr_pem("system:node:n1", &["system:nodes"]);
    let (code, v, _) = send(
        &node,
        "POST",
        CSRS,
        "application/json",
        csr_object("node-csr-n1-renew", &pem3, KUBELET)
            .to_string()
            .into_bytes(),
    )
    .await;
    assert_eq!(code, 201, "{v}");
    let renewed = issued(&node, "node-csr-n1-renew").await;
    let again = cert_client(&h, &renewed, &key3).await;
    let (code, _, _) = send(
        &again,
        "GET",
        "/api/v1/nodes/n1",
        "application/json",
        vec![],
    )
    .await;
    assert_eq!(code, 200);
    // ...but not another node's.
    let (pem4, _) = csr_pem("system:node:n2", &["system:nodes"]);
    let (code, _, _) = send(
        &node,
        "POST",
        CSRS,
        "application/json",
        csr_object("node-csr-n2-by-n1", &pem4, KUBELET)
            .to_string()
            .into_bytes(),
    )
    .await;
    assert_eq!(code, 201);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, v, _) = send(
        &admin,
        "GET",
        &format!("{CSRS}/node-csr-n2-by-n1"),
        "application/json",
        vec![],
    )
    .await;
    assert!(
        v["status"]["conditions"].is_null(),
        "approved a certificate for another node: {v}"
    );
}
