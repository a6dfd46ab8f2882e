//! PATCH bodies over JSON documents: JSON patch (RFC 6902), JSON merge
//! patch (RFC 7386) and Kubernetes' strategic merge patch for the core/v1
//! kinds Orca serves (what `kubectl apply/patch/label/annotate` send).

use serde_json::{Map, Value};
use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PatchError {
    /// The body is not valid JSON of the right shape.
    #[error("{0}")]
    Malformed(String),
    /// A JSON patch operation that cannot apply (missing path, failed
    /// test); kube-apiserver answers 422 for these.
    #[error("{0}")]
    Conflict(String),
}

/// The PATCH content types Kubernetes accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    Strategic,
    /// Server-side apply (`application/apply-patch+yaml`).
    Apply,
}

impl PatchType {
    /// From the request's Content-Type (parameters ignored).
    pub fn from_content_type(ct: &str) -> Option<Self> {
        match ct.split(';').next().unwrap_or("").trim() {
            "application/json-patch+json" => Some(Self::Json),
            "application/merge-patch+json" => Some(Self::Merge),
            "application/strategic-merge-patch+json" => Some(Self::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => Some(Self::Apply),
            _ => None,
        }
    }
}

/// Applies a JSON, merge or strategic patch (given as parsed JSON) to
/// `doc`, an object of `kind`. Server-side apply is merged like a strategic
/// patch without directives, which gives the same object for the fields a
/// single manager sets.
pub fn apply(
    kind: &str,
    doc: &Value,
    patch_type: PatchType,
    patch: &Value,
) -> Result<Value, PatchError> {
    match patch_type {
        PatchType::Json => json_patch(doc, patch),
        PatchType::Merge => {
            if !patch.is_object() {
                return Err(PatchError::Malformed(
                    "json: cannot unmarshal non-object into a merge patch".into(),
                ));
            }
            Ok(merge_patch(doc, patch))
        }
        PatchType::Strategic | PatchType::Apply => strategic_merge_patch(kind, doc, patch),
    }
}

// ---- RFC 7386 ----

/// JSON merge patch: objects merge recursively, `null` deletes, anything
/// else (lists included) replaces.
pub fn merge_patch(doc: &Value, patch: &Value) -> Value {
    let Value::Object(p) = patch else {
        return patch.clone();
    };
    let mut out = match doc {
        Value::Object(d) => d.clone(),
        _ => Map::new(),
    };
    for (k, v) in p {
        if v.is_null() {
            out.remove(k);
        } else {
            let merged = merge_patch(out.get(k).unwrap_or(&Value::Null), v);
            out.insert(k.clone(), merged);
        }
    }
    Value::Object(out)
}

// ---- RFC 6902 ----

fn unescape_token(t: &str) -> String {
    t.replace("~1", "/").replace("~0", "~")
}

fn parse_pointer(path: &str) -> Result<Vec<String>, PatchError> {
    if path.is_empty() {
        return Ok(vec![]);
    }
    if !path.starts_with('/') {
        return Err(PatchError::Conflict(format!(
            "JSON pointer must be empty or start with a \"/\": {path:?}"
        )));
    }
    Ok(path[1..].split('/').map(unescape_token).collect())
}

fn array_index(tok: &str, len: usize, allow_end: bool, path: &str) -> Result<usize, PatchError> {
    if allow_end && tok == "-" {
        return Ok(len);
    }
    let valid = !tok.is_empty()
        && tok.bytes().all(|b| b.is_ascii_digit())
        && (tok == "0" || !tok.starts_with('0'));
    let i: usize = if valid {
        tok.parse().unwrap_or(usize::MAX)
    } else {
        usize::MAX
    };
    let limit = if allow_end {
        len
    } else {
        len.saturating_sub(1)
    };
    if i == usize::MAX || (len == 0 && !allow_end) || i > limit {
        return Err(PatchError::Conflict(format!(
            "index out of bounds in path {path:?}"
        )));
    }
    Ok(i)
}

fn get_mut<'a>(
    doc: &'a mut Value,
    toks: &[String],
    path: &str,
) -> Result<&'a mut Value, PatchError> {
    let mut cur = doc;
    for t in toks {
        cur = match cur {
            Value::Object(m) => m.get_mut(t).ok_or_else(|| {
                PatchError::Conflict(format!("doc is missing path: {path:?}: missing value"))
            })?,
            Value::Array(a) => {
                let i = array_index(t, a.len(), false, path)?;
                &mut a[i]
            }
            _ => {
                return Err(PatchError::Conflict(format!(
                    "doc is missing path: {path:?}: missing value"
                )))
            }
        };
    }
    Ok(cur)
}

