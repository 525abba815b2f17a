//! Item codecs: each domain type to its table item and back, and the attribute helpers.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use super::Item;
use super::error::StoreError;
use super::keys;
use forum_domain::model::{Comment, Media, MediaStatus, MediaType, Post, Profile, username_key};
use forum_domain::moderation::{LogEntry, Removal, Suspension};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub(super) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub(super) fn n(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub(super) fn signed(value: i64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// A list of user ids, as `mentions` stores them.
pub(super) fn mentions_value(users: &[String]) -> AttributeValue {
    AttributeValue::L(users.iter().map(|u| s(u.as_str())).collect())
}

pub(super) fn key(pk: String, sk: impl Into<String>) -> Item {
    HashMap::from([(keys::PK.to_string(), s(pk)), (keys::SK.to_string(), s(sk))])
}

pub(super) fn get_s(item: &Item, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
}

/// A stored item that lacks an attribute every item of its kind has, or holds one of the wrong
/// type: an error, logged and counted, never a default (a counter read as 0, a connection read
/// as never expiring).
pub(super) fn malformed(item: &Item, why: &str) -> StoreError {
    let key = |attr: &str| get_s(item, attr).unwrap_or_default();
    tracing::error!(pk = %key(keys::PK), sk = %key(keys::SK), why, "stored item is malformed");
    crate::metrics::emit(crate::metrics::Metric::MalformedItems, 1, "store");
    StoreError::Internal(format!("a stored item is malformed: {why}"))
}

/// An item read as the record type `T` (serde_dynamo): every attribute `T` requires must be
/// there with its type, or the item is [`malformed`]; attributes `T` does not name are ignored.
pub(super) fn decode<T: DeserializeOwned>(item: &Item) -> Result<T, StoreError> {
    serde_dynamo::from_item(item.clone()).map_err(|e| malformed(item, &e.to_string()))
}

/// A record as an item. Records are strings and numbers: this fails only on a bug.
pub(super) fn encode<T: Serialize>(record: &T) -> Result<Item, StoreError> {
    serde_dynamo::to_item(record).map_err(|e| StoreError::Internal(format!("encoding an item: {e}")))
}

/// The keys and the item type every record carries.
#[derive(Serialize)]
struct Keys<'a> {
    pk: String,
    sk: String,
    #[serde(rename = "type")]
    kind: &'a str,
}

fn keyed(pk: String, sk: impl Into<String>, kind: &str) -> Keys<'_> {
    Keys {
        pk,
        sk: sk.into(),
        kind,
    }
}

/// A post item: its attributes, and its places in the feed (gsi1) and its author's items (gsi2).
#[derive(Serialize, Deserialize)]
struct PostRecord {
    post_id: String,
    user_id: String,
    content: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    media_url: Option<String>,
    created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    edited_at: Option<String>,
    like_count: u64,
    comment_count: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    removed: Option<Removal>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    mentions: Vec<String>,
}

#[derive(Serialize)]
struct Indexed<'a, T> {
    #[serde(flatten)]
    keys: Keys<'a>,
    #[serde(flatten)]
    record: T,
    #[serde(skip_serializing_if = "Option::is_none")]
    gsi1pk: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    gsi1sk: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    gsi2pk: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    gsi2sk: Option<String>,
}

impl<'a, T> Indexed<'a, T> {
    fn new(keys: Keys<'a>, record: T) -> Self {
        Indexed {
            keys,
            record,
            gsi1pk: None,
            gsi1sk: None,
            gsi2pk: None,
            gsi2sk: None,
        }
    }

    /// Listed in the feed (gsi1).
    fn in_feed(mut self, sk: String) -> Self {
        self.gsi1pk = Some(keys::FEED_PARTITION.to_string());
        self.gsi1sk = Some(sk);
        self
    }

    /// Listed among a user's items (gsi2).
    fn of_user(mut self, user_id: &str, sk: String) -> Self {
        self.gsi2pk = Some(keys::user_pk(user_id));
        self.gsi2sk = Some(sk);
        self
    }
}

pub(super) fn post_item(post: &Post) -> Result<Item, StoreError> {
    let record = PostRecord {
        post_id: post.id.clone(),
        user_id: post.user_id.clone(),
        content: post.content.clone(),
        media_url: post.media_url.clone(),
        created_at: post.created_at.clone(),
        edited_at: post.edited_at.clone(),
        like_count: post.like_count,
        comment_count: post.comment_count,
        removed: post.removed.clone(),
        mentions: post.mentions.clone(),
    };
    // A removed post is not in the feed (restoring it puts its keys back).
    let indexed = Indexed::new(keyed(keys::post_pk(&post.id), keys::POST_SK, "post"), record);
    let indexed = if post.removed.is_some() {
        indexed
    } else {
        indexed.in_feed(keys::post_ref(&post.id))
    };
    encode(&indexed.of_user(&post.user_id, keys::post_ref(&post.id)))
}

