//! Server-side apply: `PATCH` with `application/apply-patch+yaml`. The
//! applied configuration is merged into the live object by
//! `orca_api::managed` (conflicts, removal of fields the manager stopped
//! applying), then written as any patch: defaults, validation, admission,
//! dry run. An apply to an object that does not exist creates it.

use super::field_manager;
use super::write::{create_object, merge_checked, Fields};
use super::*;
use crate::pod_security;

/// Parses and checks the applied configuration: YAML or JSON, the URL's
/// kind and version, name and namespace, no managedFields, no fields the
/// schema does not know.
fn configuration(ctx: &Ctx<'_>, name: &str, body: &[u8]) -> Result<Value, ApiError> {
    let config: Value = serde_yaml::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
    if !config.is_object() {
        return Err(ApiError::bad_request(
            "the applied configuration must be an object",
        ));
    }
    let api_version = ctx.def.api_version();
    let (av, kind) = (
        config["apiVersion"].as_str().unwrap_or(""),
        config["kind"].as_str().unwrap_or(""),
    );
    if av.is_empty() || kind.is_empty() {
        return Err(ApiError::bad_request(
            "apiVersion and kind must be set in the applied configuration",
        ));
    }
    if av != api_version || kind != ctx.def.kind {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({av}) does not match the expected API version ({api_version})"
        )));
    }
    let body_name = name_of(&config);
    if body_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    if let (Some(ns), Some(bns)) = (ctx.namespace, config["metadata"]["namespace"].as_str()) {
        if !bns.is_empty() && bns != ns {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
    }
    if !config["metadata"]["managedFields"].is_null() {
        return Err(ApiError::bad_request("metadata.managedFields must be nil"));
    }
    // Whatever fieldValidation says, kube-apiserver 1.32 cannot type an
    // applied configuration with unknown fields and answers a bare 500.
    let unknown = crate::openapi::unknown_fields(ctx.def.schema, &config);
    if let Some(f) = unknown.first() {
        let gv = if ctx.def.group.is_empty() {
            format!("/{}", ctx.def.version)
        } else {
            format!("{}/{}", ctx.def.group, ctx.def.version)
        };
        return Err(ApiError::new(
            500,
            "",
            format!(
                "failed to create typed patch object ({}/{name}; {gv}, Kind={}): .{f}: field not declared in schema",
                ctx.namespace.unwrap_or(""),
                ctx.def.kind
            ),
        ));
    }
    Ok(config)
}

/// The typed round trip every written object takes, after the merge.
fn normalized(ctx: &Ctx<'_>, name: &str, merged: Value) -> Result<Value, ApiError> {
    (ctx.def.normalize)(merged).map_err(|e| {
        ApiError::new(
            422,
            "Invalid",
            format!(
                "{} \"{name}\" is invalid after the apply: {e}",
                ctx.def.kind
            ),
        )
    })
}

pub(super) async fn apply(
    ctx: &Ctx<'_>,
    name: &str,
    sub: Option<&str>,
    body: &[u8],
    dry: bool,
    manager: &str,
) -> Result<Response<Body>, ApiError> {
    let force = field_manager::force(ctx)?;
    let config = configuration(ctx, name, body)?;
    let exists = match cached_current(ctx, &key_for(ctx, name)) {
        Some(_) => true,
        None => read(ctx, name).await.is_ok(),
    };
    if !exists {
        if sub.is_some() {
            return Err(not_found(ctx, name));
        }
        // Apply creates: the configuration merged into nothing.
        let merged = field_manager::apply(ctx, None, &Value::Null, &config, manager, force)?;
        let obj = normalized(ctx, name, merged)?;
        return create_object(ctx, obj, Vec::new(), dry, Fields::Applied).await;
    }
    let policy = pod_security::namespace_policy(ctx.state, ctx.def, ctx.namespace).await?;
    let mut admission_warnings = Vec::new();
    let resp = guaranteed_update(
        ctx,
        name,
        dry,
        |cur| {
            let merged = field_manager::apply(ctx, sub, cur, &config, manager, force)?;
            let obj = normalized(ctx, name, merged)?;
            merge_checked(
                ctx,
                sub,
                Cow::Owned(obj),
                cur,
                policy.as_ref(),
                &mut admission_warnings,
                Fields::Applied,
            )
        },
        &[],
    )
    .await?;
    Ok(with_warnings(resp, &admission_warnings))
}
