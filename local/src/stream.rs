//! The table stream's event source mapping: polls DynamoDB Local's stream and hands each batch
//! to `stream-fanout` as Lambda would: in order per shard, retrying from the first failed record
//! (`batchItemFailures`), and giving a batch up (logged, as the on-failure queue would get it)
//! after a few attempts.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_dynamodbstreams::types::{AttributeValue, ShardIteratorType};
use forum_api::handlers::{self, App};

use crate::invoke;
use serde_json::{Value, json};

const POLL_INTERVAL: Duration = Duration::from_millis(50);
const DESCRIBE_EVERY: u32 = 20;
const ATTEMPTS: u32 = 3;

/// An image in DynamoDB JSON, as stream records carry it (every attribute type, binary too).
fn image(item: &HashMap<String, AttributeValue>) -> Value {
    serde_json::to_value(serde_dynamo::Item::from(item.clone())).unwrap_or(Value::Null)
}

/// One stream record in the shape Lambda delivers it.
fn lambda_record(record: &aws_sdk_dynamodbstreams::types::Record, stream_arn: &str) -> Value {
    let change = record.dynamodb();
    let mut dynamodb = serde_json::Map::new();
    if let Some(c) = change {
        if let Some(keys) = c.keys() {
            dynamodb.insert("Keys".into(), image(keys));
        }
        if let Some(new) = c.new_image() {
            dynamodb.insert("NewImage".into(), image(new));
        }
        if let Some(old) = c.old_image() {
            dynamodb.insert("OldImage".into(), image(old));
        }
        dynamodb.insert("SequenceNumber".into(), json!(c.sequence_number().unwrap_or_default()));
        dynamodb.insert("SizeBytes".into(), json!(c.size_bytes().unwrap_or_default()));
        dynamodb.insert("StreamViewType".into(), json!("NEW_AND_OLD_IMAGES"));
    }
    json!({
        "eventID": record.event_id().unwrap_or_default(),
        "eventName": record.event_name().map(|n| n.as_str().to_string()).unwrap_or_default(),
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": forum_store::aws::LOCAL_REGION,
        "dynamodb": dynamodb,
        "eventSourceARN": stream_arn,
    })
}

/// Lambda's event filtering, as the template's `FilterCriteria` configures it: a record is
/// delivered when any pattern matches it (no patterns: every record). Patterns match the
/// record's JSON: objects nest, a list offers the values a field may have (exact values,
/// `{"exists": bool}`, `{"prefix": ...}`, `{"anything-but": [...]}`).
#[derive(Clone, Debug, Default)]
pub struct EventFilter {
    patterns: Vec<Value>,
}

impl EventFilter {
    pub fn new(patterns: Vec<Value>) -> Self {
        EventFilter { patterns }
    }

    pub fn admits(&self, record: &Value) -> bool {
        self.patterns.is_empty() || self.patterns.iter().any(|p| pattern_matches(p, Some(record)))
    }
}

fn pattern_matches(pattern: &Value, value: Option<&Value>) -> bool {
    match pattern {
        Value::Object(fields) => fields
            .iter()
            .all(|(name, inner)| pattern_matches(inner, value.and_then(|v| v.get(name)))),
        Value::Array(choices) => choices.iter().any(|choice| choice_matches(choice, value)),
        _ => false,
    }
}

fn choice_matches(choice: &Value, value: Option<&Value>) -> bool {
    match choice {
        Value::Object(rule) => match rule.iter().next() {
            Some((op, arg)) if rule.len() == 1 => match op.as_str() {
                "exists" => arg.as_bool() == Some(value.is_some()),
                "prefix" => {
                    matches!((value, arg), (Some(Value::String(v)), Value::String(p)) if v.starts_with(p.as_str()))
                }
                "anything-but" => {
                    let excluded: Vec<&Value> = match arg {
                        Value::Array(items) => items.iter().collect(),
                        one => vec![one],
                    };
                    value.is_some_and(|v| !excluded.contains(&v))
                }
                other => {
                    tracing::warn!(rule = other, "a stream filter rule forum-local does not know: no match");
                    false
                }
            },
            _ => false,
        },
        exact => value == Some(exact),
    }
}

