//! pods/eviction: deletes a pod unless that would break its
//! PodDisruptionBudget, as kube-apiserver's eviction subresource. A pod
//! covered by one budget is deleted only after taking one of the budget's
//! `disruptionsAllowed` (recorded in `disruptedPods`, so the disruption
//! controller does not count the pod as healthy meanwhile) in a
//! compare-and-swap of the budget; none left is 429 TooManyRequests, which
//! `kubectl drain` retries. Pods that are finished, pending or already being
//! deleted are deleted without looking at budgets.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::{Eviction, PodDisruptionBudget};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::delete::{delete_decision, delete_options_from, DeleteOptions, Preconditions};
use super::*;
use crate::auth::admission::{node_restriction, Op};
use crate::auth::attributes::forbidden_error;

/// Conflicting writes retried, as kube-apiserver's `EvictionsRetry`.
const RETRIES: usize = 20;
const RETRY_DELAY: Duration = Duration::from_millis(500);
/// Evictions granted but not yet seen gone by the disruption controller
/// beyond which a budget refuses more (`MaxDisruptedPodSize`).
const MAX_DISRUPTED_PODS: usize = 2000;
const VIOLATES_BUDGET: &str = "Cannot evict pod as it would violate the pod's disruption budget.";

pub async fn evict(ctx: &Ctx<'_>, name: &str, body: &[u8]) -> Result<Response<Body>, ApiError> {
    dry_run(ctx.query, "CreateOptions")?;
    let mut raw = decode_body(ctx.headers, body)?;
    // policy/v1beta1 Evictions are accepted as the same object.
    if raw["apiVersion"] == "policy/v1beta1" {
        raw["apiVersion"] = json!("policy/v1");
    }
    let (eviction, warnings) = admit_body(
        ctx,
        raw,
        "policy/v1",
        "Eviction",
        "io.k8s.api.policy.v1.Eviction",
        |v| {
            serde_json::from_value::<Eviction>(v.clone())
                .map(|_| v)
                .map_err(|e| e.to_string())
        },
    )?;
    if name_of(&eviction) != name {
        return Err(ApiError::bad_request(
            "name in URL does not match name in Eviction object",
        ));
    }
    match eviction["metadata"]["namespace"].as_str() {
        Some(ns) if !ns.is_empty() && Some(ns) != ctx.namespace => {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ))
        }
        _ => {}
    }
    let options = eviction.get("deleteOptions").cloned();
    check_dry_run_agrees(ctx, options.as_ref())?;
    // The query's dryRun applies when the deleteOptions have none.
    let opts = delete_options_from(ctx, options)?;
    let evicted = || {
        let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201});
        with_warnings(json_response(201, &status), &warnings)
    };
    let caller_pinned = opts
        .preconditions
        .as_ref()
        .is_some_and(|p| p.resource_version.is_some());

    // Pods whose budgets do not matter go at once; the delete is pinned to
    // the version read, so a pod that became Running and Ready meanwhile is
    // looked at again.
    let mut attempt = 0;
    let pod = loop {
        let (pod, _) = read(ctx, name).await?;
        node_restriction(ctx.user, ctx.def, Some("eviction"), Op::Create, None, &pod)?;
        if !ignores_budgets(&pod) {
            break pod;
        }
        let mut o = opts.clone();
        if !caller_pinned && may_become_ready(&pod) {
            pin(&mut o, &pod);
        }
        match delete_pod(ctx, name, o).await {
            Err(e) if e.code == 409 && !caller_pinned && attempt < RETRIES => {
                attempt += 1;
                tokio::time::sleep(RETRY_DELAY).await;
            }
            Err(e) => return Err(e),
            Ok(()) => return Ok(evicted()),
        }
    };

    let budgets = budgets_of(ctx, &pod)?;
    if budgets.len() > 1 {
        let status = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
            "code": 500,
        });
        return Ok(json_response(500, &status));
    }
    let mut opts = opts;
    let mut budget_name = String::new();
    // An unready pod whose budget can spare it is deleted without taking a
    // disruption, pinned to the version seen unready.
    let mut pinned_unready = false;
    if let Some(pdb) = budgets.first() {
        budget_name = pdb.metadata.name.clone().unwrap_or_default();
        if !is_ready(&pod) && spares_unready(pdb) {
            pinned_unready = true;
            pin(&mut opts, &pod);
        } else {
            take_disruption(ctx, &budget_name, name, opts.dry).await?;
        }
    }
    match delete_pod(ctx, name, opts).await {
        Err(e) if e.code == 409 && pinned_unready && !caller_pinned => {
            Err(still_processing(&budget_name))
        }
        Err(e) => Err(e),
        Ok(()) => Ok(evicted()),
    }
}

