//! Validation of CertificateSigningRequests (Kubernetes'
//! `pkg/apis/certificates/validation`), less the parse of the request
//! itself, which the API server checks with its X.509 code.

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;

use super::{name_is_dns_subdomain, validate_object_meta, FieldError};

const USAGES: &[&str] = &[
    "signing",
    "digital signature",
    "content commitment",
    "key encipherment",
    "key agreement",
    "data encipherment",
    "cert sign",
    "crl sign",
    "encipher only",
    "decipher only",
    "any",
    "server auth",
    "client auth",
    "code signing",
    "email protection",
    "s/mime",
    "ipsec end system",
    "ipsec tunnel",
    "ipsec user",
    "timestamping",
    "ocsp signing",
    "microsoft sgc",
    "netscape sgc",
];

pub fn validate_certificate_signing_request(csr: &CertificateSigningRequest) -> Vec<FieldError> {
    let mut errs = validate_object_meta(&csr.metadata, false, name_is_dns_subdomain);
    let spec = &csr.spec;
    if spec.request.0.is_empty() {
        errs.push(FieldError::required("spec.request", ""));
    }
    let signer = spec.signer_name.as_str();
    if signer.is_empty() {
        errs.push(FieldError::required("spec.signerName", ""));
    } else if !signer
        .split_once('/')
        .is_some_and(|(d, p)| !d.is_empty() && !p.is_empty())
    {
        errs.push(FieldError::invalid(
            "spec.signerName",
            signer,
            "must be a fully qualified domain and path of the form 'example.com/signer-name'",
        ));
    }
    for (i, u) in spec.usages.iter().flatten().enumerate() {
        if !USAGES.contains(&u.as_str()) {
            errs.push(FieldError::not_supported(
                format!("spec.usages[{i}]"),
                u.as_str(),
                USAGES,
            ));
        }
    }
    if let Some(s) = spec.expiration_seconds {
        if s < 600 {
            errs.push(FieldError::invalid(
                "spec.expirationSeconds",
                i64::from(s),
                "may not specify a duration less than 600 seconds (10 minutes)",
            ));
        }
    }
    errs
}
