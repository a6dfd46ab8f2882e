//! Reading stored JSON without decoding all of it. Each object version that
//! enters the watch cache needs only a few of its fields (name, labels, the
//! selectable fields) and its bytes with `metadata.resourceVersion` set;
//! decoding and re-encoding whole objects for that was a large share of
//! the write path's CPU.

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Decodes only the members named by `paths` (dotted, e.g.
/// `metadata.labels`; a path ending at an object keeps all of it) and skips
/// the rest of the document, which is still checked to be valid JSON.
pub fn pruned(bytes: &[u8], paths: &[&str]) -> serde_json::Result<Value> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let v = Prune(paths).deserialize(&mut de)?;
    de.end()?;
    Ok(v)
}

/// The same JSON object with `"key":value` added as the first member of the
/// top-level object member `parent`. The caller ensures `key` is not
/// already there. `None` if `bytes` has no such object member.
pub fn insert_first(bytes: &[u8], parent: &str, key: &str, value: &str) -> Option<Vec<u8>> {
    let open = member_value_start(bytes, parent)?;
    if bytes.get(open) != Some(&b'{') {
        return None;
    }
    let empty = bytes[open + 1..]
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|&b| b == b'}');
    let key = serde_json::to_vec(key).ok()?;
    let value = serde_json::to_vec(value).ok()?;
    let mut out = Vec::with_capacity(bytes.len() + key.len() + value.len() + 2);
    out.extend_from_slice(&bytes[..=open]);
    out.extend_from_slice(&key);
    out.push(b':');
    out.extend_from_slice(&value);
    if !empty {
        out.push(b',');
    }
    out.extend_from_slice(&bytes[open + 1..]);
    Some(out)
}

/// Offset of the value of member `name` of the top-level object; of its
/// last occurrence if repeated, as decoders keep the last.
fn member_value_start(b: &[u8], name: &str) -> Option<usize> {
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    let mut found = None;
    i = skip_ws(b, i + 1);
    if b.get(i) == Some(&b'}') {
        return None;
    }
    loop {
        if b.get(i) != Some(&b'"') {
            return None;
        }
        let key_end = skip_string(b, i)?;
        // Keys with escapes never equal a plain name; they are skipped.
        let key = &b[i + 1..key_end - 1];
        i = skip_ws(b, key_end);
        if b.get(i) != Some(&b':') {
            return None;
        }
        i = skip_ws(b, i + 1);
        if key == name.as_bytes() {
            found = Some(i);
        }
        i = skip_ws(b, skip_value(b, i)?);
        match b.get(i) {
            Some(b',') => i = skip_ws(b, i + 1),
            Some(b'}') => return found,
            _ => return None,
        }
    }
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while b.get(i).is_some_and(u8::is_ascii_whitespace) {
        i += 1;
    }
    i
}

