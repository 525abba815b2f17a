//! The single table: the only place that knows its keys, indexes and item shapes.
//!
//! | item     | pk                    | sk              | indexes                                   |
//! |----------|-----------------------|-----------------|-------------------------------------------|
//! | profile  | `USER#<uid>`          | `PROFILE`       |                                           |
//! | post     | `POST#<pid>`          | `POST`          | gsi1 `FEED` / `POST#<pid>`; gsi2 `USER#<uid>` / `POST#<pid>` |
//! | comment  | `POST#<pid>`          | `COMMENT#<cid>` | gsi2 `USER#<uid>` / `COMMENT#<cid>`        |
//! | like     | `POST#<pid>`          | `LIKE#<uid>`    | gsi2 `USER#<uid>` / `LIKE#<pid>`           |
//! | rate     | `RATE#<uid>#<action>` | window start    | `ttl`                                     |
//!
//! Ids are ULIDs, so sorting by id sorts by creation time. `docs/table.md` has the design,
//! the access patterns with their round trips, and the feed partition's write ceiling.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, Delete, KeysAndAttributes, Put, ReturnValue, ReturnValuesOnConditionCheckFailure,
    TransactWriteItem, Update,
};

use crate::cursor::{Direction, PageCursor};
use crate::error::ApiError;
use crate::media::MediaType;
use crate::model::{Comment, LikeState, Media, MediaStatus, Post, Profile};
use crate::validate::username_key;

pub type Item = HashMap<String, AttributeValue>;

/// Key names and builders. Nothing outside this module spells a key.
pub mod keys {
    pub const PK: &str = "pk";
    pub const SK: &str = "sk";
    pub const POST_SK: &str = "POST";
    pub const PROFILE_SK: &str = "PROFILE";
    /// The global feed: one GSI partition, newest first by post id.
    pub const FEED_INDEX: &str = "gsi1";
    pub const FEED_PK: &str = "gsi1pk";
    pub const FEED_SK: &str = "gsi1sk";
    pub const FEED_PARTITION: &str = "FEED";
    /// Items by user (their posts, their likes).
    pub const USER_INDEX: &str = "gsi2";
    pub const USER_PK: &str = "gsi2pk";
    pub const USER_SK: &str = "gsi2sk";

    pub fn post_pk(post_id: &str) -> String {
        format!("POST#{post_id}")
    }
    pub fn user_pk(user_id: &str) -> String {
        format!("USER#{user_id}")
    }
    pub fn like_sk(user_id: &str) -> String {
        format!("LIKE#{user_id}")
    }
    /// Sort key of a post within the feed and user indexes.
    pub fn post_ref(post_id: &str) -> String {
        format!("POST#{post_id}")
    }
    pub fn comment_sk(comment_id: &str) -> String {
        format!("COMMENT#{comment_id}")
    }
    /// Sort key of a like within the user index ("posts this user likes").
    pub fn like_ref(post_id: &str) -> String {
        format!("LIKE#{post_id}")
    }
    pub fn media_pk(media_id: &str) -> String {
        format!("MEDIA#{media_id}")
    }
    pub const MEDIA_SK: &str = "MEDIA";
    pub fn conn_pk(connection_id: &str) -> String {
        format!("CONN#{connection_id}")
    }
    pub const CONN_SK: &str = "CONN";
    /// A user's connection slots (`USER#<uid>` / `CONNSLOT#<n>`): the per-user cap.
    pub fn conn_slot_sk(slot: u32) -> String {
        format!("CONNSLOT#{slot:02}")
    }
    pub fn sub_pk(post_id: &str) -> String {
        format!("SUB#{post_id}")
    }
    /// Every connection is in one gsi1 partition (the feed's audience).
    pub const CONNECTIONS_PARTITION: &str = "CONNS";
    pub fn rate_pk(user_id: &str, action: &str) -> String {
        format!("RATE#{user_id}#{action}")
    }
    /// A display name's claim (`NAME#<username_key>` / `NAME`): which account it belongs to.
    pub fn name_pk(username_key: &str) -> String {
        format!("NAME#{username_key}")
    }
    pub const NAME_SK: &str = "NAME";
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn signed(value: i64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn key(pk: String, sk: impl Into<String>) -> Item {
    HashMap::from([(keys::PK.to_string(), s(pk)), (keys::SK.to_string(), s(sk))])
}

fn get_s(item: &Item, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
}

fn get_n(item: &Item, name: &str) -> u64 {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn require_s(item: &Item, name: &str) -> Result<String, ApiError> {
    get_s(item, name).ok_or_else(|| ApiError::Internal(format!("item lacks `{name}`")))
}

fn post_item(post: &Post) -> Item {
    let mut item = key(keys::post_pk(&post.id), keys::POST_SK);
    item.insert("type".into(), s("post"));
    item.insert("post_id".into(), s(&post.id));
    item.insert("user_id".into(), s(&post.user_id));
    item.insert("content".into(), s(&post.content));
    if let Some(url) = &post.media_url {
        item.insert("media_url".into(), s(url));
    }
    item.insert("created_at".into(), s(&post.created_at));
    if let Some(at) = &post.edited_at {
        item.insert("edited_at".into(), s(at));
    }
    item.insert("like_count".into(), n(post.like_count));
    item.insert("comment_count".into(), n(post.comment_count));
    item.insert(keys::FEED_PK.into(), s(keys::FEED_PARTITION));
    item.insert(keys::FEED_SK.into(), s(keys::post_ref(&post.id)));
    item.insert(keys::USER_PK.into(), s(keys::user_pk(&post.user_id)));
    item.insert(keys::USER_SK.into(), s(keys::post_ref(&post.id)));
    item
}

fn post_from_item(item: &Item) -> Result<Post, ApiError> {
    Ok(Post {
        id: require_s(item, "post_id")?,
        user_id: require_s(item, "user_id")?,
        content: require_s(item, "content")?,
        media_url: get_s(item, "media_url"),
        created_at: require_s(item, "created_at")?,
        edited_at: get_s(item, "edited_at"),
        like_count: get_n(item, "like_count"),
        comment_count: get_n(item, "comment_count"),
    })
}

fn comment_item(comment: &Comment) -> Item {
    let mut item = key(keys::post_pk(&comment.post_id), keys::comment_sk(&comment.id));
    item.insert("type".into(), s("comment"));
    item.insert("comment_id".into(), s(&comment.id));
    item.insert("post_id".into(), s(&comment.post_id));
    item.insert("user_id".into(), s(&comment.user_id));
    item.insert("content".into(), s(&comment.content));
    item.insert("created_at".into(), s(&comment.created_at));
    if let Some(at) = &comment.edited_at {
        item.insert("edited_at".into(), s(at));
    }
    item.insert(keys::USER_PK.into(), s(keys::user_pk(&comment.user_id)));
    item.insert(keys::USER_SK.into(), s(keys::comment_sk(&comment.id)));
    item
}

fn comment_from_item(item: &Item) -> Result<Comment, ApiError> {
    Ok(Comment {
        id: require_s(item, "comment_id")?,
        post_id: require_s(item, "post_id")?,
        user_id: require_s(item, "user_id")?,
        content: require_s(item, "content")?,
        created_at: require_s(item, "created_at")?,
        edited_at: get_s(item, "edited_at"),
    })
}

fn like_item(post_id: &str, user_id: &str, now: &str) -> Item {
    let mut item = key(keys::post_pk(post_id), keys::like_sk(user_id));
    item.insert("type".into(), s("like"));
    item.insert("post_id".into(), s(post_id));
    item.insert("user_id".into(), s(user_id));
    item.insert("created_at".into(), s(now));
    item.insert(keys::USER_PK.into(), s(keys::user_pk(user_id)));
    item.insert(keys::USER_SK.into(), s(keys::like_ref(post_id)));
    item
}

fn media_item(media: &Media) -> Item {
    let mut item = key(keys::media_pk(&media.id), keys::MEDIA_SK);
    item.insert("type".into(), s("media"));
    item.insert("media_id".into(), s(&media.id));
    item.insert("user_id".into(), s(&media.user_id));
    item.insert("status".into(), s(media.status.as_str()));
    item.insert("content_type".into(), s(media.media_type.content_type()));
    item.insert("size".into(), n(media.size));
    item.insert("created_at".into(), s(&media.created_at));
    item.insert(keys::USER_PK.into(), s(keys::user_pk(&media.user_id)));
    item.insert(keys::USER_SK.into(), s(format!("MEDIA#{}", media.id)));
    if let Some(post_id) = &media.post_id {
        item.insert("post_id".into(), s(post_id));
    }
    item
}

fn media_from_item(item: &Item) -> Result<Media, ApiError> {
    let status = require_s(item, "status")?;
    let content_type = require_s(item, "content_type")?;
    Ok(Media {
        id: require_s(item, "media_id")?,
        user_id: require_s(item, "user_id")?,
        status: MediaStatus::parse(&status).ok_or_else(|| ApiError::Internal(format!("media status {status}")))?,
        media_type: MediaType::from_content_type(&content_type)
            .ok_or_else(|| ApiError::Internal(format!("media type {content_type}")))?,
        size: get_n(item, "size"),
        created_at: require_s(item, "created_at")?,
        width: item
            .get("width")
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse().ok()),
        height: item
            .get("height")
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse().ok()),
        reason: get_s(item, "reason"),
        post_id: get_s(item, "post_id"),
    })
}

fn profile_item(profile: &Profile, now: &str) -> Item {
    let mut item = key(keys::user_pk(&profile.user_id), keys::PROFILE_SK);
    item.insert("type".into(), s("profile"));
    item.insert("user_id".into(), s(&profile.user_id));
    item.insert("username".into(), s(&profile.username));
    item.insert("token_name".into(), s(&profile.token_name));
    item.insert("name_key".into(), s(username_key(&profile.username)));
    if let Some(url) = &profile.avatar_url {
        item.insert("avatar_url".into(), s(url));
    }
    item.insert("updated_at".into(), s(now));
    item
}

fn connection_from_item(connection_id: &str, item: &Item) -> Connection {
    Connection {
        id: connection_id.to_string(),
        user_id: get_s(item, "user_id").unwrap_or_default(),
        // Connections stored before expiry was recorded live until their TTL.
        expires_at: item
            .get("expires_at")
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(i64::MAX),
        subscriptions: item
            .get("subs")
            .and_then(|v| v.as_ss().ok())
            .cloned()
            .unwrap_or_default(),
    }
}

fn profile_from_item(item: &Item) -> Result<Profile, ApiError> {
    let username = require_s(item, "username")?;
    Ok(Profile {
        user_id: require_s(item, "user_id")?,
        token_name: get_s(item, "token_name").unwrap_or_else(|| username.clone()),
        username,
        avatar_url: get_s(item, "avatar_url"),
    })
}

/// Which way a list is ordered by id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    NewestFirst,
    OldestFirst,
}

