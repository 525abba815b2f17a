//! Post routes: list, create, get, edit, delete.

use lambda_http::{Body, Request, Response};
use serde::Deserialize;

use super::App;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::http_api::{self, json, json_body, json_text, page_limit, page_links, path_id};
use std::sync::Arc;

use forum_domain::model::{Post, PostPage, PostView, Profile, new_id_with_timestamp, now_rfc3339};
use forum_domain::validate::{self, MAX_POST_CHARS, TextRules};
use forum_store::idempotency::{RenderAnswer, StoredAnswer};
use forum_store::{Editor, OwnMedia, RateAction, feed_scope};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreatePostBody {
    content: String,
    #[serde(default)]
    media_url: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdatePostBody {
    /// Absent: unchanged. `null` is refused: a post always has content.
    #[serde(default, deserialize_with = "http_api::nullable")]
    content: Option<Option<String>>,
    /// Absent: unchanged. `null` or `""`: removed.
    #[serde(default, deserialize_with = "http_api::nullable")]
    media_url: Option<Option<String>>,
}

fn content_rules(app: &App) -> TextRules {
    TextRules {
        field: "content",
        max_chars: MAX_POST_CHARS,
        profanity: app.profanity,
    }
}

/// `None` and `""` mean "no media"; anything else must be the URL of an image the caller
/// uploaded (checked in the write's transaction). Returns the URL and its media id.
fn media_url(app: &App, raw: Option<&str>) -> Result<Option<(String, OwnMedia)>, ApiError> {
    match raw.map(str::trim) {
        None | Some("") => Ok(None),
        Some(url) => {
            let (id, kind) = app.bucket.media_of_url(url).ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_media_url",
                    "`media_url` must be a media URL returned by POST /api/forum/upload/ or /upload/presign/",
                )
            })?;
            Ok(Some((url.to_string(), OwnMedia { id, kind })))
        }
    }
}

/// `GET /posts/`: newest first, keyset-paginated.
pub async fn list_posts(app: &App, req: &Request, caller: &Caller) -> Result<Response<Body>, ApiError> {
    let limit = page_limit(req)?;
    let cursors = app.cursors().await?;
    let position = http_api::query_param(req, "cursor")
        .map(|raw| cursors.decode(raw, &feed_scope()))
        .transpose()?;
    let (page, liked) = app.feed_page(position.as_ref(), limit, &caller.user_id).await?;
    let posts = app.post_views(page.items, caller, liked).await?;
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

/// `POST /posts/`: 201 with the new post.
pub async fn create_post(app: &App, req: &Request, caller: &Caller) -> Result<Response<Body>, ApiError> {
    let body: CreatePostBody = json_body(req)?;
    let content = validate::clean_text(&body.content, content_rules(app))?;
    let media = media_url(app, body.media_url.as_deref())?;
    let mentions = app.mentioned(&content, caller).await?;
    let (id, created_at) = new_id_with_timestamp();
    let post = Post {
        id,
        user_id: caller.user_id.clone(),
        content,
        media_url: media.as_ref().map(|(url, _)| url.clone()),
        created_at,
        edited_at: None,
        like_count: 0,
        comment_count: 0,
        removed: None,
        mentions,
    };
    let author = app.author(caller);
    let known = App::author_as_known(&author);
    let location = format!("{}/posts/{}/", crate::routes::BASE_PATH, post.id);
    // The answer, as given now and to a keyed retry. Nobody can have liked a post that did
    // not exist a moment ago.
    let answered = post.clone();
    let render: Arc<RenderAnswer> = Arc::new(move |shown: Option<&Profile>| StoredAnswer {
        status: 201,
        body: json_text(&PostView::new(answered.clone(), shown.unwrap_or(&known), false)),
        location: Some(location.clone()),
    });
    let rate = app.create_token(req, caller, RateAction::Post, &render)?;
    let own_media = media.as_ref().map(|(_, own)| own);
    let written = app
        .table
        .create_post(&post, author.to_write(), &rate, own_media)
        .await?;
    app.forget_post(&post.id);
    let author = app.shown_author(author, written);
    Ok(http_api::created(&render(Some(&author))))
}

/// `GET /posts/{id}/`.
pub async fn get_post(app: &App, req: &Request, caller: &Caller) -> Result<Response<Body>, ApiError> {
    let id = path_id(req, "id", "post")?;
    let (post, author, is_liked) = app.post_for(&id, &caller.user_id).await?;
    // Removed by a moderator: gone for everyone but moderators, who see it marked.
    if post.removed.is_some() && !caller.role.moderates() {
        return Err(ApiError::NotFound("post not found".into()));
    }
    Ok(json(200, &PostView::new(post, &author, is_liked)))
}

/// `PATCH /posts/{id}/`: the author edits content and/or media; sets `edited_at`.
pub async fn update_post(app: &App, req: &Request, caller: &Caller) -> Result<Response<Body>, ApiError> {
    let id = path_id(req, "id", "post")?;
    let body: UpdatePostBody = json_body(req)?;
    if body.content.is_none() && body.media_url.is_none() {
        return Err(ApiError::bad_request(
            "invalid_request",
            "give `content` and/or `media_url` to change",
        ));
    }
    let content = match &body.content {
        None => None,
        Some(None) => {
            return Err(ApiError::bad_request(
                "content_required",
                "`content` cannot be null: a post always has content (leave it out to keep it)",
            ));
        }
        Some(Some(c)) => {
            let content = validate::clean_text(c, content_rules(app))?;
            let mentions = app.mentioned(&content, caller).await?;
            Some((content, mentions))
        }
    };
    // Absent: unchanged; null or "": removed; a URL: must be the caller's upload.
    let media = match &body.media_url {
        None => None,
        Some(raw) => Some(media_url(app, raw.as_deref())?),
    };
    let new_url = media.as_ref().map(|m| m.as_ref().map(|(url, _)| url.as_str()));
    let new_media = media.as_ref().and_then(|m| m.as_ref().map(|(_, own)| own));
    let rate = app.rate_token(caller, RateAction::Edit);
    let author = app.author(caller);
    let (post, is_liked, written) = app
        .table
        .update_post(
            &id,
            content
                .as_ref()
                .map(|(text, mentions)| (text.as_str(), mentions.as_slice())),
            new_url,
            new_media,
            Editor {
                caller: &caller.user_id,
                edited_at: &now_rfc3339(),
                rate: &rate,
                author: author.to_write(),
            },
        )
        .await?;
    app.forget_post(&post.id);
    // Only the author gets here, so the post's author is the caller.
    let author = app.shown_author(author, written);
    Ok(json(200, &PostView::new(post, &author, is_liked)))
}

/// `DELETE /posts/{id}/`: the author deletes the post; 204.
pub async fn delete_post(app: &App, req: &Request, caller: &Caller) -> Result<Response<Body>, ApiError> {
    let id = path_id(req, "id", "post")?;
    app.table.delete_post(&id, &caller.user_id).await?;
    app.forget_post(&id);
    Ok(http_api::no_content())
}
