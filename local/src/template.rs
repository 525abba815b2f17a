//! Reads `template.yaml`: its parameters and rules, each function's environment, the table,
//! the CORS rules, the media headers and the stream filters, so the local stack stores and
//! answers exactly what the deployed one does. Routes, authorizers, invoke permissions and
//! roles are read from SAM's translation of it ([`crate::translation`]).

use std::collections::BTreeMap;

use serde_yaml_ng::Value;

/// The compiled-in template (the workspace's `template.yaml`); `--template` reads another.
pub const BUNDLED_TEMPLATE: &str = include_str!("../../template.yaml");

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("template.yaml is not valid YAML: {0}")]
    Yaml(#[from] serde_yaml_ng::Error),
    #[error("template.yaml: {0}")]
    Invalid(String),
}

/// A route of the HTTP API: method (or `ANY`) and path, or the `$default` route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpRoute {
    /// `GET`, `POST`, ... or `ANY` (the `$default` route's).
    pub method: String,
    /// Path template such as `/api/forum/posts/{id}/` or `/{proxy+}`; `$default` for the
    /// catch-all.
    pub path: String,
    /// The function's logical id in the template.
    pub function: String,
    /// The Rust binary that implements it (`Metadata.BuildProperties.Binary`).
    pub binary: String,
    /// The authorizer that runs first (its name), if any.
    pub authorizer: Option<String>,
}

impl HttpRoute {
    pub fn is_default(&self) -> bool {
        self.path == "$default"
    }

    /// API Gateway's route key, e.g. `GET /api/forum/posts/`.
    pub fn route_key(&self) -> String {
        if self.is_default() {
            "$default".to_string()
        } else {
            format!("{} {}", self.method, self.path)
        }
    }
}

/// A function in the template.
#[derive(Clone, Debug, PartialEq)]
pub struct FunctionDef {
    pub logical_id: String,
    pub binary: String,
    /// `Globals.Function.Environment.Variables` with the function's own over them, unresolved.
    pub environment: BTreeMap<String, Value>,
    /// `MemorySize` (the function's, else `Globals.Function`'s, else Lambda's default 128), which
    /// Lambda gives the function as `AWS_LAMBDA_FUNCTION_MEMORY_SIZE`.
    pub memory_mb: u64,
}

/// A template parameter's default and the constraints CloudFormation checks a value against.
#[derive(Clone, Debug, Default)]
pub struct ParameterDef {
    pub kind: String,
    pub default: Option<String>,
    pub allowed_values: Option<Vec<String>>,
    pub allowed_pattern: Option<String>,
    pub min_length: Option<usize>,
    pub max_length: Option<usize>,
    pub min_value: Option<f64>,
    pub max_value: Option<f64>,
}

impl ParameterDef {
    /// Checks `value` as CloudFormation would before creating or updating the stack.
    pub fn check(&self, name: &str, value: &str) -> Result<(), TemplateError> {
        let refuse = |why: String| Err(TemplateError::Invalid(format!("parameter {name}: {why}")));
        if let Some(allowed) = &self.allowed_values
            && !allowed.iter().any(|a| a == value)
        {
            return refuse(format!("`{value}` is not one of {allowed:?}"));
        }
        let chars = value.chars().count();
        if self.min_length.is_some_and(|min| chars < min) || self.max_length.is_some_and(|max| chars > max) {
            return refuse(format!("{chars} characters is outside its length constraints"));
        }
        if let Some(pattern) = &self.allowed_pattern {
            // CloudFormation matches the whole value against the pattern; for a list, each
            // of its values.
            let whole = regex::Regex::new(&format!("^(?:{pattern})$"))
                .map_err(|e| TemplateError::Invalid(format!("parameter {name}: AllowedPattern: {e}")))?;
            let values: Vec<&str> = if self.kind == "CommaDelimitedList" {
                value.split(',').map(str::trim).collect()
            } else {
                vec![value]
            };
            if let Some(bad) = values.iter().find(|v| !whole.is_match(v)) {
                return refuse(format!("`{bad}` does not match its AllowedPattern {pattern}"));
            }
        }
        if self.kind == "Number" {
            let number: f64 = value
                .parse()
                .map_err(|_| TemplateError::Invalid(format!("parameter {name}: `{value}` is not a number")))?;
            if self.min_value.is_some_and(|min| number < min) {
                return refuse(format!("{value} is below its MinValue"));
            }
            if self.max_value.is_some_and(|max| number > max) {
                return refuse(format!("{value} is above its MaxValue"));
            }
        }
        Ok(())
    }
}

