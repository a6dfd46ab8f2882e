use super::*;
use crate::registry::GcPolicy;

#[derive(Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeleteOptions {
    grace_period_seconds: Option<i64>,
    propagation_policy: Option<String>,
    preconditions: Option<Preconditions>,
    dry_run: Option<Vec<String>>,
    orphan_dependents: Option<bool>,
    /// `dryRun` from the body, or from the query when the body has none.
    #[serde(skip)]
    dry: bool,
}

#[derive(Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Preconditions {
    uid: Option<String>,
    resource_version: Option<String>,
}

fn delete_options(ctx: &Ctx<'_>, body: &[u8]) -> Result<DeleteOptions, ApiError> {
    let mut o: DeleteOptions = if body.iter().all(u8::is_ascii_whitespace) {
        DeleteOptions::default()
    } else {
        let v = decode_body(ctx.headers, body)?;
        serde_json::from_value(v)
            .map_err(|e| ApiError::bad_request(format!("invalid DeleteOptions: {e}")))?
    };
    if let Some(g) = parse_num::<i64>(ctx.query, "gracePeriodSeconds")? {
        o.grace_period_seconds = Some(g);
    }
    if let Some(p) = q1(ctx.query, "propagationPolicy") {
        o.propagation_policy = Some(p.to_string());
    }
    if let Some(v) = q1(ctx.query, "orphanDependents") {
        o.orphan_dependents = Some(v == "true");
    }
    // kube-apiserver's ValidateDeleteOptions.
    let mut causes = Vec::new();
    if let (Some(p), Some(_)) = (&o.propagation_policy, o.orphan_dependents) {
        causes.push((
            "FieldValueInvalid".to_string(),
            "propagationPolicy".to_string(),
            format!(
                "Invalid value: {p:?}: orphanDependents and deletionPropagation cannot be both set"
            ),
        ));
    }
    if let Some(p) = &o.propagation_policy {
        if !matches!(p.as_str(), "Orphan" | "Background" | "Foreground") {
            causes.push((
                "FieldValueNotSupported".to_string(),
                "propagationPolicy".to_string(),
                format!("Unsupported value: {p:?}: supported values: \"Foreground\", \"Background\", \"Orphan\", \"nil\""),
            ));
        }
    }
    if !causes.is_empty() {
        return Err(ApiError::invalid(
            "DeleteOptions",
            "meta.k8s.io",
            "",
            causes,
        ));
    }
    if let Some(g) = o.grace_period_seconds {
        if g < 0 {
            return Err(ApiError::bad_request(
                "gracePeriodSeconds must be 0 or more",
            ));
        }
    }
    // kubectl sends dryRun in the body; other clients in the query.
    let dry_values = o
        .dry_run
        .as_deref()
        .or(ctx.query.get("dryRun").map(Vec::as_slice));
    o.dry = dry_run_values(dry_values, "DeleteOptions")?;
    Ok(o)
}

fn delete_decision(
    ctx: &Ctx<'_>,
    opts: &DeleteOptions,
    cur: &Value,
) -> Result<(Write, bool), ApiError> {
    let name = name_of(cur).to_string();
    let md = &cur["metadata"];
    if let Some(p) = &opts.preconditions {
        if let Some(uid) = &p.uid {
            if md["uid"].as_str() != Some(uid) {
                return Err(ApiError::conflict(
                    ctx.def.name,
                    ctx.def.group,
                    &name,
                    &format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                        md["uid"].as_str().unwrap_or("")
                    ),
                ));
            }
        }
        if let Some(rv) = &p.resource_version {
            if md["resourceVersion"].as_str() != Some(rv) {
                return Err(ApiError::conflict(ctx.def.name, ctx.def.group, &name, &format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                    md["resourceVersion"].as_str().unwrap_or("")
                )));
            }
        }
    }
    let pinned = opts
        .preconditions
        .as_ref()
        .is_some_and(|p| p.resource_version.is_some());
    super::write::admission(ctx, None, crate::auth::admission::Op::Delete, None, cur)?;
    let marked = gc_finalizers(ctx.def.strategy.default_gc_policy(), opts, cur);
    let write = ctx
        .def
        .strategy
        .delete(opts.grace_period_seconds, marked.as_ref().unwrap_or(cur))?;
    let write = match (write, marked) {
        // Already being deleted, but asked to treat the dependents
        // differently: the finalizers change.
        (Write::Unchanged, Some(new)) => Write::Update(new),
        (w, _) => w,
    };
    Ok((write, pinned))
}

const ORPHAN: &str = "orphan";
const FOREGROUND: &str = "foregroundDeletion";

