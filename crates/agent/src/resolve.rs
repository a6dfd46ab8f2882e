//! Turning a pod's references into values: environment variables (value,
//! valueFrom, envFrom, `$(VAR)` expansion), configMap/secret/downwardAPI/
//! projected volumes into files, and image pull credentials.

use std::collections::{BTreeMap, HashMap};

use base64::Engine;
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, DownwardAPIVolumeFile, KeyToPath, ObjectFieldSelector, Pod,
    ResourceFieldSelector, Secret, ServiceAccount,
};
use kube::api::{Api, PostParams};
use orca_runtime::{RegistryAuth, VolumeSource};

/// Node capacity used when a container sets no limit (Kubernetes exposes
/// allocatable through resourceFieldRef then).
#[derive(Clone, Copy, Debug, Default)]
pub struct NodeResources {
    pub cpu: f64,
    pub memory: f64,
    pub ephemeral_storage: f64,
}

/// Values the downward API exposes that live outside the pod object.
#[derive(Clone, Debug, Default)]
pub struct Runtime {
    pub pod_ip: Option<String>,
    pub host_ip: String,
    pub node: NodeResources,
}

fn quoted_map(map: Option<&BTreeMap<String, String>>) -> String {
    map.into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}\n", serde_json::to_string(v).unwrap_or_default()))
        .collect::<String>()
        .trim_end_matches('\n')
        .to_string()
}

/// A `fieldRef` value. `for_volume` allows the whole-map forms.
pub fn field_value(
    pod: &Pod,
    rt: &Runtime,
    sel: &ObjectFieldSelector,
    for_volume: bool,
) -> Result<String, String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let path = sel.field_path.as_str();
    let subscript = |prefix: &str| {
        path.strip_prefix(prefix)
            .and_then(|r| r.strip_prefix("['").or_else(|| r.strip_prefix("[\"")))
            .and_then(|r| r.strip_suffix("']").or_else(|| r.strip_suffix("\"]")))
            .map(str::to_string)
    };
    if let Some(k) = subscript("metadata.labels") {
        return Ok(meta
            .labels
            .as_ref()
            .and_then(|m| m.get(&k))
            .cloned()
            .unwrap_or_default());
    }
    if let Some(k) = subscript("metadata.annotations") {
        return Ok(meta
            .annotations
            .as_ref()
            .and_then(|m| m.get(&k))
            .cloned()
            .unwrap_or_default());
    }
    Ok(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" if for_volume => quoted_map(meta.labels.as_ref()),
        "metadata.annotations" if for_volume => quoted_map(meta.annotations.as_ref()),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.hostIP" | "status.hostIPs" => rt.host_ip.clone(),
        "status.podIP" | "status.podIPs" => rt.pod_ip.clone().unwrap_or_default(),
        other => return Err(format!("unsupported fieldPath: {other}")),
    })
}

/// A `resourceFieldRef` value, rounded up to the divisor as Kubernetes does.
pub fn resource_value(
    pod: &Pod,
    default_container: &str,
    rt: &Runtime,
    sel: &ResourceFieldSelector,
) -> Result<String, String> {
    let name = sel.container_name.as_deref().unwrap_or(default_container);
    let spec = pod.spec.clone().unwrap_or_default();
    let container = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| c.name == name)
        .ok_or_else(|| format!("container {name:?} not found in the pod"))?;
    let (kind, resource) = sel
        .resource
        .split_once('.')
        .ok_or_else(|| format!("unsupported resource: {}", sel.resource))?;
    let value = match kind {
        "limits" => crate::resources::limit(container, resource),
        "requests" => crate::resources::request(container, resource),
        _ => return Err(format!("unsupported resource: {}", sel.resource)),
    };
    let value = value.unwrap_or(match (kind, resource) {
        ("limits", "cpu") => rt.node.cpu,
        ("limits", "memory") => rt.node.memory,
        ("limits", "ephemeral-storage") => rt.node.ephemeral_storage,
        _ => 0.0,
    });
    let divisor = sel
        .divisor
        .as_ref()
        .and_then(|q| crate::resources::parse_quantity(&q.0))
        .filter(|d| *d > 0.0)
        .unwrap_or(1.0);
    Ok(format!("{}", (value / divisor).ceil() as i64))
}

