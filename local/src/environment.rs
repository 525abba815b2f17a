//! Each function's environment as a deployment gives it: `Globals.Function.Environment` and
//! the function's own `Environment` from template.yaml, with `!Ref`, `!Sub`, `!If` and
//! `!GetAtt` resolved against a parameter set (samconfig.toml's local section unless told
//! otherwise) and the names forum-local gives the table and bucket. The template's parameter
//! constraints and `Rules` are checked as CloudFormation checks them, so a parameter set that
//! a deployment would refuse is refused here too.

use std::collections::BTreeMap;

use serde_yaml_ng::Value;

use crate::template::{StackTemplate, TemplateError, scalar_string};

/// The repository's samconfig.toml, whose `local_*` sections carry the development parameter set.
pub const BUNDLED_SAMCONFIG: &str = include_str!("../../samconfig.toml");

/// The samconfig.toml section forum-local reads its parameters from: the one
/// `sam local start-api` reads (`local_invoke` and `local_start_lambda` carry the same list).
pub const SAMCONFIG_SECTION: &str = "local_start_api";

/// Template parameter values by name.
pub type Parameters = BTreeMap<String, String>;

/// `parameter_overrides` of `[<env>.<command>.parameters]` in a samconfig.toml: a list of
/// `Key=Value` strings, or one string of them separated by spaces (SAM CLI takes both).
pub fn samconfig_parameters(text: &str, env: &str, command: &str) -> Result<Parameters, TemplateError> {
    let doc: toml::Table = toml::from_str(text).map_err(|e| TemplateError::Invalid(format!("samconfig.toml: {e}")))?;
    let overrides = doc
        .get(env)
        .and_then(|e| e.get(command))
        .and_then(|c| c.get("parameters"))
        .and_then(|p| p.get("parameter_overrides"));
    let items: Vec<String> = match overrides {
        None => Vec::new(),
        Some(toml::Value::String(s)) => s.split_whitespace().map(str::to_string).collect(),
        Some(toml::Value::Array(items)) => items.iter().filter_map(|i| i.as_str().map(str::to_string)).collect(),
        Some(other) => {
            return Err(TemplateError::Invalid(format!(
                "samconfig.toml [{env}.{command}.parameters] parameter_overrides is a {}, not a list",
                other.type_str()
            )));
        }
    };
    items
        .iter()
        .map(|item| {
            item.split_once('=')
                .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
                .ok_or_else(|| TemplateError::Invalid(format!("samconfig.toml: `{item}` is not Key=Value")))
        })
        .collect()
}

/// The id of the stack forum-local stands in for (its `AWS::StackId` ends with it).
pub const LOCAL_STACK_UUID: &str = "0f0c0a1e-0000-4000-8000-00000000f0c0";
/// What the HTTP API's id (`!Ref HttpApi`) is locally.
pub const LOCAL_HTTP_API_ID: &str = "forumlocal";
/// The WebSocket API's id and its authorizer's, locally.
pub const LOCAL_WEBSOCKET_API_ID: &str = "forumlocalws";
pub const LOCAL_WEBSOCKET_AUTHORIZER_ID: &str = "wsauthorizer";

/// The ARN of a secret the template creates (`AWS::SecretsManager::Secret`), locally: the
/// Secrets Manager stand-in holds a random value under it.
pub fn local_secret_arn(names: &LocalNames, logical_id: &str) -> String {
    format!(
        "arn:aws:secretsmanager:{}:{}:secret:{}/{logical_id}-local",
        names.region, names.account_id, names.stack_name
    )
}

/// What stands in for AWS when resolving: pseudo parameters and the physical names of the
/// resources forum-local provides itself.
#[derive(Clone, Debug)]
pub struct LocalNames {
    pub stack_name: String,
    pub region: String,
    pub account_id: String,
    /// The DynamoDB table's name (what `!Ref` of the table resource gives).
    pub table_name: String,
}

impl Default for LocalNames {
    fn default() -> Self {
        LocalNames {
            stack_name: "forum-local".into(),
            region: forum_store::aws::LOCAL_REGION.into(),
            account_id: "000000000000".into(),
            table_name: "forum".into(),
        }
    }
}

/// Resolves values of one template against one parameter set.
pub struct Resolver<'t> {
    template: &'t StackTemplate,
    parameters: Parameters,
    names: LocalNames,
}

