//! What the table and the bucket refuse or fail with, in the domain's terms. `error.rs` is the
//! one place that turns it into an HTTP answer and its wording.

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};

use forum_domain::model::RateAction;

/// The kind of thing a refusal is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entity {
    Post,
    Comment,
    Connection,
}

/// Why a post may not show an upload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MediaRefusal {
    /// Someone else's, missing, expired, of another type or rejected: one answer for all, so
    /// ids cannot be probed.
    NotUsable,
    /// The caller's, but another post shows it.
    ShownByAnotherPost,
}

/// A moderator's action that the target's state does not allow (another moderator's action
/// got there first, or there is nothing to undo).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModerationConflict {
    AlreadyRemoved,
    NotRemoved,
    NotSuspended,
    /// No open reports on the target to resolve.
    NoOpenReports,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0:?} not found")]
    NotFound(Entity),
    #[error("{0:?} belongs to another user")]
    NotOwner(Entity),
    #[error("over the {action:?} limit of {limit} per minute")]
    RateLimited {
        action: RateAction,
        limit: u32,
        retry_after_secs: u64,
    },
    #[error("the user holds {max} connections already")]
    TooManyConnections { max: u32 },
    #[error("the connection follows {max} posts already")]
    TooManySubscriptions { max: usize },
    #[error("media refused: {0:?}")]
    MediaRefused(MediaRefusal),
    /// Both the name a token asks for and the account's fallback are held by others.
    #[error("the name `{0}` is held by another account")]
    NameTaken(String),
    /// An object is larger than the caller may read (`Bucket::get`'s limit).
    #[error("{key} is {size} bytes; at most {max} may be read")]
    TooLarge { key: String, size: u64, max: u64 },
    /// A retry of a keyed create that committed: its answer, to give again.
    #[error("replayed")]
    Replayed(crate::idempotency::StoredAnswer),
    /// An `Idempotency-Key` already used for another request.
    #[error("the idempotency key was used for another request")]
    IdempotencyKeyReused,
    /// The user holds the most blocks allowed.
    #[error("at most {max} blocks")]
    TooManyBlocks { max: usize },
    /// A report of the reporter's own post or comment.
    #[error("own {0:?} reported")]
    OwnContent(Entity),
    /// The post's author blocks the writer.
    #[error("blocked by the author")]
    BlockedByAuthor,
    /// The writer is suspended until `until` (RFC 3339).
    #[error("suspended until {until}: {reason}")]
    Suspended { until: String, reason: String },
    #[error("{0:?}")]
    Moderation(ModerationConflict),
    /// The service is unreachable, slow or throttling: worth retrying later.
    #[error("{0}")]
    Unavailable(String),
    /// A bug or an unexpected answer.
    #[error("{0}")]
    Internal(String),
}

impl<E, R> From<SdkError<E, R>> for StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    fn from(err: SdkError<E, R>) -> Self {
        match crate::sdk_errors::classify(&err) {
            Ok(unavailable) => StoreError::Unavailable(unavailable),
            Err(internal) => StoreError::Internal(internal),
        }
    }
}
