//! The access reviews, answered and never stored: SelfSubjectAccessReview,
//! SubjectAccessReview and LocalSubjectAccessReview ("may this user do
//! that?", behind `kubectl auth can-i`), SelfSubjectRulesReview (`can-i
//! --list`), SelfSubjectReview (`kubectl auth whoami`) and TokenReview.

use serde_json::{json, Value};

use super::{authorize, Attributes, UserInfo};
use crate::server::State;
use crate::status::ApiError;

fn attributes_of(spec: &Value) -> Result<Attributes, ApiError> {
    if let Some(r) = spec.get("resourceAttributes").filter(|v| v.is_object()) {
        let s = |k: &str| r[k].as_str().unwrap_or_default();
        return Ok(Attributes::resource(
            s("verb"),
            s("group"),
            s("resource"),
            s("subresource"),
            s("namespace"),
            s("name"),
        ));
    }
    if let Some(n) = spec.get("nonResourceAttributes").filter(|v| v.is_object()) {
        return Ok(Attributes::non_resource(
            n["verb"].as_str().unwrap_or_default(),
            n["path"].as_str().unwrap_or_default(),
        ));
    }
    Err(ApiError::invalid(
        "SelfSubjectAccessReview",
        "authorization.k8s.io",
        "",
        vec![(
            "FieldValueRequired".into(),
            "spec.resourceAttributes".into(),
            "Required value: exactly one of nonResourceAttributes or resourceAttributes must be specified".into(),
        )],
    ))
}

fn decided(mut review: Value, state: &State, user: &UserInfo) -> Result<Value, ApiError> {
    let attrs = attributes_of(&review["spec"])?;
    let status = match authorize(state, user, &attrs) {
        Ok(()) => json!({"allowed": true}),
        Err(reason) if reason.is_empty() => json!({"allowed": false}),
        Err(reason) => json!({"allowed": false, "reason": reason}),
    };
    review["status"] = status;
    Ok(review)
}

/// SelfSubjectAccessReview: about the caller.
pub fn self_subject_access(
    state: &State,
    user: &UserInfo,
    review: Value,
) -> Result<Value, ApiError> {
    decided(review, state, user)
}

/// The user a SubjectAccessReview names, taken as given (no groups added).
fn subject_of(spec: &Value) -> UserInfo {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    UserInfo {
        name: spec["user"].as_str().unwrap_or_default().to_string(),
        uid: spec["uid"].as_str().unwrap_or_default().to_string(),
        groups: strings(&spec["groups"]),
        extra: spec["extra"]
            .as_object()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), strings(v))).collect())
            .unwrap_or_default(),
    }
}

/// SubjectAccessReview (and, in a namespace, LocalSubjectAccessReview).
pub fn subject_access(
    state: &State,
    review: Value,
    namespace: Option<&str>,
) -> Result<Value, ApiError> {
    let spec = &review["spec"];
    if spec["user"].as_str().is_none_or(str::is_empty)
        && spec["groups"].as_array().is_none_or(|g| g.is_empty())
    {
        return Err(ApiError::invalid(
            if namespace.is_some() {
                "LocalSubjectAccessReview"
            } else {
                "SubjectAccessReview"
            },
            "authorization.k8s.io",
            "",
            vec![(
                "FieldValueRequired".into(),
                "spec.user".into(),
                "Required value: at least one of user or group must be specified".into(),
            )],
        ));
    }
    if let Some(ns) = namespace {
        let asked = spec["resourceAttributes"]["namespace"]
            .as_str()
            .unwrap_or_default();
        if asked != ns {
            return Err(ApiError::bad_request(format!(
                "spec.resourceAttributes.namespace must match namespace: {ns}"
            )));
        }
    }
    let subject = subject_of(spec);
    decided(review, state, &subject)
}

/// SelfSubjectRulesReview: what the caller may do in `spec.namespace`.
pub fn self_subject_rules(
    state: &State,
    user: &UserInfo,
    mut review: Value,
) -> Result<Value, ApiError> {
    let ns = review["spec"]["namespace"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    // system:masters' everything comes from the cluster-admin binding.
    let rules = state.rbac.rules_for(user, &ns);
    let (resource, non_resource) = super::rbac::rules_json(&rules);
    // Nodes' permissions are not fully listed (Kubernetes' node authorizer
    // does not enumerate them either).
    let incomplete = user.node_name().is_some();
    let mut status = json!({
        "resourceRules": resource,
        "nonResourceRules": non_resource,
        "incomplete": incomplete,
    });
    if incomplete {
        status["evaluationError"] = json!("node authorizer does not support user rule resolution");
    }
    review["status"] = status;
    Ok(review)
}

fn user_info_json(u: &UserInfo) -> Value {
    let mut v = json!({"username": u.name, "groups": u.groups});
    if !u.uid.is_empty() {
        v["uid"] = json!(u.uid);
    }
    if !u.extra.is_empty() {
        v["extra"] = json!(u.extra);
    }
    v
}

/// SelfSubjectReview: who the caller is.
pub fn self_subject(user: &UserInfo, mut review: Value) -> Value {
    review["metadata"] = json!({"creationTimestamp": crate::handlers::now()});
    review["status"] = json!({"userInfo": user_info_json(user)});
    review
}

/// TokenReview: whether a bearer token authenticates, and as whom.
pub async fn token(state: &State, mut review: Value) -> Result<Value, ApiError> {
    let token = review["spec"]["token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let mut status = json!({"authenticated": false, "user": {}});
    for a in &state.token_authenticators {
        if let Some(u) = a.authenticate(state, &token).await {
            status = json!({"authenticated": true, "user": user_info_json(&u)});
            break;
        }
    }
    if let Some(aud) = review["spec"]["audiences"]
        .as_array()
        .filter(|a| !a.is_empty())
    {
        if status["authenticated"] == true {
            status["audiences"] = json!(aud);
        }
    }
    review["status"] = status;
    Ok(review)
}