/// What the local stack needs from the template.
#[derive(Clone, Debug)]
pub struct StackTemplate {
    pub functions: Vec<FunctionDef>,
    /// The `AWS::DynamoDB::Table` resource's `Properties`, as JSON.
    pub table: serde_json::Value,
    pub parameters: BTreeMap<String, ParameterDef>,
    /// `Conditions` and `Rules`, unresolved.
    pub conditions: BTreeMap<String, Value>,
    pub rules: BTreeMap<String, Value>,
    /// Every resource's type by logical id.
    pub resource_types: BTreeMap<String, String>,
    /// The `Condition` of each resource that has one.
    pub resource_conditions: BTreeMap<String, String>,
    /// Each bucket's `BucketName` property, unresolved.
    pub bucket_names: BTreeMap<String, Value>,
    /// The HTTP API's `CorsConfiguration`, unresolved (none: no CORS answers).
    pub cors: Option<Value>,
    /// The media bucket's `CorsConfiguration.CorsRules`, unresolved (browsers PUT presigned
    /// uploads to it).
    pub bucket_cors_rules: Option<Value>,
    /// The headers the media distribution's `ResponseHeadersPolicy` adds to every answer.
    pub media_headers: Vec<(String, String)>,
    /// The table stream's event source mapping: `FilterCriteria` patterns (JSON), none
    /// meaning every record is delivered.
    pub stream_filters: Vec<serde_json::Value>,
}

/// Lambda's default quota of filters per event source mapping, and a pattern's longest.
const MAX_STREAM_FILTERS: usize = 5;
const MAX_FILTER_PATTERN_CHARS: usize = 4096;

/// The `FilterCriteria` patterns of every `DynamoDB` event in the template's functions.
fn stream_filters(functions: &[(String, &Value)]) -> Result<Vec<serde_json::Value>, TemplateError> {
    let mut patterns = Vec::new();
    for (id, resource) in functions {
        let events = get(resource, "Properties")
            .and_then(|p| get(p, "Events"))
            .and_then(Value::as_mapping);
        for event in events.into_iter().flat_map(|m| m.values()) {
            if str_of(event, "Type") != Some("DynamoDB") {
                continue;
            }
            let filters = get(event, "Properties")
                .and_then(|p| get(p, "FilterCriteria"))
                .and_then(|f| get(f, "Filters"))
                .and_then(Value::as_sequence);
            // Lambda refuses the mapping past its quota (5 filters, 4096 characters each).
            let filters: Vec<&Value> = filters.into_iter().flatten().collect();
            if filters.len() > MAX_STREAM_FILTERS {
                return Err(TemplateError::Invalid(format!(
                    "{id}: {} stream filters; Lambda allows {MAX_STREAM_FILTERS} per event source mapping",
                    filters.len()
                )));
            }
            for filter in filters {
                let text = str_of(filter, "Pattern")
                    .ok_or_else(|| TemplateError::Invalid(format!("{id}: a stream filter without a Pattern string")))?;
                if text.len() > MAX_FILTER_PATTERN_CHARS {
                    return Err(TemplateError::Invalid(format!(
                        "{id}: a stream filter pattern of {} characters; Lambda allows {MAX_FILTER_PATTERN_CHARS}",
                        text.len()
                    )));
                }
                patterns.push(
                    serde_json::from_str(text)
                        .map_err(|e| TemplateError::Invalid(format!("{id}: stream filter pattern: {e}")))?,
                );
            }
        }
    }
    Ok(patterns)
}

