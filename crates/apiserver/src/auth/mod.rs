//! Who is calling and what they may do, as kube-apiserver decides it:
//! authentication ([`authn`]: client certificates, bearer tokens, anonymous,
//! impersonation), request attributes ([`attributes`]), the authorizer chain
//! (system:masters, then [`node`], then [`rbac`]), admission that depends on
//! the caller ([`admission`]: NodeRestriction, RBAC escalation checks), the
//! bootstrap policy ([`policy`]), the access reviews ([`reviews`]) and the
//! limit on requests in flight ([`inflight`]).

pub mod admission;
pub mod aggregation;
pub mod attributes;
pub mod authn;
pub mod certificates;
pub mod inflight;
pub mod node;
pub mod policy;
pub mod rbac;
pub mod reviews;

use std::collections::BTreeMap;
use std::sync::Arc;

pub use attributes::Attributes;

/// The only group every authorizer lets do everything.
pub const SYSTEM_MASTERS: &str = "system:masters";
pub const AUTHENTICATED: &str = "system:authenticated";
pub const UNAUTHENTICATED: &str = "system:unauthenticated";
pub const ANONYMOUS: &str = "system:anonymous";
pub const NODES: &str = "system:nodes";
pub const NODE_PREFIX: &str = "system:node:";
pub const BOOTSTRAPPERS: &str = "system:bootstrappers";
pub const SERVICE_ACCOUNTS: &str = "system:serviceaccounts";
pub const SERVICE_ACCOUNT_PREFIX: &str = "system:serviceaccount:";

/// Kubernetes' user.Info: what authentication establishes about a caller.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    /// A user with these groups plus `system:authenticated`, as every
    /// authenticator adds it.
    pub fn authenticated(name: impl Into<String>, groups: &[&str]) -> UserInfo {
        let mut u = UserInfo {
            name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..Default::default()
        };
        u.add_group(AUTHENTICATED);
        u
    }

    pub fn anonymous() -> UserInfo {
        UserInfo {
            name: ANONYMOUS.into(),
            groups: vec![UNAUTHENTICATED.into()],
            ..Default::default()
        }
    }

    /// The admin kubeconfig's identity (a member of system:masters).
    pub fn admin() -> UserInfo {
        UserInfo::authenticated("system:admin", &[SYSTEM_MASTERS])
    }

    /// The API server's own requests (namespace clean-up, bootstrap), as
    /// kube-apiserver's loopback client.
    pub fn apiserver() -> UserInfo {
        UserInfo::authenticated("system:apiserver", &[SYSTEM_MASTERS])
    }

    pub fn kube_scheduler() -> UserInfo {
        UserInfo::authenticated("system:kube-scheduler", &[])
    }

    pub fn kube_controller_manager() -> UserInfo {
        UserInfo::authenticated("system:kube-controller-manager", &[])
    }

    /// A controller's own service account in kube-system, as
    /// kube-controller-manager runs each controller with
    /// `--use-service-account-credentials` (bound by the bootstrap policy's
    /// `system:controller:<name>` roles).
    pub fn controller(name: &str) -> UserInfo {
        UserInfo::service_account("kube-system", name)
    }

    pub fn service_account(namespace: &str, name: &str) -> UserInfo {
        let ns_group = format!("{SERVICE_ACCOUNTS}:{namespace}");
        UserInfo::authenticated(
            format!("{SERVICE_ACCOUNT_PREFIX}{namespace}:{name}"),
            &[SERVICE_ACCOUNTS, &ns_group],
        )
    }

    /// The virtual-node simulator (`orca server --virtual-nodes`): one
    /// client standing in for many kubelets, as kwok runs with
    /// cluster-admin, so it is a member of system:masters.
    pub fn virtual_nodes() -> UserInfo {
        UserInfo::authenticated("system:orca:virtual-nodes", &[SYSTEM_MASTERS])
    }

    /// A node agent (kubelet): `system:node:<name>` in `system:nodes`.
    pub fn node(name: &str) -> UserInfo {
        UserInfo::authenticated(format!("{NODE_PREFIX}{name}"), &[NODES])
    }

    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }

    fn add_group(&mut self, group: &str) {
        if !self.in_group(group) {
            self.groups.push(group.to_string());
        }
    }

    /// The node name when this is a node's identity (Kubernetes'
    /// NodeIdentity: user `system:node:<name>` in group `system:nodes`).
    pub fn node_name(&self) -> Option<&str> {
        if !self.in_group(NODES) {
            return None;
        }
        self.name.strip_prefix(NODE_PREFIX)
    }

    /// `(namespace, name)` when this is a service account.
    pub fn service_account_name(&self) -> Option<(&str, &str)> {
        self.name
            .strip_prefix(SERVICE_ACCOUNT_PREFIX)
            .and_then(|r| r.split_once(':'))
    }
}

/// The caller of one request, shared cheaply between the layers.
pub type Caller = Arc<UserInfo>;

/// The authorizer chain: system:masters, then the node authorizer, then
/// RBAC. Allowed, or the reasons (joined by newlines) the authorizers gave
/// for having no opinion.
pub fn authorize(
    state: &crate::server::State,
    user: &UserInfo,
    attrs: &Attributes,
) -> Result<(), String> {
    if user.in_group(SYSTEM_MASTERS) {
        return Ok(());
    }
    let mut reasons = Vec::new();
    if let Some(node) = user.node_name() {
        match node::authorize(&state.node_graph, policy::node_rules(), node, attrs) {
            Ok(()) => return Ok(()),
            Err(r) if !r.is_empty() => reasons.push(r),
            Err(_) => {}
        }
    }
    match state.rbac.authorize(user, attrs) {
        Ok(()) => Ok(()),
        Err(r) => {
            if !r.is_empty() {
                reasons.push(r);
            }
            Err(reasons.join("\n"))
        }
    }
}
