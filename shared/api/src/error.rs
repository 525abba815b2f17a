//! One error type for every request, and the one place that maps it to HTTP.

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use lambda_http::{Body, Response};
use serde_json::json;

use forum_domain::cursor::InvalidCursor;
use forum_domain::messages::InvalidMessage;
use forum_domain::model::RateAction;
use forum_domain::moderation::InvalidUntil;
use forum_domain::validate::TextError;
use forum_media::MediaError;
use forum_store::{Entity, MediaRefusal, ModerationConflict, StoreError};

/// Everything a request can fail with. Each variant knows its status and code;
/// [`ApiError::to_response`] is the only place that turns one into HTTP.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed or breaks a rule; `code` is machine-readable.
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    /// 401: no token, or a token that is not valid now.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: the caller is known but may not do this (not their post).
    #[error("{0}")]
    Forbidden(String),
    /// 403 `suspended`: a moderator suspended the caller's writes until `until` (RFC 3339).
    #[error("your account is suspended until {until}: {reason}")]
    Suspended { until: String, reason: String },
    /// 404: no such resource (or no such route).
    #[error("{0}")]
    NotFound(String),
    /// 405: the path exists but not with this method.
    #[error("method {method} is not allowed here")]
    MethodNotAllowed { method: String, allow: Vec<String> },
    /// 400 `profanity`: `field` holds language the forum does not allow; `found` says what and
    /// where, so the writer can fix it.
    #[error("`{field}` contains language that is not allowed: \"{}\" (characters {} to {})", found.text, found.start, found.end)]
    Profanity {
        field: &'static str,
        found: forum_domain::profanity::Finding,
    },
    /// 409: the request conflicts with what another account holds (its name).
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// 413: the body is larger than the route accepts.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 413 with a code of its own: what the body holds is too large to handle here (an image
    /// whose decode would not fit the function's memory).
    #[error("{message}")]
    TooLarge { code: &'static str, message: String },
    /// 415: the body is not of a type the route accepts.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 429: the caller is over a rate limit; retry after that many seconds.
    #[error("{message}")]
    RateLimited { message: String, retry_after_secs: u64 },
    /// 503: a dependency (DynamoDB) is unreachable, slow or throttling us.
    #[error("{0}")]
    Unavailable(String),
    /// Not an error: a keyed create's retry, answered as the create was (`Idempotent-Replayed`).
    #[error("replayed")]
    Replayed(forum_store::idempotency::StoredAnswer),
    /// 422: the `Idempotency-Key` was used for another request.
    #[error("{0}")]
    Unprocessable(String),
    /// 500: a bug or an unexpected answer; details go to the log, not the client.
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            code,
            message: message.into(),
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            ApiError::BadRequest { .. } => 400,
            ApiError::Unauthorized(_) => 401,
            ApiError::Forbidden(_) | ApiError::Suspended { .. } => 403,
            ApiError::NotFound(_) => 404,
            ApiError::MethodNotAllowed { .. } => 405,
            ApiError::PayloadTooLarge(_) | ApiError::TooLarge { .. } => 413,
            ApiError::UnsupportedMediaType(_) => 415,
            ApiError::RateLimited { .. } => 429,
            ApiError::Profanity { .. } => 400,
            ApiError::Conflict { .. } => 409,
            ApiError::Replayed(answer) => answer.status,
            ApiError::Unprocessable(_) => 422,
            ApiError::Unavailable(_) => 503,
            ApiError::Internal(_) => 500,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest { code, .. } => code,
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::Suspended { .. } => "suspended",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::TooLarge { code, .. } => code,
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::Profanity { .. } => "profanity",
            ApiError::Conflict { code, .. } => code,
            ApiError::Replayed(_) => "replayed",
            ApiError::Unprocessable(_) => "idempotency_key_reused",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    /// The message a client sees (HTTP or WebSocket). Internal details never leave the function.
    pub fn public_message(&self) -> String {
        match self {
            ApiError::Internal(_) => "internal error".to_string(),
            ApiError::Unavailable(_) => "a dependency is unavailable; retry with backoff".to_string(),
            other => other.to_string(),
        }
    }

    /// The one mapping from an error to an HTTP response:
    /// `{"error": {"code", "message", "request_id"}}` with the matching status.
    pub fn to_response(&self, request_id: &str) -> Response<Body> {
        if let ApiError::Replayed(answer) = self {
            tracing::info!(status = answer.status, request_id, "keyed create replayed");
            return crate::http_api::replayed(answer);
        }
        match self {
            ApiError::Internal(detail) | ApiError::Unavailable(detail) => {
                tracing::error!(code = self.code(), %detail, request_id, "request failed")
            }
            other => {
                tracing::info!(code = other.code(), message = %other, request_id, "request refused")
            }
        }
        let mut body = json!({
            "error": {
                "code": self.code(),
                "message": self.public_message(),
                "request_id": request_id,
            }
        });
        if let ApiError::Profanity { field, found } = self {
            // What matched, as written, and where (character offsets in the text as kept).
            body["error"]["match"] = json!({
                "field": field,
                "text": found.text,
                "start": found.start,
                "end": found.end,
            });
        }
        if let ApiError::Suspended { until, .. } = self {
            // When writing may start again, for clients to show or schedule.
            body["error"]["until"] = json!(until);
        }
        let mut builder = Response::builder()
            .status(self.status())
            .header(http::header::CONTENT_TYPE, "application/json");
        match self {
            ApiError::MethodNotAllowed { allow, .. } => {
                builder = builder.header(http::header::ALLOW, allow.join(", "));
            }
            ApiError::RateLimited { retry_after_secs, .. } => {
                builder = builder.header(http::header::RETRY_AFTER, retry_after_secs.to_string());
            }
            // A dependency that is slow or down now may answer in a moment: retry soon, with
            // backoff.
            ApiError::Unavailable(_) => {
                builder = builder.header(http::header::RETRY_AFTER, "1");
            }
            ApiError::Unauthorized(_) => {
                builder = builder.header(http::header::WWW_AUTHENTICATE, "Bearer");
            }
            _ => {}
        }
        builder
            .body(Body::Text(body.to_string()))
            .unwrap_or_else(|_| Response::new(Body::Empty))
    }
}

