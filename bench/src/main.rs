//! `forum-bench`: every route against DynamoDB Local through forum-local, one request at a
//! time. Prints, per route, p50/p99 latency, DynamoDB round trips per request (counted by the
//! SDK interceptor), the budget, and the ratio of the route's p50 to a raw GetItem's p50
//! measured in the same run.
//!
//! `cargo run --release -p forum-bench` (or `--profile perf`, which builds much faster).

use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use clap::Parser;
use forum_local::{DynamoDbLocal, Stack, StackOptions, Storage};
use reqwest::Method;
use serde_json::{Value, json};

#[derive(Parser)]
#[command(about = "Forum benchmarks: API routes against DynamoDB Local (default), or the thumbnail pipeline")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    api: Args,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Every route: latency and DynamoDB round trips (the default).
    Api(Args),
    /// The thumbnail pipeline on a 4032x3024 JPEG and PNG: median time and peak memory.
    Thumbnails(thumbnails::Args),
    /// Every function's cold start (init, first invocation, connections) against hello-world.
    ColdStart(cold_start::Args),
    /// The profanity filter on its corpora: false positives, recall, cost per comment.
    Filter,
    /// Many users at once against forum-local or a deployed stack (goose), WebSocket listeners,
    /// then an audit of what everyone was told (the exit code).
    Load(Box<load::Args>),
    /// A frozen DynamoDB: how long each route takes to answer 503, against the request deadline.
    Outage(outage::Args),
}

#[derive(clap::Args, Clone)]
struct Args {
    /// Requests per route.
    #[arg(long, default_value_t = 200)]
    requests: usize,
    /// Use a running DynamoDB instead of starting DynamoDB Local.
    #[arg(long, env = "DYNAMODB_ENDPOINT")]
    dynamodb_endpoint: Option<String>,
}

struct Sample {
    latencies: Vec<Duration>,
    round_trips: Vec<u64>,
}

impl Sample {
    fn new() -> Self {
        Sample {
            latencies: Vec::new(),
            round_trips: Vec::new(),
        }
    }

    fn percentile(&self, p: f64) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        stats::percentile(&sorted, p)
    }
}

struct Bench {
    http: reqwest::Client,
    base: String,
    stack: Stack,
}

struct User {
    token: String,
}

impl Bench {
    fn user(&self, name: &str) -> User {
        let username = format!("{name}{}", &ulid::Ulid::new().to_string()[20..]);
        let token = forum_testkit::issue_token(
            &self.stack.jwt,
            &forum_testkit::local_user_id(&username),
            &username,
            None,
            3600,
        )
        .expect("token");
        User { token }
    }

    /// One request; returns status, body, latency and the round trips it cost.
    async fn call(&self, user: &User, method: Method, path: &str, body: Option<Value>) -> (u16, Value, Duration, u64) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&user.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let before = self.stack.app.dynamodb_usage.round_trips();
        let started = Instant::now();
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let bytes = response.bytes().await.expect("body");
        let elapsed = started.elapsed();
        let trips = self.stack.app.dynamodb_usage.round_trips() - before;
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, body, elapsed, trips)
    }

    async fn measure(
        &self,
        sample: &mut Sample,
        user: &User,
        method: Method,
        path: &str,
        body: Option<Value>,
        expect: u16,
    ) -> Value {
        let (status, body, elapsed, trips) = self.call(user, method.clone(), path, body).await;
        assert_eq!(status, expect, "{method} {path}: {body}");
        sample.latencies.push(elapsed);
        sample.round_trips.push(trips);
        body
    }
}

fn id(v: &Value) -> String {
    v["id"].as_str().expect("id").to_string()
}

mod cold_start;
mod load;
mod outage;
mod stats;
mod thumbnails;

/// Counts heap bytes so the thumbnail benchmark can report peak memory.
#[global_allocator]
static ALLOCATOR: thumbnails::CountingAllocator = thumbnails::CountingAllocator;

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Thumbnails(args)) => thumbnails::run(&args),
        Some(Command::ColdStart(args)) => cold_start::run(&args).await,
        Some(Command::Filter) => filter(),
        Some(Command::Load(args)) => load::load(&args).await,
        Some(Command::Outage(args)) => outage::run(&args).await,
        Some(Command::Api(args)) => api(args).await,
        None => api(cli.api).await,
    }
}

/// The profanity filter's figures; exits non-zero when a target is missed.
fn filter() {
    // What every text function's cold start pays for the filter's tables (its warm-up).
    let (before, started) = (resident_kb(), std::time::Instant::now());
    forum_domain::profanity::warm_up();
    println!(
        "tables built in {:.1} ms, resident memory +{:.1} MB (a text function's warm-up)",
        started.elapsed().as_secs_f64() * 1000.0,
        resident_kb().saturating_sub(before) as f64 / 1024.0
    );
    let report = forum_testkit::profanity_corpus::measure();
    println!("{report}");
    let met = report.numeric.refused == 0
        && report.prose.rate() <= 0.005
        && report.words.rate() <= 0.003
        && report.profane.rate() >= 0.95;
    if !met {
        println!("TARGET MISSED");
        std::process::exit(1);
    }
}

