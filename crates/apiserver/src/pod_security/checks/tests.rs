use serde_json::{json, Value};

use super::*;

const LATEST_BASELINE: LevelVersion = LevelVersion {
    level: Level::Baseline,
    version: Version::Latest,
};
const LATEST_RESTRICTED: LevelVersion = LevelVersion {
    level: Level::Restricted,
    version: Version::Latest,
};

/// A pod that passes `restricted`, with `patch` merged into its spec.
fn restricted_pod(patch: Value) -> (ObjectMeta, PodSpec) {
    let mut spec = json!({
        "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{
            "name": "c",
            "image": "i",
            "securityContext": {
                "allowPrivilegeEscalation": false,
                "capabilities": {"drop": ["ALL"]}
            }
        }]
    });
    merge(&mut spec, patch);
    (ObjectMeta::default(), serde_json::from_value(spec).unwrap())
}

/// A JSON merge patch: objects merge, anything else replaces.
fn merge(target: &mut Value, patch: Value) {
    match (target.as_object_mut(), patch) {
        (Some(t), Value::Object(p)) => {
            for (k, v) in p {
                merge(t.entry(k).or_insert(Value::Null), v);
            }
        }
        (_, p) => *target = p,
    }
}

fn failures(lv: LevelVersion, patch: Value) -> String {
    let (meta, spec) = restricted_pod(patch);
    describe(&evaluate(lv, &meta, &spec))
}

fn container(sc: Value) -> Value {
    json!({"containers": [{"name": "c", "image": "i", "securityContext": sc}]})
}

#[test]
fn a_restricted_pod_passes_every_level() {
    assert_eq!(failures(LATEST_RESTRICTED, json!({})), "");
    assert_eq!(failures(LATEST_BASELINE, json!({})), "");
}

#[test]
fn a_plain_pod_passes_baseline_and_fails_restricted_on_each_count() {
    let spec: PodSpec =
        serde_json::from_value(json!({"containers": [{"name": "c", "image": "i"}]})).unwrap();
    let meta = ObjectMeta::default();
    assert!(evaluate(LATEST_BASELINE, &meta, &spec).is_empty());
    assert_eq!(
        describe(&evaluate(LATEST_RESTRICTED, &meta, &spec)),
        "allowPrivilegeEscalation != false (container \"c\" must set securityContext.allowPrivilegeEscalation=false), \
         unrestricted capabilities (container \"c\" must set securityContext.capabilities.drop=[\"ALL\"]), \
         runAsNonRoot != true (pod or container \"c\" must set securityContext.runAsNonRoot=true), \
         seccompProfile (pod or container \"c\" must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")"
    );
    let privileged = LevelVersion {
        level: Level::Privileged,
        version: Version::Latest,
    };
    assert!(evaluate(privileged, &meta, &spec).is_empty());
}

#[test]
fn privileged_containers() {
    let patch = container(json!({
        "privileged": true, "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}
    }));
    assert_eq!(
        failures(LATEST_BASELINE, patch),
        "privileged (container \"c\" must not set securityContext.privileged=true)"
    );
}

#[test]
fn baseline_capabilities() {
    let patch = container(json!({"capabilities": {"add": ["NET_ADMIN", "CHOWN", "SYS_ADMIN"]}}));
    assert_eq!(
        failures(LATEST_BASELINE, patch.clone()),
        "non-default capabilities (container \"c\" must not include \"NET_ADMIN\", \"SYS_ADMIN\" in securityContext.capabilities.add)"
    );
    // Restricted replaces the baseline check with its own.
    assert!(failures(LATEST_RESTRICTED, patch).contains(
        "unrestricted capabilities (container \"c\" must set securityContext.capabilities.drop=[\"ALL\"]; \
         container \"c\" must not include \"CHOWN\", \"NET_ADMIN\", \"SYS_ADMIN\" in securityContext.capabilities.add)"
    ));
}

#[test]
fn host_namespaces_and_ports() {
    assert_eq!(
        failures(
            LATEST_BASELINE,
            json!({"hostNetwork": true, "hostIPC": true})
        ),
        "host namespaces (hostNetwork=true, hostIPC=true)"
    );
    let ports = json!({"containers": [
        {"name": "a", "image": "i", "ports": [{"containerPort": 80, "hostPort": 8080}, {"containerPort": 90, "hostPort": 10}]},
        {"name": "b", "image": "i", "ports": [{"containerPort": 81}]}
    ]});
    assert_eq!(
        failures(LATEST_BASELINE, ports),
        "hostPort (container \"a\" uses hostPorts 10, 8080)"
    );
}

