//! Pushes messages to WebSocket connections through API Gateway's `@connections` API.

use forum_domain::messages::ServerMessage;
use futures::StreamExt;

use crate::aws::Deferred;

/// Sends in flight at once per fan-out.
pub const SEND_CONCURRENCY: usize = 32;
/// Sends in flight from one container at most, across the fan-outs it runs at once
/// (`stream-fanout` handles a batch's partitions side by side).
pub const MAX_SENDS_IN_FLIGHT: usize = 64;

/// Pushes messages to WebSocket connections through the `@connections` API.
#[derive(Clone, Debug)]
pub struct Notifier {
    client: Deferred<aws_sdk_apigatewaymanagement::Client>,
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
    pub fn new(client: Deferred<aws_sdk_apigatewaymanagement::Client>) -> Self {
        Notifier {
            client,
            in_flight: std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_SENDS_IN_FLIGHT)),
        }
    }

    fn client(&self) -> &aws_sdk_apigatewaymanagement::Client {
        &self.client
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
                        .client()
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
        let _ = self.client().get_connection().connection_id("warm-up").send().await;
    }

    /// Closes a socket from the server's side (`DELETE @connections/{id}`); API Gateway then
    /// runs `$disconnect`. A connection already gone is fine; any other failure (a role that may
    /// not DELETE, a throttle) is logged and returned.
    pub async fn close(&self, connection: &str) -> Result<(), String> {
        match self.client().delete_connection().connection_id(connection).send().await {
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
