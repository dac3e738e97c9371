//! `centralino.v1.CallsService`.

use centralino_api::v1 as pb;
use pb::calls_service_server::CallsService as CallsRpc;
use tokio::sync::{broadcast::error::RecvError, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::{info, warn};

use super::{auth::principal, convert::timestamp};
use crate::{
    auth::Access,
    domain::{
        CallStatus, OrderId, PhoneNumber, Violations,
        call::{CallEvent, CallKey, CallReport, Caller, LeadStatus},
        lead::Intent,
    },
    services::{
        CallsService, ServiceError,
        calls::{CallChangeKind, CallWatch, Routing, WatchEvent},
    },
    store::{
        calls::{CallFilter, LeadFilter},
        entities::{call, lead},
    },
};

#[derive(Debug, Clone)]
pub struct CallsApi {
    calls: CallsService,
}

impl CallsApi {
    pub fn new(calls: CallsService) -> Self {
        Self { calls }
    }
}

fn ts(t: Option<prost_types::Timestamp>) -> Option<chrono::DateTime<chrono::Utc>> {
    let t = t?;
    chrono::DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0))
}

fn opt(s: String) -> Option<String> {
    Some(s.trim().to_owned()).filter(|s| !s.is_empty())
}

/// Text from a call's messages, without NUL characters: PostgreSQL text
/// cannot hold them, and a report must not be lost for one (an LLM's
/// summary, a name the caller spelled).
fn text(s: String) -> Option<String> {
    if s.contains('\0') {
        opt(s.replace('\0', ""))
    } else {
        opt(s)
    }
}

/// `value` with NUL characters removed from its strings and keys.
fn without_nul(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::String(s) => Value::String(s.replace('\0', "")),
        Value::Array(items) => Value::Array(items.into_iter().map(without_nul).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(key, value)| (key.replace('\0', ""), without_nul(value)))
                .collect(),
        ),
        other @ (Value::Null | Value::Bool(_) | Value::Number(_)) => other,
    }
}

/// A called number as sent: invalid ones are treated as unknown.
fn called(raw: &str) -> Option<PhoneNumber> {
    opt(raw.to_owned()).and_then(|r| PhoneNumber::parse(&r).ok())
}

fn require_call_id(v: &mut Violations, field: &str, id: &str) -> Option<String> {
    let id = id.trim();
    if id.is_empty() {
        v.push(field, "is required");
        None
    } else if id.len() > 64 {
        v.push(field, "is longer than 64 characters");
        None
    } else if id.contains('\0') {
        v.push(field, "contains a NUL character");
        None
    } else {
        Some(id.to_owned())
    }
}

/// Events waiting for one watcher's connection. When it is full the
/// watcher's forwarder stops draining the shared buffer, and falling
/// `WATCH_BUFFER` changes behind ends the stream.
const WATCH_QUEUE: usize = 64;

type WatchItem = Result<pb::WatchCallsResponse, Status>;

#[tonic::async_trait]
impl CallsRpc for CallsApi {
    type WatchCallsStream = ReceiverStream<WatchItem>;

