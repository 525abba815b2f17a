//! Each function may call AWS only as its role allows: forum-local checks every call a
//! function's SDK clients make (DynamoDB, S3, Secrets Manager, `@connections` by method)
//! against the role SAM's translation gives it, before the call is sent, so a missing
//! permission fails the tests here instead of a request in AWS. Every call must also be
//! declared in `local/aws-calls.json`, the list CI's deploy rehearsal checks against the role
//! CloudFormation would create, so no call can escape that check either. (Actions and
//! resources are checked, `Deny` included; conditions are not.)

use std::collections::BTreeMap;
use std::sync::Arc;

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{BeforeSerializationInterceptorContextRef, Input};
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use serde_yaml_ng::Value;

use crate::environment::Resolver;
use crate::template::TemplateError;

/// The bundled manifest of every function's AWS calls.
pub const BUNDLED_CALLS: &str = include_str!("../aws-calls.json");

/// `*` in IAM patterns matches any run of characters.
pub fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, rest)) => {
            let Some(after) = text.strip_prefix(head) else {
                return false;
            };
            (0..=after.len()).any(|i| after.is_char_boundary(i) && glob(rest, &after[i..]))
        }
    }
}

/// One statement of a role's policy, resolved.
#[derive(Clone, Debug)]
struct Statement {
    allow: bool,
    actions: Vec<String>,
    resources: Vec<String>,
}

impl Statement {
    fn covers(&self, action: &str, resource: &str) -> bool {
        self.actions
            .iter()
            .any(|a| glob(&a.to_ascii_lowercase(), &action.to_ascii_lowercase()))
            && self.resources.iter().any(|r| glob(r, resource))
    }
}

/// What the ARNs of the stack's resources are locally, to place a call (and a manifest entry).
#[derive(Clone, Debug)]
pub struct LocalArns {
    /// `arn:aws:dynamodb:<region>:<account>:table/<name>`.
    pub table: String,
    pub bucket: String,
    /// `arn:aws:execute-api:<region>:<account>:<ws api id>/<stage>`.
    pub connections: String,
}

/// What one function's role allows, with resources resolved to ARNs, and what the manifest
/// says it calls.
#[derive(Debug)]
pub struct Grants {
    binary: String,
    statements: Vec<Statement>,
    /// (action, resource ARN pattern) from `local/aws-calls.json`.
    declared: Vec<(String, String)>,
}

fn list(value: Option<&Value>) -> Vec<Value> {
    match value {
        Some(Value::Sequence(items)) => items.clone(),
        Some(one) => vec![one.clone()],
        None => Vec::new(),
    }
}

fn get<'a>(value: &'a Value, key: &str) -> Option<&'a Value> {
    value.as_mapping().and_then(|m| m.get(key))
}

fn is_no_value(value: &Value) -> bool {
    get(value, "Ref").and_then(Value::as_str) == Some("AWS::NoValue")
}

impl Grants {
    /// The grants of `binary`'s role: its policies from the translation (each maybe an
    /// `Fn::If`, resolved with this parameter set), and its manifest entries.
    pub fn resolve(
        binary: &str,
        policies: &[Value],
        resolver: &Resolver<'_>,
        manifest: &Manifest,
        arns: &LocalArns,
    ) -> Result<Self, TemplateError> {
        let mut statements = Vec::new();
        for policy in policies {
            let Some(policy) = resolver.choose(policy)? else {
                continue;
            };
            let document = get(&policy, "PolicyDocument")
                .ok_or_else(|| TemplateError::Invalid(format!("{binary}: a role policy without a PolicyDocument")))?;
            for statement in list(get(document, "Statement")) {
                let Some(statement) = resolver.choose(&statement)? else {
                    continue;
                };
                let mut resources = Vec::new();
                for resource in list(get(&statement, "Resource")) {
                    if let Some(resource) = resolver.choose(&resource)?
                        && !is_no_value(&resource)
                    {
                        // A resource that cannot be named locally grants nothing here.
                        if let Ok(arn) = resolver.string(&resource) {
                            resources.push(arn);
                        }
                    }
                }
                statements.push(Statement {
                    allow: get(&statement, "Effect").and_then(Value::as_str) != Some("Deny"),
                    actions: list(get(&statement, "Action"))
                        .iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect(),
                    resources,
                });
            }
        }
        Ok(Grants {
            binary: binary.to_string(),
            statements,
            declared: manifest.calls_of(binary, resolver, arns)?,
        })
    }

    /// IAM's verdict: allowed by some statement and denied by none.
    pub fn allows(&self, action: &str, resource: &str) -> bool {
        let (allows, denies): (Vec<&Statement>, Vec<&Statement>) = self.statements.iter().partition(|s| s.allow);
        allows.iter().any(|s| s.covers(action, resource)) && !denies.iter().any(|s| s.covers(action, resource))
    }

    /// Whether the manifest declares the call.
    pub fn declares(&self, action: &str, resource: &str) -> bool {
        self.declared
            .iter()
            .any(|(a, r)| a.eq_ignore_ascii_case(action) && glob(r, resource))
    }
}

