//! The scheduling queue, shaped like kube-scheduler's: an active heap
//! (higher priority first, then first come), a backoff heap for pods that
//! failed recently, and an unschedulable set that waits for a cluster change
//! (a node added or changed, a pod removed) instead of polling.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashSet};

use crate::node::HashMap;
use std::time::{Duration, Instant};

use crate::podinfo::PodInfo;

const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Unschedulable pods are retried at least this often even without a
/// cluster event (kube-scheduler's podMaxInUnschedulablePodsDuration).
pub const MAX_UNSCHEDULABLE_WAIT: Duration = Duration::from_secs(300);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Active,
    Backoff,
    Unschedulable,
    /// Popped and being decided.
    InFlight,
    /// Bound (or being bound) by us; stale unbound versions from the watch
    /// must not requeue it.
    Assumed,
}

struct Entry {
    pod: PodInfo,
    state: State,
    attempts: u32,
    /// Heap entries carry the token they were pushed with; older ones are stale.
    token: u64,
    since: Instant,
    backoff_until: Instant,
    /// The pod changed while in flight: retry it at once if the attempt fails.
    changed_in_flight: bool,
}

#[derive(PartialEq, Eq)]
struct Ready {
    priority: i32,
    token: u64,
    uid: String,
}

impl Ord for Ready {
    fn cmp(&self, other: &Self) -> Ordering {
        self.priority
            .cmp(&other.priority)
            .then_with(|| other.token.cmp(&self.token))
    }
}

impl PartialOrd for Ready {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[derive(Default)]
pub struct Queue {
    entries: HashMap<String, Entry>,
    active: BinaryHeap<Ready>,
    backoff: BinaryHeap<Reverse<(Instant, u64, String)>>,
    /// UIDs in [`State::Unschedulable`], so a cluster event touches only them.
    parked: HashSet<String>,
    next_token: u64,
}

fn backoff_for(attempts: u32) -> Duration {
    let shift = attempts.saturating_sub(1).min(16);
    (INITIAL_BACKOFF * (1u32 << shift)).min(MAX_BACKOFF)
}

impl Queue {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn push_active(&mut self, uid: &str) {
        let Some(e) = self.entries.get_mut(uid) else {
            return;
        };
        self.next_token += 1;
        e.token = self.next_token;
        e.state = State::Active;
        self.parked.remove(uid);
        self.active.push(Ready {
            priority: e.pod.priority(),
            token: e.token,
            uid: uid.to_string(),
        });
    }

    fn push_backoff(&mut self, uid: &str) {
        let Some(e) = self.entries.get_mut(uid) else {
            return;
        };
        self.next_token += 1;
        e.token = self.next_token;
        e.state = State::Backoff;
        self.parked.remove(uid);
        self.backoff
            .push(Reverse((e.backoff_until, e.token, uid.to_string())));
    }

    /// A pending pod appeared or changed. Returns true when a waiter should
    /// be woken (the pod is newly active).
    pub fn add_or_update(&mut self, pod: PodInfo, now: Instant) -> bool {
        let uid = pod.uid.clone();
        match self.entries.get_mut(&uid) {
            None => {
                self.entries.insert(
                    uid.clone(),
                    Entry {
                        pod,
                        state: State::Active,
                        attempts: 0,
                        token: 0,
                        since: now,
                        backoff_until: now,
                        changed_in_flight: false,
                    },
                );
                self.push_active(&uid);
                true
            }
            Some(e) => {
                let relevant = e.pod.pod.spec != pod.pod.spec
                    || e.pod.pod.metadata.labels != pod.pod.metadata.labels;
                match e.state {
                    State::Assumed => false,
                    State::InFlight => {
                        e.changed_in_flight |= relevant;
                        e.pod = pod;
                        false
                    }
                    State::Active | State::Backoff => {
                        e.pod = pod;
                        false
                    }
                    State::Unschedulable => {
                        e.pod = pod;
                        if relevant {
                            self.requeue(&uid, now);
                            true
                        } else {
                            false
                        }
                    }
                }
            }
        }
    }

    pub fn is_assumed(&self, uid: &str) -> bool {
        self.entries
            .get(uid)
            .is_some_and(|e| e.state == State::Assumed)
    }

    /// Drops pods (other than assumed ones) for which `keep` is false.
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.entries
            .retain(|uid, e| e.state == State::Assumed || keep(uid));
        let entries = &self.entries;
        self.parked.retain(|uid| entries.contains_key(uid));
    }

    pub fn remove(&mut self, uid: &str) {
        self.entries.remove(uid);
        self.parked.remove(uid);
    }

    /// Moves a waiting pod to backoff or active, depending on its backoff.
    fn requeue(&mut self, uid: &str, now: Instant) {
        let Some(e) = self.entries.get(uid) else {
            return;
        };
        if e.backoff_until > now {
            self.push_backoff(uid);
        } else {
            self.push_active(uid);
        }
    }

    /// The next pod to schedule, marked in flight.
    pub fn pop(&mut self, now: Instant) -> Option<PodInfo> {
        while let Some(Reverse((until, token, _))) = self.backoff.peek() {
            if *until > now {
                break;
            }
            let token = *token;
            let Some(Reverse((_, _, uid))) = self.backoff.pop() else {
                break;
            };
            if self
                .entries
                .get(&uid)
                .is_some_and(|e| e.token == token && e.state == State::Backoff)
            {
                self.push_active(&uid);
            }
        }
        while let Some(r) = self.active.pop() {
            if let Some(e) = self.entries.get_mut(&r.uid) {
                if e.token == r.token && e.state == State::Active {
                    e.state = State::InFlight;
                    e.changed_in_flight = false;
                    return Some(e.pod.clone());
                }
            }
        }
        None
    }

