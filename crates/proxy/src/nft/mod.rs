//! nftables over netlink: the model's chains, rules, maps and elements as
//! `NFT_MSG_*` messages in one batch (one kernel transaction), sent on a
//! `NETLINK_NETFILTER` socket of the calling thread's network namespace.
//!
//! Messages come from `netlink-packet-netfilter` (the rust-netlink family
//! the runtime already uses for rtnetlink; pure Rust, MIT). It types tables,
//! chains, rules, sets, elements, batches and the common expressions; the
//! expressions it does not type yet (nat, masq, reject, numgen, fib, ct,
//! dynset) are written here as raw attributes from the kernel's
//! `nf_tables.h`. Not `rustables` (GPL-3.0, and its build script runs
//! bindgen over kernel headers) nor `nftnl` (binds the C libnftnl), and
//! never the `nft` binary.

mod expr;
mod socket;

use std::net::Ipv4Addr;

use netlink_packet_core::{NetlinkMessage, NLM_F_APPEND, NLM_F_CREATE, NLM_F_REQUEST};
use netlink_packet_netfilter::nftables::{
    ChainAttribute, ChainMessage, DataAttribute, Hook as NlHook, HookNumber, InetHookNumber,
    ListAttribute, NfTablesMessage, RuleAttribute, RuleMessage, SetAttribute, SetElementAttribute,
    SetElementList, SetElementMessage, SetFlags, SetMessage, TableAttribute, TableMessage,
};
use netlink_packet_netfilter::none::ControlMessage;
use netlink_packet_netfilter::{NetfilterHeader, NetfilterMessage, NetfilterProtoFamily};

use crate::model::{Action, BaseChain, Hook, Key, Map, Rule, Verdict};
use crate::types::TABLE;
use expr::{key_bytes, rule_expressions, verdict_data};

pub(crate) use socket::Nftables;
pub use socket::{inspect, ProxyError, TableSummary};

// nfnetlink subsystem of nftables (nfnetlink.h).
const NFNL_SUBSYS_NFTABLES: u16 = 10;
// Data types nft uses to print keys (datatype.h); only listings read them.
const TYPE_INTEGER: u32 = 4;
const TYPE_IPV4_ADDR: u32 = 7;
const TYPE_INET_PROTO: u32 = 12;
const TYPE_INET_SERVICE: u32 = 13;
const TYPE_VERDICT: u32 = 0xffff_ff00;
const TYPE_BITS: u32 = 6;

/// Elements per set-element message: the element list is one attribute,
/// whose length field has 16 bits.
const ELEMENTS_PER_MESSAGE: usize = 128;

fn ip_family() -> NetfilterHeader {
    NetfilterHeader::new(NetfilterProtoFamily::IPv4, 0, 0)
}

/// One transaction under construction. Every message records what it does,
/// to name the failing one in an error.
pub(crate) struct Batch {
    buf: Vec<u8>,
    what: Vec<String>,
    first_seq: u32,
    next_set_id: u32,
}

impl Batch {
    pub fn new() -> Batch {
        let mut batch = Batch {
            buf: Vec::with_capacity(4096),
            what: Vec::new(),
            first_seq: 1,
            next_set_id: 1,
        };
        batch.push_control(ControlMessage::BatchBegin);
        batch
    }

    /// Messages carrying changes (without the batch's begin and end).
    pub fn messages(&self) -> usize {
        self.what.len()
    }

    fn seq(&self) -> u32 {
        self.first_seq + self.what.len() as u32
    }

    fn push_control(&mut self, control: ControlMessage) {
        let header = NetfilterHeader::new(NetfilterProtoFamily::Unspec, 0, NFNL_SUBSYS_NFTABLES);
        let mut msg = NetlinkMessage::from(NetfilterMessage::new(header, control));
        msg.header.flags = NLM_F_REQUEST;
        msg.header.sequence_number = self.seq();
        self.emit(msg);
    }

    fn emit(&mut self, mut msg: NetlinkMessage<NetfilterMessage>) {
        msg.finalize();
        let start = self.buf.len();
        self.buf.resize(start + msg.buffer_len(), 0);
        msg.serialize(&mut self.buf[start..]);
    }

    fn push(&mut self, flags: u16, message: NfTablesMessage, what: impl FnOnce() -> String) {
        let mut msg = NetlinkMessage::from(NetfilterMessage::new(ip_family(), message));
        msg.header.flags = NLM_F_REQUEST | flags;
        msg.header.sequence_number = self.seq();
        self.what.push(what());
        self.emit(msg);
    }

    pub fn add_table(&mut self) {
        self.push(
            NLM_F_CREATE,
            NfTablesMessage::NewTable(TableMessage {
                attributes: vec![TableAttribute::Name(TABLE.into())],
            }),
            || format!("create table ip {TABLE}"),
        );
    }

