//! The HTTP API emulation: selects a route as API Gateway does, from the routes SAM's
//! translation of template.yaml declares; runs the route's authorizer first (with API
//! Gateway's answer cache) where API Gateway may invoke it; builds the API Gateway v2 event a
//! Lambda would receive, and hands it to the same handler the Lambda runs. Where AWS would
//! refuse (no invoke permission, a preflight sent through an authorizer), so does this.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use forum_api::auth::{self, AuthorizerResponse, TokenVerifier};
use forum_api::handlers::{self, App};
use forum_api::{ApiError, Route};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::cors::{CorsAnswer, CorsPolicy, CorsRequest};
use crate::environment::{LOCAL_HTTP_API_ID, Resolver};
use crate::iam::glob;
pub use crate::respond::{Functions, plain};
use crate::template::{HttpRoute, TemplateError};
use crate::translation::{AuthorizerDef, Translation};

/// Who API Gateway may invoke, and from where: the translated template's
/// `AWS::Lambda::Permission`s for `apigateway.amazonaws.com`, resolved.
#[derive(Debug, Default)]
pub struct InvokePermissions {
    /// (function logical id, SourceArn pattern; `*` when it names none).
    allowed: Vec<(String, String)>,
}

impl InvokePermissions {
    pub fn resolve(translation: &Translation, resolver: &Resolver<'_>) -> Result<Self, TemplateError> {
        let mut allowed = Vec::new();
        for permission in &translation.permissions {
            if permission.principal != "apigateway.amazonaws.com"
                || !permission.action.eq_ignore_ascii_case("lambda:InvokeFunction")
            {
                continue;
            }
            let source = match &permission.source_arn {
                Some(arn) => resolver.string(arn)?,
                None => "*".to_string(),
            };
            allowed.push((permission.function.clone(), source));
        }
        Ok(InvokePermissions { allowed })
    }

    /// Whether API Gateway may invoke `function` for a call from `source_arn`.
    pub fn allows(&self, function: &str, source_arn: &str) -> bool {
        self.allowed
            .iter()
            .any(|(f, pattern)| f == function && glob(pattern, source_arn))
    }
}

