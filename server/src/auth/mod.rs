//! API keys and roles. Every Centralino RPC needs `authorization: Bearer <key>`.
//!
//! Keys are configured as `ROLE=KEY` entries (env or a keys file); roles are
//! `admin`, `service`, `ingest` and `viewer:<order-id>`. Only SHA-256 digests
//! of keys are kept in memory, compared in constant time; keys never reach logs.

pub mod keys;

use std::fmt;

use crate::{domain::OrderId, services::ServiceError};

pub use keys::{ApiKeys, KeyConfigError};

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Everything.
    Admin,
    /// Internal tools: read everything, write calls, leads and notifications.
    Service,
    /// The webhook shim: only the ingestion RPCs.
    Ingest,
    /// Reads one order's data, writes nothing.
    Viewer(OrderId),
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Role::Admin => f.write_str("admin"),
            Role::Service => f.write_str("service"),
            Role::Ingest => f.write_str("ingest"),
            Role::Viewer(order) => write!(f, "viewer:{order}"),
        }
    }
}

/// The authenticated caller of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub role: Role,
    /// First hex digits of the key's SHA-256: enough to tell keys apart in
    /// logs, useless to an attacker.
    pub key_id: String,
}

/// What a request wants to do, for authorization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read one order's data.
    ReadOrder(OrderId),
    /// List orders (viewers see only their own).
    ListOrders,
    /// Change orders and their configuration.
    AdminWrite,
    /// The ingestion RPCs the webhook shim calls.
    Ingest,
    /// Change leads (status, notes, agent).
    WriteLeads,
}

impl Principal {
    pub fn authorize(&self, access: Access) -> Result<(), ServiceError> {
        let allowed = match (self.role, access) {
            (Role::Admin, _) => true,
            (Role::Service, Access::AdminWrite) => false,
            (
                Role::Service,
                Access::ReadOrder(_) | Access::ListOrders | Access::Ingest | Access::WriteLeads,
            ) => true,
            (Role::Viewer(own), Access::ReadOrder(order)) => own == order,
            (Role::Viewer(_), Access::ListOrders) => true,
            (Role::Viewer(_), Access::AdminWrite | Access::Ingest | Access::WriteLeads) => false,
            (Role::Ingest, Access::Ingest) => true,
            (
                Role::Ingest,
                Access::ReadOrder(_) | Access::ListOrders | Access::AdminWrite | Access::WriteLeads,
            ) => false,
        };
        if allowed {
            Ok(())
        } else {
            Err(ServiceError::PermissionDenied {
                message: match (self.role, access) {
                    (Role::Viewer(_), Access::ReadOrder(_)) => {
                        "this viewer key is scoped to another order".to_owned()
                    }
                    (role, _) => format!("a key with role {role} may not do this"),
                },
            })
        }
    }

    /// The order a list is restricted to, for order-scoped keys.
    pub fn order_scope(&self) -> Option<OrderId> {
        match self.role {
            Role::Viewer(order) => Some(order),
            Role::Admin | Role::Service | Role::Ingest => None,
        }
    }
}
