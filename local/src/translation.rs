//! The template CloudFormation receives: template.yaml as SAM's own translator turns it into
//! plain CloudFormation (`local/translated-template.json`, written by
//! `scripts/rehearse_deploy.py --write-translated`, checked by CI to match template.yaml). What
//! API Gateway, Lambda and IAM enforce is decided by it, not by template.yaml's shorthand, so
//! forum-local reads it for the HTTP API's routes and authorizers (the OpenAPI body SAM
//! writes), who may invoke which function (`AWS::Lambda::Permission`), and each function's
//! role (`AWS::IAM::Role`, SAM's additions included).

use std::collections::BTreeMap;

use serde_yaml_ng::Value;
use sha2::{Digest, Sha256};

use crate::template::{HttpRoute, TemplateError};

/// The translation of the bundled template.yaml.
pub const BUNDLED_TRANSLATION: &str = include_str!("../translated-template.json");

/// How to bring the translation up to date (the message of a stale one).
pub const REGENERATE: &str = "~/.cache/forum-ci/sam-cli-1.170.0/bin/python scripts/rehearse_deploy.py \
     --write-translated local/translated-template.json (a venv with aws-sam-cli==1.170.0)";

/// An HTTP API authorizer as API Gateway holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthorizerDef {
    /// Its name (the OpenAPI security scheme); API Gateway's authorizer id locally.
    pub name: String,
    /// The function's logical id.
    pub function: String,
    /// The header it reads the token from (`$request.header.X`), lower case.
    pub identity_header: String,
    /// How long API Gateway caches an answer.
    pub ttl_secs: u64,
}

/// An `AWS::Lambda::Permission`: `principal` may invoke `function` from `source_arn`.
#[derive(Clone, Debug)]
pub struct PermissionDef {
    pub logical_id: String,
    /// The function's logical id.
    pub function: String,
    pub action: String,
    pub principal: String,
    /// Unresolved (a `Fn::Sub`, usually); `None` allows any source.
    pub source_arn: Option<Value>,
}

/// What forum-local reads from the translation.
#[derive(Clone, Debug)]
pub struct Translation {
    /// The HTTP API's routes, as its OpenAPI body declares them.
    pub routes: Vec<HttpRoute>,
    /// The HTTP API's authorizers by name.
    pub authorizers: BTreeMap<String, AuthorizerDef>,
    pub permissions: Vec<PermissionDef>,
    /// Each function's role policies (`AWS::IAM::Role` `Policies`, unresolved: a policy may be
    /// an `Fn::If`), by the function's binary.
    pub role_policies: BTreeMap<String, Vec<Value>>,
    /// Function logical id to binary.
    pub binaries: BTreeMap<String, String>,
    /// The WebSocket API's `$connect` authorizer function (logical id), if it has one.
    pub websocket_authorizer: Option<String>,
}

fn get<'a>(value: &'a Value, key: &str) -> Option<&'a Value> {
    value.as_mapping().and_then(|m| m.get(key))
}

fn str_of<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    get(value, key).and_then(Value::as_str)
}

fn invalid(message: impl Into<String>) -> TemplateError {
    TemplateError::Invalid(format!("translated template: {}", message.into()))
}

/// The logical id a `Ref`, a `Fn::GetAtt` or a `${X.Arn}` in a `Fn::Sub` string names.
fn named_resource(value: &Value) -> Option<String> {
    if let Some(r) = str_of(value, "Ref") {
        return Some(r.to_string());
    }
    match get(value, "Fn::GetAtt") {
        Some(Value::Sequence(parts)) => return parts.first().and_then(Value::as_str).map(str::to_string),
        Some(Value::String(s)) => return s.split('.').next().map(str::to_string),
        _ => {}
    }
    let text = match get(value, "Fn::Sub") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Sequence(parts)) => {
            // `["...${__FunctionArn__}...", {"__FunctionArn__": {"Fn::GetAtt": [...]}}]`
            if let Some(vars) = parts.get(1).and_then(Value::as_mapping) {
                for var in vars.values() {
                    if let Some(id) = named_resource(var) {
                        return Some(id);
                    }
                }
            }
            parts.first().and_then(Value::as_str).unwrap_or_default().to_string()
        }
        _ => return None,
    };
    // The first `${Name}` or `${Name.Attribute}` that is not a pseudo parameter.
    text.split("${")
        .skip(1)
        .filter_map(|rest| rest.split_once('}').map(|(name, _)| name))
        .find(|name| !name.starts_with("AWS::"))
        .map(|name| name.split('.').next().unwrap_or(name).to_string())
}

