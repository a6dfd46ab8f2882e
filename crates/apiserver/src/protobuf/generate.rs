//! Regenerates `schema.txt` from the sources of the two crates that carry
//! Kubernetes' types: k8s-pb (field numbers and protobuf types, from
//! Kubernetes' generated.proto files) and k8s-openapi (JSON names, and which
//! fields Kubernetes always writes). Run after upgrading either crate:
//! `cargo test -p orca-apiserver --lib protobuf::generate -- --ignored`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use regex::Regex;

/// The packages served or used by served kinds: stable versions only.
const PACKAGES: &[&str] = &[
    "api/admissionregistration/v1",
    "api/apps/v1",
    "api/authentication/v1",
    "api/authorization/v1",
    "api/autoscaling/v1",
    "api/autoscaling/v2",
    "api/batch/v1",
    "api/certificates/v1",
    "api/coordination/v1",
    "api/core/v1",
    "api/discovery/v1",
    "api/events/v1",
    "api/flowcontrol/v1",
    "api/networking/v1",
    "api/node/v1",
    "api/policy/v1",
    "api/rbac/v1",
    "api/scheduling/v1",
    "api/storage/v1",
    "apiextensions_apiserver/pkg/apis/apiextensions/v1",
    "apimachinery/pkg/api/resource",
    "apimachinery/pkg/apis/meta/v1",
    "apimachinery/pkg/runtime",
    "apimachinery/pkg/util/intstr",
    "kube_aggregator/pkg/apis/apiregistration/v1",
    "metrics/pkg/apis/metrics/v1beta1",
];

fn crate_dir(name: &str) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata");
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata JSON");
    let manifest = meta["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == name)
        .and_then(|p| p["manifest_path"].as_str())
        .unwrap_or_else(|| panic!("{name} is not a dependency"));
    Path::new(manifest).parent().unwrap().to_path_buf()
}

fn squash(s: &str) -> String {
    s.to_ascii_lowercase().replace('_', "")
}

/// A k8s-openapi struct's fields: squashed Rust field -> (JSON name, always
/// written).
type OpenApiFields = HashMap<String, (String, bool)>;

/// k8s-openapi's structs of one package: squashed struct name -> (name,
/// fields).
type OpenApiStructs = HashMap<String, (String, OpenApiFields)>;

fn openapi_structs(dir: &Path) -> OpenApiStructs {
    let strukt = Regex::new(r"(?m)^pub struct (\w+) \{").unwrap();
    let field = Regex::new(r"(?m)^    pub (\w+): (.+),$").unwrap();
    let key = Regex::new(r#""([\w$-]+)" => Field::Key_(\w+)"#).unwrap();
    let mut out = OpenApiStructs::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        let Some(c) = strukt.captures(&text) else {
            continue;
        };
        let name = c[1].to_string();
        let body = &text[c.get(0).unwrap().end()..];
        let body = &body[..body.find("\n}").unwrap_or(body.len())];
        let required: HashMap<String, bool> = field
            .captures_iter(body)
            .map(|f| (f[1].to_string(), !f[2].starts_with("Option<")))
            .collect();
        let fields = key
            .captures_iter(&text)
            .map(|k| {
                let rust = k[2].to_string();
                let req = required.get(&rust).copied().unwrap_or(false);
                (squash(&rust), (k[1].to_string(), req))
            })
            .collect();
        out.insert(squash(&name), (name, fields));
    }
    out
}

fn lower_camel(snake: &str) -> String {
    let mut out = String::new();
    for (i, part) in snake.trim_start_matches("r#").split('_').enumerate() {
        let mut cs = part.chars();
        if let Some(c) = cs.next() {
            if i == 0 {
                out.push(c);
            } else {
                out.extend(c.to_uppercase());
            }
            out.extend(cs);
        }
    }
    out
}

fn package_of(module: &str) -> String {
    format!("k8s.io.{}", module.replace('/', "."))
}

/// The message a Rust type path names, seen from `module`.
fn resolve(module: &str, ty: &str) -> String {
    let path = Regex::new(r"((?:super::)*(?:\w+::)*)([A-Z]\w*)")
        .unwrap()
        .captures_iter(ty)
        .filter(|c| !matches!(&c[2], "String" | "Option" | "Vec" | "Box" | "BTreeMap"))
        .last()
        .unwrap_or_else(|| panic!("no message type in {ty}"));
    let mut segs: Vec<&str> = module.split('/').collect();
    let prefix = &path[1];
    for seg in prefix.split("::").filter(|s| !s.is_empty()) {
        if seg == "super" {
            segs.pop();
        } else {
            segs.push(seg);
        }
    }
    format!("{}.{}", package_of(&segs.join("/")), &path[2])
}

struct Field {
    /// The Rust field's name, squashed.
    rust: String,
    json: String,
    tag: u32,
    ty: String,
    label: &'static str,
    required: bool,
    inline: bool,
}

