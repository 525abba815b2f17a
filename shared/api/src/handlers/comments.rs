//! Comment routes: list (oldest first), create, edit, delete.

use std::collections::HashSet;

use lambda_http::{Body, Request, Response};
use serde::Deserialize;

use super::App;
use crate::auth::Caller;
use crate::error::ApiError;
use std::sync::Arc;

use crate::http_api::{self, json, json_body, json_text, page_limit, page_links, path_id};
use forum_domain::model::{
    Comment, CommentPage, CommentView, Profile, new_id_with_timestamp, now_rfc3339, timestamp_of,
};
use forum_domain::validate::{self, MAX_COMMENT_CHARS, TextRules};
use forum_store::idempotency::{RenderAnswer, StoredAnswer};
use forum_store::{Editor, RateAction, comments_scope};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CommentBody {
    content: String,
}

fn content_rules(app: &App) -> TextRules {
    TextRules {
        field: "content",
        max_chars: MAX_COMMENT_CHARS,
        profanity: app.profanity,
    }
}

/// `GET /posts/{id}/comments/`: oldest first, keyset-paginated. The post must exist: the
/// comments of a deleted post are unreachable at once.
pub async fn list_comments(app: &App, req: &Request, caller: &Caller) -> Result<Response<Body>, ApiError> {
    let post_id = path_id(req, "id", "post")?;
    let limit = page_limit(req)?;
    let cursors = app.cursors().await?;
    let position = http_api::query_param(req, "cursor")
        .map(|raw| cursors.decode(raw, &comments_scope(&post_id)))
        .transpose()?;
    // The existence check and the page are independent: one round trip of latency for both.
    // What a moderator removed (the post, or comments) only moderators see, marked.
    let moderator = caller.role.moderates();
    let (visible, page) = tokio::join!(
        app.table.post_visible(&post_id, &caller.user_id, moderator),
        app.table.comments_page(&post_id, position.as_ref(), limit, moderator)
    );
    let (exists, blocked) = visible?;
    if !exists {
        return Err(ApiError::NotFound("post not found".into()));
    }
    let mut page = page?;
    // Comments by users the caller blocks are left out (a moderator sees everything).
    if !moderator {
        page.items.retain(|c| !blocked.contains(&c.user_id));
    }
    let authors: HashSet<String> = page.items.iter().map(|c| c.user_id.clone()).collect();
    let profiles = app.profiles(authors).await?;
    let comments = page
        .items
        .into_iter()
        .map(|c| {
            let author = profiles
                .get(&c.user_id)
                .cloned()
                .unwrap_or_else(|| Profile::unknown(&c.user_id));
            CommentView::new(c, &author)
        })
        .collect();
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

/// `POST /posts/{id}/comments/`: 201 with the comment; the post's `comment_count` moves with it.
pub async fn create_comment(app: &App, req: &Request, caller: &Caller) -> Result<Response<Body>, ApiError> {
    let post_id = path_id(req, "id", "post")?;
    let body: CommentBody = json_body(req)?;
    let content = validate::clean_text(&body.content, content_rules(app))?;
    let (id, created_at) = new_id_with_timestamp();
    // The post's author decides who may not comment (blocks): checked in the transaction. Read
    // beside the mentions' names (both only when not known or named).
    let (post_author, mentions) = tokio::join!(app.post_author(&post_id), app.mentioned(&content, caller));
    let mentions = mentions?;
    let comment = Comment {
        id,
        post_id,
        user_id: caller.user_id.clone(),
        content,
        created_at,
        edited_at: None,
        removed: None,
        mentions,
    };
    let author = app.author(caller);
    let known = App::author_as_known(&author);
    let location = format!(
        "{}/posts/{}/comments/{}/",
        crate::routes::BASE_PATH,
        comment.post_id,
        comment.id
    );
    // The answer, as given now and to a keyed retry.
    let answered = comment.clone();
    let render: Arc<RenderAnswer> = Arc::new(move |shown: Option<&Profile>| StoredAnswer {
        status: 201,
        body: json_text(&CommentView::new(answered.clone(), shown.unwrap_or(&known))),
        location: Some(location.clone()),
    });
    let rate = app.create_token(req, caller, RateAction::Comment, &render)?;
    let post_author = match post_author {
        Ok(post_author) => post_author,
        // A keyed retry of a comment that was written is answered as it was, though its post
        // has gone since.
        Err(gone) => {
            if let Some(idempotency) = &rate.idempotency {
                app.table
                    .earlier_answer(&caller.user_id, &idempotency.key, rate.now)
                    .await?;
            }
            return Err(gone);
        }
    };
    let written = app
        .table
        .create_comment(&comment, author.to_write(), &rate, &post_author)
        .await?;
    app.forget_post(&comment.post_id);
    let author = app.shown_author(author, written);
    Ok(http_api::created(&render(Some(&author))))
}

/// `PATCH /posts/{id}/comments/{comment_id}/`: the author edits the text; sets `edited_at`.
pub async fn update_comment(app: &App, req: &Request, caller: &Caller) -> Result<Response<Body>, ApiError> {
    let post_id = path_id(req, "id", "post")?;
    let comment_id = path_id(req, "comment_id", "comment")?;
    let body: CommentBody = json_body(req)?;
    let content = validate::clean_text(&body.content, content_rules(app))?;
    let mentions = app.mentioned(&content, caller).await?;
    let edited_at = now_rfc3339();
    let rate = app.rate_token(caller, RateAction::Edit);
    let author = app.author(caller);
    let written = app
        .table
        .update_comment(
            &post_id,
            &comment_id,
            &content,
            &mentions,
            Editor {
                caller: &caller.user_id,
                edited_at: &edited_at,
                rate: &rate,
                author: author.to_write(),
            },
        )
        .await?;
    let author = app.shown_author(author, written);
    // Everything in the answer is known without a read: the author is the caller, and the
    // creation time is in the id.
    let created_at = timestamp_of(&comment_id).ok_or_else(|| ApiError::Internal("comment id without time".into()))?;
    let comment = Comment {
        id: comment_id,
        post_id,
        user_id: caller.user_id.clone(),
        content,
        created_at,
        edited_at: Some(edited_at),
        removed: None,
        mentions,
    };
    Ok(json(200, &CommentView::new(comment, &author)))
}

/// `DELETE /posts/{id}/comments/{comment_id}/`: the author deletes it; 204.
pub async fn delete_comment(app: &App, req: &Request, caller: &Caller) -> Result<Response<Body>, ApiError> {
    let post_id = path_id(req, "id", "post")?;
    let comment_id = path_id(req, "comment_id", "comment")?;
    app.table.delete_comment(&post_id, &comment_id, &caller.user_id).await?;
    app.forget_post(&post_id);
    Ok(http_api::no_content())
}