/// One page of a keyset-paginated list, with the cursors either side of it.
#[derive(Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<PageCursor>,
    pub previous: Option<PageCursor>,
}

/// A list the store can page through: a partition of the table or an index, and the
/// sort-key prefix its items share.
struct ListSpec<'a> {
    scope: String,
    index: Option<&'a str>,
    pk_attr: &'a str,
    pk: String,
    sk_attr: &'a str,
    sk_prefix: &'a str,
    order: Order,
}

/// Sort keys are `<prefix><ULID>`; ULIDs use `0-9A-Z`, so `~` bounds every id from above.
const SK_UPPER: &str = "~";

/// Attempts for a BatchGetItem whose keys come back unprocessed (throttling).
const BATCH_ATTEMPTS: u32 = 5;
/// BatchGetItem takes at most this many keys per call.
const BATCH_MAX_KEYS: usize = 100;

/// The table, and the queries and writes the handlers need.
#[derive(Clone, Debug)]
pub struct Table {
    client: Client,
    name: String,
}

/// A rate-limit token taken inside a write's transaction: a fixed one-minute window per user
/// and action, counted on an item (`RATE#<uid>#<action>` / window start) that expires by TTL.
#[derive(Clone, Debug)]
pub struct RateToken {
    pub user_id: String,
    pub action: RateAction,
    pub limit: u32,
    /// Unix seconds of the request.
    pub now: i64,
}

/// What a rate limit counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RateAction {
    Post,
    Comment,
    LikeToggle,
    /// Edits of posts and comments.
    Edit,
    /// Direct and presigned uploads.
    Upload,
}

impl RateAction {
    /// The part of the rate item's key that names the action.
    fn key(self) -> &'static str {
        match self {
            RateAction::Post => "post",
            RateAction::Comment => "comment",
            RateAction::LikeToggle => "like",
            RateAction::Edit => "edit",
            RateAction::Upload => "upload",
        }
    }

    fn label(self) -> &'static str {
        match self {
            RateAction::Post => "posts",
            RateAction::Comment => "comments",
            RateAction::LikeToggle => "like toggles",
            RateAction::Edit => "edits",
            RateAction::Upload => "uploads",
        }
    }
}

const RATE_WINDOW_SECS: i64 = 60;

impl RateToken {
    fn window_start(&self) -> i64 {
        self.now - self.now.rem_euclid(RATE_WINDOW_SECS)
    }

    /// Seconds until the window resets: the `Retry-After` of a 429.
    pub fn retry_after_secs(&self) -> u64 {
        (self.window_start() + RATE_WINDOW_SECS - self.now).max(1) as u64
    }

    fn refused(&self) -> ApiError {
        ApiError::RateLimited {
            message: format!(
                "at most {} {} per minute; try again shortly",
                self.limit,
                self.action.label()
            ),
            retry_after_secs: self.retry_after_secs(),
        }
    }
}

/// Who makes an edit and when: the caller (who must own what they edit), the edit's time,
/// their rate-limit token, and their profile when it is due to be written.
#[derive(Clone, Copy, Debug)]
pub struct Editor<'a> {
    pub caller: &'a str,
    pub edited_at: &'a str,
    pub rate: &'a RateToken,
    pub author: Option<&'a Profile>,
}

/// A media item a post wants to use: checked in the post's own transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnMedia {
    pub id: String,
    pub kind: MediaType,
}

/// Why a transaction was cancelled, per action in the order given.
#[derive(Debug, Default)]
struct Cancelled {
    codes: Vec<String>,
    items: Vec<Option<Item>>,
}

impl Cancelled {
    fn failed(&self, index: usize) -> bool {
        self.codes.get(index).is_some_and(|c| c == "ConditionalCheckFailed")
    }

    /// The item an action's failed condition saw (needs `ReturnValuesOnConditionCheckFailure`).
    fn item(&self, index: usize) -> Option<&Item> {
        self.items.get(index).and_then(Option::as_ref)
    }
}

/// Attempts for a transaction that keeps meeting conflicting concurrent transactions.
const TRANSACTION_ATTEMPTS: u32 = 10;

fn built<T, E: std::fmt::Display>(result: Result<T, E>) -> Result<T, ApiError> {
    result.map_err(|e| ApiError::Internal(format!("building a request: {e}")))
}

/// What a conditional write on a post found when its condition failed.
enum OwnedWriteFailure {
    Missing,
    NotOwner,
}

