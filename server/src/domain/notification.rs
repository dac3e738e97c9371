//! WhatsApp notifications: who gets a call's summary, from which number, and
//! the states a notification and each of its Twilio messages go through.

use super::{Order, PhoneNumber, phone::PhoneError};

/// `whatsapp:+39…`, the address form Twilio wants in `From` and `To`.
pub fn whatsapp_address(number: &PhoneNumber) -> String {
    format!("whatsapp:{number}")
}

/// A number given with or without the `whatsapp:` prefix (settings such as
/// `TWILIO_WHATSAPP_NUMBER`, and the `From`/`To` of Twilio's webhooks).
pub fn parse_whatsapp(input: &str) -> Result<PhoneNumber, PhoneError> {
    let trimmed = input.trim();
    let bare = match trimmed.get(..9) {
        Some(prefix) if prefix.eq_ignore_ascii_case("whatsapp:") => &trimmed[9..],
        Some(_) | None => trimmed,
    };
    PhoneNumber::parse(bare)
}

/// What a notification is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The summary of one call (at most one per call).
    CallSummary,
    /// The setup checklist's "Test WhatsApp".
    Test,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::CallSummary => "CALL_SUMMARY",
            Kind::Test => "TEST",
        }
    }
    pub fn from_db(s: &str) -> Option<Self> {
        [Kind::CallSummary, Kind::Test]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// Where a notification is in its life. PENDING rows are the dispatcher's
/// work; SENT means Twilio accepted a message; FAILED is final until an
/// admin retries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    Pending,
    Sent,
    Delivered,
    Read,
    Failed,
}

impl Status {
    pub const ALL: [Status; 5] = [
        Status::Pending,
        Status::Sent,
        Status::Delivered,
        Status::Read,
        Status::Failed,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "PENDING",
            Status::Sent => "SENT",
            Status::Delivered => "DELIVERED",
            Status::Read => "READ",
            Status::Failed => "FAILED",
        }
    }
    pub fn from_db(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// Why a notification waits or failed; stored beside a readable reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReasonCode {
    /// Twilio credentials are not configured; sent once they are.
    TwilioNotConfigured,
    /// No zone agent, no default agent, no `TWILIO_DESTINATION_WHATSAPP`.
    NoDestination,
    /// The order has no number and `TWILIO_WHATSAPP_NUMBER` is not set.
    NoSender,
    /// Outside the 24 h window and no template configured.
    TemplateNotConfigured,
    /// A transient failure; retried later.
    Retrying,
    /// Twilio refused the message for good (a permanent error code).
    Rejected,
    /// Twilio accepted it, then reported it failed or undelivered.
    Undelivered,
    /// Transient failures until the configured maximum age.
    Expired,
    /// An admin asked for it to be sent again (RetryNotification).
    AdminRetry,
}

impl ReasonCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ReasonCode::TwilioNotConfigured => "TWILIO_NOT_CONFIGURED",
            ReasonCode::NoDestination => "NO_DESTINATION",
            ReasonCode::NoSender => "NO_SENDER",
            ReasonCode::TemplateNotConfigured => "TEMPLATE_NOT_CONFIGURED",
            ReasonCode::Retrying => "RETRYING",
            ReasonCode::Rejected => "REJECTED",
            ReasonCode::Undelivered => "UNDELIVERED",
            ReasonCode::Expired => "EXPIRED",
            ReasonCode::AdminRetry => "ADMIN_RETRY",
        }
    }
}

/// How the destination was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// The agent of the zone the lead matched.
    Zone,
    /// The order's default agent.
    DefaultAgent,
    /// `TWILIO_DESTINATION_WHATSAPP`.
    Fallback,
    /// Given explicitly (SendTestMessage with `to`).
    Explicit,
    /// Nobody: the notification fails with NO_DESTINATION.
    None,
}

