//! Round trips per request, counted by the SDK interceptor (not timed): each route stays
//! within its budget once the container's caches are warm.

use serde_json::{Value, json};

use crate::support::{Answer, TestStack, isolated_stack};

/// Runs one request and returns its answer and the DynamoDB round trips it cost.
async fn counted(stack: &TestStack, call: impl std::future::Future<Output = Answer>) -> (Answer, u64) {
    // Futures are lazy: nothing is sent before this reading.
    let before = stack.stack.app.dynamodb_usage.round_trips();
    let answer = call.await;
    (answer, stack.stack.app.dynamodb_usage.round_trips() - before)
}

#[tokio::test]
async fn every_route_stays_within_its_round_trip_budget() {
    let stack = isolated_stack().await;
    let alice = stack.user("alice");
    let bob = stack.user("bob");
    // Warm up: both users have written, and each reading function has read them once. Each
    // function has its own container and so its own profile cache, as in Lambda: the budgets
    // are for warm containers.
    let first = alice.create_post("warm-up").await;
    let post_path = format!("/api/forum/posts/{}/", first["id"].as_str().unwrap());
    let comments = format!("{post_path}comments/");
    assert_eq!(bob.post(&comments, json!({"content": "warm"})).await.status, 201);
    alice.get("/api/forum/posts/").await;
    alice.get(&comments).await;
    alice.get(&post_path).await;

    let mut report = Vec::new();
    let mut check = |route: &str, answer: &Answer, status: u16, trips: u64, budget: u64| {
        assert_eq!(answer.status, status, "{route}: {}", answer.body);
        report.push(format!("{route}: {trips} (budget {budget})"));
        assert!(
            trips <= budget,
            "{route} took {trips} round trips; its budget is {budget}"
        );
    };

    let (a, n) = counted(&stack, alice.post("/api/forum/posts/", json!({"content": "budgeted"}))).await;
    check("create post", &a, 201, n, 1);
    let id = a.body["id"].as_str().unwrap().to_string();
    let path = format!("/api/forum/posts/{id}/");
    let (a, n) = counted(&stack, bob.get("/api/forum/posts/")).await;
    check("list posts", &a, 200, n, 2);
    let (a, n) = counted(&stack, bob.get(&path)).await;
    check("get post", &a, 200, n, 1);
    let (a, n) = counted(&stack, bob.post(&format!("{path}like/"), Value::Null)).await;
    check("like", &a, 200, n, 2);
    let (a, n) = counted(&stack, bob.post(&format!("{path}like/"), Value::Null)).await;
    check("unlike", &a, 200, n, 3);
    let (a, n) = counted(
        &stack,
        bob.post(&format!("{path}comments/"), json!({"content": "budget comment"})),
    )
    .await;
    // The post's author (for blocks) is read once per post and container, then known.
    check("create comment", &a, 201, n, 2);
    let comment = format!("{path}comments/{}/", a.body["id"].as_str().unwrap());
    let (a, n) = counted(&stack, alice.get(&format!("{path}comments/"))).await;
    check("list comments", &a, 200, n, 2);
    // A mention is resolved through the name claims: one BatchGetItem beside the write's own
    // reads, only when the text names someone.
    let mention = json!({ "content": format!("thanks @{}", alice.username) });
    let (a, n) = counted(&stack, bob.post(&format!("{path}comments/"), mention.clone())).await;
    check("create comment naming someone (post author known)", &a, 201, n, 2);
    let (a, n) = counted(
        &stack,
        alice.post("/api/forum/posts/", json!({"content": format!("hi @{}", bob.username)})),
    )
    .await;
    check("create post naming someone", &a, 201, n, 2);
    let (a, n) = counted(&stack, bob.patch(&comment, json!({"content": "edited"}))).await;
    check("edit comment", &a, 200, n, 1);
    let (a, n) = counted(&stack, bob.delete(&comment)).await;
    check("delete comment", &a, 204, n, 1);
    // Edit needs `is_liked`, which lives on another item: read alongside the write (see docs/table.md).
    let (a, n) = counted(&stack, alice.patch(&path, json!({"content": "edited post"}))).await;
    check("edit post", &a, 200, n, 2);
    // The routes added for moderation, retries, user pages and the inbox.
    let (a, n) = counted(&stack, bob.send(reqwest::Method::PUT, &format!("{path}like/"), None)).await;
    check("like (PUT)", &a, 200, n, 2);
    let (a, n) = counted(
        &stack,
        alice
            .with_header("idempotency-key", "budget-key")
            .post("/api/forum/posts/", json!({"content": "keyed"})),
    )
    .await;
    check("keyed create post", &a, 201, n, 1);
    let (a, n) = counted(
        &stack,
        alice
            .with_header("idempotency-key", "budget-key")
            .post("/api/forum/posts/", json!({"content": "keyed"})),
    )
    .await;
    check("keyed create post, replayed", &a, 201, n, 1);
    let (a, n) = counted(&stack, bob.post(&format!("{path}report/"), json!({"reason": "spam"}))).await;
    check("report", &a, 201, n, 1);
    let moderator = stack.moderator("mod");
    let (a, n) = counted(&stack, moderator.get("/api/forum/moderation/reports/")).await;
    check("report queue", &a, 200, n, 3);
    let (a, n) = counted(&stack, moderator.get("/api/forum/moderation/actions/")).await;
    check("moderation log", &a, 200, n, 1);
    let (a, n) = counted(
        &stack,
        bob.post(&format!("/api/forum/users/{}/block/", alice.user_id), Value::Null),
    )
    .await;
    // The transaction; then the blocker's inbox Query beside the profile read; here one
    // BatchWriteItem (Alice named Bob above, and her mention leaves his inbox with the block);
    // and the block marked as cleaned.
    check("block", &a, 201, n, 5);
    // A repeat writes nothing and cleans nothing again: the cancelled transaction alone (the
    // profile is in memory now).
    let (a, n) = counted(
        &stack,
        bob.post(&format!("/api/forum/users/{}/block/", alice.user_id), Value::Null),
    )
    .await;
    check("block again", &a, 201, n, 1);
    let (a, n) = counted(&stack, bob.get(&format!("/api/forum/users/{}/", alice.user_id))).await;
    check("user page", &a, 200, n, 3);
    let (a, n) = counted(&stack, bob.get(&format!("/api/forum/users/{}/posts/", alice.user_id))).await;
    // A cold container reads the author's profile too (cached a minute after).
    check("user's posts", &a, 200, n, 3);
    let (a, n) = counted(&stack, alice.get("/api/forum/notifications/unread_count/")).await;
    check("unread count", &a, 200, n, 2);
    let (a, n) = counted(&stack, alice.get("/api/forum/notifications/")).await;
    check("notifications page", &a, 200, n, 4);
    let (a, n) = counted(
        &stack,
        moderator.post(
            "/api/forum/moderation/actions/",
            json!({"action": "remove_post", "post_id": id, "reason": "budget"}),
        ),
    )
    .await;
    // The moderator's own standing is read first (a suspended moderator moderates nothing).
    check("moderator removal", &a, 201, n, 4);
    let (a, n) = counted(
        &stack,
        moderator.post(
            "/api/forum/moderation/actions/",
            json!({"action": "restore_post", "post_id": id, "reason": "budget"}),
        ),
    )
    .await;
    check("moderator restore", &a, 201, n, 3);
    let (a, n) = counted(&stack, alice.delete(&path)).await;
    check("delete post", &a, 204, n, 1);
    // The deleted post may be served from get-post's memory for the read cache's TTL
    // (docs/table.md); once that has passed, the miss costs its one round trip.
    tokio::time::sleep(stack.read_cache_ttl()).await;
    let (a, n) = counted(&stack, alice.get(&path)).await;
    check("get missing post", &a, 404, n, 1);
    println!("round trips per request:\n  {}", report.join("\n  "));
}

