//! Importing the test images from tarballs: plain rootfs, OCI layout,
//! `docker save`; and the startup import of a directory.

use crate::common;

use std::os::unix::fs::MetadataExt;

use common::*;

#[tokio::test]
async fn rootfs_tarball_becomes_a_named_one_layer_image() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir);
    let tar = test_image("busybox.rootfs.tar");
    let image = store.import_rootfs(&tar, "my/busybox:1").await.unwrap();
    assert_eq!(image.reference, "docker.io/my/busybox:1");
    assert_eq!(image.layers.len(), 1);
    let root = &image.layers[0];
    assert!(root.join("bin/busybox").metadata().unwrap().len() > 100_000);
    assert_eq!(
        std::fs::read_link(root.join("bin/sh")).unwrap().to_str(),
        Some("busybox")
    );
    // Modes and mtimes come from the tarball (built with --mtime=@0).
    let tmp = root.join("tmp").metadata().unwrap();
    assert_eq!(tmp.mode() & 0o7777, 0o1777);
    assert_eq!(tmp.mtime(), 0);
    assert!(image.config.cmd.is_empty() && image.config.entrypoint.is_empty());
    assert!(image.size > 100_000);

    // Found by any spelling of its name, by ID and by repo digest.
    let by_name = store.get("my/busybox:1").unwrap().unwrap();
    assert_eq!(by_name, image);
    assert_eq!(
        store.get(&image.digest).unwrap().unwrap().digest,
        image.digest
    );
    assert_eq!(
        store.get(&image.repo_digest).unwrap().unwrap().digest,
        image.digest
    );
    assert!(store.get("my/busybox:2").unwrap().is_none());

    // Importing the same tarball again gives the same image, reusing the layer.
    let again = store.import_rootfs(&tar, "my/busybox:1").await.unwrap();
    assert_eq!(again.digest, image.digest);
    assert_eq!(entries(&store.root().join("layers/sha256")).len(), 1);
}

#[tokio::test]
async fn oci_layout_archive_imports_with_its_config() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir);
    let images = store
        .import_archive(&test_image("nginx.oci.tar"))
        .await
        .unwrap();
    assert_eq!(images.len(), 1);
    let nginx = &images[0];
    // ref.name is only a tag: the repository comes from the file name.
    assert_eq!(nginx.reference, "docker.io/library/nginx:latest");
    assert_eq!(nginx.config.cmd, vec!["nginx", "-g", "daemon off;"]);
    assert_eq!(nginx.config.stop_signal.as_deref(), Some("SIGQUIT"));
    assert_eq!(nginx.config.exposed_ports, vec!["80/tcp"]);
    assert!(nginx.config.env.iter().any(|e| e.starts_with("PATH=")));
    assert!(nginx.layers[0].join("usr/sbin/nginx").exists());
    assert!(nginx
        .repo_digest
        .starts_with("docker.io/library/nginx@sha256:"));
    assert_eq!(store.get("nginx").unwrap().unwrap().digest, nginx.digest);
}

#[tokio::test]
async fn docker_save_archive_imports_and_shares_layers_with_the_oci_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir);
    let from_docker = store
        .import_archive(&test_image("busybox.docker.tar"))
        .await
        .unwrap();
    assert_eq!(from_docker.len(), 1);
    let busybox = &from_docker[0];
    assert_eq!(busybox.reference, "docker.io/library/busybox:latest");
    assert_eq!(busybox.config.cmd, vec!["sh"]);
    assert!(busybox.layers[0].join("bin/busybox").exists());

    let from_oci = store
        .import_archive(&test_image("busybox.oci.tar"))
        .await
        .unwrap();
    // Same config, so the same image ID, and one unpacked layer for both.
    assert_eq!(from_oci[0].digest, busybox.digest);
    assert_eq!(from_oci[0].layers, busybox.layers);
    assert_eq!(entries(&store.root().join("layers/sha256")).len(), 1);
}

#[tokio::test]
async fn a_rootfs_tarball_is_not_taken_for_an_image_archive() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir);
    let err = store
        .import_archive(&test_image("busybox.rootfs.tar"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("--rootfs"), "{err}");
    assert!(store.list().unwrap().is_empty());
}

#[tokio::test]
async fn startup_import_skips_archives_already_imported() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir);
    let auto = store.root().to_path_buf();
    std::fs::copy(test_image("busybox.oci.tar"), auto.join("busybox.oci.tar")).unwrap();
    std::fs::copy(
        test_image("nginx.docker.tar"),
        auto.join("nginx.docker.tar"),
    )
    .unwrap();
    std::fs::write(auto.join("broken.tar"), b"not a tar at all").unwrap();

    let first = store.import_dir(&auto).await.unwrap();
    assert_eq!(first.imported.len(), 2, "{first:?}");
    assert!(first.skipped.is_empty());
    assert_eq!(first.failed.len(), 1);
    assert!(first.failed[0].0.ends_with("broken.tar"));
    let names: Vec<String> = store
        .list()
        .unwrap()
        .into_iter()
        .map(|i| i.reference)
        .collect();
    assert_eq!(
        names,
        vec![
            "docker.io/library/busybox:latest",
            "docker.io/library/nginx:latest"
        ]
    );

    // A restart (fresh handle on the same root) skips both by content digest.
    let reopened = ImageStoreExt::reopen(&store);
    let second = reopened.import_dir(&auto).await.unwrap();
    assert!(second.imported.is_empty(), "{second:?}");
    assert_eq!(second.skipped.len(), 2);

    // An archive whose image was removed is imported again.
    reopened.remove("busybox").await.unwrap();
    let third = reopened.import_dir(&auto).await.unwrap();
    assert_eq!(third.imported.len(), 1);
    assert!(third.imported[0].0.ends_with("busybox.oci.tar"));
    assert_eq!(third.skipped.len(), 1);

    // A file replaced in place is hashed again, not trusted by its name.
    std::fs::copy(
        test_image("busybox.docker.tar"),
        auto.join("busybox.oci.tar"),
    )
    .unwrap();
    let fourth = reopened.import_dir(&auto).await.unwrap();
    assert_eq!(fourth.imported.len(), 1, "{fourth:?}");
    assert_eq!(fourth.skipped.len(), 1);
}

#[tokio::test]
async fn temporary_data_of_a_dead_process_is_dropped_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let root = store(&dir).root().to_path_buf();
    let dead_pid = (100_000..4_000_000u32)
        .rev()
        .find(|p| !std::path::Path::new(&format!("/proc/{p}")).exists())
        .unwrap();
    let stale = root.join("tmp").join(format!("{dead_pid}-7-layer"));
    std::fs::create_dir_all(stale.join("rootfs/etc")).unwrap();
    let ours = root
        .join("tmp")
        .join(format!("{}-7-layer", std::process::id()));
    std::fs::create_dir_all(&ours).unwrap();
    ImageStoreExt::reopen(&store(&dir));
    assert!(!stale.exists());
    assert!(
        ours.exists(),
        "a live process's work in progress is left alone"
    );
}

trait ImageStoreExt {
    fn reopen(&self) -> Self;
}

impl ImageStoreExt for orca_image::ImageStore {
    fn reopen(&self) -> Self {
        orca_image::ImageStore::open(self.root(), orca_image::RegistriesConfig::default()).unwrap()
    }
}
