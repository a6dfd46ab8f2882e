//! What the endpoints and endpointslice controllers share: one watch of
//! Services and one of Pods, kept in memory, and the rule that a change of
//! a pod queues the Services of its namespace whose selector matches it
//! before or after the change (as kube-controller-manager's informers and
//! `GetPodServiceMemberships`). Also the Kubernetes rules both controllers
//! apply to a pod: whether it belongs in endpoints, its readiness, and the
//! container port a Service's target port names.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Service, ServicePort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::Api;
use kube::runtime::{watcher, WatchStreamExt};
use tokio::sync::Notify;

/// `namespace/name` of a Service.
pub type Key = (String, String);

/// Keys to sync, as client-go's work queue: a key waits at most once, and
/// is never synced by two workers at a time (one changed while being
/// synced is synced again after).
#[derive(Default)]
pub struct Queue {
    state: Mutex<QueueState>,
    notify: Notify,
}

#[derive(Default)]
struct QueueState {
    order: VecDeque<Key>,
    dirty: HashSet<Key>,
    processing: HashSet<Key>,
}

impl Queue {
    pub fn push(&self, key: Key) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.dirty.insert(key.clone()) && !st.processing.contains(&key) {
            st.order.push_back(key);
            self.notify.notify_one();
        }
    }

    /// Queues `key` again after `delay` (a failed sync).
    pub fn retry(self: &Arc<Self>, key: Key, delay: Duration) {
        let me = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            me.push(key);
        });
    }

    /// The next key; call [`Queue::done`] when it is synced.
    pub async fn pop(&self) -> Key {
        loop {
            let notified = self.notify.notified();
            {
                let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(k) = st.order.pop_front() {
                    st.dirty.remove(&k);
                    st.processing.insert(k.clone());
                    return k;
                }
            }
            notified.await;
        }
    }

    pub fn done(&self, key: &Key) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.processing.remove(key);
        if st.dirty.contains(key) {
            st.order.push_back(key.clone());
            self.notify.notify_one();
        }
    }
}

/// The Services and Pods of the cluster as last seen, by namespace.
pub struct Inputs {
    services: RwLock<HashMap<String, BTreeMap<String, Arc<Service>>>>,
    pods: RwLock<HashMap<String, BTreeMap<String, Arc<Pod>>>>,
    queues: Vec<Arc<Queue>>,
    /// Both lists are in: a Service missing from `services` is gone.
    synced: tokio::sync::watch::Sender<bool>,
}

fn key_of<K: kube::Resource>(o: &K) -> Key {
    let m = o.meta();
    (
        m.namespace.clone().unwrap_or_default(),
        m.name.clone().unwrap_or_default(),
    )
}

/// Whether `svc`'s selector picks `labels` (an empty selector picks all;
/// a Service without one picks none).
pub fn selects(svc: &Service, labels: Option<&BTreeMap<String, String>>) -> bool {
    let Some(sel) = svc.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
        return false;
    };
    sel.iter()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

impl Inputs {
    /// Inputs feeding these queues (one per controller).
    pub fn new(queues: Vec<Arc<Queue>>) -> Arc<Inputs> {
        Arc::new(Inputs {
            queues,
            services: Default::default(),
            pods: Default::default(),
            synced: tokio::sync::watch::channel(false).0,
        })
    }

