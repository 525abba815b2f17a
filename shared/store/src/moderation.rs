//! Moderation: removing and restoring posts and comments, suspensions (and the check every
//! write makes against them), and the moderation log. Each action and its log entry are one
//! transaction: the log never misses an action, and never records one that did not happen.

use super::activity::Listed;
use super::idempotency::key_taken;
use super::items::{
    comment_from_item, key, log_entry_from_item, log_item, post_from_item, s, signed, suspension_from_item,
    suspension_item,
};
use super::page::{HasSortId, ListSpec, Order, Page, log_scope};
use super::posts::POST_LIVE;
use super::rate::RateToken;
use super::tx::{Cancelled, built};
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, Delete, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};

use super::error::{Entity, ModerationConflict, StoreError};
use super::keys;
use super::{Item, Table};
use forum_domain::cursor::PageCursor;
use forum_domain::moderation::{LogEntry, Removal, Suspension};
use forum_domain::reports::ReportTarget;

impl HasSortId for LogEntry {
    fn sort_id(&self) -> &str {
        &self.id
    }
}

/// What a removal or restore changes on the item, and the condition it holds under.
struct Toggle {
    update: String,
    condition: String,
    values: Vec<(&'static str, AttributeValue)>,
}

impl Table {
    /// The writer is not suspended now: a condition of every write that takes a rate token
    /// (one ConditionCheck in the write's own transaction: no extra round trip).
    pub(super) fn standing_check(&self, rate: &RateToken) -> Result<TransactWriteItem, StoreError> {
        let check = built(
            ConditionCheck::builder()
                .table_name(&self.name)
                .set_key(Some(key(keys::user_pk(&rate.user_id), keys::SUSPENSION_SK)))
                .condition_expression("attribute_not_exists(pk) OR until_epoch <= :now")
                .expression_attribute_values(":now", signed(rate.now))
                .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
                .build(),
        )?;
        Ok(TransactWriteItem::builder().condition_check(check).build())
    }

    /// Runs a writer's transaction with [`Table::standing_check`] appended: a suspended
    /// writer is refused whatever else failed; otherwise the cancellation, indices unchanged.
    pub(super) async fn transact_as_writer(
        &self,
        actions: Vec<TransactWriteItem>,
        rate: &RateToken,
    ) -> Result<Result<(), Cancelled>, StoreError> {
        let at = actions.len();
        self.transact_as_writer_then(actions, at, rate, None).await
    }

    /// As [`Table::transact_as_writer`], with the standing check inserted at `check` (before
    /// actions that follow the writer's own, such as a profile refresh), and, for a keyed
    /// create, the key's record last (its answer rendered with `shown`, the profile written).
    /// A key already recorded answers for the whole write: the same request is replayed
    /// ([`StoreError::Replayed`]), another is refused, whatever else failed.
    pub(super) async fn transact_as_writer_then(
        &self,
        mut actions: Vec<TransactWriteItem>,
        check: usize,
        rate: &RateToken,
        shown: Option<&forum_domain::model::Profile>,
    ) -> Result<Result<(), Cancelled>, StoreError> {
        actions.insert(check, self.standing_check(rate)?);
        let keyed = match &rate.idempotency {
            Some(idempotency) => {
                actions.push(self.key_record(&rate.user_id, idempotency, shown, rate.now)?);
                Some((actions.len() - 1, idempotency))
            }
            None => None,
        };
        match self.transact(actions).await? {
            Ok(()) => Ok(Ok(())),
            Err(c) if let Some((at, idempotency)) = keyed.filter(|(at, _)| c.failed(*at)) => {
                Err(key_taken(c.item(at), &idempotency.key))
            }
            Err(c) if c.failed(check) => Err(suspended(c.item(check))),
            Err(c) => Ok(Err(c)),
        }
    }

    /// Removes a post: it leaves the feed (its index keys go), every read but a moderator's
    /// answers 404, and likes and comments stop changing its counters. Logged in the same
    /// transaction; `entry.user_id` is filled in with the author.
    pub async fn remove_post(&self, post_id: &str, mut entry: LogEntry) -> Result<LogEntry, StoreError> {
        let post = self.post_for_moderation(post_id).await?;
        if post.removed.is_some() {
            return Err(StoreError::Moderation(ModerationConflict::AlreadyRemoved));
        }
        let author = post.user_id;
        entry.user_id = Some(author.clone());
        // Off the feed and off its author's page (both indexes), until restored.
        let toggle = Toggle {
            update: format!(
                "SET removed = :removal REMOVE {}, {}, {}, {}",
                keys::FEED_PK,
                keys::FEED_SK,
                keys::USER_PK,
                keys::USER_SK
            ),
            condition: POST_LIVE.into(),
            values: vec![(":removal", removal_value(&entry)?)],
        };
        let uncounted = self.count_listing(&author, Listed::Posts, -1)?;
        self.toggle_post(post_id, toggle, uncounted, &entry, true).await?;
        Ok(entry)
    }

