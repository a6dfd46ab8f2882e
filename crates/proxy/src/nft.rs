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

use std::collections::BTreeMap;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::AsFd;

use netlink_packet_core::{
    DefaultNla, NetlinkMessage, NetlinkPayload, NLMSG_DONE, NLMSG_ERROR, NLM_F_ACK, NLM_F_APPEND,
    NLM_F_CREATE, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_netfilter::nftables::{
    Bitwise, ChainAttribute, ChainMessage, Cmp, DataAttribute, ExpressionAttribute, Expressions,
    Hook as NlHook, HookNumber, Immediate, InetHookNumber, ListAttribute, Lookup, Meta, MetaKey,
    NfTablesMessage, Operator, Payload, Register, RuleAttribute, RuleMessage, SetAttribute,
    SetElementAttribute, SetElementList, SetElementMessage, SetFlags, SetMessage, TableAttribute,
    TableMessage, Verdict as NlVerdict, VerdictAttribute,
};
use netlink_packet_netfilter::none::ControlMessage;
use netlink_packet_netfilter::{
    NetfilterHeader, NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily,
};
use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};

use crate::model::{Action, BaseChain, Hook, Key, Map, Match, Rule, Verdict};
use crate::types::{Ipv4Cidr, TABLE};

// nfnetlink subsystem of nftables (nfnetlink.h).
const NFNL_SUBSYS_NFTABLES: u16 = 10;
// Data types nft uses to print keys (datatype.h); only listings read them.
const TYPE_INTEGER: u32 = 4;
const TYPE_IPV4_ADDR: u32 = 7;
const TYPE_INET_PROTO: u32 = 12;
const TYPE_INET_SERVICE: u32 = 13;
const TYPE_VERDICT: u32 = 0xffff_ff00;
const TYPE_BITS: u32 = 6;
// Verdict codes (netfilter.h, nf_tables.h).
const NF_DROP: u32 = 0;
// Payload bases.
const NETWORK_HEADER: u32 = 1;
const TRANSPORT_HEADER: u32 = 2;
const IP_SADDR: u32 = 12;
const IP_DADDR: u32 = 16;
// fib: NFTA_FIB_{DREG,RESULT,FLAGS}; result ADDRTYPE; flags SADDR/DADDR; RTN_LOCAL.
const NFTA_FIB_DREG: u16 = 1;
const NFTA_FIB_RESULT: u16 = 2;
const NFTA_FIB_FLAGS: u16 = 3;
const NFT_FIB_RESULT_ADDRTYPE: u32 = 3;
const NFTA_FIB_F_SADDR: u32 = 1;
const NFTA_FIB_F_DADDR: u32 = 2;
const RTN_LOCAL: u32 = 2;
// ct: NFTA_CT_{DREG,KEY}; key STATE; the NEW state bit.
const NFTA_CT_DREG: u16 = 1;
const NFTA_CT_KEY: u16 = 2;
const NFT_CT_STATE: u32 = 0;
const CT_STATE_NEW: u32 = 1 << 3;
// numgen
const NFTA_NG_DREG: u16 = 1;
const NFTA_NG_MODULUS: u16 = 2;
const NFTA_NG_TYPE: u16 = 3;
const NFT_NG_RANDOM: u32 = 1;
// nat
const NFTA_NAT_TYPE: u16 = 1;
const NFTA_NAT_FAMILY: u16 = 2;
const NFTA_NAT_REG_ADDR_MIN: u16 = 3;
const NFTA_NAT_REG_PROTO_MIN: u16 = 5;
const NFTA_NAT_FLAGS: u16 = 7;
const NFT_NAT_DNAT: u32 = 1;
const NFPROTO_IPV4: u32 = 2;
const NF_NAT_RANGE_PROTO_SPECIFIED: u32 = 2;
const NF_NAT_RANGE_PROTO_RANDOM_FULLY: u32 = 16;
// masq
const NFTA_MASQ_FLAGS: u16 = 1;
// reject: ICMP port unreachable (what a closed port answers).
const NFTA_REJECT_TYPE: u16 = 1;
const NFTA_REJECT_ICMP_CODE: u16 = 2;
const NFT_REJECT_ICMP_UNREACH: u32 = 0;
const ICMP_PORT_UNREACH: u8 = 3;
// dynset
const NFTA_DYNSET_SET_NAME: u16 = 1;
const NFTA_DYNSET_OP: u16 = 3;
const NFTA_DYNSET_SREG_KEY: u16 = 4;
const NFT_DYNSET_OP_UPDATE: u32 = 1;

