//! `seccompProfile: RuntimeDefault`: the effect of the container runtimes'
//! default profile (moby's and containerd's), compiled to classic BPF here
//! because the build links no C library (libseccomp).
//!
//! The profile is an allowlist: other system calls fail with EPERM. Calls
//! that only a capability makes useful (mount, setns, module loading, ...)
//! are allowed only when the container holds that capability; without
//! CAP_SYS_ADMIN, `clone` may not create namespaces and `clone3` fails with
//! ENOSYS (so C libraries fall back to `clone`, whose flags the filter can
//! read). Only x86_64 is implemented: elsewhere a RuntimeDefault container
//! is refused rather than run unconfined.
//!
//! The filter is installed by the container's init (or exec'd process)
//! right before `execve`, after libcontainer dropped capabilities. Without
//! `no_new_privs` (allowPrivilegeEscalation not false) installing a filter
//! needs CAP_SYS_ADMIN, as in runc: the spec then keeps CAP_SYS_ADMIN and
//! CAP_SETPCAP through libcontainer's drop, and the process drops to the
//! container's own sets (an annotation) once the filter is in place.

use std::collections::BTreeMap;

use oci_spec::runtime::Spec;

/// Spec annotation naming the profile to install (`RuntimeDefault`).
pub(crate) const PROFILE_ANNOTATION: &str = "org.orca.seccomp.profile";
/// Spec annotation with the container's own capabilities, comma-separated,
/// present when the spec's sets hold more to install the filter.
pub(crate) const CAPS_ANNOTATION: &str = "org.orca.seccomp.capabilities";
pub(crate) const RUNTIME_DEFAULT: &str = "RuntimeDefault";

/// The capabilities the process needs to install a filter without
/// `no_new_privs` and then drop its bounding set.
pub(crate) const INSTALL_CAPS: &[&str] = &["CAP_SYS_ADMIN", "CAP_SETPCAP"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    Allow,
    Errno(u32),
}

/// A condition on the low 32 bits of the first argument: every argument
/// the profile looks at (socket's domain, personality's persona, clone's
/// flags) is an int or keeps its meaningful bits there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Check {
    Always,
    Arg0Not(u32),
    Arg0In(&'static [u32]),
    Arg0MaskClear(u32),
}

/// Syscall numbers by their x86_64 name.
#[cfg(target_arch = "x86_64")]
macro_rules! nrs {
    ($($name:ident),* $(,)?) => { &[$(libc::$name),*] };
}

