//! Selector matching against the watch cache's per-object summaries. Parsing
//! and field extraction are orca_api's; this module precomputes the
//! selectable fields once per object version so filtering a watch event
//! does not re-parse the object.

use std::collections::BTreeMap;

use orca_api::selectors as api;
use serde_json::Value;

use crate::resources::ResourceDef;

/// An object's labels, sorted by key; compact because the watch cache keeps
/// one per object.
pub type Labels = Box<[(Box<str>, Box<str>)]>;

/// The values of the kind's selectable fields, in the order of
/// `orca_api::selectors::supported_fields(kind)`, joined by NUL (one
/// allocation per object instead of one per field).
pub struct Fields {
    kind: &'static str,
    joined: Box<str>,
}

impl Fields {
    pub fn get(&self, field: &str) -> Option<&str> {
        let i = api::supported_fields(self.kind)
            .iter()
            .position(|f| *f == field)?;
        self.joined.split('\0').nth(i)
    }
}

pub fn labels_of(v: &Value) -> Labels {
    let mut l: Vec<(Box<str>, Box<str>)> = v["metadata"]["labels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.as_str().into(), v.as_str().unwrap_or_default().into()))
                .collect()
        })
        .unwrap_or_default();
    l.sort();
    l.into_boxed_slice()
}

/// Matches a label selector against compact labels.
pub fn labels_match(sel: &LabelSelector, labels: &Labels) -> bool {
    if sel.is_empty() {
        return true;
    }
    let map: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    sel.matches(&map)
}

pub use api::LabelSelector;

/// A field selector checked against the kind's supported fields.
pub struct FieldSelector(api::FieldSelector);

impl FieldSelector {
    pub fn parse(s: &str, def: &ResourceDef) -> Result<Self, String> {
        let sel = api::FieldSelector::parse(s).map_err(|e| e.0)?;
        sel.check_supported(def.kind).map_err(|e| e.0)?;
        Ok(FieldSelector(sel))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn matches(&self, fields: &Fields) -> bool {
        self.0.terms.iter().all(|t| {
            let have = fields.get(&t.field).unwrap_or("");
            (have == t.value) != t.negated
        })
    }
}

/// The selectable fields of one object.
pub fn field_set(def: &'static ResourceDef, v: &Value) -> Fields {
    let vals: Vec<String> = api::supported_fields(def.kind)
        .iter()
        .map(|f| {
            api::field_value(def.kind, v, f)
                .unwrap_or_default()
                .replace('\0', "")
        })
        .collect();
    Fields {
        kind: def.kind,
        joined: vals.join("\0").into_boxed_str(),
    }
}