    async fn watch_calls(
        &self,
        request: Request<pb::WatchCallsRequest>,
    ) -> Result<Response<Self::WatchCallsStream>, Status> {
        let caller = principal(&request)?;
        caller.authorize(Access::ListOrders)?;
        let r = request.into_inner();
        let mut v = Violations::new();
        let order = match opt(r.order_id) {
            None => None,
            Some(id) => v.check("order_id", OrderId::parse(&id)),
        };
        if !v.is_empty() {
            return Err(ServiceError::InvalidArgument(v.into_vec()).into());
        }
        let order = scoped_order(&caller, order)?;
        // Subscribed before the response headers go out: once the client has
        // them, every later commit reaches it.
        let watch = self.calls.watch()?;
        let (tx, rx) = mpsc::channel(WATCH_QUEUE);
        tokio::spawn(forward(watch, order, tx));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn resolve_assistant(
        &self,
        request: Request<pb::ResolveAssistantRequest>,
    ) -> Result<Response<pb::ResolveAssistantResponse>, Status> {
        principal(&request)?.authorize(Access::Ingest)?;
        let pb::ResolveAssistantRequest {
            phone_number_id,
            called_number,
            vapi_call_id: _,
        } = request.into_inner();
        let routing = self
            .calls
            .resolve_assistant(
                opt(phone_number_id).as_deref(),
                called(&called_number).as_ref(),
            )
            .await?;
        Ok(Response::new(match routing {
            Routing::Assistant {
                assistant_id,
                order,
            } => pb::ResolveAssistantResponse {
                assistant_id,
                error_message: String::new(),
                order_id: order.to_string(),
            },
            Routing::Refuse { message, order } => pb::ResolveAssistantResponse {
                assistant_id: String::new(),
                error_message: message.to_owned(),
                order_id: order.map(|o| o.to_string()).unwrap_or_default(),
            },
        }))
    }

    async fn record_call_event(
        &self,
        request: Request<pb::RecordCallEventRequest>,
    ) -> Result<Response<pb::RecordCallEventResponse>, Status> {
        principal(&request)?.authorize(Access::Ingest)?;
        let r = request.into_inner();
        let mut v = Violations::new();
        let call_id = require_call_id(&mut v, "vapi_call_id", &r.vapi_call_id);
        let Some(call_id) = call_id else {
            return Err(ServiceError::InvalidArgument(v.into_vec()).into());
        };
        let Some(status) = CallStatus::from_vapi(r.status.trim()) else {
            // Statuses outside the progression (not-found, …) are ignored.
            return Ok(Response::new(pb::RecordCallEventResponse {
                call: None,
                applied: false,
            }));
        };
        let event = CallEvent {
            key: CallKey {
                vapi_call_id: call_id,
                phone_number_id: text(r.phone_number_id),
                called_number: called(&r.called_number),
                assistant_id: text(r.assistant_id),
                caller: Caller::parse(&r.customer_number),
            },
            status,
            started_at: ts(r.start_time),
            ended_reason: text(r.ended_reason),
        };
        let (stored, applied) = self.calls.record_event(event).await?;
        Ok(Response::new(pb::RecordCallEventResponse {
            call: Some(call_to_pb(&stored)),
            applied,
        }))
    }

    async fn record_call_report(
        &self,
        request: Request<pb::RecordCallReportRequest>,
    ) -> Result<Response<pb::RecordCallReportResponse>, Status> {
        principal(&request)?.authorize(Access::Ingest)?;
        let Some(r) = request.into_inner().report else {
            return Err(ServiceError::invalid("report", "is required").into());
        };
        let mut v = Violations::new();
        let call_id = require_call_id(&mut v, "report.vapi_call_id", &r.vapi_call_id);
        let structured = match opt(r.structured_data_json) {
            None => Some(None),
            Some(json) => match serde_json::from_str::<serde_json::Value>(&json) {
                // Only an escaped `\u0000` can put a NUL in a JSON string.
                Ok(value) if value.is_object() && json.contains("\\u0000") => {
                    Some(Some(without_nul(value)))
                }
                Ok(value) if value.is_object() => Some(Some(value)),
                Ok(_) | Err(_) => {
                    v.push("report.structured_data_json", "is not a JSON object");
                    None
                }
            },
        };
        let (Some(call_id), Some(structured)) = (call_id, structured) else {
            return Err(ServiceError::InvalidArgument(v.into_vec()).into());
        };
        let report = CallReport {
            key: CallKey {
                vapi_call_id: call_id,
                phone_number_id: text(r.phone_number_id),
                called_number: called(&r.called_number),
                assistant_id: text(r.assistant_id),
                caller: Caller::parse(&r.customer_number),
            },
            started_at: ts(r.start_time),
            ended_at: ts(r.end_time),
            duration_seconds: Some(r.duration_seconds).filter(|d| *d > 0.0),
            ended_reason: text(r.ended_reason),
            cost: Some(r.cost).filter(|c| *c > 0.0),
            summary: text(r.summary),
            transcript: text(r.transcript),
            recording_url: text(r.recording_url),
            stereo_recording_url: text(r.stereo_recording_url),
            structured_data: structured,
            success_evaluation: text(r.success_evaluation),
        };
        let recorded = self.calls.record_report(report).await?;
        Ok(Response::new(pb::RecordCallReportResponse {
            call: Some(call_to_pb(&recorded.call)),
            replay: recorded.replay,
            lead: recorded.lead.as_ref().map(lead_to_pb),
        }))
    }

    async fn get_call(
        &self,
        request: Request<pb::GetCallRequest>,
    ) -> Result<Response<pb::GetCallResponse>, Status> {
        let caller = principal(&request)?;
        if caller.role == crate::auth::Role::Ingest {
            caller.authorize(Access::AdminWrite)?;
        }
        let id = request.into_inner().id;
        if id.trim().is_empty() {
            return Err(ServiceError::invalid("id", "is required").into());
        }
        let found = self.calls.get_call(id.trim()).await?;
        match CallsService::order_of(&found) {
            Some(order) => caller.authorize(Access::ReadOrder(order))?,
            None => caller.authorize(Access::ListOrders).and_then(|()| {
                // Orphans belong to no order: admins and services only.
                match caller.order_scope() {
                    Some(_) => Err(ServiceError::PermissionDenied {
                        message: "orphan calls are visible to admin and service keys only"
                            .to_owned(),
                    }),
                    None => Ok(()),
                }
            })?,
        }
        Ok(Response::new(pb::GetCallResponse {
            call: Some(call_to_pb(&found)),
        }))
    }

    async fn list_calls(
        &self,
        request: Request<pb::ListCallsRequest>,
    ) -> Result<Response<pb::ListCallsResponse>, Status> {
        let caller = principal(&request)?;
        caller.authorize(Access::ListOrders)?;
        let r = request.into_inner();
        let mut v = Violations::new();
        let order = match opt(r.order_id) {
            None => None,
            Some(id) => v.check("order_id", OrderId::parse(&id)),
        };
        let status = match pb::CallStatus::try_from(r.status) {
            Ok(pb::CallStatus::Unspecified) => None,
            Ok(s) => CallStatus::from_vapi(&status_from_pb(s)),
            Err(_) => {
                v.push("status", "is not a CallStatus value");
                None
            }
        };
        let caller_number = match opt(r.caller_number) {
            None => None,
            Some(n) => v.check("caller_number", PhoneNumber::parse(&n)),
        };
        if !v.is_empty() {
            return Err(ServiceError::InvalidArgument(v.into_vec()).into());
        }
        if r.orphans_only && caller.order_scope().is_some() {
            return Err(ServiceError::PermissionDenied {
                message: "orphan calls are visible to admin and service keys only".to_owned(),
            }
            .into());
        }
        let order = scoped_order(&caller, order)?;
        let filter = CallFilter {
            order,
            from: ts(r.start_time_from),
            to: ts(r.start_time_to),
            status,
            orphans_only: r.orphans_only,
            caller: caller_number,
        };
        let (rows, next) = self
            .calls
            .list_calls(filter, r.page_size, &r.page_token)
            .await?;
        Ok(Response::new(pb::ListCallsResponse {
            calls: rows.iter().map(call_to_pb).collect(),
            next_page_token: next,
        }))
    }

    async fn list_leads(
        &self,
        request: Request<pb::ListLeadsRequest>,
    ) -> Result<Response<pb::ListLeadsResponse>, Status> {
        let caller = principal(&request)?;
        caller.authorize(Access::ListOrders)?;
        let r = request.into_inner();
        let mut v = Violations::new();
        let order = match opt(r.order_id) {
            None => None,
            Some(id) => v.check("order_id", OrderId::parse(&id)),
        };
        let status = match pb::LeadStatus::try_from(r.status) {
            Ok(pb::LeadStatus::Unspecified) => None,
            Ok(s) => LeadStatus::from_db(s.as_str_name().trim_start_matches("LEAD_STATUS_")),
            Err(_) => {
                v.push("status", "is not a LeadStatus value");
                None
            }
        };
        let intent = match pb::LeadIntent::try_from(r.intent) {
            Ok(pb::LeadIntent::Unspecified) => None,
            Ok(i) => Some(
                i.as_str_name()
                    .trim_start_matches("LEAD_INTENT_")
                    .to_owned(),
            ),
            Err(_) => {
                v.push("intent", "is not a LeadIntent value");
                None
            }
        };
        if !v.is_empty() {
            return Err(ServiceError::InvalidArgument(v.into_vec()).into());
        }
        let order = scoped_order(&caller, order)?;
        let filter = LeadFilter {
            order,
            status,
            intent,
            zone: opt(r.zone),
        };
        let (rows, next) = self
            .calls
            .list_leads(filter, r.page_size, &r.page_token)
            .await?;
        Ok(Response::new(pb::ListLeadsResponse {
            leads: rows.iter().map(lead_to_pb).collect(),
            next_page_token: next,
        }))
    }

    async fn update_lead(
        &self,
        request: Request<pb::UpdateLeadRequest>,
    ) -> Result<Response<pb::UpdateLeadResponse>, Status> {
        let caller = principal(&request)?;
        caller.authorize(Access::WriteLeads)?;
        let pb::UpdateLeadRequest { lead, update_mask } = request.into_inner();
        let Some(lead) = lead else {
            return Err(ServiceError::invalid("lead", "is required").into());
        };
        let paths = update_mask.map(|m| m.paths).unwrap_or_default();
        let mut v = Violations::new();
        if lead.id.trim().is_empty() {
            v.push("lead.id", "is required");
        }
        if paths.is_empty() {
            v.push(
                "update_mask",
                "is required: name the fields to update (status, notes, assigned_agent)",
            );
        }
        let (mut status, mut notes, mut agent) = (None, None, None);
        for (i, path) in paths.iter().enumerate() {
            match path.as_str() {
                "status" => match pb::LeadStatus::try_from(lead.status) {
                    Ok(pb::LeadStatus::Unspecified) | Err(_) => {
                        v.push("lead.status", "must be a LeadStatus value when the mask names it")
                    }
                    Ok(s) => {
                        status = LeadStatus::from_db(s.as_str_name().trim_start_matches("LEAD_STATUS_"))
                    }
                },
                "notes" if lead.notes.contains('\0') => {
                    v.push("lead.notes", "must not contain NUL characters")
                }
                "notes" => notes = Some(lead.notes.trim().to_owned()),
                "assigned_agent" if lead.assigned_agent.contains('\0') => {
                    v.push("lead.assigned_agent", "must not contain NUL characters")
                }
                "assigned_agent" => agent = Some(lead.assigned_agent.trim().to_owned()),
                other => v.push(
                    format!("update_mask.paths[{i}]"),
                    format!("{other:?} is not an updatable field; allowed: status, notes, assigned_agent"),
                ),
            }
        }
        if !v.is_empty() {
            return Err(ServiceError::InvalidArgument(v.into_vec()).into());
        }
        let updated = self
            .calls
            .update_lead(lead.id.trim(), status, notes, agent)
            .await?;
        Ok(Response::new(pb::UpdateLeadResponse {
            lead: Some(lead_to_pb(&updated)),
        }))
    }
}

/// Sends a watcher the changes it may see (`order`: that order's calls only;
/// None: every call, orphans included) until the client goes away, falls too
/// far behind, or the server stops. One slot of `tx` is kept for the status
/// that ends the stream, so it always follows the events already queued.
async fn forward(mut watch: CallWatch, order: Option<OrderId>, tx: mpsc::Sender<WatchItem>) {
    let Ok(last) = tx.clone().reserve_owned().await else {
        return;
    };
    let order = order.map(|o| o.to_string());
    let end = loop {
        let change = tokio::select! {
            biased;
            () = watch.stopping.cancelled() => break shutting_down(),
            () = tx.closed() => return,
            change = watch.changes.recv() => change,
        };
        let change = match change {
            Ok(WatchEvent::Change(change)) => change,
            Ok(WatchEvent::Missed) => {
                warn!(
                    order_id = order.as_deref().unwrap_or("-"),
                    "WatchCalls stream ended: changes from other replicas may have been missed"
                );
                break Status::unavailable(
                    "missed changes from other replicas; re-list with ListCalls and watch again",
                );
            }
            Err(RecvError::Lagged(missed)) => {
                warn!(
                    missed,
                    order_id = order.as_deref().unwrap_or("-"),
                    "WatchCalls client too slow: stream ended"
                );
                break Status::resource_exhausted(format!(
                    "client too slow: {missed} call changes were dropped for it; reconnect and re-list with ListCalls"
                ));
            }
            Err(RecvError::Closed) => break shutting_down(),
        };
        if let Some(order) = &order
            && change.call.order_id.as_deref() != Some(order.as_str())
        {
            continue;
        }
        let event = pb::WatchCallsResponse {
            kind: kind_to_pb(change.kind) as i32,
            call: Some(call_to_pb(&change.call)),
        };
        tokio::select! {
            biased;
            () = watch.stopping.cancelled() => break shutting_down(),
            sent = tx.send(Ok(event)) => if sent.is_err() {
                return;
            },
        }
    };
    info!(code = ?end.code(), "WatchCalls stream ended by the server");
    last.send(Err(end));
}

fn shutting_down() -> Status {
    Status::unavailable("the server is shutting down; reconnect and re-list with ListCalls")
}

fn kind_to_pb(kind: CallChangeKind) -> pb::CallEventKind {
    match kind {
        CallChangeKind::Created => pb::CallEventKind::Created,
        CallChangeKind::Updated => pb::CallEventKind::Updated,
        CallChangeKind::Reported => pb::CallEventKind::Reported,
    }
}

/// The order a list is about: a viewer's own (asking for another is refused),
/// or what an admin or service key asked for.
pub(super) fn scoped_order(
    caller: &crate::auth::Principal,
    asked: Option<OrderId>,
) -> Result<Option<OrderId>, ServiceError> {
    match (caller.order_scope(), asked) {
        (Some(own), Some(asked)) if own != asked => Err(ServiceError::PermissionDenied {
            message: "this viewer key is scoped to another order".to_owned(),
        }),
        (Some(own), _) => Ok(Some(own)),
        (None, asked) => Ok(asked),
    }
}

fn status_from_pb(s: pb::CallStatus) -> String {
    s.as_str_name()
        .trim_start_matches("CALL_STATUS_")
        .to_ascii_lowercase()
        .replace('_', "-")
}

fn status_to_pb(s: &str) -> pb::CallStatus {
    match CallStatus::from_vapi(s) {
        Some(CallStatus::Scheduled) => pb::CallStatus::Scheduled,
        Some(CallStatus::Queued) => pb::CallStatus::Queued,
        Some(CallStatus::Ringing) => pb::CallStatus::Ringing,
        Some(CallStatus::InProgress) => pb::CallStatus::InProgress,
        Some(CallStatus::Forwarding) => pb::CallStatus::Forwarding,
        Some(CallStatus::Ended) => pb::CallStatus::Ended,
        None => pb::CallStatus::Unspecified,
    }
}

pub fn call_to_pb(c: &call::Model) -> pb::Call {
    pb::Call {
        id: c.id.clone(),
        vapi_call_id: c.vapi_call_id.clone(),
        order_id: c.order_id.clone().unwrap_or_default(),
        orphan_reason: if c.order_id.is_none() {
            c.orphan_reason.clone().unwrap_or_default()
        } else {
            String::new()
        },
        phone_number: c.phone_number.clone().unwrap_or_default(),
        caller_number: c.caller_number.clone().unwrap_or_default(),
        caller_withheld: c.caller_number.is_none(),
        status: status_to_pb(&c.status) as i32,
        start_time: c.started_at.map(timestamp),
        end_time: c.ended_at.map(timestamp),
        duration_seconds: c.duration_seconds.unwrap_or_default(),
        ended_reason: c.ended_reason.clone().unwrap_or_default(),
        cost: c.cost.unwrap_or_default(),
        summary: c.summary.clone().unwrap_or_default(),
        transcript: c.transcript.clone().unwrap_or_default(),
        recording_url: c.recording_url.clone().unwrap_or_default(),
        stereo_recording_url: c.stereo_recording_url.clone().unwrap_or_default(),
        structured_data_json: c.structured_data.clone().unwrap_or_default(),
        success_evaluation: c.success_evaluation.clone().unwrap_or_default(),
        report_received: c.report_received_at.is_some(),
        lead_id: c.lead_id.clone().unwrap_or_default(),
        create_time: Some(timestamp(c.created_at)),
        update_time: Some(timestamp(c.updated_at)),
    }
}

pub fn lead_to_pb(l: &lead::Model) -> pb::Lead {
    let status = match LeadStatus::from_db(&l.status) {
        Some(LeadStatus::New) => pb::LeadStatus::New,
        Some(LeadStatus::Contacted) => pb::LeadStatus::Contacted,
        Some(LeadStatus::Qualified) => pb::LeadStatus::Qualified,
        Some(LeadStatus::Closed) => pb::LeadStatus::Closed,
        Some(LeadStatus::Lost) => pb::LeadStatus::Lost,
        None => pb::LeadStatus::Unspecified,
    };
    let intent = match l.intent.as_deref().and_then(Intent::from_db) {
        Some(Intent::Purchase) => pb::LeadIntent::Purchase,
        Some(Intent::Sale) => pb::LeadIntent::Sale,
        Some(Intent::Rent) => pb::LeadIntent::Rent,
        Some(Intent::Valuation) => pb::LeadIntent::Valuation,
        Some(Intent::Information) => pb::LeadIntent::Information,
        None => pb::LeadIntent::Unspecified,
    };
    pb::Lead {
        id: l.id.clone(),
        order_id: l.order_id.clone(),
        status: status as i32,
        name: l.name.clone().unwrap_or_default(),
        phone: l.phone.clone().unwrap_or_default(),
        intent: intent as i32,
        property_type: l.property_type.clone().unwrap_or_default(),
        zone: l.zone.clone().unwrap_or_default(),
        postcode: l.postcode.clone().unwrap_or_default(),
        address: l.address.clone().unwrap_or_default(),
        budget: l.budget.clone().unwrap_or_default(),
        urgency: l.urgency.clone().unwrap_or_default(),
        recommendation: l.recommendation.clone().unwrap_or_default(),
        notes: l.notes.clone().unwrap_or_default(),
        assigned_agent: l.assigned_agent.clone().unwrap_or_default(),
        calls_count: l.calls_count,
        last_call_id: l.last_call_id.clone().unwrap_or_default(),
        last_call_time: Some(timestamp(l.last_call_at)),
        create_time: Some(timestamp(l.created_at)),
        update_time: Some(timestamp(l.updated_at)),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::sync::broadcast;
    use tokio_util::sync::CancellationToken;
    use tonic::Code;

    use super::*;
    use crate::services::calls::CallChange;

    fn change(n: usize, order: Option<&str>) -> WatchEvent {
        let now = chrono::Utc::now();
        WatchEvent::Change(CallChange {
            kind: CallChangeKind::Reported,
            call: Arc::new(call::Model {
                id: format!("call-{n}"),
                vapi_call_id: format!("vapi-{n}"),
                order_id: order.map(ToOwned::to_owned),
                orphan_reason: order.is_none().then(|| "unknown number".to_owned()),
                phone_number: None,
                phone_number_id: None,
                assistant_id: None,
                caller_number: None,
                status: "ended".to_owned(),
                status_rank: 6,
                started_at: None,
                ended_at: None,
                duration_seconds: None,
                ended_reason: None,
                cost: None,
                summary: None,
                transcript: None,
                recording_url: None,
                stereo_recording_url: None,
                structured_data: None,
                success_evaluation: None,
                report_received_at: Some(now),
                lead_id: None,
                created_at: now,
                updated_at: now,
            }),
        })
    }

    /// Everything the stream yields, up to its end.
    async fn drain(rx: &mut mpsc::Receiver<WatchItem>) -> (Vec<String>, Option<Status>) {
        let mut ids = Vec::new();
        while let Some(item) = rx.recv().await {
            match item {
                Ok(event) => ids.push(event.call.unwrap().id),
                Err(status) => {
                    assert!(rx.recv().await.is_none(), "nothing after the final status");
                    return (ids, Some(status));
                }
            }
        }
        (ids, None)
    }

    #[tokio::test]
    async fn a_watcher_that_falls_behind_the_buffer_ends_with_resource_exhausted_not_a_gap() {
        let (changes, receiver) = broadcast::channel(4);
        let (tx, mut rx) = mpsc::channel(3);
        let forwarder = tokio::spawn(forward(
            CallWatch {
                changes: receiver,
                stopping: CancellationToken::new(),
            },
            None,
            tx,
        ));
        changes.send(change(0, None)).unwrap();
        let first = rx.recv().await.unwrap().unwrap();
        assert_eq!(first.call.unwrap().id, "call-0");
        // 19 more while it is not reading: more than the buffer of 4.
        for n in 1..20 {
            changes.send(change(n, None)).unwrap();
        }
        let (ids, end) = drain(&mut rx).await;
        let end = end.expect("a final status");
        assert_eq!(end.code(), Code::ResourceExhausted);
        assert!(end.message().contains("ListCalls"), "{}", end.message());
        // Whatever it still got is gap-free: calls 1, 2, … in order.
        let prefix: Vec<String> = (1..=ids.len()).map(|n| format!("call-{n}")).collect();
        assert_eq!(ids, prefix);
        forwarder.await.unwrap();
    }

    #[tokio::test]
    async fn an_order_watcher_gets_only_that_order_and_shutdown_ends_it_with_unavailable() {
        let a = OrderId::generate();
        let (changes, receiver) = broadcast::channel(16);
        let stopping = CancellationToken::new();
        let (tx, mut rx) = mpsc::channel(16);
        let forwarder = tokio::spawn(forward(
            CallWatch {
                changes: receiver,
                stopping: stopping.clone(),
            },
            Some(a),
            tx,
        ));
        let other = OrderId::generate().to_string();
        changes.send(change(0, Some(&a.to_string()))).unwrap();
        changes.send(change(1, None)).unwrap();
        changes.send(change(2, Some(&other))).unwrap();
        changes.send(change(3, Some(&a.to_string()))).unwrap();
        let first = rx.recv().await.unwrap().unwrap();
        assert_eq!(first.call.unwrap().id, "call-0");
        assert_eq!(first.kind, pb::CallEventKind::Reported as i32);
        assert_eq!(rx.recv().await.unwrap().unwrap().call.unwrap().id, "call-3");
        stopping.cancel();
        let (ids, end) = drain(&mut rx).await;
        assert!(ids.is_empty());
        assert_eq!(end.map(|s| s.code()), Some(Code::Unavailable));
        forwarder.await.unwrap();
    }

    #[tokio::test]
    async fn missed_changes_from_other_replicas_end_a_watch_with_unavailable_after_what_it_had() {
        let (changes, receiver) = broadcast::channel(16);
        let (tx, mut rx) = mpsc::channel(16);
        let forwarder = tokio::spawn(forward(
            CallWatch {
                changes: receiver,
                stopping: CancellationToken::new(),
            },
            None,
            tx,
        ));
        changes.send(change(0, None)).unwrap();
        changes.send(WatchEvent::Missed).unwrap();
        changes.send(change(1, None)).unwrap();
        let (ids, end) = drain(&mut rx).await;
        assert_eq!(ids, vec!["call-0".to_owned()]);
        let end = end.expect("a final status");
        assert_eq!(end.code(), Code::Unavailable);
        assert!(
            end.message().contains("other replicas"),
            "{}",
            end.message()
        );
        assert!(end.message().contains("ListCalls"), "{}", end.message());
        forwarder.await.unwrap();
    }

    #[tokio::test]
    async fn a_watcher_whose_client_went_away_stops() {
        let (changes, receiver) = broadcast::channel(16);
        let (tx, rx) = mpsc::channel(16);
        let forwarder = tokio::spawn(forward(
            CallWatch {
                changes: receiver,
                stopping: CancellationToken::new(),
            },
            None,
            tx,
        ));
        drop(rx);
        forwarder.await.unwrap();
        assert_eq!(changes.receiver_count(), 0);
    }
}
