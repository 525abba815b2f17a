//! Identity: JWT verification (the authorizer) and the caller it hands to handlers.
//!
//! The authorizer verifies the token and passes the caller's identity to the route in the
//! request context. Tokens that fail verification are *not* denied at the gateway: the
//! authorizer passes the reason instead, and the handler answers 401 in the API's own error
//! shape (HTTP APIs cannot restyle an authorizer's denial). Handlers never run for a caller
//! without checking it: [`Caller::from_request`] is the only way to get one.

use std::collections::HashMap;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use lambda_http::{Request, RequestExt, request::RequestContext};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::ApiError;
use crate::validate;

/// Clock skew tolerated on `exp` and `nbf`, everywhere a token's times are checked.
pub const TOKEN_LEEWAY_SECS: i64 = 30;

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

#[derive(Clone, Debug)]
pub struct JwtSettings {
    pub algorithm: JwtAlgorithm,
    /// The HS256 secret; for RS256/ES256 a PEM public key, or a JWKS document (JSON, as an
    /// OIDC issuer publishes at its `jwks_uri`, e.g. Cognito's `.well-known/jwks.json`) whose
    /// keys are chosen by the token's `kid`.
    pub key: String,
    pub issuer: String,
    pub audience: String,
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
}

/// The verification keys: one, or a key set chosen by the token's `kid`.
enum VerificationKeys {
    One(DecodingKey),
    ByKid(HashMap<String, DecodingKey>),
}

impl VerificationKeys {
    /// The keys of a JWKS document usable with `algorithm`; keys for encryption or for
    /// another algorithm family are left out (a provider's set may mix them).
    fn from_jwks(document: &str, algorithm: JwtAlgorithm) -> Result<Self, String> {
        use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet, PublicKeyUse};
        let set: JwkSet =
            serde_json::from_str(document).map_err(|e| format!("FORUM_JWT_PUBLIC_KEY is not a JWKS document: {e}"))?;
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
            let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("FORUM_JWT_PUBLIC_KEY: unusable JWK: {e}"))?;
            match &jwk.common.key_id {
                Some(kid) => {
                    keys.insert(kid.clone(), key);
                }
                None => unnamed.push(key),
            }
        }
        match (keys.len(), unnamed.len()) {
            (0, 0) => Err(format!("FORUM_JWT_PUBLIC_KEY: the JWKS has no key for {algorithm:?}")),
            (0, 1) => Ok(VerificationKeys::One(unnamed.remove(0))),
            (_, 0) => Ok(VerificationKeys::ByKid(keys)),
            _ => Err("FORUM_JWT_PUBLIC_KEY: a JWKS with several keys needs a `kid` on each".into()),
        }
    }

    fn for_token(&self, token: &str) -> Result<&DecodingKey, AuthFailure> {
        match self {
            VerificationKeys::One(key) => Ok(key),
            VerificationKeys::ByKid(keys) => {
                let header =
                    jsonwebtoken::decode_header(token).map_err(|_| AuthFailure::Invalid("malformed token".into()))?;
                let kid = header
                    .kid
                    .ok_or_else(|| AuthFailure::Invalid("the token names no signing key (`kid`)".into()))?;
                keys.get(&kid)
                    .ok_or_else(|| AuthFailure::Invalid("unknown signing key".into()))
            }
        }
    }
}

/// Verifies tokens with keys and validation built once per cold start.
pub struct TokenVerifier {
    keys: VerificationKeys,
    validation: Validation,
}

