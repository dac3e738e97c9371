//! Pipelined PostgreSQL transactions (`store::pipeline`): values written as
//! literals come back exactly, a refused statement leaves nothing behind,
//! prefetched reads get their own rows, templates are prepared once per
//! connection. PostgreSQL only: SQLite has no round trips to save.

use centralino_server::store::{
    Store,
    pipeline::{Prefetch, Session},
};
use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbBackend, Statement, TransactionTrait, Value};

use crate::helpers::{TestDb, reason};

/// A store on a fresh PostgreSQL database with a scratch table, or `None`
/// (and a line saying so) on SQLite.
async fn postgres_store(test: &str) -> Option<(TestDb, Store)> {
    let db = TestDb::new().await;
    if !db.url.starts_with("postgres") {
        // Straight to stderr: the harness captures eprintln! of passing tests.
        use std::io::Write;
        writeln!(
            std::io::stderr(),
            "{test}: skipped, needs TEST_DATABASE_URL (PostgreSQL): pipelining is PostgreSQL's"
        )
        .ok();
        return None;
    }
    let store = Store::connect(&db.url, 3).await.expect("store");
    store
        .conn()
        .execute_unprepared(
            "CREATE TABLE notes (id integer PRIMARY KEY, body text, extra jsonb, at timestamptz, score double precision, flag boolean)",
        )
        .await
        .expect("scratch table");
    Some((db, store))
}

fn insert(id: i32, body: &str) -> Statement {
    Statement::from_sql_and_values(
        DbBackend::Postgres,
        "INSERT INTO notes (id, body) VALUES ($1, $2)",
        [id.into(), body.into()],
    )
}

fn body_of(id: i32) -> Statement {
    Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT body FROM notes WHERE id = $1",
        [id.into()],
    )
}

/// The `body` column of rows read back.
fn body(rows: &[sea_orm::QueryResult]) -> Vec<String> {
    rows.iter()
        .map(|r| r.try_get::<String>("", "body").unwrap())
        .collect()
}

async fn bodies(store: &Store) -> Vec<(i32, String)> {
    store
        .conn()
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT id, body FROM notes ORDER BY id",
        ))
        .await
        .expect("read notes")
        .iter()
        .map(|row| {
            (
                row.try_get::<i32>("", "id").unwrap(),
                row.try_get::<String>("", "body").unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn text_written_as_literals_comes_back_exactly_as_given() {
    let Some((db, store)) =
        postgres_store("text_written_as_literals_comes_back_exactly_as_given").await
    else {
        return;
    };
    let tricky = [
        "l'agenzia dell'Isola",
        "C:\\percorso\\file",
        "\\' OR 1=1; --",
        "'); DROP TABLE notes; --",
        "E'ciao'",
        "$1 e $$dollari$$",
        "riga uno\nriga due\r\n\ttab",
        "controllo \u{1a} \u{8} \u{7f}",
        "perché costa 250.000 € 🏠",
        "",
    ];
    let mut session = Session::new(&store).expect("a session on PostgreSQL");
    let txn = session.begin().await.expect("begin");
    for (i, text) in tricky.iter().enumerate() {
        txn.execute_raw(insert(i as i32, text))
            .await
            .expect("queued");
    }
    txn.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "UPDATE notes SET extra = $1 WHERE id = 0",
        [Value::Json(Some(Box::new(
            serde_json::json!({"nome": "D'Angelo \"Nino\"", "note": "a\\b"}),
        )))],
    ))
    .await
    .expect("queued");
    txn.commit().await.expect("commit");

    let stored = bodies(&store).await;
    let want: Vec<(i32, String)> = tricky
        .iter()
        .enumerate()
        .map(|(i, t)| (i as i32, (*t).to_owned()))
        .collect();
    assert_eq!(stored, want);
    let extra = store
        .conn()
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT extra FROM notes WHERE id = 0",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get::<serde_json::Value>("", "extra")
        .unwrap();
    assert_eq!(
        extra,
        serde_json::json!({"nome": "D'Angelo \"Nino\"", "note": "a\\b"})
    );
    db.drop_database().await;
}

#[tokio::test]
async fn times_written_as_literals_come_back_as_the_same_instant() {
    use chrono::TimeZone;
    let Some((db, store)) =
        postgres_store("times_written_as_literals_come_back_as_the_same_instant").await
    else {
        return;
    };
    let times: [DateTime<Utc>; 4] = [
        Utc.with_ymd_and_hms(2026, 11, 27, 14, 50, 7).unwrap()
            + chrono::Duration::microseconds(123_456),
        Utc.with_ymd_and_hms(2026, 3, 29, 1, 30, 0).unwrap(),
        Utc.with_ymd_and_hms(1969, 12, 31, 23, 59, 59).unwrap() + chrono::Duration::microseconds(1),
        Utc.with_ymd_and_hms(2099, 1, 1, 0, 0, 0).unwrap(),
    ];
    let mut session = Session::new(&store).expect("a session on PostgreSQL");
    let txn = session.begin().await.expect("begin");
    for (i, at) in times.iter().enumerate() {
        txn.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "INSERT INTO notes (id, at) VALUES ($1, $2)",
            [(i as i32).into(), (*at).into()],
        ))
        .await
        .expect("queued");
    }
    txn.commit().await.expect("commit");

    let stored: Vec<DateTime<Utc>> = store
        .conn()
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT at FROM notes ORDER BY id",
        ))
        .await
        .expect("read notes")
        .iter()
        .map(|row| row.try_get::<DateTime<Utc>>("", "at").unwrap())
        .collect();
    assert_eq!(stored, times);
    db.drop_database().await;
}

