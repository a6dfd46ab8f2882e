//! `orca`: one binary that is a Kubernetes-compatible control plane (API
//! server, store, scheduler, controllers) and node agent.

mod agent;
mod bootstrap;
mod cli;
mod credentials;
mod images;
mod node;
mod pod_network;
mod server;
mod virtual_nodes;

use clap::Parser;

// The control plane allocates and frees many short-lived JSON trees per
// request; glibc's malloc spent about a quarter of the API server's CPU on
// them (scheduler bench profile), mimalloc a fraction of that.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    orca_runtime::run_internal_command_if_requested();
    let cli = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ORCA_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    cli.run()
}

/// The tokio runtime of every long-running command. Its worker threads get
/// 8 MiB of stack rather than tokio's 2 MiB: unoptimized builds keep each
/// nested async frame's locals on the stack, and the agent's and the
/// controllers' state machines overflowed 2 MiB in debug builds.
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(8 * 1024 * 1024)
        .build()
}
