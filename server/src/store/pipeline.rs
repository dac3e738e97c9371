//! PostgreSQL transactions whose writes travel with the next statement.
//!
//! Most of a report's statements are writes whose answer nobody reads (the
//! lead lock, the lead rows, the outbox row, `pg_notify`). Sent one by one,
//! each costs a network round trip (about 80 µs on loopback with TLS here,
//! more than PostgreSQL spends running it). A [`Pipelined`] transaction
//! queues them and sends them, in order, in one simple-protocol message
//! together with the next statement whose rows are needed, or with
//! `COMMIT`. PostgreSQL runs the message's statements one after the other,
//! exactly as if they had come apart.
//!
//! The simple protocol takes no bind parameters, and parsing and planning
//! every statement again would cost more than the round trips saved. So a
//! [`Session`] keeps one connection and prepares each statement template
//! once on it (`PREPARE`); a transaction then sends `EXECUTE name(values)`,
//! the values written as literals. Statements are logged (with
//! `CENTRALINO_LOG_SQL`) as their templates, never with their values.
//! On any error the transaction is rolled back (or its connection closed)
//! and nothing is left behind: the caller may do its work the ordinary way.

use std::collections::HashMap;

use sea_orm::{
    ConnectionTrait, DbBackend, DbErr, ExecResult, QueryResult, Statement, Value,
    sea_query::{PostgresQueryBuilder, QueryBuilder},
    sqlx::{
        self, Either,
        pool::PoolConnection,
        postgres::{PgQueryResult, Postgres},
    },
};
use tokio::sync::Mutex;
use tokio_stream::StreamExt;

use super::{Store, StoreError};

/// Prepared templates kept per connection at most; past it they are all
/// dropped and prepared again as needed (batch sizes make templates vary).
const PREPARED_MAX: usize = 2048;

/// One connection kept across transactions, with the templates prepared on
/// it. Owned by one task (a report committer).
pub struct Session {
    store: Store,
    conn: Option<PoolConnection<Postgres>>,
    /// Template text -> prepared statement name, on `conn`.
    prepared: HashMap<String, String>,
    prepared_max: usize,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("prepared", &self.prepared.len())
            .finish()
    }
}

impl Session {
    /// A session on the store's pool, or `None` where pipelining is not
    /// possible: not PostgreSQL, or a pool whose statements sqlx logs (it
    /// would log the values written into the text).
    pub fn new(store: &Store) -> Option<Self> {
        Self::with_prepared_max(store, PREPARED_MAX)
    }

    /// As [`Session::new`], keeping at most `prepared_max` templates.
    pub fn with_prepared_max(store: &Store, prepared_max: usize) -> Option<Self> {
        (store.conn().get_database_backend() == DbBackend::Postgres && !store.sqlx_logs).then(
            || Self {
                store: store.clone(),
                conn: None,
                prepared: HashMap::new(),
                prepared_max,
            },
        )
    }

    /// Opens a transaction (`BEGIN` goes with the first statement).
    pub async fn begin(&mut self) -> Result<Pipelined<'_>, StoreError> {
        if self.conn.is_none() {
            let conn = self
                .store
                .conn()
                .get_postgres_connection_pool()
                .acquire()
                .await
                .map_err(|err| StoreError::Db(DbErr::Conn(sql_error(err))))?;
            self.conn = Some(conn);
            self.prepared.clear();
        }
        let deallocate = self.prepared.len() > self.prepared_max;
        if deallocate {
            self.prepared.clear();
        }
        let mut txn = Inner::new(self);
        if deallocate {
            // Sent with the transaction's first statement, before BEGIN.
            txn.queue_sql("DEALLOCATE ALL");
        }
        txn.queue_sql("BEGIN");
        Ok(Pipelined {
            inner: Mutex::new(txn),
        })
    }
}

/// An open transaction of a [`Session`].
pub struct Pipelined<'a> {
    inner: Mutex<Inner<'a>>,
}

struct Inner<'a> {
    session: &'a mut Session,
    /// Statements for the next round trip, each ending with `;`.
    queued: String,
    /// Names prepared by the queued statements: known once they ran.
    preparing: Vec<(String, String)>,
    /// Per queued statement, in order: where its rows go.
    slots: Vec<Slot>,
    /// Reads queued ahead ([`Prefetch::prefetch`]) and, once sent, their rows.
    prefetched: Vec<Prefetched>,
    /// To queue right behind the next statement whose rows are asked for
    /// ([`Prefetch::send_behind_next_query`]).
    behind: Vec<Behind>,
    /// Between `BEGIN` (queued) and `COMMIT`/`ROLLBACK` (answered).
    open: bool,
    round_trip: u32,
}