fn invalid(message: String) -> TemplateError {
    TemplateError::Invalid(message)
}

/// An intrinsic function as (name, argument), from either the short (`!Ref`) or the long
/// (`{"Ref": ...}`) form.
fn intrinsic(value: &Value) -> Option<(String, &Value)> {
    match value {
        Value::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            let name = tag.trim_start_matches('!');
            let name = if name == "Ref" || name == "Condition" {
                name.to_string()
            } else {
                format!("Fn::{name}")
            };
            Some((name, &tagged.value))
        }
        Value::Mapping(m) if m.len() == 1 => {
            let (k, v) = m.iter().next()?;
            let k = k.as_str()?;
            (k == "Ref" || k == "Condition" || k.starts_with("Fn::")).then(|| (k.to_string(), v))
        }
        _ => None,
    }
}

impl<'t> Resolver<'t> {
    /// Takes the template's defaults, then `parameters` over them; checks every parameter's
    /// constraints and the template's `Rules`, as CloudFormation does before it creates anything.
    pub fn new(template: &'t StackTemplate, parameters: &Parameters, names: LocalNames) -> Result<Self, TemplateError> {
        let mut values = Parameters::new();
        for (name, def) in &template.parameters {
            match parameters.get(name).or(def.default.as_ref()) {
                Some(v) => {
                    def.check(name, v)?;
                    values.insert(name.clone(), v.clone());
                }
                None => {
                    return Err(invalid(format!(
                        "parameter {name} has no value: it has no Default and the parameter set does not give one"
                    )));
                }
            }
        }
        if let Some(unknown) = parameters.keys().find(|k| !template.parameters.contains_key(*k)) {
            return Err(invalid(format!("parameter {unknown} is not declared in the template")));
        }
        let resolver = Resolver {
            template,
            parameters: values,
            names,
        };
        resolver.check_rules()?;
        Ok(resolver)
    }

    pub fn parameter(&self, name: &str) -> Option<&str> {
        self.parameters.get(name).map(String::as_str)
    }

    /// `Rules`: each rule's assertions must hold where its `RuleCondition` does.
    fn check_rules(&self) -> Result<(), TemplateError> {
        for (name, rule) in &self.template.rules {
            let applies = match rule.as_mapping().and_then(|m| m.get("RuleCondition")) {
                Some(condition) => self.condition(condition)?,
                None => true,
            };
            if !applies {
                continue;
            }
            let assertions = rule
                .as_mapping()
                .and_then(|m| m.get("Assertions"))
                .and_then(Value::as_sequence)
                .ok_or_else(|| invalid(format!("rule {name} has no Assertions")))?;
            for assertion in assertions {
                let Some(check) = assertion.as_mapping().and_then(|m| m.get("Assert")) else {
                    return Err(invalid(format!("rule {name}: an assertion without Assert")));
                };
                if !self.condition(check)? {
                    let description = assertion
                        .as_mapping()
                        .and_then(|m| m.get("AssertDescription"))
                        .and_then(Value::as_str)
                        .unwrap_or("an assertion failed");
                    return Err(invalid(format!("rule {name}: {description}")));
                }
            }
        }
        Ok(())
    }

    /// A condition expression: `Fn::Equals`, `Fn::Not`, `Fn::And`, `Fn::Or`, `Fn::Contains`
    /// (Rules) and `Condition` (a named one).
    fn condition(&self, value: &Value) -> Result<bool, TemplateError> {
        let (name, arg) = intrinsic(value).ok_or_else(|| invalid(format!("not a condition: {value:?}")))?;
        let list = || arg.as_sequence().ok_or_else(|| invalid(format!("{name} takes a list")));
        match name.as_str() {
            "Fn::Equals" => match list()?.as_slice() {
                [a, b] => Ok(self.string(a)? == self.string(b)?),
                _ => Err(invalid("Fn::Equals takes two values".into())),
            },
            "Fn::Not" => match list()?.as_slice() {
                [c] => Ok(!self.condition(c)?),
                _ => Err(invalid("Fn::Not takes one condition".into())),
            },
            "Fn::And" => list()?.iter().try_fold(true, |acc, c| Ok(acc && self.condition(c)?)),
            "Fn::Or" => list()?.iter().try_fold(false, |acc, c| Ok(acc || self.condition(c)?)),
            "Fn::Contains" => match list()?.as_slice() {
                [Value::Sequence(items), needle] => {
                    let needle = self.string(needle)?;
                    Ok(items
                        .iter()
                        .map(|i| self.string(i))
                        .collect::<Result<Vec<_>, _>>()?
                        .contains(&needle))
                }
                _ => Err(invalid("Fn::Contains takes a list and a value".into())),
            },
            "Condition" => {
                let id = arg.as_str().ok_or_else(|| invalid("Condition takes a name".into()))?;
                self.named_condition(id)
            }
            other => Err(invalid(format!("{other} is not a condition function"))),
        }
    }

