//! Calls: routing of assistant requests, ingestion of status updates and
//! end-of-call reports (one transaction each, idempotent), and reads.

use sea_orm::TransactionTrait;
use tracing::{Instrument as _, debug, info, info_span, warn};

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use sea_orm::{ConnectionTrait, DatabaseTransaction};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::{
    NotificationsService, ServiceError, call_feed, paging,
    routing::{Holder, RoutingTable},
};
use crate::{
    domain::{
        CallStatus, Order, OrderId, OrderStatus, PhoneNumber,
        call::{CallEvent, CallReport, LeadStatus},
        lead::{self, LeadInput},
    },
    store::{
        Store,
        calls::{self, CallFilter, LeadFilter},
        entities::{call, lead as lead_entity, notification as notification_entity},
        notifications as outbox, numbers, orders,
        pipeline::{Prefetch, Session},
    },
};

/// A repeat caller within this window updates the same lead.
const LEAD_WINDOW_DAYS: i64 = 30;

/// What a number that should not be answered says to the caller.
pub const REFUSAL_SUSPENDED: &str = "Ci scusiamo, il servizio di questa agenzia non è al momento disponibile. La preghiamo di richiamare più tardi.";
pub const REFUSAL_UNKNOWN: &str =
    "Ci scusiamo, questo numero non è attivo. La preghiamo di verificare il numero chiamato.";

/// The answer to an assistant request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Routing {
    Assistant {
        assistant_id: String,
        order: OrderId,
    },
    Refuse {
        message: &'static str,
        order: Option<OrderId>,
    },
}

#[derive(Debug, Clone)]
pub struct RecordedReport {
    pub call: call::Model,
    pub replay: bool,
    pub lead: Option<lead_entity::Model>,
}

#[derive(Clone, Debug)]
pub struct CallsService {
    store: Store,
    /// Assistant requests are answered from memory.
    routing: Arc<RoutingTable>,
    /// Reports waiting for the group committers (one queue: whichever
    /// committer is free takes what waits).
    reports: mpsc::Sender<PendingReport>,
    /// Committed changes, for `WatchCalls`; `send` never waits for receivers.
    changes: broadcast::Sender<WatchEvent>,
    /// Where this process's changes come from, and whether the changes of
    /// other processes reach `changes`.
    feed: Arc<Feed>,
    stopping: CancellationToken,
}

/// This process's part in the cross-process feed of call changes.
#[derive(Debug)]
struct Feed {
    /// Random per process: its own notifications are skipped on the way back.
    origin: String,
    /// Whether other processes' changes are being received: always on SQLite
    /// (one process per database); on PostgreSQL while the listener is
    /// LISTENing. While it is off, watches are refused rather than opened
    /// with a gap.
    live: AtomicBool,
}

/// How many committed call changes the watch buffer holds: a watcher further
/// behind than this loses its stream (`WatchCalls` ends it with
/// RESOURCE_EXHAUSTED) rather than slowing ingestion down.
pub const WATCH_BUFFER: usize = 1024;

/// What a committed change did to a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallChangeKind {
    /// A status update created the row.
    Created,
    /// A status update moved the status forward.
    Updated,
    /// A new end-of-call report was recorded (never a replay).
    Reported,
}

/// One committed change, with the call as that change stored it.
#[derive(Debug, Clone)]
pub struct CallChange {
    pub kind: CallChangeKind,
    pub call: Arc<call::Model>,
}

/// What a watcher receives.
#[derive(Debug, Clone)]
pub enum WatchEvent {
    Change(CallChange),
    /// Changes of other processes may have been lost (the listener's
    /// connection dropped): every watch must end, its client re-list.
    Missed,
}

/// A live feed of committed call changes, from every process on the database.
#[derive(Debug)]
pub struct CallWatch {
    pub changes: broadcast::Receiver<WatchEvent>,
    /// Cancelled when the server shuts down: watchers must end then.
    pub stopping: CancellationToken,
}

/// Reports taken into one transaction at most.
const MAX_BATCH: usize = 64;

/// After a batch of at least this many reports (and at most half of
/// [`MAX_BATCH`]), the next one waits up to [`GATHER`] for as many.
const GATHER_AFTER: usize = 4;
const GATHER: std::time::Duration = std::time::Duration::from_millis(1);

/// A batch built on predicted owners found others stored (a number changed
/// hands since the routing table was read): nothing decided, try again the
/// ordinary way.
const OWNERS_MOVED: &str = "OWNERS_MOVED";

/// Why a pipelined batch did not commit.
enum Pipelining {
    /// The owners guessed were wrong: nothing written, try the ordinary way.
    OwnersMoved,
    /// A statement failed (or a value could not be written): nothing
    /// committed, try the ordinary way, which isolates the bad report.
    Refused(String),
    /// The commit's answer was lost: the outcome is unknown.
    CommitUnknown(crate::store::StoreError),
}

/// What recording one report gave: the call (and lead), and the outbox row
/// it enqueued.
type ReportOutcome = Result<(RecordedReport, Option<notification_entity::Model>), ServiceError>;

/// A report waiting for its batch, and where to answer.
#[derive(Debug)]
struct PendingReport {
    report: CallReport,
    reply: oneshot::Sender<ReportOutcome>,
}

impl CallsService {
    /// Starts the group committer of reports; call within a Tokio runtime.
    pub fn new(store: Store, notifications: NotificationsService) -> Self {
        Self::with_committers(store, notifications, 1, Arc::default())
    }

