//! After the load: was every user told the truth? Each check adds the problems it finds; any
//! problem fails the command.
//!
//! - WebSocket: every listener heard each `post.created` (posts acknowledged while it
//!   listened) and each `comment.created` on the viral post exactly once; delivery latency is
//!   measured from the writer's request to the listener's receipt.
//! - Uploads: every upload S3 took became `ready`.
//! - Through the API, once its staleness bound (the read cache's TTL) has passed since the
//!   load: every acknowledged post and comment exists; `like_count` is what the users were
//!   last told about their likes; `comment_count` is the comments listed.
//! - On forum-local, in the table too: every touched post's counters equal its items.
//! - Inboxes: every user who comes back finds each notification the run's writes owe them
//!   exactly once (a comment on their post, a mention once their name was claimed, one like
//!   notification per post someone else still likes), none about their own writes, and an
//!   unread count equal to the unread notifications listed; keyed creates sent twice at once
//!   were answered alike, one of them replayed, and made one item (no comment listed that
//!   nobody was told was made).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use futures::StreamExt;
use serde_json::Value;

use super::listeners::Listeners;
use super::tally::ms;
use super::target::Target;
use super::{Ledger, Run};
use crate::stats::percentile;

pub async fn audit(
    target: &Target,
    run: &Run,
    listeners: &Listeners,
    listening_since: Instant,
    drain: Duration,
    client: &reqwest_tls::Client,
) -> bool {
    let load_ended = Instant::now();
    let deadline = load_ended + drain;
    let ledger = run.ledger().clone();
    let mut problems = Vec::new();
    println!("\n== audit");
    deliveries(run, &ledger, listeners, listening_since, deadline, &mut problems).await;
    uploads(target, &ledger, deadline, client, &mut problems).await;
    // The API's reads may be the read cache's TTL behind the last write (its stated bound).
    tokio::time::sleep_until((load_ended + target.staleness_bound).into()).await;
    through_the_api(target, run, &ledger, client, &mut problems).await;
    inboxes(
        target,
        run,
        &ledger,
        deadline.max(Instant::now() + drain),
        client,
        &mut problems,
    )
    .await;
    retries(&ledger, &mut problems);
    if let Some((_, stack)) = &target.local {
        in_the_table(stack, run, &ledger, &mut problems).await;
    }
    let failed = run.failed_answers.load(std::sync::atomic::Ordering::Relaxed);
    if failed > 0 {
        problems.push(format!(
            "{failed} answers were errors other than 429 (see the tables above)"
        ));
    }
    if problems.is_empty() {
        println!("audit: consistent");
    } else {
        println!("audit: {} problems", problems.len());
        for p in problems.iter().take(30) {
            println!("  {p}");
        }
    }
    problems.is_empty()
}

