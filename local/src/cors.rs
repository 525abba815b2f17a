//! CORS as the HTTP API answers it: from the template's `CorsConfiguration`, resolved with
//! the stack's parameters (`AllowedOrigins`), so a page is allowed locally exactly when a
//! deployment with the same parameters would allow it.

use serde_yaml_ng::Value;

use crate::environment::Resolver;
use crate::template::TemplateError;

/// A resolved `CorsConfiguration`.
#[derive(Clone, Debug, Default)]
pub struct CorsPolicy {
    /// Exact origins (`scheme://host[:port]`), or `*`.
    pub allow_origins: Vec<String>,
    pub allow_methods: Vec<String>,
    /// Lower case.
    pub allow_headers: Vec<String>,
    pub expose_headers: Vec<String>,
    pub max_age: Option<u64>,
}

/// The HTTP API's `CorsConfiguration` field names, and the S3 bucket's `CorsRules` ones.
const API_FIELDS: [&str; 4] = ["AllowOrigins", "AllowMethods", "AllowHeaders", "ExposeHeaders"];
const BUCKET_FIELDS: [&str; 4] = ["AllowedOrigins", "AllowedMethods", "AllowedHeaders", "ExposedHeaders"];

/// What a request asks of CORS, read from its method and headers.
pub enum CorsRequest {
    /// No `Origin`: not a cross-origin request.
    None,
    /// A preflight: `OPTIONS` with `Origin` and `Access-Control-Request-Method`.
    Preflight {
        origin: String,
        method: String,
        headers: Option<String>,
    },
    /// An actual request from `origin`.
    Actual { origin: String },
}

impl CorsRequest {
    pub fn read(method: &http::Method, headers: &http::HeaderMap) -> Self {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let Some(origin) = header("origin") else {
            return CorsRequest::None;
        };
        match (method == http::Method::OPTIONS, header("access-control-request-method")) {
            (true, Some(requested)) => CorsRequest::Preflight {
                origin,
                method: requested,
                headers: header("access-control-request-headers"),
            },
            _ => CorsRequest::Actual { origin },
        }
    }
}

