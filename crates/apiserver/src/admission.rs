//! Defaulting and validation on create and update, delegated to orca-api;
//! this module only converts between JSON and the typed objects.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use orca_api::validation::{
    invalid_message, validate_new, validate_status_update, validate_update, FieldError,
};

use crate::resources::ResourceDef;
use crate::status::ApiError;

fn typed<T: DeserializeOwned + Serialize>(
    v: &mut Value,
    f: impl FnOnce(&mut T),
) -> Result<(), ApiError> {
    let mut t = T::deserialize(&*v)
        .map_err(|e| ApiError::bad_request(format!("cannot decode object: {e}")))?;
    f(&mut t);
    *v = serde_json::to_value(t)
        .map_err(|e| ApiError::internal(format!("cannot encode object: {e}")))?;
    Ok(())
}

fn invalid(def: &ResourceDef, v: &Value, errs: Vec<FieldError>) -> Result<(), ApiError> {
    if errs.is_empty() {
        return Ok(());
    }
    let name = v["metadata"]["name"].as_str().unwrap_or_default();
    let status = orca_api::validation::invalid_status(def.group, def.kind, name, &errs);
    Err(ApiError::new(
        422,
        "Invalid",
        invalid_message(def.group, def.kind, name, &errs),
    )
    .with_details(status["details"].clone()))
}

/// Applies Kubernetes' create-time defaults, then validates.
pub fn on_create(def: &ResourceDef, v: &mut Value) -> Result<(), ApiError> {
    use k8s_openapi::api::core::v1 as core;
    match def.kind {
        "Pod" => {
            // Defaulted and validated in one decode: pods are the objects
            // created at rate.
            let mut errs = Vec::new();
            typed::<core::Pod>(v, |pod| {
                orca_api::defaults::pod(pod);
                pod.metadata.generation = Some(1);
                errs = orca_api::validation::validate_pod(pod);
            })?;
            return invalid(def, v, errs);
        }
        "Namespace" => typed::<core::Namespace>(v, orca_api::defaults::namespace)?,
        "Node" => typed::<core::Node>(v, orca_api::defaults::node)?,
        "Secret" => typed::<core::Secret>(v, orca_api::defaults::secret)?,
        _ => {}
    }
    invalid(def, v, validate_new(def.kind, v, def.namespaced))
}

/// Defaults the spec of an updated object and validates the change. Through
/// the `status` subresource the stored spec is kept (already defaulted), so
/// only what a status write may change is validated, as Kubernetes does.
pub fn on_update(
    def: &ResourceDef,
    new: &mut Value,
    old: &Value,
    status_only: bool,
) -> Result<(), ApiError> {
    if status_only {
        let errs = validate_status_update(def.kind, new, old, def.namespaced);
        return invalid(def, new, errs);
    }
    if def.kind == "Pod" && new["spec"].is_object() {
        let mut spec = new["spec"].take();
        typed::<k8s_openapi::api::core::v1::PodSpec>(&mut spec, orca_api::defaults::pod_spec)?;
        new["spec"] = spec;
    }
    invalid(
        def,
        new,
        validate_update(def.kind, new, old, def.namespaced),
    )
}
