//! The Pod Security Standards as checks over a pod's metadata and spec:
//! each check has Kubernetes' id, level, first policy version and wording
//! (pod-security-admission's `policy` package), so messages read exactly as
//! kube-apiserver's.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{ContainerPort, PodSpec, SecurityContext};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// A Pod Security Standards level, least strict first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Privileged,
    Baseline,
    Restricted,
}

impl Level {
    pub fn parse(s: &str) -> Option<Level> {
        match s {
            "privileged" => Some(Level::Privileged),
            "baseline" => Some(Level::Baseline),
            "restricted" => Some(Level::Restricted),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Privileged => "privileged",
            Level::Baseline => "baseline",
            Level::Restricted => "restricted",
        }
    }
}

/// A policy version: `v1.<minor>`, or `latest` (newer than any).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Version {
    Minor(u32),
    Latest,
}

impl Version {
    /// `latest` or `v1.x`, as the `-version` labels take them.
    pub fn parse(s: &str) -> Option<Version> {
        if s == "latest" {
            return Some(Version::Latest);
        }
        let minor = s.strip_prefix("v1.")?;
        let canonical = minor == "0" || !minor.starts_with('0');
        if minor.is_empty() || !canonical || !minor.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        minor.parse().ok().map(Version::Minor)
    }

    /// Whether this version includes what came in at v1.`minor`.
    fn at_least(self, minor: u32) -> bool {
        match self {
            Version::Latest => true,
            Version::Minor(m) => m >= minor,
        }
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Version::Latest => f.write_str("latest"),
            Version::Minor(m) => write!(f, "v1.{m}"),
        }
    }
}

/// A level at a version, shown as `restricted:latest`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LevelVersion {
    pub level: Level,
    pub version: Version,
}

impl std::fmt::Display for LevelVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.level.as_str(), self.version)
    }
}

/// One failed check: a short reason and what in the pod fails it.
#[derive(Debug, PartialEq, Eq)]
pub struct Violation {
    pub reason: String,
    pub detail: String,
}

/// A check at a policy version (the minor number); `None` if it passes.
type CheckFn = fn(&ObjectMeta, &PodSpec, Version) -> Option<Violation>;

struct Check {
    id: &'static str,
    level: Level,
    /// The first policy version with this check.
    since: u32,
    /// Baseline checks this (restricted) check replaces.
    overrides: &'static [&'static str],
    run: CheckFn,
}

/// Every check, in the order Kubernetes reports them: baseline then
/// restricted, each by id.
const CHECKS: &[Check] = &[
    check("appArmorProfile", Level::Baseline, 0, app_armor_profile),
    check(
        "capabilities_baseline",
        Level::Baseline,
        0,
        capabilities_baseline,
    ),
    check("hostNamespaces", Level::Baseline, 0, host_namespaces),
    check("hostPathVolumes", Level::Baseline, 0, host_path_volumes),
    check("hostPorts", Level::Baseline, 0, host_ports),
    check("privileged", Level::Baseline, 0, privileged),
    check("procMount", Level::Baseline, 0, proc_mount),
    check("seLinuxOptions", Level::Baseline, 0, se_linux_options),
    check(
        "seccompProfile_baseline",
        Level::Baseline,
        0,
        seccomp_baseline,
    ),
    check("sysctls", Level::Baseline, 0, sysctls),
    check(
        "windowsHostProcess",
        Level::Baseline,
        0,
        windows_host_process,
    ),
    check(
        "allowPrivilegeEscalation",
        Level::Restricted,
        8,
        allow_privilege_escalation,
    ),
    Check {
        overrides: &["capabilities_baseline"],
        ..check(
            "capabilities_restricted",
            Level::Restricted,
            22,
            capabilities_restricted,
        )
    },
    Check {
        overrides: &["hostPathVolumes"],
        ..check(
            "restrictedVolumes",
            Level::Restricted,
            0,
            restricted_volumes,
        )
    },
    check("runAsNonRoot", Level::Restricted, 0, run_as_non_root),
    check("runAsUser", Level::Restricted, 23, run_as_user),
    Check {
        overrides: &["seccompProfile_baseline"],
        ..check(
            "seccompProfile_restricted",
            Level::Restricted,
            19,
            seccomp_restricted,
        )
    },
];

