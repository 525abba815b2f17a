//! Peak memory of the media functions on the worst inputs that can be built, each run as Lambda
//! runs it: the real binary, the environment and `MemorySize` template.yaml gives it, against
//! forum-local's data plane (DynamoDB Local, the S3 stand-in that checks signatures).
//!
//! - `upload-media` (`POST /upload/`): the API Gateway event carrying the file, as base64.
//! - presign, then the browser's PUT to S3, then `process-media` on the S3 event that PUT
//!   produced (the stand-in hands it over instead of running the handler in process); direct
//!   uploads that were accepted go through the same trigger.
//!
//! The figure is the process's peak resident memory (`VmHWM`), which is what Lambda holds
//! against `MemorySize`; every one must stay within half of it. Each input runs in a fresh
//! process, and then all of them in one (a warm container, whose allocator keeps what it freed).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use base64::Engine;
use forum_local::{Stack, StackOptions, Storage, UploadTrigger};
use forum_testkit::images as fixtures;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::{BINARIES, Outcome, data_plane_environments, repo_json, start_measured};

fn binary(name: &str) -> &'static str {
    BINARIES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, p)| *p)
        .unwrap_or_else(|| panic!("no binary {name}"))
}

/// The data plane, with the S3 trigger's events delivered here.
async fn data_plane() -> (Stack, mpsc::UnboundedReceiver<Value>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut options = StackOptions::local().expect("options");
    options.listen = "127.0.0.1:0".parse().expect("addr");
    options.storage = Storage::InMemory;
    options.upload_trigger = UploadTrigger::Deliver(tx);
    (Stack::start(options).await.expect("the data plane starts"), rx)
}

/// The `POST /upload/` event API Gateway hands upload-media: `file` as a multipart body, in
/// base64, from `user`.
fn upload_event(file: &[u8], user: &str) -> Value {
    let boundary = "forum-memory-test";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"upload.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(file);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let mut event = repo_json("events/upload-media.json");
    event["headers"]["content-type"] = json!(format!("multipart/form-data; boundary={boundary}"));
    event["headers"]["content-length"] = json!(body.len().to_string());
    event["requestContext"]["authorizer"]["lambda"]["user_id"] = json!(user);
    event["body"] = json!(base64::engine::general_purpose::STANDARD.encode(&body));
    event["isBase64Encoded"] = json!(true);
    event
}

/// One measured run.
struct Peak {
    function: &'static str,
    input: String,
    outcome: String,
    kib: u64,
    memory_mb: u64,
}

impl Peak {
    fn within_half(&self) -> bool {
        self.kib <= self.memory_mb * 1024 / 2
    }
}

/// Runs `function` on `events` in one fresh process; its answers and its peak.
async fn run(function: &'static str, env: &BTreeMap<String, String>, events: Vec<Value>) -> (Vec<Value>, u64) {
    match start_measured(binary(function), function, env, events).await {
        (Outcome::Ready(answers), kib) => (answers, kib),
        (Outcome::Exited(why), _) => panic!("{function} did not run: {why}"),
    }
}

fn memory_mb(env: &BTreeMap<String, String>) -> u64 {
    env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        .and_then(|m| m.parse().ok())
        .expect("the template's MemorySize, as Lambda sets it")
}

/// The next S3 event for an object under `uploads/`.
async fn next_upload_event(events: &mut mpsc::UnboundedReceiver<Value>) -> Value {
    tokio::time::timeout(Duration::from_secs(20), events.recv())
        .await
        .expect("S3 notifies the trigger")
        .expect("the stand-in is running")
}

/// The media's status, as its owner reads it.
async fn media_status(stack: &Stack, token: &str, id: &str) -> Value {
    let response = reqwest::Client::new()
        .get(format!("{}/api/forum/media/{id}/", stack.base_url()))
        .bearer_auth(token)
        .send()
        .await
        .expect("an answer");
    response.json().await.expect("JSON")
}

/// Presigns an upload for `bytes` and PUTs them as a browser does; the media id.
async fn presigned_put(stack: &Stack, token: &str, bytes: &[u8], content_type: &str) -> String {
    let client = reqwest::Client::new();
    let presigned: Value = client
        .post(format!("{}/api/forum/upload/presign/", stack.base_url()))
        .bearer_auth(token)
        .json(&json!({"content_type": content_type, "content_length": bytes.len()}))
        .send()
        .await
        .expect("presign answers")
        .json()
        .await
        .expect("JSON");
    let upload = &presigned["upload"];
    let mut put = client
        .put(
            upload["url"]
                .as_str()
                .unwrap_or_else(|| panic!("no upload URL: {presigned}")),
        )
        .body(bytes.to_vec());
    for (name, value) in upload["headers"].as_object().expect("headers to send") {
        if !name.eq_ignore_ascii_case("content-length") {
            put = put.header(name, value.as_str().expect("a header value"));
        }
    }
    let status = put.send().await.expect("S3 answers").status();
    assert_eq!(status.as_u16(), 200, "the presigned PUT");
    presigned["id"].as_str().expect("an id").to_string()
}

