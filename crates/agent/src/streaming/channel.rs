//! The WebSocket channel protocols of exec, attach and port-forward: every
//! message is a channel number then data, binary or (the `base64.` variants)
//! text with the channel as an ASCII digit and the data in base64.
//! `v5.channel.k8s.io` adds a close signal `[255, channel]`; v4 and v5 report
//! a command's end as a JSON Status, the older ones as plain text.

use base64::Engine;

pub const V5: &str = "v5.channel.k8s.io";
pub const V4: &str = "v4.channel.k8s.io";
pub const V4_BASE64: &str = "v4.base64.channel.k8s.io";
pub const V1: &str = "channel.k8s.io";
pub const V1_BASE64: &str = "base64.channel.k8s.io";

/// What exec and attach accept, most preferred first. No protocol at all
/// means `channel.k8s.io`, as the kubelet takes it.
pub const REMOTE_COMMAND: &[&str] = &[V5, V4, V4_BASE64, V1, V1_BASE64];

pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const ERROR: u8 = 3;
pub const RESIZE: u8 = 4;
/// v5 only: `[255, channel]` half-closes that channel (stdin EOF).
pub const CLOSE: u8 = 255;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Codec {
    pub base64: bool,
    /// The command's end travels as a JSON Status (v4, v5), not as text.
    pub json_status: bool,
    /// `[255, channel]` close signals (v5).
    pub close_signal: bool,
}

impl Codec {
    pub fn for_protocol(protocol: &str) -> Codec {
        Codec {
            base64: protocol.contains("base64"),
            json_status: protocol == V5 || protocol.starts_with("v4."),
            close_signal: protocol == V5,
        }
    }

    /// A message carrying `data` on `channel`: binary, or text for base64.
    pub fn encode(&self, channel: u8, data: &[u8]) -> Message {
        if self.base64 {
            let mut s = String::with_capacity(1 + data.len().div_ceil(3) * 4);
            s.push((b'0' + channel) as char);
            base64::engine::general_purpose::STANDARD.encode_string(data, &mut s);
            Message::Text(s)
        } else {
            let mut v = Vec::with_capacity(data.len() + 1);
            v.push(channel);
            v.extend_from_slice(data);
            Message::Binary(v)
        }
    }

    /// The channel and data of a received message; `None` for an empty or
    /// undecodable one (the kubelet skips those too).
    pub fn decode(&self, message: &[u8]) -> Option<Incoming> {
        let (&first, rest) = message.split_first()?;
        if self.close_signal && first == CLOSE {
            return match rest {
                [channel] => Some(Incoming::Close(*channel)),
                _ => None,
            };
        }
        if self.base64 {
            let data = base64::engine::general_purpose::STANDARD
                .decode(rest)
                .ok()?;
            Some(Incoming::Data(first.checked_sub(b'0')?, data))
        } else {
            Some(Incoming::Data(first, rest.to_vec()))
        }
    }
}

/// An outgoing message, before it meets a WebSocket library.
#[derive(Debug, PartialEq, Eq)]
pub enum Message {
    Binary(Vec<u8>),
    Text(String),
}

#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    Data(u8, Vec<u8>),
    Close(u8),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_and_base64_framing() {
        let v5 = Codec::for_protocol(V5);
        assert_eq!(
            v5.encode(STDOUT, b"hi"),
            Message::Binary(vec![1, b'h', b'i'])
        );
        assert_eq!(v5.decode(&[0, b'x']), Some(Incoming::Data(0, vec![b'x'])));
        assert_eq!(v5.decode(&[255, 0]), Some(Incoming::Close(0)));
        assert_eq!(v5.decode(&[]), None);
        let v4 = Codec::for_protocol(V4);
        assert!(v4.json_status && !v4.close_signal);
        assert_eq!(v4.decode(&[255, 0]), Some(Incoming::Data(255, vec![0])));
        let b64 = Codec::for_protocol(V1_BASE64);
        assert!(!b64.json_status);
        assert_eq!(
            b64.encode(STDERR, b"hello"),
            Message::Text("2aGVsbG8=".into())
        );
        assert_eq!(
            b64.decode(b"0aGk="),
            Some(Incoming::Data(0, b"hi".to_vec()))
        );
        assert_eq!(b64.decode(b"0***"), None);
        let plain = Codec::for_protocol(V1);
        assert!(!plain.base64 && !plain.json_status && !plain.close_signal);
        assert!(
            Codec::for_protocol(V4_BASE64).base64 && Codec::for_protocol(V4_BASE64).json_status
        );
    }
}