/// Waits (until `deadline`) for every expected event, then counts what each listener heard.
async fn deliveries(
    run: &Run,
    ledger: &Ledger,
    listeners: &Listeners,
    listening_since: Instant,
    deadline: Instant,
    problems: &mut Vec<String>,
) {
    let posts: BTreeMap<&String, Instant> = ledger
        .posts
        .iter()
        .filter(|(_, sent)| **sent >= listening_since)
        .map(|(id, sent)| (id, *sent))
        .collect();
    let comments: BTreeMap<&String, Instant> = ledger
        .comments
        .iter()
        .filter(|(_, (post, sent))| *post == run.viral && *sent >= listening_since)
        .map(|(id, (_, sent))| (id, *sent))
        .collect();
    let expected: BTreeMap<&String, Instant> = posts.iter().chain(comments.iter()).map(|(k, v)| (*k, *v)).collect();
    let want = expected.len() * listeners.count;
    let heard = |receipts: &[super::listeners::Receipt]| {
        receipts
            .iter()
            .filter(|r| expected.contains_key(&r.id))
            .map(|r| (r.listener, r.id.clone()))
            .collect::<BTreeSet<_>>()
            .len()
    };
    while heard(&listeners.receipts()) < want && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let receipts = listeners.receipts();
    let mut counts: BTreeMap<(usize, &str), usize> = BTreeMap::new();
    let mut latencies = Vec::new();
    let mut unacknowledged = 0;
    for receipt in &receipts {
        match expected.get(&receipt.id) {
            Some(sent) => {
                let n = counts.entry((receipt.listener, receipt.id.as_str())).or_default();
                *n += 1;
                if *n == 1 {
                    latencies.push(receipt.at.saturating_duration_since(*sent));
                }
            }
            None => unacknowledged += 1,
        }
    }
    let once = counts.values().filter(|n| **n == 1).count();
    let duplicated = counts.values().filter(|n| **n > 1).count();
    let lost = want - counts.len();
    latencies.sort_unstable();
    println!(
        "WebSocket: {} listeners, each expecting {} post.created and {} comment.created: {once} of {want} heard exactly once, {lost} lost, {duplicated} duplicated; {unacknowledged} events of writes not acknowledged (or made before listening)",
        listeners.count,
        posts.len(),
        comments.len(),
    );
    println!(
        "delivery latency (write sent -> event heard): p50 {} ms, p95 {} ms, p99 {} ms, max {} ms",
        ms(percentile(&latencies, 50.0)),
        ms(percentile(&latencies, 95.0)),
        ms(percentile(&latencies, 99.0)),
        ms(latencies.last().copied().unwrap_or_default()),
    );
    if lost > 0 {
        let why = listeners.closed();
        problems.push(format!(
            "{lost} events never reached their listener within the drain{}",
            if why.is_empty() {
                " (every socket stayed open: the fan-out dropped or is still behind)".to_string()
            } else {
                format!(": {}", why.join("; "))
            }
        ));
    }
    if duplicated > 0 {
        if redelivering(run) {
            println!(
                "  ({duplicated} repeats: the stream redelivered batches on purpose; live events are at least once)"
            );
        } else {
            problems.push(format!("{duplicated} events were heard more than once by one listener"));
        }
    }
}

async fn get(client: &reqwest_tls::Client, url: &str, token: &str) -> (u16, Value) {
    match client.get(url).bearer_auth(token).send().await {
        Ok(answer) => {
            let status = answer.status().as_u16();
            (status, answer.json().await.unwrap_or(Value::Null))
        }
        Err(_) => (0, Value::Null),
    }
}

