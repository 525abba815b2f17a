//! The S3 stand-in: `s3s` serving an `s3s-fs` folder on loopback, with SigV4 and presigned
//! signatures checked like S3 checks them, and an event for every completed upload, as S3
//! sends to `process-media`.

use std::path::Path;

use s3s::dto::*;
use s3s::service::S3ServiceBuilder;
use s3s::{S3, S3Request, S3Response, S3Result};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

use crate::cors::{CorsAnswer, CorsPolicy, CorsRequest};
use crate::scratch::ScratchDir;

/// An object that was created (S3's `ObjectCreated:*`).
#[derive(Clone, Debug)]
pub struct ObjectCreated {
    pub bucket: String,
    pub key: String,
    pub size: u64,
    pub event_name: &'static str,
}

/// `s3s_fs::FileSystem`, forwarding the operations the forum (and a curious developer with
/// the AWS CLI) uses, and reporting each object it creates.
struct ObservedFs {
    fs: s3s_fs::FileSystem,
    created: mpsc::UnboundedSender<ObjectCreated>,
    /// Held across a conditional PUT (`If-None-Match: *`): s3s-fs checks that the object is
    /// absent and then writes, so two at once could both create it; S3 lets one of them.
    creating: tokio::sync::Mutex<()>,
}

impl ObservedFs {
    fn report(&self, bucket: String, key: String, size: u64, event_name: &'static str) {
        let _ = self.created.send(ObjectCreated {
            bucket,
            key,
            size,
            event_name,
        });
    }
}

/// Whether a key has `.` or `..` segments. S3 keeps such keys literally (`a/../b` is its own
/// key), but a folder on disk would resolve them to another object: the stand-in answers them
/// as missing and refuses to store them, so nothing reaches a key it does not name.
fn has_dot_segments(key: &str) -> bool {
    key.split('/').any(|segment| segment == "." || segment == "..")
}

fn no_such_key(key: &str) -> s3s::S3Error {
    s3s::s3_error!(NoSuchKey, "no object under the literal key {key}")
}

fn literal_keys_only(key: &str) -> S3Result<()> {
    if has_dot_segments(key) {
        return Err(s3s::s3_error!(
            InvalidArgument,
            "the local S3 stand-in does not store keys with `.` or `..` segments"
        ));
    }
    Ok(())
}

#[async_trait::async_trait]
impl S3 for ObservedFs {
    // Forwarded unchanged (an `async_trait` impl cannot take them from a macro).
    async fn create_bucket(&self, req: S3Request<CreateBucketInput>) -> S3Result<S3Response<CreateBucketOutput>> {
        self.fs.create_bucket(req).await
    }

    async fn head_bucket(&self, req: S3Request<HeadBucketInput>) -> S3Result<S3Response<HeadBucketOutput>> {
        self.fs.head_bucket(req).await
    }

    async fn list_buckets(&self, req: S3Request<ListBucketsInput>) -> S3Result<S3Response<ListBucketsOutput>> {
        self.fs.list_buckets(req).await
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        self.fs.get_bucket_location(req).await
    }

    async fn get_object(&self, req: S3Request<GetObjectInput>) -> S3Result<S3Response<GetObjectOutput>> {
        if has_dot_segments(&req.input.key) {
            return Err(no_such_key(&req.input.key));
        }
        self.fs.get_object(req).await
    }

    async fn head_object(&self, req: S3Request<HeadObjectInput>) -> S3Result<S3Response<HeadObjectOutput>> {
        if has_dot_segments(&req.input.key) {
            return Err(no_such_key(&req.input.key));
        }
        self.fs.head_object(req).await
    }

    async fn delete_object(&self, req: S3Request<DeleteObjectInput>) -> S3Result<S3Response<DeleteObjectOutput>> {
        if has_dot_segments(&req.input.key) {
            // Deleting a key that does not exist succeeds in S3.
            return Ok(S3Response::new(DeleteObjectOutput::default()));
        }
        self.fs.delete_object(req).await
    }

    async fn delete_objects(&self, req: S3Request<DeleteObjectsInput>) -> S3Result<S3Response<DeleteObjectsOutput>> {
        for object in &req.input.delete.objects {
            literal_keys_only(&object.key)?;
        }
        self.fs.delete_objects(req).await
    }

    async fn list_objects(&self, req: S3Request<ListObjectsInput>) -> S3Result<S3Response<ListObjectsOutput>> {
        literal_keys_only(req.input.prefix.as_deref().unwrap_or_default())?;
        self.fs.list_objects(req).await
    }

    async fn list_objects_v2(&self, req: S3Request<ListObjectsV2Input>) -> S3Result<S3Response<ListObjectsV2Output>> {
        literal_keys_only(req.input.prefix.as_deref().unwrap_or_default())?;
        self.fs.list_objects_v2(req).await
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        literal_keys_only(&req.input.key)?;
        self.fs.create_multipart_upload(req).await
    }

    async fn upload_part(&self, req: S3Request<UploadPartInput>) -> S3Result<S3Response<UploadPartOutput>> {
        literal_keys_only(&req.input.key)?;
        self.fs.upload_part(req).await
    }

    async fn list_parts(&self, req: S3Request<ListPartsInput>) -> S3Result<S3Response<ListPartsOutput>> {
        self.fs.list_parts(req).await
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        self.fs.abort_multipart_upload(req).await
    }