    /// A condition of the template's `Conditions`, by name.
    fn named_condition(&self, id: &str) -> Result<bool, TemplateError> {
        let named = self
            .template
            .conditions
            .get(id)
            .ok_or_else(|| invalid(format!("no condition named {id}")))?;
        self.condition(named)
    }

    /// A value as the string a function's environment receives.
    /// A list: a YAML sequence of values, or a `Ref` to a `CommaDelimitedList` parameter.
    pub fn strings(&self, value: &Value) -> Result<Vec<String>, TemplateError> {
        if let Value::Sequence(items) = value {
            return items.iter().map(|item| self.string(item)).collect();
        }
        let joined = self.string(value)?;
        Ok(joined
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect())
    }

    pub fn string(&self, value: &Value) -> Result<String, TemplateError> {
        if let Some(s) = scalar_string(value) {
            return Ok(s);
        }
        let (name, arg) = intrinsic(value).ok_or_else(|| invalid(format!("cannot resolve {value:?}")))?;
        match name.as_str() {
            "Ref" => self.reference(arg.as_str().ok_or_else(|| invalid("Ref takes a name".into()))?),
            "Fn::Sub" => match arg {
                Value::String(text) => self.substitute(text, &BTreeMap::new()),
                Value::Sequence(items) => match items.as_slice() {
                    [Value::String(text)] => self.substitute(text, &BTreeMap::new()),
                    [Value::String(text), Value::Mapping(vars)] => {
                        let mut values = BTreeMap::new();
                        for (name, value) in vars {
                            let name = name
                                .as_str()
                                .ok_or_else(|| invalid("Fn::Sub variable names are strings".into()))?;
                            values.insert(name.to_string(), self.string(value)?);
                        }
                        self.substitute(text, &values)
                    }
                    _ => Err(invalid("Fn::Sub takes a string, or [string, {variables}]".into())),
                },
                _ => Err(invalid("Fn::Sub takes a string, or [string, {variables}]".into())),
            },
            "Fn::Select" => match arg.as_sequence().map(Vec::as_slice) {
                Some([index, list]) => {
                    let index: usize = self
                        .string(index)?
                        .parse()
                        .map_err(|_| invalid("Fn::Select takes a number".into()))?;
                    self.list(list)?
                        .into_iter()
                        .nth(index)
                        .ok_or_else(|| invalid(format!("Fn::Select: no item {index}")))
                }
                _ => Err(invalid("Fn::Select takes [index, list]".into())),
            },
            "Fn::Join" => match arg.as_sequence().map(Vec::as_slice) {
                Some([Value::String(delimiter), list]) => Ok(self.list(list)?.join(delimiter)),
                _ => Err(invalid("Fn::Join takes [delimiter, list]".into())),
            },
            "Fn::If" => match arg.as_sequence().map(Vec::as_slice) {
                Some([Value::String(condition), then, otherwise]) => self.string(if self.named_condition(condition)? {
                    then
                } else {
                    otherwise
                }),
                _ => Err(invalid("Fn::If takes [condition, then, else]".into())),
            },
            "Fn::GetAtt" => {
                let target = match arg {
                    Value::String(s) => s.clone(),
                    Value::Sequence(parts) => parts.iter().filter_map(Value::as_str).collect::<Vec<_>>().join("."),
                    _ => String::new(),
                };
                self.attribute(&target)
            }
            other => Err(invalid(format!("forum-local cannot resolve {other}"))),
        }
    }

