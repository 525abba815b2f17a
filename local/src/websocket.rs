//! The WebSocket API emulation: `ws://<host>/ws?token=<jwt>` on the HTTP port. `$connect` runs
//! the authorizer (IAM-policy style, like API Gateway's WebSocket APIs) and then `ws-connect`;
//! each text message runs `ws-message` (`$default`); a close runs `ws-disconnect`.
//! `@connections` (POST/GET/DELETE) is served on the same port for the management client.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::invoke;
use bytes::Bytes;
use forum_api::auth;
use forum_api::handlers;
use futures::{SinkExt, StreamExt};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use crate::respond::{Functions, plain};

/// Open connections: what `@connections` posts to.
#[derive(Default)]
pub struct Connections {
    open: Mutex<HashMap<String, ConnectionHandle>>,
}

struct ConnectionHandle {
    outbound: mpsc::UnboundedSender<Message>,
    connected_at: String,
    source_ip: String,
}

fn response(status: u16, body: Value) -> hyper::Response<Full<Bytes>> {
    let mut resp = hyper::Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

impl Connections {
    /// `@connections/{id}`: POST sends the body as a text frame, GET describes, DELETE closes.
    /// An unknown id is `410 Gone`, as API Gateway answers.
    pub fn manage(&self, method: &http::Method, id: &str, body: Bytes) -> hyper::Response<Full<Bytes>> {
        let Ok(open) = self.open.lock() else {
            return plain(500, r#"{"message":"lock"}"#);
        };
        let Some(handle) = open.get(id) else {
            let mut resp = response(
                410,
                json!({ "__type": "GoneException", "message": format!("connection {id} is gone") }),
            );
            resp.headers_mut()
                .insert("x-amzn-errortype", http::HeaderValue::from_static("GoneException"));
            return resp;
        };
        match *method {
            http::Method::POST => {
                let text = String::from_utf8_lossy(&body).to_string();
                if handle.outbound.send(Message::text(text)).is_err() {
                    let mut resp = response(410, json!({ "__type": "GoneException", "message": "gone" }));
                    resp.headers_mut()
                        .insert("x-amzn-errortype", http::HeaderValue::from_static("GoneException"));
                    return resp;
                }
                response(200, json!({}))
            }
            http::Method::GET => response(
                200,
                json!({ "connectedAt": handle.connected_at, "lastActiveAt": handle.connected_at, "identity": { "sourceIp": handle.source_ip } }),
            ),
            http::Method::DELETE => {
                let _ = handle.outbound.send(Message::Close(None));
                response(204, json!({}))
            }
            _ => plain(405, r#"{"message":"Method Not Allowed"}"#),
        }
    }
}

fn ws_event(connection_id: &str, route_key: &str, event_type: &str, host: &str, extra: Value) -> Value {
    let now = chrono::Utc::now();
    let mut event = json!({
        "requestContext": {
            "routeKey": route_key,
            "eventType": event_type,
            "connectionId": connection_id,
            "messageId": ulid::Ulid::new().to_string(),
            "requestId": ulid::Ulid::new().to_string(),
            "domainName": host,
            "stage": "live",
            "apiId": "forumlocalws",
            "connectedAt": now.timestamp_millis(),
            "requestTimeEpoch": now.timestamp_millis(),
        },
        "isBase64Encoded": false,
    });
    if let (Some(target), Some(extra)) = (event.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            if k == "authorizer" {
                target["requestContext"]["authorizer"] = v.clone();
            } else {
                target.insert(k.clone(), v.clone());
            }
        }
    }
    event
}

/// Handles `GET /ws?token=...` with an upgrade: authorize, `$connect`, then run the connection.
pub async fn upgrade(
    functions: Arc<Functions>,
    verifier: Option<&auth::TokenVerifier>,
    connections: Arc<Connections>,
    mut req: hyper::Request<Incoming>,
    peer: std::net::SocketAddr,
) -> hyper::Response<Full<Bytes>> {
    let Some(key) = req.headers().get("sec-websocket-key").cloned() else {
        return plain(400, r#"{"message":"expected a WebSocket upgrade"}"#);
    };
    let query: HashMap<String, String> = url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
        .into_owned()
        .collect();
    let host = req
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1")
        .to_string();
    // API Gateway answers a missing identity source itself.
    let Some(token) = query.get("token").filter(|t| !t.is_empty()) else {
        return plain(401, r#"{"message":"Unauthorized"}"#);
    };
    let Some(verifier) = verifier else {
        return plain(500, r#"{"message":"Internal Server Error"}"#);
    };
    let connection_id = format!("{}=", &ulid::Ulid::new().to_string()[10..]);
    let auth_event = json!({
        "type": "REQUEST",
        "methodArn": "arn:aws:execute-api:us-east-1:000000000000:forumlocalws/live/$connect",
        "queryStringParameters": { "token": token },
        "headers": {},
        "requestContext": { "routeKey": "$connect", "eventType": "CONNECT", "connectionId": connection_id },
    });
    let auth_event = match invoke::event(auth_event) {
        Ok(event) => event,
        Err(e) => return plain(500, json!({ "message": e }).to_string()),
    };
    let policy = match auth::authorize_event(verifier, &auth_event).await {
        Ok(p) => invoke::answer(&p),
        Err(e) => return plain(500, json!({ "message": e.to_string() }).to_string()),
    };
    if policy["policyDocument"]["Statement"][0]["Effect"] != "Allow" {
        return plain(403, r#"{"message":"Forbidden"}"#);
    }
    let mut context = policy["context"].clone();
    context["principalId"] = policy["principalId"].clone();
    let connect = ws_event(
        &connection_id,
        "$connect",
        "CONNECT",
        &host,
        json!({ "authorizer": context, "queryStringParameters": query }),
    );
    let status = match invoke::event(connect) {
        Ok(connect) => {
            let answer = invoke::answer(&handlers::ws_connect(&functions.ws_connect, &connect).await);
            answer["statusCode"].as_u64().unwrap_or(500) as u16
        }
        Err(_) => 500,
    };
    if status != 200 {
        return plain(status, r#"{"message":"connection refused"}"#);
    }

    let (outbound, mut outbound_rx) = mpsc::unbounded_channel::<Message>();
    if let Ok(mut open) = connections.open.lock() {
        open.insert(
            connection_id.clone(),
            ConnectionHandle {
                outbound,
                connected_at: chrono::Utc::now().to_rfc3339(),
                source_ip: peer.ip().to_string(),
            },
        );
    }
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let disconnect = |functions: Arc<Functions>, connections: Arc<Connections>, id: String, host: String| async move {
            if let Ok(mut open) = connections.open.lock() {
                open.remove(&id);
            }
            if let Ok(event) = invoke::event(ws_event(&id, "$disconnect", "DISCONNECT", &host, json!({}))) {
                handlers::ws_disconnect(&functions.ws_disconnect, &event).await;
            }
        };
        let upgraded = match upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!(error = %e, "WebSocket upgrade failed");
                disconnect(functions, connections, connection_id, host).await;
                return;
            }
        };
        let socket = WebSocketStream::from_raw_socket(hyper_util::rt::TokioIo::new(upgraded), Role::Server, None).await;
        let (mut sink, mut stream) = socket.split();
        loop {
            tokio::select! {
                incoming = stream.next() => match incoming {
                    Some(Ok(Message::Text(text))) => {
                        let event = ws_event(&connection_id, "$default", "MESSAGE", &host, json!({ "body": text.to_string() }));
                        if let Ok(event) = invoke::event(event) {
                            handlers::ws_message(&functions.ws_message, &event).await;
                        }
                    }
                    Some(Ok(Message::Binary(_))) => {
                        let event = ws_event(&connection_id, "$default", "MESSAGE", &host, json!({ "body": "" }));
                        if let Ok(event) = invoke::event(event) {
                            handlers::ws_message(&functions.ws_message, &event).await;
                        }
                    }
                    Some(Ok(Message::Ping(data))) => {
                        let _ = sink.send(Message::Pong(data)).await;
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => {}
                },
                outgoing = outbound_rx.recv() => match outgoing {
                    Some(Message::Close(frame)) => {
                        let _ = sink.send(Message::Close(frame)).await;
                        break;
                    }
                    Some(message) => {
                        if sink.send(message).await.is_err() {
                            break;
                        }
                    }
                    None => break,
                },
            }
        }
        disconnect(functions, connections, connection_id, host).await;
    });

    let mut resp = hyper::Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
    let headers = resp.headers_mut();
    headers.insert(http::header::UPGRADE, http::HeaderValue::from_static("websocket"));
    headers.insert(http::header::CONNECTION, http::HeaderValue::from_static("Upgrade"));
    if let Ok(accept) = http::HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        headers.insert("sec-websocket-accept", accept);
    }
    resp
}
