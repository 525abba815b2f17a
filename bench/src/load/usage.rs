//! What a scenario asked of DynamoDB, per function (each function is its own container, with
//! its own client and counter): calls per operation and capacity units, per request and in
//! dollars at on-demand prices. On forum-local only, where the command can read the counters.

use std::collections::BTreeMap;
use std::time::Duration;

use forum_local::Stack;
use forum_store::dynamodb_usage::UsageSnapshot;

/// On-demand prices, us-east-1 (since November 2024): per million read and write request units.
const DOLLARS_PER_MILLION_READ_UNITS: f64 = 0.125;
const DOLLARS_PER_MILLION_WRITE_UNITS: f64 = 0.625;

pub fn by_function(stack: &Stack) -> BTreeMap<String, UsageSnapshot> {
    stack
        .functions
        .iter()
        .map(|(name, app)| (name.clone(), app.dynamodb_usage.snapshot()))
        .collect()
}

fn calls(snapshot: &UsageSnapshot) -> String {
    snapshot
        .calls
        .iter()
        .map(|(op, n)| format!("{op} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Prints what each function used between `before` and `after`; answers it per function.
pub fn print(
    before: &BTreeMap<String, UsageSnapshot>,
    after: &BTreeMap<String, UsageSnapshot>,
    requests: usize,
    elapsed: Duration,
) -> BTreeMap<String, UsageSnapshot> {
    let mut by_function = BTreeMap::new();
    let secs = elapsed.as_secs_f64().max(0.001);
    let mut total = UsageSnapshot::default();
    println!("DynamoDB, per function (capacity units at least what AWS charges; see docs/table.md):");
    for (name, now) in after {
        let used = now.since(before.get(name).unwrap_or(&UsageSnapshot::default()));
        if used.round_trips == 0 {
            continue;
        }
        println!(
            "  {name:<16} {:>6} calls {:>7.1}/s  {:>8.1} RCU {:>8.1} WCU  ({})",
            used.round_trips,
            used.round_trips as f64 / secs,
            used.read_units,
            used.write_units,
            calls(&used)
        );
        total.add(&used);
        by_function.insert(name.clone(), used);
    }
    let per = |x: f64| x / requests.max(1) as f64;
    let dollars = total.read_units * DOLLARS_PER_MILLION_READ_UNITS / 1e6
        + total.write_units * DOLLARS_PER_MILLION_WRITE_UNITS / 1e6;
    println!(
        "  all: {} calls, {:.1} RCU, {:.1} WCU; per request {:.2} calls, {:.2} RCU, {:.2} WCU; on demand ${:.2} per million requests",
        total.round_trips,
        total.read_units,
        total.write_units,
        per(total.round_trips as f64),
        per(total.read_units),
        per(total.write_units),
        per(dollars) * 1e6,
    );
    by_function
}

/// The hot reads against what they cost: feed page views against list-posts' Queries (one
/// container per function here, so these are per container), and post views against
/// get-post's read units (1 when the post item is read with the caller's like, 0.5 when the
/// post came from memory and only the like was read).
pub fn print_hot_reads(
    used: &BTreeMap<String, UsageSnapshot>,
    feed_views: usize,
    post_views: usize,
    elapsed: Duration,
    ttl: &str,
) {
    let secs = elapsed.as_secs_f64().max(0.001);
    let none = UsageSnapshot::default();
    let feed = used.get("list-posts").unwrap_or(&none);
    let posts = used.get("get-post").unwrap_or(&none);
    let per = |x: f64, n: usize| if n == 0 { 0.0 } else { x / n as f64 };
    // One load per page per TTL window: the most Queries one page may cost in this run.
    let windows = ttl
        .parse::<f64>()
        .ok()
        .filter(|ms| *ms > 0.0)
        .map(|ms| format!("at most {} per page", (secs * 1000.0 / ms).ceil()))
        .unwrap_or_else(|| "uncached".into());
    println!(
        "hot reads (ReadCacheTtlMs {ttl}): feed {:.1} page views/s -> {} Queries ({windows}), {:.1}/s per container ({:.2} Queries, {:.2} calls, {:.2} RCU per page view); posts {:.1} views/s -> {:.2} RCU per view",
        feed_views as f64 / secs,
        feed.calls_of("Query"),
        feed.calls_of("Query") as f64 / secs,
        per(feed.calls_of("Query") as f64, feed_views),
        per(feed.round_trips as f64, feed_views),
        per(feed.read_units, feed_views),
        post_views as f64 / secs,
        per(posts.read_units, post_views),
    );
}
