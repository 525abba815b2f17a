//! `stream-fanout`: turns committed changes (the table's stream) into WebSocket messages, and
//! does the clean-up a deleted post leaves. Records are handled in order; the first that
//! fails is reported (`batchItemFailures`), so Lambda retries from there and nothing is lost.
//! Everything here is idempotent: a retried record repeats at most a message.

use std::collections::HashSet;

use serde_json::{Value, json};

use super::App;
use crate::auth::TOKEN_LEEWAY_SECS;
use crate::error::ApiError;
use crate::metrics::{self, Metric};
use crate::model::{CommentView, MediaStatus, Post, PostView, Profile};
use crate::realtime::ServerMessage;
use crate::store::{Change, Recipient};

/// Handles one batch of stream records; answers Lambda's partial-batch response.
pub async fn stream_fanout(app: &App, event: &Value) -> Value {
    let empty = Vec::new();
    let records = event["Records"].as_array().unwrap_or(&empty);
    for record in records {
        let sequence = record["dynamodb"]["SequenceNumber"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        // Boxed: one record's handling is a deep future (fan-out, clean-up, paged queries), and
        // inline it pushes the binary's future layout past the compiler's depth limit.
        if let Err(e) = Box::pin(handle_record(app, record)).await {
            tracing::error!(sequence, error = %e, "stream record failed; the batch resumes here");
            return json!({ "batchItemFailures": [{ "itemIdentifier": sequence }] });
        }
    }
    json!({ "batchItemFailures": [] })
}

async fn handle_record(app: &App, record: &Value) -> Result<(), ApiError> {
    match Change::from_record(record)? {
        Change::PostCreated(post) => {
            let author = author(app, &post.user_id).await?;
            let message = ServerMessage::PostCreated {
                post: PostView::new(post, &author, false),
            };
            broadcast(app, &app.table.all_connections().await?, &message).await
        }
        Change::PostChanged { old, new } => {
            let recipients = post_audience(app, &new.id, &new.user_id).await?;
            let media_changed = old.media_url != new.media_url;
            if old.like_count != new.like_count {
                let message = ServerMessage::LikeUpdated {
                    post_id: new.id.clone(),
                    like_count: new.like_count,
                };
                broadcast(app, &recipients, &message).await?;
            }
            if (&old.content, &old.media_url, &old.edited_at) != (&new.content, &new.media_url, &new.edited_at) {
                let author = author(app, &new.user_id).await?;
                let message = ServerMessage::PostUpdated {
                    post: PostView::new(new, &author, false),
                };
                broadcast(app, &recipients, &message).await?;
            }
            if media_changed {
                release_media(app, &old).await?;
            }
            Ok(())
        }
        Change::PostDeleted(post) => {
            let message = ServerMessage::PostDeleted {
                post_id: post.id.clone(),
            };
            broadcast(app, &app.table.all_connections().await?, &message).await?;
            // The post's comments, likes and subscriptions, then its media.
            let removed = app.table.delete_post_leftovers(&post.id).await?;
            release_media(app, &post).await?;
            tracing::info!(post_id = %post.id, removed, "deleted post cleaned up");
            Ok(())
        }
        Change::CommentCreated(comment) => {
            // A post deleted since has nothing left to notify about.
            let Some(post) = app.table.post_now(&comment.post_id).await? else {
                return Ok(());
            };
            let recipients = post_audience(app, &post.id, &post.user_id).await?;
            let author = author(app, &comment.user_id).await?;
            let message = ServerMessage::CommentCreated {
                post_id: post.id.clone(),
                comment: CommentView::new(comment, &author),
                comment_count: post.comment_count,
            };
            broadcast(app, &recipients, &message).await
        }
        Change::CommentDeleted(comment) => {
            // Comments removed with their post are not news.
            let Some(post) = app.table.post_now(&comment.post_id).await? else {
                return Ok(());
            };
            let recipients = post_audience(app, &post.id, &post.user_id).await?;
            let message = ServerMessage::CommentDeleted {
                post_id: post.id.clone(),
                comment_id: comment.id,
                comment_count: post.comment_count,
            };
            broadcast(app, &recipients, &message).await
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
            broadcast(app, &app.table.user_connections(&new.user_id).await?, &message).await
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

async fn author(app: &App, user_id: &str) -> Result<Profile, ApiError> {
    let mut profiles = app.profiles(HashSet::from([user_id.to_string()])).await?;
    Ok(profiles.remove(user_id).unwrap_or_else(|| Profile::unknown(user_id)))
}

/// Who hears about a post: its subscribers and its author's connections.
async fn post_audience(app: &App, post_id: &str, author_id: &str) -> Result<Vec<Recipient>, ApiError> {
    let (subscribers, authors) = tokio::join!(app.table.subscribers(post_id), app.table.user_connections(author_id));
    let mut all: Vec<Recipient> = subscribers?.into_iter().chain(authors?).collect();
    all.sort_by(|a, b| a.connection_id.cmp(&b.connection_id));
    all.dedup_by(|a, b| a.connection_id == b.connection_id);
    Ok(all)
}

/// Sends to each connection whose token is still valid; gone ones are forgotten. A socket
/// whose token expired is closed instead, so it hears nothing its owner could not read over
/// HTTP. Send failures are logged, never fatal.
async fn broadcast(app: &App, recipients: &[Recipient], message: &ServerMessage) -> Result<(), ApiError> {
    let Some(notifier) = &app.notifier else { return Ok(()) };
    let now = chrono::Utc::now().timestamp();
    let (live, expired): (Vec<&Recipient>, Vec<&Recipient>) =
        recipients.iter().partition(|r| r.expires_at + TOKEN_LEEWAY_SECS >= now);
    for recipient in expired {
        notifier.close(&recipient.connection_id).await;
        app.table.delete_connection(&recipient.connection_id).await?;
    }
    let connections: Vec<String> = live.into_iter().map(|r| r.connection_id.clone()).collect();
    if connections.is_empty() {
        return Ok(());
    }
    let (delivery, gone) = notifier.send_all(&connections, message).await;
    for id in &gone {
        app.table.delete_connection(id).await?;
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
    Ok(())
}
