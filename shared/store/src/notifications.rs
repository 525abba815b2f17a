//! The notification inbox. A notification is written by the stream, filed under an id minted
//! when it is written, so the newest is on top and above the reader's mark, whenever its
//! source (a post or comment) was written: filed under its source's id, a mention added by
//! editing an old post, or a reply whose record came late, sorted below what the reader had
//! already marked read, and counted as read unseen. Once per source and recipient: a marker
//! (`NOTIFIED#<source id>`, `attribute_not_exists`) is written in the notification's own
//! transaction, so a redelivered record finds it and writes nothing. What is read is one mark
//! per user (`read_up_to`, only moving forward); the unread count is counted, never kept, so
//! it cannot drift from the items (an expired notification simply stops counting).

use super::items::{decode, encode, get_s, key, s, signed};
use super::page::{HasSortId, ListSpec, Order, Page, notifications_scope};
use super::tx::{applied, built};
use aws_sdk_dynamodb::types::{AttributeValue, ConditionCheck, Delete, Put, TransactWriteItem, Update};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::error::StoreError;
use super::keys;
use super::{Item, Table};
use forum_domain::cursor::PageCursor;
use forum_domain::notifications::Notification;

#[derive(Serialize, Deserialize)]
struct NotificationRecord {
    #[serde(flatten)]
    notification: Notification,
    /// Unix seconds; DynamoDB's TTL removes it (late: reads compare it too).
    ttl: i64,
}

impl HasSortId for NotificationRecord {
    fn sort_id(&self) -> &str {
        &self.notification.id
    }
}

fn record_from_item(item: &Item) -> Result<NotificationRecord, StoreError> {
    decode(item)
}

#[derive(Serialize)]
struct KeyedNotification<'a> {
    pk: String,
    sk: String,
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(flatten)]
    record: &'a NotificationRecord,
}

fn notification_item(recipient: &str, notification: &Notification, ttl: i64) -> Result<Item, StoreError> {
    let record = NotificationRecord {
        notification: notification.clone(),
        ttl,
    };
    encode(&KeyedNotification {
        pk: keys::user_pk(recipient),
        sk: keys::notification_sk(&notification.id),
        kind: "notification",
        record: &record,
    })
}

/// Where a post's like notification is now (`USER#<author>` / `LIKES#<post id>`): the group's
/// current notification id and its latest likers.
#[derive(Serialize, Deserialize)]
struct LikeGroup {
    notification_id: String,
    likers: Vec<String>,
    ttl: i64,
}

/// A like the stream tells its post's author about.
pub struct LikeNews<'a> {
    pub liker: &'a str,
    /// The like item's `created_at`: which like this is (a later like by the same user is
    /// another).
    pub liked_at: &'a str,
}

/// Likes told in one transaction (with the group, the new notification and the old one's
/// deletion: DynamoDB takes 100 actions).
pub const MAX_LIKES_TOLD_AT_ONCE: usize = 90;

/// Like groups a block's inbox clean-up rewrites at once.
const GROUP_REWRITES_AT_ONCE: usize = 8;

/// How often a like group is re-read when another write moved it meanwhile.
const LIKE_GROUP_ATTEMPTS: usize = 3;