/// Allowed to every container.
#[cfg(target_arch = "x86_64")]
#[rustfmt::skip]
const ALWAYS: &[libc::c_long] = nrs![
    SYS_accept, SYS_accept4, SYS_access, SYS_adjtimex, SYS_alarm, SYS_arch_prctl, SYS_bind, SYS_brk,
    SYS_capget, SYS_capset, SYS_chdir, SYS_chmod, SYS_chown, SYS_clock_adjtime, SYS_clock_getres,
    SYS_clock_gettime, SYS_clock_nanosleep, SYS_close, SYS_close_range, SYS_connect,
    SYS_copy_file_range, SYS_creat, SYS_dup, SYS_dup2, SYS_dup3, SYS_epoll_create,
    SYS_epoll_create1, SYS_epoll_ctl, SYS_epoll_ctl_old, SYS_epoll_pwait, SYS_epoll_pwait2,
    SYS_epoll_wait, SYS_epoll_wait_old, SYS_eventfd, SYS_eventfd2, SYS_execve, SYS_execveat,
    SYS_exit, SYS_exit_group, SYS_faccessat, SYS_faccessat2, SYS_fadvise64, SYS_fallocate,
    SYS_fanotify_mark, SYS_fchdir, SYS_fchmod, SYS_fchmodat, SYS_fchown, SYS_fchownat, SYS_fcntl,
    SYS_fdatasync, SYS_fgetxattr, SYS_flistxattr, SYS_flock, SYS_fork, SYS_fremovexattr,
    SYS_fsetxattr, SYS_fstat, SYS_fstatfs, SYS_fsync, SYS_ftruncate, SYS_futex, SYS_futex_waitv,
    SYS_futimesat, SYS_getcpu, SYS_getcwd, SYS_getdents, SYS_getdents64, SYS_getegid, SYS_geteuid,
    SYS_getgid, SYS_getgroups, SYS_getitimer, SYS_getpeername, SYS_getpgid, SYS_getpgrp, SYS_getpid,
    SYS_getppid, SYS_getpriority, SYS_getrandom, SYS_getresgid, SYS_getresuid, SYS_getrlimit,
    SYS_get_robust_list, SYS_getrusage, SYS_getsid, SYS_getsockname, SYS_getsockopt,
    SYS_get_thread_area, SYS_gettid, SYS_gettimeofday, SYS_getuid, SYS_getxattr,
    SYS_inotify_add_watch, SYS_inotify_init, SYS_inotify_init1, SYS_inotify_rm_watch, SYS_io_cancel,
    SYS_ioctl, SYS_io_destroy, SYS_io_getevents, SYS_ioprio_get, SYS_ioprio_set, SYS_io_setup,
    SYS_io_submit, SYS_io_uring_enter, SYS_io_uring_register, SYS_io_uring_setup, SYS_kill,
    SYS_landlock_add_rule, SYS_landlock_create_ruleset, SYS_landlock_restrict_self, SYS_lchown,
    SYS_lgetxattr, SYS_link, SYS_linkat, SYS_listen, SYS_listxattr, SYS_llistxattr,
    SYS_lremovexattr, SYS_lseek, SYS_lsetxattr, SYS_lstat, SYS_madvise, SYS_membarrier,
    SYS_memfd_create, SYS_memfd_secret, SYS_mincore, SYS_mkdir, SYS_mkdirat, SYS_mknod, SYS_mknodat,
    SYS_mlock, SYS_mlock2, SYS_mlockall, SYS_mmap, SYS_modify_ldt, SYS_mprotect, SYS_mq_getsetattr,
    SYS_mq_notify, SYS_mq_open, SYS_mq_timedreceive, SYS_mq_timedsend, SYS_mq_unlink, SYS_mremap,
    SYS_msgctl, SYS_msgget, SYS_msgrcv, SYS_msgsnd, SYS_msync, SYS_munlock, SYS_munlockall,
    SYS_munmap, SYS_name_to_handle_at, SYS_nanosleep, SYS_newfstatat, SYS_open, SYS_openat,
    SYS_openat2, SYS_pause, SYS_pidfd_open, SYS_pidfd_send_signal, SYS_pipe, SYS_pipe2,
    SYS_pkey_alloc, SYS_pkey_free, SYS_pkey_mprotect, SYS_poll, SYS_ppoll, SYS_prctl, SYS_pread64,
    SYS_preadv, SYS_preadv2, SYS_prlimit64, SYS_process_mrelease, SYS_pselect6, SYS_pwrite64,
    SYS_pwritev, SYS_pwritev2, SYS_read, SYS_readahead, SYS_readlink, SYS_readlinkat, SYS_readv,
    SYS_recvfrom, SYS_recvmmsg, SYS_recvmsg, SYS_remap_file_pages, SYS_removexattr, SYS_rename,
    SYS_renameat, SYS_renameat2, SYS_restart_syscall, SYS_rmdir, SYS_rseq, SYS_rt_sigaction,
    SYS_rt_sigpending, SYS_rt_sigprocmask, SYS_rt_sigqueueinfo, SYS_rt_sigreturn, SYS_rt_sigsuspend,
    SYS_rt_sigtimedwait, SYS_rt_tgsigqueueinfo, SYS_sched_getaffinity, SYS_sched_getattr,
    SYS_sched_getparam, SYS_sched_get_priority_max, SYS_sched_get_priority_min,
    SYS_sched_getscheduler, SYS_sched_rr_get_interval, SYS_sched_setaffinity, SYS_sched_setattr,
    SYS_sched_setparam, SYS_sched_setscheduler, SYS_sched_yield, SYS_seccomp, SYS_select,
    SYS_semctl, SYS_semget, SYS_semop, SYS_semtimedop, SYS_sendfile, SYS_sendmmsg, SYS_sendmsg,
    SYS_sendto, SYS_setfsgid, SYS_setfsuid, SYS_setgid, SYS_setgroups, SYS_setitimer, SYS_setpgid,
    SYS_setpriority, SYS_setregid, SYS_setresgid, SYS_setresuid, SYS_setreuid, SYS_setrlimit,
    SYS_set_robust_list, SYS_setsid, SYS_setsockopt, SYS_set_thread_area, SYS_set_tid_address,
    SYS_setuid, SYS_setxattr, SYS_shmat, SYS_shmctl, SYS_shmdt, SYS_shmget, SYS_shutdown,
    SYS_sigaltstack, SYS_signalfd, SYS_signalfd4, SYS_socketpair, SYS_splice, SYS_stat, SYS_statfs,
    SYS_statx, SYS_symlink, SYS_symlinkat, SYS_sync, SYS_sync_file_range, SYS_syncfs, SYS_sysinfo,
    SYS_tee, SYS_tgkill, SYS_time, SYS_timer_create, SYS_timer_delete, SYS_timer_getoverrun,
    SYS_timer_gettime, SYS_timer_settime, SYS_timerfd_create, SYS_timerfd_gettime,
    SYS_timerfd_settime, SYS_times, SYS_tkill, SYS_truncate, SYS_umask, SYS_uname, SYS_unlink,
    SYS_unlinkat, SYS_utime, SYS_utimensat, SYS_utimes, SYS_vfork, SYS_vmsplice, SYS_wait4,
    SYS_waitid, SYS_write, SYS_writev,
    // Safe since Linux 4.8, where seccomp runs after ptrace's changes.
    SYS_ptrace, SYS_process_vm_readv, SYS_process_vm_writev,
];

