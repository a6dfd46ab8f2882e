//! ControllerRevisions, the history DaemonSets and StatefulSets keep of
//! their pod templates (Kubernetes' `controller/history`): each distinct
//! template is one revision named `<owner>-<hash>`, labelled
//! `controller-revision-hash`, holding the owner's template as a patch
//! (`{"spec":{"template":{..., "$patch":"replace"}}}`) and numbered; going
//! back to an older template renumbers its revision as the newest instead
//! of making another. Revisions beyond `revisionHistoryLimit` that no pod
//! uses are deleted.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::reflector::Store;
use kube::{Client, ResourceExt};

use crate::deployment::util::template_hash;
use crate::pods;

pub const HASH_LABEL: &str = "controller-revision-hash";

/// The owner whose history this is.
pub struct Owner<'a> {
    pub api_version: &'a str,
    pub kind: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
    pub uid: &'a str,
    pub template: &'a PodTemplateSpec,
    pub history_limit: i32,
}

/// The revision the owner's template is now: its hash and number.
pub struct Current {
    pub hash: String,
    pub revision: i64,
}

/// The patch a revision stores.
pub fn patch(template: &PodTemplateSpec) -> serde_json::Value {
    let mut t = serde_json::to_value(template).unwrap_or_default();
    t["$patch"] = serde_json::json!("replace");
    serde_json::json!({"spec": {"template": t}})
}

/// The revisions of the owner in the cache, oldest number first.
pub fn owned(store: &Store<ControllerRevision>, owner: &Owner) -> Vec<Arc<ControllerRevision>> {
    let mut revs: Vec<Arc<ControllerRevision>> = store
        .state()
        .into_iter()
        .filter(|r| r.namespace().as_deref() == Some(owner.namespace))
        .filter(|r| pods::controller_of(&r.metadata).is_some_and(|c| c.uid == owner.uid))
        .collect();
    revs.sort_by_key(|r| r.revision);
    revs
}

/// Finds or makes the revision of the owner's template, renumbering it
/// as the newest if it was an older one; then trims the history, keeping
/// revisions whose hash is in `in_use`.
pub async fn sync(
    client: &Client,
    store: &Store<ControllerRevision>,
    owner: &Owner<'_>,
    in_use: &BTreeSet<String>,
) -> anyhow::Result<Current> {
    let api: Api<ControllerRevision> = Api::namespaced(client.clone(), owner.namespace);
    let revs = owned(store, owner);
    let data = patch(owner.template);
    let newest = revs.iter().map(|r| r.revision).max().unwrap_or(0);
    let matching = revs
        .iter()
        .find(|r| r.data.as_ref().map(|d| &d.0) == Some(&data));
    let current = match matching {
        Some(r) if r.revision == newest => hash_of(r),
        Some(r) => {
            let mut bumped = (**r).clone();
            bumped.revision = newest + 1;
            api.replace(&r.name_any(), &PostParams::default(), &bumped)
                .await?;
            hash_of(r)
        }
        None => {
            let hash = template_hash(owner.template, None);
            let rev = ControllerRevision {
                metadata: ObjectMeta {
                    name: Some(format!("{}-{hash}", owner.name)),
                    namespace: Some(owner.namespace.into()),
                    labels: Some({
                        let mut l: BTreeMap<String, String> =
                            pods::template_labels(Some(owner.template));
                        l.insert(HASH_LABEL.into(), hash.clone());
                        l
                    }),
                    owner_references: Some(vec![pods::controller_ref(
                        owner.api_version,
                        owner.kind,
                        owner.name,
                        owner.uid,
                    )]),
                    ..Default::default()
                },
                data: Some(RawExtension(data)),
                revision: newest + 1,
            };
            match api.create(&PostParams::default(), &rev).await {
                Ok(_) => {}
                // Made in a sync whose watch event has not arrived yet.
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
            hash
        }
    };
    let revision = matching
        .filter(|r| r.revision == newest)
        .map(|r| r.revision)
        .unwrap_or(newest + 1);
    // Trim: the oldest unused revisions beyond the limit go.
    let old: Vec<&Arc<ControllerRevision>> = revs
        .iter()
        .filter(|r| hash_of(r) != current && !in_use.contains(&hash_of(r)))
        .collect();
    let excess = old
        .len()
        .saturating_sub(owner.history_limit.max(0) as usize);
    for r in old.into_iter().take(excess) {
        match api.delete(&r.name_any(), &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Current {
        hash: current,
        revision,
    })
}

fn hash_of(r: &ControllerRevision) -> String {
    r.labels().get(HASH_LABEL).cloned().unwrap_or_else(|| {
        r.name_any()
            .rsplit('-')
            .next()
            .unwrap_or_default()
            .to_string()
    })
}
