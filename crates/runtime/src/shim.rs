//! The per-container shim (conmon's role), a re-exec of the agent's binary:
//! `SHIM_EXE __orca-shim <container dir> <libcontainer root>`.
//!
//! It waits for `go` on stdin (the runtime starts it while it still writes
//! the bundle), then runs single-threaded, because libcontainer clones the
//! calling process and changes process-wide state. It creates the container with its stdio
//! on pipes (or a pty), prints the container's pid (or `error: ...`) on
//! stdout, then serves a control socket and writes the logs until the
//! container exits; it records the exit in `state.json` and leaves. It has
//! its own session, so the agent can exit and come back.
//!
//! Control socket protocol: one command line per connection, `start`,
//! `kill <signal number>`, `wait` (answered `exited <code>` at the end) or
//! `attach` (then framed streams, see [`crate::attach`]). Replies are `ok`
//! or `error <message>`.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::Container;
use libcontainer::syscall::syscall::SyscallType;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::attach::{Frame, FrameKind};
use crate::logs::{CriLog, Stream};
use crate::state::{read_json, write_json, ContainerFiles, ContainerRecord, ShimState, Status};

pub(crate) const SHIM: &str = "__orca-shim";
/// What the runtime writes on the shim's stdin when the bundle is ready.
pub(crate) const GO: &[u8; 3] = b"go\n";
/// How long output is still collected after the container's init exited
/// (a process that escaped into the pod's PID namespace may hold the pipes).
const DRAIN: Duration = Duration::from_secs(2);

pub(crate) fn shim_main(args: &[String]) -> ! {
    let [dir, youki] = args else {
        eprintln!("usage: {SHIM} <container dir> <libcontainer root>");
        std::process::exit(2)
    };
    // The runtime starts the shim before the bundle is ready and says "go"
    // once it is; end of file means the container is not to be created.
    let mut go = [0u8; 3];
    if std::io::stdin().read_exact(&mut go).is_err() || go[..] != GO[..] {
        std::process::exit(0)
    }
    match Shim::create(Path::new(dir), Path::new(youki)) {
        Ok(mut shim) => {
            shim.serve();
            std::process::exit(0)
        }
        Err(e) => {
            eprintln!("orca shim: {e}");
            println!("error: {e}");
            std::process::exit(1)
        }
    }
}

/// Runs the workload as libcontainer's default executor does, after undoing
/// what the Rust runtime did to this process (it ignores SIGPIPE, and an
/// ignored signal stays ignored across exec) and installing the seccomp
/// filter the spec asks for, as late before exec as libcontainer lets us.
#[derive(Clone)]
pub(crate) struct ResetSignalsExecutor;

impl Executor for ResetSignalsExecutor {
    fn exec(&self, spec: &oci_spec::runtime::Spec) -> Result<(), ExecutorError> {
        crate::sys::reset_sigpipe();
        crate::seccomp::apply(spec).map_err(ExecutorError::Other)?;
        libcontainer::workload::default::get_executor().exec(spec)
    }

    fn validate(&self, spec: &oci_spec::runtime::Spec) -> Result<(), ExecutorValidationError> {
        libcontainer::workload::default::get_executor().validate(spec)
    }
}

/// The full chain of an error, for messages the operator can act on.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

struct Client {
    stream: UnixStream,
    pending: Vec<u8>,
}

struct Shim {
    dir: PathBuf,
    youki: PathBuf,
    record: ContainerRecord,
    state: ShimState,
    log: CriLog,
    outputs: Vec<(File, Stream)>,
    stdin: Option<File>,
    /// The pty master, for resizes.
    master: Option<File>,
    control: UnixListener,
    /// Readable once the container's init exited.
    exit_fd: Option<OwnedFd>,
    clients: Vec<Client>,
    waiters: Vec<UnixStream>,
    exited_at: Option<Instant>,
}

fn pipe() -> Result<(File, File), String> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| e.to_string())?;
    Ok((File::from(r), File::from(w)))
}

