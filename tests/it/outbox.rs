//! The outbox's claim, straight on the store: it never leases more rows than
//! asked for (the dispatcher claims only what it can send at once).

use centralino_server::store::{entities::notification, notifications as outbox};
use chrono::{TimeDelta, Utc};
use sea_orm::{Database, EntityTrait};

use crate::helpers::TestApp;

fn due_row(i: i64) -> notification::ActiveModel {
    let at = Utc::now() - TimeDelta::seconds(600 - i);
    notification::Model {
        id: uuid::Uuid::now_v7().to_string(),
        order_id: uuid::Uuid::now_v7().to_string(),
        call_id: None,
        kind: "CALL_SUMMARY".to_owned(),
        status: "PENDING".to_owned(),
        reason_code: None,
        reason: None,
        from_address: Some("whatsapp:+390212345678".to_owned()),
        to_address: Some("whatsapp:+393331234567".to_owned()),
        route: "DEFAULT_AGENT".to_owned(),
        zone: None,
        body: "Nuova chiamata".to_owned(),
        template_variables: "[]".to_owned(),
        attempts: 0,
        next_attempt_at: at,
        age_from: at,
        lease_owner: None,
        lease_until: None,
        message_sid: None,
        error_code: None,
        created_at: at,
        updated_at: at,
        sent_at: None,
        delivered_at: None,
    }
    .into()
}

#[tokio::test]
async fn a_claim_leases_at_most_its_limit_even_before_the_table_has_statistics() {
    // The server migrates the database; without Twilio its dispatcher is idle.
    let app = TestApp::spawn().await;
    let db = Database::connect(&app.db.url).await.unwrap();
    notification::Entity::insert_many((0..100).map(due_row))
        .exec(&db)
        .await
        .unwrap();

    let until = Utc::now() + TimeDelta::seconds(60);
    let first = outbox::claim(&db, "notify-first", until, Utc::now(), 16)
        .await
        .unwrap();
    assert_eq!(first.len(), 16, "a claim of 16 leases 16 rows");
    let second = outbox::claim(&db, "notify-second", until, Utc::now(), 16)
        .await
        .unwrap();
    assert_eq!(second.len(), 16);
    assert!(
        second
            .iter()
            .all(|row| first.iter().all(|f| f.id != row.id)),
        "a leased row is not claimed again"
    );
    assert!(
        first
            .iter()
            .all(|r| r.lease_owner.as_deref() == Some("notify-first"))
            && second
                .iter()
                .all(|r| r.lease_owner.as_deref() == Some("notify-second"))
    );

    db.close().await.ok();
    app.finish().await;
}
