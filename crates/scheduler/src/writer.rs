//! Writes that report scheduling outcomes (events and the PodScheduled
//! condition). They run off the scheduling loop with bounded concurrency so
//! that a burst of decisions never waits on them.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::channel::mpsc::UnboundedReceiver;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Event, EventSeries, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

/// Repeats of the same FailedScheduling note within this window become a
/// series count on one Event, as client-go's events recorder does.
const SERIES_WINDOW: Duration = Duration::from_secs(6 * 60);
/// Prune series bookkeeping of pods that went away once it grows this big.
const SERIES_PRUNE_AT: usize = 4096;

/// The pod an outcome is about.
#[derive(Clone, Debug)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub resource_version: Option<String>,
}

impl PodRef {
    pub fn of(pod: &Pod) -> PodRef {
        PodRef {
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            resource_version: pod.metadata.resource_version.clone(),
        }
    }
}

#[derive(Debug)]
pub enum Write {
    Scheduled {
        pod: PodRef,
        node: String,
    },
    FailedScheduling {
        pod: PodRef,
        message: String,
        /// `Some(lastTransitionTime)` when the PodScheduled condition must
        /// be (re)written; `None` when it already says exactly this.
        condition: Option<Time>,
    },
}

struct Series {
    event_name: String,
    message: String,
    count: i32,
    first: Instant,
}

pub struct Writer {
    client: Client,
    component: String,
    instance: String,
    series: Mutex<HashMap<String, Series>>,
}

impl Writer {
    pub fn new(client: Client, component: &str, instance: &str) -> Writer {
        Writer {
            client,
            component: component.to_string(),
            instance: instance.to_string(),
            series: Mutex::new(HashMap::new()),
        }
    }

    pub async fn run(&self, rx: UnboundedReceiver<Write>, parallelism: usize) {
        rx.for_each_concurrent(parallelism, |w| self.write(w)).await;
    }

    async fn write(&self, w: Write) {
        match w {
            Write::Scheduled { pod, node } => {
                self.series_lock().remove(&pod.uid);
                let msg = format!(
                    "Successfully assigned {}/{} to {}",
                    pod.namespace, pod.name, node
                );
                self.event(&pod, "Normal", "Scheduled", "Binding", &msg)
                    .await;
            }
            Write::FailedScheduling {
                pod,
                message,
                condition,
            } => {
                if let Some(transition) = condition {
                    self.patch_condition(&pod, &message, transition).await;
                }
                self.failed_event(&pod, &message).await;
            }
        }
    }

    fn series_lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Series>> {
        // A panic elsewhere while holding this lock leaves plain bookkeeping
        // behind; keep using it.
        self.series.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn patch_condition(&self, pod: &PodRef, message: &str, transition: Time) {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &pod.namespace);
        let patch = json!({
            "status": {
                "conditions": [{
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": message,
                    "lastProbeTime": null,
                    "lastTransitionTime": transition,
                }]
            }
        });
        if let Err(e) = api
            .patch_status(&pod.name, &PatchParams::default(), &Patch::Strategic(patch))
            .await
        {
            tracing::warn!(pod = %format!("{}/{}", pod.namespace, pod.name), "could not set PodScheduled=False on the pod: {e}");
        }
    }

    async fn failed_event(&self, pod: &PodRef, message: &str) {
        let repeat = {
            let mut series = self.series_lock();
            match series.get_mut(&pod.uid) {
                Some(s) if s.message == message && s.first.elapsed() < SERIES_WINDOW => {
                    s.count += 1;
                    Some((s.event_name.clone(), s.count))
                }
                _ => None,
            }
        };
        if let Some((name, count)) = repeat {
            let api: Api<Event> = Api::namespaced(self.client.clone(), &pod.namespace);
            let patch = json!({"series": EventSeries {
                count: Some(count),
                last_observed_time: Some(MicroTime(chrono::Utc::now())),
            }});
            match api
                .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                .await
            {
                Ok(_) => return,
                // The event expired or was deleted: start a new one.
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => {
                    tracing::warn!(event = %name, "could not update the FailedScheduling event series: {e}");
                    return;
                }
            }
        }
        if let Some(name) = self
            .event(pod, "Warning", "FailedScheduling", "Scheduling", message)
            .await
        {
            let mut series = self.series_lock();
            if series.len() >= SERIES_PRUNE_AT {
                series.retain(|_, s| s.first.elapsed() < SERIES_WINDOW);
            }
            series.insert(
                pod.uid.clone(),
                Series {
                    event_name: name,
                    message: message.to_string(),
                    count: 1,
                    first: Instant::now(),
                },
            );
        }
    }

    /// Creates a core/v1 Event shaped like the ones kube-scheduler writes
    /// through events.k8s.io/v1 (eventTime, action, reporting controller).
    async fn event(
        &self,
        pod: &PodRef,
        type_: &str,
        reason: &str,
        action: &str,
        message: &str,
    ) -> Option<String> {
        let now = chrono::Utc::now();
        let name = format!(
            "{}.{:x}",
            pod.name,
            now.timestamp_nanos_opt().unwrap_or_default()
        );
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(pod.namespace.clone()),
                ..Default::default()
            },
            involved_object: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(pod.name.clone()),
                namespace: Some(pod.namespace.clone()),
                uid: Some(pod.uid.clone()),
                resource_version: pod.resource_version.clone(),
                ..Default::default()
            },
            type_: Some(type_.into()),
            reason: Some(reason.into()),
            action: Some(action.into()),
            message: Some(message.into()),
            event_time: Some(MicroTime(now)),
            reporting_component: Some(self.component.clone()),
            reporting_instance: Some(self.instance.clone()),
            source: Some(EventSource {
                component: Some(self.component.clone()),
                host: None,
            }),
            ..Default::default()
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &pod.namespace);
        match api.create(&PostParams::default(), &event).await {
            Ok(_) => Some(name),
            Err(e) => {
                tracing::warn!(pod = %format!("{}/{}", pod.namespace, pod.name), reason, "could not record event: {e}");
                None
            }
        }
    }
}