#[tokio::test]
async fn media_functions_stay_within_half_their_memory_on_the_worst_inputs() {
    let (stack, mut uploads) = data_plane().await;
    let environments = data_plane_environments(&stack);
    let upload_env = &environments["upload-media"];
    let process_env = &environments["process-media"];
    let token = |user: &str| forum_testkit::issue_token(&stack.jwt, user, user, None, 3600).expect("a token");
    let mut peaks = Vec::new();

    // ---- upload-media: what a 4 MB multipart body can make a decode cost ----
    let upload_budget = forum_media::decode_budget(memory_mb(upload_env));
    // The largest progressive JPEG its budget allows: every coefficient of a 4:4:4 image, twice.
    let largest_accepted = fixtures::progressive_jpeg(2768, 2496, 3);
    let probe = forum_media::probe(&largest_accepted, forum_media::MAX_DIRECT_UPLOAD_BYTES).expect("a header");
    let needed = probe.decode_bytes(1);
    assert!(
        needed <= upload_budget && needed * 1000 > upload_budget * 999,
        "just under the budget: {needed} of {upload_budget}"
    );
    let direct: Vec<(&str, Vec<u8>, u16)> = vec![
        ("progressive 2768x2496 4:4:4 (largest accepted)", largest_accepted, 201),
        (
            "progressive 7071x7071 4:4:4 (300 MB of coefficients)",
            fixtures::progressive_jpeg(7071, 7071, 3),
            413,
        ),
        ("photo 3000x2200, 4 MB body", fixtures::photo_jpeg(3000, 2200), 201),
        (
            "PNG with a 260 MB iCCP profile",
            fixtures::png_with_chunk_bomb(b"iCCP", 260 << 20),
            201,
        ),
        (
            "PNG with 260 MB of zTXt",
            fixtures::png_with_chunk_bomb(b"zTXt", 260 << 20),
            201,
        ),
        (
            "PNG 7071x7071 RGBA 16-bit (streamed)",
            fixtures::flat_png(7071, 7071, png::ColorType::Rgba, png::BitDepth::Sixteen),
            201,
        ),
        ("PNG 50k x 50k header", fixtures::png_bomb(50_000, 50_000), 413),
    ];
    let mut direct_ids = Vec::new();
    for (n, (input, bytes, expected)) in direct.iter().enumerate() {
        assert!(
            bytes.len() as u64 <= forum_media::MAX_DIRECT_UPLOAD_BYTES,
            "{input}: {} bytes",
            bytes.len()
        );
        let (answers, kib) = run(
            "upload-media",
            upload_env,
            vec![upload_event(bytes, &format!("direct-{n}"))],
        )
        .await;
        assert_eq!(answers[0]["statusCode"], *expected, "{input}: {}", answers[0]);
        let body: Value = serde_json::from_str(answers[0]["body"].as_str().unwrap_or_default()).unwrap_or_default();
        if *expected == 201 {
            direct_ids.push((
                input.to_string(),
                format!("direct-{n}"),
                body["id"].as_str().expect("an id").to_string(),
            ));
        } else {
            assert_eq!(body["error"]["code"], "image_too_large", "{input}: {body}");
        }
        peaks.push(Peak {
            function: "upload-media",
            input: input.to_string(),
            outcome: answers[0]["statusCode"].to_string(),
            kib,
            memory_mb: memory_mb(upload_env),
        });
    }
    // The same inputs, one after another in one warm container.
    let (answers, kib) = run(
        "upload-media",
        upload_env,
        direct
            .iter()
            .enumerate()
            .map(|(n, (_, bytes, _))| upload_event(bytes, &format!("warm-{n}")))
            .collect(),
    )
    .await;
    assert_eq!(answers.len(), direct.len());
    peaks.push(Peak {
        function: "upload-media",
        input: "all of the above, one warm container".into(),
        outcome: "-".into(),
        kib,
        memory_mb: memory_mb(upload_env),
    });
    let warm_accepted = direct.iter().filter(|(_, _, status)| *status == 201).count();
    // Their S3 events: the direct ones first, then the warm run's (not processed again).
    let mut direct_events = Vec::new();
    for _ in 0..direct_ids.len() {
        direct_events.push(next_upload_event(&mut uploads).await);
    }
    for _ in 0..warm_accepted {
        next_upload_event(&mut uploads).await;
    }

    // ---- process-media: what the S3 trigger runs on a 15 MiB object ----
    let presigned: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "progressive 7071x7071 4:4:4",
            fixtures::progressive_jpeg(7071, 7071, 3),
            "image/jpeg",
        ),
        (
            "progressive 7071x7071 CMYK",
            fixtures::progressive_jpeg(7071, 7071, 4),
            "image/jpeg",
        ),
        ("photo 6000x4000", fixtures::photo_jpeg(6000, 4000), "image/jpeg"),
        (
            "PNG 7071x7071 RGBA",
            fixtures::flat_png(7071, 7071, png::ColorType::Rgba, png::BitDepth::Eight),
            "image/png",
        ),
        (
            "PNG 7071x7071 grey+alpha 16-bit",
            fixtures::flat_png(7071, 7071, png::ColorType::GrayscaleAlpha, png::BitDepth::Sixteen),
            "image/png",
        ),
        (
            "PNG 7071x7071 palette",
            fixtures::flat_png(7071, 7071, png::ColorType::Indexed, png::BitDepth::Eight),
            "image/png",
        ),
        (
            "PNG with a 260 MB iCCP profile",
            fixtures::png_with_chunk_bomb(b"iCCP", 260 << 20),
            "image/png",
        ),
    ];
    for (n, (input, bytes, content_type)) in presigned.iter().enumerate() {
        assert!(
            bytes.len() as u64 <= forum_media::MAX_UPLOAD_BYTES,
            "{input}: {} bytes",
            bytes.len()
        );
        // A user each: uploads are rate limited per user.
        let owner = token(&format!("presigner-{n}"));
        let id = presigned_put(&stack, &owner, bytes, content_type).await;
        let event = next_upload_event(&mut uploads).await;
        let (answers, kib) = run("process-media", process_env, vec![event]).await;
        let media = media_status(&stack, &owner, &id).await;
        assert_eq!(media["status"], "ready", "{input}: {media} ({})", answers[0]);
        peaks.push(Peak {
            function: "process-media",
            input: format!("presigned: {input}"),
            outcome: format!("{}x{}", media["width"], media["height"]),
            kib,
            memory_mb: memory_mb(process_env),
        });
    }
    for ((input, user, id), event) in direct_ids.iter().zip(direct_events) {
        let (_, kib) = run("process-media", process_env, vec![event]).await;
        let media = media_status(&stack, &token(user), id).await;
        assert_eq!(media["status"], "ready", "{input}: {media}");
        peaks.push(Peak {
            function: "process-media",
            input: format!("direct: {input}"),
            outcome: format!("{}x{}", media["width"], media["height"]),
            kib,
            memory_mb: memory_mb(process_env),
        });
    }
    // Every presigned input again, uploaded afresh, processed in one warm container.
    let mut fresh = Vec::new();
    for (n, (_, bytes, content_type)) in presigned.iter().enumerate() {
        presigned_put(&stack, &token(&format!("warm-presigner-{n}")), bytes, content_type).await;
        fresh.push(next_upload_event(&mut uploads).await);
    }
    let (answers, kib) = run("process-media", process_env, fresh).await;
    assert_eq!(answers.len(), presigned.len());
    peaks.push(Peak {
        function: "process-media",
        input: "every presigned input, one warm container".into(),
        outcome: "-".into(),
        kib,
        memory_mb: memory_mb(process_env),
    });

    let mut table = format!(
        "\n{:<14} {:<56} {:>10} {:>9} {:>7}\n",
        "function", "input", "outcome", "peak", "of half"
    );
    for peak in &peaks {
        let _ = writeln!(
            table,
            "{:<14} {:<56} {:>10} {:>6} MB {:>6.0}%",
            peak.function,
            peak.input,
            peak.outcome,
            peak.kib / 1024,
            peak.kib as f64 * 100.0 / (peak.memory_mb * 1024 / 2) as f64
        );
    }
    println!("{table}");
    // Kept for CI's log (a passing test's output is captured).
    let figures = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("figures");
    let _ = std::fs::create_dir_all(&figures);
    let _ = std::fs::write(figures.join("memory-per-function.txt"), &table);
    let over: Vec<String> = peaks
        .iter()
        .filter(|p| !p.within_half())
        .map(|p| format!("{} {}: {} MB of {} MB", p.function, p.input, p.kib / 1024, p.memory_mb))
        .collect();
    assert!(over.is_empty(), "over half of MemorySize: {over:#?}{table}");
    stack.shutdown().await;
}
