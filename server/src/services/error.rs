//! The services' one error type. `grpc::status` maps it exhaustively to
//! `tonic::Status`.

use crate::{domain::FieldViolation, store::StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The request is malformed; every bad field is named.
    #[error("invalid argument: {}", join(.0))]
    InvalidArgument(Vec<FieldViolation>),
    #[error("{resource} {id} not found")]
    NotFound { resource: &'static str, id: String },
    /// The request is valid but the resource's state forbids it.
    #[error("{message}")]
    FailedPrecondition {
        reason: &'static str,
        message: String,
    },
    /// A concurrent change won (stale etag).
    #[error("{message}")]
    Aborted {
        reason: &'static str,
        message: String,
    },
    /// The resource exists already (e.g. the number belongs to another order).
    /// `metadata` goes into the ErrorInfo (e.g. the holder).
    #[error("{message}")]
    AlreadyExists {
        reason: &'static str,
        message: String,
        metadata: std::collections::BTreeMap<String, String>,
    },
    /// An outside service did not answer as needed; retrying later may work.
    #[error("{message}")]
    Unavailable {
        reason: &'static str,
        message: String,
    },
    /// The caller is known but may not do this.
    #[error("{message}")]
    PermissionDenied { message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ServiceError {
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::InvalidArgument(vec![FieldViolation::new(field, description)])
    }
}

fn join(violations: &[FieldViolation]) -> String {
    violations
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
