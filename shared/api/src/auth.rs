//! Identity: JWT verification (the authorizer) and the caller it hands to handlers.
//!
//! The authorizer verifies the token and passes the caller's identity to the route in the
//! request context. Tokens that fail verification are *not* denied at the gateway: the
//! authorizer passes the reason instead, and the handler answers 401 in the API's own error
//! shape (HTTP APIs cannot restyle an authorizer's denial). Handlers never run for a caller
//! without checking it: [`Caller::from_request`] is the only way to get one.

use forum_domain::limits;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lambda_events::apigw::{
    ApiGatewayCustomAuthorizerPolicy, ApiGatewayCustomAuthorizerRequestTypeRequest, ApiGatewayCustomAuthorizerResponse,
    ApiGatewayV2CustomAuthorizerSimpleResponse, ApiGatewayV2CustomAuthorizerV2Request,
};
use aws_lambda_events::iam::{IamPolicyEffect, IamPolicyStatement};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};
use lambda_http::{Request, RequestExt, request::RequestContext};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::{ConfigError, Deployment, Env, named};
use crate::error::ApiError;
use forum_domain::moderation::Role;
use forum_domain::validate;
use forum_store::secrets::{SecretError, SecretSource};

/// Clock skew tolerated on `exp` and `nbf`, everywhere a token's times are checked.
pub const TOKEN_LEEWAY_SECS: i64 = limits::TOKEN_LEEWAY_SECS.i64();

/// The algorithm is pinned by configuration; the token's own `alg` header is never trusted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JwtAlgorithm {
    Hs256,
    Rs256,
    Es256,
}

impl JwtAlgorithm {
    fn as_jsonwebtoken(self) -> Algorithm {
        match self {
            JwtAlgorithm::Hs256 => Algorithm::HS256,
            JwtAlgorithm::Rs256 => Algorithm::RS256,
            JwtAlgorithm::Es256 => Algorithm::ES256,
        }
    }
}

/// Where the keys that verify tokens come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JwtKeys {
    /// HS256: a Secrets Manager secret (its ARN), read at run time and re-read on rotation.
    Secret { arn: String },
    /// RS256/ES256: the issuer's JWKS URL (its `jwks_uri`), fetched at init, cached, and
    /// fetched again when a token names a key it does not hold (at a bounded rate).
    JwksUrl(String),
    /// RS256/ES256, for an issuer without a JWKS URL: a JWKS document or one PEM public key.
    PublicKey(String),
}

#[derive(Clone, Debug)]
pub struct JwtSettings {
    pub algorithm: JwtAlgorithm,
    pub keys: JwtKeys,
    pub issuer: String,
    pub audience: String,
    /// Which claim names the caller's groups, and which groups moderate.
    pub roles: RoleClaim,
}

/// Where a token says who moderates: a claim holding group names (Cognito's
/// `cognito:groups`: an array; a space-separated string is read too), and the groups that make
/// a moderator or an admin. Unset, nobody moderates (fails closed).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoleClaim {
    pub claim: Option<String>,
    pub moderator_groups: Vec<String>,
    pub admin_groups: Vec<String>,
}