impl Table {
    /// Delivers `notification` (its id minted now) to `recipient` once for `source_id`, unless
    /// the recipient blocks its actor: answers what was delivered, or `None` (delivered before,
    /// as when the stream redelivers a record; or blocked). One transaction: the source's
    /// marker, the notification, and a check that the recipient's blocker item for the actor
    /// is absent. Atomic, so a failure leaves no marker without its notification (a retry
    /// would have filed it under an id minted before the reader's latest mark); and a block
    /// committed while the record was in flight is seen here, after which the block's own
    /// clean-up of the inbox has nothing of this to miss.
    pub async fn notify(
        &self,
        recipient: &str,
        source_id: &str,
        notification: Notification,
        ttl: i64,
    ) -> Result<Option<Notification>, StoreError> {
        let mut marker = key(keys::user_pk(recipient), keys::notification_source_sk(source_id));
        marker.insert("type".into(), s("notification_source"));
        marker.insert("notification_id".into(), s(&notification.id));
        marker.insert("ttl".into(), signed(ttl));
        let not_blocked = built(
            ConditionCheck::builder()
                .table_name(&self.name)
                .set_key(Some(key(
                    keys::user_pk(&notification.actor_id),
                    keys::blocker_sk(recipient),
                )))
                .condition_expression("attribute_not_exists(pk)")
                .build(),
        )?;
        let actions = vec![
            self.put(marker, Some("attribute_not_exists(pk)"))?,
            self.put(
                notification_item(recipient, &notification, ttl)?,
                Some("attribute_not_exists(pk)"),
            )?,
            TransactWriteItem::builder().condition_check(not_blocked).build(),
        ];
        match self.transact(actions).await? {
            Ok(()) => Ok(Some(notification)),
            // Delivered before, or the recipient blocks the actor.
            Err(c) if c.failed(0) || c.failed(2) => Ok(None),
            Err(c) => Err(StoreError::Internal(format!("a notification refused: {:?}", c.codes))),
        }
    }