impl<E, R> From<SdkError<E, R>> for ApiError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    fn from(err: SdkError<E, R>) -> Self {
        match forum_store::sdk_errors::classify(&err) {
            Ok(unavailable) => ApiError::Unavailable(unavailable),
            Err(internal) => ApiError::Internal(internal),
        }
    }
}

/// The one translation of the storage layer's refusals into answers, with their wording.
impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound(Entity::Post) => ApiError::NotFound("post not found".into()),
            StoreError::NotFound(Entity::Comment) => ApiError::NotFound("comment not found".into()),
            StoreError::NotFound(Entity::Connection) => {
                ApiError::NotFound("this connection is not known; reconnect".into())
            }
            StoreError::NotOwner(Entity::Post) => ApiError::Forbidden("you can only change your own posts".into()),
            StoreError::NotOwner(Entity::Comment) => {
                ApiError::Forbidden("you can only change your own comments".into())
            }
            StoreError::NotOwner(Entity::Connection) => ApiError::Forbidden("not your connection".into()),
            StoreError::RateLimited {
                action,
                limit,
                retry_after_secs,
            } => ApiError::RateLimited {
                message: format!("at most {limit} {} per minute; try again shortly", rate_label(action)),
                retry_after_secs,
            },
            StoreError::TooManyConnections { max } => ApiError::RateLimited {
                message: format!("a user may hold {max} live connections at once; close one first"),
                retry_after_secs: 60,
            },
            StoreError::TooManySubscriptions { max } => ApiError::bad_request(
                "too_many_subscriptions",
                format!("a connection may follow at most {max} posts"),
            ),
            StoreError::MediaRefused(MediaRefusal::NotUsable) => ApiError::bad_request(
                "invalid_media_url",
                "`media_url` must be an image you uploaded in the last 24 hours (and that was not rejected)",
            ),
            StoreError::MediaRefused(MediaRefusal::ShownByAnotherPost) => ApiError::bad_request(
                "invalid_media_url",
                "that image is already shown by another of your posts; an upload belongs to one post (upload it again)",
            ),
            StoreError::NameTaken(name) => ApiError::Conflict {
                code: "username_taken",
                message: format!(
                    "the username `{name}` (or one that looks the same) belongs to another account; \
                     choose another name with your identity provider"
                ),
            },
            StoreError::TooLarge { key, size, max } => {
                ApiError::PayloadTooLarge(format!("{key} is {size} bytes; the limit is {max}"))
            }
            StoreError::Suspended { until, reason } => ApiError::Suspended { until, reason },
            StoreError::OwnContent(entity) => ApiError::bad_request(
                "invalid_request",
                match entity {
                    Entity::Comment => "you cannot report your own comment",
                    _ => "you cannot report your own post",
                },
            ),
            StoreError::Replayed(answer) => ApiError::Replayed(answer),
            StoreError::IdempotencyKeyReused => ApiError::Unprocessable(
                "this Idempotency-Key was used for another request within 24 hours; send a new key".into(),
            ),
            StoreError::TooManyBlocks { max } => ApiError::Conflict {
                code: "too_many_blocks",
                message: format!("a user may block at most {max} users; unblock someone first"),
            },
            StoreError::BlockedByAuthor => ApiError::Forbidden("the author of this post has blocked you".into()),
            StoreError::Moderation(ModerationConflict::AlreadyRemoved) => ApiError::Conflict {
                code: "already_removed",
                message: "a moderator has removed it already".into(),
            },
            StoreError::Moderation(ModerationConflict::NotRemoved) => ApiError::Conflict {
                code: "not_removed",
                message: "it is not removed, so there is nothing to restore".into(),
            },
            StoreError::Moderation(ModerationConflict::NoOpenReports) => ApiError::Conflict {
                code: "no_open_reports",
                message: "nothing reported about it is open".into(),
            },
            StoreError::Moderation(ModerationConflict::NotSuspended) => ApiError::Conflict {
                code: "not_suspended",
                message: "the user has no suspension in force".into(),
            },
            StoreError::Unavailable(why) => ApiError::Unavailable(why),
            StoreError::Internal(why) => ApiError::Internal(why),
        }
    }
}

