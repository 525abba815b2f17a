//! What AWS enforces, enforced here: forum-local reads SAM's translation of template.yaml (what
//! CloudFormation receives) and refuses what API Gateway, Lambda and IAM would refuse. Each test
//! runs a stack whose translation has one fix reverted and sees the request AWS would refuse
//! refused, then the same request answered with the fix.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{TestStack, shared_stack, start_stack, test_options};

/// A stack on its own table whose translation `change` edits (its template is the bundled one,
/// so the translation still belongs to it).
pub async fn stack_with_translation(change: impl FnOnce(&mut Value)) -> TestStack {
    let mut options = test_options(&format!("forum-deploy-{}", ulid::Ulid::new()));
    let mut translation: Value = serde_json::from_str(&options.translation).expect("JSON");
    change(&mut translation);
    options.translation = translation.to_string();
    start_stack(options, None).await
}

fn resources(translation: &mut Value) -> &mut serde_json::Map<String, Value> {
    translation["template"]["Resources"].as_object_mut().expect("Resources")
}

async fn preflight(stack: &TestStack, path: &str) -> reqwest::Response {
    reqwest::Client::new()
        .request(Method::OPTIONS, format!("{}{path}", stack.base))
        .header("origin", "http://localhost:3000")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization,content-type")
        .send()
        .await
        .expect("an answer")
}

#[tokio::test]
async fn preflights_are_answered_by_api_gateway_and_never_reach_the_authorizer() {
    let stack = shared_stack().await;
    for path in [
        "/api/forum/posts/",
        "/api/forum/posts/01ARZ3NDEKTSV4RRFFQ69G5FAV/like/",
        "/api/forum/nope",
    ] {
        let answer = preflight(stack, path).await;
        assert_eq!(answer.status(), 204, "{path}");
        assert_eq!(
            answer.headers()["access-control-allow-origin"],
            "http://localhost:3000",
            "{path}"
        );
    }
    // A plain OPTIONS (no CORS) reaches the function behind `OPTIONS /{proxy+}`: what the path allows.
    let plain = stack.anonymous().send(Method::OPTIONS, "/api/forum/posts/", None).await;
    assert_eq!(plain.status, 204);
    assert_eq!(plain.header("allow"), Some("GET, POST, OPTIONS"));
    stack
        .anonymous()
        .send(Method::OPTIONS, "/api/forum/nope/", None)
        .await
        .assert_error(404, "not_found");

    // Without that route, API Gateway sends the preflight through `$default`, whose authorizer
    // needs a token a preflight never carries: 401, and the browser may call nothing.
    let reverted = stack_with_translation(|t| {
        let paths = t["template"]["Resources"]["HttpApi"]["Properties"]["Body"]["paths"]
            .as_object_mut()
            .expect("paths");
        assert!(
            paths.remove("/{proxy+}").is_some(),
            "the OPTIONS route is in the translation"
        );
    })
    .await;
    let refused = preflight(&reverted, "/api/forum/posts/").await;
    assert_eq!(refused.status(), 401);
    assert!(refused.headers().get("access-control-allow-origin").is_none());
    assert_eq!(
        refused.json::<Value>().await.unwrap(),
        json!({"message": "Unauthorized"})
    );
}

#[tokio::test]
async fn without_its_invoke_permission_the_authorizer_never_runs() {
    let stack = stack_with_translation(|t| {
        let resources = resources(t);
        for permission in ["HttpApiJwtAuthorizerAuthorizerPermission", "WsAuthorizerPermission"] {
            assert!(resources.remove(permission).is_some(), "{permission}");
        }
    })
    .await;
    let alice = stack.user("alice");
    let answer = alice.get("/api/forum/posts/").await;
    assert_eq!(answer.status, 500);
    assert_eq!(answer.body, json!({"message": "Internal Server Error"}));
    // The WebSocket API's authorizer likewise: `$connect` fails, no connection is opened.
    let url = format!(
        "ws://{}/ws?token={}",
        stack.stack.http_addr,
        alice.token.as_deref().unwrap()
    );
    match tokio_tungstenite::connect_async(url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status(), 500),
        other => panic!("expected a refused handshake, got {other:?}"),
    }
    // Nothing the authorizer guards was reached: the bundled translation serves it.
    assert_eq!(
        shared_stack().await.user("alice").get("/api/forum/posts/").await.status,
        200
    );
}

#[tokio::test]
async fn a_route_api_gateway_may_not_invoke_answers_500_and_its_neighbours_still_serve() {
    let stack = stack_with_translation(|t| {
        let resources = resources(t);
        for permission in [
            "ListPostsFunctionRoutePermission",
            "ListPostsFunctionRouteWithSlashPermission",
        ] {
            assert!(resources.remove(permission).is_some(), "{permission}");
        }
    })
    .await;
    let alice = stack.user("alice");
    let post = alice.create_post("still reachable by id").await;
    let answer = alice.get("/api/forum/posts/").await;
    assert_eq!(
        (answer.status, &answer.body),
        (500, &json!({"message": "Internal Server Error"}))
    );
    let id = post["id"].as_str().unwrap();
    assert_eq!(alice.get(&format!("/api/forum/posts/{id}/")).await.status, 200);
}

