//! The descriptors of Kubernetes' protobuf messages, built once from
//! `schema.txt` (generated from k8s-pb and k8s-openapi, see generate.rs).
//! Field names in the descriptors are Kubernetes' JSON names.

use std::collections::{BTreeMap, HashSet};
use std::sync::OnceLock;

use prost_reflect::{DescriptorPool, FieldDescriptor, MessageDescriptor};
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{
    DescriptorProto, FieldDescriptorProto, FileDescriptorProto, FileDescriptorSet, MessageOptions,
};

const TEXT: &str = include_str!("schema.txt");

pub struct Schema {
    pub pool: DescriptorPool,
    /// Full names of the fields Kubernetes writes in JSON even when they
    /// hold their zero value.
    required: HashSet<String>,
    /// Full names of the fields holding a Go struct embedded inline: in
    /// JSON its fields are the parent's.
    inline: HashSet<String>,
}

impl Schema {
    pub fn required(&self, field: &FieldDescriptor) -> bool {
        self.required.contains(field.full_name())
    }

    pub fn inline(&self, field: &FieldDescriptor) -> bool {
        self.inline.contains(field.full_name())
    }

    /// The message of `kind` in `api_version`: its group's package, or
    /// meta/v1 for the kinds every group shares (Status, DeleteOptions...).
    pub fn message(&self, api_version: &str, kind: &str) -> Option<MessageDescriptor> {
        // pods/eviction still takes policy/v1beta1 (older client-go, as in
        // `kubectl drain` before 1.22), whose message is policy/v1's field for
        // field; the generated schema has no v1beta1 of policy.
        let api_version = match (api_version, kind) {
            ("policy/v1beta1", "Eviction") => "policy/v1",
            _ => api_version,
        };
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let package = match group {
            "" => format!("k8s.io.api.core.{version}"),
            "apiextensions.k8s.io" => {
                format!("k8s.io.apiextensions_apiserver.pkg.apis.apiextensions.{version}")
            }
            "apiregistration.k8s.io" => {
                format!("k8s.io.kube_aggregator.pkg.apis.apiregistration.{version}")
            }
            "metrics.k8s.io" => format!("k8s.io.metrics.pkg.apis.metrics.{version}"),
            "meta.k8s.io" => format!("k8s.io.apimachinery.pkg.apis.meta.{version}"),
            g => format!("k8s.io.api.{}.{version}", g.split('.').next().unwrap_or(g)),
        };
        self.pool
            .get_message_by_name(&format!("{package}.{kind}"))
            .or_else(|| {
                self.pool
                    .get_message_by_name(&format!("k8s.io.apimachinery.pkg.apis.meta.v1.{kind}"))
            })
    }
}

pub fn schema() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| build(TEXT))
}

fn package_of(full: &str) -> &str {
    full.rsplit_once('.').map_or("", |(p, _)| p)
}

fn file_name(package: &str) -> String {
    format!("{}/generated.proto", package.replace('.', "/"))
}

fn scalar(ty: &str) -> Option<Type> {
    Some(match ty {
        "string" => Type::String,
        "int32" => Type::Int32,
        "int64" => Type::Int64,
        "bool" => Type::Bool,
        "bytes" => Type::Bytes,
        "double" => Type::Double,
        _ => return None,
    })
}