    /// Tells `author` of likes on their post (oldest first, at most
    /// [`MAX_LIKES_TOLD_AT_ONCE`]): their post's one like notification moves to the top (a new
    /// id, so it is unread again) with the count and the latest likers. One transaction marks
    /// each like told (`notified` on the like item: a redelivered record, or that of a like
    /// taken back, finds it set or the like gone, and is left out), moves the group, deletes
    /// its previous notification and writes the new one. Answers the notification written, or
    /// `None` when there was nothing to tell.
    pub async fn notify_likes(
        &self,
        author: &str,
        post_id: &str,
        likes: &[LikeNews<'_>],
        like_count: u64,
        now: (&str, &str),
        ttl: i64,
    ) -> Result<Option<Notification>, StoreError> {
        let (id, created_at) = now;
        let group_key = key(keys::user_pk(author), keys::like_group_sk(post_id));
        let mut pending: Vec<&LikeNews<'_>> = likes.iter().take(MAX_LIKES_TOLD_AT_ONCE).collect();
        // Each attempt either succeeds, or leaves out a like already told or taken back, or
        // meets a group another write moved: bounded by the likes and a few re-reads.
        for _ in 0..pending.len() + LIKE_GROUP_ATTEMPTS {
            if pending.is_empty() {
                return Ok(None);
            }
            // The group and whom the author blocks, in one read: a liker they block since is
            // dropped from the group as it moves.
            let blocks_key = key(keys::user_pk(author), keys::BLOCKS_SK);
            let mut previous = None;
            let mut blocked = std::collections::HashSet::new();
            for item in self.batch_get_consistent(vec![group_key.clone(), blocks_key]).await? {
                match get_s(&item, keys::SK).as_deref() {
                    Some(keys::BLOCKS_SK) => blocked = super::blocks::blocked_set(&item),
                    _ => previous = Some(decode::<LikeGroup>(&item)?),
                }
            }
            let mut likers: Vec<String> = Vec::new();
            for like in pending.iter().rev() {
                if !likers.iter().any(|u| u == like.liker) {
                    likers.push(like.liker.to_string());
                }
            }
            if let Some(previous) = &previous {
                likers.extend(
                    previous
                        .likers
                        .iter()
                        .filter(|u| !likers.contains(u) && !blocked.contains(*u))
                        .cloned()
                        .collect::<Vec<_>>(),
                );
            }
            likers.truncate(forum_domain::limits::LIKERS_SHOWN.usize());
            let notification = Notification {
                id: id.to_string(),
                kind: forum_domain::notifications::NotificationKind::Like,
                post_id: post_id.to_string(),
                comment_id: None,
                actor_id: likers.first().cloned().unwrap_or_default(),
                created_at: created_at.to_string(),
                likers: likers.clone(),
                like_count: Some(like_count),
            };
            let mut group = encode(&LikeGroup {
                notification_id: id.to_string(),
                likers,
                ttl,
            })?;
            group.extend(group_key.clone());
            group.insert("type".into(), s("like_group"));
            let mut move_group = Put::builder().table_name(&self.name).set_item(Some(group));
            move_group = match &previous {
                Some(previous) => move_group
                    .condition_expression("notification_id = :previous")
                    .expression_attribute_values(":previous", s(&previous.notification_id)),
                None => move_group.condition_expression("attribute_not_exists(pk)"),
            };
            let mut actions = vec![
                TransactWriteItem::builder().put(built(move_group.build())?).build(),
                self.put(notification_item(author, &notification, ttl)?, None)?,
            ];
            if let Some(previous) = &previous {
                let delete = Delete::builder()
                    .table_name(&self.name)
                    .set_key(Some(key(
                        keys::user_pk(author),
                        keys::notification_sk(&previous.notification_id),
                    )))
                    .build();
                actions.push(TransactWriteItem::builder().delete(built(delete)?).build());
            }
            let first_mark = actions.len();
            for like in &pending {
                let mark = built(
                    Update::builder()
                        .table_name(&self.name)
                        .set_key(Some(key(keys::post_pk(post_id), keys::like_sk(like.liker))))
                        .update_expression("SET notified = :yes")
                        .condition_expression(
                            "attribute_exists(pk) AND created_at = :at AND attribute_not_exists(notified)",
                        )
                        .expression_attribute_values(":yes", AttributeValue::Bool(true))
                        .expression_attribute_values(":at", s(like.liked_at))
                        .build(),
                )?;
                actions.push(TransactWriteItem::builder().update(mark).build());
            }
            match self.transact(actions).await? {
                Ok(()) => return Ok(Some(notification)),
                Err(c) => {
                    // Told before, or taken back since: left out. Otherwise the group moved
                    // meanwhile: read it again.
                    let before = pending.len();
                    let mut index = first_mark;
                    pending.retain(|_| {
                        let keep = !c.failed(index);
                        index += 1;
                        keep
                    });
                    if pending.len() == before && !c.failed(0) {
                        return Err(StoreError::Internal(format!(
                            "like notification refused: {:?}",
                            c.codes
                        )));
                    }
                }
            }
        }
        Err(StoreError::Internal("a like group kept moving under its writes".into()))
    }

    /// Takes `blocked` out of `user`'s inbox when `user` blocks them: notifications they caused
    /// (a comment, reply or mention, or a like group only they are in) are deleted, and a like
    /// group they are among is left with its other likers (the notification and the group
    /// item, the group only where it still names that notification). Idempotent: a block's
    /// retry runs it again until it is done once ([`Table::mark_inbox_cleaned`]). Reads the whole inbox once (a Query filtered on the actor and the
    /// likers: some 80 read units for 5,000 notifications), a rare action's cost, so that what
    /// the inbox lists and counts never comes from whom its owner blocks.
    pub async fn forget_notifications_from(&self, user: &str, blocked: &str) -> Result<usize, StoreError> {
        // Consistent: a notification written just before the block commits is found (one
        // written after it is refused by its own transaction's check).
        let query = self
            .query_prefix(keys::user_pk(user), keys::NOTIFICATION_PREFIX)
            .consistent_read(true)
            .filter_expression("actor_id = :blocked OR contains(likers, :blocked)")
            .expression_attribute_values(":blocked", s(blocked));
        let mut doomed = Vec::new();
        let mut kept_groups = Vec::new();
        for item in self.query_every(query).await? {
            let notification = record_from_item(&item)?.notification;
            let kept: Vec<String> = notification.likers.iter().filter(|u| *u != blocked).cloned().collect();
            if notification.kind != forum_domain::notifications::NotificationKind::Like || kept.is_empty() {
                doomed.push(key(keys::user_pk(user), keys::notification_sk(&notification.id)));
            } else {
                kept_groups.push((notification, kept));
            }
        }
        let (deleted, rewritten) = (doomed.len(), kept_groups.len());
        self.batch_delete(doomed).await?;
        futures::stream::iter(kept_groups)
            .map(|(notification, kept)| self.rewrite_like_group(user, notification, kept))
            .buffer_unordered(GROUP_REWRITES_AT_ONCE)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<Vec<()>, _>>()?;
        Ok(deleted + rewritten)
    }

    /// A like group's notification, and its group item where it still names it, with `likers`
    /// only.
    async fn rewrite_like_group(
        &self,
        user: &str,
        notification: Notification,
        likers: Vec<String>,
    ) -> Result<(), StoreError> {
        let listed = AttributeValue::L(likers.iter().map(s).collect());
        let rewrite = self
            .client
            .update_item()
            .table_name(&self.name)
            .set_key(Some(key(keys::user_pk(user), keys::notification_sk(&notification.id))))
            .update_expression("SET likers = :likers, actor_id = :actor")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":likers", listed.clone())
            .expression_attribute_values(":actor", s(&likers[0]))
            .send()
            .await;
        applied(rewrite)?;
        let group = self
            .client
            .update_item()
            .table_name(&self.name)
            .set_key(Some(key(
                keys::user_pk(user),
                keys::like_group_sk(&notification.post_id),
            )))
            .update_expression("SET likers = :likers")
            .condition_expression("notification_id = :id")
            .expression_attribute_values(":likers", listed)
            .expression_attribute_values(":id", s(&notification.id))
            .send()
            .await;
        // Moved meanwhile by a new like, which read the author's blocks: left as it is.
        applied(group)?;
        Ok(())
    }

