//! Attach: streams of a running container's main process, relayed by its
//! shim over the control socket as frames `[kind u8][length u32 BE][data]`.

use std::path::Path;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use crate::state::ContainerFiles;
use crate::{Error, Result, StreamSession, TerminalSize};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FrameKind {
    Stdin = 0,
    Stdout = 1,
    Stderr = 2,
    Resize = 3,
    CloseStdin = 4,
}

pub(crate) struct Frame {
    pub kind: FrameKind,
    pub data: Vec<u8>,
}

impl Frame {
    pub fn encode(kind: FrameKind, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(data.len() + 5);
        out.push(kind as u8);
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        out.extend_from_slice(data);
        out
    }

    /// A complete frame at the start of `buf` and its length, if there is one.
    pub fn decode(buf: &[u8]) -> Option<(Frame, usize)> {
        if buf.len() < 5 {
            return None;
        }
        let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
        if buf.len() < 5 + len {
            return None;
        }
        let kind = match buf[0] {
            0 => FrameKind::Stdin,
            1 => FrameKind::Stdout,
            2 => FrameKind::Stderr,
            3 => FrameKind::Resize,
            _ => FrameKind::CloseStdin,
        };
        Some((
            Frame {
                kind,
                data: buf[5..5 + len].to_vec(),
            },
            5 + len,
        ))
    }

    pub fn resize(size: TerminalSize) -> Vec<u8> {
        let mut d = size.width.to_be_bytes().to_vec();
        d.extend_from_slice(&size.height.to_be_bytes());
        Frame::encode(FrameKind::Resize, &d)
    }

    /// Width and height of a resize frame.
    pub fn size(&self) -> Option<(u16, u16)> {
        (self.data.len() == 4).then(|| {
            (
                u16::from_be_bytes([self.data[0], self.data[1]]),
                u16::from_be_bytes([self.data[2], self.data[3]]),
            )
        })
    }
}

/// Sends one command to a container's shim and returns the connection after
/// the reply line, or the shim's error.
pub(crate) async fn shim_command(dir: &Path, id: &str, command: &str) -> Result<UnixStream> {
    let sock = dir.join(ContainerFiles::SOCKET);
    let mut conn = UnixStream::connect(&sock)
        .await
        .map_err(|_| Error::NotRunning { id: id.to_string() })?;
    conn.write_all(format!("{command}\n").as_bytes())
        .await
        .map_err(|e| Error::Other(format!("container {id}: shim: {e}")))?;
    if command == "wait" {
        return Ok(conn);
    }
    let line = read_line(&mut conn).await;
    match line.as_str() {
        "ok" => Ok(conn),
        "" => Err(Error::NotRunning { id: id.to_string() }),
        other => Err(Error::Other(format!(
            "container {id}: {command}: {}",
            other.trim_start_matches("error ")
        ))),
    }
}

/// Reads one line byte by byte, so nothing after it is consumed.
pub(crate) async fn read_line(conn: &mut UnixStream) -> String {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while let Ok(1) = conn.read(&mut byte).await {
        if byte[0] == b'\n' {
            break;
        }
        line.push(byte[0]);
    }
    String::from_utf8_lossy(&line).into_owned()
}

/// Waits for the container to exit; resolves to its exit code.
pub(crate) async fn wait_exit(dir: &Path, id: &str) -> Result<i32> {
    let conn = shim_command(dir, id, "wait").await?;
    let mut lines = BufReader::new(conn).lines();
    match lines.next_line().await {
        Ok(Some(l)) => l
            .strip_prefix("exited ")
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| Error::Other(format!("container {id}: unexpected shim reply {l:?}"))),
        // The shim is gone: it only leaves after recording the exit.
        _ => Err(Error::NotRunning { id: id.to_string() }),
    }
}

pub(crate) async fn attach(dir: &Path, id: &str, stdin: bool, tty: bool) -> Result<StreamSession> {
    let conn = shim_command(dir, id, "attach").await?;
    let (mut rd, mut wr) = conn.into_split();
    let (stdout_w, stdout_r) = tokio::io::duplex(64 * 1024);
    let (stderr_w, stderr_r) = if tty {
        (None, None)
    } else {
        let (w, r) = tokio::io::duplex(64 * 1024);
        (Some(w), Some(r))
    };
    // Closing our half of the socket would end the attach on the shim's
    // side, so the writer keeps it until the output ends.
    let (output_done_tx, output_done_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _done = output_done_tx;
        let (mut out, mut err) = (stdout_w, stderr_w);
        let mut buf = Vec::new();
        let mut chunk = vec![0u8; 32 * 1024];
        loop {
            let n = match rd.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            buf.extend_from_slice(&chunk[..n]);
            while let Some((frame, used)) = Frame::decode(&buf) {
                buf.drain(..used);
                let _ = match (frame.kind, err.as_mut()) {
                    (FrameKind::Stderr, Some(e)) => e.write_all(&frame.data).await,
                    _ => out.write_all(&frame.data).await,
                };
            }
        }
    });
    let (resize_tx, mut resize_rx) = tokio::sync::mpsc::channel::<TerminalSize>(8);
    let (stdin_w, mut stdin_r) = tokio::io::duplex(64 * 1024);
    tokio::spawn(async move {
        let mut chunk = vec![0u8; 32 * 1024];
        let mut stdin_open = stdin;
        let mut resize_open = true;
        while stdin_open || resize_open {
            let frame = tokio::select! {
                n = stdin_r.read(&mut chunk), if stdin_open => match n {
                    Ok(0) | Err(_) => {
                        stdin_open = false;
                        Frame::encode(FrameKind::CloseStdin, &[])
                    }
                    Ok(n) => Frame::encode(FrameKind::Stdin, &chunk[..n]),
                },
                size = resize_rx.recv(), if resize_open => match size {
                    Some(size) => Frame::resize(size),
                    None => {
                        resize_open = false;
                        continue;
                    }
                },
            };
            if wr.write_all(&frame).await.is_err() {
                break;
            }
        }
        let _ = output_done_rx.await;
        drop(wr);
    });
    let (exit_tx, exit_rx) = tokio::sync::oneshot::channel();
    let (dir, id) = (dir.to_path_buf(), id.to_string());
    tokio::spawn(async move {
        if let Ok(code) = wait_exit(&dir, &id).await {
            let _ = exit_tx.send(code);
        }
    });
    Ok(StreamSession {
        stdin: stdin.then(|| Box::pin(stdin_w) as crate::BoxedWriter),
        stdout: Some(Box::pin(stdout_r)),
        stderr: stderr_r.map(|r| Box::pin(r) as crate::BoxedReader),
        resize: tty.then_some(resize_tx),
        exit: exit_rx,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let mut buf = Frame::encode(FrameKind::Stdout, b"hello");
        buf.extend(Frame::resize(TerminalSize {
            width: 80,
            height: 24,
        }));
        let (f, used) = Frame::decode(&buf).unwrap();
        assert_eq!(
            (f.kind, f.data.as_slice()),
            (FrameKind::Stdout, &b"hello"[..])
        );
        let (f, used2) = Frame::decode(&buf[used..]).unwrap();
        assert_eq!(f.kind, FrameKind::Resize);
        assert_eq!(f.size(), Some((80, 24)));
        assert_eq!(used + used2, buf.len());
        assert!(Frame::decode(&buf[..3]).is_none());
    }
}