/// Elements per set-element message: the element list is one attribute,
/// whose length field has 16 bits.
const ELEMENTS_PER_MESSAGE: usize = 128;

fn be32(v: u32) -> Vec<u8> {
    v.to_be_bytes().to_vec()
}

fn expr(e: Expressions) -> ListAttribute<ExpressionAttribute> {
    e.into()
}

fn raw_expr(name: &str, attributes: Vec<DefaultNla>) -> ListAttribute<ExpressionAttribute> {
    expr(Expressions::Other {
        expression_type: name.to_string(),
        attributes,
    })
}

fn payload(offset: u32, len: u32, base: u32, dreg: Register) -> ListAttribute<ExpressionAttribute> {
    expr(Expressions::Payload(vec![
        Payload::DestinationRegister(dreg),
        Payload::Base(base),
        Payload::Offset(offset),
        Payload::Len(len),
    ]))
}

fn meta_load(key: MetaKey, dreg: Register) -> ListAttribute<ExpressionAttribute> {
    expr(Expressions::Meta(vec![
        Meta::DestinationRegister(dreg),
        Meta::Key(key),
    ]))
}

fn cmp(op: Operator, data: Vec<u8>) -> ListAttribute<ExpressionAttribute> {
    expr(Expressions::Cmp(vec![
        Cmp::SourceRegister(Register::Reg1),
        Cmp::Op(op),
        Cmp::Data(DataAttribute::Value(data)),
    ]))
}

/// reg1 = (reg1 & mask) ^ xor, over 4 bytes.
fn bitwise(mask: [u8; 4], xor: [u8; 4]) -> ListAttribute<ExpressionAttribute> {
    expr(Expressions::Bitwise(vec![
        Bitwise::SourceRegister(Register::Reg1),
        Bitwise::DestinationRegister(Register::Reg1),
        Bitwise::Length(4),
        Bitwise::Mask(DataAttribute::Value(mask.to_vec())),
        Bitwise::Xor(DataAttribute::Value(xor.to_vec())),
    ]))
}

fn verdict_data(verdict: &Verdict) -> DataAttribute {
    let (code, chain) = match verdict {
        Verdict::Goto(c) => (NlVerdict::Goto, Some(c)),
        Verdict::Jump(c) => (NlVerdict::Jump, Some(c)),
        Verdict::Drop => (NlVerdict::Other(NF_DROP), None),
        Verdict::Return => (NlVerdict::Return, None),
    };
    let mut attrs = vec![VerdictAttribute::Code(code)];
    if let Some(chain) = chain {
        attrs.push(VerdictAttribute::Chain(chain.clone()));
    }
    DataAttribute::Verdict(attrs)
}

fn lookup(
    set: &str,
    set_id: Option<u32>,
    verdict: bool,
    inverted: bool,
) -> ListAttribute<ExpressionAttribute> {
    let mut attrs = vec![
        Lookup::Set(set.to_string()),
        Lookup::SourceRegister(Register::Reg1),
    ];
    if let Some(id) = set_id {
        attrs.push(Lookup::SetId(id));
    }
    if verdict {
        attrs.push(Lookup::DestinationRegister(Register::Verdict));
    }
    if inverted {
        attrs.push(Lookup::Flags(1));
    }
    expr(Expressions::Lookup(attrs))
}

/// `ip saddr|daddr` into reg1.
fn address(offset: u32) -> ListAttribute<ExpressionAttribute> {
    payload(offset, 4, NETWORK_HEADER, Register::Reg1)
}

fn in_cidr(
    offset: u32,
    cidr: Ipv4Cidr,
    negate: bool,
    out: &mut Vec<ListAttribute<ExpressionAttribute>>,
) {
    out.push(address(offset));
    out.push(bitwise(cidr.mask().octets(), [0; 4]));
    let op = if negate {
        Operator::NotEqual
    } else {
        Operator::Equal
    };
    out.push(cmp(op, cidr.network().octets().to_vec()));
}

