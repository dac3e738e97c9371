//! Scale benchmark: the real `centralino` binary, driven over HTTP (Vapi
//! webhooks) and gRPC (ListCalls) by a lean load generator in this process,
//! on PostgreSQL (`BENCH_DATABASE_URL`, a fresh database is created on that
//! server and dropped after) or SQLite (default, a temporary file).
//!
//! `cargo bench -p centralino-server --bench scale`
//!
//! 1. starts the binary, creates orders with numbers and agents, pre-loads
//!    `BENCH_PRELOAD` calls through the webhook (default 20,000), ANALYZE;
//! 2. end-of-call reports at concurrency 1, 16, 64 and, on PostgreSQL,
//!    `pgbench` at the same concurrency running `scripts/report.pgbench`
//!    (one report's statements as one transaction), taking turns with the
//!    server (`BENCH_ROUNDS` stretches each). The bench first checks
//!    that script against the statements a second instance of the binary
//!    logs (`CENTRALINO_LOG_SQL`) for one report, and stops if they differ;
//! 3. assistant requests at concurrency 1 and 16;
//! 4. ListCalls (gRPC through the SDK), a page of 50 for one order among
//!    `BENCH_LIST_CALLS` stored calls (default 1,000,000, inserted with SQL,
//!    1 % of them that order's), first page and page 101, concurrency 1 and 16;
//! 5. peak RSS of the server for each row (VmHWM, reset between rows), and
//!    CPU per request of the server, the rest of the machine and the generator.
//!
//! Knobs: BENCH_SECONDS (per row, or per stretch of a report row, default 5),
//! BENCH_ROUNDS (stretches of the server and of pgbench per report row,
//! default 3), BENCH_PRELOAD (default 20000),
//! BENCH_LIST_CALLS (default 1000000; 0 skips the ListCalls rows),
//! BENCH_KEEP_DB=1 (keep the PostgreSQL database, for EXPLAIN),
//! BENCH_SHIM_TCP=1 (the shim's gRPC calls over loopback TCP, not in memory),
//! BENCH_SERVER_BIN (another build of `centralino` to run, for A/B runs),
//! BENCH_ROWS (default `report:1,report:16,report:64,assistant:1,assistant:16,list:1,list:16`;
//! e.g. `report:64` alone, to profile the server: its pid is printed).

use std::{
    io::{BufRead, BufReader},
    net::TcpListener as StdListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use centralino_sdk::{Client, proto};
use sea_orm::{ConnectionTrait, Database};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

const KEY: &str = "bench-admin-key-000000000001";
const SECRET: &str = "bench-webhook-secret";
const ORDERS: usize = 10;
const PGBENCH_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/report.pgbench");

/// A running `centralino serve`; killed on drop.
struct Server {
    child: Child,
    grpc: String,
    http: String,
    log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

impl Server {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Peak resident set since the last [`Server::reset_peak`], in MiB.
    fn peak_rss_mib(&self) -> f64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("/proc status");
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("VmHWM");
        kib / 1024.0
    }

    /// Writing 5 to clear_refs resets VmHWM (Linux ≥ 4.0).
    fn reset_peak(&self) {
        std::fs::write(format!("/proc/{}/clear_refs", self.pid()), "5").ok();
    }
}

/// CPU time (user + system) of a process, from /proc/PID/stat, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) closed by ')'.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 (1-based), i.e. 11 and 12 here.
    (ticks(11) + ticks(12)) / 100.0
}

/// Busy CPU time of the whole machine (all cores), from /proc/stat.
fn machine_busy_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal: all but idle and iowait.
    let total: f64 = fields.iter().take(8).sum();
    let idle = fields.get(3).copied().unwrap_or(0.0) + fields.get(4).copied().unwrap_or(0.0);
    (total - idle) / 100.0
}

/// CPU used per request during a row: the server, this generator, and the
/// rest of the machine (PostgreSQL, mostly).
struct Cpu {
    server: f64,
    generator: f64,
    machine: f64,
}

impl Cpu {
    fn now(server: u32) -> Self {
        Self {
            server: cpu_seconds(server),
            generator: cpu_seconds(std::process::id()),
            machine: machine_busy_seconds(),
        }
    }