    /// Waits until Services and Pods have been listed once.
    pub async fn wait_synced(&self) {
        let mut rx = self.synced.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    pub fn service(&self, ns: &str, name: &str) -> Option<Arc<Service>> {
        self.services
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(ns)?
            .get(name)
            .cloned()
    }

    /// The pods of `ns` that `svc` selects.
    pub fn selected_pods(&self, ns: &str, svc: &Service) -> Vec<Arc<Pod>> {
        let pods = self.pods.read().unwrap_or_else(|e| e.into_inner());
        pods.get(ns)
            .into_iter()
            .flat_map(|m| m.values())
            .filter(|p| selects(svc, p.metadata.labels.as_ref()))
            .cloned()
            .collect()
    }

    fn push(&self, key: Key) {
        for q in &self.queues {
            q.push(key.clone());
        }
    }

    fn push_all_services(&self) {
        let services = self.services.read().unwrap_or_else(|e| e.into_inner());
        for (ns, m) in services.iter() {
            for name in m.keys() {
                self.push((ns.clone(), name.clone()));
            }
        }
    }

    /// Queues the Services of `ns` selecting any of these label sets.
    fn push_selecting(&self, ns: &str, label_sets: &[Option<&BTreeMap<String, String>>]) {
        let services = self.services.read().unwrap_or_else(|e| e.into_inner());
        for (name, svc) in services.get(ns).into_iter().flatten() {
            if label_sets.iter().any(|l| selects(svc, *l)) {
                self.push((ns.to_string(), name.clone()));
            }
        }
    }

    fn apply_service(&self, svc: Service) {
        let (ns, name) = key_of(&svc);
        self.services
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(ns.clone())
            .or_default()
            .insert(name.clone(), Arc::new(svc));
        self.push((ns, name));
    }

    fn delete_service(&self, svc: &Service) {
        let (ns, name) = key_of(svc);
        if let Some(m) = self
            .services
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(&ns)
        {
            m.remove(&name);
        }
        self.push((ns, name));
    }

    fn apply_pod(&self, pod: Pod) {
        let (ns, name) = key_of(&pod);
        let pod = Arc::new(pod);
        let old = self
            .pods
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(ns.clone())
            .or_default()
            .insert(name, pod.clone());
        let old_labels = old.as_ref().and_then(|o| o.metadata.labels.as_ref());
        self.push_selecting(&ns, &[old_labels, pod.metadata.labels.as_ref()]);
    }

    fn delete_pod(&self, pod: &Pod) {
        let (ns, name) = key_of(pod);
        if let Some(m) = self
            .pods
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(&ns)
        {
            m.remove(&name);
        }
        self.push_selecting(&ns, &[pod.metadata.labels.as_ref()]);
    }

    /// Follows Services and Pods until the client goes away. After every
    /// (re)list all Services are synced, so changes missed while a watch
    /// was down are caught up.
    pub async fn run(self: Arc<Self>, client: kube::Client) -> anyhow::Result<()> {
        let mut services = watcher(
            Api::<Service>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff()
        .boxed();
        let mut pods = watcher(Api::<Pod>::all(client), watcher::Config::default())
            .default_backoff()
            .boxed();
        let mut listing_services: Option<HashMap<String, BTreeMap<String, Arc<Service>>>> = None;
        let mut listing_pods: Option<HashMap<String, BTreeMap<String, Arc<Pod>>>> = None;
        let (mut services_listed, mut pods_listed) = (false, false);
        loop {
            if services_listed && pods_listed && !*self.synced.borrow() {
                self.synced.send_replace(true);
                self.push_all_services();
            }
            tokio::select! {
                ev = services.next() => match ev {
                    None => return Ok(()),
                    Some(Err(e)) => tracing::warn!(error = %e, "watching services failed; retrying"),
                    Some(Ok(ev)) => match ev {
                        watcher::Event::Init => listing_services = Some(HashMap::new()),
                        watcher::Event::InitApply(s) => {
                            let (ns, name) = key_of(&s);
                            listing_services.get_or_insert_with(HashMap::new).entry(ns).or_default().insert(name, Arc::new(s));
                        }
                        watcher::Event::InitDone => {
                            *self.services.write().unwrap_or_else(|e| e.into_inner()) =
                                listing_services.take().unwrap_or_default();
                            services_listed = true;
                            self.push_all_services();
                        }
                        watcher::Event::Apply(s) => self.apply_service(s),
                        watcher::Event::Delete(s) => self.delete_service(&s),
                    },
                },
                ev = pods.next() => match ev {
                    None => return Ok(()),
                    Some(Err(e)) => tracing::warn!(error = %e, "watching pods failed; retrying"),
                    Some(Ok(ev)) => match ev {
                        watcher::Event::Init => listing_pods = Some(HashMap::new()),
                        watcher::Event::InitApply(p) => {
                            let (ns, name) = key_of(&p);
                            listing_pods.get_or_insert_with(HashMap::new).entry(ns).or_default().insert(name, Arc::new(p));
                        }
                        watcher::Event::InitDone => {
                            *self.pods.write().unwrap_or_else(|e| e.into_inner()) =
                                listing_pods.take().unwrap_or_default();
                            pods_listed = true;
                            self.push_all_services();
                        }
                        watcher::Event::Apply(p) => self.apply_pod(p),
                        watcher::Event::Delete(p) => self.delete_pod(&p),
                    },
                },
            }
        }
    }
}

/// A pod in phase Succeeded or Failed.
fn terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// Kubernetes' `ShouldPodBeInEndpoints`: running (not finished) with an
/// IP, and, unless `include_terminating`, not being deleted.
pub fn belongs_in_endpoints(pod: &Pod, include_terminating: bool) -> bool {
    if terminal(pod) || pod_ips(pod).is_empty() {
        return false;
    }
    include_terminating || pod.metadata.deletion_timestamp.is_none()
}

/// The pod's IPv4 addresses (`status.podIPs`, else `status.podIP`).
pub fn pod_ips(pod: &Pod) -> Vec<String> {
    let Some(st) = pod.status.as_ref() else {
        return vec![];
    };
    let mut ips: Vec<String> = st.pod_ips.iter().flatten().map(|p| p.ip.clone()).collect();
    if ips.is_empty() {
        ips.extend(st.pod_ip.clone().filter(|ip| !ip.is_empty()));
    }
    ips.retain(|ip| ip.parse::<std::net::Ipv4Addr>().is_ok());
    ips
}

/// The pod's `Ready` condition is `True`.
pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// When the pod last changed in a way endpoints care about: its Ready
/// condition's transition, else its creation.
pub fn last_change(pod: &Pod) -> Option<chrono::DateTime<chrono::Utc>> {
    let ready = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .find(|c| c.type_ == "Ready")
        .and_then(|c| c.last_transition_time.as_ref())
        .map(|t| t.0);
    ready.or(pod.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// The `endpoints.kubernetes.io/last-change-trigger-time` of a sync: the
/// latest change among the Service and its pods.
pub fn trigger_time(svc: &Service, pods: &[Arc<Pod>]) -> Option<String> {
    let svc_time = svc.metadata.creation_timestamp.as_ref().map(|t| t.0);
    pods.iter()
        .filter_map(|p| last_change(p))
        .chain(svc_time)
        .max()
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
}

/// Kubernetes' `FindPort`: a numeric target port as it is; a named one is
/// the container port of that name and protocol.
pub fn find_port(pod: &Pod, sp: &ServicePort) -> Option<i32> {
    match sp.target_port.as_ref() {
        None => Some(sp.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => {
            let protocol = sp.protocol.as_deref().unwrap_or("TCP");
            pod.spec
                .as_ref()?
                .containers
                .iter()
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| {
                    p.name.as_deref() == Some(name.as_str())
                        && p.protocol.as_deref().unwrap_or("TCP") == protocol
                })
                .map(|p| p.container_port)
        }
    }
}

/// Whether an endpoint of `pod` carries its hostname (the pod names the
/// Service as its subdomain).
pub fn hostname_for(pod: &Pod, svc: &Service) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let hostname = spec.hostname.clone().filter(|h| !h.is_empty())?;
    (spec.subdomain.as_deref() == svc.metadata.name.as_deref()
        && pod.metadata.namespace == svc.metadata.namespace)
        .then_some(hostname)
}

/// A headless Service (`clusterIP: None`).
pub fn is_headless(svc: &Service) -> bool {
    svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn named_target_ports_resolve_per_pod() {
        let p = pod(
            json!({"metadata": {"name": "a"}, "spec": {"containers": [{"name": "c",
            "ports": [{"name": "http", "containerPort": 8080}, {"name": "dns", "containerPort": 53, "protocol": "UDP"}]}]}}),
        );
        let sp = |target: serde_json::Value, proto: &str| -> ServicePort {
            serde_json::from_value(json!({"port": 80, "protocol": proto, "targetPort": target}))
                .unwrap()
        };
        assert_eq!(find_port(&p, &sp(json!("http"), "TCP")), Some(8080));
        assert_eq!(find_port(&p, &sp(json!("dns"), "UDP")), Some(53));
        assert_eq!(find_port(&p, &sp(json!("dns"), "TCP")), None);
        assert_eq!(find_port(&p, &sp(json!(9000), "TCP")), Some(9000));
    }

    #[test]
    fn finished_or_addressless_pods_are_left_out() {
        let running = pod(
            json!({"metadata": {"name": "a"}, "status": {"phase": "Running", "podIP": "10.42.0.5"}}),
        );
        assert!(belongs_in_endpoints(&running, false));
        let done = pod(
            json!({"metadata": {"name": "a"}, "status": {"phase": "Succeeded", "podIP": "10.42.0.5"}}),
        );
        assert!(!belongs_in_endpoints(&done, true));
        let pending = pod(json!({"metadata": {"name": "a"}, "status": {"phase": "Pending"}}));
        assert!(!belongs_in_endpoints(&pending, true));
        let deleting = pod(
            json!({"metadata": {"name": "a", "deletionTimestamp": "2026-01-01T00:00:00Z"},
            "status": {"phase": "Running", "podIP": "10.42.0.5"}}),
        );
        assert!(!belongs_in_endpoints(&deleting, false));
        assert!(belongs_in_endpoints(&deleting, true));
    }

    #[test]
    fn selectors_pick_by_labels() {
        let svc: Service = serde_json::from_value(
            json!({"metadata": {"name": "s"}, "spec": {"selector": {"app": "web"}}}),
        )
        .unwrap();
        let l: BTreeMap<String, String> = [
            ("app".to_string(), "web".to_string()),
            ("x".into(), "y".into()),
        ]
        .into();
        assert!(selects(&svc, Some(&l)));
        assert!(!selects(&svc, None));
        let none: Service =
            serde_json::from_value(json!({"metadata": {"name": "s"}, "spec": {}})).unwrap();
        assert!(!selects(&none, Some(&l)));
    }
}
