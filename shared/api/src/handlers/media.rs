//! Media routes (`POST /upload/`, `POST /upload/presign/`, `GET /media/{id}/`) and the
//! `process-media` trigger that turns an upload into sanitized, CDN-ready images.

use std::collections::BTreeMap;

use aws_lambda_events::s3::S3Event;
use lambda_http::{Body, Request, Response};
use serde::{Deserialize, Serialize};

use super::App;
use crate::auth::Caller;
use crate::error::ApiError;
use std::sync::Arc;

use crate::http_api::{self, json, json_body, json_text, path_id};
use forum_domain::model::Profile;
use forum_domain::model::{Media, MediaStatus, new_id_with_timestamp};
use forum_media::{self as media, MAX_DIRECT_UPLOAD_BYTES, MAX_UPLOAD_BYTES, MediaError, MediaType};
use forum_store::bucket::{IMMUTABLE, PresignedUpload, media_id_of_upload, upload_key, variant_key};
use forum_store::idempotency::{Idempotency, RenderAnswer, StoredAnswer};
use forum_store::{RateAction, RateToken, StoreError};

/// Multipart framing around the file: boundaries and part headers.
const MULTIPART_OVERHEAD: u64 = 64 * 1024;

/// An upload as the API shows it. The URLs are fixed from the start; they serve once `status`
/// is `ready`.
#[derive(Debug, Serialize)]
struct MediaView {
    id: String,
    /// The sanitized display image: what a post's `media_url` should be.
    url: String,
    status: MediaStatus,
    content_type: &'static str,
    width: Option<u32>,
    height: Option<u32>,
    /// Thumbnail URLs by longest side: `1280`, `640`, `320`.
    thumbnails: BTreeMap<String, String>,
    reason: Option<String>,
    created_at: String,
}

fn media_view(app: &App, media: Media) -> MediaView {
    let (url, thumbnails) = app.bucket.media_urls(&media.id, media.media_type);
    MediaView {
        url,
        thumbnails,
        id: media.id,
        status: media.status,
        content_type: media.media_type.content_type(),
        width: media.width,
        height: media.height,
        reason: media.reason,
        created_at: media.created_at,
    }
}

/// Runs CPU-heavy image work off the async threads.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError::Internal(format!("image worker: {e}")))
}

/// Reads the `file` field of a multipart body.
async fn multipart_file(req: &Request) -> Result<Vec<u8>, ApiError> {
    let content_type = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.to_ascii_lowercase().starts_with("multipart/form-data") {
        return Err(ApiError::UnsupportedMediaType(
            "send the image as multipart/form-data with a `file` field".into(),
        ));
    }
    let boundary = multer::parse_boundary(content_type)
        .map_err(|e| ApiError::bad_request("invalid_multipart", format!("multipart body: {e}")))?;
    let body: &[u8] = req.body().as_ref();
    if body.len() as u64 > MAX_DIRECT_UPLOAD_BYTES + MULTIPART_OVERHEAD {
        return Err(MediaError::TooLarge(body.len() as u64, MAX_DIRECT_UPLOAD_BYTES).into());
    }
    let stream = futures::stream::once(std::future::ready(Ok::<_, std::io::Error>(
        bytes::Bytes::copy_from_slice(body),
    )));
    let mut multipart = multer::Multipart::new(stream, boundary);
    let bad = |e: multer::Error| ApiError::bad_request("invalid_multipart", format!("multipart body: {e}"));
    while let Some(field) = multipart.next_field().await.map_err(bad)? {
        if field.name() == Some("file") {
            let bytes = field.bytes().await.map_err(bad)?;
            if bytes.is_empty() {
                return Err(ApiError::bad_request("missing_file", "the `file` field is empty"));
            }
            return Ok(bytes.to_vec());
        }
    }
    Err(ApiError::bad_request(
        "missing_file",
        "the multipart body has no `file` field",
    ))
}

