//! Uploads: recorded, claimed by one post, decided by `process-media`, released.

use super::items::{get_s, key, media_from_item, media_item, n, s, signed};
use super::rate::RateToken;
use super::tx::{Guard, applied, built};
use aws_sdk_dynamodb::types::{ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update};
use std::collections::HashMap;

use super::error::{MediaRefusal, StoreError};
use super::keys;
use super::{Item, Table};
use forum_domain::model::MediaType;
use forum_domain::model::{Media, MediaStatus};

/// A media item a post wants to use: checked in the post's own transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnMedia {
    pub id: String,
    pub kind: MediaType,
}

/// Why a post may not show the media it names: someone else's, missing, expired or rejected
/// (the same answer for each, so ids cannot be probed), or the caller's but shown by another post.
pub(super) fn media_refused(seen: Option<&Item>, caller: &str, post_id: &str) -> StoreError {
    let claimed_elsewhere = seen.is_some_and(|item| {
        get_s(item, "user_id").as_deref() == Some(caller)
            && get_s(item, "post_id").is_some_and(|other| other != post_id)
    });
    StoreError::MediaRefused(if claimed_elsewhere {
        MediaRefusal::ShownByAnotherPost
    } else {
        MediaRefusal::NotUsable
    })
}

/// How long an upload no post has claimed is kept (its record expires by TTL, and the stream
/// then deletes its objects).
pub const UNCLAIMED_MEDIA_TTL_SECS: i64 = forum_domain::limits::UNCLAIMED_MEDIA_SECS.i64();

impl Table {
    /// Claims an upload for a post: it must be the caller's, of the type its URL names, not
    /// rejected, not expired, and not used by another post. A claimed upload no longer expires;
    /// it lives as long as its post shows it (the stream releases it after).
    pub(super) fn claim_media(
        &self,
        media: &OwnMedia,
        user_id: &str,
        post_id: &str,
        now: i64,
    ) -> Result<TransactWriteItem, StoreError> {
        let update = built(
            Update::builder()
                .table_name(&self.name)
                .set_key(Some(key(keys::media_pk(&media.id), keys::MEDIA_SK)))
                .update_expression("SET post_id = :post REMOVE #ttl")
                .condition_expression(
                    "attribute_exists(pk) AND user_id = :owner AND content_type = :type AND #status <> :rejected \
                     AND (attribute_not_exists(post_id) OR post_id = :post) \
                     AND (attribute_not_exists(#ttl) OR #ttl > :now)",
                )
                .expression_attribute_names("#status", "status")
                .expression_attribute_names("#ttl", "ttl")
                .expression_attribute_values(":owner", s(user_id))
                .expression_attribute_values(":type", s(media.kind.content_type()))
                .expression_attribute_values(":rejected", s(MediaStatus::Rejected.as_str()))
                .expression_attribute_values(":post", s(post_id))
                .expression_attribute_values(":now", signed(now))
                .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
                .build(),
        )?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// Records a new upload (pending) and, unless `token_taken` (a direct upload takes its token
    /// before its decode: [`Table::charge_writer`]), takes a rate-limit token: one transaction,
    /// with the writer's standing and a keyed create's key. Until a post claims it, the record
    /// expires [`UNCLAIMED_MEDIA_TTL_SECS`] after the request (TTL), and the stream then
    /// deletes its objects.
    pub async fn create_media(&self, media: &Media, rate: &RateToken, token_taken: bool) -> Result<(), StoreError> {
        let mut item = media_item(media)?;
        item.insert("ttl".into(), signed(rate.now + UNCLAIMED_MEDIA_TTL_SECS));
        let mut actions = Vec::new();
        if !token_taken {
            actions.push(self.take_rate_token(rate)?);
        }
        actions.push(self.put(item, Some("attribute_not_exists(pk)"))?);
        match self.transact_as_writer(actions, rate).await? {
            Ok(()) => Ok(()),
            Err(c) if !token_taken && c.failed(0) => Err(rate.refused()),
            Err(c) => Err(StoreError::Internal(format!("media write refused: {:?}", c.codes))),
        }
    }

    /// Deletes an upload's record once no post shows it: the post that claimed it was deleted
    /// or now shows other media. Done in one transaction with a check that the post does not
    /// show it (again), so a late stream record never removes media in use. `url_prefix` is
    /// the start of every URL of the media (`<base>/media/<id>/`).
    pub async fn release_media(&self, media_id: &str, post_id: &str, url_prefix: &str) -> Result<bool, StoreError> {
        let media = Guard {
            key: key(keys::media_pk(media_id), keys::MEDIA_SK),
            condition: "post_id = :post",
            values: HashMap::from([(":post".to_string(), s(post_id))]),
        };
        let post = Guard {
            key: key(keys::post_pk(post_id), keys::POST_SK),
            condition: "attribute_not_exists(pk) OR attribute_not_exists(media_url) OR NOT begins_with(media_url, :prefix)",
            values: HashMap::from([(":prefix".to_string(), s(url_prefix))]),
        };
        self.delete_unless_used(media, post).await
    }

    /// Takes media that was rejected after a post claimed it off that post (the post then
    /// shows no media, and the stream releases the media). `false` when the post is gone or
    /// already shows something else.
    pub async fn drop_rejected_media(&self, post_id: &str, url_prefix: &str) -> Result<bool, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.name)
            .set_key(Some(key(keys::post_pk(post_id), keys::POST_SK)))
            .update_expression("REMOVE media_url")
            .condition_expression("attribute_exists(pk) AND begins_with(media_url, :prefix)")
            .expression_attribute_values(":prefix", s(url_prefix))
            .send()
            .await;
        applied(result)
    }

    pub async fn get_media(&self, media_id: &str) -> Result<Option<Media>, StoreError> {
        let item = self
            .get_one(key(keys::media_pk(media_id), keys::MEDIA_SK), true, None)
            .await?;
        item.as_ref().map(media_from_item).transpose()
    }

    /// Marks a pending upload ready (with its size) or rejected (with the reason). Only a
    /// pending item changes, so a redelivered event cannot flip a decision: `false` then.
    pub async fn finish_media(&self, media_id: &str, outcome: Result<(u32, u32), &str>) -> Result<bool, StoreError> {
        let mut update = self
            .client
            .update_item()
            .table_name(&self.name)
            .set_key(Some(key(keys::media_pk(media_id), keys::MEDIA_SK)))
            .condition_expression("#status = :pending")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":pending", s(MediaStatus::Pending.as_str()));
        update = match outcome {
            Ok((width, height)) => update
                .update_expression("SET #status = :status, width = :w, height = :h")
                .expression_attribute_values(":status", s(MediaStatus::Ready.as_str()))
                .expression_attribute_values(":w", n(width.into()))
                .expression_attribute_values(":h", n(height.into())),
            Err(reason) => update
                .update_expression("SET #status = :status, reason = :reason")
                .expression_attribute_values(":status", s(MediaStatus::Rejected.as_str()))
                .expression_attribute_values(":reason", s(reason)),
        };
        applied(update.send().await)
    }
}
