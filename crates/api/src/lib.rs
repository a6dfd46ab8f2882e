//! Kubernetes object rules over `k8s-openapi` types: defaulting, validation
//! and printing, as the API server applies them. Pure functions, no I/O.

/// Kubernetes' default `imagePullPolicy`: `Always` for `:latest` or an
/// untagged image, `IfNotPresent` otherwise.
pub fn default_image_pull_policy(image: &str) -> &'static str {
    let name = image.rsplit('/').next().unwrap_or(image);
    if image.contains('@') {
        return "IfNotPresent";
    }
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
    }
}
