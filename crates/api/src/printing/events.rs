//! Event rows (`printEvent`): first and last seen, count and source,
//! for core/v1 Events and events.k8s.io/v1 ones (converted first).

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Event;
use serde_json::{json, Value};

use super::{human_duration, name_of};

/// Event cells: LAST SEEN TYPE REASON OBJECT SUBOBJECT SOURCE MESSAGE
/// FIRST SEEN COUNT NAME.
pub fn event_cells(e: &Event, now: DateTime<Utc>) -> Vec<Value> {
    let micro_age = |t: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime>| match t
    {
        Some(t) => human_duration(now - t.0),
        None => "<unknown>".to_string(),
    };
    let first = match &e.first_timestamp {
        Some(t) => human_duration(now - t.0),
        None => micro_age(e.event_time.as_ref()),
    };
    let mut last = match &e.last_timestamp {
        Some(t) => human_duration(now - t.0),
        None => first.clone(),
    };
    let mut count = i64::from(e.count.unwrap_or(0));
    if let Some(series) = &e.series {
        last = micro_age(series.last_observed_time.as_ref());
        count = i64::from(series.count.unwrap_or(0));
    } else if count == 0 {
        count = 1;
    }
    let io = &e.involved_object;
    let kind = io.kind.clone().unwrap_or_default().to_lowercase();
    let target = match io.name.as_deref().filter(|n| !n.is_empty()) {
        Some(n) => format!("{kind}/{n}"),
        None => kind,
    };
    vec![
        json!(last),
        json!(e.type_.clone().unwrap_or_default()),
        json!(e.reason.clone().unwrap_or_default()),
        json!(target),
        json!(io.field_path.clone().unwrap_or_default()),
        json!(event_source(e)),
        json!(e.message.clone().unwrap_or_default().trim()),
        json!(first),
        json!(count),
        json!(name_of(&e.metadata)),
    ]
}

/// `component, host` from the event's source, falling back to the
/// reporting controller and instance.
fn event_source(e: &Event) -> String {
    let (component, host) = match &e.source {
        Some(s) if s.component.as_deref().is_some_and(|c| !c.is_empty()) => (
            s.component.clone().unwrap_or_default(),
            s.host.clone().unwrap_or_default(),
        ),
        _ => (
            e.reporting_component.clone().unwrap_or_default(),
            e.reporting_instance.clone().unwrap_or_default(),
        ),
    };
    if host.is_empty() {
        component
    } else {
        format!("{component}, {host}")
    }
}

#[cfg(test)]
mod tests {
    use crate::printing::tests::at;
    use crate::printing::{cells, columns};
    use serde_json::json;

    #[test]
    fn event_row_and_other_kinds() {
        let now = at(12, 0, 0);
        let ev = json!({
            "metadata": {"name": "ref-crash.1", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "ref-crash", "fieldPath": "spec.containers{main}"},
            "reason": "BackOff", "type": "Warning", "message": "Back-off restarting failed container main  ",
            "source": {"component": "kubelet", "host": "ref-node"},
            "firstTimestamp": "2026-11-28T11:58:00Z", "lastTimestamp": "2026-11-28T11:59:54Z", "count": 4
        });
        let c = cells("Event", &ev, now);
        assert_eq!(
            c,
            vec![
                json!("6s"),
                json!("Warning"),
                json!("BackOff"),
                json!("pod/ref-crash"),
                json!("spec.containers{main}"),
                json!("kubelet, ref-node"),
                json!("Back-off restarting failed container main"),
                json!("2m"),
                json!(4),
                json!("ref-crash.1")
            ]
        );
        let mut v1 = crate::convert::event_core_to_v1(&ev);
        v1.as_object_mut().unwrap().remove("deprecatedSource");
        v1["reportingController"] = json!("kubelet");
        let c1 = cells("Event", &v1, now);
        assert_eq!(c1[3], "pod/ref-crash");
        assert_eq!(c1[5], "kubelet");
        assert_eq!(c1[6], "Back-off restarting failed container main");
        let ns = json!({"metadata": {"name": "default", "creationTimestamp": "2026-11-28T11:00:00Z"}, "status": {"phase": "Active"}});
        assert_eq!(
            cells("Namespace", &ns, now),
            vec![json!("default"), json!("Active"), json!("60m")]
        );
        let cm = json!({"metadata": {"name": "c", "creationTimestamp": "2026-11-28T11:59:00Z"}, "data": {"a": "1", "b": "2"}});
        assert_eq!(
            cells("ConfigMap", &cm, now),
            vec![json!("c"), json!(2), json!("60s")]
        );
        let other = json!({"metadata": {"name": "x", "creationTimestamp": "2026-11-28T11:59:00Z"}});
        assert_eq!(
            cells("Widget", &other, now),
            vec![json!("x"), json!("2026-11-28T11:59:00Z")]
        );
        assert_eq!(columns("Widget")[1]["type"], "date");
    }
}
