//! Kubernetes' JSON form of a protobuf message and back, for any message
//! of the schema. Go's structs decide the JSON: the few apimachinery types
//! with their own JSON form (Time, Quantity, IntOrString, RawExtension...)
//! are handled by name; everything else follows its descriptor.

use base64::Engine;
use prost_reflect::{
    DynamicMessage, FieldDescriptor, Kind, MapKey, MessageDescriptor, ReflectMessage, Value as Pv,
};
use serde_json::{Map, Value};

use super::schema::Schema;

const TIME: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.Time";
const MICRO_TIME: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.MicroTime";
const DURATION: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.Duration";
const FIELDS_V1: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.FieldsV1";
const QUANTITY: &str = "k8s.io.apimachinery.pkg.api.resource.Quantity";
const INT_OR_STRING: &str = "k8s.io.apimachinery.pkg.util.intstr.IntOrString";
const RAW_EXTENSION: &str = "k8s.io.apimachinery.pkg.runtime.RawExtension";
const APIEXT_JSON: &str = "k8s.io.apiextensions_apiserver.pkg.apis.apiextensions.v1.JSON";
const SCHEMA_OR_BOOL: &str =
    "k8s.io.apiextensions_apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOrBool";
const SCHEMA_OR_ARRAY: &str =
    "k8s.io.apiextensions_apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOrArray";
const SCHEMA_OR_STRINGS: &str =
    "k8s.io.apiextensions_apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOrStringArray";

/// Go writes every non-pointer field of a message, set or not, so a zero
/// scalar read from protobuf usually means "unset" and JSON leaves it out.
/// These are the pointer fields whose zero is a real value that differs
/// from leaving them out (a default of 1, 30, 6 or true applies otherwise).
/// Kept by hand: neither crate generate.rs reads tells a Go pointer from a
/// value (k8s-pb's proto2 fields are all optional, k8s-openapi's `Option`
/// means "not required in OpenAPI").
const ZERO_IS_A_VALUE: &[&str] = &[
    "replicas",
    "terminationGracePeriodSeconds",
    "gracePeriodSeconds",
    "activeDeadlineSeconds",
    "runAsUser",
    "runAsGroup",
    "fsGroup",
    "automountServiceAccountToken",
    "enableServiceLinks",
    "allowPrivilegeEscalation",
    "hostUsers",
    "backoffLimit",
    "backoffLimitPerIndex",
    "parallelism",
    "completions",
    "ttlSecondsAfterFinished",
    "revisionHistoryLimit",
    "progressDeadlineSeconds",
    "successfulJobsHistoryLimit",
    "failedJobsHistoryLimit",
    "allocateLoadBalancerNodePorts",
    "defaultMode",
    "mode",
    "expirationSeconds",
    "maxSurge",
    "maxUnavailable",
    "minAvailable",
    "ready",
    "serving",
    "terminating",
    "priority",
    "partition",
    // A toleration for 0 s evicts at once; without one, never.
    "tolerationSeconds",
    "startingDeadlineSeconds",
    "leaseDurationSeconds",
    "leaseTransitions",
    // Status writers send back what they read: a collisionCount of 0 dropped here reads as
    // "decremented" to the status validation (the StatefulSet status conformance spec).
    "collisionCount",
    "suspend",
    "manualSelector",
    "shareProcessNamespace",
    "setHostnameAsFQDN",
    "privileged",
    "runAsNonRoot",
    "readOnlyRootFilesystem",
    "optional",
];

pub type Result<T> = std::result::Result<T, String>;

/// Messages that are a named Go list (`type ExtraValue []string`): their
/// JSON is the bare list.
fn is_list_wrapper(desc: &MessageDescriptor) -> bool {
    let mut fields = desc.fields();
    matches!((fields.next(), fields.next()), (Some(f), None) if f.json_name() == "items" && f.is_list() && !matches!(f.kind(), Kind::Message(_)))
}

// ---------------------------------------------------------------------------
// protobuf -> JSON

/// The JSON object of `msg`.
pub fn to_json(schema: &Schema, msg: &DynamicMessage) -> Value {
    message_json(schema, msg).unwrap_or_else(|| Value::Object(Map::new()))
}

fn zero(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        _ => false,
    }
}

fn go_zero(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.values().all(go_zero),
        Value::Array(a) => a.is_empty(),
        other => zero(other),
    }
}

