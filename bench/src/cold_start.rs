//! Cold starts: every function binary, built with the release profile exactly as it is
//! packaged for Lambda, is exec'd against a minimal Lambda Runtime API served here, next to a
//! hello-world `lambda_runtime` binary built the same way. Per binary, the medians of:
//!
//! - init: exec until the runtime's first `GET /runtime/invocation/next` (what Lambda reports
//!   as Init Duration), and the part of it spent warming up: opening connections and building
//!   the profanity filter (the functions' own `warmed up during init` log line);
//! - the first and the second invocation: event handed over until its response is posted;
//! - connections the function opened to DynamoDB/S3/`@connections`/Secrets Manager during init
//!   and during the first invocation, counted by the TLS proxies in front of the local services.
//!   Every new connection is a TCP and TLS handshake, here as in AWS: a first invocation that
//!   opens none paid for none.
//!
//! The services are forum-local's (DynamoDB Local, the in-process S3, `@connections`), reached
//! as a deployed function reaches AWS: over HTTPS (`AWS_ENDPOINT_URL_*`, `WS_ENDPOINT`), through
//! TLS-terminating proxies with a certificate made for the run, whose CA the functions trust
//! through `FORUM_TLS_ROOTS=<its PEM file>` (a deployed function refuses a plain
//! HTTP `WS_ENDPOINT`, and every handshake a cold start pays in AWS it pays here). A function
//! that fails is shown with its own stderr. `bash bench/cold_start.sh` builds and runs it.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::stats::median;
use forum_local::runtime_api::{Shared, Timeline, lambda_variables, lock, serve_runtime_api};
use forum_local::{Stack, StackOptions};
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
/// A cold start that has not finished both invocations by then failed.
const RUN_LIMIT: Duration = Duration::from_secs(20);

/// A TLS-terminating TCP proxy in front of one local service, noting when each connection
/// was opened.
struct CountingProxy {
    addr: SocketAddr,
    opened: Shared<Vec<Instant>>,
}