impl TokenVerifier {
    pub fn new(settings: &JwtSettings) -> Result<Self, String> {
        let is_jwks = settings.key.trim_start().starts_with('{');
        let keys = match settings.algorithm {
            JwtAlgorithm::Hs256 => VerificationKeys::One(DecodingKey::from_secret(settings.key.as_bytes())),
            JwtAlgorithm::Rs256 | JwtAlgorithm::Es256 if is_jwks => {
                VerificationKeys::from_jwks(&settings.key, settings.algorithm)?
            }
            JwtAlgorithm::Rs256 => VerificationKeys::One(
                DecodingKey::from_rsa_pem(settings.key.as_bytes())
                    .map_err(|e| format!("FORUM_JWT_PUBLIC_KEY is not an RSA public key: {e}"))?,
            ),
            JwtAlgorithm::Es256 => VerificationKeys::One(
                DecodingKey::from_ec_pem(settings.key.as_bytes())
                    .map_err(|e| format!("FORUM_JWT_PUBLIC_KEY is not an EC public key: {e}"))?,
            ),
        };
        let mut validation = Validation::new(settings.algorithm.as_jsonwebtoken());
        validation.set_issuer(&[settings.issuer.as_str()]);
        validation.set_audience(&[settings.audience.as_str()]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = TOKEN_LEEWAY_SECS as u64;
        // A token is not valid before its `nbf` (jsonwebtoken checks it only when asked).
        validation.validate_nbf = true;
        Ok(TokenVerifier { keys, validation })
    }

    /// Verifies a token (with or without its `Bearer ` prefix) and returns the caller it names.
    pub fn verify(&self, token: &str) -> Result<Caller, AuthFailure> {
        let token = strip_bearer(token).ok_or(AuthFailure::Missing)?;
        let key = self.keys.for_token(token)?;
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
        Caller::from_claims(data.claims)
    }
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

/// Why a token was not accepted; becomes the 401's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthFailure {
    Missing,
    Expired,
    Invalid(String),
}

impl std::fmt::Display for AuthFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthFailure::Missing => f.write_str("missing bearer token"),
            AuthFailure::Expired => f.write_str("token expired"),
            AuthFailure::Invalid(why) => write!(f, "invalid token: {why}"),
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
}

const MAX_USER_ID_LEN: usize = 128;
pub use crate::model::MAX_USERNAME_CHARS;

impl Caller {
    fn from_claims(claims: Claims) -> Result<Self, AuthFailure> {
        // `sub` is the user exactly as signed: never trimmed or folded, so " alice" is not
        // "alice". Whitespace and control characters make it unusable rather than ambiguous.
        let user_id = claims.sub;
        if user_id.is_empty()
            || user_id.len() > MAX_USER_ID_LEN
            || user_id.contains('#')
            || user_id
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || validate::is_invisible(c))
        {
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
        Ok(Caller {
            user_id,
            username,
            avatar_url,
            expires_at,
        })
    }
}

/// The authorizer's answer (HTTP API "simple response" format, also valid for `$connect`).
#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizerResponse {
    pub is_authorized: bool,
    pub context: HashMap<String, Value>,
}

/// The authorizer itself: reads the token from the identity source (the `Authorization`
/// header, or `?token=` for WebSocket `$connect`) and answers with the caller or the reason.
pub fn authorize(
    verifier: &TokenVerifier,
    event: &aws_lambda_events::apigw::ApiGatewayV2CustomAuthorizerV2Request,
) -> AuthorizerResponse {
    let token = event
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| event.query_string_parameters.get("token").cloned())
        .or_else(|| event.identity_source.as_ref().and_then(|s| s.first().cloned()));
    let verdict = match token {
        Some(token) => verifier.verify(&token),
        None => Err(AuthFailure::Missing),
    };
    match verdict {
        Ok(caller) => AuthorizerResponse {
            is_authorized: true,
            context: caller.to_context(),
        },
        Err(failure) => {
            tracing::info!(reason = %failure, "token refused");
            AuthorizerResponse {
                is_authorized: true,
                context: HashMap::from([("auth_error".to_string(), Value::from(failure.to_string()))]),
            }
        }
    }
}

