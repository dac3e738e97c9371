//! The webhook shim's way to this process's own gRPC services: the SDK's
//! client over the server's routes called directly. Still real gRPC (the
//! SDK, protobuf both ways, authentication, the per-RPC span and log line),
//! without a connection: an in-memory HTTP/2 pipe cost the shim's requests
//! two framings and three task hand-offs, about half the server's CPU per
//! assistant request (docs/PERFORMANCE.md, sixth session).

use std::time::Duration;

use centralino_sdk::Transport;
use tonic::{Status, body::Body, codegen::http, service::Routes};
use tower::ServiceExt;

/// `routes` as the SDK's transport. A call still in flight after `deadline`
/// ends with DEADLINE_EXCEEDED and its handler is dropped, as the TCP
/// server does with the SDK's `grpc-timeout`.
pub fn transport(routes: Routes, deadline: Duration) -> Transport {
    centralino_sdk::transport(tower::service_fn(move |request: http::Request<Body>| {
        let call = routes.clone().oneshot(request);
        async move {
            match tokio::time::timeout(deadline, call).await {
                Ok(answered) => answered,
                Err(_) => Ok(
                    Status::deadline_exceeded(format!("no answer within {deadline:?}")).into_http(),
                ),
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use std::{
        convert::Infallible,
        future::Pending,
        task::{Context, Poll},
    };

    use tonic::server::NamedService;

    use super::*;

    /// A service that never answers.
    #[derive(Clone)]
    struct Silent;

    impl NamedService for Silent {
        const NAME: &'static str = "test.Silent";
    }

    impl tower::Service<http::Request<Body>> for Silent {
        type Response = http::Response<Body>;
        type Error = Infallible;
        type Future = Pending<Result<Self::Response, Infallible>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: http::Request<Body>) -> Self::Future {
            std::future::pending()
        }
    }

    /// The status `path` ends with, through `transport` over [`Silent`].
    async fn status_of(path: &str, deadline: Duration) -> Status {
        let request = http::Request::post(path).body(Body::empty()).unwrap();
        let response = transport(Routes::new(Silent), deadline)
            .oneshot(request)
            .await
            .unwrap();
        Status::from_header_map(response.headers()).expect("a trailers-only status")
    }

    #[tokio::test]
    async fn a_call_past_its_deadline_ends_with_deadline_exceeded() {
        let status = status_of("/test.Silent/Call", Duration::from_millis(50)).await;
        assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
        assert!(status.message().contains("50ms"), "{}", status.message());
    }

    #[tokio::test]
    async fn an_unknown_method_is_unimplemented_like_over_the_network() {
        let status = status_of("/test.Nobody/Call", Duration::from_secs(10)).await;
        assert_eq!(status.code(), tonic::Code::Unimplemented);
    }
}