    /// Restores a removed post: back in the feed where it was, readable by all again.
    pub async fn restore_post(&self, post_id: &str, mut entry: LogEntry) -> Result<LogEntry, StoreError> {
        let post = self.post_for_moderation(post_id).await?;
        if post.removed.is_none() {
            return Err(StoreError::Moderation(ModerationConflict::NotRemoved));
        }
        let toggle = Toggle {
            update: format!(
                "REMOVE removed SET {} = :feed, {} = :ref, {} = :user, {} = :ref",
                keys::FEED_PK,
                keys::FEED_SK,
                keys::USER_PK,
                keys::USER_SK
            ),
            condition: "attribute_exists(pk) AND attribute_exists(removed)".into(),
            values: vec![
                (":feed", s(keys::FEED_PARTITION)),
                (":ref", s(keys::post_ref(post_id))),
                (":user", s(keys::user_pk(&post.user_id))),
            ],
        };
        let counted = self.count_listing(&post.user_id, Listed::Posts, 1)?;
        entry.user_id = Some(post.user_id);
        self.toggle_post(post_id, toggle, counted, &entry, false).await?;
        Ok(entry)
    }

    /// Removes a comment and uncounts it on its post, in one transaction with the log entry.
    /// Its author's delete conditions on the comment not being removed, so whichever of the
    /// two commits first is the one that moves the counter.
    pub async fn remove_comment(
        &self,
        post_id: &str,
        comment_id: &str,
        mut entry: LogEntry,
    ) -> Result<LogEntry, StoreError> {
        // Listed on its author's page or not (its post removed): its author's count moves only
        // for a listed one, and the toggle conditions on which it was. A relisting between the
        // read and the write cancels the write, which then runs again on a fresh read.
        for _ in 0..3 {
            let (comment, listed) = self.comment_for_moderation(post_id, comment_id).await?;
            if comment.removed.is_some() {
                return Err(StoreError::Moderation(ModerationConflict::AlreadyRemoved));
            }
            entry.user_id = Some(comment.user_id.clone());
            // Off its author's page too (the user index), until restored.
            let toggle = Toggle {
                update: format!("SET removed = :removal REMOVE {}, {}", keys::USER_PK, keys::USER_SK),
                condition: format!(
                    "attribute_exists(pk) AND attribute_not_exists(removed) AND {}({})",
                    if listed {
                        "attribute_exists"
                    } else {
                        "attribute_not_exists"
                    },
                    keys::USER_PK
                ),
                values: vec![(":removal", removal_value(&entry)?)],
            };
            let uncounted = listed
                .then(|| self.count_listing(&comment.user_id, Listed::Comments, -1))
                .transpose()?;
            match self
                .toggle_comment(post_id, comment_id, toggle, -1, uncounted, &entry, true)
                .await
            {
                Err(StoreError::Moderation(ModerationConflict::AlreadyRemoved)) => continue,
                done => return done.map(|()| entry),
            }
        }
        Err(StoreError::Unavailable(
            "the comment was relisted while it was removed; try again".into(),
        ))
    }

    /// Restores a removed comment and counts it on its post again.
    pub async fn restore_comment(
        &self,
        post_id: &str,
        comment_id: &str,
        mut entry: LogEntry,
    ) -> Result<LogEntry, StoreError> {
        let (comment, _) = self.comment_for_moderation(post_id, comment_id).await?;
        if comment.removed.is_none() {
            return Err(StoreError::Moderation(ModerationConflict::NotRemoved));
        }
        let toggle = Toggle {
            update: format!("REMOVE removed SET {} = :user, {} = :ref", keys::USER_PK, keys::USER_SK),
            condition: "attribute_exists(pk) AND attribute_exists(removed)".into(),
            values: vec![
                (":user", s(keys::user_pk(&comment.user_id))),
                (":ref", s(keys::comment_sk(comment_id))),
            ],
        };
        // Listed again, so counted again (on a removed post, the stream unlists and uncounts it).
        let counted = self.count_listing(&comment.user_id, Listed::Comments, 1)?;
        entry.user_id = Some(comment.user_id);
        self.toggle_comment(post_id, comment_id, toggle, 1, Some(counted), &entry, false)
            .await?;
        Ok(entry)
    }

