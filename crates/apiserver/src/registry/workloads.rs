//! The workload kinds: apps/v1 Deployments and ReplicaSets, core/v1
//! ReplicationControllers and PodTemplates. Defaulted and validated from
//! one typed decode; created with generation 1 and an empty status; a
//! changed spec (for Deployments also changed annotations, which their
//! ReplicaSets copy) starts a new generation; `status` writes keep the spec;
//! `scale` reads and writes `spec.replicas`.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{PodTemplate, ReplicationController};
use orca_api::validation::{self as v, FieldError};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

use super::{typed, validated, GcPolicy, ScaleView, Strategy};
use crate::resources::ResourceDef;
use crate::status::ApiError;

/// Decodes `obj` once, defaults it, runs `validate` on it and stores it
/// back; `on_create` also resets what a client may not set.
pub(super) fn prepare<T: DeserializeOwned + Serialize>(
    def: &ResourceDef,
    obj: &mut Value,
    default: fn(&mut T),
    validate: impl FnOnce(&T) -> Vec<FieldError>,
    on_create: Option<fn(&mut T)>,
) -> Result<(), ApiError> {
    let mut errs = Vec::new();
    typed::<T>(obj, |t| {
        default(t);
        if let Some(f) = on_create {
            f(t);
        }
        errs = validate(t);
    })?;
    template_timestamp(obj);
    validated(def, obj, errs)
}

/// Go writes a template's unset creationTimestamp as `null`, and kubectl
/// shows it (`creationTimestamp: null` under `template.metadata`).
fn template_timestamp(obj: &mut Value) {
    let template = match obj["kind"].as_str() {
        Some("PodTemplate") => obj.get_mut("template"),
        // A CronJob's job template, and the pod template inside it.
        Some("CronJob") => {
            let job = obj.get_mut("spec").and_then(|s| s.get_mut("jobTemplate"));
            let Some(job) = job.filter(|j| j.is_object()) else {
                return;
            };
            null_timestamp(job);
            job.get_mut("spec").and_then(|s| s.get_mut("template"))
        }
        _ => obj.get_mut("spec").and_then(|s| s.get_mut("template")),
    };
    if let Some(t) = template.filter(|t| t.is_object()) {
        null_timestamp(t);
    }
}

fn null_timestamp(t: &mut Value) {
    if !t["metadata"].is_object() {
        t["metadata"] = json!({});
    }
    if t["metadata"].get("creationTimestamp").is_none() {
        t["metadata"]["creationTimestamp"] = Value::Null;
    }
}

/// Decodes the stored `old` for an update rule.
pub(super) fn decoded<T: DeserializeOwned>(old: &Value) -> Result<T, ApiError> {
    T::deserialize(old)
        .map_err(|e| ApiError::internal(format!("the stored object cannot be decoded: {e}")))
}

pub(super) fn replicas_view(obj: &Value, selector: String) -> ScaleView {
    ScaleView {
        desired: obj["spec"]["replicas"].as_i64().unwrap_or(1),
        current: obj["status"]["replicas"].as_i64().unwrap_or(0),
        selector,
    }
}

pub(super) fn label_selector_string(obj: &Value) -> String {
    serde_json::from_value(obj["spec"]["selector"].clone())
        .ok()
        .and_then(|s| orca_api::selectors::LabelSelector::from_api(&s).ok())
        .map(|s| s.to_selector_string())
        .unwrap_or_default()
}

pub(super) fn set_spec_replicas(obj: &mut Value, replicas: i32) {
    if !obj["spec"].is_object() {
        obj["spec"] = json!({});
    }
    obj["spec"]["replicas"] = json!(replicas);
}

pub struct DeploymentStrategy;
pub static DEPLOYMENT: DeploymentStrategy = DeploymentStrategy;

impl Strategy for DeploymentStrategy {
    fn prepare_create(&self, def: &ResourceDef, obj: &mut Value) -> Result<(), ApiError> {
        prepare::<Deployment>(
            def,
            obj,
            orca_api::defaults::deployment,
            v::validate_deployment,
            Some(|d| {
                d.metadata.generation = Some(1);
                d.status = Some(Default::default());
            }),
        )
    }

    fn prepare_update(
        &self,
        def: &ResourceDef,
        new: &mut Value,
        old: &Value,
    ) -> Result<(), ApiError> {
        let old: Deployment = decoded(old)?;
        prepare::<Deployment>(
            def,
            new,
            orca_api::defaults::deployment,
            |d| v::validate_deployment_update(d, &old),
            None,
        )
    }

    /// Status writers may change annotations (the controller records the
    /// revision there) but not labels.
    fn prepare_status_update(
        &self,
        def: &ResourceDef,
        new: &mut Value,
        old: &Value,
    ) -> Result<(), ApiError> {
        match old["metadata"].get("labels") {
            Some(l) => new["metadata"]["labels"] = l.clone(),
            None => {
                if let Some(m) = new["metadata"].as_object_mut() {
                    m.remove("labels");
                }
            }
        }
        let old: Deployment = decoded(old)?;
        prepare::<Deployment>(
            def,
            new,
            orca_api::defaults::deployment,
            |d| v::validate_deployment_status_update(d, &old),
            None,
        )
    }

    fn bumps_generation(&self, new: &Value, old: &Value) -> bool {
        new["spec"] != old["spec"]
            || new["metadata"]["annotations"] != old["metadata"]["annotations"]
    }

