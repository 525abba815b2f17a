//! `forum-local`: run the forum on this machine, or print a token it accepts.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use forum_local::{Stack, StackOptions, Storage};

#[derive(Parser)]
#[command(
    name = "forum-local",
    about = "The forum API on one machine: DynamoDB Local, the HTTP API, the same handlers as Lambda"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Start the stack (the default).
    Serve(ServeArgs),
    /// Print a JWT the running stack accepts (HS256, with the development key the local
    /// parameter set's JwtSecretArn names).
    Token(TokenArgs),
    /// Run the data plane for `sam local start-api`/`invoke`: DynamoDB Local, the S3 stand-in,
    /// the stream and S3 triggers, the WebSocket API with `@connections`, and the CDN stand-in,
    /// on the fixed ports local/sam-env.json points SAM's containers at.
    DataPlane(DataPlaneArgs),
}

#[derive(Args, Clone)]
struct DataPlaneArgs {
    #[command(flatten)]
    serve: ServeArgs,
    /// Port for DynamoDB Local (local/sam-env.json: FORUM_LOCAL_DYNAMODB_ENDPOINT).
    #[arg(long, default_value_t = 8000)]
    dynamodb_port: u16,
    /// Port for the S3 stand-in (local/sam-env.json: FORUM_LOCAL_S3_ENDPOINT).
    #[arg(long, default_value_t = 9000)]
    s3_port: u16,
    /// Port for the Secrets Manager stand-in (local/sam-env.json: FORUM_LOCAL_SECRETS_ENDPOINT).
    #[arg(long, default_value_t = 9100)]
    secrets_port: u16,
}

#[derive(Args, Clone)]
struct ServeArgs {
    /// Port for the HTTP API.
    #[arg(long, default_value_t = 3000, env = "FORUM_LOCAL_PORT")]
    port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Where DynamoDB Local keeps its data.
    #[arg(long, default_value = ".forum-local")]
    data_dir: PathBuf,
    /// Keep data in memory only (gone when forum-local stops).
    #[arg(long)]
    in_memory: bool,
    /// Read the table and the functions' environments from this template instead of the
    /// bundled one (give its translation with --translation).
    #[arg(long, requires = "translation")]
    template: Option<PathBuf>,
    /// SAM's translation of --template (scripts/rehearse_deploy.py --write-translated), for
    /// routes, authorizers, invoke permissions and roles.
    #[arg(long, requires = "template")]
    translation: Option<PathBuf>,
    /// Set a template parameter over samconfig.toml's local set (repeatable), e.g.
    /// `--parameter RatePostsPerMinute=100`.
    #[arg(long = "parameter", value_name = "NAME=VALUE")]
    parameters: Vec<String>,
}

#[derive(Args)]
struct TokenArgs {
    /// The username (`preferred_username` claim).
    username: String,
    /// The user id (`sub`); defaults to a stable id derived from the username.
    #[arg(long)]
    sub: Option<String>,
    /// Avatar URL (`picture` claim).
    #[arg(long)]
    picture: Option<String>,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 24 * 3600)]
    ttl: i64,
    /// `moderator` or `admin`: the token carries the group claim the template names for it.
    #[arg(long)]
    role: Option<String>,
    /// A template parameter over samconfig.toml's local set (repeatable), as given to the stack.
    #[arg(long = "parameter", value_name = "NAME=VALUE")]
    parameters: Vec<String>,
}

/// The stack's options with `--parameter NAME=VALUE` pairs applied.
fn options_with(parameters: &[String]) -> Result<StackOptions, String> {
    let mut options = StackOptions::local().map_err(|e| e.to_string())?;
    for pair in parameters {
        let (name, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("--parameter takes NAME=VALUE, not `{pair}`"))?;
        options = options.parameter(name, value);
    }
    Ok(options)
}

fn token_for(jwt: &forum_testkit::TokenMint, args: &TokenArgs) -> Result<String, String> {
    let sub = args
        .sub
        .clone()
        .unwrap_or_else(|| forum_testkit::local_user_id(&args.username));
    let extra = match &args.role {
        Some(role) => jwt.role_claims(role)?,
        None => serde_json::Map::new(),
    };
    forum_testkit::issue_token_with(jwt, &sub, &args.username, args.picture.as_deref(), args.ttl, extra)
}

