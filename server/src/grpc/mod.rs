//! gRPC transport: the services, reflection (v1 and v1alpha, for grpcurl 1.8),
//! health, authentication and one span per RPC.

pub mod auth;
pub mod calls;
pub mod convert;
pub mod in_process;
pub mod notifications;
pub mod numbers;
pub mod orders;
pub mod status;

use std::{sync::Arc, time::Duration};

use centralino_api::v1::{
    calls_service_server::CallsServiceServer,
    notifications_service_server::NotificationsServiceServer,
    number_provisioning_service_server::NumberProvisioningServiceServer,
    orders_service_server::OrdersServiceServer,
};
use tonic::{
    service::Routes,
    transport::{Server, server::TcpIncoming},
};
use tonic_health::server::HealthReporter;
use tower_http::trace::TraceLayer;
use tracing::Span;

use crate::{
    auth::ApiKeys,
    services::{CallsService, NotificationsService, NumbersService, OrdersService},
    telemetry,
};

/// gRPC service names, as health and reflection know them.
pub const ORDERS_SERVICE: &str = "centralino.v1.OrdersService";
pub const NUMBERS_SERVICE: &str = "centralino.v1.NumberProvisioningService";
pub const CALLS_SERVICE: &str = "centralino.v1.CallsService";
pub const NOTIFICATIONS_SERVICE: &str = "centralino.v1.NotificationsService";
pub const SERVICES: [&str; 4] = [
    ORDERS_SERVICE,
    NUMBERS_SERVICE,
    CALLS_SERVICE,
    NOTIFICATIONS_SERVICE,
];

/// Builds every gRPC service, each call in its own span ending with one
/// outcome line; returns the router and the health reporter that start-up
/// and shutdown flip. The same routes serve the TCP listener and, in this
/// process, the webhook shim ([`in_process::transport`]).
pub async fn routes(
    orders: OrdersService,
    numbers: NumbersService,
    calls: CallsService,
    notifications: NotificationsService,
    keys: Arc<ApiKeys>,
) -> Result<(Routes, HealthReporter), tonic_reflection::server::Error> {
    let (health, health_service) = tonic_health::server::health_reporter();
    for service in SERVICES {
        health
            .set_service_status(service, tonic_health::ServingStatus::Serving)
            .await;
    }

    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(centralino_api::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            // google.rpc error details, so grpcurl can print BadRequest/ErrorInfo.
            .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;

    let authenticate = auth::Authenticate::new(keys);
    let mut builder = Routes::builder();
    builder
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(OrdersServiceServer::with_interceptor(
            orders::OrdersApi::new(orders, numbers.clone()),
            authenticate.clone(),
        ))
        .add_service(NumberProvisioningServiceServer::with_interceptor(
            numbers::NumbersApi::new(numbers),
            authenticate.clone(),
        ))
        .add_service(CallsServiceServer::with_interceptor(
            calls::CallsApi::new(calls),
            authenticate.clone(),
        ))
        .add_service(NotificationsServiceServer::with_interceptor(
            notifications::NotificationsApi::new(notifications),
            authenticate,
        ));
    let trace = TraceLayer::new_for_grpc()
        .make_span_with(|request: &axum::http::Request<_>| telemetry::rpc_span(request))
        .on_request(())
        .on_response(on_response)
        .on_body_chunk(())
        .on_eos(on_eos)
        .on_failure(());
    let routes = Routes::from(builder.routes().into_axum_router().layer(trace)).prepare();
    Ok((routes, health))
}

/// Serves `routes` on `listener` until `shutdown` completes.
pub async fn serve(
    routes: Routes,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    // Without TCP_NODELAY, responses larger than a segment wait ~40 ms for
    // the peer's delayed ACK (Nagle): a list page took 44 ms.
    Server::builder()
        .add_routes(routes)
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await
}

fn on_response<B>(response: &axum::http::Response<B>, latency: Duration, span: &Span) {
    telemetry::record_latency(span, latency);
    // Errors are "trailers-only": their status is already in the headers.
    telemetry::log_rpc_end(response.headers());
}

fn on_eos(trailers: Option<&axum::http::HeaderMap>, _: Duration, _: &Span) {
    if let Some(trailers) = trailers {
        telemetry::log_rpc_end(trailers);
    }
}
