//! Configuration, read once per cold start from a function's environment.
//!
//! Nothing here has a public default. Each function reads only what it uses (only the
//! authorizer reads JWT settings; only the list routes read the cursor key), and a value it
//! cannot run with is an init error naming its template parameter. Secrets are not read here:
//! the environment holds only their ARNs, and [`forum_store::secrets`] reads them at run time; a
//! secret that is short or one of the development values this repository publishes stops the
//! function as soon as it is read ([`check_secret_value`]). The development values are accepted
//! only where [`Deployment::Development`] holds: inside forum-local, or in `sam local`'s containers.

use std::collections::BTreeMap;

use forum_domain::limits::{self, Limit};
use forum_domain::model::RateAction;
use forum_store::aws::AwsTarget;

use forum_domain::validate::ProfanityMode;

pub use forum_store::secrets::{Deployment, MIN_SECRET_LEN, PUBLIC_DEVELOPMENT_SECRETS};

/// A function's environment: variables by name (an empty value counts as unset, as
/// CloudFormation passes an empty parameter through) and where it runs.
#[derive(Clone, Debug)]
pub struct Env {
    vars: BTreeMap<String, String>,
    deployment: Deployment,
}

#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(pub String);

/// The template parameter a variable comes from, so an init error tells the deployer what to set.
fn parameter_of(var: &str) -> &'static str {
    if let Some((_, parameter)) = limits::settable().find(|(_, p)| p.variable == var) {
        return parameter.name;
    }
    match var {
        "FORUM_JWT_SECRET_ARN" => "JwtSecretArn",
        "FORUM_JWT_PUBLIC_KEY" => "JwtPublicKey",
        "FORUM_JWT_JWKS_URL" => "JwtJwksUrl",
        "FORUM_JWT_ALGORITHM" => "JwtAlgorithm",
        "FORUM_JWT_ISSUER" => "JwtIssuer",
        "FORUM_JWT_AUDIENCE" => "JwtAudience",
        "FORUM_CURSOR_SECRET_ARN" => "CursorSecretArn",
        "FORUM_PROFANITY" => "ProfanityMode",
        _ => "",
    }
}

pub(crate) fn named(var: &str) -> String {
    match parameter_of(var) {
        "" => var.to_string(),
        parameter => format!("{var} (template parameter {parameter})"),
    }
}

impl Env {
    pub fn new(vars: BTreeMap<String, String>, deployment: Deployment) -> Self {
        Env { vars, deployment }
    }

    /// This process's environment: a Lambda function's, or `sam local`'s container's.
    pub fn process() -> Self {
        let deployment = if std::env::var("AWS_SAM_LOCAL").as_deref() == Ok("true") {
            Deployment::Development
        } else {
            Deployment::Deployed
        };
        Env::new(std::env::vars().collect(), deployment)
    }

    pub fn deployment(&self) -> Deployment {
        self.deployment
    }

    /// The variable's value, `None` when unset or empty.
    pub fn optional(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }

    pub fn required(&self, name: &str) -> Result<&str, ConfigError> {
        self.optional(name)
            .ok_or_else(|| ConfigError(format!("{} is required and is not set", named(name))))
    }

    /// A Secrets Manager secret's ARN (the secret itself is read at run time).
    pub fn secret_arn(&self, name: &str) -> Result<Option<&str>, ConfigError> {
        let Some(arn) = self.optional(name) else {
            return Ok(None);
        };
        let parts: Vec<&str> = arn.splitn(7, ':').collect();
        let well_formed = matches!(parts.as_slice(), ["arn", partition, "secretsmanager", region, account, "secret", name]
            if partition.starts_with("aws") && !region.is_empty() && account.len() == 12
                && account.bytes().all(|b| b.is_ascii_digit()) && !name.is_empty());
        if !well_formed {
            return Err(ConfigError(format!(
                "{} must be the full ARN of a Secrets Manager secret, not `{arn}`",
                named(name)
            )));
        }
        Ok(Some(arn))
    }

    /// A settable limit ([`forum_domain::limits`]): its variable's whole number within the
    /// parameter's bounds, or the table's default when unset.
    pub fn limit(&self, limit: &Limit) -> Result<u64, ConfigError> {
        let Some(parameter) = limit.parameter else {
            return Ok(limit.value);
        };
        let Some(raw) = self.optional(parameter.variable) else {
            return Ok(limit.value);
        };
        let within = |n: &u64| *n >= parameter.min && parameter.max.is_none_or(|max| *n <= max);
        raw.parse::<u64>().ok().filter(within).ok_or_else(|| {
            let range = match parameter.max {
                Some(max) => format!("from {} to {max}", parameter.min),
                None => format!("of at least {}", parameter.min),
            };
            ConfigError(format!(
                "{} must be a whole number {range}, not `{raw}`",
                named(parameter.variable)
            ))
        })
    }

