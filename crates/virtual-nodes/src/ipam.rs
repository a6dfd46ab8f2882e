//! Pod IPs from a node's podCIDR: the first address is the network, the
//! second the node itself (its InternalIP, the pods' hostIP), the last the
//! broadcast; pods get the ones in between.

use std::net::Ipv4Addr;

/// Largest range tracked per node; a virtual node needs ~110 addresses.
const MAX_TRACKED: u32 = 4096;

pub struct NodeIpam {
    network: u32,
    size: u32,
    used: Vec<bool>,
    next: u32,
}

impl NodeIpam {
    pub fn new(network: Ipv4Addr, prefix: u8) -> NodeIpam {
        let size = if prefix >= 32 {
            1
        } else {
            (1u64 << (32 - u32::from(prefix))).min(u64::from(MAX_TRACKED)) as u32
        };
        let mask = if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(prefix.min(32)))
        };
        NodeIpam {
            network: u32::from(network) & mask,
            size,
            used: vec![false; size as usize],
            next: 2,
        }
    }

    /// "10.128.3.0/24".
    pub fn parse(cidr: &str) -> Option<NodeIpam> {
        let (ip, prefix) = cidr.split_once('/')?;
        let ip: Ipv4Addr = ip.parse().ok()?;
        let prefix: u8 = prefix.parse().ok().filter(|p| *p <= 30)?;
        Some(NodeIpam::new(ip, prefix))
    }

    /// The node's own address: the range's first host address.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.network + 1)
    }

    fn offset(&self, ip: Ipv4Addr) -> Option<u32> {
        let off = u32::from(ip).checked_sub(self.network)?;
        (off >= 2 && off + 1 < self.size).then_some(off)
    }

    /// Next free address, round robin so a released IP is not reused at once.
    pub fn allocate(&mut self) -> Option<Ipv4Addr> {
        let usable = self.size.saturating_sub(3);
        for _ in 0..usable {
            let off = self.next;
            self.next = if off + 2 >= self.size { 2 } else { off + 1 };
            if !self.used[off as usize] {
                self.used[off as usize] = true;
                return Some(Ipv4Addr::from(self.network + off));
            }
        }
        None
    }

    /// Marks an address a pod already holds; false if outside the range or taken.
    pub fn claim(&mut self, ip: Ipv4Addr) -> bool {
        match self.offset(ip) {
            Some(off) if !self.used[off as usize] => {
                self.used[off as usize] = true;
                true
            }
            _ => false,
        }
    }

    pub fn release(&mut self, ip: Ipv4Addr) {
        if let Some(off) = self.offset(ip) {
            self.used[off as usize] = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slash_24_hands_out_253_distinct_pod_ips() {
        let mut ipam = NodeIpam::parse("10.128.3.0/24").unwrap();
        assert_eq!(ipam.gateway(), Ipv4Addr::new(10, 128, 3, 1));
        let mut seen = std::collections::HashSet::new();
        while let Some(ip) = ipam.allocate() {
            assert!(seen.insert(ip));
            let last = ip.octets()[3];
            assert!((2..=254).contains(&last), "{ip}");
        }
        assert_eq!(seen.len(), 253);
        ipam.release(Ipv4Addr::new(10, 128, 3, 77));
        assert_eq!(ipam.allocate(), Some(Ipv4Addr::new(10, 128, 3, 77)));
    }

    #[test]
    fn claimed_addresses_are_not_handed_out() {
        let mut ipam = NodeIpam::parse("10.0.0.0/29").unwrap();
        assert!(ipam.claim(Ipv4Addr::new(10, 0, 0, 2)));
        assert!(!ipam.claim(Ipv4Addr::new(10, 0, 0, 2)));
        assert!(!ipam.claim(Ipv4Addr::new(10, 0, 0, 7)), "broadcast");
        assert!(!ipam.claim(Ipv4Addr::new(10, 0, 1, 3)), "outside");
        let got: Vec<Ipv4Addr> = std::iter::from_fn(|| ipam.allocate()).collect();
        assert_eq!(
            got,
            (3..=6)
                .map(|i| Ipv4Addr::new(10, 0, 0, i))
                .collect::<Vec<_>>()
        );
        assert!(NodeIpam::parse("10.0.0.0/31").is_none());
        assert!(NodeIpam::parse("nonsense").is_none());
    }
}
