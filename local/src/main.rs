//! `forum-local`: run the forum on this machine, or print a token it accepts.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use forum_local::{Stack, StackOptions, Storage};
use shared::auth;

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
    /// Print a JWT the running stack accepts (HS256 with FORUM_JWT_SECRET).
    Token(TokenArgs),
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
    /// Read routes, the table and the functions' environments from this template instead
    /// of the bundled one.
    #[arg(long)]
    template: Option<PathBuf>,
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

fn token_for(jwt: &auth::JwtSettings, args: &TokenArgs) -> Result<String, String> {
    let sub = args.sub.clone().unwrap_or_else(|| auth::local_user_id(&args.username));
    auth::issue_token(jwt, &sub, &args.username, args.picture.as_deref(), args.ttl)
}

#[tokio::main]
async fn main() -> ExitCode {
    shared::telemetry::init();
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Token(args)) => options_with(&args.parameters)
            .and_then(|options| options.jwt_settings().map_err(|e| e.to_string()))
            .and_then(|jwt| token_for(&jwt, &args))
            .map(|token| println!("{token}")),
        Some(Command::Serve(args)) => serve(args).await,
        None => serve(cli.serve).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("forum-local: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: ServeArgs) -> Result<(), String> {
    let mut options = options_with(&args.parameters)?;
    options.listen = SocketAddr::new(args.host, args.port);
    options.storage = if args.in_memory {
        Storage::InMemory
    } else {
        Storage::Dir(args.data_dir.clone())
    };
    if let Some(path) = &args.template {
        options.template = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
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
        parameters: Vec::new(),
    };
    let token = token_for(&jwt, &sample).unwrap_or_else(|e| format!("<{e}>"));
    let storage = if args.in_memory {
        "in memory".to_string()
    } else {
        format!("data in {}", args.data_dir.display())
    };
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
