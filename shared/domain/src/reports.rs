//! Reports: a user flags a post or comment for moderators, once per target; moderators read
//! the queue (one entry per target, with how many reported it and why) and resolve entries.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::limits;
use crate::model::{CommentView, PostView};
use crate::validate::{self, ProfanityMode, TextError, TextRules};

/// Why a user reports something: a fixed list, and `other` (which needs a note).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportReason {
    Spam,
    Harassment,
    Hate,
    Violence,
    Sexual,
    SelfHarm,
    Misinformation,
    Other,
}

impl ReportReason {
    pub const ALL: [ReportReason; 8] = [
        ReportReason::Spam,
        ReportReason::Harassment,
        ReportReason::Hate,
        ReportReason::Violence,
        ReportReason::Sexual,
        ReportReason::SelfHarm,
        ReportReason::Misinformation,
        ReportReason::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReportReason::Spam => "spam",
            ReportReason::Harassment => "harassment",
            ReportReason::Hate => "hate",
            ReportReason::Violence => "violence",
            ReportReason::Sexual => "sexual",
            ReportReason::SelfHarm => "self_harm",
            ReportReason::Misinformation => "misinformation",
            ReportReason::Other => "other",
        }
    }

    pub fn parse(value: &str) -> Option<ReportReason> {
        ReportReason::ALL.into_iter().find(|r| r.as_str() == value)
    }
}

/// What is reported.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ReportTarget {
    Post { post_id: String },
    Comment { post_id: String, comment_id: String },
}

impl ReportTarget {
    pub fn post_id(&self) -> &str {
        match self {
            ReportTarget::Post { post_id } | ReportTarget::Comment { post_id, .. } => post_id,
        }
    }

    pub fn comment_id(&self) -> Option<&str> {
        match self {
            ReportTarget::Post { .. } => None,
            ReportTarget::Comment { comment_id, .. } => Some(comment_id),
        }
    }
}

/// One user's report of one target (the answer of the report routes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub id: String,
    pub target: ReportTarget,
    pub reason: ReportReason,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub created_at: String,
}

/// Where a queue entry stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReportStatus {
    Open,
    Resolved,
}

/// How a moderator closed an entry: `removed` is set by removing the target (in the same
/// write); `dismissed` (nothing wrong) and `actioned` (dealt with otherwise) by resolving it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReportOutcome {
    Removed,
    Dismissed,
    Actioned,
}

impl ReportOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            ReportOutcome::Removed => "removed",
            ReportOutcome::Dismissed => "dismissed",
            ReportOutcome::Actioned => "actioned",
        }
    }

    /// What a moderator may resolve with (removal resolves by itself).
    pub fn parse_resolution(value: &str) -> Option<ReportOutcome> {
        match value {
            "dismissed" => Some(ReportOutcome::Dismissed),
            "actioned" => Some(ReportOutcome::Actioned),
            _ => None,
        }
    }
}

/// The queue's entry for one target, as stored (without the target's content).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportSummary {
    pub target: ReportTarget,
    pub status: ReportStatus,
    /// Distinct users who reported it (each counts once).
    pub report_count: u64,
    pub reasons: BTreeMap<ReportReason, u64>,
    pub first_reported_at: String,
    pub last_reported_at: String,
    pub outcome: Option<ReportOutcome>,
    pub resolved_by: Option<String>,
    pub resolved_at: Option<String>,
    /// Its position in the queue: open entries by their first report, then resolved ones.
    pub queue_key: String,
}

/// A queue entry as moderators read it: the summary and the target as it now stands (absent
/// once deleted by its author).
#[derive(Clone, Debug, Serialize)]
pub struct QueueEntry {
    pub target: ReportTarget,
    pub status: ReportStatus,
    pub report_count: u64,
    pub reasons: BTreeMap<ReportReason, u64>,
    pub first_reported_at: String,
    pub last_reported_at: String,
    pub outcome: Option<ReportOutcome>,
    pub resolved_by: Option<String>,
    pub resolved_at: Option<String>,
    pub post: Option<PostView>,
    pub comment: Option<CommentView>,
}

/// `GET /moderation/reports/`.
#[derive(Debug, Serialize)]
pub struct QueuePage {
    pub reports: Vec<QueueEntry>,
    pub next_page: Option<String>,
    pub previous_page: Option<String>,
}

/// A report's note: optional, plain text, bounded; `other` needs one. Censored rather than
/// refused: a note may quote what it reports.
pub fn clean_note(reason: ReportReason, raw: Option<&str>) -> Result<Option<String>, TextError> {
    let rules = TextRules {
        field: "note",
        max_chars: limits::REPORT_NOTE_CHARS.usize(),
        profanity: ProfanityMode::Censor,
    };
    match raw {
        Some(raw) if !raw.trim().is_empty() => validate::clean_text(raw, rules).map(Some),
        _ if reason == ReportReason::Other => Err(TextError::Empty { field: "note" }),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_round_trip_and_other_needs_a_note() {
        for reason in ReportReason::ALL {
            assert_eq!(ReportReason::parse(reason.as_str()), Some(reason));
            assert_eq!(serde_json::to_value(reason).unwrap(), reason.as_str());
        }
        assert_eq!(ReportReason::parse("boring"), None);
        assert_eq!(clean_note(ReportReason::Spam, None), Ok(None));
        assert_eq!(clean_note(ReportReason::Spam, Some("  ")), Ok(None));
        assert!(clean_note(ReportReason::Other, None).is_err());
        assert_eq!(
            clean_note(ReportReason::Other, Some(" <i>fake</i> giveaway ")),
            Ok(Some("fake giveaway".into()))
        );
        assert!(clean_note(ReportReason::Spam, Some(&"x".repeat(1_001))).is_err());
    }

    #[test]
    fn targets_serialize_with_their_type() {
        let target = ReportTarget::Comment {
            post_id: "p".into(),
            comment_id: "c".into(),
        };
        assert_eq!(
            serde_json::to_value(&target).unwrap(),
            serde_json::json!({"type": "comment", "post_id": "p", "comment_id": "c"})
        );
        assert_eq!(target.comment_id(), Some("c"));
    }
}
