//! Table columns and cells of Services, Endpoints and EndpointSlices, as
//! Kubernetes' printers make them (`printService`, `printEndpoints`,
//! `printEndpointSlice`).

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{Endpoints, Service, ServicePort};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::{json, Value};

use super::{age, age_col, col, name_col, name_of};

const TYPE_DESC: &str = "type determines how the Service is exposed. Defaults to ClusterIP. Valid options are ExternalName, ClusterIP, NodePort, and LoadBalancer. \"ClusterIP\" allocates a cluster-internal IP address for load-balancing to endpoints. Endpoints are determined by the selector or if that is not specified, by manual construction of an Endpoints object or EndpointSlice objects. If clusterIP is \"None\", no virtual IP is allocated and the endpoints are published as a set of endpoints rather than a virtual IP. \"NodePort\" builds on ClusterIP and allocates a port on every node which routes to the same endpoints as the clusterIP. \"LoadBalancer\" builds on NodePort and creates an external load-balancer (if supported in the current cloud) which routes to the same endpoints as the clusterIP. \"ExternalName\" aliases this service to the specified externalName. Several other fields do not apply to ExternalName services. More info: https://kubernetes.io/docs/concepts/services-networking/service/#publishing-services-service-types";
const CLUSTER_IP_DESC: &str = "clusterIP is the IP address of the service and is usually assigned randomly. If an address is specified manually, is in-range (as per system configuration), and is not in use, it will be allocated to the service; otherwise creation of the service will fail. This field may not be changed through updates unless the type field is also being changed to ExternalName (which requires this field to be blank) or the type field is being changed from ExternalName (in which case this field may optionally be specified, as describe above).  Valid values are \"None\", empty string (\"\"), or a valid IP address. Setting this to \"None\" makes a \"headless service\" (no virtual IP), which is useful when direct endpoint connections are preferred and proxying is not required.  Only applies to types ClusterIP, NodePort, and LoadBalancer. If this field is specified when creating a Service of type ExternalName, creation will fail. This field will be wiped when updating a Service to type ExternalName. More info: https://kubernetes.io/docs/concepts/services-networking/service/#virtual-ips-and-service-proxies";
const EXTERNAL_IPS_DESC: &str = "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.  These IPs are not managed by Kubernetes.  The user is responsible for ensuring that traffic arrives at a node with this IP.  A common example is external load-balancers that are not part of the Kubernetes system.";
const PORTS_DESC: &str = "The list of ports that are exposed by this service. More info: https://kubernetes.io/docs/concepts/services-networking/service/#virtual-ips-and-service-proxies";
const SELECTOR_DESC: &str = "Route service traffic to pods with label keys and values matching this selector. If empty or not present, the service is assumed to have an external process managing its endpoints, which Kubernetes will not modify. Only applies to types ClusterIP, NodePort, and LoadBalancer. Ignored if type is ExternalName. More info: https://kubernetes.io/docs/concepts/services-networking/service/";
const SUBSETS_DESC: &str = "The set of all endpoints is the union of all subsets. Addresses are placed into subsets according to the IPs they share. A single address with multiple ports, some of which are ready and some of which are not (because they come from different containers) will result in the address being displayed in different subsets for the different ports. No address will appear in both Addresses and NotReadyAddresses in the same subset. Sets of addresses and ports that comprise a service.";
const ADDRESS_TYPE_DESC: &str = "addressType specifies the type of address carried by this EndpointSlice. All addresses in this slice must be the same type. This field is immutable after creation. The following address types are currently supported: * IPv4: Represents an IPv4 Address. * IPv6: Represents an IPv6 Address. * FQDN: Represents a Fully Qualified Domain Name.";
const SLICE_PORTS_DESC: &str = "ports specifies the list of network ports exposed by each endpoint in this slice. Each port must have a unique name. When ports is empty, it indicates that there are no defined ports. When a port is defined with a nil port value, it indicates \"all ports\". Each slice may include a maximum of 100 ports.";
const SLICE_ENDPOINTS_DESC: &str = "endpoints is a list of unique endpoints in this slice. Each slice may include a maximum of 1000 endpoints.";

/// How many entries a list cell shows before `+ N more...`.
const SHOWN: usize = 3;

pub(super) fn service_columns() -> Vec<Value> {
    vec![
        name_col(),
        col("Type", "string", "", 0, TYPE_DESC),
        col("Cluster-IP", "string", "", 0, CLUSTER_IP_DESC),
        col("External-IP", "string", "", 0, EXTERNAL_IPS_DESC),
        col("Port(s)", "string", "", 0, PORTS_DESC),
        age_col(),
        col("Selector", "string", "", 1, SELECTOR_DESC),
    ]
}