fn add(doc: &mut Value, path: &str, value: Value) -> Result<(), PatchError> {
    let toks = parse_pointer(path)?;
    let Some((last, parent)) = toks.split_last() else {
        *doc = value;
        return Ok(());
    };
    match get_mut(doc, parent, path)? {
        Value::Object(m) => {
            m.insert(last.clone(), value);
        }
        Value::Array(a) => {
            let i = array_index(last, a.len(), true, path)?;
            a.insert(i, value);
        }
        _ => {
            return Err(PatchError::Conflict(format!(
                "add operation does not apply: doc is missing path: {path:?}"
            )))
        }
    }
    Ok(())
}

fn remove(doc: &mut Value, path: &str) -> Result<Value, PatchError> {
    let toks = parse_pointer(path)?;
    let Some((last, parent)) = toks.split_last() else {
        return Err(PatchError::Conflict(
            "unable to remove the whole document".into(),
        ));
    };
    match get_mut(doc, parent, path)? {
        Value::Object(m) => m.remove(last).ok_or_else(|| {
            PatchError::Conflict(format!(
                "remove operation does not apply: doc is missing path: {path:?}: missing value"
            ))
        }),
        Value::Array(a) => {
            let i = array_index(last, a.len(), false, path)?;
            Ok(a.remove(i))
        }
        _ => Err(PatchError::Conflict(format!(
            "remove operation does not apply: doc is missing path: {path:?}"
        ))),
    }
}

/// RFC 6902 JSON patch: `ops` is an array of operations applied in order;
/// any failure leaves nothing applied.
pub fn json_patch(doc: &Value, ops: &Value) -> Result<Value, PatchError> {
    let Value::Array(ops) = ops else {
        return Err(PatchError::Malformed(
            "json: cannot unmarshal object into Go value of type jsonpatch.Patch".into(),
        ));
    };
    let mut out = doc.clone();
    for op in ops {
        let field = |k: &str| op.get(k).and_then(Value::as_str);
        let name = field("op")
            .ok_or_else(|| PatchError::Malformed("Unexpected kind: missing op".into()))?;
        let path = field("path")
            .ok_or_else(|| PatchError::Malformed(format!("{name} operation missing path")))?;
        let value = || {
            op.get("value")
                .cloned()
                .ok_or_else(|| PatchError::Malformed(format!("{name} operation missing value")))
        };
        let from = || {
            field("from")
                .ok_or_else(|| PatchError::Malformed(format!("{name} operation missing from")))
        };
        match name {
            "add" => add(&mut out, path, value()?)?,
            "remove" => {
                remove(&mut out, path)?;
            }
            "replace" => {
                let toks = parse_pointer(path)?;
                let target = get_mut(&mut out, &toks, path).map_err(|_| {
                    PatchError::Conflict(format!(
                        "replace operation does not apply: doc is missing key: {path}: missing value"
                    ))
                })?;
                *target = value()?;
            }
            "move" => {
                let from = from()?;
                if path.starts_with(&format!("{from}/")) {
                    return Err(PatchError::Conflict(format!(
                        "cannot move {from:?} into its own child {path:?}"
                    )));
                }
                let v = remove(&mut out, from)?;
                add(&mut out, path, v)?;
            }
            "copy" => {
                let from = from()?;
                let toks = parse_pointer(from)?;
                let v = get_mut(&mut out, &toks, from)?.clone();
                add(&mut out, path, v)?;
            }
            "test" => {
                let toks = parse_pointer(path)?;
                let want = value()?;
                let ok = get_mut(&mut out, &toks, path)
                    .map(|v| *v == want)
                    .unwrap_or(want.is_null());
                if !ok {
                    return Err(PatchError::Conflict(format!(
                        "testing value {path} failed: test failed"
                    )));
                }
            }
            other => return Err(PatchError::Malformed(format!("Unexpected kind: {other}"))),
        }
    }
    Ok(out)
}

// ---- strategic merge patch ----

/// How a list field merges under a strategic patch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListStrategy {
    /// The patch's list replaces the original.
    Replace,
    /// Items are maps merged by this key.
    MergeKey(&'static str),
    /// A list of scalars merged as a set (e.g. `metadata.finalizers`).
    MergePrimitives,
}

