//! The reference web client (`web/`), served at `/` on forum-local's port: the page, its
//! modules, a `config.json` that points it at this stack, and `POST /local/token`, which mints
//! a development token for a chosen username (forum-local's development secret is public
//! anyway; no deployment has this endpoint).

use bytes::Bytes;
use forum_api::auth;
use forum_testkit::TokenMint;
use http_body_util::Full;
use serde_json::json;

use crate::respond::plain;

/// The client's files, compiled in so the binary serves them from anywhere.
const FILES: &[(&str, &str, &str)] = &[
    ("/", "text/html; charset=utf-8", include_str!("../../web/index.html")),
    (
        "/index.html",
        "text/html; charset=utf-8",
        include_str!("../../web/index.html"),
    ),
    (
        "/app.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/app.js"),
    ),
    (
        "/api.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/api.js"),
    ),
    (
        "/live.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/live.js"),
    ),
    (
        "/style.css",
        "text/css; charset=utf-8",
        include_str!("../../web/style.css"),
    ),
];

/// Scripts only from the page's own origin; images from anywhere over the CDN; the API, the
/// WebSocket and the S3 stand-in (presigned PUTs) to connect to.
const PAGE_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' https: data:; \
     connect-src 'self' ws: wss: http://127.0.0.1:* http://localhost:*; object-src 'none'; base-uri 'none'; \
     frame-ancestors 'none'; form-action 'self'";

fn answer(status: u16, content_type: &str, body: impl Into<Bytes>) -> hyper::Response<Full<Bytes>> {
    let mut response = plain(status, body);
    let headers = response.headers_mut();
    if let Ok(value) = http::HeaderValue::from_str(content_type) {
        headers.insert(http::header::CONTENT_TYPE, value);
    }
    headers.insert("x-content-type-options", http::HeaderValue::from_static("nosniff"));
    headers.insert("content-security-policy", http::HeaderValue::from_static(PAGE_CSP));
    headers.insert("referrer-policy", http::HeaderValue::from_static("no-referrer"));
    headers.insert(http::header::CACHE_CONTROL, http::HeaderValue::from_static("no-cache"));
    response
}

/// A file of the client, if `path` names one.
pub fn file(path: &str) -> Option<hyper::Response<Full<Bytes>>> {
    // Browsers ask for it whatever the page says; the page's icon is inline.
    if path == "/favicon.ico" {
        return Some(answer(204, "image/x-icon", Bytes::new()));
    }
    FILES
        .iter()
        .find(|(name, _, _)| *name == path)
        .map(|(_, content_type, body)| answer(200, content_type, Bytes::from_static(body.as_bytes())))
}

/// `config.json`: where the page finds the API and the WebSocket, seen from `host` (the
/// `Host` the browser used, so `localhost` and `127.0.0.1` both work), whether this stack
/// mints tokens, and which token claim and groups make a moderator (so the page shows its
/// moderation view to those the API will answer; the API decides, not the page).
pub fn config(host: &str, mint: Option<&TokenMint>) -> hyper::Response<Full<Bytes>> {
    let roles = mint.map(|m| m.roles.clone()).unwrap_or_default();
    let moderator_groups: Vec<String> = [roles.moderator_group, roles.admin_group]
        .into_iter()
        .flatten()
        .collect();
    let body = json!({
        "apiBase": format!("http://{host}{}", forum_api::routes::BASE_PATH),
        "wsUrl": format!("ws://{host}/ws"),
        "mintTokens": mint.is_some(),
        "roleClaim": roles.claim,
        "moderatorGroups": moderator_groups,
    });
    answer(200, "application/json", body.to_string())
}

/// `POST /local/token` `{"username": "...", "ttl": seconds?, "role": "moderator"|"admin"?}`:
/// a token for that user, valid for a day unless `ttl` says otherwise (from -29, a token with
/// seconds left within the authorizer's 30 s leeway, to a day), carrying the group claim of
/// `role` as the template configures it: development only, as is every token this mints.
pub fn mint(jwt: &TokenMint, body: &[u8]) -> hyper::Response<Full<Bytes>> {
    let request = serde_json::from_slice::<serde_json::Value>(body).unwrap_or_default();
    let username = request["username"]
        .as_str()
        .map(str::trim)
        .map(str::to_string)
        .filter(|name| !name.is_empty() && name.chars().count() <= forum_domain::model::MAX_USERNAME_CHARS);
    let day = 24 * 3600;
    let ttl = match &request["ttl"] {
        serde_json::Value::Null => Some(day),
        value => value
            .as_i64()
            .filter(|t| (1 - auth::TOKEN_LEEWAY_SECS..=day).contains(t)),
    };
    let (Some(username), Some(ttl)) = (username, ttl) else {
        return answer(
            400,
            "text/plain; charset=utf-8",
            "send {\"username\": \"...\", \"ttl\": seconds (optional, -29 to 86400)}",
        );
    };
    let extra = match request["role"].as_str() {
        None => Ok(serde_json::Map::new()),
        Some(role) => jwt.role_claims(role),
    };
    let extra = match extra {
        Ok(extra) => extra,
        Err(why) => return answer(400, "text/plain; charset=utf-8", why),
    };
    let user_id = forum_testkit::local_user_id(&username);
    match forum_testkit::issue_token_with(jwt, &user_id, &username, None, ttl, extra) {
        Ok(token) => answer(200, "application/json", json!({ "token": token }).to_string()),
        Err(why) => answer(409, "text/plain; charset=utf-8", why),
    }
}
