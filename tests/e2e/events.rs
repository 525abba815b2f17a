//! Every sample event in `events/` runs through its handler against DynamoDB Local, as
//! `sam local invoke -e` would feed it to the Lambda.

use std::path::PathBuf;

use forum_api::Route;
use forum_api::auth::TokenVerifier;
use forum_api::handlers;
use forum_domain::model::{Comment, Post, Profile};
use forum_store::{RateAction, RateToken};
use serde_json::Value;

use crate::support::isolated_stack;

/// `json` as the handler's event type, as the Lambda runtime reads it.
fn as_delivered<T: serde::de::DeserializeOwned>(json: &Value) -> T {
    forum_local::invoke::event(json.clone()).expect("an event Lambda delivers")
}

/// A handler's answer as the runtime sends it back.
fn as_answered<T: serde::Serialize>(answer: &T) -> Value {
    forum_local::invoke::answer(answer)
}

fn events_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../events")
}

fn read_event(name: &str) -> String {
    std::fs::read_to_string(events_dir().join(name)).unwrap_or_else(|e| panic!("events/{name}: {e}"))
}

#[tokio::test]
async fn every_sample_event_runs_through_its_handler() {
    let stack = isolated_stack().await;
    let app = &stack.stack.app;

    // The authorizer event carries a real token for the local defaults; its answer is the
    // context the route events carry.
    let event: aws_lambda_events::apigw::ApiGatewayV2CustomAuthorizerV2Request =
        serde_json::from_str(&read_event("authorizer.json")).expect("authorizer.json");
    let verifier = TokenVerifier::with_hmac_secret(&stack.jwt.secret, &stack.jwt.issuer, &stack.jwt.audience);
    let answer = forum_api::auth::authorize(&verifier, &event).await.expect("an answer");
    assert!(answer.is_authorized);
    let caller = forum_api::auth::Caller::from_context(&answer.context).expect("the sample token is valid");

    let list: Value = serde_json::from_str(&read_event("list-posts.json")).unwrap();
    let context = &list["requestContext"]["authorizer"]["lambda"];
    assert_eq!(context["user_id"], caller.user_id.as_str());
    assert_eq!(context["username"], caller.username.as_str());

    // The post the get/update/delete events name, owned by the events' user.
    let get: Value = serde_json::from_str(&read_event("get-post.json")).unwrap();
    let post_id = get["pathParameters"]["id"].as_str().unwrap().to_string();
    let post = Post {
        id: post_id.clone(),
        user_id: caller.user_id.clone(),
        content: "seeded for the sample events".into(),
        media_url: None,
        created_at: forum_domain::model::now_rfc3339(),
        edited_at: None,
        like_count: 0,
        comment_count: 0,
        removed: None,
        mentions: Vec::new(),
    };
    let rate = |action| RateToken {
        user_id: caller.user_id.clone(),
        action,
        limit: 1000,
        now: chrono::Utc::now().timestamp(),
        idempotency: None,
    };
    app.table
        .create_post(&post, Some(&Profile::from(&caller)), &rate(RateAction::Post), None)
        .await
        .unwrap();
    // And the comment the comment events name.
    let update: Value = serde_json::from_str(&read_event("update-comment.json")).unwrap();
    let comment_id = update["pathParameters"]["comment_id"].as_str().unwrap().to_string();
    let comment = Comment {
        id: comment_id.clone(),
        post_id: post_id.clone(),
        user_id: caller.user_id.clone(),
        content: "seeded comment".into(),
        created_at: forum_domain::model::timestamp_of(&comment_id).unwrap(),
        edited_at: None,
        removed: None,
        mentions: Vec::new(),
    };
    app.table
        .create_comment(&comment, None, &rate(RateAction::Comment), &caller.user_id)
        .await
        .unwrap();

    // The media the media events name: a pending upload by the events' user.
    let get_media: Value = serde_json::from_str(&read_event("get-media.json")).unwrap();
    let media_id = get_media["pathParameters"]["id"].as_str().unwrap().to_string();
    let media = forum_domain::model::Media {
        id: media_id.clone(),
        user_id: caller.user_id.clone(),
        status: forum_domain::model::MediaStatus::Pending,
        media_type: forum_media::MediaType::Png,
        size: 68,
        created_at: forum_domain::model::timestamp_of(&media_id).unwrap(),
        width: None,
        height: None,
        reason: None,
        post_id: None,
    };
    app.table
        .create_media(&media, &rate(RateAction::Upload), false)
        .await
        .unwrap();

    let mut covered = Vec::new();
    for (file, route, status) in [
        ("list-posts.json", Route::ListPosts, 200),
        ("create-post.json", Route::CreatePost, 201),
        ("get-post.json", Route::GetPost, 200),
        ("get-user.json", Route::GetUser, 200),
        ("user-posts.json", Route::UserPosts, 200),
        ("user-comments.json", Route::UserComments, 200),
        ("toggle-like.json", Route::ToggleLike, 200),
        ("like-post.json", Route::LikePost, 200),
        ("unlike-post.json", Route::UnlikePost, 200),
        ("create-comment.json", Route::CreateComment, 201),
        ("list-comments.json", Route::ListComments, 200),
        ("update-comment.json", Route::UpdateComment, 200),
        ("report-comment.json", Route::ReportComment, 201),
        ("delete-comment.json", Route::DeleteComment, 204),
        ("update-post.json", Route::UpdatePost, 200),
        ("report-post.json", Route::ReportPost, 201),
        ("list-reports.json", Route::ListReports, 200),
        ("delete-post.json", Route::DeletePost, 204),
        ("get-post.json", Route::GetPost, 404),
        ("not-found.json", Route::Fallback, 404),
        ("upload-media.json", Route::Upload, 201),
        ("presign-upload.json", Route::PresignUpload, 201),
        ("get-media.json", Route::GetMedia, 200),
        ("moderate.json", Route::Moderate, 201),
        ("list-notifications.json", Route::ListNotifications, 200),
        ("unread-count.json", Route::UnreadCount, 200),
        ("mark-read.json", Route::MarkRead, 200),
        ("block-user.json", Route::BlockUser, 201),
        ("list-blocks.json", Route::ListBlocks, 200),
        ("unblock-user.json", Route::UnblockUser, 204),
        ("moderation-log.json", Route::ModerationLog, 200),
    ] {
        let request = lambda_http::request::from_str(&read_event(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let response = handlers::handle(app, route, request).await;
        assert_eq!(response.status().as_u16(), status, "{file}: {:?}", response.body());
        covered.push(file.to_string());
    }

    // The S3 event: process-media turns the pending upload into ready media.
    let png = forum_testkit::images::png(2, 2, false);
    app.bucket
        .put(&forum_store::bucket::upload_key(&media_id), png, "image/png", None)
        .await
        .unwrap();
    let s3_event: aws_lambda_events::s3::S3Event = serde_json::from_str(&read_event("process-media.json")).unwrap();
    handlers::process_uploads(app, s3_event).await.expect("process-media");
    let processed = app.table.get_media(&media_id).await.unwrap().unwrap();
    assert_eq!(processed.status, forum_domain::model::MediaStatus::Ready);
    covered.push("process-media.json".into());

    // The WebSocket API: the authorizer's policy for `$connect`, then the three routes.
    let ws_auth: Value = serde_json::from_str(&read_event("ws-authorizer.json")).unwrap();
    let policy = as_answered(
        &forum_api::auth::authorize_event(&verifier, &as_delivered(&ws_auth))
            .await
            .unwrap(),
    );
    assert_eq!(policy["policyDocument"]["Statement"][0]["Effect"], "Allow");
    assert_eq!(policy["context"]["user_id"], caller.user_id.as_str());
    let connect: Value = serde_json::from_str(&read_event("ws-connect.json")).unwrap();
    let connection_id = connect["requestContext"]["connectionId"].as_str().unwrap().to_string();
    assert_eq!(
        as_answered(&handlers::ws_connect(app, &as_delivered(&connect)).await)["statusCode"],
        200
    );
    assert!(app.table.get_connection(&connection_id).await.unwrap().is_some());
    let message: Value = serde_json::from_str(&read_event("ws-message.json")).unwrap();
    assert_eq!(
        as_answered(&handlers::ws_message(app, &as_delivered(&message)).await)["statusCode"],
        200
    );
    // No socket stands behind the sample connection: the reply gets `410 Gone`, and the
    // connection and the subscription it just made are forgotten.
    assert!(app.table.get_connection(&connection_id).await.unwrap().is_none());
    assert!(
        app.table
            .subscribers(&post_id)
            .await
            .unwrap()
            .iter()
            .all(|c| c.connection_id != connection_id)
    );
    let disconnect: Value = serde_json::from_str(&read_event("ws-disconnect.json")).unwrap();
    assert_eq!(
        as_answered(&handlers::ws_disconnect(app, &as_delivered(&disconnect)).await)["statusCode"],
        200
    );
    assert!(app.table.get_connection(&connection_id).await.unwrap().is_none());
    // The stream batch is handled whole: no record reported failed.
    let stream: Value = serde_json::from_str(&read_event("stream-fanout.json")).unwrap();
    assert_eq!(
        as_answered(&handlers::stream_fanout(app, &as_delivered(&stream)).await)["batchItemFailures"],
        serde_json::json!([])
    );
    covered.extend(
        [
            "ws-authorizer.json",
            "ws-connect.json",
            "ws-message.json",
            "ws-disconnect.json",
            "stream-fanout.json",
        ]
        .map(String::from),
    );

    // Every event file is exercised here.
    let mut files: Vec<String> = std::fs::read_dir(events_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".json"))
        .collect();
    files.sort();
    covered.push("authorizer.json".into());
    for file in files {
        assert!(covered.contains(&file), "events/{file} is not exercised by this test");
    }
}

/// A post record as the stream delivers it; `broken` leaves out what every post has.
fn post_record(sequence: &str, post_id: &str, like_count: u32, broken: bool) -> Value {
    let key = format!("POST#{post_id}");
    let mut image = serde_json::json!({
        "pk": {"S": key}, "sk": {"S": "POST"}, "type": {"S": "post"},
        "post_id": {"S": post_id}, "user_id": {"S": "lanes-user"},
        "content": {"S": "lanes"}, "created_at": {"S": "2026-11-24T12:00:00.000Z"},
        "like_count": {"N": like_count.to_string()}, "comment_count": {"N": "0"},
    });
    if broken {
        image.as_object_mut().unwrap().remove("post_id");
    }
    let mut old = image.clone();
    old["like_count"] = serde_json::json!({"N": like_count.saturating_sub(1).to_string()});
    serde_json::json!({
        "eventID": format!("event-{sequence}"),
        "eventName": "MODIFY",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": {
            "Keys": {"pk": {"S": key}, "sk": {"S": "POST"}},
            "OldImage": old,
            "NewImage": image,
            "SequenceNumber": sequence,
            "SizeBytes": 200,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        },
    })
}

