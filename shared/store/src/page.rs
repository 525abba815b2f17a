//! Keyset pagination over a partition or an index, in either direction.

use super::error::StoreError;
use super::items::{get_s, s};
use super::{Item, Table, keys};
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
    /// Leave out items a moderator removed (everyone's view but a moderator's).
    pub(super) hide_removed: bool,
}

/// Queries one page may take when removed items are filtered out of it.
const MAX_QUERIES_PER_PAGE: usize = 5;

/// Sort keys are `<prefix><id>`: ULIDs (`0-9A-Z`), or user ids (blocks), which may hold any
/// character but `#`. DynamoDB compares UTF-8 bytes, and U+10FFFF's encoding is above every
/// other character's, so it bounds every id from above.
pub(super) const SK_UPPER: &str = "\u{10FFFF}";

/// The scope a feed cursor is bound to.
pub fn feed_scope() -> String {
    "feed".to_string()
}

/// The scope a comment cursor is bound to: one post's comments.
pub fn comments_scope(post_id: &str) -> String {
    format!("comments:{post_id}")
}

/// The scope a moderation log cursor is bound to.
pub fn log_scope() -> String {
    "moderation-log".to_string()
}

/// The scope of a cursor over one user's posts.
pub fn user_posts_scope(user_id: &str) -> String {
    format!("user-posts:{user_id}")
}

/// The scope of a cursor over one user's comments.
pub fn user_comments_scope(user_id: &str) -> String {
    format!("user-comments:{user_id}")
}

/// The scope of a cursor over one user's notifications.
pub fn notifications_scope(user_id: &str) -> String {
    format!("notifications:{user_id}")
}

/// The scope a block list cursor is bound to: one user's blocks.
pub fn blocks_scope(user_id: &str) -> String {
    format!("blocks:{user_id}")
}

/// The scope a report queue cursor is bound to.
pub fn reports_scope() -> String {
    "reports".to_string()
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
        if spec.hide_removed {
            query = query
                .filter_expression("attribute_not_exists(#removed)")
                .expression_attribute_names("#removed", keys::REMOVED_ATTR);
        }
        match spec.index {
            Some(index) => query = query.index_name(index),
            // Base-table lists read consistently: a comment just written is on the next page read.
            None => query = query.consistent_read(true),
        }
        let mut items = Vec::with_capacity(limit + 1);
        // A filter applies after `Limit`: removed items read leave a page short, so it reads on
        // from where DynamoDB stopped until the page is full or the list ends (bounded; a list
        // that still has more says so, and the next page goes on from there).
        // Where DynamoDB stopped reading, if it did before the list's end.
        let mut stopped_at: Option<Item> = None;
        for read in 0..MAX_QUERIES_PER_PAGE {
            let out = query.clone().send().await?;
            for item in out.items() {
                let parsed = parse(item)?;
                if position.is_some_and(|c| c.key == parsed.sort_id()) {
                    continue;
                }
                items.push(parsed);
            }
            stopped_at = out.last_evaluated_key().cloned();
            match stopped_at.clone() {
                Some(start) if items.len() <= limit && read + 1 < MAX_QUERIES_PER_PAGE => {
                    query = query.set_exclusive_start_key(Some(start));
                }
                _ => break,
            }
        }
        // Where the next page that way starts: after the page's last item if more were read
        // than it holds; else, stopped at the bound (or DynamoDB's 1 MB) with items unread,
        // after the last item read, shown or not. A run of removed items longer than a page's
        // reads then moves the list on instead of ending it.
        let read_on_from = if items.len() > limit {
            limit
                .checked_sub(1)
                .and_then(|i| items.get(i))
                .map(|i| i.sort_id().to_string())
        } else {
            stopped_at.and_then(|key| {
                get_s(&key, spec.sk_attr)
                    .and_then(|sk| sk.strip_prefix(spec.sk_prefix).map(str::to_string))
                    .or_else(|| items.last().map(|i| i.sort_id().to_string()))
            })
        };
        Ok(Self::finish_page(spec, position, items, limit, read_on_from))
    }

    /// A page's items in list order and its cursors either way; `read_on_from` is where more
    /// may be read in the direction this page was read, if anywhere.
    fn finish_page<T: HasSortId>(
        spec: &ListSpec<'_>,
        position: Option<&PageCursor>,
        mut items: Vec<T>,
        limit: usize,
        read_on_from: Option<String>,
    ) -> Page<T> {
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
            None => (read_on_from.map(|k| cursor(Direction::After, &k)), None),
            Some(c) if c.direction == Direction::After => (
                read_on_from.map(|k| cursor(Direction::After, &k)),
                Some(cursor(Direction::Before, first.as_deref().unwrap_or(&c.key))),
            ),
            Some(c) => (
                Some(cursor(Direction::After, last.as_deref().unwrap_or(&c.key))),
                read_on_from.map(|k| cursor(Direction::Before, &k)),
            ),
        };
        Page { items, next, previous }
    }
}
