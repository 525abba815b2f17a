//! What the gateway and the WebSocket stand-in share: the functions they invoke directly,
//! and plain JSON answers.

use std::sync::Arc;

use bytes::Bytes;
use forum_api::handlers::App;
use http_body_util::Full;

/// The functions behind the WebSocket routes, and the bucket the CDN stand-in serves.
pub struct Functions {
    pub ws_connect: Arc<App>,
    pub ws_disconnect: Arc<App>,
    pub ws_message: Arc<App>,
    pub media: forum_store::bucket::Bucket,
}

/// Runs one request's work so that a panic in it answers that request alone: 500 in the API's
/// error shape, and the server (and every other request) goes on. Without this, a panic would
/// end the connection's task, and under `panic = "abort"` the whole process.
pub async fn guarded<F>(work: F) -> hyper::Response<Full<Bytes>>
where
    F: std::future::Future<Output = hyper::Response<Full<Bytes>>>,
{
    use futures::FutureExt;
    match std::panic::AssertUnwindSafe(work).catch_unwind().await {
        Ok(response) => response,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            let request_id = ulid::Ulid::new().to_string();
            let answer =
                forum_api::ApiError::Internal(format!("a request's handler panicked: {what}")).to_response(&request_id);
            let (mut parts, body) = answer.into_parts();
            let bytes = match body {
                lambda_http::Body::Text(t) => Bytes::from(t),
                lambda_http::Body::Binary(b) => Bytes::from(b),
                _ => Bytes::new(),
            };
            if let Ok(value) = http::HeaderValue::from_str(&request_id) {
                parts.headers.insert("x-request-id", value);
            }
            hyper::Response::from_parts(parts, Full::new(bytes))
        }
    }
}

/// A JSON body (as text) with a status.
pub fn plain(status: u16, body: impl Into<Bytes>) -> hyper::Response<Full<Bytes>> {
    let mut resp = hyper::Response::new(Full::new(body.into()));
    *resp.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_request_is_answered_500_in_the_apis_shape() {
        let answer = guarded(async { panic!("boom") }).await;
        assert_eq!(answer.status(), 500);
        let body: serde_json::Value = {
            use http_body_util::BodyExt;
            serde_json::from_slice(&answer.into_body().collect().await.unwrap().to_bytes()).unwrap()
        };
        assert_eq!(body["error"]["code"], "internal");
        assert_eq!(body["error"]["message"], "internal error", "no detail leaves");
        let fine = guarded(async { plain(200, "{}") }).await;
        assert_eq!(fine.status(), 200);
    }
}
