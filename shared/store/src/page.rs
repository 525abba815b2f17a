//! Keyset pagination over a partition or an index, in either direction.

use super::error::StoreError;
use super::items::s;
use super::{Item, Table};
use forum_domain::cursor::{Direction, PageCursor};
use forum_domain::model::Comment;

/// Which way a list is ordered by id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    NewestFirst,
    OldestFirst,
}

/// One page of a keyset-paginated list, with the cursors either side of it.
#[derive(Clone, Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<PageCursor>,
    pub previous: Option<PageCursor>,
}

/// A list the store can page through: a partition of the table or an index, and the
/// sort-key prefix its items share.
pub(super) struct ListSpec<'a> {
    pub(super) scope: String,
    pub(super) index: Option<&'a str>,
    pub(super) pk_attr: &'a str,
    pub(super) pk: String,
    pub(super) sk_attr: &'a str,
    pub(super) sk_prefix: &'a str,
    pub(super) order: Order,
}

/// Sort keys are `<prefix><ULID>`; ULIDs use `0-9A-Z`, so `~` bounds every id from above.
pub(super) const SK_UPPER: &str = "~";

/// The scope a feed cursor is bound to.
pub fn feed_scope() -> String {
    "feed".to_string()
}

/// The scope a comment cursor is bound to: one post's comments.
pub fn comments_scope(post_id: &str) -> String {
    format!("comments:{post_id}")
}

/// Items a list is sorted by: their ULID.
pub(super) trait HasSortId {
    fn sort_id(&self) -> &str;
}

impl HasSortId for Comment {
    fn sort_id(&self) -> &str {
        &self.id
    }
}

impl Table {
    /// Keyset pagination over one list. A page reads `limit + 1` items past its position to
    /// learn whether more exist that way, so every page is one Query. The position's own item
    /// is excluded (it may have been deleted since; the position stays valid either way).
    pub(super) async fn page<T>(
        &self,
        spec: &ListSpec<'_>,
        position: Option<&PageCursor>,
        limit: usize,
        parse: fn(&Item) -> Result<T, StoreError>,
    ) -> Result<Page<T>, StoreError>
    where
        T: HasSortId,
    {
        let lower = spec.sk_prefix.to_string();
        let upper = format!("{}{SK_UPPER}", spec.sk_prefix);
        // Reading "after" in list order means descending ids for a newest-first list.
        let (low, high, ascending) = match (position, spec.order) {
            (None, Order::NewestFirst) => (lower, upper, false),
            (None, Order::OldestFirst) => (lower, upper, true),
            (Some(c), order) => {
                let at = format!("{}{}", spec.sk_prefix, c.key);
                let toward_newer = (c.direction == Direction::Before) == (order == Order::NewestFirst);
                if toward_newer {
                    (at, upper, true)
                } else {
                    (lower, at, false)
                }
            }
        };
        let mut query = self
            .client
            .query()
            .table_name(&self.name)
            .key_condition_expression("#pk = :pk AND #sk BETWEEN :low AND :high")
            .expression_attribute_names("#pk", spec.pk_attr)
            .expression_attribute_names("#sk", spec.sk_attr)
            .expression_attribute_values(":pk", s(&spec.pk))
            .expression_attribute_values(":low", s(low))
            .expression_attribute_values(":high", s(high))
            .scan_index_forward(ascending)
            // +1 to learn whether more exist, +1 for the position's own item if it still exists.
            .limit(limit as i32 + 2);
        match spec.index {
            Some(index) => query = query.index_name(index),
            // Base-table lists read consistently: a comment just written is on the next page read.
            None => query = query.consistent_read(true),
        }
        let out = query.send().await?;
        let mut items = Vec::with_capacity(limit + 1);
        for item in out.items() {
            let parsed = parse(item)?;
            if position.is_some_and(|c| c.key == parsed.sort_id()) {
                continue;
            }
            items.push(parsed);
        }
        let more = items.len() > limit;
        items.truncate(limit);
        let reading_backwards = position.is_some_and(|c| c.direction == Direction::Before);
        if reading_backwards {
            items.reverse();
        }
        let cursor = |direction, key: &str| PageCursor {
            scope: spec.scope.clone(),
            direction,
            key: key.to_string(),
        };
        let first = items.first().map(|i| i.sort_id().to_string());
        let last = items.last().map(|i| i.sort_id().to_string());
        let (next, previous) = match position {
            None => (
                more.then(|| last.as_deref().map(|k| cursor(Direction::After, k)))
                    .flatten(),
                None,
            ),
            Some(c) if c.direction == Direction::After => (
                more.then(|| last.as_deref().map(|k| cursor(Direction::After, k)))
                    .flatten(),
                Some(cursor(Direction::Before, first.as_deref().unwrap_or(&c.key))),
            ),
            Some(c) => (
                Some(cursor(Direction::After, last.as_deref().unwrap_or(&c.key))),
                more.then(|| first.as_deref().map(|k| cursor(Direction::Before, k)))
                    .flatten(),
            ),
        };
        Ok(Page { items, next, previous })
    }
}
