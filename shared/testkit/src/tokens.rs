//! Tokens for development and tests: HS256 tokens signed with a development secret
//! (`forum-local token`, the web client's local sign-in, the tests, the load generator
//! against an HS256 stack). Never part of a deployed function: the authorizer only verifies.

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde::Serialize;

/// What signs HS256 tokens: the secret and the issuer and audience the authorizer expects.
#[derive(Clone, Debug)]
pub struct TokenMint {
    pub secret: String,
    pub issuer: String,
    pub audience: String,
    /// The claim that names groups, and the groups that make a moderator and an admin, as the
    /// authorizer is configured (`RoleClaim`, `ModeratorGroups`, `AdminGroups`).
    pub roles: MintRoles,
}

/// Where a minted token says who moderates (empty: nobody can be made one).
#[derive(Clone, Debug, Default)]
pub struct MintRoles {
    pub claim: Option<String>,
    pub moderator_group: Option<String>,
    pub admin_group: Option<String>,
}

impl TokenMint {
    /// The claims that make a token's holder `role` (`moderator` or `admin`) here.
    pub fn role_claims(&self, role: &str) -> Result<serde_json::Map<String, serde_json::Value>, String> {
        let group = match role {
            "moderator" => self.roles.moderator_group.as_deref(),
            "admin" => self.roles.admin_group.as_deref(),
            other => return Err(format!("no role `{other}`: moderator or admin")),
        };
        match (self.roles.claim.as_deref(), group) {
            (Some(claim), Some(group)) => {
                let mut claims = serde_json::Map::new();
                claims.insert(claim.to_string(), serde_json::json!([group]));
                Ok(claims)
            }
            _ => Err(format!(
                "this stack names no {role} group (RoleClaim and its groups are empty)"
            )),
        }
    }
}

/// The claims a minted token carries (those the authorizer reads).
#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    preferred_username: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    picture: Option<&'a str>,
    exp: i64,
    iss: &'a str,
    aud: &'a str,
    /// Any other claims (a role claim, e.g. `cognito:groups`).
    #[serde(flatten)]
    extra: serde_json::Map<String, serde_json::Value>,
}

/// Signs an HS256 token with `mint`'s secret, valid for `ttl_secs` (negative: already expired).
pub fn issue_token(
    mint: &TokenMint,
    sub: &str,
    username: &str,
    picture: Option<&str>,
    ttl_secs: i64,
) -> Result<String, String> {
    issue_token_with(mint, sub, username, picture, ttl_secs, serde_json::Map::new())
}

/// As [`issue_token`], with `extra` claims beside the usual ones (a group claim that makes a
/// moderator, or a forged one that must not).
pub fn issue_token_with(
    mint: &TokenMint,
    sub: &str,
    username: &str,
    picture: Option<&str>,
    ttl_secs: i64,
    extra: serde_json::Map<String, serde_json::Value>,
) -> Result<String, String> {
    let claims = Claims {
        sub,
        preferred_username: username,
        picture,
        exp: chrono::Utc::now().timestamp() + ttl_secs,
        iss: &mint.issuer,
        aud: &mint.audience,
        extra,
    };
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(mint.secret.as_bytes()),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_user_ids_are_stable_and_distinct() {
        assert_eq!(local_user_id("alice"), local_user_id("alice"));
        assert_ne!(local_user_id("alice"), local_user_id("bob"));
        assert!(!local_user_id("alice").contains('#'));
    }
}
