//! The media bucket: the only place that knows its keys (`uploads/<id>` for what clients send,
//! `media/<id>/<variant>.<ext>` for what the CDN serves) and how media URLs are formed.

use forum_domain::limits;
use std::time::Duration;

use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use serde::Serialize;

use crate::StoreError;
use crate::aws::Deferred;
use forum_media::{MediaType, VARIANTS};

/// Processed media never changes under its URL: browsers and the CDN may keep it forever.
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// How long a presigned upload URL is valid.
pub const PRESIGN_TTL: Duration = limits::PRESIGN_TTL_SECS.duration();

pub fn upload_key(media_id: &str) -> String {
    format!("uploads/{media_id}")
}

/// The media id an `uploads/` key names, if it is one.
pub fn media_id_of_upload(key: &str) -> Option<&str> {
    let id = key.strip_prefix("uploads/")?;
    (id.len() == 26 && ulid::Ulid::from_string(id).is_ok()).then_some(id)
}

pub fn variant_key(media_id: &str, variant: &str, kind: MediaType) -> String {
    format!("media/{media_id}/{variant}.{}", kind.extension())
}

/// A presigned upload: what the client sends, exactly.
#[derive(Debug, Serialize)]
pub struct PresignedUpload {
    pub url: String,
    pub method: String,
    /// Headers the signature covers; the client must send them unchanged.
    pub headers: std::collections::BTreeMap<String, String>,
    pub expires_at: String,
}

#[derive(Clone, Debug)]
pub struct Bucket {
    client: Deferred<aws_sdk_s3::Client>,
    name: String,
    public_base: String,
}

