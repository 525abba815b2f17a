//! The one place that builds AWS clients, with the timeouts and retries every call relies on.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use aws_smithy_runtime_api::client::http::SharedHttpClient;
use aws_smithy_runtime_api::client::interceptors::SharedInterceptor;

use aws_config::environment::{EnvironmentVariableCredentialsProvider, EnvironmentVariableRegionProvider};
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::Credentials;

pub use crate::dynamodb_usage::DynamoDbUsage;

/// Where the AWS services are.
#[derive(Clone, Debug)]
pub enum AwsTarget {
    /// The real services, with region and credentials from the environment variables Lambda
    /// sets (`AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`;
    /// `sam local` sets them too), and nothing else: no profile, IMDS or web identity.
    Environment,
    /// Local stand-ins (DynamoDB Local, the in-process S3, forum-local's Secrets Manager), with
    /// fixed development credentials.
    Local {
        dynamodb_endpoint: String,
        s3_endpoint: String,
        secrets_endpoint: String,
    },
}

/// An SDK client built the first time it is used. Each SDK crate parses its service's
/// endpoint partitions when its first client is built (about a twentieth of a cold start's
/// CPU), so a function pays only for the services it calls: its warm-up builds the clients it
/// calls on every invocation, and a rare call (get-post never touches S3) builds its own.
pub type Deferred<C> = Arc<LazyLock<C, Box<dyn FnOnce() -> C + Send>>>;

/// A [`Deferred`] client, built by `build` on first use.
pub fn deferred<C>(build: impl FnOnce() -> C + Send + 'static) -> Deferred<C> {
    Arc::new(LazyLock::new(Box::new(build)))
}

/// A client already built, where a [`Deferred`] one is asked for.
pub fn built<C: Send + 'static>(client: C) -> Deferred<C> {
    deferred(move || client)
}

/// Region and credentials the local stand-ins are addressed with.
pub const LOCAL_REGION: &str = "us-east-1";
pub const LOCAL_ACCESS_KEY: &str = "forumlocal";
pub const LOCAL_SECRET_KEY: &str = "forumlocalsecret";

/// Bounded time for every call: a slow or unreachable DynamoDB becomes a 503 in a few seconds,
/// never a hang. Lambda's own timeout (template) is set above the operation timeout.
pub fn timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_millis(1_000))
        .read_timeout(Duration::from_millis(2_000))
        .operation_attempt_timeout(Duration::from_millis(2_500))
        .operation_timeout(Duration::from_millis(6_000))
        .build()
}

/// Standard retries, bounded: 3 attempts with short jittered backoff.
pub fn retries() -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(3)
        .with_initial_backoff(Duration::from_millis(50))
        .with_max_backoff(Duration::from_millis(1_000))
}

/// Amazon Trust Services' roots (Amazon Root CA 1-4 and the Starfield Services root that
/// cross-signs them): every AWS service endpoint this project calls (DynamoDB, S3,
/// execute-api) chains to one of them.
const AMAZON_TRUST_SERVICES: &[u8] = include_bytes!("amazon-trust-services.pem");

/// Which roots TLS connections to AWS trust.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsRoots {
    /// The five Amazon Trust Services roots, compiled in: the default. Loading the system's
    /// store instead (about 150 certificates, or a directory of them) costs a cold start
    /// milliseconds for roots no AWS endpoint uses.
    Amazon,
    /// The system's trust store (`FORUM_TLS_ROOTS=system`), e.g. for an HTTPS endpoint
    /// override (`AWS_ENDPOINT_URL_*`) signed by another CA.
    System,
    /// The roots in one PEM file (`FORUM_TLS_ROOTS=/path/roots.pem`): such an override's own
    /// CA, as cheap to load as the compiled-in roots (the cold-start bench runs this way).
    File(std::path::PathBuf),
}

