//! Selector matching against the watch cache's per-object summaries. Parsing
//! and field extraction are orca_api's; this module precomputes the
//! selectable fields once per object version so filtering a watch event
//! does not re-parse the object.

use std::collections::BTreeMap;

use orca_api::selectors as api;
use serde_json::Value;

use crate::resources::ResourceDef;

pub type Labels = BTreeMap<String, String>;
/// (field path, value) pairs a field selector can match, per kind.
pub type Fields = Vec<(&'static str, String)>;

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
            let have = fields
                .iter()
                .find(|(f, _)| *f == t.field)
                .map(|(_, v)| v.as_str())
                .unwrap_or("");
            (have == t.value) != t.negated
        })
    }
}

/// The selectable fields of one object.
pub fn field_set(def: &ResourceDef, v: &Value) -> Fields {
    api::supported_fields(def.kind)
        .iter()
        .map(|f| (*f, api::field_value(def.kind, v, f).unwrap_or_default()))
        .collect()
}
