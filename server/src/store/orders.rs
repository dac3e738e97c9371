//! Order rows: conversion to and from the domain, and the queries services use.

use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use serde::{Deserialize, Serialize};

use super::{
    StoreError,
    entities::order::{self, Entity as Orders},
};
use crate::domain::{
    Agent, AssistantId, Carrier, Contact, EmailAddress, Order, OrderId, OrderStatus, PhoneNumber,
    Postcode, RoutingZone,
};

/// How a zone is kept inside `orders.zones`.
#[derive(Serialize, Deserialize)]
struct ZoneRecord {
    name: String,
    postcodes: Vec<String>,
    keywords: Vec<String>,
    agent_name: String,
    agent_whatsapp: String,
}

/// Filters of a keyset page over orders, in id order.
#[derive(Debug, Clone, Default)]
pub struct OrderFilter {
    pub status: Option<OrderStatus>,
    pub brand: Option<String>,
    /// Only this order (viewer keys).
    pub only: Option<OrderId>,
}

pub async fn insert(db: &impl ConnectionTrait, order: &Order) -> Result<(), StoreError> {
    Orders::insert(to_active(order)?)
        .exec_without_returning(db)
        .await?;
    Ok(())
}

pub async fn find(db: &impl ConnectionTrait, id: OrderId) -> Result<Option<Order>, StoreError> {
    Orders::find_by_id(id.to_string())
        .one(db)
        .await?
        .map(from_model)
        .transpose()
}

/// The orders with these ids (one statement; unknown ids are left out).
pub async fn find_many(
    db: &impl ConnectionTrait,
    ids: impl IntoIterator<Item = OrderId>,
) -> Result<Vec<Order>, StoreError> {
    let Some(select) = select_many(ids) else {
        return Ok(Vec::new());
    };
    select.all(db).await?.into_iter().map(from_model).collect()
}

/// The statement [`find_many`] runs, for a transaction to send it ahead.
pub fn find_many_statement(
    backend: sea_orm::DbBackend,
    ids: impl IntoIterator<Item = OrderId>,
) -> Option<sea_orm::Statement> {
    select_many(ids).map(|select| sea_orm::QueryTrait::build(&select, backend))
}

fn select_many(ids: impl IntoIterator<Item = OrderId>) -> Option<sea_orm::Select<Orders>> {
    let ids: Vec<String> = ids.into_iter().map(|id| id.to_string()).collect();
    (!ids.is_empty()).then(|| Orders::find().filter(order::Column::Id.is_in(ids)))
}

/// Up to `limit` orders after `after` (exclusive) that pass the filter.
pub async fn page(
    db: &impl ConnectionTrait,
    filter: &OrderFilter,
    after: Option<&str>,
    limit: u64,
) -> Result<Vec<Order>, StoreError> {
    let mut query = Orders::find();
    if let Some(status) = filter.status {
        query = query.filter(order::Column::Status.eq(status.as_str()));
    }
    if let Some(brand) = &filter.brand {
        query = query.filter(order::Column::Brand.eq(brand.as_str()));
    }
    if let Some(only) = filter.only {
        query = query.filter(order::Column::Id.eq(only.to_string()));
    }
    if let Some(after) = after {
        query = query.filter(order::Column::Id.gt(after));
    }
    query
        .order_by_asc(order::Column::Id)
        .limit(limit)
        .all(db)
        .await?
        .into_iter()
        .map(from_model)
        .collect()
}

