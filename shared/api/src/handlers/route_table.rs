//! Every HTTP route in one table: its Lambda binary, method and path, and what its function
//! uses; its handler is in [`Route::handler`]. Dispatch, `405` answers, each function's warm-up
//! and cursor secret, and forum-local's and the tests' iteration over routes all read this
//! table. Adding a route is one variant, one row and one handler arm here (docs/routes.md
//! lists the other files).

use futures::future::BoxFuture;
use lambda_http::{Body, Request, Response};

use super::{App, blocks, comments, likes, media, moderation, notifications, posts, reports, users};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::routes::match_path;

/// An HTTP route (the `$default` fallback included).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Route {
    ListPosts,
    CreatePost,
    GetPost,
    UpdatePost,
    DeletePost,
    ToggleLike,
    LikePost,
    UnlikePost,
    ListComments,
    CreateComment,
    UpdateComment,
    DeleteComment,
    Upload,
    PresignUpload,
    GetMedia,
    Moderate,
    ModerationLog,
    ReportPost,
    ReportComment,
    ListReports,
    BlockUser,
    UnblockUser,
    ListBlocks,
    GetUser,
    UserPosts,
    UserComments,
    ListNotifications,
    UnreadCount,
    MarkRead,
    /// The `$default` route: answers unknown paths 404 and known paths with a wrong method 405.
    Fallback,
}

/// What a function calls on (nearly) every invocation: its init warms these up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Uses {
    pub dynamodb: bool,
    pub s3: bool,
    pub connections: bool,
    /// Checks text (posts, comments): the profanity filter's tables are built at init.
    pub text: bool,
    /// Answers pages with signed cursors: needs the cursor secret.
    pub cursors: bool,
}

pub const NOTHING: Uses = Uses {
    dynamodb: false,
    s3: false,
    connections: false,
    text: false,
    cursors: false,
};
pub const DYNAMODB: Uses = Uses {
    dynamodb: true,
    ..NOTHING
};
const TEXT: Uses = Uses { text: true, ..DYNAMODB };
const PAGES: Uses = Uses {
    cursors: true,
    ..DYNAMODB
};

/// A route's handler, boxed so one table can hold them all.
pub type Handler = for<'a> fn(&'a App, &'a Request, &'a Caller) -> BoxFuture<'a, Result<Response<Body>, ApiError>>;

/// One row of the table.
pub struct RouteSpec {
    pub route: Route,
    /// The Lambda binary (and SAM `BuildProperties.Binary`) that serves it.
    pub binary: &'static str,
    /// Method and path template (served with and without a trailing slash); empty for the
    /// fallback, which API Gateway sends everything else.
    pub method: &'static str,
    pub path: &'static str,
    pub uses: Uses,
}

macro_rules! handler {
    ($f:path) => {{
        fn boxed<'a>(
            app: &'a App,
            req: &'a Request,
            caller: &'a Caller,
        ) -> BoxFuture<'a, Result<Response<Body>, ApiError>> {
            Box::pin($f(app, req, caller))
        }
        boxed as Handler
    }};
}

/// Unknown path: 404. Known path, other method: 405 with `Allow`.
async fn fallback(_app: &App, req: &Request, _caller: &Caller) -> Result<Response<Body>, ApiError> {
    let path = req.uri().path();
    let allow = allowed_methods(path);
    if allow.is_empty() {
        return Err(ApiError::NotFound(format!("no route for {path}")));
    }
    Err(ApiError::MethodNotAllowed {
        method: req.method().to_string(),
        allow,
    })
}

/// `OPTIONS` on a path: 204 with what it allows, or 404 for an unknown path. Needs no caller:
/// it says only what the API's documentation says.
pub fn options(req: &Request) -> Result<Response<Body>, ApiError> {
    let path = req.uri().path();
    let mut allow = allowed_methods(path);
    if allow.is_empty() {
        return Err(ApiError::NotFound(format!("no route for {path}")));
    }
    allow.push("OPTIONS".to_string());
    Response::builder()
        .status(204)
        .header(http::header::ALLOW, allow.join(", "))
        .body(Body::Empty)
        .map_err(|e| ApiError::Internal(e.to_string()))
}

