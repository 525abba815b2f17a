//! How an AWS SDK call failed, told apart once for every caller: worth retrying later
//! (timeouts, unreachable, throttled) or not.

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};

/// Error codes AWS services (DynamoDB, S3) use when shedding load: retry later.
const THROTTLING_CODES: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "ThrottlingException",
    "InternalServerError",
    "ServiceUnavailable",
    "SlowDown",
    "RequestTimeout",
];

/// How an AWS call failed: `Ok` with why it is worth retrying later (timeouts, unreachable,
/// throttled), `Err` with what went wrong otherwise.
pub fn classify<E, R>(err: &SdkError<E, R>) -> Result<String, String>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    match err {
        SdkError::TimeoutError(_) => Ok(format!("AWS call timed out: {err:?}")),
        SdkError::DispatchFailure(_) => Ok(format!("AWS service unreachable: {err:?}")),
        SdkError::ResponseError(_) => Ok(format!("AWS service answered garbage: {err:?}")),
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or_default();
            if THROTTLING_CODES.contains(&code) {
                Ok(format!("AWS service throttled: {code}"))
            } else {
                Err(format!("AWS error {code}: {:?}", service.err()))
            }
        }
        _ => Err(format!("AWS request failed: {err:?}")),
    }
}
