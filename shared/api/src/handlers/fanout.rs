//! `stream-fanout`: turns committed changes (the table's stream) into WebSocket messages, and
//! does the clean-up a deleted post leaves.
//!
//! Records of one item partition (`pk`: a post with its likes and comments, an upload, a user)
//! are handled in order; partitions run side by side, at most `LANES` at once, keeping the
//! order Lambda's `ParallelizationFactor` keeps (per partition key). One record's handling is
//! a few round trips plus its sends, so one after another a busy stream falls behind: the
//! load run (`forum-bench load`) measured events seconds late with records handled in a single
//! file. A burst of like changes on one post is sent once per batch, with the last committed
//! count: the earlier counts are superseded before anyone could act on them.
//!
//! Every record is read first, and nothing after an unreadable one runs. A failure reports
//! the batch's earliest failed record (`batchItemFailures`), lanes stop before it once it is
//! known, and Lambda retries from there: nothing is lost. Everything here is idempotent: a
//! retried record, or one of another partition that ran past the failure before it was
//! known, repeats at most a message. A record fails only for work that must be done: a
//! connection that could not be forgotten is logged, counted (`CleanupFailures`) and left to
//! its TTL, since failing the record would send its event again to everyone; and a record's
//! own writes run before its sends, so a retry after a failed write sends nothing twice.
//!
//! Each record has its own deadline ([`forum_store::deadline::RECORD_BUDGET`]), and the batch one
//! below the function's timeout: a record that cannot start in time is where Lambda resumes.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};

use aws_lambda_events::dynamodb::{Event, EventRecord};
use aws_lambda_events::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};

use super::App;
use super::notifications::notification_view;
use crate::auth::TOKEN_LEEWAY_SECS;
use crate::error::ApiError;
use forum_domain::messages::ServerMessage;
use forum_domain::model::{CommentView, MediaStatus, Post, PostView, Profile};
use forum_domain::notifications::{Notification, NotificationKind};
use forum_store::metrics::{self, Metric};
use forum_store::{Change, Recipient};

/// Partitions handled at once within a batch.
const LANES: usize = 16;

/// The batch's deadline, below stream-fanout's 60 s timeout (template.yaml): records not
/// started by then are left for Lambda's retry.
const BATCH_BUDGET: std::time::Duration = std::time::Duration::from_secs(50);

/// How long after `$connect` a connection answered `410 Gone` is taken to be still opening
/// rather than gone.
pub const CONNECT_GRACE_SECS: i64 = 10;

/// Handles one batch of stream records; answers Lambda's partial-batch response.
pub async fn stream_fanout(app: &App, event: &Event) -> DynamoDbEventResponse {
    let records = &event.records;
    // Every record is read first: one that cannot be read will never succeed, so nothing
    // after it runs (a retry would only repeat it).
    let changes: Vec<Change> = records
        .iter()
        .map_while(|record| {
            change_of(record)
                .inspect_err(
                    |e| tracing::error!(sequence = sequence_of(record), error = %e, "stream record unreadable"),
                )
                .ok()
        })
        .collect();
    // Lanes in order of first appearance, each with its records' batch positions in order.
    let mut lanes: Vec<Vec<usize>> = Vec::new();
    let mut lane_of: HashMap<&str, usize> = HashMap::new();
    for (index, record) in records.iter().enumerate().take(changes.len()) {
        let pk = match record.change.keys.get(forum_store::keys::PK) {
            Some(serde_dynamo::AttributeValue::S(pk)) => pk.as_str(),
            _ => "",
        };
        let lane = *lane_of.entry(pk).or_insert_with(|| {
            lanes.push(Vec::new());
            lanes.len() - 1
        });
        lanes[lane].push(index);
    }
    // The earliest failure so far (or the first unreadable record): lanes stop before it, so
    // a retry repeats as little as the lanes already did.
    let earliest_failure = AtomicUsize::new(changes.len());
    let batch_deadline = tokio::time::Instant::now() + BATCH_BUDGET;
    futures::stream::iter(lanes)
        .map(|lane| run_lane(app, records, &changes, lane, &earliest_failure, batch_deadline))
        .buffer_unordered(LANES)
        .collect::<Vec<()>>()
        .await;
    let mut response = DynamoDbEventResponse::default();
    if let Some(record) = records.get(earliest_failure.load(Ordering::SeqCst)) {
        let mut failure = DynamoDbBatchItemFailure::default();
        failure.item_identifier = Some(sequence_of(record).to_string());
        response.batch_item_failures.push(failure);
    }
    response
}

fn sequence_of(record: &EventRecord) -> &str {
    record.change.sequence_number.as_deref().unwrap_or_default()
}

