//! Authentication, in kube-apiserver's order: a client certificate signed by
//! the cluster CA (CN = user, O = groups), else a bearer token checked by
//! each [`TokenAuthenticator`] in turn, else (no credentials at all) the
//! anonymous user. A token nobody recognises is 401 `Unauthorized`. Then
//! impersonation headers, each checked against the `impersonate` verb.
//!
//! Bearer-token authenticators are a list in [`crate::server::State`]
//! (`token_authenticators`, built in [`crate::start`]): the node join token
//! and service-account JWTs.

use std::sync::Arc;

use async_trait::async_trait;
use http::{header, HeaderMap};
use sha2::{Digest, Sha256};

use super::{Attributes, Caller, UserInfo, BOOTSTRAPPERS};
use crate::sa_tokens::TokenError;
use crate::server::State;
use crate::status::ApiError;

/// One way of recognising a bearer token.
#[async_trait]
pub trait TokenAuthenticator: Send + Sync {
    /// The user the token stands for; `None` when this authenticator does
    /// not recognise it (the next one is asked).
    async fn authenticate(&self, state: &State, token: &str) -> Option<UserInfo>;
}

/// Service account JWTs, checked by [`crate::sa_tokens`] (signature,
/// issuer, audiences, times, and that the account and any bound pod still
/// exist).
pub struct ServiceAccountTokens;

#[async_trait]
impl TokenAuthenticator for ServiceAccountTokens {
    async fn authenticate(&self, state: &State, token: &str) -> Option<UserInfo> {
        match state.sa_tokens.verify(state, token).await {
            Ok(u) => Some(UserInfo {
                name: u.username,
                uid: u.uid,
                groups: u.groups,
                extra: u.extra,
            }),
            // Another authenticator may know it.
            Err(TokenError::NotOurs) => None,
            // Ours but not valid: the client sees only 401, the reason is
            // for the operator.
            Err(TokenError::Invalid(reason)) => {
                tracing::debug!(%reason, "service account token rejected");
                None
            }
        }
    }
}

/// The node join token (`DATA_DIR/token`): a bootstrap credential only, as
/// Kubernetes' bootstrap tokens. It names `system:bootstrap:<id>` in
/// `system:bootstrappers`, which may read `/cacerts` and request a node
/// client certificate (CertificateSigningRequests), nothing else.
pub struct BootstrapToken {
    token: String,
    user: UserInfo,
}

impl BootstrapToken {
    pub fn new(token: &str) -> BootstrapToken {
        BootstrapToken {
            token: token.to_string(),
            user: UserInfo::authenticated(bootstrap_user(token), &[BOOTSTRAPPERS]),
        }
    }
}

/// `system:bootstrap:<id>`: the id is derived from the token (a bootstrap
/// token's id is public; the secret part is not shown).
pub fn bootstrap_user(token: &str) -> String {
    let digest = hex::encode(Sha256::digest(token.as_bytes()));
    format!("system:bootstrap:{}", &digest[..6])
}

#[async_trait]
impl TokenAuthenticator for BootstrapToken {
    async fn authenticate(&self, _state: &State, token: &str) -> Option<UserInfo> {
        self.user_for(token)
    }
}

