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
        .parameter("RateUploadsPerMinute", "2")
        .parameter("RateReportsPerMinute", "2")
        .parameter("RateSubscriptionsPerMinute", "2");
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
    let keyed_alice = alice.with_header("idempotency-key", "kept-upload");
    let direct = crate::media::upload(&keyed_alice, forum_testkit::images::png(8, 8, false), "a.png").await;
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
    // A keyed retry of the stored upload is answered as it was, spent window or not.
    let again = crate::media::upload(&keyed_alice, forum_testkit::images::png(8, 8, false), "a.png").await;
    assert_eq!((again.status, &again.body), (201, &direct.body));
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    // A decode is what an upload costs: one refused by it takes a token too, and a spent window
    // refuses the next before decoding it.
    let carol = stack.user("carol");
    let undecodable = forum_testkit::images::jpeg_with_undefined_tables(&forum_testkit::images::photo_jpeg(64, 64));
    for _ in 0..2 {
        crate::media::upload(&carol, undecodable.clone(), "bad.jpg")
            .await
            .assert_error(400, "invalid_image");
    }
    crate::media::upload(&carol, forum_testkit::images::png(8, 8, false), "c.png")
        .await
        .assert_error(429, "rate_limited");
    crate::media::upload(&carol, undecodable, "bad.jpg")
        .await
        .assert_error(429, "rate_limited");

    // Reports: two, then refused; a repeat of one already made answers as it did and takes no
    // token (it writes nothing).
    let report = |post: &serde_json::Value| format!("/api/forum/posts/{}/report/", post["id"].as_str().unwrap());
    let first = bob.post(&report(&posts[0]), json!({"reason": "spam"})).await;
    assert_eq!(first.status, 201, "{}", first.body);
    assert_eq!(
        bob.post(&report(&posts[1]), json!({"reason": "spam"})).await.status,
        201
    );
    let refused = bob.post(&report(&posts[2]), json!({"reason": "spam"})).await;
    refused.assert_error(429, "rate_limited");
    assert!(refused.body["error"]["message"].as_str().unwrap().contains("reports"));
    let repeat = bob.post(&report(&posts[0]), json!({"reason": "hate"})).await;
    assert_eq!((repeat.status, &repeat.body), (201, &first.body));

    // Subscription changes over a socket: two, then refused with nothing written; a repeat of
    // what is followed changes nothing and takes no token.
    let dave = stack.user("dave");
    let mut live = crate::realtime::Live::connect(&stack, &dave).await;
    let ids = |n: usize| -> Vec<String> { (0..n).map(|_| ulid::Ulid::new().to_string()).collect() };
    let (first, second) = (ids(3), ids(3));
    for followed in [&first, &second] {
        live.send(json!({"action": "subscribe", "post_ids": followed})).await;
        live.expect("subscribed", |m| m["type"] == "subscribed").await;
    }
    live.send(json!({"action": "subscribe", "post_ids": first})).await;
    live.expect("a repeat, subscribed", |m| m["type"] == "subscribed").await;
    let third = ids(3);
    live.send(json!({"action": "subscribe", "post_ids": third})).await;
    let refused = live.expect("an error", |m| m["type"] == "error").await;
    assert_eq!(refused["code"], "rate_limited", "{refused}");
    assert!(
        refused["message"].as_str().unwrap().contains("subscription changes"),
        "{refused}"
    );
    for id in &third {
        assert!(stack.stack.app.table.subscribers(id).await.unwrap().is_empty(), "{id}");
    }
}

/// The table of limits is the one source: every limit a deployment may set is a template
/// parameter with the table's default and bounds (which CloudFormation, and forum-local,
/// enforce), every function reads it from that parameter, and docs/limits.md shows the table
/// as the code has it (`FORUM_WRITE_DOCS=1` rewrites it).
#[test]
fn the_template_and_the_docs_hold_the_table_of_limits() {
    use forum_domain::limits;
    use forum_local::template::{BUNDLED_TEMPLATE, StackTemplate};

    let template = StackTemplate::parse(BUNDLED_TEMPLATE).expect("template.yaml parses");
    for (limit, parameter) in limits::settable() {
        let def = template
            .parameters
            .get(parameter.name)
            .unwrap_or_else(|| panic!("template.yaml has no parameter {}", parameter.name));
        assert_eq!(def.kind, "Number", "{}", parameter.name);
        assert_eq!(
            def.default.as_deref(),
            Some(limit.value.to_string().as_str()),
            "{}",
            parameter.name
        );
        assert_eq!(def.min_value, Some(parameter.min as f64), "{}", parameter.name);
        assert_eq!(def.max_value, parameter.max.map(|m| m as f64), "{}", parameter.name);
        for function in &template.functions {
            if let Some(value) = function.environment.get(parameter.variable) {
                assert_eq!(
                    value,
                    &serde_yaml_ng::from_str::<serde_yaml_ng::Value>(&format!("!Ref {}", parameter.name)).unwrap(),
                    "{}: {}",
                    function.logical_id,
                    parameter.variable
                );
            }
        }
        assert!(
            template
                .functions
                .iter()
                .any(|f| f.environment.contains_key(parameter.variable)),
            "no function reads {}",
            parameter.variable
        );
    }

    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/limits.md");
    let docs = std::fs::read_to_string(&path).unwrap_or_default();
    let (start, end) = (
        "<!-- limits: generated from forum-domain's table -->\n",
        "<!-- /limits -->",
    );
    let table = limits::markdown_table();
    let current = docs
        .split_once(start)
        .and_then(|(_, rest)| rest.split_once(end))
        .map(|(inside, _)| inside);
    if current != Some(table.as_str()) {
        if std::env::var("FORUM_WRITE_DOCS").as_deref() == Ok("1") {
            let (before, after) = match docs.split_once(start) {
                Some((before, rest)) => (
                    before.to_string(),
                    rest.split_once(end).map_or("", |(_, a)| a).to_string(),
                ),
                None => (docs.clone(), "\n".to_string()),
            };
            std::fs::write(&path, format!("{before}{start}{table}{end}{after}")).expect("docs/limits.md written");
        } else {
            panic!("docs/limits.md does not hold the table of limits; run with FORUM_WRITE_DOCS=1 to rewrite it");
        }
    }
}
