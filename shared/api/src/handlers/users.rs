//! User pages: a profile with how many posts and comments the user has, and their posts and
//! comments, newest first. `me` names the caller.

use std::collections::HashSet;

use lambda_http::{Body, Request, Response};
use serde::Serialize;

use super::App;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::http_api::{self, json, page_limit, page_links, path_user_id};
use forum_domain::model::{CommentPage, CommentView, PostPage, Profile, UserView};
use forum_store::{user_comments_scope, user_posts_scope};

#[derive(Serialize)]
struct UserPage {
    user: UserView,
    post_count: u64,
    comment_count: u64,
}

/// The user a path names: `me` is the caller.
pub(super) fn user_in_path(req: &Request, caller: &Caller) -> Result<String, ApiError> {
    let id = path_user_id(req, "id")?;
    Ok(if id == "me" { caller.user_id.clone() } else { id })
}

/// `GET /users/{id}/`: the profile, and how many posts and comments (not deleted, not
/// removed) the user has. A user who never wrote anything is 404.
pub async fn get_user(app: &App, req: &Request, caller: &Caller) -> Result<Response<Body>, ApiError> {
    let user_id = user_in_path(req, caller)?;
    let (profiles, counts) = tokio::join!(
        app.profiles(HashSet::from([user_id.clone()])),
        app.table.activity_counts(&user_id)
    );
    let (post_count, comment_count) = counts?;
    let profile = match profiles?.remove(&user_id) {
        Some(profile) => profile,
        None if user_id == caller.user_id => Profile::from(caller),
        None => return Err(ApiError::NotFound("user not found".into())),
    };
    Ok(json(
        200,
        &UserPage {
            user: UserView::from(&profile),
            post_count,
            comment_count,
        },
    ))
}

/// `GET /users/{id}/posts/`: newest first, keyset-paginated, in the feed's shape.
pub async fn user_posts(app: &App, req: &Request, caller: &Caller) -> Result<Response<Body>, ApiError> {
    let user_id = user_in_path(req, caller)?;
    let limit = page_limit(req)?;
    let cursors = app.cursors().await?;
    let position = http_api::query_param(req, "cursor")
        .map(|raw| cursors.decode(raw, &user_posts_scope(&user_id)))
        .transpose()?;
    let (page, viewer) = app
        .table
        .user_posts_page(&user_id, position.as_ref(), limit, &caller.user_id)
        .await?;
    // Blocked authors are left out here as in every list (a moderator sees everything).
    let posts = app.post_views(page.items, caller, Some(viewer)).await?;
    let (next_page, previous_page) = page_links(req, &cursors, limit, page.next.as_ref(), page.previous.as_ref());
    Ok(json(
        200,
        &PostPage {
            posts,
            next_page,
            previous_page,
        },
    ))
}

/// `GET /users/{id}/comments/`: newest first, keyset-paginated, in the comments' shape.
pub async fn user_comments(app: &App, req: &Request, caller: &Caller) -> Result<Response<Body>, ApiError> {
    let user_id = user_in_path(req, caller)?;
    let limit = page_limit(req)?;
    let cursors = app.cursors().await?;
    let position = http_api::query_param(req, "cursor")
        .map(|raw| cursors.decode(raw, &user_comments_scope(&user_id)))
        .transpose()?;
    let (page, viewer) = tokio::join!(
        app.table.user_comments_page(&user_id, position.as_ref(), limit),
        app.profiles_and_likes(HashSet::from([user_id.clone()]), &[], &caller.user_id, true)
    );
    let mut page = page?;
    let (profiles, viewer) = viewer?;
    if !caller.role.moderates() && viewer.blocked.contains(&user_id) {
        page.items.clear();
    }
    let author = profiles
        .get(&user_id)
        .cloned()
        .unwrap_or_else(|| Profile::unknown(&user_id));
    let comments = page.items.into_iter().map(|c| CommentView::new(c, &author)).collect();
    let (next_page, previous_page) = page_links(req, &cursors, limit, page.next.as_ref(), page.previous.as_ref());
    Ok(json(
        200,
        &CommentPage {
            comments,
            next_page,
            previous_page,
        },
    ))
}