/// A JSON name as a protobuf identifier (`$ref`, `x-kubernetes-list-type`
/// are not identifiers; the JSON name is kept beside it).
fn ident(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

fn field(name: &str, number: u32, label: Label, ty: &str) -> FieldDescriptorProto {
    let mut f = FieldDescriptorProto {
        name: Some(ident(name)),
        json_name: Some(name.to_string()),
        number: Some(number as i32),
        label: Some(label as i32),
        ..Default::default()
    };
    match scalar(ty) {
        Some(t) => f.r#type = Some(t as i32),
        None => {
            f.r#type = Some(Type::Message as i32);
            f.type_name = Some(format!(".{ty}"));
        }
    }
    f
}

fn build(text: &str) -> Schema {
    let mut files: BTreeMap<String, FileDescriptorProto> = BTreeMap::new();
    let mut deps: BTreeMap<String, HashSet<String>> = BTreeMap::new();
    let mut required = HashSet::new();
    let mut inline = HashSet::new();
    let mut current: Option<(String, DescriptorProto)> = None;
    let flush = |current: &mut Option<(String, DescriptorProto)>,
                 files: &mut BTreeMap<String, FileDescriptorProto>| {
        if let Some((full, msg)) = current.take() {
            let package = package_of(&full).to_string();
            files
                .entry(package.clone())
                .or_insert_with(|| FileDescriptorProto {
                    name: Some(file_name(&package)),
                    package: Some(package),
                    syntax: Some("proto2".into()),
                    ..Default::default()
                })
                .message_type
                .push(msg);
        }
    };
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        if let Some(full) = line.strip_prefix("message ") {
            flush(&mut current, &mut files);
            let name = full.rsplit_once('.').map_or(full, |(_, n)| n);
            current = Some((
                full.to_string(),
                DescriptorProto {
                    name: Some(name.to_string()),
                    ..Default::default()
                },
            ));
            continue;
        }
        let Some((full, msg)) = current.as_mut() else {
            continue;
        };
        let parts: Vec<&str> = line.split_whitespace().collect();
        let [number, name, label, ty, rest @ ..] = parts.as_slice() else {
            continue;
        };
        let number: u32 = number.parse().unwrap_or_default();
        let field_name = format!("{full}.{}", ident(name));
        if rest.contains(&"required") {
            required.insert(field_name.clone());
        }
        if rest.contains(&"inline") {
            inline.insert(field_name);
        }
        if scalar(ty).is_none() && package_of(ty) != package_of(full) {
            deps.entry(package_of(full).to_string())
                .or_default()
                .insert(file_name(package_of(ty)));
        }
        match *label {
            "map" => {
                let mut entry_name: String =
                    name.chars().take(1).flat_map(char::to_uppercase).collect();
                entry_name.extend(name.chars().skip(1).filter(|c| c.is_ascii_alphanumeric()));
                entry_name.push_str("Entry");
                msg.nested_type.push(DescriptorProto {
                    name: Some(entry_name.clone()),
                    field: vec![
                        field("key", 1, Label::Optional, "string"),
                        field("value", 2, Label::Optional, ty),
                    ],
                    options: Some(MessageOptions {
                        map_entry: Some(true),
                        ..Default::default()
                    }),
                    ..Default::default()
                });
                msg.field.push(field(
                    name,
                    number,
                    Label::Repeated,
                    &format!("{full}.{entry_name}"),
                ));
            }
            "repeated" => msg.field.push(field(name, number, Label::Repeated, ty)),
            _ => msg.field.push(field(name, number, Label::Optional, ty)),
        }
    }
    flush(&mut current, &mut files);
    for (package, file) in files.iter_mut() {
        file.dependency = deps
            .get(package)
            .map(|d| d.iter().cloned().collect())
            .unwrap_or_default();
        file.dependency.sort();
    }
    let set = FileDescriptorSet {
        file: files.into_values().collect(),
    };
    let pool = DescriptorPool::from_file_descriptor_set(set)
        .unwrap_or_else(|e| panic!("schema.txt does not describe valid messages: {e}"));
    Schema {
        pool,
        required,
        inline,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generated_schema_builds_and_names_json_fields() {
        let s = schema();
        let pod = s.message("v1", "Pod").unwrap();
        assert_eq!(pod.full_name(), "k8s.io.api.core.v1.Pod");
        let spec = s
            .pool
            .get_message_by_name("k8s.io.api.core.v1.PodSpec")
            .unwrap();
        assert!(spec.get_field_by_json_name("hostIPC").is_some());
        assert!(spec.get_field_by_json_name("containers").is_some());
        let ebs = s
            .pool
            .get_message_by_name("k8s.io.api.core.v1.AWSElasticBlockStoreVolumeSource")
            .unwrap();
        assert!(ebs.get_field_by_json_name("volumeID").is_some());
        assert_eq!(
            s.message("apps/v1", "Deployment").unwrap().name(),
            "Deployment"
        );
        assert_eq!(
            s.message("v1", "Status").unwrap().full_name(),
            "k8s.io.apimachinery.pkg.apis.meta.v1.Status"
        );
        let term = s
            .pool
            .get_message_by_name("k8s.io.api.core.v1.ContainerStateTerminated")
            .unwrap();
        assert!(s.required(&term.get_field_by_json_name("exitCode").unwrap()));
        assert!(!s.required(&term.get_field_by_json_name("signal").unwrap()));
        assert!(s.message("v1", "NoSuchKind").is_none());
    }
}
