//! The HTTP listener: liveness, readiness, and the Vapi and Twilio webhook shims.

pub mod auth;
pub mod messages;
pub mod twilio;
pub mod twilio_signature;
pub mod vapi;

use axum::{
    Json, Router,
    extract::State,
    http::StatusCode,
    response::IntoResponse,
    routing::{get, post},
};
use serde_json::json;
use tracing::warn;

use crate::store::Store;

#[derive(Clone)]
struct HttpState {
    store: Store,
}

pub fn router(store: Store, shim: vapi::Shim, twilio_shim: twilio::TwilioShim) -> Router {
    let webhooks = Router::new()
        .route("/webhooks/vapi", post(vapi::handle))
        .with_state(shim);
    let twilio_hooks = Router::new()
        .route("/webhooks/twilio/status", post(twilio::status))
        .route("/webhooks/twilio/inbound", post(twilio::inbound))
        .with_state(twilio_shim);
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(HttpState { store })
        .merge(webhooks)
        .merge(twilio_hooks)
        .fallback(not_found)
}

/// The process is up.
async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// The process can serve: its database answers.
async fn readyz(State(state): State<HttpState>) -> impl IntoResponse {
    match state.store.ping().await {
        Ok(()) => (
            StatusCode::OK,
            Json(json!({ "status": "ready", "database": state.store.backend_name() })),
        ),
        Err(err) => {
            warn!(error = %err, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "status": "unavailable", "reason": "database unreachable" })),
            )
        }
    }
}

async fn not_found() -> impl IntoResponse {
    (
        StatusCode::NOT_FOUND,
        Json(json!({ "error": "not_found", "message": "no such endpoint" })),
    )
}
