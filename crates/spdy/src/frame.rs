//! SPDY/3.1 frames on the wire (draft-mbelshe-httpbis-spdy-00 and the 3.1
//! amendments): an 8-byte header, then the payload. Control frames start
//! with the control bit, version 3 and a type; data frames with a stream id.
//! Header blocks are compressed with one zlib stream per direction, primed
//! with SPDY's dictionary and sync-flushed after every block.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use crate::dictionary::dictionary;

pub const VERSION: u16 = 3;
pub const FLAG_FIN: u8 = 0x01;
pub const FLAG_UNIDIRECTIONAL: u8 = 0x02;

const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const SETTINGS: u16 = 4;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;
const WINDOW_UPDATE: u16 = 9;

/// RST_STREAM status codes used here.
pub const RST_PROTOCOL_ERROR: u32 = 1;
pub const RST_REFUSED_STREAM: u32 = 3;
pub const RST_CANCEL: u32 = 5;

/// The largest payload a frame's 24-bit length can carry.
pub const MAX_PAYLOAD: usize = (1 << 24) - 1;
/// Decompressed header blocks larger than this are refused.
const MAX_HEADER_BLOCK: usize = 1 << 20;

/// Header names (lowercase) and values; a name given several values travels
/// as one pair with the values separated by NUL.
pub type Headers = Vec<(String, String)>;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    SynStream {
        stream_id: u32,
        associated_to: u32,
        priority: u8,
        flags: u8,
        headers: Headers,
    },
    SynReply {
        stream_id: u32,
        flags: u8,
        headers: Headers,
    },
    RstStream {
        stream_id: u32,
        status: u32,
    },
    Settings {
        /// (flags, id, value)
        entries: Vec<(u8, u32, u32)>,
    },
    Ping {
        id: u32,
    },
    GoAway {
        last_good_stream_id: u32,
        status: u32,
    },
    Headers {
        stream_id: u32,
        flags: u8,
        headers: Headers,
    },
    WindowUpdate {
        stream_id: u32,
        delta: u32,
    },
    Data {
        stream_id: u32,
        flags: u8,
        data: Bytes,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("SPDY version {0} is not supported (only 3)")]
    Version(u16),
    #[error("malformed {what} frame: {why}")]
    Malformed { what: &'static str, why: String },
    #[error("header block: {0}")]
    HeaderBlock(String),
}

fn malformed(what: &'static str, why: impl Into<String>) -> FrameError {
    FrameError::Malformed {
        what,
        why: why.into(),
    }
}

/// Writes frames; owns the compressing half of the header zlib stream.
pub struct Encoder {
    zlib: Compress,
}

impl Default for Encoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Encoder {
    pub fn new() -> Encoder {
        let mut zlib = Compress::new(Compression::best(), true);
        zlib.set_dictionary(dictionary())
            .expect("a fresh zlib stream takes a dictionary");
        Encoder { zlib }
    }

    pub fn encode(&mut self, frame: &Frame, out: &mut BytesMut) {
        match frame {
            Frame::Data {
                stream_id,
                flags,
                data,
            } => {
                out.put_u32(stream_id & 0x7fff_ffff);
                out.put_u32((*flags as u32) << 24 | data.len() as u32);
                out.put_slice(data);
            }
            Frame::SynStream {
                stream_id,
                associated_to,
                priority,
                flags,
                headers,
            } => {
                let block = self.compress(headers);
                control(out, SYN_STREAM, *flags, 10 + block.len());
                out.put_u32(stream_id & 0x7fff_ffff);
                out.put_u32(associated_to & 0x7fff_ffff);
                out.put_u8((priority & 0x7) << 5);
                out.put_u8(0); // credential slot
                out.put_slice(&block);
            }
            Frame::SynReply {
                stream_id,
                flags,
                headers,
            } => {
                let block = self.compress(headers);
                control(out, SYN_REPLY, *flags, 4 + block.len());
                out.put_u32(stream_id & 0x7fff_ffff);
                out.put_slice(&block);
            }
            Frame::Headers {
                stream_id,
                flags,
                headers,
            } => {
                let block = self.compress(headers);
                control(out, HEADERS, *flags, 4 + block.len());
                out.put_u32(stream_id & 0x7fff_ffff);
                out.put_slice(&block);
            }
            Frame::RstStream { stream_id, status } => {
                control(out, RST_STREAM, 0, 8);
                out.put_u32(stream_id & 0x7fff_ffff);
                out.put_u32(*status);
            }
            Frame::Settings { entries } => {
                control(out, SETTINGS, 0, 4 + 8 * entries.len());
                out.put_u32(entries.len() as u32);
                for (flags, id, value) in entries {
                    out.put_u32((*flags as u32) << 24 | (id & 0xff_ffff));
                    out.put_u32(*value);
                }
            }
            Frame::Ping { id } => {
                control(out, PING, 0, 4);
                out.put_u32(*id);
            }
            Frame::GoAway {
                last_good_stream_id,
                status,
            } => {
                control(out, GOAWAY, 0, 8);
                out.put_u32(last_good_stream_id & 0x7fff_ffff);
                out.put_u32(*status);
            }
            Frame::WindowUpdate { stream_id, delta } => {
                control(out, WINDOW_UPDATE, 0, 8);
                out.put_u32(stream_id & 0x7fff_ffff);
                out.put_u32(delta & 0x7fff_ffff);
            }
        }
    }

