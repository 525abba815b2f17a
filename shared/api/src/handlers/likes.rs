//! `POST /posts/{id}/like/`: toggle the caller's like.

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
