//! Reports and the moderators' queue. A report is one item per reporter and target (its
//! existence is the "once per user"); the target's summary item is the queue entry, counted
//! in the same transaction, and listed on gsi1 (`REPORTS`): open entries first, oldest first.

use std::collections::{BTreeMap, HashMap};

use super::items::{comment_from_item, decode, encode, get_s, key, post_from_item, s};
use super::page::{HasSortId, ListSpec, Order, Page, reports_scope};
use super::posts::POST_LIVE;
use super::rate::RateToken;
use super::tx::built;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};
use serde::{Deserialize, Serialize};

use super::error::{Entity, ModerationConflict, StoreError};
use super::keys;
use super::{Item, Table};
use forum_domain::cursor::PageCursor;
use forum_domain::model::{Comment, Post};
use forum_domain::moderation::LogEntry;
use forum_domain::reports::{Report, ReportOutcome, ReportReason, ReportStatus, ReportSummary, ReportTarget};

/// A queue entry, the target as it stands (if it still exists), in the queue's order.
pub type QueueItem = (ReportSummary, Option<Post>, Option<Comment>);

/// A stored report (`REPORT#<target>` / `BY#<uid>`).
#[derive(Serialize, Deserialize)]
struct ReportRecord {
    #[serde(flatten)]
    report: Report,
    reporter_id: String,
}

/// A target's summary (`REPORT#<target>` / `SUMMARY`); reason counts are `reason_<name>`.
#[derive(Deserialize)]
struct SummaryRecord {
    post_id: String,
    #[serde(default)]
    comment_id: Option<String>,
    status: ReportStatus,
    report_count: u64,
    first_reported_at: String,
    last_reported_at: String,
    #[serde(default)]
    outcome: Option<ReportOutcome>,
    #[serde(default)]
    resolved_by: Option<String>,
    #[serde(default)]
    resolved_at: Option<String>,
    gsi1sk: String,
}

fn reason_attr(reason: ReportReason) -> String {
    format!("reason_{}", reason.as_str())
}

fn summary_from_item(item: &Item) -> Result<ReportSummary, StoreError> {
    let record: SummaryRecord = decode(item)?;
    let target = match record.comment_id {
        Some(comment_id) => ReportTarget::Comment {
            post_id: record.post_id,
            comment_id,
        },
        None => ReportTarget::Post {
            post_id: record.post_id,
        },
    };
    let reasons = ReportReason::ALL
        .into_iter()
        .filter_map(|reason| {
            let count = item.get(&reason_attr(reason))?.as_n().ok()?.parse().ok()?;
            Some((reason, count))
        })
        .collect::<BTreeMap<_, _>>();
    Ok(ReportSummary {
        target,
        status: record.status,
        report_count: record.report_count,
        reasons,
        first_reported_at: record.first_reported_at,
        last_reported_at: record.last_reported_at,
        outcome: record.outcome,
        resolved_by: record.resolved_by,
        resolved_at: record.resolved_at,
        queue_key: record
            .gsi1sk
            .strip_prefix(keys::QUEUE_PREFIX)
            .unwrap_or(&record.gsi1sk)
            .to_string(),
    })
}

/// A queue index entry: the summary's partition key and its place in the queue.
struct QueueRef {
    summary_pk: String,
    sort: String,
}

impl HasSortId for QueueRef {
    fn sort_id(&self) -> &str {
        &self.sort
    }
}

fn queue_ref(item: &Item) -> Result<QueueRef, StoreError> {
    let summary_pk = get_s(item, keys::PK);
    let sort = get_s(item, keys::FEED_SK).and_then(|sk| sk.strip_prefix(keys::QUEUE_PREFIX).map(str::to_string));
    match (summary_pk, sort) {
        (Some(summary_pk), Some(sort)) => Ok(QueueRef { summary_pk, sort }),
        _ => Err(StoreError::Internal("a report queue entry without its keys".into())),
    }
}

/// How a report's transaction treats the summary: counted into an open entry (or a new
/// one), or reopening a resolved one.
#[derive(Clone, Copy, PartialEq, Eq)]
enum SummaryState {
    OpenOrNew,
    Resolved,
}