impl Translation {
    /// Reads `translation` (the JSON `{"template": ..., "nested": {...}}`), refusing it unless
    /// it was made from exactly `source` (template.yaml's text).
    pub fn parse(translation: &str, source: &str) -> Result<Self, TemplateError> {
        let doc: Value = serde_yaml_ng::from_str(translation)?;
        let template = get(&doc, "template").ok_or_else(|| invalid("no `template`"))?;
        let made_from = get(template, "Metadata")
            .and_then(|m| get(m, "ForumLocal"))
            .and_then(|m| str_of(m, "SourceSha256"))
            .unwrap_or_default();
        let digest: String = Sha256::digest(source.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if made_from != digest {
            return Err(TemplateError::Invalid(format!(
                "local/translated-template.json was not made from this template.yaml: run {REGENERATE}"
            )));
        }
        let resources = get(template, "Resources")
            .and_then(Value::as_mapping)
            .ok_or_else(|| invalid("no Resources"))?;
        let of_type = |kind: &'static str| {
            resources
                .iter()
                .filter(move |(_, r)| str_of(r, "Type") == Some(kind))
                .filter_map(|(id, r)| Some((id.as_str()?.to_string(), r)))
        };

        let mut binaries = BTreeMap::new();
        let mut role_of = BTreeMap::new();
        for (id, function) in of_type("AWS::Lambda::Function") {
            let binary = get(function, "Metadata")
                .and_then(|m| get(m, "BuildProperties"))
                .and_then(|b| str_of(b, "Binary"))
                .ok_or_else(|| invalid(format!("{id} has no Metadata.BuildProperties.Binary")))?;
            binaries.insert(id.clone(), binary.to_string());
            if let Some(role) = get(function, "Properties")
                .and_then(|p| get(p, "Role"))
                .and_then(named_resource)
            {
                role_of.insert(role, binary.to_string());
            }
        }
        let mut role_policies = BTreeMap::new();
        for (id, role) in of_type("AWS::IAM::Role") {
            if let Some(binary) = role_of.get(&id) {
                let policies = get(role, "Properties")
                    .and_then(|p| get(p, "Policies"))
                    .and_then(Value::as_sequence)
                    .cloned()
                    .unwrap_or_default();
                role_policies.insert(binary.clone(), policies);
            }
        }

        let mut permissions = Vec::new();
        for (id, permission) in of_type("AWS::Lambda::Permission") {
            let props = get(permission, "Properties").ok_or_else(|| invalid(format!("{id} has no Properties")))?;
            permissions.push(PermissionDef {
                logical_id: id.clone(),
                function: get(props, "FunctionName")
                    .and_then(named_resource)
                    .ok_or_else(|| invalid(format!("{id}: FunctionName names no function")))?,
                action: str_of(props, "Action").unwrap_or_default().to_string(),
                principal: str_of(props, "Principal").unwrap_or_default().to_string(),
                source_arn: get(props, "SourceArn").cloned(),
            });
        }

        let apis: Vec<(String, &Value)> = of_type("AWS::ApiGatewayV2::Api").collect();
        let body = match apis.as_slice() {
            [(_, api)] => get(api, "Properties")
                .and_then(|p| get(p, "Body"))
                .ok_or_else(|| invalid("the HTTP API has no OpenAPI Body"))?,
            other => return Err(invalid(format!("expected one HTTP API, found {}", other.len()))),
        };
        let mut authorizers = BTreeMap::new();
        let schemes = get(body, "components")
            .and_then(|c| get(c, "securitySchemes"))
            .and_then(Value::as_mapping);
        for (name, scheme) in schemes.into_iter().flatten() {
            let Some(name) = name.as_str() else { continue };
            let Some(authorizer) = get(scheme, "x-amazon-apigateway-authorizer") else {
                continue;
            };
            let function = get(authorizer, "authorizerUri")
                .and_then(named_resource)
                .ok_or_else(|| invalid(format!("authorizer {name} names no function")))?;
            let identity_header = get(authorizer, "identitySource")
                .and_then(Value::as_sequence)
                .and_then(|s| s.first())
                .and_then(Value::as_str)
                .and_then(|s| s.strip_prefix("$request.header."))
                .unwrap_or("authorization")
                .to_ascii_lowercase();
            authorizers.insert(
                name.to_string(),
                AuthorizerDef {
                    name: name.to_string(),
                    function,
                    identity_header,
                    ttl_secs: get(authorizer, "authorizerResultTtlInSeconds")
                        .and_then(Value::as_u64)
                        .unwrap_or(300),
                },
            );
        }
        let mut routes = Vec::new();
        let paths = get(body, "paths")
            .and_then(Value::as_mapping)
            .ok_or_else(|| invalid("the HTTP API has no paths"))?;
        for (path, operations) in paths {
            let Some(path) = path.as_str() else { continue };
            for (method, operation) in operations.as_mapping().into_iter().flatten() {
                let Some(method) = method.as_str() else { continue };
                let Some(integration) = get(operation, "x-amazon-apigateway-integration") else {
                    continue;
                };
                let function = get(integration, "uri")
                    .and_then(named_resource)
                    .ok_or_else(|| invalid(format!("{method} {path}: the integration names no function")))?;
                let binary = binaries
                    .get(&function)
                    .cloned()
                    .ok_or_else(|| invalid(format!("{method} {path}: {function} is not a function")))?;
                let authorizer = get(operation, "security")
                    .and_then(Value::as_sequence)
                    .and_then(|s| s.first())
                    .and_then(Value::as_mapping)
                    .and_then(|m| m.keys().next())
                    .and_then(Value::as_str)
                    .filter(|name| *name != "NONE")
                    .map(str::to_string);
                if let Some(name) = &authorizer
                    && !authorizers.contains_key(name)
                {
                    return Err(invalid(format!("{method} {path}: no authorizer named {name}")));
                }
                let method = if method == "x-amazon-apigateway-any-method" {
                    "ANY".to_string()
                } else {
                    method.to_ascii_uppercase()
                };
                routes.push(HttpRoute {
                    method,
                    path: path.to_string(),
                    function,
                    binary,
                    authorizer,
                });
            }
        }

        // The WebSocket API's `$connect` authorizer: the routes stack's `AuthorizerFunctionArn`,
        // when its `$connect` route is authorized (CUSTOM).
        let nested = get(&doc, "nested");
        let connect_authorized = nested
            .and_then(|n| get(n, "WebSocketRoutes"))
            .and_then(|t| get(t, "Resources"))
            .and_then(Value::as_mapping)
            .into_iter()
            .flatten()
            .any(|(_, r)| {
                let props = get(r, "Properties");
                str_of(r, "Type") == Some("AWS::ApiGatewayV2::Route")
                    && props.and_then(|p| str_of(p, "RouteKey")) == Some("$connect")
                    && props.and_then(|p| str_of(p, "AuthorizationType")) == Some("CUSTOM")
            });
        let websocket_authorizer = of_type("AWS::CloudFormation::Stack")
            .filter(|(id, _)| id == "WebSocketRoutes")
            .find_map(|(_, stack)| {
                get(stack, "Properties")
                    .and_then(|p| get(p, "Parameters"))
                    .and_then(|p| get(p, "AuthorizerFunctionArn"))
                    .and_then(named_resource)
            })
            .filter(|_| connect_authorized);

        Ok(Translation {
            routes,
            authorizers,
            permissions,
            role_policies,
            binaries,
            websocket_authorizer,
        })
    }

