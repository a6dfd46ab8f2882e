//! CertificateSigningRequests (`certificates.k8s.io/v1`): the requester is
//! recorded from the caller, the spec never changes after create, approval
//! conditions go through `approval` and the certificate through `status`,
//! each needing the `approve` or `sign` verb on the signer (Kubernetes'
//! CertificateApproval and CertificateSigning admission), and no request
//! may ask the kube-apiserver-client signer for system:masters
//! (CertificateSubjectRestriction).

use base64::Engine;
use serde_json::{json, Value};

use super::{validated, Strategy};
use crate::auth::attributes::forbidden_error;
use crate::auth::{authorize, Attributes, UserInfo, SYSTEM_MASTERS};
use crate::handlers::Ctx;
use crate::resources::ResourceDef;
use crate::status::ApiError;
use orca_api::validation::{validate_new, validate_update, FieldError};

pub struct Csr;
pub static CERTIFICATE_SIGNING_REQUEST: Csr = Csr;

const GROUP: &str = "certificates.k8s.io";
const RESOURCE: &str = "certificatesigningrequests";

/// The PEM a request carries (`spec.request`, base64 of PEM).
pub fn request_pem(csr: &Value) -> Option<String> {
    let b64 = csr["spec"]["request"].as_str()?;
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    String::from_utf8(bytes).ok()
}

/// The subject's common name and organizations of a PEM request, with its
/// signature checked.
pub fn request_subject(pem: &str) -> Option<(String, Vec<String>)> {
    let params = rcgen::CertificateSigningRequestParams::from_pem(pem).ok()?;
    let mut cn = String::new();
    let mut orgs = Vec::new();
    for (ty, value) in params.params.distinguished_name.iter() {
        let text = match value {
            rcgen::DnValue::Utf8String(s) => s.clone(),
            rcgen::DnValue::PrintableString(s) => s.as_str().to_string(),
            _ => continue,
        };
        match ty {
            rcgen::DnType::CommonName => cn = text,
            rcgen::DnType::OrganizationName => orgs.push(text),
            _ => {}
        }
    }
    Some((cn, orgs))
}

fn has_condition(v: &Value, ty: &str) -> bool {
    v["status"]["conditions"]
        .as_array()
        .is_some_and(|c| c.iter().any(|c| c["type"] == ty))
}

fn condition_errors(new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let (approved, denied) = (has_condition(new, "Approved"), has_condition(new, "Denied"));
    if approved && denied {
        errs.push(FieldError::invalid(
            "status.conditions",
            orca_api::validation::BadValue::Omit,
            "Approved and Denied conditions are mutually exclusive",
        ));
    }
    for ty in ["Approved", "Denied"] {
        if has_condition(old, ty) && !has_condition(new, ty) {
            errs.push(FieldError::forbidden(
                "status.conditions",
                format!("updates may not remove the {ty} condition"),
            ));
        }
    }
    let (cert, old_cert) = (&new["status"]["certificate"], &old["status"]["certificate"]);
    if !old_cert.is_null() && old_cert != "" && cert != old_cert {
        errs.push(FieldError::forbidden(
            "status.certificate",
            "updates may not modify existing certificate content",
        ));
    }
    errs
}

impl Strategy for Csr {
    fn set_requester(&self, user: &UserInfo, obj: &mut Value) {
        obj["spec"]["username"] = json!(user.name);
        obj["spec"]["groups"] = json!(user.groups);
        if user.uid.is_empty() {
            if let Some(s) = obj["spec"].as_object_mut() {
                s.remove("uid");
            }
        } else {
            obj["spec"]["uid"] = json!(user.uid);
        }
        if user.extra.is_empty() {
            if let Some(s) = obj["spec"].as_object_mut() {
                s.remove("extra");
            }
        } else {
            obj["spec"]["extra"] = json!(user.extra);
        }
    }

