//! Sends the WhatsApp outbox. Woken at once when a notification commits in
//! this process, and sweeps periodically for the rest (retries that came
//! due, rows written by other processes, rows whose lease expired after a
//! crash). Rows are claimed under a lease, so several processes on one
//! PostgreSQL never send the same row twice; at most `concurrency` messages
//! are in flight per process.

use std::{sync::Arc, time::Duration};

use tokio::{sync::Semaphore, task::JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::services::NotificationsService;

/// Quiet SENT messages read back per sweep.
const REFRESH_BATCH: u64 = 50;

pub struct DispatcherSettings {
    pub sweep: Duration,
    pub concurrency: usize,
    /// How often SENT messages without news are read back from Twilio.
    pub refresh_every: Duration,
    /// Test hook: abort right after a claim (see the crash-safety test).
    pub crash_after_claim: bool,
}

pub async fn run(
    service: NotificationsService,
    settings: DispatcherSettings,
    shutdown: CancellationToken,
) {
    if !service.can_send() {
        info!("WhatsApp dispatcher idle: Twilio is not configured, notifications wait as PENDING");
        return;
    }
    let concurrency = settings.concurrency.max(1);
    let permits = Arc::new(Semaphore::new(concurrency));
    let wake = service.wake_signal();
    let mut in_flight = JoinSet::new();
    let mut last_refresh = tokio::time::Instant::now();
    info!(
        concurrency,
        sweep_ms = u64::try_from(settings.sweep.as_millis()).unwrap_or(u64::MAX),
        "WhatsApp dispatcher started"
    );
    loop {
        // Claim only what can be sent now, so no claimed row waits on a permit
        // while its lease runs out.
        loop {
            let free = permits.available_permits();
            if free == 0 || shutdown.is_cancelled() {
                break;
            }
            let rows = match service.claim(free as u64).await {
                Ok(rows) => rows,
                Err(err) => {
                    warn!(error = %err, "WhatsApp dispatcher: claim failed; next sweep retries");
                    break;
                }
            };
            if rows.is_empty() {
                break;
            }
            if settings.crash_after_claim {
                error!(claimed = rows.len(), "test hook: aborting after a claim");
                std::process::abort();
            }
            let claimed = rows.len();
            for row in rows {
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    break;
                };
                let service = service.clone();
                in_flight.spawn(async move {
                    service.deliver(row).await;
                    drop(permit);
                });
            }
            if claimed < free {
                break;
            }
        }
        if last_refresh.elapsed() >= settings.refresh_every {
            last_refresh = tokio::time::Instant::now();
            match service.refresh_quiet(REFRESH_BATCH).await {
                Ok(0) => {}
                Ok(n) => debug!(messages = n, "sent messages read back from Twilio"),
                Err(err) => {
                    warn!(error = %err, "reading sent messages back failed; next sweep retries")
                }
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = wake.notified() => {}
            () = tokio::time::sleep(settings.sweep) => {}
            Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
        }
    }
    // Sends already started finish (the app's grace period bounds this).
    while in_flight.join_next().await.is_some() {}
    debug!("WhatsApp dispatcher stopped");
}
