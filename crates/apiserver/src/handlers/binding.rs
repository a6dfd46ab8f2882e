use super::*;

/// pods/binding: assigns a pod to a node, once.
pub async fn bind(ctx: &Ctx<'_>, name: &str, body: &[u8]) -> Result<Response<Body>, ApiError> {
    let dry = dry_run(ctx.query, "CreateOptions")?;
    let raw = decode_body(ctx.headers, body)?;
    let (b, _) = admit_body(
        ctx,
        raw,
        "v1",
        "Binding",
        "io.k8s.api.core.v1.Binding",
        |v| {
            serde_json::from_value::<k8s_openapi::api::core::v1::Binding>(v.clone())
                .map(|_| v)
                .map_err(|e| e.to_string())
        },
    )?;
    let node = b["target"]["name"].as_str().unwrap_or("").to_string();
    if node.is_empty() {
        return Err(ApiError::invalid(
            "Binding",
            "",
            name,
            vec![(
                "FieldValueRequired".into(),
                "target.name".into(),
                "Required value".into(),
            )],
        ));
    }
    guaranteed_update(
        ctx,
        name,
        dry,
        |cur| {
            if !cur["metadata"]["deletionTimestamp"].is_null() {
                return Err(ApiError::conflict("pods", "", name, &format!(
                    "pod {name} is being deleted, cannot be assigned to a host")));
            }
            match cur["spec"]["nodeName"].as_str() {
                Some(n) if !n.is_empty() => {
                    return Err(ApiError::conflict("pods", "", name, &format!(
                        "pod {name} is already assigned to node \"{n}\"")))
                }
                _ => {}
            }
            let mut new = cur.clone();
            new["spec"]["nodeName"] = json!(node);
            let cond = json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now()});
            let conds = new["status"]["conditions"].as_array().cloned().unwrap_or_default();
            let mut conds: Vec<Value> = conds.into_iter().filter(|c| c["type"] != "PodScheduled").collect();
            conds.push(cond);
            new["status"]["conditions"] = json!(conds);
            Ok((Write::Update(new), false))
        },
        &[],
    )
    .await?;
    Ok(json_response(201, &success_status(None)))
}
