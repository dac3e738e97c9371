//! Real `centralino` processes and the WhatsApp outbox. Two dispatchers on
//! one PostgreSQL send each of 500 waiting notifications exactly once; a
//! dispatcher killed right after claiming leaves the row to the next process
//! once its lease runs out. A wiremock Twilio stands in for the Messages API
//! and records every message it is asked to create.
//!
//! The first test needs PostgreSQL (TEST_DATABASE_URL; it says so and skips
//! without it); the second runs on a SQLite file, or on PostgreSQL when
//! TEST_DATABASE_URL is set.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    fs::File,
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use base64::Engine;
use centralino_sdk::{Client, proto};
use centralino_server::store::entities::{notification, notification_attempt};
use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, Database, DatabaseConnection, EntityTrait, PaginatorTrait,
    QueryFilter, QuerySelect,
};
use serde_json::{Value, json};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate, matchers::any};

const KEY: &str = "dispatcher-test-admin-key-0001";
const WEBHOOK_SECRET: &str = "dispatcher-test-vapi-webhook-secret";
const PUBLIC_URL: &str = "https://centralino.test";
const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "dispatcher-test-twilio-auth-token";
const TEMPLATE: &str = "HX0123456789abcdef0123456789abcdef";
/// The order's own number: the sender of its messages.
const NUMBER: &str = "+390212345678";
/// The order's default agent: the recipient (no zones, so no other route).
const AGENT: &str = "+393331234567";
const ACCEPTED: &str = "WhatsApp message accepted by Twilio";
const CRASH_HOOK: &str = "test hook: aborting after a claim";

/// Straight to stderr: the harness captures eprintln! of passing tests.
fn say(line: &str) {
    use std::io::Write;
    writeln!(std::io::stderr(), "{line}").ok();
}

// --- A fake Twilio Messages API -------------------------------------------

/// One `POST …/Messages.json`, as the fake received and answered it.
#[derive(Clone, Debug)]
struct Posted {
    form: HashMap<String, String>,
    reply: Value,
    at: DateTime<Utc>,
}

#[derive(Default)]
struct TwilioState {
    posted: Vec<Posted>,
    /// Every other request: (method, path).
    other: Vec<(String, String)>,
}

struct TwilioResponder {
    state: Arc<Mutex<TwilioState>>,
    /// How long each create takes, so that two dispatchers overlap.
    delay: Duration,
}

fn twilio_error(status: u16, code: u32, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({
        "code": code, "message": message, "status": status,
        "more_info": format!("https://www.twilio.com/docs/errors/{code}")
    }))
}

impl Respond for TwilioResponder {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let mut state = self.state.lock().unwrap();
        let method = request.method.as_str().to_owned();
        let path = request.url.path().to_owned();
        let messages = format!("/2010-04-01/Accounts/{ACCOUNT}/Messages.json");
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{ACCOUNT}:{TOKEN}"))
        );
        let authorized = request
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            == Some(basic.as_str());
        if !authorized || path != messages {
            state.other.push((method, path));
            return if authorized {
                twilio_error(404, 20404, "The requested resource was not found")
            } else {
                twilio_error(401, 20003, "Authenticate")
            };
        }
        match method.as_str() {
            "POST" => {
                let form: HashMap<String, String> = url::form_urlencoded::parse(&request.body)
                    .into_owned()
                    .collect();
                let sid = format!("SM{}", uuid::Uuid::new_v4().simple());
                let now = Utc::now();
                let reply = json!({
                    "sid": sid,
                    "account_sid": ACCOUNT,
                    "status": "queued",
                    "from": form.get("From"),
                    "to": form.get("To"),
                    "body": form.get("Body").cloned().unwrap_or_default(),
                    "direction": "outbound-api",
                    "num_segments": "1",
                    "error_code": null,
                    "error_message": null,
                    "date_created": now.to_rfc2822(),
                    "date_updated": now.to_rfc2822(),
                    "date_sent": null,
                    "uri": format!("/2010-04-01/Accounts/{ACCOUNT}/Messages/{sid}.json"),
                });
                state.posted.push(Posted {
                    form,
                    reply: reply.clone(),
                    at: now,
                });
                ResponseTemplate::new(201)
                    .set_body_json(reply)
                    .set_delay(self.delay)
            }
            // The lookup a dispatcher makes for a create whose answer it
            // lost: answered truthfully from what was created here.
            "GET" => {
                let query: HashMap<String, String> =
                    request.url.query_pairs().into_owned().collect();
                let found: Vec<Value> = state
                    .posted
                    .iter()
                    .rev()
                    .filter(|p| {
                        p.form.get("From") == query.get("From")
                            && p.form.get("To") == query.get("To")
                    })
                    .map(|p| p.reply.clone())
                    .collect();
                state.other.push((method, path));
                ResponseTemplate::new(200)
                    .set_body_json(json!({"messages": found, "next_page_uri": null}))
            }
            _ => {
                state.other.push((method, path));
                twilio_error(405, 20004, "Method not allowed")
            }
        }
    }
}

