//! The SDK's own behaviour, against a fake OrdersService whose answers the
//! test controls.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use centralino_sdk::{
    Client, proto,
    proto::orders_service_server::{OrdersService, OrdersServiceServer},
    tonic::{self, Code, Request, Response, Status},
};
use tokio_util::sync::CancellationToken;

/// Fails the first `failures` reads with UNAVAILABLE; every write with it too.
#[derive(Clone)]
struct Flaky {
    failures: usize,
    calls: Arc<AtomicUsize>,
    seen_authorization: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Flaky {
    fn note<T>(&self, request: &Request<T>) -> usize {
        let auth = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        self.seen_authorization.lock().unwrap().push(auth);
        self.calls.fetch_add(1, Ordering::SeqCst)
    }
}

#[tonic::async_trait]
impl OrdersService for Flaky {
    async fn create_order(
        &self,
        request: Request<proto::CreateOrderRequest>,
    ) -> Result<Response<proto::CreateOrderResponse>, Status> {
        self.note(&request);
        Err(Status::unavailable("down"))
    }
    async fn get_order(
        &self,
        request: Request<proto::GetOrderRequest>,
    ) -> Result<Response<proto::GetOrderResponse>, Status> {
        if self.note(&request) < self.failures {
            return Err(Status::unavailable("restarting"));
        }
        Ok(Response::new(proto::GetOrderResponse {
            order: Some(proto::Order {
                id: request.into_inner().id,
                ..Default::default()
            }),
        }))
    }
    async fn list_orders(
        &self,
        request: Request<proto::ListOrdersRequest>,
    ) -> Result<Response<proto::ListOrdersResponse>, Status> {
        self.note(&request);
        Err(Status::not_found("never retried"))
    }
    async fn update_order(
        &self,
        _: Request<proto::UpdateOrderRequest>,
    ) -> Result<Response<proto::UpdateOrderResponse>, Status> {
        Err(Status::unimplemented("not used"))
    }
    async fn delete_order(
        &self,
        _: Request<proto::DeleteOrderRequest>,
    ) -> Result<Response<proto::DeleteOrderResponse>, Status> {
        Err(Status::unimplemented("not used"))
    }
    async fn get_setup_status(
        &self,
        _: Request<proto::GetSetupStatusRequest>,
    ) -> Result<Response<proto::GetSetupStatusResponse>, Status> {
        Err(Status::unimplemented("not used"))
    }
}

async fn serve(fake: Flaky) -> (String, CancellationToken) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let token = stop.clone();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(OrdersServiceServer::new(fake))
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(listener),
                token.cancelled_owned(),
            )
            .await
            .unwrap();
    });
    (format!("http://{addr}"), stop)
}

fn flaky(failures: usize) -> Flaky {
    Flaky {
        failures,
        calls: Arc::default(),
        seen_authorization: Arc::default(),
    }
}

#[tokio::test]
async fn reads_are_retried_while_the_server_is_unavailable() {
    let fake = flaky(2);
    let (endpoint, stop) = serve(fake.clone()).await;
    let client = Client::connect(endpoint, "sdk-test-key-000000001")
        .await
        .unwrap();

    let order = client.orders().get_order("o-1").await.unwrap();
    assert_eq!(order.id, "o-1");
    assert_eq!(
        fake.calls.load(Ordering::SeqCst),
        3,
        "two failures, then success"
    );
    assert!(
        fake.seen_authorization
            .lock()
            .unwrap()
            .iter()
            .all(|a| a == "Bearer sdk-test-key-000000001")
    );
    stop.cancel();
}

#[tokio::test]
async fn reads_give_up_after_the_configured_retries() {
    let fake = flaky(usize::MAX);
    let (endpoint, stop) = serve(fake.clone()).await;
    let client = Client::builder(endpoint, "sdk-test-key-000000001")
        .read_retries(2)
        .connect()
        .await
        .unwrap();
    let err = client.orders().get_order("o-1").await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert_eq!(
        fake.calls.load(Ordering::SeqCst),
        3,
        "first try + 2 retries"
    );
    stop.cancel();
}

#[tokio::test]
async fn writes_and_other_errors_are_never_retried() {
    let fake = flaky(0);
    let (endpoint, stop) = serve(fake.clone()).await;
    let client = Client::connect(endpoint, "sdk-test-key-000000001")
        .await
        .unwrap();

    let err = client
        .orders()
        .create_order(proto::Order::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert_eq!(
        fake.calls.load(Ordering::SeqCst),
        1,
        "a write is tried once"
    );

    let err = client
        .orders()
        .list_orders(proto::ListOrdersRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(fake.calls.load(Ordering::SeqCst), 2, "NOT_FOUND is final");
    stop.cancel();
}