    /// `value` with an `Fn::If` at its top chosen (recursively) by its condition; `None` for
    /// `AWS::NoValue`, as CloudFormation drops it.
    pub fn choose(&self, value: &Value) -> Result<Option<Value>, TemplateError> {
        match intrinsic(value) {
            Some((name, arg)) if name == "Fn::If" => match arg.as_sequence().map(Vec::as_slice) {
                Some([Value::String(condition), then, otherwise]) => self.choose(if self.named_condition(condition)? {
                    then
                } else {
                    otherwise
                }),
                _ => Err(invalid("Fn::If takes [condition, then, else]".into())),
            },
            Some((name, arg)) if name == "Ref" && arg.as_str() == Some("AWS::NoValue") => Ok(None),
            _ => Ok(Some(value.clone())),
        }
    }

    /// The ARN of a secret a function reads: a parameter's value (none when empty), or a
    /// secret the template creates (none when its condition does not hold).
    pub fn secret_arn(&self, name: &str) -> Option<String> {
        if let Some(value) = self.parameters.get(name) {
            return (!value.is_empty()).then(|| value.clone());
        }
        if self.template.resource_types.get(name).map(String::as_str) != Some("AWS::SecretsManager::Secret") {
            return None;
        }
        match self.template.resource_conditions.get(name) {
            Some(condition) if !self.named_condition(condition).unwrap_or(false) => None,
            _ => Some(local_secret_arn(&self.names, name)),
        }
    }

    /// The secrets the template creates (by logical id) with their local ARNs, where their
    /// conditions hold.
    pub fn created_secrets(&self) -> Vec<(String, String)> {
        self.template
            .resource_types
            .iter()
            .filter(|(_, kind)| kind.as_str() == "AWS::SecretsManager::Secret")
            .filter_map(|(id, _)| Some((id.clone(), self.secret_arn(id)?)))
            .collect()
    }

    /// A list: a YAML sequence, `Fn::Split`, or a `CommaDelimitedList` parameter.
    fn list(&self, value: &Value) -> Result<Vec<String>, TemplateError> {
        if let Some(("Fn::Split", arg)) = intrinsic(value).as_ref().map(|(n, a)| (n.as_str(), *a)) {
            return match arg.as_sequence().map(Vec::as_slice) {
                Some([Value::String(delimiter), text]) => Ok(self
                    .string(text)?
                    .split(delimiter.as_str())
                    .map(str::to_string)
                    .collect()),
                _ => Err(invalid("Fn::Split takes [delimiter, string]".into())),
            };
        }
        self.strings(value)
    }

    fn reference(&self, name: &str) -> Result<String, TemplateError> {
        if let Some(value) = self.parameters.get(name) {
            return Ok(value.clone());
        }
        match name {
            "AWS::StackName" => return Ok(self.names.stack_name.clone()),
            "AWS::Region" => return Ok(self.names.region.clone()),
            "AWS::AccountId" => return Ok(self.names.account_id.clone()),
            "AWS::StackId" => {
                return Ok(format!(
                    "arn:aws:cloudformation:{}:{}:stack/{}/{}",
                    self.names.region, self.names.account_id, self.names.stack_name, LOCAL_STACK_UUID
                ));
            }
            "AWS::URLSuffix" => return Ok("amazonaws.com".into()),
            "AWS::Partition" => return Ok("aws".into()),
            _ => {}
        }
        match self.template.resource_types.get(name).map(String::as_str) {
            Some("AWS::DynamoDB::Table") => Ok(self.names.table_name.clone()),
            Some("AWS::S3::Bucket") => {
                let bucket_name = self
                    .template
                    .bucket_names
                    .get(name)
                    .ok_or_else(|| invalid(format!("bucket {name} has no BucketName to resolve locally")))?;
                self.string(bucket_name)
            }
            Some("AWS::SecretsManager::Secret") => Ok(local_secret_arn(&self.names, name)),
            Some("AWS::Serverless::HttpApi" | "AWS::ApiGatewayV2::Api") => Ok(LOCAL_HTTP_API_ID.to_string()),
            Some("AWS::Serverless::Function" | "AWS::Lambda::Function") => Ok(name.to_string()),
            Some(kind) => Err(invalid(format!(
                "forum-local has no local value for !Ref {name} ({kind})"
            ))),
            None => Err(invalid(format!("!Ref {name}: no such parameter or resource"))),
        }
    }