    fn derived_subresources(&self) -> &'static [&'static str] {
        &["scale"]
    }

    fn scale(&self, obj: &Value) -> Option<ScaleView> {
        Some(replicas_view(obj, label_selector_string(obj)))
    }

    fn set_replicas(&self, obj: &mut Value, replicas: i32) {
        set_spec_replicas(obj, replicas);
    }

    fn returns_deleted_object(&self) -> bool {
        false
    }
}

pub struct ReplicaSetStrategy;
pub static REPLICA_SET: ReplicaSetStrategy = ReplicaSetStrategy;

impl Strategy for ReplicaSetStrategy {
    fn prepare_create(&self, def: &ResourceDef, obj: &mut Value) -> Result<(), ApiError> {
        prepare::<ReplicaSet>(
            def,
            obj,
            orca_api::defaults::replica_set,
            v::validate_replica_set,
            Some(|rs| {
                rs.metadata.generation = Some(1);
                rs.status = Some(Default::default());
            }),
        )
    }

    fn prepare_update(
        &self,
        def: &ResourceDef,
        new: &mut Value,
        old: &Value,
    ) -> Result<(), ApiError> {
        let old: ReplicaSet = decoded(old)?;
        prepare::<ReplicaSet>(
            def,
            new,
            orca_api::defaults::replica_set,
            |rs| v::validate_replica_set_update(rs, &old),
            None,
        )
    }

    fn prepare_status_update(
        &self,
        def: &ResourceDef,
        new: &mut Value,
        old: &Value,
    ) -> Result<(), ApiError> {
        let old: ReplicaSet = decoded(old)?;
        prepare::<ReplicaSet>(
            def,
            new,
            orca_api::defaults::replica_set,
            |rs| v::validate_replica_set_status_update(rs, &old),
            None,
        )
    }

    fn bumps_generation(&self, new: &Value, old: &Value) -> bool {
        new["spec"] != old["spec"]
    }

    fn derived_subresources(&self) -> &'static [&'static str] {
        &["scale"]
    }

    fn scale(&self, obj: &Value) -> Option<ScaleView> {
        Some(replicas_view(obj, label_selector_string(obj)))
    }

    fn set_replicas(&self, obj: &mut Value, replicas: i32) {
        set_spec_replicas(obj, replicas);
    }

    fn returns_deleted_object(&self) -> bool {
        false
    }
}

pub struct ReplicationControllerStrategy;
pub static REPLICATION_CONTROLLER: ReplicationControllerStrategy = ReplicationControllerStrategy;

impl Strategy for ReplicationControllerStrategy {
    fn prepare_create(&self, def: &ResourceDef, obj: &mut Value) -> Result<(), ApiError> {
        prepare::<ReplicationController>(
            def,
            obj,
            orca_api::defaults::replication_controller,
            v::validate_replication_controller,
            Some(|rc| {
                rc.metadata.generation = Some(1);
                rc.status = Some(Default::default());
            }),
        )
    }

    fn prepare_update(
        &self,
        def: &ResourceDef,
        new: &mut Value,
        old: &Value,
    ) -> Result<(), ApiError> {
        let old: ReplicationController = decoded(old)?;
        prepare::<ReplicationController>(
            def,
            new,
            orca_api::defaults::replication_controller,
            |rc| v::validate_replication_controller_update(rc, &old),
            None,
        )
    }

    fn prepare_status_update(
        &self,
        def: &ResourceDef,
        new: &mut Value,
        old: &Value,
    ) -> Result<(), ApiError> {
        let old: ReplicationController = decoded(old)?;
        prepare::<ReplicationController>(
            def,
            new,
            orca_api::defaults::replication_controller,
            |rc| v::validate_replication_controller_status_update(rc, &old),
            None,
        )
    }

    fn bumps_generation(&self, new: &Value, old: &Value) -> bool {
        new["spec"] != old["spec"]
    }

    /// The selector is a plain label map (`a=b,c=d`).
    fn derived_subresources(&self) -> &'static [&'static str] {
        &["scale"]
    }

    fn scale(&self, obj: &Value) -> Option<ScaleView> {
        let selector: Vec<String> = obj["spec"]["selector"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
            .collect();
        Some(replicas_view(obj, selector.join(",")))
    }

    fn set_replicas(&self, obj: &mut Value, replicas: i32) {
        set_spec_replicas(obj, replicas);
    }

    /// Kept from before server-side garbage collection: deleting a
    /// ReplicationController leaves its pods unless asked otherwise.
    fn default_gc_policy(&self) -> GcPolicy {
        GcPolicy::OrphanDependents
    }

    fn returns_deleted_object(&self) -> bool {
        false
    }
}

pub struct PodTemplateStrategy;
pub static POD_TEMPLATE: PodTemplateStrategy = PodTemplateStrategy;

impl Strategy for PodTemplateStrategy {
    fn prepare_create(&self, def: &ResourceDef, obj: &mut Value) -> Result<(), ApiError> {
        prepare::<PodTemplate>(
            def,
            obj,
            orca_api::defaults::pod_template,
            v::validate_pod_template,
            None,
        )
    }

    fn prepare_update(
        &self,
        def: &ResourceDef,
        new: &mut Value,
        old: &Value,
    ) -> Result<(), ApiError> {
        prepare::<PodTemplate>(
            def,
            new,
            orca_api::defaults::pod_template,
            |_| Vec::new(),
            None,
        )?;
        validated(
            def,
            new,
            v::validate_update(def.kind, new, old, def.namespaced),
        )
    }

    fn returns_deleted_object(&self) -> bool {
        false
    }
}