/// Every upload S3 took is processed: `ready` before the deadline.
async fn uploads(
    target: &Target,
    ledger: &Ledger,
    deadline: Instant,
    client: &reqwest_tls::Client,
    problems: &mut Vec<String>,
) {
    let mut ready = 0;
    for (id, identity) in &ledger.uploads {
        let url = format!("{}/api/forum/media/{id}/", target.api);
        loop {
            let (status, body) = get(client, &url, target.token(*identity)).await;
            let state = body["status"].as_str().unwrap_or_default().to_string();
            if status == 200 && state == "ready" {
                ready += 1;
                break;
            }
            if state == "rejected" || Instant::now() >= deadline {
                problems.push(format!("upload {id}: {status} {state} {}", body["reason"]));
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    println!(
        "uploads: {ready} of {} presigned uploads processed and ready",
        ledger.uploads.len()
    );
}

/// What one post looks like through the API: its counters and every comment id listed.
async fn read_back(
    client: &reqwest_tls::Client,
    api: &str,
    token: &str,
    post: &str,
) -> Result<(u64, u64, BTreeSet<String>), String> {
    let (status, body) = get(client, &format!("{api}/api/forum/posts/{post}/"), token).await;
    if status != 200 {
        return Err(format!("post {post} was acknowledged but reads {status}"));
    }
    let like_count = body["like_count"].as_u64().unwrap_or(u64::MAX);
    let comment_count = body["comment_count"].as_u64().unwrap_or(u64::MAX);
    let mut listed = BTreeSet::new();
    let mut next = Some(format!("{api}/api/forum/posts/{post}/comments/?limit=100"));
    while let Some(url) = next.take() {
        let (status, page) = get(client, &url, token).await;
        if status != 200 {
            return Err(format!("post {post}'s comments read {status}"));
        }
        for comment in page["comments"].as_array().into_iter().flatten() {
            if let Some(id) = comment["id"].as_str() {
                listed.insert(id.to_string());
            }
        }
        next = page["next_page"].as_str().map(String::from);
    }
    Ok((like_count, comment_count, listed))
}

async fn through_the_api(
    target: &Target,
    run: &Run,
    ledger: &Ledger,
    client: &reqwest_tls::Client,
    problems: &mut Vec<String>,
) {
    let token = run.token(run.tokens.len() - 1);
    let posts: BTreeSet<&String> = ledger.posts.keys().chain([&run.viral]).collect();
    let mut read = futures::stream::iter(
        posts
            .iter()
            .map(|post| async move { (*post, read_back(client, &target.api, token, post).await) }),
    )
    .buffer_unordered(8);
    let mut checked = 0;
    while let Some((post, outcome)) = read.next().await {
        checked += 1;
        let (like_count, comment_count, listed) = match outcome {
            Ok(seen) => seen,
            Err(problem) => {
                problems.push(problem);
                continue;
            }
        };
        // Every like on these posts is a load user's: the count must be what they were told.
        let told = ledger.likes.range((post.clone(), 0)..=(post.clone(), usize::MAX));
        let (mut liked, mut unknown) = (0, 0);
        for (_, state) in told {
            match state {
                Some(true) => liked += 1,
                Some(false) => {}
                None => unknown += 1,
            }
        }
        if like_count < liked || like_count > liked + unknown {
            problems.push(format!(
                "post {post}: like_count {like_count}, but users were told of {liked} likes ({unknown} unanswered toggles)"
            ));
        }
        if comment_count != listed.len() as u64 {
            problems.push(format!(
                "post {post}: comment_count {comment_count}, {} comments listed",
                listed.len()
            ));
        }
        for (id, (on, _)) in &ledger.comments {
            if on == post && !listed.contains(id) {
                problems.push(format!("comment {id} on {post} was acknowledged but is not listed"));
            }
        }
        // Every comment request was answered (none unanswered below): a listed comment nobody
        // was told of is a duplicate (a retry that wrote twice).
        let unanswered = run.unanswered_comments.load(std::sync::atomic::Ordering::Relaxed);
        let unknown: Vec<&String> = listed.iter().filter(|id| !ledger.comments.contains_key(*id)).collect();
        if unanswered == 0 && !unknown.is_empty() {
            problems.push(format!(
                "post {post}: {} comments listed that no answer acknowledged (e.g. {})",
                unknown.len(),
                unknown[0]
            ));
        }
    }
    println!(
        "through the API: {checked} posts, {} acknowledged comments, {} like states read back",
        ledger.comments.len(),
        ledger.likes.len()
    );
}

/// forum-local only: each touched post's counters equal its items in the table.
async fn in_the_table(stack: &forum_local::Stack, run: &Run, ledger: &Ledger, problems: &mut Vec<String>) {
    let posts: BTreeSet<&String> = ledger.posts.keys().chain([&run.viral]).collect();
    for post in &posts {
        match counted(stack, post).await {
            Ok(Some((like_count, comment_count, likes, comments))) => {
                if like_count != likes {
                    problems.push(format!(
                        "table: post {post}: like_count {like_count}, {likes} like items"
                    ));
                }
                if comment_count != comments {
                    problems.push(format!(
                        "table: post {post}: comment_count {comment_count}, {comments} comment items"
                    ));
                }
            }
            Ok(None) => problems.push(format!("table: post {post} is missing")),
            Err(e) => problems.push(format!("table: post {post} could not be read: {e}")),
        }
    }
    println!("in the table: {} posts' counters against their items", posts.len());
}

/// A post's counters and its like and comment items, read consistently from the table.
async fn counted(stack: &forum_local::Stack, post_id: &str) -> Result<Option<(u64, u64, u64, u64)>, String> {
    let mut counters = None;
    let (mut likes, mut comments) = (0, 0);
    let mut start = None;
    loop {
        let out = stack
            .dynamodb
            .query()
            .table_name(stack.app.table.name())
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", AttributeValue::S(format!("POST#{post_id}")))
            .consistent_read(true)
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .map_err(|e| format!("{e:?}"))?;
        for item in out.items() {
            let sk = item
                .get("sk")
                .and_then(|v| v.as_s().ok())
                .map(String::as_str)
                .unwrap_or_default();
            let n = |name: &str| {
                item.get(name)
                    .and_then(|v| v.as_n().ok())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0)
            };
            if sk == "POST" {
                counters = Some((n("like_count"), n("comment_count")));
            } else if sk.starts_with("LIKE#") {
                likes += 1;
            } else if sk.starts_with("COMMENT#") {
                comments += 1;
            }
        }
        match out.last_evaluated_key() {
            Some(key) => start = Some(key.clone()),
            None => break,
        }
    }
    Ok(counters.map(|(l, c)| (l, c, likes, comments)))
}

fn redelivering(run: &Run) -> bool {
    run.redelivery.is_some()
}

/// The keyed creates sent twice at once: answered alike, one replayed.
fn retries(ledger: &Ledger, problems: &mut Vec<String>) {
    println!(
        "retries: {} keyed creates sent twice at once, {} answered unlike their twin",
        ledger.retried,
        ledger.retry_problems.len()
    );
    problems.extend(ledger.retry_problems.iter().take(10).cloned());
}

/// One notification as the audit reads it.
struct Seen {
    kind: String,
    post_id: String,
    comment_id: Option<String>,
    actor: String,
    read: bool,
}

/// Every notification in one user's inbox (every page), with the page's unread count.
async fn inbox_of(client: &reqwest_tls::Client, api: &str, token: &str) -> Result<(Vec<Seen>, u64), String> {
    let mut all = Vec::new();
    let mut unread = None;
    let mut next = Some(format!("{api}/api/forum/notifications/?limit=100"));
    while let Some(url) = next.take() {
        let (status, page) = get(client, &url, token).await;
        if status != 200 {
            return Err(format!("notifications read {status}: {page}"));
        }
        unread.get_or_insert(page["unread_count"].as_u64().unwrap_or(u64::MAX));
        for n in page["notifications"].as_array().into_iter().flatten() {
            all.push(Seen {
                kind: n["kind"].as_str().unwrap_or_default().to_string(),
                post_id: n["post_id"].as_str().unwrap_or_default().to_string(),
                comment_id: n["comment_id"].as_str().map(str::to_string),
                actor: n["actor"]["id"].as_str().unwrap_or_default().to_string(),
                read: n["read"].as_bool().unwrap_or(false),
            });
        }
        next = page["next_page"].as_str().map(String::from);
    }
    Ok((all, unread.unwrap_or(0)))
}

/// What the run's writes owe each identity's inbox: (identity, comment id) pairs that must be
/// there, and (identity, post id) like groups.
struct Owed {
    comments: BTreeSet<(usize, String)>,
    likes: BTreeSet<(usize, String)>,
}

fn owed(ledger: &Ledger) -> Owed {
    let mut comments = BTreeSet::new();
    for (id, (post, sent)) in &ledger.comments {
        let Some((writer, named)) = ledger.comment_meta.get(id) else {
            continue;
        };
        if let Some(author) = ledger.authors.get(post)
            && author != writer
        {
            comments.insert((*author, id.clone()));
        }
        for who in named {
            // Named after their name was claimed: it resolves.
            if who != writer && ledger.names.get(who).is_some_and(|(_, claimed, _)| claimed < sent) {
                comments.insert((*who, id.clone()));
            }
        }
    }
    let mut likes = BTreeSet::new();
    for ((post, liker), state) in &ledger.likes {
        if let Some(author) = ledger.authors.get(post)
            && author != liker
            && *state == Some(true)
        {
            likes.insert((*author, post.clone()));
        }
    }
    Owed { comments, likes }
}

async fn inboxes(
    target: &Target,
    run: &Run,
    ledger: &Ledger,
    deadline: Instant,
    client: &reqwest_tls::Client,
    problems: &mut Vec<String>,
) {
    let owed = owed(ledger);
    let identities: BTreeSet<usize> = owed
        .comments
        .iter()
        .map(|(who, _)| *who)
        .chain(owed.likes.iter().map(|(who, _)| *who))
        .chain(ledger.names.keys().copied())
        .collect();
    if identities.is_empty() {
        return;
    }
    // identity -> user id, from the notifications' actors and the ledger's names: a comment's
    // writer is known by identity, a notification's actor by user id.
    let user_ids: BTreeMap<usize, String> = ledger
        .names
        .iter()
        .map(|(identity, (_, _, user_id))| (*identity, user_id.clone()))
        .collect();
    // The stream writes notifications after the load: wait until every owed one is there.
    let mut read: BTreeMap<usize, (Vec<Seen>, u64)> = BTreeMap::new();
    loop {
        read.clear();
        let mut failures = Vec::new();
        for identity in &identities {
            match inbox_of(client, &target.api, run.token(*identity)).await {
                Ok(inbox) => {
                    read.insert(*identity, inbox);
                }
                Err(e) => failures.push(format!("identity {identity}: {e}")),
            }
        }
        let missing = missing(&owed, &read);
        if (missing.is_empty() && failures.is_empty()) || Instant::now() >= deadline {
            problems.extend(failures);
            for (identity, what) in missing.iter().take(10) {
                problems.push(format!("identity {identity}'s inbox lacks {what}"));
            }
            if missing.len() > 10 {
                problems.push(format!("... {} owed notifications missing in all", missing.len()));
            }
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Anything still on its way would change the counts: let the stream settle.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut total = 0;
    let mut by_kind: BTreeMap<String, usize> = BTreeMap::new();
    for (identity, (seen, unread)) in &read {
        total += seen.len();
        let me = user_ids.get(identity).cloned().unwrap_or_default();
        let mut sources: BTreeMap<String, usize> = BTreeMap::new();
        for n in seen {
            *by_kind.entry(n.kind.clone()).or_default() += 1;
            let source = match &n.comment_id {
                Some(c) => format!("comment {c}"),
                None => format!("{} on post {}", n.kind, n.post_id),
            };
            *sources.entry(source).or_default() += 1;
            if n.actor == me && n.kind != "like" {
                problems.push(format!("identity {identity} was notified of their own {}", n.kind));
            }
            if let Some(c) = &n.comment_id
                && let Some((writer, _)) = ledger.comment_meta.get(c)
                && writer == identity
            {
                problems.push(format!("identity {identity} was notified of their own comment {c}"));
            }
        }
        for (source, n) in sources.iter().filter(|(_, n)| **n > 1) {
            problems.push(format!("identity {identity} was told of {source} {n} times"));
        }
        // The count is of what is listed unread, and the count route agrees.
        let listed_unread = seen.iter().filter(|n| !n.read).count() as u64;
        let (status, counted) = get(
            client,
            &format!("{}/api/forum/notifications/unread_count/", target.api),
            run.token(*identity),
        )
        .await;
        let counted = counted["unread_count"].as_u64();
        if *unread != listed_unread || status != 200 || counted != Some(listed_unread) {
            problems.push(format!(
                "identity {identity}: unread_count {unread} (route: {status} {counted:?}), {listed_unread} listed unread"
            ));
        }
    }
    let kinds: Vec<String> = by_kind.iter().map(|(k, n)| format!("{n} {k}")).collect();
    println!(
        "inboxes: {} users, {total} notifications ({}); {} owed by comments and mentions, {} like groups owed; {} inbox reads marked read during the load",
        read.len(),
        kinds.join(", "),
        owed.comments.len(),
        owed.likes.len(),
        ledger.inbox_reads,
    );
}

/// The owed notifications an inbox does not hold (once).
fn missing(owed: &Owed, read: &BTreeMap<usize, (Vec<Seen>, u64)>) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (identity, comment) in &owed.comments {
        let held = read
            .get(identity)
            .is_some_and(|(seen, _)| seen.iter().any(|n| n.comment_id.as_deref() == Some(comment.as_str())));
        if !held {
            out.push((*identity, format!("a notification of comment {comment}")));
        }
    }
    for (identity, post) in &owed.likes {
        let held = read
            .get(identity)
            .is_some_and(|(seen, _)| seen.iter().any(|n| n.kind == "like" && n.post_id == *post));
        if !held {
            out.push((*identity, format!("the like notification of post {post}")));
        }
    }
    out
}
