//! The garbage collector, as kube-controller-manager's (simplified, same
//! rules): it watches the metadata of every kind the API serves (events
//! aside) and keeps a graph of owners and dependents by uid.
//! - An object whose owners are all gone (no object with that uid) is
//!   deleted, in the background unless its own finalizers ask otherwise;
//!   references to owners that are gone are dropped from objects that
//!   still have a live owner.
//! - An owner deleted with `propagationPolicy: Foreground` carries the
//!   `foregroundDeletion` finalizer: its dependents that block it
//!   (`blockOwnerDeletion`) are deleted first, then the finalizer is
//!   removed and the API server removes the owner.
//! - An owner deleted with `Orphan` carries the `orphan` finalizer: its
//!   dependents lose their reference to it, then the finalizer goes.
//!
//! Reads: every resource (list, watch, get). Writes: every resource
//! (delete, patch ownerReferences and finalizers). (Kubernetes' bootstrap
//! role `system:controller:generic-garbage-collector`.)

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{
    Api, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions, PropagationPolicy,
};
use kube::discovery::{verbs, ApiResource, Discovery};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::Client;
use serde_json::json;

use crate::queue::WorkQueue;

const ORPHAN: &str = "orphan";
const FOREGROUND: &str = "foregroundDeletion";
const WORKERS: usize = 20;

/// One object in the graph.
#[derive(Clone)]
struct Node {
    resource: usize,
    namespace: Option<String>,
    name: String,
    owners: Vec<OwnerReference>,
    deleting: bool,
    finalizers: Vec<String>,
}

impl Node {
    fn has(&self, finalizer: &str) -> bool {
        self.finalizers.iter().any(|f| f == finalizer)
    }
}

#[derive(Default)]
struct Graph {
    nodes: HashMap<String, Node>,
    dependents: HashMap<String, HashSet<String>>,
}

impl Graph {
    fn dependents_of(&self, uid: &str) -> Vec<String> {
        self.dependents
            .get(uid)
            .map(|d| d.iter().cloned().collect())
            .unwrap_or_default()
    }
}

#[derive(Clone, PartialEq, Eq, Hash)]
enum Work {
    /// Delete the object if its owners are gone; for an owner being
    /// deleted in the foreground, delete its blocking dependents.
    AttemptToDelete(String),
    /// Drop the dependents' references to an owner with `orphan`.
    Orphan(String),
}

struct Collector {
    client: Client,
    /// The kinds watched, and whether each lives in namespaces.
    resources: Vec<(ApiResource, bool)>,
    graph: Mutex<Graph>,
    queue: Arc<WorkQueue<Work>>,
}

/// The kinds to watch: everything listable, watchable and deletable,
/// except events (as Kubernetes' collector ignores them).
async fn collectable(client: &Client) -> anyhow::Result<Vec<(ApiResource, bool)>> {
    let discovery = Discovery::new(client.clone()).run().await?;
    let mut out = Vec::new();
    for group in discovery.groups() {
        for (ar, caps) in group.recommended_resources() {
            if ar.plural == "events"
                || !caps.supports_operation(verbs::LIST)
                || !caps.supports_operation(verbs::WATCH)
                || !caps.supports_operation(verbs::DELETE)
            {
                continue;
            }
            let namespaced = caps.scope == kube::discovery::Scope::Namespaced;
            out.push((ar, namespaced));
        }
    }
    Ok(out)
}

/// Watches through the controller manager's informers' client, writes as
/// `generic-garbage-collector`.
pub async fn run(clients: &crate::Clients) -> anyhow::Result<()> {
    let client = clients.informers();
    let resources = collectable(&client).await?;
    let (queue, rx) = WorkQueue::new();
    let c = Arc::new(Collector {
        client: clients.controller("generic-garbage-collector"),
        resources: resources.clone(),
        graph: Mutex::default(),
        queue: Arc::new(queue),
    });
    let watches = futures::future::join_all(resources.iter().enumerate().map(|(i, (ar, _))| {
        let c = c.clone();
        let api = Api::<DynamicObject>::all_with(client.clone(), ar);
        watcher::metadata_watcher(api, watcher::Config::default())
            .default_backoff()
            .for_each(move |ev| {
                match ev {
                    Ok(Event::Apply(o) | Event::InitApply(o)) => c.observed(i, &o.metadata, false),
                    Ok(Event::Delete(o)) => c.observed(i, &o.metadata, true),
                    _ => {}
                }
                futures::future::ready(())
            })
    }));
    let work = crate::queue::work(&c.queue, rx, WORKERS, {
        let c = c.clone();
        move |w: Work| {
            let c = c.clone();
            async move {
                let result = match &w {
                    Work::AttemptToDelete(uid) => c.attempt_to_delete(uid).await,
                    Work::Orphan(uid) => c.orphan_dependents(uid).await,
                };
                match result {
                    Ok(()) => None,
                    Err(e) => {
                        tracing::debug!("garbage collection step failed (will retry): {e:#}");
                        Some(Duration::from_secs(1))
                    }
                }
            }
        }
    });
    tokio::join!(watches, work);
    Ok(())
}

