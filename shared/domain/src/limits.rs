//! Every limit the forum enforces, in one table: what it bounds, its value, the template
//! parameter that sets it (for the few a deployment may change), and where it is enforced.
//!
//! The code reads its limits from here; configuration reads the settable ones by their
//! variable, within their bounds; a test holds template.yaml's parameters to this table, and
//! another the docs' table (docs/limits.md, rendered by [`markdown_table`]). A new limit is a
//! line here and its use where it is enforced.

use std::time::Duration;

/// What a limit's value counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Characters,
    Bytes,
    Pixels,
    Items,
    PerUserPerMinute,
    Seconds,
    Milliseconds,
    Days,
}

impl Unit {
    fn label(self) -> &'static str {
        match self {
            Unit::Characters => "characters",
            Unit::Bytes => "bytes",
            Unit::Pixels => "pixels",
            Unit::Items => "",
            Unit::PerUserPerMinute => "per user per minute",
            Unit::Seconds => "s",
            Unit::Milliseconds => "ms",
            Unit::Days => "days",
        }
    }
}

/// A template parameter that sets a limit: its name, the variable each function reads it
/// from, and the values CloudFormation accepts (the table's value is its default).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parameter {
    pub name: &'static str,
    pub variable: &'static str,
    pub min: u64,
    pub max: Option<u64>,
}

/// One limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    /// What it bounds, as the docs say it.
    pub what: &'static str,
    /// Its value (the default, when a parameter sets it).
    pub value: u64,
    pub unit: Unit,
    pub parameter: Option<Parameter>,
    /// Where it is enforced (crate and module), and what a request over it gets.
    pub enforced: &'static str,
}

impl Limit {
    pub const fn usize(&self) -> usize {
        self.value as usize
    }

    pub const fn u32(&self) -> u32 {
        self.value as u32
    }

    pub const fn i64(&self) -> i64 {
        self.value as i64
    }

    /// A time limit as a duration (in its own unit).
    pub const fn duration(&self) -> Duration {
        match self.unit {
            Unit::Milliseconds => Duration::from_millis(self.value),
            _ => Duration::from_secs(self.value),
        }
    }
}

const fn fixed(what: &'static str, value: u64, unit: Unit, enforced: &'static str) -> Limit {
    Limit {
        what,
        value,
        unit,
        parameter: None,
        enforced,
    }
}

const fn rate(what: &'static str, value: u64, name: &'static str, variable: &'static str) -> Limit {
    Limit {
        what,
        value,
        unit: Unit::PerUserPerMinute,
        parameter: Some(Parameter {
            name,
            variable,
            min: 1,
            max: None,
        }),
        enforced: "forum-store `rate` (in the write's own transaction): `429 rate_limited` with `Retry-After`",
    }
}

// ---- moderation ----
pub const MODERATION_REASON_CHARS: Limit = fixed(
    "a moderator's `reason`, after cleaning",
    500,
    Unit::Characters,
    "forum-domain `moderation`: `400 content_too_long`",
);
pub const REPORT_NOTE_CHARS: Limit = fixed(
    "a report's `note`, after cleaning",
    1_000,
    Unit::Characters,
    "forum-domain `reports`: `400 content_too_long`",
);
pub const BLOCKS_PER_USER: Limit = fixed(
    "users one user may block",
    1_000,
    Unit::Items,
    "forum-store `blocks`: `409 too_many_blocks`",
);
pub const IDEMPOTENCY_KEY_SECS: Limit = fixed(
    "how long an `Idempotency-Key` is remembered",
    86_400,
    Unit::Seconds,
    "forum-store `idempotency`: a retry within it replays the answer",
);
pub const IDEMPOTENCY_KEY_CHARS: Limit = fixed(
    "an `Idempotency-Key` header",
    255,
    Unit::Characters,
    "forum-api `http_api`: `400 invalid_idempotency_key`",
);
pub const NOTIFICATION_DAYS: Limit = Limit {
    what: "how long a notification is kept",
    value: 90,
    unit: Unit::Days,
    parameter: Some(Parameter {
        name: "NotificationDays",
        variable: "FORUM_NOTIFICATION_DAYS",
        min: 1,
        max: Some(365),
    }),
    enforced: "forum-store `notifications`: the item's `ttl`, and reads skip the expired",
};
pub const MENTIONS_PER_ITEM: Limit = fixed(
    "different `@names` a post or comment notifies (the first ones written)",
    10,
    Unit::Items,
    "forum-domain `notifications`: later mentions stay text and notify no one",
);
pub const REPLY_RECIPIENTS: Limit = fixed(
    "earlier commenters a comment notifies (`reply`, the most recent first, among the post's latest 100 comments)",
    10,
    Unit::Items,
    "forum-api `fanout`",
);
pub const LIKERS_SHOWN: Limit = fixed(
    "likers a grouped like notification names (the most recent first; it counts them all)",
    3,
    Unit::Items,
    "forum-store `notifications`",
);
pub const SUSPENSION_DAYS: Limit = fixed(
    "how far ahead a suspension may end",
    3_650,
    Unit::Days,
    "forum-domain `moderation`: `400 invalid_until`",
);

