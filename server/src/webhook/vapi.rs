//! `POST /webhooks/vapi`: authenticate the raw bytes, parse, and hand each
//! message to CallsService through the SDK with the shim's ingest key.

use std::time::SystemTime;

use axum::{
    Json,
    body::Body,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use centralino_sdk::{Client, proto, tonic::Code};
use serde_json::{Value, json};
use tracing::{error, info, warn};

use super::{
    auth::WebhookAuth,
    messages::{self, CallRef, VapiMessage},
};
use crate::domain::phone::mask;

/// What the shim needs; cheap to clone.
#[derive(Clone)]
pub struct Shim {
    pub auth: Option<WebhookAuth>,
    /// Clients on separate connections, taken in turn.
    pub clients: std::sync::Arc<[Client]>,
    pub next: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    pub max_body: usize,
}

impl Shim {
    /// The next client in turn.
    pub fn client(&self) -> &Client {
        let turn = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        &self.clients[turn % self.clients.len()]
    }
}

pub(super) fn reply(status: StatusCode, body: Value) -> Response {
    (status, Json(body)).into_response()
}

pub async fn handle(State(shim): State<Shim>, headers: HeaderMap, body: Body) -> Response {
    let Ok(bytes) = axum::body::to_bytes(body, shim.max_body).await else {
        return reply(
            StatusCode::PAYLOAD_TOO_LARGE,
            json!({"error": "payload_too_large", "message": format!("the body is larger than {} bytes", shim.max_body)}),
        );
    };
    let Some(auth) = &shim.auth else {
        warn!("Vapi webhook refused: VAPI_WEBHOOK_SECRET is not configured");
        return reply(
            StatusCode::UNAUTHORIZED,
            json!({"error": "unauthorized", "reason": "NOT_CONFIGURED", "message": "VAPI_WEBHOOK_SECRET is not configured on this server"}),
        );
    };
    if let Err(err) = auth.verify(&headers, &bytes, SystemTime::now()) {
        warn!(reason = err.code(), "Vapi webhook refused: bad credential");
        return reply(
            StatusCode::UNAUTHORIZED,
            json!({"error": "unauthorized", "reason": err.code(), "message": err.to_string()}),
        );
    }
    let message = match messages::parse(&bytes) {
        Ok(message) => message,
        Err(err) => {
            info!(error = %err, "Vapi webhook refused: malformed");
            return reply(
                StatusCode::BAD_REQUEST,
                json!({"error": "bad_request", "message": err.to_string(), "field": err.field()}),
            );
        }
    };
    let calls = shim.client().calls();
    match message {
        VapiMessage::AssistantRequest(request) => {
            let mut calls = calls;
            let asked = proto::ResolveAssistantRequest {
                phone_number_id: request.call.phone_number_id.clone().unwrap_or_default(),
                called_number: request.call.called_number.clone().unwrap_or_default(),
                vapi_call_id: request.call.call_id.clone().unwrap_or_default(),
            };
            match calls.resolve_assistant(asked).await {
                Ok(answer) => {
                    let answer = answer.into_inner();
                    if answer.assistant_id.is_empty() {
                        info!(number = %mask(request.call.called_number.as_deref().unwrap_or("")), "assistant request refused");
                        reply(StatusCode::OK, json!({"error": answer.error_message}))
                    } else {
                        reply(StatusCode::OK, json!({"assistantId": answer.assistant_id}))
                    }
                }
                Err(status) => grpc_failure(&status),
            }
        }
        VapiMessage::StatusUpdate(update) => {
            let mut calls = calls;
            let event = proto::RecordCallEventRequest {
                vapi_call_id: update.call.call_id.clone().unwrap_or_default(),
                status: update.status.clone(),
                phone_number_id: update.call.phone_number_id.clone().unwrap_or_default(),
                called_number: update.call.called_number.clone().unwrap_or_default(),
                assistant_id: update.call.assistant_id.clone().unwrap_or_default(),
                customer_number: update.call.customer_number.clone().unwrap_or_default(),
                start_time: update.started_at.map(crate::grpc::convert::timestamp),
                ended_reason: update.ended_reason.clone().unwrap_or_default(),
            };
            match calls.record_call_event(event).await {
                Ok(done) => reply(
                    StatusCode::OK,
                    json!({"ok": true, "applied": done.into_inner().applied}),
                ),
                Err(status) => grpc_failure(&status),
            }
        }
        VapiMessage::EndOfCallReport(report) => {
            let mut calls = calls;
            let request = proto::RecordCallReportRequest {
                report: Some(report_to_pb(&report)),
            };
            match calls.record_call_report(request).await {
                Ok(done) => {
                    let done = done.into_inner();
                    let call = done.call.unwrap_or_default();
                    reply(
                        StatusCode::OK,
                        json!({"ok": true, "replay": done.replay, "callId": call.id, "orphan": call.order_id.is_empty()}),
                    )
                }
                Err(status) => grpc_failure(&status),
            }
        }
        VapiMessage::Ignored { message_type } => {
            reply(StatusCode::OK, json!({"ok": true, "ignored": message_type}))
        }
    }
}

/// The report as CallsService takes it (one mapping, shared with recovery).
pub fn report_to_pb(report: &messages::CallReport) -> proto::CallReport {
    let CallRef {
        call_id,
        phone_number_id,
        called_number,
        assistant_id,
        customer_number,
    } = &report.call;
    proto::CallReport {
        vapi_call_id: call_id.clone().unwrap_or_default(),
        phone_number_id: phone_number_id.clone().unwrap_or_default(),
        called_number: called_number.clone().unwrap_or_default(),
        assistant_id: assistant_id.clone().unwrap_or_default(),
        customer_number: customer_number.clone().unwrap_or_default(),
        start_time: report.started_at.map(crate::grpc::convert::timestamp),
        end_time: report.ended_at.map(crate::grpc::convert::timestamp),
        duration_seconds: report.duration_seconds.unwrap_or_default(),
        ended_reason: report.ended_reason.clone().unwrap_or_default(),
        cost: report.cost.unwrap_or_default(),
        summary: report.summary.clone().unwrap_or_default(),
        transcript: report.transcript.clone().unwrap_or_default(),
        recording_url: report.recording_url.clone().unwrap_or_default(),
        stereo_recording_url: report.stereo_recording_url.clone().unwrap_or_default(),
        structured_data_json: report
            .structured_data
            .as_ref()
            .map(Value::to_string)
            .unwrap_or_default(),
        success_evaluation: report.success_evaluation.clone().unwrap_or_default(),
        call_type: report.call_type.clone().unwrap_or_default(),
    }
}

/// Bad input is the caller's (4xx); anything else is ours (5xx, so a Vapi
/// backoff plan retries it).
pub(super) fn grpc_failure(status: &centralino_sdk::tonic::Status) -> Response {
    match status.code() {
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => reply(
            StatusCode::BAD_REQUEST,
            json!({"error": "bad_request", "message": status.message()}),
        ),
        Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted | Code::Aborted => {
            warn!(code = ?status.code(), message = status.message(), "webhook: the gRPC service is unavailable");
            reply(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": "unavailable", "message": "try again shortly"}),
            )
        }
        Code::Ok
        | Code::Cancelled
        | Code::Unknown
        | Code::NotFound
        | Code::AlreadyExists
        | Code::PermissionDenied
        | Code::Unauthenticated
        | Code::Unimplemented
        | Code::Internal
        | Code::DataLoss => {
            error!(code = ?status.code(), message = status.message(), "webhook: the gRPC service failed");
            reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"error": "internal", "message": "see the server log"}),
            )
        }
    }
}
