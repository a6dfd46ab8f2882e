//! Pulls from a registry that demands basic auth (a docker-registry this
//! test starts on loopback with an htpasswd file, filled with skopeo).

use crate::common;

use common::*;
use orca_image::{Credentials, Error, RegistriesConfig};

fn start_registry_with_auth(user: &str, password: &str) -> Registry {
    let hash = bcrypt::hash(password, 4).unwrap();
    Registry::start(Some(&format!("{user}:{hash}\n")), false)
}

#[tokio::test]
async fn basic_auth_from_registries_yaml_or_pull_secrets() {
    let registry = start_registry_with_auth("alice", "s3cret");
    let reference = registry.push(
        &format!(
            "docker-archive:{}",
            test_image("busybox.docker.tar").display()
        ),
        "private/busybox",
        Some("alice:s3cret"),
    );

    // Without credentials the registry says no, and we say why.
    let dir = tempfile::tempdir().unwrap();
    let anonymous = store(&dir);
    let err = anonymous.pull(&reference, None).await.unwrap_err();
    assert!(matches!(err, Error::Unauthorized { .. }), "{err:?}");
    assert!(err.to_string().contains("credentials"), "{err}");
    assert!(anonymous.list().unwrap().is_empty());

    // Credentials given with the pull (a pod's imagePullSecrets).
    let wrong = Credentials {
        username: "alice".into(),
        password: "wrong".into(),
    };
    assert!(matches!(
        anonymous.pull(&reference, Some(wrong)).await,
        Err(Error::Unauthorized { .. })
    ));
    let right = Credentials {
        username: "alice".into(),
        password: "s3cret".into(),
    };
    let image = anonymous.pull(&reference, Some(right)).await.unwrap();
    assert_eq!(image.config.cmd, vec!["sh"]);
    // skopeo pushed a `docker save` archive as a Docker v2 schema 2 manifest.
    let manifest = std::fs::read(
        anonymous
            .root()
            .join("blobs/sha256")
            .join(image.manifest_digest.trim_start_matches("sha256:")),
    )
    .unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );

    // Credentials from registries.yaml, keyed by the registry host.
    let dir = tempfile::tempdir().unwrap();
    let config = RegistriesConfig::parse(&format!(
        "configs:\n  \"{}\":\n    auth:\n      username: alice\n      password: s3cret\n",
        registry.addr
    ))
    .unwrap();
    let configured = store_with(&dir, config);
    let image = configured.pull(&reference, None).await.unwrap();
    assert!(image.layers[0].join("bin/busybox").exists());
}
