//! The cold-start benchmark's baseline: the smallest `lambda_runtime` function (as in
//! awslabs/aws-lambda-rust-runtime's basic example), built with the same release profile as
//! the functions.
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| async move {
        Ok::<Value, Error>(event.payload)
    }))
    .await
}
