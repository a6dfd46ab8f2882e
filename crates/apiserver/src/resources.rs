//! The resource types this server serves, as data: names, scope, verbs and the
//! typed round trip that normalises a decoded object.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::registry::{self, Strategy};

pub struct ResourceDef {
    pub group: &'static str,
    pub version: &'static str,
    /// Plural, lower case: the URL segment.
    pub name: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    /// Subresources besides the main resource (`status`, `binding`, ...).
    pub subresources: &'static [&'static str],
    /// The OpenAPI schema name (`io.k8s.api.core.v1.Pod`).
    pub schema: &'static str,
    /// What is particular to this resource (defaults, validation, status
    /// and delete rules).
    pub strategy: &'static dyn Strategy,
    /// Decodes into the typed object and back, which drops fields the type
    /// does not know and checks field types. Errors are serde's message.
    pub normalize: fn(Value) -> Result<Value, String>,
}

impl ResourceDef {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// Storage key prefix for all objects of this type (ends with '/').
    pub fn prefix(&self) -> String {
        format!("/registry/{}/", self.storage_name())
    }

    fn storage_name(&self) -> &'static str {
        self.name
    }

    /// Key prefix for one namespace, or the whole type when `ns` is None.
    pub fn ns_prefix(&self, ns: Option<&str>) -> String {
        match (self.namespaced, ns) {
            (true, Some(ns)) => format!("{}{}/", self.prefix(), ns),
            _ => self.prefix(),
        }
    }

    pub fn key(&self, ns: Option<&str>, name: &str) -> String {
        match (self.namespaced, ns) {
            (true, Some(ns)) => format!("{}{}/{}", self.prefix(), ns, name),
            _ => format!("{}{}", self.prefix(), name),
        }
    }

    pub fn verbs(&self) -> &'static [&'static str] {
        self.strategy.verbs()
    }

    /// The kind a subresource answers with, and the verbs it serves.
    pub fn subresource(&self, sub: &str) -> (&'static str, &'static [&'static str]) {
        match sub {
            "status" | "approval" | "ephemeralcontainers" => {
                (self.kind, &["get", "patch", "update"])
            }
            "scale" => ("Scale", &["get", "patch", "update"]),
            "binding" => ("Binding", &["create"]),
            "eviction" => ("Eviction", &["create"]),
            "finalize" => (self.kind, &["update"]),
            "log" => ("Pod", &["get"]),
            "token" => ("TokenRequest", &["create"]),
            "attach" => ("PodAttachOptions", &["create", "get"]),
            "portforward" => ("PodPortForwardOptions", &["create", "get"]),
            "proxy" => (
                match self.kind {
                    "Pod" => "PodProxyOptions",
                    "Service" => "ServiceProxyOptions",
                    _ => "NodeProxyOptions",
                },
                &["create", "delete", "get", "patch", "update"],
            ),
            _ => ("PodExecOptions", &["create", "get"]),
        }
    }

    /// The API group and version of a subresource's kind.
    pub fn subresource_group_version(&self, sub: &str) -> (&'static str, &'static str) {
        match sub {
            "token" => ("authentication.k8s.io", "v1"),
            "scale" => ("autoscaling", "v1"),
            "eviction" => ("policy", "v1"),
            "status" | "finalize" | "approval" => (self.group, self.version),
            _ => ("", "v1"),
        }
    }

    pub fn gvk_json(&self) -> Value {
        serde_json::json!({"group": self.group, "version": self.version, "kind": self.kind})
    }
}

fn roundtrip<T: DeserializeOwned + Serialize>(v: Value) -> Result<Value, String> {
    let typed: T = serde_json::from_value(v).map_err(|e| e.to_string())?;
    serde_json::to_value(typed).map_err(|e| e.to_string())
}

