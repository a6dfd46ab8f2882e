//! The request side of field ownership: who writes (the `fieldManager`
//! parameter, else the User-Agent), the patch options Kubernetes checks,
//! and `metadata.managedFields` kept on every create, update, patch and
//! apply (the logic itself is `orca_api::managed`).

use http::header;
use serde_json::{json, Value};

use orca_api::managed::{self, Managed, Writer};

use super::{now, Ctx};
use crate::server::q1;
use crate::status::ApiError;

/// Kubernetes' `FieldManagerMaxLength`.
const MAX_LEN: usize = 128;

fn invalid_options(kind: &str, reason: &str, field: &str, message: String) -> ApiError {
    ApiError::invalid(
        kind,
        "meta.k8s.io",
        "",
        vec![(reason.into(), field.into(), message)],
    )
}

/// The `fieldManager` parameter, checked as Kubernetes' option validation
/// does (at most 128 bytes, printable characters).
fn param(ctx: &Ctx<'_>, options: &str) -> Result<Option<String>, ApiError> {
    let Some(m) = q1(ctx.query, "fieldManager").filter(|m| !m.is_empty()) else {
        return Ok(None);
    };
    if m.len() > MAX_LEN {
        return Err(invalid_options(
            options,
            "FieldValueTooLong",
            "fieldManager",
            format!("Too long: may not be more than {MAX_LEN} bytes"),
        ));
    }
    if let Some((i, c)) = m.char_indices().find(|(_, c)| c.is_control()) {
        return Err(invalid_options(
            options,
            "FieldValueInvalid",
            "fieldManager",
            format!(
                "Invalid value: {m:?}: invalid character U+{:04X} (at position {i})",
                c as u32
            ),
        ));
    }
    Ok(Some(m.to_string()))
}

/// The manager of an update: the `fieldManager` parameter, else the
/// User-Agent up to its first '/' without unprintable characters (as
/// kube-apiserver's `managerOrUserAgent`).
pub(super) fn update_manager(ctx: &Ctx<'_>, options: &str) -> Result<String, ApiError> {
    if let Some(m) = param(ctx, options)? {
        return Ok(m);
    }
    let ua = ctx
        .headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mut out = String::new();
    for c in ua.split('/').next().unwrap_or("").chars() {
        if c.is_control() {
            continue;
        }
        if out.len() + c.len_utf8() > MAX_LEN {
            break;
        }
        out.push(c);
    }
    Ok(out)
}

/// The PatchOptions of a patch: an apply needs a manager, `force` is for
/// applies only. Answers the applier's name for an apply.
pub(super) fn patch_options(ctx: &Ctx<'_>, apply: bool) -> Result<Option<String>, ApiError> {
    let manager = param(ctx, "PatchOptions")?;
    if apply {
        return match manager {
            Some(m) => Ok(Some(m)),
            None => Err(invalid_options(
                "PatchOptions",
                "FieldValueRequired",
                "fieldManager",
                "Required value: is required for apply patch".into(),
            )),
        };
    }
    if ctx.query.contains_key("force") {
        return Err(invalid_options(
            "PatchOptions",
            "FieldValueForbidden",
            "force",
            "Forbidden: may not be specified for non-apply patch".into(),
        ));
    }
    Ok(None)
}

/// The `force` parameter of an apply.
pub(super) fn force(ctx: &Ctx<'_>) -> Result<bool, ApiError> {
    match q1(ctx.query, "force") {
        None | Some("") | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(ApiError::bad_request(format!(
            "invalid value for force: {other:?}"
        ))),
    }
}

fn has_status(ctx: &Ctx<'_>) -> bool {
    ctx.def.subresources.contains(&"status")
}

fn writer<'a>(api_version: &'a str, manager: &'a str, sub: Option<&'a str>) -> Writer<'a> {
    Writer {
        manager,
        api_version,
        subresource: sub.unwrap_or(""),
    }
}

/// Takes `metadata.managedFields` out of an object.
pub(super) fn take(obj: &mut Value) -> Option<Value> {
    obj["metadata"]
        .as_object_mut()
        .and_then(|m| m.remove("managedFields"))
}

