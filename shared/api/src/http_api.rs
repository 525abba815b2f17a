//! Small helpers shared by the HTTP handlers: request ids, JSON in and out, query parameters.

use forum_domain::cursor::{CursorCodec, PageCursor};
use forum_domain::limits;
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Default and largest page sizes.
pub const DEFAULT_PAGE_SIZE: usize = limits::PAGE_SIZE_DEFAULT.usize();
pub const MAX_PAGE_SIZE: usize = limits::PAGE_SIZE_MAX.usize();
/// Largest JSON body accepted; posts and comments are far smaller.
pub const MAX_JSON_BODY: usize = limits::JSON_BODY_BYTES.usize();

/// API Gateway's request id (what clients and logs correlate on), else Lambda's.
pub fn request_id(req: &Request) -> String {
    if let Some(RequestContext::ApiGatewayV2(ctx)) = req.request_context_ref()
        && let Some(id) = &ctx.request_id
    {
        return id.clone();
    }
    req.lambda_context_ref()
        .map(|c| c.request_id.clone())
        .unwrap_or_else(|| "unknown".to_string())
}

pub fn json<T: Serialize>(status: u16, value: &T) -> Response<Body> {
    let body = json_text(value);
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Body::Text(body))
        .unwrap_or_else(|_| Response::new(Body::Empty))
}

/// A value as the API's JSON text (what [`json`] sends).
pub fn json_text<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_string())
}

pub fn no_content() -> Response<Body> {
    Response::builder()
        .status(204)
        .body(Body::Empty)
        .unwrap_or_else(|_| Response::new(Body::Empty))
}

/// Parses a JSON request body into `T`; every way it can be wrong is a 4xx with a reason.
pub fn json_body<T: DeserializeOwned>(req: &Request) -> Result<T, ApiError> {
    if let Some(content_type) = req.headers().get(http::header::CONTENT_TYPE) {
        let content_type = content_type.to_str().unwrap_or_default().to_ascii_lowercase();
        let essence = content_type.split(';').next().unwrap_or_default().trim();
        if essence != "application/json" && !essence.ends_with("+json") {
            return Err(ApiError::UnsupportedMediaType(format!(
                "send the body as JSON with `Content-Type: application/json`, not `{essence}`"
            )));
        }
    }
    let bytes: &[u8] = req.body().as_ref();
    if bytes.len() > MAX_JSON_BODY {
        return Err(ApiError::PayloadTooLarge(format!(
            "the JSON body is {} bytes; the limit is {MAX_JSON_BODY}",
            bytes.len()
        )));
    }
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        None => return Err(ApiError::bad_request("invalid_json", "a JSON body is required")),
        // serde's derived structs also accept a sequence, read by position: `["text"]` would
        // be taken as `{"content": "text"}`. Every body of this API is an object.
        Some(b'{') => {}
        Some(_) => return Err(ApiError::bad_request("invalid_json", "the body must be a JSON object")),
    }
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request("invalid_json", format!("the body is not valid: {e}")))
}

pub fn query_param<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.query_string_parameters_ref().and_then(|q| q.first(name))
}

/// `?limit=`: default 20, 1..=100, anything else is a 400.
pub fn page_limit(req: &Request) -> Result<usize, ApiError> {
    match query_param(req, "limit") {
        None => Ok(DEFAULT_PAGE_SIZE),
        Some(raw) => raw
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_PAGE_SIZE).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_limit",
                    format!("`limit` must be a whole number from 1 to {MAX_PAGE_SIZE}"),
                )
            }),
    }
}

/// The full URL of another page of the list this request read: same scheme, host and path,
/// with `cursor` (and the page size, if the caller chose one).
pub fn page_url(req: &Request, cursor: &str, limit: usize) -> String {
    let scheme = req
        .headers()
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .filter(|p| *p == "http" || *p == "https")
        .unwrap_or("https");
    let host = req
        .headers()
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| match req.request_context_ref() {
            Some(RequestContext::ApiGatewayV2(ctx)) => ctx.domain_name.clone(),
            _ => None,
        })
        .unwrap_or_else(|| "localhost".to_string());
    let mut url = format!("{scheme}://{host}{}?cursor={cursor}", req.uri().path());
    if query_param(req, "limit").is_some() {
        url.push_str(&format!("&limit={limit}"));
    }
    url
}

/// A page's `next_page` and `previous_page` links: its cursors, sealed, on the route asked.
pub fn page_links(
    req: &Request,
    cursors: &CursorCodec,
    limit: usize,
    next: Option<&PageCursor>,
    previous: Option<&PageCursor>,
) -> (Option<String>, Option<String>) {
    let link = |c: &PageCursor| page_url(req, &cursors.encode(c), limit);
    (next.map(link), previous.map(link))
}

