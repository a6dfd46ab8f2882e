//! Pulls from a registry that demands basic auth (a docker-registry this
//! test starts on loopback with an htpasswd file, filled with skopeo).

mod common;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use orca_image::{Credentials, Error, RegistriesConfig};

/// The registry process, killed (by pid) when the test ends.
struct Registry {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_registry_with_auth(user: &str, password: &str) -> Registry {
    let dir = tempfile::tempdir().unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let hash = bcrypt::hash(password, 4).unwrap();
    std::fs::write(dir.path().join("htpasswd"), format!("{user}:{hash}\n")).unwrap();
    let config = format!(
        "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {root}/data\nhttp:\n  addr: {addr}\nauth:\n  htpasswd:\n    realm: orca-test\n    path: {root}/htpasswd\n",
        root = dir.path().display()
    );
    std::fs::write(dir.path().join("config.yml"), config).unwrap();
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(dir.path().join("config.yml"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("docker-registry is not installed (scripts/test.sh installs it)");
    let registry = Registry {
        child,
        addr,
        _dir: dir,
    };
    for _ in 0..100 {
        if std::net::TcpStream::connect(&registry.addr).is_ok() {
            return registry;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "docker-registry on {} never started listening",
        registry.addr
    );
}

#[tokio::test]
async fn basic_auth_from_registries_yaml_or_pull_secrets() {
    let registry = start_registry_with_auth("alice", "s3cret");
    let status = Command::new("skopeo")
        .args([
            "copy",
            "-q",
            "--dest-tls-verify=false",
            "--dest-creds",
            "alice:s3cret",
        ])
        .arg(format!(
            "docker-archive:{}",
            test_image("busybox.docker.tar").display()
        ))
        .arg(format!("docker://{}/private/busybox:latest", registry.addr))
        .status()
        .expect("skopeo is not installed (scripts/test.sh installs it)");
    assert!(
        status.success(),
        "pushing the test image with skopeo failed"
    );
    let reference = format!("{}/private/busybox:latest", registry.addr);

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
