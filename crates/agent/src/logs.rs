//! Container logs in the CRI file format the runtime writes
//! (`<RFC3339Nano> <stdout|stderr> <P|F> <message>`), rendered as
//! `kubectl logs` expects: tail, since, timestamps, byte limit.

use chrono::{DateTime, Utc};

/// One log line as written by the runtime.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line<'a> {
    pub timestamp: &'a str,
    pub time: Option<DateTime<Utc>>,
    pub stream: &'a str,
    /// `false` for a partial line (`P`) continued by the next one.
    pub full: bool,
    pub message: &'a str,
}

/// Parses one CRI line (without its trailing newline).
pub fn parse_line(line: &str) -> Option<Line<'_>> {
    let mut parts = line.splitn(4, ' ');
    let timestamp = parts.next()?;
    let stream = parts.next()?;
    let tag = parts.next()?;
    let message = parts.next().unwrap_or("");
    if stream != "stdout" && stream != "stderr" {
        return None;
    }
    let full = !tag.split(':').any(|t| t == "P");
    Some(Line {
        timestamp,
        time: DateTime::parse_from_rfc3339(timestamp)
            .ok()
            .map(|t| t.with_timezone(&Utc)),
        stream,
        full,
        message,
    })
}

#[derive(Clone, Debug, Default)]
pub struct LogOptions {
    pub tail_lines: Option<i64>,
    pub since: Option<DateTime<Utc>>,
    pub timestamps: bool,
    pub limit_bytes: Option<i64>,
}

/// Renders one parsed line as `kubectl logs` prints it.
pub fn render_line(line: &Line<'_>, timestamps: bool, out: &mut Vec<u8>) {
    if timestamps {
        out.extend_from_slice(line.timestamp.as_bytes());
        out.push(b' ');
    }
    out.extend_from_slice(line.message.as_bytes());
    if line.full {
        out.push(b'\n');
    }
}

fn wanted(line: &Line<'_>, opts: &LogOptions) -> bool {
    match (opts.since, line.time) {
        (Some(since), Some(t)) => t >= since,
        _ => true,
    }
}

/// Renders the complete lines of a log file's content. Lines not ended by a
/// newline yet are left for a follower to pick up (see [`Follower`]).
pub fn render(content: &str, opts: &LogOptions) -> Vec<u8> {
    let complete = match content.rfind('\n') {
        Some(i) => &content[..=i],
        None => "",
    };
    let lines: Vec<Line<'_>> = complete
        .lines()
        .filter_map(parse_line)
        .filter(|l| wanted(l, opts))
        .collect();
    // tailLines counts log lines, where partial fragments belong to the
    // line they end in.
    let start = match opts.tail_lines {
        Some(n) if n >= 0 => {
            let mut full_seen = 0i64;
            let mut start = lines.len();
            for (i, l) in lines.iter().enumerate().rev() {
                if l.full {
                    if full_seen == n {
                        break;
                    }
                    full_seen += 1;
                }
                start = i;
            }
            if n == 0 {
                lines.len()
            } else {
                start
            }
        }
        _ => 0,
    };
    let mut out = Vec::new();
    for l in &lines[start..] {
        render_line(l, opts.timestamps, &mut out);
    }
    limit(&mut out, opts.limit_bytes);
    out
}

/// Cuts output to `limitBytes`.
pub fn limit(out: &mut Vec<u8>, limit_bytes: Option<i64>) {
    if let Some(n) = limit_bytes {
        if n >= 0 && out.len() as i64 > n {
            out.truncate(n as usize);
        }
    }
}

/// Incremental reader for `follow`: feed it newly appended file bytes and
/// it returns the rendered complete lines.
#[derive(Debug, Default)]
pub struct Follower {
    pending: Vec<u8>,
}

impl Follower {
    pub fn feed(&mut self, bytes: &[u8], opts: &LogOptions) -> Vec<u8> {
        self.pending.extend_from_slice(bytes);
        let Some(end) = self.pending.iter().rposition(|b| *b == b'\n') else {
            return Vec::new();
        };
        let chunk: Vec<u8> = self.pending.drain(..=end).collect();
        let text = String::from_utf8_lossy(&chunk);
        let mut out = Vec::new();
        for l in text.lines().filter_map(parse_line) {
            if wanted(&l, opts) {
                render_line(&l, opts.timestamps, &mut out);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "2026-11-28T10:37:46.100000000Z stdout F hello\n\
2026-11-28T10:37:47.000000000Z stderr F oops\n\
2026-11-28T10:37:48.000000000Z stdout P part one \n\
2026-11-28T10:37:48.500000000Z stdout F and two\n\
2026-11-28T10:37:49.000000000Z stdout F last\n\
2026-11-28T10:37:50.000000000Z stdout F not yet ended";

    fn s(v: Vec<u8>) -> String {
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn prints_messages_and_joins_partials() {
        assert_eq!(
            s(render(LOG, &LogOptions::default())),
            "hello\noops\npart one and two\nlast\n"
        );
    }

    #[test]
    fn tail_counts_whole_lines() {
        let opts = |n| LogOptions {
            tail_lines: Some(n),
            ..Default::default()
        };
        assert_eq!(s(render(LOG, &opts(1))), "last\n");
        assert_eq!(s(render(LOG, &opts(2))), "part one and two\nlast\n");
        assert_eq!(s(render(LOG, &opts(0))), "");
        assert_eq!(s(render(LOG, &opts(100))).lines().count(), 4);
    }

    #[test]
    fn since_and_timestamps() {
        let opts = LogOptions {
            since: Some("2026-11-28T10:37:48.600Z".parse().unwrap()),
            timestamps: true,
            ..Default::default()
        };
        assert_eq!(
            s(render(LOG, &opts)),
            "2026-11-28T10:37:49.000000000Z last\n"
        );
    }

    #[test]
    fn limit_bytes_cuts_output() {
        let opts = LogOptions {
            limit_bytes: Some(7),
            ..Default::default()
        };
        assert_eq!(s(render(LOG, &opts)), "hello\no");
    }

    #[test]
    fn follower_waits_for_line_ends() {
        let mut f = Follower::default();
        let opts = LogOptions::default();
        assert_eq!(s(f.feed(b"2026-11-28T10:37:46Z stdout F he", &opts)), "");
        assert_eq!(
            s(f.feed(b"llo\n2026-11-28T10:37:46Z stdout F x", &opts)),
            "hello\n"
        );
        assert_eq!(s(f.feed(b"\n", &opts)), "x\n");
    }

    #[test]
    fn garbage_lines_are_skipped() {
        assert_eq!(parse_line("nonsense"), None);
        assert_eq!(s(render("x y z\n", &LogOptions::default())), "");
    }
}