const fn check(id: &'static str, level: Level, since: u32, run: CheckFn) -> Check {
    Check {
        id,
        level,
        since,
        overrides: &[],
        run,
    }
}

/// The checks of `lv` that fail for this pod, in Kubernetes' order.
pub fn evaluate(lv: LevelVersion, meta: &ObjectMeta, spec: &PodSpec) -> Vec<Violation> {
    let active = |c: &&Check| c.level <= lv.level && lv.version.at_least(c.since);
    let overridden: BTreeSet<&str> = CHECKS
        .iter()
        .filter(active)
        .flat_map(|c| c.overrides.iter().copied())
        .collect();
    CHECKS
        .iter()
        .filter(active)
        .filter(|c| !overridden.contains(c.id))
        .filter_map(|c| (c.run)(meta, spec, lv.version))
        .collect()
}

/// The reasons with their details in parentheses, as in `violates
/// PodSecurity "restricted:latest": privileged (container "c" must ...)`.
pub fn describe(violations: &[Violation]) -> String {
    let parts: Vec<String> = violations
        .iter()
        .map(|v| {
            if v.detail.is_empty() {
                v.reason.clone()
            } else {
                format!("{} ({})", v.reason, v.detail)
            }
        })
        .collect();
    parts.join(", ")
}

/// Only the reasons (the namespace-labelling warnings show these).
pub fn reasons(violations: &[Violation]) -> String {
    let parts: Vec<&str> = violations.iter().map(|v| v.reason.as_str()).collect();
    parts.join(", ")
}

fn violation(reason: impl Into<String>, detail: impl Into<String>) -> Option<Violation> {
    Some(Violation {
        reason: reason.into(),
        detail: detail.into(),
    })
}

fn join_quote<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> String {
    let quoted: Vec<String> = items
        .into_iter()
        .map(|s| format!("\"{}\"", s.as_ref()))
        .collect();
    quoted.join(", ")
}

fn plural(singular: &'static str, plural: &'static str, n: usize) -> &'static str {
    if n == 1 {
        singular
    } else {
        plural
    }
}

/// `container "a"` or `containers "a", "b"`.
fn containers_named(names: &[&str]) -> String {
    format!(
        "{} {}",
        plural("container", "containers", names.len()),
        join_quote(names)
    )
}

/// What the checks look at in any container, init or ephemeral.
struct ContainerView<'a> {
    name: &'a str,
    sc: Option<&'a SecurityContext>,
    ports: &'a [ContainerPort],
}

/// Init containers, containers, then ephemeral containers.
fn containers(spec: &PodSpec) -> Vec<ContainerView<'_>> {
    let plain = spec
        .init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter())
        .map(|c| ContainerView {
            name: &c.name,
            sc: c.security_context.as_ref(),
            ports: c.ports.as_deref().unwrap_or_default(),
        });
    let ephemeral = spec
        .ephemeral_containers
        .iter()
        .flatten()
        .map(|c| ContainerView {
            name: &c.name,
            sc: c.security_context.as_ref(),
            ports: c.ports.as_deref().unwrap_or_default(),
        });
    plain.chain(ephemeral).collect()
}

/// Names of the containers for which `bad` holds.
fn bad_containers<'a>(
    spec: &'a PodSpec,
    mut bad: impl FnMut(&ContainerView<'a>) -> bool,
) -> Vec<&'a str> {
    containers(spec)
        .into_iter()
        .filter(|c| bad(c))
        .map(|c| c.name)
        .collect()
}