/// What to answer a request's CORS headers with.
pub enum CorsAnswer {
    /// No `Origin`: not a cross-origin request; nothing to add.
    NotCors,
    /// An origin the configuration does not allow: no `Access-Control-*` headers, so the
    /// browser withholds the answer from the page.
    Refused,
    Allowed(Vec<(&'static str, String)>),
}

impl CorsAnswer {
    /// Adds an allowed answer's headers to a response's (a refusal adds none).
    pub fn apply(self, headers: &mut http::HeaderMap) {
        let CorsAnswer::Allowed(allowed) = self else { return };
        for (name, value) in allowed {
            if let Ok(value) = http::HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        }
    }
}

impl CorsPolicy {
    /// Resolves the template's `CorsConfiguration` (none configured: nothing is allowed).
    pub fn resolve(config: Option<&Value>, resolver: &Resolver<'_>) -> Result<Self, TemplateError> {
        match config {
            Some(config) => Self::from_fields(config, resolver, API_FIELDS),
            None => Ok(CorsPolicy::default()),
        }
    }

    /// The bucket's `CorsRules` (S3 takes the first rule that matches a request).
    pub fn resolve_bucket_rules(rules: Option<&Value>, resolver: &Resolver<'_>) -> Result<Vec<Self>, TemplateError> {
        let Some(Value::Sequence(rules)) = rules else {
            return Ok(Vec::new());
        };
        rules
            .iter()
            .map(|rule| Self::from_fields(rule, resolver, BUCKET_FIELDS))
            .collect()
    }

    /// A policy from a configuration whose lists are named `fields` (origins, methods,
    /// headers, exposed headers): the HTTP API and S3 spell them differently.
    fn from_fields(config: &Value, resolver: &Resolver<'_>, fields: [&str; 4]) -> Result<Self, TemplateError> {
        let list = |name: &str| -> Result<Vec<String>, TemplateError> {
            match config.get(name) {
                Some(value) => resolver.strings(value),
                None => Ok(Vec::new()),
            }
        };
        let [origins, methods, headers, exposed] = fields;
        let lower = |names: Vec<String>| names.into_iter().map(|n| n.to_ascii_lowercase()).collect();
        Ok(CorsPolicy {
            allow_origins: list(origins)?,
            allow_methods: list(methods)?.into_iter().map(|m| m.to_ascii_uppercase()).collect(),
            allow_headers: lower(list(headers)?),
            expose_headers: lower(list(exposed)?),
            max_age: config.get("MaxAge").and_then(Value::as_u64),
        })
    }

    /// Whether an actual request of `method` from `origin` is one this rule covers.
    pub fn covers(&self, origin: &str, method: &str) -> bool {
        self.allows_origin(origin)
            && self
                .allow_methods
                .iter()
                .any(|m| m == "*" || m.eq_ignore_ascii_case(method))
    }

    fn allows_origin(&self, origin: &str) -> bool {
        self.allow_origins
            .iter()
            .any(|o| o == "*" || o.eq_ignore_ascii_case(origin))
    }

    /// The headers for an actual (non-preflight) request from `origin`.
    pub fn actual(&self, origin: Option<&str>) -> CorsAnswer {
        let Some(origin) = origin else {
            return CorsAnswer::NotCors;
        };
        if !self.allows_origin(origin) {
            return CorsAnswer::Refused;
        }
        let mut headers = vec![
            ("access-control-allow-origin", origin.to_string()),
            ("vary", "origin".to_string()),
        ];
        if !self.expose_headers.is_empty() {
            headers.push(("access-control-expose-headers", self.expose_headers.join(", ")));
        }
        CorsAnswer::Allowed(headers)
    }

    /// The answer to a preflight: allowed only for an allowed origin asking for an allowed
    /// method and allowed headers.
    pub fn preflight(&self, origin: &str, method: Option<&str>, headers: Option<&str>) -> CorsAnswer {
        if !self.allows_origin(origin) {
            return CorsAnswer::Refused;
        }
        let method_allowed = method.is_some_and(|m| {
            self.allow_methods
                .iter()
                .any(|allowed| allowed == "*" || allowed.eq_ignore_ascii_case(m))
        });
        let requested: Vec<String> = headers
            .unwrap_or_default()
            .split(',')
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect();
        let headers_allowed = requested
            .iter()
            .all(|h| self.allow_headers.iter().any(|allowed| allowed == "*" || allowed == h));
        if !method_allowed || !headers_allowed {
            return CorsAnswer::Refused;
        }
        let mut answer = vec![
            ("access-control-allow-origin", origin.to_string()),
            ("access-control-allow-methods", self.allow_methods.join(", ")),
            ("vary", "origin".to_string()),
        ];
        if !self.allow_headers.is_empty() {
            answer.push(("access-control-allow-headers", self.allow_headers.join(", ")));
        }
        if let Some(age) = self.max_age {
            answer.push(("access-control-max-age", age.to_string()));
        }
        CorsAnswer::Allowed(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> CorsPolicy {
        CorsPolicy {
            allow_origins: vec!["http://localhost:5173".into()],
            allow_methods: vec!["GET".into(), "POST".into()],
            allow_headers: vec!["authorization".into(), "content-type".into()],
            expose_headers: vec!["etag".into()],
            max_age: Some(600),
        }
    }

    #[test]
    fn only_listed_origins_methods_and_headers_pass_a_preflight() {
        let p = policy();
        assert!(matches!(
            p.preflight(
                "http://localhost:5173",
                Some("POST"),
                Some("Authorization, Content-Type")
            ),
            CorsAnswer::Allowed(_)
        ));
        assert!(matches!(
            p.preflight("https://evil.example", Some("POST"), None),
            CorsAnswer::Refused
        ));
        assert!(matches!(
            p.preflight("http://localhost:5173", Some("DELETE"), None),
            CorsAnswer::Refused
        ));
        assert!(matches!(
            p.preflight("http://localhost:5173", Some("GET"), Some("x-forged")),
            CorsAnswer::Refused
        ));
        assert!(matches!(p.actual(Some("http://localhost:5174")), CorsAnswer::Refused));
        assert!(matches!(p.actual(None), CorsAnswer::NotCors));
        assert!(matches!(
            CorsPolicy::default().actual(Some("http://localhost:5173")),
            CorsAnswer::Refused
        ));
    }
}
