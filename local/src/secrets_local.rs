//! The Secrets Manager stand-in: `GetSecretValue` (and `PutSecretValue`, which rotates) over
//! AWS's JSON protocol, signed with SigV4 by the local credentials, on forum-local's own port.
//! Functions read their keys from it exactly as they read them from Secrets Manager in AWS:
//! the environment names a secret's ARN and never holds its value.
//!
//! It holds the secrets of samconfig.toml's local parameter set (public development values,
//! which every deployed function refuses) and a random value for each secret the template
//! creates (`AWS::SecretsManager::Secret`).

use std::collections::BTreeMap;
use std::sync::Mutex;

use bytes::Bytes;
use http_body_util::Full;
use serde_json::{Value, json};

use crate::respond::plain;

/// The development values, by the secret's name in samconfig.toml's ARNs.
pub const DEVELOPMENT_SECRETS: &[(&str, &str)] = &[
    (
        "forum-local/development-jwt-never-deploy",
        "forum-local-development-jwt-secret-never-deploy-this",
    ),
    (
        "forum-local/development-cursor-never-deploy",
        "forum-local-development-cursor-secret-never-deploy-this",
    ),
];

/// The development value a local secret ARN holds, if it is one of [`DEVELOPMENT_SECRETS`].
pub fn development_value(arn: &str) -> Option<&'static str> {
    let name = arn.split(":secret:").nth(1)?;
    DEVELOPMENT_SECRETS.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

#[derive(Clone, Debug)]
struct Versions {
    current: String,
    previous: Option<String>,
    version: u32,
}

/// The secrets, by ARN.
#[derive(Debug, Default)]
pub struct LocalSecrets {
    secrets: Mutex<BTreeMap<String, Versions>>,
}

impl LocalSecrets {
    /// Holds `arn` with `value` as its current version (and no previous one).
    pub fn put(&self, arn: &str, value: &str) {
        if let Ok(mut secrets) = self.secrets.lock() {
            secrets.insert(
                arn.to_string(),
                Versions {
                    current: value.to_string(),
                    previous: None,
                    version: 1,
                },
            );
        }
    }

    /// A rotation: `value` becomes current, the current one previous.
    pub fn rotate(&self, arn: &str, value: &str) -> bool {
        let Ok(mut secrets) = self.secrets.lock() else {
            return false;
        };
        match secrets.get_mut(arn) {
            Some(versions) => {
                versions.previous = Some(std::mem::replace(&mut versions.current, value.to_string()));
                versions.version += 1;
                true
            }
            None => false,
        }
    }

    /// The current value of `arn`.
    pub fn current(&self, arn: &str) -> Option<String> {
        self.secrets.lock().ok()?.get(arn).map(|v| v.current.clone())
    }

    /// Holds each ARN the functions are configured with: development ARNs with their public
    /// values, secrets the template creates with random ones (kept when already held).
    pub fn provision(&self, arns: impl IntoIterator<Item = String>) -> Result<(), String> {
        for arn in arns {
            if self.current(&arn).is_some() {
                continue;
            }
            let value = match development_value(&arn) {
                Some(value) => value.to_string(),
                None if arn.ends_with("-local") => format!("{}{}", ulid::Ulid::new(), ulid::Ulid::new()),
                None => {
                    return Err(format!(
                        "a function is configured with the secret {arn}, which forum-local does not hold \
                         (locally, secrets are the development ARNs of samconfig.toml or ones the template creates)"
                    ));
                }
            };
            self.put(&arn, &value);
        }
        Ok(())
    }

