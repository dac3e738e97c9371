//! Background workers. Each is safe to run in several processes at once.

pub mod call_fanout;
pub mod dispatcher;
pub mod link_reconciler;
pub mod report_recovery;
pub mod routing_watch;