/// Redelivery on purpose: every `n`th batch is delivered again once it succeeded, as Lambda,
/// at least once, may (after a timeout, a throttle, or a failure elsewhere in the batch).
#[derive(Debug, Default)]
pub struct Redelivery {
    every: Option<u32>,
    delivered: AtomicU64,
    batches: AtomicU64,
    records: AtomicU64,
}

impl Redelivery {
    pub fn every(n: Option<u32>) -> Self {
        Redelivery {
            every: n.filter(|n| *n > 0),
            ..Redelivery::default()
        }
    }

    /// Whether the batch just delivered goes again.
    fn again(&self, records: usize) -> bool {
        let n = self.delivered.fetch_add(1, Ordering::Relaxed) + 1;
        let Some(every) = self.every else { return false };
        let again = n.is_multiple_of(u64::from(every));
        if again {
            self.batches.fetch_add(1, Ordering::Relaxed);
            self.records.fetch_add(records as u64, Ordering::Relaxed);
        }
        again
    }

    /// (batches delivered, batches and records delivered again).
    pub fn counts(&self) -> (u64, u64, u64) {
        (
            self.delivered.load(Ordering::Relaxed),
            self.batches.load(Ordering::Relaxed),
            self.records.load(Ordering::Relaxed),
        )
    }
}