/// The headers a CloudFront `ResponseHeadersPolicyConfig` adds, as CloudFront writes them.
fn response_headers(config: Option<&Value>) -> Vec<(String, String)> {
    let Some(config) = config else { return Vec::new() };
    let mut headers = Vec::new();
    if let Some(security) = get(config, "SecurityHeadersConfig") {
        if get(security, "ContentTypeOptions").is_some() {
            headers.push(("x-content-type-options".to_string(), "nosniff".to_string()));
        }
        if let Some(csp) = get(security, "ContentSecurityPolicy").and_then(|c| str_of(c, "ContentSecurityPolicy")) {
            headers.push(("content-security-policy".to_string(), csp.to_string()));
        }
        if let Some(frame) = get(security, "FrameOptions").and_then(|f| str_of(f, "FrameOption")) {
            headers.push(("x-frame-options".to_string(), frame.to_string()));
        }
        if let Some(referrer) = get(security, "ReferrerPolicy").and_then(|r| str_of(r, "ReferrerPolicy")) {
            headers.push(("referrer-policy".to_string(), referrer.to_string()));
        }
        if let Some(hsts) = get(security, "StrictTransportSecurity") {
            let mut value = format!(
                "max-age={}",
                get(hsts, "AccessControlMaxAgeSec")
                    .and_then(scalar_string)
                    .unwrap_or_default()
            );
            if get(hsts, "IncludeSubdomains").and_then(Value::as_bool) == Some(true) {
                value.push_str("; includeSubDomains");
            }
            if get(hsts, "Preload").and_then(Value::as_bool) == Some(true) {
                value.push_str("; preload");
            }
            headers.push(("strict-transport-security".to_string(), value));
        }
    }
    let custom = get(config, "CustomHeadersConfig")
        .and_then(|c| get(c, "Items"))
        .and_then(Value::as_sequence);
    for item in custom.into_iter().flatten() {
        if let (Some(name), Some(value)) = (str_of(item, "Header"), get(item, "Value").and_then(scalar_string)) {
            headers.push((name.to_ascii_lowercase(), value));
        }
    }
    headers
}

/// A YAML scalar as CloudFormation passes it on: strings as they are, numbers and booleans
/// written out.
pub(crate) fn scalar_string(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn named_values(doc: &Value, key: &str) -> BTreeMap<String, Value> {
    get(doc, key).map(named_map).unwrap_or_default().into_iter().collect()
}

fn environment_of(value: Option<&Value>) -> BTreeMap<String, Value> {
    value
        .and_then(|v| get(v, "Environment"))
        .and_then(|e| get(e, "Variables"))
        .map(|vars| named_map(vars).into_iter().collect())
        .unwrap_or_default()
}

fn named_map(value: &Value) -> Vec<(String, Value)> {
    value
        .as_mapping()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.as_str()?.to_string(), v.clone())))
        .collect()
}

fn parameter_def(value: &Value) -> ParameterDef {
    let number = |key: &str| get(value, key).and_then(Value::as_f64);
    ParameterDef {
        kind: str_of(value, "Type").unwrap_or("String").to_string(),
        default: get(value, "Default").and_then(scalar_string),
        allowed_values: get(value, "AllowedValues")
            .and_then(Value::as_sequence)
            .map(|v| v.iter().filter_map(scalar_string).collect()),
        allowed_pattern: str_of(value, "AllowedPattern").map(str::to_string),
        min_length: number("MinLength").map(|n| n as usize),
        max_length: number("MaxLength").map(|n| n as usize),
        min_value: number("MinValue"),
        max_value: number("MaxValue"),
    }
}

fn get<'a>(value: &'a Value, key: &str) -> Option<&'a Value> {
    value.as_mapping().and_then(|m| m.get(key))
}

fn str_of<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    get(value, key).and_then(Value::as_str)
}

/// Turns YAML (with CloudFormation tags) into JSON, dropping tags that local code never needs.
fn to_json(value: &Value) -> serde_json::Value {
    match value {
        Value::Null => serde_json::Value::Null,
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::Number(n) => serde_json::to_value(n).unwrap_or(serde_json::Value::Null),
        Value::String(s) => serde_json::Value::String(s.clone()),
        Value::Sequence(items) => serde_json::Value::Array(items.iter().map(to_json).collect()),
        Value::Mapping(m) => serde_json::Value::Object(
            m.iter()
                .filter_map(|(k, v)| Some((k.as_str()?.to_string(), to_json(v))))
                .collect(),
        ),
        Value::Tagged(tagged) => to_json(&tagged.value),
    }
}

impl StackTemplate {
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let doc: Value = serde_yaml_ng::from_str(text)?;
        let resources = get(&doc, "Resources")
            .and_then(Value::as_mapping)
            .ok_or_else(|| TemplateError::Invalid("no Resources".into()))?;
        let mut by_type: BTreeMap<&str, Vec<(String, &Value)>> = BTreeMap::new();
        for (id, resource) in resources {
            let (Some(id), Some(kind)) = (id.as_str(), str_of(resource, "Type")) else {
                continue;
            };
            by_type.entry(kind).or_default().push((id.to_string(), resource));
        }

