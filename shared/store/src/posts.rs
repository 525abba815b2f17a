//! Posts: create, read, edit, delete, the feed, and what a deleted post leaves behind.

use super::activity::{CountedWrite, Listed};
use super::blocks::{ViewerState, blocked_set};
use super::items::{get_s, key, mentions_value, post_from_item, post_item, s};
use super::media::{OwnMedia, media_refused};
use super::page::{HasSortId, ListSpec, Order, Page, feed_scope, user_posts_scope};
use super::rate::RateToken;
use super::tx::built;
use std::collections::{HashMap, HashSet};

use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, Delete, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};

use super::Table;
use super::error::{Entity, StoreError};
use super::keys;
use forum_domain::cursor::PageCursor;
use forum_domain::model::{Post, Profile};

/// Who makes an edit and when: the caller (who must own what they edit), the edit's time,
/// their rate-limit token, and their profile when it is due to be written.
#[derive(Clone, Copy, Debug)]
pub struct Editor<'a> {
    pub caller: &'a str,
    pub edited_at: &'a str,
    pub rate: &'a RateToken,
    pub author: Option<&'a Profile>,
}

/// What a conditional write on a post found when its condition failed.
pub(super) enum OwnedWriteFailure {
    Missing,
    NotOwner,
}

/// A post or comment that exists and no moderator has removed.
pub(super) const POST_LIVE: &str = "attribute_exists(pk) AND attribute_not_exists(removed)";
pub(super) const OWN_LIVE: &str = "attribute_exists(pk) AND attribute_not_exists(removed) AND user_id = :caller";

/// What a failed ownership condition saw: a removed item is gone for its author too.
pub(super) fn owned_write_failure(seen: Option<&super::Item>) -> OwnedWriteFailure {
    if seen.is_some_and(|item| !item.contains_key(keys::REMOVED_ATTR)) {
        OwnedWriteFailure::NotOwner
    } else {
        OwnedWriteFailure::Missing
    }
}

impl OwnedWriteFailure {
    pub(super) fn into_error(self) -> StoreError {
        match self {
            OwnedWriteFailure::Missing => StoreError::NotFound(Entity::Post),
            OwnedWriteFailure::NotOwner => StoreError::NotOwner(Entity::Post),
        }
    }
}

impl Table {
    /// Adds `delta` to a post's counter, only if the post exists and is not removed: while a
    /// moderator has removed it, no like and no new comment changes it (so its counters move
    /// exactly once, whatever the order of removal, restore and writes). What may still move
    /// it then conditions on the post existing only: a moderator's removal or restore of a
    /// comment, and a commenter deleting their own.
    pub(super) fn bump_post(&self, post_id: &str, counter: &str, delta: i64) -> Result<TransactWriteItem, StoreError> {
        self.bump_post_if(post_id, counter, delta, POST_LIVE)
    }

