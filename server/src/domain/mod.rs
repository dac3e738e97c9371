//! Domain types: values are parsed once at the edge and cannot hold bad states
//! afterwards. Nothing here knows about proto, JSON or SeaORM.

pub mod order;
pub mod phone;
pub mod validation;

pub use order::{
    Agent, AssistantId, Carrier, Contact, EmailAddress, NewOrder, Order, OrderId, OrderPatch,
    OrderStatus, Postcode, RoutingZone,
};
pub use phone::PhoneNumber;
pub use validation::{FieldViolation, Violations};
