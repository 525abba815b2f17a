//! The table's stream: a record's images (items) to domain changes.

use super::items::{ProfileName, comment_from_item, decode, get_s, media_from_item, post_from_item};

use super::Item;
use super::error::StoreError;
use forum_domain::model::{Comment, Media, Post};

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
    /// Edited, or removed or restored by a moderator.
    CommentChanged {
        old: Comment,
        new: Comment,
    },
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
    /// Someone liked a post (a new like item; `liked_at` tells this like from a later one).
    Liked {
        post_id: String,
        user_id: String,
        liked_at: String,
    },
    /// Items whose changes nobody is told about (likes taken back, profiles, connections,
    /// rate windows).
    Other,
}

/// A like item as the stream reads it.
#[derive(serde::Deserialize)]
struct LikeSeen {
    post_id: String,
    user_id: String,
    created_at: String,
}

impl Change {
    /// Reads a stream record's images (already in SDK form).
    pub fn from_images(old: Option<&Item>, new: Option<&Item>) -> Result<Change, StoreError> {
        let kind = new.or(old).and_then(|i| get_s(i, "type"));
        Ok(match (kind.as_deref(), old, new) {
            (Some("post"), None, Some(n)) => Change::PostCreated(post_from_item(n)?),
            (Some("post"), Some(o), Some(n)) => Change::PostChanged {
                old: post_from_item(o)?,
                new: post_from_item(n)?,
            },
            (Some("post"), Some(o), None) => Change::PostDeleted(post_from_item(o)?),
            (Some("comment"), None, Some(n)) => Change::CommentCreated(comment_from_item(n)?),
            (Some("comment"), Some(o), Some(n)) => Change::CommentChanged {
                old: comment_from_item(o)?,
                new: comment_from_item(n)?,
            },
            (Some("comment"), Some(o), None) => Change::CommentDeleted(comment_from_item(o)?),
            (Some("media"), o, Some(n)) => Change::MediaChanged {
                old: o.map(media_from_item).transpose()?,
                new: media_from_item(n)?,
            },
            (Some("media"), Some(o), None) => Change::MediaRemoved(media_from_item(o)?),
            (Some("like"), None, Some(n)) => {
                let like: LikeSeen = decode(n)?;
                Change::Liked {
                    post_id: like.post_id,
                    user_id: like.user_id,
                    liked_at: like.created_at,
                }
            }
            (Some("profile"), Some(o), Some(n)) => {
                let (old, new): (ProfileName, ProfileName) = (decode(o)?, decode(n)?);
                match old.name_key {
                    Some(old_key) if Some(&old_key) != new.name_key.as_ref() => Change::Renamed {
                        user_id: new.user_id,
                        old_key,
                    },
                    _ => Change::Other,
                }
            }
            _ => Change::Other,
        })
    }
}