impl CountingProxy {
    async fn start(upstream: String, tls: tokio_rustls::TlsAcceptor) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let opened: Shared<Vec<Instant>> = Arc::default();
        let log = opened.clone();
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                lock(&log).push(Instant::now());
                let (upstream, tls) = (upstream.clone(), tls.clone());
                tokio::spawn(async move {
                    // Nagle's algorithm against delayed ACKs stalls a TLS handshake's small
                    // flights by tens of milliseconds: a proxy must not add what AWS does not.
                    let _ = inbound.set_nodelay(true);
                    let Ok(mut inbound) = tls.accept(inbound).await else {
                        return;
                    };
                    if let Ok(mut outbound) = TcpStream::connect(&upstream).await {
                        let _ = outbound.set_nodelay(true);
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Ok(CountingProxy { addr, opened })
    }

    fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    fn opened_between(&self, from: Instant, to: Instant) -> usize {
        lock(&self.opened).iter().filter(|t| **t >= from && **t < to).count()
    }
}

/// A certificate authority and a certificate for 127.0.0.1 it signed, made for this run
/// (`openssl`): the authority's PEM file for the functions' `SSL_CERT_FILE`, and the proxies'
/// acceptor. (A self-signed server certificate will not do: it is a CA, and WebPKI refuses a
/// CA used as an end entity.)
fn run_certificate(dir: &Path) -> Result<(PathBuf, tokio_rustls::TlsAcceptor), String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let openssl = |args: &[&str]| -> Result<(), String> {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .map_err(|e| format!("openssl (for the run's certificates): {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!("openssl {}: {}", args[0], String::from_utf8_lossy(&out.stderr)))
        }
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    openssl(
        &[
            &["req", "-x509"],
            &ec[..],
            &["-subj", "/CN=forum cold-start CA", "-days", "1"],
            &["-keyout", "ca.key", "-out", "ca.pem"],
        ]
        .concat(),
    )?;
    openssl(
        &[
            &["req"],
            &ec[..],
            &["-subj", "/CN=127.0.0.1", "-keyout", "key.pem", "-out", "leaf.csr"],
        ]
        .concat(),
    )?;
    std::fs::write(
        dir.join("leaf.ext"),
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1\n",
    )
    .map_err(|e| e.to_string())?;
    openssl(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "leaf.ext",
        "-out",
        "cert.pem",
    ])?;
    let (cert, key, authority) = (dir.join("cert.pem"), dir.join("key.pem"), dir.join("ca.pem"));
    let chain = vec![CertificateDer::from_pem_file(&cert).map_err(|e| format!("{}: {e}", cert.display()))?];
    let key = PrivateKeyDer::from_pem_file(&key).map_err(|e| format!("{}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| e.to_string())?;
    Ok((authority, tokio_rustls::TlsAcceptor::from(Arc::new(config))))
}

/// `http://host:port` -> `host:port`.
fn host_port(endpoint: &str) -> String {
    endpoint.trim_start_matches("http://").trim_end_matches('/').to_string()
}

struct Services {
    dynamodb: CountingProxy,
    s3: CountingProxy,
    connections: CountingProxy,
    /// Each function's environment from template.yaml (by binary).
    environments: BTreeMap<String, BTreeMap<String, String>>,
    /// The Secrets Manager stand-in, holding this run's own JWT and cursor keys.
    secrets: CountingProxy,
    /// The run's certificate (PEM), the one root the functions trust.
    certificate: PathBuf,
}

impl Services {
    fn opened_between(&self, from: Instant, to: Instant) -> usize {
        [&self.dynamodb, &self.s3, &self.connections, &self.secrets]
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
    // What Lambda sets, and the function's environment as template.yaml gives it, with the
    // AWS endpoints pointed at the counting proxies. Deployed, not development: the secrets
    // are this run's own, since a deployed function refuses the repository's public ones.
    let mut env: BTreeMap<String, String> = services.environments.get(name).cloned().unwrap_or_default();
    env.extend(lambda_variables(name, api));
    // Lambda always sets it (the template's MemorySize; hello-world has none: Lambda's default).
    env.entry("AWS_LAMBDA_FUNCTION_MEMORY_SIZE".to_string())
        .or_insert_with(|| "128".to_string());
    for (k, v) in [
        ("AWS_REGION", forum_store::aws::LOCAL_REGION.to_string()),
        ("AWS_DEFAULT_REGION", forum_store::aws::LOCAL_REGION.into()),
        ("AWS_ACCESS_KEY_ID", forum_store::aws::LOCAL_ACCESS_KEY.into()),
        ("AWS_SECRET_ACCESS_KEY", forum_store::aws::LOCAL_SECRET_KEY.into()),
        ("AWS_ENDPOINT_URL_DYNAMODB", services.dynamodb.url()),
        ("AWS_ENDPOINT_URL_S3", services.s3.url()),
        ("WS_ENDPOINT", services.connections.url()),
        // The run's CA alone, as cheap to load as the compiled-in Amazon roots (the system's
        // store would add its ~150 certificates to every init).
        ("FORUM_TLS_ROOTS", services.certificate.display().to_string()),
        ("MEDIA_BASE_URL", "https://media.forum.test".into()),
        ("RUST_LOG", "info".into()),
    ] {
        env.insert(k.to_string(), v);
    }
    env.insert("AWS_ENDPOINT_URL_SECRETS_MANAGER".into(), services.secrets.url());
    let spawned = Instant::now();
    let mut child = tokio::process::Command::new(binary)
        .env_clear()
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("{}: {e}", binary.display()))?;
    let warm_up: Shared<Option<Duration>> = Arc::default();
    // What the function said, shown when it fails: a benchmark never hides the cause.
    let said: Shared<Vec<String>> = Arc::default();
    if let Some(stdout) = child.stdout.take() {
        let (warm_up, said) = (warm_up.clone(), said.clone());
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(elapsed) = warm_up_of(&line) {
                    *lock(&warm_up) = Some(elapsed);
                }
                lock(&said).push(line);
            }
        });
    }
    if let Some(stderr) = child.stderr.take() {
        let said = said.clone();
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                lock(&said).push(line);
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
    let exited = child.try_wait().ok().flatten();
    let _ = child.kill().await;
    server.abort();
    // The output's last lines, once the readers have drained the pipes.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let output = {
        let said = lock(&said);
        let tail: Vec<&str> = said.iter().rev().take(20).rev().map(String::as_str).collect();
        tail.join("\n  ")
    };
    let t = lock(&timeline);
    if let Some(error) = t.errors.first() {
        return Err(format!("{name} reported an error: {error}\n  {output}"));
    }
    // An HTTP function that answered 5xx did not work (a service it could not reach, say):
    // its timing would not be a cold start's.
    if let Some(failed) = t
        .responses
        .iter()
        .find(|r| r["statusCode"].as_u64().is_some_and(|status| status >= 500))
    {
        return Err(format!("{name} answered {}\n  {output}", failed));
    }
    if finished.is_err() || t.responded.len() < 2 || t.delivered.len() < 2 || t.next_calls.is_empty() {
        let how = exited
            .map(|status| format!(" (it exited: {status})"))
            .unwrap_or_default();
        return Err(format!(
            "{name} did not answer two invocations within {RUN_LIMIT:?}{how}; its output:\n  {output}"
        ));
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
    let mut options = StackOptions::local().expect("options");
    options.listen = "127.0.0.1:0".parse().expect("addr");
    options.storage = forum_local::Storage::InMemory;
    options.table_name = format!("forum-cold-start-{}", ulid::Ulid::new());
    let stack = Stack::start(options).await.expect("the local stack starts");
    let tls_dir = std::env::temp_dir().join(format!("forum-cold-start-{}", ulid::Ulid::new()));
    let (certificate, tls) = match run_certificate(&tls_dir) {
        Ok(made) => made,
        Err(e) => {
            eprintln!("the run's TLS certificate: {e}");
            std::process::exit(1);
        }
    };
    let proxy = |upstream: String| CountingProxy::start(upstream, tls.clone());
    let services = Services {
        dynamodb: proxy(host_port(&stack.dynamodb_endpoint)).await.expect("proxy"),
        s3: proxy(host_port(&stack.s3_endpoint)).await.expect("proxy"),
        connections: proxy(stack.http_addr.to_string()).await.expect("proxy"),
        environments: stack.environments.clone(),
        secrets: proxy(host_port(&stack.secrets_endpoint)).await.expect("proxy"),
        certificate,
    };
    // Deployed functions refuse the repository's public development keys: this run's own.
    for env in stack.environments.values() {
        for (name, arn) in env {
            if name.ends_with("_SECRET_ARN") && !arn.is_empty() {
                stack
                    .secrets
                    .put(arn, &format!("{}{}", ulid::Ulid::new(), ulid::Ulid::new()));
            }
        }
    }

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
    let relocations = |name: &str| {
        std::fs::read(args.bin_dir.join(name))
            .ok()
            .and_then(|elf| load_relocations(&elf))
            .map_or_else(|| "?".to_string(), |n| n.to_string())
    };
    let hello_init = ms(median(samples[0].iter().map(|s| s.init).collect()));
    // The profile is the binaries' directory (`target/<profile>`): figures are the release
    // profile's (what Lambda runs); CI's short run uses the test build, to keep the bench running.
    let profile = args
        .bin_dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("?")
        .to_string();
    let built = match profile.as_str() {
        "release" => "release profile (fat LTO, codegen-units=1, panic=abort, strip)".to_string(),
        other => format!("`{other}` profile: a smoke run, not figures (those are the release profile's)"),
    };
    println!(
        "cold starts: median of {runs} per binary; {built}, {} here; Runtime API and services local, over TLS",
        std::env::consts::ARCH
    );
    println!(
        "{:<16} {:>7} {:>7} {:>8} {:>8} {:>10} {:>11} {:>9} {:>9} {:>8} {:>8}",
        "binary",
        "MB",
        "relocs",
        "init ms",
        "/ hello",
        "warm-up ms",
        "own init ms",
        "/ hello",
        "1st inv",
        "2nd inv",
        "conns"
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
            "{:<16} {:>7.1} {:>7} {:>8.2} {:>7.2}x {:>10} {:>11.2} {:>8.2}x {:>9.2} {:>8.2} {:>8}",
            binary,
            size(binary),
            relocations(binary),
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
        "relocs: dynamic relocations the loader applies at every start; \
         init: exec -> first GET /next; warm-up: connections opened and filter built during init (the function's log); \
         own init: init without the warm-up; 1st/2nd inv: event -> response, ms; \
         conns: connections opened in init + in the 1st invocation (max over runs; 0 in the 1st = no handshake paid there)"
    );
    drop(stack);
    let _ = std::fs::remove_dir_all(&tls_dir);
}

/// The dynamic relocations an ELF64 (little-endian) executable has the loader apply at start:
/// the entries of its allocated RELA sections (`.rela.dyn`, `.rela.plt`). `None` if the file
/// is not such an executable.
fn load_relocations(elf: &[u8]) -> Option<u64> {
    const SHT_RELA: u32 = 4;
    const SHF_ALLOC: u64 = 2;
    let u16_at = |at: usize| Some(u16::from_le_bytes(elf.get(at..at + 2)?.try_into().ok()?));
    let u32_at = |at: usize| Some(u32::from_le_bytes(elf.get(at..at + 4)?.try_into().ok()?));
    let u64_at = |at: usize| Some(u64::from_le_bytes(elf.get(at..at + 8)?.try_into().ok()?));
    // ELF64, little-endian.
    if elf.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let section_headers = usize::try_from(u64_at(0x28)?).ok()?;
    let (entry_size, count) = (usize::from(u16_at(0x3a)?), usize::from(u16_at(0x3c)?));
    let mut total = 0;
    for index in 0..count {
        let header = section_headers + index * entry_size;
        let (kind, flags) = (u32_at(header + 4)?, u64_at(header + 8)?);
        let (size, entry) = (u64_at(header + 0x20)?, u64_at(header + 0x38)?);
        if kind == SHT_RELA && flags & SHF_ALLOC != 0 && entry > 0 {
            total += size / entry;
        }
    }
    Some(total)
}
