//! Sets of field paths as server-side apply tracks them
//! (sigs.k8s.io/structured-merge-diff's `fieldpath`), and their `FieldsV1`
//! form in `metadata.managedFields`: `f:<field>`, `k:<key object>` for an
//! item of an associative list, `v:<value>` for an item of a set, `i:<n>`
//! for a position, and `.: {}` where a path with children is itself a
//! member.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::{Map, Value};

/// One step of a path. The derived order (fields, then keys, then values,
/// then indices) is structured-merge-diff's.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PathElement {
    Field(String),
    /// An associative list item by its key fields (sorted by name; each
    /// value as compact JSON).
    Key(Vec<(String, String)>),
    /// A set item (compact JSON).
    Value(String),
    Index(usize),
}

impl PathElement {
    pub fn field(name: &str) -> Self {
        Self::Field(name.to_string())
    }

    /// The key element of a list item from its key fields.
    pub fn key(fields: &[(&str, &Value)]) -> Self {
        let mut k: Vec<(String, String)> = fields
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        k.sort();
        Self::Key(k)
    }

    pub fn value(v: &Value) -> Self {
        Self::Value(v.to_string())
    }

    /// The FieldsV1 form (`f:name`, `k:{...}`, `v:...`, `i:0`).
    fn encode(&self) -> String {
        match self {
            Self::Field(n) => format!("f:{n}"),
            Self::Key(k) => {
                let body: Vec<String> = k
                    .iter()
                    .map(|(n, v)| format!("{}:{v}", Value::String(n.clone())))
                    .collect();
                format!("k:{{{}}}", body.join(","))
            }
            Self::Value(v) => format!("v:{v}"),
            Self::Index(i) => format!("i:{i}"),
        }
    }

    fn decode(s: &str) -> Result<Self, String> {
        let bad = || format!("invalid path element {s:?}");
        let (tag, rest) = s.split_once(':').ok_or_else(bad)?;
        match tag {
            "f" => Ok(Self::Field(rest.to_string())),
            "v" => {
                let v: Value = serde_json::from_str(rest).map_err(|_| bad())?;
                Ok(Self::value(&v))
            }
            "i" => rest.parse().map(Self::Index).map_err(|_| bad()),
            "k" => {
                let Ok(Value::Object(m)) = serde_json::from_str::<Value>(rest) else {
                    return Err(bad());
                };
                let fields: Vec<(&str, &Value)> = m.iter().map(|(k, v)| (k.as_str(), v)).collect();
                Ok(Self::key(&fields))
            }
            _ => Err(bad()),
        }
    }
}

/// structured-merge-diff's path notation, as conflicts are reported:
/// `.spec.replicas`, `[name="web"]`, `[=value]`, `[0]`.
impl fmt::Display for PathElement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Field(n) => write!(f, ".{n}"),
            Self::Key(k) => {
                let parts: Vec<String> = k.iter().map(|(n, v)| format!("{n}={v}")).collect();
                write!(f, "[{}]", parts.join(","))
            }
            Self::Value(v) => write!(f, "[={v}]"),
            Self::Index(i) => write!(f, "[{i}]"),
        }
    }
}

pub type Path = Vec<PathElement>;

/// A path in structured-merge-diff's notation.
pub fn path_string(p: &[PathElement]) -> String {
    p.iter().map(ToString::to_string).collect()
}

/// A set of paths, as a tree: `members` are the paths ending here,
/// `children` the sets below each element.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Set {
    members: BTreeSet<PathElement>,
    children: BTreeMap<PathElement, Set>,
}

