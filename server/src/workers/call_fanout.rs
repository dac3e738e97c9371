//! `WatchCalls` across replicas, PostgreSQL only (a SQLite database has one
//! process): LISTENs on the call-changes channel that every replica
//! notifies in the transactions that change calls (`services/call_feed.rs`),
//! skips this process's own notifications (already published), loads the
//! named calls in one query and publishes them into this process's watch
//! channel.
//!
//! A lost connection may have lost notifications: every open watch is ended
//! (UNAVAILABLE, "re-list and watch again") and new ones are refused until
//! LISTEN is back, retried with backoff. Never a silent gap.

use std::{collections::HashMap, time::Duration};

use sea_orm::sqlx::postgres::{PgListener, PgPoolOptions};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::{
    services::{CallsService, call_feed},
    store::{Store, StoreError, calls as call_store},
};

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Notifications already received are relayed together, with one query.
const MAX_RELAY: usize = 64;

/// Why the feed stopped.
#[derive(Debug, thiserror::Error)]
enum FeedError {
    #[error("listener: {0}")]
    Listener(#[from] sea_orm::sqlx::Error),
    #[error("loading the notified calls: {0}")]
    Load(#[from] StoreError),
    #[error("the listener's connection was lost")]
    Lost,
}

/// A listener on its own connection (never one of the store's pool, which
/// serves requests), LISTENing once this returns.
async fn connect(store: &Store) -> Result<PgListener, FeedError> {
    let options = store
        .conn()
        .get_postgres_connection_pool()
        .connect_options();
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .min_connections(0)
        .max_lifetime(None)
        .idle_timeout(None)
        .acquire_timeout(Duration::from_secs(10))
        .connect_lazy_with((*options).clone());
    let mut listener = PgListener::connect_with(&pool).await?;
    // Reconnection is ours: it must end the open watches first.
    listener.eager_reconnect(false);
    listener.ignore_pool_close_event(true);
    listener.listen(call_feed::CHANNEL).await?;
    Ok(listener)
}

/// The first LISTEN, before the server takes requests, so that a watch
/// opened right after start-up misses nothing. On failure the worker keeps
/// trying and watches are refused meanwhile.
pub async fn start(store: &Store, calls: &CallsService) -> Option<PgListener> {
    match connect(store).await {
        Ok(listener) => {
            calls.feed_resumed();
            Some(listener)
        }
        Err(err) => {
            warn!(error = %err, "cannot LISTEN for other replicas' call changes; WatchCalls is refused until it can");
            None
        }
    }
}

pub async fn run(
    store: Store,
    calls: CallsService,
    mut listener: Option<PgListener>,
    shutdown: CancellationToken,
) {
    let mut backoff = MIN_BACKOFF;
    loop {
        let Some(active) = listener.as_mut() else {
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(backoff) => {}
            }
            match connect(&store).await {
                Ok(again) => {
                    listener = Some(again);
                    calls.feed_resumed();
                    backoff = MIN_BACKOFF;
                    info!("listening for other replicas' call changes again");
                }
                Err(err) => {
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    warn!(error = %err, retry_in_ms = backoff.as_millis() as u64, "cannot LISTEN for other replicas' call changes");
                }
            }
            continue;
        };
        let received = tokio::select! {
            () = shutdown.cancelled() => break,
            received = active.try_recv() => received,
        };
        let outcome = match received {
            Ok(Some(first)) => {
                let mut payloads = vec![first.payload().to_owned()];
                while payloads.len() < MAX_RELAY
                    && let Some(next) = active.next_buffered()
                {
                    payloads.push(next.payload().to_owned());
                }
                relay(&store, &calls, &payloads).await
            }
            Ok(None) => Err(FeedError::Lost),
            Err(err) => Err(FeedError::from(err)),
        };
        if let Err(err) = outcome {
            // Whatever was notified meanwhile is gone: end the watches.
            calls.feed_lost();
            listener = None;
            warn!(error = %err, "other replicas' call changes may have been missed: open watches ended, reconnecting");
        }
    }
    debug!("call fan-out stopped");
}

/// Publishes what other processes notified, in notification (commit) order.
/// Each call is published as it is now, which may be newer than the change
/// announced, never older.
async fn relay(store: &Store, calls: &CallsService, payloads: &[String]) -> Result<(), FeedError> {
    let mut changes = Vec::new();
    for payload in payloads {
        match call_feed::decode(payload) {
            Some(notice) if notice.origin == calls.origin() => {}
            Some(notice) => changes.extend(notice.changes),
            // Another version's format: its changes cannot be relayed.
            None => return Err(FeedError::Lost),
        }
    }
    if changes.is_empty() {
        return Ok(());
    }
    let mut ids: Vec<String> = changes.iter().map(|(_, id)| id.clone()).collect();
    ids.sort_unstable();
    ids.dedup();
    let rows: HashMap<String, _> = call_store::find_calls_by_ids(store.conn(), &ids)
        .await?
        .into_iter()
        .map(|call| (call.id.clone(), call))
        .collect();
    for (kind, id) in changes {
        match rows.get(&id) {
            Some(call) => calls.publish_remote(kind, call.clone()),
            None => debug!(call_id = %id, "a notified call is not stored; skipped"),
        }
    }
    Ok(())
}
