//! Live updates with real WebSocket clients over the network: the stream poller feeds
//! `stream-fanout`, which pushes through forum-local's `@connections`.

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use forum_store::keys;

use crate::support::{Client, TestStack, shared_stack};

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub struct Live {
    socket: Socket,
}

fn ws_url(stack: &TestStack, token: &str) -> String {
    format!("{}/ws?token={token}", stack.base.replace("http://", "ws://"))
}

impl Live {
    pub async fn connect(stack: &TestStack, client: &Client) -> Live {
        let (socket, _) = tokio_tungstenite::connect_async(ws_url(stack, client.token.as_deref().unwrap()))
            .await
            .expect("connects");
        Live { socket }
    }

    pub async fn send(&mut self, message: Value) {
        self.socket
            .send(Message::text(message.to_string()))
            .await
            .expect("send");
    }

    /// The next message matching `wanted`, skipping others (other tests' broadcasts).
    pub async fn expect(&mut self, what: &str, wanted: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let next = tokio::time::timeout(left, self.socket.next()).await;
            match next {
                Ok(Some(Ok(Message::Text(text)))) => {
                    let value: Value = serde_json::from_str(&text).expect("messages are JSON");
                    assert!(value["type"].is_string(), "every message has a type: {value}");
                    if wanted(&value) {
                        return value;
                    }
                }
                Ok(Some(Ok(_))) => {}
                Ok(other) => panic!("connection ended while waiting for {what}: {other:?}"),
                Err(_) => panic!("no {what} within 15 s"),
            }
        }
    }

    /// Asserts nothing matching arrives within `wait`.
    pub async fn expect_none(&mut self, wait: Duration, unwanted: impl Fn(&Value) -> bool) {
        let deadline = Instant::now() + wait;
        while let Ok(Some(Ok(message))) =
            tokio::time::timeout(deadline.saturating_duration_since(Instant::now()), self.socket.next()).await
        {
            if let Message::Text(text) = message {
                let value: Value = serde_json::from_str(&text).unwrap();
                assert!(!unwanted(&value), "unexpected {value}");
            }
        }
    }

    pub async fn subscribe(&mut self, post_id: &str) {
        self.send(json!({"action": "subscribe", "post_ids": [post_id]})).await;
        self.expect("subscribed", |m| {
            m["type"] == "subscribed" && m["post_ids"][0] == post_id
        })
        .await;
    }
}

/// A connection stored as `$connect` would, with no socket behind it (a stack of its own only:
/// another test's broadcast would find it gone and forget it), for ten minutes: its id.
async fn socketless_connection(table: &forum_store::Table, name: &str) -> String {
    let connection = format!("{name}-{}", ulid::Ulid::new());
    let now = chrono::Utc::now().timestamp();
    table
        .put_connection(
            &connection,
            &format!("{name}-user-{}", ulid::Ulid::new()),
            now + 600,
            now + 600,
            now,
            false,
        )
        .await
        .unwrap();
    connection
}

/// A subscription rate token that is never spent, for the store's calls made directly here.
fn unlimited() -> forum_store::RateToken {
    forum_store::RateToken {
        user_id: format!("unlimited-{}", ulid::Ulid::new()),
        action: forum_store::RateAction::Subscription,
        limit: u32::MAX,
        now: chrono::Utc::now().timestamp(),
        idempotency: None,
    }
}

pub fn is(kind: &'static str, post_id: String) -> impl Fn(&Value) -> bool {
    move |m| m["type"] == kind && (m["post_id"] == post_id.as_str() || m["post"]["id"] == post_id.as_str())
}

#[tokio::test]
async fn a_new_post_reaches_every_connected_user() {
    let stack = shared_stack().await;
    let alice = stack.user("alice");
    let bob = stack.user("bob");
    let mut alice_live = Live::connect(stack, &alice).await;
    let mut bob_live = Live::connect(stack, &bob).await;
    let post = alice.create_post("live hello").await;
    let id = post["id"].as_str().unwrap().to_string();
    for live in [&mut alice_live, &mut bob_live] {
        let event = live.expect("post.created", is("post.created", id.clone())).await;
        assert_eq!(event["post"]["content"], "live hello");
        assert_eq!(event["post"]["user"]["username"], alice.username.as_str());
        crate::support::openapi().assert_schema("Post", &event["post"]);
    }
}

