//! Lambda wiring: what each binary's `main` calls. Config and clients are built once per cold
//! start, then every invocation reuses them.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lambda_events::s3::S3Event;
use lambda_http::{Request, service_fn};
use lambda_runtime::LambdaEvent;

use crate::auth::{self, JwtKeys, JwtSettings, TokenVerifier};
use crate::config::{Config, Env};
use crate::handlers::Route;
use crate::handlers::route_table::DYNAMODB;
use crate::handlers::{self, App, Handler, Uses};
use crate::routes::WS_ROUTES;
use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use forum_store::aws;
use forum_store::notifier::Notifier;

pub type Error = lambda_http::Error;

/// Config and clients, built once per cold start from the Lambda environment. `binary` names
/// the function; what it uses decides what it must be given (the cursor secret to paginate).
async fn app_from_env(binary: &str, uses: Uses) -> Result<Arc<App>, Error> {
    crate::telemetry::init();
    let env = Env::process();
    let config = Config::for_function(&env, binary, uses.cursors)?;
    let clients = aws::Clients::load(crate::config::aws_target(&env)?).await;
    let usage = aws::DynamoDbUsage::default();
    // DynamoDB's client is built now where the function calls it on every invocation (the
    // `$default` route's function never does). Every other client is built when first used
    // (`aws::Deferred`): get-post never builds an S3 one, and a function that does call S3,
    // `@connections` or Secrets Manager builds that client in its warm-up, after the DynamoDB
    // handshakes are under way, so the building overlaps their network wait.
    let dynamodb = {
        let usage = usage.clone();
        clients.deferred_unless(uses.dynamodb, move |clients| clients.dynamodb(&usage))
    };
    let s3 = clients.deferred(aws::Clients::s3);
    let notifier = config
        .ws_endpoint
        .clone()
        .map(|endpoint| Notifier::new(clients.deferred(move |clients| clients.connections(&endpoint))));
    let secrets = clients.deferred(aws::Clients::secrets);
    let app = App::new(&config, dynamodb, s3, notifier, secrets, env.deployment(), usage);
    Ok(app)
}

/// A warm-up never holds init up for longer than this: an unreachable service is then the
/// first invocation's problem, with its own timeouts and a clear error.
const WARM_UP_LIMIT: Duration = Duration::from_millis(1_500);

/// Does during init what the first invocation would otherwise pay for: reading the
/// function's secrets, opening the connections it uses (in AWS each is a TCP and TLS
/// handshake, plus endpoint resolution and credential loading) and building the profanity
/// filter's tables, all at once, so the CPU work overlaps the network waits. Two DynamoDB
/// connections, because handlers make up to two calls at once (PATCH's update and like
/// lookup, a comment list and its post check). A secret that is there but unusable stops the
/// function here, naming its parameter.
///
/// `text_tables` builds the profanity filter's tables: given as a function only by the
/// functions that check text (`serve_http` folds it), so that the others do not link them.
async fn warm_up(app: &App, uses: Uses, text_tables: Option<fn()>) -> Result<(), Error> {
    let started = Instant::now();
    let secrets = async {
        tokio::time::timeout(WARM_UP_LIMIT, app.load_secrets())
            .await
            .unwrap_or(Ok(()))
    };
    let text = async {
        if let Some(build) = text_tables {
            let _ = tokio::task::spawn_blocking(build).await;
        }
    };
    let dynamodb = async {
        if uses.dynamodb {
            tokio::join!(app.table.warm_up(), app.table.warm_up());
        }
    };
    let s3 = async {
        if uses.s3 {
            app.bucket.warm_up().await;
        }
    };
    let connections = async {
        if let (true, Some(notifier)) = (uses.connections, &app.notifier) {
            notifier.warm_up().await;
        }
    };
    // In this order: DynamoDB's handshakes start before the S3 and `@connections` clients are
    // built (on their first use, here).
    let warm = tokio::time::timeout(WARM_UP_LIMIT, async { tokio::join!(text, dynamodb, s3, connections) });
    // The connections first: their handshakes are under way while the secrets' client is built.
    let (warm, secrets) = tokio::join!(warm, secrets);
    log_warm_up(started, warm.is_ok(), &format!("{uses:?}"));
    Ok(secrets?)
}

/// The one line the cold-start bench reads: how long init spent on the network and on tables.
fn log_warm_up(started: Instant, completed: bool, warmed: &str) {
    tracing::info!(
        elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
        completed,
        warmed,
        "warmed up during init"
    );
}

/// Runs an HTTP route's Lambda function. Inlined into the binary's `main`, where `route` is a
/// constant: the handler is picked there, so the binary links that handler only.
#[inline(always)]
pub fn serve_http(route: Route) -> impl Future<Output = Result<(), Error>> {
    let text_tables = route
        .spec()
        .uses
        .text
        .then_some(forum_domain::validate::warm_up as fn());
    serve_route(route, route.handler(), text_tables)
}