#[tokio::test]
async fn etags_answer_304_and_never_another_users_view() {
    let stack = isolated_stack().await;
    let alice = stack.user("alice");
    let bob = stack.user("bob");
    let post = alice.create_post("cache me").await;
    let path = format!("/api/forum/posts/{}/", post["id"].as_str().unwrap());

    let first = alice.get(&path).await;
    let etag = first.header("etag").expect("ETag").to_string();
    assert_eq!(first.header("cache-control"), Some("private, no-cache"));
    let again = alice.with_header("if-none-match", &etag).get(&path).await;
    assert_eq!(again.status, 304);
    assert!(again.body.is_null());
    assert_eq!(again.header("etag"), Some(etag.as_str()));

    // Alice likes it: her view changes, so her old ETag no longer matches.
    alice.post(&format!("{path}like/"), Value::Null).await;
    let changed = alice.with_header("if-none-match", &etag).get(&path).await;
    assert_eq!(changed.status, 200);
    assert_eq!(changed.body["is_liked"], true);
    // Bob's view differs (is_liked false): Alice's ETag never answers him with a 304.
    let alice_etag = changed.header("etag").unwrap().to_string();
    let bobs = bob.with_header("if-none-match", &alice_etag).get(&path).await;
    assert_eq!(bobs.status, 200);
    assert_eq!(bobs.body["is_liked"], false);

    for list in ["/api/forum/posts/".to_string(), format!("{path}comments/")] {
        let page = alice.get(&list).await;
        let tag = page.header("etag").expect("lists carry an ETag").to_string();
        assert_eq!(alice.with_header("if-none-match", &tag).get(&list).await.status, 304);
    }
}

