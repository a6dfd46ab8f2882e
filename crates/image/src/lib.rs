//! The node's image store under `DATA_DIR/agent/images`: blobs by digest,
//! unpacked layers, and image records by name and digest.

/// Turns a user's image name into its canonical form, as Docker and
/// Kubernetes do: `nginx` -> `docker.io/library/nginx:latest`.
pub fn normalize_reference(name: &str) -> String {
    let (repo, tag_or_digest) = match name.rsplit_once('@') {
        Some((repo, digest)) => (repo, format!("@{digest}")),
        None => match name.rsplit_once(':') {
            Some((repo, tag)) if !tag.contains('/') => (repo, format!(":{tag}")),
            _ => (name, ":latest".to_string()),
        },
    };
    let first = repo.split('/').next().unwrap_or(repo);
    let has_registry =
        repo.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    let full = if has_registry {
        repo.to_string()
    } else if repo.contains('/') {
        format!("docker.io/{repo}")
    } else {
        format!("docker.io/library/{repo}")
    };
    format!("{full}{tag_or_digest}")
}

#[cfg(test)]
mod tests {
    use super::normalize_reference;

    #[test]
    fn normalizes_like_docker() {
        assert_eq!(
            normalize_reference("nginx"),
            "docker.io/library/nginx:latest"
        );
        assert_eq!(normalize_reference("user/app:v1"), "docker.io/user/app:v1");
        assert_eq!(
            normalize_reference("127.0.0.1:5000/busybox"),
            "127.0.0.1:5000/busybox:latest"
        );
        assert_eq!(
            normalize_reference("localhost/x@sha256:ab"),
            "localhost/x@sha256:ab"
        );
    }
}