struct FakeTwilio {
    server: MockServer,
    state: Arc<Mutex<TwilioState>>,
}

impl FakeTwilio {
    async fn start(delay: Duration) -> Self {
        let server = MockServer::start().await;
        let state = Arc::new(Mutex::new(TwilioState::default()));
        Mock::given(any())
            .respond_with(TwilioResponder {
                state: state.clone(),
                delay,
            })
            .mount(&server)
            .await;
        Self { server, state }
    }

    fn posted(&self) -> Vec<Posted> {
        self.state.lock().unwrap().posted.clone()
    }

    fn posted_count(&self) -> usize {
        self.state.lock().unwrap().posted.len()
    }

    fn other(&self) -> Vec<(String, String)> {
        self.state.lock().unwrap().other.clone()
    }

    /// Flags that point a process at this fake.
    fn args(&self) -> Vec<String> {
        [
            "--twilio-account-sid",
            ACCOUNT,
            "--twilio-auth-token",
            TOKEN,
            "--twilio-base-url",
            &self.server.uri(),
            "--provider-retry-min-ms",
            "1",
            "--provider-timeout-ms",
            "2000",
        ]
        .map(str::to_owned)
        .to_vec()
    }
}

// --- Databases and processes ------------------------------------------------

/// A database of the test's own, and a directory for keys and logs.
struct TestDb {
    url: String,
    /// PostgreSQL: the admin URL and the database to drop at the end.
    postgres: Option<(String, String)>,
    dir: tempfile::TempDir,
}

impl TestDb {
    /// A fresh PostgreSQL database, or None when TEST_DATABASE_URL is unset.
    async fn postgres() -> Option<Self> {
        let admin_url = std::env::var("TEST_DATABASE_URL")
            .ok()
            .filter(|u| !u.is_empty())?;
        let name = format!("t_{}", uuid::Uuid::new_v4().simple());
        let admin = Database::connect(&admin_url)
            .await
            .expect("connect to TEST_DATABASE_URL");
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create the test database");
        admin.close().await.ok();
        let base = admin_url
            .rsplit_once('/')
            .map(|(base, _)| base.to_owned())
            .expect("TEST_DATABASE_URL ends with /<database>");
        Some(Self {
            url: format!("{base}/{name}"),
            postgres: Some((admin_url, name)),
            dir: tempfile::tempdir().expect("temp dir"),
        })
    }

    /// PostgreSQL when TEST_DATABASE_URL is set, else a SQLite file.
    async fn any() -> Self {
        if let Some(db) = Self::postgres().await {
            return db;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        Self {
            url: format!("sqlite://{}?mode=rwc", dir.path().join("c.db").display()),
            postgres: None,
            dir,
        }
    }

    fn backend(&self) -> &'static str {
        if self.postgres.is_some() {
            "PostgreSQL"
        } else {
            "SQLite"
        }
    }

    async fn connect(&self) -> DatabaseConnection {
        Database::connect(&self.url)
            .await
            .expect("the test connects to its database")
    }