impl Drop for Inner<'_> {
    fn drop(&mut self) {
        // Dropped mid-transaction (an error, a cancelled task): the
        // connection must not go back to the pool inside it.
        if self.open {
            self.session.forget_connection();
        }
    }
}

impl Session {
    fn forget_connection(&mut self) {
        if let Some(mut conn) = self.conn.take() {
            conn.close_on_drop();
        }
        self.prepared.clear();
    }
}

impl std::fmt::Debug for Pipelined<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pipelined")
    }
}

impl Pipelined<'_> {
    /// Sends what is queued with `COMMIT`; durable when this returns `Ok`.
    pub async fn commit(self) -> Result<(), StoreError> {
        let mut inner = self.inner.lock().await;
        inner.queue_sql("COMMIT");
        match inner.round_trip_with(None).await {
            Ok(_) => {
                inner.open = false;
                Ok(())
            }
            Err(err) => {
                inner.abort().await;
                Err(StoreError::Db(err))
            }
        }
    }

    /// Round trips made so far (the one `commit` makes not counted).
    pub async fn round_trips(&self) -> u32 {
        self.inner.lock().await.round_trip
    }

    /// Drops what is queued and rolls back.
    pub async fn rollback(self) {
        self.inner.lock().await.abort().await;
    }
}

fn sql_error(err: sqlx::Error) -> sea_orm::RuntimeErr {
    sea_orm::RuntimeErr::SqlxError(std::sync::Arc::new(err))
}

struct Prefetched {
    statement: Statement,
    /// Set once the round trip that carried it is answered.
    rows: Option<Vec<QueryResult>>,
    /// Handed over to the statement that asked for it.
    taken: bool,
}

/// A statement waiting to go behind the next query.
enum Behind {
    Sql(String),
    Read(Statement),
}

/// Where a queued statement's rows go.
#[derive(Clone, Copy, PartialEq)]
enum Slot {
    Dropped,
    /// `prefetched[i]`.
    Prefetch(usize),
    /// Returned by the round trip.
    Returned,
}

impl<'a> Inner<'a> {
    fn new(session: &'a mut Session) -> Self {
        Self {
            session,
            queued: String::new(),
            preparing: Vec::new(),
            slots: Vec::new(),
            prefetched: Vec::new(),
            behind: Vec::new(),
            open: true,
            round_trip: 0,
        }
    }

    fn queue_sql(&mut self, sql: &str) {
        self.log(sql);
        self.queued.push_str(sql);
        self.queued.push_str(";\n");
        self.slots.push(Slot::Dropped);
    }

    /// Queues a read asked for later (once, however often it is hinted).
    fn queue_prefetch(&mut self, statement: Statement) -> Result<(), DbErr> {
        if self
            .prefetched
            .iter()
            .any(|p| !p.taken && p.statement == statement)
        {
            return Ok(());
        }
        let slot = Slot::Prefetch(self.prefetched.len());
        self.queue(&statement, slot)?;
        self.prefetched.push(Prefetched {
            statement,
            rows: None,
            taken: false,
        });
        Ok(())
    }

    /// Queues `EXECUTE` of the statement's template (prepared first if this
    /// connection has not yet), its values written as literals.
    fn queue(&mut self, statement: &Statement, slot: Slot) -> Result<(), DbErr> {
        use std::fmt::Write;
        let values = statement.values.as_ref().map_or(&[][..], |v| &v.0[..]);
        let columnar = columnar(&statement.sql, values)?;
        let template = columnar
            .as_ref()
            .map_or(statement.sql.as_str(), |(template, _)| template.as_str());
        self.log(template);
        let known = self
            .session
            .prepared
            .get(template)
            .or_else(|| {
                self.preparing
                    .iter()
                    .find(|(sql, _)| sql == template)
                    .map(|(_, name)| name)
            })
            .cloned();
        let name = match known {
            Some(name) => name,
            None => {
                let name = format!(
                    "centralino_{}",
                    self.session.prepared.len() + self.preparing.len()
                );
                // The template's text has no values: nothing to escape.
                writeln!(self.queued, "PREPARE {name} AS {template};")
                    .map_err(|err| DbErr::Custom(err.to_string()))?;
                self.slots.push(Slot::Dropped);
                self.preparing.push((template.to_owned(), name.clone()));
                name
            }
        };
        self.queued.push_str("EXECUTE ");
        self.queued.push_str(&name);
        match &columnar {
            Some((_, arrays)) => {
                write_arguments(&mut self.queued, arrays, |out, a| write_text(out, a))?
            }
            None => write_arguments(&mut self.queued, values, write_literal)?,
        }
        self.queued.push_str(";\n");
        self.slots.push(slot);
        Ok(())
    }