impl Table {
    pub fn new(client: Client, name: impl Into<String>) -> Self {
        Table {
            client,
            name: name.into(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Runs a transaction, retrying (bounded, jittered) while it only meets conflicting
    /// concurrent transactions. `Ok(Err(_))` says which conditions failed.
    async fn transact(&self, actions: Vec<TransactWriteItem>) -> Result<Result<(), Cancelled>, ApiError> {
        for attempt in 0..TRANSACTION_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(backoff(attempt)).await;
            }
            let result = self
                .client
                .transact_write_items()
                .set_transact_items(Some(actions.clone()))
                .send()
                .await;
            let err = match result {
                Ok(_) => return Ok(Ok(())),
                Err(err) => err,
            };
            let Some(TransactWriteItemsError::TransactionCanceledException(cancel)) = err.as_service_error() else {
                return Err(err.into());
            };
            let reasons = cancel.cancellation_reasons();
            let cancelled = Cancelled {
                codes: reasons.iter().map(|r| r.code().unwrap_or("None").to_string()).collect(),
                items: reasons.iter().map(|r| r.item().cloned()).collect(),
            };
            if cancelled.codes.iter().any(|c| c == "ConditionalCheckFailed") {
                return Ok(Err(cancelled));
            }
            let retryable = cancelled.codes.iter().all(|c| {
                matches!(
                    c.as_str(),
                    "None" | "TransactionConflict" | "ThrottlingError" | "ProvisionedThroughputExceeded"
                )
            });
            if !retryable {
                return Err(ApiError::Internal(format!(
                    "transaction cancelled: {:?}",
                    cancelled.codes
                )));
            }
        }
        Err(ApiError::Unavailable(
            "transaction kept conflicting with concurrent writes".into(),
        ))
    }

    /// Runs `actions` and, when `author` is given (its claims changed since this container last
    /// wrote them), the author's profile and the claim on the name it is shown under, in the
    /// same transaction. The name the token asks for is tried first, then the account's
    /// [`Profile::fallback_name`]; both held by other accounts is `409 username_taken`.
    /// Answers the cancellation of `actions` (their indices unchanged) or the profile written.
    async fn transact_as_author(
        &self,
        actions: Vec<TransactWriteItem>,
        author: Option<&Profile>,
        now: &str,
    ) -> Result<Result<Option<Profile>, Cancelled>, ApiError> {
        let Some(author) = author else {
            return Ok(self.transact(actions).await?.map(|()| None));
        };
        let own = actions.len();
        for name in [author.token_name.clone(), author.fallback_name()] {
            let shown = Profile {
                username: name,
                ..author.clone()
            };
            let mut all = actions.clone();
            all.push(self.put(profile_item(&shown, now), None)?);
            all.push(self.claim_name(&shown, now)?);
            match self.transact(all).await? {
                Ok(()) => return Ok(Ok(Some(shown))),
                // Only the name was refused: try the next one.
                Err(c) if c.failed(own + 1) && (0..own).all(|i| !c.failed(i)) => continue,
                Err(c) => return Ok(Err(c)),
            }
        }
        Err(ApiError::Conflict {
            code: "username_taken",
            message: format!(
                "the username `{}` (or one that looks the same) belongs to another account; \
                 choose another name with your identity provider",
                author.token_name
            ),
        })
    }

    /// Holds a display name for one account: written only if no other account holds a name
    /// with the same key.
    fn claim_name(&self, profile: &Profile, now: &str) -> Result<TransactWriteItem, ApiError> {
        let mut item = key(keys::name_pk(&username_key(&profile.username)), keys::NAME_SK);
        item.insert("type".into(), s("name"));
        item.insert("user_id".into(), s(&profile.user_id));
        item.insert("username".into(), s(&profile.username));
        item.insert("claimed_at".into(), s(now));
        let put = built(
            Put::builder()
                .table_name(&self.name)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(pk) OR user_id = :uid")
                .expression_attribute_values(":uid", s(&profile.user_id))
                .build(),
        )?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// Frees a name its account no longer shows (after a rename), unless the account shows it
    /// again by now: the stream's clean-up, safe to repeat.
    pub async fn release_name(&self, name_key: &str, user_id: &str) -> Result<bool, ApiError> {
        let delete = built(
            Delete::builder()
                .table_name(&self.name)
                .set_key(Some(key(keys::name_pk(name_key), keys::NAME_SK)))
                .condition_expression("user_id = :uid")
                .expression_attribute_values(":uid", s(user_id))
                .build(),
        )?;
        let renamed = built(
            ConditionCheck::builder()
                .table_name(&self.name)
                .set_key(Some(key(keys::user_pk(user_id), keys::PROFILE_SK)))
                .condition_expression("attribute_not_exists(pk) OR name_key <> :key")
                .expression_attribute_values(":key", s(name_key))
                .build(),
        )?;
        let actions = vec![
            TransactWriteItem::builder().delete(delete).build(),
            TransactWriteItem::builder().condition_check(renamed).build(),
        ];
        Ok(self.transact(actions).await?.is_ok())
    }

    fn put(&self, item: Item, condition: Option<&str>) -> Result<TransactWriteItem, ApiError> {
        let put = built(
            Put::builder()
                .table_name(&self.name)
                .set_item(Some(item))
                .set_condition_expression(condition.map(str::to_string))
                .build(),
        )?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// Adds `delta` to a post's counter, only if the post exists.
    fn bump_post(&self, post_id: &str, counter: &str, delta: i64) -> Result<TransactWriteItem, ApiError> {
        let update = built(
            Update::builder()
                .table_name(&self.name)
                .set_key(Some(key(keys::post_pk(post_id), keys::POST_SK)))
                .update_expression("ADD #counter :delta")
                .condition_expression("attribute_exists(pk)")
                .expression_attribute_names("#counter", counter)
                .expression_attribute_values(":delta", AttributeValue::N(delta.to_string()))
                .build(),
        )?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    fn post_exists_check(&self, post_id: &str) -> Result<TransactWriteItem, ApiError> {
        let check = built(
            ConditionCheck::builder()
                .table_name(&self.name)
                .set_key(Some(key(keys::post_pk(post_id), keys::POST_SK)))
                .condition_expression("attribute_exists(pk)")
                .build(),
        )?;
        Ok(TransactWriteItem::builder().condition_check(check).build())
    }

    /// Takes one token from the caller's window, only while under the limit.
    fn take_rate_token(&self, token: &RateToken) -> Result<TransactWriteItem, ApiError> {
        let window = token.window_start();
        let update = built(
            Update::builder()
                .table_name(&self.name)
                .set_key(Some(key(
                    keys::rate_pk(&token.user_id, token.action.key()),
                    window.to_string(),
                )))
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

    /// Writes a new post, its author's profile (when it changed) and a rate-limit token in one
    /// transaction: one round trip, and nothing written when over the limit.
    /// Media it shows must be the author's own and unused: claimed in the same transaction.
    pub async fn create_post(
        &self,
        post: &Post,
        author: Option<&Profile>,
        rate: &RateToken,
        media: Option<&OwnMedia>,
    ) -> Result<Option<Profile>, ApiError> {
        let mut actions = vec![
            self.take_rate_token(rate)?,
            self.put(post_item(post), Some("attribute_not_exists(pk)"))?,
        ];
        if let Some(media) = media {
            actions.push(self.claim_media(media, &post.user_id, &post.id, rate.now)?);
        }
        match self.transact_as_author(actions, author, &post.created_at).await? {
            Ok(written) => Ok(written),
            Err(c) if media.is_some() && c.failed(2) => Err(media_refused(c.item(2), &post.user_id, &post.id)),
            Err(c) if c.failed(0) => Err(rate.refused()),
            Err(c) => Err(ApiError::Internal(format!("post write refused: {:?}", c.codes))),
        }
    }

    /// Adds a comment, counts it on the post (which must exist), refreshes the author's
    /// profile (when it changed) and takes a rate-limit token: one transaction.
    pub async fn create_comment(
        &self,
        comment: &Comment,
        author: Option<&Profile>,
        rate: &RateToken,
    ) -> Result<Option<Profile>, ApiError> {
        let actions = vec![
            self.take_rate_token(rate)?,
            self.bump_post(&comment.post_id, "comment_count", 1)?,
            self.put(comment_item(comment), Some("attribute_not_exists(pk)"))?,
        ];
        match self.transact_as_author(actions, author, &comment.created_at).await? {
            Ok(written) => Ok(written),
            Err(c) if c.failed(1) => Err(ApiError::NotFound("post not found".into())),
            Err(c) if c.failed(0) => Err(rate.refused()),
            Err(c) => Err(ApiError::Internal(format!("comment write refused: {:?}", c.codes))),
        }
    }

    /// Edits a comment if `caller` wrote it and its post still exists, taking a rate-limit
    /// token: one transaction.
    pub async fn update_comment(
        &self,
        post_id: &str,
        comment_id: &str,
        content: &str,
        editor: Editor<'_>,
    ) -> Result<Option<Profile>, ApiError> {
        let Editor {
            caller,
            edited_at,
            rate,
            author,
        } = editor;
        let update = built(
            Update::builder()
                .table_name(&self.name)
                .set_key(Some(key(keys::post_pk(post_id), keys::comment_sk(comment_id))))
                .update_expression("SET content = :content, edited_at = :edited_at")
                .condition_expression("attribute_exists(pk) AND user_id = :caller")
                .expression_attribute_values(":content", s(content))
                .expression_attribute_values(":edited_at", s(edited_at))
                .expression_attribute_values(":caller", s(caller))
                .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
                .build(),
        )?;
        let actions = vec![
            self.post_exists_check(post_id)?,
            TransactWriteItem::builder().update(update).build(),
            self.take_rate_token(rate)?,
        ];
        match self.transact_as_author(actions, author, edited_at).await? {
            Ok(written) => Ok(written),
            // Over the limit only matters for an edit that could otherwise have happened.
            Err(c) if c.failed(2) && !c.failed(0) && !c.failed(1) => Err(rate.refused()),
            Err(c) => Err(comment_write_failure(&c)),
        }
    }

    /// Deletes a comment if `caller` wrote it, and uncounts it on its post: one transaction.
    pub async fn delete_comment(&self, post_id: &str, comment_id: &str, caller: &str) -> Result<(), ApiError> {
        let delete = built(
            Delete::builder()
                .table_name(&self.name)
                .set_key(Some(key(keys::post_pk(post_id), keys::comment_sk(comment_id))))
                .condition_expression("attribute_exists(pk) AND user_id = :caller")
                .expression_attribute_values(":caller", s(caller))
                .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
                .build(),
        )?;
        let actions = vec![
            self.bump_post(post_id, "comment_count", -1)?,
            TransactWriteItem::builder().delete(delete).build(),
        ];
        match self.transact(actions).await? {
            Ok(()) => Ok(()),
            Err(c) => Err(comment_write_failure(&c)),
        }
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
    ) -> Result<LikeState, ApiError> {
        let like_key = key(keys::post_pk(post_id), keys::like_sk(user_id));
        for _ in 0..TRANSACTION_ATTEMPTS {
            let like = vec![
                self.take_rate_token(rate)?,
                self.bump_post(post_id, "like_count", 1)?,
                self.put(like_item(post_id, user_id, now), Some("attribute_not_exists(pk)"))?,
            ];
            let cancelled = match self.transact(like).await? {
                Ok(()) => return self.committed_likes(post_id, true).await,
                Err(c) => c,
            };
            if cancelled.failed(1) {
                return Err(ApiError::NotFound("post not found".into()));
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
            match self.transact(unlike).await? {
                Ok(()) => return self.committed_likes(post_id, false).await,
                Err(c) if c.failed(1) => return Err(ApiError::NotFound("post not found".into())),
                Err(c) if c.failed(0) => return Err(rate.refused()),
                // A concurrent toggle by the same user removed the like first: decide again.
                Err(_) => continue,
            }
        }
        Err(ApiError::Unavailable("like kept racing with concurrent toggles".into()))
    }

    async fn committed_likes(&self, post_id: &str, is_liked: bool) -> Result<LikeState, ApiError> {
        let item = self
            .get_one(key(keys::post_pk(post_id), keys::POST_SK), true, Some("like_count"))
            .await?
            .ok_or_else(|| ApiError::NotFound("post not found".into()))?;
        Ok(LikeState {
            is_liked,
            like_count: get_n(&item, "like_count"),
        })
    }

    /// Claims an upload for a post: it must be the caller's, of the type its URL names, not
    /// rejected, not expired, and not used by another post. A claimed upload no longer expires;
    /// it lives as long as its post shows it (the stream releases it after).
    fn claim_media(
        &self,
        media: &OwnMedia,
        user_id: &str,
        post_id: &str,
        now: i64,
    ) -> Result<TransactWriteItem, ApiError> {
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

    /// Records a new upload (pending) and takes a rate-limit token: one transaction. Until a
    /// post claims it, the record expires [`UNCLAIMED_MEDIA_TTL_SECS`] after the request (TTL),
    /// and the stream then deletes its objects.
    pub async fn create_media(&self, media: &Media, rate: &RateToken) -> Result<(), ApiError> {
        let mut item = media_item(media);
        item.insert("ttl".into(), signed(rate.now + UNCLAIMED_MEDIA_TTL_SECS));
        let actions = vec![
            self.take_rate_token(rate)?,
            self.put(item, Some("attribute_not_exists(pk)"))?,
        ];
        match self.transact(actions).await? {
            Ok(()) => Ok(()),
            Err(c) if c.failed(0) => Err(rate.refused()),
            Err(c) => Err(ApiError::Internal(format!("media write refused: {:?}", c.codes))),
        }
    }

    /// Deletes an upload's record once no post shows it: the post that claimed it was deleted
    /// or now shows other media. Done in one transaction with a check that the post does not
    /// show it (again), so a late stream record never removes media in use. `url_prefix` is
    /// the start of every URL of the media (`<base>/media/<id>/`).
    pub async fn release_media(&self, media_id: &str, post_id: &str, url_prefix: &str) -> Result<bool, ApiError> {
        let delete = built(
            Delete::builder()
                .table_name(&self.name)
                .set_key(Some(key(keys::media_pk(media_id), keys::MEDIA_SK)))
                .condition_expression("post_id = :post")
                .expression_attribute_values(":post", s(post_id))
                .build(),
        )?;
        let unused = built(
            ConditionCheck::builder()
                .table_name(&self.name)
                .set_key(Some(key(keys::post_pk(post_id), keys::POST_SK)))
                .condition_expression(
                    "attribute_not_exists(pk) OR attribute_not_exists(media_url) OR NOT begins_with(media_url, :prefix)",
                )
                .expression_attribute_values(":prefix", s(url_prefix))
                .build(),
        )?;
        let actions = vec![
            TransactWriteItem::builder().delete(delete).build(),
            TransactWriteItem::builder().condition_check(unused).build(),
        ];
        Ok(self.transact(actions).await?.is_ok())
    }

    /// Takes media that was rejected after a post claimed it off that post (the post then
    /// shows no media, and the stream releases the media). `false` when the post is gone or
    /// already shows something else.
    pub async fn drop_rejected_media(&self, post_id: &str, url_prefix: &str) -> Result<bool, ApiError> {
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
        match result {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    pub async fn get_media(&self, media_id: &str) -> Result<Option<Media>, ApiError> {
        let item = self
            .get_one(key(keys::media_pk(media_id), keys::MEDIA_SK), true, None)
            .await?;
        item.as_ref().map(media_from_item).transpose()
    }

    /// Marks a pending upload ready (with its size) or rejected (with the reason). Only a
    /// pending item changes, so a redelivered event cannot flip a decision: `false` then.
    pub async fn finish_media(&self, media_id: &str, outcome: Result<(u32, u32), &str>) -> Result<bool, ApiError> {
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
        match update.send().await {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Stores a connection (after `$connect` was authorized) for a token valid until
    /// `expires_at`; the item expires at `ttl`. The connection takes one of the user's
    /// [`MAX_CONNECTIONS_PER_USER`] slot items in the same transaction, so concurrent connects
    /// cannot exceed the cap; a slot whose connection expired counts as free.
    pub async fn put_connection(
        &self,
        connection_id: &str,
        user_id: &str,
        expires_at: i64,
        ttl: i64,
    ) -> Result<(), ApiError> {
        let now = chrono::Utc::now().timestamp();
        // Start at a slot of the id's own, so a user's concurrent connects rarely collide.
        let start = connection_id
            .bytes()
            .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
        for probe in 0..MAX_CONNECTIONS_PER_USER {
            let slot = (start.wrapping_add(probe)) % MAX_CONNECTIONS_PER_USER;
            let mut item = key(keys::conn_pk(connection_id), keys::CONN_SK);
            item.insert("type".into(), s("connection"));
            item.insert("connection_id".into(), s(connection_id));
            item.insert("user_id".into(), s(user_id));
            item.insert("expires_at".into(), signed(expires_at));
            item.insert("slot".into(), n(u64::from(slot)));
            item.insert("ttl".into(), signed(ttl));
            item.insert(keys::FEED_PK.into(), s(keys::CONNECTIONS_PARTITION));
            item.insert(keys::FEED_SK.into(), s(keys::conn_pk(connection_id)));
            item.insert(keys::USER_PK.into(), s(keys::user_pk(user_id)));
            item.insert(keys::USER_SK.into(), s(keys::conn_pk(connection_id)));
            let mut slot_item = key(keys::user_pk(user_id), keys::conn_slot_sk(slot));
            slot_item.insert("type".into(), s("connection_slot"));
            slot_item.insert("connection_id".into(), s(connection_id));
            slot_item.insert("ttl".into(), signed(ttl));
            let claim = built(
                Put::builder()
                    .table_name(&self.name)
                    .set_item(Some(slot_item))
                    .condition_expression("attribute_not_exists(pk) OR #ttl < :now")
                    .expression_attribute_names("#ttl", "ttl")
                    .expression_attribute_values(":now", signed(now))
                    .build(),
            )?;
            let actions = vec![TransactWriteItem::builder().put(claim).build(), self.put(item, None)?];
            match self.transact(actions).await? {
                Ok(()) => return Ok(()),
                Err(c) if c.failed(0) => continue,
                Err(c) => return Err(ApiError::Internal(format!("storing a connection: {:?}", c.codes))),
            }
        }
        Err(ApiError::RateLimited {
            message: format!("a user may hold {MAX_CONNECTIONS_PER_USER} live connections at once; close one first"),
            retry_after_secs: 60,
        })
    }

    pub async fn get_connection(&self, connection_id: &str) -> Result<Option<Connection>, ApiError> {
        let item = self
            .get_one(key(keys::conn_pk(connection_id), keys::CONN_SK), true, None)
            .await?;
        Ok(item.as_ref().map(|item| connection_from_item(connection_id, item)))
    }

    /// Removes a connection and its subscriptions (on `$disconnect`, or a `410 Gone`).
    pub async fn delete_connection(&self, connection_id: &str) -> Result<(), ApiError> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.name)
            .set_key(Some(key(keys::conn_pk(connection_id), keys::CONN_SK)))
            .return_values(ReturnValue::AllOld)
            .send()
            .await?;
        let Some(old) = out.attributes() else { return Ok(()) };
        let connection = connection_from_item(connection_id, old);
        if let Some(slot) = old
            .get("slot")
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse::<u32>().ok())
        {
            // Only if the slot is still this connection's (an expired one may be taken again).
            let freed = self
                .client
                .delete_item()
                .table_name(&self.name)
                .set_key(Some(key(keys::user_pk(&connection.user_id), keys::conn_slot_sk(slot))))
                .condition_expression("connection_id = :id")
                .expression_attribute_values(":id", s(connection_id))
                .send()
                .await;
            if let Err(e) = freed
                && !e
                    .as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception())
            {
                return Err(e.into());
            }
        }
        self.batch_delete(self.subscription_keys(connection_id, &connection.subscriptions))
            .await
    }

    /// Follows posts: the subscription items (found by post, carrying the connection's token
    /// expiry) and their list on the connection (found by connection, for clean-up). The cap of
    /// [`MAX_SUBSCRIPTIONS`] is a condition on the list's size in the same write that grows it,
    /// so concurrent messages cannot pass it together.
    pub async fn subscribe(&self, connection: &Connection, post_ids: &[String], ttl: i64) -> Result<(), ApiError> {
        // Subscription items first, then their list on the connection, only if it still exists
        // and has room: a connection deleted meanwhile (a 410 from another fan-out) either saw
        // the list and removes these items itself, or makes the update fail and we remove them
        // here. Either way no subscription outlives its connection.
        let items = post_ids
            .iter()
            .map(|pid| {
                let mut item = key(keys::sub_pk(pid), keys::conn_pk(&connection.id));
                item.insert("type".into(), s("subscription"));
                item.insert("connection_id".into(), s(&connection.id));
                item.insert("expires_at".into(), signed(connection.expires_at));
                item.insert("ttl".into(), signed(ttl));
                item
            })
            .collect();
        self.batch_put(items).await?;
        // Room for the new ids even if none is a duplicate: the cap is never exceeded.
        let room = MAX_SUBSCRIPTIONS.saturating_sub(post_ids.len());
        let listed = self
            .client
            .update_item()
            .table_name(&self.name)
            .set_key(Some(key(keys::conn_pk(&connection.id), keys::CONN_SK)))
            .update_expression("ADD subs :posts")
            .condition_expression("attribute_exists(pk) AND (attribute_not_exists(subs) OR size(subs) <= :room)")
            .expression_attribute_values(":posts", AttributeValue::Ss(post_ids.to_vec()))
            .expression_attribute_values(":room", n(room as u64))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let seen = match listed {
            Ok(_) => return Ok(()),
            Err(err) => match err.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(failure)) => failure.item().cloned(),
                _ => return Err(err.into()),
            },
        };
        // Undo only the items this call added: an id already listed is someone's subscription.
        let old = seen.as_ref().map(|item| connection_from_item(&connection.id, item));
        let added: Vec<String> = post_ids
            .iter()
            .filter(|id| !old.as_ref().is_some_and(|c| c.subscriptions.contains(id)))
            .cloned()
            .collect();
        self.batch_delete(self.subscription_keys(&connection.id, &added))
            .await?;
        match old {
            None => Err(ApiError::NotFound("this connection is not known; reconnect".into())),
            Some(_) => Err(ApiError::bad_request(
                "too_many_subscriptions",
                format!("a connection may follow at most {MAX_SUBSCRIPTIONS} posts"),
            )),
        }
    }

    fn subscription_keys(&self, connection_id: &str, post_ids: &[String]) -> Vec<Item> {
        post_ids
            .iter()
            .map(|pid| key(keys::sub_pk(pid), keys::conn_pk(connection_id)))
            .collect()
    }

    pub async fn unsubscribe(&self, connection: &Connection, post_ids: &[String]) -> Result<(), ApiError> {
        self.batch_delete(self.subscription_keys(&connection.id, post_ids))
            .await?;
        // Only an existing connection's list changes (no key-only item for a gone one).
        let unlisted = self
            .client
            .update_item()
            .table_name(&self.name)
            .set_key(Some(key(keys::conn_pk(&connection.id), keys::CONN_SK)))
            .update_expression("DELETE subs :posts")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":posts", AttributeValue::Ss(post_ids.to_vec()))
            .send()
            .await;
        match unlisted {
            Err(e)
                if !e
                    .as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Err(e.into())
            }
            _ => Ok(()),
        }
    }

    /// Every open connection (the feed's audience): a Query of one index partition, paged.
    pub async fn all_connections(&self) -> Result<Vec<Recipient>, ApiError> {
        self.recipients(
            Some(keys::FEED_INDEX),
            keys::FEED_PK,
            keys::CONNECTIONS_PARTITION.to_string(),
            keys::FEED_SK,
        )
        .await
    }

    /// Connections following a post.
    pub async fn subscribers(&self, post_id: &str) -> Result<Vec<Recipient>, ApiError> {
        self.recipients(None, keys::PK, keys::sub_pk(post_id), keys::SK).await
    }

    /// A user's open connections.
    pub async fn user_connections(&self, user_id: &str) -> Result<Vec<Recipient>, ApiError> {
        self.recipients(
            Some(keys::USER_INDEX),
            keys::USER_PK,
            keys::user_pk(user_id),
            keys::USER_SK,
        )
        .await
    }

    /// Connection ids (from `CONN#<id>` sort keys) and their tokens' expiry, every page.
    async fn recipients(
        &self,
        index: Option<&str>,
        pk_attr: &str,
        pk: String,
        sk_attr: &str,
    ) -> Result<Vec<Recipient>, ApiError> {
        const PREFIX: &str = "CONN#";
        let query = self
            .client
            .query()
            .table_name(&self.name)
            .set_index_name(index.map(str::to_string))
            .key_condition_expression("#pk = :pk AND begins_with(#sk, :prefix)")
            .expression_attribute_names("#pk", pk_attr)
            .expression_attribute_names("#sk", sk_attr)
            .expression_attribute_values(":pk", s(&pk))
            .expression_attribute_values(":prefix", s(PREFIX))
            .projection_expression("#sk, expires_at");
        let items = self.query_every(query).await?;
        Ok(items
            .iter()
            .filter_map(|item| {
                let id = get_s(item, sk_attr)?.strip_prefix(PREFIX)?.to_string();
                Some(Recipient {
                    expires_at: connection_from_item(&id, item).expires_at,
                    connection_id: id,
                })
            })
            .collect())
    }

    /// Removes what hangs off a deleted post: its comments, likes and subscriptions.
    /// Idempotent; the stream handler runs it after the post item is gone.
    pub async fn delete_post_leftovers(&self, post_id: &str) -> Result<usize, ApiError> {
        let mut doomed = Vec::new();
        for pk in [keys::post_pk(post_id), keys::sub_pk(post_id)] {
            let query = self
                .client
                .query()
                .table_name(&self.name)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(&pk))
                .projection_expression("pk, sk");
            doomed.extend(self.query_every(query).await?);
        }
        let count = doomed.len();
        self.batch_delete(doomed).await?;
        Ok(count)
    }

    /// A post's current counters (consistent), for events about it.
    pub async fn post_now(&self, post_id: &str) -> Result<Option<Post>, ApiError> {
        let item = self
            .get_one(key(keys::post_pk(post_id), keys::POST_SK), true, None)
            .await?;
        item.as_ref().map(post_from_item).transpose()
    }

    async fn batch_put(&self, items: Vec<Item>) -> Result<(), ApiError> {
        let requests = items
            .into_iter()
            .map(|item| {
                built(
                    aws_sdk_dynamodb::types::PutRequest::builder()
                        .set_item(Some(item))
                        .build(),
                )
                .map(|p| aws_sdk_dynamodb::types::WriteRequest::builder().put_request(p).build())
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.batch_write(requests).await
    }

    async fn batch_delete(&self, keys: Vec<Item>) -> Result<(), ApiError> {
        let requests = keys
            .into_iter()
            .map(|k| {
                built(
                    aws_sdk_dynamodb::types::DeleteRequest::builder()
                        .set_key(Some(k))
                        .build(),
                )
                .map(|d| {
                    aws_sdk_dynamodb::types::WriteRequest::builder()
                        .delete_request(d)
                        .build()
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.batch_write(requests).await
    }

    /// BatchWriteItem in chunks of 25, retrying unprocessed items with backoff.
    async fn batch_write(&self, requests: Vec<aws_sdk_dynamodb::types::WriteRequest>) -> Result<(), ApiError> {
        for chunk in requests.chunks(25) {
            let mut pending = chunk.to_vec();
            let mut attempt = 0;
            while !pending.is_empty() {
                if attempt > 0 {
                    tokio::time::sleep(backoff(attempt)).await;
                }
                if attempt >= BATCH_ATTEMPTS {
                    return Err(ApiError::Unavailable(
                        "DynamoDB left writes unprocessed after retries".into(),
                    ));
                }
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.name, pending)
                    .send()
                    .await?;
                pending = out
                    .unprocessed_items
                    .and_then(|mut u| u.remove(&self.name))
                    .unwrap_or_default();
                attempt += 1;
            }
        }
        Ok(())
    }

    /// Whether a post exists (strongly consistent: a deleted post is gone at once).
    pub async fn post_exists(&self, post_id: &str) -> Result<bool, ApiError> {
        let item = self
            .get_one(key(keys::post_pk(post_id), keys::POST_SK), true, Some("pk"))
            .await?;
        Ok(item.is_some())
    }

    /// Whether `user_id` likes a post.
    pub async fn likes(&self, post_id: &str, user_id: &str) -> Result<bool, ApiError> {
        let item = self
            .get_one(key(keys::post_pk(post_id), keys::like_sk(user_id)), false, Some("pk"))
            .await?;
        Ok(item.is_some())
    }

    /// Opens (and, in AWS, TLS-handshakes) a pooled connection to DynamoDB during a cold start,
    /// so the first request does not pay for it. A GetItem of a key no item ever has; its
    /// outcome (even an access denial) does not matter, only the connection it leaves behind.
    pub async fn warm_up(&self) {
        let _ = self.get_one(key("WARMUP".into(), "WARMUP"), false, Some("pk")).await;
    }

    /// One item by key (GetItem), optionally strongly consistent and limited to `projection`.
    async fn get_one(&self, key: Item, consistent: bool, projection: Option<&str>) -> Result<Option<Item>, ApiError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.name)
            .set_key(Some(key))
            .consistent_read(consistent)
            .set_projection_expression(projection.map(str::to_string))
            .send()
            .await?;
        Ok(out.item)
    }

    /// Every item a Query matches, following `LastEvaluatedKey` through all pages.
    async fn query_every(
        &self,
        query: aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
    ) -> Result<Vec<Item>, ApiError> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let out = query.clone().set_exclusive_start_key(start).send().await?;
            start = out.last_evaluated_key().cloned();
            items.extend(out.items.unwrap_or_default());
            if start.is_none() {
                return Ok(items);
            }
        }
    }

    /// One page of a post's comments, oldest first.
    pub async fn comments_page(
        &self,
        post_id: &str,
        position: Option<&PageCursor>,
        limit: usize,
    ) -> Result<Page<Comment>, ApiError> {
        let spec = ListSpec {
            scope: comments_scope(post_id),
            index: None,
            pk_attr: keys::PK,
            pk: keys::post_pk(post_id),
            sk_attr: keys::SK,
            sk_prefix: "COMMENT#",
            order: Order::OldestFirst,
        };
        self.page(&spec, position, limit, comment_from_item).await
    }

    /// A post and whether `viewer` likes it, in one BatchGetItem.
    pub async fn get_post(&self, post_id: &str, viewer: &str) -> Result<Option<(Post, bool)>, ApiError> {
        let post_key = key(keys::post_pk(post_id), keys::POST_SK);
        let like_key = key(keys::post_pk(post_id), keys::like_sk(viewer));
        let items = self.batch_get(vec![post_key, like_key]).await?;
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

    /// Profiles of `user_ids` and which of `post_ids` `viewer` likes, in one BatchGetItem
    /// (split into concurrent calls past 100 keys).
    pub async fn profiles_and_likes(
        &self,
        user_ids: &HashSet<String>,
        post_ids: &[String],
        viewer: &str,
    ) -> Result<(HashMap<String, Profile>, HashSet<String>), ApiError> {
        let mut wanted: Vec<Item> = user_ids
            .iter()
            .map(|uid| key(keys::user_pk(uid), keys::PROFILE_SK))
            .collect();
        wanted.extend(
            post_ids
                .iter()
                .map(|pid| key(keys::post_pk(pid), keys::like_sk(viewer))),
        );
        let mut profiles = HashMap::new();
        let mut liked = HashSet::new();
        for item in self.batch_get(wanted).await? {
            match get_s(&item, keys::SK).as_deref() {
                Some(keys::PROFILE_SK) => {
                    let profile = profile_from_item(&item)?;
                    profiles.insert(profile.user_id.clone(), profile);
                }
                Some(sk) if sk.starts_with("LIKE#") => {
                    if let Some(pid) =
                        get_s(&item, keys::PK).and_then(|pk| pk.strip_prefix("POST#").map(str::to_string))
                    {
                        liked.insert(pid);
                    }
                }
                _ => {}
            }
        }
        Ok((profiles, liked))
    }

    /// BatchGetItem over any number of keys: chunks of 100 run concurrently, unprocessed keys
    /// are retried with backoff. Missing items are simply absent from the result.
    async fn batch_get(&self, wanted: Vec<Item>) -> Result<Vec<Item>, ApiError> {
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let chunks: Vec<Vec<Item>> = wanted.chunks(BATCH_MAX_KEYS).map(<[Item]>::to_vec).collect();
        let calls = chunks.into_iter().map(|chunk| self.batch_get_chunk(chunk));
        let results = futures::future::try_join_all(calls).await?;
        Ok(results.into_iter().flatten().collect())
    }

    async fn batch_get_chunk(&self, mut pending: Vec<Item>) -> Result<Vec<Item>, ApiError> {
        let mut found = Vec::new();
        for attempt in 0..BATCH_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(backoff(attempt)).await;
            }
            let request = KeysAndAttributes::builder()
                .set_keys(Some(pending))
                .build()
                .map_err(|e| ApiError::Internal(e.to_string()))?;
            let out = self
                .client
                .batch_get_item()
                .request_items(&self.name, request)
                .send()
                .await?;
            if let Some(mut responses) = out.responses {
                found.extend(responses.remove(&self.name).unwrap_or_default());
            }
            pending = out
                .unprocessed_keys
                .and_then(|mut u| u.remove(&self.name))
                .map(|k| k.keys)
                .unwrap_or_default();
            if pending.is_empty() {
                return Ok(found);
            }
        }
        Err(ApiError::Unavailable(
            "DynamoDB left keys unprocessed after retries".into(),
        ))
    }

    /// One page of the global feed, newest first.
    pub async fn feed_page(&self, position: Option<&PageCursor>, limit: usize) -> Result<Page<Post>, ApiError> {
        let spec = ListSpec {
            scope: feed_scope(),
            index: Some(keys::FEED_INDEX),
            pk_attr: keys::FEED_PK,
            pk: keys::FEED_PARTITION.to_string(),
            sk_attr: keys::FEED_SK,
            sk_prefix: "POST#",
            order: Order::NewestFirst,
        };
        self.page(&spec, position, limit, post_from_item).await
    }

    /// Keyset pagination over one list. A page reads `limit + 1` items past its position to
    /// learn whether more exist that way, so every page is one Query. The position's own item
    /// is excluded (it may have been deleted since; the position stays valid either way).
    async fn page<T>(
        &self,
        spec: &ListSpec<'_>,
        position: Option<&PageCursor>,
        limit: usize,
        parse: fn(&Item) -> Result<T, ApiError>,
    ) -> Result<Page<T>, ApiError>
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

    /// Edits a post if `caller` owns it; returns the post as now stored and whether `caller`
    /// likes it. Two round trips, concurrent: a transaction (the edit, a rate-limit token and,
    /// with new media, its claim) beside a BatchGetItem of the post and the caller's like, onto
    /// which the edit's own fields are laid (the read may see the post just before the edit).
    pub async fn update_post(
        &self,
        post_id: &str,
        content: Option<&str>,
        media_url: Option<Option<&str>>,
        new_media: Option<&OwnMedia>,
        editor: Editor<'_>,
    ) -> Result<(Post, bool, Option<Profile>), ApiError> {
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
        if let Some(content) = content {
            sets.push("content = :content");
            values.insert(":content".into(), s(content));
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
                .condition_expression("attribute_exists(pk) AND user_id = :caller")
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
            self.transact_as_author(actions, author, edited_at),
            self.get_post(post_id, caller)
        );
        let author = match written? {
            Ok(author) => author,
            Err(c) if c.failed(0) => return Err(owned_write_failure(c.item(0).is_some()).into_error()),
            Err(c) if c.failed(2) => return Err(media_refused(c.item(2), caller, post_id)),
            Err(c) if c.failed(1) => return Err(rate.refused()),
            Err(c) => return Err(ApiError::Internal(format!("post edit refused: {:?}", c.codes))),
        };
        // Deleted in between: gone is the truthful answer.
        let (mut post, liked) = read?.ok_or_else(|| ApiError::NotFound("post not found".into()))?;
        if let Some(content) = content {
            post.content = content.to_string();
        }
        if let Some(url) = media_url {
            post.media_url = url.map(str::to_string);
        }
        post.edited_at = Some(edited_at.to_string());
        Ok((post, liked, author))
    }

    /// Deletes a post if `caller` owns it, in one DeleteItem. Its comments and likes become
    /// unreachable at once (every read of them checks the post); the stream removes them.
    pub async fn delete_post(&self, post_id: &str, caller: &str) -> Result<Post, ApiError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.name)
            .set_key(Some(key(keys::post_pk(post_id), keys::POST_SK)))
            .condition_expression("attribute_exists(pk) AND user_id = :caller")
            .expression_attribute_values(":caller", s(caller))
            .return_values(ReturnValue::AllOld)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(out) => post_from_item(out.attributes().unwrap_or(&HashMap::new())),
            Err(err) => match err.as_service_error() {
                Some(DeleteItemError::ConditionalCheckFailedException(e)) => {
                    Err(owned_write_failure(e.item().is_some()).into_error())
                }
                _ => Err(err.into()),
            },
        }
    }
}

