//! Item codecs: each domain type to its table item and back, and the attribute helpers.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use super::Item;
use super::error::StoreError;
use super::keys;
use forum_domain::model::MediaType;
use forum_domain::model::username_key;
use forum_domain::model::{Comment, Media, MediaStatus, Post, Profile};

pub(super) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub(super) fn n(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub(super) fn signed(value: i64) -> AttributeValue {
    AttributeValue::N(value.to_string())
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
pub(super) fn malformed(item: &Item, name: &str) -> StoreError {
    let key = |attr: &str| get_s(item, attr).unwrap_or_default();
    tracing::error!(pk = %key(keys::PK), sk = %key(keys::SK), attribute = name, "stored item lacks a required attribute");
    crate::metrics::emit(crate::metrics::Metric::MalformedItems, 1, "store");
    StoreError::Internal(format!("a stored item lacks `{name}`"))
}

pub(super) fn require_s(item: &Item, name: &str) -> Result<String, StoreError> {
    get_s(item, name).ok_or_else(|| malformed(item, name))
}

/// A number attribute, required.
pub(super) fn require_n<T: std::str::FromStr>(item: &Item, name: &str) -> Result<T, StoreError> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| malformed(item, name))
}

/// A number attribute that an item may lack (the size of media not processed yet).
pub(super) fn optional_n<T: std::str::FromStr>(item: &Item, name: &str) -> Result<Option<T>, StoreError> {
    match item.get(name) {
        None => Ok(None),
        Some(_) => require_n(item, name).map(Some),
    }
}

pub(super) fn post_item(post: &Post) -> Item {
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

pub(super) fn post_from_item(item: &Item) -> Result<Post, StoreError> {
    Ok(Post {
        id: require_s(item, "post_id")?,
        user_id: require_s(item, "user_id")?,
        content: require_s(item, "content")?,
        media_url: get_s(item, "media_url"),
        created_at: require_s(item, "created_at")?,
        edited_at: get_s(item, "edited_at"),
        like_count: require_n(item, "like_count")?,
        comment_count: require_n(item, "comment_count")?,
    })
}

pub(super) fn comment_item(comment: &Comment) -> Item {
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

pub(super) fn comment_from_item(item: &Item) -> Result<Comment, StoreError> {
    Ok(Comment {
        id: require_s(item, "comment_id")?,
        post_id: require_s(item, "post_id")?,
        user_id: require_s(item, "user_id")?,
        content: require_s(item, "content")?,
        created_at: require_s(item, "created_at")?,
        edited_at: get_s(item, "edited_at"),
    })
}

pub(super) fn like_item(post_id: &str, user_id: &str, now: &str) -> Item {
    let mut item = key(keys::post_pk(post_id), keys::like_sk(user_id));
    item.insert("type".into(), s("like"));
    item.insert("post_id".into(), s(post_id));
    item.insert("user_id".into(), s(user_id));
    item.insert("created_at".into(), s(now));
    item.insert(keys::USER_PK.into(), s(keys::user_pk(user_id)));
    item.insert(keys::USER_SK.into(), s(keys::like_ref(post_id)));
    item
}

pub(super) fn media_item(media: &Media) -> Item {
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

pub(super) fn media_from_item(item: &Item) -> Result<Media, StoreError> {
    let status = require_s(item, "status")?;
    let content_type = require_s(item, "content_type")?;
    Ok(Media {
        id: require_s(item, "media_id")?,
        user_id: require_s(item, "user_id")?,
        status: MediaStatus::parse(&status).ok_or_else(|| StoreError::Internal(format!("media status {status}")))?,
        media_type: MediaType::from_content_type(&content_type)
            .ok_or_else(|| StoreError::Internal(format!("media type {content_type}")))?,
        size: require_n(item, "size")?,
        created_at: require_s(item, "created_at")?,
        width: optional_n(item, "width")?,
        height: optional_n(item, "height")?,
        reason: get_s(item, "reason"),
        post_id: get_s(item, "post_id"),
    })
}

pub(super) fn profile_item(profile: &Profile, now: &str) -> Item {
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

pub(super) fn profile_from_item(item: &Item) -> Result<Profile, StoreError> {
    let username = require_s(item, "username")?;
    Ok(Profile {
        user_id: require_s(item, "user_id")?,
        token_name: require_s(item, "token_name")?,
        username,
        avatar_url: get_s(item, "avatar_url"),
    })
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
