//! The caller's like on a post: `POST .../like/` toggles it; `PUT` and `DELETE` set it, so a
//! retried request leaves the state it asked for (a retried toggle would undo itself).

use lambda_http::{Body, Request, Response};

use super::App;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::http_api::{json, path_id};
use forum_domain::model::now_rfc3339;
use forum_store::RateAction;

/// Toggles the caller's like; answers `{"is_liked", "like_count"}` with the committed count.
pub async fn toggle_like(app: &App, req: &Request, caller: &Caller) -> Result<Response<Body>, ApiError> {
    let post_id = path_id(req, "id", "post")?;
    let rate = app.rate_token(caller, RateAction::LikeToggle);
    let state = app
        .table
        .toggle_like(&post_id, &caller.user_id, &rate, &now_rfc3339())
        .await?;
    app.forget_post(&post_id);
    Ok(json(200, &state))
}

/// `PUT .../like/`: the caller likes the post (already liked: nothing changes, no rate token).
pub async fn like_post(app: &App, req: &Request, caller: &Caller) -> Result<Response<Body>, ApiError> {
    set_like(app, req, caller, true).await
}

/// `DELETE .../like/`: the caller does not like the post (already so: nothing changes).
pub async fn unlike_post(app: &App, req: &Request, caller: &Caller) -> Result<Response<Body>, ApiError> {
    set_like(app, req, caller, false).await
}

async fn set_like(app: &App, req: &Request, caller: &Caller, liked: bool) -> Result<Response<Body>, ApiError> {
    let post_id = path_id(req, "id", "post")?;
    let rate = app.rate_token(caller, RateAction::LikeToggle);
    let state = app
        .table
        .set_like(&post_id, &caller.user_id, &rate, &now_rfc3339(), liked)
        .await?;
    app.forget_post(&post_id);
    Ok(json(200, &state))
}
