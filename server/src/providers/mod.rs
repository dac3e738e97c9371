//! Clients of outside APIs (Vapi, Twilio): real HTTP with injectable base
//! URLs, timeouts, typed errors and retries of transient failures. Secrets
//! and full phone numbers never reach logs.

pub mod retry;
pub mod twilio;
pub mod vapi;
