//! The TokenRequest API (`POST .../serviceaccounts/NAME/token`), as
//! kube-apiserver's TokenREST: defaults, validation, binding to a Pod,
//! Secret or Node, and the answer with the signed token. Nothing is stored,
//! so a dry run answers the same.

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{core as def, lookup, username, Claims, KubernetesClaims, ObjectRef};
use crate::server::State;
use crate::status::ApiError;

/// `spec.expirationSeconds` when the request sets none.
const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;
const MIN_EXPIRATION_SECONDS: i64 = 600;
const MAX_EXPIRATION_SECONDS: i64 = 1 << 32;
/// What the ServiceAccount admission plugin's projected volume asks for;
/// such a pod-bound token is issued for a year and warns after the hour
/// (kube-apiserver's --service-account-extend-token-expiration, on by
/// default), so that clients that never reread it keep working.
const WARN_ONLY_EXPIRATION_SECONDS: i64 = 3607;
const EXTENDED_EXPIRATION_SECONDS: i64 = 365 * 24 * 3600;

const GROUP: &str = "authentication.k8s.io";
const KIND: &str = "TokenRequest";

/// Identity fields of a bound object.
#[derive(Deserialize)]
struct Bound {
    metadata: BoundMeta,
    #[serde(default)]
    spec: BoundSpec,
}

#[derive(Deserialize)]
struct BoundMeta {
    #[serde(default)]
    name: String,
    #[serde(default)]
    uid: String,
}

#[derive(Deserialize, Default)]
struct BoundSpec {
    #[serde(default, rename = "serviceAccountName")]
    service_account_name: Option<String>,
    #[serde(default, rename = "nodeName")]
    node_name: Option<String>,
}

fn invalid(name: &str, field: &str, value: &str, detail: &str) -> ApiError {
    ApiError::invalid(
        KIND,
        GROUP,
        name,
        vec![(
            "FieldValueInvalid".into(),
            field.into(),
            format!("Invalid value: {value}: {detail}"),
        )],
    )
}

async fn get(
    state: &State,
    resource: &str,
    namespace: Option<&str>,
    name: &str,
) -> Result<Bound, ApiError> {
    lookup::<Bound>(state, def(resource), namespace, name)
        .await?
        .ok_or_else(|| ApiError::not_found(resource, "", name))
}

/// Issues a token for service account `name` in `namespace`.
pub async fn create(
    state: &State,
    namespace: &str,
    name: &str,
    body: Value,
) -> Result<Value, ApiError> {
    let mut req: TokenRequest = serde_json::from_value(body).map_err(|e| {
        ApiError::bad_request(format!(
            "TokenRequest in version \"v1\" cannot be handled as a TokenRequest: {e}"
        ))
    })?;
    let meta = &mut req.metadata;
    if let Some(n) = meta.name.as_deref().filter(|n| !n.is_empty() && *n != name) {
        return Err(invalid(
            name,
            "metadata.name",
            &format!("{n:?}"),
            "must match the service account name if specified",
        ));
    }
    if let Some(n) = meta
        .namespace
        .as_deref()
        .filter(|n| !n.is_empty() && *n != namespace)
    {
        return Err(invalid(
            name,
            "metadata.namespace",
            &format!("{n:?}"),
            "must match the service account namespace if specified",
        ));
    }
    let sa = get(state, "serviceaccounts", Some(namespace), name).await?;

    let spec = &mut req.spec;
    if spec.audiences.is_empty() {
        spec.audiences = state.sa_tokens.api_audiences().to_vec();
    }
    let expiration = *spec
        .expiration_seconds
        .get_or_insert(DEFAULT_EXPIRATION_SECONDS);
    let now = chrono::Utc::now();
    if expiration < MIN_EXPIRATION_SECONDS {
        return Err(invalid(
            "",
            "spec.expirationSeconds",
            &expiration.to_string(),
            "may not specify a duration less than 10 minutes",
        ));
    }
    if expiration > MAX_EXPIRATION_SECONDS {
        return Err(invalid(
            "",
            "spec.expirationSeconds",
            &expiration.to_string(),
            "may not specify a duration larger than 2^32 seconds",
        ));
    }

    let mut claims = KubernetesClaims {
        namespace: namespace.to_string(),
        serviceaccount: ObjectRef {
            name: sa.metadata.name.clone(),
            uid: sa.metadata.uid.clone(),
        },
        ..Default::default()
    };
    if let Some(r) = &spec.bound_object_ref {
        bind(state, namespace, name, r, &mut claims).await?;
    }

    let kube_audiences = spec
        .audiences
        .iter()
        .all(|a| state.sa_tokens.api_audiences().contains(a));
    let mut lifetime = expiration;
    if claims.pod.is_some() && expiration == WARN_ONLY_EXPIRATION_SECONDS && kube_audiences {
        claims.warnafter = Some(now.timestamp() + expiration);
        lifetime = EXTENDED_EXPIRATION_SECONDS;
    }
    let iat = now.timestamp();
    let token = state.sa_tokens.sign(&Claims {
        aud: spec.audiences.clone(),
        exp: iat + lifetime,
        iat,
        iss: state.sa_tokens.issuer().to_string(),
        jti: uuid::Uuid::new_v4().to_string(),
        kubernetes: claims,
        nbf: iat,
        sub: username(namespace, name),
    })?;

    let stamp = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let mut out = json!({
        "kind": KIND,
        "apiVersion": format!("{GROUP}/v1"),
        "metadata": {
            "name": name,
            "namespace": namespace,
            "creationTimestamp": stamp(now),
        },
        "spec": {
            "audiences": spec.audiences,
            "expirationSeconds": expiration,
            // Kubernetes writes the field even when unset.
            "boundObjectRef": spec.bound_object_ref,
        },
        "status": {
            "token": token,
            // As asked, even when the token itself lives longer: the
            // kubelet refreshes it by this time.
            "expirationTimestamp": stamp(now + chrono::Duration::seconds(expiration)),
        },
    });
    if let Some(labels) = &req.metadata.labels {
        out["metadata"]["labels"] = json!(labels);
    }
    Ok(out)
}

