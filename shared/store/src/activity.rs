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

/// DynamoDB's most actions in one transaction.
const TRANSACTION_MAX_ACTIONS: usize = 100;

/// Transactions of one round [`Table::transact_counted`] runs at once.
const TRANSACTIONS_AT_ONCE: usize = 8;

/// A conditional write that lists or unlists one of `author`'s posts or comments, moving their
/// count by `delta` when it applies.
pub(super) struct CountedWrite {
    pub(super) author: String,
    pub(super) action: TransactWriteItem,
    pub(super) delta: i64,
}

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

    /// Applies conditional writes that each list or unlist one of an author's posts or comments,
    /// with their authors' counts, many to a transaction ([`pack_by_author`]): one transaction
    /// per write made relisting a post with 30,000 comments 30,000 round trips, past a stream
    /// record's deadline, and wrote a count item per comment. A round's transactions touch
    /// different authors and run side by side; rounds run one after another, so an author's
    /// count is never in two transactions at once (they would conflict and back off). A write
    /// whose condition fails (done already, or its item changed since it was read) cancels its
    /// transaction, which is tried again without it. Answers how many writes were applied.
    pub(super) async fn transact_counted(&self, what: Listed, writes: Vec<CountedWrite>) -> Result<usize, StoreError> {
        let mut applied = 0;
        for round in pack_by_author(writes) {
            let done: Vec<usize> = futures::stream::iter(round)
                .map(|transaction| self.apply_counted(what, transaction))
                .buffer_unordered(TRANSACTIONS_AT_ONCE)
                .collect::<Vec<_>>()
                .await
                .into_iter()
                .collect::<Result<_, _>>()?;
            applied += done.into_iter().sum::<usize>();
        }
        Ok(applied)
    }

    /// One packed transaction: its writes, then each author's count moved by the sum of their
    /// writes' deltas; again without the writes whose conditions failed, until none does.
    async fn apply_counted(&self, what: Listed, mut writes: Vec<CountedWrite>) -> Result<usize, StoreError> {
        while !writes.is_empty() {
            let mut deltas: Vec<(&str, i64)> = Vec::new();
            for write in &writes {
                match deltas.iter_mut().find(|(author, _)| *author == write.author) {
                    Some((_, delta)) => *delta += write.delta,
                    None => deltas.push((&write.author, write.delta)),
                }
            }
            let mut actions: Vec<TransactWriteItem> = writes.iter().map(|w| w.action.clone()).collect();
            for (author, delta) in deltas {
                actions.push(self.count_listing(author, what, delta)?);
            }
            let Err(cancelled) = self.transact(actions).await? else {
                return Ok(writes.len());
            };
            let before = writes.len();
            let mut index = 0;
            writes.retain(|_| {
                index += 1;
                !cancelled.failed(index - 1)
            });
            // Counts are unconditional: only a write's own condition can fail.
            if writes.len() == before {
                return Err(StoreError::Internal(format!(
                    "a counted transaction was cancelled by no write's condition: {:?}",
                    cancelled.codes
                )));
            }
        }
        Ok(0)
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

/// Packs counted writes into rounds of transactions. Each author's writes go in pieces of at
/// most 99 (their count is one more action), the n-th piece of every author in round n, and
/// a round's pieces, largest first, into the first transaction with room (at most 100
/// actions): no author is in two transactions of a round, nor twice in one.
fn pack_by_author(writes: Vec<CountedWrite>) -> Vec<Vec<Vec<CountedWrite>>> {
    let mut by_author: Vec<Vec<CountedWrite>> = Vec::new();
    let mut position: HashMap<String, usize> = HashMap::new();
    for write in writes {
        let next = by_author.len();
        let at = *position.entry(write.author.clone()).or_insert(next);
        if at == next {
            by_author.push(Vec::new());
        }
        by_author[at].push(write);
    }
    let mut rounds = Vec::new();
    loop {
        let mut pieces: Vec<Vec<CountedWrite>> = by_author
            .iter_mut()
            .filter(|writes| !writes.is_empty())
            .map(|writes| {
                let take = writes.len().min(TRANSACTION_MAX_ACTIONS - 1);
                writes.drain(..take).collect()
            })
            .collect();
        if pieces.is_empty() {
            return rounds;
        }
        pieces.sort_by_key(|piece| std::cmp::Reverse(piece.len()));
        // (actions, writes) of transactions that still have room for a piece (2 actions).
        let mut open: Vec<(usize, Vec<CountedWrite>)> = Vec::new();
        let mut full = Vec::new();
        for piece in pieces {
            let cost = piece.len() + 1;
            match open.iter().position(|(used, _)| used + cost <= TRANSACTION_MAX_ACTIONS) {
                Some(at) => {
                    open[at].0 += cost;
                    open[at].1.extend(piece);
                    if open[at].0 + 2 > TRANSACTION_MAX_ACTIONS {
                        full.push(open.swap_remove(at).1);
                    }
                }
                None => open.push((cost, piece)),
            }
        }
        full.extend(open.into_iter().map(|(_, writes)| writes));
        rounds.push(full);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writes(authors: &[(&str, usize)]) -> Vec<CountedWrite> {
        authors
            .iter()
            .flat_map(|(author, n)| {
                (0..*n).map(|_| CountedWrite {
                    author: author.to_string(),
                    action: TransactWriteItem::builder().build(),
                    delta: -1,
                })
            })
            .collect()
    }

    /// Every write once; no transaction over 100 actions (a write each, a count per author in
    /// it); no author twice in a round; and close to the fewest transactions possible.
    fn check(authors: &[(&str, usize)], most_transactions: usize) {
        let rounds = pack_by_author(writes(authors));
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut transactions = 0;
        for round in &rounds {
            let mut in_round = std::collections::HashSet::new();
            for transaction in round {
                transactions += 1;
                let authors: std::collections::HashSet<&str> = transaction.iter().map(|w| w.author.as_str()).collect();
                assert!(transaction.len() + authors.len() <= TRANSACTION_MAX_ACTIONS);
                for author in authors {
                    assert!(in_round.insert(author.to_string()), "{author} twice in a round");
                }
                for write in transaction {
                    *seen.entry(write.author.clone()).or_default() += 1;
                }
            }
        }
        for (author, n) in authors {
            assert_eq!(seen.get(*author), Some(n), "{author}'s writes");
        }
        assert!(
            transactions <= most_transactions,
            "{transactions} transactions, expected at most {most_transactions}"
        );
    }

    #[test]
    fn packs_many_writes_to_a_transaction_and_one_authors_count_to_one_at_a_time() {
        check(&[], 0);
        check(&[("a", 1)], 1);
        // One author: 99 writes and the count in each transaction.
        check(&[("a", 99)], 1);
        check(&[("a", 250)], 3);
        // 1,000 authors of one write each: 50 to a transaction.
        let many: Vec<String> = (0..1000).map(|i| format!("u{i}")).collect();
        let singles: Vec<(&str, usize)> = many.iter().map(|a| (a.as_str(), 1)).collect();
        check(&singles, 20);
        // A mix: a heavy author across rounds, the rest filling the room beside them.
        let mut mixed = vec![("heavy", 110), ("medium", 25)];
        mixed.extend(singles.iter().take(25));
        check(&mixed, 3);
    }
}