/// kube-apiserver's `deletionFinalizersForGarbageCollection`: the object
/// with the garbage collector's finalizers set as the options (else its
/// finalizers, else its kind's default) ask, or None when they stay as
/// they are. `orphan` makes the collector drop the dependents' references
/// to it first; `foregroundDeletion` makes it delete them first.
fn gc_finalizers(policy: GcPolicy, opts: &DeleteOptions, cur: &Value) -> Option<Value> {
    if policy == GcPolicy::Unsupported {
        return None;
    }
    let existing: Vec<String> = cur["metadata"]["finalizers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f.as_str().map(str::to_string))
        .collect();
    let has = |f: &str| existing.iter().any(|e| e == f);
    let explicit = match (opts.orphan_dependents, opts.propagation_policy.as_deref()) {
        (Some(orphan), _) => Some((orphan, false)),
        (None, Some("Orphan")) => Some((true, false)),
        (None, Some("Foreground")) => Some((false, true)),
        (None, Some(_)) => Some((false, false)),
        (None, None) => None,
    };
    let (orphan, foreground) = explicit.unwrap_or_else(|| {
        if has(ORPHAN) {
            (true, false)
        } else if has(FOREGROUND) {
            (false, true)
        } else {
            (policy == GcPolicy::OrphanDependents, false)
        }
    });
    let mut finalizers: Vec<String> = existing
        .iter()
        .filter(|f| *f != ORPHAN && *f != FOREGROUND)
        .cloned()
        .collect();
    if orphan {
        finalizers.push(ORPHAN.into());
    }
    if foreground {
        finalizers.push(FOREGROUND.into());
    }
    let same = finalizers.len() == existing.len() && finalizers.iter().all(|f| has(f));
    if same {
        return None;
    }
    let mut new = cur.clone();
    if finalizers.is_empty() {
        if let Some(m) = new["metadata"].as_object_mut() {
            m.remove("finalizers");
        }
    } else {
        new["metadata"]["finalizers"] = json!(finalizers);
    }
    if !finalizers.is_empty() && new["metadata"]["deletionTimestamp"].is_null() {
        new["metadata"]["deletionTimestamp"] = json!(now());
        new["metadata"]["deletionGracePeriodSeconds"] = json!(0);
    }
    Some(new)
}

/// The answer to a DELETE: the object, or for kinds that do not return
/// it, a `Status` naming what was removed (kube-apiserver's answer).
async fn delete_response(ctx: &Ctx<'_>, outcome: Outcome) -> Response<Body> {
    let removed = match &outcome {
        Outcome::Removed { obj, .. } => Some(obj),
        Outcome::Answer(obj) if obj["metadata"]["deletionTimestamp"].is_null() => Some(obj),
        _ => None,
    };
    match removed {
        Some(obj) if !ctx.def.strategy.returns_deleted_object() => {
            let mut details = json!({"name": obj["metadata"]["name"], "kind": ctx.def.name});
            if !ctx.def.group.is_empty() {
                details["group"] = json!(ctx.def.group);
            }
            details["uid"] = obj["metadata"]["uid"].clone();
            if let Outcome::Removed { rev, .. } = outcome {
                ctx.state.cache.wait_for(rev).await;
            }
            json_response(200, &success_status(Some(details)))
        }
        _ => respond(ctx, outcome, &[]).await,
    }
}

pub async fn delete(ctx: &Ctx<'_>, name: &str, body: &[u8]) -> Result<Response<Body>, ApiError> {
    let opts = delete_options(ctx, body)?;
    let outcome =
        guaranteed_write(ctx, name, opts.dry, |cur| delete_decision(ctx, &opts, cur)).await?;
    if !opts.dry {
        ctx.def.strategy.after_delete(ctx.state, name);
    }
    Ok(delete_response(ctx, outcome).await)
}

pub async fn delete_collection(ctx: &Ctx<'_>, body: &[u8]) -> Result<Response<Body>, ApiError> {
    let opts = delete_options(ctx, body)?;
    let filter = Filter::from_query(ctx)?;
    let prefix = ctx.def.ns_prefix(ctx.namespace);
    let (objs, _) = ctx.state.cache.resource(ctx.def).list(&prefix);
    let mut deleted = Vec::new();
    for o in objs.into_iter().filter(|o| filter.matches(o)) {
        let sub = Ctx {
            state: ctx.state,
            def: ctx.def,
            namespace: if ctx.def.namespaced {
                Some(&*o.meta.namespace)
            } else {
                None
            },
            query: ctx.query,
            headers: ctx.headers,
            user: ctx.user,
        };
        match guaranteed_update(
            &sub,
            &o.meta.name,
            opts.dry,
            |cur| delete_decision(&sub, &opts, cur),
            &[],
        )
        .await
        {
            Ok(_) => deleted.push(o.bytes.clone()),
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    let rv = ctx.state.cache.revision();
    Ok(list_response(ctx.def, rv, None, None, deleted))
}
