//! RBAC v1 scheme defaults: a binding's roleRef and its User and Group
//! subjects name the rbac.authorization.k8s.io group when the client left
//! it empty (ServiceAccount subjects stay in the core group).

use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding, RoleRef, Subject};

const GROUP: &str = "rbac.authorization.k8s.io";

pub fn role_binding(b: &mut RoleBinding) {
    binding(&mut b.role_ref, b.subjects.as_deref_mut());
}

pub fn cluster_role_binding(b: &mut ClusterRoleBinding) {
    binding(&mut b.role_ref, b.subjects.as_deref_mut());
}

fn binding(role_ref: &mut RoleRef, subjects: Option<&mut [Subject]>) {
    if role_ref.api_group.is_empty() {
        role_ref.api_group = GROUP.into();
    }
    for s in subjects.into_iter().flatten() {
        let unset = s.api_group.as_deref().unwrap_or_default().is_empty();
        if unset && (s.kind == "User" || s.kind == "Group") {
            s.api_group = Some(GROUP.into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn empty_groups_of_role_refs_and_user_and_group_subjects_are_filled() {
        let mut b: RoleBinding = serde_json::from_value(json!({
            "metadata": {"name": "b"},
            "roleRef": {"apiGroup": "", "kind": "Role", "name": "r"},
            "subjects": [{"kind": "User", "name": "u"}, {"kind": "Group", "name": "g"},
                {"kind": "ServiceAccount", "name": "s", "namespace": "default"}],
        }))
        .unwrap();
        role_binding(&mut b);
        assert_eq!(b.role_ref.api_group, GROUP);
        let groups: Vec<_> = b
            .subjects
            .unwrap()
            .into_iter()
            .map(|s| s.api_group)
            .collect();
        assert_eq!(groups, [Some(GROUP.into()), Some(GROUP.into()), None]);
    }
}
