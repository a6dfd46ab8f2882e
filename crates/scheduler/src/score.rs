//! Scores (which feasible node is best?), each 0..=100 and weighted as in
//! kube-scheduler's defaults: NodeResourcesFit least-allocated (weight 1),
//! TaintToleration for PreferNoSchedule (weight 3) and spreading pods of
//! the same controlling owner (weight 2, PodTopologySpread's weight).

use std::sync::Arc;

use k8s_openapi::api::core::v1::Taint;
use rand::Rng;

use crate::filter::first_untolerated_taint;
use crate::node::{NodeFacts, NodeInfo};
use crate::podinfo::PodInfo;

pub const MAX_NODE_SCORE: i64 = 100;
const WEIGHT_LEAST_ALLOCATED: i64 = 1;
const WEIGHT_TAINT: i64 = 3;
const WEIGHT_SPREAD: i64 = 2;

/// Free share of one resource after placing the pod, 0..=100.
fn least_allocated(requested: i64, allocatable: i64) -> i64 {
    if allocatable <= 0 || requested > allocatable {
        return 0;
    }
    (allocatable - requested) * MAX_NODE_SCORE / allocatable
}

/// Raw, per-node inputs; [`pick`] normalizes the ones that need the whole set.
struct Raw {
    least_allocated: i64,
    intolerable_soft_taints: i64,
    same_owner: i64,
}

/// How many of the node's PreferNoSchedule taints the pod does not tolerate.
fn intolerable_soft_taints(pod: &PodInfo, taints: &[Taint]) -> i64 {
    let tolerations = pod
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or_default();
    taints
        .iter()
        .filter(|t| t.effect == "PreferNoSchedule")
        .filter(|t| {
            first_untolerated_taint(std::slice::from_ref(*t), tolerations, |_| true).is_some()
        })
        .count() as i64
}

fn raw(pod: &PodInfo, node: &NodeInfo, facts: &NodeFacts, soft: i64) -> Raw {
    let u = &pod.usage;
    let cpu = least_allocated(node.nonzero_cpu + u.nonzero_cpu, facts.allocatable.cpu);
    let mem = least_allocated(
        node.nonzero_memory + u.nonzero_memory,
        facts.allocatable.memory,
    );
    let same_owner = u
        .owner
        .as_ref()
        .and_then(|o| node.owners.get(o))
        .copied()
        .unwrap_or(0) as i64;
    Raw {
        least_allocated: (cpu + mem) / 2,
        intolerable_soft_taints: soft,
        same_owner,
    }
}

/// Picks the best of `feasible` (indexes into the caller's node list),
/// breaking ties uniformly at random. `feasible` must not be empty.
pub fn pick<'a>(
    pod: &PodInfo,
    feasible: &[(&'a NodeInfo, &'a NodeFacts)],
    rng: &mut impl Rng,
) -> &'a NodeInfo {
    // Nodes mostly share a few interned taint lists; count per list.
    let mut last: Option<(&Arc<Vec<Taint>>, i64)> = None;
    let raws: Vec<Raw> = feasible
        .iter()
        .map(|(n, f)| {
            let soft = match last {
                Some((list, soft)) if Arc::ptr_eq(list, &f.taints) => soft,
                _ => {
                    let soft = intolerable_soft_taints(pod, &f.taints);
                    last = Some((&f.taints, soft));
                    soft
                }
            };
            raw(pod, n, f, soft)
        })
        .collect();
    let max_taints = raws
        .iter()
        .map(|r| r.intolerable_soft_taints)
        .max()
        .unwrap_or(0);
    let max_owner = raws.iter().map(|r| r.same_owner).max().unwrap_or(0);
    let mut best = i64::MIN;
    let mut ties = 0u32;
    let mut chosen = feasible[0].0;
    for ((node, _), r) in feasible.iter().zip(&raws) {
        let total = total_score(r, max_taints, max_owner);
        if total > best {
            best = total;
            ties = 1;
            chosen = node;
        } else if total == best {
            // Reservoir sampling: each of the k tied nodes ends up chosen with
            // probability 1/k without storing them.
            ties += 1;
            if rng.random_range(0..ties) == 0 {
                chosen = node;
            }
        }
    }
    chosen
}

