//! Service account tokens as kube-apiserver issues and checks them: RS256
//! JWTs with the issuer `https://kubernetes.default.svc.cluster.local`,
//! signed with the key under `DATA_DIR/tls` ([`keys`]), issued through the
//! TokenRequest API ([`request`]) and verified for bearer authentication
//! ([`ServiceAccountTokens::verify`]). [`oidc`] serves the discovery
//! documents that let others verify them.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::resources::{self, ResourceDef};
use crate::server::State;
use crate::status::ApiError;

mod keys;
pub mod oidc;
pub mod request;

/// kube-apiserver's --service-account-issuer, as clusters usually set it.
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// go-jose's leeway for exp, nbf and iat, which Kubernetes uses; also how
/// long after its deletion time a bound object's tokens still verify.
const LEEWAY_SECONDS: i64 = 60;

/// The identity a verified token stands for, as Kubernetes' service
/// account authenticator builds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceAccountUser {
    /// `system:serviceaccount:<namespace>:<name>`.
    pub username: String,
    /// The ServiceAccount's uid.
    pub uid: String,
    /// `system:serviceaccounts`, `system:serviceaccounts:<namespace>`,
    /// `system:authenticated`.
    pub groups: Vec<String>,
    /// `authentication.kubernetes.io/credential-id` (`JTI=<jti>`) and, for a
    /// token bound to a pod, its `pod-name`, `pod-uid`, `node-name` and
    /// `node-uid`.
    pub extra: BTreeMap<String, Vec<String>>,
}

/// Why a bearer token did not authenticate. The client only ever sees 401
/// `Unauthorized`; the reason is for the server's log.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Not a JWT of this issuer: another authenticator may know it.
    #[error("not a service account token of this cluster")]
    NotOurs,
    #[error("{0}")]
    Invalid(String),
}

/// An object a token names: its name and uid.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ObjectRef {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
}

/// The `kubernetes.io` private claim. Fields in the JSON order Kubernetes
/// writes them (alphabetical).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct KubernetesClaims {
    pub namespace: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<ObjectRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<ObjectRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<ObjectRef>,
    pub serviceaccount: ObjectRef,
    /// For projected tokens whose lifetime was extended: when the token
    /// would have expired as asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warnafter: Option<i64>,
}

/// A token's claims, in Kubernetes' order.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Claims {
    #[serde(deserialize_with = "one_or_many")]
    pub aud: Vec<String>,
    pub exp: i64,
    pub iat: i64,
    pub iss: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub jti: String,
    #[serde(rename = "kubernetes.io")]
    pub kubernetes: KubernetesClaims,
    pub nbf: i64,
    pub sub: String,
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

pub fn username(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

/// The issuer: signing key, issuer name and the API server's audiences.
pub struct ServiceAccountTokens {
    key: keys::SigningKey,
    issuer: String,
    /// kube-apiserver's --api-audiences, which default to the issuer:
    /// tokens for other audiences do not authenticate here.
    audiences: Vec<String>,
}

impl ServiceAccountTokens {
    /// Loads the signing key under `tls_dir`, making it on first start.
    pub fn load_or_create(tls_dir: &Path) -> Result<Self, crate::Error> {
        Ok(ServiceAccountTokens {
            key: keys::load_or_create(tls_dir)?,
            issuer: ISSUER.to_string(),
            audiences: vec![ISSUER.to_string()],
        })
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn api_audiences(&self) -> &[String] {
        &self.audiences
    }

    /// Signs `claims` (RS256, with the key id in the header).
    pub fn sign(&self, claims: &Claims) -> Result<String, ApiError> {
        let header = jsonwebtoken::Header {
            typ: None,
            kid: Some(self.key.kid.clone()),
            ..jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256)
        };
        jsonwebtoken::encode(&header, claims, &self.key.encoding)
            .map_err(|e| ApiError::internal(format!("failed to generate token: {e}")))
    }

    /// Checks the signature, issuer, audiences and times of `token`, then
    /// that its service account, and the pod or secret it is bound to,
    /// still exist with the uids it names (as Kubernetes' validator does).
    pub async fn verify(
        &self,
        state: &State,
        token: &str,
    ) -> Result<ServiceAccountUser, TokenError> {
        let claims = self.verified_claims(token)?;
        check_bound_objects(state, &claims).await?;
        Ok(user_of(&claims))
    }

    /// The claims of a token this issuer signed, still within its times.
    fn verified_claims(&self, token: &str) -> Result<Claims, TokenError> {
        use jsonwebtoken::errors::ErrorKind;
        // Only JWTs naming this issuer are ours to judge.
        let unverified = unverified_issuer(token).ok_or(TokenError::NotOurs)?;
        if unverified != self.issuer {
            return Err(TokenError::NotOurs);
        }
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.leeway = LEEWAY_SECONDS as u64;
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&self.audiences);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data = jsonwebtoken::decode::<Claims>(token, &self.key.decoding, &validation).map_err(
            |e| {
                TokenError::Invalid(match e.kind() {
                    ErrorKind::ExpiredSignature => "service account token has expired".into(),
                    ErrorKind::ImmatureSignature => "service account token is not valid yet".into(),
                    ErrorKind::InvalidAudience => "token audiences is invalid".into(),
                    ErrorKind::InvalidSignature => "invalid signature".into(),
                    other => format!("invalid service account token: {other:?}"),
                })
            },
        )?;
        let claims = data.claims;
        if claims.iat > chrono::Utc::now().timestamp() + LEEWAY_SECONDS {
            return Err(TokenError::Invalid(
                "service account token is issued in the future".into(),
            ));
        }
        Ok(claims)
    }
}