/// Writes `order` if the stored revision is still `expected_revision`.
/// Returns false when another writer got there first (or the row is gone).
pub async fn update_if_revision(
    db: &impl ConnectionTrait,
    order: &Order,
    expected_revision: i64,
) -> Result<bool, StoreError> {
    let result = Orders::update_many()
        .set(to_active(order)?)
        .filter(order::Column::Id.eq(order.id.to_string()))
        .filter(order::Column::Revision.eq(expected_revision))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

fn to_active(order: &Order) -> Result<order::ActiveModel, StoreError> {
    let zones: Vec<ZoneRecord> = order
        .zones
        .iter()
        .map(|zone| ZoneRecord {
            name: zone.name.clone(),
            postcodes: zone
                .postcodes
                .iter()
                .map(|p| p.as_str().to_owned())
                .collect(),
            keywords: zone.keywords.clone(),
            agent_name: zone.agent.name.clone(),
            agent_whatsapp: zone.agent.whatsapp.as_str().to_owned(),
        })
        .collect();
    let zones = serde_json::to_string(&zones).map_err(|err| StoreError::Corrupt {
        table: "orders",
        id: order.id.to_string(),
        reason: format!("zones do not serialise: {err}"),
    })?;
    Ok(order::ActiveModel {
        id: Set(order.id.to_string()),
        display_name: Set(order.display_name.clone()),
        brand: Set(order.brand.clone()),
        contact_name: Set(order.contact.name.clone()),
        contact_email: Set(order
            .contact
            .email
            .as_ref()
            .map(|e| e.as_str().to_owned())
            .unwrap_or_default()),
        contact_phone: Set(order
            .contact
            .phone
            .as_ref()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_default()),
        landline_number: Set(order.landline.as_ref().map(|p| p.as_str().to_owned())),
        carrier: Set(order.carrier.as_str().to_owned()),
        vapi_assistant_id: Set(order.vapi_assistant_id.map(|a| a.to_string())),
        default_agent_name: Set(order.default_agent.as_ref().map(|a| a.name.clone())),
        default_agent_whatsapp: Set(order
            .default_agent
            .as_ref()
            .map(|a| a.whatsapp.as_str().to_owned())),
        zones: Set(zones),
        status: Set(order.status.as_str().to_owned()),
        revision: Set(order.revision),
        created_at: Set(order.created_at),
        updated_at: Set(order.updated_at),
        cancelled_at: Set(order.cancelled_at),
        whatsapp_sender_declared: Set(order.whatsapp_sender_declared),
    })
}

fn from_model(model: order::Model) -> Result<Order, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        table: "orders",
        id: model.id.clone(),
        reason,
    };
    let phone = |field: &str, value: &str| {
        PhoneNumber::from_stored(value).map_err(|err| corrupt(format!("{field} {err}")))
    };
    let optional_phone = |field: &str, value: Option<&str>| {
        value
            .filter(|v| !v.is_empty())
            .map(|v| phone(field, v))
            .transpose()
    };
    let id = OrderId::parse(&model.id).map_err(|err| corrupt(format!("id {err}")))?;
    let status = OrderStatus::from_db(&model.status)
        .ok_or_else(|| corrupt(format!("unknown status {:?}", model.status)))?;
    let carrier = Carrier::from_db(&model.carrier)
        .ok_or_else(|| corrupt(format!("unknown carrier {:?}", model.carrier)))?;
    let email = if model.contact_email.is_empty() {
        None
    } else {
        Some(
            EmailAddress::parse(&model.contact_email)
                .map_err(|err| corrupt(format!("contact_email {err}")))?,
        )
    };
    let default_agent = match (&model.default_agent_name, &model.default_agent_whatsapp) {
        (Some(name), Some(number)) => Some(Agent {
            name: name.clone(),
            whatsapp: phone("default_agent_whatsapp", number)?,
        }),
        _ => None,
    };
    let vapi_assistant_id = model
        .vapi_assistant_id
        .as_deref()
        .map(AssistantId::parse)
        .transpose()
        .map_err(|err| corrupt(format!("vapi_assistant_id {err}")))?;
    let records: Vec<ZoneRecord> = serde_json::from_str(&model.zones)
        .map_err(|err| corrupt(format!("zones are not valid JSON: {err}")))?;
    let mut zones = Vec::with_capacity(records.len());
    for record in records {
        let postcodes = record
            .postcodes
            .iter()
            .map(|p| Postcode::parse(p).map_err(|err| corrupt(format!("zone postcode {err}"))))
            .collect::<Result<_, _>>()?;
        zones.push(RoutingZone {
            name: record.name,
            postcodes,
            keywords: record.keywords,
            agent: Agent {
                name: record.agent_name,
                whatsapp: phone("zone agent_whatsapp", &record.agent_whatsapp)?,
            },
        });
    }
    Ok(Order {
        id,
        display_name: model.display_name.clone(),
        brand: model.brand.clone(),
        contact: Contact {
            name: model.contact_name.clone(),
            email,
            phone: optional_phone("contact_phone", Some(&model.contact_phone))?,
        },
        landline: optional_phone("landline_number", model.landline_number.as_deref())?,
        carrier,
        vapi_assistant_id,
        default_agent,
        zones,
        status,
        revision: model.revision,
        created_at: model.created_at,
        updated_at: model.updated_at,
        cancelled_at: model.cancelled_at,
        whatsapp_sender_declared: model.whatsapp_sender_declared,
    })
}
