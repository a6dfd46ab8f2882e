//! The proxier: keeps the kernel's `orca-proxy` table equal to the rules the
//! current Service ports and hostPorts call for, changing only what differs
//! from the last sync, in one transaction per sync.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::model::{self, Map, State, NODEPORT_IPS, STALE_CHAIN_GRACE};
use crate::nft::{Batch, Nftables, ProxyError};
use crate::types::{HostPortMapping, ProxyConfig, ServicePort};

/// What one sync did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Messages in the transaction (0: nothing had changed).
    pub messages: usize,
    /// The table was rebuilt from scratch (first sync after a failure).
    pub rebuilt: bool,
    pub chains_created: usize,
    /// Chains whose rules were (re)written.
    pub chains_written: usize,
    /// Chains no longer used, flushed now and deleted a second later.
    pub chains_retired: usize,
    pub chains_deleted: usize,
    pub elements_added: usize,
    pub elements_removed: usize,
    pub elapsed: Duration,
}

pub struct Proxier {
    config: ProxyConfig,
    nft: Nftables,
    services: Vec<ServicePort>,
    host_ports: Vec<HostPortMapping>,
    /// What the table holds beyond its skeleton, as of the last success.
    programmed: State,
    /// Chains flushed because unused, and since when; deleted after the grace.
    retired: BTreeMap<String, Instant>,
    /// The table is not known to match `programmed` (a failed transaction,
    /// a shutdown): the next sync recreates it whole.
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
            services: Vec::new(),
            host_ports: Vec::new(),
            programmed: State::default(),
            retired: BTreeMap::new(),
            rebuild: true,
        };
        proxier.apply()?;
        Ok(proxier)
    }

    pub fn config(&self) -> &ProxyConfig {
        &self.config
    }

    /// Programs these Service ports (replacing the previous ones).
    pub fn sync(&mut self, services: &[ServicePort]) -> Result<SyncReport, ProxyError> {
        self.services = services.to_vec();
        self.apply()
    }

    /// Programs these hostPorts (replacing the previous ones).
    pub fn set_host_ports(
        &mut self,
        mappings: Vec<HostPortMapping>,
    ) -> Result<SyncReport, ProxyError> {
        self.host_ports = mappings;
        self.apply()
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
    /// later sync would create it again.
    pub fn shutdown(&mut self) -> Result<(), ProxyError> {
        let mut batch = Batch::new();
        // Adding first makes the deletion succeed whether or not it exists.
        batch.add_table();
        batch.delete_table();
        self.rebuild = true;
        self.nft.commit(batch)
    }

    fn apply(&mut self) -> Result<SyncReport, ProxyError> {
        let start = Instant::now();
        let desired = model::desired(&self.config, &self.services, &self.host_ports);
        let mut batch = Batch::new();
        let rebuilt = self.rebuild;
        let (current, retired) = if rebuilt {
            self.skeleton(&mut batch);
            (State::default(), BTreeMap::new())
        } else {
            (
                std::mem::take(&mut self.programmed),
                std::mem::take(&mut self.retired),
            )
        };
        let now = Instant::now();
        let plan = model::plan(&current, &retired, &desired, now);

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
        for (chain, flush) in &plan.written_chains {
            if *flush {
                batch.flush_chain(chain);
            }
            for rule in &desired.chains[chain] {
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
        if let Err(e) = self.nft.commit(batch) {
            // Nothing of the transaction applied, but the table may have
            // drifted from what we believe: start over next time.
            self.rebuild = true;
            return Err(e);
        }
        let mut retired = retired;
        for chain in desired.chains.keys() {
            retired.remove(chain);
        }
        for chain in &plan.deleted_chains {
            retired.remove(chain);
        }
        for chain in &plan.retired_chains {
            retired.insert(chain.clone(), now);
        }
        self.retired = retired;
        self.programmed = desired;
        self.rebuild = false;
        let report = SyncReport {
            messages,
            rebuilt,
            chains_created: plan.new_chains.len(),
            chains_written: plan.written_chains.len(),
            chains_retired: plan.retired_chains.len(),
            chains_deleted: plan.deleted_chains.len(),
            elements_added: plan.added_elements.len(),
            elements_removed: plan.removed_elements.len(),
            elapsed: start.elapsed(),
        };
        tracing::debug!(
            ?report,
            services = self.services.len(),
            "service proxy synced"
        );
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