    /// Deletes the table with everything in it (it must exist: pair with
    /// `add_table` first to delete whether or not it does).
    pub fn delete_table(&mut self) {
        self.push(
            0,
            NfTablesMessage::DeleteTable(TableMessage {
                attributes: vec![TableAttribute::Name(TABLE.into())],
            }),
            || format!("delete table ip {TABLE}"),
        );
    }

    pub fn add_chain(&mut self, name: &str) {
        self.push(
            NLM_F_CREATE,
            NfTablesMessage::NewChain(ChainMessage {
                attributes: vec![
                    ChainAttribute::Table(TABLE.into()),
                    ChainAttribute::Name(name.into()),
                ],
            }),
            || format!("create chain {name}"),
        );
    }

    pub fn add_base_chain(&mut self, chain: &BaseChain) {
        let hook = match chain.hook {
            Hook::Prerouting => InetHookNumber::PreRouting,
            Hook::Input => InetHookNumber::LocalIn,
            Hook::Forward => InetHookNumber::Forward,
            Hook::Output => InetHookNumber::LocalOut,
            Hook::Postrouting => InetHookNumber::PostRouting,
        };
        self.push(
            NLM_F_CREATE,
            NfTablesMessage::NewChain(ChainMessage {
                attributes: vec![
                    ChainAttribute::Table(TABLE.into()),
                    ChainAttribute::Name(chain.name.into()),
                    ChainAttribute::Hook(vec![
                        NlHook::Number(HookNumber::Inet(hook)),
                        NlHook::Priority(chain.priority as u32),
                    ]),
                    ChainAttribute::Type(if chain.nat { "nat" } else { "filter" }.into()),
                    ChainAttribute::Policy(1), // accept
                ],
            }),
            || format!("create base chain {}", chain.name),
        );
    }

    /// Removes every rule of a chain.
    pub fn flush_chain(&mut self, name: &str) {
        self.push(
            0,
            NfTablesMessage::DeleteRule(RuleMessage {
                attributes: vec![
                    RuleAttribute::Table(TABLE.into()),
                    RuleAttribute::Chain(name.into()),
                ],
            }),
            || format!("flush chain {name}"),
        );
    }

    pub fn delete_chain(&mut self, name: &str) {
        self.push(
            0,
            NfTablesMessage::DeleteChain(ChainMessage {
                attributes: vec![
                    ChainAttribute::Table(TABLE.into()),
                    ChainAttribute::Name(name.into()),
                ],
            }),
            || format!("delete chain {name}"),
        );
    }

    pub fn add_rule(&mut self, chain: &str, rule: &Rule) {
        // A random choice among endpoints needs its map first.
        let choice = match &rule.action {
            Action::NumgenVmap(targets) => Some(self.anonymous_vmap(chain, targets)),
            _ => None,
        };
        let exprs = rule_expressions(rule, choice);
        self.push(
            NLM_F_CREATE | NLM_F_APPEND,
            NfTablesMessage::NewRule(RuleMessage {
                attributes: vec![
                    RuleAttribute::Table(TABLE.into()),
                    RuleAttribute::Chain(chain.into()),
                    RuleAttribute::Expressions(exprs),
                ],
            }),
            || format!("add rule to chain {chain}"),
        );
    }

    /// A new set's id within the transaction (the kernel requires one).
    fn set_id(&mut self) -> u32 {
        self.next_set_id += 1;
        self.next_set_id
    }

    /// The constant `{ 0 : goto c0, 1 : goto c1, … }` of a numgen rule: an
    /// anonymous map bound to the rule (and gone with it); returns its id
    /// in this transaction.
    fn anonymous_vmap(&mut self, chain: &str, targets: &[String]) -> u32 {
        let id = self.set_id();
        self.push(
            NLM_F_CREATE,
            NfTablesMessage::NewSet(SetMessage {
                attributes: vec![
                    SetAttribute::Table(TABLE.into()),
                    SetAttribute::Name("__map%d".into()),
                    SetAttribute::Flags(SetFlags::Anonymous | SetFlags::Constant | SetFlags::Map),
                    SetAttribute::KeyType(TYPE_INTEGER),
                    SetAttribute::KeyLen(4),
                    SetAttribute::DataType(TYPE_VERDICT),
                    SetAttribute::Id(id),
                ],
            }),
            || format!("create the endpoint choice of chain {chain}"),
        );
        let elements: Vec<(Vec<u8>, Option<DataAttribute>)> = targets
            .iter()
            .enumerate()
            .map(|(i, target)| {
                (
                    (i as u32).to_ne_bytes().to_vec(),
                    Some(verdict_data(&Verdict::Goto(target.clone()))),
                )
            })
            .collect();
        self.set_elements(true, "__map%d", Some(id), elements, || {
            format!("fill the endpoint choice of chain {chain}")
        });
        id
    }

