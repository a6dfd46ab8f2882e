//! Feeds the proxier from the API server: Services (core/v1) and
//! EndpointSlices (discovery.k8s.io/v1) watched through kube-rs, turned into
//! [`ServicePort`]s, synced at most once per [`MIN_SYNC_PERIOD`] however
//! fast changes arrive (kube-proxy's `--min-sync-period`).

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::future::Future;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::{Api, ResourceExt};
use tokio::sync::watch;

use crate::types::{Endpoint, HostPortMapping, Protocol, ProxyConfig, ServicePort};
use crate::{Proxier, ProxyError};

/// The shortest time between two syncs: a burst of changes is one sync.
pub const MIN_SYNC_PERIOD: Duration = Duration::from_millis(100);

/// The label tying an EndpointSlice to its Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// kube's default `sessionAffinityConfig.clientIP.timeoutSeconds`.
const DEFAULT_AFFINITY_TIMEOUT: u32 = 10800;

/// Runs the node's service proxy until `stop` completes, then removes its
/// rules. Creates the [`Proxier`] in the calling process's network
/// namespace (replacing any table a previous run left), syncs once both
/// watches have listed, then on every change. `node_name` tells which
/// endpoints are local; `host_ports` carries the hostPorts of this node's
/// pods (the agent's to send; an empty list if it has none).
pub async fn run(
    client: kube::Client,
    config: ProxyConfig,
    node_name: String,
    mut host_ports: watch::Receiver<Vec<HostPortMapping>>,
    stop: impl Future<Output = ()>,
) -> Result<(), ProxyError> {
    let node_local_ips = config.node_local_cluster_ips.clone();
    let mut proxier = blocking(move || Proxier::new(config)).await?;

    let (services, services_writer) = reflector::store::<Service>();
    let (slices, slices_writer) = reflector::store::<EndpointSlice>();
    let mut service_events = reflector(
        services_writer,
        watcher(
            Api::<Service>::all(client.clone()),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .boxed();
    let mut slice_events = reflector(
        slices_writer,
        watcher(
            Api::<EndpointSlice>::all(client),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .boxed();

    tokio::pin!(stop);
    let mut dirty = true;
    let mut host_ports_dirty = true;
    let mut last_sync = Instant::now() - MIN_SYNC_PERIOD;
    let mut retry_at: Option<Instant> = None;
    // The first sync waits for both full lists (a partial view would drop
    // the rules of Services not yet seen).
    let (mut services_listed, mut slices_listed) = (false, false);
    loop {
        let ready = services_listed && slices_listed;
        // Sync when something changed (or cleanup is due), no sooner than
        // the minimum period after the last one.
        let due = if ready && (dirty || host_ports_dirty) {
            Some(retry_at.unwrap_or(last_sync + MIN_SYNC_PERIOD))
        } else {
            proxier.cleanup_due().filter(|_| ready)
        };
        let sleep = async {
            match due {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = &mut stop => break,
            Some(event) = service_events.next() => match event {
                Ok(event) => {
                    services_listed |= matches!(event, watcher::Event::InitDone);
                    dirty = true;
                }
                Err(e) => tracing::warn!("watching Services failed, retrying: {e}"),
            },
            Some(event) = slice_events.next() => match event {
                Ok(event) => {
                    slices_listed |= matches!(event, watcher::Event::InitDone);
                    dirty = true;
                }
                Err(e) => tracing::warn!("watching EndpointSlices failed, retrying: {e}"),
            },
            Ok(()) = host_ports.changed() => host_ports_dirty = true,
            _ = sleep => {
                let ports = service_ports(
                    &services.state(),
                    &slices.state(),
                    &node_name,
                    &node_local_ips,
                );
                let mappings = host_ports_dirty.then(|| host_ports.borrow_and_update().clone());
                last_sync = Instant::now();
                let (back, result) = blocking(move || {
                    let result = match mappings {
                        Some(m) => proxier.set_host_ports(m).and_then(|_| proxier.sync(&ports)),
                        None => proxier.sync(&ports),
                    };
                    Ok((proxier, result))
                })
                .await?;
                proxier = back;
                match result {
                    Ok(_) => {
                        dirty = false;
                        host_ports_dirty = false;
                        retry_at = None;
                    }
                    Err(e) => {
                        tracing::error!("programming the service proxy's nftables rules failed, retrying in 1s: {e}");
                        retry_at = Some(Instant::now() + Duration::from_secs(1));
                    }
                }
            }
        }
    }
    blocking(move || proxier.shutdown()).await
}

/// Runs netlink work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ProxyError> + Send + 'static,
) -> Result<T, ProxyError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(ProxyError::Socket(std::io::Error::other(e))))
}

/// The Service ports to program: ClusterIP Services with an IPv4 cluster IP
/// (headless and ExternalName Services have nothing to proxy) other than
/// the `node_local_ips` (see [`ProxyConfig::node_local_cluster_ips`]), each
/// port with the endpoints its EndpointSlices list for it (matched by port
/// name and protocol, so named target ports come resolved per pod).
pub fn service_ports(
    services: &[impl Borrow<Service>],
    slices: &[impl Borrow<EndpointSlice>],
    node_name: &str,
    node_local_ips: &[Ipv4Addr],
) -> Vec<ServicePort> {
    let mut slices_of: BTreeMap<(String, String), Vec<&EndpointSlice>> = BTreeMap::new();
    for slice in slices {
        let slice = slice.borrow();
        if slice.address_type != "IPv4" {
            continue;
        }
        if let Some(service) = slice.labels().get(SERVICE_NAME_LABEL) {
            slices_of
                .entry((slice.namespace().unwrap_or_default(), service.clone()))
                .or_default()
                .push(slice);
        }
    }
    let mut out = Vec::new();
    for service in services {
        let service = service.borrow();
        let Some(spec) = &service.spec else { continue };
        if spec.type_.as_deref() == Some("ExternalName") {
            continue;
        }
        let Some(cluster_ip) = spec
            .cluster_ip
            .as_deref()
            .and_then(|ip| ip.parse::<Ipv4Addr>().ok())
        else {
            continue; // headless ("None"), unset, or IPv6
        };
        if node_local_ips.contains(&cluster_ip) {
            continue;
        }
        let namespace = service.namespace().unwrap_or_default();
        let name = service.name_any();
        let affinity = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
            spec.session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds)
                .and_then(|t| u32::try_from(t).ok())
                .unwrap_or(DEFAULT_AFFINITY_TIMEOUT)
        });
        let mut external_ips: Vec<Ipv4Addr> = spec
            .external_ips
            .iter()
            .flatten()
            .filter_map(|ip| ip.parse().ok())
            .collect();
        external_ips.extend(
            service
                .status
                .as_ref()
                .and_then(|s| s.load_balancer.as_ref())
                .and_then(|lb| lb.ingress.as_ref())
                .into_iter()
                .flatten()
                .filter_map(|i| i.ip.as_deref()?.parse::<Ipv4Addr>().ok()),
        );
        let publish_not_ready = spec.publish_not_ready_addresses == Some(true);
        let own_slices = slices_of
            .get(&(namespace.clone(), name.clone()))
            .map(Vec::as_slice)
            .unwrap_or_default();
        for port in spec.ports.iter().flatten() {
            let Some(protocol) =
                Protocol::from_kubernetes(port.protocol.as_deref().unwrap_or("TCP"))
            else {
                continue;
            };
            let Ok(service_port) = u16::try_from(port.port) else {
                continue;
            };
            let port_name = port.name.clone().unwrap_or_default();
            let mut endpoints = Vec::new();
            for slice in own_slices {
                let Some(target) = slice.ports.iter().flatten().find_map(|p| {
                    let same_name = p.name.as_deref().unwrap_or_default() == port_name;
                    let same_protocol = p.protocol.as_deref().unwrap_or("TCP")
                        == port.protocol.as_deref().unwrap_or("TCP");
                    (same_name && same_protocol)
                        .then_some(p.port)
                        .flatten()
                        .and_then(|p| u16::try_from(p).ok())
                }) else {
                    continue;
                };
                for ep in &slice.endpoints {
                    let conditions = ep.conditions.as_ref();
                    // Unset conditions mean ready (the API's rule) and
                    // serving as ready.
                    let ready =
                        publish_not_ready || conditions.and_then(|c| c.ready).unwrap_or(true);
                    let serving = conditions.and_then(|c| c.serving).unwrap_or(ready);
                    let terminating = conditions.and_then(|c| c.terminating).unwrap_or(false);
                    let is_local = ep.node_name.as_deref() == Some(node_name);
                    for address in &ep.addresses {
                        let Ok(ip) = address.parse() else { continue };
                        endpoints.push(Endpoint {
                            ip,
                            port: target,
                            ready,
                            serving,
                            terminating,
                            is_local,
                        });
                    }
                }
            }
            let node_port = port
                .node_port
                .and_then(|p| u16::try_from(p).ok())
                .unwrap_or(0);
            out.push(ServicePort {
                namespace: namespace.clone(),
                name: name.clone(),
                port_name,
                protocol,
                cluster_ip,
                port: service_port,
                node_port,
                external_ips: external_ips.clone(),
                session_affinity_timeout: affinity,
                external_traffic_local: spec.external_traffic_policy.as_deref() == Some("Local")
                    && (node_port != 0 || !external_ips.is_empty()),
                internal_traffic_local: spec.internal_traffic_policy.as_deref() == Some("Local"),
                endpoints,
            });
        }
    }
    out.sort_by(|a, b| {
        (&a.namespace, &a.name, &a.port_name, a.protocol).cmp(&(
            &b.namespace,
            &b.name,
            &b.port_name,
            b.protocol,
        ))
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(spec: serde_json::Value) -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": spec,
        }))
        .unwrap()
    }

    fn slice(
        name: &str,
        service: &str,
        ports: serde_json::Value,
        endpoints: serde_json::Value,
    ) -> EndpointSlice {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "shop",
                         "labels": {"kubernetes.io/service-name": service}},
            "addressType": "IPv4",
            "ports": ports,
            "endpoints": endpoints,
        }))
        .unwrap()
    }

    #[test]
    fn ports_get_their_endpoints_by_port_name_with_named_target_ports_resolved() {
        let svc = service(json!({
            "type": "NodePort",
            "clusterIP": "10.43.0.20",
            "ports": [
                {"name": "http", "port": 80, "targetPort": "web", "nodePort": 30080},
                {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 5353},
            ],
        }));
        // Two pods resolving the named port "web" differently.
        let a = slice(
            "web-a",
            "web",
            json!([{"name": "http", "port": 8080, "protocol": "TCP"},
                   {"name": "dns", "port": 5353, "protocol": "UDP"}]),
            json!([{"addresses": ["10.42.0.5"], "nodeName": "n1",
                    "conditions": {"ready": true, "serving": true, "terminating": false}}]),
        );
        let b = slice(
            "web-b",
            "web",
            json!([{"name": "http", "port": 9090, "protocol": "TCP"}]),
            json!([{"addresses": ["10.42.1.7"], "nodeName": "n2",
                    "conditions": {"ready": false, "serving": true, "terminating": true}}]),
        );
        let other = slice(
            "api-a",
            "api",
            json!([{"name": "http", "port": 1}]),
            json!([{"addresses": ["10.42.9.9"]}]),
        );
        let ports = service_ports(&[svc], &[a, b, other], "n1", &[]);
        assert_eq!(ports.len(), 2);
        let dns = &ports[0];
        assert_eq!(
            (dns.port_name.as_str(), dns.protocol, dns.port),
            ("dns", Protocol::Udp, 53)
        );
        assert_eq!(
            dns.endpoints,
            vec![Endpoint {
                is_local: true,
                ..Endpoint::ready("10.42.0.5".parse().unwrap(), 5353)
            }]
        );
        let http = &ports[1];
        assert_eq!(
            (http.cluster_ip, http.node_port),
            ("10.43.0.20".parse().unwrap(), 30080)
        );
        assert_eq!(
            http.endpoints,
            vec![
                Endpoint {
                    is_local: true,
                    ..Endpoint::ready("10.42.0.5".parse().unwrap(), 8080)
                },
                Endpoint {
                    ready: false,
                    terminating: true,
                    ..Endpoint::ready("10.42.1.7".parse().unwrap(), 9090)
                },
            ]
        );
    }

    #[test]
    fn headless_and_external_name_services_are_skipped() {
        let headless = service(json!({"clusterIP": "None", "ports": [{"port": 80}]}));
        let external = service(json!({"type": "ExternalName", "externalName": "example.com"}));
        let no_slices: [EndpointSlice; 0] = [];
        assert!(service_ports(&[headless, external], &no_slices, "n1", &[]).is_empty());
    }

    #[test]
    fn services_on_a_node_local_address_are_left_to_the_node() {
        let dns: Service = serde_json::from_value(json!({
            "metadata": {"name": "kube-dns", "namespace": "kube-system"},
            "spec": {"clusterIP": "10.43.0.10", "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}]},
        }))
        .unwrap();
        let web = service(json!({"clusterIP": "10.43.0.20", "ports": [{"port": 80}]}));
        let no_slices: [EndpointSlice; 0] = [];
        let local = ["10.43.0.10".parse().unwrap()];
        let ports = service_ports(&[dns.clone(), web], &no_slices, "n1", &local);
        let names: Vec<&str> = ports.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["web"], "kube-dns is neither DNATed nor rejected");
        assert_eq!(service_ports(&[dns], &no_slices, "n1", &[]).len(), 1);
    }

    #[test]
    fn affinity_policies_external_ips_and_not_ready_publishing() {
        let svc: Service = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {
                "clusterIP": "10.43.0.21",
                "ports": [{"port": 80, "nodePort": 30081}],
                "sessionAffinity": "ClientIP",
                "externalIPs": ["192.0.2.10"],
                "externalTrafficPolicy": "Local",
                "internalTrafficPolicy": "Local",
                "publishNotReadyAddresses": true,
            },
            "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.11"}, {"hostname": "lb.example"}]}},
        }))
        .unwrap();
        let s = slice(
            "web-a",
            "web",
            json!([{"port": 8080}]),
            json!([{"addresses": ["10.42.0.5"], "conditions": {"ready": false}}]),
        );
        let ports = service_ports(&[svc], &[s], "n1", &[]);
        let p = &ports[0];
        assert_eq!(p.session_affinity_timeout, Some(DEFAULT_AFFINITY_TIMEOUT));
        assert_eq!(
            p.external_ips,
            vec![
                "192.0.2.10".parse::<Ipv4Addr>().unwrap(),
                "192.0.2.11".parse().unwrap()
            ]
        );
        assert!(p.external_traffic_local && p.internal_traffic_local);
        assert!(
            p.endpoints[0].ready,
            "publishNotReadyAddresses makes endpoints ready"
        );
    }
}
