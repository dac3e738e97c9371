//! Two real `centralino` processes on one PostgreSQL database race for one
//! number (and one order for twenty numbers): exactly one assignment wins.
//! Needs PostgreSQL: set TEST_DATABASE_URL (the suite says so and skips
//! without it; SQLite's single-process race is covered in tests/it).

use std::{
    net::TcpListener,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use centralino_sdk::{Client, tonic::Code};
use sea_orm::{ConnectionTrait, Database};
use tonic_types::StatusExt;

const KEY: &str = "process-test-admin-key-0001";

struct Server {
    child: Child,
    endpoint: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        // SIGKILL is fine here: the database is dropped right after.
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

async fn start(database_url: &str, dir: &std::path::Path) -> Server {
    let grpc = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_centralino"))
        .args([
            "serve",
            "--database-url",
            database_url,
            "--grpc-addr",
            &format!("127.0.0.1:{grpc}"),
            "--http-addr",
            &format!("127.0.0.1:{}", free_port()),
            "--api-keys",
            &format!("admin={KEY}"),
            "--admin-key-file",
            &dir.join("admin.key").display().to_string(),
        ])
        .env("CENTRALINO_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the centralino binary starts");
    let server = Server {
        child,
        endpoint: format!("http://127.0.0.1:{grpc}"),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(client) = Client::connect(server.endpoint.clone(), KEY).await
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

#[tokio::test]
async fn two_processes_on_one_postgresql_give_a_number_to_exactly_one_order() {
    let Ok(admin_url) = std::env::var("TEST_DATABASE_URL") else {
        // Straight to stderr: the harness captures eprintln! of passing tests.
        use std::io::Write;
        writeln!(
            std::io::stderr(),
            "skipped two_processes_on_one_postgresql...: TEST_DATABASE_URL is not set (this race needs PostgreSQL)"
        )
        .ok();
        return;
    };
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    let admin = Database::connect(&admin_url)
        .await
        .expect("TEST_DATABASE_URL");
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let url = format!("{}/{name}", admin_url.rsplit_once('/').unwrap().0);
    let dir = tempfile::tempdir().unwrap();

    {
        // One at a time: the first applies the migrations.
        let a = start(&url, dir.path()).await;
        let b = start(&url, dir.path()).await;
        let clients = [
            Client::connect(a.endpoint.clone(), KEY).await.unwrap(),
            Client::connect(b.endpoint.clone(), KEY).await.unwrap(),
        ];
        let mut orders = Vec::new();
        for i in 0..20 {
            let order = centralino_sdk::proto::Order {
                display_name: format!("Agenzia {i}"),
                ..Default::default()
            };
            orders.push(
                clients[i % 2]
                    .orders()
                    .create_order(order)
                    .await
                    .unwrap()
                    .id,
            );
        }

        let attempts = orders.iter().enumerate().map(|(i, order)| {
            let numbers = clients[i % 2].numbers();
            let order = order.clone();
            tokio::spawn(async move {
                (
                    order.clone(),
                    numbers.assign_number(&order, "+390299887766", "").await,
                )
            })
        });
        let mut winners = Vec::new();
        let mut named = Vec::new();
        for attempt in attempts {
            match attempt.await.unwrap() {
                (order, Ok(_)) => winners.push(order),
                (_, Err(status)) => {
                    assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");
                    let info = status.get_details_error_info().expect("ErrorInfo");
                    named.push(info.metadata["holder_order_id"].clone());
                }
            }
        }
        assert_eq!(winners.len(), 1, "exactly one order holds the number");
        assert!(
            named.iter().all(|holder| *holder == winners[0]),
            "refusals name the holder"
        );

        // Twenty numbers for one order, split across both processes.
        let loser = orders.iter().find(|o| **o != winners[0]).unwrap().clone();
        let attempts = (0..20).map(|i| {
            let numbers = clients[i % 2].numbers();
            let order = loser.clone();
            tokio::spawn(async move {
                numbers
                    .assign_number(&order, &format!("+3902998811{i:02}"), "")
                    .await
            })
        });
        let mut won = 0;
        for attempt in attempts {
            match attempt.await.unwrap() {
                Ok(_) => won += 1,
                Err(status) => assert_eq!(status.code(), Code::AlreadyExists, "{status:?}"),
            }
        }
        assert_eq!(won, 1, "one order holds one number");
    }

    admin
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await
        .ok();
}
