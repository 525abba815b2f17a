//! The notification inbox: what a user is told about while away, and what they have read; and
//! the `@mentions` a post or comment makes.

use serde::{Deserialize, Serialize};

use crate::model::{UserView, username_key};

/// What a notification is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    /// Someone commented on a post the recipient had commented on before (among the post's
    /// latest 100 comments, the 10 most recent commenters), the recipient not being its author.
    Reply,
    /// Someone commented on the recipient's post.
    Comment,
    /// A post or comment names the recipient (`@name`). A comment that also replies to them,
    /// or comments on their post, is one notification of this kind (the more personal one).
    Mention,
    /// Someone liked the recipient's post: one notification per post, moved to the top (and
    /// unread) by each new like, with the like count and the latest likers.
    Like,
}

/// A notification as stored. Its id is minted when it is written, so the inbox is newest first
/// by when things reached it (a like group's is new each time a like moves it to the top);
/// once-only per source is the store's marker (`NOTIFIED#<source id>`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    pub id: String,
    pub kind: NotificationKind,
    pub post_id: String,
    /// The comment it is about (`comment`, `reply`, a mention in a comment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment_id: Option<String>,
    /// Who did it (for a like group, the latest liker).
    pub actor_id: String,
    pub created_at: String,
    /// A like group: the latest likers, newest first (at most `LIKERS_SHOWN`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub likers: Vec<String>,
    /// A like group: the post's like count when the latest like was told.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub like_count: Option<u64>,
}

/// A notification as its recipient reads it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct NotificationView {
    pub id: String,
    pub kind: NotificationKind,
    pub post_id: String,
    pub comment_id: Option<String>,
    pub actor: UserView,
    pub created_at: String,
    pub read: bool,
    /// Only in a `like` notification: the latest likers, newest first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub likers: Option<Vec<UserView>>,
    /// Only in a `like` notification: the post's like count when it was last moved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub like_count: Option<u64>,
}

/// `GET /notifications/`.
#[derive(Debug, Serialize)]
pub struct NotificationPage {
    pub notifications: Vec<NotificationView>,
    pub unread_count: u64,
    pub next_page: Option<String>,
    pub previous_page: Option<String>,
}

/// How many different names a post or comment may notify.
pub const MAX_MENTIONS: usize = crate::limits::MENTIONS_PER_ITEM.usize();

/// The name keys (`username_key`) of the `@names` in `text`, each once, in order, at most
/// [`MAX_MENTIONS`]. A mention is `@` at the start or after a character that cannot be part of
/// a name (so `alice@example.com` mentions no one), followed by letters, digits, `_`, `-` or
/// `.`; a trailing `.` or `-` ends the sentence, not the name. Names shown with spaces are
/// mentioned without them (`@bobsmith` is "bob smith"): their keys ignore whitespace.
pub fn mentioned_keys(text: &str) -> Vec<String> {
    let name_char = |c: char| c.is_alphanumeric() || matches!(c, '_' | '-' | '.');
    let mut keys: Vec<String> = Vec::new();
    let mut previous: Option<char> = None;
    let mut chars = text.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        let starts = c == '@' && !previous.is_some_and(|p| name_char(p) || p == '@');
        previous = Some(c);
        if !starts {
            continue;
        }
        let start = at + c.len_utf8();
        let mut end = start;
        while let Some(&(i, n)) = chars.peek() {
            if !name_char(n) {
                break;
            }
            end = i + n.len_utf8();
            previous = Some(n);
            chars.next();
        }
        let name = text[start..end].trim_end_matches(['.', '-']);
        if name.is_empty() || name.chars().count() > crate::model::MAX_USERNAME_CHARS {
            continue;
        }
        let key = username_key(name);
        if !key.is_empty() && !keys.contains(&key) {
            keys.push(key);
            if keys.len() == MAX_MENTIONS {
                break;
            }
        }
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_are_names_after_an_at_sign() {
        assert_eq!(
            mentioned_keys("hi @alice and @Bob."),
            vec![username_key("alice"), username_key("bob")]
        );
        assert_eq!(mentioned_keys("@alice first"), vec![username_key("alice")]);
        assert_eq!(mentioned_keys("(@carol)"), vec![username_key("carol")]);
        // Look-alikes and case are one name, told once.
        assert_eq!(
            mentioned_keys("@alice @ALICE @\u{0430}lice"),
            vec![username_key("alice")]
        );
        // Spaces in a shown name: its key has none.
        assert_eq!(mentioned_keys("@bobsmith"), vec![username_key("bob smith")]);
    }

    #[test]
    fn addresses_and_bare_signs_mention_no_one() {
        assert!(mentioned_keys("mail alice@example.com").is_empty());
        assert!(mentioned_keys("a @ b, @@, @., @-").is_empty());
        assert!(mentioned_keys("@@alice").is_empty());
        let long = format!("@{}", "a".repeat(crate::model::MAX_USERNAME_CHARS + 1));
        assert!(mentioned_keys(&long).is_empty());
    }

    #[test]
    fn mentions_are_bounded() {
        let text: String = (0..50).map(|i| format!("@user{i} ")).collect();
        let keys = mentioned_keys(&text);
        assert_eq!(keys.len(), MAX_MENTIONS);
        assert_eq!(keys[0], username_key("user0"));
    }
}