#[test]
fn host_path_and_restricted_volumes() {
    let volumes = json!({"volumes": [
        {"name": "h", "hostPath": {"path": "/"}},
        {"name": "e", "emptyDir": {}},
        {"name": "n", "nfs": {"server": "s", "path": "/"}}
    ]});
    assert_eq!(
        failures(LATEST_BASELINE, volumes.clone()),
        "hostPath volumes (volume \"h\")"
    );
    assert_eq!(
        failures(LATEST_RESTRICTED, volumes),
        "restricted volume types (volumes \"h\", \"n\" use restricted volume types \"hostPath\", \"nfs\")"
    );
}

#[test]
fn proc_mount_sysctls_and_host_process() {
    assert_eq!(
        failures(LATEST_BASELINE, container(json!({"procMount": "Unmasked"}))),
        "procMount (container \"c\" must not set securityContext.procMount to \"Unmasked\")"
    );
    let sysctls = json!({"securityContext": {"sysctls": [
        {"name": "kernel.msgmax", "value": "1"}, {"name": "net.ipv4.tcp_rmem", "value": "1 2 3"}
    ]}});
    assert_eq!(
        failures(LATEST_BASELINE, sysctls.clone()),
        "forbidden sysctls (kernel.msgmax)"
    );
    let v1_31 = LevelVersion {
        level: Level::Baseline,
        version: Version::Minor(31),
    };
    assert_eq!(
        failures(v1_31, sysctls),
        "forbidden sysctls (kernel.msgmax, net.ipv4.tcp_rmem)"
    );
    let host_process = json!({"securityContext": {"windowsOptions": {"hostProcess": true}}});
    assert_eq!(
        failures(LATEST_BASELINE, host_process),
        "hostProcess (pod must not set securityContext.windowsOptions.hostProcess=true)"
    );
}

#[test]
fn selinux_and_apparmor() {
    let selinux = json!({"securityContext": {"seLinuxOptions": {"type": "spc_t", "user": "u"}}});
    assert_eq!(
        failures(LATEST_BASELINE, selinux),
        "seLinuxOptions (pod set forbidden securityContext.seLinuxOptions: type \"spc_t\"; user may not be set)"
    );
    let apparmor = container(json!({"appArmorProfile": {"type": "Unconfined"}}));
    assert_eq!(
        failures(LATEST_BASELINE, apparmor),
        "forbidden AppArmor profile (container \"c\" must not set AppArmor profile type to \"Unconfined\")"
    );
}

#[test]
fn seccomp_profiles() {
    let unconfined = json!({"securityContext": {"seccompProfile": {"type": "Unconfined"}}});
    assert_eq!(
        failures(LATEST_BASELINE, unconfined),
        "seccompProfile (pod must not set securityContext.seccompProfile.type to \"Unconfined\")"
    );
    // Before v1.19 only the annotations counted.
    let (mut meta, spec) = restricted_pod(json!({}));
    meta.annotations = Some(
        [(
            "seccomp.security.alpha.kubernetes.io/pod".to_string(),
            "unconfined".to_string(),
        )]
        .into(),
    );
    let v1_18 = LevelVersion {
        level: Level::Baseline,
        version: Version::Minor(18),
    };
    assert_eq!(
        describe(&evaluate(v1_18, &meta, &spec)),
        "seccompProfile (forbidden annotation seccomp.security.alpha.kubernetes.io/pod=\"unconfined\")"
    );
    assert!(evaluate(LATEST_BASELINE, &meta, &spec).is_empty());
}

#[test]
fn privilege_escalation_and_running_as_root() {
    let patch = json!({
        "securityContext": {"runAsUser": 0, "runAsNonRoot": false},
        "containers": [{"name": "c", "image": "i", "securityContext": {
            "allowPrivilegeEscalation": true, "capabilities": {"drop": ["ALL"]}
        }}]
    });
    assert_eq!(
        failures(LATEST_RESTRICTED, patch),
        "allowPrivilegeEscalation != false (container \"c\" must set securityContext.allowPrivilegeEscalation=false), \
         runAsNonRoot != true (pod must not set securityContext.runAsNonRoot=false), \
         runAsUser=0 (pod must not set runAsUser=0)"
    );
}

#[test]
fn versions_parse_as_the_labels_take_them() {
    assert_eq!(Version::parse("latest"), Some(Version::Latest));
    assert_eq!(Version::parse("v1.25"), Some(Version::Minor(25)));
    assert_eq!(Version::parse("v1.0"), Some(Version::Minor(0)));
    for bad in ["1.25", "v1.025", "v2.1", "v1.", "v1.x"] {
        assert_eq!(Version::parse(bad), None, "{bad}");
    }
    // Checks newer than the version do not apply.
    let v1_7 = LevelVersion {
        level: Level::Restricted,
        version: Version::Minor(7),
    };
    assert!(!failures(v1_7, container(json!({}))).contains("allowPrivilegeEscalation"));
}