    async fn drop_database(&self) {
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

struct Server {
    name: String,
    child: Child,
    grpc: String,
    http: String,
    /// Its JSON log (the process logs to stdout).
    log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        // SIGKILL is fine: every process here is done when it is dropped.
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Starts `centralino serve` on `db` with `extra` flags and `env`, without
/// waiting for it.
fn spawn(db: &TestDb, name: &str, extra: &[String], env: &[(&str, &str)]) -> Server {
    let dir = db.dir.path();
    let grpc = free_port();
    let http = free_port();
    let log = dir.join(format!("{name}.log"));
    let mut command = Command::new(env!("CARGO_BIN_EXE_centralino"));
    command
        .args([
            "serve",
            "--database-url",
            &db.url,
            "--grpc-addr",
            &format!("127.0.0.1:{grpc}"),
            "--http-addr",
            &format!("127.0.0.1:{http}"),
            "--api-keys",
            &format!("admin={KEY}"),
            "--admin-key-file",
            &dir.join("admin.key").display().to_string(),
            "--public-url",
            PUBLIC_URL,
            "--vapi-webhook-secret",
            WEBHOOK_SECRET,
            "--twilio-whatsapp-template-sid",
            TEMPLATE,
        ])
        .args(extra);
    // Only what this test gives: nothing from the caller's environment.
    for var in [
        "RUST_LOG",
        "DATABASE_URL",
        "TWILIO_ACCOUNT_SID",
        "TWILIO_AUTH_TOKEN",
        "TWILIO_API_KEY",
        "TWILIO_API_SECRET",
        "VAPI_API_KEY",
        "CENTRALINO_TEST_CRASH_AFTER_CLAIM",
    ] {
        command.env_remove(var);
    }
    let child = command
        .env("CENTRALINO_LOG", "info")
        .env("CENTRALINO_LOG_FORMAT", "json")
        .envs(env.iter().copied())
        .stdout(File::create(&log).expect("log file"))
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the centralino binary starts");
    Server {
        name: name.to_owned(),
        child,
        grpc: format!("http://127.0.0.1:{grpc}"),
        http: format!("http://127.0.0.1:{http}"),
        log,
    }
}

impl Server {
    /// Waits until it answers gRPC (both listeners are bound by then).
    async fn ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                panic!(
                    "{} exited while starting ({status}); its log:\n{}",
                    self.name,
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            if let Ok(client) = Client::connect(self.grpc.clone(), KEY).await
                && client
                    .orders()
                    .list_orders(Default::default())
                    .await
                    .is_ok()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not become ready",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for the process to exit on its own.
    async fn exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} still runs after {within:?}",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn client(&self) -> Client {
        Client::connect(self.grpc.clone(), KEY)
            .await
            .expect("SDK connects")
    }

    /// Its log, one JSON object per line.
    fn log_lines(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// The notifications this process says Twilio accepted.
    fn accepted(&self) -> Vec<String> {
        self.log_lines()
            .into_iter()
            .filter(|l| l["message"] == ACCEPTED)
            .filter_map(|l| l["notification_id"].as_str().map(str::to_owned))
            .collect()
    }
}

// --- Orders, reports, the outbox --------------------------------------------

/// An order with a default agent and no zones, holding NUMBER.
async fn order_with_number(client: &Client) -> String {
    let order = client
        .orders()
        .create_order(proto::Order {
            display_name: "Tempocasa Isola".to_owned(),
            default_agent: Some(proto::Agent {
                name: "Giulia Rossi".to_owned(),
                whatsapp_number: AGENT.to_owned(),
            }),
            ..Default::default()
        })
        .await
        .expect("create the order");
    client
        .numbers()
        .assign_number(&order.id, NUMBER, "")
        .await
        .expect("assign the number");
    order.id
}

/// The summary of report `i`; its template variable {{4}}.
fn summary(i: usize) -> String {
    format!("Il cliente vuole vendere il suo trilocale (report-{i:04}).")
}

/// Vapi's end-of-call report of call `i` to NUMBER. The call starts now:
/// a call belongs to whoever held the number when it started.
fn report(i: usize) -> Value {
    let started = Utc::now();
    let ended = started + chrono::TimeDelta::seconds(90);
    json!({"message": {
        "type": "end-of-call-report",
        "timestamp": ended.timestamp_millis(),
        "endedReason": "customer-ended-call",
        "startedAt": started.to_rfc3339(),
        "endedAt": ended.to_rfc3339(),
        "cost": 0.2,
        "call": {
            "id": format!("call-{i:04}-{}", uuid::Uuid::new_v4().simple()),
            "type": "inboundPhoneCall",
            "phoneNumberId": "7c2a1e9b-0000-4000-8000-000000000000"
        },
        "phoneNumber": {"number": NUMBER},
        "customer": {"number": format!("+39347{:07}", 1_000_000 + i)},
        "analysis": {"summary": summary(i), "structuredData": {}, "successEvaluation": "true"}
    }})
}

/// Posts reports `0..count` to `server`'s /webhooks/vapi, `concurrency` at a
/// time; each must be recorded as a new call of a known order.
async fn post_reports(server: &Server, count: usize, concurrency: usize) {
    let http = reqwest::Client::new();
    let url = format!("{}/webhooks/vapi", server.http);
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (http, url, next) = (http.clone(), url.clone(), next.clone());
        workers.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return;
                }
                let response = http
                    .post(&url)
                    .header("X-Vapi-Secret", WEBHOOK_SECRET)
                    .json(&report(i))
                    .send()
                    .await
                    .expect("the webhook answers");
                let status = response.status();
                let body: Value = response.json().await.unwrap_or(Value::Null);
                assert_eq!(status, 200, "report {i}: {body}");
                assert_eq!(body["orphan"], false, "report {i} found its order: {body}");
                assert_eq!(body["replay"], false, "report {i} is new: {body}");
            }
        });
    }
    while let Some(done) = workers.join_next().await {
        done.expect("a report poster");
    }
}

