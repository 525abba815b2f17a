//! Secrets read at run time from AWS Secrets Manager: never from a function's environment,
//! where anyone allowed `lambda:GetFunctionConfiguration` would read them.
//!
//! A function's configuration names a secret by its ARN only. The secret is fetched once per
//! container (during init when it can be) and re-read every [`REFRESH_AFTER`], so a rotation
//! takes effect within minutes without a deploy. Both the current and the previous version
//! are kept: what was signed with the previous key (a cursor in a client's hands, a token
//! minted just before the rotation) still verifies, and only the current one signs.
//!
//! Fail closed: until a secret has been read, callers get [`SecretError::Unavailable`] (a 503),
//! never a default; a secret that is short, or one of the development values this repository
//! publishes, is [`SecretError::Unusable`] and stops the function at init.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_secretsmanager::error::ProvideErrorMetadata;

/// The shortest secret (JWT HS256 or cursor key) a function accepts: HS256 keys should carry
/// at least the hash's 256 bits, and 32 characters is the least that can.
pub const MIN_SECRET_LEN: usize = forum_domain::limits::SECRET_CHARS.usize();

/// Secrets this repository publishes: the values forum-local's Secrets Manager stand-in holds
/// for samconfig.toml's local parameter set (which forum-local and `sam local` run with), and
/// the defaults of earlier versions. A deployed function refuses every one of them.
pub const PUBLIC_DEVELOPMENT_SECRETS: &[&str] = &[
    "forum-local-development-jwt-secret-never-deploy-this",
    "forum-local-development-cursor-secret-never-deploy-this",
    "forum-local-development-secret",
    "forum-local-cursor-secret",
];

/// Where a function runs, which decides whether the published development secrets (and local
/// endpoints) are allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deployment {
    /// AWS Lambda, or anything not known to be local: fail closed.
    Deployed,
    /// forum-local (in process), or `sam local` (`AWS_SAM_LOCAL=true`, set by SAM CLI in its
    /// containers): the local parameter set's public secrets and local endpoints are accepted.
    Development,
}

/// A secret's value as read: at least [`MIN_SECRET_LEN`] characters and (outside development)
/// not one this repository publishes. `parameter` names where it comes from.
pub fn check_secret_value(parameter: &str, value: &str, deployment: Deployment) -> Result<(), String> {
    if value.chars().count() < MIN_SECRET_LEN {
        return Err(format!(
            "the secret {parameter} names is shorter than {MIN_SECRET_LEN} characters (e.g. `openssl rand -hex 32`)"
        ));
    }
    if deployment == Deployment::Deployed && PUBLIC_DEVELOPMENT_SECRETS.contains(&value) {
        return Err(format!(
            "the secret {parameter} names holds a public development value from this repository: set one of your own"
        ));
    }
    Ok(())
}

/// How long a container trusts what it read before reading it again.
pub const REFRESH_AFTER: Duration = Duration::from_secs(300);
/// The least time between two attempts to read a secret that could not be read: a Secrets
/// Manager outage costs each container one call per interval, not one per request.
pub const RETRY_AFTER: Duration = Duration::from_secs(5);

/// The versions of a secret a function uses: the current one signs; both verify.
#[derive(Debug, PartialEq, Eq)]
pub struct SecretVersions {
    pub current: String,
    pub previous: Option<String>,
}

impl SecretVersions {
    /// Current first, then the previous one.
    pub fn all(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.current.as_str()).chain(self.previous.as_deref())
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum SecretError {
    /// Secrets Manager could not be reached (or refused us); retried later.
    #[error("secret {parameter} is not available: {why}")]
    Unavailable { parameter: &'static str, why: String },
    /// The secret was read, and no function may run with it.
    #[error("{0}")]
    Unusable(String),
}

struct State {
    versions: Option<Arc<SecretVersions>>,
    /// The `VersionId` of `versions.current`: unchanged, the previous version is not read again.
    current_version: Option<String>,
    fetched_at: Option<Instant>,
    last_attempt: Option<Instant>,
    last_error: Option<SecretError>,
}

/// One secret, read and refreshed as described above.
pub struct SecretSource {
    /// Built when the secret is first read (in a function's warm-up, beside its other
    /// connections).
    client: crate::aws::Deferred<aws_sdk_secretsmanager::Client>,
    arn: String,
    /// The template parameter that names it, for messages.
    parameter: &'static str,
    deployment: Deployment,
    /// [`REFRESH_AFTER`] unless a test sets it.
    refresh_after: Duration,
    state: tokio::sync::Mutex<State>,
}

impl std::fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretSource")
            .field("arn", &self.arn)
            .field("parameter", &self.parameter)
            .finish_non_exhaustive()
    }
}

impl SecretSource {
    pub fn new(
        client: crate::aws::Deferred<aws_sdk_secretsmanager::Client>,
        arn: impl Into<String>,
        parameter: &'static str,
        deployment: Deployment,
    ) -> Self {
        SecretSource {
            client,
            arn: arn.into(),
            parameter,
            deployment,
            refresh_after: REFRESH_AFTER,
            state: tokio::sync::Mutex::new(State {
                versions: None,
                current_version: None,
                fetched_at: None,
                last_attempt: None,
                last_error: None,
            }),
        }
    }

    pub fn arn(&self) -> &str {
        &self.arn
    }

