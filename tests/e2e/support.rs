//! Test support: one Amazon DynamoDB Local per test run (started here, stopped when the
//! process exits), forum-local stacks on top of it, HTTP clients for users, and validation of
//! every response against `openapi.yaml`.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use forum_local::{DynamoDbLocal, Stack, StackOptions, Storage};
use reqwest::Method;
use serde_json::Value;
use tokio::runtime::Runtime;
use tokio::sync::OnceCell;

/// A runtime that outlives every test, so shared servers keep running between tests.
fn background() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("test runtime")
    })
}

/// Runs `task` on the runtime that outlives every test (servers a stack calls).
pub fn spawn_background<F>(task: F)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    background().spawn(task);
}

/// The endpoint of this test run's DynamoDB Local (in memory).
pub async fn dynamodb_endpoint() -> String {
    static ENDPOINT: OnceCell<String> = OnceCell::const_new();
    ENDPOINT
        .get_or_init(|| async {
            background()
                .spawn(async {
                    let local = DynamoDbLocal::start(Storage::InMemory)
                        .await
                        .expect("DynamoDB Local starts");
                    let endpoint = local.endpoint().to_string();
                    // Kept for the whole run; its watchdog stops Java when this process exits.
                    std::mem::forget(local);
                    endpoint
                })
                .await
                .expect("DynamoDB Local task")
        })
        .await
        .clone()
}

/// The stack options tests run with: the bundled template and samconfig.toml's local
/// parameter set (what forum-local runs), a table of their own, and rate limits high enough
/// for tests that post a lot (`limits` tests the real ones). Every function's environment is
/// resolved from the template, as a deployment resolves it.
pub fn test_options(table: &str) -> StackOptions {
    let mut options = StackOptions::local()
        .expect("the local parameter set")
        .parameter("RatePostsPerMinute", "10000")
        .parameter("RateCommentsPerMinute", "10000")
        .parameter("RateLikesPerMinute", "10000")
        .parameter("RateEditsPerMinute", "10000")
        .parameter("RateUploadsPerMinute", "10000")
        .parameter("RateReportsPerMinute", "10000")
        .parameter("RateSubscriptionsPerMinute", "10000");
    options.listen = "127.0.0.1:0".parse().expect("addr");
    options.storage = Storage::InMemory;
    options.table_name = table.to_string();
    options
}

pub struct TestStack {
    pub base: String,
    /// Signs tokens the stack's authorizer accepts (its HS256 key, as Secrets Manager holds it).
    pub jwt: forum_testkit::TokenMint,
    pub table_name: String,
    /// The list functions' cursor key, as the Secrets Manager stand-in holds it.
    pub cursor_secret: String,
    pub stack: Arc<Stack>,
}

/// Starts a stack (its own table) on the long-lived runtime.
pub async fn start_stack(mut options: StackOptions, dynamodb_endpoint: Option<String>) -> TestStack {
    options.dynamodb_endpoint = Some(match dynamodb_endpoint {
        Some(e) => e,
        None => self::dynamodb_endpoint().await,
    });
    let table_name = options.table_name.clone();
    let stack = background()
        .spawn(async move { Stack::start(options).await })
        .await
        .expect("stack task")
        .expect("stack starts");
    TestStack {
        base: stack.base_url(),
        jwt: stack.jwt.clone(),
        table_name,
        cursor_secret: stack
            .secrets
            .current(&stack.environments["list-posts"]["FORUM_CURSOR_SECRET_ARN"])
            .expect("the cursor key is held"),
        stack: Arc::new(stack),
    }
}

/// The stack most tests share. Tests on it use users of their own, so they never collide.
pub async fn shared_stack() -> &'static TestStack {
    static STACK: OnceCell<TestStack> = OnceCell::const_new();
    STACK
        .get_or_init(|| async { start_stack(test_options("forum-e2e"), None).await })
        .await
}

/// A stack with a fresh table, for tests that need to see the whole feed.
pub async fn isolated_stack() -> TestStack {
    start_stack(test_options(&format!("forum-{}", ulid::Ulid::new())), None).await
}

/// A unique username, so concurrent tests never share users.
pub fn unique(name: &str) -> String {
    format!("{name}_{}", &ulid::Ulid::new().to_string()[20..])
}

impl TestStack {
    /// A client for a new user (token from the stack's own JWT settings).
    pub fn user(&self, name: &str) -> Client {
        let username = unique(name);
        let user_id = forum_testkit::local_user_id(&username);
        self.user_with_id(&username, user_id)
    }

