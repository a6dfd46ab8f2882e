//! NodeRestriction admission: the node authorizer lets any node write Node,
//! Pod and Lease objects and request tokens for its pods' service accounts;
//! this keeps each node to its own objects and to tokens bound to its own
//! pods, as Kubernetes' plugin of that name (mirror pods are not supported,
//! so a node creates no pods).

use serde_json::Value;

use super::attributes::forbidden_error;
use super::node::NODE_LEASE_NAMESPACE;
use super::UserInfo;
use crate::resources::{self, ResourceDef};
use crate::server::State;
use crate::status::ApiError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Create,
    Update,
    Delete,
}

fn name_of(v: &Value) -> &str {
    v["metadata"]["name"].as_str().unwrap_or_default()
}

fn node_of_pod(v: &Value) -> &str {
    v["spec"]["nodeName"].as_str().unwrap_or_default()
}

/// Checks a write by `user` of `def` (`sub`resource) from `old` to `new`
/// (`new` is the current object for a delete).
pub fn node_restriction(
    user: &UserInfo,
    def: &ResourceDef,
    sub: Option<&str>,
    op: Op,
    old: Option<&Value>,
    new: &Value,
) -> Result<(), ApiError> {
    let Some(node) = user.node_name() else {
        return Ok(());
    };
    let name = name_of(new);
    let deny = |why: String| Err(forbidden_error(def.group, def.name, name, &why));
    match (def.group, def.name, sub, op) {
        ("", "pods", None, Op::Create) => {
            deny(format!("pod does not have \"kubernetes.io/config.mirror\" annotation, node {node:?} can only create mirror pods"))
        }
        ("", "pods", None, Op::Delete) if node_of_pod(new) != node => deny(format!(
            "node {node:?} can only delete pods with spec.nodeName set to itself"
        )),
        // For an eviction, `new` is the pod to evict.
        ("", "pods", Some("eviction"), Op::Create) if node_of_pod(new) != node => deny(format!(
            "node {node} can only evict pods with spec.nodeName set to itself"
        )),
        // Nodes debug nothing: whatever RBAC grants them.
        ("", "pods", Some(sub @ "ephemeralcontainers"), _) => deny(format!(
            "unexpected pod subresource {sub:?}, only 'status' and 'eviction' are allowed"
        )),
        ("", "pods", Some("status"), Op::Update)
            if node_of_pod(old.unwrap_or(new)) != node =>
        {
            deny(format!(
                "node {node:?} can only update pod status for pods with spec.nodeName set to itself"
            ))
        }
        ("", "nodes", _, Op::Create | Op::Update) if name != node => {
            deny(format!("node {node:?} is not allowed to modify node {name:?}"))
        }
        ("", "nodes", _, Op::Delete) => {
            deny(format!("node {node:?} is not allowed to delete nodes"))
        }
        ("coordination.k8s.io", "leases", _, _)
            if new["metadata"]["namespace"] == NODE_LEASE_NAMESPACE && name != node =>
        {
            deny("can only access node lease with the same name as the requesting node".into())
        }
        _ => Ok(()),
    }
}

/// NodeRestriction of a node's TokenRequest (`serviceaccounts/token`): the
/// node authorizer keeps a node to the accounts its pods run as; this keeps
/// it to tokens bound to one of those pods (by name and uid), as
/// Kubernetes' plugin does, so a node cannot mint free-standing tokens.
pub async fn node_token_request(
    state: &State,
    user: &UserInfo,
    namespace: &str,
    account: &str,
    request: &Value,
) -> Result<(), ApiError> {
    let Some(node) = user.node_name() else {
        return Ok(());
    };
    let deny = |why: &str| Err(forbidden_error("", "serviceaccounts", account, why));
    let bound = &request["spec"]["boundObjectRef"];
    let pod_name = bound["name"].as_str().unwrap_or_default();
    if bound["apiVersion"] != "v1" || bound["kind"] != "Pod" || pod_name.is_empty() {
        return deny("node requested token not bound to a pod");
    }
    let uid = bound["uid"].as_str().unwrap_or_default();
    if uid.is_empty() {
        return deny("node requested token with a pod binding without a uid");
    }
    let pod: Value = crate::sa_tokens::lookup(state, resources::pods(), Some(namespace), pod_name)
        .await?
        .ok_or_else(|| ApiError::not_found("pods", "", pod_name))?;
    if pod["metadata"]["uid"] != uid {
        return deny(&format!("the UID in the bound object reference ({uid}) does not match the UID in record. The object might have been deleted and then recreated"));
    }
    if node_of_pod(&pod) != node {
        return deny("node requested token bound to a pod scheduled on a different node");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources;
    use serde_json::json;

    #[test]
    fn nodes_write_only_their_own_objects() {
        let n1 = UserInfo::node("n1");
        let pods = resources::pods();
        let nodes = resources::find("", "v1", "nodes").unwrap();
        let mine = json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n1"}});
        let theirs = json!({"metadata": {"name": "q"}, "spec": {"nodeName": "n2"}});
        let status = Some("status");
        assert!(node_restriction(&n1, pods, status, Op::Update, Some(&mine), &mine).is_ok());
        let e =
            node_restriction(&n1, pods, status, Op::Update, Some(&theirs), &theirs).unwrap_err();
        assert_eq!(e.code, 403);
        assert_eq!(
            e.message,
            r#"pods "q" is forbidden: node "n1" can only update pod status for pods with spec.nodeName set to itself"#
        );
        assert!(node_restriction(&n1, pods, None, Op::Delete, None, &mine).is_ok());
        assert!(node_restriction(&n1, pods, None, Op::Delete, None, &theirs).is_err());
        assert!(node_restriction(&n1, pods, None, Op::Create, None, &mine).is_err());
        let other = json!({"metadata": {"name": "n2"}});
        let e = node_restriction(&n1, nodes, None, Op::Update, Some(&other), &other).unwrap_err();
        assert_eq!(
            e.message,
            r#"nodes "n2" is forbidden: node "n1" is not allowed to modify node "n2""#
        );
        let own = json!({"metadata": {"name": "n1"}});
        assert!(node_restriction(&n1, nodes, Some("status"), Op::Update, Some(&own), &own).is_ok());
        // Anyone else is not this plugin's business.
        let bob = UserInfo::authenticated("bob", &[]);
        assert!(node_restriction(&bob, pods, None, Op::Create, None, &mine).is_ok());
    }
}
