//! Cold starts: every function binary, built with the release profile exactly as it is
//! packaged for Lambda, is exec'd against a minimal Lambda Runtime API served here, next to a
//! hello-world `lambda_runtime` binary built the same way. Per binary, the medians of:
//!
//! - init: exec until the runtime's first `GET /runtime/invocation/next` (what Lambda reports
//!   as Init Duration), and the part of it spent warming up: opening connections and building
//!   the profanity filter (the functions' own `warmed up during init` log line);
//! - the first and the second invocation: event handed over until its response is posted;
//! - connections the function opened to DynamoDB/S3/`@connections` during init and during the
//!   first invocation, counted by TCP proxies in front of the local services. In AWS every new
//!   connection is a TCP and TLS handshake: a first invocation that opens none paid for none.
//!
//! The services are forum-local's (DynamoDB Local, the in-process S3, `@connections`), reached
//! through `AWS_ENDPOINT_URL_*` as `sam local` would. `bash bench/cold_start.sh` builds and runs it.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use forum_local::{Stack, StackOptions};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::io::AsyncBufReadExt;
use tokio::net::{TcpListener, TcpStream};

#[derive(clap::Args, Clone)]
pub struct Args {
    /// Where the release binaries are (`cargo build --release -p functions` and
    /// `-p forum-bench --bin hello-world`).
    #[arg(long)]
    bin_dir: PathBuf,
    /// Cold starts per binary (the median is reported); one more, untimed, warms the page cache.
    #[arg(long, default_value_t = 9)]
    runs: usize,
    /// Only these binaries (default: every function in functions/src/bin).
    #[arg(long = "only")]
    only: Vec<String>,
}

const HELLO: &str = "hello-world";
/// Lambda's deadline for the event; the functions only read it.
const DEADLINE: Duration = Duration::from_secs(30);
/// A cold start that has not finished both invocations by then failed.
const RUN_LIMIT: Duration = Duration::from_secs(20);

/// What one cold start recorded.
#[derive(Default)]
struct Timeline {
    /// Each `GET /next` arrival.
    next_calls: Vec<Instant>,
    /// When each event was handed over.
    delivered: Vec<Instant>,
    /// When each response was posted.
    responded: Vec<Instant>,
    errors: Vec<String>,
    events: VecDeque<Value>,
}

type Shared<T> = Arc<Mutex<T>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn reply(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
}

