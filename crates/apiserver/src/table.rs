//! Server-side Table output (meta.k8s.io/v1 Table), which kubectl renders for
//! `get`.
//!
//! MINIMAL STAND-IN: `orca_api::printing` owns the column logic (the pod
//! STATUS column especially); until it lands this module carries a compact
//! version so `kubectl get` works, and should then only delegate.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::resources::ResourceDef;

fn col(name: &str, ty: &str, priority: u8, desc: &str) -> Value {
    json!({"name": name, "type": ty, "format": if name == "Name" { "name" } else { "" }, "description": desc, "priority": priority})
}

const NAME_DESC: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
const AGE_DESC: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

fn parse_time(v: &Value) -> Option<DateTime<Utc>> {
    v.as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|d| d.with_timezone(&Utc))
}

/// Kubernetes' `duration.HumanDuration`.
pub fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    let secs = secs.max(0);
    if secs < 120 {
        return format!("{secs}s");
    }
    let minutes = secs / 60;
    if minutes < 10 {
        let s = secs % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let (d, h) = (hours / 24, hours % 24);
        return if h == 0 {
            format!("{d}d")
        } else {
            format!("{d}d{h}h")
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    let years = hours / (24 * 365);
    if hours < 24 * 365 * 8 {
        let d = (hours / 24) % 365;
        return if d == 0 {
            format!("{years}y")
        } else {
            format!("{years}y{d}d")
        };
    }
    format!("{years}y")
}

fn age(v: &Value) -> String {
    match parse_time(v) {
        Some(t) => human_duration((Utc::now() - t).num_seconds()),
        None => "<unknown>".into(),
    }
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

fn none_if_empty(x: &str) -> String {
    if x.is_empty() {
        "<none>".into()
    } else {
        x.to_string()
    }
}

fn pod_row(p: &Value) -> Vec<Value> {
    let st = &p["status"];
    let total = p["spec"]["containers"].as_array().map_or(0, Vec::len);
    let mut ready = 0;
    let mut restarts = 0i64;
    let mut last_restart: Option<DateTime<Utc>> = None;
    let mut reason = if s(&st["reason"]).is_empty() {
        s(&st["phase"]).to_string()
    } else {
        s(&st["reason"]).to_string()
    };
    let empty = vec![];
    let inits = st["initContainerStatuses"].as_array().unwrap_or(&empty);
    let n_init = p["spec"]["initContainers"].as_array().map_or(0, Vec::len);
    let mut initializing = false;
    for (i, c) in inits.iter().enumerate() {
        restarts += c["restartCount"].as_i64().unwrap_or(0);
        if let Some(t) = parse_time(&c["lastState"]["terminated"]["finishedAt"]) {
            last_restart = last_restart.max(Some(t));
        }
        let term = &c["state"]["terminated"];
        let wait = &c["state"]["waiting"];
        if term.is_object() && term["exitCode"].as_i64() == Some(0) {
            continue;
        }
        if c["started"].as_bool() == Some(true)
            && p["spec"]["initContainers"][i]["restartPolicy"] == "Always"
        {
            continue;
        }
        if term.is_object() {
            reason = if s(&term["reason"]).is_empty() {
                if term["signal"].as_i64().unwrap_or(0) != 0 {
                    format!("Init:Signal:{}", term["signal"])
                } else {
                    format!("Init:ExitCode:{}", term["exitCode"])
                }
            } else {
                format!("Init:{}", s(&term["reason"]))
            };
        } else if wait.is_object()
            && !s(&wait["reason"]).is_empty()
            && s(&wait["reason"]) != "PodInitializing"
        {
            reason = format!("Init:{}", s(&wait["reason"]));
        } else {
            reason = format!("Init:{i}/{n_init}");
        }
        initializing = true;
        break;
    }
    if !initializing {
        restarts = 0;
        let mut has_running = false;
        let cs = st["containerStatuses"].as_array().unwrap_or(&empty);
        for c in cs.iter().rev() {
            restarts += c["restartCount"].as_i64().unwrap_or(0);
            if let Some(t) = parse_time(&c["lastState"]["terminated"]["finishedAt"]) {
                last_restart = last_restart.max(Some(t));
            }
            let term = &c["state"]["terminated"];
            let wait = &c["state"]["waiting"];
            if wait.is_object() && !s(&wait["reason"]).is_empty() {
                reason = s(&wait["reason"]).to_string();
            } else if term.is_object() && !s(&term["reason"]).is_empty() {
                reason = s(&term["reason"]).to_string();
            } else if term.is_object() {
                reason = if term["signal"].as_i64().unwrap_or(0) != 0 {
                    format!("Signal:{}", term["signal"])
                } else {
                    format!("ExitCode:{}", term["exitCode"])
                };
            } else if c["ready"].as_bool() == Some(true) && c["state"]["running"].is_object() {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            let ready_cond = st["conditions"]
                .as_array()
                .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
                .is_some_and(|c| c["status"] == "True");
            reason = if ready_cond { "Running" } else { "NotReady" }.into();
        }
    }
    if !p["metadata"]["deletionTimestamp"].is_null() {
        reason = if s(&st["reason"]) == "NodeLost" {
            "Unknown".into()
        } else {
            "Terminating".into()
        };
    }
    let restarts_str = match last_restart {
        Some(t) if restarts > 0 => format!(
            "{restarts} ({} ago)",
            human_duration((Utc::now() - t).num_seconds())
        ),
        _ => restarts.to_string(),
    };
    let gates = p["spec"]["readinessGates"].as_array().map(|g| {
        let conds = st["conditions"].as_array().cloned().unwrap_or_default();
        let ok = g
            .iter()
            .filter(|g| {
                conds
                    .iter()
                    .any(|c| c["type"] == g["conditionType"] && c["status"] == "True")
            })
            .count();
        format!("{ok}/{}", g.len())
    });
    vec![
        json!(s(&p["metadata"]["name"])),
        json!(format!("{ready}/{total}")),
        json!(reason),
        json!(restarts_str),
        json!(age(&p["metadata"]["creationTimestamp"])),
        json!(none_if_empty(s(&st["podIP"]))),
        json!(none_if_empty(s(&p["spec"]["nodeName"]))),
        json!(none_if_empty(s(&st["nominatedNodeName"]))),
        json!(gates.unwrap_or_else(|| "<none>".into())),
    ]
}

fn node_row(n: &Value) -> Vec<Value> {
    let conds = n["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut status = match conds.iter().find(|c| c["type"] == "Ready") {
        Some(c) if c["status"] == "True" => "Ready".to_string(),
        Some(_) => "NotReady".to_string(),
        None => "Unknown".to_string(),
    };
    if n["spec"]["unschedulable"].as_bool() == Some(true) {
        status.push_str(",SchedulingDisabled");
    }
    let mut roles: Vec<String> = n["metadata"]["labels"]
        .as_object()
        .map(|l| {
            l.keys()
                .filter_map(|k| {
                    k.strip_prefix("node-role.kubernetes.io/")
                        .map(str::to_string)
                })
                .filter(|r| !r.is_empty())
                .collect()
        })
        .unwrap_or_default();
    roles.sort();
    let addr = |t: &str| {
        n["status"]["addresses"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["type"] == t))
            .map(|x| s(&x["address"]).to_string())
            .unwrap_or_else(|| "<none>".into())
    };
    let info = &n["status"]["nodeInfo"];
    vec![
        json!(s(&n["metadata"]["name"])),
        json!(status),
        json!(if roles.is_empty() {
            "<none>".into()
        } else {
            roles.join(",")
        }),
        json!(age(&n["metadata"]["creationTimestamp"])),
        json!(s(&info["kubeletVersion"])),
        json!(addr("InternalIP")),
        json!(addr("ExternalIP")),
        json!(none_if_empty(s(&info["osImage"]))),
        json!(none_if_empty(s(&info["kernelVersion"]))),
        json!(none_if_empty(s(&info["containerRuntimeVersion"]))),
    ]
}

fn event_row(e: &Value) -> Vec<Value> {
    let last = [
        &e["series"]["lastObservedTime"],
        &e["lastTimestamp"],
        &e["eventTime"],
        &e["metadata"]["creationTimestamp"],
    ]
    .into_iter()
    .find(|v| parse_time(v).is_some())
    .map(age)
    .unwrap_or_else(|| "<unknown>".into());
    let obj = &e["involvedObject"];
    let kind = s(&obj["kind"]).to_lowercase();
    vec![
        json!(last),
        json!(s(&e["type"])),
        json!(s(&e["reason"])),
        json!(format!("{kind}/{}", s(&obj["name"]))),
        json!(s(&e["message"])),
    ]
}

fn columns(def: &ResourceDef) -> Vec<Value> {
    match def.kind {
        "Pod" => vec![
            col("Name", "string", 0, NAME_DESC),
            col("Ready", "string", 0, "The aggregate readiness state of this pod for accepting traffic."),
            col("Status", "string", 0, "The aggregate status of the containers in this pod."),
            col("Restarts", "string", 0, "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted."),
            col("Age", "string", 0, AGE_DESC),
            col("IP", "string", 1, "IP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated."),
            col("Node", "string", 1, "NodeName is a request to schedule this pod onto a specific node."),
            col("Nominated Node", "string", 1, "nominatedNodeName is set only when this pod preempts other pods on the node."),
            col("Readiness Gates", "string", 1, "If specified, all readiness gates will be evaluated for pod readiness."),
        ],
        "Node" => vec![
            col("Name", "string", 0, NAME_DESC),
            col("Status", "string", 0, "The status of the node"),
            col("Roles", "string", 0, "The roles of the node"),
            col("Age", "string", 0, AGE_DESC),
            col("Version", "string", 0, "Kubelet Version reported by the node."),
            col("Internal-IP", "string", 1, "List of addresses reachable to the node."),
            col("External-IP", "string", 1, "List of addresses reachable to the node."),
            col("OS-Image", "string", 1, "OS Image reported by the node from /etc/os-release."),
            col("Kernel-Version", "string", 1, "Kernel Version reported by the node."),
            col("Container-Runtime", "string", 1, "ContainerRuntime Version reported by the node."),
        ],
        "Namespace" => vec![
            col("Name", "string", 0, NAME_DESC),
            col("Status", "string", 0, "The status of the namespace"),
            col("Age", "string", 0, AGE_DESC),
        ],
        "Event" => vec![
            col("Last Seen", "string", 0, "Time of the last occurrence"),
            col("Type", "string", 0, "Type of this event (Normal, Warning)"),
            col("Reason", "string", 0, "Why the action was taken."),
            col("Object", "string", 0, "The object this event is about."),
            col("Message", "string", 0, "A human-readable description of the status of this operation."),
        ],
        _ => vec![col("Name", "string", 0, NAME_DESC), col("Age", "string", 0, AGE_DESC)],
    }
}

fn cells(def: &ResourceDef, o: &Value) -> Vec<Value> {
    match def.kind {
        "Pod" => pod_row(o),
        "Node" => node_row(o),
        "Namespace" => vec![
            json!(s(&o["metadata"]["name"])),
            json!(s(&o["status"]["phase"])),
            json!(age(&o["metadata"]["creationTimestamp"])),
        ],
        "Event" => event_row(o),
        _ => vec![
            json!(s(&o["metadata"]["name"])),
            json!(age(&o["metadata"]["creationTimestamp"])),
        ],
    }
}

/// A Table of `objs`; `include` is the includeObject parameter
/// (None, Metadata or Object).
pub fn table(def: &ResourceDef, objs: &[Value], include: &str) -> Value {
    let rows: Vec<Value> = objs
        .iter()
        .map(|o| {
            let mut row = json!({"cells": cells(def, o)});
            match include {
                "None" => {}
                "Object" => row["object"] = o.clone(),
                _ => {
                    row["object"] = json!({
                        "kind": "PartialObjectMetadata",
                        "apiVersion": "meta.k8s.io/v1",
                        "metadata": o["metadata"],
                    })
                }
            }
            row
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {},
        "columnDefinitions": columns(def),
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::human_duration;

    #[test]
    fn durations_read_like_kubectl() {
        assert_eq!(human_duration(75), "75s");
        assert_eq!(human_duration(150), "2m30s");
        assert_eq!(human_duration(3 * 3600 + 4 * 60), "3h4m");
        assert_eq!(human_duration(600), "10m");
    }
}
