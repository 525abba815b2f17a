//! Media end to end: direct and presigned uploads through real HTTP, `process-media` run by
//! the S3 stand-in as S3 would, the CDN stand-in serving the results, and every kind of bad
//! file refused with nothing stored.

use std::time::{Duration, Instant};

use forum_testkit::images::{
    hollow_jpeg, jpeg_scans_repeated, jpeg_with_exif, png, png_bomb, png_header_only, png_with_chunk_bomb,
    png_with_trailing_data, progressive_jpeg,
};
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{Answer, Client, RequestBody, TestStack, isolated_stack, shared_stack};

/// Sends `bytes` as the `file` field of a multipart body.
pub async fn upload(client: &Client, bytes: Vec<u8>, filename: &str) -> Answer {
    let boundary = format!("forum-test-{}", ulid::Ulid::new());
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(&bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let content_type: &'static str = Box::leak(format!("multipart/form-data; boundary={boundary}").into_boxed_str());
    client
        .send(
            Method::POST,
            "/api/forum/upload/",
            Some(RequestBody::Raw {
                content_type,
                bytes: body,
            }),
        )
        .await
}

/// Polls the media until `process-media` has decided.
pub async fn settled(client: &Client, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let media = client.get(&format!("/api/forum/media/{id}/")).await;
        assert_eq!(media.status, 200, "{}", media.body);
        if media.body["status"] != "pending" {
            return media.body;
        }
        assert!(Instant::now() < deadline, "media {id} still pending");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Uploads a small PNG and waits until it is ready; returns the media.
pub async fn ready_media(client: &Client) -> Value {
    let answer = upload(client, png(40, 30, false), "small.png").await;
    assert_eq!(answer.status, 201, "{}", answer.body);
    settled(client, answer.body["id"].as_str().unwrap()).await
}

/// A public GET, as a browser loads an image from the CDN.
async fn fetch(url: &str) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let response = reqwest::get(url).await.expect("fetch");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.bytes().await.expect("bytes").to_vec())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Objects in the media bucket under a prefix.
async fn objects(stack: &TestStack, prefix: &str) -> Vec<String> {
    let bucket = &stack.stack.app.bucket;
    let out = bucket
        .client()
        .list_objects_v2()
        .bucket(bucket.name())
        .prefix(prefix)
        .send()
        .await
        .expect("list");
    out.contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn a_jpeg_comes_out_upright_metadata_free_and_in_every_size() {
    let stack = shared_stack().await;
    let alice = stack.user("alice");
    // 2600x1950 stored sideways: EXIF orientation 6 (rotate 90 degrees clockwise), with GPS.
    let photo = jpeg_with_exif(2600, 1950, 6);
    assert!(contains(&photo, b"Exif\0\0"));
    let created = upload(&alice, photo, "photo.jpg").await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.body["status"], "pending");
    let id = created.body["id"].as_str().unwrap();
    let media = settled(&alice, id).await;
    assert_eq!(media["status"], "ready", "{media}");
    assert_eq!(
        (media["width"].as_u64(), media["height"].as_u64()),
        (Some(975), Some(1300)),
        "upright"
    );
    assert_eq!(media["url"], created.body["url"], "URLs are fixed from the start");

    let mut urls = vec![(media["url"].as_str().unwrap().to_string(), 1300u32)];
    for (size, url) in media["thumbnails"].as_object().unwrap() {
        urls.push((url.as_str().unwrap().to_string(), size.parse().unwrap()));
    }
    for (url, bound) in urls {
        let (status, headers, bytes) = fetch(&url).await;
        assert_eq!(status, 200, "{url}");
        assert_eq!(headers["content-type"], "image/jpeg");
        assert_eq!(headers["cache-control"], "public, max-age=31536000, immutable");
        assert!(
            !contains(&bytes, b"Exif") && !contains(&bytes, b"GPS"),
            "{url} kept metadata"
        );
        let image = image::load_from_memory(&bytes).unwrap().into_rgb8();
        assert_eq!(image.width().max(image.height()), bound, "{url}");
        assert!(image.height() > image.width(), "{url} is not upright");
        // The stored image's left half (red) is the top once upright.
        let top = image.get_pixel(image.width() / 2, image.height() / 8);
        assert!(top[0] > 150 && top[2] < 100, "{url}: top pixel {top:?}");
    }
    // The upload itself (with its GPS) is gone; only the processed files remain.
    assert!(
        !objects(stack, &format!("uploads/{id}"))
            .await
            .iter()
            .any(|k| k.ends_with(id))
    );
    assert_eq!(objects(stack, &format!("media/{id}/")).await.len(), 4);
}

#[tokio::test]
async fn a_png_keeps_its_transparency() {
    let stack = shared_stack().await;
    let alice = stack.user("alice");
    let created = upload(&alice, png(900, 600, true), "pic.png").await;
    assert_eq!(created.status, 201, "{}", created.body);
    let media = settled(&alice, created.body["id"].as_str().unwrap()).await;
    assert_eq!(media["status"], "ready");
    assert_eq!(media["content_type"], "image/png");
    let (status, headers, bytes) = fetch(media["thumbnails"]["320"].as_str().unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "image/png");
    let image = image::load_from_memory(&bytes).unwrap();
    assert_eq!((image.width(), image.height()), (320, 213));
    assert!(image.color().has_alpha());
}

#[tokio::test]
async fn presigned_uploads_go_straight_to_s3_with_type_and_length_signed_and_once() {
    let stack = shared_stack().await;
    let alice = stack.user("alice");
    let photo = jpeg_with_exif(1600, 1200, 1);
    let presigned = alice
        .post(
            "/api/forum/upload/presign/",
            json!({"content_type": "image/jpeg", "content_length": photo.len()}),
        )
        .await;
    assert_eq!(presigned.status, 201, "{}", presigned.body);
    let upload = &presigned.body["upload"];
    assert_eq!(upload["method"], "PUT");
    let url = upload["url"].as_str().unwrap();
    assert_eq!(upload["headers"]["If-None-Match"], "*", "{upload}");
    let put = |body: Vec<u8>, content_type: &'static str, url: String| async move {
        reqwest::Client::new()
            .put(url)
            .header("content-type", content_type)
            .header("if-none-match", "*")
            .body(body)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    // Refused by S3: without the signed If-None-Match, another type, another length, a
    // tampered signature.
    let unconditional = reqwest::Client::new()
        .put(url)
        .header("content-type", "image/jpeg")
        .body(photo.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(unconditional.status().as_u16(), 403);
    assert_eq!(put(photo.clone(), "image/png", url.to_string()).await, 403);
    assert_eq!(
        put(photo[..photo.len() - 1].to_vec(), "image/jpeg", url.to_string()).await,
        403
    );
    let last = url.chars().last().unwrap();
    let tampered = format!("{}{}", &url[..url.len() - 1], if last == '0' { '1' } else { '0' });
    assert_eq!(put(photo.clone(), "image/jpeg", tampered).await, 403);
    let id = presigned.body["id"].as_str().unwrap();
    assert_eq!(
        alice.get(&format!("/api/forum/media/{id}/")).await.body["status"],
        "pending"
    );

    // The exact headers the answer lists are accepted, once: the same PUT sent again while the
    // upload is there (its decode takes far longer than a loopback PUT) is refused.
    let exact = || {
        let mut request = reqwest::Client::new().put(url).body(photo.clone());
        for (name, value) in upload["headers"].as_object().unwrap() {
            if !name.eq_ignore_ascii_case("content-length") {
                request = request.header(name, value.as_str().unwrap());
            }
        }
        request
    };
    assert_eq!(exact().send().await.unwrap().status().as_u16(), 200);
    assert_eq!(exact().send().await.unwrap().status().as_u16(), 412);
    let media = settled(&alice, id).await;
    assert_eq!(media["status"], "ready");
    assert_eq!(
        (media["width"].as_u64(), media["height"].as_u64()),
        (Some(1600), Some(1200))
    );
    assert_eq!(fetch(media["url"].as_str().unwrap()).await.0, 200);
}

#[tokio::test]
async fn presign_requests_are_validated() {
    let stack = shared_stack().await;
    let alice = stack.user("alice");
    let presign = |body: Value| alice.post("/api/forum/upload/presign/", body);
    presign(json!({"content_type": "image/svg+xml", "content_length": 10}))
        .await
        .assert_error(415, "unsupported_media_type");
    presign(json!({"content_type": "image/gif", "content_length": 10}))
        .await
        .assert_error(415, "unsupported_media_type");
    presign(json!({"content_type": "image/png", "content_length": 15 * 1024 * 1024 + 1}))
        .await
        .assert_error(413, "payload_too_large");
    presign(json!({"content_type": "image/png", "content_length": 0}))
        .await
        .assert_error(400, "invalid_request");
    presign(json!({"content_type": "image/png"}))
        .await
        .assert_error(400, "invalid_json");
    presign(json!({"content_type": "image/png", "content_length": -5}))
        .await
        .assert_error(400, "invalid_json");
}

#[tokio::test]
async fn malicious_files_are_refused_and_nothing_is_stored() {
    let stack = isolated_stack().await;
    let alice = stack.user("alice");
    let jpeg = jpeg_with_exif(64, 64, 1);
    let mut polyglot = jpeg.clone();
    polyglot.extend_from_slice(
        b"PK\x03\x04\x14\x00\x00\x00\x08\x00payload.js PK\x05\x06\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0",
    );
    let mut fake_png = b"\x89PNG\r\n\x1a\n".to_vec();
    fake_png.extend_from_slice(&[0x42; 300]);
    fake_png.extend_from_slice(&[0, 0, 0, 0, b'I', b'E', b'N', b'D', 0xAE, 0x42, 0x60, 0x82]);
    let svg =
        br#"<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><rect width="10" height="10"/></svg>"#.to_vec();
    let mut oversize = jpeg_with_exif(16, 16, 1);
    oversize.splice(2..2, std::iter::repeat_n(0u8, 4 * 1024 * 1024 + 10));
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("svg", svg, 415, "unsupported_media_type"),
        ("png header on other bytes", fake_png, 400, "invalid_image"),
        ("truncated jpeg", jpeg[..jpeg.len() / 2].to_vec(), 400, "invalid_image"),
        ("jpeg/zip polyglot", polyglot, 400, "invalid_image"),
        ("50k x 50k bomb", png_bomb(50_000, 50_000), 413, "image_too_large"),
        // Under the pixel limit, over what a decode may allocate here: a progressive JPEG
        // holds every coefficient of the image (7071x7071 4:4:4: 300 MB) until its last scan.
        (
            "7071x7071 progressive",
            progressive_jpeg(7071, 7071, 3),
            413,
            "image_too_large",
        ),
        // PNGs are verified row by row, so their size costs no memory: a header with no data
        // is found out by the decode, whatever its size.
        (
            "7000x7000 16-bit RGBA, no data",
            png_header_only(7000, 7000, 16, 6),
            400,
            "invalid_image",
        ),
        (
            "4000x3000 8-bit RGB, no data",
            png_header_only(4000, 3000, 8, 2),
            400,
            "invalid_image",
        ),
        ("over 4 MiB", oversize, 413, "payload_too_large"),
        // Seconds of CPU apiece for a decoder that decodes every scan it is given and reads
        // zeros where data runs out: refused from their headers, before any decoding.
        (
            "50 MP jpeg, its scan a hundred times, no data",
            hollow_jpeg(7071, 7071, 100),
            400,
            "invalid_image",
        ),
        (
            "a photo's scan twice",
            jpeg_scans_repeated(&jpeg, 2),
            400,
            "invalid_image",
        ),
        (
            "a progressive jpeg's scans five times",
            jpeg_scans_repeated(&progressive_jpeg(64, 64, 3), 5),
            400,
            "invalid_image",
        ),
    ];
    for (what, bytes, status, code) in cases {
        let answer = upload(&alice, bytes, "upload.bin").await;
        assert_eq!(answer.status, status, "{what}: {}", answer.body);
        answer.assert_error(status, code);
    }
    // Not multipart, or no `file` field.
    alice
        .post("/api/forum/upload/", json!({"file": "aGVsbG8="}))
        .await
        .assert_error(415, "unsupported_media_type");
    let boundary = "xyz";
    let body =
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\nhi\r\n--{boundary}--\r\n");
    alice
        .send(
            Method::POST,
            "/api/forum/upload/",
            Some(RequestBody::Raw {
                content_type: "multipart/form-data; boundary=xyz",
                bytes: body.into_bytes(),
            }),
        )
        .await
        .assert_error(400, "missing_file");
    assert!(objects(&stack, "").await.is_empty(), "nothing may be stored");

    // Through a presigned URL the bytes reach S3 unchecked; process-media refuses them and
    // deletes the upload. Declared PNG, sent SVG; declared JPEG, sent a bomb PNG.
    for (declared, bytes) in [
        ("image/png", b"<svg xmlns='http://www.w3.org/2000/svg'/>".to_vec()),
        ("image/jpeg", png_bomb(50_000, 50_000)),
        ("image/jpeg", hollow_jpeg(7071, 7071, 100)),
    ] {
        let presigned = alice
            .post(
                "/api/forum/upload/presign/",
                json!({"content_type": declared, "content_length": bytes.len()}),
            )
            .await;
        let status = reqwest::Client::new()
            .put(presigned.body["upload"]["url"].as_str().unwrap())
            .header("content-type", declared)
            .header("if-none-match", "*")
            .body(bytes)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status.as_u16(), 200);
        let media = settled(&alice, presigned.body["id"].as_str().unwrap()).await;
        assert_eq!(media["status"], "rejected", "{media}");
        assert!(media["reason"].as_str().is_some_and(|r| !r.is_empty()));
        assert_eq!(fetch(media["url"].as_str().unwrap()).await.0, 404);
    }
    assert!(
        objects(&stack, "").await.is_empty(),
        "rejected uploads are deleted, nothing is served"
    );
}

