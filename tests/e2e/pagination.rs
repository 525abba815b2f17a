//! Keyset pagination: stable pages while posts arrive, exact round trips, signed cursors.

use std::collections::HashSet;

use serde_json::Value;

use crate::support::{Client, isolated_stack, shared_stack};

fn ids(page: &Value) -> Vec<String> {
    page["posts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_string())
        .collect()
}

async fn create_many(client: &Client, n: usize, tag: &str) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push(
            client.create_post(&format!("{tag} {i}")).await["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    ids
}

#[tokio::test]
async fn walking_next_pages_while_posts_arrive_sees_each_post_once() {
    let stack = isolated_stack().await;
    let alice = stack.user("alice");
    let bob = stack.user("bob");
    let mut original = create_many(&alice, 23, "original").await;
    original.reverse(); // newest first

    // Bob keeps posting while Alice pages through.
    let writer = {
        let bob = bob.clone();
        tokio::spawn(async move { create_many(&bob, 15, "arriving").await })
    };
    let mut seen = Vec::new();
    let mut page = alice.get("/api/forum/posts/?limit=5").await;
    let first_page = ids(&page.body);
    assert_eq!(page.body["previous_page"], Value::Null);
    let mut pages = 1;
    loop {
        seen.extend(ids(&page.body));
        let Some(next) = page.body["next_page"].as_str().map(str::to_string) else {
            break;
        };
        assert!(next.starts_with(&stack.base), "next_page is a full URL: {next}");
        assert!(next.contains("limit=5"));
        page = alice.get(&next).await;
        assert_eq!(page.status, 200);
        pages += 1;
        assert!(pages < 20, "pagination does not terminate");
    }
    let arrived: HashSet<String> = writer.await.unwrap().into_iter().collect();
    // Posts that arrived after the first page may appear only above it; below it, exactly the originals.
    let after_first: Vec<String> = seen.iter().skip(first_page.len()).cloned().collect();
    assert!(
        after_first.iter().all(|id| !arrived.contains(id)),
        "a new post shifted into a later page"
    );
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "a post was repeated");
    let expected: Vec<String> = original.iter().filter(|id| !first_page.contains(id)).cloned().collect();
    assert_eq!(after_first, expected);
    assert_eq!(
        seen.iter().filter(|id| original.contains(id)).count(),
        23,
        "every original post seen"
    );
}

#[tokio::test]
async fn next_then_previous_returns_exactly_the_first_page() {
    let stack = isolated_stack().await;
    let alice = stack.user("alice");
    create_many(&alice, 12, "post").await;
    let first = alice.get("/api/forum/posts/?limit=4").await;
    let second = alice.get(first.body["next_page"].as_str().unwrap()).await;
    // New posts arrive between the two reads.
    create_many(&alice, 3, "late").await;
    let back = alice.get(second.body["previous_page"].as_str().unwrap()).await;
    assert_eq!(ids(&back.body), ids(&first.body));
    assert_eq!(back.body["posts"], first.body["posts"]);
    // Going back from the first page reaches the newer posts; from there, forward is page one again.
    let newer = alice
        .get(back.body["previous_page"].as_str().expect("newer posts exist"))
        .await;
    assert_eq!(ids(&newer.body).len(), 3);
    assert_eq!(
        newer.body["previous_page"],
        Value::Null,
        "nothing newer than the newest"
    );
    let forward = alice.get(newer.body["next_page"].as_str().unwrap()).await;
    assert_eq!(ids(&forward.body), ids(&first.body));
}

#[tokio::test]
async fn walking_back_from_the_last_page_visits_every_page_in_reverse() {
    let stack = isolated_stack().await;
    let alice = stack.user("alice");
    let mut all = create_many(&alice, 10, "p").await;
    all.reverse();
    let mut forward_pages = Vec::new();
    let mut page = alice.get("/api/forum/posts/?limit=3").await;
    loop {
        forward_pages.push(ids(&page.body));
        match page.body["next_page"].as_str() {
            Some(next) => page = alice.get(next).await,
            None => break,
        }
    }
    assert_eq!(forward_pages.concat(), all);
    assert_eq!(forward_pages.last().unwrap().len(), 1);
    let mut backward_pages = vec![ids(&page.body)];
    while let Some(prev) = page.body["previous_page"].as_str() {
        page = alice.get(prev).await;
        backward_pages.push(ids(&page.body));
    }
    backward_pages.reverse();
    assert_eq!(backward_pages, forward_pages);
}

#[tokio::test]
async fn an_empty_feed_has_no_links() {
    let stack = isolated_stack().await;
    let page = stack.user("alice").get("/api/forum/posts/").await;
    assert_eq!(page.status, 200);
    assert_eq!(page.body["posts"], serde_json::json!([]));
    assert_eq!(page.body["next_page"], Value::Null);
    assert_eq!(page.body["previous_page"], Value::Null);
}

#[tokio::test]
async fn tampered_or_foreign_cursors_are_400_never_a_wrong_page() {
    let stack = shared_stack().await;
    let alice = stack.user("alice");
    create_many(&alice, 3, "c").await;
    let page = alice.get("/api/forum/posts/?limit=1").await;
    let next = page.body["next_page"].as_str().unwrap().to_string();
    let cursor = next
        .split("cursor=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .to_string();
    let (payload, tag) = cursor.split_once('.').unwrap();
    let mut flipped = payload.as_bytes().to_vec();
    flipped[3] = if flipped[3] == b'A' { b'B' } else { b'A' };
    let foreign =
        forum_domain::cursor::CursorCodec::new(b"some other deployment").encode(&forum_domain::cursor::PageCursor {
            scope: "feed".into(),
            direction: forum_domain::cursor::Direction::After,
            key: "01ZZZZZZZZZZZZZZZZZZZZZZZZ".into(),
        });
    let other_list = forum_domain::cursor::CursorCodec::new(stack.cursor_secret.as_bytes()).encode(
        &forum_domain::cursor::PageCursor {
            scope: "comments:01JD0000000000000000000000".into(),
            direction: forum_domain::cursor::Direction::After,
            key: "01ZZZZZZZZZZZZZZZZZZZZZZZZ".into(),
        },
    );
    for bad in [
        format!("{}.{tag}", String::from_utf8(flipped).unwrap()),
        format!("{payload}.AAAAAAAAAAAAAAAAAAAAAA"),
        payload.to_string(),
        "garbage".to_string(),
        foreign,
        other_list,
        "%FF%FE".to_string(),
    ] {
        alice
            .get(&format!("/api/forum/posts/?cursor={bad}"))
            .await
            .assert_error(400, "invalid_cursor");
    }
}