    /// As [`CallsService::new`] with `committers` group committers on
    /// PostgreSQL: while one commits its batch, the next takes the reports
    /// waiting, on its own connection. SQLite has one writer: one.
    pub fn with_committers(
        store: Store,
        notifications: NotificationsService,
        committers: usize,
        batches: Arc<ReportBatches>,
    ) -> Self {
        let committers = if store.backend_name() == "postgresql" {
            committers.max(1)
        } else {
            1
        };
        let changes = broadcast::channel(WATCH_BUFFER).0;
        let feed = Arc::new(Feed {
            origin: uuid::Uuid::new_v4().simple().to_string(),
            live: AtomicBool::new(store.backend_name() != "postgresql"),
        });
        let (reports, queue) = mpsc::channel(4 * MAX_BATCH);
        let queue = Arc::new(tokio::sync::Mutex::new(queue));
        let routing = Arc::new(RoutingTable::new(store.clone()));
        let committer = ReportCommitter {
            routing: routing.clone(),
            store: store.clone(),
            notifications: notifications.clone(),
            changes: changes.clone(),
            origin: feed.origin.clone(),
            batches,
        };
        committer.start(committers, queue);
        Self {
            routing,
            store,
            reports,
            changes,
            feed,
            stopping: CancellationToken::new(),
        }
    }

    /// This process's id in the cross-process feed.
    pub fn origin(&self) -> &str {
        &self.feed.origin
    }

    /// Publishes a change another process committed (the fan-out worker).
    pub fn publish_remote(&self, kind: CallChangeKind, call: call::Model) {
        let _ = self.changes.send(WatchEvent::Change(CallChange {
            kind,
            call: Arc::new(call),
        }));
    }

    /// Other processes' changes reach the watches again (listener up).
    pub fn feed_resumed(&self) {
        self.feed.live.store(true, Ordering::SeqCst);
    }

    /// Other processes' changes may have been lost: new watches are refused
    /// until [`Self::feed_resumed`], open ones end. The flag goes off before
    /// the marker is sent, and `watch` subscribes before it reads the flag,
    /// so no watch can miss both.
    pub fn feed_lost(&self) {
        self.feed.live.store(false, Ordering::SeqCst);
        let _ = self.changes.send(WatchEvent::Missed);
    }

    /// Ends every watch when `shutdown` is cancelled (open streams would
    /// otherwise hold a graceful shutdown forever).
    pub fn stop_watches_on(mut self, shutdown: CancellationToken) -> Self {
        self.stopping = shutdown;
        self
    }

    /// Changes committed from now on, here and in other processes; refused
    /// while other processes' changes cannot be received.
    pub fn watch(&self) -> Result<CallWatch, ServiceError> {
        let changes = self.changes.subscribe();
        if !self.feed.live.load(Ordering::SeqCst) {
            return Err(ServiceError::Unavailable {
                reason: "WATCH_FEED_RECONNECTING",
                message: "changes from other replicas cannot be received right now; retry shortly"
                    .to_owned(),
            });
        }
        Ok(CallWatch {
            changes,
            stopping: self.stopping.clone(),
        })
    }

    /// The in-memory routing table (the epoch watcher keeps it current).
    pub fn routing(&self) -> Arc<RoutingTable> {
        self.routing.clone()
    }

    /// Which assistant answers: from the in-memory routing table, which is
    /// reloaded after any change to numbers or orders (here at once, in
    /// other processes within one epoch poll).
    pub async fn resolve_assistant(
        &self,
        phone_number_id: Option<&str>,
        called: Option<&PhoneNumber>,
    ) -> Result<Routing, ServiceError> {
        let Holder::Order(order) = self.routing.holder(phone_number_id, called).await? else {
            return Ok(Routing::Refuse {
                message: REFUSAL_UNKNOWN,
                order: None,
            });
        };
        match (order.status, order.assistant) {
            (OrderStatus::Setup | OrderStatus::Active, Some(assistant)) => Ok(Routing::Assistant {
                assistant_id: assistant.to_string(),
                order: order.id,
            }),
            (OrderStatus::Setup | OrderStatus::Active, None)
            | (OrderStatus::Suspended | OrderStatus::Cancelled, _) => Ok(Routing::Refuse {
                message: REFUSAL_SUSPENDED,
                order: Some(order.id),
            }),
        }
    }

    /// A status update: creates the call if new, moves its status forward.
    pub async fn record_event(
        &self,
        event: CallEvent,
    ) -> Result<(call::Model, bool), ServiceError> {
        let now = crate::domain::now();
        let at = event.started_at.unwrap_or(now);
        let _turn = self.store.write_turn().await;
        let txn = self
            .store
            .conn()
            .begin()
            .await
            .map_err(crate::store::StoreError::from)?;
        let owner = calls::resolve_owner(&txn, &event.key, at).await?;
        let created = calls::ensure_call(
            &txn,
            &event.key,
            &owner,
            event.status,
            event.started_at,
            now,
        )
        .await?;
        let applied = calls::advance_status(
            &txn,
            &event.key.vapi_call_id,
            event.status,
            event.ended_reason.as_deref(),
            now,
        )
        .await?;
        let stored = calls::find_call(&txn, &event.key.vapi_call_id)
            .await?
            .ok_or_else(|| internal("call row vanished"))?;
        let kind = if created {
            Some(CallChangeKind::Created)
        } else if applied {
            Some(CallChangeKind::Updated)
        } else {
            None
        };
        if let Some(kind) = kind {
            // In the transaction: other replicas hear of it only if it commits.
            let payloads = call_feed::encode(&self.feed.origin, [(kind, stored.id.as_str())]);
            calls::notify(&txn, call_feed::CHANNEL, &payloads).await?;
        }
        txn.commit().await.map_err(crate::store::StoreError::from)?;
        // Still holding the SQLite write turn: published in commit order.
        if let Some(kind) = kind {
            publish(&self.changes, kind, &stored);
        }
        Ok((stored, applied))
    }

