//! Services (`ValidateService`, `ValidateServiceUpdate`,
//! `ValidateServiceClusterIPsRelatedFields`), with Kubernetes' wording.

use std::collections::HashSet;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};

use super::names::{mask_trailing_dash, max_len_error, regex_error, PORT_RANGE_MSG};
use super::probes::validate_port_num_or_name;
use super::{
    is_dns1123_label, is_dns1123_subdomain, is_qualified_name, validate_labels,
    validate_object_meta, validate_object_meta_update, BadValue, FieldError,
};

const DNS1035_LABEL_FMT: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";
/// `MaxClientIPServiceAffinitySeconds`: one day.
const MAX_AFFINITY_SECONDS: i32 = 86_400;
const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];
const TYPES: &[&str] = &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];

/// An RFC 1035 label (Service names): like an RFC 1123 label but starting
/// with a letter.
pub fn is_dns1035_label(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > 63 {
        errs.push(max_len_error(63));
    }
    let b = value.as_bytes();
    let ok = !b.is_empty()
        && b[0].is_ascii_lowercase()
        && (b[b.len() - 1].is_ascii_lowercase() || b[b.len() - 1].is_ascii_digit())
        && b.iter()
            .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-');
    if !ok {
        errs.push(regex_error(
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character",
            DNS1035_LABEL_FMT,
            &["my-name", "abc-123"],
        ));
    }
    errs
}

/// Service names are DNS-1035 labels (`ValidateServiceName`).
pub fn name_is_dns1035_label(name: &str, prefix: bool) -> Vec<String> {
    is_dns1035_label(&mask_trailing_dash(name, prefix))
}

/// `ValidateDNS1123Label` as field errors.
fn dns1123_label(value: &str, path: &str) -> Vec<FieldError> {
    is_dns1123_label(value)
        .into_iter()
        .map(|m| FieldError::invalid(path, value, m))
        .collect()
}

/// `ValidateNonSpecialIP`: no unspecified, loopback or link-local
/// addresses (Endpoints, EndpointSlices and external IPs).
pub fn validate_non_special_ip(ip: &str, path: &str) -> Vec<FieldError> {
    let Ok(addr) = ip.parse::<IpAddr>() else {
        return vec![FieldError::invalid(path, ip, "must be a valid IP address")];
    };
    let mut errs = Vec::new();
    if addr.is_unspecified() {
        errs.push(FieldError::invalid(
            path,
            ip,
            format!("may not be unspecified ({ip})"),
        ));
    }
    if addr.is_loopback() {
        errs.push(FieldError::invalid(
            path,
            ip,
            "may not be in the loopback range (127.0.0.0/8, ::1/128)",
        ));
    }
    let link_local_unicast = match addr {
        IpAddr::V4(a) => a.is_link_local(),
        IpAddr::V6(a) => (a.segments()[0] & 0xffc0) == 0xfe80,
    };
    if link_local_unicast {
        errs.push(FieldError::invalid(
            path,
            ip,
            "may not be in the link-local range (169.254.0.0/16, fe80::/10)",
        ));
    }
    let link_local_multicast = match addr {
        IpAddr::V4(a) => a.octets()[..3] == [224, 0, 0],
        IpAddr::V6(a) => (a.segments()[0] & 0xff0f) == 0xff02,
    };
    if link_local_multicast {
        errs.push(FieldError::invalid(
            path,
            ip,
            "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)",
        ));
    }
    errs
}

/// `IsValidIP`'s message.
pub const INVALID_IP: &str = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)";

fn spec_of(svc: &Service) -> ServiceSpec {
    svc.spec.clone().unwrap_or_default()
}

fn cluster_ips(spec: &ServiceSpec) -> &[String] {
    spec.cluster_ips.as_deref().unwrap_or(&[])
}

/// A headless Service: `clusterIPs` is exactly `["None"]`.
pub fn is_headless(spec: &ServiceSpec) -> bool {
    cluster_ips(spec) == ["None"]
}

