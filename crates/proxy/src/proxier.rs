//! The proxier: keeps the kernel's `orca-proxy` table equal to the rules the
//! current Service ports and hostPorts call for. It remembers what each
//! Service port and hostPort was programmed from; a sync recomputes and
//! sends only the objects of those whose input changed, in one transaction.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::model::{self, Map, State, UnitKey, NODEPORT_IPS};
use crate::nft::{Batch, Nftables, ProxyError};
use crate::plan::{self, Claims, STALE_CHAIN_GRACE};
use crate::types::{HostPortMapping, ProxyConfig, ServicePort};

/// What one sync did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Messages in the transaction (0: nothing had changed).
    pub messages: usize,
    /// The table was rebuilt from scratch (first sync, or after a failure).
    pub rebuilt: bool,
    /// Service ports and hostPorts whose rules changed.
    pub units_changed: usize,
    pub chains_created: usize,
    /// Chains whose rules were (re)written.
    pub chains_written: usize,
    /// Chains no longer used, flushed now and deleted a second later.
    pub chains_retired: usize,
    pub chains_deleted: usize,
    pub elements_added: usize,
    pub elements_removed: usize,
    /// The whole sync.
    pub elapsed: Duration,
    /// Of which the kernel's transaction (sending the batch and its answer).
    pub transaction: Duration,
}

/// What a unit (a Service port or a hostPort) was last programmed from.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Input {
    Service(ServicePort),
    HostPort,
}

pub struct Proxier {
    config: ProxyConfig,
    nft: Nftables,
    /// Every unit in the table, its input and its objects.
    units: BTreeMap<UnitKey, (Input, State)>,
    claims: Claims,
    /// Chains flushed because unused, and since when; deleted after the grace.
    retired: BTreeMap<String, Instant>,
    /// The table is not known to match `units` (a failed transaction, a
    /// shutdown): the next sync recreates it whole.
    rebuild: bool,
}

impl Proxier {
    /// Opens nftables in the calling thread's network namespace, deletes any
    /// `orca-proxy` table a previous run left, and creates it afresh (no
    /// Service yet).
    pub fn new(config: ProxyConfig) -> Result<Proxier, ProxyError> {
        let nft = Nftables::open().map_err(ProxyError::Socket)?;
        let mut proxier = Proxier {
            config,
            nft,
            units: BTreeMap::new(),
            claims: Claims::new(),
            retired: BTreeMap::new(),
            rebuild: true,
        };
        proxier.apply(BTreeMap::new())?;
        Ok(proxier)
    }

    pub fn config(&self) -> &ProxyConfig {
        &self.config
    }

    /// Programs these Service ports, replacing the previous ones (hostPorts
    /// stay). A port listed twice counts once, the last one.
    pub fn sync(&mut self, services: &[ServicePort]) -> Result<SyncReport, ProxyError> {
        let mut wanted: BTreeMap<UnitKey, &ServicePort> = BTreeMap::new();
        for sp in services {
            wanted.insert(UnitKey::of_service(sp), sp);
        }
        let mut changes = BTreeMap::new();
        for (key, sp) in &wanted {
            let unchanged =
                matches!(self.units.get(key), Some((Input::Service(had), _)) if had == *sp);
            if !unchanged {
                let state = model::service_state(&self.config, sp);
                changes.insert(key.clone(), Some((Input::Service((*sp).clone()), state)));
            }
        }
        for (key, (input, _)) in &self.units {
            if matches!(input, Input::Service(_)) && !wanted.contains_key(key) {
                changes.insert(key.clone(), None);
            }
        }
        self.apply(changes)
    }

    /// Programs these hostPorts, replacing the previous ones (Services stay).
    pub fn set_host_ports(
        &mut self,
        mappings: Vec<HostPortMapping>,
    ) -> Result<SyncReport, ProxyError> {
        let wanted: BTreeMap<UnitKey, HostPortMapping> = mappings
            .into_iter()
            .map(|m| (UnitKey::HostPort(m), m))
            .collect();
        let mut changes = BTreeMap::new();
        for (key, mapping) in &wanted {
            if !self.units.contains_key(key) {
                let state = model::host_port_state(mapping);
                changes.insert(key.clone(), Some((Input::HostPort, state)));
            }
        }
        for (key, (input, _)) in &self.units {
            if *input == Input::HostPort && !wanted.contains_key(key) {
                changes.insert(key.clone(), None);
            }
        }
        self.apply(changes)
    }

    /// When chains retired by a sync may be deleted by the next one: the
    /// caller syncs again then (with the same input) to finish the cleanup.
    pub fn cleanup_due(&self) -> Option<Instant> {
        self.retired
            .values()
            .min()
            .map(|since| *since + STALE_CHAIN_GRACE)
    }

    /// Removes the table and all its rules (the node is shutting down). A
    /// later sync creates it again, whole.
    pub fn shutdown(&mut self) -> Result<(), ProxyError> {
        let mut batch = Batch::new();
        // Adding first makes the deletion succeed whether or not it exists.
        batch.add_table();
        batch.delete_table();
        self.rebuild = true;
        self.nft.commit(batch)
    }