impl Table {
    /// Files `report` by `reporter`, once per user and target: a repeat writes nothing and
    /// answers the report as first made. The target must exist and not be removed; the
    /// summary is counted (or created, or reopened) and a rate token taken, in one transaction.
    pub async fn report(&self, report: &Report, reporter: &str, rate: &RateToken) -> Result<Report, StoreError> {
        let target_pk = keys::report_pk(&report.target);
        let item = encode(&Keyed {
            pk: target_pk.clone(),
            sk: keys::report_by_sk(reporter),
            kind: "report",
            record: ReportRecord {
                report: report.clone(),
                reporter_id: reporter.to_string(),
            },
        })?;
        let mut state = SummaryState::OpenOrNew;
        for _ in 0..3 {
            let own_post = matches!(report.target, ReportTarget::Post { .. });
            let mut actions = vec![
                self.take_rate_token(rate)?,
                self.live_check(&report.target, own_post.then_some(reporter))?,
            ];
            let comment_check = report.target.comment_id().is_some();
            if let ReportTarget::Comment { post_id, comment_id } = &report.target {
                actions.push(self.comment_live_check(post_id, comment_id, reporter)?);
            }
            let put_at = actions.len();
            actions.push(
                TransactWriteItem::builder()
                    .put(built(
                        aws_sdk_dynamodb::types::Put::builder()
                            .table_name(&self.name)
                            .set_item(Some(item.clone()))
                            .condition_expression("attribute_not_exists(pk)")
                            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
                            .build(),
                    )?)
                    .build(),
            );
            let summary_at = actions.len();
            actions.push(self.count_report(report, state)?);
            let cancelled = match self.transact_as_writer(actions, rate).await? {
                Ok(()) => return Ok(report.clone()),
                Err(c) => c,
            };
            if cancelled.failed(put_at) {
                // Already reported by this user: the report as first made.
                let first = cancelled
                    .item(put_at)
                    .ok_or_else(|| StoreError::Internal("a failed report put returned no item".into()))?;
                let record: ReportRecord = decode(first)?;
                return Ok(record.report);
            }
            // Live and the reporter's own, or gone (removed or deleted).
            let own = |at: usize| {
                cancelled.item(at).is_some_and(|seen| {
                    !seen.contains_key(keys::REMOVED_ATTR) && get_s(seen, "user_id").as_deref() == Some(reporter)
                })
            };
            if cancelled.failed(1) {
                return Err(if own_post && own(1) {
                    StoreError::OwnContent(Entity::Post)
                } else {
                    StoreError::NotFound(Entity::Post)
                });
            }
            if comment_check && cancelled.failed(2) {
                return Err(if own(2) {
                    StoreError::OwnContent(Entity::Comment)
                } else {
                    StoreError::NotFound(Entity::Comment)
                });
            }
            if cancelled.failed(0) {
                return Err(rate.refused());
            }
            if cancelled.failed(summary_at) {
                // The entry changed state since: count into it as it now stands.
                state = match state {
                    SummaryState::OpenOrNew => SummaryState::Resolved,
                    SummaryState::Resolved => SummaryState::OpenOrNew,
                };
                continue;
            }
            return Err(StoreError::Internal(format!("report refused: {:?}", cancelled.codes)));
        }
        Err(StoreError::Unavailable(
            "the report's queue entry kept changing state".into(),
        ))
    }

