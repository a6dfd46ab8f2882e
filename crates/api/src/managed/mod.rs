//! Field ownership (`metadata.managedFields`) and server-side apply, as
//! kube-apiserver's field manager (k8s.io/apimachinery's
//! `util/managedfields` over sigs.k8s.io/structured-merge-diff) keeps them:
//! every write records, per manager, the fields it set; an apply merges a
//! configuration, removes what its manager stopped applying and refuses to
//! change fields another manager owns unless forced.

mod walk;

use serde_json::{json, Map, Value};

use crate::fieldpath::{fields, path_string, Path, Set};
pub use walk::{compare, field_set, merge, remove, Comparison};

pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Apply,
    Update,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Self::Apply => "Apply",
            Self::Update => "Update",
        }
    }
}

/// One `managedFields` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub manager: String,
    pub operation: Operation,
    pub api_version: String,
    pub subresource: String,
    pub time: Option<String>,
    pub fields: Set,
}

/// Who writes: the manager name, the API version written and the
/// subresource ("" for the main resource).
#[derive(Debug, Clone, Copy)]
pub struct Writer<'a> {
    pub manager: &'a str,
    pub api_version: &'a str,
    pub subresource: &'a str,
}

impl Entry {
    /// Whether this is `who`'s entry for `op` (Kubernetes' manager
    /// identifier: an applier is the same manager whatever the version).
    fn is(&self, who: &Writer<'_>, op: Operation) -> bool {
        self.manager == who.manager
            && self.operation == op
            && self.subresource == who.subresource
            && (op == Operation::Apply || self.api_version == who.api_version)
    }

    /// How conflicts name the manager (apimachinery's `printManager`).
    fn printed(&self) -> String {
        let mut s = format!("{:?}", self.manager);
        if !self.subresource.is_empty() {
            s.push_str(&format!(" with subresource {:?}", self.subresource));
        }
        if self.operation == Operation::Update {
            s.push_str(&format!(" using {}", self.api_version));
        }
        s
    }

    fn sort_key(&self) -> (&'static str, &str, &str, &str, &str) {
        (
            self.operation.as_str(),
            self.time.as_deref().unwrap_or(""),
            &self.manager,
            &self.api_version,
            &self.subresource,
        )
    }
}

/// The managed fields of an object.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Managed {
    pub entries: Vec<Entry>,
}

impl Managed {
    /// Reads `metadata.managedFields` (absent or null is none).
    pub fn decode(v: Option<&Value>) -> Result<Managed, String> {
        let list = match v {
            None | Some(Value::Null) => return Ok(Managed::default()),
            Some(Value::Array(a)) => a,
            Some(_) => return Err("managedFields must be a list".into()),
        };
        let mut entries = Vec::with_capacity(list.len());
        for (i, e) in list.iter().enumerate() {
            let s = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            let operation = match e.get("operation").and_then(Value::as_str) {
                Some("Apply") => Operation::Apply,
                Some("Update") => Operation::Update,
                other => {
                    return Err(format!(
                        "managedFields[{i}].operation: must be `Apply` or `Update`, not {other:?}"
                    ))
                }
            };
            let fields = match e.get("fieldsV1") {
                None | Some(Value::Null) => Set::new(),
                Some(f) => {
                    Set::from_fields_v1(f).map_err(|m| format!("managedFields[{i}]: {m}"))?
                }
            };
            entries.push(Entry {
                manager: s("manager"),
                operation,
                api_version: s("apiVersion"),
                subresource: s("subresource"),
                time: e.get("time").and_then(Value::as_str).map(str::to_string),
                fields,
            });
        }
        Ok(Managed { entries })
    }

    /// The `metadata.managedFields` list, in Kubernetes' order (appliers
    /// first, then by time, manager, version, subresource); entries that
    /// own nothing are left out.
    pub fn encode(&self) -> Value {
        let mut entries: Vec<&Entry> = self
            .entries
            .iter()
            .filter(|e| !e.fields.is_empty())
            .collect();
        entries.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
        Value::Array(
            entries
                .into_iter()
                .map(|e| {
                    let mut m = Map::new();
                    m.insert("apiVersion".into(), json!(e.api_version));
                    m.insert("fieldsType".into(), json!("FieldsV1"));
                    m.insert("fieldsV1".into(), e.fields.to_fields_v1());
                    m.insert("manager".into(), json!(e.manager));
                    m.insert("operation".into(), json!(e.operation.as_str()));
                    if !e.subresource.is_empty() {
                        m.insert("subresource".into(), json!(e.subresource));
                    }
                    if let Some(t) = &e.time {
                        m.insert("time".into(), json!(t));
                    }
                    Value::Object(m)
                })
                .collect(),
        )
    }

