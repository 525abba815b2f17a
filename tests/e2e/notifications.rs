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
        id: forum_domain::model::new_id(),
        kind: forum_domain::notifications::NotificationKind::Comment,
        post_id: post["id"].as_str().unwrap().to_string(),
        comment_id: Some(first_id.clone()),
        actor_id: bob.user_id.clone(),
        created_at: forum_domain::model::timestamp_of(&first_id).unwrap(),
        likers: Vec::new(),
        like_count: None,
    };
    let written = stack
        .stack
        .app
        .table
        .notify(&alice.user_id, &first_id, again, chrono::Utc::now().timestamp() + 3600)
        .await
        .unwrap();
    assert!(written.is_none(), "a redelivered record writes no second notification");
    assert_eq!(
        alice.get("/api/forum/notifications/unread_count/").await.body["unread_count"],
        2
    );
    // Bob's inbox has none of it.
    assert_eq!(
        bob.get("/api/forum/notifications/unread_count/").await.body["unread_count"],
        0
    );

    // Read up to the first (its id in lower case is the same id, not one sorting after every
    // id): one left; an older mark later changes nothing; then all. A notification's id is its
    // own, minted when it was written, not its comment's.
    let first_notification = inbox.body["notifications"][1]["id"].as_str().unwrap().to_string();
    assert_ne!(first_notification, first_id);
    let read = alice
        .post(
            "/api/forum/notifications/read/",
            json!({"up_to": first_notification.to_lowercase()}),
        )
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
            .post("/api/forum/notifications/read/", json!({"up_to": first_notification}))
            .await
            .body["unread_count"],
        0,
        "the mark never moves back"
    );

    // A mark from the future (the largest id there can be) marks what exists, never what
    // comes later.
    assert_eq!(
        alice
            .post(
                "/api/forum/notifications/read/",
                json!({"up_to": "7ZZZZZZZZZZZZZZZZZZZZZZZZZ"})
            )
            .await
            .body["unread_count"],
        0
    );
    let third = bob.post(&comments, json!({"content": "third answer"})).await;
    assert_eq!(third.status, 201, "{}", third.body);
    let event = alice_live
        .expect("the third notification", |m| m["type"] == "notification.created")
        .await;
    assert_eq!(event["unread_count"], 1, "{event}");
    assert_eq!(
        alice.get("/api/forum/notifications/unread_count/").await.body["unread_count"],
        1
    );
}

/// A user's notifications as the inbox lists them (its first 100), newest first.
async fn notifications(client: &crate::support::Client) -> Vec<Value> {
    let page = client.get("/api/forum/notifications/?limit=100").await;
    assert_eq!(page.status, 200, "{}", page.body);
    page.body["notifications"].as_array().unwrap().clone()
}