fn put(obj: &mut Value, managed: &Managed) {
    let list = managed.encode();
    if let Some(m) = obj["metadata"].as_object_mut() {
        if list.as_array().is_some_and(|a| !a.is_empty()) {
            m.insert("managedFields".into(), list);
        } else {
            m.remove("managedFields");
        }
    }
}

/// Records a create of `obj` (prepared, without managedFields) by the
/// request's manager. `sent` is what the client sent as managedFields;
/// `admitted` what admission added, which the client does not own.
pub(super) fn record_create(
    ctx: &Ctx<'_>,
    obj: &mut Value,
    sent: Option<&Value>,
    admitted: &orca_api::fieldpath::Set,
) -> Result<(), ApiError> {
    let manager = update_manager(ctx, "CreateOptions")?;
    let api_version = ctx.def.api_version();
    let mut m = Managed::decode(sent).unwrap_or_default();
    let ignored = managed::ignored("", has_status(ctx)).union(admitted);
    managed::update(
        ctx.def.kind,
        &ignored,
        &mut m,
        &managed::zero_object(ctx.def.kind),
        obj,
        &writer(&api_version, &manager, None),
        &now(),
    );
    put(obj, &m);
    Ok(())
}

/// Records an update of `current` into `new` (prepared, without
/// managedFields) through `sub`. Managed fields the client sent replace
/// the stored ones on the main resource, as Kubernetes allows (kubectl's
/// migration from client-side apply relies on it).
pub(super) fn record_update(
    ctx: &Ctx<'_>,
    sub: Option<&str>,
    sent: Option<Value>,
    current: &Value,
    new: &mut Value,
) -> Result<(), ApiError> {
    let manager = update_manager(ctx, "UpdateOptions")?;
    let api_version = ctx.def.api_version();
    let from_client = sent
        .filter(|_| sub.is_none())
        .and_then(|s| Managed::decode(Some(&s)).ok())
        .filter(|m| !m.entries.is_empty());
    let mut m = match from_client {
        Some(m) => m,
        None => Managed::decode(current["metadata"].get("managedFields")).unwrap_or_default(),
    };
    // `current` still holds its managedFields, `new` not: that difference
    // is no one's (stripped), so `current` is compared as it is.
    managed::update(
        ctx.def.kind,
        &managed::ignored(sub.unwrap_or(""), has_status(ctx)),
        &mut m,
        current,
        new,
        &writer(&api_version, &manager, sub),
        &now(),
    );
    if sub == Some("scale") {
        // Kubernetes' scale subresource loses its writers' times.
        for e in &mut m.entries {
            if e.subresource == "scale" {
                e.time = None;
            }
        }
    }
    put(new, &m);
    Ok(())
}

/// Applies `config` by `manager` onto `live` (the zero object when the
/// apply creates): the merged object carrying its new managedFields, or
/// Kubernetes' 409 naming the conflicts.
pub(super) fn apply(
    ctx: &Ctx<'_>,
    sub: Option<&str>,
    live: &Value,
    config: &Value,
    manager: &str,
    force: bool,
) -> Result<Value, ApiError> {
    let api_version = ctx.def.api_version();
    let mut m = Managed::decode(live["metadata"].get("managedFields")).unwrap_or_default();
    // The merged object keeps the stored managedFields until `put`
    // replaces them.
    let result = managed::apply(
        ctx.def.kind,
        &managed::ignored(sub.unwrap_or(""), has_status(ctx)),
        &mut m,
        live,
        config,
        &writer(&api_version, manager, sub),
        force,
        &now(),
    );
    match result {
        Ok(mut obj) => {
            put(&mut obj, &m);
            Ok(obj)
        }
        Err(conflicts) => {
            let causes: Vec<Value> = conflicts
                .iter()
                .map(|c| {
                    json!({
                        "reason": "FieldManagerConflict",
                        "message": format!("conflict with {}", c.manager),
                        "field": c.path,
                    })
                })
                .collect();
            Err(
                ApiError::new(409, "Conflict", managed::conflict_message(&conflicts))
                    .with_details(json!({ "causes": causes })),
            )
        }
    }
}
