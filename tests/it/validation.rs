//! Bad input: INVALID_ARGUMENT naming each field, and nothing written.

use centralino_sdk::{proto, tonic::Code};

use crate::helpers::{TestApp, sample_order, violated_fields};

#[tokio::test]
async fn invalid_numbers_and_an_empty_name_are_each_named_and_nothing_is_written() {
    let app = TestApp::spawn().await;
    let orders = app.admin().await.orders();
    orders
        .create_order(sample_order("Agenzia esistente"))
        .await
        .unwrap();
    let before = app.db.orders_snapshot().await;

    let mut bad = sample_order("   ");
    bad.landline_number = "12".to_owned();
    bad.default_agent.as_mut().unwrap().whatsapp_number = "whatsapp:+393331234567".to_owned();
    bad.zones[0].agent.as_mut().unwrap().whatsapp_number = "+39 333".to_owned();
    bad.zones[0].postcodes.push("2015".to_owned());
    bad.contact.as_mut().unwrap().email = "not-an-email".to_owned();
    bad.vapi_assistant_id = "asst_123".to_owned();
    let err = orders.create_order(bad).await.unwrap_err();

    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let mut fields = violated_fields(&err);
    fields.sort();
    assert_eq!(
        fields,
        vec![
            "order.contact.email",
            "order.default_agent.whatsapp_number",
            "order.display_name",
            "order.landline_number",
            "order.vapi_assistant_id",
            "order.zones[0].agent.whatsapp_number",
            "order.zones[0].postcodes[1]",
        ]
    );
    assert!(
        err.message().contains("order.landline_number"),
        "{}",
        err.message()
    );
    assert_eq!(app.db.orders_snapshot().await, before, "nothing written");
    app.finish().await;
}

#[tokio::test]
async fn zones_need_a_unique_name_an_agent_and_something_to_match() {
    let app = TestApp::spawn().await;
    let orders = app.admin().await.orders();
    let mut bad = sample_order("Agenzia Zone");
    let mut twin = bad.zones[0].clone();
    twin.name = "ISOLA".to_owned();
    twin.postcodes.clear();
    twin.keywords.clear();
    twin.agent = None;
    bad.zones.push(twin);
    let err = orders.create_order(bad).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let mut fields = violated_fields(&err);
    fields.sort();
    assert_eq!(
        fields,
        vec![
            "order.zones[1]",
            "order.zones[1].agent",
            "order.zones[1].name"
        ]
    );
    assert!(app.db.orders_snapshot().await.is_empty());
    app.finish().await;
}

#[tokio::test]
async fn an_update_with_an_unknown_mask_path_or_bad_value_changes_nothing() {
    let app = TestApp::spawn().await;
    let orders = app.admin().await.orders();
    let order = orders
        .create_order(sample_order("Agenzia Maschera"))
        .await
        .unwrap();
    let before = app.db.orders_snapshot().await;

    let change = proto::Order {
        id: order.id.clone(),
        display_name: "Nuovo nome".to_owned(),
        landline_number: "abc".to_owned(),
        ..Default::default()
    };
    let err = orders
        .update_order(change.clone(), &["display_name", "landline_number", "etag"])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert_eq!(
        violated_fields(&err),
        vec!["order.landline_number", "update_mask.paths[2]"]
    );

    let err = orders.update_order(change, &[]).await.unwrap_err();
    assert_eq!(violated_fields(&err), vec!["update_mask"]);

    let forged_etag = proto::Order {
        id: order.id.clone(),
        etag: "W/\"whatever\"".to_owned(),
        display_name: "Nuovo nome".to_owned(),
        ..Default::default()
    };
    let err = orders
        .update_order(forged_etag, &["display_name"])
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), vec!["order.etag"]);

    assert_eq!(app.db.orders_snapshot().await, before, "nothing written");
    app.finish().await;
}

#[tokio::test]
async fn list_rejects_a_page_size_over_the_cap_and_forged_or_reused_tokens() {
    let app = TestApp::spawn().await;
    let orders = app.admin().await.orders();
    for i in 0..3 {
        orders
            .create_order(sample_order(&format!("Agenzia {i}")))
            .await
            .unwrap();
    }

    for (request, field) in [
        (
            proto::ListOrdersRequest {
                page_size: 201,
                ..Default::default()
            },
            "page_size",
        ),
        (
            proto::ListOrdersRequest {
                page_size: -1,
                ..Default::default()
            },
            "page_size",
        ),
        (
            proto::ListOrdersRequest {
                page_token: "eyJ2IjoxLCJhZnRlciI6IngifQ".to_owned(),
                ..Default::default()
            },
            "page_token",
        ),
        (
            proto::ListOrdersRequest {
                page_token: "not a token at all".to_owned(),
                ..Default::default()
            },
            "page_token",
        ),
        (
            proto::ListOrdersRequest {
                status: 42,
                ..Default::default()
            },
            "status",
        ),
    ] {
        let err = orders.list_orders(request.clone()).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{request:?}");
        assert_eq!(violated_fields(&err), vec![field], "{request:?}");
    }

    // A real token is bound to its filters.
    let first = orders
        .list_orders(proto::ListOrdersRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    let err = orders
        .list_orders(proto::ListOrdersRequest {
            page_size: 1,
            page_token: first.next_page_token,
            brand: "Iconacasa".to_owned(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), vec!["page_token"]);
    app.finish().await;
}

#[tokio::test]
async fn malformed_ids_are_invalid_arguments() {
    let app = TestApp::spawn().await;
    let orders = app.admin().await.orders();
    for err in [
        orders.get_order("").await.unwrap_err(),
        orders.get_order("ord_123").await.unwrap_err(),
        orders.delete_order("42", "").await.unwrap_err(),
    ] {
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert_eq!(violated_fields(&err), vec!["id"]);
    }
    app.finish().await;
}