#[tokio::test]
async fn capacity_is_counted_per_call_at_least_as_aws_charges() {
    let stack = isolated_stack().await;
    let alice = stack.user("cap-alice");
    for i in 0..20 {
        alice.create_post(&format!("capacity {i}")).await;
    }
    let list_posts = &stack.stack.functions[forum_api::Route::ListPosts.binary()];
    let toggle_like = &stack.stack.functions[forum_api::Route::ToggleLike.binary()];
    // Warm the profile cache (both users), not the page read below.
    alice.get("/api/forum/posts/?limit=10").await;
    let bob = stack.user("cap-bob");
    bob.get("/api/forum/posts/?limit=10").await;

    // A page of 20 read afresh: one Query on the feed and one BatchGetItem of 20 like keys,
    // none of which exists. AWS charges half a read unit per key all the same (DynamoDB Local
    // charges nothing for them), so the page costs at least 10.5 read units and no write.
    let before = list_posts.dynamodb_usage.snapshot();
    let page = alice.get("/api/forum/posts/?limit=20").await;
    assert_eq!(page.body["posts"].as_array().unwrap().len(), 20);
    let used = list_posts.dynamodb_usage.snapshot().since(&before);
    assert_eq!(
        (used.calls_of("Query"), used.calls_of("BatchGetItem")),
        (1, 1),
        "{used:?}"
    );
    assert!(used.read_units >= 10.5, "{used:?}");
    assert_eq!(used.write_units, 0.0);

    // The same page for someone else within the TTL: from memory, but for their own likes,
    // which live in their own partition: one item for the window of time these posts were
    // made in (and their blocked set), not 20 like keys in 20 posts' partitions (10 RCU).
    let before = list_posts.dynamodb_usage.snapshot();
    let again = bob.get("/api/forum/posts/?limit=20").await;
    assert_eq!(again.body["posts"], page.body["posts"]);
    let used = list_posts.dynamodb_usage.snapshot().since(&before);
    assert_eq!(
        (used.calls_of("Query"), used.calls_of("BatchGetItem")),
        (0, 1),
        "{used:?}"
    );
    assert!(
        (0.5..=2.0).contains(&used.read_units),
        "a page from memory at most 2 RCU: {used:?}"
    );

    // A like: a transaction of four items (the like, the count, the liker's window of liked
    // posts, the rate token: two write units each, at least) and a consistent read of the count.
    let id = page.body["posts"][0]["id"].as_str().unwrap();
    let before = toggle_like.dynamodb_usage.snapshot();
    alice.post(&format!("/api/forum/posts/{id}/like/"), json!({})).await;
    let used = toggle_like.dynamodb_usage.snapshot().since(&before);
    assert_eq!(used.calls_of("TransactWriteItems"), 1, "{used:?}");
    assert!(used.write_units >= 8.0, "{used:?}");
    assert!(used.read_units >= 1.0, "{used:?}");

    // An unlike: the like transaction, refused by its condition (AWS charges it all the same),
    // then the mirror transaction.
    let before = toggle_like.dynamodb_usage.snapshot();
    alice.post(&format!("/api/forum/posts/{id}/like/"), json!({})).await;
    let used = toggle_like.dynamodb_usage.snapshot().since(&before);
    assert_eq!(used.calls_of("TransactWriteItems"), 2, "{used:?}");
    assert!(
        used.write_units >= 6.0 + 4.0,
        "the refused transaction is counted: {used:?}"
    );
}
