//! One number = one order, under concurrency: on SQLite in one process, and
//! on PostgreSQL across two server instances sharing the database.

use std::collections::HashSet;

use centralino_sdk::{Client, tonic::Code};
use tonic_types::StatusExt;

use crate::helpers::{ADMIN_KEY, TestApp, TestDb, sample_order};

const NUMBER: &str = "+390299887766";

/// Two servers on one PostgreSQL database, or one on SQLite (one writer).
async fn servers() -> Vec<TestApp> {
    let db = TestDb::new().await;
    let postgres = db.url.starts_with("postgres");
    let url = db.url.clone();
    let first = TestApp::spawn_on(db, &[]).await;
    if !postgres {
        return vec![first];
    }
    let second_db = TestDb::shared(&url);
    let second = TestApp::spawn_on(second_db, &[]).await;
    vec![first, second]
}

async fn clients(apps: &[TestApp]) -> Vec<Client> {
    let mut clients = Vec::new();
    for app in apps {
        clients.push(
            Client::builder(app.endpoint(), ADMIN_KEY)
                .connect()
                .await
                .unwrap(),
        );
    }
    clients
}

#[tokio::test]
async fn twenty_orders_racing_for_one_number_leave_exactly_one_holder() {
    let apps = servers().await;
    let clients = clients(&apps).await;
    let mut orders = Vec::new();
    for i in 0..20 {
        orders.push(
            clients[0]
                .orders()
                .create_order(sample_order(&format!("Agenzia {i}")))
                .await
                .unwrap()
                .id,
        );
    }
    let attempts = orders.iter().enumerate().map(|(i, order)| {
        let numbers = clients[i % clients.len()].numbers();
        let order = order.clone();
        tokio::spawn(async move {
            (
                order.clone(),
                numbers.assign_number(&order, NUMBER, "").await,
            )
        })
    });
    let mut winners = Vec::new();
    let mut holders_named = HashSet::new();
    for attempt in attempts {
        let (order, result) = attempt.await.unwrap();
        match result {
            Ok(number) => winners.push((order, number)),
            Err(status) => {
                assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");
                let info = status.get_details_error_info().expect("ErrorInfo");
                assert_eq!(info.reason, "NUMBER_ASSIGNED");
                holders_named.insert(info.metadata["holder_order_id"].clone());
            }
        }
    }
    assert_eq!(winners.len(), 1, "exactly one order gets the number");
    let (winner, number) = &winners[0];
    assert_eq!(&number.order_id, winner);
    assert_eq!(
        holders_named,
        HashSet::from([winner.clone()]),
        "refusals name the holder"
    );
    // The second server first: the first one drops the shared database.
    for app in apps.into_iter().rev() {
        app.finish().await;
    }
}

#[tokio::test]
async fn twenty_numbers_racing_for_one_order_leave_it_exactly_one() {
    let apps = servers().await;
    let clients = clients(&apps).await;
    let order = clients[0]
        .orders()
        .create_order(sample_order("Agenzia Contesa"))
        .await
        .unwrap()
        .id;
    let attempts = (0..20).map(|i| {
        let numbers = clients[i % clients.len()].numbers();
        let order = order.clone();
        let number = format!("+3902998877{i:02}");
        tokio::spawn(async move { numbers.assign_number(&order, &number, "").await })
    });
    let mut won = 0;
    for attempt in attempts {
        match attempt.await.unwrap() {
            Ok(_) => won += 1,
            Err(status) => {
                assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");
                let info = status.get_details_error_info().expect("ErrorInfo");
                assert!(
                    ["ORDER_HAS_NUMBER", "NUMBER_ASSIGNED"].contains(&info.reason.as_str()),
                    "{info:?}"
                );
            }
        }
    }
    assert_eq!(won, 1, "one order holds one number");
    let held = clients[0].numbers().get_number(&order).await.unwrap();
    assert_eq!(held.order_id, order);
    // The second server first: the first one drops the shared database.
    for app in apps.into_iter().rev() {
        app.finish().await;
    }
}
