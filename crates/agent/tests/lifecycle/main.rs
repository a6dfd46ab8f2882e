//! The agent driving real containers through a real API server: pods with
//! `spec.nodeName` preset, checked through the API as kubectl would see
//! them. Runs as root. The test binary doubles as the runtime's shim and
//! pause process, hence its own `main` (harness = false).

#[path = "../common/mod.rs"]
mod common;

mod agent_restart;
mod basics;
mod config;
mod deletion;
mod images;
mod init;
mod probes;
mod restarts;
mod security;
mod service_accounts;
mod streaming;
mod support;

use std::time::Duration;

use common::stream;
use common::*;
use libtest_mimic::{Arguments, Failed, Trial};
use orca_runtime::Runtime;
use support::*;

type Case = fn() -> futures::future::BoxFuture<'static, ()>;

fn main() {
    orca_runtime::run_internal_command_if_requested();
    let args = Arguments::from_args();
    let tests: Vec<(&str, Case)> = vec![
        ("pod_runs_with_kubernetes_status_and_events", || {
            Box::pin(basics::pod_runs_with_kubernetes_status_and_events())
        }),
        ("init_containers_run_in_order_before_the_app", || {
            Box::pin(init::init_containers_run_in_order_before_the_app())
        }),
        ("kubectl_watch_shows_init_progress_then_running", || {
            Box::pin(init::kubectl_watch_shows_init_progress_then_running())
        }),
        ("failing_init_container_with_never_fails_the_pod", || {
            Box::pin(init::failing_init_container_with_never_fails_the_pod())
        }),
        ("crashing_container_enters_crash_loop_back_off", || {
            Box::pin(restarts::crashing_container_enters_crash_loop_back_off())
        }),
        ("restart_policies_decide_the_final_phase", || {
            Box::pin(restarts::restart_policies_decide_the_final_phase())
        }),
        ("cooperative_pod_is_gone_before_its_grace_period", || {
            Box::pin(deletion::cooperative_pod_is_gone_before_its_grace_period())
        }),
        ("sigterm_ignoring_pod_is_killed_at_the_grace_period", || {
            Box::pin(deletion::sigterm_ignoring_pod_is_killed_at_the_grace_period())
        }),
        (
            "liveness_failure_restarts_and_readiness_flips_ready",
            || Box::pin(probes::liveness_failure_restarts_and_readiness_flips_ready()),
        ),
        ("missing_image_shows_err_image_pull_then_back_off", || {
            Box::pin(images::missing_image_shows_err_image_pull_then_back_off())
        }),
        ("agent_restart_keeps_pods_running", || {
            Box::pin(agent_restart::agent_restart_keeps_pods_running())
        }),
        ("config_sources_hooks_and_termination_messages", || {
            Box::pin(config::config_sources_hooks_and_termination_messages())
        }),
        (
            "pods_deleted_while_pulling_or_initializing_are_cleaned_up",
            || Box::pin(deletion::pods_deleted_while_pulling_or_initializing_are_cleaned_up()),
        ),
        ("active_deadline_fails_the_pod", || {
            Box::pin(restarts::active_deadline_fails_the_pod())
        }),
        ("readiness_gates_decide_ready", || {
            Box::pin(probes::readiness_gates_decide_ready())
        }),
        ("safe_sysctls_apply_and_unsafe_ones_are_refused", || {
            Box::pin(security::safe_sysctls_apply_and_unsafe_ones_are_refused())
        }),
        ("image_update_restarts_only_that_container", || {
            Box::pin(images::image_update_restarts_only_that_container())
        }),
        ("image_update_resets_the_crash_back_off", || {
            Box::pin(images::image_update_resets_the_crash_back_off())
        }),
        ("api_data_volumes_follow_their_sources", || {
            Box::pin(config::api_data_volumes_follow_their_sources())
        }),
        (
            "service_account_credentials_are_on_tmpfs_and_refreshed",
            || Box::pin(service_accounts::service_account_credentials_are_on_tmpfs_and_refreshed()),
        ),
        ("a_pod_calls_the_api_server_with_its_token", || {
            Box::pin(service_accounts::a_pod_calls_the_api_server_with_its_token())
        }),
        ("streaming_logs_honour_kubectl_options", || {
            Box::pin(streaming::streaming_logs_honour_kubectl_options())
        }),
        ("streaming_exec_speaks_v5_and_v4_with_tty", || {
            Box::pin(streaming::streaming_exec_speaks_v5_and_v4_with_tty())
        }),
        ("seccomp_and_fs_group_apply_to_running_pods", || {
            Box::pin(security::seccomp_and_fs_group_apply_to_running_pods())
        }),
    ];
    let trials = tests
        .into_iter()
        .map(|(name, f)| {
            Trial::test(name, move || {
                std::panic::catch_unwind(|| {
                    tokio::runtime::Builder::new_multi_thread()
                        .worker_threads(2)
                        .enable_all()
                        .build()
                        .unwrap()
                        .block_on(f())
                })
                .map_err(|e| {
                    Failed::from(
                        e.downcast_ref::<String>()
                            .cloned()
                            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_default(),
                    )
                })
            })
        })
        .collect();
    libtest_mimic::run(&args, trials).exit();
}