impl RoleClaim {
    /// `FORUM_ROLE_CLAIM`, `FORUM_MODERATOR_GROUPS` and `FORUM_ADMIN_GROUPS` (comma-separated).
    pub fn from_env(env: &Env) -> Self {
        let groups = |name: &str| {
            env.optional(name)
                .map(|list| {
                    list.split(',')
                        .map(str::trim)
                        .filter(|g| !g.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default()
        };
        RoleClaim {
            claim: env.optional("FORUM_ROLE_CLAIM").map(str::to_string),
            moderator_groups: groups("FORUM_MODERATOR_GROUPS"),
            admin_groups: groups("FORUM_ADMIN_GROUPS"),
        }
    }

    /// The role a token's claims give: the highest of its groups, exact names only.
    pub fn role_of(&self, claims: &serde_json::Map<String, Value>) -> Role {
        let Some(value) = self.claim.as_deref().and_then(|name| claims.get(name)) else {
            return Role::User;
        };
        let groups: Vec<&str> = match value {
            Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
            Value::String(list) => list.split_whitespace().collect(),
            _ => Vec::new(),
        };
        let member = |of: &[String]| groups.iter().any(|g| of.iter().any(|name| name == g));
        if member(&self.admin_groups) {
            Role::Admin
        } else if member(&self.moderator_groups) {
            Role::Moderator
        } else {
            Role::User
        }
    }
}

impl JwtSettings {
    /// The authorizer's settings: `FORUM_JWT_ALGORITHM` (HS256 | RS256 | ES256, required),
    /// `FORUM_JWT_SECRET_ARN` (HS256), or `FORUM_JWT_JWKS_URL` or `FORUM_JWT_PUBLIC_KEY`
    /// (RS256/ES256: the issuer's JWKS URL, or a JWKS document or PEM),
    /// `FORUM_JWT_ISSUER`, `FORUM_JWT_AUDIENCE` (both required).
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let algorithm = match env.required("FORUM_JWT_ALGORITHM")? {
            "HS256" => JwtAlgorithm::Hs256,
            "RS256" => JwtAlgorithm::Rs256,
            "ES256" => JwtAlgorithm::Es256,
            other => {
                return Err(ConfigError(format!(
                    "{} must be HS256, RS256 or ES256, not `{other}`",
                    named("FORUM_JWT_ALGORITHM")
                )));
            }
        };
        let public_key = env.optional("FORUM_JWT_PUBLIC_KEY");
        let jwks_url = env.optional("FORUM_JWT_JWKS_URL");
        let secret_arn = env.secret_arn("FORUM_JWT_SECRET_ARN")?;
        let keys = match (algorithm, secret_arn, jwks_url, public_key) {
            (JwtAlgorithm::Hs256, Some(arn), None, None) => JwtKeys::Secret { arn: arn.to_string() },
            (JwtAlgorithm::Hs256, None, _, _) => {
                return Err(ConfigError(format!(
                    "{} (a Secrets Manager secret holding the key) is required for HS256",
                    named("FORUM_JWT_SECRET_ARN")
                )));
            }
            (JwtAlgorithm::Hs256, Some(_), _, _) => {
                return Err(ConfigError(format!(
                    "HS256 takes no {} or {}",
                    named("FORUM_JWT_JWKS_URL"),
                    named("FORUM_JWT_PUBLIC_KEY")
                )));
            }
            (_, Some(_), _, _) => {
                return Err(ConfigError(format!(
                    "{algorithm:?} takes no {}",
                    named("FORUM_JWT_SECRET_ARN")
                )));
            }
            (_, None, Some(url), None) => JwtKeys::JwksUrl(env.url(url, "FORUM_JWT_JWKS_URL")?),
            (_, None, None, Some(key)) => JwtKeys::PublicKey(key.to_string()),
            (_, None, Some(_), Some(_)) => {
                return Err(ConfigError(format!(
                    "give {} or {}, not both",
                    named("FORUM_JWT_JWKS_URL"),
                    named("FORUM_JWT_PUBLIC_KEY")
                )));
            }
            (_, None, None, None) => {
                return Err(ConfigError(format!(
                    "{} (the issuer's jwks_uri) or {} is required for {algorithm:?}",
                    named("FORUM_JWT_JWKS_URL"),
                    named("FORUM_JWT_PUBLIC_KEY")
                )));
            }
        };
        Ok(JwtSettings {
            algorithm,
            keys,
            issuer: env.required("FORUM_JWT_ISSUER")?.to_string(),
            audience: env.required("FORUM_JWT_AUDIENCE")?.to_string(),
            roles: RoleClaim::from_env(env),
        })
    }
}

/// The claims the forum reads. `iss`, `aud` and `exp` are checked by `jsonwebtoken`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Cognito ID tokens name the user here (and in `preferred_username` when it is set).
    #[serde(rename = "cognito:username", default, skip_serializing_if = "Option::is_none")]
    pub cognito_username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub picture: Option<String>,
    pub exp: i64,
    pub iss: String,
    /// One audience or several (OIDC allows both); `jsonwebtoken` checks ours is among them.
    pub aud: Value,
    /// Every other claim (the role claim is among them, under its configured name).
    #[serde(flatten)]
    pub other: serde_json::Map<String, Value>,
}

/// Verification keys: one, or a key set chosen by the token's `kid`.
enum VerificationKeys {
    One(DecodingKey),
    ByKid(HashMap<String, DecodingKey>),
}

impl VerificationKeys {
    /// The keys of a JWKS document usable with `algorithm`; keys for encryption or for
    /// another algorithm family are left out (a provider's set may mix them).
    fn from_jwks(document: &str, algorithm: JwtAlgorithm) -> Result<Self, String> {
        use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet, PublicKeyUse};
        let set: JwkSet = serde_json::from_str(document).map_err(|e| format!("not a JWKS document: {e}"))?;
        let mut keys = HashMap::new();
        let mut unnamed = Vec::new();
        for jwk in &set.keys {
            let fits = matches!(
                (&jwk.algorithm, algorithm),
                (AlgorithmParameters::RSA(_), JwtAlgorithm::Rs256)
                    | (AlgorithmParameters::EllipticCurve(_), JwtAlgorithm::Es256)
            );
            if !fits || matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
                continue;
            }
            let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("unusable JWK: {e}"))?;
            match &jwk.common.key_id {
                Some(kid) => {
                    keys.insert(kid.clone(), key);
                }
                None => unnamed.push(key),
            }
        }
        match (keys.len(), unnamed.len()) {
            (0, 0) => Err(format!("the JWKS has no key for {algorithm:?}")),
            (0, 1) => Ok(VerificationKeys::One(unnamed.remove(0))),
            (_, 0) => Ok(VerificationKeys::ByKid(keys)),
            _ => Err("a JWKS with several keys needs a `kid` on each".into()),
        }
    }

    /// A JWKS document or one PEM public key, as `FORUM_JWT_PUBLIC_KEY` holds it.
    fn from_document(document: &str, algorithm: JwtAlgorithm) -> Result<Self, String> {
        if document.trim_start().starts_with('{') {
            return VerificationKeys::from_jwks(document, algorithm);
        }
        match algorithm {
            JwtAlgorithm::Rs256 => DecodingKey::from_rsa_pem(document.as_bytes())
                .map(VerificationKeys::One)
                .map_err(|e| format!("not an RSA public key: {e}")),
            JwtAlgorithm::Es256 => DecodingKey::from_ec_pem(document.as_bytes())
                .map(VerificationKeys::One)
                .map_err(|e| format!("not an EC public key: {e}")),
            JwtAlgorithm::Hs256 => Err("HS256 has no public key".into()),
        }
    }

    /// Whether a token naming `kid` (or none) finds a key here.
    fn knows(&self, kid: Option<&str>) -> bool {
        match (self, kid) {
            (VerificationKeys::One(_), _) => true,
            (VerificationKeys::ByKid(keys), Some(kid)) => keys.contains_key(kid),
            (VerificationKeys::ByKid(_), None) => false,
        }
    }

    fn for_kid(&self, kid: Option<&str>) -> Result<&DecodingKey, AuthFailure> {
        match self {
            VerificationKeys::One(key) => Ok(key),
            VerificationKeys::ByKid(keys) => {
                let kid = kid.ok_or_else(|| AuthFailure::Invalid("the token names no signing key (`kid`)".into()))?;
                keys.get(kid)
                    .ok_or_else(|| AuthFailure::Invalid("unknown signing key".into()))
            }
        }
    }
}

/// How long fetched issuer keys are trusted before they are fetched again (a key the issuer
/// withdrew stops verifying within this).
pub const JWKS_REFRESH_AFTER: Duration = Duration::from_secs(3600);
/// The least time between two fetches caused by tokens naming a key not held: a flood of
/// tokens with made-up `kid`s costs the issuer one request a minute per container.
pub const JWKS_UNKNOWN_KID_INTERVAL: Duration = Duration::from_secs(60);
/// The least time between two attempts while no key set could be fetched at all.
pub const JWKS_RETRY_AFTER: Duration = Duration::from_secs(5);
/// A JWKS fetch gives up after this (the authorizer's own timeout is well above).
pub const JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(2);
/// A key set larger than this is refused unread (Cognito's is about 1 KB).
pub const MAX_JWKS_BYTES: usize = 256 * 1024;

type HttpsClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    http_body_util::Empty<bytes::Bytes>,
>;

struct JwksState {
    keys: Option<Arc<VerificationKeys>>,
    fetched_at: Option<Instant>,
    last_attempt: Option<Instant>,
    /// The last fetch a token naming an unknown key caused (bounded on its own, so a rotation
    /// right after a fetch is still picked up).
    last_unknown_kid: Option<Instant>,
}

/// An issuer's key set, fetched from its JWKS URL and kept as described above.
struct JwksCache {
    url: String,
    algorithm: JwtAlgorithm,
    client: HttpsClient,
    state: tokio::sync::Mutex<JwksState>,
}