/// `$(VAR)` expansion with `$$` escaping; unknown references stay as written.
pub fn expand(input: &str, vars: &HashMap<String, String>) -> String {
    expand_with(input, |name| vars.get(name).cloned())
}

/// A mount's `subPathExpr` expanded as the kubelet does: every referenced
/// variable must be set and non-empty ("missing value for A, B"), and the
/// result must stay inside the volume.
pub fn expand_sub_path(expr: &str, vars: &HashMap<String, String>) -> Result<String, String> {
    let mut missing = std::collections::BTreeSet::new();
    let path = expand_with(expr, |name| {
        let value = vars.get(name).cloned().unwrap_or_default();
        if value.is_empty() {
            missing.insert(name.to_string());
        }
        Some(value)
    });
    if !missing.is_empty() {
        let names: Vec<String> = missing.into_iter().collect();
        return Err(format!("missing value for {}", names.join(", ")));
    }
    check_sub_path(&path)?;
    Ok(path)
}

/// The kubelet's checks on a resolved subPath (validation already refused
/// literal ones; expanded ones are only known here).
pub fn check_sub_path(path: &str) -> Result<(), String> {
    if path.starts_with('/') {
        return Err(format!(
            "error SubPath `{path}` must not be an absolute path"
        ));
    }
    if path.split('/').any(|part| part == "..") {
        return Err(format!(
            "unable to provision SubPath `{path}`: must not contain '..'"
        ));
    }
    Ok(())
}