/// The patch strategy of the list at `path` (field names from the object
/// root, list positions left out) in an object of `kind`, from the
/// `patchStrategy`/`patchMergeKey` tags of the Go types.
pub fn list_strategy(kind: &str, path: &[&str]) -> ListStrategy {
    crate::structure::list_rules(kind, path).1
}

const SET_ORDER: &str = "$setElementOrder/";
const DELETE_PRIMITIVE: &str = "$deleteFromPrimitiveList/";

/// Kubernetes' strategic merge patch of `patch` onto `doc` (an object of
/// `kind`), with the `$patch`, `$retainKeys`, `$setElementOrder` and
/// `$deleteFromPrimitiveList` directives.
pub fn strategic_merge_patch(kind: &str, doc: &Value, patch: &Value) -> Result<Value, PatchError> {
    let Value::Object(p) = patch else {
        return Err(PatchError::Malformed(
            "strategic merge patch must be a JSON object".into(),
        ));
    };
    let d = match doc {
        Value::Object(d) => d.clone(),
        _ => Map::new(),
    };
    Ok(Value::Object(merge_map(kind, &mut Vec::new(), d, p)?))
}

/// Merges a patch map into an original map. `$patch: delete` on a map
/// leaves it empty, as in Kubernetes.
fn merge_map<'a>(
    kind: &str,
    path: &mut Vec<&'a str>,
    mut orig: Map<String, Value>,
    patch: &'a Map<String, Value>,
) -> Result<Map<String, Value>, PatchError> {
    match patch.get("$patch").and_then(Value::as_str) {
        Some("delete") => return Ok(Map::new()),
        Some("replace") => {
            let mut m = patch.clone();
            m.remove("$patch");
            return Ok(m);
        }
        Some("merge") | None => {}
        Some(other) => {
            return Err(PatchError::Malformed(format!(
                "Unknown patch type: {other}"
            )));
        }
    }
    let retain: Option<Vec<String>> = match patch.get("$retainKeys") {
        None => None,
        Some(Value::Array(a)) => Some(
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
        ),
        Some(_) => {
            return Err(PatchError::Malformed(
                "$retainKeys must be a list of strings".into(),
            ))
        }
    };
    for (k, pv) in patch {
        if k == "$patch" || k == "$retainKeys" || k.starts_with(SET_ORDER) {
            continue;
        }
        if let Some(field) = k.strip_prefix(DELETE_PRIMITIVE) {
            let Value::Array(del) = pv else {
                return Err(PatchError::Malformed(format!("{k} must be a list")));
            };
            if let Some(Value::Array(list)) = orig.get_mut(field) {
                list.retain(|x| !del.contains(x));
            }
            continue;
        }
        if pv.is_null() {
            orig.remove(k);
            continue;
        }
        path.push(k.as_str());
        let merged = match (orig.remove(k), pv) {
            (Some(Value::Object(o)), Value::Object(pm)) => {
                Value::Object(merge_map(kind, path, o, pm)?)
            }
            (_, Value::Object(pm)) => Value::Object(merge_map(kind, path, Map::new(), pm)?),
            (o, Value::Array(pl)) => {
                let ol = match o {
                    Some(Value::Array(ol)) => ol,
                    _ => Vec::new(),
                };
                let order = patch.get(&format!("{SET_ORDER}{k}"));
                Value::Array(merge_list(kind, path, ol, pl, order)?)
            }
            (_, other) => other.clone(),
        };
        path.pop();
        orig.insert(k.clone(), merged);
    }
    // An order directive for a list the patch does not otherwise touch.
    for (k, order) in patch {
        let Some(field) = k.strip_prefix(SET_ORDER) else {
            continue;
        };
        if patch.contains_key(field) {
            continue;
        }
        if let Some(Value::Array(list)) = orig.remove(field) {
            path.push(field);
            let strategy = list_strategy(kind, path);
            path.pop();
            orig.insert(
                field.to_string(),
                Value::Array(apply_order(list, order, strategy)),
            );
        }
    }
    if let Some(keep) = retain {
        orig.retain(|k, _| keep.iter().any(|r| r == k));
    }
    Ok(orig)
}