impl Collector {
    /// Updates the graph from a watch event and queues what it calls for.
    fn observed(&self, resource: usize, meta: &kube::api::ObjectMeta, deleted: bool) {
        let Some(uid) = meta.uid.clone() else {
            return;
        };
        let mut g = self.graph.lock().unwrap_or_else(|p| p.into_inner());
        let owners = meta.owner_references.clone().unwrap_or_default();
        if let Some(old) = g.nodes.get(&uid).cloned() {
            for o in &old.owners {
                if let Some(d) = g.dependents.get_mut(&o.uid) {
                    d.remove(&uid);
                }
            }
        }
        if deleted {
            g.nodes.remove(&uid);
            for o in &owners {
                // An owner deleting in the foreground may now be free.
                if g.nodes
                    .get(&o.uid)
                    .is_some_and(|n| n.deleting && n.has(FOREGROUND))
                {
                    self.queue.add(Work::AttemptToDelete(o.uid.clone()));
                }
            }
            for d in g.dependents_of(&uid) {
                self.queue.add(Work::AttemptToDelete(d));
            }
            return;
        }
        let node = Node {
            resource,
            namespace: meta.namespace.clone(),
            name: meta.name.clone().unwrap_or_default(),
            owners: owners.clone(),
            deleting: meta.deletion_timestamp.is_some(),
            finalizers: meta.finalizers.clone().unwrap_or_default(),
        };
        for o in &owners {
            g.dependents
                .entry(o.uid.clone())
                .or_default()
                .insert(uid.clone());
            if !g.nodes.contains_key(&o.uid) {
                // Perhaps not seen yet, perhaps gone: a live look decides.
                self.queue.add(Work::AttemptToDelete(uid.clone()));
            } else if g
                .nodes
                .get(&o.uid)
                .is_some_and(|n| n.deleting && n.has(FOREGROUND))
            {
                self.queue.add(Work::AttemptToDelete(o.uid.clone()));
            }
        }
        if node.deleting && node.has(FOREGROUND) {
            self.queue.add(Work::AttemptToDelete(uid.clone()));
        }
        if node.deleting && node.has(ORPHAN) {
            self.queue.add(Work::Orphan(uid.clone()));
        }
        g.nodes.insert(uid, node);
    }

