//! Moderation routes: a moderator's action (`POST /moderation/actions/`: remove or restore a
//! post or comment, suspend a user or lift it) and the log of every action
//! (`GET /moderation/actions/`). The log is the collection of actions: taking one is creating
//! its entry, in the same transaction as what it does.

use lambda_http::{Body, Request, Response};
use serde::Deserialize;

use super::App;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::http_api::{self, json, json_body, page_limit, page_links};
use forum_domain::model::new_id_with_timestamp;
use forum_domain::moderation::{self, ActionKind, LogEntry, LogPage, Suspension};
use forum_domain::reports::{ReportOutcome, ReportTarget};
use forum_store::log_scope;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionBody {
    action: String,
    reason: String,
    #[serde(default)]
    post_id: Option<String>,
    #[serde(default)]
    comment_id: Option<String>,
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default)]
    until: Option<String>,
    #[serde(default)]
    outcome: Option<String>,
}

/// Moderators only: anyone else is refused before the request is read.
pub(super) fn moderator(caller: &Caller) -> Result<(), ApiError> {
    if caller.role.moderates() {
        Ok(())
    } else {
        Err(ApiError::Forbidden("only moderators may do this".into()))
    }
}

/// A required id field of the action, well formed.
fn required_id(value: Option<String>, field: &str, action: ActionKind) -> Result<String, ApiError> {
    let value = value
        .ok_or_else(|| ApiError::bad_request("invalid_action", format!("`{}` needs `{field}`", action.as_str())))?;
    if value.len() == 26 && ulid::Ulid::from_string(&value).is_ok() {
        Ok(value)
    } else {
        Err(ApiError::bad_request(
            "invalid_action",
            format!("`{field}` is not a valid id"),
        ))
    }
}

/// [`required_user`], and not the moderator's own: no one suspends or lifts themself.
fn another_user(value: Option<String>, action: ActionKind, caller: &Caller) -> Result<String, ApiError> {
    let user_id = required_user(value, action)?;
    if user_id == caller.user_id {
        return Err(ApiError::bad_request(
            "invalid_action",
            format!("`{}` cannot name yourself", action.as_str()),
        ));
    }
    Ok(user_id)
}

/// A user id as tokens name users (`sub`): non-empty, bounded, no key separators.
fn required_user(value: Option<String>, action: ActionKind) -> Result<String, ApiError> {
    let value = value
        .ok_or_else(|| ApiError::bad_request("invalid_action", format!("`{}` needs `user_id`", action.as_str())))?;
    if crate::auth::usable_user_id(&value) {
        Ok(value)
    } else {
        Err(ApiError::bad_request(
            "invalid_action",
            "`user_id` is not a valid user id",
        ))
    }
}

/// Fields an action does not take are refused rather than ignored: a request that says more
/// than it does is a mistake worth telling.
fn refuse_extra(action: ActionKind, fields: &[(&str, bool)]) -> Result<(), ApiError> {
    match fields.iter().find(|(_, present)| *present) {
        Some((name, _)) => Err(ApiError::bad_request(
            "invalid_action",
            format!("`{}` takes no `{name}`", action.as_str()),
        )),
        None => Ok(()),
    }
}