    fn set_elements(
        &mut self,
        add: bool,
        set: &str,
        set_id: Option<u32>,
        elements: Vec<(Vec<u8>, Option<DataAttribute>)>,
        what: impl Fn() -> String,
    ) {
        for chunk in elements.chunks(ELEMENTS_PER_MESSAGE) {
            let list = chunk
                .iter()
                .map(|(key, data)| {
                    let mut attrs =
                        vec![SetElementAttribute::Key(DataAttribute::Value(key.clone()))];
                    if let Some(data) = data {
                        attrs.push(SetElementAttribute::Data(data.clone()));
                    }
                    ListAttribute::Element(attrs)
                })
                .collect();
            let mut attributes = vec![
                SetElementList::Table(TABLE.into()),
                SetElementList::Set(set.into()),
                SetElementList::Elements(list),
            ];
            if let Some(id) = set_id {
                attributes.push(SetElementList::SetId(id));
            }
            let message = SetElementMessage { attributes };
            if add {
                self.push(NLM_F_CREATE, NfTablesMessage::NewSetElement(message), &what);
            } else {
                self.push(0, NfTablesMessage::DeleteSetElement(message), &what);
            }
        }
    }

    pub fn add_map(&mut self, map: Map) {
        let (key_type, key_len) = if map.keyed_by_address() {
            let t = (((TYPE_IPV4_ADDR << TYPE_BITS) | TYPE_INET_PROTO) << TYPE_BITS)
                | TYPE_INET_SERVICE;
            (t, 12)
        } else {
            ((TYPE_INET_PROTO << TYPE_BITS) | TYPE_INET_SERVICE, 8)
        };
        let id = self.set_id();
        self.push(
            NLM_F_CREATE,
            NfTablesMessage::NewSet(SetMessage {
                attributes: vec![
                    SetAttribute::Table(TABLE.into()),
                    SetAttribute::Name(map.name().into()),
                    SetAttribute::Flags(SetFlags::Map),
                    SetAttribute::KeyType(key_type),
                    SetAttribute::KeyLen(key_len),
                    SetAttribute::DataType(TYPE_VERDICT),
                    SetAttribute::Id(id),
                ],
            }),
            || format!("create map {}", map.name()),
        );
    }

    /// A set of addresses; with a timeout, one the rules update (`dynamic`).
    pub fn add_address_set(&mut self, name: &str, timeout_secs: Option<u32>) {
        let mut attributes = vec![
            SetAttribute::Table(TABLE.into()),
            SetAttribute::Name(name.into()),
            SetAttribute::KeyType(TYPE_IPV4_ADDR),
            SetAttribute::KeyLen(4),
            SetAttribute::Id(self.set_id()),
        ];
        match timeout_secs {
            Some(secs) => {
                attributes.push(SetAttribute::Flags(SetFlags::Timeout | SetFlags::Eval));
                attributes.push(SetAttribute::Timeout(secs as u64 * 1000));
            }
            None => attributes.push(SetAttribute::Flags(SetFlags::empty())),
        }
        self.push(
            NLM_F_CREATE,
            NfTablesMessage::NewSet(SetMessage { attributes }),
            || format!("create set {name}"),
        );
    }

    pub fn add_addresses(&mut self, set: &str, ips: &[Ipv4Addr]) {
        let elements = ips.iter().map(|ip| (ip.octets().to_vec(), None)).collect();
        self.set_elements(true, set, None, elements, || {
            format!("add addresses to set {set}")
        });
    }

    pub fn delete_set(&mut self, name: &str) {
        self.push(
            0,
            NfTablesMessage::DeleteSet(SetMessage {
                attributes: vec![
                    SetAttribute::Table(TABLE.into()),
                    SetAttribute::Name(name.into()),
                ],
            }),
            || format!("delete set {name}"),
        );
    }

    pub fn add_elements(&mut self, map: Map, elements: &[(&Key, &Verdict)]) {
        let elements = elements
            .iter()
            .map(|(k, v)| (key_bytes(k), Some(verdict_data(v))))
            .collect();
        self.set_elements(true, map.name(), None, elements, || {
            format!("add elements to map {}", map.name())
        });
    }

    pub fn delete_elements(&mut self, map: Map, keys: &[&Key]) {
        let elements = keys.iter().map(|k| (key_bytes(k), None)).collect();
        self.set_elements(false, map.name(), None, elements, || {
            format!("delete elements of map {}", map.name())
        });
    }
}
