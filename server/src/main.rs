//! `centralino`: `serve` (the default) and `migrate`.

use std::process::ExitCode;

use centralino_server::{
    Application,
    app::cancel_on_signals,
    config::{Config, DatabaseConfig, LogConfig},
    store::Store,
    telemetry,
};
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

/// mimalloc: many small, short-lived allocations per request (JSON, SQL
/// text, rows), which glibc malloc served at a measurable cost.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Centralino: the back office of an AI phone receptionist for Italian
/// real-estate agencies.
#[derive(Parser)]
#[command(name = "centralino", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(flatten)]
    log: LogConfig,
    #[command(subcommand)]
    command: Option<Command>,
    /// Without a subcommand, `centralino` serves with these settings.
    #[command(flatten)]
    serve: Config,
}

#[derive(Subcommand)]
enum Command {
    /// Apply pending migrations, then serve gRPC and HTTP until SIGINT/SIGTERM.
    Serve(Box<Config>),
    /// Apply pending migrations and exit.
    Migrate(DatabaseConfig),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(&cli.log);
    let result = match cli.command {
        Some(Command::Serve(config)) => serve(*config).await,
        None => serve(cli.serve).await,
        Some(Command::Migrate(database)) => migrate(database).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            error!(error = %err, "centralino stopped with an error");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> Result<(), Box<dyn std::error::Error>> {
    let app = Application::build(config).await?;
    let shutdown = CancellationToken::new();
    cancel_on_signals(shutdown.clone());
    app.run_until_stopped(shutdown).await?;
    Ok(())
}

async fn migrate(database: DatabaseConfig) -> Result<(), Box<dyn std::error::Error>> {
    let store = Store::connect(&database.database_url, 1).await?;
    let applied = store.migrate().await?;
    info!(
        database = store.backend_name(),
        applied, "migrations applied"
    );
    store.close().await?;
    Ok(())
}
