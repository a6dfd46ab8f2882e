//! The pod sandbox: its network and IPC namespaces, hostname, volumes and RuntimeClass handler.

use super::*;

/// The pod's hostname as the kubelet gives it: `spec.hostname` or the pod's
/// name, cut to the kernel's 63 characters without a trailing `-` or `.`
/// (pod names may be 253 long).
pub(super) fn pod_hostname(pod_name: &str, hostname: Option<&str>) -> Result<String, String> {
    const MAX: usize = 63;
    let hostname = hostname.filter(|h| !h.is_empty()).unwrap_or(pod_name);
    if hostname.len() <= MAX {
        return Ok(hostname.to_string());
    }
    let cut = hostname
        .get(..MAX)
        .unwrap_or(hostname)
        .trim_end_matches(['-', '.']);
    if cut.is_empty() {
        return Err(format!(
            "hostname for pod {pod_name:?} was invalid: {hostname:?}"
        ));
    }
    Ok(cut.to_string())
}

/// The RuntimeClass handlers this node runs: its one runtime, under the
/// name containerd gives its default.
const RUNTIME_HANDLERS: &[&str] = &["runc"];

fn fs_group_change_policy(spec: &k8s_openapi::api::core::v1::PodSpec) -> FsGroupChangePolicy {
    match spec
        .security_context
        .as_ref()
        .and_then(|sc| sc.fs_group_change_policy.as_deref())
    {
        Some("OnRootMismatch") => FsGroupChangePolicy::OnRootMismatch,
        _ => FsGroupChangePolicy::Always,
    }
}

impl Worker {
    /// What the runtime needs for the pod's sandbox; an error (for the
    /// FailedCreatePodSandBox event) when its resolv.conf cannot be formed.
    pub(super) fn sandbox_config(
        &self,
        volumes: std::collections::BTreeMap<String, orca_runtime::VolumeSource>,
    ) -> Result<orca_runtime::SandboxConfig, String> {
        let spec = self.pod.spec.clone().unwrap_or_default();
        let dns = self.ctx.dns.pod_dns(&self.pod)?;
        crate::network::record_dns_events(&self.ctx, &self.pod, &dns);
        let sysctls = crate::sysctls::of(&spec);
        let fs_group = self
            .fs_group()
            .map(|gid| (gid, fs_group_change_policy(&spec)));
        Ok(orca_runtime::SandboxConfig {
            pod_uid: self.uid.clone(),
            namespace: self.namespace(),
            pod_name: self.name(),
            hostname: pod_hostname(&self.name(), spec.hostname.as_deref())?,
            host_network: spec.host_network.unwrap_or(false),
            host_pid: spec.host_pid.unwrap_or(false),
            host_ipc: spec.host_ipc.unwrap_or(false),
            dns: orca_runtime::DnsConfig {
                nameservers: dns.conf.nameservers,
                searches: dns.conf.searches,
                options: dns.conf.options,
            },
            host_aliases: spec
                .host_aliases
                .unwrap_or_default()
                .into_iter()
                .map(|a| (a.ip, a.hostnames.unwrap_or_default()))
                .collect(),
            volumes,
            share_process_namespace: spec.share_process_namespace.unwrap_or(false),
            sysctls,
            fs_group,
        })
    }

