//! A process a test started, with its output in a log file, stopped by pid.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

pub use nix::sys::signal::Signal;

use nix::sys::signal::kill;
use nix::unistd::Pid;

pub struct Process {
    child: Child,
    log: PathBuf,
}

impl Process {
    /// Starts `command` with stdout and stderr appended to `log`.
    pub fn spawn(command: &mut Command, log: &Path) -> Process {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("opening {}: {e}", log.display()));
        let child = command
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {command:?}: {e}"));
        Process {
            child,
            log: log.to_path_buf(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last `lines` lines of the log, headed by its path.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        format!(
            "--- {} (tail) ---\n{}",
            self.log.display(),
            all[all.len().saturating_sub(lines)..].join("\n")
        )
    }

    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends `signal` (e.g. SIGSTOP, SIGCONT) to this process only.
    pub fn signal(&self, signal: Signal) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), signal);
    }

    /// SIGTERM, then SIGKILL after `grace`; returns how long it took to exit.
    pub fn terminate(&mut self, grace: Duration) -> Duration {
        let start = Instant::now();
        if !self.running() {
            return Duration::ZERO;
        }
        // A stopped process would never see the SIGTERM.
        self.signal(Signal::SIGCONT);
        self.signal(Signal::SIGTERM);
        while start.elapsed() < grace {
            if !self.running() {
                return start.elapsed();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill();
        start.elapsed()
    }

    /// SIGKILL, and waits for the exit.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.terminate(Duration::from_secs(20));
    }
}

/// A free TCP port on 127.0.0.1 (free when asked; good enough for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding a free port")
}

/// Polls `done` every 200 ms until it holds, panicking with `what` and
/// `context()` after `limit`.
pub fn wait_until(
    what: &str,
    limit: Duration,
    mut done: impl FnMut() -> bool,
    context: impl Fn() -> String,
) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting until {what}\n{}",
            context()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