impl Shim {
    fn create(dir: &Path, youki: &Path) -> Result<Shim, String> {
        let _ = nix::unistd::setsid();
        let record: ContainerRecord =
            read_json(&dir.join(ContainerFiles::RECORD)).map_err(|e| e.to_string())?;
        let spec = oci_spec::runtime::Spec::load(dir.join("config.json"))
            .map_err(|e| format!("load spec: {e}"))?;
        let process = spec.process().as_ref();
        let tty = process.and_then(|p| p.terminal()).unwrap_or(false);
        let want_stdin = record.stdin;
        let log = CriLog::open(&record.log_path)
            .map_err(|e| format!("open log {}: {e}", record.log_path.display()))?;
        let sock = dir.join(ContainerFiles::SOCKET);
        let _ = std::fs::remove_file(&sock);
        let control =
            UnixListener::bind(&sock).map_err(|e| format!("bind {}: {e}", sock.display()))?;

        let mut builder = ContainerBuilder::new(record.id.clone(), SyscallType::default())
            .with_root_path(youki)
            .map_err(|e| error_chain(&e))?
            .with_executor(ResetSignalsExecutor);
        let mut outputs = Vec::new();
        let mut stdin = None;
        let console_path = dir.join("console.sock");
        let console = if tty {
            let _ = std::fs::remove_file(&console_path);
            let l = UnixListener::bind(&console_path)
                .map_err(|e| format!("bind {}: {e}", console_path.display()))?;
            builder = builder.with_console_socket(Some(&console_path));
            Some(l)
        } else {
            let (out_r, out_w) = pipe()?;
            let (err_r, err_w) = pipe()?;
            let child_stdin = if want_stdin {
                let (in_r, in_w) = pipe()?;
                stdin = Some(in_w);
                in_r
            } else {
                File::open("/dev/null").map_err(|e| e.to_string())?
            };
            builder = builder
                .with_stdin(child_stdin)
                .with_stdout(out_w)
                .with_stderr(err_w);
            outputs.push((out_r, Stream::Stdout));
            outputs.push((err_r, Stream::Stderr));
            None
        };
        let container = builder
            .as_init(dir)
            .with_systemd(false)
            .with_detach(true)
            .build()
            .map_err(|e| error_chain(&e))?;
        let pid = container
            .pid()
            .ok_or("libcontainer reported no pid for the container")?
            .as_raw();
        let mut master = None;
        if let Some(l) = console {
            let (conn, _) = l.accept().map_err(|e| format!("console socket: {e}"))?;
            let fd = crate::sys::recv_fd(&conn).map_err(|e| format!("receive pty: {e}"))?;
            let _ = std::fs::remove_file(&console_path);
            let m = File::from(fd);
            if want_stdin {
                stdin = Some(m.try_clone().map_err(|e| e.to_string())?);
            }
            outputs.push((m.try_clone().map_err(|e| e.to_string())?, Stream::Stdout));
            master = Some(m);
        }
        if let Some(s) = &stdin {
            // A container that does not read its stdin must not block the shim.
            set_nonblocking(s.as_fd());
        }

        // libcontainer clones the init with CLONE_PARENT and no exit signal,
        // so no SIGCHLD comes: a pidfd tells when it exits.
        let exit_fd = rustix::process::pidfd_open(
            rustix::process::Pid::from_raw(pid).ok_or("bad container pid")?,
            rustix::process::PidfdFlags::empty(),
        )
        .map_err(|e| format!("pidfd_open {pid}: {e}"))?;

        let state = ShimState {
            status: Status::Created,
            pid,
            started_at: None,
            finished_at: None,
            exit_code: None,
            oom_killed: false,
        };
        write_json(&dir.join(ContainerFiles::STATE), &state).map_err(|e| e.to_string())?;
        let mut out = std::io::stdout();
        let _ = writeln!(out, "{pid}").and_then(|()| out.flush());
        // stderr stays: it is the shim's log file.
        crate::pause::redirect_to_null(&[0, 1]);
        Ok(Shim {
            dir: dir.to_path_buf(),
            youki: youki.to_path_buf(),
            record,
            state,
            log,
            outputs,
            stdin,
            master,
            control,
            exit_fd: Some(exit_fd),
            clients: Vec::new(),
            waiters: Vec::new(),
            exited_at: None,
        })
    }

    fn save(&self) {
        if let Err(e) = write_json(&self.dir.join(ContainerFiles::STATE), &self.state) {
            eprintln!("orca shim: write state: {e}");
        }
    }

