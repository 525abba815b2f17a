//! Likes: toggling, exact counts, `is_liked` everywhere, and exactness under concurrency.

use futures::future::join_all;
use serde_json::{Value, json};

use crate::support::{Client, shared_stack};

fn like_path(post: &Value) -> String {
    format!("/api/forum/posts/{}/like/", post["id"].as_str().unwrap())
}

#[tokio::test]
async fn toggling_likes_and_unlikes_with_exact_counts_and_is_liked() {
    let stack = shared_stack().await;
    let alice = stack.user("alice");
    let bob = stack.user("bob");
    let post = alice.create_post("like me").await;
    let like = like_path(&post);
    let get = format!("/api/forum/posts/{}/", post["id"].as_str().unwrap());

    let first = bob.post(&like, json!(null)).await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.body, json!({"is_liked": true, "like_count": 1}));
    assert_eq!(
        alice.post(like.trim_end_matches('/'), json!(null)).await.body,
        json!({"is_liked": true, "like_count": 2})
    );

    // is_liked is per caller, in the post and in the feed.
    assert_eq!(bob.get(&get).await.body["is_liked"], true);
    assert_eq!(alice.get(&get).await.body["is_liked"], true);
    let carol = stack.user("carol");
    let seen_by_carol = carol.get(&get).await;
    assert_eq!(seen_by_carol.body["is_liked"], false);
    assert_eq!(seen_by_carol.body["like_count"], 2);
    let feed = bob.get("/api/forum/posts/?limit=100").await;
    let in_feed = feed.body["posts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == post["id"])
        .unwrap();
    assert_eq!(in_feed["is_liked"], true);
    assert_eq!(in_feed["like_count"], 2);

    // Toggle back.
    assert_eq!(
        bob.post(&like, json!(null)).await.body,
        json!({"is_liked": false, "like_count": 1})
    );
    // is_liked is read on every request; the count within the read cache's TTL.
    assert_eq!(bob.get(&get).await.body["is_liked"], false);
    stack
        .within_staleness_bound("the unlike's count", || alice.get(&get), |a| a.body["like_count"] == 1)
        .await;
    // The author's edit answers with their own is_liked.
    let edited = alice.patch(&get, json!({"content": "still liked"})).await;
    assert_eq!(edited.body["is_liked"], true);
    assert_eq!(edited.body["like_count"], 1);
}

#[tokio::test]
async fn likes_on_missing_or_deleted_posts_are_404() {
    let stack = shared_stack().await;
    let alice = stack.user("alice");
    let missing = format!("/api/forum/posts/{}/like/", ulid::Ulid::new());
    alice.post(&missing, json!(null)).await.assert_error(404, "not_found");
    alice
        .post("/api/forum/posts/nope/like/", json!(null))
        .await
        .assert_error(404, "not_found");
    let post = alice.create_post("soon gone").await;
    let like = like_path(&post);
    assert_eq!(alice.post(&like, json!(null)).await.status, 200);
    alice
        .delete(&format!("/api/forum/posts/{}/", post["id"].as_str().unwrap()))
        .await;
    alice.post(&like, json!(null)).await.assert_error(404, "not_found");
    alice
        .send(reqwest::Method::GET, &like, None)
        .await
        .assert_error(405, "method_not_allowed");
}

/// Counts what the table holds for a post: like items, and the counter on the post.
/// The like items of a post and its counter, as one consistent reading: the two are separate
/// reads, and a write a client gave up on (a 503: its outcome unknown) may still land between
/// them, so the reading is repeated until two in a row agree.
pub(crate) async fn like_truth(stack: &crate::support::TestStack, post_id: &str) -> (usize, u64) {
    let mut last = like_reading(stack, post_id).await;
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let next = like_reading(stack, post_id).await;
        if next == last {
            return next;
        }
        last = next;
    }
    last
}

