//! Endpoints (core/v1, `ValidateEndpoints`) and EndpointSlices
//! (discovery.k8s.io/v1, `ValidateEndpointSlice`), with Kubernetes' wording.

use std::collections::HashSet;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{EndpointAddress, EndpointPort, Endpoints};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};

use super::names::PORT_RANGE_MSG;
use super::services::{validate_non_special_ip, INVALID_IP};
use super::{
    is_dns1123_label, is_dns1123_subdomain, is_qualified_name, name_is_dns_subdomain,
    validate_labels, validate_object_meta, validate_object_meta_update, FieldError,
};

const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];
/// Limits of one EndpointSlice.
const MAX_ENDPOINTS: usize = 1000;
const MAX_ADDRESSES: usize = 100;
const MAX_PORTS: usize = 20_000;
const MAX_TOPOLOGY_LABELS: usize = 16;

fn dns1123_label(value: &str, path: &str) -> Vec<FieldError> {
    is_dns1123_label(value)
        .into_iter()
        .map(|m| FieldError::invalid(path, value, m))
        .collect()
}

fn node_name(value: &str, path: &str) -> Vec<FieldError> {
    is_dns1123_subdomain(value)
        .into_iter()
        .map(|m| FieldError::invalid(path, value, m))
        .collect()
}

fn protocol(value: Option<&str>, path: String) -> Option<FieldError> {
    match value.unwrap_or("") {
        "" => Some(FieldError::required(path, "")),
        p if !PROTOCOLS.contains(&p) => Some(FieldError::not_supported(path, p, PROTOCOLS)),
        _ => None,
    }
}

fn app_protocol(value: Option<&str>, path: String) -> Vec<FieldError> {
    value
        .map(|a| {
            is_qualified_name(a)
                .into_iter()
                .map(|m| FieldError::invalid(path.clone(), a, m))
                .collect()
        })
        .unwrap_or_default()
}

/// `ValidateEndpoints`: each subset has addresses, addresses are real
/// (not loopback, link-local or unspecified) IPs, ports are named when
/// there are several.
pub fn validate_endpoints(ep: &Endpoints) -> Vec<FieldError> {
    let mut errs = validate_object_meta(&ep.metadata, true, name_is_dns_subdomain);
    for (i, ss) in ep.subsets.iter().flatten().enumerate() {
        let idx = format!("subsets[{i}]");
        let ready = ss.addresses.as_deref().unwrap_or(&[]);
        let not_ready = ss.not_ready_addresses.as_deref().unwrap_or(&[]);
        if ready.is_empty() && not_ready.is_empty() {
            errs.push(FieldError::required(
                idx.clone(),
                "must specify `addresses` or `notReadyAddresses`",
            ));
        }
        for (j, a) in ready.iter().enumerate() {
            errs.extend(endpoint_address(a, &format!("{idx}.addresses[{j}]")));
        }
        for (j, a) in not_ready.iter().enumerate() {
            errs.extend(endpoint_address(
                a,
                &format!("{idx}.notReadyAddresses[{j}]"),
            ));
        }
        let ports = ss.ports.as_deref().unwrap_or(&[]);
        for (j, p) in ports.iter().enumerate() {
            errs.extend(endpoint_port(
                p,
                ports.len() > 1,
                &format!("{idx}.ports[{j}]"),
            ));
        }
    }
    errs
}

/// `ValidateEndpointsUpdate`: metadata rules and the new object.
pub fn validate_endpoints_update(new: &Endpoints, old: &Endpoints) -> Vec<FieldError> {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    errs.extend(
        validate_endpoints(new)
            .into_iter()
            .filter(|e| !e.field.starts_with("metadata.")),
    );
    errs
}

fn endpoint_address(a: &EndpointAddress, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let ip_path = format!("{path}.ip");
    if a.ip.parse::<IpAddr>().is_err() {
        errs.push(FieldError::invalid(ip_path.clone(), &a.ip, INVALID_IP));
    }
    if let Some(h) = a.hostname.as_deref().filter(|h| !h.is_empty()) {
        errs.extend(dns1123_label(h, &format!("{path}.hostname")));
    }
    if let Some(n) = &a.node_name {
        errs.extend(node_name(n, &format!("{path}.nodeName")));
    }
    errs.extend(validate_non_special_ip(&a.ip, &ip_path));
    errs
}

