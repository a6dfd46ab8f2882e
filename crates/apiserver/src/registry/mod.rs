//! What is particular to each resource, kept out of the generic verbs (as
//! kube-apiserver's registry strategies): defaults and validation on create
//! and update, what a status write may change, what DELETE does, and side
//! effects after a delete. A resource without particulars uses [`GENERIC`];
//! printing and the validation rules themselves live in `orca-api`.

mod allocator;
mod apps_batch;
pub mod certificates;
mod endpoints;
mod namespaces;
mod node;
mod pods;
mod rbac;
mod reviews;
mod service_account_admission;
mod serviceaccounts;
mod services;
mod simple;
mod storage;
mod workloads;

use std::sync::Arc;

use futures::future::BoxFuture;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

use orca_api::validation::{
    invalid_message, validate_new, validate_status_update, validate_update, FieldError,
};

use crate::handlers::Ctx;
use crate::resources::ResourceDef;
use crate::server::State;
use crate::status::ApiError;

pub use allocator::{ServiceNetwork, ServiceNetworkError, CLUSTER_DNS_SERVICE};
pub use apps_batch::{
    CONTROLLER_REVISION, CRON_JOB, DAEMON_SET, JOB, POD_DISRUPTION_BUDGET, STATEFUL_SET,
};
pub use certificates::CERTIFICATE_SIGNING_REQUEST;
pub use endpoints::{ENDPOINTS, ENDPOINT_SLICE};
pub use namespaces::NAMESPACE;
pub use node::RUNTIME_CLASS;
pub use pods::POD;
pub use rbac::{BINDING, ROLE};
pub use reviews::{
    LOCAL_SUBJECT_ACCESS_REVIEW, SELF_SUBJECT_ACCESS_REVIEW, SELF_SUBJECT_REVIEW,
    SELF_SUBJECT_RULES_REVIEW, SUBJECT_ACCESS_REVIEW, TOKEN_REVIEW,
};
pub use serviceaccounts::SERVICE_ACCOUNT;
pub use services::SERVICE;
pub use simple::{NODE, SECRET};
pub use storage::{
    CSI_DRIVER, CSI_NODE, CSI_STORAGE_CAPACITY, PERSISTENT_VOLUME, PERSISTENT_VOLUME_CLAIM,
    STORAGE_CLASS, VOLUME_ATTACHMENT,
};
pub use workloads::{DEPLOYMENT, POD_TEMPLATE, REPLICATION_CONTROLLER, REPLICA_SET};

pub(crate) use allocator::{
    repair as repair_service_allocations, repair_loop as repair_service_allocations_loop,
};

/// The outcome of preparing a write against the current object.
pub enum Write {
    /// Store this new version.
    Update(Value),
    /// Remove the object.
    Remove,
    /// Nothing changes; answer with the current object.
    Unchanged,
}

/// Where a subresource create goes.
pub struct SubresourceTarget<'a> {
    pub namespace: Option<&'a str>,
    pub name: &'a str,
    pub sub: &'a str,
}

/// The verbs most resources serve.
pub const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

#[async_trait::async_trait]
pub trait Strategy: Sync {
    /// Kinds answered rather than stored (the access reviews): the answer
    /// to a create of `obj`. `None` for stored kinds.
    async fn answer(&self, _ctx: &Ctx<'_>, _obj: Value) -> Option<Result<Value, ApiError>> {
        None
    }

    /// Checks that depend on who writes (RBAC's escalation prevention, who
    /// may approve or sign a certificate request), on create (`old` is
    /// None) and update of the resource or subresource `sub`, after
    /// validation.
    fn authorize_write(
        &self,
        _ctx: &Ctx<'_>,
        _sub: Option<&str>,
        _new: &Value,
        _old: Option<&Value>,
    ) -> Result<(), ApiError> {
        Ok(())
    }

    /// Records who asks, on create, for kinds that keep it (a
    /// CertificateSigningRequest's `spec.username` and groups).
    fn set_requester(&self, _user: &crate::auth::UserInfo, _obj: &mut Value) {}

