//! Label selectors (`labelSelector=`) and field selectors
//! (`fieldSelector=`): parsing with Kubernetes' grammar and error wording,
//! and matching.

use std::collections::BTreeMap;

use serde_json::Value;
use thiserror::Error;

use crate::validation::{go_quote, is_qualified_name, is_valid_label_value};

/// A selector the server cannot use; the text is what kube-apiserver says
/// (it answers 400 Bad Request with it).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0}")]
pub struct SelectorError(pub String);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    In,
    NotIn,
    Equals,
    DoubleEquals,
    NotEquals,
    Exists,
    DoesNotExist,
    GreaterThan,
    LessThan,
}

/// One `key op values` term of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
    pub values: Vec<String>,
}

impl Requirement {
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let v = labels.get(&self.key);
        match self.operator {
            Operator::In | Operator::Equals | Operator::DoubleEquals => {
                v.is_some_and(|v| self.values.contains(v))
            }
            Operator::NotIn | Operator::NotEquals => v.is_none_or(|v| !self.values.contains(v)),
            Operator::Exists => v.is_some(),
            Operator::DoesNotExist => v.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let (Some(have), Some(want)) = (
                    v.and_then(|v| v.parse::<i64>().ok()),
                    self.values.first().and_then(|w| w.parse::<i64>().ok()),
                ) else {
                    return false;
                };
                if self.operator == Operator::GreaterThan {
                    have > want
                } else {
                    have < want
                }
            }
        }
    }
}

/// A parsed label selector; empty matches everything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSelector {
    pub requirements: Vec<Requirement>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Error,
    End,
    ClosedPar,
    Comma,
    Not,
    DoubleEquals,
    Equals,
    Greater,
    Ident,
    In,
    Less,
    NotEquals,
    NotIn,
    OpenPar,
}

fn keyword(s: &str) -> Option<Tok> {
    Some(match s {
        ")" => Tok::ClosedPar,
        "," => Tok::Comma,
        "!" => Tok::Not,
        "==" => Tok::DoubleEquals,
        "=" => Tok::Equals,
        ">" => Tok::Greater,
        "in" => Tok::In,
        "<" => Tok::Less,
        "!=" => Tok::NotEquals,
        "notin" => Tok::NotIn,
        "(" => Tok::OpenPar,
        _ => return None,
    })
}

