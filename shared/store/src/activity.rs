//! A user's activity counts: how many of their posts and comments are listed (have user-index
//! keys: not deleted, not removed, not on a removed post). One item per user (`USER#<uid>` /
//! `ACTIVITY`), moved in the same transaction as the listing it counts, each on that
//! listing's own condition, so it moves exactly when the index does. A user page reads this
//! one item; it counted the index before, a cost that grew with everything the user had
//! written (about 40 entries per read unit and a Query per 1 MB of them, one after another:
//! some 2,500 read units and 15 Queries for 100,000 comments).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem, Update};
use futures::StreamExt;

use super::error::StoreError;
use super::items::{key, s};
use super::keys;
use super::tx::built;
use super::{Item, Table};

/// Authors whose counts [`Table::transact_per_author`] moves at once.
const AUTHORS_AT_ONCE: usize = 8;

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

    /// Runs transactions that each move one author's count (the author named beside each):
    /// one author's one after another, since two at once on their count item would conflict
    /// and back off, a few authors at a time. Answers how many were applied; one its own
    /// condition cancelled (it was done already, or the item changed) is not.
    pub(super) async fn transact_per_author(
        &self,
        changes: Vec<(String, Vec<TransactWriteItem>)>,
    ) -> Result<usize, StoreError> {
        let mut by_author: HashMap<String, Vec<Vec<TransactWriteItem>>> = HashMap::new();
        for (author, actions) in changes {
            by_author.entry(author).or_default().push(actions);
        }
        let applied: Vec<usize> = futures::stream::iter(by_author.into_values())
            .map(|transactions| async move {
                let mut applied = 0;
                for actions in transactions {
                    if self.transact(actions).await?.is_ok() {
                        applied += 1;
                    }
                }
                Ok::<usize, StoreError>(applied)
            })
            .buffer_unordered(AUTHORS_AT_ONCE)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()?;
        Ok(applied.into_iter().sum())
    }

    /// How many posts and comments a user has listed: one eventually consistent read of the
    /// counts item (a user who never wrote has none: 0 and 0).
    pub async fn activity_counts(&self, user_id: &str) -> Result<(u64, u64), StoreError> {
        let found = self
            .batch_get(vec![key(keys::user_pk(user_id), keys::ACTIVITY_SK)])
            .await?;
        let count = |item: &Item, what: Listed| {
            let stored = item
                .get(what.attribute())
                .and_then(|v| v.as_n().ok())
                .and_then(|n| n.parse::<i64>().ok())
                .unwrap_or(0);
            // Never shown below zero; said loudly, since only a count that drifted gets there.
            u64::try_from(stored).unwrap_or_else(|_| {
                tracing::warn!(
                    user_id,
                    count = what.attribute(),
                    stored,
                    "an activity count below zero"
                );
                0
            })
        };
        Ok(found.first().map_or((0, 0), |item| {
            (count(item, Listed::Posts), count(item, Listed::Comments))
        }))
    }
}
