//! Typed Rust client for the Centralino gRPC API.
//!
//! Every call carries the API key as `authorization: Bearer <key>` and a
//! deadline; idempotent reads are retried with backoff when the server is
//! `UNAVAILABLE`. The generated messages are re-exported as [`proto`], and RPC
//! failures are plain [`tonic::Status`] values, so their `google.rpc` details
//! (field violations, reasons) are there to read.
//!
//! ```no_run
//! use centralino_sdk::{Client, proto};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let client = Client::connect("http://127.0.0.1:50051", "ck_my_admin_key").await?;
//! let order = client
//!     .orders()
//!     .create_order(proto::Order {
//!         display_name: "Tempocasa Milano Isola".into(),
//!         brand: "Tempocasa".into(),
//!         landline_number: "+390212345678".into(),
//!         ..Default::default()
//!     })
//!     .await?;
//! let same = client.orders().get_order(&order.id).await?;
//! assert_eq!(same.display_name, "Tempocasa Milano Isola");
//! # Ok(())
//! # }
//! ```

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use tonic::{
    Code, Request, Status,
    body::Body,
    codegen::http,
    metadata::{Ascii, MetadataValue},
    service::{Interceptor, interceptor::InterceptedService},
    transport::{Channel, Endpoint},
};
use tower::{BoxError, Service, ServiceExt, util::BoxCloneSyncService};

/// The generated `centralino.v1` types: messages, enums and raw clients.
pub use centralino_api::v1 as proto;
pub use tonic;

use proto::{
    number_provisioning_service_client::NumberProvisioningServiceClient,
    orders_service_client::OrdersServiceClient,
};

/// Default deadline of one call.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time allowed to open the connection.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default number of retries of an idempotent read on UNAVAILABLE.
pub const DEFAULT_READ_RETRIES: usize = 3;

/// What can go wrong before any RPC is made.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid endpoint {endpoint:?}: {source}")]
    InvalidEndpoint {
        endpoint: String,
        source: tonic::transport::Error,
    },
    #[error("cannot connect to {endpoint}: {source}")]
    Connect {
        endpoint: String,
        source: tonic::transport::Error,
    },
    #[error("the API key must be printable ASCII without spaces")]
    InvalidApiKey,
}

/// Options of a [`Client`]; start from [`Client::builder`].
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    endpoint: String,
    api_key: String,
    timeout: Duration,
    connect_timeout: Duration,
    read_retries: usize,
}

impl ClientBuilder {
    /// Deadline of every call (sent to the server as `grpc-timeout`).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Retries of idempotent reads on UNAVAILABLE; 0 disables them.
    pub fn read_retries(mut self, retries: usize) -> Self {
        self.read_retries = retries;
        self
    }

    /// A client over a channel the caller built; the builder's endpoint and
    /// connect timeout are not used.
    pub fn with_channel(self, channel: Channel) -> Result<Client, Error> {
        self.with_transport(transport(channel))
    }

    /// A client over any [`Transport`], such as a server's own routes in the
    /// same process made one with [`transport`] (no connection, no HTTP/2
    /// framing); the builder's endpoint and connect timeout are not used.
    pub fn with_transport(self, transport: Transport) -> Result<Client, Error> {
        let (_, auth) = self.endpoint_and_auth()?;
        Ok(Client {
            transport,
            auth,
            read_retries: self.read_retries,
        })
    }

    /// A client that connects on first use (for a server that is starting).
    pub fn connect_lazy(self) -> Result<Client, Error> {
        let (endpoint, auth) = self.endpoint_and_auth()?;
        Ok(Client {
            transport: transport(endpoint.connect_lazy()),
            auth,
            read_retries: self.read_retries,
        })
    }