impl Route {
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Zone => "ZONE",
            Route::DefaultAgent => "DEFAULT_AGENT",
            Route::Fallback => "FALLBACK",
            Route::Explicit => "EXPLICIT",
            Route::None => "NONE",
        }
    }
    pub fn from_db(s: &str) -> Option<Self> {
        [
            Route::Zone,
            Route::DefaultAgent,
            Route::Fallback,
            Route::Explicit,
            Route::None,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
}

/// The agent a call's summary goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub to: Option<PhoneNumber>,
    pub route: Route,
    /// The zone whose agent was chosen.
    pub zone: Option<String>,
}

/// The lead's zone (already chosen by the one zone matcher, see
/// [`super::lead::extract`]) → that zone's agent; else the order's default
/// agent; else the configured fallback; else nobody.
pub fn destination(
    order: &Order,
    lead_zone: Option<&str>,
    fallback: Option<&PhoneNumber>,
) -> Destination {
    if let Some(zone) = lead_zone.and_then(|name| order.zones.iter().find(|z| z.name == name)) {
        return Destination {
            to: Some(zone.agent.whatsapp.clone()),
            route: Route::Zone,
            zone: Some(zone.name.clone()),
        };
    }
    if let Some(agent) = &order.default_agent {
        return Destination {
            to: Some(agent.whatsapp.clone()),
            route: Route::DefaultAgent,
            zone: None,
        };
    }
    match fallback {
        Some(to) => Destination {
            to: Some(to.clone()),
            route: Route::Fallback,
            zone: None,
        },
        None => Destination {
            to: None,
            route: Route::None,
            zone: None,
        },
    }
}

/// The sender: the order's own number; the configured fallback only for an
/// order without one (never another order's number).
pub fn sender(
    own_number: Option<&PhoneNumber>,
    fallback: Option<&PhoneNumber>,
) -> Option<PhoneNumber> {
    own_number.or(fallback).cloned()
}

/// Free-form text or the approved template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Freeform,
    Template,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Freeform => "FREEFORM",
            Mode::Template => "TEMPLATE",
        }
    }
    pub fn from_db(s: &str) -> Option<Self> {
        [Mode::Freeform, Mode::Template]
            .into_iter()
            .find(|m| m.as_str() == s)
    }
}

/// Why an attempt was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The dispatcher's normal send.
    Auto,
    /// The free-form message failed with 63016: the one template resend.
    TemplateResend,
    /// An admin's RetryNotification.
    AdminRetry,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Auto => "AUTO",
            Trigger::TemplateResend => "TEMPLATE_RESEND",
            Trigger::AdminRetry => "ADMIN_RETRY",
        }
    }
}

/// The status of one Twilio message (an attempt). CREATING is ours: the
/// request went out and its answer is not known yet (or was lost).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageStatus {
    Creating,
    Queued,
    Sending,
    Sent,
    Delivered,
    Read,
    Failed,
    Undelivered,
    /// Twilio refused the create request (a 4xx): no message exists.
    Rejected,
}