/// `$(NAME)` references replaced by `lookup`; `None` keeps the reference as
/// written.
fn expand_with(input: &str, mut lookup: impl FnMut(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(inner) = after.strip_prefix('(') {
            match inner.find(')') {
                Some(end) => {
                    let name = &inner[..end];
                    match lookup(name) {
                        Some(v) => out.push_str(&v),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &inner[end + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = inner;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

async fn get_config_map(
    client: &kube::Client,
    ns: &str,
    name: &str,
) -> Result<Option<ConfigMap>, String> {
    Api::<ConfigMap>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .map_err(|e| format!("configmap {name:?}: {e}"))
}

async fn get_secret(client: &kube::Client, ns: &str, name: &str) -> Result<Option<Secret>, String> {
    Api::<Secret>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .map_err(|e| format!("secret {name:?}: {e}"))
}

fn config_map_data(cm: &ConfigMap) -> BTreeMap<String, Vec<u8>> {
    let mut data: BTreeMap<String, Vec<u8>> = cm
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
        .collect();
    for (k, v) in cm.binary_data.iter().flatten() {
        data.insert(k.clone(), v.0.clone());
    }
    data
}

fn secret_data(s: &Secret) -> BTreeMap<String, Vec<u8>> {
    let mut data: BTreeMap<String, Vec<u8>> = s
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect();
    for (k, v) in s.string_data.iter().flatten() {
        data.insert(k.clone(), v.clone().into_bytes());
    }
    data
}

/// The environment of a container, in Kubernetes' order: envFrom first,
/// then env (later entries win), `$(VAR)` expanded against earlier ones and
/// the Service variables, then the Service variables the container does not
/// set itself. The error is the CreateContainerConfigError message.
pub async fn env(
    client: &kube::Client,
    pod: &Pod,
    container: &Container,
    rt: &Runtime,
    service_env: Vec<(String, String)>,
) -> Result<Vec<(String, String)>, String> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut order: Vec<String> = Vec::new();
    // What `$(VAR)` sees: the container's own variables over the Services'.
    let mut vars: HashMap<String, String> = service_env.iter().cloned().collect();
    let mut own: std::collections::HashSet<String> = Default::default();
    let set = |k: String,
               v: String,
               order: &mut Vec<String>,
               vars: &mut HashMap<String, String>,
               own: &mut std::collections::HashSet<String>| {
        if own.insert(k.clone()) {
            order.push(k.clone());
        }
        vars.insert(k, v);
    };
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(r) = &from.config_map_ref {
            match get_config_map(client, ns, &r.name).await? {
                Some(cm) => {
                    for (k, v) in cm.data.iter().flatten() {
                        set(
                            format!("{prefix}{k}"),
                            v.clone(),
                            &mut order,
                            &mut vars,
                            &mut own,
                        );
                    }
                }
                None if r.optional == Some(true) => {}
                None => return Err(format!("configmap {:?} not found", r.name)),
            }
        }
        if let Some(r) = &from.secret_ref {
            match get_secret(client, ns, &r.name).await? {
                Some(s) => {
                    for (k, v) in secret_data(&s) {
                        set(
                            format!("{prefix}{k}"),
                            String::from_utf8_lossy(&v).to_string(),
                            &mut order,
                            &mut vars,
                            &mut own,
                        );
                    }
                }
                None if r.optional == Some(true) => {}
                None => return Err(format!("secret {:?} not found", r.name)),
            }
        }
    }
    for e in container.env.iter().flatten() {
        let value = if let Some(from) = &e.value_from {
            if let Some(f) = &from.field_ref {
                field_value(pod, rt, f, false)?
            } else if let Some(r) = &from.resource_field_ref {
                resource_value(pod, &container.name, rt, r)?
            } else if let Some(k) = &from.config_map_key_ref {
                let optional = k.optional == Some(true);
                match get_config_map(client, ns, &k.name).await? {
                    Some(cm) => match config_map_data(&cm).remove(&k.key) {
                        Some(v) => String::from_utf8_lossy(&v).to_string(),
                        None if optional => continue,
                        None => {
                            return Err(format!(
                                "couldn't find key {} in ConfigMap {ns}/{}",
                                k.key, k.name
                            ))
                        }
                    },
                    None if optional => continue,
                    None => return Err(format!("configmap {:?} not found", k.name)),
                }
            } else if let Some(k) = &from.secret_key_ref {
                let optional = k.optional == Some(true);
                match get_secret(client, ns, &k.name).await? {
                    Some(s) => match secret_data(&s).remove(&k.key) {
                        Some(v) => String::from_utf8_lossy(&v).to_string(),
                        None if optional => continue,
                        None => {
                            return Err(format!(
                                "couldn't find key {} in Secret {ns}/{}",
                                k.key, k.name
                            ))
                        }
                    },
                    None if optional => continue,
                    None => return Err(format!("secret {:?} not found", k.name)),
                }
            } else {
                String::new()
            }
        } else {
            expand(e.value.as_deref().unwrap_or(""), &vars)
        };
        set(e.name.clone(), value, &mut order, &mut vars, &mut own);
    }
    let mut out: Vec<(String, String)> = order
        .into_iter()
        .map(|k| {
            let v = vars.remove(&k).unwrap_or_default();
            (k, v)
        })
        .collect();
    out.extend(service_env.into_iter().filter(|(k, _)| !own.contains(k)));
    Ok(out)
}

fn mode(m: Option<i32>, default: u32) -> u32 {
    m.map(|m| m as u32 & 0o777).unwrap_or(default)
}

/// Files of a configMap or secret volume: every key, or just `items`.
fn key_files(
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&Vec<KeyToPath>>,
    default_mode: u32,
    what: &str,
    files: &mut BTreeMap<String, (Vec<u8>, u32)>,
) -> Result<(), String> {
    match items {
        Some(items) if !items.is_empty() => {
            for it in items {
                let content = data.get(&it.key).ok_or_else(|| {
                    format!(
                        "configured to use key {:?} which is not present in {what}",
                        it.key
                    )
                })?;
                files.insert(
                    it.path.clone(),
                    (content.clone(), mode(it.mode, default_mode)),
                );
            }
        }
        _ => {
            for (k, v) in data {
                files.insert(k.clone(), (v.clone(), default_mode));
            }
        }
    }
    Ok(())
}

fn downward_files(
    pod: &Pod,
    rt: &Runtime,
    items: &[DownwardAPIVolumeFile],
    default_mode: u32,
    files: &mut BTreeMap<String, (Vec<u8>, u32)>,
) -> Result<(), String> {
    let first = pod
        .spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .map(|c| c.name.clone())
        .unwrap_or_default();
    for it in items {
        let value = if let Some(f) = &it.field_ref {
            field_value(pod, rt, f, true)?
        } else if let Some(r) = &it.resource_field_ref {
            resource_value(pod, &first, rt, r)?
        } else {
            String::new()
        };
        files.insert(
            it.path.clone(),
            (value.into_bytes(), mode(it.mode, default_mode)),
        );
    }
    Ok(())
}

/// The lifetime asked for when a projected token sets none.
const TOKEN_TTL: i64 = 3607;

async fn service_account_token(
    client: &kube::Client,
    pod: &Pod,
    audience: Option<String>,
    expiration: Option<i64>,
) -> Result<Option<String>, String> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let sa = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .unwrap_or_else(|| "default".into());
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: audience.into_iter().collect(),
            expiration_seconds: Some(expiration.unwrap_or(TOKEN_TTL)),
            bound_object_ref: Some(BoundObjectReference {
                kind: Some("Pod".into()),
                api_version: Some("v1".into()),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
            }),
        },
        ..Default::default()
    };
    let api = Api::<ServiceAccount>::namespaced(client.clone(), ns);
    let body = serde_json::to_vec(&request).map_err(|e| e.to_string())?;
    match api
        .create_subresource::<TokenRequest>("token", &sa, &PostParams::default(), body)
        .await
    {
        Ok(t) => Ok(t.status.map(|s| s.token)),
        // An API server without TokenRequest: the pod runs without a token
        // rather than not at all.
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 405 => {
            tracing::warn!(pod = ?pod.metadata.name, "the API server does not issue service account tokens ({}); mounting none", e.message);
            Ok(None)
        }
        Err(e) => Err(format!("failed to fetch token: {e}")),
    }
}

/// Service account tokens already fetched for a pod's projected volumes,
/// by (volume, path): reused on resync until 80% of their lifetime is
/// over or they are older than `max_age`, when the kubelet fetches a fresh
/// one.
pub struct TokenCache {
    tokens: HashMap<(String, String), (String, std::time::Instant, std::time::Duration)>,
    max_age: std::time::Duration,
}

impl TokenCache {
    pub fn new(max_age: std::time::Duration) -> TokenCache {
        TokenCache {
            tokens: HashMap::new(),
            max_age,
        }
    }

    /// The token for (volume, path) unless it is due for a refresh.
    fn fresh(&self, key: &(String, String)) -> Option<String> {
        let (token, fetched, ttl) = self.tokens.get(key)?;
        let age = fetched.elapsed();
        (age < ttl.mul_f64(0.8) && age < self.max_age).then(|| token.clone())
    }
}

/// Whether a volume lives on a tmpfs: secret, downwardAPI and projected
/// volumes do (a projected one may hold a token or secrets), as the
/// kubelet makes them.
pub fn is_memory_backed(v: &k8s_openapi::api::core::v1::Volume) -> bool {
    v.secret.is_some() || v.downward_api.is_some() || v.projected.is_some()
}

/// Whether a volume holds files made from API data (configMap, secret,
/// downwardAPI, projected): the agent writes and refreshes those, and they
/// are mounted read-only, as the kubelet does.
pub fn is_api_data(v: &k8s_openapi::api::core::v1::Volume) -> bool {
    v.config_map.is_some()
        || v.secret.is_some()
        || v.downward_api.is_some()
        || v.projected.is_some()
}

/// A configMap (or secret) a pod's volumes show.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SourceRef {
    pub secret: bool,
    pub namespace: String,
    pub name: String,
}

/// The configMaps and secrets behind a pod's volumes (environment
/// variables are fixed at container start, as in Kubernetes).
pub fn volume_sources(pod: &Pod) -> std::collections::HashSet<SourceRef> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let at = |secret: bool, name: &str| SourceRef {
        secret,
        namespace: namespace.clone(),
        name: name.to_string(),
    };
    let mut out = std::collections::HashSet::new();
    for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        if let Some(c) = &v.config_map {
            out.insert(at(false, &c.name));
        }
        if let Some(name) = v.secret.as_ref().and_then(|s| s.secret_name.as_deref()) {
            out.insert(at(true, name));
        }
        for src in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            if let Some(c) = &src.config_map {
                out.insert(at(false, &c.name));
            }
            if let Some(s) = &src.secret {
                out.insert(at(true, &s.name));
            }
        }
    }
    out
}