#[tokio::test]
async fn subscribers_get_committed_like_counts_and_comments_and_authors_hear_without_subscribing() {
    let stack = shared_stack().await;
    let alice = stack.user("alice");
    let bob = stack.user("bob");
    let carol = stack.user("carol");
    let post = alice.create_post("follow me").await;
    let id = post["id"].as_str().unwrap().to_string();
    let mut author = Live::connect(stack, &alice).await;
    let mut follower = Live::connect(stack, &bob).await;
    follower.subscribe(&id).await;

    let liked = carol.post(&format!("/api/forum/posts/{id}/like/"), Value::Null).await;
    assert_eq!(liked.body["like_count"], 1);
    for live in [&mut follower, &mut author] {
        let event = live.expect("like.updated", is("like.updated", id.clone())).await;
        assert_eq!(event["like_count"], 1);
    }

    let comment = carol
        .post(
            &format!("/api/forum/posts/{id}/comments/"),
            json!({"content": "first!"}),
        )
        .await;
    assert_eq!(comment.status, 201);
    for live in [&mut follower, &mut author] {
        let event = live.expect("comment.created", is("comment.created", id.clone())).await;
        assert_eq!(event["comment"]["content"], "first!");
        assert_eq!(event["comment"]["user"]["username"], carol.username.as_str());
        assert_eq!(event["comment_count"], 1);
    }

    let edited = alice
        .patch(
            &format!("/api/forum/posts/{id}/"),
            json!({"content": "follow me, edited"}),
        )
        .await;
    assert_eq!(edited.status, 200);
    let event = follower.expect("post.updated", is("post.updated", id.clone())).await;
    assert_eq!(event["post"]["content"], "follow me, edited");

    let cid = comment.body["id"].as_str().unwrap();
    assert_eq!(
        carol
            .delete(&format!("/api/forum/posts/{id}/comments/{cid}/"))
            .await
            .status,
        204
    );
    let event = follower
        .expect("comment.deleted", is("comment.deleted", id.clone()))
        .await;
    assert_eq!(
        (event["comment_id"].as_str(), event["comment_count"].as_u64()),
        (Some(cid), Some(0))
    );

    // Unsubscribed, bob hears no more about it.
    follower.send(json!({"action": "unsubscribe", "post_ids": [id]})).await;
    follower.expect("unsubscribed", |m| m["type"] == "unsubscribed").await;
    carol.post(&format!("/api/forum/posts/{id}/like/"), Value::Null).await;
    author.expect("like.updated", is("like.updated", id.clone())).await;
    follower
        .expect_none(Duration::from_millis(800), is("like.updated", id.clone()))
        .await;
}

async fn items_under(stack: &TestStack, pk: &str) -> usize {
    let out = stack
        .stack
        .dynamodb
        .query()
        .table_name(&stack.table_name)
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(":pk", aws_sdk_dynamodb::types::AttributeValue::S(pk.to_string()))
        .consistent_read(true)
        .send()
        .await
        .unwrap();
    out.items().len()
}

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !check().await {
        assert!(Instant::now() < deadline, "{what} did not happen within 15 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_deleted_post_is_announced_and_its_comments_likes_and_media_are_removed() {
    let stack = shared_stack().await;
    let alice = stack.user("alice");
    let bob = stack.user("bob");
    let media = crate::media::ready_media(&alice).await;
    let post = alice
        .post(
            "/api/forum/posts/",
            json!({"content": "doomed", "media_url": media["url"]}),
        )
        .await
        .body;
    let id = post["id"].as_str().unwrap().to_string();
    let mut live = Live::connect(stack, &bob).await;
    live.subscribe(&id).await;
    bob.post(&format!("/api/forum/posts/{id}/like/"), Value::Null).await;
    for i in 0..3 {
        bob.post(
            &format!("/api/forum/posts/{id}/comments/"),
            json!({"content": format!("c{i}")}),
        )
        .await;
    }
    assert!(items_under(stack, &format!("POST#{id}")).await >= 5);
    assert_eq!(alice.delete(&format!("/api/forum/posts/{id}/")).await.status, 204);
    live.expect("post.deleted", is("post.deleted", id.clone())).await;
    eventually("comments, likes and subscriptions removed", async || {
        items_under(stack, &format!("POST#{id}")).await == 0 && items_under(stack, &format!("SUB#{id}")).await == 0
    })
    .await;
    let url = media["url"].as_str().unwrap().to_string();
    eventually("media removed", async || {
        reqwest::get(&url).await.unwrap().status() == 404
    })
    .await;
    alice
        .get(&format!("/api/forum/media/{}/", media["id"].as_str().unwrap()))
        .await
        .assert_error(404, "not_found");
}

#[tokio::test]
async fn a_client_that_vanished_is_cleaned_up_on_the_next_send() {
    let stack = shared_stack().await;
    let alice = stack.user("alice");
    let post = alice.create_post("anyone there?").await;
    let id = post["id"].as_str().unwrap().to_string();
    // A connection API Gateway no longer has (the client vanished without closing): the table
    // still lists it, subscribed to the post.
    let table = &stack.stack.app.table;
    let ghost = format!("ghost{}=", ulid::Ulid::new());
    // Connected a minute ago: past the grace a connection still completing its handshake gets.
    let now = chrono::Utc::now().timestamp();
    table
        .put_connection(&ghost, "ghost-user", now + 600, now + 600, now - 60, false)
        .await
        .unwrap();
    // Any fan-out (another test's post.created reaches every connection) may find the ghost gone
    // first; then it is already forgotten, or subscribing fails as "not known" and leaves
    // nothing behind. Either way is the behaviour under test.
    if let Some(connection) = table.get_connection(&ghost).await.unwrap() {
        match table
            .subscribe(&connection, std::slice::from_ref(&id), &unlimited())
            .await
        {
            Ok(()) | Err(forum_store::StoreError::NotFound(forum_store::Entity::Connection)) => {}
            Err(e) => panic!("subscribe: {e}"),
        }
    }
    alice.post(&format!("/api/forum/posts/{id}/like/"), Value::Null).await;
    eventually("the gone connection is forgotten", async || {
        table.get_connection(&ghost).await.unwrap().is_none()
    })
    .await;
    eventually("its subscription too", async || {
        items_under(stack, &format!("SUB#{id}")).await == 0
    })
    .await;
}

#[tokio::test]
async fn bad_tokens_cannot_connect_and_bad_messages_get_an_error_not_a_hangup() {
    let stack = shared_stack().await;
    let alice = stack.user("alice");
    for (token, status) in [
        ("", 401u16),
        ("garbage", 403),
        (alice.with_token("x.y.z").token.as_deref().unwrap(), 403),
    ] {
        let url = format!("{}/ws?token={token}", stack.base.replace("http://", "ws://"));
        match tokio_tungstenite::connect_async(url).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status().as_u16(), status)
            }
            other => panic!("token {token:?} connected: {other:?}"),
        }
    }
    let expired = forum_testkit::issue_token(&stack.jwt, &alice.user_id, "old", None, -3600).unwrap();
    assert!(tokio_tungstenite::connect_async(ws_url(stack, &expired)).await.is_err());

    let mut live = Live::connect(stack, &alice).await;
    for bad in [
        json!("not an object"),
        json!({"action": "dance"}),
        json!({"action": "subscribe", "post_ids": ["nope"]}),
        json!({"action": "subscribe"}),
    ] {
        live.send(bad).await;
        let error = live.expect("error", |m| m["type"] == "error").await;
        assert_eq!(error["code"], "invalid_message");
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    live.socket.send(Message::text("{{{")).await.unwrap();
    live.expect("error", |m| m["type"] == "error").await;
    live.send(json!({"action": "ping"})).await;
    live.expect("pong", |m| m["type"] == "pong").await;
}

