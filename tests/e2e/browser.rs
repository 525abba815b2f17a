//! The reference client in a real headless Chromium (Debian's `chromium`, driven by
//! `playwright-core` from `web/tests/browser.mjs`): two people, live updates, a presigned
//! upload from the page, a refusal shown. Screenshots land in `<target>/tmp/browser/`.

use std::path::{Path, PathBuf};

use crate::support::{start_stack, test_options};

const CHROMIUM: &str = "/usr/bin/chromium";

/// `web/tests/node_modules`, installed from its lockfile the first time.
async fn playwright(dir: &Path) {
    if dir.join("node_modules/playwright-core").is_dir() {
        return;
    }
    let out = tokio::process::Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .output()
        .await
        .expect("npm (installed by .ci/run)");
    assert!(
        out.status.success(),
        "npm ci in web/tests: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn two_people_use_the_web_client_in_a_real_browser() {
    assert!(
        Path::new(CHROMIUM).exists(),
        "the browser test needs Debian's chromium package at {CHROMIUM} (apt-get install chromium; .ci/run installs it)"
    );
    let tests_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../web/tests");
    playwright(&tests_dir).await;

    // The page's own origin must be an allowed origin for its presigned PUTs, as a deployment
    // lists its site in AllowedOrigins.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let origin = format!("http://127.0.0.1:{port}");
    // Subscription changes at a sixth of the default rate: the page follows the 60 posts it
    // loads in a handful of messages, where a message per post ran into the limit.
    let mut options = test_options(&format!("forum-browser-{}", ulid::Ulid::new()))
        .parameter("AllowedOrigins", format!("{origin},http://localhost:5173"))
        .parameter("RateSubscriptionsPerMinute", "20");
    options.listen = format!("127.0.0.1:{port}").parse().expect("addr");
    let stack = start_stack(options, None).await;

    let out_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("browser");
    std::fs::create_dir_all(&out_dir).expect("screenshot dir");
    let image = out_dir.join("photo.png");
    std::fs::write(&image, forum_testkit::images::png(480, 320, false)).expect("image");
    let out = tokio::process::Command::new("node")
        .arg("browser.mjs")
        .arg(&stack.base)
        .arg(&image)
        .arg(&out_dir)
        .current_dir(&tests_dir)
        .env("CHROMIUM", CHROMIUM)
        .output()
        .await
        .expect("node");
    println!("{}", String::from_utf8_lossy(&out.stdout));
    assert!(
        out.status.success(),
        "the browser run failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
}
