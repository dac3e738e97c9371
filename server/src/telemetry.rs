//! Logging setup and the per-RPC span.

use std::{io::IsTerminal, time::Duration};

use axum::http::{HeaderMap, Request};
use tonic::Code;
use tracing::{Level, Span, field::Empty};
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::config::{LogConfig, LogFormat};

/// Installs the global subscriber; a second call (tests) is a no-op.
pub fn init(config: &LogConfig) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let result = match config.log_format {
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false),
            )
            .try_init(),
        // Colours only on a terminal: log files and collectors get plain text.
        LogFormat::Text => registry
            .with(fmt::layer().with_ansi(std::io::stdout().is_terminal()))
            .try_init(),
    };
    // Already installed (several servers in one test process): keep the first.
    drop(result);
}

/// The span of one RPC: method, request id (the caller's `x-request-id` when
/// sane, else a new one) and, once authenticated, the caller's role and key id.
pub fn rpc_span<B>(request: &Request<B>) -> Span {
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|id| {
            // Log-safe ids only: no spaces, quotes or control characters.
            !id.is_empty()
                && id.len() <= 64
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        })
        .map(ToOwned::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    tracing::info_span!(
        "rpc",
        method = %request.uri().path(),
        request_id = %request_id,
        role = Empty,
        key_id = Empty,
        latency_ms = Empty,
    )
}

/// The `grpc-status` of a header block (trailers-only errors carry it in the
/// headers, everything else in the trailers).
pub fn grpc_code(headers: &HeaderMap) -> Option<Code> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map(Code::from_i32)
}

/// Caller mistakes are info, refusals warn, server faults error.
pub fn level_for(code: Code) -> Level {
    match code {
        Code::Ok
        | Code::Cancelled
        | Code::InvalidArgument
        | Code::NotFound
        | Code::AlreadyExists
        | Code::FailedPrecondition
        | Code::Aborted
        | Code::OutOfRange => Level::INFO,
        Code::Unauthenticated | Code::PermissionDenied | Code::ResourceExhausted => Level::WARN,
        Code::Unknown
        | Code::DeadlineExceeded
        | Code::Unimplemented
        | Code::Internal
        | Code::Unavailable
        | Code::DataLoss => Level::ERROR,
    }
}

/// One line per finished RPC, at the level its code deserves. The span holds
/// the method, request id, caller and time to first response.
pub fn log_rpc_end(headers: &HeaderMap) {
    let Some(code) = grpc_code(headers) else {
        return;
    };
    let code_name = format!("{code:?}");
    // Our messages name fields and ids, never personal values. gRPC
    // percent-encodes them on the wire.
    let message = headers
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .map(|m| {
            percent_encoding::percent_decode_str(m)
                .decode_utf8_lossy()
                .into_owned()
        })
        .unwrap_or_default();
    match level_for(code) {
        Level::ERROR => tracing::error!(code = %code_name, grpc_message = %message, "rpc finished"),
        Level::WARN => tracing::warn!(code = %code_name, grpc_message = %message, "rpc finished"),
        _ if code == Code::Ok => tracing::info!(code = %code_name, "rpc finished"),
        _ => tracing::info!(code = %code_name, grpc_message = %message, "rpc finished"),
    }
}

/// Records the time to the response headers on the RPC's span.
pub fn record_latency(span: &Span, latency: Duration) {
    span.record("latency_ms", latency.as_secs_f64() * 1000.0);
}