/// This process's resident memory (Linux), in KiB; 0 where it cannot be read.
fn resident_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(0)
}

/// A stack for measuring: the local parameter set with rate limits out of the way, its own
/// table on `dynamodb_endpoint`, a free port.
pub(crate) fn bench_stack(table_prefix: &str, dynamodb_endpoint: String) -> StackOptions {
    let max = u32::MAX.to_string();
    let mut options = StackOptions::local()
        .expect("options")
        .parameter("RatePostsPerMinute", &max)
        .parameter("RateCommentsPerMinute", &max)
        .parameter("RateLikesPerMinute", &max)
        .parameter("RateEditsPerMinute", &max)
        .parameter("RateUploadsPerMinute", &max)
        .parameter("RateReportsPerMinute", &max)
        .parameter("RateSubscriptionsPerMinute", &max);
    options.listen = "127.0.0.1:0".parse().expect("addr");
    options.dynamodb_endpoint = Some(dynamodb_endpoint);
    options.table_name = format!("{table_prefix}-{}", ulid::Ulid::new());
    options
}

async fn api(args: Args) {
    let n = args.requests.max(10);
    let (dynamo, endpoint) = match args.dynamodb_endpoint {
        Some(e) => (None, e),
        None => {
            let local = DynamoDbLocal::start(Storage::InMemory).await.expect("DynamoDB Local");
            let endpoint = local.endpoint().to_string();
            (Some(local), endpoint)
        }
    };
    let stack = Stack::start(bench_stack("forum-bench", endpoint)).await.expect("stack");
    let bench = Bench {
        http: reqwest::Client::new(),
        base: stack.base_url(),
        stack,
    };
    let alice = bench.user("alice");
    let bob = bench.user("bob");

    // Data to read, and warm caches (profiles) and connections, as a warm Lambda would have.
    let mut seed = Sample::new();
    let mut posts = Vec::new();
    for i in 0..(n + 40) {
        posts.push(
            bench
                .measure(
                    &mut seed,
                    &alice,
                    Method::POST,
                    "/api/forum/posts/",
                    Some(json!({"content": format!("seed {i}")})),
                    201,
                )
                .await,
        );
    }
    let hot = format!("/api/forum/posts/{}/", id(&posts[0]));
    for i in 0..40 {
        bench
            .measure(
                &mut seed,
                &bob,
                Method::POST,
                &format!("{hot}comments/"),
                Some(json!({"content": format!("c{i}")})),
                201,
            )
            .await;
    }
    bench
        .measure(&mut seed, &bob, Method::GET, "/api/forum/posts/", None, 200)
        .await;
    bench
        .measure(&mut seed, &alice, Method::GET, &format!("{hot}comments/"), None, 200)
        .await;
    // Each function is a container of its own: warm get-post's profile cache too, as a
    // steady-state Lambda container would be.
    bench.measure(&mut seed, &bob, Method::GET, &hot, None, 200).await;

    // The reference: a raw GetItem from this process, same client settings.
    let table = bench.stack.app.table.name().to_string();
    let mut raw = Sample::new();
    for _ in 0..(n * 2) {
        let started = Instant::now();
        bench
            .stack
            .dynamodb
            .get_item()
            .table_name(&table)
            .key("pk", AttributeValue::S(format!("POST#{}", id(&posts[0]))))
            .key("sk", AttributeValue::S("POST".into()))
            .send()
            .await
            .expect("GetItem");
        raw.latencies.push(started.elapsed());
        raw.round_trips.push(1);
    }

    let mut results: Vec<(&str, u64, Sample)> = Vec::new();
    let mut s = Sample::new();
    for _ in 0..n {
        bench
            .measure(&mut s, &bob, Method::GET, "/api/forum/posts/", None, 200)
            .await;
    }
    results.push(("list posts", 2, s));
    let mut s = Sample::new();
    for _ in 0..n {
        bench.measure(&mut s, &bob, Method::GET, &hot, None, 200).await;
    }
    results.push(("get post", 1, s));
    let mut s = Sample::new();
    for i in 0..n {
        bench
            .measure(
                &mut s,
                &alice,
                Method::POST,
                "/api/forum/posts/",
                Some(json!({"content": format!("bench {i}")})),
                201,
            )
            .await;
    }
    results.push(("create post", 1, s));
    let (mut like, mut unlike) = (Sample::new(), Sample::new());
    for i in 0..(2 * n) {
        let sample = if i % 2 == 0 { &mut like } else { &mut unlike };
        let state = bench
            .measure(sample, &bob, Method::POST, &format!("{hot}like/"), None, 200)
            .await;
        assert_eq!(state["is_liked"], i % 2 == 0);
    }
    results.push(("like", 2, like));
    results.push(("unlike", 3, unlike));
    let mut s = Sample::new();
    let mut comments = Vec::new();
    for i in 0..n {
        comments.push(
            bench
                .measure(
                    &mut s,
                    &bob,
                    Method::POST,
                    &format!("{hot}comments/"),
                    Some(json!({"content": format!("bench {i}")})),
                    201,
                )
                .await,
        );
    }
    results.push(("create comment", 1, s));
    let mut s = Sample::new();
    for _ in 0..n {
        bench
            .measure(&mut s, &alice, Method::GET, &format!("{hot}comments/"), None, 200)
            .await;
    }
    results.push(("list comments", 2, s));
    let mut s = Sample::new();
    for (i, c) in comments.iter().enumerate() {
        bench
            .measure(
                &mut s,
                &bob,
                Method::PATCH,
                &format!("{hot}comments/{}/", id(c)),
                Some(json!({"content": format!("edit {i}")})),
                200,
            )
            .await;
    }
    results.push(("edit comment", 1, s));
    let mut s = Sample::new();
    for c in &comments {
        bench
            .measure(
                &mut s,
                &bob,
                Method::DELETE,
                &format!("{hot}comments/{}/", id(c)),
                None,
                204,
            )
            .await;
    }
    results.push(("delete comment", 1, s));
    let mut s = Sample::new();
    for i in 0..n {
        bench
            .measure(
                &mut s,
                &alice,
                Method::PATCH,
                &hot,
                Some(json!({"content": format!("edit {i}")})),
                200,
            )
            .await;
    }
    results.push(("edit post", 2, s));
    let mut s = Sample::new();
    for p in posts.iter().skip(1).take(n) {
        bench
            .measure(
                &mut s,
                &alice,
                Method::DELETE,
                &format!("/api/forum/posts/{}/", id(p)),
                None,
                204,
            )
            .await;
    }
    results.push(("delete post", 1, s));

    // Delivery latency: from the API's answer to the event on another user's WebSocket.
    let delivery = measure_delivery(&bench, &alice, &bob, n.min(100)).await;

    let raw_p50 = raw.percentile(50.0);
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("forum-bench: {n} requests per route, one at a time, HTTP through forum-local to DynamoDB Local");
    println!(
        "raw GetItem (SDK, same process): p50 {:.2} ms, p99 {:.2} ms",
        ms(raw_p50),
        ms(raw.percentile(99.0))
    );
    println!();
    println!("| route | p50 ms | p99 ms | round trips/request (mean, max) | budget | p50 / GetItem p50 |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    let mut over_budget = Vec::new();
    for (route, budget, sample) in &results {
        let mean = sample.round_trips.iter().sum::<u64>() as f64 / sample.round_trips.len() as f64;
        let max = sample.round_trips.iter().copied().max().unwrap_or(0);
        if max > *budget {
            over_budget.push(*route);
        }
        println!(
            "| {route} | {:.2} | {:.2} | {mean:.2}, {max} | {budget} | {:.1}x |",
            ms(sample.percentile(50.0)),
            ms(sample.percentile(99.0)),
            sample.percentile(50.0).as_secs_f64() / raw_p50.as_secs_f64()
        );
    }
    println!();
    println!(
        "WebSocket delivery (API answer -> post.created at another client, {} posts): p50 {:.1} ms, p99 {:.1} ms (target p50 < 300 ms)",
        delivery.latencies.len(),
        ms(delivery.percentile(50.0)),
        ms(delivery.percentile(99.0))
    );
    println!();
    if over_budget.is_empty() {
        println!("every route within its round-trip budget");
    } else {
        println!("OVER BUDGET: {}", over_budget.join(", "));
    }
    bench.stack.shutdown().await;
    if let Some(d) = dynamo {
        d.stop().await;
    }
    if !over_budget.is_empty() {
        std::process::exit(1);
    }
}

/// Creates posts as `author` and times each `post.created` arriving at `listener`'s socket.
async fn measure_delivery(bench: &Bench, author: &User, listener: &User, posts: usize) -> Sample {
    use futures::StreamExt;
    let url = format!("{}/ws?token={}", bench.base.replace("http://", "ws://"), listener.token);
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.expect("WebSocket connects");
    let mut sample = Sample::new();
    for i in 0..posts {
        let body = json!({ "content": format!("live {i}") });
        let (status, post, _, _) = bench.call(author, Method::POST, "/api/forum/posts/", Some(body)).await;
        assert_eq!(status, 201);
        let answered = Instant::now();
        let id = id(&post);
        loop {
            let message = tokio::time::timeout(Duration::from_secs(10), socket.next())
                .await
                .expect("post.created within 10 s")
                .expect("socket open")
                .expect("message");
            if let tokio_tungstenite::tungstenite::Message::Text(text) = message {
                let event: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                if event["type"] == "post.created" && event["post"]["id"] == id.as_str() {
                    sample.latencies.push(answered.elapsed());
                    sample.round_trips.push(0);
                    break;
                }
            }
        }
    }
    sample
}