/// The table, in [`Route`]'s order.
pub static ROUTES: &[RouteSpec] = &[
    RouteSpec {
        route: Route::ListPosts,
        binary: "list-posts",
        method: "GET",
        path: "/api/forum/posts",
        uses: PAGES,
    },
    RouteSpec {
        route: Route::CreatePost,
        binary: "create-post",
        method: "POST",
        path: "/api/forum/posts",
        uses: TEXT,
    },
    RouteSpec {
        route: Route::GetPost,
        binary: "get-post",
        method: "GET",
        path: "/api/forum/posts/{id}",
        uses: DYNAMODB,
    },
    RouteSpec {
        route: Route::UpdatePost,
        binary: "update-post",
        method: "PATCH",
        path: "/api/forum/posts/{id}",
        uses: TEXT,
    },
    RouteSpec {
        route: Route::DeletePost,
        binary: "delete-post",
        method: "DELETE",
        path: "/api/forum/posts/{id}",
        uses: DYNAMODB,
    },
    RouteSpec {
        route: Route::ToggleLike,
        binary: "toggle-like",
        method: "POST",
        path: "/api/forum/posts/{id}/like",
        uses: DYNAMODB,
    },
    RouteSpec {
        route: Route::LikePost,
        binary: "like-post",
        method: "PUT",
        path: "/api/forum/posts/{id}/like",
        uses: DYNAMODB,
    },
    RouteSpec {
        route: Route::UnlikePost,
        binary: "unlike-post",
        method: "DELETE",
        path: "/api/forum/posts/{id}/like",
        uses: DYNAMODB,
    },
    RouteSpec {
        route: Route::ListComments,
        binary: "list-comments",
        method: "GET",
        path: "/api/forum/posts/{id}/comments",
        uses: PAGES,
    },
    RouteSpec {
        route: Route::CreateComment,
        binary: "create-comment",
        method: "POST",
        path: "/api/forum/posts/{id}/comments",
        uses: TEXT,
    },
    RouteSpec {
        route: Route::UpdateComment,
        binary: "update-comment",
        method: "PATCH",
        path: "/api/forum/posts/{id}/comments/{comment_id}",
        uses: TEXT,
    },
    RouteSpec {
        route: Route::DeleteComment,
        binary: "delete-comment",
        method: "DELETE",
        path: "/api/forum/posts/{id}/comments/{comment_id}",
        uses: DYNAMODB,
    },
    // Presigning is computed locally; only the direct upload calls S3.
    RouteSpec {
        route: Route::Upload,
        binary: "upload-media",
        method: "POST",
        path: "/api/forum/upload",
        uses: Uses { s3: true, ..DYNAMODB },
    },
    RouteSpec {
        route: Route::PresignUpload,
        binary: "presign-upload",
        method: "POST",
        path: "/api/forum/upload/presign",
        uses: DYNAMODB,
    },
    RouteSpec {
        route: Route::GetMedia,
        binary: "get-media",
        method: "GET",
        path: "/api/forum/media/{id}",
        uses: DYNAMODB,
    },
    RouteSpec {
        route: Route::Moderate,
        binary: "moderate",
        method: "POST",
        path: "/api/forum/moderation/actions",
        uses: TEXT,
    },
    RouteSpec {
        route: Route::ModerationLog,
        binary: "moderation-log",
        method: "GET",
        path: "/api/forum/moderation/actions",
        uses: PAGES,
    },
    RouteSpec {
        route: Route::ReportPost,
        binary: "report-post",
        method: "POST",
        path: "/api/forum/posts/{id}/report",
        uses: TEXT,
    },
    RouteSpec {
        route: Route::ReportComment,
        binary: "report-comment",
        method: "POST",
        path: "/api/forum/posts/{id}/comments/{comment_id}/report",
        uses: TEXT,
    },
    RouteSpec {
        route: Route::ListReports,
        binary: "list-reports",
        method: "GET",
        path: "/api/forum/moderation/reports",
        uses: PAGES,
    },
    RouteSpec {
        route: Route::BlockUser,
        binary: "block-user",
        method: "POST",
        path: "/api/forum/users/{id}/block",
        uses: DYNAMODB,
    },
    RouteSpec {
        route: Route::UnblockUser,
        binary: "unblock-user",
        method: "DELETE",
        path: "/api/forum/users/{id}/block",
        uses: DYNAMODB,
    },
    RouteSpec {
        route: Route::ListBlocks,
        binary: "list-blocks",
        method: "GET",
        path: "/api/forum/users/me/blocks",
        uses: PAGES,
    },
    RouteSpec {
        route: Route::GetUser,
        binary: "get-user",
        method: "GET",
        path: "/api/forum/users/{id}",
        uses: DYNAMODB,
    },
    RouteSpec {
        route: Route::UserPosts,
        binary: "user-posts",
        method: "GET",
        path: "/api/forum/users/{id}/posts",
        uses: PAGES,
    },
    RouteSpec {
        route: Route::UserComments,
        binary: "user-comments",
        method: "GET",
        path: "/api/forum/users/{id}/comments",
        uses: PAGES,
    },
    RouteSpec {
        route: Route::ListNotifications,
        binary: "list-notifications",
        method: "GET",
        path: "/api/forum/notifications",
        uses: PAGES,
    },
    RouteSpec {
        route: Route::UnreadCount,
        binary: "unread-count",
        method: "GET",
        path: "/api/forum/notifications/unread_count",
        uses: DYNAMODB,
    },
    RouteSpec {
        route: Route::MarkRead,
        binary: "mark-read",
        method: "POST",
        path: "/api/forum/notifications/read",
        uses: DYNAMODB,
    },
    RouteSpec {
        route: Route::Fallback,
        binary: "not-found",
        method: "",
        path: "",
        uses: NOTHING,
    },
];