impl TlsRoots {
    pub fn from_env() -> Self {
        match std::env::var("FORUM_TLS_ROOTS").as_deref() {
            Ok("system") => TlsRoots::System,
            Ok(path) if path.starts_with('/') => TlsRoots::File(path.into()),
            _ => TlsRoots::Amazon,
        }
    }
}

/// The SDK's usual HTTPS client (hyper, rustls with aws-lc), trusting `roots`.
pub fn https_client(roots: TlsRoots) -> Result<SharedHttpClient, String> {
    use aws_smithy_http_client::tls::{self, TlsContext, TrustStore};
    let store = match roots {
        TlsRoots::Amazon => TrustStore::empty().with_pem_certificate(AMAZON_TRUST_SERVICES),
        TlsRoots::System => TrustStore::default(),
        TlsRoots::File(path) => {
            let pem = std::fs::read(&path).map_err(|e| format!("FORUM_TLS_ROOTS {}: {e}", path.display()))?;
            TrustStore::empty().with_pem_certificate(pem.as_slice())
        }
    };
    let context = TlsContext::builder()
        .with_trust_store(store)
        .build()
        .map_err(|e| format!("TLS trust store: {e}"))?;
    Ok(aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::AwsLc))
        .tls_context(context)
        .build_https())
}

pub async fn sdk_config(target: &AwsTarget) -> SdkConfig {
    let loader = aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(timeouts())
        .retry_config(retries());
    match target {
        AwsTarget::Environment => {
            // Lambda gives a function its region and its role's credentials in the
            // environment, so only the environment is asked: the default chains would build an
            // STS client (web identity) and two IMDS clients at every cold start only to leave
            // them unused (a tenth of get-post's init CPU, docs/performance.md).
            let loader = loader
                .region(EnvironmentVariableRegionProvider::new())
                .credentials_provider(EnvironmentVariableCredentialsProvider::new());
            match https_client(TlsRoots::from_env()) {
                Ok(client) => loader.http_client(client).load().await,
                // Cannot happen with the compiled-in roots (a roots file that cannot be read
                // can): the SDK's default client still works, trusting the system's roots.
                Err(e) => {
                    tracing::warn!(error = %e, "using the SDK's default HTTPS client");
                    loader.load().await
                }
            }
        }
        AwsTarget::Local { .. } => {
            loader
                .region(Region::new(LOCAL_REGION))
                .credentials_provider(Credentials::new(
                    LOCAL_ACCESS_KEY,
                    LOCAL_SECRET_KEY,
                    None,
                    None,
                    "forum-local",
                ))
                .load()
                .await
        }
    }
}

/// Builds every SDK client one function uses, each from the same SDK configuration and target
/// and carrying the same extra interceptors (forum-local checks each function's IAM policy
/// with one). Cheap to clone, so a [`Deferred`] client owns one until it is built.
#[derive(Clone)]
pub struct Clients {
    sdk: SdkConfig,
    target: AwsTarget,
    interceptors: Vec<SharedInterceptor>,
}

impl Clients {
    /// The clients for `target`, with its SDK configuration loaded ([`sdk_config`]).
    pub async fn load(target: AwsTarget) -> Self {
        Clients::new(sdk_config(&target).await, target)
    }

    pub fn new(sdk: SdkConfig, target: AwsTarget) -> Self {
        Clients {
            sdk,
            target,
            interceptors: Vec::new(),
        }
    }

    /// These clients, each also carrying `interceptor`.
    pub fn with_interceptor(&self, interceptor: SharedInterceptor) -> Self {
        let mut clients = self.clone();
        clients.interceptors.push(interceptor);
        clients
    }

    /// The SDK configuration the clients are built from.
    pub fn sdk_config(&self) -> &SdkConfig {
        &self.sdk
    }

    /// A client `build` makes from these on first use.
    pub fn deferred<C>(&self, build: impl FnOnce(&Clients) -> C + Send + 'static) -> Deferred<C> {
        let clients = self.clone();
        deferred(move || build(&clients))
    }

