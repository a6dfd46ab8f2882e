//! Node rows (`printNode`): STATUS from the Ready condition and
//! cordoning, ROLES from the node-role labels, the node's addresses and
//! versions.

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Node;
use serde_json::{json, Value};

use super::{age, name_of, none_if_empty};

/// Node cells: NAME STATUS ROLES AGE VERSION INTERNAL-IP EXTERNAL-IP
/// OS-IMAGE KERNEL-VERSION CONTAINER-RUNTIME.
pub fn node_cells(node: &Node, now: DateTime<Utc>) -> Vec<Value> {
    let status = node.status.clone().unwrap_or_default();
    let mut st: Vec<String> = Vec::new();
    if let Some(c) = status
        .conditions
        .iter()
        .flatten()
        .rev()
        .find(|c| c.type_ == "Ready")
    {
        st.push(if c.status == "True" {
            "Ready".into()
        } else {
            "NotReady".into()
        });
    }
    if st.is_empty() {
        st.push("Unknown".into());
    }
    if node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        st.push("SchedulingDisabled".into());
    }
    let mut roles: Vec<String> = Vec::new();
    for (k, v) in node.metadata.labels.iter().flatten() {
        if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
            if !role.is_empty() {
                roles.push(role.to_string());
            }
        } else if k == "kubernetes.io/role" && !v.is_empty() {
            roles.push(v.clone());
        }
    }
    roles.sort();
    roles.dedup();
    let roles = if roles.is_empty() {
        "<none>".to_string()
    } else {
        roles.join(",")
    };
    let info = status.node_info.clone().unwrap_or_default();
    let addr = |ty: &str| {
        none_if_empty(
            status
                .addresses
                .iter()
                .flatten()
                .find(|a| a.type_ == ty)
                .map(|a| a.address.as_str()),
        )
    };
    let unknown = |s: &str| {
        if s.is_empty() {
            "<unknown>".to_string()
        } else {
            s.to_string()
        }
    };
    vec![
        json!(name_of(&node.metadata)),
        json!(st.join(",")),
        json!(roles),
        json!(age(node.metadata.creation_timestamp.as_ref(), now)),
        json!(info.kubelet_version),
        json!(addr("InternalIP")),
        json!(addr("ExternalIP")),
        json!(unknown(&info.os_image)),
        json!(unknown(&info.kernel_version)),
        json!(unknown(&info.container_runtime_version)),
    ]
}

#[cfg(test)]
mod tests {
    use crate::printing::tests::{at, fixture, kubectl_text};
    use crate::printing::{table, TableOptions};

    #[test]
    fn node_wide_row_matches_reference() {
        let t = table(
            "Node",
            &[fixture("node.yaml")],
            &TableOptions::new(at(10, 39, 0)),
        );
        let text = kubectl_text(&t, true);
        assert_eq!(
            text,
            "NAME       STATUS   ROLES    AGE    VERSION    INTERNAL-IP   EXTERNAL-IP   OS-IMAGE                         KERNEL-VERSION    CONTAINER-RUNTIME\n\
             ref-node   Ready    <none>   8m7s   v1.32.13   10.87.0.1     <none>        Debian GNU/Linux 12 (bookworm)   6.18.44-fc-v669   containerd://1.6.20\n"
        );
    }
}