fn merge_list<'a>(
    kind: &str,
    path: &mut Vec<&'a str>,
    orig: Vec<Value>,
    patch: &'a [Value],
    order: Option<&Value>,
) -> Result<Vec<Value>, PatchError> {
    let strategy = list_strategy(kind, path);
    let original = orig.clone();
    let merged = match strategy {
        ListStrategy::Replace => {
            // A `$patch: replace` marker item is meaningless here; drop it.
            return Ok(patch
                .iter()
                .filter(|v| v.get("$patch").is_none())
                .cloned()
                .collect());
        }
        ListStrategy::MergePrimitives => {
            let mut out: Vec<Value> = Vec::new();
            for v in orig.into_iter().chain(patch.iter().cloned()) {
                if !out.contains(&v) {
                    out.push(v);
                }
            }
            out
        }
        ListStrategy::MergeKey(key) => {
            if patch
                .iter()
                .any(|v| v.get("$patch").and_then(Value::as_str) == Some("replace"))
            {
                return Ok(patch
                    .iter()
                    .filter(|v| v.get("$patch").is_none())
                    .cloned()
                    .collect());
            }
            let mut out = orig;
            for item in patch {
                let Value::Object(pm) = item else {
                    return Err(PatchError::Malformed(format!(
                        "{}: list items must be objects with the merge key {key:?}",
                        path.join(".")
                    )));
                };
                let Some(kv) = pm.get(key) else {
                    return Err(PatchError::Malformed(format!(
                        "map: {} does not contain declared merge key: {key}",
                        Value::Object(pm.clone())
                    )));
                };
                let pos = out.iter().position(|o| o.get(key) == Some(kv));
                if pm.get("$patch").and_then(Value::as_str) == Some("delete") {
                    if let Some(i) = pos {
                        out.remove(i);
                    }
                    continue;
                }
                match pos {
                    Some(i) => {
                        let o = match std::mem::take(&mut out[i]) {
                            Value::Object(o) => o,
                            _ => Map::new(),
                        };
                        out[i] = Value::Object(merge_map(kind, path, o, pm)?);
                    }
                    None => {
                        out.push(Value::Object(merge_map(kind, path, Map::new(), pm)?));
                    }
                }
            }
            out
        }
    };
    let order: &[Value] = match order {
        Some(Value::Array(o)) => o,
        Some(_) => {
            return Err(PatchError::Malformed(
                "invalid patch: $setElementOrder must be a list".into(),
            ))
        }
        None => patch,
    };
    Ok(normalize_order(merged, order, &original, strategy))
}

/// Orders a merged list for an order directive on a list the patch does
/// not otherwise change.
fn apply_order(list: Vec<Value>, order: &Value, strategy: ListStrategy) -> Vec<Value> {
    match (order, strategy) {
        (Value::Array(order), ListStrategy::MergeKey(_) | ListStrategy::MergePrimitives) => {
            let original = list.clone();
            normalize_order(list, order, &original, strategy)
        }
        _ => list,
    }
}

