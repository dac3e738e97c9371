//! Orders (agencies) and the values they are made of.

use std::{fmt, str::FromStr};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::PhoneNumber;

/// Limits that keep one order's row small and its summaries readable.
pub const MAX_NAME_CHARS: usize = 200;
pub const MAX_ZONES: usize = 100;
pub const MAX_ZONE_ENTRIES: usize = 500;

/// An order's identifier: a UUID (v7, so ids sort by creation time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OrderId(Uuid);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("is empty")]
    Empty,
    #[error("is not a valid id (expected a UUID such as 0193a1b2-7c3d-7e4f-8a9b-0c1d2e3f4a5b)")]
    Malformed,
}

impl OrderId {
    pub fn generate() -> Self {
        Self(Uuid::now_v7())
    }

    pub fn parse(input: &str) -> Result<Self, IdError> {
        let input = input.trim();
        if input.is_empty() {
            return Err(IdError::Empty);
        }
        Uuid::parse_str(input)
            .map(Self)
            .map_err(|_| IdError::Malformed)
    }
}

impl fmt::Display for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Lower-case hyphenated: the stored form, whose string order is id order.
        write!(f, "{}", self.0.hyphenated())
    }
}

impl FromStr for OrderId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// A Vapi assistant's id (Vapi ids are UUIDs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AssistantId(Uuid);

impl AssistantId {
    pub fn parse(input: &str) -> Result<Self, IdError> {
        let input = input.trim();
        if input.is_empty() {
            return Err(IdError::Empty);
        }
        Uuid::parse_str(input)
            .map(Self)
            .map_err(|_| IdError::Malformed)
    }
}

impl fmt::Display for AssistantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.hyphenated())
    }
}

/// Where an order is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrderStatus {
    Setup,
    Active,
    Suspended,
    Cancelled,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "an order cannot go from {from} to {to}; allowed: SETUP -> ACTIVE <-> SUSPENDED, and any live status -> CANCELLED through DeleteOrder"
)]
pub struct TransitionError {
    pub from: OrderStatus,
    pub to: OrderStatus,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 4] = [
        OrderStatus::Setup,
        OrderStatus::Active,
        OrderStatus::Suspended,
        OrderStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Setup => "SETUP",
            OrderStatus::Active => "ACTIVE",
            OrderStatus::Suspended => "SUSPENDED",
            OrderStatus::Cancelled => "CANCELLED",
        }
    }

    pub fn from_db(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == s)
    }

    /// Whether the assistant answers calls for an order in this status.
    pub fn is_live(self) -> bool {
        match self {
            OrderStatus::Setup | OrderStatus::Active | OrderStatus::Suspended => true,
            OrderStatus::Cancelled => false,
        }
    }

    /// The lifecycle of ARCHITECTURE.md. Staying in the same status is allowed
    /// (a no-op), except that nothing leaves CANCELLED.
    pub fn check_transition(self, to: OrderStatus) -> Result<(), TransitionError> {
        use OrderStatus::{Active, Cancelled, Setup, Suspended};
        let allowed = match (self, to) {
            (Cancelled, _) => false,
            (from, to) if from == to => true,
            (Setup, Active) | (Active, Suspended) | (Suspended, Active) => true,
            (Setup | Active | Suspended, Cancelled) => true,
            (Setup | Active | Suspended, Setup) | (Setup, Suspended) | (Suspended | Active, _) => {
                false
            }
        };
        if allowed {
            Ok(())
        } else {
            Err(TransitionError { from: self, to })
        }
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The landline's carrier, which decides the call-forwarding codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Carrier {
    Unspecified,
    Tim,
    Vodafone,
    WindTre,
    Iliad,
    Fastweb,
    Other,
}

