//! Blocking: the blocker's lists leave the blocked user out, the blocked user cannot comment
//! on the blocker's posts, and moderators' views are never filtered.

use serde_json::json;

use crate::support::{Client, isolated_stack};

fn block_path(user: &Client) -> String {
    format!("/api/forum/users/{}/block/", user.user_id)
}

async fn feed_ids(reader: &Client) -> Vec<String> {
    let page = reader.get("/api/forum/posts/?limit=100").await;
    assert_eq!(page.status, 200, "{}", page.body);
    page.body["posts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_string())
        .collect()
}

async fn comment_authors(reader: &Client, post_id: &str) -> Vec<String> {
    let page = reader.get(&format!("/api/forum/posts/{post_id}/comments/")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    page.body["comments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["user"]["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn a_block_hides_the_blocked_users_posts_and_comments_and_stops_their_replies() {
    let stack = isolated_stack().await;
    let alice = stack.user("alice");
    let bob = stack.user("bob");
    let carol = stack.user("carol");
    let moderator = stack.moderator("mod");
    let bobs_post = bob.create_post("bob writes").await;
    let bobs_post = bobs_post["id"].as_str().unwrap().to_string();
    let alices_post = alice.create_post("alice writes").await;
    let alices_post = alices_post["id"].as_str().unwrap().to_string();
    let carols_post = carol.create_post("carol writes").await;
    let carols_post = carols_post["id"].as_str().unwrap().to_string();
    for (who, post) in [(&bob, &carols_post), (&carol, &carols_post)] {
        let c = who
            .post(&format!("/api/forum/posts/{post}/comments/"), json!({"content": "hi"}))
            .await;
        assert_eq!(c.status, 201, "{}", c.body);
    }

    let block = alice.post(&block_path(&bob), json!(null)).await;
    assert_eq!(block.status, 201, "{}", block.body);
    assert_eq!(block.body["user"]["id"], bob.user_id.as_str());
    assert_eq!(block.body["user"]["username"], bob.username.as_str());
    let again = alice.post(&block_path(&bob), json!(null)).await;
    assert_eq!(
        (again.status, &again.body),
        (201, &block.body),
        "a repeat answers as the first did"
    );
    alice
        .post(&block_path(&alice), json!(null))
        .await
        .assert_error(400, "invalid_request");
    // `me` is the caller here as on every user route, not a user called "me".
    alice
        .post("/api/forum/users/me/block/", json!(null))
        .await
        .assert_error(400, "invalid_request");
    assert_eq!(alice.delete("/api/forum/users/me/block/").await.status, 204);

    // Alice's lists leave Bob out (the read cache may hold the page for its TTL).
    stack
        .within_staleness_bound(
            "the feed without bob",
            || alice.get("/api/forum/posts/?limit=100"),
            |a| {
                a.body["posts"]
                    .as_array()
                    .is_some_and(|p| p.iter().all(|p| p["id"] != bobs_post.as_str()))
            },
        )
        .await;
    assert!(feed_ids(&alice).await.contains(&carols_post));
    assert_eq!(comment_authors(&alice, &carols_post).await, vec![carol.user_id.clone()]);
    // Everyone else's, and a moderator's even when they block Bob, are unchanged.
    assert!(feed_ids(&carol).await.contains(&bobs_post));
    assert_eq!(comment_authors(&carol, &carols_post).await.len(), 2);
    assert_eq!(moderator.post(&block_path(&bob), json!(null)).await.status, 201);
    assert!(feed_ids(&moderator).await.contains(&bobs_post));
    assert_eq!(comment_authors(&moderator, &carols_post).await.len(), 2);
    // Alice can still open Bob's post directly (a block filters lists, it does not forbid).
    assert_eq!(alice.get(&format!("/api/forum/posts/{bobs_post}/")).await.status, 200);

    // Bob cannot comment on Alice's posts; nothing is counted.
    let refused = bob
        .post(
            &format!("/api/forum/posts/{alices_post}/comments/"),
            json!({"content": "let me"}),
        )
        .await;
    refused.assert_error(403, "forbidden");
    let post = carol.get(&format!("/api/forum/posts/{alices_post}/")).await;
    assert_eq!(post.body["comment_count"], 0);
    // Carol, whom nobody blocks, can.
    assert_eq!(
        carol
            .post(
                &format!("/api/forum/posts/{alices_post}/comments/"),
                json!({"content": "ok"})
            )
            .await
            .status,
        201
    );

    // The list of blocks, a page at a time.
    assert_eq!(alice.post(&block_path(&carol), json!(null)).await.status, 201);
    let first = alice.get("/api/forum/users/me/blocks/?limit=1").await;
    assert_eq!(first.status, 200, "{}", first.body);
    let second = alice.get(first.body["next_page"].as_str().unwrap()).await;
    let mut listed: Vec<String> = [&first, &second]
        .iter()
        .map(|p| p.body["blocks"][0]["user"]["id"].as_str().unwrap().to_string())
        .collect();
    listed.sort();
    let mut expected = vec![bob.user_id.clone(), carol.user_id.clone()];
    expected.sort();
    assert_eq!(listed, expected);
    assert!(second.body["next_page"].is_null());
    // Another user's cursor is refused: a cursor is bound to its list.
    let stolen = first.body["next_page"].as_str().unwrap().replace(&stack.base, "");
    bob.get(&stolen).await.assert_error(400, "invalid_cursor");

    // Unblocking (twice: the state asked for holds) brings Bob back.
    assert_eq!(alice.delete(&block_path(&bob)).await.status, 204);
    assert_eq!(alice.delete(&block_path(&bob)).await.status, 204);
    stack
        .within_staleness_bound(
            "the feed with bob again",
            || alice.get("/api/forum/posts/?limit=100"),
            |a| {
                a.body["posts"]
                    .as_array()
                    .is_some_and(|p| p.iter().any(|p| p["id"] == bobs_post.as_str()))
            },
        )
        .await;
    assert_eq!(
        bob.post(
            &format!("/api/forum/posts/{alices_post}/comments/"),
            json!({"content": "thanks"})
        )
        .await
        .status,
        201
    );
}
