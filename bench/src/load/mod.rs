//! `forum-bench load`: many users at once against a stack (goose, Rust's Locust), WebSocket
//! listeners counting what they hear, then an audit of what everyone was told. The audit's
//! verdict is the exit code.
//!
//! The target is a forum-local the command starts, or a deployed stack (`--api-url`,
//! `--ws-url`, tokens minted from its HS256 secret or read from a file). Scenarios run one
//! after the other on the same stack: `mixed` (the whole API), `viral` (one post everyone
//! reads, likes and comments on), `front` (everyone reloads the front page and opens the
//! viral post: the reads the cache serves) and `inbox` (users comment on each other's posts
//! naming each other, like them, read and mark their notifications, and retry keyed creates
//! as a client after a timeout would). With `--stream-redelivery`, forum-local delivers every
//! nth stream batch twice, and the audit holds every notification to exactly once. Users ramp up over `--ramp-seconds`; each does one
//! thing after another (a closed model), or, with `--rate`, requests arrive at a fixed rate
//! whatever the answers' latency (an open model; see `Args::rate`).

mod audit;
mod listeners;
mod report;
mod scenarios;
mod tally;
mod target;
mod usage;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures::StreamExt;
use goose::config::GooseConfiguration;
use goose::prelude::*;
use serde_json::json;

use listeners::Listeners;
use scenarios::Answer;
use tally::Tally;
use target::Target;

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum ScenarioName {
    Mixed,
    Viral,
    Front,
    Inbox,
}

#[derive(clap::Args, Clone)]
pub struct Args {
    /// Scenarios, run one after the other on the same stack.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "mixed,viral,front,inbox")]
    scenarios: Vec<ScenarioName>,
    /// Simulated users (each its own account).
    #[arg(long, default_value_t = 16)]
    users: usize,
    /// Seconds over which the users start (ramp-up).
    #[arg(long, default_value_t = 2)]
    ramp_seconds: usize,
    /// Seconds of load per scenario, once every user has started.
    #[arg(long, default_value_t = 15)]
    seconds: usize,
    /// An open model: requests start at this rate (per second, all users together) whatever
    /// the latency, the users being the pool that sends them. If the achieved rate falls
    /// short, every user was waiting on an answer: the stack is saturated (or add users).
    /// Without it, a closed model: each user sends its next request when answered.
    #[arg(long)]
    rate: Option<usize>,
    /// WebSocket listeners, each its own account, subscribed to the viral post.
    #[arg(long, default_value_t = 4)]
    listeners: usize,
    /// How long the audit waits, after the load, for events still on their way and for
    /// uploads to be processed.
    #[arg(long, default_value_t = 15)]
    drain_seconds: u64,
    /// Goose's HTML report (latency and throughput over time), one per scenario: with more
    /// than one, `-<scenario>` goes before the extension. Self-contained: its chart library
    /// is inlined, so the charts draw offline.
    #[arg(long, default_value = "load-report.html")]
    report: String,
    /// On a deployed stack, keep what the run wrote. By default its posts are deleted after
    /// the audit (their comments, likes and media go with them).
    #[arg(long)]
    keep_data: bool,
    /// On forum-local, deliver every Nth stream batch twice (Lambda delivers at least once):
    /// notifications must still be written once; live events may then repeat, and the audit
    /// counts them as repeats rather than failures.
    #[arg(long, value_name = "N")]
    stream_redelivery: Option<u32>,
    #[command(flatten)]
    target: target::TargetArgs,
}

/// What the run shares with goose's transactions (plain functions, so a static).
pub struct Run {
    tokens: Vec<String>,
    /// A real photo (JPEG) for the presigned uploads.
    jpeg: Vec<u8>,
    /// The post of the viral scenario, made before the load.
    viral: String,
    ledger: Mutex<Ledger>,
    tally: Mutex<Tally>,
    /// Answers that were neither a success nor a 429, over every scenario.
    failed_answers: AtomicU64,
    /// The API's base URL and a client of its own, for requests goose cannot send (two at
    /// once from one user: a retry racing its original).
    api: String,
    client: reqwest_tls::Client,
    /// Comment requests no answer came back for (they may have committed).
    unanswered_comments: AtomicU64,
    /// `--stream-redelivery`: live events may repeat.
    redelivery: Option<u32>,
}

