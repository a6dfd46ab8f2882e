//! The ReplicaSet controller, which also runs ReplicationControllers (the
//! same logic, as in Kubernetes): keeps `spec.replicas` active pods
//! matching the selector. It adopts orphan pods its selector matches,
//! releases pods it owns that no longer match, creates missing pods from
//! the template in slow-start batches (1, 2, 4, ... up to 500 a sync),
//! deletes surplus pods in Kubernetes' order, and writes the status
//! (replicas, fullyLabeledReplicas, readyReplicas, availableReplicas after
//! minReadySeconds, observedGeneration, the ReplicaFailure condition).
//!
//! Reads: replicasets, replicationcontrollers, pods. Writes: pods (create,
//! delete, patch ownerReferences), replicasets/status,
//! replicationcontrollers/status, events. (Kubernetes' bootstrap roles
//! `system:controller:replicaset-controller` and
//! `system:controller:replication-controller`.)

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{ObjectReference, Pod, PodTemplateSpec, ReplicationController};
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use kube::runtime::reflector::{self, Store};
use kube::{Client, Resource, ResourceExt};
use orca_api::selectors::LabelSelector;
use serde_json::json;

use crate::events::Recorder;
use crate::pods::{self, Expectations};
use crate::wiring::{key_of, QueueKey, Wiring};

/// Pods created or deleted in one sync at most (kube-controller-manager's
/// burstReplicas).
const BURST: usize = 500;
/// Syncs running at once (--concurrent-replicaset-syncs).
const WORKERS: usize = 5;

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Kind {
    ReplicaSet,
    ReplicationController,
}

impl Kind {
    fn api_version(self) -> &'static str {
        match self {
            Kind::ReplicaSet => "apps/v1",
            Kind::ReplicationController => "v1",
        }
    }
    fn name(self) -> &'static str {
        match self {
            Kind::ReplicaSet => "ReplicaSet",
            Kind::ReplicationController => "ReplicationController",
        }
    }
    fn component(self) -> &'static str {
        match self {
            Kind::ReplicaSet => "replicaset-controller",
            Kind::ReplicationController => "replication-controller",
        }
    }
}

type Key = (Kind, String, String);

impl QueueKey for Key {
    fn describe(&self) -> String {
        format!("{}/{}/{}", self.0.name(), self.1, self.2)
    }
}

/// A ReplicaSet or ReplicationController as this controller uses it.
struct Owner {
    kind: Kind,
    namespace: String,
    name: String,
    uid: String,
    generation: i64,
    replicas: i32,
    /// None when empty or invalid: it selects nothing.
    selector: Option<LabelSelector>,
    template: Option<PodTemplateSpec>,
    min_ready: i32,
    deleting: bool,
    status: serde_json::Value,
}

impl Owner {
    fn from_rs(rs: &ReplicaSet) -> Owner {
        let spec = rs.spec.clone().unwrap_or_default();
        Owner {
            kind: Kind::ReplicaSet,
            namespace: rs.namespace().unwrap_or_default(),
            name: rs.name_any(),
            uid: rs.uid().unwrap_or_default(),
            generation: rs.metadata.generation.unwrap_or(0),
            replicas: spec.replicas.unwrap_or(1),
            selector: LabelSelector::from_api(&spec.selector)
                .ok()
                .filter(|s| !s.is_empty()),
            template: spec.template,
            min_ready: spec.min_ready_seconds.unwrap_or(0),
            deleting: rs.metadata.deletion_timestamp.is_some(),
            status: serde_json::to_value(rs.status.clone().unwrap_or_default()).unwrap_or_default(),
        }
    }

    fn from_rc(rc: &ReplicationController) -> Owner {
        let spec = rc.spec.clone().unwrap_or_default();
        let selector = spec.selector.clone().unwrap_or_default();
        let selector = LabelSelector::parse(
            &selector
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(","),
        )
        .ok()
        .filter(|s| !s.is_empty());
        Owner {
            kind: Kind::ReplicationController,
            namespace: rc.namespace().unwrap_or_default(),
            name: rc.name_any(),
            uid: rc.uid().unwrap_or_default(),
            generation: rc.metadata.generation.unwrap_or(0),
            replicas: spec.replicas.unwrap_or(1),
            selector,
            template: spec.template,
            min_ready: spec.min_ready_seconds.unwrap_or(0),
            deleting: rc.metadata.deletion_timestamp.is_some(),
            status: serde_json::to_value(rc.status.clone().unwrap_or_default()).unwrap_or_default(),
        }
    }

    fn key(&self) -> String {
        format!("{}/{}/{}", self.kind.name(), self.namespace, self.name)
    }

