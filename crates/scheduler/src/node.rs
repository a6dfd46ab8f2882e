//! A node as the scheduler sees it: the facts from its Node object plus the
//! sum of what the pods bound (or assumed bound) to it request.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Taint};

use crate::podinfo::{HostPort, Resources, Usage};
use crate::quantity::parse_units;

/// The scheduler's maps, keyed by node names and pod UIDs and read for
/// every node a pod is filtered against: a fast non-cryptographic hash
/// (per-process random seed) instead of SipHash.
pub type HashMap<K, V> = foldhash::HashMap<K, V>;

/// The taints the node lifecycle controller puts on a node that is not
/// Ready. The scheduler applies them itself when a node is not Ready but
/// not (yet) tainted, so such a node is refused with Kubernetes' wording.
pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

/// What filters and scores read from a Node object.
#[derive(Clone, Debug, Default)]
pub struct NodeFacts {
    pub labels: BTreeMap<String, String>,
    /// One allocation shared by the nodes with equal lists (the cache
    /// interns them), so that a decision can test a pod's tolerations once
    /// per distinct list instead of once per node.
    pub taints: Arc<Vec<Taint>>,
    pub unschedulable: bool,
    pub allocatable: Resources,
    pub allocatable_pods: i64,
    /// Hash of the fields above: a node update that leaves it unchanged
    /// (a heartbeat) cannot make a pending pod schedulable.
    pub fingerprint: u64,
}

impl NodeFacts {
    pub fn from_node(node: &Node) -> NodeFacts {
        let labels = node.metadata.labels.clone().unwrap_or_default();
        let spec = node.spec.as_ref();
        let mut taints = spec.and_then(|s| s.taints.clone()).unwrap_or_default();
        let unschedulable = spec.and_then(|s| s.unschedulable).unwrap_or(false);
        let status = node.status.as_ref();
        let ready = status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
            .map(|c| c.status.as_str());
        let implied = match ready {
            Some("True") => None,
            Some("False") => Some(TAINT_NOT_READY),
            _ => Some(TAINT_UNREACHABLE),
        };
        if let Some(key) = implied {
            if !taints
                .iter()
                .any(|t| t.key == key && t.effect == "NoSchedule")
            {
                taints.push(Taint {
                    key: key.to_string(),
                    effect: "NoSchedule".to_string(),
                    ..Default::default()
                });
            }
        }
        let alloc_list = status.and_then(|s| s.allocatable.as_ref().or(s.capacity.as_ref()));
        let allocatable = Resources::from_list(alloc_list);
        let allocatable_pods = alloc_list
            .and_then(|l| l.get("pods"))
            .and_then(|q| parse_units(&q.0))
            .unwrap_or(0);

        let mut h = std::collections::hash_map::DefaultHasher::new();
        labels.hash(&mut h);
        taints_hash(&taints).hash(&mut h);
        unschedulable.hash(&mut h);
        (
            allocatable.cpu,
            allocatable.memory,
            allocatable.ephemeral_storage,
            allocatable_pods,
        )
            .hash(&mut h);
        NodeFacts {
            labels,
            taints: Arc::new(taints),
            unschedulable,
            allocatable,
            allocatable_pods,
            fingerprint: h.finish(),
        }
    }
}

/// Hash of what makes two taint lists equal for the filters.
pub fn taints_hash(taints: &[Taint]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for t in taints {
        (&t.key, &t.value, &t.effect).hash(&mut h);
    }
    h.finish()
}

/// One node's entry in the cache.
#[derive(Clone, Debug, Default)]
pub struct NodeInfo {
    pub name: String,
    /// `None` while pods are still accounted to a node whose object is gone.
    /// Inline, not behind a pointer: filters read it for every node.
    pub facts: Option<NodeFacts>,
    pub requested: Resources,
    pub nonzero_cpu: i64,
    pub nonzero_memory: i64,
    pub pod_count: i64,
    pub host_ports: Vec<HostPort>,
    /// Pods per controlling owner UID.
    pub owners: HashMap<String, u32>,
    /// Pods on the node by UID.
    pub pods: HashMap<String, Arc<Usage>>,
}

impl NodeInfo {
    pub fn new(name: &str) -> NodeInfo {
        NodeInfo {
            name: name.to_string(),
            ..Default::default()
        }
    }

    pub fn add_pod(&mut self, uid: &str, usage: Arc<Usage>) {
        if self.pods.contains_key(uid) {
            return;
        }
        self.requested = self.requested.plus(&usage.requests);
        self.nonzero_cpu += usage.nonzero_cpu;
        self.nonzero_memory += usage.nonzero_memory;
        self.pod_count += 1;
        self.host_ports.extend(usage.host_ports.iter().cloned());
        if let Some(o) = &usage.owner {
            *self.owners.entry(o.clone()).or_default() += 1;
        }
        self.pods.insert(uid.to_string(), usage);
    }

    pub fn remove_pod(&mut self, uid: &str) {
        let Some(usage) = self.pods.remove(uid) else {
            return;
        };
        self.requested.sub(&usage.requests);
        self.nonzero_cpu -= usage.nonzero_cpu;
        self.nonzero_memory -= usage.nonzero_memory;
        self.pod_count -= 1;
        for p in &usage.host_ports {
            if let Some(i) = self.host_ports.iter().position(|q| q == p) {
                self.host_ports.swap_remove(i);
            }
        }
        if let Some(o) = &usage.owner {
            if let Some(n) = self.owners.get_mut(o) {
                *n -= 1;
                if *n == 0 {
                    self.owners.remove(o);
                }
            }
        }
    }

    /// A copy without the pods whose priority is below `priority`: what the
    /// node would look like if preemption evicted every possible victim.
    pub fn without_lower_priority(&self, priority: i32) -> Option<NodeInfo> {
        let victims: Vec<&String> = self
            .pods
            .iter()
            .filter(|(_, u)| u.priority < priority)
            .map(|(uid, _)| uid)
            .collect();
        if victims.is_empty() {
            return None;
        }
        let mut copy = self.clone();
        for uid in victims {
            copy.remove_pod(uid);
        }
        Some(copy)
    }
}