async fn all_notifications(db: &DatabaseConnection) -> Vec<notification::Model> {
    notification::Entity::find()
        .all(db)
        .await
        .expect("read notifications")
}

async fn count_in(db: &DatabaseConnection, status: &str) -> u64 {
    notification::Entity::find()
        .filter(notification::Column::Status.eq(status))
        .count(db)
        .await
        .expect("count notifications")
}

/// The most rows one lease owner (one process) holds right now.
async fn most_leases_held(db: &DatabaseConnection) -> usize {
    let owners: Vec<Option<String>> = notification::Entity::find()
        .select_only()
        .column(notification::Column::LeaseOwner)
        .filter(notification::Column::LeaseOwner.is_not_null())
        .into_tuple()
        .all(db)
        .await
        .expect("read leases");
    let mut held: HashMap<String, usize> = HashMap::new();
    for owner in owners.into_iter().flatten() {
        *held.entry(owner).or_default() += 1;
    }
    held.into_values().max().unwrap_or(0)
}

/// Polls `check` until it returns Some, or panics after `within`.
async fn eventually<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The report a message was sent for, from its template variable {{4}}.
fn report_of(posted: &Posted) -> usize {
    let variables: Value = serde_json::from_str(
        posted
            .form
            .get("ContentVariables")
            .expect("a template message carries ContentVariables"),
    )
    .expect("ContentVariables is JSON");
    let text = variables["4"].as_str().expect("{{4}} is the summary");
    let i = text
        .split_once("(report-")
        .and_then(|(_, rest)| rest.get(..4))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no report marker in {{4}}: {text:?}"));
    assert_eq!(text, summary(i), "{{4}} is the call's summary as reported");
    i
}

/// What every message of these tests must look like.
fn assert_sent_as_the_template(posted: &Posted) {
    let field = |name: &str| posted.form.get(name).map(String::as_str);
    assert_eq!(field("From"), Some(format!("whatsapp:{NUMBER}").as_str()));
    assert_eq!(field("To"), Some(format!("whatsapp:{AGENT}").as_str()));
    assert_eq!(field("ContentSid"), Some(TEMPLATE));
    assert_eq!(field("Body"), None, "a template message has no Body");
    let callback = field("StatusCallback").unwrap_or_default();
    assert!(
        callback.starts_with(&format!("{PUBLIC_URL}/webhooks/twilio/status?n=")),
        "the status callback names its notification and attempt: {callback}"
    );
}

// --- The tests ----------------------------------------------------------------