    pub fn is_empty(&self) -> bool {
        self.entries.iter().all(|e| e.fields.is_empty())
    }

    fn entry_mut(&mut self, who: &Writer<'_>, op: Operation) -> &mut Entry {
        let i = match self.entries.iter().position(|e| e.is(who, op)) {
            Some(i) => i,
            None => {
                self.entries.push(Entry {
                    manager: who.manager.to_string(),
                    operation: op,
                    api_version: who.api_version.to_string(),
                    subresource: who.subresource.to_string(),
                    time: None,
                    fields: Set::new(),
                });
                self.entries.len() - 1
            }
        };
        &mut self.entries[i]
    }

    fn strip(&mut self) {
        let stripped = stripped();
        for e in &mut self.entries {
            e.fields = e.fields.difference(&stripped);
        }
        self.entries.retain(|e| !e.fields.is_empty());
    }
}

/// Paths no manager owns: the server's metadata (apimachinery's
/// `stripMetaManager`).
fn stripped() -> Set {
    let mut s = Set::new();
    for p in [
        &["apiVersion"][..],
        &["kind"],
        &["metadata"],
        &["metadata", "name"],
        &["metadata", "namespace"],
        &["metadata", "creationTimestamp"],
        &["metadata", "selfLink"],
        &["metadata", "uid"],
        &["metadata", "clusterName"],
        &["metadata", "generation"],
        &["metadata", "managedFields"],
        &["metadata", "resourceVersion"],
    ] {
        s.insert(&fields(p));
    }
    s
}

/// The paths a write through `subresource` does not own (the strategies'
/// reset fields): `status` through the main resource of a kind with a
/// status subresource, `spec` through `status`.
pub fn ignored(subresource: &str, has_status_subresource: bool) -> Set {
    let mut s = Set::new();
    match subresource {
        "" if has_status_subresource => s.insert(&fields(&["status"])),
        "status" => s.insert(&fields(&["spec"])),
        _ => {}
    }
    s
}

/// The old version a create is compared with: the Go zero value of the
/// kind, whose non-pointer structs are present (so creating them does not
/// own them as a whole) and whose nil lists are null.
pub fn zero_object(kind: &str) -> Value {
    let template = json!({"metadata": {"creationTimestamp": null}, "spec": {"containers": null}});
    let workload = |extra: Value| {
        let mut spec = json!({"selector": null, "template": template});
        if let (Some(s), Value::Object(e)) = (spec.as_object_mut(), extra) {
            s.extend(e);
        }
        spec
    };
    let spec = match kind {
        "Pod" => json!({"containers": null}),
        "PodTemplate" => return json!({"metadata": {}, "template": template}),
        "Deployment" => workload(json!({"strategy": {}})),
        "DaemonSet" => workload(json!({"updateStrategy": {}})),
        "StatefulSet" => workload(json!({"updateStrategy": {}})),
        "ReplicaSet" => workload(json!({})),
        "ReplicationController" => json!({}),
        "Job" => json!({"template": template}),
        "CronJob" => json!({"jobTemplate": {"metadata": {"creationTimestamp": null},
            "spec": {"template": template}}}),
        "Service" | "Namespace" | "Node" | "PodDisruptionBudget" | "Lease" => json!({}),
        _ => return json!({"metadata": {"creationTimestamp": null}}),
    };
    json!({"metadata": {"creationTimestamp": null}, "spec": spec, "status": {}})
}