    fn compress(&mut self, headers: &Headers) -> Vec<u8> {
        let mut plain = Vec::new();
        plain.put_u32(headers.len() as u32);
        for (name, value) in headers {
            plain.put_u32(name.len() as u32);
            plain.put_slice(name.as_bytes());
            plain.put_u32(value.len() as u32);
            plain.put_slice(value.as_bytes());
        }
        let mut out = Vec::with_capacity(plain.len() + 64);
        let mut pos = 0;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(out.capacity().max(64));
            }
            let before = self.zlib.total_in();
            // Compressing into memory cannot fail: the stream is valid and
            // the output has room.
            let _ = self
                .zlib
                .compress_vec(&plain[pos..], &mut out, FlushCompress::Sync);
            pos += (self.zlib.total_in() - before) as usize;
            // Done when all input is in and the flush fit in the space left.
            if pos == plain.len() && out.len() < out.capacity() {
                return out;
            }
        }
    }
}

fn control(out: &mut BytesMut, kind: u16, flags: u8, len: usize) {
    out.put_u16(0x8000 | VERSION);
    out.put_u16(kind);
    out.put_u32((flags as u32) << 24 | len as u32);
}

/// Reads frames; owns the decompressing half of the header zlib stream.
pub struct Decoder {
    zlib: Decompress,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    pub fn new() -> Decoder {
        Decoder {
            zlib: Decompress::new(true),
        }
    }