/// Types whose traffic comes from outside the cluster.
pub fn externally_accessible(spec: &ServiceSpec) -> bool {
    match spec.type_.as_deref() {
        Some("LoadBalancer" | "NodePort") => true,
        Some("ClusterIP") => spec.external_ips.as_ref().is_some_and(|e| !e.is_empty()),
        _ => false,
    }
}

/// A LoadBalancer with `externalTrafficPolicy: Local` gets a health check
/// node port.
pub fn needs_health_check(spec: &ServiceSpec) -> bool {
    spec.type_.as_deref() == Some("LoadBalancer")
        && spec.external_traffic_policy.as_deref() == Some("Local")
}

/// `ValidateService`: what a stored Service must satisfy.
pub fn validate_service(svc: &Service) -> Vec<FieldError> {
    let mut errs = validate_object_meta(&svc.metadata, true, name_is_dns1035_label);
    let spec = spec_of(svc);
    let ty = spec.type_.as_deref().unwrap_or("");
    let ports = spec.ports.as_deref().unwrap_or(&[]);
    let headless = is_headless(&spec);
    if ports.is_empty() && !headless && ty != "ExternalName" {
        errs.push(FieldError::required("spec.ports", ""));
    }
    match ty {
        "LoadBalancer" | "NodePort" if headless => errs.push(FieldError::invalid(
            "spec.clusterIPs[0]",
            "None",
            format!("may not be set to 'None' for {ty} services"),
        )),
        "ExternalName" => {
            if !cluster_ips(&spec).is_empty() {
                errs.push(FieldError::forbidden(
                    "spec.clusterIPs",
                    "may not be set for ExternalName services",
                ));
            }
            if spec.ip_families.as_ref().is_some_and(|f| !f.is_empty()) {
                errs.push(FieldError::forbidden(
                    "spec.ipFamilies",
                    "may not be set for ExternalName services",
                ));
            }
            if spec.ip_family_policy.is_some() {
                errs.push(FieldError::forbidden(
                    "spec.ipFamilyPolicy",
                    "may not be set for ExternalName services",
                ));
            }
            // A CNAME may end with a dot (fully qualified).
            let name = spec.external_name.as_deref().unwrap_or("");
            let cname = name.strip_suffix('.').unwrap_or(name);
            if cname.is_empty() {
                errs.push(FieldError::required("spec.externalName", ""));
            } else {
                errs.extend(
                    is_dns1123_subdomain(cname)
                        .into_iter()
                        .map(|m| FieldError::invalid("spec.externalName", cname, m)),
                );
            }
        }
        _ => {}
    }
    let mut names = HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        errs.extend(validate_service_port(
            p,
            ports.len() > 1,
            &mut names,
            &format!("spec.ports[{i}]"),
        ));
    }
    if let Some(sel) = &spec.selector {
        errs.extend(validate_labels(sel, "spec.selector"));
    }
    match spec.session_affinity.as_deref() {
        None | Some("") => errs.push(FieldError::required("spec.sessionAffinity", "")),
        Some("ClientIP") => errs.extend(client_ip_affinity(&spec)),
        Some("None") => {
            if spec.session_affinity_config.is_some() {
                errs.push(FieldError::forbidden(
                    "spec.sessionAffinityConfig",
                    "must not be set when session affinity is None",
                ));
            }
        }
        Some(other) => errs.push(FieldError::not_supported(
            "spec.sessionAffinity",
            other,
            &["ClientIP", "None"],
        )),
    }
    errs.extend(validate_cluster_ips(svc));
    for (i, ip) in spec.external_ips.iter().flatten().enumerate() {
        let path = format!("spec.externalIPs[{i}]");
        if ip.parse::<IpAddr>().is_err() {
            errs.push(FieldError::invalid(path, ip, INVALID_IP));
        } else {
            errs.extend(validate_non_special_ip(ip, &path));
        }
    }
    match ty {
        "" => errs.push(FieldError::required("spec.type", "")),
        t if !TYPES.contains(&t) => errs.push(FieldError::not_supported("spec.type", t, TYPES)),
        _ => {}
    }
    if ty == "ClusterIP" {
        for (i, p) in ports.iter().enumerate() {
            if p.node_port.unwrap_or(0) != 0 {
                errs.push(FieldError::forbidden(
                    format!("spec.ports[{i}].nodePort"),
                    "may not be used when `type` is 'ClusterIP'",
                ));
            }
        }
    }
    let protocol = |p: &ServicePort| p.protocol.clone().unwrap_or_default();
    let mut node_ports = HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        let np = p.node_port.unwrap_or(0);
        if np != 0 && !node_ports.insert((protocol(p), np)) {
            errs.push(FieldError::duplicate(
                format!("spec.ports[{i}].nodePort"),
                np,
            ));
        }
    }
    let mut seen = HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        if !seen.insert((protocol(p), p.port)) {
            errs.push(FieldError::duplicate(
                format!("spec.ports[{i}]"),
                BadValue::Raw(format!(
                    "core.ServicePort{{Name:\"\", Protocol:\"{}\", AppProtocol:(*string)(nil), Port:{}, TargetPort:intstr.IntOrString{{Type:0, IntVal:0, StrVal:\"\"}}, NodePort:0}}",
                    protocol(p),
                    p.port
                )),
            ));
        }
    }
    if spec
        .load_balancer_source_ranges
        .as_ref()
        .is_some_and(|r| !r.is_empty())
        && ty != "LoadBalancer"
    {
        errs.push(FieldError::forbidden(
            "spec.LoadBalancerSourceRanges",
            "may only be used when `type` is 'LoadBalancer'",
        ));
    }
    if spec.allocate_load_balancer_node_ports.is_some() && ty != "LoadBalancer" {
        errs.push(FieldError::forbidden(
            "spec.allocateLoadBalancerNodePorts",
            "may only be used when `type` is 'LoadBalancer'",
        ));
    }
    if ty == "LoadBalancer" && spec.allocate_load_balancer_node_ports.is_none() {
        errs.push(FieldError::required("allocateLoadBalancerNodePorts", ""));
    }
    match (&spec.load_balancer_class, ty) {
        (Some(c), "LoadBalancer") => errs.extend(
            is_qualified_name(c)
                .into_iter()
                .map(|m| FieldError::invalid("spec.loadBalancerClass", c, m)),
        ),
        (Some(_), _) => errs.push(FieldError::forbidden(
            "spec.loadBalancerClass",
            "may only be used when `type` is 'LoadBalancer'",
        )),
        _ => {}
    }
    errs.extend(traffic_policies(&spec));
    errs
}

