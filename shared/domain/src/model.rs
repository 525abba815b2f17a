//! Domain types and the JSON shapes of the API contract (openapi.yaml).

use serde::{Deserialize, Serialize};

/// Current time as the API writes it: RFC 3339, UTC, millisecond precision.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A new id: a ULID, strictly increasing within this process even within one millisecond,
/// so items created one after another sort in creation order.
pub fn new_id() -> String {
    static GENERATOR: std::sync::Mutex<ulid::Generator> = std::sync::Mutex::new(ulid::Generator::new());
    let generated = GENERATOR.lock().ok().and_then(|mut g| g.generate().ok());
    // (Not `unwrap_or_default`: a default Ulid is the nil id.)
    match generated {
        Some(id) => id.to_string(),
        None => ulid::Ulid::new().to_string(),
    }
}

/// The creation time an id carries (a ULID's first 48 bits are Unix milliseconds), as the API
/// writes it. Items store it too, but anything that knows an id knows its timestamp.
pub fn timestamp_of(id: &str) -> Option<String> {
    let ulid = ulid::Ulid::from_string(id).ok()?;
    let at = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ulid.timestamp_ms() as i64)?;
    Some(at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// A new id and the creation timestamp it carries.
pub fn new_id_with_timestamp() -> (String, String) {
    let id = new_id();
    let at = timestamp_of(&id).unwrap_or_else(now_rfc3339);
    (id, at)
}

/// A forum post as stored. Counters live on the post item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Post {
    /// A ULID: time-ordered, so it orders the feed.
    pub id: String,
    pub user_id: String,
    pub content: String,
    pub media_url: Option<String>,
    pub created_at: String,
    pub edited_at: Option<String>,
    pub like_count: u64,
    pub comment_count: u64,
    /// Set while a moderator has removed it: then only moderators read it.
    pub removed: Option<crate::moderation::Removal>,
    /// The users its text mentions (`@name`), resolved when it was written or last edited.
    pub mentions: Vec<String>,
}

/// Longest display name kept (characters).
pub const MAX_USERNAME_CHARS: usize = crate::limits::USERNAME_CHARS.usize();

/// A user's public profile, kept from the claims of their token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Profile {
    pub user_id: String,
    /// The name shown: unique up to case and look-alikes (`validate::username_key`). It is
    /// `token_name` unless another account held that first ([`Profile::fallback_name`]).
    pub username: String,
    pub avatar_url: Option<String>,
    /// The name the token asks for, as its claims give it.
    pub token_name: String,
}

impl Profile {
    /// The profile shown when a profile item is missing (it is written with every post, so
    /// this only covers data written outside the API).
    pub fn unknown(user_id: &str) -> Self {
        Profile {
            user_id: user_id.to_string(),
            username: user_id.to_string(),
            avatar_url: None,
            token_name: user_id.to_string(),
        }
    }

    /// The name an account is shown under when another account holds the one its token asks
    /// for: that name and a tag derived from the account's id (`alice-k3v9q`), so each
    /// account's second choice differs and stays the same across requests.
    pub fn fallback_name(&self) -> String {
        use sha2::{Digest, Sha256};
        const TAG: &[u8; 32] = b"abcdefghjkmnpqrstvwxyz0123456789";
        let digest = Sha256::digest(self.user_id.as_bytes());
        let tag: String = digest
            .iter()
            .take(5)
            .map(|b| TAG[usize::from(b % 32)] as char)
            .collect();
        let room = MAX_USERNAME_CHARS - tag.len() - 1;
        let base: String = self.token_name.chars().take(room).collect();
        format!("{base}-{tag}")
    }
}

/// `user` in every response.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct UserView {
    pub id: String,
    pub username: String,
    pub avatar_url: Option<String>,
}

impl From<&Profile> for UserView {
    fn from(p: &Profile) -> Self {
        UserView {
            id: p.user_id.clone(),
            username: p.username.clone(),
            avatar_url: p.avatar_url.clone(),
        }
    }
}

/// A post as the API returns it (openapi.yaml's `Post`).
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct PostView {
    pub id: String,
    pub user: UserView,
    pub content: String,
    pub media_url: Option<String>,
    pub timestamp: String,
    pub edited_at: Option<String>,
    pub like_count: u64,
    pub comment_count: u64,
    pub is_liked: bool,
    /// Only in a moderator's view of a removed post (no one else sees one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub removed: Option<crate::moderation::Removal>,
}

impl PostView {
    pub fn new(post: Post, author: &Profile, is_liked: bool) -> Self {
        PostView {
            id: post.id,
            user: author.into(),
            content: post.content,
            media_url: post.media_url,
            timestamp: post.created_at,
            edited_at: post.edited_at,
            like_count: post.like_count,
            comment_count: post.comment_count,
            is_liked,
            removed: post.removed,
        }
    }
}

/// `GET /posts/`.
#[derive(Debug, Serialize)]
pub struct PostPage {
    pub posts: Vec<PostView>,
    pub next_page: Option<String>,
    pub previous_page: Option<String>,
}

/// A comment as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Comment {
    /// A ULID: orders a post's comments oldest first.
    pub id: String,
    pub post_id: String,
    pub user_id: String,
    pub content: String,
    pub created_at: String,
    pub edited_at: Option<String>,
    /// Set while a moderator has removed it: then only moderators see it.
    pub removed: Option<crate::moderation::Removal>,
    /// The users its text mentions (`@name`), resolved when it was written or last edited.
    pub mentions: Vec<String>,
}

