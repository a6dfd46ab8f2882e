//! Layer unpacking: confinement to the layer root, overlayfs whiteouts,
//! compression, links and metadata.

use crate::common;

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::process::Command;

use common::*;
use orca_image::Error;

async fn import_layer(
    entries: &[Entry],
) -> (
    tempfile::TempDir,
    orca_image::ImageStore,
    Result<orca_image::Image, Error>,
) {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir);
    let tar = write(&dir, "layer.tar", &layer_tar(entries));
    let result = store.import_rootfs(&tar, "crafted").await;
    (dir, store, result)
}

fn assert_refused(result: Result<orca_image::Image, Error>, needle: &str) {
    let err = result.expect_err("the layer must be refused");
    assert!(matches!(err, Error::UnsafeLayer { .. }), "{err:?}");
    assert!(err.to_string().contains(needle), "{err}");
}

fn assert_nothing_recorded(store: &orca_image::ImageStore) {
    assert!(store.list().unwrap().is_empty());
    assert!(entries(&store.root().join("layers/sha256")).is_empty());
    assert!(entries(&store.root().join("tmp")).is_empty());
}

#[tokio::test]
async fn paths_climbing_out_of_the_layer_are_refused() {
    let (dir, store, result) =
        import_layer(&[file("ok", "fine"), file("a/../../../../escaped", "pwned")]).await;
    assert_refused(result, "escapes the layer root");
    assert!(!dir.path().join("escaped").exists());
    assert!(!store.root().join("escaped").exists());
    assert_nothing_recorded(&store);
}

#[tokio::test]
async fn absolute_and_escaping_hard_links_are_refused() {
    let (_dir, store, result) = import_layer(&[hardlink("shadow", "/etc/shadow")]).await;
    assert_refused(result, "absolute");
    assert_nothing_recorded(&store);

    let (_dir, store, result) = import_layer(&[hardlink("shadow", "../../../../etc/shadow")]).await;
    assert_refused(result, "escapes the layer root");
    assert_nothing_recorded(&store);
}

#[tokio::test]
async fn entries_reached_through_a_symlink_are_refused() {
    let outside = tempfile::tempdir().unwrap();
    let target: &'static str = Box::leak(
        outside
            .path()
            .to_str()
            .unwrap()
            .to_string()
            .into_boxed_str(),
    );
    let (_dir, store, result) =
        import_layer(&[symlink("link", target), file("link/planted", "pwned")]).await;
    assert_refused(result, "symlink");
    assert!(!outside.path().join("planted").exists());
    assert_nothing_recorded(&store);
}

#[tokio::test]
async fn links_modes_and_absolute_symlinks_are_kept() {
    let mut exe = file("bin/tool", "#!/bin/sh\n");
    exe.mode = 0o4755;
    let (_dir, _store, result) = import_layer(&[
        directory("bin"),
        exe,
        hardlink("bin/tool-again", "bin/tool"),
        symlink("bin/abs", "/bin/tool"),
        file("/etc/leading-slash", "kept inside"),
    ])
    .await;
    let image = result.unwrap();
    let root = &image.layers[0];
    let tool = root.join("bin/tool").metadata().unwrap();
    assert_eq!(tool.mode() & 0o7777, 0o4755);
    assert_eq!(tool.mtime(), 1_700_000_000);
    assert_eq!(
        root.join("bin/tool-again").metadata().unwrap().ino(),
        tool.ino()
    );
    assert_eq!(
        std::fs::read_link(root.join("bin/abs")).unwrap().to_str(),
        Some("/bin/tool")
    );
    assert_eq!(
        std::fs::read_to_string(root.join("etc/leading-slash")).unwrap(),
        "kept inside"
    );
}

#[tokio::test]
async fn whiteouts_and_opaque_dirs_become_overlayfs_whiteouts() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir);
    let lower = layer_tar(&[
        directory("a"),
        file("a/x", "x"),
        file("a/y", "y"),
        file("gone", "g"),
        file("kept", "k"),
    ]);
    let upper = layer_tar(&[
        file(".wh.gone", ""),
        directory("a"),
        file("a/.wh..wh..opq", ""),
        file("a/z", "z"),
    ]);
    let archive = write(
        &dir,
        "layered.oci.tar",
        &oci_archive("v1", &[gzipped(lower), plain(upper)], &["sh"]),
    );
    let image = store.import_archive(&archive).await.unwrap().remove(0);
    assert_eq!(image.reference, "docker.io/library/layered:v1");
    assert_eq!(image.layers.len(), 2);
    let top = &image.layers[1];
    let whiteout = top.join("gone").symlink_metadata().unwrap();
    assert!(whiteout.file_type().is_char_device());
    assert_eq!(whiteout.rdev(), 0);
    assert!(!top.join(".wh.gone").exists());
    assert!(!top.join("a/.wh..wh..opq").exists());
    assert_eq!(
        xattr::get(top.join("a"), "trusted.overlay.opaque")
            .unwrap()
            .as_deref(),
        Some(&b"y"[..])
    );

    // And overlayfs agrees: mount the layers the way the runtime will.
    let merged = dir.path().join("merged");
    std::fs::create_dir(&merged).unwrap();
    let lowerdir: Vec<String> = image
        .layers
        .iter()
        .rev()
        .map(|p| p.display().to_string())
        .collect();
    let status = Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o"])
        .arg(format!("lowerdir={}", lowerdir.join(":")))
        .arg(&merged)
        .status()
        .unwrap();
    assert!(status.success(), "mounting overlayfs needs root");
    let seen = (entries(&merged), entries(&merged.join("a")));
    assert!(Command::new("umount")
        .arg(&merged)
        .status()
        .unwrap()
        .success());
    assert_eq!(seen.0, vec!["a", "kept"]);
    assert_eq!(seen.1, vec!["z"]);
}

#[tokio::test]
async fn zstd_layers_are_unpacked_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir);
    let tar = layer_tar(&[directory("etc"), file("etc/motd", "compressed with zstd\n")]);
    let archive = write(
        &dir,
        "zst.oci.tar",
        &oci_archive("latest", &[zstded(tar)], &["cat", "/etc/motd"]),
    );
    let image = store.import_archive(&archive).await.unwrap().remove(0);
    assert_eq!(
        std::fs::read_to_string(image.layers[0].join("etc/motd")).unwrap(),
        "compressed with zstd\n"
    );
    assert_eq!(image.config.cmd, vec!["cat", "/etc/motd"]);
}

#[tokio::test]
async fn a_layer_that_does_not_match_its_diff_id_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir);
    let mut layer = gzipped(layer_tar(&[file("a", "a")]));
    // The config will announce the diff ID of different content.
    layer.tar = layer_tar(&[file("b", "b")]);
    let archive = write(
        &dir,
        "liar.oci.tar",
        &oci_archive("latest", &[layer], &["sh"]),
    );
    let err = store.import_archive(&archive).await.unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err:?}");
    assert_nothing_recorded(&store);
}
