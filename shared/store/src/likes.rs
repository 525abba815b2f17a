//! Likes: exact counts under concurrency, and whether a viewer likes a post.

use super::items::{LikeCount, decode, key, like_item};
use super::rate::RateToken;
use super::tx::{TRANSACTION_ATTEMPTS, built};
use aws_sdk_dynamodb::types::{Delete, TransactWriteItem};

use super::Table;
use super::error::{Entity, StoreError};
use super::keys;
use forum_domain::model::LikeState;

impl Table {
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
            let cancelled = match self.transact_as_writer(like, rate).await? {
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
            match self.transact_as_writer(unlike, rate).await? {
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
        match self.transact_as_writer(actions, rate).await? {
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
