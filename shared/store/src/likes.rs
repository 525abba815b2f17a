//! Likes: exact counts under concurrency, and whether a viewer likes a post.
//!
//! Whether a viewer likes the posts of a page is read from the viewer's own partition: one
//! item per window of time (`LIKED#<window>`, the posts' ULID prefix) holding the ids of the
//! posts of that window the viewer likes, written in the like's own transaction, so it is
//! exact. A page of 20 posts reads one or two such items (0.5 RCU each) instead of 20 like
//! keys in 20 posts' partitions (10 RCU). A window holds at most [`MAX_LIKED_PER_WINDOW`]
//! ids; a viewer who likes more posts of one window marks it `overflow`, and pages read
//! that window's posts' like keys instead (exact, at the old price).

use std::collections::HashSet;

use super::items::{LikeCount, decode, get_s, key, like_item, s};
use super::rate::RateToken;
use super::tx::{Cancelled, TRANSACTION_ATTEMPTS, built};
use aws_sdk_dynamodb::types::{AttributeValue, Delete, TransactWriteItem, Update};

use super::error::{Entity, StoreError};
use super::keys;
use super::{Item, Table};
use forum_domain::model::LikeState;

/// Post ids one window item holds: about 2.7 KB, so a like's update of it costs at most 6 WCU
/// (3 KB, doubled in a transaction), usually 2.
pub const MAX_LIKED_PER_WINDOW: usize = 100;

/// What a like does to the liker's window item, and whether that window is (to be) full.
fn window_change(
    table: &Table,
    user_id: &str,
    post_id: &str,
    liked: bool,
    full: bool,
) -> Result<Option<TransactWriteItem>, StoreError> {
    let Some(window) = keys::liked_window_sk(post_id) else {
        return Ok(None);
    };
    let update = Update::builder()
        .table_name(&table.name)
        .set_key(Some(key(keys::user_pk(user_id), window)))
        .expression_attribute_names("#type", "type")
        .expression_attribute_values(":type", s("liked"));
    let update = match (liked, full) {
        // Room left (and not overflowed): add the id.
        (true, false) => update
            .update_expression("SET #type = :type ADD liked :post")
            .condition_expression(
                "attribute_not_exists(overflow) AND (attribute_not_exists(liked) OR size(liked) < :max)",
            )
            .expression_attribute_values(":post", AttributeValue::Ss(vec![post_id.to_string()]))
            .expression_attribute_values(":max", AttributeValue::N(MAX_LIKED_PER_WINDOW.to_string())),
        // Full, or overflowed before: from now on its posts' like keys answer.
        (true, true) => update
            .update_expression("SET #type = :type, overflow = :yes REMOVE liked")
            .expression_attribute_values(":yes", AttributeValue::Bool(true)),
        (false, _) => update
            .update_expression("SET #type = :type DELETE liked :post")
            .expression_attribute_values(":post", AttributeValue::Ss(vec![post_id.to_string()])),
    };
    Ok(Some(
        TransactWriteItem::builder().update(built(update.build())?).build(),
    ))
}

/// The window items that tell which of `post_ids` `viewer` likes (one per window), and the
/// posts no window can tell (ids that are not ULIDs: their like keys).
pub(super) fn liked_keys(viewer: &str, post_ids: &[String]) -> Vec<Item> {
    let mut windows: Vec<String> = Vec::new();
    let mut keys_wanted = Vec::new();
    for post_id in post_ids {
        match keys::liked_window_sk(post_id) {
            Some(window) if !windows.contains(&window) => {
                keys_wanted.push(key(keys::user_pk(viewer), window.clone()));
                windows.push(window);
            }
            Some(_) => {}
            None => keys_wanted.push(key(keys::post_pk(post_id), keys::like_sk(viewer))),
        }
    }
    keys_wanted
}