/// None for a value Go's JSON writes as null or that stands for "unset".
fn message_json(schema: &Schema, msg: &DynamicMessage) -> Option<Value> {
    let desc = msg.descriptor();
    let num = |n: u32| msg.get_field_by_number(n);
    let string = |n: u32| {
        num(n)
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    };
    let int = |n: u32| {
        num(n)
            .and_then(|v| v.as_i64().or(v.as_i32().map(i64::from)))
            .unwrap_or(0)
    };
    let raw_json = |n: u32| -> Option<Value> {
        let v = num(n)?;
        let b = v.as_bytes()?;
        if b.is_empty() {
            return None;
        }
        if b.starts_with(super::MAGIC) {
            return super::decode(b).ok();
        }
        serde_json::from_slice(b).ok()
    };
    match desc.full_name() {
        TIME | MICRO_TIME => {
            let (secs, nanos) = (int(1), int(2));
            if secs == 0 && nanos == 0 {
                return None;
            }
            let t = chrono::DateTime::from_timestamp(secs, nanos as u32)?;
            let fmt = if desc.full_name() == TIME {
                "%Y-%m-%dT%H:%M:%SZ"
            } else {
                "%Y-%m-%dT%H:%M:%S%.6fZ"
            };
            Some(Value::String(t.format(fmt).to_string()))
        }
        DURATION => Some(Value::String(go_duration(int(1)))),
        QUANTITY => Some(Value::String(string(1))),
        INT_OR_STRING => Some(if int(1) == 1 {
            Value::String(string(3))
        } else {
            Value::from(int(2))
        }),
        RAW_EXTENSION | FIELDS_V1 => raw_json(1),
        APIEXT_JSON => raw_json(1),
        SCHEMA_OR_BOOL => Some(match num(2) {
            Some(s) if msg.has_field_by_number(2) => to_json(schema, s.as_message()?),
            _ => Value::Bool(num(1).and_then(|v| v.as_bool()).unwrap_or(false)),
        }),
        SCHEMA_OR_ARRAY | SCHEMA_OR_STRINGS => {
            if msg.has_field_by_number(1) {
                Some(to_json(schema, num(1)?.as_message()?))
            } else {
                let list = num(2)?;
                Some(value_json(schema, &desc.get_field(2)?, &list).unwrap_or(Value::Array(vec![])))
            }
        }
        _ if is_list_wrapper(&desc) => {
            let f = desc.fields().next()?;
            Some(value_json(schema, &f, &msg.get_field(&f)).unwrap_or(Value::Array(vec![])))
        }
        _ => {
            let mut out = Map::new();
            // A required Time Go left zero has no JSON but null, which
            // k8s-openapi refuses; a struct that is nothing but zero values
            // (TokenRequest's status in a request) is then left out whole.
            let mut null_time = false;
            for (f, v) in msg.fields() {
                let Some(j) = value_json(schema, &f, v) else {
                    null_time |= schema.required(&f);
                    continue;
                };
                if schema.inline(&f) {
                    if let Value::Object(fields) = j {
                        out.extend(fields);
                    }
                    continue;
                }
                let keep = schema.required(&f) || ZERO_IS_A_VALUE.contains(&f.json_name());
                if !keep && !f.is_list() && !f.is_map() && zero(&j) {
                    continue;
                }
                out.insert(f.json_name().to_string(), j);
            }
            if null_time && out.values().all(go_zero) {
                return None;
            }
            Some(Value::Object(out))
        }
    }
}

fn value_json(schema: &Schema, f: &FieldDescriptor, v: &Pv) -> Option<Value> {
    Some(match v {
        Pv::List(items) => Value::Array(
            items
                .iter()
                .map(|i| single_json(schema, i).unwrap_or(Value::Null))
                .collect(),
        ),
        Pv::Map(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                let MapKey::String(k) = k else { continue };
                out.insert(k.clone(), single_json(schema, v).unwrap_or(Value::Null));
            }
            let _ = f;
            Value::Object(out)
        }
        other => single_json(schema, other)?,
    })
}

fn single_json(schema: &Schema, v: &Pv) -> Option<Value> {
    Some(match v {
        Pv::Bool(b) => Value::Bool(*b),
        Pv::I32(n) => Value::from(*n),
        Pv::I64(n) => Value::from(*n),
        Pv::U32(n) => Value::from(*n),
        Pv::U64(n) => Value::from(*n),
        Pv::F32(n) => Value::from(f64::from(*n)),
        Pv::F64(n) => Value::from(*n),
        Pv::String(s) => Value::String(s.clone()),
        Pv::Bytes(b) => Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
        Pv::Message(m) => message_json(schema, m)?,
        Pv::EnumNumber(n) => Value::from(*n),
        Pv::List(_) | Pv::Map(_) => return None,
    })
}

