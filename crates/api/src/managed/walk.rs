//! Walks over objects by their structure (`crate::structure`): the field
//! set of an object, the comparison of two versions, the merge of an
//! applied configuration into a live object, and the removal of a set of
//! paths, as structured-merge-diff's typed values do them.

use serde_json::{Map, Value};

use crate::fieldpath::{Path, PathElement, Set};
use crate::structure::{atomic_items, atomic_object, key_default, list_rules, ListType};

/// How a node is walked.
enum Shape {
    /// Owned and compared as a whole: scalars, atomic lists and objects,
    /// empty objects.
    Leaf,
    Object,
    List(ListType),
}

fn shape(kind: &str, names: &[&str], atomic: bool, l: Option<&Value>, r: Option<&Value>) -> Shape {
    if atomic {
        return Shape::Leaf;
    }
    let present: Vec<&Value> = [l, r]
        .into_iter()
        .flatten()
        .filter(|v| !v.is_null())
        .collect();
    if present.is_empty() {
        return Shape::Leaf;
    }
    if present.iter().all(|v| v.is_object()) {
        let empty = present
            .iter()
            .all(|v| v.as_object().is_some_and(Map::is_empty));
        if empty || atomic_object(names) {
            return Shape::Leaf;
        }
        return Shape::Object;
    }
    if present.iter().all(|v| v.is_array()) {
        return match list_rules(kind, names).0 {
            ListType::Atomic => Shape::Leaf,
            t => Shape::List(t),
        };
    }
    Shape::Leaf
}

/// The element naming `item` in a set or associative list.
fn item_element(t: ListType, item: &Value) -> PathElement {
    match t {
        ListType::Map(keys) => {
            let values: Vec<(&str, Value)> = keys
                .iter()
                .filter_map(|k| Some((*k, item.get(*k).cloned().or_else(|| key_default(k))?)))
                .collect();
            let refs: Vec<(&str, &Value)> = values.iter().map(|(k, v)| (*k, v)).collect();
            PathElement::key(&refs)
        }
        _ => PathElement::value(item),
    }
}

fn items(t: ListType, v: Option<&Value>) -> Vec<(PathElement, &Value)> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().map(|i| (item_element(t, i), i)).collect())
        .unwrap_or_default()
}

fn find<'a>(list: &[(PathElement, &'a Value)], pe: &PathElement) -> Option<&'a Value> {
    list.iter().find(|(p, _)| p == pe).map(|(_, v)| *v)
}

fn obj_get<'a>(v: Option<&'a Value>, k: &str) -> Option<&'a Value> {
    v.and_then(|v| v.as_object()).and_then(|m| m.get(k))
}

/// Every path of `obj` (structured-merge-diff's `ToFieldSet`): scalars,
/// atomic values, empty objects and list items are members; fields holding
/// objects are only parents.
pub fn field_set(kind: &str, obj: &Value) -> Set {
    let mut out = Set::new();
    set_node(kind, &mut Vec::new(), false, obj, &mut Vec::new(), &mut out);
    out
}

fn set_node<'a>(
    kind: &str,
    names: &mut Vec<&'a str>,
    atomic: bool,
    v: &'a Value,
    path: &mut Path,
    out: &mut Set,
) {
    match shape(kind, names, atomic && !path.is_empty(), Some(v), None) {
        Shape::Leaf if !path.is_empty() => out.insert(path),
        Shape::Leaf => {}
        Shape::Object => {
            for (k, c) in v.as_object().into_iter().flatten() {
                names.push(k);
                path.push(PathElement::field(k));
                set_node(kind, names, false, c, path, out);
                path.pop();
                names.pop();
            }
        }
        Shape::List(t) => {
            let atomic_item = atomic_items(names);
            for (pe, item) in items(t, Some(v)) {
                path.push(pe);
                out.insert(path);
                if matches!(t, ListType::Map(_)) {
                    set_node(kind, names, atomic_item, item, path, out);
                }
                path.pop();
            }
        }
    }
}

/// What changed from one version of an object to the next.
#[derive(Debug, Default)]
pub struct Comparison {
    pub added: Set,
    pub modified: Set,
    pub removed: Set,
}

