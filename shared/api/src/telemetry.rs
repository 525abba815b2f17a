//! Structured logs via `tracing`: JSON lines in Lambda (CloudWatch), compact text locally.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber once; later calls are no-ops (tests, forum-local).
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let in_lambda = std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some();
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(false);
    let _ = if in_lambda {
        // Lambda adds its own timestamps and request ids to each line.
        builder.json().without_time().with_current_span(false).try_init()
    } else {
        builder.compact().with_writer(std::io::stderr).try_init()
    };
}