impl Set {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.children.values().all(Set::is_empty)
    }

    pub fn insert(&mut self, path: &[PathElement]) {
        match path {
            [] => {}
            [last] => {
                self.members.insert(last.clone());
            }
            [first, rest @ ..] => self.children.entry(first.clone()).or_default().insert(rest),
        }
    }

    pub fn has(&self, path: &[PathElement]) -> bool {
        match path {
            [] => false,
            [last] => self.members.contains(last),
            [first, rest @ ..] => self.children.get(first).is_some_and(|c| c.has(rest)),
        }
    }

    /// The set below `pe`.
    pub fn child(&self, pe: &PathElement) -> Option<&Set> {
        self.children.get(pe)
    }

    pub fn is_member(&self, pe: &PathElement) -> bool {
        self.members.contains(pe)
    }

    pub fn union(&self, other: &Set) -> Set {
        let mut out = self.clone();
        out.union_with(other);
        out
    }

    pub fn union_with(&mut self, other: &Set) {
        self.members.extend(other.members.iter().cloned());
        for (pe, c) in &other.children {
            self.children.entry(pe.clone()).or_default().union_with(c);
        }
    }

    /// The paths of `self` that are not paths of `other` (member by member:
    /// a path's children stay even if the path itself is removed).
    pub fn difference(&self, other: &Set) -> Set {
        let members = self.members.difference(&other.members).cloned().collect();
        let children = self
            .children
            .iter()
            .filter_map(|(pe, c)| {
                let d = match other.children.get(pe) {
                    Some(o) => c.difference(o),
                    None => c.clone(),
                };
                (!d.is_empty()).then(|| (pe.clone(), d))
            })
            .collect();
        Set { members, children }
    }

    /// [`Set::difference`], also dropping everything below a path of
    /// `other`.
    pub fn recursive_difference(&self, other: &Set) -> Set {
        let members = self.members.difference(&other.members).cloned().collect();
        let children = self
            .children
            .iter()
            .filter(|(pe, _)| !other.members.contains(pe))
            .filter_map(|(pe, c)| {
                let d = match other.children.get(pe) {
                    Some(o) => c.recursive_difference(o),
                    None => c.clone(),
                };
                (!d.is_empty()).then(|| (pe.clone(), d))
            })
            .collect();
        Set { members, children }
    }

    pub fn intersection(&self, other: &Set) -> Set {
        let members = self.members.intersection(&other.members).cloned().collect();
        let children = self
            .children
            .iter()
            .filter_map(|(pe, c)| {
                let i = c.intersection(other.children.get(pe)?);
                (!i.is_empty()).then(|| (pe.clone(), i))
            })
            .collect();
        Set { members, children }
    }

    /// Every member path, in order.
    pub fn paths(&self) -> Vec<Path> {
        let mut out = Vec::new();
        self.collect_paths(&mut Vec::new(), &mut out);
        out
    }

    fn collect_paths(&self, prefix: &mut Path, out: &mut Vec<Path>) {
        let elements: BTreeSet<&PathElement> =
            self.members.iter().chain(self.children.keys()).collect();
        for pe in elements {
            prefix.push(pe.clone());
            if self.members.contains(pe) {
                out.push(prefix.clone());
            }
            if let Some(c) = self.children.get(pe) {
                c.collect_paths(prefix, out);
            }
            prefix.pop();
        }
    }

    /// The set with every field that has paths below it also a member
    /// (structured-merge-diff's `EnsureNamedFieldsAreMembers` for typed
    /// objects, whose maps with object values are struct fields): owning
    /// `.spec.replicas` then also means owning `.spec`.
    pub fn with_named_parents(&self) -> Set {
        let mut out = self.clone();
        out.add_named_parents();
        out
    }

    fn add_named_parents(&mut self) {
        for (pe, c) in self.children.iter_mut() {
            if matches!(pe, PathElement::Field(_)) && !c.is_empty() {
                self.members.insert(pe.clone());
            }
            c.add_named_parents();
        }
    }

    /// The `fieldsV1` JSON form.
    pub fn to_fields_v1(&self) -> Value {
        let mut m = Map::new();
        let elements: BTreeSet<&PathElement> =
            self.members.iter().chain(self.children.keys()).collect();
        for pe in elements {
            let v = match self.children.get(pe).filter(|c| !c.is_empty()) {
                Some(c) => {
                    let mut inner = c.to_fields_v1();
                    if self.members.contains(pe) {
                        if let Value::Object(im) = &mut inner {
                            // Leading ".", as Kubernetes writes it.
                            let mut with_dot = Map::new();
                            with_dot.insert(".".into(), Value::Object(Map::new()));
                            with_dot.extend(std::mem::take(im));
                            *im = with_dot;
                        }
                    }
                    inner
                }
                None => Value::Object(Map::new()),
            };
            m.insert(pe.encode(), v);
        }
        Value::Object(m)
    }

    /// Reads a `fieldsV1` JSON object.
    pub fn from_fields_v1(v: &Value) -> Result<Set, String> {
        let Value::Object(m) = v else {
            return Err("fieldsV1 must be an object".into());
        };
        let mut out = Set::new();
        for (k, v) in m {
            if k == "." {
                continue;
            }
            let pe = PathElement::decode(k)?;
            let Value::Object(inner) = v else {
                return Err(format!("fieldsV1 entry {k:?} must be an object"));
            };
            if inner.is_empty() || inner.contains_key(".") {
                out.members.insert(pe.clone());
            }
            let child = Set::from_fields_v1(v)?;
            if !child.is_empty() {
                out.children.insert(pe, child);
            }
        }
        Ok(out)
    }
}