async fn like_reading(stack: &crate::support::TestStack, post_id: &str) -> (usize, u64) {
    let client = &stack.stack.dynamodb;
    let table = &stack.table_name;
    let mut likes = 0;
    let mut start = None;
    loop {
        let out = client
            .query()
            .table_name(table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :like)")
            .expression_attribute_values(
                ":pk",
                aws_sdk_dynamodb::types::AttributeValue::S(format!("POST#{post_id}")),
            )
            .expression_attribute_values(":like", aws_sdk_dynamodb::types::AttributeValue::S("LIKE#".into()))
            .consistent_read(true)
            .set_exclusive_start_key(start)
            .send()
            .await
            .unwrap();
        likes += out.items().len();
        start = out.last_evaluated_key().cloned();
        if start.is_none() {
            break;
        }
    }
    let post = stack.stored_item(&format!("POST#{post_id}"), "POST").await;
    let count = post["like_count"].as_n().unwrap().parse().unwrap();
    (likes, count)
}

#[tokio::test]
async fn fifty_users_toggling_concurrently_keep_the_count_exact() {
    let stack = shared_stack().await;
    let author = stack.user("author");
    let post = author.create_post("the popular post").await;
    let post_id = post["id"].as_str().unwrap().to_string();
    let like = like_path(&post);
    let users: Vec<Client> = (0..50).map(|i| stack.user(&format!("fan{i}"))).collect();
    let mut unknown_outcomes = 0;

    for round in 0..4 {
        // Every user toggles at once; in odd rounds some users fire twice concurrently.
        let mut calls = Vec::new();
        for (i, user) in users.iter().enumerate() {
            calls.push(user.post(&like, json!(null)));
            if round % 2 == 1 && i % 5 == 0 {
                calls.push(user.post(&like, json!(null)));
            }
        }
        let answers = join_all(calls).await;
        for a in &answers {
            // A 503 is the API's answer when the request's deadline is spent on a contended
            // post (a loaded machine): whether that toggle took effect is unknown to the
            // client, so the rounds no longer net to zero; the count must still be exact.
            if a.status == 503 {
                a.assert_error(503, "unavailable");
                unknown_outcomes += 1;
                continue;
            }
            assert_eq!(a.status, 200, "round {round}: {}", a.body);
        }
        let (items, counter) = like_truth(stack, &post_id).await;
        assert_eq!(
            counter as usize, items,
            "round {round}: the counter drifted from the like items"
        );
        // Each user's is_liked matches whether their like item exists.
        let get = format!("/api/forum/posts/{post_id}/");
        let views = join_all(users.iter().map(|u| u.get(&get))).await;
        let liked = views.iter().filter(|v| v.body["is_liked"] == true).count();
        assert_eq!(liked, items, "round {round}");
        // Counts may be a read cache's TTL behind the writes (the API's stated bound).
        for user in &users {
            stack
                .within_staleness_bound(
                    "the round's count",
                    || user.get(&get),
                    |v| v.body["like_count"] == counter,
                )
                .await;
        }
    }
    // After an even number of toggles per user the count is back where it started... except
    // the double-firers, whose two concurrent toggles cancel out: all rounds net to zero.
    let (items, counter) = like_truth(stack, &post_id).await;
    assert_eq!(counter as usize, items);
    if unknown_outcomes == 0 {
        assert_eq!((items, counter), (0, 0));
    }
}

#[tokio::test]
async fn put_and_delete_set_the_like_so_a_retry_leaves_the_state_asked_for() {
    let stack = shared_stack().await;
    let author = stack.user("author");
    let fan = stack.user("fan");
    let post = author.create_post("like me, once").await;
    let post_id = post["id"].as_str().unwrap().to_string();
    let like = like_path(&post);

    // Sent again and again, at once: liked once, counted once.
    let puts = join_all((0..10).map(|_| fan.send(reqwest::Method::PUT, &like, None))).await;
    for answer in &puts {
        assert!(matches!(answer.status, 200 | 503), "{}", answer.body);
        if answer.status == 200 {
            assert_eq!(answer.body["is_liked"], true);
        }
    }
    assert_eq!(like_truth(stack, &post_id).await, (1, 1));
    let again = fan.send(reqwest::Method::PUT, &like, None).await;
    assert_eq!(
        (again.body["is_liked"].clone(), again.body["like_count"].clone()),
        (json!(true), json!(1))
    );

    let deletes = join_all((0..10).map(|_| fan.send(reqwest::Method::DELETE, &like, None))).await;
    for answer in &deletes {
        assert!(matches!(answer.status, 200 | 503), "{}", answer.body);
    }
    assert_eq!(like_truth(stack, &post_id).await, (0, 0));
    let again = fan.delete(&like).await;
    assert_eq!(
        (again.body["is_liked"].clone(), again.body["like_count"].clone()),
        (json!(false), json!(0))
    );
    // A missing post is 404 either way.
    let missing = "/api/forum/posts/01JDQ8Z6Y0X9W8V7T6S5R4Q3P2/like/";
    fan.send(reqwest::Method::PUT, missing, None)
        .await
        .assert_error(404, "not_found");
    fan.delete(missing).await.assert_error(404, "not_found");
}