    fn prepare_create(&self, def: &ResourceDef, obj: &mut Value) -> Result<(), ApiError> {
        if let Some(o) = obj.as_object_mut() {
            o.remove("status");
        }
        let mut errs = validate_new(def.kind, obj, def.namespaced);
        if request_pem(obj)
            .as_deref()
            .and_then(request_subject)
            .is_none()
        {
            errs.push(FieldError::invalid(
                "spec.request",
                orca_api::validation::BadValue::Omit,
                "invalid certificate request: not a PEM CERTIFICATE REQUEST with a valid signature",
            ));
        }
        validated(def, obj, errs)
    }

    fn prepare_update(
        &self,
        def: &ResourceDef,
        new: &mut Value,
        old: &Value,
    ) -> Result<(), ApiError> {
        // The request itself never changes.
        new["spec"] = old["spec"].clone();
        validated(
            def,
            new,
            validate_update(def.kind, new, old, def.namespaced),
        )
    }

    fn prepare_status_update(
        &self,
        def: &ResourceDef,
        new: &mut Value,
        old: &Value,
    ) -> Result<(), ApiError> {
        new["spec"] = old["spec"].clone();
        let now = crate::handlers::now();
        if let Some(conds) = new["status"]["conditions"].as_array_mut() {
            for c in conds {
                if c["status"].is_null() {
                    c["status"] = json!("True");
                }
                if c["lastUpdateTime"].is_null() {
                    c["lastUpdateTime"] = json!(now);
                }
                if c["lastTransitionTime"].is_null() {
                    c["lastTransitionTime"] = json!(now);
                }
            }
        }
        let mut errs = validate_update(def.kind, new, old, def.namespaced);
        errs.extend(condition_errors(new, old));
        validated(def, new, errs)
    }

    fn authorize_write(
        &self,
        ctx: &Ctx<'_>,
        sub: Option<&str>,
        new: &Value,
        old: Option<&Value>,
    ) -> Result<(), ApiError> {
        let name = new["metadata"]["name"].as_str().unwrap_or_default();
        let signer = new["spec"]["signerName"].as_str().unwrap_or_default();
        let forbid = |why: String| Err(forbidden_error(GROUP, RESOURCE, name, &why));
        let may = |verb: &str| {
            let attrs = Attributes::resource(verb, GROUP, "signers", "", "", signer);
            let domain = signer.split('/').next().unwrap_or_default();
            let wildcard =
                Attributes::resource(verb, GROUP, "signers", "", "", &format!("{domain}/*"));
            authorize(ctx.state, ctx.user, &attrs).is_ok()
                || authorize(ctx.state, ctx.user, &wildcard).is_ok()
        };
        match (sub, old) {
            (None, None) => {
                if signer == "kubernetes.io/kube-apiserver-client" {
                    let orgs = request_pem(new)
                        .as_deref()
                        .and_then(request_subject)
                        .map(|(_, o)| o)
                        .unwrap_or_default();
                    if orgs.iter().any(|o| o == SYSTEM_MASTERS) {
                        return forbid(format!(
                            "use of {signer} signer with {SYSTEM_MASTERS} group is not allowed"
                        ));
                    }
                }
                Ok(())
            }
            (Some("approval"), Some(old)) => {
                let decided =
                    |v: &Value| (has_condition(v, "Approved"), has_condition(v, "Denied"));
                if decided(new) != decided(old) && !may("approve") {
                    return forbid(format!(
                        "user not permitted to approve requests with signerName {signer:?}"
                    ));
                }
                if new["status"]["certificate"] != old["status"]["certificate"] {
                    return Err(ApiError::bad_request(
                        "the approval subresource may change only the conditions; write the certificate through status",
                    ));
                }
                Ok(())
            }
            (Some("status"), Some(old)) => {
                if new["status"]["certificate"] != old["status"]["certificate"] && !may("sign") {
                    return forbid(format!(
                        "user not permitted to sign requests with signerName {signer:?}"
                    ));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}