/// What the viewer's likes read so far answer: the liked posts among those asked, and the
/// windows that overflowed (their posts' like keys must be read).
#[derive(Default)]
pub(super) struct LikedRead {
    pub(super) liked: HashSet<String>,
    overflowed: HashSet<String>,
}

impl LikedRead {
    /// Takes in one item the read returned, if it is about likes: `true` when it was.
    pub(super) fn take(&mut self, item: &Item, asked: &HashSet<&str>) -> bool {
        match get_s(item, keys::SK).as_deref() {
            Some(sk) if sk.starts_with(keys::LIKED_PREFIX) => {
                if item.contains_key("overflow") {
                    self.overflowed.insert(sk.to_string());
                } else if let Some(ids) = item.get("liked").and_then(|v| v.as_ss().ok()) {
                    self.liked
                        .extend(ids.iter().filter(|id| asked.contains(id.as_str())).cloned());
                }
                true
            }
            Some(sk) if sk.starts_with("LIKE#") => {
                if let Some(pid) = get_s(item, keys::PK).as_deref().and_then(keys::post_id_in) {
                    self.liked.insert(pid);
                }
                true
            }
            _ => false,
        }
    }
}

impl Table {
    /// Completes `read` for the posts of overflowed windows from their like keys (one more
    /// BatchGetItem, for a viewer who liked over 100 posts of one window); answers the liked.
    pub(super) async fn liked_among(
        &self,
        mut read: LikedRead,
        viewer: &str,
        post_ids: &[String],
    ) -> Result<HashSet<String>, StoreError> {
        if read.overflowed.is_empty() {
            return Ok(read.liked);
        }
        let wanted: Vec<Item> = post_ids
            .iter()
            .filter(|id| keys::liked_window_sk(id).is_some_and(|w| read.overflowed.contains(&w)))
            .map(|id| key(keys::post_pk(id), keys::like_sk(viewer)))
            .collect();
        let asked: HashSet<&str> = post_ids.iter().map(String::as_str).collect();
        let mut liked = std::mem::take(&mut read.liked);
        let mut fallback = LikedRead::default();
        for item in self.batch_get(wanted).await? {
            fallback.take(&item, &asked);
        }
        liked.extend(fallback.liked);
        Ok(liked)
    }

    /// Runs a like's or unlike's `actions` with the liker's window change last; a full window
    /// is marked overflowed in a second attempt. Answers the cancellation of `actions`
    /// (their indices unchanged).
    async fn transact_like(
        &self,
        actions: Vec<TransactWriteItem>,
        rate: &RateToken,
        post_id: &str,
        liked: bool,
    ) -> Result<Result<(), Cancelled>, StoreError> {
        let window_at = actions.len();
        for full in [false, true] {
            let mut all = actions.clone();
            all.extend(window_change(self, &rate.user_id, post_id, liked, full)?);
            match self.transact_as_writer(all, rate).await? {
                Ok(()) => return Ok(Ok(())),
                // Only the window refused (full): mark it and try again.
                Err(c) if liked && !full && c.failed(window_at) && (0..window_at).all(|i| !c.failed(i)) => continue,
                Err(c) => return Ok(Err(c)),
            }
        }
        Err(StoreError::Internal(
            "a liked window refused even its overflow mark".into(),
        ))
    }

