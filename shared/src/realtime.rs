//! Live updates: the messages clients receive over WebSocket, how DynamoDB stream records are
//! read, and the sender that pushes to connections through API Gateway's `@connections`.

use std::collections::BTreeMap;

use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::model::{CommentView, PostView};

/// Connections live two hours (API Gateway's own limit); their items expire with them.
pub const CONNECTION_TTL_SECS: i64 = 2 * 3600;
/// Sends in flight at once per fan-out.
pub const SEND_CONCURRENCY: usize = 32;
/// Sends in flight from one container at most, across the fan-outs it runs at once
/// (`stream-fanout` handles a batch's partitions side by side).
pub const MAX_SENDS_IN_FLIGHT: usize = 64;
/// Post ids one `subscribe`/`unsubscribe` message may carry.
pub const MAX_POSTS_PER_MESSAGE: usize = 50;

/// Everything the server sends; `type` names it.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(tag = "type")]
pub enum ServerMessage {
    /// To every connection. Events carry no per-user state: `is_liked` is false.
    #[serde(rename = "post.created")]
    PostCreated { post: PostView },
    /// To the post's subscribers and its author's connections.
    #[serde(rename = "post.updated")]
    PostUpdated { post: PostView },
    /// To every connection.
    #[serde(rename = "post.deleted")]
    PostDeleted { post_id: String },
    #[serde(rename = "like.updated")]
    LikeUpdated { post_id: String, like_count: u64 },
    #[serde(rename = "comment.created")]
    CommentCreated {
        post_id: String,
        comment: CommentView,
        comment_count: u64,
    },
    #[serde(rename = "comment.deleted")]
    CommentDeleted {
        post_id: String,
        comment_id: String,
        comment_count: u64,
    },
    /// To the uploader's connections.
    #[serde(rename = "media.ready")]
    MediaReady {
        id: String,
        url: String,
        thumbnails: BTreeMap<String, String>,
        width: Option<u32>,
        height: Option<u32>,
    },
    #[serde(rename = "media.rejected")]
    MediaRejected { id: String, url: String, reason: String },
    /// Answers to the client's own messages.
    #[serde(rename = "pong")]
    Pong,
    #[serde(rename = "subscribed")]
    Subscribed { post_ids: Vec<String> },
    #[serde(rename = "unsubscribed")]
    Unsubscribed { post_ids: Vec<String> },
    #[serde(rename = "error")]
    Error { code: String, message: String },
}

/// What a client may send.
#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(tag = "action", rename_all = "lowercase", deny_unknown_fields)]
pub enum ClientMessage {
    Subscribe { post_ids: Vec<String> },
    Unsubscribe { post_ids: Vec<String> },
    Ping {},
}

fn canonical_ids(ids: Vec<String>) -> Vec<String> {
    let mut ids: Vec<String> = ids
        .iter()
        .filter_map(|id| ulid::Ulid::from_string(id).ok())
        .map(|id| id.to_string())
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

impl ClientMessage {
    /// Parses and checks a client's message; the error is what the client is told.
    pub fn parse(body: &str) -> Result<ClientMessage, ApiError> {
        let message: ClientMessage = serde_json::from_str(body).map_err(|e| {
            ApiError::bad_request(
                "invalid_message",
                format!("expected {{\"action\":\"subscribe\"|\"unsubscribe\",\"post_ids\":[...]}} or {{\"action\":\"ping\"}}: {e}"),
            )
        })?;
        if let ClientMessage::Subscribe { post_ids } | ClientMessage::Unsubscribe { post_ids } = &message {
            if post_ids.is_empty() || post_ids.len() > MAX_POSTS_PER_MESSAGE {
                return Err(ApiError::bad_request(
                    "invalid_message",
                    format!("`post_ids` must hold 1 to {MAX_POSTS_PER_MESSAGE} ids"),
                ));
            }
            if let Some(bad) = post_ids
                .iter()
                .find(|id| id.len() != 26 || ulid::Ulid::from_string(id).is_err())
            {
                return Err(ApiError::bad_request(
                    "invalid_message",
                    format!("`{bad}` is not a post id"),
                ));
            }
        }
        // Ids in their canonical (upper-case) form, as posts are keyed and as the HTTP routes
        // read them: a lower-case id names the same post, and must match its events.
        let message = match message {
            ClientMessage::Subscribe { post_ids } => ClientMessage::Subscribe {
                post_ids: canonical_ids(post_ids),
            },
            ClientMessage::Unsubscribe { post_ids } => ClientMessage::Unsubscribe {
                post_ids: canonical_ids(post_ids),
            },
            other => other,
        };
        Ok(message)
    }
}

/// Pushes messages to WebSocket connections through the `@connections` API.
#[derive(Clone, Debug)]
pub struct Notifier {
    client: aws_sdk_apigatewaymanagement::Client,
    in_flight: std::sync::Arc<tokio::sync::Semaphore>,
}

/// What one fan-out did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Delivery {
    pub sent: usize,
    /// Connections that were gone (410): cleaned up.
    pub gone: usize,
    pub failed: usize,
}

