//! `ListCalls` at scale: the real server in-process on loopback over a database
//! holding BENCH_CALLS (default 1,000,000) calls spread over 100 orders, driven
//! through the SDK. SQLite by default (temp file), PostgreSQL with
//! `BENCH_DATABASE_URL` (a fresh `bench_<uuid>` database per run, dropped at
//! the end). Prints a Markdown table for docs/PERFORMANCE.md and the peak RSS
//! (VmHWM) of this process, which holds the client and the server.
//!
//! `cargo bench -p centralino-server --bench list_calls`
//! Knobs: BENCH_SECONDS (per row, default 5), BENCH_CALLS (default 1,000,000),
//! BENCH_DEEP_PAGE (page reached by following tokens before the deep rows,
//! default 100), BENCH_KEEP_DB (set: keep the database, for EXPLAIN).

use std::{
    collections::HashSet,
    path::Path,
    time::{Duration, Instant},
};

use centralino_sdk::{Client, proto};
use centralino_server::{Application, Config};
use sea_orm::{ConnectionTrait, DatabaseConnection};
use tokio_util::sync::CancellationToken;

const KEY: &str = "bench-admin-key-000000000001";
const ORDERS: usize = 100;
/// 2025-11-27T00:00:00Z: calls are spread over the year after it.
const EPOCH: i64 = 1_764_201_600;
const YEAR_SECONDS: i64 = 365 * 24 * 3600;
const SUMMARY: &str = "Il chiamante cerca un trilocale in zona Isola, budget 450.000 euro, \
                       vorrebbe visitare sabato mattina; lasciato il numero per essere richiamato.";

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Database {
    url: String,
    drop: Option<(String, String)>,
}

async fn fresh_database(base: Option<&str>, dir: &Path) -> Database {
    let Some(base) = base else {
        return Database {
            url: format!("sqlite://{}?mode=rwc", dir.join("bench.db").display()),
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

/// Calls 1..=n: call i belongs to order i % 100, created `i * step` seconds
/// after EPOCH (whole seconds: SeaORM/sqlx write a DateTimeUtc to SQLite as
/// RFC 3339 with only the non-zero sub-second digits, so a whole second is
/// `YYYY-MM-DDTHH:MM:SS+00:00`, the text written here).
async fn preload(db: &DatabaseConnection, postgres: bool, order_ids: &[String], n: u64) {
    let step = (YEAR_SECONDS / n as i64).max(1);
    let values = order_ids
        .iter()
        .enumerate()
        .map(|(k, id)| format!("({k}, '{id}')"))
        .collect::<Vec<_>>()
        .join(", ");
    let columns = "id, vapi_call_id, order_id, phone_number, caller_number, status, \
                   status_rank, started_at, ended_at, duration_seconds, ended_reason, cost, \
                   summary, created_at, updated_at";
    if postgres {
        db.execute_unprepared(&format!(
            "INSERT INTO calls ({columns})
             SELECT format('00000000-0000-4000-8000-%s', lpad(i::text, 12, '0')),
                    'bench-' || i, o.id, '+390212345678',
                    '+39333' || lpad((i % 10000000)::text, 7, '0'), 'ended', 5,
                    t, t + interval '2 minutes', 120.0, 'customer-ended-call', 0.12,
                    '{SUMMARY}', t, t
             FROM (SELECT i, to_timestamp({EPOCH} + i * {step}) AS t
                   FROM generate_series(1, {n}) AS i) AS s
             JOIN (VALUES {values}) AS o(k, id) ON o.k = s.i % {ORDERS}"
        ))
        .await
        .expect("preload calls");
        db.execute_unprepared("ANALYZE calls")
            .await
            .expect("analyze");
    } else {
        const CHUNK: u64 = 200_000;
        let mut from = 1;
        while from <= n {
            let to = (from + CHUNK - 1).min(n);
            db.execute_unprepared(&format!(
                "INSERT INTO calls ({columns})
                 WITH RECURSIVE s(i) AS (SELECT {from} UNION ALL SELECT i + 1 FROM s WHERE i < {to}),
                      o(k, id) AS (VALUES {values}),
                      t(i, k, at, ended) AS (
                        SELECT i, i % {ORDERS},
                               strftime('%Y-%m-%dT%H:%M:%S+00:00', {EPOCH} + i * {step}, 'unixepoch'),
                               strftime('%Y-%m-%dT%H:%M:%S+00:00', {EPOCH} + i * {step} + 120, 'unixepoch')
                        FROM s)
                 SELECT printf('00000000-0000-4000-8000-%012d', t.i), 'bench-' || t.i, o.id,
                        '+390212345678', printf('+39333%07d', t.i % 10000000), 'ended', 5,
                        t.at, t.ended, 120.0, 'customer-ended-call', 0.12, '{SUMMARY}', t.at, t.at
                 FROM t JOIN o ON o.k = t.k"
            ))
            .await
            .expect("preload calls");
            from = to + 1;
        }
        db.execute_unprepared("ANALYZE").await.expect("analyze");
    }
}

#[derive(Clone)]
struct Scenario {
    name: &'static str,
    request: proto::ListCallsRequest,
}

async fn run(
    client: &Client,
    scenario: &Scenario,
    concurrency: usize,
    duration: Duration,
) -> (f64, Duration, Duration, Duration) {
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let mut calls = client.calls();
        let request = scenario.request.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                let page = calls
                    .list_calls(request.clone())
                    .await
                    .expect("list calls")
                    .into_inner();
                latencies.push(t.elapsed());
                assert_eq!(page.calls.len(), 50, "a full page");
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("worker"));
    }
    let elapsed = started.elapsed();
    all.sort();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    (
        all.len() as f64 / elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.99),
        *all.last().expect("at least one request"),
    )
}

