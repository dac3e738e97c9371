//! Managed numbers: race-safe claims (a conditional UPDATE and a unique index,
//! never a read-then-write), link state, leases for link work, and history.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter,
    QuerySelect, SqlErr, TransactionTrait,
    sea_query::{Expr, OnConflict},
};

use super::{
    StoreError,
    entities::{
        number_assignment::{self, Entity as Assignments},
        phone_number::{self, Entity as Numbers},
    },
};
use crate::domain::{AnswerMode, LinkState, ManagedNumber, OrderId, PhoneNumber, TwilioNumberSid};

/// Why a claim did not go through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimConflict {
    /// Another order holds the number.
    NumberHeldBy(OrderId),
    /// The order already holds another number.
    OrderHolds(PhoneNumber),
}

/// The link fields a link attempt writes.
#[derive(Debug, Clone)]
pub struct LinkUpdate {
    pub state: LinkState,
    pub reason: Option<String>,
    pub answer_mode: AnswerMode,
    pub vapi_phone_number_id: Option<String>,
    pub twilio_sid: Option<TwilioNumberSid>,
    pub attempts: i32,
    pub next_link_at: Option<DateTime<Utc>>,
    pub linked_at: Option<DateTime<Utc>>,
}

pub async fn find(
    db: &impl ConnectionTrait,
    number: &PhoneNumber,
) -> Result<Option<ManagedNumber>, StoreError> {
    Numbers::find_by_id(number.as_str().to_owned())
        .one(db)
        .await?
        .map(from_model)
        .transpose()
}

pub async fn find_by_order(
    db: &impl ConnectionTrait,
    order: OrderId,
) -> Result<Option<ManagedNumber>, StoreError> {
    Numbers::find()
        .filter(phone_number::Column::OrderId.eq(order.to_string()))
        .one(db)
        .await?
        .map(from_model)
        .transpose()
}

/// The numbers held by these orders (one statement).
pub async fn find_by_orders(
    db: &impl ConnectionTrait,
    orders: impl IntoIterator<Item = OrderId>,
) -> Result<Vec<ManagedNumber>, StoreError> {
    let Some(select) = select_by_orders(orders) else {
        return Ok(Vec::new());
    };
    select.all(db).await?.into_iter().map(from_model).collect()
}

/// The statement [`find_by_orders`] runs, for a transaction to send it ahead.
pub fn find_by_orders_statement(
    backend: sea_orm::DbBackend,
    orders: impl IntoIterator<Item = OrderId>,
) -> Option<sea_orm::Statement> {
    select_by_orders(orders).map(|select| sea_orm::QueryTrait::build(&select, backend))
}

fn select_by_orders(orders: impl IntoIterator<Item = OrderId>) -> Option<sea_orm::Select<Numbers>> {
    let ids: Vec<String> = orders.into_iter().map(|id| id.to_string()).collect();
    (!ids.is_empty()).then(|| Numbers::find().filter(phone_number::Column::OrderId.is_in(ids)))
}

/// Every assignment of these numbers (one statement), for resolving many
/// calls' owners at once.
pub async fn assignments_of(
    db: &impl ConnectionTrait,
    numbers: impl IntoIterator<Item = String>,
) -> Result<Vec<number_assignment::Model>, StoreError> {
    let Some(select) = select_assignments(numbers) else {
        return Ok(Vec::new());
    };
    Ok(select.all(db).await?)
}

/// The statement [`assignments_of`] runs, for a transaction to send it ahead.
pub fn assignments_of_statement(
    backend: sea_orm::DbBackend,
    numbers: impl IntoIterator<Item = String>,
) -> Option<sea_orm::Statement> {
    select_assignments(numbers).map(|select| sea_orm::QueryTrait::build(&select, backend))
}

fn select_assignments(
    numbers: impl IntoIterator<Item = String>,
) -> Option<sea_orm::Select<Assignments>> {
    let numbers: Vec<String> = numbers.into_iter().collect();
    (!numbers.is_empty())
        .then(|| Assignments::find().filter(number_assignment::Column::Number.is_in(numbers)))
}