    /// Applies `changes` (a unit's new input and objects, or `None` when it
    /// goes away). While rebuilding, every unit is programmed anew.
    fn apply(
        &mut self,
        mut changes: BTreeMap<UnitKey, Option<(Input, State)>>,
    ) -> Result<SyncReport, ProxyError> {
        let start = Instant::now();
        let rebuilt = self.rebuild;
        let mut batch = Batch::new();
        let empty = State::default();
        let (no_claims, none_retired) = (Claims::new(), BTreeMap::new());
        let (claims, retired) = if rebuilt {
            self.skeleton(&mut batch);
            // Units not named in `changes` keep their input; their objects
            // are all new to the fresh table.
            for (key, unit) in &self.units {
                changes
                    .entry(key.clone())
                    .or_insert_with(|| Some(unit.clone()));
            }
            (&no_claims, &none_retired)
        } else {
            (&self.claims, &self.retired)
        };
        let planned: Vec<(UnitKey, &State, &State)> = changes
            .iter()
            .map(|(key, change)| {
                let old = match self.units.get(key) {
                    Some((_, state)) if !rebuilt => state,
                    _ => &empty,
                };
                let new = change.as_ref().map(|(_, s)| s).unwrap_or(&empty);
                (key.clone(), old, new)
            })
            .filter(|(_, old, new)| old != new || rebuilt)
            .collect();
        let units_changed = planned.len();
        let now = Instant::now();
        let plan = plan::plan(&planned, claims, retired, now);
        drop(planned);

        for chain in &plan.new_chains {
            batch.add_chain(chain);
        }
        for (set, timeout) in &plan.new_sets {
            batch.add_address_set(set, Some(*timeout));
        }
        for map in Map::ALL {
            let keys: Vec<_> = plan
                .removed_elements
                .iter()
                .filter(|(m, _)| *m == map)
                .map(|(_, k)| k)
                .collect();
            if !keys.is_empty() {
                batch.delete_elements(map, &keys);
            }
        }
        for (chain, flush, rules) in &plan.written_chains {
            if *flush {
                batch.flush_chain(chain);
            }
            for rule in rules {
                batch.add_rule(chain, rule);
            }
        }
        for map in Map::ALL {
            let elements: Vec<_> = plan
                .added_elements
                .iter()
                .filter(|(m, _, _)| *m == map)
                .map(|(_, k, v)| (k, v))
                .collect();
            if !elements.is_empty() {
                batch.add_elements(map, &elements);
            }
        }
        for chain in &plan.retired_chains {
            batch.flush_chain(chain);
        }
        for set in &plan.removed_sets {
            batch.delete_set(set);
        }
        for chain in &plan.deleted_chains {
            batch.delete_chain(chain);
        }

        let messages = batch.messages();
        let sent = Instant::now();
        let committed = self.nft.commit(batch);
        let transaction = sent.elapsed();
        if let Err(e) = committed {
            // Nothing of the transaction applied, but the table may have
            // drifted from what we believe: start over next time.
            self.rebuild = true;
            return Err(e);
        }

        // Success: remember what the table now holds.
        let mut claims = if rebuilt {
            Claims::new()
        } else {
            std::mem::take(&mut self.claims)
        };
        for (key, claimants) in &plan.claims {
            if claimants.is_empty() {
                claims.remove(key);
            } else {
                claims.insert(*key, claimants.clone());
            }
        }
        self.claims = claims;
        let mut retired = if rebuilt {
            BTreeMap::new()
        } else {
            std::mem::take(&mut self.retired)
        };
        for (chain, _, _) in &plan.written_chains {
            retired.remove(chain);
        }
        for chain in &plan.deleted_chains {
            retired.remove(chain);
        }
        for chain in &plan.retired_chains {
            retired.insert(chain.clone(), now);
        }
        self.retired = retired;
        let report = SyncReport {
            messages,
            rebuilt,
            units_changed,
            chains_created: plan.new_chains.len(),
            chains_written: plan.written_chains.len(),
            chains_retired: plan.retired_chains.len(),
            chains_deleted: plan.deleted_chains.len(),
            elements_added: plan.added_elements.len(),
            elements_removed: plan.removed_elements.len(),
            elapsed: Duration::ZERO,
            transaction,
        };
        for (key, change) in changes {
            match change {
                Some(unit) => self.units.insert(key, unit),
                None => self.units.remove(&key),
            };
        }
        self.rebuild = false;
        let report = SyncReport {
            elapsed: start.elapsed(),
            ..report
        };
        tracing::debug!(?report, units = self.units.len(), "service proxy synced");
        Ok(report)
    }

    /// Replaces whatever table exists by the fixed chains and empty maps.
    fn skeleton(&self, batch: &mut Batch) {
        let skeleton = model::skeleton(&self.config);
        batch.add_table();
        batch.delete_table();
        batch.add_table();
        for (name, _) in &skeleton.chains {
            batch.add_chain(name);
        }
        for map in Map::ALL {
            batch.add_map(map);
        }
        if let Some(ips) = &skeleton.nodeport_ips {
            batch.add_address_set(NODEPORT_IPS, None);
            batch.add_addresses(NODEPORT_IPS, ips);
        }
        for (name, rules) in &skeleton.chains {
            for rule in rules {
                batch.add_rule(name, rule);
            }
        }
        for base in &skeleton.base_chains {
            batch.add_base_chain(base);
            for rule in &base.rules {
                batch.add_rule(base.name, rule);
            }
        }
    }
}
