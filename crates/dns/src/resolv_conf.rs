//! A pod's `/etc/resolv.conf` from its `dnsPolicy` and `dnsConfig`, as the
//! kubelet forms it (pkg/kubelet/network/dns) and containerd writes it.

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Pod, PodDNSConfig};

/// The kubelet's limits (validation.MaxDNSNameservers, MaxDNSSearchPaths,
/// MaxDNSSearchListChars; a DNS-1123 subdomain's length for one path).
pub const MAX_NAMESERVERS: usize = 3;
pub const MAX_SEARCH_PATHS: usize = 32;
pub const MAX_SEARCH_LIST_CHARS: usize = 2048;
const MAX_SEARCH_PATH_CHARS: usize = 253;

/// The default options of a cluster-DNS pod.
const CLUSTER_OPTIONS: &str = "ndots:5";

/// The contents of a resolv.conf.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResolvConf {
    pub nameservers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

/// A `nameserver` line without an address (the kubelet refuses the file).
#[derive(Debug, PartialEq, Eq)]
pub struct ResolvConfError;

impl fmt::Display for ResolvConfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("nameserver list is empty")
    }
}

impl std::error::Error for ResolvConfError {}

impl ResolvConf {
    /// Reads a resolv.conf as the kubelet does: `nameserver` lines add up,
    /// the last `search` and the last `options` line win, search domains
    /// lose a trailing dot, `#` lines are comments.
    pub fn parse(text: &str) -> Result<ResolvConf, ResolvConfError> {
        let mut conf = ResolvConf::default();
        let mut error = false;
        for line in text.lines() {
            let line = line.trim();
            if line.starts_with('#') {
                continue;
            }
            let mut fields = line.split_whitespace();
            match fields.next() {
                Some("nameserver") => match fields.next() {
                    Some(server) => conf.nameservers.push(server.to_string()),
                    None => error = true,
                },
                Some("search") => {
                    conf.searches = fields
                        .map(|s| s.strip_suffix('.').unwrap_or(s).to_string())
                        .collect()
                }
                Some("options") => conf.options = fields.map(str::to_string).collect(),
                _ => {}
            }
        }
        if error {
            return Err(ResolvConfError);
        }
        Ok(conf)
    }

    /// The file as containerd writes it for a pod: `search`, then one
    /// `nameserver` line each, then `options`; empty parts are left out.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if !self.searches.is_empty() {
            out.push_str(&format!("search {}\n", self.searches.join(" ")));
        }
        for server in &self.nameservers {
            out.push_str(&format!("nameserver {server}\n"));
        }
        if !self.options.is_empty() {
            out.push_str(&format!("options {}\n", self.options.join(" ")));
        }
        out
    }

    /// The nameservers that are IP addresses, on port 53: the node's
    /// resolvers for the cluster DNS server to forward to.
    pub fn upstreams(&self) -> Vec<SocketAddr> {
        self.nameservers
            .iter()
            .filter_map(|s| s.parse::<IpAddr>().ok())
            .map(|ip| SocketAddr::new(ip, 53))
            .collect()
    }

    /// The kubelet's check of the node's file at start (its
    /// CheckLimitsForResolvConf): a warning for the node when its search
    /// line leaves pods too little room.
    pub fn limits_warning(&self, path: &Path, cluster_domain: &str) -> Option<String> {
        let path = path.display();
        let mut max_domains = MAX_SEARCH_PATHS;
        if !cluster_domain.is_empty() {
            max_domains -= 3;
        }
        if self.searches.len() > max_domains {
            return Some(format!(
                "Resolv.conf file '{path}' contains search line consisting of more than {max_domains} domains!"
            ));
        }
        if self
            .searches
            .iter()
            .any(|s| s.len() > MAX_SEARCH_PATH_CHARS)
        {
            return Some(format!(
                "Resolv.conf file \"{path}\" contains a search path which length is more than allowed {MAX_SEARCH_PATH_CHARS} chars!"
            ));
        }
        if self.searches.join(" ").len() > MAX_SEARCH_LIST_CHARS {
            return Some(format!(
                "Resolv.conf file '{path}' contains search line which length is more than allowed {MAX_SEARCH_LIST_CHARS} chars!"
            ));
        }
        None
    }
}