    /// What was used since `self`.
    fn spent(&self, server: u32) -> Self {
        let later = Self::now(server);
        Self {
            server: later.server - self.server,
            generator: later.generator - self.generator,
            machine: later.machine - self.machine,
        }
    }

    fn add(&mut self, other: &Self) {
        self.server += other.server;
        self.generator += other.generator;
        self.machine += other.machine;
    }

    /// Microseconds per request since `self`.
    fn per_request(&self, server: u32, requests: f64) -> String {
        self.spent(server).microseconds_per(requests)
    }

    /// This amount of CPU (a [`Cpu::spent`]) per request, in microseconds.
    fn microseconds_per(&self, requests: f64) -> String {
        let us = |seconds: f64| seconds * 1e6 / requests.max(1.0);
        let server_us = us(self.server);
        let generator_us = us(self.generator);
        let rest_us = us(self.machine) - server_us - generator_us;
        format!("{server_us:.0} / {rest_us:.0} / {generator_us:.0}")
    }
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

async fn start(database_url: &str, dir: &Path, name: &str, log_sql: bool) -> Server {
    let grpc = free_port();
    let http = free_port();
    let log = dir.join(format!("{name}.log"));
    // BENCH_SERVER_BIN: another build of the binary (an A/B on one bench).
    let binary = std::env::var("BENCH_SERVER_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_centralino").to_owned());
    let mut command = Command::new(binary);
    command
        .args(["serve"])
        .env("DATABASE_URL", database_url)
        .env("CENTRALINO_GRPC_ADDR", format!("127.0.0.1:{grpc}"))
        .env("CENTRALINO_HTTP_ADDR", format!("127.0.0.1:{http}"))
        .env("CENTRALINO_API_KEYS", format!("admin={KEY}"))
        .env("CENTRALINO_ADMIN_KEY_FILE", dir.join("admin.key"))
        .env("VAPI_WEBHOOK_SECRET", SECRET)
        .env("CENTRALINO_DB_MAX_CONNECTIONS", "20")
        .env("CENTRALINO_LOG_FORMAT", "json")
        .stdout(std::fs::File::create(&log).expect("log file"))
        .stderr(Stdio::inherit());
    // BENCH_SHIM_TCP=1: the shim calls the gRPC listener over loopback TCP
    // instead of calling its routes in process (to compare the two).
    if std::env::var("BENCH_SHIM_TCP").is_ok_and(|v| v == "1") {
        command.env(
            "CENTRALINO_SHIM_GRPC_ENDPOINT",
            format!("http://127.0.0.1:{grpc}"),
        );
    }
    if log_sql {
        command
            .env("CENTRALINO_LOG_SQL", "true")
            .env("CENTRALINO_LOG", "info,sqlx::query=info");
    }
    let server = Server {
        child: command.spawn().expect("the centralino binary starts"),
        grpc: format!("http://127.0.0.1:{grpc}"),
        http: format!("127.0.0.1:{http}"),
        log,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(client) = Client::connect(server.grpc.clone(), KEY).await
            && client
                .orders()
                .list_orders(Default::default())
                .await
                .is_ok()
        {
            return server;
        }
        assert!(Instant::now() < deadline, "server did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn number(i: usize) -> String {
    format!("+3902{:08}", 11_110_000 + i)
}

async fn create_orders(grpc: &str) {
    let client = Client::connect(grpc.to_owned(), KEY)
        .await
        .expect("connect");
    for i in 0..ORDERS {
        let order = client
            .orders()
            .create_order(proto::Order {
                display_name: format!("Agenzia {i}"),
                vapi_assistant_id: format!("3f1c2a9e-7b4d-4e8f-9a6b-1c2d3e4f5a{i:02}"),
                default_agent: Some(proto::Agent {
                    name: "Giulia".to_owned(),
                    whatsapp_number: format!("+39347{:07}", 5_550_000 + i),
                }),
                ..Default::default()
            })
            .await
            .expect("order");
        client
            .numbers()
            .assign_number(&order.id, &number(i), "")
            .await
            .expect("number");
    }
}

#[derive(Clone, Copy)]
enum Scenario {
    Report,
    AssistantRequest,
}

fn body(scenario: Scenario, run: &str, n: u64) -> String {
    let called = number((n % ORDERS as u64) as usize);
    let now = chrono::Utc::now().to_rfc3339();
    match scenario {
        Scenario::Report => serde_json::json!({"message": {
            "type": "end-of-call-report",
            "endedReason": "customer-ended-call",
            "startedAt": now,
            "endedAt": now,
            "call": {"id": format!("{run}-{n}"), "type": "inboundPhoneCall"},
            "phoneNumber": {"number": called},
            "customer": {"number": format!("+39347{:07}", n % 10_000_000)},
            "artifact": {"transcript": "AI: Buongiorno, agenzia immobiliare.\nUser: Vorrei vendere un trilocale in zona Isola."},
            "analysis": {"summary": "Vuole vendere un trilocale in zona Isola.", "structuredData": {"nome": "Mario Rossi", "richiesta": "vendita", "cap": "20159"}}
        }}),
        Scenario::AssistantRequest => serde_json::json!({"message": {
            "type": "assistant-request",
            "call": {"id": format!("{run}-ar-{n}"), "status": "ringing"},
            "phoneNumber": {"number": called},
            "customer": {"number": "+393471112223"}
        }}),
    }
    .to_string()
}

/// One keep-alive HTTP/1.1 connection posting to /webhooks/vapi: just enough
/// HTTP for our own server, so the generator costs little of the 2 cores.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    async fn open(addr: &str) -> Self {
        let stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        Self {
            stream,
            buf: Vec::with_capacity(4096),
        }
    }

