//! Lambda authorizer for the HTTP API (and WebSocket `$connect`): verifies the JWT.
#[tokio::main]
async fn main() -> Result<(), forum_api::lambda::Error> {
    forum_api::lambda::serve_authorizer().await
}