    fn endpoint_and_auth(&self) -> Result<(Endpoint, Auth), Error> {
        if self.api_key.is_empty() || !self.api_key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Error::InvalidApiKey);
        }
        let bearer: MetadataValue<Ascii> = format!("Bearer {}", self.api_key)
            .parse()
            .map_err(|_| Error::InvalidApiKey)?;
        let endpoint = Endpoint::from_shared(self.endpoint.clone())
            .map_err(|source| Error::InvalidEndpoint {
                endpoint: self.endpoint.clone(),
                source,
            })?
            .connect_timeout(self.connect_timeout)
            .timeout(self.timeout)
            .tcp_nodelay(true);
        Ok((
            endpoint,
            Auth {
                bearer,
                timeout: self.timeout,
            },
        ))
    }

    pub async fn connect(self) -> Result<Client, Error> {
        let (endpoint, auth) = self.endpoint_and_auth()?;
        let channel = endpoint.connect().await.map_err(|source| Error::Connect {
            endpoint: self.endpoint.clone(),
            source,
        })?;
        Ok(Client {
            transport: transport(channel),
            auth,
            read_retries: self.read_retries,
        })
    }
}

/// How a [`Client`] reaches the server: a network [`Channel`], or a service
/// in the same process ([`ClientBuilder::with_transport`]). Its errors are
/// already the statuses tonic would make of them (UNAVAILABLE for a refused
/// connection, …).
pub type Transport = BoxCloneSyncService<http::Request<Body>, http::Response<Body>, Status>;

/// Any service that answers gRPC's HTTP requests, as a [`Transport`].
pub fn transport<S>(service: S) -> Transport
where
    S: Service<http::Request<Body>, Response = http::Response<Body>>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    BoxCloneSyncService::new(service.map_err(|err| Status::from_error(err.into())))
}

/// A connection to Centralino; cheap to clone, safe to share.
#[derive(Debug, Clone)]
pub struct Client {
    transport: Transport,
    auth: Auth,
    read_retries: usize,
}

impl Client {
    /// Connects with default deadlines and retries.
    pub async fn connect(
        endpoint: impl Into<String>,
        api_key: impl Into<String>,
    ) -> Result<Self, Error> {
        Self::builder(endpoint, api_key).connect().await
    }

    pub fn builder(endpoint: impl Into<String>, api_key: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            endpoint: endpoint.into(),
            api_key: api_key.into(),
            timeout: DEFAULT_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            read_retries: DEFAULT_READ_RETRIES,
        }
    }

    /// `centralino.v1.OrdersService`.
    pub fn orders(&self) -> Orders {
        Orders {
            inner: OrdersServiceClient::with_interceptor(self.transport.clone(), self.auth.clone()),
            read_retries: self.read_retries,
        }
    }
}

impl Client {
    /// `centralino.v1.CallsService` (the generated client, key and deadline attached).
    pub fn calls(&self) -> proto::calls_service_client::CallsServiceClient<Authed> {
        proto::calls_service_client::CallsServiceClient::with_interceptor(
            self.transport.clone(),
            self.auth.clone(),
        )
    }

    /// NotificationsService (WhatsApp summaries): raw generated client.
    pub fn notifications(
        &self,
    ) -> proto::notifications_service_client::NotificationsServiceClient<Authed> {
        proto::notifications_service_client::NotificationsServiceClient::with_interceptor(
            self.transport.clone(),
            self.auth.clone(),
        )
    }
    /// `centralino.v1.NumberProvisioningService`.
    pub fn numbers(&self) -> Numbers {
        Numbers {
            inner: NumberProvisioningServiceClient::with_interceptor(
                self.transport.clone(),
                self.auth.clone(),
            ),
            read_retries: self.read_retries,
        }
    }
}

/// Adds the API key and the deadline to every call.
#[derive(Debug, Clone)]
pub struct Auth {
    bearer: MetadataValue<Ascii>,
    timeout: Duration,
}

impl Interceptor for Auth {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request
            .metadata_mut()
            .insert("authorization", self.bearer.clone());
        request.set_timeout(self.timeout);
        Ok(request)
    }
}

/// A transport that attaches the key and deadline: what [`Orders::raw`] uses.
pub type Authed = InterceptedService<Transport, Auth>;