// ---- text ----
pub const POST_CHARS: Limit = fixed(
    "a post's `content`, after cleaning",
    5_000,
    Unit::Characters,
    "forum-domain `validate`: `400 content_too_long`",
);
pub const COMMENT_CHARS: Limit = fixed(
    "a comment's `content`, after cleaning",
    2_000,
    Unit::Characters,
    "forum-domain `validate`: `400 content_too_long`",
);
pub const USERNAME_CHARS: Limit = fixed(
    "a display name (longer names are cut)",
    64,
    Unit::Characters,
    "forum-api `auth`",
);
pub const USER_ID_BYTES: Limit = fixed(
    "a token's `sub`",
    128,
    Unit::Bytes,
    "forum-api `auth`: `401 unauthorized`",
);
pub const URL_BYTES: Limit = fixed(
    "a URL the forum hands to browsers (an avatar)",
    2_048,
    Unit::Bytes,
    "forum-domain `validate`: the avatar is dropped",
);
pub const MASKED_WORDS: Limit = fixed(
    "words in one text with letters hidden behind `*`, `#` or `%`",
    8,
    Unit::Items,
    "forum-domain `validate`: `400 invalid_content`",
);

// ---- requests ----
pub const JSON_BODY_BYTES: Limit = fixed(
    "a JSON request body",
    64 * 1024,
    Unit::Bytes,
    "forum-api `http_api`: `413 payload_too_large`",
);
pub const PAGE_SIZE_DEFAULT: Limit = fixed("a page without `limit`", 20, Unit::Items, "forum-api `http_api`");
pub const PAGE_SIZE_MAX: Limit = fixed(
    "`limit` of a page",
    100,
    Unit::Items,
    "forum-api `http_api`: `400 invalid_limit`",
);
pub const CURSOR_BYTES: Limit = fixed(
    "a `cursor`",
    512,
    Unit::Bytes,
    "forum-domain `cursor`: `400 invalid_cursor`",
);
pub const REQUEST_BUDGET_MS: Limit = fixed(
    "a request's deadline (every retry within it)",
    2_500,
    Unit::Milliseconds,
    "forum-store `deadline`: `503 unavailable` with `Retry-After`",
);
pub const RECORD_BUDGET_SECS: Limit = fixed(
    "a stream record's deadline",
    20,
    Unit::Seconds,
    "forum-store `deadline`: the batch resumes from the record",
);
pub const TOKEN_LEEWAY_SECS: Limit = fixed(
    "clock skew allowed on a token's `exp`",
    30,
    Unit::Seconds,
    "forum-api `auth`",
);

// ---- rates ----
pub const POSTS_PER_MINUTE: Limit = rate("new posts", 10, "RatePostsPerMinute", "FORUM_RATE_POSTS_PER_MIN");
pub const COMMENTS_PER_MINUTE: Limit = rate(
    "new comments",
    30,
    "RateCommentsPerMinute",
    "FORUM_RATE_COMMENTS_PER_MIN",
);
pub const LIKES_PER_MINUTE: Limit = rate("like toggles", 120, "RateLikesPerMinute", "FORUM_RATE_LIKES_PER_MIN");
pub const EDITS_PER_MINUTE: Limit = rate(
    "edits of posts and comments, together",
    30,
    "RateEditsPerMinute",
    "FORUM_RATE_EDITS_PER_MIN",
);
pub const REPORTS_PER_MINUTE: Limit = rate(
    "reports of posts and comments, together",
    10,
    "RateReportsPerMinute",
    "FORUM_RATE_REPORTS_PER_MIN",
);
/// Not a write's own transaction: a subscribe or unsubscribe writes a batch and an update, so
/// its token is taken first, and only by a message that would write.
pub const SUBSCRIPTION_CHANGES_PER_MINUTE: Limit = Limit {
    enforced: "forum-store `rate` (a token taken before the message writes; a repeat, or a message over the cap, takes none): a WebSocket `error` `rate_limited`",
    ..rate(
        "WebSocket subscribe and unsubscribe messages that change what a connection follows",
        120,
        "RateSubscriptionsPerMinute",
        "FORUM_RATE_SUBSCRIPTIONS_PER_MIN",
    )
};
pub const UPLOADS_PER_MINUTE: Limit = rate(
    "uploads, direct and presigned, together",
    10,
    "RateUploadsPerMinute",
    "FORUM_RATE_UPLOADS_PER_MIN",
);

