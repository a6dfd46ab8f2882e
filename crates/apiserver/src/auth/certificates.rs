//! kube-controller-manager's csrapproving and csrsigning controllers, run
//! inside the API server: a node client certificate request
//! (`kubernetes.io/kube-apiserver-client-kubelet`, subject
//! `CN=system:node:<name>, O=system:nodes`, client usages) is approved when
//! its requester may create `certificatesigningrequests/nodeclient` (a
//! joining node's bootstrap identity) or, for its own name,
//! `certificatesigningrequests/selfnodeclient` (a node renewing); approved
//! requests for the kube-apiserver-client signers are then signed by the
//! cluster CA. Both write through the API as the `certificate-controller`
//! service account, so its bootstrap role is what lets them.

use std::sync::{Arc, Weak};

use base64::Engine;
use http::{header, HeaderMap, HeaderValue};
use serde_json::{json, Value};

use super::{authorize, Attributes, UserInfo};
use crate::handlers::{self, Ctx};
use crate::registry::certificates::{request_pem, request_subject};
use crate::resources::{self, ResourceDef};
use crate::server::{Query, State};

pub const KUBELET_CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";
const CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client";

fn csrs() -> &'static ResourceDef {
    resources::find("certificates.k8s.io", "v1", "certificatesigningrequests")
        .expect("certificate signing requests are served")
}

fn has_condition(v: &Value, ty: &str) -> bool {
    v["status"]["conditions"]
        .as_array()
        .is_some_and(|c| c.iter().any(|c| c["type"] == ty))
}

/// The requester recorded in the request.
fn requester(csr: &Value) -> UserInfo {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let spec = &csr["spec"];
    UserInfo {
        name: spec["username"].as_str().unwrap_or_default().into(),
        uid: spec["uid"].as_str().unwrap_or_default().into(),
        groups: strings(&spec["groups"]),
        extra: spec["extra"]
            .as_object()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), strings(v))).collect())
            .unwrap_or_default(),
    }
}

/// Why the request may be approved automatically, if it may.
fn auto_approval(state: &State, csr: &Value) -> Option<&'static str> {
    if csr["spec"]["signerName"] != KUBELET_CLIENT_SIGNER {
        return None;
    }
    let (cn, orgs) = request_subject(&request_pem(csr)?)?;
    if !cn.starts_with(super::NODE_PREFIX) || orgs != [super::NODES] {
        return None;
    }
    let mut usages: Vec<&str> = csr["spec"]["usages"]
        .as_array()
        .map(|u| u.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    usages.sort_unstable();
    let client = ["client auth", "digital signature"];
    let client_rsa = ["client auth", "digital signature", "key encipherment"];
    if usages != client && usages != client_rsa {
        return None;
    }
    let user = requester(csr);
    let may = |sub: &str| {
        let attrs = Attributes::resource(
            "create",
            "certificates.k8s.io",
            "certificatesigningrequests",
            sub,
            "",
            "",
        );
        authorize(state, &user, &attrs).is_ok()
    };
    if user.name == cn && may("selfnodeclient") {
        return Some("Auto approving self kubelet client certificate after SubjectAccessReview.");
    }
    if may("nodeclient") {
        return Some("Auto approving kubelet client certificate after SubjectAccessReview.");
    }
    None
}

async fn write(state: &Arc<State>, sub: &str, v: &Value) {
    let user = UserInfo::controller("certificate-controller");
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let query = Query::new();
    let ctx = Ctx {
        state,
        def: csrs(),
        namespace: None,
        query: &query,
        headers: &headers,
        user: &user,
    };
    let name = v["metadata"]["name"].as_str().unwrap_or_default();
    let body = serde_json::to_vec(v).unwrap_or_default();
    if let Err(e) = handlers::update(&ctx, name, Some(sub), &body).await {
        // A conflict comes with an event, and another pass.
        if e.code != 409 {
            tracing::warn!(csr = name, error = %e.message, "the certificate controller could not update a request");
        }
    }
}

async fn pass(state: &Arc<State>) {
    let def = csrs();
    let (objs, _) = state.cache.resource(def).list(&def.prefix());
    for o in objs {
        let Ok(mut csr) = serde_json::from_slice::<Value>(&o.bytes) else {
            continue;
        };
        if has_condition(&csr, "Denied") || has_condition(&csr, "Failed") {
            continue;
        }
        if !has_condition(&csr, "Approved") {
            if let Some(message) = auto_approval(state, &csr) {
                let cond = json!({"type": "Approved", "status": "True", "reason": "AutoApproved", "message": message});
                match csr["status"]["conditions"].as_array_mut() {
                    Some(c) => c.push(cond),
                    None => csr["status"]["conditions"] = json!([cond]),
                }
                write(state, "approval", &csr).await;
            }
            continue;
        }
        let signer = csr["spec"]["signerName"].as_str().unwrap_or_default();
        let issued = csr["status"]["certificate"]
            .as_str()
            .is_some_and(|c| !c.is_empty());
        if issued || !matches!(signer, KUBELET_CLIENT_SIGNER | CLIENT_SIGNER) {
            continue;
        }
        let mut lifetime = state.cluster_signing_duration;
        if let Some(s) = csr["spec"]["expirationSeconds"].as_u64() {
            lifetime = lifetime.min(std::time::Duration::from_secs(s));
        }
        let Some(pem) = request_pem(&csr) else {
            continue;
        };
        match state.signer.sign_client(&pem, lifetime) {
            Ok(cert) => {
                csr["status"]["certificate"] =
                    json!(base64::engine::general_purpose::STANDARD.encode(cert));
                write(state, "status", &csr).await;
            }
            Err(e) => {
                tracing::warn!(csr = ?csr["metadata"]["name"], error = %e, "could not sign a certificate request")
            }
        }
    }
}

/// Runs a pass now and after every change of a request.
pub fn start(state: &Arc<State>) {
    let weak: Weak<State> = Arc::downgrade(state);
    let rc = state.cache.resource(csrs()).clone();
    let Some(mut sub) = rc.subscribe(rc.revision()) else {
        return;
    };
    tokio::spawn(async move {
        loop {
            if let Some(state) = weak.upgrade() {
                pass(&state).await;
            } else {
                return;
            }
            match sub.rx.recv().await {
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
            while sub.rx.try_recv().is_ok() {}
        }
    });
}