    fn reference(&self) -> ObjectReference {
        ObjectReference {
            api_version: Some(self.kind.api_version().into()),
            kind: Some(self.kind.name().into()),
            name: Some(self.name.clone()),
            namespace: Some(self.namespace.clone()),
            uid: Some(self.uid.clone()),
            ..Default::default()
        }
    }

    fn selects(&self, pod: &Pod) -> bool {
        self.selector
            .as_ref()
            .is_some_and(|s| s.matches(pod.labels()))
    }
}

struct Controller {
    /// Writes for ReplicaSets and their pods, as `replicaset-controller`.
    rs_client: Client,
    /// Writes for ReplicationControllers and their pods, as
    /// `replication-controller`.
    rc_client: Client,
    pods: Store<Pod>,
    replicasets: Store<ReplicaSet>,
    controllers: Store<ReplicationController>,
    expectations: Expectations,
    rs_events: Recorder,
    rc_events: Recorder,
}

pub async fn run(clients: &crate::Clients) -> anyhow::Result<()> {
    let rs_client = clients.controller(Kind::ReplicaSet.component());
    let rc_client = clients.controller(Kind::ReplicationController.component());
    let mut w = Wiring::new(Kind::ReplicaSet.component(), clients.informers());
    let replicasets = w.watch(|o: &ReplicaSet| Some(key(Kind::ReplicaSet, o)));
    let controllers =
        w.watch(|o: &ReplicationController| Some(key(Kind::ReplicationController, o)));
    let pods = w.watch({
        let replicasets = replicasets.clone();
        let controllers = controllers.clone();
        move |p: &Pod| owners_to_sync(p, &replicasets, &controllers)
    });
    let c = Arc::new(Controller {
        rs_client: rs_client.clone(),
        rc_client: rc_client.clone(),
        pods,
        replicasets,
        controllers,
        expectations: Expectations::default(),
        rs_events: Recorder::new(rs_client, Kind::ReplicaSet.component()),
        rc_events: Recorder::new(rc_client, Kind::ReplicationController.component()),
    });
    w.run(c, WORKERS, |c, key| async move { Ok(c.sync(&key).await) })
        .await;
    Ok(())
}

fn key(kind: Kind, o: &impl Resource) -> Key {
    let (ns, name) = key_of(o);
    (kind, ns, name)
}

/// The owners to sync when `pod` changed: its controller, and for an
/// orphan every owner in its namespace that selects it.
fn owners_to_sync(
    pod: &Pod,
    replicasets: &Store<ReplicaSet>,
    controllers: &Store<ReplicationController>,
) -> Vec<Key> {
    let ns = pod.namespace().unwrap_or_default();
    if let Some(r) = pods::controller_of(&pod.metadata) {
        let kind = match (r.api_version.as_str(), r.kind.as_str()) {
            ("apps/v1", "ReplicaSet") => Kind::ReplicaSet,
            ("v1", "ReplicationController") => Kind::ReplicationController,
            _ => return Vec::new(),
        };
        return vec![(kind, ns, r.name.clone())];
    }
    let mut keys = Vec::new();
    for rs in replicasets.state() {
        if rs.namespace().as_deref() == Some(ns.as_str()) && Owner::from_rs(&rs).selects(pod) {
            keys.push(key(Kind::ReplicaSet, rs.as_ref()));
        }
    }
    for rc in controllers.state() {
        if rc.namespace().as_deref() == Some(ns.as_str()) && Owner::from_rc(&rc).selects(pod) {
            keys.push(key(Kind::ReplicationController, rc.as_ref()));
        }
    }
    keys
}

impl Controller {
    fn client(&self, kind: Kind) -> Client {
        match kind {
            Kind::ReplicaSet => self.rs_client.clone(),
            Kind::ReplicationController => self.rc_client.clone(),
        }
    }

    fn owner(&self, key: &Key) -> Option<Owner> {
        let (kind, ns, name) = key;
        match kind {
            Kind::ReplicaSet => self
                .replicasets
                .get(&reflector::ObjectRef::new(name).within(ns))
                .map(|o| Owner::from_rs(&o)),
            Kind::ReplicationController => self
                .controllers
                .get(&reflector::ObjectRef::new(name).within(ns))
                .map(|o| Owner::from_rc(&o)),
        }
    }

