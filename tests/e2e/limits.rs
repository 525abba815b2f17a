//! Rate limits: per user and action, taken in the same transaction as the write.

use serde_json::json;

use crate::support::{start_stack, test_options};

#[tokio::test]
async fn over_the_limit_is_429_with_retry_after_and_writes_nothing() {
    let options = test_options(&format!("forum-limits-{}", ulid::Ulid::new()))
        .parameter("RatePostsPerMinute", "3")
        .parameter("RateCommentsPerMinute", "2")
        .parameter("RateLikesPerMinute", "4")
        .parameter("RateEditsPerMinute", "3")
        .parameter("RateUploadsPerMinute", "2");
    let stack = start_stack(options, None).await;
    // Windows are whole minutes: start early in one so the test never straddles two.
    let into_minute = chrono::Utc::now().timestamp().rem_euclid(60);
    if into_minute > 40 {
        tokio::time::sleep(std::time::Duration::from_secs((61 - into_minute) as u64)).await;
    }
    let alice = stack.user("alice");
    let bob = stack.user("bob");

    let mut posts = Vec::new();
    for i in 0..3 {
        posts.push(alice.create_post(&format!("post {i}")).await);
    }
    let refused = alice
        .post("/api/forum/posts/", json!({"content": "one too many"}))
        .await;
    refused.assert_error(429, "rate_limited");
    let retry_after: u64 = refused.header("retry-after").expect("Retry-After").parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let feed = bob.get("/api/forum/posts/?limit=100").await;
    assert_eq!(
        feed.body["posts"].as_array().unwrap().len(),
        3,
        "the refused post was not written"
    );
    // Limits are per user: Bob still may post.
    bob.create_post("bob is fine").await;

    // Comments: two, then refused, and the count did not move.
    let post = &posts[0];
    let comments = format!("/api/forum/posts/{}/comments/", post["id"].as_str().unwrap());
    for _ in 0..2 {
        assert_eq!(alice.post(&comments, json!({"content": "hi"})).await.status, 201);
    }
    alice
        .post(&comments, json!({"content": "hi again"}))
        .await
        .assert_error(429, "rate_limited");
    let get = format!("/api/forum/posts/{}/", post["id"].as_str().unwrap());
    assert_eq!(bob.get(&get).await.body["comment_count"], 2);

    // Like toggles: four, then refused with the like state untouched.
    let like = format!("/api/forum/posts/{}/like/", post["id"].as_str().unwrap());
    for expected in [true, false, true, false] {
        assert_eq!(alice.post(&like, json!(null)).await.body["is_liked"], expected);
    }
    alice.post(&like, json!(null)).await.assert_error(429, "rate_limited");
    let seen = alice.get(&get).await;
    assert_eq!(
        (seen.body["is_liked"].clone(), seen.body["like_count"].clone()),
        (json!(false), json!(0))
    );

    // Edits, of posts and comments together: each is broadcast to the post's subscribers.
    let comment = alice.post(&comments, json!({"content": "x"})).await;
    // (Alice's comment limit is spent; Bob comments, Bob edits.)
    assert_eq!(comment.status, 429);
    let comment = bob.post(&comments, json!({"content": "bob's"})).await;
    assert_eq!(comment.status, 201, "{}", comment.body);
    let bobs_comment = format!("{comments}{}/", comment.body["id"].as_str().unwrap());
    let bobs_post = bob.create_post("bob's post").await;
    let bobs_post = format!("/api/forum/posts/{}/", bobs_post["id"].as_str().unwrap());
    assert_eq!(bob.patch(&bobs_post, json!({"content": "edit 1"})).await.status, 200);
    assert_eq!(bob.patch(&bobs_comment, json!({"content": "edit 2"})).await.status, 200);
    assert_eq!(bob.patch(&bobs_post, json!({"content": "edit 3"})).await.status, 200);
    let refused = bob.patch(&bobs_comment, json!({"content": "edit 4"})).await;
    refused.assert_error(429, "rate_limited");
    assert!(refused.header("retry-after").is_some());
    bob.patch(&bobs_post, json!({"content": "edit 5"}))
        .await
        .assert_error(429, "rate_limited");
    assert_eq!(
        bob.get(&bobs_post).await.body["content"],
        "edit 3",
        "refused edits change nothing"
    );
    let listed = bob.get(&comments).await;
    let bobs = listed.body["comments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == comment.body["id"])
        .cloned()
        .unwrap();
    assert_eq!(bobs["content"], "edit 2");
    // The limit is checked after ownership and existence: those answers do not change.
    bob.patch(
        &format!("/api/forum/posts/{}/", post["id"].as_str().unwrap()),
        json!({"content": "not mine"}),
    )
    .await
    .assert_error(403, "forbidden");

    // Uploads, direct and presigned together: each may cost a process-media run.
    let presign = json!({"content_type": "image/png", "content_length": 1000});
    assert_eq!(
        alice.post("/api/forum/upload/presign/", presign.clone()).await.status,
        201
    );
    let direct = crate::media::upload(&alice, forum_testkit::images::png(8, 8, false), "a.png").await;
    assert_eq!(direct.status, 201, "{}", direct.body);
    alice
        .post("/api/forum/upload/presign/", presign.clone())
        .await
        .assert_error(429, "rate_limited");
    let refused = crate::media::upload(&alice, forum_testkit::images::png(8, 8, false), "b.png").await;
    refused.assert_error(429, "rate_limited");
    assert!(
        refused.body["error"]["message"].as_str().unwrap().contains("uploads"),
        "{}",
        refused.body
    );
    assert_eq!(bob.post("/api/forum/upload/presign/", presign).await.status, 201);
}

#[test]
fn the_templates_default_limits_are_the_codes_defaults() {
    // A function given no FORUM_RATE_* variable and a stack deployed with default parameters
    // must enforce the same limits.
    let template = forum_local::template::StackTemplate::parse(forum_local::template::BUNDLED_TEMPLATE).unwrap();
    let default_of = |name: &str| {
        template.parameters[name]
            .default
            .clone()
            .unwrap()
            .parse::<u32>()
            .unwrap()
    };
    let code = forum_api::config::RateLimits::default();
    assert_eq!(
        (
            default_of("RatePostsPerMinute"),
            default_of("RateCommentsPerMinute"),
            default_of("RateLikesPerMinute"),
            default_of("RateEditsPerMinute"),
            default_of("RateUploadsPerMinute")
        ),
        (
            code.posts_per_min,
            code.comments_per_min,
            code.likes_per_min,
            code.edits_per_min,
            code.uploads_per_min
        )
    );
}
