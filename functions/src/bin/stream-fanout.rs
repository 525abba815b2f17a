//! Lambda on the table's stream: live notifications and the clean-up of deleted posts.
#[tokio::main]
async fn main() -> Result<(), forum_api::lambda::Error> {
    forum_api::lambda::serve_stream_fanout().await
}
