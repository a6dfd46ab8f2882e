//! kube-apiserver's max-in-flight filter: at most `--max-requests-inflight`
//! read-only and `--max-mutating-requests-inflight` mutating requests are
//! served at once; beyond, 429 with `Retry-After: 1`. Watches and streams
//! are not counted, and members of system:masters are always served.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{Attributes, UserInfo, SYSTEM_MASTERS};

pub struct Inflight {
    read_only: Option<Arc<Semaphore>>,
    mutating: Option<Arc<Semaphore>>,
    max_read_only: usize,
    max_mutating: usize,
}

/// A request over the limit.
pub struct TooMany;

impl Inflight {
    /// Zero means no limit, as for kube-apiserver's flags.
    pub fn new(max_read_only: usize, max_mutating: usize) -> Inflight {
        let sem = |n: usize| (n > 0).then(|| Arc::new(Semaphore::new(n)));
        Inflight {
            read_only: sem(max_read_only),
            mutating: sem(max_mutating),
            max_read_only,
            max_mutating,
        }
    }

    /// Read-only and mutating requests being served now (0 without a
    /// limit, as kube-apiserver counts only under its limits).
    pub fn in_use(&self) -> (usize, usize) {
        let used = |s: &Option<Arc<Semaphore>>, max: usize| {
            s.as_ref()
                .map_or(0, |s| max.saturating_sub(s.available_permits()))
        };
        (
            used(&self.read_only, self.max_read_only),
            used(&self.mutating, self.max_mutating),
        )
    }

    /// A permit held while the request is served; `None` when the request
    /// is not counted.
    pub fn admit(
        &self,
        attrs: &Attributes,
        user: &UserInfo,
        long_running: bool,
    ) -> Result<Option<OwnedSemaphorePermit>, TooMany> {
        if long_running {
            return Ok(None);
        }
        let sem = if attrs.is_mutating() {
            &self.mutating
        } else {
            &self.read_only
        };
        let Some(sem) = sem else { return Ok(None) };
        match sem.clone().try_acquire_owned() {
            Ok(p) => Ok(Some(p)),
            Err(_) if user.in_group(SYSTEM_MASTERS) => Ok(None),
            Err(_) => Err(TooMany),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_count_reads_and_writes_apart_and_spare_masters() {
        let f = Inflight::new(1, 1);
        let bob = UserInfo::authenticated("bob", &[]);
        let get = Attributes::resource("get", "", "pods", "", "d", "p");
        let create = Attributes::resource("create", "", "pods", "", "d", "");
        let held = f.admit(&get, &bob, false).ok().flatten();
        assert!(held.is_some());
        assert!(f.admit(&get, &bob, false).is_err());
        assert!(f.admit(&create, &bob, false).is_ok());
        assert!(
            f.admit(&get, &bob, true).is_ok(),
            "long-running requests are not counted"
        );
        assert!(f.admit(&get, &UserInfo::admin(), false).is_ok());
        drop(held);
        assert!(f.admit(&get, &bob, false).is_ok());
    }
}