/// The node's side of pod DNS: the kubelet's `--cluster-dns`,
/// `--cluster-domain` and `--resolv-conf` (parsed; None for `""`).
#[derive(Clone, Copy, Debug)]
pub struct NodeDns<'a> {
    pub cluster_dns: &'a [IpAddr],
    pub cluster_domain: &'a str,
    pub host: Option<&'a ResolvConf>,
}

/// A Warning event the kubelet records while forming a pod's DNS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsEvent {
    /// `DNSConfigForming` or `MissingClusterDNS`.
    pub reason: &'static str,
    pub message: String,
    /// The event is about the node (else about the pod).
    pub on_node: bool,
}

/// A pod's resolv.conf and the events forming it raised.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodDns {
    pub conf: ResolvConf,
    pub events: Vec<DnsEvent>,
}

enum PodDnsType {
    Cluster,
    Host,
    None,
}

/// The resolv.conf of `pod` on a node configured as `node`:
/// - `ClusterFirst` (the default), and `ClusterFirstWithHostNet`: only the
///   cluster DNS server, search `<ns>.svc.<domain> svc.<domain> <domain>`
///   then the node's search domains, `options ndots:5`; a `ClusterFirst`
///   pod on the host network gets the node's settings instead;
/// - `Default`: the node's resolv.conf (`nameserver 127.0.0.1`, search `.`
///   when the node has none configured);
/// - `None`: nothing but `dnsConfig`.
///
/// `dnsConfig` then adds nameservers and search domains (without
/// duplicates) and sets options by name; the kubelet's limits cut what is
/// over 3 nameservers, 32 search domains or 2048 characters of them.
pub fn pod_dns(pod: &Pod, node: &NodeDns) -> PodDns {
    let spec = pod.spec.clone().unwrap_or_default();
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut events = Vec::new();
    let host_network = spec.host_network.unwrap_or(false);
    // The API server defaults an unset policy to ClusterFirst; the kubelet
    // falls back to it for a value it does not know.
    let kind = match spec.dns_policy.as_deref().unwrap_or("ClusterFirst") {
        "None" => PodDnsType::None,
        "ClusterFirstWithHostNet" => PodDnsType::Cluster,
        "ClusterFirst" if !host_network => PodDnsType::Cluster,
        "ClusterFirst" | "Default" => PodDnsType::Host,
        _ => PodDnsType::Cluster,
    };
    let mut conf = match kind {
        PodDnsType::None => ResolvConf::default(),
        PodDnsType::Cluster if !node.cluster_dns.is_empty() => {
            let host_searches = node.host.map(|h| h.searches.clone()).unwrap_or_default();
            ResolvConf {
                nameservers: node.cluster_dns.iter().map(IpAddr::to_string).collect(),
                searches: cluster_searches(namespace, node.cluster_domain, host_searches),
                options: vec![CLUSTER_OPTIONS.to_string()],
            }
        }
        PodDnsType::Cluster | PodDnsType::Host => {
            if matches!(kind, PodDnsType::Cluster) {
                let message = "kubelet does not have ClusterDNS IP configured and cannot create \
                     Pod using \"ClusterFirst\" policy. Falling back to \"Default\" policy.";
                events.push(DnsEvent {
                    reason: "MissingClusterDNS",
                    message: message.to_string(),
                    on_node: true,
                });
                events.push(DnsEvent {
                    reason: "MissingClusterDNS",
                    message: format!("pod: \"{}\". {message}", pod_label(pod)),
                    on_node: false,
                });
            }
            match node.host {
                Some(host) => host.clone(),
                None => ResolvConf {
                    nameservers: vec!["127.0.0.1".to_string()],
                    searches: vec![".".to_string()],
                    options: Vec::new(),
                },
            }
        }
    };
    if let Some(extra) = &spec.dns_config {
        append_dns_config(&mut conf, extra);
    }
    fit_limits(&mut conf, &mut events);
    PodDns { conf, events }
}

/// The kubelet's way of naming a pod in messages: `name_namespace(uid)`.
fn pod_label(pod: &Pod) -> String {
    let m = &pod.metadata;
    format!(
        "{}_{}({})",
        m.name.as_deref().unwrap_or_default(),
        m.namespace.as_deref().unwrap_or_default(),
        m.uid.as_deref().unwrap_or_default()
    )
}

fn cluster_searches(namespace: &str, domain: &str, host: Vec<String>) -> Vec<String> {
    if domain.is_empty() {
        return host;
    }
    let mut searches = vec![
        format!("{namespace}.svc.{domain}"),
        format!("svc.{domain}"),
        domain.to_string(),
    ];
    searches.extend(host);
    without_duplicates(searches)
}

