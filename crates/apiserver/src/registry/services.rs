//! Services: Kubernetes' defaults, their cluster IP and node ports taken
//! from the shared ranges before the Service is stored and given back when
//! it no longer holds them (see `allocator`), and what an update keeps of
//! the allocated values the client left out.

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::sync::Arc;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{LoadBalancerStatus, Service, ServiceSpec, ServiceStatus};
use orca_api::validation::{
    needs_health_check, validate_cluster_ips, validate_service, validate_service_update, BadValue,
    FieldError,
};
use serde_json::Value;

use super::allocator::{self, give_back_all, held_keys, Holder, Refused};
use super::{typed, validated, Strategy};
use crate::resources::ResourceDef;
use crate::server::State;
use crate::status::ApiError;

pub struct Services;
pub static SERVICE: Services = Services;

fn needs_cluster_ip(spec: &ServiceSpec) -> bool {
    spec.type_.as_deref() != Some("ExternalName")
}

fn node_port_type(spec: &ServiceSpec) -> bool {
    matches!(spec.type_.as_deref(), Some("NodePort" | "LoadBalancer"))
}

/// Whether ports without a node port get one.
fn allocates_node_ports(spec: &ServiceSpec) -> bool {
    match spec.type_.as_deref() {
        Some("NodePort") => true,
        Some("LoadBalancer") => spec.allocate_load_balancer_node_ports != Some(false),
        _ => false,
    }
}

/// `clusterIP` and `clusterIPs` say the same: whichever the client set
/// fills the other.
fn normalize_cluster_ips(spec: &mut ServiceSpec) {
    let ip = spec.cluster_ip.clone().unwrap_or_default();
    let ips = spec.cluster_ips.clone().unwrap_or_default();
    if !ip.is_empty() && ips.is_empty() {
        spec.cluster_ips = Some(vec![ip]);
    } else if ip.is_empty() && !ips.is_empty() {
        spec.cluster_ip = Some(ips[0].clone());
    }
}

/// The 422 for field errors found while allocating.
fn invalid(svc: &Service, errs: Vec<FieldError>) -> ApiError {
    let name = svc.metadata.name.as_deref().unwrap_or_default();
    let status = orca_api::validation::invalid_status("", "Service", name, &errs);
    ApiError::new(
        422,
        "Invalid",
        orca_api::validation::invalid_message("", "Service", name, &errs),
    )
    .with_details(status["details"].clone())
}

fn decode(v: &Value) -> Result<Service, ApiError> {
    serde_json::from_value(v.clone())
        .map_err(|e| ApiError::bad_request(format!("cannot decode the Service: {e}")))
}

fn encode(svc: &Service, v: &mut Value) -> Result<(), ApiError> {
    *v = serde_json::to_value(svc)
        .map_err(|e| ApiError::internal(format!("cannot encode the Service: {e}")))?;
    Ok(())
}

fn internal_allocation(what: &str, e: &Refused) -> ApiError {
    ApiError::internal(format!(
        "Internal error occurred: failed to allocate a {what}: {e}"
    ))
}