impl JwksCache {
    fn new(url: &str, algorithm: JwtAlgorithm) -> Result<Self, ConfigError> {
        // An issuer is not an AWS endpoint: the system's roots (the Lambda runtime's CA bundle).
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(provider)
            .map_err(|e| ConfigError(format!("TLS roots for the JWKS URL: {e}")))?
            // Plain http only reaches here in development (configuration refuses it deployed).
            .https_or_http()
            .enable_http1()
            .build();
        let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector);
        Ok(JwksCache {
            url: url.to_string(),
            algorithm,
            client,
            state: tokio::sync::Mutex::new(JwksState {
                keys: None,
                fetched_at: None,
                last_attempt: None,
                last_unknown_kid: None,
            }),
        })
    }

    async fn fetch(&self) -> Result<VerificationKeys, String> {
        use http_body_util::BodyExt;
        let uri: http::Uri = self.url.parse().map_err(|e| format!("JWKS URL: {e}"))?;
        let request = http::Request::get(uri)
            .header(http::header::ACCEPT, "application/json")
            .body(http_body_util::Empty::new())
            .map_err(|e| e.to_string())?;
        let fetched = tokio::time::timeout(JWKS_FETCH_TIMEOUT, async {
            let response = self.client.request(request).await.map_err(|e| e.to_string())?;
            if !response.status().is_success() {
                return Err(format!("the JWKS URL answered {}", response.status()));
            }
            let body = http_body_util::Limited::new(response.into_body(), MAX_JWKS_BYTES)
                .collect()
                .await
                .map_err(|e| format!("reading the key set: {e}"))?;
            Ok(body.to_bytes())
        })
        .await
        .map_err(|_| format!("no key set within {JWKS_FETCH_TIMEOUT:?}"))??;
        let text = std::str::from_utf8(&fetched).map_err(|_| "the key set is not UTF-8".to_string())?;
        VerificationKeys::from_jwks(text, self.algorithm)
    }

    /// The keys to verify a token naming `kid` with: fetched if none are held yet, if they
    /// are older than [`JWKS_REFRESH_AFTER`], or if none is `kid` (each at a bounded rate).
    async fn keys_for(&self, kid: Option<&str>) -> Result<Arc<VerificationKeys>, AuthFailure> {
        let mut state = self.state.lock().await;
        let since = |at: Option<Instant>, interval: Duration| at.is_none_or(|at| at.elapsed() >= interval);
        let retry = since(state.last_attempt, JWKS_RETRY_AFTER);
        let fetch = match &state.keys {
            None => retry,
            Some(_) if since(state.fetched_at, JWKS_REFRESH_AFTER) => retry,
            Some(keys) if !keys.knows(kid) && since(state.last_unknown_kid, JWKS_UNKNOWN_KID_INTERVAL) => {
                state.last_unknown_kid = Some(Instant::now());
                true
            }
            Some(_) => false,
        };
        if fetch {
            state.last_attempt = Some(Instant::now());
            match self.fetch().await {
                Ok(keys) => {
                    tracing::info!(url = %self.url, "issuer keys fetched");
                    state.keys = Some(Arc::new(keys));
                    state.fetched_at = Some(Instant::now());
                }
                Err(why) => tracing::warn!(url = %self.url, %why, "issuer keys not fetched; keeping what was held"),
            }
        }
        state
            .keys
            .clone()
            .ok_or_else(|| AuthFailure::Unavailable("the issuer's signing keys could not be fetched".into()))
    }
}

/// Where a verifier's keys are, at run time.
enum KeySource {
    Fixed(VerificationKeys),
    /// HS256: the current and the previous version of a secret both verify.
    Secret(Box<SecretSource>),
    Jwks(Box<JwksCache>),
}

/// Verifies tokens with keys and validation built once per cold start.
pub struct TokenVerifier {
    keys: KeySource,
    validation: Validation,
    roles: RoleClaim,
}

impl TokenVerifier {
    /// A verifier for `settings`. HS256 reads its secret with `secrets` (required then).
    pub fn new(
        settings: &JwtSettings,
        secrets: Option<aws_sdk_secretsmanager::Client>,
        deployment: Deployment,
    ) -> Result<Self, ConfigError> {
        let keys = match (&settings.keys, settings.algorithm) {
            (JwtKeys::Secret { arn }, JwtAlgorithm::Hs256) => {
                let client = secrets
                    .ok_or_else(|| ConfigError("HS256 needs a Secrets Manager client for JwtSecretArn".into()))?;
                KeySource::Secret(Box::new(SecretSource::new(
                    forum_store::aws::built(client),
                    arn.clone(),
                    "JwtSecretArn",
                    deployment,
                )))
            }
            (JwtKeys::JwksUrl(url), JwtAlgorithm::Rs256 | JwtAlgorithm::Es256) => {
                KeySource::Jwks(Box::new(JwksCache::new(url, settings.algorithm)?))
            }
            (JwtKeys::PublicKey(document), JwtAlgorithm::Rs256 | JwtAlgorithm::Es256) => KeySource::Fixed(
                VerificationKeys::from_document(document, settings.algorithm)
                    .map_err(|e| ConfigError(format!("FORUM_JWT_PUBLIC_KEY (template parameter JwtPublicKey): {e}")))?,
            ),
            (keys, algorithm) => {
                return Err(ConfigError(format!("{algorithm:?} cannot verify with {keys:?}")));
            }
        };
        Ok(TokenVerifier {
            keys,
            validation: validation(settings),
            roles: settings.roles.clone(),
        })
    }

    /// An HS256 verifier with a fixed secret (tests, tools).
    pub fn with_hmac_secret(secret: &str, issuer: &str, audience: &str) -> Self {
        let settings = JwtSettings {
            algorithm: JwtAlgorithm::Hs256,
            keys: JwtKeys::Secret { arn: String::new() },
            issuer: issuer.to_string(),
            audience: audience.to_string(),
            roles: RoleClaim::default(),
        };
        TokenVerifier {
            keys: KeySource::Fixed(VerificationKeys::One(DecodingKey::from_secret(secret.as_bytes()))),
            validation: validation(&settings),
            roles: settings.roles.clone(),
        }
    }

    /// Reads the keys during init: a secret that cannot be used stops the function; keys
    /// that cannot be read yet are read again on the first requests (answered 503 until then).
    pub async fn load_at_init(&self) -> Result<(), ConfigError> {
        match &self.keys {
            KeySource::Fixed(_) => Ok(()),
            KeySource::Secret(source) => source.load_at_init().await.map_err(|e| ConfigError(e.to_string())),
            KeySource::Jwks(cache) => {
                if let Err(why) = cache.keys_for(None).await {
                    tracing::warn!(%why, "issuer keys not fetched during init; requests will retry");
                }
                Ok(())
            }
        }
    }