    fn log(&self, template: &str) {
        if self.session.store.log_sql {
            tracing::info!(
                target: "centralino::sql",
                statement = template,
                round_trip = self.round_trip,
                "statement queued"
            );
        }
    }

    /// One round trip: the queued statements, then `last` (if any), whose
    /// rows are returned; prefetched reads keep theirs.
    async fn round_trip_with(
        &mut self,
        last: Option<&Statement>,
    ) -> Result<Vec<QueryResult>, DbErr> {
        if let Some(statement) = last {
            self.queue(statement, Slot::Returned)?;
            for behind in std::mem::take(&mut self.behind) {
                match behind {
                    Behind::Sql(sql) => self.queue_sql(&sql),
                    Behind::Read(read) => self.queue_prefetch(read)?,
                }
            }
        }
        let sql = std::mem::take(&mut self.queued);
        let slots = std::mem::take(&mut self.slots);
        self.round_trip += 1;
        let Some(conn) = self.session.conn.as_mut() else {
            return Err(DbErr::Custom("the session has no connection".into()));
        };
        let mut returned = Vec::new();
        let mut fetched: Vec<QueryResult> = Vec::new();
        // Rows come statement after statement, each closed by its result.
        let mut current = 0;
        let mut results = sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).fetch_many(&mut **conn);
        while let Some(item) = results.next().await {
            let item = item.map_err(|err| {
                // PostgreSQL refused a statement; anything else (the
                // connection) leaves the outcome unknown.
                if matches!(err, sqlx::Error::Database(_)) {
                    DbErr::Query(sql_error(err))
                } else {
                    DbErr::Conn(sql_error(err))
                }
            })?;
            match item {
                Either::Left(_) => {
                    if let Some(Slot::Prefetch(i)) = slots.get(current) {
                        let rows = std::mem::take(&mut fetched);
                        if let Some(prefetched) = self.prefetched.get_mut(*i) {
                            prefetched.rows = Some(rows);
                        }
                    }
                    current += 1;
                }
                Either::Right(row) => match slots.get(current) {
                    Some(Slot::Returned) => returned.push(QueryResult::from(row)),
                    Some(Slot::Prefetch(_)) => fetched.push(QueryResult::from(row)),
                    Some(Slot::Dropped) | None => {}
                },
            }
        }
        drop(results);
        // PREPARE is not transactional: what ran is prepared for good.
        self.session.prepared.extend(self.preparing.drain(..));
        Ok(returned)
    }

    /// The rows of `statement`: from a prefetch if one matches (sent now if
    /// it still waits), else from a round trip of its own.
    async fn query(&mut self, statement: &Statement) -> Result<Vec<QueryResult>, DbErr> {
        let Some(i) = self
            .prefetched
            .iter()
            .position(|p| !p.taken && p.statement == *statement)
        else {
            return self.round_trip_with(Some(statement)).await;
        };
        if self.prefetched[i].rows.is_none() {
            self.round_trip_with(None).await?;
        }
        // Kept in place (slots point into `prefetched` by index), emptied.
        let prefetched = &mut self.prefetched[i];
        prefetched.taken = true;
        Ok(prefetched.rows.take().unwrap_or_default())
    }

    async fn abort(&mut self) {
        self.queued.clear();
        // A PREPARE of the failed message may or may not have run: the
        // session cannot tell, so it starts over on a fresh connection.
        let unsure = !self.preparing.is_empty();
        self.preparing.clear();
        if !self.open {
            return;
        }
        // In an aborted transaction only ROLLBACK is accepted; if even that
        // fails the connection is closed (see `Drop`).
        let rolled_back = match self.session.conn.as_mut() {
            Some(conn) => sqlx::raw_sql("ROLLBACK").execute(&mut **conn).await.is_ok(),
            None => false,
        };
        if rolled_back {
            self.open = false;
        }
        if unsure {
            self.session.forget_connection();
            self.open = false;
        }
    }
}