/// Runs an idempotent call, retrying UNAVAILABLE with jittered backoff.
async fn with_read_retries<T, F, Fut>(retries: usize, call: F) -> Result<T, Status>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Status>>,
{
    let backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(50))
        .with_max_delay(Duration::from_secs(2))
        .with_max_times(retries)
        .with_jitter();
    call.retry(backoff)
        .sleep(tokio::time::sleep)
        .when(|status: &Status| status.code() == Code::Unavailable)
        .await
}

/// Typed calls of `centralino.v1.OrdersService`.
#[derive(Debug, Clone)]
pub struct Orders {
    inner: OrdersServiceClient<Authed>,
    read_retries: usize,
}

impl Orders {
    /// Creates an order (admin).
    pub async fn create_order(&self, order: proto::Order) -> Result<proto::Order, Status> {
        let response = self
            .inner
            .clone()
            .create_order(proto::CreateOrderRequest { order: Some(order) })
            .await?;
        required(response.into_inner().order)
    }

    /// Reads one order; retried on UNAVAILABLE.
    pub async fn get_order(&self, id: &str) -> Result<proto::Order, Status> {
        let request = proto::GetOrderRequest { id: id.to_owned() };
        let response = with_read_retries(self.read_retries, || {
            let mut client = self.inner.clone();
            let request = request.clone();
            async move { client.get_order(request).await }
        })
        .await?;
        required(response.into_inner().order)
    }

    /// Reads one page of orders; retried on UNAVAILABLE.
    pub async fn list_orders(
        &self,
        request: proto::ListOrdersRequest,
    ) -> Result<proto::ListOrdersResponse, Status> {
        let response = with_read_retries(self.read_retries, || {
            let mut client = self.inner.clone();
            let request = request.clone();
            async move { client.list_orders(request).await }
        })
        .await?;
        Ok(response.into_inner())
    }

    /// Updates the fields named by `paths` (admin). Set `order.etag` to update
    /// only the version you read.
    pub async fn update_order(
        &self,
        order: proto::Order,
        paths: &[&str],
    ) -> Result<proto::Order, Status> {
        let response = self
            .inner
            .clone()
            .update_order(proto::UpdateOrderRequest {
                order: Some(order),
                update_mask: Some(prost_types::FieldMask {
                    paths: paths.iter().map(|p| (*p).to_owned()).collect(),
                }),
            })
            .await?;
        required(response.into_inner().order)
    }

    /// Cancels an order (admin). An empty `etag` skips the version check.
    pub async fn delete_order(&self, id: &str, etag: &str) -> Result<proto::Order, Status> {
        let response = self
            .inner
            .clone()
            .delete_order(proto::DeleteOrderRequest {
                id: id.to_owned(),
                etag: etag.to_owned(),
            })
            .await?;
        required(response.into_inner().order)
    }

    /// The order's setup checklist; retried on UNAVAILABLE.
    pub async fn get_setup_status(
        &self,
        id: &str,
    ) -> Result<proto::GetSetupStatusResponse, Status> {
        let request = proto::GetSetupStatusRequest { id: id.to_owned() };
        let response = with_read_retries(self.read_retries, || {
            let mut client = self.inner.clone();
            let request = request.clone();
            async move { client.get_setup_status(request).await }
        })
        .await?;
        Ok(response.into_inner())
    }

    /// Cancels an order and returns the whole answer: the order, the number
    /// it released and the codes that stop the agency's forwarding.
    pub async fn cancel_order(
        &self,
        id: &str,
        etag: &str,
    ) -> Result<proto::DeleteOrderResponse, Status> {
        let response = self
            .inner
            .clone()
            .delete_order(proto::DeleteOrderRequest {
                id: id.to_owned(),
                etag: etag.to_owned(),
            })
            .await?;
        Ok(response.into_inner())
    }

    /// The raw generated client, with the key and deadline already attached.
    pub fn raw(&self) -> OrdersServiceClient<Authed> {
        self.inner.clone()
    }
}

