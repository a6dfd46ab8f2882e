//! Endpoints (core/v1) and EndpointSlices (discovery.k8s.io/v1): their
//! port defaults, and a slice's generation, which counts changes of
//! anything but its metadata (labels included), as Kubernetes' slice
//! strategy does.

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1 as discovery;
use orca_api::validation::{validate_new, validate_update};
use serde_json::{json, Value};

use super::{typed, validated, Strategy};
use crate::resources::ResourceDef;
use crate::status::ApiError;

pub struct Endpoints;
pub static ENDPOINTS: Endpoints = Endpoints;

impl Strategy for Endpoints {
    fn prepare_create(&self, def: &ResourceDef, obj: &mut Value) -> Result<(), ApiError> {
        typed::<core::Endpoints>(obj, orca_api::defaults::endpoints)?;
        validated(def, obj, validate_new(def.kind, obj, def.namespaced))
    }

    fn prepare_update(
        &self,
        def: &ResourceDef,
        new: &mut Value,
        old: &Value,
    ) -> Result<(), ApiError> {
        typed::<core::Endpoints>(new, orca_api::defaults::endpoints)?;
        validated(
            def,
            new,
            validate_update(def.kind, new, old, def.namespaced),
        )
    }
}

pub struct EndpointSlices;
pub static ENDPOINT_SLICE: EndpointSlices = EndpointSlices;

/// Everything but the metadata, and the labels.
fn generation_relevant(v: &Value) -> (Value, Value) {
    let mut rest = v.clone();
    if let Some(m) = rest.as_object_mut() {
        m.remove("metadata");
    }
    (rest, v["metadata"]["labels"].clone())
}

impl Strategy for EndpointSlices {
    fn prepare_create(&self, def: &ResourceDef, obj: &mut Value) -> Result<(), ApiError> {
        typed::<discovery::EndpointSlice>(obj, |s| {
            orca_api::defaults::endpoint_slice(s);
            s.metadata.generation = Some(1);
        })?;
        validated(def, obj, validate_new(def.kind, obj, def.namespaced))
    }

    fn prepare_update(
        &self,
        def: &ResourceDef,
        new: &mut Value,
        old: &Value,
    ) -> Result<(), ApiError> {
        typed::<discovery::EndpointSlice>(new, orca_api::defaults::endpoint_slice)?;
        let generation = old["metadata"]["generation"].as_i64().unwrap_or(1);
        let changed = generation_relevant(new) != generation_relevant(old);
        new["metadata"]["generation"] = json!(if changed { generation + 1 } else { generation });
        validated(
            def,
            new,
            validate_update(def.kind, new, old, def.namespaced),
        )
    }
}
