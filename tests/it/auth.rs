//! Every Orders RPC x every kind of caller.

use centralino_sdk::{
    Client, proto,
    tonic::{self, Code},
};

use crate::helpers::{ADMIN_KEY, INGEST_KEY, SERVICE_KEY, TestApp, sample_order};

const VIEWER_A: &str = "test-viewer-a-key-00000001";
const VIEWER_B: &str = "test-viewer-b-key-00000001";

/// A raw client with an arbitrary `authorization` value (or none).
async fn raw_client(
    app: &TestApp,
    authorization: Option<&str>,
) -> proto::orders_service_client::OrdersServiceClient<
    tonic::service::interceptor::InterceptedService<
        tonic::transport::Channel,
        impl tonic::service::Interceptor + Clone,
    >,
> {
    let channel = tonic::transport::Endpoint::from_shared(app.endpoint())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let authorization =
        authorization.map(|a| a.parse::<tonic::metadata::AsciiMetadataValue>().unwrap());
    proto::orders_service_client::OrdersServiceClient::with_interceptor(
        channel,
        move |mut request: tonic::Request<()>| {
            if let Some(value) = &authorization {
                request
                    .metadata_mut()
                    .insert("authorization", value.clone());
            }
            Ok(request)
        },
    )
}

/// The code each RPC gives one caller. Writes run against order B (a
/// throwaway), reads against order A, so a permitted cancel does no harm.
async fn codes(
    mut client: proto::orders_service_client::OrdersServiceClient<
        tonic::service::interceptor::InterceptedService<
            tonic::transport::Channel,
            impl tonic::service::Interceptor + Clone,
        >,
    >,
    read_id: &str,
    write_id: &str,
) -> [(&'static str, Code); 5] {
    let create = code(
        client
            .create_order(proto::CreateOrderRequest {
                order: Some(sample_order("Matrix")),
            })
            .await,
    );
    let get = code(
        client
            .get_order(proto::GetOrderRequest {
                id: read_id.to_owned(),
            })
            .await,
    );
    let list = code(
        client
            .list_orders(proto::ListOrdersRequest::default())
            .await,
    );
    let update = code(
        client
            .update_order(proto::UpdateOrderRequest {
                order: Some(proto::Order {
                    id: write_id.to_owned(),
                    brand: "Matrix".to_owned(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["brand".to_owned()],
                }),
            })
            .await,
    );
    let delete = code(
        client
            .delete_order(proto::DeleteOrderRequest {
                id: write_id.to_owned(),
                etag: String::new(),
            })
            .await,
    );
    [
        ("CreateOrder", create),
        ("GetOrder", get),
        ("ListOrders", list),
        ("UpdateOrder", update),
        ("DeleteOrder", delete),
    ]
}

#[tokio::test]
async fn every_orders_rpc_answers_each_kind_of_caller_as_the_roles_say() {
    // Viewer keys name orders, so create the orders first, then restart with
    // the viewer keys configured.
    let app = TestApp::spawn().await;
    let admin = app.admin().await.orders();
    let a = admin.create_order(sample_order("Agenzia A")).await.unwrap();
    let b = admin.create_order(sample_order("Agenzia B")).await.unwrap();
    let db = app.stop().await;
    let app = TestApp::spawn_on(
        db,
        &[
            format!("viewer:{}={VIEWER_A}", a.id),
            format!("viewer:{}={VIEWER_B}", b.id),
        ],
    )
    .await;

    use Code::{Ok as OK, PermissionDenied as DENIED, Unauthenticated as UNAUTH};
    let bearer = |key: &str| format!("Bearer {key}");
    let admin_bearer = bearer(ADMIN_KEY);
    let cases: [(&str, Option<String>, [Code; 5]); 7] = [
        ("no key", None, [UNAUTH; 5]),
        (
            "unknown key",
            Some(bearer("not-a-configured-key-0001")),
            [UNAUTH; 5],
        ),
        ("not a bearer", Some(ADMIN_KEY.to_owned()), [UNAUTH; 5]),
        (
            "viewer of another order",
            Some(bearer(VIEWER_B)),
            [DENIED, DENIED, OK, DENIED, DENIED],
        ),
        (
            "viewer of own order",
            Some(bearer(VIEWER_A)),
            [DENIED, OK, OK, DENIED, DENIED],
        ),
        ("ingest", Some(bearer(INGEST_KEY)), [DENIED; 5]),
        (
            "service",
            Some(bearer(SERVICE_KEY)),
            [DENIED, OK, OK, DENIED, DENIED],
        ),
    ];
    for (caller, authorization, expected) in cases {
        let client = raw_client(&app, authorization.as_deref()).await;
        let got = codes(client, &a.id, &b.id).await;
        for ((rpc, code), want) in got.into_iter().zip(expected) {
            assert_eq!(code, want, "{caller} calling {rpc}");
        }
    }
    // Admin last: it may write, and it cancels order B.
    let client = raw_client(&app, Some(&admin_bearer)).await;
    for (rpc, code) in codes(client, &a.id, &b.id).await {
        assert_eq!(code, Code::Ok, "admin calling {rpc}");
    }

    // Nothing the refused callers sent was written.
    let admin = app.admin().await.orders();
    assert_eq!(admin.get_order(&a.id).await.unwrap(), a);
    app.finish().await;
}

#[tokio::test]
async fn a_viewer_lists_only_its_own_order() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await.orders();
    let a = admin.create_order(sample_order("Agenzia A")).await.unwrap();
    admin.create_order(sample_order("Agenzia B")).await.unwrap();
    let db = app.stop().await;
    let app = TestApp::spawn_on(db, &[format!("viewer:{}={VIEWER_A}", a.id)]).await;

    let viewer = app.client(VIEWER_A).await.orders();
    let page = viewer
        .list_orders(proto::ListOrdersRequest::default())
        .await
        .unwrap();
    assert_eq!(page.orders, vec![a]);
    let all = app
        .admin()
        .await
        .orders()
        .list_orders(proto::ListOrdersRequest::default())
        .await
        .unwrap();
    assert_eq!(all.orders.len(), 2);
    app.finish().await;
}

#[tokio::test]
async fn the_sdk_sends_its_key_and_a_wrong_key_is_unauthenticated() {
    let app = TestApp::spawn().await;
    let stranger = Client::connect(app.endpoint(), "a-key-nobody-configured")
        .await
        .unwrap();
    let err = stranger
        .orders()
        .list_orders(proto::ListOrdersRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(
        Client::connect(app.endpoint(), "has spaces in it")
            .await
            .is_err()
    );
    app.finish().await;
}

fn code<T>(result: Result<T, tonic::Status>) -> Code {
    match result {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

#[tokio::test]
async fn number_rpcs_refuse_viewers_and_ingest_writes_and_viewers_read_only_their_order() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let mut a = sample_order("Agenzia A");
    a.landline_number = "+393471112223".to_owned();
    let a = admin.orders().create_order(a).await.unwrap();
    let b = admin
        .orders()
        .create_order(sample_order("Agenzia B"))
        .await
        .unwrap();
    admin
        .numbers()
        .assign_number(&a.id, "+390287654321", "")
        .await
        .unwrap();
    admin
        .numbers()
        .assign_number(&b.id, "+390287654322", "")
        .await
        .unwrap();
    let db = app.stop().await;
    let app = TestApp::spawn_on(db, &[format!("viewer:{}={VIEWER_A}", a.id)]).await;

    for key in [VIEWER_A, INGEST_KEY, SERVICE_KEY] {
        let numbers = app.client(key).await.numbers();
        for err in [
            numbers
                .assign_number(&a.id, "+390287654329", "")
                .await
                .unwrap_err(),
            numbers.link_number(&a.id).await.unwrap_err(),
            numbers.release_number(&a.id, false).await.unwrap_err(),
        ] {
            assert_eq!(err.code(), Code::PermissionDenied, "{key}: {err:?}");
        }
    }

    let viewer = app.client(VIEWER_A).await;
    viewer.numbers().get_number(&a.id).await.unwrap();
    viewer.orders().get_setup_status(&a.id).await.unwrap();
    viewer
        .numbers()
        .get_forwarding_instructions(&a.id, 0)
        .await
        .unwrap();
    viewer.numbers().verify_number(&a.id).await.unwrap();
    for err in [
        viewer.numbers().get_number(&b.id).await.unwrap_err(),
        viewer.orders().get_setup_status(&b.id).await.unwrap_err(),
        viewer
            .numbers()
            .get_forwarding_instructions(&b.id, 0)
            .await
            .unwrap_err(),
        viewer.numbers().verify_number(&b.id).await.unwrap_err(),
    ] {
        assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    }
    let ingest = app.client(INGEST_KEY).await;
    let err = ingest.orders().get_setup_status(&a.id).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    // Nothing changed: both numbers are still held.
    let admin = app.admin().await;
    assert_eq!(
        admin.numbers().get_number(&a.id).await.unwrap().order_id,
        a.id
    );
    app.finish().await;
}
