//! Lambda for the WebSocket API's `ws-disconnect` route: wiring only, the handler lives in `forum-api`.
#[tokio::main]
async fn main() -> Result<(), forum_api::lambda::Error> {
    forum_api::lambda::serve_ws(forum_api::lambda::WsRoute::Disconnect).await
}