impl BootstrapToken {
    fn user_for(&self, token: &str) -> Option<UserInfo> {
        // Constant-time comparison: this is a secret.
        let same = token.len() == self.token.len()
            && token
                .bytes()
                .zip(self.token.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        same.then(|| self.user.clone())
    }
}

/// The user a client certificate names: CN is the user, each O a group.
/// The certificate chain was verified against the cluster CA in the TLS
/// handshake.
pub fn certificate_user(der: &[u8]) -> Option<UserInfo> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let name = subject
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    if name.is_empty() {
        return None;
    }
    let groups: Vec<String> = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_string))
        .collect();
    let refs: Vec<&str> = groups.iter().map(String::as_str).collect();
    Some(UserInfo::authenticated(name, &refs))
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The caller of a request on a connection that presented `cert_user` (or
/// none).
pub async fn authenticate(
    state: &State,
    cert_user: Option<&Caller>,
    headers: &HeaderMap,
) -> Result<Caller, ApiError> {
    if let Some(u) = cert_user {
        return Ok(u.clone());
    }
    match bearer(headers) {
        Some(token) => {
            for a in &state.token_authenticators {
                if let Some(u) = a.authenticate(state, token).await {
                    return Ok(Arc::new(u));
                }
            }
            Err(ApiError::unauthorized())
        }
        None if headers.contains_key(header::AUTHORIZATION) => Err(ApiError::unauthorized()),
        None => Ok(Arc::new(UserInfo::anonymous())),
    }
}

const IMPERSONATE_USER: &str = "impersonate-user";
const IMPERSONATE_GROUP: &str = "impersonate-group";
const IMPERSONATE_UID: &str = "impersonate-uid";
const IMPERSONATE_EXTRA: &str = "impersonate-extra-";

/// Applies `Impersonate-*` headers: each impersonated user, group, uid and
/// extra needs the `impersonate` verb on it. Returns the caller unchanged
/// when there are none.
pub fn impersonate(state: &State, user: Caller, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let values = |name: &str| -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_string))
            .collect()
    };
    let name = values(IMPERSONATE_USER).into_iter().next();
    let groups = values(IMPERSONATE_GROUP);
    let uid = values(IMPERSONATE_UID).into_iter().next();
    let extras: Vec<(String, Vec<String>)> = headers
        .keys()
        .filter_map(|k| k.as_str().strip_prefix(IMPERSONATE_EXTRA))
        .map(|k| {
            let key = percent_decode(k);
            (key, values(&format!("{IMPERSONATE_EXTRA}{k}")))
        })
        .collect();
    let Some(name) = name else {
        if groups.is_empty() && uid.is_none() && extras.is_empty() {
            return Ok(user);
        }
        return Err(ApiError::internal(
            "requested impersonation of groups, uid or extras without impersonating a user",
        ));
    };
    let check = |attrs: Attributes| -> Result<(), ApiError> {
        match super::authorize(state, &user, &attrs) {
            Ok(()) => Ok(()),
            Err(reason) => Err(attrs.forbidden(&user, &reason)),
        }
    };
    let mut target = UserInfo {
        name: name.clone(),
        ..Default::default()
    };
    match target.service_account_name() {
        Some((ns, sa)) => {
            check(Attributes::resource(
                "impersonate",
                "",
                "serviceaccounts",
                "",
                ns,
                sa,
            ))?;
            let sa_user = UserInfo::service_account(ns, sa);
            target.groups = sa_user.groups;
            target.groups.retain(|g| g != super::AUTHENTICATED);
        }
        None => check(Attributes::resource(
            "impersonate",
            "",
            "users",
            "",
            "",
            &name,
        ))?,
    }
    for g in &groups {
        check(Attributes::resource("impersonate", "", "groups", "", "", g))?;
        if !target.in_group(g) {
            target.groups.push(g.clone());
        }
    }
    if let Some(uid) = uid {
        check(Attributes::resource(
            "impersonate",
            "authentication.k8s.io",
            "uids",
            "",
            "",
            &uid,
        ))?;
        target.uid = uid;
    }
    for (key, vals) in extras {
        for v in &vals {
            check(Attributes::resource(
                "impersonate",
                "authentication.k8s.io",
                "userextras",
                &key,
                "",
                v,
            ))?;
        }
        target.extra.insert(key, vals);
    }
    if target.name == super::ANONYMOUS {
        target.add_group(super::UNAUTHENTICATED);
    } else if !target.in_group(super::UNAUTHENTICATED) {
        target.add_group(super::AUTHENTICATED);
    }
    Ok(Arc::new(target))
}

fn percent_decode(s: &str) -> String {
    form_urlencoded::parse(format!("k={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_name_user_and_groups() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::default();
        p.distinguished_name.push(rcgen::DnType::CommonName, "bob");
        p.distinguished_name
            .push(rcgen::DnType::OrganizationName, "dev");
        let cert = p.self_signed(&key).unwrap();
        let u = certificate_user(cert.der()).unwrap();
        assert_eq!(u.name, "bob");
        assert_eq!(u.groups, vec!["dev", "system:authenticated"]);
    }

    #[test]
    fn the_join_token_is_a_bootstrap_identity() {
        let a = BootstrapToken::new("K10abc::node:secret");
        let u = a.user_for("K10abc::node:secret").unwrap();
        assert!(u.name.starts_with("system:bootstrap:"));
        assert_eq!(
            u.groups,
            vec!["system:bootstrappers", "system:authenticated"]
        );
        assert!(a.user_for("K10abc::node:other").is_none());
    }
}