/// kube-apiserver refuses an Eviction whose deleteOptions ask for another
/// dry run than the request's query.
fn check_dry_run_agrees(ctx: &Ctx<'_>, options: Option<&Value>) -> Result<(), ApiError> {
    let body: Vec<String> = options
        .and_then(|o| o["dryRun"].as_array())
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    let query = ctx.query.get("dryRun").cloned().unwrap_or_default();
    if !body.is_empty() && !query.is_empty() && body != query {
        return Err(ApiError::internal(format!(
            "Non-matching dry-run options in request and content: [{}] and [{}]",
            query.join(" "),
            body.join(" ")
        )));
    }
    Ok(())
}

fn phase(pod: &Value) -> &str {
    pod["status"]["phase"].as_str().unwrap_or_default()
}

fn being_deleted(pod: &Value) -> bool {
    !pod["metadata"]["deletionTimestamp"].is_null()
}

/// Finished pods have disrupted nothing more by going; pending ones were
/// never available; deleting ones are going anyway (`canIgnorePDB`).
fn ignores_budgets(pod: &Value) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed" | "Pending") || being_deleted(pod)
}

fn may_become_ready(pod: &Value) -> bool {
    !matches!(phase(pod), "Succeeded" | "Failed") && !being_deleted(pod)
}

fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

fn pin(opts: &mut DeleteOptions, pod: &Value) {
    let rv = pod["metadata"]["resourceVersion"]
        .as_str()
        .map(str::to_string);
    opts.preconditions
        .get_or_insert_with(Preconditions::default)
        .resource_version = rv;
}

/// Whether an unready pod may go without taking a disruption: always under
/// `unhealthyPodEvictionPolicy: AlwaysAllow`, else (IfHealthyBudget) while
/// the budget has the healthy pods it needs.
fn spares_unready(pdb: &PodDisruptionBudget) -> bool {
    let policy = pdb
        .spec
        .as_ref()
        .and_then(|s| s.unhealthy_pod_eviction_policy.as_deref());
    let status = pdb.status.clone().unwrap_or_default();
    policy == Some("AlwaysAllow")
        || (status.current_healthy >= status.desired_healthy && status.desired_healthy > 0)
}

fn budgets_def() -> &'static crate::resources::ResourceDef {
    crate::resources::find("policy", "v1", "poddisruptionbudgets")
        .expect("poddisruptionbudgets are served")
}

/// The budgets of the pod's namespace whose selector covers it.
fn budgets_of(ctx: &Ctx<'_>, pod: &Value) -> Result<Vec<PodDisruptionBudget>, ApiError> {
    let pod: Pod = serde_json::from_value(pod.clone())
        .map_err(|e| ApiError::internal(format!("stored pod is not valid: {e}")))?;
    let labels = pod.metadata.labels.unwrap_or_default();
    let def = budgets_def();
    let (objs, _) = ctx
        .state
        .cache
        .resource(def)
        .list(&def.ns_prefix(ctx.namespace));
    Ok(objs
        .iter()
        .filter_map(|o| serde_json::from_slice::<PodDisruptionBudget>(&o.bytes).ok())
        .filter(|pdb| {
            let selector = pdb.spec.as_ref().and_then(|s| s.selector.as_ref());
            orca_api::disruption::selects(selector, &labels)
        })
        .collect())
}

fn too_many_requests(retry_after: u32, cause: String) -> ApiError {
    let mut details = json!({"causes": [{"reason": "DisruptionBudget", "message": cause}]});
    if retry_after > 0 {
        details["retryAfterSeconds"] = json!(retry_after);
    }
    ApiError::new(429, "TooManyRequests", VIOLATES_BUDGET).with_details(details)
}

/// The budget has not caught up with its spec, or the pod turned ready
/// while being evicted as unready: the client should retry.
fn still_processing(budget: &str) -> ApiError {
    too_many_requests(
        10,
        format!("The disruption budget {budget} is still being processed by the server."),
    )
}

