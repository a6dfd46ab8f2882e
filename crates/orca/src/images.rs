//! `orca images`: manage the node's image store directly (it is safe to
//! use while the agent runs: the store locks across processes).

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context};
use orca_image::{ImageStore, RegistriesConfig};

use crate::cli::{ImagesArgs, ImagesCommand};

pub fn run(args: ImagesArgs) -> anyhow::Result<()> {
    let store = open_store(&args.data_dir)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let mut out = std::io::stdout().lock();
    match args.command {
        ImagesCommand::Import {
            files,
            rootfs,
            name,
        } => runtime.block_on(import(
            &store,
            &files,
            rootfs.as_deref(),
            name.as_deref(),
            &mut out,
        )),
        ImagesCommand::List => list(&store, &mut out),
        ImagesCommand::Rm { images } => runtime.block_on(remove(&store, &images, &mut out)),
    }
}

fn open_store(data_dir: &Path) -> anyhow::Result<ImageStore> {
    let registries = RegistriesConfig::load(&data_dir.join("registries.yaml"))?;
    let root = data_dir.join("agent/images");
    ImageStore::open(&root, registries)
        .with_context(|| format!("opening the image store in {}", root.display()))
}

async fn import(
    store: &ImageStore,
    files: &[std::path::PathBuf],
    rootfs: Option<&Path>,
    name: Option<&str>,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    if files.is_empty() && rootfs.is_none() {
        bail!("nothing to import: give image archives, or --rootfs FILE --name NAME");
    }
    if let Some(tar) = rootfs {
        let name = name.context("--rootfs needs --name, e.g. --name busybox:latest")?;
        let image = store.import_rootfs(tar, name).await?;
        writeln!(
            out,
            "imported {} ({})",
            image.reference,
            short_id(&image.digest)
        )?;
    } else if name.is_some() {
        bail!("--name only applies to --rootfs; archives carry their own image names");
    }
    let mut failed = 0;
    for file in files {
        match store.import_archive(file).await {
            Ok(images) => {
                for image in images {
                    writeln!(
                        out,
                        "imported {} ({})",
                        image.reference,
                        short_id(&image.digest)
                    )?;
                }
            }
            Err(e) => {
                eprintln!("error: {e}");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} archives could not be imported", files.len());
    }
    Ok(())
}

/// The table `crictl images` prints, with the name and tag together.
fn list(store: &ImageStore, out: &mut impl Write) -> anyhow::Result<()> {
    let rows: Vec<[String; 3]> = store
        .list()?
        .into_iter()
        .map(|i| {
            [
                i.reference,
                short_id(&i.digest).to_string(),
                human_size(i.size),
            ]
        })
        .collect();
    write_table(out, ["IMAGE", "IMAGE ID", "SIZE"], &rows)?;
    Ok(())
}

async fn remove(store: &ImageStore, images: &[String], out: &mut impl Write) -> anyhow::Result<()> {
    if images.is_empty() {
        bail!("name at least one image to remove");
    }
    let mut failed = 0;
    for image in images {
        match store.remove(image).await {
            Ok(names) => {
                for name in names {
                    writeln!(out, "Deleted: {name}")?;
                }
            }
            Err(e) => {
                eprintln!("error: {e}");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} images could not be removed", images.len());
    }
    Ok(())
}

/// The first 13 hex digits of an image ID, as crictl shows them.
fn short_id(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    &hex[..hex.len().min(13)]
}

/// Decimal units with three significant digits, as crictl prints sizes.
fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut size = bytes as f64;
    let mut unit = 0;
    while size >= 1000.0 && unit < UNITS.len() - 1 {
        size /= 1000.0;
        unit += 1;
    }
    let precision = match size {
        s if s >= 100.0 => 0,
        s if s >= 10.0 => 1,
        _ => 2,
    };
    let text = format!("{size:.precision$}");
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    };
    format!("{text}{}", UNITS[unit])
}

fn write_table<const N: usize>(
    out: &mut impl Write,
    header: [&str; N],
    rows: &[[String; N]],
) -> std::io::Result<()> {
    let mut widths = header.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == N {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<width$}   ", width = widths[i]));
            }
        }
        text
    };
    writeln!(out, "{}", line(header.to_vec()))?;
    for row in rows {
        writeln!(out, "{}", line(row.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_crictl() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(2_147_328), "2.15MB");
        assert_eq!(human_size(11_947_008), "11.9MB");
        assert_eq!(human_size(187_000_000), "187MB");
    }

    #[test]
    fn table_columns_line_up() {
        let mut out = Vec::new();
        let rows = [[
            "docker.io/library/busybox:latest".to_string(),
            "0123456789abc".to_string(),
            "2.15MB".to_string(),
        ]];
        write_table(&mut out, ["IMAGE", "IMAGE ID", "SIZE"], &rows).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0].find("IMAGE ID"), lines[1].find("0123456789abc"));
        assert_eq!(lines[0].find("SIZE"), lines[1].find("2.15MB"));
        assert_eq!(short_id("sha256:0123456789abcdef"), "0123456789abc");
    }

    #[test]
    fn import_list_and_remove_through_the_store() {
        let images = std::env::var("ORCA_TEST_IMAGES")
            .expect("ORCA_TEST_IMAGES is not set: run the tests through scripts/test.sh");
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().to_path_buf();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let store = open_store(&data_dir).unwrap();
        let mut out = Vec::new();
        runtime
            .block_on(import(
                &store,
                &[Path::new(&images).join("busybox.docker.tar")],
                Some(&Path::new(&images).join("nginx.rootfs.tar")),
                Some("web:1"),
                &mut out,
            ))
            .unwrap();
        let text = String::from_utf8(std::mem::take(&mut out)).unwrap();
        assert!(
            text.contains("imported docker.io/library/web:1 ("),
            "{text}"
        );
        assert!(
            text.contains("imported docker.io/library/busybox:latest ("),
            "{text}"
        );

        list(&store, &mut out).unwrap();
        let table = String::from_utf8(std::mem::take(&mut out)).unwrap();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3, "{table}");
        assert!(lines[0].starts_with("IMAGE") && lines[0].ends_with("SIZE"));
        assert!(lines[1].starts_with("docker.io/library/busybox:latest"));
        assert!(lines[2].starts_with("docker.io/library/web:1"));

        runtime
            .block_on(remove(&store, &["web:1".to_string()], &mut out))
            .unwrap();
        assert_eq!(
            String::from_utf8(std::mem::take(&mut out)).unwrap(),
            "Deleted: docker.io/library/web:1\n"
        );
        let err = runtime
            .block_on(remove(&store, &["web:1".to_string()], &mut out))
            .unwrap_err();
        assert!(err.to_string().contains("could not be removed"), "{err}");
    }
}