#[tokio::test]
async fn the_uploader_hears_when_media_is_ready_or_rejected() {
    let stack = shared_stack().await;
    let alice = stack.user("alice");
    let mut live = Live::connect(stack, &alice).await;
    let uploaded = crate::media::upload(&alice, forum_testkit::images::png(50, 40, false), "a.png").await;
    let id = uploaded.body["id"].as_str().unwrap().to_string();
    let ready = live
        .expect("media.ready", |m| m["type"] == "media.ready" && m["id"] == id.as_str())
        .await;
    assert_eq!(ready["url"], uploaded.body["url"]);
    assert_eq!(
        (ready["width"].as_u64(), ready["height"].as_u64()),
        (Some(50), Some(40))
    );

    let presigned = alice
        .post(
            "/api/forum/upload/presign/",
            json!({"content_type": "image/png", "content_length": 5}),
        )
        .await;
    reqwest::Client::new()
        .put(presigned.body["upload"]["url"].as_str().unwrap())
        .header("content-type", "image/png")
        .header("if-none-match", "*")
        .body(b"hello".to_vec())
        .send()
        .await
        .unwrap();
    let rid = presigned.body["id"].as_str().unwrap().to_string();
    let rejected = live
        .expect("media.rejected", |m| {
            m["type"] == "media.rejected" && m["id"] == rid.as_str()
        })
        .await;
    assert!(rejected["reason"].as_str().is_some_and(|r| !r.is_empty()));
}

impl Live {
    /// Waits for the server to close the socket, failing if `unwanted` arrives first.
    pub async fn expect_closed(&mut self, unwanted: impl Fn(&Value) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.socket.next()).await {
                Ok(Some(Ok(Message::Text(text)))) => {
                    let value: Value = serde_json::from_str(&text).expect("JSON");
                    assert!(!unwanted(&value), "received after its token expired: {value}");
                }
                Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => return,
                Ok(Some(Ok(_))) => {}
                Err(_) => panic!("the socket was not closed within 15 s"),
            }
        }
    }
}

#[tokio::test]
async fn a_socket_lives_no_longer_than_its_token() {
    let stack = shared_stack().await;
    let alice = stack.user("alice");
    let bob = stack.user("bob");
    // Valid for 5 more seconds (the 30 s leeway included).
    let short = forum_testkit::issue_token(&stack.jwt, &bob.user_id, &bob.username, None, 5 - 30).unwrap();
    let mut listener = Live::connect(stack, &bob.with_token(&short)).await;
    let mut fresh = Live::connect(stack, &bob).await;
    tokio::time::sleep(Duration::from_secs(7)).await;
    let post = alice.create_post("after bob's token expired").await;
    let id = post["id"].as_str().unwrap().to_string();
    // The fresh socket hears it; the expired one is closed instead, and hears nothing.
    fresh.expect("post.created", is("post.created", id.clone())).await;
    listener
        .expect_closed(|m| m["type"] == "post.created" && m["post"]["id"] == id)
        .await;
    // HTTP agrees: that token is refused.
    bob.with_token(&short)
        .get("/api/forum/posts/")
        .await
        .assert_error(401, "unauthorized");
}

#[tokio::test]
async fn lower_case_post_ids_subscribe_to_the_same_post() {
    let stack = shared_stack().await;
    let alice = stack.user("alice");
    let bob = stack.user("bob");
    let post = alice.create_post("followed in lower case").await;
    let id = post["id"].as_str().unwrap().to_string();
    let mut live = Live::connect(stack, &bob).await;
    live.send(json!({"action": "subscribe", "post_ids": [id.to_lowercase()]}))
        .await;
    let ack = live.expect("subscribed", |m| m["type"] == "subscribed").await;
    assert_eq!(ack["post_ids"], json!([id]), "acknowledged in canonical form");
    bob.post(&format!("/api/forum/posts/{id}/like/"), json!({})).await;
    let update = live.expect("like.updated", is("like.updated", id.clone())).await;
    assert_eq!(update["like_count"], 1);
}