pub(super) fn post_from_item(item: &Item) -> Result<Post, StoreError> {
    let record: PostRecord = decode(item)?;
    Ok(Post {
        id: record.post_id,
        user_id: record.user_id,
        content: record.content,
        media_url: record.media_url,
        created_at: record.created_at,
        edited_at: record.edited_at,
        like_count: record.like_count,
        comment_count: record.comment_count,
        removed: record.removed,
        mentions: record.mentions,
    })
}

#[derive(Serialize, Deserialize)]
struct CommentRecord {
    comment_id: String,
    post_id: String,
    user_id: String,
    content: String,
    created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    edited_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    removed: Option<Removal>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    mentions: Vec<String>,
}

pub(super) fn comment_item(comment: &Comment) -> Result<Item, StoreError> {
    let record = CommentRecord {
        comment_id: comment.id.clone(),
        post_id: comment.post_id.clone(),
        user_id: comment.user_id.clone(),
        content: comment.content.clone(),
        created_at: comment.created_at.clone(),
        edited_at: comment.edited_at.clone(),
        removed: comment.removed.clone(),
        mentions: comment.mentions.clone(),
    };
    encode(
        &Indexed::new(
            keyed(
                keys::post_pk(&comment.post_id),
                keys::comment_sk(&comment.id),
                "comment",
            ),
            record,
        )
        .of_user(&comment.user_id, keys::comment_sk(&comment.id)),
    )
}

pub(super) fn comment_from_item(item: &Item) -> Result<Comment, StoreError> {
    let record: CommentRecord = decode(item)?;
    Ok(Comment {
        id: record.comment_id,
        post_id: record.post_id,
        user_id: record.user_id,
        content: record.content,
        created_at: record.created_at,
        edited_at: record.edited_at,
        removed: record.removed,
        mentions: record.mentions,
    })
}

#[derive(Serialize)]
struct LikeRecord<'a> {
    post_id: &'a str,
    user_id: &'a str,
    created_at: &'a str,
}

pub(super) fn like_item(post_id: &str, user_id: &str, now: &str) -> Result<Item, StoreError> {
    let record = LikeRecord {
        post_id,
        user_id,
        created_at: now,
    };
    encode(
        &Indexed::new(keyed(keys::post_pk(post_id), keys::like_sk(user_id), "like"), record)
            .of_user(user_id, keys::like_ref(post_id)),
    )
}

/// A post's like counter alone (what a like toggle reads back).
#[derive(Deserialize)]
pub(super) struct LikeCount {
    pub(super) like_count: u64,
}

#[derive(Serialize, Deserialize)]
struct MediaRecord {
    media_id: String,
    user_id: String,
    status: MediaStatus,
    /// `image/jpeg` or `image/png`.
    content_type: String,
    size: u64,
    created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    height: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    post_id: Option<String>,
}

pub(super) fn media_item(media: &Media) -> Result<Item, StoreError> {
    let record = MediaRecord {
        media_id: media.id.clone(),
        user_id: media.user_id.clone(),
        status: media.status,
        content_type: media.media_type.content_type().to_string(),
        size: media.size,
        created_at: media.created_at.clone(),
        width: media.width,
        height: media.height,
        reason: media.reason.clone(),
        post_id: media.post_id.clone(),
    };
    encode(
        &Indexed::new(keyed(keys::media_pk(&media.id), keys::MEDIA_SK, "media"), record)
            .of_user(&media.user_id, format!("MEDIA#{}", media.id)),
    )
}

pub(super) fn media_from_item(item: &Item) -> Result<Media, StoreError> {
    let record: MediaRecord = decode(item)?;
    let media_type =
        MediaType::from_content_type(&record.content_type).ok_or_else(|| malformed(item, "content_type"))?;
    Ok(Media {
        id: record.media_id,
        user_id: record.user_id,
        status: record.status,
        media_type,
        size: record.size,
        created_at: record.created_at,
        width: record.width,
        height: record.height,
        reason: record.reason,
        post_id: record.post_id,
    })
}

#[derive(Serialize, Deserialize)]
struct ProfileRecord {
    user_id: String,
    username: String,
    token_name: String,
    /// The username's key ([`username_key`]): what the name claim item is keyed by.
    name_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    avatar_url: Option<String>,
    updated_at: String,
}

