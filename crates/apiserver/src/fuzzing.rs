//! The decoders behind one entry point, for the fuzz target in
//! `crates/apiserver/fuzz` and the robustness test below. Not API.

use http::{header, HeaderMap, HeaderValue};
use serde_json::json;

use crate::resources::RESOURCES;

/// Feeds `data` to every request-body decoder. The first byte picks the
/// content type; the rest is the body. Errors are fine, panics are bugs.
pub fn exercise(data: &[u8]) {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let ct = match sel % 4 {
        0 => "application/json",
        1 => "application/yaml",
        2 => "application/vnd.kubernetes.protobuf",
        _ => "application/merge-patch+json",
    };
    let mut h = HeaderMap::new();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    if let Ok(v) = crate::handlers::decode_body(&h, body) {
        for def in RESOURCES {
            let _ = crate::openapi::unknown_fields(def.schema, &v);
            if let Ok(mut n) = (def.normalize)(v.clone()) {
                let _ = def.strategy.prepare_create(def, &mut n);
                let _ = def.strategy.prepare_update(def, &mut n.clone(), &n);
                let _ = def.strategy.prepare_status_update(def, &mut n.clone(), &n);
            }
        }
        let base = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "i"}]}});
        for t in [
            orca_api::patch::PatchType::Json,
            orca_api::patch::PatchType::Merge,
            orca_api::patch::PatchType::Strategic,
        ] {
            let _ = orca_api::patch::apply("Pod", &base, t, &v);
        }
    }
    // The watch cache's partial reads of stored objects (which a shared
    // etcd may hold from other writers).
    let _ = crate::rawjson::pruned(body, &["metadata.name", "spec.nodeName", "status"]);
    if let Some(out) = crate::rawjson::insert_first(body, "metadata", "resourceVersion", "1") {
        if let Ok(before) = serde_json::from_slice::<serde_json::Value>(body) {
            let v: serde_json::Value =
                serde_json::from_slice(&out).expect("splicing into valid JSON keeps it valid");
            // The cache splices only where there is no resourceVersion yet.
            if before["metadata"].get("resourceVersion").is_none() {
                assert_eq!(v["metadata"]["resourceVersion"], "1");
            }
        }
    }
    if let Ok(s) = std::str::from_utf8(body) {
        let _ = crate::selectors::LabelSelector::parse(s);
        let _ = crate::selectors::FieldSelector::parse(s, crate::resources::pods());
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn odd_inputs_do_not_panic() {
        let cases: &[&[u8]] = &[
            b"",
            b"\x00{",
            b"\x00{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"A_B\"},\"spec\":{\"containers\":[{}]}}",
            b"\x00{\"spec\":{\"containers\":[{\"name\":\"c\",\"ports\":[{\"containerPort\":99999999}]}]}}",
            b"\x00[{\"op\":\"remove\",\"path\":\"/spec/containers/5\"}]",
            b"\x01a: [b\n c: {",
            b"\x01- - - - - -",
            b"\x02k8s\x00\x0a\x0b\x0a\x02v1\x12\x05Pod\xff",
            b"\x02k8s\x00\x12\xff\xff\xff\xff\x0f",
            b"\x03{\"metadata\":{\"labels\":null}}",
            b"\x00a in (b,,c), !, =x",
            b"\x00{\"metadata\":{\"a\\\"\":1}, \"metadata\":{}}",
            b"\x00{\"metadata\":{\"resourceVersion\":\"9\"}}",
            b"\x00{\"metadata\"",
        ];
        for c in cases {
            super::exercise(c);
        }
    }
}