#[tokio::test]
async fn text_holding_a_nul_is_refused_and_nothing_is_committed() {
    let Some((db, store)) =
        postgres_store("text_holding_a_nul_is_refused_and_nothing_is_committed").await
    else {
        return;
    };
    let mut session = Session::new(&store).expect("session");
    let txn = session.begin().await.expect("begin");
    txn.execute_raw(insert(1, "prima")).await.expect("queued");
    assert!(txn.execute_raw(insert(2, "a\0b")).await.is_err());
    txn.rollback().await;
    assert_eq!(bodies(&store).await, vec![]);
    db.drop_database().await;
}

#[tokio::test]
async fn a_refused_write_fails_the_commit_leaves_nothing_and_the_session_goes_on() {
    let Some((db, store)) =
        postgres_store("a_refused_write_fails_the_commit_leaves_nothing_and_the_session_goes_on")
            .await
    else {
        return;
    };
    let mut session = Session::new(&store).expect("session");
    let txn = session.begin().await.expect("begin");
    txn.execute_raw(insert(1, "prima")).await.expect("queued");
    // The same key again: PostgreSQL refuses it when the commit carries it.
    txn.execute_raw(insert(1, "doppione"))
        .await
        .expect("queued");
    let err = txn
        .commit()
        .await
        .expect_err("a duplicate key fails the commit");
    assert!(err.is_refused_statement(), "{err}");
    assert_eq!(bodies(&store).await, vec![], "nothing of it committed");

    let txn = session.begin().await.expect("the session begins again");
    txn.execute_raw(insert(1, "seconda volta"))
        .await
        .expect("queued");
    txn.commit().await.expect("commit");
    assert_eq!(bodies(&store).await, vec![(1, "seconda volta".to_owned())]);
    db.drop_database().await;
}

#[tokio::test]
async fn prefetched_reads_travel_together_and_each_gets_its_own_rows() {
    let Some((db, store)) =
        postgres_store("prefetched_reads_travel_together_and_each_gets_its_own_rows").await
    else {
        return;
    };
    let mut session = Session::new(&store).expect("session");
    let txn = session.begin().await.expect("begin");
    for (id, body) in [(1, "uno"), (2, "due"), (3, "tre")] {
        txn.execute_raw(insert(id, body)).await.expect("queued");
    }
    txn.prefetch(body_of(1)).await.expect("prefetch");
    txn.prefetch(body_of(2)).await.expect("prefetch");
    // Asked for in another order, and a read that was not prefetched.
    let three = txn.query_all_raw(body_of(3)).await.expect("read");
    let two = txn.query_all_raw(body_of(2)).await.expect("prefetched");
    let one = txn.query_all_raw(body_of(1)).await.expect("prefetched");
    assert_eq!(
        txn.round_trips().await,
        1,
        "inserts and three reads in one round trip"
    );
    // Asked for again: read again (the prefetch was handed over).
    let again = txn.query_all_raw(body_of(1)).await.expect("read");
    assert_eq!(txn.round_trips().await, 2);
    txn.commit().await.expect("commit");

    assert_eq!(body(&one), ["uno"]);
    assert_eq!(body(&two), ["due"]);
    assert_eq!(body(&three), ["tre"]);
    assert_eq!(body(&again), ["uno"]);
    db.drop_database().await;
}

