//! The re-exec entry point: the agent's own binary doubles as the
//! per-container shim, the pod's pause process and the exec helper, so
//! nothing else has to be installed on a node.

/// Environment for the long-lived internal processes (shim, pause). The
/// orca binary allocates with mimalloc, whose default 1 GiB arena leaves
/// about 4 MiB of dirty pages in every process, more than a shim needs in
/// all; without an arena a shim's private memory drops from 5.2 to 1.1 MiB.
/// Other allocators ignore the variable; containers do not inherit it
/// (libcontainer sets their environment from the spec).
pub(crate) const LEAN_ENV: [(&str, &str); 1] = [("MIMALLOC_ARENA_RESERVE", "0")];

/// Call first thing in `main()` (before any thread is started): when argv
/// names one of the runtime's internal roles, runs it and never returns.
pub fn run_internal_command_if_requested() {
    let args: Vec<String> = std::env::args().collect();
    let Some(role) = args.get(1) else { return };
    let rest = &args[2..];
    match role.as_str() {
        crate::shim::SHIM => crate::shim::shim_main(rest),
        crate::pause::PAUSE => crate::pause::pause_main(rest),
        crate::exec::EXEC => crate::exec::exec_main(rest),
        r if crate::pause::is_hold(r) => crate::pause::hold_main(),
        _ => {}
    }
}
