//! The notification inbox: what a user is told about while away, and what they have read.

use serde::{Deserialize, Serialize};

use crate::model::UserView;

/// What a notification is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    /// Someone commented on the recipient's post.
    Comment,
    /// Someone commented on a post the recipient had commented on before (one of the post's
    /// latest 100 comments), the recipient not being its author.
    Reply,
}

/// A notification as stored: its id is its source's (the comment's ULID), so the stream's
/// redelivery of the same record finds it written and writes nothing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    pub id: String,
    pub kind: NotificationKind,
    pub post_id: String,
    pub comment_id: String,
    pub actor_id: String,
    pub created_at: String,
}

/// A notification as its recipient reads it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct NotificationView {
    pub id: String,
    pub kind: NotificationKind,
    pub post_id: String,
    pub comment_id: String,
    pub actor: UserView,
    pub created_at: String,
    pub read: bool,
}

/// `GET /notifications/`.
#[derive(Debug, Serialize)]
pub struct NotificationPage {
    pub notifications: Vec<NotificationView>,
    pub unread_count: u64,
    pub next_page: Option<String>,
    pub previous_page: Option<String>,
}
