//! Records core/v1 Events as client-go's event recorder does, for every
//! controller: an event naming its object (`involvedObject`), reason and
//! message, from a component (`replicaset-controller`). Failing to record
//! one is logged, never fatal.

use chrono::Utc;
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, PostParams};

#[derive(Clone)]
pub struct Recorder {
    client: kube::Client,
    component: &'static str,
}

impl Recorder {
    pub fn new(client: kube::Client, component: &'static str) -> Recorder {
        Recorder { client, component }
    }

    pub async fn normal(&self, object: &ObjectReference, reason: &str, message: &str) {
        self.record(object, "Normal", reason, message).await;
    }

    pub async fn warning(&self, object: &ObjectReference, reason: &str, message: &str) {
        self.record(object, "Warning", reason, message).await;
    }

    async fn record(&self, object: &ObjectReference, type_: &str, reason: &str, message: &str) {
        let now = Utc::now();
        // Events about cluster-scoped objects live in "default".
        let namespace = object.namespace.clone().unwrap_or_else(|| "default".into());
        let event = Event {
            metadata: ObjectMeta {
                name: Some(format!(
                    "{}.{:x}",
                    object.name.as_deref().unwrap_or_default(),
                    now.timestamp_nanos_opt().unwrap_or_default()
                )),
                namespace: Some(namespace.clone()),
                ..Default::default()
            },
            involved_object: object.clone(),
            type_: Some(type_.into()),
            reason: Some(reason.into()),
            message: Some(message.into()),
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
        if let Err(err) = Api::<Event>::namespaced(self.client.clone(), &namespace)
            .create(&PostParams::default(), &event)
            .await
        {
            tracing::warn!(
                component = self.component,
                reason,
                "could not record an event: {err}"
            );
        }
    }
}