    async fn put_object(&self, req: S3Request<PutObjectInput>) -> S3Result<S3Response<PutObjectOutput>> {
        literal_keys_only(&req.input.key)?;
        let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
        let size = req.input.content_length.unwrap_or_default().max(0) as u64;
        let out = match req.input.if_none_match.is_some() {
            true => {
                let _only = self.creating.lock().await;
                self.fs.put_object(req).await?
            }
            false => self.fs.put_object(req).await?,
        };
        self.report(bucket, key, size, "ObjectCreated:Put");
        Ok(out)
    }

    async fn copy_object(&self, req: S3Request<CopyObjectInput>) -> S3Result<S3Response<CopyObjectOutput>> {
        literal_keys_only(&req.input.key)?;
        if let CopySource::Bucket { key, .. } = &req.input.copy_source {
            literal_keys_only(key)?;
        }
        let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
        let out = self.fs.copy_object(req).await?;
        self.report(bucket, key, 0, "ObjectCreated:Copy");
        Ok(out)
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        literal_keys_only(&req.input.key)?;
        let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
        let out = self.fs.complete_multipart_upload(req).await?;
        self.report(bucket, key, 0, "ObjectCreated:CompleteMultipartUpload");
        Ok(out)
    }
}

/// CORS as S3 answers it from the bucket's rules: a preflight is answered by the first rule
/// that allows its origin, method and headers (else 403), and an actual request from an origin
/// gets the `Access-Control-*` headers of the first rule that covers it.
async fn with_bucket_cors(
    service: &s3s::service::S3Service,
    rules: &[CorsPolicy],
    req: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<s3s::Body>, s3s::HttpError> {
    let origin = match CorsRequest::read(req.method(), req.headers()) {
        CorsRequest::Preflight {
            origin,
            method,
            headers,
        } => {
            let allowed = rules
                .iter()
                .map(|rule| rule.preflight(&origin, Some(&method), headers.as_deref()))
                .find(|answer| matches!(answer, CorsAnswer::Allowed(_)));
            let mut response = hyper::Response::new(s3s::Body::empty());
            match allowed {
                Some(answer) => answer.apply(response.headers_mut()),
                None => {
                    *response.status_mut() = http::StatusCode::FORBIDDEN;
                    *response.body_mut() = s3s::Body::from(bytes::Bytes::from_static(
                        b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>AccessForbidden</Code><Message>CORSResponse: This CORS request is not allowed.</Message></Error>",
                    ));
                }
            }
            return Ok(response);
        }
        CorsRequest::Actual { origin } => Some(origin),
        CorsRequest::None => None,
    };
    let method = req.method().to_string();
    let mut response = hyper::service::Service::call(service, req).await?;
    if let Some(rule) = origin
        .as_deref()
        .and_then(|o| rules.iter().find(|rule| rule.covers(o, &method)))
    {
        rule.actual(origin.as_deref()).apply(response.headers_mut());
    }
    Ok(response)
}

/// A running S3 stand-in.
pub struct LocalS3 {
    pub endpoint: String,
    /// A throwaway root's directory, removed at shutdown (or, should the process end without
    /// one, by the next stack's start).
    scratch: Option<ScratchDir>,
    stop: Option<oneshot::Sender<()>>,
}

impl LocalS3 {
    /// Serves `root` on `listen` (port 0: a free one); created objects are sent to `created`.
    /// `scratch`, when given, holds `root` and goes at shutdown.
    pub async fn start(
        listen: std::net::SocketAddr,
        root: &Path,
        scratch: Option<ScratchDir>,
        access_key: &str,
        secret_key: &str,
        created: mpsc::UnboundedSender<ObjectCreated>,
        cors: Vec<CorsPolicy>,
    ) -> std::io::Result<LocalS3> {
        std::fs::create_dir_all(root)?;
        let fs = s3s_fs::FileSystem::new(root).map_err(|e| std::io::Error::other(format!("s3s-fs: {e:?}")))?;
        let mut builder = S3ServiceBuilder::new(ObservedFs {
            fs,
            created,
            creating: tokio::sync::Mutex::new(()),
        });
        builder.set_auth(s3s::auth::SimpleAuth::from_single(access_key, secret_key));
        let service = builder.build();
        let listener = TcpListener::bind(listen).await?;
        // Clients in this process reach it on loopback, whatever address it listens on.
        let endpoint = format!("http://127.0.0.1:{}", listener.local_addr()?.port());
        let (stop, mut stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            loop {
                let (socket, _) = tokio::select! {
                    _ = &mut stopped => return,
                    accepted = listener.accept() => match accepted {
                        Ok(conn) => conn,
                        Err(_) => continue,
                    },
                };
                let service = service.clone();
                let cors = cors.clone();
                tokio::spawn(async move {
                    let io = hyper_util::rt::TokioIo::new(socket);
                    let with_cors = hyper::service::service_fn(move |req| {
                        let (service, cors) = (service.clone(), cors.clone());
                        async move { with_bucket_cors(&service, &cors, req).await }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, with_cors)
                        .await;
                });
            }
        });
        Ok(LocalS3 {
            endpoint,
            scratch,
            stop: Some(stop),
        })
    }

    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.scratch.take();
    }
}

impl Drop for LocalS3 {
    fn drop(&mut self) {
        self.stop();
    }
}