fn is_windows(spec: &PodSpec) -> bool {
    spec.os.as_ref().is_some_and(|os| os.name == "windows")
}

/// `pod and containers "a"` style list of who set something forbidden.
fn setters(pod: bool, containers: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    if pod {
        out.push("pod".to_string());
    }
    if !containers.is_empty() {
        out.push(containers_named(containers));
    }
    out
}

fn app_armor_profile(meta: &ObjectMeta, spec: &PodSpec, _: Version) -> Option<Violation> {
    let allowed = |t: &str| matches!(t, "RuntimeDefault" | "Localhost");
    let mut bad_values = BTreeSet::new();
    let pod_profile = spec
        .security_context
        .as_ref()
        .and_then(|sc| sc.app_armor_profile.as_ref());
    let pod_bad = pod_profile.is_some_and(|p| !allowed(&p.type_));
    if let Some(p) = pod_profile.filter(|_| pod_bad) {
        bad_values.insert(p.type_.clone());
    }
    let bad = bad_containers(spec, |c| {
        match c.sc.and_then(|sc| sc.app_armor_profile.as_ref()) {
            Some(p) if !allowed(&p.type_) => {
                bad_values.insert(p.type_.clone());
                true
            }
            _ => false,
        }
    });
    let mut setters = setters(pod_bad, &bad);
    let mut values: Vec<String> = bad_values.into_iter().collect();
    let mut annotations: Vec<String> = meta
        .annotations
        .iter()
        .flatten()
        .filter(|(k, v)| {
            k.starts_with("container.apparmor.security.beta.kubernetes.io/")
                && !(v.is_empty() || *v == "runtime/default" || v.starts_with("localhost/"))
        })
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect();
    if !annotations.is_empty() {
        annotations.sort();
        setters.push(plural("annotation", "annotations", annotations.len()).to_string());
        values.extend(annotations);
    }
    if setters.is_empty() {
        return None;
    }
    violation(
        plural(
            "forbidden AppArmor profile",
            "forbidden AppArmor profiles",
            values.len(),
        ),
        format!(
            "{} must not set AppArmor profile type to {}",
            setters.join(" and "),
            join_quote(&values)
        ),
    )
}

const BASELINE_CAPABILITIES: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

fn added_capabilities<'a>(c: &ContainerView<'a>) -> &'a [String] {
    c.sc.and_then(|sc| sc.capabilities.as_ref())
        .and_then(|caps| caps.add.as_deref())
        .unwrap_or_default()
}

fn capabilities_baseline(_: &ObjectMeta, spec: &PodSpec, _: Version) -> Option<Violation> {
    let mut extra = BTreeSet::new();
    let bad = bad_containers(spec, |c| {
        let mut found = false;
        for cap in added_capabilities(c) {
            if !BASELINE_CAPABILITIES.contains(&cap.as_str()) {
                extra.insert(cap.clone());
                found = true;
            }
        }
        found
    });
    if bad.is_empty() {
        return None;
    }
    violation(
        "non-default capabilities",
        format!(
            "{} must not include {} in securityContext.capabilities.add",
            containers_named(&bad),
            join_quote(&extra)
        ),
    )
}

fn capabilities_restricted(_: &ObjectMeta, spec: &PodSpec, v: Version) -> Option<Violation> {
    if v.at_least(25) && is_windows(spec) {
        return None;
    }
    let missing_drop_all = bad_containers(spec, |c| {
        !c.sc
            .and_then(|sc| sc.capabilities.as_ref())
            .and_then(|caps| caps.drop.as_ref())
            .is_some_and(|d| d.iter().any(|x| x == "ALL"))
    });
    let mut forbidden = BTreeSet::new();
    let adding = bad_containers(spec, |c| {
        let mut found = false;
        for cap in added_capabilities(c) {
            if cap != "NET_BIND_SERVICE" {
                forbidden.insert(cap.clone());
                found = true;
            }
        }
        found
    });
    let mut details = Vec::new();
    if !missing_drop_all.is_empty() {
        details.push(format!(
            "{} must set securityContext.capabilities.drop=[\"ALL\"]",
            containers_named(&missing_drop_all)
        ));
    }
    if !adding.is_empty() {
        details.push(format!(
            "{} must not include {} in securityContext.capabilities.add",
            containers_named(&adding),
            join_quote(&forbidden)
        ));
    }
    if details.is_empty() {
        return None;
    }
    violation("unrestricted capabilities", details.join("; "))
}

