//! WatchCalls: live call changes through POST /webhooks/vapi, scoped by key,
//! each change once, and never in ingestion's way.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use centralino_sdk::{
    Client, proto,
    tonic::{Code, Streaming},
};
use rand::{SeedableRng, seq::SliceRandom};
use serde_json::{Value, json};

use crate::helpers::{INGEST_KEY, TestApp, TestDb, post_vapi_all, sample_order, violated_fields};

const SECRET: &str = "vapi-webhook-secret-for-watch";
const A_NUMBER: &str = "+390211112222";
const B_NUMBER: &str = "+390233334444";
const UNKNOWN_NUMBER: &str = "+390299999999";
const A_ASSISTANT: &str = "11111111-1111-4111-8111-111111111111";
const B_ASSISTANT: &str = "22222222-2222-4222-8222-222222222222";
const VIEWER_A: &str = "test-viewer-a-watch-key-001";

fn report(call_id: &str, number: &str, customer: &str, started: &str) -> Value {
    json!({"message": {
        "type": "end-of-call-report",
        "timestamp": 1773308705310u64,
        "endedReason": "customer-ended-call",
        "startedAt": started,
        "endedAt": "2099-01-01T00:00:00.000Z",
        "cost": 0.2,
        "call": {"id": call_id, "type": "inboundPhoneCall", "phoneNumberId": "7c2a1e9b-0000-4000-8000-000000000000"},
        "phoneNumber": {"number": number},
        "customer": {"number": customer},
        "artifact": {"transcript": "AI: Buongiorno.\nUser: Vorrei vendere il mio appartamento."},
        "analysis": {"summary": "Il cliente vuole vendere.", "structuredData": {}}
    }})
}

fn status_update(
    call_id: &str,
    number: &str,
    customer: &str,
    status: &str,
    started: &str,
) -> Value {
    json!({"message": {
        "type": "status-update",
        "status": status,
        "timestamp": 1773308705310u64,
        "call": {"id": call_id, "type": "inboundPhoneCall", "startedAt": started, "phoneNumberId": "7c2a1e9b-0000-4000-8000-000000000000"},
        "phoneNumber": {"number": number},
        "customer": {"number": customer}
    }})
}

/// Orders A and B with their numbers, then the server again on the same
/// database with a viewer key for A (viewer keys must name existing orders).
async fn setup() -> (TestApp, proto::Order, proto::Order) {
    let args = || vec!["--vapi-webhook-secret".to_owned(), SECRET.to_owned()];
    let app = TestApp::spawn_full(TestDb::new().await, &[], args()).await;
    let client = app.admin().await;
    let mut a = sample_order("Agenzia A");
    a.vapi_assistant_id = A_ASSISTANT.to_owned();
    let a = client.orders().create_order(a).await.unwrap();
    let mut b = sample_order("Agenzia B");
    b.vapi_assistant_id = B_ASSISTANT.to_owned();
    let b = client.orders().create_order(b).await.unwrap();
    client
        .numbers()
        .assign_number(&a.id, A_NUMBER, "")
        .await
        .unwrap();
    client
        .numbers()
        .assign_number(&b.id, B_NUMBER, "")
        .await
        .unwrap();
    let db = app.stop().await;
    let app = TestApp::spawn_full(db, &[format!("viewer:{}={VIEWER_A}", a.id)], args()).await;
    (app, a, b)
}

async fn watch(
    client: &Client,
    order_id: &str,
) -> Result<Streaming<proto::WatchCallsResponse>, Code> {
    client
        .calls()
        .watch_calls(proto::WatchCallsRequest {
            order_id: order_id.to_owned(),
        })
        .await
        .map(|r| r.into_inner())
        .map_err(|s| s.code())
}

async fn post_all(app: &TestApp, bodies: Vec<Value>, parallel: usize) {
    post_vapi_all(app, SECRET, bodies, parallel).await;
}