#[test]
#[ignore = "rewrites schema.txt from the crates' sources"]
fn regenerate_schema() {
    let pb = crate_dir("k8s-pb").join("src");
    let oa = crate_dir("k8s-openapi").join("src/v1_32");
    let strukt = Regex::new(r"(?m)^pub struct (\w+) \{").unwrap();
    let attr = Regex::new(r"(?s)#\[prost\((.*?)\)\]\s*pub ((?:r#)?\w+):\s*(.*?),\s*$").unwrap();
    let tag = Regex::new(r#"tag = "(\d+)""#).unwrap();
    // message full name (as k8s-pb spells it) -> (openapi spelling, fields)
    let mut messages: BTreeMap<String, (String, Vec<Field>)> = BTreeMap::new();
    // Messages k8s-openapi has no struct for.
    let mut unnamed: HashSet<String> = HashSet::new();
    // An inline message's full name -> the fields of a k8s-openapi struct
    // it is embedded in.
    let mut embedded: Vec<(String, OpenApiFields)> = Vec::new();
    for module in PACKAGES {
        let text = std::fs::read_to_string(pb.join(module).join("mod.rs"))
            .unwrap_or_else(|e| panic!("{module}: {e}"));
        let openapi = openapi_structs(&oa.join(module));
        for c in strukt.captures_iter(&text) {
            let name = c[1].to_string();
            let body = &text[c.get(0).unwrap().end()..];
            let body = &body[..body.find("\n}").unwrap()];
            let body: String = body
                .lines()
                .filter(|l| !l.trim_start().starts_with("///"))
                .collect::<Vec<_>>()
                .join("\n");
            let (oa_name, oa_fields) = openapi.get(&squash(&name)).cloned().unwrap_or_else(|| {
                unnamed.insert(format!("{}.{name}", package_of(module)));
                (name.clone(), HashMap::new())
            });
            let mut fields = Vec::new();
            for chunk in body.split("#[prost(").skip(1) {
                let chunk = format!("#[prost({}", chunk.trim_end());
                let f = attr
                    .captures(&chunk)
                    .unwrap_or_else(|| panic!("{name}: cannot read {chunk}"));
                let spec = &f[1];
                let rust = &f[2];
                let number = tag.captures(spec).unwrap()[1].parse().unwrap();
                let known = oa_fields.get(&squash(rust.trim_start_matches("r#")));
                // A message field k8s-openapi does not name is a Go struct
                // embedded inline (Volume's VolumeSource): its fields are
                // the parent's in JSON.
                // Go names such a field after its type (ProbeHandler for
                // `handler`); fields newer than k8s-openapi are not inline.
                let message = spec.starts_with("message, optional");
                let type_full = if message {
                    resolve(module, &f[3])
                } else {
                    String::new()
                };
                let type_name = type_full.rsplit('.').next().unwrap_or("");
                let inline = known.is_none()
                    && !oa_fields.is_empty()
                    && message
                    && (squash(type_name) == squash(rust)
                        || squash(type_name) == squash(&format!("{name}{rust}")));
                if inline {
                    embedded.push((type_full.clone(), oa_fields.clone()));
                }
                let (json, required) = known.cloned().unwrap_or_else(|| (lower_camel(rust), false));

                let kind = spec.split(',').next().unwrap().trim();
                let scalar = |k: &str| match k {
                    "message" => resolve(module, &f[3]),
                    other => other.trim_matches('"').to_string(),
                };
                let (ty, label) = if kind.starts_with("btree_map") {
                    let v = spec.split('"').nth(1).unwrap().split(", ").nth(1).unwrap();
                    (scalar(v), "map")
                } else {
                    let base = kind.split(" = ").next().unwrap();
                    let label = if spec.contains("repeated") {
                        "repeated"
                    } else {
                        "optional"
                    };
                    (scalar(base), label)
                };
                fields.push(Field {
                    rust: squash(rust.trim_start_matches("r#")),
                    json,
                    tag: number,
                    ty,
                    label,
                    required,
                    inline,
                });
            }
            messages.insert(format!("{}.{name}", package_of(module)), (oa_name, fields));
        }
    }
    // k8s-openapi has no struct for most Go structs embedded inline
    // (Volume's VolumeSource): their fields are the embedding struct's,
    // named there (downwardAPI, where the proto name gives downwardApi).
    let mut named_by: HashMap<String, String> = HashMap::new();
    for (inline, parent) in embedded.iter().filter(|(m, _)| unnamed.contains(m)) {
        let (_, fields) = messages.get_mut(inline).unwrap();
        for f in fields {
            let Some((json, required)) = parent.get(&f.rust) else {
                continue;
            };
            let first = named_by
                .entry(format!("{inline}.{}", f.rust))
                .or_insert(json.clone());
            assert_eq!(
                first, json,
                "{inline}: its embedders name a field differently"
            );
            f.json = json.clone();
            f.required = *required;
        }
    }
    // Spell messages as k8s-openapi (and Kubernetes) do: JSONSchemaProps,
    // AWSElasticBlockStoreVolumeSource.
    let rename: HashMap<String, String> = messages
        .iter()
        .map(|(full, (oa, _))| {
            let (pkg, _) = full.rsplit_once('.').unwrap();
            (full.clone(), format!("{pkg}.{oa}"))
        })
        .collect();
    let mut out = String::from(
        "# Kubernetes' protobuf messages: generated by protobuf/generate.rs from\n\
         # k8s-pb (numbers, types) and k8s-openapi (JSON names; `required` marks\n\
         # fields Kubernetes writes even when empty, `inline` embedded structs\n\
         # whose fields are their parent's in JSON). Do not edit.\n",
    );
    for (full, (_, fields)) in &messages {
        writeln!(out, "message {}", rename[full]).unwrap();
        for f in fields {
            let ty = rename.get(&f.ty).cloned().unwrap_or_else(|| f.ty.clone());
            assert!(
                !ty.starts_with("k8s.io") || rename.values().any(|v| *v == ty),
                "{full}.{}: {ty} is outside the generated packages",
                f.json
            );
            let req = if f.required { " required" } else { "" };
            let inline = if f.inline { " inline" } else { "" };
            writeln!(
                out,
                "  {} {} {} {}{req}{inline}",
                f.tag, f.json, f.label, ty
            )
            .unwrap();
        }
    }
    std::fs::write(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("src/protobuf/schema.txt"),
        out,
    )
    .unwrap();
}