fn host_namespaces(_: &ObjectMeta, spec: &PodSpec, _: Version) -> Option<Violation> {
    let set = [
        (spec.host_network, "hostNetwork=true"),
        (spec.host_pid, "hostPID=true"),
        (spec.host_ipc, "hostIPC=true"),
    ];
    let found: Vec<&str> = set
        .iter()
        .filter(|(on, _)| *on == Some(true))
        .map(|(_, s)| *s)
        .collect();
    if found.is_empty() {
        return None;
    }
    violation("host namespaces", found.join(", "))
}

fn host_path_volumes(_: &ObjectMeta, spec: &PodSpec, _: Version) -> Option<Violation> {
    let names: Vec<&str> = spec
        .volumes
        .iter()
        .flatten()
        .filter(|v| v.host_path.is_some())
        .map(|v| v.name.as_str())
        .collect();
    if names.is_empty() {
        return None;
    }
    violation(
        "hostPath volumes",
        format!(
            "{} {}",
            plural("volume", "volumes", names.len()),
            join_quote(&names)
        ),
    )
}

fn host_ports(_: &ObjectMeta, spec: &PodSpec, _: Version) -> Option<Violation> {
    let mut ports = BTreeSet::new();
    let bad = bad_containers(spec, |c| {
        let mut found = false;
        for p in c.ports {
            if let Some(hp) = p.host_port.filter(|hp| *hp != 0) {
                // Sorted as text, as Kubernetes does.
                ports.insert(hp.to_string());
                found = true;
            }
        }
        found
    });
    if bad.is_empty() {
        return None;
    }
    let ports: Vec<String> = ports.into_iter().collect();
    violation(
        "hostPort",
        format!(
            "{} {} {} {}",
            containers_named(&bad),
            plural("uses", "use", bad.len()),
            plural("hostPort", "hostPorts", ports.len()),
            ports.join(", ")
        ),
    )
}

fn privileged(_: &ObjectMeta, spec: &PodSpec, _: Version) -> Option<Violation> {
    let bad = bad_containers(spec, |c| c.sc.and_then(|sc| sc.privileged) == Some(true));
    if bad.is_empty() {
        return None;
    }
    violation(
        "privileged",
        format!(
            "{} must not set securityContext.privileged=true",
            containers_named(&bad)
        ),
    )
}

fn proc_mount(_: &ObjectMeta, spec: &PodSpec, _: Version) -> Option<Violation> {
    let mut types = BTreeSet::new();
    let bad = bad_containers(spec, |c| {
        match c.sc.and_then(|sc| sc.proc_mount.as_deref()) {
            Some(t) if t != "Default" => {
                types.insert(t.to_string());
                true
            }
            _ => false,
        }
    });
    if bad.is_empty() {
        return None;
    }
    violation(
        "procMount",
        format!(
            "{} must not set securityContext.procMount to {}",
            containers_named(&bad),
            join_quote(&types)
        ),
    )
}