impl MessageStatus {
    pub const ALL: [MessageStatus; 9] = [
        MessageStatus::Creating,
        MessageStatus::Queued,
        MessageStatus::Sending,
        MessageStatus::Sent,
        MessageStatus::Delivered,
        MessageStatus::Read,
        MessageStatus::Failed,
        MessageStatus::Undelivered,
        MessageStatus::Rejected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MessageStatus::Creating => "creating",
            MessageStatus::Queued => "queued",
            MessageStatus::Sending => "sending",
            MessageStatus::Sent => "sent",
            MessageStatus::Delivered => "delivered",
            MessageStatus::Read => "read",
            MessageStatus::Failed => "failed",
            MessageStatus::Undelivered => "undelivered",
            MessageStatus::Rejected => "rejected",
        }
    }

    pub fn from_db(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == s)
    }

    /// Twilio's `MessageStatus`/`status`. Statuses a Messaging Service
    /// reports before sending (accepted, scheduled) count as queued.
    pub fn from_twilio(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "queued" | "accepted" | "scheduled" => Some(MessageStatus::Queued),
            "sending" => Some(MessageStatus::Sending),
            "sent" => Some(MessageStatus::Sent),
            "delivered" => Some(MessageStatus::Delivered),
            "read" => Some(MessageStatus::Read),
            "failed" | "canceled" => Some(MessageStatus::Failed),
            "undelivered" => Some(MessageStatus::Undelivered),
            _ => None,
        }
    }

    /// Order of progress; failures rank above every non-final status.
    pub fn rank(self) -> i32 {
        match self {
            MessageStatus::Creating => 0,
            MessageStatus::Queued => 1,
            MessageStatus::Sending => 2,
            MessageStatus::Sent => 3,
            MessageStatus::Delivered => 4,
            MessageStatus::Read => 5,
            MessageStatus::Failed | MessageStatus::Undelivered | MessageStatus::Rejected => 10,
        }
    }

    pub fn is_failure(self) -> bool {
        match self {
            MessageStatus::Failed | MessageStatus::Undelivered | MessageStatus::Rejected => true,
            MessageStatus::Creating
            | MessageStatus::Queued
            | MessageStatus::Sending
            | MessageStatus::Sent
            | MessageStatus::Delivered
            | MessageStatus::Read => false,
        }
    }

    /// Statuses only move forward (queued → sending → sent → delivered →
    /// read); a failure ends an attempt that was not yet delivered; nothing
    /// leaves a failure. Callbacks arrive out of order, so a late "sent"
    /// after "delivered" is ignored, as is any duplicate.
    pub fn can_move_to(self, to: MessageStatus) -> bool {
        if self.is_failure() {
            return false;
        }
        if to.is_failure() {
            return self.rank() < MessageStatus::Delivered.rank();
        }
        to.rank() > self.rank()
    }

    /// The notification status an attempt in this status implies.
    pub fn notification_status(self) -> Option<Status> {
        match self {
            MessageStatus::Queued | MessageStatus::Sending | MessageStatus::Sent => {
                Some(Status::Sent)
            }
            MessageStatus::Delivered => Some(Status::Delivered),
            MessageStatus::Read => Some(Status::Read),
            MessageStatus::Creating
            | MessageStatus::Failed
            | MessageStatus::Undelivered
            | MessageStatus::Rejected => None,
        }
    }
}

/// Twilio's code for a free-form message outside the 24 h window.
pub const OUTSIDE_WINDOW_CODE: i64 = 63016;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_whatsapp_setting_is_accepted_with_or_without_the_prefix() {
        let with = parse_whatsapp("whatsapp:+393331234567").unwrap();
        let without = parse_whatsapp("+393331234567").unwrap();
        assert_eq!(with, without);
        assert_eq!(whatsapp_address(&with), "whatsapp:+393331234567");
        assert!(parse_whatsapp("WhatsApp:+393331234567").is_ok());
        assert!(parse_whatsapp("whatsapp:").is_err());
    }

    #[test]
    fn message_statuses_only_move_forward_and_failures_are_final() {
        use MessageStatus::*;
        assert!(Queued.can_move_to(Sent));
        assert!(Sent.can_move_to(Read));
        assert!(!Delivered.can_move_to(Sent));
        assert!(!Delivered.can_move_to(Delivered));
        assert!(Sent.can_move_to(Undelivered));
        assert!(!Read.can_move_to(Failed));
        assert!(!Failed.can_move_to(Delivered));
        assert!(Creating.can_move_to(Queued));
    }

    #[test]
    fn twilio_statuses_map_leniently() {
        assert_eq!(
            MessageStatus::from_twilio("accepted"),
            Some(MessageStatus::Queued)
        );
        assert_eq!(
            MessageStatus::from_twilio("READ"),
            Some(MessageStatus::Read)
        );
        assert_eq!(MessageStatus::from_twilio("receiving"), None);
    }
}
