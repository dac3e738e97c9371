//! Test harness: the real server in-process on port 0, its own database per
//! test (a SQLite file, or a fresh PostgreSQL database when
//! `TEST_DATABASE_URL` is set), and SDK clients with each kind of key.

use std::{net::SocketAddr, sync::Once, time::Duration};

use centralino_sdk::{Client, proto, tonic};
use centralino_server::{Application, Config, store::entities::order};
use sea_orm::{ConnectionTrait, Database, EntityTrait, QueryOrder};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const ADMIN_KEY: &str = "test-admin-key-0000000001";
pub const SERVICE_KEY: &str = "test-service-key-000000001";
pub const INGEST_KEY: &str = "test-ingest-key-0000000001";

static ANNOUNCE: Once = Once::new();

/// Straight to stderr: the harness captures eprintln! of passing tests.
fn announce(line: &str) {
    use std::io::Write;
    writeln!(std::io::stderr(), "{line}").ok();
}

/// A database of this test's own.
pub struct TestDb {
    pub url: String,
    /// PostgreSQL: the admin URL and the name to drop at the end.
    postgres: Option<(String, String)>,
    _dir: tempfile::TempDir,
}

impl TestDb {
    pub async fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        match std::env::var("TEST_DATABASE_URL") {
            Ok(admin_url) if !admin_url.is_empty() => {
                ANNOUNCE.call_once(|| announce(&format!("tests run on PostgreSQL ({admin_url})")));
                let name = format!("t_{}", uuid::Uuid::new_v4().simple());
                let admin = Database::connect(&admin_url)
                    .await
                    .expect("connect to TEST_DATABASE_URL");
                admin
                    .execute_unprepared(&format!("CREATE DATABASE {name}"))
                    .await
                    .expect("create test database");
                admin.close().await.ok();
                let base = admin_url
                    .rsplit_once('/')
                    .map(|(base, _)| base)
                    .expect("TEST_DATABASE_URL ends with /<database>");
                Self {
                    url: format!("{base}/{name}"),
                    postgres: Some((admin_url, name)),
                    _dir: dir,
                }
            }
            _ => {
                ANNOUNCE.call_once(|| {
                    announce("TEST_DATABASE_URL is not set: tests run on SQLite files")
                });
                let path = dir.path().join("centralino.db");
                Self {
                    url: format!("sqlite://{}?mode=rwc", path.display()),
                    postgres: None,
                    _dir: dir,
                }
            }
        }
    }

    /// The same database again, for a second server; only the first drops it.
    pub fn shared(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            postgres: None,
            _dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// Every order row, in id order: to prove that a failed call changed nothing.
    pub async fn orders_snapshot(&self) -> Vec<order::Model> {
        let db = Database::connect(&self.url).await.expect("connect");
        let rows = order::Entity::find()
            .order_by_asc(order::Column::Id)
            .all(&db)
            .await
            .expect("read orders");
        db.close().await.ok();
        rows
    }

    pub async fn drop_database(&self) {
        if let Some((admin_url, name)) = &self.postgres
            && let Ok(admin) = Database::connect(admin_url).await
        {
            admin
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await
                .ok();
            admin.close().await.ok();
        }
    }
}

/// A running server and what it takes to talk to it.
pub struct TestApp {
    pub db: TestDb,
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    /// How the server's report committers have been committing.
    pub report_batches: std::sync::Arc<centralino_server::services::calls::ReportBatches>,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
    _work: tempfile::TempDir,
}

impl TestApp {
    /// A server with admin, service and ingest keys.
    pub async fn spawn() -> Self {
        Self::spawn_on(TestDb::new().await, &[]).await
    }

    /// A server on `db` with the standard keys plus `extra` ROLE=KEY entries.
    pub async fn spawn_on(db: TestDb, extra: &[String]) -> Self {
        Self::spawn_full(db, extra, Vec::new()).await
    }

    /// The standard keys plus `extra_keys`, and more flags.
    pub async fn spawn_full(db: TestDb, extra: &[String], mut args: Vec<String>) -> Self {
        let mut keys = vec![
            format!("admin={ADMIN_KEY}"),
            format!("service={SERVICE_KEY}"),
            format!("ingest={INGEST_KEY}"),
        ];
        keys.extend_from_slice(extra);
        args.extend(["--api-keys".to_owned(), keys.join(",")]);
        Self::spawn_with_args(db, args).await
    }