/// A viewer's likes are read from their own partition, one item per window of time; a viewer
/// who likes more posts of one window than an item holds marks it overflowed, and pages fall
/// back to the posts' like keys for it: `is_liked` stays exact on both sides of the bound.
#[tokio::test]
async fn is_liked_stays_exact_past_a_windows_capacity() {
    let stack = shared_stack().await;
    let author = stack.user("window-author");
    let fan = stack.user("window-fan");
    let other = stack.user("window-other");
    let count = forum_store::MAX_LIKED_PER_WINDOW + 2;
    let mut ids = Vec::new();
    for i in 0..count {
        ids.push(
            author.create_post(&format!("window post {i}")).await["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let like = |who: &Client, id: &str, method: reqwest::Method| {
        let (who, path) = (who.clone(), format!("/api/forum/posts/{id}/like/"));
        async move {
            let answer = who.send(method, &path, None).await;
            assert_eq!(answer.status, 200, "{}", answer.body);
        }
    };
    for id in &ids {
        like(&fan, id, reqwest::Method::PUT).await;
    }
    // Another viewer's likes are their own.
    like(&other, &ids[0], reqwest::Method::PUT).await;
    like(&fan, &ids[1], reqwest::Method::DELETE).await;
    // The author's posts, all of them in one or two windows of time: every one the fan likes
    // reads liked, the one taken back not, for the fan; for the other viewer only the first.
    let liked_of = |who: &Client| {
        let (who, author) = (who.clone(), author.user_id.clone());
        async move {
            let mut liked = std::collections::BTreeMap::new();
            let mut next = Some(format!("/api/forum/users/{author}/posts/?limit=100"));
            while let Some(path) = next.take() {
                let page = who.get(&path).await;
                assert_eq!(page.status, 200, "{}", page.body);
                for post in page.body["posts"].as_array().unwrap() {
                    liked.insert(
                        post["id"].as_str().unwrap().to_string(),
                        post["is_liked"].as_bool().unwrap(),
                    );
                }
                next = page.body["next_page"]
                    .as_str()
                    .map(|url| url[url.find("/api/").unwrap()..].to_string());
            }
            liked
        }
    };
    let fans_view = liked_of(&fan).await;
    assert_eq!(fans_view.len(), count);
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(fans_view[id], i != 1, "post {i} for the fan");
    }
    let others_view = liked_of(&other).await;
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(others_view[id], i == 0, "post {i} for the other viewer");
    }
    // The fan's window for these posts overflowed (they are over its capacity); the other
    // viewer's holds the one id.
    let window_sk = forum_store::keys::liked_window_sk(&ids[count - 1]).unwrap();
    let (fan_pk, other_pk) = (format!("USER#{}", fan.user_id), format!("USER#{}", other.user_id));
    let (fans_window, others_window) = (
        stack.stored_item(&fan_pk, &window_sk).await,
        stack.stored_item(&other_pk, &window_sk).await,
    );
    if forum_store::keys::liked_window_sk(&ids[0]) == forum_store::keys::liked_window_sk(&ids[count - 1]) {
        assert!(fans_window.contains_key("overflow"), "{fans_window:?}");
    }
    assert!(!others_window.contains_key("overflow"));
}