/// Every acknowledged write, and when its request was sent.
#[derive(Default, Clone)]
pub struct Ledger {
    posts: BTreeMap<String, Instant>,
    post_ids: Vec<String>,
    /// Who wrote each post (an identity), so a deployed run can delete what it made.
    authors: BTreeMap<String, usize>,
    /// comment id -> (post id, sent)
    comments: BTreeMap<String, (String, Instant)>,
    /// comment id -> (writer's identity, the identities its text names)
    comment_meta: BTreeMap<String, (usize, Vec<usize>)>,
    /// identity -> (name shown, when a write of theirs was answered: their name is claimed,
    /// their user id)
    names: BTreeMap<usize, (String, Instant, String)>,
    /// Keyed creates sent twice at once (a retry racing its original), and what was wrong
    /// with their answers.
    retried: usize,
    retry_problems: Vec<String>,
    /// Inbox pages read and marked read during the load.
    inbox_reads: usize,
    /// The like state each user was last told, per post; `None` when a toggle went
    /// unanswered (it may or may not have committed) and no answer came since.
    likes: BTreeMap<(String, usize), Option<bool>>,
    /// Uploads S3 took: (media id, uploader's identity).
    uploads: Vec<(String, usize)>,
}

static RUN: OnceLock<Run> = OnceLock::new();

fn run() -> &'static Run {
    RUN.get().expect("the run is set up before goose starts")
}

impl Run {
    fn token(&self, identity: usize) -> &str {
        &self.tokens[identity]
    }

    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// One of the posts made so far, at random.
    fn random_post(&self) -> Option<String> {
        let ledger = self.ledger();
        let ids = &ledger.post_ids;
        (!ids.is_empty()).then(|| ids[ulid::Ulid::new().random() as usize % ids.len()].clone())
    }

    fn record_post(&self, id: &str, sent: Instant, identity: usize) {
        let mut ledger = self.ledger();
        ledger.posts.insert(id.to_string(), sent);
        ledger.authors.insert(id.to_string(), identity);
        ledger.post_ids.push(id.to_string());
    }

    fn record_comment(&self, id: &str, post: String, sent: Instant, writer: usize, names: Vec<usize>) {
        let mut ledger = self.ledger();
        ledger.comments.insert(id.to_string(), (post, sent));
        ledger.comment_meta.insert(id.to_string(), (writer, names));
    }

    /// A write of `identity` was answered showing them as `body.user.username`: their name is
    /// claimed from then on.
    fn record_name(&self, identity: usize, body: &serde_json::Value) {
        if let (Some(name), Some(id)) = (body["user"]["username"].as_str(), body["user"]["id"].as_str()) {
            self.ledger()
                .names
                .entry(identity)
                .or_insert_with(|| (name.to_string(), Instant::now(), id.to_string()));
        }
    }

    /// One of the other users whose name is claimed, at random.
    fn someone_named(&self, except: usize) -> Option<(usize, String)> {
        let ledger = self.ledger();
        let named: Vec<(&usize, &(String, Instant, String))> = ledger
            .names
            .iter()
            .filter(|(identity, _)| **identity != except)
            .collect();
        (!named.is_empty()).then(|| {
            let (identity, (name, _, _)) = named[ulid::Ulid::new().random() as usize % named.len()];
            (*identity, name.clone())
        })
    }

    fn record_like(&self, post: String, identity: usize, answer: &Answer) {
        let told = match (answer.status, answer.body["is_liked"].as_bool()) {
            (200, Some(liked)) => Some(liked),
            // Refused (a 4xx): nothing changed; keep what was known.
            (400..=499, _) => return,
            _ => None,
        };
        self.ledger().likes.insert((post, identity), told);
    }

    fn record_upload(&self, media_id: &str, identity: usize) {
        self.ledger().uploads.push((media_id.to_string(), identity));
    }
}