impl Route {
    /// Its row (the table is in the enum's order; a test holds that).
    pub fn spec(self) -> &'static RouteSpec {
        &ROUTES[self as usize]
    }

    /// Its handler: a match rather than a column of the table, so that a binary, whose `main`
    /// names one route, keeps only that handler's code (the call is folded to it; a table of
    /// every handler would link them all into every function, and the dynamic loader would
    /// relocate all of them at each cold start).
    #[inline(always)]
    pub fn handler(self) -> Handler {
        match self {
            Route::ListPosts => handler!(posts::list_posts),
            Route::CreatePost => handler!(posts::create_post),
            Route::GetPost => handler!(posts::get_post),
            Route::UpdatePost => handler!(posts::update_post),
            Route::DeletePost => handler!(posts::delete_post),
            Route::ToggleLike => handler!(likes::toggle_like),
            Route::LikePost => handler!(likes::like_post),
            Route::UnlikePost => handler!(likes::unlike_post),
            Route::ListComments => handler!(comments::list_comments),
            Route::CreateComment => handler!(comments::create_comment),
            Route::UpdateComment => handler!(comments::update_comment),
            Route::DeleteComment => handler!(comments::delete_comment),
            Route::Upload => handler!(media::upload),
            Route::PresignUpload => handler!(media::presign_upload),
            Route::GetMedia => handler!(media::get_media),
            Route::Moderate => handler!(moderation::moderate),
            Route::ModerationLog => handler!(moderation::moderation_log),
            Route::ReportPost => handler!(reports::report_post),
            Route::ReportComment => handler!(reports::report_comment),
            Route::ListReports => handler!(reports::list_reports),
            Route::BlockUser => handler!(blocks::block_user),
            Route::UnblockUser => handler!(blocks::unblock_user),
            Route::ListBlocks => handler!(blocks::list_blocks),
            Route::GetUser => handler!(users::get_user),
            Route::UserPosts => handler!(users::user_posts),
            Route::UserComments => handler!(users::user_comments),
            Route::ListNotifications => handler!(notifications::list_notifications),
            Route::UnreadCount => handler!(notifications::unread_count),
            Route::MarkRead => handler!(notifications::mark_read),
            Route::Fallback => handler!(fallback),
        }
    }

    pub fn all() -> impl Iterator<Item = Route> {
        ROUTES.iter().map(|spec| spec.route)
    }

    pub fn binary(self) -> &'static str {
        self.spec().binary
    }

    /// Whether it answers pages with signed cursors (and so needs the cursor secret).
    pub fn paginates(self) -> bool {
        self.spec().uses.cursors
    }

    pub fn from_binary(name: &str) -> Option<Route> {
        ROUTES.iter().find(|spec| spec.binary == name).map(|spec| spec.route)
    }
}

/// The routes API Gateway maps by method and path (all but the fallback).
pub fn api_routes() -> impl Iterator<Item = &'static RouteSpec> {
    ROUTES.iter().filter(|spec| !spec.method.is_empty())
}

/// The methods a known path accepts (empty for unknown paths).
pub fn allowed_methods(path: &str) -> Vec<String> {
    api_routes()
        .filter(|spec| match_path(spec.path, path).is_some())
        .map(|spec| spec.method.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_in_the_enums_order_with_distinct_binaries() {
        for (i, spec) in ROUTES.iter().enumerate() {
            assert_eq!(spec.route as usize, i, "{:?}", spec.route);
            assert_eq!(Route::from_binary(spec.binary), Some(spec.route));
        }
        let mut names: Vec<_> = ROUTES.iter().map(|s| s.binary).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), ROUTES.len());
    }

    #[test]
    fn allowed_methods_list_every_method_of_a_path() {
        assert_eq!(allowed_methods("/api/forum/posts/"), vec!["GET", "POST"]);
        assert_eq!(allowed_methods("/api/forum/posts/x"), vec!["GET", "PATCH", "DELETE"]);
        assert!(allowed_methods("/api/forum/nope").is_empty());
    }
}
