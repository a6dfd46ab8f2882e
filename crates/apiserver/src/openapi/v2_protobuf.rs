//! `/openapi/v2` in protobuf, the only form client-go's `OpenAPISchema`
//! asks for: gnostic's `openapi.v2.Document` (github.com/google/gnostic-models,
//! openapiv2/OpenAPIv2.proto). kubectl reads it to validate the items of a
//! `List` and to see which kinds take `fieldValidation`.
//!
//! Only the messages and fields Orca's Swagger document uses are declared,
//! with gnostic's field numbers; a JSON key without one here is left out.
//! Vendor extensions, defaults and enum values are YAML text, as gnostic
//! keeps them.

use std::sync::OnceLock;

use bytes::Bytes;
use prost::Message;
use serde_json::Value;

/// The protobuf form of [`super::v2`], encoded once.
pub fn body() -> &'static Bytes {
    static BODY: OnceLock<Bytes> = OnceLock::new();
    BODY.get_or_init(|| {
        let json: Value = serde_json::from_slice(&super::v2().body).unwrap_or_default();
        Bytes::from(document(&json).encode_to_vec())
    })
}

// ---------------------------------------------------------------------------
// Messages

#[derive(Clone, PartialEq, Message)]
pub struct Document {
    #[prost(string, tag = "1")]
    pub swagger: String,
    #[prost(message, optional, tag = "2")]
    pub info: Option<Info>,
    #[prost(message, optional, tag = "8")]
    pub paths: Option<Paths>,
    #[prost(message, optional, tag = "9")]
    pub definitions: Option<Definitions>,
    #[prost(message, repeated, tag = "12")]
    pub security: Vec<SecurityRequirement>,
    #[prost(message, optional, tag = "13")]
    pub security_definitions: Option<SecurityDefinitions>,
    #[prost(message, repeated, tag = "16")]
    pub vendor_extension: Vec<NamedAny>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Info {
    #[prost(string, tag = "1")]
    pub title: String,
    #[prost(string, tag = "2")]
    pub version: String,
    #[prost(string, tag = "3")]
    pub description: String,
    #[prost(message, repeated, tag = "7")]
    pub vendor_extension: Vec<NamedAny>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Any {
    #[prost(string, tag = "2")]
    pub yaml: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct NamedAny {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<Any>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Paths {
    #[prost(message, repeated, tag = "1")]
    pub vendor_extension: Vec<NamedAny>,
    #[prost(message, repeated, tag = "2")]
    pub path: Vec<NamedPathItem>,
}

#[derive(Clone, PartialEq, Message)]
pub struct NamedPathItem {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<PathItem>,
}

#[derive(Clone, PartialEq, Message)]
pub struct PathItem {
    #[prost(message, optional, tag = "2")]
    pub get: Option<Operation>,
    #[prost(message, optional, tag = "3")]
    pub put: Option<Operation>,
    #[prost(message, optional, tag = "4")]
    pub post: Option<Operation>,
    #[prost(message, optional, tag = "5")]
    pub delete: Option<Operation>,
    #[prost(message, optional, tag = "6")]
    pub options: Option<Operation>,
    #[prost(message, optional, tag = "7")]
    pub head: Option<Operation>,
    #[prost(message, optional, tag = "8")]
    pub patch: Option<Operation>,
    #[prost(message, repeated, tag = "10")]
    pub vendor_extension: Vec<NamedAny>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Operation {
    #[prost(string, repeated, tag = "1")]
    pub tags: Vec<String>,
    #[prost(string, tag = "2")]
    pub summary: String,
    #[prost(string, tag = "3")]
    pub description: String,
    #[prost(string, tag = "5")]
    pub operation_id: String,
    #[prost(string, repeated, tag = "6")]
    pub produces: Vec<String>,
    #[prost(string, repeated, tag = "7")]
    pub consumes: Vec<String>,
    #[prost(message, repeated, tag = "8")]
    pub parameters: Vec<ParametersItem>,
    #[prost(message, optional, tag = "9")]
    pub responses: Option<Responses>,
    #[prost(string, repeated, tag = "10")]
    pub schemes: Vec<String>,
    #[prost(bool, tag = "11")]
    pub deprecated: bool,
    #[prost(message, repeated, tag = "13")]
    pub vendor_extension: Vec<NamedAny>,
}

/// gnostic's `ParametersItem` and `Parameter` wrap one parameter in two
/// oneofs (a parameter or a reference; a body or not), `NonBodyParameter`
/// in a third (by `in`). Orca writes no references, headers or form data.
#[derive(Clone, PartialEq, Message)]
pub struct ParametersItem {
    #[prost(message, optional, tag = "1")]
    pub parameter: Option<Parameter>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Parameter {
    #[prost(oneof = "parameter::Oneof", tags = "1, 2")]
    pub oneof: Option<parameter::Oneof>,
}

pub mod parameter {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Oneof {
        #[prost(message, tag = "1")]
        BodyParameter(Box<super::BodyParameter>),
        #[prost(message, tag = "2")]
        NonBodyParameter(super::NonBodyParameter),
    }
}

#[derive(Clone, PartialEq, Message)]
pub struct BodyParameter {
    #[prost(string, tag = "1")]
    pub description: String,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(string, tag = "3")]
    pub r#in: String,
    #[prost(bool, tag = "4")]
    pub required: bool,
    #[prost(message, optional, tag = "5")]
    pub schema: Option<Schema>,
    #[prost(message, repeated, tag = "6")]
    pub vendor_extension: Vec<NamedAny>,
}

#[derive(Clone, PartialEq, Message)]
pub struct NonBodyParameter {
    #[prost(oneof = "non_body_parameter::Oneof", tags = "3, 4")]
    pub oneof: Option<non_body_parameter::Oneof>,
}

pub mod non_body_parameter {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Oneof {
        #[prost(message, tag = "3")]
        QueryParameterSubSchema(super::QueryParameterSubSchema),
        #[prost(message, tag = "4")]
        PathParameterSubSchema(super::PathParameterSubSchema),
    }
}

#[derive(Clone, PartialEq, Message)]
pub struct QueryParameterSubSchema {
    #[prost(bool, tag = "1")]
    pub required: bool,
    #[prost(string, tag = "2")]
    pub r#in: String,
    #[prost(string, tag = "3")]
    pub description: String,
    #[prost(string, tag = "4")]
    pub name: String,
    #[prost(string, tag = "6")]
    pub r#type: String,
    #[prost(string, tag = "7")]
    pub format: String,
    #[prost(bool, tag = "20")]
    pub unique_items: bool,
    #[prost(message, repeated, tag = "21")]
    pub r#enum: Vec<Any>,
    #[prost(message, repeated, tag = "23")]
    pub vendor_extension: Vec<NamedAny>,
}

/// The same fields as a query parameter's, numbered one lower from `type`
/// on (a path parameter has no `allowEmptyValue`).
#[derive(Clone, PartialEq, Message)]
pub struct PathParameterSubSchema {
    #[prost(bool, tag = "1")]
    pub required: bool,
    #[prost(string, tag = "2")]
    pub r#in: String,
    #[prost(string, tag = "3")]
    pub description: String,
    #[prost(string, tag = "4")]
    pub name: String,
    #[prost(string, tag = "5")]
    pub r#type: String,
    #[prost(string, tag = "6")]
    pub format: String,
    #[prost(bool, tag = "19")]
    pub unique_items: bool,
    #[prost(message, repeated, tag = "20")]
    pub r#enum: Vec<Any>,
    #[prost(message, repeated, tag = "22")]
    pub vendor_extension: Vec<NamedAny>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Responses {
    #[prost(message, repeated, tag = "1")]
    pub response_code: Vec<NamedResponseValue>,
    #[prost(message, repeated, tag = "2")]
    pub vendor_extension: Vec<NamedAny>,
}

/// gnostic's `ResponseValue` is a oneof of a response (1) or a reference
/// (2); Orca writes no references, so the response is its only field.
#[derive(Clone, PartialEq, Message)]
pub struct NamedResponseValue {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<ResponseValue>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ResponseValue {
    #[prost(message, optional, tag = "1")]
    pub response: Option<Response>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Response {
    #[prost(string, tag = "1")]
    pub description: String,
    #[prost(message, optional, tag = "2")]
    pub schema: Option<SchemaItem>,
    #[prost(message, repeated, tag = "5")]
    pub vendor_extension: Vec<NamedAny>,
}

/// A oneof of a schema (1) or a file schema (2) in gnostic.
#[derive(Clone, PartialEq, Message)]
pub struct SchemaItem {
    #[prost(message, optional, tag = "1")]
    pub schema: Option<Schema>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Schema {
    #[prost(string, tag = "1")]
    pub r#ref: String,
    #[prost(string, tag = "2")]
    pub format: String,
    #[prost(string, tag = "3")]
    pub title: String,
    #[prost(string, tag = "4")]
    pub description: String,
    #[prost(message, optional, tag = "5")]
    pub default: Option<Any>,
    #[prost(bool, tag = "16")]
    pub unique_items: bool,
    #[prost(string, repeated, tag = "19")]
    pub required: Vec<String>,
    #[prost(message, repeated, tag = "20")]
    pub r#enum: Vec<Any>,
    #[prost(message, optional, tag = "21")]
    pub additional_properties: Option<AdditionalPropertiesItem>,
    #[prost(message, optional, tag = "22")]
    pub r#type: Option<TypeItem>,
    #[prost(message, optional, tag = "23")]
    pub items: Option<ItemsItem>,
    #[prost(message, repeated, tag = "24")]
    pub all_of: Vec<Schema>,
    #[prost(message, optional, tag = "25")]
    pub properties: Option<Properties>,
    #[prost(bool, tag = "27")]
    pub read_only: bool,
    #[prost(message, repeated, tag = "31")]
    pub vendor_extension: Vec<NamedAny>,
}

#[derive(Clone, PartialEq, Message)]
pub struct AdditionalPropertiesItem {
    #[prost(oneof = "additional_properties_item::Oneof", tags = "1, 2")]
    pub oneof: Option<additional_properties_item::Oneof>,
}

pub mod additional_properties_item {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Oneof {
        #[prost(message, tag = "1")]
        Schema(Box<super::Schema>),
        #[prost(bool, tag = "2")]
        Boolean(bool),
    }
}

#[derive(Clone, PartialEq, Message)]
pub struct TypeItem {
    #[prost(string, repeated, tag = "1")]
    pub value: Vec<String>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ItemsItem {
    #[prost(message, repeated, tag = "1")]
    pub schema: Vec<Schema>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Properties {
    #[prost(message, repeated, tag = "1")]
    pub additional_properties: Vec<NamedSchema>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Definitions {
    #[prost(message, repeated, tag = "1")]
    pub additional_properties: Vec<NamedSchema>,
}

#[derive(Clone, PartialEq, Message)]
pub struct NamedSchema {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<Schema>,
}

#[derive(Clone, PartialEq, Message)]
pub struct SecurityRequirement {
    #[prost(message, repeated, tag = "1")]
    pub additional_properties: Vec<NamedStringArray>,
}

#[derive(Clone, PartialEq, Message)]
pub struct NamedStringArray {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<StringArray>,
}

#[derive(Clone, PartialEq, Message)]
pub struct StringArray {
    #[prost(string, repeated, tag = "1")]
    pub value: Vec<String>,
}

#[derive(Clone, PartialEq, Message)]
pub struct SecurityDefinitions {
    #[prost(message, repeated, tag = "1")]
    pub additional_properties: Vec<NamedSecurityDefinitionsItem>,
}

#[derive(Clone, PartialEq, Message)]
pub struct NamedSecurityDefinitionsItem {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<SecurityDefinitionsItem>,
}

/// A oneof of six schemes in gnostic; Orca's only one is a bearer token,
/// an API key (2).
#[derive(Clone, PartialEq, Message)]
pub struct SecurityDefinitionsItem {
    #[prost(message, optional, tag = "2")]
    pub api_key_security: Option<ApiKeySecurity>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ApiKeySecurity {
    #[prost(string, tag = "1")]
    pub r#type: String,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(string, tag = "3")]
    pub r#in: String,
    #[prost(string, tag = "4")]
    pub description: String,
    #[prost(message, repeated, tag = "5")]
    pub vendor_extension: Vec<NamedAny>,
}

// ---------------------------------------------------------------------------
// From the JSON document

fn document(v: &Value) -> Document {
    Document {
        swagger: text(v, "swagger"),
        info: v.get("info").map(|i| Info {
            title: text(i, "title"),
            version: text(i, "version"),
            description: text(i, "description"),
            vendor_extension: extensions(i),
        }),
        paths: v.get("paths").map(|p| Paths {
            vendor_extension: extensions(p),
            path: fields(p)
                .map(|(name, item)| NamedPathItem {
                    name: name.clone(),
                    value: Some(path_item(item)),
                })
                .collect(),
        }),
        definitions: v.get("definitions").map(|d| Definitions {
            additional_properties: named_schemas(d),
        }),
        security: list(v, "security")
            .map(|req| SecurityRequirement {
                additional_properties: fields(req)
                    .map(|(name, scopes)| NamedStringArray {
                        name: name.clone(),
                        value: Some(StringArray {
                            value: strings_of(scopes),
                        }),
                    })
                    .collect(),
            })
            .collect(),
        security_definitions: v.get("securityDefinitions").map(|d| SecurityDefinitions {
            additional_properties: fields(d)
                .filter(|(_, s)| s["type"] == "apiKey")
                .map(|(name, s)| NamedSecurityDefinitionsItem {
                    name: name.clone(),
                    value: Some(SecurityDefinitionsItem {
                        api_key_security: Some(ApiKeySecurity {
                            r#type: text(s, "type"),
                            name: text(s, "name"),
                            r#in: text(s, "in"),
                            description: text(s, "description"),
                            vendor_extension: extensions(s),
                        }),
                    }),
                })
                .collect(),
        }),
        vendor_extension: extensions(v),
    }
}

fn path_item(v: &Value) -> PathItem {
    let op = |method: &str| v.get(method).map(operation);
    PathItem {
        get: op("get"),
        put: op("put"),
        post: op("post"),
        delete: op("delete"),
        options: op("options"),
        head: op("head"),
        patch: op("patch"),
        vendor_extension: extensions(v),
    }
}

fn operation(v: &Value) -> Operation {
    Operation {
        tags: strings(v, "tags"),
        summary: text(v, "summary"),
        description: text(v, "description"),
        operation_id: text(v, "operationId"),
        produces: strings(v, "produces"),
        consumes: strings(v, "consumes"),
        parameters: list(v, "parameters").filter_map(parameter).collect(),
        responses: v.get("responses").map(|r| Responses {
            response_code: fields(r)
                .map(|(code, r)| NamedResponseValue {
                    name: code.clone(),
                    value: Some(ResponseValue {
                        response: Some(Response {
                            description: text(r, "description"),
                            schema: r.get("schema").map(|s| SchemaItem {
                                schema: Some(schema(s)),
                            }),
                            vendor_extension: extensions(r),
                        }),
                    }),
                })
                .collect(),
            vendor_extension: extensions(r),
        }),
        schemes: strings(v, "schemes"),
        deprecated: flag(v, "deprecated"),
        vendor_extension: extensions(v),
    }
}

fn parameter(v: &Value) -> Option<ParametersItem> {
    use non_body_parameter::Oneof::{
        PathParameterSubSchema as InPath, QueryParameterSubSchema as InQuery,
    };
    let non_body = |p| parameter::Oneof::NonBodyParameter(NonBodyParameter { oneof: Some(p) });
    let p = match v["in"].as_str()? {
        "body" => parameter::Oneof::BodyParameter(Box::new(BodyParameter {
            description: text(v, "description"),
            name: text(v, "name"),
            r#in: text(v, "in"),
            required: flag(v, "required"),
            schema: v.get("schema").map(schema),
            vendor_extension: extensions(v),
        })),
        "query" => non_body(InQuery(QueryParameterSubSchema {
            required: flag(v, "required"),
            r#in: text(v, "in"),
            description: text(v, "description"),
            name: text(v, "name"),
            r#type: text(v, "type"),
            format: text(v, "format"),
            unique_items: flag(v, "uniqueItems"),
            r#enum: list(v, "enum").map(any).collect(),
            vendor_extension: extensions(v),
        })),
        "path" => non_body(InPath(PathParameterSubSchema {
            required: flag(v, "required"),
            r#in: text(v, "in"),
            description: text(v, "description"),
            name: text(v, "name"),
            r#type: text(v, "type"),
            format: text(v, "format"),
            unique_items: flag(v, "uniqueItems"),
            r#enum: list(v, "enum").map(any).collect(),
            vendor_extension: extensions(v),
        })),
        _ => return None,
    };
    Some(ParametersItem {
        parameter: Some(Parameter { oneof: Some(p) }),
    })
}

fn schema(v: &Value) -> Schema {
    use additional_properties_item::Oneof;
    let additional = match v.get("additionalProperties") {
        Some(Value::Bool(b)) => Some(Oneof::Boolean(*b)),
        Some(s @ Value::Object(_)) => Some(Oneof::Schema(Box::new(schema(s)))),
        _ => None,
    };
    let items = match v.get("items") {
        Some(Value::Array(all)) => Some(all.iter().map(schema).collect()),
        Some(one @ Value::Object(_)) => Some(vec![schema(one)]),
        _ => None,
    };
    let types = match v.get("type") {
        Some(Value::String(t)) => Some(vec![t.clone()]),
        Some(ts @ Value::Array(_)) => Some(strings_of(ts)),
        _ => None,
    };
    Schema {
        r#ref: text(v, "$ref"),
        format: text(v, "format"),
        title: text(v, "title"),
        description: text(v, "description"),
        default: v.get("default").map(any),
        unique_items: flag(v, "uniqueItems"),
        required: strings(v, "required"),
        r#enum: list(v, "enum").map(any).collect(),
        additional_properties: additional.map(|a| AdditionalPropertiesItem { oneof: Some(a) }),
        r#type: types.map(|value| TypeItem { value }),
        items: items.map(|schema| ItemsItem { schema }),
        all_of: list(v, "allOf").map(schema).collect(),
        properties: v.get("properties").map(|p| Properties {
            additional_properties: named_schemas(p),
        }),
        read_only: flag(v, "readOnly"),
        vendor_extension: extensions(v),
    }
}

fn named_schemas(v: &Value) -> Vec<NamedSchema> {
    fields(v)
        .map(|(name, s)| NamedSchema {
            name: name.clone(),
            value: Some(schema(s)),
        })
        .collect()
}

/// The `x-` keys of an object, their values as YAML.
fn extensions(v: &Value) -> Vec<NamedAny> {
    v.as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| k.starts_with("x-"))
        .map(|(name, value)| NamedAny {
            name: name.clone(),
            value: Some(any(value)),
        })
        .collect()
}

fn any(v: &Value) -> Any {
    Any {
        yaml: serde_yaml::to_string(v).unwrap_or_default(),
    }
}

/// An object's entries other than its `x-` extensions.
fn fields(v: &Value) -> impl Iterator<Item = (&String, &Value)> {
    v.as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| !k.starts_with("x-"))
}

fn list<'a>(v: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    v.get(key).and_then(Value::as_array).into_iter().flatten()
}

fn text(v: &Value, key: &str) -> String {
    v[key].as_str().unwrap_or_default().to_string()
}

fn flag(v: &Value, key: &str) -> bool {
    v[key].as_bool().unwrap_or_default()
}

fn strings(v: &Value, key: &str) -> Vec<String> {
    v.get(key).map(strings_of).unwrap_or_default()
}

fn strings_of(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded() -> Document {
        Document::decode(body().as_ref()).expect("gnostic Document")
    }

    #[test]
    fn definitions_keep_their_gvk_and_shape() {
        let doc = decoded();
        assert_eq!(doc.swagger, "2.0");
        let defs = doc.definitions.expect("definitions").additional_properties;
        let config_map = defs
            .iter()
            .find(|d| d.name == "io.k8s.api.core.v1.ConfigMap")
            .and_then(|d| d.value.as_ref())
            .expect("ConfigMap");
        let gvk = config_map
            .vendor_extension
            .iter()
            .find(|e| e.name == "x-kubernetes-group-version-kind")
            .and_then(|e| e.value.as_ref())
            .expect("gvk extension");
        let gvk: Value = serde_yaml::from_str(&gvk.yaml).expect("YAML");
        assert_eq!(
            gvk,
            serde_json::json!([{"group": "", "version": "v1", "kind": "ConfigMap"}])
        );
        let props = &config_map
            .properties
            .as_ref()
            .expect("properties")
            .additional_properties;
        let data = props
            .iter()
            .find(|p| p.name == "data")
            .and_then(|p| p.value.as_ref());
        let data = data.expect("data");
        assert_eq!(
            data.r#type.as_ref().map(|t| t.value.clone()),
            Some(vec!["object".to_string()])
        );
        let Some(additional_properties_item::Oneof::Schema(value)) = data
            .additional_properties
            .as_ref()
            .and_then(|a| a.oneof.as_ref())
        else {
            panic!("data is a map: {data:?}");
        };
        assert_eq!(
            value.r#type.as_ref().map(|t| t.value.clone()),
            Some(vec!["string".to_string()])
        );
        let metadata = props
            .iter()
            .find(|p| p.name == "metadata")
            .and_then(|p| p.value.as_ref());
        assert_eq!(
            metadata.map(|m| m.r#ref.as_str()),
            Some("#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")
        );
    }

    #[test]
    fn create_operation_keeps_its_parameters_and_response() {
        let doc = decoded();
        let paths = doc.paths.expect("paths").path;
        let post = paths
            .iter()
            .find(|p| p.name == "/api/v1/namespaces/{namespace}/configmaps")
            .and_then(|p| p.value.as_ref())
            .and_then(|p| p.post.as_ref())
            .expect("POST configmaps");
        assert_eq!(post.operation_id, "createConfigMap");
        let gvk = post
            .vendor_extension
            .iter()
            .find(|e| e.name == "x-kubernetes-group-version-kind")
            .and_then(|e| e.value.as_ref())
            .expect("gvk extension");
        let gvk: Value = serde_yaml::from_str(&gvk.yaml).expect("YAML");
        assert_eq!(gvk["kind"], "ConfigMap");
        let params: Vec<_> = post
            .parameters
            .iter()
            .filter_map(|p| p.parameter.as_ref()?.oneof.as_ref())
            .collect();
        let query = |name: &str| {
            params.iter().any(|p| {
                matches!(p, parameter::Oneof::NonBodyParameter(NonBodyParameter {
                    oneof: Some(non_body_parameter::Oneof::QueryParameterSubSchema(q)) }) if q.name == name)
            })
        };
        assert!(query("fieldValidation"));
        assert!(!query("namespace"), "namespace is a path parameter");
        let body = params.iter().find_map(|p| match p {
            parameter::Oneof::BodyParameter(b) => b.schema.as_ref(),
            _ => None,
        });
        assert_eq!(
            body.map(|s| s.r#ref.as_str()),
            Some("#/definitions/io.k8s.api.core.v1.ConfigMap")
        );
        let ok = post
            .responses
            .as_ref()
            .and_then(|r| r.response_code.iter().find(|c| c.name == "200"))
            .and_then(|c| {
                c.value
                    .as_ref()?
                    .response
                    .as_ref()?
                    .schema
                    .as_ref()?
                    .schema
                    .as_ref()
            });
        assert_eq!(
            ok.map(|s| s.r#ref.as_str()),
            Some("#/definitions/io.k8s.api.core.v1.ConfigMap")
        );
    }
}