/// API Gateway's own answers, as it words them.
fn gateway_answer(status: u16) -> hyper::Response<Full<Bytes>> {
    let body = match status {
        401 => r#"{"message":"Unauthorized"}"#,
        403 => r#"{"message":"Forbidden"}"#,
        404 => r#"{"message":"Not Found"}"#,
        _ => r#"{"message":"Internal Server Error"}"#,
    };
    let mut response = plain(status, body);
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

/// The execute-api ARN of a call into the HTTP API (`<api>/<stage>/<METHOD>/<path>`), or of
/// an authorizer (`<api>/authorizers/<id>`), as Lambda permissions are written against it.
fn execute_api_arn(rest: &str) -> String {
    format!("arn:aws:execute-api:us-east-1:000000000000:{LOCAL_HTTP_API_ID}/{rest}")
}

/// API Gateway's payload limit for HTTP APIs.
pub const MAX_REQUEST_BYTES: usize = 10 * 1024 * 1024;
/// The request line and headers a client may send (API Gateway's HTTP APIs take 10 KB of
/// headers; hyper's smallest buffer is 8 KB, and more is answered 431).
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// How long a client may take to send its headers, and then its body: API Gateway cuts slow
/// senders off too (its integration timeout is 30 s).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// A template route with the handler that serves it.
#[derive(Clone)]
pub struct BoundRoute {
    pub route: HttpRoute,
    pub handler: Route,
    /// The function behind the route, configured from its own environment.
    pub app: Arc<App>,
}

/// What the stack answers at its edge besides the routes, from the template and parameters.
pub struct Edge {
    /// The HTTP API's CORS configuration, resolved with the stack's parameters.
    pub cors: CorsPolicy,
    /// What the media distribution's response headers policy adds to media answers.
    pub media_headers: Vec<(String, String)>,
    /// The authorizer's settings, for `POST /local/token` (HS256 only: development).
    pub mint: Option<forum_testkit::TokenMint>,
}

pub struct Gateway {
    pub functions: Arc<Functions>,
    pub connections: Arc<crate::websocket::Connections>,
    pub routes: Vec<BoundRoute>,
    /// The HTTP API's authorizers by name.
    pub authorizers: std::collections::BTreeMap<String, AuthorizerDef>,
    /// The authorizer function, as it runs (there is one; the WebSocket API uses it too).
    pub verifier: TokenVerifier,
    pub permissions: InvokePermissions,
    /// The WebSocket API's `$connect` authorizer function (logical id), if it has one.
    pub websocket_authorizer: Option<String>,
    pub edge: Edge,
    cache: Mutex<HashMap<CacheKey, (Instant, Arc<AuthorizerResponse>)>>,
}

/// An authorizer's cached answer is per authorizer and token.
type CacheKey = (String, String);
/// How a route matches a request: specificity class, fewer literal segments, parameters, ANY.
type MatchScore = (u8, usize, usize, bool);

/// How a path matches a route's path: its parameters, and how specific the match is (0 exact,
/// 1 with `{param}` segments, 2 greedy `{proxy+}`), or `None`.
fn segments_match(template: &str, path: &str) -> Option<(HashMap<String, String>, u8)> {
    let mut params = HashMap::new();
    let mut specificity = 0;
    let mut t = template.split('/');
    let mut p = path.split('/');
    loop {
        match (t.next(), p.next()) {
            (None, None) => return Some((params, specificity)),
            (Some(ts), Some(ps)) => {
                if let Some(name) = ts.strip_prefix('{').and_then(|n| n.strip_suffix("+}")) {
                    // Greedy: this segment and every one after it (at least one, non-empty).
                    let rest: Vec<&str> = std::iter::once(ps).chain(p.by_ref()).collect();
                    if t.next().is_some() || rest.join("/").is_empty() {
                        return None;
                    }
                    params.insert(name.to_string(), rest.join("/"));
                    return Some((params, 2));
                }
                if let Some(name) = ts.strip_prefix('{').and_then(|n| n.strip_suffix('}')) {
                    if ps.is_empty() {
                        return None;
                    }
                    params.insert(name.to_string(), ps.to_string());
                    specificity = 1;
                } else if ts != ps {
                    // API Gateway routes are exact: `/posts` and `/posts/` are different routes.
                    return None;
                }
            }
            _ => return None,
        }
    }
}

impl Gateway {
    pub fn new(
        functions: Functions,
        routes: Vec<BoundRoute>,
        authorizers: std::collections::BTreeMap<String, AuthorizerDef>,
        verifier: TokenVerifier,
        permissions: InvokePermissions,
        websocket_authorizer: Option<String>,
        edge: Edge,
    ) -> Self {
        Gateway {
            functions: Arc::new(functions),
            connections: Arc::default(),
            routes,
            authorizers,
            verifier,
            permissions,
            websocket_authorizer,
            edge,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// API Gateway's route selection: the most specific matching route (exact paths before
    /// `{param}` paths before greedy ones, more segments first, an exact method before ANY),
    /// else `$default`.
    fn select(&self, method: &str, path: &str) -> Option<(&BoundRoute, HashMap<String, String>)> {
        let mut best: Option<(&BoundRoute, HashMap<String, String>, MatchScore)> = None;
        for bound in &self.routes {
            let r = &bound.route;
            if r.is_default() || (r.method != method && r.method != "ANY") {
                continue;
            }
            if let Some((params, specificity)) = segments_match(&r.path, path) {
                let literal = r.path.split('/').filter(|s| !s.starts_with('{')).count();
                let score = (specificity, usize::MAX - literal, params.len(), r.method == "ANY");
                if best.as_ref().is_none_or(|(_, _, s)| score < *s) {
                    best = Some((bound, params, score));
                }
            }
        }
        best.map(|(b, p, _)| (b, p)).or_else(|| {
            self.routes
                .iter()
                .find(|b| b.route.is_default())
                .map(|b| (b, HashMap::new()))
        })
    }

    /// Runs `authorizer` for `token` as API Gateway does: its cached answer while fresh, else
    /// the function (whose failure is API Gateway's 500, and never cached).
    async fn authorize(
        &self,
        authorizer: &AuthorizerDef,
        token: &str,
        event: Value,
    ) -> Result<Arc<AuthorizerResponse>, hyper::Response<Full<Bytes>>> {
        let ttl = Duration::from_secs(authorizer.ttl_secs);
        let key = (authorizer.name.clone(), token.to_string());
        if let Ok(cache) = self.cache.lock()
            && let Some((at, answer)) = cache.get(&key)
            && at.elapsed() < ttl
        {
            return Ok(answer.clone());
        }
        let event = serde_json::from_value(event).map_err(|e| {
            tracing::error!(error = %e, "authorizer event did not deserialize");
            gateway_answer(500)
        })?;
        let answer = match auth::authorize(&self.verifier, &event).await {
            Ok(answer) => Arc::new(answer),
            Err(failure) => {
                tracing::error!(%failure, "the authorizer failed: API Gateway answers 500");
                return Err(gateway_answer(500));
            }
        };
        if let Ok(mut cache) = self.cache.lock() {
            cache.retain(|_, (at, _)| at.elapsed() < ttl);
            cache.insert(key, (Instant::now(), answer.clone()));
        }
        Ok(answer)
    }

    /// Serves one HTTP request the way API Gateway and Lambda would.
    pub async fn serve(&self, req: hyper::Request<Incoming>, peer: SocketAddr) -> hyper::Response<Full<Bytes>> {
        let started = Instant::now();
        let request_id = ulid::Ulid::new().to_string();
        let method = req.method().to_string();
        let path = req.uri().path().to_string();
        // CORS as the HTTP API answers it from its CorsConfiguration: API Gateway answers a
        // preflight itself, allowed or not (an origin it does not allow gets no CORS headers),
        // unless the route it selects for the OPTIONS request is behind an authorizer: then the
        // preflight, which carries no token, is refused 401 like any request without one.
        let (mut response, cors) = match CorsRequest::read(req.method(), req.headers()) {
            CorsRequest::Preflight {
                origin,
                method,
                headers,
            } => match self.preflight_refusal(&req) {
                Some(refused) => (refused, CorsAnswer::NotCors),
                None => {
                    let answer = self.edge.cors.preflight(&origin, Some(&method), headers.as_deref());
                    let mut empty = plain(204, Bytes::new());
                    empty.headers_mut().remove(http::header::CONTENT_TYPE);
                    (empty, answer)
                }
            },
            request => {
                let answer = match request {
                    CorsRequest::Actual { origin } => self.edge.cors.actual(Some(&origin)),
                    _ => CorsAnswer::NotCors,
                };
                let response = match self.serve_inner(req, peer, &request_id).await {
                    Ok(resp) => resp,
                    Err(err) => to_hyper(err.to_response(&request_id)),
                };
                (response, answer)
            }
        };
        cors.apply(response.headers_mut());
        tracing::info!(%method, %path, status = response.status().as_u16(), ms = started.elapsed().as_millis() as u64, request_id, "http");
        response
    }

    /// The authorizer as the WebSocket API may run it: only where a Lambda permission lets
    /// API Gateway invoke it for this API's authorizer.
    fn websocket_verifier(&self) -> Option<&TokenVerifier> {
        let function = self.websocket_authorizer.as_deref()?;
        let arn = format!(
            "arn:aws:execute-api:us-east-1:000000000000:{}/authorizers/{}",
            crate::environment::LOCAL_WEBSOCKET_API_ID,
            crate::environment::LOCAL_WEBSOCKET_AUTHORIZER_ID
        );
        let allowed = self.permissions.allows(function, &arn);
        if !allowed {
            tracing::error!("no permission lets API Gateway invoke the WebSocket authorizer: $connect answers 500");
        }
        allowed.then_some(&self.verifier)
    }

    /// API Gateway's answer to a preflight whose OPTIONS route is behind an authorizer (the
    /// identity source is missing: 401, before any authorizer runs), if it is.
    fn preflight_refusal(&self, req: &hyper::Request<Incoming>) -> Option<hyper::Response<Full<Bytes>>> {
        let (bound, _) = self.select("OPTIONS", req.uri().path())?;
        let authorizer = self.authorizers.get(bound.route.authorizer.as_ref()?)?;
        let has_identity = req
            .headers()
            .get(authorizer.identity_header.as_str())
            .is_some_and(|v| !v.is_empty());
        (!has_identity).then(|| gateway_answer(401))
    }

    async fn serve_inner(
        &self,
        req: hyper::Request<Incoming>,
        peer: SocketAddr,
        request_id: &str,
    ) -> Result<hyper::Response<Full<Bytes>>, ApiError> {
        // The reference web client, its configuration and the local token mint.
        let path = req.uri().path().to_string();
        if req.method() == http::Method::GET {
            if let Some(file) = crate::web::file(&path) {
                return Ok(file);
            }
            if path == "/config.json" {
                let host = req
                    .headers()
                    .get(http::header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .unwrap_or("127.0.0.1:3000")
                    .to_string();
                return Ok(crate::web::config(&host, self.edge.mint.as_ref()));
            }
        }
        if req.method() == http::Method::POST
            && path == "/local/token"
            && let Some(jwt) = &self.edge.mint
        {
            let body = Limited::new(req.into_body(), 4096)
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            return Ok(crate::web::mint(jwt, &body));
        }
        if req.uri().path() == "/ws" && req.headers().contains_key(http::header::UPGRADE) {
            return Ok(crate::websocket::upgrade(
                self.functions.clone(),
                self.websocket_verifier(),
                self.connections.clone(),
                req,
                peer,
            )
            .await);
        }
        if let Some(id) = req.uri().path().strip_prefix("/@connections/") {
            let id = url::form_urlencoded::parse(format!("k={id}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default();
            let (parts, body) = req.into_parts();
            let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            // Signed like AWS: only holders of the local credentials (the functions) may push.
            let credentials = (forum_store::aws::LOCAL_ACCESS_KEY, forum_store::aws::LOCAL_SECRET_KEY);
            if let Err(why) = crate::sigv4::verify(
                "execute-api",
                &parts.method,
                &parts.uri,
                &parts.headers,
                &body,
                credentials,
                std::time::SystemTime::now(),
            ) {
                tracing::warn!(%why, "refused an unsigned or badly signed @connections request");
                let mut refused = plain(403, serde_json::json!({ "message": why }).to_string());
                refused.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json"),
                );
                return Ok(refused);
            }
            return Ok(self.connections.manage(&parts.method, &id, body));
        }
        if (req.method() == http::Method::GET || req.method() == http::Method::HEAD)
            && req.uri().path().starts_with("/media/")
        {
            return Ok(self
                .serve_media(req.uri().path(), req.method() == http::Method::HEAD)
                .await);
        }
        let (parts, body) = req.into_parts();
        let body = match tokio::time::timeout(BODY_READ_TIMEOUT, Limited::new(body, MAX_REQUEST_BYTES).collect()).await
        {
            Ok(Ok(collected)) => collected.to_bytes(),
            Ok(Err(_)) => {
                return Err(ApiError::PayloadTooLarge(format!(
                    "request bodies are limited to {MAX_REQUEST_BYTES} bytes"
                )));
            }
            Err(_) => return Ok(plain(408, r#"{"message":"Request Timeout"}"#)),
        };
        let method = parts.method.as_str().to_ascii_uppercase();
        let path = parts.uri.path().to_string();
        let raw_query = parts.uri.query().unwrap_or("").to_string();
        let Some((bound, path_params)) = self.select(&method, &path) else {
            return Ok(gateway_answer(404));
        };
        let route_key = bound.route.route_key();
        // API Gateway invokes the route's function only where a Lambda permission lets it
        // (the SourceArn names the route's path with its values, as SAM writes them).
        let invoked_as = execute_api_arn(&format!("$default/{method}{}", path.trim_end_matches('/')));
        if !self.permissions.allows(&bound.route.function, &invoked_as) {
            tracing::error!(function = %bound.route.function, %invoked_as, "no permission lets API Gateway invoke the route's function: 500");
            return Ok(gateway_answer(500));
        }

        let mut headers = serde_json::Map::new();
        let mut cookies = Vec::new();
        for (name, value) in &parts.headers {
            let value = String::from_utf8_lossy(value.as_bytes()).to_string();
            if name == http::header::COOKIE {
                cookies.extend(value.split("; ").map(str::to_string));
                continue;
            }
            match headers.get_mut(name.as_str()) {
                // API Gateway v2 joins repeated headers with commas.
                Some(Value::String(existing)) => {
                    existing.push(',');
                    existing.push_str(&value);
                }
                _ => {
                    headers.insert(name.as_str().to_string(), Value::String(value));
                }
            }
        }
        headers.insert("x-forwarded-proto".into(), Value::String("http".into()));
        headers.insert("x-forwarded-for".into(), Value::String(peer.ip().to_string()));
        headers.insert("x-forwarded-port".into(), Value::String(peer.port().to_string()));
        // API Gateway routes by host: a request whose Host names no valid authority never
        // reaches a function (and would stop the event's conversion to a request).
        let host = match parts.headers.get(http::header::HOST).map(|h| h.to_str()) {
            None => "127.0.0.1".to_string(),
            // A Host is a host and maybe a port (RFC 9110 7.2): no user info, a port in range,
            // as the URL the request's conversion builds from it must be.
            Some(Ok(h))
                if !h.contains('@')
                    && h.parse::<http::uri::Authority>().is_ok()
                    && url::Url::parse(&format!("https://{h}/")).is_ok() =>
            {
                h.to_string()
            }
            Some(_) => return Ok(gateway_answer(403)),
        };
        let query: serde_json::Map<String, Value> = url_pairs(&raw_query);
        let now = chrono::Utc::now();
        let request_context = json!({
            "accountId": "000000000000",
            "apiId": "forumlocal",
            "domainName": host,
            "domainPrefix": host.split('.').next().unwrap_or(&host),
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": peer.ip().to_string(),
                "userAgent": parts.headers.get(http::header::USER_AGENT).and_then(|h| h.to_str().ok()).unwrap_or(""),
            },
            "requestId": request_id,
            "routeKey": route_key,
            "stage": "$default",
            "time": now.format("%d/%b/%Y:%H:%M:%S +0000").to_string(),
            "timeEpoch": now.timestamp_millis(),
        });

        let mut authorizer_context = None;
        if let Some(name) = &bound.route.authorizer {
            let Some(authorizer) = self.authorizers.get(name) else {
                return Ok(gateway_answer(500));
            };
            let token = parts
                .headers
                .get(authorizer.identity_header.as_str())
                .and_then(|h| h.to_str().ok())
                .filter(|t| !t.trim().is_empty());
            let Some(token) = token else {
                // API Gateway itself answers a missing identity source, before any authorizer.
                return Ok(gateway_answer(401));
            };
            if !self
                .permissions
                .allows(&authorizer.function, &execute_api_arn(&format!("authorizers/{name}")))
            {
                tracing::error!(authorizer = %name, "no permission lets API Gateway invoke the authorizer: 500");
                return Ok(gateway_answer(500));
            }
            let event = json!({
                "version": "2.0",
                "type": "REQUEST",
                "routeArn": format!("arn:aws:execute-api:us-east-1:000000000000:forumlocal/$default/{method}{path}"),
                "identitySource": [token],
                "routeKey": route_key,
                "rawPath": path,
                "rawQueryString": raw_query,
                "cookies": cookies,
                "headers": headers,
                "queryStringParameters": query,
                "pathParameters": path_params,
                "requestContext": request_context,
            });
            let answer = match self.authorize(authorizer, token, event).await {
                Ok(answer) => answer,
                Err(refused) => return Ok(refused),
            };
            if !answer.is_authorized {
                return Ok(plain(403, r#"{"message":"Forbidden"}"#));
            }
            authorizer_context = Some(answer.context.clone());
        }

        let is_text = body.is_empty() || std::str::from_utf8(&body).is_ok() && is_textual(&parts.headers);
        let (body_value, is_base64) = if body.is_empty() {
            (Value::Null, false)
        } else if is_text {
            (Value::String(String::from_utf8_lossy(&body).to_string()), false)
        } else {
            (Value::String(BASE64.encode(&body)), true)
        };
        let mut request_context = request_context;
        if let Some(ctx) = authorizer_context {
            request_context["authorizer"] = json!({ "lambda": ctx });
        }
        let event = json!({
            "version": "2.0",
            "routeKey": route_key,
            "rawPath": path,
            "rawQueryString": raw_query,
            "cookies": cookies,
            "headers": headers,
            "queryStringParameters": if query.is_empty() { Value::Null } else { Value::Object(query) },
            "pathParameters": if path_params.is_empty() { Value::Null } else { json!(path_params) },
            "requestContext": request_context,
            "body": body_value,
            "isBase64Encoded": is_base64,
        });
        let request = lambda_http::request::from_str(&event.to_string())
            .map_err(|e| ApiError::Internal(format!("event did not deserialize: {e}")))?;
        Ok(to_hyper(handlers::handle(&bound.app, bound.handler, request).await))
    }
}

impl Gateway {
    /// The CDN stand-in: serves processed media (`media/` keys only, never `uploads/`) from the
    /// bucket with the object's own `Content-Type` and `Cache-Control`, as CloudFront does.
    /// The path is the key, percent-decoded as S3 decodes it and never resolved: `..` in it is
    /// part of a key that does not exist, as it is for CloudFront in front of S3.
    async fn serve_media(&self, path: &str, head_only: bool) -> hyper::Response<Full<Bytes>> {
        let key: String = percent_encoding::percent_decode_str(path.trim_start_matches('/'))
            .decode_utf8_lossy()
            .into_owned();
        if !key.starts_with("media/") || key.split('/').any(|s| s == "." || s == "..") {
            return plain(404, r#"{"message":"Not Found"}"#);
        }
        let key = key.as_str();
        let bucket = &self.functions.media;
        let found = bucket.client().get_object().bucket(bucket.name()).key(key).send().await;
        let out = match found {
            Ok(out) => out,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => {
                return plain(404, r#"{"message":"Not Found"}"#);
            }
            Err(e) => {
                tracing::warn!(error = ?e, key, "media read failed");
                return plain(502, r#"{"message":"Bad Gateway"}"#);
            }
        };
        let content_type = out.content_type().unwrap_or("application/octet-stream").to_string();
        let cache_control = out.cache_control().map(str::to_string);
        let etag = out.e_tag().map(str::to_string);
        let bytes = match out.body.collect().await {
            Ok(data) => data.into_bytes(),
            Err(_) => return plain(502, r#"{"message":"Bad Gateway"}"#),
        };
        let length = bytes.len();
        let mut resp = hyper::Response::new(Full::new(if head_only { Bytes::new() } else { bytes }));
        let headers = resp.headers_mut();
        if let Ok(v) = http::HeaderValue::from_str(&content_type) {
            headers.insert(http::header::CONTENT_TYPE, v);
        }
        if let Some(v) = cache_control.and_then(|c| http::HeaderValue::from_str(&c).ok()) {
            headers.insert(http::header::CACHE_CONTROL, v);
        }
        if let Some(v) = etag.and_then(|c| http::HeaderValue::from_str(&c).ok()) {
            headers.insert(http::header::ETAG, v);
        }
        headers.insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(length));
        // As CloudFront's response headers policy adds them (template.yaml).
        for (name, value) in &self.edge.media_headers {
            if let (Ok(name), Ok(value)) = (
                http::HeaderName::from_bytes(name.as_bytes()),
                http::HeaderValue::from_str(value),
            ) {
                headers.insert(name, value);
            }
        }
        resp
    }
}

/// API Gateway passes bodies of text types as text and base64-encodes the rest.
fn is_textual(headers: &http::HeaderMap) -> bool {
    let Some(ct) = headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let ct = ct.to_ascii_lowercase();
    ct.starts_with("text/") || ct.contains("json") || ct.contains("xml") || ct.contains("x-www-form-urlencoded")
}

/// Query string to API Gateway's `queryStringParameters` (repeated keys joined by commas).
fn url_pairs(raw: &str) -> serde_json::Map<String, Value> {
    let mut map = serde_json::Map::new();
    for (k, v) in url::form_urlencoded::parse(raw.as_bytes()) {
        match map.get_mut(k.as_ref()) {
            Some(Value::String(existing)) => {
                existing.push(',');
                existing.push_str(&v);
            }
            _ => {
                map.insert(k.to_string(), Value::String(v.to_string()));
            }
        }
    }
    map
}

fn to_hyper(resp: lambda_http::Response<lambda_http::Body>) -> hyper::Response<Full<Bytes>> {
    let (parts, body) = resp.into_parts();
    let bytes = match body {
        lambda_http::Body::Empty => Bytes::new(),
        lambda_http::Body::Text(t) => Bytes::from(t),
        lambda_http::Body::Binary(b) => Bytes::from(b),
        _ => Bytes::new(),
    };
    hyper::Response::from_parts(parts, Full::new(bytes))
}

/// Accepts connections until `shutdown` resolves.
pub async fn run(gateway: Arc<Gateway>, listener: TcpListener, shutdown: impl std::future::Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
        };
        let gateway = gateway.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let gateway = gateway.clone();
                async move { Ok::<_, Infallible>(crate::respond::guarded(gateway.serve(req, peer)).await) }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            // API Gateway's limits on what a client may send before the route: headers within
            // 10 KB (431 beyond), sent within a while (a slow sender is cut off, not waited on).
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .max_buf_size(MAX_HEADER_BYTES)
                .serve_connection(io, service)
                .with_upgrades()
                .await
            {
                tracing::debug!(error = %e, "connection ended");
            }
        });
    }
}