    fn attribute(&self, target: &str) -> Result<String, TemplateError> {
        let resource = target.split('.').next().unwrap_or(target);
        let (region, account) = (&self.names.region, &self.names.account_id);
        match (self.template.resource_types.get(resource).map(String::as_str), target) {
            (Some("AWS::DynamoDB::Table"), _) if target.ends_with(".Arn") => Ok(format!(
                "arn:aws:dynamodb:{region}:{account}:table/{}",
                self.names.table_name
            )),
            (Some("AWS::DynamoDB::Table"), _) if target.ends_with(".StreamArn") => Ok(format!(
                "arn:aws:dynamodb:{region}:{account}:table/{}/stream/local",
                self.names.table_name
            )),
            (Some("AWS::SQS::Queue"), _) if target.ends_with(".Arn") => {
                Ok(format!("arn:aws:sqs:{region}:{account}:{resource}"))
            }
            (Some("AWS::Serverless::Function" | "AWS::Lambda::Function"), _) if target.ends_with(".Arn") => {
                Ok(format!("arn:aws:lambda:{region}:{account}:function:{resource}"))
            }
            (Some("AWS::Serverless::Application" | "AWS::CloudFormation::Stack"), "WebSocketApi.Outputs.ApiId") => {
                Ok(LOCAL_WEBSOCKET_API_ID.to_string())
            }
            (
                Some("AWS::Serverless::Application" | "AWS::CloudFormation::Stack"),
                "WebSocketRoutes.Outputs.AuthorizerId",
            ) => Ok(LOCAL_WEBSOCKET_AUTHORIZER_ID.to_string()),
            _ => Err(invalid(format!("forum-local has no local value for {target}"))),
        }
    }