// ---- media ----
pub const DIRECT_UPLOAD_BYTES: Limit = fixed(
    "an image through `POST /upload/` (Lambda's 6 MB request, after base64)",
    4 * 1024 * 1024,
    Unit::Bytes,
    "forum-media: `413 payload_too_large`",
);
pub const PRESIGNED_UPLOAD_BYTES: Limit = fixed(
    "an image through a presigned upload",
    15 * 1024 * 1024,
    Unit::Bytes,
    "S3 (the signed length) and forum-media: `413 payload_too_large`",
);
pub const IMAGE_PIXELS: Limit = fixed(
    "an image, from its header",
    50_000_000,
    Unit::Pixels,
    "forum-media: `413 image_too_large`",
);
pub const IMAGE_SIDE: Limit = fixed(
    "an image's side, from its header",
    20_000,
    Unit::Pixels,
    "forum-media: `413 image_too_large`",
);
pub const JPEG_SCANS: Limit = fixed(
    "scans in a JPEG (libjpeg's progressive script has 10)",
    64,
    Unit::Items,
    "forum-media, from the headers: `400 invalid_image`",
);
pub const JPEG_PROGRESSIVE_PASSES: Limit = fixed(
    "times a progressive JPEG's scans code its coefficients over (libjpeg's script: 2.3-3, mozjpeg's: at most 3.98; a sequential JPEG codes each component in one scan)",
    4,
    Unit::Items,
    "forum-media, from the headers: `400 invalid_image`",
);
pub const DECODE_RESERVE_MB: Limit = fixed(
    "memory kept from an image's decode for the runtime and the request (MB; the decode gets half of `MemorySize` less this)",
    48,
    Unit::Items,
    "forum-media: `413 image_too_large`",
);
pub const PRESIGN_TTL_SECS: Limit = fixed(
    "a presigned upload URL's life",
    15 * 60,
    Unit::Seconds,
    "S3 (the signature): `403`",
);
pub const UNCLAIMED_MEDIA_SECS: Limit = fixed(
    "an upload no post claims (then deleted)",
    24 * 3600,
    Unit::Seconds,
    "forum-store `media` (TTL): `400 invalid_media_url` after",
);

// ---- live updates ----
pub const CONNECTIONS_PER_USER: Limit = fixed(
    "WebSocket connections one user holds at once",
    10,
    Unit::Items,
    "forum-store `connections` (a conditional write): `$connect` refused with 429",
);
pub const SUBSCRIPTIONS_PER_CONNECTION: Limit = fixed(
    "posts one connection follows",
    200,
    Unit::Items,
    "forum-store `connections` (a conditional write): `too_many_subscriptions`",
);
pub const POSTS_PER_MESSAGE: Limit = fixed(
    "post ids in one `subscribe`/`unsubscribe` message",
    50,
    Unit::Items,
    "forum-domain `messages`: `invalid_message`",
);
pub const CONNECTION_SECS: Limit = fixed(
    "a WebSocket connection's life (API Gateway's own limit; sooner if its token expires)",
    2 * 3600,
    Unit::Seconds,
    "forum-store `connections` (TTL) and stream-fanout (closes it)",
);

// ---- reads ----
pub const READ_CACHE_TTL_MS: Limit = Limit {
    what: "how long a container serves a feed page or a post from memory (the staleness bound of reads)",
    value: 1_000,
    unit: Unit::Milliseconds,
    parameter: Some(Parameter {
        name: "ReadCacheTtlMs",
        variable: "FORUM_READ_CACHE_TTL_MS",
        min: 0,
        max: Some(10_000),
    }),
    enforced: "forum-api `cache`",
};

