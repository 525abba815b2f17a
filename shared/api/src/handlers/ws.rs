//! The WebSocket API's routes: `$connect` (after the authorizer accepted `?token=`),
//! `$disconnect`, and `$default` for client messages. They take API Gateway's WebSocket event
//! and answer with a status only (from the one error mapping, [`ApiError::status`]); replies
//! to the client go through `@connections`.

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};

use super::App;
use crate::auth::Caller;
use crate::auth::TOKEN_LEEWAY_SECS;
use crate::error::ApiError;
use forum_domain::messages::{CONNECTION_TTL_SECS, ClientMessage, ServerMessage};
use forum_domain::model::RateAction;

/// The route's connection id; an event without one is refused.
fn connection_id(event: &ApiGatewayWebsocketProxyRequest) -> Result<&str, ApiError> {
    event
        .request_context
        .connection_id
        .as_deref()
        .filter(|id| !id.is_empty())
        .ok_or_else(|| ApiError::bad_request("invalid_request", "the event names no connection"))
}

/// What API Gateway gets back: the status of the outcome (a refused `$connect` refuses the
/// connection; the others only show in its logs).
fn answer(outcome: Result<(), ApiError>, route: &str) -> ApiGatewayProxyResponse {
    let status = match &outcome {
        Ok(()) => 200,
        Err(e) => {
            match e.status() {
                500.. => tracing::error!(route, code = e.code(), error = %e, "WebSocket route failed"),
                _ => tracing::info!(route, code = e.code(), reason = %e, "WebSocket route refused"),
            }
            e.status()
        }
    };
    let mut response = ApiGatewayProxyResponse::default();
    response.status_code = i64::from(status);
    response
}

/// One deadline per message, as for HTTP requests (API Gateway's WebSocket integration
/// timeout is 29 s, the function's 10 s): past it, the answer is 503.
async fn within_deadline(
    route: &'static str,
    work: impl std::future::Future<Output = Result<(), ApiError>>,
) -> ApiGatewayProxyResponse {
    answer(within_request_budget(work).await, route)
}

/// `work` within a request's deadline, or `Unavailable` once it has passed.
async fn within_request_budget<T>(work: impl std::future::Future<Output = Result<T, ApiError>>) -> Result<T, ApiError> {
    forum_store::deadline::within(forum_store::deadline::REQUEST_BUDGET, work)
        .await
        .unwrap_or_else(|_| Err(ApiError::Unavailable("the deadline passed".into())))
}

/// `$connect`: stores the connection with its user for two hours. Without an authorized caller
/// the connection is refused.
pub async fn ws_connect(app: &App, event: &ApiGatewayWebsocketProxyRequest) -> ApiGatewayProxyResponse {
    within_deadline("ws_connect", connect(app, event)).await
}

async fn connect(app: &App, event: &ApiGatewayWebsocketProxyRequest) -> Result<(), ApiError> {
    let id = connection_id(event)?;
    let caller = Caller::from_context(&event.request_context.authorizer.fields)?;
    // The socket lives as long as the token (fan-out closes it then), and two hours at most.
    let now = chrono::Utc::now().timestamp();
    let ttl = (now + CONNECTION_TTL_SECS).min(caller.expires_at + TOKEN_LEEWAY_SECS);
    app.table
        .put_connection(
            id,
            &caller.user_id,
            caller.expires_at,
            ttl,
            now,
            caller.role.moderates(),
        )
        .await?;
    Ok(())
}

/// `$disconnect`: forgets the connection and its subscriptions.
pub async fn ws_disconnect(app: &App, event: &ApiGatewayWebsocketProxyRequest) -> ApiGatewayProxyResponse {
    within_deadline("ws_disconnect", async {
        app.table.delete_connection(connection_id(event)?).await?;
        Ok(())
    })
    .await
}

/// What a message's reply (and a gone connection's clean-up) may take after its work's 2.5 s
/// deadline: together below ws-message's 10 s timeout (template.yaml).
const REPLY_BUDGET: std::time::Duration = std::time::Duration::from_secs(6);

/// `$default`: subscribe, unsubscribe, ping. A bad message is answered with an `error`
/// message; the connection stays open.
pub async fn ws_message(app: &App, event: &ApiGatewayWebsocketProxyRequest) -> ApiGatewayProxyResponse {
    answer(message(app, event).await, "ws_message")
}

async fn message(app: &App, event: &ApiGatewayWebsocketProxyRequest) -> Result<(), ApiError> {
    let id = connection_id(event)?;
    let body = event.body.as_deref().unwrap_or_default();
    // The deadline is the work's, not the reply's: a message that ran out of time is told so
    // (`unavailable`), as an HTTP request would be, rather than never answered.
    let reply = match within_request_budget(handle_message(app, id, body)).await {
        Ok(reply) => reply,
        Err(e) => {
            if e.status() >= 500 {
                tracing::error!(connection_id = id, code = e.code(), error = %e, "WebSocket message failed");
            }
            // What HTTP answers would say: an internal error's details stay in the logs.
            ServerMessage::Error {
                code: e.code().to_string(),
                message: e.public_message(),
            }
        }
    };
    let Some(notifier) = &app.notifier else {
        return Ok(());
    };
    // The reply and a gone connection's clean-up have what is left of the function's 10 s.
    let replied = forum_store::deadline::within(REPLY_BUDGET, async {
        let (_, gone) = notifier.send(id, &reply).await;
        if !gone.is_empty()
            && let Err(e) = app.table.delete_connection(id).await
        {
            // Its items expire by TTL; fan-out retries the clean-up when it meets the id.
            tracing::warn!(connection_id = id, error = %e, "forgetting a gone connection failed");
        }
    })
    .await;
    if replied.is_err() {
        tracing::warn!(connection_id = id, "the reply ran out of time");
    }
    Ok(())
}

async fn handle_message(app: &App, id: &str, body: &str) -> Result<ServerMessage, ApiError> {
    let message = ClientMessage::parse(body)?;
    // A ping too: answered only on a known connection whose token still holds, or pings alone
    // would keep a socket open past its token (and its user's slot taken meanwhile).
    let Some(connection) = app.table.get_connection(id).await? else {
        // Gone (its token expired and TTL took the item, or a send found it gone): nothing
        // will reach this socket, so it is closed, and the client reconnects with a fresh token
        // rather than staying open and deaf.
        if let Some(notifier) = &app.notifier {
            let _ = notifier.close(id).await;
        }
        return Err(ApiError::NotFound("this connection is not known; reconnect".into()));
    };
    if connection.expires_at + TOKEN_LEEWAY_SECS < chrono::Utc::now().timestamp() {
        if let Some(notifier) = &app.notifier {
            // Logged when it fails; the item goes regardless, so the socket hears nothing more.
            let _ = notifier.close(id).await;
        }
        app.table.delete_connection(id).await?;
        return Err(ApiError::Unauthorized("token expired; reconnect with a new one".into()));
    }
    // A message that changes what the connection follows costs writes: at most so many a
    // minute per user, whichever of their connections sends them.
    let rate = app.rate_token_for(&connection.user_id, RateAction::Subscription);
    match message {
        ClientMessage::Subscribe { post_ids } => {
            app.table.subscribe(&connection, &post_ids, &rate).await?;
            Ok(ServerMessage::Subscribed { post_ids })
        }
        ClientMessage::Unsubscribe { post_ids } => {
            app.table.unsubscribe(&connection, &post_ids, &rate).await?;
            Ok(ServerMessage::Unsubscribed { post_ids })
        }
        ClientMessage::Ping {} => Ok(ServerMessage::Pong),
    }
}
