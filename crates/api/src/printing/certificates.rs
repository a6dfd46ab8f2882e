//! Table columns of CertificateSigningRequests, as Kubernetes prints them:
//! `NAME AGE SIGNERNAME REQUESTOR REQUESTEDDURATION CONDITION`.

use chrono::{DateTime, Utc};
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{age, age_col, col, human_duration, name_col};

pub fn csr_columns() -> Vec<Value> {
    vec![
        name_col(),
        age_col(),
        col(
            "SignerName",
            "string",
            "",
            0,
            "Only present for v1beta1 CSRs",
        ),
        col(
            "Requestor",
            "string",
            "",
            0,
            "Request is the CSR attached to the object",
        ),
        col(
            "RequestedDuration",
            "string",
            "",
            0,
            "Requested duration of the certificate",
        ),
        col("Condition", "string", "", 0, "Condition of the certificate"),
    ]
}

/// Denied or Approved (else Pending), then `,Failed` and `,Issued`.
fn condition(csr: &CertificateSigningRequest) -> String {
    let conds = csr
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let has = |t: &str| conds.iter().any(|c| c.type_ == t);
    let mut s = if has("Denied") {
        "Denied"
    } else if has("Approved") {
        "Approved"
    } else {
        "Pending"
    }
    .to_string();
    if has("Failed") {
        s.push_str(",Failed");
    }
    if csr
        .status
        .as_ref()
        .and_then(|s| s.certificate.as_ref())
        .is_some_and(|c| !c.0.is_empty())
    {
        s.push_str(",Issued");
    }
    s
}

pub fn csr_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let csr = CertificateSigningRequest::deserialize(obj).unwrap_or_default();
    let duration = csr
        .spec
        .expiration_seconds
        .map(|s| human_duration(chrono::Duration::seconds(i64::from(s))))
        .unwrap_or_else(|| "<none>".into());
    vec![
        json!(csr.metadata.name.clone().unwrap_or_default()),
        json!(age(csr.metadata.creation_timestamp.as_ref(), now)),
        json!(csr.spec.signer_name),
        json!(csr.spec.username.clone().unwrap_or_default()),
        json!(duration),
        json!(condition(&csr)),
    ]
}
