//! The endpointslice controller (kube-controller-manager's): for every
//! Service with a selector, EndpointSlices (`discovery.k8s.io/v1`, address
//! type IPv4) holding one endpoint per selected pod with an IP, with the
//! conditions `ready` (ready and not terminating, or any with
//! `publishNotReadyAddresses`), `serving` (ready) and `terminating` (being
//! deleted: terminating pods stay listed), its node, hostname (pods naming
//! the Service as subdomain) and pod reference. Pods whose named target
//! ports resolve to different numbers go to different slices; a slice holds
//! at most 100 endpoints (kube-controller-manager's
//! `--max-endpoints-per-slice`). A Service with no endpoints has one empty
//! placeholder slice. Slices are labelled `kubernetes.io/service-name` and
//! `endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io`,
//! owned by their Service, updated in place (endpoints stay in their slice)
//! and deleted with the Service. Services without a selector and
//! ExternalName Services get none.
//!
//! Reads: services, pods (list, watch), endpointslices (list, watch).
//! Writes: endpointslices (create, update, delete).

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ObjectReference, Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::{watcher, WatchStreamExt};

use crate::endpoints::{HEADLESS_LABEL, TRIGGER_TIME};
use crate::servicepods::{
    belongs_in_endpoints, find_port, hostname_for, is_headless, is_ready, pod_ips, trigger_time,
    Inputs, Key, Queue,
};

pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";
const WORKERS: usize = 4;

/// The resource versions of this controller's own writes, whose watch
/// events need no sync.
type OwnWrites = Arc<Mutex<HashSet<String>>>;

pub async fn run(
    client: kube::Client,
    inputs: Arc<Inputs>,
    queue: Arc<Queue>,
    max_per_slice: usize,
) -> anyhow::Result<()> {
    inputs.wait_synced().await;
    let own: OwnWrites = Default::default();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..WORKERS {
        let (client, inputs, queue, own) =
            (client.clone(), inputs.clone(), queue.clone(), own.clone());
        workers.spawn(async move {
            loop {
                let key = queue.pop().await;
                let mut sync = Sync {
                    client: &client,
                    own: &own,
                    max_per_slice,
                };
                if let Err(e) = sync.run(&inputs, &key).await {
                    tracing::warn!(namespace = %key.0, service = %key.1, error = %e,
                        "endpointslice controller: sync failed; retrying in 1s");
                    queue.retry(key.clone(), Duration::from_secs(1));
                }
                queue.done(&key);
            }
        });
    }
    // Slices changed or deleted by someone else are put right.
    let config = watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}"));
    let mut events = watcher(Api::<EndpointSlice>::all(client), config)
        .default_backoff()
        .boxed();
    while let Some(ev) = events.next().await {
        let (slice, deleted) = match ev {
            Ok(watcher::Event::InitApply(s) | watcher::Event::Apply(s)) => (s, false),
            Ok(watcher::Event::Delete(s)) => (s, true),
            Ok(_) => continue,
            Err(e) => {
                tracing::debug!(error = %e, "endpointslice controller: watching slices failed; retrying");
                continue;
            }
        };
        let rv = slice.metadata.resource_version.clone().unwrap_or_default();
        if !deleted && own.lock().unwrap_or_else(|e| e.into_inner()).remove(&rv) {
            continue;
        }
        let labels = slice.metadata.labels.unwrap_or_default();
        if let (Some(ns), Some(svc)) = (slice.metadata.namespace, labels.get(SERVICE_NAME_LABEL)) {
            queue.push((ns, svc.clone()));
        }
    }
    Ok(())
}

