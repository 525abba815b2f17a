//! The forum's API: one async handler per route or trigger (testable without Lambda), the
//! authorizer, configuration, the Lambda wiring, and the one place that maps every error to
//! HTTP ([`error`]). It builds on the domain (`forum-domain`, `forum-media`) and on storage
//! (`forum-store`); nothing below it knows HTTP.

pub mod auth;
pub mod cache;
pub mod config;
pub mod error;
pub mod handlers;
pub mod http_api;
pub mod lambda;
pub mod routes;
pub mod telemetry;

pub use config::Config;
pub use error::ApiError;
pub use handlers::App;
pub use handlers::Route;
