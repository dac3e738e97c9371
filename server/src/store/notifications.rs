//! The WhatsApp outbox: rows written with the call report, claimed by the
//! dispatcher under a lease (SKIP LOCKED on PostgreSQL), their attempts, and
//! the agents' 24-hour windows.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
    sea_query::{Expr, ExprTrait, LockBehavior, LockType, OnConflict},
};

use super::{
    StoreError,
    entities::{
        notification::{self, Entity as Notifications},
        notification_attempt::{self, Entity as Attempts},
        whatsapp_window::{self, Entity as Windows},
    },
};
use crate::domain::{
    OrderId, PhoneNumber,
    notification::{MessageStatus, Status},
};

pub async fn insert(
    db: &impl ConnectionTrait,
    row: notification::ActiveModel,
) -> Result<(), StoreError> {
    Notifications::insert(row)
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// Many outbox rows in one statement (a batch of reports).
pub async fn insert_many(
    db: &impl ConnectionTrait,
    rows: Vec<notification::ActiveModel>,
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    Notifications::insert_many(rows)
        .exec_without_returning(db)
        .await?;
    Ok(())
}

pub async fn find(
    db: &impl ConnectionTrait,
    id: &str,
) -> Result<Option<notification::Model>, StoreError> {
    Ok(Notifications::find_by_id(id.to_owned()).one(db).await?)
}

/// Takes up to `limit` due PENDING rows whose lease is free or expired, and
/// leases them to `owner` until `until` (see [`lease_where`]).
pub async fn claim(
    db: &DatabaseConnection,
    owner: &str,
    until: DateTime<Utc>,
    now: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<notification::Model>, StoreError> {
    let claimable = Condition::all()
        .add(notification::Column::Status.eq(Status::Pending.as_str()))
        .add(notification::Column::NextAttemptAt.lte(now))
        .add(
            Condition::any()
                .add(notification::Column::LeaseUntil.is_null())
                .add(notification::Column::LeaseUntil.lt(now)),
        );
    lease_where(
        db,
        owner,
        until,
        claimable,
        notification::Column::NextAttemptAt,
        limit,
    )
    .await
}

/// Leases to `owner` up to `limit` rows matching `condition`, oldest by
/// `order` first: candidates locked with SKIP LOCKED on PostgreSQL (claimers
/// never wait for nor take each other's rows); on SQLite the single writer
/// serialises claims, and the UPDATE re-checks the condition, which is as safe.
///
/// The ids are chosen first and then leased, in one transaction. A single
/// `UPDATE … WHERE id IN (SELECT … LIMIT n FOR UPDATE SKIP LOCKED)` does not
/// bound the claim on PostgreSQL: the planner may run the subquery as the
/// inner side of a nested loop, once per outer row, and each run skips the
/// rows this UPDATE has already changed, so the LIMIT bounds nothing (a claim
/// of 16 leased all 500 due rows of a table without statistics yet).
async fn lease_where(
    db: &DatabaseConnection,
    owner: &str,
    until: DateTime<Utc>,
    condition: Condition,
    order: notification::Column,
    limit: u64,
) -> Result<Vec<notification::Model>, StoreError> {
    let mut candidates = Notifications::find()
        .select_only()
        .column(notification::Column::Id)
        .filter(condition.clone())
        .order_by_asc(order)
        .limit(limit);
    if db.get_database_backend() == DbBackend::Postgres {
        candidates = candidates.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
    }
    let txn = db.begin().await?;
    let ids: Vec<String> = candidates.into_tuple().all(&txn).await?;
    if ids.is_empty() {
        txn.commit().await?;
        return Ok(Vec::new());
    }
    let leased = Notifications::update_many()
        .col_expr(
            notification::Column::LeaseOwner,
            Expr::value(owner.to_owned()),
        )
        .col_expr(notification::Column::LeaseUntil, Expr::value(Some(until)))
        .filter(notification::Column::Id.is_in(ids))
        .filter(condition)
        .exec_with_returning(&txn)
        .await?;
    txn.commit().await?;
    Ok(leased)
}

/// Leases up to `limit` SENT rows with a known SID that nothing changed
/// since `quiet_since` and that were sent after `sent_after`: messages whose
/// final callback may have been lost, to be read back from Twilio.
pub async fn claim_quiet_sent(
    db: &DatabaseConnection,
    owner: &str,
    until: DateTime<Utc>,
    now: DateTime<Utc>,
    quiet_since: DateTime<Utc>,
    sent_after: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<notification::Model>, StoreError> {
    let quiet = Condition::all()
        .add(notification::Column::Status.eq(Status::Sent.as_str()))
        .add(notification::Column::MessageSid.is_not_null())
        .add(notification::Column::UpdatedAt.lt(quiet_since))
        .add(notification::Column::SentAt.gt(sent_after))
        .add(
            Condition::any()
                .add(notification::Column::LeaseUntil.is_null())
                .add(notification::Column::LeaseUntil.lt(now)),
        );
    lease_where(
        db,
        owner,
        until,
        quiet,
        notification::Column::UpdatedAt,
        limit,
    )
    .await
}

/// Ends `owner`'s lease and marks the row as looked at now.
pub async fn release(
    db: &impl ConnectionTrait,
    id: &str,
    owner: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    Notifications::update_many()
        .col_expr(
            notification::Column::LeaseOwner,
            Expr::value(Option::<String>::None),
        )
        .col_expr(
            notification::Column::LeaseUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(notification::Column::UpdatedAt, Expr::value(now))
        .filter(notification::Column::Id.eq(id))
        .filter(notification::Column::LeaseOwner.eq(owner))
        .exec(db)
        .await?;
    Ok(())
}

/// Applies `update` if `owner` still holds the row's lease (and ends the
/// lease). False when the lease was lost: another worker owns the row now.
pub async fn finish(
    db: &impl ConnectionTrait,
    id: &str,
    owner: &str,
    update: notification::ActiveModel,
) -> Result<bool, StoreError> {
    finish_moving(db, id, owner, update, None).await
}

/// [`finish`], also moving the row from PENDING to `to` in the same
/// statement; a row that something else (an early status callback) already
/// moved keeps its status.
pub async fn finish_promoting(
    db: &impl ConnectionTrait,
    id: &str,
    owner: &str,
    update: notification::ActiveModel,
    to: Status,
) -> Result<bool, StoreError> {
    finish_moving(db, id, owner, update, Some(to)).await
}

async fn finish_moving(
    db: &impl ConnectionTrait,
    id: &str,
    owner: &str,
    mut update: notification::ActiveModel,
    promote_to: Option<Status>,
) -> Result<bool, StoreError> {
    update.lease_owner = Set(None);
    update.lease_until = Set(None);
    let mut statement = Notifications::update_many().set(update);
    if let Some(to) = promote_to {
        statement = statement.col_expr(
            notification::Column::Status,
            Expr::case(
                Expr::col(notification::Column::Status).eq(Status::Pending.as_str()),
                to.as_str(),
            )
            .finally(Expr::col(notification::Column::Status))
            .into(),
        );
    }
    let done = statement
        .filter(notification::Column::Id.eq(id))
        .filter(notification::Column::LeaseOwner.eq(owner))
        .exec(db)
        .await?;
    Ok(done.rows_affected == 1)
}

/// Applies `update` if `owner` still holds the row's lease, keeping it.
pub async fn update_if_leased(
    db: &impl ConnectionTrait,
    id: &str,
    owner: &str,
    update: notification::ActiveModel,
) -> Result<bool, StoreError> {
    let done = Notifications::update_many()
        .set(update)
        .filter(notification::Column::Id.eq(id))
        .filter(notification::Column::LeaseOwner.eq(owner))
        .exec(db)
        .await?;
    Ok(done.rows_affected == 1)
}

/// Applies `update` if the row is still in `status` (no lease involved):
/// status callbacks and admin retries.
pub async fn update_if_status(
    db: &impl ConnectionTrait,
    id: &str,
    status: Status,
    update: notification::ActiveModel,
) -> Result<bool, StoreError> {
    let done = Notifications::update_many()
        .set(update)
        .filter(notification::Column::Id.eq(id))
        .filter(notification::Column::Status.eq(status.as_str()))
        .exec(db)
        .await?;
    Ok(done.rows_affected == 1)
}

pub async fn attempts(
    db: &impl ConnectionTrait,
    notification_id: &str,
) -> Result<Vec<notification_attempt::Model>, StoreError> {
    Ok(Attempts::find()
        .filter(notification_attempt::Column::NotificationId.eq(notification_id))
        .order_by_asc(notification_attempt::Column::Number)
        .all(db)
        .await?)
}

pub async fn insert_attempt(
    db: &impl ConnectionTrait,
    row: notification_attempt::ActiveModel,
) -> Result<(), StoreError> {
    Attempts::insert(row).exec_without_returning(db).await?;
    Ok(())
}

/// Moves an attempt to `to` only if it is still in `from`: callbacks race.
pub async fn advance_attempt(
    db: &impl ConnectionTrait,
    id: &str,
    from: MessageStatus,
    to: MessageStatus,
    error: Option<(i64, String)>,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let mut update = notification_attempt::ActiveModel {
        status: Set(to.as_str().to_owned()),
        status_rank: Set(to.rank()),
        updated_at: Set(now),
        ..Default::default()
    };
    if let Some((code, message)) = error {
        update.error_code = Set(Some(code).filter(|c| *c != 0));
        update.error_message = Set(Some(message).filter(|m| !m.is_empty()));
    }
    let done = Attempts::update_many()
        .set(update)
        .filter(notification_attempt::Column::Id.eq(id))
        .filter(notification_attempt::Column::Status.eq(from.as_str()))
        .exec(db)
        .await?;
    Ok(done.rows_affected == 1)
}

pub async fn attempt_by_sid(
    db: &impl ConnectionTrait,
    sid: &str,
) -> Result<Option<notification_attempt::Model>, StoreError> {
    Ok(Attempts::find()
        .filter(notification_attempt::Column::MessageSid.eq(sid))
        .one(db)
        .await?)
}

/// Gives an attempt its SID unless it has one: the create answer and an early
/// status callback may each be first to learn it.
pub async fn set_attempt_sid(
    db: &impl ConnectionTrait,
    notification_id: &str,
    number: i32,
    sid: &str,
) -> Result<bool, StoreError> {
    let done = Attempts::update_many()
        .col_expr(
            notification_attempt::Column::MessageSid,
            Expr::value(Some(sid.to_owned())),
        )
        .filter(notification_attempt::Column::NotificationId.eq(notification_id))
        .filter(notification_attempt::Column::Number.eq(number))
        .filter(notification_attempt::Column::MessageSid.is_null())
        .exec(db)
        .await?;
    Ok(done.rows_affected == 1)
}

/// Records an agent's inbound message; the window only moves forward.
pub async fn touch_window(
    db: &impl ConnectionTrait,
    sender: &PhoneNumber,
    agent: &PhoneNumber,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let row = whatsapp_window::ActiveModel {
        sender: Set(sender.as_str().to_owned()),
        agent: Set(agent.as_str().to_owned()),
        last_inbound_at: Set(at),
    };
    Windows::insert(row)
        .on_conflict(
            OnConflict::columns([
                whatsapp_window::Column::Sender,
                whatsapp_window::Column::Agent,
            ])
            .update_column(whatsapp_window::Column::LastInboundAt)
            .action_and_where(Expr::col((Windows, whatsapp_window::Column::LastInboundAt)).lt(at))
            .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    Ok(())
}

pub async fn last_inbound(
    db: &impl ConnectionTrait,
    sender: &str,
    agent: &str,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    Ok(Windows::find()
        .filter(whatsapp_window::Column::Sender.eq(sender))
        .filter(whatsapp_window::Column::Agent.eq(agent))
        .one(db)
        .await?
        .map(|w| w.last_inbound_at))
}

/// Filters of a notifications page.
#[derive(Debug, Clone, Default)]
pub struct NotificationFilter {
    pub order: Option<OrderId>,
    pub call: Option<String>,
    pub status: Option<Status>,
}

pub async fn page(
    db: &impl ConnectionTrait,
    filter: &NotificationFilter,
    before: Option<(DateTime<Utc>, String)>,
    limit: u64,
) -> Result<Vec<notification::Model>, StoreError> {
    let mut query = Notifications::find();
    if let Some(order) = filter.order {
        query = query.filter(notification::Column::OrderId.eq(order.to_string()));
    }
    if let Some(call) = &filter.call {
        query = query.filter(notification::Column::CallId.eq(call.as_str()));
    }
    if let Some(status) = filter.status {
        query = query.filter(notification::Column::Status.eq(status.as_str()));
    }
    if let Some((at, id)) = before {
        // A row comparison, so that PostgreSQL uses it as the index bound
        // (an OR of two comparisons is only a filter on the scanned rows, and
        // deep pages would scan every newer row first).
        query = query.filter(
            Expr::tuple([
                Expr::col(notification::Column::CreatedAt),
                Expr::col(notification::Column::Id),
            ])
            .lt(Expr::tuple([Expr::val(at), Expr::val(id)])),
        );
    }
    Ok(query
        .order_by_desc(notification::Column::CreatedAt)
        .order_by_desc(notification::Column::Id)
        .limit(limit)
        .all(db)
        .await?)
}

/// The order's most recent notification in one of `statuses`, if any (for
/// the setup checklist).
pub async fn latest_in(
    db: &impl ConnectionTrait,
    order: OrderId,
    statuses: &[Status],
) -> Result<Option<notification::Model>, StoreError> {
    Ok(Notifications::find()
        .filter(notification::Column::OrderId.eq(order.to_string()))
        .filter(notification::Column::Status.is_in(statuses.iter().map(|s| s.as_str())))
        .order_by_desc(notification::Column::CreatedAt)
        .one(db)
        .await?)
}

/// The order's most recent notification, whatever its status.
pub async fn latest(
    db: &impl ConnectionTrait,
    order: OrderId,
) -> Result<Option<notification::Model>, StoreError> {
    Ok(Notifications::find()
        .filter(notification::Column::OrderId.eq(order.to_string()))
        .order_by_desc(notification::Column::CreatedAt)
        .one(db)
        .await?)
}
