//! Authentication of every Centralino RPC: the interceptor turns the bearer key
//! into a `Principal` request extension; handlers then authorize per RPC.

use std::sync::Arc;

use tonic::{Code, Request, Status, service::Interceptor};
use tracing::{Span, warn};

use super::status::with_reason;
use crate::auth::{ApiKeys, Principal};

#[derive(Clone, Debug)]
pub struct Authenticate {
    keys: Arc<ApiKeys>,
}

impl Authenticate {
    pub fn new(keys: Arc<ApiKeys>) -> Self {
        Self { keys }
    }
}

impl Interceptor for Authenticate {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        let Some(header) = header else {
            warn!("rejected: no authorization metadata");
            return Err(with_reason(
                Code::Unauthenticated,
                "missing API key: send metadata \"authorization: Bearer <key>\"".to_owned(),
                "API_KEY_MISSING",
            ));
        };
        let key = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .unwrap_or("")
            .trim();
        match self.keys.lookup(key) {
            Some(principal) => {
                let span = Span::current();
                span.record("role", tracing::field::display(&principal.role));
                span.record("key_id", principal.key_id.as_str());
                request.extensions_mut().insert(principal);
                Ok(request)
            }
            None => {
                warn!("rejected: unknown API key");
                Err(with_reason(
                    Code::Unauthenticated,
                    "unknown API key".to_owned(),
                    "API_KEY_UNKNOWN",
                ))
            }
        }
    }
}

/// The caller of a request that went through [`Authenticate`].
pub fn principal<T>(request: &Request<T>) -> Result<Principal, Status> {
    request
        .extensions()
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| {
            // Only reachable if a service was mounted without the interceptor.
            with_reason(
                Code::Unauthenticated,
                "request was not authenticated".to_owned(),
                "API_KEY_MISSING",
            )
        })
}