/// Records an update (create, update, patch) of `old` into `new` by `who`
/// (apimachinery's `managedFieldsUpdater` over structured-merge-diff's
/// `Update`): every manager loses the fields the write changed or removed,
/// `who`'s Update entry gains the ones it changed and its time when it
/// gained any.
pub fn update(
    kind: &str,
    ignored: &Set,
    managed: &mut Managed,
    old: &Value,
    new: &Value,
    who: &Writer<'_>,
    now: &str,
) {
    let c = compare(kind, old, new);
    let changed = c.modified.union(&c.added);
    for e in &mut managed.entries {
        e.fields = e.fields.difference(&changed).difference(&c.removed);
    }
    let owned = changed
        .recursive_difference(ignored)
        .difference(&stripped());
    if !owned.is_empty() {
        let e = managed.entry_mut(who, Operation::Update);
        e.fields.union_with(&owned);
        e.time = Some(now.to_string());
    }
    managed.strip();
    cap_updaters(managed);
}

/// Kubernetes keeps at most this many Update entries.
const MAX_UPDATERS: usize = 10;

/// Past [`MAX_UPDATERS`], the oldest Update entries are merged, per API
/// version, into an `ancient-changes` entry (apimachinery's
/// `capManagersManager`).
fn cap_updaters(managed: &mut Managed) {
    let mut updaters: Vec<usize> = (0..managed.entries.len())
        .filter(|&i| managed.entries[i].operation == Operation::Update)
        .collect();
    if updaters.len() <= MAX_UPDATERS {
        return;
    }
    let key = |e: &Entry| (e.time.clone().unwrap_or_default(), e.manager.clone());
    updaters.sort_by_key(|&i| key(&managed.entries[i]));
    let mut first_of_version: Vec<(String, usize)> = Vec::new();
    let mut merged = Vec::new();
    let mut count = updaters.len();
    for i in updaters {
        if count <= MAX_UPDATERS {
            break;
        }
        let version = managed.entries[i].api_version.clone();
        let Some(&(_, bucket)) = first_of_version.iter().find(|(v, _)| *v == version) else {
            first_of_version.push((version, i));
            continue;
        };
        let (fields, time) = {
            let e = &managed.entries[i];
            (e.fields.clone(), e.time.clone())
        };
        let b = &mut managed.entries[bucket];
        b.manager = "ancient-changes".into();
        b.subresource.clear();
        b.fields.union_with(&fields);
        // The merged entry's time, the more recent.
        b.time = time;
        merged.push(i);
        count -= 1;
    }
    merged.sort_unstable();
    for i in merged.into_iter().rev() {
        managed.entries.remove(i);
    }
}

/// A refused apply: the fields other managers own with other values.
#[derive(Debug, Clone, PartialEq)]
pub struct Conflict {
    /// The manager as Kubernetes prints it (`"kubectl-patch" using v1`).
    pub manager: String,
    pub path: String,
}

/// Kubernetes' message for refused applies.
pub fn conflict_message(conflicts: &[Conflict]) -> String {
    if let [c] = conflicts {
        return format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            c.manager, c.path
        );
    }
    let mut lines = Vec::new();
    let mut last: Option<&str> = None;
    for c in conflicts {
        if last != Some(c.manager.as_str()) {
            lines.push(format!("conflicts with {}:", c.manager));
            last = Some(&c.manager);
        }
        lines.push(format!("- {}", c.path));
    }
    format!(
        "Apply failed with {} conflicts: {}",
        conflicts.len(),
        lines.join("\n")
    )
}

