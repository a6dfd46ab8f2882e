//! A fresh `orca server` on a temporary data dir, and the pod operations
//! the scenarios time through its API.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{DeleteParams, ListParams, PostParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};

use crate::procs::{self, Mem};
use crate::results::MemSample;

pub struct OrcaServer {
    pub dir: tempfile::TempDir,
    pub node_name: String,
    pub client: Client,
    pub pid: u32,
    child: Child,
    sampler: Sampler,
}

impl OrcaServer {
    /// Starts `bin server` with `extra` flags; the `.docker.tar` archives in
    /// `images` are dropped into the agent's image directory so that they
    /// are imported at start (pods use imagePullPolicy IfNotPresent).
    pub async fn start(bin: &Path, images: &Path, extra: &[&str]) -> anyhow::Result<OrcaServer> {
        let dir = tempfile::Builder::new().prefix("orca-bench.").tempdir()?;
        let image_dir = dir.path().join("agent/images");
        std::fs::create_dir_all(&image_dir)?;
        for name in ["busybox", "nginx"] {
            let archive = images.join(format!("{name}.docker.tar"));
            std::fs::copy(&archive, image_dir.join(format!("{name}.docker.tar")))
                .with_context(|| format!("copying {}", archive.display()))?;
        }
        let node_name = format!("bench-{}", std::process::id());
        let log = std::fs::File::create(dir.path().join("server.log"))?;
        let child = Command::new(bin)
            .args(["server", "--data-dir"])
            .arg(dir.path())
            .args(["--https-port", &free_port()?.to_string()])
            .args(["--node-ip", "127.0.0.1", "--node-name", &node_name])
            .args(["--agent-port", &free_port()?.to_string()])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {} server", bin.display()))?;
        let pid = child.id();
        let sampler = Sampler::start(pid);
        let mut server = Partial {
            dir: Some(dir),
            child: Some(child),
        };
        let kubeconfig = server.dir().join("kubeconfig");
        let started = Instant::now();
        let client = loop {
            if let Some(status) = server.child().try_wait()? {
                bail!(
                    "orca server exited with {status} while starting\n{}",
                    log_tail(server.dir())
                );
            }
            if started.elapsed() > Duration::from_secs(90) {
                bail!(
                    "orca server did not answer within 90 s\n{}",
                    log_tail(server.dir())
                );
            }
            if kubeconfig.exists() {
                if let Ok(client) = client_from(&kubeconfig).await {
                    if client.apiserver_version().await.is_ok() {
                        break client;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let (dir, child) = server.take();
        let server = OrcaServer {
            dir,
            node_name,
            client,
            pid,
            child,
            sampler,
        };
        if !extra.contains(&"--disable-agent") {
            server.wait_node_ready().await?;
        }
        Ok(server)
    }

    async fn wait_node_ready(&self) -> anyhow::Result<()> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let started = Instant::now();
        loop {
            if let Ok(node) = nodes.get(&self.node_name).await {
                let ready = node
                    .status
                    .and_then(|s| s.conditions)
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True");
                if ready {
                    return Ok(());
                }
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!(
                    "node {} not Ready within 60 s\n{}",
                    self.node_name,
                    log_tail(self.dir.path())
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), "default")
    }

    pub fn set_phase(&self, phase: &str) {
        self.sampler.set_phase(phase);
    }

    pub fn memory(&self) -> Mem {
        procs::mem(self.pid).unwrap_or_default()
    }

    /// Deletes every pod when `delete_pods` (so that their containers,
    /// addresses and mounts go with them), then stops the server by its pid;
    /// returns its memory samples.
    pub async fn stop(mut self, delete_pods: bool) -> anyhow::Result<Vec<MemSample>> {
        if delete_pods {
            self.delete_all_pods().await;
        }
        let samples = self.sampler.stop();
        terminate(&mut self.child);
        Ok(samples)
    }

    async fn delete_all_pods(&self) {
        let pods = self.pods();
        let _ = pods
            .delete_collection(&DeleteParams::default(), &ListParams::default())
            .await;
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            match pods.list(&ListParams::default().limit(1)).await {
                Ok(list) if list.items.is_empty() => break,
                Err(_) => break,
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }
}

/// The server before it is up: cleans up after itself if starting fails.
struct Partial {
    dir: Option<tempfile::TempDir>,
    child: Option<Child>,
}

impl Partial {
    fn dir(&self) -> &Path {
        self.dir
            .as_ref()
            .map(|d| d.path())
            .unwrap_or(Path::new("/"))
    }
    fn child(&mut self) -> &mut Child {
        self.child.as_mut().expect("child taken only on success")
    }
    fn take(&mut self) -> (tempfile::TempDir, Child) {
        (
            self.dir.take().expect("taken once"),
            self.child.take().expect("taken once"),
        )
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            terminate(child);
        }
    }
}

impl Drop for OrcaServer {
    fn drop(&mut self) {
        // Reached on errors; `stop` already waited for the child otherwise.
        if matches!(self.child.try_wait(), Ok(None)) {
            terminate(&mut self.child);
        }
    }
}

/// SIGTERM, then SIGKILL after 20 s, by pid.
fn terminate(child: &mut Child) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

pub fn log_tail(dir: &Path) -> String {
    let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    format!(
        "--- orca server log (tail) ---\n{}",
        lines[lines.len().saturating_sub(30)..].join("\n")
    )
}

async fn client_from(kubeconfig: &Path) -> anyhow::Result<Client> {
    let config = kube::Config::from_custom_kubeconfig(
        Kubeconfig::read_from(kubeconfig)?,
        &KubeConfigOptions::default(),
    )
    .await?;
    Ok(Client::try_from(config)?)
}

pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

pub fn is_bound(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_ref())
        .is_some()
}

/// What a watch saw of each pod: when it was first bound, Ready, deleted
/// (measured from `start`).
#[derive(Default)]
pub struct Seen {
    pub bound: HashMap<String, Duration>,
    pub ready: HashMap<String, Duration>,
    pub deleted: HashMap<String, Duration>,
}

/// A watch on the pods labelled `selector`, opened at the current
/// resourceVersion so that it sees exactly what happens after it returns.
pub struct PodWatch {
    stream: futures::stream::BoxStream<'static, kube::Result<WatchEvent<Pod>>>,
    api: Api<Pod>,
    selector: String,
    rv: String,
}

impl PodWatch {
    pub async fn open(api: &Api<Pod>, selector: &str) -> anyhow::Result<PodWatch> {
        let list = api.list(&ListParams::default().labels(selector)).await?;
        let rv = list.metadata.resource_version.unwrap_or_default();
        let stream = watch_stream(api, selector, &rv).await?;
        Ok(PodWatch {
            stream,
            api: api.clone(),
            selector: selector.to_string(),
            rv,
        })
    }

    /// Follows events until `done(seen)` or `timeout`; times are from `start`.
    pub async fn until(
        &mut self,
        seen: &mut Seen,
        start: Instant,
        timeout: Duration,
        done: impl Fn(&Seen) -> bool,
    ) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::from_std(start + timeout);
        while !done(seen) {
            let event = match tokio::time::timeout_at(deadline, self.stream.next()).await {
                Err(_) => bail!(
                    "timed out after {timeout:?} watching pods {} (bound {}, ready {}, deleted {})",
                    self.selector,
                    seen.bound.len(),
                    seen.ready.len(),
                    seen.deleted.len()
                ),
                Ok(None) => {
                    // The server ended the watch (its timeout): resume where we were.
                    self.stream = watch_stream(&self.api, &self.selector, &self.rv).await?;
                    continue;
                }
                Ok(Some(event)) => event?,
            };
            let now = start.elapsed();
            match event {
                WatchEvent::Added(pod) | WatchEvent::Modified(pod) => {
                    self.remember(&pod);
                    let name = pod.metadata.name.clone().unwrap_or_default();
                    if is_bound(&pod) {
                        seen.bound.entry(name.clone()).or_insert(now);
                    }
                    if is_ready(&pod) {
                        seen.ready.entry(name).or_insert(now);
                    }
                }
                WatchEvent::Deleted(pod) => {
                    self.remember(&pod);
                    let name = pod.metadata.name.clone().unwrap_or_default();
                    seen.deleted.entry(name).or_insert(now);
                }
                WatchEvent::Bookmark(b) => self.rv = b.metadata.resource_version,
                WatchEvent::Error(e) => bail!("watch of pods {} failed: {e:?}", self.selector),
            }
        }
        Ok(())
    }

    fn remember(&mut self, pod: &Pod) {
        if let Some(rv) = &pod.metadata.resource_version {
            self.rv = rv.clone();
        }
    }
}

async fn watch_stream(
    api: &Api<Pod>,
    selector: &str,
    rv: &str,
) -> anyhow::Result<futures::stream::BoxStream<'static, kube::Result<WatchEvent<Pod>>>> {
    let params = WatchParams::default().labels(selector).timeout(290);
    Ok(api.watch(&params, rv).await?.boxed())
}

/// Creates `pods` with at most `concurrency` requests in flight; returns
/// each pod's name and when its create request was sent (from `start`).
pub async fn create_all(
    api: &Api<Pod>,
    pods: Vec<Pod>,
    concurrency: usize,
    start: Instant,
) -> anyhow::Result<Vec<(String, Duration, Duration)>> {
    futures::stream::iter(pods)
        .map(|pod| async move {
            let name = pod.metadata.name.clone().unwrap_or_default();
            let sent = start.elapsed();
            api.create(&PostParams::default(), &pod)
                .await
                .with_context(|| format!("creating pod {name}"))?;
            Ok::<_, anyhow::Error>((name, sent, start.elapsed()))
        })
        .buffer_unordered(concurrency)
        .try_collect()
        .await
}

/// Deletes the pods labelled `selector` and waits until they are gone (untimed clean-up).
pub async fn delete_and_wait(api: &Api<Pod>, selector: &str) -> anyhow::Result<()> {
    let list = api.list(&ListParams::default().labels(selector)).await?;
    let names: Vec<String> = list
        .items
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    if names.is_empty() {
        return Ok(());
    }
    let mut watch = PodWatch::open(api, selector).await?;
    let start = Instant::now();
    api.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels(selector),
    )
    .await?;
    let mut seen = Seen::default();
    // The watch may have opened after some were already gone: check by listing too.
    let remaining = || async {
        api.list(&ListParams::default().labels(selector))
            .await
            .map(|l| l.items.len())
            .unwrap_or(usize::MAX)
    };
    let n = names.len();
    match watch
        .until(&mut seen, start, Duration::from_secs(60), |s| {
            s.deleted.len() >= n
        })
        .await
    {
        Ok(()) => Ok(()),
        Err(e) if remaining().await == 0 => {
            drop(e);
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Samples a process's memory twice a second, labelled with what the
/// benchmark is doing at the time.
struct Sampler {
    stop: Arc<AtomicBool>,
    phase: Arc<Mutex<String>>,
    handle: Option<std::thread::JoinHandle<Vec<MemSample>>>,
}

impl Sampler {
    fn start(pid: u32) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let phase = Arc::new(Mutex::new("starting".to_string()));
        let (s, p) = (stop.clone(), phase.clone());
        let handle = std::thread::spawn(move || {
            let start = Instant::now();
            let mut samples = Vec::new();
            while !s.load(Ordering::Relaxed) {
                let Some(mem) = procs::mem(pid) else { break };
                let phase = p.lock().map(|p| p.clone()).unwrap_or_default();
                samples.push(MemSample {
                    t: start.elapsed().as_secs_f64(),
                    phase,
                    mem,
                });
                std::thread::sleep(Duration::from_millis(500));
            }
            samples
        });
        Sampler {
            stop,
            phase,
            handle: Some(handle),
        }
    }

    fn set_phase(&self, phase: &str) {
        if let Ok(mut p) = self.phase.lock() {
            *p = phase.to_string();
        }
    }

    fn stop(&mut self) -> Vec<MemSample> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The server's per-pod helper processes: everything descending from it
/// or running its binary, minus the containers' own processes (those run
/// the image's binaries, not orca's).
pub fn helper_processes(server_pid: u32, bin: &Path, data_dir: &Path) -> Vec<procs::Proc> {
    let all = procs::all();
    let tree = procs::descendants(&all, server_pid);
    let bin = std::fs::canonicalize(bin).unwrap_or_else(|_| bin.to_path_buf());
    let data_dir = data_dir.to_string_lossy().into_owned();
    all.into_iter()
        .filter(|p| p.pid != server_pid)
        .filter(|p| p.exe.as_deref() == Some(bin.as_path()))
        .filter(|p| tree.contains(&p.pid) || p.cmdline.contains(&data_dir))
        .collect()
}

pub fn role_of(p: &procs::Proc) -> String {
    p.cmdline
        .split_whitespace()
        .nth(1)
        .unwrap_or("orca")
        .trim_start_matches('_')
        .to_string()
}

pub fn bin_path(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}
