//! Resources whose only particular is their create-time defaults.

use serde_json::Value;

use k8s_openapi::api::core::v1 as core;
use orca_api::validation::validate_new;

use super::{typed, validated, Strategy};
use crate::resources::ResourceDef;
use crate::status::ApiError;

pub struct Node;
pub static NODE: Node = Node;

impl Strategy for Node {
    fn prepare_create(&self, def: &ResourceDef, obj: &mut Value) -> Result<(), ApiError> {
        typed::<core::Node>(obj, orca_api::defaults::node)?;
        validated(def, obj, validate_new(def.kind, obj, def.namespaced))
    }
}

pub struct Secret;
pub static SECRET: Secret = Secret;

impl Strategy for Secret {
    fn prepare_create(&self, def: &ResourceDef, obj: &mut Value) -> Result<(), ApiError> {
        typed::<core::Secret>(obj, orca_api::defaults::secret)?;
        validated(def, obj, validate_new(def.kind, obj, def.namespaced))
    }
}