#[tokio::test]
async fn two_dispatcher_processes_on_one_postgresql_send_each_of_500_notifications_exactly_once() {
    const REPORTS: usize = 500;
    const CONCURRENCY: usize = 16;
    let Some(db) = TestDb::postgres().await else {
        say(
            "skipped two_dispatcher_processes_on_one_postgresql...: TEST_DATABASE_URL is not set (several processes on one database need PostgreSQL)",
        );
        return;
    };
    let started = Instant::now();
    // Each create takes a little while, so that both dispatchers are busy
    // at once rather than one finishing before the other has started.
    let twilio = FakeTwilio::start(Duration::from_millis(20)).await;

    // A process without Twilio: the order, its number (no Twilio lookup
    // without credentials) and 500 reports, whose messages wait.
    let db_conn = {
        let mut p1 = spawn(&db, "p1-no-twilio", &[], &[]);
        p1.ready().await;
        order_with_number(&p1.client().await).await;
        post_reports(&p1, REPORTS, 16).await;
        let conn = db.connect().await;
        let rows = all_notifications(&conn).await;
        assert_eq!(rows.len(), REPORTS, "one notification per report");
        for row in &rows {
            assert_eq!(row.status, "PENDING", "{row:?}");
            assert_eq!(
                row.reason_code.as_deref(),
                Some("TWILIO_NOT_CONFIGURED"),
                "{row:?}"
            );
            assert_eq!(row.lease_owner, None, "nobody claimed it: {row:?}");
        }
        conn
    };
    assert_eq!(twilio.posted_count(), 0, "nothing was sent without Twilio");

    // Two processes with Twilio, started together, drain the outbox.
    let flags: Vec<String> = twilio
        .args()
        .into_iter()
        .chain([
            "--notify-sweep-ms".to_owned(),
            "50".to_owned(),
            "--notify-concurrency".to_owned(),
            CONCURRENCY.to_string(),
        ])
        .collect();
    let mut p2 = spawn(&db, "p2", &flags, &[]);
    let mut p3 = spawn(&db, "p3", &flags, &[]);
    tokio::join!(p2.ready(), p3.ready());
    // Meanwhile, no dispatcher holds more rows than it can send at once: a
    // claim takes only what the free permits allow.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let held = most_leases_held(&db_conn).await;
        assert!(
            held <= CONCURRENCY,
            "one process holds {held} leases at once, more than --notify-concurrency {CONCURRENCY}"
        );
        let sent = count_in(&db_conn, "SENT").await;
        if twilio.posted_count() >= REPORTS && sent == REPORTS as u64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "timed out: {} messages posted, {sent} notifications SENT",
            twilio.posted_count()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // A duplicate would come from a second claim of a row already handled:
    // give both dispatchers ten more sweeps to make one.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let posted = twilio.posted();
    assert_eq!(posted.len(), REPORTS, "exactly one create per notification");
    let mut per_report = vec![0; REPORTS];
    for message in &posted {
        assert_sent_as_the_template(message);
        per_report[report_of(message)] += 1;
    }
    let wrong: Vec<(usize, i32)> = per_report
        .iter()
        .enumerate()
        .filter(|(_, n)| **n != 1)
        .map(|(i, n)| (i, *n))
        .collect();
    assert!(
        wrong.is_empty(),
        "(report, messages) not sent once: {wrong:?}"
    );

    // The outbox agrees: one attempt each, each with its own Twilio SID.
    let sids: HashSet<String> = posted
        .iter()
        .map(|p| p.reply["sid"].as_str().unwrap().to_owned())
        .collect();
    let rows = all_notifications(&db_conn).await;
    for row in &rows {
        assert_eq!(row.status, "SENT", "{row:?}");
        assert_eq!(row.attempts, 1, "{row:?}");
        assert_eq!(row.lease_owner, None, "the lease was released: {row:?}");
        assert!(
            row.message_sid.as_ref().is_some_and(|s| sids.contains(s)),
            "{row:?}"
        );
    }
    let distinct: HashSet<_> = rows.iter().map(|r| r.message_sid.clone()).collect();
    assert_eq!(distinct.len(), REPORTS, "no SID recorded twice");
    let attempts = notification_attempt::Entity::find()
        .count(&db_conn)
        .await
        .unwrap();
    assert_eq!(attempts, REPORTS as u64, "one attempt per notification");

    // Who sent what, from the processes' own logs.
    let (by_p2, by_p3) = (p2.accepted(), p3.accepted());
    let mut by_anyone: BTreeMap<&str, usize> = BTreeMap::new();
    for id in by_p2.iter().chain(&by_p3) {
        *by_anyone.entry(id).or_default() += 1;
    }
    assert_eq!(by_anyone.len(), REPORTS, "every notification was sent");
    assert!(
        by_anyone.values().all(|n| *n == 1),
        "no notification was sent by both processes"
    );
    assert!(
        !by_p2.is_empty() && !by_p3.is_empty(),
        "both dispatchers sent some ({} by p2, {} by p3)",
        by_p2.len(),
        by_p3.len()
    );
    say(&format!(
        "two dispatchers: {} sent by p2, {} by p3, in {:.1} s (lookups and other requests at the fake: {})",
        by_p2.len(),
        by_p3.len(),
        started.elapsed().as_secs_f64(),
        twilio.other().len()
    ));

    drop((p2, p3));
    db_conn.close().await.ok();
    db.drop_database().await;
}

