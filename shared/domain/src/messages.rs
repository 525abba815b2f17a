//! The WebSocket contract: the messages clients receive, and what they may send.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::{CommentView, PostView};

/// Connections live two hours (API Gateway's own limit); their items expire with them.
pub const CONNECTION_TTL_SECS: i64 = crate::limits::CONNECTION_SECS.i64();
/// Post ids one `subscribe`/`unsubscribe` message may carry.
pub const MAX_POSTS_PER_MESSAGE: usize = crate::limits::POSTS_PER_MESSAGE.usize();

/// Everything the server sends; `type` names it.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(tag = "type")]
pub enum ServerMessage {
    /// To every connection. Events carry no per-user state: `is_liked` is false.
    #[serde(rename = "post.created")]
    PostCreated { post: PostView },
    /// To the post's subscribers and its author's connections.
    #[serde(rename = "post.updated")]
    PostUpdated { post: PostView },
    /// To every connection.
    #[serde(rename = "post.deleted")]
    PostDeleted { post_id: String },
    /// To every connection: a moderator removed the post (clients drop it as if deleted).
    #[serde(rename = "post.removed")]
    PostRemoved { post_id: String },
    /// To every connection: a moderator restored a removed post.
    #[serde(rename = "post.restored")]
    PostRestored { post: PostView },
    #[serde(rename = "like.updated")]
    LikeUpdated { post_id: String, like_count: u64 },
    #[serde(rename = "comment.created")]
    CommentCreated {
        post_id: String,
        comment: CommentView,
        comment_count: u64,
    },
    #[serde(rename = "comment.deleted")]
    CommentDeleted {
        post_id: String,
        comment_id: String,
        comment_count: u64,
    },
    /// To the post's audience: a moderator removed a comment.
    #[serde(rename = "comment.removed")]
    CommentRemoved {
        post_id: String,
        comment_id: String,
        comment_count: u64,
    },
    /// To the post's audience: a moderator restored a removed comment.
    #[serde(rename = "comment.restored")]
    CommentRestored {
        post_id: String,
        comment: CommentView,
        comment_count: u64,
    },
    /// To the recipient's connections: a new notification, and how many are unread now.
    #[serde(rename = "notification.created")]
    NotificationCreated {
        notification: crate::notifications::NotificationView,
        unread_count: u64,
    },
    /// To the uploader's connections.
    #[serde(rename = "media.ready")]
    MediaReady {
        id: String,
        url: String,
        thumbnails: BTreeMap<String, String>,
        width: Option<u32>,
        height: Option<u32>,
    },
    #[serde(rename = "media.rejected")]
    MediaRejected { id: String, url: String, reason: String },
    /// Answers to the client's own messages.
    #[serde(rename = "pong")]
    Pong,
    #[serde(rename = "subscribed")]
    Subscribed { post_ids: Vec<String> },
    #[serde(rename = "unsubscribed")]
    Unsubscribed { post_ids: Vec<String> },
    #[serde(rename = "error")]
    Error { code: String, message: String },
}

/// A client's message that cannot be acted on: what the client is told (`invalid_message`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidMessage(pub String);

/// What a client may send.
#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(tag = "action", rename_all = "lowercase", deny_unknown_fields)]
pub enum ClientMessage {
    Subscribe { post_ids: Vec<String> },
    Unsubscribe { post_ids: Vec<String> },
    Ping {},
}

fn canonical_ids(ids: Vec<String>) -> Vec<String> {
    let mut ids: Vec<String> = ids
        .iter()
        .filter_map(|id| ulid::Ulid::from_string(id).ok())
        .map(|id| id.to_string())
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

impl ClientMessage {
    /// Parses and checks a client's message; the error is what the client is told.
    pub fn parse(body: &str) -> Result<ClientMessage, InvalidMessage> {
        let message: ClientMessage = serde_json::from_str(body).map_err(|e| {
            InvalidMessage(format!(
                "expected {{\"action\":\"subscribe\"|\"unsubscribe\",\"post_ids\":[...]}} or {{\"action\":\"ping\"}}: {e}"
            ))
        })?;
        if let ClientMessage::Subscribe { post_ids } | ClientMessage::Unsubscribe { post_ids } = &message {
            if post_ids.is_empty() || post_ids.len() > MAX_POSTS_PER_MESSAGE {
                return Err(InvalidMessage(format!(
                    "`post_ids` must hold 1 to {MAX_POSTS_PER_MESSAGE} ids"
                )));
            }
            if let Some(bad) = post_ids
                .iter()
                .find(|id| id.len() != 26 || ulid::Ulid::from_string(id).is_err())
            {
                return Err(InvalidMessage(format!("`{bad}` is not a post id")));
            }
        }
        // Ids in their canonical (upper-case) form, as posts are keyed and as the HTTP routes
        // read them: a lower-case id names the same post, and must match its events.
        let message = match message {
            ClientMessage::Subscribe { post_ids } => ClientMessage::Subscribe {
                post_ids: canonical_ids(post_ids),
            },
            ClientMessage::Unsubscribe { post_ids } => ClientMessage::Unsubscribe {
                post_ids: canonical_ids(post_ids),
            },
            other => other,
        };
        Ok(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_messages_parse_or_say_why_not() {
        let id = "01JDQ8Z6Y0X9W8V7T6S5R4Q3P2";
        assert_eq!(
            ClientMessage::parse(&format!(r#"{{"action":"subscribe","post_ids":["{id}"]}}"#)).unwrap(),
            ClientMessage::Subscribe {
                post_ids: vec![id.into()]
            }
        );
        assert_eq!(
            ClientMessage::parse(r#"{"action":"ping"}"#).unwrap(),
            ClientMessage::Ping {}
        );
        for bad in [
            "not json",
            r#"{"action":"dance"}"#,
            r#"{"action":"subscribe"}"#,
            r#"{"action":"subscribe","post_ids":[]}"#,
            r#"{"action":"subscribe","post_ids":["nope"]}"#,
            r#"{"action":"ping","extra":1}"#,
            "[]",
        ] {
            assert!(ClientMessage::parse(bad).is_err(), "{bad}");
        }
        let too_many: Vec<String> = (0..=MAX_POSTS_PER_MESSAGE).map(|_| format!("\"{id}\"")).collect();
        let message = format!(r#"{{"action":"subscribe","post_ids":[{}]}}"#, too_many.join(","));
        assert!(ClientMessage::parse(&message).is_err());
    }

    #[test]
    fn server_messages_carry_their_type() {
        let m = serde_json::to_value(ServerMessage::LikeUpdated {
            post_id: "p".into(),
            like_count: 3,
        })
        .unwrap();
        assert_eq!(
            m,
            serde_json::json!({"type": "like.updated", "post_id": "p", "like_count": 3})
        );
        assert_eq!(
            serde_json::to_value(ServerMessage::Pong).unwrap(),
            serde_json::json!({"type": "pong"})
        );
    }
}