/// Typed calls of `centralino.v1.NumberProvisioningService`.
#[derive(Debug, Clone)]
pub struct Numbers {
    inner: NumberProvisioningServiceClient<Authed>,
    read_retries: usize,
}

fn required_number(
    number: Option<proto::PhoneNumberAssignment>,
) -> Result<proto::PhoneNumberAssignment, Status> {
    number.ok_or_else(|| Status::internal("the server answered without a number"))
}

impl Numbers {
    /// Assigns a number to an order and links it in Vapi (admin). An empty
    /// `twilio_sid` lets the server look it up.
    pub async fn assign_number(
        &self,
        order_id: &str,
        phone_number: &str,
        twilio_sid: &str,
    ) -> Result<proto::PhoneNumberAssignment, Status> {
        let response = self
            .inner
            .clone()
            .assign_number(proto::AssignNumberRequest {
                order_id: order_id.to_owned(),
                phone_number: phone_number.to_owned(),
                twilio_sid: twilio_sid.to_owned(),
            })
            .await?;
        required_number(response.into_inner().number)
    }

    /// The order's number and link state; retried on UNAVAILABLE.
    pub async fn get_number(&self, order_id: &str) -> Result<proto::PhoneNumberAssignment, Status> {
        let request = proto::GetNumberRequest {
            order_id: order_id.to_owned(),
        };
        let response = with_read_retries(self.read_retries, || {
            let mut client = self.inner.clone();
            let request = request.clone();
            async move { client.get_number(request).await }
        })
        .await?;
        required_number(response.into_inner().number)
    }

    /// Retries the Vapi link now (admin).
    pub async fn link_number(
        &self,
        order_id: &str,
    ) -> Result<proto::PhoneNumberAssignment, Status> {
        let response = self
            .inner
            .clone()
            .link_number(proto::LinkNumberRequest {
                order_id: order_id.to_owned(),
            })
            .await?;
        required_number(response.into_inner().number)
    }

    /// Releases the order's number (admin).
    pub async fn release_number(
        &self,
        order_id: &str,
        also_release_in_twilio: bool,
    ) -> Result<proto::ReleaseNumberResponse, Status> {
        let response = self
            .inner
            .clone()
            .release_number(proto::ReleaseNumberRequest {
                order_id: order_id.to_owned(),
                also_release_in_twilio,
            })
            .await?;
        Ok(response.into_inner())
    }

    /// Live checks in Twilio and Vapi; retried on UNAVAILABLE.
    pub async fn verify_number(&self, order_id: &str) -> Result<Vec<proto::Check>, Status> {
        let request = proto::VerifyNumberRequest {
            order_id: order_id.to_owned(),
        };
        let response = with_read_retries(self.read_retries, || {
            let mut client = self.inner.clone();
            let request = request.clone();
            async move { client.verify_number(request).await }
        })
        .await?;
        Ok(response.into_inner().checks)
    }

    /// Forwarding codes for the order's landline; retried on UNAVAILABLE.
    pub async fn get_forwarding_instructions(
        &self,
        order_id: &str,
        no_answer_seconds: i32,
    ) -> Result<proto::GetForwardingInstructionsResponse, Status> {
        let request = proto::GetForwardingInstructionsRequest {
            order_id: order_id.to_owned(),
            no_answer_seconds,
        };
        let response = with_read_retries(self.read_retries, || {
            let mut client = self.inner.clone();
            let request = request.clone();
            async move { client.get_forwarding_instructions(request).await }
        })
        .await?;
        Ok(response.into_inner())
    }

    /// The raw generated client, with the key and deadline already attached.
    pub fn raw(&self) -> NumberProvisioningServiceClient<Authed> {
        self.inner.clone()
    }
}

fn required(order: Option<proto::Order>) -> Result<proto::Order, Status> {
    order.ok_or_else(|| Status::internal("the server answered without an order"))
}
