//! Storage and the AWS services behind it: the single table (the only place that knows its
//! keys, indexes and item shapes, one file per concern; `docs/table.md` has the design), the
//! media bucket, the `@connections` notifier, Secrets Manager, and the one place that builds
//! AWS clients. Refusals are [`StoreError`]s in the domain's terms; the API crate maps them.

pub mod aws;
pub mod bucket;
pub mod deadline;
pub mod dynamodb_usage;
pub mod metrics;
pub mod notifier;
pub mod sdk_errors;
pub mod secrets;

mod activity;
mod blocks;
mod comments;
mod connections;
mod error;
pub mod idempotency;
mod items;
pub mod keys;
mod likes;
mod media;
mod moderation;
mod notifications;
mod page;
mod posts;
mod profiles;
mod rate;
mod reports;
mod stream;
mod tx;

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;

use items::key;

pub use blocks::{Block, MAX_BLOCKS, ViewerState};
pub use connections::{Connection, MAX_CONNECTIONS_PER_USER, MAX_SUBSCRIPTIONS, Recipient};
pub use error::{Entity, MediaRefusal, ModerationConflict, StoreError};
pub use forum_domain::model::RateAction;
pub use likes::MAX_LIKED_PER_WINDOW;
pub use media::{OwnMedia, UNCLAIMED_MEDIA_TTL_SECS};
pub use notifications::{LikeNews, MAX_LIKES_TOLD_AT_ONCE};
pub use page::{
    Order, Page, blocks_scope, comments_scope, feed_scope, log_scope, notifications_scope, reports_scope,
    user_comments_scope, user_posts_scope,
};
pub use posts::Editor;
pub use rate::RateToken;
pub use reports::QueueItem;
pub use stream::Change;

pub type Item = HashMap<String, AttributeValue>;

/// The table, and the queries and writes the handlers need.
#[derive(Clone, Debug)]
pub struct Table {
    client: aws::Deferred<Client>,
    name: String,
}

/// Jittered exponential backoff: 25 ms, 50 ms, 100 ms, ... each scaled by a random 50-100 %.
pub(crate) fn backoff(attempt: u32) -> Duration {
    let base = 25u64 << attempt.min(6);
    let jitter = 50 + (ulid::Ulid::new().random() % 51) as u64;
    Duration::from_millis(base * jitter / 100)
}

impl Table {
    pub fn new(client: Client, name: impl Into<String>) -> Self {
        Table::deferred(aws::built(client), name)
    }

    /// A table whose client is built when first used: for a function that may never call it
    /// (the `$default` route's).
    pub fn deferred(client: aws::Deferred<Client>, name: impl Into<String>) -> Self {
        Table {
            client,
            name: name.into(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The client, for tests and tools that look at the table directly.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Opens (and, in AWS, TLS-handshakes) a pooled connection to DynamoDB during a cold start,
    /// so the first request does not pay for it. A GetItem of a key no item ever has; its
    /// outcome (even an access denial) does not matter, only the connection it leaves behind.
    pub async fn warm_up(&self) {
        let _ = self.get_one(key("WARMUP".into(), "WARMUP"), false, Some("pk")).await;
    }
}