fn validate_service_port(
    p: &ServicePort,
    require_name: bool,
    names: &mut HashSet<String>,
    path: &str,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let name = p.name.as_deref().unwrap_or("");
    if require_name && name.is_empty() {
        errs.push(FieldError::required(format!("{path}.name"), ""));
    } else if !name.is_empty() {
        errs.extend(dns1123_label(name, &format!("{path}.name")));
        if !names.insert(name.to_string()) {
            errs.push(FieldError::duplicate(format!("{path}.name"), name));
        }
    }
    if !(1..=65535).contains(&p.port) {
        errs.push(FieldError::invalid(
            format!("{path}.port"),
            p.port,
            PORT_RANGE_MSG,
        ));
    }
    match p.protocol.as_deref().unwrap_or("") {
        "" => errs.push(FieldError::required(format!("{path}.protocol"), "")),
        proto if !PROTOCOLS.contains(&proto) => errs.push(FieldError::not_supported(
            format!("{path}.protocol"),
            proto,
            PROTOCOLS,
        )),
        _ => {}
    }
    if let Some(t) = &p.target_port {
        errs.extend(validate_port_num_or_name(t, &format!("{path}.targetPort")));
    }
    if let Some(a) = &p.app_protocol {
        errs.extend(
            is_qualified_name(a)
                .into_iter()
                .map(|m| FieldError::invalid(format!("{path}.appProtocol"), a, m)),
        );
    }
    errs
}

