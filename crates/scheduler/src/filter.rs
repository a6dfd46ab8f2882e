//! Filters (can this pod run on this node?) and the unschedulable message,
//! in kube-scheduler's plugin order and wording (v1.32): NodeUnschedulable,
//! TaintToleration, NodeAffinity (nodeSelector + required affinity),
//! NodePorts, NodeResourcesFit. A node is refused by the first failing filter.

use std::collections::{BTreeMap, BTreeSet};

use crate::node::HashMap;
use std::fmt;

use k8s_openapi::api::core::v1::{NodeSelectorTerm, Taint, Toleration};
use orca_api::node_affinity;

use crate::node::{NodeFacts, NodeInfo, TAINT_UNSCHEDULABLE};
use crate::podinfo::PodInfo;

/// Why a node was refused, printed as kube-scheduler prints it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    NodeUnschedulable,
    UntoleratedTaint {
        key: String,
        value: String,
    },
    NodeAffinity,
    /// Not among the nodes named by the pod's `matchFields` affinity.
    NotInPreFilterResult,
    HostPorts,
    TooManyPods,
    Insufficient(&'static str),
    NoPreemptionVictims,
    PreemptionNotHelpful,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::NodeUnschedulable => f.write_str("node(s) were unschedulable"),
            Reason::UntoleratedTaint { key, value } => {
                write!(f, "node(s) had untolerated taint {{{key}: {value}}}")
            }
            Reason::NodeAffinity => {
                f.write_str("node(s) didn't match Pod's node affinity/selector")
            }
            Reason::NotInPreFilterResult => {
                f.write_str("node(s) didn't satisfy plugin(s) [NodeAffinity]")
            }
            Reason::HostPorts => {
                f.write_str("node(s) didn't have free ports for the requested pod ports")
            }
            Reason::TooManyPods => f.write_str("Too many pods"),
            Reason::Insufficient(r) => write!(f, "Insufficient {r}"),
            Reason::NoPreemptionVictims => {
                f.write_str("No preemption victims found for incoming pod")
            }
            Reason::PreemptionNotHelpful => f.write_str("Preemption is not helpful for scheduling"),
        }
    }
}

impl Reason {
    /// Whether evicting pods could make the node fit (kube-scheduler's
    /// `Unschedulable` as opposed to `UnschedulableAndUnresolvable`).
    pub fn resolvable_by_preemption(&self) -> bool {
        matches!(
            self,
            Reason::HostPorts | Reason::TooManyPods | Reason::Insufficient(_)
        )
    }
}

/// `Ok` if the pod fits the node, else the reasons of the first filter that refused it.
pub fn filter(pod: &PodInfo, node: &NodeInfo, facts: &NodeFacts) -> Result<(), Vec<Reason>> {
    node_filters(pod, &node.name, facts)?;
    fits_ports_and_resources(pod, node, facts)
}

/// Whether the pod has neither a nodeSelector nor required node affinity,
/// so that [`node_filters`] reads only the node's taints and cordon.
pub fn ignores_node_labels(pod: &PodInfo) -> bool {
    let spec = pod.pod.spec.as_ref();
    spec.and_then(|s| s.node_selector.as_ref())
        .is_none_or(|s| s.is_empty())
        && required_terms(pod).is_none()
}

/// The filters that depend on the Node object alone: NodeUnschedulable,
/// TaintToleration and NodeAffinity.
pub fn node_filters(pod: &PodInfo, node_name: &str, facts: &NodeFacts) -> Result<(), Vec<Reason>> {
    let spec = pod.pod.spec.as_ref();
    let tolerations: &[Toleration] = spec
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or_default();

    if facts.unschedulable {
        let cordon = Taint {
            key: TAINT_UNSCHEDULABLE.to_string(),
            effect: "NoSchedule".to_string(),
            ..Default::default()
        };
        if !tolerations.iter().any(|t| tolerates(t, &cordon)) {
            return Err(vec![Reason::NodeUnschedulable]);
        }
    }

    if let Some(t) = first_untolerated_taint(&facts.taints, tolerations, |e| {
        e == "NoSchedule" || e == "NoExecute"
    }) {
        return Err(vec![Reason::UntoleratedTaint {
            key: t.key.clone(),
            value: t.value.clone().unwrap_or_default(),
        }]);
    }

    if !matches_node_selector_and_affinity(pod, node_name, &facts.labels) {
        return Err(vec![Reason::NodeAffinity]);
    }
    Ok(())
}