/// Compares two versions (structured-merge-diff's `Compare`): a node only
/// in `new` is added (with everything below it), a node only in `old`
/// removed, a leaf in both with another value modified. A `null` in `old`
/// counts as present, as the zero value of a Go field does.
pub fn compare(kind: &str, old: &Value, new: &Value) -> Comparison {
    let mut c = Comparison::default();
    cmp_node(
        kind,
        &mut Vec::new(),
        false,
        Some(old),
        Some(new),
        &mut Vec::new(),
        &mut c,
    );
    c
}

fn cmp_node<'a>(
    kind: &str,
    names: &mut Vec<&'a str>,
    atomic: bool,
    l: Option<&'a Value>,
    r: Option<&'a Value>,
    path: &mut Path,
    c: &mut Comparison,
) {
    match shape(kind, names, atomic, l, r) {
        Shape::Leaf => {
            match (l, r) {
                (None, _) => c.added.insert(path),
                (_, None) => c.removed.insert(path),
                (Some(a), Some(b)) if a != b => c.modified.insert(path),
                _ => {}
            }
            return;
        }
        Shape::Object => {
            let mut keys: Vec<&'a String> = Vec::new();
            for side in [l, r].into_iter().flatten() {
                for k in side.as_object().into_iter().flat_map(Map::keys) {
                    if !keys.contains(&k) {
                        keys.push(k);
                    }
                }
            }
            for k in keys {
                names.push(k);
                path.push(PathElement::field(k));
                cmp_node(kind, names, false, obj_get(l, k), obj_get(r, k), path, c);
                path.pop();
                names.pop();
            }
        }
        Shape::List(t) => {
            let (li, ri) = (items(t, l), items(t, r));
            let atomic_item = !matches!(t, ListType::Map(_)) || atomic_items(names);
            let mut seen: Vec<&PathElement> = Vec::new();
            for (pe, _) in li.iter().chain(ri.iter()) {
                if seen.contains(&pe) {
                    continue;
                }
                seen.push(pe);
                path.push(pe.clone());
                cmp_node(
                    kind,
                    names,
                    atomic_item,
                    find(&li, pe),
                    find(&ri, pe),
                    path,
                    c,
                );
                path.pop();
            }
        }
    }
    match (l, r) {
        (None, _) => c.added.insert(path),
        (_, None) => c.removed.insert(path),
        _ => {}
    }
}

/// Merges an applied configuration into the live object
/// (structured-merge-diff's `Merge`): objects merge field by field,
/// associative lists and sets item by item (the configuration's items in
/// its order, live-only items where they were), anything else is replaced.
pub fn merge(kind: &str, live: &Value, config: &Value) -> Value {
    merge_node(kind, &mut Vec::new(), false, Some(live), config)
}

fn merge_node<'a>(
    kind: &str,
    names: &mut Vec<&'a str>,
    atomic: bool,
    l: Option<&Value>,
    r: &'a Value,
) -> Value {
    match shape(kind, names, atomic, l, Some(r)) {
        Shape::Leaf => r.clone(),
        Shape::Object => {
            let mut out = l.and_then(Value::as_object).cloned().unwrap_or_default();
            for (k, rv) in r.as_object().into_iter().flatten() {
                names.push(k);
                let merged = merge_node(kind, names, false, out.get(k), rv);
                names.pop();
                out.insert(k.clone(), merged);
            }
            Value::Object(out)
        }
        Shape::List(t) => {
            let atomic_item = !matches!(t, ListType::Map(_)) || atomic_items(names);
            let (li, ri) = (items(t, l), items(t, Some(r)));
            let mut out = Vec::with_capacity(li.len().max(ri.len()));
            for (pe, from_config) in merged_order(&li, &ri) {
                let lv = find(&li, pe);
                out.push(match from_config {
                    Some(i) => merge_node(kind, names, atomic_item, lv, ri[i].1),
                    None => lv.cloned().unwrap_or_default(),
                });
            }
            Value::Array(out)
        }
    }
}