    /// Reads again after `every` instead of [`REFRESH_AFTER`] (tests of a rotation).
    pub fn refreshing_every(mut self, every: Duration) -> Self {
        self.refresh_after = every;
        self
    }

    /// Reads the secret during init. A secret that cannot be used is an init error (the
    /// function stops, naming the parameter); one that cannot be read yet is not: requests
    /// retry, and answer 503 meanwhile.
    pub async fn load_at_init(&self) -> Result<(), SecretError> {
        match self.get().await {
            Ok(_) => Ok(()),
            Err(unusable @ SecretError::Unusable(_)) => Err(unusable),
            Err(unavailable) => {
                tracing::warn!(error = %unavailable, "secret not read during init; requests will retry");
                Ok(())
            }
        }
    }

    /// The secret's versions, read now if never read or older than [`REFRESH_AFTER`].
    pub async fn get(&self) -> Result<Arc<SecretVersions>, SecretError> {
        let mut state = self.state.lock().await;
        let fresh = state.fetched_at.is_some_and(|at| at.elapsed() < self.refresh_after);
        if let (true, Some(versions)) = (fresh, &state.versions) {
            return Ok(versions.clone());
        }
        let may_try = state
            .last_attempt
            .is_none_or(|at| at.elapsed() >= RETRY_AFTER.min(self.refresh_after));
        if !may_try {
            return match (&state.versions, &state.last_error) {
                (Some(versions), _) => Ok(versions.clone()),
                (None, Some(error)) => Err(error.clone()),
                (None, None) => Err(self.unavailable("not read yet")),
            };
        }
        state.last_attempt = Some(Instant::now());
        let known = state.current_version.clone().zip(state.versions.clone());
        match self.fetch(known).await {
            Ok((version, versions)) => {
                if state
                    .versions
                    .as_deref()
                    .is_some_and(|old| old.current != versions.current)
                {
                    tracing::info!(parameter = self.parameter, "secret rotated: using its new version");
                }
                state.current_version = Some(version);
                state.versions = Some(versions.clone());
                state.fetched_at = Some(Instant::now());
                state.last_error = None;
                Ok(versions)
            }
            Err(error) => {
                state.last_error = Some(error.clone());
                match (&state.versions, &error) {
                    // A failed refresh keeps what was read: a rotation waits, requests do not.
                    (Some(versions), SecretError::Unavailable { .. }) => {
                        tracing::warn!(%error, "secret refresh failed; keeping the version read before");
                        Ok(versions.clone())
                    }
                    _ => {
                        tracing::error!(%error, "secret not usable");
                        Err(error)
                    }
                }
            }
        }
    }

    fn unavailable(&self, why: impl Into<String>) -> SecretError {
        SecretError::Unavailable {
            parameter: self.parameter,
            why: why.into(),
        }
    }

    /// The current version (its id and the versions), reading the previous one only when the
    /// current one is not `known` already: one call per refresh while nothing rotates.
    async fn fetch(
        &self,
        known: Option<(String, Arc<SecretVersions>)>,
    ) -> Result<(String, Arc<SecretVersions>), SecretError> {
        let (version, current) = self
            .fetch_stage("AWSCURRENT")
            .await?
            .ok_or_else(|| self.unavailable(format!("{} has no current version", self.arn)))?;
        if let Some((known_version, versions)) = known
            && known_version == version
        {
            return Ok((version, versions));
        }
        check_secret_value(self.parameter, &current, self.deployment).map_err(SecretError::Unusable)?;
        // A previous version that could not be used now is simply not accepted.
        let previous = self
            .fetch_stage("AWSPREVIOUS")
            .await?
            .map(|(_, value)| value)
            .filter(|p| check_secret_value(self.parameter, p, self.deployment).is_ok());
        Ok((version, Arc::new(SecretVersions { current, previous })))
    }

    /// One version stage's id and `SecretString`; `None` when the secret has no such version.
    async fn fetch_stage(&self, stage: &str) -> Result<Option<(String, String)>, SecretError> {
        let client: &aws_sdk_secretsmanager::Client = &self.client;
        match client
            .get_secret_value()
            .secret_id(&self.arn)
            .version_stage(stage)
            .send()
            .await
        {
            Ok(out) => match out.secret_string {
                Some(value) => Ok(Some((out.version_id.unwrap_or_default(), value))),
                None => Err(SecretError::Unusable(format!(
                    "{} ({}) holds binary data; it must hold the key as its SecretString",
                    self.parameter, self.arn
                ))),
            },
            Err(e) if e.code() == Some("ResourceNotFoundException") && stage != "AWSCURRENT" => Ok(None),
            // No such secret, no permission to read it (AWS's AccessDenied, or forum-local's
            // IAM check, which refuses the call before it is sent), a key that cannot
            // decrypt it: a deployment mistake, which retrying will not mend.
            Err(e)
                if matches!(e, aws_sdk_secretsmanager::error::SdkError::ConstructionFailure(_))
                    || matches!(
                        e.code(),
                        Some("ResourceNotFoundException" | "AccessDeniedException" | "DecryptionFailure")
                    ) =>
            {
                Err(SecretError::Unusable(format!(
                    "{} ({}) cannot be read: {}",
                    self.parameter,
                    self.arn,
                    crate::sdk_errors::classify(&e).unwrap_or_else(|why| why)
                )))
            }
            Err(e) => Err(self.unavailable(crate::sdk_errors::classify(&e).unwrap_or_else(|why| why))),
        }
    }
}