/// The NodePorts and NodeResourcesFit filters, the ones preemption can change.
pub fn fits_ports_and_resources(
    pod: &PodInfo,
    node: &NodeInfo,
    facts: &NodeFacts,
) -> Result<(), Vec<Reason>> {
    let usage = &pod.usage;
    if usage
        .host_ports
        .iter()
        .any(|p| node.host_ports.iter().any(|q| p.conflicts_with(q)))
    {
        return Err(vec![Reason::HostPorts]);
    }

    let mut reasons = Vec::new();
    if node.pod_count + 1 > facts.allocatable_pods {
        reasons.push(Reason::TooManyPods);
    }
    let req = &usage.requests;
    let free = |alloc: i64, used: i64| alloc - used;
    if req.cpu > 0 && req.cpu > free(facts.allocatable.cpu, node.requested.cpu) {
        reasons.push(Reason::Insufficient("cpu"));
    }
    if req.memory > 0 && req.memory > free(facts.allocatable.memory, node.requested.memory) {
        reasons.push(Reason::Insufficient("memory"));
    }
    if req.ephemeral_storage > 0
        && req.ephemeral_storage
            > free(
                facts.allocatable.ephemeral_storage,
                node.requested.ephemeral_storage,
            )
    {
        reasons.push(Reason::Insufficient("ephemeral-storage"));
    }
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(reasons)
    }
}

/// Kubernetes' toleration matching: an empty effect matches every effect,
/// `Exists` with an empty key matches every taint, `Equal` (the default)
/// needs key and value to match.
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = t.effect.as_deref().filter(|e| !e.is_empty()) {
        if effect != taint.effect {
            return false;
        }
    }
    let key = t.key.as_deref().unwrap_or("");
    match t.operator.as_deref().unwrap_or("Equal") {
        "Exists" => key.is_empty() || key == taint.key,
        "Equal" | "" => {
            key == taint.key
                && t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
        _ => false,
    }
}

pub fn first_untolerated_taint<'a>(
    taints: &'a [Taint],
    tolerations: &[Toleration],
    effect: impl Fn(&str) -> bool,
) -> Option<&'a Taint> {
    taints
        .iter()
        .filter(|t| effect(&t.effect))
        .find(|taint| !tolerations.iter().any(|t| tolerates(t, taint)))
}

/// nodeSelector (every pair must match) and required node affinity (any
/// term must match; within a term, every expression and field must).
pub fn matches_node_selector_and_affinity(
    pod: &PodInfo,
    node_name: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    pod.pod
        .spec
        .as_ref()
        .is_none_or(|spec| node_affinity::pod_matches_node(spec, node_name, labels))
}

fn required_terms(pod: &PodInfo) -> Option<&[NodeSelectorTerm]> {
    node_affinity::required_terms(pod.pod.spec.as_ref()?)
}

/// NodeAffinity's PreFilter: when every required term names nodes through
/// `matchFields: metadata.name In [...]`, only those nodes are candidates.
/// `Err` when the terms contradict each other (no node can match).
pub fn prefilter_node_names(pod: &PodInfo) -> Result<Option<BTreeSet<String>>, String> {
    let Some(terms) = required_terms(pod) else {
        return Ok(None);
    };
    let mut names: Option<BTreeSet<String>> = None;
    for term in terms {
        let mut term_names: Option<BTreeSet<String>> = None;
        for r in term.match_fields.iter().flatten() {
            if r.key == "metadata.name" && r.operator == "In" {
                let set: BTreeSet<String> = r.values.iter().flatten().cloned().collect();
                term_names = Some(match term_names {
                    None => set,
                    Some(prev) => prev.intersection(&set).cloned().collect(),
                });
            }
        }
        match term_names {
            // A term without a name restriction lets every node through.
            None => return Ok(None),
            Some(t) => names.get_or_insert_with(BTreeSet::new).extend(t),
        }
    }
    match names {
        Some(n) if n.is_empty() => Err("pod affinity terms conflict".to_string()),
        other => Ok(other),
    }
}

