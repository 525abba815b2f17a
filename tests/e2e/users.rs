//! User pages: a profile with exact counts, and the user's posts and comments, newest first,
//! without what a moderator removed or what the reader blocks.

use serde_json::{Value, json};

use crate::support::{Client, isolated_stack};

async fn ids(reader: &Client, path: &str, field: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut page = reader.get(&format!("{path}?limit=2")).await;
    loop {
        assert_eq!(page.status, 200, "{}", page.body);
        out.extend(
            page.body[field]
                .as_array()
                .unwrap()
                .iter()
                .map(|item| item["id"].as_str().unwrap().to_string()),
        );
        match page.body["next_page"].as_str() {
            Some(next) => page = reader.get(next).await,
            None => return out,
        }
    }
}

fn counts(page: &Value) -> (u64, u64) {
    (
        page["post_count"].as_u64().unwrap(),
        page["comment_count"].as_u64().unwrap(),
    )
}

#[tokio::test]
async fn a_user_page_counts_and_lists_what_others_may_see() {
    let stack = isolated_stack().await;
    let alice = stack.user("alice");
    let bob = stack.user("bob");
    let moderator = stack.moderator("mod");
    let mut posts = Vec::new();
    for i in 0..3 {
        posts.push(
            alice.create_post(&format!("alice {i}")).await["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let bobs = bob.create_post("bob's thread").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut comments = Vec::new();
    for text in ["one", "two"] {
        let c = alice
            .post(&format!("/api/forum/posts/{bobs}/comments/"), json!({"content": text}))
            .await;
        comments.push(c.body["id"].as_str().unwrap().to_string());
    }
    let page = format!("/api/forum/users/{}/", alice.user_id);

    let profile = bob.get(&page).await;
    assert_eq!(profile.status, 200, "{}", profile.body);
    assert_eq!(profile.body["user"]["username"], alice.username.as_str());
    assert_eq!(counts(&profile.body), (3, 2));
    let newest_first: Vec<String> = posts.iter().rev().cloned().collect();
    assert_eq!(ids(&bob, &format!("{page}posts/"), "posts").await, newest_first);
    let comments_newest_first: Vec<String> = comments.iter().rev().cloned().collect();
    assert_eq!(
        ids(&bob, &format!("{page}comments/"), "comments").await,
        comments_newest_first
    );
    // `me` is the caller, even one who never wrote.
    let me = bob.get("/api/forum/users/me/").await;
    assert_eq!(
        (me.body["user"]["id"].as_str(), counts(&me.body)),
        (Some(bob.user_id.as_str()), (1, 0))
    );
    bob.get("/api/forum/users/nobody-who-ever-wrote/")
        .await
        .assert_error(404, "not_found");

    // Removed by a moderator: off the counts and lists; restored: back.
    let act = |body: Value| moderator.post("/api/forum/moderation/actions/", body);
    assert_eq!(
        act(json!({"action": "remove_post", "post_id": posts[1], "reason": "x"}))
            .await
            .status,
        201
    );
    assert_eq!(
        act(json!({"action": "remove_comment", "post_id": bobs, "comment_id": comments[0], "reason": "x"}))
            .await
            .status,
        201
    );
    assert_eq!(counts(&bob.get(&page).await.body), (2, 1));
    assert_eq!(
        ids(&bob, &format!("{page}posts/"), "posts").await,
        vec![posts[2].clone(), posts[0].clone()]
    );
    assert_eq!(
        ids(&bob, &format!("{page}comments/"), "comments").await,
        vec![comments[1].clone()]
    );
    assert_eq!(
        act(json!({"action": "restore_post", "post_id": posts[1], "reason": "x"}))
            .await
            .status,
        201
    );
    assert_eq!(counts(&bob.get(&page).await.body), (3, 1));
    // Deleted by its author: gone from both.
    assert_eq!(
        alice.delete(&format!("/api/forum/posts/{}/", posts[0])).await.status,
        204
    );
    assert_eq!(counts(&bob.get(&page).await.body), (2, 1));

    // Bob blocks Alice: her lists are empty for him, not for a moderator.
    assert_eq!(
        bob.post(&format!("/api/forum/users/{}/block/", alice.user_id), Value::Null)
            .await
            .status,
        201
    );
    assert!(ids(&bob, &format!("{page}posts/"), "posts").await.is_empty());
    assert!(ids(&bob, &format!("{page}comments/"), "comments").await.is_empty());
    assert_eq!(ids(&moderator, &format!("{page}posts/"), "posts").await.len(), 2);
}