    /// Suspends a user until `until_epoch` (a later suspension replaces an earlier one; both
    /// are logged). Their writes are refused from the moment this commits.
    pub async fn suspend_user(
        &self,
        suspension: &Suspension,
        until_epoch: i64,
        entry: &LogEntry,
    ) -> Result<(), StoreError> {
        let actions = vec![
            self.put(suspension_item(suspension, until_epoch, &entry.moderator_id)?, None)?,
            self.put(log_item(entry)?, Some("attribute_not_exists(pk)"))?,
        ];
        match self.transact(actions).await? {
            Ok(()) => Ok(()),
            Err(c) => Err(StoreError::Internal(format!("suspension refused: {:?}", c.codes))),
        }
    }

    /// Lifts a suspension in force; `409` when there is none (never suspended, or over).
    pub async fn lift_suspension(&self, user_id: &str, entry: &LogEntry, now: i64) -> Result<(), StoreError> {
        let delete = built(
            Delete::builder()
                .table_name(&self.name)
                .set_key(Some(key(keys::user_pk(user_id), keys::SUSPENSION_SK)))
                .condition_expression("attribute_exists(pk) AND until_epoch > :now")
                .expression_attribute_values(":now", signed(now))
                .build(),
        )?;
        let actions = vec![
            TransactWriteItem::builder().delete(delete).build(),
            self.put(log_item(entry)?, Some("attribute_not_exists(pk)"))?,
        ];
        match self.transact(actions).await? {
            Ok(()) => Ok(()),
            Err(c) if c.failed(0) => Err(StoreError::Moderation(ModerationConflict::NotSuspended)),
            Err(c) => Err(StoreError::Internal(format!(
                "lifting a suspension refused: {:?}",
                c.codes
            ))),
        }
    }

    /// A user's suspension if one is in force at `now`.
    pub async fn suspension(&self, user_id: &str, now: i64) -> Result<Option<Suspension>, StoreError> {
        let item = self
            .get_one(key(keys::user_pk(user_id), keys::SUSPENSION_SK), true, None)
            .await?;
        Ok(match item.as_ref().map(suspension_from_item).transpose()? {
            Some((suspension, until)) if until > now => Some(suspension),
            _ => None,
        })
    }

    /// One page of the moderation log, newest first.
    pub async fn log_page(&self, position: Option<&PageCursor>, limit: usize) -> Result<Page<LogEntry>, StoreError> {
        let spec = ListSpec {
            scope: log_scope(),
            index: None,
            pk_attr: keys::PK,
            pk: keys::MODLOG_PARTITION.to_string(),
            sk_attr: keys::SK,
            sk_prefix: keys::LOG_PREFIX,
            order: Order::NewestFirst,
            hide_removed: false,
        };
        self.page(&spec, position, limit, log_entry_from_item).await
    }

    async fn post_for_moderation(&self, post_id: &str) -> Result<forum_domain::model::Post, StoreError> {
        let item = self
            .get_one(key(keys::post_pk(post_id), keys::POST_SK), true, None)
            .await?
            .ok_or(StoreError::NotFound(Entity::Post))?;
        post_from_item(&item)
    }

    async fn comment_for_moderation(
        &self,
        post_id: &str,
        comment_id: &str,
    ) -> Result<(forum_domain::model::Comment, bool), StoreError> {
        let item = self
            .get_one(key(keys::post_pk(post_id), keys::comment_sk(comment_id)), true, None)
            .await?
            .ok_or(StoreError::NotFound(Entity::Comment))?;
        Ok((comment_from_item(&item)?, item.contains_key(keys::USER_PK)))
    }

