//! Conversions between API versions that share storage: `events.k8s.io/v1`
//! Events are core/v1 Events with renamed fields, and Kubernetes serves one
//! stored object under both.

use serde_json::{Map, Value};

/// (events.k8s.io/v1 field, core/v1 field) pairs that differ in name.
const EVENT_RENAMES: [(&str, &str); 7] = [
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
    ("reportingController", "reportingComponent"),
];

fn rename(obj: &Value, api_version: &str, to_core: bool) -> Value {
    let Value::Object(src) = obj else {
        return obj.clone();
    };
    let mut out = Map::new();
    for (k, v) in src {
        let renamed = EVENT_RENAMES.iter().find_map(|(ev1, core)| {
            if to_core {
                (k == ev1).then_some(*core)
            } else {
                (k == core).then_some(*ev1)
            }
        });
        out.insert(renamed.unwrap_or(k).to_string(), v.clone());
    }
    out.insert("apiVersion".into(), Value::String(api_version.into()));
    out.insert("kind".into(), Value::String("Event".into()));
    Value::Object(out)
}

/// An `events.k8s.io/v1` Event as a core/v1 Event.
pub fn event_v1_to_core(ev: &Value) -> Value {
    rename(ev, "v1", true)
}

/// A core/v1 Event as an `events.k8s.io/v1` Event.
pub fn event_core_to_v1(ev: &Value) -> Value {
    rename(ev, "events.k8s.io/v1", false)
}

/// Whether this JSON is an `events.k8s.io` Event rather than a core one.
pub fn is_events_v1(ev: &Value) -> bool {
    ev.get("apiVersion")
        .and_then(Value::as_str)
        .is_some_and(|v| v.starts_with("events.k8s.io/"))
        || ev.get("regarding").is_some()
        || ev.get("note").is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trip() {
        let v1 = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "e"}, "regarding": {"kind": "Pod", "name": "p"},
            "note": "Started container", "reason": "Started", "type": "Normal",
            "reportingController": "kubelet", "reportingInstance": "n1",
            "deprecatedCount": 2, "eventTime": "2026-11-28T10:00:00.000000Z"});
        let core = event_v1_to_core(&v1);
        assert_eq!(core["apiVersion"], "v1");
        assert_eq!(core["involvedObject"]["name"], "p");
        assert_eq!(core["message"], "Started container");
        assert_eq!(core["reportingComponent"], "kubelet");
        assert_eq!(core["count"], 2);
        assert!(core.get("regarding").is_none());
        assert!(is_events_v1(&v1));
        assert!(!is_events_v1(&core));
        assert_eq!(event_core_to_v1(&core), v1);
    }
}