    /// Adds `delta` to a post's counter under `condition` (a moderator's removal of a comment
    /// counts on a removed post too).
    pub(super) fn bump_post_if(
        &self,
        post_id: &str,
        counter: &str,
        delta: i64,
        condition: &str,
    ) -> Result<TransactWriteItem, StoreError> {
        let update = built(
            Update::builder()
                .table_name(&self.name)
                .set_key(Some(key(keys::post_pk(post_id), keys::POST_SK)))
                .update_expression("ADD #counter :delta")
                .condition_expression(condition)
                .expression_attribute_names("#counter", counter)
                .expression_attribute_values(":delta", AttributeValue::N(delta.to_string()))
                .build(),
        )?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    pub(super) fn post_exists_check(&self, post_id: &str) -> Result<TransactWriteItem, StoreError> {
        let check = built(
            ConditionCheck::builder()
                .table_name(&self.name)
                .set_key(Some(key(keys::post_pk(post_id), keys::POST_SK)))
                .condition_expression(POST_LIVE)
                .build(),
        )?;
        Ok(TransactWriteItem::builder().condition_check(check).build())
    }

    /// Writes a new post, its author's profile (when it changed) and a rate-limit token in one
    /// transaction: one round trip, and nothing written when over the limit.
    /// Media it shows must be the author's own and unused: claimed in the same transaction.
    pub async fn create_post(
        &self,
        post: &Post,
        author: Option<&Profile>,
        rate: &RateToken,
        media: Option<&OwnMedia>,
    ) -> Result<Option<Profile>, StoreError> {
        let mut actions = vec![
            self.take_rate_token(rate)?,
            self.put(post_item(post)?, Some("attribute_not_exists(pk)"))?,
        ];
        if let Some(media) = media {
            actions.push(self.claim_media(media, &post.user_id, &post.id, rate.now)?);
        }
        actions.push(self.count_listing(&post.user_id, Listed::Posts, 1)?);
        match self.transact_as_author(actions, author, &post.created_at, rate).await? {
            Ok(written) => Ok(written),
            Err(c) if media.is_some() && c.failed(2) => Err(media_refused(c.item(2), &post.user_id, &post.id)),
            Err(c) if c.failed(0) => Err(rate.refused()),
            Err(c) => Err(StoreError::Internal(format!("post write refused: {:?}", c.codes))),
        }
    }

    /// Removes what hangs off a deleted post: its comments, likes and subscriptions.
    /// Idempotent; the stream handler runs it after the post item is gone. The listed comments
    /// (on their authors' pages) go many to a transaction with their authors' counts
    /// ([`Table::transact_counted`]), each on the condition that it is still listed: a retried
    /// record uncounts nothing twice.
    pub async fn delete_post_leftovers(&self, post_id: &str) -> Result<usize, StoreError> {
        let mut doomed = Vec::new();
        for pk in [keys::post_pk(post_id), keys::sub_pk(post_id)] {
            let query = self
                .client
                .query()
                .table_name(&self.name)
                // Consistent: a restore's relisting just before the delete must be seen, or its
                // comments would go uncounted (and a removal's, or they would be left behind).
                .consistent_read(true)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(&pk))
                .projection_expression("pk, sk, user_id, #user_pk")
                .expression_attribute_names("#user_pk", keys::USER_PK);
            doomed.extend(self.query_every(query).await?);
        }
        let count = doomed.len();
        let mut counted = Vec::new();
        let mut plain = Vec::new();
        for item in doomed {
            let listed_comment = get_s(&item, keys::SK).is_some_and(|sk| sk.starts_with(keys::COMMENT_PREFIX))
                && item.contains_key(keys::USER_PK);
            let key_only = key(
                get_s(&item, keys::PK).unwrap_or_default(),
                get_s(&item, keys::SK).unwrap_or_default(),
            );
            match get_s(&item, "user_id").filter(|_| listed_comment) {
                Some(author) => {
                    let delete = Delete::builder()
                        .table_name(&self.name)
                        .set_key(Some(key_only))
                        .condition_expression("attribute_exists(#user_pk)")
                        .expression_attribute_names("#user_pk", keys::USER_PK)
                        .build();
                    counted.push(CountedWrite {
                        author,
                        action: TransactWriteItem::builder().delete(built(delete)?).build(),
                        delta: -1,
                    });
                }
                None => plain.push(key_only),
            }
        }
        // Once the post item is gone nothing lists or unlists its comments (every such write
        // conditions on the post), so a cancelled delete was done by an earlier try.
        self.transact_counted(Listed::Comments, counted).await?;
        self.batch_delete(plain).await?;
        Ok(count)
    }

    /// A post's current counters (consistent), for events about it.
    pub async fn post_now(&self, post_id: &str) -> Result<Option<Post>, StoreError> {
        let item = self
            .get_one(key(keys::post_pk(post_id), keys::POST_SK), true, None)
            .await?;
        item.as_ref().map(post_from_item).transpose()
    }

