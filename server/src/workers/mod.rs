//! Background workers. Each is safe to run in several processes at once.

pub mod link_reconciler;
