//! What the gateway and the WebSocket stand-in share: the functions they invoke directly,
//! and plain JSON answers.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use shared::handlers::App;

/// The functions behind the WebSocket routes, and the bucket the CDN stand-in serves.
pub struct Functions {
    pub ws_connect: Arc<App>,
    pub ws_disconnect: Arc<App>,
    pub ws_message: Arc<App>,
    pub media: shared::storage::Bucket,
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
