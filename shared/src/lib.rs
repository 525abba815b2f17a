//! The forum's core: everything a Lambda function or `forum-local` runs.
//!
//! - [`handlers`]: one async function per route or trigger, testable without Lambda.
//! - [`store`]: the only place that knows the table's keys and item shapes.
//! - [`error`]: the only place that maps failures to HTTP.
//! - [`aws`]: the only place that builds AWS clients.

pub mod auth;
pub mod aws;
pub mod cache;
pub mod config;
pub mod cursor;
pub mod deadline;
pub mod dynamodb_usage;
pub mod error;
pub mod handlers;
pub mod http_api;
pub mod lambda;
/// The image pipeline, its own crate (built optimized even in tests: the codecs are generic).
pub use forum_media as media;
pub mod metrics;
pub mod model;
pub mod profanity;
#[cfg(any(test, feature = "fixtures"))]
pub mod profanity_corpus;
pub mod realtime;
pub mod routes;
pub mod sdk_errors;
pub mod secrets;
pub mod storage;
pub mod store;
pub mod telemetry;
pub mod validate;

pub use config::Config;
pub use error::ApiError;
pub use handlers::App;
pub use handlers::Route;
