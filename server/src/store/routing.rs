//! What assistant requests are answered from: every held number with its
//! order's status and assistant, read in one go, and the epoch that says
//! when to read it again.

use std::collections::HashMap;

use sea_orm::{ConnectionTrait, EntityTrait, Statement};

use super::{
    StoreError,
    entities::{order::Entity as Orders, phone_number::Entity as Numbers},
};
use crate::domain::{AssistantId, OrderId, OrderStatus, PhoneNumber};

/// An order as routing sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoutedOrder {
    pub id: OrderId,
    pub status: OrderStatus,
    pub assistant: Option<AssistantId>,
}

/// Numbers and their current holders, at one epoch.
#[derive(Debug, Clone, Default)]
pub struct RoutingSnapshot {
    pub epoch: i64,
    /// Vapi phone-number id → the E.164 number it is.
    pub by_vapi_id: HashMap<String, PhoneNumber>,
    /// E.164 number → its holder, if any.
    pub holders: HashMap<PhoneNumber, RoutedOrder>,
}

impl RoutingSnapshot {
    /// Whether it came from the store (the placeholder before the first
    /// load has epoch -1).
    pub fn loaded(&self) -> bool {
        self.epoch >= 0
    }
}

pub async fn epoch(db: &impl ConnectionTrait) -> Result<i64, StoreError> {
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT epoch FROM routing_epoch WHERE id = 1",
        ))
        .await?;
    Ok(match row {
        Some(row) => row.try_get::<i64>("", "epoch")?,
        None => 0,
    })
}

/// Marks a change that may move routing; every process reloads.
pub async fn bump(db: &impl ConnectionTrait) -> Result<(), StoreError> {
    db.execute_raw(Statement::from_string(
        db.get_database_backend(),
        "UPDATE routing_epoch SET epoch = epoch + 1 WHERE id = 1",
    ))
    .await?;
    Ok(())
}

/// Reads the epoch first, then the rows: a change committed in between
/// bumps the epoch again, so the next check reloads.
pub async fn load(db: &impl ConnectionTrait) -> Result<RoutingSnapshot, StoreError> {
    let epoch = epoch(db).await?;
    let numbers = Numbers::find().all(db).await?;
    let orders: HashMap<String, RoutedOrder> = Orders::find()
        .all(db)
        .await?
        .into_iter()
        .filter_map(|o| {
            let id = OrderId::parse(&o.id).ok()?;
            let status = OrderStatus::from_db(&o.status)?;
            let assistant = o
                .vapi_assistant_id
                .as_deref()
                .and_then(|a| AssistantId::parse(a).ok());
            Some((
                o.id,
                RoutedOrder {
                    id,
                    status,
                    assistant,
                },
            ))
        })
        .collect();
    let mut snapshot = RoutingSnapshot {
        epoch,
        ..Default::default()
    };
    for row in numbers {
        let Ok(number) = PhoneNumber::from_stored(&row.number) else {
            continue;
        };
        if let Some(vapi_id) = row.vapi_phone_number_id {
            snapshot.by_vapi_id.insert(vapi_id, number.clone());
        }
        if let Some(order) = row.order_id.as_deref().and_then(|id| orders.get(id)) {
            snapshot.holders.insert(number, *order);
        }
    }
    Ok(snapshot)
}
