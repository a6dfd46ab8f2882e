//! The netlink socket: transactions and their answers, and listings.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::AsFd;

use netlink_packet_core::{
    NetlinkMessage, NetlinkPayload, NLMSG_DONE, NLMSG_ERROR, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_netfilter::nftables::{
    ChainAttribute, ChainMessage, NfTablesMessage, RuleAttribute, RuleMessage, SetAttribute,
    SetElementList, SetElementMessage, SetFlags, SetMessage, TableAttribute, TableMessage,
};
use netlink_packet_netfilter::none::ControlMessage;
use netlink_packet_netfilter::{NetfilterMessage, NetfilterMessageInner};
use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};

use super::{ip_family, Batch};
use crate::types::TABLE;

/// A netlink socket to nftables in the network namespace it was opened in.
pub(crate) struct Nftables {
    socket: Socket,
}

/// Why a transaction failed: the first refused message and the kernel's word.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("nftables netlink socket: {0}")]
    Socket(#[source] io::Error),
    #[error("nftables refused the transaction at \"{what}\": {source}{}", detail.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Refused {
        what: String,
        detail: Option<String>,
        #[source]
        source: io::Error,
    },
    #[error("nftables did not acknowledge the transaction")]
    NoAck,
}

impl Nftables {
    pub fn open() -> io::Result<Nftables> {
        let mut socket = Socket::new(NETLINK_NETFILTER)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        // Errors carry only the failing header and the kernel's message.
        socket.set_cap_ack(true)?;
        socket.set_ext_ack(true)?;
        nix::sys::socket::setsockopt(
            &socket.as_fd(),
            nix::sys::socket::sockopt::ReceiveTimeout,
            &nix::sys::time::TimeVal::new(10, 0),
        )
        .map_err(io::Error::from)?;
        Ok(Nftables { socket })
    }

    /// Sends the batch as one transaction: all of it applies, or none.
    pub fn commit(&mut self, mut batch: Batch) -> Result<(), ProxyError> {
        if batch.what.is_empty() {
            return Ok(());
        }
        // Ask for an acknowledgement of the last message only: errors are
        // always reported, and the kernel processes a batch within send().
        let last_seq = batch.seq() - 1;
        set_ack_flag_of_last(&mut batch.buf);
        batch.push_control(ControlMessage::BatchEnd);
        // The batch must travel in one send: make room for it.
        let needed = batch.buf.len() * 2 + 65536;
        let current =
            nix::sys::socket::getsockopt(&self.socket.as_fd(), nix::sys::socket::sockopt::SndBuf)
                .map_err(|e| ProxyError::Socket(e.into()))?;
        if current < needed {
            nix::sys::socket::setsockopt(
                &self.socket.as_fd(),
                nix::sys::socket::sockopt::SndBufForce,
                &needed,
            )
            .map_err(|e| ProxyError::Socket(e.into()))?;
        }
        self.socket
            .send(&batch.buf, 0)
            .map_err(ProxyError::Socket)?;

        let mut first_error: Option<(u32, io::Error, Option<String>)> = None;
        let mut acked = false;
        let mut reply = vec![0u8; 65536];
        while !acked && first_error.is_none() {
            let n = match self.socket.recv(&mut &mut reply[..], 0) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Err(ProxyError::NoAck),
                Err(e) => return Err(ProxyError::Socket(e)),
            };
            for (seq, code, detail) in errors_in(&reply[..n]) {
                if code == 0 {
                    acked |= seq == last_seq;
                } else if first_error.is_none() {
                    first_error = Some((seq, io::Error::from_raw_os_error(-code), detail));
                }
            }
        }
        // Errors for later messages of the same batch may follow: drop them
        // so they are not read as the answer to the next transaction.
        self.drain();
        match first_error {
            None => Ok(()),
            Some((seq, source, detail)) => {
                let what = seq
                    .checked_sub(batch.first_seq)
                    .and_then(|i| batch.what.get(i as usize).cloned())
                    .unwrap_or_else(|| "the batch".into());
                Err(ProxyError::Refused {
                    what,
                    detail,
                    source,
                })
            }
        }
    }

    fn drain(&mut self) {
        let mut buf = vec![0u8; 65536];
        while self
            .socket
            .recv(&mut &mut buf[..], libc::MSG_DONTWAIT)
            .is_ok_and(|n| n > 0)
        {}
    }

    /// Sends a dump request and returns the answers' nftables messages.
    fn dump(&mut self, message: NfTablesMessage) -> io::Result<Vec<NfTablesMessage>> {
        let mut msg = NetlinkMessage::from(NetfilterMessage::new(ip_family(), message));
        msg.header.flags = NLM_F_REQUEST | NLM_F_DUMP | NLM_F_ACK;
        msg.header.sequence_number = 1;
        msg.finalize();
        let mut buf = vec![0u8; msg.buffer_len()];
        msg.serialize(&mut buf);
        self.socket.send(&buf, 0)?;
        let mut out = Vec::new();
        let mut reply = vec![0u8; 1 << 20];
        loop {
            let n = self.socket.recv(&mut &mut reply[..], 0)?;
            let mut offset = 0;
            while offset + 16 <= n {
                let len = u32::from_ne_bytes(reply[offset..offset + 4].try_into().expect("4 bytes"))
                    as usize;
                if len < 16 || offset + len > n {
                    break;
                }
                let bytes = &reply[offset..offset + len];
                offset += (len + 3) & !3;
                let parsed = NetlinkMessage::<NetfilterMessage>::deserialize(bytes)
                    .map_err(|e| io::Error::other(format!("bad nftables answer: {e}")))?;
                match parsed.payload {
                    NetlinkPayload::Done(_) => return Ok(out),
                    NetlinkPayload::Error(e) if e.code.is_none() => return Ok(out),
                    NetlinkPayload::Error(e) => return Err(e.to_io()),
                    NetlinkPayload::InnerMessage(NetfilterMessage {
                        inner: NetfilterMessageInner::NfTables(m),
                        ..
                    }) => out.push(m),
                    _ => {}
                }
            }
        }
    }
}