        let globals = get(&doc, "Globals").and_then(|g| get(g, "Function"));
        let mut functions = Vec::new();
        for (id, resource) in by_type.get("AWS::Serverless::Function").into_iter().flatten() {
            let binary = get(resource, "Metadata")
                .and_then(|m| get(m, "BuildProperties"))
                .and_then(|b| str_of(b, "Binary"))
                .ok_or_else(|| TemplateError::Invalid(format!("{id} has no Metadata.BuildProperties.Binary")))?;
            let mut environment = environment_of(globals);
            environment.extend(environment_of(get(resource, "Properties")));
            let memory_mb = get(resource, "Properties")
                .and_then(|p| get(p, "MemorySize"))
                .or_else(|| globals.and_then(|g| get(g, "MemorySize")))
                .and_then(Value::as_u64)
                .unwrap_or(128);
            functions.push(FunctionDef {
                logical_id: id.clone(),
                binary: binary.to_string(),
                environment,
                memory_mb,
            });
        }

        let apis = by_type.get("AWS::Serverless::HttpApi").cloned().unwrap_or_default();
        let api = match apis.as_slice() {
            [one] => one.1,
            other => {
                return Err(TemplateError::Invalid(format!(
                    "expected one HttpApi, found {}",
                    other.len()
                )));
            }
        };

        let tables = by_type.get("AWS::DynamoDB::Table").cloned().unwrap_or_default();
        let table = match tables.as_slice() {
            [(_, resource)] => to_json(get(resource, "Properties").unwrap_or(&Value::Null)),
            other => {
                return Err(TemplateError::Invalid(format!(
                    "expected one DynamoDB table, found {}",
                    other.len()
                )));
            }
        };
        let resource_conditions = resources
            .iter()
            .filter_map(|(id, r)| Some((id.as_str()?.to_string(), str_of(r, "Condition")?.to_string())))
            .collect();
        let resource_types = by_type
            .iter()
            .flat_map(|(kind, items)| items.iter().map(|(id, _)| (id.clone(), kind.to_string())))
            .collect();
        let bucket_names = by_type
            .get("AWS::S3::Bucket")
            .into_iter()
            .flatten()
            .filter_map(|(id, r)| {
                Some((
                    id.clone(),
                    get(r, "Properties").and_then(|p| get(p, "BucketName"))?.clone(),
                ))
            })
            .collect();
        Ok(StackTemplate {
            functions,
            table,
            parameters: named_values(&doc, "Parameters")
                .iter()
                .map(|(k, v)| (k.clone(), parameter_def(v)))
                .collect(),
            conditions: named_values(&doc, "Conditions"),
            rules: named_values(&doc, "Rules"),
            resource_types,
            resource_conditions,
            bucket_names,
            cors: get(api, "Properties")
                .and_then(|p| get(p, "CorsConfiguration"))
                .cloned(),
            bucket_cors_rules: by_type
                .get("AWS::S3::Bucket")
                .into_iter()
                .flatten()
                .find_map(|(_, r)| {
                    get(r, "Properties")
                        .and_then(|p| get(p, "CorsConfiguration"))
                        .and_then(|c| get(c, "CorsRules"))
                })
                .cloned(),
            stream_filters: stream_filters(
                by_type
                    .get("AWS::Serverless::Function")
                    .map(Vec::as_slice)
                    .unwrap_or_default(),
            )?,
            media_headers: response_headers(
                by_type
                    .get("AWS::CloudFront::ResponseHeadersPolicy")
                    .and_then(|policies| policies.first())
                    .and_then(|(_, policy)| get(policy, "Properties"))
                    .and_then(|p| get(p, "ResponseHeadersPolicyConfig")),
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_template_parses() {
        let t = StackTemplate::parse(BUNDLED_TEMPLATE).unwrap();
        assert!(t.functions.iter().any(|f| f.binary == "authorizer"));
        assert_eq!(t.table["StreamSpecification"]["StreamViewType"], "NEW_AND_OLD_IMAGES");
    }

    #[test]
    fn more_stream_filters_than_lambda_allows_are_refused() {
        let first = "              Filters:\n";
        assert!(BUNDLED_TEMPLATE.contains(first));
        let extra: String = (0..2)
            .map(|i| format!("                - Pattern: '{{\"eventName\": [\"X{i}\"]}}'\n"))
            .collect();
        let six = BUNDLED_TEMPLATE.replacen(first, &format!("{first}{extra}"), 1);
        let refused = StackTemplate::parse(&six)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(refused.contains("6 stream filters"), "{refused}");
    }
}
