//! `forum-local`: the whole forum on one machine, running the same handlers as the Lambdas
//! against the real Amazon DynamoDB Local. Used by developers (`cargo run -p forum-local`)
//! and by the end-to-end tests, which start a [`Stack`] in process.

pub mod cors;
pub mod dynamodb_local;
pub mod dynamodb_rules;
pub mod environment;
pub mod gateway;
pub mod iam;
pub mod invoke;
pub mod respond;
pub mod runtime_api;
pub mod s3_local;
pub mod scratch;
pub mod secrets_local;
pub mod sigv4;
pub mod stream;
pub mod table;
pub mod template;
pub mod translation;
pub mod web;
pub mod websocket;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use std::collections::BTreeMap;

use forum_api::auth::{JwtKeys, JwtSettings, TokenVerifier};
use forum_api::config::{Deployment, Env};
use forum_api::handlers::App;
use forum_api::{Config, Route};
use forum_store::aws::{self, AwsTarget};
use forum_testkit::TokenMint;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

pub use dynamodb_local::{DynamoDbLocal, Storage};
pub use environment::Parameters;
use environment::{LocalNames, Resolver};
use gateway::{BoundRoute, Gateway};
use s3_local::LocalS3;
use secrets_local::LocalSecrets;
use template::StackTemplate;
use translation::Translation;