/// Metadata that inflates to hundreds of MB (a colour profile, compressed text) is never
/// inflated: the upload is accepted, and what is served carries none of it. Nor is a zlib
/// stream read past the image's last row.
#[tokio::test]
async fn compressed_metadata_bombs_are_never_inflated_and_never_served() {
    let stack = shared_stack().await;
    let alice = stack.user("alice");
    let cases = [
        ("iCCP", png_with_chunk_bomb(b"iCCP", 260 * 1024 * 1024)),
        ("zTXt", png_with_chunk_bomb(b"zTXt", 260 * 1024 * 1024)),
        ("iTXt", png_with_chunk_bomb(b"iTXt", 260 * 1024 * 1024)),
        ("trailing zlib data", png_with_trailing_data(16, 16, 64 * 1024 * 1024)),
    ];
    for (what, bytes) in cases {
        assert!(bytes.len() < 1024 * 1024, "{what}: {} bytes", bytes.len());
        let answer = upload(&alice, bytes, "bomb.png").await;
        assert_eq!(answer.status, 201, "{what}: {}", answer.body);
        let media = settled(&alice, answer.body["id"].as_str().unwrap()).await;
        assert_eq!(media["status"], "ready", "{what}: {media}");
        let (status, _, served) = fetch(media["url"].as_str().unwrap()).await;
        assert_eq!(status, 200);
        for chunk in [b"iCCP", b"zTXt", b"iTXt", b"tEXt"] {
            assert!(!contains(&served, chunk), "{what}: served with {chunk:?}");
        }
        assert!(served.len() < 4096, "{what}: {} bytes served", served.len());
    }
}

