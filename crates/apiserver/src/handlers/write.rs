use super::field_manager;
use super::*;
use crate::auth::admission::Op;
use crate::pod_security;

/// Admission that depends on the caller: NodeRestriction, then the
/// resource's own checks (RBAC escalation) on its main resource.
pub(super) fn admission(
    ctx: &Ctx<'_>,
    sub: Option<&str>,
    op: Op,
    old: Option<&Value>,
    new: &Value,
) -> Result<(), ApiError> {
    crate::auth::admission::node_restriction(ctx.user, ctx.def, sub, op, old, new)?;
    if op != Op::Delete {
        ctx.def.strategy.authorize_write(ctx, sub, new, old)?;
    }
    Ok(())
}

// Writes
const GENERATE_CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

fn generate_suffix() -> String {
    (0..5)
        .map(|_| GENERATE_CHARS[rand::random_range(0..GENERATE_CHARS.len())] as char)
        .collect()
}

async fn namespace_usable(ctx: &Ctx<'_>, ns: &str) -> Result<(), ApiError> {
    let nsdef = crate::resources::namespaces();
    let key = nsdef.key(None, ns);
    // The cache's field summary of a namespace carries its phase.
    let phase = match ctx.state.cache.resource(nsdef).get(&key) {
        Some(o) => Some(
            o.meta
                .fields
                .get("status.phase")
                .unwrap_or_default()
                .to_string(),
        ),
        None => ctx
            .state
            .store
            .get(&key)
            .await?
            .and_then(|kv| serde_json::from_slice::<Value>(&kv.value).ok())
            .map(|v| {
                v["status"]["phase"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            }),
    };
    match phase {
        None => Err(ApiError::not_found("namespaces", "", ns)),
        Some(p) if p == "Terminating" => Err(ApiError::forbidden(format!(
            "{} is forbidden: unable to create new content in namespace {ns} because it is being terminated",
            ctx.def.name
        ))
        .with_details(json!({"name": ns, "kind": "namespaces"}))),
        Some(_) => Ok(()),
    }
}

/// How a write's managedFields come about.
pub(super) enum Fields {
    /// Recorded as an update by the request's manager.
    Update,
    /// Already computed (a server-side apply).
    Applied,
}

pub async fn create(ctx: &Ctx<'_>, body: &[u8]) -> Result<Response<Body>, ApiError> {
    let dry = dry_run(ctx.query, "CreateOptions")?;
    let raw = decode_body(ctx.headers, body)?;
    let (v, warnings) = admit_body(
        ctx,
        raw,
        &ctx.def.api_version(),
        ctx.def.kind,
        ctx.def.schema,
        ctx.def.normalize,
    )?;
    create_object(ctx, v, warnings, dry, Fields::Update).await
}

/// Creates `v` (decoded and checked against the schema): namespace, name,
/// admission, defaults, validation, then the store.
pub(super) async fn create_object(
    ctx: &Ctx<'_>,
    mut v: Value,
    mut warnings: Vec<String>,
    dry: bool,
    fields: Fields,
) -> Result<Response<Body>, ApiError> {
    if let Some(answer) = ctx.def.strategy.answer(ctx, v.clone()).await {
        // Reviews have no table form (their storage has no TableConvertor in
        // kube-apiserver): a client that accepts only a Table gets a 406.
        if only_tables(ctx.headers) {
            return Err(super::not_acceptable(&super::accept(ctx.headers)));
        }
        // Reviews are answered, never stored: a dry run answers the same.
        return Ok(with_warnings(
            object_response(201, ctx.headers, &answer?),
            &warnings,
        ));
    }
    if ctx.def.namespaced {
        let ns = ctx.namespace.ok_or_else(|| {
            ApiError::method_not_allowed(format!(
                "{} must be created in a namespace: POST to /api/v1/namespaces/NAMESPACE/{}",
                ctx.def.name, ctx.def.name
            ))
        })?;
        match v["metadata"]["namespace"].as_str() {
            Some(n) if !n.is_empty() && n != ns => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ))
            }
            _ => v["metadata"]["namespace"] = json!(ns),
        }
        namespace_usable(ctx, ns).await?;
    } else if let Some(m) = v["metadata"].as_object_mut() {
        m.remove("namespace");
    }
    let generate = v["metadata"]["generateName"]
        .as_str()
        .unwrap_or("")
        .to_string();
    if name_of(&v).is_empty() && generate.is_empty() {
        return Err(ApiError::invalid(
            ctx.def.kind,
            ctx.def.group,
            "",
            vec![(
                "FieldValueRequired".into(),
                "metadata.name".into(),
                "name or generateName is required".into(),
            )],
        ));
    }
    let before_admission = v.clone();
    ctx.def.strategy.admit_create(ctx.state, &mut v).await?;
    // What admission adds (a pod's service account volume) is nobody's.
    let mut admitted = if v == before_admission {
        orca_api::fieldpath::Set::new()
    } else {
        let c = orca_api::managed::compare(ctx.def.kind, &before_admission, &v);
        c.added.union(&c.modified)
    };
    for path in ctx.def.strategy.admitted_fields() {
        if path
            .iter()
            .try_fold(&before_admission, |v, f| v.get(*f))
            .is_none()
        {
            admitted.insert(&orca_api::fieldpath::fields(path));
        }
    }
    drop(before_admission);
    let policy = pod_security::namespace_policy(ctx.state, ctx.def, ctx.namespace).await?;
    let body_warnings = warnings.len();
    let sent_fields = match fields {
        Fields::Update => field_manager::take(&mut v),
        Fields::Applied => None,
    };
    // System fields are the server's to set.
    if let Some(m) = v["metadata"].as_object_mut() {
        m.remove("resourceVersion");
        m.remove("deletionTimestamp");
        m.remove("deletionGracePeriodSeconds");
        m.remove("selfLink");
        m.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
        m.insert("creationTimestamp".into(), json!(now()));
    }
    for attempt in 0..5 {
        let mut obj = v.clone();
        if name_of(&obj).is_empty() || (attempt > 0 && !generate.is_empty()) {
            obj["metadata"]["name"] = json!(format!("{generate}{}", generate_suffix()));
        }
        let strategy = ctx.def.strategy;
        strategy.set_requester(ctx.user, &mut obj);
        strategy.begin_create(ctx.state, &mut obj, dry).await?;
        let admitted = strategy
            .prepare_create(ctx.def, &mut obj)
            .and_then(|()| match fields {
                Fields::Update => {
                    field_manager::record_create(ctx, &mut obj, sent_fields.as_ref(), &admitted)
                }
                Fields::Applied => Ok(()),
            })
            .and_then(|()| admission(ctx, None, Op::Create, None, &obj))
            .and_then(|()| {
                pod_security::admit(ctx.state, ctx.def, None, policy.as_ref(), &obj, None)
            });
        if let Err(e) = admitted.map(|found| {
            warnings.truncate(body_warnings);
            warnings.extend(found);
        }) {
            if !dry {
                strategy.finish_create(ctx.state, &obj, false).await;
            }
            return Err(e);
        }
        let name = name_of(&obj).to_string();
        if dry {
            return Ok(with_warnings(
                object_response(201, ctx.headers, &obj),
                &warnings,
            ));
        }
        let key = key_for(ctx, &name);
        let bytes = match storage_bytes(&mut obj) {
            Ok(b) => b,
            Err(e) => {
                strategy.finish_create(ctx.state, &obj, false).await;
                return Err(e);
            }
        };
        let result = ctx.state.store.create(&key, bytes).await;
        strategy
            .finish_create(ctx.state, &obj, result.is_ok())
            .await;
        match result {
            Ok(kv) => return Ok(stored(ctx, 201, &mut obj, &kv, &warnings).await),
            Err(orca_store::Error::AlreadyExists(_))
                if !generate.is_empty() && name_of(&v).is_empty() =>
            {
                continue
            }
            Err(orca_store::Error::AlreadyExists(_)) => {
                return Err(ApiError::already_exists(ctx.def.name, ctx.def.group, &name))
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::new(
        500,
        "AlreadyExists",
        format!("could not generate a unique name from generateName {generate:?}; try again"),
    ))
}

/// What a read-modify-write did.
pub(super) enum Outcome {
    /// A new version was stored.
    Stored {
        obj: Value,
        kv: orca_store::KeyValue,
    },
    /// The object was removed at revision `rev` (`obj` its last version).
    Removed { obj: Value, rev: Revision },
    /// Nothing changed, or a dry run: `obj` is the current or would-be
    /// version.
    Answer(Value),
}

/// The usual response to an outcome: the object as it now is.
pub(super) async fn respond(
    ctx: &Ctx<'_>,
    outcome: Outcome,
    warnings: &[String],
) -> Response<Body> {
    match outcome {
        Outcome::Stored { mut obj, kv } => stored(ctx, 200, &mut obj, &kv, warnings).await,
        Outcome::Removed { obj, rev } => written(ctx, 200, &obj, rev, warnings).await,
        Outcome::Answer(obj) => with_warnings(object_response(200, ctx.headers, &obj), warnings),
    }
}

/// Read-modify-write with compare-and-swap, retried on conflicts unless the
/// caller pinned a resourceVersion; answers with the object.
pub(super) async fn guaranteed_update<F>(
    ctx: &Ctx<'_>,
    name: &str,
    dry: bool,
    f: F,
    warnings: &[String],
) -> Result<Response<Body>, ApiError>
where
    F: FnMut(&Value) -> Result<(Write, bool), ApiError>,
{
    let outcome = guaranteed_write(ctx, name, dry, f).await?;
    Ok(respond(ctx, outcome, warnings).await)
}

/// The read-modify-write behind [`guaranteed_update`], for callers that
/// answer with something else than the object.
pub(super) async fn guaranteed_write<F>(
    ctx: &Ctx<'_>,
    name: &str,
    dry: bool,
    mut f: F,
) -> Result<Outcome, ApiError>
where
    F: FnMut(&Value) -> Result<(Write, bool), ApiError>,
{
    let key = key_for(ctx, name);
    for attempt in 0..16 {
        // The first try starts from the watch cache, as kube-apiserver's
        // GuaranteedUpdate does: the write is a compare-and-swap on the
        // revision read, so a stale copy cannot be written over. Anything
        // but a successful write from a cached copy (a conflict, an error or
        // "nothing to change" decided on old data) is redone from the store.
        let cached = if attempt == 0 && !dry {
            cached_current(ctx, &key)
        } else {
            None
        };
        let from_cache = cached.is_some();
        let (current, rev) = match cached {
            Some(c) => c,
            None => read(ctx, name).await?,
        };
        let (write, pinned) = match f(&current) {
            Ok(w) => w,
            Err(_) if from_cache => continue,
            Err(e) => return Err(e),
        };
        match write {
            Write::Unchanged if from_cache => continue,
            Write::Unchanged => return Ok(Outcome::Answer(current)),
            Write::Update(mut new) => {
                let strategy = ctx.def.strategy;
                match strategy
                    .begin_update(ctx.state, &mut new, &current, dry)
                    .await
                {
                    Ok(()) => {}
                    // Decided on a cached copy that may be stale.
                    Err(_) if from_cache => continue,
                    Err(e) => return Err(e),
                }
                if dry {
                    return Ok(Outcome::Answer(new));
                }
                // An object being deleted whose last finalizer went away is
                // removed (pods only once their grace period is over).
                if strategy.finished_deleting(&new) {
                    strategy
                        .finish_update(ctx.state, &new, &current, false)
                        .await;
                    match remove(ctx, &key, name, rev).await {
                        Err(e) if e.code == 409 && from_cache => continue,
                        other => return other,
                    }
                }
                let result = match storage_bytes(&mut new) {
                    Ok(bytes) => ctx.state.store.update(&key, bytes, rev).await,
                    Err(e) => {
                        strategy
                            .finish_update(ctx.state, &new, &current, false)
                            .await;
                        return Err(e);
                    }
                };
                strategy
                    .finish_update(ctx.state, &new, &current, result.is_ok())
                    .await;
                match result {
                    Ok(kv) => return Ok(Outcome::Stored { obj: new, kv }),
                    Err(orca_store::Error::Conflict { .. } | orca_store::Error::NotFound(_))
                        if from_cache =>
                    {
                        continue
                    }
                    Err(orca_store::Error::Conflict { .. }) if !pinned => continue,
                    Err(orca_store::Error::Conflict { .. }) => {
                        return Err(ApiError::modified(ctx.def.name, ctx.def.group, name))
                    }
                    Err(orca_store::Error::NotFound(_)) => return Err(not_found(ctx, name)),
                    Err(e) => return Err(e.into()),
                }
            }
            Write::Remove => {
                if dry {
                    return Ok(Outcome::Answer(current));
                }
                match remove(ctx, &key, name, rev).await {
                    Err(e) if e.code == 409 && (from_cache || !pinned) => continue,
                    other => return other,
                }
            }
        }
    }
    Err(ApiError::new(
        409,
        "Conflict",
        format!(
            "{} \"{name}\" is being changed too often to update it; try again",
            ctx.def.name
        ),
    ))
}

async fn remove(ctx: &Ctx<'_>, key: &str, name: &str, rev: Revision) -> Result<Outcome, ApiError> {
    match ctx.state.store.delete(key, Some(rev)).await {
        Ok((kv, del_rev)) => {
            let mut obj = cache::decode_with_rv(&kv.value, del_rev).unwrap_or(Value::Null);
            ctx.def.strategy.after_remove(ctx.state, &obj).await;
            set_rv(&mut obj, del_rev);
            Ok(Outcome::Removed { obj, rev: del_rev })
        }
        Err(orca_store::Error::Conflict { .. }) => {
            Err(ApiError::modified(ctx.def.name, ctx.def.group, name))
        }
        Err(orca_store::Error::NotFound(_)) => Err(not_found(ctx, name)),
        Err(e) => Err(e.into()),
    }
}

/// Whether two objects are equal but for metadata.resourceVersion (compared
/// in place: cloning two whole objects cost more than the comparison).
fn same_ignoring_rv(a: &Value, b: &Value) -> bool {
    fn same_except(
        a: &serde_json::Map<String, Value>,
        b: &serde_json::Map<String, Value>,
        skip: &str,
        same: impl Fn(&str, &Value, &Value) -> bool,
    ) -> bool {
        let count = |m: &serde_json::Map<String, Value>| m.keys().filter(|k| *k != skip).count();
        count(a) == count(b)
            && a.iter()
                .filter(|(k, _)| *k != skip)
                .all(|(k, va)| b.get(k).is_some_and(|vb| same(k, va, vb)))
    }
    match (a.as_object(), b.as_object()) {
        (Some(a), Some(b)) => same_except(a, b, "", |k, va, vb| {
            match (k, va.as_object(), vb.as_object()) {
                ("metadata", Some(ma), Some(mb)) => {
                    same_except(ma, mb, "resourceVersion", |_, x, y| x == y)
                }
                _ => va == vb,
            }
        }),
        _ => a == b,
    }
}

/// Sets `metadata.<field>` of `new` to the current object's (absent if
/// absent there): fields that only the server changes.
fn restore(new: &mut Value, current: &Value, field: &str) {
    match current["metadata"].get(field) {
        Some(x) => new["metadata"][field] = x.clone(),
        None => {
            if let Some(m) = new["metadata"].as_object_mut() {
                m.remove(field);
            }
        }
    }
}

/// Builds the new stored version from a client's full object, borrowed
/// when the caller may need it again (a retried PUT), owned otherwise.
pub(super) fn merge_update(
    ctx: &Ctx<'_>,
    sub: Option<&str>,
    new: Cow<'_, Value>,
    current: &Value,
) -> Result<(Write, bool), ApiError> {
    merge_update_with(ctx, sub, new, current, Fields::Update)
}

/// [`merge_update`] with the managedFields as `fields` says.
pub(super) fn merge_update_with(
    ctx: &Ctx<'_>,
    sub: Option<&str>,
    new: Cow<'_, Value>,
    current: &Value,
    fields: Fields,
) -> Result<(Write, bool), ApiError> {
    let name = name_of(current).to_string();
    let pinned = match new["metadata"]["resourceVersion"].as_str() {
        Some(rv) if !rv.is_empty() => {
            if Some(rv) != current["metadata"]["resourceVersion"].as_str() {
                return Err(ApiError::modified(ctx.def.name, ctx.def.group, &name));
            }
            true
        }
        _ => false,
    };
    // `approval` (certificate requests) is a status writer too.
    let status_only = matches!(sub, Some("status" | "approval"));
    let mut new = if status_only {
        // Kubernetes' status strategies: through /status the stored spec
        // stays, while the status and metadata such as labels and
        // annotations change as in an update.
        let mut out = current.clone();
        for part in ["metadata", "status"] {
            out[part] = new.get(part).cloned().unwrap_or_default();
        }
        out
    } else if let Some(s) = sub.filter(|s| !ctx.def.strategy.derived_subresources().contains(s)) {
        ctx.def
            .strategy
            .prepare_subresource_update(ctx.def, s, &new, current)
            .unwrap_or_else(|| {
                Err(ApiError::method_not_allowed(format!(
                    "the server does not allow this method on the requested resource: {}/{s}",
                    ctx.def.name
                )))
            })?
    } else {
        let mut new = new.into_owned();
        // Status has its own subresource for kinds that have one.
        if ctx.def.subresources.contains(&"status") {
            new["status"] = current["status"].clone();
        }
        new
    };
    for f in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "namespace",
        "generation",
    ] {
        restore(&mut new, current, f);
    }
    let managed = field_manager::take(&mut new);
    if let Some(m) = new["metadata"].as_object_mut() {
        m.remove("selfLink");
    }
    new["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"].clone();
    if status_only {
        ctx.def
            .strategy
            .prepare_status_update(ctx.def, &mut new, current)?;
    } else {
        if sub.is_none() {
            ctx.def
                .strategy
                .prepare_update(ctx.def, &mut new, current)?;
        }
        // Judged after defaulting, so a client that leaves out defaulted
        // fields does not start a new generation.
        if ctx.def.strategy.bumps_generation(&new, current) {
            let g = current["metadata"]["generation"].as_i64().unwrap_or(1);
            new["metadata"]["generation"] = json!(g + 1);
        }
    }
    match fields {
        Fields::Update => field_manager::record_update(ctx, sub, managed, current, &mut new)?,
        Fields::Applied => {
            if let (Some(list), Some(m)) = (managed, new["metadata"].as_object_mut()) {
                m.insert("managedFields".into(), list);
            }
        }
    }
    if same_ignoring_rv(&new, current) {
        return Ok((Write::Unchanged, pinned));
    }
    admission(ctx, sub, Op::Update, Some(current), &new)?;
    Ok((Write::Update(new), pinned))
}

