//! Orders: create, read, list, update with optimistic concurrency, cancel.

use tracing::{info, warn};

use super::{NumbersService, ServiceError, paging};
use crate::domain::{ManagedNumber, forwarding::ForwardingCode};

/// A cancelled order, and the number it released with the codes that stop
/// the agency's forwarding.
pub type Cancelled = (Order, Option<(ManagedNumber, Vec<ForwardingCode>)>);
use crate::{
    domain::{
        NewOrder, Order, OrderId, OrderPatch, OrderStatus,
        order::{etag_of, revision_of},
    },
    store::{
        Store,
        orders::{self, OrderFilter},
    },
};

/// What a list asks for; `only` restricts it to one order (viewer keys).
#[derive(Debug, Clone, Default)]
pub struct OrderQuery {
    pub status: Option<OrderStatus>,
    pub brand: Option<String>,
    pub only: Option<OrderId>,
    pub page_size: i32,
    pub page_token: String,
}

#[derive(Debug, Clone)]
pub struct OrderPage {
    pub orders: Vec<Order>,
    pub next_page_token: String,
}

#[derive(Clone, Debug)]
pub struct OrdersService {
    store: Store,
    numbers: NumbersService,
}

impl OrdersService {
    pub fn new(store: Store, numbers: NumbersService) -> Self {
        Self { store, numbers }
    }

    pub async fn create(&self, new: NewOrder) -> Result<Order, ServiceError> {
        let order = Order::create(OrderId::generate(), new, crate::domain::now());
        let _turn = self.store.write_turn().await;
        orders::insert(self.store.conn(), &order).await?;
        info!(order_id = %order.id, "order created");
        Ok(order)
    }

    pub async fn get(&self, id: OrderId) -> Result<Order, ServiceError> {
        orders::find(self.store.conn(), id)
            .await?
            .ok_or_else(|| not_found(id))
    }

    pub async fn list(&self, query: OrderQuery) -> Result<OrderPage, ServiceError> {
        let size = paging::page_size(query.page_size)?;
        let status = query.status.map(|s| s.as_str()).unwrap_or("");
        let brand = query.brand.as_deref().unwrap_or("");
        let only = query.only.map(|id| id.to_string()).unwrap_or_default();
        let fingerprint = paging::fingerprint(&["orders", status, brand, &only]);
        let after = paging::decode(&query.page_token, &fingerprint)?;
        let filter = OrderFilter {
            status: query.status,
            brand: query.brand,
            only: query.only,
        };
        // One extra row tells whether another page follows.
        let mut rows = orders::page(self.store.conn(), &filter, after.as_deref(), size + 1).await?;
        let next_page_token = if rows.len() as u64 > size {
            rows.truncate(size as usize);
            rows.last()
                .map(|last| paging::encode(&last.id.to_string(), &fingerprint))
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(OrderPage {
            orders: rows,
            next_page_token,
        })
    }

    /// Applies `patch`; `etag`, when given, must name the stored revision.
    pub async fn update(
        &self,
        id: OrderId,
        patch: OrderPatch,
        etag: Option<&str>,
    ) -> Result<Order, ServiceError> {
        let expected = parse_etag(etag, "order.etag")?;
        let current = self.get(id).await?;
        check_etag(&current, expected)?;
        let mut next = current.clone();
        next.apply(patch)
            .map_err(|err| ServiceError::FailedPrecondition {
                reason: "INVALID_STATUS_TRANSITION",
                message: err.to_string(),
            })?;
        let relink = next.vapi_assistant_id != current.vapi_assistant_id
            || next.status != current.status
            || next.display_name != current.display_name;
        let order = self.write(current, next).await?;
        if relink {
            // The Vapi number follows the order at once: a new assistant, or
            // assistant-request mode while suspended. A failed link is
            // recorded on the number (FAILED + reason) and retried by the
            // reconciler; the order update itself stands.
            if let Err(err) = self.numbers.relink_order(&order).await {
                warn!(order_id = %order.id, error = %err, "re-link after order update failed");
            }
        }
        Ok(order)
    }

    /// Cancels the order and releases its number (out of Vapi first: if Vapi
    /// cannot be told, nothing changes). An order already cancelled is
    /// returned as it is.
    pub async fn cancel(&self, id: OrderId, etag: Option<&str>) -> Result<Cancelled, ServiceError> {
        let expected = parse_etag(etag, "etag")?;
        let current = self.get(id).await?;
        check_etag(&current, expected)?;
        if current.status == OrderStatus::Cancelled {
            return Ok((current, None));
        }
        let released = self.numbers.release_for_cancel(&current).await?;
        let mut next = current.clone();
        next.status = OrderStatus::Cancelled;
        next.cancelled_at = Some(crate::domain::now());
        let order = self.write(current, next).await?;
        info!(order_id = %order.id, "order cancelled");
        Ok((order, released))
    }

    /// Stores `next` only if nobody changed the row since `current` was read.
    async fn write(&self, current: Order, mut next: Order) -> Result<Order, ServiceError> {
        next.revision = current.revision + 1;
        next.updated_at = crate::domain::now();
        let _turn = self.store.write_turn().await;
        if orders::update_if_revision(self.store.conn(), &next, current.revision).await? {
            // Status and assistant decide how the order's calls are answered.
            if next.status != current.status || next.vapi_assistant_id != current.vapi_assistant_id
            {
                self.store.routing_changed().await?;
            }
            Ok(next)
        } else {
            Err(ServiceError::Aborted {
                reason: "CONCURRENT_UPDATE",
                message: format!(
                    "order {} was changed by another request; read it again and retry",
                    current.id
                ),
            })
        }
    }
}

fn not_found(id: OrderId) -> ServiceError {
    ServiceError::NotFound {
        resource: "order",
        id: id.to_string(),
    }
}

fn parse_etag(etag: Option<&str>, field: &str) -> Result<Option<i64>, ServiceError> {
    match etag.map(str::trim).filter(|e| !e.is_empty()) {
        None => Ok(None),
        Some(etag) => revision_of(etag)
            .map(Some)
            .ok_or_else(|| ServiceError::invalid(field, "is not an etag returned by this API")),
    }
}

fn check_etag(current: &Order, expected: Option<i64>) -> Result<(), ServiceError> {
    match expected {
        Some(revision) if revision != current.revision => Err(ServiceError::Aborted {
            reason: "ETAG_MISMATCH",
            message: format!(
                "order {} has changed since it was read (etag {} is stale, current is {}); read it again and retry",
                current.id,
                etag_of(revision),
                current.etag()
            ),
        }),
        Some(_) | None => Ok(()),
    }
}