pub async fn load(args: &Args) {
    match run_load(args).await {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("forum-bench load: {e}");
            std::process::exit(2);
        }
    }
}

/// Runs the scenarios and the audit; `Ok(false)` when the audit found a problem.
async fn run_load(args: &Args) -> Result<bool, String> {
    let run_tag = ulid::Ulid::new().to_string()[20..].to_lowercase();
    // Identities: the users, then the listeners, then the setup's own.
    let setup = args.users + args.listeners;
    let target = Target::open(&args.target, setup + 1, &run_tag, args.stream_redelivery).await?;
    if target.local.is_none() && args.stream_redelivery.is_some() {
        return Err("--stream-redelivery needs forum-local: a deployed stream is Lambda's".into());
    }
    println!(
        "target: {} and {} ({})",
        target.api,
        target.ws,
        if target.local.is_some() {
            "forum-local, started for this run"
        } else {
            "deployed"
        }
    );

    // The viral post, and a few posts so the mixed scenario has something to read at once.
    let client = reqwest_tls::Client::new();
    let mut made = Vec::new();
    for content in [
        "The viral post: everyone is here",
        "First post",
        "Second post",
        "Third post",
    ] {
        let answer = client
            .post(format!("{}/api/forum/posts/", target.api))
            .bearer_auth(target.token(setup))
            .json(&json!({"content": content}))
            .send()
            .await
            .map_err(|e| format!("the setup could not post: {e}"))?;
        let status = answer.status();
        let body: serde_json::Value = answer.json().await.unwrap_or_default();
        match body["id"].as_str() {
            Some(id) if status == 201 => made.push(id.to_string()),
            _ => return Err(format!("the setup's post was answered {status}: {body}")),
        }
    }
    let viral = made.remove(0);
    let setup_sent = Instant::now();
    let ledger = Ledger {
        posts: made.iter().map(|id| (id.clone(), setup_sent)).collect(),
        authors: made.iter().chain([&viral]).map(|id| (id.clone(), setup)).collect(),
        post_ids: made,
        ..Ledger::default()
    };
    let tokens = (0..=setup).map(|i| target.token(i).to_string()).collect();
    if RUN
        .set(Run {
            tokens,
            jpeg: forum_testkit::images::photo_jpeg(1280, 960),
            viral: viral.clone(),
            ledger: Mutex::new(ledger),
            tally: Mutex::new(Tally::default()),
            failed_answers: AtomicU64::new(0),
            api: target.api.clone(),
            client: client.clone(),
            unanswered_comments: AtomicU64::new(0),
            redelivery: args.stream_redelivery,
        })
        .is_err()
    {
        return Err("one load per process".into());
    }

    let listener_tokens: Vec<&str> = (args.users..setup).map(|i| target.token(i)).collect();
    let listeners = Listeners::connect(&target.ws, &listener_tokens, std::slice::from_ref(&viral)).await?;
    // Writes sent from now on must reach every listener.
    let listening_since = Instant::now();

    for scenario in &args.scenarios {
        run_scenario(args, *scenario, &target).await?;
    }

    let verdict = audit::audit(
        &target,
        run(),
        &listeners,
        listening_since,
        Duration::from_secs(args.drain_seconds),
        &client,
    )
    .await;
    if let Some((_, stack)) = &target.local {
        let (batches, again, records) = stack.redelivered.counts();
        println!("stream: {batches} batches delivered, {again} of them again ({records} records redelivered)");
    }
    listeners.stop();
    if target.local.is_none() && !args.keep_data {
        clean_up(&target, &client).await;
    }
    target.close().await;
    Ok(verdict)
}

