//! Moderation: who may moderate (a claim only the authorizer reads), removal and restore with
//! counters that move exactly once whatever races them, suspensions, and the log.

use futures::future::join_all;
use serde_json::{Value, json};

use crate::likes::like_truth;
use crate::support::{Client, TestStack, eventually, isolated_stack, shared_stack, until_answered};

const ACTIONS: &str = "/api/forum/moderation/actions/";

fn post_path(post_id: &str) -> String {
    format!("/api/forum/posts/{post_id}/")
}

fn comments_path(post_id: &str) -> String {
    format!("/api/forum/posts/{post_id}/comments/")
}

async fn act(moderator: &Client, body: Value) -> Value {
    let answer = moderator.post(ACTIONS, body).await;
    assert_eq!(answer.status, 201, "{}", answer.body);
    answer.body
}

/// The post's `comment_count` as stored, and the comments a reader sees (every page).
async fn comment_truth(stack: &TestStack, reader: &Client, post_id: &str) -> (u64, usize) {
    let item = stack.stored_item(&format!("POST#{post_id}"), "POST").await;
    let count = item["comment_count"].as_n().unwrap().parse().unwrap();
    let mut seen = 0;
    let mut page = reader.get(&format!("{}?limit=7", comments_path(post_id))).await;
    loop {
        assert_eq!(page.status, 200, "{}", page.body);
        seen += page.body["comments"].as_array().unwrap().len();
        match page.body["next_page"].as_str() {
            Some(next) => page = reader.get(next).await,
            None => return (count, seen),
        }
    }
}

#[tokio::test]
async fn only_moderators_moderate_and_a_forged_or_missing_role_is_an_ordinary_user() {
    let stack = shared_stack().await;
    let author = stack.user("author");
    let post = author.create_post("moderate me if you can").await;
    let post_id = post["id"].as_str().unwrap();
    let remove = json!({"action": "remove_post", "post_id": post_id, "reason": "test"});

    let claim = stack.stack.environments["authorizer"]["FORUM_ROLE_CLAIM"].clone();
    let impostors = [
        stack.user("plain"),
        // The right group under another claim, the right claim with another spelling or shape,
        // a role claim the forum never reads.
        stack.user_with_claims("other_claim", json!({"groups": ["moderators"]})),
        stack.user_with_claims("capitalised", json!({ claim.as_str(): ["Moderators"] })),
        stack.user_with_claims("object", json!({ claim.as_str(): {"moderators": true} })),
        stack.user_with_claims("role", json!({"role": "moderator", "custom:role": "admin"})),
        // A header or query can never carry a role: only the authorizer's context does.
        stack.user("header").with_header("x-forum-role", "moderator"),
    ];
    for impostor in &impostors {
        impostor
            .post(ACTIONS, remove.clone())
            .await
            .assert_error(403, "forbidden");
        impostor.get(ACTIONS).await.assert_error(403, "forbidden");
        impostor
            .get(&format!("{ACTIONS}?role=moderator"))
            .await
            .assert_error(403, "forbidden");
    }
    // The moderator's claim in a token signed by anyone else is no token at all.
    let moderator = stack.moderator("mod");
    let forged_mint = forum_testkit::TokenMint {
        secret: "an attacker's own key, long enough to sign anything".into(),
        ..stack.jwt.clone()
    };
    let forged = forum_testkit::issue_token_with(
        &forged_mint,
        &moderator.user_id,
        &moderator.username,
        None,
        600,
        json!({ claim.as_str(): ["moderators"] }).as_object().unwrap().clone(),
    )
    .unwrap();
    moderator
        .with_token(&forged)
        .post(ACTIONS, remove.clone())
        .await
        .assert_error(401, "unauthorized");
    // Nothing above changed the post.
    assert_eq!(author.get(&post_path(post_id)).await.status, 200);
    assert_eq!(moderator.get(ACTIONS).await.status, 200);

    // A moderator's malformed actions: each a clear 400, nothing written.
    for (body, code) in [
        (json!({"action": "delete_everything", "reason": "x"}), "invalid_action"),
        (json!({"action": "remove_post", "reason": "x"}), "invalid_action"),
        (
            json!({"action": "remove_post", "post_id": "nope", "reason": "x"}),
            "invalid_action",
        ),
        (
            json!({"action": "remove_post", "post_id": post_id, "user_id": "u", "reason": "x"}),
            "invalid_action",
        ),
        (
            json!({"action": "remove_post", "post_id": post_id, "reason": " \u{200B} "}),
            "content_required",
        ),
        (json!({"action": "remove_post", "post_id": post_id}), "invalid_json"),
        (
            json!({"action": "suspend_user", "user_id": "u", "reason": "x"}),
            "invalid_until",
        ),
        (
            json!({"action": "suspend_user", "user_id": "u", "until": "soon", "reason": "x"}),
            "invalid_until",
        ),
        (
            json!({"action": "suspend_user", "user_id": "u", "until": "2001-01-01T00:00:00Z", "reason": "x"}),
            "invalid_until",
        ),
        (
            json!({"action": "suspend_user", "user_id": "a#b", "until": "2099-01-01T00:00:00Z", "reason": "x"}),
            "invalid_action",
        ),
    ] {
        moderator.post(ACTIONS, body.clone()).await.assert_error(400, code);
    }
    let missing = json!({"action": "remove_post", "post_id": "01JDQ8Z6Y0X9W8V7T6S5R4Q3P2", "reason": "x"});
    moderator.post(ACTIONS, missing).await.assert_error(404, "not_found");
    assert_eq!(author.get(&post_path(post_id)).await.status, 200);
}

