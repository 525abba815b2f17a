//! Every route needs a valid token; failures answer 401 in the API's error shape.

use serde_json::json;

use crate::support::shared_stack;

fn routes(id: &str) -> Vec<(reqwest::Method, String)> {
    use reqwest::Method;
    vec![
        (Method::GET, "/api/forum/posts/".into()),
        (Method::POST, "/api/forum/posts/".into()),
        (Method::GET, format!("/api/forum/posts/{id}/")),
        (Method::PATCH, format!("/api/forum/posts/{id}/")),
        (Method::DELETE, format!("/api/forum/posts/{id}/")),
        (Method::GET, "/api/forum/unknown/".into()),
    ]
}

#[tokio::test]
async fn no_or_bad_tokens_are_401_on_every_route_and_change_nothing() {
    let stack = shared_stack().await;
    let alice = stack.user("alice");
    let post = alice.create_post("protected").await;
    let id = post["id"].as_str().unwrap();

    let jwt = &stack.jwt;
    let expired = shared::auth::issue_token(jwt, "u-expired", "old", None, -3600).unwrap();
    // A token for alice's id, signed with settings that differ from the stack's in one way.
    let forged = |settings: shared::auth::JwtSettings| {
        shared::auth::issue_token(&settings, &alice.user_id, "mallory", None, 600).unwrap()
    };
    let wrong_secret = forged(shared::auth::JwtSettings {
        key: "not-the-secret".into(),
        ..jwt.clone()
    });
    let wrong_issuer = forged(shared::auth::JwtSettings {
        issuer: "https://evil.example".into(),
        ..jwt.clone()
    });
    let wrong_audience = forged(shared::auth::JwtSettings {
        audience: "another-api".into(),
        ..jwt.clone()
    });
    // `alg: none` with alice's claims.
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let claims = json!({"sub": alice.user_id, "preferred_username": "mallory", "exp": 4102444800i64, "iss": jwt.issuer, "aud": jwt.audience});
    let none = format!(
        "{}.{}.",
        b64.encode(br#"{"alg":"none","typ":"JWT"}"#),
        b64.encode(claims.to_string())
    );

    let clients = [
        ("no token", stack.anonymous()),
        ("garbage", alice.with_token("garbage")),
        ("expired", alice.with_token(&expired)),
        ("wrong secret", alice.with_token(&wrong_secret)),
        ("wrong issuer", alice.with_token(&wrong_issuer)),
        ("wrong audience", alice.with_token(&wrong_audience)),
        ("alg none", alice.with_token(&none)),
    ];
    for (what, client) in &clients {
        for (method, path) in routes(id) {
            let body = matches!(method, reqwest::Method::POST | reqwest::Method::PATCH)
                .then(|| crate::support::RequestBody::Json(json!({"content": "hijacked"})));
            let answer = client.send(method.clone(), &path, body).await;
            answer.assert_error(401, "unauthorized");
            assert_eq!(
                answer.header("www-authenticate"),
                Some("Bearer"),
                "{what} {method} {path}"
            );
        }
    }
    let after = alice.get(&format!("/api/forum/posts/{id}/")).await;
    assert_eq!(after.body, post);
    let expired_answer = alice.with_token(&expired).get("/api/forum/posts/").await;
    assert!(
        expired_answer.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired")
    );
}

#[tokio::test]
async fn the_caller_comes_from_the_token_never_the_body() {
    let stack = shared_stack().await;
    let alice = stack.user("alice");
    let bob = stack.user("bob");
    // Identity fields in the body are unknown fields: refused, not trusted.
    let answer = bob
        .post(
            "/api/forum/posts/",
            json!({"content": "hi", "user": {"id": alice.user_id}}),
        )
        .await;
    answer.assert_error(400, "invalid_json");
    let answer = bob
        .post("/api/forum/posts/", json!({"content": "hi", "user_id": alice.user_id}))
        .await;
    answer.assert_error(400, "invalid_json");
    let mine = bob.create_post("mine").await;
    assert_eq!(mine["user"]["id"], bob.user_id.as_str());
}

/// Signs `claims` with the stack's HS256 secret.
fn signed(stack: &crate::support::TestStack, claims: serde_json::Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(stack.jwt.key.as_bytes()),
    )
    .unwrap()
}

#[tokio::test]
async fn identity_claims_are_taken_exactly_as_signed() {
    let stack = shared_stack().await;
    let alice = stack.user("alice");
    let post = alice.create_post("alice's own").await;
    let path = format!("/api/forum/posts/{}/", post["id"].as_str().unwrap());
    let now = chrono::Utc::now().timestamp();
    let base = |sub: &str| json!({"sub": sub, "preferred_username": "x", "exp": now + 600, "iss": stack.jwt.issuer, "aud": stack.jwt.audience});

    // Not valid before its `nbf`: refused on every route, until then.
    let mut early = base(&alice.user_id);
    early["nbf"] = json!(now + 3600);
    let early = alice.with_token(&signed(stack, early));
    early.get("/api/forum/posts/").await.assert_error(401, "unauthorized");
    early
        .patch(&path, json!({"content": "too early"}))
        .await
        .assert_error(401, "unauthorized");

    // A `sub` padded with whitespace (or invisible characters) is not alice, and not usable.
    for sub in [
        format!("  {}  ", alice.user_id),
        format!("{}\n", alice.user_id),
        format!("{}\u{200B}", alice.user_id),
    ] {
        let padded = alice.with_token(&signed(stack, base(&sub)));
        padded
            .patch(&path, json!({"content": "hijacked"}))
            .await
            .assert_error(401, "unauthorized");
    }
    assert_eq!(alice.get(&path).await.body["content"], "alice's own");
}

#[tokio::test]
async fn display_names_from_claims_are_plain_visible_text() {
    let stack = shared_stack().await;
    let now = chrono::Utc::now().timestamp();
    for (i, (claimed, shown)) in [
        ("<<b>img src=x onerror=alert(1)>", None),
        ("al\u{200B}ice", Some("alice")),
        ("a\u{2060}lice", Some("alice")),
        ("\u{3164}", None),
        ("<\u{FEFF}svg/onload=alert(1)>bob", Some("bob")),
    ]
    .into_iter()
    .enumerate()
    {
        let sub = format!("display-{i}-{}", ulid::Ulid::new());
        let claims = json!({"sub": sub, "preferred_username": claimed, "exp": now + 600, "iss": stack.jwt.issuer, "aud": stack.jwt.audience});
        let user = stack.anonymous().with_token(&signed(stack, claims));
        let created = user.post("/api/forum/posts/", json!({"content": "who am I"})).await;
        assert_eq!(created.status, 201, "{}", created.body);
        let name = created.body["user"]["username"].as_str().unwrap().to_string();
        // Nothing invisible and no markup; with nothing visible left, the id stands in.
        assert_eq!(name, shown.map(str::to_string).unwrap_or(sub), "{claimed:?}");
        assert!(!shared::validate::holds_markup(&name));
    }
}