    /// A client for the user `user_id` (as its token's `sub`), named `username`.
    pub fn user_with_id(&self, username: &str, user_id: String) -> Client {
        let username = username.to_string();
        let token = forum_testkit::issue_token(
            &self.jwt,
            &user_id,
            &username,
            Some("https://cdn.example.com/a.png"),
            3600,
        )
        .expect("token");
        Client {
            base: self.base.clone(),
            token: Some(token),
            user_id,
            username,
            extra_headers: Vec::new(),
        }
    }

    /// A client for a new user whose token carries `claims` beside the usual ones.
    pub fn user_with_claims(&self, name: &str, claims: Value) -> Client {
        let username = unique(name);
        let user_id = forum_testkit::local_user_id(&username);
        let extra = claims.as_object().cloned().unwrap_or_default();
        let token = forum_testkit::issue_token_with(&self.jwt, &user_id, &username, None, 3600, extra).expect("token");
        Client {
            base: self.base.clone(),
            token: Some(token),
            user_id,
            username,
            extra_headers: Vec::new(),
        }
    }

    /// The same user as `client`, with a moderator's token.
    pub fn as_moderator(&self, client: &Client) -> Client {
        let claims = self
            .jwt
            .role_claims("moderator")
            .expect("the stack names a moderator group");
        let token = forum_testkit::issue_token_with(&self.jwt, &client.user_id, &client.username, None, 3600, claims)
            .expect("token");
        client.with_token(&token)
    }

    /// A client for a new moderator: the group claim and group the template configures
    /// (`RoleClaim`, `ModeratorGroups`), as the identity provider would issue it.
    pub fn moderator(&self, name: &str) -> Client {
        let claims = self
            .jwt
            .role_claims("moderator")
            .expect("the stack names a moderator group");
        self.user_with_claims(name, Value::Object(claims))
    }

    /// A client that sends no token at all.
    pub fn anonymous(&self) -> Client {
        Client {
            base: self.base.clone(),
            token: None,
            user_id: String::new(),
            username: String::new(),
            extra_headers: Vec::new(),
        }
    }
}

/// A client without a connection pool: pooled connections belong to the runtime that opened
/// them, and every test has its own runtime.
fn http() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(0)
            .build()
            .expect("http client")
    })
}

/// An answer from the API, already checked against openapi.yaml.
impl TestStack {
    /// An item as stored (a consistent GetItem), or an empty map when there is none: what a
    /// test checks behind the API's back.
    pub async fn stored_item(
        &self,
        pk: &str,
        sk: &str,
    ) -> std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue> {
        use aws_sdk_dynamodb::types::AttributeValue;
        let out = self
            .stack
            .dynamodb
            .get_item()
            .table_name(&self.table_name)
            .key("pk", AttributeValue::S(pk.to_string()))
            .key("sk", AttributeValue::S(sk.to_string()))
            .consistent_read(true)
            .send()
            .await
            .expect("GetItem");
        out.item().cloned().unwrap_or_default()
    }

    /// How long the read functions serve a post or a feed page from memory, as the template
    /// configures them: the staleness bound the API states for lists and post reads.
    pub fn read_cache_ttl(&self) -> std::time::Duration {
        let ms = &self.stack.environments["get-post"]["FORUM_READ_CACHE_TTL_MS"];
        std::time::Duration::from_millis(ms.parse().expect("a number of milliseconds"))
    }

