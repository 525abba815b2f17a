//! The users' transactions. Two scenarios:
//! - mixed: feed pages following `next_page`, post reads, like toggles, comments, new posts,
//!   and posts with an image uploaded through a presigned PUT;
//! - viral: most of what users do is on one post: read it, like it, read and add comments;
//! - front: everyone reloads the front page and opens the viral post (reads only);
//! - inbox: everyone writes a post, then comments on others' posts naming someone, likes and
//!   unlikes them, reads their notifications and marks them read, and now and then sends a
//!   keyed create twice at once (a retry racing its original after a timeout).
//!
//! Every acknowledged write goes into the run's ledger for the audit.

use std::time::{Duration, Instant};

use goose::prelude::*;
use serde_json::{Value, json};

use super::run;

/// What a simulated user keeps between transactions.
#[derive(Clone)]
struct Session {
    identity: usize,
    token: String,
    /// The feed's `next_page`, followed up to `MAX_FEED_DEPTH` pages, then back to the top.
    feed_next: Option<String>,
    feed_depth: u8,
}

const MAX_FEED_DEPTH: u8 = 5;

pub fn mixed() -> Scenario {
    scenario!("mixed")
        .register_transaction(transaction!(sign_in).set_on_start())
        .register_transaction(weighted(transaction!(read_feed), 6))
        .register_transaction(weighted(transaction!(read_post), 4))
        .register_transaction(weighted(transaction!(toggle_like), 3))
        .register_transaction(weighted(transaction!(comment), 2))
        .register_transaction(weighted(transaction!(new_post), 1))
        .register_transaction(weighted(transaction!(new_post_with_image), 1))
}

pub fn viral() -> Scenario {
    scenario!("viral")
        .register_transaction(transaction!(sign_in).set_on_start())
        .register_transaction(weighted(transaction!(read_viral), 8))
        .register_transaction(weighted(transaction!(like_viral), 4))
        .register_transaction(weighted(transaction!(read_viral_comments), 3))
        .register_transaction(weighted(transaction!(comment_viral), 2))
        .register_transaction(weighted(transaction!(read_feed), 1))
}

/// Everyone reloads the front page (the newest 20 posts) and opens the viral post: the reads
/// that are the same for everyone, where the read cache does its work.
pub fn front() -> Scenario {
    scenario!("front")
        .register_transaction(transaction!(sign_in).set_on_start())
        .register_transaction(weighted(transaction!(read_front_page), 4))
        .register_transaction(weighted(transaction!(read_viral), 1))
}

pub fn inbox() -> Scenario {
    scenario!("inbox")
        .register_transaction(transaction!(sign_in).set_on_start())
        .register_transaction(transaction!(own_post).set_on_start())
        .register_transaction(weighted(transaction!(comment_naming_someone), 4))
        .register_transaction(weighted(transaction!(like_put), 3))
        .register_transaction(weighted(transaction!(unlike_delete), 1))
        .register_transaction(weighted(transaction!(read_and_mark_inbox), 2))
        .register_transaction(weighted(transaction!(retried_keyed_comment), 1))
        .register_transaction(weighted(transaction!(retried_keyed_post), 1))
}

fn weighted(transaction: Transaction, weight: usize) -> Transaction {
    match transaction.clone().set_weight(weight) {
        Ok(t) => t,
        Err(_) => transaction,
    }
}

/// An answer: status (0 when none came), JSON body, and when the request was sent.
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub sent: Instant,
}

enum Payload {
    Empty,
    Json(Value),
    /// JSON with an `Idempotency-Key`.
    Keyed(Value, String),
    /// Bytes for a presigned PUT, with the headers the presign answer listed (no token).
    Upload(Vec<u8>, Vec<(String, String)>),
}

fn session(user: &GooseUser) -> Result<Session, Box<TransactionError>> {
    user.get_session_data::<Session>()
        .cloned()
        .ok_or_else(|| Box::new(TransactionError::Custom("signed out".into())))
}

