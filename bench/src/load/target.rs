//! What a load runs against: a forum-local it starts (the default), or a deployed stack given
//! by its `HttpApiUrl` and `WebSocketUrl`, with one identity (token) per simulated user.

use std::time::Duration;

use forum_local::{DynamoDbLocal, Stack, Storage};
use forum_testkit::{TokenMint, issue_token, local_user_id};

#[derive(clap::Args, Clone)]
pub struct TargetArgs {
    /// A deployed stack's `HttpApiUrl` (a stack output). Without it, forum-local is started.
    #[arg(long, requires = "ws_url")]
    api_url: Option<String>,
    /// The deployed stack's `WebSocketUrl`.
    #[arg(long, requires = "api_url")]
    ws_url: Option<String>,
    /// For an HS256 deployment: the name of the environment variable holding its HS256 key (the value of the secret `JwtSecretArn` names)
    /// (a variable, so the secret never shows in `ps` or shell history).
    #[arg(long, value_name = "VAR", requires_all = ["jwt_issuer", "jwt_audience"], conflicts_with = "tokens")]
    jwt_secret_env: Option<String>,
    /// The deployment's `JwtIssuer`.
    #[arg(long)]
    jwt_issuer: Option<String>,
    /// The deployment's `JwtAudience`.
    #[arg(long)]
    jwt_audience: Option<String>,
    /// A file of tokens, one JWT per line, each of a different user (e.g. from Cognito):
    /// one per simulated user, per WebSocket listener, plus one for the setup.
    #[arg(long, value_name = "FILE")]
    tokens: Option<String>,
    /// On forum-local, keep the template's rate limits (by default they are lifted, since a
    /// few simulated users stand in for many people). A deployment's own limits always apply.
    #[arg(long)]
    keep_rate_limits: bool,
    /// The read cache's TTL (template parameter `ReadCacheTtlMs`): on forum-local, what to run
    /// with (0 turns it off, to compare); for a deployed stack, what it was deployed with, so
    /// the audit reads back only once that staleness bound has passed (default: the largest
    /// the template allows).
    #[arg(long, value_name = "MS")]
    read_cache_ttl_ms: Option<u64>,
}

/// The stack under load and one token per identity.
pub struct Target {
    pub api: String,
    pub ws: String,
    tokens: Vec<String>,
    /// Set when the command started forum-local: the audit may then read the table itself.
    pub local: Option<(DynamoDbLocal, Stack)>,
    /// How late the API's reads may be (its read cache's TTL): the audit waits that out.
    pub staleness_bound: Duration,
}

impl Target {
    /// Opens the target with `identities` distinct users.
    pub async fn open(
        args: &TargetArgs,
        identities: usize,
        run_tag: &str,
        stream_redelivery: Option<u32>,
    ) -> Result<Target, String> {
        let names: Vec<String> = (0..identities).map(|i| format!("load-{run_tag}-{i}")).collect();
        let mint = |settings: &TokenMint| -> Result<Vec<String>, String> {
            names
                .iter()
                .map(|name| issue_token(settings, &local_user_id(name), name, None, 3 * 3600))
                .collect()
        };
        let (Some(api), Some(ws)) = (&args.api_url, &args.ws_url) else {
            // (A deployed stack's stream is Lambda's: nothing here can make it redeliver.)
            let dynamo = DynamoDbLocal::start(Storage::InMemory)
                .await
                .map_err(|e| format!("DynamoDB Local: {e}"))?;
            let mut options = crate::bench_stack("forum-load", dynamo.endpoint().to_string());
            if args.keep_rate_limits {
                options.parameters = forum_local::StackOptions::local()
                    .map_err(|e| e.to_string())?
                    .parameters;
            }
            if let Some(ms) = args.read_cache_ttl_ms {
                options = options.parameter("ReadCacheTtlMs", ms.to_string());
            }
            options.stream_redelivery = stream_redelivery;
            let stack = Stack::start(options).await.map_err(|e| format!("forum-local: {e}"))?;
            let tokens = mint(&stack.jwt)?;
            let staleness_bound = stack
                .environments
                .get("get-post")
                .and_then(|env| env.get("FORUM_READ_CACHE_TTL_MS"))
                .and_then(|ms| ms.parse().ok())
                .map(Duration::from_millis)
                .ok_or("the template gives get-post no FORUM_READ_CACHE_TTL_MS")?;
            return Ok(Target {
                api: stack.base_url(),
                ws: format!("ws://{}/ws", stack.http_addr),
                tokens,
                local: Some((dynamo, stack)),
                staleness_bound,
            });
        };
        let tokens = match (&args.jwt_secret_env, &args.tokens) {
            (Some(var), _) => {
                let key = std::env::var(var).map_err(|_| format!("${var} is not set"))?;
                mint(&TokenMint {
                    secret: key,
                    issuer: args.jwt_issuer.clone().unwrap_or_default(),
                    audience: args.jwt_audience.clone().unwrap_or_default(),
                    // Load users are ordinary users.
                    roles: Default::default(),
                })?
            }
            (None, Some(file)) => {
                let text = std::fs::read_to_string(file).map_err(|e| format!("{file}: {e}"))?;
                let tokens: Vec<String> = text
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(String::from)
                    .collect();
                if tokens.len() < identities {
                    return Err(format!(
                        "{file} holds {} tokens; this run needs {identities}, one per user, listener and the setup",
                        tokens.len()
                    ));
                }
                tokens
            }
            (None, None) => return Err("a deployed stack needs --jwt-secret-env or --tokens".into()),
        };
        Ok(Target {
            api: api.trim_end_matches('/').to_string(),
            ws: ws.trim_end_matches('/').to_string(),
            tokens,
            local: None,
            staleness_bound: Duration::from_millis(args.read_cache_ttl_ms.unwrap_or_else(|| {
                forum_domain::limits::READ_CACHE_TTL_MS
                    .parameter
                    .and_then(|p| p.max)
                    .unwrap_or(forum_domain::limits::READ_CACHE_TTL_MS.value)
            })),
        })
    }

    /// The token of identity `i` (users first, then listeners, then the setup's).
    pub fn token(&self, i: usize) -> &str {
        &self.tokens[i]
    }

    pub async fn close(self) {
        if let Some((dynamo, stack)) = self.local {
            stack.shutdown().await;
            dynamo.stop().await;
        }
    }
}
