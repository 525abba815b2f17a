//! The inbox: a comment on your post reaches it once (never your own, never from whom you
//! block), live with the unread count, and marking read moves only forward.

use serde_json::{Value, json};

use crate::realtime::Live;
use crate::support::shared_stack;

#[tokio::test]
async fn comments_on_your_post_reach_your_inbox_once_and_are_marked_read() {
    let stack = shared_stack().await;
    let alice = stack.user("author");
    let bob = stack.user("replier");
    let mallory = stack.user("blocked");
    let post = alice.create_post("tell me when someone answers").await;
    let comments = format!("/api/forum/posts/{}/comments/", post["id"].as_str().unwrap());
    assert_eq!(
        alice
            .post(&format!("/api/forum/users/{}/block/", mallory.user_id), Value::Null)
            .await
            .status,
        201
    );
    let mut alice_live = Live::connect(stack, &alice).await;

    // Her own comment, and one from whom she blocks: nothing in her inbox.
    assert_eq!(alice.post(&comments, json!({"content": "my own"})).await.status, 201);
    assert_eq!(mallory.post(&comments, json!({"content": "blocked"})).await.status, 403);
    let first = bob.post(&comments, json!({"content": "first answer"})).await;
    let first_id = first.body["id"].as_str().unwrap().to_string();
    let event = alice_live
        .expect("notification.created", |m| m["type"] == "notification.created")
        .await;
    assert_eq!(event["notification"]["comment_id"], first_id.as_str());
    assert_eq!(event["notification"]["actor"]["id"], bob.user_id.as_str());
    assert_eq!(event["unread_count"], 1);
    let second = bob.post(&comments, json!({"content": "second answer"})).await;
    let second_id = second.body["id"].as_str().unwrap().to_string();
    alice_live
        .expect("the second notification", |m| {
            m["type"] == "notification.created" && m["unread_count"] == 2
        })
        .await;

    let inbox = alice.get("/api/forum/notifications/").await;
    assert_eq!(inbox.status, 200, "{}", inbox.body);
    let ids: Vec<&str> = inbox.body["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["comment_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec![second_id.as_str(), first_id.as_str()],
        "newest first, once each"
    );
    assert_eq!(inbox.body["unread_count"], 2);
    assert_eq!(
        alice.get("/api/forum/notifications/unread_count/").await.body["unread_count"],
        2
    );
    // The stream delivering the first comment's record again writes nothing (at least once
    // in, exactly once out).
    let again = forum_domain::notifications::Notification {
        id: first_id.clone(),
        kind: forum_domain::notifications::NotificationKind::Comment,
        post_id: post["id"].as_str().unwrap().to_string(),
        comment_id: first_id.clone(),
        actor_id: bob.user_id.clone(),
        created_at: forum_domain::model::timestamp_of(&first_id).unwrap(),
    };
    let written = stack
        .stack
        .app
        .table
        .notify(&alice.user_id, &again, chrono::Utc::now().timestamp() + 3600)
        .await
        .unwrap();
    assert!(!written, "a redelivered record writes no second notification");
    assert_eq!(
        alice.get("/api/forum/notifications/unread_count/").await.body["unread_count"],
        2
    );
    // Bob's inbox has none of it.
    assert_eq!(
        bob.get("/api/forum/notifications/unread_count/").await.body["unread_count"],
        0
    );

    // Read up to the first: one left; an older mark later changes nothing; then all.
    let read = alice
        .post("/api/forum/notifications/read/", json!({"up_to": first_id}))
        .await;
    assert_eq!(read.body["unread_count"], 1, "{}", read.body);
    let inbox = alice.get("/api/forum/notifications/").await;
    let read_flags: Vec<bool> = inbox.body["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["read"].as_bool().unwrap())
        .collect();
    assert_eq!(read_flags, vec![false, true]);
    alice
        .post("/api/forum/notifications/read/", json!({"up_to": "not-an-id"}))
        .await
        .assert_error(400, "invalid_request");
    assert_eq!(
        alice.post("/api/forum/notifications/read/", json!({})).await.body["unread_count"],
        0
    );
    assert_eq!(
        alice
            .post("/api/forum/notifications/read/", json!({"up_to": first_id}))
            .await
            .body["unread_count"],
        0,
        "the mark never moves back"
    );
}

/// What a user's inbox holds: (kind, actor id, comment id), newest first.
async fn inbox(client: &crate::support::Client) -> Vec<(String, String, String)> {
    let page = client.get("/api/forum/notifications/?limit=100").await;
    assert_eq!(page.status, 200, "{}", page.body);
    page.body["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["kind"].as_str().unwrap().to_string(),
                n["actor"]["id"].as_str().unwrap().to_string(),
                n["comment_id"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn replies_reach_everyone_who_commented_before_except_the_writer_and_those_who_block_them() {
    let stack = shared_stack().await;
    let alice = stack.user("op");
    let bob = stack.user("first");
    let carol = stack.user("second");
    let dave = stack.user("blocks_carol");
    let post = alice.create_post("a thread").await;
    let comments = format!("/api/forum/posts/{}/comments/", post["id"].as_str().unwrap());
    assert_eq!(
        dave.post(&format!("/api/forum/users/{}/block/", carol.user_id), Value::Null)
            .await
            .status,
        201
    );
    let say = |who: &crate::support::Client, text: &str| {
        let (who, comments, text) = (who.clone(), comments.clone(), text.to_string());
        async move {
            let c = who.post(&comments, json!({ "content": text })).await;
            assert_eq!(c.status, 201, "{}", c.body);
            c.body["id"].as_str().unwrap().to_string()
        }
    };
    let b1 = say(&bob, "bob first").await;
    let d1 = say(&dave, "dave too").await;
    let c1 = say(&carol, "carol answers").await;
    let b2 = say(&bob, "bob again").await;

    let entry =
        |kind: &str, who: &crate::support::Client, id: &str| (kind.to_string(), who.user_id.clone(), id.to_string());
    // The stream writes them: wait until the last one is there.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while inbox(&alice).await.len() < 4 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(
        inbox(&alice).await,
        vec![
            entry("comment", &bob, &b2),
            entry("comment", &carol, &c1),
            entry("comment", &dave, &d1),
            entry("comment", &bob, &b1)
        ],
        "the author hears every comment but their own, once, and no reply on top"
    );
    assert_eq!(
        inbox(&bob).await,
        vec![entry("reply", &carol, &c1), entry("reply", &dave, &d1)],
        "a participant hears later comments, not their own"
    );
    assert_eq!(inbox(&carol).await, vec![entry("reply", &bob, &b2)]);
    assert_eq!(
        inbox(&dave).await,
        vec![entry("reply", &bob, &b2)],
        "nothing from Carol, whom Dave blocks"
    );
}
