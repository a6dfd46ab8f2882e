//! `/.well-known/openid-configuration` and `/openid/v1/jwks`: what another
//! party needs to verify this cluster's service account tokens (OIDC
//! discovery, as kube-apiserver serves it).

use bytes::Bytes;
use http::{header, Response};
use serde::Serialize;

use super::ServiceAccountTokens;
use crate::server::{full, Body};

/// Field order as kube-apiserver writes it.
#[derive(Serialize)]
struct Configuration<'a> {
    issuer: &'a str,
    jwks_uri: String,
    response_types_supported: [&'a str; 1],
    subject_types_supported: [&'a str; 1],
    id_token_signing_alg_values_supported: [&'a str; 1],
}

#[derive(Serialize)]
struct Jwk<'a> {
    #[serde(rename = "use")]
    use_: &'a str,
    kty: &'a str,
    kid: &'a str,
    alg: &'a str,
    n: &'a str,
    e: &'a str,
}

#[derive(Serialize)]
struct KeySet<'a> {
    keys: [Jwk<'a>; 1],
}

/// Public for an hour, as kube-apiserver answers.
fn cached(content_type: &str, body: Vec<u8>) -> Response<Body> {
    Response::builder()
        .status(200)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CACHE_CONTROL, "public, max-age=3600")
        .body(full(Bytes::from(body)))
        .unwrap_or_else(|_| Response::new(full(Bytes::new())))
}

/// The discovery document; its `jwks_uri` is on this server's address.
pub fn configuration(tokens: &ServiceAccountTokens, server_url: &str) -> Response<Body> {
    let doc = Configuration {
        issuer: tokens.issuer(),
        jwks_uri: format!("{server_url}/openid/v1/jwks"),
        response_types_supported: ["id_token"],
        subject_types_supported: ["public"],
        id_token_signing_alg_values_supported: ["RS256"],
    };
    cached(
        "application/json",
        serde_json::to_vec(&doc).unwrap_or_default(),
    )
}

/// The public signing key.
pub fn jwks(tokens: &ServiceAccountTokens) -> Response<Body> {
    let key = &tokens.key;
    let set = KeySet {
        keys: [Jwk {
            use_: "sig",
            kty: "RSA",
            kid: &key.kid,
            alg: "RS256",
            n: &key.n,
            e: &key.e,
        }],
    };
    cached(
        "application/jwk-set+json",
        serde_json::to_vec(&set).unwrap_or_default(),
    )
}