/// A time as PostgreSQL reads it, to the microsecond it keeps. RFC 3339 by
/// hand: sea-query's `format` parses its pattern on every value, a
/// measurable share of a batch's CPU.
fn time_text(at: &chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// `(a, b, …)` of `EXECUTE`, each item written by `write`; nothing when
/// there are none.
fn write_arguments<T>(
    out: &mut String,
    items: &[T],
    write: impl Fn(&mut String, &T) -> Result<(), DbErr>,
) -> Result<(), DbErr> {
    if items.is_empty() {
        return Ok(());
    }
    out.push('(');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write(out, item)?;
    }
    out.push(')');
    Ok(())
}

/// A value as a PostgreSQL literal. Text is written as an escape string in
/// which only `\` and `'` need escaping, whatever
/// `standard_conforming_strings` says; PostgreSQL text cannot hold NUL.
fn write_literal(out: &mut String, value: &Value) -> Result<(), DbErr> {
    if let Value::String(Some(text)) = value {
        return write_text(out, text);
    }
    if let Value::Json(Some(json)) = value {
        return write_text(out, &json.to_string());
    }
    if let Value::ChronoDateTimeUtc(Some(at)) = value {
        out.push('\'');
        out.push_str(&time_text(at));
        out.push('\'');
        return Ok(());
    }
    if matches!(value, Value::Char(_) | Value::Bytes(_) | Value::Enum(_)) {
        // Not used by the store; written by sea-query in forms not checked here.
        return Err(DbErr::Custom(
            "no literal for a char, bytes or enum value".into(),
        ));
    }
    // Numbers, booleans, times, ids, NULLs: no quotes to escape.
    PostgresQueryBuilder
        .write_value(out, value)
        .map_err(|err| DbErr::Custom(err.to_string()))
}

fn write_text(out: &mut String, text: &str) -> Result<(), DbErr> {
    if text.contains('\0') {
        return Err(DbErr::Custom("text with a NUL character".into()));
    }
    out.push_str("E'");
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("''"),
            c => out.push(c),
        }
    }
    out.push('\'');
    Ok(())
}

/// A multi-row `INSERT … VALUES ($1, …), ($k+1, …) [tail]` as sea-query
/// writes it, turned into `INSERT … SELECT * FROM unnest($1::type[], …)
/// [tail]` with one array per column: `None` when the statement is not of
/// that form (one row, other expressions, a value with no array form here).
///
/// Why: `EXECUTE` parses, coerces and evaluates each literal it is given as
/// an expression; a batch of 32 rows of 25 columns is 800 of them, about a
/// sixth of PostgreSQL's CPU per report at concurrency 64. As arrays they
/// are one literal per column, and the template no longer depends on the
/// batch's size (one `PREPARE` per statement, not one per size). Rows keep
/// their order.
fn columnar(sql: &str, values: &[Value]) -> Result<Option<(String, Vec<String>)>, DbErr> {
    use std::fmt::Write;
    const VALUES: &str = " VALUES (";
    // Every queued statement passes here: most are not inserts.
    if !sql.starts_with("INSERT INTO ") {
        return Ok(None);
    }
    let Some(at) = sql.find(VALUES) else {
        return Ok(None);
    };
    // Rows of `$n` placeholders, numbered in order from 1.
    let mut rest = &sql[at + VALUES.len() - 1..];
    let mut next = 1usize;
    let mut width = None;
    let mut rows = 0usize;
    loop {
        let Some(inner) = rest.strip_prefix('(') else {
            return Ok(None);
        };
        let Some(close) = inner.find(')') else {
            return Ok(None);
        };
        let mut columns = 0usize;
        for placeholder in inner[..close].split(", ") {
            let number = placeholder
                .strip_prefix('$')
                .and_then(|n| n.parse::<usize>().ok());
            if number != Some(next) {
                return Ok(None);
            }
            next += 1;
            columns += 1;
        }
        if *width.get_or_insert(columns) != columns {
            return Ok(None);
        }
        rows += 1;
        rest = &inner[close + 1..];
        match rest.strip_prefix(", ").filter(|more| more.starts_with('(')) {
            Some(more) => rest = more,
            None => break,
        }
    }
    let width = width.unwrap_or(0);
    if rows < 2 || width == 0 || values.len() != rows * width {
        return Ok(None);
    }
    let mut template = String::with_capacity(at + rest.len() + width * 16);
    template.push_str(&sql[..at]);
    template.push_str(" SELECT * FROM unnest(");
    let mut arrays = Vec::with_capacity(width);
    for column in 0..width {
        let cells = || values.iter().skip(column).step_by(width);
        let Some(kind) = array_type(&values[column]) else {
            return Ok(None);
        };
        if cells().any(|cell| array_type(cell) != Some(kind)) {
            return Ok(None);
        }
        let mut array = String::with_capacity(rows * 16);
        array.push('{');
        for (i, cell) in cells().enumerate() {
            if i > 0 {
                array.push(',');
            }
            if !write_element(&mut array, cell)? {
                return Ok(None);
            }
        }
        array.push('}');
        if column > 0 {
            template.push_str(", ");
        }
        write!(template, "${}::{kind}[]", column + 1)
            .map_err(|err| DbErr::Custom(err.to_string()))?;
        arrays.push(array);
    }
    template.push(')');
    template.push_str(rest);
    Ok(Some((template, arrays)))
}

