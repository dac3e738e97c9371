//! WhatsApp notification benchmark: end-of-call reports posted over HTTP to
//! the real server in-process (SQLite by default, PostgreSQL with
//! `BENCH_DATABASE_URL`, a fresh database per run), the dispatcher sending to
//! a fake Twilio on loopback that records when each message arrives. Prints
//! Markdown tables for docs/PERFORMANCE.md.
//!
//! 1. Latency, report → Twilio request, at a steady 100 reports/s.
//! 2. Drain rate of a backlog written while Twilio was not configured, by a
//!    server started afterwards with Twilio configured.
//!
//! `cargo bench -p centralino-server --bench notifications`
//! Knobs: BENCH_SECONDS (latency run, default 10), BENCH_RATE (reports/s,
//! default 100), BENCH_BACKLOG (default 10000), BENCH_NOTIFY_CONCURRENCY
//! (the dispatcher's `--notify-concurrency`, default 16).

use std::{
    collections::HashMap,
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use axum::{
    Json, Router,
    body::Bytes,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::post,
    serve::ListenerExt,
};
use centralino_sdk::{Client, proto};
use centralino_server::{Application, Config};
use sea_orm::ConnectionTrait;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const KEY: &str = "bench-admin-key-000000000001";
const SECRET: &str = "bench-webhook-secret";
const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "bench-twilio-auth-token";
const TEMPLATE: &str = "HX0123456789abcdef0123456789abcdef";
const NUMBER: &str = "+390211112222";
const AGENT: &str = "+393471234567";
/// The summary starts with this and the report's number; the template's
/// `{{4}}` (summary) carries it to the fake.
const MARKER: &str = "BENCH";

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

// ---------------------------------------------------------------- fake Twilio

/// One Messages.json request as the fake saw it.
struct Hit {
    wall: SystemTime,
    at: Instant,
    marker: Option<u64>,
}

#[derive(Clone, Default)]
struct FakeTwilio {
    hits: Arc<Mutex<Vec<Hit>>>,
    count: Arc<AtomicUsize>,
    /// Requests to anything but Messages.json (none expected).
    other: Arc<AtomicUsize>,
}

impl FakeTwilio {
    async fn start() -> (Self, String) {
        let fake = Self::default();
        let router = Router::new()
            .route(
                "/2010-04-01/Accounts/{account}/Messages.json",
                post(messages),
            )
            .fallback(other)
            .with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("fake Twilio binds");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        tokio::spawn(async move { axum::serve(listener, router).await });
        (fake, url)
    }

    fn reset(&self) {
        self.hits.lock().unwrap().clear();
        self.count.store(0, Ordering::SeqCst);
    }

    fn take(&self) -> Vec<Hit> {
        std::mem::take(&mut *self.hits.lock().unwrap())
    }

    /// Waits until `n` messages arrived; false after `timeout`.
    async fn wait_for(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.count.load(Ordering::SeqCst) < n {
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        true
    }
}

fn marker_in(text: &str) -> Option<u64> {
    let rest = &text[text.find(MARKER)? + MARKER.len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

async fn messages(State(fake): State<FakeTwilio>, body: Bytes) -> Response {
    let wall = SystemTime::now();
    let at = Instant::now();
    let mut marker = None;
    let (mut from, mut to) = (String::new(), String::new());
    for (key, value) in url::form_urlencoded::parse(&body) {
        match key.as_ref() {
            "ContentVariables" => {
                marker = serde_json::from_str::<Value>(&value)
                    .ok()
                    .and_then(|v| v["4"].as_str().and_then(marker_in));
            }
            "Body" => marker = marker.or_else(|| marker_in(&value)),
            "From" => from = value.into_owned(),
            "To" => to = value.into_owned(),
            _ => {}
        }
    }
    fake.hits.lock().unwrap().push(Hit { wall, at, marker });
    fake.count.fetch_add(1, Ordering::SeqCst);
    let sid = format!("SM{}", uuid::Uuid::new_v4().simple());
    let now = chrono::Utc::now().to_rfc2822();
    (
        StatusCode::CREATED,
        Json(json!({
            "sid": sid, "account_sid": ACCOUNT, "from": from, "to": to,
            "body": "", "status": "queued", "num_segments": "1", "direction": "outbound-api",
            "date_created": now, "date_updated": now, "date_sent": null,
            "error_code": null, "error_message": null, "price": null, "api_version": "2010-04-01",
            "uri": format!("/2010-04-01/Accounts/{ACCOUNT}/Messages/{sid}.json")
        })),
    )
        .into_response()
}

async fn other(State(fake): State<FakeTwilio>) -> Response {
    fake.other.fetch_add(1, Ordering::SeqCst);
    (
        StatusCode::NOT_FOUND,
        Json(json!({"code": 20404, "message": "The requested resource was not found", "status": 404})),
    )
        .into_response()
}

// ------------------------------------------------------------------ databases

/// A database of its own for one run: a file in the temp dir on SQLite, a
/// `bench_<uuid>` database next to `BENCH_DATABASE_URL` on PostgreSQL.
struct Database {
    url: String,
    drop: Option<(String, String)>,
}

async fn fresh_database(base: Option<&str>, dir: &Path, name: &str) -> Database {
    let Some(base) = base else {
        return Database {
            url: format!("sqlite://{}?mode=rwc", dir.join(name).display()),
            drop: None,
        };
    };
    let db = format!("bench_{}", uuid::Uuid::new_v4().simple());
    let admin = sea_orm::Database::connect(base)
        .await
        .expect("BENCH_DATABASE_URL connects");
    admin
        .execute_unprepared(&format!("CREATE DATABASE {db}"))
        .await
        .expect("create the bench database");
    admin.close().await.ok();
    let mut url = url::Url::parse(base).expect("BENCH_DATABASE_URL is a URL");
    url.set_path(&format!("/{db}"));
    Database {
        url: url.to_string(),
        drop: Some((base.to_owned(), db)),
    }
}

impl Database {
    async fn remove(self) {
        if let Some((base, db)) = self.drop {
            let admin = sea_orm::Database::connect(&base).await.expect("connects");
            admin
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
                .await
                .expect("drop the bench database");
            admin.close().await.ok();
        }
    }
}

// --------------------------------------------------------------------- server

struct Server {
    client: Client,
    webhook: String,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

async fn start(database: &str, dir: &Path, twilio: Option<&str>, concurrency: usize) -> Server {
    let mut args = vec![
        "--database-url".to_owned(),
        database.to_owned(),
        "--grpc-addr".to_owned(),
        "127.0.0.1:0".to_owned(),
        "--http-addr".to_owned(),
        "127.0.0.1:0".to_owned(),
        "--api-keys".to_owned(),
        format!("admin={KEY}"),
        "--admin-key-file".to_owned(),
        dir.join("admin.key").display().to_string(),
        "--vapi-webhook-secret".to_owned(),
        SECRET.to_owned(),
        "--twilio-whatsapp-template-sid".to_owned(),
        TEMPLATE.to_owned(),
        "--notify-concurrency".to_owned(),
        concurrency.to_string(),
    ];
    if let Some(url) = twilio {
        args.extend(
            [
                "--twilio-account-sid",
                ACCOUNT,
                "--twilio-auth-token",
                TOKEN,
                "--twilio-base-url",
                url,
            ]
            .map(str::to_owned),
        );
    }
    let config = Config::from_args(args).expect("config");
    let app = Application::build(config).await.expect("server starts");
    let grpc = format!("http://{}", app.grpc_addr());
    let webhook = format!("http://{}/webhooks/vapi", app.http_addr());
    let stop = CancellationToken::new();
    let run = app.run_until_stopped(stop.clone());
    let task = tokio::spawn(async move { run.await.expect("server stops") });
    let client = Client::connect(grpc, KEY).await.expect("connect");
    Server {
        client,
        webhook,
        stop,
        task,
    }
}

impl Server {
    async fn stop(self) {
        self.stop.cancel();
        self.task.await.expect("server task");
    }
}

/// An order with a default agent (who never wrote, so messages go out as
/// the template) and its number.
async fn set_up_order(client: &Client) -> String {
    let order = client
        .orders()
        .create_order(proto::Order {
            display_name: "Agenzia Bench".to_owned(),
            vapi_assistant_id: "3f1c2a9e-7b4d-4e8f-9a6b-1c2d3e4f5a6b".to_owned(),
            default_agent: Some(proto::Agent {
                name: "Giulia Rossi".to_owned(),
                whatsapp_number: AGENT.to_owned(),
            }),
            ..Default::default()
        })
        .await
        .expect("order");
    // With the SID given, AssignNumber does not look the number up in Twilio.
    let sid = format!("PN{}", uuid::Uuid::new_v4().simple());
    client
        .numbers()
        .assign_number(&order.id, NUMBER, &sid)
        .await
        .expect("number");
    order.id
}

fn report(run: &str, n: u64) -> Value {
    json!({"message": {
        "type": "end-of-call-report",
        "endedReason": "customer-ended-call",
        "startedAt": chrono::Utc::now().to_rfc3339(),
        "endedAt": chrono::Utc::now().to_rfc3339(),
        "call": {"id": format!("nb-{run}-{n}"), "type": "inboundPhoneCall"},
        "phoneNumber": {"number": NUMBER},
        "customer": {"number": format!("+39347{:07}", n % 10_000_000)},
        "artifact": {"transcript": "AI: Buongiorno.\nUser: Vorrei vendere casa in zona Isola."},
        "analysis": {
            "summary": format!("{MARKER}{n} Vuole vendere casa in zona Isola."),
            "structuredData": {"nome": "Mario Rossi", "richiesta": "vendita", "cap": "20159"}
        }
    }})
}

async fn post_report(http: &reqwest::Client, url: &str, body: &Value) {
    let response = http
        .post(url)
        .header("X-Vapi-Secret", SECRET)
        .json(body)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    response.bytes().await.expect("body");
}

/// Every notification of the order, paged.
async fn notifications(
    client: &Client,
    order_id: &str,
    status: proto::NotificationStatus,
) -> Vec<proto::Notification> {
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .notifications()
            .list_notifications(proto::ListNotificationsRequest {
                order_id: order_id.to_owned(),
                status: status.into(),
                page_size: 200,
                page_token: token,
                ..Default::default()
            })
            .await
            .expect("ListNotifications")
            .into_inner();
        all.extend(page.notifications);
        if page.next_page_token.is_empty() {
            return all;
        }
        token = page.next_page_token;
    }
}

fn percentiles(mut ms: Vec<f64>) -> [f64; 4] {
    ms.sort_by(f64::total_cmp);
    let pct = |p: f64| ms[((ms.len() as f64 * p) as usize).min(ms.len() - 1)];
    [pct(0.50), pct(0.90), pct(0.99), ms[ms.len() - 1]]
}

fn millis_between(later: SystemTime, earlier: SystemTime) -> f64 {
    match later.duration_since(earlier) {
        Ok(d) => d.as_secs_f64() * 1000.0,
        Err(e) => -e.duration().as_secs_f64() * 1000.0,
    }
}

// -------------------------------------------------------------------- latency

struct Latency {
    posted: usize,
    post_rate: f64,
    /// created_at → Twilio request: an upper bound of commit → request.
    upper: [f64; 4],
    /// webhook answered → Twilio request: a lower bound (may be negative:
    /// the dispatcher is woken before the answer is written).
    lower: [f64; 4],
    duplicates: usize,
}

async fn latency(
    base: Option<&str>,
    dir: &Path,
    fake: &FakeTwilio,
    twilio: &str,
    seconds: u64,
    rate: u64,
    concurrency: usize,
) -> Latency {
    let database = fresh_database(base, dir, "latency.db").await;
    let server = start(&database.url, dir, Some(twilio), concurrency).await;
    let order_id = set_up_order(&server.client).await;
    let http = reqwest::Client::new();
    // Warm-up: connections, statement caches, first message.
    // Its markers are out of the measured range.
    for n in 0..5 {
        post_report(&http, &server.webhook, &report("warm", 1_000_000 + n)).await;
    }
    assert!(
        fake.wait_for(5, Duration::from_secs(10)).await,
        "warm-up sent"
    );
    fake.reset();

    let run = uuid::Uuid::new_v4().simple().to_string();
    let total = seconds * rate;
    let answered: Arc<Mutex<HashMap<u64, SystemTime>>> = Arc::default();
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    let mut tasks = Vec::new();
    let started = Instant::now();
    for n in 0..total {
        ticks.tick().await;
        let (http, url, answered, body) = (
            http.clone(),
            server.webhook.clone(),
            answered.clone(),
            report(&run, n),
        );
        tasks.push(tokio::spawn(async move {
            post_report(&http, &url, &body).await;
            answered.lock().unwrap().insert(n, SystemTime::now());
        }));
    }
    for task in tasks {
        task.await.expect("report task");
    }
    let post_rate = total as f64 / started.elapsed().as_secs_f64();
    assert!(
        fake.wait_for(total as usize, Duration::from_secs(60)).await,
        "every notification reached the fake Twilio"
    );
    let hits = fake.take();

    let created: HashMap<u64, SystemTime> = notifications(
        &server.client,
        &order_id,
        proto::NotificationStatus::Unspecified,
    )
    .await
    .into_iter()
    .filter_map(|n| {
        // Variables in the default order: agency, caller, request, summary, ….
        let marker = n.template_variables.get(3).and_then(|s| marker_in(s))?;
        let at = SystemTime::try_from(n.create_time?).ok()?;
        Some((marker, at))
    })
    .collect();
    let answered = std::mem::take(&mut *answered.lock().unwrap());
    let mut seen = std::collections::HashSet::new();
    let (mut upper, mut lower) = (Vec::new(), Vec::new());
    let mut duplicates = 0;
    for hit in &hits {
        let Some(marker) = hit.marker else { continue };
        if !seen.insert(marker) {
            duplicates += 1;
            continue;
        }
        if let (Some(created), Some(answered)) = (created.get(&marker), answered.get(&marker)) {
            upper.push(millis_between(hit.wall, *created));
            lower.push(millis_between(hit.wall, *answered));
        }
    }
    assert_eq!(
        upper.len() as u64,
        total,
        "every report matched its message"
    );
    server.stop().await;
    database.remove().await;
    Latency {
        posted: total as usize,
        post_rate,
        upper: percentiles(upper),
        lower: percentiles(lower),
        duplicates,
    }
}

// -------------------------------------------------------------------- backlog

struct Drain {
    build_rate: f64,
    ready: Duration,
    first: Duration,
    received: Duration,
    all_sent: Duration,
    steady_rate: f64,
    sent: usize,
}

async fn drain(
    base: Option<&str>,
    dir: &Path,
    fake: &FakeTwilio,
    twilio: &str,
    backlog: u64,
    concurrency: usize,
) -> Drain {
    let database = fresh_database(base, dir, "backlog.db").await;
    fake.reset();

    // The backlog: reports recorded while Twilio is not configured.
    let server = start(&database.url, dir, None, concurrency).await;
    let order_id = set_up_order(&server.client).await;
    let http = reqwest::Client::new();
    let next = Arc::new(AtomicU64::new(0));
    let run = uuid::Uuid::new_v4().simple().to_string();
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..16 {
        let (http, url, next, run) = (
            http.clone(),
            server.webhook.clone(),
            next.clone(),
            run.clone(),
        );
        workers.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= backlog {
                    break;
                }
                post_report(&http, &url, &report(&run, n)).await;
            }
        }));
    }
    for worker in workers {
        worker.await.expect("backlog worker");
    }
    let build_rate = backlog as f64 / started.elapsed().as_secs_f64();
    let pending = notifications(
        &server.client,
        &order_id,
        proto::NotificationStatus::Pending,
    )
    .await
    .len();
    assert_eq!(pending as u64, backlog, "the backlog waits as PENDING");
    assert_eq!(fake.count.load(Ordering::SeqCst), 0);
    server.stop().await;
    drop(http);

    // The drain: a server with Twilio configured, on the same database.
    fake.reset();
    let t0 = Instant::now();
    let server = start(&database.url, dir, Some(twilio), concurrency).await;
    let ready = t0.elapsed();
    assert!(
        fake.wait_for(backlog as usize, Duration::from_secs(900))
            .await,
        "the backlog reached the fake Twilio"
    );
    // Rows still PENDING are in flight (the answer is being recorded).
    loop {
        let page = server
            .client
            .notifications()
            .list_notifications(proto::ListNotificationsRequest {
                order_id: order_id.clone(),
                status: proto::NotificationStatus::Pending.into(),
                page_size: 1,
                ..Default::default()
            })
            .await
            .expect("ListNotifications")
            .into_inner();
        if page.notifications.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let all_sent = t0.elapsed();
    let hits = fake.take();
    let first = hits.iter().map(|h| h.at).min().expect("hits") - t0;
    let last = hits.iter().map(|h| h.at).max().expect("hits") - t0;
    let sent = notifications(&server.client, &order_id, proto::NotificationStatus::Sent)
        .await
        .len();
    assert_eq!(sent as u64, backlog, "every row is SENT");
    assert_eq!(hits.len() as u64, backlog, "no message was sent twice");
    server.stop().await;
    database.remove().await;
    Drain {
        build_rate,
        ready,
        first,
        received: last,
        all_sent,
        steady_rate: (backlog - 1) as f64 / (last - first).as_secs_f64(),
        sent,
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let dir = tempfile::tempdir().expect("temp dir");
        let base = std::env::var("BENCH_DATABASE_URL").ok();
        let backend = if base.is_some() {
            "PostgreSQL"
        } else {
            "SQLite"
        };
        let seconds: u64 = env_or("BENCH_SECONDS", 10);
        let rate: u64 = env_or("BENCH_RATE", 100);
        let backlog: u64 = env_or("BENCH_BACKLOG", 10_000);
        let concurrency: usize = env_or("BENCH_NOTIFY_CONCURRENCY", 16);
        let (fake, twilio) = FakeTwilio::start().await;

        let l = latency(
            base.as_deref(),
            dir.path(),
            &fake,
            &twilio,
            seconds,
            rate,
            concurrency,
        )
        .await;
        println!(
            "\nWhatsApp notifications on {backend}: latency at {rate} reports/s for {seconds} s \
             ({} reports, posted at {:.1}/s; dispatcher concurrency {concurrency}; duplicates {})\n",
            l.posted, l.post_rate, l.duplicates
        );
        println!("| report → Twilio request | p50 ms | p90 ms | p99 ms | max ms |");
        println!("|---|---:|---:|---:|---:|");
        for (name, [p50, p90, p99, max]) in [
            ("from created_at (upper bound)", l.upper),
            ("from webhook answer (lower bound)", l.lower),
        ] {
            println!("| {name} | {p50:.2} | {p90:.2} | {p99:.2} | {max:.2} |");
        }

        let d = drain(
            base.as_deref(),
            dir.path(),
            &fake,
            &twilio,
            backlog,
            concurrency,
        )
        .await;
        println!(
            "\nWhatsApp notifications on {backend}: drain of a {backlog}-row backlog \
             (built over HTTP at concurrency 16, {:.0} reports/s; dispatcher concurrency {concurrency})\n",
            d.build_rate
        );
        println!(
            "| rows | server start ms | first request ms | all received s | all SENT s | rows/s (start → all SENT) | rows/s (first → last request) |"
        );
        println!("|---:|---:|---:|---:|---:|---:|---:|");
        println!(
            "| {} | {:.0} | {:.0} | {:.2} | {:.2} | {:.0} | {:.0} |",
            d.sent,
            d.ready.as_secs_f64() * 1000.0,
            d.first.as_secs_f64() * 1000.0,
            d.received.as_secs_f64(),
            d.all_sent.as_secs_f64(),
            d.sent as f64 / d.all_sent.as_secs_f64(),
            d.steady_rate
        );
        let other = fake.other.load(Ordering::SeqCst);
        if other > 0 {
            println!("\n(fake Twilio: {other} requests to other resources)");
        }
    });
}