    /// The pod's `securityContext.fsGroup`.
    pub(super) fn fs_group(&self) -> Option<u32> {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.security_context.as_ref())
            .and_then(|sc| sc.fs_group)
            .and_then(|g| u32::try_from(g).ok())
    }

    pub(super) fn downward(&self) -> crate::resolve::Runtime {
        crate::resolve::Runtime {
            pod_ip: self.pod_ip.map(|ip| ip.to_string()),
            host_ip: self.ctx.config.node_ip.to_string(),
            node: self.ctx.node,
        }
    }

    /// Resolves the volumes; writes the API-data ones (configMap, secret,
    /// downwardAPI, projected) under the agent's directory and hands them
    /// to the runtime as host paths, so they can be updated in place.
    pub(super) async fn resolve_volumes(
        &mut self,
    ) -> Result<std::collections::BTreeMap<String, orca_runtime::VolumeSource>, String> {
        let mut volumes = crate::resolve::volumes(
            &self.ctx.client,
            &self.pod,
            &self.downward(),
            &mut self.tokens,
        )
        .await?;
        let dir = crate::volumes::pod_dir(&self.ctx.config.agent_dir(), &self.uid);
        let fs_group = self.fs_group();
        for (name, source) in volumes.iter_mut() {
            if let orca_runtime::VolumeSource::Files { files, .. } = source {
                let failed = |e: std::io::Error| {
                    format!("MountVolume.SetUp failed for volume {name:?} : {e}")
                };
                let path = dir.join(name);
                let in_memory = self
                    .pod
                    .spec
                    .iter()
                    .flat_map(|s| s.volumes.iter().flatten())
                    .any(|v| v.name == *name && crate::resolve::is_memory_backed(v));
                if in_memory {
                    crate::volumes::ensure_tmpfs(&path).map_err(failed)?;
                } else {
                    crate::volumes::ensure_dir(&path).map_err(failed)?;
                }
                if fs_group.is_some() {
                    // The group may read every file (the mode the files
                    // are written with, so a resync sees no change).
                    for (_, mode) in files.values_mut() {
                        *mode |= 0o440;
                    }
                }
                crate::volumes::write(&path, files).map_err(|e| {
                    format!(
                        "MountVolume.SetUp failed for volume {name:?} : writing {}: {e}",
                        path.display()
                    )
                })?;
                if let Some(gid) = fs_group {
                    orca_runtime::set_volume_ownership(
                        &path,
                        gid,
                        true,
                        FsGroupChangePolicy::Always,
                    )
                    .map_err(failed)?;
                }
                *source = orca_runtime::VolumeSource::HostPath { path };
            }
        }
        self.volumes_synced = Some(Instant::now());
        Ok(volumes)
    }

    /// The periodic and label-triggered refresh of a running pod's
    /// API-data volumes. A failure keeps the files as they are.
    pub(super) async fn update_volumes(&mut self) {
        match self.resolve_volumes().await {
            Ok(_) => self.volume_error = None,
            Err(msg) => {
                // One event per distinct failure, not one per resync.
                if self.volume_error.as_ref() != Some(&msg) {
                    self.event(None, Type::Warning, "FailedMount", msg.clone());
                    self.volume_error = Some(msg);
                }
                // Try again at the next resync, not at every poll.
                self.volumes_synced = Some(Instant::now());
            }
        }
    }

    pub(super) async fn ensure_sandbox(&mut self) -> Result<(), Duration> {
        if let Err(msg) = self.runtime_handler().await {
            self.event(
                None,
                Type::Warning,
                "FailedCreatePodSandBox",
                format!("Failed to create pod sandbox: {msg}"),
            );
            return Err(RETRY);
        }
        let volumes = match self.resolve_volumes().await {
            Ok(v) => v,
            Err(msg) => {
                self.event(None, Type::Warning, "FailedMount", msg);
                return Err(RETRY);
            }
        };
        let config = match self.sandbox_config(volumes) {
            Ok(config) => config,
            Err(msg) => {
                self.event(
                    None,
                    Type::Warning,
                    "FailedCreatePodSandBox",
                    format!("Failed to create pod sandbox: {msg}"),
                );
                return Err(RETRY);
            }
        };
        let runtime = self.ctx.runtime.clone();
        let result = unless_deleted(&mut self.rx, &mut self.pod, &mut self.gone, async move {
            runtime.run_sandbox(&config).await
        })
        .await;
        match result {
            None => Err(Duration::ZERO),
            Some(Ok(sb)) => {
                self.pod_ip = sb.ip;
                self.sandbox_ready = true;
                if let Some(ip) = sb.ip {
                    self.ctx.host_ports.set(&self.uid, &self.pod, ip);
                }
                Ok(())
            }
            Some(Err(e)) => {
                self.event(
                    None,
                    Type::Warning,
                    "FailedCreatePodSandBox",
                    format!("Failed to create pod sandbox: {e}"),
                );
                Err(RETRY)
            }
        }
    }

    /// Checks that the pod's RuntimeClass names a handler this node has,
    /// as the kubelet asks its container runtime; the pod waits otherwise.
    pub(super) async fn runtime_handler(&self) -> Result<(), String> {
        let Some(class) = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.runtime_class_name.clone())
        else {
            return Ok(());
        };
        let classes: Api<RuntimeClass> = Api::all(self.ctx.client.clone());
        let handler = match classes.get(&class).await {
            Ok(rc) => rc.handler,
            Err(kube::Error::Api(s)) if s.code == 404 => {
                return Err(format!("runtimeClass {class:?} not found"))
            }
            Err(e) => return Err(format!("looking up runtimeClass {class:?}: {e}")),
        };
        if RUNTIME_HANDLERS.contains(&handler.as_str()) {
            Ok(())
        } else {
            Err(format!(
                "rpc error: code = Unknown desc = failed to get sandbox runtime: no runtime for {handler:?} is configured (this node runs only {RUNTIME_HANDLERS:?})"
            ))
        }
    }

    pub(super) async fn remove_sandbox(&self) {
        if let Err(e) = self.ctx.runtime.remove_sandbox(&self.uid).await {
            if !matches!(e, orca_runtime::Error::SandboxNotFound(_)) {
                tracing::warn!(pod = %self.name(), "removing the sandbox: {e}");
            }
        }
        crate::volumes::remove_pod(&self.ctx.config.agent_dir(), &self.uid);
    }
}

#[cfg(test)]
mod tests {
    use super::pod_hostname;

    #[test]
    fn hostnames_are_cut_to_63_characters_as_the_kubelet_does() {
        assert_eq!(pod_hostname("web", None).unwrap(), "web");
        assert_eq!(pod_hostname("web-0", Some("db")).unwrap(), "db");
        // The upstream suite's pods: a name and a uuid, 66 characters.
        let long = "termination-message-container69f32b4d-bc49-485e-80cf-404213b90d74";
        assert_eq!(
            pod_hostname(long, None).unwrap(),
            "termination-message-container69f32b4d-bc49-485e-80cf-404213b90d"
        );
        // No trailing '-' or '.' after the cut.
        let name = format!("{}-.-x", "a".repeat(61));
        assert_eq!(pod_hostname(&name, None).unwrap(), "a".repeat(61));
        assert!(pod_hostname(&format!("{}x", "-".repeat(63)), None).is_err());
    }
}
