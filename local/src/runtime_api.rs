//! A minimal Lambda Runtime API (2018-06-01): what a function binary talks to in Lambda. The
//! cold-start benchmark and the tests that start every function binary with the environment
//! template.yaml gives it run the real binaries against it.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;

/// The deadline each invocation is given.
const DEADLINE: Duration = Duration::from_secs(30);

/// The variables Lambda sets for every function (besides the template's and credentials).
pub fn lambda_variables(function: &str, runtime_api: SocketAddr) -> Vec<(String, String)> {
    [
        ("AWS_LAMBDA_RUNTIME_API", runtime_api.to_string()),
        ("AWS_LAMBDA_FUNCTION_NAME", function.to_string()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
        ("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{function}")),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "local".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// What one function process did against the Runtime API, and the events it is still to get.
#[derive(Default)]
pub struct Timeline {
    /// Each `GET /next` arrival.
    pub next_calls: Vec<Instant>,
    /// When each event was handed over.
    pub delivered: Vec<Instant>,
    /// When each response was posted.
    pub responded: Vec<Instant>,
    /// Each response body (JSON), in order.
    pub responses: Vec<Value>,
    /// Invocation and init errors the runtime posted.
    pub errors: Vec<String>,
    pub events: VecDeque<Value>,
}

pub type Shared<T> = Arc<Mutex<T>>;

pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn reply(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
}

/// The Runtime API (2018-06-01) as a function's runtime client uses it.
async fn runtime_api(req: Request<Incoming>, timeline: Shared<Timeline>) -> Response<Full<Bytes>> {
    let now = Instant::now();
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    match (method, path.as_str()) {
        (Method::GET, "/2018-06-01/runtime/invocation/next") => {
            let event = {
                let mut t = lock(&timeline);
                t.next_calls.push(now);
                let event = t.events.pop_front();
                if event.is_some() {
                    t.delivered.push(Instant::now());
                }
                event
            };
            let Some(event) = event else {
                // No more events: the runtime waits here until it is stopped, as in Lambda.
                std::future::pending::<()>().await;
                return reply(StatusCode::NO_CONTENT, "");
            };
            let n = lock(&timeline).delivered.len();
            let deadline = std::time::SystemTime::now() + DEADLINE;
            let deadline_ms = deadline
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or_default();
            let mut response = reply(StatusCode::OK, event.to_string());
            let headers = response.headers_mut();
            let pairs = [
                ("lambda-runtime-aws-request-id", format!("cold-start-{n}")),
                ("lambda-runtime-deadline-ms", deadline_ms.to_string()),
                (
                    "lambda-runtime-invoked-function-arn",
                    "arn:aws:lambda:us-east-1:123456789012:function:bench".to_string(),
                ),
                (
                    "lambda-runtime-trace-id",
                    "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0".to_string(),
                ),
                ("content-type", "application/json".to_string()),
            ];
            for (name, value) in pairs {
                if let Ok(value) = value.parse() {
                    headers.insert(name, value);
                }
            }
            response
        }
        (Method::POST, p) if p.starts_with("/2018-06-01/runtime/invocation/") && p.ends_with("/response") => {
            let mut t = lock(&timeline);
            t.responded.push(now);
            t.responses.push(serde_json::from_slice(&body).unwrap_or(Value::Null));
            drop(t);
            reply(StatusCode::ACCEPTED, r#"{"status":"OK"}"#)
        }
        (Method::POST, p) if p.ends_with("/error") => {
            lock(&timeline)
                .errors
                .push(format!("{p}: {}", String::from_utf8_lossy(&body)));
            reply(StatusCode::ACCEPTED, r#"{"status":"OK"}"#)
        }
        _ => reply(StatusCode::NOT_FOUND, "unknown Runtime API path"),
    }
}

/// Serves the Runtime API for one function process on a free loopback port.
pub async fn serve_runtime_api(
    timeline: Shared<Timeline>,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let timeline = timeline.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let timeline = timeline.clone();
                    async move { Ok::<_, std::convert::Infallible>(runtime_api(req, timeline).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok((addr, task))
}
