//! Configuration: every setting is a flag with an environment variable.
//! Our own settings are `CENTRALINO_*`; `DATABASE_URL` keeps its usual name.

use std::{fmt, net::SocketAddr, path::PathBuf, str::FromStr};

/// A secret setting: its Debug and Display never show the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Where the data lives.
#[derive(Debug, Clone, clap::Args)]
pub struct DatabaseConfig {
    /// SQLite (`sqlite://FILE?mode=rwc`, created if missing, WAL) or PostgreSQL
    /// (`postgres://user@host:5432/db`).
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://centralino.db?mode=rwc"
    )]
    pub database_url: String,

    /// Size of the database connection pool.
    #[arg(long, env = "CENTRALINO_DB_MAX_CONNECTIONS", default_value_t = 10)]
    pub db_max_connections: u32,
}

/// Everything `serve` needs.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    #[command(flatten)]
    pub database: DatabaseConfig,

    /// Address of the gRPC listener (port 0 picks a free port).
    #[arg(long, env = "CENTRALINO_GRPC_ADDR", default_value = "0.0.0.0:50051")]
    pub grpc_addr: SocketAddr,

    /// Address of the HTTP listener: webhooks, /healthz and /readyz.
    #[arg(long, env = "CENTRALINO_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    pub http_addr: SocketAddr,

    /// API keys as comma-separated ROLE=KEY entries; roles: admin, service,
    /// ingest, viewer:<order-id>.
    #[arg(long, env = "CENTRALINO_API_KEYS", hide_env_values = true)]
    pub api_keys: Option<Secret>,

    /// A file of ROLE=KEY lines (`#` starts a comment).
    #[arg(long, env = "CENTRALINO_API_KEYS_FILE")]
    pub api_keys_file: Option<PathBuf>,

    /// A file holding one admin key. Read when it exists; created (mode 0600,
    /// with a new random key) when no key is configured at all.
    #[arg(
        long,
        env = "CENTRALINO_ADMIN_KEY_FILE",
        default_value = "centralino-admin.key"
    )]
    pub admin_key_file: PathBuf,

    /// Seconds that in-flight requests get to finish after SIGINT/SIGTERM.
    #[arg(long, env = "CENTRALINO_SHUTDOWN_GRACE_SECS", default_value_t = 10)]
    pub shutdown_grace_secs: u64,
}

/// Logging, shared by every subcommand.
#[derive(Debug, Clone, clap::Args)]
pub struct LogConfig {
    /// Log filter in tracing's EnvFilter syntax, e.g. `info` or
    /// `info,centralino_server=debug`. `RUST_LOG` wins when set.
    #[arg(
        long = "log",
        env = "CENTRALINO_LOG",
        default_value = "info",
        global = true
    )]
    pub filter: String,

    /// `text` for people, `json` for log collectors.
    #[arg(
        long,
        env = "CENTRALINO_LOG_FORMAT",
        default_value = "text",
        global = true
    )]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

impl Config {
    /// Parses flags (and the environment) as `centralino serve` would; for
    /// tests and tools that start the server in-process.
    pub fn from_args<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        use clap::Parser;
        #[derive(clap::Parser)]
        // A later flag overrides an earlier one, so callers can layer defaults.
        #[command(args_override_self = true)]
        struct Wrapper {
            #[command(flatten)]
            config: Config,
        }
        let args = std::iter::once(std::ffi::OsString::from("centralino"))
            .chain(args.into_iter().map(Into::into));
        Wrapper::try_parse_from(args).map(|w| w.config)
    }
}