    /// One page of `user`'s notifications, newest first, not expired, up to which id they have
    /// read, and how many are unread (the mark read once for both).
    pub async fn notifications_page(
        &self,
        user: &str,
        position: Option<&PageCursor>,
        limit: usize,
        now: i64,
    ) -> Result<(Page<Notification>, Option<String>, u64), StoreError> {
        let spec = ListSpec {
            scope: notifications_scope(user),
            index: None,
            pk_attr: keys::PK,
            pk: keys::user_pk(user),
            sk_attr: keys::SK,
            sk_prefix: keys::NOTIFICATION_PREFIX,
            order: Order::NewestFirst,
            hide_removed: false,
        };
        let mark_and_unread = async {
            let read_up_to = self.read_up_to(user).await?;
            let unread = self.count_unread(user, read_up_to.as_deref(), now).await?;
            Ok::<_, StoreError>((read_up_to, unread))
        };
        let (page, mark_and_unread) =
            tokio::join!(self.page(&spec, position, limit, record_from_item), mark_and_unread);
        let page = page?;
        let (read_up_to, unread) = mark_and_unread?;
        // TTL deletes late: what has expired is not shown.
        let items = page
            .items
            .into_iter()
            .filter(|r| r.ttl > now)
            .map(|r| r.notification)
            .collect();
        Ok((
            Page {
                items,
                next: page.next,
                previous: page.previous,
            },
            read_up_to,
            unread,
        ))
    }

    /// How many of `user`'s notifications are unread (newer than their mark, not expired):
    /// a Select COUNT of the unread ones (about 20 per read unit).
    pub async fn unread_count(&self, user: &str, now: i64) -> Result<u64, StoreError> {
        let read_up_to = self.read_up_to(user).await?;
        self.count_unread(user, read_up_to.as_deref(), now).await
    }

