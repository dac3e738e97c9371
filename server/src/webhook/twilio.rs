//! `POST /webhooks/twilio/status` and `POST /webhooks/twilio/inbound`: check
//! X-Twilio-Signature on the raw bytes against the configured public URL,
//! then hand the callback to NotificationsService through the SDK with the
//! shim's ingest key, like the Vapi shim.

use axum::{
    body::Body,
    extract::State,
    http::{HeaderMap, StatusCode, Uri, header},
    response::{IntoResponse, Response},
};
use centralino_sdk::{Client, proto};
use serde_json::json;
use tracing::{debug, info, warn};

use super::{
    twilio_signature::{self, form_pairs},
    vapi::{grpc_failure, reply},
};
use crate::{config::Secret, domain::phone::mask};

/// What the Twilio shim needs; cheap to clone.
#[derive(Clone)]
pub struct TwilioShim {
    /// The account's primary auth token: Twilio signs webhooks with it.
    pub auth_token: Option<Secret>,
    /// `CENTRALINO_PUBLIC_URL`, the origin Twilio calls (signatures cover it).
    pub public_url: Option<String>,
    pub client: Client,
    pub max_body: usize,
}

/// An empty TwiML answer: no automatic reply to the agent.
const EMPTY_TWIML: &str = r#"<?xml version="1.0" encoding="UTF-8"?><Response></Response>"#;

pub async fn status(
    State(shim): State<TwilioShim>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let params = match authenticate(&shim, &uri, &headers, body).await {
        Ok(params) => params,
        Err(refusal) => return refusal,
    };
    let sid = field(&params, &["MessageSid", "SmsSid"]);
    let status = field(&params, &["MessageStatus", "SmsStatus"]);
    let error_code = field(&params, &["ErrorCode"])
        .trim()
        .parse::<i64>()
        .unwrap_or(0);
    let error_message = field(&params, &["ChannelStatusMessage", "ErrorMessage"]);
    if sid.is_empty() || status.is_empty() {
        return reply(
            StatusCode::BAD_REQUEST,
            json!({"error": "bad_request", "message": "MessageSid and MessageStatus are required"}),
        );
    }
    // `?n=<notification>&a=<attempt>`: set on the callback URL of each send.
    let named = |name: &str| {
        uri.query()
            .map(|q| form_pairs(q.as_bytes()))
            .and_then(|pairs| pairs.into_iter().find(|(k, _)| k == name).map(|(_, v)| v))
            .unwrap_or_default()
    };
    let request = proto::RecordMessageStatusRequest {
        message_sid: sid.to_owned(),
        message_status: status.to_owned(),
        error_code,
        error_message: error_message.to_owned(),
        notification_id: named("n"),
        attempt_number: named("a").parse().unwrap_or(0),
    };
    match shim
        .client
        .notifications()
        .record_message_status(request)
        .await
    {
        Ok(done) => {
            let done = done.into_inner();
            debug!(
                message_sid = sid,
                status,
                applied = done.applied,
                "Twilio status callback"
            );
            reply(StatusCode::OK, json!({"ok": true, "applied": done.applied}))
        }
        Err(status) => grpc_failure(&status),
    }
}

pub async fn inbound(
    State(shim): State<TwilioShim>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let params = match authenticate(&shim, &uri, &headers, body).await {
        Ok(params) => params,
        Err(refusal) => return refusal,
    };
    let from = field(&params, &["From"]);
    let to = field(&params, &["To"]);
    // Only WhatsApp opens a WhatsApp window; an SMS to the number changes nothing.
    if !from.to_ascii_lowercase().starts_with("whatsapp:") {
        debug!("inbound message that is not WhatsApp: ignored");
        return twiml();
    }
    let request = proto::RecordInboundMessageRequest {
        from: from.to_owned(),
        to: to.to_owned(),
        message_sid: field(&params, &["MessageSid", "SmsSid"]).to_owned(),
    };
    match shim
        .client
        .notifications()
        .record_inbound_message(request)
        .await
    {
        Ok(_) => {
            info!(agent = %mask(from.trim_start_matches("whatsapp:")), "inbound WhatsApp recorded");
            twiml()
        }
        Err(status) => grpc_failure(&status),
    }
}

fn twiml() -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        EMPTY_TWIML,
    )
        .into_response()
}

/// The posted pairs, once the signature holds; otherwise the refusal (403,
/// nothing changed).
async fn authenticate(
    shim: &TwilioShim,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
) -> Result<Vec<(String, String)>, Response> {
    let Ok(bytes) = axum::body::to_bytes(body, shim.max_body).await else {
        return Err(reply(
            StatusCode::PAYLOAD_TOO_LARGE,
            json!({"error": "payload_too_large", "message": format!("the body is larger than {} bytes", shim.max_body)}),
        ));
    };
    let (Some(token), Some(public_url)) = (&shim.auth_token, &shim.public_url) else {
        warn!(
            path = uri.path(),
            "Twilio webhook refused: TWILIO_AUTH_TOKEN or CENTRALINO_PUBLIC_URL is not set, so its signature cannot be checked"
        );
        return Err(reply(
            StatusCode::FORBIDDEN,
            json!({"error": "forbidden", "reason": "NOT_CONFIGURED", "message": "TWILIO_AUTH_TOKEN and CENTRALINO_PUBLIC_URL must be set to check X-Twilio-Signature"}),
        ));
    };
    // The URL as Twilio requested it: the public origin, our path, the raw query.
    let url = match uri.query() {
        Some(query) => format!("{}{}?{query}", public_url.trim_end_matches('/'), uri.path()),
        None => format!("{}{}", public_url.trim_end_matches('/'), uri.path()),
    };
    if let Err(err) = twilio_signature::verify(token, &url, headers, &bytes) {
        warn!(path = uri.path(), reason = %err, "Twilio webhook refused: bad signature");
        return Err(reply(
            StatusCode::FORBIDDEN,
            json!({"error": "forbidden", "reason": "BAD_SIGNATURE", "message": err.to_string()}),
        ));
    }
    Ok(form_pairs(&bytes))
}

/// The first non-empty value of the first name present.
fn field<'a>(params: &'a [(String, String)], names: &[&str]) -> &'a str {
    names
        .iter()
        .find_map(|name| {
            params
                .iter()
                .find(|(k, v)| k == name && !v.is_empty())
                .map(|(_, v)| v.as_str())
        })
        .unwrap_or("")
}