fn owned_write_failure(item_exists: bool) -> OwnedWriteFailure {
    if item_exists {
        OwnedWriteFailure::NotOwner
    } else {
        OwnedWriteFailure::Missing
    }
}

impl OwnedWriteFailure {
    fn into_error(self) -> ApiError {
        match self {
            OwnedWriteFailure::Missing => ApiError::NotFound("post not found".into()),
            OwnedWriteFailure::NotOwner => ApiError::Forbidden("you can only change your own posts".into()),
        }
    }
}

/// Jittered exponential backoff: 25 ms, 50 ms, 100 ms, ... each scaled by a random 50-100 %.
pub(crate) fn backoff(attempt: u32) -> Duration {
    let base = 25u64 << attempt.min(6);
    let jitter = 50 + (ulid::Ulid::new().random() % 51) as u64;
    Duration::from_millis(base * jitter / 100)
}

/// The scope a feed cursor is bound to.
pub fn feed_scope() -> String {
    "feed".to_string()
}

/// The scope a comment cursor is bound to: one post's comments.
pub fn comments_scope(post_id: &str) -> String {
    format!("comments:{post_id}")
}

/// Why a post may not show the media it names: someone else's, missing, expired or rejected
/// (the same answer for each, so ids cannot be probed), or the caller's but shown by another post.
fn media_refused(seen: Option<&Item>, caller: &str, post_id: &str) -> ApiError {
    let claimed_elsewhere = seen.is_some_and(|item| {
        get_s(item, "user_id").as_deref() == Some(caller)
            && get_s(item, "post_id").is_some_and(|other| other != post_id)
    });
    if claimed_elsewhere {
        ApiError::bad_request(
            "invalid_media_url",
            "that image is already shown by another of your posts; an upload belongs to one post (upload it again)",
        )
    } else {
        ApiError::bad_request(
            "invalid_media_url",
            "`media_url` must be an image you uploaded in the last 24 hours (and that was not rejected)",
        )
    }
}