    /// A server with exactly these extra flags (no keys unless given).
    pub async fn spawn_with_args(db: TestDb, extra_args: Vec<String>) -> Self {
        init_logs();
        let work = tempfile::tempdir().expect("temp dir");
        let mut args = vec![
            "--database-url".to_owned(),
            db.url.clone(),
            "--grpc-addr".to_owned(),
            "127.0.0.1:0".to_owned(),
            "--http-addr".to_owned(),
            "127.0.0.1:0".to_owned(),
            "--admin-key-file".to_owned(),
            work.path().join("admin.key").display().to_string(),
            "--db-max-connections".to_owned(),
            "5".to_owned(),
        ];
        args.extend(extra_args);
        let config = Config::from_args(args).expect("test config");
        let app = Application::build(config).await.expect("server starts");
        let grpc_addr = app.grpc_addr();
        let http_addr = app.http_addr();
        let report_batches = app.report_batches();
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        let task = tokio::spawn(async move {
            app.run_until_stopped(stop).await.expect("server runs");
        });
        Self {
            db,
            grpc_addr,
            http_addr,
            report_batches,
            shutdown,
            task,
            _work: work,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.grpc_addr)
    }

    pub async fn client(&self, key: &str) -> Client {
        Client::builder(self.endpoint(), key)
            .timeout(Duration::from_secs(20))
            .connect()
            .await
            .expect("SDK connects")
    }

    pub async fn admin(&self) -> Client {
        self.client(ADMIN_KEY).await
    }

    /// Stops the server and waits for it; the database is kept.
    pub async fn stop(self) -> TestDb {
        self.shutdown.cancel();
        self.task.await.expect("server task");
        self.db
    }

    /// Stops the server and drops its database.
    pub async fn finish(self) {
        let db = self.stop().await;
        db.drop_database().await;
    }
}

fn init_logs() {
    // Logs only when asked: `TEST_LOG=1 cargo test`.
    if std::env::var_os("TEST_LOG").is_some() {
        centralino_server::telemetry::init(&centralino_server::config::LogConfig {
            filter: "info".to_owned(),
            log_format: centralino_server::config::LogFormat::Text,
        });
    }
}

/// A complete, valid order.
pub fn sample_order(name: &str) -> proto::Order {
    proto::Order {
        display_name: name.to_owned(),
        brand: "Tempocasa".to_owned(),
        contact: Some(proto::Contact {
            name: "Gianluca Verdi".to_owned(),
            email: "gianluca@tempocasa-isola.it".to_owned(),
            phone: "+393471234567".to_owned(),
        }),
        landline_number: "02 1234 5678".to_owned(),
        carrier: proto::Carrier::Tim as i32,
        vapi_assistant_id: "3f1c2a9e-7b4d-4e8f-9a6b-1c2d3e4f5a6b".to_owned(),
        default_agent: Some(proto::Agent {
            name: "Giulia Rossi".to_owned(),
            whatsapp_number: "+393331234567".to_owned(),
        }),
        zones: vec![proto::RoutingZone {
            name: "Isola".to_owned(),
            postcodes: vec!["20159".to_owned()],
            keywords: vec!["Isola".to_owned(), "Garibaldi".to_owned()],
            agent: Some(proto::Agent {
                name: "Marco Bianchi".to_owned(),
                whatsapp_number: "+393339876543".to_owned(),
            }),
        }],
        ..Default::default()
    }
}

/// The field paths of an INVALID_ARGUMENT's BadRequest details.
pub fn violated_fields(status: &tonic::Status) -> Vec<String> {
    use tonic_types::StatusExt;
    status
        .get_details_bad_request()
        .map(|bad| bad.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

/// The ErrorInfo reason of a status, if any.
pub fn reason(status: &tonic::Status) -> Option<String> {
    use tonic_types::StatusExt;
    status.get_details_error_info().map(|info| info.reason)
}

/// Polls `check` until it returns Some, or panics after `seconds`.
pub async fn eventually<T, F, Fut>(seconds: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {seconds} s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Posts every body to `app`'s Vapi webhook with `secret`, `parallel` at a
/// time; each must answer 200 (the answer's body is shown if not).
pub async fn post_vapi_all(
    app: &TestApp,
    secret: &'static str,
    bodies: Vec<serde_json::Value>,
    parallel: usize,
) {
    let http = reqwest::Client::new();
    let url = format!("http://{}/webhooks/vapi", app.http_addr);
    let limit = std::sync::Arc::new(tokio::sync::Semaphore::new(parallel));
    let mut tasks = Vec::new();
    for body in bodies {
        let (http, url) = (http.clone(), url.clone());
        let permit = limit.clone().acquire_owned().await.unwrap();
        tasks.push(tokio::spawn(async move {
            let response = http
                .post(url)
                .header("X-Vapi-Secret", secret)
                .json(&body)
                .send()
                .await
                .unwrap();
            drop(permit);
            (response.status().as_u16(), response.text().await.unwrap())
        }));
    }
    for task in tasks {
        let (status, answer) = task.await.unwrap();
        assert_eq!(status, 200, "{answer}");
    }
}