pub(super) fn endpoints_columns() -> Vec<Value> {
    vec![
        name_col(),
        col("Endpoints", "string", "", 0, SUBSETS_DESC),
        age_col(),
    ]
}

pub(super) fn endpoint_slice_columns() -> Vec<Value> {
    vec![
        name_col(),
        col("AddressType", "string", "", 0, ADDRESS_TYPE_DESC),
        col("Ports", "string", "", 0, SLICE_PORTS_DESC),
        col("Endpoints", "string", "", 0, SLICE_ENDPOINTS_DESC),
        age_col(),
    ]
}

/// NAME TYPE CLUSTER-IP EXTERNAL-IP PORT(S) AGE SELECTOR.
pub fn service_cells(svc: &Service, now: DateTime<Utc>) -> Vec<Value> {
    let spec = svc.spec.clone().unwrap_or_default();
    let cluster_ip = spec
        .cluster_ips
        .as_ref()
        .and_then(|ips| ips.first().cloned())
        .unwrap_or_else(|| "<none>".into());
    let ports = port_string(spec.ports.as_deref().unwrap_or(&[]));
    let selector = spec
        .selector
        .as_ref()
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_else(|| "<none>".into());
    vec![
        json!(name_of(&svc.metadata)),
        json!(spec.type_.clone().unwrap_or_default()),
        json!(cluster_ip),
        json!(external_ip(svc)),
        json!(if ports.is_empty() {
            "<none>".into()
        } else {
            ports
        }),
        json!(age(svc.metadata.creation_timestamp.as_ref(), now)),
        json!(selector),
    ]
}