/// Sets NLM_F_ACK on the last message of a serialized batch.
fn set_ack_flag_of_last(buf: &mut [u8]) {
    let mut offset = 0;
    let mut last = None;
    while offset + 16 <= buf.len() {
        let len = u32::from_ne_bytes(buf[offset..offset + 4].try_into().expect("4 bytes")) as usize;
        last = Some(offset);
        offset += (len + 3) & !3;
    }
    if let Some(at) = last {
        let flags = u16::from_ne_bytes([buf[at + 6], buf[at + 7]]) | NLM_F_ACK;
        buf[at + 6..at + 8].copy_from_slice(&flags.to_ne_bytes());
    }
}

/// (sequence number, error code, kernel message) of each NLMSG_ERROR in a
/// datagram; code 0 is an acknowledgement.
fn errors_in(datagram: &[u8]) -> Vec<(u32, i32, Option<String>)> {
    let mut out = Vec::new();
    let mut offset = 0;
    while offset + 16 <= datagram.len() {
        let header = &datagram[offset..];
        let len = u32::from_ne_bytes(header[0..4].try_into().expect("4 bytes")) as usize;
        if len < 16 || offset + len > datagram.len() {
            break;
        }
        let kind = u16::from_ne_bytes([header[4], header[5]]);
        let flags = u16::from_ne_bytes([header[6], header[7]]);
        if kind == NLMSG_ERROR && len >= 36 {
            let code = i32::from_ne_bytes(header[16..20].try_into().expect("4 bytes"));
            // The echoed request header: its sequence number names the message.
            let seq = u32::from_ne_bytes(header[28..32].try_into().expect("4 bytes"));
            let detail = (flags & netlink_packet_core::NLM_F_ACK_TLVS != 0)
                .then(|| extack_message(&header[36..len]))
                .flatten();
            out.push((seq, code, detail));
        } else if kind == NLMSG_DONE {
            break;
        }
        offset += (len + 3) & !3;
    }
    out
}

/// NLMSGERR_ATTR_MSG of an extended acknowledgement.
fn extack_message(mut tlvs: &[u8]) -> Option<String> {
    while tlvs.len() >= 4 {
        let len = u16::from_ne_bytes([tlvs[0], tlvs[1]]) as usize;
        let kind = u16::from_ne_bytes([tlvs[2], tlvs[3]]) & 0x3fff;
        if len < 4 || len > tlvs.len() {
            break;
        }
        if kind == 1 {
            let text = &tlvs[4..len];
            let text = text.split(|b| *b == 0).next().unwrap_or_default();
            return Some(String::from_utf8_lossy(text).into_owned());
        }
        let next = ((len + 3) & !3).min(tlvs.len());
        tlvs = &tlvs[next..];
    }
    None
}

/// What the proxy's table holds in this network namespace: chains with
/// their rule counts, sets and maps with their element counts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TableSummary {
    pub chains: BTreeMap<String, usize>,
    pub sets: BTreeMap<String, usize>,
}

