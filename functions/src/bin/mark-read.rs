//! Lambda for the `mark-read` route: wiring only, the handler lives in `forum-api`.
#[tokio::main]
async fn main() -> Result<(), forum_api::lambda::Error> {
    forum_api::lambda::serve_http(forum_api::Route::MarkRead).await
}