/// A record's change in domain terms, from its images (an empty image is none).
fn change_of(record: &EventRecord) -> Result<Change, forum_store::StoreError> {
    let image = |item: &serde_dynamo::Item| (!item.is_empty()).then(|| forum_store::Item::from(item.clone()));
    Change::from_images(
        image(&record.change.old_image).as_ref(),
        image(&record.change.new_image).as_ref(),
    )
}

/// Handles one partition's records in order, stopping at its first failure (recorded in
/// `earliest_failure`), at any earlier failure another lane found, or at a record the batch's
/// deadline leaves no time for.
async fn run_lane(
    app: &App,
    records: &[EventRecord],
    changes: &[Change],
    lane: Vec<usize>,
    earliest_failure: &AtomicUsize,
    batch_deadline: tokio::time::Instant,
) {
    let mut lane_reads = LaneReads::default();
    for (position, &index) in lane.iter().enumerate() {
        if index >= earliest_failure.load(Ordering::SeqCst) {
            return;
        }
        let left = batch_deadline.saturating_duration_since(tokio::time::Instant::now());
        if left < forum_store::deadline::RECORD_BUDGET {
            tracing::warn!(
                sequence = sequence_of(&records[index]),
                "no time left in the batch; Lambda resumes here"
            );
            earliest_failure.fetch_min(index, Ordering::SeqCst);
            return;
        }
        // A later record of this lane that will run carries a newer like count.
        let like_superseded = lane[position + 1..]
            .iter()
            .take_while(|later| **later < changes.len())
            .any(|later| matches!(&changes[*later], Change::PostChanged { old, new } if old.like_count != new.like_count));
        // The likes of the same post from here on in this lane: told together, by the first.
        let lane_likes: Vec<(String, String)> = match &changes[index] {
            Change::Liked { post_id, .. } => lane[position..]
                .iter()
                .filter_map(|later| match changes.get(*later) {
                    Some(Change::Liked {
                        post_id: p,
                        user_id,
                        liked_at,
                    }) if p == post_id => Some((user_id.clone(), liked_at.clone())),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        // Boxed: one record's handling is a deep future (fan-out, clean-up, paged queries),
        // and inline it pushes the binary's future layout past the compiler's depth limit.
        let handled = forum_store::deadline::within(
            forum_store::deadline::RECORD_BUDGET,
            Box::pin(handle_change(
                app,
                &changes[index],
                like_superseded,
                &lane_likes,
                &mut lane_reads,
            )),
        )
        .await
        .unwrap_or_else(|_| Err(ApiError::Unavailable("the record's deadline passed".into())));
        if let Err(e) = handled {
            tracing::error!(sequence = sequence_of(&records[index]), error = %e, "stream record failed; the batch resumes here");
            earliest_failure.fetch_min(index, Ordering::SeqCst);
            return;
        }
    }
}

/// One committed change. `like_superseded`: a later record of this batch carries a newer
/// like count for the same post, so this one's is not sent. `lane_likes`: for a like, the
/// likes of its post from this record on in the lane (liker, liked at), oldest first.
async fn handle_change(
    app: &App,
    change: &Change,
    like_superseded: bool,
    lane_likes: &[(String, String)],
    reads: &mut LaneReads,
) -> Result<(), ApiError> {
    match change.clone() {
        Change::PostCreated(post) => {
            notify_mentions(
                app,
                reads,
                &post.user_id,
                (&post.id, None),
                &post.created_at,
                (&post.mentions, &[]),
            )
            .await?;
            let blockers = reads.blockers_of(app, &post.user_id).await?;
            let author = author(app, &post.user_id).await?;
            let message = ServerMessage::PostCreated {
                post: PostView::new(post, &author, false),
            };
            broadcast(app, &except(app.table.all_connections().await?, &blockers), &message).await?;
            Ok(())
        }
        Change::PostChanged { old, new } if old.removed.is_some() != new.removed.is_some() => {
            // Removed or restored by a moderator: everyone drops it, or gets it back; so do its
            // commenters' pages.
            let changed = app.table.list_post_comments(&new.id, new.removed.is_none()).await?;
            tracing::info!(post_id = %new.id, listed = new.removed.is_none(), changed, "post's comments relisted");
            let blockers = reads.blockers_of(app, &new.user_id).await?;
            let message = if new.removed.is_some() {
                ServerMessage::PostRemoved { post_id: new.id }
            } else {
                let author = author(app, &new.user_id).await?;
                ServerMessage::PostRestored {
                    post: PostView::new(new, &author, false),
                }
            };
            broadcast(app, &except(app.table.all_connections().await?, &blockers), &message).await?;
            Ok(())
        }
        Change::PostChanged { old, new } => {
            let media_changed = old.media_url != new.media_url;
            let like_news = old.like_count != new.like_count && !like_superseded;
            let edited =
                (&old.content, &old.media_url, &old.edited_at) != (&new.content, &new.media_url, &new.edited_at);
            // A comment's count change alone is told by the comment's own record.
            if like_news {
                let message = ServerMessage::LikeUpdated {
                    post_id: new.id.clone(),
                    like_count: new.like_count,
                };
                reads.tell_audience(app, &new.id, &new.user_id, &message).await?;
            }
            if edited {
                notify_mentions(
                    app,
                    reads,
                    &new.user_id,
                    (&new.id, None),
                    // When the edit named them.
                    new.edited_at.as_deref().unwrap_or(&new.created_at),
                    (&new.mentions, &old.mentions),
                )
                .await?;
                let author = author(app, &new.user_id).await?;
                let (post_id, author_id) = (new.id.clone(), new.user_id.clone());
                let message = ServerMessage::PostUpdated {
                    post: PostView::new(new, &author, false),
                };
                let blockers = reads.blockers_of(app, &author_id).await?;
                reads
                    .tell_audience_except(app, &post_id, &author_id, &message, &blockers)
                    .await?;
            }
            if media_changed {
                release_media(app, &old).await?;
            }
            Ok(())
        }
        Change::PostDeleted(post) => {
            // The post's comments, likes and subscriptions, then its media, before anyone is
            // told: a write that fails (and is retried) has sent nothing yet.
            let removed = app.table.delete_post_leftovers(&post.id).await?;
            release_media(app, &post).await?;
            tracing::info!(post_id = %post.id, removed, "deleted post cleaned up");
            let message = ServerMessage::PostDeleted {
                post_id: post.id.clone(),
            };
            broadcast(app, &app.table.all_connections().await?, &message).await?;
            Ok(())
        }
        Change::CommentCreated(comment) => {
            // A post deleted, or removed by a moderator, since has nothing left to tell about.
            let Some(post) = reads.post_now(app, &comment.post_id).await? else {
                return Ok(());
            };
            if post.removed.is_some() {
                return Ok(());
            }
            // Whoever blocks the comment's writer does not hear it, nor is notified.
            let blockers = reads.blockers_of(app, &comment.user_id).await?;
            let participants = reads.participants_before(app, &post.id, &comment).await?;
            let recipients = thread_recipients(&post, &comment, &blockers, &participants);
            let users: Vec<String> = recipients.iter().map(|(u, _)| u.clone()).collect();
            let connections = reads.connections_of(app, &users).await?;
            let author = author(app, &comment.user_id).await?;
            let message = ServerMessage::CommentCreated {
                post_id: post.id.clone(),
                comment: CommentView::new(comment.clone(), &author),
                comment_count: post.comment_count,
            };
            // The inboxes and the live event at once: written one after the other, a busy
            // thread's events fell seconds behind (the load run). A failed inbox write fails
            // the record, whose retry may repeat the live event (at most a message) and writes
            // only the notifications still missing.
            let (notified, told) = tokio::join!(
                notify_thread(app, &comment, recipients, &connections),
                reads.tell_audience_except(app, &post.id, &post.user_id, &message, &blockers)
            );
            notified?;
            told
        }
        Change::CommentChanged { old, new } if old.removed.is_some() != new.removed.is_some() => {
            // The post's count as now stored; a post deleted since has nothing to tell.
            let Some(post) = reads.post_now(app, &new.post_id).await? else {
                return Ok(());
            };
            // On a removed post: off its author's page again if restored, like the rest, and
            // no one's news (the post is 404 to its followers, as are its comments).
            if post.removed.is_some() {
                if new.removed.is_none() {
                    app.table.list_post_comments(&post.id, false).await?;
                }
                return Ok(());
            }
            let message = if new.removed.is_some() {
                ServerMessage::CommentRemoved {
                    post_id: post.id.clone(),
                    comment_id: new.id,
                    comment_count: post.comment_count,
                }
            } else {
                let author = author(app, &new.user_id).await?;
                ServerMessage::CommentRestored {
                    post_id: post.id.clone(),
                    comment: CommentView::new(new.clone(), &author),
                    comment_count: post.comment_count,
                }
            };
            let blockers = reads.blockers_of(app, &new.user_id).await?;
            reads
                .tell_audience_except(app, &post.id, &post.user_id, &message, &blockers)
                .await
        }
        // An edit of a comment is not pushed (clients read it with the list); whom it now
        // mentions is told.
        Change::CommentChanged { old, new } => {
            notify_mentions(
                app,
                reads,
                &new.user_id,
                (&new.post_id, Some(&new.id)),
                new.edited_at.as_deref().unwrap_or(&new.created_at),
                (&new.mentions, &old.mentions),
            )
            .await
        }
        Change::Liked {
            post_id,
            user_id,
            liked_at,
        } => notify_likes(app, reads, &post_id, &user_id, &liked_at, lane_likes).await,
        Change::CommentDeleted(comment) => {
            // Comments removed with their post are not news, nor is a delete on a post a
            // moderator removed (its subscribers no longer see it).
            let Some(post) = reads
                .post_now(app, &comment.post_id)
                .await?
                .filter(|p| p.removed.is_none())
            else {
                return Ok(());
            };
            let message = ServerMessage::CommentDeleted {
                post_id: post.id.clone(),
                comment_id: comment.id,
                comment_count: post.comment_count,
            };
            reads.tell_audience(app, &post.id, &post.user_id, &message).await
        }
        Change::MediaChanged { old, new } => {
            let was_pending = old.is_none_or(|o| o.status == MediaStatus::Pending);
            if !was_pending || new.status == MediaStatus::Pending {
                return Ok(());
            }
            // A post took it while it was pending: it shows nothing rather than a broken image.
            if let (MediaStatus::Rejected, Some(post_id)) = (new.status, &new.post_id) {
                let dropped = app
                    .table
                    .drop_rejected_media(post_id, &app.bucket.media_url_prefix(&new.id))
                    .await?;
                tracing::info!(media_id = %new.id, post_id, dropped, "rejected media taken off its post");
            }
            let (url, thumbnails) = app.bucket.media_urls(&new.id, new.media_type);
            let message = match new.status {
                MediaStatus::Ready => ServerMessage::MediaReady {
                    id: new.id.clone(),
                    url,
                    thumbnails,
                    width: new.width,
                    height: new.height,
                },
                _ => ServerMessage::MediaRejected {
                    id: new.id.clone(),
                    url,
                    reason: new.reason.clone().unwrap_or_default(),
                },
            };
            broadcast(app, &app.table.user_connections(&new.user_id).await?, &message).await?;
            Ok(())
        }
        Change::MediaRemoved(media) => {
            // Released by its post, or expired before any post claimed it: nothing may show
            // it any more, so nothing of it is kept.
            app.bucket.delete_media(&media.id, media.media_type).await?;
            tracing::info!(media_id = %media.id, "media objects deleted");
            Ok(())
        }
        Change::Renamed { user_id, old_key } => {
            // The old name is free for others, unless the account took it back meanwhile.
            let released = app.table.release_name(&old_key, &user_id).await?;
            tracing::info!(%user_id, released, "old display name released");
            Ok(())
        }
        Change::Other => Ok(()),
    }
}

/// The media a post showed (before an edit, or before it was deleted) is deleted, unless the
/// post shows it again by now.
async fn release_media(app: &App, post: &Post) -> Result<(), ApiError> {
    let Some((media_id, _)) = post.media_url.as_deref().and_then(|url| app.bucket.media_of_url(url)) else {
        return Ok(());
    };
    let released = app
        .table
        .release_media(&media_id, &post.id, &app.bucket.media_url_prefix(&media_id))
        .await?;
    tracing::info!(%media_id, post_id = %post.id, released, "media released by its post");
    Ok(())
}

/// Comments in a thread reach inboxes: the post's author (`comment`), the 10 users who
/// commented on it most recently before (`reply`, among its latest 100 comments), and those it
/// mentions (`mention`); each recipient once, as the most personal of these; never the
/// writer, never anyone who blocks them. Each once, whatever the redelivery. Bounded: a
/// comment costs at most 21 notifications, however long the thread.
fn thread_recipients(
    post: &Post,
    comment: &forum_domain::model::Comment,
    blockers: &HashSet<String>,
    participants: &[String],
) -> Vec<(String, NotificationKind)> {
    let mut recipients: Vec<(String, NotificationKind)> = Vec::new();
    let mut add = |user: &str, kind: NotificationKind| {
        if user == comment.user_id || blockers.contains(user) {
            return;
        }
        match recipients.iter_mut().find(|(u, _)| u == user) {
            Some((_, known)) => *known = (*known).max(kind),
            None => recipients.push((user.to_string(), kind)),
        }
    };
    for user in &comment.mentions {
        add(user, NotificationKind::Mention);
    }
    add(&post.user_id, NotificationKind::Comment);
    for participant in participants
        .iter()
        .filter(|u| **u != post.user_id && **u != comment.user_id && !blockers.contains(*u))
        .take(REPLY_RECIPIENTS)
    {
        add(participant, NotificationKind::Reply);
    }
    recipients
}

/// Writes [`thread_recipients`]' notifications of `comment` (their sockets in `connections`).
async fn notify_thread(
    app: &App,
    comment: &forum_domain::model::Comment,
    recipients: Vec<(String, NotificationKind)>,
    connections: &HashMap<String, Vec<Recipient>>,
) -> Result<(), ApiError> {
    let notifications = recipients.into_iter().map(|(recipient, kind)| {
        let notification = Notification {
            id: forum_domain::model::new_id(),
            kind,
            post_id: comment.post_id.clone(),
            comment_id: Some(comment.id.clone()),
            actor_id: comment.user_id.clone(),
            created_at: comment.created_at.clone(),
            likers: Vec::new(),
            like_count: None,
        };
        (recipient, comment.id.clone(), notification)
    });
    deliver_all(app, notifications, connections).await
}

/// Those a post or comment mentions now and did not before (`before`: the mentions of the text
/// it replaced, none for a new one) are told (`mention`), never the writer nor anyone who
/// blocks them. One per post or comment and recipient, however often an edit names them
/// again; filed when it is written (above what they have read), as every notification.
async fn notify_mentions(
    app: &App,
    reads: &mut LaneReads,
    writer: &str,
    source: (&str, Option<&str>),
    created_at: &str,
    mentions: (&[String], &[String]),
) -> Result<(), ApiError> {
    let (now, before) = mentions;
    let new: Vec<&String> = now.iter().filter(|u| !before.contains(u) && *u != writer).collect();
    if new.is_empty() {
        return Ok(());
    }
    let blockers = reads.blockers_of(app, writer).await?;
    let (post_id, comment_id) = source;
    let recipients: Vec<String> = new.into_iter().filter(|u| !blockers.contains(*u)).cloned().collect();
    let connections = reads.connections_of(app, &recipients).await?;
    let notifications = recipients.into_iter().map(|recipient| {
        let notification = Notification {
            id: forum_domain::model::new_id(),
            kind: NotificationKind::Mention,
            post_id: post_id.to_string(),
            comment_id: comment_id.map(str::to_string),
            actor_id: writer.to_string(),
            created_at: created_at.to_string(),
            likers: Vec::new(),
            like_count: None,
        };
        (recipient, comment_id.unwrap_or(post_id).to_string(), notification)
    });
    deliver_all(app, notifications, &connections).await
}

/// A like reaches its post's author as their post's one like notification, moved to the top
/// with the count and the latest likers; never their own like, never from someone they block.
/// The lane's likes of one post are told together by the first of them (one transaction,
/// however many): one by one, a popular post's likes put its lane's events seconds behind in
/// the load run. Each like is told once: the later records find theirs told.
async fn notify_likes(
    app: &App,
    reads: &mut LaneReads,
    post_id: &str,
    liker: &str,
    liked_at: &str,
    lane_likes: &[(String, String)],
) -> Result<(), ApiError> {
    if reads
        .likes_told
        .contains(&(post_id.to_string(), liker.to_string(), liked_at.to_string()))
    {
        return Ok(());
    }
    let Some(post) = reads.post_now(app, post_id).await? else {
        return Ok(());
    };
    let mut likes: Vec<(String, String)> = Vec::new();
    for (who, at) in lane_likes {
        if *who == post.user_id || reads.blockers_of(app, who).await?.contains(&post.user_id) {
            continue;
        }
        // Liked, taken back and liked again in one batch: the last like is the one that
        // stands (and one transaction may not touch its item twice).
        likes.retain(|(earlier, _)| earlier != who);
        likes.push((who.clone(), at.clone()));
    }
    let now = chrono::Utc::now().timestamp();
    let mut notification = None;
    for chunk in likes.chunks(forum_store::MAX_LIKES_TOLD_AT_ONCE) {
        let (id, created_at) = forum_domain::model::new_id_with_timestamp();
        let told: Vec<forum_store::LikeNews<'_>> = chunk
            .iter()
            .map(|(who, at)| forum_store::LikeNews {
                liker: who,
                liked_at: at,
            })
            .collect();
        let written = app
            .table
            .notify_likes(
                &post.user_id,
                post_id,
                &told,
                post.like_count,
                (&id, &created_at),
                now + app.notification_ttl_secs,
            )
            .await?;
        notification = written.or(notification);
    }
    reads.likes_told.extend(
        lane_likes
            .iter()
            .map(|(who, at)| (post_id.to_string(), who.clone(), at.clone())),
    );
    match notification {
        Some(notification) => {
            let connections = reads.connections_of(app, std::slice::from_ref(&post.user_id)).await?;
            let sockets = connections.get(&post.user_id).map(Vec::as_slice).unwrap_or_default();
            tell_recipient(app, &post.user_id, notification, sockets, now).await
        }
        None => Ok(()),
    }
}

/// How far back a thread's participants are looked for: its latest comments.
const THREAD_WINDOW: i32 = 100;
/// How many of them a comment notifies, the most recent first.
const REPLY_RECIPIENTS: usize = forum_domain::limits::REPLY_RECIPIENTS.usize();

/// How many recipients of one record are written to at once: a comment's 21 one after
/// another put the viral thread's events seconds behind in the load run.
const DELIVERIES_AT_ONCE: usize = 8;

/// [`deliver`]s each notification, a few at once; the first failure fails the record (a
/// retry writes only what is missing: each write is once-only).
async fn deliver_all(
    app: &App,
    notifications: impl Iterator<Item = (String, String, Notification)>,
    connections: &HashMap<String, Vec<Recipient>>,
) -> Result<(), ApiError> {
    let deliveries = notifications
        .map(|(recipient, source_id, notification)| {
            let sockets = connections.get(&recipient).map(Vec::as_slice).unwrap_or_default();
            async move { deliver(app, &recipient, &source_id, notification, sockets).await }.boxed()
        })
        .collect();
    at_most(DELIVERIES_AT_ONCE, deliveries).await.into_iter().collect()
}

/// Runs `work`, at most `n` at once, and gives every output (in the order they finish).
/// Boxed: a closure over `app` inside the stream is not general enough for the spawned
/// fan-out future.
async fn at_most<'a, T>(n: usize, work: Vec<BoxFuture<'a, T>>) -> Vec<T> {
    futures::stream::iter(work).buffer_unordered(n).collect().await
}

/// Writes `notification` to `recipient`'s inbox, once for `source_id` (a post or comment)
/// and, the first time only, tells their sockets with the unread count.
async fn deliver(
    app: &App,
    recipient: &str,
    source_id: &str,
    notification: Notification,
    connections: &[Recipient],
) -> Result<(), ApiError> {
    let now = chrono::Utc::now().timestamp();
    let ttl = now + app.notification_ttl_secs;
    let Some(notification) = app.table.notify(recipient, source_id, notification, ttl).await? else {
        return Ok(());
    };
    tell_recipient(app, recipient, notification, connections, now).await
}

/// `notification.created` to the recipient's `connections`, with their unread count; nothing
/// is read for a recipient with no socket open (most of them).
async fn tell_recipient(
    app: &App,
    recipient: &str,
    notification: Notification,
    connections: &[Recipient],
    now: i64,
) -> Result<(), ApiError> {
    if connections.is_empty() {
        return Ok(());
    }
    let unread_count = app.table.unread_count(recipient, now).await?;
    let mut users: HashSet<String> = notification.likers.iter().cloned().collect();
    users.insert(notification.actor_id.clone());
    let profiles = app.profiles(users).await?;
    let message = ServerMessage::NotificationCreated {
        notification: notification_view(notification, &profiles, false),
        unread_count,
    };
    broadcast(app, connections, &message).await?;
    Ok(())
}

async fn author(app: &App, user_id: &str) -> Result<Profile, ApiError> {
    let mut profiles = app.profiles(HashSet::from([user_id.to_string()])).await?;
    Ok(profiles.remove(user_id).unwrap_or_else(|| Profile::unknown(user_id)))
}

/// What a lane's records share within one batch: a post as it is now and its audience, read
/// once; a thread's participants, read once and kept up to date by the lane's own comments. Every record of the batch committed before the batch was read, so a read made while
/// handling any of them already sees everyone who followed the post before that commit.
#[derive(Default)]
struct LaneReads {
    posts: HashMap<String, Option<Post>>,
    audiences: HashMap<String, Vec<Recipient>>,
    /// By author: who blocks them (a moderator's socket hears them still: [`except`]).
    blockers: HashMap<String, HashSet<String>>,
    /// By post: who commented on it, most recent first (as far as this lane has come).
    participants: HashMap<String, Vec<String>>,
    /// Likes already told with an earlier like of their post: (post, liker, liked at).
    likes_told: HashSet<(String, String, String)>,
    /// By user: their connections, for notifications (read once per user and batch).
    connections: HashMap<String, Vec<Recipient>>,
}

impl LaneReads {
    async fn post_now(&mut self, app: &App, post_id: &str) -> Result<Option<Post>, ApiError> {
        if let Some(post) = self.posts.get(post_id) {
            return Ok(post.clone());
        }
        let post = app.table.post_now(post_id).await?;
        self.posts.insert(post_id.to_string(), post.clone());
        Ok(post)
    }

    /// Who commented on the post before `comment`, most recent first: one Query per post and
    /// batch; the lane's later comments on it follow in order, so each adds its writer.
    async fn participants_before(
        &mut self,
        app: &App,
        post_id: &str,
        comment: &forum_domain::model::Comment,
    ) -> Result<Vec<String>, ApiError> {
        let before = match self.participants.get(post_id) {
            Some(known) => known.clone(),
            None => {
                app.table
                    .thread_participants(post_id, &comment.id, THREAD_WINDOW)
                    .await?
            }
        };
        let mut now = vec![comment.user_id.clone()];
        now.extend(before.iter().filter(|u| **u != comment.user_id).cloned());
        now.truncate(THREAD_WINDOW as usize);
        self.participants.insert(post_id.to_string(), now);
        Ok(before)
    }

    /// The connections of `users` (one Query per user and batch, a few at once).
    async fn connections_of(
        &mut self,
        app: &App,
        users: &[String],
    ) -> Result<HashMap<String, Vec<Recipient>>, ApiError> {
        let reads = users
            .iter()
            .filter(|u| !self.connections.contains_key(*u))
            .map(|user| async move { Ok((user.clone(), app.table.user_connections(user).await?)) }.boxed())
            .collect();
        let read: Vec<Result<(String, Vec<Recipient>), forum_store::StoreError>> =
            at_most(DELIVERIES_AT_ONCE, reads).await;
        for found in read {
            let (user, connections) = found?;
            self.connections.insert(user, connections);
        }
        Ok(users
            .iter()
            .filter_map(|u| self.connections.get(u).map(|c| (u.clone(), c.clone())))
            .collect())
    }

    /// Who blocks `author` (one read per author and batch, shared by the inbox and the sends).
    async fn blockers_of(&mut self, app: &App, author: &str) -> Result<HashSet<String>, ApiError> {
        if let Some(blockers) = self.blockers.get(author) {
            return Ok(blockers.clone());
        }
        let blockers = app.table.blockers_of(author).await?;
        self.blockers.insert(author.to_string(), blockers.clone());
        Ok(blockers)
    }

    /// Sends `message` to the post's audience; connections found gone or expired leave it, so
    /// the lane's next records do not try them again.
    async fn tell_audience(
        &mut self,
        app: &App,
        post_id: &str,
        author_id: &str,
        message: &ServerMessage,
    ) -> Result<(), ApiError> {
        self.tell_audience_except(app, post_id, author_id, message, &HashSet::new())
            .await
    }

    /// As [`LaneReads::tell_audience`], leaving out the connections of the users in `hidden`
    /// (those who block whoever the message is about).
    async fn tell_audience_except(
        &mut self,
        app: &App,
        post_id: &str,
        author_id: &str,
        message: &ServerMessage,
        hidden: &HashSet<String>,
    ) -> Result<(), ApiError> {
        if !self.audiences.contains_key(post_id) {
            let audience = post_audience(app, post_id, author_id).await?;
            self.audiences.insert(post_id.to_string(), audience);
        }
        let audience = self.audiences.get(post_id).cloned().unwrap_or_default();
        let removed = broadcast(app, &except(audience, hidden), message).await?;
        if !removed.is_empty()
            && let Some(audience) = self.audiences.get_mut(post_id)
        {
            audience.retain(|r| !removed.contains(&r.connection_id));
        }
        Ok(())
    }
}

/// `recipients` without the connections of the users in `hidden`.
fn except(recipients: Vec<Recipient>, hidden: &HashSet<String>) -> Vec<Recipient> {
    if hidden.is_empty() {
        return recipients;
    }
    recipients
        .into_iter()
        // A moderator's socket hears everything (a block never filters a moderator's view).
        .filter(|r| r.moderator || !hidden.contains(&r.user_id))
        .collect()
}

/// Who hears about a post: its subscribers and its author's connections.
async fn post_audience(app: &App, post_id: &str, author_id: &str) -> Result<Vec<Recipient>, ApiError> {
    let (subscribers, authors) = tokio::join!(app.table.subscribers(post_id), app.table.user_connections(author_id));
    let mut all: Vec<Recipient> = subscribers?.into_iter().chain(authors?).collect();
    all.sort_by(|a, b| a.connection_id.cmp(&b.connection_id));
    all.dedup_by(|a, b| a.connection_id == b.connection_id);
    Ok(all)
}

/// Forgets a connection (gone, or its token expired). A failure is logged and answered `false`,
/// never raised: the item expires with its TTL, and failing the record would send its event
/// again to every socket of the batch.
async fn forget(app: &App, connection_id: &str) -> bool {
    match app.table.delete_connection(connection_id).await {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(connection_id, error = %e, "a connection could not be forgotten; its TTL will");
            false
        }
    }
}

/// Sends to each connection whose token is still valid; gone ones are forgotten. A socket
/// whose token expired is closed instead, so it hears nothing its owner could not read over
/// HTTP. Send failures are logged, never fatal. Answers the connections it removed.
async fn broadcast(app: &App, recipients: &[Recipient], message: &ServerMessage) -> Result<Vec<String>, ApiError> {
    let Some(notifier) = &app.notifier else {
        return Ok(Vec::new());
    };
    let now = chrono::Utc::now().timestamp();
    let (live, expired): (Vec<&Recipient>, Vec<&Recipient>) =
        recipients.iter().partition(|r| r.expires_at + TOKEN_LEEWAY_SECS >= now);
    let mut removed = Vec::new();
    let mut cleanup_failures = 0;
    for recipient in expired {
        // Logged when it fails; the item goes regardless, so the socket hears nothing more.
        let _ = notifier.close(&recipient.connection_id).await;
        if !forget(app, &recipient.connection_id).await {
            cleanup_failures += 1;
        }
        removed.push(recipient.connection_id.clone());
    }
    // `$connect` stores a connection before API Gateway opens it, and a send to it meanwhile
    // is answered 410: forgetting it then would leave an open socket that hears nothing. A
    // connection gone past the grace is a client that vanished.
    let opening: HashSet<&str> = live
        .iter()
        .filter(|r| r.connected_at.is_some_and(|at| at + CONNECT_GRACE_SECS > now))
        .map(|r| r.connection_id.as_str())
        .collect();
    let connections: Vec<String> = live.iter().map(|r| r.connection_id.clone()).collect();
    if connections.is_empty() {
        return Ok(removed);
    }
    let (delivery, gone) = notifier.send_all(&connections, message).await;
    for id in gone {
        if !opening.contains(id.as_str()) && !forget(app, &id).await {
            cleanup_failures += 1;
        }
        removed.push(id);
    }
    if cleanup_failures > 0 {
        metrics::emit(Metric::CleanupFailures, cleanup_failures, "stream-fanout");
    }
    tracing::info!(
        sent = delivery.sent,
        gone = delivery.gone,
        failed = delivery.failed,
        "fan-out"
    );
    metrics::emit(Metric::FanoutSends, delivery.sent as u64, "stream-fanout");
    metrics::emit(Metric::FanoutGone, delivery.gone as u64, "stream-fanout");
    metrics::emit(Metric::FanoutFailures, delivery.failed as u64, "stream-fanout");
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream record as Lambda delivers it, read by the event's own types: every attribute
    /// type comes through (the hand decoder this replaced dropped binary ones).
    #[test]
    fn stream_records_are_read_with_every_attribute_type() {
        let record: EventRecord = serde_json::from_value(serde_json::json!({
            "eventID": "1", "eventName": "INSERT", "awsRegion": "eu-west-1",
            "dynamodb": {
                "Keys": {"pk": {"S": "POST#01KAAAAAAAAAAAAAAAAAAAAAAA"}, "sk": {"S": "POST"}},
                "NewImage": {
                    "pk": {"S": "POST#01KAAAAAAAAAAAAAAAAAAAAAAA"}, "sk": {"S": "POST"}, "type": {"S": "post"},
                    "post_id": {"S": "01KAAAAAAAAAAAAAAAAAAAAAAA"}, "user_id": {"S": "u"},
                    "content": {"S": "hello"}, "created_at": {"S": "2026-12-01T00:00:00.000Z"},
                    "like_count": {"N": "2"}, "comment_count": {"N": "0"},
                    "blob": {"B": "AAEC"}, "tags": {"SS": ["a"]}, "nested": {"M": {"x": {"L": [{"NULL": true}]}}}
                },
                "SequenceNumber": "7", "SizeBytes": 120, "StreamViewType": "NEW_AND_OLD_IMAGES"
            }
        }))
        .expect("a record Lambda delivers");
        let image = forum_store::Item::from(record.change.new_image.clone());
        assert_eq!(
            image["blob"],
            aws_sdk_dynamodb::types::AttributeValue::B(vec![0u8, 1, 2].into())
        );
        assert_eq!(sequence_of(&record), "7");
        match change_of(&record).expect("a post") {
            Change::PostCreated(post) => assert_eq!((post.like_count, post.content.as_str()), (2, "hello")),
            other => panic!("{other:?}"),
        }
    }
}
