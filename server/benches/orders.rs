//! Orders RPC benchmark: the real server in-process on loopback, driven through
//! the SDK at several concurrencies, on SQLite (default) or PostgreSQL
//! (`BENCH_DATABASE_URL`). Prints a Markdown table for docs/PERFORMANCE.md.
//!
//! `cargo bench -p centralino-server --bench orders`
//! Knobs: BENCH_SECONDS (per scenario, default 5), BENCH_ORDERS (pre-loaded, default 2000).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use centralino_sdk::{Client, proto};
use centralino_server::{Application, Config};
use tokio_util::sync::CancellationToken;

const KEY: &str = "bench-admin-key-000000000001";

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn order(i: u64) -> proto::Order {
    proto::Order {
        display_name: format!("Agenzia {i}"),
        brand: if i.is_multiple_of(2) {
            "Tempocasa"
        } else {
            "Iconacasa"
        }
        .to_owned(),
        landline_number: "+390212345678".to_owned(),
        default_agent: Some(proto::Agent {
            name: "Giulia Rossi".to_owned(),
            whatsapp_number: "+393331234567".to_owned(),
        }),
        zones: vec![proto::RoutingZone {
            name: "Isola".to_owned(),
            postcodes: vec!["20159".to_owned()],
            keywords: vec!["Isola".to_owned()],
            agent: Some(proto::Agent {
                name: "Marco Bianchi".to_owned(),
                whatsapp_number: "+393339876543".to_owned(),
            }),
        }],
        ..Default::default()
    }
}

#[derive(Clone, Copy)]
enum Scenario {
    Get,
    List,
    Create,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Get => "GetOrder",
            Scenario::List => "ListOrders (page of 50)",
            Scenario::Create => "CreateOrder",
        }
    }
}

async fn run(
    client: &Client,
    ids: Arc<Vec<String>>,
    scenario: Scenario,
    concurrency: usize,
    duration: Duration,
) -> (f64, Duration, Duration) {
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let orders = client.orders();
        let ids = ids.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut i = worker as u64;
            while Instant::now() < deadline {
                let t = Instant::now();
                match scenario {
                    Scenario::Get => {
                        let id = &ids[(i as usize * 7919) % ids.len()];
                        orders.get_order(id).await.expect("get");
                    }
                    Scenario::List => {
                        orders
                            .list_orders(proto::ListOrdersRequest {
                                page_size: 50,
                                brand: "Tempocasa".to_owned(),
                                ..Default::default()
                            })
                            .await
                            .expect("list");
                    }
                    Scenario::Create => {
                        orders.create_order(order(i)).await.expect("create");
                    }
                }
                latencies.push(t.elapsed());
                i += concurrency as u64;
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
        ])
        .expect("config");
        let app = Application::build(config).await.expect("server starts");
        let endpoint = format!("http://{}", app.grpc_addr());
        let stop = CancellationToken::new();
        let server = tokio::spawn(app.run_until_stopped(stop.clone()));

        let client = Client::connect(endpoint, KEY).await.expect("connect");
        let preload = env_u64("BENCH_ORDERS", 2000);
        let mut ids = Vec::new();
        for i in 0..preload {
            ids.push(
                client
                    .orders()
                    .create_order(order(i))
                    .await
                    .expect("preload")
                    .id,
            );
        }
        let ids = Arc::new(ids);
        let seconds = env_u64("BENCH_SECONDS", 5);

        println!("\nOrders RPCs on {backend}, {preload} orders pre-loaded, {seconds} s per row\n");
        println!("| RPC | concurrency | requests/s | p50 ms | p99 ms |");
        println!("|---|---:|---:|---:|---:|");
        for scenario in [Scenario::Get, Scenario::List, Scenario::Create] {
            for concurrency in [1, 16] {
                let (rps, p50, p99) = run(
                    &client,
                    ids.clone(),
                    scenario,
                    concurrency,
                    Duration::from_secs(seconds),
                )
                .await;
                println!(
                    "| {} | {concurrency} | {rps:.0} | {:.2} | {:.2} |",
                    scenario.name(),
                    p50.as_secs_f64() * 1000.0,
                    p99.as_secs_f64() * 1000.0
                );
            }
        }
        stop.cancel();
        server.await.expect("server task").expect("server stops");
    });
}
