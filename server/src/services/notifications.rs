//! WhatsApp notifications: the outbox row written with each new call report,
//! its delivery through Twilio (one attempt at a time, under a lease), status
//! callbacks, the agents' 24-hour windows, and the admin's reads and retries.

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use rand::Rng;
use sea_orm::{ActiveValue::Set, ConnectionTrait, TransactionTrait};
use tokio::sync::Notify;
use tracing::{debug, info, warn};

use super::{ServiceError, paging};
use crate::{
    domain::{
        Order, OrderId, PhoneNumber,
        lead::Intent,
        notification::{
            self, Destination, Kind, MessageStatus, Mode, OUTSIDE_WINDOW_CODE, ReasonCode, Route,
            Status, Trigger, whatsapp_address,
        },
        summary::{self, SummaryInput},
    },
    providers::twilio::{SendMessage, TwilioClient, TwilioError},
    store::{
        Store, StoreError,
        entities::{call, lead, notification as row, notification_attempt as attempt_row},
        notifications::{self as outbox, NotificationFilter},
        numbers, orders,
    },
};

/// WhatsApp's customer-service window: free-form text is allowed this long
/// after the agent's last message.
pub const WINDOW: chrono::TimeDelta = chrono::TimeDelta::hours(24);

/// Slack when looking for a message whose create answer was lost: Twilio's
/// clock and ours differ a little.
const LOOKUP_SKEW: chrono::TimeDelta = chrono::TimeDelta::minutes(2);

/// The longest wait between two attempts.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(300);

/// A template variable, by name (`CENTRALINO_WHATSAPP_TEMPLATE_VARIABLES`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateField {
    Agency,
    Caller,
    Request,
    Summary,
    Time,
    Duration,
}

impl TemplateField {
    /// In the order of [`summary::template_variables`].
    pub const ALL: [TemplateField; 6] = [
        TemplateField::Agency,
        TemplateField::Caller,
        TemplateField::Request,
        TemplateField::Summary,
        TemplateField::Time,
        TemplateField::Duration,
    ];

    pub fn name(self) -> &'static str {
        match self {
            TemplateField::Agency => "agency",
            TemplateField::Caller => "caller",
            TemplateField::Request => "request",
            TemplateField::Summary => "summary",
            TemplateField::Time => "time",
            TemplateField::Duration => "duration",
        }
    }

    /// `agency,caller,...` → fields; an unknown name is an error naming the known ones.
    pub fn parse_list(list: &str) -> Result<Vec<TemplateField>, String> {
        list.split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .map(|name| {
                Self::ALL
                    .into_iter()
                    .find(|f| f.name() == name)
                    .ok_or_else(|| {
                        format!(
                            "unknown template variable {name:?}; known: agency, caller, request, summary, time, duration"
                        )
                    })
            })
            .collect()
    }

    fn index(self) -> usize {
        Self::ALL.iter().position(|f| *f == self).unwrap_or(0)
    }
}

/// The approved Content template for messages outside the 24-hour window.
#[derive(Debug, Clone)]
pub struct Template {
    /// `HX…`.
    pub content_sid: String,
    /// `{{1}}`, `{{2}}`, … in this order.
    pub fields: Vec<TemplateField>,
}

/// Everything the outbox and the dispatcher are configured with.
#[derive(Debug, Clone)]
pub struct NotifySettings {
    /// `TWILIO_WHATSAPP_NUMBER`: the sender of orders without a number.
    pub fallback_sender: Option<PhoneNumber>,
    /// `TWILIO_DESTINATION_WHATSAPP`: the recipient when no agent matches.
    pub fallback_destination: Option<PhoneNumber>,
    pub template: Option<Template>,
    /// Absolute URL of `/webhooks/twilio/status`, when a public URL is set.
    pub status_callback: Option<String>,
    /// First delay before retrying a transient failure (doubles, with jitter).
    pub retry_base: Duration,
    /// Transient failures are retried until this long after enqueue.
    pub max_age: Duration,
    /// How long a claimed row is ours; must outlast one Twilio request.
    pub lease: Duration,
    /// A SENT message with no callback for this long is read back from Twilio.
    pub refresh_after: Duration,
}

impl Default for NotifySettings {
    fn default() -> Self {
        Self {
            fallback_sender: None,
            fallback_destination: None,
            template: None,
            status_callback: None,
            retry_base: Duration::from_secs(2),
            max_age: Duration::from_secs(6 * 3600),
            lease: Duration::from_secs(60),
            refresh_after: Duration::from_secs(600),
        }
    }
}

/// A notification and, when asked for, its attempts.
#[derive(Debug, Clone)]
pub struct NotificationView {
    pub row: row::Model,
    pub attempts: Vec<attempt_row::Model>,
    /// The template variables in the configured order.
    pub template_variables: Vec<String>,
}

/// What PreviewNotification answers.
#[derive(Debug, Clone)]
pub struct Preview {
    pub body: String,
    pub template_variables: Vec<String>,
    pub destination: Destination,
    pub from: Option<PhoneNumber>,
}

/// What RecordMessageStatus did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusOutcome {
    pub applied: bool,
    pub notification_id: Option<String>,
}

