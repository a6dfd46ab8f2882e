//! Resource quantities: parsing, the pod's QoS class, and the cgroup
//! settings the runtime applies.

use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// A Kubernetes quantity ("100m", "1.5", "128Mi", "1G", "2e3") in base units.
pub fn parse_quantity(q: &str) -> Option<f64> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let num: f64 = num.parse().ok()?;
    let mult = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "u" => 1e-6,
        "n" => 1e-9,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        s if s.starts_with(['e', 'E']) => 10f64.powi(s[1..].parse().ok()?),
        _ => return None,
    };
    Some(num * mult)
}

fn get(c: &Container, which: &str, resource: &str) -> Option<f64> {
    let r = c.resources.as_ref()?;
    let map = if which == "limits" {
        r.limits.as_ref()
    } else {
        r.requests.as_ref()
    }?;
    map.get(resource).and_then(|Quantity(q)| parse_quantity(q))
}

/// A container's request, defaulting to its limit as the API server does.
pub fn request(c: &Container, resource: &str) -> Option<f64> {
    get(c, "requests", resource).or_else(|| get(c, "limits", resource))
}

pub fn limit(c: &Container, resource: &str) -> Option<f64> {
    get(c, "limits", resource)
}

/// Kubernetes' QoS class of a pod.
pub fn qos_class(spec: &PodSpec) -> &'static str {
    let all: Vec<&Container> = spec
        .init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter())
        .collect();
    let mut any = false;
    let mut guaranteed = true;
    for c in &all {
        for res in ["cpu", "memory"] {
            let (req, lim) = (request(c, res), limit(c, res));
            if req.is_some_and(|v| v > 0.0) || lim.is_some() {
                any = true;
            }
            match (req, lim) {
                (Some(r), Some(l)) if r == l => {}
                _ => guaranteed = false,
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// The cgroup settings for a container, with Kubernetes' conversions: CPU
/// shares are request millicores * 1024 / 1000 (at least 2), the CPU limit
/// is a quota per 100 ms period.
pub fn runtime_resources(c: &Container) -> orca_runtime::Resources {
    let mut r = orca_runtime::Resources::default();
    if let Some(mem) = limit(c, "memory") {
        r.memory_limit_bytes = Some(mem as i64);
    }
    let shares = match request(c, "cpu") {
        Some(cpu) => ((cpu * 1000.0).round() as u64 * 1024 / 1000).max(2),
        None => 2,
    };
    r.cpu_shares = Some(shares);
    if let Some(cpu) = limit(c, "cpu") {
        let period = 100_000u64;
        r.cpu_period_us = Some(period);
        r.cpu_quota_us = Some(((cpu * period as f64).round() as i64).max(1000));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn quantities_parse() {
        assert_eq!(parse_quantity("100m"), Some(0.1));
        assert_eq!(parse_quantity("2"), Some(2.0));
        assert_eq!(parse_quantity("128Mi"), Some(134217728.0));
        assert_eq!(parse_quantity("1G"), Some(1e9));
        assert_eq!(parse_quantity("1e3"), Some(1000.0));
        assert_eq!(parse_quantity("abc"), None);
        assert_eq!(parse_quantity("1Xi"), None);
    }

    fn container(req: &[(&str, &str)], lim: &[(&str, &str)]) -> Container {
        let map = |v: &[(&str, &str)]| {
            (!v.is_empty()).then(|| {
                v.iter()
                    .map(|(k, q)| (k.to_string(), Quantity(q.to_string())))
                    .collect::<BTreeMap<_, _>>()
            })
        };
        Container {
            name: "c".into(),
            resources: Some(k8s_openapi::api::core::v1::ResourceRequirements {
                requests: map(req),
                limits: map(lim),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn qos_classes() {
        let spec = |c: Container| PodSpec {
            containers: vec![c],
            ..Default::default()
        };
        assert_eq!(qos_class(&spec(container(&[], &[]))), "BestEffort");
        assert_eq!(
            qos_class(&spec(container(&[("cpu", "100m")], &[]))),
            "Burstable"
        );
        assert_eq!(
            qos_class(&spec(container(&[], &[("cpu", "1"), ("memory", "1Gi")]))),
            "Guaranteed"
        );
        assert_eq!(
            qos_class(&spec(container(
                &[("cpu", "500m"), ("memory", "1Gi")],
                &[("cpu", "1"), ("memory", "1Gi")]
            ))),
            "Burstable"
        );
    }

    #[test]
    fn cgroup_settings_follow_kubernetes() {
        let r = runtime_resources(&container(
            &[("cpu", "250m")],
            &[("cpu", "500m"), ("memory", "64Mi")],
        ));
        assert_eq!(r.cpu_shares, Some(256));
        assert_eq!(r.cpu_quota_us, Some(50_000));
        assert_eq!(r.cpu_period_us, Some(100_000));
        assert_eq!(r.memory_limit_bytes, Some(64 * 1024 * 1024));
        assert_eq!(runtime_resources(&container(&[], &[])).cpu_shares, Some(2));
    }
}
