//! WebSocket listeners: connected before the load starts, each records every `post.created`
//! and `comment.created` it hears, and when, so the audit can tell delivered-once from lost or
//! duplicated and measure delivery latency under load.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

/// One event heard: which listener, the post or comment id it announced, and when.
#[derive(Clone)]
pub struct Receipt {
    pub listener: usize,
    pub id: String,
    pub at: Instant,
}

pub struct Listeners {
    pub count: usize,
    receipts: Arc<Mutex<Vec<Receipt>>>,
    /// Why a listener's socket ended early, if it did.
    closed: Arc<Mutex<Vec<String>>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Listeners {
    /// Connects one listener per token, each subscribed to `follow` (when not empty), and
    /// returns once every one is connected and subscribed.
    pub async fn connect(ws_url: &str, tokens: &[&str], follow: &[String]) -> Result<Listeners, String> {
        let receipts = Arc::new(Mutex::new(Vec::new()));
        let closed = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (listener, token) in tokens.iter().enumerate() {
            let (mut socket, _) = tokio_tungstenite::connect_async(format!("{ws_url}?token={token}"))
                .await
                .map_err(|e| format!("listener {listener} could not connect: {e}"))?;
            if !follow.is_empty() {
                let ask = json!({"action": "subscribe", "post_ids": follow}).to_string();
                socket
                    .send(Message::text(ask))
                    .await
                    .map_err(|e| format!("listener {listener}: {e}"))?;
                loop {
                    match socket.next().await {
                        Some(Ok(Message::Text(text))) => {
                            let message: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                            if message["type"] == "subscribed" {
                                break;
                            }
                            if message["type"] == "error" {
                                return Err(format!("listener {listener} could not subscribe: {text}"));
                            }
                        }
                        Some(Ok(_)) => {}
                        other => return Err(format!("listener {listener} lost its socket: {other:?}")),
                    }
                }
            }
            let (receipts, closed) = (receipts.clone(), closed.clone());
            tasks.push(tokio::spawn(async move {
                while let Some(frame) = socket.next().await {
                    let text = match frame {
                        Ok(Message::Text(text)) => text,
                        Ok(Message::Close(reason)) => {
                            if let Ok(mut closed) = closed.lock() {
                                closed.push(format!("listener {listener} closed by the server: {reason:?}"));
                            }
                            return;
                        }
                        Ok(_) => continue,
                        Err(e) => {
                            if let Ok(mut closed) = closed.lock() {
                                closed.push(format!("listener {listener} failed: {e}"));
                            }
                            return;
                        }
                    };
                    let at = Instant::now();
                    let message: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                    let id = match message["type"].as_str() {
                        Some("post.created") => message["post"]["id"].as_str(),
                        Some("comment.created") => message["comment"]["id"].as_str(),
                        _ => None,
                    };
                    if let (Some(id), Ok(mut receipts)) = (id, receipts.lock()) {
                        receipts.push(Receipt {
                            listener,
                            id: id.to_string(),
                            at,
                        });
                    }
                }
            }));
        }
        Ok(Listeners {
            count: tokens.len(),
            receipts,
            closed,
            tasks,
        })
    }

    pub fn receipts(&self) -> Vec<Receipt> {
        self.receipts.lock().map(|r| r.clone()).unwrap_or_default()
    }

    pub fn closed(&self) -> Vec<String> {
        self.closed.lock().map(|c| c.clone()).unwrap_or_default()
    }

    pub fn stop(self) {
        for task in self.tasks {
            task.abort();
        }
    }
}
