//! Pulls from the real local registry (ORCA_TEST_REGISTRY, plain HTTP).

use crate::common;

use common::*;
use orca_image::{Error, RegistriesConfig};

fn mirror_config(registry: &str) -> RegistriesConfig {
    RegistriesConfig::parse(&format!(
        "mirrors:\n  docker.io:\n    endpoint:\n      - \"http://{registry}\"\n"
    ))
    .unwrap()
}

/// The build script pushed the OCI archive's manifest byte for byte, so
/// importing it yields the digest the registry serves.
async fn manifest_digest_of_oci_archive() -> String {
    let dir = tempfile::tempdir().unwrap();
    let images = store(&dir)
        .import_archive(&test_image("busybox.oci.tar"))
        .await
        .unwrap();
    images[0].manifest_digest.clone()
}

#[tokio::test]
async fn pulls_through_a_plain_http_mirror_of_docker_hub() {
    let registry = env("ORCA_TEST_REGISTRY");
    let dir = tempfile::tempdir().unwrap();
    let store = store_with(&dir, mirror_config(&registry));
    let image = store.pull("busybox", None).await.unwrap();
    assert_eq!(image.reference, "docker.io/library/busybox:latest");
    assert_eq!(
        image.repo_digest,
        format!(
            "docker.io/library/busybox@{}",
            manifest_digest_of_oci_archive().await
        )
    );
    assert_eq!(image.config.cmd, vec!["sh"]);
    assert!(image.layers[0].join("bin/busybox").exists());
    assert_eq!(store.get("busybox:latest").unwrap().unwrap(), image);

    // Pinned by digest: already here, same image.
    let pinned = store.pull(&image.repo_digest, None).await.unwrap();
    assert_eq!(pinned.digest, image.digest);
    assert_eq!(entries(&store.root().join("layers/sha256")).len(), 1);
}

#[tokio::test]
async fn pulls_from_a_loopback_registry_directly_and_dedupes_concurrent_pulls() {
    let registry = env("ORCA_TEST_REGISTRY");
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir);
    let reference = format!("{registry}/nginx:latest");
    let pulls: Vec<_> = (0..4)
        .map(|_| {
            let store = store.clone();
            let reference = reference.clone();
            tokio::spawn(async move { store.pull(&reference, None).await })
        })
        .collect();
    let mut digests = Vec::new();
    for pull in pulls {
        digests.push(pull.await.unwrap().unwrap().digest);
    }
    digests.dedup();
    assert_eq!(digests.len(), 1);
    let image = store.get(&reference).unwrap().unwrap();
    assert_eq!(image.config.stop_signal.as_deref(), Some("SIGQUIT"));
    assert!(image.layers[0].join("usr/sbin/nginx").exists());
    assert_eq!(entries(&store.root().join("layers/sha256")).len(), 1);
    assert!(entries(&store.root().join("tmp")).is_empty());
}

#[tokio::test]
async fn a_missing_image_fails_clearly_and_leaves_nothing_behind() {
    let registry = env("ORCA_TEST_REGISTRY");
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir);
    for reference in [
        format!("{registry}/no-such-image:latest"),
        format!("{registry}/busybox:no-such-tag"),
    ] {
        let err = store.pull(&reference, None).await.unwrap_err();
        assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
        let message = err.to_string();
        eprintln!("missing image error: {message}");
        assert!(
            message.contains(&reference) && message.contains("not found"),
            "{message}"
        );
    }
    for sub in [
        "blobs/sha256",
        "layers/sha256",
        "images/by-name",
        "images/by-digest",
        "tmp",
    ] {
        assert!(
            entries(&store.root().join(sub)).is_empty(),
            "{sub} is not empty"
        );
    }
    assert!(store.list().unwrap().is_empty());
}

#[tokio::test]
async fn an_unreachable_registry_is_reported_as_such() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir);
    let err = store
        .pull(&format!("127.0.0.1:{port}/busybox"), None)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::RegistryUnreachable { .. }), "{err:?}");
    eprintln!("unreachable error: {err}");
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
}

#[tokio::test]
async fn an_invalid_reference_is_refused_before_any_request() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir);
    let err = store.pull("Busybox:latest", None).await.unwrap_err();
    assert!(matches!(err, Error::InvalidReference { .. }), "{err:?}");
}

#[tokio::test]
async fn an_image_index_resolves_to_linux_on_this_architecture() {
    let registry = env("ORCA_TEST_REGISTRY");
    let dir = tempfile::tempdir().unwrap();
    let amd64 = [gzipped(layer_tar(&[file("arch", "amd64")]))];
    let arm64 = [gzipped(layer_tar(&[file("arch", "arm64")]))];
    let archive = write(
        &dir,
        "multi.oci.tar",
        &multi_arch_archive(
            "latest",
            &[("arm64", &arm64, &["arm"]), ("amd64", &amd64, &["amd"])],
        ),
    );

    // From the archive...
    let store = store(&dir);
    let imported = store.import_archive(&archive).await.unwrap().remove(0);
    assert_eq!(imported.config.cmd, vec!["amd"]);
    assert_eq!(
        std::fs::read_to_string(imported.layers[0].join("arch")).unwrap(),
        "amd64"
    );

    // ...and from the registry, after pushing the whole index there.
    let repo = format!("{registry}/multi-{}", std::process::id());
    let status = std::process::Command::new("skopeo")
        .args(["copy", "-q", "--all", "--dest-tls-verify=false"])
        .arg(format!("oci-archive:{}:latest", archive.display()))
        .arg(format!("docker://{repo}:latest"))
        .status()
        .expect("skopeo is not installed (scripts/test.sh installs it)");
    assert!(status.success(), "pushing the index with skopeo failed");
    let pulled_dir = tempfile::tempdir().unwrap();
    let pulled = common::store(&pulled_dir).pull(&repo, None).await.unwrap();
    assert_eq!(pulled.config.cmd, vec!["amd"]);
    assert_eq!(pulled.digest, imported.digest);
    assert_eq!(pulled.manifest_digest, imported.manifest_digest);
    assert_eq!(
        std::fs::read_to_string(pulled.layers[0].join("arch")).unwrap(),
        "amd64"
    );
}

#[tokio::test]
async fn mirror_rewrites_map_repositories() {
    let registry = env("ORCA_TEST_REGISTRY");
    let dir = tempfile::tempdir().unwrap();
    // The test registry has no team/ repositories: only the rewrite finds busybox.
    let config = RegistriesConfig::parse(&format!(
        "mirrors:\n  docker.io:\n    endpoint: [\"http://{registry}\"]\n    rewrite:\n      \"^team/(.*)$\": \"$1\"\n"
    ))
    .unwrap();
    let image = store_with(&dir, config)
        .pull("team/busybox", None)
        .await
        .unwrap();
    assert_eq!(image.reference, "docker.io/team/busybox:latest");
    assert!(image.layers[0].join("bin/busybox").exists());
}
