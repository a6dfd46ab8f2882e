//! Kubernetes' restart and image-pull back-off: 10 s doubling to a 5 min
//! cap, forgotten after a container ran cleanly for 10 min.

use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::Pod;

pub const INITIAL: Duration = Duration::from_secs(10);
pub const MAX: Duration = Duration::from_secs(300);

/// Back-off state of one container (or one image), with the semantics of
/// the kubelet's `flowcontrol.Backoff`: a failure with no recent history
/// is retried at once; repeated failures wait 10 s, 20 s, 40 s... up to
/// 5 min; an entry untouched for twice the cap (10 min) is forgotten.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Backoff {
    delay: Option<Duration>,
    last_update: Option<SystemTime>,
}

impl Backoff {
    fn expired(&self, at: SystemTime) -> bool {
        match self.last_update {
            Some(last) => at.duration_since(last).unwrap_or_default() > MAX * 2,
            None => true,
        }
    }

    /// Whether a retry after a failure at `failed_at` must still wait at
    /// `now`; returns the current delay and the end of the wait.
    pub fn in_backoff_since(
        &self,
        failed_at: SystemTime,
        now: SystemTime,
    ) -> Option<(Duration, SystemTime)> {
        let delay = self.delay?;
        if self.expired(failed_at) {
            return None;
        }
        let until = failed_at + delay;
        (now < until).then_some((delay, until))
    }

    /// Whether a retry must wait at `now`, counting from the last
    /// [`Backoff::next`] (image pulls).
    pub fn in_backoff_since_update(&self, now: SystemTime) -> Option<(Duration, SystemTime)> {
        let (delay, last) = (self.delay?, self.last_update?);
        let until = last + delay;
        (now < until).then_some((delay, until))
    }

    /// Records a retry (or a failure, for image pulls) at `at`: starts at
    /// 10 s, doubling on each further call up to the cap.
    pub fn next(&mut self, at: SystemTime) {
        self.delay = Some(match self.delay {
            Some(d) if !self.expired(at) => (d * 2).min(MAX),
            _ => INITIAL,
        });
        self.last_update = Some(at);
    }
}

/// Go's `time.Duration` formatting for whole seconds: `10s`, `1m20s`, `5m0s`.
pub fn go_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m{}s", s / 60, s % 60)
    } else {
        format!("{}h{}m{}s", s / 3600, (s % 3600) / 60, s % 60)
    }
}

/// `name_namespace(uid)`, the kubelet's way of naming a pod in messages.
pub fn pod_full_name(pod: &Pod) -> String {
    format!(
        "{}_{}({})",
        pod.metadata.name.as_deref().unwrap_or_default(),
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.uid.as_deref().unwrap_or_default()
    )
}

/// The CrashLoopBackOff waiting message.
pub fn crash_loop_message(delay: Duration, container: &str, pod: &Pod) -> String {
    format!(
        "back-off {} restarting failed container={container} pod={}",
        go_duration(delay),
        pod_full_name(pod)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(n)
    }

    #[test]
    fn crash_loop_waits_double_to_the_cap() {
        // A container that fails at once every time it starts: record the
        // waits between its starts as the kubelet would space them.
        let mut b = Backoff::default();
        let mut now = secs(1000);
        let mut waits = Vec::new();
        for _ in 0..9 {
            let failed_at = now;
            match b.in_backoff_since(failed_at, now) {
                Some((delay, until)) => {
                    waits.push(delay.as_secs());
                    now = until;
                    assert!(b.in_backoff_since(failed_at, now).is_none());
                }
                None => waits.push(0),
            }
            b.next(now);
        }
        assert_eq!(waits, vec![0, 10, 20, 40, 80, 160, 300, 300, 300]);
    }

    #[test]
    fn quiet_period_forgets_the_history() {
        let mut b = Backoff::default();
        b.next(secs(0));
        b.next(secs(10));
        b.next(secs(30));
        // Failing again 11 minutes after the last restart: no wait.
        assert!(b.in_backoff_since(secs(30 + 660), secs(30 + 661)).is_none());
        b.next(secs(30 + 661));
        assert_eq!(
            b.in_backoff_since(secs(700), secs(700)).map(|d| d.0),
            Some(INITIAL)
        );
    }

    #[test]
    fn image_pull_backoff_counts_from_the_failure() {
        let mut b = Backoff::default();
        assert!(b.in_backoff_since_update(secs(0)).is_none());
        b.next(secs(0));
        assert_eq!(
            b.in_backoff_since_update(secs(5)),
            Some((INITIAL, secs(10)))
        );
        assert!(b.in_backoff_since_update(secs(10)).is_none());
        b.next(secs(10));
        assert_eq!(
            b.in_backoff_since_update(secs(11)),
            Some((Duration::from_secs(20), secs(30)))
        );
    }

    #[test]
    fn go_style_durations() {
        assert_eq!(go_duration(Duration::from_secs(40)), "40s");
        assert_eq!(go_duration(Duration::from_secs(80)), "1m20s");
        assert_eq!(go_duration(Duration::from_secs(300)), "5m0s");
    }
}