use k8s_openapi::api::apps::v1 as apps;
use k8s_openapi::api::authentication::v1 as authn;
use k8s_openapi::api::authorization::v1 as authz;
use k8s_openapi::api::batch::v1 as batch;
use k8s_openapi::api::certificates::v1 as certs;
use k8s_openapi::api::coordination::v1 as coord;
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1 as discovery;
use k8s_openapi::api::node::v1 as node;
use k8s_openapi::api::policy::v1 as policy;
use k8s_openapi::api::rbac::v1 as rbac;
use k8s_openapi::api::storage::v1 as storage;

pub static RESOURCES: &[ResourceDef] = &[
    ResourceDef {
        group: "",
        version: "v1",
        name: "pods",
        singular: "pod",
        kind: "Pod",
        namespaced: true,
        short_names: &["po"],
        categories: &["all"],
        subresources: &[
            "status",
            "binding",
            "eviction",
            "ephemeralcontainers",
            "log",
            "exec",
            "attach",
            "portforward",
            "proxy",
        ],
        schema: "io.k8s.api.core.v1.Pod",
        strategy: &registry::POD,
        normalize: roundtrip::<core::Pod>,
    },
    ResourceDef {
        group: "",
        version: "v1",
        name: "namespaces",
        singular: "namespace",
        kind: "Namespace",
        namespaced: false,
        short_names: &["ns"],
        categories: &[],
        subresources: &["status", "finalize"],
        schema: "io.k8s.api.core.v1.Namespace",
        strategy: &registry::NAMESPACE,
        normalize: roundtrip::<core::Namespace>,
    },
    ResourceDef {
        group: "",
        version: "v1",
        name: "nodes",
        singular: "node",
        kind: "Node",
        namespaced: false,
        short_names: &["no"],
        categories: &[],
        subresources: &["status", "proxy"],
        schema: "io.k8s.api.core.v1.Node",
        strategy: &registry::NODE,
        normalize: roundtrip::<core::Node>,
    },
    ResourceDef {
        group: "",
        version: "v1",
        name: "events",
        singular: "event",
        kind: "Event",
        namespaced: true,
        short_names: &["ev"],
        categories: &[],
        subresources: &[],
        schema: "io.k8s.api.core.v1.Event",
        strategy: &registry::GENERIC,
        normalize: roundtrip::<core::Event>,
    },
    ResourceDef {
        group: "",
        version: "v1",
        name: "configmaps",
        singular: "configmap",
        kind: "ConfigMap",
        namespaced: true,
        short_names: &["cm"],
        categories: &[],
        subresources: &[],
        schema: "io.k8s.api.core.v1.ConfigMap",
        strategy: &registry::GENERIC,
        normalize: roundtrip::<core::ConfigMap>,
    },
    ResourceDef {
        group: "",
        version: "v1",
        name: "secrets",
        singular: "secret",
        kind: "Secret",
        namespaced: true,
        short_names: &[],
        categories: &[],
        subresources: &[],
        schema: "io.k8s.api.core.v1.Secret",
        strategy: &registry::SECRET,
        normalize: roundtrip::<core::Secret>,
    },
    ResourceDef {
        group: "",
        version: "v1",
        name: "serviceaccounts",
        singular: "serviceaccount",
        kind: "ServiceAccount",
        namespaced: true,
        short_names: &["sa"],
        categories: &[],
        subresources: &["token"],
        schema: "io.k8s.api.core.v1.ServiceAccount",
        strategy: &registry::SERVICE_ACCOUNT,
        normalize: roundtrip::<core::ServiceAccount>,
    },
    ResourceDef {
        group: "",
        version: "v1",
        name: "services",
        singular: "service",
        kind: "Service",
        namespaced: true,
        short_names: &["svc"],
        categories: &["all"],
        subresources: &["status", "proxy"],
        schema: "io.k8s.api.core.v1.Service",
        strategy: &registry::SERVICE,
        normalize: roundtrip::<core::Service>,
    },
    ResourceDef {
        group: "",
        version: "v1",
        name: "endpoints",
        singular: "endpoints",
        kind: "Endpoints",
        namespaced: true,
        short_names: &["ep"],
        categories: &[],
        subresources: &[],
        schema: "io.k8s.api.core.v1.Endpoints",
        strategy: &registry::ENDPOINTS,
        normalize: roundtrip::<core::Endpoints>,
    },
    ResourceDef {
        group: "discovery.k8s.io",
        version: "v1",
        name: "endpointslices",
        singular: "endpointslice",
        kind: "EndpointSlice",
        namespaced: true,
        short_names: &[],
        categories: &[],
        subresources: &[],
        schema: "io.k8s.api.discovery.v1.EndpointSlice",
        strategy: &registry::ENDPOINT_SLICE,
        normalize: roundtrip::<discovery::EndpointSlice>,
    },
    ResourceDef {
        group: "coordination.k8s.io",
        version: "v1",
        name: "leases",
        singular: "lease",
        kind: "Lease",
        namespaced: true,
        short_names: &[],
        categories: &[],
        subresources: &[],
        schema: "io.k8s.api.coordination.v1.Lease",
        strategy: &registry::GENERIC,
        normalize: roundtrip::<coord::Lease>,
    },
    ResourceDef {
        group: "",
        version: "v1",
        name: "persistentvolumes",
        singular: "persistentvolume",
        kind: "PersistentVolume",
        namespaced: false,
        short_names: &["pv"],
        categories: &[],
        subresources: &["status"],
        schema: "io.k8s.api.core.v1.PersistentVolume",
        strategy: &registry::PERSISTENT_VOLUME,
        normalize: roundtrip::<core::PersistentVolume>,
    },
    ResourceDef {
        group: "",
        version: "v1",
        name: "persistentvolumeclaims",
        singular: "persistentvolumeclaim",
        kind: "PersistentVolumeClaim",
        namespaced: true,
        short_names: &["pvc"],
        categories: &[],
        subresources: &["status"],
        schema: "io.k8s.api.core.v1.PersistentVolumeClaim",
        strategy: &registry::PERSISTENT_VOLUME_CLAIM,
        normalize: roundtrip::<core::PersistentVolumeClaim>,
    },
    ResourceDef {
        group: "",
        version: "v1",
        name: "podtemplates",
        singular: "podtemplate",
        kind: "PodTemplate",
        namespaced: true,
        short_names: &[],
        categories: &[],
        subresources: &[],
        schema: "io.k8s.api.core.v1.PodTemplate",
        strategy: &registry::POD_TEMPLATE,
        normalize: roundtrip::<core::PodTemplate>,
    },
    ResourceDef {
        group: "",
        version: "v1",
        name: "replicationcontrollers",
        singular: "replicationcontroller",
        kind: "ReplicationController",
        namespaced: true,
        short_names: &["rc"],
        categories: &["all"],
        subresources: &["scale", "status"],
        schema: "io.k8s.api.core.v1.ReplicationController",
        strategy: &registry::REPLICATION_CONTROLLER,
        normalize: roundtrip::<core::ReplicationController>,
    },
    ResourceDef {
        group: "apps",
        version: "v1",
        name: "deployments",
        singular: "deployment",
        kind: "Deployment",
        namespaced: true,
        short_names: &["deploy"],
        categories: &["all"],
        subresources: &["scale", "status"],
        schema: "io.k8s.api.apps.v1.Deployment",
        strategy: &registry::DEPLOYMENT,
        normalize: roundtrip::<apps::Deployment>,
    },
    ResourceDef {
        group: "apps",
        version: "v1",
        name: "replicasets",
        singular: "replicaset",
        kind: "ReplicaSet",
        namespaced: true,
        short_names: &["rs"],
        categories: &["all"],
        subresources: &["scale", "status"],
        schema: "io.k8s.api.apps.v1.ReplicaSet",
        strategy: &registry::REPLICA_SET,
        normalize: roundtrip::<apps::ReplicaSet>,
    },
    ResourceDef {
        group: "apps",
        version: "v1",
        name: "daemonsets",
        singular: "daemonset",
        kind: "DaemonSet",
        namespaced: true,
        short_names: &["ds"],
        categories: &["all"],
        subresources: &["status"],
        schema: "io.k8s.api.apps.v1.DaemonSet",
        strategy: &registry::DAEMON_SET,
        normalize: roundtrip::<apps::DaemonSet>,
    },
    ResourceDef {
        group: "apps",
        version: "v1",
        name: "statefulsets",
        singular: "statefulset",
        kind: "StatefulSet",
        namespaced: true,
        short_names: &["sts"],
        categories: &["all"],
        subresources: &["scale", "status"],
        schema: "io.k8s.api.apps.v1.StatefulSet",
        strategy: &registry::STATEFUL_SET,
        normalize: roundtrip::<apps::StatefulSet>,
    },
    ResourceDef {
        group: "apps",
        version: "v1",
        name: "controllerrevisions",
        singular: "controllerrevision",
        kind: "ControllerRevision",
        namespaced: true,
        short_names: &[],
        categories: &[],
        subresources: &[],
        schema: "io.k8s.api.apps.v1.ControllerRevision",
        strategy: &registry::CONTROLLER_REVISION,
        normalize: roundtrip::<apps::ControllerRevision>,
    },
    ResourceDef {
        group: "batch",
        version: "v1",
        name: "jobs",
        singular: "job",
        kind: "Job",
        namespaced: true,
        short_names: &[],
        categories: &["all"],
        subresources: &["status"],
        schema: "io.k8s.api.batch.v1.Job",
        strategy: &registry::JOB,
        normalize: roundtrip::<batch::Job>,
    },
    ResourceDef {
        group: "batch",
        version: "v1",
        name: "cronjobs",
        singular: "cronjob",
        kind: "CronJob",
        namespaced: true,
        short_names: &["cj"],
        categories: &["all"],
        subresources: &["status"],
        schema: "io.k8s.api.batch.v1.CronJob",
        strategy: &registry::CRON_JOB,
        normalize: roundtrip::<batch::CronJob>,
    },
    ResourceDef {
        group: "policy",
        version: "v1",
        name: "poddisruptionbudgets",
        singular: "poddisruptionbudget",
        kind: "PodDisruptionBudget",
        namespaced: true,
        short_names: &["pdb"],
        categories: &[],
        subresources: &["status"],
        schema: "io.k8s.api.policy.v1.PodDisruptionBudget",
        strategy: &registry::POD_DISRUPTION_BUDGET,
        normalize: roundtrip::<policy::PodDisruptionBudget>,
    },
    ResourceDef {
        group: "node.k8s.io",
        version: "v1",
        name: "runtimeclasses",
        singular: "runtimeclass",
        kind: "RuntimeClass",
        namespaced: false,
        short_names: &[],
        categories: &[],
        subresources: &[],
        schema: "io.k8s.api.node.v1.RuntimeClass",
        strategy: &registry::RUNTIME_CLASS,
        normalize: roundtrip::<node::RuntimeClass>,
    },
    ResourceDef {
        group: "storage.k8s.io",
        version: "v1",
        name: "storageclasses",
        singular: "storageclass",
        kind: "StorageClass",
        namespaced: false,
        short_names: &["sc"],
        categories: &[],
        subresources: &[],
        schema: "io.k8s.api.storage.v1.StorageClass",
        strategy: &registry::STORAGE_CLASS,
        normalize: roundtrip::<storage::StorageClass>,
    },
    ResourceDef {
        group: "storage.k8s.io",
        version: "v1",
        name: "csidrivers",
        singular: "csidriver",
        kind: "CSIDriver",
        namespaced: false,
        short_names: &[],
        categories: &[],
        subresources: &[],
        schema: "io.k8s.api.storage.v1.CSIDriver",
        strategy: &registry::CSI_DRIVER,
        normalize: roundtrip::<storage::CSIDriver>,
    },
    ResourceDef {
        group: "storage.k8s.io",
        version: "v1",
        name: "csinodes",
        singular: "csinode",
        kind: "CSINode",
        namespaced: false,
        short_names: &[],
        categories: &[],
        subresources: &[],
        schema: "io.k8s.api.storage.v1.CSINode",
        strategy: &registry::CSI_NODE,
        normalize: roundtrip::<storage::CSINode>,
    },
    ResourceDef {
        group: "storage.k8s.io",
        version: "v1",
        name: "csistoragecapacities",
        singular: "csistoragecapacity",
        kind: "CSIStorageCapacity",
        namespaced: true,
        short_names: &[],
        categories: &[],
        subresources: &[],
        schema: "io.k8s.api.storage.v1.CSIStorageCapacity",
        strategy: &registry::CSI_STORAGE_CAPACITY,
        normalize: roundtrip::<storage::CSIStorageCapacity>,
    },
    ResourceDef {
        group: "storage.k8s.io",
        version: "v1",
        name: "volumeattachments",
        singular: "volumeattachment",
        kind: "VolumeAttachment",
        namespaced: false,
        short_names: &[],
        categories: &[],
        subresources: &["status"],
        schema: "io.k8s.api.storage.v1.VolumeAttachment",
        strategy: &registry::VOLUME_ATTACHMENT,
        normalize: roundtrip::<storage::VolumeAttachment>,
    },
    ResourceDef {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        name: "clusterrolebindings",
        singular: "clusterrolebinding",
        kind: "ClusterRoleBinding",
        namespaced: false,
        short_names: &[],
        categories: &[],
        subresources: &[],
        schema: "io.k8s.api.rbac.v1.ClusterRoleBinding",
        strategy: &registry::BINDING,
        normalize: roundtrip::<rbac::ClusterRoleBinding>,
    },
    ResourceDef {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        name: "clusterroles",
        singular: "clusterrole",
        kind: "ClusterRole",
        namespaced: false,
        short_names: &[],
        categories: &[],
        subresources: &[],
        schema: "io.k8s.api.rbac.v1.ClusterRole",
        strategy: &registry::ROLE,
        normalize: roundtrip::<rbac::ClusterRole>,
    },
    ResourceDef {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        name: "rolebindings",
        singular: "rolebinding",
        kind: "RoleBinding",
        namespaced: true,
        short_names: &[],
        categories: &[],
        subresources: &[],
        schema: "io.k8s.api.rbac.v1.RoleBinding",
        strategy: &registry::BINDING,
        normalize: roundtrip::<rbac::RoleBinding>,
    },
    ResourceDef {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        name: "roles",
        singular: "role",
        kind: "Role",
        namespaced: true,
        short_names: &[],
        categories: &[],
        subresources: &[],
        schema: "io.k8s.api.rbac.v1.Role",
        strategy: &registry::ROLE,
        normalize: roundtrip::<rbac::Role>,
    },
    ResourceDef {
        group: "authorization.k8s.io",
        version: "v1",
        name: "localsubjectaccessreviews",
        singular: "localsubjectaccessreview",
        kind: "LocalSubjectAccessReview",
        namespaced: true,
        short_names: &[],
        categories: &[],
        subresources: &[],
        schema: "io.k8s.api.authorization.v1.LocalSubjectAccessReview",
        strategy: &registry::LOCAL_SUBJECT_ACCESS_REVIEW,
        normalize: roundtrip::<authz::LocalSubjectAccessReview>,
    },
    ResourceDef {
        group: "authorization.k8s.io",
        version: "v1",
        name: "selfsubjectaccessreviews",
        singular: "selfsubjectaccessreview",
        kind: "SelfSubjectAccessReview",
        namespaced: false,
        short_names: &[],
        categories: &[],
        subresources: &[],
        schema: "io.k8s.api.authorization.v1.SelfSubjectAccessReview",
        strategy: &registry::SELF_SUBJECT_ACCESS_REVIEW,
        normalize: roundtrip::<authz::SelfSubjectAccessReview>,
    },
    ResourceDef {
        group: "authorization.k8s.io",
        version: "v1",
        name: "selfsubjectrulesreviews",
        singular: "selfsubjectrulesreview",
        kind: "SelfSubjectRulesReview",
        namespaced: false,
        short_names: &[],
        categories: &[],
        subresources: &[],
        schema: "io.k8s.api.authorization.v1.SelfSubjectRulesReview",
        strategy: &registry::SELF_SUBJECT_RULES_REVIEW,
        normalize: roundtrip::<authz::SelfSubjectRulesReview>,
    },
    ResourceDef {
        group: "authorization.k8s.io",
        version: "v1",
        name: "subjectaccessreviews",
        singular: "subjectaccessreview",
        kind: "SubjectAccessReview",
        namespaced: false,
        short_names: &[],
        categories: &[],
        subresources: &[],
        schema: "io.k8s.api.authorization.v1.SubjectAccessReview",
        strategy: &registry::SUBJECT_ACCESS_REVIEW,
        normalize: roundtrip::<authz::SubjectAccessReview>,
    },
    ResourceDef {
        group: "authentication.k8s.io",
        version: "v1",
        name: "selfsubjectreviews",
        singular: "selfsubjectreview",
        kind: "SelfSubjectReview",
        namespaced: false,
        short_names: &[],
        categories: &[],
        subresources: &[],
        schema: "io.k8s.api.authentication.v1.SelfSubjectReview",
        strategy: &registry::SELF_SUBJECT_REVIEW,
        normalize: roundtrip::<authn::SelfSubjectReview>,
    },
    ResourceDef {
        group: "authentication.k8s.io",
        version: "v1",
        name: "tokenreviews",
        singular: "tokenreview",
        kind: "TokenReview",
        namespaced: false,
        short_names: &[],
        categories: &[],
        subresources: &[],
        schema: "io.k8s.api.authentication.v1.TokenReview",
        strategy: &registry::TOKEN_REVIEW,
        normalize: roundtrip::<authn::TokenReview>,
    },
    ResourceDef {
        group: "certificates.k8s.io",
        version: "v1",
        name: "certificatesigningrequests",
        singular: "certificatesigningrequest",
        kind: "CertificateSigningRequest",
        namespaced: false,
        short_names: &["csr"],
        categories: &[],
        subresources: &["approval", "status"],
        schema: "io.k8s.api.certificates.v1.CertificateSigningRequest",
        strategy: &registry::CERTIFICATE_SIGNING_REQUEST,
        normalize: roundtrip::<certs::CertificateSigningRequest>,
    },
];