impl Carrier {
    pub const ALL: [Carrier; 7] = [
        Carrier::Unspecified,
        Carrier::Tim,
        Carrier::Vodafone,
        Carrier::WindTre,
        Carrier::Iliad,
        Carrier::Fastweb,
        Carrier::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Carrier::Unspecified => "UNSPECIFIED",
            Carrier::Tim => "TIM",
            Carrier::Vodafone => "VODAFONE",
            Carrier::WindTre => "WINDTRE",
            Carrier::Iliad => "ILIAD",
            Carrier::Fastweb => "FASTWEB",
            Carrier::Other => "OTHER",
        }
    }

    pub fn from_db(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|carrier| carrier.as_str() == s)
    }
}

/// An e-mail address, checked for shape only (one `@`, a dotted domain, no spaces).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailAddress(String);

impl EmailAddress {
    pub fn parse(input: &str) -> Result<Self, &'static str> {
        let input = input.trim();
        let valid = match input.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && input.len() <= 254
                    && !input.chars().any(char::is_whitespace)
            }
            None => false,
        };
        if valid {
            Ok(Self(input.to_owned()))
        } else {
            Err("is not an e-mail address such as nome@agenzia.it")
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An Italian postcode (CAP): five digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Postcode(String);

impl Postcode {
    pub fn parse(input: &str) -> Result<Self, &'static str> {
        let input = input.trim();
        if input.len() == 5 && input.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self(input.to_owned()))
        } else {
            Err("is not an Italian postcode (five digits, e.g. 20121)")
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A required, trimmed, single-line name of bounded length.
pub fn parse_name(input: &str) -> Result<String, &'static str> {
    let name = input.trim();
    if name.is_empty() {
        Err("is required")
    } else if name.chars().count() > MAX_NAME_CHARS {
        Err("is longer than 200 characters")
    } else if name.chars().any(char::is_control) {
        Err("must be a single line without control characters")
    } else {
        Ok(name.to_owned())
    }
}

/// Like [`parse_name`] but empty is allowed.
pub fn parse_optional_name(input: &str) -> Result<String, &'static str> {
    if input.trim().is_empty() {
        Ok(String::new())
    } else {
        parse_name(input)
    }
}

/// Who to talk to at the agency.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Contact {
    pub name: String,
    pub email: Option<EmailAddress>,
    pub phone: Option<PhoneNumber>,
}

/// An agent who receives WhatsApp summaries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    pub name: String,
    pub whatsapp: PhoneNumber,
}

/// Calls about these postcodes or keywords go to this zone's agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutingZone {
    pub name: String,
    pub postcodes: Vec<Postcode>,
    pub keywords: Vec<String>,
    pub agent: Agent,
}

/// Everything an admin gives to create an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrder {
    pub display_name: String,
    pub brand: String,
    pub contact: Contact,
    pub landline: Option<PhoneNumber>,
    pub carrier: Carrier,
    pub vapi_assistant_id: Option<AssistantId>,
    pub default_agent: Option<Agent>,
    pub zones: Vec<RoutingZone>,
    pub whatsapp_sender_declared: bool,
}

/// A stored order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub id: OrderId,
    pub display_name: String,
    pub brand: String,
    pub contact: Contact,
    pub landline: Option<PhoneNumber>,
    pub carrier: Carrier,
    pub vapi_assistant_id: Option<AssistantId>,
    pub default_agent: Option<Agent>,
    pub zones: Vec<RoutingZone>,
    pub status: OrderStatus,
    /// Bumped on every write; the etag clients send back.
    pub revision: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub cancelled_at: Option<DateTime<Utc>>,
    /// An admin says WhatsApp Business is enabled on the order's number.
    pub whatsapp_sender_declared: bool,
}

impl Order {
    pub fn create(id: OrderId, new: NewOrder, now: DateTime<Utc>) -> Self {
        let NewOrder {
            display_name,
            brand,
            contact,
            landline,
            carrier,
            vapi_assistant_id,
            default_agent,
            zones,
            whatsapp_sender_declared,
        } = new;
        Self {
            id,
            display_name,
            brand,
            contact,
            landline,
            carrier,
            vapi_assistant_id,
            default_agent,
            zones,
            status: OrderStatus::Setup,
            revision: 1,
            created_at: now,
            updated_at: now,
            cancelled_at: None,
            whatsapp_sender_declared,
        }
    }