#[tokio::test]
async fn a_failed_record_reports_the_earliest_failure_across_partitions() {
    let stack = isolated_stack().await;
    let app = &stack.stack.app;
    let (a, b, c) = (
        "01KAAAAAAAAAAAAAAAAAAAAAAA",
        "01KBBBBBBBBBBBBBBBBBBBBBBB",
        "01KCCCCCCCCCCCCCCCCCCCCCCC",
    );
    // Partitions run side by side; the batch resumes from its earliest failed record, so
    // nothing after it is lost, whichever partition finished first.
    let batch = serde_json::json!({"Records": [
        post_record("100", c, 1, false),
        post_record("101", b, 1, false),
        post_record("102", a, 1, true),
        post_record("103", b, 2, true),
        post_record("104", c, 2, false),
    ]});
    assert_eq!(
        as_answered(&handlers::stream_fanout(app, &as_delivered(&batch)).await)["batchItemFailures"],
        serde_json::json!([{"itemIdentifier": "102"}])
    );
    let clean = serde_json::json!({"Records": [post_record("200", a, 1, false), post_record("201", b, 3, false)]});
    assert_eq!(
        as_answered(&handlers::stream_fanout(app, &as_delivered(&clean)).await)["batchItemFailures"],
        serde_json::json!([])
    );
}
