//! `forum-bench load`: many users at once against a running stack (goose, Rust's Locust), then
//! an audit of what they were told. First version: the mixed scenario against a forum-local the
//! command starts; the audit is the exit code.
//!
//! Users read the feed, read posts, toggle likes, comment and post, each acknowledged write
//! recorded. After the run, the audit checks every acknowledged post and comment exists, and
//! for every touched post that `like_count` is its like items and `comment_count` its comments.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, OnceLock};

use aws_sdk_dynamodb::types::AttributeValue;
use forum_local::{Stack, Storage};
use goose::config::GooseConfiguration;
use goose::prelude::*;
use serde_json::{Value, json};

#[derive(clap::Args, Clone)]
pub struct Args {
    /// Concurrent users (a closed model: each does one thing after another).
    #[arg(long, default_value_t = 16)]
    users: usize,
    /// Seconds of load, after every user started.
    #[arg(long, default_value_t = 15)]
    seconds: usize,
    /// Goose's HTML report (latency and throughput over time).
    #[arg(long, default_value = "load-report.html")]
    report: String,
}

/// What the run shares: how to mint tokens, and every acknowledged write.
struct Run {
    jwt: shared::auth::JwtSettings,
    posts: Mutex<Vec<String>>,
    comments: Mutex<Vec<(String, String)>>,
    touched: Mutex<BTreeSet<String>>,
}

static RUN: OnceLock<Run> = OnceLock::new();

fn run() -> &'static Run {
    RUN.get().expect("the run is set up before goose starts")
}

#[derive(Clone)]
struct Token(String);

fn fail(why: String) -> TransactionResult {
    Err(Box::new(TransactionError::Custom(why)))
}

