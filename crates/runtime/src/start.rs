//! start_container: tells the shim to let the created container run.

use std::sync::Arc;

use crate::linux::{blocking, Inner};
use crate::state::{read_json, ContainerFiles, ShimState};
use crate::{Error, Result};

pub(crate) async fn start(inner: &Arc<Inner>, id: &str) -> Result<()> {
    let dir = inner.layout.container(id);
    let owned = id.to_string();
    let state: ShimState = blocking(inner, move |i| {
        read_json(&i.layout.container(&owned).join(ContainerFiles::STATE))
            .map_err(|_| Error::ContainerNotFound(owned.clone()))
    })
    .await?;
    if !state.status.can_start() {
        return Err(Error::Other(format!(
            "container {id} cannot be started: it is {:?}",
            state.status
        )));
    }
    crate::attach::shim_command(&dir, id, "start").await?;
    Ok(())
}