/// Lists the `ip orca-proxy` table of the calling thread's network
/// namespace, `None` if there is none: for diagnostics and tests.
pub fn inspect() -> io::Result<Option<TableSummary>> {
    let mut nft = Nftables::open()?;
    let tables = nft.dump(NfTablesMessage::GetTable(TableMessage {
        attributes: vec![],
    }))?;
    let exists = tables.iter().any(|m| match m {
        NfTablesMessage::NewTable(t) => t
            .attributes
            .iter()
            .any(|a| matches!(a, TableAttribute::Name(n) if n == TABLE)),
        _ => false,
    });
    if !exists {
        return Ok(None);
    }
    let mut summary = TableSummary::default();
    let chains = nft.dump(NfTablesMessage::GetChain(ChainMessage {
        attributes: vec![ChainAttribute::Table(TABLE.into())],
    }))?;
    for m in chains {
        if let NfTablesMessage::NewChain(c) = m {
            let table = c
                .attributes
                .iter()
                .any(|a| matches!(a, ChainAttribute::Table(t) if t == TABLE));
            for a in c.attributes {
                if let (true, ChainAttribute::Name(n)) = (table, a) {
                    summary.chains.insert(n, 0);
                }
            }
        }
    }
    let rules = nft.dump(NfTablesMessage::GetRule(RuleMessage {
        attributes: vec![RuleAttribute::Table(TABLE.into())],
    }))?;
    for m in rules {
        if let NfTablesMessage::NewRule(r) = m {
            for a in r.attributes {
                if let RuleAttribute::Chain(c) = a {
                    *summary.chains.entry(c).or_default() += 1;
                }
            }
        }
    }
    let sets = nft.dump(NfTablesMessage::GetSet(SetMessage {
        attributes: vec![SetAttribute::Table(TABLE.into())],
    }))?;
    let mut names = Vec::new();
    for m in sets {
        if let NfTablesMessage::NewSet(s) = m {
            let anonymous = s
                .attributes
                .iter()
                .any(|a| matches!(a, SetAttribute::Flags(f) if f.contains(SetFlags::Anonymous)));
            for a in s.attributes {
                if let (false, SetAttribute::Name(n)) = (anonymous, a) {
                    names.push(n);
                }
            }
        }
    }
    for name in names {
        let answers = nft.dump(NfTablesMessage::GetSetElement(SetElementMessage {
            attributes: vec![
                SetElementList::Table(TABLE.into()),
                SetElementList::Set(name.clone()),
            ],
        }))?;
        let count = answers
            .iter()
            .map(|m| match m {
                NfTablesMessage::NewSetElement(e) => e
                    .attributes
                    .iter()
                    .map(|a| match a {
                        SetElementList::Elements(list) => list.len(),
                        _ => 0,
                    })
                    .sum(),
                _ => 0,
            })
            .sum();
        summary.sets.insert(name, count);
    }
    Ok(Some(summary))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_message_asks_for_an_ack_and_errors_are_parsed() {
        let mut batch = Batch::new();
        batch.add_table();
        batch.add_chain("c");
        set_ack_flag_of_last(&mut batch.buf);
        // begin (20 bytes), table, chain: only the chain asks for an ack.
        let flags_at =
            |offset: usize| u16::from_ne_bytes([batch.buf[offset + 6], batch.buf[offset + 7]]);
        let table_len = u32::from_ne_bytes(batch.buf[20..24].try_into().unwrap()) as usize;
        assert_eq!(flags_at(0) & NLM_F_ACK, 0);
        assert_eq!(flags_at(20) & NLM_F_ACK, 0);
        assert_ne!(flags_at(20 + table_len) & NLM_F_ACK, 0);

        // An NLMSG_ERROR for seq 7 with EBUSY and an extack message.
        let mut err = Vec::new();
        let text = b"chain is busy\0";
        let tlv_len = 4 + text.len();
        let total = 16 + 4 + 16 + ((tlv_len + 3) & !3);
        err.extend((total as u32).to_ne_bytes());
        err.extend(NLMSG_ERROR.to_ne_bytes());
        err.extend(netlink_packet_core::NLM_F_ACK_TLVS.to_ne_bytes());
        err.extend([0u8; 8]);
        err.extend((-libc::EBUSY).to_ne_bytes());
        err.extend([0u8; 8]);
        err.extend(7u32.to_ne_bytes());
        err.extend([0u8; 4]);
        err.extend((tlv_len as u16).to_ne_bytes());
        err.extend(1u16.to_ne_bytes());
        err.extend(text);
        err.resize(total, 0);
        assert_eq!(
            errors_in(&err),
            vec![(7, -libc::EBUSY, Some("chain is busy".to_string()))]
        );
    }
}