impl Bucket {
    pub fn new(client: Deferred<aws_sdk_s3::Client>, name: impl Into<String>, public_base: impl Into<String>) -> Self {
        Bucket {
            client,
            name: name.into(),
            public_base: public_base.into(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn client(&self) -> &aws_sdk_s3::Client {
        &self.client
    }

    /// The CDN URLs of an upload's images: the display image, and each thumbnail by its bound.
    pub fn media_urls(&self, media_id: &str, kind: MediaType) -> (String, std::collections::BTreeMap<String, String>) {
        let url = |variant: &str| self.public_url(&variant_key(media_id, variant, kind));
        let thumbnails = VARIANTS
            .iter()
            .filter(|(name, _)| *name != "display")
            .map(|(name, _)| (name.to_string(), url(name)))
            .collect();
        (url("display"), thumbnails)
    }

    /// The public (CDN) URL of a `media/` key.
    pub fn public_url(&self, key: &str) -> String {
        format!("{}/{key}", self.public_base)
    }

    /// The media id and type a URL points at, if it is exactly one of this deployment's media
    /// URLs (as the upload endpoints return them: uppercase id, known variant and extension).
    pub fn media_of_url(&self, url: &str) -> Option<(String, MediaType)> {
        let rest = url.strip_prefix(&self.public_base)?.strip_prefix("/media/")?;
        let (id, file) = rest.split_once('/')?;
        let (variant, ext) = file.split_once('.')?;
        let kind = [MediaType::Jpeg, MediaType::Png]
            .into_iter()
            .find(|k| k.extension() == ext)?;
        let known_variant = VARIANTS.iter().any(|(name, _)| *name == variant);
        let valid_id = id.len() == 26
            && id.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
            && ulid::Ulid::from_string(id).is_ok();
        (known_variant && valid_id).then(|| (id.to_string(), kind))
    }

    pub async fn put(
        &self,
        key: &str,
        bytes: Vec<u8>,
        content_type: &str,
        cache_control: Option<&str>,
    ) -> Result<(), StoreError> {
        self.client()
            .put_object()
            .bucket(&self.name)
            .key(key)
            .content_type(content_type)
            .set_cache_control(cache_control.map(str::to_string))
            .body(ByteStream::from(bytes))
            .send()
            .await?;
        Ok(())
    }

    /// An object's bytes, refusing to read more than `max_bytes`. `None` if it does not exist.
    pub async fn get(&self, key: &str, max_bytes: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let out = match self.client().get_object().bucket(&self.name).key(key).send().await {
            Ok(out) => out,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let too_large = |size: u64| StoreError::TooLarge {
            key: key.to_string(),
            size,
            max: max_bytes,
        };
        if let Some(size) = out.content_length().filter(|n| *n as u64 > max_bytes) {
            return Err(too_large(size as u64));
        }
        let bytes = out
            .body
            .collect()
            .await
            .map_err(|e| StoreError::Unavailable(format!("reading {key} from S3: {e}")))?
            .into_bytes();
        if bytes.len() as u64 > max_bytes {
            return Err(too_large(bytes.len() as u64));
        }
        Ok(Some(bytes.to_vec()))
    }

    /// Opens a pooled connection to the bucket's endpoint during a cold start (see
    /// `Table::warm_up`): a HEAD of a key no upload ever has; the answer does not matter.
    pub async fn warm_up(&self) {
        let _ = self
            .client()
            .head_object()
            .bucket(&self.name)
            .key("uploads/warm-up")
            .send()
            .await;
    }

    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.client().delete_object().bucket(&self.name).key(key).send().await?;
        Ok(())
    }

    /// Deletes everything stored for an upload: what the client sent (if still there) and
    /// every variant made of it. Deleting a missing key succeeds, so this is safe to repeat.
    pub async fn delete_media(&self, media_id: &str, kind: MediaType) -> Result<(), StoreError> {
        let keys = std::iter::once(upload_key(media_id))
            .chain(VARIANTS.iter().map(|(name, _)| variant_key(media_id, name, kind)));
        futures::future::try_join_all(keys.map(|key| async move { self.delete(&key).await })).await?;
        Ok(())
    }

    /// The start of every public URL of an upload's variants.
    pub fn media_url_prefix(&self, media_id: &str) -> String {
        self.public_url(&format!("media/{media_id}/"))
    }

    /// A presigned PUT whose signature covers the content type and length: S3 refuses an
    /// upload of another type or size, or with a tampered signature. It also covers
    /// `If-None-Match: *`, so the URL creates the upload once: sent again while the first is
    /// still there (being processed) it is refused (412), and a slow first PUT can no longer
    /// replace a faster second one's object while its images are being made.
    pub async fn presign_put(&self, key: &str, kind: MediaType, length: u64) -> Result<PresignedUpload, StoreError> {
        let config = PresigningConfig::expires_in(PRESIGN_TTL).map_err(|e| StoreError::Internal(e.to_string()))?;
        let request = self
            .client()
            .put_object()
            .bucket(&self.name)
            .key(key)
            .content_type(kind.content_type())
            .content_length(length as i64)
            .if_none_match("*")
            .presigned(config)
            .await
            .map_err(|e| StoreError::Internal(format!("presigning: {e}")))?;
        let headers = request
            .headers()
            .filter(|(name, _)| !name.eq_ignore_ascii_case("host"))
            .map(|(name, value)| (canonical_header(name), value.to_string()))
            .collect();
        let expires_at = (chrono::Utc::now() + PRESIGN_TTL).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        Ok(PresignedUpload {
            url: request.uri().to_string(),
            method: request.method().to_string(),
            headers,
            expires_at,
        })
    }
}

/// `content-type` -> `Content-Type`, for people reading the answer.
fn canonical_header(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join("-")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket() -> Bucket {
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .build();
        Bucket::new(
            crate::aws::deferred(|| aws_sdk_s3::Client::from_conf(conf)),
            "b",
            "https://cdn.example.com",
        )
    }

    #[test]
    fn media_urls_round_trip_and_nothing_else_is_ours() {
        let b = bucket();
        let id = "01JDQ8Z6Y0X9W8V7T6S5R4Q3P2";
        let url = b.public_url(&variant_key(id, "display", MediaType::Jpeg));
        assert_eq!(url, format!("https://cdn.example.com/media/{id}/display.jpg"));
        assert_eq!(b.media_of_url(&url), Some((id.to_string(), MediaType::Jpeg)));
        assert_eq!(
            b.media_of_url(&format!("https://cdn.example.com/media/{id}/320.png")),
            Some((id.to_string(), MediaType::Png))
        );
        for other in [
            format!("https://evil.example.com/media/{id}/display.jpg"),
            format!("https://cdn.example.com/uploads/{id}"),
            format!("https://cdn.example.com/media/{id}/original.jpg"),
            format!("https://cdn.example.com/media/{id}/display.gif"),
            "https://cdn.example.com/media/not-an-id/display.jpg".to_string(),
            format!("https://cdn.example.com.evil.com/media/{id}/display.jpg"),
            format!("https://cdn.example.com/media/{}/display.jpg", id.to_ascii_lowercase()),
        ] {
            assert_eq!(b.media_of_url(&other), None, "{other}");
        }
    }

    #[test]
    fn upload_keys_name_media_ids() {
        let id = "01JDQ8Z6Y0X9W8V7T6S5R4Q3P2";
        assert_eq!(media_id_of_upload(&upload_key(id)), Some(id));
        assert_eq!(media_id_of_upload("uploads/../etc"), None);
        assert_eq!(media_id_of_upload("media/x"), None);
        assert_eq!(canonical_header("content-type"), "Content-Type");
    }
}