/// A ULID path parameter. Anything that is not one cannot name an item: 404.
pub fn path_id(req: &Request, name: &str, what: &str) -> Result<String, ApiError> {
    req.path_parameters_ref()
        .and_then(|p| p.first(name))
        .filter(|id| id.len() == 26 && ulid::Ulid::from_string(id).is_ok())
        .map(str::to_ascii_uppercase)
        .ok_or_else(|| ApiError::NotFound(format!("{what} not found")))
}

/// Deserializes a field that may be absent (`None`), `null` (`Some(None)`) or a value.
pub fn nullable<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    serde::Deserialize::deserialize(deserializer).map(Some)
}

/// A user id path parameter (as a token's `sub`, percent-decoded by API Gateway): one that
/// cannot be a user id names nobody, 404.
pub fn path_user_id(req: &Request, name: &str) -> Result<String, ApiError> {
    req.path_parameters_ref()
        .and_then(|p| p.first(name))
        .filter(|id| crate::auth::usable_user_id(id))
        .map(str::to_string)
        .ok_or_else(|| ApiError::NotFound("user not found".into()))
}

/// The request's `Idempotency-Key`, if it carries one (IETF httpapi draft): 1 to 255 visible
/// ASCII characters, else `400 invalid_idempotency_key`. Its fingerprint is the method, path
/// and `content`, what the request sends: a retry must send the same. `content` is the body,
/// or for a multipart upload the file it carries (a client draws a new boundary on each send).
pub fn idempotency(
    req: &Request,
    content: &[u8],
    render: std::sync::Arc<forum_store::idempotency::RenderAnswer>,
) -> Result<Option<forum_store::idempotency::Idempotency>, ApiError> {
    Ok(request_key(req, content)?.map(|key| forum_store::idempotency::Idempotency { key, render }))
}

/// The request's `Idempotency-Key` and fingerprint (see [`idempotency`]), to look an earlier
/// answer up with.
pub fn request_key(req: &Request, content: &[u8]) -> Result<Option<forum_store::idempotency::RequestKey>, ApiError> {
    use sha2::{Digest, Sha256};
    let Some(raw) = req.headers().get("idempotency-key") else {
        return Ok(None);
    };
    let max = forum_domain::limits::IDEMPOTENCY_KEY_CHARS.usize();
    // The draft's key is a structured-field string: a quoted one is read without its quotes.
    let key = raw
        .to_str()
        .ok()
        .map(|k| k.trim())
        .map(|k| k.strip_prefix('"').and_then(|k| k.strip_suffix('"')).unwrap_or(k))
        .filter(|k| !k.is_empty() && k.len() <= max && k.bytes().all(|b| b.is_ascii_graphic() || b == b' '))
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_idempotency_key",
                format!("`Idempotency-Key` must be 1 to {max} visible ASCII characters"),
            )
        })?;
    let hex = |digest: &[u8]| digest.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let mut fingerprint = Sha256::new();
    fingerprint.update(req.method().as_str().as_bytes());
    fingerprint.update([0]);
    fingerprint.update(req.uri().path().trim_end_matches('/').as_bytes());
    fingerprint.update([0]);
    fingerprint.update(content);
    Ok(Some(forum_store::idempotency::RequestKey {
        key_hash: hex(&Sha256::digest(key.as_bytes())),
        fingerprint: hex(&fingerprint.finalize()),
    }))
}

/// A stored answer given again, marked as such.
pub fn replayed(answer: &forum_store::idempotency::StoredAnswer) -> Response<Body> {
    let mut builder = Response::builder()
        .status(answer.status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header("idempotent-replayed", "true");
    if let Some(location) = &answer.location {
        builder = builder.header(http::header::LOCATION, location.as_str());
    }
    builder
        .body(Body::Text(answer.body.clone()))
        .unwrap_or_else(|_| Response::new(Body::Empty))
}

/// A created resource's answer, exactly as a replay will give it.
pub fn created(answer: &forum_store::idempotency::StoredAnswer) -> Response<Body> {
    let mut builder = Response::builder()
        .status(answer.status)
        .header(http::header::CONTENT_TYPE, "application/json");
    if let Some(location) = &answer.location {
        builder = builder.header(http::header::LOCATION, location.as_str());
    }
    builder
        .body(Body::Text(answer.body.clone()))
        .unwrap_or_else(|_| Response::new(Body::Empty))
}