/// The authorizer's entry point for both APIs. An HTTP API event (payload 2.0) gets the simple
/// response above. A WebSocket `$connect` event (REST-style, with `methodArn`; the token in
/// `?token=` since browsers cannot set headers there) gets an IAM policy: Allow with the
/// caller as context, or Deny, which refuses the connection.
pub fn authorize_event(verifier: &TokenVerifier, event: &Value) -> Result<Value, String> {
    if let Some(method_arn) = event.get("methodArn").and_then(Value::as_str) {
        let token = event["queryStringParameters"]["token"]
            .as_str()
            .or_else(|| event["headers"]["Authorization"].as_str())
            .or_else(|| event["headers"]["authorization"].as_str());
        let verdict = token.map_or(Err(AuthFailure::Missing), |t| verifier.verify(t));
        let (principal, effect, context) = match verdict {
            Ok(caller) => (caller.user_id.clone(), "Allow", caller.to_context()),
            Err(failure) => {
                tracing::info!(reason = %failure, "WebSocket connection refused");
                ("anonymous".to_string(), "Deny", HashMap::new())
            }
        };
        return Ok(serde_json::json!({
            "principalId": principal,
            "policyDocument": {
                "Version": "2012-10-17",
                "Statement": [{ "Action": "execute-api:Invoke", "Effect": effect, "Resource": method_arn }]
            },
            "context": context,
        }));
    }
    let request: aws_lambda_events::apigw::ApiGatewayV2CustomAuthorizerV2Request =
        serde_json::from_value(event.clone()).map_err(|e| format!("not an authorizer event: {e}"))?;
    serde_json::to_value(authorize(verifier, &request)).map_err(|e| e.to_string())
}

/// Signs an HS256 token with the configured secret: what `forum-local token` prints.
pub fn issue_token(
    settings: &JwtSettings,
    sub: &str,
    username: &str,
    picture: Option<&str>,
    ttl_secs: i64,
) -> Result<String, String> {
    if settings.algorithm != JwtAlgorithm::Hs256 {
        return Err("only HS256 tokens can be issued locally".into());
    }
    let claims = Claims {
        sub: sub.to_string(),
        preferred_username: Some(username.to_string()),
        username: None,
        cognito_username: None,
        picture: picture.map(str::to_string),
        exp: chrono::Utc::now().timestamp() + ttl_secs,
        iss: settings.issuer.clone(),
        aud: Value::from(settings.audience.clone()),
    };
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(settings.key.as_bytes()),
    )
    .map_err(|e| e.to_string())
}

/// A stable user id for a local username, so `forum-local token alice` is always the same user.
pub fn local_user_id(username: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(username.as_bytes());
    let hex: String = digest.iter().take(10).map(|b| format!("{b:02x}")).collect();
    format!("local-{hex}")
}