    /// Whether a post exists and, unless `with_removed`, no moderator removed it (strongly
    /// consistent: a deleted or removed post is gone at once), and whom `viewer` blocks: one
    /// BatchGetItem.
    pub async fn post_visible(
        &self,
        post_id: &str,
        viewer: &str,
        with_removed: bool,
    ) -> Result<(bool, HashSet<String>), StoreError> {
        let post_key = key(keys::post_pk(post_id), keys::POST_SK);
        let blocks_key = key(keys::user_pk(viewer), keys::BLOCKS_SK);
        let mut visible = false;
        let mut blocked = HashSet::new();
        for item in self.batch_get_consistent(vec![post_key, blocks_key]).await? {
            match get_s(&item, keys::SK).as_deref() {
                Some(keys::POST_SK) => visible = with_removed || !item.contains_key(keys::REMOVED_ATTR),
                Some(keys::BLOCKS_SK) => blocked = blocked_set(&item),
                _ => {}
            }
        }
        Ok((visible, blocked))
    }

    /// Who wrote a post (its author never changes), or `None` when it is gone or removed.
    pub async fn post_author(&self, post_id: &str) -> Result<Option<String>, StoreError> {
        let item = self
            .get_one(
                key(keys::post_pk(post_id), keys::POST_SK),
                true,
                Some("user_id, removed"),
            )
            .await?;
        Ok(item
            .filter(|item| !item.contains_key(keys::REMOVED_ATTR))
            .and_then(|item| get_s(&item, "user_id")))
    }

    /// A post and whether `viewer` likes it, in one BatchGetItem.
    pub async fn get_post(&self, post_id: &str, viewer: &str) -> Result<Option<(Post, bool)>, StoreError> {
        self.post_and_like(post_id, viewer, false).await
    }

    async fn post_and_like(
        &self,
        post_id: &str,
        viewer: &str,
        consistent: bool,
    ) -> Result<Option<(Post, bool)>, StoreError> {
        let post_key = key(keys::post_pk(post_id), keys::POST_SK);
        let like_key = key(keys::post_pk(post_id), keys::like_sk(viewer));
        let wanted = vec![post_key, like_key];
        let items = if consistent {
            self.batch_get_consistent(wanted).await?
        } else {
            self.batch_get(wanted).await?
        };
        let mut post = None;
        let mut liked = false;
        for item in &items {
            match get_s(item, keys::SK).as_deref() {
                Some(keys::POST_SK) => post = Some(post_from_item(item)?),
                Some(_) => liked = true,
                None => {}
            }
        }
        Ok(post.map(|p| (p, liked)))
    }

    /// One page of the global feed, newest first, and which of its posts `viewer` likes. gsi1
    /// holds keys only, so a post's counters and edits never write the feed's one partition:
    /// the Query reads the page's ids, then one BatchGetItem reads the posts with the
    /// viewer's likes (two round trips, as when the index held the posts).
    pub async fn feed_page(
        &self,
        position: Option<&PageCursor>,
        limit: usize,
        viewer: &str,
    ) -> Result<(Page<Post>, ViewerState), StoreError> {
        let spec = ListSpec {
            scope: feed_scope(),
            index: Some(keys::FEED_INDEX),
            pk_attr: keys::FEED_PK,
            pk: keys::FEED_PARTITION.to_string(),
            sk_attr: keys::FEED_SK,
            sk_prefix: keys::POST_PREFIX,
            order: Order::NewestFirst,
            // A removed post has no feed keys: the index never lists it.
            hide_removed: false,
        };
        let ids = self.page(&spec, position, limit, feed_entry).await?;
        self.posts_of_page(ids, viewer).await
    }