/// What a user's inbox holds: (kind, actor id, comment id or the post's id), newest first.
async fn inbox(client: &crate::support::Client) -> Vec<(String, String, String)> {
    notifications(client)
        .await
        .iter()
        .map(|n| {
            (
                n["kind"].as_str().unwrap().to_string(),
                n["actor"]["id"].as_str().unwrap().to_string(),
                n["comment_id"].as_str().or(n["post_id"].as_str()).unwrap().to_string(),
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

/// Waits until `client`'s inbox holds `count` notifications (the stream writes them), then a
/// little longer for any that should not come.
async fn inbox_of(client: &crate::support::Client, count: usize) -> Vec<(String, String, String)> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while inbox(client).await.len() < count && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    inbox(client).await
}

#[tokio::test]
async fn mentions_are_resolved_when_written_and_told_once_as_the_most_personal_kind() {
    let stack = shared_stack().await;
    let alice = stack.user("mention_op");
    let bob = stack.user("mentioned_bob");
    let carol = stack.user("mentioned_carol");
    let mallory = stack.user("mention_blocked");
    // Names are claimed when their owners first write.
    for who in [&bob, &carol, &mallory] {
        who.create_post("hello, I exist").await;
    }
    assert_eq!(
        bob.post(&format!("/api/forum/users/{}/block/", mallory.user_id), Value::Null)
            .await
            .status,
        201
    );
    let post = alice
        .create_post(&format!(
            "hey @{} and @{}, and @{} again, @nobody_by_that_name, mail x@{}.example, @{}",
            bob.username,
            carol.username.to_uppercase(),
            bob.username,
            carol.username,
            alice.username
        ))
        .await;
    let post_id = post["id"].as_str().unwrap().to_string();
    let entry =
        |kind: &str, who: &crate::support::Client, id: &str| (kind.to_string(), who.user_id.clone(), id.to_string());
    assert_eq!(inbox_of(&bob, 1).await, vec![entry("mention", &alice, &post_id)]);
    assert_eq!(inbox_of(&carol, 1).await, vec![entry("mention", &alice, &post_id)]);
    assert!(inbox(&alice).await.is_empty(), "naming oneself tells no one");

    // Bob comments; Carol replies naming Bob: one notification for Bob (a mention, though it
    // is also a reply), one for Alice (a comment on her post).
    let comments = format!("/api/forum/posts/{post_id}/comments/");
    let b1 = bob.post(&comments, json!({"content": "thanks"})).await;
    assert_eq!(b1.status, 201);
    let c1 = carol
        .post(&comments, json!({"content": format!("@{} agreed", bob.username)}))
        .await;
    assert_eq!(c1.status, 201, "{}", c1.body);
    let c1 = c1.body["id"].as_str().unwrap().to_string();
    let bob_inbox = inbox_of(&bob, 2).await;
    assert_eq!(
        bob_inbox,
        vec![entry("mention", &carol, &c1), entry("mention", &alice, &post_id)],
        "a reply that mentions is one notification"
    );
    // Mallory, whom Bob blocks, names him: nothing. Her edit naming Carol tells Carol once,
    // and an edit naming her again tells her nothing more.
    let m1 = mallory.post(&comments, json!({"content": "quiet"})).await;
    let m1 = m1.body["id"].as_str().unwrap().to_string();
    let edit = format!("{comments}{m1}/");
    let edited = mallory
        .patch(
            &edit,
            json!({"content": format!("@{} @{}", bob.username, carol.username)}),
        )
        .await;
    assert_eq!(edited.status, 200, "{}", edited.body);
    let carol_inbox = inbox_of(&carol, 2).await;
    assert_eq!(carol_inbox.len(), 2, "{carol_inbox:?}");
    assert_eq!(
        carol_inbox[0],
        entry("reply", &mallory, &m1),
        "told first as a reply: one notification per comment and recipient"
    );
    mallory
        .patch(&edit, json!({"content": format!("again @{}", carol.username)}))
        .await;
    // A later comment in the same thread is the stream's marker: once it is told, the edits
    // before it were handled.
    let dave = stack.user("mention_marker");
    let d1 = dave.post(&comments, json!({"content": "marker"})).await;
    let d1 = d1.body["id"].as_str().unwrap().to_string();
    let mut expected = vec![entry("reply", &dave, &d1)];
    expected.extend(carol_inbox);
    assert_eq!(
        inbox_of(&carol, 3).await,
        expected,
        "an edit naming her again tells nothing"
    );
    let mut expected = vec![entry("reply", &dave, &d1)];
    expected.extend(bob_inbox);
    assert_eq!(inbox_of(&bob, 3).await, expected, "nothing from whom Bob blocks");
}

#[tokio::test]
async fn likes_are_one_notification_per_post_moved_to_the_top_with_the_count_and_latest_likers() {
    let stack = shared_stack().await;
    let alice = stack.user("liked_author");
    let fans: Vec<_> = (0..5).map(|i| stack.user(&format!("fan_{i}"))).collect();
    let blocked = stack.user("liked_blocked");
    assert_eq!(
        alice
            .post(&format!("/api/forum/users/{}/block/", blocked.user_id), Value::Null)
            .await
            .status,
        201
    );
    let post = alice.create_post("like me").await;
    let post_id = post["id"].as_str().unwrap().to_string();
    let like = format!("/api/forum/posts/{post_id}/like/");
    let mut alice_live = Live::connect(stack, &alice).await;
    assert_eq!(
        alice.send(reqwest::Method::PUT, &like, None).await.status,
        200,
        "her own like"
    );
    assert_eq!(blocked.send(reqwest::Method::PUT, &like, None).await.status, 200);
    for fan in &fans[..3] {
        assert_eq!(fan.send(reqwest::Method::PUT, &like, None).await.status, 200);
    }
    let event = alice_live
        .expect("the group with three likers", |m| {
            m["type"] == "notification.created" && m["notification"]["likers"].as_array().is_some_and(|l| l.len() == 3)
        })
        .await;
    assert_eq!(event["notification"]["kind"], "like");
    let page = alice.get("/api/forum/notifications/").await;
    let all = page.body["notifications"].as_array().unwrap().clone();
    assert_eq!(all.len(), 1, "one notification per post: {all:?}");
    let group = &all[0];
    let likers: Vec<&str> = group["likers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        likers,
        vec![
            fans[2].user_id.as_str(),
            fans[1].user_id.as_str(),
            fans[0].user_id.as_str()
        ],
        "newest first, never herself nor whom she blocks"
    );
    assert_eq!(group["actor"]["id"], fans[2].user_id.as_str());
    assert_eq!(page.body["unread_count"], 1);
    // Read; a later like brings it back to the top, unread, with the count (her own like and
    // the blocked user's count: the count is the post's).
    let read = alice.post("/api/forum/notifications/read/", json!({})).await;
    assert_eq!(read.body["unread_count"], 0);
    fans[3].send(reqwest::Method::PUT, &like, None).await;
    alice_live
        .expect("moved by the fourth fan", |m| {
            m["type"] == "notification.created" && m["notification"]["actor"]["id"] == fans[3].user_id.as_str()
        })
        .await;
    let page = alice.get("/api/forum/notifications/").await;
    let all = page.body["notifications"].as_array().unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0]["like_count"], 6);
    assert_eq!(all[0]["read"], false);
    assert_eq!(page.body["unread_count"], 1);
    assert_eq!(all[0]["likers"].as_array().unwrap().len(), 3);

    // The stream delivering a like's record again writes nothing, nor does the record of a
    // like since taken back: the like item says whether it was told.
    let liked_at = |fan: &crate::support::Client| {
        let key = (format!("POST#{post_id}"), format!("LIKE#{}", fan.user_id));
        async move {
            let item = stack.stored_item(&key.0, &key.1).await;
            assert_eq!(
                item.get("notified"),
                Some(&aws_sdk_dynamodb::types::AttributeValue::Bool(true)),
                "{item:?}"
            );
            item["created_at"].as_s().unwrap().clone()
        }
    };
    let again = |fan: &crate::support::Client, at: String| {
        let (table, author, post_id, liker) = (
            stack.stack.app.table.clone(),
            alice.user_id.clone(),
            post_id.clone(),
            fan.user_id.clone(),
        );
        async move {
            let (id, created_at) = forum_domain::model::new_id_with_timestamp();
            let like = forum_store::LikeNews {
                liker: &liker,
                liked_at: &at,
            };
            table
                .notify_likes(
                    &author,
                    &post_id,
                    &[like],
                    6,
                    (&id, &created_at),
                    chrono::Utc::now().timestamp() + 3600,
                )
                .await
                .unwrap()
        }
    };
    let fourth = liked_at(&fans[3]).await;
    assert_eq!(again(&fans[3], fourth).await, None, "a redelivered like writes nothing");
    let first = liked_at(&fans[0]).await;
    assert_eq!(fans[0].delete(&like).await.status, 200);
    assert_eq!(again(&fans[0], first).await, None, "a like taken back tells nothing");
    let page = alice.get("/api/forum/notifications/").await;
    assert_eq!(page.body["notifications"].as_array().unwrap().len(), 1);
    assert_eq!(page.body["unread_count"], 1);
}

/// A like item's INSERT record as the stream carries it.
fn like_record(sequence: &str, post_id: &str, user_id: &str, created_at: &str) -> Value {
    let s = |v: &str| json!({ "S": v });
    json!({
        "eventID": sequence, "eventName": "INSERT", "eventVersion": "1.1", "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": {
            "Keys": {"pk": s(&format!("POST#{post_id}")), "sk": s(&format!("LIKE#{user_id}"))},
            "NewImage": {
                "pk": s(&format!("POST#{post_id}")), "sk": s(&format!("LIKE#{user_id}")), "type": s("like"),
                "post_id": s(post_id), "user_id": s(user_id), "created_at": s(created_at),
            },
            "SequenceNumber": sequence, "SizeBytes": 120, "StreamViewType": "NEW_AND_OLD_IMAGES",
        },
    })
}

/// A batch holding a like, and the same user's like again after taking it back (one item, two
/// INSERTs): told once, as the like that stands. One transaction may not touch an item twice;
/// a batch that tried failed every retry and held up its whole shard.
#[tokio::test]
async fn a_like_taken_back_and_given_again_in_one_batch_is_told_once() {
    let stack = shared_stack().await;
    let alice = stack.user("relike_author");
    let bob = stack.user("relike_fan");
    let post = alice.create_post("like, unlike, like").await;
    let post_id = post["id"].as_str().unwrap().to_string();
    let like = format!("/api/forum/posts/{post_id}/like/");
    assert_eq!(bob.send(reqwest::Method::PUT, &like, None).await.status, 200);
    let item = stack
        .stored_item(&format!("POST#{post_id}"), &format!("LIKE#{}", bob.user_id))
        .await;
    let standing = item["created_at"].as_s().unwrap().clone();
    let batch = json!({"Records": [
        like_record("900", &post_id, &bob.user_id, "2026-01-01T00:00:00.000Z"),
        like_record("901", &post_id, &bob.user_id, &standing),
    ]});
    let fanout = &stack.stack.functions["stream-fanout"];
    let event = forum_local::invoke::event(batch).unwrap();
    let answer = forum_local::invoke::answer(&forum_api::handlers::stream_fanout(fanout, &event).await);
    assert_eq!(answer["batchItemFailures"], json!([]), "{answer}");
    let inbox = inbox_of(&alice, 1).await;
    assert_eq!(
        inbox,
        vec![("like".to_string(), bob.user_id.clone(), post_id.clone())],
        "one like notification, however the stream delivered it"
    );
}

/// A notification is filed when it is written, above what its reader has read, however old its
/// source: a mention added by editing an old post was filed under the post's id, below the
/// mark, and so counted as read, unseen, and listed pages down.
#[tokio::test]
async fn a_mention_added_by_editing_an_old_post_is_unread_and_on_top() {
    let stack = shared_stack().await;
    let alice = stack.user("old_post_editor");
    let bob = stack.user("late_mentioned");
    let carol = stack.user("bobs_commenter");
    bob.create_post("hello, I exist").await;
    let old_post = alice.create_post("written before anything bob has read").await;
    let old_post_id = old_post["id"].as_str().unwrap().to_string();
    // Something newer reaches Bob's inbox, and he reads everything.
    let bobs = bob.create_post("comment on this").await;
    let on_bobs = format!("/api/forum/posts/{}/comments/", bobs["id"].as_str().unwrap());
    assert_eq!(carol.post(&on_bobs, json!({"content": "a comment"})).await.status, 201);
    inbox_of(&bob, 1).await;
    let read = bob.post("/api/forum/notifications/read/", json!({})).await;
    assert_eq!(read.body["unread_count"], 0, "{}", read.body);

    let mut live = Live::connect(stack, &bob).await;
    let edited = alice
        .patch(
            &format!("/api/forum/posts/{old_post_id}/"),
            json!({"content": format!("now naming @{}", bob.username)}),
        )
        .await;
    assert_eq!(edited.status, 200, "{}", edited.body);
    let event = live
        .expect("the mention", |m| {
            m["type"] == "notification.created" && m["notification"]["kind"] == "mention"
        })
        .await;
    assert_eq!(event["unread_count"], 1, "{event}");
    assert_eq!(event["notification"]["read"], false, "{event}");
    let inbox = bob.get("/api/forum/notifications/").await;
    let top = &inbox.body["notifications"][0];
    assert_eq!(
        (top["kind"].as_str(), top["post_id"].as_str(), top["read"].as_bool()),
        (Some("mention"), Some(old_post_id.as_str()), Some(false)),
        "{}",
        inbox.body
    );
    assert_eq!(inbox.body["unread_count"], 1);
    assert!(
        top["created_at"].as_str() > old_post["created_at"].as_str(),
        "dated when the edit named him: {top}"
    );
}

/// Likers of a user's post group, newest first: `post id -> liker ids`.
async fn like_groups(client: &crate::support::Client) -> std::collections::HashMap<String, Vec<String>> {
    notifications(client)
        .await
        .iter()
        .filter(|n| n["kind"] == "like")
        .map(|n| {
            let likers = n["likers"].as_array().unwrap().iter();
            (
                n["post_id"].as_str().unwrap().to_string(),
                likers.map(|u| u["id"].as_str().unwrap().to_string()).collect(),
            )
        })
        .collect()
}

/// A block takes the blocked user out of the blocker's inbox: what they caused before it is
/// neither listed nor counted, and a like group keeps its other likers, then and as it moves.
#[tokio::test]
async fn blocking_someone_takes_them_out_of_your_inbox() {
    let stack = shared_stack().await;
    let alice = stack.user("inbox_owner");
    let mallory = stack.user("inbox_pest");
    let (bob, carol) = (stack.user("inbox_bob"), stack.user("inbox_carol"));
    alice.create_post("hello, I exist").await;
    let p1 = alice.create_post("liked by the pest alone").await;
    let p2 = alice.create_post("liked by the pest and bob").await;
    let (p1, p2) = (p1["id"].as_str().unwrap(), p2["id"].as_str().unwrap());
    let like = |who: &crate::support::Client, post: &str| {
        let (who, path) = (who.clone(), format!("/api/forum/posts/{post}/like/"));
        async move { assert_eq!(who.send(reqwest::Method::PUT, &path, None).await.status, 200) }
    };
    let comment = mallory
        .post(&format!("/api/forum/posts/{p1}/comments/"), json!({"content": "hi"}))
        .await;
    assert_eq!(comment.status, 201, "{}", comment.body);
    mallory.create_post(&format!("hey @{}", alice.username)).await;
    like(&mallory, p1).await;
    like(&mallory, p2).await;
    // Bob's like comes in its own batch, after Mallory's is told: the group then holds both.
    eventually_groups(&alice, |groups| groups.get(p2).is_some_and(|l| l.len() == 1)).await;
    like(&bob, p2).await;
    eventually_groups(&alice, |groups| groups.get(p2).is_some_and(|l| l.len() == 2)).await;
    assert_eq!(
        inbox_of(&alice, 4).await.len(),
        4,
        "a comment, a mention and two like groups"
    );
    let unread = || async { alice.get("/api/forum/notifications/unread_count/").await.body["unread_count"].clone() };
    assert_eq!(unread().await, 4);

    let blocked = alice
        .post(&format!("/api/forum/users/{}/block/", mallory.user_id), Value::Null)
        .await;
    assert_eq!(blocked.status, 201, "{}", blocked.body);
    let left = inbox(&alice).await;
    assert!(left.iter().all(|(_, actor, _)| *actor != mallory.user_id), "{left:?}");
    assert_eq!(
        like_groups(&alice).await,
        [(p2.to_string(), vec![bob.user_id.clone()])].into()
    );
    assert_eq!(unread().await, 1, "only bob's like group is left to read");
    // A record of hers the stream was still handling when the block committed is refused by
    // the notification's own transaction, after the block's clean-up has run.
    let late = forum_domain::notifications::Notification {
        id: forum_domain::model::new_id(),
        kind: forum_domain::notifications::NotificationKind::Mention,
        post_id: p1.to_string(),
        comment_id: None,
        actor_id: mallory.user_id.clone(),
        created_at: chrono::Utc::now().to_rfc3339(),
        likers: Vec::new(),
        like_count: None,
    };
    let source = forum_domain::model::new_id();
    let table = &stack.stack.app.table;
    let ttl = chrono::Utc::now().timestamp() + 3600;
    assert_eq!(table.notify(&alice.user_id, &source, late, ttl).await.unwrap(), None);
    assert_eq!(unread().await, 1, "nothing of hers arrives after the block");

    // The group moves on without her: Carol's like shows Carol and Bob.
    like(&carol, p2).await;
    let groups = eventually_groups(&alice, |groups| {
        groups.get(p2).is_some_and(|l| l.len() == 2 && l[0] != bob.user_id)
    })
    .await;
    assert_eq!(groups[p2], vec![carol.user_id.clone(), bob.user_id.clone()]);
}

/// Polls `client`'s like groups until `holds`.
async fn eventually_groups(
    client: &crate::support::Client,
    holds: impl Fn(&std::collections::HashMap<String, Vec<String>>) -> bool,
) -> std::collections::HashMap<String, Vec<String>> {
    crate::support::eventually("the like groups", || like_groups(client), holds).await
}
