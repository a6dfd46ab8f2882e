//! Which pod sysctls the node accepts: the kubelet's default allowlist of
//! namespaced sysctls that cannot affect other pods. Anything else is
//! refused at admission (phase Failed, reason SysctlForbidden), as a kubelet
//! without `--allowed-unsafe-sysctls` does.

use k8s_openapi::api::core::v1::PodSpec;

/// The kubelet's safe set (Kubernetes 1.29+ on a recent kernel).
const SAFE: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
];

pub const FORBIDDEN_REASON: &str = "SysctlForbidden";

/// The pod's sysctls, names in dot form.
pub fn of(spec: &PodSpec) -> Vec<(String, String)> {
    spec.security_context
        .as_ref()
        .and_then(|s| s.sysctls.as_ref())
        .into_iter()
        .flatten()
        .map(|s| (dot_form(&s.name), s.value.clone()))
        .collect()
}

/// The admission message for a pod this node must refuse, in the kubelet's
/// words.
pub fn forbidden(spec: &PodSpec) -> Option<String> {
    let host_net = spec.host_network.unwrap_or(false);
    let host_ipc = spec.host_ipc.unwrap_or(false);
    of(spec).into_iter().find_map(|(name, _)| {
        let why = if !SAFE.contains(&name.as_str()) {
            format!("{name:?} not allowlisted")
        } else if host_net && name.starts_with("net.") {
            format!("{name:?} not allowed with host net enabled")
        } else if host_ipc && name.starts_with("kernel.") {
            format!("{name:?} not allowed with host ipc enabled")
        } else {
            return None;
        };
        Some(format!("forbidden sysctl: {why}"))
    })
}

/// Kubernetes accepts `net/ipv4/ip_forward` as well as `net.ipv4.ip_forward`;
/// in the slash form a dot is part of a name segment.
fn dot_form(name: &str) -> String {
    if !name.contains('/') {
        return name.to_string();
    }
    name.chars()
        .map(|c| match c {
            '/' => '.',
            '.' => '/',
            c => c,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> PodSpec {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn safe_sysctls_pass_and_others_are_refused_as_the_kubelet_does() {
        let ok = spec("containers: []\nsecurityContext: {sysctls: [{name: kernel.shm_rmid_forced, value: '1'}, {name: net/ipv4/tcp_syncookies, value: '0'}]}");
        assert_eq!(forbidden(&ok), None);
        assert_eq!(
            of(&ok),
            [
                ("kernel.shm_rmid_forced".to_string(), "1".to_string()),
                ("net.ipv4.tcp_syncookies".to_string(), "0".to_string())
            ]
        );
        let unsafe_ = spec(
            "containers: []\nsecurityContext: {sysctls: [{name: kernel.msgmax, value: '10000'}]}",
        );
        assert_eq!(
            forbidden(&unsafe_).as_deref(),
            Some("forbidden sysctl: \"kernel.msgmax\" not allowlisted")
        );
        let host = spec("containers: []\nhostNetwork: true\nsecurityContext: {sysctls: [{name: net.ipv4.tcp_syncookies, value: '0'}]}");
        assert_eq!(
            forbidden(&host).as_deref(),
            Some("forbidden sysctl: \"net.ipv4.tcp_syncookies\" not allowed with host net enabled")
        );
    }

    #[test]
    fn slash_names_keep_their_dots() {
        assert_eq!(
            dot_form("net/ipv4/conf/eth0.100/forwarding"),
            "net.ipv4.conf.eth0/100.forwarding"
        );
    }
}