/// The order of a merged list: the configuration's items in its order,
/// items only the live list has kept where they were among the shared
/// ones. Each element comes with the position of its configuration item,
/// if any.
fn merged_order<'a>(
    l: &'a [(PathElement, &Value)],
    r: &'a [(PathElement, &Value)],
) -> Vec<(&'a PathElement, Option<usize>)> {
    let in_r = |pe: &PathElement| r.iter().any(|(p, _)| p == pe);
    let in_l = |pe: &PathElement| l.iter().any(|(p, _)| p == pe);
    let mut shared = r.iter().map(|(p, _)| p).filter(|p| in_l(p));
    let mut next_shared = shared.next();
    let mut done: Vec<&PathElement> = Vec::new();
    let mut out = Vec::new();
    let (mut li, mut ri) = (0, 0);
    while li < l.len() || ri < r.len() {
        if li < l.len() && ri < r.len() {
            let pe = &l[li].0;
            if *pe == r[ri].0 {
                done.push(pe);
                out.push((pe, Some(ri)));
                li += 1;
                ri += 1;
                next_shared = shared.next();
                continue;
            }
            if in_r(pe) && next_shared.is_some_and(|n| n != pe) {
                li += 1;
                continue;
            }
        }
        if li < l.len() {
            let pe = &l[li].0;
            if !in_r(pe) {
                out.push((pe, None));
                li += 1;
                continue;
            }
            if done.contains(&pe) {
                li += 1;
                continue;
            }
        }
        if ri < r.len() {
            let pe = &r[ri].0;
            done.push(pe);
            out.push((pe, Some(ri)));
            ri += 1;
            if next_shared == Some(pe) {
                next_shared = shared.next();
            }
        }
    }
    out
}

/// `obj` without the paths of `set` (a member path goes with everything
/// below it).
pub fn remove(kind: &str, obj: &Value, set: &Set) -> Value {
    remove_node(kind, &mut Vec::new(), obj, set)
}

