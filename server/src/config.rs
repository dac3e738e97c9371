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

    /// Log every SQL statement's text (target `sqlx::query`, info) for
    /// diagnosis and for the pgbench comparison; never the bound values.
    #[arg(long, env = "CENTRALINO_LOG_SQL", default_value_t = false)]
    pub log_sql: bool,
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

    #[command(flatten)]
    pub providers: ProvidersConfig,

    #[command(flatten)]
    pub links: LinkConfig,

    #[command(flatten)]
    pub webhooks: WebhookConfig,

    #[command(flatten)]
    pub notify: NotifyConfig,

    #[command(flatten)]
    pub recovery: RecoveryConfig,

    /// How often the routing epoch is polled, in milliseconds: assistant
    /// requests are answered from memory, and a number or order changed by
    /// another process is seen within this time.
    #[arg(long, env = "CENTRALINO_ROUTING_POLL_MS", default_value_t = 200)]
    pub routing_poll_ms: u64,

    /// Group committers of end-of-call reports on PostgreSQL: they share one
    /// queue, and a free one takes the reports waiting while another commits
    /// (each batch one transaction on its own connection). SQLite always
    /// has one: it has one writer.
    #[arg(long, env = "CENTRALINO_REPORT_COMMITTERS", default_value_t = 1)]
    pub report_committers: usize,

    /// Seconds that in-flight requests get to finish after SIGINT/SIGTERM.
    #[arg(long, env = "CENTRALINO_SHUTDOWN_GRACE_SECS", default_value_t = 10)]
    pub shutdown_grace_secs: u64,
}

/// Vapi and Twilio: credentials, base URLs (tests point them at fakes),
/// timeouts and retries. Without credentials the service keeps working and
/// marks what waits for them.
#[derive(Debug, Clone, clap::Args)]
pub struct ProvidersConfig {
    /// Base URL Vapi and Twilio call back (webhooks), e.g. https://centralino.example.it.
    #[arg(long, env = "CENTRALINO_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// Vapi private API key. Without it, number links stay PENDING.
    #[arg(long, env = "VAPI_API_KEY", hide_env_values = true)]
    pub vapi_api_key: Option<Secret>,

    /// Vapi REST base URL.
    #[arg(
        long,
        env = "CENTRALINO_VAPI_BASE_URL",
        default_value = "https://api.vapi.ai"
    )]
    pub vapi_base_url: String,

    /// Secret Vapi sends as `X-Vapi-Secret` on webhooks (written on linked numbers).
    #[arg(long, env = "VAPI_WEBHOOK_SECRET", hide_env_values = true)]
    pub vapi_webhook_secret: Option<Secret>,

    /// A Vapi credential id to authenticate webhooks instead of the secret header.
    #[arg(long, env = "VAPI_WEBHOOK_CREDENTIAL_ID")]
    pub vapi_webhook_credential_id: Option<String>,

    /// Twilio account SID (AC...).
    #[arg(long, env = "TWILIO_ACCOUNT_SID")]
    pub twilio_account_sid: Option<String>,

    /// Twilio auth token (or use an API key and secret).
    #[arg(long, env = "TWILIO_AUTH_TOKEN", hide_env_values = true)]
    pub twilio_auth_token: Option<Secret>,

    /// Twilio API key SID (SK...), with TWILIO_API_SECRET.
    #[arg(long, env = "TWILIO_API_KEY")]
    pub twilio_api_key: Option<String>,

    /// Twilio API key secret.
    #[arg(long, env = "TWILIO_API_SECRET", hide_env_values = true)]
    pub twilio_api_secret: Option<Secret>,

    /// Twilio REST base URL.
    #[arg(
        long,
        env = "CENTRALINO_TWILIO_BASE_URL",
        default_value = "https://api.twilio.com"
    )]
    pub twilio_base_url: String,

    /// Timeout of one request to Vapi or Twilio, in milliseconds.
    #[arg(long, env = "CENTRALINO_PROVIDER_TIMEOUT_MS", default_value_t = 10_000)]
    pub provider_timeout_ms: u64,

    /// Retries of a request that failed with 429, 5xx, a timeout or a connection error.
    #[arg(long, env = "CENTRALINO_PROVIDER_RETRIES", default_value_t = 3)]
    pub provider_retries: usize,

    /// First retry delay in milliseconds (doubles, with jitter, up to 5 s).
    #[arg(long, env = "CENTRALINO_PROVIDER_RETRY_MIN_MS", default_value_t = 200)]
    pub provider_retry_min_ms: u64,
}

