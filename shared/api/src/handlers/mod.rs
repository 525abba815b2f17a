//! One async function per route, plus [`handle`], which runs any of them with the same
//! authentication, request id, conditional-GET and error mapping. Testable without Lambda:
//! give it a `lambda_http::Request` built from an API Gateway event.

mod blocks;
mod comments;
mod fanout;
mod hot;
mod likes;
mod media;
mod moderation;
mod notifications;
mod posts;
mod reports;
pub mod route_table;
mod users;
mod ws;

pub use fanout::stream_fanout;
pub use media::process_uploads;
pub use route_table::{Handler, ROUTES, Route, RouteSpec, Uses};
pub use ws::{ws_connect, ws_disconnect, ws_message};

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use lambda_http::{Body, Request, Response};
use sha2::{Digest, Sha256};

use crate::auth::Caller;
use crate::cache::TtlCache;
use crate::config::{Config, ConfigError, Deployment, RateLimits};
use crate::error::ApiError;
use crate::http_api;
use forum_domain::cursor::CursorCodec;
use forum_domain::model::{Post, PostView, Profile};
use forum_domain::validate::ProfanityMode;
use forum_store::aws::DynamoDbUsage;
use forum_store::bucket::Bucket;
use forum_store::metrics::{self, Metric};
use forum_store::notifier::Notifier;
use forum_store::secrets::SecretSource;
use forum_store::{RateAction, RateToken, Table, ViewerState};

/// How long a container trusts a profile it read or wrote. Profiles change only when a user's
/// token claims change, and a stale avatar for a minute is harmless.
const PROFILE_TTL: Duration = Duration::from_secs(60);
const PROFILE_CACHE_SIZE: usize = 10_000;

/// The caller as the author of a write; see [`App::author`].
enum Author {
    /// Stored as this, recently: nothing to write.
    Known(Profile),
    /// To write with the item: what the token asks for.
    Changed(Profile),
}

impl Author {
    fn to_write(&self) -> Option<&Profile> {
        match self {
            Author::Known(_) => None,
            Author::Changed(profile) => Some(profile),
        }
    }
}

/// What every handler needs, built once per cold start.
pub struct App {
    pub table: Table,
    /// The key that signs page cursors; only the functions that paginate are given one.
    cursor_key: Option<SecretSource>,
    pub profanity: ProfanityMode,
    pub rate_limits: RateLimits,
    /// How long a notification is kept (`NotificationDays`).
    pub notification_ttl_secs: i64,
    /// What an image decode may allocate in this function: half its memory.
    pub decode_budget: u64,
    /// What this container asked of DynamoDB: round trips, calls, capacity (an SDK interceptor).
    pub dynamodb_usage: DynamoDbUsage,
    /// The media bucket (uploads and processed media).
    pub bucket: Bucket,
    /// Pushes to WebSocket connections (when a WebSocket API is configured).
    pub notifier: Option<Notifier>,
    /// User-agnostic data only: never anything that depends on who asks (`is_liked`).
    profiles: TtlCache<String, Profile>,
    /// Feed pages and posts as stored, for `Config::read_cache_ttl` (see `hot`).
    hot: hot::HotReads,
}

impl App {
    pub fn new(
        config: &Config,
        dynamodb: forum_store::aws::Deferred<aws_sdk_dynamodb::Client>,
        s3: forum_store::aws::Deferred<aws_sdk_s3::Client>,
        notifier: Option<Notifier>,
        secrets: forum_store::aws::Deferred<aws_sdk_secretsmanager::Client>,
        deployment: Deployment,
        dynamodb_usage: DynamoDbUsage,
    ) -> Arc<Self> {
        Arc::new(App {
            notifier,
            bucket: Bucket::new(s3, &config.media_bucket, &config.media_base_url),
            table: Table::deferred(dynamodb, &config.table_name),
            cursor_key: config
                .cursor_secret_arn
                .as_deref()
                .map(|arn| SecretSource::new(secrets, arn, "CursorSecretArn", deployment)),
            profanity: config.profanity,
            rate_limits: config.rate_limits,
            notification_ttl_secs: config.notification_ttl_secs,
            decode_budget: forum_media::decode_budget(config.memory_mb),
            dynamodb_usage,
            profiles: TtlCache::new(PROFILE_TTL, PROFILE_CACHE_SIZE),
            hot: hot::HotReads::new(config.read_cache_ttl),
        })
    }

    /// The cursor codec, with the key as last read (see [`forum_store::secrets`]). Functions that
    /// paginate refuse to start without a key's ARN (`Config::require_cursor_secret_arn`).
    pub async fn cursors(&self) -> Result<CursorCodec, ApiError> {
        let source = self
            .cursor_key
            .as_ref()
            .ok_or_else(|| ApiError::Internal("this function has no cursor key".into()))?;
        let versions = source.get().await?;
        Ok(CursorCodec::from_keys(versions.all().map(str::as_bytes)))
    }

