//! Writes safe to retry: an `Idempotency-Key` on a create is recorded with the write, so a
//! retry is answered as the create was and writes nothing, concurrent retries make one item,
//! and the key cannot be reused for another request.

use futures::future::join_all;
use serde_json::json;

use crate::support::{Answer, Client, isolated_stack};

fn keyed(client: &Client, key: &str) -> Client {
    client.with_header("idempotency-key", key)
}

fn same_answer(first: &Answer, again: &Answer) {
    assert_eq!((again.status, &again.body), (first.status, &first.body));
    assert_eq!(again.header("location"), first.header("location"));
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(first.header("idempotent-replayed"), None);
}

async fn feed_count(reader: &Client, text: &str) -> usize {
    let page = reader.get("/api/forum/posts/?limit=100").await;
    page.body["posts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["content"] == text)
        .count()
}

#[tokio::test]
async fn a_keyed_create_is_answered_again_on_retry_and_written_once() {
    let stack = isolated_stack().await;
    let alice = stack.user("alice");
    let bob = stack.user("bob");

    // A post, sent twice with one key: one post, the same answer twice.
    let body = json!({"content": "sent over a flaky network"});
    let first = keyed(&alice, "retry-1").post("/api/forum/posts/", body.clone()).await;
    assert_eq!(first.status, 201, "{}", first.body);
    let again = keyed(&alice, "retry-1").post("/api/forum/posts/", body.clone()).await;
    same_answer(&first, &again);
    stack
        .within_staleness_bound(
            "the post",
            || bob.get("/api/forum/posts/?limit=100"),
            |a| a.body["posts"].as_array().is_some_and(|p| !p.is_empty()),
        )
        .await;
    assert_eq!(feed_count(&bob, "sent over a flaky network").await, 1);

    // The same key with another body: refused, nothing written.
    keyed(&alice, "retry-1")
        .post("/api/forum/posts/", json!({"content": "something else"}))
        .await
        .assert_error(422, "idempotency_key_reused");
    // Keys are per user: Bob's "retry-1" is his own.
    assert_eq!(
        keyed(&bob, "retry-1")
            .post("/api/forum/posts/", body.clone())
            .await
            .status,
        201
    );
    // No key, no deduplication.
    assert_eq!(alice.post("/api/forum/posts/", body.clone()).await.status, 201);

    // Concurrent retries of a comment: one comment, identical answers, counted once.
    let post_id = first.body["id"].as_str().unwrap();
    let comments = format!("/api/forum/posts/{post_id}/comments/");
    let bob_keyed = keyed(&bob, "comment-key");
    let retries = join_all((0..6).map(|_| bob_keyed.post(&comments, json!({"content": "once"})))).await;
    let bodies: Vec<_> = retries.iter().filter(|a| a.status == 201).map(|a| &a.body).collect();
    for answer in &retries {
        assert!(matches!(answer.status, 201 | 503), "{}", answer.body);
    }
    assert!(
        !bodies.is_empty() && bodies.windows(2).all(|w| w[0] == w[1]),
        "one answer: {bodies:?}"
    );
    let listed = bob.get(&comments).await;
    assert_eq!(listed.body["comments"].as_array().unwrap().len(), 1, "{}", listed.body);
    let post = bob.get(&format!("/api/forum/posts/{post_id}/")).await;
    assert_eq!(post.body["comment_count"], 1);

    // Reports and presigned uploads honour keys too.
    let report = format!("/api/forum/posts/{post_id}/report/");
    let reported = keyed(&bob, "report-key").post(&report, json!({"reason": "spam"})).await;
    assert_eq!(reported.status, 201, "{}", reported.body);
    same_answer(
        &reported,
        &keyed(&bob, "report-key").post(&report, json!({"reason": "spam"})).await,
    );
    // A direct upload is known by its file, whatever multipart boundary each send draws.
    let png = forum_testkit::images::png(8, 8, false);
    let first = crate::media::upload(&keyed(&bob, "direct-key"), png.clone(), "a.png").await;
    assert_eq!(first.status, 201, "{}", first.body);
    same_answer(
        &first,
        &crate::media::upload(&keyed(&bob, "direct-key"), png, "a.png").await,
    );
    crate::media::upload(
        &keyed(&bob, "direct-key"),
        forum_testkit::images::png(9, 9, false),
        "a.png",
    )
    .await
    .assert_error(422, "idempotency_key_reused");
    let presign = json!({"content_type": "image/png", "content_length": 1000});
    let first = keyed(&bob, "upload-key")
        .post("/api/forum/upload/presign/", presign.clone())
        .await;
    assert_eq!(first.status, 201, "{}", first.body);
    same_answer(
        &first,
        &keyed(&bob, "upload-key")
            .post("/api/forum/upload/presign/", presign)
            .await,
    );

    // A malformed key is refused before anything happens.
    for bad in ["", "x".repeat(256).as_str(), "tab\there"] {
        let answer = keyed(&alice, bad)
            .post("/api/forum/posts/", json!({"content": "bad key"}))
            .await;
        answer.assert_error(400, "invalid_idempotency_key");
    }
    assert_eq!(feed_count(&bob, "bad key").await, 0);

    // A comment's retry after its post was deleted is answered as the comment was (it was
    // written), not 404; a new comment with another key gets the 404.
    let gone = alice.create_post("deleted under a retry").await;
    let comments = format!("/api/forum/posts/{}/comments/", gone["id"].as_str().unwrap());
    let first = keyed(&bob, "late-retry")
        .post(&comments, json!({"content": "in time"}))
        .await;
    assert_eq!(first.status, 201, "{}", first.body);
    assert_eq!(
        alice
            .delete(&format!("/api/forum/posts/{}/", gone["id"].as_str().unwrap()))
            .await
            .status,
        204
    );
    same_answer(
        &first,
        &keyed(&bob, "late-retry")
            .post(&comments, json!({"content": "in time"}))
            .await,
    );
    keyed(&bob, "late-retry")
        .post(&comments, json!({"content": "another"}))
        .await
        .assert_error(422, "idempotency_key_reused");
    keyed(&bob, "too-late")
        .post(&comments, json!({"content": "in time"}))
        .await
        .assert_error(404, "not_found");
}