#[tokio::test]
async fn posts_may_only_use_their_authors_media() {
    let stack = shared_stack().await;
    let alice = stack.user("alice");
    let bob = stack.user("bob");
    let alices = ready_media(&alice).await;
    let bobs = ready_media(&bob).await;
    let url = |m: &Value| m["url"].as_str().unwrap().to_string();

    let post = alice
        .post(
            "/api/forum/posts/",
            json!({"content": "my photo", "media_url": url(&alices)}),
        )
        .await;
    assert_eq!(post.status, 201, "{}", post.body);
    assert_eq!(post.body["media_url"], alices["url"]);
    // A thumbnail URL of one's own media is fine too.
    let fresh = ready_media(&alice).await;
    let thumb = fresh["thumbnails"]["320"].as_str().unwrap();
    assert_eq!(
        alice
            .post("/api/forum/posts/", json!({"content": "thumb", "media_url": thumb}))
            .await
            .status,
        201
    );

    for foreign in [
        url(&bobs),
        "https://cdn.example.com/cat.jpg".to_string(),
        format!("{}/media/{}/display.jpg", stack.base, ulid::Ulid::new()),
    ] {
        alice
            .post(
                "/api/forum/posts/",
                json!({"content": "not mine", "media_url": foreign}),
            )
            .await
            .assert_error(400, "invalid_media_url");
    }
    let path = format!("/api/forum/posts/{}/", post.body["id"].as_str().unwrap());
    alice
        .patch(&path, json!({"media_url": url(&bobs)}))
        .await
        .assert_error(400, "invalid_media_url");
    assert_eq!(
        alice.get(&path).await.body["media_url"],
        alices["url"],
        "a refused edit changes nothing"
    );
    let other = ready_media(&alice).await;
    let edited = alice
        .patch(&path, json!({"media_url": url(&other), "content": "new photo"}))
        .await;
    assert_eq!(edited.status, 200, "{}", edited.body);
    assert_eq!(edited.body["media_url"], other["url"]);
    assert_eq!(edited.body["content"], "new photo");
    // Only the uploader sees the media record.
    bob.get(&format!("/api/forum/media/{}/", alices["id"].as_str().unwrap()))
        .await
        .assert_error(404, "not_found");
}