    /// Verifies a token (with or without its `Bearer ` prefix) and returns the caller it names.
    pub async fn verify(&self, token: &str) -> Result<Caller, AuthFailure> {
        let token = strip_bearer(token).ok_or(AuthFailure::Missing)?;
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthFailure::Invalid("malformed token".into()))?;
        let kid = header.kid.as_deref();
        match &self.keys {
            KeySource::Fixed(keys) => self.decode(token, keys.for_kid(kid)?),
            KeySource::Jwks(cache) => {
                let keys = cache.keys_for(kid).await?;
                self.decode(token, keys.for_kid(kid)?)
            }
            KeySource::Secret(source) => {
                let versions = source.get().await.map_err(|e| match e {
                    SecretError::Unavailable { .. } => AuthFailure::Unavailable(e.to_string()),
                    SecretError::Unusable(why) => AuthFailure::Unavailable(why),
                })?;
                let mut outcome = Err(AuthFailure::Invalid("bad signature".into()));
                for secret in versions.all() {
                    outcome = self.decode(token, &DecodingKey::from_secret(secret.as_bytes()));
                    if !matches!(&outcome, Err(AuthFailure::Invalid(why)) if why == "bad signature") {
                        break;
                    }
                }
                outcome
            }
        }
    }

    fn decode(&self, token: &str, key: &DecodingKey) -> Result<Caller, AuthFailure> {
        let data = decode::<Claims>(token, key, &self.validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            match e.kind() {
                ErrorKind::ExpiredSignature => AuthFailure::Expired,
                ErrorKind::InvalidIssuer => AuthFailure::Invalid("wrong issuer".into()),
                ErrorKind::InvalidAudience => AuthFailure::Invalid("wrong audience".into()),
                ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                    AuthFailure::Invalid("algorithm not accepted".into())
                }
                ErrorKind::InvalidSignature => AuthFailure::Invalid("bad signature".into()),
                ErrorKind::MissingRequiredClaim(claim) => AuthFailure::Invalid(format!("missing claim `{claim}`")),
                _ => AuthFailure::Invalid("malformed token".into()),
            }
        })?;
        let role = self.roles.role_of(&data.claims.other);
        Caller::from_claims(data.claims, role)
    }
}

fn validation(settings: &JwtSettings) -> Validation {
    let mut validation = Validation::new(settings.algorithm.as_jsonwebtoken());
    validation.set_issuer(&[settings.issuer.as_str()]);
    validation.set_audience(&[settings.audience.as_str()]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation.leeway = TOKEN_LEEWAY_SECS as u64;
    // A token is not valid before its `nbf` (jsonwebtoken checks it only when asked).
    validation.validate_nbf = true;
    validation
}

fn strip_bearer(raw: &str) -> Option<&str> {
    let raw = raw.trim();
    if raw.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = match raw.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
        Some(_) => return None,
        None => raw,
    };
    (!token.is_empty()).then_some(token)
}

/// Why a token was not accepted; becomes the 401's message (503 when the keys to judge it
/// could not be read: the token may well be good).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthFailure {
    Missing,
    Expired,
    Invalid(String),
    Unavailable(String),
}

impl std::fmt::Display for AuthFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthFailure::Missing => f.write_str("missing bearer token"),
            AuthFailure::Expired => f.write_str("token expired"),
            AuthFailure::Invalid(why) => write!(f, "invalid token: {why}"),
            AuthFailure::Unavailable(why) => write!(f, "tokens cannot be verified right now: {why}"),
        }
    }
}

/// The authenticated user making a request, as the authorizer verified it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub user_id: String,
    pub username: String,
    pub avatar_url: Option<String>,
    /// Token expiry (Unix seconds): re-checked by handlers because the gateway caches answers.
    pub expires_at: i64,
    /// From the token's role claim, as the authorizer read it; only it can set one.
    pub role: Role,
}

const MAX_USER_ID_LEN: usize = limits::USER_ID_BYTES.usize();
pub use forum_domain::model::MAX_USERNAME_CHARS;

/// Whether a token's `sub` (or a user id a request names) can be a user id here: non-empty,
/// bounded, no key separator, no whitespace, control or invisible characters.
pub fn usable_user_id(user_id: &str) -> bool {
    !user_id.is_empty()
        && user_id.len() <= MAX_USER_ID_LEN
        && !user_id.contains('#')
        && !user_id
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || validate::is_invisible(c))
}

impl Caller {
    fn from_claims(claims: Claims, role: Role) -> Result<Self, AuthFailure> {
        // `sub` is the user exactly as signed: never trimmed or folded, so " alice" is not
        // "alice". Whitespace and control characters make it unusable rather than ambiguous.
        let user_id = claims.sub;
        if !usable_user_id(&user_id) {
            return Err(AuthFailure::Invalid("unusable `sub` claim".into()));
        }
        let username = claims
            .preferred_username
            .or(claims.username)
            .or(claims.cognito_username)
            .and_then(|u| validate::display_name(&u))
            .unwrap_or_else(|| user_id.clone());
        let username: String = username.chars().take(MAX_USERNAME_CHARS).collect();
        // An avatar the forum would echo to browsers must be a safe https URL; drop anything else.
        let avatar_url = claims.picture.and_then(|p| validate::https_url(&p).ok());
        Ok(Caller {
            user_id,
            username,
            avatar_url,
            expires_at: claims.exp,
            role,
        })
    }

    /// The authorizer's context, as API Gateway passes it on (values must be scalars).
    pub fn to_context(&self) -> HashMap<String, Value> {
        HashMap::from([
            ("user_id".to_string(), Value::from(self.user_id.clone())),
            ("username".to_string(), Value::from(self.username.clone())),
            (
                "avatar_url".to_string(),
                Value::from(self.avatar_url.clone().unwrap_or_default()),
            ),
            ("expires_at".to_string(), Value::from(self.expires_at)),
            ("role".to_string(), Value::from(self.role.as_str())),
        ])
    }

    /// The caller of an API request, from the authorizer context: the only way a handler gets one.
    pub fn from_request(req: &Request) -> Result<Caller, ApiError> {
        let fields = match req.request_context_ref() {
            Some(RequestContext::ApiGatewayV2(ctx)) => ctx.authorizer.as_ref().map(|a| &a.fields),
            _ => None,
        };
        let fields = fields.ok_or_else(|| ApiError::Unauthorized("missing bearer token".into()))?;
        Self::from_context(fields)
    }

