//! Label and field selectors for list/watch filtering.
//!
//! MINIMAL STAND-IN: `orca_api::selectors` is the owner of selector parsing;
//! this module holds the small subset the server needs until that lands and
//! should then become a thin adapter over it.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::resources::{ResourceDef, Special};

pub type Labels = BTreeMap<String, String>;
/// (field path, value) pairs a field selector can match, per kind.
pub type Fields = Vec<(&'static str, String)>;

#[derive(Debug, Clone, PartialEq, Eq)]
enum LabelReq {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

#[derive(Debug, Clone, Default)]
pub struct LabelSelector(Vec<LabelReq>);

#[derive(Debug, Clone, Default)]
pub struct FieldSelector(Vec<(String, bool, String)>);

fn split_top(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0;
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    out.push(cur);
    out.into_iter()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect()
}

fn set_values(s: &str) -> Result<Vec<String>, String> {
    let s = s.trim();
    let inner = s
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(|| format!("found '{s}', expected: '('"))?;
    Ok(inner
        .split(',')
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect())
}

impl LabelSelector {
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut reqs = Vec::new();
        for term in split_top(s) {
            let req = if let Some(k) = term.strip_prefix('!') {
                LabelReq::NotExists(k.trim().to_string())
            } else if let Some((k, v)) = term.split_once("!=") {
                LabelReq::NotEq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = term.split_once("==") {
                LabelReq::Eq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = term.split_once('=') {
                LabelReq::Eq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = term.split_once(" notin ") {
                LabelReq::NotIn(k.trim().into(), set_values(v)?)
            } else if let Some((k, v)) = term.split_once(" in ") {
                LabelReq::In(k.trim().into(), set_values(v)?)
            } else if term.contains(' ') || term.contains('(') {
                return Err(format!("unable to parse requirement: {term}"));
            } else {
                LabelReq::Exists(term.clone())
            };
            reqs.push(req);
        }
        Ok(LabelSelector(reqs))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn matches(&self, labels: &Labels) -> bool {
        self.0.iter().all(|r| match r {
            LabelReq::Eq(k, v) => labels.get(k) == Some(v),
            LabelReq::NotEq(k, v) => labels.get(k) != Some(v),
            LabelReq::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            LabelReq::NotIn(k, vs) => !labels.get(k).is_some_and(|v| vs.contains(v)),
            LabelReq::Exists(k) => labels.contains_key(k),
            LabelReq::NotExists(k) => !labels.contains_key(k),
        })
    }
}

impl FieldSelector {
    /// Parses and checks every field is one the kind supports.
    pub fn parse(s: &str, def: &ResourceDef) -> Result<Self, String> {
        let supported = supported_fields(def);
        let mut reqs = Vec::new();
        for term in split_top(s) {
            let (k, eq, v) = if let Some((k, v)) = term.split_once("!=") {
                (k, false, v)
            } else if let Some((k, v)) = term.split_once("==") {
                (k, true, v)
            } else if let Some((k, v)) = term.split_once('=') {
                (k, true, v)
            } else {
                return Err(format!(
                    "invalid selector: '{term}'; can't understand '{term}'"
                ));
            };
            let k = k.trim();
            if !supported.contains(&k) {
                return Err(format!("field label not supported: {k}"));
            }
            reqs.push((k.to_string(), eq, v.trim().to_string()));
        }
        Ok(FieldSelector(reqs))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn matches(&self, fields: &Fields) -> bool {
        self.0.iter().all(|(k, eq, v)| {
            let have = fields
                .iter()
                .find(|(f, _)| f == k)
                .map(|(_, x)| x.as_str())
                .unwrap_or("");
            (have == v) == *eq
        })
    }
}

const POD_FIELDS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "spec.hostNetwork",
    "status.phase",
    "status.podIP",
    "status.nominatedNodeName",
];
const EVENT_FIELDS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
];
const NODE_FIELDS: &[&str] = &["metadata.name", "spec.unschedulable"];
const NAMESPACE_FIELDS: &[&str] = &["metadata.name", "status.phase"];
const DEFAULT_FIELDS: &[&str] = &["metadata.name", "metadata.namespace"];

fn supported_fields(def: &ResourceDef) -> &'static [&'static str] {
    match (def.special, def.name) {
        (Special::Pod, _) => POD_FIELDS,
        (Special::Node, _) => NODE_FIELDS,
        (Special::Namespace, _) => NAMESPACE_FIELDS,
        (_, "events") => EVENT_FIELDS,
        _ => DEFAULT_FIELDS,
    }
}

fn lookup(v: &Value, path: &str) -> String {
    let mut cur = v;
    for p in path.split('.') {
        cur = &cur[p];
    }
    match cur {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

/// The selectable fields of one object.
pub fn field_set(def: &ResourceDef, v: &Value) -> Fields {
    supported_fields(def)
        .iter()
        .map(|f| {
            let val = match *f {
                // Kubernetes matches `source` against the reporting component.
                "source" => {
                    let s = lookup(v, "source.component");
                    if s.is_empty() {
                        lookup(v, "reportingComponent")
                    } else {
                        s
                    }
                }
                "spec.unschedulable" | "spec.hostNetwork" => {
                    let s = lookup(v, f);
                    if s.is_empty() {
                        "false".into()
                    } else {
                        s
                    }
                }
                _ => lookup(v, f),
            };
            (*f, val)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_selectors() {
        let l: Labels = [("app".to_string(), "web".to_string())].into();
        assert!(LabelSelector::parse("app=web").unwrap().matches(&l));
        assert!(!LabelSelector::parse("app!=web").unwrap().matches(&l));
        assert!(LabelSelector::parse("app in (a, web)").unwrap().matches(&l));
        assert!(LabelSelector::parse("app,!tier").unwrap().matches(&l));
        assert!(!LabelSelector::parse("tier").unwrap().matches(&l));
    }
}
