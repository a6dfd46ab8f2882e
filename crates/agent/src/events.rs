//! Events about pods and the node, as the kubelet's recorder writes them (core/v1,
//! source kubelet/<node>), with identical events folded into one whose
//! count grows. Workers never wait for the API: events go through a channel.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use chrono::Utc;
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use tokio::sync::mpsc;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Type {
    Normal,
    Warning,
}

impl Type {
    fn as_str(self) -> &'static str {
        match self {
            Type::Normal => "Normal",
            Type::Warning => "Warning",
        }
    }
}

#[derive(Debug)]
struct Record {
    object: ObjectReference,
    type_: Type,
    reason: String,
    message: String,
}

/// Cheap to clone; hands events to the writer task.
#[derive(Clone, Debug)]
pub struct Recorder {
    tx: mpsc::UnboundedSender<Record>,
}

/// `spec.containers{main}` / `spec.initContainers{init}`.
pub fn field_path(init: bool, container: &str) -> String {
    if init {
        format!("spec.initContainers{{{container}}}")
    } else {
        format!("spec.containers{{{container}}}")
    }
}

impl Recorder {
    /// Starts the writer task.
    pub fn start(client: kube::Client, node: String) -> Recorder {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(writer(client, node, rx));
        Recorder { tx }
    }

    /// Records an event about `pod`, about one of its containers when
    /// `field_path` is given.
    pub fn pod(
        &self,
        pod: &Pod,
        field_path: Option<String>,
        type_: Type,
        reason: &str,
        message: impl Into<String>,
    ) {
        let object = ObjectReference {
            kind: Some("Pod".into()),
            api_version: Some("v1".into()),
            namespace: pod.metadata.namespace.clone(),
            name: pod.metadata.name.clone(),
            uid: pod.metadata.uid.clone(),
            resource_version: pod.metadata.resource_version.clone(),
            field_path,
        };
        let _ = self.tx.send(Record {
            object,
            type_,
            reason: reason.to_string(),
            message: message.into(),
        });
    }
}

impl Recorder {
    /// Records an event about the Node `name` (stored in `default`, as the
    /// kubelet's node events are).
    pub fn node(&self, name: &str, type_: Type, reason: &str, message: impl Into<String>) {
        let object = ObjectReference {
            kind: Some("Node".into()),
            name: Some(name.to_string()),
            // The kubelet's node reference carries the node's name as uid.
            uid: Some(name.to_string()),
            ..Default::default()
        };
        let _ = self.tx.send(Record {
            object,
            type_,
            reason: reason.to_string(),
            message: message.into(),
        });
    }
}

#[derive(Hash, PartialEq, Eq)]
struct Key {
    uid: String,
    field_path: String,
    type_: Type,
    reason: String,
    message: String,
}

struct Seen {
    namespace: String,
    name: String,
    count: i32,
    at: SystemTime,
}

/// Events identical to one recorded within this window are folded into it.
const FOLD_WINDOW: Duration = Duration::from_secs(600);

async fn writer(client: kube::Client, node: String, mut rx: mpsc::UnboundedReceiver<Record>) {
    let mut seen: HashMap<Key, Seen> = HashMap::new();
    while let Some(r) = rx.recv().await {
        let now = SystemTime::now();
        seen.retain(|_, s| now.duration_since(s.at).unwrap_or_default() < FOLD_WINDOW);
        let namespace = r
            .object
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let key = Key {
            uid: r.object.uid.clone().unwrap_or_default(),
            field_path: r.object.field_path.clone().unwrap_or_default(),
            type_: r.type_,
            reason: r.reason.clone(),
            message: r.message.clone(),
        };
        let api: Api<Event> = Api::namespaced(client.clone(), &namespace);
        let ts = Time(Utc::now());
        if let Some(s) = seen.get_mut(&key) {
            let patch = serde_json::json!({"count": s.count + 1, "lastTimestamp": ts});
            match api
                .patch(&s.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    s.count += 1;
                    s.at = now;
                    continue;
                }
                Err(e) => {
                    tracing::debug!(event = %s.name, namespace = %s.namespace, "folding into the event failed ({e}); writing a new one");
                }
            }
        }
        let name = format!(
            "{}.{:x}",
            r.object.name.clone().unwrap_or_default(),
            now.duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos()
        );
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.clone()),
                ..Default::default()
            },
            involved_object: r.object,
            reason: Some(r.reason),
            message: Some(r.message),
            type_: Some(r.type_.as_str().into()),
            count: Some(1),
            first_timestamp: Some(ts.clone()),
            last_timestamp: Some(ts),
            source: Some(EventSource {
                component: Some("kubelet".into()),
                host: Some(node.clone()),
            }),
            reporting_component: Some("kubelet".into()),
            reporting_instance: Some(node.clone()),
            ..Default::default()
        };
        match api.create(&PostParams::default(), &event).await {
            Ok(_) => {
                seen.insert(
                    key,
                    Seen {
                        namespace,
                        name,
                        count: 1,
                        at: now,
                    },
                );
            }
            Err(e) => tracing::warn!(namespace = %namespace, "could not write event {name}: {e}"),
        }
    }
}