    /// One sync; returns when to sync again if time alone will change the
    /// outcome (minReadySeconds) or a step failed.
    async fn sync(&self, key: &Key) -> Option<Duration> {
        let Some(owner) = self.owner(key) else {
            self.expectations.forget(&key.describe());
            return None;
        };
        let pods_api: Api<Pod> = Api::namespaced(self.client(owner.kind), &owner.namespace);
        let in_namespace: Vec<Arc<Pod>> = self
            .pods
            .state()
            .into_iter()
            .filter(|p| p.namespace().as_deref() == Some(owner.namespace.as_str()))
            .collect();
        let mut retry = None;
        let mut owned: Vec<Arc<Pod>> = Vec::new();
        for pod in in_namespace.iter().filter(|p| pods::is_active(p)) {
            match pods::controller_of(&pod.metadata) {
                Some(r) if r.uid == owner.uid => {
                    if owner.selects(pod) || owner.deleting {
                        owned.push(pod.clone());
                    } else if let Err(e) = pods::set_controller(&pods_api, pod, None).await {
                        tracing::warn!(
                            controller = owner.key(),
                            pod = pod.name_any(),
                            "releasing a pod that no longer matches failed: {e}"
                        );
                        retry = Some(Duration::from_secs(1));
                    }
                }
                None if owner.selects(pod) && !owner.deleting => {
                    let me = pods::controller_ref(
                        owner.kind.api_version(),
                        owner.kind.name(),
                        &owner.name,
                        &owner.uid,
                    );
                    match pods::set_controller(&pods_api, pod, Some(&me)).await {
                        Ok(()) => owned.push(pod.clone()),
                        Err(e) => {
                            tracing::debug!(
                                controller = owner.key(),
                                pod = pod.name_any(),
                                "adopting a pod failed: {e}"
                            );
                            retry = Some(Duration::from_secs(1));
                        }
                    }
                }
                _ => {}
            }
        }
        let key_s = owner.key();
        let satisfied = self.expectations.satisfied(&key_s, |name| {
            in_namespace
                .iter()
                .find(|p| p.metadata.name.as_deref() == Some(name))
                .map(|p| p.metadata.deletion_timestamp.is_some())
        });
        let mut failure = None;
        if satisfied && !owner.deleting {
            failure = self.manage(&owner, &owned, &pods_api).await;
        }
        if let Some(after) = self.write_status(&owner, &owned, failure).await {
            retry = Some(retry.map_or(after, |r: Duration| r.min(after)));
        }
        retry
    }

    /// Creates or deletes pods towards `replicas`; returns a create error
    /// to report in the ReplicaFailure condition.
    async fn manage(&self, owner: &Owner, owned: &[Arc<Pod>], api: &Api<Pod>) -> Option<String> {
        let diff = owned.len() as i64 - i64::from(owner.replicas);
        let recorder = match owner.kind {
            Kind::ReplicaSet => &self.rs_events,
            Kind::ReplicationController => &self.rc_events,
        };
        let reference = owner.reference();
        if diff < 0 {
            let template = owner.template.clone().unwrap_or_default();
            let me = pods::controller_ref(
                owner.kind.api_version(),
                owner.kind.name(),
                &owner.name,
                &owner.uid,
            );
            let want = ((-diff) as usize).min(BURST);
            let mut made = 0;
            let mut batch = 1;
            while made < want {
                let n = batch.min(want - made);
                let creates = (0..n).map(|_| {
                    let pod = pods::pod_from_template(
                        &template,
                        &owner.namespace,
                        &owner.name,
                        me.clone(),
                    );
                    async move { api.create(&PostParams::default(), &pod).await }
                });
                let results = futures::future::join_all(creates).await;
                let mut error = None;
                for r in results {
                    match r {
                        Ok(p) => {
                            let name = p.name_any();
                            self.expectations.created(&owner.key(), &name);
                            recorder
                                .normal(
                                    &reference,
                                    "SuccessfulCreate",
                                    &format!("Created pod: {name}"),
                                )
                                .await;
                        }
                        Err(e) => error = Some(e),
                    }
                }
                if let Some(e) = error {
                    let msg = match &e {
                        kube::Error::Api(s) => s.message.clone(),
                        other => other.to_string(),
                    };
                    recorder
                        .warning(
                            &reference,
                            "FailedCreate",
                            &format!("Error creating: {msg}"),
                        )
                        .await;
                    return Some(msg);
                }
                made += n;
                batch *= 2;
            }
        } else if diff > 0 {
            let n = (diff as usize).min(BURST);
            // Pods sharing a node with more of this owner's pods go first.
            let mut per_node: HashMap<String, usize> = HashMap::new();
            for p in owned {
                if let Some(node) = p.spec.as_ref().and_then(|s| s.node_name.clone()) {
                    *per_node.entry(node).or_default() += 1;
                }
            }
            let mut ranked: Vec<(&Pod, usize)> = owned
                .iter()
                .map(|p| {
                    let node = p.spec.as_ref().and_then(|s| s.node_name.clone());
                    (
                        p.as_ref(),
                        node.and_then(|n| per_node.get(&n).copied()).unwrap_or(0),
                    )
                })
                .collect();
            pods::deletion_order(&mut ranked, Utc::now());
            let victims: Vec<&Pod> = ranked.into_iter().take(n).map(|(p, _)| p).collect();
            let deletes = victims.iter().map(|p| {
                let name = p.name_any();
                self.expectations.deleting(&owner.key(), &name);
                let params = DeleteParams {
                    preconditions: Some(Preconditions {
                        uid: p.uid(),
                        resource_version: None,
                    }),
                    ..Default::default()
                };
                async move { (name.clone(), api.delete(&name, &params).await) }
            });
            for (name, r) in futures::future::join_all(deletes).await {
                match r {
                    Ok(_) => {
                        recorder
                            .normal(
                                &reference,
                                "SuccessfulDelete",
                                &format!("Deleted pod: {name}"),
                            )
                            .await
                    }
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(e) => {
                        self.expectations.delete_failed(&owner.key(), &name);
                        recorder
                            .warning(&reference, "FailedDelete", &format!("Error deleting: {e}"))
                            .await;
                    }
                }
            }
        }
        None
    }

