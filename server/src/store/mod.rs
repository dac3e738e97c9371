//! The store: SeaORM over SQLite (default, WAL) or PostgreSQL.
//!
//! Query helpers take `&impl ConnectionTrait` so that services can run several
//! of them in one transaction.

pub mod calls;
pub mod entities;
pub mod notifications;
pub mod numbers;
pub mod orders;
pub mod pipeline;
pub mod routing;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use tokio::sync::{Mutex, MutexGuard};

use centralino_migrations::{Migrator, MigratorTrait};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr};

/// What can go wrong below the services.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] DbErr),
    #[error("stored {table} row {id} is unreadable: {reason}")]
    Corrupt {
        table: &'static str,
        id: String,
        reason: String,
    },
}

impl StoreError {
    /// PostgreSQL answered a statement with an error: the transaction did
    /// not commit (unlike a connection lost on the way, whose outcome is
    /// unknown).
    pub fn is_refused_statement(&self) -> bool {
        matches!(self, StoreError::Db(DbErr::Query(sea_orm::RuntimeErr::SqlxError(err)))
            if matches!(**err, sea_orm::sqlx::Error::Database(_)))
    }

    /// PostgreSQL refused a text value it cannot store: a NUL character
    /// (SQLSTATE 22021). Bad input, not a fault of the service.
    pub fn is_unstorable_text(&self) -> bool {
        let StoreError::Db(DbErr::Query(runtime) | DbErr::Exec(runtime)) = self else {
            return false;
        };
        let sea_orm::RuntimeErr::SqlxError(err) = runtime else {
            return false;
        };
        matches!(&**err, sea_orm::sqlx::Error::Database(db) if db.code().as_deref() == Some("22021"))
    }

    /// Connection-level trouble that a retry may cure (the database restarting,
    /// the pool exhausted), as opposed to a bug or bad data.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Db(err) => matches!(err, DbErr::ConnectionAcquire(_) | DbErr::Conn(_)),
            StoreError::Corrupt { .. } => false,
        }
    }
}

/// A handle on the database; cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    db: DatabaseConnection,
    /// SQLite allows one writer at a time; concurrent writers otherwise spin
    /// on SQLITE_BUSY with growing sleeps (p99 of 80 ms at 16 writers).
    /// Queueing them here is fair and cheap. PostgreSQL needs none.
    sqlite_writer: Option<Arc<Mutex<()>>>,
    /// Set when routing (numbers, orders) may have changed, here or in
    /// another process: the in-memory routing table reloads before its next
    /// answer.
    routing_dirty: Arc<AtomicBool>,
    /// How to open another pool on the same database ([`Store::dedicated`]).
    url: Arc<str>,
    log_sql: bool,
    /// Whether sqlx logs this pool's statements: then they must keep their
    /// values apart (no `pipeline`, which inlines them).
    sqlx_logs: bool,
}

impl Store {
    /// Connects; a SQLite file is created if missing and switched to WAL.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        Self::connect_with(url, max_connections, false).await
    }

    /// As [`Store::connect`]; `log_sql` logs each statement's text (sqlx binds
    /// values separately and never logs them).
    pub async fn connect_with(
        url: &str,
        max_connections: u32,
        log_sql: bool,
    ) -> Result<Self, StoreError> {
        let db = Self::open(url, max_connections, log_sql).await?;
        let sqlite_writer =
            (db.get_database_backend() == DbBackend::Sqlite).then(|| Arc::new(Mutex::new(())));
        Ok(Self {
            db,
            sqlite_writer,
            routing_dirty: Arc::new(AtomicBool::new(true)),
            url: url.into(),
            log_sql,
            sqlx_logs: log_sql,
        })
    }

    /// The same database through a pool of its own, opened on the calling
    /// runtime: its connections wake that runtime's tasks directly. sqlx
    /// does not log its statements (`pipeline` logs their templates when
    /// `log_sql` is on). SQLite (one writer, maybe in memory) shares this
    /// store's pool instead.
    pub async fn dedicated(&self, max_connections: u32) -> Result<Self, StoreError> {
        if self.db.get_database_backend() != DbBackend::Postgres {
            return Ok(self.clone());
        }
        let db = Self::open(&self.url, max_connections, false).await?;
        Ok(Self {
            db,
            sqlx_logs: false,
            ..self.clone()
        })
    }

    async fn open(
        url: &str,
        max_connections: u32,
        log_sql: bool,
    ) -> Result<DatabaseConnection, StoreError> {
        let mut options = ConnectOptions::new(url.to_owned());
        options
            .max_connections(max_connections)
            .min_connections(1)
            .connect_timeout(Duration::from_secs(10))
            .acquire_timeout(Duration::from_secs(10))
            // The default pings on every checkout: one more round trip per
            // transaction (a report is 12). Only a connection idle for a
            // second may have been dropped by the server or a proxy; one in
            // steady use would fail its statement either way.
            .test_before_acquire_if_idle_for(Duration::from_secs(1))
            // Off by default: a line per statement is noise at 3 a.m.
            .sqlx_logging(log_sql);
        let db = Database::connect(options).await?;
        if db.get_database_backend() == DbBackend::Sqlite && !url.contains(":memory:") {
            // WAL lets readers run beside the writer; the mode is stored in the file.
            db.execute_unprepared("PRAGMA journal_mode=WAL").await?;
        }
        Ok(db)
    }

    /// Hold the returned guard across a write (statement or transaction).
    pub async fn write_turn(&self) -> Option<MutexGuard<'_, ()>> {
        match &self.sqlite_writer {
            Some(lock) => Some(lock.lock().await),
            None => None,
        }
    }

    /// Records a change that may move routing: bumps the shared epoch (other
    /// processes reload) and marks this process's table stale. Call it with
    /// the write turn held, right after the change.
    pub async fn routing_changed(&self) -> Result<(), StoreError> {
        self.routing_dirty.store(true, Ordering::SeqCst);
        routing::bump(&self.db).await
    }

    /// Marks the routing table stale (another process moved the epoch).
    pub fn mark_routing_stale(&self) {
        self.routing_dirty.store(true, Ordering::SeqCst);
    }

    /// Whether the routing table must reload; clears the mark.
    pub fn take_routing_stale(&self) -> bool {
        self.routing_dirty.swap(false, Ordering::SeqCst)
    }

    pub fn backend_name(&self) -> &'static str {
        match self.db.get_database_backend() {
            DbBackend::Sqlite => "sqlite",
            DbBackend::Postgres => "postgresql",
            DbBackend::MySql => "mysql",
            _ => "other",
        }
    }

    /// Applies pending migrations; returns how many ran.
    pub async fn migrate(&self) -> Result<usize, StoreError> {
        let pending = Migrator::get_pending_migrations(&self.db).await?.len();
        Migrator::up(&self.db, None).await?;
        Ok(pending)
    }

    /// A round trip to the database, for readiness.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.db.ping().await.map_err(StoreError::from)
    }

    pub fn conn(&self) -> &DatabaseConnection {
        &self.db
    }

    pub async fn close(self) -> Result<(), StoreError> {
        self.db.close().await.map_err(StoreError::from)
    }
}
