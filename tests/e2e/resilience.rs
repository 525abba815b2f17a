//! A DynamoDB that is unreachable or hangs becomes a 503 within bounded time, never a hang,
//! and the API recovers when it returns. Damaged items fail closed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

use forum_store::keys;

use crate::realtime::{Live, is};
use crate::support::{dynamodb_endpoint, isolated_stack, start_stack, test_options};

const PASS: u8 = 0;
const HANG: u8 = 1;
const RESET: u8 = 2;

/// Copies bytes one way while the mode is PASS; on HANG holds the sockets and answers nothing.
async fn pipe(mode: Arc<AtomicU8>, mut from: OwnedReadHalf, mut to: OwnedWriteHalf) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        match mode.load(Ordering::SeqCst) {
            PASS => {}
            HANG => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                return;
            }
            _ => return,
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// A TCP proxy in front of DynamoDB Local that can be told to pass, hang or reset.
struct FaultProxy {
    url: String,
    mode: Arc<AtomicU8>,
    /// Connections accepted so far.
    opened: Arc<AtomicUsize>,
}

async fn fault_proxy(target: &str) -> FaultProxy {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mode = Arc::new(AtomicU8::new(PASS));
    let opened = Arc::new(AtomicUsize::new(0));
    let target = target.trim_start_matches("http://").to_string();
    let (shared_mode, count) = (mode.clone(), opened.clone());
    tokio::spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else {
                return;
            };
            count.fetch_add(1, Ordering::SeqCst);
            let mode = shared_mode.clone();
            let target = target.clone();
            tokio::spawn(async move {
                if mode.load(Ordering::SeqCst) == RESET {
                    return; // drops the connection at once
                }
                let Ok(server) = TcpStream::connect(&target).await else {
                    return;
                };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::join!(pipe(mode.clone(), cr, sw), pipe(mode, sr, cw));
            });
        }
    });
    FaultProxy {
        url: format!("http://{addr}"),
        mode,
        opened,
    }
}