fn fib_local(flag: u32) -> [ListAttribute<ExpressionAttribute>; 2] {
    [
        raw_expr(
            "fib",
            vec![
                DefaultNla::new(NFTA_FIB_DREG, be32(Register::Reg1.into())),
                DefaultNla::new(NFTA_FIB_RESULT, be32(NFT_FIB_RESULT_ADDRTYPE)),
                DefaultNla::new(NFTA_FIB_FLAGS, be32(flag)),
            ],
        ),
        cmp(Operator::Equal, RTN_LOCAL.to_ne_bytes().to_vec()),
    ]
}

fn encode_match(m: &Match, out: &mut Vec<ListAttribute<ExpressionAttribute>>) {
    match m {
        Match::SaddrIn(cidr, neg) => in_cidr(IP_SADDR, *cidr, *neg, out),
        Match::DaddrIn(cidr, neg) => in_cidr(IP_DADDR, *cidr, *neg, out),
        Match::Saddr(ip) => {
            out.push(address(IP_SADDR));
            out.push(cmp(Operator::Equal, ip.octets().to_vec()));
        }
        Match::Daddr(ip) => {
            out.push(address(IP_DADDR));
            out.push(cmp(Operator::Equal, ip.octets().to_vec()));
        }
        Match::DaddrNotLoopback => {
            out.push(payload(IP_DADDR, 1, NETWORK_HEADER, Register::Reg1));
            out.push(cmp(Operator::NotEqual, vec![127]));
        }
        Match::FibDaddrLocal => out.extend(fib_local(NFTA_FIB_F_DADDR)),
        Match::FibSaddrLocal => out.extend(fib_local(NFTA_FIB_F_SADDR)),
        Match::L4Proto(p) => {
            out.push(meta_load(MetaKey::L4Proto, Register::Reg1));
            out.push(cmp(Operator::Equal, vec![p.number()]));
        }
        Match::CtStateNew => {
            out.push(raw_expr(
                "ct",
                vec![
                    DefaultNla::new(NFTA_CT_DREG, be32(Register::Reg1.into())),
                    DefaultNla::new(NFTA_CT_KEY, be32(NFT_CT_STATE)),
                ],
            ));
            out.push(bitwise(CT_STATE_NEW.to_ne_bytes(), [0; 4]));
            out.push(cmp(Operator::NotEqual, vec![0; 4]));
        }
        Match::SaddrInSet(set) => {
            out.push(address(IP_SADDR));
            out.push(lookup(set, None, false, false));
        }
        Match::DaddrInSet(set) => {
            out.push(address(IP_DADDR));
            out.push(lookup(set, None, false, false));
        }
        Match::MarkClear(mark) => {
            out.push(meta_load(MetaKey::Mark, Register::Reg1));
            out.push(bitwise(mark.to_ne_bytes(), [0; 4]));
            out.push(cmp(Operator::Equal, vec![0; 4]));
        }
    }
}

/// Loads a map's key from the packet: (daddr .) l4proto . dport, each
/// field in its own 32-bit register as nft lays out concatenations.
fn load_key(map: Map, out: &mut Vec<ListAttribute<ExpressionAttribute>>) {
    let (proto_reg, port_reg) = if map.keyed_by_address() {
        out.push(address(IP_DADDR));
        (Register::Reg32_01, Register::Reg32_02)
    } else {
        (Register::Reg1, Register::Reg32_01)
    };
    out.push(meta_load(MetaKey::L4Proto, proto_reg));
    out.push(payload(2, 2, TRANSPORT_HEADER, port_reg));
}

fn set_mark(mask: u32, xor: u32, out: &mut Vec<ListAttribute<ExpressionAttribute>>) {
    out.push(meta_load(MetaKey::Mark, Register::Reg1));
    out.push(bitwise(mask.to_ne_bytes(), xor.to_ne_bytes()));
    out.push(expr(Expressions::Meta(vec![
        Meta::Key(MetaKey::Mark),
        Meta::SourceRegister(Register::Reg1),
    ])));
}