pub(super) fn profile_item(profile: &Profile, now: &str) -> Result<Item, StoreError> {
    let record = ProfileRecord {
        user_id: profile.user_id.clone(),
        username: profile.username.clone(),
        token_name: profile.token_name.clone(),
        name_key: username_key(&profile.username),
        avatar_url: profile.avatar_url.clone(),
        updated_at: now.to_string(),
    };
    encode(&Indexed::new(
        keyed(keys::user_pk(&profile.user_id), keys::PROFILE_SK, "profile"),
        record,
    ))
}

/// What a profile item must hold to be shown (its `name_key` and `updated_at` are the
/// store's own bookkeeping).
#[derive(Deserialize)]
struct ProfileView {
    user_id: String,
    username: String,
    token_name: String,
    #[serde(default)]
    avatar_url: Option<String>,
}

/// A profile's owner and the key of the name it is shown under (what a rename changes).
#[derive(Deserialize)]
pub(super) struct ProfileName {
    pub(super) user_id: String,
    #[serde(default)]
    pub(super) name_key: Option<String>,
}

pub(super) fn profile_from_item(item: &Item) -> Result<Profile, StoreError> {
    let record: ProfileView = decode(item)?;
    Ok(Profile {
        user_id: record.user_id,
        username: record.username,
        avatar_url: record.avatar_url,
        token_name: record.token_name,
    })
}

/// A moderation log entry (`MODLOG` / `ACTION#<id>`): the entry as the API shows it.
pub(super) fn log_item(entry: &LogEntry) -> Result<Item, StoreError> {
    #[derive(Serialize)]
    struct Record<'a> {
        #[serde(flatten)]
        keys: Keys<'a>,
        #[serde(flatten)]
        entry: &'a LogEntry,
    }
    encode(&Record {
        keys: keyed(keys::MODLOG_PARTITION.to_string(), keys::log_sk(&entry.id), "modlog"),
        entry,
    })
}

pub(super) fn log_entry_from_item(item: &Item) -> Result<LogEntry, StoreError> {
    decode(item)
}

/// A suspension (`USER#<uid>` / `SUSPENSION`): `until_epoch` is what write conditions compare,
/// and its `ttl`, so DynamoDB removes it once over.
#[derive(Serialize, Deserialize)]
struct SuspensionRecord {
    #[serde(flatten)]
    suspension: Suspension,
    until_epoch: i64,
    by: String,
    ttl: i64,
}

pub(super) fn suspension_item(suspension: &Suspension, until_epoch: i64, by: &str) -> Result<Item, StoreError> {
    #[derive(Serialize)]
    struct Record<'a> {
        #[serde(flatten)]
        keys: Keys<'a>,
        #[serde(flatten)]
        record: SuspensionRecord,
    }
    encode(&Record {
        keys: keyed(keys::user_pk(&suspension.user_id), keys::SUSPENSION_SK, "suspension"),
        record: SuspensionRecord {
            suspension: suspension.clone(),
            until_epoch,
            by: by.to_string(),
            ttl: until_epoch,
        },
    })
}

/// A suspension item and when it ends (Unix seconds).
pub(super) fn suspension_from_item(item: &Item) -> Result<(Suspension, i64), StoreError> {
    let record: SuspensionRecord = decode(item)?;
    Ok((record.suspension, record.until_epoch))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backoff;
    use crate::keys;
    use crate::page::SK_UPPER;
    use forum_domain::model::{Post, Profile};
    use std::time::Duration;

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
            removed: None,
            mentions: vec!["user-2".into()],
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
        let item = post_item(&post).unwrap();
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
        assert!(!post_item(&without_media).unwrap().contains_key("media_url"));
        // What every post has is required: never read as a default.
        let mut broken = item.clone();
        broken.remove("like_count");
        assert!(post_from_item(&broken).is_err());
        broken.insert("like_count".into(), s("three"));
        assert!(post_from_item(&broken).is_err());
    }

    #[test]
    fn a_profile_item_round_trips() {
        let profile = Profile {
            user_id: "u1".into(),
            username: "alice".into(),
            avatar_url: None,
            token_name: "alice".into(),
        };
        let item = profile_item(&profile, "2026-01-01T00:00:00.000Z").unwrap();
        assert_eq!(get_s(&item, keys::PK).as_deref(), Some("USER#u1"));
        assert_eq!(profile_from_item(&item).unwrap(), profile);
    }

    #[test]
    fn ulid_characters_sort_below_the_upper_bound() {
        let id = ulid::Ulid::new().to_string();
        assert!(id.as_str() < SK_UPPER);
        assert!(id.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_uppercase()));
        // User ids (block lists) may hold any character but `#`: all sort below it too.
        for user in ["local-~~~", "\u{FFFF}", "\u{10FFFE}", "ü-user"] {
            assert!(user < SK_UPPER, "{user}");
        }
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