    /// An end-of-call report: call, lead and the notification, committed
    /// together with the other reports that arrived meanwhile (group commit:
    /// one transaction, one fsync, for many reports), each in its own
    /// savepoint so that one failing report never fails the others. Answers
    /// only once its batch is durable. A report already recorded is a replay
    /// and changes nothing.
    pub async fn record_report(&self, report: CallReport) -> Result<RecordedReport, ServiceError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.reports
            .send(PendingReport { report, reply })
            .await
            .map_err(|_| shutting_down())?;
        let (recorded, notification) = answer.await.map_err(|_| shutting_down())??;
        // Logged on the caller's task, not on the committer's thread: that
        // thread is the one serial stage of ingest.
        log_report(&recorded, notification.as_ref());
        Ok(recorded)
    }

    pub async fn get_call(&self, id: &str) -> Result<call::Model, ServiceError> {
        calls::find_call(self.store.conn(), id)
            .await?
            .ok_or_else(|| ServiceError::NotFound {
                resource: "call",
                id: id.to_owned(),
            })
    }

    pub async fn list_calls(
        &self,
        filter: CallFilter,
        page_size: i32,
        page_token: &str,
    ) -> Result<(Vec<call::Model>, String), ServiceError> {
        let size = paging::page_size(page_size)?;
        let fingerprint = paging::fingerprint(&[
            "calls",
            &filter.order.map(|o| o.to_string()).unwrap_or_default(),
            &filter.from.map(|t| t.to_rfc3339()).unwrap_or_default(),
            &filter.to.map(|t| t.to_rfc3339()).unwrap_or_default(),
            filter.status.map(|s| s.as_vapi()).unwrap_or(""),
            if filter.orphans_only { "orphans" } else { "" },
            filter.caller.as_ref().map(|c| c.as_str()).unwrap_or(""),
        ]);
        let before = paging::decode_time_cursor(paging::decode(page_token, &fingerprint)?)?;
        let mut rows = calls::page_calls(self.store.conn(), &filter, before, size + 1).await?;
        let next = paging::next_time_token(&mut rows, size, &fingerprint, |c| {
            (c.created_at, c.id.clone())
        });
        Ok((rows, next))
    }

    pub async fn list_leads(
        &self,
        filter: LeadFilter,
        page_size: i32,
        page_token: &str,
    ) -> Result<(Vec<lead_entity::Model>, String), ServiceError> {
        let size = paging::page_size(page_size)?;
        let fingerprint = paging::fingerprint(&[
            "leads",
            &filter.order.map(|o| o.to_string()).unwrap_or_default(),
            filter.status.map(|s| s.as_str()).unwrap_or(""),
            filter.intent.as_deref().unwrap_or(""),
            filter.zone.as_deref().unwrap_or(""),
        ]);
        let before = paging::decode_time_cursor(paging::decode(page_token, &fingerprint)?)?;
        let mut rows = calls::page_leads(self.store.conn(), &filter, before, size + 1).await?;
        let next = paging::next_time_token(&mut rows, size, &fingerprint, |l| {
            (l.last_call_at, l.id.clone())
        });
        Ok((rows, next))
    }

    pub async fn get_lead(&self, id: &str) -> Result<lead_entity::Model, ServiceError> {
        calls::find_lead(self.store.conn(), id)
            .await?
            .ok_or_else(|| ServiceError::NotFound {
                resource: "lead",
                id: id.to_owned(),
            })
    }

    /// Status (forward only), notes and assigned agent.
    pub async fn update_lead(
        &self,
        id: &str,
        status: Option<LeadStatus>,
        notes: Option<String>,
        assigned_agent: Option<String>,
    ) -> Result<lead_entity::Model, ServiceError> {
        use sea_orm::ActiveValue::Set;
        let current = self.get_lead(id).await?;
        let mut model = lead_entity::ActiveModel {
            revision: Set(current.revision + 1),
            updated_at: Set(crate::domain::now()),
            ..Default::default()
        };
        if let Some(next) = status {
            let from = LeadStatus::from_db(&current.status).unwrap_or(LeadStatus::New);
            if !from.can_move_to(next) {
                return Err(ServiceError::FailedPrecondition {
                    reason: "INVALID_LEAD_TRANSITION",
                    message: format!(
                        "a lead cannot go from {} to {}; allowed: NEW -> CONTACTED -> QUALIFIED -> CLOSED, and LOST from any open status",
                        from.as_str(),
                        next.as_str()
                    ),
                });
            }
            model.status = Set(next.as_str().to_owned());
        }
        if let Some(notes) = notes {
            model.notes = Set(Some(notes).filter(|n| !n.is_empty()));
        }
        if let Some(agent) = assigned_agent {
            model.assigned_agent = Set(Some(agent).filter(|a| !a.is_empty()));
        }
        let _turn = self.store.write_turn().await;
        if !calls::update_lead_if_revision(self.store.conn(), model, id, current.revision).await? {
            return Err(ServiceError::Aborted {
                reason: "CONCURRENT_UPDATE",
                message: format!(
                    "lead {id} was changed by another request; read it again and retry"
                ),
            });
        }
        self.get_lead(id).await
    }

    /// The order a call belongs to (for viewer checks).
    pub fn order_of(call: &call::Model) -> Option<OrderId> {
        call.order_id
            .as_deref()
            .and_then(|id| OrderId::parse(id).ok())
    }
}

/// Commits end-of-call reports in batches; owns no sender of its queue, so it
/// stops once every CallsService is gone.
#[derive(Clone, Debug)]
struct ReportCommitter {
    store: Store,
    /// To guess each report's owner before reading it (the guess is checked).
    routing: Arc<RoutingTable>,
    /// Writes the WhatsApp outbox row inside the report's transaction.
    notifications: NotificationsService,
    /// Where `WatchCalls` hears of new reports.
    changes: broadcast::Sender<WatchEvent>,
    /// This process's id in the notifications to other processes.
    origin: String,
    batches: Arc<ReportBatches>,
}

/// Batches of reports committed, by the way they went.
#[derive(Debug, Default)]
pub struct ReportBatches {
    pipelined: std::sync::atomic::AtomicU64,
    ordinary: std::sync::atomic::AtomicU64,
}