    /// One page of the queue (open entries oldest first, then resolved ones), each with its
    /// target as it now stands: a Query of the index, then one BatchGetItem of the summaries
    /// and the targets.
    pub async fn reports_queue(
        &self,
        position: Option<&PageCursor>,
        limit: usize,
    ) -> Result<Page<QueueItem>, StoreError> {
        let spec = ListSpec {
            scope: reports_scope(),
            index: Some(keys::FEED_INDEX),
            pk_attr: keys::FEED_PK,
            pk: keys::REPORTS_PARTITION.to_string(),
            sk_attr: keys::FEED_SK,
            sk_prefix: keys::QUEUE_PREFIX,
            order: Order::OldestFirst,
            hide_removed: false,
        };
        let refs = self.page(&spec, position, limit, queue_ref).await?;
        let mut wanted = Vec::new();
        for entry in &refs.items {
            wanted.push(key(entry.summary_pk.clone(), keys::REPORT_SUMMARY_SK));
            if let Some(target) = keys::target_of_report_pk(&entry.summary_pk) {
                wanted.push(target_key(&target));
            }
        }
        let mut summaries = HashMap::new();
        let mut posts = HashMap::new();
        let mut comments = HashMap::new();
        for item in self.batch_get(wanted).await? {
            match (get_s(&item, "type").as_deref(), get_s(&item, keys::PK)) {
                (Some("report_summary"), Some(pk)) => {
                    summaries.insert(pk, summary_from_item(&item)?);
                }
                (Some("post"), _) => {
                    let post = post_from_item(&item)?;
                    posts.insert(post.id.clone(), post);
                }
                (Some("comment"), _) => {
                    let comment = comment_from_item(&item)?;
                    comments.insert(comment.id.clone(), comment);
                }
                _ => {}
            }
        }
        // In the page's order; an entry whose summary moved since the Query still shows.
        let items = refs
            .items
            .into_iter()
            .filter_map(|entry| summaries.remove(&entry.summary_pk))
            .map(|summary| {
                let post = posts.get(summary.target.post_id()).cloned();
                let comment = summary.target.comment_id().and_then(|cid| comments.remove(cid));
                (summary, post, comment)
            })
            .collect();
        Ok(Page {
            items,
            next: refs.next,
            previous: refs.previous,
        })
    }

    /// Resolves a target's open entry with `outcome`, logged in the same transaction.
    pub async fn resolve_reports(
        &self,
        target: &ReportTarget,
        outcome: ReportOutcome,
        entry: &LogEntry,
    ) -> Result<(), StoreError> {
        let actions = vec![
            self.resolve_action(target, outcome, entry)?,
            self.put(super::items::log_item(entry)?, Some("attribute_not_exists(pk)"))?,
        ];
        match self.transact(actions).await? {
            Ok(()) => Ok(()),
            Err(c) if c.failed(0) => Err(StoreError::Moderation(ModerationConflict::NoOpenReports)),
            Err(c) => Err(StoreError::Internal(format!(
                "resolving reports refused: {:?}",
                c.codes
            ))),
        }
    }

    /// What a removal's transaction does to the target's queue entry, as read just before:
    /// resolves it when open; otherwise checks it is still as read (a report landing in
    /// between cancels the removal, which then runs again and resolves it).
    pub(super) async fn reports_on_removal(
        &self,
        target: &ReportTarget,
        entry: &LogEntry,
    ) -> Result<TransactWriteItem, StoreError> {
        let summary = self
            .get_one(key(keys::report_pk(target), keys::REPORT_SUMMARY_SK), true, None)
            .await;
        let status = summary?.map(|item| get_s(&item, "status").unwrap_or_default());
        let (condition, values): (&str, Vec<(&str, AttributeValue)>) = match status.as_deref() {
            Some("open") => return self.resolve_action(target, ReportOutcome::Removed, entry),
            None => ("attribute_not_exists(pk)", Vec::new()),
            Some(other) => ("#status = :seen", vec![(":seen", s(other))]),
        };
        let mut check = ConditionCheck::builder()
            .table_name(&self.name)
            .set_key(Some(key(keys::report_pk(target), keys::REPORT_SUMMARY_SK)))
            .condition_expression(condition);
        if !values.is_empty() {
            check = check.expression_attribute_names("#status", "status");
        }
        for (name, value) in values {
            check = check.expression_attribute_values(name, value);
        }
        Ok(TransactWriteItem::builder()
            .condition_check(built(check.build())?)
            .build())
    }