/// The Vapi webhook shim on the HTTP listener.
#[derive(Debug, Clone, clap::Args)]
pub struct WebhookConfig {
    /// How Vapi webhooks authenticate: `secret` (header X-Vapi-Secret equal to
    /// VAPI_WEBHOOK_SECRET, what number links write), `bearer`
    /// (Authorization: Bearer VAPI_WEBHOOK_SECRET) or `hmac` (HMAC-SHA256 of
    /// "{timestamp}.{body}" keyed with VAPI_WEBHOOK_SECRET, hex).
    #[arg(long, env = "CENTRALINO_VAPI_WEBHOOK_AUTH", default_value = "secret")]
    pub vapi_webhook_auth: String,

    /// Header carrying the secret in `secret` mode.
    #[arg(
        long,
        env = "CENTRALINO_VAPI_WEBHOOK_HEADER",
        default_value = "X-Vapi-Secret"
    )]
    pub vapi_webhook_header: String,

    /// Header carrying the signature in `hmac` mode.
    #[arg(
        long,
        env = "CENTRALINO_VAPI_HMAC_SIGNATURE_HEADER",
        default_value = "x-signature"
    )]
    pub vapi_hmac_signature_header: String,

    /// Header carrying the timestamp in `hmac` mode.
    #[arg(
        long,
        env = "CENTRALINO_VAPI_HMAC_TIMESTAMP_HEADER",
        default_value = "x-timestamp"
    )]
    pub vapi_hmac_timestamp_header: String,

    /// Prefix before the hex signature in `hmac` mode (e.g. `sha256=`).
    #[arg(long, env = "CENTRALINO_VAPI_HMAC_PREFIX")]
    pub vapi_hmac_prefix: Option<String>,

    /// Accepted clock difference for `hmac` timestamps, in seconds.
    #[arg(long, env = "CENTRALINO_VAPI_HMAC_WINDOW_SECS", default_value_t = 300)]
    pub vapi_hmac_window_secs: u64,

    /// Largest webhook body accepted, in bytes (larger: 413).
    #[arg(
        long,
        env = "CENTRALINO_WEBHOOK_MAX_BODY_BYTES",
        default_value_t = 1_048_576
    )]
    pub webhook_max_body_bytes: usize,

    /// gRPC endpoint the shim calls; default: this process's own services,
    /// in memory (no socket).
    #[arg(long, env = "CENTRALINO_SHIM_GRPC_ENDPOINT")]
    pub shim_grpc_endpoint: Option<String>,

    /// The shim's `ingest` key for that endpoint; default: a key made at start
    /// and known to this process only.
    #[arg(long, env = "CENTRALINO_SHIM_INGEST_KEY", hide_env_values = true)]
    pub shim_ingest_key: Option<Secret>,
}

/// WhatsApp notifications: routing fallbacks, the template, and the dispatcher.
#[derive(Debug, Clone, clap::Args)]
pub struct NotifyConfig {
    /// Sender for orders without a number of their own (`whatsapp:+39…` or
    /// `+39…`). Never used for an order that has a number.
    #[arg(long, env = "TWILIO_WHATSAPP_NUMBER")]
    pub twilio_whatsapp_number: Option<String>,

    /// Recipient when no zone agent and no default agent match (`whatsapp:+39…` or `+39…`).
    #[arg(long, env = "TWILIO_DESTINATION_WHATSAPP")]
    pub twilio_destination_whatsapp: Option<String>,

    /// Approved WhatsApp Content template (HX…) used outside the 24-hour
    /// window. Without it, messages to agents who have not written in 24 h fail
    /// with TEMPLATE_NOT_CONFIGURED.
    #[arg(long, env = "TWILIO_WHATSAPP_TEMPLATE_SID")]
    pub twilio_whatsapp_template_sid: Option<String>,

