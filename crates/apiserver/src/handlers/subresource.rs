use super::*;

/// The OpenAPI schema name of a built-in kind (`io.k8s.api.core.v1.Binding`,
/// `io.k8s.api.authentication.v1.TokenRequest`).
fn schema_name(group: &str, version: &str, kind: &str) -> String {
    let short = match group {
        "" => "core",
        g => g.split('.').next().unwrap_or(g),
    };
    format!("io.k8s.api.{short}.{version}.{kind}")
}

/// POST to a subresource that makes something other than the object
/// (serviceaccounts/token): the body is decoded and checked against the
/// subresource's kind here, the rest is the resource's strategy's.
pub async fn create_subresource(
    ctx: &Ctx<'_>,
    name: &str,
    sub: &str,
    body: &[u8],
) -> Result<Response<Body>, ApiError> {
    // Checked as for any create; these subresources store nothing.
    dry_run(ctx.query, "CreateOptions")?;
    let (kind, _) = ctx.def.subresource(sub);
    let (group, version) = ctx.def.subresource_group_version(sub);
    let api_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    let raw = decode_body(ctx.headers, body)?;
    let schema = schema_name(group, version, kind);
    let (obj, warnings) = admit_body(ctx, raw, &api_version, kind, &schema, Ok)?;
    if (ctx.def.group, ctx.def.name, sub) == ("", "serviceaccounts", "token") {
        let namespace = ctx.namespace.unwrap_or_default();
        crate::auth::admission::node_token_request(ctx.state, ctx.user, namespace, name, &obj)
            .await?;
    }
    let target = crate::registry::SubresourceTarget {
        namespace: ctx.namespace,
        name,
        sub,
    };
    let out = ctx
        .def
        .strategy
        .create_subresource(ctx.state, target, obj)
        .await?;
    Ok(with_warnings(
        object_response(201, ctx.headers, &out),
        &warnings,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_follow_the_openapi_definitions() {
        assert_eq!(
            schema_name("authentication.k8s.io", "v1", "TokenRequest"),
            "io.k8s.api.authentication.v1.TokenRequest"
        );
        assert_eq!(
            schema_name("", "v1", "Binding"),
            "io.k8s.api.core.v1.Binding"
        );
        assert_eq!(
            schema_name("policy", "v1", "Eviction"),
            "io.k8s.api.policy.v1.Eviction"
        );
    }
}