/// x86_64's io_pgetevents, which the libc crate does not name.
#[cfg(target_arch = "x86_64")]
const SYS_IO_PGETEVENTS: libc::c_long = 333;

/// Allowed only to a container that holds the capability.
#[cfg(target_arch = "x86_64")]
const BY_CAPABILITY: &[(&str, &[libc::c_long])] = &[
    ("CAP_DAC_READ_SEARCH", nrs![SYS_open_by_handle_at]),
    (
        "CAP_SYS_ADMIN",
        nrs![
            SYS_bpf,
            SYS_clone,
            SYS_clone3,
            SYS_fanotify_init,
            SYS_fsconfig,
            SYS_fsmount,
            SYS_fsopen,
            SYS_fspick,
            SYS_lookup_dcookie,
            SYS_mount,
            SYS_mount_setattr,
            SYS_move_mount,
            SYS_open_tree,
            SYS_perf_event_open,
            SYS_quotactl,
            SYS_quotactl_fd,
            SYS_setdomainname,
            SYS_sethostname,
            SYS_setns,
            SYS_syslog,
            SYS_umount2,
            SYS_unshare,
        ],
    ),
    ("CAP_SYS_BOOT", nrs![SYS_reboot]),
    ("CAP_SYS_CHROOT", nrs![SYS_chroot]),
    (
        "CAP_SYS_MODULE",
        nrs![SYS_delete_module, SYS_init_module, SYS_finit_module],
    ),
    ("CAP_SYS_PACCT", nrs![SYS_acct]),
    (
        "CAP_SYS_PTRACE",
        nrs![SYS_kcmp, SYS_pidfd_getfd, SYS_process_madvise],
    ),
    ("CAP_SYS_RAWIO", nrs![SYS_iopl, SYS_ioperm]),
    ("CAP_SYS_TIME", nrs![SYS_settimeofday, SYS_clock_settime]),
    ("CAP_SYS_TTY_CONFIG", nrs![SYS_vhangup]),
    (
        "CAP_SYS_NICE",
        nrs![
            SYS_get_mempolicy,
            SYS_mbind,
            SYS_set_mempolicy,
            SYS_set_mempolicy_home_node
        ],
    ),
    ("CAP_SYSLOG", nrs![SYS_syslog]),
    ("CAP_BPF", nrs![SYS_bpf]),
    ("CAP_PERFMON", nrs![SYS_perf_event_open]),
];

const AF_VSOCK: u32 = 40;
/// The personalities programs ask for: PER_LINUX and PER_LINUX32, each
/// also with UNAME26, and the query 0xffffffff.
const PERSONALITIES: &[u32] = &[0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];
/// CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET.
const CLONE_NAMESPACES: u32 = 0x7E02_0000;