#[tokio::test]
async fn statements_sent_behind_a_query_run_after_it_in_its_round_trip() {
    let Some((db, store)) =
        postgres_store("statements_sent_behind_a_query_run_after_it_in_its_round_trip").await
    else {
        return;
    };
    let mut session = Session::new(&store).expect("session");
    let txn = session.begin().await.expect("begin");
    txn.execute_raw(insert(1, "uno")).await.expect("queued");
    // Behind the next query: a write (it must see the query's effect) and
    // a read of what that write did.
    let sent = txn
        .send_behind_next_query(
            Some("UPDATE notes SET body = body || ' e due' WHERE id = 2".into()),
            Some(body_of(2)),
        )
        .await
        .expect("behind");
    assert!(sent, "a pipelined transaction sends them");
    let returned = txn
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "INSERT INTO notes (id, body) VALUES ($1, $2) RETURNING body",
            [2.into(), "due".into()],
        ))
        .await
        .expect("query");
    let behind = txn.query_all_raw(body_of(2)).await.expect("read behind");
    assert_eq!(
        txn.round_trips().await,
        1,
        "the query and what goes behind it in one round trip"
    );
    txn.commit().await.expect("commit");

    assert_eq!(body(&returned), ["due"], "the query's own rows only");
    assert_eq!(body(&behind), ["due e due"], "ran after the query");
    assert_eq!(
        bodies(&store).await,
        [(1, "uno".to_owned()), (2, "due e due".to_owned())]
    );
    db.drop_database().await;
}

#[tokio::test]
async fn an_ordinary_transaction_sends_nothing_behind_and_says_so() {
    let db = TestDb::new().await;
    let store = Store::connect(&db.url, 2).await.expect("store");
    let txn = store.conn().begin().await.expect("begin");
    let sent = txn
        .send_behind_next_query(Some("SELECT 1".into()), None)
        .await
        .expect("behind");
    assert!(!sent, "the caller must run them itself");
    txn.rollback().await.expect("rollback");
    db.drop_database().await;
}

#[tokio::test]
async fn a_template_is_prepared_once_per_connection() {
    let Some((db, store)) = postgres_store("a_template_is_prepared_once_per_connection").await
    else {
        return;
    };
    let prepared = Statement::from_string(
        DbBackend::Postgres,
        "SELECT count(*)::bigint AS n FROM pg_prepared_statements",
    );
    let mut session = Session::new(&store).expect("session");
    let mut counts = Vec::new();
    for round in 0..3 {
        let txn = session.begin().await.expect("begin");
        txn.execute_raw(insert(round, "x")).await.expect("queued");
        let rows = txn.query_all_raw(prepared.clone()).await.expect("count");
        counts.push(rows[0].try_get::<i64>("", "n").unwrap());
        txn.commit().await.expect("commit");
    }
    // The insert and the count itself: two templates, whatever the rounds.
    assert_eq!(counts, [2, 2, 2]);
    assert_eq!(bodies(&store).await.len(), 3);
    db.drop_database().await;
}

#[tokio::test]
async fn a_transaction_dropped_midway_leaves_no_open_transaction_behind() {
    let Some((db, store)) =
        postgres_store("a_transaction_dropped_midway_leaves_no_open_transaction_behind").await
    else {
        return;
    };
    let mut session = Session::new(&store).expect("session");
    let txn = session.begin().await.expect("begin");
    txn.execute_raw(insert(1, "mai")).await.expect("queued");
    // Sent: the transaction is open on the server, holding the row.
    txn.query_all_raw(body_of(1)).await.expect("read");
    drop(txn);

    let open = || async {
        store
            .conn()
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT count(*)::bigint AS n FROM pg_stat_activity \
                 WHERE datname = current_database() AND state LIKE 'idle in transaction%'",
            ))
            .await
            .unwrap()
            .unwrap()
            .try_get::<i64>("", "n")
            .unwrap()
    };
    crate::helpers::eventually(10, "the dropped transaction rolled back", || async {
        (open().await == 0).then_some(())
    })
    .await;
    assert_eq!(
        bodies(&store).await,
        vec![],
        "rolled back with its connection"
    );
    // The session carries on with a new connection.
    let txn = session.begin().await.expect("begin again");
    txn.execute_raw(insert(2, "dopo")).await.expect("queued");
    txn.commit().await.expect("commit");
    assert_eq!(bodies(&store).await, vec![(2, "dopo".to_owned())]);
    db.drop_database().await;
}