/// The API groups served under /apis (the core group is under /api), in
/// Kubernetes' order of preference.
pub const GROUPS: &[(&str, &str)] = &[
    ("apps", "v1"),
    ("authentication.k8s.io", "v1"),
    ("authorization.k8s.io", "v1"),
    ("batch", "v1"),
    ("certificates.k8s.io", "v1"),
    ("policy", "v1"),
    ("rbac.authorization.k8s.io", "v1"),
    ("storage.k8s.io", "v1"),
    ("coordination.k8s.io", "v1"),
    ("node.k8s.io", "v1"),
    ("discovery.k8s.io", "v1"),
];

pub fn find(group: &str, version: &str, name: &str) -> Option<&'static ResourceDef> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.name == name)
}

pub fn by_prefix(key: &str) -> Option<&'static ResourceDef> {
    RESOURCES.iter().find(|r| key.starts_with(&r.prefix()))
}

pub fn pods() -> &'static ResourceDef {
    &RESOURCES[0]
}

pub fn namespaces() -> &'static ResourceDef {
    &RESOURCES[1]
}

pub fn services() -> &'static ResourceDef {
    find("", "v1", "services").expect("services are served")
}

#[cfg(test)]
mod tests {
    use super::RESOURCES;

    /// The write handlers ask a kind's strategy which subresources it
    /// builds from the object: `scale` must be one wherever it is served.
    #[test]
    fn served_scale_is_derived_by_the_strategy() {
        for r in RESOURCES {
            let derived = r.strategy.derived_subresources();
            for sub in derived {
                assert!(
                    r.subresources.contains(sub),
                    "{}: {sub} is not served",
                    r.name
                );
            }
            assert_eq!(
                r.subresources.contains(&"scale"),
                derived.contains(&"scale"),
                "{}",
                r.name
            );
        }
    }
}
