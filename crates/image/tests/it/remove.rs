//! Removing images and collecting what nothing uses any more.

use crate::common;

use common::*;
use orca_image::Error;

#[tokio::test]
async fn removing_an_image_collects_its_layers_and_blobs_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir);
    let busybox = store
        .import_archive(&test_image("busybox.oci.tar"))
        .await
        .unwrap()
        .remove(0);
    let nginx = store
        .import_archive(&test_image("nginx.oci.tar"))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(entries(&store.root().join("layers/sha256")).len(), 2);
    assert_eq!(entries(&store.root().join("blobs/sha256")).len(), 4);

    let removed = store.remove("busybox").await.unwrap();
    assert_eq!(removed, vec!["docker.io/library/busybox:latest"]);
    assert!(store.get("busybox").unwrap().is_none());
    assert!(!busybox.layers[0].exists());
    assert!(nginx.layers[0].join("usr/sbin/nginx").exists());
    assert_eq!(entries(&store.root().join("layers/sha256")).len(), 1);
    assert_eq!(entries(&store.root().join("blobs/sha256")).len(), 2);
    assert_eq!(entries(&store.root().join("images/by-digest")).len(), 1);
    assert!(entries(&store.root().join("tmp")).is_empty());

    // Nothing to remove is an error, not a silent success.
    let err = store.remove("busybox").await.unwrap_err();
    assert!(matches!(err, Error::ImageNotPresent(_)), "{err:?}");
    assert!(
        err.to_string().contains("docker.io/library/busybox:latest"),
        "{err}"
    );
    assert!(matches!(
        store.remove(&format!("sha256:{}", "0".repeat(64))).await,
        Err(Error::ImageNotPresent(_))
    ));
}

#[tokio::test]
async fn removing_by_id_removes_every_name_and_a_shared_layer_survives_one_name() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir);
    let tar = test_image("busybox.rootfs.tar");
    let a = store.import_rootfs(&tar, "one/busybox").await.unwrap();
    store.import_rootfs(&tar, "two/busybox").await.unwrap();
    assert_eq!(store.get("one/busybox").unwrap().unwrap().names.len(), 2);

    store.remove("one/busybox").await.unwrap();
    assert!(a.layers[0].exists(), "still used by two/busybox");

    store.import_rootfs(&tar, "three/busybox").await.unwrap();
    let by_repo_digest = store.import_rootfs(&tar, "four/busybox").await.unwrap();
    assert_eq!(
        store
            .remove(&by_repo_digest.repo_digest)
            .await
            .unwrap()
            .len(),
        3
    );
    store.import_rootfs(&tar, "two/busybox").await.unwrap();
    store.import_rootfs(&tar, "three/busybox").await.unwrap();
    let removed = store.remove(&a.digest[7..19]).await.unwrap();
    assert_eq!(
        removed,
        vec![
            "docker.io/three/busybox:latest",
            "docker.io/two/busybox:latest"
        ]
    );
    assert!(store.list().unwrap().is_empty());
    assert!(!a.layers[0].exists());
}

#[tokio::test]
async fn a_leased_image_keeps_its_layers_until_released() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir);
    let image = store
        .import_rootfs(&test_image("busybox.rootfs.tar"), "busybox")
        .await
        .unwrap();
    store.lease("container-1", &image).unwrap();
    store.remove("busybox").await.unwrap();
    assert!(
        image.layers[0].join("bin/busybox").exists(),
        "a running container still uses it"
    );
    assert!(store.get("busybox").unwrap().is_none());

    store.release("container-1").unwrap();
    let stats = store.gc().await.unwrap();
    assert_eq!((stats.images, stats.layers), (1, 1));
    assert!(!image.layers[0].exists());
}

#[tokio::test]
async fn a_name_moved_to_another_image_leaves_nothing_of_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir);
    let old = store
        .import_rootfs(&test_image("busybox.rootfs.tar"), "app:v1")
        .await
        .unwrap();
    let tar = write(&dir, "new.tar", &layer_tar(&[file("version", "2")]));
    let new = store.import_rootfs(&tar, "app:v1").await.unwrap();
    assert_ne!(old.digest, new.digest);
    assert_eq!(store.get("app:v1").unwrap().unwrap().digest, new.digest);
    assert!(!old.layers[0].exists());
    assert_eq!(entries(&store.root().join("layers/sha256")).len(), 1);
    assert_eq!(entries(&store.root().join("images/by-digest")).len(), 1);
}