#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error(transparent)]
    Template(#[from] template::TemplateError),
    #[error(transparent)]
    Dynamo(#[from] dynamodb_local::DynamoLocalError),
    #[error(transparent)]
    Table(#[from] table::TableError),
    #[error(transparent)]
    Config(#[from] forum_api::config::ConfigError),
    #[error("{0}")]
    Setup(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
}

/// How to run the stack.
#[derive(Clone, Debug)]
pub struct StackOptions {
    /// Address for the HTTP API; port 0 picks a free one.
    pub listen: SocketAddr,
    /// A running DynamoDB to use instead of starting DynamoDB Local.
    pub dynamodb_endpoint: Option<String>,
    /// Where a started DynamoDB Local keeps its data.
    pub storage: Storage,
    /// The template's text: parameters, the table, and every function's environment.
    pub template: String,
    /// SAM's translation of it (what CloudFormation receives): routes, authorizers, invoke
    /// permissions and roles. It must have been made from `template`.
    pub translation: String,
    /// The template's parameter values (samconfig.toml's local set unless changed); each
    /// function's environment is resolved from them exactly as a deployment resolves it.
    pub parameters: Parameters,
    /// The DynamoDB table's name, what `!Ref` of the table resource gives here.
    pub table_name: String,
    /// Where a started DynamoDB Local listens (a free port if `None`).
    pub dynamodb_port: Option<u16>,
    /// Where the S3 stand-in listens (port 0: a free one).
    pub s3_listen: SocketAddr,
    /// Where the Secrets Manager stand-in listens (port 0: a free one).
    pub secrets_listen: SocketAddr,
    /// Who runs `process-media` for an object created under `uploads/`.
    pub upload_trigger: UploadTrigger,
    /// Every `n`th stream batch is delivered twice (after it succeeded), as Lambda may
    /// redeliver (at least once): what the stream writes must still happen exactly once.
    /// `None`: each batch once.
    pub stream_redelivery: Option<u32>,
}

/// Who runs `process-media` for an object created under `uploads/`.
#[derive(Clone, Debug, Default)]
pub enum UploadTrigger {
    /// Its handler, in this process, retried as Lambda retries an asynchronous invocation.
    #[default]
    InProcess,
    /// The S3 event Lambda would receive, delivered to the caller to run (a test hands it to
    /// the real binary).
    Deliver(mpsc::UnboundedSender<serde_json::Value>),
}

impl StackOptions {
    /// The bundled template with samconfig.toml's local parameter set; `DYNAMODB_ENDPOINT`
    /// points at a running DynamoDB instead of starting DynamoDB Local.
    pub fn local() -> Result<Self, StackError> {
        Ok(StackOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 3000)),
            dynamodb_endpoint: std::env::var("DYNAMODB_ENDPOINT").ok().filter(|e| !e.is_empty()),
            storage: Storage::Dir(PathBuf::from(".forum-local")),
            template: template::BUNDLED_TEMPLATE.to_string(),
            translation: translation::BUNDLED_TRANSLATION.to_string(),
            parameters: environment::samconfig_parameters(
                environment::BUNDLED_SAMCONFIG,
                "default",
                environment::SAMCONFIG_SECTION,
            )?,
            table_name: LocalNames::default().table_name,
            dynamodb_port: None,
            s3_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            secrets_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            upload_trigger: UploadTrigger::InProcess,
            stream_redelivery: None,
        })
    }

    /// Sets one template parameter over the parameter set.
    pub fn parameter(mut self, name: &str, value: impl Into<String>) -> Self {
        self.parameters.insert(name.to_string(), value.into());
        self
    }

    /// The authorizer's JWT settings as this parameter set configures them.
    pub fn jwt_settings(&self) -> Result<JwtSettings, StackError> {
        let template = StackTemplate::parse(&self.template)?;
        let translation = Translation::parse(&self.translation, &self.template)?;
        let resolver = Resolver::new(&template, &self.parameters, self.names())?;
        let binary = authorizer_binary(&translation)?;
        let env = resolver.function_environment(&binary, &endpoint_overrides(self.listen))?;
        Ok(JwtSettings::from_env(&Env::new(env, Deployment::Development))?)
    }

    /// What `forum-local token` signs with: the development HS256 key this parameter set's
    /// `JwtSecretArn` names (forum-local's Secrets Manager stand-in holds it).
    pub fn token_mint(&self) -> Result<TokenMint, StackError> {
        let settings = self.jwt_settings()?;
        let JwtKeys::Secret { arn } = &settings.keys else {
            return Err(StackError::Setup(
                "tokens can be issued locally only for HS256 (JwtAlgorithm=HS256 with a development JwtSecretArn)"
                    .into(),
            ));
        };
        let secret = secrets_local::development_value(arn)
            .ok_or_else(|| StackError::Setup(format!("{arn} is not a development secret forum-local holds")))?;
        Ok(TokenMint {
            secret: secret.to_string(),
            roles: mint_roles(&settings.roles),
            issuer: settings.issuer,
            audience: settings.audience,
        })
    }

    /// Every function's environment (by binary) as a deployment with this parameter set gives
    /// it, with `overrides` for what only AWS can name (the CDN, the WebSocket API).
    pub fn function_environments(
        &self,
        overrides: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, BTreeMap<String, String>>, StackError> {
        let template = StackTemplate::parse(&self.template)?;
        let resolver = Resolver::new(&template, &self.parameters, self.names())?;
        template
            .functions
            .iter()
            .map(|f| Ok((f.binary.clone(), resolver.function_environment(&f.binary, overrides)?)))
            .collect()
    }

    fn names(&self) -> LocalNames {
        LocalNames {
            table_name: self.table_name.clone(),
            ..LocalNames::default()
        }
    }
}

/// A running local stack. Dropping it stops the server and the DynamoDB Local it started.
pub struct Stack {
    pub http_addr: SocketAddr,
    pub dynamodb_endpoint: String,
    pub s3_endpoint: String,
    /// The HTTP functions' shared view: the table, the bucket, and the DynamoDB round trips
    /// that every HTTP function of this stack made (one counter, as the budgets read it). Its
    /// clients are not limited by any function's role: it is the stack's own handle.
    pub app: Arc<App>,
    /// Each function as it runs (by binary name), its calls limited to what its role allows.
    pub functions: BTreeMap<String, Arc<App>>,
    /// Each function's environment, resolved from the template (by binary name).
    pub environments: BTreeMap<String, BTreeMap<String, String>>,
    /// The authorizer's JWT settings.
    pub jwt_settings: JwtSettings,
    /// Signs tokens the authorizer accepts (HS256 parameter sets only).
    pub jwt: TokenMint,
    pub dynamodb: aws_sdk_dynamodb::Client,
    /// The Secrets Manager stand-in's secrets (rotate one to test a rotation).
    pub secrets: Arc<LocalSecrets>,
    pub secrets_endpoint: String,
    /// Stream batches delivered a second time (`StackOptions::stream_redelivery`).
    pub redelivered: Arc<stream::Redelivery>,
    secrets_server: tokio::task::JoinHandle<()>,
    dynamo: Option<DynamoDbLocal>,
    s3: LocalS3,
    poller: tokio::task::JoinHandle<()>,
    stop: Option<oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<()>,
}

/// How often `process-media` is tried on one event before it is dropped (Lambda's async
/// invocations retry twice).
const TRIGGER_ATTEMPTS: u32 = 3;

impl Stack {
    pub async fn start(options: StackOptions) -> Result<Stack, StackError> {
        let template = StackTemplate::parse(&options.template)?;
        // What API Gateway, Lambda and IAM enforce comes from SAM's translation of it.
        let translation = Translation::parse(&options.translation, &options.template)?;
        let manifest = iam::Manifest::parse(iam::BUNDLED_CALLS)?;
        // The parameter set is checked (constraints, Rules) before anything starts.
        let resolver = Resolver::new(&template, &options.parameters, options.names())?;
        // Bind first: the stack's own address is where media is served (the CDN stand-in) and
        // where `@connections` is. Nothing is accepted until every part is ready: a request
        // sent earlier waits in the listen queue.
        let listener = TcpListener::bind(options.listen)
            .await
            .map_err(|source| StackError::Listen {
                addr: options.listen,
                source,
            })?;
        let http_addr = listener.local_addr().map_err(|e| StackError::Setup(e.to_string()))?;
        let functions = FunctionEnvironments::resolve(&template, &translation, &resolver, http_addr)?;

        // Secrets Manager: every secret the functions are configured with (by ARN).
        let secrets = Arc::new(LocalSecrets::default());
        secrets
            .provision(
                functions
                    .environments
                    .values()
                    .flat_map(|env| env.iter())
                    .filter(|(name, _)| name.ends_with("_SECRET_ARN"))
                    .map(|(_, arn)| arn.clone())
                    .filter(|arn| !arn.is_empty())
                    .chain(resolver.created_secrets().into_iter().map(|(_, arn)| arn)),
            )
            .map_err(StackError::Setup)?;
        let (secrets_endpoint, secrets_server) = secrets_local::start(options.secrets_listen, secrets.clone())
            .await
            .map_err(|e| StackError::Setup(format!("Secrets Manager stand-in: {e}")))?;

        let (dynamo, dynamodb_endpoint) = match &options.dynamodb_endpoint {
            Some(endpoint) => (None, endpoint.clone()),
            None => {
                // DynamoDB Local is reachable from where forum-local is: this machine only,
                // unless forum-local listens further (`data-plane`, for sam local's containers).
                let local =
                    DynamoDbLocal::start_on(options.storage.clone(), options.dynamodb_port, options.listen.ip())
                        .await?;
                let endpoint = local.endpoint().to_string();
                (Some(local), endpoint)
            }
        };
        let (s3_root, scratch) = match &options.storage {
            Storage::Dir(dir) => (dir.join("s3"), None),
            Storage::InMemory => {
                let scratch = scratch::ScratchDir::create("forum-local-s3-")
                    .map_err(|e| StackError::Setup(format!("S3 stand-in's directory: {e}")))?;
                (scratch.path().join("s3"), Some(scratch))
            }
        };
        let (created_tx, created_rx) = mpsc::unbounded_channel();
        let s3 = LocalS3::start(
            options.s3_listen,
            &s3_root,
            scratch,
            aws::LOCAL_ACCESS_KEY,
            aws::LOCAL_SECRET_KEY,
            created_tx,
            cors::CorsPolicy::resolve_bucket_rules(template.bucket_cors_rules.as_ref(), &resolver)?,
        )
        .await
        .map_err(|e| StackError::Setup(format!("S3 stand-in: {e}")))?;

        let target = AwsTarget::Local {
            dynamodb_endpoint: dynamodb_endpoint.clone(),
            s3_endpoint: s3.endpoint.clone(),
            secrets_endpoint: secrets_endpoint.clone(),
        };
        let clients = aws::Clients::load(target).await;
        // Each function counts its own DynamoDB usage, as its container would; the HTTP
        // functions also add up into one counter (a request's round trips, whichever function
        // served it), and the triggers into another, so they never count against a request's.
        let api_trips = aws::DynamoDbUsage::default();
        let trigger_trips = aws::DynamoDbUsage::default();
        let dynamodb = clients.dynamodb(&api_trips);
        let s3_client = clients.s3();
        // `@connections` is served by this stack itself, at its own address.
        let connections_endpoint = format!("http://{http_addr}");
        let ws_client = clients.connections(&connections_endpoint);

        // Each function calls AWS only as its role in the translated template allows, and
        // only as local/aws-calls.json declares.
        let names = options.names();
        let stage = resolver.parameter("Stage").unwrap_or("live").to_string();
        let arns = |bucket: &str| iam::LocalArns {
            table: format!(
                "arn:aws:dynamodb:{}:{}:table/{}",
                names.region, names.account_id, options.table_name
            ),
            bucket: bucket.to_string(),
            connections: format!(
                "arn:aws:execute-api:{}:{}:{}/{stage}",
                names.region,
                names.account_id,
                environment::LOCAL_WEBSOCKET_API_ID
            ),
        };
        let check_for = |binary: &str, bucket: &str| -> Result<_, StackError> {
            let policies = translation
                .role_policies
                .get(binary)
                .ok_or_else(|| StackError::Setup(format!("the translated template gives `{binary}` no role")))?;
            Ok(aws_smithy_runtime_api::client::interceptors::SharedInterceptor::new(
                iam::IamCheck::new(
                    iam::Grants::resolve(binary, policies, &resolver, &manifest, &arns(bucket))?,
                    arns(bucket),
                ),
            ))
        };
        let mut apps: BTreeMap<String, Arc<App>> = BTreeMap::new();
        for (binary, config) in &functions.configs {
            let http = Route::from_binary(binary).is_some();
            let combined = if http { api_trips.clone() } else { trigger_trips.clone() };
            let usage = aws::DynamoDbUsage::default();
            // Every client of the function carries its role's check.
            let role = clients.with_interceptor(check_for(binary, &config.media_bucket)?);
            let dynamodb = role
                .with_interceptor(aws_smithy_runtime_api::client::interceptors::SharedInterceptor::new(
                    combined,
                ))
                .dynamodb(&usage);
            // Built on first use, as the deployed functions build theirs (`serve_http`); each
            // function its own `@connections` client, as each container has its own (and its
            // own send limit).
            let notifier = config.ws_endpoint.as_ref().map(|_| {
                let endpoint = connections_endpoint.clone();
                forum_store::notifier::Notifier::new(role.deferred(move |role| role.connections(&endpoint)))
            });
            let app = App::new(
                config,
                aws::built(dynamodb),
                role.deferred(aws::Clients::s3),
                notifier,
                role.deferred(aws::Clients::secrets),
                Deployment::Development,
                usage,
            );
            app.load_secrets()
                .await
                .map_err(|e| StackError::Setup(format!("{binary} would not start: {e}")))?;
            apps.insert(binary.clone(), app);
        }
        let app_of = |binary: &str| {
            apps.get(binary)
                .cloned()
                .ok_or_else(|| StackError::Setup(format!("template.yaml has no function built as `{binary}`")))
        };
        // The stack's own handle on the data (tests, the CDN stand-in): list-posts' settings,
        // with clients no role restricts.
        let list_posts = functions
            .configs
            .get(Route::ListPosts.binary())
            .ok_or_else(|| StackError::Setup("template.yaml has no list-posts function".into()))?;
        let api_app = App::new(
            list_posts,
            aws::built(dynamodb.clone()),
            aws::built(s3_client.clone()),
            Some(forum_store::notifier::Notifier::new(aws::built(ws_client.clone()))),
            clients.deferred(aws::Clients::secrets),
            Deployment::Development,
            api_trips.clone(),
        );
        table::ensure_table(&dynamodb, &options.table_name, &template.table).await?;
        ensure_bucket(&s3_client, api_app.bucket.name()).await?;

        tokio::spawn(run_upload_trigger(
            app_of("process-media")?,
            options.upload_trigger.clone(),
            created_rx,
        ));
        let streams = aws_sdk_dynamodbstreams::Client::from_conf(
            aws_sdk_dynamodbstreams::config::Builder::from(clients.sdk_config())
                .endpoint_url(&dynamodb_endpoint)
                .build(),
        );
        let redelivered = Arc::new(stream::Redelivery::every(options.stream_redelivery));
        let (poller_ready, poller_started) = oneshot::channel();
        let poller = tokio::spawn(stream::run(
            app_of("stream-fanout")?,
            streams,
            dynamodb.clone(),
            options.table_name.clone(),
            stream::EventFilter::new(template.stream_filters.clone()),
            redelivered.clone(),
            poller_ready,
        ));
        // The poller reads the shards from their ends as it first finds them (Lambda's
        // `StartingPosition: LATEST`): the stack is not up until it has, or a write made at
        // once (a test's first post, on a busy machine) would never reach the stream's function.
        if tokio::time::timeout(Duration::from_secs(30), poller_started)
            .await
            .is_err()
        {
            return Err(StackError::Setup("the stream poller did not start within 30 s".into()));
        }

        let mut routes = Vec::new();
        for route in &translation.routes {
            let handler = Route::from_binary(&route.binary).ok_or_else(|| {
                StackError::Setup(format!(
                    "the template routes {} to binary `{}`, which forum-local has no handler for",
                    route.route_key(),
                    route.binary
                ))
            })?;
            routes.push(BoundRoute {
                route: route.clone(),
                handler,
                app: app_of(&route.binary)?,
            });
        }
        // The authorizer, as its function starts: its key read from Secrets Manager (HS256)
        // or the issuer's JWKS URL, with its own role's permissions.
        let authorizer = authorizer_binary(&translation)?;
        let verifier = TokenVerifier::new(
            &functions.jwt,
            Some(
                clients
                    .with_interceptor(check_for(&authorizer, &list_posts.media_bucket)?)
                    .secrets(),
            ),
            Deployment::Development,
        )?;
        verifier
            .load_at_init()
            .await
            .map_err(|e| StackError::Setup(format!("{authorizer} would not start: {e}")))?;
        let permissions = gateway::InvokePermissions::resolve(&translation, &resolver)?;
        let jwt = match &functions.jwt.keys {
            JwtKeys::Secret { arn } => TokenMint {
                secret: secrets.current(arn).unwrap_or_default(),
                issuer: functions.jwt.issuer.clone(),
                audience: functions.jwt.audience.clone(),
                roles: mint_roles(&functions.jwt.roles),
            },
            _ => TokenMint {
                secret: String::new(),
                issuer: functions.jwt.issuer.clone(),
                audience: functions.jwt.audience.clone(),
                roles: mint_roles(&functions.jwt.roles),
            },
        };
        let gateway = Arc::new(Gateway::new(
            gateway::Functions {
                ws_connect: app_of("ws-connect")?,
                ws_disconnect: app_of("ws-disconnect")?,
                ws_message: app_of("ws-message")?,
                media: api_app.bucket.clone(),
            },
            routes,
            translation.authorizers.clone(),
            verifier,
            permissions,
            translation.websocket_authorizer.clone(),
            gateway::Edge {
                cors: cors::CorsPolicy::resolve(template.cors.as_ref(), &resolver)?,
                media_headers: template.media_headers.clone(),
                mint: matches!(functions.jwt.keys, JwtKeys::Secret { .. }).then(|| jwt.clone()),
            },
        ));
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(gateway::run(gateway, listener, async {
            let _ = stopped.await;
        }));
        Ok(Stack {
            http_addr,
            dynamodb_endpoint,
            s3_endpoint: s3.endpoint.clone(),
            app: api_app,
            functions: apps.clone(),
            environments: functions.environments,
            jwt_settings: functions.jwt,
            jwt,
            dynamodb,
            secrets,
            secrets_endpoint,
            redelivered,
            secrets_server,
            dynamo,
            s3,
            poller,
            stop: Some(stop),
            server,
        })
    }

    /// `http://127.0.0.1:<port>`
    pub fn base_url(&self) -> String {
        format!("http://{}", self.http_addr)
    }

    /// Stops the server, the S3 stand-in, then DynamoDB Local (if this stack started it).
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.server).await;
        self.poller.abort();
        self.secrets_server.abort();
        self.s3.stop();
        if let Some(dynamo) = self.dynamo.take() {
            dynamo.stop().await;
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.poller.abort();
        self.secrets_server.abort();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The only variables forum-local sets itself: the endpoints of the services it stands in for
/// at its own address (the CDN and `@connections`).
fn endpoint_overrides(http_addr: SocketAddr) -> BTreeMap<String, String> {
    [
        ("MEDIA_BASE_URL".to_string(), format!("http://{http_addr}")),
        ("WS_ENDPOINT".to_string(), format!("http://{http_addr}")),
    ]
    .into_iter()
    .collect()
}

/// Every function's environment as the template gives it, and what each function builds from
/// it at init: the authorizer its JWT settings, every other function its [`Config`].
struct FunctionEnvironments {
    environments: BTreeMap<String, BTreeMap<String, String>>,
    configs: BTreeMap<String, Config>,
    jwt: JwtSettings,
}

/// The binary of the HTTP API's authorizer.
fn authorizer_binary(translation: &Translation) -> Result<String, StackError> {
    let authorizer = match translation.authorizers.values().collect::<Vec<_>>().as_slice() {
        [one] => *one,
        other => {
            return Err(StackError::Setup(format!(
                "expected one HTTP API authorizer, found {}",
                other.len()
            )));
        }
    };
    translation
        .binaries
        .get(&authorizer.function)
        .cloned()
        .ok_or_else(|| StackError::Setup(format!("authorizer function {} not found", authorizer.function)))
}

impl FunctionEnvironments {
    fn resolve(
        template: &StackTemplate,
        translation: &Translation,
        resolver: &Resolver<'_>,
        http_addr: SocketAddr,
    ) -> Result<Self, StackError> {
        let overrides = endpoint_overrides(http_addr);
        let authorizer = authorizer_binary(translation)?;
        let mut environments = BTreeMap::new();
        let mut configs = BTreeMap::new();
        let mut jwt = None;
        for function in &template.functions {
            let vars = resolver.function_environment(&function.binary, &overrides)?;
            let env = Env::new(vars.clone(), Deployment::Development);
            let init = |e: forum_api::config::ConfigError| {
                StackError::Setup(format!(
                    "{} ({}) would not start: {e}",
                    function.logical_id, function.binary
                ))
            };
            if authorizer == function.binary {
                jwt = Some(JwtSettings::from_env(&env).map_err(init)?);
            } else {
                configs.insert(
                    function.binary.clone(),
                    Config::for_function(
                        &env,
                        &function.binary,
                        Route::from_binary(&function.binary).is_some_and(Route::paginates),
                    )
                    .map_err(init)?,
                );
            }
            environments.insert(function.binary.clone(), vars);
        }
        let jwt = jwt.ok_or_else(|| StackError::Setup("template.yaml has no HTTP API authorizer".into()))?;
        Ok(FunctionEnvironments {
            environments,
            configs,
            jwt,
        })
    }
}

async fn ensure_bucket(s3: &aws_sdk_s3::Client, bucket: &str) -> Result<(), StackError> {
    if s3.head_bucket().bucket(bucket).send().await.is_ok() {
        return Ok(());
    }
    s3.create_bucket()
        .bucket(bucket)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| StackError::Setup(format!("creating bucket {bucket}: {e:?}")))
}

/// S3's event notification to `process-media`, as the template configures it: objects
/// created under `uploads/`, each delivered as an S3 event, retried on failure.
async fn run_upload_trigger(
    app: Arc<App>,
    trigger: UploadTrigger,
    mut created: mpsc::UnboundedReceiver<s3_local::ObjectCreated>,
) {
    while let Some(object) = created.recv().await {
        if !object.key.starts_with("uploads/") {
            continue;
        }
        if let UploadTrigger::Deliver(to) = &trigger {
            let _ = to.send(s3_event(&object));
            continue;
        }
        let app = app.clone();
        tokio::spawn(async move {
            let event = s3_event(&object);
            for attempt in 1..=TRIGGER_ATTEMPTS {
                let parsed = match serde_json::from_value::<aws_lambda_events::s3::S3Event>(event.clone()) {
                    Ok(e) => e,
                    Err(e) => {
                        tracing::error!(error = %e, "S3 event did not deserialize");
                        return;
                    }
                };
                match forum_api::handlers::process_uploads(&app, parsed).await {
                    Ok(()) => return,
                    Err(e) => {
                        tracing::warn!(key = %object.key, attempt, error = %e, "process-media failed");
                        tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
                    }
                }
            }
        });
    }
}

/// The S3 event a Lambda receives for one created object.
fn s3_event(object: &s3_local::ObjectCreated) -> serde_json::Value {
    let key: String = url::form_urlencoded::byte_serialize(object.key.as_bytes()).collect();
    serde_json::json!({
        "Records": [{
            "eventVersion": "2.1",
            "eventSource": "aws:s3",
            "awsRegion": aws::LOCAL_REGION,
            "eventTime": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "eventName": object.event_name,
            "userIdentity": { "principalId": "forum-local" },
            "requestParameters": { "sourceIPAddress": "127.0.0.1" },
            "responseElements": { "x-amz-request-id": ulid::Ulid::new().to_string(), "x-amz-id-2": "forum-local" },
            "s3": {
                "s3SchemaVersion": "1.0",
                "configurationId": "process-media",
                "bucket": { "name": object.bucket, "ownerIdentity": { "principalId": "forum-local" }, "arn": format!("arn:aws:s3:::{}", object.bucket) },
                "object": { "key": key, "size": object.size, "sequencer": ulid::Ulid::new().to_string() }
            }
        }]
    })
}

/// What the local mint needs of the authorizer's role settings: the claim and the first group
/// of each role.
fn mint_roles(roles: &forum_api::auth::RoleClaim) -> forum_testkit::MintRoles {
    forum_testkit::MintRoles {
        claim: roles.claim.clone(),
        moderator_group: roles.moderator_groups.first().cloned(),
        admin_group: roles.admin_groups.first().cloned(),
    }
}
