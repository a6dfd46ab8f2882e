//! The v1 scheme defaults of Services, Endpoints and EndpointSlices
//! (`SetDefaults_Service`, `SetDefaults_EndpointPort`). Cluster IPs, IP
//! families and node ports are the API server's allocator's to fill.

use k8s_openapi::api::core::v1::{ClientIPConfig, Endpoints, Service, SessionAffinityConfig};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::set_str;

/// `DefaultClientIPServiceAffinitySeconds`: three hours.
pub const DEFAULT_AFFINITY_SECONDS: i32 = 10_800;

/// Session affinity `None`, type `ClusterIP`, ports' protocol `TCP` and
/// `targetPort` = `port`, the traffic policies, and for LoadBalancers
/// `allocateLoadBalancerNodePorts`.
pub fn service(svc: &mut Service) {
    let spec = svc.spec.get_or_insert_with(Default::default);
    set_str(&mut spec.session_affinity, "None");
    match spec.session_affinity.as_deref() {
        Some("None") => spec.session_affinity_config = None,
        Some("ClientIP") => {
            let has_timeout = spec
                .session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds)
                .is_some();
            if !has_timeout {
                spec.session_affinity_config = Some(SessionAffinityConfig {
                    client_ip: Some(ClientIPConfig {
                        timeout_seconds: Some(DEFAULT_AFFINITY_SECONDS),
                    }),
                });
            }
        }
        _ => {}
    }
    set_str(&mut spec.type_, "ClusterIP");
    for p in spec.ports.iter_mut().flatten() {
        set_str(&mut p.protocol, "TCP");
        let unset = match &p.target_port {
            None => true,
            Some(IntOrString::Int(0)) => true,
            Some(IntOrString::String(s)) => s.is_empty(),
            Some(IntOrString::Int(_)) => false,
        };
        if unset {
            p.target_port = Some(IntOrString::Int(p.port));
        }
    }
    if crate::validation::externally_accessible(spec) {
        set_str(&mut spec.external_traffic_policy, "Cluster");
    }
    if spec.internal_traffic_policy.is_none()
        && matches!(
            spec.type_.as_deref(),
            Some("ClusterIP" | "NodePort" | "LoadBalancer")
        )
    {
        spec.internal_traffic_policy = Some("Cluster".into());
    }
    if spec.type_.as_deref() == Some("LoadBalancer") {
        spec.allocate_load_balancer_node_ports.get_or_insert(true);
    }
}

/// Endpoints' ports default to TCP.
pub fn endpoints(ep: &mut Endpoints) {
    for ss in ep.subsets.iter_mut().flatten() {
        for p in ss.ports.iter_mut().flatten() {
            set_str(&mut p.protocol, "TCP");
        }
    }
}

/// An EndpointSlice's ports are named (`""` when unnamed) and TCP unless
/// they say.
pub fn endpoint_slice(slice: &mut EndpointSlice) {
    for p in slice.ports.iter_mut().flatten() {
        p.name.get_or_insert_with(String::new);
        set_str(&mut p.protocol, "TCP");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_bare_service_gets_kubernetes_defaults() {
        let mut svc: Service = serde_json::from_value(json!({
            "metadata": {"name": "web"},
            "spec": {"ports": [{"port": 80}, {"port": 81, "targetPort": "http", "protocol": "UDP"}]}
        }))
        .unwrap();
        service(&mut svc);
        assert_eq!(
            serde_json::to_value(&svc.spec).unwrap(),
            json!({"type": "ClusterIP", "sessionAffinity": "None", "internalTrafficPolicy": "Cluster",
                   "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80},
                             {"port": 81, "protocol": "UDP", "targetPort": "http"}]})
        );
    }

    #[test]
    fn node_ports_and_client_ip_affinity() {
        let mut svc: Service = serde_json::from_value(json!({
            "metadata": {"name": "np"},
            "spec": {"type": "NodePort", "sessionAffinity": "ClientIP", "ports": [{"port": 80}]}
        }))
        .unwrap();
        service(&mut svc);
        let spec = svc.spec.unwrap();
        assert_eq!(spec.external_traffic_policy.as_deref(), Some("Cluster"));
        assert_eq!(
            spec.session_affinity_config
                .unwrap()
                .client_ip
                .unwrap()
                .timeout_seconds,
            Some(10_800)
        );
    }

    #[test]
    fn external_name_services_get_no_traffic_policy() {
        let mut svc: Service = serde_json::from_value(json!({
            "metadata": {"name": "ext"},
            "spec": {"type": "ExternalName", "externalName": "example.com"}
        }))
        .unwrap();
        service(&mut svc);
        let spec = svc.spec.unwrap();
        assert_eq!(spec.internal_traffic_policy, None);
        assert_eq!(spec.external_traffic_policy, None);
        assert_eq!(spec.session_affinity.as_deref(), Some("None"));
    }
}