#[tokio::test]
async fn a_user_holds_at_most_ten_sockets_even_when_opening_them_at_once() {
    let stack = shared_stack().await;
    let carol = stack.user("carol");
    let url = ws_url(stack, carol.token.as_deref().unwrap());
    let attempts = futures::future::join_all((0..15).map(|_| tokio_tungstenite::connect_async(url.clone()))).await;
    let (mut open, refused): (Vec<_>, Vec<_>) = attempts.into_iter().partition(Result::is_ok);
    let max = forum_store::MAX_CONNECTIONS_PER_USER as usize;
    assert_eq!((open.len(), refused.len()), (max, 15 - max));
    // Closing one frees its slot for a new connection.
    let (mut socket, _) = open.pop().unwrap().unwrap();
    socket.close(None).await.unwrap();
    let mut reconnected = None;
    for _ in 0..50 {
        if let Ok(pair) = tokio_tungstenite::connect_async(url.clone()).await {
            reconnected = Some(pair);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(reconnected.is_some(), "a freed slot can be taken again");
    // Another user is not affected.
    Live::connect(stack, &stack.user("dave")).await;
}

#[tokio::test]
async fn the_subscription_cap_holds_under_concurrent_messages() {
    // In AWS a connection's messages may run in parallel on several instances: the cap must
    // hold without a read-then-write window. A stack of its own: the connection has no socket,
    // so another test's broadcast would find it gone and forget it mid-test.
    let stack = crate::support::isolated_stack().await;
    let table = &stack.stack.app.table;
    let connection = socketless_connection(table, "cap").await;
    let stored = table.get_connection(&connection).await.unwrap().unwrap();
    let batches: Vec<Vec<String>> = (0..6)
        .map(|_| (0..50).map(|_| ulid::Ulid::new().to_string()).collect())
        .collect();
    let results = {
        let rate = unlimited();
        futures::future::join_all(batches.iter().map(|ids| table.subscribe(&stored, ids, &rate))).await
    };
    let accepted = results.iter().filter(|r| r.is_ok()).count();
    let listed = table.get_connection(&connection).await.unwrap().unwrap().subscriptions;
    assert!(
        listed.len() <= forum_store::MAX_SUBSCRIPTIONS,
        "{} listed",
        listed.len()
    );
    assert_eq!(listed.len(), accepted * 50);
    // Exactly the listed posts have subscription items: refused batches left nothing behind.
    for (ids, result) in batches.iter().zip(&results) {
        for id in ids {
            let followers = table.subscribers(id).await.unwrap();
            let follows = followers.iter().any(|r| r.connection_id == connection);
            assert_eq!(follows, result.is_ok(), "{id}");
            assert_eq!(follows, listed.contains(id));
        }
    }
    table.delete_connection(&connection).await.unwrap();
}

/// A POST to `url`, SigV4-signed for `service` with the given key, secret and time, carrying
/// `sent` (the signature covers `signed`).
fn signed_post(
    url: &str,
    (key, secret): (&str, &str),
    service: &str,
    time: std::time::SystemTime,
    signed: &str,
    sent: &str,
) -> reqwest::RequestBuilder {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    let identity = aws_credential_types::Credentials::new(key, secret, None, None, "test").into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(forum_store::aws::LOCAL_REGION)
        .name(service)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let host = url::Url::parse(url).unwrap();
    let host = format!("{}:{}", host.host_str().unwrap(), host.port().unwrap());
    let headers = [("host", host.as_str()), ("content-type", "application/json")];
    let request =
        SignableRequest::new("POST", url, headers.into_iter(), SignableBody::Bytes(signed.as_bytes())).unwrap();
    let (instructions, _) = sign(request, &params).unwrap().into_parts();
    let mut builder = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(sent.to_string());
    for (name, value) in instructions.headers() {
        builder = builder.header(name, value);
    }
    builder
}

#[tokio::test]
async fn only_requests_signed_with_the_local_credentials_reach_a_socket() {
    let stack = shared_stack().await;
    let alice = stack.user("alice");
    let mut live = Live::connect(stack, &alice).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let connection = loop {
        let mine = stack.stack.app.table.user_connections(&alice.user_id).await.unwrap();
        if let Some(first) = mine.first() {
            break first.connection_id.clone();
        }
        assert!(Instant::now() < deadline, "the connection was never stored");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let url = format!(
        "{}/@connections/{}",
        stack.base,
        url::form_urlencoded::byte_serialize(connection.as_bytes()).collect::<String>()
    );
    let forged = json!({"type": "post.deleted", "post_id": "FORGED"}).to_string();
    let real = (forum_store::aws::LOCAL_ACCESS_KEY, forum_store::aws::LOCAL_SECRET_KEY);
    let now = std::time::SystemTime::now();
    let stale = now - Duration::from_secs(20 * 60);
    let refusals = [
        ("unsigned", reqwest::Client::new().post(&url).body(forged.clone())),
        (
            "wrong secret",
            signed_post(&url, (real.0, "guessed"), "execute-api", now, &forged, &forged),
        ),
        (
            "other key",
            signed_post(&url, ("AKIDOTHER", real.1), "execute-api", now, &forged, &forged),
        ),
        ("other service", signed_post(&url, real, "s3", now, &forged, &forged)),
        ("stale", signed_post(&url, real, "execute-api", stale, &forged, &forged)),
        (
            "body swapped",
            signed_post(&url, real, "execute-api", now, "{}", &forged),
        ),
    ];
    for (case, request) in refusals {
        let answer = request.send().await.unwrap();
        assert_eq!(answer.status().as_u16(), 403, "{case}");
    }
    live.expect_none(Duration::from_millis(500), |m| m["post_id"] == "FORGED")
        .await;
    // Signed as the functions sign (the SDK's own signer, the local credentials): delivered.
    let genuine = json!({"type": "post.deleted", "post_id": "GENUINE"}).to_string();
    let answer = signed_post(&url, real, "execute-api", now, &genuine, &genuine)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    live.expect("the signed message", |m| m["post_id"] == "GENUINE").await;
}

#[tokio::test]
async fn a_burst_of_likes_and_comments_arrives_in_order_and_ends_on_the_committed_counts() {
    let stack = shared_stack().await;
    let author = stack.user("burst-author");
    let post = author.create_post("everyone likes this").await;
    let id = post["id"].as_str().unwrap().to_string();
    let follower = stack.user("burst-follower");
    let mut live = Live::connect(stack, &follower).await;
    live.subscribe(&id).await;

    // 20 users like and comment at once: one partition of the stream, handled in order.
    let fans: Vec<Client> = (0..20).map(|i| stack.user(&format!("burst-fan-{i}"))).collect();
    let mut comment_ids: Vec<String> = futures::future::join_all(fans.iter().map(|fan| {
        let id = id.clone();
        async move {
            fan.post(&format!("/api/forum/posts/{id}/like/"), json!({})).await;
            let comment = fan
                .post(
                    &format!("/api/forum/posts/{id}/comments/"),
                    json!({"content": "me too"}),
                )
                .await;
            comment.body["id"].as_str().unwrap().to_string()
        }
    }))
    .await;

    // Like counts only grow and end on 20 (a batch sends only its last count); every comment
    // is heard exactly once.
    let mut last_count = 0;
    let mut heard = Vec::new();
    while last_count < 20 || heard.len() < 20 {
        let event = live
            .expect("like.updated or comment.created", |m| {
                m["post_id"] == id.as_str() && (m["type"] == "like.updated" || m["type"] == "comment.created")
            })
            .await;
        if event["type"] == "like.updated" {
            let count = event["like_count"].as_u64().unwrap();
            assert!(count >= last_count, "like counts go back: {count} after {last_count}");
            last_count = count;
        } else {
            heard.push(event["comment"]["id"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(last_count, 20);
    heard.sort();
    comment_ids.sort();
    assert_eq!(heard, comment_ids, "each comment heard once");
    live.expect_none(Duration::from_millis(500), |m| {
        m["post_id"] == id.as_str() && m["type"] == "comment.created"
    })
    .await;
    let read = follower.get(&format!("/api/forum/posts/{id}/")).await;
    assert_eq!(read.body["like_count"], 20);
    assert_eq!(read.body["comment_count"], 20);
}

#[tokio::test]
async fn a_connection_still_opening_is_not_forgotten_by_a_send_that_finds_it_not_there_yet() {
    let stack = shared_stack().await;
    let alice = stack.user("alice");
    let bob = stack.user("bob");
    let table = &stack.stack.app.table;
    // `$connect` stored it a moment ago and the socket is not open yet: a send to it is
    // answered 410, as API Gateway answers for a connection still opening. Forgetting it then
    // would leave a socket that opens and hears nothing, ever.
    let opening = format!("opening{}=", ulid::Ulid::new());
    let now = chrono::Utc::now().timestamp();
    table
        .put_connection(&opening, "opening-user", now + 600, now + 600, now, false)
        .await
        .unwrap();
    let mut live = Live::connect(stack, &bob).await;
    let post = alice.create_post("while someone connects").await;
    let id = post["id"].as_str().unwrap().to_string();
    // The broadcast tried every connection; bob's heard it.
    live.expect("post.created", is("post.created", id)).await;
    for _ in 0..10 {
        assert!(
            table.get_connection(&opening).await.unwrap().is_some(),
            "a connection still opening was forgotten"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    table.delete_connection(&opening).await.unwrap();
}

#[tokio::test]
async fn a_connection_that_cannot_be_forgotten_never_makes_an_event_arrive_twice() {
    // stream-fanout may not delete here: forgetting a vanished client's connection fails.
    let stack = crate::deploy::stack_with_translation(|t| {
        let policies = t["template"]["Resources"]["StreamFanoutFunctionRole"]["Properties"]["Policies"]
            .as_array_mut()
            .expect("policies");
        for policy in policies {
            for statement in policy["PolicyDocument"]["Statement"]
                .as_array_mut()
                .expect("statements")
            {
                if let Some(actions) = statement["Action"].as_array_mut() {
                    actions.retain(|a| a != "dynamodb:DeleteItem");
                }
            }
        }
    })
    .await;
    // A client that vanished an hour ago: its connection is stored, its socket gone (410).
    let now = chrono::Utc::now().timestamp();
    stack
        .stack
        .app
        .table
        .put_connection(
            "Z29uZS1sb25nLWFnbw==",
            "ghost",
            now + 3600,
            now + 7200,
            now - 3600,
            false,
        )
        .await
        .expect("a stored connection");
    let alice = stack.user("alice");
    let bob = stack.user("bob");
    let mut listener = Live::connect(&stack, &bob).await;
    for text in ["first after the ghost", "second after the ghost"] {
        let post = alice.create_post(text).await;
        let id = post["id"].as_str().unwrap().to_string();
        listener.expect("post.created", is("post.created", id.clone())).await;
        // Failing the record would have sent it again to every socket: it arrives once.
        listener
            .expect_none(Duration::from_secs(3), is("post.created", id))
            .await;
    }
}

#[tokio::test]
async fn a_blocked_users_live_events_skip_the_blocker_but_reach_everyone_else() {
    let stack = shared_stack().await;
    let alice = stack.user("blocker");
    let bob = stack.user("blocked");
    let carol = stack.user("onlooker");
    let moderator = stack.moderator("mod");
    let post = carol.create_post("a thread everyone follows").await;
    let id = post["id"].as_str().unwrap().to_string();
    let mut alice_live = Live::connect(stack, &alice).await;
    let mut carol_live = Live::connect(stack, &carol).await;
    let mut moderator_live = Live::connect(stack, &moderator).await;
    for live in [&mut alice_live, &mut moderator_live] {
        live.subscribe(&id).await;
    }
    let block = format!("/api/forum/users/{}/block/", bob.user_id);
    assert_eq!(alice.post(&block, Value::Null).await.status, 201);
    // A moderator's block hides nothing from their moderator sockets, live included; what
    // counts is the socket's token, not the role the block was made with: the same person's
    // ordinary socket hears nothing of Bob, and Alice's socket as a moderator hears him.
    assert_eq!(moderator.post(&block, Value::Null).await.status, 201);
    let as_ordinary = stack.user_with_id(&moderator.username, moderator.user_id.clone());
    let mut demoted_live = Live::connect(stack, &as_ordinary).await;
    let mut promoted_live = Live::connect(stack, &stack.as_moderator(&alice)).await;
    for live in [&mut demoted_live, &mut promoted_live] {
        live.subscribe(&id).await;
    }

    let comments = format!("/api/forum/posts/{id}/comments/");
    let from_bob = bob.post(&comments, json!({"content": "from the blocked"})).await;
    assert_eq!(from_bob.status, 201);
    let bobs_comment = from_bob.body["id"].as_str().unwrap().to_string();
    let is_bobs = move |m: &Value| m["type"] == "comment.created" && m["comment"]["id"] == bobs_comment.as_str();
    carol_live
        .expect("Bob's comment, to the post's author", is_bobs.clone())
        .await;
    moderator_live
        .expect("Bob's comment, to a moderator who blocks him", is_bobs.clone())
        .await;
    promoted_live
        .expect("Bob's comment, to his blocker's moderator socket", is_bobs.clone())
        .await;
    let bobs_post = bob.create_post("a post by the blocked").await;
    let bobs_post_id = bobs_post["id"].as_str().unwrap().to_string();
    carol_live
        .expect("Bob's post, to everyone else", is("post.created", bobs_post_id.clone()))
        .await;
    let bobs_news = |m: &Value| is_bobs(m) || (m["type"] == "post.created" && m["post"]["id"] == bobs_post_id.as_str());
    alice_live.expect_none(Duration::from_secs(2), bobs_news).await;
    demoted_live.expect_none(Duration::from_secs(1), bobs_news).await;
    // Others' events still reach her.
    let from_carol = carol.post(&comments, json!({"content": "from the author"})).await;
    let carols_comment = from_carol.body["id"].as_str().unwrap().to_string();
    alice_live
        .expect("Carol's comment", move |m| {
            m["comment"]["id"] == carols_comment.as_str()
        })
        .await;

    // Unblocked, Bob is heard again.
    assert_eq!(alice.delete(&block).await.status, 204);
    let again = bob.post(&comments, json!({"content": "heard again"})).await;
    let again_id = again.body["id"].as_str().unwrap().to_string();
    alice_live
        .expect("Bob's comment after the unblock", move |m| {
            m["comment"]["id"] == again_id.as_str()
        })
        .await;
}

/// Who blocks a user has no bound (unlike whom a user blocks), so nothing stored for it may
/// grow with it: a set of blockers on one item (as it was) passed DynamoDB's 400 KB item limit
/// at about 3,100 blockers with a token's longest `sub` (128 bytes), and every further block
/// of that user failed. Writing 3,300 blocks here slowed the tests beside it past their
/// deadlines, so the test holds the cause instead: the blocked user's largest item is no larger
/// after 24 blockers than after 2. Then one more blocks them, and hears nothing of them.
#[tokio::test]
async fn a_user_blocked_by_many_stores_nothing_that_grows_and_blockers_stay_unheard() {
    let stack = shared_stack().await;
    let troll = stack.user("troll");
    let carol = stack.user("onlooker");
    let block = format!("/api/forum/users/{}/block/", troll.user_id);
    let blockers: Vec<Client> = (0..24)
        .map(|i| {
            let name = crate::support::unique(&format!("blocker{i}"));
            stack.user_with_id(&name, format!("{name:-<128}"))
        })
        .collect();
    let mut largest = Vec::new();
    for (i, blocker) in blockers.iter().enumerate() {
        assert_eq!(blocker.post(&block, Value::Null).await.status, 201);
        if i == 1 || i == blockers.len() - 1 {
            largest.push(largest_item_bytes(stack, &format!("USER#{}", troll.user_id)).await);
        }
    }
    assert_eq!(
        largest[0], largest[1],
        "an item of the blocked user's grew with their blockers"
    );
    let alice = stack.user("blocker");
    let post = carol.create_post("a thread the troll finds").await;
    let id = post["id"].as_str().unwrap().to_string();
    let mut alice_live = Live::connect(stack, &alice).await;
    let mut carol_live = Live::connect(stack, &carol).await;
    alice_live.subscribe(&id).await;
    assert_eq!(alice.post(&block, Value::Null).await.status, 201);
    let from_troll = troll
        .post(
            &format!("/api/forum/posts/{id}/comments/"),
            json!({"content": "still here"}),
        )
        .await;
    assert_eq!(from_troll.status, 201, "{}", from_troll.body);
    let trolls = from_troll.body["id"].as_str().unwrap().to_string();
    let is_trolls = move |m: &Value| m["type"] == "comment.created" && m["comment"]["id"] == trolls.as_str();
    carol_live
        .expect("the comment, to the post's author", is_trolls.clone())
        .await;
    alice_live.expect_none(Duration::from_secs(2), is_trolls).await;
}

/// The size of the largest item in partition `pk`, as DynamoDB counts it (names and values).
async fn largest_item_bytes(stack: &TestStack, pk: &str) -> usize {
    use aws_sdk_dynamodb::types::AttributeValue;
    fn size(value: &AttributeValue) -> usize {
        match value {
            AttributeValue::S(s) | AttributeValue::N(s) => s.len(),
            AttributeValue::Ss(set) | AttributeValue::Ns(set) => set.iter().map(String::len).sum(),
            AttributeValue::L(list) => list.iter().map(size).sum::<usize>() + 3,
            AttributeValue::M(map) => map.iter().map(|(k, v)| k.len() + size(v)).sum::<usize>() + 3,
            AttributeValue::B(b) => b.as_ref().len(),
            _ => 1,
        }
    }
    let out = stack
        .stack
        .dynamodb
        .query()
        .table_name(&stack.table_name)
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(":pk", AttributeValue::S(pk.to_string()))
        .consistent_read(true)
        .send()
        .await
        .expect("Query");
    out.items()
        .iter()
        .map(|item| item.iter().map(|(k, v)| k.len() + size(v)).sum::<usize>())
        .max()
        .unwrap_or(0)
}

/// Sends `message` and waits for the reply of type `reply`: the reply and the write units
/// ws-message spent on it (counted once the reply is back, since it is sent after the work).
async fn write_units_for(stack: &TestStack, live: &mut Live, message: Value, reply: &str) -> (Value, f64) {
    let usage = &stack.stack.functions["ws-message"].dynamodb_usage;
    let before = usage.snapshot();
    live.send(message).await;
    let answer = live.expect(reply, |m| m["type"] == reply).await;
    (answer, usage.snapshot().since(&before).write_units)
}

/// A client may send subscribe messages as fast as the stage lets it: one that repeats what is
/// followed, asks past the cap, or unfollows what is not followed writes nothing (it wrote
/// every item again, and past the cap wrote and deleted 50: about 100 write units a message).
#[tokio::test]
async fn subscribing_writes_only_what_is_new_and_nothing_past_the_cap() {
    // A stack of its own, so ws-message's counter holds this socket's messages alone.
    let stack = crate::support::isolated_stack().await;
    let bob = stack.user("bob");
    let mut live = Live::connect(&stack, &bob).await;
    let fresh = || -> Vec<String> { (0..50).map(|_| ulid::Ulid::new().to_string()).collect() };
    let subscribe = |ids: &[String]| json!({"action": "subscribe", "post_ids": ids});
    let unsubscribe = |ids: &[String]| json!({"action": "unsubscribe", "post_ids": ids});

    let first = fresh();
    let (_, units) = write_units_for(&stack, &mut live, subscribe(&first), "subscribed").await;
    assert!(units >= 50.0, "50 subscriptions written: {units}");
    let (ack, units) = write_units_for(&stack, &mut live, subscribe(&first), "subscribed").await;
    assert_eq!(
        (ack["post_ids"].as_array().unwrap().len(), units),
        (50, 0.0),
        "a repeat"
    );
    for _ in 0..3 {
        write_units_for(&stack, &mut live, subscribe(&fresh()), "subscribed").await;
    }
    let past_cap = fresh();
    let (error, units) = write_units_for(&stack, &mut live, subscribe(&past_cap), "error").await;
    assert_eq!(
        (error["code"].as_str(), units),
        (Some("too_many_subscriptions"), 0.0),
        "{error}"
    );
    let (_, units) = write_units_for(&stack, &mut live, unsubscribe(&past_cap), "unsubscribed").await;
    assert_eq!(units, 0.0, "unfollowing what is not followed");

    let table = &stack.stack.app.table;
    let connection_id = table.user_connections(&bob.user_id).await.unwrap()[0]
        .connection_id
        .clone();
    let connection = table.get_connection(&connection_id).await.unwrap().unwrap();
    assert_eq!(connection.subscriptions.len(), 200);
    for id in &past_cap {
        assert!(table.subscribers(id).await.unwrap().is_empty(), "{id} was refused");
    }
    // A subscription expires with its connection, not two hours after it was made.
    let sub = stack
        .stored_item(&keys::sub_pk(&first[0]), &keys::conn_pk(&connection_id))
        .await;
    let conn = stack.stored_item(&keys::conn_pk(&connection_id), keys::CONN_SK).await;
    assert_eq!(sub["ttl"], conn["ttl"]);

    let (_, units) = write_units_for(&stack, &mut live, unsubscribe(&first), "unsubscribed").await;
    assert!(units >= 50.0, "50 subscriptions deleted: {units}");
    for id in &first {
        assert!(table.subscribers(id).await.unwrap().is_empty(), "{id} was unfollowed");
    }
    let listed = table
        .get_connection(&connection_id)
        .await
        .unwrap()
        .unwrap()
        .subscriptions;
    assert_eq!(listed.len(), 150);
}

/// A subscribe and an unsubscribe of the same posts at once (a connection's messages may run
/// in parallel) never leave a subscription item the connection does not list: fan-out would
/// send to it past the cap, and `$disconnect`, which deletes what is listed, would leave it.
#[tokio::test]
async fn racing_subscribe_and_unsubscribe_leave_no_unlisted_subscription() {
    let stack = crate::support::isolated_stack().await;
    let table = &stack.stack.app.table;
    let connection = socketless_connection(table, "race").await;
    for _ in 0..20 {
        let ids: Vec<String> = (0..10).map(|_| ulid::Ulid::new().to_string()).collect();
        let before = table.get_connection(&connection).await.unwrap().unwrap();
        table.subscribe(&before, &ids, &unlimited()).await.unwrap();
        let listed = table.get_connection(&connection).await.unwrap().unwrap();
        // Unfollowed and followed again at once, each from what it read.
        let rate = unlimited();
        let (unsubscribed, subscribed) = tokio::join!(
            table.unsubscribe(&listed, &ids, &rate),
            table.subscribe(&before, &ids, &rate)
        );
        unsubscribed.unwrap();
        subscribed.unwrap();
        let now_listed = table.get_connection(&connection).await.unwrap().unwrap().subscriptions;
        for id in &ids {
            let has_item = table
                .subscribers(id)
                .await
                .unwrap()
                .iter()
                .any(|r| r.connection_id == connection);
            assert!(
                !has_item || now_listed.contains(id),
                "{id}: a subscription item its connection does not list"
            );
        }
        table
            .unsubscribe(
                &table.get_connection(&connection).await.unwrap().unwrap(),
                &ids,
                &unlimited(),
            )
            .await
            .unwrap();
    }
    table.delete_connection(&connection).await.unwrap();
}

/// Pings are no way to keep a socket past its token: the first after it expired closes it.
#[tokio::test]
async fn a_ping_after_the_token_expired_closes_the_socket() {
    let stack = shared_stack().await;
    let bob = stack.user("bob");
    // Valid for 3 more seconds (the 30 s leeway included).
    let short = forum_testkit::issue_token(&stack.jwt, &bob.user_id, &bob.username, None, 3 - 30).unwrap();
    let mut live = Live::connect(stack, &bob.with_token(&short)).await;
    live.send(json!({"action": "ping"})).await;
    live.expect("pong", |m| m["type"] == "pong").await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    live.send(json!({"action": "ping"})).await;
    live.expect_closed(|m| m["type"] == "pong").await;
}

/// A socket whose connection item is gone (DynamoDB's TTL removes an expired token's, and
/// nothing then reaches it) is closed by its next message, a ping included, so the client
/// reconnects with a fresh token instead of staying open and deaf.
#[tokio::test]
async fn a_socket_whose_connection_is_gone_is_closed_by_its_next_message() {
    let stack = crate::support::isolated_stack().await;
    let bob = stack.user("bob");
    let mut live = Live::connect(&stack, &bob).await;
    live.send(json!({"action": "ping"})).await;
    live.expect("pong", |m| m["type"] == "pong").await;
    let table = &stack.stack.app.table;
    let connection_id = table.user_connections(&bob.user_id).await.unwrap()[0]
        .connection_id
        .clone();
    // As TTL would: the item alone, behind the API's back.
    stack
        .stack
        .dynamodb
        .delete_item()
        .table_name(&stack.table_name)
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S(keys::conn_pk(&connection_id)),
        )
        .key("sk", aws_sdk_dynamodb::types::AttributeValue::S(keys::CONN_SK.into()))
        .send()
        .await
        .unwrap();
    live.send(json!({"action": "ping"})).await;
    live.expect_closed(|m| m["type"] == "pong").await;
}

/// Comments of a post a moderator removed are no one's news: a follower of the post hears
/// neither their removal nor their restore (with the comment in it), as the post is 404.
#[tokio::test]
async fn a_removed_posts_comment_events_reach_no_follower() {
    let stack = shared_stack().await;
    let author = stack.user("author");
    let eve = stack.user("eve");
    let moderator = stack.moderator("mod");
    let post = author.create_post("soon removed").await;
    let post_id = post["id"].as_str().unwrap().to_string();
    let comment = author
        .post(
            &format!("/api/forum/posts/{post_id}/comments/"),
            json!({"content": "a comment"}),
        )
        .await;
    assert_eq!(comment.status, 201, "{}", comment.body);
    let comment_id = comment.body["id"].as_str().unwrap().to_string();
    let act = |body: Value| {
        let moderator = moderator.clone();
        async move {
            let answer = moderator.post("/api/forum/moderation/actions/", body).await;
            assert_eq!(answer.status, 201, "{}", answer.body);
        }
    };
    act(json!({"action": "remove_post", "post_id": post_id, "reason": "x"})).await;
    // The removal's own record has taken the comment off its author's page, so what takes it
    // off again below can only be the comment's restore record.
    let (pk, sk) = (keys::post_pk(&post_id), keys::comment_sk(&comment_id));
    crate::support::eventually(
        "the comment unlisted with its post",
        || stack.stored_item(&pk, &sk),
        |item| !item.contains_key(keys::USER_PK),
    )
    .await;
    let mut live = Live::connect(stack, &eve).await;
    live.subscribe(&post_id).await;
    for action in ["remove_comment", "restore_comment"] {
        act(json!({"action": action, "post_id": post_id, "comment_id": comment_id, "reason": "x"})).await;
    }
    // The stream has handled both once it took the restored comment off its author's page
    // again (as on every removed post); only then is the post restored, or the stream, reading
    // the post as it is then, would rightly find it live again and tell (the test failed so
    // once under the full suite's load, when it waited on the removal's unlisting instead).
    crate::support::eventually(
        "the restored comment unlisted by the stream",
        || stack.stored_item(&pk, &sk),
        |item| !item.contains_key(keys::REMOVED_ATTR) && !item.contains_key(keys::USER_PK),
    )
    .await;
    act(json!({"action": "restore_post", "post_id": post_id, "reason": "x"})).await;
    let is_comment_news =
        |m: &Value| m["type"].as_str().is_some_and(|t| t.starts_with("comment.")) && m["post_id"] == post_id.as_str();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let next = tokio::time::timeout(deadline.saturating_duration_since(Instant::now()), live.socket.next())
            .await
            .expect("post.restored within 15 s")
            .expect("the socket stays open")
            .expect("a message");
        let Message::Text(text) = next else { continue };
        let value: Value = serde_json::from_str(&text).unwrap();
        assert!(!is_comment_news(&value), "a removed post's comment event: {value}");
        if is("post.restored", post_id.clone())(&value) {
            break;
        }
    }
}