    async fn post(&mut self, body: &str) -> (u16, Vec<u8>) {
        let request = format!(
            "POST /webhooks/vapi HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\nx-vapi-secret: {SECRET}\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        self.stream
            .write_all(request.as_bytes())
            .await
            .expect("write");
        self.buf.clear();
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let head = std::str::from_utf8(&self.buf[..end]).expect("ascii head");
                let status: u16 = head[9..12].parse().expect("status");
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().ok())?
                    })
                    .expect("content-length");
                while self.buf.len() < end + 4 + length {
                    let n = self.stream.read(&mut chunk).await.expect("read");
                    assert!(n > 0, "server closed the connection");
                    self.buf.extend_from_slice(&chunk[..n]);
                }
                return (status, self.buf[end + 4..end + 4 + length].to_vec());
            }
            let n = self.stream.read(&mut chunk).await.expect("read");
            assert!(n > 0, "server closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The latencies of one stretch of load and how long it lasted.
struct Sample {
    latencies: Vec<Duration>,
    elapsed: Duration,
}

struct Row {
    count: f64,
    rps: f64,
    p50: Duration,
    p99: Duration,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `concurrency` connections post for `duration` (or `total` requests).
async fn drive(
    addr: &str,
    scenario: Scenario,
    run: &str,
    concurrency: usize,
    duration: Duration,
    total: Option<u64>,
    counter: Arc<AtomicU64>,
) -> Row {
    Row::of(sample(addr, scenario, run, concurrency, duration, total, counter).await)
}

/// As [`drive`], the raw latencies (to merge several stretches into a row).
async fn sample(
    addr: &str,
    scenario: Scenario,
    run: &str,
    concurrency: usize,
    duration: Duration,
    total: Option<u64>,
    counter: Arc<AtomicU64>,
) -> Sample {
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let first = counter.load(Ordering::Relaxed);
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let addr = addr.to_owned();
        let run = run.to_owned();
        let counter = counter.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::open(&addr).await;
            let mut latencies = Vec::new();
            loop {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                if total.map_or(Instant::now() >= deadline, |t| n >= first + t) {
                    break;
                }
                let payload = body(scenario, &run, n);
                let t = Instant::now();
                let (status, reply) = conn.post(&payload).await;
                latencies.push(t.elapsed());
                assert_eq!(
                    status,
                    200,
                    "webhook answered {status}: {}",
                    String::from_utf8_lossy(&reply)
                );
                if matches!(scenario, Scenario::AssistantRequest) {
                    assert!(
                        find(&reply, b"assistantId").is_some(),
                        "no assistant in {}",
                        String::from_utf8_lossy(&reply)
                    );
                }
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("worker"));
    }
    Sample {
        latencies: all,
        elapsed: started.elapsed(),
    }
}

impl Row {
    /// Throughput and percentiles of one row's latencies.
    fn of(
        Sample {
            mut latencies,
            elapsed,
        }: Sample,
    ) -> Self {
        latencies.sort();
        let pct =
            |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
        Self {
            count: latencies.len() as f64,
            rps: latencies.len() as f64 / elapsed.as_secs_f64(),
            p50: pct(0.50),
            p99: pct(0.99),
        }
    }
}

/// Inserts `n` calls with SQL, 1 % of them `order`'s (the rest belong to 99
/// other order ids), spread over a year, then ANALYZE.
async fn preload_calls(db: &sea_orm::DatabaseConnection, postgres: bool, order: &str, n: u64) {
    const EPOCH: i64 = 1_700_000_000;
    let step = (365 * 24 * 3600 / n as i64).max(1);
    let columns = "id, vapi_call_id, order_id, phone_number, caller_number, status, \
                   status_rank, started_at, ended_at, duration_seconds, ended_reason, cost, \
                   summary, created_at, updated_at";
    let summary = "Il chiamante cerca un trilocale in zona Isola, budget 450.000 euro.";
    if postgres {
        db.execute_unprepared(&format!(
            "INSERT INTO calls ({columns})
             SELECT format('00000000-0000-4000-8000-%s', lpad(i::text, 12, '0')), 'list-' || i,
                    CASE WHEN i % 100 = 0 THEN '{order}'
                         ELSE format('00000000-0000-4000-9000-%s', lpad((i % 100)::text, 12, '0')) END,
                    '+390212345678', '+39333' || lpad((i % 10000000)::text, 7, '0'), 'ended', 5,
                    t, t + interval '2 minutes', 120.0, 'customer-ended-call', 0.12, '{summary}', t, t
             FROM (SELECT i, to_timestamp({EPOCH} + i * {step}) AS t
                   FROM generate_series(1, {n}) AS i) AS s"
        ))
        .await
        .expect("preload calls");
    } else {
        const CHUNK: u64 = 200_000;
        let mut from = 1;
        while from <= n {
            let to = (from + CHUNK - 1).min(n);
            // SeaORM writes SQLite times as RFC 3339 text; whole seconds here.
            db.execute_unprepared(&format!(
                "INSERT INTO calls ({columns})
                 WITH RECURSIVE s(i) AS (SELECT {from} UNION ALL SELECT i + 1 FROM s WHERE i < {to})
                 SELECT printf('00000000-0000-4000-8000-%012d', i), 'list-' || i,
                        CASE WHEN i % 100 = 0 THEN '{order}'
                             ELSE printf('00000000-0000-4000-9000-%012d', i % 100) END,
                        '+390212345678', printf('+39333%07d', i % 10000000), 'ended', 5,
                        strftime('%Y-%m-%dT%H:%M:%S+00:00', {EPOCH} + i * {step}, 'unixepoch'),
                        strftime('%Y-%m-%dT%H:%M:%S+00:00', {EPOCH} + i * {step} + 120, 'unixepoch'),
                        120.0, 'customer-ended-call', 0.12, '{summary}',
                        strftime('%Y-%m-%dT%H:%M:%S+00:00', {EPOCH} + i * {step}, 'unixepoch'),
                        strftime('%Y-%m-%dT%H:%M:%S+00:00', {EPOCH} + i * {step}, 'unixepoch')
                 FROM s"
            ))
            .await
            .expect("preload calls");
            from = to + 1;
        }
    }
    db.execute_unprepared("ANALYZE").await.expect("ANALYZE");
}

/// ListCalls rows: one order's first page and page 101, at 1 and 16.
async fn list_calls_rows(
    server: &Server,
    db: &sea_orm::DatabaseConnection,
    postgres: bool,
    order: &str,
    n: u64,
    seconds: u64,
    wanted: &dyn Fn(&str, usize) -> bool,
) {
    let loading = Instant::now();
    preload_calls(db, postgres, order, n).await;
    println!(
        "\nListCalls: {n} more calls inserted with SQL in {:.0} s (1 % of them the listed order's), ANALYZEd; a page of 50.\n",
        loading.elapsed().as_secs_f64()
    );
    println!(
        "| ListCalls, one order | concurrency | pages/s | p50 ms | p99 ms | server peak RSS MiB | CPU µs/request: server / rest (database) / generator |"
    );
    println!("|---|---:|---:|---:|---:|---:|---|");
    let client = Client::connect(server.grpc.clone(), KEY)
        .await
        .expect("connect");
    let first = proto::ListCallsRequest {
        order_id: order.to_owned(),
        page_size: 50,
        ..Default::default()
    };
    // Page 101: follow 100 tokens.
    let mut deep = first.clone();
    for _ in 0..100 {
        let page = client
            .calls()
            .list_calls(deep.clone())
            .await
            .expect("a page")
            .into_inner();
        assert_eq!(page.calls.len(), 50, "a full page");
        deep.page_token = page.next_page_token;
    }
    for (name, request) in [("first page", first), ("page 101", deep)] {
        for concurrency in [1, 16] {
            if !wanted("list", concurrency) {
                continue;
            }
            server.reset_peak();
            let cpu = Cpu::now(server.pid());
            let deadline = Instant::now() + Duration::from_secs(seconds);
            let started = Instant::now();
            let mut tasks = Vec::new();
            for _ in 0..concurrency {
                let mut calls = client.calls();
                let request = request.clone();
                tasks.push(tokio::spawn(async move {
                    let mut latencies = Vec::new();
                    while Instant::now() < deadline {
                        let t = Instant::now();
                        let page = calls.list_calls(request.clone()).await.expect("list");
                        latencies.push(t.elapsed());
                        assert_eq!(page.into_inner().calls.len(), 50, "a full page");
                    }
                    latencies
                }));
            }
            let mut all = Vec::new();
            for task in tasks {
                all.extend(task.await.expect("worker"));
            }
            let row = Row::of(Sample {
                latencies: all,
                elapsed: started.elapsed(),
            });
            println!(
                "| {name} | {concurrency} | {:.0} | {:.2} | {:.2} | {:.0} | {} |",
                row.rps,
                ms(row.p50),
                ms(row.p99),
                server.peak_rss_mib(),
                cpu.per_request(server.pid(), row.count)
            );
        }
    }
}

/// The statements one report ran, from a server started with
/// CENTRALINO_LOG_SQL: the sqlx events inside the `report_batch` span.
/// sqlx does not log the BEGIN it sends, so it is put back here.
fn logged_statements(log: &Path) -> Vec<String> {
    let file = std::fs::File::open(log).expect("server log");
    let mut statements = vec!["BEGIN".to_owned()];
    for line in BufReader::new(file).lines() {
        let line = line.expect("log line");
        let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if event["span"]["name"] != "report_batch" {
            continue;
        }
        // sqlx logs the statements it sends; a pipelined transaction logs
        // each statement's template as it queues it (BEGIN included).
        let full = match event["target"].as_str() {
            Some("sqlx::query") => event["db.statement"].as_str().unwrap_or("").trim(),
            Some("centralino::sql") => {
                let statement = event["statement"].as_str().unwrap_or("").trim();
                if statement == "BEGIN" {
                    continue;
                }
                statement
            }
            _ => continue,
        };
        let text = if full.is_empty() {
            event["summary"].as_str().unwrap_or("")
        } else {
            full
        };
        statements.push(text.to_owned());
    }
    statements
}

/// The statements of the pgbench script, meta-commands left out.
fn script_statements(script: &str) -> Vec<String> {
    let mut statements = Vec::new();
    let mut current = String::new();
    for line in script.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with("--") || line.starts_with('\\') {
            continue;
        }
        current.push(' ');
        current.push_str(line);
        if line.ends_with(';') {
            statements.push(current.trim().trim_end_matches(';').to_owned());
            current.clear();
        }
    }
    statements
}