/// Binds the token to the object `r` names (a Pod, with its node, a Secret
/// or a Node), which must exist with the uid given, if any.
async fn bind(
    state: &State,
    namespace: &str,
    sa_name: &str,
    r: &BoundObjectReference,
    claims: &mut KubernetesClaims,
) -> Result<(), ApiError> {
    let api_version = r.api_version.as_deref().unwrap_or("");
    let (group, version) = match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    };
    let kind = r.kind.as_deref().unwrap_or("");
    let name = r.name.as_deref().unwrap_or("");
    let object = match (group, kind) {
        ("", "Pod") => {
            let pod = get(state, "pods", Some(namespace), name).await?;
            if pod.spec.service_account_name.as_deref() != Some(sa_name) {
                return Err(ApiError::bad_request(format!(
                    "cannot bind token for serviceaccount {sa_name:?} to pod running with different serviceaccount name."
                )));
            }
            if let Some(node) = pod.spec.node_name.as_deref().filter(|n| !n.is_empty()) {
                // A node that is gone still names the pod's node in the
                // token, without its uid.
                let uid = match lookup::<Bound>(state, def("nodes"), None, node).await? {
                    Some(n) => n.metadata.uid,
                    None => String::new(),
                };
                claims.node = Some(ObjectRef {
                    name: node.to_string(),
                    uid,
                });
            }
            claims.pod.insert(ObjectRef {
                name: pod.metadata.name,
                uid: pod.metadata.uid,
            })
        }
        ("", "Secret") => {
            let secret = get(state, "secrets", Some(namespace), name).await?;
            claims.secret.insert(ObjectRef {
                name: secret.metadata.name,
                uid: secret.metadata.uid,
            })
        }
        ("", "Node") => {
            let node = get(state, "nodes", None, name).await?;
            claims.node.insert(ObjectRef {
                name: node.metadata.name,
                uid: node.metadata.uid,
            })
        }
        _ => {
            return Err(ApiError::bad_request(format!(
                "cannot bind token to object of type {group}/{version}, Kind={kind}"
            )))
        }
    };
    match r.uid.as_deref() {
        Some(uid) if !uid.is_empty() && uid != object.uid => Err(ApiError::conflict(
            kind,
            group,
            name,
            &format!(
                "the UID in the bound object reference ({uid}) does not match the UID in record. The object might have been deleted and then recreated"
            ),
        )),
        _ => Ok(()),
    }
}