fn is_special(c: u8) -> bool {
    matches!(c, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

fn lex(s: &str) -> Vec<(Tok, String)> {
    let b = s.as_bytes();
    let mut pos = 0;
    let mut out = Vec::new();
    loop {
        while pos < b.len() && is_space(b[pos]) {
            pos += 1;
        }
        if pos >= b.len() {
            out.push((Tok::End, String::new()));
            return out;
        }
        if is_special(b[pos]) {
            // Longest run of special characters that forms an operator.
            let start = pos;
            let mut last: Option<(Tok, usize)> = None;
            while pos < b.len() && is_special(b[pos]) {
                pos += 1;
                if let Some(t) = keyword(&s[start..pos]) {
                    last = Some((t, pos));
                } else if last.is_some() {
                    pos -= 1;
                    break;
                }
            }
            match last {
                Some((t, end)) => {
                    pos = end;
                    out.push((t, s[start..end].to_string()));
                }
                None => out.push((
                    Tok::Error,
                    format!("error expected: keyword found '{}'", &s[start..pos]),
                )),
            }
        } else {
            let start = pos;
            while pos < b.len() && !is_special(b[pos]) && !is_space(b[pos]) {
                pos += 1;
            }
            let word = &s[start..pos];
            out.push((keyword(word).unwrap_or(Tok::Ident), word.to_string()));
        }
    }
}

struct Parser {
    items: Vec<(Tok, String)>,
    pos: usize,
}

impl Parser {
    /// In value position `in`/`notin` are plain identifiers.
    fn peek(&self, values: bool) -> (Tok, String) {
        let (t, l) = self.items[self.pos.min(self.items.len() - 1)].clone();
        (
            if values && matches!(t, Tok::In | Tok::NotIn) {
                Tok::Ident
            } else {
                t
            },
            l,
        )
    }

    fn next(&mut self, values: bool) -> (Tok, String) {
        let r = self.peek(values);
        self.pos = (self.pos + 1).min(self.items.len() - 1);
        r
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, String> {
        let mut reqs = Vec::new();
        loop {
            let (t, lit) = self.peek(true);
            match t {
                Tok::Ident | Tok::Not => {
                    let r = self
                        .requirement()
                        .map_err(|e| format!("unable to parse requirement: {e}"))?;
                    reqs.push(r);
                    let (t, l) = self.next(true);
                    match t {
                        Tok::End => return Ok(reqs),
                        Tok::Comma => {
                            let (t2, l2) = self.peek(true);
                            if t2 != Tok::Ident && t2 != Tok::Not {
                                return Err(format!(
                                    "found '{l2}', expected: identifier after ','"
                                ));
                            }
                        }
                        _ => return Err(format!("found '{l}', expected: ',' or 'end of string'")),
                    }
                }
                Tok::End => return Ok(reqs),
                _ => {
                    return Err(format!(
                        "found '{lit}', expected: !, identifier, or 'end of string'"
                    ))
                }
            }
        }
    }

    fn requirement(&mut self) -> Result<Requirement, String> {
        let (mut t, mut key) = self.next(true);
        let mut op = None;
        if t == Tok::Not {
            op = Some(Operator::DoesNotExist);
            (t, key) = self.next(true);
        }
        if t != Tok::Ident {
            return Err(format!("found '{key}', expected: identifier"));
        }
        let key_errs = is_qualified_name(&key);
        if !key_errs.is_empty() {
            return Err(format!(
                "<nil>: Invalid value: {}: {}",
                go_quote(&key),
                key_errs.join("; ")
            ));
        }
        let (la, _) = self.peek(true);
        if la == Tok::End || la == Tok::Comma {
            let op = op.unwrap_or(Operator::Exists);
            return Ok(Requirement {
                key,
                operator: op,
                values: vec![],
            });
        }
        if op == Some(Operator::DoesNotExist) {
            // "!key=value": the requirement ends at the key and the parser
            // then trips over the operator, as in Kubernetes.
            return Ok(Requirement {
                key,
                operator: Operator::DoesNotExist,
                values: vec![],
            });
        }
        let (t, lit) = self.next(false);
        let operator = match t {
            Tok::In => Operator::In,
            Tok::Equals => Operator::Equals,
            Tok::DoubleEquals => Operator::DoubleEquals,
            Tok::Greater => Operator::GreaterThan,
            Tok::Less => Operator::LessThan,
            Tok::NotIn => Operator::NotIn,
            Tok::NotEquals => Operator::NotEquals,
            _ => {
                return Err(format!(
                    "found '{lit}', expected: in, notin, =, ==, !=, gt, lt"
                ))
            }
        };
        let mut values = match operator {
            Operator::In | Operator::NotIn => self.set_values()?,
            _ => self.exact_value()?,
        };
        values.sort();
        values.dedup();
        let mut errs = Vec::new();
        if matches!(operator, Operator::GreaterThan | Operator::LessThan) {
            for (i, v) in values.iter().enumerate() {
                if v.parse::<i64>().is_err() {
                    errs.push(format!(
                        "values[{i}]: Invalid value: {}: for 'Gt', 'Lt' operators, the value must be an integer",
                        go_quote(v)
                    ));
                }
            }
        }
        for (i, v) in values.iter().enumerate() {
            let ve = is_valid_label_value(v);
            if !ve.is_empty() {
                errs.push(format!(
                    "values[{i}][{key}]: Invalid value: {}: {}",
                    go_quote(v),
                    ve.join("; ")
                ));
            }
        }
        match errs.len() {
            0 => Ok(Requirement {
                key,
                operator,
                values,
            }),
            1 => Err(errs.remove(0)),
            _ => Err(format!("[{}]", errs.join(", "))),
        }
    }

    fn set_values(&mut self) -> Result<Vec<String>, String> {
        let (t, lit) = self.next(true);
        if t != Tok::OpenPar {
            return Err(format!("found '{lit}' expected: '('"));
        }
        let (t, lit) = self.peek(true);
        match t {
            Tok::Ident | Tok::Comma => {
                let s = self.identifiers()?;
                let (t, _) = self.next(true);
                if t != Tok::ClosedPar {
                    return Err(format!("found '{lit}', expected: ')'"));
                }
                Ok(s)
            }
            Tok::ClosedPar => {
                self.next(true);
                Ok(vec![String::new()])
            }
            _ => Err(format!("found '{lit}', expected: ',', ')' or identifier")),
        }
    }

    fn identifiers(&mut self) -> Result<Vec<String>, String> {
        let mut s: Vec<String> = Vec::new();
        loop {
            let (t, lit) = self.next(true);
            match t {
                Tok::Ident => {
                    s.push(lit);
                    let (t2, l2) = self.peek(true);
                    match t2 {
                        Tok::Comma => continue,
                        Tok::ClosedPar => return Ok(s),
                        _ => return Err(format!("found '{l2}', expected: ',' or ')'")),
                    }
                }
                Tok::Comma => {
                    if s.is_empty() {
                        s.push(String::new());
                    }
                    let (t2, _) = self.peek(true);
                    if t2 == Tok::ClosedPar {
                        s.push(String::new());
                        return Ok(s);
                    }
                    if t2 == Tok::Comma {
                        s.push(String::new());
                    }
                }
                _ => return Err(format!("found '{lit}', expected: ',', or identifier")),
            }
        }
    }

    fn exact_value(&mut self) -> Result<Vec<String>, String> {
        let (t, _) = self.peek(true);
        if t == Tok::End || t == Tok::Comma {
            return Ok(vec![String::new()]);
        }
        let (t, lit) = self.next(true);
        if t == Tok::Ident {
            Ok(vec![lit])
        } else {
            Err(format!("found '{lit}', expected: identifier"))
        }
    }
}

impl LabelSelector {
    /// Parses `a=b,c!=d,e in (f,g),!h,i`.
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let mut p = Parser {
            items: lex(s),
            pos: 0,
        };
        let mut requirements = p.parse().map_err(SelectorError)?;
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector { requirements })
    }

    /// A `metav1.LabelSelector` (matchLabels/matchExpressions), as used in
    /// object specs.
    pub fn from_api(
        sel: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
    ) -> Result<Self, SelectorError> {
        let mut requirements = Vec::new();
        for (k, v) in sel.match_labels.iter().flatten() {
            requirements.push(Requirement {
                key: k.clone(),
                operator: Operator::Equals,
                values: vec![v.clone()],
            });
        }
        for e in sel.match_expressions.iter().flatten() {
            let operator = match e.operator.as_str() {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                other => {
                    return Err(SelectorError(format!(
                        "{other:?} is not a valid label selector operator"
                    )))
                }
            };
            requirements.push(Requirement {
                key: e.key.clone(),
                operator,
                values: e.values.clone().unwrap_or_default(),
            });
        }
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector { requirements })
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Kubernetes' `selector.String()`: `a=b,c in (d,e),!f`, requirements by
    /// key, values sorted; empty for an empty selector.
    pub fn to_selector_string(&self) -> String {
        let terms: Vec<String> = self
            .requirements
            .iter()
            .map(|r| {
                let mut values = r.values.clone();
                values.sort();
                let one = values.first().cloned().unwrap_or_default();
                match r.operator {
                    Operator::Equals => format!("{}={one}", r.key),
                    Operator::DoubleEquals => format!("{}=={one}", r.key),
                    Operator::NotEquals => format!("{}!={one}", r.key),
                    Operator::In => format!("{} in ({})", r.key, values.join(",")),
                    Operator::NotIn => format!("{} notin ({})", r.key, values.join(",")),
                    Operator::Exists => r.key.clone(),
                    Operator::DoesNotExist => format!("!{}", r.key),
                    Operator::GreaterThan => format!("{}>{one}", r.key),
                    Operator::LessThan => format!("{}<{one}", r.key),
                }
            })
            .collect();
        terms.join(",")
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Matches an object given as JSON by its `metadata.labels`.
    pub fn matches_object(&self, obj: &Value) -> bool {
        if self.is_empty() {
            return true;
        }
        let labels: BTreeMap<String, String> = obj
            .pointer("/metadata/labels")
            .and_then(|l| serde_json::from_value(l.clone()).ok())
            .unwrap_or_default();
        self.matches(&labels)
    }
}

/// One `field op value` term of a field selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldTerm {
    pub field: String,
    /// `true` for `!=`.
    pub negated: bool,
    pub value: String,
}

/// A parsed field selector; empty matches everything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldSelector {
    pub terms: Vec<FieldTerm>,
}

