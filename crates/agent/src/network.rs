//! The node's part of cluster networking besides pod interfaces: the
//! service proxy (orca-proxy, kube-proxy's job), the cluster DNS server
//! (orca-dns, CoreDNS's, served by every node on the cluster DNS address),
//! the hostPorts of the pods running here (the CNI portmap plugin's), and
//! the DNS settings each pod's resolv.conf is formed from.
//!
//! Neither server is needed to run pods: when one cannot start (a kernel
//! without nf_tables, an address that cannot be added, port 53 taken), the
//! error is logged and recorded as a Warning event on the Node, and the
//! node keeps running its pods, which then cannot reach Services (proxy)
//! or resolve cluster names (DNS). The event names the cause; fixing it
//! and restarting the agent brings the part back.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::Pod;
use orca_dns::resolv_conf::{pod_dns, NodeDns, PodDns, ResolvConf};
use orca_proxy::{HostPortMapping, Protocol, ProxyConfig};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::events::Type;
use crate::Ctx;

/// The hostPorts of the pods whose sandbox is up on this node, by pod uid,
/// published to the proxy as one list.
pub(crate) struct HostPorts {
    by_pod: Mutex<BTreeMap<String, Vec<HostPortMapping>>>,
    tx: watch::Sender<Vec<HostPortMapping>>,
}

impl HostPorts {
    pub fn new() -> (HostPorts, watch::Receiver<Vec<HostPortMapping>>) {
        let (tx, rx) = watch::channel(Vec::new());
        let ports = HostPorts {
            by_pod: Mutex::new(BTreeMap::new()),
            tx,
        };
        (ports, rx)
    }

    /// The pod `uid` has a sandbox with `ip`: its hostPorts lead there.
    pub fn set(&self, uid: &str, pod: &Pod, ip: IpAddr) {
        let mappings = match ip {
            IpAddr::V4(ip) => host_port_mappings(pod, ip),
            IpAddr::V6(_) => Vec::new(),
        };
        self.update(|by_pod| {
            if mappings.is_empty() {
                by_pod.remove(uid).is_some()
            } else {
                by_pod.insert(uid.to_string(), mappings.clone()).as_ref() != Some(&mappings)
            }
        });
    }

    /// The pod `uid`'s sandbox is gone: so are its hostPorts.
    pub fn remove(&self, uid: &str) {
        self.update(|by_pod| by_pod.remove(uid).is_some());
    }

    fn update(&self, change: impl FnOnce(&mut BTreeMap<String, Vec<HostPortMapping>>) -> bool) {
        let mut by_pod = self.by_pod.lock().unwrap_or_else(|e| e.into_inner());
        if change(&mut by_pod) {
            let all = by_pod.values().flatten().copied().collect();
            self.tx.send_replace(all);
        }
    }
}

/// The hostPorts of a pod at `pod_ip`, as the kubelet hands them to the
/// CNI portmap plugin: every app container port with a `hostPort`, on its
/// `hostIP` (unset or `0.0.0.0`: every address of the node). Host-network
/// pods have none: their containers bind the node's ports themselves.
pub(crate) fn host_port_mappings(pod: &Pod, pod_ip: Ipv4Addr) -> Vec<HostPortMapping> {
    let Some(spec) = &pod.spec else {
        return Vec::new();
    };
    if spec.host_network == Some(true) {
        return Vec::new();
    }
    let mut out = Vec::new();
    for port in spec
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
    {
        let (Some(host_port), Ok(container_port)) =
            (port.host_port, u16::try_from(port.container_port))
        else {
            continue;
        };
        let Ok(host_port) = u16::try_from(host_port) else {
            continue;
        };
        let Some(protocol) = Protocol::from_kubernetes(port.protocol.as_deref().unwrap_or("TCP"))
        else {
            continue;
        };
        let host_ip = match port.host_ip.as_deref().unwrap_or("") {
            "" => None,
            ip => match ip.parse::<IpAddr>() {
                Ok(IpAddr::V4(ip)) if ip.is_unspecified() => None,
                Ok(IpAddr::V4(ip)) => Some(ip),
                // An IPv6 hostIP has no IPv4 mapping; the proxy is IPv4 only.
                _ => continue,
            },
        };
        if host_port == 0 {
            continue;
        }
        out.push(HostPortMapping {
            protocol,
            host_port,
            host_ip,
            pod_ip,
            container_port,
        });
    }
    out.sort();
    out.dedup();
    out
}

/// The node's DNS settings (the kubelet's `--cluster-dns`,
/// `--cluster-domain` and `--resolv-conf`).
#[derive(Clone, Debug)]
pub(crate) struct NodeDnsSettings {
    pub cluster_dns: Vec<IpAddr>,
    pub cluster_domain: String,
    pub resolv_conf: Option<PathBuf>,
}

impl NodeDnsSettings {
    /// The node's resolv.conf, read now (the kubelet reads it for every
    /// sandbox, so an edit applies to the next pod); `None` for `--resolv-conf ""`.
    fn host(&self) -> Result<Option<ResolvConf>, String> {
        let Some(path) = &self.resolv_conf else {
            return Ok(None);
        };
        read_resolv_conf(path).map(Some)
    }