#[tokio::test]
async fn closing_a_socket_needs_delete_on_connections_and_every_call_its_declaration() {
    let stack = shared_stack().await;
    let close = |stack: &TestStack, binary: &str| {
        let app = stack.stack.functions[binary].clone();
        async move { app.notifier.as_ref().expect("a notifier").close("bm90LW9wZW4=").await }
    };
    // Allowed (the connection is unknown: gone, which is fine).
    assert_eq!(close(stack, "ws-message").await, Ok(()));
    assert_eq!(close(stack, "stream-fanout").await, Ok(()));

    // IAM grants `execute-api:ManageConnections` per method: POST alone does not close.
    let post_only = stack_with_translation(|t| {
        for role in ["WsMessageFunctionRole", "StreamFanoutFunctionRole"] {
            let policies = t["template"]["Resources"][role]["Properties"]["Policies"]
                .as_array_mut()
                .expect("policies");
            for policy in policies {
                for statement in policy["PolicyDocument"]["Statement"]
                    .as_array_mut()
                    .expect("statements")
                {
                    if let Some(resources) = statement["Resource"].as_array_mut() {
                        resources.retain(|r| !r.to_string().contains("/DELETE/@connections"));
                    }
                }
            }
        }
    })
    .await;
    for binary in ["ws-message", "stream-fanout"] {
        let refused = close(&post_only, binary).await.expect_err("DELETE is not granted");
        assert!(
            refused.contains("AccessDenied") || refused.contains("does not allow"),
            "{binary}: {refused}"
        );
    }

    // A call the role allows but local/aws-calls.json does not declare is refused too: the deploy
    // rehearsal checks only declared calls against the role CloudFormation creates.
    let fanout = stack.stack.functions["stream-fanout"].clone();
    let undeclared = fanout
        .table
        .client()
        .query()
        .table_name(&stack.table_name)
        .index_name("gsi9")
        .key_condition_expression("gsi9pk = :pk")
        .expression_attribute_values(":pk", aws_sdk_dynamodb::types::AttributeValue::S("x".into()))
        .send()
        .await
        .expect_err("an undeclared index");
    assert!(
        format!("{undeclared:?}").contains("aws-calls.json does not declare"),
        "{undeclared:?}"
    );
}

/// An issuer's JWKS endpoint: serves whatever `set` holds (503 when empty), counting requests.
struct Issuer {
    url: String,
    set: Arc<std::sync::Mutex<String>>,
    fetches: Arc<AtomicUsize>,
}

async fn issuer() -> Issuer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/.well-known/jwks.json", listener.local_addr().expect("addr"));
    let set = Arc::new(std::sync::Mutex::new(String::new()));
    let fetches = Arc::new(AtomicUsize::new(0));
    let (served, counted) = (set.clone(), fetches.clone());
    crate::support::spawn_background(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let (served, counted) = (served.clone(), counted.clone());
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buffer = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buffer[..n]),
                    }
                }
                counted.fetch_add(1, Ordering::SeqCst);
                let body = served.lock().map(|s| s.clone()).unwrap_or_default();
                let status = if body.is_empty() {
                    "503 Service Unavailable"
                } else {
                    "200 OK"
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    Issuer { url, set, fetches }
}

use forum_testkit::keys::{JWKS, RSA_PRIVATE, RSA2_PRIVATE};

fn rs256(stack: &TestStack, private_pem: &str, kid: &str, user: &str) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some(kid.to_string());
    let claims = json!({
        "sub": forum_testkit::local_user_id(user), "preferred_username": user,
        "exp": chrono::Utc::now().timestamp() + 600,
        "iss": stack.stack.jwt_settings.issuer, "aud": stack.stack.jwt_settings.audience,
    });
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(private_pem.as_bytes()).expect("RSA key");
    jsonwebtoken::encode(&header, &claims, &key).expect("signs")
}

#[tokio::test]
async fn rs256_tokens_are_verified_with_keys_from_the_issuers_jwks_url() {
    let issuer = issuer().await;
    // The issuer publishes key-1 only, at first.
    let mut first: Value = serde_json::from_str(JWKS).unwrap();
    first["keys"].as_array_mut().unwrap().retain(|k| k["kid"] == "key-1");
    *issuer.set.lock().unwrap() = first.to_string();
    let options = test_options(&format!("forum-jwks-{}", ulid::Ulid::new()))
        .parameter("JwtAlgorithm", "RS256")
        .parameter("JwtSecretArn", "")
        .parameter("JwtJwksUrl", issuer.url.clone());
    let stack = start_stack(options, None).await;
    assert_eq!(issuer.fetches.load(Ordering::SeqCst), 1, "fetched once, at init");

    let user = |token: String| stack.anonymous().with_token(&token);
    let one = user(rs256(&stack, RSA_PRIVATE, "key-1", "ada"));
    let answer = one.get("/api/forum/posts/").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(one.get("/api/forum/posts/").await.status, 200);
    assert_eq!(issuer.fetches.load(Ordering::SeqCst), 1, "cached");

    // The issuer rotates: key-2 appears. A token naming it makes the authorizer fetch again.
    *issuer.set.lock().unwrap() = JWKS.to_string();
    let two = user(rs256(&stack, RSA2_PRIVATE, "key-2", "grace"));
    assert_eq!(two.get("/api/forum/posts/").await.status, 200);
    assert_eq!(issuer.fetches.load(Ordering::SeqCst), 2);

    // Tokens naming keys nobody published: refused, and at most one fetch a minute for them all.
    for i in 0..20 {
        user(rs256(&stack, RSA_PRIVATE, &format!("made-up-{i}"), "mallory"))
            .get("/api/forum/posts/")
            .await
            .assert_error(401, "unauthorized");
    }
    assert!(issuer.fetches.load(Ordering::SeqCst) <= 3, "{:?}", issuer.fetches);
    // A key from the set signing under another kid is still refused (the signature decides).
    user(rs256(&stack, RSA_PRIVATE, "key-2", "mallory"))
        .get("/api/forum/posts/")
        .await
        .assert_error(401, "unauthorized");
}

