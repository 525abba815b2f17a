//! Metrics in CloudWatch Embedded Metric Format: one JSON line on stdout per data point, which
//! CloudWatch Logs turns into metrics with no API call and no extra latency. Emitted only in
//! Lambda; forum-local and tests stay quiet.

use serde_json::json;

/// The namespace every forum metric lives in.
pub const NAMESPACE: &str = "Forum";

/// What is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// DynamoDB round trips one request made.
    DynamoDbRoundTrips,
    /// Requests refused by a per-user rate limit.
    RateLimited,
    /// WebSocket messages sent by a fan-out.
    FanoutSends,
    /// Connections found gone (410) during a fan-out.
    FanoutGone,
    /// Sends that failed otherwise.
    FanoutFailures,
    /// Connections a fan-out could not forget (gone or expired): left to their TTL.
    CleanupFailures,
    /// Stored items that lacked a required attribute (refused, never read with a default).
    MalformedItems,
}

impl Metric {
    fn name(self) -> &'static str {
        match self {
            Metric::DynamoDbRoundTrips => "DynamoDbRoundTrips",
            Metric::RateLimited => "RateLimited",
            Metric::FanoutSends => "FanoutSends",
            Metric::FanoutGone => "FanoutGone",
            Metric::FanoutFailures => "FanoutFailures",
            Metric::CleanupFailures => "CleanupFailures",
            Metric::MalformedItems => "MalformedItems",
        }
    }
}

/// The EMF document for one value, with the function (route or trigger) as dimension.
pub fn emf_line(metric: Metric, value: u64, function: &str, timestamp_ms: i64) -> String {
    json!({
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["Function"]],
                "Metrics": [{ "Name": metric.name(), "Unit": "Count" }],
            }],
        },
        "Function": function,
        metric.name(): value,
    })
    .to_string()
}

/// Emits one value (in Lambda only).
pub fn emit(metric: Metric, value: u64, function: &str) {
    if std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_none() {
        return;
    }
    println!(
        "{}",
        emf_line(metric, value, function, chrono::Utc::now().timestamp_millis())
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_embedded_metric_format() {
        let line: serde_json::Value =
            serde_json::from_str(&emf_line(Metric::FanoutGone, 3, "stream-fanout", 1)).unwrap();
        assert_eq!(line["_aws"]["CloudWatchMetrics"][0]["Namespace"], "Forum");
        assert_eq!(line["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"], "FanoutGone");
        assert_eq!(line["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0][0], "Function");
        assert_eq!(line["Function"], "stream-fanout");
        assert_eq!(line["FanoutGone"], 3);
        assert_eq!(line["_aws"]["Timestamp"], 1);
    }
}