    /// Admission that reads other objects (for pods, the ServiceAccount
    /// admission plugin), run once on create, dry run included, before
    /// [`Strategy::prepare_create`].
    fn admit_create<'a>(
        &'a self,
        _state: &'a Arc<State>,
        _obj: &'a mut Value,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async { Ok(()) })
    }

    /// Fields the mutating admission plugins fill on create (in
    /// kube-apiserver they run after the field manager has recorded the
    /// create): a creator that did not send them does not own them.
    fn admitted_fields(&self) -> &'static [&'static [&'static str]] {
        &[]
    }

    /// A POST to subresource `sub` of object `name` that makes something
    /// other than the object (serviceaccounts/token): `body` is the decoded
    /// request, already checked against the subresource's kind. Answers the
    /// object to return with 201. Such subresources store nothing, so a dry
    /// run is answered as the real request (as kube-apiserver does).
    fn create_subresource<'a>(
        &'a self,
        _state: &'a Arc<State>,
        _target: SubresourceTarget<'a>,
        _body: Value,
    ) -> BoxFuture<'a, Result<Value, ApiError>> {
        Box::pin(async {
            Err(ApiError::method_not_allowed(
                "the server does not allow this method on the requested resource",
            ))
        })
    }

    /// Defaults and validation of a new object (PrepareForCreate, Validate).
    fn prepare_create(&self, def: &ResourceDef, obj: &mut Value) -> Result<(), ApiError> {
        validated(def, obj, validate_new(def.kind, obj, def.namespaced))
    }

    /// Defaults and validation of an update of the main resource, after the
    /// server-owned metadata has been restored from `old`.
    fn prepare_update(
        &self,
        def: &ResourceDef,
        new: &mut Value,
        old: &Value,
    ) -> Result<(), ApiError> {
        validated(
            def,
            new,
            validate_update(def.kind, new, old, def.namespaced),
        )
    }

    /// A write through the `status` subresource. `new` is the stored object
    /// with the client's metadata and status: the strategy puts back what
    /// status writers may not change, then validates only the status.
    fn prepare_status_update(
        &self,
        def: &ResourceDef,
        new: &mut Value,
        old: &Value,
    ) -> Result<(), ApiError> {
        validated(
            def,
            new,
            validate_status_update(def.kind, new, old, def.namespaced),
        )
    }

    /// A write through a subresource that replaces one part of the stored
    /// object (`pods/ephemeralcontainers`, as Kubernetes' strategy for it):
    /// the version to store, built from the stored `old` and the client's
    /// object `new`, defaulted and validated. `None` when `sub` is not
    /// written this way.
    fn prepare_subresource_update(
        &self,
        _def: &ResourceDef,
        _sub: &str,
        _new: &Value,
        _old: &Value,
    ) -> Option<Result<Value, ApiError>> {
        None
    }

    /// Whether an update (prepared, `new` against the stored `old`) starts
    /// a new `metadata.generation`: for kinds that count them, a changed
    /// spec.
    fn bumps_generation(&self, _new: &Value, _old: &Value) -> bool {
        false
    }

    /// Subresources that are views the strategy builds from the object
    /// rather than parts stored in it (`scale`, from `spec.replicas`): a
    /// write through one arrives as the whole object with the view's change
    /// already made.
    fn derived_subresources(&self) -> &'static [&'static str] {
        &[]
    }

    /// The `scale` subresource's view of an object, for kinds that serve
    /// one.
    fn scale(&self, _obj: &Value) -> Option<ScaleView> {
        None
    }

    /// Sets the desired replicas (a write through `scale`).
    fn set_replicas(&self, _obj: &mut Value, _replicas: i32) {}

    /// What DELETE does to the dependents when the client does not say
    /// (kube-apiserver's `DefaultGarbageCollectionPolicy`).
    fn default_gc_policy(&self) -> GcPolicy {
        GcPolicy::DeleteDependents
    }

    /// Whether a DELETE that removes the object answers with the object
    /// (as pods do) rather than a `Status` naming it.
    fn returns_deleted_object(&self) -> bool {
        true
    }

    /// What DELETE does to `current` (preconditions already checked): by
    /// default an object with finalizers is marked and kept until they are
    /// gone, any other is removed.
    fn delete(&self, _grace_period: Option<i64>, current: &Value) -> Result<Write, ApiError> {
        Ok(mark_for_finalizers(current))
    }

    /// Whether an object being deleted may now be removed from the store.
    fn finished_deleting(&self, v: &Value) -> bool {
        being_deleted(v) && no_finalizers(v)
    }

    /// Work that follows an accepted (not dry-run) delete of `name`.
    fn after_delete(&self, _state: &Arc<State>, _name: &str) {}

    // Side effects around the store write, for resources that hold
    // something outside their own key (a Service's cluster IP and node
    // ports), as kube-apiserver's BeginCreate/BeginUpdate hooks. The
    // handlers call them in this order: `begin_create`, `prepare_create`,
    // the store write, then `finish_create` with whether the object was
    // stored (not called for dry runs); for updates `prepare_update`,
    // `begin_update`, the write, `finish_update`; `after_remove` once an
    // object has left the store. A dry run must change nothing outside the
    // request. The defaults do nothing.

    /// Before a new object is defaulted, validated and stored: may fill
    /// fields of `obj` from what it takes.
    fn begin_create<'a>(
        &'a self,
        _state: &'a Arc<State>,
        _obj: &'a mut Value,
        _dry_run: bool,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async { Ok(()) })
    }

    /// After the create was stored, or given up (`stored` false): undo
    /// what `begin_create` took.
    fn finish_create<'a>(
        &'a self,
        _state: &'a Arc<State>,
        _obj: &'a Value,
        _stored: bool,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }

    /// Before an update (already prepared and validated against `old`) is
    /// stored: may fill fields of `new`.
    fn begin_update<'a>(
        &'a self,
        _state: &'a Arc<State>,
        _new: &'a mut Value,
        _old: &'a Value,
        _dry_run: bool,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async { Ok(()) })
    }

    /// After the update was stored (give back what only `old` held) or
    /// given up (give back what `begin_update` took).
    fn finish_update<'a>(
        &'a self,
        _state: &'a Arc<State>,
        _new: &'a Value,
        _old: &'a Value,
        _stored: bool,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }

    /// After `removed` left the store.
    fn after_remove<'a>(
        &'a self,
        _state: &'a Arc<State>,
        _removed: &'a Value,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }

    fn verbs(&self) -> &'static [&'static str] {
        ALL_VERBS
    }
}

