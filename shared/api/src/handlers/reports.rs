//! Report routes: a user reports a post or a comment (once per target; a repeat answers as
//! the first did), and moderators read the queue.

use std::collections::HashSet;
use std::sync::Arc;

use lambda_http::{Body, Request, Response};
use serde::Deserialize;

use super::App;
use super::moderation::moderator;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::http_api::{self, json, json_body, json_text, page_limit, page_links, path_id};
use forum_domain::model::{CommentView, PostView, Profile, new_id_with_timestamp};
use forum_domain::reports::{QueueEntry, QueuePage, Report, ReportReason, ReportTarget, clean_note};
use forum_store::idempotency::{RenderAnswer, StoredAnswer};
use forum_store::{RateAction, reports_scope};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportBody {
    reason: String,
    #[serde(default)]
    note: Option<String>,
}

/// `POST /posts/{id}/report/`: 201 with the report.
pub async fn report_post(app: &App, req: &Request, caller: &Caller) -> Result<Response<Body>, ApiError> {
    let post_id = path_id(req, "id", "post")?;
    file(app, req, caller, ReportTarget::Post { post_id }).await
}

/// `POST /posts/{id}/comments/{comment_id}/report/`: 201 with the report.
pub async fn report_comment(app: &App, req: &Request, caller: &Caller) -> Result<Response<Body>, ApiError> {
    let post_id = path_id(req, "id", "post")?;
    let comment_id = path_id(req, "comment_id", "comment")?;
    file(app, req, caller, ReportTarget::Comment { post_id, comment_id }).await
}

async fn file(app: &App, req: &Request, caller: &Caller, target: ReportTarget) -> Result<Response<Body>, ApiError> {
    let body: ReportBody = json_body(req)?;
    let reason = ReportReason::parse(&body.reason).ok_or_else(|| {
        let known: Vec<_> = ReportReason::ALL.iter().map(|r| r.as_str()).collect();
        ApiError::bad_request(
            "invalid_reason",
            format!("`reason` must be one of {}", known.join(", ")),
        )
    })?;
    let note = clean_note(reason, body.note.as_deref())?;
    let (id, created_at) = new_id_with_timestamp();
    let report = Report {
        id,
        target,
        reason,
        note,
        created_at,
    };
    let answered = report.clone();
    let render: Arc<RenderAnswer> = Arc::new(move |_: Option<&Profile>| StoredAnswer {
        status: 201,
        body: json_text(&answered),
        location: None,
    });
    let rate = app.create_token(req, caller, RateAction::Report, &render)?;
    // A repeat is answered with the report as first made: same status, same body.
    let stored = app.table.report(&report, &caller.user_id, &rate).await?;
    Ok(json(201, &stored))
}

/// `GET /moderation/reports/`: open entries oldest first, then resolved ones, each with its
/// target as it now stands. Moderators only.
pub async fn list_reports(app: &App, req: &Request, caller: &Caller) -> Result<Response<Body>, ApiError> {
    moderator(caller)?;
    let limit = page_limit(req)?;
    let cursors = app.cursors().await?;
    let position = http_api::query_param(req, "cursor")
        .map(|raw| cursors.decode(raw, &reports_scope()))
        .transpose()?;
    let page = app.table.reports_queue(position.as_ref(), limit).await?;
    let authors: HashSet<String> = page
        .items
        .iter()
        .flat_map(|(_, post, comment)| {
            post.iter()
                .map(|p| p.user_id.clone())
                .chain(comment.iter().map(|c| c.user_id.clone()))
        })
        .collect();
    let profiles = app.profiles(authors).await?;
    let profile = |user_id: &str| {
        profiles
            .get(user_id)
            .cloned()
            .unwrap_or_else(|| Profile::unknown(user_id))
    };
    let reports = page
        .items
        .into_iter()
        .map(|(summary, post, comment)| QueueEntry {
            post: post.map(|p| {
                let author = profile(&p.user_id);
                PostView::new(p, &author, false)
            }),
            comment: comment.map(|c| {
                let author = profile(&c.user_id);
                CommentView::new(c, &author)
            }),
            target: summary.target,
            status: summary.status,
            report_count: summary.report_count,
            reasons: summary.reasons,
            first_reported_at: summary.first_reported_at,
            last_reported_at: summary.last_reported_at,
            outcome: summary.outcome,
            resolved_by: summary.resolved_by,
            resolved_at: summary.resolved_at,
        })
        .collect();
    let (next_page, previous_page) = page_links(req, &cursors, limit, page.next.as_ref(), page.previous.as_ref());
    Ok(json(
        200,
        &QueuePage {
            reports,
            next_page,
            previous_page,
        },
    ))
}