    /// Reads this function's secrets during init (a key that cannot be used stops it).
    pub async fn load_secrets(&self) -> Result<(), ConfigError> {
        match &self.cursor_key {
            Some(source) => source.load_at_init().await.map_err(|e| ConfigError(e.to_string())),
            None => Ok(()),
        }
    }

    /// The caller as the author of a write: as this container recently wrote (or read) their
    /// profile, when the token's claims are unchanged since; otherwise the profile to write
    /// with the item (and the name to claim).
    fn author(&self, caller: &Caller) -> Author {
        match self.profiles.get(&caller.user_id) {
            Some(known) if known.token_name == caller.username && known.avatar_url == caller.avatar_url => {
                Author::Known(known)
            }
            _ => Author::Changed(Profile::from(caller)),
        }
    }

    /// The users `text` mentions (`@name`), resolved through the name claims now and stored
    /// with what is written, so a later rename does not move a mention; the writer is not
    /// among them. No `@` name: no read.
    async fn mentioned(&self, text: &str, caller: &Caller) -> Result<Vec<String>, ApiError> {
        let name_keys = forum_domain::notifications::mentioned_keys(text);
        if name_keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut users = self.table.users_named(&name_keys).await?;
        users.retain(|u| *u != caller.user_id);
        Ok(users)
    }

    /// The author as shown once their write committed (`written`: the profile the write
    /// stored, under the name it could claim), remembered for the container's next writes.
    fn shown_author(&self, author: Author, written: Option<Profile>) -> Profile {
        match (written, author) {
            (Some(profile), _) => {
                self.profiles.insert(profile.user_id.clone(), profile.clone());
                profile
            }
            (None, Author::Known(profile) | Author::Changed(profile)) => profile,
        }
    }

    /// A write's rate token: `action` by `caller`, under this function's limit for it.
    fn rate_token(&self, caller: &Caller, action: RateAction) -> RateToken {
        self.rate_token_for(&caller.user_id, action)
    }

    /// A rate token for `action` by `user_id` (a WebSocket message knows its connection's
    /// owner, not a caller).
    fn rate_token_for(&self, user_id: &str, action: RateAction) -> RateToken {
        RateToken {
            user_id: user_id.to_string(),
            action,
            limit: self.rate_limits.of(action),
            now: chrono::Utc::now().timestamp(),
            idempotency: None,
        }
    }

    /// A create's rate token, keyed when the request carries an `Idempotency-Key`: the key is
    /// recorded with `render`'s answer in the write's own transaction.
    fn create_token(
        &self,
        req: &Request,
        caller: &Caller,
        action: RateAction,
        render: &std::sync::Arc<forum_store::idempotency::RenderAnswer>,
    ) -> Result<RateToken, ApiError> {
        let mut rate = self.rate_token(caller, action);
        rate.idempotency = http_api::idempotency(req, req.body().as_ref(), render.clone())?;
        Ok(rate)
    }

    /// The profile an author's write shows before it commits: as known, or as it will be
    /// written (the written one, under the name it could claim, replaces it in the answer).
    fn author_as_known(author: &Author) -> Profile {
        match author {
            Author::Known(profile) | Author::Changed(profile) => profile.clone(),
        }
    }

    /// Profiles of `user_ids` (cached ones from memory) and which of `post_ids` `viewer` likes,
    /// in at most one BatchGetItem.
    async fn profiles_and_likes(
        &self,
        user_ids: HashSet<String>,
        post_ids: &[String],
        viewer: &str,
        with_blocks: bool,
    ) -> Result<(HashMap<String, Profile>, ViewerState), ApiError> {
        let mut profiles = HashMap::new();
        let mut missing = HashSet::new();
        for uid in user_ids {
            match self.profiles.get(&uid) {
                Some(p) => {
                    profiles.insert(uid, p);
                }
                None => {
                    missing.insert(uid);
                }
            }
        }
        if missing.is_empty() && post_ids.is_empty() && !with_blocks {
            return Ok((profiles, ViewerState::default()));
        }
        let (fetched, liked) = self
            .table
            .profiles_and_likes(&missing, post_ids, viewer, with_blocks)
            .await?;
        for (uid, profile) in fetched {
            self.profiles.insert(uid.clone(), profile.clone());
            profiles.insert(uid, profile);
        }
        Ok((profiles, liked))
    }