/// `local/aws-calls.json`: each function's calls as (action, resource kind).
#[derive(Clone, Debug)]
pub struct Manifest {
    calls: BTreeMap<String, Vec<(String, String)>>,
}

impl Manifest {
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let doc: BTreeMap<String, serde_json::Value> =
            serde_json::from_str(text).map_err(|e| TemplateError::Invalid(format!("local/aws-calls.json: {e}")))?;
        let mut calls = BTreeMap::new();
        for (binary, entries) in doc {
            if binary.starts_with('_') {
                continue;
            }
            let entries: Vec<(String, String)> = serde_json::from_value(entries)
                .map_err(|e| TemplateError::Invalid(format!("local/aws-calls.json: {binary}: {e}")))?;
            calls.insert(binary, entries);
        }
        Ok(Manifest { calls })
    }

    /// The functions it lists.
    pub fn binaries(&self) -> impl Iterator<Item = &str> {
        self.calls.keys().map(String::as_str)
    }

    /// `binary`'s calls, with each resource kind turned into the ARN pattern it stands for.
    fn calls_of(
        &self,
        binary: &str,
        resolver: &Resolver<'_>,
        arns: &LocalArns,
    ) -> Result<Vec<(String, String)>, TemplateError> {
        let entries = self
            .calls
            .get(binary)
            .ok_or_else(|| TemplateError::Invalid(format!("local/aws-calls.json does not list `{binary}`")))?;
        let mut out = Vec::new();
        for (action, kind) in entries {
            let (head, rest) = kind.split_once('/').unwrap_or((kind.as_str(), ""));
            let pattern = match head {
                "table" if rest.is_empty() => arns.table.clone(),
                "table" => format!("{}/{rest}", arns.table),
                "stream" => format!("{}/stream/*", arns.table),
                // A key's top folder: `bucket/uploads/x` stands for every key under `uploads/`.
                "bucket" => format!(
                    "arn:aws:s3:::{}/{}*",
                    arns.bucket,
                    rest.split_once('/')
                        .map(|(dir, _)| format!("{dir}/"))
                        .unwrap_or_default()
                ),
                "connections" => format!("{}/{rest}/@connections/*", arns.connections),
                "secret" => match resolver.secret_arn(rest) {
                    Some(arn) => arn,
                    // The function does not read that secret with this parameter set.
                    None => continue,
                },
                "queue" => resolver.string(&serde_yaml_ng::from_str(&format!("!GetAtt {rest}.Arn"))?)?,
                _ => {
                    return Err(TemplateError::Invalid(format!(
                        "local/aws-calls.json: {binary}: unknown resource kind `{kind}`"
                    )));
                }
            };
            out.push((action.clone(), pattern));
        }
        Ok(out)
    }
}

/// The SDK interceptor that refuses calls the function's role does not allow, or that the
/// manifest does not declare.
#[derive(Debug, Clone)]
pub struct IamCheck {
    grants: Arc<Grants>,
    arns: LocalArns,
}

impl IamCheck {
    pub fn new(grants: Grants, arns: LocalArns) -> Self {
        IamCheck {
            grants: Arc::new(grants),
            arns,
        }
    }

