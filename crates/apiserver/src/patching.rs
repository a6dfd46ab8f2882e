//! PATCH bodies: JSON patch (RFC 6902), JSON merge patch (RFC 7386) and
//! strategic merge patch.
//!
//! MINIMAL STAND-IN for strategic merge: `orca_api::patch` owns the full
//! strategic merge patch; until it lands this applies the subset kubectl
//! label/annotate/patch/apply need (lists of objects merged by their merge
//! key, `$patch: delete|replace`, `$setElementOrder` and `$retainKeys`
//! directives accepted).

use serde_json::{Map, Value};

use crate::resources::ResourceDef;

#[derive(Clone, Copy)]
pub enum Kind {
    Json,
    Merge,
    Strategic,
}

pub fn apply(
    kind: Kind,
    _def: &ResourceDef,
    current: &Value,
    patch: &Value,
) -> Result<Value, String> {
    let mut doc = current.clone();
    match kind {
        Kind::Json => {
            let ops: json_patch::Patch = serde_json::from_value(patch.clone())
                .map_err(|e| format!("invalid JSON patch: {e}"))?;
            json_patch::patch(&mut doc, &ops).map_err(|e| e.to_string())?;
        }
        Kind::Merge => {
            if !patch.is_object() {
                return Err("a merge patch must be a JSON object".into());
            }
            json_patch::merge(&mut doc, patch);
        }
        Kind::Strategic => {
            if !patch.is_object() {
                return Err("a strategic merge patch must be a JSON object".into());
            }
            strategic(&mut doc, patch, "");
        }
    }
    Ok(doc)
}

/// Merge key of a list field, by field name (core/v1 kinds).
fn merge_key(field: &str) -> Option<&'static str> {
    Some(match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets"
        | "readinessGates"
        | "resourceClaims"
        | "schedulingGates" => "name",
        "ports" => "containerPort",
        "volumeMounts" => "mountPath",
        "volumeDevices" => "devicePath",
        "conditions" => "type",
        "hostAliases" => "ip",
        "ownerReferences" => "uid",
        "addresses" => "type",
        "taints" => "key",
        _ => return None,
    })
}

fn strategic(doc: &mut Value, patch: &Value, _path: &str) {
    let Some(pmap) = patch.as_object() else {
        *doc = patch.clone();
        return;
    };
    if pmap.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut p = pmap.clone();
        p.remove("$patch");
        *doc = Value::Object(p);
        return;
    }
    if !doc.is_object() {
        *doc = Value::Object(Map::new());
    }
    let Some(dmap) = doc.as_object_mut() else {
        return;
    };
    for (k, pv) in pmap {
        if k.starts_with("$setElementOrder/") || k == "$retainKeys" || k == "$patch" {
            continue;
        }
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(items)), Some(del)) = (dmap.get_mut(field), pv.as_array()) {
                items.retain(|i| !del.contains(i));
            }
            continue;
        }
        if pv.is_null() {
            dmap.remove(k);
            continue;
        }
        match (dmap.get_mut(k), pv) {
            (Some(Value::Array(cur)), Value::Array(items)) => match merge_key(k) {
                Some(key) if items.iter().all(Value::is_object) => merge_list(cur, items, key),
                _ => {
                    *cur = items
                        .iter()
                        .filter(|i| i.get("$patch").is_none())
                        .cloned()
                        .collect()
                }
            },
            (Some(cur @ Value::Object(_)), Value::Object(_)) => strategic(cur, pv, k),
            _ => {
                let mut v = pv.clone();
                strip_directives(&mut v);
                dmap.insert(k.clone(), v);
            }
        }
    }
}

fn merge_list(cur: &mut Vec<Value>, items: &[Value], key: &str) {
    for item in items {
        let id = item.get(key);
        let pos = cur.iter().position(|c| c.get(key) == id && id.is_some());
        match (item.get("$patch").and_then(Value::as_str), pos) {
            (Some("delete"), Some(i)) => {
                cur.remove(i);
            }
            (Some("delete"), None) => {}
            (_, Some(i)) => strategic(&mut cur[i], item, key),
            (_, None) => {
                let mut v = item.clone();
                strip_directives(&mut v);
                cur.push(v);
            }
        }
    }
}

fn strip_directives(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|k, _| !k.starts_with('$'));
            m.values_mut().for_each(strip_directives);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_directives),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strategic_merges_containers_by_name() {
        let cur = json!({"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]}});
        let p = json!({"spec": {"containers": [{"name": "b", "image": "z"}]}});
        let out = apply(Kind::Strategic, crate::resources::pods(), &cur, &p).unwrap();
        assert_eq!(out["spec"]["containers"][0]["image"], "x");
        assert_eq!(out["spec"]["containers"][1]["image"], "z");
    }

    #[test]
    fn merge_patch_removes_nulls() {
        let cur = json!({"metadata": {"labels": {"a": "1", "b": "2"}}});
        let p = json!({"metadata": {"labels": {"a": null}}});
        let out = apply(Kind::Merge, crate::resources::pods(), &cur, &p).unwrap();
        assert_eq!(out["metadata"]["labels"], json!({"b": "2"}));
    }
}
