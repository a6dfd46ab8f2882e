//! exec: a process in a running container's namespaces and cgroup, run by a
//! re-exec'd helper (`SHIM_EXE __orca-exec <libcontainer root> <id>
//! <process.json> <console socket|->`) through libcontainer's tenant builder.
//! The helper's exit code is the process' exit code. Without a TTY the
//! process inherits the helper's stdio pipes; with one, libcontainer sends
//! the pty master to a socket the runtime listens on.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use nix::sys::wait::{waitpid, WaitStatus};

use crate::linux::{blocking, Inner};
use crate::shim::{error_chain, ResetSignalsExecutor};
use crate::state::{random_id, read_json, ContainerFiles, ShimState};
use crate::{BoxedReader, BoxedWriter, Error, ExecRequest, Result, StreamSession, TerminalSize};

pub(crate) const EXEC: &str = "__orca-exec";
/// Exit code when the helper could not run the process at all.
const EXEC_FAILED: i32 = 126;

pub(crate) fn exec_main(args: &[String]) -> ! {
    let [youki, id, process, console] = args else {
        eprintln!("usage: {EXEC} <libcontainer root> <id> <process.json> <console socket|->");
        std::process::exit(2)
    };
    let run = || -> Result<i32, String> {
        let mut builder = ContainerBuilder::new(id.clone(), SyscallType::default())
            .with_root_path(youki)
            .map_err(|e| error_chain(&e))?
            .with_executor(ResetSignalsExecutor);
        if console != "-" {
            builder = builder.with_console_socket(Some(console));
        }
        let pid = builder
            .as_tenant()
            .with_process(Some(process))
            .with_detach(true)
            .build()
            .map_err(|e| error_chain(&e))?;
        loop {
            match waitpid(pid, Some(nix::sys::wait::WaitPidFlag::__WALL)) {
                Ok(WaitStatus::Exited(_, code)) => return Ok(code),
                Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(128 + sig as i32),
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(format!("wait for exec'd process: {e}")),
            }
        }
    };
    match run() {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("exec in container {id}: {e}");
            std::process::exit(EXEC_FAILED)
        }
    }
}

/// Writes the process to run: the container's own process (user,
/// capabilities, env, cwd) with the requested command.
fn write_process(dir: &Path, request: &ExecRequest, tag: &str) -> Result<PathBuf> {
    let spec = oci_spec::runtime::Spec::load(dir.join("config.json"))
        .map_err(|e| Error::Other(format!("load spec: {e}")))?;
    let mut process = spec
        .process()
        .clone()
        .ok_or_else(|| Error::Other("the container spec has no process".into()))?;
    process.set_args(Some(request.command.clone()));
    process.set_terminal(Some(request.tty));
    let path = dir.join(format!("exec-{tag}.json"));
    std::fs::write(
        &path,
        serde_json::to_vec(&process).map_err(|e| Error::Other(e.to_string()))?,
    )
    .map_err(|e| Error::Other(format!("write {}: {e}", path.display())))?;
    Ok(path)
}