/// `b[i]` is the opening quote; returns the offset after the closing one.
fn skip_string(b: &[u8], mut i: usize) -> Option<usize> {
    i += 1;
    loop {
        match b.get(i)? {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
}

/// Offset just after the value starting at `i`.
fn skip_value(b: &[u8], mut i: usize) -> Option<usize> {
    match b.get(i)? {
        b'"' => skip_string(b, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            loop {
                match b.get(i)? {
                    b'"' => {
                        i = skip_string(b, i)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
        }
        _ => {
            while b
                .get(i)
                .is_some_and(|c| !matches!(c, b',' | b'}' | b']') && !c.is_ascii_whitespace())
            {
                i += 1;
            }
            Some(i)
        }
    }
}

/// The paths still to follow below the current value.
struct Prune<'p>(&'p [&'p str]);

impl<'de> DeserializeSeed<'de> for Prune<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Prune<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        let mut below: Vec<&str> = Vec::new();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            below.clear();
            let mut whole = false;
            for p in self.0 {
                match p.strip_prefix(key.as_ref()) {
                    Some("") => whole = true,
                    Some(rest) if rest.starts_with('.') => below.push(&rest[1..]),
                    _ => {}
                }
            }
            if whole {
                out.insert(key.into_owned(), map.next_value::<Value>()?);
            } else if !below.is_empty() {
                let v = map.next_value_seed(Prune(&below))?;
                out.insert(key.into_owned(), v);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(Value::Object(out))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        // Paths do not index into arrays: one that reaches an array keeps it.
        let mut out = Vec::new();
        while let Some(v) = seq.next_element::<Value>()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(v.into())
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(v.into())
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pruned_keeps_only_the_named_members() {
        let doc = json!({
            "kind": "Pod",
            "metadata": {"name": "a", "labels": {"x": "1", "y": "2"}, "uid": "u"},
            "spec": {"nodeName": "n1", "containers": [{"name": "c"}], "hostNetwork": true},
            "status": {"podIPs": [{"ip": "10.0.0.1"}], "conditions": [], "phase": null},
        });
        let bytes = serde_json::to_vec(&doc).unwrap();
        let paths = [
            "metadata.name",
            "metadata.labels",
            "spec.nodeName",
            "spec.hostNetwork",
            "status.podIPs",
            "status.phase",
            "status.podIP",
            "missing.field",
        ];
        let v = pruned(&bytes, &paths).unwrap();
        assert_eq!(
            v,
            json!({
                "metadata": {"name": "a", "labels": {"x": "1", "y": "2"}},
                "spec": {"nodeName": "n1", "hostNetwork": true},
                "status": {"podIPs": [{"ip": "10.0.0.1"}], "phase": null},
            })
        );
        // A prefix of a key is not the key.
        let v = pruned(
            br#"{"metadata":{"namespace":"ns","name":"a"}}"#,
            &["metadata.name"],
        );
        assert_eq!(v.unwrap(), json!({"metadata": {"name": "a"}}));
    }

    #[test]
    fn pruned_rejects_invalid_json_even_where_it_skips() {
        assert!(pruned(br#"{"spec":{"x":[1,2}}"#, &["metadata.name"]).is_err());
        assert!(pruned(br#"{"metadata":{}} trailing"#, &["metadata.name"]).is_err());
    }

    #[test]
    fn insert_first_splices_into_the_named_object() {
        let cases: [(&str, &str); 4] = [
            (
                r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a"},"spec":{}}"#,
                r#"{"apiVersion":"v1","kind":"Pod","metadata":{"resourceVersion":"42","name":"a"},"spec":{}}"#,
            ),
            (
                r#"{"metadata":{}}"#,
                r#"{"metadata":{"resourceVersion":"42"}}"#,
            ),
            // Strings holding braces, quotes and the key itself are skipped.
            (
                r#"{"a":"}\"metadata\":{","b":[{"c":"]"}],"n":-1.5e3,"t":true, "metadata" : { "name":"x"}}"#,
                r#"{"a":"}\"metadata\":{","b":[{"c":"]"}],"n":-1.5e3,"t":true, "metadata" : {"resourceVersion":"42", "name":"x"}}"#,
            ),
            (
                r#"{"spec":{"metadata":{}},"metadata":{"name":"a"}}"#,
                r#"{"spec":{"metadata":{}},"metadata":{"resourceVersion":"42","name":"a"}}"#,
            ),
        ];
        for (input, want) in cases {
            let out = insert_first(input.as_bytes(), "metadata", "resourceVersion", "42")
                .unwrap_or_else(|| panic!("no metadata found in {input}"));
            assert_eq!(String::from_utf8(out).unwrap(), want);
            let v: Value = serde_json::from_str(want).unwrap();
            assert_eq!(v["metadata"]["resourceVersion"], "42");
        }
        for input in [
            r#"{"kind":"Pod"}"#,
            r#"{"metadata":null}"#,
            "[]",
            r#"{"metadata""#,
        ] {
            assert_eq!(
                insert_first(input.as_bytes(), "metadata", "k", "v"),
                None,
                "{input}"
            );
        }
    }
}