/// The PostgreSQL element type of an array of such values, if written here.
fn array_type(value: &Value) -> Option<&'static str> {
    let kinds: [(bool, &'static str); 8] = [
        (matches!(value, Value::Bool(_)), "bool"),
        (
            matches!(value, Value::TinyInt(_) | Value::SmallInt(_)),
            "int2",
        ),
        (matches!(value, Value::Int(_)), "int4"),
        (matches!(value, Value::BigInt(_)), "int8"),
        (matches!(value, Value::Float(_)), "float4"),
        (matches!(value, Value::Double(_)), "float8"),
        (matches!(value, Value::String(_)), "text"),
        (matches!(value, Value::ChronoDateTimeUtc(_)), "timestamptz"),
    ];
    kinds.iter().find(|(is, _)| *is).map(|(_, kind)| *kind)
}

/// One element of an array literal (`NULL`, or a double-quoted string with
/// `\` and `"` escaped); `false` for a value with no exact text form here.
fn write_element(out: &mut String, value: &Value) -> Result<bool, DbErr> {
    use std::fmt::Write;
    let text = if *value == value.as_null() {
        out.push_str("NULL");
        return Ok(true);
    } else if let Value::String(Some(text)) = value {
        if text.contains('\0') {
            return Err(DbErr::Custom("text with a NUL character".into()));
        }
        std::borrow::Cow::Borrowed(text.as_str())
    } else if let Value::ChronoDateTimeUtc(Some(at)) = value {
        time_text(at).into()
    } else {
        let mut text = String::new();
        let written = if let Value::Bool(Some(b)) = value {
            text.push(if *b { 't' } else { 'f' });
            Ok(())
        } else if let Value::TinyInt(Some(n)) = value {
            write!(text, "{n}")
        } else if let Value::SmallInt(Some(n)) = value {
            write!(text, "{n}")
        } else if let Value::Int(Some(n)) = value {
            write!(text, "{n}")
        } else if let Value::BigInt(Some(n)) = value {
            write!(text, "{n}")
        // Rust writes the shortest text that reads back as the same value.
        } else if let Value::Float(Some(f)) = value
            && f.is_finite()
        {
            write!(text, "{f}")
        } else if let Value::Double(Some(f)) = value
            && f.is_finite()
        {
            write!(text, "{f}")
        } else {
            return Ok(false);
        };
        written.map_err(|err| DbErr::Custom(err.to_string()))?;
        text.into()
    };
    out.push('"');
    for c in text.chars() {
        if c == '\\' || c == '"' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    Ok(true)
}

#[async_trait::async_trait]
impl ConnectionTrait for Pipelined<'_> {
    fn get_database_backend(&self) -> DbBackend {
        DbBackend::Postgres
    }

    /// Queued: the answer (rows affected) is not known yet and reads as 0.
    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        self.inner.lock().await.queue(&stmt, Slot::Dropped)?;
        Ok(PgQueryResult::default().into())
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        self.inner.lock().await.queue_sql(sql);
        Ok(PgQueryResult::default().into())
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        Ok(self.query_all_raw(stmt).await?.into_iter().next())
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        self.inner.lock().await.query(&stmt).await
    }
}

/// Reads a transaction may send ahead of the statement that wants them.
#[async_trait::async_trait]
pub trait Prefetch: ConnectionTrait {
    /// A hint: `statement` (a read) will be asked for later in this
    /// transaction; it may run now, with the next round trip. Nothing on an
    /// ordinary transaction.
    async fn prefetch(&self, _statement: Statement) -> Result<(), DbErr> {
        Ok(())
    }