#[tokio::main]
async fn main() -> ExitCode {
    forum_api::telemetry::init();
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Token(args)) => options_with(&args.parameters)
            .and_then(|options| options.token_mint().map_err(|e| e.to_string()))
            .and_then(|jwt| token_for(&jwt, &args))
            .map(|token| println!("{token}")),
        Some(Command::Serve(args)) => serve(args, None).await,
        Some(Command::DataPlane(args)) => {
            let mut serve_args = args.serve.clone();
            // Defaults for the data plane: beside `sam local start-api` (port 3000), and on every
            // interface, since SAM's containers reach the host through Docker's bridge.
            if serve_args.port == 3000 {
                serve_args.port = 3001;
            }
            if serve_args.host == IpAddr::from([127, 0, 0, 1]) {
                serve_args.host = IpAddr::from([0, 0, 0, 0]);
            }
            serve(serve_args, Some(args)).await
        }
        None => serve(cli.serve, None).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("forum-local: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: ServeArgs, data_plane: Option<DataPlaneArgs>) -> Result<(), String> {
    let mut options = options_with(&args.parameters)?;
    options.listen = SocketAddr::new(args.host, args.port);
    if let Some(plane) = &data_plane {
        options.dynamodb_port = Some(plane.dynamodb_port);
        options.s3_listen = SocketAddr::new(args.host, plane.s3_port);
        options.secrets_listen = SocketAddr::new(args.host, plane.secrets_port);
    }
    options.storage = if args.in_memory {
        Storage::InMemory
    } else {
        Storage::Dir(args.data_dir.clone())
    };
    if let (Some(template), Some(translation)) = (&args.template, &args.translation) {
        let read = |path: &PathBuf| std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()));
        options.template = read(template)?;
        options.translation = read(translation)?;
    }
    let table = options.table_name.clone();
    let stack = Stack::start(options).await.map_err(|e| e.to_string())?;
    let jwt = stack.jwt.clone();
    let base = stack.base_url();
    let sample = TokenArgs {
        username: "alice".into(),
        sub: None,
        picture: None,
        ttl: 24 * 3600,
        role: None,
        parameters: Vec::new(),
    };
    let token = token_for(&jwt, &sample).unwrap_or_else(|e| format!("<{e}>"));
    let storage = if args.in_memory {
        "in memory".to_string()
    } else {
        format!("data in {}", args.data_dir.display())
    };
    if data_plane.is_some() {
        println!(
            "forum-local's data plane is up (listening on {}; --host limits it)",
            args.host
        );
        println!("  DynamoDB Local:  {}", stack.dynamodb_endpoint);
        println!("  S3 stand-in:     {}", stack.s3_endpoint);
        println!("  Secrets Manager: {}", stack.secrets_endpoint);
        println!(
            "  WebSocket API:   ws://127.0.0.1:{}/ws?token=...  (@connections and media here too)",
            args.port
        );
        println!();
        println!("In another terminal (local/sam-env.json points the functions here):");
        println!("  sam build");
        println!("  sam local start-api --add-host host.docker.internal:host-gateway");
        println!();
        println!("A token for user `alice`: {token}");
        println!("Ctrl-C stops it (and DynamoDB Local with it).");
        let _ = tokio::signal::ctrl_c().await;
        eprintln!("forum-local: stopping");
        stack.shutdown().await;
        return Ok(());
    }
    println!("forum-local is up");
    println!("  HTTP API:  {base}/api/forum/");
    println!("  DynamoDB:  {} (table `{table}`, {storage})", stack.dynamodb_endpoint);
    println!();
    println!("Try it (a token for user `alice`, valid 24 h; `forum-local token <name>` makes more):");
    println!("  curl -s -H 'Authorization: Bearer {token}' {base}/api/forum/posts/");
    println!(
        "  curl -s -H 'Authorization: Bearer {token}' -H 'Content-Type: application/json' \\\n       -d '{{\"content\":\"Hello, forum\"}}' {base}/api/forum/posts/"
    );
    println!();
    println!("Ctrl-C stops it (and DynamoDB Local with it).");
    let _ = tokio::signal::ctrl_c().await;
    eprintln!("forum-local: stopping");
    stack.shutdown().await;
    Ok(())
}