/// An endpoint, per Kubernetes' `podToEndpoint`.
pub fn endpoint(pod: &Pod, ip: &str, svc: &Service) -> Endpoint {
    let publish = svc
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        == Some(true);
    let serving = is_ready(pod);
    let terminating = pod.metadata.deletion_timestamp.is_some();
    // A terminating pod is never ready, unless not-ready pods are
    // published anyway.
    let ready = publish || (serving && !terminating);
    Endpoint {
        addresses: vec![ip.to_string()],
        conditions: Some(EndpointConditions {
            ready: Some(ready),
            serving: Some(serving),
            terminating: Some(terminating),
        }),
        hostname: hostname_for(pod, svc),
        node_name: pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty()),
        target_ref: Some(ObjectReference {
            kind: Some("Pod".into()),
            namespace: pod.metadata.namespace.clone(),
            name: pod.metadata.name.clone(),
            uid: pod.metadata.uid.clone(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A pod's ports for `svc`: each Service port resolved on this pod.
fn endpoint_ports(pod: &Pod, svc: &Service) -> Vec<EndpointPort> {
    let ports = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default();
    ports
        .iter()
        .filter_map(|sp| {
            Some(EndpointPort {
                name: Some(sp.name.clone().unwrap_or_default()),
                port: Some(find_port(pod, sp)?),
                protocol: Some(sp.protocol.clone().unwrap_or_else(|| "TCP".into())),
                app_protocol: sp.app_protocol.clone(),
            })
        })
        .collect()
}

/// Ports (as JSON text, to order and compare them) -> endpoints by address.
type Desired = BTreeMap<String, (Vec<EndpointPort>, BTreeMap<String, Endpoint>)>;

fn ports_key(ports: &[EndpointPort]) -> String {
    serde_json::to_string(ports).unwrap_or_default()
}

/// What `svc`'s slices should hold for `pods`, grouped by port numbers.
pub fn desired(svc: &Service, pods: &[Arc<Pod>]) -> Desired {
    let mut out = Desired::new();
    for pod in pods {
        if !belongs_in_endpoints(pod, true) {
            continue;
        }
        let Some(ip) = pod_ips(pod).into_iter().next() else {
            continue;
        };
        let ports = endpoint_ports(pod, svc);
        let group = out
            .entry(ports_key(&ports))
            .or_insert_with(|| (ports, BTreeMap::new()));
        group.1.insert(ip.clone(), endpoint(pod, &ip, svc));
    }
    out
}

fn slice_labels(svc: &Service) -> BTreeMap<String, String> {
    let mut labels = svc.metadata.labels.clone().unwrap_or_default();
    labels.remove(HEADLESS_LABEL);
    labels.insert(
        SERVICE_NAME_LABEL.into(),
        svc.metadata.name.clone().unwrap_or_default(),
    );
    labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
    if is_headless(svc) {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    }
    labels
}

fn owner(svc: &Service) -> OwnerReference {
    OwnerReference {
        api_version: "v1".into(),
        kind: "Service".into(),
        name: svc.metadata.name.clone().unwrap_or_default(),
        uid: svc.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

fn owned_by(slice: &EndpointSlice, svc: &Service) -> bool {
    slice
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.controller == Some(true) && Some(&o.uid) == svc.metadata.uid.as_ref())
}

fn sorted(mut eps: Vec<Endpoint>) -> Vec<Endpoint> {
    eps.sort_by(|a, b| a.addresses.cmp(&b.addresses));
    eps
}

/// The writes that take the existing slices to the desired ones.
#[derive(Default, Debug)]
pub struct Plan {
    /// New or changed contents of existing slices.
    pub update: Vec<EndpointSlice>,
    pub create: Vec<EndpointSlice>,
    pub delete: Vec<String>,
}

/// Kubernetes' reconciler in small: endpoints stay in the slice that holds
/// them (updated if their conditions changed), new ones fill slices with
/// room, then new slices (reusing slices whose ports are no longer wanted);
/// emptied slices go; a Service with no endpoints keeps one placeholder.
pub fn plan(svc: &Service, existing: Vec<EndpointSlice>, desired: Desired, max: usize) -> Plan {
    let labels = slice_labels(svc);
    let name = svc.metadata.name.clone().unwrap_or_default();
    let mut plan = Plan::default();
    let (mut ours, stale): (Vec<EndpointSlice>, Vec<EndpointSlice>) =
        existing.into_iter().partition(|s| owned_by(s, svc));
    plan.delete
        .extend(stale.into_iter().filter_map(|s| s.metadata.name));
    ours.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let originals: BTreeMap<String, EndpointSlice> = ours
        .iter()
        .map(|s| (s.metadata.name.clone().unwrap_or_default(), s.clone()))
        .collect();
    let mut by_ports: BTreeMap<String, Vec<EndpointSlice>> = BTreeMap::new();
    for s in ours {
        by_ports
            .entry(ports_key(s.ports.as_deref().unwrap_or(&[])))
            .or_default()
            .push(s);
    }
    // Slices whose ports are no longer wanted (or placeholders), for reuse.
    let mut spare: Vec<EndpointSlice> = by_ports
        .iter()
        .filter(|(k, _)| !desired.contains_key(*k))
        .flat_map(|(_, v)| v.clone())
        .collect();
    let mut kept: Vec<EndpointSlice> = Vec::new();
    let mut created: Vec<EndpointSlice> = Vec::new();
    for (key, (ports, mut want)) in desired {
        let mut slices = by_ports.remove(&key).unwrap_or_default();
        for s in &mut slices {
            let eps = std::mem::take(&mut s.endpoints);
            s.endpoints = eps
                .into_iter()
                .filter_map(|e| want.remove(e.addresses.first()?))
                .collect();
        }
        let mut remaining: Vec<Endpoint> = want.into_values().collect();
        for s in &mut slices {
            let room = max.saturating_sub(s.endpoints.len()).min(remaining.len());
            s.endpoints.extend(remaining.drain(..room));
        }
        while !remaining.is_empty() {
            let n = max.min(remaining.len());
            let eps: Vec<Endpoint> = remaining.drain(..n).collect();
            match spare.pop() {
                Some(mut s) => {
                    s.ports = (!ports.is_empty()).then(|| ports.clone());
                    s.endpoints = eps;
                    slices.push(s);
                }
                None => created.push(EndpointSlice {
                    metadata: ObjectMeta {
                        generate_name: Some(format!("{name}-")),
                        namespace: svc.metadata.namespace.clone(),
                        ..Default::default()
                    },
                    address_type: "IPv4".into(),
                    endpoints: eps,
                    ports: (!ports.is_empty()).then(|| ports.clone()),
                }),
            }
        }
        for s in slices {
            if s.endpoints.is_empty() {
                plan.delete.extend(s.metadata.name);
            } else {
                kept.push(s);
            }
        }
    }
    if kept.is_empty() && created.is_empty() {
        // The placeholder: an existing slice emptied, or a new one.
        let reuse = spare
            .iter()
            .position(|s| s.endpoints.is_empty() && s.ports.as_ref().is_none_or(|p| p.is_empty()))
            .or(if spare.is_empty() { None } else { Some(0) });
        match reuse {
            Some(i) => {
                let mut s = spare.remove(i);
                s.endpoints = Vec::new();
                s.ports = None;
                kept.push(s);
            }
            None => created.push(EndpointSlice {
                metadata: ObjectMeta {
                    generate_name: Some(format!("{name}-")),
                    namespace: svc.metadata.namespace.clone(),
                    ..Default::default()
                },
                address_type: "IPv4".into(),
                endpoints: Vec::new(),
                ports: None,
            }),
        }
    }
    plan.delete
        .extend(spare.into_iter().filter_map(|s| s.metadata.name));
    for mut s in kept {
        s.endpoints = sorted(s.endpoints);
        s.metadata.labels = Some(labels.clone());
        s.metadata.owner_references = Some(vec![owner(svc)]);
        let original = originals.get(s.metadata.name.as_deref().unwrap_or_default());
        let same = original.is_some_and(|o| {
            o.endpoints == s.endpoints
                && o.ports.clone().unwrap_or_default() == s.ports.clone().unwrap_or_default()
                && o.metadata.labels == s.metadata.labels
                && o.metadata.owner_references == s.metadata.owner_references
        });
        if !same {
            plan.update.push(s);
        }
    }
    for mut s in created {
        s.endpoints = sorted(s.endpoints);
        s.metadata.labels = Some(labels.clone());
        s.metadata.owner_references = Some(vec![owner(svc)]);
        plan.create.push(s);
    }
    plan
}

struct Sync<'a> {
    client: &'a kube::Client,
    own: &'a OwnWrites,
    max_per_slice: usize,
}

impl Sync<'_> {
    fn remember(&self, slice: &EndpointSlice) {
        if let Some(rv) = &slice.metadata.resource_version {
            self.own
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(rv.clone());
        }
    }

    async fn run(&mut self, inputs: &Inputs, key: &Key) -> Result<(), kube::Error> {
        let (ns, name) = key;
        let api: Api<EndpointSlice> = Api::namespaced(self.client.clone(), ns);
        let selector = format!("{SERVICE_NAME_LABEL}={name},{MANAGED_BY_LABEL}={MANAGED_BY}");
        let existing = api
            .list(&ListParams::default().labels(&selector))
            .await?
            .items;
        let svc = inputs.service(ns, name);
        let wanted = svc.as_ref().filter(|s| {
            let spec = s.spec.as_ref();
            spec.and_then(|s| s.selector.as_ref()).is_some()
                && spec.and_then(|s| s.type_.as_deref()) != Some("ExternalName")
        });
        let Some(svc) = wanted else {
            for s in existing {
                let name = s.metadata.name.unwrap_or_default();
                match api.delete(&name, &DeleteParams::default()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(e) => return Err(e),
                }
            }
            return Ok(());
        };
        let pods = inputs.selected_pods(ns, svc);
        let trigger = trigger_time(svc, &pods);
        let plan = plan(svc, existing, desired(svc, &pods), self.max_per_slice);
        let annotate = |s: &mut EndpointSlice| {
            let a = s.metadata.annotations.get_or_insert_with(BTreeMap::new);
            match &trigger {
                Some(t) => a.insert(TRIGGER_TIME.into(), t.clone()),
                None => a.remove(TRIGGER_TIME),
            };
        };
        for mut s in plan.create {
            annotate(&mut s);
            let created = api.create(&PostParams::default(), &s).await?;
            self.remember(&created);
        }
        for mut s in plan.update {
            annotate(&mut s);
            let name = s.metadata.name.clone().unwrap_or_default();
            let updated = api.replace(&name, &PostParams::default(), &s).await?;
            self.remember(&updated);
        }
        for name in plan.delete {
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc() -> Service {
        serde_json::from_value(json!({"metadata": {"name": "web", "namespace": "default", "uid": "svc-uid",
            "labels": {"app": "web"}},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}]}}))
        .unwrap()
    }

    fn pod(i: usize, ready: bool) -> Arc<Pod> {
        Arc::new(serde_json::from_value(json!({"metadata": {"name": format!("p{i}"), "namespace": "default",
                "uid": format!("u{i}"), "labels": {"app": "web"}},
            "spec": {"nodeName": "n", "containers": [{"name": "c"}]},
            "status": {"phase": "Running", "podIP": format!("10.42.{}.{}", i / 250, i % 250 + 1),
                "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}}))
            .unwrap())
    }

    /// Applies a plan as the API would (names for created slices).
    fn apply(existing: Vec<EndpointSlice>, p: Plan) -> Vec<EndpointSlice> {
        let mut out: BTreeMap<String, EndpointSlice> = existing
            .into_iter()
            .map(|s| (s.metadata.name.clone().unwrap(), s))
            .collect();
        for s in p.update {
            out.insert(s.metadata.name.clone().unwrap(), s);
        }
        for (i, mut s) in p.create.into_iter().enumerate() {
            let n = format!("web-new{}-{i}", out.len());
            s.metadata.name = Some(n.clone());
            out.insert(n, s);
        }
        for d in p.delete {
            out.remove(&d);
        }
        out.into_values().collect()
    }

    #[test]
    fn a_service_without_endpoints_has_one_placeholder_reused_when_pods_come() {
        let s = svc();
        let p = plan(&s, vec![], desired(&s, &[]), 100);
        assert_eq!(p.create.len(), 1);
        assert!(p.create[0].endpoints.is_empty() && p.create[0].ports.is_none());
        let slices = apply(vec![], p);
        let p = plan(&s, slices.clone(), desired(&s, &[pod(0, true)]), 100);
        assert!(p.create.is_empty() && p.delete.is_empty(), "{p:?}");
        assert_eq!(p.update.len(), 1);
        assert_eq!(p.update[0].metadata.name, slices[0].metadata.name);
        assert_eq!(p.update[0].endpoints.len(), 1);
        // Unchanged pods: nothing to write.
        let slices = apply(slices, p);
        let p = plan(&s, slices, desired(&s, &[pod(0, true)]), 100);
        assert!(p.create.is_empty() && p.update.is_empty() && p.delete.is_empty());
    }

    #[test]
    fn slices_hold_at_most_the_maximum_and_endpoints_stay_put() {
        let s = svc();
        let pods: Vec<Arc<Pod>> = (0..250).map(|i| pod(i, true)).collect();
        let slices = apply(vec![], plan(&s, vec![], desired(&s, &pods), 100));
        let mut sizes: Vec<usize> = slices.iter().map(|s| s.endpoints.len()).collect();
        sizes.sort();
        assert_eq!(sizes, vec![50, 100, 100]);
        // One pod turns unready: only its slice is rewritten.
        let mut changed = pods.clone();
        changed[7] = pod(7, false);
        let p = plan(&s, slices.clone(), desired(&s, &changed), 100);
        assert!(p.create.is_empty() && p.delete.is_empty());
        assert_eq!(p.update.len(), 1);
        let ep = p.update[0]
            .endpoints
            .iter()
            .find(|e| e.target_ref.as_ref().unwrap().name.as_deref() == Some("p7"))
            .unwrap();
        assert_eq!(
            ep.conditions,
            Some(EndpointConditions {
                ready: Some(false),
                serving: Some(false),
                terminating: Some(false)
            })
        );
        // All pods gone: one placeholder remains.
        let p = plan(&s, slices, desired(&s, &[]), 100);
        assert_eq!(p.delete.len(), 2);
        assert_eq!(p.update.len(), 1);
        assert!(p.update[0].endpoints.is_empty());
    }

    #[test]
    fn terminating_pods_stay_listed_as_terminating() {
        let s = svc();
        let mut v = serde_json::to_value(&*pod(1, true)).unwrap();
        v["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        let p: Pod = serde_json::from_value(v).unwrap();
        let e = endpoint(&p, "10.42.0.2", &s);
        assert_eq!(
            e.conditions,
            Some(EndpointConditions {
                ready: Some(false),
                serving: Some(true),
                terminating: Some(true)
            })
        );
    }

    #[test]
    fn labels_and_owner_are_kubernetes() {
        let s = svc();
        let p = plan(&s, vec![], desired(&s, &[pod(0, true)]), 100);
        let slice = &p.create[0];
        assert_eq!(
            serde_json::to_value(&slice.metadata).unwrap(),
            json!({"generateName": "web-", "namespace": "default",
                   "labels": {"app": "web", "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
                              "kubernetes.io/service-name": "web"},
                   "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": "web", "uid": "svc-uid",
                                        "controller": true, "blockOwnerDeletion": true}]})
        );
        assert_eq!(
            serde_json::to_value(&slice.ports).unwrap(),
            json!([{"name": "", "port": 80, "protocol": "TCP"}])
        );
    }
}
