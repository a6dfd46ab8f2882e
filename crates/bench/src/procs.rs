//! Reading processes from /proc: memory (RSS, PSS), process trees, and
//! waiting for a process to die.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Mem {
    pub rss_kib: u64,
    pub pss_kib: u64,
}

impl std::ops::Add for Mem {
    type Output = Mem;
    fn add(self, o: Mem) -> Mem {
        Mem {
            rss_kib: self.rss_kib + o.rss_kib,
            pss_kib: self.pss_kib + o.pss_kib,
        }
    }
}

/// RSS and PSS of one process from /proc/PID/smaps_rollup (None once it is gone).
pub fn mem(pid: u32) -> Option<Mem> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    Some(parse_smaps_rollup(&text))
}

pub fn parse_smaps_rollup(text: &str) -> Mem {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Mem {
        rss_kib: field("Rss:"),
        pss_kib: field("Pss:"),
    }
}

#[derive(Clone, Debug)]
pub struct Proc {
    pub pid: u32,
    pub ppid: u32,
    pub comm: String,
    /// argv joined with spaces.
    pub cmdline: String,
    pub exe: Option<PathBuf>,
}

pub fn all() -> Vec<Proc> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(read)
        .collect()
}

fn read(pid: u32) -> Option<Proc> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (comm, ppid) = parse_stat(&stat)?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let cmdline = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    Some(Proc {
        pid,
        ppid,
        comm,
        cmdline,
        exe: std::fs::read_link(format!("/proc/{pid}/exe")).ok(),
    })
}

/// (comm, ppid) from /proc/PID/stat; comm is in parentheses and may itself
/// contain spaces and parentheses, so split at the last ')'.
pub fn parse_stat(stat: &str) -> Option<(String, u32)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_string();
    let mut rest = stat.get(close + 1..)?.split_whitespace();
    let _state = rest.next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some((comm, ppid))
}

/// The pids of every descendant of `root` (not `root` itself).
pub fn descendants(procs: &[Proc], root: u32) -> HashSet<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for p in procs {
        children.entry(p.ppid).or_default().push(p.pid);
    }
    let mut out = HashSet::new();
    let mut stack = vec![root];
    while let Some(pid) = stack.pop() {
        for &child in children.get(&pid).into_iter().flatten() {
            if out.insert(child) {
                stack.push(child);
            }
        }
    }
    out
}

/// The first process whose argv contains `marker`.
pub fn find_by_marker(marker: &str) -> Option<u32> {
    all()
        .into_iter()
        .find(|p| p.cmdline.contains(marker))
        .map(|p| p.pid)
}

/// Whether `pid` is alive (a zombie counts as dead: it no longer runs).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Polls `pid` every 2 ms until it dies; returns when it did, measured from
/// `since`, or None if it outlives `timeout`.
pub fn wait_dead(pid: u32, since: Instant, timeout: Duration) -> Option<Duration> {
    while alive(pid) {
        if since.elapsed() > timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Some(since.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smaps_rollup_fields() {
        let text = "55d0c5a2e000-7ffd2a1f5000 ---p 00000000 00:00 0 [rollup]\n\
                    Rss:               12345 kB\nPss:                6789 kB\nPss_Anon: 1 kB\n";
        assert_eq!(
            parse_smaps_rollup(text),
            Mem {
                rss_kib: 12345,
                pss_kib: 6789
            }
        );
    }

    #[test]
    fn stat_with_odd_comm() {
        let stat = "4242 (we ird) name)) S 17 4242 4242 0 -1";
        assert_eq!(parse_stat(stat), Some(("we ird) name)".to_string(), 17)));
    }

    #[test]
    fn descendants_follow_the_tree() {
        let p = |pid, ppid| Proc {
            pid,
            ppid,
            comm: String::new(),
            cmdline: String::new(),
            exe: None,
        };
        let procs = vec![p(1, 0), p(10, 1), p(11, 10), p(12, 11), p(20, 1)];
        assert_eq!(descendants(&procs, 10), HashSet::from([11, 12]));
        assert!(descendants(&procs, 12).is_empty());
    }

    #[test]
    fn this_process_is_alive_and_has_memory() {
        let me = std::process::id();
        assert!(alive(me));
        assert!(mem(me).unwrap().rss_kib > 0);
        assert!(!alive(u32::MAX));
    }
}
