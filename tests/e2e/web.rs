//! The reference web client as forum-local serves it: the page and its modules, the config
//! that points it at this stack, and the local token mint. (The client in a real browser is
//! issue 14's next step.)

use serde_json::{Value, json};

use crate::support::shared_stack;

#[tokio::test]
async fn forum_local_serves_the_web_client_with_its_config_and_a_local_token_mint() {
    let stack = shared_stack().await;
    let http = reqwest::Client::new();
    for (path, content_type) in [
        ("/", "text/html"),
        ("/app.js", "text/javascript"),
        ("/api.js", "text/javascript"),
        ("/live.js", "text/javascript"),
        ("/style.css", "text/css"),
    ] {
        let answer = http.get(format!("{}{path}", stack.base)).send().await.unwrap();
        assert_eq!(answer.status().as_u16(), 200, "{path}");
        let headers = answer.headers();
        assert!(
            headers["content-type"].to_str().unwrap().starts_with(content_type),
            "{path}"
        );
        assert_eq!(headers["x-content-type-options"], "nosniff");
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
            "{csp}"
        );
    }
    // The page finds the API and the socket where it was loaded from.
    let host = stack.base.trim_start_matches("http://");
    let config: Value = http
        .get(format!("{}/config.json", stack.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(config["apiBase"], format!("http://{host}/api/forum"));
    assert_eq!(config["wsUrl"], format!("ws://{host}/ws"));
    assert_eq!(config["mintTokens"], true);

    // A minted token is one the API accepts, for that username.
    let name = crate::support::unique("webby");
    let minted: Value = http
        .post(format!("{}/local/token", stack.base))
        .body(json!({"username": name}).to_string())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = minted["token"].as_str().expect("a token");
    let client = stack.anonymous().with_token(token);
    let created = client
        .post("/api/forum/posts/", json!({"content": "from the page"}))
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.body["user"]["username"], name.as_str());
    let too_long = format!("{{\"username\": \"{}\"}}", "a".repeat(65));
    for bad in ["", "{}", "{\"username\": \"  \"}", "not json", too_long.as_str()] {
        let refused = http
            .post(format!("{}/local/token", stack.base))
            .body(bad.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status().as_u16(), 400, "{bad}");
    }
}

#[test]
fn the_client_modules_parse() {
    // A syntax error would only show in a browser; node parses ES modules the same way.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../web");
    for module in ["app.js", "api.js", "live.js"] {
        let out = std::process::Command::new("node")
            .args(["--experimental-default-type=module", "--check"])
            .arg(dir.join(module))
            .output()
            .expect("node (installed by .ci/run with npm)");
        assert!(
            out.status.success(),
            "{module}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
