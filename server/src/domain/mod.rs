//! Domain types: values are parsed once at the edge and cannot hold bad states
//! afterwards. Nothing here knows about proto, JSON or SeaORM.

pub mod call;
pub mod forwarding;
pub mod lead;
pub mod notification;
pub mod number;
pub mod order;
pub mod phone;
pub mod summary;
pub mod validation;
pub mod zone;

pub use call::CallStatus;
pub use number::{AnswerMode, LinkState, ManagedNumber, TwilioNumberSid};
pub use order::{
    Agent, AssistantId, Carrier, Contact, EmailAddress, NewOrder, Order, OrderId, OrderPatch,
    OrderStatus, Postcode, RoutingZone,
};
pub use phone::PhoneNumber;
pub use validation::{FieldViolation, Violations};

/// The current time at the precision every supported database stores
/// (microseconds), so what an RPC returns equals what a later read returns.
pub fn now() -> chrono::DateTime<chrono::Utc> {
    use chrono::SubsecRound;
    chrono::Utc::now().trunc_subsecs(6)
}