impl From<&Caller> for crate::model::Profile {
    /// The profile a caller's token asks for (shown so unless the name is someone else's).
    fn from(caller: &crate::auth::Caller) -> Self {
        crate::model::Profile {
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

    const RSA_PRIVATE: &str = include_str!("../tests/fixtures/rsa_private.pem");
    const RSA_PUBLIC: &str = include_str!("../tests/fixtures/rsa_public.pem");
    const EC_PRIVATE: &str = include_str!("../tests/fixtures/ec_private.pem");
    const EC_PUBLIC: &str = include_str!("../tests/fixtures/ec_public.pem");
    /// key-1 (RSA_PUBLIC), key-2 (RSA2_PRIVATE's public half) and ec-1 (EC_PUBLIC).
    const JWKS: &str = include_str!("../tests/fixtures/jwks.json");
    const RSA2_PRIVATE: &str = include_str!("../tests/fixtures/rsa2_private.pem");

    fn hs256() -> JwtSettings {
        JwtSettings {
            algorithm: JwtAlgorithm::Hs256,
            key: "test-secret".into(),
            issuer: "https://issuer.test".into(),
            audience: "forum".into(),
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
        let verifier = TokenVerifier::new(&hs256()).unwrap();
        let caller = verifier
            .verify(&format!("Bearer {}", hs(&claims(600), "test-secret")))
            .unwrap();
        assert_eq!(caller.user_id, "user-1");
        assert_eq!(caller.username, "alice");
        assert_eq!(caller.avatar_url.as_deref(), Some("https://cdn.test/a.png"));
        // Without the scheme too (WebSocket `?token=`).
        assert!(verifier.verify(&hs(&claims(600), "test-secret")).is_ok());
    }

    #[test]
    fn expired_wrong_issuer_audience_or_secret_are_refused() {
        let verifier = TokenVerifier::new(&hs256()).unwrap();
        assert_eq!(
            verifier.verify(&hs(&claims(-120), "test-secret")),
            Err(AuthFailure::Expired)
        );
        let mut wrong_iss = claims(600);
        wrong_iss["iss"] = json!("https://evil.test");
        assert!(matches!(
            verifier.verify(&hs(&wrong_iss, "test-secret")),
            Err(AuthFailure::Invalid(_))
        ));
        let mut wrong_aud = claims(600);
        wrong_aud["aud"] = json!("other-api");
        assert!(matches!(
            verifier.verify(&hs(&wrong_aud, "test-secret")),
            Err(AuthFailure::Invalid(_))
        ));
        assert!(matches!(
            verifier.verify(&hs(&claims(600), "other-secret")),
            Err(AuthFailure::Invalid(_))
        ));
        let mut no_sub = claims(600);
        no_sub.as_object_mut().unwrap().remove("sub");
        assert!(verifier.verify(&hs(&no_sub, "test-secret")).is_err());
        assert_eq!(verifier.verify("Bearer "), Err(AuthFailure::Missing));
        assert!(verifier.verify("Basic dXNlcjpwdw==").is_err());
        assert!(verifier.verify("not-a-jwt").is_err());
    }

    #[test]
    fn alg_none_is_refused() {
        let verifier = TokenVerifier::new(&hs256()).unwrap();
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(claims(600).to_string());
        for token in [format!("{header}.{payload}."), format!("{header}.{payload}")] {
            assert!(
                matches!(verifier.verify(&token), Err(AuthFailure::Invalid(_))),
                "{token}"
            );
        }
    }

    #[test]
    fn the_algorithm_is_pinned_by_configuration() {
        let rs256 = JwtSettings {
            algorithm: JwtAlgorithm::Rs256,
            key: RSA_PUBLIC.into(),
            ..hs256()
        };
        let verifier = TokenVerifier::new(&rs256).unwrap();
        let rsa_key = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap();
        assert!(verifier.verify(&sign(Algorithm::RS256, &rsa_key, &claims(600))).is_ok());
        // Algorithm confusion: an HS256 token "signed" with the public key as the HMAC secret.
        let confused = hs(&claims(600), RSA_PUBLIC);
        assert!(matches!(verifier.verify(&confused), Err(AuthFailure::Invalid(_))));
        // A valid RS256 token is refused where HS256 is configured.
        let hs_verifier = TokenVerifier::new(&hs256()).unwrap();
        assert!(
            hs_verifier
                .verify(&sign(Algorithm::RS256, &rsa_key, &claims(600)))
                .is_err()
        );

        let es256 = JwtSettings {
            algorithm: JwtAlgorithm::Es256,
            key: EC_PUBLIC.into(),
            ..hs256()
        };
        let verifier = TokenVerifier::new(&es256).unwrap();
        let ec_key = EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap();
        assert!(verifier.verify(&sign(Algorithm::ES256, &ec_key, &claims(600))).is_ok());
        assert!(
            verifier
                .verify(&sign(Algorithm::RS256, &rsa_key, &claims(600)))
                .is_err()
        );
        // A key of the wrong kind is a configuration error, found at start-up.
        assert!(
            TokenVerifier::new(&JwtSettings {
                key: "not a pem".into(),
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
            key: JWKS.into(),
            ..hs256()
        };
        let verifier = TokenVerifier::new(&rs256).unwrap();
        let key1 = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap();
        let key2 = EncodingKey::from_rsa_pem(RSA2_PRIVATE.as_bytes()).unwrap();
        let c = claims(600);
        // Both keys of the set (a provider rotating keys publishes the old and the new).
        assert!(
            verifier
                .verify(&with_kid(Algorithm::RS256, &key1, Some("key-1"), &c))
                .is_ok()
        );
        assert!(
            verifier
                .verify(&with_kid(Algorithm::RS256, &key2, Some("key-2"), &c))
                .is_ok()
        );
        let refused = |token: String| match verifier.verify(&token) {
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
        assert!(verifier.verify(&confused).is_err());

        // Pinned to ES256, the same set offers only its EC key.
        let es256 = TokenVerifier::new(&JwtSettings {
            algorithm: JwtAlgorithm::Es256,
            ..rs256.clone()
        })
        .unwrap();
        assert!(es256.verify(&with_kid(Algorithm::ES256, &ec, Some("ec-1"), &c)).is_ok());
        assert!(
            es256
                .verify(&with_kid(Algorithm::RS256, &key1, Some("key-1"), &c))
                .is_err()
        );
    }

    #[test]
    fn unusable_key_sets_are_configuration_errors() {
        let rs256 = |key: &str| {
            TokenVerifier::new(&JwtSettings {
                algorithm: JwtAlgorithm::Rs256,
                key: key.into(),
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
                .verify(&with_kid(Algorithm::RS256, &key1, None, &claims(600)))
                .is_ok()
        );
    }

    #[test]
    fn cognito_id_tokens_and_audience_lists_are_understood() {
        let verifier = TokenVerifier::new(&hs256()).unwrap();
        let mut c = claims(600);
        c.as_object_mut().unwrap().remove("preferred_username");
        c["cognito:username"] = json!("carol");
        c["token_use"] = json!("id");
        c["aud"] = json!(["another-client", "forum"]);
        assert_eq!(verifier.verify(&hs(&c, "test-secret")).unwrap().username, "carol");
        c["aud"] = json!(["another-client"]);
        assert_eq!(
            verifier.verify(&hs(&c, "test-secret")),
            Err(AuthFailure::Invalid("wrong audience".into()))
        );
        // A Cognito access token has no `aud`: refused (send the ID token).
        c.as_object_mut().unwrap().remove("aud");
        assert!(verifier.verify(&hs(&c, "test-secret")).is_err());
    }

    #[test]
    fn profile_claims_fall_back_and_unsafe_avatars_are_dropped() {
        let verifier = TokenVerifier::new(&hs256()).unwrap();
        let mut c = claims(600);
        c.as_object_mut().unwrap().remove("preferred_username");
        c["username"] = json!("<b>bob</b>");
        c["picture"] = json!("javascript:alert(1)");
        let caller = verifier.verify(&hs(&c, "test-secret")).unwrap();
        assert_eq!(caller.username, "bob");
        assert_eq!(caller.avatar_url, None);
        c.as_object_mut().unwrap().remove("username");
        assert_eq!(verifier.verify(&hs(&c, "test-secret")).unwrap().username, "user-1");
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
        let verifier = TokenVerifier::new(&hs256()).unwrap();
        let token = format!("Bearer {}", hs(&claims(600), "test-secret"));
        let ok = authorize(&verifier, &authorizer_event(Some(&token)));
        assert!(ok.is_authorized);
        let caller = Caller::from_context(&ok.context).unwrap();
        assert_eq!(caller.user_id, "user-1");

        for event in [authorizer_event(None), authorizer_event(Some("Bearer garbage"))] {
            let refused = authorize(&verifier, &event);
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
    fn local_user_ids_are_stable_and_distinct() {
        assert_eq!(local_user_id("alice"), local_user_id("alice"));
        assert_ne!(local_user_id("alice"), local_user_id("bob"));
        assert!(!local_user_id("alice").contains('#'));
    }
}