/// Gives `number` to `order` in one transaction, with its history row.
/// Returns the number as stored; a claim the order already holds is returned
/// unchanged (idempotent).
pub async fn claim(
    db: &DatabaseConnection,
    number: &PhoneNumber,
    order: OrderId,
    twilio_sid: Option<&TwilioNumberSid>,
    pending_reason: &str,
    answer_mode: AnswerMode,
    now: DateTime<Utc>,
) -> Result<Result<ManagedNumber, ClaimConflict>, StoreError> {
    let txn = db.begin().await?;
    // The row of a number seen for the first time; a no-op if it exists.
    Numbers::insert(phone_number::ActiveModel {
        number: Set(number.as_str().to_owned()),
        order_id: Set(None),
        twilio_sid: Set(None),
        vapi_phone_number_id: Set(None),
        link_state: Set(LinkState::Released.as_str().to_owned()),
        link_reason: Set(None),
        answer_mode: Set(answer_mode.as_str().to_owned()),
        link_attempts: Set(0),
        next_link_at: Set(None),
        linked_at: Set(None),
        assigned_at: Set(None),
        checked_at: Set(None),
        lease_owner: Set(None),
        lease_until: Set(None),
        updated_at: Set(now),
    })
    .on_conflict(
        OnConflict::column(phone_number::Column::Number)
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(&txn)
    .await?;

    // Only a free number can be taken: concurrent claims serialise on the row
    // and all but one match no row. The unique index on order_id refuses a
    // second number for one order.
    let mut update = Numbers::update_many()
        .col_expr(
            phone_number::Column::OrderId,
            Expr::value(order.to_string()),
        )
        .col_expr(
            phone_number::Column::LinkState,
            Expr::value(LinkState::Pending.as_str()),
        )
        .col_expr(
            phone_number::Column::LinkReason,
            Expr::value(pending_reason.to_owned()),
        )
        .col_expr(
            phone_number::Column::AnswerMode,
            Expr::value(answer_mode.as_str()),
        )
        .col_expr(phone_number::Column::LinkAttempts, Expr::value(0))
        .col_expr(phone_number::Column::NextLinkAt, Expr::value(Some(now)))
        .col_expr(phone_number::Column::AssignedAt, Expr::value(Some(now)))
        .col_expr(phone_number::Column::UpdatedAt, Expr::value(now));
    if let Some(sid) = twilio_sid {
        update = update.col_expr(
            phone_number::Column::TwilioSid,
            Expr::value(sid.as_str().to_owned()),
        );
    }
    let result = update
        .filter(phone_number::Column::Number.eq(number.as_str()))
        .filter(phone_number::Column::OrderId.is_null())
        .exec(&txn)
        .await;
    match result {
        Ok(done) if done.rows_affected == 1 => {
            Assignments::insert(number_assignment::ActiveModel {
                number: Set(number.as_str().to_owned()),
                order_id: Set(order.to_string()),
                assigned_at: Set(now),
                released_at: Set(None),
                ..Default::default()
            })
            .exec_without_returning(&txn)
            .await?;
            txn.commit().await?;
            let stored = find(db, number).await?.ok_or_else(|| StoreError::Corrupt {
                table: "phone_numbers",
                id: number.masked(),
                reason: "claimed row vanished".to_owned(),
            })?;
            Ok(Ok(stored))
        }
        Ok(_) => {
            txn.rollback().await?;
            let current = find(db, number).await?;
            match current.and_then(|n| n.order_id) {
                Some(holder) if holder == order => {
                    let held = find(db, number).await?.ok_or_else(|| StoreError::Corrupt {
                        table: "phone_numbers",
                        id: number.masked(),
                        reason: "held row vanished".to_owned(),
                    })?;
                    Ok(Ok(held))
                }
                Some(holder) => Ok(Err(ClaimConflict::NumberHeldBy(holder))),
                // Freed between our update and this read: the caller may retry.
                None => Err(StoreError::Db(DbErr::Custom(
                    "number was freed during the claim; retry".to_owned(),
                ))),
            }
        }
        Err(err) if is_unique_violation(&err) => {
            txn.rollback().await?;
            match find_by_order(db, order).await? {
                Some(held) => Ok(Err(ClaimConflict::OrderHolds(held.number))),
                None => Err(StoreError::Db(err)),
            }
        }
        Err(err) => Err(StoreError::Db(err)),
    }
}

fn is_unique_violation(err: &DbErr) -> bool {
    matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
}

/// Frees the number held by `order` and closes its history row.
pub async fn release(
    db: &DatabaseConnection,
    number: &PhoneNumber,
    order: OrderId,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let txn = db.begin().await?;
    let done = Numbers::update_many()
        .col_expr(
            phone_number::Column::OrderId,
            Expr::value(Option::<String>::None),
        )
        .col_expr(
            phone_number::Column::LinkState,
            Expr::value(LinkState::Released.as_str()),
        )
        .col_expr(
            phone_number::Column::LinkReason,
            Expr::value(Option::<String>::None),
        )
        .col_expr(
            phone_number::Column::VapiPhoneNumberId,
            Expr::value(Option::<String>::None),
        )
        .col_expr(
            phone_number::Column::NextLinkAt,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(phone_number::Column::LinkAttempts, Expr::value(0))
        .col_expr(
            phone_number::Column::LeaseOwner,
            Expr::value(Option::<String>::None),
        )
        .col_expr(
            phone_number::Column::LeaseUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(phone_number::Column::UpdatedAt, Expr::value(now))
        .filter(phone_number::Column::Number.eq(number.as_str()))
        .filter(phone_number::Column::OrderId.eq(order.to_string()))
        .exec(&txn)
        .await?;
    if done.rows_affected == 1 {
        Assignments::update_many()
            .col_expr(
                number_assignment::Column::ReleasedAt,
                Expr::value(Some(now)),
            )
            .filter(number_assignment::Column::Number.eq(number.as_str()))
            .filter(number_assignment::Column::OrderId.eq(order.to_string()))
            .filter(number_assignment::Column::ReleasedAt.is_null())
            .exec(&txn)
            .await?;
    }
    txn.commit().await?;
    Ok(done.rows_affected == 1)
}

/// Records a link attempt, if `order` still holds the number.
pub async fn record_link(
    db: &impl ConnectionTrait,
    number: &PhoneNumber,
    order: OrderId,
    link: &LinkUpdate,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let mut update = Numbers::update_many()
        .col_expr(
            phone_number::Column::LinkState,
            Expr::value(link.state.as_str()),
        )
        .col_expr(
            phone_number::Column::LinkReason,
            Expr::value(link.reason.clone()),
        )
        .col_expr(
            phone_number::Column::AnswerMode,
            Expr::value(link.answer_mode.as_str()),
        )
        .col_expr(
            phone_number::Column::VapiPhoneNumberId,
            Expr::value(link.vapi_phone_number_id.clone()),
        )
        .col_expr(
            phone_number::Column::LinkAttempts,
            Expr::value(link.attempts),
        )
        .col_expr(
            phone_number::Column::NextLinkAt,
            Expr::value(link.next_link_at),
        )
        .col_expr(phone_number::Column::CheckedAt, Expr::value(Some(now)))
        .col_expr(phone_number::Column::UpdatedAt, Expr::value(now));
    if let Some(linked_at) = link.linked_at {
        update = update.col_expr(phone_number::Column::LinkedAt, Expr::value(Some(linked_at)));
    }
    if let Some(sid) = &link.twilio_sid {
        update = update.col_expr(
            phone_number::Column::TwilioSid,
            Expr::value(sid.as_str().to_owned()),
        );
    }
    let done = update
        .filter(phone_number::Column::Number.eq(number.as_str()))
        .filter(phone_number::Column::OrderId.eq(order.to_string()))
        .exec(db)
        .await?;
    Ok(done.rows_affected == 1)
}

/// Takes the number's lease for link work, unless another worker holds a
/// live one. Returns whether we hold it now.
pub async fn try_lease(
    db: &impl ConnectionTrait,
    number: &PhoneNumber,
    owner: &str,
    until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let done = Numbers::update_many()
        .col_expr(
            phone_number::Column::LeaseOwner,
            Expr::value(owner.to_owned()),
        )
        .col_expr(phone_number::Column::LeaseUntil, Expr::value(Some(until)))
        .filter(phone_number::Column::Number.eq(number.as_str()))
        .filter(
            Condition::any()
                .add(phone_number::Column::LeaseUntil.is_null())
                .add(phone_number::Column::LeaseUntil.lt(now))
                .add(phone_number::Column::LeaseOwner.eq(owner)),
        )
        .exec(db)
        .await?;
    Ok(done.rows_affected == 1)
}

pub async fn end_lease(
    db: &impl ConnectionTrait,
    number: &PhoneNumber,
    owner: &str,
) -> Result<(), StoreError> {
    Numbers::update_many()
        .col_expr(
            phone_number::Column::LeaseOwner,
            Expr::value(Option::<String>::None),
        )
        .col_expr(
            phone_number::Column::LeaseUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .filter(phone_number::Column::Number.eq(number.as_str()))
        .filter(phone_number::Column::LeaseOwner.eq(owner))
        .exec(db)
        .await?;
    Ok(())
}

/// Held numbers whose link is due: PENDING/FAILED past their next attempt,
/// and LINKED ones not checked for drift since `checked_before`.
pub async fn due_for_link(
    db: &impl ConnectionTrait,
    now: DateTime<Utc>,
    checked_before: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<ManagedNumber>, StoreError> {
    let retry_due = Condition::all()
        .add(
            phone_number::Column::LinkState
                .is_in([LinkState::Pending.as_str(), LinkState::Failed.as_str()]),
        )
        .add(
            Condition::any()
                .add(phone_number::Column::NextLinkAt.is_null())
                .add(phone_number::Column::NextLinkAt.lte(now)),
        );
    let drift_due = Condition::all()
        .add(phone_number::Column::LinkState.eq(LinkState::Linked.as_str()))
        .add(
            Condition::any()
                .add(phone_number::Column::CheckedAt.is_null())
                .add(phone_number::Column::CheckedAt.lte(checked_before)),
        );
    Numbers::find()
        .filter(phone_number::Column::OrderId.is_not_null())
        .filter(Condition::any().add(retry_due).add(drift_due))
        .filter(
            Condition::any()
                .add(phone_number::Column::LeaseUntil.is_null())
                .add(phone_number::Column::LeaseUntil.lt(now)),
        )
        .limit(limit)
        .all(db)
        .await?
        .into_iter()
        .map(from_model)
        .collect()
}

/// Who held `number` at `at` (for calls whose report arrives late).
pub async fn holder_at(
    db: &impl ConnectionTrait,
    number: &PhoneNumber,
    at: DateTime<Utc>,
) -> Result<Option<OrderId>, StoreError> {
    let row = Assignments::find()
        .filter(number_assignment::Column::Number.eq(number.as_str()))
        .filter(number_assignment::Column::AssignedAt.lte(at))
        .filter(
            Condition::any()
                .add(number_assignment::Column::ReleasedAt.is_null())
                .add(number_assignment::Column::ReleasedAt.gt(at)),
        )
        .one(db)
        .await?;
    row.map(|r| {
        OrderId::parse(&r.order_id).map_err(|err| StoreError::Corrupt {
            table: "number_assignments",
            id: r.id.to_string(),
            reason: format!("order_id {err}"),
        })
    })
    .transpose()
}

/// Every assignment of a number, oldest first.
pub async fn history(
    db: &impl ConnectionTrait,
    number: &PhoneNumber,
) -> Result<Vec<number_assignment::Model>, StoreError> {
    use sea_orm::QueryOrder;
    Ok(Assignments::find()
        .filter(number_assignment::Column::Number.eq(number.as_str()))
        .order_by_asc(number_assignment::Column::Id)
        .all(db)
        .await?)
}

fn from_model(model: phone_number::Model) -> Result<ManagedNumber, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        table: "phone_numbers",
        id: crate::domain::phone::mask(&model.number),
        reason,
    };
    let number =
        PhoneNumber::from_stored(&model.number).map_err(|err| corrupt(format!("number {err}")))?;
    let order_id = model
        .order_id
        .as_deref()
        .map(OrderId::parse)
        .transpose()
        .map_err(|err| corrupt(format!("order_id {err}")))?;
    let twilio_sid = model
        .twilio_sid
        .as_deref()
        .map(TwilioNumberSid::parse)
        .transpose()
        .map_err(|err| corrupt(format!("twilio_sid {err}")))?;
    let link_state = LinkState::from_db(&model.link_state)
        .ok_or_else(|| corrupt(format!("unknown link_state {:?}", model.link_state)))?;
    let answer_mode = AnswerMode::from_db(&model.answer_mode)
        .ok_or_else(|| corrupt(format!("unknown answer_mode {:?}", model.answer_mode)))?;
    Ok(ManagedNumber {
        number,
        order_id,
        twilio_sid,
        vapi_phone_number_id: model.vapi_phone_number_id.clone(),
        link_state,
        link_reason: model.link_reason.clone(),
        answer_mode,
        link_attempts: model.link_attempts,
        next_link_at: model.next_link_at,
        linked_at: model.linked_at,
        assigned_at: model.assigned_at,
    })
}

/// The Vapi ids of the numbers held by an order and imported into Vapi: the
/// ones whose calls the report recovery lists.
pub async fn vapi_ids_of_held_numbers(
    db: &impl ConnectionTrait,
) -> Result<Vec<String>, StoreError> {
    Ok(Numbers::find()
        .filter(phone_number::Column::OrderId.is_not_null())
        .filter(phone_number::Column::VapiPhoneNumberId.is_not_null())
        .all(db)
        .await?
        .into_iter()
        .filter_map(|n| n.vapi_phone_number_id)
        .collect())
}