/// Deletes the run's posts from a deployed forum, each with its author's token.
async fn clean_up(target: &Target, client: &reqwest_tls::Client) {
    let authors = run().ledger().authors.clone();
    let deletes = authors.iter().map(|(post, identity)| async move {
        client
            .delete(format!("{}/api/forum/posts/{post}/", target.api))
            .bearer_auth(target.token(*identity))
            .send()
            .await
            .map(|answer| answer.status().as_u16())
            .unwrap_or(0)
    });
    let statuses: Vec<u16> = futures::stream::iter(deletes).buffer_unordered(8).collect().await;
    let deleted = statuses.iter().filter(|s| **s == 204).count();
    println!(
        "clean-up: {deleted} of {} posts deleted (their comments, likes and media follow); --keep-data keeps them",
        statuses.len()
    );
}

async fn run_scenario(args: &Args, scenario: ScenarioName, target: &Target) -> Result<(), String> {
    let api = target.api.as_str();
    let report = if args.scenarios.len() > 1 {
        let name = format!("{scenario:?}").to_lowercase();
        match args.report.rsplit_once('.') {
            Some((stem, ext)) => format!("{stem}-{name}.{ext}"),
            None => format!("{}-{name}", args.report),
        }
    } else {
        args.report.clone()
    };
    if let Some(dir) = std::path::Path::new(&report)
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let mut config = GooseConfiguration::default();
    config.quiet = 1;
    // Our own table follows; goose's full metrics are in its HTML report.
    config.no_print_metrics = true;
    // No telnet controller: scenarios run one after another in one process, on one port.
    config.no_telnet = true;
    let increase_rate = format!("{}", args.users as f64 / args.ramp_seconds.max(1) as f64);
    let goose_error = |e: GooseError| format!("goose: {e:?}");
    let mut attack = GooseAttack::initialize_with_config(config)
        .map_err(goose_error)?
        .register_scenario(match scenario {
            ScenarioName::Mixed => scenarios::mixed(),
            ScenarioName::Viral => scenarios::viral(),
            ScenarioName::Front => scenarios::front(),
            ScenarioName::Inbox => scenarios::inbox(),
        })
        .set_default(GooseDefault::Host, api)
        .map_err(goose_error)?
        .set_default(GooseDefault::Users, args.users)
        .map_err(goose_error)?
        .set_default(GooseDefault::IncreaseRate, increase_rate.as_str())
        .map_err(goose_error)?
        .set_default(GooseDefault::RunTime, args.seconds)
        .map_err(goose_error)?
        .set_default(GooseDefault::ReportFile, report.as_str())
        .map_err(goose_error)?;
    if let Some(rate) = args.rate {
        attack = attack
            .set_default(GooseDefault::ThrottleRequests, rate)
            .map_err(goose_error)?;
    }
    if let Ok(mut tally) = run().tally.lock() {
        *tally = Tally::default();
    }
    let usage_before = target.local.as_ref().map(|(_, stack)| usage::by_function(stack));
    let started = Instant::now();
    attack.execute().await.map_err(goose_error)?;
    let elapsed = started.elapsed();
    report::make_offline(&report)?;
    let model = match args.rate {
        Some(rate) => format!("open model, {rate} requests/s asked"),
        None => "closed model".into(),
    };
    println!(
        "\n== scenario {scenario:?}: {} users ({model}), ramp {} s, {:.1} s in all",
        args.users,
        args.ramp_seconds,
        elapsed.as_secs_f64()
    );
    let (requests, feed_views, post_views) = match run().tally.lock() {
        Ok(mut tally) => {
            tally.print(elapsed);
            run().failed_answers.fetch_add(tally.failures(), Ordering::Relaxed);
            (
                tally.requests(),
                tally.count(&["feed first page", "feed next page", "front page"]),
                tally.count(&["read post", "read viral post"]),
            )
        }
        Err(_) => (0, 0, 0),
    };
    if let (Some(before), Some((_, stack))) = (usage_before, &target.local) {
        let used = usage::print(&before, &usage::by_function(stack), requests, elapsed);
        let ttl = stack
            .environments
            .get("list-posts")
            .and_then(|env| env.get("FORUM_READ_CACHE_TTL_MS"))
            .map_or("?", String::as_str);
        usage::print_hot_reads(&used, feed_views, post_views, elapsed, ttl);
    }
    println!("report: {report}");
    Ok(())
}
