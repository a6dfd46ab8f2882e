//! Records core/v1 Events as client-go's event recorder does, for every
//! controller: an event naming its object (`involvedObject`), reason and
//! message, from a component (`replicaset-controller`), passed through
//! client-go's correlator:
//! - a spam filter: 25 events per object and component, then one per five
//!   minutes (a 10,000-replica ReplicaSet does not write 10,000 events);
//! - aggregation: the 10th event within ten minutes with the same object,
//!   type and reason but a new message becomes `(combined from similar
//!   events): <message>`, and later ones count on it;
//! - deduplication: an identical event bumps the count of the one written
//!   before instead of writing another.
//!
//! Failing to record one is logged, never fatal.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};

const SPAM_BURST: f64 = 25.0;
const SPAM_REFILL: Duration = Duration::from_secs(300);
const AGGREGATE_AFTER: usize = 10;
const AGGREGATE_WINDOW: Duration = Duration::from_secs(600);
/// Keys remembered before the oldest memories are dropped.
const MEMORY: usize = 4096;

#[derive(Default)]
struct Correlator {
    /// Tokens per object, and when they were counted.
    spam: HashMap<String, (f64, Instant)>,
    /// Messages seen per (object, type, reason), and when last.
    similar: HashMap<String, (HashSet<String>, Instant)>,
    /// Events written, by key: their name and count.
    written: HashMap<String, (String, i32)>,
}

/// What to do with an event.
enum Decision {
    Drop,
    Create {
        key: String,
        message: String,
    },
    Bump {
        name: String,
        count: i32,
        message: String,
    },
}

impl Correlator {
    fn decide(&mut self, object_key: &str, type_: &str, reason: &str, message: &str) -> Decision {
        let now = Instant::now();
        if self.spam.len() > MEMORY || self.similar.len() > MEMORY || self.written.len() > MEMORY {
            *self = Correlator::default();
        }
        let (tokens, at) = self
            .spam
            .entry(object_key.to_string())
            .or_insert((SPAM_BURST, now));
        let refill = now.duration_since(*at).as_secs_f64() / SPAM_REFILL.as_secs_f64();
        *tokens = (*tokens + refill).min(SPAM_BURST);
        *at = now;
        if *tokens < 1.0 {
            return Decision::Drop;
        }
        *tokens -= 1.0;

        let similar_key = format!("{object_key}\0{type_}\0{reason}");
        let (messages, last) = self
            .similar
            .entry(similar_key.clone())
            .or_insert_with(|| (HashSet::new(), now));
        if now.duration_since(*last) > AGGREGATE_WINDOW {
            messages.clear();
        }
        *last = now;
        messages.insert(message.to_string());
        let (key, message) = if messages.len() < AGGREGATE_AFTER {
            (format!("{similar_key}\0{message}"), message.to_string())
        } else {
            (
                similar_key,
                format!("(combined from similar events): {message}"),
            )
        };
        match self.written.get_mut(&key) {
            Some((name, count)) => {
                *count += 1;
                Decision::Bump {
                    name: name.clone(),
                    count: *count,
                    message,
                }
            }
            None => Decision::Create { key, message },
        }
    }
}

#[derive(Clone)]
pub struct Recorder {
    client: kube::Client,
    component: &'static str,
    state: Arc<Mutex<Correlator>>,
}

impl Recorder {
    pub fn new(client: kube::Client, component: &'static str) -> Recorder {
        Recorder {
            client,
            component,
            state: Arc::default(),
        }
    }

    pub async fn normal(&self, object: &ObjectReference, reason: &str, message: &str) {
        self.record(object, "Normal", reason, message).await;
    }

    pub async fn warning(&self, object: &ObjectReference, reason: &str, message: &str) {
        self.record(object, "Warning", reason, message).await;
    }

    async fn record(&self, object: &ObjectReference, type_: &str, reason: &str, message: &str) {
        let object_key = format!(
            "{}\0{}\0{}\0{}\0{}",
            object.kind.as_deref().unwrap_or_default(),
            object.namespace.as_deref().unwrap_or_default(),
            object.name.as_deref().unwrap_or_default(),
            object.uid.as_deref().unwrap_or_default(),
            object.api_version.as_deref().unwrap_or_default(),
        );
        let decision = self.state.lock().unwrap_or_else(|p| p.into_inner()).decide(
            &object_key,
            type_,
            reason,
            message,
        );
        // Events about cluster-scoped objects live in "default".
        let namespace = object.namespace.clone().unwrap_or_else(|| "default".into());
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        let now = Utc::now();
        let result = match decision {
            Decision::Drop => return,
            Decision::Bump {
                name,
                count,
                message,
            } => {
                let patch = serde_json::json!({"count": count, "lastTimestamp": Time(now), "message": message});
                api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map(|_| ())
            }
            Decision::Create { key, message } => {
                let name = format!(
                    "{}.{:x}",
                    object.name.as_deref().unwrap_or_default(),
                    now.timestamp_nanos_opt().unwrap_or_default()
                );
                let event = Event {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        namespace: Some(namespace.clone()),
                        ..Default::default()
                    },
                    involved_object: object.clone(),
                    type_: Some(type_.into()),
                    reason: Some(reason.into()),
                    message: Some(message),
                    first_timestamp: Some(Time(now)),
                    last_timestamp: Some(Time(now)),
                    count: Some(1),
                    source: Some(EventSource {
                        component: Some(self.component.into()),
                        host: None,
                    }),
                    reporting_component: Some(self.component.into()),
                    reporting_instance: Some(self.component.into()),
                    ..Default::default()
                };
                let r = api.create(&PostParams::default(), &event).await;
                if r.is_ok() {
                    self.state
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .written
                        .insert(key, (name, 1));
                }
                r.map(|_| ())
            }
        };
        if let Err(err) = result {
            tracing::warn!(
                component = self.component,
                reason,
                "could not record an event: {err}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tenth_similar_message_is_combined_and_later_ones_count_on_it() {
        let mut c = Correlator::default();
        for i in 0..9 {
            assert!(matches!(
                c.decide("d", "Normal", "ScalingReplicaSet", &format!("m{i}")),
                Decision::Create { .. }
            ));
        }
        match c.decide("d", "Normal", "ScalingReplicaSet", "m9") {
            Decision::Create { key, message } => {
                assert_eq!(message, "(combined from similar events): m9");
                c.written.insert(key, ("ev".into(), 1));
            }
            _ => panic!("the 10th is written"),
        }
        match c.decide("d", "Normal", "ScalingReplicaSet", "m10") {
            Decision::Bump {
                name,
                count,
                message,
            } => {
                assert_eq!((name.as_str(), count), ("ev", 2));
                assert_eq!(message, "(combined from similar events): m10");
            }
            _ => panic!("later ones count on the combined event"),
        }
    }

    #[test]
    fn an_object_gets_25_events_then_waits() {
        let mut c = Correlator::default();
        let written = (0..100)
            .filter(|i| {
                !matches!(
                    c.decide("rs", "Normal", "SuccessfulCreate", &format!("p{i}")),
                    Decision::Drop
                )
            })
            .count();
        assert_eq!(written, 25);
    }
}