    /// Toggles `user_id`'s like on a post and returns the committed state. A like is one
    /// transaction (like item only if absent + counter +1 only if the post exists + a
    /// rate-limit token) and a consistent read of the count: 2 round trips. When the like
    /// exists, the mirror-image unlike follows: 3. Concurrent toggles by one user can never
    /// count twice: the like item's existence decides, and the counter moves with it.
    pub async fn toggle_like(
        &self,
        post_id: &str,
        user_id: &str,
        rate: &RateToken,
        now: &str,
    ) -> Result<LikeState, StoreError> {
        let like_key = key(keys::post_pk(post_id), keys::like_sk(user_id));
        for _ in 0..TRANSACTION_ATTEMPTS {
            let like = vec![
                self.take_rate_token(rate)?,
                self.bump_post(post_id, "like_count", 1)?,
                self.put(like_item(post_id, user_id, now)?, Some("attribute_not_exists(pk)"))?,
            ];
            let cancelled = match self.transact_like(like, rate, post_id, true).await? {
                Ok(()) => return self.committed_likes(post_id, true).await,
                Err(c) => c,
            };
            if cancelled.failed(1) {
                return Err(StoreError::NotFound(Entity::Post));
            }
            if cancelled.failed(0) {
                return Err(rate.refused());
            }
            // Already liked: unlike.
            let delete = built(
                Delete::builder()
                    .table_name(&self.name)
                    .set_key(Some(like_key.clone()))
                    .condition_expression("attribute_exists(pk)")
                    .build(),
            )?;
            let unlike = vec![
                self.take_rate_token(rate)?,
                self.bump_post(post_id, "like_count", -1)?,
                TransactWriteItem::builder().delete(delete).build(),
            ];
            match self.transact_like(unlike, rate, post_id, false).await? {
                Ok(()) => return self.committed_likes(post_id, false).await,
                Err(c) if c.failed(1) => return Err(StoreError::NotFound(Entity::Post)),
                Err(c) if c.failed(0) => return Err(rate.refused()),
                // A concurrent toggle by the same user removed the like first: decide again.
                Err(_) => continue,
            }
        }
        Err(StoreError::Unavailable(
            "like kept racing with concurrent toggles".into(),
        ))
    }

    /// Sets `user_id`'s like to `liked` and returns the committed state: one transaction (the
    /// like or the unlike), then a consistent read of the count. When the like already is as
    /// asked, the transaction is cancelled by its own condition: nothing changes and no rate
    /// token is taken, so a retried request is harmless.
    pub async fn set_like(
        &self,
        post_id: &str,
        user_id: &str,
        rate: &RateToken,
        now: &str,
        liked: bool,
    ) -> Result<LikeState, StoreError> {
        let change = if liked {
            self.put(like_item(post_id, user_id, now)?, Some("attribute_not_exists(pk)"))?
        } else {
            let delete = built(
                Delete::builder()
                    .table_name(&self.name)
                    .set_key(Some(key(keys::post_pk(post_id), keys::like_sk(user_id))))
                    .condition_expression("attribute_exists(pk)")
                    .build(),
            )?;
            TransactWriteItem::builder().delete(delete).build()
        };
        let actions = vec![
            self.take_rate_token(rate)?,
            self.bump_post(post_id, "like_count", if liked { 1 } else { -1 })?,
            change,
        ];
        match self.transact_like(actions, rate, post_id, liked).await? {
            Ok(()) => self.committed_likes(post_id, liked).await,
            Err(c) if c.failed(1) => Err(StoreError::NotFound(Entity::Post)),
            // Already as asked.
            Err(c) if c.failed(2) => self.committed_likes(post_id, liked).await,
            Err(c) if c.failed(0) => Err(rate.refused()),
            Err(c) => Err(StoreError::Internal(format!("like refused: {:?}", c.codes))),
        }
    }

    pub(super) async fn committed_likes(&self, post_id: &str, is_liked: bool) -> Result<LikeState, StoreError> {
        let item = self
            .get_one(key(keys::post_pk(post_id), keys::POST_SK), true, Some("like_count"))
            .await?
            .ok_or(StoreError::NotFound(Entity::Post))?;
        let LikeCount { like_count } = decode(&item)?;
        Ok(LikeState { is_liked, like_count })
    }

    /// Whether `user_id` likes a post.
    pub async fn likes(&self, post_id: &str, user_id: &str) -> Result<bool, StoreError> {
        let item = self
            .get_one(key(keys::post_pk(post_id), keys::like_sk(user_id)), false, Some("pk"))
            .await?;
        Ok(item.is_some())
    }
}
