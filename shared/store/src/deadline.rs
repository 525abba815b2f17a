//! One deadline per request, and per stream record: the work it sets off (every AWS call, every
//! retry loop) ends by then, well below the function's own timeout, so a slow or frozen
//! dependency is answered in the API's own shape (`503 unavailable` with `Retry-After`) rather
//! than by API Gateway's bare error when Lambda cuts the function off.
//!
//! [`within`] runs work under a deadline (held task-locally, so nested retry loops see it) and
//! cancels it when the deadline passes; [`pause_before_retry`] sleeps a backoff only when the
//! deadline leaves time for the attempt after it.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// An API request's budget: its answer (or its 503) comes within this. The HTTP functions'
/// Lambda timeout is 10 s (template.yaml), API Gateway's integration timeout 30 s.
pub const REQUEST_BUDGET: Duration = forum_domain::limits::REQUEST_BUDGET_MS.duration();
/// A stream record's budget: its sends and clean-up, well below stream-fanout's 60 s timeout.
pub const RECORD_BUDGET: Duration = forum_domain::limits::RECORD_BUDGET_SECS.duration();
/// What a retry must leave of the deadline to be worth starting: a DynamoDB call's usual time
/// with room to spare.
const LEAST_FOR_AN_ATTEMPT: Duration = Duration::from_millis(100);

tokio::task_local! {
    static DEADLINE: Instant;
}

/// The work's deadline passed before it finished (it was cancelled).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the deadline passed")]
pub struct Elapsed;

/// Runs `work` with a deadline `budget` from now (or the one already running, if sooner),
/// cancelling it when the deadline passes.
pub async fn within<F: Future>(budget: Duration, work: F) -> Result<F::Output, Elapsed> {
    let mut deadline = Instant::now() + budget;
    if let Ok(outer) = DEADLINE.try_with(|d| *d) {
        deadline = deadline.min(outer);
    }
    DEADLINE
        .scope(deadline, tokio::time::timeout_at(deadline, work))
        .await
        .map_err(|_| Elapsed)
}

/// Time left before the running deadline, if work runs under one.
pub fn remaining() -> Option<Duration> {
    DEADLINE.try_with(|d| d.saturating_duration_since(Instant::now())).ok()
}

/// Sleeps `pause` before another attempt, or answers `false` at once when the deadline would
/// leave no time for that attempt (the caller gives up: a 503, or a record retried later).
pub async fn pause_before_retry(pause: Duration) -> bool {
    if remaining().is_some_and(|left| left < pause + LEAST_FOR_AN_ATTEMPT) {
        return false;
    }
    tokio::time::sleep(pause).await;
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn work_past_its_deadline_is_cancelled_and_retries_stop_before_it() {
        let slow = within(Duration::from_millis(100), tokio::time::sleep(Duration::from_secs(5))).await;
        assert_eq!(slow, Err(Elapsed));
        let quick = within(Duration::from_millis(100), async { 7 }).await;
        assert_eq!(quick, Ok(7));
        // A retry loop sees the deadline of the work it runs in, and stops short of it. (Not
        // on an exact boundary: the timer rounds each sleep up to a whole millisecond.)
        let attempts = within(Duration::from_millis(950), async {
            let mut attempts = 1;
            while pause_before_retry(Duration::from_millis(300)).await {
                attempts += 1;
            }
            attempts
        })
        .await;
        assert_eq!(
            attempts,
            Ok(3),
            "0 ms, 300 ms, 600 ms; not 900 ms (too close to 950 ms)"
        );
        // A nested deadline never extends the one it runs in.
        let nested = within(Duration::from_millis(100), async {
            within(Duration::from_secs(10), async { remaining() }).await
        })
        .await;
        assert!(nested.unwrap().unwrap().unwrap() <= Duration::from_millis(100));
        assert_eq!(remaining(), None, "no deadline outside");
    }
}
