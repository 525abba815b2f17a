//! Moderation: who may moderate, what a moderator may do (remove and restore posts and
//! comments, suspend users and lift it), what a removal and a suspension record, and the
//! moderation log's entries. Every action names a reason; every action is logged.

use serde::{Deserialize, Serialize};

use crate::limits;
use crate::validate::{self, ProfanityMode, TextError, TextRules};

/// What the authorizer found in the token's role claim. Anything it cannot read is `User`:
/// a missing, malformed or unknown claim grants nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    #[default]
    User,
    Moderator,
    /// A moderator too: deployments whose identity provider has one group for staff name it
    /// here. Nothing is reserved to admins yet beyond what moderators may do.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Moderator => "moderator",
            Role::Admin => "admin",
        }
    }

    /// The role a context value names; anything else is an ordinary user (fails closed).
    pub fn parse(value: &str) -> Role {
        match value {
            "moderator" => Role::Moderator,
            "admin" => Role::Admin,
            _ => Role::User,
        }
    }

    /// Whether this role may read the report queue and the log, remove, restore and suspend.
    pub fn moderates(self) -> bool {
        matches!(self, Role::Moderator | Role::Admin)
    }
}

/// A moderator's removal of a post or comment, kept on the item while it is removed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Removal {
    /// The log entry that removed it.
    pub action_id: String,
    /// The moderator's user id.
    pub by: String,
    pub reason: String,
    pub at: String,
}

/// A suspension in force: the user's writes are refused until `until`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suspension {
    pub user_id: String,
    /// RFC 3339, UTC.
    pub until: String,
    pub reason: String,
    pub action_id: String,
}

/// What a moderator did: the log's `action` field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    RemovePost,
    RestorePost,
    RemoveComment,
    RestoreComment,
    SuspendUser,
    LiftSuspension,
    /// Closes a target's open reports with an outcome (removing it closes them too).
    ResolveReports,
}

impl ActionKind {
    pub const ALL: [ActionKind; 7] = [
        ActionKind::RemovePost,
        ActionKind::RestorePost,
        ActionKind::RemoveComment,
        ActionKind::RestoreComment,
        ActionKind::SuspendUser,
        ActionKind::LiftSuspension,
        ActionKind::ResolveReports,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::RemovePost => "remove_post",
            ActionKind::RestorePost => "restore_post",
            ActionKind::RemoveComment => "remove_comment",
            ActionKind::RestoreComment => "restore_comment",
            ActionKind::SuspendUser => "suspend_user",
            ActionKind::LiftSuspension => "lift_suspension",
            ActionKind::ResolveReports => "resolve_reports",
        }
    }

    pub fn parse(value: &str) -> Option<ActionKind> {
        ActionKind::ALL.into_iter().find(|kind| kind.as_str() == value)
    }
}

/// What a moderator's action is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Post { post_id: String },
    Comment { post_id: String, comment_id: String },
    User { user_id: String, until: Option<String> },
}

/// One entry of the moderation log: who did what to which item or user, why and when. The
/// author of a removed post or comment is `user_id`, so an entry names whom it affected.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    pub id: String,
    pub action: ActionKind,
    pub moderator_id: String,
    pub reason: String,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment_id: Option<String>,
    /// The user affected: the removed item's author, or the suspended user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// A suspension's end (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// How reports were resolved (`resolve_reports`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<crate::reports::ReportOutcome>,
}

/// The log, a page at a time, newest first.
#[derive(Debug, Serialize)]
pub struct LogPage {
    pub actions: Vec<LogEntry>,
    pub next_page: Option<String>,
    pub previous_page: Option<String>,
}

/// A moderator's reason: plain text, required, bounded. Quoting what was removed is part of
/// the job, so the profanity filter censors here rather than refusing.
pub fn clean_reason(raw: &str) -> Result<String, TextError> {
    validate::clean_text(
        raw,
        TextRules {
            field: "reason",
            max_chars: limits::MODERATION_REASON_CHARS.usize(),
            profanity: ProfanityMode::Censor,
        },
    )
}

/// Why a suspension's end was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidUntil {
    #[error("`until` must be an RFC 3339 time, e.g. 2027-01-31T12:00:00Z")]
    NotATime,
    #[error("`until` must be in the future")]
    Past,
    #[error("`until` may be at most {max_days} days ahead")]
    TooFar { max_days: i64 },
}

/// A suspension's end, normalized to UTC with millisecond precision, and its Unix seconds.
pub fn suspension_end(raw: &str, now: chrono::DateTime<chrono::Utc>) -> Result<(String, i64), InvalidUntil> {
    let until = chrono::DateTime::parse_from_rfc3339(raw.trim())
        .map_err(|_| InvalidUntil::NotATime)?
        .with_timezone(&chrono::Utc);
    if until <= now {
        return Err(InvalidUntil::Past);
    }
    let max_days = limits::SUSPENSION_DAYS.i64();
    if until > now + chrono::Duration::days(max_days) {
        return Err(InvalidUntil::TooFar { max_days });
    }
    Ok((
        until.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        until.timestamp(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_roles_are_ordinary_users() {
        for forged in ["", "Moderator", "MODERATOR", "moderator ", "root", "admins"] {
            assert_eq!(Role::parse(forged), Role::User, "{forged:?}");
        }
        assert!(Role::parse("moderator").moderates());
        assert!(Role::parse("admin").moderates());
        assert!(!Role::User.moderates());
    }

    #[test]
    fn action_kinds_round_trip_by_name() {
        for kind in ActionKind::ALL {
            assert_eq!(ActionKind::parse(kind.as_str()), Some(kind));
            assert_eq!(
                serde_json::to_value(kind).unwrap(),
                serde_json::Value::from(kind.as_str())
            );
        }
        assert_eq!(ActionKind::parse("delete_everything"), None);
    }

    #[test]
    fn a_suspension_ends_in_the_future_within_the_bound() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-12-07T00:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let (until, at) = suspension_end("2026-12-08T01:00:00+01:00", now).unwrap();
        assert_eq!(until, "2026-12-08T00:00:00.000Z");
        assert_eq!(at, now.timestamp() + 86_400);
        assert_eq!(suspension_end("tomorrow", now), Err(InvalidUntil::NotATime));
        assert_eq!(suspension_end("2026-12-06T00:00:00Z", now), Err(InvalidUntil::Past));
        assert_eq!(suspension_end("2026-12-07T00:00:00Z", now), Err(InvalidUntil::Past));
        assert!(matches!(
            suspension_end("2046-12-07T00:00:00Z", now),
            Err(InvalidUntil::TooFar { .. })
        ));
    }

    #[test]
    fn reasons_are_plain_required_and_bounded() {
        assert_eq!(clean_reason("  spam <b>link</b> ").unwrap(), "spam link");
        assert!(clean_reason(" \u{200B} ").is_err());
        assert!(clean_reason(&"x".repeat(limits::MODERATION_REASON_CHARS.usize() + 1)).is_err());
    }
}