/// Sends one request through goose (so it lands in goose's report) and tallies its answer.
async fn send(
    user: &mut GooseUser,
    method: GooseMethod,
    path: &str,
    name: &'static str,
    payload: Payload,
) -> Result<Answer, Box<TransactionError>> {
    let me = session(user)?;
    let mut builder = user.get_request_builder(&method, path)?;
    builder = match payload {
        Payload::Empty => builder.bearer_auth(&me.token),
        Payload::Json(body) => builder
            .bearer_auth(&me.token)
            .header("content-type", "application/json")
            .body(body.to_string()),
        Payload::Keyed(body, key) => builder
            .bearer_auth(&me.token)
            .header("content-type", "application/json")
            .header("idempotency-key", key)
            .body(body.to_string()),
        Payload::Upload(bytes, headers) => {
            for (header, value) in headers {
                // The body sets its own length.
                if !header.eq_ignore_ascii_case("content-length") {
                    builder = builder.header(header, value);
                }
            }
            builder.body(bytes)
        }
    };
    let request = GooseRequest::builder()
        .method(method)
        .path(path)
        .name(name)
        .set_request_builder(builder)
        .build();
    let answer = user.request(request).await?;
    // Timed from goose's send (after any throttle wait of the open model), headers to body.
    let answered = Instant::now();
    let sent = answered
        .checked_sub(Duration::from_millis(answer.request.response_time))
        .unwrap_or(answered);
    let (status, body) = match answer.response {
        Ok(response) => {
            let status = response.status().as_u16();
            let text = response.text().await.unwrap_or_default();
            (status, serde_json::from_str(&text).unwrap_or(Value::Null))
        }
        Err(_) => (0, Value::Null),
    };
    let code = body["error"]["code"]
        .as_str()
        .unwrap_or(if status == 0 { "no_answer" } else { "" });
    if let Ok(mut tally) = run().tally.lock() {
        tally.record(name, status, code, sent.elapsed());
    }
    Ok(Answer { status, body, sent })
}

async fn sign_in(user: &mut GooseUser) -> TransactionResult {
    let identity = user.weighted_users_index;
    let token = run().token(identity).to_string();
    user.set_session_data(Session {
        identity,
        token,
        feed_next: None,
        feed_depth: 0,
    });
    Ok(())
}

async fn read_feed(user: &mut GooseUser) -> TransactionResult {
    let me = session(user)?;
    let (path, name) = match &me.feed_next {
        Some(next) if me.feed_depth < MAX_FEED_DEPTH => (next.clone(), "feed next page"),
        _ => ("/api/forum/posts/?limit=20".to_string(), "feed first page"),
    };
    let answer = send(user, GooseMethod::Get, &path, name, Payload::Empty).await?;
    if let Some(session) = user.get_session_data_mut::<Session>() {
        match answer.body["next_page"].as_str() {
            Some(next) if answer.status == 200 => {
                session.feed_next = Some(next.to_string());
                session.feed_depth = if name == "feed first page" {
                    1
                } else {
                    session.feed_depth + 1
                };
            }
            _ => session.feed_next = None,
        }
    }
    Ok(())
}

async fn read_front_page(user: &mut GooseUser) -> TransactionResult {
    send(
        user,
        GooseMethod::Get,
        "/api/forum/posts/?limit=20",
        "front page",
        Payload::Empty,
    )
    .await?;
    Ok(())
}

async fn read_post(user: &mut GooseUser) -> TransactionResult {
    if let Some(id) = run().random_post() {
        send(
            user,
            GooseMethod::Get,
            &format!("/api/forum/posts/{id}/"),
            "read post",
            Payload::Empty,
        )
        .await?;
    }
    Ok(())
}

async fn read_viral(user: &mut GooseUser) -> TransactionResult {
    let id = &run().viral;
    send(
        user,
        GooseMethod::Get,
        &format!("/api/forum/posts/{id}/"),
        "read viral post",
        Payload::Empty,
    )
    .await?;
    Ok(())
}

async fn read_viral_comments(user: &mut GooseUser) -> TransactionResult {
    let id = &run().viral;
    let path = format!("/api/forum/posts/{id}/comments/?limit=20");
    send(user, GooseMethod::Get, &path, "viral comments", Payload::Empty).await?;
    Ok(())
}

