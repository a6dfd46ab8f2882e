//! What a sync must change: the objects of the units (Service ports,
//! hostPorts) whose input changed, compared with what they had, so that the
//! cost of a sync follows the size of the change, not of the cluster.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::model::{Key, Map, Rule, State, UnitKey, Verdict};

/// How long a chain that fell out of use is kept (flushed) before it is
/// deleted: kernels before 6.2 notice only a little after a transaction that
/// a chain is no longer referenced by a removed map element, and refuse to
/// delete it in that same transaction (kube-proxy waits the same).
pub(crate) const STALE_CHAIN_GRACE: Duration = Duration::from_secs(1);

/// Which units want each map element, and with what verdict. The smallest
/// unit key wins a contested element, whatever order changes come in.
pub(crate) type Claims = BTreeMap<(Map, Key), BTreeMap<UnitKey, Verdict>>;

/// What one sync changes, in the order the batch must carry it.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    /// Chains to create (before anything refers to them).
    pub new_chains: Vec<String>,
    pub new_sets: Vec<(String, u32)>,
    /// Map elements to remove (gone, or pointing elsewhere now).
    pub removed_elements: Vec<(Map, Key)>,
    /// Chains whose rules are replaced: flushed first if they hold rules.
    pub written_chains: Vec<(String, bool, Vec<Rule>)>,
    pub added_elements: Vec<(Map, Key, Verdict)>,
    /// Chains no longer used: flushed now, deleted after the grace period.
    pub retired_chains: Vec<String>,
    pub removed_sets: Vec<String>,
    /// Chains retired long enough ago: deleted.
    pub deleted_chains: Vec<String>,
    /// The claims of the elements this plan touches, as they will be.
    pub claims: Claims,
}

impl Plan {
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.new_chains.is_empty()
            && self.new_sets.is_empty()
            && self.removed_elements.is_empty()
            && self.written_chains.is_empty()
            && self.added_elements.is_empty()
            && self.retired_chains.is_empty()
            && self.removed_sets.is_empty()
            && self.deleted_chains.is_empty()
    }
}

/// Plans the changes of the units in `changes` (key, objects before,
/// objects after) given the current element `claims` and the `retired`
/// chains (flushed, not yet deleted, and since when).
pub(crate) fn plan(
    changes: &[(UnitKey, &State, &State)],
    claims: &Claims,
    retired: &BTreeMap<String, Instant>,
    now: Instant,
) -> Plan {
    let mut plan = Plan::default();
    for (unit, old, new) in changes {
        for (name, rules) in &new.chains {
            let existed = old.chains.contains_key(name);
            if !existed && !retired.contains_key(name) {
                plan.new_chains.push(name.clone());
            }
            if old.chains.get(name) != Some(rules) {
                // A retired chain was flushed already.
                plan.written_chains
                    .push((name.clone(), existed, rules.clone()));
            }
        }
        for name in old.chains.keys() {
            if !new.chains.contains_key(name) {
                plan.retired_chains.push(name.clone());
            }
        }
        for (name, timeout) in &new.affinity_sets {
            if !old.affinity_sets.contains_key(name) {
                plan.new_sets.push((name.clone(), *timeout));
            }
        }
        for name in old.affinity_sets.keys() {
            if !new.affinity_sets.contains_key(name) {
                plan.removed_sets.push(name.clone());
            }
        }
        for key in old.elements.keys() {
            claimants(&mut plan.claims, claims, key).remove(unit);
        }
        for (key, verdict) in &new.elements {
            claimants(&mut plan.claims, claims, key).insert(unit.clone(), verdict.clone());
        }
    }
    for (key, after) in &plan.claims {
        let before = claims.get(key).and_then(|c| c.values().next());
        let after = after.values().next();
        if before != after {
            if before.is_some() {
                plan.removed_elements.push(*key);
            }
            if let Some(verdict) = after {
                plan.added_elements.push((key.0, key.1, verdict.clone()));
            }
        }
    }
    let revived: BTreeSet<&String> = plan.written_chains.iter().map(|(c, _, _)| c).collect();
    for (name, since) in retired {
        if !revived.contains(name) && now.duration_since(*since) >= STALE_CHAIN_GRACE {
            plan.deleted_chains.push(name.clone());
        }
    }
    plan
}