    /// Answers one Secrets Manager request (`X-Amz-Target: secretsmanager.<Operation>`).
    pub fn serve(
        &self,
        method: &http::Method,
        uri: &http::Uri,
        headers: &http::HeaderMap,
        body: &[u8],
    ) -> hyper::Response<Full<Bytes>> {
        let credentials = (forum_store::aws::LOCAL_ACCESS_KEY, forum_store::aws::LOCAL_SECRET_KEY);
        if let Err(why) = crate::sigv4::verify(
            "secretsmanager",
            method,
            uri,
            headers,
            body,
            credentials,
            std::time::SystemTime::now(),
        ) {
            return error(400, "UnrecognizedClientException", &why);
        }
        let target = headers
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let Ok(input) = serde_json::from_slice::<Value>(body) else {
            return error(400, "InvalidRequestException", "the body is not JSON");
        };
        let secret_id = input["SecretId"].as_str().unwrap_or_default();
        let Ok(mut secrets) = self.secrets.lock() else {
            return error(500, "InternalServiceError", "lock poisoned");
        };
        let Some(versions) = secrets.get_mut(secret_id) else {
            return error(
                400,
                "ResourceNotFoundException",
                "Secrets Manager can't find the specified secret.",
            );
        };
        match target {
            "secretsmanager.GetSecretValue" => {
                let stage = input["VersionStage"].as_str().unwrap_or("AWSCURRENT");
                let (value, version) = match stage {
                    "AWSCURRENT" => (versions.current.clone(), versions.version),
                    "AWSPREVIOUS" => match &versions.previous {
                        Some(previous) => (previous.clone(), versions.version - 1),
                        None => {
                            return error(
                                400,
                                "ResourceNotFoundException",
                                "Secrets Manager can't find the specified secret value for staging label: AWSPREVIOUS",
                            );
                        }
                    },
                    other => {
                        return error(
                            400,
                            "ResourceNotFoundException",
                            &format!("no version with staging label {other}"),
                        );
                    }
                };
                ok(json!({
                    "ARN": secret_id,
                    "Name": secret_id.split(":secret:").nth(1).unwrap_or(secret_id),
                    "SecretString": value,
                    "VersionId": format!("{version:08}-0000-4000-8000-000000000000"),
                    "VersionStages": [stage],
                    "CreatedDate": chrono::Utc::now().timestamp(),
                }))
            }
            "secretsmanager.PutSecretValue" => {
                let Some(value) = input["SecretString"].as_str() else {
                    return error(400, "InvalidParameterException", "SecretString is required");
                };
                versions.previous = Some(std::mem::replace(&mut versions.current, value.to_string()));
                versions.version += 1;
                ok(json!({
                    "ARN": secret_id,
                    "VersionId": format!("{:08}-0000-4000-8000-000000000000", versions.version),
                    "VersionStages": ["AWSCURRENT"],
                }))
            }
            other => error(
                400,
                "InvalidAction",
                &format!("forum-local's Secrets Manager does not do `{other}`"),
            ),
        }
    }
}

/// Serves `secrets` on `listen` (port 0: a free one) until the task is aborted; returns the
/// endpoint (`http://addr`) and the task.
pub async fn start(
    listen: std::net::SocketAddr,
    secrets: std::sync::Arc<LocalSecrets>,
) -> std::io::Result<(String, tokio::task::JoinHandle<()>)> {
    use http_body_util::BodyExt;
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let endpoint = format!("http://{}", listener.local_addr()?);
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let secrets = secrets.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let secrets = secrets.clone();
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = http_body_util::Limited::new(body, 64 * 1024)
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        Ok::<_, std::convert::Infallible>(secrets.serve(
                            &parts.method,
                            &parts.uri,
                            &parts.headers,
                            &body,
                        ))
                    }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await;
            });
        }
    });
    Ok((endpoint, task))
}

fn ok(body: Value) -> hyper::Response<Full<Bytes>> {
    let mut response = plain(200, body.to_string());
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/x-amz-json-1.1"),
    );
    response
}

fn error(status: u16, kind: &str, message: &str) -> hyper::Response<Full<Bytes>> {
    let mut response = plain(status, json!({ "__type": kind, "message": message }).to_string());
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/x-amz-json-1.1"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn development_arns_hold_the_published_values_only() {
        for (name, value) in DEVELOPMENT_SECRETS {
            assert!(forum_api::config::PUBLIC_DEVELOPMENT_SECRETS.contains(value), "{name}");
            let arn = format!("arn:aws:secretsmanager:us-east-1:000000000000:secret:{name}");
            assert_eq!(development_value(&arn), Some(*value));
        }
        let secrets = LocalSecrets::default();
        assert!(
            secrets
                .provision(["arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/jwt-AbCdEf".to_string()])
                .is_err(),
            "a real ARN is never given a value locally"
        );
    }
}