/// Per-node statuses of a failed scheduling attempt.
#[derive(Debug, Default)]
pub struct Diagnosis {
    pub num_all_nodes: usize,
    /// Set when a PreFilter rejected the pod outright.
    pub pre_filter_msg: Option<String>,
    pub node_reasons: Vec<(String, Vec<Reason>)>,
}

/// The PostFilter (preemption) outcome, worded as DefaultPreemption words
/// it. Orca does not evict pods; it reports what kube-scheduler's dry run
/// reports when no victim would help.
pub fn preemption_message<'n>(
    pod: &PodInfo,
    diagnosis: &Diagnosis,
    node: impl Fn(&str) -> Option<&'n NodeInfo>,
) -> String {
    let policy = pod
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.preemption_policy.as_deref());
    if policy == Some("Never") {
        return "preemption: not eligible due to preemptionPolicy=Never.".to_string();
    }
    let statuses: Vec<(String, Vec<Reason>)> = diagnosis
        .node_reasons
        .iter()
        .map(|(name, reasons)| {
            if !reasons.iter().all(Reason::resolvable_by_preemption) {
                return (name.clone(), vec![Reason::PreemptionNotHelpful]);
            }
            let node = node(name);
            let relieved = node.and_then(|n| n.without_lower_priority(pod.priority()));
            let status = match (relieved, node.and_then(|n| n.facts.as_ref())) {
                (Some(relieved), Some(facts)) => {
                    match fits_ports_and_resources(pod, &relieved, facts) {
                        Err(r) => r,
                        // Evicting would help, but Orca does not preempt: say
                        // what still blocks the pod as the node stands.
                        Ok(()) => reasons.clone(),
                    }
                }
                _ => vec![Reason::NoPreemptionVictims],
            };
            (name.clone(), status)
        })
        .collect();
    let inner = Diagnosis {
        num_all_nodes: statuses.len(),
        pre_filter_msg: None,
        node_reasons: statuses,
    };
    format!("preemption: {}", fit_error_message(&inner, None))
}