#[derive(Clone, Debug)]
pub struct NotificationsService {
    store: Store,
    twilio: Option<TwilioClient>,
    settings: Arc<NotifySettings>,
    /// Wakes the dispatcher of this process when a row commits.
    wake: Arc<Notify>,
    /// Lease owner prefix of this process.
    instance: String,
}

impl NotificationsService {
    pub fn new(store: Store, twilio: Option<TwilioClient>, settings: NotifySettings) -> Self {
        Self {
            store,
            twilio,
            settings: Arc::new(settings),
            wake: Arc::new(Notify::new()),
            instance: format!("notify-{}", uuid::Uuid::new_v4().simple()),
        }
    }

    pub fn can_send(&self) -> bool {
        self.twilio.is_some()
    }

    /// Tells this process's dispatcher that rows are waiting.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    pub fn wake_signal(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// The outbox row for a new end-of-call report, written in the report's
    /// own transaction so that a report is never stored without its message
    /// (nor a message without its report). Destination and sender are
    /// decided now and stored.
    pub async fn enqueue_call(
        &self,
        db: &impl ConnectionTrait,
        order: &Order,
        call: &call::Model,
        lead: &lead::Model,
    ) -> Result<row::Model, ServiceError> {
        let own = numbers::find_by_order(db, order.id)
            .await?
            .map(|n| n.number);
        let model = self.plan_call(order, own.as_ref(), call, lead);
        outbox::insert(db, model.clone().into()).await?;
        Ok(model)
    }

