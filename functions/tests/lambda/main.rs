//! Every Lambda binary, started as Lambda starts it: the environment template.yaml gives it for
//! a parameter set (resolved as CloudFormation resolves it), Lambda's own variables, and a
//! Runtime API. Init must reach `GET /next`; the authorizer must then allow a correctly signed
//! token and refuse others. A configuration a function cannot run with must stop it at init,
//! naming the parameter, and never reach `/next`. The media functions' peak memory on the
//! worst inputs is in `memory.rs`.
//!
//! AWS endpoints point at a closed loopback port, so the warm-up fails at once and nothing
//! leaves the machine; init does not depend on reaching AWS. Secrets Manager is forum-local's
//! stand-in, holding the secrets a deployment's parameters name (functions read their keys from
//! it, never from their environment).

use std::collections::{BTreeMap, VecDeque};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use forum_local::runtime_api::{Shared, Timeline, lambda_variables, lock, serve_runtime_api};
use forum_local::secrets_local::LocalSecrets;
use forum_local::{Parameters, StackOptions};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use tokio::sync::OnceCell;

mod memory;

/// Every binary of this package, built by cargo for this test.
macro_rules! binaries {
    ($($name:literal),* $(,)?) => { &[$(($name, env!(concat!("CARGO_BIN_EXE_", $name)))),*] };
}
const BINARIES: &[(&str, &str)] = binaries![
    "authorizer",
    "block-user",
    "create-comment",
    "create-post",
    "delete-comment",
    "delete-post",
    "get-media",
    "get-post",
    "get-user",
    "like-post",
    "list-blocks",
    "list-comments",
    "list-notifications",
    "list-posts",
    "list-reports",
    "mark-read",
    "moderate",
    "moderation-log",
    "not-found",
    "presign-upload",
    "process-media",
    "report-comment",
    "report-post",
    "stream-fanout",
    "toggle-like",
    "unblock-user",
    "unlike-post",
    "unread-count",
    "update-comment",
    "update-post",
    "upload-media",
    "user-comments",
    "user-posts",
    "ws-connect",
    "ws-disconnect",
    "ws-message",
];

/// key-1, key-2 and ec-1 (JWKS), and the private halves of key-1 and ec-1.
use forum_testkit::keys::{EC_PRIVATE, EC_PUBLIC, JWKS, RSA_PRIVATE};

const ISSUER: &str = "https://issuer.forum.test";
const AUDIENCE: &str = "forum-api";
const LIMIT: Duration = Duration::from_secs(30);

fn own_secret() -> String {
    format!("{}{}", ulid::Ulid::new(), ulid::Ulid::new())
}

/// Secrets a deployment's parameters name, in an account of its own.
const JWT_ARN: &str = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:forum/jwt-AbCdEf";
const CURSOR_ARN: &str = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:forum/cursor-AbCdEf";
/// Secrets holding what no function may run with.
const PUBLIC_JWT_ARN: &str = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:forum/public-jwt-AbCdEf";
const PUBLIC_CURSOR_ARN: &str = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:forum/public-cursor-AbCdEf";
const SHORT_ARN: &str = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:forum/short-AbCdEf";
const MISSING_ARN: &str = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:forum/missing-AbCdEf";

/// The Secrets Manager stand-in every function of this test reads from (`AWS_ENDPOINT_URL_SECRETS_MANAGER`).
struct SecretsManager {
    secrets: std::sync::Arc<LocalSecrets>,
    endpoint: String,
}