/// `0/3 nodes are available: 1 node(s) had untolerated taint {node-role: x}, 2 Insufficient cpu. preemption: ...`
/// The preemption part ends with its own period before the separator's,
/// hence Kubernetes' well-known "..": reproduced on purpose.
pub fn fit_error_message(d: &Diagnosis, post_filter_msg: Option<&str>) -> String {
    let mut msg = format!("0/{} nodes are available:", d.num_all_nodes);
    if let Some(pre) = &d.pre_filter_msg {
        msg.push_str(&format!(" {pre}."));
    } else {
        let mut counts: HashMap<String, usize> = HashMap::default();
        for (_, reasons) in &d.node_reasons {
            for r in reasons {
                *counts.entry(r.to_string()).or_default() += 1;
            }
        }
        let mut parts: Vec<String> = counts.iter().map(|(r, n)| format!("{n} {r}")).collect();
        // Go's sort.Strings: byte order of the whole "count reason" string.
        parts.sort();
        if !parts.is_empty() {
            msg.push_str(&format!(" {}.", parts.join(", ")));
        }
    }
    if let Some(post) = post_filter_msg.filter(|p| !p.is_empty()) {
        msg.push_str(&format!(" {post}."));
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::podinfo::{PodInfo, Usage};
    use k8s_openapi::api::core::v1::{
        Affinity, Container, NodeAffinity, NodeSelector, NodeSelectorRequirement, Pod, PodSpec,
        ResourceRequirements,
    };
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use std::sync::Arc;

    fn pod_with(spec: PodSpec) -> PodInfo {
        PodInfo::new(Pod {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some("p".into()),
                namespace: Some("default".into()),
                uid: Some("u1".into()),
                ..Default::default()
            },
            spec: Some(spec),
            ..Default::default()
        })
    }

    fn requesting(cpu: &str, mem: &str) -> PodSpec {
        PodSpec {
            containers: vec![Container {
                name: "c".into(),
                resources: Some(ResourceRequirements {
                    requests: Some(BTreeMap::from([
                        ("cpu".to_string(), Quantity(cpu.into())),
                        ("memory".to_string(), Quantity(mem.into())),
                    ])),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn node(name: &str, cpu_milli: i64, mem: i64, pods: i64) -> (NodeInfo, NodeFacts) {
        let facts = NodeFacts {
            allocatable: crate::podinfo::Resources {
                cpu: cpu_milli,
                memory: mem,
                ephemeral_storage: 0,
            },
            allocatable_pods: pods,
            ..Default::default()
        };
        (NodeInfo::new(name), facts)
    }

    fn taint(key: &str, value: &str, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            value: Some(value.into()),
            effect: effect.into(),
            ..Default::default()
        }
    }

    fn toleration(key: &str, op: &str, value: &str, effect: &str) -> Toleration {
        Toleration {
            key: Some(key.into()).filter(|k: &String| !k.is_empty()),
            operator: Some(op.into()),
            value: Some(value.into()).filter(|v: &String| !v.is_empty()),
            effect: Some(effect.into()).filter(|e: &String| !e.is_empty()),
            ..Default::default()
        }
    }

    #[test]
    fn toleration_matching_rules() {
        let t = taint("node-role", "x", "NoSchedule");
        assert!(tolerates(
            &toleration("node-role", "Equal", "x", "NoSchedule"),
            &t
        ));
        assert!(tolerates(&toleration("node-role", "Equal", "x", ""), &t));
        assert!(!tolerates(
            &toleration("node-role", "Equal", "y", "NoSchedule"),
            &t
        ));
        assert!(!tolerates(
            &toleration("node-role", "Equal", "x", "NoExecute"),
            &t
        ));
        assert!(tolerates(&toleration("node-role", "Exists", "", ""), &t));
        assert!(tolerates(&toleration("", "Exists", "", ""), &t));
        assert!(!tolerates(&toleration("other", "Exists", "", ""), &t));
    }

    #[test]
    fn untolerated_taint_is_reported_with_key_and_value() {
        let (n, mut f) = node("n1", 1000, 1 << 30, 110);
        f.taints = Arc::new(vec![
            taint("soft", "", "PreferNoSchedule"),
            taint("node-role", "x", "NoSchedule"),
        ]);
        let p = pod_with(PodSpec::default());
        let err = filter(&p, &n, &f).unwrap_err();
        assert_eq!(
            err[0].to_string(),
            "node(s) had untolerated taint {node-role: x}"
        );
        let spec = PodSpec {
            tolerations: Some(vec![toleration("node-role", "Equal", "x", "NoSchedule")]),
            ..Default::default()
        };
        // PreferNoSchedule never refuses a node.
        assert!(filter(&pod_with(spec), &n, &f).is_ok());
    }

    #[test]
    fn not_ready_node_gets_the_not_ready_taint() {
        let node = k8s_openapi::api::core::v1::Node {
            status: Some(k8s_openapi::api::core::v1::NodeStatus {
                conditions: Some(vec![k8s_openapi::api::core::v1::NodeCondition {
                    type_: "Ready".into(),
                    status: "False".into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let f = NodeFacts::from_node(&node);
        let err = filter(&pod_with(PodSpec::default()), &NodeInfo::new("n"), &f).unwrap_err();
        assert_eq!(
            err[0].to_string(),
            "node(s) had untolerated taint {node.kubernetes.io/not-ready: }"
        );
    }

    #[test]
    fn cordoned_node_refuses_unless_tolerated() {
        let (n, mut f) = node("n1", 1000, 1 << 30, 110);
        f.unschedulable = true;
        let err = filter(&pod_with(PodSpec::default()), &n, &f).unwrap_err();
        assert_eq!(err, vec![Reason::NodeUnschedulable]);
        let spec = PodSpec {
            tolerations: Some(vec![toleration(
                TAINT_UNSCHEDULABLE,
                "Exists",
                "",
                "NoSchedule",
            )]),
            ..Default::default()
        };
        assert!(filter(&pod_with(spec), &n, &f).is_ok());
    }

    fn affinity(terms: Vec<NodeSelectorTerm>) -> PodSpec {
        PodSpec {
            affinity: Some(Affinity {
                node_affinity: Some(NodeAffinity {
                    required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                        node_selector_terms: terms,
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn req(key: &str, op: &str, values: &[&str]) -> NodeSelectorRequirement {
        NodeSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(values.iter().map(|v| v.to_string()).collect()),
        }
    }

    #[test]
    fn node_affinity_operators() {
        let labels = BTreeMap::from([
            ("zone".to_string(), "a".to_string()),
            ("cores".to_string(), "8".to_string()),
        ]);
        let check = |r: NodeSelectorRequirement| {
            let p = pod_with(affinity(vec![NodeSelectorTerm {
                match_expressions: Some(vec![r]),
                ..Default::default()
            }]));
            matches_node_selector_and_affinity(&p, "n1", &labels)
        };
        assert!(check(req("zone", "In", &["a", "b"])));
        assert!(!check(req("zone", "In", &["b"])));
        assert!(check(req("zone", "NotIn", &["b"])));
        assert!(check(req("missing", "NotIn", &["b"])));
        assert!(!check(req("zone", "NotIn", &["a"])));
        assert!(check(req("zone", "Exists", &[])));
        assert!(!check(req("zone", "DoesNotExist", &[])));
        assert!(check(req("missing", "DoesNotExist", &[])));
        assert!(check(req("cores", "Gt", &["4"])));
        assert!(!check(req("cores", "Gt", &["8"])));
        assert!(check(req("cores", "Lt", &["9"])));
        assert!(!check(req("zone", "Lt", &["9"])));
    }

    #[test]
    fn affinity_terms_are_ored_and_empty_terms_match_nothing() {
        let labels = BTreeMap::from([("zone".to_string(), "a".to_string())]);
        let p = pod_with(affinity(vec![
            NodeSelectorTerm {
                match_expressions: Some(vec![req("zone", "In", &["b"])]),
                ..Default::default()
            },
            NodeSelectorTerm {
                match_fields: Some(vec![req("metadata.name", "In", &["n1"])]),
                ..Default::default()
            },
        ]));
        assert!(matches_node_selector_and_affinity(&p, "n1", &labels));
        assert!(!matches_node_selector_and_affinity(&p, "n2", &labels));
        let empty = pod_with(affinity(vec![NodeSelectorTerm::default()]));
        assert!(!matches_node_selector_and_affinity(&empty, "n1", &labels));
    }

    #[test]
    fn node_selector_needs_every_label() {
        let labels = BTreeMap::from([("disk".to_string(), "ssd".to_string())]);
        let mut spec = PodSpec {
            node_selector: Some(BTreeMap::from([("disk".to_string(), "ssd".to_string())])),
            ..Default::default()
        };
        assert!(matches_node_selector_and_affinity(
            &pod_with(spec.clone()),
            "n",
            &labels
        ));
        spec.node_selector
            .as_mut()
            .unwrap()
            .insert("gpu".into(), "yes".into());
        let (mut n, mut f) = node("n", 1000, 1 << 30, 110);
        f.labels = labels;
        n.name = "n".into();
        assert_eq!(
            filter(&pod_with(spec), &n, &f).unwrap_err(),
            vec![Reason::NodeAffinity]
        );
    }

    #[test]
    fn match_fields_prefilter() {
        let p = pod_with(affinity(vec![NodeSelectorTerm {
            match_fields: Some(vec![req("metadata.name", "In", &["n1", "n2"])]),
            ..Default::default()
        }]));
        assert_eq!(
            prefilter_node_names(&p).unwrap(),
            Some(BTreeSet::from(["n1".to_string(), "n2".to_string()]))
        );
        let conflicting = pod_with(affinity(vec![NodeSelectorTerm {
            match_fields: Some(vec![
                req("metadata.name", "In", &["n1"]),
                req("metadata.name", "In", &["n2"]),
            ]),
            ..Default::default()
        }]));
        assert!(prefilter_node_names(&conflicting).is_err());
        assert_eq!(
            prefilter_node_names(&pod_with(PodSpec::default())).unwrap(),
            None
        );
    }

    #[test]
    fn resources_fit_exactly_and_report_every_shortage() {
        let (mut n, f) = node("n1", 1000, 1 << 30, 2);
        let p = pod_with(requesting("600m", "512Mi"));
        assert!(filter(&p, &n, &f).is_ok());
        n.add_pod("other", p.usage.clone());
        assert!(filter(&pod_with(requesting("400m", "512Mi")), &n, &f).is_ok());
        let err = filter(&pod_with(requesting("401m", "513Mi")), &n, &f).unwrap_err();
        assert_eq!(
            err,
            vec![Reason::Insufficient("cpu"), Reason::Insufficient("memory")]
        );
        n.add_pod("third", Arc::new(Usage::default()));
        let err = filter(&pod_with(PodSpec::default()), &n, &f).unwrap_err();
        assert_eq!(err, vec![Reason::TooManyPods]);
        n.remove_pod("other");
        n.remove_pod("third");
        assert_eq!(n.requested, Default::default());
        assert_eq!(n.pod_count, 0);
    }

    #[test]
    fn host_port_conflict() {
        let spec = PodSpec {
            containers: vec![Container {
                name: "c".into(),
                ports: Some(vec![k8s_openapi::api::core::v1::ContainerPort {
                    container_port: 80,
                    host_port: Some(8080),
                    ..Default::default()
                }]),
                ..Default::default()
            }],
            ..Default::default()
        };
        let p = pod_with(spec);
        let (mut n, f) = node("n1", 1000, 1 << 30, 110);
        assert!(filter(&p, &n, &f).is_ok());
        n.add_pod("first", p.usage.clone());
        assert_eq!(filter(&p, &n, &f).unwrap_err(), vec![Reason::HostPorts]);
    }

    #[test]
    fn fit_error_message_reads_like_kubernetes() {
        let d = Diagnosis {
            num_all_nodes: 3,
            pre_filter_msg: None,
            node_reasons: vec![
                (
                    "a".into(),
                    vec![Reason::UntoleratedTaint {
                        key: "node-role".into(),
                        value: "x".into(),
                    }],
                ),
                ("b".into(), vec![Reason::Insufficient("cpu")]),
                ("c".into(), vec![Reason::Insufficient("cpu")]),
            ],
        };
        let mut nodes: HashMap<String, NodeInfo> = HashMap::default();
        for name in ["a", "b", "c"] {
            let (n, f) = node(name, 1000, 1 << 30, 110);
            nodes.insert(
                name.to_string(),
                NodeInfo {
                    facts: Some(f),
                    ..n
                },
            );
        }
        let p = pod_with(requesting("2", "1Mi"));
        let post = preemption_message(&p, &d, |name| nodes.get(name));
        assert_eq!(
            fit_error_message(&d, Some(&post)),
            "0/3 nodes are available: 1 node(s) had untolerated taint {node-role: x}, \
             2 Insufficient cpu. preemption: 0/3 nodes are available: \
             1 Preemption is not helpful for scheduling, \
             2 No preemption victims found for incoming pod.."
        );
    }

    #[test]
    fn prefilter_message_replaces_the_histogram() {
        let d = Diagnosis {
            num_all_nodes: 2,
            pre_filter_msg: Some("pod affinity terms conflict".into()),
            node_reasons: vec![],
        };
        assert_eq!(
            fit_error_message(&d, None),
            "0/2 nodes are available: pod affinity terms conflict."
        );
    }
}