    pub fn from_context(fields: &HashMap<String, Value>) -> Result<Caller, ApiError> {
        if let Some(reason) = fields.get("auth_error").and_then(Value::as_str) {
            return Err(ApiError::Unauthorized(reason.to_string()));
        }
        let text = |name: &str| fields.get(name).and_then(Value::as_str).map(str::to_string);
        let (Some(user_id), Some(username)) = (text("user_id"), text("username")) else {
            return Err(ApiError::Unauthorized("missing bearer token".into()));
        };
        // API Gateway may hand context numbers over as strings.
        let expires_at = match fields.get("expires_at") {
            Some(Value::Number(n)) => n.as_i64(),
            Some(Value::String(s)) => s.parse().ok(),
            _ => None,
        }
        .ok_or_else(|| ApiError::Unauthorized("invalid token: no expiry".into()))?;
        if expires_at + TOKEN_LEEWAY_SECS < chrono::Utc::now().timestamp() {
            return Err(ApiError::Unauthorized(AuthFailure::Expired.to_string()));
        }
        let avatar_url = text("avatar_url").filter(|a| !a.is_empty());
        // Anything but a role the authorizer names is an ordinary user.
        let role = text("role").map_or(Role::User, |r| Role::parse(&r));
        Ok(Caller {
            user_id,
            username,
            avatar_url,
            expires_at,
            role,
        })
    }
}

/// The authorizer's answer to an HTTP API request: the "simple response" (payload 2.0).
pub type AuthorizerResponse = ApiGatewayV2CustomAuthorizerSimpleResponse<HashMap<String, Value>>;

/// What the authorizer function is invoked with: an HTTP API request (payload 2.0), or a
/// WebSocket `$connect` (a REQUEST authorizer, which names the route by its `methodArn`).
#[derive(Clone, Debug)]
pub enum AuthorizerEvent {
    Http(Box<ApiGatewayV2CustomAuthorizerV2Request>),
    WebSocket(Box<ApiGatewayCustomAuthorizerRequestTypeRequest>),
}

impl<'de> Deserialize<'de> for AuthorizerEvent {
    /// Both arrive as `"type": "REQUEST"`; only the WebSocket one carries a `methodArn`.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let event = Value::deserialize(deserializer)?;
        if event.get("methodArn").is_some() {
            serde_json::from_value(event)
                .map(|e| AuthorizerEvent::WebSocket(Box::new(e)))
                .map_err(serde::de::Error::custom)
        } else {
            serde_json::from_value(event)
                .map(|e| AuthorizerEvent::Http(Box::new(e)))
                .map_err(serde::de::Error::custom)
        }
    }
}

/// The authorizer's answer to each kind of event.
#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
pub enum AuthorizerAnswer {
    Http(AuthorizerResponse),
    WebSocket(ApiGatewayCustomAuthorizerResponse<HashMap<String, Value>>),
}

/// An authorized answer carrying `context`: a refusal is authorized too, with the reason in
/// its context, so the route answers 401 in the API's own shape (and it is never cached).
fn simple_response(context: HashMap<String, Value>) -> AuthorizerResponse {
    let mut answer = AuthorizerResponse::default();
    answer.is_authorized = true;
    answer.context = context;
    answer
}

/// The authorizer itself: reads the token from the identity source (the `Authorization`
/// header, or `?token=` for WebSocket `$connect`) and answers with the caller or the reason.
/// When the keys to judge the token cannot be read, it fails instead of answering: API Gateway
/// caches answers per token (and would repeat a refusal for minutes), never failures.
pub async fn authorize(
    verifier: &TokenVerifier,
    event: &ApiGatewayV2CustomAuthorizerV2Request,
) -> Result<AuthorizerResponse, AuthFailure> {
    let token = event
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| event.query_string_parameters.get("token").cloned())
        .or_else(|| event.identity_source.as_ref().and_then(|s| s.first().cloned()));
    let verdict = match token {
        Some(token) => verifier.verify(&token).await,
        None => Err(AuthFailure::Missing),
    };
    match verdict {
        Ok(caller) => Ok(simple_response(caller.to_context())),
        Err(failure @ AuthFailure::Unavailable(_)) => Err(failure),
        Err(failure) => {
            tracing::info!(reason = %failure, "token refused");
            Ok(simple_response(HashMap::from([(
                "auth_error".to_string(),
                Value::from(failure.to_string()),
            )])))
        }
    }
}

/// The authorizer's entry point for both APIs. An HTTP API event gets the simple response
/// above. A WebSocket `$connect` event (the token in `?token=`, since browsers cannot set
/// headers there) gets an IAM policy: Allow with the caller as context, or Deny, which refuses
/// the connection. When the keys cannot be read it fails instead (see [`authorize`]).
pub async fn authorize_event(
    verifier: &TokenVerifier,
    event: &AuthorizerEvent,
) -> Result<AuthorizerAnswer, AuthFailure> {
    let request = match event {
        AuthorizerEvent::Http(request) => return authorize(verifier, request).await.map(AuthorizerAnswer::Http),
        AuthorizerEvent::WebSocket(request) => request,
    };
    let token = request
        .query_string_parameters
        .first("token")
        .map(str::to_string)
        .or_else(|| {
            request
                .headers
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        });
    let verdict = match token {
        Some(token) => verifier.verify(&token).await,
        None => Err(AuthFailure::Missing),
    };
    let (principal, effect, context) = match verdict {
        Ok(caller) => (caller.user_id.clone(), IamPolicyEffect::Allow, caller.to_context()),
        Err(failure @ AuthFailure::Unavailable(_)) => return Err(failure),
        Err(failure) => {
            tracing::info!(reason = %failure, "WebSocket connection refused");
            ("anonymous".to_string(), IamPolicyEffect::Deny, HashMap::new())
        }
    };
    let mut statement = IamPolicyStatement::default();
    statement.action = vec!["execute-api:Invoke".to_string()];
    statement.effect = effect;
    statement.resource = request.method_arn.clone().into_iter().collect();
    let mut policy = ApiGatewayCustomAuthorizerPolicy::default();
    policy.version = Some("2012-10-17".to_string());
    policy.statement = vec![statement];
    let mut answer = ApiGatewayCustomAuthorizerResponse::default();
    answer.principal_id = Some(principal);
    answer.policy_document = policy;
    answer.context = context;
    Ok(AuthorizerAnswer::WebSocket(answer))
}