/// `80/TCP`, or `80:30080/TCP` with a node port, comma-separated.
fn port_string(ports: &[ServicePort]) -> String {
    ports
        .iter()
        .map(|p| {
            let proto = p.protocol.as_deref().unwrap_or("");
            match p.node_port.filter(|n| *n > 0) {
                Some(np) => format!("{}:{np}/{proto}", p.port),
                None => format!("{}/{proto}", p.port),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The server always prints wide rows; kubectl's narrow form would cut long
/// load balancer lists, which only matters for clouds.
fn external_ip(svc: &Service) -> String {
    let spec = svc.spec.clone().unwrap_or_default();
    let external = spec.external_ips.unwrap_or_default();
    match spec.type_.as_deref() {
        Some("ClusterIP" | "NodePort") if !external.is_empty() => external.join(","),
        Some("ClusterIP" | "NodePort") => "<none>".into(),
        Some("LoadBalancer") => {
            let mut all: Vec<String> = svc
                .status
                .as_ref()
                .and_then(|s| s.load_balancer.as_ref())
                .and_then(|l| l.ingress.as_ref())
                .into_iter()
                .flatten()
                .filter_map(|i| {
                    i.ip.clone()
                        .filter(|ip| !ip.is_empty())
                        .or_else(|| i.hostname.clone().filter(|h| !h.is_empty()))
                })
                .collect();
            all.extend(external);
            if all.is_empty() {
                "<pending>".into()
            } else {
                all.join(",")
            }
        }
        Some("ExternalName") => spec.external_name.unwrap_or_default(),
        _ => "<unknown>".into(),
    }
}

/// NAME ENDPOINTS AGE: up to three ready `ip:port`s, then `+ N more...`.
pub fn endpoints_cells(ep: &Endpoints, now: DateTime<Utc>) -> Vec<Value> {
    vec![
        json!(name_of(&ep.metadata)),
        json!(format_endpoints(ep)),
        json!(age(ep.metadata.creation_timestamp.as_ref(), now)),
    ]
}

/// kubectl's `formatEndpoints` (also its `describe service` line).
pub fn format_endpoints(ep: &Endpoints) -> String {
    let Some(subsets) = ep.subsets.as_ref().filter(|s| !s.is_empty()) else {
        return "<none>".into();
    };
    let mut list = Vec::new();
    let mut count = 0;
    for ss in subsets {
        let addrs = ss.addresses.as_deref().unwrap_or(&[]);
        let ports = ss.ports.as_deref().unwrap_or(&[]);
        if ports.is_empty() {
            count += addrs.len();
            list.extend(addrs.iter().map(|a| a.ip.clone()));
            continue;
        }
        for p in ports {
            count += addrs.len();
            list.extend(addrs.iter().map(|a| join_host_port(&a.ip, p.port)));
        }
    }
    more(list, count)
}

fn join_host_port(ip: &str, port: i32) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

fn more(mut list: Vec<String>, count: usize) -> String {
    if count > SHOWN {
        list.truncate(SHOWN);
        format!("{} + {} more...", list.join(","), count - SHOWN)
    } else {
        list.join(",")
    }
}

/// NAME ADDRESSTYPE PORTS ENDPOINTS AGE; `<unset>` for an empty list.
pub fn endpoint_slice_cells(slice: &EndpointSlice, now: DateTime<Utc>) -> Vec<Value> {
    let ports: Vec<String> = slice
        .ports
        .iter()
        .flatten()
        .map(|p| match (p.port, &p.name) {
            (Some(n), _) => n.to_string(),
            (None, Some(name)) => name.clone(),
            (None, None) => "*".into(),
        })
        .collect();
    let addresses: Vec<String> = slice
        .endpoints
        .iter()
        .flat_map(|e| e.addresses.iter().cloned())
        .collect();
    let unset = |s: String| if s.is_empty() { "<unset>".into() } else { s };
    let (np, na) = (ports.len(), addresses.len());
    vec![
        json!(name_of(&slice.metadata)),
        json!(slice.address_type),
        json!(unset(more(ports, np))),
        json!(unset(more(addresses, na))),
        json!(age(slice.metadata.creation_timestamp.as_ref(), now)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn svc(v: Value) -> Service {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn service_rows_match_the_reference() {
        let now = at("2026-12-05T07:59:00Z");
        let meta = |n: &str| json!({"name": n, "creationTimestamp": "2026-12-05T07:58:57Z"});
        let np = svc(
            json!({"metadata": meta("np"), "spec": {"type": "NodePort", "clusterIPs": ["10.0.0.67"],
            "ports": [{"port": 80, "protocol": "TCP", "nodePort": 32543}], "selector": {"app": "np"}}}),
        );
        assert_eq!(
            service_cells(&np, now),
            vec![
                json!("np"),
                json!("NodePort"),
                json!("10.0.0.67"),
                json!("<none>"),
                json!("80:32543/TCP"),
                json!("3s"),
                json!("app=np")
            ]
        );
        let ext = svc(
            json!({"metadata": meta("ext"), "spec": {"type": "ExternalName", "externalName": "example.com"}}),
        );
        assert_eq!(
            service_cells(&ext, now),
            vec![
                json!("ext"),
                json!("ExternalName"),
                json!("<none>"),
                json!("example.com"),
                json!("<none>"),
                json!("3s"),
                json!("<none>")
            ]
        );
        let lb = svc(
            json!({"metadata": meta("lb"), "spec": {"type": "LoadBalancer", "clusterIPs": ["10.0.0.86"],
            "ports": [{"port": 443, "protocol": "TCP", "nodePort": 31369}], "selector": {"app": "lb"}}}),
        );
        assert_eq!(service_cells(&lb, now)[3], json!("<pending>"));
        let headless = svc(
            json!({"metadata": meta("headless"), "spec": {"type": "ClusterIP", "clusterIPs": ["None"],
            "ports": [{"port": 80, "protocol": "TCP"}]}}),
        );
        assert_eq!(service_cells(&headless, now)[2], json!("None"));
    }

    #[test]
    fn endpoints_show_three_then_more() {
        let ep: Endpoints = serde_json::from_value(json!({"metadata": {"name": "web"}, "subsets": [
            {"addresses": [{"ip": "10.88.0.11"}, {"ip": "10.88.0.12"}, {"ip": "10.88.0.13"}, {"ip": "10.88.0.14"}],
             "ports": [{"port": 80, "protocol": "TCP"}]}]}))
        .unwrap();
        assert_eq!(
            format_endpoints(&ep),
            "10.88.0.11:80,10.88.0.12:80,10.88.0.13:80 + 1 more..."
        );
        let none: Endpoints = serde_json::from_value(json!({"metadata": {"name": "x"}})).unwrap();
        assert_eq!(format_endpoints(&none), "<none>");
    }

    #[test]
    fn slices_show_unset_when_empty() {
        let now = at("2026-12-05T07:59:00Z");
        let placeholder: EndpointSlice =
            serde_json::from_value(json!({"metadata": {"name": "web-fmk4h",
            "creationTimestamp": "2026-12-05T07:58:57Z"}, "addressType": "IPv4", "endpoints": []}))
            .unwrap();
        assert_eq!(
            endpoint_slice_cells(&placeholder, now),
            vec![
                json!("web-fmk4h"),
                json!("IPv4"),
                json!("<unset>"),
                json!("<unset>"),
                json!("3s")
            ]
        );
        let full: EndpointSlice = serde_json::from_value(json!({"metadata": {"name": "kubernetes"}, "addressType": "IPv4",
            "endpoints": [{"addresses": ["192.0.2.2"]}], "ports": [{"name": "https", "port": 6543, "protocol": "TCP"}]}))
        .unwrap();
        assert_eq!(endpoint_slice_cells(&full, now)[2], json!("6543"));
        assert_eq!(endpoint_slice_cells(&full, now)[3], json!("192.0.2.2"));
    }
}
