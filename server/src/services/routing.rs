//! Assistant requests answered from memory: a snapshot of every held number
//! and its order, reloaded when this process changes routing (at once) or
//! another process does (the shared epoch, polled by `workers::routing_watch`).

use std::sync::Arc;

use tokio::sync::{Mutex, RwLock};
use tracing::debug;

use super::ServiceError;
use crate::{
    domain::PhoneNumber,
    store::{
        Store,
        routing::{self, RoutingSnapshot},
    },
};

#[derive(Debug)]
pub struct RoutingTable {
    store: Store,
    snapshot: RwLock<Arc<RoutingSnapshot>>,
    /// One reload at a time; the others wait for it and use its result.
    reloading: Mutex<()>,
}

/// Who answers a number, as the table knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    Unknown,
    Order(crate::store::routing::RoutedOrder),
}

impl RoutingTable {
    pub fn new(store: Store) -> Self {
        Self {
            store,
            snapshot: RwLock::new(Arc::new(RoutingSnapshot {
                epoch: -1,
                ..Default::default()
            })),
            reloading: Mutex::new(()),
        }
    }

    /// The holder of a number given by Vapi phone-number id or E.164.
    pub async fn holder(
        &self,
        phone_number_id: Option<&str>,
        called: Option<&PhoneNumber>,
    ) -> Result<Holder, ServiceError> {
        Ok(match self.held_number(phone_number_id, called).await? {
            Some((_, order)) => Holder::Order(order),
            None => Holder::Unknown,
        })
    }

    /// The number a call reached (by Vapi phone-number id, else as called)
    /// and its holder, if one holds it now.
    pub async fn held_number(
        &self,
        phone_number_id: Option<&str>,
        called: Option<&PhoneNumber>,
    ) -> Result<Option<(PhoneNumber, crate::store::routing::RoutedOrder)>, ServiceError> {
        let snapshot = self.current().await?;
        let number = phone_number_id
            .and_then(|id| snapshot.by_vapi_id.get(id))
            .or(called);
        Ok(number.and_then(|n| snapshot.holders.get(n).map(|order| (n.clone(), *order))))
    }

    /// The epoch of the snapshot in use.
    pub async fn epoch(&self) -> i64 {
        self.snapshot.read().await.epoch
    }

    async fn current(&self) -> Result<Arc<RoutingSnapshot>, ServiceError> {
        let stale = self.store.take_routing_stale();
        if !stale {
            let snapshot = self.snapshot.read().await.clone();
            if snapshot.loaded() {
                return Ok(snapshot);
            }
        }
        let _one = self.reloading.lock().await;
        if !stale {
            // The first load, which another request started: wait for it
            // rather than answer from an empty table (every number
            // "not active" for the calls that ring meanwhile).
            let snapshot = self.snapshot.read().await.clone();
            if snapshot.loaded() {
                return Ok(snapshot);
            }
        }
        let fresh = Arc::new(routing::load(self.store.conn()).await.inspect_err(|_| {
            // Try again on the next request rather than serve stale data silently.
            self.store.mark_routing_stale();
        })?);
        debug!(
            epoch = fresh.epoch,
            numbers = fresh.holders.len(),
            "routing table reloaded"
        );
        *self.snapshot.write().await = fresh.clone();
        Ok(fresh)
    }

    /// Marks the table stale when the shared epoch moved (another process
    /// changed routing).
    pub async fn check_epoch(&self) -> Result<(), ServiceError> {
        let shared = routing::epoch(self.store.conn()).await?;
        if shared != self.epoch().await {
            self.store.mark_routing_stale();
        }
        Ok(())
    }
}
