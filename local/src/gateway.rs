//! The HTTP API emulation: matches routes read from `template.yaml`, runs the authorizer first
//! (with API Gateway's answer cache), builds the API Gateway v2 event a Lambda would receive,
//! and hands it to the same handler the Lambda runs.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde_json::{Value, json};
use shared::auth::{self, AuthorizerResponse, TokenVerifier};
use shared::handlers::{self, App};
use shared::{ApiError, Route};
use tokio::net::TcpListener;

use crate::cors::{CorsAnswer, CorsPolicy, CorsRequest};
pub use crate::respond::{Functions, plain};
use crate::template::HttpRoute;

/// API Gateway's payload limit for HTTP APIs.
pub const MAX_REQUEST_BYTES: usize = 10 * 1024 * 1024;

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
    pub mint: Option<shared::auth::JwtSettings>,
}

pub struct Gateway {
    pub functions: Arc<Functions>,
    pub connections: Arc<crate::websocket::Connections>,
    pub routes: Vec<BoundRoute>,
    pub verifier: Option<TokenVerifier>,
    pub identity_header: String,
    pub authorizer_ttl: Duration,
    pub edge: Edge,
    cache: Mutex<HashMap<String, (Instant, Arc<AuthorizerResponse>)>>,
}

fn segments_match(template: &str, path: &str) -> Option<HashMap<String, String>> {
    // API Gateway routes are exact: `/posts` and `/posts/` are different routes.
    if template.ends_with('/') != path.ends_with('/') {
        return None;
    }
    shared::routes::match_path(template, path).map(|p| p.into_iter().collect())
}

impl Gateway {
    pub fn new(
        functions: Functions,
        routes: Vec<BoundRoute>,
        verifier: Option<TokenVerifier>,
        identity_header: String,
        authorizer_ttl: Duration,
        edge: Edge,
    ) -> Self {
        Gateway {
            functions: Arc::new(functions),
            connections: Arc::default(),
            routes,
            verifier,
            identity_header,
            authorizer_ttl,
            edge,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// API Gateway's route selection: the most specific matching route, else `$default`.
    fn select(&self, method: &str, path: &str) -> Option<(&BoundRoute, HashMap<String, String>)> {
        let mut best: Option<(&BoundRoute, HashMap<String, String>, usize)> = None;
        for bound in &self.routes {
            let r = &bound.route;
            if r.is_default() || (r.method != method && r.method != "ANY") {
                continue;
            }
            if let Some(params) = segments_match(&r.path, path) {
                // Fewer parameters = more specific; an exact method beats ANY.
                let score = params.len() * 2 + usize::from(r.method == "ANY");
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

    fn authorize(&self, token: &str, event: Value) -> Result<Arc<AuthorizerResponse>, ApiError> {
        let verifier = self
            .verifier
            .as_ref()
            .ok_or_else(|| ApiError::Internal("no authorizer configured".into()))?;
        if let Ok(cache) = self.cache.lock()
            && let Some((at, answer)) = cache.get(token)
            && at.elapsed() < self.authorizer_ttl
        {
            return Ok(answer.clone());
        }
        let event = serde_json::from_value(event).map_err(|e| ApiError::Internal(format!("authorizer event: {e}")))?;
        let answer = Arc::new(auth::authorize(verifier, &event));
        if let Ok(mut cache) = self.cache.lock() {
            cache.retain(|_, (at, _)| at.elapsed() < self.authorizer_ttl);
            cache.insert(token.to_string(), (Instant::now(), answer.clone()));
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
        // preflight itself, allowed or not; an origin it does not allow gets no CORS headers.
        let (mut response, cors) = match CorsRequest::read(req.method(), req.headers()) {
            CorsRequest::Preflight {
                origin,
                method,
                headers,
            } => {
                let answer = self.edge.cors.preflight(&origin, Some(&method), headers.as_deref());
                let mut empty = plain(204, Bytes::new());
                empty.headers_mut().remove(http::header::CONTENT_TYPE);
                (empty, answer)
            }
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
                return Ok(crate::web::config(&host, self.edge.mint.is_some()));
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
                self.verifier.as_ref(),
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
            let credentials = (shared::aws::LOCAL_ACCESS_KEY, shared::aws::LOCAL_SECRET_KEY);
            if let Err(why) = crate::sigv4::verify(
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
        let body = Limited::new(body, MAX_REQUEST_BYTES)
            .collect()
            .await
            .map_err(|_| ApiError::PayloadTooLarge(format!("request bodies are limited to {MAX_REQUEST_BYTES} bytes")))?
            .to_bytes();
        let method = parts.method.as_str().to_ascii_uppercase();
        let path = parts.uri.path().to_string();
        let raw_query = parts.uri.query().unwrap_or("").to_string();
        let Some((bound, path_params)) = self.select(&method, &path) else {
            return Ok(to_hyper(
                ApiError::NotFound(format!("no route for {path}")).to_response(request_id),
            ));
        };
        let route_key = bound.route.route_key();

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
        let host = parts
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("127.0.0.1")
            .to_string();
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
        if bound.route.authorized {
            let token = parts
                .headers
                .get(self.identity_header.as_str())
                .and_then(|h| h.to_str().ok())
                .filter(|t| !t.trim().is_empty());
            let Some(token) = token else {
                // In AWS, API Gateway itself answers a missing identity source (401, its own body).
                return Err(ApiError::Unauthorized("missing bearer token".into()));
            };
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
            let answer = self.authorize(token, event)?;
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
                async move { Ok::<_, Infallible>(gateway.serve(req, peer).await) }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .with_upgrades()
                .await
            {
                tracing::debug!(error = %e, "connection ended");
            }
        });
    }
}