    fn resolve_action(
        &self,
        target: &ReportTarget,
        outcome: ReportOutcome,
        entry: &LogEntry,
    ) -> Result<TransactWriteItem, StoreError> {
        let update = built(
            Update::builder()
                .table_name(&self.name)
                .set_key(Some(key(keys::report_pk(target), keys::REPORT_SUMMARY_SK)))
                .update_expression(
                    "SET #status = :resolved, outcome = :outcome, resolved_by = :by, resolved_at = :at, gsi1sk = :queue",
                )
                .condition_expression("#status = :open")
                .expression_attribute_names("#status", "status")
                .expression_attribute_values(":resolved", s("resolved"))
                .expression_attribute_values(":open", s("open"))
                .expression_attribute_values(":outcome", s(outcome.as_str()))
                .expression_attribute_values(":by", s(&entry.moderator_id))
                .expression_attribute_values(":at", s(&entry.created_at))
                .expression_attribute_values(":queue", s(keys::queue_sk(true, &entry.id)))
                .build(),
        )?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// The report counted into its target's summary.
    fn count_report(&self, report: &Report, state: SummaryState) -> Result<TransactWriteItem, StoreError> {
        let mut sets = vec![
            "#type = :type",
            "post_id = :pid",
            "#status = :open",
            "gsi1pk = :queue",
            "last_reported_at = :now",
            "first_reported_at = if_not_exists(first_reported_at, :now)",
        ];
        let mut values = HashMap::from([
            (":type".to_string(), s("report_summary")),
            (":pid".to_string(), s(report.target.post_id())),
            (":open".to_string(), s("open")),
            (":queue".to_string(), s(keys::REPORTS_PARTITION)),
            (":now".to_string(), s(&report.created_at)),
            (":qk".to_string(), s(keys::queue_sk(false, &report.id))),
            (":one".to_string(), AttributeValue::N("1".into())),
        ]);
        if let Some(cid) = report.target.comment_id() {
            sets.push("comment_id = :cid");
            values.insert(":cid".into(), s(cid));
        }
        let (condition, tail) = match state {
            // An open entry keeps its place; a new one takes this report's.
            SummaryState::OpenOrNew => {
                sets.push("gsi1sk = if_not_exists(gsi1sk, :qk)");
                ("attribute_not_exists(pk) OR #status = :open", "")
            }
            // Reopened: back in the open part of the queue, by this report.
            SummaryState::Resolved => {
                sets.push("gsi1sk = :qk");
                values.insert(":resolved".into(), s("resolved"));
                ("#status = :resolved", " REMOVE outcome, resolved_by, resolved_at")
            }
        };
        let expression = format!("SET {}{tail} ADD report_count :one, #reason :one", sets.join(", "));
        let update = built(
            Update::builder()
                .table_name(&self.name)
                .set_key(Some(key(keys::report_pk(&report.target), keys::REPORT_SUMMARY_SK)))
                .update_expression(expression)
                .condition_expression(condition)
                .expression_attribute_names("#type", "type")
                .expression_attribute_names("#status", "status")
                .expression_attribute_names("#reason", reason_attr(report.reason))
                .set_expression_attribute_values(Some(values))
                .build(),
        )?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// The target's post exists and is not removed.
    /// The target's post is live and, with `not_by`, not that user's (a report of one's own
    /// post is refused); what failed the check is returned to tell which.
    fn live_check(&self, target: &ReportTarget, not_by: Option<&str>) -> Result<TransactWriteItem, StoreError> {
        self.report_check(key(keys::post_pk(target.post_id()), keys::POST_SK), not_by)
    }

    fn comment_live_check(
        &self,
        post_id: &str,
        comment_id: &str,
        not_by: &str,
    ) -> Result<TransactWriteItem, StoreError> {
        self.report_check(key(keys::post_pk(post_id), keys::comment_sk(comment_id)), Some(not_by))
    }

    fn report_check(&self, target: Item, not_by: Option<&str>) -> Result<TransactWriteItem, StoreError> {
        let mut check = ConditionCheck::builder()
            .table_name(&self.name)
            .set_key(Some(target))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        check = match not_by {
            Some(reporter) => check
                .condition_expression(format!("{POST_LIVE} AND user_id <> :reporter"))
                .expression_attribute_values(":reporter", s(reporter)),
            None => check.condition_expression(POST_LIVE),
        };
        Ok(TransactWriteItem::builder()
            .condition_check(built(check.build())?)
            .build())
    }
}

/// The item a report is about.
fn target_key(target: &ReportTarget) -> Item {
    match target {
        ReportTarget::Post { post_id } => key(keys::post_pk(post_id), keys::POST_SK),
        ReportTarget::Comment { post_id, comment_id } => key(keys::post_pk(post_id), keys::comment_sk(comment_id)),
    }
}

/// A record with its keys and item type.
#[derive(Serialize)]
struct Keyed<T> {
    pk: String,
    sk: String,
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(flatten)]
    record: T,
}