/// Sends an authenticated JSON request; answers its status and body.
async fn call(
    user: &mut GooseUser,
    method: GooseMethod,
    path: &str,
    name: &str,
    body: Option<Value>,
) -> Result<(u16, Value), Box<TransactionError>> {
    let token = user
        .get_session_data::<Token>()
        .map(|t| t.0.clone())
        .ok_or_else(|| Box::new(TransactionError::Custom("no token".into())))?;
    let mut builder = user.get_request_builder(&method, path)?.bearer_auth(token);
    if let Some(body) = body {
        builder = builder
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let request = GooseRequest::builder()
        .method(method)
        .path(path)
        .name(name)
        .set_request_builder(builder)
        .build();
    let answer = user.request(request).await?;
    match answer.response {
        Ok(response) => {
            let status = response.status().as_u16();
            let text = response.text().await.unwrap_or_default();
            Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
        }
        Err(e) => Err(Box::new(TransactionError::Custom(e.to_string()))),
    }
}

/// One of the posts made so far, at random.
fn random_post() -> Option<String> {
    let ids = run().posts.lock().ok()?;
    (!ids.is_empty()).then(|| ids[ulid::Ulid::new().random() as usize % ids.len()].clone())
}

async fn sign_in(user: &mut GooseUser) -> TransactionResult {
    let name = format!("loaduser{}", user.weighted_users_index);
    let token = shared::auth::issue_token(&run().jwt, &shared::auth::local_user_id(&name), &name, None, 3600)
        .map_err(|e| Box::new(TransactionError::Custom(e)))?;
    user.set_session_data(Token(token));
    Ok(())
}

async fn read_feed(user: &mut GooseUser) -> TransactionResult {
    call(user, GooseMethod::Get, "/api/forum/posts/?limit=20", "feed", None).await?;
    Ok(())
}

async fn read_post(user: &mut GooseUser) -> TransactionResult {
    let Some(id) = random_post() else {
        return Ok(());
    };
    call(user, GooseMethod::Get, &format!("/api/forum/posts/{id}/"), "post", None).await?;
    Ok(())
}

async fn new_post(user: &mut GooseUser) -> TransactionResult {
    let (status, body) = call(
        user,
        GooseMethod::Post,
        "/api/forum/posts/",
        "new post",
        Some(json!({"content": "load"})),
    )
    .await?;
    match (status, body["id"].as_str()) {
        (201, Some(id)) => {
            if let Ok(mut posts) = run().posts.lock() {
                posts.push(id.to_string());
            }
            Ok(())
        }
        _ => fail(format!("new post answered {status}")),
    }
}

async fn toggle_like(user: &mut GooseUser) -> TransactionResult {
    let Some(id) = random_post() else {
        return Ok(());
    };
    let (status, _) = call(
        user,
        GooseMethod::Post,
        &format!("/api/forum/posts/{id}/like/"),
        "like",
        None,
    )
    .await?;
    if status == 200
        && let Ok(mut touched) = run().touched.lock()
    {
        touched.insert(id);
    }
    Ok(())
}

async fn comment(user: &mut GooseUser) -> TransactionResult {
    let Some(id) = random_post() else {
        return Ok(());
    };
    let (status, body) = call(
        user,
        GooseMethod::Post,
        &format!("/api/forum/posts/{id}/comments/"),
        "comment",
        Some(json!({"content": "load comment"})),
    )
    .await?;
    if let (201, Some(cid)) = (status, body["id"].as_str()) {
        if let Ok(mut comments) = run().comments.lock() {
            comments.push((id.clone(), cid.to_string()));
        }
        if let Ok(mut touched) = run().touched.lock() {
            touched.insert(id);
        }
    }
    Ok(())
}

/// Counts of one post's items, and its counters, straight from the table.
async fn counted(stack: &Stack, post_id: &str) -> (Option<(u64, u64)>, u64, u64, BTreeSet<String>) {
    let table = stack.app.table.name().to_string();
    let mut likes = 0;
    let mut comments = BTreeSet::new();
    let mut counters = None;
    let mut start = None;
    loop {
        let out = stack
            .dynamodb
            .query()
            .table_name(&table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", AttributeValue::S(format!("POST#{post_id}")))
            .consistent_read(true)
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .expect("query");
        for item in out.items() {
            let sk = item.get("sk").and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
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
            } else if let Some(cid) = sk.strip_prefix("COMMENT#") {
                comments.insert(cid.to_string());
            }
        }
        match out.last_evaluated_key() {
            Some(key) => start = Some(key.clone()),
            None => break,
        }
    }
    let n = comments.len() as u64;
    (counters, likes, n, comments)
}

pub async fn load(args: &Args) {
    let dynamo = forum_local::DynamoDbLocal::start(Storage::InMemory)
        .await
        .expect("DynamoDB Local");
    let stack = Stack::start(crate::bench_stack("forum-load", dynamo.endpoint().to_string()))
        .await
        .expect("stack");
    let _ = RUN.set(Run {
        jwt: stack.jwt.clone(),
        posts: Mutex::new(Vec::new()),
        comments: Mutex::new(Vec::new()),
        touched: Mutex::new(BTreeSet::new()),
    });

    let mut config = GooseConfiguration::default();
    config.quiet = 1;
    let attack = GooseAttack::initialize_with_config(config)
        .expect("goose")
        .register_scenario(
            scenario!("mixed")
                .register_transaction(transaction!(sign_in).set_on_start())
                .register_transaction(transaction!(read_feed).set_weight(6).expect("weight"))
                .register_transaction(transaction!(read_post).set_weight(4).expect("weight"))
                .register_transaction(transaction!(toggle_like).set_weight(3).expect("weight"))
                .register_transaction(transaction!(comment).set_weight(2).expect("weight"))
                .register_transaction(transaction!(new_post).set_weight(1).expect("weight")),
        )
        .set_default(GooseDefault::Host, stack.base_url().as_str())
        .expect("host")
        .set_default(GooseDefault::Users, args.users)
        .expect("users")
        .set_default(GooseDefault::IncreaseRate, args.users.to_string().as_str())
        .expect("rate")
        .set_default(GooseDefault::RunTime, args.seconds)
        .expect("run time")
        .set_default(GooseDefault::ReportFile, args.report.as_str())
        .expect("report");
    let metrics = attack.execute().await.expect("the load ran");
    println!("{metrics}");

    // The audit: what users were told is what the table holds.
    let mut problems = Vec::new();
    let posts = run().posts.lock().map(|p| p.clone()).unwrap_or_default();
    let comments = run().comments.lock().map(|c| c.clone()).unwrap_or_default();
    let mut by_post: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (post, cid) in &comments {
        by_post.entry(post.clone()).or_default().push(cid.clone());
    }
    let touched = run().touched.lock().map(|t| t.clone()).unwrap_or_default();
    let mut audited = 0;
    for post in posts.iter().chain(touched.iter()).collect::<BTreeSet<_>>() {
        let (counters, likes, n_comments, stored) = counted(&stack, post).await;
        audited += 1;
        let Some((like_count, comment_count)) = counters else {
            problems.push(format!("post {post} was acknowledged but is missing"));
            continue;
        };
        if like_count != likes {
            problems.push(format!("post {post}: like_count {like_count}, {likes} likes"));
        }
        if comment_count != n_comments {
            problems.push(format!(
                "post {post}: comment_count {comment_count}, {n_comments} comments"
            ));
        }
        for cid in by_post.get(post).into_iter().flatten() {
            if !stored.contains(cid) {
                problems.push(format!("comment {cid} on {post} was acknowledged but is missing"));
            }
        }
    }
    println!(
        "audit: {audited} posts, {} acknowledged posts and {} comments checked: {}",
        posts.len(),
        comments.len(),
        if problems.is_empty() {
            "consistent".to_string()
        } else {
            format!("{} problems", problems.len())
        }
    );
    println!("report: {}", args.report);
    stack.shutdown().await;
    dynamo.stop().await;
    if !problems.is_empty() {
        for p in problems.iter().take(20) {
            println!("  {p}");
        }
        std::process::exit(1);
    }
}