/// Splits on commas not escaped by a backslash.
fn split_terms(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut escaped = false;
    for c in s.chars() {
        if escaped {
            cur.push(c);
            escaped = false;
        } else if c == '\\' {
            cur.push(c);
            escaped = true;
        } else if c == ',' {
            out.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    out.push(cur);
    out
}

fn split_term(term: &str) -> Option<(&str, &str, &str)> {
    let b = term.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            i += 2;
            continue;
        }
        for op in ["!=", "==", "="] {
            // Compared as bytes: `i` may sit inside a multi-byte character,
            // but an ASCII operator byte never does, so the slices below are
            // on character boundaries.
            if b[i..].starts_with(op.as_bytes()) {
                return Some((&term[..i], op, &term[i + op.len()..]));
            }
        }
        i += 1;
    }
    None
}

fn unescape(v: &str) -> Result<String, SelectorError> {
    let mut out = String::new();
    let mut slash = false;
    for c in v.chars() {
        if slash {
            match c {
                '\\' | ',' | '=' => out.push(c),
                _ => {
                    return Err(SelectorError(format!(
                        "invalid field selector: invalid escape sequence: \\{c}"
                    )))
                }
            }
            slash = false;
            continue;
        }
        match c {
            '\\' => slash = true,
            ',' | '=' => {
                return Err(SelectorError(format!(
                    "invalid field selector: unescaped character in value: {c}"
                )))
            }
            c => out.push(c),
        }
    }
    if slash {
        return Err(SelectorError(
            "invalid field selector: invalid escape sequence: \\".into(),
        ));
    }
    Ok(out)
}