/// How long an upload no post has claimed is kept (its record expires by TTL, and the stream
/// then deletes its objects).
pub const UNCLAIMED_MEDIA_TTL_SECS: i64 = 24 * 3600;

/// An open WebSocket connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connection {
    pub id: String,
    pub user_id: String,
    /// When the token it was opened with expires (its socket is closed then).
    pub expires_at: i64,
    /// Posts this connection follows.
    pub subscriptions: Vec<String>,
}

/// A committed change, as the table stream reports it, in domain terms.
#[derive(Clone, Debug)]
pub enum Change {
    PostCreated(Post),
    PostChanged {
        old: Post,
        new: Post,
    },
    PostDeleted(Post),
    CommentCreated(Comment),
    CommentDeleted(Comment),
    MediaChanged {
        old: Option<Media>,
        new: Media,
    },
    /// An upload's record was deleted: released by its post, or expired unclaimed (TTL).
    MediaRemoved(Media),
    /// An account is now shown under a name with another key: the old claim can go.
    Renamed {
        user_id: String,
        old_key: String,
    },
    /// Items whose changes nobody is told about (likes, profiles, connections, rate windows).
    Other,
}

impl Change {
    /// Reads a stream record's images (already in SDK form).
    pub fn from_images(old: Option<&Item>, new: Option<&Item>) -> Result<Change, ApiError> {
        let kind = new.or(old).and_then(|i| get_s(i, "type"));
        Ok(match (kind.as_deref(), old, new) {
            (Some("post"), None, Some(n)) => Change::PostCreated(post_from_item(n)?),
            (Some("post"), Some(o), Some(n)) => Change::PostChanged {
                old: post_from_item(o)?,
                new: post_from_item(n)?,
            },
            (Some("post"), Some(o), None) => Change::PostDeleted(post_from_item(o)?),
            (Some("comment"), None, Some(n)) => Change::CommentCreated(comment_from_item(n)?),
            (Some("comment"), Some(o), None) => Change::CommentDeleted(comment_from_item(o)?),
            (Some("media"), o, Some(n)) => Change::MediaChanged {
                old: o.map(media_from_item).transpose()?,
                new: media_from_item(n)?,
            },
            (Some("media"), Some(o), None) => Change::MediaRemoved(media_from_item(o)?),
            (Some("profile"), Some(o), Some(n)) => match (get_s(o, "name_key"), get_s(n, "name_key")) {
                (Some(old_key), new_key) if Some(&old_key) != new_key.as_ref() => Change::Renamed {
                    user_id: require_s(n, "user_id")?,
                    old_key,
                },
                _ => Change::Other,
            },
            _ => Change::Other,
        })
    }
}