fn client_ip_affinity(spec: &ServiceSpec) -> Vec<FieldError> {
    const WHY: &str = "when session affinity type is ClientIP";
    let Some(config) = &spec.session_affinity_config else {
        return vec![FieldError::required("spec.sessionAffinityConfig", WHY)];
    };
    let Some(client_ip) = &config.client_ip else {
        return vec![FieldError::required(
            "spec.sessionAffinityConfig.clientIP",
            WHY,
        )];
    };
    match client_ip.timeout_seconds {
        None => vec![FieldError::required(
            "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
            WHY,
        )],
        Some(t) if t <= 0 || t > MAX_AFFINITY_SECONDS => vec![FieldError::invalid(
            "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
            t,
            format!("must be greater than 0 and less than {MAX_AFFINITY_SECONDS}"),
        )],
        Some(_) => vec![],
    }
}

fn traffic_policies(spec: &ServiceSpec) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let ty = spec.type_.as_deref().unwrap_or("");
    let etp = spec.external_traffic_policy.as_deref().unwrap_or("");
    if !externally_accessible(spec) {
        if !etp.is_empty() {
            errs.push(FieldError::invalid(
                "spec.externalTrafficPolicy",
                etp,
                "may only be set for externally-accessible services",
            ));
        }
    } else if etp.is_empty() {
        errs.push(FieldError::required("spec.externalTrafficPolicy", ""));
    } else if !matches!(etp, "Cluster" | "Local") {
        errs.push(FieldError::not_supported(
            "spec.externalTrafficPolicy",
            etp,
            &["Cluster", "Local"],
        ));
    }
    let hc = spec.health_check_node_port.unwrap_or(0);
    if !needs_health_check(spec) {
        if hc != 0 {
            errs.push(FieldError::invalid(
                "spec.healthCheckNodePort",
                hc,
                "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'",
            ));
        }
    } else if hc == 0 {
        errs.push(FieldError::required("spec.healthCheckNodePort", ""));
    } else if !(1..=65535).contains(&hc) {
        errs.push(FieldError::invalid(
            "spec.healthCheckNodePort",
            hc,
            PORT_RANGE_MSG,
        ));
    }
    match spec.internal_traffic_policy.as_deref() {
        None if matches!(ty, "ClusterIP" | "NodePort" | "LoadBalancer") => {
            errs.push(FieldError::required(
                "spec.internalTrafficPolicy",
                "must be specified when `type` is 'ClusterIP', 'NodePort', or 'LoadBalancer'",
            ))
        }
        Some(p) if !matches!(p, "Cluster" | "Local") => errs.push(FieldError::not_supported(
            "spec.internalTrafficPolicy",
            p,
            &["Cluster", "Local"],
        )),
        _ => {}
    }
    if let Some(d) = spec.traffic_distribution.as_deref() {
        if d != "PreferClose" {
            errs.push(FieldError::not_supported(
                "spec.trafficDistribution",
                d,
                &["PreferClose"],
            ));
        }
    }
    errs
}