impl FieldSelector {
    /// Parses `a=b,c!=d` (`==` as `=`; `\` escapes `\`, `,` and `=`).
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let mut parts = split_terms(s);
        parts.sort();
        let mut terms = Vec::new();
        for part in parts.iter().filter(|p| !p.is_empty()) {
            let Some((field, op, rhs)) = split_term(part) else {
                return Err(SelectorError(format!(
                    "invalid selector: '{s}'; can't understand '{part}'"
                )));
            };
            terms.push(FieldTerm {
                field: field.to_string(),
                negated: op == "!=",
                value: unescape(rhs)?,
            });
        }
        Ok(FieldSelector { terms })
    }

    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// Rejects fields the kind does not index, as kube-apiserver does:
    /// `field label not supported: x`.
    pub fn check_supported(&self, kind: &str) -> Result<(), SelectorError> {
        let fields = supported_fields(kind);
        match self
            .terms
            .iter()
            .find(|t| !fields.contains(&t.field.as_str()))
        {
            Some(t) => Err(SelectorError(format!(
                "field label not supported: {}",
                t.field
            ))),
            None => Ok(()),
        }
    }

    /// Whether the object (JSON of `kind`) satisfies every term.
    pub fn matches(&self, kind: &str, obj: &Value) -> bool {
        self.terms.iter().all(|t| {
            let v = field_value(kind, obj, &t.field).unwrap_or_default();
            (v == t.value) != t.negated
        })
    }

    /// The value an `=` term demands for `field`, e.g. `spec.nodeName` for
    /// an agent's watch, so the server can index on it.
    pub fn exact(&self, field: &str) -> Option<&str> {
        self.terms
            .iter()
            .find(|t| t.field == field && !t.negated)
            .map(|t| t.value.as_str())
    }
}