    /// An http(s) base URL without a trailing slash; deployed functions accept https only.
    fn base_url(&self, name: &str) -> Result<String, ConfigError> {
        self.url(self.required(name)?, name)
    }

    /// `raw` as an http(s) URL (`name` says where it came from); https only when deployed.
    pub(crate) fn url(&self, raw: &str, name: &str) -> Result<String, ConfigError> {
        let raw = raw.trim_end_matches('/');
        let url = url::Url::parse(raw).map_err(|e| ConfigError(format!("{name} is not a URL (`{raw}`): {e}")))?;
        let allowed = match self.deployment {
            Deployment::Deployed => url.scheme() == "https",
            Deployment::Development => matches!(url.scheme(), "https" | "http"),
        };
        if !allowed || url.host_str().is_none_or(str::is_empty) {
            return Err(ConfigError(format!(
                "{} must be an https URL, not `{raw}`",
                named(name)
            )));
        }
        Ok(raw.to_string())
    }
}

/// What the data handlers need, built once per cold start.
#[derive(Clone, Debug)]
pub struct Config {
    /// `TABLE_NAME`: the single DynamoDB table.
    pub table_name: String,
    /// `FORUM_CURSOR_SECRET_ARN`: the Secrets Manager secret holding the HMAC key that signs
    /// pagination cursors; given only to the functions that paginate
    /// ([`crate::Route::paginates`]), which refuse to start without it.
    pub cursor_secret_arn: Option<String>,
    /// `FORUM_PROFANITY`: `refuse` (default) or `censor`.
    pub profanity: ProfanityMode,
    /// Per-user write limits (`FORUM_RATE_*_PER_MIN`).
    pub rate_limits: RateLimits,
    /// `MEDIA_BUCKET`: the S3 bucket for uploads (`uploads/`) and processed media (`media/`).
    pub media_bucket: String,
    /// `MEDIA_BASE_URL`: where `media/` keys are served (the CDN); media URLs are
    /// `<MEDIA_BASE_URL>/media/<id>/<variant>.<ext>`.
    pub media_base_url: String,
    /// `WS_ENDPOINT`: the WebSocket API's `@connections` endpoint (stage URL); unset, no pushes.
    pub ws_endpoint: Option<String>,
    /// `FORUM_READ_CACHE_TTL_MS` (default 1000, at most 10000, 0 turns it off): how long a
    /// container serves a feed page or a post (without the caller's `is_liked`) from memory.
    /// The staleness bound of lists and post reads (docs/table.md).
    pub read_cache_ttl: std::time::Duration,
    /// `FORUM_NOTIFICATION_DAYS` (90, 1-365): how long a notification is kept.
    pub notification_ttl_secs: i64,
    /// `AWS_LAMBDA_FUNCTION_MEMORY_SIZE` (set by Lambda; by forum-local from the template's
    /// `MemorySize`): the function's memory in MB, half of which an image decode may use.
    pub memory_mb: u64,
}

/// The memory a function is assumed to have when `AWS_LAMBDA_FUNCTION_MEMORY_SIZE` is not set
/// (Lambda always sets it): Lambda's smallest, so a decode budget is never larger than real.
pub const MIN_FUNCTION_MEMORY_MB: u64 = 128;

/// Writes a user may make per minute, per action ([`RateAction::limit`]: each from its
/// parameter's variable, or the table's default). Kept in the table, taken in the same
/// transaction as the write, so a refused write changes nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimits {
    per_minute: [u32; RateAction::ALL.len()],
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            per_minute: RateAction::ALL.map(|action| action.limit().u32()),
        }
    }
}

impl RateLimits {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let mut per_minute = [0; RateAction::ALL.len()];
        for (slot, action) in per_minute.iter_mut().zip(RateAction::ALL) {
            *slot = u32::try_from(env.limit(action.limit())?)
                .map_err(|_| ConfigError(format!("{} is too large", named(variable_of(action.limit())))))?;
        }
        Ok(RateLimits { per_minute })
    }

    /// The limit on `action` per user and minute.
    pub fn of(&self, action: RateAction) -> u32 {
        RateAction::ALL
            .iter()
            .position(|a| *a == action)
            .map_or(0, |i| self.per_minute[i])
    }
}