/// Follows `next_page_token` from the first page to page `pages` and returns
/// the token of page `pages + 1`; checks that the pages are disjoint, full and
/// newest first (the keyset comparison works on the stored text).
async fn token_after(client: &Client, request: &proto::ListCallsRequest, pages: u64) -> String {
    let mut calls = client.calls();
    let mut token = String::new();
    let mut seen = HashSet::new();
    let mut last: Option<(i64, String)> = None;
    for _ in 0..pages {
        let page = calls
            .list_calls(proto::ListCallsRequest {
                page_token: token.clone(),
                ..request.clone()
            })
            .await
            .expect("walk pages")
            .into_inner();
        assert_eq!(page.calls.len(), 50, "a full page");
        for call in &page.calls {
            assert!(seen.insert(call.id.clone()), "call {} seen twice", call.id);
            if !request.order_id.is_empty() {
                assert_eq!(call.order_id, request.order_id);
            }
            let at = call.create_time.as_ref().expect("create_time").seconds;
            let key = (at, call.id.clone());
            if let Some(prev) = &last {
                assert!(key < *prev, "newest first");
            }
            last = Some(key);
        }
        token = page.next_page_token;
        assert!(!token.is_empty(), "more pages");
    }
    token
}

fn vm_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let dir = tempfile::tempdir().expect("temp dir");
        let base = std::env::var("BENCH_DATABASE_URL").ok();
        let database = fresh_database(base.as_deref(), dir.path()).await;
        let postgres = base.is_some();
        let backend = if postgres { "PostgreSQL" } else { "SQLite" };
        let config = Config::from_args([
            "--database-url",
            &database.url,
            "--grpc-addr",
            "127.0.0.1:0",
            "--http-addr",
            "127.0.0.1:0",
            "--api-keys",
            &format!("admin={KEY}"),
            "--admin-key-file",
            &dir.path().join("admin.key").display().to_string(),
        ])
        .expect("config");
        let app = Application::build(config).await.expect("server starts");
        let endpoint = format!("http://{}", app.grpc_addr());
        let stop = CancellationToken::new();
        let server = tokio::spawn(app.run_until_stopped(stop.clone()));
        let client = Client::connect(endpoint, KEY).await.expect("connect");

        let mut order_ids = Vec::new();
        for i in 0..ORDERS {
            order_ids.push(
                client
                    .orders()
                    .create_order(proto::Order {
                        display_name: format!("Agenzia {i}"),
                        ..Default::default()
                    })
                    .await
                    .expect("create order")
                    .id,
            );
        }

        let n = env_u64("BENCH_CALLS", 1_000_000);
        let started = Instant::now();
        let db = sea_orm::Database::connect(&database.url)
            .await
            .expect("bench connection");
        if !postgres {
            // The text the app wrote for a DateTimeUtc, to match in the preload.
            let row = db
                .query_one_raw(sea_orm::Statement::from_string(
                    db.get_database_backend(),
                    "SELECT created_at FROM orders LIMIT 1",
                ))
                .await
                .expect("read an order")
                .expect("an order");
            let text: String = row.try_get("", "created_at").expect("text created_at");
            assert!(
                text.len() >= 25 && &text[10..11] == "T" && text.ends_with("+00:00"),
                "SQLite timestamps are RFC 3339 with +00:00, got {text}"
            );
        }
        preload(&db, postgres, &order_ids, n).await;
        db.close().await.ok();
        let preload_time = started.elapsed();

        let seconds = env_u64("BENCH_SECONDS", 5);
        let deep = env_u64("BENCH_DEEP_PAGE", 100);
        let one_order = proto::ListCallsRequest {
            order_id: order_ids[0].clone(),
            page_size: 50,
            ..Default::default()
        };
        let all_calls = proto::ListCallsRequest {
            page_size: 50,
            ..Default::default()
        };
        let scenarios = [
            Scenario {
                name: "one order, first page",
                request: one_order.clone(),
            },
            Scenario {
                name: "one order, page after the deep page",
                request: proto::ListCallsRequest {
                    page_token: token_after(&client, &one_order, deep).await,
                    ..one_order.clone()
                },
            },
            Scenario {
                name: "all calls (admin), first page",
                request: all_calls.clone(),
            },
            Scenario {
                name: "all calls (admin), page after the deep page",
                request: proto::ListCallsRequest {
                    page_token: token_after(&client, &all_calls, deep).await,
                    ..all_calls.clone()
                },
            },
        ];

        println!(
            "\nListCalls (page of 50) on {backend}, {n} calls over {ORDERS} orders \
             (preloaded in {:.1} s), deep page = {deep}, {seconds} s per row\n",
            preload_time.as_secs_f64()
        );
        println!("| ListCalls | concurrency | requests/s | p50 ms | p99 ms | max ms |");
        println!("|---|---:|---:|---:|---:|---:|");
        for scenario in &scenarios {
            for concurrency in [1, 16] {
                let (rps, p50, p99, max) =
                    run(&client, scenario, concurrency, Duration::from_secs(seconds)).await;
                let ms = |d: Duration| d.as_secs_f64() * 1000.0;
                println!(
                    "| {} | {concurrency} | {rps:.0} | {:.2} | {:.2} | {:.2} |",
                    scenario.name,
                    ms(p50),
                    ms(p99),
                    ms(max)
                );
            }
        }
        stop.cancel();
        server.await.expect("server task").expect("server stops");
        println!(
            "\nPeak RSS (VmHWM) of the bench process (client + server{}): {} MiB, RSS now {} MiB",
            if postgres {
                ", PostgreSQL's own processes not included"
            } else {
                ", SQLite in-process, preload included"
            },
            vm_kib("VmHWM:") / 1024,
            vm_kib("VmRSS:") / 1024
        );
        if std::env::var_os("BENCH_KEEP_DB").is_some() {
            let kept = dir.keep();
            println!("kept: {} (temp dir {})", database.url, kept.display());
        } else {
            database.remove().await;
        }
    });
}
