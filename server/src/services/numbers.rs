//! Number provisioning: assign an order's dedicated Twilio number, link it to
//! the order's Vapi assistant (§11c of the Vapi contract), keep the link right,
//! verify it live, and release it.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use tracing::{info, warn};

use super::ServiceError;
use crate::{
    config::Secret,
    domain::{
        AnswerMode, LinkState, ManagedNumber, Order, OrderId, OrderStatus, PhoneNumber,
        TwilioNumberSid,
        forwarding::{self, ForwardingCode, ForwardingError, ForwardingInstructions},
    },
    providers::{
        twilio::{TwilioClient, TwilioError},
        vapi::{
            CreatePhoneNumber, TwilioAuth as VapiTwilioAuth, UpdatePhoneNumber, VapiClient,
            VapiError, VapiPhoneNumber, VapiServer,
        },
    },
    store::{
        Store,
        numbers::{self, ClaimConflict, LinkUpdate},
        orders,
    },
};

/// How long one worker may hold a number's link lease.
const LEASE: Duration = Duration::from_secs(60);
/// How long a request waits for another attempt's lease before answering
/// with the number as it stands.
const LEASE_WAIT: Duration = Duration::from_secs(15);
/// Longest wait between retries of a FAILED link.
const MAX_LINK_BACKOFF: Duration = Duration::from_secs(3600);

/// Twilio credentials as Vapi needs them to import a number.
#[derive(Clone, Debug)]
pub enum TwilioImportAuth {
    AuthToken(Secret),
    ApiKey { sid: String, secret: Secret },
}

/// What linking writes, from configuration.
#[derive(Clone, Debug, Default)]
pub struct LinkSettings {
    /// `<CENTRALINO_PUBLIC_URL>/webhooks/vapi`.
    pub webhook_url: Option<String>,
    pub webhook_secret: Option<Secret>,
    pub webhook_credential_id: Option<String>,
    pub twilio_account_sid: Option<String>,
    pub twilio_import_auth: Option<TwilioImportAuth>,
    pub retry_base: Duration,
    pub drift_check: Duration,
}

#[derive(Clone, Debug)]
pub struct NumbersService {
    store: Store,
    vapi: Option<VapiClient>,
    twilio: Option<TwilioClient>,
    settings: Arc<LinkSettings>,
    /// Lease owner name of this process.
    instance: String,
}

/// The outcome of one check of VerifyNumber or the setup checklist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckResult {
    Pass,
    Fail,
    Declared,
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub result: CheckResult,
    pub detail: String,
    pub remedy: String,
}

impl Check {
    fn new(
        name: &'static str,
        result: CheckResult,
        detail: impl Into<String>,
        remedy: &str,
    ) -> Self {
        let remedy = match result {
            CheckResult::Pass => String::new(),
            CheckResult::Fail | CheckResult::Declared | CheckResult::Unknown => remedy.to_owned(),
        };
        Self {
            name,
            result,
            detail: detail.into(),
            remedy,
        }
    }
}

/// What a link attempt ended in.
enum LinkOutcome {
    Linked(Box<VapiPhoneNumber>),
    Pending(String),
    Failed(String),
}

impl NumbersService {
    pub fn new(
        store: Store,
        vapi: Option<VapiClient>,
        twilio: Option<TwilioClient>,
        settings: LinkSettings,
    ) -> Self {
        Self {
            store,
            vapi,
            twilio,
            settings: Arc::new(settings),
            instance: format!("centralino-{}", uuid::Uuid::new_v4().simple()),
        }
    }

    async fn order(&self, id: OrderId) -> Result<Order, ServiceError> {
        orders::find(self.store.conn(), id)
            .await?
            .ok_or_else(|| ServiceError::NotFound {
                resource: "order",
                id: id.to_string(),
            })
    }

    /// The order's number, or NOT_FOUND.
    pub async fn get(&self, order_id: OrderId) -> Result<ManagedNumber, ServiceError> {
        self.order(order_id).await?;
        numbers::find_by_order(self.store.conn(), order_id)
            .await?
            .ok_or_else(|| no_number(order_id))
    }

    /// The seed's set-twilio-number: claim the number for the order, then link it.
    pub async fn assign(
        &self,
        order_id: OrderId,
        number: PhoneNumber,
        twilio_sid: Option<TwilioNumberSid>,
    ) -> Result<ManagedNumber, ServiceError> {
        if !number.as_str().starts_with("+39") {
            return Err(ServiceError::invalid(
                "phone_number",
                "is not an Italian number (+39...): Centralino serves Italian agencies",
            ));
        }
        let order = self.order(order_id).await?;
        if order.status == OrderStatus::Cancelled {
            return Err(ServiceError::FailedPrecondition {
                reason: "ORDER_CANCELLED",
                message: format!("order {order_id} is cancelled; it cannot take a number"),
            });
        }
        // Cheap early answer for the common conflict; the claim below is what
        // actually makes it race-safe.
        if let Some(existing) = numbers::find(self.store.conn(), &number).await?
            && let Some(holder) = existing.order_id
            && holder != order_id
        {
            return Err(already_held(&number, holder));
        }
        let twilio_sid = match twilio_sid {
            Some(sid) => Some(sid),
            None => self.find_twilio_sid(&number).await?,
        };
        let _turn = self.store.write_turn().await;
        let claimed = numbers::claim(
            self.store.conn(),
            &number,
            order_id,
            twilio_sid.as_ref(),
            "link not attempted yet",
            answer_mode(&order),
            crate::domain::now(),
        )
        .await?;
        if claimed.is_ok() {
            self.store.routing_changed().await?;
        }
        drop(_turn);
        let managed = match claimed {
            Ok(managed) => managed,
            Err(ClaimConflict::NumberHeldBy(holder)) => return Err(already_held(&number, holder)),
            Err(ClaimConflict::OrderHolds(other)) => {
                return Err(ServiceError::AlreadyExists {
                    reason: "ORDER_HAS_NUMBER",
                    message: format!(
                        "order {order_id} already holds {}; release it first",
                        other.masked()
                    ),
                    metadata: BTreeMap::from([
                        ("order_id".to_owned(), order_id.to_string()),
                        ("phone_number".to_owned(), other.to_string()),
                    ]),
                });
            }
        };
        info!(order_id = %order_id, number = %number.masked(), "number assigned");
        self.link_now(&order, managed).await
    }

