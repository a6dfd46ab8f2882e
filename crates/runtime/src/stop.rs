//! stop_container: the image's stop signal (SIGTERM by default), up to
//! `grace` to exit, then SIGKILL.

use std::sync::Arc;
use std::time::Duration;

use crate::attach::{shim_command, wait_exit};
use crate::linux::{blocking, Inner};
use crate::state::{read_json, ContainerFiles, ContainerRecord, ShimState};
use crate::{Error, Result};

/// How long a SIGKILLed container may take to be reported gone.
const KILL_WAIT: Duration = Duration::from_secs(10);

pub(crate) async fn stop(inner: &Arc<Inner>, id: &str, grace: Duration) -> Result<()> {
    let owned = id.to_string();
    let (record, state) = blocking(inner, move |i| {
        let dir = i.layout.container(&owned);
        let record: ContainerRecord = read_json(&dir.join(ContainerFiles::RECORD))
            .map_err(|_| Error::ContainerNotFound(owned.clone()))?;
        let state: Option<ShimState> = read_json(&dir.join(ContainerFiles::STATE)).ok();
        Ok((record, state))
    })
    .await?;
    if !state.is_some_and(|s| s.status.can_signal()) {
        return Ok(());
    }
    let dir = inner.layout.container(id);
    // Wait first, then signal, so an exit between the two is not missed.
    let waiter = {
        let (dir, id) = (dir.clone(), id.to_string());
        tokio::spawn(async move { wait_exit(&dir, &id).await })
    };
    let mut waiter = waiter;
    if !grace.is_zero() {
        match shim_command(&dir, id, &format!("kill {}", record.stop_signal)).await {
            Ok(_) => {}
            Err(Error::NotRunning { .. }) => return Ok(()),
            Err(e) => return Err(e),
        }
        if tokio::time::timeout(grace, &mut waiter).await.is_ok() {
            return Ok(());
        }
    }
    match shim_command(&dir, id, &format!("kill {}", libc::SIGKILL)).await {
        Ok(_) => {}
        Err(Error::NotRunning { .. }) => return Ok(()),
        Err(e) => return Err(e),
    }
    match tokio::time::timeout(KILL_WAIT, waiter).await {
        Ok(_) => Ok(()),
        Err(_) => Err(Error::Other(format!(
            "container {id} did not exit within {KILL_WAIT:?} of SIGKILL"
        ))),
    }
}