    /// A hint: `sql` (whose answer is not read) and then `read` (a read
    /// asked for later) may run right behind the next statement whose rows
    /// are asked for, in its round trip, so that they keep their place
    /// after it (a lock taken after that statement's). `true` if they
    /// will; `false` on an ordinary transaction, where the caller runs
    /// them in turn itself.
    async fn send_behind_next_query(
        &self,
        _sql: Option<String>,
        _read: Option<Statement>,
    ) -> Result<bool, DbErr> {
        Ok(false)
    }
}

impl Prefetch for sea_orm::DatabaseTransaction {}

#[async_trait::async_trait]
impl Prefetch for Pipelined<'_> {
    async fn prefetch(&self, statement: Statement) -> Result<(), DbErr> {
        self.inner.lock().await.queue_prefetch(statement)
    }

    async fn send_behind_next_query(
        &self,
        sql: Option<String>,
        read: Option<Statement>,
    ) -> Result<bool, DbErr> {
        let mut inner = self.inner.lock().await;
        inner.behind.extend(sql.map(Behind::Sql));
        inner.behind.extend(read.map(Behind::Read));
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ints(n: i32) -> Vec<Value> {
        (1..=n).map(|i| Value::Int(Some(i))).collect()
    }

    #[test]
    fn a_multi_row_insert_becomes_one_array_per_column_and_keeps_its_tail() {
        let sql = r#"INSERT INTO "t" ("a", "b") VALUES ($1, $2), ($3, $4), ($5, $6) ON CONFLICT ("a") DO NOTHING RETURNING *"#;
        let mut values = ints(6);
        values[1] = Value::String(Some(r#"say "hi" \ {x}, y"#.into()));
        values[3] = Value::String(None);
        values[5] = Value::String(Some("NULL".into()));
        let (template, arrays) = columnar(sql, &values).unwrap().expect("columnar");
        assert_eq!(
            template,
            r#"INSERT INTO "t" ("a", "b") SELECT * FROM unnest($1::int4[], $2::text[]) ON CONFLICT ("a") DO NOTHING RETURNING *"#
        );
        assert_eq!(
            arrays,
            [
                r#"{"1","3","5"}"#.to_owned(),
                r#"{"say \"hi\" \\ {x}, y",NULL,"NULL"}"#.to_owned(),
            ]
        );
    }

    #[test]
    fn statements_of_other_shapes_are_left_as_they_are() {
        let two_rows = r#"INSERT INTO "t" ("a", "b") VALUES ($1, $2), ($3, $4)"#;
        assert!(columnar(two_rows, &ints(4)).unwrap().is_some());
        for (sql, values) in [
            // One row: nothing to gain.
            (r#"INSERT INTO "t" ("a", "b") VALUES ($1, $2)"#, ints(2)),
            // Not numbered in order, or not placeholders only.
            (
                r#"INSERT INTO "t" ("a", "b") VALUES ($1, $2), ($4, $3)"#,
                ints(4),
            ),
            (
                r#"INSERT INTO "t" ("a", "b") VALUES ($1, now()), ($2, now())"#,
                ints(2),
            ),
            // Rows of different widths, values left over, not an insert.
            (
                r#"INSERT INTO "t" ("a", "b") VALUES ($1, $2), ($3)"#,
                ints(3),
            ),
            (two_rows, ints(5)),
            (
                r#"UPDATE "t" SET "a" = $1 WHERE "b" IN (SELECT 1 VALUES ($2))"#,
                ints(2),
            ),
        ] {
            assert!(columnar(sql, &values).unwrap().is_none(), "{sql}");
        }
        // A column mixing types, or a value with no array form here.
        let mut mixed = ints(4);
        mixed[2] = Value::BigInt(Some(3));
        assert!(columnar(two_rows, &mixed).unwrap().is_none());
        let mut infinite = ints(4);
        infinite[1] = Value::Double(Some(f64::INFINITY));
        infinite[3] = Value::Double(Some(1.0));
        assert!(columnar(two_rows, &infinite).unwrap().is_none());
    }

    #[test]
    fn text_holding_a_nul_is_refused_in_an_array_too() {
        let sql = r#"INSERT INTO "t" ("a") VALUES ($1), ($2)"#;
        let values = [
            Value::String(Some("a\0b".into())),
            Value::String(Some("c".into())),
        ];
        assert!(columnar(sql, &values).is_err());
    }
}