pub(crate) async fn exec(
    inner: &Arc<Inner>,
    id: &str,
    request: ExecRequest,
) -> Result<StreamSession> {
    if request.command.is_empty() {
        return Err(Error::Other(format!("exec in container {id}: no command")));
    }
    let dir = inner.layout.container(id);
    let tag = random_id().map_err(|e| Error::Other(e.to_string()))?;
    let (process, req_tty) = {
        let (id, dir, req, tag) = (id.to_string(), dir.clone(), request.clone(), tag.clone());
        blocking(inner, move |_| {
            let state: ShimState = read_json(&dir.join(ContainerFiles::STATE))
                .map_err(|_| Error::ContainerNotFound(id.clone()))?;
            if !state.status.can_exec() {
                return Err(Error::NotRunning { id });
            }
            Ok((write_process(&dir, &req, &tag)?, req.tty))
        })
        .await?
    };
    // Short: a socket path must fit in 108 bytes.
    let console = dir.join(format!("x{}.sock", &tag[..8]));
    let listener = if req_tty {
        Some(
            tokio::net::UnixListener::bind(&console)
                .map_err(|e| Error::Other(format!("bind {}: {e}", console.display())))?,
        )
    } else {
        None
    };
    let mut cmd = tokio::process::Command::new(&inner.shim_exe);
    cmd.arg(EXEC)
        .arg(inner.layout.youki())
        .arg(id)
        .arg(&process)
        .arg(if req_tty {
            console.as_os_str()
        } else {
            "-".as_ref()
        });
    if req_tty {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
    } else {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
    }
    let cleanup = {
        let (process, console) = (process.clone(), console.clone());
        move || {
            let _ = std::fs::remove_file(&process);
            let _ = std::fs::remove_file(&console);
        }
    };
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            cleanup();
            return Err(Error::Other(format!(
                "exec in container {id}: start helper {}: {e}",
                inner.shim_exe.display()
            )));
        }
    };
    let (exit_tx, exit_rx) = tokio::sync::oneshot::channel();
    let session = match listener {
        None => {
            let stdin = child.stdin.take();
            let stdout = child.stdout.take();
            let stderr = child.stderr.take();
            tokio::spawn(async move {
                let code = child
                    .wait()
                    .await
                    .ok()
                    .and_then(|s| s.code())
                    .unwrap_or(EXEC_FAILED);
                cleanup();
                let _ = exit_tx.send(code);
            });
            StreamSession {
                stdin: if request.stdin {
                    stdin.map(|s| Box::pin(s) as BoxedWriter)
                } else {
                    None
                },
                stdout: stdout.map(|s| Box::pin(s) as BoxedReader),
                stderr: stderr.map(|s| Box::pin(s) as BoxedReader),
                resize: None,
                exit: exit_rx,
            }
        }
        Some(listener) => {
            let conn = tokio::select! {
                c = listener.accept() => c.map(|(c, _)| c).map_err(|e| e.to_string()),
                status = child.wait() => {
                    let mut err = String::new();
                    if let Some(mut e) = child.stderr.take() {
                        let _ = tokio::io::AsyncReadExt::read_to_string(&mut e, &mut err).await;
                    }
                    Err(format!("helper exited ({status:?}) before the terminal was set up: {}", err.trim()))
                }
            };
            let master = match conn {
                Ok(conn) => {
                    let std_conn = conn.into_std().map_err(|e| Error::Other(e.to_string()))?;
                    let _ = std_conn.set_nonblocking(false);
                    let _ = std_conn.set_read_timeout(Some(Duration::from_secs(10)));
                    tokio::task::spawn_blocking(move || crate::sys::recv_fd(&std_conn))
                        .await
                        .map_err(|e| Error::Other(e.to_string()))?
                        .map_err(|e| Error::Other(format!("receive the exec terminal: {e}")))
                }
                Err(e) => Err(Error::Other(format!("exec in container {id}: {e}"))),
            };
            let master = match master {
                Ok(m) => std::fs::File::from(m),
                Err(e) => {
                    cleanup();
                    return Err(e);
                }
            };
            let writer = master
                .try_clone()
                .map_err(|e| Error::Other(e.to_string()))?;
            let resizer = master
                .try_clone()
                .map_err(|e| Error::Other(e.to_string()))?;
            let (resize_tx, mut resize_rx) = tokio::sync::mpsc::channel::<TerminalSize>(8);
            tokio::spawn(async move {
                while let Some(size) = resize_rx.recv().await {
                    use std::os::fd::AsFd;
                    crate::sys::set_winsize(resizer.as_fd(), size.width, size.height);
                }
            });
            tokio::spawn(async move {
                let code = child
                    .wait()
                    .await
                    .ok()
                    .and_then(|s| s.code())
                    .unwrap_or(EXEC_FAILED);
                cleanup();
                let _ = exit_tx.send(code);
            });
            StreamSession {
                stdin: request
                    .stdin
                    .then(|| Box::pin(tokio::fs::File::from_std(writer)) as BoxedWriter),
                stdout: Some(Box::pin(tokio::fs::File::from_std(master))),
                stderr: None,
                resize: Some(resize_tx),
                exit: exit_rx,
            }
        }
    };
    Ok(session)
}