fn remove_node<'a>(kind: &str, names: &mut Vec<&'a str>, v: &'a Value, set: &Set) -> Value {
    match v {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, c) in m {
                let pe = PathElement::field(k);
                if set.is_member(&pe) {
                    continue;
                }
                let kept = match set.child(&pe) {
                    Some(sub) => {
                        names.push(k);
                        let r = remove_node(kind, names, c, sub);
                        names.pop();
                        r
                    }
                    None => c.clone(),
                };
                out.insert(k.clone(), kept);
            }
            Value::Object(out)
        }
        Value::Array(a) => {
            let t = list_rules(kind, names).0;
            if t == ListType::Atomic {
                return v.clone();
            }
            let mut out = Vec::with_capacity(a.len());
            for item in a {
                let pe = item_element(t, item);
                if set.is_member(&pe) {
                    continue;
                }
                out.push(match set.child(&pe) {
                    Some(sub) => remove_node(kind, names, item, sub),
                    None => item.clone(),
                });
            }
            Value::Array(out)
        }
        _ => v.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fieldpath::fields;
    use serde_json::json;

    fn deployment() -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "strategy": {},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{
                        "name": "nginx", "image": "nginx:1.25",
                        "ports": [{"containerPort": 80}],
                        "env": [{"name": "A", "value": "1"}],
                        "args": ["-x"]
                    }]}
                }
            }
        })
    }

    #[test]
    fn field_set_follows_the_structure() {
        let s = field_set("Deployment", &deployment());
        let v1 = s.to_fields_v1();
        assert_eq!(
            v1["f:spec"]["f:selector"],
            json!({}),
            "LabelSelector is atomic"
        );
        assert_eq!(
            v1["f:spec"]["f:strategy"],
            json!({}),
            "an empty object is a leaf"
        );
        assert_eq!(v1["f:spec"]["f:replicas"], json!({}));
        assert_eq!(v1["f:metadata"]["f:labels"], json!({"f:app": {}}));
        let c = &v1["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"nginx\"}"];
        assert_eq!(c["."], json!({}));
        assert_eq!(c["f:args"], json!({}), "args are atomic");
        assert_eq!(
            c["f:ports"],
            json!({"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}})
        );
        assert_eq!(
            c["f:env"]["k:{\"name\":\"A\"}"],
            json!({".": {}, "f:name": {}, "f:value": {}})
        );
        assert!(v1.get(".").is_none());
        // Unknown kinds: lists are atomic.
        let s = field_set("Widget", &json!({"spec": {"items": [{"name": "a"}]}}));
        assert_eq!(s.to_fields_v1(), json!({"f:spec": {"f:items": {}}}));
    }

    #[test]
    fn compare_marks_added_modified_removed() {
        let old = deployment();
        let mut new = deployment();
        new["spec"]["replicas"] = json!(3);
        new["metadata"]["annotations"] = json!({"a": "b"});
        new["spec"]["template"]["spec"]["containers"][0]["env"] =
            json!([{"name": "B", "value": "2"}]);
        let c = compare("Deployment", &old, &new);
        assert_eq!(c.modified.paths(), vec![fields(&["spec", "replicas"])]);
        let added = c.added.to_fields_v1();
        assert_eq!(
            added["f:metadata"],
            json!({"f:annotations": {".": {}, "f:a": {}}})
        );
        let env = &added["f:spec"]["f:template"]["f:spec"]["f:containers"]
            ["k:{\"name\":\"nginx\"}"]["f:env"];
        assert_eq!(
            env,
            &json!({"k:{\"name\":\"B\"}": {".": {}, "f:name": {}, "f:value": {}}})
        );
        let removed = c.removed.to_fields_v1();
        let env = &removed["f:spec"]["f:template"]["f:spec"]["f:containers"]
            ["k:{\"name\":\"nginx\"}"]["f:env"];
        assert_eq!(
            env,
            &json!({"k:{\"name\":\"A\"}": {".": {}, "f:name": {}, "f:value": {}}})
        );
        // A null in the old version is present: no "." for the list.
        let c = compare(
            "Pod",
            &json!({"spec": {"containers": null}}),
            &json!({"spec": {"containers": [{"name": "a"}]}}),
        );
        assert_eq!(
            c.added.to_fields_v1(),
            json!({"f:spec": {"f:containers": {"k:{\"name\":\"a\"}": {".": {}, "f:name": {}}}}})
        );
    }

    #[test]
    fn merge_follows_list_types() {
        let live = deployment();
        let config = json!({
            "spec": {
                "selector": {"matchLabels": {"tier": "x"}},
                "template": {"spec": {"containers": [
                    {"name": "side", "image": "busybox"},
                    {"name": "nginx", "args": ["-y"], "env": [{"name": "B", "value": "2"}]}
                ]}}
            }
        });
        let out = merge("Deployment", &live, &config);
        assert_eq!(
            out["spec"]["selector"],
            json!({"matchLabels": {"tier": "x"}})
        );
        assert_eq!(out["spec"]["replicas"], 2);
        let cs = &out["spec"]["template"]["spec"]["containers"];
        assert_eq!(cs[0]["name"], "side");
        assert_eq!(cs[1]["image"], "nginx:1.25");
        assert_eq!(cs[1]["args"], json!(["-y"]));
        assert_eq!(
            cs[1]["env"],
            json!([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}])
        );
        // Live-only items stay where they were among the shared ones.
        let live = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}});
        let config = json!({"spec": {"containers": [{"name": "c"}, {"name": "a"}, {"name": "d"}]}});
        let out = merge("Pod", &live, &config);
        let names: Vec<&str> = out["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["b", "c", "a", "d"]);
        let fin = merge(
            "Pod",
            &json!({"metadata": {"finalizers": ["x", "y"]}}),
            &json!({"metadata": {"finalizers": ["z", "x"]}}),
        );
        assert_eq!(fin["metadata"]["finalizers"], json!(["z", "x", "y"]));
    }

    #[test]
    fn remove_takes_subtrees_and_items() {
        let mut set = Set::new();
        set.insert(&fields(&["spec", "replicas"]));
        set.insert(&fields(&["metadata", "labels", "app"]));
        let mut env = fields(&["spec", "template", "spec", "containers"]);
        env.push(PathElement::key(&[("name", &json!("nginx"))]));
        env.push(PathElement::field("env"));
        env.push(PathElement::key(&[("name", &json!("A"))]));
        set.insert(&env);
        let out = remove("Deployment", &deployment(), &set);
        assert!(out["spec"].get("replicas").is_none());
        assert_eq!(out["metadata"]["labels"], json!({}));
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"][0]["env"],
            json!([])
        );
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"][0]["image"],
            "nginx:1.25"
        );
    }
}
