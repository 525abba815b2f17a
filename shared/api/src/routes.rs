//! Routing facts that need no handler: the base path, path matching, the WebSocket routes and
//! the binaries that are triggers. The HTTP routes themselves are one table,
//! `handlers::route_table`.

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
}