/// Calls `n` of each order: status updates ringing, in-progress, ended and
/// a report sent twice (the second is a replay), all shuffled. Returns the
/// bodies and the Vapi call ids per order.
fn traffic(n: usize, seed: u64) -> (Vec<Value>, Vec<String>, Vec<String>) {
    let started = chrono::Utc::now().to_rfc3339();
    let (mut bodies, mut a_ids, mut b_ids) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..n {
        for (number, ids) in [(A_NUMBER, &mut a_ids), (B_NUMBER, &mut b_ids)] {
            let id = format!("w-{i:03}-{}", uuid::Uuid::new_v4().simple());
            let customer = format!("+39347{:07}", 1_000_000 + i);
            for status in ["ringing", "in-progress", "ended"] {
                bodies.push(status_update(&id, number, &customer, status, &started));
            }
            bodies.push(report(&id, number, &customer, &started));
            bodies.push(report(&id, number, &customer, &started));
            ids.push(id);
        }
    }
    bodies.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
    (bodies, a_ids, b_ids)
}

/// Reads events until one for `marker` arrives (posted after everything else
/// answered, so every earlier change is before it in the stream).
async fn read_until(
    stream: &mut Streaming<proto::WatchCallsResponse>,
    marker: &str,
) -> Vec<proto::WatchCallsResponse> {
    let mut events = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let event = stream
                .message()
                .await
                .expect("the stream stays healthy")
                .expect("the stream stays open");
            let done = event.call.as_ref().unwrap().vapi_call_id == marker;
            events.push(event);
            if done {
                return;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no event for {marker} within 60 s"));
    events
}

/// Each call's events by kind, checking the invariants that hold for any
/// interleaving: one REPORTED per call (replays send nothing), at most one
/// CREATED, and no status update announced twice.
fn per_call(events: &[proto::WatchCallsResponse]) -> HashMap<String, Vec<proto::CallEventKind>> {
    let mut seen: HashMap<String, Vec<proto::CallEventKind>> = HashMap::new();
    let mut statuses = HashSet::new();
    for event in events {
        let call = event.call.as_ref().unwrap();
        let kind = proto::CallEventKind::try_from(event.kind).unwrap();
        match kind {
            proto::CallEventKind::Reported => assert!(call.report_received),
            proto::CallEventKind::Created | proto::CallEventKind::Updated => {
                assert!(
                    statuses.insert((call.vapi_call_id.clone(), call.status)),
                    "status {} of {} announced twice",
                    call.status,
                    call.vapi_call_id
                )
            }
            proto::CallEventKind::Unspecified => panic!("an event without a kind"),
        }
        seen.entry(call.vapi_call_id.clone())
            .or_default()
            .push(kind);
    }
    for (id, kinds) in &seen {
        let count = |k| kinds.iter().filter(|x| **x == k).count();
        assert_eq!(count(proto::CallEventKind::Reported), 1, "{id}: {kinds:?}");
        assert!(count(proto::CallEventKind::Created) <= 1, "{id}: {kinds:?}");
    }
    seen
}

#[tokio::test]
async fn a_viewer_sees_every_call_of_its_order_exactly_once_and_none_of_others() {
    let (app, a, _b) = setup().await;
    let viewer = app.client(VIEWER_A).await;
    let mut stream = watch(&viewer, "").await.expect("a viewer may watch");

    let (bodies, a_ids, b_ids) = traffic(10, 20261127);
    post_all(&app, bodies, 16).await;
    let marker = format!("marker-{}", uuid::Uuid::new_v4().simple());
    let started = chrono::Utc::now().to_rfc3339();
    post_all(
        &app,
        vec![report(&marker, A_NUMBER, "+393470000001", &started)],
        1,
    )
    .await;

    let events = read_until(&mut stream, &marker).await;
    for event in &events {
        assert_eq!(event.call.as_ref().unwrap().order_id, a.id, "only order A");
    }
    let seen = per_call(&events);
    let mut want: HashSet<&String> = a_ids.iter().collect();
    want.insert(&marker);
    assert_eq!(
        seen.keys().collect::<HashSet<_>>(),
        want,
        "every A call, no B call"
    );
    assert!(b_ids.iter().all(|id| !seen.contains_key(id)));
    // The events match what is stored: each REPORTED call is the final row.
    let stored = viewer
        .calls()
        .list_calls(proto::ListCallsRequest {
            page_size: 200,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .calls;
    assert_eq!(stored.len(), a_ids.len() + 1);
    for call in &stored {
        let reported = events
            .iter()
            .find(|e| {
                e.kind == proto::CallEventKind::Reported as i32
                    && e.call.as_ref().unwrap().id == call.id
            })
            .expect("a REPORTED event per stored call");
        assert_eq!(reported.call.as_ref().unwrap().lead_id, call.lead_id);
    }
    drop(stream);
    app.finish().await;
}

#[tokio::test]
async fn an_admin_without_a_filter_sees_every_order_and_orphans_and_with_one_only_that_order() {
    let (app, a, b) = setup().await;
    let admin = app.admin().await;
    let mut all = watch(&admin, "").await.unwrap();
    let mut only_b = watch(&admin, &b.id).await.unwrap();

    let (bodies, a_ids, b_ids) = traffic(5, 7);
    post_all(&app, bodies, 16).await;
    let started = chrono::Utc::now().to_rfc3339();
    let orphan = format!("orphan-{}", uuid::Uuid::new_v4().simple());
    post_all(
        &app,
        vec![report(&orphan, UNKNOWN_NUMBER, "+393470000002", &started)],
        1,
    )
    .await;
    let marker = format!("marker-{}", uuid::Uuid::new_v4().simple());
    post_all(
        &app,
        vec![report(&marker, B_NUMBER, "+393470000003", &started)],
        1,
    )
    .await;

    let events = read_until(&mut all, &marker).await;
    let seen = per_call(&events);
    let mut want: HashSet<&String> = a_ids.iter().chain(&b_ids).collect();
    want.extend([&orphan, &marker]);
    assert_eq!(seen.keys().collect::<HashSet<_>>(), want);
    let orphan_event = events
        .iter()
        .find(|e| e.call.as_ref().unwrap().vapi_call_id == orphan)
        .unwrap();
    assert!(orphan_event.call.as_ref().unwrap().order_id.is_empty());
    assert!(!orphan_event.call.as_ref().unwrap().orphan_reason.is_empty());

    let events = read_until(&mut only_b, &marker).await;
    assert!(
        events
            .iter()
            .all(|e| e.call.as_ref().unwrap().order_id == b.id)
    );
    let seen = per_call(&events);
    let mut want: HashSet<&String> = b_ids.iter().collect();
    want.insert(&marker);
    assert_eq!(seen.keys().collect::<HashSet<_>>(), want);
    assert!(!seen.contains_key(&a.id));
    drop((all, only_b));
    app.finish().await;
}

#[tokio::test]
async fn unread_watchers_never_block_ingestion_and_keys_are_scoped() {
    let (app, a, b) = setup().await;
    let viewer = app.client(VIEWER_A).await;
    let admin = app.admin().await;
    // Two watchers that never read a single event.
    let _unread_viewer = watch(&viewer, &a.id).await.unwrap();
    let _unread_admin = watch(&admin, "").await.unwrap();

    // 150 calls per order, 5 messages each: 1500 webhooks, every one of them
    // answered 200 within a generous deadline.
    let (bodies, a_ids, b_ids) = traffic(150, 42);
    tokio::time::timeout(Duration::from_secs(120), post_all(&app, bodies, 32))
        .await
        .expect("ingestion is not held up by watchers that do not read");
    for (order, ids) in [(&a.id, &a_ids), (&b.id, &b_ids)] {
        let mut count = 0;
        let mut token = String::new();
        loop {
            let page = admin
                .calls()
                .list_calls(proto::ListCallsRequest {
                    order_id: order.clone(),
                    page_size: 200,
                    page_token: token,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            count += page.calls.len();
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        assert_eq!(count, ids.len());
    }

    // Scoping: a viewer of A asking for B, and the ingest key, are refused;
    // a malformed order id names the field.
    assert_eq!(
        watch(&viewer, &b.id).await.unwrap_err(),
        Code::PermissionDenied
    );
    let ingest = app.client(INGEST_KEY).await;
    assert_eq!(
        watch(&ingest, "").await.unwrap_err(),
        Code::PermissionDenied
    );
    let bad = admin
        .calls()
        .watch_calls(proto::WatchCallsRequest {
            order_id: "not-an-id".to_owned(),
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&bad), vec!["order_id".to_owned()]);

    // Open streams do not hold the server's shutdown.
    tokio::time::timeout(Duration::from_secs(30), app.finish())
        .await
        .expect("shutdown ends open watches");
}

#[tokio::test]
async fn shutdown_ends_a_watch_with_unavailable() {
    let (app, _a, _b) = setup().await;
    let admin = app.admin().await;
    let mut stream = watch(&admin, "").await.unwrap();
    tokio::time::timeout(Duration::from_secs(30), app.finish())
        .await
        .expect("shutdown ends open watches");
    let end = stream.message().await;
    assert_eq!(end.unwrap_err().code(), Code::Unavailable);
}

/// Two servers on one PostgreSQL database (A with a viewer key for order
/// A), or None on SQLite, whose deployments are single-process.
async fn two_replicas(test: &str) -> Option<(TestApp, TestApp, proto::Order, proto::Order)> {
    if std::env::var("TEST_DATABASE_URL").is_ok_and(|url| !url.is_empty()) {
        let (a_app, a, b) = setup().await;
        let args = vec!["--vapi-webhook-secret".to_owned(), SECRET.to_owned()];
        let b_app = TestApp::spawn_full(TestDb::shared(&a_app.db.url), &[], args).await;
        Some((a_app, b_app, a, b))
    } else {
        use std::io::Write;
        writeln!(
            std::io::stderr(),
            "{test}: skipped, needs TEST_DATABASE_URL (PostgreSQL): SQLite is single-process"
        )
        .ok();
        None
    }
}

/// One call's messages, in order: ringing (CREATED), in-progress (UPDATED),
/// the report (REPORTED) and its replay (nothing).
async fn one_call(app: &TestApp, id: String, number: &'static str, n: usize) {
    let started = chrono::Utc::now().to_rfc3339();
    let customer = format!("+39347{:07}", 2_000_000 + n);
    for body in [
        status_update(&id, number, &customer, "ringing", &started),
        status_update(&id, number, &customer, "in-progress", &started),
        report(&id, number, &customer, &started),
        report(&id, number, &customer, &started),
    ] {
        post_all(app, vec![body], 1).await;
    }
}

#[tokio::test]
async fn a_watch_on_one_replica_sees_every_change_ingested_by_another_exactly_once() {
    let Some((a_app, b_app, a, _b)) =
        two_replicas("a_watch_on_one_replica_sees_every_change_ingested_by_another").await
    else {
        return;
    };
    let viewer = a_app.client(VIEWER_A).await;
    let mut stream = watch(&viewer, "").await.expect("a viewer may watch");

    // Order A's calls mostly through replica B, two through A itself (its own
    // notifications must not come back as duplicates); order B's all through B.
    let (mut a_ids, mut b_ids, mut tasks) = (Vec::new(), Vec::new(), Vec::new());
    let (a_app, b_app) = (Arc::new(a_app), Arc::new(b_app));
    for n in 0..12 {
        let (number, ids) = if n % 2 == 0 {
            (A_NUMBER, &mut a_ids)
        } else {
            (B_NUMBER, &mut b_ids)
        };
        let id = format!("x-{n:02}-{}", uuid::Uuid::new_v4().simple());
        ids.push(id.clone());
        let app = if n == 0 || n == 4 {
            a_app.clone()
        } else {
            b_app.clone()
        };
        tasks.push(tokio::spawn(
            async move { one_call(&app, id, number, n).await },
        ));
    }
    for task in tasks {
        task.await.unwrap();
    }
    // Posted after everything else answered: every earlier change is before
    // it in A's stream.
    let marker = format!("marker-{}", uuid::Uuid::new_v4().simple());
    let started = chrono::Utc::now().to_rfc3339();
    post_all(
        &b_app,
        vec![report(&marker, A_NUMBER, "+393470000009", &started)],
        1,
    )
    .await;

    let events = read_until(&mut stream, &marker).await;
    for event in &events {
        assert_eq!(event.call.as_ref().unwrap().order_id, a.id, "only order A");
    }
    // Not `per_call`: another replica's change carries the call as read
    // after it, so CREATED may already show the in-progress status.
    let mut seen: HashMap<String, Vec<proto::CallEventKind>> = HashMap::new();
    for event in &events {
        seen.entry(event.call.as_ref().unwrap().vapi_call_id.clone())
            .or_default()
            .push(proto::CallEventKind::try_from(event.kind).unwrap());
        if event.kind == proto::CallEventKind::Reported as i32 {
            assert!(event.call.as_ref().unwrap().report_received, "never older");
        }
    }
    let mut want: HashSet<&String> = a_ids.iter().collect();
    want.insert(&marker);
    assert_eq!(
        seen.keys().collect::<HashSet<_>>(),
        want,
        "every A call, no B call"
    );
    assert!(b_ids.iter().all(|id| !seen.contains_key(id)));
    use proto::CallEventKind::{Created, Reported, Updated};
    for id in &a_ids {
        assert_eq!(
            seen[id],
            vec![Created, Updated, Reported],
            "{id}: each change once"
        );
    }
    assert_eq!(seen[&marker], vec![Reported]);

    drop(stream);
    let a_app = Arc::into_inner(a_app).unwrap();
    Arc::into_inner(b_app).unwrap().stop().await;
    a_app.finish().await;
}

#[tokio::test]
async fn a_lost_listener_ends_open_watches_with_unavailable_and_watching_again_works() {
    let Some((a_app, b_app, _a, b)) =
        two_replicas("a_lost_listener_ends_open_watches_with_unavailable").await
    else {
        return;
    };
    let admin = a_app.admin().await;
    let mut stream = watch(&admin, "").await.unwrap();

    // Kill A's and B's listening connections, as a network cut would.
    let db = sea_orm::Database::connect(&a_app.db.url).await.unwrap();
    use sea_orm::ConnectionTrait;
    let killed = db
        .execute_unprepared(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND query LIKE 'LISTEN%'",
        )
        .await
        .unwrap();
    assert!(killed.rows_affected() >= 1);
    db.close().await.ok();

    let end = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match stream.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("the stream ended without a status"),
                Err(status) => return status,
            }
        }
    })
    .await
    .expect("the watch ends within 30 s");
    assert_eq!(end.code(), Code::Unavailable);
    assert!(
        end.message().contains("other replicas"),
        "{}",
        end.message()
    );

    // Once A listens again, a new watch sees B's changes.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut stream = loop {
        match watch(&admin, &b.id).await {
            Ok(stream) => break stream,
            Err(code) => {
                assert_eq!(code, Code::Unavailable);
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "A never listened again"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let id = format!("again-{}", uuid::Uuid::new_v4().simple());
    let started = chrono::Utc::now().to_rfc3339();
    post_all(
        &b_app,
        vec![report(&id, B_NUMBER, "+393470000010", &started)],
        1,
    )
    .await;
    let events = read_until(&mut stream, &id).await;
    assert_eq!(events.len(), 1);
    drop(stream);
    b_app.stop().await;
    a_app.finish().await;
}
