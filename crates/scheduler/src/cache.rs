//! The scheduler's picture of the cluster (nodes, and what the pods bound
//! or assumed bound to each request) plus the queue, kept under one lock so
//! that a decision, the assumption it makes and the queue move are atomic
//! with respect to watch events.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::core::v1::{Node, Pod, Taint};
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::filter::{self, Diagnosis, Reason};
use crate::node::HashMap;
use crate::node::{taints_hash, NodeFacts, NodeInfo};
use crate::podinfo::{PodInfo, Usage};
use crate::queue::Queue;
use crate::score;

/// Kubernetes' floor for how many feasible nodes to look for per pod.
const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;
const MIN_FEASIBLE_NODES_PERCENTAGE: usize = 5;

/// How many feasible nodes are enough to stop filtering: kube-scheduler's
/// adaptive percentageOfNodesToScore (50% minus 1% per 125 nodes, at least
/// 5% and at least 100 nodes). Scoring a sample keeps large clusters fast.
pub fn num_feasible_nodes_to_find(n: usize) -> usize {
    if n < MIN_FEASIBLE_NODES_TO_FIND {
        return n;
    }
    let pct = 50usize
        .saturating_sub(n / 125)
        .max(MIN_FEASIBLE_NODES_PERCENTAGE);
    (n * pct / 100).max(MIN_FEASIBLE_NODES_TO_FIND)
}

/// The node-level filters' answer for one pod, valid for every node with
/// this (interned) taint list and cordon when the pod ignores node labels.
struct SharedVerdict {
    taints: Arc<Vec<Taint>>,
    unschedulable: bool,
    verdict: Result<(), Vec<Reason>>,
}

pub enum Decision {
    Bind(String),
    Unschedulable(String),
}

pub struct Cache {
    pub scheduler_name: String,
    /// Every node known by name or by the pods accounted to it, in one
    /// contiguous slab: a decision walks hundreds of nodes, and reading them
    /// from adjacent memory instead of through a hash lookup each is what
    /// keeps it fast once the rest of the process has evicted them from
    /// the CPU caches.
    nodes: Vec<NodeInfo>,
    /// Slab index of each node, by name.
    slots: HashMap<String, usize>,
    /// Slab indexes of the nodes whose Node object exists, in a stable
    /// order for the rotating start index.
    order: Vec<usize>,
    /// The distinct taint lists of the nodes, by content hash: nodes with
    /// equal lists share one (see [`NodeFacts::taints`]).
    taint_lists: HashMap<u64, Arc<Vec<Taint>>>,
    /// Node of every pod accounted for, by pod UID.
    assigned: HashMap<String, String>,
    pub queue: Queue,
    next_start: usize,
    rng: StdRng,
    relist_pods: Option<HashSet<String>>,
    relist_nodes: Option<HashSet<String>>,
    pub pods_synced: bool,
    pub nodes_synced: bool,
}

impl Cache {
    pub fn new(scheduler_name: &str) -> Cache {
        Cache {
            scheduler_name: scheduler_name.to_string(),
            nodes: Vec::new(),
            slots: HashMap::default(),
            order: Vec::new(),
            taint_lists: HashMap::default(),
            assigned: HashMap::default(),
            queue: Queue::default(),
            next_start: 0,
            rng: StdRng::from_os_rng(),
            relist_pods: None,
            relist_nodes: None,
            pods_synced: false,
            nodes_synced: false,
        }
    }

    pub fn node_count(&self) -> usize {
        self.order.len()
    }

    /// Pods requested on `node` as (cpu millicores, memory bytes, pods).
    pub fn node_usage(&self, node: &str) -> Option<(i64, i64, i64)> {
        self.node(node)
            .map(|n| (n.requested.cpu, n.requested.memory, n.pod_count))
    }

    fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.slots.get(name).map(|&slot| &self.nodes[slot])
    }

    /// The node's slab index, adding an empty entry for a new name.
    fn slot(&mut self, name: &str) -> usize {
        if let Some(&slot) = self.slots.get(name) {
            return slot;
        }
        self.nodes.push(NodeInfo::new(name));
        self.slots.insert(name.to_string(), self.nodes.len() - 1);
        self.nodes.len() - 1
    }

    /// Drops the entry of a node that has neither a Node object nor pods.
    /// The slab's last entry moves into the hole.
    fn drop_node(&mut self, slot: usize) {
        let gone = self.nodes.swap_remove(slot);
        self.slots.remove(&gone.name);
        let moved_from = self.nodes.len();
        if slot < moved_from {
            self.slots.insert(self.nodes[slot].name.clone(), slot);
            if let Some(o) = self.order.iter_mut().find(|o| **o == moved_from) {
                *o = slot;
            }
        }
    }

    fn add_assigned(&mut self, uid: &str, node: &str, usage: Arc<Usage>) {
        self.assigned.insert(uid.to_string(), node.to_string());
        let slot = self.slot(node);
        self.nodes[slot].add_pod(uid, usage);
    }

    /// Returns true if the pod was accounted somewhere (resources freed).
    fn remove_assigned(&mut self, uid: &str) -> bool {
        let Some(node) = self.assigned.remove(uid) else {
            return false;
        };
        if let Some(&slot) = self.slots.get(&node) {
            let n = &mut self.nodes[slot];
            n.remove_pod(uid);
            if n.facts.is_none() && n.pods.is_empty() {
                self.drop_node(slot);
            }
        }
        true
    }

    // ---- node events ----

    /// Returns true when parked pods were moved back to the queue.
    pub fn node_applied(&mut self, node: &Node, now: Instant) -> bool {
        let Some(name) = node.metadata.name.clone() else {
            return false;
        };
        if let Some(seen) = &mut self.relist_nodes {
            seen.insert(name.clone());
        }
        let mut facts = NodeFacts::from_node(node);
        facts.taints = self.intern(facts.taints);
        let slot = self.slot(&name);
        let entry = &mut self.nodes[slot];
        let changed = entry.facts.as_ref().map(|f| f.fingerprint) != Some(facts.fingerprint);
        if entry.facts.is_none() {
            self.order.push(slot);
        }
        entry.facts = Some(facts);
        changed && self.queue.move_all_unschedulable(now) > 0
    }

    /// The shared copy of an equal taint list, if there is one.
    fn intern(&mut self, taints: Arc<Vec<Taint>>) -> Arc<Vec<Taint>> {
        // Lists no node holds any more are dropped once they could add up.
        if self.taint_lists.len() > 64 + 2 * self.order.len() {
            self.taint_lists.retain(|_, t| Arc::strong_count(t) > 1);
        }
        match self.taint_lists.entry(taints_hash(&taints)) {
            std::collections::hash_map::Entry::Occupied(e) if **e.get() == *taints => {
                e.get().clone()
            }
            // A hash collision: this list is simply not shared.
            std::collections::hash_map::Entry::Occupied(_) => taints,
            std::collections::hash_map::Entry::Vacant(e) => e.insert(taints).clone(),
        }
    }

    pub fn node_deleted(&mut self, name: &str) {
        let Some(&slot) = self.slots.get(name) else {
            return;
        };
        if let Some(i) = self.order.iter().position(|&o| o == slot) {
            self.order.swap_remove(i);
        }
        let n = &mut self.nodes[slot];
        n.facts = None;
        if n.pods.is_empty() {
            self.drop_node(slot);
        }
    }

    pub fn nodes_relist_started(&mut self) {
        self.relist_nodes = Some(HashSet::new());
    }

    pub fn nodes_relist_done(&mut self, now: Instant) -> bool {
        let seen = self.relist_nodes.take().unwrap_or_default();
        let gone: Vec<String> = self
            .order
            .iter()
            .map(|&slot| &self.nodes[slot].name)
            .filter(|n| !seen.contains(*n))
            .cloned()
            .collect();
        for n in &gone {
            self.node_deleted(n);
        }
        self.nodes_synced = true;
        // Anything may have changed while the watch was down; and pods that
        // arrived before the nodes were known are waiting for this moment.
        self.queue.move_all_unschedulable(now) > 0 || !self.queue.is_empty()
    }

    // ---- pod events ----

    /// Returns true when the scheduling loop should wake up.
    pub fn pod_applied(&mut self, pod: Pod, now: Instant) -> bool {
        let Some(uid) = pod.metadata.uid.clone() else {
            return false;
        };
        if let Some(seen) = &mut self.relist_pods {
            seen.insert(uid.clone());
        }
        let spec = pod.spec.as_ref();
        let node_name = spec
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty());
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        let terminal = matches!(phase, Some("Succeeded") | Some("Failed"));
        if let Some(node) = node_name {
            self.queue.remove(&uid);
            if terminal {
                return self.remove_assigned(&uid) && self.queue.move_all_unschedulable(now) > 0;
            }
            if self.assigned.get(&uid) != Some(&node) {
                self.remove_assigned(&uid);
                let info = PodInfo::new(pod);
                self.add_assigned(&uid, &node, info.usage);
            }
            return false;
        }
        let ours = spec
            .and_then(|s| s.scheduler_name.as_deref())
            .unwrap_or("default-scheduler")
            == self.scheduler_name;
        if !ours || terminal || pod.metadata.deletion_timestamp.is_some() {
            self.queue.remove(&uid);
            return false;
        }
        self.queue.add_or_update(PodInfo::new(pod), now)
    }

    pub fn pod_deleted(&mut self, pod: &Pod, now: Instant) -> bool {
        let Some(uid) = pod.metadata.uid.as_deref() else {
            return false;
        };
        self.queue.remove(uid);
        self.remove_assigned(uid) && self.queue.move_all_unschedulable(now) > 0
    }

    pub fn pods_relist_started(&mut self) {
        self.relist_pods = Some(HashSet::new());
    }

    pub fn pods_relist_done(&mut self, now: Instant) -> bool {
        let seen = self.relist_pods.take().unwrap_or_default();
        let gone: Vec<String> = self
            .assigned
            .keys()
            .filter(|u| !seen.contains(*u) && !self.queue.is_assumed(u))
            .cloned()
            .collect();
        let mut freed = false;
        for uid in &gone {
            freed |= self.remove_assigned(uid);
        }
        self.queue.retain(|uid| seen.contains(uid));
        self.pods_synced = true;
        (freed && self.queue.move_all_unschedulable(now) > 0) || !self.queue.is_empty()
    }

    // ---- decisions ----

    /// Decides where the (in-flight) pod goes. On success the pod is assumed
    /// onto the node at once, so the next decision already counts it.
    pub fn schedule(&mut self, pod: &PodInfo, now: Instant) -> Decision {
        let decision = self.decide(pod);
        match &decision {
            Decision::Bind(node) => {
                self.add_assigned(&pod.uid, node, pod.usage.clone());
                self.queue.assumed(&pod.uid);
            }
            Decision::Unschedulable(_) => self.queue.unschedulable(&pod.uid, now),
        }
        decision
    }

    fn decide(&mut self, pod: &PodInfo) -> Decision {
        let n = self.order.len();
        if n == 0 {
            return Decision::Unschedulable("no nodes available to schedule pods".to_string());
        }
        let mut diagnosis = Diagnosis {
            num_all_nodes: n,
            ..Default::default()
        };
        let candidates: Option<Vec<usize>> = match filter::prefilter_node_names(pod) {
            Err(msg) => {
                diagnosis.pre_filter_msg = Some(msg);
                diagnosis.node_reasons = self
                    .order
                    .iter()
                    .map(|&slot| (self.nodes[slot].name.clone(), vec![Reason::NodeAffinity]))
                    .collect();
                return self.unschedulable(pod, diagnosis);
            }
            Ok(Some(names)) => {
                for &slot in &self.order {
                    let name = &self.nodes[slot].name;
                    if !names.contains(name) {
                        diagnosis
                            .node_reasons
                            .push((name.clone(), vec![Reason::NotInPreFilterResult]));
                    }
                }
                Some(
                    names
                        .iter()
                        .filter_map(|name| self.slots.get(name).copied())
                        .filter(|&slot| self.nodes[slot].facts.is_some())
                        .collect(),
                )
            }
            Ok(None) => None,
        };

        let total = candidates.as_ref().map_or(n, Vec::len);
        let want = num_feasible_nodes_to_find(total);
        let start = if candidates.is_some() {
            0
        } else {
            self.next_start % n
        };
        let mut feasible = Vec::with_capacity(want.min(total));
        let mut processed = 0;
        // For a pod that selects nodes by neither labels nor name, the
        // unschedulable, taint and affinity filters answer the same on every
        // node with the same taint list: ask once per (interned) list.
        let label_blind = filter::ignores_node_labels(pod);
        let mut verdicts: Vec<SharedVerdict> = Vec::new();
        for i in 0..total {
            if feasible.len() >= want {
                break;
            }
            let slot = match &candidates {
                Some(c) => c[i],
                None => self.order[(start + i) % n],
            };
            processed += 1;
            let node = &self.nodes[slot];
            let Some(facts) = node.facts.as_ref() else {
                continue;
            };
            let verdict = if label_blind {
                let known = verdicts.iter().find(|v| {
                    Arc::ptr_eq(&v.taints, &facts.taints) && v.unschedulable == facts.unschedulable
                });
                let node_verdict = match known {
                    Some(v) => v.verdict.clone(),
                    None => {
                        let verdict = filter::node_filters(pod, &node.name, facts);
                        // Bounded: with every list distinct this would only cost.
                        if verdicts.len() < 8 {
                            verdicts.push(SharedVerdict {
                                taints: facts.taints.clone(),
                                unschedulable: facts.unschedulable,
                                verdict: verdict.clone(),
                            });
                        }
                        verdict
                    }
                };
                node_verdict.and_then(|()| filter::fits_ports_and_resources(pod, node, facts))
            } else {
                filter::filter(pod, node, facts)
            };
            match verdict {
                Ok(()) => feasible.push((node, facts)),
                Err(reasons) => diagnosis.node_reasons.push((node.name.clone(), reasons)),
            }
        }
        if candidates.is_none() {
            self.next_start = (start + processed) % n;
        }
        if feasible.is_empty() {
            return self.unschedulable(pod, diagnosis);
        }
        let chosen = if feasible.len() == 1 {
            feasible[0].0
        } else {
            score::pick(pod, &feasible, &mut self.rng)
        };
        Decision::Bind(chosen.name.clone())
    }

    fn unschedulable(&self, pod: &PodInfo, diagnosis: Diagnosis) -> Decision {
        let post = filter::preemption_message(pod, &diagnosis, |name| self.node(name));
        Decision::Unschedulable(filter::fit_error_message(&diagnosis, Some(&post)))
    }

    /// Binding failed: undo the assumption unless the watch has confirmed
    /// the pod somewhere meanwhile. Returns true if resources were freed.
    pub fn forget(&mut self, uid: &str) -> bool {
        if self.queue.is_assumed(uid) {
            return self.remove_assigned(uid);
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        Container, NodeCondition, NodeSpec, NodeStatus, PodSpec, ResourceRequirements, Taint,
    };
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use std::collections::BTreeMap;

    fn node(name: &str, cpu: &str, taints: Vec<Taint>) -> Node {
        let alloc = BTreeMap::from([
            ("cpu".to_string(), Quantity(cpu.into())),
            ("memory".to_string(), Quantity("8Gi".into())),
            ("pods".to_string(), Quantity("110".into())),
        ]);
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                taints: Some(taints),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                allocatable: Some(alloc),
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    fn pod(name: &str, cpu: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                uid: Some(format!("uid-{name}")),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    resources: Some(ResourceRequirements {
                        requests: Some(BTreeMap::from([("cpu".to_string(), Quantity(cpu.into()))])),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                scheduler_name: Some("default-scheduler".into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn synced_cache() -> (Cache, Instant) {
        let now = Instant::now();
        let mut c = Cache::new("default-scheduler");
        c.nodes_relist_started();
        c.node_applied(&node("a", "1", vec![]), now);
        c.node_applied(&node("b", "1", vec![]), now);
        c.node_applied(
            &node(
                "t",
                "4",
                vec![Taint {
                    key: "node-role".into(),
                    value: Some("x".into()),
                    effect: "NoSchedule".into(),
                    ..Default::default()
                }],
            ),
            now,
        );
        c.nodes_relist_done(now);
        (c, now)
    }

    #[test]
    fn finishing_the_node_list_wakes_pods_queued_before_it() {
        let now = Instant::now();
        let mut c = Cache::new("default-scheduler");
        c.pods_relist_started();
        c.pod_applied(pod("early", "100m"), now);
        c.pods_relist_done(now);
        c.nodes_relist_started();
        c.node_applied(&node("a", "1", vec![]), now);
        // Nothing was unschedulable, but "early" waited for the nodes: the
        // loop must wake now, not at its next periodic flush.
        assert!(c.nodes_relist_done(now));
    }

    #[test]
    fn feasible_node_sample_sizes() {
        assert_eq!(num_feasible_nodes_to_find(3), 3);
        assert_eq!(num_feasible_nodes_to_find(100), 100);
        assert_eq!(num_feasible_nodes_to_find(1000), 420);
        assert_eq!(num_feasible_nodes_to_find(5000), 500);
        assert_eq!(num_feasible_nodes_to_find(50_000), 2500);
    }

    #[test]
    fn assumed_pods_count_until_nodes_are_full_then_the_message_explains() {
        let (mut c, now) = synced_cache();
        let mut placed = Vec::new();
        for i in 0..3 {
            c.pod_applied(pod(&format!("p{i}"), "600m"), now);
        }
        while let Some(p) = c.queue.pop(now) {
            placed.push(c.schedule(&p, now));
        }
        let bound: Vec<String> = placed
            .iter()
            .filter_map(|d| match d {
                Decision::Bind(n) => Some(n.clone()),
                _ => None,
            })
            .collect();
        let mut sorted = bound.clone();
        sorted.sort();
        assert_eq!(sorted, vec!["a", "b"]);
        let msg = placed
            .iter()
            .find_map(|d| match d {
                Decision::Unschedulable(m) => Some(m.clone()),
                _ => None,
            })
            .expect("third pod must not fit");
        assert_eq!(
            msg,
            "0/3 nodes are available: 1 node(s) had untolerated taint {node-role: x}, \
             2 Insufficient cpu. preemption: 0/3 nodes are available: \
             1 Preemption is not helpful for scheduling, \
             2 No preemption victims found for incoming pod.."
        );
        // Same priority: first come, first served, so p2 is the one parked.
        assert!(matches!(placed[2], Decision::Unschedulable(_)));
        // Deleting a bound pod frees room and requeues the parked one.
        assert!(c.pod_deleted(&pod("p0", "600m"), now));
        let later = now + std::time::Duration::from_secs(1);
        let p = c.queue.pop(later).unwrap();
        assert_eq!(p.name, "p2");
        assert!(matches!(c.schedule(&p, later), Decision::Bind(_)));
    }

    /// The slab, its name index and the rotation order agree.
    fn assert_consistent(c: &Cache) {
        assert_eq!(c.slots.len(), c.nodes.len());
        for (name, &slot) in &c.slots {
            assert_eq!(&c.nodes[slot].name, name);
        }
        let mut order = c.order.clone();
        order.sort();
        let with_facts: Vec<usize> = (0..c.nodes.len())
            .filter(|&i| c.nodes[i].facts.is_some())
            .collect();
        assert_eq!(order, with_facts);
    }

    #[test]
    fn deleted_nodes_keep_their_pods_accounted_until_the_pods_go() {
        let (mut c, now) = synced_cache();
        // "a" is the first slot: the last one ("t") moves into its place
        // when "a" goes.
        let mut bound_a = pod("on-a", "300m");
        bound_a.spec.as_mut().unwrap().node_name = Some("a".into());
        c.pod_applied(bound_a.clone(), now);
        c.node_deleted("a");
        assert_consistent(&c);
        assert_eq!(c.node_count(), 2);
        // Its pod still counts while its Node object is gone.
        assert_eq!(c.node_usage("a"), Some((300, 0, 1)));
        c.node_deleted("b");
        assert_consistent(&c);
        assert_eq!(c.node_usage("b"), None);
        // Nothing is parked, so nothing wakes; the accounting goes.
        assert!(!c.pod_deleted(&bound_a, now));
        assert_consistent(&c);
        assert_eq!(c.node_usage("a"), None);
        // Only "t" is left, and its taint refuses the pod, by name.
        c.pod_applied(pod("p", "100m"), now);
        let p = c.queue.pop(now).unwrap();
        assert!(matches!(
            c.schedule(&p, now),
            Decision::Unschedulable(m) if m.starts_with("0/1 nodes are available: 1 node(s) had untolerated taint {node-role: x}")
        ));
        // A node coming back gets a slot again and takes pods.
        c.node_applied(&node("a", "1", vec![]), now);
        assert_consistent(&c);
        let later = now + std::time::Duration::from_secs(2);
        let p = c.queue.pop(later).unwrap();
        assert!(matches!(c.schedule(&p, later), Decision::Bind(n) if n == "a"));
        assert_eq!(c.node_usage("a"), Some((100, 0, 1)));
    }

    #[test]
    fn nodes_with_equal_taints_share_one_list_and_cordons_still_count() {
        let now = Instant::now();
        let mut c = Cache::new("default-scheduler");
        let role = |v: &str| Taint {
            key: "node-role".into(),
            value: Some(v.into()),
            effect: "PreferNoSchedule".into(),
            ..Default::default()
        };
        c.node_applied(&node("a", "1", vec![role("x")]), now);
        c.node_applied(&node("b", "1", vec![role("x")]), now);
        c.node_applied(&node("c", "1", vec![role("y")]), now);
        let taints = |c: &Cache, n: &str| c.node(n).unwrap().facts.as_ref().unwrap().taints.clone();
        assert!(Arc::ptr_eq(&taints(&c, "a"), &taints(&c, "b")));
        assert!(!Arc::ptr_eq(&taints(&c, "a"), &taints(&c, "c")));
        // Same taint list, one node cordoned: the shared verdict must not
        // carry over between them.
        let mut cordoned = node("a", "1", vec![role("x")]);
        cordoned.spec.as_mut().unwrap().unschedulable = Some(true);
        c.node_applied(&cordoned, now);
        c.node_deleted("c");
        for i in 0..5 {
            c.pod_applied(pod(&format!("p{i}"), "100m"), now);
            let p = c.queue.pop(now).unwrap();
            assert!(matches!(c.schedule(&p, now), Decision::Bind(n) if n == "b"));
        }
        c.node_deleted("b");
        c.pod_applied(pod("last", "100m"), now);
        let p = c.queue.pop(now).unwrap();
        assert!(matches!(
            c.schedule(&p, now),
            Decision::Unschedulable(m) if m.starts_with("0/1 nodes are available: 1 node(s) were unschedulable")
        ));
    }

    #[test]
    fn shared_verdicts_decide_as_the_plain_filters_do() {
        use k8s_openapi::api::core::v1::Toleration;
        use rand::Rng;
        let pool = [
            ("a", "1", "NoSchedule"),
            ("b", "", "NoExecute"),
            ("c", "x", "PreferNoSchedule"),
        ];
        let taint = |(k, v, e): (&str, &str, &str)| Taint {
            key: k.into(),
            value: Some(v.into()).filter(|v: &String| !v.is_empty()),
            effect: e.into(),
            ..Default::default()
        };
        let mut rng = StdRng::seed_from_u64(7);
        let mut decided = [0usize; 2];
        for round in 0..300 {
            let now = Instant::now();
            let mut c = Cache::new("default-scheduler");
            let mut nodes = Vec::new();
            for i in 0..5 {
                let taints = pool
                    .iter()
                    .filter(|_| rng.random_bool(0.5))
                    .map(|t| taint(*t))
                    .collect();
                let mut n = node(&format!("n{i}"), "1", taints);
                n.spec.as_mut().unwrap().unschedulable = Some(rng.random_bool(0.3));
                n.metadata.labels = Some(BTreeMap::from([("zone".into(), format!("z{}", i % 3))]));
                c.node_applied(&n, now);
                nodes.push(n);
            }
            let mut p = pod(&format!("p{round}"), "100m");
            let spec = p.spec.as_mut().unwrap();
            let mut tolerations: Vec<Toleration> = pool
                .iter()
                .filter(|_| rng.random_bool(0.4))
                .map(|(k, v, _)| Toleration {
                    key: Some(k.to_string()),
                    operator: Some(if v.is_empty() { "Exists" } else { "Equal" }.into()),
                    value: Some(v.to_string()).filter(|v| !v.is_empty()),
                    ..Default::default()
                })
                .collect();
            if rng.random_bool(0.3) {
                tolerations.push(Toleration {
                    key: Some(crate::node::TAINT_UNSCHEDULABLE.into()),
                    operator: Some("Exists".into()),
                    ..Default::default()
                });
            }
            spec.tolerations = Some(tolerations);
            if rng.random_bool(0.3) {
                spec.node_selector = Some(BTreeMap::from([("zone".into(), "z1".into())]));
            }
            c.pod_applied(p, now);
            let info = c.queue.pop(now).unwrap();

            // Every node through the plain filters, one by one.
            let mut diagnosis = Diagnosis {
                num_all_nodes: nodes.len(),
                ..Default::default()
            };
            let mut feasible = Vec::new();
            for n in &nodes {
                let name = n.metadata.name.clone().unwrap();
                match filter::filter(&info, &NodeInfo::new(&name), &NodeFacts::from_node(n)) {
                    Ok(()) => feasible.push(name),
                    Err(reasons) => diagnosis.node_reasons.push((name, reasons)),
                }
            }
            match c.schedule(&info, now) {
                Decision::Bind(n) => {
                    assert!(feasible.contains(&n), "round {round}: {n} is not feasible");
                    decided[0] += 1;
                }
                Decision::Unschedulable(m) => {
                    assert!(
                        feasible.is_empty(),
                        "round {round}: {feasible:?} were feasible"
                    );
                    let expected = filter::fit_error_message(&diagnosis, None);
                    assert!(m.starts_with(&expected), "round {round}: {m} vs {expected}");
                    decided[1] += 1;
                }
            }
        }
        // Both outcomes were exercised.
        assert!(decided[0] > 50 && decided[1] > 50, "{decided:?}");
    }

    #[test]
    fn a_new_node_requeues_parked_pods() {
        let (mut c, now) = synced_cache();
        c.pod_applied(pod("big", "2"), now);
        let p = c.queue.pop(now).unwrap();
        assert!(matches!(c.schedule(&p, now), Decision::Unschedulable(_)));
        // A heartbeat-only update changes nothing.
        assert!(!c.node_applied(&node("a", "1", vec![]), now));
        assert!(c.node_applied(&node("c", "2", vec![]), now));
        let later = now + std::time::Duration::from_secs(2);
        let p = c.queue.pop(later).unwrap();
        assert!(matches!(c.schedule(&p, later), Decision::Bind(n) if n == "c"));
    }

    #[test]
    fn no_nodes_message() {
        let now = Instant::now();
        let mut c = Cache::new("default-scheduler");
        c.pod_applied(pod("x", "1"), now);
        let p = c.queue.pop(now).unwrap();
        assert!(
            matches!(c.schedule(&p, now), Decision::Unschedulable(m) if m == "no nodes available to schedule pods")
        );
    }

    #[test]
    fn pods_for_other_schedulers_and_bound_pods_are_not_queued() {
        let (mut c, now) = synced_cache();
        let mut other = pod("o", "1");
        other.spec.as_mut().unwrap().scheduler_name = Some("my-scheduler".into());
        c.pod_applied(other, now);
        let mut bound = pod("b", "300m");
        bound.spec.as_mut().unwrap().node_name = Some("a".into());
        c.pod_applied(bound, now);
        assert!(c.queue.pop(now).is_none());
        assert_eq!(c.node_usage("a"), Some((300, 0, 1)));
    }

    #[test]
    fn failed_binding_releases_the_assumption() {
        let (mut c, now) = synced_cache();
        c.pod_applied(pod("p", "1"), now);
        let p = c.queue.pop(now).unwrap();
        let Decision::Bind(node) = c.schedule(&p, now) else {
            panic!("a 1-cpu pod fits an empty 1-cpu node");
        };
        assert_eq!(c.node_usage(&node).unwrap().0, 1000);
        assert!(c.forget(&p.uid));
        assert_eq!(c.node_usage(&node).unwrap().0, 0);
    }
}