/// A path from field names (for tests and fixed paths).
pub fn fields(names: &[&str]) -> Path {
    names.iter().map(|n| PathElement::field(n)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod_set() -> Set {
        let mut s = Set::new();
        s.insert(&fields(&["metadata", "labels"]));
        s.insert(&fields(&["metadata", "labels", "app"]));
        let c = PathElement::key(&[("name", &json!("web"))]);
        let containers = |rest: &[&str]| {
            let mut p = fields(&["spec", "containers"]);
            p.push(c.clone());
            p.extend(fields(rest));
            p
        };
        s.insert(&containers(&[]));
        s.insert(&containers(&["image"]));
        s.insert(&containers(&["name"]));
        let port = PathElement::key(&[("protocol", &json!("TCP")), ("containerPort", &json!(80))]);
        let mut p = containers(&["ports"]);
        p.push(port);
        s.insert(&p);
        let mut f = fields(&["metadata", "finalizers"]);
        f.push(PathElement::value(&json!("x")));
        s.insert(&f);
        s
    }

    #[test]
    fn fields_v1_round_trip_in_kubernetes_form() {
        let s = pod_set();
        let v = s.to_fields_v1();
        assert_eq!(
            v,
            json!({
                "f:metadata": {
                    "f:finalizers": {"v:\"x\"": {}},
                    "f:labels": {".": {}, "f:app": {}}
                },
                "f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {
                    ".": {}, "f:image": {}, "f:name": {},
                    "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {}}
                }}}
            })
        );
        assert_eq!(Set::from_fields_v1(&v).unwrap(), s);
        assert!(Set::from_fields_v1(&json!({"x:y": {}})).is_err());
        assert!(Set::from_fields_v1(&json!([])).is_err());
    }

    #[test]
    fn set_operations() {
        let s = pod_set();
        let mut labels = Set::new();
        labels.insert(&fields(&["metadata", "labels"]));
        // Member-wise: the label below stays.
        let d = s.difference(&labels);
        assert!(!d.has(&fields(&["metadata", "labels"])));
        assert!(d.has(&fields(&["metadata", "labels", "app"])));
        // Recursive: everything below goes too.
        let r = s.recursive_difference(&labels);
        assert!(!r.has(&fields(&["metadata", "labels", "app"])));
        assert!(r.has(
            &fields(&["metadata", "finalizers"])
                .into_iter()
                .chain([PathElement::value(&json!("x"))])
                .collect::<Vec<_>>()
        ));
        let i = s.intersection(&labels);
        assert_eq!(i.paths(), vec![fields(&["metadata", "labels"])]);
        assert_eq!(s.union(&Set::new()), s);
        assert!(Set::new().is_empty() && !s.is_empty());
        let named = s.with_named_parents();
        assert!(named.has(&fields(&["spec"])));
        assert!(named.has(&fields(&["spec", "containers"])));
        assert!(!s.has(&fields(&["spec"])));
    }

    #[test]
    fn paths_print_as_structured_merge_diff() {
        let mut p = fields(&["spec", "containers"]);
        p.push(PathElement::key(&[("name", &json!("web"))]));
        p.push(PathElement::field("image"));
        assert_eq!(path_string(&p), ".spec.containers[name=\"web\"].image");
        let port = PathElement::key(&[("protocol", &json!("TCP")), ("containerPort", &json!(80))]);
        assert_eq!(port.to_string(), "[containerPort=80,protocol=\"TCP\"]");
        assert_eq!(PathElement::value(&json!("a")).to_string(), "[=\"a\"]");
        assert_eq!(path_string(&fields(&["data", "a"])), ".data.a");
    }
}