impl Notifier {
    pub fn new(client: aws_sdk_apigatewaymanagement::Client) -> Self {
        Notifier {
            client,
            in_flight: std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_SENDS_IN_FLIGHT)),
        }
    }

    /// Sends one message to each connection, at most [`SEND_CONCURRENCY`] at a time (and
    /// [`MAX_SENDS_IN_FLIGHT`] for the whole container). A failed
    /// send never stops the others; the ids of gone connections are returned for clean-up.
    pub async fn send_all(&self, connections: &[String], message: &ServerMessage) -> (Delivery, Vec<String>) {
        let payload = match serde_json::to_vec(message) {
            Ok(p) => aws_sdk_apigatewaymanagement::primitives::Blob::new(p),
            Err(_) => return (Delivery::default(), Vec::new()),
        };
        let results: Vec<(String, Result<(), bool>)> = futures::stream::iter(connections.iter().cloned())
            .map(|id| {
                let payload = payload.clone();
                async move {
                    // Never closed, so acquiring only waits; were it closed, send anyway.
                    let _permit = self.in_flight.acquire().await.ok();
                    let result = self
                        .client
                        .post_to_connection()
                        .connection_id(&id)
                        .data(payload)
                        .send()
                        .await;
                    let outcome = match result {
                        Ok(_) => Ok(()),
                        Err(e) => {
                            let gone = e.as_service_error().is_some_and(|s| s.is_gone_exception());
                            if !gone {
                                tracing::warn!(connection_id = %id, error = ?e, "send failed");
                            }
                            Err(gone)
                        }
                    };
                    (id, outcome)
                }
            })
            .buffer_unordered(SEND_CONCURRENCY)
            .collect()
            .await;
        let mut delivery = Delivery::default();
        let mut gone = Vec::new();
        for (id, outcome) in results {
            match outcome {
                Ok(()) => delivery.sent += 1,
                Err(true) => {
                    delivery.gone += 1;
                    gone.push(id);
                }
                Err(false) => delivery.failed += 1,
            }
        }
        (delivery, gone)
    }

    /// Opens a pooled connection to the `@connections` endpoint during a cold start (see
    /// `Table::warm_up`): a lookup of a connection id that cannot exist.
    pub async fn warm_up(&self) {
        let _ = self.client.get_connection().connection_id("warm-up").send().await;
    }

    /// Closes a socket from the server's side (`DELETE @connections/{id}`); API Gateway then
    /// runs `$disconnect`. A connection already gone is fine; any other failure (a role that may
    /// not DELETE, a throttle) is logged and returned.
    pub async fn close(&self, connection: &str) -> Result<(), String> {
        match self.client.delete_connection().connection_id(connection).send().await {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_gone_exception()) => Ok(()),
            Err(e) => {
                tracing::warn!(connection_id = %connection, error = ?e, "closing a connection failed");
                Err(crate::sdk_errors::classify(&e).unwrap_or_else(|why| why))
            }
        }
    }

    pub async fn send(&self, connection: &str, message: &ServerMessage) -> (Delivery, Vec<String>) {
        self.send_all(&[connection.to_string()], message).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_messages_parse_or_say_why_not() {
        let id = "01JDQ8Z6Y0X9W8V7T6S5R4Q3P2";
        assert_eq!(
            ClientMessage::parse(&format!(r#"{{"action":"subscribe","post_ids":["{id}"]}}"#)).unwrap(),
            ClientMessage::Subscribe {
                post_ids: vec![id.into()]
            }
        );
        assert_eq!(
            ClientMessage::parse(r#"{"action":"ping"}"#).unwrap(),
            ClientMessage::Ping {}
        );
        for bad in [
            "not json",
            r#"{"action":"dance"}"#,
            r#"{"action":"subscribe"}"#,
            r#"{"action":"subscribe","post_ids":[]}"#,
            r#"{"action":"subscribe","post_ids":["nope"]}"#,
            r#"{"action":"ping","extra":1}"#,
            "[]",
        ] {
            assert_eq!(
                ClientMessage::parse(bad).unwrap_err().code(),
                "invalid_message",
                "{bad}"
            );
        }
        let too_many: Vec<String> = (0..=MAX_POSTS_PER_MESSAGE).map(|_| format!("\"{id}\"")).collect();
        let message = format!(r#"{{"action":"subscribe","post_ids":[{}]}}"#, too_many.join(","));
        assert!(ClientMessage::parse(&message).is_err());
    }

    #[test]
    fn server_messages_carry_their_type() {
        let m = serde_json::to_value(ServerMessage::LikeUpdated {
            post_id: "p".into(),
            like_count: 3,
        })
        .unwrap();
        assert_eq!(
            m,
            serde_json::json!({"type": "like.updated", "post_id": "p", "like_count": 3})
        );
        assert_eq!(
            serde_json::to_value(ServerMessage::Pong).unwrap(),
            serde_json::json!({"type": "pong"})
        );
    }
}
