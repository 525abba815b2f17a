//! Block routes: a user blocks and unblocks another, and reads whom they block. A blocker
//! no longer sees the blocked user's posts and comments in lists, and the blocked user cannot
//! comment on the blocker's posts; moderators' views are never filtered.

use std::collections::HashSet;

use lambda_http::{Body, Request, Response};
use serde::Serialize;

use super::App;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::http_api::{self, json, page_limit, page_links};
use forum_domain::model::{Profile, UserView, now_rfc3339};
use forum_store::blocks_scope;

/// One block as the API shows it: the blocked user and when.
#[derive(Serialize)]
struct BlockView {
    user: UserView,
    blocked_at: String,
}

#[derive(Serialize)]
struct BlockPage {
    blocks: Vec<BlockView>,
    next_page: Option<String>,
    previous_page: Option<String>,
}

async fn view(app: &App, blocked_id: String, blocked_at: String) -> Result<BlockView, ApiError> {
    let mut profiles = app.profiles(HashSet::from([blocked_id.clone()])).await?;
    let profile = profiles
        .remove(&blocked_id)
        .unwrap_or_else(|| Profile::unknown(&blocked_id));
    Ok(BlockView {
        user: UserView::from(&profile),
        blocked_at,
    })
}

/// `POST /users/{id}/block/`: 201 with the block; a repeat answers the block as first made.
pub async fn block_user(app: &App, req: &Request, caller: &Caller) -> Result<Response<Body>, ApiError> {
    let blocked = super::users::user_in_path(req, caller)?;
    if blocked == caller.user_id {
        return Err(ApiError::bad_request("invalid_request", "you cannot block yourself"));
    }
    let (block, inbox_cleaned) = app.table.block_user(&caller.user_id, &blocked, &now_rfc3339()).await?;
    // The inbox too: what they caused before the block goes (the stream skips them from now
    // on), once per block: a failure fails the request, whose retry (a repeat block) finishes
    // it, and a repeat after that reads nothing. The profile for the answer is read meanwhile.
    let forget = async {
        if inbox_cleaned {
            return Ok(0);
        }
        let forgotten = app.table.forget_notifications_from(&caller.user_id, &blocked).await?;
        app.table.mark_inbox_cleaned(&caller.user_id, &blocked).await?;
        Ok::<usize, forum_store::StoreError>(forgotten)
    };
    let (forgotten, shown) = tokio::join!(forget, view(app, block.blocked_id, block.blocked_at));
    tracing::info!(notifications = forgotten?, "blocked user's notifications forgotten");
    // Lists this container serves the blocker now leave the blocked user out.
    Ok(json(201, &shown?))
}

/// `DELETE /users/{id}/block/`: 204 whether or not there was a block (the state asked for holds).
pub async fn unblock_user(app: &App, req: &Request, caller: &Caller) -> Result<Response<Body>, ApiError> {
    let blocked = super::users::user_in_path(req, caller)?;
    let lifted = app.table.unblock_user(&caller.user_id, &blocked).await?;
    tracing::info!(lifted, "unblock");
    Response::builder()
        .status(204)
        .body(Body::Empty)
        .map_err(|e| ApiError::Internal(e.to_string()))
}

/// `GET /users/me/blocks/`: whom the caller blocks, by user id, keyset-paginated.
pub async fn list_blocks(app: &App, req: &Request, caller: &Caller) -> Result<Response<Body>, ApiError> {
    let limit = page_limit(req)?;
    let cursors = app.cursors().await?;
    let scope = blocks_scope(&caller.user_id);
    let position = http_api::query_param(req, "cursor")
        .map(|raw| cursors.decode(raw, &scope))
        .transpose()?;
    let page = app.table.blocks_page(&caller.user_id, position.as_ref(), limit).await?;
    let ids: HashSet<String> = page.items.iter().map(|b| b.blocked_id.clone()).collect();
    let profiles = app.profiles(ids).await?;
    let blocks = page
        .items
        .into_iter()
        .map(|b| {
            let profile = profiles
                .get(&b.blocked_id)
                .cloned()
                .unwrap_or_else(|| Profile::unknown(&b.blocked_id));
            BlockView {
                user: UserView::from(&profile),
                blocked_at: b.blocked_at,
            }
        })
        .collect();
    let (next_page, previous_page) = page_links(req, &cursors, limit, page.next.as_ref(), page.previous.as_ref());
    Ok(json(
        200,
        &BlockPage {
            blocks,
            next_page,
            previous_page,
        },
    ))
}