async fn secrets_manager() -> &'static SecretsManager {
    static SERVER: OnceCell<SecretsManager> = OnceCell::const_new();
    SERVER
        .get_or_init(|| async {
            let secrets = std::sync::Arc::new(LocalSecrets::default());
            secrets.put(JWT_ARN, &own_secret());
            secrets.put(CURSOR_ARN, &own_secret());
            secrets.put(PUBLIC_JWT_ARN, forum_api::config::PUBLIC_DEVELOPMENT_SECRETS[0]);
            secrets.put(PUBLIC_CURSOR_ARN, forum_api::config::PUBLIC_DEVELOPMENT_SECRETS[1]);
            secrets.put(SHORT_ARN, "short");
            // The development ARNs of samconfig.toml, as forum-local's stand-in holds them.
            secrets
                .provision(
                    forum_local::secrets_local::DEVELOPMENT_SECRETS
                        .iter()
                        .map(|(name, _)| format!("arn:aws:secretsmanager:us-east-1:000000000000:secret:{name}")),
                )
                .expect("development secrets");
            // Its own runtime, so that it outlives each test's.
            let (tx, rx) = std::sync::mpsc::channel();
            let held = secrets.clone();
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Runtime::new().expect("runtime");
                runtime.block_on(async move {
                    let (endpoint, task) =
                        forum_local::secrets_local::start("127.0.0.1:0".parse().expect("addr"), held)
                            .await
                            .expect("the stand-in starts");
                    let _ = tx.send(endpoint);
                    let _ = task.await;
                });
            });
            let endpoint = rx.recv().expect("an endpoint");
            SecretsManager { secrets, endpoint }
        })
        .await
}

fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a port")
}