fn variable_of(limit: &Limit) -> &'static str {
    limit.parameter.map_or("", |p| p.variable)
}

impl Config {
    /// Reads the data handlers' configuration; fails fast on values that cannot work. JWT
    /// settings are not read here: only the authorizer verifies tokens.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let profanity = match env.optional("FORUM_PROFANITY").unwrap_or("refuse") {
            "refuse" => ProfanityMode::Refuse,
            "censor" => ProfanityMode::Censor,
            other => {
                return Err(ConfigError(format!(
                    "{} must be `refuse` or `censor`, not `{other}`",
                    named("FORUM_PROFANITY")
                )));
            }
        };
        let ws_endpoint = match env.optional("WS_ENDPOINT") {
            Some(_) => Some(env.base_url("WS_ENDPOINT")?),
            None => None,
        };
        Ok(Config {
            table_name: env.required("TABLE_NAME")?.to_string(),
            cursor_secret_arn: env.secret_arn("FORUM_CURSOR_SECRET_ARN")?.map(str::to_string),
            profanity,
            rate_limits: RateLimits::from_env(env)?,
            media_bucket: env.required("MEDIA_BUCKET")?.to_string(),
            media_base_url: env.base_url("MEDIA_BASE_URL")?,
            ws_endpoint,
            read_cache_ttl: std::time::Duration::from_millis(env.limit(&limits::READ_CACHE_TTL_MS)?),
            notification_ttl_secs: i64::try_from(env.limit(&limits::NOTIFICATION_DAYS)?).unwrap_or(i64::MAX / 86_400)
                * 86_400,
            memory_mb: match env.optional("AWS_LAMBDA_FUNCTION_MEMORY_SIZE") {
                None => MIN_FUNCTION_MEMORY_MB,
                Some(v) => v
                    .parse()
                    .ok()
                    .filter(|mb| *mb >= MIN_FUNCTION_MEMORY_MB)
                    .ok_or_else(|| {
                        ConfigError(format!(
                            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE must be a number of MB, not `{v}`"
                        ))
                    })?,
            },
        })
    }

    /// The configuration of the function built as `binary`, with what that function needs
    /// checked: what Lambda's init and forum-local both call.
    pub fn for_function(env: &Env, binary: &str, paginates: bool) -> Result<Self, ConfigError> {
        let config = Config::from_env(env)?;
        if paginates {
            config.require_cursor_secret_arn(binary)?;
        }
        Ok(config)
    }

    /// The cursor key's ARN, for a function that paginates (`function` names it in the error).
    pub fn require_cursor_secret_arn(&self, function: &str) -> Result<&str, ConfigError> {
        self.cursor_secret_arn.as_deref().ok_or_else(|| {
            ConfigError(format!(
                "{function} paginates and needs {}, which is not set",
                named("FORUM_CURSOR_SECRET_ARN")
            ))
        })
    }
}

/// A secret's value as read: at least [`MIN_SECRET_LEN`] characters and (outside development)
/// not one this repository publishes. `parameter` names where it comes from.
pub fn check_secret_value(parameter: &str, value: &str, deployment: Deployment) -> Result<(), ConfigError> {
    forum_store::secrets::check_secret_value(parameter, value, deployment).map_err(ConfigError)
}