/// Takes one of the budget's allowed disruptions for `pod` (kube's
/// `checkAndDecrement`), retried on conflicting writes against a fresh read.
async fn take_disruption(
    ctx: &Ctx<'_>,
    budget: &str,
    pod: &str,
    dry: bool,
) -> Result<(), ApiError> {
    let budget_ctx = Ctx {
        def: budgets_def(),
        ..*ctx
    };
    let forbidden = |why: &str| forbidden_error("policy", "poddisruptionbudget", budget, why);
    guaranteed_write(&budget_ctx, budget, dry, |cur| {
        let mut pdb: PodDisruptionBudget = serde_json::from_value(cur.clone())
            .map_err(|e| ApiError::internal(format!("stored budget is not valid: {e}")))?;
        let generation = pdb.metadata.generation.unwrap_or(0);
        let status = pdb.status.get_or_insert_with(Default::default);
        if status.observed_generation.unwrap_or(0) < generation {
            return Err(still_processing(budget));
        }
        if status.disruptions_allowed < 0 {
            return Err(forbidden("pdb disruptions allowed is negative"));
        }
        if status.disrupted_pods.as_ref().map_or(0, |d| d.len()) > MAX_DISRUPTED_PODS {
            return Err(forbidden(
                "DisruptedPods map too big - too many evictions not confirmed by PDB controller",
            ));
        }
        if status.disruptions_allowed == 0 {
            return Err(too_many_requests(
                0,
                format!(
                    "The disruption budget {budget} needs {} healthy pods and has {} currently",
                    status.desired_healthy, status.current_healthy
                ),
            ));
        }
        let now = chrono::Utc::now();
        status.disruptions_allowed -= 1;
        if status.disruptions_allowed == 0 {
            orca_api::disruption::set_disruption_allowed(status, now);
        }
        status
            .disrupted_pods
            .get_or_insert_with(Default::default)
            .insert(pod.to_string(), Time(now));
        let new = serde_json::to_value(&pdb)
            .map_err(|e| ApiError::internal(format!("cannot encode budget: {e}")))?;
        Ok((Write::Update(new), false))
    })
    .await?;
    Ok(())
}

/// Marks the pod with the `DisruptionTarget` condition, then deletes it
/// with the Eviction's options (kube's `addConditionAndDeletePod`).
async fn delete_pod(ctx: &Ctx<'_>, name: &str, mut opts: DeleteOptions) -> Result<(), ApiError> {
    if !opts.dry {
        let outcome = guaranteed_write(ctx, name, false, |cur| {
            check_preconditions(name, &opts, cur)?;
            let mut new = cur.clone();
            set_disruption_target(&mut new);
            Ok((Write::Update(new), false))
        })
        .await?;
        // The condition is this eviction's own write: a pinned delete is
        // pinned to it.
        if let (Outcome::Stored { kv, .. }, Some(p)) = (&outcome, opts.preconditions.as_mut()) {
            if p.resource_version.is_some() {
                p.resource_version = Some(kv.mod_revision.to_string());
            }
        }
    }
    guaranteed_write(ctx, name, opts.dry, |cur| delete_decision(ctx, &opts, cur)).await?;
    if !opts.dry {
        ctx.def.strategy.after_delete(ctx.state, name);
    }
    Ok(())
}

fn check_preconditions(name: &str, opts: &DeleteOptions, cur: &Value) -> Result<(), ApiError> {
    let Some(p) = &opts.preconditions else {
        return Ok(());
    };
    let md = &cur["metadata"];
    let conflict = |why: String| ApiError::conflict("Pod", "", name, &why);
    if let Some(uid) = p.uid.as_deref().filter(|u| !u.is_empty()) {
        let have = md["uid"].as_str().unwrap_or_default();
        if uid != have {
            return Err(conflict(format!("the UID in the precondition ({uid}) does not match the UID in record ({have}). The object might have been deleted and then recreated")));
        }
    }
    if let Some(rv) = p.resource_version.as_deref().filter(|r| !r.is_empty()) {
        let have = md["resourceVersion"].as_str().unwrap_or_default();
        if rv != have {
            return Err(conflict(format!("the ResourceVersion in the precondition ({rv}) does not match the ResourceVersion in record ({have}). The object might have been modified")));
        }
    }
    Ok(())
}

/// `DisruptionTarget=True` (EvictionByEvictionAPI), its transition time
/// kept when it is already so.
fn set_disruption_target(pod: &mut Value) {
    let cond = json!({
        "type": "DisruptionTarget",
        "status": "True",
        "reason": "EvictionByEvictionAPI",
        "message": "Eviction API: evicting",
        "lastProbeTime": null,
        "lastTransitionTime": now(),
    });
    let mut conds = pod["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    match conds.iter_mut().find(|c| c["type"] == "DisruptionTarget") {
        Some(c) if c["status"] == "True" => {
            let since = c["lastTransitionTime"].clone();
            *c = cond;
            c["lastTransitionTime"] = since;
        }
        Some(c) => *c = cond,
        None => conds.push(cond),
    }
    pod["status"]["conditions"] = json!(conds);
}