/// `POST /moderation/actions/`: 201 with the log entry of what was done.
pub async fn moderate(app: &App, req: &Request, caller: &Caller) -> Result<Response<Body>, ApiError> {
    moderator(caller)?;
    let body: ActionBody = json_body(req)?;
    // A suspended moderator writes nothing, moderation included (they could lift their own
    // suspension, or suspend whoever suspended them).
    if let Some(suspension) = app
        .table
        .suspension(&caller.user_id, chrono::Utc::now().timestamp())
        .await?
    {
        return Err(ApiError::Suspended {
            until: suspension.until,
            reason: suspension.reason,
        });
    }
    let kind = ActionKind::parse(&body.action).ok_or_else(|| {
        let known: Vec<_> = ActionKind::ALL.iter().map(|k| k.as_str()).collect();
        ApiError::bad_request(
            "invalid_action",
            format!("`action` must be one of {}", known.join(", ")),
        )
    })?;
    let reason = moderation::clean_reason(&body.reason)?;
    let (id, created_at) = new_id_with_timestamp();
    let mut entry = LogEntry {
        id,
        action: kind,
        moderator_id: caller.user_id.clone(),
        reason,
        created_at,
        post_id: None,
        comment_id: None,
        user_id: None,
        until: None,
        outcome: None,
    };
    let has = (body.comment_id.is_some(), body.user_id.is_some(), body.until.is_some());
    if body.outcome.is_some() && kind != ActionKind::ResolveReports {
        return Err(ApiError::bad_request(
            "invalid_action",
            format!("`{}` takes no `outcome`", kind.as_str()),
        ));
    }
    let entry = match kind {
        ActionKind::RemovePost | ActionKind::RestorePost => {
            refuse_extra(kind, &[("comment_id", has.0), ("user_id", has.1), ("until", has.2)])?;
            let post_id = required_id(body.post_id, "post_id", kind)?;
            entry.post_id = Some(post_id.clone());
            let entry = if kind == ActionKind::RemovePost {
                app.table.remove_post(&post_id, entry).await?
            } else {
                app.table.restore_post(&post_id, entry).await?
            };
            app.forget_post(&post_id);
            entry
        }
        ActionKind::RemoveComment | ActionKind::RestoreComment => {
            refuse_extra(kind, &[("user_id", has.1), ("until", has.2)])?;
            let post_id = required_id(body.post_id, "post_id", kind)?;
            let comment_id = required_id(body.comment_id, "comment_id", kind)?;
            entry.post_id = Some(post_id.clone());
            entry.comment_id = Some(comment_id.clone());
            let entry = if kind == ActionKind::RemoveComment {
                app.table.remove_comment(&post_id, &comment_id, entry).await?
            } else {
                app.table.restore_comment(&post_id, &comment_id, entry).await?
            };
            app.forget_post(&post_id);
            entry
        }
        ActionKind::SuspendUser => {
            refuse_extra(kind, &[("post_id", body.post_id.is_some()), ("comment_id", has.0)])?;
            let user_id = another_user(body.user_id, kind, caller)?;
            let raw_until = body
                .until
                .ok_or_else(|| ApiError::bad_request("invalid_until", "`suspend_user` needs `until` (RFC 3339)"))?;
            let (until, until_epoch) = moderation::suspension_end(&raw_until, chrono::Utc::now())?;
            entry.user_id = Some(user_id.clone());
            entry.until = Some(until.clone());
            let suspension = Suspension {
                user_id,
                until,
                reason: entry.reason.clone(),
                action_id: entry.id.clone(),
            };
            app.table.suspend_user(&suspension, until_epoch, &entry).await?;
            entry
        }
        ActionKind::ResolveReports => {
            refuse_extra(kind, &[("user_id", has.1), ("until", has.2)])?;
            let post_id = required_id(body.post_id, "post_id", kind)?;
            let target = match body.comment_id {
                Some(cid) => ReportTarget::Comment {
                    post_id: post_id.clone(),
                    comment_id: required_id(Some(cid), "comment_id", kind)?,
                },
                None => ReportTarget::Post {
                    post_id: post_id.clone(),
                },
            };
            let outcome = body
                .outcome
                .as_deref()
                .and_then(ReportOutcome::parse_resolution)
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_action",
                        "`resolve_reports` needs `outcome`: `dismissed` or `actioned` (removing the target resolves them as `removed`)",
                    )
                })?;
            entry.post_id = Some(post_id);
            entry.comment_id = target.comment_id().map(str::to_string);
            entry.outcome = Some(outcome);
            app.table.resolve_reports(&target, outcome, &entry).await?;
            entry
        }
        ActionKind::LiftSuspension => {
            refuse_extra(
                kind,
                &[
                    ("post_id", body.post_id.is_some()),
                    ("comment_id", has.0),
                    ("until", has.2),
                ],
            )?;
            let user_id = another_user(body.user_id, kind, caller)?;
            entry.user_id = Some(user_id.clone());
            app.table
                .lift_suspension(&user_id, &entry, chrono::Utc::now().timestamp())
                .await?;
            entry
        }
    };
    tracing::info!(
        action = entry.action.as_str(),
        action_id = %entry.id,
        moderator = %entry.moderator_id,
        "moderation action taken"
    );
    Ok(json(201, &entry))
}

/// `GET /moderation/actions/`: the log, newest first, keyset-paginated. Moderators only.
pub async fn moderation_log(app: &App, req: &Request, caller: &Caller) -> Result<Response<Body>, ApiError> {
    moderator(caller)?;
    let limit = page_limit(req)?;
    let cursors = app.cursors().await?;
    let position = http_api::query_param(req, "cursor")
        .map(|raw| cursors.decode(raw, &log_scope()))
        .transpose()?;
    let page = app.table.log_page(position.as_ref(), limit).await?;
    let (next_page, previous_page) = page_links(req, &cursors, limit, page.next.as_ref(), page.previous.as_ref());
    Ok(json(
        200,
        &LogPage {
            next_page,
            previous_page,
            actions: page.items,
        },
    ))
}
