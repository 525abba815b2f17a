//! The users' transactions. Two scenarios:
//! - mixed: feed pages following `next_page`, post reads, like toggles, comments, new posts,
//!   and posts with an image uploaded through a presigned PUT;
//! - viral: most of what users do is on one post: read it, like it, read and add comments;
//! - front: everyone reloads the front page and opens the viral post (reads only).
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
    let answer = send(user, GooseMethod::Post, &path, name, Payload::Json(body)).await?;
    if answer.status == 201
        && let Some(id) = answer.body["id"].as_str()
    {
        run().record_comment(id, post, answer.sent);
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
        run().record_post(id, answer.sent, session(user)?.identity);
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