#[tokio::test]
async fn an_unreachable_or_hanging_dynamodb_is_a_bounded_503_and_the_api_recovers() {
    let FaultProxy { url: proxy, mode, .. } = fault_proxy(&dynamodb_endpoint().await).await;
    let stack = start_stack(
        test_options(&format!("forum-faults-{}", ulid::Ulid::new())),
        Some(proxy),
    )
    .await;
    let alice = stack.user("alice");
    let post = alice.create_post("before the outage").await;
    let post_path = format!("/api/forum/posts/{}/", post["id"].as_str().unwrap());
    let mut live = Live::connect(&stack, &alice).await;

    for (fault, name) in [(RESET, "reset"), (HANG, "hang")] {
        mode.store(fault, Ordering::SeqCst);
        // A socket's message is told what an HTTP client would be, never the SDK's error.
        live.send(json!({"action": "subscribe", "post_ids": [post["id"]]}))
            .await;
        let error = live.expect("an error", |m| m["type"] == "error").await;
        assert_eq!(
            (error["code"].as_str(), error["message"].as_str()),
            (
                Some("unavailable"),
                Some("a dependency is unavailable; retry with backoff")
            ),
            "{name}: {error}"
        );
        let id = post["id"].as_str().unwrap();
        let requests = [
            alice.get("/api/forum/posts/").await,
            alice
                .post("/api/forum/posts/", json!({"content": "during the outage"}))
                .await,
            alice.get(&post_path).await,
            alice.post(&format!("/api/forum/posts/{id}/like/"), json!({})).await,
            alice
                .post(
                    &format!("/api/forum/posts/{id}/comments/"),
                    json!({"content": "hello?"}),
                )
                .await,
        ];
        for answer in requests {
            answer.assert_error(503, "unavailable");
            assert_eq!(answer.header("retry-after"), Some("1"), "{name}");
        }
        // Each answer comes by the request's deadline (2.5 s; forum-bench measures it), not
        // Lambda's timeout: a hang check with room for a loaded machine, not a speed test.
        let started = Instant::now();
        alice.get(&post_path).await.assert_error(503, "unavailable");
        assert!(
            started.elapsed() < forum_store::deadline::REQUEST_BUDGET + Duration::from_secs(3),
            "{name}: took {:?}",
            started.elapsed()
        );
    }

    mode.store(PASS, Ordering::SeqCst);
    let mut recovered = false;
    for _ in 0..50 {
        if alice.get(&post_path).await.status == 200 {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(recovered, "the API did not recover once DynamoDB answered again");
    let feed = alice.get("/api/forum/posts/?limit=100").await;
    let contents: Vec<&str> = feed.body["posts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["content"].as_str().unwrap())
        .collect();
    assert_eq!(
        contents,
        vec!["before the outage"],
        "nothing was written during the outage"
    );
}

/// What a cold start's warm-up is for: the connection it opens (in AWS, with its TLS
/// handshake) is the one the first request uses.
#[tokio::test]
async fn a_warmed_up_table_serves_its_first_request_on_the_warm_connection() {
    use forum_store::aws::{self, AwsTarget};
    let stack = crate::support::shared_stack().await;
    let FaultProxy { url: proxy, opened, .. } = fault_proxy(&dynamodb_endpoint().await).await;
    let table_for = |endpoint: String| async move {
        let target = AwsTarget::Local {
            dynamodb_endpoint: endpoint,
            s3_endpoint: "http://127.0.0.1:9".into(),
            secrets_endpoint: "http://127.0.0.1:9".into(),
        };
        let client = aws::Clients::load(target)
            .await
            .dynamodb(&aws::DynamoDbUsage::default());
        forum_store::Table::new(client, stack.table_name.clone())
    };

    // Without a warm-up, the first request opens a connection.
    let cold = table_for(proxy.clone()).await;
    cold.get_post(&ulid::Ulid::new().to_string(), "nobody").await.unwrap();
    assert_eq!(opened.load(Ordering::SeqCst), 1);

    let warmed = table_for(proxy).await;
    warmed.warm_up().await;
    assert_eq!(opened.load(Ordering::SeqCst), 2, "the warm-up opens one connection");
    for _ in 0..3 {
        assert!(
            warmed
                .get_post(&ulid::Ulid::new().to_string(), "nobody")
                .await
                .unwrap()
                .is_none()
        );
    }
    assert_eq!(
        opened.load(Ordering::SeqCst),
        2,
        "requests after the warm-up reuse its connection"
    );
}

#[tokio::test]
async fn each_function_may_call_only_what_its_role_in_the_template_allows() {
    let stack = crate::support::shared_stack().await;
    let alice = stack.user("alice");
    let post = alice.create_post("guarded").await;
    let id = post["id"].as_str().unwrap();
    let function = |binary: &str| stack.stack.functions[binary].clone();

    // get-post reads posts: allowed. It may not delete one, nor touch the bucket.
    let get_post = function("get-post");
    assert!(get_post.table.get_post(id, &alice.user_id).await.unwrap().is_some());
    assert!(get_post.table.delete_post(id, &alice.user_id).await.is_err());
    assert!(get_post.bucket.delete("media/anything/display.png").await.is_err());
    // process-media reads and deletes uploads/ and writes media/; it may not delete media/.
    let process_media = function("process-media");
    assert!(
        process_media
            .bucket
            .delete("uploads/01ARZ3NDEKTSV4RRFFQ69G5FAV")
            .await
            .is_ok()
    );
    assert!(
        process_media
            .bucket
            .delete("media/01ARZ3NDEKTSV4RRFFQ69G5FAV/display.png")
            .await
            .is_err()
    );
    // stream-fanout cleans up both (released media: originals and variants).
    let fanout = function("stream-fanout");
    assert!(fanout.bucket.delete("uploads/01ARZ3NDEKTSV4RRFFQ69G5FAV").await.is_ok());
    assert!(
        fanout
            .bucket
            .delete("media/01ARZ3NDEKTSV4RRFFQ69G5FAV/display.png")
            .await
            .is_ok()
    );
    // Refused calls changed nothing.
    assert_eq!(alice.get(&format!("/api/forum/posts/{id}/")).await.status, 200);
}

/// Removes one attribute from a stored item, as a bad migration or a hand edit would.
async fn remove_attribute(stack: &crate::support::TestStack, pk: String, sk: &str, attribute: &str) {
    use aws_sdk_dynamodb::types::AttributeValue;
    stack
        .stack
        .dynamodb
        .update_item()
        .table_name(stack.stack.app.table.name())
        .key(keys::PK, AttributeValue::S(pk))
        .key(keys::SK, AttributeValue::S(sk.to_string()))
        .update_expression("REMOVE #attribute")
        .expression_attribute_names("#attribute", attribute)
        .send()
        .await
        .expect("the item is updated");
}

/// A stored item that lacks what every item of its kind has is an error (logged and counted),
/// never a default: a post without its like count is a 500, not a post with 0 likes, and a
/// connection that does not say when its token expires is never sent to (the others are).
#[tokio::test]
async fn stored_items_missing_a_required_attribute_are_errors_never_defaults() {
    use aws_sdk_dynamodb::types::AttributeValue;

    let stack = isolated_stack().await;
    let alice = stack.user("alice");
    let post = alice.create_post("counted").await;
    let id = post["id"].as_str().unwrap();
    remove_attribute(&stack, keys::post_pk(id), keys::POST_SK, "like_count").await;
    // Past the read functions' cache, so the item is read again.
    tokio::time::sleep(stack.read_cache_ttl() + Duration::from_millis(100)).await;
    alice
        .get(&format!("/api/forum/posts/{id}/"))
        .await
        .assert_error(500, "internal");
    alice.get("/api/forum/posts/").await.assert_error(500, "internal");

    let bob = stack.user("bob");
    let carol = stack.user("carol");
    let mut bob_live = Live::connect(&stack, &bob).await;
    let mut carol_live = Live::connect(&stack, &carol).await;
    // Bob's connection, found through his user index.
    let found = stack
        .stack
        .dynamodb
        .query()
        .table_name(stack.stack.app.table.name())
        .index_name(keys::USER_INDEX)
        .key_condition_expression("#pk = :pk AND begins_with(#sk, :conn)")
        .expression_attribute_names("#pk", keys::USER_PK)
        .expression_attribute_names("#sk", keys::USER_SK)
        .expression_attribute_values(":pk", AttributeValue::S(keys::user_pk(&bob.user_id)))
        .expression_attribute_values(":conn", AttributeValue::S(keys::conn_pk("")))
        .send()
        .await
        .expect("a query");
    let connections: Vec<String> = found
        .items()
        .iter()
        .filter_map(|item| item.get(keys::PK).and_then(|v| v.as_s().ok()).cloned())
        .collect();
    assert_eq!(connections.len(), 1, "{connections:?}");
    remove_attribute(&stack, connections[0].clone(), keys::CONN_SK, "expires_at").await;

    let next = stack.user("dan").create_post("after the damage").await;
    let next_id = next["id"].as_str().unwrap().to_string();
    carol_live
        .expect("post.created", is("post.created", next_id.clone()))
        .await;
    bob_live
        .expect_none(Duration::from_secs(3), is("post.created", next_id))
        .await;
}
