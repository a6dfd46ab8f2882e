//! Leader election over a coordination.k8s.io/v1 Lease, with client-go's
//! rules: a lease held by someone else counts as expired only after
//! `lease_duration` of *local* time without seeing it change (so clocks
//! need not agree), every write is a compare-and-swap on resourceVersion
//! (so two candidates cannot both win), a leader that cannot renew within
//! `renew_deadline` steps down, and one that stops releases the lease
//! (empty holder) so another takes over at once. The scheduler and the
//! controllers of `orca server` each hold one, so that several servers on
//! one store run each of them once.

use std::future::Future;

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::PostParams;
use kube::{Api, Client};

#[derive(Clone, Debug)]
pub struct LeaderElectionConfig {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

pub struct LeaseLock {
    client: Client,
    api: Api<Lease>,
    cfg: LeaderElectionConfig,
    /// (holder, renewTime) last seen, and when we first saw it.
    observed: Option<(String, Option<MicroTime>)>,
    observed_at: Instant,
}

fn is_status(err: &kube::Error, code: u16) -> bool {
    matches!(err, kube::Error::Api(s) if s.code == code)
}

impl LeaseLock {
    pub fn new(client: Client, cfg: LeaderElectionConfig) -> LeaseLock {
        LeaseLock {
            api: Api::namespaced(client.clone(), &cfg.namespace),
            client,
            cfg,
            observed: None,
            observed_at: Instant::now(),
        }
    }

    fn duration_secs(&self) -> i32 {
        i32::try_from(self.cfg.lease_duration.as_secs()).unwrap_or(i32::MAX)
    }

    /// One round: take the lease if it is free or expired, renew it if ours.
    /// `Ok(true)` means we hold it now.
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
        let now = MicroTime(chrono::Utc::now());
        let Some(current) = self.api.get_opt(&self.cfg.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.cfg.name.clone()),
                    namespace: Some(self.cfg.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.cfg.identity.clone()),
                    lease_duration_seconds: Some(self.duration_secs()),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(e) if is_status(&e, 409) => Ok(false),
                Err(e) if is_status(&e, 404) => {
                    // The lease's namespace (kube-system) is missing: create it
                    // and compete again next round.
                    self.ensure_namespace().await?;
                    Ok(false)
                }
                Err(e) => Err(e),
            };
        };
        let spec = current.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let record = (holder.clone(), spec.renew_time.clone());
        if self.observed.as_ref() != Some(&record) {
            self.observed = Some(record);
            self.observed_at = Instant::now();
        }
        let ours = holder == self.cfg.identity;
        if !ours && !holder.is_empty() && self.observed_at.elapsed() < self.cfg.lease_duration {
            return Ok(false);
        }
        let mut lease = current;
        lease.spec = Some(LeaseSpec {
            holder_identity: Some(self.cfg.identity.clone()),
            lease_duration_seconds: Some(self.duration_secs()),
            acquire_time: if ours {
                spec.acquire_time.clone()
            } else {
                Some(now.clone())
            },
            renew_time: Some(now),
            lease_transitions: Some(spec.lease_transitions.unwrap_or(0) + i32::from(!ours)),
            ..spec
        });
        // replace() sends the resourceVersion we read: a concurrent writer
        // makes this fail with 409 instead of both of us "winning".
        match self
            .api
            .replace(&self.cfg.name, &PostParams::default(), &lease)
            .await
        {
            Ok(written) => {
                let s = written.spec.unwrap_or_default();
                self.observed = Some((s.holder_identity.unwrap_or_default(), s.renew_time));
                self.observed_at = Instant::now();
                Ok(true)
            }
            Err(e) if is_status(&e, 409) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn ensure_namespace(&self) -> Result<(), kube::Error> {
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(self.cfg.namespace.clone()),
                ..Default::default()
            },
            ..Default::default()
        };
        match Api::<Namespace>::all(self.client.clone())
            .create(&PostParams::default(), &ns)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_status(&e, 409) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Waits until this candidate holds the lease.
    pub async fn acquire(&mut self) {
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => {
                    tracing::info!(
                        lease = %format!("{}/{}", self.cfg.namespace, self.cfg.name),
                        identity = %self.cfg.identity,
                        "acquired leadership"
                    );
                    return;
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(
                    lease = %format!("{}/{}", self.cfg.namespace, self.cfg.name),
                    "cannot read or write the leader election Lease (will retry): {e}"
                ),
            }
            tokio::time::sleep(self.cfg.retry_period).await;
        }
    }

    /// Keeps renewing; returns once leadership is lost (someone else holds
    /// the lease, or no renewal succeeded within the renew deadline).
    pub async fn hold(&mut self) {
        let mut last_renewed = Instant::now();
        loop {
            tokio::time::sleep(self.cfg.retry_period).await;
            match self.try_acquire_or_renew().await {
                Ok(true) => last_renewed = Instant::now(),
                Ok(false) => {
                    tracing::warn!(identity = %self.cfg.identity, lease = %self.cfg.name, "another candidate took the leader Lease; stepping down");
                    return;
                }
                Err(e) => {
                    tracing::warn!(lease = %self.cfg.name, "renewing the leader Lease failed (will retry): {e}")
                }
            }
            if last_renewed.elapsed() > self.cfg.renew_deadline {
                tracing::warn!(
                    identity = %self.cfg.identity,
                    lease = %self.cfg.name,
                    "could not renew the leader Lease within {:?}; stepping down",
                    self.cfg.renew_deadline
                );
                return;
            }
        }
    }
}

impl LeaseLock {
    /// Gives the lease up if this candidate holds it, as client-go's
    /// ReleaseOnCancel: no holder and a one-second duration, so the next
    /// candidate takes it on its next try.
    pub async fn release(&mut self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.cfg.name).await else {
            return;
        };
        let spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.cfg.identity.as_str()) {
            return;
        }
        let now = MicroTime(chrono::Utc::now());
        lease.spec = Some(LeaseSpec {
            holder_identity: None,
            lease_duration_seconds: Some(1),
            acquire_time: Some(now.clone()),
            renew_time: Some(now),
            ..spec
        });
        match self
            .api
            .replace(&self.cfg.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => {
                tracing::info!(lease = %self.cfg.name, identity = %self.cfg.identity, "released the leader Lease")
            }
            Err(e) => {
                tracing::warn!(lease = %self.cfg.name, "could not release the leader Lease: {e}")
            }
        }
    }
}

/// `<hostname>_<random>`, unique per process like client-go's default.
pub fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "orca".to_string());
    format!("{host}_{:016x}", rand::random::<u64>())
}

/// Runs `work` while holding the lease: a fresh `work()` each term (so
/// nothing decided in an earlier term or by another leader meanwhile is
/// trusted), dropped when leadership is lost. Returns, releasing the lease,
/// once `shutdown` resolves, or with `work`'s error.
pub async fn run_elected<E, F, Fut>(
    client: Client,
    cfg: LeaderElectionConfig,
    shutdown: impl Future<Output = ()>,
    mut work: F,
) -> Result<(), E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), E>>,
{
    let mut lock = LeaseLock::new(client, cfg);
    tokio::pin!(shutdown);
    let result = loop {
        tokio::select! {
            _ = &mut shutdown => break Ok(()),
            _ = lock.acquire() => {}
        }
        tokio::select! {
            _ = &mut shutdown => break Ok(()),
            r = work() => break r,
            _ = lock.hold() => {
                tracing::warn!(lease = %lock.cfg.name, "lost leadership; waiting to re-acquire it");
            }
        }
    };
    lock.release().await;
    result
}
