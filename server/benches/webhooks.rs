//! Vapi webhook benchmark: end-of-call reports and assistant requests over
//! HTTP (the real shim, authentication and CallsService through the SDK),
//! server in-process on loopback, SQLite by default or PostgreSQL
//! (`BENCH_DATABASE_URL`). Prints a Markdown table for docs/PERFORMANCE.md.
//!
//! `cargo bench -p centralino-server --bench webhooks`
//! Knobs: BENCH_SECONDS (per row, default 5).

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use centralino_sdk::{Client, proto};
use centralino_server::{Application, Config};
use serde_json::json;
use tokio_util::sync::CancellationToken;

const KEY: &str = "bench-admin-key-000000000001";
const SECRET: &str = "bench-webhook-secret";
const NUMBERS: [&str; 2] = ["+390211112222", "+390233334444"];

#[derive(Clone, Copy)]
enum Scenario {
    Report,
    AssistantRequest,
}

fn body(scenario: Scenario, n: u64) -> serde_json::Value {
    let number = NUMBERS[(n % 2) as usize];
    match scenario {
        Scenario::Report => json!({"message": {
            "type": "end-of-call-report",
            "endedReason": "customer-ended-call",
            "startedAt": chrono::Utc::now().to_rfc3339(),
            "endedAt": chrono::Utc::now().to_rfc3339(),
            "call": {"id": format!("bench-{}-{n}", std::process::id()), "type": "inboundPhoneCall"},
            "phoneNumber": {"number": number},
            "customer": {"number": format!("+39347{:07}", n % 10_000_000)},
            "artifact": {"transcript": "AI: Buongiorno.\nUser: Vorrei vendere casa in zona Isola."},
            "analysis": {"summary": "Vuole vendere.", "structuredData": {"nome": "Mario Rossi", "richiesta": "vendita", "cap": "20159"}}
        }}),
        Scenario::AssistantRequest => json!({"message": {
            "type": "assistant-request",
            "call": {"id": format!("ar-{n}"), "status": "ringing"},
            "phoneNumber": {"number": number},
            "customer": {"number": "+393471112223"}
        }}),
    }
}

async fn run(
    url: &str,
    scenario: Scenario,
    concurrency: usize,
    duration: Duration,
    counter: Arc<AtomicU64>,
) -> (f64, Duration, Duration) {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let http = http.clone();
        let url = url.to_owned();
        let counter = counter.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let payload = body(scenario, counter.fetch_add(1, Ordering::Relaxed));
                let t = Instant::now();
                let response = http
                    .post(&url)
                    .header("X-Vapi-Secret", SECRET)
                    .json(&payload)
                    .send()
                    .await
                    .expect("request");
                assert_eq!(response.status(), 200);
                response.bytes().await.expect("body");
                latencies.push(t.elapsed());
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
    )
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = std::env::var("BENCH_DATABASE_URL").unwrap_or_else(|_| {
            format!(
                "sqlite://{}?mode=rwc",
                dir.path().join("bench.db").display()
            )
        });
        let backend = if url.starts_with("postgres") {
            "PostgreSQL"
        } else {
            "SQLite"
        };
        let config = Config::from_args([
            "--database-url",
            &url,
            "--grpc-addr",
            "127.0.0.1:0",
            "--http-addr",
            "127.0.0.1:0",
            "--api-keys",
            &format!("admin={KEY}"),
            "--admin-key-file",
            &dir.path().join("admin.key").display().to_string(),
            "--vapi-webhook-secret",
            SECRET,
        ])
        .expect("config");
        let app = Application::build(config).await.expect("server starts");
        let grpc = format!("http://{}", app.grpc_addr());
        let webhook = format!("http://{}/webhooks/vapi", app.http_addr());
        let stop = CancellationToken::new();
        let server = tokio::spawn(app.run_until_stopped(stop.clone()));

        let client = Client::connect(grpc, KEY).await.expect("connect");
        for (i, number) in NUMBERS.iter().enumerate() {
            let order = client
                .orders()
                .create_order(proto::Order {
                    display_name: format!("Agenzia {i}"),
                    vapi_assistant_id: "3f1c2a9e-7b4d-4e8f-9a6b-1c2d3e4f5a6b".to_owned(),
                    ..Default::default()
                })
                .await
                .expect("order");
            client
                .numbers()
                .assign_number(&order.id, number, "")
                .await
                .expect("number");
        }
        let seconds = std::env::var("BENCH_SECONDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(5);
        let counter = Arc::new(AtomicU64::new(0));

        println!("\nVapi webhooks on {backend}, {seconds} s per row\n");
        println!("| message | concurrency | requests/s | p50 ms | p99 ms |");
        println!("|---|---:|---:|---:|---:|");
        for (scenario, name) in [
            (Scenario::Report, "end-of-call-report"),
            (Scenario::AssistantRequest, "assistant-request"),
        ] {
            for concurrency in [1, 16] {
                let (rps, p50, p99) = run(
                    &webhook,
                    scenario,
                    concurrency,
                    Duration::from_secs(seconds),
                    counter.clone(),
                )
                .await;
                println!(
                    "| {name} | {concurrency} | {rps:.0} | {:.2} | {:.2} |",
                    p50.as_secs_f64() * 1000.0,
                    p99.as_secs_f64() * 1000.0
                );
            }
        }
        stop.cancel();
        server.await.expect("server task").expect("server stops");
    });
}