/// Resolves the pod's volumes for the runtime. The error is the FailedMount
/// event message.
pub async fn volumes(
    client: &kube::Client,
    pod: &Pod,
    rt: &Runtime,
    tokens: &mut TokenCache,
) -> Result<BTreeMap<String, VolumeSource>, String> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut out = BTreeMap::new();
    for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let failed =
            |msg: String| format!("MountVolume.SetUp failed for volume {:?} : {msg}", v.name);
        let source = if let Some(e) = &v.empty_dir {
            VolumeSource::EmptyDir {
                memory: e.medium.as_deref() == Some("Memory"),
                size_limit: e
                    .size_limit
                    .as_ref()
                    .and_then(|q| crate::resources::parse_quantity(&q.0))
                    .map(|b| b as u64),
            }
        } else if let Some(h) = &v.host_path {
            VolumeSource::HostPath {
                path: h.path.clone().into(),
            }
        } else if let Some(c) = &v.config_map {
            let default_mode = mode(c.default_mode, 0o644);
            let mut files = BTreeMap::new();
            match get_config_map(client, ns, &c.name).await.map_err(failed)? {
                Some(cm) => key_files(
                    &config_map_data(&cm),
                    c.items.as_ref(),
                    default_mode,
                    &format!("ConfigMap {ns}/{}", c.name),
                    &mut files,
                )
                .map_err(failed)?,
                None if c.optional == Some(true) => {}
                None => return Err(failed(format!("configmap {:?} not found", c.name))),
            }
            VolumeSource::Files {
                files,
                default_mode,
            }
        } else if let Some(s) = &v.secret {
            let default_mode = mode(s.default_mode, 0o644);
            let name = s.secret_name.clone().unwrap_or_default();
            let mut files = BTreeMap::new();
            match get_secret(client, ns, &name).await.map_err(failed)? {
                Some(sec) => key_files(
                    &secret_data(&sec),
                    s.items.as_ref(),
                    default_mode,
                    &format!("Secret {ns}/{name}"),
                    &mut files,
                )
                .map_err(failed)?,
                None if s.optional == Some(true) => {}
                None => return Err(failed(format!("secret {name:?} not found"))),
            }
            VolumeSource::Files {
                files,
                default_mode,
            }
        } else if let Some(d) = &v.downward_api {
            let default_mode = mode(d.default_mode, 0o644);
            let mut files = BTreeMap::new();
            downward_files(
                pod,
                rt,
                d.items.as_deref().unwrap_or(&[]),
                default_mode,
                &mut files,
            )
            .map_err(failed)?;
            VolumeSource::Files {
                files,
                default_mode,
            }
        } else if let Some(p) = &v.projected {
            let default_mode = mode(p.default_mode, 0o644);
            let mut files = BTreeMap::new();
            for src in p.sources.iter().flatten() {
                if let Some(c) = &src.config_map {
                    match get_config_map(client, ns, &c.name).await.map_err(failed)? {
                        Some(cm) => key_files(
                            &config_map_data(&cm),
                            c.items.as_ref(),
                            default_mode,
                            &format!("ConfigMap {ns}/{}", c.name),
                            &mut files,
                        )
                        .map_err(failed)?,
                        None if c.optional == Some(true) => {}
                        None => return Err(failed(format!("configmap {:?} not found", c.name))),
                    }
                }
                if let Some(s) = &src.secret {
                    match get_secret(client, ns, &s.name).await.map_err(failed)? {
                        Some(sec) => key_files(
                            &secret_data(&sec),
                            s.items.as_ref(),
                            default_mode,
                            &format!("Secret {ns}/{}", s.name),
                            &mut files,
                        )
                        .map_err(failed)?,
                        None if s.optional == Some(true) => {}
                        None => return Err(failed(format!("secret {:?} not found", s.name))),
                    }
                }
                if let Some(d) = &src.downward_api {
                    downward_files(
                        pod,
                        rt,
                        d.items.as_deref().unwrap_or(&[]),
                        default_mode,
                        &mut files,
                    )
                    .map_err(failed)?;
                }
                if let Some(t) = &src.service_account_token {
                    let key = (v.name.clone(), t.path.clone());
                    let token = match tokens.fresh(&key) {
                        Some(token) => Some(token),
                        None => {
                            let ttl = t.expiration_seconds.unwrap_or(TOKEN_TTL).max(0) as u64;
                            let fresh = service_account_token(
                                client,
                                pod,
                                t.audience.clone(),
                                t.expiration_seconds,
                            )
                            .await
                            .map_err(failed)?;
                            if let Some(token) = &fresh {
                                tokens.tokens.insert(
                                    key,
                                    (
                                        token.clone(),
                                        std::time::Instant::now(),
                                        std::time::Duration::from_secs(ttl),
                                    ),
                                );
                            }
                            fresh
                        }
                    };
                    // The volume's mode; with fsGroup the kubelet writes
                    // the token 0600, which the group's read bit makes 0640.
                    let has_fs_group = pod
                        .spec
                        .as_ref()
                        .and_then(|s| s.security_context.as_ref())
                        .is_some_and(|sc| sc.fs_group.is_some());
                    let mode = if has_fs_group { 0o600 } else { default_mode };
                    if let Some(token) = token {
                        files.insert(t.path.clone(), (token.into_bytes(), mode));
                    }
                }
            }
            VolumeSource::Files {
                files,
                default_mode,
            }
        } else {
            // Persistent volumes and the like have no place on a single node
            // without a storage layer: an empty directory keeps the pod running.
            tracing::warn!(volume = %v.name, "unsupported volume type; using an empty directory");
            VolumeSource::EmptyDir {
                memory: false,
                size_limit: None,
            }
        };
        out.insert(v.name.clone(), source);
    }
    Ok(out)
}

