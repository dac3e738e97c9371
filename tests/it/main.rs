//! End-to-end tests: the real server, the real SDK, a real database.

mod auth;
mod calls;
mod fakes;
mod helpers;
mod notifications;
mod number_races;
mod numbers;
mod orders;
mod outbox;
mod pipeline;
mod recovery;
mod routing;
mod sdk;
mod server;
mod validation;
mod watch;
