use super::*;

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
    if let Some(p) = &o.propagation_policy {
        if !matches!(p.as_str(), "Orphan" | "Background" | "Foreground") {
            return Err(ApiError::bad_request(format!(
                "propagationPolicy {p:?} is not supported: use Orphan, Background or Foreground"
            )));
        }
    }
    let _ = o.orphan_dependents;
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
    let write = ctx.def.strategy.delete(opts.grace_period_seconds, cur)?;
    Ok((write, pinned))
}

pub async fn delete(ctx: &Ctx<'_>, name: &str, body: &[u8]) -> Result<Response<Body>, ApiError> {
    let opts = delete_options(ctx, body)?;
    let resp = guaranteed_update(
        ctx,
        name,
        opts.dry,
        |cur| delete_decision(ctx, &opts, cur),
        &[],
    )
    .await?;
    if !opts.dry {
        ctx.def.strategy.after_delete(ctx.state, name);
    }
    Ok(resp)
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