    /// Posts as the caller sees them: author profiles and `is_liked`, read in one batch
    /// (`viewer`: the caller's likes among them and whom they block, when already read).
    /// Posts by users the caller blocks are left out, except for moderators.
    async fn post_views(
        &self,
        posts: Vec<Post>,
        caller: &Caller,
        viewer: Option<ViewerState>,
    ) -> Result<Vec<PostView>, ApiError> {
        let authors: HashSet<String> = posts.iter().map(|p| p.user_id.clone()).collect();
        let (profiles, viewer) = match viewer {
            Some(viewer) => (self.profiles(authors).await?, viewer),
            None => {
                let ids: Vec<String> = posts.iter().map(|p| p.id.clone()).collect();
                self.profiles_and_likes(authors, &ids, &caller.user_id, true).await?
            }
        };
        let hides_blocked = !caller.role.moderates();
        Ok(posts
            .into_iter()
            .filter(|post| !(hides_blocked && viewer.blocked.contains(&post.user_id)))
            .map(|post| {
                let author = profiles
                    .get(&post.user_id)
                    .cloned()
                    .unwrap_or_else(|| Profile::unknown(&post.user_id));
                let is_liked = viewer.liked.contains(&post.id);
                PostView::new(post, &author, is_liked)
            })
            .collect())
    }

    /// Profiles of these users (from memory when cached).
    async fn profiles(&self, user_ids: HashSet<String>) -> Result<HashMap<String, Profile>, ApiError> {
        Ok(self.profiles_and_likes(user_ids, &[], "", false).await?.0)
    }
}

/// Runs `route` for one request: authenticates the caller, calls the handler, answers
/// conditional GETs, and maps any error to the API's error shape.
pub async fn handle(app: &App, route: Route, req: Request) -> Response<Body> {
    handle_with(app, route, route.handler(), req).await
}

/// [`handle`] with the route's handler given: a Lambda binary passes the one it serves
/// (see [`Route::handler`]).
pub async fn handle_with(app: &App, route: Route, handler: Handler, req: Request) -> Response<Body> {
    let request_id = http_api::request_id(&req);
    let trips_before = app.dynamodb_usage.round_trips();
    let result = if route == Route::Fallback && req.method() == http::Method::OPTIONS {
        // The unauthenticated `OPTIONS /{proxy+}` route (browsers' preflights are answered by
        // API Gateway before it; a plain OPTIONS asks what a path allows).
        route_table::options(&req)
    } else {
        match Caller::from_request(&req) {
            // One deadline for everything the request sets off: a slow or frozen DynamoDB is a
            // 503 in the API's shape within the budget, never Lambda's timeout.
            Ok(caller) => forum_store::deadline::within(request_budget(&req), handler(app, &req, &caller))
                .await
                .unwrap_or_else(|forum_store::deadline::Elapsed| {
                    Err(ApiError::Unavailable("the request's deadline passed".into()))
                }),
            Err(err) => Err(err),
        }
    };
    if matches!(result, Err(ApiError::RateLimited { .. })) {
        metrics::emit(Metric::RateLimited, 1, route.binary());
    }
    // A Lambda container serves one request at a time, so the difference is this request's.
    metrics::emit(
        Metric::DynamoDbRoundTrips,
        app.dynamodb_usage.round_trips() - trips_before,
        route.binary(),
    );
    let mut response = result.unwrap_or_else(|err| err.to_response(&request_id));
    if req.method() == http::Method::GET && response.status() == http::StatusCode::OK {
        response = conditional_get(&req, response);
    }
    if let Ok(value) = http::HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

/// The request's deadline: [`forum_store::deadline::REQUEST_BUDGET`], or less when Lambda's own
/// deadline for the invocation is nearer (half a second kept to answer).
fn request_budget(req: &Request) -> Duration {
    use lambda_http::RequestExt;
    let lambda_left = req.lambda_context_ref().and_then(|context| {
        let deadline = std::time::UNIX_EPOCH + Duration::from_millis(context.deadline);
        deadline.duration_since(std::time::SystemTime::now()).ok()
    });
    match lambda_left {
        Some(left) if left > Duration::ZERO => {
            forum_store::deadline::REQUEST_BUDGET.min(left.saturating_sub(Duration::from_millis(500)))
        }
        _ => forum_store::deadline::REQUEST_BUDGET,
    }
}

/// Adds an `ETag` (a hash of the exact body, which includes the caller's own `is_liked`: a
/// tag matches only a byte-identical answer, so a 304 never stands for a view that differs
/// from this caller's) and answers a matching `If-None-Match` with 304.
/// `Cache-Control: private` keeps shared caches from storing per-user answers.
fn conditional_get(req: &Request, mut response: Response<Body>) -> Response<Body> {
    let digest = Sha256::digest(response.body().as_ref());
    let etag = format!(
        "\"{}\"",
        digest.iter().take(16).map(|b| format!("{b:02x}")).collect::<String>()
    );
    let matches = req
        .headers()
        .get_all(http::header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == etag || t == "*");
    let headers = response.headers_mut();
    headers.insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("private, no-cache"),
    );
    if let Ok(value) = http::HeaderValue::from_str(&etag) {
        headers.insert(http::header::ETAG, value);
    }
    if matches {
        *response.status_mut() = http::StatusCode::NOT_MODIFIED;
        *response.body_mut() = Body::Empty;
        response.headers_mut().remove(http::header::CONTENT_TYPE);
    }
    response
}
