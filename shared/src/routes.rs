//! The routes the API serves and the Lambda binary behind each.
//!
//! `template.yaml` is what API Gateway (and `forum-local`) route by; this table is what the
//! code knows, used for 405 answers and checked against the template by the tests.

/// Every Lambda-backed entry point: HTTP routes, the fallback and the authorizer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Route {
    ListPosts,
    CreatePost,
    GetPost,
    UpdatePost,
    DeletePost,
    ToggleLike,
    ListComments,
    CreateComment,
    UpdateComment,
    DeleteComment,
    Upload,
    PresignUpload,
    GetMedia,
    /// The `$default` route: answers unknown paths 404 and known paths with a wrong method 405.
    Fallback,
}

/// Binaries that are not HTTP routes: the authorizer and event-driven triggers.
pub const TRIGGER_BINARIES: &[&str] = &[
    "authorizer",
    "process-media",
    "ws-connect",
    "ws-disconnect",
    "ws-message",
    "stream-fanout",
];

/// The WebSocket API's routes and the binary behind each.
pub const WS_ROUTES: &[(&str, &str)] = &[
    ("$connect", "ws-connect"),
    ("$disconnect", "ws-disconnect"),
    ("$default", "ws-message"),
];

/// Base path of the HTTP API.
pub const BASE_PATH: &str = "/api/forum";

/// (method, path template, route). Each path is also served with a trailing slash.
pub const API_ROUTES: &[(&str, &str, Route)] = &[
    ("GET", "/api/forum/posts", Route::ListPosts),
    ("POST", "/api/forum/posts", Route::CreatePost),
    ("GET", "/api/forum/posts/{id}", Route::GetPost),
    ("PATCH", "/api/forum/posts/{id}", Route::UpdatePost),
    ("DELETE", "/api/forum/posts/{id}", Route::DeletePost),
    ("POST", "/api/forum/posts/{id}/like", Route::ToggleLike),
    ("GET", "/api/forum/posts/{id}/comments", Route::ListComments),
    ("POST", "/api/forum/posts/{id}/comments", Route::CreateComment),
    (
        "PATCH",
        "/api/forum/posts/{id}/comments/{comment_id}",
        Route::UpdateComment,
    ),
    (
        "DELETE",
        "/api/forum/posts/{id}/comments/{comment_id}",
        Route::DeleteComment,
    ),
    ("POST", "/api/forum/upload", Route::Upload),
    ("POST", "/api/forum/upload/presign", Route::PresignUpload),
    ("GET", "/api/forum/media/{id}", Route::GetMedia),
];

impl Route {
    pub const ALL: &[Route] = &[
        Route::ListPosts,
        Route::CreatePost,
        Route::GetPost,
        Route::UpdatePost,
        Route::DeletePost,
        Route::ToggleLike,
        Route::ListComments,
        Route::CreateComment,
        Route::UpdateComment,
        Route::DeleteComment,
        Route::Upload,
        Route::PresignUpload,
        Route::GetMedia,
        Route::Fallback,
    ];

    /// The binary (and SAM `BuildProperties.Binary`) that serves this route.
    /// Routes that answer pages with signed cursors, and so need the cursor secret.
    pub fn paginates(self) -> bool {
        matches!(self, Route::ListPosts | Route::ListComments)
    }

    pub fn binary(self) -> &'static str {
        match self {
            Route::ListPosts => "list-posts",
            Route::CreatePost => "create-post",
            Route::GetPost => "get-post",
            Route::UpdatePost => "update-post",
            Route::DeletePost => "delete-post",
            Route::ToggleLike => "toggle-like",
            Route::ListComments => "list-comments",
            Route::CreateComment => "create-comment",
            Route::UpdateComment => "update-comment",
            Route::DeleteComment => "delete-comment",
            Route::Upload => "upload-media",
            Route::PresignUpload => "presign-upload",
            Route::GetMedia => "get-media",
            Route::Fallback => "not-found",
        }
    }

    pub fn from_binary(name: &str) -> Option<Route> {
        Route::ALL.iter().copied().find(|r| r.binary() == name)
    }
}

/// Matches a concrete path against a template such as `/api/forum/posts/{id}`, ignoring one
/// trailing slash on either; returns the path parameters.
pub fn match_path(template: &str, path: &str) -> Option<Vec<(String, String)>> {
    let template = template.strip_suffix('/').unwrap_or(template);
    let path = path.strip_suffix('/').unwrap_or(path);
    let mut params = Vec::new();
    let mut t = template.split('/');
    let mut p = path.split('/');
    loop {
        match (t.next(), p.next()) {
            (None, None) => return Some(params),
            (Some(ts), Some(ps)) => {
                if let Some(name) = ts.strip_prefix('{').and_then(|n| n.strip_suffix('}')) {
                    if ps.is_empty() {
                        return None;
                    }
                    params.push((name.to_string(), ps.to_string()));
                } else if ts != ps {
                    return None;
                }
            }
            _ => return None,
        }
    }
}

/// The methods a known path accepts (empty for unknown paths).
pub fn allowed_methods(path: &str) -> Vec<String> {
    API_ROUTES
        .iter()
        .filter(|(_, template, _)| match_path(template, path).is_some())
        .map(|(method, _, _)| method.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_match_with_and_without_trailing_slash() {
        let id = vec![("id".to_string(), "01ABC".to_string())];
        assert_eq!(
            match_path("/api/forum/posts/{id}", "/api/forum/posts/01ABC"),
            Some(id.clone())
        );
        assert_eq!(
            match_path("/api/forum/posts/{id}/", "/api/forum/posts/01ABC/"),
            Some(id.clone())
        );
        assert_eq!(match_path("/api/forum/posts/{id}", "/api/forum/posts/01ABC/"), Some(id));
        assert_eq!(match_path("/api/forum/posts", "/api/forum/posts/"), Some(vec![]));
        assert_eq!(match_path("/api/forum/posts/{id}", "/api/forum/posts/"), None);
        assert_eq!(match_path("/api/forum/posts/{id}", "/api/forum/posts/a/b"), None);
        assert_eq!(match_path("/api/forum/posts", "/api/forum/post"), None);
    }

    #[test]
    fn allowed_methods_list_every_method_of_a_path() {
        assert_eq!(allowed_methods("/api/forum/posts/"), vec!["GET", "POST"]);
        assert_eq!(allowed_methods("/api/forum/posts/x"), vec!["GET", "PATCH", "DELETE"]);
        assert!(allowed_methods("/api/forum/nope").is_empty());
    }

    #[test]
    fn every_route_has_a_distinct_binary() {
        let mut names: Vec<_> = Route::ALL.iter().map(|r| r.binary()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Route::ALL.len());
        for route in Route::ALL {
            assert_eq!(Route::from_binary(route.binary()), Some(*route));
        }
    }
}