/// A Go `time.Duration` as Go prints it: "1h2m3.5s", "300ms", "0s".
fn go_duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".into();
    }
    let sign = if nanos < 0 { "-" } else { "" };
    let n = nanos.unsigned_abs();
    if n < 1_000_000_000 {
        let (unit, div) = match n {
            0..1_000 => ("ns", 1),
            1_000..1_000_000 => ("µs", 1_000),
            _ => ("ms", 1_000_000),
        };
        return format!("{sign}{}{unit}", trim_fraction(n, div));
    }
    let (h, rest) = (n / 3_600_000_000_000, n % 3_600_000_000_000);
    let (m, s) = (rest / 60_000_000_000, rest % 60_000_000_000);
    let secs = format!("{}s", trim_fraction(s, 1_000_000_000));
    match (h, m) {
        (0, 0) => format!("{sign}{secs}"),
        (0, m) => format!("{sign}{m}m{secs}"),
        (h, m) => format!("{sign}{h}h{m}m{secs}"),
    }
}

fn trim_fraction(n: u64, div: u64) -> String {
    let (whole, frac) = (n / div, n % div);
    if frac == 0 {
        return whole.to_string();
    }
    let width = div.to_string().len() - 1;
    let f = format!("{frac:0width$}");
    format!("{whole}.{}", f.trim_end_matches('0'))
}

fn parse_go_duration(s: &str) -> Result<i64> {
    let bad = || format!("time: invalid duration {s:?}");
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Ok(0);
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let n: f64 = rest[..end].parse().map_err(|_| bad())?;
        rest = &rest[end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 6e10,
            "h" => 3.6e12,
            _ => return Err(bad()),
        };
        total += n * scale;
        rest = &rest[unit_end..];
    }
    Ok(if neg { -total } else { total } as i64)
}

// ---------------------------------------------------------------------------
// JSON -> protobuf

use prost::encoding::{encode_key, encode_varint, WireType};

/// Writes the message `desc` holding the JSON object `v` straight into
/// `out` (no intermediate message: lists of thousands of objects are
/// written this way). Fields the message does not have are left out (the
/// server has checked the object already).
pub fn encode_json(desc: &MessageDescriptor, v: &Value, out: &mut Vec<u8>) -> Result<()> {
    let name = desc.full_name();
    let string = |n: u32, s: &str, out: &mut Vec<u8>| {
        encode_key(n, WireType::LengthDelimited, out);
        encode_varint(s.len() as u64, out);
        out.extend_from_slice(s.as_bytes());
    };
    let varint = |n: u32, i: u64, out: &mut Vec<u8>| {
        encode_key(n, WireType::Varint, out);
        encode_varint(i, out);
    };
    let raw = |v: &Value, out: &mut Vec<u8>| {
        let b = serde_json::to_vec(v).unwrap_or_default();
        encode_key(1, WireType::LengthDelimited, out);
        encode_varint(b.len() as u64, out);
        out.extend_from_slice(&b);
    };
    match name {
        TIME | MICRO_TIME => {
            let s = v
                .as_str()
                .ok_or_else(|| format!("{name}: expected a string, got {v}"))?;
            let t = chrono::DateTime::parse_from_rfc3339(s)
                .map_err(|e| format!("parsing time {s:?}: {e}"))?;
            varint(1, t.timestamp() as u64, out);
            let nanos = if name == TIME {
                0
            } else {
                t.timestamp_subsec_micros() * 1000
            };
            varint(2, u64::from(nanos), out);
        }
        DURATION => {
            let s = v
                .as_str()
                .ok_or_else(|| format!("{name}: expected a string"))?;
            varint(1, parse_go_duration(s)? as u64, out);
        }
        QUANTITY => match v {
            Value::String(s) => string(1, s, out),
            Value::Number(n) => string(1, &n.to_string(), out),
            other => return Err(format!("quantities must be strings, not {other}")),
        },
        INT_OR_STRING => match v {
            Value::String(s) => {
                varint(1, 1, out);
                string(3, s, out);
            }
            Value::Number(n) => {
                let i = n.as_i64().ok_or_else(|| format!("{n} is not an integer"))?;
                let i = i32::try_from(i).map_err(|e| e.to_string())?;
                varint(1, 0, out);
                varint(2, i64::from(i) as u64, out);
            }
            other => return Err(format!("expected an integer or a string, got {other}")),
        },
        RAW_EXTENSION | FIELDS_V1 | APIEXT_JSON => raw(v, out),
        SCHEMA_OR_BOOL => match v {
            Value::Bool(b) => varint(1, u64::from(*b), out),
            other => {
                varint(1, 1, out);
                let f = desc.get_field(2).ok_or("no schema field")?;
                encode_field(&f, other, out)?;
            }
        },
        SCHEMA_OR_ARRAY | SCHEMA_OR_STRINGS => {
            let number = if v.is_array() { 2 } else { 1 };
            let f = desc.get_field(number).ok_or("no such field")?;
            encode_field(&f, v, out)?;
        }
        _ if is_list_wrapper(desc) => {
            let f = desc.fields().next().ok_or("no items field")?;
            encode_field(&f, v, out)?;
        }
        _ => {
            let obj = v
                .as_object()
                .ok_or_else(|| format!("{}: expected an object, got {v}", desc.name()))?;
            let schema = super::schema::schema();
            for f in desc.fields().filter(|f| schema.inline(f)) {
                encode_field(&f, v, out)?;
            }
            for (k, v) in obj {
                let Some(f) = desc.get_field_by_json_name(k) else {
                    continue;
                };
                if !v.is_null() {
                    encode_field(&f, v, out).map_err(|e| format!("{k}: {e}"))?;
                }
            }
        }
    }
    Ok(())
}