// ---- secrets ----
pub const SECRET_CHARS: Limit = fixed(
    "the least length of a JWT or cursor secret",
    32,
    Unit::Characters,
    "forum-store `secrets`: the function does not start",
);

/// Every limit, in the order the docs list them.
pub const ALL: &[Limit] = &[
    POST_CHARS,
    COMMENT_CHARS,
    USERNAME_CHARS,
    USER_ID_BYTES,
    URL_BYTES,
    MASKED_WORDS,
    JSON_BODY_BYTES,
    PAGE_SIZE_DEFAULT,
    PAGE_SIZE_MAX,
    CURSOR_BYTES,
    REQUEST_BUDGET_MS,
    RECORD_BUDGET_SECS,
    TOKEN_LEEWAY_SECS,
    POSTS_PER_MINUTE,
    COMMENTS_PER_MINUTE,
    LIKES_PER_MINUTE,
    EDITS_PER_MINUTE,
    UPLOADS_PER_MINUTE,
    REPORTS_PER_MINUTE,
    SUBSCRIPTION_CHANGES_PER_MINUTE,
    DIRECT_UPLOAD_BYTES,
    PRESIGNED_UPLOAD_BYTES,
    IMAGE_PIXELS,
    IMAGE_SIDE,
    JPEG_SCANS,
    JPEG_PROGRESSIVE_PASSES,
    DECODE_RESERVE_MB,
    PRESIGN_TTL_SECS,
    UNCLAIMED_MEDIA_SECS,
    CONNECTIONS_PER_USER,
    SUBSCRIPTIONS_PER_CONNECTION,
    POSTS_PER_MESSAGE,
    CONNECTION_SECS,
    READ_CACHE_TTL_MS,
    SECRET_CHARS,
    MODERATION_REASON_CHARS,
    REPORT_NOTE_CHARS,
    BLOCKS_PER_USER,
    IDEMPOTENCY_KEY_SECS,
    IDEMPOTENCY_KEY_CHARS,
    NOTIFICATION_DAYS,
    MENTIONS_PER_ITEM,
    REPLY_RECIPIENTS,
    LIKERS_SHOWN,
    SUSPENSION_DAYS,
];

/// The limits a deployment may set, with their parameters.
pub fn settable() -> impl Iterator<Item = (&'static Limit, Parameter)> {
    ALL.iter().filter_map(|l| l.parameter.map(|p| (l, p)))
}

/// `value` with thousands separators, as the docs write numbers.
fn grouped(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The docs' table of every limit (docs/limits.md holds it; a test keeps it current).
pub fn markdown_table() -> String {
    let mut out = String::from("| limit | value | set by | enforced by |\n| --- | ---: | --- | --- |\n");
    for limit in ALL {
        let value = match limit.unit.label() {
            "" => grouped(limit.value),
            unit => format!("{} {unit}", grouped(limit.value)),
        };
        let set_by = match limit.parameter {
            None => "fixed".to_string(),
            Some(p) => match p.max {
                Some(max) => format!("`{}` ({} to {})", p.name, grouped(p.min), grouped(max)),
                None => format!("`{}` (at least {})", p.name, grouped(p.min)),
            },
        };
        out.push_str(&format!(
            "| {} | {value} | {set_by} | {} |\n",
            limit.what, limit.enforced
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_settable_limit_has_a_default_within_its_bounds_and_its_own_variable() {
        let mut variables = std::collections::HashSet::new();
        for (limit, parameter) in settable() {
            assert!(limit.value >= parameter.min, "{}", parameter.name);
            assert!(parameter.max.is_none_or(|max| limit.value <= max), "{}", parameter.name);
            assert!(variables.insert(parameter.variable), "{} twice", parameter.variable);
        }
        assert_eq!(settable().count(), 9);
    }

    #[test]
    fn the_table_lists_every_limit_once() {
        let table = markdown_table();
        assert_eq!(table.lines().count(), ALL.len() + 2);
        assert!(table.contains("| new posts | 10 per user per minute | `RatePostsPerMinute` (at least 1) |"));
        assert_eq!(grouped(15 * 1024 * 1024), "15,728,640");
    }
}
