//! End-to-end tests: the real server, the real SDK, a real database.

mod auth;
mod helpers;
mod orders;
mod sdk;
mod server;
mod validation;