/// `POST /upload/`: a JPEG or PNG of at most 4 MiB, checked in full before anything is stored;
/// 201 with the media (pending until `process-media` has made its images).
pub async fn upload(app: &App, req: &Request, caller: &Caller) -> Result<Response<Body>, ApiError> {
    let file = multipart_file(req).await?;
    // A retry is known by its file: the multipart boundary around it differs on every send. A
    // retry of an upload that was stored is answered from its key, without decoding again.
    let key = http_api::request_key(req, &file)?;
    let attempt = app.rate_token(caller, RateAction::Upload);
    // A retry's earlier answer comes first: a stored upload's retry is answered as it was,
    // whatever its window or standing now, and takes no token.
    if let Some(key) = &key {
        app.table.earlier_answer(&caller.user_id, key, attempt.now).await?;
    }
    // The decode is what an upload costs, stored or refused: its token is taken before it,
    // with the uploader's standing, so a suspended uploader buys no decode, nor does one whose
    // window is spent, nor uploads sent at once past the window's last token (a read of the
    // window let them all through to their decodes).
    app.table.charge_writer(&attempt).await?;
    let budget = app.decode_budget;
    let verified = blocking(move || media::verify(&file, MAX_DIRECT_UPLOAD_BYTES, budget).map(|p| (file, p))).await?;
    let (file, probe) = verified?;
    let (id, created_at) = new_id_with_timestamp();
    let record = Media {
        id: id.clone(),
        user_id: caller.user_id.clone(),
        status: MediaStatus::Pending,
        media_type: probe.media_type,
        size: file.len() as u64,
        created_at,
        width: None,
        height: None,
        reason: None,
        post_id: None,
    };
    let view = json_text(&media_view(app, record.clone()));
    let render: Arc<RenderAnswer> = Arc::new(move |_: Option<&Profile>| StoredAnswer {
        status: 201,
        body: view.clone(),
        location: None,
    });
    let rate = RateToken {
        idempotency: key.map(|key| Idempotency {
            key,
            render: render.clone(),
        }),
        ..attempt
    };
    app.table.create_media(&record, &rate, true).await?;
    if let Err(err) = app
        .bucket
        .put(&upload_key(&id), file, probe.media_type.content_type(), None)
        .await
    {
        // Leave no pending record behind an upload that never happened (failing that, it stays
        // pending until it expires, 24 h later, and nothing can claim it meanwhile), and no key
        // that would answer a retry with a 201 for it.
        if let Err(e) = app.table.finish_media(&id, Err("the upload could not be stored")).await {
            tracing::warn!(media_id = %id, error = %e, "a media record stays pending after a failed upload");
        }
        if let Some(idempotency) = &rate.idempotency
            && let Err(e) = app.table.forget_key(&caller.user_id, idempotency).await
        {
            tracing::warn!(media_id = %id, error = %e, "a retry of this failed upload would be answered 201");
        }
        return Err(err.into());
    }
    Ok(http_api::created(&render(None)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PresignBody {
    content_type: String,
    content_length: u64,
}

#[derive(Serialize)]
struct PresignView {
    #[serde(flatten)]
    media: MediaView,
    upload: PresignedUpload,
}

/// `POST /upload/presign/`: a presigned PUT straight to S3 for up to 15 MiB, with the type and
/// length signed; 201 with the media it will become and the upload to send.
pub async fn presign_upload(app: &App, req: &Request, caller: &Caller) -> Result<Response<Body>, ApiError> {
    let body: PresignBody = json_body(req)?;
    let kind = MediaType::from_content_type(&body.content_type).ok_or(MediaError::UnsupportedType)?;
    if body.content_length == 0 {
        return Err(ApiError::bad_request(
            "invalid_request",
            "`content_length` must be at least 1",
        ));
    }
    if body.content_length > MAX_UPLOAD_BYTES {
        return Err(MediaError::TooLarge(body.content_length, MAX_UPLOAD_BYTES).into());
    }
    let (id, created_at) = new_id_with_timestamp();
    let record = Media {
        id: id.clone(),
        user_id: caller.user_id.clone(),
        status: MediaStatus::Pending,
        media_type: kind,
        size: body.content_length,
        created_at,
        width: None,
        height: None,
        reason: None,
        post_id: None,
    };
    let upload = app
        .bucket
        .presign_put(&upload_key(&id), kind, body.content_length)
        .await?;
    let view = json_text(&PresignView {
        media: media_view(app, record.clone()),
        upload,
    });
    // A keyed retry gets the same upload to send (valid until its `expires_at`).
    let render: Arc<RenderAnswer> = Arc::new(move |_: Option<&Profile>| StoredAnswer {
        status: 201,
        body: view.clone(),
        location: None,
    });
    let rate = app.create_token(req, caller, RateAction::Upload, &render)?;
    app.table.create_media(&record, &rate, false).await?;
    Ok(http_api::created(&render(None)))
}

/// `GET /media/{id}/`: the caller's upload and what became of it. Others' uploads are 404.
pub async fn get_media(app: &App, req: &Request, caller: &Caller) -> Result<Response<Body>, ApiError> {
    let id = path_id(req, "id", "media")?;
    let record = app
        .table
        .get_media(&id)
        .await?
        .filter(|m| m.user_id == caller.user_id)
        .ok_or_else(|| ApiError::NotFound("media not found".into()))?;
    Ok(json(200, &media_view(app, record)))
}

/// `process-media`: for each object created under `uploads/`, judge and process it, write
/// the variants under `media/<id>/` (immutable caching), record the outcome and delete the
/// upload. Safe to run twice on the same event: a decided upload is only cleaned up.
/// An `Err` (a dependency failed) makes Lambda retry the event.
pub async fn process_uploads(app: &App, event: S3Event) -> Result<(), ApiError> {
    for record in event.records {
        let Some(raw_key) = record.s3.object.key else { continue };
        // Keys arrive URL-encoded in S3 events.
        let key: String = url::form_urlencoded::parse(format!("k={raw_key}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or(raw_key);
        process_upload(app, &key).await?;
    }
    Ok(())
}

async fn process_upload(app: &App, key: &str) -> Result<(), ApiError> {
    let Some(id) = media_id_of_upload(key) else {
        tracing::warn!(key, "ignoring an object that is not an upload");
        return Ok(());
    };
    let Some(record) = app.table.get_media(id).await? else {
        // Nobody asked for this upload: do not keep it.
        tracing::warn!(key, "deleting an upload with no media record");
        return Ok(app.bucket.delete(key).await?);
    };
    if record.status != MediaStatus::Pending {
        return Ok(app.bucket.delete(key).await?);
    }
    let outcome = match app.bucket.get(key, MAX_UPLOAD_BYTES).await {
        Ok(Some(bytes)) => match MediaType::sniff(&bytes) {
            Some(kind) if kind == record.media_type => {
                let budget = app.decode_budget;
                blocking(move || media::process(&bytes, MAX_UPLOAD_BYTES, budget))
                    .await?
                    .map_err(|e| e.to_string())
            }
            Some(_) => Err("the content is not the declared type".to_string()),
            None => Err(MediaError::UnsupportedType.to_string()),
        },
        // Already processed and deleted by an earlier delivery.
        Ok(None) => return Ok(()),
        Err(too_large @ StoreError::TooLarge { .. }) => Err(too_large.to_string()),
        Err(e) => return Err(e.into()),
    };
    match outcome {
        Ok(processed) => {
            let writes = processed.variants.into_iter().map(|variant| {
                let key = variant_key(id, variant.name, processed.media_type);
                async move {
                    app.bucket
                        .put(
                            &key,
                            variant.bytes,
                            processed.media_type.content_type(),
                            Some(IMMUTABLE),
                        )
                        .await
                }
            });
            futures::future::try_join_all(writes).await?;
            let finished = app
                .table
                .finish_media(id, Ok((processed.width, processed.height)))
                .await?;
            if !finished && app.table.get_media(id).await?.is_none() {
                // Removed while it was processed (its post deleted, or expired): the removal
                // deleted its objects before these were written, and nothing would again.
                app.bucket.delete_media(id, processed.media_type).await?;
                tracing::info!(media_id = id, "media removed while processed: its images deleted");
            } else {
                tracing::info!(
                    media_id = id,
                    width = processed.width,
                    height = processed.height,
                    "media ready"
                );
            }
        }
        Err(reason) => {
            app.table.finish_media(id, Err(&reason)).await?;
            tracing::info!(media_id = id, %reason, "media rejected");
        }
    }
    Ok(app.bucket.delete(key).await?)
}