    /// Looks the number up in Twilio when Twilio is configured. A number the
    /// account does not have is refused; Twilio being unreachable is not
    /// (the SID is found again when linking).
    async fn find_twilio_sid(
        &self,
        number: &PhoneNumber,
    ) -> Result<Option<TwilioNumberSid>, ServiceError> {
        let Some(twilio) = &self.twilio else {
            return Ok(None);
        };
        match twilio.find_incoming_number(number).await {
            Ok(Some(found)) => Ok(TwilioNumberSid::parse(&found.sid).ok()),
            Ok(None) => Err(ServiceError::FailedPrecondition {
                reason: "NUMBER_NOT_IN_TWILIO",
                message: format!(
                    "{} is not a number of Twilio account {}; buy or port it first",
                    number.masked(),
                    twilio.account_sid()
                ),
            }),
            Err(err) => {
                warn!(number = %number.masked(), error = %err.reason(), "Twilio lookup failed; assigning without SID");
                Ok(None)
            }
        }
    }

    /// LinkNumber: retry the order's link now.
    pub async fn link(&self, order_id: OrderId) -> Result<ManagedNumber, ServiceError> {
        let order = self.order(order_id).await?;
        let managed = numbers::find_by_order(self.store.conn(), order_id)
            .await?
            .ok_or_else(|| no_number(order_id))?;
        self.link_now(&order, managed).await
    }

    /// Re-link after the order changed (assistant or status); no-op without a number.
    pub async fn relink_order(&self, order: &Order) -> Result<Option<ManagedNumber>, ServiceError> {
        match numbers::find_by_order(self.store.conn(), order.id).await? {
            Some(managed) => self.link_now(order, managed).await.map(Some),
            None => Ok(None),
        }
    }

    /// One link attempt under the number's lease; records and returns the result.
    async fn link_now(
        &self,
        order: &Order,
        managed: ManagedNumber,
    ) -> Result<ManagedNumber, ServiceError> {
        self.link_under_lease(order, managed, true).await
    }

