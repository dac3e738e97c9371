//! The process around the services: health, readiness, first start.

use std::time::Duration;

use centralino_sdk::{Client, proto};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::helpers::{TestApp, TestDb, sample_order};

#[tokio::test]
async fn health_and_readiness_answer_on_both_listeners() {
    let app = TestApp::spawn().await;

    let http = reqwest::Client::new();
    let healthz = http
        .get(format!("http://{}/healthz", app.http_addr))
        .send()
        .await
        .unwrap();
    assert_eq!(healthz.status(), 200);
    let readyz: serde_json::Value = http
        .get(format!("http://{}/readyz", app.http_addr))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(readyz["status"], "ready");
    let missing = http
        .get(format!("http://{}/nope", app.http_addr))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let body: serde_json::Value = missing.json().await.unwrap();
    assert_eq!(body["error"], "not_found");

    let channel = tonic::transport::Endpoint::from_shared(app.endpoint())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel);
    for service in ["", "centralino.v1.OrdersService"] {
        let status = health
            .check(HealthCheckRequest {
                service: service.to_owned(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "{service:?}");
    }
    app.finish().await;
}

#[tokio::test]
async fn a_first_start_without_keys_creates_a_working_admin_key() {
    let keys = tempfile::tempdir().unwrap();
    let path = keys.path().join("admin.key");
    let key_flag = vec!["--admin-key-file".to_owned(), path.display().to_string()];
    let app = TestApp::spawn_with_args(TestDb::new().await, key_flag.clone()).await;
    let key = std::fs::read_to_string(&path).expect("admin key file created");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "readable by its owner only");
    }
    let admin = Client::connect(app.endpoint(), key.trim()).await.unwrap();
    let order = admin
        .orders()
        .create_order(sample_order("Prima agenzia"))
        .await
        .unwrap();
    assert_eq!(order.status, proto::OrderStatus::Setup as i32);

    // A restart reads the same key instead of minting another.
    let db = app.stop().await;
    let app = TestApp::spawn_with_args(db, key_flag).await;
    assert_eq!(std::fs::read_to_string(&path).unwrap(), key);
    let admin = Client::connect(app.endpoint(), key.trim()).await.unwrap();
    assert_eq!(admin.orders().get_order(&order.id).await.unwrap(), order);
    app.finish().await;
}

#[tokio::test]
async fn data_survives_a_restart_on_the_same_database() {
    let app = TestApp::spawn().await;
    let order = app
        .admin()
        .await
        .orders()
        .create_order(sample_order("Agenzia Persistente"))
        .await
        .unwrap();
    let db = app.stop().await;
    let app = TestApp::spawn_on(db, &[]).await;
    let read = tokio::time::timeout(
        Duration::from_secs(20),
        app.admin().await.orders().get_order(&order.id),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(read, order);
    app.finish().await;
}