/// What an object's `scale` subresource shows.
pub struct ScaleView {
    /// `spec.replicas`.
    pub desired: i64,
    /// `status.replicas`.
    pub current: i64,
    /// The pod selector, as a label selector string.
    pub selector: String,
}

/// kube-apiserver's garbage collection policies.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum GcPolicy {
    /// Deleting the owner deletes its dependents (in the background
    /// unless asked otherwise).
    DeleteDependents,
    /// Deleting the owner leaves its dependents, their references to it
    /// removed (ReplicationControllers, for compatibility).
    OrphanDependents,
    /// DELETE ignores propagation options (namespaces clean up by
    /// themselves).
    Unsupported,
}

/// The strategy of resources stored as they are validated.
pub struct Generic;
impl Strategy for Generic {}
pub static GENERIC: Generic = Generic;

pub(crate) fn being_deleted(v: &Value) -> bool {
    !v["metadata"]["deletionTimestamp"].is_null()
}

pub(crate) fn no_finalizers(v: &Value) -> bool {
    v["metadata"]["finalizers"]
        .as_array()
        .is_none_or(|f| f.is_empty())
}

/// Kubernetes' generic delete: with finalizers, set the deletion timestamp
/// once and keep the object; without, remove it.
fn mark_for_finalizers(current: &Value) -> Write {
    if no_finalizers(current) {
        return Write::Remove;
    }
    if being_deleted(current) {
        return Write::Unchanged;
    }
    let mut new = current.clone();
    new["metadata"]["deletionTimestamp"] = json!(crate::handlers::now());
    new["metadata"]["deletionGracePeriodSeconds"] = json!(0);
    Write::Update(new)
}

/// Runs `f` on the typed form of `v` (defaulting), then stores it back.
fn typed<T: DeserializeOwned + Serialize>(
    v: &mut Value,
    f: impl FnOnce(&mut T),
) -> Result<(), ApiError> {
    let mut t = T::deserialize(&*v)
        .map_err(|e| ApiError::bad_request(format!("cannot decode object: {e}")))?;
    f(&mut t);
    *v = serde_json::to_value(t)
        .map_err(|e| ApiError::internal(format!("cannot encode object: {e}")))?;
    Ok(())
}

/// 422 with Kubernetes' message and causes when `errs` is not empty.
fn validated(def: &ResourceDef, v: &Value, errs: Vec<FieldError>) -> Result<(), ApiError> {
    if errs.is_empty() {
        return Ok(());
    }
    let name = v["metadata"]["name"].as_str().unwrap_or_default();
    let status = orca_api::validation::invalid_status(def.group, def.kind, name, &errs);
    Err(ApiError::new(
        422,
        "Invalid",
        invalid_message(def.group, def.kind, name, &errs),
    )
    .with_details(status["details"].clone()))
}