/// `ValidateServiceClusterIPsRelatedFields`: `clusterIP` and `clusterIPs`
/// agree, the IPs are IPs, the families and policy are known values. Run
/// before addresses are allocated too.
pub fn validate_cluster_ips(svc: &Service) -> Vec<FieldError> {
    let spec = spec_of(svc);
    if spec.type_.as_deref() == Some("ExternalName") {
        return vec![];
    }
    let mut errs = Vec::new();
    let ips = cluster_ips(&spec);
    let list = || BadValue::StrList(ips.to_vec());
    match spec.cluster_ip.as_deref().unwrap_or("") {
        "" if !ips.is_empty() => errs.push(FieldError::invalid(
            "spec.clusterIPs",
            list(),
            "must be empty when `clusterIP` is not specified",
        )),
        "" => {}
        ip => match ips.first() {
            None => errs.push(FieldError::required("spec.clusterIPs", "")),
            Some(first) if first != ip => errs.push(FieldError::invalid(
                "spec.clusterIPs",
                list(),
                "first value must match `clusterIP`",
            )),
            Some(_) => {}
        },
    }
    let mut seen = HashSet::new();
    for (i, f) in spec.ip_families.iter().flatten().enumerate() {
        let path = format!("spec.ipFamilies[{i}]");
        if !matches!(f.as_str(), "IPv4" | "IPv6") {
            errs.push(FieldError::not_supported(
                path.clone(),
                f,
                &["IPv4", "IPv6"],
            ));
        }
        if !seen.insert(f.clone()) {
            errs.push(FieldError::duplicate(path, f));
        }
    }
    if let Some(p) = spec.ip_family_policy.as_deref() {
        if !matches!(p, "PreferDualStack" | "RequireDualStack" | "SingleStack") {
            errs.push(FieldError::not_supported(
                "spec.ipFamilyPolicy",
                p,
                &["PreferDualStack", "RequireDualStack", "SingleStack"],
            ));
        }
    }
    let mut bad_ips = false;
    for (i, ip) in ips.iter().enumerate() {
        if i == 0 && ip == "None" {
            if ips.len() > 1 {
                bad_ips = true;
                errs.push(FieldError::invalid(
                    "spec.clusterIPs",
                    list(),
                    "'None' must be the first and only value",
                ));
            }
            continue;
        }
        if ip.parse::<IpAddr>().is_err() {
            bad_ips = true;
            errs.push(FieldError::invalid(
                format!("spec.clusterIPs[{i}]"),
                ip,
                INVALID_IP,
            ));
        }
    }
    if ips.len() > 2 {
        errs.push(FieldError::invalid(
            "spec.clusterIPs",
            list(),
            "may only hold up to 2 values",
        ));
    }
    if bad_ips {
        return errs;
    }
    if ips.len() > 1 {
        let v6 = ips.iter().filter(|ip| ip.contains(':')).count();
        if v6 != 1 || ips.len() != 2 {
            errs.push(FieldError::invalid(
                "spec.clusterIPs",
                list(),
                "may specify no more than one IP for each IP family",
            ));
        }
    }
    if !is_headless(&spec) {
        let families = spec.ip_families.as_deref().unwrap_or(&[]);
        for (i, (ip, family)) in ips.iter().zip(families).enumerate() {
            let v6 = ip.contains(':');
            let want = match (family.as_str(), v6) {
                ("IPv4", true) => "IPv4",
                ("IPv6", false) => "IPv6",
                _ => continue,
            };
            errs.push(FieldError::invalid(
                format!("spec.clusterIPs[{i}]"),
                ip,
                format!("expected an {want} value as indicated by `ipFamilies[{i}]`"),
            ));
        }
    }
    errs
}