    fn serve(&mut self) {
        loop {
            if let Some(at) = self.exited_at {
                if self.outputs.is_empty() || at.elapsed() > DRAIN {
                    self.finish();
                    return;
                }
            }
            let revents = {
                let mut fds = vec![
                    PollFd::new(self.control.as_fd(), PollFlags::POLLIN),
                    match &self.exit_fd {
                        Some(fd) => PollFd::new(fd.as_fd(), PollFlags::POLLIN),
                        // Already exited: a placeholder that never becomes ready.
                        None => PollFd::new(self.control.as_fd(), PollFlags::empty()),
                    },
                ];
                fds.extend(
                    self.outputs
                        .iter()
                        .map(|(f, _)| PollFd::new(f.as_fd(), PollFlags::POLLIN)),
                );
                fds.extend(
                    self.clients
                        .iter()
                        .map(|c| PollFd::new(c.stream.as_fd(), PollFlags::POLLIN)),
                );
                let timeout = if self.exited_at.is_some() {
                    PollTimeout::from(100u16)
                } else {
                    PollTimeout::NONE
                };
                match poll(&mut fds, timeout) {
                    Ok(_) => {}
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(e) => {
                        eprintln!("orca shim: poll: {e}");
                        return;
                    }
                }
                fds.iter()
                    .map(|f| f.revents().unwrap_or(PollFlags::empty()))
                    .collect::<Vec<_>>()
            };
            let ready = |f: PollFlags| !f.is_empty();
            if ready(revents[1]) && self.exit_fd.is_some() {
                self.reap();
            }
            // Clients first, then outputs (which may drop clients), then new
            // connections, so indices still match the polled descriptors.
            let n_out = self.outputs.len();
            for i in (0..self.clients.len()).rev() {
                if ready(revents[2 + n_out + i]) {
                    self.read_client(i);
                }
            }
            for i in (0..n_out).rev() {
                if ready(revents[2 + i]) {
                    self.read_output(i);
                }
            }
            if ready(revents[0]) {
                if let Ok((conn, _)) = self.control.accept() {
                    self.command(conn);
                }
            }
        }
    }