#[tokio::test]
async fn past_its_limit_a_session_drops_its_templates_and_prepares_them_again() {
    let Some((db, store)) =
        postgres_store("past_its_limit_a_session_drops_its_templates_and_prepares_them_again")
            .await
    else {
        return;
    };
    let prepared = Statement::from_string(
        DbBackend::Postgres,
        "SELECT count(*)::bigint AS n FROM pg_prepared_statements",
    );
    // Two templates at most: the third transaction starts from none.
    let mut session = Session::with_prepared_max(&store, 2).expect("session");
    let mut counts = Vec::new();
    for round in 0..4 {
        let txn = session.begin().await.expect("begin");
        // A template of its own each round: SELECT $1 + <round>.
        let own = Statement::from_sql_and_values(
            DbBackend::Postgres,
            format!("SELECT $1::int + {round} AS n"),
            [round.into()],
        );
        let n = txn.query_all_raw(own).await.expect("own template")[0]
            .try_get::<i32>("", "n")
            .unwrap();
        assert_eq!(n, 2 * round);
        let rows = txn.query_all_raw(prepared.clone()).await.expect("count");
        counts.push(rows[0].try_get::<i64>("", "n").unwrap());
        txn.execute_raw(insert(round, "x")).await.expect("queued");
        txn.commit().await.expect("commit");
    }
    // Round 0: its own, the count (2), then the insert (3 > 2): round 1
    // starts over with its own and the count (2), and so on.
    assert_eq!(counts, [2, 2, 2, 2]);
    assert_eq!(bodies(&store).await.len(), 4);
    db.drop_database().await;
}

/// A row of `notes`: id, body, at, score, flag.
type Note<'a> = (
    i32,
    Option<&'a str>,
    Option<DateTime<Utc>>,
    Option<f64>,
    Option<bool>,
);

/// `INSERT INTO notes (id, body, at, score, flag) VALUES (…), (…)` for
/// `rows`, numbered as sea-query numbers them.
fn insert_rows(rows: &[Note]) -> Statement {
    let mut sql = "INSERT INTO notes (id, body, at, score, flag) VALUES ".to_owned();
    let mut values: Vec<Value> = Vec::new();
    for (i, (id, body, at, score, flag)) in rows.iter().enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        let n = i * 5;
        sql.push_str(&format!(
            "(${}, ${}, ${}, ${}, ${})",
            n + 1,
            n + 2,
            n + 3,
            n + 4,
            n + 5
        ));
        values.extend([
            (*id).into(),
            body.map(str::to_owned).into(),
            (*at).into(),
            (*score).into(),
            (*flag).into(),
        ]);
    }
    Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}

/// Templates taking arrays (`statement` holds the whole message a template
/// was prepared in, so the parameter types tell them apart).
async fn unnest_templates(txn: &impl ConnectionTrait) -> i64 {
    txn.query_all_raw(Statement::from_string(
        DbBackend::Postgres,
        "SELECT count(*)::bigint AS n FROM pg_prepared_statements \
         WHERE parameter_types::text LIKE '%[]%'",
    ))
    .await
    .expect("count templates")[0]
        .try_get::<i64>("", "n")
        .unwrap()
}