    /// The template's variables {{1}}, {{2}}, … in order, from: agency,
    /// caller, request, summary, time, duration.
    #[arg(
        long,
        env = "CENTRALINO_WHATSAPP_TEMPLATE_VARIABLES",
        default_value = "agency,caller,request,summary,time,duration"
    )]
    pub whatsapp_template_variables: String,

    /// How often the dispatcher sweeps for due notifications, in milliseconds
    /// (it is also woken at once when a notification commits in this process).
    #[arg(long, env = "CENTRALINO_NOTIFY_SWEEP_MS", default_value_t = 2_000)]
    pub notify_sweep_ms: u64,

    /// Messages sent to Twilio at the same time, at most.
    #[arg(long, env = "CENTRALINO_NOTIFY_CONCURRENCY", default_value_t = 16)]
    pub notify_concurrency: usize,

    /// How long a claimed notification is reserved for this process, in
    /// milliseconds; after a crash another process takes it over then.
    #[arg(long, env = "CENTRALINO_NOTIFY_LEASE_MS", default_value_t = 60_000)]
    pub notify_lease_ms: u64,

    /// First delay before a transient failure is retried, in milliseconds
    /// (doubles per attempt, with jitter, up to 5 minutes).
    #[arg(long, env = "CENTRALINO_NOTIFY_RETRY_BASE_MS", default_value_t = 2_000)]
    pub notify_retry_base_ms: u64,

    /// Transient failures are retried until a notification is this old (seconds); then FAILED.
    #[arg(long, env = "CENTRALINO_NOTIFY_MAX_AGE_SECS", default_value_t = 21_600)]
    pub notify_max_age_secs: u64,

    /// A SENT message without a status callback for this long (seconds) is
    /// read back from Twilio (`GET Messages/{sid}`), for up to two days.
    #[arg(long, env = "CENTRALINO_NOTIFY_REFRESH_SECS", default_value_t = 600)]
    pub notify_refresh_secs: u64,

    /// Test hook: abort the process right after the dispatcher claims rows,
    /// before it sends them (the crash-safety test). Never set in production.
    #[arg(long, env = "CENTRALINO_TEST_CRASH_AFTER_CLAIM", hide = true)]
    pub test_crash_after_claim: bool,
}

/// Recovery of end-of-call reports that never arrived (needs VAPI_API_KEY).
#[derive(Debug, Clone, clap::Args)]
pub struct RecoveryConfig {
    /// How often Vapi's recent calls are compared with the stored reports, in
    /// milliseconds; 0 turns the recovery off.
    #[arg(
        long,
        env = "CENTRALINO_RECOVERY_INTERVAL_MS",
        default_value_t = 300_000
    )]
    pub recovery_interval_ms: u64,

    /// How far back each pass looks, in seconds.
    #[arg(
        long,
        env = "CENTRALINO_RECOVERY_LOOKBACK_SECS",
        default_value_t = 86_400
    )]
    pub recovery_lookback_secs: u64,

    /// Calls that ended less than this many seconds ago are left to their
    /// webhook (which usually arrives within seconds).
    #[arg(long, env = "CENTRALINO_RECOVERY_GRACE_SECS", default_value_t = 120)]
    pub recovery_grace_secs: u64,
}

/// The link reconciler: retries PENDING/FAILED links and repairs drift.
#[derive(Debug, Clone, clap::Args)]
pub struct LinkConfig {
    /// How often the reconciler looks for due links, in milliseconds.
    #[arg(
        long,
        env = "CENTRALINO_LINK_RECONCILE_INTERVAL_MS",
        default_value_t = 30_000
    )]
    pub link_reconcile_interval_ms: u64,

    /// First delay before a FAILED link is retried, in milliseconds (doubles per failure, up to an hour).
    #[arg(long, env = "CENTRALINO_LINK_RETRY_BASE_MS", default_value_t = 30_000)]
    pub link_retry_base_ms: u64,

    /// How often a LINKED number is checked in Vapi for drift, in milliseconds.
    #[arg(
        long,
        env = "CENTRALINO_LINK_DRIFT_CHECK_MS",
        default_value_t = 600_000
    )]
    pub link_drift_check_ms: u64,
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