/// A comment request that got no answer may still have committed: the audit then cannot call
/// an unacknowledged comment a duplicate.
fn unanswered(answer: &Answer) {
    if answer.status == 0 {
        run()
            .unanswered_comments
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// An explicit like (`PUT`) or unlike (`DELETE`): the state asked is the state told.
async fn set_like(user: &mut GooseUser, liked: bool) -> TransactionResult {
    let Some(post) = run().random_post() else { return Ok(()) };
    let identity = session(user)?.identity;
    let path = format!("/api/forum/posts/{post}/like/");
    let (method, name) = if liked {
        (GooseMethod::Put, "like (PUT)")
    } else {
        (GooseMethod::Delete, "unlike (DELETE)")
    };
    let answer = send(user, method, &path, name, Payload::Empty).await?;
    run().record_like(post, identity, &answer);
    Ok(())
}

async fn like_put(user: &mut GooseUser) -> TransactionResult {
    set_like(user, true).await
}

async fn unlike_delete(user: &mut GooseUser) -> TransactionResult {
    set_like(user, false).await
}

/// Each user's own post, so the others have posts to comment on and like.
async fn own_post(user: &mut GooseUser) -> TransactionResult {
    create_post(user, json!({"content": "My post in the inbox run"}), "new post").await
}

/// A comment on someone's post naming another user (`@name`), with an `Idempotency-Key`.
async fn comment_naming_someone(user: &mut GooseUser) -> TransactionResult {
    let identity = session(user)?.identity;
    let Some(post) = run().random_post() else { return Ok(()) };
    let named = run().someone_named(identity);
    let content = match &named {
        Some((_, name)) => format!("@{name} what do you make of this?"),
        None => "Nobody to name yet".to_string(),
    };
    let path = format!("/api/forum/posts/{post}/comments/");
    let key = ulid::Ulid::new().to_string();
    let answer = send(
        user,
        GooseMethod::Post,
        &path,
        "keyed comment naming someone",
        Payload::Keyed(json!({ "content": content }), key),
    )
    .await?;
    unanswered(&answer);
    if answer.status == 201
        && let Some(id) = answer.body["id"].as_str()
    {
        run().record_name(identity, &answer.body);
        let names = named.into_iter().map(|(who, _)| who).collect();
        run().record_comment(id, post, answer.sent, identity, names);
    }
    Ok(())
}

/// Reads the first page of notifications and marks read up to the newest: a user coming back.
async fn read_and_mark_inbox(user: &mut GooseUser) -> TransactionResult {
    let page = send(
        user,
        GooseMethod::Get,
        "/api/forum/notifications/?limit=20",
        "notifications page",
        Payload::Empty,
    )
    .await?;
    let newest = page.body["notifications"][0]["id"].as_str().map(str::to_string);
    if let Some(newest) = newest {
        send(
            user,
            GooseMethod::Post,
            "/api/forum/notifications/read/",
            "mark read",
            Payload::Json(json!({ "up_to": newest })),
        )
        .await?;
    }
    run().ledger().inbox_reads += 1;
    Ok(())
}

/// One keyed request sent twice at once, as a client retrying after a timeout while its
/// first attempt is still on its way: both answers must be the same, one of them replayed.
async fn send_twice(token: &str, path: &str, body: &Value, name: &'static str) -> Option<(u16, Value, Instant)> {
    let key = ulid::Ulid::new().to_string();
    let url = format!("{}{path}", run().api);
    let one = || {
        let request = run()
            .client
            .post(&url)
            .bearer_auth(token)
            .header("idempotency-key", &key)
            .json(body);
        async move {
            let sent = Instant::now();
            let outcome = request.send().await;
            let elapsed = sent.elapsed();
            match outcome {
                Ok(answer) => {
                    let status = answer.status().as_u16();
                    let replayed = answer
                        .headers()
                        .get("idempotent-replayed")
                        .is_some_and(|v| v.as_bytes() == b"true");
                    let body: Value = answer.json().await.unwrap_or(Value::Null);
                    (status, body, replayed, sent, elapsed)
                }
                Err(_) => (0, Value::Null, false, sent, elapsed),
            }
        }
    };
    let (first, second) = tokio::join!(one(), one());
    if path.contains("/comments/") && (first.0 == 0 || second.0 == 0) {
        run()
            .unanswered_comments
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    for (status, body, _, _, elapsed) in [&first, &second] {
        let code = body["error"]["code"]
            .as_str()
            .unwrap_or(if *status == 0 { "no_answer" } else { "" });
        if let Ok(mut tally) = run().tally.lock() {
            tally.record(name, *status, code, *elapsed);
        }
    }
    let mut ledger = run().ledger();
    ledger.retried += 1;
    let problem = if (first.0, &first.1) != (second.0, &second.1) {
        Some(format!(
            "{name}: a retry racing its original was answered differently: {} {} / {} {}",
            first.0, first.1, second.0, second.1
        ))
    } else if first.0 == 201 && u8::from(first.2) + u8::from(second.2) != 1 {
        Some(format!(
            "{name}: of two answers to one key, {} said Idempotent-Replayed (one should)",
            u8::from(first.2) + u8::from(second.2)
        ))
    } else {
        None
    };
    ledger.retry_problems.extend(problem);
    drop(ledger);
    (first.0 == 201).then(|| (first.0, first.1, first.3.min(second.3)))
}

async fn retried_keyed_comment(user: &mut GooseUser) -> TransactionResult {
    let me = session(user)?;
    let Some(post) = run().random_post() else { return Ok(()) };
    let path = format!("/api/forum/posts/{post}/comments/");
    let body = json!({"content": "Sent once, retried at once"});
    if let Some((_, answer, sent)) = send_twice(&me.token, &path, &body, "keyed comment, retried at once").await
        && let Some(id) = answer["id"].as_str()
    {
        run().record_comment(id, post, sent, me.identity, Vec::new());
    }
    Ok(())
}

async fn retried_keyed_post(user: &mut GooseUser) -> TransactionResult {
    let me = session(user)?;
    let body = json!({"content": "A post whose request was retried at once"});
    if let Some((_, answer, sent)) =
        send_twice(&me.token, "/api/forum/posts/", &body, "keyed post, retried at once").await
        && let Some(id) = answer["id"].as_str()
    {
        run().record_post(id, sent, me.identity);
    }
    Ok(())
}

async fn like(user: &mut GooseUser, post: String, name: &'static str) -> TransactionResult {
    let identity = session(user)?.identity;
    let path = format!("/api/forum/posts/{post}/like/");
    let answer = send(user, GooseMethod::Post, &path, name, Payload::Empty).await?;
    run().record_like(post, identity, &answer);
    Ok(())
}

async fn toggle_like(user: &mut GooseUser) -> TransactionResult {
    match run().random_post() {
        Some(post) => like(user, post, "like toggle").await,
        None => Ok(()),
    }
}

async fn like_viral(user: &mut GooseUser) -> TransactionResult {
    like(user, run().viral.clone(), "viral like toggle").await
}

async fn add_comment(user: &mut GooseUser, post: String, name: &'static str) -> TransactionResult {
    let path = format!("/api/forum/posts/{post}/comments/");
    let body = json!({"content": "A comment from the load run"});
    let identity = session(user)?.identity;
    let answer = send(user, GooseMethod::Post, &path, name, Payload::Json(body)).await?;
    unanswered(&answer);
    if answer.status == 201
        && let Some(id) = answer.body["id"].as_str()
    {
        run().record_name(identity, &answer.body);
        run().record_comment(id, post, answer.sent, identity, Vec::new());
    }
    Ok(())
}

async fn comment(user: &mut GooseUser) -> TransactionResult {
    match run().random_post() {
        Some(post) => add_comment(user, post, "new comment").await,
        None => Ok(()),
    }
}

async fn comment_viral(user: &mut GooseUser) -> TransactionResult {
    add_comment(user, run().viral.clone(), "viral new comment").await
}

async fn create_post(user: &mut GooseUser, body: Value, name: &'static str) -> TransactionResult {
    let answer = send(user, GooseMethod::Post, "/api/forum/posts/", name, Payload::Json(body)).await?;
    if answer.status == 201
        && let Some(id) = answer.body["id"].as_str()
    {
        let identity = session(user)?.identity;
        run().record_name(identity, &answer.body);
        run().record_post(id, answer.sent, identity);
    }
    Ok(())
}

async fn new_post(user: &mut GooseUser) -> TransactionResult {
    create_post(user, json!({"content": "A post from the load run"}), "new post").await
}

/// A browser's way: presign, PUT the JPEG straight to S3, then post with the media's URL.
async fn new_post_with_image(user: &mut GooseUser) -> TransactionResult {
    let jpeg = &run().jpeg;
    let ask = json!({"content_type": "image/jpeg", "content_length": jpeg.len()});
    let presigned = send(
        user,
        GooseMethod::Post,
        "/api/forum/upload/presign/",
        "presign",
        Payload::Json(ask),
    )
    .await?;
    let upload = &presigned.body["upload"];
    let (Some(url), Some(id), Some(media_url)) = (
        upload["url"].as_str(),
        presigned.body["id"].as_str(),
        presigned.body["url"].as_str(),
    ) else {
        return Ok(());
    };
    let headers = upload["headers"]
        .as_object()
        .map(|h| {
            h.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default();
    let put = send(
        user,
        GooseMethod::Put,
        url,
        "upload PUT (S3)",
        Payload::Upload(jpeg.clone(), headers),
    )
    .await?;
    if !(200..300).contains(&put.status) {
        return Ok(());
    }
    run().record_upload(id, session(user)?.identity);
    let body = json!({"content": "A post with a photo", "media_url": media_url});
    create_post(user, body, "new post (image)").await
}
