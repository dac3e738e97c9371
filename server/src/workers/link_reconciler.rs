//! Retries PENDING/FAILED Vapi links when they are due and repairs drifted
//! LINKED numbers. Leases on each number keep replicas from working on the
//! same one at once.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::services::NumbersService;

/// Numbers looked at per pass.
const BATCH: u64 = 100;

pub async fn run(numbers: NumbersService, interval: Duration, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = ticker.tick() => {}
        }
        match numbers.reconcile(BATCH).await {
            Ok(0) => debug!("link reconciler: nothing due"),
            Ok(done) => info!(numbers = done, "link reconciler: links checked"),
            Err(err) => warn!(error = %err, "link reconciler pass failed; next pass retries"),
        }
    }
    debug!("link reconciler stopped");
}