fn endpoint_port(p: &EndpointPort, require_name: bool, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let name = p.name.as_deref().unwrap_or("");
    if require_name && name.is_empty() {
        errs.push(FieldError::required(format!("{path}.name"), ""));
    } else if !name.is_empty() {
        errs.extend(dns1123_label(name, &format!("{path}.name")));
    }
    if !(1..=65535).contains(&p.port) {
        errs.push(FieldError::invalid(
            format!("{path}.port"),
            p.port,
            PORT_RANGE_MSG,
        ));
    }
    errs.extend(protocol(p.protocol.as_deref(), format!("{path}.protocol")));
    errs.extend(app_protocol(
        p.app_protocol.as_deref(),
        format!("{path}.appProtocol"),
    ));
    errs
}

/// `ValidateEndpointSliceCreate`: a supported address type, then the
/// slice as [`validate_endpoint_slice`].
pub fn validate_endpoint_slice_create(slice: &EndpointSlice) -> Vec<FieldError> {
    let mut errs = Vec::new();
    match slice.address_type.as_str() {
        "" => errs.push(FieldError::required("addressType", "")),
        "IPv4" | "IPv6" | "FQDN" => {}
        other => errs.push(FieldError::not_supported(
            "addressType",
            other,
            &["FQDN", "IPv4", "IPv6"],
        )),
    }
    errs.extend(validate_endpoint_slice(slice));
    errs
}

/// `ValidateEndpointSliceUpdate`: the slice, and an address type that
/// stays.
pub fn validate_endpoint_slice_update(new: &EndpointSlice, old: &EndpointSlice) -> Vec<FieldError> {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    errs.extend(
        validate_endpoint_slice(new)
            .into_iter()
            .filter(|e| !e.field.starts_with("metadata.")),
    );
    if new.address_type != old.address_type {
        errs.push(FieldError::invalid(
            "addressType",
            &new.address_type,
            "field is immutable",
        ));
    }
    errs
}

/// `ValidateEndpointSlice`: addresses of the slice's type, limits, names.
pub fn validate_endpoint_slice(slice: &EndpointSlice) -> Vec<FieldError> {
    let mut errs = validate_object_meta(&slice.metadata, true, name_is_dns_subdomain);
    errs.extend(slice_endpoints(&slice.endpoints, &slice.address_type));
    let ports = slice.ports.as_deref().unwrap_or(&[]);
    if ports.len() > MAX_PORTS {
        errs.push(too_many("ports", ports.len(), MAX_PORTS));
        return errs;
    }
    let mut names = HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        let idx = format!("ports[{i}]");
        let name = p.name.as_deref().unwrap_or("");
        if !name.is_empty() {
            errs.extend(dns1123_label(name, &format!("{idx}.name")));
        }
        if !names.insert(name) {
            errs.push(FieldError::duplicate(format!("{idx}.name"), name));
        }
        if let Some(port) = p.port.filter(|p| !(1..=65535).contains(p)) {
            errs.push(FieldError::invalid(
                format!("{idx}.port"),
                port,
                PORT_RANGE_MSG,
            ));
        }
        errs.extend(protocol(p.protocol.as_deref(), format!("{idx}.protocol")));
        errs.extend(app_protocol(
            p.app_protocol.as_deref(),
            format!("{idx}.appProtocol"),
        ));
    }
    errs
}

fn too_many(path: &str, actual: usize, max: usize) -> FieldError {
    FieldError {
        cause_type: super::CauseType::TooMany,
        field: path.to_string(),
        bad_value: super::BadValue::Int(actual as i64),
        detail: format!("must have at most {max} items"),
    }
}