/// A statement's shape: its verb and every quoted identifier (tables,
/// columns) in order. Values differ by design (the log has `$1`, the script
/// pgbench variables and expressions); the shape must not.
fn normalize(sql: &str) -> String {
    let verb = sql
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_ascii_uppercase();
    // Literals first: the script's JSON values hold double quotes.
    let unquoted: String = sql.split('\'').step_by(2).collect();
    let identifiers: Vec<&str> = unquoted.split('"').skip(1).step_by(2).collect();
    format!("{verb} {}", identifiers.join(" "))
}

fn pgbench(
    database_url: &str,
    (order_id, number): (&str, &str),
    run: usize,
    concurrency: usize,
    seconds: u64,
) -> f64 {
    let output = Command::new("pgbench")
        .args([
            "-D",
            &format!("order_id={order_id}"),
            "-D",
            &format!("number={number}"),
            "-D",
            &format!("run={run}"),
            "-D",
            "i=0",
            "-n",
            "-M",
            "prepared",
            "-c",
            &concurrency.to_string(),
            "-j",
            &concurrency.min(2).to_string(),
            "-T",
            &seconds.to_string(),
            "-f",
            PGBENCH_SCRIPT,
            database_url,
        ])
        .output()
        .expect("pgbench runs (Debian package postgresql-client)");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "pgbench failed: {text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    text.lines()
        .find_map(|l| l.strip_prefix("tps = "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("pgbench printed tps")
}

/// Databases of earlier runs whose process is gone (a run that panicked).
async fn drop_stale_databases(db: &sea_orm::DatabaseConnection) {
    let rows = db
        .query_all_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SELECT datname FROM pg_database WHERE datname LIKE 'centralino_scale_%'",
        ))
        .await
        .expect("list databases");
    for row in rows {
        let name: String = row.try_get("", "datname").expect("datname");
        let pid = name.trim_start_matches("centralino_scale_");
        if !Path::new(&format!("/proc/{pid}")).exists() {
            db.execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await
                .ok();
        }
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(bench());
}

async fn bench() {
    let dir = tempfile::tempdir().expect("temp dir");
    let seconds: u64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(3);
    let preload: u64 = std::env::var("BENCH_PRELOAD")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let admin = std::env::var("BENCH_DATABASE_URL").ok();
    let database = format!("centralino_scale_{}", std::process::id());
    let url = match &admin {
        Some(admin) => {
            let db = Database::connect(admin).await.expect("PostgreSQL");
            drop_stale_databases(&db).await;
            db.execute_unprepared(&format!("CREATE DATABASE {database}"))
                .await
                .expect("create the bench database");
            let base = admin.rsplit_once('/').expect("a database in the URL").0;
            format!("{base}/{database}")
        }
        None => format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("bench.db").display()
        ),
    };
    let postgres = admin.is_some();
    let backend = if postgres { "PostgreSQL" } else { "SQLite" };

    let server = start(&url, dir.path(), "server", false).await;
    create_orders(&server.grpc).await;
    let counter = Arc::new(AtomicU64::new(0));
    let loaded = drive(
        &server.http,
        Scenario::Report,
        "preload",
        64,
        Duration::from_secs(3600),
        Some(preload),
        counter.clone(),
    )
    .await;
    let db = Database::connect(&url).await.expect("bench database");
    db.execute_unprepared("ANALYZE").await.expect("ANALYZE");
    println!(
        "\nScale bench on {backend}: the centralino binary, {preload} calls pre-loaded through the webhook ({:.0}/s at 64), ANALYZEd; {seconds} s per row\n",
        loaded.rps
    );

    // One report's statements, logged by a second instance of the binary,
    // must be the pgbench script's (PostgreSQL only: pgbench is its tool).
    if postgres {
        let traced = start(&url, dir.path(), "traced", true).await;
        let mut conn = Conn::open(&traced.http).await;
        // Steady state: the routing table (which the committer reads to
        // guess owners) loaded first, as by the calls that ring before.
        let (status, reply) = conn
            .post(&body(Scenario::AssistantRequest, "traced", 9_999_999))
            .await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&reply));
        let (status, reply) = conn
            .post(&body(Scenario::Report, "traced", 9_999_999))
            .await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&reply));
        let log = traced.log.clone();
        drop(conn);
        drop(traced);
        let logged = logged_statements(&log);
        let script = std::fs::read_to_string(PGBENCH_SCRIPT).expect("scripts/report.pgbench");
        let scripted = script_statements(&script);
        let shapes =
            |statements: &[String]| statements.iter().map(|s| normalize(s)).collect::<Vec<_>>();
        if shapes(&logged) != shapes(&scripted) {
            eprintln!("scripts/report.pgbench no longer runs what the server runs for one report.");
            eprintln!("The server logged:");
            for s in &logged {
                eprintln!("  {s};");
            }
            eprintln!("The script has:");
            for s in &scripted {
                eprintln!("  {s};");
            }
            panic!("update scripts/report.pgbench");
        }
        println!(
            "One report = {} statements (checked against scripts/report.pgbench).\n",
            logged.len()
        );
    }

    println!(
        "| message | concurrency | requests/s | p50 ms | p99 ms | pgbench tps | vs pgbench | server peak RSS MiB | CPU µs/request: server / rest (database) / generator |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---|");
    // The same counter: every report below has a new caller (a new lead), as
    // in the traced report and the pgbench script.
    let run = format!("run-{}", std::process::id());
    // pgbench's reports go to one order and its number.
    let target = db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SELECT order_id, number FROM phone_numbers ORDER BY number LIMIT 1",
        ))
        .await
        .expect("a number")
        .map(|row| {
            (
                row.try_get::<String>("", "order_id").expect("order_id"),
                row.try_get::<String>("", "number").expect("number"),
            )
        })
        .expect("a number");
    let rows = std::env::var("BENCH_ROWS").unwrap_or_else(|_| {
        "report:1,report:16,report:64,assistant:1,assistant:16,list:1,list:16".to_owned()
    });
    let wanted = |kind: &str, concurrency: usize| {
        rows.split(',')
            .any(|row| row.trim() == format!("{kind}:{concurrency}"))
    };
    eprintln!("server pid {}", server.pid());
    for concurrency in [1, 16, 64] {
        if !wanted("report", concurrency) {
            continue;
        }
        // The server and pgbench take turns, `rounds` stretches each, so a
        // drift of the machine (another tenant, the disk) weighs on both.
        server.reset_peak();
        let mut cpu = Cpu {
            server: 0.0,
            generator: 0.0,
            machine: 0.0,
        };
        let mut served = Sample {
            latencies: Vec::new(),
            elapsed: Duration::ZERO,
        };
        let mut pgbench_tps = Vec::new();
        for round in 0..rounds {
            let before = Cpu::now(server.pid());
            let stretch = sample(
                &server.http,
                Scenario::Report,
                &run,
                concurrency,
                Duration::from_secs(seconds),
                None,
                counter.clone(),
            )
            .await;
            cpu.add(&before.spent(server.pid()));
            served.latencies.extend(stretch.latencies);
            served.elapsed += stretch.elapsed;
            if postgres {
                pgbench_tps.push(pgbench(
                    &url,
                    (&target.0, &target.1),
                    concurrency * 100 + round,
                    concurrency,
                    seconds,
                ));
            }
        }
        let row = Row::of(served);
        let rss = server.peak_rss_mib();
        let cpu = cpu.microseconds_per(row.count);
        let (tps, ratio) = if postgres {
            // Equal stretches: the mean of the rates is the overall rate.
            let tps = pgbench_tps.iter().sum::<f64>() / pgbench_tps.len() as f64;
            (
                format!("{tps:.0}"),
                format!("{:.0} %", row.rps / tps * 100.0),
            )
        } else {
            ("–".to_owned(), "–".to_owned())
        };
        println!(
            "| end-of-call-report | {concurrency} | {:.0} | {:.2} | {:.2} | {tps} | {ratio} | {rss:.0} | {cpu} |",
            row.rps,
            ms(row.p50),
            ms(row.p99)
        );
    }
    for concurrency in [1, 16, 64] {
        if !wanted("assistant", concurrency) {
            continue;
        }
        server.reset_peak();
        let cpu = Cpu::now(server.pid());
        let row = drive(
            &server.http,
            Scenario::AssistantRequest,
            &run,
            concurrency,
            Duration::from_secs(seconds),
            None,
            counter.clone(),
        )
        .await;
        println!(
            "| assistant-request | {concurrency} | {:.0} | {:.2} | {:.2} | – | – | {:.0} | {} |",
            row.rps,
            ms(row.p50),
            ms(row.p99),
            server.peak_rss_mib(),
            cpu.per_request(server.pid(), row.count)
        );
    }
    let list_calls: u64 = std::env::var("BENCH_LIST_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    if list_calls > 0 {
        list_calls_rows(
            &server, &db, postgres, &target.0, list_calls, seconds, &wanted,
        )
        .await;
    }
    drop(server);
    drop(db);
    if std::env::var("BENCH_KEEP_DB").is_ok_and(|v| v == "1") {
        eprintln!("kept for EXPLAIN: {url}");
    } else if let Some(admin) = &admin {
        let db = Database::connect(admin).await.expect("PostgreSQL");
        db.execute_unprepared(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
            .await
            .ok();
    }
}