/// Most subscriptions one connection may hold.
pub const MAX_SUBSCRIPTIONS: usize = 200;

/// A connection to push to, and when the token it was opened with expires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recipient {
    pub connection_id: String,
    pub expires_at: i64,
}

/// Live WebSocket connections one user may hold at once.
pub const MAX_CONNECTIONS_PER_USER: u32 = 10;

/// A comment edit/delete transaction failed: the post is gone (404), the comment is gone
/// (404), or it is someone else's (403).
fn comment_write_failure(c: &Cancelled) -> ApiError {
    // Action 0 is the post check/counter, action 1 the comment.
    if c.failed(0) {
        ApiError::NotFound("post not found".into())
    } else if c.failed(1) && c.item(1).is_some() {
        ApiError::Forbidden("you can only change your own comments".into())
    } else {
        ApiError::NotFound("comment not found".into())
    }
}

/// Items a list is sorted by: their ULID.
trait HasSortId {
    fn sort_id(&self) -> &str;
}

impl HasSortId for Post {
    fn sort_id(&self) -> &str {
        &self.id
    }
}

impl HasSortId for Comment {
    fn sort_id(&self) -> &str {
        &self.id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_post() -> Post {
        Post {
            id: "01JD0000000000000000000000".into(),
            user_id: "user-1".into(),
            content: "hello".into(),
            media_url: Some("https://cdn.test/x.jpg".into()),
            created_at: "2026-11-23T10:00:00.000Z".into(),
            edited_at: None,
            like_count: 3,
            comment_count: 2,
        }
    }

    #[test]
    fn keys_are_built_in_one_place() {
        assert_eq!(keys::post_pk("01AB"), "POST#01AB");
        assert_eq!(keys::user_pk("u1"), "USER#u1");
        assert_eq!(keys::like_sk("u1"), "LIKE#u1");
        assert_eq!(keys::post_ref("01AB"), "POST#01AB");
    }

    #[test]
    fn a_post_item_carries_its_index_keys_and_round_trips() {
        let post = sample_post();
        let item = post_item(&post);
        assert_eq!(
            get_s(&item, keys::PK).as_deref(),
            Some("POST#01JD0000000000000000000000")
        );
        assert_eq!(get_s(&item, keys::SK).as_deref(), Some(keys::POST_SK));
        assert_eq!(get_s(&item, keys::FEED_PK).as_deref(), Some(keys::FEED_PARTITION));
        assert_eq!(
            get_s(&item, keys::FEED_SK).as_deref(),
            Some("POST#01JD0000000000000000000000")
        );
        assert_eq!(get_s(&item, keys::USER_PK).as_deref(), Some("USER#user-1"));
        assert_eq!(post_from_item(&item).unwrap(), post);
        let without_media = Post {
            media_url: None,
            ..sample_post()
        };
        assert!(!post_item(&without_media).contains_key("media_url"));
    }

    #[test]
    fn a_profile_item_round_trips() {
        let profile = Profile {
            user_id: "u1".into(),
            username: "alice".into(),
            avatar_url: None,
            token_name: "alice".into(),
        };
        let item = profile_item(&profile, "2026-01-01T00:00:00.000Z");
        assert_eq!(get_s(&item, keys::PK).as_deref(), Some("USER#u1"));
        assert_eq!(profile_from_item(&item).unwrap(), profile);
    }

    #[test]
    fn ulid_characters_sort_below_the_upper_bound() {
        let id = ulid::Ulid::new().to_string();
        assert!(id.as_str() < SK_UPPER);
        assert!(id.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_uppercase()));
    }

    #[test]
    fn backoff_grows_and_stays_bounded() {
        for attempt in 1..10 {
            let d = backoff(attempt);
            assert!(d >= Duration::from_millis((25u64 << attempt.min(6)) / 2));
            assert!(d <= Duration::from_millis(25u64 << attempt.min(6)));
        }
    }
}