/// Runs until the task is dropped.
pub async fn run(
    app: Arc<App>,
    streams: aws_sdk_dynamodbstreams::Client,
    dynamodb: aws_sdk_dynamodb::Client,
    table: String,
    filter: EventFilter,
    redelivery: Arc<Redelivery>,
    ready: tokio::sync::oneshot::Sender<()>,
) {
    let mut ready = Some(ready);
    let stream_arn = loop {
        match dynamodb.describe_table().table_name(&table).send().await {
            Ok(out) => {
                if let Some(arn) = out.table().and_then(|t| t.latest_stream_arn()) {
                    break arn.to_string();
                }
                tracing::warn!("the table has no stream; live updates are off");
                if let Some(ready) = ready.take() {
                    let _ = ready.send(());
                }
                return;
            }
            Err(e) => {
                tracing::warn!(error = ?e, "describing the table failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    // Shards open when we start are read from their end (like StartingPosition: LATEST);
    // shards that appear later from their beginning.
    let mut iterators: HashMap<String, Option<String>> = HashMap::new();
    let mut first = true;
    let mut tick: u32 = 0;
    loop {
        if tick.is_multiple_of(DESCRIBE_EVERY)
            && let Ok(out) = streams.describe_stream().stream_arn(&stream_arn).send().await
            && let Some(description) = out.stream_description()
        {
            for shard in description.shards() {
                let Some(id) = shard.shard_id() else { continue };
                if iterators.contains_key(id) {
                    continue;
                }
                let kind = if first {
                    ShardIteratorType::Latest
                } else {
                    ShardIteratorType::TrimHorizon
                };
                let iterator = streams
                    .get_shard_iterator()
                    .stream_arn(&stream_arn)
                    .shard_id(id)
                    .shard_iterator_type(kind)
                    .send()
                    .await
                    .ok()
                    .and_then(|o| o.shard_iterator().map(str::to_string));
                iterators.insert(id.to_string(), iterator);
            }
            first = false;
            // Reading from the shards' ends from here on: a write made after this is seen.
            if let Some(ready) = ready.take() {
                let _ = ready.send(());
            }
        }
        tick = tick.wrapping_add(1);
        for iterator in iterators.values_mut() {
            let Some(current) = iterator.clone() else { continue };
            match streams.get_records().shard_iterator(&current).limit(100).send().await {
                Ok(out) => {
                    let records: Vec<Value> = out
                        .records()
                        .iter()
                        .map(|r| lambda_record(r, &stream_arn))
                        .filter(|r| filter.admits(r))
                        .collect();
                    if !records.is_empty() {
                        let again = redelivery.again(records.len()).then(|| records.clone());
                        deliver(&app, records).await;
                        if let Some(records) = again {
                            deliver(&app, records).await;
                        }
                    }
                    *iterator = out.next_shard_iterator().map(str::to_string);
                }
                Err(e) => {
                    tracing::debug!(error = ?e, "GetRecords failed; the shard is re-read");
                    *iterator = None;
                }
            }
        }
        // Closed shards are dropped; a failed read is re-described on the next round.
        iterators.retain(|_, it| it.is_some());
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Invokes `stream-fanout` with a batch, resuming from the first reported failure.
async fn deliver(app: &App, mut records: Vec<Value>) {
    let mut attempt = 0;
    while !records.is_empty() {
        let Ok(event) = invoke::event(json!({ "Records": records })) else {
            return;
        };
        let answer = invoke::answer(&handlers::stream_fanout(app, &event).await);
        let failed = answer["batchItemFailures"][0]["itemIdentifier"]
            .as_str()
            .map(str::to_string);
        let Some(failed) = failed else { return };
        attempt += 1;
        let from = records
            .iter()
            .position(|r| r["dynamodb"]["SequenceNumber"] == failed.as_str())
            .unwrap_or(0);
        records.drain(..from);
        if attempt >= ATTEMPTS {
            tracing::error!(
                sequence = failed,
                "stream batch given up after retries (on-failure destination)"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(event: &str, old_type: Option<&str>, new_type: Option<&str>) -> Value {
        let mut dynamodb = serde_json::Map::new();
        if let Some(t) = old_type {
            dynamodb.insert("OldImage".into(), json!({"type": {"S": t}}));
        }
        if let Some(t) = new_type {
            dynamodb.insert("NewImage".into(), json!({"type": {"S": t}}));
        }
        json!({"eventName": event, "dynamodb": dynamodb})
    }

    #[test]
    fn the_templates_stream_filters_admit_what_fanout_handles_and_nothing_else() {
        let template = crate::template::StackTemplate::parse(crate::template::BUNDLED_TEMPLATE).unwrap();
        let filter = EventFilter::new(template.stream_filters.clone());
        assert!(!template.stream_filters.is_empty());
        for (event, old, new) in [
            ("INSERT", None, Some("post")),
            ("MODIFY", Some("post"), Some("post")),
            ("REMOVE", Some("post"), None),
            ("INSERT", None, Some("comment")),
            ("REMOVE", Some("comment"), None),
            ("MODIFY", Some("media"), Some("media")),
            ("REMOVE", Some("media"), None),
            ("MODIFY", Some("profile"), Some("profile")),
            ("INSERT", None, Some("like")),
        ] {
            assert!(filter.admits(&record(event, old, new)), "{event} {old:?} {new:?}");
        }
        for (event, old, new) in [
            ("REMOVE", Some("like"), None),
            // Marking a like told: not news again.
            ("MODIFY", Some("like"), Some("like")),
            ("INSERT", None, Some("notification")),
            ("MODIFY", Some("like_group"), Some("like_group")),
            ("INSERT", None, Some("connection")),
            ("MODIFY", Some("rate"), Some("rate")),
            ("INSERT", None, Some("name")),
            ("INSERT", None, Some("profile")),
        ] {
            assert!(!filter.admits(&record(event, old, new)), "{event} {old:?} {new:?}");
        }
    }

    #[test]
    fn filter_rules_match_as_lambda_matches_them() {
        let filter = EventFilter::new(vec![json!({"a": {"b": [{"prefix": "x"}]}, "c": [{"exists": false}]})]);
        assert!(filter.admits(&json!({"a": {"b": "xyz"}})));
        assert!(!filter.admits(&json!({"a": {"b": "yz"}})));
        assert!(!filter.admits(&json!({"a": {"b": "xyz"}, "c": 1})));
        let but = EventFilter::new(vec![json!({"t": [{"anything-but": ["like"]}]})]);
        assert!(but.admits(&json!({"t": "post"})));
        assert!(!but.admits(&json!({"t": "like"})));
        assert!(!but.admits(&json!({})));
        assert!(EventFilter::default().admits(&json!({})));
    }
}
