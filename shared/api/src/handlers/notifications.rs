//! The caller's notification inbox: the list (newest first), the unread count, and marking
//! read (everything, or up to a notification).

use std::collections::{HashMap, HashSet};

use lambda_http::{Body, Request, Response};
use serde::{Deserialize, Serialize};

use super::App;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::http_api::{self, json, json_body, page_limit, page_links};
use forum_domain::model::{Profile, UserView};
use forum_domain::notifications::{Notification, NotificationKind, NotificationPage, NotificationView};
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
    let users: HashSet<String> = page
        .items
        .iter()
        .flat_map(|n| std::iter::once(&n.actor_id).chain(&n.likers))
        .cloned()
        .collect();
    let profiles = app.profiles(users).await?;
    let notifications = page
        .items
        .into_iter()
        .map(|n| {
            let read = read_up_to.as_deref().is_some_and(|mark| n.id.as_str() <= mark);
            notification_view(n, &profiles, read)
        })
        .collect();
    let (next_page, previous_page) = page_links(req, &cursors, limit, page.next.as_ref(), page.previous.as_ref());
    Ok(json(
        200,
        &NotificationPage {
            notifications,
            unread_count: unread,
            next_page,
            previous_page,
        },
    ))
}

/// A notification as its recipient reads it, its users shown by their profiles.
pub(super) fn notification_view(n: Notification, profiles: &HashMap<String, Profile>, read: bool) -> NotificationView {
    let shown = |user: &String| -> UserView {
        let profile = profiles.get(user).cloned().unwrap_or_else(|| Profile::unknown(user));
        (&profile).into()
    };
    let likers = (n.kind == NotificationKind::Like).then(|| n.likers.iter().map(shown).collect());
    NotificationView {
        actor: shown(&n.actor_id),
        read,
        id: n.id,
        kind: n.kind,
        post_id: n.post_id,
        comment_id: n.comment_id,
        created_at: n.created_at,
        likers,
        like_count: n.like_count,
    }
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
    // Ids are compared as stored (canonical, upper case): `7zzz...` in lower case would sort
    // after every id there is and mark every notification yet to come as read.
    let up_to = body
        .up_to
        .map(|id| match ulid::Ulid::from_string(&id) {
            Ok(ulid) if id.len() == 26 => Ok(ulid.to_string()),
            _ => Err(ApiError::bad_request(
                "invalid_request",
                "`up_to` must be a notification id",
            )),
        })
        .transpose()?;
    app.table.mark_read(&caller.user_id, up_to.as_deref()).await?;
    let unread_count = app
        .table
        .unread_count(&caller.user_id, chrono::Utc::now().timestamp())
        .await?;
    Ok(json(200, &UnreadCount { unread_count }))
}
