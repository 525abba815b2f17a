//! Each function may call DynamoDB and S3 only as its role in template.yaml allows: forum-local
//! checks every call against the function's policy before it is sent, so a missing permission
//! fails the tests here instead of the first request in AWS. (Actions and resources are
//! checked; conditions, denies and SQS/`@connections` calls are not.)

use std::sync::Arc;

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{BeforeSerializationInterceptorContextRef, Input};
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

use crate::environment::Resolver;
use crate::template::{FunctionDef, TemplateError};

/// What one function's role allows, with resources resolved to ARNs.
#[derive(Debug)]
pub struct Grants {
    binary: String,
    /// (action, resource ARN pattern); resources forum-local cannot resolve are left out.
    allowed: Vec<(String, String)>,
}

/// `*` in IAM patterns matches any run of characters.
fn glob(pattern: &str, text: &str) -> bool {
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

impl Grants {
    pub fn resolve(function: &FunctionDef, resolver: &Resolver<'_>) -> Result<Self, TemplateError> {
        let mut allowed = Vec::new();
        for statement in &function.allows {
            for resource in &statement.resources {
                let Ok(arn) = resolver.string(resource) else { continue };
                for action in &statement.actions {
                    allowed.push((action.clone(), arn.clone()));
                }
            }
        }
        Ok(Grants {
            binary: function.binary.clone(),
            allowed,
        })
    }

    pub fn allows(&self, action: &str, resource: &str) -> bool {
        self.allowed
            .iter()
            .any(|(a, r)| glob(&a.to_ascii_lowercase(), &action.to_ascii_lowercase()) && glob(r, resource))
    }
}

/// The SDK interceptor that refuses calls the function's role does not allow.
#[derive(Debug, Clone)]
pub struct IamCheck {
    grants: Arc<Grants>,
    /// `arn:aws:dynamodb:<region>:<account>:table/` + the table name.
    table_arn: String,
    bucket: String,
}

impl IamCheck {
    pub fn new(grants: Grants, table_arn: String, bucket: String) -> Self {
        IamCheck {
            grants: Arc::new(grants),
            table_arn,
            bucket,
        }
    }

    /// The (action, resource) pairs a call needs, as IAM authorizes it.
    fn needs(&self, service: &str, operation: &str, input: &Input) -> Vec<(String, String)> {
        use aws_sdk_dynamodb::operation as ddb;
        let table = self.table_arn.clone();
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
                let object = |key: Option<&str>| format!("arn:aws:s3:::{}/{}", self.bucket, key.unwrap_or_default());
                let bucket = format!("arn:aws:s3:::{}", self.bucket);
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
            _ => Vec::new(),
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
        for (action, resource) in self.needs(metadata.service(), metadata.name(), context.input()) {
            if !self.grants.allows(&action, &resource) {
                let message = format!(
                    "AccessDenied: template.yaml does not allow function `{}` {action} on {resource}",
                    self.grants.binary
                );
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
    }
}