    fn api(&self, resource: usize, namespace: Option<&str>) -> Api<DynamicObject> {
        let ar = &self.resources[resource].0;
        match namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, ar),
            None => Api::all_with(self.client.clone(), ar),
        }
    }

    fn resource_of(&self, r: &OwnerReference) -> Option<usize> {
        self.resources
            .iter()
            .position(|(ar, _)| ar.api_version == r.api_version && ar.kind == r.kind)
    }

    /// Whether the owner `r` of an object in `namespace` exists (with that
    /// uid), and whether it is being deleted in the foreground.
    async fn owner_state(
        &self,
        r: &OwnerReference,
        namespace: Option<&str>,
    ) -> anyhow::Result<Option<bool>> {
        if let Some(n) = self
            .graph
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .nodes
            .get(&r.uid)
        {
            return Ok(Some(n.deleting && n.has(FOREGROUND)));
        }
        let Some(i) = self.resource_of(r) else {
            // A kind this server does not serve: it cannot exist.
            return Ok(None);
        };
        let ns = if self.resources[i].1 { namespace } else { None };
        match self.api(i, ns).get_metadata_opt(&r.name).await? {
            Some(o) if o.metadata.uid.as_deref() == Some(r.uid.as_str()) => Ok(Some(
                o.metadata.deletion_timestamp.is_some()
                    && o.metadata
                        .finalizers
                        .iter()
                        .flatten()
                        .any(|f| f == FOREGROUND),
            )),
            _ => Ok(None),
        }
    }

    async fn attempt_to_delete(&self, uid: &str) -> anyhow::Result<()> {
        let Some(node) = self
            .graph
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .nodes
            .get(uid)
            .cloned()
        else {
            return Ok(());
        };
        if node.deleting {
            if node.has(FOREGROUND) {
                return self.delete_dependents_first(uid, &node).await;
            }
            return Ok(());
        }
        if node.owners.is_empty() {
            return Ok(());
        }
        let (mut solid, mut dangling, mut waiting) = (0, Vec::new(), 0);
        for r in &node.owners {
            match self.owner_state(r, node.namespace.as_deref()).await? {
                None => dangling.push(r.uid.clone()),
                Some(true) => waiting += 1,
                Some(false) => solid += 1,
            }
        }
        let api = self.api(node.resource, node.namespace.as_deref());
        if solid > 0 {
            if dangling.is_empty() {
                return Ok(());
            }
            // Keep the live owners, drop the references to the gone ones.
            let kept: Vec<&OwnerReference> = node
                .owners
                .iter()
                .filter(|r| !dangling.contains(&r.uid))
                .collect();
            let patch = json!({"metadata": {"ownerReferences": kept, "uid": uid}});
            api.patch(&node.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
            return Ok(());
        }
        let has_dependents = !self
            .graph
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .dependents_of(uid)
            .is_empty();
        let policy = if node.has(ORPHAN) {
            PropagationPolicy::Orphan
        } else if node.has(FOREGROUND) || (waiting > 0 && has_dependents) {
            PropagationPolicy::Foreground
        } else {
            PropagationPolicy::Background
        };
        let params = DeleteParams {
            propagation_policy: Some(policy),
            preconditions: Some(Preconditions {
                uid: Some(uid.to_string()),
                resource_version: None,
            }),
            ..Default::default()
        };
        tracing::debug!(
            object = node.name,
            "deleting an object whose owners are gone"
        );
        match api.delete(&node.name, &params).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// An owner deleting in the foreground: its blocking dependents go
    /// first; once none is left, its finalizer is removed.
    async fn delete_dependents_first(&self, uid: &str, node: &Node) -> anyhow::Result<()> {
        let blocking: Vec<String> = {
            let g = self.graph.lock().unwrap_or_else(|p| p.into_inner());
            g.dependents_of(uid)
                .into_iter()
                .filter(|d| {
                    g.nodes.get(d).is_some_and(|n| {
                        n.owners
                            .iter()
                            .any(|r| r.uid == uid && r.block_owner_deletion == Some(true))
                    })
                })
                .collect()
        };
        if blocking.is_empty() {
            return self.remove_finalizer(node, uid, FOREGROUND).await;
        }
        for d in blocking {
            let deleting = self
                .graph
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .nodes
                .get(&d)
                .is_some_and(|n| n.deleting);
            if !deleting {
                let n = self
                    .graph
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .nodes
                    .get(&d)
                    .cloned();
                if let Some(n) = n {
                    // As kube-controller-manager: a dependent with dependents
                    // of its own goes in the foreground too, so the owner
                    // waits for the whole tree (a Deployment for its pods,
                    // not only its ReplicaSets).
                    let has_dependents = !self
                        .graph
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .dependents_of(&d)
                        .is_empty();
                    let policy = if has_dependents {
                        PropagationPolicy::Foreground
                    } else {
                        PropagationPolicy::Background
                    };
                    let params = DeleteParams {
                        propagation_policy: Some(policy),
                        preconditions: Some(Preconditions {
                            uid: Some(d.clone()),
                            resource_version: None,
                        }),
                        ..Default::default()
                    };
                    match self
                        .api(n.resource, n.namespace.as_deref())
                        .delete(&n.name, &params)
                        .await
                    {
                        Ok(_)
                        | Err(kube::Error::Api(kube::core::ErrorResponse {
                            code: 404 | 409,
                            ..
                        })) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
        Ok(())
    }

    /// Removes `finalizer`, guarded by the object's resourceVersion.
    async fn remove_finalizer(
        &self,
        node: &Node,
        uid: &str,
        finalizer: &str,
    ) -> anyhow::Result<()> {
        let api = self.api(node.resource, node.namespace.as_deref());
        let Some(cur) = api.get_metadata_opt(&node.name).await? else {
            return Ok(());
        };
        if cur.metadata.uid.as_deref() != Some(uid) {
            return Ok(());
        }
        let kept: Vec<String> = cur
            .metadata
            .finalizers
            .iter()
            .flatten()
            .filter(|f| *f != finalizer)
            .cloned()
            .collect();
        let patch = json!({"metadata": {"finalizers": kept, "resourceVersion": cur.metadata.resource_version}});
        match api
            .patch(&node.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) | Err(kube::Error::Api(kube::core::ErrorResponse { code: 404, .. })) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// An owner deleting with `orphan`: its dependents lose their
    /// reference to it, then its finalizer goes.
    async fn orphan_dependents(&self, uid: &str) -> anyhow::Result<()> {
        let (node, dependents) = {
            let g = self.graph.lock().unwrap_or_else(|p| p.into_inner());
            let Some(n) = g.nodes.get(uid).cloned() else {
                return Ok(());
            };
            let deps: Vec<Node> = g
                .dependents_of(uid)
                .iter()
                .filter_map(|d| g.nodes.get(d).cloned())
                .collect();
            (n, deps)
        };
        for d in dependents {
            let api = self.api(d.resource, d.namespace.as_deref());
            let Some(cur) = api.get_metadata_opt(&d.name).await? else {
                continue;
            };
            let refs = cur.metadata.owner_references.clone().unwrap_or_default();
            if !refs.iter().any(|r| r.uid == uid) {
                continue;
            }
            let kept: Vec<&OwnerReference> = refs.iter().filter(|r| r.uid != uid).collect();
            let patch = json!({"metadata": {"ownerReferences": kept, "resourceVersion": cur.metadata.resource_version}});
            match api
                .patch(&d.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) | Err(kube::Error::Api(kube::core::ErrorResponse { code: 404, .. })) => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.remove_finalizer(&node, uid, ORPHAN).await
    }
}
