//! The pod's quality-of-service class, as `status.qosClass` reports it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PodSpec;

use crate::quantity::parse_nanos;

/// `Guaranteed` when every container sets cpu and memory limits and the
/// summed requests equal the summed limits; `BestEffort` when nothing sets a
/// cpu or memory request or limit; `Burstable` otherwise. Requests missing
/// next to a limit count as equal to it (defaulting copies them).
pub fn qos_class(spec: &PodSpec) -> &'static str {
    const COMPUTE: [&str; 2] = ["cpu", "memory"];
    let mut requests: BTreeMap<&str, i128> = BTreeMap::new();
    let mut limits: BTreeMap<&str, i128> = BTreeMap::new();
    let mut guaranteed = true;
    let containers = spec
        .init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter());
    for c in containers {
        let res = c.resources.as_ref();
        let lim = res.and_then(|r| r.limits.as_ref());
        let req = res.and_then(|r| r.requests.as_ref());
        for name in COMPUTE {
            let l = lim
                .and_then(|m| m.get(name))
                .and_then(|q| parse_nanos(&q.0).ok());
            let r = req
                .and_then(|m| m.get(name))
                .and_then(|q| parse_nanos(&q.0).ok())
                .or(l);
            if let Some(r) = r.filter(|v| *v > 0) {
                *requests.entry(name).or_default() += r;
            }
            match l.filter(|v| *v > 0) {
                Some(l) => *limits.entry(name).or_default() += l,
                None => guaranteed = false,
            }
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return "BestEffort";
    }
    if guaranteed
        && requests.len() == limits.len()
        && requests.iter().all(|(k, v)| limits.get(k) == Some(v))
    {
        return "Guaranteed";
    }
    "Burstable"
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, ResourceRequirements};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    fn ctr(req: &[(&str, &str)], lim: &[(&str, &str)]) -> Container {
        let map = |v: &[(&str, &str)]| {
            (!v.is_empty()).then(|| {
                v.iter()
                    .map(|(k, q)| (k.to_string(), Quantity(q.to_string())))
                    .collect()
            })
        };
        Container {
            name: "c".into(),
            resources: Some(ResourceRequirements {
                requests: map(req),
                limits: map(lim),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn spec(cs: Vec<Container>) -> PodSpec {
        PodSpec {
            containers: cs,
            ..Default::default()
        }
    }

    #[test]
    fn classes() {
        assert_eq!(qos_class(&spec(vec![ctr(&[], &[])])), "BestEffort");
        assert_eq!(
            qos_class(&spec(vec![ctr(&[("cpu", "100m")], &[])])),
            "Burstable"
        );
        let g = ctr(&[], &[("cpu", "1"), ("memory", "1Gi")]);
        assert_eq!(qos_class(&spec(vec![g.clone()])), "Guaranteed");
        let eq = ctr(
            &[("cpu", "1000m"), ("memory", "1024Mi")],
            &[("cpu", "1"), ("memory", "1Gi")],
        );
        assert_eq!(qos_class(&spec(vec![eq])), "Guaranteed");
        let less = ctr(&[("cpu", "500m")], &[("cpu", "1"), ("memory", "1Gi")]);
        assert_eq!(qos_class(&spec(vec![less])), "Burstable");
        // One container without limits spoils Guaranteed for the pod.
        assert_eq!(qos_class(&spec(vec![g, ctr(&[], &[])])), "Burstable");
        // Only non-compute resources: still BestEffort.
        assert_eq!(
            qos_class(&spec(vec![ctr(&[("ephemeral-storage", "1Gi")], &[])])),
            "BestEffort"
        );
    }
}
