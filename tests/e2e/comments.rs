//! Comments: the SPEC shapes, oldest-first pagination, own-only edits, exact counts.

use std::collections::HashSet;

use futures::future::join_all;
use serde_json::{Value, json};

use crate::support::{Client, openapi, shared_stack, until_answered};

fn comments_path(post: &Value) -> String {
    format!("/api/forum/posts/{}/comments/", post["id"].as_str().unwrap())
}

fn post_path(post: &Value) -> String {
    format!("/api/forum/posts/{}/", post["id"].as_str().unwrap())
}

async fn comment(client: &Client, post: &Value, text: &str) -> Value {
    let answer = client.post(&comments_path(post), json!({ "content": text })).await;
    assert_eq!(answer.status, 201, "{}", answer.body);
    answer.body
}

async fn all_comments(client: &Client, post: &Value, limit: usize) -> Vec<Value> {
    let mut out = Vec::new();
    let mut page = client.get(&format!("{}?limit={limit}", comments_path(post))).await;
    loop {
        assert_eq!(page.status, 200, "{}", page.body);
        out.extend(page.body["comments"].as_array().unwrap().iter().cloned());
        match page.body["next_page"].as_str() {
            Some(next) => page = client.get(next).await,
            None => return out,
        }
    }
}

#[tokio::test]
async fn comments_in_the_spec_shape_oldest_first_counted_on_the_post() {
    let stack = shared_stack().await;
    let alice = stack.user("alice");
    let bob = stack.user("bob");
    let post = alice.create_post("discuss").await;

    let created = bob
        .post(&comments_path(&post), json!({"content": "  first <b>!</b> "}))
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    openapi().assert_schema("Comment", &created.body);
    assert_eq!(created.body["content"], "first !");
    assert_eq!(created.body["user"]["id"], bob.user_id.as_str());
    assert_eq!(created.body["user"]["username"], bob.username.as_str());
    assert_eq!(created.body["post_id"], post["id"]);
    let cid = created.body["id"].as_str().unwrap();
    assert_eq!(
        created.header("location"),
        Some(format!("/api/forum/posts/{}/comments/{cid}/", post["id"].as_str().unwrap()).as_str())
    );
    comment(&alice, &post, "second").await;
    let no_slash = alice
        .post(comments_path(&post).trim_end_matches('/'), json!({"content": "third"}))
        .await;
    assert_eq!(no_slash.status, 201);

    let listed = alice.get(comments_path(&post).trim_end_matches('/')).await;
    let texts: Vec<&str> = listed.body["comments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["content"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["first !", "second", "third"]);
    assert_eq!(listed.body["comments"][0], created.body);
    assert_eq!(listed.body["next_page"], Value::Null);
    assert_eq!(listed.body["previous_page"], Value::Null);
    assert_eq!(alice.get(&post_path(&post)).await.body["comment_count"], 3);
}

#[tokio::test]
async fn comment_pages_walk_both_ways_and_cursors_stay_in_their_list() {
    let stack = shared_stack().await;
    let alice = stack.user("alice");
    let post = alice.create_post("many comments").await;
    let other = alice.create_post("another post").await;
    for i in 0..7 {
        comment(&alice, &post, &format!("c{i}")).await;
    }
    let first = alice.get(&format!("{}?limit=3", comments_path(&post))).await;
    let second = alice.get(first.body["next_page"].as_str().unwrap()).await;
    comment(&alice, &post, "late arrival").await;
    let back = alice.get(second.body["previous_page"].as_str().unwrap()).await;
    assert_eq!(back.body["comments"], first.body["comments"]);
    let all: Vec<String> = all_comments(&alice, &post, 3)
        .await
        .iter()
        .map(|c| c["content"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(all, ["c0", "c1", "c2", "c3", "c4", "c5", "c6", "late arrival"]);

    // A cursor from one post's comments is refused on another's, and on the feed.
    let next = first.body["next_page"].as_str().unwrap();
    let cursor = next.split("cursor=").nth(1).unwrap().split('&').next().unwrap();
    alice
        .get(&format!("{}?cursor={cursor}", comments_path(&other)))
        .await
        .assert_error(400, "invalid_cursor");
    alice
        .get(&format!("/api/forum/posts/?cursor={cursor}"))
        .await
        .assert_error(400, "invalid_cursor");
    alice
        .get(&format!("{}?limit=0", comments_path(&post)))
        .await
        .assert_error(400, "invalid_limit");
}

#[tokio::test]
async fn only_the_author_edits_or_deletes_a_comment() {
    let stack = shared_stack().await;
    let alice = stack.user("alice");
    let bob = stack.user("bob");
    let post = alice.create_post("thread").await;
    let c = comment(&bob, &post, "bob's take").await;
    let path = format!("{}{}/", comments_path(&post), c["id"].as_str().unwrap());

    // The post's author is not the comment's author.
    alice
        .patch(&path, json!({"content": "rewritten"}))
        .await
        .assert_error(403, "forbidden");
    alice.delete(&path).await.assert_error(403, "forbidden");

    let edited = bob
        .patch(
            path.trim_end_matches('/'),
            json!({"content": "bob's <i>better</i> take"}),
        )
        .await;
    assert_eq!(edited.status, 200, "{}", edited.body);
    assert_eq!(edited.body["content"], "bob's better take");
    assert_eq!(edited.body["timestamp"], c["timestamp"]);
    assert!(edited.body["edited_at"].is_string());
    let listed = alice.get(&comments_path(&post)).await;
    assert_eq!(listed.body["comments"][0], edited.body);

    for invisible in ["", "\u{3164}", "\u{200D}\u{FE0F}", "\u{E0020}"] {
        bob.patch(&path, json!({"content": invisible}))
            .await
            .assert_error(400, "content_required");
    }
    bob.patch(&path, json!({"text": "x"}))
        .await
        .assert_error(400, "invalid_json");
    bob.patch(&path, json!({"content": "what a fucking mess"}))
        .await
        .assert_error(400, "profanity");

    assert_eq!(bob.delete(&path).await.status, 204);
    assert_eq!(alice.get(&post_path(&post)).await.body["comment_count"], 0);
    bob.delete(&path).await.assert_error(404, "not_found");
    bob.patch(&path, json!({"content": "ghost"}))
        .await
        .assert_error(404, "not_found");
    assert_eq!(
        alice.get(&post_path(&post)).await.body["comment_count"],
        0,
        "a failed delete uncounts nothing"
    );
}

#[tokio::test]
async fn comments_of_missing_or_deleted_posts_are_404_and_bad_comments_change_nothing() {
    let stack = shared_stack().await;
    let alice = stack.user("alice");
    let post = alice.create_post("to be deleted").await;
    let c = comment(&alice, &post, "orphan soon").await;
    let long = "z".repeat(forum_domain::validate::MAX_COMMENT_CHARS + 1);
    for (body, code) in [
        (json!({"content": ""}), "content_required"),
        (json!({"content": "\u{3164}\u{200B}\u{00AD}"}), "content_required"),
        (json!({"content": long}), "content_too_long"),
        (json!({"content": 3}), "invalid_json"),
        (json!({"content": "ok", "post_id": "x"}), "invalid_json"),
        (json!({"content": "this is shit"}), "profanity"),
    ] {
        alice.post(&comments_path(&post), body).await.assert_error(400, code);
    }
    assert_eq!(alice.get(&post_path(&post)).await.body["comment_count"], 1);

    alice.delete(&post_path(&post)).await;
    let cpath = format!("{}{}/", comments_path(&post), c["id"].as_str().unwrap());
    alice.get(&comments_path(&post)).await.assert_error(404, "not_found");
    alice
        .post(&comments_path(&post), json!({"content": "too late"}))
        .await
        .assert_error(404, "not_found");
    alice
        .patch(&cpath, json!({"content": "edit"}))
        .await
        .assert_error(404, "not_found");
    alice.delete(&cpath).await.assert_error(404, "not_found");
    let missing = format!("/api/forum/posts/{}/comments/", ulid::Ulid::new());
    alice.get(&missing).await.assert_error(404, "not_found");
    alice
        .post(&missing, json!({"content": "hello?"}))
        .await
        .assert_error(404, "not_found");
}

/// A hundred comments on one post at once, from clients that do what the API asks of them:
/// a `503` (its deadline spent while the post's counter was contended) is retried after its
/// `Retry-After`. Every comment is kept, listed once per write and counted exactly. A 503 whose
/// transaction had in fact committed is the one way a retry writes twice (until requests carry
/// an idempotency key), so a duplicate is allowed only for a comment whose request saw a 503.
#[tokio::test]
async fn a_hundred_concurrent_comments_are_all_kept_and_counted() {
    let stack = shared_stack().await;
    let author = stack.user("author");
    let post = author.create_post("hot thread").await;
    let users: Vec<Client> = (0..50).map(|i| stack.user(&format!("commenter{i}"))).collect();
    // Each comment keyed, and sent again while the machine is too loaded to answer in time:
    // every one is kept exactly once.
    let calls = users.iter().enumerate().flat_map(|(i, u)| {
        [0, 1].map(|n| {
            let post = post.clone();
            async move {
                let content = format!("comment {i}.{n}");
                let keyed = u.with_header("idempotency-key", &content);
                let path = comments_path(&post);
                let (answer, unavailable) = until_answered(|| keyed.post(&path, json!({ "content": content }))).await;
                (content, answer, unavailable)
            }
        })
    });
    let answers = join_all(calls).await;
    assert!(
        answers.iter().all(|(_, a, _)| a.status == 201),
        "{:?}",
        answers
            .iter()
            .find(|(_, a, _)| a.status != 201)
            .map(|(_, a, _)| &a.body)
    );
    let created: HashSet<String> = answers
        .iter()
        .map(|(_, a, _)| a.body["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(created.len(), 100);

    let listed = all_comments(&author, &post, 30).await;
    let ids: Vec<String> = listed.iter().map(|c| c["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        ids.len(),
        "each comment listed once"
    );
    assert!(
        created.iter().all(|id| ids.contains(id)),
        "every acknowledged comment is listed"
    );
    for (content, _, unavailable) in &answers {
        let copies = listed.iter().filter(|c| c["content"] == content.as_str()).count();
        assert_eq!(copies, 1, "{content}: {copies} copies after {unavailable} 503s");
    }
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "oldest first");
    assert_eq!(
        author.get(&post_path(&post)).await.body["comment_count"],
        listed.len(),
        "the count is the comments there are"
    );
}