#[tokio::test]
async fn rows_of_a_multi_row_insert_travel_as_one_array_per_column_and_come_back_exactly() {
    use chrono::TimeZone;
    let Some((db, store)) = postgres_store(
        "rows_of_a_multi_row_insert_travel_as_one_array_per_column_and_come_back_exactly",
    )
    .await
    else {
        return;
    };
    let at = Utc.with_ymd_and_hms(2026, 11, 27, 14, 50, 7).unwrap()
        + chrono::Duration::microseconds(123_456);
    let texts = [
        "l'agenzia dell'Isola",
        "C:\\percorso\\file",
        "{graffe}, \"virgolette\", virgole",
        "NULL",
        "",
        " spazi ",
        "riga uno\nriga due\r\n\ttab",
        "perché costa 250.000 € 🏠",
    ];
    let rows: Vec<_> = texts
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let i = i as i32;
            (
                i,
                Some(*text),
                (i % 2 == 0).then_some(at + chrono::Duration::seconds(i.into())),
                [Some(0.1), Some(-1.5e300), None, Some(42.0)][i as usize % 4],
                [Some(true), Some(false), None][i as usize % 3],
            )
        })
        .chain([(100, None, None, None, None)])
        .collect();

    let mut session = Session::new(&store).expect("a session on PostgreSQL");
    let txn = session.begin().await.expect("begin");
    txn.execute_raw(insert_rows(&rows[..3]))
        .await
        .expect("queued");
    txn.execute_raw(insert_rows(&rows[3..]))
        .await
        .expect("queued");
    // Two batch sizes, one template.
    assert_eq!(unnest_templates(&txn).await, 1);
    txn.commit().await.expect("commit");

    let stored: Vec<_> = store
        .conn()
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT id, body, at, score, flag FROM notes ORDER BY id",
        ))
        .await
        .expect("read notes")
        .iter()
        .map(|row| {
            (
                row.try_get::<i32>("", "id").unwrap(),
                row.try_get::<Option<String>>("", "body").unwrap(),
                row.try_get::<Option<DateTime<Utc>>>("", "at").unwrap(),
                row.try_get::<Option<f64>>("", "score").unwrap(),
                row.try_get::<Option<bool>>("", "flag").unwrap(),
            )
        })
        .collect();
    let want: Vec<_> = rows
        .iter()
        .map(|(id, body, at, score, flag)| (*id, body.map(str::to_owned), *at, *score, *flag))
        .collect();
    assert_eq!(stored, want);
    db.drop_database().await;
}

#[tokio::test]
async fn a_multi_row_upsert_as_arrays_updates_the_conflicting_row_and_returns_both() {
    let Some((db, store)) =
        postgres_store("a_multi_row_upsert_as_arrays_updates_the_conflicting_row_and_returns_both")
            .await
    else {
        return;
    };
    store
        .conn()
        .execute_raw(insert(1, "old"))
        .await
        .expect("first row");
    let mut upsert = insert_rows(&[
        (1, Some("new"), None, None, None),
        (2, Some("b"), None, None, None),
    ]);
    upsert
        .sql
        .push_str(" ON CONFLICT (id) DO UPDATE SET body = excluded.body RETURNING id, body");

    let mut session = Session::new(&store).expect("a session on PostgreSQL");
    let txn = session.begin().await.expect("begin");
    let returned: Vec<(i32, String)> = txn
        .query_all_raw(upsert)
        .await
        .expect("upsert")
        .iter()
        .map(|row| {
            (
                row.try_get("", "id").unwrap(),
                row.try_get("", "body").unwrap(),
            )
        })
        .collect();
    assert_eq!(unnest_templates(&txn).await, 1);
    txn.commit().await.expect("commit");

    assert_eq!(returned, [(1, "new".to_owned()), (2, "b".to_owned())]);
    assert_eq!(bodies(&store).await, returned);
    db.drop_database().await;
}

#[tokio::test]
async fn a_nul_postgresql_refuses_is_the_callers_error_and_other_refusals_stay_internal() {
    use centralino_sdk::tonic::{Code, Status};
    use centralino_server::{services::ServiceError, store::StoreError};
    let Some((db, store)) = postgres_store(
        "a_nul_postgresql_refuses_is_the_callers_error_and_other_refusals_stay_internal",
    )
    .await
    else {
        return;
    };
    let nul = StoreError::from(
        store
            .conn()
            .execute_raw(insert(1, "a\0b"))
            .await
            .unwrap_err(),
    );
    assert!(nul.is_unstorable_text(), "{nul}");
    let status = Status::from(ServiceError::Store(nul));
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(reason(&status).as_deref(), Some("TEXT_NOT_STORABLE"));

    store.conn().execute_raw(insert(1, "a")).await.unwrap();
    let duplicate = StoreError::from(store.conn().execute_raw(insert(1, "b")).await.unwrap_err());
    assert!(!duplicate.is_unstorable_text(), "{duplicate}");
    assert_eq!(
        Status::from(ServiceError::Store(duplicate)).code(),
        Code::Internal
    );
    db.drop_database().await;
}
