//! The expressions of the model's matches and actions, as nftables
//! netlink attributes (the kernel's `nf_tables.h`).

use netlink_packet_core::DefaultNla;
use netlink_packet_netfilter::nftables::{
    Bitwise, Cmp, DataAttribute, ExpressionAttribute, Expressions, Immediate, ListAttribute,
    Lookup, Meta, MetaKey, Operator, Payload, Register, Verdict as NlVerdict, VerdictAttribute,
};

use crate::model::{Action, Key, Map, Match, Rule, Verdict};
use crate::types::Ipv4Cidr;

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

pub(super) fn verdict_data(verdict: &Verdict) -> DataAttribute {
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
pub(super) fn key_bytes(key: &Key) -> Vec<u8> {
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

/// The expressions of a rule; `choice` is the id (in this transaction) of
/// the map of a `NumgenVmap` action.
pub(super) fn rule_expressions(
    rule: &Rule,
    choice: Option<u32>,
) -> Vec<ListAttribute<ExpressionAttribute>> {
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
            let set_id = choice.expect("the choice's map was created");
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
    exprs
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

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
}