/// Server-side apply of `config` by `who` onto `live` (apimachinery's
/// field manager: structured-merge-diff's `Apply`, then the last-applied
/// annotation rules kubectl's migration relies on). Answers the new
/// object, with `managed` updated, or the conflicts.
#[allow(clippy::too_many_arguments)]
pub fn apply(
    kind: &str,
    ignored: &Set,
    managed: &mut Managed,
    live: &Value,
    config: &Value,
    who: &Writer<'_>,
    force: bool,
    now: &str,
) -> Result<Value, Vec<Conflict>> {
    if managed.is_empty() && !is_zero(kind, live) {
        // An object nobody manages yet: what it holds belongs to
        // "before-first-apply", so the first apply conflicts over it.
        let before = Writer {
            manager: "before-first-apply",
            ..*who
        };
        update(
            kind,
            ignored,
            managed,
            &zero_object(kind),
            live,
            &before,
            now,
        );
    }
    let mut attempt = managed.clone();
    let result = apply_once(kind, ignored, &mut attempt, live, config, who, force);
    let (mut obj, changed) = match result {
        Ok(r) => {
            *managed = attempt;
            r
        }
        Err((_, paths)) if conflicts_only_last_applied(kind, live, &paths) => {
            apply_once(kind, ignored, managed, live, config, who, true).map_err(|c| c.0)?
        }
        Err(conflicts) => return Err(conflicts.0),
    };
    if changed {
        managed.entry_mut(who, Operation::Apply).time = Some(now.to_string());
    }
    if who.manager == "kubectl" && last_applied(live).is_some() {
        // kubectl's own server-side applies keep the client-side apply
        // annotation in step, so a later client-side apply diffs against it.
        let mut applied = config.clone();
        if let Some(a) = applied["metadata"]["annotations"].as_object_mut() {
            a.remove(LAST_APPLIED);
            if a.is_empty() {
                applied["metadata"]
                    .as_object_mut()
                    .map(|m| m.remove("annotations"));
            }
        }
        obj["metadata"]["annotations"][LAST_APPLIED] = json!(applied.to_string());
    }
    Ok(obj)
}

type Refused = (Vec<Conflict>, Vec<Path>);

fn apply_once(
    kind: &str,
    ignored: &Set,
    managed: &mut Managed,
    live: &Value,
    config: &Value,
    who: &Writer<'_>,
    force: bool,
) -> Result<(Value, bool), Refused> {
    let merged = merge(kind, live, config);
    let applied = field_set(kind, config).recursive_difference(ignored);
    let entry = managed.entry_mut(who, Operation::Apply);
    let last = std::mem::replace(&mut entry.fields, applied);
    // What the applier applied last time and nobody (the applier's new
    // configuration included) owns now goes.
    let mut owned = Set::new();
    for e in &managed.entries {
        owned.union_with(&e.fields.with_named_parents());
    }
    let gone = last
        .with_named_parents()
        .difference(&owned)
        .difference(&stripped());
    let new = if gone.is_empty() {
        merged
    } else {
        remove(kind, &merged, &gone)
    };
    let c = compare(kind, live, &new);
    let changed = c.modified.union(&c.added);
    let mut conflicts: Vec<(String, Path)> = Vec::new();
    for e in &mut managed.entries {
        if e.is(who, Operation::Apply) {
            continue;
        }
        let theirs = e.fields.intersection(&changed);
        let printed = e.printed();
        conflicts.extend(theirs.paths().into_iter().map(|p| (printed.clone(), p)));
        e.fields = e.fields.difference(&theirs).difference(&c.removed);
    }
    if !force && !conflicts.is_empty() {
        conflicts.sort();
        let paths = conflicts.iter().map(|(_, p)| p.clone()).collect();
        let printed = conflicts
            .into_iter()
            .map(|(manager, p)| Conflict {
                manager,
                path: path_string(&p),
            })
            .collect();
        return Err((printed, paths));
    }
    managed.strip();
    let changed = new != *live;
    Ok((new, changed))
}

/// Whether every conflicting path is in the object's client-side apply
/// annotation with the value it still has: then the apply takes them over
/// (apimachinery's `lastAppliedManager`, which lets `kubectl apply
/// --server-side` follow a client-side apply). A field changed since by
/// someone else still conflicts.
fn conflicts_only_last_applied(kind: &str, live: &Value, paths: &[Path]) -> bool {
    let Some(last) = last_applied(live) else {
        return false;
    };
    let c = compare(kind, &last, live);
    let allowed = field_set(kind, &last)
        .difference(&c.modified)
        .difference(&c.removed);
    !paths.is_empty() && paths.iter().all(|p| allowed.has(p))
}

fn last_applied(live: &Value) -> Option<Value> {
    let s = live["metadata"]["annotations"][LAST_APPLIED].as_str()?;
    serde_json::from_str(s).ok()
}

fn is_zero(kind: &str, live: &Value) -> bool {
    live.is_null() || live.as_object().is_some_and(Map::is_empty) || *live == zero_object(kind)
}

#[cfg(test)]
mod tests;
