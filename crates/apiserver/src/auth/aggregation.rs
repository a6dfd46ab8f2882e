//! ClusterRole aggregation (kube-controller-manager's
//! clusterrole-aggregation controller, run inside the API server as its
//! namespace clean-up is): a ClusterRole with an `aggregationRule` gets the
//! rules of every ClusterRole its label selectors match, in name order,
//! without duplicates, whenever any ClusterRole changes.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};

use serde_json::Value;

use super::rbac::GROUP;
use crate::resources::{self, ResourceDef};
use crate::server::State;

fn cluster_roles() -> &'static ResourceDef {
    resources::find(GROUP, "v1", "clusterroles").expect("clusterroles are served")
}

/// Whether `labels` satisfy one `clusterRoleSelectors` entry.
fn selects(selector: &Value, labels: &serde_json::Map<String, Value>) -> bool {
    let label = |k: &str| labels.get(k).and_then(Value::as_str);
    let match_labels = selector["matchLabels"].as_object();
    let exprs = selector["matchExpressions"].as_array();
    if match_labels.is_none_or(|m| m.is_empty()) && exprs.is_none_or(|e| e.is_empty()) {
        // An empty selector selects nothing here, as in Kubernetes.
        return false;
    }
    let labels_ok = match_labels
        .into_iter()
        .flatten()
        .all(|(k, v)| label(k) == v.as_str());
    let exprs_ok = exprs.into_iter().flatten().all(|e| {
        let key = e["key"].as_str().unwrap_or_default();
        let values: Vec<&str> = e["values"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        match e["operator"].as_str() {
            Some("In") => label(key).is_some_and(|v| values.contains(&v)),
            Some("NotIn") => label(key).is_none_or(|v| !values.contains(&v)),
            Some("Exists") => label(key).is_some(),
            Some("DoesNotExist") => label(key).is_none(),
            _ => false,
        }
    });
    labels_ok && exprs_ok
}

/// The rules each aggregated ClusterRole should have, where they differ
/// from what it has (by name).
fn wanted(roles: &BTreeMap<String, Value>) -> Vec<(String, Vec<Value>)> {
    let mut out = Vec::new();
    for (name, role) in roles {
        let Some(selectors) = role["aggregationRule"]["clusterRoleSelectors"].as_array() else {
            continue;
        };
        let mut rules: Vec<Value> = Vec::new();
        for (other_name, other) in roles {
            if other_name == name {
                continue;
            }
            let empty = serde_json::Map::new();
            let labels = other["metadata"]["labels"].as_object().unwrap_or(&empty);
            if !selectors.iter().any(|s| selects(s, labels)) {
                continue;
            }
            for r in other["rules"].as_array().into_iter().flatten() {
                if !rules.contains(r) {
                    rules.push(r.clone());
                }
            }
        }
        let current = role["rules"].as_array().cloned().unwrap_or_default();
        if current != rules {
            out.push((name.clone(), rules));
        }
    }
    out
}

/// One pass; true when it changed a role (which may change roles that
/// aggregate it: `admin` aggregates `edit`, which aggregates `view`).
async fn aggregate(state: &State) -> bool {
    let mut changed = false;
    let def = cluster_roles();
    let (objs, _) = state.cache.resource(def).list(&def.prefix());
    let roles: BTreeMap<String, Value> = objs
        .iter()
        .filter_map(|o| serde_json::from_slice::<Value>(&o.bytes).ok())
        .map(|v| {
            (
                v["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                v,
            )
        })
        .collect();
    for (name, rules) in wanted(&roles) {
        let key = def.key(None, &name);
        let Ok(Some(kv)) = state.store.get(&key).await else {
            continue;
        };
        let Ok(mut v) = serde_json::from_slice::<Value>(&kv.value) else {
            continue;
        };
        v["rules"] = Value::Array(rules);
        match state
            .store
            .update(
                &key,
                serde_json::to_vec(&v).unwrap_or_default(),
                kv.mod_revision,
            )
            .await
        {
            Ok(kv) => {
                state.cache.wait_for(kv.mod_revision).await;
                changed = true;
            }
            // A conflict brings another event, and another pass.
            Err(orca_store::Error::Conflict { .. }) => {}
            Err(e) => {
                tracing::warn!(clusterrole = name, error = %e, "could not aggregate the rules of a ClusterRole; retried on its next change")
            }
        }
    }
    changed
}

/// Passes until nothing changes (bounded: aggregation nests shallowly).
async fn settle(state: &State) {
    for _ in 0..8 {
        if !aggregate(state).await {
            return;
        }
    }
}

/// Aggregates now, then after every ClusterRole change until the server
/// goes.
pub async fn start(state: &Arc<State>) {
    let weak: Weak<State> = Arc::downgrade(state);
    let rc = state.cache.resource(cluster_roles()).clone();
    let Some(mut sub) = rc.subscribe(rc.revision()) else {
        return;
    };
    settle(state).await;
    tokio::spawn(async move {
        loop {
            match sub.rx.recv().await {
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
            // One pass covers a burst of changes.
            while sub.rx.try_recv().is_ok() {}
            let Some(state) = weak.upgrade() else { return };
            settle(&state).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn aggregated_roles_gather_selected_rules_in_name_order() {
        let mut roles = BTreeMap::new();
        roles.insert(
            "view".to_string(),
            json!({"metadata": {"name": "view"},
            "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"agg": "view"}}]}}),
        );
        roles.insert(
            "b".to_string(),
            json!({"metadata": {"name": "b", "labels": {"agg": "view"}},
            "rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["b"]}]}),
        );
        roles.insert(
            "a".to_string(),
            json!({"metadata": {"name": "a", "labels": {"agg": "view"}},
            "rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["a"]},
                      {"verbs": ["get"], "apiGroups": [""], "resources": ["b"]}]}),
        );
        roles.insert(
            "c".to_string(),
            json!({"metadata": {"name": "c", "labels": {"agg": "edit"}},
            "rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["c"]}]}),
        );
        let w = wanted(&roles);
        assert_eq!(w.len(), 1);
        let resources: Vec<&Value> = w[0].1.iter().map(|r| &r["resources"][0]).collect();
        assert_eq!(resources, vec!["a", "b"]);
    }
}
