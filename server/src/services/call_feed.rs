//! The cross-process feed of call changes for `WatchCalls` on PostgreSQL:
//! each transaction that changes calls sends `pg_notify` on [`CHANNEL`] with
//! the changes it made, and every other replica re-publishes them into its
//! own watch channel (`workers/call_fanout.rs`). NOTIFY is transactional:
//! it is delivered only if the transaction commits, in commit order.
//!
//! Payload, text: `<origin>` then one `;<kind><call id>` per change, kind
//! being `C` (created), `U` (updated) or `R` (reported). The origin is the
//! sending process's random id, so that it can skip its own notifications
//! (it already published them). No personal data: ids only.

use super::calls::CallChangeKind;

/// The PostgreSQL channel.
pub const CHANNEL: &str = "centralino_call_changes";

/// PostgreSQL refuses payloads of 8000 bytes or more; kept well below.
const MAX_PAYLOAD: usize = 7900;

fn kind_code(kind: CallChangeKind) -> char {
    match kind {
        CallChangeKind::Created => 'C',
        CallChangeKind::Updated => 'U',
        CallChangeKind::Reported => 'R',
    }
}

/// The payloads announcing `changes`, split so that each fits.
pub fn encode<'a>(
    origin: &str,
    changes: impl IntoIterator<Item = (CallChangeKind, &'a str)>,
) -> Vec<String> {
    let mut payloads = Vec::new();
    let mut current = origin.to_owned();
    for (kind, id) in changes {
        if current.len() + 2 + id.len() > MAX_PAYLOAD && current.len() > origin.len() {
            payloads.push(std::mem::replace(&mut current, origin.to_owned()));
        }
        current.push(';');
        current.push(kind_code(kind));
        current.push_str(id);
    }
    if current.len() > origin.len() {
        payloads.push(current);
    }
    payloads
}

/// A payload read back: its origin and its changes.
#[derive(Debug, PartialEq, Eq)]
pub struct Notice {
    pub origin: String,
    pub changes: Vec<(CallChangeKind, String)>,
}

/// None for a payload this version does not understand.
pub fn decode(payload: &str) -> Option<Notice> {
    let mut parts = payload.split(';');
    let origin = parts.next().filter(|o| !o.is_empty())?.to_owned();
    let changes = parts
        .map(|part| {
            let mut chars = part.chars();
            let kind = match chars.next()? {
                'C' => CallChangeKind::Created,
                'U' => CallChangeKind::Updated,
                'R' => CallChangeKind::Reported,
                _ => return None,
            };
            let id = chars.as_str();
            (!id.is_empty()).then(|| (kind, id.to_owned()))
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Notice { origin, changes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_round_trips_in_one_payload() {
        let ids = ["0190a1b2-0000-7000-8000-000000000001", "call-2"];
        let payloads = encode(
            "origin1",
            [
                (CallChangeKind::Reported, ids[0]),
                (CallChangeKind::Created, ids[1]),
            ],
        );
        assert_eq!(payloads.len(), 1);
        assert_eq!(
            decode(&payloads[0]),
            Some(Notice {
                origin: "origin1".to_owned(),
                changes: vec![
                    (CallChangeKind::Reported, ids[0].to_owned()),
                    (CallChangeKind::Created, ids[1].to_owned()),
                ],
            })
        );
    }

    #[test]
    fn a_large_batch_is_split_below_the_postgresql_limit_and_loses_nothing() {
        let ids: Vec<String> = (0..1000)
            .map(|n| format!("0190a1b2-0000-7000-8000-{n:012}"))
            .collect();
        let payloads = encode(
            "0123456789abcdef0123456789abcdef",
            ids.iter().map(|id| (CallChangeKind::Updated, id.as_str())),
        );
        assert!(payloads.len() > 1);
        let mut back = Vec::new();
        for payload in &payloads {
            assert!(payload.len() < 8000, "{}", payload.len());
            let notice = decode(payload).unwrap();
            assert_eq!(notice.origin, "0123456789abcdef0123456789abcdef");
            back.extend(notice.changes.into_iter().map(|(_, id)| id));
        }
        assert_eq!(back, ids);
    }

    #[test]
    fn nothing_to_announce_sends_nothing_and_garbage_is_refused() {
        assert!(encode("o", std::iter::empty()).is_empty());
        assert_eq!(decode(""), None);
        assert_eq!(decode("o;Xid"), None);
        assert_eq!(decode("o;R"), None);
    }
}