    /// The permissions that let API Gateway invoke `function` (a logical id).
    pub fn api_gateway_permissions(&self, function: &str) -> impl Iterator<Item = &PermissionDef> {
        let function = function.to_string();
        self.permissions.iter().filter(move |p| {
            p.function == function
                && p.principal == "apigateway.amazonaws.com"
                && p.action.eq_ignore_ascii_case("lambda:InvokeFunction")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::BUNDLED_TEMPLATE;

    #[test]
    fn the_bundled_translation_is_of_the_bundled_template() {
        let t = Translation::parse(BUNDLED_TRANSLATION, BUNDLED_TEMPLATE).unwrap();
        assert!(
            t.routes
                .iter()
                .any(|r| r.route_key() == "GET /api/forum/posts/" && r.binary == "list-posts")
        );
        let default = t.routes.iter().find(|r| r.is_default()).expect("$default");
        assert_eq!(default.binary, "not-found");
        assert_eq!(default.authorizer.as_deref(), Some("JwtAuthorizer"));
        let preflight = t.routes.iter().find(|r| r.method == "OPTIONS").expect("OPTIONS route");
        assert_eq!(
            (preflight.path.as_str(), preflight.authorizer.as_deref()),
            ("/{proxy+}", None)
        );
        assert_eq!(t.authorizers["JwtAuthorizer"].function, "AuthorizerFunction");
        assert_eq!(t.websocket_authorizer.as_deref(), Some("AuthorizerFunction"));
        assert!(t.role_policies.contains_key("list-posts"));
        assert!(
            Translation::parse(BUNDLED_TRANSLATION, &format!("{BUNDLED_TEMPLATE}\n# edited")).is_err(),
            "a translation of another template is refused"
        );
    }
}