async fn serve_route(route: Route, handler: Handler, text_tables: Option<fn()>) -> Result<(), Error> {
    let spec = route.spec();
    let app = app_from_env(spec.binary, spec.uses).await?;
    warm_up(&app, spec.uses, text_tables).await?;
    lambda_http::run(service_fn(move |req: Request| {
        let app = app.clone();
        async move { Ok::<_, Infallible>(handlers::handle_with(&app, route, handler, req).await) }
    }))
    .await
}

/// Runs `process-media`, invoked by S3 for each object created under `uploads/`. A failed
/// dependency fails the invocation, so Lambda retries the event (processing is idempotent).
pub async fn serve_process_media() -> Result<(), Error> {
    let uses = Uses { s3: true, ..DYNAMODB };
    let app = app_from_env("process-media", uses).await?;
    warm_up(&app, uses, None).await?;
    lambda_runtime::run(lambda_runtime::service_fn(move |event: LambdaEvent<S3Event>| {
        let app = app.clone();
        async move {
            handlers::process_uploads(&app, event.payload)
                .await
                .map_err(|e| Box::new(e) as lambda_runtime::Error)
        }
    }))
    .await
}

/// Runs the JWT authorizer's Lambda function (HTTP API requests and WebSocket `$connect`).
pub async fn serve_authorizer() -> Result<(), Error> {
    crate::telemetry::init();
    // The only function that reads JWT settings, and it reads nothing else (an HS256 key from
    // Secrets Manager: the SDK is set up only then).
    let env = Env::process();
    let settings = JwtSettings::from_env(&env)?;
    let secrets = match settings.keys {
        JwtKeys::Secret { .. } => Some(aws::Clients::load(crate::config::aws_target(&env)?).await.secrets()),
        _ => None,
    };
    let verifier = Arc::new(TokenVerifier::new(&settings, secrets, env.deployment())?);
    // Its warm-up: the key (secret or JWKS) read now, not by the first request.
    let started = Instant::now();
    let loaded = tokio::time::timeout(WARM_UP_LIMIT, verifier.load_at_init()).await;
    log_warm_up(started, loaded.is_ok(), "jwt keys");
    loaded.unwrap_or(Ok(()))?;
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: LambdaEvent<auth::AuthorizerEvent>| {
            let verifier = verifier.clone();
            async move {
                auth::authorize_event(&verifier, &event.payload)
                    .await
                    .map_err(|failure| lambda_runtime::Error::from(failure.to_string()))
            }
        },
    ))
    .await
}

/// Which WebSocket route a function serves.
#[derive(Clone, Copy, Debug)]
pub enum WsRoute {
    Connect,
    Disconnect,
    Message,
}

impl WsRoute {
    /// Its route key in the WebSocket API.
    pub fn route_key(self) -> &'static str {
        match self {
            WsRoute::Connect => "$connect",
            WsRoute::Disconnect => "$disconnect",
            WsRoute::Message => "$default",
        }
    }

    /// The binary behind it, as `routes::WS_ROUTES` lists it.
    pub fn binary(self) -> &'static str {
        WS_ROUTES
            .iter()
            .find(|(key, _)| *key == self.route_key())
            .map_or("", |(_, binary)| binary)
    }
}

/// Runs a WebSocket route's Lambda function.
pub async fn serve_ws(route: WsRoute) -> Result<(), Error> {
    // Messages are answered through `@connections` (pong, errors).
    let uses = Uses {
        connections: matches!(route, WsRoute::Message),
        ..DYNAMODB
    };
    let app = app_from_env(route.binary(), uses).await?;
    warm_up(&app, uses, None).await?;
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: LambdaEvent<ApiGatewayWebsocketProxyRequest>| {
            let app = app.clone();
            async move {
                Ok::<_, Infallible>(match route {
                    WsRoute::Connect => handlers::ws_connect(&app, &event.payload).await,
                    WsRoute::Disconnect => handlers::ws_disconnect(&app, &event.payload).await,
                    WsRoute::Message => handlers::ws_message(&app, &event.payload).await,
                })
            }
        },
    ))
    .await
}

/// Runs `stream-fanout`, invoked with batches of the table's stream records.
pub async fn serve_stream_fanout() -> Result<(), Error> {
    // S3 only on released media: not worth a connection at init.
    let uses = Uses {
        connections: true,
        ..DYNAMODB
    };
    let app = app_from_env("stream-fanout", uses).await?;
    warm_up(&app, uses, None).await?;
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: LambdaEvent<aws_lambda_events::dynamodb::Event>| {
            let app = app.clone();
            async move { Ok::<_, Infallible>(handlers::stream_fanout(&app, &event.payload).await) }
        },
    ))
    .await
}