    /// Reads until `holds` is true of the answer, which must happen within the read cache's
    /// TTL (plus the reads' own time): the API's staleness bound, asserted.
    pub async fn within_staleness_bound<F, Fut>(
        &self,
        what: &str,
        mut read: F,
        holds: impl Fn(&Answer) -> bool,
    ) -> Answer
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Answer>,
    {
        let deadline = std::time::Instant::now() + self.read_cache_ttl() + std::time::Duration::from_millis(500);
        loop {
            let answer = read().await;
            if holds(&answer) {
                return answer;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{what}: still not seen {:?} after the write: {}",
                self.read_cache_ttl(),
                answer.body
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts the API's error shape with this status and code.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "unexpected status; body: {}", self.body);
        assert_eq!(self.body["error"]["code"], code, "body: {}", self.body);
        assert!(self.body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert!(self.body["error"]["request_id"].as_str().is_some_and(|m| !m.is_empty()));
    }
}

/// Reads with `read` every 100 ms until what it answers `holds` (what the stream does after a
/// write lands a moment later), and answers that; fails with `what` and the last answer after
/// 15 s.
pub async fn eventually<T, F, Fut>(what: &str, mut read: F, holds: impl Fn(&T) -> bool) -> T
where
    T: std::fmt::Debug,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let seen = read().await;
        if holds(&seen) {
            return seen;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: still {seen:?} after 15 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sends a request again while it is answered `503` (at most 8 times), as a client that keeps
/// its requests does: waits its `Retry-After`, doubled with each attempt up to 4x, plus up to
/// a second of jitter, so clients refused together do not all come back together. Returns
/// the last answer and how many `503`s came before it. A loaded machine makes DynamoDB Local
/// miss a request's deadline; what such a client then sees (with an `Idempotency-Key`,
/// exactly one write) is what the tests hold.
pub async fn until_answered<F, Fut>(mut send: F) -> (Answer, u32)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Answer>,
{
    let mut unavailable = 0;
    loop {
        let answer = send().await;
        if answer.status != 503 || unavailable == 8 {
            return (answer, unavailable);
        }
        let retry_after: u64 = answer.header("retry-after").and_then(|s| s.parse().ok()).unwrap_or(1);
        let jitter = (ulid::Ulid::new().random() % 1000) as u64;
        tokio::time::sleep(Duration::from_secs(retry_after << unavailable.min(2)) + Duration::from_millis(jitter))
            .await;
        unavailable += 1;
    }
}

#[derive(Clone)]
pub struct Client {
    pub base: String,
    pub token: Option<String>,
    pub user_id: String,
    pub username: String,
    pub extra_headers: Vec<(String, String)>,
}

impl Client {
    /// The same user, sending one more header with every request.
    pub fn with_header(&self, name: &str, value: &str) -> Client {
        let mut client = self.clone();
        client.extra_headers.push((name.to_string(), value.to_string()));
        client
    }

    pub fn with_token(&self, token: &str) -> Client {
        Client {
            token: Some(token.to_string()),
            ..self.clone()
        }
    }

    /// Sends a request; `path` may be relative to the stack or a full URL (`next_page`).
    pub async fn send(&self, method: Method, path: &str, body: Option<RequestBody>) -> Answer {
        let url = if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        };
        let mut request = http().request(method.clone(), &url);
        if let Some(token) = &self.token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        for (name, value) in &self.extra_headers {
            request = request.header(name, value);
        }
        request = match body {
            Some(RequestBody::Json(value)) => request.json(&value),
            Some(RequestBody::Raw { content_type, bytes }) => request.header("content-type", content_type).body(bytes),
            None => request,
        };
        let response = request.send().await.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                panic!(
                    "{method} {url} answered non-JSON ({e}): {}",
                    String::from_utf8_lossy(&bytes)
                )
            })
        };
        let path_only = reqwest::Url::parse(&url).expect("url").path().to_string();
        openapi().check(method.as_str(), &path_only, status, &body);
        Answer { status, headers, body }
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Answer {
        self.send(Method::POST, path, Some(RequestBody::Json(body))).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Answer {
        self.send(Method::PATCH, path, Some(RequestBody::Json(body))).await
    }

    pub async fn delete(&self, path: &str) -> Answer {
        self.send(Method::DELETE, path, None).await
    }

    /// Creates a post and returns it, asserting success.
    pub async fn create_post(&self, content: &str) -> Value {
        let answer = self
            .post("/api/forum/posts/", serde_json::json!({ "content": content }))
            .await;
        assert_eq!(answer.status, 201, "{}", answer.body);
        answer.body
    }
}

pub enum RequestBody {
    Json(Value),
    Raw { content_type: &'static str, bytes: Vec<u8> },
}

/// `openapi.yaml`, and validation of real responses against it.
pub struct OpenApi {
    doc: Value,
    validators: std::sync::Mutex<HashMap<String, Arc<jsonschema::Validator>>>,
}

pub fn openapi() -> &'static OpenApi {
    static DOC: OnceLock<OpenApi> = OnceLock::new();
    DOC.get_or_init(|| {
        let text = include_str!("../../openapi.yaml");
        let doc: Value = serde_yaml_ng::from_str(text).expect("openapi.yaml parses");
        OpenApi {
            doc,
            validators: Default::default(),
        }
    })
}

fn pointer_escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

impl OpenApi {
    pub fn doc(&self) -> &Value {
        &self.doc
    }

    fn resolve<'a>(&'a self, value: &'a Value) -> &'a Value {
        match value.get("$ref").and_then(Value::as_str) {
            Some(r) => self.doc.pointer(r.trim_start_matches('#')).unwrap_or(value),
            None => value,
        }
    }

    /// A validator for the schema at a JSON pointer, with the whole document as its root so
    /// `$ref`s resolve.
    fn validator(&self, pointer: &str) -> Arc<jsonschema::Validator> {
        let mut cache = self.validators.lock().expect("lock");
        cache
            .entry(pointer.to_string())
            .or_insert_with(|| {
                let mut root = self.doc.clone();
                root["$schema"] = Value::from("https://json-schema.org/draft/2020-12/schema");
                root["$ref"] = Value::from(format!("#{pointer}"));
                Arc::new(
                    jsonschema::options()
                        .should_validate_formats(true)
                        .build(&root)
                        .unwrap_or_else(|e| panic!("schema at {pointer}: {e}")),
                )
            })
            .clone()
    }

    /// Validates a value against `#/components/schemas/<name>`.
    #[track_caller]
    pub fn assert_schema(&self, name: &str, value: &Value) {
        let validator = self.validator(&format!("/components/schemas/{name}"));
        let errors: Vec<String> = validator
            .iter_errors(value)
            .map(|e| format!("{e} at {}", e.instance_path))
            .collect();
        assert!(errors.is_empty(), "{value} does not match {name}: {errors:?}");
    }

    /// An error answer: the API's shape, or (401 without a token) API Gateway's own.
    #[track_caller]
    fn assert_error_shape(&self, status: u16, body: &Value) {
        if matches!(status, 401 | 500) && body.get("message").is_some() {
            self.assert_schema("GatewayMessage", body);
        } else {
            self.assert_schema("Error", body);
        }
    }

    /// Checks that the operation documents this status and that the body matches its schema.
    #[track_caller]
    pub fn check(&self, method: &str, path: &str, status: u16, body: &Value) {
        // OPTIONS is answered on every path without a token (openapi.yaml's introduction).
        if method == "OPTIONS" && (status == 204 || status == 404) {
            if status == 404 {
                self.assert_schema("Error", body);
            }
            return;
        }
        let paths = self.doc["paths"].as_object().expect("paths");
        let Some((template, item)) = paths
            .iter()
            .find(|(t, _)| forum_api::routes::match_path(t, path).is_some())
        else {
            // Unknown paths answer the generic error shape.
            if status != 404 && status != 401 {
                panic!("{method} {path}: undocumented path answered {status}");
            }
            self.assert_error_shape(status, body);
            return;
        };
        let method_lc = method.to_ascii_lowercase();
        let Some(operation) = item.get(&method_lc) else {
            assert!(
                matches!(status, 401 | 405),
                "{method} {path}: undocumented method answered {status}"
            );
            self.assert_error_shape(status, body);
            return;
        };
        let responses = &operation["responses"];
        let (key, response) = match responses.get(status.to_string()) {
            Some(r) => (status.to_string(), r),
            None => match responses.get("default") {
                Some(r) => ("default".to_string(), r),
                None => {
                    panic!("{method} {template}: status {status} is not documented; body {body}")
                }
            },
        };
        let response = self.resolve(response);
        let Some(content) = response.get("content").and_then(|c| c.get("application/json")) else {
            assert!(
                body.is_null(),
                "{method} {template} {status}: documented without a body, got {body}"
            );
            return;
        };
        let pointer = match response
            .pointer("/content/application~1json/schema/$ref")
            .and_then(Value::as_str)
        {
            Some(r) => r.trim_start_matches('#').to_string(),
            None if content.get("schema").is_some() => {
                if let Some(r) = responses.get(&key).and_then(|r| r.get("$ref")).and_then(Value::as_str) {
                    format!("{}/content/application~1json/schema", r.trim_start_matches('#'))
                } else {
                    format!(
                        "/paths/{}/{method_lc}/responses/{key}/content/application~1json/schema",
                        pointer_escape(template)
                    )
                }
            }
            None => return,
        };
        let validator = self.validator(&pointer);
        let errors: Vec<String> = validator
            .iter_errors(body)
            .map(|e| format!("{e} at {}", e.instance_path))
            .collect();
        assert!(
            errors.is_empty(),
            "{method} {path} {status}: {body} does not match openapi.yaml: {errors:?}"
        );
    }
}
