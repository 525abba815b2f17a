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
    let expired = forum_testkit::issue_token(jwt, "u-expired", "old", None, -3600).unwrap();
    // A token for alice's id, signed with settings that differ from the stack's in one way.
    let forged = |mint: forum_testkit::TokenMint| {
        forum_testkit::issue_token(&mint, &alice.user_id, "mallory", None, 600).unwrap()
    };
    let wrong_secret = forged(forum_testkit::TokenMint {
        secret: "not-the-secret-not-the-secret-not-the-secret".into(),
        ..jwt.clone()
    });
    let wrong_issuer = forged(forum_testkit::TokenMint {
        issuer: "https://evil.example".into(),
        ..jwt.clone()
    });
    let wrong_audience = forged(forum_testkit::TokenMint {
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

    // No token at all: API Gateway answers itself, before the authorizer (its own body).
    for (method, path) in routes(id) {
        let answer = stack.anonymous().send(method.clone(), &path, None).await;
        assert_eq!(answer.status, 401, "no token {method} {path}");
        assert_eq!(answer.body, json!({"message": "Unauthorized"}), "{method} {path}");
    }
    let clients = [
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
        &jsonwebtoken::EncodingKey::from_secret(stack.jwt.secret.as_bytes()),
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
    // Names are unique in the forum: each case ends in a tag of its own.
    let tag = ulid::Ulid::new().to_string()[18..].to_string();
    for (i, (claimed, shown)) in [
        ("<<b>img src=x onerror=alert(1)>".to_string(), None),
        (format!("al\u{200B}ice1{tag}"), Some(format!("alice1{tag}"))),
        (format!("a\u{2060}lice2{tag}"), Some(format!("alice2{tag}"))),
        ("\u{3164}".to_string(), None),
        (
            format!("<\u{FEFF}svg/onload=alert(1)>bob{tag}"),
            Some(format!("bob{tag}")),
        ),
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
        assert_eq!(name, shown.unwrap_or(sub), "{claimed:?}");
        assert!(!forum_domain::validate::holds_markup(&name));
    }
}

/// Posts as a new account whose token asks for `name`; answers the post (or the error).
async fn post_as(stack: &crate::support::TestStack, sub: &str, name: &str) -> crate::support::Answer {
    let now = chrono::Utc::now().timestamp();
    let claims = json!({"sub": sub, "preferred_username": name, "exp": now + 600, "iss": stack.jwt.issuer, "aud": stack.jwt.audience});
    let user = stack.anonymous().with_token(&signed(stack, claims));
    user.post("/api/forum/posts/", json!({"content": "hello"})).await
}

#[tokio::test]
async fn display_names_are_unique_up_to_case_and_look_alikes() {
    let stack = shared_stack().await;
    let tag = ulid::Ulid::new().to_string()[16..].to_lowercase();
    let name = format!("dora{tag}");
    let sub = |who: &str| format!("{who}-{tag}");
    let shown = |answer: &crate::support::Answer| {
        assert_eq!(answer.status, 201, "{}", answer.body);
        answer.body["user"]["username"].as_str().unwrap().to_string()
    };
    // The first account to use a name holds it.
    assert_eq!(shown(&post_as(stack, &sub("first"), &name).await), name);
    // Others asking for it, or for anything that looks the same, are shown under it with a
    // tag of their own: never as the first account.
    let cyrillic_o = name.replacen('o', "\u{043E}", 1);
    let fullwidth: String = name
        .chars()
        .map(|c| {
            char::from_u32(c as u32 - 0x21 + 0xFF01)
                .filter(|_| c.is_ascii_graphic())
                .unwrap_or(c)
        })
        .collect();
    let zero = name.replacen('o', "0", 1);
    let capital_i = format!("{}I", name.to_uppercase());
    let lower_l = format!("{name}l");
    for (who, asked) in [
        ("upper", name.to_uppercase()),
        ("cyrillic", cyrillic_o),
        ("fullwidth", fullwidth),
        ("zero", zero),
        ("spaced", format!("do ra{tag}")),
    ] {
        let got = shown(&post_as(stack, &sub(who), &asked).await);
        assert_ne!(got, name, "{who}");
        assert_ne!(
            forum_domain::validate::username_key(&got),
            forum_domain::validate::username_key(&name),
            "{who}: {got:?} looks like {name:?}"
        );
        assert!(
            got.starts_with(&asked.chars().take(4).collect::<String>()),
            "{who}: {got}"
        );
        // The same account keeps the same name.
        assert_eq!(shown(&post_as(stack, &sub(who), &asked).await), got, "{who}");
    }
    // `I` and `l` are one letter to a reader.
    assert_eq!(shown(&post_as(stack, &sub("ell"), &lower_l).await), lower_l);
    assert_ne!(shown(&post_as(stack, &sub("eye"), &capital_i).await), capital_i);
    // The first account still has it.
    assert_eq!(shown(&post_as(stack, &sub("first"), &name).await), name);

    // A name and the account's own fallback both held by others: 409, and nothing written.
    let taken = format!("eve{tag}");
    assert_eq!(shown(&post_as(stack, &sub("eve"), &taken).await), taken);
    let victim = forum_domain::model::Profile {
        user_id: sub("victim"),
        username: taken.clone(),
        avatar_url: None,
        token_name: taken.clone(),
    };
    let squatted = victim.fallback_name();
    assert_eq!(shown(&post_as(stack, &sub("squatter"), &squatted).await), squatted);
    let refused = post_as(stack, &sub("victim"), &taken).await;
    refused.assert_error(409, "username_taken");

    // A rename frees the old name (the stream releases it) for the next account.
    let renamed = format!("dorothy{tag}");
    assert_eq!(shown(&post_as(stack, &sub("first"), &renamed).await), renamed);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    for attempt in 0.. {
        // A new account each time: an account keeps the name it was first shown under.
        if shown(&post_as(stack, &sub(&format!("next{attempt}")), &name).await) == name {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{name} never released");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