/// Waits until nothing is stored under `prefix` (the stream deletes asynchronously).
async fn gone(stack: &TestStack, prefix: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !objects(stack, prefix).await.is_empty() {
        assert!(Instant::now() < deadline, "{prefix} still stored");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls a post until `check` holds for it.
async fn post_until(client: &Client, path: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let post = client.get(path).await;
        if check(&post.body) {
            return post.body;
        }
        assert!(
            Instant::now() < deadline,
            "{path} never became as expected: {}",
            post.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn an_upload_belongs_to_one_post_and_is_deleted_when_no_post_shows_it() {
    let stack = shared_stack().await;
    let alice = stack.user("alice");
    let first = ready_media(&alice).await;
    let id = |m: &Value| m["id"].as_str().unwrap().to_string();
    let url = |m: &Value| m["url"].as_str().unwrap().to_string();

    let post = alice
        .post("/api/forum/posts/", json!({"content": "one", "media_url": url(&first)}))
        .await;
    assert_eq!(post.status, 201, "{}", post.body);
    let path = format!("/api/forum/posts/{}/", post.body["id"].as_str().unwrap());
    // The same upload (under any of its URLs) in a second post, new or edited, is refused:
    // deleting one post would otherwise break the other's image.
    let other = alice.create_post("two").await;
    let other_path = format!("/api/forum/posts/{}/", other["id"].as_str().unwrap());
    for reuse in [url(&first), first["thumbnails"]["640"].as_str().unwrap().to_string()] {
        let refused = alice
            .post("/api/forum/posts/", json!({"content": "again", "media_url": reuse}))
            .await;
        refused.assert_error(400, "invalid_media_url");
        assert!(
            refused.body["error"]["message"].as_str().unwrap().contains("another"),
            "{}",
            refused.body
        );
        alice
            .patch(&other_path, json!({"media_url": reuse}))
            .await
            .assert_error(400, "invalid_media_url");
    }
    assert!(alice.get(&other_path).await.body["media_url"].is_null());
    // Setting the same media again on its own post is no change of owner.
    assert_eq!(alice.patch(&path, json!({"media_url": url(&first)})).await.status, 200);

    // An edit that swaps the image releases the old one: record and objects go.
    let second = ready_media(&alice).await;
    let swapped = alice.patch(&path, json!({"media_url": url(&second)})).await;
    assert_eq!(swapped.status, 200, "{}", swapped.body);
    gone(stack, &format!("media/{}/", id(&first))).await;
    alice
        .get(&format!("/api/forum/media/{}/", id(&first)))
        .await
        .assert_error(404, "not_found");
    assert_eq!(fetch(&url(&second)).await.0, 200, "the new image is served");
    // The released upload cannot come back.
    alice
        .patch(&path, json!({"media_url": url(&first)}))
        .await
        .assert_error(400, "invalid_media_url");

    // Removing the image releases it too.
    assert_eq!(alice.patch(&path, json!({"media_url": null})).await.status, 200);
    gone(stack, &format!("media/{}/", id(&second))).await;

    // Deleting the post deletes the media it showed.
    let third = ready_media(&alice).await;
    assert_eq!(alice.patch(&path, json!({"media_url": url(&third)})).await.status, 200);
    assert_eq!(alice.delete(&path).await.status, 204);
    gone(stack, &format!("media/{}/", id(&third))).await;
    alice
        .get(&format!("/api/forum/media/{}/", id(&third)))
        .await
        .assert_error(404, "not_found");
}

#[tokio::test]
async fn a_post_never_keeps_media_that_was_rejected_after_it_took_it() {
    let stack = shared_stack().await;
    let alice = stack.user("alice");
    // A presigned upload is pending until its bytes arrive; a post may already show it.
    let bytes = b"this is not a PNG at all, whatever the header said".to_vec();
    let presigned = alice
        .post(
            "/api/forum/upload/presign/",
            json!({"content_type": "image/png", "content_length": bytes.len()}),
        )
        .await;
    assert_eq!(presigned.status, 201, "{}", presigned.body);
    let media_id = presigned.body["id"].as_str().unwrap().to_string();
    let post = alice
        .post(
            "/api/forum/posts/",
            json!({"content": "soon", "media_url": presigned.body["url"]}),
        )
        .await;
    assert_eq!(post.status, 201, "{}", post.body);
    let path = format!("/api/forum/posts/{}/", post.body["id"].as_str().unwrap());

    let mut put = reqwest::Client::new()
        .put(presigned.body["upload"]["url"].as_str().unwrap())
        .body(bytes);
    for (name, value) in presigned.body["upload"]["headers"].as_object().unwrap() {
        if !name.eq_ignore_ascii_case("content-length") {
            put = put.header(name, value.as_str().unwrap());
        }
    }
    assert_eq!(put.send().await.unwrap().status().as_u16(), 200);
    // Rejected: the post then shows no image rather than one that 404s forever...
    let post = post_until(&alice, &path, |p| p["media_url"].is_null()).await;
    assert_eq!(post["content"], "soon");
    // ... and the rejected upload, shown by nothing, is deleted.
    let deadline = Instant::now() + Duration::from_secs(30);
    while alice.get(&format!("/api/forum/media/{media_id}/")).await.status != 404 {
        assert!(Instant::now() < deadline, "rejected media kept");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(objects(stack, &format!("uploads/{media_id}")).await.is_empty());
}

#[tokio::test]
async fn uploads_no_post_claims_expire_and_their_objects_go() {
    let stack = shared_stack().await;
    let alice = stack.user("alice");
    let table = &stack.stack.app.table;
    let client = table.client();
    let key = |id: &str| {
        std::collections::HashMap::from([
            (
                "pk".to_string(),
                aws_sdk_dynamodb::types::AttributeValue::S(forum_store::keys::media_pk(id)),
            ),
            (
                "sk".to_string(),
                aws_sdk_dynamodb::types::AttributeValue::S(forum_store::keys::MEDIA_SK.to_string()),
            ),
        ])
    };
    let ttl_of = |id: String| async move {
        let item = client
            .get_item()
            .table_name(table.name())
            .set_key(Some(key(&id)))
            .consistent_read(true)
            .send()
            .await
            .unwrap();
        item.item()
            .and_then(|i| i.get("ttl"))
            .map(|v| v.as_n().unwrap().parse::<i64>().unwrap())
    };

    // Unclaimed, an upload expires a day after it was made.
    let unclaimed = ready_media(&alice).await;
    let unclaimed_id = unclaimed["id"].as_str().unwrap().to_string();
    let ttl = ttl_of(unclaimed_id.clone())
        .await
        .expect("an unclaimed upload has a TTL");
    let expected = chrono::Utc::now().timestamp() + forum_store::UNCLAIMED_MEDIA_TTL_SECS;
    assert!((expected - 120..=expected).contains(&ttl), "{ttl} vs {expected}");
    // Claimed, it lives as long as its post.
    let claimed = ready_media(&alice).await;
    let post = alice
        .post(
            "/api/forum/posts/",
            json!({"content": "kept", "media_url": claimed["url"]}),
        )
        .await;
    assert_eq!(post.status, 201, "{}", post.body);
    assert_eq!(ttl_of(claimed["id"].as_str().unwrap().to_string()).await, None);

    // Past its TTL (DynamoDB deletes expired items lazily), it can no longer be claimed.
    client
        .update_item()
        .table_name(table.name())
        .set_key(Some(key(&unclaimed_id)))
        .update_expression("SET #ttl = :past")
        .expression_attribute_names("#ttl", "ttl")
        .expression_attribute_values(
            ":past",
            aws_sdk_dynamodb::types::AttributeValue::N((chrono::Utc::now().timestamp() - 1).to_string()),
        )
        .send()
        .await
        .unwrap();
    alice
        .post(
            "/api/forum/posts/",
            json!({"content": "late", "media_url": unclaimed["url"]}),
        )
        .await
        .assert_error(400, "invalid_media_url");
    // When TTL removes the record, the stream deletes what was stored for it.
    assert!(!objects(stack, &format!("media/{unclaimed_id}/")).await.is_empty());
    client
        .delete_item()
        .table_name(table.name())
        .set_key(Some(key(&unclaimed_id)))
        .send()
        .await
        .unwrap();
    gone(stack, &format!("media/{unclaimed_id}/")).await;
}

/// A GET with the path sent exactly as written (HTTP clients resolve dot segments first).
async fn raw_get(base: &str, path: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(host).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.expect("read");
    let head = String::from_utf8_lossy(&answer);
    head.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line")
}

#[tokio::test]
async fn paths_with_dot_segments_name_keys_that_do_not_exist() {
    let stack = shared_stack().await;
    let alice = stack.user("alice");
    let media = ready_media(&alice).await;
    let id = media["id"].as_str().unwrap();
    let bucket = &stack.stack.app.bucket;
    // An original waiting under uploads/ (as while process-media runs), and one in a sibling folder.
    let waiting = ulid::Ulid::new().to_string();
    bucket
        .client()
        .put_object()
        .bucket(bucket.name())
        .key(format!("private/{waiting}"))
        .body(png(4, 4, false).into())
        .send()
        .await
        .expect("put");
    let display = format!("/media/{id}/display.png");
    assert_eq!(raw_get(&stack.base, &display).await, 200);
    for path in [
        format!("/media/{id}/../../private/{waiting}"),
        format!("/media/{id}/%2e%2e/%2E%2E/private/{waiting}"),
        format!("/media/./{id}/display.png"),
        format!("/media/{id}/../{id}/display.png"),
        format!("/media/..%2fprivate/{waiting}"),
    ] {
        assert_eq!(raw_get(&stack.base, &path).await, 404, "{path}");
    }
    // The S3 stand-in itself reads keys literally: a dot segment is a key that does not exist,
    // and it never stores one.
    let literal = bucket
        .client()
        .get_object()
        .bucket(bucket.name())
        .key(format!("media/{id}/../../private/{waiting}"))
        .send()
        .await;
    assert!(
        literal
            .as_ref()
            .err()
            .and_then(|e| e.as_service_error())
            .is_some_and(|e| e.is_no_such_key()),
        "{literal:?}"
    );
    let stored = bucket
        .client()
        .put_object()
        .bucket(bucket.name())
        .key(format!("media/{id}/../display.png"))
        .body(b"overwrite?".to_vec().into())
        .send()
        .await;
    assert!(stored.is_err(), "a dot-segment key was stored");
    let (status, _, bytes) = fetch(media["url"].as_str().unwrap()).await;
    assert_eq!(status, 200);
    assert_ne!(bytes, b"overwrite?");
}

#[tokio::test]
async fn media_answers_carry_the_distributions_security_headers() {
    let stack = shared_stack().await;
    let alice = stack.user("alice");
    let media = ready_media(&alice).await;
    let (status, headers, _) = fetch(media["url"].as_str().unwrap()).await;
    assert_eq!(status, 200);
    // Exactly what the template's ResponseHeadersPolicy tells CloudFront to add...
    let template =
        forum_local::template::StackTemplate::parse(forum_local::template::BUNDLED_TEMPLATE).expect("template");
    assert!(template.media_headers.len() >= 5, "{:?}", template.media_headers);
    for (name, value) in &template.media_headers {
        assert_eq!(
            headers.get(name).and_then(|v| v.to_str().ok()),
            Some(value.as_str()),
            "{name}"
        );
    }
    // ... which is what keeps an image an image: never sniffed, framed or run as a page.
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["x-frame-options"], "DENY");
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("sandbox"), "{csp}");
    assert_eq!(headers["content-type"], "image/png");
}

#[tokio::test]
async fn browsers_may_put_presigned_uploads_from_the_allowed_origins_only() {
    // What a page does: a CORS preflight, then the PUT with its Origin. The S3 stand-in answers
    // both from the bucket's CorsRules in template.yaml (AllowedOrigins: localhost:5173 here).
    let stack = shared_stack().await;
    let alice = stack.user("alice");
    let photo = png(16, 16, false);
    let presigned = alice
        .post(
            "/api/forum/upload/presign/",
            json!({"content_type": "image/png", "content_length": photo.len()}),
        )
        .await;
    assert_eq!(presigned.status, 201, "{}", presigned.body);
    let url = presigned.body["upload"]["url"].as_str().unwrap().to_string();
    let http = reqwest::Client::new();
    let preflight = |origin: &'static str, method: &'static str, headers: &'static str| {
        http.request(Method::OPTIONS, &url)
            .header("origin", origin)
            .header("access-control-request-method", method)
            .header("access-control-request-headers", headers)
            .send()
    };
    // What the page asks to send: the signed headers a browser may set.
    let allowed = preflight("http://localhost:5173", "PUT", "content-type,if-none-match")
        .await
        .unwrap();
    assert_eq!(allowed.status().as_u16(), 200);
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "http://localhost:5173"
    );
    assert!(
        allowed.headers()["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("PUT")
    );
    for (origin, method, headers) in [
        ("https://evil.example", "PUT", "content-type"),
        ("http://localhost:5173", "DELETE", "content-type"),
        ("http://localhost:5173", "PUT", "x-amz-acl"),
    ] {
        let refused = preflight(origin, method, headers).await.unwrap();
        assert_eq!(refused.status().as_u16(), 403, "{origin} {method} {headers}");
        assert!(refused.headers().get("access-control-allow-origin").is_none());
    }
    // The PUT itself, from the page's origin: stored, and readable by the page.
    let mut put = http.put(&url).header("origin", "http://localhost:5173").body(photo);
    for (name, value) in presigned.body["upload"]["headers"].as_object().unwrap() {
        if !name.eq_ignore_ascii_case("content-length") {
            put = put.header(name, value.as_str().unwrap());
        }
    }
    let answer = put.send().await.unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    assert_eq!(answer.headers()["access-control-allow-origin"], "http://localhost:5173");
    let media = settled(&alice, presigned.body["id"].as_str().unwrap()).await;
    assert_eq!(media["status"], "ready");
}
