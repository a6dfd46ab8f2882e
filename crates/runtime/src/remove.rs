//! remove_container: kills it if still running, unmounts its rootfs and
//! deletes its directory. Its logs stay with the pod until the pod goes.

use std::sync::Arc;
use std::time::Duration;

use crate::linux::{blocking, Inner};
use crate::state::ContainerFiles;
use crate::{Error, Result};

pub(crate) async fn remove(inner: &Arc<Inner>, id: &str) -> Result<()> {
    if !inner.layout.container(id).exists() {
        return Ok(());
    }
    crate::stop::stop(inner, id, Duration::ZERO).await?;
    let owned = id.to_string();
    blocking(inner, move |i| {
        let dir = i.layout.container(&owned);
        crate::rootfs::unmount(&dir.join(ContainerFiles::ROOTFS))
            .map_err(|e| Error::Other(format!("container {owned}: {e}")))?;
        std::fs::remove_dir_all(&dir)
            .map_err(|e| Error::Other(format!("remove {}: {e}", dir.display())))?;
        // Left behind only if the shim died before cleaning up.
        let _ = std::fs::remove_dir_all(i.layout.youki().join(&owned));
        i.images.release(&owned)
    })
    .await
}
