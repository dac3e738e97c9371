//! Centralino server: gRPC services, the webhook shim, workers and the store.
//!
//! Data flows one way: transport (`grpc`, `webhook`) -> `services` -> `store`.
//! `domain` holds the types every layer shares; proto types stop in `grpc`.

pub mod app;
pub mod auth;
pub mod config;
pub mod domain;
pub mod grpc;
pub mod providers;
pub mod services;
pub mod store;
pub mod telemetry;
pub mod webhook;
pub mod workers;

pub use app::Application;
pub use config::Config;
