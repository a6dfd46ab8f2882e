//! Pulls over HTTPS from a registry with a self-signed certificate.

use crate::common;

use common::*;
use orca_image::{Error, RegistriesConfig};

#[tokio::test]
async fn https_registries_with_a_private_ca_or_as_insecure_loopback() {
    let registry = Registry::start(None, true);
    let reference = registry.push(
        &format!(
            "docker-archive:{}",
            test_image("busybox.docker.tar").display()
        ),
        "busybox",
        None,
    );

    // Loopback with no settings: HTTPS without certificate checks, as Docker.
    let dir = tempfile::tempdir().unwrap();
    let image = store(&dir).pull(&reference, None).await.unwrap();
    assert_eq!(image.config.cmd, vec!["sh"]);

    // The registry's CA given in registries.yaml: verified HTTPS.
    let dir = tempfile::tempdir().unwrap();
    let ca = registry.dir.path().join("ca.pem");
    let config = RegistriesConfig::parse(&format!(
        "configs:\n  \"{}\":\n    tls:\n      ca_file: {}\n",
        registry.addr,
        ca.display()
    ))
    .unwrap();
    let image = store_with(&dir, config)
        .pull(&reference, None)
        .await
        .unwrap();
    assert!(image.layers[0].join("bin/busybox").exists());

    // TLS settings without that CA: the certificate is refused, and said so.
    let dir = tempfile::tempdir().unwrap();
    let config = RegistriesConfig::parse(&format!(
        "configs:\n  \"{}\":\n    tls:\n      insecure_skip_verify: false\n",
        registry.addr
    ))
    .unwrap();
    let err = store_with(&dir, config)
        .pull(&reference, None)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Registry { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("certificate not trusted") && message.contains("ca_file"),
        "{message}"
    );
}