fn slice_endpoints(endpoints: &[Endpoint], address_type: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if endpoints.len() > MAX_ENDPOINTS {
        errs.push(too_many("endpoints", endpoints.len(), MAX_ENDPOINTS));
        return errs;
    }
    for (i, ep) in endpoints.iter().enumerate() {
        let idx = format!("endpoints[{i}]");
        let addr_path = format!("{idx}.addresses");
        if ep.addresses.is_empty() {
            errs.push(FieldError::required(
                addr_path.clone(),
                "must contain at least 1 address",
            ));
        } else if ep.addresses.len() > MAX_ADDRESSES {
            errs.push(too_many(&addr_path, ep.addresses.len(), MAX_ADDRESSES));
        }
        for (j, a) in ep.addresses.iter().enumerate() {
            let path = format!("{addr_path}[{j}]");
            match address_type {
                "IPv4" => match a.parse::<IpAddr>() {
                    Ok(IpAddr::V4(_)) => errs.extend(validate_non_special_ip(a, &path)),
                    _ => errs.push(FieldError::invalid(path, a, "must be a valid IPv4 address")),
                },
                "IPv6" => match a.parse::<IpAddr>() {
                    Ok(IpAddr::V6(_)) => errs.extend(validate_non_special_ip(a, &path)),
                    _ => errs.push(FieldError::invalid(path, a, "must be a valid IPv6 address")),
                },
                "FQDN" => errs.extend(
                    is_dns1123_subdomain(a)
                        .into_iter()
                        .map(|m| FieldError::invalid(path.clone(), a, m)),
                ),
                _ => {}
            }
        }
        if let Some(n) = &ep.node_name {
            errs.extend(node_name(n, &format!("{idx}.nodeName")));
        }
        if let Some(t) = &ep.deprecated_topology {
            let path = format!("{idx}.deprecatedTopology");
            if t.len() > MAX_TOPOLOGY_LABELS {
                errs.push(too_many(&path, t.len(), MAX_TOPOLOGY_LABELS));
            }
            errs.extend(validate_labels(t, &path));
        }
        if let Some(z) = &ep.zone {
            errs.extend(dns1123_label(z, &format!("{idx}.zone")));
        }
        if let Some(h) = &ep.hostname {
            errs.extend(dns1123_label(h, &format!("{idx}.hostname")));
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn messages(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(FieldError::message).collect()
    }

    #[test]
    fn endpoints_may_not_point_at_loopback() {
        let ep: Endpoints = serde_json::from_value(json!({
            "metadata": {"name": "kubernetes", "namespace": "default"},
            "subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}]}]
        }))
        .unwrap();
        assert_eq!(
            messages(&validate_endpoints(&ep)),
            vec!["subsets[0].addresses[0].ip: Invalid value: \"127.0.0.1\": may not be in the loopback range (127.0.0.0/8, ::1/128)"]
        );
    }

    #[test]
    fn subsets_need_addresses_and_named_ports() {
        let ep: Endpoints = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default"},
            "subsets": [{"ports": [{"port": 80, "protocol": "TCP"}, {"port": 81, "protocol": "TCP"}]}]
        }))
        .unwrap();
        assert_eq!(
            messages(&validate_endpoints(&ep)),
            vec![
                "subsets[0]: Required value: must specify `addresses` or `notReadyAddresses`",
                "subsets[0].ports[0].name: Required value",
                "subsets[0].ports[1].name: Required value"
            ]
        );
    }

    #[test]
    fn slices_check_addresses_by_type() {
        let slice: EndpointSlice = serde_json::from_value(json!({
            "metadata": {"name": "web-abc", "namespace": "default"},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["fd00::1"]}, {"addresses": []}],
            "ports": [{"name": "", "port": 80, "protocol": "TCP"}]
        }))
        .unwrap();
        assert_eq!(
            messages(&validate_endpoint_slice_create(&slice)),
            vec![
                "endpoints[0].addresses[0]: Invalid value: \"fd00::1\": must be a valid IPv4 address",
                "endpoints[1].addresses: Required value: must contain at least 1 address"
            ]
        );
        let mut bad = slice.clone();
        bad.address_type = "IPv5".into();
        bad.endpoints.clear();
        assert_eq!(
            messages(&validate_endpoint_slice_create(&bad)),
            vec!["addressType: Unsupported value: \"IPv5\": supported values: \"FQDN\", \"IPv4\", \"IPv6\""]
        );
    }
}
