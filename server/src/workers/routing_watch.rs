//! Keeps this process's in-memory routing table in step with changes made by
//! other processes: polls the shared routing epoch (one primary-key read) and
//! marks the table stale when it moved. A full reload every few minutes is a
//! safety net against a change whose epoch bump was lost with its process.

use std::{sync::Arc, time::Duration};

use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::{services::routing::RoutingTable, store::Store};

/// Reload regardless of the epoch this often.
const SAFETY_RELOAD: Duration = Duration::from_secs(300);

pub async fn run(
    store: Store,
    routing: Arc<RoutingTable>,
    poll: Duration,
    shutdown: CancellationToken,
) {
    let mut ticker = tokio::time::interval(poll);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_full = tokio::time::Instant::now();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = ticker.tick() => {}
        }
        if last_full.elapsed() >= SAFETY_RELOAD {
            last_full = tokio::time::Instant::now();
            store.mark_routing_stale();
            continue;
        }
        if let Err(err) = routing.check_epoch().await {
            warn!(error = %err, "routing epoch check failed; the next poll retries");
        }
    }
    debug!("routing watch stopped");
}
