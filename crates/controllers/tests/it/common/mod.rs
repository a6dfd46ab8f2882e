//! A real API server with chosen controllers running under the identities
//! `orca server` gives them, a fake kubelet for tests that need pods to
//! run or finish without containers, and the real kubectl.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;

pub const WAIT: Duration = Duration::from_secs(60);

pub type Controller = fn(orca_controllers::Clients) -> Pin<Box<dyn Future<Output = ()> + Send>>;

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub server: orca_apiserver::ApiServer,
    pub client: Client,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Cluster {
    /// Starts the server and `controllers`; with `kubelet`, pods of the
    /// `default` namespace behave as their image says (see [`kubelet`]).
    pub async fn start(controllers: &[Controller], kubelet: bool) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let server = orca_testkit::api_server(dir.path()).await;
        let client = orca_testkit::admin_client(&server).await;
        let (manager, per_controller) = orca_testkit::controller_identities(&server);
        let clients = orca_controllers::Clients::new(manager, per_controller);
        let mut tasks: Vec<_> = controllers
            .iter()
            .map(|run| tokio::spawn(run(clients.clone())))
            .collect();
        if kubelet {
            tasks.push(tokio::spawn(self::kubelet(client.clone())));
        }
        Cluster {
            dir,
            server,
            client,
            tasks,
        }
    }

    /// A scheduler without leader election, stopped with the cluster.
    pub fn start_scheduler(&mut self) {
        let client = self.client.clone();
        self.tasks.push(tokio::spawn(async move {
            let config = orca_scheduler::Config {
                leader_elect: false,
                ..Default::default()
            };
            orca_scheduler::run(client, config).await.unwrap();
        }));
    }

    /// Registers `count` virtual nodes `<prefix><i>` with `labels` (and the
    /// virtual-node NoSchedule taint), whose pods run and turn Ready, and
    /// whose deleted pods go at once.
    pub async fn add_nodes(&mut self, prefix: &str, count: usize, labels: &[(&str, &str)]) {
        let config = orca_virtual_nodes::Config {
            count,
            name_prefix: prefix.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            termination: orca_virtual_nodes::Termination::Immediate,
            // Each pool its own pod addresses.
            pod_cidr_base: std::net::Ipv4Addr::new(10, 128 + self.tasks.len() as u8, 0, 0),
            ..Default::default()
        };
        self.tasks
            .push(orca_virtual_nodes::spawn_registered(self.client.clone(), config).await);
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), "default")
    }

    pub async fn pods_of(&self, uid: &str) -> Vec<Pod> {
        self.api::<Pod>()
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|p| {
                p.owner_references()
                    .iter()
                    .any(|r| r.uid == uid && r.controller == Some(true))
            })
            .collect()
    }

    /// Events about the object named `name`, oldest first.
    /// `name`'s events once `done` holds for them: a controller posts its
    /// event after the write it describes, so a test that has seen the write
    /// waits for the event.
    pub async fn events_until(&self, name: &str, done: impl Fn(&[Event]) -> bool) -> Vec<Event> {
        orca_testkit::wait_for(&format!("the events of {name}"), WAIT, || async {
            let events = self.events_of(name).await;
            done(&events).then_some(events)
        })
        .await
    }

    /// The reasons of `name`'s events once one of them is `reason`.
    pub async fn reasons_once(&self, name: &str, reason: &str) -> Vec<String> {
        self.events_until(name, |e| {
            e.iter().any(|e| e.reason.as_deref() == Some(reason))
        })
        .await
        .into_iter()
        .filter_map(|e| e.reason)
        .collect()
    }

    pub async fn events_of(&self, name: &str) -> Vec<Event> {
        let mut e: Vec<Event> = self
            .api::<Event>()
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| e.involved_object.name.as_deref() == Some(name))
            .collect();
        e.sort_by_key(|e| e.first_timestamp.clone().map(|t| t.0));
        e
    }

    pub async fn kubectl_out(&self, args: &[&str]) -> std::process::Output {
        tokio::process::Command::new("/usr/bin/kubectl")
            .arg("--kubeconfig")
            .arg(self.server.kubeconfig_path())
            .arg("--cache-dir")
            .arg(self.dir.path().join("kubectl-cache"))
            .args(args)
            .env("HOME", self.dir.path())
            .kill_on_drop(true)
            .output()
            .await
            .expect("kubectl at /usr/bin/kubectl")
    }

    pub async fn kubectl(&self, args: &[&str]) -> String {
        let out = self.kubectl_out(args).await;
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }
}

fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// Plays the kubelet every 100 ms for pods of `default` by their first
/// container's image: `succeed` pods finish with exit code 0, `fail` pods
/// with 1, `exit-N` pods with N, and `disrupted` pods with 137 and a
/// `DisruptionTarget` condition, once 300 ms old; `hang` pods stay Pending;
/// any other image runs and is Ready. An image `by-index:0=succeed,2=fail`
/// gives each completion index of a Job its own behaviour (others run).
pub async fn kubelet(client: Client) {
    let pods: Api<Pod> = Api::namespaced(client, "default");
    loop {
        let now = chrono::Utc::now();
        for p in pods
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default()
        {
            if p.metadata.deletion_timestamp.is_some()
                || matches!(phase(&p), "Succeeded" | "Failed")
            {
                continue;
            }
            let image = p
                .spec
                .as_ref()
                .and_then(|s| s.containers[0].image.clone())
                .unwrap_or_default();
            let behaviour = match image.strip_prefix("by-index:") {
                Some(map) => {
                    let index = p
                        .annotations()
                        .get("batch.kubernetes.io/job-completion-index");
                    map.split(',')
                        .filter_map(|kv| kv.split_once('='))
                        .find(|(k, _)| Some(*k) == index.map(String::as_str))
                        .map_or("run", |(_, v)| v)
                        .to_string()
                }
                None => image.clone(),
            };
            let exit_code = match behaviour.as_str() {
                "succeed" => Some(0),
                "fail" => Some(1),
                "disrupted" => Some(137),
                b => b.strip_prefix("exit-").and_then(|n| n.parse::<i32>().ok()),
            };
            let age = p
                .creation_timestamp()
                .map(|t| now - t.0)
                .unwrap_or_default();
            let stamp = now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            let status = match (behaviour.as_str(), exit_code) {
                (_, Some(_)) if age < chrono::Duration::milliseconds(300) => continue,
                (_, Some(code)) => {
                    let mut conditions = vec![
                        json!({"type": "Ready", "status": "False", "lastTransitionTime": stamp}),
                    ];
                    if behaviour == "disrupted" {
                        conditions.push(json!({"type": "DisruptionTarget", "status": "True",
                            "reason": "EvictionByEvictionAPI", "lastTransitionTime": stamp}));
                    }
                    json!({"status": {
                        "phase": if code == 0 { "Succeeded" } else { "Failed" },
                        "conditions": conditions,
                        "containerStatuses": [{"name": "c", "image": image, "imageID": "", "ready": false,
                            "restartCount": 0, "state": {"terminated": {"exitCode": code,
                            "reason": if code == 0 { "Completed" } else { "Error" },
                            "startedAt": stamp, "finishedAt": stamp}}}]}})
                }
                ("hang", _) => continue,
                _ if phase(&p) == "Running" => continue,
                _ => json!({"status": {"phase": "Running", "conditions": [
                    {"type": "Ready", "status": "True", "lastTransitionTime": stamp}]}}),
            };
            let _ = pods
                .patch_status(
                    &p.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&status),
                )
                .await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