/// The claims on `key` as this plan leaves them, starting from the current ones.
fn claimants<'a>(
    planned: &'a mut Claims,
    current: &Claims,
    key: &(Map, Key),
) -> &'a mut BTreeMap<UnitKey, Verdict> {
    planned
        .entry(*key)
        .or_insert_with(|| current.get(key).cloned().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::service_state;
    use crate::model::tests::{config, ip, service};
    use crate::types::{Endpoint, ServicePort};

    fn claims_of(units: &[(UnitKey, State)]) -> Claims {
        let mut claims = Claims::new();
        for (unit, state) in units {
            for (key, verdict) in &state.elements {
                claims
                    .entry(*key)
                    .or_default()
                    .insert(unit.clone(), verdict.clone());
            }
        }
        claims
    }

    fn unit(sp: &ServicePort) -> (UnitKey, State) {
        (UnitKey::of_service(sp), service_state(&config(), sp))
    }

    #[test]
    fn a_changed_endpoint_touches_only_its_service() {
        let before = service(
            "svc7",
            vec![
                Endpoint::ready(ip("10.243.1.2"), 80),
                Endpoint::ready(ip("10.243.2.2"), 80),
            ],
        );
        let mut after = before.clone();
        after.endpoints[1].ip = ip("10.243.3.9");
        let (key, old) = unit(&before);
        let (_, new) = unit(&after);
        let claims = claims_of(&[(key.clone(), old.clone())]);
        let now = Instant::now();
        let plan = plan(&[(key.clone(), &old, &new)], &claims, &BTreeMap::new(), now);
        assert_eq!(plan.new_chains.len(), 1, "{plan:?}");
        // The service chain (new endpoint list) and the new endpoint chain.
        assert_eq!(plan.written_chains.len(), 2, "{plan:?}");
        assert_eq!(plan.retired_chains.len(), 1);
        assert!(plan.removed_elements.is_empty() && plan.added_elements.is_empty());

        // Nothing changed: nothing to do.
        assert!(
            super::plan(&[(key.clone(), &new, &new)], &claims, &BTreeMap::new(), now).is_empty()
        );
        // A retired chain is deleted once its grace period is over.
        let retired = BTreeMap::from([(plan.retired_chains[0].clone(), now)]);
        assert!(super::plan(&[], &claims, &retired, now)
            .deleted_chains
            .is_empty());
        let later = now + STALE_CHAIN_GRACE;
        assert_eq!(
            super::plan(&[], &claims, &retired, later)
                .deleted_chains
                .len(),
            1
        );
        // Unless it came back meanwhile: then it is rewritten, not created.
        let back = super::plan(&[(key, &new, &old)], &claims, &retired, later);
        assert!(back.deleted_chains.is_empty() && back.new_chains.is_empty());
        assert!(back
            .written_chains
            .iter()
            .any(|(c, flush, _)| *c == retired.keys().next().unwrap().clone() && !flush));
    }

    #[test]
    fn a_contested_element_goes_to_the_smallest_unit_and_survives_the_other() {
        let a = service("a", vec![Endpoint::ready(ip("10.243.1.2"), 80)]);
        let b = service("b", vec![Endpoint::ready(ip("10.243.1.3"), 80)]);
        let (ka, sa) = unit(&a);
        let (kb, sb) = unit(&b);
        let empty = State::default();
        let both = plan(
            &[(kb.clone(), &empty, &sb), (ka.clone(), &empty, &sa)],
            &Claims::new(),
            &BTreeMap::new(),
            Instant::now(),
        );
        // One ClusterIP:port, claimed twice: one element, a's.
        assert_eq!(both.added_elements.len(), 1);
        let a_service_chain = sa
            .chains
            .keys()
            .find(|c| c.starts_with("service-"))
            .unwrap();
        assert_eq!(
            both.added_elements[0].2,
            Verdict::Goto(a_service_chain.clone())
        );
        // a goes away: b's verdict replaces it.
        let gone = plan(
            &[(ka, &sa, &empty)],
            &both.claims,
            &BTreeMap::new(),
            Instant::now(),
        );
        assert_eq!(gone.removed_elements.len(), 1);
        let b_service_chain = sb
            .chains
            .keys()
            .find(|c| c.starts_with("service-"))
            .unwrap();
        assert_eq!(
            gone.added_elements[0].2,
            Verdict::Goto(b_service_chain.clone())
        );
    }
}