fn without_duplicates(items: Vec<String>) -> Vec<String> {
    let mut seen = HashSet::new();
    items
        .into_iter()
        .filter(|item| seen.insert(item.clone()))
        .collect()
}

fn append_dns_config(conf: &mut ResolvConf, extra: &PodDNSConfig) {
    let mut servers = std::mem::take(&mut conf.nameservers);
    servers.extend(extra.nameservers.iter().flatten().cloned());
    conf.nameservers = without_duplicates(servers);
    let mut searches = std::mem::take(&mut conf.searches);
    searches.extend(extra.searches.iter().flatten().cloned());
    conf.searches = without_duplicates(searches);
    // Options are set by name: a pod's `ndots` replaces the default one.
    // (The kubelet goes through a map, so its order is random; this keeps
    // the first-seen order.)
    let mut options: Vec<(String, Option<String>)> = conf
        .options
        .iter()
        .map(|o| match o.split_once(':') {
            Some((name, value)) => (name.to_string(), Some(value.to_string())),
            None => (o.clone(), None),
        })
        .collect();
    for option in extra.options.iter().flatten() {
        let name = option.name.clone().unwrap_or_default();
        let value = option.value.clone().filter(|v| !v.is_empty());
        match options.iter_mut().find(|(n, _)| *n == name) {
            Some(existing) => existing.1 = value,
            None => options.push((name, value)),
        }
    }
    conf.options = options
        .into_iter()
        .map(|(name, value)| match value.filter(|v| !v.is_empty()) {
            Some(value) => format!("{name}:{value}"),
            None => name,
        })
        .collect();
}

fn fit_limits(conf: &mut ResolvConf, events: &mut Vec<DnsEvent>) {
    if conf.nameservers.len() > MAX_NAMESERVERS {
        conf.nameservers.truncate(MAX_NAMESERVERS);
        events.push(DnsEvent {
            reason: "DNSConfigForming",
            message: format!(
                "Nameserver limits were exceeded, some nameservers have been omitted, the applied nameserver line is: {}",
                conf.nameservers.join(" ")
            ),
            on_node: false,
        });
    }
    let mut exceeded = false;
    if conf.searches.len() > MAX_SEARCH_PATHS {
        conf.searches.truncate(MAX_SEARCH_PATHS);
        exceeded = true;
    }
    // Some resolvers (glibc 2.28) abort on a search path over 255 characters.
    let before = conf.searches.len();
    conf.searches.retain(|s| s.len() <= MAX_SEARCH_PATH_CHARS);
    exceeded |= conf.searches.len() != before;
    let line_len = conf.searches.join(" ").len();
    if line_len > MAX_SEARCH_LIST_CHARS {
        // Drop domains from the end until the line fits.
        let mut cut_len = 0;
        let mut keep = conf.searches.len();
        while keep > 0 {
            keep -= 1;
            cut_len += conf.searches[keep].len() + 1;
            if line_len - cut_len.min(line_len) <= MAX_SEARCH_LIST_CHARS {
                break;
            }
        }
        conf.searches.truncate(keep);
        exceeded = true;
    }
    if exceeded {
        events.push(DnsEvent {
            reason: "DNSConfigForming",
            message: format!(
                "Search Line limits were exceeded, some search paths have been omitted, the applied search line is: {}",
                conf.searches.join(" ")
            ),
            on_node: false,
        });
    }
}

/// The node's resolv.conf to give the kubelet role: `/etc/resolv.conf`,
/// unless it names only loopback resolvers (systemd-resolved's stub, which
/// pods cannot reach) and `/run/systemd/resolve/resolv.conf` has real ones,
/// as k3s chooses.
pub fn node_resolv_conf_path() -> PathBuf {
    const ETC: &str = "/etc/resolv.conf";
    const SYSTEMD: &str = "/run/systemd/resolve/resolv.conf";
    let only_loopback = |path: &str| {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|text| ResolvConf::parse(&text).ok())
            .map(|conf| {
                let ups = conf.upstreams();
                ups.iter().all(|u| u.ip().is_loopback())
            })
    };
    match (only_loopback(ETC), only_loopback(SYSTEMD)) {
        (Some(true), Some(false)) => PathBuf::from(SYSTEMD),
        _ => PathBuf::from(ETC),
    }
}

#[cfg(test)]
#[path = "resolv_conf_tests.rs"]
mod tests;