    /// `pod`'s resolv.conf and the events forming it raised; an error when
    /// the node's resolv.conf cannot be read (the sandbox then waits, as
    /// the kubelet's does).
    pub fn pod_dns(&self, pod: &Pod) -> Result<PodDns, String> {
        let host = self.host()?;
        Ok(pod_dns(
            pod,
            &NodeDns {
                cluster_dns: &self.cluster_dns,
                cluster_domain: &self.cluster_domain,
                host: host.as_ref(),
            },
        ))
    }
}

fn read_resolv_conf(path: &Path) -> Result<ResolvConf, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("open {}: {e}", path.display()))?;
    ResolvConf::parse(&text).map_err(|e| format!("parse {}: {e}", path.display()))
}

/// Records the DNS events of forming a pod's resolv.conf, on the pod or
/// the node as the kubelet does.
pub(crate) fn record_dns_events(ctx: &Ctx, pod: &Pod, dns: &PodDns) {
    for event in &dns.events {
        if event.on_node {
            ctx.recorder.node(
                &ctx.config.node_name,
                Type::Warning,
                event.reason,
                event.message.clone(),
            );
        } else {
            ctx.recorder.pod(
                pod,
                None,
                Type::Warning,
                event.reason,
                event.message.clone(),
            );
        }
    }
}

/// The kubelet's check of the node's resolv.conf at start: a Warning event
/// on the node when it cannot be read or leaves pods too little room.
pub(crate) fn check_resolv_conf(ctx: &Ctx) {
    let settings = &ctx.dns;
    let Some(path) = &settings.resolv_conf else {
        return;
    };
    let warning = match read_resolv_conf(path) {
        Ok(conf) => conf.limits_warning(path, &settings.cluster_domain),
        Err(e) => Some(e),
    };
    if let Some(message) = warning {
        tracing::warn!("the node's resolv.conf: {message}");
        ctx.recorder.node(
            &ctx.config.node_name,
            Type::Warning,
            "CheckLimitsForResolvConf",
            message,
        );
    }
}

/// The proxy and DNS server while they run; [`Services::stop`] ends them
/// with their cleanup, dropping ends them without (as a crash would).
pub(crate) struct Services {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Services {
    /// Starts the proxy (when `proxy` is given) and the DNS server (when
    /// `serve_dns`) in the background.
    pub fn start(
        ctx: &Arc<Ctx>,
        proxy: Option<ProxyConfig>,
        serve_dns: bool,
        host_ports: watch::Receiver<Vec<HostPortMapping>>,
    ) -> Services {
        let (stop, _) = watch::channel(false);
        let mut tasks = Vec::new();
        if let Some(config) = proxy {
            let stopped = stopped(&stop);
            tasks.push(tokio::spawn(run_proxy(
                ctx.clone(),
                config,
                host_ports,
                stopped,
            )));
        }
        if serve_dns {
            let stopped = stopped(&stop);
            tasks.push(tokio::spawn(run_dns(ctx.clone(), stopped)));
        }
        Services { stop, tasks }
    }

