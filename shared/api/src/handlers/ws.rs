//! The WebSocket API's routes: `$connect` (after the authorizer accepted `?token=`),
//! `$disconnect`, and `$default` for client messages. They take API Gateway's WebSocket event
//! and answer `{"statusCode": ...}`; replies to the client go through `@connections`.

use serde_json::{Value, json};

use super::App;
use crate::auth::Caller;
use crate::auth::TOKEN_LEEWAY_SECS;
use crate::error::ApiError;
use forum_domain::messages::{CONNECTION_TTL_SECS, ClientMessage, ServerMessage};
use forum_store::StoreError;

fn connection_id(event: &Value) -> Option<&str> {
    event["requestContext"]["connectionId"]
        .as_str()
        .filter(|id| !id.is_empty())
}

fn status(code: u16) -> Value {
    json!({ "statusCode": code })
}

/// `$connect`: stores the connection with its user for two hours. Without an authorized caller
/// the connection is refused.
pub async fn ws_connect(app: &App, event: &Value) -> Value {
    // One deadline per message, as for HTTP requests: API Gateway's WebSocket integration
    // timeout is 29 s, the function's 10 s.
    forum_store::deadline::within(
        forum_store::deadline::REQUEST_BUDGET,
        connect_within_deadline(app, event),
    )
    .await
    .unwrap_or_else(|_| {
        tracing::error!(route = "ws_connect", "the deadline passed");
        status(503)
    })
}

async fn connect_within_deadline(app: &App, event: &Value) -> Value {
    let Some(id) = connection_id(event) else {
        return status(400);
    };
    let context = event["requestContext"]["authorizer"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let context = context.into_iter().collect();
    let caller = match Caller::from_context(&context) {
        Ok(caller) => caller,
        Err(e) => {
            tracing::info!(connection_id = id, reason = %e, "connection refused");
            return status(401);
        }
    };
    // The socket lives as long as the token (fan-out closes it then), and two hours at most.
    let now = chrono::Utc::now().timestamp();
    let ttl = (now + CONNECTION_TTL_SECS).min(caller.expires_at + TOKEN_LEEWAY_SECS);
    match app
        .table
        .put_connection(id, &caller.user_id, caller.expires_at, ttl, now)
        .await
    {
        Ok(()) => status(200),
        Err(e @ StoreError::TooManyConnections { .. }) => {
            tracing::info!(connection_id = id, user_id = %caller.user_id, reason = %e, "connection refused");
            status(429)
        }
        Err(e) => {
            tracing::error!(connection_id = id, error = %e, "storing a connection failed");
            status(500)
        }
    }
}

/// `$disconnect`: forgets the connection and its subscriptions.
pub async fn ws_disconnect(app: &App, event: &Value) -> Value {
    // One deadline per message, as for HTTP requests: API Gateway's WebSocket integration
    // timeout is 29 s, the function's 10 s.
    forum_store::deadline::within(
        forum_store::deadline::REQUEST_BUDGET,
        disconnect_within_deadline(app, event),
    )
    .await
    .unwrap_or_else(|_| {
        tracing::error!(route = "ws_disconnect", "the deadline passed");
        status(503)
    })
}

async fn disconnect_within_deadline(app: &App, event: &Value) -> Value {
    let Some(id) = connection_id(event) else {
        return status(400);
    };
    match app.table.delete_connection(id).await {
        Ok(()) => status(200),
        Err(e) => {
            tracing::error!(connection_id = id, error = %e, "forgetting a connection failed");
            status(500)
        }
    }
}

/// `$default`: subscribe, unsubscribe, ping. A bad message is answered with an `error`
/// message; the connection stays open.
pub async fn ws_message(app: &App, event: &Value) -> Value {
    // One deadline per message, as for HTTP requests: API Gateway's WebSocket integration
    // timeout is 29 s, the function's 10 s.
    forum_store::deadline::within(
        forum_store::deadline::REQUEST_BUDGET,
        message_within_deadline(app, event),
    )
    .await
    .unwrap_or_else(|_| {
        tracing::error!(route = "ws_message", "the deadline passed");
        status(503)
    })
}

async fn message_within_deadline(app: &App, event: &Value) -> Value {
    let Some(id) = connection_id(event) else {
        return status(400);
    };
    let body = event["body"].as_str().unwrap_or_default();
    let reply = match handle_message(app, id, body).await {
        Ok(reply) => reply,
        Err(e) => ServerMessage::Error {
            code: e.code().to_string(),
            message: e.to_string(),
        },
    };
    if let Some(notifier) = &app.notifier {
        let (_, gone) = notifier.send(id, &reply).await;
        if !gone.is_empty()
            && let Err(e) = app.table.delete_connection(id).await
        {
            // Its items expire by TTL; fan-out retries the clean-up when it meets the id.
            tracing::warn!(connection_id = id, error = %e, "forgetting a gone connection failed");
        }
    }
    status(200)
}

async fn handle_message(app: &App, id: &str, body: &str) -> Result<ServerMessage, ApiError> {
    let message = ClientMessage::parse(body)?;
    if matches!(message, ClientMessage::Ping {}) {
        return Ok(ServerMessage::Pong);
    }
    let connection = app
        .table
        .get_connection(id)
        .await?
        .ok_or_else(|| ApiError::NotFound("this connection is not known; reconnect".into()))?;
    if connection.expires_at + TOKEN_LEEWAY_SECS < chrono::Utc::now().timestamp() {
        if let Some(notifier) = &app.notifier {
            // Logged when it fails; the item goes regardless, so the socket hears nothing more.
            let _ = notifier.close(id).await;
        }
        app.table.delete_connection(id).await?;
        return Err(ApiError::Unauthorized("token expired; reconnect with a new one".into()));
    }
    match message {
        ClientMessage::Subscribe { post_ids } => {
            let ttl = chrono::Utc::now().timestamp() + CONNECTION_TTL_SECS;
            app.table.subscribe(&connection, &post_ids, ttl).await?;
            Ok(ServerMessage::Subscribed { post_ids })
        }
        ClientMessage::Unsubscribe { post_ids } => {
            app.table.unsubscribe(&connection, &post_ids).await?;
            Ok(ServerMessage::Unsubscribed { post_ids })
        }
        ClientMessage::Ping {} => Ok(ServerMessage::Pong),
    }
}
