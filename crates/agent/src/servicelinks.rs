//! Service environment variables, as the kubelet sets them when it starts
//! a container: for every Service of the pod's namespace with a cluster IP
//! (when `enableServiceLinks`, the default) and always for the `kubernetes`
//! Service of `default`, `{NAME}_SERVICE_HOST`, `{NAME}_SERVICE_PORT`,
//! `{NAME}_SERVICE_PORT_{PORT_NAME}` and the Docker link variables
//! (`{NAME}_PORT`, `{NAME}_PORT_{port}_{PROTO}` and its `_PROTO`, `_PORT`
//! and `_ADDR`). Headless and ExternalName Services have none. A Service of
//! the pod's own namespace named `kubernetes` wins over `default`'s.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;

/// The name as an environment variable: upper case, `-` and `.` as `_`,
/// `_` in front of a leading digit.
fn env_name(name: &str) -> String {
    let n = name.replace(['-', '.'], "_").to_uppercase();
    if n.starts_with(|c: char| c.is_ascii_digit()) {
        format!("_{n}")
    } else {
        n
    }
}

/// The variables for a pod in `namespace`, ordered by Service name.
pub fn service_env(
    services: &[Arc<Service>],
    namespace: &str,
    enable_service_links: bool,
) -> Vec<(String, String)> {
    let mut chosen: BTreeMap<String, &Service> = BTreeMap::new();
    for svc in services {
        let Some(ip) = svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) else {
            continue;
        };
        if ip.is_empty() || ip == "None" {
            continue;
        }
        let name = svc.metadata.name.clone().unwrap_or_default();
        let ns = svc.metadata.namespace.as_deref().unwrap_or_default();
        if ns == "default" && name == "kubernetes" {
            chosen.entry(name).or_insert(svc);
        } else if ns == namespace && enable_service_links {
            chosen.insert(name, svc);
        }
    }
    let mut out = Vec::new();
    for (name, svc) in chosen {
        let spec = svc.spec.clone().unwrap_or_default();
        let ports = spec.ports.unwrap_or_default();
        let Some(first) = ports.first() else { continue };
        let ip = spec.cluster_ip.unwrap_or_default();
        let prefix = env_name(&name);
        out.push((format!("{prefix}_SERVICE_HOST"), ip.clone()));
        out.push((format!("{prefix}_SERVICE_PORT"), first.port.to_string()));
        for p in &ports {
            if let Some(pn) = p.name.as_deref().filter(|n| !n.is_empty()) {
                out.push((
                    format!("{prefix}_SERVICE_PORT_{}", env_name(pn)),
                    p.port.to_string(),
                ));
            }
        }
        let host = if ip.contains(':') {
            format!("[{ip}]")
        } else {
            ip.clone()
        };
        for (i, p) in ports.iter().enumerate() {
            let proto = p.protocol.clone().unwrap_or_else(|| "TCP".into());
            let url = format!("{}://{host}:{}", proto.to_lowercase(), p.port);
            if i == 0 {
                // Docker's special case for the first port.
                out.push((format!("{prefix}_PORT"), url.clone()));
            }
            let pp = format!("{prefix}_PORT_{}_{}", p.port, proto.to_uppercase());
            out.push((pp.clone(), url));
            out.push((format!("{pp}_PROTO"), proto.to_lowercase()));
            out.push((format!("{pp}_PORT"), p.port.to_string()));
            out.push((format!("{pp}_ADDR"), ip.clone()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(ns: &str, name: &str, spec: serde_json::Value) -> Arc<Service> {
        Arc::new(
            serde_json::from_value(
                json!({"metadata": {"name": name, "namespace": ns}, "spec": spec}),
            )
            .unwrap(),
        )
    }

    #[test]
    fn variables_as_the_kubelet_names_them() {
        let services = vec![
            svc(
                "default",
                "kubernetes",
                json!({"clusterIP": "10.43.0.1",
                "ports": [{"name": "https", "port": 443, "protocol": "TCP"}]}),
            ),
            svc(
                "app",
                "foo-service",
                json!({"clusterIP": "10.43.7.7",
                "ports": [{"port": 8765, "protocol": "TCP"}, {"name": "dns", "port": 53, "protocol": "UDP"}]}),
            ),
            svc(
                "app",
                "headless",
                json!({"clusterIP": "None", "ports": [{"port": 80}]}),
            ),
            svc(
                "app",
                "ext",
                json!({"type": "ExternalName", "externalName": "example.com"}),
            ),
            svc(
                "other",
                "elsewhere",
                json!({"clusterIP": "10.43.8.8", "ports": [{"port": 80}]}),
            ),
        ];
        let env: BTreeMap<String, String> =
            service_env(&services, "app", true).into_iter().collect();
        let want: BTreeMap<String, String> = [
            ("KUBERNETES_SERVICE_HOST", "10.43.0.1"),
            ("KUBERNETES_SERVICE_PORT", "443"),
            ("KUBERNETES_SERVICE_PORT_HTTPS", "443"),
            ("KUBERNETES_PORT", "tcp://10.43.0.1:443"),
            ("KUBERNETES_PORT_443_TCP", "tcp://10.43.0.1:443"),
            ("KUBERNETES_PORT_443_TCP_PROTO", "tcp"),
            ("KUBERNETES_PORT_443_TCP_PORT", "443"),
            ("KUBERNETES_PORT_443_TCP_ADDR", "10.43.0.1"),
            ("FOO_SERVICE_SERVICE_HOST", "10.43.7.7"),
            ("FOO_SERVICE_SERVICE_PORT", "8765"),
            ("FOO_SERVICE_SERVICE_PORT_DNS", "53"),
            ("FOO_SERVICE_PORT", "tcp://10.43.7.7:8765"),
            ("FOO_SERVICE_PORT_8765_TCP", "tcp://10.43.7.7:8765"),
            ("FOO_SERVICE_PORT_8765_TCP_PROTO", "tcp"),
            ("FOO_SERVICE_PORT_8765_TCP_PORT", "8765"),
            ("FOO_SERVICE_PORT_8765_TCP_ADDR", "10.43.7.7"),
            ("FOO_SERVICE_PORT_53_UDP", "udp://10.43.7.7:53"),
            ("FOO_SERVICE_PORT_53_UDP_PROTO", "udp"),
            ("FOO_SERVICE_PORT_53_UDP_PORT", "53"),
            ("FOO_SERVICE_PORT_53_UDP_ADDR", "10.43.7.7"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(env, want);
    }

    #[test]
    fn without_service_links_only_the_kubernetes_service() {
        let services = vec![
            svc(
                "default",
                "kubernetes",
                json!({"clusterIP": "10.43.0.1", "ports": [{"name": "https", "port": 443}]}),
            ),
            svc(
                "default",
                "web",
                json!({"clusterIP": "10.43.1.1", "ports": [{"port": 80}]}),
            ),
        ];
        let names: Vec<String> = service_env(&services, "default", false)
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert!(
            names.iter().all(|n| n.starts_with("KUBERNETES_")),
            "{names:?}"
        );
        assert!(names.contains(&"KUBERNETES_SERVICE_HOST".to_string()));
        // A namespace's own `kubernetes` Service wins.
        let services = vec![
            svc(
                "default",
                "kubernetes",
                json!({"clusterIP": "10.43.0.1", "ports": [{"port": 443}]}),
            ),
            svc(
                "app",
                "kubernetes",
                json!({"clusterIP": "10.43.2.2", "ports": [{"port": 443}]}),
            ),
        ];
        let env: BTreeMap<String, String> =
            service_env(&services, "app", true).into_iter().collect();
        assert_eq!(env["KUBERNETES_SERVICE_HOST"], "10.43.2.2");
        assert_eq!(env_name("1x-y.z"), "_1X_Y_Z");
    }
}
