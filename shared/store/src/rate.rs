//! Per-user rate limits, taken as one action of the write's own transaction.

use super::items::{key, n};
use super::tx::built;
use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem, Update};

use super::Table;
use super::error::StoreError;
use super::keys;
use forum_domain::model::RateAction;

/// A rate-limit token taken inside a write's transaction: a fixed one-minute window per user
/// and action, counted on an item (`RATE#<uid>#<action>` / window start) that expires by TTL.
#[derive(Clone, Debug)]
pub struct RateToken {
    pub user_id: String,
    pub action: RateAction,
    pub limit: u32,
    /// Unix seconds of the request.
    pub now: i64,
    /// A create's `Idempotency-Key`, recorded in the same transaction as the write (every
    /// write that takes a token is one whose retry must not write twice).
    pub idempotency: Option<crate::idempotency::Idempotency>,
}

/// The part of the rate item's key that names the action.
pub(super) fn action_key(action: RateAction) -> &'static str {
    match action {
        RateAction::Post => "post",
        RateAction::Comment => "comment",
        RateAction::LikeToggle => "like",
        RateAction::Edit => "edit",
        RateAction::Upload => "upload",
        RateAction::Report => "report",
        RateAction::Subscription => "subscription",
    }
}

pub(super) const RATE_WINDOW_SECS: i64 = 60;

impl RateToken {
    pub(super) fn window_start(&self) -> i64 {
        self.now - self.now.rem_euclid(RATE_WINDOW_SECS)
    }

    /// The key of the item counting this window's tokens.
    fn window_key(&self) -> super::Item {
        key(
            keys::rate_pk(&self.user_id, action_key(self.action)),
            self.window_start().to_string(),
        )
    }

    /// Seconds until the window resets: the `Retry-After` of a 429.
    pub fn retry_after_secs(&self) -> u64 {
        (self.window_start() + RATE_WINDOW_SECS - self.now).max(1) as u64
    }

    pub(super) fn refused(&self) -> StoreError {
        StoreError::RateLimited {
            action: self.action,
            limit: self.limit,
            retry_after_secs: self.retry_after_secs(),
        }
    }
}

impl Table {
    /// Takes one token from the caller's window, only while under the limit.
    pub(super) fn take_rate_token(&self, token: &RateToken) -> Result<TransactWriteItem, StoreError> {
        let window = token.window_start();
        let update = built(
            Update::builder()
                .table_name(&self.name)
                .set_key(Some(token.window_key()))
                .update_expression("ADD #count :one SET #ttl = :ttl")
                .condition_expression("attribute_not_exists(#count) OR #count < :limit")
                .expression_attribute_names("#count", "count")
                .expression_attribute_names("#ttl", "ttl")
                .expression_attribute_values(":one", n(1))
                .expression_attribute_values(":limit", n(token.limit.into()))
                // Kept a little past its window, then DynamoDB's TTL removes it.
                .expression_attribute_values(":ttl", AttributeValue::N((window + 2 * RATE_WINDOW_SECS).to_string()))
                .build(),
        )?;
        Ok(TransactWriteItem::builder().update(update).build())
    }
}

impl Table {
    /// Takes a writer's token by itself, with their standing, before work the write is
    /// worth doing for (a direct upload's decode): `RateLimited` when the window is spent,
    /// `Suspended` when they are. Taken, not read: requests sent at once cannot all pass a
    /// window with one token left, as they could pass a read of it.
    pub async fn charge_writer(&self, token: &RateToken) -> Result<(), StoreError> {
        // The key, if any, is recorded with the write itself, not here.
        let unkeyed = RateToken {
            idempotency: None,
            ..token.clone()
        };
        match self
            .transact_as_writer(vec![self.take_rate_token(&unkeyed)?], &unkeyed)
            .await?
        {
            Ok(()) => Ok(()),
            // Its one condition besides the standing: the window is spent.
            Err(_) => Err(token.refused()),
        }
    }

    /// Takes a token by itself, for work that wrote nothing: `RateLimited` when the window is
    /// spent.
    pub async fn charge_rate(&self, token: &RateToken) -> Result<(), StoreError> {
        match self.transact(vec![self.take_rate_token(token)?]).await? {
            Ok(()) => Ok(()),
            // Its one condition: the window is spent.
            Err(_) => Err(token.refused()),
        }
    }
}