/// Where the AWS services are: `FORUM_LOCAL_DYNAMODB_ENDPOINT`, `FORUM_LOCAL_S3_ENDPOINT` and
/// `FORUM_LOCAL_SECRETS_ENDPOINT` (all, or none) point a function at forum-local's data plane,
/// e.g. from `sam local`; the template declares them empty. They sign with the public local
/// credentials, so only a development environment may set them: a deployed function refuses
/// to start with them.
pub fn aws_target(env: &Env) -> Result<AwsTarget, ConfigError> {
    let names = [
        "FORUM_LOCAL_DYNAMODB_ENDPOINT",
        "FORUM_LOCAL_S3_ENDPOINT",
        "FORUM_LOCAL_SECRETS_ENDPOINT",
    ];
    match names.map(|name| env.optional(name)) {
        [None, None, None] => Ok(AwsTarget::Environment),
        _ if env.deployment() == Deployment::Deployed => Err(ConfigError(format!(
            "{} are for local development (forum-local, sam local) and must be empty in a deployment",
            names.join(", ")
        ))),
        [Some(dynamodb), Some(s3), Some(secrets)] => Ok(AwsTarget::Local {
            dynamodb_endpoint: dynamodb.to_string(),
            s3_endpoint: s3.to_string(),
            secrets_endpoint: secrets.to_string(),
        }),
        _ => Err(ConfigError(format!("set all of {}, or none", names.join(", ")))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWN_SECRET: &str = "0123456789abcdef0123456789abcdef";
    const ARN: &str = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:forum/jwt-AbCdEf";

    fn env(pairs: &[(&str, &str)], deployment: Deployment) -> Env {
        Env::new(
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            deployment,
        )
    }

    #[test]
    fn secret_values_must_be_long_and_private_when_deployed() {
        for bad in [
            "",
            "short-secret",
            PUBLIC_DEVELOPMENT_SECRETS[0],
            "forum-local-development-secret",
        ] {
            assert!(
                check_secret_value("JwtSecretArn", bad, Deployment::Deployed).is_err(),
                "{bad}"
            );
        }
        assert!(check_secret_value("JwtSecretArn", OWN_SECRET, Deployment::Deployed).is_ok());
        // The published values work only in development; short ones nowhere.
        assert!(check_secret_value("JwtSecretArn", PUBLIC_DEVELOPMENT_SECRETS[0], Deployment::Development).is_ok());
        assert!(check_secret_value("JwtSecretArn", "short", Deployment::Development).is_err());
    }

    fn data(extra: &[(&str, &str)], deployment: Deployment) -> Result<Config, ConfigError> {
        let mut pairs = vec![
            ("TABLE_NAME", "forum"),
            ("MEDIA_BUCKET", "media"),
            ("MEDIA_BASE_URL", "https://cdn.example/"),
        ];
        pairs.extend_from_slice(extra);
        Config::from_env(&env(&pairs, deployment))
    }

    #[test]
    fn data_functions_start_without_jwt_settings_or_a_cursor_key() {
        let config = data(&[], Deployment::Deployed).unwrap();
        assert_eq!(config.media_base_url, "https://cdn.example");
        assert!(config.cursor_secret_arn.is_none());
        let err = config.require_cursor_secret_arn("list-posts").unwrap_err().to_string();
        assert!(err.contains("list-posts") && err.contains("CursorSecretArn"), "{err}");
    }

    #[test]
    fn a_cursor_key_is_named_by_a_full_secret_arn() {
        let config = data(&[("FORUM_CURSOR_SECRET_ARN", ARN)], Deployment::Deployed).unwrap();
        assert_eq!(config.require_cursor_secret_arn("list-posts").unwrap(), ARN);
        for bad in [
            "forum/cursor",
            "arn:aws:s3:::bucket",
            "arn:aws:secretsmanager:eu-west-1:1:secret:x",
        ] {
            let err = data(&[("FORUM_CURSOR_SECRET_ARN", bad)], Deployment::Deployed)
                .unwrap_err()
                .to_string();
            assert!(err.contains("CursorSecretArn"), "{bad}: {err}");
        }
    }

    #[test]
    fn deployed_urls_are_https_and_names_are_required() {
        assert!(data(&[("MEDIA_BASE_URL", "http://127.0.0.1:3000")], Deployment::Deployed).is_err());
        assert!(data(&[("MEDIA_BASE_URL", "http://127.0.0.1:3000")], Deployment::Development).is_ok());
        assert!(data(&[("WS_ENDPOINT", "http://x")], Deployment::Deployed).is_err());
        assert!(data(&[("TABLE_NAME", "")], Deployment::Development).is_err());
        assert!(data(&[("FORUM_RATE_POSTS_PER_MIN", "0")], Deployment::Deployed).is_err());
    }

    #[test]
    fn the_read_cache_ttl_is_bounded_and_a_bad_one_stops_the_function() {
        let ttl = |v: &str| data(&[("FORUM_READ_CACHE_TTL_MS", v)], Deployment::Deployed).map(|c| c.read_cache_ttl);
        assert_eq!(
            data(&[], Deployment::Deployed).unwrap().read_cache_ttl.as_millis(),
            1000
        );
        assert_eq!(ttl("0").unwrap().as_millis(), 0);
        assert_eq!(ttl("10000").unwrap().as_millis(), 10_000);
        // Empty reads as unset, as for every variable here.
        assert_eq!(ttl("").unwrap().as_millis(), 1000);
        for bad in ["10001", "-1", "1.5", "1s", "18446744073709551616"] {
            let err = ttl(bad).unwrap_err().to_string();
            assert!(err.contains("ReadCacheTtlMs"), "`{bad}`: {err}");
        }
    }
}