impl From<&Caller> for forum_domain::model::Profile {
    /// The profile a caller's token asks for (shown so unless the name is someone else's).
    fn from(caller: &crate::auth::Caller) -> Self {
        forum_domain::model::Profile {
            user_id: caller.user_id.clone(),
            username: caller.username.clone(),
            avatar_url: caller.avatar_url.clone(),
            token_name: caller.username.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use serde_json::json;

    use super::*;

    use forum_testkit::keys::{EC_PRIVATE, EC_PUBLIC, JWKS, RSA_PRIVATE, RSA_PUBLIC, RSA2_PRIVATE};
    use jsonwebtoken::{EncodingKey, Header, encode};

    const ARN: &str = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:forum/jwt-AbCdEf";

    fn env(pairs: &[(&str, &str)], deployment: Deployment) -> Env {
        Env::new(
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            deployment,
        )
    }

    fn jwt(pairs: &[(&str, &str)], deployment: Deployment) -> Result<JwtSettings, ConfigError> {
        let mut all = vec![
            ("FORUM_JWT_ISSUER", "https://issuer.example"),
            ("FORUM_JWT_AUDIENCE", "forum"),
        ];
        all.extend_from_slice(pairs);
        JwtSettings::from_env(&env(&all, deployment))
    }

    #[test]
    fn hs256_reads_its_key_from_a_secret_named_by_arn() {
        let settings = jwt(
            &[("FORUM_JWT_ALGORITHM", "HS256"), ("FORUM_JWT_SECRET_ARN", ARN)],
            Deployment::Deployed,
        )
        .unwrap();
        assert_eq!(settings.keys, JwtKeys::Secret { arn: ARN.into() });
        for (pairs, names) in [
            (vec![("FORUM_JWT_ALGORITHM", "HS256")], "JwtSecretArn"),
            (
                vec![("FORUM_JWT_ALGORITHM", "HS256"), ("FORUM_JWT_SECRET_ARN", "forum/jwt")],
                "full ARN",
            ),
            (
                vec![
                    ("FORUM_JWT_ALGORITHM", "HS256"),
                    ("FORUM_JWT_SECRET_ARN", ARN),
                    ("FORUM_JWT_PUBLIC_KEY", "{}"),
                ],
                "HS256 takes no",
            ),
        ] {
            let err = jwt(&pairs, Deployment::Deployed).unwrap_err().to_string();
            assert!(err.contains(names), "{pairs:?}: {err}");
        }
    }

    #[test]
    fn asymmetric_algorithms_need_a_jwks_url_or_a_public_key_and_no_secret() {
        let err = jwt(&[("FORUM_JWT_ALGORITHM", "RS256")], Deployment::Deployed)
            .unwrap_err()
            .to_string();
        assert!(err.contains("JwtJwksUrl") && err.contains("JwtPublicKey"), "{err}");
        let url = jwt(
            &[
                ("FORUM_JWT_ALGORITHM", "RS256"),
                ("FORUM_JWT_JWKS_URL", "https://issuer.example/.well-known/jwks.json"),
            ],
            Deployment::Deployed,
        )
        .unwrap();
        assert_eq!(
            url.keys,
            JwtKeys::JwksUrl("https://issuer.example/.well-known/jwks.json".into())
        );
        let key = jwt(
            &[
                ("FORUM_JWT_ALGORITHM", "ES256"),
                ("FORUM_JWT_PUBLIC_KEY", "{\"keys\":[]}"),
            ],
            Deployment::Deployed,
        )
        .unwrap();
        assert_eq!(key.keys, JwtKeys::PublicKey("{\"keys\":[]}".into()));
        for pairs in [
            // Plain http is for development only.
            vec![
                ("FORUM_JWT_ALGORITHM", "RS256"),
                ("FORUM_JWT_JWKS_URL", "http://issuer.example/jwks.json"),
            ],
            vec![
                ("FORUM_JWT_ALGORITHM", "RS256"),
                ("FORUM_JWT_JWKS_URL", "https://issuer.example/jwks.json"),
                ("FORUM_JWT_PUBLIC_KEY", "{}"),
            ],
            vec![
                ("FORUM_JWT_ALGORITHM", "RS256"),
                ("FORUM_JWT_PUBLIC_KEY", "{}"),
                ("FORUM_JWT_SECRET_ARN", ARN),
            ],
        ] {
            assert!(jwt(&pairs, Deployment::Deployed).is_err(), "{pairs:?}");
        }
        assert!(
            jwt(
                &[
                    ("FORUM_JWT_ALGORITHM", "RS256"),
                    ("FORUM_JWT_JWKS_URL", "http://127.0.0.1:9/jwks.json"),
                ],
                Deployment::Development,
            )
            .is_ok()
        );
    }

    #[test]
    fn jwt_settings_have_no_defaults() {
        let err = JwtSettings::from_env(&env(&[], Deployment::Development))
            .unwrap_err()
            .to_string();
        assert!(err.contains("FORUM_JWT_ALGORITHM"), "{err}");
        let err = JwtSettings::from_env(&env(
            &[
                ("FORUM_JWT_ALGORITHM", "HS256"),
                ("FORUM_JWT_SECRET_ARN", ARN),
                ("FORUM_JWT_AUDIENCE", "forum"),
            ],
            Deployment::Deployed,
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("FORUM_JWT_ISSUER"), "{err}");
    }

    fn hs256() -> JwtSettings {
        JwtSettings {
            algorithm: JwtAlgorithm::Hs256,
            keys: JwtKeys::Secret { arn: String::new() },
            issuer: "https://issuer.test".into(),
            audience: "forum".into(),
            roles: RoleClaim::default(),
        }
    }

    fn hs256_verifier() -> TokenVerifier {
        TokenVerifier::with_hmac_secret("test-secret", "https://issuer.test", "forum")
    }

    /// A verifier of fixed keys, for `settings`.
    fn fixed(settings: &JwtSettings) -> Result<TokenVerifier, ConfigError> {
        TokenVerifier::new(settings, None, Deployment::Deployed)
    }

    /// Verification without I/O (fixed keys) needs no runtime.
    trait VerifyNow {
        fn check(&self, token: &str) -> Result<Caller, AuthFailure>;
    }

    impl VerifyNow for TokenVerifier {
        fn check(&self, token: &str) -> Result<Caller, AuthFailure> {
            futures::executor::block_on(self.verify(token))
        }
    }

    fn claims(exp_in: i64) -> serde_json::Value {
        json!({
            "sub": "user-1",
            "preferred_username": "alice",
            "picture": "https://cdn.test/a.png",
            "exp": chrono::Utc::now().timestamp() + exp_in,
            "iss": "https://issuer.test",
            "aud": "forum",
        })
    }

    fn sign(alg: Algorithm, key: &EncodingKey, claims: &serde_json::Value) -> String {
        encode(&Header::new(alg), claims, key).unwrap()
    }

    fn hs(claims: &serde_json::Value, secret: &str) -> String {
        sign(Algorithm::HS256, &EncodingKey::from_secret(secret.as_bytes()), claims)
    }

    #[test]
    fn a_valid_token_names_the_caller() {
        let verifier = hs256_verifier();
        let caller = verifier
            .check(&format!("Bearer {}", hs(&claims(600), "test-secret")))
            .unwrap();
        assert_eq!(caller.user_id, "user-1");
        assert_eq!(caller.username, "alice");
        assert_eq!(caller.avatar_url.as_deref(), Some("https://cdn.test/a.png"));
        // Without the scheme too (WebSocket `?token=`).
        assert!(verifier.check(&hs(&claims(600), "test-secret")).is_ok());
    }

    #[test]
    fn expired_wrong_issuer_audience_or_secret_are_refused() {
        let verifier = hs256_verifier();
        assert_eq!(
            verifier.check(&hs(&claims(-120), "test-secret")),
            Err(AuthFailure::Expired)
        );
        let mut wrong_iss = claims(600);
        wrong_iss["iss"] = json!("https://evil.test");
        assert!(matches!(
            verifier.check(&hs(&wrong_iss, "test-secret")),
            Err(AuthFailure::Invalid(_))
        ));
        let mut wrong_aud = claims(600);
        wrong_aud["aud"] = json!("other-api");
        assert!(matches!(
            verifier.check(&hs(&wrong_aud, "test-secret")),
            Err(AuthFailure::Invalid(_))
        ));
        assert!(matches!(
            verifier.check(&hs(&claims(600), "other-secret")),
            Err(AuthFailure::Invalid(_))
        ));
        let mut no_sub = claims(600);
        no_sub.as_object_mut().unwrap().remove("sub");
        assert!(verifier.check(&hs(&no_sub, "test-secret")).is_err());
        assert_eq!(verifier.check("Bearer "), Err(AuthFailure::Missing));
        assert!(verifier.check("Basic dXNlcjpwdw==").is_err());
        assert!(verifier.check("not-a-jwt").is_err());
    }

    #[test]
    fn alg_none_is_refused() {
        let verifier = hs256_verifier();
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(claims(600).to_string());
        for token in [format!("{header}.{payload}."), format!("{header}.{payload}")] {
            assert!(
                matches!(verifier.check(&token), Err(AuthFailure::Invalid(_))),
                "{token}"
            );
        }
    }

    #[test]
    fn the_algorithm_is_pinned_by_configuration() {
        let rs256 = JwtSettings {
            algorithm: JwtAlgorithm::Rs256,
            keys: JwtKeys::PublicKey(RSA_PUBLIC.into()),
            ..hs256()
        };
        let verifier = fixed(&rs256).unwrap();
        let rsa_key = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap();
        assert!(verifier.check(&sign(Algorithm::RS256, &rsa_key, &claims(600))).is_ok());
        // Algorithm confusion: an HS256 token "signed" with the public key as the HMAC secret.
        let confused = hs(&claims(600), RSA_PUBLIC);
        assert!(matches!(verifier.check(&confused), Err(AuthFailure::Invalid(_))));
        // A valid RS256 token is refused where HS256 is configured.
        let hs_verifier = hs256_verifier();
        assert!(
            hs_verifier
                .check(&sign(Algorithm::RS256, &rsa_key, &claims(600)))
                .is_err()
        );

        let es256 = JwtSettings {
            algorithm: JwtAlgorithm::Es256,
            keys: JwtKeys::PublicKey(EC_PUBLIC.into()),
            ..hs256()
        };
        let verifier = fixed(&es256).unwrap();
        let ec_key = EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap();
        assert!(verifier.check(&sign(Algorithm::ES256, &ec_key, &claims(600))).is_ok());
        assert!(verifier.check(&sign(Algorithm::RS256, &rsa_key, &claims(600))).is_err());
        // A key of the wrong kind is a configuration error, found at start-up.
        assert!(
            fixed(&JwtSettings {
                keys: JwtKeys::PublicKey("not a pem".into()),
                ..es256
            })
            .is_err()
        );
    }

    fn with_kid(alg: Algorithm, key: &EncodingKey, kid: Option<&str>, claims: &serde_json::Value) -> String {
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_string);
        encode(&header, claims, key).unwrap()
    }

    #[test]
    fn a_jwks_chooses_the_key_by_kid() {
        let rs256 = JwtSettings {
            algorithm: JwtAlgorithm::Rs256,
            keys: JwtKeys::PublicKey(JWKS.into()),
            ..hs256()
        };
        let verifier = fixed(&rs256).unwrap();
        let key1 = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap();
        let key2 = EncodingKey::from_rsa_pem(RSA2_PRIVATE.as_bytes()).unwrap();
        let c = claims(600);
        // Both keys of the set (a provider rotating keys publishes the old and the new).
        assert!(
            verifier
                .check(&with_kid(Algorithm::RS256, &key1, Some("key-1"), &c))
                .is_ok()
        );
        assert!(
            verifier
                .check(&with_kid(Algorithm::RS256, &key2, Some("key-2"), &c))
                .is_ok()
        );
        let refused = |token: String| match verifier.check(&token) {
            Err(AuthFailure::Invalid(why)) => why,
            other => panic!("accepted or wrong failure: {other:?}"),
        };
        assert_eq!(
            refused(with_kid(Algorithm::RS256, &key2, Some("key-1"), &c)),
            "bad signature"
        );
        assert_eq!(
            refused(with_kid(Algorithm::RS256, &key1, Some("key-9"), &c)),
            "unknown signing key"
        );
        assert_eq!(
            refused(with_kid(Algorithm::RS256, &key1, None, &c)),
            "the token names no signing key (`kid`)"
        );
        // The EC key is not an RS256 key: a token naming it finds nothing.
        let ec = EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap();
        assert_eq!(
            refused(with_kid(Algorithm::ES256, &ec, Some("ec-1"), &c)),
            "unknown signing key"
        );
        // Algorithm confusion through a key set: still refused.
        let confused = with_kid(
            Algorithm::HS256,
            &EncodingKey::from_secret(RSA_PUBLIC.as_bytes()),
            Some("key-1"),
            &c,
        );
        assert!(verifier.check(&confused).is_err());

        // Pinned to ES256, the same set offers only its EC key.
        let es256 = fixed(&JwtSettings {
            algorithm: JwtAlgorithm::Es256,
            ..rs256.clone()
        })
        .unwrap();
        assert!(es256.check(&with_kid(Algorithm::ES256, &ec, Some("ec-1"), &c)).is_ok());
        assert!(
            es256
                .check(&with_kid(Algorithm::RS256, &key1, Some("key-1"), &c))
                .is_err()
        );
    }

    #[test]
    fn unusable_key_sets_are_configuration_errors() {
        let rs256 = |key: &str| {
            fixed(&JwtSettings {
                algorithm: JwtAlgorithm::Rs256,
                keys: JwtKeys::PublicKey(key.into()),
                ..hs256()
            })
        };
        assert!(rs256(r#"{"keys": []}"#).is_err());
        assert!(rs256(r#"{"keys": [oops"#).is_err());
        // Two keys and no way to tell them apart.
        let mut set: serde_json::Value = serde_json::from_str(JWKS).unwrap();
        for key in set["keys"].as_array_mut().unwrap() {
            key.as_object_mut().unwrap().remove("kid");
        }
        assert!(rs256(&set.to_string()).is_err());
        // One key without a `kid` is simply the key.
        set["keys"].as_array_mut().unwrap().truncate(1);
        let verifier = rs256(&set.to_string()).unwrap();
        let key1 = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap();
        assert!(
            verifier
                .check(&with_kid(Algorithm::RS256, &key1, None, &claims(600)))
                .is_ok()
        );
    }

    #[test]
    fn cognito_id_tokens_and_audience_lists_are_understood() {
        let verifier = hs256_verifier();
        let mut c = claims(600);
        c.as_object_mut().unwrap().remove("preferred_username");
        c["cognito:username"] = json!("carol");
        c["token_use"] = json!("id");
        c["aud"] = json!(["another-client", "forum"]);
        assert_eq!(verifier.check(&hs(&c, "test-secret")).unwrap().username, "carol");
        c["aud"] = json!(["another-client"]);
        assert_eq!(
            verifier.check(&hs(&c, "test-secret")),
            Err(AuthFailure::Invalid("wrong audience".into()))
        );
        // A Cognito access token has no `aud`: refused (send the ID token).
        c.as_object_mut().unwrap().remove("aud");
        assert!(verifier.check(&hs(&c, "test-secret")).is_err());
    }

    #[test]
    fn profile_claims_fall_back_and_unsafe_avatars_are_dropped() {
        let verifier = hs256_verifier();
        let mut c = claims(600);
        c.as_object_mut().unwrap().remove("preferred_username");
        c["username"] = json!("<b>bob</b>");
        c["picture"] = json!("javascript:alert(1)");
        let caller = verifier.check(&hs(&c, "test-secret")).unwrap();
        assert_eq!(caller.username, "bob");
        assert_eq!(caller.avatar_url, None);
        c.as_object_mut().unwrap().remove("username");
        assert_eq!(verifier.check(&hs(&c, "test-secret")).unwrap().username, "user-1");
    }

    fn authorizer_event(
        authorization: Option<&str>,
    ) -> aws_lambda_events::apigw::ApiGatewayV2CustomAuthorizerV2Request {
        let mut headers = serde_json::Map::new();
        if let Some(a) = authorization {
            headers.insert("authorization".into(), json!(a));
        }
        serde_json::from_value(json!({
            "version": "2.0",
            "type": "REQUEST",
            "routeArn": "arn:aws:execute-api:us-east-1:1:api/$default/GET/api/forum/posts",
            "identitySource": authorization.map(|a| vec![a]),
            "routeKey": "GET /api/forum/posts",
            "rawPath": "/api/forum/posts",
            "headers": headers,
            "requestContext": { "http": { "method": "GET", "path": "/api/forum/posts", "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "t" } }
        }))
        .unwrap()
    }

    #[test]
    fn the_authorizer_passes_the_caller_or_the_reason() {
        let verifier = hs256_verifier();
        let token = format!("Bearer {}", hs(&claims(600), "test-secret"));
        let ok = futures::executor::block_on(authorize(&verifier, &authorizer_event(Some(&token)))).unwrap();
        assert!(ok.is_authorized);
        let caller = Caller::from_context(&ok.context).unwrap();
        assert_eq!(caller.user_id, "user-1");

        for event in [authorizer_event(None), authorizer_event(Some("Bearer garbage"))] {
            let refused = futures::executor::block_on(authorize(&verifier, &event)).unwrap();
            let err = Caller::from_context(&refused.context).unwrap_err();
            assert_eq!(err.status(), 401);
        }
    }

    #[test]
    fn handlers_recheck_expiry_because_the_gateway_caches_answers() {
        let mut context = Caller {
            user_id: "u".into(),
            username: "n".into(),
            avatar_url: None,
            expires_at: chrono::Utc::now().timestamp() - 3600,
            role: Role::User,
        }
        .to_context();
        assert_eq!(Caller::from_context(&context).unwrap_err().status(), 401);
        // API Gateway may pass numbers as strings.
        context.insert(
            "expires_at".into(),
            json!((chrono::Utc::now().timestamp() + 60).to_string()),
        );
        assert!(Caller::from_context(&context).is_ok());
        assert!(Caller::from_context(&HashMap::new()).is_err());
    }

    #[test]
    fn roles_come_only_from_the_configured_claim_and_groups() {
        let roles = RoleClaim {
            claim: Some("cognito:groups".into()),
            moderator_groups: vec!["moderators".into()],
            admin_groups: vec!["admins".into()],
        };
        let role = |claims: serde_json::Value| roles.role_of(claims.as_object().unwrap());
        assert_eq!(role(json!({"cognito:groups": ["moderators"]})), Role::Moderator);
        assert_eq!(role(json!({"cognito:groups": ["readers", "admins"]})), Role::Admin);
        assert_eq!(role(json!({"cognito:groups": "readers moderators"})), Role::Moderator);
        // Another claim, another spelling, another shape: an ordinary user.
        assert_eq!(role(json!({"groups": ["moderators"]})), Role::User);
        assert_eq!(role(json!({"cognito:groups": ["Moderators"]})), Role::User);
        assert_eq!(role(json!({"cognito:groups": {"moderators": true}})), Role::User);
        assert_eq!(role(json!({"role": "moderator"})), Role::User);
        assert_eq!(role(json!({})), Role::User);
        // Unconfigured: nobody moderates, whatever the token says.
        let none = RoleClaim::default();
        assert_eq!(
            none.role_of(json!({"cognito:groups": ["moderators"]}).as_object().unwrap()),
            Role::User
        );

        // Signed with the right key, the claim is read; the context carries it to handlers.
        let verifier = TokenVerifier {
            roles: roles.clone(),
            ..hs256_verifier()
        };
        let mut moderator = claims(600);
        moderator["cognito:groups"] = json!(["moderators"]);
        let caller = verifier.check(&hs(&moderator, "test-secret")).unwrap();
        assert_eq!(caller.role, Role::Moderator);
        assert_eq!(
            Caller::from_context(&caller.to_context()).unwrap().role,
            Role::Moderator
        );
        // A context without a role, or with one the authorizer never writes, is a user.
        let mut context = caller.to_context();
        context.insert("role".into(), json!("superuser"));
        assert_eq!(Caller::from_context(&context).unwrap().role, Role::User);
        context.remove("role");
        assert_eq!(Caller::from_context(&context).unwrap().role, Role::User);
    }
}