fn se_linux_options(_: &ObjectMeta, spec: &PodSpec, v: Version) -> Option<Violation> {
    let mut allowed = vec!["", "container_t", "container_init_t", "container_kvm_t"];
    if v.at_least(31) {
        allowed.push("container_engine_t");
    }
    let mut bad_types = BTreeSet::new();
    let (mut set_user, mut set_role) = (false, false);
    let mut valid = |o: &k8s_openapi::api::core::v1::SELinuxOptions| {
        let t = o.type_.as_deref().unwrap_or_default();
        let mut ok = true;
        if !allowed.contains(&t) {
            bad_types.insert(t.to_string());
            ok = false;
        }
        if o.user.as_deref().is_some_and(|u| !u.is_empty()) {
            set_user = true;
            ok = false;
        }
        if o.role.as_deref().is_some_and(|r| !r.is_empty()) {
            set_role = true;
            ok = false;
        }
        ok
    };
    let pod_bad = spec
        .security_context
        .as_ref()
        .and_then(|sc| sc.se_linux_options.as_ref())
        .is_some_and(|o| !valid(o));
    let bad = bad_containers(spec, |c| {
        c.sc.and_then(|sc| sc.se_linux_options.as_ref())
            .is_some_and(|o| !valid(o))
    });
    let setters = setters(pod_bad, &bad);
    if setters.is_empty() {
        return None;
    }
    let mut data = Vec::new();
    if !bad_types.is_empty() {
        data.push(format!(
            "{} {}",
            plural("type", "types", bad_types.len()),
            join_quote(&bad_types)
        ));
    }
    if set_user {
        data.push("user may not be set".to_string());
    }
    if set_role {
        data.push("role may not be set".to_string());
    }
    violation(
        "seLinuxOptions",
        format!(
            "{} set forbidden securityContext.seLinuxOptions: {}",
            setters.join(" and "),
            data.join("; ")
        ),
    )
}

fn valid_seccomp(t: &str) -> bool {
    matches!(t, "Localhost" | "RuntimeDefault")
}

const SECCOMP_POD_ANNOTATION: &str = "seccomp.security.alpha.kubernetes.io/pod";
const SECCOMP_CONTAINER_ANNOTATION: &str = "container.seccomp.security.alpha.kubernetes.io/";

/// Before v1.19 the profile was set by annotations.
fn seccomp_annotations(meta: &ObjectMeta, spec: &PodSpec) -> Option<Violation> {
    let valid =
        |v: &str| v == "runtime/default" || v == "docker/default" || v.starts_with("localhost/");
    let annotations = meta.annotations.as_ref()?;
    let mut forbidden = BTreeSet::new();
    let mut keys = vec![SECCOMP_POD_ANNOTATION.to_string()];
    keys.extend(
        containers(spec)
            .iter()
            .map(|c| format!("{SECCOMP_CONTAINER_ANNOTATION}{}", c.name)),
    );
    for key in keys {
        if let Some(v) = annotations.get(&key).filter(|v| !valid(v)) {
            forbidden.insert(format!("{key}={v:?}"));
        }
    }
    if forbidden.is_empty() {
        return None;
    }
    let forbidden: Vec<String> = forbidden.into_iter().collect();
    violation(
        "seccompProfile",
        format!(
            "forbidden {} {}",
            plural("annotation", "annotations", forbidden.len()),
            forbidden.join(", ")
        ),
    )
}

/// The seccomp profile check of both levels: `require` also fails
/// containers that set no profile where the pod sets none either.
fn seccomp_fields(spec: &PodSpec, require: bool) -> Option<Violation> {
    let mut bad_values = BTreeSet::new();
    let pod_type = spec
        .security_context
        .as_ref()
        .and_then(|sc| sc.seccomp_profile.as_ref())
        .map(|p| p.type_.as_str());
    let pod_bad = pod_type.is_some_and(|t| !valid_seccomp(t));
    if let Some(t) = pod_type.filter(|_| pod_bad) {
        bad_values.insert(t.to_string());
    }
    let pod_set = pod_type.is_some() && !pod_bad;
    let mut implicit = Vec::new();
    let explicit = bad_containers(spec, |c| {
        match c.sc.and_then(|sc| sc.seccomp_profile.as_ref()) {
            Some(p) if !valid_seccomp(&p.type_) => {
                bad_values.insert(p.type_.clone());
                true
            }
            Some(_) => false,
            None => {
                if !pod_set {
                    implicit.push(c.name);
                }
                false
            }
        }
    });
    let setters = setters(pod_bad, &explicit);
    if !setters.is_empty() {
        return violation(
            "seccompProfile",
            format!(
                "{} must not set securityContext.seccompProfile.type to {}",
                setters.join(" and "),
                join_quote(&bad_values)
            ),
        );
    }
    if require && !implicit.is_empty() {
        return violation(
            "seccompProfile",
            format!(
                "pod or {} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\"",
                containers_named(&implicit)
            ),
        );
    }
    None
}

