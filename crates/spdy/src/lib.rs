//! SPDY/3.1, the multiplexing protocol under Kubernetes' older streaming
//! connections: `kubectl exec`/`attach` before v1.30 (and client-go's
//! fallback) and `kubectl port-forward` (directly after an HTTP upgrade, or
//! tunnelled through a WebSocket). No well-kept Rust crate speaks it, so this
//! one covers what those protocols use: SYN_STREAM/SYN_REPLY, DATA,
//! RST_STREAM, PING, GOAWAY, SETTINGS and WINDOW_UPDATE with zlib header
//! compression.

mod dictionary;
pub mod frame;
mod session;

pub use frame::{Frame, FrameError, Headers};
pub use session::{header, Role, Session, Stream, StreamWriter};