/// The profile's rules for a container holding `caps`: syscall number to
/// what happens when it matches.
#[cfg(target_arch = "x86_64")]
fn rules(caps: &[&str]) -> BTreeMap<u32, (Action, Check)> {
    let mut rules = BTreeMap::new();
    let allow = (Action::Allow, Check::Always);
    for nr in ALWAYS.iter().chain([&SYS_IO_PGETEVENTS]) {
        rules.insert(*nr as u32, allow);
    }
    rules.insert(
        libc::SYS_socket as u32,
        (Action::Allow, Check::Arg0Not(AF_VSOCK)),
    );
    rules.insert(
        libc::SYS_personality as u32,
        (Action::Allow, Check::Arg0In(PERSONALITIES)),
    );
    if !caps.contains(&"CAP_SYS_ADMIN") {
        rules.insert(
            libc::SYS_clone as u32,
            (Action::Allow, Check::Arg0MaskClear(CLONE_NAMESPACES)),
        );
        rules.insert(
            libc::SYS_clone3 as u32,
            (Action::Errno(libc::ENOSYS as u32), Check::Always),
        );
    }
    for (cap, nrs) in BY_CAPABILITY {
        if caps.contains(cap) {
            for nr in *nrs {
                rules.insert(*nr as u32, allow);
            }
        }
    }
    rules
}

// Classic BPF over `struct seccomp_data`: nr at 0, arch at 4, args from 16
// (the low half of an argument first, on little-endian x86_64).
const NR: u32 = 0;
const ARCH: u32 = 4;
const ARG0_LOW: u32 = 16;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;
const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;

fn stmt(code: u32, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(op: u32, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter {
        code: (libc::BPF_JMP | op | libc::BPF_K) as u16,
        jt,
        jf,
        k,
    }
}

fn load(offset: u32) -> libc::sock_filter {
    stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, offset)
}

fn ret(action: Action) -> libc::sock_filter {
    let k = match action {
        Action::Allow => libc::SECCOMP_RET_ALLOW,
        Action::Errno(e) => libc::SECCOMP_RET_ERRNO | (e & libc::SECCOMP_RET_DATA),
    };
    stmt(libc::BPF_RET | libc::BPF_K, k)
}

const DENY: Action = Action::Errno(libc::EPERM as u32);

/// The instructions run once the syscall number matched; each path returns.
fn body(action: Action, check: Check) -> Vec<libc::sock_filter> {
    match check {
        Check::Always => vec![ret(action)],
        Check::Arg0Not(v) => vec![
            load(ARG0_LOW),
            jump(libc::BPF_JEQ, v, 0, 1),
            ret(DENY),
            ret(action),
        ],
        Check::Arg0MaskClear(mask) => vec![
            load(ARG0_LOW),
            jump(libc::BPF_JSET, mask, 0, 1),
            ret(DENY),
            ret(action),
        ],
        Check::Arg0In(values) => {
            let mut out = vec![load(ARG0_LOW)];
            for (i, v) in values.iter().enumerate() {
                // Past the remaining comparisons and the deny.
                let to_action = (values.len() - i) as u8;
                out.push(jump(libc::BPF_JEQ, *v, to_action, 0));
            }
            out.push(ret(DENY));
            out.push(ret(action));
            out
        }
    }
}

/// The RuntimeDefault filter for a container holding `caps`.
#[cfg(target_arch = "x86_64")]
pub(crate) fn runtime_default(caps: &[&str]) -> Vec<libc::sock_filter> {
    let mut prog = vec![
        load(ARCH),
        jump(libc::BPF_JEQ, AUDIT_ARCH_X86_64, 1, 0),
        // Another ABI (i386 through int 0x80) would reuse the numbers.
        stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_KILL_PROCESS),
        load(NR),
        // x32 calls carry this bit; the profile allows none of them here.
        jump(libc::BPF_JGE, X32_SYSCALL_BIT, 0, 1),
        ret(DENY),
    ];
    let rules: Vec<(u32, Vec<libc::sock_filter>)> = rules(caps)
        .into_iter()
        .map(|(nr, (action, check))| (nr, body(action, check)))
        .collect();
    prog.extend(search(&rules));
    prog
}

/// Rules per search-tree leaf, compared one after the other.
const LEAF: usize = 4;

/// A binary search over the sorted syscall numbers, so that a call costs
/// a few dozen instructions rather than a walk through the whole list.
/// Every path ends in a return.
fn search(rules: &[(u32, Vec<libc::sock_filter>)]) -> Vec<libc::sock_filter> {
    if rules.len() <= LEAF {
        let mut out = Vec::new();
        for (nr, body) in rules {
            out.push(jump(libc::BPF_JEQ, *nr, 0, body.len() as u8));
            out.extend(body.iter().copied());
        }
        out.push(ret(DENY));
        return out;
    }
    let (low, high) = rules.split_at(rules.len() / 2);
    let low = search(low);
    let mut out = vec![
        // At or above the upper half's first number: on to the jump over
        // the lower half (which may be longer than a conditional jump).
        jump(libc::BPF_JGE, high[0].0, 0, 1),
        stmt(libc::BPF_JMP | libc::BPF_JA, low.len() as u32),
    ];
    out.extend(low);
    out.extend(search(high));
    out
}

