//! Orders CRUD through the SDK.

use std::collections::HashSet;

use centralino_sdk::{proto, tonic::Code};

use crate::helpers::{TestApp, reason, sample_order};

#[tokio::test]
async fn an_order_is_created_read_updated_by_mask_and_cancelled() {
    let app = TestApp::spawn().await;
    let orders = app.admin().await.orders();

    // Create: normalised numbers, SETUP, an etag.
    let created = orders
        .create_order(sample_order("Tempocasa Milano Isola"))
        .await
        .unwrap();
    assert!(!created.id.is_empty());
    assert_eq!(created.status, proto::OrderStatus::Setup as i32);
    assert_eq!(created.landline_number, "+390212345678");
    assert!(!created.etag.is_empty());
    assert!(created.create_time.is_some());

    // Get returns what was stored.
    let read = orders.get_order(&created.id).await.unwrap();
    assert_eq!(read, created);

    // Update by mask: only the named field changes.
    let mut change = proto::Order {
        id: created.id.clone(),
        etag: created.etag.clone(),
        display_name: "Tempocasa Isola".to_owned(),
        brand: "SHOULD NOT BE WRITTEN".to_owned(),
        ..Default::default()
    };
    let updated = orders
        .update_order(change.clone(), &["display_name"])
        .await
        .unwrap();
    assert_eq!(updated.display_name, "Tempocasa Isola");
    assert_eq!(updated.brand, created.brand);
    assert_eq!(updated.zones, created.zones);
    assert_eq!(updated.default_agent, created.default_agent);
    assert_eq!(updated.contact, created.contact);
    assert_eq!(updated.landline_number, created.landline_number);
    assert_ne!(updated.etag, created.etag);

    // The etag read before that update is stale now.
    change.display_name = "Lost update".to_owned();
    let stale = orders
        .update_order(change, &["display_name"])
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted, "{stale:?}");
    assert_eq!(reason(&stale).as_deref(), Some("ETAG_MISMATCH"));
    assert_eq!(orders.get_order(&created.id).await.unwrap(), updated);

    // Cancel keeps the order, with its cancel time.
    let cancelled = orders
        .delete_order(&created.id, &updated.etag)
        .await
        .unwrap();
    assert_eq!(cancelled.status, proto::OrderStatus::Cancelled as i32);
    assert!(cancelled.cancel_time.is_some());
    assert_eq!(orders.get_order(&created.id).await.unwrap(), cancelled);

    // Cancelling again changes nothing; a cancelled order cannot be revived.
    assert_eq!(
        orders.delete_order(&created.id, "").await.unwrap(),
        cancelled
    );
    let revive = proto::Order {
        id: created.id.clone(),
        status: proto::OrderStatus::Active as i32,
        ..Default::default()
    };
    let err = orders.update_order(revive, &["status"]).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    app.finish().await;
}