/// Kubernetes' ordering of a merged list: items named by the patch (or its
/// `$setElementOrder`) come in that order; items only the server had keep
/// their old relative order and are interleaved where the old list placed
/// them.
fn normalize_order(
    merged: Vec<Value>,
    order: &[Value],
    original: &[Value],
    strategy: ListStrategy,
) -> Vec<Value> {
    let id = |v: &Value| -> Value {
        match strategy {
            ListStrategy::MergeKey(k) => v.get(k).cloned().unwrap_or(Value::Null),
            _ => v.clone(),
        }
    };
    let wanted: Vec<Value> = order
        .iter()
        .filter(|v| v.get("$patch").is_none())
        .map(&id)
        .collect();
    let before: Vec<Value> = original.iter().map(&id).collect();
    let pos = |list: &[Value], v: &Value| list.iter().position(|w| *w == id(v));
    let (mut named, mut server_only): (Vec<Value>, Vec<Value>) =
        merged.into_iter().partition(|v| pos(&wanted, v).is_some());
    named.sort_by_key(|v| pos(&wanted, v));
    server_only.sort_by_key(|v| pos(&before, v).unwrap_or(usize::MAX));
    let mut out = Vec::with_capacity(named.len() + server_only.len());
    let (mut left, mut right) = (
        server_only.into_iter().peekable(),
        named.into_iter().peekable(),
    );
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => {
                matches!((pos(&before, l), pos(&before, r)), (Some(a), Some(b)) if a < b)
            }
        };
        let next = if take_left { left.next() } else { right.next() };
        out.extend(next);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "labels": {"app": "web"}, "finalizers": ["a"]},
            "spec": {
                "containers": [
                    {"name": "nginx", "image": "nginx:1.25",
                     "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                     "ports": [{"containerPort": 80, "protocol": "TCP"}]},
                    {"name": "side", "image": "busybox"}
                ],
                "tolerations": [{"key": "x", "operator": "Exists"}],
                "volumes": [{"name": "data", "emptyDir": {}}]
            }
        })
    }

    #[test]
    fn merge_patch_deletes_with_null_and_replaces_lists() {
        let out = merge_patch(
            &pod(),
            &json!({"metadata": {"labels": {"tier": "web", "app": null}}}),
        );
        assert_eq!(out["metadata"]["labels"], json!({"tier": "web"}));
        let out = merge_patch(&pod(), &json!({"spec": {"containers": [{"name": "only"}]}}));
        assert_eq!(out["spec"]["containers"], json!([{"name": "only"}]));
    }

    #[test]
    fn json_patch_ops() {
        let ops = json!([
            {"op": "replace", "path": "/spec/containers/0/image", "value": "nginx:1.26"},
            {"op": "add", "path": "/metadata/labels/tier", "value": "web"},
            {"op": "add", "path": "/spec/containers/-", "value": {"name": "third"}},
            {"op": "remove", "path": "/spec/tolerations"},
            {"op": "test", "path": "/metadata/name", "value": "web"},
            {"op": "copy", "from": "/metadata/name", "path": "/metadata/labels/name"},
            {"op": "move", "from": "/metadata/labels/app", "path": "/metadata/labels/a~1b"}
        ]);
        let out = json_patch(&pod(), &ops).unwrap();
        assert_eq!(out["spec"]["containers"][0]["image"], "nginx:1.26");
        assert_eq!(out["spec"]["containers"][2]["name"], "third");
        assert!(out["spec"].get("tolerations").is_none());
        assert_eq!(
            out["metadata"]["labels"],
            json!({"tier": "web", "name": "web", "a/b": "web"})
        );
        let failed = json_patch(
            &pod(),
            &json!([{"op": "test", "path": "/metadata/name", "value": "x"}]),
        );
        assert!(matches!(failed, Err(PatchError::Conflict(_))));
        let missing = json_patch(
            &pod(),
            &json!([{"op": "replace", "path": "/spec/nope/x", "value": 1}]),
        );
        assert!(matches!(missing, Err(PatchError::Conflict(_))));
        assert!(matches!(
            json_patch(&pod(), &json!({"op": "add"})),
            Err(PatchError::Malformed(_))
        ));
    }

    #[test]
    fn strategic_merges_containers_by_name() {
        let patch = json!({"spec": {"containers": [
            {"name": "nginx", "image": "nginx:1.26", "env": [{"name": "B", "value": "3"}, {"name": "C", "value": "4"}]}
        ]}});
        let out = strategic_merge_patch("Pod", &pod(), &patch).unwrap();
        let c = &out["spec"]["containers"];
        assert_eq!(
            c.as_array().unwrap().len(),
            2,
            "the other container is kept"
        );
        assert_eq!(c[0]["image"], "nginx:1.26");
        assert_eq!(
            c[0]["env"],
            json!([{"name": "A", "value": "1"}, {"name": "B", "value": "3"}, {"name": "C", "value": "4"}])
        );
        assert_eq!(
            c[0]["ports"],
            json!([{"containerPort": 80, "protocol": "TCP"}])
        );
        // Tolerations have no merge strategy: replaced.
        let out = strategic_merge_patch(
            "Pod",
            &pod(),
            &json!({"spec": {"tolerations": [{"operator": "Exists"}]}}),
        )
        .unwrap();
        assert_eq!(out["spec"]["tolerations"], json!([{"operator": "Exists"}]));
    }

    #[test]
    fn strategic_directives() {
        let patch = json!({
            "metadata": {"$deleteFromPrimitiveList/finalizers": ["a"], "labels": {"app": null}},
            "spec": {
                "$setElementOrder/containers": [{"name": "side"}, {"name": "nginx"}],
                "containers": [{"name": "side", "image": "busybox:1.36"}],
                "volumes": [{"name": "data", "$patch": "delete"}]
            }
        });
        let out = strategic_merge_patch("Pod", &pod(), &patch).unwrap();
        assert_eq!(out["metadata"]["finalizers"], json!([]));
        assert_eq!(out["metadata"]["labels"], json!({}));
        assert_eq!(out["spec"]["containers"][0]["name"], "side");
        assert_eq!(out["spec"]["containers"][0]["image"], "busybox:1.36");
        assert_eq!(out["spec"]["containers"][1]["name"], "nginx");
        assert_eq!(out["spec"]["volumes"], json!([]));

        let replace = json!({"spec": {"containers": [{"$patch": "replace"}, {"name": "solo", "image": "x"}]}});
        let out = strategic_merge_patch("Pod", &pod(), &replace).unwrap();
        assert_eq!(
            out["spec"]["containers"],
            json!([{"name": "solo", "image": "x"}])
        );

        let retain = json!({"spec": {"volumes": [{"name": "data", "$retainKeys": ["name", "hostPath"], "hostPath": {"path": "/d"}}]}});
        let out = strategic_merge_patch("Pod", &pod(), &retain).unwrap();
        assert_eq!(
            out["spec"]["volumes"],
            json!([{"name": "data", "hostPath": {"path": "/d"}}])
        );

        let wipe = json!({"spec": {"securityContext": {"$patch": "delete"}}});
        let mut with_sc = pod();
        with_sc["spec"]["securityContext"] = json!({"runAsUser": 1});
        let out = strategic_merge_patch("Pod", &with_sc, &wipe).unwrap();
        assert_eq!(out["spec"]["securityContext"], json!({}));

        let no_key = json!({"spec": {"containers": [{"image": "x"}]}});
        assert!(strategic_merge_patch("Pod", &pod(), &no_key).is_err());
    }

    #[test]
    fn kubectl_apply_patch_shape() {
        // What kubectl apply sends when the image and a label change.
        let patch = json!({
            "metadata": {
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{...}"},
                "labels": {"app": "web", "v": "2"}
            },
            "spec": {
                "$setElementOrder/containers": [{"name": "nginx"}, {"name": "side"}],
                "containers": [{"image": "nginx:1.27", "name": "nginx"}]
            }
        });
        let out = strategic_merge_patch("Pod", &pod(), &patch).unwrap();
        assert_eq!(out["metadata"]["labels"], json!({"app": "web", "v": "2"}));
        assert_eq!(out["spec"]["containers"][0]["image"], "nginx:1.27");
        assert_eq!(out["spec"]["containers"][1]["name"], "side");
        assert_eq!(
            out["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"],
            "{...}"
        );
    }

    #[test]
    fn node_conditions_merge_by_type() {
        let node = json!({"status": {"conditions": [
            {"type": "Ready", "status": "False"}, {"type": "MemoryPressure", "status": "False"}]}});
        let patch = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        let out = strategic_merge_patch("Node", &node, &patch).unwrap();
        assert_eq!(
            out["status"]["conditions"],
            json!([{"type": "Ready", "status": "True"}, {"type": "MemoryPressure", "status": "False"}])
        );
    }

    #[test]
    fn merged_lists_keep_kubernetes_order() {
        // A new item named first in the patch goes first; the server-only
        // item stays after the item it followed.
        let doc = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
        let patch = json!({"spec": {"containers": [{"name": "c"}, {"name": "a", "image": "x"}]}});
        let out = strategic_merge_patch("Pod", &doc, &patch).unwrap();
        let names: Vec<&str> = out["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["c", "a", "b"]);
        assert_eq!(out["spec"]["containers"][1]["image"], "x");
        // Appending keeps the old items in front.
        let patch = json!({"spec": {"containers": [{"name": "b", "image": "y"}, {"name": "d"}]}});
        let out = strategic_merge_patch("Pod", &doc, &patch).unwrap();
        let names: Vec<&str> = out["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["a", "b", "d"]);
        // Finalizers merge as a set.
        let doc = json!({"metadata": {"finalizers": ["x", "y"]}});
        let out = strategic_merge_patch(
            "Pod",
            &doc,
            &json!({"metadata": {"finalizers": ["z", "x"]}}),
        )
        .unwrap();
        assert_eq!(out["metadata"]["finalizers"], json!(["z", "x", "y"]));
    }

    #[test]
    fn content_types() {
        assert_eq!(
            PatchType::from_content_type("application/strategic-merge-patch+json"),
            Some(PatchType::Strategic)
        );
        assert_eq!(
            PatchType::from_content_type("application/merge-patch+json; charset=utf-8"),
            Some(PatchType::Merge)
        );
        assert_eq!(PatchType::from_content_type("application/json"), None);
    }
}
