//! Namespaces: deleting one marks it Terminating and starts the clean-up of
//! its content (see `crate::namespaces`); the built-in ones stay.

use std::sync::Arc;

use k8s_openapi::api::core::v1 as core;
use orca_api::validation::validate_new;
use serde_json::{json, Value};

use super::{being_deleted, no_finalizers, typed, validated, Strategy, Write};
use crate::resources::ResourceDef;
use crate::server::State;
use crate::status::ApiError;

pub struct Namespace;
pub static NAMESPACE: Namespace = Namespace;

impl Strategy for Namespace {
    fn prepare_create(&self, def: &ResourceDef, obj: &mut Value) -> Result<(), ApiError> {
        typed::<core::Namespace>(obj, orca_api::defaults::namespace)?;
        validated(def, obj, validate_new(def.kind, obj, def.namespaced))
    }

    fn delete(&self, _grace_period: Option<i64>, current: &Value) -> Result<Write, ApiError> {
        let name = current["metadata"]["name"].as_str().unwrap_or_default();
        if matches!(name, "default" | "kube-system" | "kube-public") {
            return Err(ApiError::forbidden(format!(
                "namespaces \"{name}\" is forbidden: this namespace may not be deleted"
            )));
        }
        if being_deleted(current) {
            return Ok(Write::Unchanged);
        }
        let mut new = current.clone();
        new["metadata"]["deletionTimestamp"] = json!(crate::handlers::now());
        new["metadata"]["deletionGracePeriodSeconds"] = json!(0);
        new["status"]["phase"] = json!("Terminating");
        new["spec"]["finalizers"] = json!(["kubernetes"]);
        Ok(Write::Update(new))
    }

    /// Once the clean-up has emptied it and dropped the `kubernetes`
    /// finalizer from its spec.
    fn finished_deleting(&self, v: &Value) -> bool {
        being_deleted(v)
            && no_finalizers(v)
            && v["spec"]["finalizers"]
                .as_array()
                .is_none_or(|f| f.is_empty())
    }

    /// A namespace's clean-up deletes its content whatever DELETE says.
    fn default_gc_policy(&self) -> super::GcPolicy {
        super::GcPolicy::Unsupported
    }

    fn after_delete(&self, state: &Arc<State>, name: &str) {
        crate::namespaces::spawn_cleanup(state.clone(), name.to_string());
    }

    /// Deleted one at a time (each starts a clean-up), as in Kubernetes,
    /// which serves no deletecollection for them.
    fn verbs(&self) -> &'static [&'static str] {
        &[
            "create", "delete", "get", "list", "patch", "update", "watch",
        ]
    }
}
