//! The cluster DNS Service, `kube-system/kube-dns` at the cluster DNS
//! address, as k3s has it: clients and tools find cluster DNS there (and
//! the DNS answers for `kube-dns.kube-system.svc`). It has no selector and
//! no endpoints: every node answers the address itself (orca-dns on its
//! `lo`), and the node proxy leaves the address alone, so DNS traffic is
//! neither DNATed nor rejected for want of endpoints. Created at start
//! when missing (as k3s applies its manifests); an edited or deleted
//! Service is the operator's choice and stays so until the next start.

use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, PostParams};
use serde_json::json;

use crate::registry::CLUSTER_DNS_SERVICE;

pub(crate) fn desired(ip: Ipv4Addr) -> Service {
    let (namespace, name) = CLUSTER_DNS_SERVICE;
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": namespace,
                     "labels": {"k8s-app": "kube-dns"}},
        "spec": {"type": "ClusterIP", "clusterIP": ip.to_string(), "clusterIPs": [ip.to_string()],
                 "ports": [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                           {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53}]}
    }))
    .unwrap_or_default()
}

/// Creates the Service unless it exists; a failure is logged, not fatal
/// (pods resolve names without it).
pub(crate) async fn ensure(client: &kube::Client, ip: Ipv4Addr) {
    let (namespace, name) = CLUSTER_DNS_SERVICE;
    let api: Api<Service> = Api::namespaced(client.clone(), namespace);
    // Made by an earlier start or another server: creating it again would
    // fail on its taken address (422) before its taken name.
    if let Ok(Some(_)) = api.get_opt(name).await {
        return;
    }
    match api.create(&PostParams::default(), &desired(ip)).await {
        Ok(_) => tracing::info!(%ip, "created the cluster DNS Service {namespace}/{name}"),
        // Another server made it meanwhile.
        Err(kube::Error::Api(e)) if e.code == 409 || e.code == 422 => {}
        Err(e) => tracing::warn!(%ip, error = %e,
            "could not create the cluster DNS Service {namespace}/{name}; cluster DNS works \
             without it, but clients looking it up will not find it"),
    }
}