/// `ValidateServiceUpdate`: the metadata rules, allocated addresses and
/// families that may not change once set, and the whole Service.
pub fn validate_service_update(new: &Service, old: &Service) -> Vec<FieldError> {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    let (n, o) = (spec_of(new), spec_of(old));
    let external = |s: &ServiceSpec| s.type_.as_deref() == Some("ExternalName");
    let both_headless = is_headless(&n) && is_headless(&o);
    if !external(&n) && !external(&o) && !both_headless {
        let (ni, oi) = (cluster_ips(&n), cluster_ips(&o));
        let list = || BadValue::StrList(ni.to_vec());
        if ni.len() == oi.len() {
            for (i, ip) in oi.iter().enumerate() {
                if *ip != ni[i] {
                    errs.push(FieldError::invalid(
                        format!("spec.clusterIPs[{i}]"),
                        list(),
                        "may not change once set",
                    ));
                }
            }
        } else if oi.len() > ni.len() {
            if ni.is_empty() {
                errs.push(FieldError::invalid(
                    "spec.clusterIPs[0]",
                    list(),
                    "primary clusterIP can not be unset",
                ));
            } else if ni[0] != oi[0] {
                errs.push(FieldError::invalid(
                    "spec.clusterIPs[0]",
                    list(),
                    "may not change once set",
                ));
            }
        } else if !oi.is_empty() && ni[0] != oi[0] {
            errs.push(FieldError::invalid(
                "spec.clusterIPs[0]",
                list(),
                "may not change once set",
            ));
        }
    }
    if !external(&n) && !external(&o) && !is_headless(&n) && !is_headless(&o) {
        let (nf, of) = (
            n.ip_families.as_deref().unwrap_or(&[]),
            o.ip_families.as_deref().unwrap_or(&[]),
        );
        let changed = if nf.len() == of.len() {
            nf != of
        } else {
            !nf.is_empty() && !of.is_empty() && nf[0] != of[0]
        };
        if changed {
            errs.push(FieldError::invalid(
                "spec.ipFamilies[0]",
                BadValue::Raw(format!(
                    "[]core.IPFamily{{{}}}",
                    nf.iter()
                        .map(|f| format!("\"{f}\""))
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
                "may not change once set",
            ));
        }
    }
    let lb = |s: &ServiceSpec| s.type_.as_deref() == Some("LoadBalancer");
    if lb(&n) && lb(&o) && n.load_balancer_class != o.load_balancer_class {
        errs.push(FieldError::invalid(
            "spec.loadBalancerClass",
            n.load_balancer_class.clone(),
            "may not change once set",
        ));
    }
    errs.extend(
        validate_service(new)
            .into_iter()
            .filter(|e| !e.field.starts_with("metadata.")),
    );
    errs
}

/// `ValidateServiceStatusUpdate`: the metadata rules and the load
/// balancer's ingress addresses.
pub fn validate_service_status_update(new: &Service, old: &Service) -> Vec<FieldError> {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    let ingress = new
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|l| l.ingress.as_ref());
    for (i, ing) in ingress.into_iter().flatten().enumerate() {
        let path = format!("status.loadBalancer.ingress[{i}]");
        if let Some(ip) = ing.ip.as_deref().filter(|ip| !ip.is_empty()) {
            if ip.parse::<IpAddr>().is_err() {
                errs.push(FieldError::invalid(
                    format!("{path}.ip"),
                    ip,
                    "must be a valid IP address",
                ));
            }
        }
        if let Some(h) = ing.hostname.as_deref().filter(|h| !h.is_empty()) {
            errs.extend(
                is_dns1123_subdomain(h)
                    .into_iter()
                    .map(|m| FieldError::invalid(format!("{path}.hostname"), h, m)),
            );
            if h.parse::<IpAddr>().is_ok() {
                errs.push(FieldError::invalid(
                    format!("{path}.hostname"),
                    h,
                    "must be a DNS name, not an IP address",
                ));
            }
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(spec: serde_json::Value) -> Service {
        serde_json::from_value(
            json!({"metadata": {"name": "web", "namespace": "default"}, "spec": spec}),
        )
        .unwrap()
    }

    fn messages(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(FieldError::message).collect()
    }

    fn defaulted() -> serde_json::Value {
        json!({"type": "ClusterIP", "sessionAffinity": "None", "internalTrafficPolicy": "Cluster",
               "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
               "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}]})
    }

    #[test]
    fn a_defaulted_service_is_valid() {
        assert_eq!(
            messages(&validate_service(&svc(defaulted()))),
            Vec::<String>::new()
        );
    }

    #[test]
    fn names_are_dns1035_labels() {
        let mut s = svc(defaulted());
        s.metadata.name = Some("1web".into());
        assert_eq!(
            messages(&validate_service(&s)),
            vec!["metadata.name: Invalid value: \"1web\": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"]
        );
    }

    #[test]
    fn ports_need_names_when_several_and_no_duplicates() {
        let mut spec = defaulted();
        spec["ports"] = json!([
            {"port": 80, "protocol": "TCP", "targetPort": 80},
            {"name": "b", "port": 80, "protocol": "TCP", "targetPort": 80},
            {"name": "b", "port": 0, "protocol": "HTTP", "targetPort": "Bad_Name"}
        ]);
        let got = messages(&validate_service(&svc(spec)));
        assert!(
            got.contains(&"spec.ports[0].name: Required value".to_string()),
            "{got:?}"
        );
        assert!(
            got.contains(&"spec.ports[2].name: Duplicate value: \"b\"".to_string()),
            "{got:?}"
        );
        assert!(
            got.contains(
                &"spec.ports[2].port: Invalid value: 0: must be between 1 and 65535, inclusive"
                    .to_string()
            ),
            "{got:?}"
        );
        assert!(got.contains(&"spec.ports[2].protocol: Unsupported value: \"HTTP\": supported values: \"SCTP\", \"TCP\", \"UDP\"".to_string()), "{got:?}");
        assert!(
            got.iter()
                .any(|m| m.starts_with("spec.ports[1]: Duplicate value: core.ServicePort{")),
            "{got:?}"
        );
    }

    #[test]
    fn cluster_ips_must_agree_and_parse() {
        let mut spec = defaulted();
        spec["clusterIP"] = json!("10.43.0.9");
        spec["clusterIPs"] = json!(["10.43.0.8"]);
        assert_eq!(
            messages(&validate_cluster_ips(&svc(spec.clone()))),
            vec!["spec.clusterIPs: Invalid value: []string{\"10.43.0.8\"}: first value must match `clusterIP`"]
        );
        spec["clusterIP"] = json!("nope");
        spec["clusterIPs"] = json!(["nope"]);
        assert_eq!(
            messages(&validate_cluster_ips(&svc(spec))),
            vec!["spec.clusterIPs[0]: Invalid value: \"nope\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"]
        );
    }

    #[test]
    fn external_name_services() {
        let s = svc(
            json!({"type": "ExternalName", "sessionAffinity": "None", "externalName": "example.com."}),
        );
        assert_eq!(messages(&validate_service(&s)), Vec::<String>::new());
        let s = svc(
            json!({"type": "ExternalName", "sessionAffinity": "None", "clusterIPs": ["10.43.0.3"], "clusterIP": "10.43.0.3"}),
        );
        assert_eq!(
            messages(&validate_service(&s)),
            vec![
                "spec.clusterIPs: Forbidden: may not be set for ExternalName services",
                "spec.externalName: Required value"
            ]
        );
    }

    #[test]
    fn cluster_ip_is_immutable() {
        let mut old = defaulted();
        old["clusterIP"] = json!("10.43.0.9");
        old["clusterIPs"] = json!(["10.43.0.9"]);
        let mut new = old.clone();
        new["clusterIP"] = json!("10.43.0.10");
        new["clusterIPs"] = json!(["10.43.0.10"]);
        assert_eq!(
            messages(&validate_service_update(&svc(new), &svc(old))),
            vec!["spec.clusterIPs[0]: Invalid value: []string{\"10.43.0.10\"}: may not change once set"]
        );
    }

    #[test]
    fn client_ip_affinity_needs_a_timeout_in_range() {
        let mut spec = defaulted();
        spec["sessionAffinity"] = json!("ClientIP");
        spec["sessionAffinityConfig"] = json!({"clientIP": {"timeoutSeconds": 0}});
        assert_eq!(
            messages(&validate_service(&svc(spec))),
            vec!["spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 0: must be greater than 0 and less than 86400"]
        );
    }

    #[test]
    fn loopback_and_unspecified_addresses_are_special() {
        assert_eq!(
            messages(&validate_non_special_ip("127.0.0.1", "subsets[0].addresses[0].ip")),
            vec!["subsets[0].addresses[0].ip: Invalid value: \"127.0.0.1\": may not be in the loopback range (127.0.0.0/8, ::1/128)"]
        );
        assert_eq!(validate_non_special_ip("0.0.0.0", "x").len(), 1);
        assert_eq!(validate_non_special_ip("169.254.1.1", "x").len(), 1);
        assert!(validate_non_special_ip("10.42.0.5", "x").is_empty());
    }
}