    /// One page of a user's posts, newest first (the user index: a removed post has no keys
    /// there), with the viewer's likes and blocks: a Query, then one BatchGetItem.
    pub async fn user_posts_page(
        &self,
        author: &str,
        position: Option<&PageCursor>,
        limit: usize,
        viewer: &str,
    ) -> Result<(Page<Post>, ViewerState), StoreError> {
        let spec = ListSpec {
            scope: user_posts_scope(author),
            index: Some(keys::USER_INDEX),
            pk_attr: keys::USER_PK,
            pk: keys::user_pk(author),
            sk_attr: keys::USER_SK,
            sk_prefix: keys::POST_PREFIX,
            order: Order::NewestFirst,
            hide_removed: false,
        };
        let ids = self.page(&spec, position, limit, user_post_entry).await?;
        self.posts_of_page(ids, viewer).await
    }

    /// The posts a page of ids names, with the viewer's likes and blocks, in one BatchGetItem.
    async fn posts_of_page(&self, ids: Page<FeedEntry>, viewer: &str) -> Result<(Page<Post>, ViewerState), StoreError> {
        let mut wanted: Vec<_> = ids
            .items
            .iter()
            .map(|e| key(keys::post_pk(&e.0), keys::POST_SK))
            .collect();
        let post_ids: Vec<String> = ids.items.iter().map(|e| e.0.clone()).collect();
        wanted.extend(super::likes::liked_keys(viewer, &post_ids));
        wanted.push(key(keys::user_pk(viewer), keys::BLOCKS_SK));
        let mut posts = HashMap::new();
        let mut state = ViewerState::default();
        let asked: HashSet<&str> = post_ids.iter().map(String::as_str).collect();
        let mut liked = super::likes::LikedRead::default();
        for item in self.batch_get(wanted).await? {
            if liked.take(&item, &asked) {
                continue;
            }
            match get_s(&item, keys::SK).as_deref() {
                Some(keys::POST_SK) => {
                    let post = post_from_item(&item)?;
                    posts.insert(post.id.clone(), post);
                }
                Some(keys::BLOCKS_SK) => state.blocked = blocked_set(&item),
                _ => {}
            }
        }
        state.liked = self.liked_among(liked, viewer, &post_ids).await?;
        // In the page's order; a post deleted since the Query is left out.
        // A post removed since the Query (its feed keys go with the removal) is left out too.
        let items = ids
            .items
            .into_iter()
            .filter_map(|e| posts.remove(&e.0))
            .filter(|post| post.removed.is_none())
            .collect();
        Ok((
            Page {
                items,
                next: ids.next,
                previous: ids.previous,
            },
            state,
        ))
    }

