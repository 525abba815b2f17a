//! `forum-local` as README tells a new user to run it: the real binary, started in a fresh
//! folder with its default (relative) data directory, stopped with Ctrl-C, started again.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_forum-local");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("forum-local-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// A running `forum-local` and what it printed.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Running {
    fn start(cwd: &Path, args: &[&str], path: Option<&str>) -> Running {
        let mut command = Command::new(BIN);
        command
            .args(args)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(path) = path {
            command.env("PATH", path);
        }
        let mut child = command.spawn().expect("forum-local starts");
        let (tx, lines) = mpsc::channel();
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        Running { child, lines }
    }

    /// Waits for a line containing `needle`; returns everything printed until then.
    fn wait_for(&self, needle: &str, limit: Duration) -> Result<Vec<String>, Vec<String>> {
        let deadline = Instant::now() + limit;
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let found = line.contains(needle);
                    seen.push(line);
                    if found {
                        return Ok(seen);
                    }
                }
                Err(_) => break,
            }
        }
        Err(seen)
    }

    /// Ctrl-C, as README says to stop it; DynamoDB Local flushes its data on the way out.
    fn interrupt(mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        panic!("forum-local did not stop within 30 s of Ctrl-C");
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn token(cwd: &Path, user: &str) -> String {
    let out = Command::new(BIN)
        .args(["token", user])
        .current_dir(cwd)
        .output()
        .expect("forum-local token");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8").trim().to_string()
}

async fn call(port: u16, token: &str, method: reqwest::Method, body: Option<Value>) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .request(method, format!("http://127.0.0.1:{port}/api/forum/posts/"))
        .bearer_auth(token)
        .timeout(Duration::from_secs(60));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("an answer");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn readme_start_keeps_data_across_restarts_and_answers_only_when_ready() {
    let cwd = scratch("readme");
    let alice = token(&cwd, "alice");
    let port = free_port();
    let port_arg = port.to_string();

    // First start: the default data directory `.forum-local`, relative to where it runs. A
    // request sent while it is still starting must get a real answer, not one from a stack
    // whose table does not exist yet.
    let first = Running::start(&cwd, &["--port", &port_arg], None);
    let early = tokio::spawn({
        let alice = alice.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return call(port, &alice, reqwest::Method::GET, None).await;
                }
                assert!(Instant::now() < deadline, "the port was never bound");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });
    let started = Instant::now();
    first
        .wait_for("forum-local is up", Duration::from_secs(60))
        .unwrap_or_else(|seen| panic!("did not come up: {seen:#?}"));
    let startup = started.elapsed();
    let (status, page) = early.await.expect("early request");
    assert_eq!(status, 200, "a request during start-up: {page}");
    let (status, post) = call(port, &alice, reqwest::Method::POST, Some(json!({"content": "kept"}))).await;
    assert_eq!(status, 201, "{post}");
    assert!(cwd.join(".forum-local").is_dir(), "data lives where README says");
    first.interrupt();

    // Second start on the same data: the post is still there.
    let second = Running::start(&cwd, &["--port", &port_arg], None);
    second
        .wait_for("forum-local is up", Duration::from_secs(60))
        .unwrap_or_else(|seen| panic!("did not come up again: {seen:#?}"));
    let (status, page) = call(port, &alice, reqwest::Method::GET, None).await;
    assert_eq!(status, 200);
    assert!(
        page["posts"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["id"] == post["id"])),
        "the post survived a restart: {page}"
    );
    second.interrupt();
    // Seconds, not the 90 s readiness limit it used to wait out.
    assert!(startup < Duration::from_secs(30), "start-up took {startup:?}");

    // An absolute data directory works the same.
    let absolute = cwd.join("elsewhere");
    let third = Running::start(
        Path::new("/"),
        &[
            "--port",
            &port_arg,
            "--data-dir",
            absolute.to_str().expect("utf-8 path"),
        ],
        None,
    );
    third
        .wait_for("forum-local is up", Duration::from_secs(60))
        .unwrap_or_else(|seen| panic!("did not come up with an absolute --data-dir: {seen:#?}"));
    third.interrupt();
    assert!(absolute.is_dir());
    let _ = std::fs::remove_dir_all(&cwd);
}

#[test]
fn java_failing_at_start_is_reported_at_once_with_its_own_message() {
    // A `java` that answers `-version` (as the presence check asks) and fails to run anything.
    let cwd = scratch("java");
    let bin = cwd.join("bin");
    std::fs::create_dir_all(&bin).expect("bin dir");
    let java = bin.join("java");
    std::fs::write(
        &java,
        "#!/bin/sh\n[ \"$1\" = -version ] && exit 0\necho 'Error: Unable to access jarfile (from the fake java)' >&2\nexit 1\n",
    )
    .expect("fake java");
    Command::new("chmod").arg("+x").arg(&java).status().expect("chmod");
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());

    let started = Instant::now();
    let mut running = Running::start(&cwd, &["--port", &free_port().to_string()], Some(&path));
    let status = loop {
        if let Ok(Some(status)) = running.child.try_wait() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "still waiting after 30 s");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success());
    // Everything it printed: the readers end when its pipes close.
    let mut printed = Vec::new();
    while let Ok(line) = running.lines.recv_timeout(Duration::from_secs(5)) {
        printed.push(line);
    }
    let printed = printed.join("\n");
    assert!(
        printed.contains("Unable to access jarfile (from the fake java)") && printed.contains("java exited"),
        "Java's own message is passed on: {printed}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    let _ = std::fs::remove_dir_all(&cwd);
}

/// The local addresses listening on `port`, from the kernel's socket tables (Linux).
fn listening_addresses(port: u16) -> Vec<String> {
    let mut found = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state)) = (fields.get(1), fields.get(3)) else {
                continue;
            };
            let Some((address, hex_port)) = local.split_once(':') else {
                continue;
            };
            // 0A: LISTEN.
            if *state == "0A" && u16::from_str_radix(hex_port, 16) == Ok(port) {
                found.push(address.to_string());
            }
        }
    }
    found
}

#[tokio::test]
async fn dynamodb_local_is_reachable_from_this_machine_only_and_never_from_web_pages() {
    let local = forum_local::DynamoDbLocal::start(forum_local::Storage::InMemory)
        .await
        .expect("DynamoDB Local starts");
    let port: u16 = local.endpoint().rsplit(':').next().unwrap().parse().unwrap();
    let addresses = listening_addresses(port);
    assert!(!addresses.is_empty(), "nothing listens on {port}");
    // 127.0.0.1, as IPv4 or IPv4-mapped IPv6 (kernel byte order).
    let loopback = ["0100007F", "0000000000000000FFFF00000100007F"];
    for address in &addresses {
        assert!(
            loopback.contains(&address.as_str()),
            "DynamoDB Local listens on {address}"
        );
    }
    // A page elsewhere may not script it: no CORS answer for any real origin.
    let answer = reqwest::Client::new()
        .post(local.endpoint())
        .header("origin", "https://evil.example")
        .header("x-amz-target", "DynamoDB_20120810.ListTables")
        .header("content-type", "application/x-amz-json-1.0")
        .body("{}")
        .send()
        .await
        .expect("answers");
    let allowed = answer.headers().get("access-control-allow-origin");
    assert!(
        allowed.is_none_or(|v| v != "*" && v != "https://evil.example"),
        "{allowed:?}"
    );
    local.stop().await;
}