/// The IP families and policy of a single-stack IPv4 cluster, checked as
/// kube-apiserver's `initIPFamilyFields` does.
fn init_ip_families(svc: &mut Service) -> Result<(), ApiError> {
    let errs = validate_cluster_ips(svc);
    if !errs.is_empty() {
        return Err(invalid(svc, errs));
    }
    let spec = svc.spec.get_or_insert_with(Default::default);
    let mut errs = Vec::new();
    if spec.ip_family_policy.as_deref() == Some("RequireDualStack") {
        errs.push(FieldError::invalid(
            "spec.ipFamilyPolicy",
            "RequireDualStack",
            "this cluster is not configured for dual-stack services",
        ));
    }
    for (i, f) in spec.ip_families.iter().flatten().enumerate() {
        if f != "IPv4" {
            errs.push(FieldError::invalid(
                format!("spec.ipFamilies[{i}]"),
                f,
                "not configured on this cluster",
            ));
        }
    }
    for (i, ip) in spec.cluster_ips.iter().flatten().enumerate() {
        if ip.contains(':') {
            errs.push(FieldError::invalid(
                format!("spec.clusterIPs[{i}]"),
                ip,
                "not configured on this cluster",
            ));
        }
    }
    let families = spec.ip_families.as_deref().unwrap_or(&[]);
    if families.len() > 1
        && spec.ip_family_policy.as_deref().unwrap_or("SingleStack") == "SingleStack"
    {
        errs.push(FieldError::invalid(
            "spec.ipFamilies",
            BadValue::Raw(format!(
                "[]core.IPFamily{{{}}}",
                families
                    .iter()
                    .map(|f| format!("\"{f}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            "when multiple IP families are specified, IP family policy must be RequireDualStack or PreferDualStack",
        ));
    }
    if !errs.is_empty() {
        return Err(invalid(svc, errs));
    }
    let spec = svc.spec.get_or_insert_with(Default::default);
    spec.ip_families = Some(vec!["IPv4".into()]);
    if spec.ip_family_policy.is_none() {
        spec.ip_family_policy = Some("SingleStack".into());
    }
    Ok(())
}

/// Takes what `svc` needs and does not hold yet in `old` (the stored
/// version, for updates), filling the Service's fields. What was taken is
/// added to `taken` even when a later step fails, for the caller to give
/// back.
async fn allocate(
    state: &Arc<State>,
    svc: &mut Service,
    old: Option<&Service>,
    dry_run: bool,
    taken: &mut BTreeSet<String>,
) -> Result<(), ApiError> {
    let net = &state.service_network;
    let store = &*state.store;
    let holder = Holder::of(&serde_json::to_value(&*svc).unwrap_or_default());
    let old_spec = old.and_then(|o| o.spec.clone()).unwrap_or_default();
    let had_ip = old.is_some()
        && needs_cluster_ip(&old_spec)
        && !old_spec.cluster_ips.as_ref().is_none_or(|i| i.is_empty());
    let spec = svc.spec.clone().unwrap_or_default();
    if needs_cluster_ip(&spec) && !had_ip {
        init_ip_families(svc)?;
        let spec = svc.spec.get_or_insert_with(Default::default);
        let wanted = spec.cluster_ip.clone().unwrap_or_default();
        if wanted != "None" {
            let want = if wanted.is_empty() {
                None
            } else {
                // Validated above as an IPv4 address.
                wanted.parse::<Ipv4Addr>().ok()
            };
            let result = if dry_run {
                allocator::dry_ip(net, want, &holder)
            } else {
                allocator::take_ip(store, net, want, &holder).await
            };
            let ip = match result {
                Ok(ip) => ip,
                Err(e @ (Refused::IpTaken | Refused::IpReserved | Refused::IpNotInRange(..))) => {
                    let err = FieldError::invalid(
                        "spec.clusterIPs",
                        BadValue::StrList(spec.cluster_ips.clone().unwrap_or_default()),
                        format!("failed to allocate IP {wanted}: {e}"),
                    );
                    return Err(invalid(svc, vec![err]));
                }
                Err(e) => return Err(internal_allocation("serviceIP", &e)),
            };
            if !dry_run {
                taken.insert(allocator::ip_key(ip));
            }
            spec.cluster_ip = Some(ip.to_string());
            spec.cluster_ips = Some(vec![ip.to_string()]);
        }
    }
    let old_ports: BTreeSet<i32> = if node_port_type(&old_spec) {
        old_spec
            .ports
            .iter()
            .flatten()
            .filter_map(|p| p.node_port)
            .collect()
    } else {
        BTreeSet::new()
    };
    let spec = svc.spec.clone().unwrap_or_default();
    if node_port_type(&spec) {
        let allocate_new = allocates_node_ports(&spec);
        let mut by_port: HashMap<i32, i32> = HashMap::new();
        let mut ports = spec.ports.clone().unwrap_or_default();
        for i in 0..ports.len() {
            let requested = ports[i].node_port.unwrap_or(0);
            if requested == 0 && !allocate_new {
                continue;
            }
            // Ports with one number (TCP and UDP, say) share a node port;
            // a later port's request counts for the first.
            let np = match by_port.get(&ports[i].port) {
                Some(&np) if requested == 0 || requested == np => np,
                _ => {
                    let want = if requested != 0 {
                        requested
                    } else {
                        ports[i..]
                            .iter()
                            .find(|p| p.port == ports[i].port && p.node_port.unwrap_or(0) != 0)
                            .and_then(|p| p.node_port)
                            .unwrap_or(0)
                    };
                    let np = if want != 0 && old_ports.contains(&want) {
                        want
                    } else {
                        take_node_port(
                            state,
                            svc,
                            want,
                            format!("spec.ports[{i}].nodePort"),
                            dry_run,
                            &holder,
                            taken,
                        )
                        .await?
                    };
                    by_port.entry(ports[i].port).or_insert(np);
                    np
                }
            };
            ports[i].node_port = Some(np);
        }
        svc.spec.get_or_insert_with(Default::default).ports = Some(ports);
    }
    let spec = svc.spec.clone().unwrap_or_default();
    if needs_health_check(&spec) {
        let want = spec.health_check_node_port.unwrap_or(0);
        let kept = needs_health_check(&old_spec) && old_spec.health_check_node_port == Some(want);
        if !kept || want == 0 {
            let np = take_node_port(
                state,
                svc,
                want,
                "spec.healthCheckNodePort".into(),
                dry_run,
                &holder,
                taken,
            )
            .await?;
            svc.spec
                .get_or_insert_with(Default::default)
                .health_check_node_port = Some(np);
        }
    }
    Ok(())
}

/// One node port: `want` if not 0, else any free one.
async fn take_node_port(
    state: &Arc<State>,
    svc: &Service,
    want: i32,
    field: String,
    dry_run: bool,
    holder: &Holder,
    taken: &mut BTreeSet<String>,
) -> Result<i32, ApiError> {
    let net = &state.service_network;
    let port = match want {
        0 => None,
        // Out of u16 is out of any range; report it as such.
        w => Some(u16::try_from(w).unwrap_or(0)),
    };
    let result = if dry_run {
        allocator::dry_port(net, port)
    } else if let Some(p) = port.filter(|p| *p != 0 && taken.contains(&allocator::port_key(*p))) {
        // Already taken by this request for another port of this Service.
        Ok(p)
    } else {
        allocator::take_port(&*state.store, net, port, holder).await
    };
    match result {
        Ok(p) => {
            if !dry_run {
                taken.insert(allocator::port_key(p));
            }
            Ok(i32::from(p))
        }
        Err(e @ (Refused::PortTaken | Refused::PortNotInRange(_))) => Err(invalid(
            svc,
            vec![FieldError::invalid(field, want, e.to_string())],
        )),
        Err(e) => Err(internal_allocation("nodePort", &e)),
    }
}

/// kube-apiserver's `patchAllocatedValues`: an update that leaves out the
/// cluster IP, IP families or node ports keeps the allocated ones.
fn patch_allocated_values(new: &mut ServiceSpec, old: &ServiceSpec) {
    if needs_cluster_ip(old) && needs_cluster_ip(new) {
        if new.cluster_ip.as_deref().unwrap_or("").is_empty() {
            new.cluster_ip = old.cluster_ip.clone();
        }
        if new.cluster_ips.as_ref().is_none_or(|i| i.is_empty())
            && old.cluster_ips.as_ref().is_some_and(|i| !i.is_empty())
        {
            new.cluster_ips = old.cluster_ips.clone();
        }
        // The families the allocator chose, as its `initIPFamilyFields`
        // keeps them on update.
        if new.ip_families.as_ref().is_none_or(|f| f.is_empty()) {
            new.ip_families = old.ip_families.clone();
        }
        if new.ip_family_policy.is_none() {
            new.ip_family_policy = old.ip_family_policy.clone();
        }
    }
    if node_port_type(old) && node_port_type(new) {
        let used = |s: &ServiceSpec| -> BTreeSet<i32> {
            s.ports
                .iter()
                .flatten()
                .filter_map(|p| p.node_port)
                .collect()
        };
        let in_both: BTreeSet<i32> = used(old).intersection(&used(new)).copied().collect();
        let by_name: HashMap<String, i32> = old
            .ports
            .iter()
            .flatten()
            .map(|p| (p.name.clone().unwrap_or_default(), p.node_port.unwrap_or(0)))
            .collect();
        for p in new.ports.iter_mut().flatten() {
            if p.node_port.unwrap_or(0) == 0 {
                let old_np = by_name
                    .get(p.name.as_deref().unwrap_or(""))
                    .copied()
                    .unwrap_or(0);
                if old_np != 0 && !in_both.contains(&old_np) {
                    p.node_port = Some(old_np);
                }
            }
        }
    }
    if needs_health_check(old)
        && needs_health_check(new)
        && new.health_check_node_port.unwrap_or(0) == 0
    {
        new.health_check_node_port = old.health_check_node_port;
    }
}

/// kube-apiserver's `dropTypeDependentFields`: a type change wipes what the
/// old type had allocated, unless the client changed it too (then
/// validation speaks).
fn drop_type_dependent_fields(new: &mut ServiceSpec, old: &ServiceSpec) {
    if needs_cluster_ip(old) && !needs_cluster_ip(new) {
        let ips = |s: &ServiceSpec| s.cluster_ips.clone().unwrap_or_default();
        if new.cluster_ip == old.cluster_ip && ips(new) == ips(old) {
            new.cluster_ip = None;
            new.cluster_ips = None;
        }
        if new.ip_families == old.ip_families {
            new.ip_families = None;
        }
        if new.ip_family_policy == old.ip_family_policy {
            new.ip_family_policy = None;
        }
    }
    if node_port_type(old) && !node_port_type(new) {
        let node_ports = |s: &ServiceSpec| -> Vec<i32> {
            s.ports
                .iter()
                .flatten()
                .map(|p| p.node_port.unwrap_or(0))
                .collect()
        };
        if node_ports(new) == node_ports(old) {
            for p in new.ports.iter_mut().flatten() {
                p.node_port = None;
            }
        }
    }
    if needs_health_check(old)
        && !needs_health_check(new)
        && new.health_check_node_port == old.health_check_node_port
    {
        new.health_check_node_port = None;
    }
    let lb = |s: &ServiceSpec| s.type_.as_deref() == Some("LoadBalancer");
    if lb(old) && !lb(new) {
        if new.allocate_load_balancer_node_ports.is_some()
            && new.allocate_load_balancer_node_ports == old.allocate_load_balancer_node_ports
        {
            new.allocate_load_balancer_node_ports = None;
        }
        if new.load_balancer_class == old.load_balancer_class {
            new.load_balancer_class = None;
        }
    }
    let external = orca_api::validation::externally_accessible;
    if external(old) && !external(new) && new.external_traffic_policy == old.external_traffic_policy
    {
        new.external_traffic_policy = None;
    }
}

/// Whether the Service `v` names is stored with `v`'s uid (a failed write
/// may still have been stored, e.g. when the store timed out answering).
async fn stored_as(state: &State, v: &Value) -> bool {
    let md = &v["metadata"];
    let (Some(ns), Some(name)) = (md["namespace"].as_str(), md["name"].as_str()) else {
        return false;
    };
    let key = crate::resources::services().key(Some(ns), name);
    match state.store.get(&key).await {
        Ok(Some(kv)) => serde_json::from_slice::<Value>(&kv.value)
            .is_ok_and(|s| s["metadata"]["uid"] == md["uid"]),
        Ok(None) => false,
        // Unknown: keep the values; the repair pass releases them if unused.
        Err(_) => true,
    }
}

fn uid_of(v: &Value) -> String {
    v["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

impl Strategy for Services {
    fn prepare_create(&self, def: &ResourceDef, obj: &mut Value) -> Result<(), ApiError> {
        typed::<Service>(obj, |svc| {
            orca_api::defaults::service(svc);
            if let Some(spec) = svc.spec.as_mut() {
                normalize_cluster_ips(spec);
            }
            svc.status = Some(ServiceStatus {
                load_balancer: Some(LoadBalancerStatus::default()),
                ..Default::default()
            });
        })?;
        let svc = decode(obj)?;
        validated(def, obj, validate_service(&svc))
    }

    fn prepare_update(
        &self,
        def: &ResourceDef,
        new: &mut Value,
        old: &Value,
    ) -> Result<(), ApiError> {
        let old_svc = decode(old)?;
        let old_spec = old_svc.spec.clone().unwrap_or_default();
        typed::<Service>(new, |svc| {
            orca_api::defaults::service(svc);
            let spec = svc.spec.get_or_insert_with(Default::default);
            patch_allocated_values(spec, &old_spec);
            normalize_cluster_ips(spec);
            drop_type_dependent_fields(spec, &old_spec);
            if spec.type_.as_deref() != Some("LoadBalancer") {
                if let Some(st) = svc.status.as_mut() {
                    st.load_balancer = Some(LoadBalancerStatus::default());
                }
            }
        })?;
        let svc = decode(new)?;
        validated(def, new, validate_service_update(&svc, &old_svc))
    }

    fn begin_create<'a>(
        &'a self,
        state: &'a Arc<State>,
        obj: &'a mut Value,
        dry_run: bool,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async move {
            let mut svc = decode(obj)?;
            orca_api::defaults::service(&mut svc);
            normalize_cluster_ips(svc.spec.get_or_insert_with(Default::default));
            let mut taken = BTreeSet::new();
            if let Err(e) = allocate(state, &mut svc, None, dry_run, &mut taken).await {
                give_back_all(state, &taken, &uid_of(obj)).await;
                return Err(e);
            }
            encode(&svc, obj)
        })
    }

    fn finish_create<'a>(
        &'a self,
        state: &'a Arc<State>,
        obj: &'a Value,
        stored: bool,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if stored || stored_as(state, obj).await {
                return;
            }
            let keys = held_keys(&state.service_network, obj);
            give_back_all(state, &keys, &uid_of(obj)).await;
        })
    }

    fn begin_update<'a>(
        &'a self,
        state: &'a Arc<State>,
        new: &'a mut Value,
        old: &'a Value,
        dry_run: bool,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async move {
            if new["spec"] == old["spec"] {
                return Ok(());
            }
            let mut svc = decode(new)?;
            let old_svc = decode(old)?;
            let mut taken = BTreeSet::new();
            if let Err(e) = allocate(state, &mut svc, Some(&old_svc), dry_run, &mut taken).await {
                give_back_all(state, &taken, &uid_of(new)).await;
                return Err(e);
            }
            encode(&svc, new)
        })
    }

    fn finish_update<'a>(
        &'a self,
        state: &'a Arc<State>,
        new: &'a Value,
        old: &'a Value,
        stored: bool,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let net = &state.service_network;
            let (new_keys, old_keys) = (held_keys(net, new), held_keys(net, old));
            let release: BTreeSet<String> = if stored {
                old_keys.difference(&new_keys).cloned().collect()
            } else if stored_as_version(state, new).await {
                return;
            } else {
                new_keys.difference(&old_keys).cloned().collect()
            };
            give_back_all(state, &release, &uid_of(new)).await;
        })
    }

    fn after_remove<'a>(&'a self, state: &'a Arc<State>, removed: &'a Value) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let keys = held_keys(&state.service_network, removed);
            give_back_all(state, &keys, &uid_of(removed)).await;
        })
    }
}