fn seccomp_baseline(meta: &ObjectMeta, spec: &PodSpec, v: Version) -> Option<Violation> {
    if v.at_least(19) {
        seccomp_fields(spec, false)
    } else {
        seccomp_annotations(meta, spec)
    }
}

fn seccomp_restricted(_: &ObjectMeta, spec: &PodSpec, v: Version) -> Option<Violation> {
    if v.at_least(25) && is_windows(spec) {
        return None;
    }
    seccomp_fields(spec, true)
}

fn sysctls(_: &ObjectMeta, spec: &PodSpec, v: Version) -> Option<Violation> {
    let mut allowed = vec![
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_unprivileged_port_start",
    ];
    if v.at_least(27) {
        allowed.push("net.ipv4.ip_local_reserved_ports");
    }
    if v.at_least(29) {
        allowed.extend([
            "net.ipv4.tcp_keepalive_time",
            "net.ipv4.tcp_fin_timeout",
            "net.ipv4.tcp_keepalive_intvl",
            "net.ipv4.tcp_keepalive_probes",
        ]);
    }
    if v.at_least(32) {
        allowed.extend(["net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"]);
    }
    let forbidden: Vec<&str> = spec
        .security_context
        .as_ref()
        .and_then(|sc| sc.sysctls.as_ref())
        .into_iter()
        .flatten()
        .map(|s| s.name.as_str())
        .filter(|n| !allowed.contains(n))
        .collect();
    if forbidden.is_empty() {
        return None;
    }
    violation("forbidden sysctls", forbidden.join(", "))
}

fn windows_host_process(_: &ObjectMeta, spec: &PodSpec, _: Version) -> Option<Violation> {
    let host_process = |w: Option<&k8s_openapi::api::core::v1::WindowsSecurityContextOptions>| {
        w.and_then(|w| w.host_process) == Some(true)
    };
    let bad = bad_containers(spec, |c| {
        host_process(c.sc.and_then(|sc| sc.windows_options.as_ref()))
    });
    let pod = host_process(
        spec.security_context
            .as_ref()
            .and_then(|sc| sc.windows_options.as_ref()),
    );
    let setters = setters(pod, &bad);
    if setters.is_empty() {
        return None;
    }
    violation(
        "hostProcess",
        format!(
            "{} must not set securityContext.windowsOptions.hostProcess=true",
            setters.join(" and ")
        ),
    )
}

fn allow_privilege_escalation(_: &ObjectMeta, spec: &PodSpec, v: Version) -> Option<Violation> {
    if v.at_least(25) && is_windows(spec) {
        return None;
    }
    let bad = bad_containers(spec, |c| {
        c.sc.and_then(|sc| sc.allow_privilege_escalation) != Some(false)
    });
    if bad.is_empty() {
        return None;
    }
    violation(
        "allowPrivilegeEscalation != false",
        format!(
            "{} must set securityContext.allowPrivilegeEscalation=false",
            containers_named(&bad)
        ),
    )
}