    /// Stops both, removing the proxy's rules and the DNS address.
    pub async fn stop(mut self) {
        self.stop.send_replace(true);
        for task in std::mem::take(&mut self.tasks) {
            let _ = task.await;
        }
    }
}

impl Drop for Services {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn stopped(stop: &watch::Sender<bool>) -> impl std::future::Future<Output = ()> + Send + 'static {
    let mut rx = stop.subscribe();
    async move {
        let _ = rx.wait_for(|stopped| *stopped).await;
    }
}

/// A cause for the proxy not to work that the proxy cannot see: without
/// the kernel's bridge netfilter hook, a reply from a pod to a pod on the
/// same bridge skips the un-DNAT and the client drops it.
fn bridge_netfilter_problem() -> Option<String> {
    const SYSCTL: &str = "/proc/sys/net/bridge/bridge-nf-call-iptables";
    match std::fs::read_to_string(SYSCTL) {
        Ok(v) if v.trim() == "1" => None,
        Ok(_) => match std::fs::write(SYSCTL, "1") {
            Ok(()) => None,
            Err(e) => Some(format!(
                "net.bridge.bridge-nf-call-iptables is 0 and cannot be set ({e}): \
                 pods reaching a Service backed by a pod on this node will get no answer"
            )),
        },
        Err(_) => Some(
            "the br_netfilter kernel module is not loaded (no /proc/sys/net/bridge): pods \
             reaching a Service backed by a pod on this node will get no answer; run \
             `modprobe br_netfilter` and restart the agent"
                .to_string(),
        ),
    }
}

async fn run_proxy(
    ctx: Arc<Ctx>,
    config: ProxyConfig,
    host_ports: watch::Receiver<Vec<HostPortMapping>>,
    stopped: impl std::future::Future<Output = ()>,
) {
    let node = ctx.config.node_name.clone();
    if let Some(problem) = bridge_netfilter_problem() {
        tracing::warn!("service proxy: {problem}");
        ctx.recorder
            .node(&node, Type::Warning, "ServiceProxyDegraded", problem);
    }
    let result = orca_proxy::watcher::run(
        ctx.client.clone(),
        config,
        node.clone(),
        host_ports,
        stopped,
    )
    .await;
    if let Err(e) = result {
        let message = format!(
            "the service proxy failed: {e}; pods on this node cannot reach Services and \
             hostPorts are not mapped (pods keep running; fix the cause, e.g. a kernel \
             without nf_tables, and restart the agent)"
        );
        tracing::error!("{message}");
        ctx.recorder
            .node(&node, Type::Warning, "FailedToStartServiceProxy", message);
    }
}

async fn run_dns(ctx: Arc<Ctx>, stopped: impl std::future::Future<Output = ()>) {
    let node = ctx.config.node_name.clone();
    let fail = |message: String| {
        let message = format!(
            "cluster DNS is not served on this node: {message}; pods here cannot resolve \
             cluster names (pods keep running; fix the cause and restart the agent)"
        );
        tracing::error!("{message}");
        ctx.recorder
            .node(&node, Type::Warning, "FailedToStartClusterDNS", message);
    };
    let settings = &ctx.dns;
    let Some(IpAddr::V4(address)) = settings.cluster_dns.first().copied() else {
        return fail(format!(
            "its address must be an IPv4 address, --cluster-dns is {:?}",
            settings.cluster_dns
        ));
    };
    let mut config = orca_dns::DnsConfig::new(address);
    config.cluster_domain = settings.cluster_domain.clone();
    // Read once: a changed node resolv.conf reaches the server at its next start.
    config.upstreams = match settings.host() {
        Ok(conf) => conf.map(|c| c.upstreams()).unwrap_or_default(),
        Err(e) => {
            tracing::warn!("cluster DNS forwards no names outside the cluster: {e}");
            Vec::new()
        }
    };
    if let Err(e) = blocking(move || orca_dns::interface::add_dns_address(address)).await {
        return fail(e.to_string());
    }
    if let Err(e) = orca_dns::run(ctx.client.clone(), config, stopped).await {
        fail(e.to_string());
    }
    if let Err(e) = blocking(orca_dns::interface::remove_dns_address).await {
        tracing::warn!("{e}; remove it with `ip addr del {address}/32 dev lo`");
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": spec})).unwrap()
    }

    #[test]
    fn host_ports_map_app_container_ports_with_a_host_port() {
        let p = pod(json!({
            "initContainers": [{"name": "i", "ports": [{"containerPort": 1, "hostPort": 1001}]}],
            "containers": [
                {"name": "a", "ports": [
                    {"containerPort": 80, "hostPort": 18080},
                    {"containerPort": 53, "hostPort": 1053, "protocol": "UDP", "hostIP": "0.0.0.0"},
                    {"containerPort": 81},
                ]},
                {"name": "b", "ports": [
                    {"containerPort": 82, "hostPort": 18082, "hostIP": "192.0.2.7"},
                    {"containerPort": 83, "hostPort": 18083, "hostIP": "fd00::1"},
                ]},
            ],
        }));
        let ip = Ipv4Addr::new(10, 42, 0, 5);
        let mapping = |protocol, host_port, host_ip, container_port| HostPortMapping {
            protocol,
            host_port,
            host_ip,
            pod_ip: ip,
            container_port,
        };
        assert_eq!(
            host_port_mappings(&p, ip),
            vec![
                mapping(Protocol::Tcp, 18080, None, 80),
                mapping(Protocol::Tcp, 18082, Some(Ipv4Addr::new(192, 0, 2, 7)), 82),
                mapping(Protocol::Udp, 1053, None, 53),
            ]
        );
        let host = pod(json!({"hostNetwork": true, "containers": [
            {"name": "a", "ports": [{"containerPort": 80, "hostPort": 80}]}]}));
        assert!(host_port_mappings(&host, ip).is_empty());
    }

    #[tokio::test]
    async fn host_ports_are_published_while_a_sandbox_holds_them() {
        let (ports, mut rx) = HostPorts::new();
        let web = pod(json!({"containers": [
            {"name": "a", "ports": [{"containerPort": 80, "hostPort": 18080}]}]}));
        let plain = pod(json!({"containers": [{"name": "a"}]}));
        ports.set("plain", &plain, "10.42.0.4".parse().unwrap());
        assert!(
            !rx.has_changed().unwrap(),
            "a pod without hostPorts changes nothing"
        );
        ports.set("web", &web, "10.42.0.5".parse().unwrap());
        assert!(rx.has_changed().unwrap());
        let published = rx.borrow_and_update().clone();
        assert_eq!(published.len(), 1);
        assert_eq!(published[0].pod_ip, Ipv4Addr::new(10, 42, 0, 5));
        ports.set("web", &web, "10.42.0.5".parse().unwrap());
        assert!(
            !rx.has_changed().unwrap(),
            "the same mappings again change nothing"
        );
        ports.remove("web");
        assert!(rx.borrow_and_update().is_empty());
    }
}
