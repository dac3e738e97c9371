//! The one mapping from service errors to `tonic::Status`, with `google.rpc`
//! details (BadRequest field violations, ErrorInfo reasons).

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};
use tracing::{error, warn};

use crate::services::ServiceError;

/// `ErrorInfo.domain` of every error Centralino returns.
pub const ERROR_DOMAIN: &str = "centralino.v1";

impl From<ServiceError> for Status {
    fn from(err: ServiceError) -> Self {
        match err {
            ServiceError::InvalidArgument(violations) => {
                let mut details = ErrorDetails::new();
                for v in &violations {
                    details.add_bad_request_violation(v.field.clone(), v.description.clone());
                }
                details.set_error_info("INVALID_ARGUMENT", ERROR_DOMAIN, []);
                let message = violations
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ");
                Status::with_error_details(Code::InvalidArgument, message, details)
            }
            ServiceError::NotFound { resource, id } => with_reason(
                Code::NotFound,
                format!("{resource} {id} not found"),
                &format!("{}_NOT_FOUND", resource.to_ascii_uppercase()),
            ),
            ServiceError::FailedPrecondition { reason, message } => {
                with_reason(Code::FailedPrecondition, message, reason)
            }
            ServiceError::Aborted { reason, message } => {
                with_reason(Code::Aborted, message, reason)
            }
            ServiceError::AlreadyExists {
                reason,
                message,
                metadata,
            } => Status::with_error_details(
                Code::AlreadyExists,
                message,
                ErrorDetails::with_error_info(
                    reason,
                    ERROR_DOMAIN,
                    metadata
                        .into_iter()
                        .collect::<std::collections::HashMap<_, _>>(),
                ),
            ),
            ServiceError::Unavailable { reason, message } => {
                with_reason(Code::Unavailable, message, reason)
            }
            ServiceError::PermissionDenied { message } => {
                with_reason(Code::PermissionDenied, message, "PERMISSION_DENIED")
            }
            ServiceError::Store(err) if err.is_unstorable_text() => {
                warn!(error = %err, "input refused by the database: text with a NUL character");
                with_reason(
                    Code::InvalidArgument,
                    "a text field holds a NUL character (\\u0000), which cannot be stored"
                        .to_owned(),
                    "TEXT_NOT_STORABLE",
                )
            }
            ServiceError::Store(err) => {
                // The cause is for the operator's log, not for the caller.
                error!(error = %err, transient = err.is_transient(), "store error");
                if err.is_transient() {
                    with_reason(
                        Code::Unavailable,
                        "the database is unavailable; retry shortly".to_owned(),
                        "DATABASE_UNAVAILABLE",
                    )
                } else {
                    with_reason(
                        Code::Internal,
                        "internal error; see the server log".to_owned(),
                        "INTERNAL",
                    )
                }
            }
        }
    }
}

pub fn with_reason(code: Code, message: String, reason: &str) -> Status {
    Status::with_error_details(
        code,
        message,
        ErrorDetails::with_error_info(reason, ERROR_DOMAIN, []),
    )
}