#[tokio::test]
async fn an_issuer_unreachable_at_start_is_retried_and_meanwhile_nothing_is_refused_for_good() {
    let issuer = issuer().await; // serves 503 until it has a set
    let options = test_options(&format!("forum-jwks-{}", ulid::Ulid::new()))
        .parameter("JwtAlgorithm", "RS256")
        .parameter("JwtSecretArn", "")
        .parameter("JwtJwksUrl", issuer.url.clone());
    let stack = start_stack(options, None).await;
    let ada = stack
        .anonymous()
        .with_token(&rs256(&stack, RSA_PRIVATE, "key-1", "ada"));
    // The authorizer cannot judge the token: it fails (API Gateway's 500, never cached), it
    // does not refuse it (a cached 401 would stand for the token's whole cache time).
    let answer = ada.get("/api/forum/posts/").await;
    assert_eq!(
        (answer.status, &answer.body),
        (500, &json!({"message": "Internal Server Error"}))
    );
    *issuer.set.lock().unwrap() = JWKS.to_string();
    tokio::time::sleep(forum_api::auth::JWKS_RETRY_AFTER + Duration::from_millis(200)).await;
    assert_eq!(ada.get("/api/forum/posts/").await.status, 200);
}

#[tokio::test]
async fn a_rotated_secret_is_read_and_what_its_previous_version_signed_still_verifies() {
    let stack = shared_stack().await;
    // The list functions' cursor key, read as they read it (refreshing at once, for the test).
    let arn = stack.stack.environments["list-posts"]["FORUM_CURSOR_SECRET_ARN"].clone();
    let target = forum_store::aws::AwsTarget::Local {
        dynamodb_endpoint: stack.stack.dynamodb_endpoint.clone(),
        s3_endpoint: stack.stack.s3_endpoint.clone(),
        secrets_endpoint: stack.stack.secrets_endpoint.clone(),
    };
    let client = forum_store::aws::Clients::load(target).await.secrets();
    // A secret of its own, so the shared stack's functions keep theirs.
    let own = format!("{arn}-rotation-{}", ulid::Ulid::new());
    let first = format!("{}{}", ulid::Ulid::new(), ulid::Ulid::new());
    stack.stack.secrets.put(&own, &first);
    let source = forum_store::secrets::SecretSource::new(
        forum_store::aws::built(client),
        own.clone(),
        "CursorSecretArn",
        forum_api::config::Deployment::Deployed,
    )
    .refreshing_every(Duration::ZERO);
    let before = source.get().await.expect("read");
    assert_eq!(
        (before.current.as_str(), before.previous.as_deref()),
        (first.as_str(), None)
    );
    let cursor = forum_domain::cursor::CursorCodec::from_keys(before.all().map(str::as_bytes)).encode(
        &forum_domain::cursor::PageCursor {
            scope: "feed".into(),
            direction: forum_domain::cursor::Direction::After,
            key: "01ARZ3NDEKTSV4RRFFQ69G5FAV".into(),
        },
    );

    let second = format!("{}{}", ulid::Ulid::new(), ulid::Ulid::new());
    assert!(stack.stack.secrets.rotate(&own, &second));
    let after = source.get().await.expect("read again");
    assert_eq!(after.current, second);
    assert_eq!(after.previous.as_deref(), Some(first.as_str()));
    let codec = forum_domain::cursor::CursorCodec::from_keys(after.all().map(str::as_bytes));
    assert!(
        codec.decode(&cursor, "feed").is_ok(),
        "a cursor from before the rotation"
    );
    assert!(
        forum_domain::cursor::CursorCodec::new(second.as_bytes())
            .decode(&codec.encode(&codec.decode(&cursor, "feed").unwrap()), "feed")
            .is_ok(),
        "new cursors are signed with the new version"
    );

    // A rotation to a value no function may use fails closed: reads fail (logged) rather than
    // go on with the key it was meant to replace.
    assert!(stack.stack.secrets.rotate(&own, "short"));
    assert!(matches!(
        source.get().await,
        Err(forum_store::secrets::SecretError::Unusable(_))
    ));
}
