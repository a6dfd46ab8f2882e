//! `orca virtual-nodes`: simulated nodes (like kwok) registered with a
//! control plane that runs elsewhere, for scale tests. The nodes' pods become
//! Running without containers (see the orca-virtual-nodes crate).
//!
//! It joins like `orca agent` (`--server` and the node token, the CA pinned by
//! the token: each node then gets its own client certificate through a
//! CertificateSigningRequest and acts as `system:node:<name>`) or with a
//! kubeconfig, as kwok users expect.

use std::collections::BTreeMap;

use anyhow::{bail, Context};
use k8s_openapi::api::core::v1::Taint;

use crate::cli::VirtualNodesArgs;

pub fn run(args: VirtualNodesArgs) -> anyhow::Result<()> {
    let runtime = crate::runtime()?;
    runtime.block_on(serve(args))
}

async fn serve(args: VirtualNodesArgs) -> anyhow::Result<()> {
    let config = library_config(&args)?;
    let client: orca_virtual_nodes::Clients =
        match (&args.kubeconfig, &args.server, &args.token_file) {
            (Some(kubeconfig), _, _) => client_from_kubeconfig(kubeconfig).await?.into(),
            (None, Some(server), Some(token_file)) => {
                node_clients(server, token_file, &config).await?
            }
            _ => bail!("give either --kubeconfig, or --server with --token-file"),
        };
    let (count, prefix) = (config.count, config.name_prefix.clone());
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let nodes = orca_virtual_nodes::run_with_ready(client, config, Some(ready_tx));
    tokio::pin!(nodes);
    tokio::select! {
        result = &mut nodes => return result.context("virtual nodes stopped"),
        Ok(()) = ready_rx => {
            let last = count.saturating_sub(1);
            tracing::info!(count, "registered virtual nodes {prefix}0..{prefix}{last}");
        }
    }
    tokio::select! {
        result = nodes => result.context("virtual nodes stopped"),
        _ = crate::server::shutdown_signal() => {
            // The nodes stay registered (as a stopped kubelet's do) and the
            // node lifecycle controller marks them Unknown once their
            // Leases expire.
            tracing::info!("shutting down");
            Ok(())
        }
    }
}

/// A client per virtual node, each with the node's own certificate
/// requested with the join token (a year's lifetime by default; the
/// simulator does not renew them).
async fn node_clients(
    server: &str,
    token_file: &std::path::Path,
    config: &orca_virtual_nodes::Config,
) -> anyhow::Result<orca_virtual_nodes::Clients> {
    use futures::StreamExt;
    let (bootstrap, ca_pem) = crate::agent::join_client(server, token_file).await?;
    let ca = crate::agent::pem_certificates(&ca_pem)?;
    let names: Vec<String> = (0..config.count)
        .map(|i| format!("{}{i}", config.name_prefix))
        .collect();
    let issued: Vec<anyhow::Result<(String, kube::Client)>> = futures::stream::iter(names)
        .map(|name| {
            let (bootstrap, ca) = (bootstrap.clone(), ca.clone());
            async move {
                let credential = crate::credentials::request(&bootstrap, &name).await?;
                let client = crate::credentials::client_with(server, ca, &credential)?;
                Ok((name, client))
            }
        })
        .buffer_unordered(config.parallelism.max(1))
        .collect()
        .await;
    let clients: std::collections::HashMap<String, kube::Client> =
        issued.into_iter().collect::<anyhow::Result<_>>()?;
    let fallback = bootstrap;
    Ok(orca_virtual_nodes::Clients::per_node(move |name| {
        clients
            .get(name)
            .cloned()
            .unwrap_or_else(|| fallback.clone())
    }))
}

fn library_config(args: &VirtualNodesArgs) -> anyhow::Result<orca_virtual_nodes::Config> {
    let mut labels = BTreeMap::new();
    for label in &args.node_labels {
        let (key, value) = label
            .split_once('=')
            .with_context(|| format!("--node-labels {label}: expected KEY=VALUE"))?;
        labels.insert(key.to_string(), value.to_string());
    }
    let defaults = orca_virtual_nodes::Config::default();
    let taints = match &args.register_with_taints {
        None => defaults.taints,
        Some(specs) => specs
            .iter()
            .filter(|s| !s.is_empty())
            .map(|s| parse_taint(s))
            .collect::<anyhow::Result<_>>()?,
    };
    Ok(orca_virtual_nodes::Config {
        count: args.count,
        name_prefix: args.name_prefix.clone(),
        pod_cidr_base: args.pod_cidr_base,
        cpu: args.cpu.clone(),
        memory: args.memory.clone(),
        pods: args.max_pods.clone(),
        labels,
        taints,
        parallelism: args.parallelism,
        termination: if args.immediate_termination {
            orca_virtual_nodes::Termination::Immediate
        } else {
            orca_virtual_nodes::Termination::AfterGrace
        },
        ..defaults
    })
}

/// `KEY[=VALUE]:EFFECT`, as kubelet's --register-with-taints.
fn parse_taint(spec: &str) -> anyhow::Result<Taint> {
    let (key_value, effect) = spec
        .rsplit_once(':')
        .with_context(|| format!("--register-with-taints {spec}: expected KEY[=VALUE]:EFFECT"))?;
    if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
        bail!(
            "--register-with-taints {spec}: effect {effect:?} is not NoSchedule, PreferNoSchedule or NoExecute"
        );
    }
    let (key, value) = match key_value.split_once('=') {
        Some((key, value)) => (key, Some(value.to_string())),
        None => (key_value, None),
    };
    if key.is_empty() {
        bail!("--register-with-taints {spec}: the key is empty");
    }
    Ok(Taint {
        key: key.to_string(),
        value,
        effect: effect.to_string(),
        time_added: None,
    })
}

async fn client_from_kubeconfig(path: &std::path::Path) -> anyhow::Result<kube::Client> {
    let kubeconfig = kube::config::Kubeconfig::read_from(path)
        .with_context(|| format!("reading kubeconfig {}", path.display()))?;
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .with_context(|| format!("loading kubeconfig {}", path.display()))?;
    Ok(kube::Client::try_from(config)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taints_parse_like_the_kubelet_flag() {
        let t = parse_taint("dedicated=scale:NoExecute").unwrap();
        assert_eq!(
            (t.key.as_str(), t.value.as_deref(), t.effect.as_str()),
            ("dedicated", Some("scale"), "NoExecute")
        );
        let t = parse_taint("example.com/sim:NoSchedule").unwrap();
        assert_eq!((t.key.as_str(), t.value), ("example.com/sim", None));
        assert!(parse_taint("dedicated=scale").is_err());
        assert!(parse_taint("dedicated:Sometimes").is_err());
        assert!(parse_taint("=x:NoSchedule").is_err());
    }
}
