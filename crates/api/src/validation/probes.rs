//! A container's liveness, readiness and startup probes.

use k8s_openapi::api::core::v1::{Container, Probe};

use super::names::{is_valid_port_name, PORT_RANGE_MSG};
use super::FieldError;

pub(super) fn validate_probes(c: &Container, idx: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (field, probe) in [
        ("livenessProbe", &c.liveness_probe),
        ("readinessProbe", &c.readiness_probe),
        ("startupProbe", &c.startup_probe),
    ] {
        let Some(p) = probe else { continue };
        let path = format!("{idx}.{field}");
        errs.extend(validate_probe(p, &path));
        if field != "readinessProbe" && p.success_threshold.is_some_and(|s| s != 1) {
            errs.push(FieldError::invalid(
                format!("{path}.successThreshold"),
                p.success_threshold,
                "must be 1",
            ));
        }
        if field == "readinessProbe" && p.termination_grace_period_seconds.is_some() {
            errs.push(FieldError::invalid(
                format!("{path}.terminationGracePeriodSeconds"),
                p.termination_grace_period_seconds,
                "must not be set for readinessProbes",
            ));
        }
    }
    errs
}

fn validate_probe(p: &Probe, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let handlers: Vec<&str> = [
        ("exec", p.exec.is_some()),
        ("httpGet", p.http_get.is_some()),
        ("tcpSocket", p.tcp_socket.is_some()),
        ("grpc", p.grpc.is_some()),
    ]
    .into_iter()
    .filter_map(|(n, s)| s.then_some(n))
    .collect();
    match handlers.as_slice() {
        [] => errs.push(FieldError::required(path, "must specify a handler type")),
        [_] => {}
        [_, rest @ ..] => {
            for h in rest {
                errs.push(FieldError::forbidden(
                    format!("{path}.{h}"),
                    "may not specify more than 1 handler type",
                ));
            }
        }
    }
    for (field, v) in [
        ("initialDelaySeconds", p.initial_delay_seconds),
        ("timeoutSeconds", p.timeout_seconds),
        ("periodSeconds", p.period_seconds),
        ("successThreshold", p.success_threshold),
        ("failureThreshold", p.failure_threshold),
    ] {
        if let Some(v) = v.filter(|v| *v < 0) {
            errs.push(FieldError::invalid(
                format!("{path}.{field}"),
                v,
                "must be greater than or equal to 0",
            ));
        }
    }
    if let Some(v) = p.termination_grace_period_seconds.filter(|v| *v <= 0) {
        errs.push(FieldError::invalid(
            format!("{path}.terminationGracePeriodSeconds"),
            v,
            "must be greater than 0",
        ));
    }
    if let Some(h) = &p.http_get {
        errs.extend(validate_port_num_or_name(
            &h.port,
            &format!("{path}.httpGet.port"),
        ));
        if let Some(s) = h.scheme.as_deref() {
            if !matches!(s, "HTTP" | "HTTPS") {
                errs.push(FieldError::not_supported(
                    format!("{path}.httpGet.scheme"),
                    s,
                    &["HTTP", "HTTPS"],
                ));
            }
        }
    }
    if let Some(t) = &p.tcp_socket {
        errs.extend(validate_port_num_or_name(
            &t.port,
            &format!("{path}.tcpSocket.port"),
        ));
    }
    if let Some(e) = &p.exec {
        if e.command.as_ref().is_none_or(|c| c.is_empty()) {
            errs.push(FieldError::required(format!("{path}.exec.command"), ""));
        }
    }
    errs
}

pub(super) fn validate_port_num_or_name(
    port: &k8s_openapi::apimachinery::pkg::util::intstr::IntOrString,
    path: &str,
) -> Vec<FieldError> {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    match port {
        IntOrString::Int(n) if !(1..=65535).contains(n) => {
            vec![FieldError::invalid(path, *n, PORT_RANGE_MSG)]
        }
        IntOrString::Int(_) => vec![],
        IntOrString::String(s) if s.is_empty() => vec![FieldError::required(path, "")],
        IntOrString::String(s) => is_valid_port_name(s)
            .into_iter()
            .map(|m| FieldError::invalid(path, s, m))
            .collect(),
    }
}
