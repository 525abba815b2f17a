//! A user's activity counts: how many of their posts and comments are listed (have user-index
//! keys: not deleted, not removed, not on a removed post). One item per user (`USER#<uid>` /
//! `ACTIVITY`), moved in the same transaction as the listing it counts, each on that
//! listing's own condition, so it moves exactly when the index does. A user page reads this
//! one item; it counted the index before, a cost that grew with everything the user had
//! written (about 1,600 read units and 13 sequential Queries for 100,000 comments).

use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem, Update};

use super::error::StoreError;
use super::items::{key, s};
use super::keys;
use super::tx::built;
use super::{Item, Table};

/// What a count is of.
#[derive(Clone, Copy, Debug)]
pub(super) enum Listed {
    Posts,
    Comments,
}

impl Listed {
    fn attribute(self) -> &'static str {
        match self {
            Listed::Posts => "posts",
            Listed::Comments => "comments",
        }
    }
}

impl Table {
    /// Adds `delta` to `user`'s count of `what`: an action for the transaction that lists or
    /// unlists it. Unconditional, so it never cancels the transaction it rides in.
    pub(super) fn count_listing(&self, user: &str, what: Listed, delta: i64) -> Result<TransactWriteItem, StoreError> {
        let update = built(
            Update::builder()
                .table_name(&self.name)
                .set_key(Some(key(keys::user_pk(user), keys::ACTIVITY_SK)))
                .update_expression("SET #type = :type ADD #count :delta")
                .expression_attribute_names("#type", "type")
                .expression_attribute_names("#count", what.attribute())
                .expression_attribute_values(":type", s("activity"))
                .expression_attribute_values(":delta", AttributeValue::N(delta.to_string()))
                .build(),
        )?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// How many posts and comments a user has listed: one eventually consistent read of the
    /// counts item (a user who never wrote has none: 0 and 0).
    pub async fn activity_counts(&self, user_id: &str) -> Result<(u64, u64), StoreError> {
        let found = self
            .batch_get(vec![key(keys::user_pk(user_id), keys::ACTIVITY_SK)])
            .await?;
        let count = |item: &Item, what: Listed| {
            item.get(what.attribute())
                .and_then(|v| v.as_n().ok())
                .and_then(|n| n.parse::<i64>().ok())
                // Never below zero, should an item ever say so.
                .map_or(0, |n| u64::try_from(n).unwrap_or(0))
        };
        Ok(found.first().map_or((0, 0), |item| {
            (count(item, Listed::Posts), count(item, Listed::Comments))
        }))
    }
}
