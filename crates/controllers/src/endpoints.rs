//! The endpoints controller (kube-controller-manager's): an Endpoints
//! object named after every Service with a selector, listing the addresses
//! of the pods it selects, ready ones under `addresses` and the others under
//! `notReadyAddresses` (all under `addresses` with
//! `publishNotReadyAddresses`), each port resolved per pod (named target
//! ports), grouped into subsets by the ports they share. Pods being deleted
//! leave (unless `publishNotReadyAddresses`); finished pods and pods
//! without an IP are never listed. At most 1000 addresses, then the object
//! is marked `endpoints.kubernetes.io/over-capacity: truncated`. Services
//! without a selector, and ExternalName Services, are left alone; the
//! Endpoints of a deleted Service are deleted.
//!
//! Reads: services, pods (list, watch), endpoints (get, list, watch).
//! Writes: endpoints (create, update, delete).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::{watcher, WatchStreamExt};

use crate::servicepods::{
    belongs_in_endpoints, find_port, hostname_for, is_headless, is_ready, pod_ips, trigger_time,
    Inputs, Key, Queue,
};

const MAX_ADDRESSES: usize = 1000;
pub const TRIGGER_TIME: &str = "endpoints.kubernetes.io/last-change-trigger-time";
const OVER_CAPACITY: &str = "endpoints.kubernetes.io/over-capacity";
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";
/// Endpoints used as a leader-election lock by old components; never ours.
const LEADER_ANNOTATION: &str = "control-plane.alpha.kubernetes.io/leader";
const WORKERS: usize = 4;

