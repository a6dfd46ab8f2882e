//! The `scale` subresource (autoscaling/v1 Scale), for kinds whose strategy
//! has a scale view: reads show the desired and current replicas and the
//! pod selector; writes set the desired replicas and go through the
//! resource's own update rules (validation, a new generation), as
//! kube-apiserver's ScaleREST does. `kubectl scale` PATCHes it.

use super::write::merge_update;
use super::*;

const SCALE: (&str, &str) = ("autoscaling/v1", "Scale");
const SCALE_SCHEMA: &str = "io.k8s.api.autoscaling.v1.Scale";

/// The Scale of `obj`; replicas and selector left out when zero or empty,
/// as Kubernetes serialises them.
fn scale_of(ctx: &Ctx<'_>, obj: &Value) -> Result<Value, ApiError> {
    let view = ctx.def.strategy.scale(obj).ok_or_else(|| {
        ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    })?;
    let mut meta = serde_json::Map::new();
    for f in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if let Some(v) = obj["metadata"].get(f).filter(|v| !v.is_null()) {
            meta.insert(f.into(), v.clone());
        }
    }
    let mut spec = json!({});
    if view.desired != 0 {
        spec["replicas"] = json!(view.desired);
    }
    let mut status = json!({"replicas": view.current});
    if !view.selector.is_empty() {
        status["selector"] = json!(view.selector);
    }
    Ok(json!({
        "kind": SCALE.1,
        "apiVersion": SCALE.0,
        "metadata": meta,
        "spec": spec,
        "status": status,
    }))
}

fn normalize_scale(v: Value) -> Result<Value, String> {
    let typed: k8s_openapi::api::autoscaling::v1::Scale =
        serde_json::from_value(v).map_err(|e| e.to_string())?;
    serde_json::to_value(typed).map_err(|e| e.to_string())
}

pub async fn get_scale(ctx: &Ctx<'_>, name: &str) -> Result<Response<Body>, ApiError> {
    check_accept(ctx.headers)?;
    let (obj, _) = read(ctx, name).await?;
    Ok(object_response(200, ctx.headers, &scale_of(ctx, &obj)?))
}

pub async fn update_scale(
    ctx: &Ctx<'_>,
    name: &str,
    body: &[u8],
) -> Result<Response<Body>, ApiError> {
    let dry = dry_run(ctx.query, "UpdateOptions")?;
    let raw = decode_body(ctx.headers, body)?;
    let (scale, warnings) = admit_body(ctx, raw, SCALE.0, SCALE.1, SCALE_SCHEMA, normalize_scale)?;
    write_scale(ctx, name, dry, |_| Ok(scale.clone()), &warnings).await
}

pub async fn patch_scale(
    ctx: &Ctx<'_>,
    name: &str,
    body: &[u8],
) -> Result<Response<Body>, ApiError> {
    let dry = dry_run(ctx.query, "PatchOptions")?;
    let ct = content_type(ctx.headers);
    let kind = match PatchType::from_content_type(&ct) {
        Some(PatchType::Apply) | None => return Err(unsupported_media(&ct)),
        Some(k) => k,
    };
    let patch: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the patch is not valid JSON: {e}")))?;
    let apply = |current: &Value| {
        let patched =
            orca_api::patch::apply(SCALE.1, current, kind, &patch).map_err(|e| match e {
                PatchError::Malformed(m) => ApiError::bad_request(m),
                PatchError::Conflict(m) => ApiError::new(
                    422,
                    "Invalid",
                    format!("the patch could not be applied to the scale of \"{name}\": {m}"),
                ),
            })?;
        normalize_scale(patched).map_err(|e| {
            ApiError::new(
                422,
                "Invalid",
                format!("Scale \"{name}\" is invalid after the patch: {e}"),
            )
        })
    };
    write_scale(ctx, name, dry, apply, &[]).await
}

/// Sets the object's replicas from the Scale `make` builds out of the
/// current one, and answers with the new Scale.
async fn write_scale(
    ctx: &Ctx<'_>,
    name: &str,
    dry: bool,
    make: impl Fn(&Value) -> Result<Value, ApiError>,
    warnings: &[String],
) -> Result<Response<Body>, ApiError> {
    let outcome = guaranteed_write(ctx, name, dry, |cur| {
        let scale = make(&scale_of(ctx, cur)?)?;
        let scale_name = name_of(&scale);
        if scale_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({scale_name}) does not match the name on the URL ({name})"
            )));
        }
        let typed: k8s_openapi::api::autoscaling::v1::Scale = serde_json::from_value(scale.clone())
            .map_err(|e| ApiError::bad_request(format!("cannot decode the Scale: {e}")))?;
        let mut errs = orca_api::validation::validate_scale(&typed);
        // The Scale's namespace is the object's, whatever the body says.
        errs.retain(|e| e.field != "metadata.namespace");
        if !errs.is_empty() {
            let status = orca_api::validation::invalid_status("autoscaling", "Scale", name, &errs);
            return Err(ApiError::new(
                422,
                "Invalid",
                orca_api::validation::invalid_message("autoscaling", "Scale", name, &errs),
            )
            .with_details(status["details"].clone()));
        }
        let pinned = match scale["metadata"]["resourceVersion"].as_str() {
            Some(rv) if !rv.is_empty() => {
                if Some(rv) != cur["metadata"]["resourceVersion"].as_str() {
                    return Err(ApiError::modified(ctx.def.name, ctx.def.group, name));
                }
                true
            }
            _ => false,
        };
        let replicas = typed.spec.and_then(|s| s.replicas).unwrap_or(0);
        let mut new = cur.clone();
        ctx.def.strategy.set_replicas(&mut new, replicas);
        let (write, _) = merge_update(ctx, Some("scale"), Cow::Owned(new), cur)?;
        Ok((write, pinned))
    })
    .await?;
    let obj = match outcome {
        Outcome::Stored { mut obj, kv } => {
            set_rv(&mut obj, kv.mod_revision);
            ctx.state.cache.wait_for(kv.mod_revision).await;
            obj
        }
        Outcome::Removed { obj, .. } | Outcome::Answer(obj) => obj,
    };
    Ok(with_warnings(
        object_response(200, ctx.headers, &scale_of(ctx, &obj)?),
        warnings,
    ))
}
