//! Each function's environment as a deployment gives it: `Globals.Function.Environment` and
//! the function's own `Environment` from template.yaml, with `!Ref`, `!Sub`, `!If` and
//! `!GetAtt` resolved against a parameter set (samconfig.toml's local section unless told
//! otherwise) and the names forum-local gives the table and bucket. The template's parameter
//! constraints and `Rules` are checked as CloudFormation checks them, so a parameter set that
//! a deployment would refuse is refused here too.

use std::collections::BTreeMap;

use serde_yaml::Value;

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
            region: shared::aws::LOCAL_REGION.into(),
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
            "Fn::Sub" => {
                let text = match arg {
                    Value::String(s) => s.as_str(),
                    Value::Sequence(items) if items.len() == 1 => items[0].as_str().unwrap_or_default(),
                    _ => {
                        return Err(invalid(
                            "only the one-string form of Fn::Sub is supported locally".into(),
                        ));
                    }
                };
                self.substitute(text)
            }
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

    fn reference(&self, name: &str) -> Result<String, TemplateError> {
        if let Some(value) = self.parameters.get(name) {
            return Ok(value.clone());
        }
        match name {
            "AWS::StackName" => return Ok(self.names.stack_name.clone()),
            "AWS::Region" => return Ok(self.names.region.clone()),
            "AWS::AccountId" => return Ok(self.names.account_id.clone()),
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
            Some(kind) => Err(invalid(format!(
                "forum-local has no local value for !Ref {name} ({kind})"
            ))),
            None => Err(invalid(format!("!Ref {name}: no such parameter or resource"))),
        }
    }

    fn attribute(&self, target: &str) -> Result<String, TemplateError> {
        let resource = target.split('.').next().unwrap_or(target);
        match self.template.resource_types.get(resource).map(String::as_str) {
            Some("AWS::DynamoDB::Table") if target.ends_with(".Arn") => Ok(format!(
                "arn:aws:dynamodb:{}:{}:table/{}",
                self.names.region, self.names.account_id, self.names.table_name
            )),
            _ => Err(invalid(format!("forum-local has no local value for {target}"))),
        }
    }

    /// `Fn::Sub`'s one-string form: `${Name}` and `${Resource.Attribute}`; `${!x}` is a literal.
    fn substitute(&self, text: &str) -> Result<String, TemplateError> {
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
        let mut env = BTreeMap::new();
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
    fn every_secret_samconfig_publishes_is_refused_by_deployed_functions() {
        for name in ["JwtSecret", "CursorSecret"] {
            let value = &local()[name];
            assert!(
                shared::config::PUBLIC_DEVELOPMENT_SECRETS.contains(&value.as_str()),
                "samconfig.toml's {name} must be listed in PUBLIC_DEVELOPMENT_SECRETS"
            );
        }
    }

    #[test]
    fn secrets_reach_only_the_functions_that_use_them() {
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
            let paginates = shared::Route::from_binary(&function.binary).is_some_and(shared::Route::paginates);
            assert_eq!(
                env.contains_key("FORUM_CURSOR_SECRET"),
                paginates,
                "{}",
                function.binary
            );
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
            vec![("JwtSecret", "")],
            vec![("JwtSecret", "too-short")],
            vec![("JwtAlgorithm", "RS256")],
            vec![("JwtAlgorithm", "ES256"), ("JwtPublicKey", "")],
            vec![("CursorSecret", "")],
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
                ("JwtSecret", "")
            ])
            .is_ok()
        );
        assert!(with(&[("AllowedOrigins", "https://forum.example.com,https://m.example.com:8443")]).is_ok());
    }

    #[test]
    fn a_deployment_must_name_its_browser_origins() {
        let template = StackTemplate::parse(BUNDLED_TEMPLATE).unwrap();
        assert!(template.parameters["AllowedOrigins"].default.is_none());
    }
}