    /// `Fn::Sub`'s one-string form: `${Name}` and `${Resource.Attribute}`; `${!x}` is a literal.
    fn substitute(&self, text: &str, variables: &BTreeMap<String, String>) -> Result<String, TemplateError> {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| invalid(format!("unclosed ${{ in `{text}`")))?;
            let name = &after[..end];
            if let Some(literal) = name.strip_prefix('!') {
                out.push_str("${");
                out.push_str(literal);
                out.push('}');
            } else if let Some(value) = variables.get(name) {
                out.push_str(value);
            } else if name.contains('.') {
                out.push_str(&self.attribute(name)?);
            } else {
                out.push_str(&self.reference(name)?);
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    /// The environment of the function built as `binary`: its variables resolved, then
    /// `overrides` (the endpoints that point at local services) put over them. A variable
    /// that cannot be resolved locally is an error unless it is overridden.
    pub fn function_environment(
        &self,
        binary: &str,
        overrides: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, TemplateError> {
        let function = self
            .template
            .functions
            .iter()
            .find(|f| f.binary == binary)
            .ok_or_else(|| invalid(format!("no function builds binary `{binary}`")))?;
        // What Lambda itself sets that the function reads: its memory (the decode budget).
        let mut env = BTreeMap::from([(
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE".to_string(),
            function.memory_mb.to_string(),
        )]);
        for (name, value) in &function.environment {
            let resolved = match overrides.get(name) {
                Some(v) => v.clone(),
                None => self
                    .string(value)
                    .map_err(|e| invalid(format!("{}: {name}: {e}", function.logical_id)))?,
            };
            env.insert(name.clone(), resolved);
        }
        Ok(env)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::BUNDLED_TEMPLATE;

    fn local() -> Parameters {
        samconfig_parameters(BUNDLED_SAMCONFIG, "default", SAMCONFIG_SECTION).unwrap()
    }

    #[test]
    fn the_local_sections_of_samconfig_carry_one_parameter_set() {
        let api = local();
        assert_eq!(api.get("JwtAlgorithm").map(String::as_str), Some("HS256"));
        for command in ["local_invoke", "local_start_lambda"] {
            assert_eq!(
                samconfig_parameters(BUNDLED_SAMCONFIG, "default", command).unwrap(),
                api,
                "{command}"
            );
        }
    }

    #[test]
    fn every_secret_samconfig_names_holds_a_value_deployed_functions_refuse() {
        for name in ["JwtSecretArn", "CursorSecretArn"] {
            let arn = &local()[name];
            let value = crate::secrets_local::development_value(arn)
                .unwrap_or_else(|| panic!("samconfig.toml's {name} must name a development secret"));
            assert!(
                forum_api::config::PUBLIC_DEVELOPMENT_SECRETS.contains(&value),
                "{name}'s value must be listed in PUBLIC_DEVELOPMENT_SECRETS"
            );
        }
    }

    #[test]
    fn secrets_reach_only_the_functions_that_use_them_and_only_by_name() {
        let template = StackTemplate::parse(BUNDLED_TEMPLATE).unwrap();
        let resolver = Resolver::new(&template, &local(), LocalNames::default()).unwrap();
        let overrides: BTreeMap<String, String> = [
            ("MEDIA_BASE_URL", "http://127.0.0.1:3000"),
            ("WS_ENDPOINT", "http://127.0.0.1:3000"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for function in &template.functions {
            let env = resolver.function_environment(&function.binary, &overrides).unwrap();
            let jwt = env.keys().any(|k| k.starts_with("FORUM_JWT_"));
            assert_eq!(jwt, function.binary == "authorizer", "{}: {env:?}", function.binary);
            let paginates = forum_api::Route::from_binary(&function.binary).is_some_and(forum_api::Route::paginates);
            assert_eq!(
                env.contains_key("FORUM_CURSOR_SECRET_ARN"),
                paginates,
                "{}",
                function.binary
            );
            for value in forum_api::config::PUBLIC_DEVELOPMENT_SECRETS {
                assert!(
                    !env.values().any(|v| v == value),
                    "{}: a secret's value",
                    function.binary
                );
            }
            if function.binary != "authorizer" {
                assert_eq!(env["TABLE_NAME"], "forum", "{}", function.binary);
            }
        }
    }

    #[test]
    fn parameter_sets_a_deployment_would_refuse_are_refused() {
        let template = StackTemplate::parse(BUNDLED_TEMPLATE).unwrap();
        let with = |pairs: &[(&str, &str)]| {
            let mut p = local();
            for (k, v) in pairs {
                p.insert(k.to_string(), v.to_string());
            }
            Resolver::new(&template, &p, LocalNames::default()).map(|_| ())
        };
        assert!(with(&[]).is_ok());
        let refused = [
            vec![("JwtSecretArn", "")],
            vec![("JwtSecretArn", "forum/jwt")],
            vec![("JwtAlgorithm", "RS256")],
            vec![("JwtAlgorithm", "ES256"), ("JwtSecretArn", ""), ("JwtPublicKey", "")],
            vec![
                ("JwtAlgorithm", "RS256"),
                ("JwtSecretArn", ""),
                ("JwtJwksUrl", "http://issuer/jwks"),
            ],
            vec![
                ("JwtAlgorithm", "RS256"),
                ("JwtSecretArn", ""),
                ("JwtJwksUrl", "https://issuer/jwks"),
                ("JwtPublicKey", "{}"),
            ],
            vec![("CursorSecretArn", "not-an-arn")],
            vec![("JwtAlgorithm", "PS256")],
            vec![("Unknown", "x")],
            // Origins: exact, https (plain http only for this machine), never a wildcard.
            vec![("AllowedOrigins", "*")],
            vec![("AllowedOrigins", "https://forum.example.com,*")],
            vec![("AllowedOrigins", "http://forum.example.com")],
            vec![("AllowedOrigins", "https://forum.example.com/app")],
            vec![("AllowedOrigins", "https://*.example.com")],
            vec![("AllowedOrigins", "")],
        ];
        for pairs in refused {
            assert!(with(&pairs).is_err(), "{pairs:?} was accepted");
        }
        assert!(
            with(&[
                ("JwtAlgorithm", "RS256"),
                ("JwtPublicKey", "{\"keys\":[]}"),
                ("JwtSecretArn", "")
            ])
            .is_ok()
        );
        assert!(
            with(&[
                ("JwtAlgorithm", "RS256"),
                ("JwtJwksUrl", "https://issuer.example/.well-known/jwks.json"),
                ("JwtSecretArn", "")
            ])
            .is_ok()
        );
        // No cursor key named: the stack creates one.
        assert!(with(&[("CursorSecretArn", "")]).is_ok());
        assert!(with(&[("AllowedOrigins", "https://forum.example.com,https://m.example.com:8443")]).is_ok());
    }

    #[test]
    fn a_deployment_must_name_its_browser_origins() {
        let template = StackTemplate::parse(BUNDLED_TEMPLATE).unwrap();
        assert!(template.parameters["AllowedOrigins"].default.is_none());
    }
}