/// Whether the stored Service holds everything `new` holds (a write that
/// reported failure but was stored after all).
async fn stored_as_version(state: &State, new: &Value) -> bool {
    let md = &new["metadata"];
    let (Some(ns), Some(name)) = (md["namespace"].as_str(), md["name"].as_str()) else {
        return false;
    };
    let key = crate::resources::services().key(Some(ns), name);
    match state.store.get(&key).await {
        Ok(Some(kv)) => serde_json::from_slice::<Value>(&kv.value).is_ok_and(|s| {
            let net = &state.service_network;
            held_keys(net, new).is_subset(&held_keys(net, &s))
        }),
        Ok(None) => false,
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orca_api::validation::is_headless;
    use serde_json::json;

    fn spec(v: Value) -> ServiceSpec {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn an_update_without_allocated_values_keeps_them() {
        let old = spec(
            json!({"type": "NodePort", "clusterIP": "10.43.1.2", "clusterIPs": ["10.43.1.2"],
            "ports": [{"name": "a", "port": 80, "nodePort": 30080}, {"name": "b", "port": 81, "nodePort": 30081}]}),
        );
        let mut new = spec(json!({"type": "NodePort",
            "ports": [{"name": "a", "port": 80}, {"name": "b", "port": 81, "nodePort": 30080}]}));
        patch_allocated_values(&mut new, &old);
        assert_eq!(new.cluster_ip.as_deref(), Some("10.43.1.2"));
        // 30080 is now b's, so a does not get it back.
        let nps: Vec<Option<i32>> = new.ports.unwrap().iter().map(|p| p.node_port).collect();
        assert_eq!(nps, vec![None, Some(30080)]);
    }

    #[test]
    fn a_type_change_wipes_what_the_old_type_allocated() {
        let old = spec(
            json!({"type": "NodePort", "clusterIP": "10.43.1.2", "clusterIPs": ["10.43.1.2"],
            "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack", "externalTrafficPolicy": "Cluster",
            "ports": [{"port": 80, "nodePort": 30080}]}),
        );
        let mut to_cluster_ip = old.clone();
        to_cluster_ip.type_ = Some("ClusterIP".into());
        drop_type_dependent_fields(&mut to_cluster_ip, &old);
        assert_eq!(to_cluster_ip.ports.as_ref().unwrap()[0].node_port, None);
        assert_eq!(to_cluster_ip.external_traffic_policy, None);
        assert_eq!(to_cluster_ip.cluster_ip.as_deref(), Some("10.43.1.2"));
        let mut to_external = old.clone();
        to_external.type_ = Some("ExternalName".into());
        drop_type_dependent_fields(&mut to_external, &old);
        assert_eq!(to_external.cluster_ip, None);
        assert_eq!(to_external.ip_families, None);
        assert_eq!(to_external.ip_family_policy, None);
    }

    #[test]
    fn headless_services_are_recognised_after_normalising() {
        let mut s = spec(json!({"clusterIP": "None"}));
        normalize_cluster_ips(&mut s);
        assert!(is_headless(&s));
    }
}