#[cfg(not(target_arch = "x86_64"))]
pub(crate) fn runtime_default(_caps: &[&str]) -> Vec<libc::sock_filter> {
    Vec::new()
}

/// Why a profile cannot be applied on this node, checked when the
/// container is created.
pub(crate) fn unsupported(profile: &crate::SeccompProfile) -> Option<String> {
    match profile {
        crate::SeccompProfile::Unconfined => None,
        crate::SeccompProfile::RuntimeDefault if cfg!(target_arch = "x86_64") => None,
        crate::SeccompProfile::RuntimeDefault => Some(format!(
            "seccomp profile RuntimeDefault is not implemented for {} (only x86_64)",
            std::env::consts::ARCH
        )),
        crate::SeccompProfile::Localhost(path) => Some(format!(
            "seccomp profile type Localhost ({path}) is not supported by this runtime: use RuntimeDefault or Unconfined"
        )),
    }
}

/// In the container's process, right before exec: installs the filter the
/// spec asks for, then drops to the container's own capabilities if the
/// spec kept more for the installation.
pub(crate) fn apply(spec: &Spec) -> Result<(), String> {
    let annotations = spec.annotations().clone().unwrap_or_default();
    match annotations.get(PROFILE_ANNOTATION).map(String::as_str) {
        None => return Ok(()),
        Some(RUNTIME_DEFAULT) => {}
        Some(other) => return Err(format!("unknown seccomp profile {other:?}")),
    }
    let own: Option<Vec<&str>> = annotations
        .get(CAPS_ANNOTATION)
        .map(|c| c.split(',').filter(|c| !c.is_empty()).collect());
    let spec_caps: Vec<String> = spec
        .process()
        .as_ref()
        .and_then(|p| p.capabilities().as_ref())
        .and_then(|c| c.bounding().as_ref())
        .map(|b| {
            b.iter()
                .filter_map(|c| serde_json::to_value(c).ok()?.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let caps: Vec<&str> = match &own {
        Some(own) => own.clone(),
        None => spec_caps.iter().map(String::as_str).collect(),
    };
    let filter = runtime_default(&caps);
    install(&filter)?;
    if let Some(own) = own {
        let sets: oci_spec::runtime::LinuxCapabilities = serde_json::from_value(
            serde_json::json!({"bounding": own, "effective": own, "permitted": own}),
        )
        .map_err(|e| format!("container capabilities: {e}"))?;
        let syscall = libcontainer::syscall::syscall::create_syscall();
        libcontainer::capabilities::drop_privileges(&sets, syscall.as_ref())
            .map_err(|e| format!("drop capabilities after installing seccomp: {e}"))?;
    }
    Ok(())
}

// The seccomp(2) call has no safe wrapper in nix or rustix.
#[allow(unsafe_code)]
fn install(filter: &[libc::sock_filter]) -> Result<(), String> {
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: `prog` points at `filter`, alive for the call; the kernel copies it.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0,
            &prog as *const libc::sock_fprog,
        )
    };
    if rc != 0 {
        return Err(format!(
            "install seccomp filter: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    fn run(prog: &[libc::sock_filter], arch: u32, nr: u32, arg0: u64) -> u32 {
        evaluate(prog, arch, nr, arg0).0
    }

    /// Runs the filter on a syscall as the kernel would (the instructions
    /// this module emits only): its verdict and how many instructions ran.
    fn evaluate(prog: &[libc::sock_filter], arch: u32, nr: u32, arg0: u64) -> (u32, usize) {
        let word = |k: u32| match k {
            NR => nr,
            ARCH => arch,
            ARG0_LOW => arg0 as u32,
            20 => (arg0 >> 32) as u32,
            _ => panic!("load of offset {k}"),
        };
        let (mut pc, mut a) = (0usize, 0u32);
        for steps in 1.. {
            let i = prog[pc];
            let code = i.code as u32;
            pc += 1;
            if code == libc::BPF_LD | libc::BPF_W | libc::BPF_ABS {
                a = word(i.k);
            } else if code == libc::BPF_RET | libc::BPF_K {
                return (i.k, steps);
            } else if code == libc::BPF_JMP | libc::BPF_JA {
                pc += i.k as usize;
            } else {
                let taken = match code & 0xf0 {
                    op if op == libc::BPF_JEQ => a == i.k,
                    op if op == libc::BPF_JGE => a >= i.k,
                    op if op == libc::BPF_JSET => a & i.k != 0,
                    _ => panic!("instruction {code:#x}"),
                };
                pc += if taken { i.jt } else { i.jf } as usize;
            }
        }
        unreachable!("a filter always returns")
    }

    const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
    const EPERM: u32 = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
    const ENOSYS: u32 = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;

    fn call(caps: &[&str], nr: libc::c_long, arg0: u64) -> u32 {
        run(&runtime_default(caps), AUDIT_ARCH_X86_64, nr as u32, arg0)
    }

    #[test]
    fn ordinary_calls_pass_and_unknown_ones_fail_with_eperm() {
        let caps = crate::spec::DEFAULT_CAPS;
        for nr in [
            libc::SYS_read,
            libc::SYS_execve,
            libc::SYS_openat,
            libc::SYS_ptrace,
        ] {
            assert_eq!(call(caps, nr, 0), ALLOW, "syscall {nr}");
        }
        assert_eq!(call(caps, libc::SYS_socket, libc::AF_INET as u64), ALLOW);
        assert_eq!(call(caps, libc::SYS_socket, AF_VSOCK as u64), EPERM);
        assert_eq!(call(caps, libc::SYS_personality, 0xffff_ffff), ALLOW);
        assert_eq!(call(caps, libc::SYS_personality, 0x0040_0000), EPERM);
        assert_eq!(call(caps, 1000, 0), EPERM);
        assert_eq!(call(caps, X32_SYSCALL_BIT as libc::c_long, 0), EPERM);
        let i386 = 0x4000_0003;
        assert_eq!(
            run(&runtime_default(caps), i386, 1, 0),
            libc::SECCOMP_RET_KILL_PROCESS
        );
        assert!(runtime_default(caps).len() < 4096);
    }

    #[test]
    fn privileged_calls_need_their_capability() {
        let caps = crate::spec::DEFAULT_CAPS;
        for nr in [
            libc::SYS_mount,
            libc::SYS_umount2,
            libc::SYS_unshare,
            libc::SYS_setns,
            libc::SYS_init_module,
            libc::SYS_kexec_load,
            libc::SYS_reboot,
            libc::SYS_kcmp,
        ] {
            assert_eq!(call(caps, nr, 0), EPERM, "syscall {nr}");
        }
        assert_eq!(call(caps, libc::SYS_chroot, 0), ALLOW);
        assert_eq!(call(caps, libc::SYS_clone, libc::SIGCHLD as u64), ALLOW);
        let newns = (libc::CLONE_NEWNS | libc::SIGCHLD) as u64;
        assert_eq!(call(caps, libc::SYS_clone, newns), EPERM);
        assert_eq!(call(caps, libc::SYS_clone3, 0), ENOSYS);

        let admin: Vec<&str> = caps.iter().copied().chain(["CAP_SYS_ADMIN"]).collect();
        assert_eq!(call(&admin, libc::SYS_mount, 0), ALLOW);
        assert_eq!(call(&admin, libc::SYS_clone, newns), ALLOW);
        assert_eq!(call(&admin, libc::SYS_clone3, 0), ALLOW);
        // kexec is in no capability's list: never allowed.
        assert_eq!(call(&admin, libc::SYS_kexec_load, 0), EPERM);
        assert_eq!(call(&["CAP_SYS_MODULE"], libc::SYS_init_module, 0), ALLOW);
    }

    #[test]
    fn the_search_finds_every_rule() {
        let caps = crate::spec::DEFAULT_CAPS;
        let prog = runtime_default(caps);
        let rules = rules(caps);
        for nr in 0..600u32 {
            let want = match rules.get(&nr) {
                None => EPERM,
                Some((Action::Allow, Check::Always)) => ALLOW,
                Some((Action::Errno(e), Check::Always)) => libc::SECCOMP_RET_ERRNO | e,
                // Checked above for the calls that have one.
                Some(_) => continue,
            };
            assert_eq!(run(&prog, AUDIT_ARCH_X86_64, nr, 0), want, "syscall {nr}");
        }
        // A few dozen instructions per call, not hundreds.
        let longest = (0..600u32)
            .map(|nr| evaluate(&prog, AUDIT_ARCH_X86_64, nr, 0).1)
            .max()
            .unwrap();
        assert!(longest < 40, "{longest} instructions");
    }
}
