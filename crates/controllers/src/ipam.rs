//! Node IPAM: assigns each node a free pod CIDR (`spec.podCIDR`), which its
//! agent then hands out pod IPs from.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::{reflector, watcher, WatchStreamExt};

use crate::Config;

/// Parses `a.b.c.d/len` into its network address and prefix length.
pub fn parse_cidr(cidr: &str) -> Option<(Ipv4Addr, u8)> {
    let (addr, len) = cidr.split_once('/')?;
    let addr: Ipv4Addr = addr.parse().ok()?;
    let len: u8 = len.parse().ok().filter(|l| *l <= 32)?;
    Some((addr, len))
}

/// The lowest `prefix`-sized subnet of `cluster` whose network address is not
/// in `used`.
pub fn next_free_subnet(
    cluster: (Ipv4Addr, u8),
    prefix: u8,
    used: &BTreeSet<Ipv4Addr>,
) -> Option<Ipv4Addr> {
    let (base, cluster_len) = cluster;
    if prefix < cluster_len || prefix > 32 {
        return None;
    }
    let base = u32::from(base) & mask(cluster_len);
    let count = 1u64 << (prefix - cluster_len);
    let step = 1u64 << (32 - prefix);
    (0..count)
        .map(|i| Ipv4Addr::from((base as u64 + i * step) as u32))
        .find(|subnet| !used.contains(subnet))
}

fn mask(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - len)
    }
}

/// Runs as kube-controller-manager's node IPAM controller, whose writes use
/// the `node-controller` service account.
pub async fn run(clients: &crate::Clients, config: Config) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(clients.controller("node-controller"));
    let (reader, writer) = reflector::store();
    let mut events = watcher(
        Api::<Node>::all(clients.informers()),
        watcher::Config::default(),
    )
    .default_backoff()
    .reflect(writer)
    .boxed();
    let mut ipam = Ipam {
        nodes,
        reader,
        config,
        pending: BTreeMap::new(),
    };
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::Apply(node)) => ipam.assign(&node).await,
            // The store holds the listed nodes only once the list is
            // complete: until then every subnet would look free.
            Ok(watcher::Event::InitDone) => {
                for node in ipam.reader.state() {
                    ipam.assign(&node).await;
                }
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(%err, "node IPAM: watching nodes failed; retrying"),
        }
    }
    Ok(())
}

struct Ipam {
    nodes: Api<Node>,
    reader: reflector::Store<Node>,
    config: Config,
    /// Subnets handed out whose nodes the watch has not shown with them
    /// yet: the store lags behind this controller's own writes, and nodes
    /// that register together must not get the same subnet.
    pending: BTreeMap<String, Ipv4Addr>,
}

impl Ipam {
    /// Gives `node` a free pod CIDR unless it has one.
    async fn assign(&mut self, node: &Node) {
        let name = node.metadata.name.clone().unwrap_or_default();
        if node
            .spec
            .as_ref()
            .and_then(|s| s.pod_cidr.as_ref())
            .is_some()
        {
            self.pending.remove(&name);
            return;
        }
        if self.pending.contains_key(&name) {
            return;
        }
        let reader = &self.reader;
        self.pending
            .retain(|n, _| reader.get(&reflector::ObjectRef::new(n)).is_some());
        let mut used: BTreeSet<Ipv4Addr> = reader
            .state()
            .iter()
            .filter_map(|n| n.spec.as_ref()?.pod_cidr.as_deref().and_then(parse_cidr))
            .map(|(addr, _)| addr)
            .collect();
        used.extend(self.pending.values());
        let prefix = self.config.node_cidr_prefix;
        let Some(subnet) = next_free_subnet(self.config.cluster_cidr, prefix, &used) else {
            tracing::error!(node = %name, "node IPAM: the cluster CIDR has no free pod CIDR left for this node; its pods cannot get IPs");
            return;
        };
        let cidr = format!("{subnet}/{prefix}");
        let patch = serde_json::json!({"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}});
        match self
            .nodes
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                tracing::info!(node = %name, %cidr, "assigned pod CIDR");
                self.pending.insert(name, subnet);
            }
            Err(err) => tracing::warn!(node = %name, %err, "node IPAM: could not set podCIDR"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hands_out_the_lowest_free_subnet() {
        let cluster = (Ipv4Addr::new(10, 42, 0, 0), 16);
        let mut used = BTreeSet::new();
        assert_eq!(
            next_free_subnet(cluster, 24, &used),
            Some(Ipv4Addr::new(10, 42, 0, 0))
        );
        used.insert(Ipv4Addr::new(10, 42, 0, 0));
        used.insert(Ipv4Addr::new(10, 42, 2, 0));
        assert_eq!(
            next_free_subnet(cluster, 24, &used),
            Some(Ipv4Addr::new(10, 42, 1, 0))
        );
    }

    #[test]
    fn reports_exhaustion() {
        let cluster = (Ipv4Addr::new(10, 42, 0, 0), 23);
        let used = [Ipv4Addr::new(10, 42, 0, 0), Ipv4Addr::new(10, 42, 1, 0)].into();
        assert_eq!(next_free_subnet(cluster, 24, &used), None);
    }

    #[test]
    fn parses_cidrs() {
        assert_eq!(
            parse_cidr("10.42.3.0/24"),
            Some((Ipv4Addr::new(10, 42, 3, 0), 24))
        );
        assert_eq!(parse_cidr("10.42.3.0/33"), None);
        assert_eq!(parse_cidr("nonsense"), None);
    }
}