    async fn toggle_post(
        &self,
        post_id: &str,
        toggle: Toggle,
        activity: TransactWriteItem,
        entry: &LogEntry,
        removing: bool,
    ) -> Result<(), StoreError> {
        let item_key = key(keys::post_pk(post_id), keys::POST_SK);
        let target = ReportTarget::Post {
            post_id: post_id.to_string(),
        };
        self.moderate_item(
            item_key,
            toggle,
            (None, Some(activity)),
            entry,
            removing.then_some(&target),
            Entity::Post,
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn toggle_comment(
        &self,
        post_id: &str,
        comment_id: &str,
        toggle: Toggle,
        delta: i64,
        activity: Option<TransactWriteItem>,
        entry: &LogEntry,
        removing: bool,
    ) -> Result<(), StoreError> {
        let item_key = key(keys::post_pk(post_id), keys::comment_sk(comment_id));
        // The post's count is of comments no moderator removed, on a removed post too.
        let count = self.bump_post_if(post_id, "comment_count", delta, "attribute_exists(pk)")?;
        let target = ReportTarget::Comment {
            post_id: post_id.to_string(),
            comment_id: comment_id.to_string(),
        };
        self.moderate_item(
            item_key,
            toggle,
            (Some(count), activity),
            entry,
            removing.then_some(&target),
            Entity::Comment,
        )
        .await
    }

    /// One moderation transaction: the item's change, its counters (a comment's on its post;
    /// its author's activity count, which has no condition), the log entry and, for a
    /// removal, the target's reports resolved. A report landing between the read of
    /// its queue entry and the commit cancels it; it then runs again (bounded).
    async fn moderate_item(
        &self,
        item_key: Item,
        toggle: Toggle,
        counters: (Option<TransactWriteItem>, Option<TransactWriteItem>),
        entry: &LogEntry,
        resolves: Option<&ReportTarget>,
        entity: Entity,
    ) -> Result<(), StoreError> {
        let (count, activity) = counters;
        let removing = resolves.is_some();
        let change = self.toggle_action(item_key, toggle)?;
        for _ in 0..3 {
            let mut actions = vec![
                change.clone(),
                self.put(log_item(entry)?, Some("attribute_not_exists(pk)"))?,
            ];
            let count_at = count.as_ref().map(|c| {
                actions.push(c.clone());
                actions.len() - 1
            });
            actions.extend(activity.clone());
            let reports_at = match resolves {
                Some(target) => {
                    actions.push(self.reports_on_removal(target, entry).await?);
                    Some(actions.len() - 1)
                }
                None => None,
            };
            match self.transact(actions).await? {
                Ok(()) => return Ok(()),
                Err(c) if c.failed(0) => return Err(toggle_refused(c.item(0), entity, removing)),
                Err(c) if count_at.is_some_and(|at| c.failed(at)) => return Err(StoreError::NotFound(Entity::Post)),
                Err(c) if reports_at.is_some_and(|at| c.failed(at)) => continue,
                Err(c) => return Err(StoreError::Internal(format!("moderation refused: {:?}", c.codes))),
            }
        }
        Err(StoreError::Unavailable(
            "reports kept arriving while the removal was written".into(),
        ))
    }

    fn toggle_action(&self, item_key: Item, toggle: Toggle) -> Result<TransactWriteItem, StoreError> {
        let mut update = Update::builder()
            .table_name(&self.name)
            .set_key(Some(item_key))
            .update_expression(toggle.update)
            .condition_expression(toggle.condition)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        for (name, value) in toggle.values {
            update = update.expression_attribute_values(name, value);
        }
        Ok(TransactWriteItem::builder().update(built(update.build())?).build())
    }
}

/// The removal a log entry makes, as the item's `removed` attribute.
fn removal_value(entry: &LogEntry) -> Result<AttributeValue, StoreError> {
    let removal = Removal {
        action_id: entry.id.clone(),
        by: entry.moderator_id.clone(),
        reason: entry.reason.clone(),
        at: entry.created_at.clone(),
    };
    serde_dynamo::to_attribute_value(removal).map_err(|e| StoreError::Internal(format!("encoding a removal: {e}")))
}

/// A removal or restore whose condition failed: the item went away, or another moderator's
/// action got there first.
fn toggle_refused(seen: Option<&Item>, entity: Entity, removing: bool) -> StoreError {
    match (seen, removing) {
        (None, _) => StoreError::NotFound(entity),
        (Some(_), true) => StoreError::Moderation(ModerationConflict::AlreadyRemoved),
        (Some(_), false) => StoreError::Moderation(ModerationConflict::NotRemoved),
    }
}

/// The refusal of a suspended writer, with the suspension's end.
fn suspended(seen: Option<&Item>) -> StoreError {
    match seen.map(suspension_from_item) {
        Some(Ok((suspension, _))) => StoreError::Suspended {
            until: suspension.until,
            reason: suspension.reason,
        },
        Some(Err(e)) => e,
        None => StoreError::Internal("a failed standing check returned no item".into()),
    }
}