    pub fn etag(&self) -> String {
        etag_of(self.revision)
    }

    /// Applies a patch; only the status can make it fail.
    pub fn apply(&mut self, patch: OrderPatch) -> Result<(), TransitionError> {
        let OrderPatch {
            display_name,
            brand,
            contact_name,
            contact_email,
            contact_phone,
            landline,
            carrier,
            vapi_assistant_id,
            default_agent,
            zones,
            status,
            whatsapp_sender_declared,
        } = patch;
        if let Some(status) = status {
            if status == OrderStatus::Cancelled && self.status != OrderStatus::Cancelled {
                // Cancelling has its own RPC, which later also releases the number.
                return Err(TransitionError {
                    from: self.status,
                    to: status,
                });
            }
            self.status.check_transition(status)?;
            self.status = status;
        }
        if let Some(v) = display_name {
            self.display_name = v;
        }
        if let Some(v) = brand {
            self.brand = v;
        }
        if let Some(v) = contact_name {
            self.contact.name = v;
        }
        if let Some(v) = contact_email {
            self.contact.email = v;
        }
        if let Some(v) = contact_phone {
            self.contact.phone = v;
        }
        if let Some(v) = landline {
            self.landline = v;
        }
        if let Some(v) = carrier {
            self.carrier = v;
        }
        if let Some(v) = vapi_assistant_id {
            self.vapi_assistant_id = v;
        }
        if let Some(v) = default_agent {
            self.default_agent = v;
        }
        if let Some(v) = zones {
            self.zones = v;
        }
        if let Some(v) = whatsapp_sender_declared {
            self.whatsapp_sender_declared = v;
        }
        Ok(())
    }
}

/// The etag of a revision. Opaque to clients.
pub fn etag_of(revision: i64) -> String {
    format!("r{revision}")
}

/// The revision an etag names, if it is one of ours.
pub fn revision_of(etag: &str) -> Option<i64> {
    etag.strip_prefix('r')?
        .parse::<i64>()
        .ok()
        .filter(|r| *r > 0)
}

/// The fields an update changes; `None` leaves a field as it is, and for
/// optional fields `Some(None)` clears it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderPatch {
    pub display_name: Option<String>,
    pub brand: Option<String>,
    pub contact_name: Option<String>,
    pub contact_email: Option<Option<EmailAddress>>,
    pub contact_phone: Option<Option<PhoneNumber>>,
    pub landline: Option<Option<PhoneNumber>>,
    pub carrier: Option<Carrier>,
    pub vapi_assistant_id: Option<Option<AssistantId>>,
    pub default_agent: Option<Option<Agent>>,
    pub zones: Option<Vec<RoutingZone>>,
    pub status: Option<OrderStatus>,
    pub whatsapp_sender_declared: Option<bool>,
}

#[cfg(test)]
mod tests {
    use super::OrderStatus::{Active, Cancelled, Setup, Suspended};

    #[test]
    fn the_lifecycle_allows_only_the_documented_moves() {
        let allowed = [
            (Setup, Active),
            (Active, Suspended),
            (Suspended, Active),
            (Setup, Cancelled),
            (Active, Cancelled),
            (Suspended, Cancelled),
        ];
        for from in super::OrderStatus::ALL {
            for to in super::OrderStatus::ALL {
                let expected = allowed.contains(&(from, to)) || (from == to && from != Cancelled);
                assert_eq!(
                    from.check_transition(to).is_ok(),
                    expected,
                    "{from} -> {to}"
                );
            }
        }
    }

    #[test]
    fn etags_round_trip_and_reject_strangers() {
        assert_eq!(super::revision_of(&super::etag_of(7)), Some(7));
        assert_eq!(super::revision_of("7"), None);
        assert_eq!(super::revision_of("r-1"), None);
        assert_eq!(super::revision_of("rabc"), None);
    }
}
