//! An order's dedicated number and its link to the order's Vapi assistant.

use std::fmt;

use chrono::{DateTime, Utc};

use super::{OrderId, PhoneNumber};

/// Twilio's IncomingPhoneNumber SID: `PN` and 32 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TwilioNumberSid(String);

impl TwilioNumberSid {
    pub fn parse(input: &str) -> Result<Self, &'static str> {
        let input = input.trim();
        let ok = input.len() == 34
            && input.starts_with("PN")
            && input[2..].bytes().all(|b| b.is_ascii_hexdigit());
        if ok {
            Ok(Self(input.to_owned()))
        } else {
            Err("is not a Twilio phone-number SID (PN followed by 32 hex digits)")
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TwilioNumberSid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether Vapi has the number as Centralino wants it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkState {
    Pending,
    Linked,
    Failed,
    Released,
}

impl LinkState {
    pub const ALL: [LinkState; 4] = [
        LinkState::Pending,
        LinkState::Linked,
        LinkState::Failed,
        LinkState::Released,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LinkState::Pending => "PENDING",
            LinkState::Linked => "LINKED",
            LinkState::Failed => "FAILED",
            LinkState::Released => "RELEASED",
        }
    }

    pub fn from_db(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == s)
    }
}

/// How Vapi answers the number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AnswerMode {
    /// The order's assistant answers.
    Assistant,
    /// No assistant on the number: Vapi asks us, and we refuse politely.
    AssistantRequest,
}

impl AnswerMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AnswerMode::Assistant => "ASSISTANT",
            AnswerMode::AssistantRequest => "ASSISTANT_REQUEST",
        }
    }

    pub fn from_db(s: &str) -> Option<Self> {
        [AnswerMode::Assistant, AnswerMode::AssistantRequest]
            .into_iter()
            .find(|mode| mode.as_str() == s)
    }
}

/// A managed number: its holder (if any) and its Vapi link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedNumber {
    pub number: PhoneNumber,
    pub order_id: Option<OrderId>,
    pub twilio_sid: Option<TwilioNumberSid>,
    pub vapi_phone_number_id: Option<String>,
    pub link_state: LinkState,
    pub link_reason: Option<String>,
    pub answer_mode: AnswerMode,
    pub link_attempts: i32,
    pub next_link_at: Option<DateTime<Utc>>,
    pub linked_at: Option<DateTime<Utc>>,
    pub assigned_at: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twilio_sids_are_pn_and_32_hex_digits() {
        assert!(TwilioNumberSid::parse("PN0123456789abcdef0123456789abcdef").is_ok());
        assert!(TwilioNumberSid::parse("PN0123").is_err());
        assert!(TwilioNumberSid::parse("AC0123456789abcdef0123456789abcdef").is_err());
    }
}