    /// Writes the status if it changed; returns when to look again for
    /// pods that become available with time.
    async fn write_status(
        &self,
        owner: &Owner,
        owned: &[Arc<Pod>],
        failure: Option<String>,
    ) -> Option<Duration> {
        let now = Utc::now();
        let template_labels = pods::template_labels(owner.template.as_ref());
        let fully_labeled = owned
            .iter()
            .filter(|p| {
                let labels = p.labels();
                template_labels
                    .iter()
                    .all(|(k, v)| labels.get(k) == Some(v))
            })
            .count();
        let ready = owned.iter().filter(|p| pods::is_ready(p)).count();
        let available = owned
            .iter()
            .filter(|p| pods::is_available(p, owner.min_ready, now))
            .count();
        let next = owned
            .iter()
            .filter_map(|p| pods::until_available(p, owner.min_ready, now))
            .min()
            .map(|d| d + Duration::from_millis(100));
        let mut conditions: Vec<serde_json::Value> = owner.status["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let had_failure = conditions.iter().any(|c| c["type"] == "ReplicaFailure");
        match &failure {
            Some(msg) if !had_failure => conditions.push(json!({
                "type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
                "message": msg, "lastTransitionTime": now.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            })),
            None => conditions.retain(|c| c["type"] != "ReplicaFailure"),
            _ => {}
        }
        let mut status = json!({
            "replicas": owned.len(),
            "fullyLabeledReplicas": fully_labeled,
            "readyReplicas": ready,
            "availableReplicas": available,
            "observedGeneration": owner.generation,
        });
        if !conditions.is_empty() {
            status["conditions"] = json!(conditions);
        }
        let unchanged = [
            "replicas",
            "fullyLabeledReplicas",
            "readyReplicas",
            "availableReplicas",
            "observedGeneration",
        ]
        .iter()
        .all(|f| owner.status[*f].as_i64().unwrap_or(0) == status[*f].as_i64().unwrap_or(0))
            && owner.status["conditions"]
                .as_array()
                .map(Vec::len)
                .unwrap_or(0)
                == conditions.len();
        if unchanged {
            return next;
        }
        // Zero counts are left out, as Kubernetes' omitempty does
        // (`replicas` is always shown).
        for f in ["fullyLabeledReplicas", "readyReplicas", "availableReplicas"] {
            if status[f] == 0 {
                status[f] = serde_json::Value::Null;
            }
        }
        let result = match owner.kind {
            Kind::ReplicaSet => match self
                .replicasets
                .get(&reflector::ObjectRef::new(&owner.name).within(&owner.namespace))
            {
                Some(rs) => {
                    let api =
                        Api::<ReplicaSet>::namespaced(self.rs_client.clone(), &owner.namespace);
                    pods::update_status(&api, rs.as_ref(), status, None).await
                }
                None => return None,
            },
            Kind::ReplicationController => match self
                .controllers
                .get(&reflector::ObjectRef::new(&owner.name).within(&owner.namespace))
            {
                Some(rc) => {
                    let api = Api::<ReplicationController>::namespaced(
                        self.rc_client.clone(),
                        &owner.namespace,
                    );
                    pods::update_status(&api, rc.as_ref(), status, None).await
                }
                None => return None,
            },
        };
        match result {
            Ok(()) => next,
            Err(kube::Error::Api(s)) if s.code == 404 => None,
            // A newer copy is on its way through the watch.
            Err(kube::Error::Api(s)) if s.code == 409 => Some(Duration::from_millis(200)),
            Err(e) => {
                tracing::warn!(
                    controller = owner.key(),
                    "writing the status failed (will retry): {e}"
                );
                Some(Duration::from_secs(1))
            }
        }
    }
}