fn encode_field(f: &FieldDescriptor, v: &Value, out: &mut Vec<u8>) -> Result<()> {
    let n = f.number();
    if f.is_map() {
        let Kind::Message(entry) = f.kind() else {
            return Err("map without an entry message".into());
        };
        let value_kind = entry.map_entry_value_field().kind();
        let obj = v
            .as_object()
            .ok_or_else(|| format!("expected an object, got {v}"))?;
        let mut buf = Vec::new();
        for (k, v) in obj {
            buf.clear();
            encode_key(1, WireType::LengthDelimited, &mut buf);
            encode_varint(k.len() as u64, &mut buf);
            buf.extend_from_slice(k.as_bytes());
            encode_single(2, &value_kind, v, &mut buf)?;
            encode_key(n, WireType::LengthDelimited, out);
            encode_varint(buf.len() as u64, out);
            out.extend_from_slice(&buf);
        }
        return Ok(());
    }
    if f.is_list() {
        let items = v
            .as_array()
            .ok_or_else(|| format!("expected an array, got {v}"))?;
        let kind = f.kind();
        for i in items {
            encode_single(n, &kind, i, out)?;
        }
        return Ok(());
    }
    encode_single(n, &f.kind(), v, out)
}

fn encode_single(n: u32, kind: &Kind, v: &Value, out: &mut Vec<u8>) -> Result<()> {
    let int = || -> Result<i64> {
        v.as_i64()
            .or_else(|| v.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
            .ok_or_else(|| format!("expected an integer, got {v}"))
    };
    let bytes = |b: &[u8], out: &mut Vec<u8>| {
        encode_key(n, WireType::LengthDelimited, out);
        encode_varint(b.len() as u64, out);
        out.extend_from_slice(b);
    };
    match kind {
        Kind::String => bytes(
            v.as_str()
                .ok_or_else(|| format!("expected a string, got {v}"))?
                .as_bytes(),
            out,
        ),
        Kind::Int32 => {
            let i = i32::try_from(int()?).map_err(|e| e.to_string())?;
            encode_key(n, WireType::Varint, out);
            encode_varint(i64::from(i) as u64, out);
        }
        Kind::Int64 => {
            encode_key(n, WireType::Varint, out);
            encode_varint(int()? as u64, out);
        }
        Kind::Bool => {
            let b = v
                .as_bool()
                .ok_or_else(|| format!("expected a boolean, got {v}"))?;
            encode_key(n, WireType::Varint, out);
            encode_varint(u64::from(b), out);
        }
        Kind::Double => {
            let d = v
                .as_f64()
                .ok_or_else(|| format!("expected a number, got {v}"))?;
            encode_key(n, WireType::SixtyFourBit, out);
            out.extend_from_slice(&d.to_le_bytes());
        }
        Kind::Bytes => {
            let s = v
                .as_str()
                .ok_or_else(|| format!("expected base64 text, got {v}"))?;
            let b = base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(|e| format!("illegal base64 data: {e}"))?;
            bytes(&b, out);
        }
        Kind::Message(m) => {
            let mut inner = Vec::new();
            encode_json(m, v, &mut inner)?;
            bytes(&inner, out);
        }
        other => return Err(format!("unsupported field kind {other:?}")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_print_and_parse_as_go_does() {
        for (n, s) in [
            (0, "0s"),
            (1_500_000_000, "1.5s"),
            (90_000_000_000, "1m30s"),
            (3_600_000_000_000, "1h0m0s"),
            (300_000_000, "300ms"),
        ] {
            assert_eq!(go_duration(n), s);
            assert_eq!(parse_go_duration(s).unwrap(), n);
        }
        assert!(parse_go_duration("5 parsecs").is_err());
    }
}
