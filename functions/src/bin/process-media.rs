//! Lambda for S3 ObjectCreated on `uploads/`: turns an upload into sanitized, CDN-ready images.
#[tokio::main]
async fn main() -> Result<(), forum_api::lambda::Error> {
    forum_api::lambda::serve_process_media().await
}