    /// Edits a post if `caller` owns it; returns the post as now stored and whether `caller`
    /// likes it. Two round trips, concurrent: a transaction (the edit, a rate-limit token and,
    /// with new media, its claim) beside a BatchGetItem of the post and the caller's like, onto
    /// which the edit's own fields are laid (the read may see the post just before the edit).
    pub async fn update_post(
        &self,
        post_id: &str,
        content: Option<(&str, &[String])>,
        media_url: Option<Option<&str>>,
        new_media: Option<&OwnMedia>,
        editor: Editor<'_>,
    ) -> Result<(Post, bool, Option<Profile>), StoreError> {
        let Editor {
            caller,
            edited_at,
            rate,
            author,
        } = editor;
        let mut sets = vec!["edited_at = :edited_at"];
        let mut removes = Vec::new();
        let mut values = HashMap::from([
            (":caller".to_string(), s(caller)),
            (":edited_at".to_string(), s(edited_at)),
        ]);
        if let Some((content, mentions)) = content {
            sets.push("content = :content");
            values.insert(":content".into(), s(content));
            // Who the new text mentions, resolved now (the stream tells those it did not before).
            if mentions.is_empty() {
                removes.push("mentions");
            } else {
                sets.push("mentions = :mentions");
                values.insert(":mentions".into(), mentions_value(mentions));
            }
        }
        match media_url {
            Some(Some(url)) => {
                sets.push("media_url = :media_url");
                values.insert(":media_url".into(), s(url));
            }
            Some(None) => removes.push("media_url"),
            None => {}
        }
        let mut expression = format!("SET {}", sets.join(", "));
        if !removes.is_empty() {
            expression.push_str(&format!(" REMOVE {}", removes.join(", ")));
        }
        let update = built(
            Update::builder()
                .table_name(&self.name)
                .set_key(Some(key(keys::post_pk(post_id), keys::POST_SK)))
                .update_expression(expression)
                .condition_expression(OWN_LIVE)
                .set_expression_attribute_values(Some(values))
                .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
                .build(),
        )?;
        let mut actions = vec![
            TransactWriteItem::builder().update(update).build(),
            self.take_rate_token(rate)?,
        ];
        if let Some(media) = new_media {
            actions.push(self.claim_media(media, caller, post_id, rate.now)?);
        }
        let (written, read) = tokio::join!(
            self.transact_as_author(actions, author, edited_at, rate),
            // Consistent: a post created a moment ago (or just edited) is read as it is, not
            // missed (a 404 for an edit that committed) or stale (an earlier edit's media).
            self.post_and_like(post_id, caller, true)
        );
        let author = match written? {
            Ok(author) => author,
            Err(c) if c.failed(0) => return Err(owned_write_failure(c.item(0)).into_error()),
            Err(c) if c.failed(2) => return Err(media_refused(c.item(2), caller, post_id)),
            Err(c) if c.failed(1) => return Err(rate.refused()),
            Err(c) => return Err(StoreError::Internal(format!("post edit refused: {:?}", c.codes))),
        };
        // Deleted in between: gone is the truthful answer.
        let (mut post, liked) = read?.ok_or(StoreError::NotFound(Entity::Post))?;
        if let Some((content, mentions)) = content {
            post.content = content.to_string();
            post.mentions = mentions.to_vec();
        }
        if let Some(url) = media_url {
            post.media_url = url.map(str::to_string);
        }
        post.edited_at = Some(edited_at.to_string());
        Ok((post, liked, author))
    }

    /// Deletes a post if `caller` owns it, and uncounts it on their page: one transaction. Its
    /// comments and likes become unreachable at once (every read of them checks the post); the
    /// stream removes them.
    pub async fn delete_post(&self, post_id: &str, caller: &str) -> Result<(), StoreError> {
        let delete = built(
            Delete::builder()
                .table_name(&self.name)
                .set_key(Some(key(keys::post_pk(post_id), keys::POST_SK)))
                .condition_expression(OWN_LIVE)
                .expression_attribute_values(":caller", s(caller))
                .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
                .build(),
        )?;
        // A live post is listed: its author's count goes with it.
        let actions = vec![
            TransactWriteItem::builder().delete(delete).build(),
            self.count_listing(caller, Listed::Posts, -1)?,
        ];
        match self.transact(actions).await? {
            Ok(()) => Ok(()),
            Err(c) => Err(owned_write_failure(c.item(0)).into_error()),
        }
    }
}

/// A feed index entry: the post id its sort key carries (the index holds keys only).
struct FeedEntry(String);

impl HasSortId for FeedEntry {
    fn sort_id(&self) -> &str {
        &self.0
    }
}

fn feed_entry(item: &super::Item) -> Result<FeedEntry, StoreError> {
    entry_in(item, keys::FEED_SK)
}

/// A user index entry of a post.
fn user_post_entry(item: &super::Item) -> Result<FeedEntry, StoreError> {
    entry_in(item, keys::USER_SK)
}

fn entry_in(item: &super::Item, sort_attr: &str) -> Result<FeedEntry, StoreError> {
    get_s(item, sort_attr)
        .as_deref()
        .and_then(keys::post_id_in)
        .map(FeedEntry)
        .ok_or_else(|| StoreError::Internal("an index entry without its post id".into()))
}