fn total_score(r: &Raw, max_taints: i64, max_owner: i64) -> i64 {
    // Fewer intolerable PreferNoSchedule taints and fewer siblings are
    // better: both are normalized against the worst feasible node.
    let taint = if max_taints == 0 {
        MAX_NODE_SCORE
    } else {
        MAX_NODE_SCORE - r.intolerable_soft_taints * MAX_NODE_SCORE / max_taints
    };
    let spread = if max_owner == 0 {
        MAX_NODE_SCORE
    } else {
        (max_owner - r.same_owner) * MAX_NODE_SCORE / max_owner
    };
    WEIGHT_LEAST_ALLOCATED * r.least_allocated + WEIGHT_TAINT * taint + WEIGHT_SPREAD * spread
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::podinfo::{Resources, Usage};
    use k8s_openapi::api::core::v1::{Pod, Taint};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    use rand::SeedableRng;
    use std::sync::Arc;

    fn facts() -> NodeFacts {
        NodeFacts {
            allocatable: Resources {
                cpu: 4000,
                memory: 8 << 30,
                ephemeral_storage: 0,
            },
            allocatable_pods: 110,
            ..Default::default()
        }
    }

    fn owned_pod(owner: Option<&str>) -> PodInfo {
        PodInfo::new(Pod {
            metadata: ObjectMeta {
                name: Some("p".into()),
                owner_references: owner.map(|o| {
                    vec![OwnerReference {
                        uid: o.into(),
                        controller: Some(true),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            },
            spec: Some(Default::default()),
            ..Default::default()
        })
    }

    #[test]
    fn least_allocated_prefers_the_emptier_node() {
        let f = facts();
        let empty = NodeInfo::new("empty");
        let mut busy = NodeInfo::new("busy");
        busy.add_pod(
            "x",
            Arc::new(Usage {
                nonzero_cpu: 2000,
                nonzero_memory: 4 << 30,
                ..Default::default()
            }),
        );
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let p = owned_pod(None);
        for _ in 0..20 {
            assert_eq!(
                pick(&p, &[(&busy, &f), (&empty, &f)], &mut rng).name,
                "empty"
            );
        }
    }

    #[test]
    fn pods_of_one_owner_spread_out() {
        let f = facts();
        let mut a = NodeInfo::new("a");
        let b = NodeInfo::new("b");
        a.add_pod(
            "sibling",
            Arc::new(Usage {
                owner: Some("rs-1".into()),
                ..Default::default()
            }),
        );
        // Make "a" otherwise more attractive: spreading must still win.
        let mut b = b;
        b.add_pod(
            "stranger",
            Arc::new(Usage {
                nonzero_cpu: 400,
                ..Default::default()
            }),
        );
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        let p = owned_pod(Some("rs-1"));
        assert_eq!(pick(&p, &[(&a, &f), (&b, &f)], &mut rng).name, "b");
    }

    #[test]
    fn prefer_no_schedule_taint_lowers_the_score() {
        let plain = facts();
        let mut soft = facts();
        soft.taints = Arc::new(vec![Taint {
            key: "spot".into(),
            effect: "PreferNoSchedule".into(),
            ..Default::default()
        }]);
        let (a, b) = (NodeInfo::new("soft"), NodeInfo::new("plain"));
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let p = owned_pod(None);
        assert_eq!(
            pick(&p, &[(&a, &soft), (&b, &plain)], &mut rng).name,
            "plain"
        );
    }

    #[test]
    fn ties_are_broken_at_random() {
        let f = facts();
        let nodes: Vec<NodeInfo> = (0..4).map(|i| NodeInfo::new(&format!("n{i}"))).collect();
        let feasible: Vec<(&NodeInfo, &NodeFacts)> = nodes.iter().map(|n| (n, &f)).collect();
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        let p = owned_pod(None);
        let seen: std::collections::HashSet<String> = (0..200)
            .map(|_| pick(&p, &feasible, &mut rng).name.clone())
            .collect();
        assert_eq!(seen.len(), 4);
    }
}
