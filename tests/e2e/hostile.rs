//! Requests no client should send, as raw bytes on a socket: each is answered (or its
//! connection closed) and the server goes on serving everyone else. A panic in a request's
//! handler answers that request 500 in the API's shape (`local/src/respond.rs`, unit-tested
//! there); these are the inputs that once stopped forum-local, and their neighbours.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{TestStack, isolated_stack};

/// Sends `request` as is; the first line of the answer, or `None` if the connection closed
/// without one (within `wait`).
async fn raw(stack: &TestStack, request: &[u8], wait: Duration) -> Option<String> {
    let mut socket = TcpStream::connect(stack.stack.http_addr).await.expect("connect");
    socket.write_all(request).await.ok()?;
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    let read = tokio::time::timeout(wait, async {
        loop {
            match socket.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    answer.extend_from_slice(&buffer[..n]);
                    if answer.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no answer and no close within {wait:?}");
    let text = String::from_utf8_lossy(&answer).to_string();
    text.lines().next().filter(|l| !l.is_empty()).map(str::to_string)
}

fn status(line: &Option<String>) -> Option<u16> {
    line.as_deref()?.split(' ').nth(1)?.parse().ok()
}

/// The server still answers a plain, valid request.
async fn still_serving(stack: &TestStack) {
    assert_eq!(stack.user("after").get("/api/forum/posts/").await.status, 200);
}

#[tokio::test]
async fn malformed_requests_are_answered_and_never_stop_the_server() {
    let stack = isolated_stack().await;
    let token = stack.user("mallory").token.clone().expect("a token");
    let quick = Duration::from_secs(5);
    let with_token = |head: &str| format!("{head}\r\nauthorization: Bearer {token}\r\n\r\n").into_bytes();

    // A Host that names no authority (it once panicked in the request's conversion, and
    // `panic = "abort"` took the process with it): API Gateway would never route it.
    let line = raw(
        &stack,
        &with_token("GET /api/forum/posts/ HTTP/1.1\r\nhost: bad host"),
        quick,
    )
    .await;
    assert_eq!(status(&line), Some(403), "{line:?}");
    still_serving(&stack).await;
    for host in ["[::1", "a b:80", "@evil", "%", "example.com:99999999"] {
        let line = raw(
            &stack,
            &with_token(&format!("GET /api/forum/posts/ HTTP/1.1\r\nhost: {host}")),
            quick,
        )
        .await;
        assert!(matches!(status(&line), Some(400 | 403) | None), "{host}: {line:?}");
    }
    still_serving(&stack).await;

    // Methods and versions nobody serves, and garbage.
    let cases: [&[u8]; 5] = [
        b"FROB /api/forum/posts/ HTTP/1.1\r\nhost: x\r\n\r\n",
        b"G\x01T /api/forum/posts/ HTTP/1.1\r\nhost: x\r\n\r\n",
        b"GET /api/forum/posts/ HTTP/9.9\r\nhost: x\r\n\r\n",
        b"GET /api/forum/posts/\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage that looks like TLS\r\n\r\n",
    ];
    for request in cases {
        let line = raw(&stack, request, quick).await;
        assert!(
            line.is_none() || matches!(status(&line), Some(400 | 401 | 405 | 505)),
            "{:?}: {line:?}",
            String::from_utf8_lossy(request)
        );
    }
    still_serving(&stack).await;

    // Headers past API Gateway's limits: one huge, or very many repeated.
    let huge = format!(
        "GET /api/forum/posts/ HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let line = raw(&stack, huge.as_bytes(), quick).await;
    assert!(line.is_none() || status(&line) == Some(431), "{line:?}");
    let many: String = (0..500).map(|i| format!("x-dup: {i}\r\n")).collect();
    let line = raw(
        &stack,
        format!("GET /api/forum/posts/ HTTP/1.1\r\nhost: x\r\n{many}\r\n").as_bytes(),
        quick,
    )
    .await;
    assert!(line.is_none() || status(&line) == Some(431), "{line:?}");
    still_serving(&stack).await;
}

#[tokio::test]
async fn a_slow_sender_is_cut_off_and_others_are_served_meanwhile() {
    let stack = isolated_stack().await;
    let mut slow = TcpStream::connect(stack.stack.http_addr).await.expect("connect");
    slow.write_all(b"GET /api/forum/posts/ HTTP/1.1\r\nhost: x\r\n")
        .await
        .expect("write");
    // Others are served while it dawdles.
    still_serving(&stack).await;
    // It never finishes its headers: the server closes the connection (408 first, or not).
    let limit = forum_local::gateway::HEADER_READ_TIMEOUT + Duration::from_secs(5);
    let mut buffer = [0u8; 256];
    let closed = tokio::time::timeout(limit, async {
        loop {
            match slow.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the connection stayed open past {limit:?}");
    still_serving(&stack).await;
}