fn restricted_volumes(_: &ObjectMeta, spec: &PodSpec, _: Version) -> Option<Violation> {
    let mut names = Vec::new();
    let mut types = BTreeSet::new();
    for v in spec.volumes.iter().flatten() {
        let allowed = v.config_map.is_some()
            || v.csi.is_some()
            || v.downward_api.is_some()
            || v.empty_dir.is_some()
            || v.ephemeral.is_some()
            || v.persistent_volume_claim.is_some()
            || v.projected.is_some()
            || v.secret.is_some();
        if allowed {
            continue;
        }
        names.push(v.name.as_str());
        let kinds = [
            (v.host_path.is_some(), "hostPath"),
            (v.gce_persistent_disk.is_some(), "gcePersistentDisk"),
            (v.aws_elastic_block_store.is_some(), "awsElasticBlockStore"),
            (v.git_repo.is_some(), "gitRepo"),
            (v.nfs.is_some(), "nfs"),
            (v.iscsi.is_some(), "iscsi"),
            (v.glusterfs.is_some(), "glusterfs"),
            (v.rbd.is_some(), "rbd"),
            (v.flex_volume.is_some(), "flexVolume"),
            (v.cinder.is_some(), "cinder"),
            (v.cephfs.is_some(), "cephfs"),
            (v.flocker.is_some(), "flocker"),
            (v.fc.is_some(), "fc"),
            (v.azure_file.is_some(), "azureFile"),
            (v.vsphere_volume.is_some(), "vsphereVolume"),
            (v.quobyte.is_some(), "quobyte"),
            (v.azure_disk.is_some(), "azureDisk"),
            (v.photon_persistent_disk.is_some(), "photonPersistentDisk"),
            (v.portworx_volume.is_some(), "portworxVolume"),
            (v.scale_io.is_some(), "scaleIO"),
            (v.storageos.is_some(), "storageos"),
        ];
        let kind = kinds
            .iter()
            .find(|(set, _)| *set)
            .map_or("unknown", |(_, k)| k);
        types.insert(kind);
    }
    if names.is_empty() {
        return None;
    }
    violation(
        "restricted volume types",
        format!(
            "{} {} {} {} {}",
            plural("volume", "volumes", names.len()),
            join_quote(&names),
            plural("uses", "use", names.len()),
            plural(
                "restricted volume type",
                "restricted volume types",
                types.len()
            ),
            join_quote(&types)
        ),
    )
}

fn run_as_non_root(_: &ObjectMeta, spec: &PodSpec, _: Version) -> Option<Violation> {
    let pod = spec
        .security_context
        .as_ref()
        .and_then(|sc| sc.run_as_non_root);
    let mut implicit = Vec::new();
    let explicit = bad_containers(spec, |c| match c.sc.and_then(|sc| sc.run_as_non_root) {
        Some(v) => !v,
        None => {
            if pod != Some(true) {
                implicit.push(c.name);
            }
            false
        }
    });
    let setters = setters(pod == Some(false), &explicit);
    if !setters.is_empty() {
        return violation(
            "runAsNonRoot != true",
            format!(
                "{} must not set securityContext.runAsNonRoot=false",
                setters.join(" and ")
            ),
        );
    }
    if !implicit.is_empty() {
        return violation(
            "runAsNonRoot != true",
            format!(
                "pod or {} must set securityContext.runAsNonRoot=true",
                containers_named(&implicit)
            ),
        );
    }
    None
}

fn run_as_user(_: &ObjectMeta, spec: &PodSpec, _: Version) -> Option<Violation> {
    let pod = spec.security_context.as_ref().and_then(|sc| sc.run_as_user) == Some(0);
    let bad = bad_containers(spec, |c| c.sc.and_then(|sc| sc.run_as_user) == Some(0));
    let setters = setters(pod, &bad);
    if setters.is_empty() {
        return None;
    }
    violation(
        "runAsUser=0",
        format!("{} must not set runAsUser=0", setters.join(" and ")),
    )
}

#[cfg(test)]
mod tests;