/// The bytes of a map key, each field padded to 4 bytes.
fn key_bytes(key: &Key) -> Vec<u8> {
    match key {
        Key::AddrPort(ip, proto, port) => {
            let p = port.to_be_bytes();
            let mut v = ip.octets().to_vec();
            v.extend([proto.number(), 0, 0, 0, p[0], p[1], 0, 0]);
            v
        }
        Key::Port(proto, port) => {
            let p = port.to_be_bytes();
            vec![proto.number(), 0, 0, 0, p[0], p[1], 0, 0]
        }
    }
}

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
        let mut exprs = Vec::new();
        for m in &rule.matches {
            encode_match(m, &mut exprs);
        }
        match &rule.action {
            Action::Verdict(v) => exprs.push(expr(Expressions::Immediate(vec![
                Immediate::DestinationRegister(Register::Verdict),
                Immediate::Data(verdict_data(v)),
            ]))),
            Action::Vmap(map) => {
                load_key(*map, &mut exprs);
                exprs.push(lookup(map.name(), None, true, false));
            }
            Action::NumgenVmap(chains) => {
                let set_id = self.anonymous_vmap(chain, chains);
                exprs.push(raw_expr(
                    "numgen",
                    vec![
                        DefaultNla::new(NFTA_NG_DREG, be32(Register::Reg1.into())),
                        DefaultNla::new(NFTA_NG_MODULUS, be32(chains.len() as u32)),
                        DefaultNla::new(NFTA_NG_TYPE, be32(NFT_NG_RANDOM)),
                    ],
                ));
                exprs.push(lookup("__map%d", Some(set_id), true, false));
            }
            Action::MarkOr(mark) => set_mark(!mark, *mark, &mut exprs),
            Action::MarkXor(mark) => set_mark(u32::MAX, *mark, &mut exprs),
            Action::Dnat(ip, port) => {
                exprs.push(expr(Expressions::Immediate(vec![
                    Immediate::DestinationRegister(Register::Reg1),
                    Immediate::Data(DataAttribute::Value(ip.octets().to_vec())),
                ])));
                exprs.push(expr(Expressions::Immediate(vec![
                    Immediate::DestinationRegister(Register::Reg2),
                    Immediate::Data(DataAttribute::Value(port.to_be_bytes().to_vec())),
                ])));
                exprs.push(raw_expr(
                    "nat",
                    vec![
                        DefaultNla::new(NFTA_NAT_TYPE, be32(NFT_NAT_DNAT)),
                        DefaultNla::new(NFTA_NAT_FAMILY, be32(NFPROTO_IPV4)),
                        DefaultNla::new(NFTA_NAT_REG_ADDR_MIN, be32(Register::Reg1.into())),
                        DefaultNla::new(NFTA_NAT_REG_PROTO_MIN, be32(Register::Reg2.into())),
                        DefaultNla::new(NFTA_NAT_FLAGS, be32(NF_NAT_RANGE_PROTO_SPECIFIED)),
                    ],
                ));
            }
            Action::Masquerade => exprs.push(raw_expr(
                "masq",
                vec![DefaultNla::new(
                    NFTA_MASQ_FLAGS,
                    be32(NF_NAT_RANGE_PROTO_RANDOM_FULLY),
                )],
            )),
            Action::Reject => exprs.push(raw_expr(
                "reject",
                vec![
                    DefaultNla::new(NFTA_REJECT_TYPE, be32(NFT_REJECT_ICMP_UNREACH)),
                    DefaultNla::new(NFTA_REJECT_ICMP_CODE, vec![ICMP_PORT_UNREACH]),
                ],
            )),
            Action::UpdateSaddrSet(set) => {
                exprs.push(address(IP_SADDR));
                let mut name = set.as_bytes().to_vec();
                name.push(0);
                exprs.push(raw_expr(
                    "dynset",
                    vec![
                        DefaultNla::new(NFTA_DYNSET_SET_NAME, name),
                        DefaultNla::new(NFTA_DYNSET_OP, be32(NFT_DYNSET_OP_UPDATE)),
                        DefaultNla::new(NFTA_DYNSET_SREG_KEY, be32(Register::Reg1.into())),
                    ],
                ));
            }
        }
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
    use crate::types::Protocol;

    #[test]
    fn keys_pad_each_field_to_four_bytes() {
        let key = Key::AddrPort(Ipv4Addr::new(10, 43, 0, 10), Protocol::Udp, 53);
        assert_eq!(
            key_bytes(&key),
            vec![10, 43, 0, 10, 17, 0, 0, 0, 0, 53, 0, 0]
        );
        assert_eq!(
            key_bytes(&Key::Port(Protocol::Tcp, 30080)),
            vec![6, 0, 0, 0, 0x75, 0x80, 0, 0]
        );
    }

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
