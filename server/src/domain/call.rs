//! Calls as Vapi reports them, parsed into what Centralino stores.

use chrono::{DateTime, Utc};

use super::PhoneNumber;

/// A call's progress; it only moves forward and `Ended` is final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CallStatus {
    Scheduled,
    Queued,
    Ringing,
    InProgress,
    Forwarding,
    Ended,
}

impl CallStatus {
    pub const ALL: [CallStatus; 6] = [
        CallStatus::Scheduled,
        CallStatus::Queued,
        CallStatus::Ringing,
        CallStatus::InProgress,
        CallStatus::Forwarding,
        CallStatus::Ended,
    ];

    /// Vapi's status strings; anything else (`not-found`, …) is not a step.
    pub fn from_vapi(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_vapi() == s)
    }

    pub fn as_vapi(self) -> &'static str {
        match self {
            CallStatus::Scheduled => "scheduled",
            CallStatus::Queued => "queued",
            CallStatus::Ringing => "ringing",
            CallStatus::InProgress => "in-progress",
            CallStatus::Forwarding => "forwarding",
            CallStatus::Ended => "ended",
        }
    }

    /// Order of progress; `scheduled` and `queued` share the first step.
    pub fn rank(self) -> i32 {
        match self {
            CallStatus::Scheduled | CallStatus::Queued => 1,
            CallStatus::Ringing => 2,
            CallStatus::InProgress => 3,
            CallStatus::Forwarding => 4,
            CallStatus::Ended => 5,
        }
    }
}

/// Who called: a valid number, or withheld (absent or not a phone number).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Number(PhoneNumber),
    Withheld,
}

impl Caller {
    /// Anything that is not a valid number is treated as withheld: the report
    /// is still stored, never refused for it.
    pub fn parse(raw: &str) -> Self {
        match PhoneNumber::parse(raw) {
            Ok(number) => Caller::Number(number),
            Err(_) => Caller::Withheld,
        }
    }

    pub fn number(&self) -> Option<&PhoneNumber> {
        match self {
            Caller::Number(n) => Some(n),
            Caller::Withheld => None,
        }
    }
}

/// Which call, and on which number.
#[derive(Debug, Clone, PartialEq)]
pub struct CallKey {
    pub vapi_call_id: String,
    pub phone_number_id: Option<String>,
    pub called_number: Option<PhoneNumber>,
    pub assistant_id: Option<String>,
    pub caller: Caller,
}

/// A status update.
#[derive(Debug, Clone, PartialEq)]
pub struct CallEvent {
    pub key: CallKey,
    pub status: CallStatus,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_reason: Option<String>,
}

/// An end-of-call report (or a Vapi Call object).
#[derive(Debug, Clone, PartialEq)]
pub struct CallReport {
    pub key: CallKey,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub duration_seconds: Option<f64>,
    pub ended_reason: Option<String>,
    pub cost: Option<f64>,
    pub summary: Option<String>,
    pub transcript: Option<String>,
    pub recording_url: Option<String>,
    pub stereo_recording_url: Option<String>,
    pub structured_data: Option<serde_json::Value>,
    pub success_evaluation: Option<String>,
}

impl CallReport {
    /// The duration Vapi sent, else computed from the times.
    pub fn duration(&self) -> Option<f64> {
        self.duration_seconds
            .or_else(|| match (self.started_at, self.ended_at) {
                (Some(start), Some(end)) if end >= start => {
                    Some((end - start).num_milliseconds() as f64 / 1000.0)
                }
                (Some(_) | None, Some(_) | None) => None,
            })
    }
}

/// Where a lead stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LeadStatus {
    New,
    Contacted,
    Qualified,
    Closed,
    Lost,
}

impl LeadStatus {
    pub const ALL: [LeadStatus; 5] = [
        LeadStatus::New,
        LeadStatus::Contacted,
        LeadStatus::Qualified,
        LeadStatus::Closed,
        LeadStatus::Lost,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LeadStatus::New => "NEW",
            LeadStatus::Contacted => "CONTACTED",
            LeadStatus::Qualified => "QUALIFIED",
            LeadStatus::Closed => "CLOSED",
            LeadStatus::Lost => "LOST",
        }
    }

    pub fn from_db(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == s)
    }

    /// NEW -> CONTACTED -> QUALIFIED -> CLOSED/LOST; LOST is possible from any
    /// open status; CLOSED and LOST are final.
    pub fn can_move_to(self, to: LeadStatus) -> bool {
        use LeadStatus::{Closed, Contacted, Lost, New, Qualified};
        match (self, to) {
            (from, to) if from == to => true,
            (New, Contacted) | (Contacted, Qualified) | (Qualified, Closed) => true,
            (New | Contacted | Qualified, Lost) => true,
            (New | Contacted | Qualified | Closed | Lost, _) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_only_move_forward() {
        assert!(CallStatus::Ringing.rank() < CallStatus::InProgress.rank());
        assert_eq!(CallStatus::Scheduled.rank(), CallStatus::Queued.rank());
        assert_eq!(
            CallStatus::from_vapi("in-progress"),
            Some(CallStatus::InProgress)
        );
        assert_eq!(CallStatus::from_vapi("not-found"), None);
    }

    #[test]
    fn a_caller_that_is_not_a_number_is_withheld() {
        assert_eq!(Caller::parse("anonymous"), Caller::Withheld);
        assert_eq!(Caller::parse(""), Caller::Withheld);
        assert!(matches!(Caller::parse("+393331234567"), Caller::Number(_)));
    }

    #[test]
    fn leads_move_through_their_lifecycle_only() {
        use LeadStatus::*;
        assert!(New.can_move_to(Contacted));
        assert!(Qualified.can_move_to(Closed));
        assert!(New.can_move_to(Lost));
        assert!(!Closed.can_move_to(New));
        assert!(!New.can_move_to(Closed));
    }
}