#[tokio::test]
async fn a_removed_post_is_gone_for_everyone_but_moderators_until_restored() {
    let stack = isolated_stack().await;
    let alice = stack.user("alice");
    let bob = stack.user("bob");
    let moderator = stack.moderator("mod");
    let post = alice.create_post("a post to remove").await;
    let post_id = post["id"].as_str().unwrap();
    assert_eq!(
        bob.post(&format!("{}like/", post_path(post_id)), json!(null))
            .await
            .status,
        200
    );
    let comment = bob.post(&comments_path(post_id), json!({"content": "a reply"})).await;
    assert_eq!(comment.status, 201);

    let entry = act(
        &moderator,
        json!({"action": "remove_post", "post_id": post_id, "reason": "off-topic <b>spam</b>"}),
    )
    .await;
    assert_eq!(entry["action"], "remove_post");
    assert_eq!(entry["reason"], "off-topic spam");
    assert_eq!(entry["user_id"], alice.user_id.as_str());
    assert_eq!(entry["moderator_id"], moderator.user_id.as_str());

    // Gone for the author and everyone else, from reads and from the feed.
    let path = post_path(post_id);
    for reader in [&alice, &bob] {
        stack
            .within_staleness_bound("the removal", || reader.get(&path), |a| a.status == 404)
            .await
            .assert_error(404, "not_found");
        reader.get(&comments_path(post_id)).await.assert_error(404, "not_found");
        stack
            .within_staleness_bound(
                "the feed without it",
                || reader.get("/api/forum/posts/"),
                |a| {
                    a.body["posts"]
                        .as_array()
                        .is_some_and(|p| p.iter().all(|p| p["id"] != post_id))
                },
            )
            .await;
    }
    // A moderator reads it, marked, with its comments.
    let seen = moderator.get(&post_path(post_id)).await;
    assert_eq!(seen.status, 200, "{}", seen.body);
    assert_eq!(seen.body["removed"]["reason"], "off-topic spam");
    assert_eq!(seen.body["removed"]["action_id"], entry["id"]);
    assert_eq!(moderator.get(&comments_path(post_id)).await.status, 200);

    // While removed, nothing changes it: no like, comment, edit or delete (all 404).
    bob.post(&format!("{}like/", post_path(post_id)), json!(null))
        .await
        .assert_error(404, "not_found");
    bob.post(&comments_path(post_id), json!({"content": "still here?"}))
        .await
        .assert_error(404, "not_found");
    alice
        .patch(&post_path(post_id), json!({"content": "edited away"}))
        .await
        .assert_error(404, "not_found");
    alice.delete(&post_path(post_id)).await.assert_error(404, "not_found");
    // Removing it twice is a conflict, and logs nothing.
    moderator
        .post(
            ACTIONS,
            json!({"action": "remove_post", "post_id": post_id, "reason": "again"}),
        )
        .await
        .assert_error(409, "already_removed");

    let restored = act(
        &moderator,
        json!({"action": "restore_post", "post_id": post_id, "reason": "appeal upheld"}),
    )
    .await;
    let back = stack
        .within_staleness_bound("the restore", || bob.get(&path), |a| a.status == 200)
        .await;
    assert_eq!(
        (back.body["like_count"].as_u64(), back.body["comment_count"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(back.body["content"], "a post to remove");
    assert!(back.body.get("removed").is_none());
    stack
        .within_staleness_bound(
            "the feed with it again",
            || bob.get("/api/forum/posts/"),
            |a| {
                a.body["posts"]
                    .as_array()
                    .is_some_and(|p| p.iter().any(|p| p["id"] == post_id))
            },
        )
        .await;
    moderator
        .post(
            ACTIONS,
            json!({"action": "restore_post", "post_id": post_id, "reason": "again"}),
        )
        .await
        .assert_error(409, "not_removed");

    // The log: both actions, newest first; nothing of the refused ones.
    let log = moderator.get(&format!("{ACTIONS}?limit=1")).await;
    assert_eq!(log.body["actions"][0]["id"], restored["id"]);
    let older = moderator.get(log.body["next_page"].as_str().unwrap()).await;
    assert_eq!(older.body["actions"][0]["id"], entry["id"]);
    assert!(older.body["next_page"].is_null());
    let newer = moderator.get(older.body["previous_page"].as_str().unwrap()).await;
    assert_eq!(newer.body["actions"][0]["id"], restored["id"]);
}

/// Whose comments a user page lists and counts: `(ids listed, comment_count)`.
async fn user_comments(reader: &Client, user: &Client) -> (Vec<String>, u64) {
    let page = reader
        .get(&format!("/api/forum/users/{}/comments/?limit=50", user.user_id))
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    let profile = reader.get(&format!("/api/forum/users/{}/", user.user_id)).await;
    assert_eq!(profile.status, 200, "{}", profile.body);
    let ids = page.body["comments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect();
    (ids, profile.body["comment_count"].as_u64().unwrap())
}

/// Polls `user`'s page (the stream relists comments) until it shows `wanted`.
async fn until_user_comments(reader: &Client, user: &Client, wanted: (Vec<&str>, u64)) {
    let wanted = (wanted.0.into_iter().map(str::to_string).collect::<Vec<_>>(), wanted.1);
    let what = format!("{}'s page, awaiting {wanted:?}", user.username);
    eventually(&what, || user_comments(reader, user), |seen| *seen == wanted).await;
}

#[tokio::test]
async fn a_removed_posts_comments_leave_their_authors_pages_and_can_still_be_deleted() {
    let stack = shared_stack().await;
    let author = stack.user("removed_op");
    let bob = stack.user("commenter");
    let dave = stack.user("regular");
    let reader = stack.user("reader");
    let moderator = stack.moderator("mod");
    let post = author.create_post("a thread a moderator will remove").await;
    let post_id = post["id"].as_str().unwrap().to_string();
    let say = |who: &Client, text: &str| {
        let (who, path, text) = (who.clone(), comments_path(&post_id), text.to_string());
        async move {
            let c = who.post(&path, json!({"content": text})).await;
            assert_eq!(c.status, 201, "{}", c.body);
            c.body["id"].as_str().unwrap().to_string()
        }
    };
    let bobs = say(&bob, "mine to delete").await;
    let d1 = say(&dave, "first").await;
    let d2 = say(&dave, "second").await;
    let remove_d2 = json!({"action": "remove_comment", "post_id": post_id, "comment_id": d2, "reason": "on its own"});
    act(&moderator, remove_d2.clone()).await;
    until_user_comments(&reader, &dave, (vec![d1.as_str()], 1)).await;

    act(
        &moderator,
        json!({"action": "remove_post", "post_id": post_id, "reason": "gone"}),
    )
    .await;
    until_user_comments(&reader, &bob, (vec![], 0)).await;
    until_user_comments(&reader, &dave, (vec![], 0)).await;
    // What Bob wrote there is still his to delete (and someone else's is not).
    let comment = format!("{}{bobs}/", comments_path(&post_id));
    dave.delete(&comment).await.assert_error(403, "forbidden");
    assert_eq!(bob.delete(&comment).await.status, 204);
    bob.delete(&comment).await.assert_error(404, "not_found");
    let stored = stack.stored_item(&format!("POST#{post_id}"), "POST").await;
    assert_eq!(stored["comment_count"].as_n().unwrap(), "1", "d1 alone is counted");

    // Restored: every comment no moderator removed on its own is back, where it was.
    let restore = json!({"action": "restore_post", "post_id": post_id, "reason": "appeal"});
    act(&moderator, restore.clone()).await;
    until_user_comments(&reader, &dave, (vec![d1.as_str()], 1)).await;
    // A comment restored while its post is removed stays off its author's page with the post.
    act(
        &moderator,
        json!({"action": "remove_post", "post_id": post_id, "reason": "again"}),
    )
    .await;
    until_user_comments(&reader, &dave, (vec![], 0)).await;
    let restore_d2 = json!({"action": "restore_comment", "post_id": post_id, "comment_id": d2, "reason": "fine"});
    act(&moderator, restore_d2).await;
    let (pk, sk) = (format!("POST#{post_id}"), format!("COMMENT#{d2}"));
    eventually(
        "d2 listed on a removed post",
        || stack.stored_item(&pk, &sk),
        |item| !item.contains_key("gsi2pk"),
    )
    .await;
    assert_eq!(user_comments(&reader, &dave).await, (vec![], 0));
    act(&moderator, restore).await;
    until_user_comments(&reader, &dave, (vec![d2.as_str(), d1.as_str()], 2)).await;
}

#[tokio::test]
async fn a_run_of_removed_comments_longer_than_a_pages_reads_never_ends_the_thread() {
    let stack = shared_stack().await;
    let author = stack.user("author");
    let moderator = stack.moderator("mod");
    let post_id = author.create_post("a raided thread").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    // A raid of 16 comments, each removed: more than a page of one reads (5 Queries of 3).
    for i in 0..16 {
        let raider = stack.user(&format!("raider{i}"));
        let c = raider.post(&comments_path(&post_id), json!({"content": "spam"})).await;
        assert_eq!(c.status, 201, "{}", c.body);
        act(
            &moderator,
            json!({"action": "remove_comment", "post_id": post_id, "comment_id": c.body["id"], "reason": "raid"}),
        )
        .await;
    }
    let answer = author
        .post(&comments_path(&post_id), json!({"content": "still here"}))
        .await;
    assert_eq!(answer.status, 201, "{}", answer.body);

    // Page by page, one at a time: empty pages may come first, but the list goes on to it.
    let reader = stack.user("reader");
    let mut page = reader.get(&format!("{}?limit=1", comments_path(&post_id))).await;
    let mut seen = Vec::new();
    for _ in 0..20 {
        assert_eq!(page.status, 200, "{}", page.body);
        for comment in page.body["comments"].as_array().unwrap() {
            seen.push(comment["id"].as_str().unwrap().to_string());
        }
        match page.body["next_page"].as_str() {
            Some(next) => page = reader.get(next).await,
            None => break,
        }
    }
    assert_eq!(seen, vec![answer.body["id"].as_str().unwrap().to_string()]);
}

#[tokio::test]
async fn removal_racing_the_authors_delete_likes_and_comments_moves_each_counter_once() {
    let stack = shared_stack().await;
    let author = stack.user("author");
    let moderator = stack.moderator("mod");
    let post = author.create_post("a contested thread").await;
    let post_id = post["id"].as_str().unwrap().to_string();
    let commenters: Vec<Client> = (0..12).map(|i| stack.user(&format!("c{i}"))).collect();
    let mut comments = Vec::new();
    for user in &commenters {
        let c = user.post(&comments_path(&post_id), json!({"content": "mine"})).await;
        assert_eq!(c.status, 201, "{}", c.body);
        comments.push((user.clone(), c.body["id"].as_str().unwrap().to_string()));
    }

    // Each comment: its author deletes it while a moderator removes it. One wins.
    let races = comments.iter().map(|(user, cid)| {
        let (post_id, moderator) = (post_id.clone(), moderator.clone());
        async move {
            let comment_path = format!("{}{cid}/", comments_path(&post_id));
            let delete = user.delete(&comment_path);
            let remove = moderator.post(
                ACTIONS,
                json!({"action": "remove_comment", "post_id": post_id, "comment_id": cid, "reason": "race"}),
            );
            let (deleted, removed) = tokio::join!(delete, remove);
            (cid.clone(), deleted.status, removed.status, removed.body)
        }
    });
    let outcomes = join_all(races).await;
    let mut removed_ids = Vec::new();
    for (cid, deleted, removed, body) in &outcomes {
        match (deleted, removed) {
            (204, 404) => {}
            (404, 201) => removed_ids.push(cid.clone()),
            other => panic!("comment {cid}: delete and removal both or neither won: {other:?} {body}"),
        }
    }
    let (count, seen) = comment_truth(stack, &author, &post_id).await;
    assert_eq!(
        (count, seen),
        (0, 0),
        "every comment is deleted or removed, and uncounted once"
    );
    let (_, moderators_view) = comment_truth(stack, &moderator, &post_id).await;
    assert_eq!(
        moderators_view,
        removed_ids.len(),
        "moderators still see the removed ones"
    );

    // Restoring them counts them again, once each, even when restored twice at once.
    let restores = removed_ids.iter().flat_map(|cid| {
        let body = json!({"action": "restore_comment", "post_id": post_id, "comment_id": cid, "reason": "ok"});
        [moderator.post(ACTIONS, body.clone()), moderator.post(ACTIONS, body)]
    });
    let answers = join_all(restores).await;
    let won = answers.iter().filter(|a| a.status == 201).count();
    assert_eq!(won, removed_ids.len(), "each removal is restored exactly once");
    for lost in answers.iter().filter(|a| a.status != 201) {
        lost.assert_error(409, "not_removed");
    }
    let (count, seen) = comment_truth(stack, &author, &post_id).await;
    assert_eq!((count, seen), (removed_ids.len() as u64, removed_ids.len()));

    // Likes racing a removal and a restore of the post: the count equals the like items.
    let fans: Vec<Client> = (0..20).map(|i| stack.user(&format!("fan{i}"))).collect();
    let like = format!("{}like/", post_path(&post_id));
    let mut calls = Vec::new();
    for fan in &fans {
        calls.push(fan.post(&like, json!(null)));
    }
    let (likes, _) = tokio::join!(join_all(calls), async {
        act(
            &moderator,
            json!({"action": "remove_post", "post_id": post_id, "reason": "race"}),
        )
        .await;
        act(
            &moderator,
            json!({"action": "restore_post", "post_id": post_id, "reason": "race"}),
        )
        .await;
    });
    for answer in &likes {
        assert!(matches!(answer.status, 200 | 404 | 503), "{}", answer.body);
    }
    let (items, counter) = like_truth(stack, &post_id).await;
    assert_eq!(counter as usize, items, "the like counter drifted from the like items");
    let liked = likes.iter().filter(|a| a.status == 200).count();
    if likes.iter().all(|a| a.status != 503) {
        assert_eq!(items, liked, "every like that answered 200 is counted, no other");
    }
}

#[tokio::test]
async fn a_suspended_user_reads_but_cannot_write_until_lifted() {
    let stack = shared_stack().await;
    let moderator = stack.moderator("mod");
    let troll = stack.user("troll");
    let other = stack.user("other");
    let own = troll.create_post("before the suspension").await;
    let target = other.create_post("a post to reply to").await;
    let target_id = target["id"].as_str().unwrap();
    let own_id = own["id"].as_str().unwrap();

    let until = (chrono::Utc::now() + chrono::Duration::days(7)).to_rfc3339();
    let entry = act(
        &moderator,
        json!({"action": "suspend_user", "user_id": troll.user_id, "until": until, "reason": "flooding"}),
    )
    .await;
    assert_eq!(entry["user_id"], troll.user_id.as_str());
    let until_stored = entry["until"].as_str().unwrap().to_string();

    // Every write is refused with when it may write again; nothing is written.
    let refusals = [
        troll.post("/api/forum/posts/", json!({"content": "let me in"})).await,
        troll.post(&format!("{}like/", post_path(target_id)), json!(null)).await,
        troll
            .post(&comments_path(target_id), json!({"content": "hello?"}))
            .await,
        troll.patch(&post_path(own_id), json!({"content": "edited"})).await,
        troll
            .post(
                "/api/forum/upload/presign/",
                json!({"content_type": "image/png", "content_length": 1000}),
            )
            .await,
        // Refused before its decode, which is what an upload costs: a file that does not
        // decode answers 403, not 400 (it decoded first, and a suspended uploader could make
        // the function decode without end).
        crate::media::upload(
            &troll,
            forum_testkit::images::jpeg_with_undefined_tables(&forum_testkit::images::photo_jpeg(64, 64)),
            "bad.jpg",
        )
        .await,
    ];
    for refused in &refusals {
        refused.assert_error(403, "suspended");
        assert_eq!(
            refused.body["error"]["until"],
            until_stored.as_str(),
            "{}",
            refused.body
        );
    }
    let (count, seen) = comment_truth(stack, &other, target_id).await;
    assert_eq!((count, seen), (0, 0));
    // Reads stay open.
    assert_eq!(troll.get(&post_path(target_id)).await.status, 200);
    assert_eq!(troll.get("/api/forum/posts/").await.status, 200);
    // Others write as before.
    assert_eq!(
        other
            .post(&comments_path(target_id), json!({"content": "fine"}))
            .await
            .status,
        201
    );

    // Lifting it is logged, and writes work again at once.
    let lifted = act(
        &moderator,
        json!({"action": "lift_suspension", "user_id": troll.user_id, "reason": "appeal"}),
    )
    .await;
    assert_eq!(lifted["action"], "lift_suspension");
    assert_eq!(
        troll
            .post(&comments_path(target_id), json!({"content": "sorry"}))
            .await
            .status,
        201
    );
    moderator
        .post(
            ACTIONS,
            json!({"action": "lift_suspension", "user_id": troll.user_id, "reason": "again"}),
        )
        .await
        .assert_error(409, "not_suspended");

    // A suspended moderator moderates nothing, their own suspension least of all; and no
    // moderator suspends or lifts themself.
    let second = stack.moderator("second_mod");
    let until = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    act(
        &moderator,
        json!({"action": "suspend_user", "user_id": second.user_id, "until": until, "reason": "rogue"}),
    )
    .await;
    for body in [
        json!({"action": "lift_suspension", "user_id": second.user_id, "reason": "mine"}),
        json!({"action": "suspend_user", "user_id": moderator.user_id, "until": until, "reason": "revenge"}),
        json!({"action": "remove_post", "post_id": target_id, "reason": "rogue"}),
    ] {
        second.post(ACTIONS, body).await.assert_error(403, "suspended");
    }
    moderator
        .post(
            ACTIONS,
            json!({"action": "suspend_user", "user_id": moderator.user_id, "until": until, "reason": "x"}),
        )
        .await
        .assert_error(400, "invalid_action");
    act(
        &moderator,
        json!({"action": "lift_suspension", "user_id": second.user_id, "reason": "cleared"}),
    )
    .await;
    // A suspension that is over refuses nothing (the check compares its end with now).
    let log = moderator.get(&format!("{ACTIONS}?limit=100")).await;
    let ids: Vec<&str> = log.body["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["id"].as_str())
        .collect();
    assert!(ids.contains(&entry["id"].as_str().unwrap()) && ids.contains(&lifted["id"].as_str().unwrap()));
}

const QUEUE: &str = "/api/forum/moderation/reports/";

fn report_post_path(post_id: &str) -> String {
    format!("/api/forum/posts/{post_id}/report/")
}

/// The queue's entries as (target id, status, report count), in order.
async fn queue(moderator: &Client) -> Vec<(String, String, u64)> {
    let path = format!("{QUEUE}?limit=100");
    let (page, _) = until_answered(|| moderator.get(&path)).await;
    assert_eq!(page.status, 200, "{}", page.body);
    page.body["reports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let target = &e["target"];
            let id = target["comment_id"].as_str().or(target["post_id"].as_str()).unwrap();
            (
                id.to_string(),
                e["status"].as_str().unwrap().to_string(),
                e["report_count"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn reports_count_once_per_user_queue_open_first_and_close_with_the_removal() {
    let stack = isolated_stack().await;
    let alice = stack.user("alice");
    let moderator = stack.moderator("mod");
    let reporters: Vec<Client> = (0..4).map(|i| stack.user(&format!("r{i}"))).collect();
    let p1 = alice.create_post("first reported").await;
    let p2 = alice.create_post("reported later").await;
    let (p1, p2) = (p1["id"].as_str().unwrap(), p2["id"].as_str().unwrap());
    let c1 = alice.post(&comments_path(p2), json!({"content": "a comment"})).await;
    let c1 = c1.body["id"].as_str().unwrap().to_string();
    let report_c1 = format!("{}{c1}/report/", comments_path(p2));

    let first = reporters[0]
        .post(
            &report_post_path(p1),
            json!({"reason": "spam", "note": "same link everywhere"}),
        )
        .await;
    assert_eq!(first.status, 201, "{}", first.body);
    assert_eq!(first.body["target"], json!({"type": "post", "post_id": p1}));
    assert_eq!(
        reporters[1]
            .post(&report_post_path(p1), json!({"reason": "hate"}))
            .await
            .status,
        201
    );
    // A repeat, even with another reason, changes nothing and answers as the first did.
    let repeat = reporters[0]
        .post(&report_post_path(p1), json!({"reason": "violence"}))
        .await;
    assert_eq!((repeat.status, &repeat.body), (201, &first.body));
    // Bad reports: clear errors, nothing counted. One's own post or comment is no report (its
    // author may delete it; reported and deleted, it left an open entry in the queue).
    alice
        .post(&report_post_path(p2), json!({"reason": "spam"}))
        .await
        .assert_error(400, "invalid_request");
    alice
        .post(&report_c1, json!({"reason": "spam"}))
        .await
        .assert_error(400, "invalid_request");
    reporters[2]
        .post(&report_c1, json!({"reason": "other"}))
        .await
        .assert_error(400, "content_required");
    reporters[2]
        .post(&report_c1, json!({"reason": "boring"}))
        .await
        .assert_error(400, "invalid_reason");
    reporters[2]
        .post(&report_c1, json!({"reason": "spam", "extra": 1}))
        .await
        .assert_error(400, "invalid_json");
    reporters[2]
        .post(
            &report_post_path("01JDQ8Z6Y0X9W8V7T6S5R4Q3P2"),
            json!({"reason": "spam"}),
        )
        .await
        .assert_error(404, "not_found");
    reporters[2]
        .post(&format!("{}{c1}/report/", comments_path(p1)), json!({"reason": "spam"}))
        .await
        .assert_error(404, "not_found");
    let comment_report = reporters[2]
        .post(&report_c1, json!({"reason": "other", "note": "off-topic advert"}))
        .await;
    assert_eq!(comment_report.status, 201, "{}", comment_report.body);
    assert_eq!(
        reporters[0]
            .post(&report_post_path(p2), json!({"reason": "spam"}))
            .await
            .status,
        201
    );

    // Only moderators read the queue.
    reporters[0].get(QUEUE).await.assert_error(403, "forbidden");
    let page = moderator.get(QUEUE).await;
    let entry = &page.body["reports"][0];
    assert_eq!(entry["reasons"], json!({"spam": 1, "hate": 1}));
    assert_eq!(entry["post"]["content"], "first reported");
    assert!(entry["comment"].is_null());
    assert_eq!(page.body["reports"][1]["comment"]["content"], "a comment");
    let open = |id: &str, n| (id.to_string(), "open".to_string(), n);
    let resolved = |id: &str, n| (id.to_string(), "resolved".to_string(), n);
    assert_eq!(queue(&moderator).await, vec![open(p1, 2), open(&c1, 1), open(p2, 1)]);

    // Removing the target resolves its entry in the same write.
    act(
        &moderator,
        json!({"action": "remove_post", "post_id": p1, "reason": "spam"}),
    )
    .await;
    assert_eq!(
        queue(&moderator).await,
        vec![open(&c1, 1), open(p2, 1), resolved(p1, 2)]
    );
    let page = moderator.get(QUEUE).await;
    let removed = &page.body["reports"][2];
    assert_eq!(
        (removed["outcome"].as_str(), removed["resolved_by"].as_str()),
        (Some("removed"), Some(moderator.user_id.as_str()))
    );
    assert!(
        removed["post"]["removed"].is_object(),
        "moderators see the target marked"
    );
    // A removed target cannot be reported.
    reporters[3]
        .post(&report_post_path(p1), json!({"reason": "spam"}))
        .await
        .assert_error(404, "not_found");

    // Resolving by hand, once; a new report reopens it.
    let resolve =
        json!({"action": "resolve_reports", "post_id": p2, "comment_id": c1, "outcome": "dismissed", "reason": "fine"});
    let entry = act(&moderator, resolve.clone()).await;
    assert_eq!(entry["outcome"], "dismissed");
    moderator
        .post(ACTIONS, resolve)
        .await
        .assert_error(409, "no_open_reports");
    moderator
        .post(
            ACTIONS,
            json!({"action": "resolve_reports", "post_id": p2, "outcome": "removed", "reason": "x"}),
        )
        .await
        .assert_error(400, "invalid_action");
    assert_eq!(
        queue(&moderator).await,
        vec![open(p2, 1), resolved(p1, 2), resolved(&c1, 1)]
    );
    assert_eq!(
        reporters[3].post(&report_c1, json!({"reason": "spam"})).await.status,
        201
    );
    assert_eq!(
        queue(&moderator).await,
        vec![open(p2, 1), open(&c1, 2), resolved(p1, 2)]
    );
}

#[tokio::test]
async fn report_floods_count_once_and_reports_racing_a_removal_are_all_resolved() {
    let stack = isolated_stack().await;
    let alice = stack.user("alice");
    let moderator = stack.moderator("mod");
    let post = alice.create_post("a target").await;
    let post_id = post["id"].as_str().unwrap();
    let report_path = report_post_path(post_id);

    // One user, fifty concurrent reports: one report, counted once.
    let flooder = stack.user("flooder");
    let answers = join_all((0..50).map(|_| flooder.post(&report_path, json!({"reason": "spam"})))).await;
    let bodies: Vec<&Value> = answers.iter().filter(|a| a.status == 201).map(|a| &a.body).collect();
    for answer in &answers {
        assert!(matches!(answer.status, 201 | 503), "{}", answer.body);
    }
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "every answer is the one report"
    );
    assert_eq!(queue(&moderator).await, vec![(post_id.to_string(), "open".into(), 1)]);

    // Twenty users report while a moderator removes it: every report that landed is resolved
    // with it, none after it is counted.
    // Each report keyed and sent again after a 503, so every answer says whether it landed
    // (a 503 alone cannot: the deadline may pass after the write committed).
    let users: Vec<Client> = (0..20)
        .map(|i| stack.user(&format!("u{i}")).with_header("idempotency-key", "report"))
        .collect();
    let reports = join_all(users.iter().map(|u| async {
        until_answered(|| u.post(&report_path, json!({"reason": "hate"})))
            .await
            .0
    }));
    let (answers, (removal, unavailable)) = tokio::join!(
        reports,
        until_answered(|| moderator.post(
            ACTIONS,
            json!({"action": "remove_post", "post_id": post_id, "reason": "race"})
        ))
    );
    // Sent again after a 503, the removal may find its own first attempt committed.
    assert!(
        removal.status == 201 || (unavailable > 0 && removal.status == 409),
        "{}",
        removal.body
    );
    let landed = answers.iter().filter(|a| a.status == 201).count() as u64;
    for answer in &answers {
        assert!(matches!(answer.status, 201 | 404), "{}", answer.body);
    }
    assert_eq!(
        queue(&moderator).await,
        vec![(post_id.to_string(), "resolved".into(), landed + 1)],
        "the entry counts exactly the reports that landed, and the removal resolved it"
    );
}
