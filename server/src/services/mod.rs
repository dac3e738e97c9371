//! Services: the use cases, in domain types only. Transport calls these; they
//! call the store and (later) the providers.

pub mod call_feed;
pub mod calls;
pub mod error;
pub mod notifications;
pub mod numbers;
pub mod orders;
pub mod paging;
pub mod routing;

pub use calls::CallsService;
pub use error::ServiceError;
pub use notifications::NotificationsService;
pub use numbers::NumbersService;
pub use orders::OrdersService;