/// The Runtime API (2018-06-01) as a function's runtime client uses it.
async fn runtime_api(req: Request<Incoming>, timeline: Shared<Timeline>) -> Response<Full<Bytes>> {
    let now = Instant::now();
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    match (method, path.as_str()) {
        (Method::GET, "/2018-06-01/runtime/invocation/next") => {
            let event = {
                let mut t = lock(&timeline);
                t.next_calls.push(now);
                let event = t.events.pop_front();
                if event.is_some() {
                    t.delivered.push(Instant::now());
                }
                event
            };
            let Some(event) = event else {
                // No more events: the runtime waits here until it is stopped, as in Lambda.
                std::future::pending::<()>().await;
                return reply(StatusCode::NO_CONTENT, "");
            };
            let n = lock(&timeline).delivered.len();
            let deadline = std::time::SystemTime::now() + DEADLINE;
            let deadline_ms = deadline
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or_default();
            let mut response = reply(StatusCode::OK, event.to_string());
            let headers = response.headers_mut();
            let pairs = [
                ("lambda-runtime-aws-request-id", format!("cold-start-{n}")),
                ("lambda-runtime-deadline-ms", deadline_ms.to_string()),
                (
                    "lambda-runtime-invoked-function-arn",
                    "arn:aws:lambda:us-east-1:123456789012:function:bench".to_string(),
                ),
                (
                    "lambda-runtime-trace-id",
                    "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0".to_string(),
                ),
                ("content-type", "application/json".to_string()),
            ];
            for (name, value) in pairs {
                if let Ok(value) = value.parse() {
                    headers.insert(name, value);
                }
            }
            response
        }
        (Method::POST, p) if p.starts_with("/2018-06-01/runtime/invocation/") && p.ends_with("/response") => {
            lock(&timeline).responded.push(now);
            reply(StatusCode::ACCEPTED, r#"{"status":"OK"}"#)
        }
        (Method::POST, p) if p.ends_with("/error") => {
            lock(&timeline)
                .errors
                .push(format!("{p}: {}", String::from_utf8_lossy(&body)));
            reply(StatusCode::ACCEPTED, r#"{"status":"OK"}"#)
        }
        _ => reply(StatusCode::NOT_FOUND, "unknown Runtime API path"),
    }
}

async fn serve_runtime_api(timeline: Shared<Timeline>) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let timeline = timeline.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let timeline = timeline.clone();
                    async move { Ok::<_, std::convert::Infallible>(runtime_api(req, timeline).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok((addr, task))
}

/// A TCP proxy in front of one local service, noting when each connection was opened.
struct CountingProxy {
    addr: SocketAddr,
    opened: Shared<Vec<Instant>>,
}

impl CountingProxy {
    async fn start(upstream: String) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let opened: Shared<Vec<Instant>> = Arc::default();
        let log = opened.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                lock(&log).push(Instant::now());
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Ok(CountingProxy { addr, opened })
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn opened_between(&self, from: Instant, to: Instant) -> usize {
        lock(&self.opened).iter().filter(|t| **t >= from && **t < to).count()
    }
}

/// `http://host:port` -> `host:port`.
fn host_port(endpoint: &str) -> String {
    endpoint.trim_start_matches("http://").trim_end_matches('/').to_string()
}

struct Services {
    dynamodb: CountingProxy,
    s3: CountingProxy,
    connections: CountingProxy,
    bucket: String,
    table: String,
    media_base_url: String,
}

impl Services {
    fn opened_between(&self, from: Instant, to: Instant) -> usize {
        [&self.dynamodb, &self.s3, &self.connections]
            .iter()
            .map(|p| p.opened_between(from, to))
            .sum()
    }
}

/// One cold start's figures.
struct ColdStart {
    init: Duration,
    warm_up: Option<Duration>,
    first: Duration,
    second: Duration,
    connections_in_init: usize,
    connections_in_first: usize,
}

/// The event a binary is invoked with: its sample in events/ (hello-world echoes anything).
fn event_for(binary: &str) -> Result<Value, String> {
    if binary == HELLO {
        return Ok(serde_json::json!({"hello": "world"}));
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../events")
        .join(format!("{binary}.json"));
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// The `elapsed_ms` of the function's `warmed up during init` log line.
fn warm_up_of(line: &str) -> Option<Duration> {
    let value: Value = serde_json::from_str(line).ok()?;
    let fields = value.get("fields")?;
    (fields.get("message")?.as_str()? == "warmed up during init")
        .then(|| fields.get("elapsed_ms")?.as_f64())
        .flatten()
        .map(|ms| Duration::from_secs_f64(ms / 1000.0))
}

async fn cold_start(binary: &Path, name: &str, services: &Services) -> Result<ColdStart, String> {
    let event = event_for(name)?;
    let timeline: Shared<Timeline> = Arc::new(Mutex::new(Timeline {
        events: VecDeque::from([event.clone(), event]),
        ..Timeline::default()
    }));
    let (api, server) = serve_runtime_api(timeline.clone())
        .await
        .map_err(|e| format!("runtime API: {e}"))?;
    // What Lambda sets, and the function's configuration as template.yaml gives it.
    let env: Vec<(&str, String)> = vec![
        ("AWS_LAMBDA_RUNTIME_API", api.to_string()),
        ("AWS_LAMBDA_FUNCTION_NAME", name.to_string()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256".into()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
        ("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}")),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "cold-start".into()),
        ("AWS_REGION", shared::aws::LOCAL_REGION.into()),
        ("AWS_DEFAULT_REGION", shared::aws::LOCAL_REGION.into()),
        ("AWS_ACCESS_KEY_ID", shared::aws::LOCAL_ACCESS_KEY.into()),
        ("AWS_SECRET_ACCESS_KEY", shared::aws::LOCAL_SECRET_KEY.into()),
        ("AWS_ENDPOINT_URL_DYNAMODB", services.dynamodb.url()),
        ("AWS_ENDPOINT_URL_S3", services.s3.url()),
        ("WS_ENDPOINT", services.connections.url()),
        ("TABLE_NAME", services.table.clone()),
        ("MEDIA_BUCKET", services.bucket.clone()),
        ("MEDIA_BASE_URL", services.media_base_url.clone()),
        ("RUST_LOG", "info".into()),
    ];
    let spawned = Instant::now();
    let mut child = tokio::process::Command::new(binary)
        .env_clear()
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("{}: {e}", binary.display()))?;
    let warm_up: Shared<Option<Duration>> = Arc::default();
    if let Some(stdout) = child.stdout.take() {
        let warm_up = warm_up.clone();
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(elapsed) = warm_up_of(&line) {
                    *lock(&warm_up) = Some(elapsed);
                }
            }
        });
    }
    let finished = tokio::time::timeout(RUN_LIMIT, async {
        loop {
            {
                let t = lock(&timeline);
                if t.responded.len() == 2 || !t.errors.is_empty() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    let _ = child.kill().await;
    server.abort();
    let t = lock(&timeline);
    if let Some(error) = t.errors.first() {
        return Err(format!("{name} reported an error: {error}"));
    }
    if finished.is_err() || t.responded.len() < 2 || t.delivered.len() < 2 || t.next_calls.is_empty() {
        return Err(format!("{name} did not answer two invocations within {RUN_LIMIT:?}"));
    }
    let init_done = t.next_calls[0];
    let warm_up = *lock(&warm_up);
    Ok(ColdStart {
        init: init_done - spawned,
        warm_up,
        first: t.responded[0] - t.delivered[0],
        second: t.responded[1] - t.delivered[1],
        connections_in_init: services.opened_between(spawned, init_done),
        connections_in_first: services.opened_between(t.delivered[0], t.responded[0]),
    })
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples.get(samples.len() / 2).copied().unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The function binaries: one per file in functions/src/bin.
fn function_binaries() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../functions/src/bin");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str()?.strip_suffix(".rs").map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

pub async fn run(args: &Args) {
    let mut options = StackOptions::from_env().expect("options");
    options.listen = "127.0.0.1:0".parse().expect("addr");
    options.storage = forum_local::Storage::InMemory;
    options.config.table_name = format!("forum-cold-start-{}", ulid::Ulid::new());
    let stack = Stack::start(options).await.expect("the local stack starts");
    let services = Services {
        dynamodb: CountingProxy::start(host_port(&stack.dynamodb_endpoint))
            .await
            .expect("proxy"),
        s3: CountingProxy::start(host_port(&stack.s3_endpoint))
            .await
            .expect("proxy"),
        connections: CountingProxy::start(stack.http_addr.to_string()).await.expect("proxy"),
        bucket: stack.app.bucket.name().to_string(),
        table: stack.app.table.name().to_string(),
        media_base_url: format!("http://{}", stack.http_addr),
    };

    let mut binaries = vec![HELLO.to_string()];
    binaries.extend(if args.only.is_empty() {
        function_binaries()
    } else {
        args.only.clone()
    });
    let runs = args.runs.max(1);
    let mut samples: Vec<Vec<ColdStart>> = binaries.iter().map(|_| Vec::new()).collect();
    // Round-robin, so a noisy moment on this shared machine hits every binary alike; round 0
    // (page cache, DynamoDB Local's JIT) is not counted.
    for round in 0..=runs {
        for (binary, samples) in binaries.iter().zip(samples.iter_mut()) {
            match cold_start(&args.bin_dir.join(binary), binary, &services).await {
                Ok(sample) if round > 0 => samples.push(sample),
                Ok(_) => {}
                Err(e) => {
                    eprintln!("{e}");
                    std::process::exit(1);
                }
            }
        }
    }

    let size = |name: &str| {
        std::fs::metadata(args.bin_dir.join(name))
            .map(|m| m.len() as f64 / (1024.0 * 1024.0))
            .unwrap_or_default()
    };
    let hello_init = ms(median(samples[0].iter().map(|s| s.init).collect()));
    println!(
        "cold starts: median of {runs} per binary; release profile (fat LTO, codegen-units=1, panic=abort, \
         strip), {} here; Runtime API and services local",
        std::env::consts::ARCH
    );
    println!(
        "{:<16} {:>7} {:>8} {:>8} {:>10} {:>11} {:>9} {:>9} {:>8} {:>8}",
        "binary", "MB", "init ms", "/ hello", "warm-up ms", "own init ms", "/ hello", "1st inv", "2nd inv", "conns"
    );
    for (binary, samples) in binaries.iter().zip(&samples) {
        let init = ms(median(samples.iter().map(|s| s.init).collect()));
        let warm_up = samples
            .iter()
            .all(|s| s.warm_up.is_some())
            .then(|| ms(median(samples.iter().filter_map(|s| s.warm_up).collect())));
        let own = ms(median(
            samples
                .iter()
                .map(|s| s.init.saturating_sub(s.warm_up.unwrap_or_default()))
                .collect(),
        ));
        let first = ms(median(samples.iter().map(|s| s.first).collect()));
        let second = ms(median(samples.iter().map(|s| s.second).collect()));
        let in_init = samples.iter().map(|s| s.connections_in_init).max().unwrap_or_default();
        let in_first = samples.iter().map(|s| s.connections_in_first).max().unwrap_or_default();
        println!(
            "{:<16} {:>7.1} {:>8.2} {:>7.2}x {:>10} {:>11.2} {:>8.2}x {:>9.2} {:>8.2} {:>8}",
            binary,
            size(binary),
            init,
            init / hello_init,
            warm_up.map(|w| format!("{w:.2}")).unwrap_or_else(|| "-".into()),
            own,
            own / hello_init,
            first,
            second,
            format!("{in_init}+{in_first}"),
        );
    }
    println!(
        "init: exec -> first GET /next; warm-up: connections opened and filter built during init (the function's log); \
         own init: init without the warm-up; 1st/2nd inv: event -> response, ms; \
         conns: connections opened in init + in the 1st invocation (max over runs; 0 in the 1st = no handshake paid there)"
    );
    drop(stack);
}