/// A comment as the API returns it (openapi.yaml's `Comment`).
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct CommentView {
    pub id: String,
    pub post_id: String,
    pub user: UserView,
    pub content: String,
    pub timestamp: String,
    pub edited_at: Option<String>,
    /// Only in a moderator's view of a removed comment (no one else sees one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub removed: Option<crate::moderation::Removal>,
}

impl CommentView {
    pub fn new(comment: Comment, author: &Profile) -> Self {
        CommentView {
            id: comment.id,
            post_id: comment.post_id,
            user: author.into(),
            content: comment.content,
            timestamp: comment.created_at,
            edited_at: comment.edited_at,
            removed: comment.removed,
        }
    }
}

/// `GET /posts/{id}/comments/`.
#[derive(Debug, Serialize)]
pub struct CommentPage {
    pub comments: Vec<CommentView>,
    pub next_page: Option<String>,
    pub previous_page: Option<String>,
}

/// `POST /posts/{id}/like/`: the caller's like after the toggle, and the committed count.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
pub struct LikeState {
    pub is_liked: bool,
    pub like_count: u64,
}

/// Where an upload is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaStatus {
    /// Uploaded or about to be; `process-media` has not finished with it.
    Pending,
    /// Sanitized image and thumbnails are served.
    Ready,
    /// Refused by `process-media`; `reason` says why. Nothing is served.
    Rejected,
}

impl MediaStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MediaStatus::Pending => "pending",
            MediaStatus::Ready => "ready",
            MediaStatus::Rejected => "rejected",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "pending" => Some(MediaStatus::Pending),
            "ready" => Some(MediaStatus::Ready),
            "rejected" => Some(MediaStatus::Rejected),
            _ => None,
        }
    }
}

/// An upload and what became of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Media {
    pub id: String,
    pub user_id: String,
    pub status: MediaStatus,
    pub media_type: MediaType,
    /// Bytes uploaded (declared, for a presigned upload).
    pub size: u64,
    pub created_at: String,
    /// Upright size of the display image, once ready.
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub reason: Option<String>,
    /// The post that shows it, once one claimed it: an upload belongs to one post at most.
    pub post_id: Option<String>,
}

/// The accepted image types: a domain type (records, URLs and the pipeline all name it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MediaType {
    Jpeg,
    Png,
}

impl MediaType {
    pub fn content_type(self) -> &'static str {
        match self {
            MediaType::Jpeg => "image/jpeg",
            MediaType::Png => "image/png",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            MediaType::Jpeg => "jpg",
            MediaType::Png => "png",
        }
    }

    pub fn from_content_type(value: &str) -> Option<Self> {
        match value.trim().to_ascii_lowercase().as_str() {
            "image/jpeg" | "image/jpg" => Some(MediaType::Jpeg),
            "image/png" => Some(MediaType::Png),
            _ => None,
        }
    }

    /// Judges the type by magic bytes alone.
    pub fn sniff(bytes: &[u8]) -> Option<Self> {
        if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(MediaType::Jpeg)
        } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(MediaType::Png)
        } else {
            None
        }
    }
}

/// The form under which display names are unique: names a reader could take for one another
/// share a key. NFKC (fullwidth forms, ligatures), lower case, the UTS #39 skeleton
/// (homoglyphs from other scripts: Cyrillic `а` is Latin `a`; `rn` is `m`; default-ignorable
/// characters vanish), lower case again (a skeleton keeps case), then `i` read as `l` (`I`,
/// `l`, `1` and `|` look alike in many fonts), and no whitespace.
pub fn username_key(name: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    use unicode_security::confusable_detection::skeleton;
    let folded = name.nfkc().collect::<String>().to_lowercase();
    let first: String = skeleton(&folded).collect();
    skeleton(&first.to_lowercase())
        .filter(|c| !c.is_whitespace())
        .map(|c| if c == 'i' { 'l' } else { c })
        .collect()
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
    /// Reports of posts and comments.
    Report,
    /// WebSocket subscribe and unsubscribe messages that change what a connection follows.
    Subscription,
}

impl RateAction {
    pub const ALL: [RateAction; 7] = [
        RateAction::Post,
        RateAction::Comment,
        RateAction::LikeToggle,
        RateAction::Edit,
        RateAction::Upload,
        RateAction::Report,
        RateAction::Subscription,
    ];

    /// Its limit in the table of limits (its default, and the parameter that sets it).
    pub const fn limit(self) -> &'static crate::limits::Limit {
        match self {
            RateAction::Post => &crate::limits::POSTS_PER_MINUTE,
            RateAction::Comment => &crate::limits::COMMENTS_PER_MINUTE,
            RateAction::LikeToggle => &crate::limits::LIKES_PER_MINUTE,
            RateAction::Edit => &crate::limits::EDITS_PER_MINUTE,
            RateAction::Upload => &crate::limits::UPLOADS_PER_MINUTE,
            RateAction::Report => &crate::limits::REPORTS_PER_MINUTE,
            RateAction::Subscription => &crate::limits::SUBSCRIPTION_CHANGES_PER_MINUTE,
        }
    }
}
