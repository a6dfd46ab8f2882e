//! Kubernetes object rules over `k8s-openapi` types: defaulting, validation,
//! printing, selectors and patches, as the API server applies them. Pure
//! functions, no I/O.

pub mod convert;
pub mod cron;
pub mod defaults;
pub mod disruption;
pub mod fieldpath;
pub mod managed;
pub mod node_affinity;
pub mod patch;
pub mod printing;
pub mod quantity;
pub mod selectors;
pub mod structure;
pub mod validation;

mod qos;
pub use qos::qos_class;

use k8s_openapi::api::core::v1::{Container, EphemeralContainer};

/// An ephemeral container's fields as a [`Container`] (Kubernetes converts
/// `EphemeralContainerCommon` the same way to share the container rules and
/// the runtime path); `targetContainerName` has no counterpart.
pub fn ephemeral_as_container(ec: &EphemeralContainer) -> Container {
    let ec = ec.clone();
    Container {
        args: ec.args,
        command: ec.command,
        env: ec.env,
        env_from: ec.env_from,
        image: ec.image,
        image_pull_policy: ec.image_pull_policy,
        lifecycle: ec.lifecycle,
        liveness_probe: ec.liveness_probe,
        name: ec.name,
        ports: ec.ports,
        readiness_probe: ec.readiness_probe,
        resize_policy: ec.resize_policy,
        resources: ec.resources,
        restart_policy: ec.restart_policy,
        security_context: ec.security_context,
        startup_probe: ec.startup_probe,
        stdin: ec.stdin,
        stdin_once: ec.stdin_once,
        termination_message_path: ec.termination_message_path,
        termination_message_policy: ec.termination_message_policy,
        tty: ec.tty,
        volume_devices: ec.volume_devices,
        volume_mounts: ec.volume_mounts,
        working_dir: ec.working_dir,
    }
}

/// The inverse of [`ephemeral_as_container`], with `target` as
/// `targetContainerName`.
pub fn container_as_ephemeral(c: Container, target: Option<String>) -> EphemeralContainer {
    EphemeralContainer {
        args: c.args,
        command: c.command,
        env: c.env,
        env_from: c.env_from,
        image: c.image,
        image_pull_policy: c.image_pull_policy,
        lifecycle: c.lifecycle,
        liveness_probe: c.liveness_probe,
        name: c.name,
        ports: c.ports,
        readiness_probe: c.readiness_probe,
        resize_policy: c.resize_policy,
        resources: c.resources,
        restart_policy: c.restart_policy,
        security_context: c.security_context,
        startup_probe: c.startup_probe,
        stdin: c.stdin,
        stdin_once: c.stdin_once,
        target_container_name: target,
        termination_message_path: c.termination_message_path,
        termination_message_policy: c.termination_message_policy,
        tty: c.tty,
        volume_devices: c.volume_devices,
        volume_mounts: c.volume_mounts,
        working_dir: c.working_dir,
    }
}

/// Kubernetes' default `imagePullPolicy`: `Always` when the tag is `latest`
/// or absent (absent means `latest`), `IfNotPresent` otherwise, including a
/// digest without a tag.
pub fn default_image_pull_policy(image: &str) -> &'static str {
    if image.is_empty() || image.contains('@') {
        return "IfNotPresent";
    }
    // A ':' before the last '/' belongs to a registry host:port, not a tag.
    let name = image.rsplit('/').next().unwrap_or(image);
    match name.rsplit_once(':') {
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    }
}

#[cfg(test)]
mod tests {
    use super::default_image_pull_policy;

    #[test]
    fn pull_policy_follows_the_tag() {
        assert_eq!(default_image_pull_policy("nginx"), "Always");
        assert_eq!(default_image_pull_policy("nginx:latest"), "Always");
        assert_eq!(default_image_pull_policy("nginx:1.25"), "IfNotPresent");
        assert_eq!(
            default_image_pull_policy("127.0.0.1:5000/busybox"),
            "Always"
        );
        assert_eq!(
            default_image_pull_policy("busybox@sha256:abc"),
            "IfNotPresent"
        );
        assert_eq!(
            default_image_pull_policy("busybox:1.35@sha256:abc"),
            "IfNotPresent"
        );
    }
}