pub async fn run(
    client: kube::Client,
    inputs: Arc<Inputs>,
    queue: Arc<Queue>,
) -> anyhow::Result<()> {
    inputs.wait_synced().await;
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..WORKERS {
        let (client, inputs, queue) = (client.clone(), inputs.clone(), queue.clone());
        workers.spawn(async move {
            loop {
                let key = queue.pop().await;
                if let Err(e) = sync(&client, &inputs, &key).await {
                    tracing::warn!(namespace = %key.0, service = %key.1, error = %e,
                        "endpoints controller: sync failed; retrying in 1s");
                    queue.retry(key.clone(), Duration::from_secs(1));
                }
                queue.done(&key);
            }
        });
    }
    // Endpoints changed or deleted by someone else, or left from a Service
    // deleted while the controller was down, are synced again.
    let mut events = watcher(Api::<Endpoints>::all(client), watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(ev) = events.next().await {
        match ev {
            Ok(watcher::Event::InitApply(ep) | watcher::Event::Delete(ep)) => {
                queue.push(key_of(&ep.metadata))
            }
            Ok(watcher::Event::Apply(ep)) => {
                let key = key_of(&ep.metadata);
                if inputs.service(&key.0, &key.1).is_none() {
                    queue.push(key);
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(error = %e, "endpoints controller: watching endpoints failed; retrying")
            }
        }
    }
    Ok(())
}

fn key_of(m: &ObjectMeta) -> Key {
    (
        m.namespace.clone().unwrap_or_default(),
        m.name.clone().unwrap_or_default(),
    )
}

async fn sync(client: &kube::Client, inputs: &Inputs, key: &Key) -> Result<(), kube::Error> {
    let (ns, name) = key;
    let api: Api<Endpoints> = Api::namespaced(client.clone(), ns);
    let Some(svc) = inputs.service(ns, name) else {
        let Some(current) = api.get_opt(name).await? else {
            return Ok(());
        };
        let annotations = current.metadata.annotations.unwrap_or_default();
        if annotations.contains_key(LEADER_ANNOTATION) {
            return Ok(());
        }
        return match api.delete(name, &DeleteParams::default()).await {
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            other => other.map(|_| ()),
        };
    };
    let spec = svc.spec.clone().unwrap_or_default();
    if spec.selector.is_none() || spec.type_.as_deref() == Some("ExternalName") {
        return Ok(());
    }
    let pods = inputs.selected_pods(ns, &svc);
    let (subsets, truncated) = desired_subsets(&svc, &pods);
    let mut labels = svc.metadata.labels.clone().unwrap_or_default();
    if is_headless(&svc) {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    } else {
        labels.remove(HEADLESS_LABEL);
    }
    let current = api.get_opt(name).await?;
    let unchanged = current.as_ref().is_some_and(|c| {
        let annotations = c.metadata.annotations.clone().unwrap_or_default();
        c.subsets.clone().unwrap_or_default() == subsets
            && c.metadata.labels.clone().unwrap_or_default() == labels
            && annotations.contains_key(OVER_CAPACITY) == truncated
    });
    if unchanged {
        return Ok(());
    }
    let mut ep = current.clone().unwrap_or_else(|| Endpoints {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(ns.clone()),
            ..Default::default()
        },
        ..Default::default()
    });
    let annotations = ep.metadata.annotations.get_or_insert_with(BTreeMap::new);
    match trigger_time(&svc, &pods) {
        Some(t) => annotations.insert(TRIGGER_TIME.into(), t),
        None => annotations.remove(TRIGGER_TIME),
    };
    if truncated {
        annotations.insert(OVER_CAPACITY.into(), "truncated".into());
    } else {
        annotations.remove(OVER_CAPACITY);
    }
    if annotations.is_empty() {
        ep.metadata.annotations = None;
    }
    ep.metadata.labels = (!labels.is_empty()).then_some(labels);
    ep.subsets = (!subsets.is_empty()).then_some(subsets);
    let result = match current {
        None => api.create(&PostParams::default(), &ep).await,
        Some(_) => api.replace(name, &PostParams::default(), &ep).await,
    };
    match result {
        Ok(_) => Ok(()),
        Err(e) => Err(e),
    }
}

fn address(pod: &Pod, ip: &str, svc: &Service) -> EndpointAddress {
    EndpointAddress {
        ip: ip.to_string(),
        hostname: hostname_for(pod, svc),
        node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
        target_ref: Some(ObjectReference {
            kind: Some("Pod".into()),
            namespace: pod.metadata.namespace.clone(),
            name: pod.metadata.name.clone(),
            uid: pod.metadata.uid.clone(),
            ..Default::default()
        }),
    }
}

/// The subsets of `svc` over `pods`, repacked as Kubernetes does (one
/// subset per distinct set of ports), and whether addresses were cut at
/// the capacity.
pub fn desired_subsets(svc: &Service, pods: &[Arc<Pod>]) -> (Vec<EndpointSubset>, bool) {
    let spec = svc.spec.clone().unwrap_or_default();
    let publish = spec.publish_not_ready_addresses == Some(true);
    let ports = spec.ports.unwrap_or_default();
    // Each port with the addresses serving it (no port at all for a
    // headless Service without ports), then ports with the same addresses
    // together: Kubernetes' `RepackSubsets`.
    let mut serving: BTreeMap<Option<PortKey>, BTreeMap<(String, bool), EndpointAddress>> =
        BTreeMap::new();
    let mut addresses = BTreeSet::new();
    let mut truncated = false;
    for pod in pods {
        if !belongs_in_endpoints(pod, publish) {
            continue;
        }
        let ready = publish || is_ready(pod);
        let Some(ip) = pod_ips(pod).into_iter().next() else {
            continue;
        };
        let mut served: Vec<Option<PortKey>> = ports
            .iter()
            .filter_map(|sp| {
                let n = find_port(pod, sp)?;
                Some(Some(PortKey {
                    name: sp.name.clone().unwrap_or_default(),
                    port: n,
                    protocol: sp.protocol.clone().unwrap_or_else(|| "TCP".into()),
                    app_protocol: sp.app_protocol.clone(),
                }))
            })
            .collect();
        if ports.is_empty() && is_headless(svc) {
            served.push(None);
        }
        if served.is_empty() {
            continue;
        }
        if !addresses.contains(&ip) && addresses.len() == MAX_ADDRESSES {
            truncated = true;
            continue;
        }
        addresses.insert(ip.clone());
        for port in served {
            serving
                .entry(port)
                .or_default()
                .insert((ip.clone(), ready), address(pod, &ip, svc));
        }
    }
    type Group = (Vec<PortKey>, Vec<EndpointAddress>, Vec<EndpointAddress>);
    let mut groups: BTreeMap<Vec<(String, bool)>, Group> = BTreeMap::new();
    for (port, addrs) in serving {
        let g = groups
            .entry(addrs.keys().cloned().collect())
            .or_insert_with(|| {
                let (ready, not_ready): (Vec<_>, Vec<_>) =
                    addrs.into_iter().partition(|((_, ready), _)| *ready);
                (
                    Vec::new(),
                    ready.into_iter().map(|(_, a)| a).collect(),
                    not_ready.into_iter().map(|(_, a)| a).collect(),
                )
            });
        g.0.extend(port);
    }
    let subsets = groups
        .into_values()
        .map(|(ports, ready, not_ready)| EndpointSubset {
            addresses: (!ready.is_empty()).then_some(ready),
            not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
            ports: (!ports.is_empty()).then(|| ports.into_iter().map(PortKey::into_port).collect()),
        })
        .collect();
    (subsets, truncated)
}

#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
struct PortKey {
    name: String,
    port: i32,
    protocol: String,
    app_protocol: Option<String>,
}

impl PortKey {
    fn into_port(self) -> EndpointPort {
        EndpointPort {
            name: (!self.name.is_empty()).then_some(self.name),
            port: self.port,
            protocol: Some(self.protocol),
            app_protocol: self.app_protocol,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, ip: &str, ready: bool, extra: serde_json::Value) -> Arc<Pod> {
        let mut v = json!({"metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
                "labels": {"app": "web"}},
            "spec": {"nodeName": "node-1", "containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}]},
            "status": {"phase": "Running", "podIP": ip,
                "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}});
        if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            for (k, x) in e {
                o.insert(k.clone(), x.clone());
            }
        }
        Arc::new(serde_json::from_value(v).unwrap())
    }

    fn svc(spec: serde_json::Value) -> Service {
        serde_json::from_value(
            json!({"metadata": {"name": "web", "namespace": "default"}, "spec": spec}),
        )
        .unwrap()
    }

    #[test]
    fn ready_and_not_ready_addresses_share_a_subset() {
        let s = svc(
            json!({"selector": {"app": "web"}, "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}]}),
        );
        let pods = vec![
            pod("a", "10.42.0.12", true, json!({})),
            pod("b", "10.42.0.11", false, json!({})),
            pod(
                "c",
                "10.42.0.13",
                true,
                json!({"metadata": {"name": "c", "namespace": "default", "labels": {"app": "web"},
                "deletionTimestamp": "2026-01-01T00:00:00Z"}}),
            ),
        ];
        let (subsets, truncated) = desired_subsets(&s, &pods);
        assert!(!truncated);
        assert_eq!(
            serde_json::to_value(&subsets).unwrap(),
            json!([{"addresses": [{"ip": "10.42.0.12", "nodeName": "node-1",
                        "targetRef": {"kind": "Pod", "name": "a", "namespace": "default", "uid": "uid-a"}}],
                    "notReadyAddresses": [{"ip": "10.42.0.11", "nodeName": "node-1",
                        "targetRef": {"kind": "Pod", "name": "b", "namespace": "default", "uid": "uid-b"}}],
                    "ports": [{"port": 80, "protocol": "TCP"}]}])
        );
    }

    #[test]
    fn named_ports_split_subsets_and_publish_not_ready_lists_all_as_ready() {
        let s = svc(
            json!({"selector": {"app": "web"}, "publishNotReadyAddresses": true,
            "ports": [{"name": "web", "port": 80, "protocol": "TCP", "targetPort": "http"}]}),
        );
        let other_port = pod(
            "b",
            "10.42.0.11",
            false,
            json!({"spec": {"nodeName": "node-1",
            "containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 9090}]}]}}),
        );
        let pods = vec![pod("a", "10.42.0.12", true, json!({})), other_port];
        let (subsets, _) = desired_subsets(&s, &pods);
        assert_eq!(subsets.len(), 2);
        let mut ports: Vec<i32> = subsets
            .iter()
            .map(|s| s.ports.as_ref().unwrap()[0].port)
            .collect();
        ports.sort();
        assert_eq!(ports, vec![8080, 9090]);
        assert!(subsets.iter().all(|s| s.not_ready_addresses.is_none()));
    }

    #[test]
    fn headless_without_ports_lists_addresses_with_hostnames() {
        let s = svc(json!({"clusterIP": "None", "selector": {"app": "web"}}));
        let p = pod(
            "a",
            "10.42.0.12",
            true,
            json!({"spec": {"hostname": "a", "subdomain": "web", "containers": [{"name": "c"}]}}),
        );
        let (subsets, _) = desired_subsets(&s, &[p]);
        assert_eq!(
            serde_json::to_value(&subsets).unwrap(),
            json!([{"addresses": [{"ip": "10.42.0.12", "hostname": "a",
                "targetRef": {"kind": "Pod", "name": "a", "namespace": "default", "uid": "uid-a"}}]}])
        );
    }
}