    fn reap(&mut self) {
        self.exit_fd = None;
        loop {
            // __WALL: the init is a "clone child" (no exit signal).
            match waitpid(
                Pid::from_raw(-1),
                Some(WaitPidFlag::WNOHANG | WaitPidFlag::__WALL),
            ) {
                Ok(WaitStatus::Exited(pid, code)) if pid.as_raw() == self.state.pid => {
                    self.exited(code)
                }
                Ok(WaitStatus::Signaled(pid, sig, _)) if pid.as_raw() == self.state.pid => {
                    self.exited(128 + sig as i32)
                }
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }

    fn exited(&mut self, code: i32) {
        self.state.exit_code = Some(code);
        self.state.finished_at = Some(SystemTime::now());
        self.exited_at = Some(Instant::now());
    }

    fn read_output(&mut self, i: usize) {
        let mut buf = [0u8; 32 * 1024];
        match self.outputs[i].0.read(&mut buf) {
            Ok(0) | Err(_) => {
                // EOF, or EIO from a pty whose last slave closed.
                self.outputs.remove(i);
            }
            Ok(n) => {
                let stream = self.outputs[i].1;
                self.log.write(stream, &buf[..n]);
                let frame = Frame::encode(
                    match stream {
                        Stream::Stdout => FrameKind::Stdout,
                        Stream::Stderr => FrameKind::Stderr,
                    },
                    &buf[..n],
                );
                self.clients
                    .retain_mut(|c| c.stream.write_all(&frame).is_ok());
            }
        }
    }

    fn read_client(&mut self, i: usize) {
        let mut buf = [0u8; 32 * 1024];
        let n = match self.clients[i].stream.read(&mut buf) {
            Ok(0) | Err(_) => {
                self.clients.remove(i);
                return;
            }
            Ok(n) => n,
        };
        self.clients[i].pending.extend_from_slice(&buf[..n]);
        while let Some((frame, used)) = Frame::decode(&self.clients[i].pending) {
            self.clients[i].pending.drain(..used);
            match frame.kind {
                FrameKind::Stdin => {
                    if let Some(s) = &mut self.stdin {
                        let _ = s.write_all(&frame.data);
                    }
                }
                // An attach session's input ended. Only `stdinOnce` passes
                // that on; otherwise stdin stays open for the next session.
                FrameKind::CloseStdin if !self.record.stdin_once => {}
                FrameKind::CloseStdin => {
                    // With a pty, stdin is the master: keep it, send EOF (^D) instead.
                    if self.master.is_some() {
                        if let Some(s) = &mut self.stdin {
                            let _ = s.write_all(&[4]);
                        }
                    } else {
                        self.stdin = None;
                    }
                }
                FrameKind::Resize => {
                    if let (Some(m), Some((w, h))) = (&self.master, frame.size()) {
                        crate::sys::set_winsize(m.as_fd(), w, h);
                    }
                }
                FrameKind::Stdout | FrameKind::Stderr => {}
            }
        }
    }

    fn command(&mut self, mut conn: UnixStream) {
        let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = conn.set_write_timeout(Some(Duration::from_secs(2)));
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while line.len() < 256 {
            match conn.read(&mut byte) {
                Ok(1) if byte[0] != b'\n' => line.push(byte[0]),
                _ => break,
            }
        }
        let line = String::from_utf8_lossy(&line).into_owned();
        let mut words = line.split_whitespace();
        let reply = match (words.next(), words.next()) {
            (Some("start"), None) => self.start(),
            (Some("kill"), Some(sig)) => self.kill(sig),
            (Some("wait"), None) => {
                self.waiters.push(conn);
                return;
            }
            (Some("attach"), None) => {
                if conn.write_all(b"ok\n").is_ok() {
                    let _ = conn.set_read_timeout(None);
                    self.clients.push(Client {
                        stream: conn,
                        pending: Vec::new(),
                    });
                }
                return;
            }
            _ => Err(format!("unknown command {line:?}")),
        };
        let msg = match reply {
            Ok(()) => "ok\n".to_string(),
            Err(e) => format!("error {e}\n"),
        };
        let _ = conn.write_all(msg.as_bytes());
    }

    fn start(&mut self) -> Result<(), String> {
        if !self.state.status.can_start() || self.exited_at.is_some() {
            return Err(format!(
                "container {} cannot be started: it is {:?}",
                self.record.id,
                if self.exited_at.is_some() {
                    Status::Exited
                } else {
                    self.state.status
                }
            ));
        }
        let mut c =
            Container::load(self.youki.join(&self.record.id)).map_err(|e| error_chain(&e))?;
        c.start().map_err(|e| error_chain(&e))?;
        self.state.status = Status::Running;
        self.state.started_at = Some(SystemTime::now());
        self.save();
        Ok(())
    }

    fn kill(&mut self, sig: &str) -> Result<(), String> {
        let sig = sig
            .parse::<i32>()
            .ok()
            .and_then(|n| Signal::try_from(n).ok())
            .ok_or_else(|| format!("bad signal {sig:?}"))?;
        if self.exited_at.is_some() {
            return Ok(());
        }
        match nix::sys::signal::kill(Pid::from_raw(self.state.pid), sig) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
            Err(e) => Err(format!("kill {}: {e}", self.state.pid)),
        }
    }

    /// Records the exit, removes the container's cgroup and libcontainer
    /// state, and tells whoever waits.
    fn finish(&mut self) {
        for i in (0..self.outputs.len()).rev() {
            self.read_output(i);
        }
        self.log.finish();
        let cgroup = crate::cgroups::container_path(&self.record.id);
        self.state.oom_killed = crate::cgroups::oom_killed(&cgroup);
        self.state.status = Status::Exited;
        if let Ok(mut c) = Container::load(self.youki.join(&self.record.id)) {
            if let Err(e) = c.delete(true) {
                eprintln!("orca shim: delete container: {}", error_chain(&e));
            }
        }
        self.save();
        let code = self.state.exit_code.unwrap_or(255);
        for mut w in self.waiters.drain(..) {
            let _ = w.write_all(format!("exited {code}\n").as_bytes());
        }
        let _ = std::fs::remove_file(self.dir.join(ContainerFiles::SOCKET));
    }
}

fn set_nonblocking(fd: std::os::fd::BorrowedFd) {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    if let Ok(flags) = fcntl(fd.as_raw_fd(), FcntlArg::F_GETFL) {
        let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
        let _ = fcntl(fd.as_raw_fd(), FcntlArg::F_SETFL(flags));
    }
}