    /// Takes one whole frame off the front of `buf`, or returns `None` until
    /// more bytes arrive. Unknown control frame types are skipped.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        loop {
            if buf.len() < 8 {
                return Ok(None);
            }
            let len = u32::from_be_bytes([0, buf[5], buf[6], buf[7]]) as usize;
            if buf.len() < 8 + len {
                buf.reserve(8 + len - buf.len());
                return Ok(None);
            }
            let first = buf.get_u32();
            let flags_len = buf.get_u32();
            let flags = (flags_len >> 24) as u8;
            let mut payload = buf.split_to(len).freeze();
            if first & 0x8000_0000 == 0 {
                return Ok(Some(Frame::Data {
                    stream_id: first & 0x7fff_ffff,
                    flags,
                    data: payload,
                }));
            }
            let version = ((first >> 16) & 0x7fff) as u16;
            if version != VERSION {
                return Err(FrameError::Version(version));
            }
            let kind = (first & 0xffff) as u16;
            let need = |n: usize, what| {
                if len < n {
                    Err(malformed(what, format!("{len} bytes, need {n}")))
                } else {
                    Ok(())
                }
            };
            let frame = match kind {
                SYN_STREAM => {
                    need(10, "SYN_STREAM")?;
                    let stream_id = payload.get_u32() & 0x7fff_ffff;
                    let associated_to = payload.get_u32() & 0x7fff_ffff;
                    let priority = payload.get_u8() >> 5;
                    payload.advance(1);
                    Frame::SynStream {
                        stream_id,
                        associated_to,
                        priority,
                        flags,
                        headers: self.headers(&payload)?,
                    }
                }
                SYN_REPLY | HEADERS => {
                    need(4, "SYN_REPLY")?;
                    let stream_id = payload.get_u32() & 0x7fff_ffff;
                    let headers = self.headers(&payload)?;
                    if kind == SYN_REPLY {
                        Frame::SynReply {
                            stream_id,
                            flags,
                            headers,
                        }
                    } else {
                        Frame::Headers {
                            stream_id,
                            flags,
                            headers,
                        }
                    }
                }
                RST_STREAM => {
                    need(8, "RST_STREAM")?;
                    Frame::RstStream {
                        stream_id: payload.get_u32() & 0x7fff_ffff,
                        status: payload.get_u32(),
                    }
                }
                SETTINGS => {
                    need(4, "SETTINGS")?;
                    let n = payload.get_u32() as usize;
                    if payload.len() < n.saturating_mul(8) {
                        return Err(malformed("SETTINGS", format!("{n} entries in {len} bytes")));
                    }
                    let entries = (0..n)
                        .map(|_| {
                            let flag_id = payload.get_u32();
                            (
                                (flag_id >> 24) as u8,
                                flag_id & 0xff_ffff,
                                payload.get_u32(),
                            )
                        })
                        .collect();
                    Frame::Settings { entries }
                }
                PING => {
                    need(4, "PING")?;
                    Frame::Ping {
                        id: payload.get_u32(),
                    }
                }
                GOAWAY => {
                    need(4, "GOAWAY")?;
                    let last_good_stream_id = payload.get_u32() & 0x7fff_ffff;
                    // SPDY/2 peers send no status.
                    let status = if payload.len() >= 4 {
                        payload.get_u32()
                    } else {
                        0
                    };
                    Frame::GoAway {
                        last_good_stream_id,
                        status,
                    }
                }
                WINDOW_UPDATE => {
                    need(8, "WINDOW_UPDATE")?;
                    Frame::WindowUpdate {
                        stream_id: payload.get_u32() & 0x7fff_ffff,
                        delta: payload.get_u32() & 0x7fff_ffff,
                    }
                }
                _ => continue,
            };
            return Ok(Some(frame));
        }
    }

    fn headers(&mut self, block: &[u8]) -> Result<Headers, FrameError> {
        let plain = self.inflate(block)?;
        let mut p = &plain[..];
        let bad = |why: &str| FrameError::HeaderBlock(why.to_string());
        let take = |p: &mut &[u8]| -> Result<String, FrameError> {
            if p.len() < 4 {
                return Err(bad("truncated length"));
            }
            let n = p.get_u32() as usize;
            if p.len() < n {
                return Err(bad("truncated string"));
            }
            let s = String::from_utf8_lossy(&p[..n]).into_owned();
            p.advance(n);
            Ok(s)
        };
        if p.len() < 4 {
            return Err(bad("no pair count"));
        }
        let count = p.get_u32() as usize;
        let mut headers = Vec::with_capacity(count.min(64));
        for _ in 0..count {
            let name = take(&mut p)?.to_ascii_lowercase();
            let value = take(&mut p)?;
            headers.push((name, value));
        }
        Ok(headers)
    }

    fn inflate(&mut self, input: &[u8]) -> Result<Vec<u8>, FrameError> {
        let mut out = Vec::with_capacity(input.len() * 4 + 256);
        let mut pos = 0;
        loop {
            if out.capacity() - out.len() < 256 {
                if out.len() >= MAX_HEADER_BLOCK {
                    return Err(FrameError::HeaderBlock(format!(
                        "larger than {MAX_HEADER_BLOCK} bytes"
                    )));
                }
                out.reserve(out.capacity());
            }
            let (before_in, before_out) = (self.zlib.total_in(), out.len());
            let mut primed = false;
            match self
                .zlib
                .decompress_vec(&input[pos..], &mut out, FlushDecompress::Sync)
            {
                Ok(Status::StreamEnd) => {
                    return Err(FrameError::HeaderBlock("the zlib stream ended".into()))
                }
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    self.zlib
                        .set_dictionary(dictionary())
                        .map_err(|e| FrameError::HeaderBlock(e.to_string()))?;
                    primed = true;
                }
                Err(e) => return Err(FrameError::HeaderBlock(e.to_string())),
            }
            pos += (self.zlib.total_in() - before_in) as usize;
            if pos == input.len() && out.len() < out.capacity() {
                return Ok(out);
            }
            if !primed && self.zlib.total_in() == before_in && out.len() == before_out {
                return Err(FrameError::HeaderBlock("truncated".into()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dictionary::adler32;

    fn decode_all(bytes: &[u8]) -> Vec<Frame> {
        let mut d = Decoder::new();
        let mut buf = BytesMut::from(bytes);
        let mut frames = Vec::new();
        while let Some(f) = d.decode(&mut buf).unwrap() {
            frames.push(f);
        }
        assert!(buf.is_empty(), "left over: {buf:?}");
        frames
    }

    #[test]
    fn control_frames_match_the_spec_layout() {
        let mut e = Encoder::new();
        let mut out = BytesMut::new();
        e.encode(&Frame::Ping { id: 1 }, &mut out);
        // Control bit + version 3, type 6, flags 0, length 4, id 1.
        assert_eq!(&out[..], &[0x80, 0x03, 0x00, 0x06, 0, 0, 0, 4, 0, 0, 0, 1]);
        out.clear();
        e.encode(
            &Frame::RstStream {
                stream_id: 5,
                status: RST_CANCEL,
            },
            &mut out,
        );
        assert_eq!(
            &out[..],
            &[0x80, 0x03, 0x00, 0x03, 0, 0, 0, 8, 0, 0, 0, 5, 0, 0, 0, 5]
        );
        out.clear();
        e.encode(
            &Frame::GoAway {
                last_good_stream_id: 7,
                status: 0,
            },
            &mut out,
        );
        assert_eq!(
            &out[..],
            &[0x80, 0x03, 0x00, 0x07, 0, 0, 0, 8, 0, 0, 0, 7, 0, 0, 0, 0]
        );
        out.clear();
        e.encode(
            &Frame::WindowUpdate {
                stream_id: 1,
                delta: 0x1_0000,
            },
            &mut out,
        );
        assert_eq!(
            &out[..],
            &[0x80, 0x03, 0x00, 0x09, 0, 0, 0, 8, 0, 0, 0, 1, 0, 1, 0, 0]
        );
        out.clear();
        e.encode(
            &Frame::Data {
                stream_id: 3,
                flags: FLAG_FIN,
                data: Bytes::from_static(b"hi"),
            },
            &mut out,
        );
        assert_eq!(&out[..], &[0, 0, 0, 3, 0x01, 0, 0, 2, b'h', b'i']);
    }

    #[test]
    fn decodes_frames_built_by_hand() {
        let mut wire = vec![
            // DATA on stream 1, no flags, "abc".
            0, 0, 0, 1, 0, 0, 0, 3, b'a', b'b', b'c',
            // SETTINGS: one entry, flags 1, id 7 (initial window), 65536.
            0x80, 3, 0, 4, 0, 0, 0, 12, 0, 0, 0, 1, 0x01, 0, 0, 7, 0, 1, 0, 0,
            // An unknown control type (0x0f) with 2 bytes: skipped.
            0x80, 3, 0, 0x0f, 0, 0, 0, 2, 0xaa, 0xbb, // PING 2.
            0x80, 3, 0, 6, 0, 0, 0, 4, 0, 0, 0, 2,
        ];
        // GOAWAY with last good stream 9, status 2 (internal error).
        wire.extend([0x80, 3, 0, 7, 0, 0, 0, 8, 0, 0, 0, 9, 0, 0, 0, 2]);
        assert_eq!(
            decode_all(&wire),
            vec![
                Frame::Data {
                    stream_id: 1,
                    flags: 0,
                    data: Bytes::from_static(b"abc")
                },
                Frame::Settings {
                    entries: vec![(1, 7, 65536)]
                },
                Frame::Ping { id: 2 },
                Frame::GoAway {
                    last_good_stream_id: 9,
                    status: 2
                },
            ]
        );
    }

    #[test]
    fn partial_frames_wait_for_more_bytes() {
        let mut d = Decoder::new();
        let mut buf = BytesMut::from(&[0u8, 0, 0, 1, 0, 0, 0, 3, b'a'][..]);
        assert!(d.decode(&mut buf).unwrap().is_none());
        buf.extend_from_slice(b"bc");
        assert!(matches!(
            d.decode(&mut buf).unwrap(),
            Some(Frame::Data { data, .. }) if &data[..] == b"abc"
        ));
        let mut buf = BytesMut::from(&[0x80u8, 2, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1][..]);
        assert!(matches!(d.decode(&mut buf), Err(FrameError::Version(2))));
    }

    /// A zlib stream (RFC 1950) naming SPDY's dictionary, carrying `plain`
    /// in one stored deflate block (RFC 1951, BTYPE 00) and no final block,
    /// as a sync flush leaves it.
    fn stored_zlib_with_dictionary(plain: &[u8]) -> Vec<u8> {
        let mut z = vec![0x78, 0xf9];
        z.extend_from_slice(&adler32(dictionary()).to_be_bytes());
        z.push(0x00); // BFINAL 0, BTYPE 00, padding
        z.extend_from_slice(&(plain.len() as u16).to_le_bytes());
        z.extend_from_slice(&(!(plain.len() as u16)).to_le_bytes());
        z.extend_from_slice(plain);
        z
    }

    #[test]
    fn decodes_a_syn_stream_with_a_hand_built_header_block() {
        let mut plain = Vec::new();
        plain.put_u32(2);
        for (k, v) in [("streamtype", "error"), ("port", "80")] {
            plain.put_u32(k.len() as u32);
            plain.put_slice(k.as_bytes());
            plain.put_u32(v.len() as u32);
            plain.put_slice(v.as_bytes());
        }
        let block = stored_zlib_with_dictionary(&plain);
        let mut wire = vec![0x80, 3, 0, 1, FLAG_FIN];
        wire.extend_from_slice(&((10 + block.len()) as u32).to_be_bytes()[1..]);
        wire.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x60, 0]);
        wire.extend_from_slice(&block);
        assert_eq!(
            decode_all(&wire),
            vec![Frame::SynStream {
                stream_id: 1,
                associated_to: 0,
                priority: 3,
                flags: FLAG_FIN,
                headers: vec![
                    ("streamtype".into(), "error".into()),
                    ("port".into(), "80".into())
                ],
            }]
        );
    }

    #[test]
    fn header_blocks_share_one_zlib_stream_per_direction() {
        let mut e = Encoder::new();
        let mut out = BytesMut::new();
        let headers = |n: &str| -> Headers {
            vec![
                ("streamtype".into(), "data".into()),
                ("port".into(), "8080".into()),
                ("requestid".into(), n.into()),
            ]
        };
        for (i, id) in [1u32, 3, 5].iter().enumerate() {
            e.encode(
                &Frame::SynStream {
                    stream_id: *id,
                    associated_to: 0,
                    priority: 0,
                    flags: 0,
                    headers: headers(&i.to_string()),
                },
                &mut out,
            );
        }
        e.encode(
            &Frame::SynReply {
                stream_id: 1,
                flags: 0,
                headers: vec![],
            },
            &mut out,
        );
        // The first block starts the zlib stream and names the dictionary.
        assert_eq!(&out[18..20], &[0x78, 0xf9]);
        assert_eq!(&out[20..24], &adler32(dictionary()).to_be_bytes());
        let frames = decode_all(&out);
        assert_eq!(frames.len(), 4);
        for (i, f) in frames[..3].iter().enumerate() {
            let Frame::SynStream { headers: h, .. } = f else {
                panic!("{f:?}")
            };
            assert_eq!(h, &headers(&i.to_string()));
        }
        assert_eq!(
            frames[3],
            Frame::SynReply {
                stream_id: 1,
                flags: 0,
                headers: vec![]
            }
        );
    }

    #[test]
    fn a_corrupt_header_block_is_an_error() {
        let mut wire = vec![0x80, 3, 0, 2, 0, 0, 0, 8, 0, 0, 0, 1];
        wire.extend_from_slice(&[0x12, 0x34, 0x56, 0x78]);
        let mut d = Decoder::new();
        let mut buf = BytesMut::from(&wire[..]);
        assert!(matches!(
            d.decode(&mut buf),
            Err(FrameError::HeaderBlock(_))
        ));
    }
}
