//! Pods: ServiceAccount and RuntimeClass admission, defaulted and validated from one typed
//! decode, graceful deletion, and what their status writers may change.

use std::sync::Arc;

use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::{json, Value};

use k8s_openapi::api::core::v1 as core;
use orca_api::validation::{
    validate_pod_ephemeral_containers_update, validate_status_update, validate_update,
};

use super::{being_deleted, no_finalizers, typed, validated, Strategy, Write};
use crate::resources::ResourceDef;
use crate::server::State;
use crate::status::ApiError;

pub struct Pod;
pub static POD: Pod = Pod;

impl Strategy for Pod {
    fn admit_create<'a>(
        &'a self,
        state: &'a Arc<State>,
        obj: &'a mut Value,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async move {
            super::service_account_admission::admit(state, obj).await?;
            super::node::admit_pod(state, obj).await
        })
    }

    /// ServiceAccount, Priority and DefaultTolerationSeconds admission
    /// (here partly in the defaults).
    fn admitted_fields(&self) -> &'static [&'static [&'static str]] {
        &[
            &["spec", "serviceAccount"],
            &["spec", "serviceAccountName"],
            &["spec", "priority"],
            &["spec", "preemptionPolicy"],
            &["spec", "tolerations"],
        ]
    }

    fn prepare_create(&self, def: &ResourceDef, obj: &mut Value) -> Result<(), ApiError> {
        let mut errs = Vec::new();
        typed::<core::Pod>(obj, |pod| {
            orca_api::defaults::pod(pod);
            pod.metadata.generation = Some(1);
            errs = orca_api::validation::validate_pod(pod);
        })?;
        validated(def, obj, errs)
    }

    fn prepare_update(
        &self,
        def: &ResourceDef,
        new: &mut Value,
        old: &Value,
    ) -> Result<(), ApiError> {
        if new["spec"].is_object() {
            let mut spec = new["spec"].take();
            typed::<core::PodSpec>(&mut spec, orca_api::defaults::pod_spec)?;
            new["spec"] = spec;
        }
        validated(
            def,
            new,
            validate_update(def.kind, new, old, def.namespaced),
        )
    }

    fn prepare_status_update(
        &self,
        def: &ResourceDef,
        new: &mut Value,
        old: &Value,
    ) -> Result<(), ApiError> {
        // Owner references are not the status writer's to change.
        match old["metadata"].get("ownerReferences") {
            Some(o) => new["metadata"]["ownerReferences"] = o.clone(),
            None => {
                if let Some(m) = new["metadata"].as_object_mut() {
                    m.remove("ownerReferences");
                }
            }
        }
        // Set at creation; a writer that drops it does not clear it.
        if new["status"]["qosClass"].as_str().is_none_or(str::is_empty) {
            if let Some(q) = old["status"].get("qosClass") {
                new["status"]["qosClass"] = q.clone();
            }
        }
        validated(
            def,
            new,
            validate_status_update(def.kind, new, old, def.namespaced),
        )
    }

    /// `pods/ephemeralcontainers`: only `spec.ephemeralContainers` comes
    /// from the client (defaulted); the rest of the pod stays as stored.
    fn prepare_subresource_update(
        &self,
        def: &ResourceDef,
        sub: &str,
        new: &Value,
        old: &Value,
    ) -> Option<Result<Value, ApiError>> {
        if sub != "ephemeralcontainers" {
            return None;
        }
        Some((|| {
            let mut out = old.clone();
            let mut spec = old["spec"].clone();
            match new["spec"].get("ephemeralContainers") {
                Some(e) => spec["ephemeralContainers"] = e.clone(),
                None => {
                    if let Some(m) = spec.as_object_mut() {
                        m.remove("ephemeralContainers");
                    }
                }
            }
            typed::<core::PodSpec>(&mut spec, orca_api::defaults::pod_spec)?;
            out["spec"] = spec;
            let errs = match (core::Pod::deserialize(&out), core::Pod::deserialize(old)) {
                (Ok(n), Ok(o)) => validate_pod_ephemeral_containers_update(&n, &o),
                (Err(e), _) | (_, Err(e)) => {
                    return Err(ApiError::bad_request(format!("cannot decode object: {e}")))
                }
            };
            validated(def, &out, errs)?;
            Ok(out)
        })())
    }

    fn bumps_generation(&self, new: &Value, old: &Value) -> bool {
        new["spec"] != old["spec"]
    }

    /// A pod bound to a node is given its grace period, for the node agent
    /// to stop its containers; an unbound or finished one goes at once.
    fn delete(&self, grace_period: Option<i64>, current: &Value) -> Result<Write, ApiError> {
        let bound = current["spec"]["nodeName"]
            .as_str()
            .is_some_and(|n| !n.is_empty());
        let terminal = matches!(
            current["status"]["phase"].as_str(),
            Some("Succeeded" | "Failed")
        );
        let mut grace = grace_period
            .or_else(|| current["spec"]["terminationGracePeriodSeconds"].as_i64())
            .unwrap_or(30);
        if !bound || terminal {
            grace = 0;
        }
        let existing = current["metadata"]["deletionGracePeriodSeconds"].as_i64();
        Ok(if grace == 0 && no_finalizers(current) {
            Write::Remove
        } else if existing.is_some_and(|e| e <= grace) {
            Write::Unchanged
        } else {
            let mut new = current.clone();
            let at = chrono::Utc::now() + chrono::Duration::seconds(grace);
            new["metadata"]["deletionTimestamp"] =
                json!(at.format("%Y-%m-%dT%H:%M:%SZ").to_string());
            new["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
            Write::Update(new)
        })
    }

    /// Only once the agent has confirmed the containers are gone (grace 0).
    fn finished_deleting(&self, v: &Value) -> bool {
        being_deleted(v)
            && no_finalizers(v)
            && v["metadata"]["deletionGracePeriodSeconds"].as_i64() == Some(0)
    }
}
