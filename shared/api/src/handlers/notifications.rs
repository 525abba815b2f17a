//! The caller's notification inbox: the list (newest first), the unread count, and marking
//! read (everything, or up to a notification).

use std::collections::HashSet;

use lambda_http::{Body, Request, Response};
use serde::{Deserialize, Serialize};

use super::App;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::http_api::{self, json, json_body, page_limit, page_url};
use forum_domain::cursor::PageCursor;
use forum_domain::model::Profile;
use forum_domain::notifications::{NotificationPage, NotificationView};
use forum_store::notifications_scope;

#[derive(Serialize)]
struct UnreadCount {
    unread_count: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadBody {
    /// Everything up to this notification's id is read; absent, everything.
    #[serde(default)]
    up_to: Option<String>,
}

/// `GET /notifications/`: newest first, keyset-paginated, each marked read or not, with the
/// unread count.
pub async fn list_notifications(app: &App, req: &Request, caller: &Caller) -> Result<Response<Body>, ApiError> {
    let limit = page_limit(req)?;
    let cursors = app.cursors().await?;
    let scope = notifications_scope(&caller.user_id);
    let position = http_api::query_param(req, "cursor")
        .map(|raw| cursors.decode(raw, &scope))
        .transpose()?;
    let now = chrono::Utc::now().timestamp();
    let (page, read_up_to, unread) = app
        .table
        .notifications_page(&caller.user_id, position.as_ref(), limit, now)
        .await?;
    let actors: HashSet<String> = page.items.iter().map(|n| n.actor_id.clone()).collect();
    let profiles = app.profiles(actors).await?;
    let notifications = page
        .items
        .into_iter()
        .map(|n| {
            let actor = profiles
                .get(&n.actor_id)
                .cloned()
                .unwrap_or_else(|| Profile::unknown(&n.actor_id));
            NotificationView {
                read: read_up_to.as_deref().is_some_and(|mark| n.id.as_str() <= mark),
                id: n.id,
                kind: n.kind,
                post_id: n.post_id,
                comment_id: n.comment_id,
                actor: (&actor).into(),
                created_at: n.created_at,
            }
        })
        .collect();
    let link = |c: &PageCursor| page_url(req, &cursors.encode(c), limit);
    Ok(json(
        200,
        &NotificationPage {
            notifications,
            unread_count: unread,
            next_page: page.next.as_ref().map(link),
            previous_page: page.previous.as_ref().map(link),
        },
    ))
}

/// `GET /notifications/unread_count/`.
pub async fn unread_count(app: &App, _req: &Request, caller: &Caller) -> Result<Response<Body>, ApiError> {
    let unread_count = app
        .table
        .unread_count(&caller.user_id, chrono::Utc::now().timestamp())
        .await?;
    Ok(json(200, &UnreadCount { unread_count }))
}

/// `POST /notifications/read/` `{"up_to"?}`: marks read; answers the unread count left.
pub async fn mark_read(app: &App, req: &Request, caller: &Caller) -> Result<Response<Body>, ApiError> {
    let body: ReadBody = json_body(req)?;
    if let Some(id) = &body.up_to
        && !(id.len() == 26 && ulid::Ulid::from_string(id).is_ok())
    {
        return Err(ApiError::bad_request(
            "invalid_request",
            "`up_to` must be a notification id",
        ));
    }
    app.table.mark_read(&caller.user_id, body.up_to.as_deref()).await?;
    let unread_count = app
        .table
        .unread_count(&caller.user_id, chrono::Utc::now().timestamp())
        .await?;
    Ok(json(200, &UnreadCount { unread_count }))
}