impl From<forum_store::secrets::SecretError> for ApiError {
    fn from(err: forum_store::secrets::SecretError) -> Self {
        match err {
            forum_store::secrets::SecretError::Unavailable { .. } => ApiError::Unavailable(err.to_string()),
            forum_store::secrets::SecretError::Unusable(why) => ApiError::Internal(why),
        }
    }
}

/// How a rate limit's action is named to the user.
fn rate_label(action: RateAction) -> &'static str {
    match action {
        RateAction::Post => "posts",
        RateAction::Comment => "comments",
        RateAction::LikeToggle => "like toggles",
        RateAction::Edit => "edits",
        RateAction::Upload => "uploads",
        RateAction::Report => "reports",
        RateAction::Subscription => "subscription changes",
    }
}

/// A text field refused by the domain's rules.
impl From<TextError> for ApiError {
    fn from(err: TextError) -> Self {
        match err {
            TextError::Profanity { field, found } => ApiError::Profanity { field, found },
            other => ApiError::bad_request(other.code(), other.to_string()),
        }
    }
}

impl From<InvalidUntil> for ApiError {
    fn from(err: InvalidUntil) -> Self {
        ApiError::bad_request("invalid_until", err.to_string())
    }
}

impl From<InvalidCursor> for ApiError {
    fn from(err: InvalidCursor) -> Self {
        ApiError::bad_request("invalid_cursor", err.to_string())
    }
}

/// A WebSocket client's message that cannot be acted on.
impl From<InvalidMessage> for ApiError {
    fn from(err: InvalidMessage) -> Self {
        ApiError::bad_request("invalid_message", err.0)
    }
}

/// An image refused by the pipeline.
impl From<MediaError> for ApiError {
    fn from(err: MediaError) -> Self {
        match &err {
            MediaError::UnsupportedType => ApiError::UnsupportedMediaType(err.to_string()),
            MediaError::TooLarge(..) => ApiError::PayloadTooLarge(err.to_string()),
            // Too large to decode here: 413, with its own code (a presigned upload, processed by
            // a function with more memory, may still take it).
            MediaError::TooManyPixels(..) | MediaError::TooMuchMemory(..) => ApiError::TooLarge {
                code: "image_too_large",
                message: err.to_string(),
            },
            MediaError::Corrupt(_) => ApiError::bad_request("invalid_image", err.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_refusals_map_to_clear_api_statuses() {
        assert_eq!(ApiError::from(MediaError::UnsupportedType).status(), 415);
        assert_eq!(ApiError::from(MediaError::TooLarge(2, 1)).status(), 413);
        assert_eq!(
            ApiError::from(MediaError::TooManyPixels(1, 1)).code(),
            "image_too_large"
        );
        assert_eq!(ApiError::from(MediaError::TooManyPixels(1, 1)).status(), 413);
        assert_eq!(ApiError::from(MediaError::Corrupt("x".into())).code(), "invalid_image");
    }
}
