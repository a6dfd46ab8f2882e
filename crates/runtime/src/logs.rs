//! Container logs in the CRI format the kubelet reads:
//! `2016-10-06T00:17:09.669794202Z stdout F line` (F for a full line, P for a
//! part of a line that was split because it was too long).

use std::io::Write;
use std::time::SystemTime;

use chrono::{DateTime, SecondsFormat, Utc};

/// Lines longer than this are written as several `P` records, as containerd does.
const MAX_LINE: usize = 16 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Splits one stream's bytes into CRI records.
#[derive(Default)]
pub(crate) struct LineSplitter {
    pending: Vec<u8>,
}

impl LineSplitter {
    /// Feeds bytes; calls `emit(line, full)` for every complete (or too long) line.
    pub fn push(&mut self, mut data: &[u8], emit: &mut dyn FnMut(&[u8], bool)) {
        while !data.is_empty() {
            let newline = data.iter().position(|&b| b == b'\n');
            let (chunk, rest) = match newline {
                Some(i) => (&data[..i], &data[i + 1..]),
                None => (data, &[][..]),
            };
            self.pending.extend_from_slice(chunk);
            while self.pending.len() > MAX_LINE {
                let tail = self.pending.split_off(MAX_LINE);
                emit(&self.pending, false);
                self.pending = tail;
            }
            if newline.is_some() {
                emit(&self.pending, true);
                self.pending.clear();
            }
            data = rest;
        }
    }

    /// At end of stream, a last line without a newline stays a partial
    /// record, as containerd writes it: readers (`kubectl logs`, the
    /// FallbackToLogsOnError termination message) get no newline added.
    pub fn finish(&mut self, emit: &mut dyn FnMut(&[u8], bool)) {
        if !self.pending.is_empty() {
            emit(&self.pending, false);
            self.pending.clear();
        }
    }
}

/// Formats one CRI log record.
pub(crate) fn record(time: SystemTime, stream: Stream, full: bool, line: &[u8]) -> Vec<u8> {
    let ts = DateTime::<Utc>::from(time).to_rfc3339_opts(SecondsFormat::Nanos, true);
    let mut out = Vec::with_capacity(line.len() + 48);
    out.extend_from_slice(ts.as_bytes());
    out.push(b' ');
    out.extend_from_slice(stream.name().as_bytes());
    out.extend_from_slice(if full { b" F " } else { b" P " });
    out.extend_from_slice(line);
    out.push(b'\n');
    out
}

/// A container's log file with one splitter per stream.
pub(crate) struct CriLog {
    file: std::fs::File,
    stdout: LineSplitter,
    stderr: LineSplitter,
}

impl CriLog {
    pub fn open(path: &std::path::Path) -> std::io::Result<CriLog> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(CriLog {
            file,
            stdout: LineSplitter::default(),
            stderr: LineSplitter::default(),
        })
    }

    pub fn write(&mut self, stream: Stream, data: &[u8]) {
        let now = SystemTime::now();
        let mut out = Vec::new();
        let splitter = match stream {
            Stream::Stdout => &mut self.stdout,
            Stream::Stderr => &mut self.stderr,
        };
        splitter.push(data, &mut |line, full| {
            out.extend(record(now, stream, full, line))
        });
        // A full disk must not stop the container; the bytes are dropped.
        let _ = self.file.write_all(&out);
    }

    pub fn finish(&mut self) {
        let now = SystemTime::now();
        let mut out = Vec::new();
        for (stream, splitter) in [
            (Stream::Stdout, &mut self.stdout),
            (Stream::Stderr, &mut self.stderr),
        ] {
            splitter.finish(&mut |line, full| out.extend(record(now, stream, full, line)));
        }
        let _ = self.file.write_all(&out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn split(chunks: &[&[u8]]) -> Vec<(String, bool)> {
        let mut s = LineSplitter::default();
        let mut out = Vec::new();
        for c in chunks {
            s.push(c, &mut |l, f| {
                out.push((String::from_utf8_lossy(l).into_owned(), f))
            });
        }
        s.finish(&mut |l, f| out.push((String::from_utf8_lossy(l).into_owned(), f)));
        out
    }

    #[test]
    fn joins_chunks_into_lines() {
        assert_eq!(
            split(&[b"he", b"llo\nwor", b"ld\n\nlast"]),
            vec![
                ("hello".into(), true),
                ("world".into(), true),
                ("".into(), true),
                ("last".into(), false)
            ]
        );
    }

    #[test]
    fn long_lines_become_partial_records() {
        let long = vec![b'x'; MAX_LINE + 10];
        let mut data = long.clone();
        data.push(b'\n');
        let out = split(&[&data]);
        assert_eq!(out.len(), 2);
        assert!(!out[0].1);
        assert_eq!(out[0].0.len(), MAX_LINE);
        assert_eq!(out[1], ("x".repeat(10), true));
    }

    #[test]
    fn record_format_matches_cri() {
        let t = SystemTime::UNIX_EPOCH + Duration::new(1_475_713_029, 669_794_202);
        assert_eq!(
            String::from_utf8(record(t, Stream::Stdout, true, b"line")).unwrap(),
            "2016-10-06T00:17:09.669794202Z stdout F line\n"
        );
        assert_eq!(
            String::from_utf8(record(t, Stream::Stderr, false, b"a")).unwrap(),
            "2016-10-06T00:17:09.669794202Z stderr P a\n"
        );
    }
}