fn parameters(pairs: &[(&str, &str)]) -> Parameters {
    let mut p: Parameters = [
        ("JwtIssuer", ISSUER.to_string()),
        ("JwtAudience", AUDIENCE.to_string()),
        ("CursorSecretArn", CURSOR_ARN.to_string()),
        ("AllowedOrigins", "https://forum.example.com".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    for (k, v) in pairs {
        p.insert(k.to_string(), v.to_string());
    }
    p
}

fn options(parameters: Parameters) -> StackOptions {
    let mut options = StackOptions::local().expect("options");
    options.parameters = parameters;
    options
}

/// Each function's environment in a deployment with `parameters`: the template's own, and
/// what only AWS can name (CloudFront's domain, the WebSocket API) as a deployment has them.
fn deployed_environments(parameters: Parameters) -> BTreeMap<String, BTreeMap<String, String>> {
    let unreachable = format!("127.0.0.1:{}", closed_port());
    let overrides = BTreeMap::from([
        (
            "MEDIA_BASE_URL".to_string(),
            "https://d111111abcdef8.cloudfront.net".to_string(),
        ),
        ("WS_ENDPOINT".to_string(), format!("https://{unreachable}/live")),
    ]);
    options(parameters)
        .function_environments(&overrides)
        .expect("the parameter set is one CloudFormation accepts")
}

/// What a process did: reached `/next` (with the responses it gave), or exited with output.
enum Outcome {
    Ready(Vec<Value>),
    Exited(String),
}

/// Starts `binary` with `env` (and nothing else of this process's environment) against its
/// own Runtime API, hands it `events`, and waits for init plus one response per event.
async fn start(binary: &str, name: &str, env: &BTreeMap<String, String>, events: Vec<Value>) -> Outcome {
    start_measured(binary, name, env, events).await.0
}

/// [`start`], also giving the process's peak resident memory in KiB (`VmHWM`): what Lambda
/// holds against the function's `MemorySize`.
async fn start_measured(
    binary: &str,
    name: &str,
    env: &BTreeMap<String, String>,
    events: Vec<Value>,
) -> (Outcome, u64) {
    let expected = events.len();
    let timeline: Shared<Timeline> = Arc::new(Mutex::new(Timeline {
        events: VecDeque::from(events),
        ..Timeline::default()
    }));
    let (api, server) = serve_runtime_api(timeline.clone()).await.expect("runtime API");
    let unreachable = format!("http://127.0.0.1:{}", closed_port());
    let secrets = secrets_manager().await.endpoint.clone();
    let mut vars = env.clone();
    vars.extend(lambda_variables(name, api));
    for (k, v) in [
        ("AWS_REGION", "eu-west-1"),
        ("AWS_DEFAULT_REGION", "eu-west-1"),
        // The role's credentials, as Lambda hands them over (the stand-in checks signatures).
        ("AWS_ACCESS_KEY_ID", forum_store::aws::LOCAL_ACCESS_KEY),
        ("AWS_SECRET_ACCESS_KEY", forum_store::aws::LOCAL_SECRET_KEY),
        ("AWS_ENDPOINT_URL", unreachable.as_str()),
        ("AWS_ENDPOINT_URL_DYNAMODB", unreachable.as_str()),
        ("AWS_ENDPOINT_URL_S3", unreachable.as_str()),
        ("AWS_ENDPOINT_URL_SECRETS_MANAGER", secrets.as_str()),
    ] {
        vars.entry(k.to_string()).or_insert_with(|| v.to_string());
    }
    let mut child = tokio::process::Command::new(binary)
        .env_clear()
        .envs(&vars)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the binary starts");
    let started = Instant::now();
    let outcome = loop {
        {
            let t = lock(&timeline);
            if !t.errors.is_empty() {
                break Outcome::Exited(format!("runtime errors: {:?}", t.errors));
            }
            if !t.next_calls.is_empty() && t.responses.len() >= expected {
                break Outcome::Ready(t.responses.clone());
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            let mut output = String::new();
            for pipe in [
                child
                    .stdout
                    .take()
                    .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
                child
                    .stderr
                    .take()
                    .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
            ]
            .into_iter()
            .flatten()
            {
                let mut pipe = pipe;
                let _ = pipe.read_to_string(&mut output).await;
            }
            break Outcome::Exited(format!("{status}: {output}"));
        }
        if started.elapsed() > LIMIT {
            break Outcome::Exited(format!("{name}: no /next within {LIMIT:?}"));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let peak_kib = child.id().map(peak_resident_kib).unwrap_or_default();
    let _ = child.kill().await;
    server.abort();
    (outcome, peak_kib)
}

/// A running process's `VmHWM` (peak resident set), in KiB.
fn peak_resident_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or_default()
}

/// A file of the repository as JSON (`events/...`, `local/sam-env.json`).
fn repo_json(path: &str) -> Value {
    let full = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path);
    let text = std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn authorizer_event(token: &str) -> Value {
    let mut event = repo_json("events/authorizer.json");
    event["headers"]["authorization"] = json!(format!("Bearer {token}"));
    event["identitySource"] = json!([format!("Bearer {token}")]);
    event
}

fn websocket_authorizer_event(token: &str) -> Value {
    let mut event = repo_json("events/ws-authorizer.json");
    event["queryStringParameters"]["token"] = json!(token);
    event
}

fn sign(algorithm: Algorithm, kid: Option<&str>, key: &EncodingKey, issuer: &str) -> String {
    let mut header = Header::new(algorithm);
    header.kid = kid.map(str::to_string);
    let claims = json!({
        "sub": "user-1", "preferred_username": "alice",
        "exp": chrono::Utc::now().timestamp() + 600,
        "iss": issuer, "aud": AUDIENCE,
    });
    jsonwebtoken::encode(&header, &claims, key).expect("signs")
}

/// Starts all thirty-six with their environments; the authorizer gets a good token, a forged one
/// and one from another issuer, over both APIs. Panics with every failure.
async fn every_function_starts(environments: &BTreeMap<String, BTreeMap<String, String>>, good: &str, forged: &str) {
    let names: Vec<&str> = BINARIES.iter().map(|(n, _)| *n).collect();
    let in_template: Vec<&str> = environments.keys().map(String::as_str).collect();
    assert_eq!(
        names, in_template,
        "this test starts every function the template deploys"
    );
    let wrong_issuer_key = EncodingKey::from_secret(b"a key nobody configured, long enough to sign");
    let wrong_issuer = sign(Algorithm::HS256, None, &wrong_issuer_key, "https://elsewhere.test");
    let runs = BINARIES.iter().map(|(name, path)| {
        let events = if *name == "authorizer" {
            vec![
                authorizer_event(good),
                authorizer_event(forged),
                authorizer_event(&wrong_issuer),
                websocket_authorizer_event(good),
                websocket_authorizer_event(forged),
            ]
        } else {
            Vec::new()
        };
        async move { (*name, start(path, name, &environments[*name], events).await) }
    });
    let mut failures = Vec::new();
    for (name, outcome) in futures::future::join_all(runs).await {
        match outcome {
            Outcome::Exited(why) => failures.push(format!("{name} did not start: {why}")),
            Outcome::Ready(responses) if name == "authorizer" => {
                let http_refusal = |r: &Value| r["context"]["auth_error"].as_str().map(str::to_string);
                if http_refusal(&responses[0]).is_some() || responses[0]["context"]["user_id"] != "user-1" {
                    failures.push(format!("the authorizer refused a good token: {}", responses[0]));
                }
                for refused in &responses[1..3] {
                    if http_refusal(refused).is_none() {
                        failures.push(format!("the authorizer accepted a bad token: {refused}"));
                    }
                }
                let effect = |r: &Value| r["policyDocument"]["Statement"][0]["Effect"].clone();
                if effect(&responses[3]) != "Allow" || effect(&responses[4]) != "Deny" {
                    failures.push(format!("WebSocket $connect: {} / {}", responses[3], responses[4]));
                }
            }
            Outcome::Ready(_) => {}
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[tokio::test]
async fn every_function_starts_with_rs256_and_a_jwks_key_set() {
    let environments = deployed_environments(parameters(&[("JwtAlgorithm", "RS256"), ("JwtPublicKey", JWKS)]));
    let key = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).expect("RSA key");
    let good = sign(Algorithm::RS256, Some("key-1"), &key, ISSUER);
    // Signed by the right key but naming a key the set does not hold.
    let forged = sign(Algorithm::RS256, Some("key-9"), &key, ISSUER);
    every_function_starts(&environments, &good, &forged).await;
}

#[tokio::test]
async fn every_function_starts_with_es256_and_a_pem_key() {
    let environments = deployed_environments(parameters(&[("JwtAlgorithm", "ES256"), ("JwtPublicKey", EC_PUBLIC)]));
    let key = EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).expect("EC key");
    let good = sign(Algorithm::ES256, None, &key, ISSUER);
    // Algorithm confusion: HS256 "signed" with the public key's text.
    let forged = sign(
        Algorithm::HS256,
        None,
        &EncodingKey::from_secret(EC_PUBLIC.as_bytes()),
        ISSUER,
    );
    every_function_starts(&environments, &good, &forged).await;
}

#[tokio::test]
async fn every_function_starts_with_hs256_and_a_secret_of_its_own() {
    let secret = secrets_manager().await.secrets.current(JWT_ARN).expect("held");
    let environments = deployed_environments(parameters(&[("JwtAlgorithm", "HS256"), ("JwtSecretArn", JWT_ARN)]));
    for env in environments.values() {
        assert!(
            !env.values().any(|v| v == &secret),
            "the key is read from Secrets Manager, never placed in an environment"
        );
    }
    let good = sign(
        Algorithm::HS256,
        None,
        &EncodingKey::from_secret(secret.as_bytes()),
        ISSUER,
    );
    let published = forum_api::config::PUBLIC_DEVELOPMENT_SECRETS[0];
    let forged = sign(
        Algorithm::HS256,
        None,
        &EncodingKey::from_secret(published.as_bytes()),
        ISSUER,
    );
    every_function_starts(&environments, &good, &forged).await;
}

#[tokio::test]
async fn sam_local_runs_every_function_with_the_repositorys_development_set() {
    // What `sam local` gives a function: samconfig.toml's local parameter set, AWS_SAM_LOCAL,
    // and local/sam-env.json's endpoints (here closed ports).
    let dev = StackOptions::local().expect("options");
    let unreachable = format!("http://127.0.0.1:{}", closed_port());
    let overrides = BTreeMap::from([
        ("MEDIA_BASE_URL".to_string(), "http://127.0.0.1:3001".to_string()),
        ("WS_ENDPOINT".to_string(), unreachable.clone()),
        ("FORUM_LOCAL_DYNAMODB_ENDPOINT".to_string(), unreachable.clone()),
        ("FORUM_LOCAL_S3_ENDPOINT".to_string(), unreachable.clone()),
        (
            "FORUM_LOCAL_SECRETS_ENDPOINT".to_string(),
            secrets_manager().await.endpoint.clone(),
        ),
    ]);
    let mut environments = dev.function_environments(&overrides).expect("the local set resolves");
    for env in environments.values_mut() {
        env.insert("AWS_SAM_LOCAL".into(), "true".into());
    }
    let jwt = dev.token_mint().expect("local JWT settings");
    let good = forum_testkit::issue_token(&jwt, "user-1", "alice", None, 600).expect("token");
    let forged = sign(
        Algorithm::HS256,
        None,
        &EncodingKey::from_secret(b"not the local secret at all, sorry"),
        "forum-local",
    );
    every_function_starts(&environments, &good, &forged).await;
}

/// Starts one function with `env` and expects it to stop at init with a message naming `needle`.
async fn refuses_to_start(binary: &str, env: &BTreeMap<String, String>, needle: &str) {
    let path = BINARIES
        .iter()
        .find(|(n, _)| *n == binary)
        .map(|(_, p)| *p)
        .expect("a binary");
    match start(path, binary, env, Vec::new()).await {
        Outcome::Ready(_) => panic!("{binary} started with {needle} wrong"),
        Outcome::Exited(output) => assert!(output.contains(needle), "{binary} should name {needle}: {output}"),
    }
}

#[tokio::test]
async fn a_function_without_what_it_needs_does_not_start() {
    let hs256 = deployed_environments(parameters(&[("JwtAlgorithm", "HS256"), ("JwtSecretArn", JWT_ARN)]));

    // CloudFormation (and forum-local) refuse the parameter set itself ...
    for bad in [
        parameters(&[("JwtAlgorithm", "HS256")]),
        parameters(&[("JwtAlgorithm", "HS256"), ("JwtSecretArn", "forum/jwt")]),
        parameters(&[("JwtAlgorithm", "RS256")]),
        parameters(&[
            ("JwtAlgorithm", "RS256"),
            ("JwtJwksUrl", "http://issuer.test/jwks.json"),
        ]),
        parameters(&[
            ("JwtAlgorithm", "RS256"),
            ("JwtPublicKey", JWKS),
            ("JwtSecretArn", JWT_ARN),
        ]),
        parameters(&[
            ("JwtAlgorithm", "HS256"),
            ("JwtSecretArn", JWT_ARN),
            ("CursorSecretArn", "x"),
        ]),
    ] {
        assert!(
            options(bad.clone()).function_environments(&BTreeMap::new()).is_err(),
            "{bad:?}"
        );
    }

    // ... and a function given such an environment anyway (say, edited in the console), or
    // whose secret holds what no function may run with, stops.
    let with = |binary: &str, name: &str, value: Option<&str>| {
        let mut env = hs256[binary].clone();
        match value {
            Some(value) => env.insert(name.into(), value.into()),
            None => env.remove(name),
        };
        env
    };
    for (binary, env, needle) in [
        (
            "authorizer",
            with("authorizer", "FORUM_JWT_SECRET_ARN", Some("")),
            "FORUM_JWT_SECRET_ARN (template parameter JwtSecretArn)",
        ),
        (
            "authorizer",
            with("authorizer", "FORUM_JWT_SECRET_ARN", Some(PUBLIC_JWT_ARN)),
            "public development value",
        ),
        (
            "authorizer",
            with("authorizer", "FORUM_JWT_SECRET_ARN", Some(SHORT_ARN)),
            "shorter than 32",
        ),
        (
            "authorizer",
            with("authorizer", "FORUM_JWT_SECRET_ARN", Some(MISSING_ARN)),
            "cannot be read",
        ),
        (
            "list-posts",
            with("list-posts", "FORUM_CURSOR_SECRET_ARN", None),
            "CursorSecretArn",
        ),
        (
            "list-comments",
            with("list-comments", "FORUM_CURSOR_SECRET_ARN", Some(PUBLIC_CURSOR_ARN)),
            "public development value",
        ),
    ] {
        refuses_to_start(binary, &env, needle).await;
    }
    // Local endpoints sign with public credentials: never in a deployment.
    let mut local = hs256["get-post"].clone();
    local.insert("FORUM_LOCAL_DYNAMODB_ENDPOINT".into(), "http://127.0.0.1:8000".into());
    local.insert("FORUM_LOCAL_S3_ENDPOINT".into(), "http://127.0.0.1:9000".into());
    local.insert("FORUM_LOCAL_SECRETS_ENDPOINT".into(), "http://127.0.0.1:9100".into());
    refuses_to_start("get-post", &local, "FORUM_LOCAL_DYNAMODB_ENDPOINT").await;
}

#[tokio::test]
async fn sam_local_functions_work_against_forum_locals_data_plane() {
    // forum-local's data plane in process, on free ports instead of the fixed 8000/9000/3001.
    let mut options = StackOptions::local().expect("options");
    options.listen = "127.0.0.1:0".parse().expect("addr");
    options.storage = forum_local::Storage::InMemory;
    let stack = forum_local::Stack::start(options).await.expect("the data plane starts");
    let mut environments = data_plane_environments(&stack);
    let env = environments.remove("create-post").expect("create-post");

    let event = repo_json("events/create-post.json");
    let path = BINARIES
        .iter()
        .find(|(n, _)| *n == "create-post")
        .map(|(_, p)| *p)
        .expect("binary");
    let responses = match start(path, "create-post", &env, vec![event]).await {
        Outcome::Ready(responses) => responses,
        Outcome::Exited(why) => panic!("create-post did not run: {why}"),
    };
    assert_eq!(responses[0]["statusCode"], 201, "{}", responses[0]);
    let created: Value = serde_json::from_str(responses[0]["body"].as_str().expect("a body")).expect("JSON");

    // The post is in the data plane's table: forum-local's own API lists it.
    let token = forum_testkit::issue_token(&stack.jwt, "reader", "reader", None, 600).expect("token");
    let page: Value = reqwest_get(&format!("{}/api/forum/posts/", stack.base_url()), &token).await;
    assert!(
        page["posts"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["id"] == created["id"])),
        "{page}"
    );
    stack.shutdown().await;
}

/// Each function's environment as `sam local` runs it against forum-local's data plane
/// (local/sam-env.json, its fixed ports mapped to `stack`'s).
fn data_plane_environments(stack: &forum_local::Stack) -> BTreeMap<String, BTreeMap<String, String>> {
    // local/sam-env.json as SAM's containers get it, its fixed ports mapped to this run's.
    let file = repo_json("local/sam-env.json");
    let port = |endpoint: &str| endpoint.rsplit(':').next().unwrap_or_default().to_string();
    let actual = BTreeMap::from([
        ("8000".to_string(), port(&stack.dynamodb_endpoint)),
        ("9000".to_string(), port(&stack.s3_endpoint)),
        ("9100".to_string(), port(&stack.secrets_endpoint)),
        ("3001".to_string(), stack.http_addr.port().to_string()),
    ]);
    let overrides: BTreeMap<String, String> = file["Parameters"]
        .as_object()
        .expect("a Parameters block for every function")
        .iter()
        .map(|(k, v)| {
            let v = v
                .as_str()
                .expect("a string")
                .replace("host.docker.internal", "127.0.0.1");
            let v = match v.rsplit_once(':') {
                Some((head, p)) if p.chars().all(|c| c.is_ascii_digit()) => {
                    format!(
                        "{head}:{}",
                        actual
                            .get(p)
                            .unwrap_or_else(|| panic!("{k}: no data-plane service on port {p}"))
                    )
                }
                _ => v,
            };
            (k.clone(), v)
        })
        .collect();
    let mut environments = StackOptions::local()
        .expect("options")
        .function_environments(&overrides)
        .expect("the local set resolves");
    for env in environments.values_mut() {
        env.insert("AWS_SAM_LOCAL".into(), "true".into());
    }
    environments
}

async fn reqwest_get(url: &str, token: &str) -> Value {
    let client = reqwest::Client::new();
    let response = client.get(url).bearer_auth(token).send().await.expect("an answer");
    response.json().await.expect("JSON")
}