    /// The (action, resource) pairs a call needs, as IAM authorizes it.
    fn needs(&self, service: &str, operation: &str, input: &Input) -> Vec<(String, String)> {
        use aws_sdk_dynamodb::operation as ddb;
        let table = self.arns.table.clone();
        match service.to_ascii_lowercase().as_str() {
            "dynamodb" => {
                if let Some(tx) = input.downcast_ref::<ddb::transact_write_items::TransactWriteItemsInput>() {
                    // A transaction needs the permission of each action in it.
                    return tx
                        .transact_items()
                        .iter()
                        .map(|item| {
                            let action = if item.put().is_some() {
                                "PutItem"
                            } else if item.update().is_some() {
                                "UpdateItem"
                            } else if item.delete().is_some() {
                                "DeleteItem"
                            } else {
                                "ConditionCheckItem"
                            };
                            (format!("dynamodb:{action}"), table.clone())
                        })
                        .collect();
                }
                let resource = match input
                    .downcast_ref::<ddb::query::QueryInput>()
                    .and_then(|q| q.index_name())
                {
                    Some(index) => format!("{table}/index/{index}"),
                    None => table,
                };
                vec![(format!("dynamodb:{operation}"), resource)]
            }
            "s3" => {
                use aws_sdk_s3::operation as s3;
                let object =
                    |key: Option<&str>| format!("arn:aws:s3:::{}/{}", self.arns.bucket, key.unwrap_or_default());
                let bucket = format!("arn:aws:s3:::{}", self.arns.bucket);
                if let Some(i) = input.downcast_ref::<s3::get_object::GetObjectInput>() {
                    vec![("s3:GetObject".into(), object(i.key()))]
                } else if let Some(i) = input.downcast_ref::<s3::head_object::HeadObjectInput>() {
                    vec![("s3:GetObject".into(), object(i.key()))]
                } else if let Some(i) = input.downcast_ref::<s3::put_object::PutObjectInput>() {
                    vec![("s3:PutObject".into(), object(i.key()))]
                } else if let Some(i) = input.downcast_ref::<s3::delete_object::DeleteObjectInput>() {
                    vec![("s3:DeleteObject".into(), object(i.key()))]
                } else if operation.starts_with("ListObjects") {
                    vec![("s3:ListBucket".into(), bucket)]
                } else {
                    vec![(format!("s3:{operation}"), bucket)]
                }
            }
            // `@connections`: execute-api:ManageConnections, granted per HTTP method.
            "apigatewaymanagementapi" | "apigatewaymanagement" | "apigateway management api" => {
                use aws_sdk_apigatewaymanagement::operation as ws;
                let (method, id) =
                    if let Some(i) = input.downcast_ref::<ws::post_to_connection::PostToConnectionInput>() {
                        ("POST", i.connection_id())
                    } else if let Some(i) = input.downcast_ref::<ws::delete_connection::DeleteConnectionInput>() {
                        ("DELETE", i.connection_id())
                    } else if let Some(i) = input.downcast_ref::<ws::get_connection::GetConnectionInput>() {
                        ("GET", i.connection_id())
                    } else {
                        (operation, None)
                    };
                vec![(
                    "execute-api:ManageConnections".into(),
                    format!(
                        "{}/{method}/@connections/{}",
                        self.arns.connections,
                        id.unwrap_or_default()
                    ),
                )]
            }
            "secrets manager" | "secretsmanager" => {
                use aws_sdk_secretsmanager::operation as sm;
                let secret = input
                    .downcast_ref::<sm::get_secret_value::GetSecretValueInput>()
                    .and_then(|i| i.secret_id())
                    .unwrap_or_default()
                    .to_string();
                vec![(format!("secretsmanager:{operation}"), secret)]
            }
            other => vec![(format!("{other}:{operation}"), "*".into())],
        }
    }
}

impl Intercept for IamCheck {
    fn name(&self) -> &'static str {
        "IamCheck"
    }

    // Not `read_before_execution`: client interceptors run that before the operation's own
    // configuration (its name) is in the bag.
    fn read_before_serialization(
        &self,
        context: &BeforeSerializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(metadata) = cfg.load::<Metadata>() else {
            return Ok(());
        };
        // What DynamoDB itself would refuse and DynamoDB Local lets through.
        if let Some(refused) = crate::dynamodb_rules::refusal(context.input()) {
            tracing::error!(binary = %self.grants.binary, "{refused}");
            return Err(refused.into());
        }
        for (action, resource) in self.needs(metadata.service(), metadata.name(), context.input()) {
            let binary = &self.grants.binary;
            let refusal = if !self.grants.allows(&action, &resource) {
                Some(format!(
                    "AccessDenied: the role template.yaml gives function `{binary}` does not allow {action} on {resource}"
                ))
            } else if !self.grants.declares(&action, &resource) {
                Some(format!(
                    "local/aws-calls.json does not declare {action} on {resource} for `{binary}`: declare it, so \
                     that the deploy rehearsal checks it against the role CloudFormation creates"
                ))
            } else {
                None
            };
            if let Some(message) = refusal {
                tracing::error!("{message}");
                return Err(message.into());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_as_iam_matches_them() {
        assert!(glob("arn:aws:s3:::b/uploads/*", "arn:aws:s3:::b/uploads/01ABC"));
        assert!(!glob(
            "arn:aws:s3:::b/uploads/*",
            "arn:aws:s3:::b/media/01ABC/display.png"
        ));
        assert!(glob(
            "arn:aws:dynamodb:r:a:table/t/index/*",
            "arn:aws:dynamodb:r:a:table/t/index/gsi1"
        ));
        assert!(!glob(
            "arn:aws:dynamodb:r:a:table/t",
            "arn:aws:dynamodb:r:a:table/t/index/gsi1"
        ));
        assert!(glob("dynamodb:*", "dynamodb:putitem"));
        assert!(!glob(
            "arn:aws:execute-api:r:a:ws/live/POST/@connections/*",
            "arn:aws:execute-api:r:a:ws/live/DELETE/@connections/abc="
        ));
    }

    #[test]
    fn a_deny_wins_over_an_allow() {
        let grants = Grants {
            binary: "f".into(),
            statements: vec![
                Statement {
                    allow: true,
                    actions: vec!["s3:*".into()],
                    resources: vec!["arn:aws:s3:::b/*".into()],
                },
                Statement {
                    allow: false,
                    actions: vec!["s3:DeleteObject".into()],
                    resources: vec!["arn:aws:s3:::b/media/*".into()],
                },
            ],
            declared: Vec::new(),
        };
        assert!(grants.allows("s3:DeleteObject", "arn:aws:s3:::b/uploads/x"));
        assert!(!grants.allows("s3:DeleteObject", "arn:aws:s3:::b/media/x"));
    }
}
