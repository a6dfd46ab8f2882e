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