    /// How many notifications are newer than `read_up_to` and not expired.
    async fn count_unread(&self, user: &str, read_up_to: Option<&str>, now: i64) -> Result<u64, StoreError> {
        // Above the mark (or every notification), and no further: the partition's other items
        // that sort after notifications (a marker per notification among them) are never read.
        let low = match read_up_to {
            Some(mark) => keys::notification_after_sk(mark),
            None => keys::NOTIFICATION_PREFIX.to_string(),
        };
        let query = self
            .client
            .query()
            .table_name(&self.name)
            .key_condition_expression("pk = :pk AND sk BETWEEN :low AND :high")
            .expression_attribute_values(":high", s(keys::NOTIFICATIONS_END))
            .filter_expression("#type = :notification AND #ttl > :now")
            .expression_attribute_names("#type", "type")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":pk", s(keys::user_pk(user)))
            .expression_attribute_values(":low", s(low))
            .expression_attribute_values(":notification", s("notification"))
            .expression_attribute_values(":now", signed(now))
            .consistent_read(true);
        self.count_every(query).await
    }

    /// Marks read everything up to `up_to` (the newest notification's id when `None`, or when
    /// `up_to` is newer than any: what has not happened yet is never marked read). The mark
    /// only moves forward, so a late request never marks unread what was read.
    pub async fn mark_read(&self, user: &str, up_to: Option<&str>) -> Result<(), StoreError> {
        let Some(newest) = self.newest_notification(user).await? else {
            return Ok(());
        };
        let newest = match up_to {
            Some(id) if id < newest.as_str() => id.to_string(),
            _ => newest,
        };
        let result = self
            .client
            .update_item()
            .table_name(&self.name)
            .set_key(Some(key(keys::user_pk(user), keys::INBOX_SK)))
            .update_expression("SET read_up_to = :id, #type = :inbox")
            .condition_expression("attribute_not_exists(read_up_to) OR read_up_to < :id")
            .expression_attribute_names("#type", "type")
            .expression_attribute_values(":id", s(&newest))
            .expression_attribute_values(":inbox", s("inbox"))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // Already read further: nothing to do.
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(err) => Err(err.into()),
        }
    }

    /// Who wrote the post's comments before `before` (a comment id), among its latest
    /// `window` comments, removed ones aside, most recent first, each once: a thread's
    /// participants.
    pub async fn thread_participants(
        &self,
        post_id: &str,
        before: &str,
        window: i32,
    ) -> Result<Vec<String>, StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.name)
            .key_condition_expression("pk = :pk AND sk BETWEEN :low AND :high")
            .expression_attribute_values(":pk", s(keys::post_pk(post_id)))
            .expression_attribute_values(":low", s(keys::COMMENT_PREFIX))
            .expression_attribute_values(":high", s(keys::comment_sk(before)))
            .scan_index_forward(false)
            .limit(window)
            .projection_expression("sk, user_id, removed")
            .send()
            .await?;
        let own = keys::comment_sk(before);
        let mut participants: Vec<String> = Vec::new();
        for user in out
            .items()
            .iter()
            .filter(|item| get_s(item, keys::SK).as_deref() != Some(own.as_str()))
            .filter(|item| !item.contains_key(keys::REMOVED_ATTR))
            .filter_map(|item| get_s(item, "user_id"))
        {
            if !participants.contains(&user) {
                participants.push(user);
            }
        }
        Ok(participants)
    }

    async fn read_up_to(&self, user: &str) -> Result<Option<String>, StoreError> {
        let item = self
            .get_one(key(keys::user_pk(user), keys::INBOX_SK), true, Some("read_up_to"))
            .await?;
        Ok(item.as_ref().and_then(|i| get_s(i, "read_up_to")))
    }

    async fn newest_notification(&self, user: &str) -> Result<Option<String>, StoreError> {
        let out = self
            .query_prefix(keys::user_pk(user), keys::NOTIFICATION_PREFIX)
            .scan_index_forward(false)
            .limit(1)
            .projection_expression("sk")
            .consistent_read(true)
            .send()
            .await?;
        Ok(out
            .items()
            .first()
            .and_then(|i| get_s(i, keys::SK))
            .and_then(|sk| sk.strip_prefix(keys::NOTIFICATION_PREFIX).map(str::to_string)))
    }
}
