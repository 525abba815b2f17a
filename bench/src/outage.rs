//! A frozen DynamoDB: how long each route takes to answer `503 unavailable` when DynamoDB
//! accepts connections and never answers (the worst outage: nothing fails fast). Every request
//! has one deadline ([`forum_store::deadline::REQUEST_BUDGET`]) for everything it sets off, SDK
//! retries and the store's own retry loops included; this prints what a client waits, per route,
//! against it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use forum_local::{DynamoDbLocal, Stack, Storage};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(clap::Args, Clone)]
pub struct Args {
    /// Requests per route while DynamoDB is frozen.
    #[arg(long, default_value_t = 5)]
    requests: usize,
}

/// A TCP proxy in front of DynamoDB that passes bytes, or (frozen) holds them forever.
async fn freezable_proxy(upstream: String, frozen: Arc<AtomicBool>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let (upstream, frozen) = (upstream.clone(), frozen.clone());
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(&upstream).await else {
                    return;
                };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let pass = |frozen: Arc<AtomicBool>| {
                    move |buf: &[u8]| -> bool { !buf.is_empty() && !frozen.load(Ordering::SeqCst) }
                };
                let (up, down) = (pass(frozen.clone()), pass(frozen));
                let to_server = async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    while let Ok(n) = cr.read(&mut buf).await {
                        if !up(&buf[..n]) || sw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    std::future::pending::<()>().await;
                };
                let to_client = async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    while let Ok(n) = sr.read(&mut buf).await {
                        if !down(&buf[..n]) || cw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    std::future::pending::<()>().await;
                };
                tokio::join!(to_server, to_client);
            });
        }
    });
    format!("http://{addr}")
}

pub async fn run(args: &Args) {
    let dynamo = DynamoDbLocal::start(Storage::InMemory).await.expect("DynamoDB Local");
    let frozen = Arc::new(AtomicBool::new(false));
    let proxy = freezable_proxy(
        dynamo.endpoint().trim_start_matches("http://").to_string(),
        frozen.clone(),
    )
    .await;
    let stack = Stack::start(crate::bench_stack("forum-outage", proxy))
        .await
        .expect("forum-local");
    let http = reqwest::Client::new();
    let token = forum_testkit::issue_token(&stack.jwt, "outage", "outage", None, 3600).expect("token");
    let base = format!("{}/api/forum", stack.base_url());
    let created: serde_json::Value = http
        .post(format!("{base}/posts/"))
        .bearer_auth(&token)
        .json(&json!({"content": "before the outage"}))
        .send()
        .await
        .expect("post")
        .json()
        .await
        .expect("JSON");
    let id = created["id"].as_str().expect("an id").to_string();
    // Past the read cache's TTL, so reads reach DynamoDB too.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    frozen.store(true, Ordering::SeqCst);
    let routes: Vec<(&str, reqwest::Method, String, Option<serde_json::Value>)> = vec![
        ("list posts", reqwest::Method::GET, format!("{base}/posts/"), None),
        ("get post", reqwest::Method::GET, format!("{base}/posts/{id}/"), None),
        (
            "create post",
            reqwest::Method::POST,
            format!("{base}/posts/"),
            Some(json!({"content": "during"})),
        ),
        (
            "toggle like",
            reqwest::Method::POST,
            format!("{base}/posts/{id}/like/"),
            None,
        ),
        (
            "create comment",
            reqwest::Method::POST,
            format!("{base}/posts/{id}/comments/"),
            Some(json!({"content": "during"})),
        ),
    ];
    println!(
        "frozen DynamoDB (connections accepted, never answered): time to 503, {} requests per route; \
         the request deadline is {} ms",
        args.requests,
        forum_store::deadline::REQUEST_BUDGET.as_millis()
    );
    println!("{:<16} {:>8} {:>8} {:>8}", "route", "p50 ms", "max ms", "503s");
    let mut worst = Duration::ZERO;
    for (name, method, url, body) in routes {
        let mut times = Vec::new();
        let mut unavailable = 0;
        for _ in 0..args.requests {
            let mut request = http.request(method.clone(), &url).bearer_auth(&token);
            if let Some(body) = &body {
                request = request.json(body);
            }
            let started = Instant::now();
            let answer = request.send().await.expect("an answer");
            times.push(started.elapsed());
            if answer.status() == 503 {
                unavailable += 1;
            }
        }
        times.sort();
        worst = worst.max(*times.last().unwrap_or(&Duration::ZERO));
        println!(
            "{name:<16} {:>8.0} {:>8.0} {:>5}/{}",
            times[times.len() / 2].as_secs_f64() * 1000.0,
            times.last().unwrap_or(&Duration::ZERO).as_secs_f64() * 1000.0,
            unavailable,
            args.requests
        );
    }
    println!(
        "slowest 503: {:.0} ms ({:.2}x the deadline)",
        worst.as_secs_f64() * 1000.0,
        worst.as_secs_f64() / forum_store::deadline::REQUEST_BUDGET.as_secs_f64()
    );
    frozen.store(false, Ordering::SeqCst);
    stack.shutdown().await;
    dynamo.stop().await;
}
