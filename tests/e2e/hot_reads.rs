//! Hot reads from a container's memory (docs/table.md, "Reads"): one DynamoDB read per page or
//! post per TTL however many ask, the caller's own like always read afresh, and every change
//! visible within the stated bound.

use futures::future::join_all;
use serde_json::json;

use crate::support::isolated_stack;

#[tokio::test]
async fn many_readers_at_once_cost_one_feed_query_and_one_post_read() {
    let stack = isolated_stack().await;
    let alice = stack.user("hot-alice");
    let post = alice.create_post("everyone reads this").await;
    let id = post["id"].as_str().unwrap().to_string();
    let readers: Vec<_> = (0..40).map(|i| stack.user(&format!("hot-reader-{i}"))).collect();
    let list_posts = &stack.stack.functions[forum_api::Route::ListPosts.binary()];
    let get_post = &stack.stack.functions[forum_api::Route::GetPost.binary()];
    // Warm containers (the author's profile is cached for a minute), then let the page and
    // the post they cached expire.
    alice.get("/api/forum/posts/").await;
    alice.get(&format!("/api/forum/posts/{id}/")).await;
    tokio::time::sleep(stack.read_cache_ttl()).await;

    let feed_before = list_posts.dynamodb_usage.snapshot();
    let post_before = get_post.dynamodb_usage.snapshot();
    let path = format!("/api/forum/posts/{id}/");
    let (pages, posts) = futures::join!(
        join_all(readers.iter().map(|r| r.get("/api/forum/posts/"))),
        join_all(readers.iter().map(|r| r.get(&path)))
    );
    assert!(pages.iter().chain(&posts).all(|a| a.status == 200));
    let feed = list_posts.dynamodb_usage.snapshot().since(&feed_before);
    let reads = get_post.dynamodb_usage.snapshot().since(&post_before);
    // One load per TTL window (two if the burst straddles one); every reader's own likes.
    assert!(feed.calls_of("Query") <= 2, "{feed:?}");
    assert_eq!(feed.calls_of("BatchGetItem"), 40, "{feed:?}");
    assert_eq!(
        reads.round_trips, 40,
        "one round trip per read, loads included: {reads:?}"
    );
    // A read that loads the post costs a read unit (post and like); from memory, half (the like).
    assert!(reads.read_units <= 40.0 * 0.5 + 2.0 * 0.5, "{reads:?}");
}

#[tokio::test]
async fn is_liked_is_never_shared_and_counts_follow_within_the_bound() {
    let stack = isolated_stack().await;
    let alice = stack.user("hot-author");
    let bob = stack.user("hot-liker");
    let carol = stack.user("hot-onlooker");
    let post = alice.create_post("like me").await;
    let id = post["id"].as_str().unwrap().to_string();
    let path = format!("/api/forum/posts/{id}/");
    // Carol's read puts the post and the feed page in memory, unliked.
    assert_eq!(carol.get(&path).await.body["like_count"], 0);
    carol.get("/api/forum/posts/").await;

    assert_eq!(bob.post(&format!("{path}like/"), json!({})).await.body["like_count"], 1);
    // Bob's own like shows at once, from memory or not; Carol's view never borrows it.
    assert_eq!(bob.get(&path).await.body["is_liked"], true);
    let feed = bob.get("/api/forum/posts/").await;
    let mine = feed.body["posts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == id.as_str())
        .unwrap();
    assert_eq!(mine["is_liked"], true);
    assert_eq!(carol.get(&path).await.body["is_liked"], false);
    // The count reaches everyone within the TTL.
    stack
        .within_staleness_bound("the like count", || carol.get(&path), |a| a.body["like_count"] == 1)
        .await;
    stack
        .within_staleness_bound(
            "the count in the feed",
            || carol.get("/api/forum/posts/"),
            |a| {
                a.body["posts"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|p| p["id"] == id.as_str() && p["like_count"] == 1)
            },
        )
        .await;
}

#[tokio::test]
async fn a_deleted_post_refuses_writes_at_once_and_is_gone_within_the_bound() {
    let stack = isolated_stack().await;
    let alice = stack.user("hot-deleter");
    let bob = stack.user("hot-late");
    let post = alice.create_post("soon gone").await;
    let id = post["id"].as_str().unwrap().to_string();
    let path = format!("/api/forum/posts/{id}/");
    assert_eq!(bob.get(&path).await.status, 200, "now in get-post's memory");
    bob.get("/api/forum/posts/").await;
    assert_eq!(alice.delete(&path).await.status, 204);

    // Writes check the table, never the cache.
    bob.post(&format!("{path}like/"), json!({}))
        .await
        .assert_error(404, "not_found");
    bob.post(&format!("{path}comments/"), json!({"content": "too late"}))
        .await
        .assert_error(404, "not_found");
    stack
        .within_staleness_bound("the 404", || bob.get(&path), |a| a.status == 404)
        .await;
    // Missing is kept like a post: a deleted viral post is not read on every view.
    let get_post = &stack.stack.functions[forum_api::Route::GetPost.binary()];
    let before = get_post.dynamodb_usage.snapshot();
    let views = join_all((0..30).map(|_| bob.get(&path))).await;
    assert!(views.iter().all(|v| v.status == 404));
    let used = get_post.dynamodb_usage.snapshot().since(&before);
    assert!(used.round_trips <= 1, "30 views of a deleted post: {used:?}");
    stack
        .within_staleness_bound(
            "the feed without it",
            || bob.get("/api/forum/posts/"),
            |a| {
                !a.body["posts"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|p| p["id"] == id.as_str())
            },
        )
        .await;
    // A new post shows in the feed within the bound too.
    let fresh = alice.create_post("the next one").await;
    stack
        .within_staleness_bound(
            "the new post in the feed",
            || bob.get("/api/forum/posts/"),
            |a| a.body["posts"][0]["id"] == fresh["id"],
        )
        .await;
}

#[tokio::test]
async fn many_page_sizes_of_the_longest_posts_stay_within_the_cache_budget() {
    let stack = isolated_stack().await;
    // 30 posts of 5,000 three-byte characters (15 KB each), from three accounts (the post
    // rate limit is per user), then every page size from 1 to 100 of the front page: 100
    // different pages, 22 MB if all were kept.
    let long = "漢".repeat(5_000);
    let authors: Vec<_> = (0..3).map(|i| stack.user(&format!("hot-long-{i}"))).collect();
    for author in &authors {
        for _ in 0..10 {
            let answer = author.post("/api/forum/posts/", json!({"content": long})).await;
            assert_eq!(answer.status, 201, "{}", answer.body);
        }
    }
    let crawler = stack.user("hot-crawler");
    for limit in 1..=100 {
        let page = crawler.get(&format!("/api/forum/posts/?limit={limit}")).await;
        assert_eq!(page.status, 200);
    }
    let list_posts = &stack.stack.functions[forum_api::Route::ListPosts.binary()];
    let ((pages, bytes), _, budget) = list_posts.read_cache_held();
    assert!(
        bytes <= budget,
        "{pages} pages, {bytes} bytes held; the budget is {budget}"
    );
    // Weighed for what they hold: the last page alone has its 30 posts of 15 KB.
    assert!(bytes >= 30 * 15_000, "{pages} pages weighed at only {bytes} bytes");
    // And the front page is still served (from memory or afresh).
    let front = crawler.get("/api/forum/posts/").await;
    assert_eq!(front.body["posts"].as_array().unwrap().len(), 20);
}