#[tokio::test]
async fn a_dispatcher_killed_after_claiming_leaves_the_row_to_be_claimed_again_after_its_lease_and_sent_once()
 {
    let db = TestDb::any().await;
    let started = Instant::now();
    let twilio = FakeTwilio::start(Duration::ZERO).await;

    // A process without Twilio records the order, its number and one report;
    // the message waits for a process that can send it.
    {
        let mut setup = spawn(&db, "setup", &[], &[]);
        setup.ready().await;
        order_with_number(&setup.client().await).await;
        post_reports(&setup, 1, 1).await;
    }
    let conn = db.connect().await;
    let [waiting] = <[_; 1]>::try_from(all_notifications(&conn).await).expect("one notification");
    assert_eq!(waiting.status, "PENDING");
    assert_eq!(waiting.lease_owner, None);

    let flags: Vec<String> = twilio
        .args()
        .into_iter()
        .chain(["--notify-sweep-ms", "50", "--notify-lease-ms", "1500"].map(str::to_owned))
        .collect();

    // A claims the row as soon as its dispatcher starts, and dies.
    let mut a = spawn(
        &db,
        "a-crashes",
        &flags,
        &[("CENTRALINO_TEST_CRASH_AFTER_CLAIM", "true")],
    );
    let status = a.exit(Duration::from_secs(30)).await;
    assert!(!status.success(), "A was aborted: {status}");
    assert!(
        a.log_lines().iter().any(|l| l["message"] == CRASH_HOOK),
        "A died in the crash hook, after claiming: {status}"
    );
    assert_eq!(twilio.posted_count(), 0, "A sent nothing");
    let claimed = notification::Entity::find_by_id(waiting.id.clone())
        .one(&conn)
        .await
        .unwrap()
        .expect("the row");
    assert_eq!(claimed.status, "PENDING", "{claimed:?}");
    assert_eq!(claimed.attempts, 0, "{claimed:?}");
    assert!(
        claimed
            .lease_owner
            .as_deref()
            .is_some_and(|o| o.starts_with("notify-")),
        "A's lease is on the row: {claimed:?}"
    );
    let lease_until = claimed.lease_until.expect("a lease end");

    // B takes the row over once A's lease has run out, and sends it once.
    let mut b = spawn(&db, "b", &flags, &[]);
    b.ready().await;
    let sent = eventually(Duration::from_secs(30), "the notification SENT", || async {
        notification::Entity::find_by_id(waiting.id.clone())
            .one(&conn)
            .await
            .unwrap()
            .filter(|row| row.status == "SENT")
    })
    .await;
    // As in the other test: a few more sweeps in which a duplicate could go out.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let posted = twilio.posted();
    assert_eq!(posted.len(), 1, "exactly one message: {posted:#?}");
    let message = &posted[0];
    assert_sent_as_the_template(message);
    assert_eq!(report_of(message), 0);
    assert!(
        message.at >= lease_until,
        "sent at {} only after A's lease ended at {lease_until}",
        message.at
    );
    assert_eq!(sent.attempts, 1, "{sent:?}");
    assert_eq!(sent.lease_owner, None, "{sent:?}");
    assert_eq!(
        sent.message_sid.as_deref(),
        message.reply["sid"].as_str(),
        "{sent:?}"
    );
    assert_eq!(b.accepted(), vec![waiting.id.clone()], "B sent it");
    say(&format!(
        "crash after claim ({}): re-sent {} ms after the lease ended; {:.1} s in all",
        db.backend(),
        (message.at - lease_until).num_milliseconds(),
        started.elapsed().as_secs_f64()
    ));

    drop(b);
    conn.close().await.ok();
    db.drop_database().await;
}