    /// The summary row for a new report, not yet written (`own`: the order's
    /// number, the sender). The batch path inserts many in one statement.
    pub fn plan_call(
        &self,
        order: &Order,
        own: Option<&PhoneNumber>,
        call: &call::Model,
        lead: &lead::Model,
    ) -> row::Model {
        let (body, variables) = render(order, call, Some(lead));
        // Stamped here, the transaction's last write before its commit: the
        // time a notification waits is measured from (nearly) its commit.
        let now = crate::domain::now();
        let destination = notification::destination(
            order,
            lead.zone.as_deref(),
            self.settings.fallback_destination.as_ref(),
        );
        let from = notification::sender(own, self.settings.fallback_sender.as_ref());
        self.new_row(
            order.id,
            Some(call.id.clone()),
            Kind::CallSummary,
            destination,
            from,
            body,
            &variables,
            now,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn new_row(
        &self,
        order: OrderId,
        call_id: Option<String>,
        kind: Kind,
        destination: Destination,
        from: Option<PhoneNumber>,
        body: String,
        variables: &[String],
        now: DateTime<Utc>,
    ) -> row::Model {
        let (status, code, reason) = match (&destination.to, &from) {
            (None, _) => (
                Status::Failed,
                Some(ReasonCode::NoDestination),
                "no agent to send to: no zone matched with an agent, the order has no default agent and TWILIO_DESTINATION_WHATSAPP is not set".to_owned(),
            ),
            (Some(_), None) => (
                Status::Failed,
                Some(ReasonCode::NoSender),
                "the order has no number to send from and TWILIO_WHATSAPP_NUMBER is not set".to_owned(),
            ),
            (Some(_), Some(_)) if self.twilio.is_none() => (
                Status::Pending,
                Some(ReasonCode::TwilioNotConfigured),
                "Twilio is not configured (TWILIO_ACCOUNT_SID + TWILIO_AUTH_TOKEN or an API key): the message waits and goes out once it is".to_owned(),
            ),
            (Some(_), Some(_)) => (Status::Pending, None, String::new()),
        };
        row::Model {
            id: uuid::Uuid::now_v7().to_string(),
            order_id: order.to_string(),
            call_id,
            kind: kind.as_str().to_owned(),
            status: status.as_str().to_owned(),
            reason_code: code.map(|c| c.as_str().to_owned()),
            reason: Some(reason).filter(|r| !r.is_empty()),
            from_address: from.as_ref().map(whatsapp_address),
            to_address: destination.to.as_ref().map(whatsapp_address),
            route: destination.route.as_str().to_owned(),
            zone: destination.zone,
            body,
            template_variables: serde_json::Value::from(variables.to_vec()).to_string(),
            attempts: 0,
            next_attempt_at: now,
            age_from: now,
            lease_owner: None,
            lease_until: None,
            message_sid: None,
            error_code: None,
            created_at: now,
            updated_at: now,
            sent_at: None,
            delivered_at: None,
        }
    }

    pub async fn get(&self, id: &str) -> Result<NotificationView, ServiceError> {
        let row = self.find(id).await?;
        let attempts = outbox::attempts(self.store.conn(), &row.id).await?;
        Ok(self.view(row, attempts))
    }

    pub async fn list(
        &self,
        filter: NotificationFilter,
        page_size: i32,
        page_token: &str,
    ) -> Result<(Vec<NotificationView>, String), ServiceError> {
        let size = paging::page_size(page_size)?;
        let fingerprint = paging::fingerprint(&[
            "notifications",
            &filter.order.map(|o| o.to_string()).unwrap_or_default(),
            filter.call.as_deref().unwrap_or(""),
            filter.status.map(|s| s.as_str()).unwrap_or(""),
        ]);
        let before = paging::decode_time_cursor(paging::decode(page_token, &fingerprint)?)?;
        let mut rows = outbox::page(self.store.conn(), &filter, before, size + 1).await?;
        let next = paging::next_time_token(&mut rows, size, &fingerprint, |r| {
            (r.created_at, r.id.clone())
        });
        let views = rows.into_iter().map(|r| self.view(r, Vec::new())).collect();
        Ok((views, next))
    }

    /// The order a call belongs to (viewer checks of PreviewNotification).
    pub async fn order_of_call(&self, call_id: &str) -> Result<Option<OrderId>, ServiceError> {
        Ok(crate::store::calls::find_call(self.store.conn(), call_id)
            .await?
            .and_then(|c| c.order_id)
            .and_then(|id| OrderId::parse(&id).ok()))
    }

    /// Sends a FAILED notification again, now. A notification that failed
    /// for want of a destination or sender is routed again first, with the
    /// order's current agents and the current settings.
    pub async fn retry(&self, id: &str) -> Result<NotificationView, ServiceError> {
        let current = self.find(id).await?;
        if Status::from_db(&current.status) != Some(Status::Failed) {
            return Err(ServiceError::FailedPrecondition {
                reason: "NOT_FAILED",
                message: format!(
                    "notification {id} is {}; only a FAILED notification can be retried",
                    current.status
                ),
            });
        }
        let now = crate::domain::now();
        let mut update = row::ActiveModel {
            status: Set(Status::Pending.as_str().to_owned()),
            reason_code: Set(Some(ReasonCode::AdminRetry.as_str().to_owned())),
            reason: Set(Some("retry requested by an admin".to_owned())),
            next_attempt_at: Set(now),
            age_from: Set(now),
            error_code: Set(None),
            updated_at: Set(now),
            ..Default::default()
        };
        if current.to_address.is_none() || current.from_address.is_none() {
            let order_id = OrderId::parse(&current.order_id).map_err(|_| corrupt(&current.id))?;
            let order = self.order(order_id).await?;
            let destination = notification::destination(
                &order,
                current.zone.as_deref(),
                self.settings.fallback_destination.as_ref(),
            );
            let own = numbers::find_by_order(self.store.conn(), order.id)
                .await?
                .map(|n| n.number);
            let from = notification::sender(own.as_ref(), self.settings.fallback_sender.as_ref());
            let (Some(to), Some(from)) = (destination.to, from) else {
                return Err(ServiceError::FailedPrecondition {
                    reason: "NO_DESTINATION",
                    message: "still nobody to send to (or nothing to send from): set the order's default agent or TWILIO_DESTINATION_WHATSAPP, and give the order a number or set TWILIO_WHATSAPP_NUMBER".to_owned(),
                });
            };
            update.to_address = Set(Some(whatsapp_address(&to)));
            update.from_address = Set(Some(whatsapp_address(&from)));
            update.route = Set(destination.route.as_str().to_owned());
        }
        let _turn = self.store.write_turn().await;
        if !outbox::update_if_status(self.store.conn(), id, Status::Failed, update).await? {
            return Err(ServiceError::Aborted {
                reason: "CONCURRENT_UPDATE",
                message: format!("notification {id} changed meanwhile; read it again"),
            });
        }
        drop(_turn);
        info!(
            notification_id = id,
            "notification retry requested by an admin"
        );
        self.wake();
        self.get(id).await
    }

    /// The seed's "Test WhatsApp": a short Italian message from the order's
    /// number to `to`, else its default agent, else the fallback.
    pub async fn send_test(
        &self,
        order_id: OrderId,
        to: Option<PhoneNumber>,
    ) -> Result<NotificationView, ServiceError> {
        let order = self.order(order_id).await?;
        let now = crate::domain::now();
        let destination = match to {
            Some(to) => Destination {
                to: Some(to),
                route: Route::Explicit,
                zone: None,
            },
            None => {
                notification::destination(&order, None, self.settings.fallback_destination.as_ref())
            }
        };
        let own = numbers::find_by_order(self.store.conn(), order.id)
            .await?
            .map(|n| n.number);
        let from = notification::sender(own.as_ref(), self.settings.fallback_sender.as_ref());
        let body = format!(
            "✅ Messaggio di prova di Centralino per *{}*. Se lo leggi, i riassunti delle chiamate arriveranno a questo numero.",
            order.display_name
        );
        let variables = summary::template_variables(&SummaryInput {
            agency: &order.display_name,
            caller_name: Some("Messaggio di prova"),
            summary: Some("Messaggio di prova: i riassunti delle chiamate arriveranno qui."),
            started_at: Some(now),
            ..SummaryInput::default()
        });
        let model = self.new_row(
            order.id,
            None,
            Kind::Test,
            destination,
            from,
            body,
            &variables,
            now,
        );
        {
            let _turn = self.store.write_turn().await;
            outbox::insert(self.store.conn(), model.clone().into()).await?;
        }
        info!(notification_id = %model.id, order_id = %order.id, "test WhatsApp enqueued");
        self.wake();
        self.get(&model.id).await
    }

    /// A call's message as it would be sent now, without sending it.
    pub async fn preview(&self, call_id: &str) -> Result<Preview, ServiceError> {
        let db = self.store.conn();
        let call = match crate::store::calls::find_call(db, call_id).await? {
            Some(call) => call,
            None => {
                return Err(ServiceError::NotFound {
                    resource: "call",
                    id: call_id.to_owned(),
                });
            }
        };
        let order_id = call
            .order_id
            .as_deref()
            .and_then(|id| OrderId::parse(id).ok())
            .ok_or_else(|| ServiceError::FailedPrecondition {
                reason: "ORPHAN_CALL",
                message: format!(
                    "call {call_id} belongs to no order, so no WhatsApp is sent for it"
                ),
            })?;
        let order = self.order(order_id).await?;
        let lead = match &call.lead_id {
            Some(id) => crate::store::calls::find_lead(db, id).await?,
            None => None,
        };
        let (body, variables) = render(&order, &call, lead.as_ref());
        let destination = notification::destination(
            &order,
            lead.as_ref().and_then(|l| l.zone.as_deref()),
            self.settings.fallback_destination.as_ref(),
        );
        let own = numbers::find_by_order(db, order.id)
            .await?
            .map(|n| n.number);
        Ok(Preview {
            body,
            template_variables: self.configured_variables(&variables),
            destination,
            from: notification::sender(own.as_ref(), self.settings.fallback_sender.as_ref()),
        })
    }

    /// A status callback. The attempt's status only moves forward; the
    /// notification follows its latest attempt. A free-form message refused
    /// with 63016 (outside the window) is sent once more as the template.
    pub async fn record_status(
        &self,
        sid: &str,
        status: MessageStatus,
        error_code: Option<i64>,
        error_message: &str,
        named_attempt: Option<(&str, i32)>,
    ) -> Result<StatusOutcome, ServiceError> {
        let db = self.store.conn();
        let mut found = outbox::attempt_by_sid(db, sid).await?;
        if found.is_none()
            && let Some((notification_id, number)) = named_attempt
        {
            // The callback came before the create answer: its URL names the
            // attempt, which learns its SID here.
            let _turn = self.store.write_turn().await;
            if outbox::set_attempt_sid(db, notification_id, number, sid).await? {
                debug!(
                    notification_id,
                    attempt = number,
                    message_sid = sid,
                    "status callback before the create answer: SID recorded"
                );
            }
            drop(_turn);
            found = outbox::attempt_by_sid(db, sid).await?;
        }
        let Some(attempt) = found else {
            debug!(
                message_sid = sid,
                "status callback for an unknown message: ignored"
            );
            return Ok(StatusOutcome {
                applied: false,
                notification_id: None,
            });
        };
        let notification_id = Some(attempt.notification_id.clone());
        let from = MessageStatus::from_db(&attempt.status).unwrap_or(MessageStatus::Creating);
        if !from.can_move_to(status) {
            return Ok(StatusOutcome {
                applied: false,
                notification_id,
            });
        }
        let now = crate::domain::now();
        let error = status.is_failure().then(|| {
            (
                error_code.unwrap_or(0),
                Some(error_message.to_owned())
                    .filter(|m| !m.is_empty())
                    .unwrap_or_else(|| format!("Twilio reported the message {}", status.as_str())),
            )
        });
        let _turn = self.store.write_turn().await;
        let txn = db.begin().await.map_err(StoreError::from)?;
        if !outbox::advance_attempt(&txn, &attempt.id, from, status, error.clone(), now).await? {
            // Another callback moved it first; this one is stale.
            return Ok(StatusOutcome {
                applied: false,
                notification_id,
            });
        }
        let Some(current) = outbox::find(&txn, &attempt.notification_id).await? else {
            txn.commit().await.map_err(StoreError::from)?;
            return Ok(StatusOutcome {
                applied: true,
                notification_id,
            });
        };
        let latest = current.attempts == attempt.number;
        let mut wake = false;
        if latest {
            let current_status = Status::from_db(&current.status).unwrap_or(Status::Pending);
            if let Some(next) = status.notification_status() {
                if rank(next) > rank(current_status) && current_status != Status::Failed {
                    let mut update = row::ActiveModel {
                        status: Set(next.as_str().to_owned()),
                        updated_at: Set(now),
                        ..Default::default()
                    };
                    if matches!(next, Status::Delivered | Status::Read)
                        && current.delivered_at.is_none()
                    {
                        update.delivered_at = Set(Some(now));
                    }
                    outbox::update_if_status(&txn, &current.id, current_status, update).await?;
                }
            } else if status.is_failure() && current_status != Status::Failed {
                let resend = Mode::from_db(&attempt.mode) == Some(Mode::Freeform)
                    && error_code == Some(OUTSIDE_WINDOW_CODE)
                    && !outbox::attempts(&txn, &current.id)
                        .await?
                        .iter()
                        .any(|a| a.trigger == Trigger::TemplateResend.as_str());
                let (code, message) = error.clone().unwrap_or_default();
                let update = if resend {
                    wake = true;
                    row::ActiveModel {
                        status: Set(Status::Pending.as_str().to_owned()),
                        reason_code: Set(Some(ReasonCode::Retrying.as_str().to_owned())),
                        reason: Set(Some(format!(
                            "twilio {code}: {message}; outside the 24-hour window, resending once as the template"
                        ))),
                        next_attempt_at: Set(now),
                        error_code: Set(Some(code)),
                        updated_at: Set(now),
                        ..Default::default()
                    }
                } else {
                    row::ActiveModel {
                        status: Set(Status::Failed.as_str().to_owned()),
                        reason_code: Set(Some(ReasonCode::Undelivered.as_str().to_owned())),
                        reason: Set(Some(if code == 0 {
                            message.clone()
                        } else {
                            format!("twilio {code}: {message}")
                        })),
                        error_code: Set(Some(code).filter(|c| *c != 0)),
                        updated_at: Set(now),
                        ..Default::default()
                    }
                };
                outbox::update_if_status(&txn, &current.id, current_status, update).await?;
                warn!(
                    notification_id = %current.id,
                    message_sid = sid,
                    error_code = code,
                    resend_as_template = resend,
                    "WhatsApp message failed at Twilio"
                );
            }
        }
        txn.commit().await.map_err(StoreError::from)?;
        drop(_turn);
        if wake {
            self.wake();
        }
        Ok(StatusOutcome {
            applied: true,
            notification_id,
        })
    }

    /// An agent wrote to an agency number: the window is open for 24 h.
    pub async fn record_inbound(
        &self,
        agent: &PhoneNumber,
        agency_number: &PhoneNumber,
    ) -> Result<DateTime<Utc>, ServiceError> {
        let now = crate::domain::now();
        {
            let _turn = self.store.write_turn().await;
            outbox::touch_window(self.store.conn(), agency_number, agent, now).await?;
        }
        debug!(
            agent = %agent.masked(),
            agency_number = %agency_number.masked(),
            "inbound WhatsApp: 24-hour window open"
        );
        Ok(now + WINDOW)
    }

    /// Claims up to `limit` due rows for this process.
    pub async fn claim(&self, limit: u64) -> Result<Vec<row::Model>, ServiceError> {
        if self.twilio.is_none() || limit == 0 {
            return Ok(Vec::new());
        }
        let now = crate::domain::now();
        let until = now
            + chrono::TimeDelta::from_std(self.settings.lease).unwrap_or(chrono::TimeDelta::MAX);
        let _turn = self.store.write_turn().await;
        Ok(outbox::claim(self.store.conn(), &self.instance, until, now, limit).await?)
    }

    /// Reads back from Twilio the SENT messages that heard nothing for
    /// `refresh_after` (a lost or never-configured status callback), for up
    /// to two days after sending, and records what Twilio says as if it were
    /// a callback. Returns how many were looked at.
    pub async fn refresh_quiet(&self, limit: u64) -> Result<usize, ServiceError> {
        let Some(twilio) = &self.twilio else {
            return Ok(0);
        };
        let now = crate::domain::now();
        let quiet = chrono::TimeDelta::from_std(self.settings.refresh_after)
            .unwrap_or(chrono::TimeDelta::MAX);
        let until = now
            + chrono::TimeDelta::from_std(self.settings.lease).unwrap_or(chrono::TimeDelta::MAX);
        let rows = {
            let _turn = self.store.write_turn().await;
            outbox::claim_quiet_sent(
                self.store.conn(),
                &self.instance,
                until,
                now,
                now - quiet,
                now - chrono::TimeDelta::days(2),
                limit,
            )
            .await?
        };
        for row in &rows {
            let Some(sid) = &row.message_sid else {
                continue;
            };
            match twilio.fetch_message(sid).await {
                Ok(message) => {
                    if let Some(status) = MessageStatus::from_twilio(&message.status) {
                        self.record_status(
                            sid,
                            status,
                            message.error_code,
                            message.error_message.as_deref().unwrap_or(""),
                            None,
                        )
                        .await?;
                    }
                }
                Err(err) => {
                    warn!(notification_id = %row.id, error = %err.reason(), "cannot read a sent message back from Twilio; tried again later");
                }
            }
            let _turn = self.store.write_turn().await;
            outbox::release(
                self.store.conn(),
                &row.id,
                &self.instance,
                crate::domain::now(),
            )
            .await?;
        }
        Ok(rows.len())
    }

    /// One delivery step for a claimed row: look up a create whose answer
    /// was lost, else send one attempt; then record the outcome and release
    /// the lease. Errors are logged; the lease expiring hands the row over.
    pub async fn deliver(&self, claimed: row::Model) {
        let id = claimed.id.clone();
        if let Err(err) = self.try_deliver(claimed).await {
            warn!(notification_id = %id, error = %err, "delivery step failed; the row is retried after its lease");
        }
    }

    async fn try_deliver(&self, n: row::Model) -> Result<(), ServiceError> {
        let Some(twilio) = &self.twilio else {
            return Ok(());
        };
        let (Some(from), Some(to)) = (n.from_address.clone(), n.to_address.clone()) else {
            return self
                .finish(
                    &n,
                    failed(ReasonCode::NoDestination, "no sender or recipient"),
                )
                .await;
        };
        let db = self.store.conn();
        // The count and the attempt rows are written together: a row never
        // tried has none to read.
        let attempts = if n.attempts == 0 {
            Vec::new()
        } else {
            outbox::attempts(db, &n.id).await?
        };

        // A request whose answer never came may have created the message:
        // look for it before sending anything again.
        if let Some(open) = attempts
            .iter()
            .rev()
            .find(|a| a.status == MessageStatus::Creating.as_str())
        {
            let since = open.created_at - LOOKUP_SKEW;
            match twilio.recent_messages(&from, &to, since).await {
                Ok(found) => {
                    let mut known = false;
                    for message in found.iter().rev() {
                        if outbox::attempt_by_sid(db, &message.sid).await?.is_some() {
                            continue;
                        }
                        if open.mode == Mode::Freeform.as_str()
                            && message.body().is_some_and(|b| b != n.body)
                        {
                            continue;
                        }
                        self.record_created(&n, open, message).await?;
                        known = true;
                        break;
                    }
                    if known {
                        info!(notification_id = %n.id, attempt = open.number, "lost create answer: the message exists in Twilio, not sent again");
                        return Ok(());
                    }
                    let _turn = self.store.write_turn().await;
                    outbox::advance_attempt(
                        db,
                        &open.id,
                        MessageStatus::Creating,
                        MessageStatus::Rejected,
                        Some((
                            0,
                            "no answer from Twilio and no such message in Twilio: not created"
                                .to_owned(),
                        )),
                        crate::domain::now(),
                    )
                    .await?;
                }
                Err(err) => return self.retry_later(&n, &err).await,
            }
        }

        let now = crate::domain::now();
        let last = attempts.last();
        let resend_template = last.is_some_and(|a| {
            a.mode == Mode::Freeform.as_str()
                && a.error_code == Some(OUTSIDE_WINDOW_CODE)
                && !attempts
                    .iter()
                    .any(|a| a.trigger == Trigger::TemplateResend.as_str())
        });
        let admin_retry = n.reason_code.as_deref() == Some(ReasonCode::AdminRetry.as_str());
        let in_window = match (
            notification::parse_whatsapp(&from),
            notification::parse_whatsapp(&to),
        ) {
            (Ok(sender), Ok(agent)) => outbox::last_inbound(db, sender.as_str(), agent.as_str())
                .await?
                .is_some_and(|at| at > now - WINDOW),
            (Err(_), _) | (_, Err(_)) => false,
        };
        let mode = if in_window && !resend_template {
            Mode::Freeform
        } else {
            Mode::Template
        };
        let trigger = if resend_template {
            Trigger::TemplateResend
        } else if admin_retry {
            Trigger::AdminRetry
        } else {
            Trigger::Auto
        };
        let number = attempts.last().map_or(1, |a| a.number + 1);
        // Callbacks name their attempt, so they count even when they arrive
        // before the create answer.
        let status_callback = self
            .settings
            .status_callback
            .as_ref()
            .map(|url| format!("{url}?n={}&a={number}", n.id));
        let message = match (mode, &self.settings.template) {
            (Mode::Freeform, _) => SendMessage {
                from,
                to,
                body: Some(n.body.clone()),
                content_sid: None,
                content_variables: None,
                status_callback: status_callback.clone(),
            },
            (Mode::Template, Some(template)) => SendMessage {
                from,
                to,
                body: None,
                content_sid: Some(template.content_sid.clone()),
                content_variables: Some(summary::content_variables_json(
                    &self.configured_variables(&stored_variables(&n)),
                )),
                status_callback,
            },
            (Mode::Template, None) => {
                return self
                    .finish(
                        &n,
                        failed(
                            ReasonCode::TemplateNotConfigured,
                            "the agent has not written to this number in the last 24 hours, so WhatsApp only accepts an approved template, and TWILIO_WHATSAPP_TEMPLATE_SID is not set",
                        ),
                    )
                    .await;
            }
        };

        // The attempt is recorded before the request: if this process dies
        // or the answer is lost, the next claim looks the message up first.
        let attempt = attempt_row::Model {
            id: uuid::Uuid::now_v7().to_string(),
            notification_id: n.id.clone(),
            number,
            trigger: trigger.as_str().to_owned(),
            mode: mode.as_str().to_owned(),
            status: MessageStatus::Creating.as_str().to_owned(),
            status_rank: MessageStatus::Creating.rank(),
            message_sid: None,
            error_code: None,
            error_message: None,
            created_at: now,
            updated_at: now,
        };
        {
            let _turn = self.store.write_turn().await;
            let txn = db.begin().await.map_err(StoreError::from)?;
            outbox::insert_attempt(&txn, attempt.clone().into()).await?;
            let counted = row::ActiveModel {
                attempts: Set(number),
                updated_at: Set(now),
                ..Default::default()
            };
            if !outbox::update_if_leased(&txn, &n.id, &self.instance, counted).await? {
                // The lease ran out; whoever holds it now sends.
                return Ok(());
            }
            txn.commit().await.map_err(StoreError::from)?;
        }
        match twilio.create_message(&message).await {
            Ok(created) => {
                self.record_created(&n, &attempt, &created).await?;
                info!(
                    notification_id = %n.id,
                    message_sid = %created.sid,
                    attempt = number,
                    mode = mode.as_str(),
                    route = %n.route,
                    "WhatsApp message accepted by Twilio"
                );
                Ok(())
            }
            Err(err) if err.is_permanent() => {
                let code = err.code();
                {
                    let _turn = self.store.write_turn().await;
                    outbox::advance_attempt(
                        db,
                        &attempt.id,
                        MessageStatus::Creating,
                        MessageStatus::Rejected,
                        Some((code.unwrap_or(0), err.reason())),
                        crate::domain::now(),
                    )
                    .await?;
                }
                warn!(notification_id = %n.id, error_code = code, error = %err.reason(), "Twilio refused the WhatsApp message for good");
                let mut update = failed(ReasonCode::Rejected, &err.reason());
                update.error_code = Set(code);
                self.finish(&n, update).await
            }
            Err(err) => {
                if !may_have_created(&err) {
                    let _turn = self.store.write_turn().await;
                    outbox::advance_attempt(
                        db,
                        &attempt.id,
                        MessageStatus::Creating,
                        MessageStatus::Rejected,
                        Some((err.code().unwrap_or(0), err.reason())),
                        crate::domain::now(),
                    )
                    .await?;
                }
                self.retry_later(&n, &err).await
            }
        }
    }

    /// Twilio accepted a message: the attempt gets its SID and leaves
    /// `creating`, the row leaves PENDING for SENT. Both only move forward: an
    /// early status callback may already have moved them further.
    async fn record_created(
        &self,
        n: &row::Model,
        attempt: &attempt_row::Model,
        created: &crate::providers::twilio::Message,
    ) -> Result<(), ServiceError> {
        let now = crate::domain::now();
        let status = MessageStatus::from_twilio(&created.status).unwrap_or(MessageStatus::Queued);
        let db = self.store.conn();
        // False when an early callback already moved the attempt (and with
        // it the row): then the row is left as the callback set it.
        let advanced = {
            let _turn = self.store.write_turn().await;
            outbox::set_attempt_sid(db, &n.id, attempt.number, &created.sid).await?;
            outbox::advance_attempt(db, &attempt.id, MessageStatus::Creating, status, None, now)
                .await?
        };
        let update = row::ActiveModel {
            reason_code: Set(None),
            reason: Set(None),
            error_code: Set(None),
            message_sid: Set(Some(created.sid.clone())),
            sent_at: Set(Some(n.sent_at.unwrap_or(now))),
            updated_at: Set(now),
            ..Default::default()
        };
        if !advanced {
            // An early callback moved the attempt and the row already.
            return self.finish(n, update).await;
        }
        let to = status.notification_status().unwrap_or(Status::Sent);
        let _turn = self.store.write_turn().await;
        if !outbox::finish_promoting(db, &n.id, &self.instance, update, to).await? {
            warn!(notification_id = %n.id, "lease lost before the outcome was recorded; the next holder looks the message up");
        }
        Ok(())
    }

    /// A transient failure: try again after a jittered, doubling delay, or
    /// give up once the notification is older than the configured age.
    async fn retry_later(&self, n: &row::Model, err: &TwilioError) -> Result<(), ServiceError> {
        let now = crate::domain::now();
        let age = (now - n.age_from).to_std().unwrap_or_default();
        if age >= self.settings.max_age {
            warn!(notification_id = %n.id, attempts = n.attempts + 1, error = %err.reason(), "WhatsApp message given up: retries exhausted");
            let mut update = failed(
                ReasonCode::Expired,
                &format!(
                    "gave up after {} attempts over {} s; last error: {}",
                    n.attempts.max(1),
                    age.as_secs(),
                    err.reason()
                ),
            );
            update.error_code = Set(err.code());
            return self.finish(n, update).await;
        }
        let delay = retry_delay(self.settings.retry_base, n.attempts);
        warn!(
            notification_id = %n.id,
            attempts = n.attempts + 1,
            retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            error = %err.reason(),
            "WhatsApp message not sent yet; retrying"
        );
        self.finish(
            n,
            row::ActiveModel {
                reason_code: Set(Some(ReasonCode::Retrying.as_str().to_owned())),
                reason: Set(Some(err.reason())),
                error_code: Set(err.code()),
                next_attempt_at: Set(
                    now + chrono::TimeDelta::from_std(delay).unwrap_or(chrono::TimeDelta::MAX)
                ),
                updated_at: Set(now),
                ..Default::default()
            },
        )
        .await
    }

    /// Applies `update` and releases the lease, if we still hold it.
    async fn finish(
        &self,
        n: &row::Model,
        mut update: row::ActiveModel,
    ) -> Result<(), ServiceError> {
        if let sea_orm::ActiveValue::NotSet = update.updated_at {
            update.updated_at = Set(crate::domain::now());
        }
        let _turn = self.store.write_turn().await;
        if !outbox::finish(self.store.conn(), &n.id, &self.instance, update).await? {
            warn!(notification_id = %n.id, "lease lost before the outcome was recorded; the next holder looks the message up");
        }
        Ok(())
    }

    fn view(&self, row: row::Model, attempts: Vec<attempt_row::Model>) -> NotificationView {
        let template_variables = self.configured_variables(&stored_variables(&row));
        NotificationView {
            row,
            attempts,
            template_variables,
        }
    }

    /// The stored variables (all fields, fixed order) in the configured order.
    fn configured_variables(&self, all: &[String]) -> Vec<String> {
        let fields: Vec<TemplateField> = match &self.settings.template {
            Some(template) => template.fields.clone(),
            None => TemplateField::ALL.to_vec(),
        };
        fields
            .iter()
            .map(|f| {
                all.get(f.index())
                    .cloned()
                    .unwrap_or_else(|| "—".to_owned())
            })
            .collect()
    }

    async fn find(&self, id: &str) -> Result<row::Model, ServiceError> {
        outbox::find(self.store.conn(), id)
            .await?
            .ok_or_else(|| ServiceError::NotFound {
                resource: "notification",
                id: id.to_owned(),
            })
    }

    async fn order(&self, id: OrderId) -> Result<Order, ServiceError> {
        orders::find(self.store.conn(), id)
            .await?
            .ok_or_else(|| ServiceError::NotFound {
                resource: "order",
                id: id.to_string(),
            })
    }
}

/// The free-form body and the template variables (all fields, fixed order)
/// of a call's summary.
fn render(order: &Order, call: &call::Model, lead: Option<&lead::Model>) -> (String, Vec<String>) {
    let caller = call
        .caller_number
        .as_deref()
        .and_then(|n| PhoneNumber::from_stored(n).ok());
    let intent = lead
        .and_then(|l| l.intent.as_deref())
        .and_then(Intent::from_db);
    let input = SummaryInput {
        agency: &order.display_name,
        caller_name: lead.and_then(|l| l.name.as_deref()),
        caller_number: caller.as_ref(),
        intent,
        zone: lead.and_then(|l| l.zone.as_deref()),
        property_type: lead.and_then(|l| l.property_type.as_deref()),
        budget: lead.and_then(|l| l.budget.as_deref()),
        summary: call.summary.as_deref(),
        recommendation: lead.and_then(|l| l.recommendation.as_deref()),
        started_at: call.started_at.or(call.ended_at),
        duration_seconds: call.duration_seconds,
    };
    (summary::render(&input), summary::template_variables(&input))
}

fn stored_variables(n: &row::Model) -> Vec<String> {
    serde_json::from_str(&n.template_variables).unwrap_or_default()
}

fn failed(code: ReasonCode, reason: &str) -> row::ActiveModel {
    row::ActiveModel {
        status: Set(Status::Failed.as_str().to_owned()),
        reason_code: Set(Some(code.as_str().to_owned())),
        reason: Set(Some(reason.to_owned())),
        ..Default::default()
    }
}

/// Progress order of a notification's status (FAILED apart).
fn rank(status: Status) -> i32 {
    match status {
        Status::Pending | Status::Failed => 0,
        Status::Sent => 1,
        Status::Delivered => 2,
        Status::Read => 3,
    }
}

/// Whether a failed create may still have created the message: only a 429
/// (Twilio did not process it) surely did not.
fn may_have_created(err: &TwilioError) -> bool {
    match err {
        TwilioError::Api { status, code, .. } => !(*status == 429 || *code == Some(20429)),
        TwilioError::Timeout | TwilioError::Connect(_) | TwilioError::Decode(_) => true,
        TwilioError::InvalidSid(_) | TwilioError::Config(_) => false,
    }
}

/// `base * 2^(attempts-1)`, at most [`MAX_RETRY_DELAY`], then ±25 % jitter
/// so that rows that failed together do not retry together.
fn retry_delay(base: Duration, attempts: i32) -> Duration {
    let exponent = u32::try_from(attempts.saturating_sub(1).clamp(0, 16)).unwrap_or(0);
    let delay = base
        .saturating_mul(2u32.saturating_pow(exponent))
        .min(MAX_RETRY_DELAY);
    delay.mul_f64(rand::rng().random_range(0.75..=1.25))
}

fn corrupt(id: &str) -> ServiceError {
    ServiceError::Store(StoreError::Corrupt {
        table: "notifications",
        id: id.to_owned(),
        reason: "unreadable order id".to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_variables_are_named_and_unknown_names_are_refused() {
        assert_eq!(
            TemplateField::parse_list("agency, summary ,caller").unwrap(),
            vec![
                TemplateField::Agency,
                TemplateField::Summary,
                TemplateField::Caller
            ]
        );
        let err = TemplateField::parse_list("agency,budget").unwrap_err();
        assert!(err.contains("budget") && err.contains("known"), "{err}");
    }

    #[test]
    fn retry_delays_double_and_stay_capped() {
        let base = Duration::from_secs(2);
        let first = retry_delay(base, 1);
        assert!(first >= Duration::from_millis(1500) && first <= Duration::from_millis(2500));
        let fourth = retry_delay(base, 4);
        assert!(fourth >= Duration::from_secs(12) && fourth <= Duration::from_secs(20));
        assert!(retry_delay(base, 30) <= MAX_RETRY_DELAY.mul_f64(1.25));
    }

    #[test]
    fn only_a_throttled_create_surely_created_nothing() {
        let api = |status, code| TwilioError::Api {
            status,
            code,
            message: String::new(),
            more_info: None,
        };
        assert!(!may_have_created(&api(429, Some(20429))));
        assert!(may_have_created(&api(500, None)));
        assert!(may_have_created(&TwilioError::Timeout));
    }
}