/// The registry host of an image reference, as Docker normalizes it.
pub fn registry_host(image: &str) -> String {
    match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first.to_string()
        }
        _ => "docker.io".to_string(),
    }
}

/// Credentials for `image` from the pod's `imagePullSecrets`
/// (kubernetes.io/dockerconfigjson or dockercfg).
pub async fn pull_auth(client: &kube::Client, pod: &Pod, image: &str) -> Option<RegistryAuth> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let host = registry_host(image);
    for r in pod
        .spec
        .iter()
        .flat_map(|s| s.image_pull_secrets.iter().flatten())
    {
        let Ok(Some(secret)) = get_secret(client, ns, &r.name).await else {
            continue;
        };
        let data = secret_data(&secret);
        let json = data
            .get(".dockerconfigjson")
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
            .and_then(|v| v.get("auths").cloned())
            .or_else(|| {
                data.get(".dockercfg")
                    .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
            });
        if let Some(auth) = json.and_then(|auths| auth_for(&auths, &host)) {
            return Some(auth);
        }
    }
    None
}

fn auth_for(auths: &serde_json::Value, host: &str) -> Option<RegistryAuth> {
    let obj = auths.as_object()?;
    for (key, entry) in obj {
        let key_host = key
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap_or("");
        let matches = key_host == host
            || (host == "docker.io"
                && (key_host == "index.docker.io" || key_host == "registry-1.docker.io"));
        if !matches {
            continue;
        }
        if let (Some(u), Some(p)) = (entry.get("username"), entry.get("password")) {
            return Some(RegistryAuth {
                username: u.as_str()?.to_string(),
                password: p.as_str()?.to_string(),
            });
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(entry.get("auth")?.as_str()?)
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (u, p) = text.split_once(':')?;
        return Some(RegistryAuth {
            username: u.to_string(),
            password: p.to_string(),
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod() -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("prod".into()),
                uid: Some("u-1".into()),
                labels: Some(
                    [
                        ("app".to_string(), "web".to_string()),
                        ("tier".into(), "a b".into()),
                    ]
                    .into(),
                ),
                ..Default::default()
            },
            spec: Some(k8s_openapi::api::core::v1::PodSpec {
                node_name: Some("n1".into()),
                containers: vec![Container {
                    name: "main".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn sel(path: &str) -> ObjectFieldSelector {
        ObjectFieldSelector {
            field_path: path.into(),
            api_version: None,
        }
    }

    #[test]
    fn downward_fields() {
        let rt = Runtime {
            pod_ip: Some("10.42.0.5".into()),
            host_ip: "192.168.1.2".into(),
            node: NodeResources {
                cpu: 2.0,
                memory: 1024.0 * 1024.0 * 1024.0,
                ephemeral_storage: 0.0,
            },
        };
        let p = pod();
        assert_eq!(
            field_value(&p, &rt, &sel("metadata.name"), false).unwrap(),
            "web"
        );
        assert_eq!(
            field_value(&p, &rt, &sel("metadata.labels['app']"), false).unwrap(),
            "web"
        );
        assert_eq!(
            field_value(&p, &rt, &sel("status.podIP"), false).unwrap(),
            "10.42.0.5"
        );
        assert_eq!(
            field_value(&p, &rt, &sel("spec.nodeName"), false).unwrap(),
            "n1"
        );
        assert_eq!(
            field_value(&p, &rt, &sel("metadata.labels"), true).unwrap(),
            "app=\"web\"\ntier=\"a b\""
        );
        assert!(field_value(&p, &rt, &sel("metadata.labels"), false).is_err());
        let mem = ResourceFieldSelector {
            resource: "limits.memory".into(),
            divisor: Some(k8s_openapi::apimachinery::pkg::api::resource::Quantity(
                "1Mi".into(),
            )),
            container_name: None,
        };
        assert_eq!(resource_value(&p, "main", &rt, &mem).unwrap(), "1024");
        let cpu = ResourceFieldSelector {
            resource: "limits.cpu".into(),
            divisor: None,
            container_name: None,
        };
        assert_eq!(resource_value(&p, "main", &rt, &cpu).unwrap(), "2");
    }

    #[test]
    fn dollar_expansion() {
        let vars: HashMap<String, String> = [("A".to_string(), "1".to_string())].into();
        assert_eq!(expand("x$(A)y", &vars), "x1y");
        assert_eq!(expand("$(B)", &vars), "$(B)");
        assert_eq!(expand("$$(A)", &vars), "$(A)");
        assert_eq!(expand("cost $5 $(A", &vars), "cost $5 $(A");
    }

    #[test]
    fn sub_path_expressions_are_expanded_and_checked_as_the_kubelet_does() {
        let vars: HashMap<String, String> = [
            ("POD".to_string(), "web-0".to_string()),
            ("UP".to_string(), "..".to_string()),
            ("ABS".to_string(), "/tmp".to_string()),
            ("EMPTY".to_string(), String::new()),
        ]
        .into();
        assert_eq!(expand_sub_path("logs/$(POD)", &vars).unwrap(), "logs/web-0");
        assert_eq!(
            expand_sub_path("$(EMPTY)/$(NOPE)/$(POD)", &vars).unwrap_err(),
            "missing value for EMPTY, NOPE"
        );
        assert_eq!(
            expand_sub_path("$(UP)", &vars).unwrap_err(),
            "unable to provision SubPath `..`: must not contain '..'"
        );
        assert_eq!(
            expand_sub_path("$(ABS)", &vars).unwrap_err(),
            "error SubPath `/tmp` must not be an absolute path"
        );
    }

    #[test]
    fn key_to_path_files() {
        let data: BTreeMap<String, Vec<u8>> = [
            ("a".to_string(), b"1".to_vec()),
            ("b".into(), b"2".to_vec()),
        ]
        .into();
        let mut files = BTreeMap::new();
        key_files(&data, None, 0o644, "ConfigMap x/y", &mut files).unwrap();
        assert_eq!(files.len(), 2);
        let items = vec![KeyToPath {
            key: "b".into(),
            path: "dir/b.txt".into(),
            mode: Some(0o400),
        }];
        let mut files = BTreeMap::new();
        key_files(&data, Some(&items), 0o644, "ConfigMap x/y", &mut files).unwrap();
        assert_eq!(files.get("dir/b.txt"), Some(&(b"2".to_vec(), 0o400)));
        let missing = vec![KeyToPath {
            key: "zz".into(),
            path: "z".into(),
            mode: None,
        }];
        assert!(key_files(
            &data,
            Some(&missing),
            0o644,
            "ConfigMap x/y",
            &mut BTreeMap::new()
        )
        .is_err());
    }

    #[test]
    fn docker_config_auths() {
        let auths = serde_json::json!({
            "registry.example.com:5000": {"auth": base64::engine::general_purpose::STANDARD.encode("me:pw")},
            "https://index.docker.io/v1/": {"username": "hub", "password": "x"}
        });
        let a = auth_for(&auths, "registry.example.com:5000").unwrap();
        assert_eq!((a.username.as_str(), a.password.as_str()), ("me", "pw"));
        assert_eq!(
            auth_for(&auths, &registry_host("nginx")).unwrap().username,
            "hub"
        );
        assert!(auth_for(&auths, "other.io").is_none());
        assert_eq!(
            registry_host("127.0.0.1:5000/busybox:latest"),
            "127.0.0.1:5000"
        );
        assert_eq!(registry_host("library/busybox"), "docker.io");
    }
}