    /// When the earliest backoff ends (the caller sleeps until then).
    pub fn next_backoff_expiry(&self) -> Option<Instant> {
        self.backoff.peek().map(|Reverse((t, _, _))| *t)
    }

    /// The in-flight pod was assumed onto a node and is being bound.
    pub fn assumed(&mut self, uid: &str) {
        if let Some(e) = self.entries.get_mut(uid) {
            e.state = State::Assumed;
        }
    }

    /// The in-flight pod fits nowhere: park it until the cluster changes.
    pub fn unschedulable(&mut self, uid: &str, now: Instant) {
        let Some(e) = self.entries.get_mut(uid) else {
            return;
        };
        e.attempts += 1;
        e.backoff_until = now + backoff_for(e.attempts);
        e.since = now;
        if e.changed_in_flight {
            self.push_backoff(uid);
        } else {
            e.state = State::Unschedulable;
            self.parked.insert(uid.to_string());
        }
    }

    /// Binding failed for a reason worth retrying: back off, then retry.
    pub fn retry_later(&mut self, uid: &str, now: Instant) {
        let Some(e) = self.entries.get_mut(uid) else {
            return;
        };
        e.attempts += 1;
        e.backoff_until = now + backoff_for(e.attempts);
        self.push_backoff(uid);
    }

    /// A cluster change may let parked pods fit: retry them all. Returns
    /// how many moved.
    pub fn move_all_unschedulable(&mut self, now: Instant) -> usize {
        let parked: Vec<String> = self.parked.drain().collect();
        for uid in &parked {
            self.requeue(uid, now);
        }
        parked.len()
    }

    /// Retries pods parked for longer than [`MAX_UNSCHEDULABLE_WAIT`].
    pub fn flush_stale_unschedulable(&mut self, now: Instant) -> usize {
        let stale: Vec<String> = self
            .parked
            .iter()
            .filter(|uid| {
                self.entries
                    .get(*uid)
                    .is_some_and(|e| now.duration_since(e.since) >= MAX_UNSCHEDULABLE_WAIT)
            })
            .cloned()
            .collect();
        for uid in &stale {
            self.requeue(uid, now);
        }
        stale.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Pod, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod(uid: &str, priority: i32) -> PodInfo {
        PodInfo::new(Pod {
            metadata: ObjectMeta {
                name: Some(uid.into()),
                namespace: Some("default".into()),
                uid: Some(uid.into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                priority: Some(priority),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    #[test]
    fn higher_priority_first_then_fifo() {
        let now = Instant::now();
        let mut q = Queue::default();
        q.add_or_update(pod("a", 0), now);
        q.add_or_update(pod("b", 10), now);
        q.add_or_update(pod("c", 0), now);
        let order: Vec<String> = std::iter::from_fn(|| q.pop(now).map(|p| p.uid)).collect();
        assert_eq!(order, vec!["b", "a", "c"]);
    }

    #[test]
    fn unschedulable_pods_wait_for_a_cluster_event_and_their_backoff() {
        let now = Instant::now();
        let mut q = Queue::default();
        q.add_or_update(pod("a", 0), now);
        assert!(q.pop(now).is_some());
        q.unschedulable("a", now);
        assert!(q.pop(now + Duration::from_secs(60)).is_none());
        // A status-only update (our own condition patch) does not requeue.
        assert!(!q.add_or_update(pod("a", 0), now));
        assert_eq!(q.move_all_unschedulable(now), 1);
        // Still backing off (1 s after the first failure).
        assert!(q.pop(now).is_none());
        assert_eq!(q.next_backoff_expiry(), Some(now + Duration::from_secs(1)));
        assert_eq!(q.pop(now + Duration::from_secs(1)).unwrap().uid, "a");
    }

    #[test]
    fn a_spec_change_requeues_a_parked_pod() {
        let now = Instant::now();
        let mut q = Queue::default();
        q.add_or_update(pod("a", 0), now);
        q.pop(now);
        q.unschedulable("a", now);
        assert!(q.add_or_update(pod("a", 5), now));
        assert_eq!(q.pop(now + Duration::from_secs(2)).unwrap().priority(), 5);
    }

    #[test]
    fn assumed_pods_ignore_stale_updates_and_stale_parked_pods_are_flushed() {
        let now = Instant::now();
        let mut q = Queue::default();
        q.add_or_update(pod("a", 0), now);
        q.pop(now);
        q.assumed("a");
        assert!(!q.add_or_update(pod("a", 0), now));
        assert!(q.pop(now).is_none());
        q.add_or_update(pod("b", 0), now);
        q.pop(now);
        q.unschedulable("b", now);
        assert_eq!(
            q.flush_stale_unschedulable(now + Duration::from_secs(10)),
            0
        );
        assert_eq!(q.flush_stale_unschedulable(now + MAX_UNSCHEDULABLE_WAIT), 1);
    }

    #[test]
    fn backoff_doubles_up_to_ten_seconds() {
        assert_eq!(backoff_for(1), Duration::from_secs(1));
        assert_eq!(backoff_for(2), Duration::from_secs(2));
        assert_eq!(backoff_for(4), Duration::from_secs(8));
        assert_eq!(backoff_for(9), Duration::from_secs(10));
    }
}
