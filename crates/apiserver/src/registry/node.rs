//! node.k8s.io/v1 RuntimeClasses: validated from their typed form, the
//! handler fixed at creation. Pods name them; see [`admit_pod`].

use k8s_openapi::api::core::v1::Toleration;
use k8s_openapi::api::node::v1::RuntimeClass;
use orca_api::validation as v;
use serde_json::{json, Value};

use super::apps_batch::Typed;
use crate::resources;
use crate::server::State;
use crate::status::ApiError;

pub static RUNTIME_CLASS: Typed<RuntimeClass> = Typed {
    default: |_| {},
    validate: v::validate_runtime_class,
    validate_update: v::validate_runtime_class_update,
    validate_status_update: v::validate_runtime_class_update,
    on_create: |_| {},
    generations: false,
    scales: false,
};

fn forbidden(pod: &str, why: String) -> ApiError {
    ApiError::forbidden(format!("pods \"{pod}\" is forbidden: {why}"))
        .with_details(json!({"name": pod, "kind": "pods"}))
}

/// The RuntimeClass admission plugin, on pod create: a pod naming a
/// RuntimeClass that does not exist is refused; the class's overhead
/// becomes the pod's (which may not be set otherwise), and its scheduling
/// constraints join the pod's node selector and tolerations.
pub async fn admit_pod(state: &State, pod: &mut Value) -> Result<(), ApiError> {
    let pod_name = pod["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let Some(class_name) = pod["spec"]["runtimeClassName"].as_str().map(str::to_string) else {
        if pod["spec"].get("overhead").is_some_and(|o| !o.is_null()) {
            return Err(forbidden(
                &pod_name,
                "pod rejected: Pod Overhead set without corresponding RuntimeClass defined Overhead"
                    .into(),
            ));
        }
        return Ok(());
    };
    let def =
        resources::find("node.k8s.io", "v1", "runtimeclasses").expect("runtimeclasses are served");
    let class: RuntimeClass = match crate::sa_tokens::lookup(state, def, None, &class_name).await? {
        Some(c) => c,
        None => {
            return Err(forbidden(
                &pod_name,
                format!("pod rejected: RuntimeClass \"{class_name}\" not found"),
            ))
        }
    };
    let spec = &mut pod["spec"];
    match class.overhead.and_then(|o| o.pod_fixed) {
        Some(fixed) => {
            let fixed = serde_json::to_value(fixed).expect("quantities serialize");
            let current = spec.get("overhead").filter(|o| !o.is_null());
            if current.is_some_and(|o| !same_quantities(o, &fixed)) {
                return Err(forbidden(
                    &pod_name,
                    "pod rejected: Pod's Overhead doesn't match RuntimeClass's defined Overhead"
                        .into(),
                ));
            }
            spec["overhead"] = fixed;
        }
        None if spec.get("overhead").is_some_and(|o| !o.is_null()) => return Err(forbidden(
            &pod_name,
            "pod rejected: Pod Overhead set without corresponding RuntimeClass defined Overhead"
                .into(),
        )),
        None => {}
    }
    let Some(scheduling) = class.scheduling else {
        return Ok(());
    };
    for (key, value) in scheduling.node_selector.unwrap_or_default() {
        let selector = &mut spec["nodeSelector"];
        if let Some(pod_value) = selector.get(&key).and_then(Value::as_str) {
            if pod_value != value {
                return Err(forbidden(
                    &pod_name,
                    format!("conflict: runtimeClass.scheduling.nodeSelector[{key}] = {value}; pod.spec.nodeSelector[{key}] = {pod_value}"),
                ));
            }
        }
        selector[key] = Value::String(value);
    }
    let mut tolerations: Vec<Toleration> =
        serde_json::from_value(spec["tolerations"].take()).unwrap_or_default();
    for t in scheduling.tolerations.unwrap_or_default() {
        if !tolerations.contains(&t) {
            tolerations.push(t);
        }
    }
    if !tolerations.is_empty() {
        spec["tolerations"] = serde_json::to_value(tolerations).expect("tolerations serialize");
    }
    Ok(())
}

/// Quantities compared by value (`1Mi` and `1048576` are the same).
fn same_quantities(a: &Value, b: &Value) -> bool {
    let parse = |v: &Value| -> Option<std::collections::BTreeMap<String, i128>> {
        v.as_object()?
            .iter()
            .map(|(k, q)| {
                Some((
                    k.clone(),
                    orca_api::quantity::parse_nanos(q.as_str()?).ok()?,
                ))
            })
            .collect()
    };
    parse(a).is_some_and(|a| Some(a) == parse(b))
}