/// The `iss` claim of a JWT, read before its signature is checked.
fn unverified_issuer(token: &str) -> Option<String> {
    use base64::Engine;
    let mut parts = token.split('.');
    let (_, payload, _) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    v["iss"].as_str().map(str::to_string)
}

/// The uid and deletion time of a stored object, read without decoding
/// the rest of it.
#[derive(Deserialize)]
struct Identity {
    metadata: IdentityMeta,
}

#[derive(Deserialize)]
struct IdentityMeta {
    #[serde(default)]
    uid: String,
    #[serde(default, rename = "deletionTimestamp")]
    deletion_timestamp: Option<String>,
}

/// An object as the watch cache has it, else as stored (a token may be
/// used before the cache has seen what it is bound to).
pub(crate) async fn lookup<T: serde::de::DeserializeOwned>(
    state: &State,
    def: &'static ResourceDef,
    namespace: Option<&str>,
    name: &str,
) -> Result<Option<T>, ApiError> {
    let key = def.key(namespace, name);
    let bytes = match state.cache.resource(def).get(&key) {
        Some(obj) => obj.bytes.clone(),
        None => match state.store.get(&key).await? {
            Some(kv) => bytes::Bytes::from(kv.value),
            None => return Ok(None),
        },
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| ApiError::internal(format!("stored object {key} cannot be read: {e}")))
}

async fn check_bound_objects(state: &State, claims: &Claims) -> Result<(), TokenError> {
    let k = &claims.kubernetes;
    let ns = Some(k.namespace.as_str());
    let deleted_before = chrono::Utc::now() - chrono::Duration::seconds(LEEWAY_SECONDS);
    let gone = |m: &IdentityMeta| {
        m.deletion_timestamp
            .as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .is_some_and(|t| t < deleted_before)
    };
    let find = |def: &'static ResourceDef, name: String| async move {
        let ns = if def.namespaced { ns } else { None };
        lookup::<Identity>(state, def, ns, &name)
            .await
            .map_err(|e| TokenError::Invalid(e.message))
    };
    let sa = find(core("serviceaccounts"), k.serviceaccount.name.clone())
        .await?
        .ok_or_else(|| {
            TokenError::Invalid(format!(
                "serviceaccounts \"{}\" not found",
                k.serviceaccount.name
            ))
        })?;
    if sa.metadata.uid != k.serviceaccount.uid {
        return Err(TokenError::Invalid(format!(
            "service account UID ({}) does not match claim ({})",
            sa.metadata.uid, k.serviceaccount.uid
        )));
    }
    if gone(&sa.metadata) {
        return Err(TokenError::Invalid(format!(
            "service account {}/{} has been deleted",
            k.namespace, k.serviceaccount.name
        )));
    }
    // A pod-bound token names its pod's node for information only; a token
    // bound to the node itself lives as long as the node.
    let node_bound = k.node.as_ref().filter(|_| k.pod.is_none());
    let bound = [
        (k.secret.as_ref(), core("secrets")),
        (k.pod.as_ref(), core("pods")),
        (node_bound, core("nodes")),
    ];
    for (reference, def) in bound {
        let Some(r) = reference else {
            continue;
        };
        let obj = find(def, r.name.clone()).await?;
        let valid = obj.is_some_and(|o| o.metadata.uid == r.uid && !gone(&o.metadata));
        if !valid {
            return Err(TokenError::Invalid(
                "service account token has been invalidated".into(),
            ));
        }
    }
    Ok(())
}

fn core(name: &str) -> &'static ResourceDef {
    resources::find("", "v1", name).expect("core resource is served")
}

