//! The post routes end to end, by two users.

use serde_json::json;

use crate::support::{openapi, shared_stack};

#[tokio::test]
async fn create_then_read_a_post_in_the_spec_shape() {
    let stack = shared_stack().await;
    let alice = stack.user("alice");
    let created = alice
        .post("/api/forum/posts/", json!({"content": "  Hello, forum!  "}))
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let post = &created.body;
    openapi().assert_schema("Post", post);
    assert_eq!(post["content"], "Hello, forum!");
    assert_eq!(post["user"]["id"], alice.user_id.as_str());
    assert_eq!(post["user"]["username"], alice.username.as_str());
    assert_eq!(post["user"]["avatar_url"], "https://cdn.example.com/a.png");
    assert_eq!(post["media_url"], serde_json::Value::Null);
    assert_eq!(post["like_count"], 0);
    assert_eq!(post["comment_count"], 0);
    assert_eq!(post["is_liked"], false);
    assert_eq!(post["edited_at"], serde_json::Value::Null);
    let id = post["id"].as_str().unwrap();
    assert_eq!(
        created.header("location"),
        Some(format!("/api/forum/posts/{id}/").as_str())
    );
    assert!(created.header("x-request-id").is_some());

    // Both path forms, and the post reads back the same.
    for path in [format!("/api/forum/posts/{id}/"), format!("/api/forum/posts/{id}")] {
        let got = alice.get(&path).await;
        assert_eq!(got.status, 200, "{path}: {}", got.body);
        assert_eq!(&got.body, post);
    }
    // Another user sees the same post and author.
    let bob = stack.user("bob");
    let seen = bob.get(&format!("/api/forum/posts/{id}/")).await;
    assert_eq!(seen.body["user"]["username"], alice.username.as_str());
    assert_eq!(seen.body["is_liked"], false);
}

#[tokio::test]
async fn a_new_post_tops_the_feed_with_and_without_trailing_slash() {
    let stack = shared_stack().await;
    let alice = stack.user("alice");
    let post = alice.create_post("fresh post").await;
    for path in ["/api/forum/posts/", "/api/forum/posts"] {
        let feed = alice.get(path).await;
        assert_eq!(feed.status, 200);
        let ids: Vec<&str> = feed.body["posts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].as_str().unwrap())
            .collect();
        assert!(ids.contains(&post["id"].as_str().unwrap()), "{path}");
        // Newest first.
        let mut sorted = ids.clone();
        sorted.sort_by(|a, b| b.cmp(a));
        assert_eq!(ids, sorted);
    }
    let created = alice.post("/api/forum/posts", json!({"content": "no slash"})).await;
    assert_eq!(created.status, 201);
}

#[tokio::test]
async fn the_author_edits_content_and_media() {
    let stack = shared_stack().await;
    let alice = stack.user("alice");
    let post = alice.create_post("first draft").await;
    let path = format!("/api/forum/posts/{}/", post["id"].as_str().unwrap());

    let media = crate::media::ready_media(&alice).await;
    let edited = alice
        .patch(
            &path,
            json!({"content": "second <i>draft</i>", "media_url": media["url"]}),
        )
        .await;
    assert_eq!(edited.status, 200, "{}", edited.body);
    assert_eq!(edited.body["content"], "second draft");
    assert_eq!(edited.body["media_url"], media["url"]);
    assert_eq!(edited.body["timestamp"], post["timestamp"]);
    let edited_at = edited.body["edited_at"].as_str().expect("edited_at set").to_string();
    assert!(edited_at.as_str() >= post["timestamp"].as_str().unwrap());

    // Only what was sent changes; null removes the media.
    let media_only = alice.patch(&path, json!({"media_url": null})).await;
    assert_eq!(media_only.status, 200);
    assert_eq!(media_only.body["content"], "second draft");
    assert_eq!(media_only.body["media_url"], serde_json::Value::Null);
    assert_eq!(alice.get(&path).await.body, media_only.body);

    let no_slash = alice
        .patch(path.trim_end_matches('/'), json!({"content": "third"}))
        .await;
    assert_eq!(no_slash.status, 200);
}

#[tokio::test]
async fn only_the_author_can_edit_or_delete_and_nothing_changes_otherwise() {
    let stack = shared_stack().await;
    let alice = stack.user("alice");
    let bob = stack.user("bob");
    let post = alice.create_post("alice's words").await;
    let path = format!("/api/forum/posts/{}/", post["id"].as_str().unwrap());

    bob.patch(&path, json!({"content": "bob was here"}))
        .await
        .assert_error(403, "forbidden");
    bob.delete(&path).await.assert_error(403, "forbidden");
    let unchanged = alice.get(&path).await;
    assert_eq!(unchanged.status, 200);
    assert_eq!(unchanged.body, post);
}

#[tokio::test]
async fn a_deleted_post_is_gone_everywhere_at_once() {
    let stack = shared_stack().await;
    let alice = stack.user("alice");
    let post = alice.create_post("short-lived").await;
    let id = post["id"].as_str().unwrap();
    let path = format!("/api/forum/posts/{id}/");

    let deleted = alice.delete(path.trim_end_matches('/')).await;
    assert_eq!(deleted.status, 204);
    assert!(deleted.body.is_null());

    alice.get(&path).await.assert_error(404, "not_found");
    alice
        .patch(&path, json!({"content": "too late"}))
        .await
        .assert_error(404, "not_found");
    alice.delete(&path).await.assert_error(404, "not_found");
    let feed = alice.get("/api/forum/posts/?limit=100").await;
    assert!(feed.body["posts"].as_array().unwrap().iter().all(|p| p["id"] != id));
}

#[tokio::test]
async fn missing_posts_and_malformed_ids_are_404() {
    let stack = shared_stack().await;
    let alice = stack.user("alice");
    let missing = ulid::Ulid::new().to_string();
    for path in [
        format!("/api/forum/posts/{missing}/"),
        "/api/forum/posts/not-a-ulid/".to_string(),
        "/api/forum/posts/%00%27%22/".to_string(),
    ] {
        alice.get(&path).await.assert_error(404, "not_found");
        alice
            .patch(&path, json!({"content": "x"}))
            .await
            .assert_error(404, "not_found");
        alice.delete(&path).await.assert_error(404, "not_found");
    }
}

#[tokio::test]
async fn the_profile_follows_the_token_claims() {
    let stack = shared_stack().await;
    let alice = stack.user("alice");
    let post = alice.create_post("before the rename").await;
    // Same user id, new username and no picture: the next write refreshes the profile.
    let renamed = forum_testkit::issue_token(&stack.jwt, &alice.user_id, "alice_renamed", None, 600).unwrap();
    let alice2 = alice.with_token(&renamed);
    alice2.create_post("after the rename").await;
    let old = alice2
        .get(&format!("/api/forum/posts/{}/", post["id"].as_str().unwrap()))
        .await;
    assert_eq!(old.body["user"]["username"], "alice_renamed");
    assert_eq!(old.body["user"]["avatar_url"], serde_json::Value::Null);
}