    /// Takes the number's lease with an owner token of its own, so attempts
    /// exclude each other in one process as across processes. With `wait`,
    /// polls (bounded) while another attempt holds it. Returns the token.
    async fn acquire_lease(
        &self,
        number: &PhoneNumber,
        wait: bool,
    ) -> Result<Option<String>, ServiceError> {
        let owner = format!("{}:{}", self.instance, uuid::Uuid::new_v4().simple());
        let started = std::time::Instant::now();
        loop {
            let now = crate::domain::now();
            let until = now + chrono::Duration::from_std(LEASE).unwrap_or_default();
            let leased = {
                let _turn = self.store.write_turn().await;
                numbers::try_lease(self.store.conn(), number, &owner, until, now).await?
            };
            if leased {
                return Ok(Some(owner));
            }
            if !wait || started.elapsed() > LEASE_WAIT {
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Every write takes the SQLite writer's turn: a write outside it would
    /// make a concurrent read-then-write transaction fail with
    /// SQLITE_BUSY_SNAPSHOT ("database is locked", code 517).
    async fn end_lease(&self, number: &PhoneNumber, owner: &str) -> Result<(), ServiceError> {
        let _turn = self.store.write_turn().await;
        numbers::end_lease(self.store.conn(), number, owner).await?;
        Ok(())
    }

    /// One link attempt while holding the number's lease. Each attempt has
    /// its own owner token, so two attempts in one process exclude each
    /// other too. A request waits (bounded) for a running attempt and then
    /// answers with its result; the reconciler just moves on.
    async fn link_under_lease(
        &self,
        order: &Order,
        managed: ManagedNumber,
        wait: bool,
    ) -> Result<ManagedNumber, ServiceError> {
        let Some(owner) = self.acquire_lease(&managed.number, wait).await? else {
            return numbers::find(self.store.conn(), &managed.number)
                .await?
                .ok_or_else(|| no_number(order.id));
        };
        // Re-read under the lease: another attempt may have linked it.
        let Some(managed) = numbers::find(self.store.conn(), &managed.number)
            .await?
            .filter(|fresh| fresh.order_id == Some(order.id))
        else {
            self.end_lease(&managed.number, &owner).await?;
            return Err(no_number(order.id));
        };
        let outcome = self.attempt_link(order, &managed).await;
        let result = self.record(order, &managed, outcome).await;
        self.end_lease(&managed.number, &owner).await?;
        result
    }

    async fn record(
        &self,
        order: &Order,
        managed: &ManagedNumber,
        outcome: LinkOutcome,
    ) -> Result<ManagedNumber, ServiceError> {
        let now = crate::domain::now();
        let mode = answer_mode(order);
        let update = match outcome {
            LinkOutcome::Linked(vapi) => {
                if managed.link_state != LinkState::Linked {
                    info!(order_id = %order.id, number = %managed.number.masked(), mode = mode.as_str(), "number linked in Vapi");
                }
                LinkUpdate {
                    state: LinkState::Linked,
                    reason: None,
                    answer_mode: mode,
                    vapi_phone_number_id: Some(vapi.id),
                    twilio_sid: None,
                    attempts: 0,
                    next_link_at: None,
                    linked_at: Some(now),
                }
            }
            LinkOutcome::Pending(reason) => LinkUpdate {
                state: LinkState::Pending,
                reason: Some(reason),
                answer_mode: mode,
                vapi_phone_number_id: managed.vapi_phone_number_id.clone(),
                twilio_sid: None,
                attempts: managed.link_attempts,
                next_link_at: Some(
                    now + chrono::Duration::from_std(self.settings.retry_base).unwrap_or_default(),
                ),
                linked_at: None,
            },
            LinkOutcome::Failed(reason) => {
                let attempts = managed.link_attempts.saturating_add(1);
                let backoff = backoff(self.settings.retry_base, attempts);
                warn!(order_id = %order.id, number = %managed.number.masked(), attempts, %reason, "Vapi link failed; will retry");
                LinkUpdate {
                    state: LinkState::Failed,
                    reason: Some(reason),
                    answer_mode: mode,
                    vapi_phone_number_id: managed.vapi_phone_number_id.clone(),
                    twilio_sid: None,
                    attempts,
                    next_link_at: Some(
                        now + chrono::Duration::from_std(backoff).unwrap_or_default(),
                    ),
                    linked_at: None,
                }
            }
        };
        {
            let _turn = self.store.write_turn().await;
            numbers::record_link(self.store.conn(), &managed.number, order.id, &update, now)
                .await?;
            // A new Vapi phone-number id routes from now on.
            self.store.routing_changed().await?;
        }
        numbers::find(self.store.conn(), &managed.number)
            .await?
            .ok_or_else(|| no_number(order.id))
    }

    /// What the Vapi number should carry for this order.
    fn desired(&self, order: &Order) -> Result<(Option<String>, VapiServer), String> {
        let Some(url) = &self.settings.webhook_url else {
            return Err("CENTRALINO_PUBLIC_URL is not set: Vapi needs our webhook URL".to_owned());
        };
        let server = match (
            &self.settings.webhook_credential_id,
            &self.settings.webhook_secret,
        ) {
            (Some(credential), _) => VapiServer {
                url: url.clone(),
                credential_id: Some(credential.clone()),
                ..VapiServer::default()
            },
            (None, Some(secret)) => VapiServer {
                url: url.clone(),
                headers: Some(BTreeMap::from([(
                    "X-Vapi-Secret".to_owned(),
                    secret.expose().to_owned(),
                )])),
                ..VapiServer::default()
            },
            (None, None) => {
                return Err(
                    "neither VAPI_WEBHOOK_SECRET nor VAPI_WEBHOOK_CREDENTIAL_ID is set: Vapi's webhooks could not be authenticated"
                        .to_owned(),
                );
            }
        };
        let assistant = match answer_mode(order) {
            AnswerMode::Assistant => match order.vapi_assistant_id {
                Some(id) => Some(id.to_string()),
                None => {
                    return Err(
                        "the order has no Vapi assistant id yet: set vapi_assistant_id with UpdateOrder"
                            .to_owned(),
                    );
                }
            },
            AnswerMode::AssistantRequest => None,
        };
        Ok((assistant, server))
    }

    async fn attempt_link(&self, order: &Order, managed: &ManagedNumber) -> LinkOutcome {
        let Some(vapi) = &self.vapi else {
            return LinkOutcome::Pending("Vapi is not configured: set VAPI_API_KEY".to_owned());
        };
        let (assistant, server) = match self.desired(order) {
            Ok(desired) => desired,
            Err(reason) => return LinkOutcome::Pending(reason),
        };
        let existing = match self.vapi_number(vapi, managed).await {
            Ok(existing) => existing,
            Err(err) => return LinkOutcome::Failed(err.reason()),
        };
        let name = vapi_name(&order.display_name);
        match existing {
            Some(current) => {
                let drifted = current.assistant_id != assistant
                    || !same_server(current.server.as_ref(), &server)
                    || current.sms_enabled != Some(false);
                if !drifted {
                    return LinkOutcome::Linked(Box::new(current));
                }
                if managed.link_state == LinkState::Linked {
                    warn!(order_id = %order.id, number = %managed.number.masked(), "Vapi number drifted from what Centralino wrote; repairing");
                }
                let patch = UpdatePhoneNumber {
                    assistant_id: Some(assistant),
                    server: Some(server),
                    sms_enabled: Some(false),
                    name: Some(name),
                };
                match vapi.update_phone_number(&current.id, &patch).await {
                    Ok(updated) => LinkOutcome::Linked(Box::new(updated)),
                    Err(err) => LinkOutcome::Failed(err.reason()),
                }
            }
            None => {
                let (Some(account), Some(auth)) = (
                    &self.settings.twilio_account_sid,
                    &self.settings.twilio_import_auth,
                ) else {
                    return LinkOutcome::Pending(
                        "Twilio credentials are not configured (TWILIO_ACCOUNT_SID with TWILIO_AUTH_TOKEN or TWILIO_API_KEY/TWILIO_API_SECRET): Vapi needs them to import the number"
                            .to_owned(),
                    );
                };
                let auth = match auth {
                    TwilioImportAuth::AuthToken(token) => VapiTwilioAuth::AuthToken(token.clone()),
                    TwilioImportAuth::ApiKey { sid, secret } => VapiTwilioAuth::ApiKey {
                        key: sid.clone(),
                        secret: secret.clone(),
                    },
                };
                let mut body =
                    CreatePhoneNumber::new(managed.number.clone(), account, auth, &name, server);
                if let Some(assistant) = assistant {
                    body = body.with_assistant(assistant);
                }
                match vapi.create_phone_number(&body).await {
                    Ok(created) => LinkOutcome::Linked(Box::new(created)),
                    Err(err) => LinkOutcome::Failed(err.reason()),
                }
            }
        }
    }

    /// The Vapi import of this number: by its known id, else an earlier
    /// import of the same number.
    async fn vapi_number(
        &self,
        vapi: &VapiClient,
        managed: &ManagedNumber,
    ) -> Result<Option<VapiPhoneNumber>, VapiError> {
        if let Some(id) = &managed.vapi_phone_number_id {
            match vapi.get_phone_number(id).await {
                Ok(found) => return Ok(Some(found)),
                Err(err) if err.status() == Some(404) => {}
                Err(err) => return Err(err),
            }
        }
        vapi.find_phone_number(&managed.number).await
    }

    /// ReleaseNumber: out of Vapi, freed here (history kept), optionally out
    /// of Twilio. Nothing is freed if Vapi could not be told.
    pub async fn release(
        &self,
        order_id: OrderId,
        also_in_twilio: bool,
    ) -> Result<(ManagedNumber, Vec<ForwardingCode>), ServiceError> {
        let order = self.order(order_id).await?;
        let managed = numbers::find_by_order(self.store.conn(), order_id)
            .await?
            .ok_or_else(|| no_number(order_id))?;
        self.release_number(&order, managed, also_in_twilio).await
    }

    /// Used by DeleteOrder: releases the order's number if it holds one.
    pub async fn release_for_cancel(
        &self,
        order: &Order,
    ) -> Result<Option<(ManagedNumber, Vec<ForwardingCode>)>, ServiceError> {
        match numbers::find_by_order(self.store.conn(), order.id).await? {
            Some(managed) => self.release_number(order, managed, false).await.map(Some),
            None => Ok(None),
        }
    }

    async fn release_number(
        &self,
        order: &Order,
        managed: ManagedNumber,
        also_in_twilio: bool,
    ) -> Result<(ManagedNumber, Vec<ForwardingCode>), ServiceError> {
        let twilio_release = if also_in_twilio {
            let Some(twilio) = &self.twilio else {
                return Err(ServiceError::FailedPrecondition {
                    reason: "TWILIO_NOT_CONFIGURED",
                    message: "releasing in Twilio needs TWILIO_ACCOUNT_SID and credentials"
                        .to_owned(),
                });
            };
            let sid = match &managed.twilio_sid {
                Some(sid) => sid.as_str().to_owned(),
                None => match twilio.find_incoming_number(&managed.number).await {
                    Ok(Some(found)) => found.sid,
                    Ok(None) => String::new(),
                    Err(err) => return Err(provider_unavailable("Twilio", err.reason())),
                },
            };
            Some((twilio, sid))
        } else {
            None
        };
        // Hold the lease so that no link attempt re-imports the number between
        // its removal from Vapi and its release here.
        let Some(owner) = self.acquire_lease(&managed.number, true).await? else {
            return Err(ServiceError::Unavailable {
                reason: "NUMBER_BUSY",
                message: "a link of this number is still running; retry shortly".to_owned(),
            });
        };
        // Under the lease, the row is current (a link may have just imported it).
        let managed = numbers::find(self.store.conn(), &managed.number)
            .await?
            .filter(|fresh| fresh.order_id == Some(order.id))
            .unwrap_or(managed);
        if let Err(err) = self.remove_from_vapi(&managed).await {
            self.end_lease(&managed.number, &owner).await?;
            return Err(err);
        }
        let now = crate::domain::now();
        {
            let _turn = self.store.write_turn().await;
            numbers::release(self.store.conn(), &managed.number, order.id, now).await?;
            self.store.routing_changed().await?;
        }
        info!(order_id = %order.id, number = %managed.number.masked(), "number released");
        if let Some((twilio, sid)) = twilio_release
            && !sid.is_empty()
        {
            twilio.release_incoming_number(&sid).await.map_err(|err| {
                provider_unavailable(
                    "Twilio",
                    format!("the number was freed and removed from Vapi, but Twilio refused to release it ({}); release it in the Twilio console", err.reason()),
                )
            })?;
            info!(number = %managed.number.masked(), "number released in Twilio");
        }
        let codes = match &order.landline {
            Some(landline) => {
                forwarding::deactivation_codes(landline, order.carrier).unwrap_or_default()
            }
            None => Vec::new(),
        };
        let released = numbers::find(self.store.conn(), &managed.number)
            .await?
            .unwrap_or(managed);
        Ok((released, codes))
    }

    /// Deletes the number's Vapi import, if there is one. Refuses when Vapi
    /// holds it but cannot be reached or is not configured.
    async fn remove_from_vapi(&self, managed: &ManagedNumber) -> Result<(), ServiceError> {
        match &self.vapi {
            Some(vapi) => {
                let existing = self
                    .vapi_number(vapi, managed)
                    .await
                    .map_err(|err| provider_unavailable("Vapi", err.reason()))?;
                if let Some(existing) = existing {
                    vapi.delete_phone_number(&existing.id)
                        .await
                        .map_err(|err| provider_unavailable("Vapi", err.reason()))?;
                }
                Ok(())
            }
            None if managed.vapi_phone_number_id.is_some() => Err(ServiceError::FailedPrecondition {
                reason: "VAPI_NOT_CONFIGURED",
                message: "the number is imported in Vapi but VAPI_API_KEY is not set: it cannot be removed there".to_owned(),
            }),
            None => Ok(()),
        }
    }

    /// GetForwardingInstructions.
    pub async fn forwarding(
        &self,
        order_id: OrderId,
        no_answer_seconds: u8,
    ) -> Result<(PhoneNumber, ForwardingInstructions), ServiceError> {
        let order = self.order(order_id).await?;
        let Some(landline) = &order.landline else {
            return Err(ServiceError::FailedPrecondition {
                reason: "NO_LANDLINE",
                message: format!(
                    "order {order_id} has no landline_number: set it with UpdateOrder"
                ),
            });
        };
        let managed = numbers::find_by_order(self.store.conn(), order_id)
            .await?
            .ok_or_else(|| no_number(order_id))?;
        forwarding::instructions(landline, order.carrier, &managed.number, no_answer_seconds)
            .map(|found| (landline.clone(), found))
            .map_err(
            |err| match err {
                ForwardingError::Loop => ServiceError::FailedPrecondition {
                    reason: "FORWARDING_LOOP",
                    message: "the order's landline is its Centralino number: forwarding it to itself would loop".to_owned(),
                },
                ForwardingError::NotItalian | ForwardingError::UnsupportedLine(_) => {
                    ServiceError::FailedPrecondition {
                        reason: "UNSUPPORTED_LANDLINE",
                        message: format!("landline_number {err}"),
                    }
                }
            },
        )
    }

    /// Reconciler pass: links due PENDING/FAILED numbers and checks LINKED
    /// ones for drift. Safe to run in several processes (leases).
    pub async fn reconcile(&self, limit: u64) -> Result<usize, ServiceError> {
        let now = crate::domain::now();
        let checked_before =
            now - chrono::Duration::from_std(self.settings.drift_check).unwrap_or_default();
        let due = numbers::due_for_link(self.store.conn(), now, checked_before, limit).await?;
        let mut done = 0;
        for managed in due {
            let Some(order_id) = managed.order_id else {
                continue;
            };
            let Some(order) = orders::find(self.store.conn(), order_id).await? else {
                continue;
            };
            // Not configured yet: nothing to try; the row says why already.
            if self.vapi.is_none() && managed.link_state == LinkState::Pending {
                continue;
            }
            self.link_under_lease(&order, managed, false).await?;
            done += 1;
        }
        Ok(done)
    }

    /// VerifyNumber: live checks in Twilio and Vapi.
    pub async fn verify(&self, order_id: OrderId) -> Result<Vec<Check>, ServiceError> {
        let order = self.order(order_id).await?;
        let managed = numbers::find_by_order(self.store.conn(), order_id)
            .await?
            .ok_or_else(|| no_number(order_id))?;
        Ok(self.checks(&order, &managed).await)
    }

    async fn checks(&self, order: &Order, managed: &ManagedNumber) -> Vec<Check> {
        use CheckResult::{Fail, Pass, Unknown};
        let mut checks = Vec::new();
        const TWILIO_REMEDY: &str = "Problema: Chiamata non arriva su Twilio. Check that the number is active and voice-capable in the Twilio console (Phone Numbers), and that it belongs to TWILIO_ACCOUNT_SID";
        checks.push(match &self.twilio {
            None => Check::new(
                "twilio_number_active",
                Unknown,
                "Twilio is not configured",
                "set TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN (or an API key)",
            ),
            Some(twilio) => {
                let found = match &managed.twilio_sid {
                    Some(sid) => twilio.fetch_incoming_number(sid.as_str()).await.map(Some),
                    None => twilio.find_incoming_number(&managed.number).await,
                };
                match found {
                    Ok(Some(number)) if number.capabilities.voice => Check::new(
                        "twilio_number_active",
                        Pass,
                        format!("{} is in the account and voice-capable", number.sid),
                        TWILIO_REMEDY,
                    ),
                    Ok(Some(number)) => Check::new(
                        "twilio_number_active",
                        Fail,
                        format!("{} is not voice-capable", number.sid),
                        TWILIO_REMEDY,
                    ),
                    Ok(None) => Check::new(
                        "twilio_number_active",
                        Fail,
                        "the number is not in the Twilio account",
                        TWILIO_REMEDY,
                    ),
                    Err(TwilioError::Api { status: 404, .. }) => Check::new(
                        "twilio_number_active",
                        Fail,
                        "Twilio does not know this number's SID",
                        TWILIO_REMEDY,
                    ),
                    Err(err) => Check::new(
                        "twilio_number_active",
                        Unknown,
                        format!("Twilio could not be asked: {}", err.reason()),
                        "retry VerifyNumber; check TWILIO_* settings",
                    ),
                }
            }
        });
        const VAPI_NUMBER_REMEDY: &str = "Problema: Vapi non risponde. Run LinkNumber (the reconciler also retries) and check the number in the Vapi dashboard";
        let Some(vapi) = &self.vapi else {
            for name in [
                "vapi_number_imported",
                "vapi_assistant_linked",
                "vapi_webhook",
                "vapi_sms_disabled",
                "assistant_exists",
                "assistant_server_url",
                "assistant_server_messages",
            ] {
                checks.push(Check::new(
                    name,
                    Unknown,
                    "Vapi is not configured",
                    "set VAPI_API_KEY",
                ));
            }
            return checks;
        };
        let desired = self.desired(order);
        match self.vapi_number(vapi, managed).await {
            Err(err) => {
                for name in [
                    "vapi_number_imported",
                    "vapi_assistant_linked",
                    "vapi_webhook",
                    "vapi_sms_disabled",
                ] {
                    checks.push(Check::new(
                        name,
                        Unknown,
                        format!("Vapi could not be asked: {}", err.reason()),
                        "retry VerifyNumber; check VAPI_API_KEY",
                    ));
                }
            }
            Ok(None) => {
                checks.push(Check::new(
                    "vapi_number_imported",
                    Fail,
                    "the number is not imported in Vapi",
                    VAPI_NUMBER_REMEDY,
                ));
                for name in ["vapi_assistant_linked", "vapi_webhook", "vapi_sms_disabled"] {
                    checks.push(Check::new(
                        name,
                        Fail,
                        "the number is not imported in Vapi",
                        VAPI_NUMBER_REMEDY,
                    ));
                }
            }
            Ok(Some(current)) => {
                checks.push(Check::new(
                    "vapi_number_imported",
                    Pass,
                    format!("Vapi phone number {}", current.id),
                    VAPI_NUMBER_REMEDY,
                ));
                match &desired {
                    Ok((assistant, server)) => {
                        let linked = current.assistant_id == *assistant;
                        checks.push(Check::new(
                            "vapi_assistant_linked",
                            if linked { Pass } else { Fail },
                            match (&current.assistant_id, assistant) {
                                (Some(have), Some(want)) if have == want => format!("answers with assistant {have}"),
                                (None, None) => "no assistant: Centralino answers assistant requests (order not live)".to_owned(),
                                (have, want) => format!("assistant is {}, should be {}", have.as_deref().unwrap_or("none"), want.as_deref().unwrap_or("none")),
                            },
                            "Problema: Chiamate simultanee vanno al cliente sbagliato / Vapi non risponde. Run LinkNumber to write the order's assistant on the number",
                        ));
                        let webhook_ok = same_server(current.server.as_ref(), server);
                        checks.push(Check::new(
                            "vapi_webhook",
                            if webhook_ok { Pass } else { Fail },
                            if webhook_ok { format!("server URL is {}", server.url) } else { format!("server URL or credential differ from {}", server.url) },
                            "Problema: Webhook configurato in Vapi? Run LinkNumber to write our webhook URL and credential",
                        ));
                    }
                    Err(reason) => {
                        checks.push(Check::new(
                            "vapi_assistant_linked",
                            Unknown,
                            reason.clone(),
                            "complete the configuration, then LinkNumber",
                        ));
                        checks.push(Check::new(
                            "vapi_webhook",
                            Unknown,
                            reason.clone(),
                            "complete the configuration, then LinkNumber",
                        ));
                    }
                }
                let sms_off = current.sms_enabled == Some(false);
                checks.push(Check::new(
                    "vapi_sms_disabled",
                    if sms_off { Pass } else { Fail },
                    if sms_off {
                        "smsEnabled is false"
                    } else {
                        "smsEnabled is not false: Vapi rewrites the Twilio SMS webhook"
                    },
                    "Run LinkNumber to set smsEnabled false",
                ));
            }
        }
        match order.vapi_assistant_id {
            None => {
                for name in [
                    "assistant_exists",
                    "assistant_server_url",
                    "assistant_server_messages",
                ] {
                    checks.push(Check::new(
                        name,
                        Fail,
                        "the order has no vapi_assistant_id",
                        "create the assistant in Vapi and set vapi_assistant_id with UpdateOrder",
                    ));
                }
            }
            Some(id) => match vapi.get_assistant(&id.to_string()).await {
                Ok(assistant) => {
                    checks.push(Check::new(
                        "assistant_exists",
                        Pass,
                        format!("assistant {}", assistant.id),
                        "",
                    ));
                    let ours = self.settings.webhook_url.as_deref();
                    let own_url = assistant
                        .server
                        .as_ref()
                        .map(|s| s.url.as_str())
                        .filter(|u| !u.is_empty());
                    let (result, detail) = match own_url {
                        None => (
                            Pass,
                            "the assistant has no server URL of its own".to_owned(),
                        ),
                        Some(url) if Some(url) == ours => {
                            (Pass, "the assistant's server URL is ours".to_owned())
                        }
                        Some(url) => (
                            Fail,
                            format!(
                                "the assistant's own server URL {url} overrides the number's and diverts our messages"
                            ),
                        ),
                    };
                    checks.push(Check::new(
                        "assistant_server_url",
                        result,
                        detail,
                        "Remove the assistant's server URL in Vapi (or set it to ours)",
                    ));
                    let messages = assistant.server_messages.unwrap_or_default();
                    let missing: Vec<&str> = ["end-of-call-report", "status-update"]
                        .into_iter()
                        .filter(|m| !messages.iter().any(|have| have == m))
                        .collect();
                    checks.push(Check::new(
                        "assistant_server_messages",
                        if missing.is_empty() { Pass } else { Fail },
                        if missing.is_empty() { "serverMessages include end-of-call-report and status-update".to_owned() } else { format!("serverMessages lack {}", missing.join(", ")) },
                        "Add end-of-call-report and status-update to the assistant's serverMessages in Vapi",
                    ));
                }
                Err(err) if err.status() == Some(404) => {
                    for name in [
                        "assistant_exists",
                        "assistant_server_url",
                        "assistant_server_messages",
                    ] {
                        checks.push(Check::new(name, Fail, format!("assistant {id} does not exist in Vapi"), "Problema: Assistant Vapi attivo? Fix vapi_assistant_id with UpdateOrder"));
                    }
                }
                Err(err) => {
                    for name in [
                        "assistant_exists",
                        "assistant_server_url",
                        "assistant_server_messages",
                    ] {
                        checks.push(Check::new(
                            name,
                            Unknown,
                            format!("Vapi could not be asked: {}", err.reason()),
                            "retry VerifyNumber",
                        ));
                    }
                }
            },
        }
        checks
    }

    /// The seed's per-client checklist, computed live.
    pub async fn setup_status(&self, order_id: OrderId) -> Result<Vec<Check>, ServiceError> {
        use CheckResult::{Fail, Pass, Unknown};
        let order = self.order(order_id).await?;
        let managed = numbers::find_by_order(self.store.conn(), order_id).await?;
        let mut items = Vec::new();
        let Some(managed) = managed else {
            items.push(Check::new(
                "number_assigned",
                Fail,
                "the order has no dedicated number",
                "AssignNumber with the order's own Twilio number (one number = one client)",
            ));
            for name in [
                "twilio_number_active",
                "vapi_assistant_linked",
                "vapi_webhook",
            ] {
                items.push(Check::new(
                    name,
                    Unknown,
                    "no number assigned",
                    "AssignNumber first",
                ));
            }
            items.extend(self.later_items(&order).await?);
            return Ok(items);
        };
        items.push(Check::new(
            "number_assigned",
            Pass,
            format!("{} (link {})", managed.number, managed.link_state.as_str()),
            "",
        ));
        let live = self.checks(&order, &managed).await;
        for name in [
            "twilio_number_active",
            "vapi_assistant_linked",
            "vapi_webhook",
        ] {
            if let Some(check) = live.iter().find(|c| c.name == name) {
                items.push(check.clone());
            }
        }
        items.extend(self.later_items(&order).await?);
        Ok(items)
    }

    /// Items that calls and notifications prove; never a PASS nobody proved.
    async fn later_items(&self, order: &Order) -> Result<Vec<Check>, ServiceError> {
        use crate::domain::notification::{ReasonCode, Status as Sent};
        use crate::store::notifications as outbox;
        use CheckResult::{Declared, Fail, Pass, Unknown};
        let db = self.store.conn();
        let first_call = crate::store::calls::first_call(db, order.id).await?;
        let delivered = outbox::latest_in(db, order.id, &[Sent::Delivered, Sent::Read]).await?;
        let latest = outbox::latest(db, order.id).await?;
        let not_a_sender = latest.as_ref().filter(|n| {
            n.status == Sent::Failed.as_str() && n.error_code == Some(NOT_A_WHATSAPP_SENDER)
        });
        let sender = match (&delivered, not_a_sender) {
            (Some(n), _) => Check::new(
                "whatsapp_sender_enabled",
                Pass,
                format!(
                    "a WhatsApp from {} was delivered",
                    n.from_address.as_deref().map_or_else(String::new, |a| {
                        crate::domain::phone::mask(a.trim_start_matches("whatsapp:"))
                    })
                ),
                "",
            ),
            (None, Some(n)) => Check::new(
                "whatsapp_sender_enabled",
                Fail,
                n.reason.clone().unwrap_or_default(),
                "Problema: Numero Twilio non può inviare WhatsApp. Enable WhatsApp Business API on the number in Twilio (error 63007: not a WhatsApp sender of the account)",
            ),
            (None, None) if order.whatsapp_sender_declared => Check::new(
                "whatsapp_sender_enabled",
                Declared,
                "an admin declared WhatsApp Business enabled on the number; no delivered message proves it yet",
                "SendTestMessage, then check first_whatsapp_delivered",
            ),
            (None, None) => Check::new(
                "whatsapp_sender_enabled",
                Unknown,
                "nobody declared WhatsApp Business enabled on the number and no WhatsApp was delivered yet",
                "Problema: Numero Twilio non può inviare WhatsApp. Enable WhatsApp Business API on the number in Twilio, then SendTestMessage",
            ),
        };
        let first_whatsapp = match (&delivered, &latest) {
            (Some(n), _) => Check::new(
                "first_whatsapp_delivered",
                Pass,
                format!(
                    "notification {} delivered at {}",
                    n.id,
                    n.delivered_at.unwrap_or(n.updated_at).to_rfc3339()
                ),
                "",
            ),
            (None, None) => Check::new(
                "first_whatsapp_delivered",
                Unknown,
                "no WhatsApp summary has been sent for this order yet",
                "Problema: WhatsApp non arriva. SendTestMessage to check the agent numbers and the WhatsApp sender",
            ),
            (None, Some(n)) if n.status == Sent::Failed.as_str() => Check::new(
                "first_whatsapp_delivered",
                Fail,
                format!(
                    "latest notification {} failed: {}: {}",
                    n.id,
                    n.reason_code.as_deref().unwrap_or("UNKNOWN"),
                    n.reason.as_deref().unwrap_or("")
                ),
                match n.reason_code.as_deref() {
                    Some(code) if code == ReasonCode::NoDestination.as_str() => {
                        "give the order a default agent (UpdateOrder) or set TWILIO_DESTINATION_WHATSAPP, then RetryNotification"
                    }
                    Some(code) if code == ReasonCode::NoSender.as_str() => {
                        "assign the order its number (AssignNumber) or set TWILIO_WHATSAPP_NUMBER, then RetryNotification"
                    }
                    Some(code) if code == ReasonCode::TemplateNotConfigured.as_str() => {
                        "set TWILIO_WHATSAPP_TEMPLATE_SID to an approved Content template (or have the agent write to the agency number first), then RetryNotification"
                    }
                    _ => {
                        "Problema: WhatsApp non arriva. Check the agent numbers and the WhatsApp sender, then RetryNotification"
                    }
                },
            ),
            (None, Some(n)) => Check::new(
                "first_whatsapp_delivered",
                Unknown,
                format!(
                    "latest notification {} is {}{}",
                    n.id,
                    n.status,
                    n.reason
                        .as_deref()
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default()
                ),
                if n.reason_code.as_deref() == Some(ReasonCode::TwilioNotConfigured.as_str()) {
                    "configure Twilio (TWILIO_ACCOUNT_SID + TWILIO_AUTH_TOKEN): waiting messages then go out"
                } else {
                    "wait for Twilio's delivery receipt (needs CENTRALINO_PUBLIC_URL so Twilio can call /webhooks/twilio/status)"
                },
            ),
        };
        Ok(vec![
            sender,
            match first_call {
                Some(call) => Check::new(
                    "first_inbound_call",
                    Pass,
                    format!(
                        "first call {} recorded at {}",
                        call.vapi_call_id,
                        call.created_at.to_rfc3339()
                    ),
                    "",
                ),
                None => Check::new(
                    "first_inbound_call",
                    Unknown,
                    "no call has been recorded for this order yet",
                    "Problema: Chiamata non arriva su Twilio. Call the agency's landline and check that the call is forwarded and answered",
                ),
            },
            first_whatsapp,
        ])
    }
}

/// Twilio: `From` is not a WhatsApp sender of the account.
const NOT_A_WHATSAPP_SENDER: i64 = 63007;

fn answer_mode(order: &Order) -> AnswerMode {
    match order.status {
        OrderStatus::Setup | OrderStatus::Active => AnswerMode::Assistant,
        OrderStatus::Suspended | OrderStatus::Cancelled => AnswerMode::AssistantRequest,
    }
}

/// Vapi names are at most 40 characters.
fn vapi_name(display_name: &str) -> String {
    display_name.chars().take(40).collect()
}

/// The server settings we care about: URL and how it authenticates.
fn same_server(current: Option<&VapiServer>, desired: &VapiServer) -> bool {
    match current {
        None => false,
        Some(current) => {
            current.url == desired.url
                && current.credential_id == desired.credential_id
                && match (&desired.headers, &current.headers) {
                    (None, _) => true,
                    (Some(want), Some(have)) => want
                        .iter()
                        .all(|(k, v)| have.get(k).is_some_and(|h| h == v)),
                    (Some(_), None) => false,
                }
        }
    }
}

/// Doubling delay from `base`, capped at an hour.
fn backoff(base: Duration, attempts: i32) -> Duration {
    let exponent = u32::try_from(attempts.saturating_sub(1).clamp(0, 16)).unwrap_or(0);
    base.saturating_mul(2u32.saturating_pow(exponent))
        .min(MAX_LINK_BACKOFF)
}

fn no_number(order_id: OrderId) -> ServiceError {
    ServiceError::NotFound {
        resource: "number",
        id: format!("of order {order_id}"),
    }
}

fn already_held(number: &PhoneNumber, holder: OrderId) -> ServiceError {
    ServiceError::AlreadyExists {
        reason: "NUMBER_ASSIGNED",
        message: format!(
            "{} already belongs to order {holder}: one number serves one client",
            number.masked()
        ),
        metadata: BTreeMap::from([
            ("holder_order_id".to_owned(), holder.to_string()),
            ("phone_number".to_owned(), number.to_string()),
        ]),
    }
}

fn provider_unavailable(provider: &str, reason: String) -> ServiceError {
    ServiceError::Unavailable {
        reason: "PROVIDER_UNAVAILABLE",
        message: format!("{provider}: {reason}"),
    }
}