impl ReportBatches {
    /// Committed in one pipelined transaction (PostgreSQL).
    pub fn pipelined(&self) -> u64 {
        self.pipelined.load(Ordering::Relaxed)
    }

    /// Committed statement by statement: SQLite, or what the pipelined
    /// path gave back.
    pub fn ordinary(&self) -> u64 {
        self.ordinary.load(Ordering::Relaxed)
    }
}

/// After commit. Never blocks; without watchers the change is dropped.
fn publish(changes: &broadcast::Sender<WatchEvent>, kind: CallChangeKind, call: &call::Model) {
    let _ = changes.send(WatchEvent::Change(CallChange {
        kind,
        call: Arc::new(call.clone()),
    }));
}

impl ReportCommitter {
    /// Runs `committers` committers on a thread of their own with a pool of
    /// their own: between two statements of a batch the committer must not
    /// wait behind the request handlers for a worker, nor for another
    /// thread to pass its socket's wake-up on.
    fn start(
        self,
        committers: usize,
        queue: Arc<tokio::sync::Mutex<mpsc::Receiver<PendingReport>>>,
    ) {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(err) => {
                warn!(error = %err, "cannot start the report committers' runtime; they share the server's");
                for _ in 0..committers {
                    tokio::spawn(self.clone().run(queue.clone()));
                }
                return;
            }
        };
        let spawned = std::thread::Builder::new()
            .name("report-committer".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let store = match self.store.dedicated(2 * committers as u32).await {
                        Ok(store) => store,
                        Err(err) => {
                            warn!(error = %err, "cannot open the report committers' own pool; they share the server's");
                            self.store.clone()
                        }
                    };
                    let committer = ReportCommitter { store, ..self };
                    let mut running = tokio::task::JoinSet::new();
                    for _ in 0..committers {
                        running.spawn(committer.clone().run(queue.clone()));
                    }
                    while running.join_next().await.is_some() {}
                })
            });
        if let Err(err) = spawned {
            panic!("cannot start the report committers' thread: {err}");
        }
    }

    /// The committer: takes every report waiting (up to [`MAX_BATCH`]), runs
    /// them in one transaction, commits, then answers each. While one batch
    /// commits, the next one gathers (the queue is free for another
    /// committer meanwhile); a lone report waits for nothing.
    async fn run(self, queue: Arc<tokio::sync::Mutex<mpsc::Receiver<PendingReport>>>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        let mut last = 0;
        let mut session = Session::new(&self.store);
        loop {
            let mut queue = queue.lock().await;
            if queue.recv_many(&mut batch, MAX_BATCH).await == 0 {
                break;
            }
            // Under moderate load the senders just answered are sending
            // again: give them a moment to join this batch rather than queue
            // behind a small one (batches alternated small and large: at 16
            // in flight, 2,700/s p99 10.6 ms before, 3,400/s p99 6.5-8.5 ms
            // after). Near-full batches refill while they commit anyway, and
            // waiting there cost more than it gained.
            if (GATHER_AFTER..=MAX_BATCH / 2).contains(&last) {
                let until = tokio::time::Instant::now() + GATHER;
                while batch.len() < last.min(MAX_BATCH) {
                    let room = MAX_BATCH - batch.len();
                    match tokio::time::timeout_at(until, queue.recv_many(&mut batch, room)).await {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
            }
            drop(queue);
            last = batch.len();
            let span = info_span!("report_batch", reports = batch.len());
            self.commit_batch(session.as_mut(), std::mem::take(&mut batch))
                .instrument(span)
                .await;
        }
    }

    async fn commit_batch(&self, session: Option<&mut Session>, batch: Vec<PendingReport>) {
        let batch = match session {
            Some(session) => match self.commit_pipelined(session, batch).await {
                Some(batch) => batch,
                None => return,
            },
            None => batch,
        };
        let size = batch.len();
        let _turn = self.store.write_turn().await;
        let txn = match self.store.conn().begin().await {
            Ok(txn) => txn,
            Err(err) => {
                let err = crate::store::StoreError::from(err);
                warn!(error = %err, reports = size, "cannot begin the reports' transaction");
                for pending in batch {
                    pending.reply.send(Err(commit_failed(&err))).ok();
                }
                return;
            }
        };
        let mut outcomes = Vec::with_capacity(size);
        // A second report for the same call in one batch goes after the
        // batch, one by one: it is a replay of the first (or its retry).
        let mut seen = std::collections::HashSet::new();
        let (distinct, repeats): (Vec<_>, Vec<_>) = batch
            .into_iter()
            .partition(|p| seen.insert(p.report.key.vapi_call_id.clone()));
        let reports: Vec<&CallReport> = distinct.iter().map(|p| &p.report).collect();
        let together = if distinct.len() == 1 && repeats.is_empty() {
            // A lone report needs no savepoint (two fewer round trips, the
            // common case at low load): on failure the transaction is its own.
            match self.record_batch_in(&txn, &reports, None).await {
                Ok(results) => Ok(results),
                Err(err) => {
                    txn.rollback().await.ok();
                    if let Some(pending) = distinct.into_iter().next() {
                        pending.reply.send(Err(err)).ok();
                    }
                    return;
                }
            }
        } else {
            match txn.begin().await {
                Ok(savepoint) => match self.record_batch_in(&savepoint, &reports, None).await {
                    Ok(results) => savepoint
                        .commit()
                        .await
                        .map(|()| results)
                        .map_err(|err| ServiceError::from(crate::store::StoreError::from(err))),
                    Err(err) => {
                        savepoint.rollback().await.ok();
                        Err(err)
                    }
                },
                Err(err) => Err(ServiceError::from(crate::store::StoreError::from(err))),
            }
        };
        match together {
            Ok(results) => outcomes.extend(distinct.into_iter().zip(results.into_iter().map(Ok))),
            Err(err) => {
                // Which report failed is unknown: each goes alone, in its own
                // savepoint, so that only the bad one fails.
                warn!(error = %err, reports = distinct.len(), "the batch's statements failed; recording its reports one by one");
                for pending in distinct {
                    let outcome = self.record_alone_in(&txn, &pending.report).await;
                    outcomes.push((pending, outcome));
                }
            }
        }
        for pending in repeats {
            let outcome = self.record_alone_in(&txn, &pending.report).await;
            outcomes.push((pending, outcome));
        }
        // One notification (split only past PostgreSQL's payload limit) for
        // the batch's new reports, delivered to other replicas on commit. If
        // it fails the batch fails: better a retried report than a dashboard
        // that silently misses it.
        let payloads = call_feed::encode(
            &self.origin,
            outcomes.iter().filter_map(|(_, outcome)| match outcome {
                Ok((recorded, _)) if !recorded.replay => {
                    Some((CallChangeKind::Reported, recorded.call.id.as_str()))
                }
                Ok(_) | Err(_) => None,
            }),
        );
        let notified = calls::notify(&txn, call_feed::CHANNEL, &payloads).await;
        let committed = match notified {
            Ok(()) => txn.commit().await.map_err(crate::store::StoreError::from),
            Err(err) => {
                txn.rollback().await.ok();
                Err(err)
            }
        };
        if let Err(err) = committed {
            warn!(error = %err, reports = size, "the reports' transaction did not commit; each is answered with the failure");
            for (pending, _) in outcomes {
                pending.reply.send(Err(commit_failed(&err))).ok();
            }
            return;
        }
        self.batches.ordinary.fetch_add(1, Ordering::Relaxed);
        // Still holding the SQLite write turn: published in commit order.
        self.publish_committed(&outcomes);
        drop(_turn);
        self.answer(outcomes);
        debug!(reports = size, "end-of-call reports committed together");
    }

    /// PostgreSQL: the batch in one transaction whose writes travel with the
    /// next read or the commit (two round trips for a batch of new reports
    /// instead of twelve; see `store::pipeline`). Gives the batch back, with
    /// nothing committed, when it cannot: repeats of one call, a statement
    /// that fails (the ordinary path then isolates the bad report), a value
    /// that cannot be inlined.
    async fn commit_pipelined(
        &self,
        session: &mut Session,
        batch: Vec<PendingReport>,
    ) -> Option<Vec<PendingReport>> {
        let mut seen = std::collections::HashSet::new();
        if !batch
            .iter()
            .all(|p| seen.insert(p.report.key.vapi_call_id.as_str()))
        {
            return Some(batch);
        }
        let size = batch.len();
        let started = std::time::Instant::now();
        let txn = match session.begin().await {
            Ok(txn) => txn,
            Err(err) => {
                debug!(error = %err, "no pipelined transaction; the reports go the ordinary way");
                return Some(batch);
            }
        };
        let reports: Vec<&CallReport> = batch.iter().map(|p| &p.report).collect();
        let (recorded, round_trips) = match self.record_and_commit_pipelined(txn, &reports).await {
            Ok(done) => done,
            Err(Pipelining::OwnersMoved) => {
                debug!(
                    reports = size,
                    "a called number changed hands since the routing table was read; the reports go the ordinary way"
                );
                return Some(batch);
            }
            Err(Pipelining::Refused(err)) => {
                warn!(error = %err, reports = size, "the pipelined batch failed; the reports go the ordinary way");
                return Some(batch);
            }
            Err(Pipelining::CommitUnknown(err)) => {
                warn!(error = %err, reports = size, "the reports' transaction did not commit; each is answered with the failure");
                for pending in batch {
                    pending.reply.send(Err(commit_failed(&err))).ok();
                }
                return None;
            }
        };
        self.batches.pipelined.fetch_add(1, Ordering::Relaxed);
        let outcomes: Vec<_> = batch
            .into_iter()
            .zip(recorded.into_iter().map(Ok))
            .collect();
        self.publish_committed(&outcomes);
        self.answer(outcomes);
        debug!(
            reports = size,
            micros = started.elapsed().as_micros() as u64,
            round_trips,
            "end-of-call reports committed together (pipelined)"
        );
        None
    }

    /// The pipelined transaction's statements and commit (with the round
    /// trips it took); rolled back on any failure before the commit.
    async fn record_and_commit_pipelined(
        &self,
        txn: crate::store::pipeline::Pipelined<'_>,
        reports: &[&CallReport],
    ) -> Result<
        (
            Vec<(RecordedReport, Option<notification_entity::Model>)>,
            u32,
        ),
        Pipelining,
    > {
        let predicted = self.predict_owners(reports).await;
        let recorded = match self
            .record_batch_in(&txn, reports, predicted.as_deref())
            .await
        {
            Ok(recorded) => recorded,
            Err(err) => {
                txn.rollback().await;
                let moved = matches!(
                    &err,
                    ServiceError::Aborted {
                        reason: OWNERS_MOVED,
                        ..
                    }
                );
                return Err(if moved {
                    Pipelining::OwnersMoved
                } else {
                    Pipelining::Refused(err.to_string())
                });
            }
        };
        let payloads = call_feed::encode(
            &self.origin,
            recorded
                .iter()
                .filter(|(recorded, _)| !recorded.replay)
                .map(|(recorded, _)| (CallChangeKind::Reported, recorded.call.id.as_str())),
        );
        if let Err(err) = calls::notify(&txn, call_feed::CHANNEL, &payloads).await {
            txn.rollback().await;
            return Err(Pipelining::Refused(err.to_string()));
        }
        // The commit's own round trip counted.
        let round_trips = txn.round_trips().await + 1;
        match txn.commit().await {
            Ok(()) => Ok((recorded, round_trips)),
            // PostgreSQL refused a statement: nothing was committed.
            Err(err) if err.is_refused_statement() => Err(Pipelining::Refused(err.to_string())),
            Err(err) => Err(Pipelining::CommitUnknown(err)),
        }
    }

    /// Tells `WatchCalls` of the new reports just committed.
    fn publish_committed(&self, outcomes: &[(PendingReport, ReportOutcome)]) {
        for (_, outcome) in outcomes {
            if let Ok((recorded, _)) = outcome
                && !recorded.replay
            {
                publish(&self.changes, CallChangeKind::Reported, &recorded.call);
            }
        }
    }

    /// Answers each report (after its commit) and wakes the dispatcher if
    /// a WhatsApp waits.
    fn answer(&self, outcomes: Vec<(PendingReport, ReportOutcome)>) {
        let mut wake = false;
        for (pending, outcome) in outcomes {
            if let Ok((_, notification)) = &outcome {
                wake |= notification.is_some();
            }
            // The caller logs its report; if it has gone (the client hung
            // up), the committed report is logged here.
            if let Err(Ok((recorded, notification))) = pending.reply.send(outcome) {
                log_report(&recorded, notification.as_ref());
            }
        }
        if wake {
            self.notifications.wake();
        }
    }

    /// One report in its own savepoint of the batch's transaction.
    async fn record_alone_in(
        &self,
        txn: &DatabaseTransaction,
        report: &CallReport,
    ) -> Result<(RecordedReport, Option<notification_entity::Model>), ServiceError> {
        let savepoint = txn
            .begin()
            .await
            .map_err(|err| ServiceError::from(crate::store::StoreError::from(err)))?;
        match self.record_report_in(&savepoint, report).await {
            Ok(recorded) => {
                savepoint
                    .commit()
                    .await
                    .map_err(|err| ServiceError::from(crate::store::StoreError::from(err)))?;
                Ok(recorded)
            }
            Err(err) => {
                // Only this report's statements are undone.
                savepoint.rollback().await.ok();
                Err(err)
            }
        }
    }

    /// Many reports (distinct Vapi call ids) in a fixed number of statements
    /// however many they are: owners, calls (one upsert that also tells new
    /// reports from replays), orders, leads, links, senders and outbox rows,
    /// each one statement. Same outcome as [`Self::record_report_in`] on
    /// each in turn, which stays the path of repeats and of isolation.
    /// Each report's owner as the routing table has it now, if it has one
    /// for every report: almost always the owner at the call's start.
    async fn predict_owners(&self, reports: &[&CallReport]) -> Option<Vec<calls::Owner>> {
        let mut owners = Vec::with_capacity(reports.len());
        for report in reports {
            let key = &report.key;
            let (number, order) = self
                .routing
                .held_number(key.phone_number_id.as_deref(), key.called_number.as_ref())
                .await
                .ok()??;
            owners.push(calls::Owner {
                order: Some(order.id),
                number: Some(number),
                orphan_reason: None,
            });
        }
        Some(owners)
    }

    /// `predicted`: owners to build the calls upsert with before they are
    /// read (a pipelined transaction then sends both together); checked once
    /// read, a wrong guess fails the batch with [`OWNERS_MOVED`] before
    /// anything else is written.
    async fn record_batch_in(
        &self,
        txn: &impl Prefetch,
        reports: &[&CallReport],
        predicted: Option<&[calls::Owner]>,
    ) -> Result<Vec<(RecordedReport, Option<notification_entity::Model>)>, ServiceError> {
        use std::collections::{BTreeSet, HashMap, HashSet};
        let now = crate::domain::now();
        let window = chrono::Duration::days(LEAD_WINDOW_DAYS);
        let at = |report: &CallReport| report.started_at.or(report.ended_at).unwrap_or(now);
        let keys: Vec<_> = reports.iter().map(|r| (&r.key, at(r))).collect();
        let backend = txn.get_database_backend();
        let prefetch = |statements: Vec<sea_orm::Statement>| async move {
            for statement in statements {
                txn.prefetch(statement)
                    .await
                    .map_err(|err| ServiceError::from(crate::store::StoreError::from(err)))?;
            }
            Ok::<_, ServiceError>(())
        };
        let owners = match predicted {
            Some(predicted) => {
                // Read with the upsert below, and checked after it.
                prefetch(calls::owner_reads(
                    backend,
                    &keys,
                    predicted.iter().filter_map(|o| o.number.as_ref()),
                ))
                .await?;
                predicted.to_vec()
            }
            None => calls::resolve_owners(txn, &keys).await?,
        };
        // The owners' orders and senders, asked for below: a pipelined
        // transaction sends them with the upsert (a call row that existed
        // may belong to another order: asked for as well, later).
        let owner_orders: BTreeSet<OrderId> = owners.iter().filter_map(|o| o.order).collect();
        prefetch(
            [
                orders::find_many_statement(backend, owner_orders.iter().copied()),
                numbers::find_by_orders_statement(backend, owner_orders.iter().copied()),
            ]
            .into_iter()
            .flatten()
            .collect(),
        )
        .await?;
        // Pipelined: the callers' lock and their recent leads go right
        // behind the upsert, in its round trip (one round trip fewer), for
        // the callers the predicted owners give. Below, the lock is taken
        // again if the stored owners name other callers, and the leads are
        // read again unless the same read was sent.
        let locked_early = match predicted {
            Some(predicted) => {
                let (pairs, since) = caller_pairs(reports, predicted.iter().map(|o| o.order), at);
                let lock = calls::lock_callers_sql(pairs.iter().map(|(o, p)| (*o, p.as_str())));
                let read = since.and_then(|since| {
                    calls::recent_leads_statement(backend, &pairs, since - window)
                });
                txn.send_behind_next_query(lock.clone(), read)
                    .await
                    .map_err(|err| ServiceError::from(crate::store::StoreError::from(err)))?
                    .then_some(lock)
                    .flatten()
            }
            None => None,
        };
        let rows: Vec<_> = reports.iter().copied().zip(owners.iter()).collect();
        let mut fresh: HashMap<String, call::Model> = calls::upsert_reports(txn, &rows, now)
            .await?
            .into_iter()
            .map(|call| (call.vapi_call_id.clone(), call))
            .collect();
        if predicted.is_some() && calls::resolve_owners(txn, &keys).await? != owners {
            return Err(ServiceError::Aborted {
                reason: OWNERS_MOVED,
                message: "a called number changed hands since the routing table was read".into(),
            });
        }

        // The row's owner was decided by its first message.
        let mut wanted = owner_orders;
        wanted.extend(fresh.values().filter_map(CallsService::order_of));
        let orders: HashMap<OrderId, Order> = orders::find_many(txn, wanted.iter().copied())
            .await?
            .into_iter()
            .map(|order| (order.id, order))
            .collect();
        let mut drafts = Vec::new();
        for (i, report) in reports.iter().enumerate() {
            let order = fresh
                .get(&report.key.vapi_call_id)
                .and_then(CallsService::order_of)
                .and_then(|id| orders.get(&id));
            if let Some(order) = order {
                drafts.push((i, order.id, draft_of(report, order)));
            }
        }
        let pairs: Vec<(OrderId, String)> = drafts
            .iter()
            .filter_map(|(_, order, draft)| {
                draft
                    .phone
                    .as_ref()
                    .map(|p| (*order, p.as_str().to_owned()))
            })
            .collect();
        // Held to commit: no other batch plans these callers' leads meanwhile.
        // Taken again only when the early lock named other callers (a call
        // row stored with another order than the routing table's): its keys
        // then come in two goes, and a deadlock with another batch, which
        // PostgreSQL breaks by refusing one, sends this batch the ordinary way.
        let callers = || pairs.iter().map(|(order, phone)| (*order, phone.as_str()));
        if locked_early.is_none() || locked_early != calls::lock_callers_sql(callers()) {
            calls::lock_callers_for_leads(txn, callers()).await?;
        }
        let since = drafts.iter().map(|(i, _, _)| at(reports[*i])).min();
        // Newest first; also the batch's memory, so that a caller's second
        // report in this batch finds the lead its first one made.
        let mut known = match since {
            Some(since) if !pairs.is_empty() => {
                calls::recent_leads(txn, &pairs, since - window).await?
            }
            Some(_) | None => Vec::new(),
        };
        let mut created = HashSet::new();
        let mut final_state: HashMap<String, lead_entity::Model> = HashMap::new();
        let mut lead_of = HashMap::new();
        for (i, order, draft) in &drafts {
            let report = reports[*i];
            let call = &fresh[&report.key.vapi_call_id];
            let call_at = at(report);
            let order_key = order.to_string();
            let existing = draft.phone.as_ref().and_then(|phone| {
                known
                    .iter()
                    .filter(|l| {
                        l.order_id == order_key
                            && l.phone.as_deref() == Some(phone.as_str())
                            && l.last_call_at >= call_at - window
                    })
                    .max_by_key(|l| l.last_call_at)
            });
            // The id the call row was inserted with, unless a lead has it.
            let new_id = call
                .lead_id
                .as_deref()
                .filter(|id| !known.iter().any(|l| l.id == *id));
            let (lead, new) =
                calls::plan_lead(existing, *order, draft, &call.id, call_at, now, new_id);
            if new {
                created.insert(lead.id.clone());
            }
            match known.iter_mut().find(|l| l.id == lead.id) {
                Some(slot) => *slot = lead.clone(),
                None => known.push(lead.clone()),
            }
            final_state.insert(lead.id.clone(), lead.clone());
            lead_of.insert(*i, lead);
        }
        let (inserts, updates): (Vec<_>, Vec<_>) = final_state
            .into_values()
            .partition(|l| created.contains(&l.id));
        calls::insert_leads(txn, inserts).await?;
        for lead in &updates {
            calls::update_lead_from_call(txn, lead).await?;
        }
        // Only the calls not already stored with their lead's id: a caller
        // who called before, a call known before its report, a lead that
        // could not be planned. For new callers nothing is written again.
        let links: Vec<(String, Option<String>)> = reports
            .iter()
            .enumerate()
            .filter_map(|(i, report)| {
                let call = fresh.get(&report.key.vapi_call_id)?;
                let lead = lead_of.get(&i).map(|lead| lead.id.clone());
                (call.lead_id != lead).then(|| (call.id.clone(), lead))
            })
            .collect();
        calls::set_call_leads(txn, &links).await?;
        let senders: HashMap<OrderId, PhoneNumber> = if lead_of.is_empty() {
            HashMap::new()
        } else {
            numbers::find_by_orders(txn, wanted.iter().copied())
                .await?
                .into_iter()
                .filter_map(|n| Some((n.order_id?, n.number)))
                .collect()
        };

        let mut outbox_rows = Vec::new();
        let mut results = Vec::with_capacity(reports.len());
        for (i, report) in reports.iter().enumerate() {
            let Some(mut call) = fresh.remove(&report.key.vapi_call_id) else {
                results.push((replay_of(txn, &report.key.vapi_call_id).await?, None));
                continue;
            };
            let lead = lead_of.remove(&i);
            // As stored once the links above are written.
            call.lead_id = lead.as_ref().map(|lead| lead.id.clone());
            let order = CallsService::order_of(&call).and_then(|id| orders.get(&id));
            // Exactly one WhatsApp per new report of a known order, committed
            // with it: nothing for replays or orphans.
            let notification = match (&lead, order) {
                (Some(lead), Some(order)) => {
                    let row =
                        self.notifications
                            .plan_call(order, senders.get(&order.id), &call, lead);
                    outbox_rows.push(row.clone().into());
                    Some(row)
                }
                (None, _) | (_, None) => None,
            };
            results.push((
                RecordedReport {
                    call,
                    replay: false,
                    lead,
                },
                notification,
            ));
        }
        outbox::insert_many(txn, outbox_rows).await?;
        Ok(results)
    }

    /// One report's statements, inside the batch's transaction.
    async fn record_report_in(
        &self,
        txn: &impl ConnectionTrait,
        report: &CallReport,
    ) -> Result<(RecordedReport, Option<notification_entity::Model>), ServiceError> {
        let now = crate::domain::now();
        let at = report.started_at.or(report.ended_at).unwrap_or(now);
        let owner = calls::resolve_owner(txn, &report.key, at).await?;
        calls::ensure_call(
            txn,
            &report.key,
            &owner,
            CallStatus::Ended,
            report.started_at,
            now,
        )
        .await?;
        let Some(mut stored) = calls::record_report(txn, report, now).await? else {
            return Ok((replay_of(txn, &report.key.vapi_call_id).await?, None));
        };
        // The row's owner was decided by its first message.
        let order_id = stored
            .order_id
            .as_deref()
            .and_then(|id| OrderId::parse(id).ok());
        let order = match order_id {
            Some(order_id) => orders::find(txn, order_id).await?,
            None => None,
        };
        let lead = match &order {
            Some(order) => {
                let draft = draft_of(report, order);
                if let Some(phone) = &draft.phone {
                    calls::lock_callers_for_leads(txn, [(order.id, phone.as_str())]).await?;
                }
                let lead = calls::upsert_lead(
                    txn,
                    order.id,
                    &draft,
                    &stored.id,
                    at,
                    chrono::Duration::days(LEAD_WINDOW_DAYS),
                    now,
                )
                .await?;
                calls::set_call_lead(txn, &stored.id, &lead.id).await?;
                // What set_call_lead wrote; no need to read the row back.
                stored.lead_id = Some(lead.id.clone());
                Some(lead)
            }
            None => None,
        };
        // Exactly one WhatsApp per new report of a known order, committed
        // with it: nothing for replays (returned above) or orphans.
        let notification = match (&order, &lead) {
            (Some(order), Some(lead)) => Some(
                self.notifications
                    .enqueue_call(txn, order, &stored, lead)
                    .await?,
            ),
            (None, _) | (_, None) => None,
        };
        Ok((
            RecordedReport {
                call: stored,
                replay: false,
                lead,
            },
            notification,
        ))
    }
}

/// A replay, answered with what is stored: the call and its lead.
async fn replay_of(
    txn: &impl ConnectionTrait,
    vapi_call_id: &str,
) -> Result<RecordedReport, ServiceError> {
    let call = calls::find_call(txn, vapi_call_id)
        .await?
        .ok_or_else(|| internal("call row vanished"))?;
    let lead = match &call.lead_id {
        Some(id) => calls::find_lead(txn, id).await?,
        None => None,
    };
    Ok(RecordedReport {
        call,
        replay: true,
        lead,
    })
}

/// The (order, lead phone) pairs of the reports that have an order, as
/// [`ReportCommitter::record_batch_in`] plans their leads, and the earliest
/// of those reports' times.
fn caller_pairs(
    reports: &[&CallReport],
    orders: impl IntoIterator<Item = Option<OrderId>>,
    at: impl Fn(&CallReport) -> chrono::DateTime<chrono::Utc>,
) -> (
    Vec<(OrderId, String)>,
    Option<chrono::DateTime<chrono::Utc>>,
) {
    let mut pairs = Vec::new();
    let mut since = None;
    for (report, order) in reports.iter().zip(orders) {
        let Some(order) = order else { continue };
        let time = at(report);
        since = Some(since.map_or(time, |since: chrono::DateTime<chrono::Utc>| since.min(time)));
        let phone = lead::caller_phone(&LeadInput {
            structured: report.structured_data.as_ref(),
            summary: report.summary.as_deref(),
            transcript: report.transcript.as_deref(),
            caller: report.key.caller.number(),
            zones: &[],
        });
        if let Some(phone) = phone {
            pairs.push((order, phone.as_str().to_owned()));
        }
    }
    (pairs, since)
}

/// What the report says about its caller, for `order`'s lead.
fn draft_of(report: &CallReport, order: &Order) -> lead::LeadDraft {
    lead::extract(&LeadInput {
        structured: report.structured_data.as_ref(),
        summary: report.summary.as_deref(),
        transcript: report.transcript.as_deref(),
        caller: report.key.caller.number(),
        zones: &order.zones,
    })
}

fn log_report(recorded: &RecordedReport, notification: Option<&notification_entity::Model>) {
    let vapi_call_id = &recorded.call.vapi_call_id;
    if recorded.replay {
        info!(%vapi_call_id, "end-of-call report replayed: nothing changed");
        return;
    }
    if recorded.call.order_id.is_none() {
        warn!(
            %vapi_call_id,
            reason = recorded.call.orphan_reason.as_deref().unwrap_or("unknown"),
            "orphan call: no order owns it"
        );
    }
    info!(
        %vapi_call_id,
        order_id = recorded.call.order_id.as_deref().unwrap_or("-"),
        notification_id = notification.map_or("-", |n| n.id.as_str()),
        notification_status = notification.map_or("-", |n| n.status.as_str()),
        "end-of-call report recorded"
    );
}

fn shutting_down() -> ServiceError {
    ServiceError::Unavailable {
        reason: "SHUTTING_DOWN",
        message: "the service is stopping; send the report again".to_owned(),
    }
}

fn commit_failed(err: &crate::store::StoreError) -> ServiceError {
    ServiceError::Unavailable {
        reason: "COMMIT_FAILED",
        message: format!("the report was not stored ({err}); send it again"),
    }
}

fn internal(what: &str) -> ServiceError {
    ServiceError::Store(crate::store::StoreError::Corrupt {
        table: "calls",
        id: String::new(),
        reason: what.to_owned(),
    })
}