#[tokio::test]
async fn listing_120_orders_page_by_page_returns_each_exactly_once() {
    let app = TestApp::spawn().await;
    let orders = app.admin().await.orders();
    let mut created = Vec::new();
    for i in 0..120 {
        let mut order = sample_order(&format!("Agenzia {i:03}"));
        order.brand = if i % 2 == 0 { "Tempocasa" } else { "Iconacasa" }.to_owned();
        created.push(orders.create_order(order).await.unwrap().id);
    }

    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = orders
            .list_orders(proto::ListOrdersRequest {
                page_size: 7,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(page.orders.len() <= 7);
        seen.extend(page.orders.into_iter().map(|o| o.id));
        pages += 1;
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(pages, 18, "120 orders in pages of 7");
    assert_eq!(seen.len(), 120, "no duplicates");
    assert_eq!(
        seen.iter().collect::<HashSet<_>>().len(),
        120,
        "no duplicates"
    );
    // Ids are time-ordered, so pages come back in creation order.
    assert_eq!(seen, created, "no gaps, creation order");

    // Filters: one brand, and one status.
    let mut brand_count = 0;
    let mut token = String::new();
    loop {
        let page = orders
            .list_orders(proto::ListOrdersRequest {
                page_size: 50,
                page_token: token,
                brand: "Iconacasa".to_owned(),
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(page.orders.iter().all(|o| o.brand == "Iconacasa"));
        brand_count += page.orders.len();
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(brand_count, 60);

    orders.delete_order(&created[5], "").await.unwrap();
    let cancelled = orders
        .list_orders(proto::ListOrdersRequest {
            status: proto::OrderStatus::Cancelled as i32,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        cancelled.orders.iter().map(|o| &o.id).collect::<Vec<_>>(),
        vec![&created[5]]
    );
    assert!(cancelled.next_page_token.is_empty());
    app.finish().await;
}

#[tokio::test]
async fn status_changes_follow_the_lifecycle() {
    let app = TestApp::spawn().await;
    let orders = app.admin().await.orders();
    let order = orders
        .create_order(sample_order("Agenzia Brera"))
        .await
        .unwrap();
    let set_status = |status: proto::OrderStatus| proto::Order {
        id: order.id.clone(),
        status: status as i32,
        ..Default::default()
    };

    let err = orders
        .update_order(set_status(proto::OrderStatus::Suspended), &["status"])
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Code::FailedPrecondition,
        "SETUP -> SUSPENDED: {err:?}"
    );
    assert_eq!(reason(&err).as_deref(), Some("INVALID_STATUS_TRANSITION"));

    for next in [
        proto::OrderStatus::Active,
        proto::OrderStatus::Suspended,
        proto::OrderStatus::Active,
    ] {
        let updated = orders
            .update_order(set_status(next), &["status"])
            .await
            .unwrap();
        assert_eq!(updated.status, next as i32);
    }

    let err = orders
        .update_order(set_status(proto::OrderStatus::Setup), &["status"])
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Code::FailedPrecondition,
        "ACTIVE -> SETUP: {err:?}"
    );
    let err = orders
        .update_order(set_status(proto::OrderStatus::Cancelled), &["status"])
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Code::FailedPrecondition,
        "cancel through update: {err:?}"
    );
    assert_eq!(
        orders.get_order(&order.id).await.unwrap().status,
        proto::OrderStatus::Active as i32
    );
    app.finish().await;
}

#[tokio::test]
async fn concurrent_updates_with_one_etag_let_exactly_one_win() {
    let app = TestApp::spawn().await;
    let orders = app.admin().await.orders();
    let order = orders
        .create_order(sample_order("Agenzia Navigli"))
        .await
        .unwrap();

    let attempts = (0..8).map(|i| {
        let orders = orders.clone();
        let change = proto::Order {
            id: order.id.clone(),
            etag: order.etag.clone(),
            display_name: format!("Writer {i}"),
            ..Default::default()
        };
        tokio::spawn(async move { orders.update_order(change, &["display_name"]).await })
    });
    let mut won = Vec::new();
    let mut aborted = 0;
    for attempt in attempts {
        match attempt.await.unwrap() {
            Ok(order) => won.push(order),
            Err(status) => {
                assert_eq!(status.code(), Code::Aborted, "{status:?}");
                aborted += 1;
            }
        }
    }
    assert_eq!(won.len(), 1, "exactly one writer wins");
    assert_eq!(aborted, 7);
    assert_eq!(orders.get_order(&order.id).await.unwrap(), won[0]);
    app.finish().await;
}

#[tokio::test]
async fn an_unknown_order_is_not_found() {
    let app = TestApp::spawn().await;
    let orders = app.admin().await.orders();
    let missing = "0193a1b2-7c3d-7e4f-8a9b-0c1d2e3f4a5b";
    for err in [
        orders.get_order(missing).await.unwrap_err(),
        orders.delete_order(missing, "").await.unwrap_err(),
        orders
            .update_order(
                proto::Order {
                    id: missing.to_owned(),
                    display_name: "x".to_owned(),
                    ..Default::default()
                },
                &["display_name"],
            )
            .await
            .unwrap_err(),
    ] {
        assert_eq!(err.code(), Code::NotFound, "{err:?}");
        assert_eq!(reason(&err).as_deref(), Some("ORDER_NOT_FOUND"));
    }
    app.finish().await;
}