/// The fields a kind can be selected by.
pub fn supported_fields(kind: &str) -> &'static [&'static str] {
    match kind {
        "Pod" => &[
            "metadata.name",
            "metadata.namespace",
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.podIPs",
            "status.nominatedNodeName",
        ],
        "Event" => &[
            "metadata.name",
            "metadata.namespace",
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        "Node" => &["metadata.name", "spec.unschedulable"],
        "Namespace" => &["metadata.name", "status.phase"],
        "Secret" => &["metadata.name", "metadata.namespace", "type"],
        "ReplicaSet" | "ReplicationController" => {
            &["metadata.name", "metadata.namespace", "status.replicas"]
        }
        "Service" => &[
            "metadata.name",
            "metadata.namespace",
            "spec.clusterIP",
            "spec.type",
        ],
        "CertificateSigningRequest" => &["metadata.name", "spec.signerName"],
        _ => &["metadata.name", "metadata.namespace"],
    }
}

/// The string a field selector compares for `field` of an object (JSON of
/// `kind`); absent fields read as "".
pub fn field_value(kind: &str, obj: &Value, field: &str) -> Option<String> {
    let s = |ptr: &str| obj.pointer(ptr).and_then(Value::as_str).map(str::to_string);
    let b = |ptr: &str| {
        Some(
            obj.pointer(ptr)
                .and_then(Value::as_bool)
                .unwrap_or(false)
                .to_string(),
        )
    };
    match (kind, field) {
        (_, "metadata.name") => s("/metadata/name"),
        (_, "metadata.namespace") => s("/metadata/namespace"),
        ("Pod", "spec.hostNetwork") => b("/spec/hostNetwork"),
        ("Pod", "status.podIPs") => {
            // Matches the first IP of each family, as Kubernetes indexes it.
            s("/status/podIPs/0/ip")
        }
        ("Node", "spec.unschedulable") => b("/spec/unschedulable"),
        ("Event", "source") => s("/source/component"),
        ("Event", "reportingComponent") => s("/reportingComponent"),
        ("ReplicaSet" | "ReplicationController", "status.replicas") => Some(
            obj.pointer("/status/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(0)
                .to_string(),
        ),
        _ => field
            .split('.')
            .try_fold(obj, |v, k| v.get(k))
            .and_then(Value::as_str)
            .map(str::to_string),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn services_and_signing_requests_select_by_their_own_fields() {
        let svc = json!({"spec": {"clusterIP": "10.43.0.10", "type": "ClusterIP"}});
        assert_eq!(
            field_value("Service", &svc, "spec.type").as_deref(),
            Some("ClusterIP")
        );
        assert_eq!(
            field_value("Service", &svc, "spec.clusterIP").as_deref(),
            Some("10.43.0.10")
        );
        let csr = json!({"spec": {"signerName": "kubernetes.io/kube-apiserver-client"}});
        assert_eq!(
            field_value("CertificateSigningRequest", &csr, "spec.signerName").as_deref(),
            Some("kubernetes.io/kube-apiserver-client")
        );
        for (kind, field) in [
            ("Service", "spec.type"),
            ("CertificateSigningRequest", "spec.signerName"),
        ] {
            assert!(supported_fields(kind).contains(&field));
        }
    }

    #[test]
    fn label_selector_operators() {
        let l = labels(&[("app", "web"), ("tier", "front"), ("n", "5")]);
        let m = |s: &str| LabelSelector::parse(s).unwrap().matches(&l);
        assert!(m(""));
        assert!(m("app=web"));
        assert!(m("app==web"));
        assert!(!m("app!=web"));
        assert!(m("app in (web,db)"));
        assert!(!m("app notin (web, db)"));
        assert!(m("missing notin (x)"));
        assert!(m("app"));
        assert!(!m("!app"));
        assert!(m("!missing"));
        assert!(m("app=web,tier=front"));
        assert!(!m("app=web,tier=back"));
        assert!(m("n>3"));
        assert!(!m("n<3"));
        assert!(!m("x in (in)"));
    }

    #[test]
    fn label_selector_errors_read_as_kubernetes() {
        let err = |s: &str| LabelSelector::parse(s).unwrap_err().0;
        assert_eq!(
            err("app in web"),
            "unable to parse requirement: found 'web' expected: '('"
        );
        assert_eq!(err("app=web,"), "found '', expected: identifier after ','");
        assert_eq!(
            err("=x"),
            "found '=', expected: !, identifier, or 'end of string'"
        );
        assert_eq!(
            err("!app=web"),
            "found '=', expected: ',' or 'end of string'"
        );
        assert_eq!(
            err("app=a b"),
            "found 'b', expected: ',' or 'end of string'"
        );
        assert_eq!(
            err("a@b=c"),
            "unable to parse requirement: <nil>: Invalid value: \"a@b\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
        );
        assert_eq!(
            err("a=b@c"),
            "unable to parse requirement: values[0][a]: Invalid value: \"b@c\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
        );
        assert_eq!(
            err("n>x"),
            "unable to parse requirement: values[0]: Invalid value: \"x\": for 'Gt', 'Lt' operators, the value must be an integer"
        );
    }

    #[test]
    fn field_selector_parse_and_match() {
        let pod = json!({"metadata": {"name": "p", "namespace": "default"},
            "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}});
        let sel = FieldSelector::parse("spec.nodeName=n1,status.phase!=Pending").unwrap();
        assert!(sel.check_supported("Pod").is_ok());
        assert!(sel.matches("Pod", &pod));
        assert_eq!(sel.exact("spec.nodeName"), Some("n1"));
        assert!(!FieldSelector::parse("spec.nodeName==")
            .unwrap()
            .matches("Pod", &pod));
        let unscheduled = json!({"metadata": {"name": "q"}});
        assert!(FieldSelector::parse("spec.nodeName=")
            .unwrap()
            .matches("Pod", &unscheduled));
        assert_eq!(
            FieldSelector::parse("spec.foo=bar")
                .unwrap()
                .check_supported("Pod")
                .unwrap_err()
                .0,
            "field label not supported: spec.foo"
        );
        assert_eq!(
            FieldSelector::parse("nonsense").unwrap_err().0,
            "invalid selector: 'nonsense'; can't understand 'nonsense'"
        );
        let sel = FieldSelector::parse(r"metadata.name=a\,b").unwrap();
        assert_eq!(sel.terms[0].value, "a,b");
    }

    #[test]
    fn odd_input_never_panics() {
        let corpus = [
            "",
            ",",
            "=",
            "!",
            "!=",
            "==",
            "(",
            ")",
            "in",
            "notin",
            "a in",
            "a in (",
            "a in (b",
            "a in (b,",
            "a notin ()",
            "a,,b",
            "é=ü",
            "ключ=значение",
            "a=é,b!=ß",
            "\\",
            "a=\\",
            "a=\\é",
            "é\\=x",
            "a>b",
            "a<",
            "x in (in, notin)",
            "!!a",
            "a!=",
            "a===b",
            "\u{0}=\u{0}",
            "a b c",
            "🙂=🙂",
        ];
        for s in corpus {
            let _ = LabelSelector::parse(s);
            if let Ok(f) = FieldSelector::parse(s) {
                let _ = f.check_supported("Pod");
                let _ = f.matches("Pod", &json!({"metadata": {"name": s}}));
            }
        }
        assert_eq!(FieldSelector::parse("é=ü").unwrap().terms[0].value, "ü");
    }

    #[test]
    fn event_fields() {
        let ev = json!({"metadata": {"name": "e", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"},
            "source": {"component": "kubelet"}, "type": "Warning", "reason": "BackOff"});
        let sel = FieldSelector::parse(
            "involvedObject.name=p,involvedObject.kind=Pod,source=kubelet,type=Warning",
        )
        .unwrap();
        assert!(sel.check_supported("Event").is_ok());
        assert!(sel.matches("Event", &ev));
        assert!(!FieldSelector::parse("reason=Started")
            .unwrap()
            .matches("Event", &ev));
    }
}