fn user_of(claims: &Claims) -> ServiceAccountUser {
    let k = &claims.kubernetes;
    let mut extra = BTreeMap::new();
    let mut put = |key: &str, value: &str| {
        if !value.is_empty() {
            extra.insert(
                format!("authentication.kubernetes.io/{key}"),
                vec![value.to_string()],
            );
        }
    };
    if !claims.jti.is_empty() {
        put("credential-id", &format!("JTI={}", claims.jti));
    }
    if let Some(pod) = &k.pod {
        put("pod-name", &pod.name);
        put("pod-uid", &pod.uid);
        if let Some(node) = &k.node {
            put("node-name", &node.name);
            put("node-uid", &node.uid);
        }
    }
    ServiceAccountUser {
        username: username(&k.namespace, &k.serviceaccount.name),
        uid: k.serviceaccount.uid.clone(),
        groups: vec![
            "system:serviceaccounts".into(),
            format!("system:serviceaccounts:{}", k.namespace),
            "system:authenticated".into(),
        ],
        extra,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(now: i64) -> Claims {
        Claims {
            aud: vec![ISSUER.into()],
            exp: now + 3600,
            iat: now,
            iss: ISSUER.into(),
            jti: "j-1".into(),
            kubernetes: KubernetesClaims {
                namespace: "default".into(),
                serviceaccount: ObjectRef {
                    name: "default".into(),
                    uid: "sa-uid".into(),
                },
                pod: Some(ObjectRef {
                    name: "p".into(),
                    uid: "pod-uid".into(),
                }),
                node: Some(ObjectRef {
                    name: "n".into(),
                    uid: "node-uid".into(),
                }),
                ..Default::default()
            },
            nbf: now,
            sub: username("default", "default"),
        }
    }

    fn tokens(dir: &Path) -> ServiceAccountTokens {
        ServiceAccountTokens::load_or_create(dir).unwrap()
    }

    #[test]
    fn signed_tokens_verify_and_keep_kubernetes_shape() {
        let dir = tempfile::tempdir().unwrap();
        let t = tokens(dir.path());
        let now = chrono::Utc::now().timestamp();
        let jwt = t.sign(&claims(now)).unwrap();
        let header = jsonwebtoken::decode_header(&jwt).unwrap();
        assert_eq!(header.kid.as_deref(), Some(t.key.kid.as_str()));
        assert!(header.typ.is_none());
        let c = t.verified_claims(&jwt).unwrap();
        assert_eq!(c.sub, "system:serviceaccount:default:default");
        // The payload's JSON keys are in Kubernetes' order.
        let payload: String = {
            use base64::Engine;
            let p = jwt.split('.').nth(1).unwrap();
            String::from_utf8(
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(p)
                    .unwrap(),
            )
            .unwrap()
        };
        let order: Vec<usize> = [
            "\"aud\"",
            "\"exp\"",
            "\"iat\"",
            "\"iss\"",
            "\"jti\"",
            "\"kubernetes.io\"",
            "\"nbf\"",
            "\"sub\"",
        ]
        .iter()
        .map(|k| payload.find(k).unwrap())
        .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{payload}");
        let user = user_of(&c);
        assert_eq!(
            user.extra["authentication.kubernetes.io/credential-id"],
            vec!["JTI=j-1"]
        );
        assert_eq!(
            user.extra["authentication.kubernetes.io/node-uid"],
            vec!["node-uid"]
        );
        assert_eq!(user.extra.len(), 5);
    }

    #[test]
    fn expiry_audience_issuer_and_signer_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let t = tokens(dir.path());
        let now = chrono::Utc::now().timestamp();
        let invalid = |c: &Claims| match t.verified_claims(&t.sign(c).unwrap()) {
            Err(TokenError::Invalid(m)) => m,
            other => panic!("accepted or not judged: {other:?}"),
        };
        // Within the leeway an expired token still passes.
        let mut c = claims(now - 3600);
        c.exp = now - 30;
        assert!(t.verified_claims(&t.sign(&c).unwrap()).is_ok());
        c.exp = now - 120;
        assert_eq!(invalid(&c), "service account token has expired");
        let mut c = claims(now);
        c.nbf = now + 600;
        assert_eq!(invalid(&c), "service account token is not valid yet");
        let mut c = claims(now);
        c.aud = vec!["my-aud".into()];
        assert_eq!(invalid(&c), "token audiences is invalid");
        let mut c = claims(now);
        c.iat = now + 600;
        assert_eq!(invalid(&c), "service account token is issued in the future");
        let mut c = claims(now);
        c.iss = "https://elsewhere".into();
        assert!(matches!(
            t.verified_claims(&t.sign(&c).unwrap()),
            Err(TokenError::NotOurs)
        ));
        // Same issuer, another key.
        let other = tempfile::tempdir().unwrap();
        let foreign = tokens(other.path()).sign(&claims(now)).unwrap();
        assert!(matches!(
            t.verified_claims(&foreign),
            Err(TokenError::Invalid(m)) if m == "invalid signature"
        ));
        assert!(matches!(
            t.verified_claims("K10abc::node:xyz"),
            Err(TokenError::NotOurs)
        ));
    }
}