    /// A client built now when `now` (the function calls it on every invocation, so its
    /// warm-up connects with it), else on first use.
    pub fn deferred_unless<C: Send + 'static>(
        &self,
        now: bool,
        build: impl FnOnce(&Clients) -> C + Send + 'static,
    ) -> Deferred<C> {
        if now { built(build(self)) } else { self.deferred(build) }
    }

    /// The DynamoDB client, counting what it asks into `usage`.
    pub fn dynamodb(&self, usage: &DynamoDbUsage) -> aws_sdk_dynamodb::Client {
        let mut builder = aws_sdk_dynamodb::config::Builder::from(&self.sdk).interceptor(usage.clone());
        for interceptor in &self.interceptors {
            builder.push_interceptor(interceptor.clone());
        }
        if let AwsTarget::Local { dynamodb_endpoint, .. } = &self.target {
            builder = builder.endpoint_url(dynamodb_endpoint);
        }
        aws_sdk_dynamodb::Client::from_conf(builder.build())
    }

    /// The S3 client. Checksums only when S3 requires them: the SDK's default CRC32 on every
    /// put breaks presigned PUTs from clients that cannot compute it (awslabs/aws-sdk-rust#1240).
    /// Local stand-ins are addressed path-style.
    pub fn s3(&self) -> aws_sdk_s3::Client {
        let mut builder = aws_sdk_s3::config::Builder::from(&self.sdk);
        for interceptor in &self.interceptors {
            builder.push_interceptor(interceptor.clone());
        }
        if let AwsTarget::Local { s3_endpoint, .. } = &self.target {
            builder = builder.endpoint_url(s3_endpoint);
        }
        let local = matches!(self.target, AwsTarget::Local { .. });
        let conf = builder
            .request_checksum_calculation(aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired)
            .force_path_style(local || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some())
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }

    /// The Secrets Manager client (functions read their keys with it at run time).
    pub fn secrets(&self) -> aws_sdk_secretsmanager::Client {
        let mut builder = aws_sdk_secretsmanager::config::Builder::from(&self.sdk);
        for interceptor in &self.interceptors {
            builder.push_interceptor(interceptor.clone());
        }
        if let AwsTarget::Local { secrets_endpoint, .. } = &self.target {
            builder = builder.endpoint_url(secrets_endpoint);
        }
        aws_sdk_secretsmanager::Client::from_conf(builder.build())
    }

    /// The `@connections` client for a WebSocket API stage
    /// (`https://{api}.execute-api.{region}.amazonaws.com/{stage}`).
    pub fn connections(&self, endpoint: &str) -> aws_sdk_apigatewaymanagement::Client {
        let mut builder = aws_sdk_apigatewaymanagement::config::Builder::from(&self.sdk).endpoint_url(endpoint);
        for interceptor in &self.interceptors {
            builder.push_interceptor(interceptor.clone());
        }
        aws_sdk_apigatewaymanagement::Client::from_conf(builder.build())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_compiled_in_roots_are_amazon_trust_services_and_load() {
        let pem = std::str::from_utf8(AMAZON_TRUST_SERVICES).unwrap();
        assert_eq!(pem.matches("-----BEGIN CERTIFICATE-----").count(), 5);
        assert!(https_client(TlsRoots::Amazon).is_ok());
        assert!(https_client(TlsRoots::System).is_ok());
    }

    #[test]
    fn roots_from_a_file_load_and_a_missing_file_is_said() {
        let path = std::env::temp_dir().join(format!("forum-roots-{}.pem", std::process::id()));
        std::fs::write(&path, AMAZON_TRUST_SERVICES).unwrap();
        assert!(https_client(TlsRoots::File(path.clone())).is_ok());
        std::fs::remove_file(&path).unwrap();
        let missing = https_client(TlsRoots::File(path)).err().unwrap_or_default();
        assert!(missing.contains("FORUM_TLS_ROOTS"), "{missing}");
    }
}