/// [`merge_update`], then PodSecurity admission of what would be written
/// (`policy` is the namespace's): its warnings replace `warnings`.
pub(super) fn merge_checked(
    ctx: &Ctx<'_>,
    sub: Option<&str>,
    new: Cow<'_, Value>,
    current: &Value,
    policy: Option<&pod_security::Policy>,
    warnings: &mut Vec<String>,
    fields: Fields,
) -> Result<(Write, bool), ApiError> {
    let (write, pinned) = merge_update_with(ctx, sub, new, current, fields)?;
    warnings.clear();
    if let Write::Update(obj) = &write {
        *warnings = pod_security::admit(ctx.state, ctx.def, sub, policy, obj, Some(current))?;
    }
    Ok((write, pinned))
}

pub async fn update(
    ctx: &Ctx<'_>,
    name: &str,
    sub: Option<&str>,
    body: &[u8],
) -> Result<Response<Body>, ApiError> {
    let dry = dry_run(ctx.query, "UpdateOptions")?;
    let raw = decode_body(ctx.headers, body)?;
    let (new, warnings) = admit_body(
        ctx,
        raw,
        &ctx.def.api_version(),
        ctx.def.kind,
        ctx.def.schema,
        ctx.def.normalize,
    )?;
    let body_name = name_of(&new);
    if body_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    if let (Some(ns), Some(bns)) = (ctx.namespace, new["metadata"]["namespace"].as_str()) {
        if !bns.is_empty() && bns != ns {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
    }
    let policy = pod_security::namespace_policy(ctx.state, ctx.def, ctx.namespace).await?;
    let mut admission_warnings = Vec::new();
    let resp = guaranteed_update(
        ctx,
        name,
        dry,
        |cur| {
            merge_checked(
                ctx,
                sub,
                Cow::Borrowed(&new),
                cur,
                policy.as_ref(),
                &mut admission_warnings,
                Fields::Update,
            )
        },
        &warnings,
    )
    .await?;
    Ok(with_warnings(resp, &admission_warnings))
}

pub async fn patch(
    ctx: &Ctx<'_>,
    name: &str,
    sub: Option<&str>,
    body: &[u8],
) -> Result<Response<Body>, ApiError> {
    let dry = dry_run(ctx.query, "PatchOptions")?;
    let ct = content_type(ctx.headers);
    let kind = match PatchType::from_content_type(&ct) {
        // CBOR is an alpha, off by default, in Kubernetes 1.32.
        Some(k) if ct != "application/apply-patch+cbor" => k,
        _ => return Err(unsupported_media(&ct)),
    };
    if let Some(manager) = field_manager::patch_options(ctx, kind == PatchType::Apply)? {
        return super::apply::apply(ctx, name, sub, body, dry, &manager).await;
    }
    let patch: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the patch is not valid JSON: {e}")))?;
    let mode = validation_mode(ctx.query)?;
    let policy = pod_security::namespace_policy(ctx.state, ctx.def, ctx.namespace).await?;
    let mut warnings = Vec::new();
    let mut admission_warnings = Vec::new();
    let resp = guaranteed_update(
        ctx,
        name,
        dry,
        |cur| {
            let patched =
                orca_api::patch::apply(ctx.def.kind, cur, kind, &patch).map_err(|e| match e {
                    PatchError::Malformed(m) => ApiError::bad_request(m),
                    PatchError::Conflict(m) => ApiError::new(
                        422,
                        "Invalid",
                        format!(
                            "the patch could not be applied to {} \"{name}\": {m}",
                            ctx.def.name
                        ),
                    ),
                })?;
            // Unknown fields are judged on the result, then the typed round
            // trip normalises it as for a PUT.
            let unknown = if mode == Validation::Ignore {
                vec![]
            } else {
                crate::openapi::unknown_fields(ctx.def.schema, &patched)
            };
            if !unknown.is_empty() && mode == Validation::Strict {
                let msgs: Vec<String> = unknown
                    .iter()
                    .map(|f| format!("unknown field \"{f}\""))
                    .collect();
                return Err(ApiError::bad_request(format!(
                    "strict decoding error: {}",
                    msgs.join(", ")
                )));
            }
            let normalized = (ctx.def.normalize)(patched).map_err(|e| {
                ApiError::new(
                    422,
                    "Invalid",
                    format!(
                        "{} \"{name}\" is invalid after the patch: {e}",
                        ctx.def.kind
                    ),
                )
            })?;
            if name_of(&normalized) != name {
                return Err(ApiError::bad_request(
                    "the patch may not change metadata.name",
                ));
            }
            // The patched object carries the current resourceVersion, so it
            // is pinned only when the patch itself names one; otherwise a
            // concurrent write is retried, as Kubernetes does.
            let (w, _) = merge_checked(
                ctx,
                sub,
                Cow::Owned(normalized),
                cur,
                policy.as_ref(),
                &mut admission_warnings,
                Fields::Update,
            )?;
            let pinned = patch["metadata"]["resourceVersion"]
                .as_str()
                .is_some_and(|rv| !rv.is_empty());
            warnings = unknown
                .iter()
                .map(|f| format!("unknown field \"{f}\""))
                .collect();
            Ok((w, pinned))
        },
        &[],
    )
    .await?;
    warnings.extend(admission_warnings);
    Ok(with_warnings(resp, &warnings))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sameness_ignores_only_the_resource_version() {
        let a = json!({"kind": "Pod", "metadata": {"name": "a", "resourceVersion": "1"}, "spec": {"x": 1}});
        let same = json!({"kind": "Pod", "metadata": {"name": "a", "resourceVersion": "9"}, "spec": {"x": 1}});
        let no_rv = json!({"kind": "Pod", "metadata": {"name": "a"}, "spec": {"x": 1}});
        assert!(same_ignoring_rv(&a, &same));
        assert!(same_ignoring_rv(&a, &no_rv));
        assert!(same_ignoring_rv(&no_rv, &a));
        let relabeled =
            json!({"kind": "Pod", "metadata": {"name": "a", "labels": {}}, "spec": {"x": 1}});
        assert!(!same_ignoring_rv(&a, &relabeled));
        assert!(!same_ignoring_rv(&relabeled, &a));
        let respec = json!({"kind": "Pod", "metadata": {"name": "a"}, "spec": {"x": 2}});
        assert!(!same_ignoring_rv(&a, &respec));
        let extra =
            json!({"kind": "Pod", "metadata": {"name": "a"}, "spec": {"x": 1}, "status": {}});
        assert!(!same_ignoring_rv(&a, &extra));
        assert!(!same_ignoring_rv(&extra, &a));
    }

    #[test]
    fn stored_bytes_leave_out_the_resource_version_and_keep_the_object() {
        let mut v = json!({"metadata": {"name": "a", "resourceVersion": "7"}, "spec": {}});
        let bytes = storage_bytes(&mut v).unwrap();
        let stored: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(stored, json!({"metadata": {"name": "a"}, "spec": {}}));
        assert_eq!(v["metadata"]["resourceVersion"], "7");
    }
}
