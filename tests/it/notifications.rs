//! WhatsApp notifications end to end: Vapi report in through POST
//! /webhooks/vapi, messages out to a Twilio-shaped fake that counts every
//! request, status callbacks and agents' replies back in, signed.

use std::time::Duration;

use centralino_sdk::{Client, proto};
use centralino_server::webhook::twilio_signature;
use serde_json::{Value, json};

use crate::{
    fakes::{FakeTwilio, Fault, PUBLIC_URL, TWILIO_TOKEN, WEBHOOK_SECRET, provider_args},
    helpers::{TestApp, TestDb, eventually, sample_order},
};

const TEMPLATE: &str = "HX0123456789abcdef0123456789abcdef";
const FEDERICO_NUMBER: &str = "+390211112222";
const GIANLUCA_NUMBER: &str = "+390233334444";
/// sample_order's agents.
const DEFAULT_AGENT: &str = "+393331234567";
const ISOLA_AGENT: &str = "+393339876543";

/// Flags for a server sending through `twilio`, quickly retrying.
fn twilio_args(twilio: &FakeTwilio, template: bool) -> Vec<String> {
    let mut args = provider_args(None, twilio);
    args.extend(
        [
            "--notify-sweep-ms",
            "20",
            "--notify-retry-base-ms",
            "20",
            "--notify-lease-ms",
            "5000",
        ]
        .map(str::to_owned),
    );
    if template {
        args.extend([
            "--twilio-whatsapp-template-sid".to_owned(),
            TEMPLATE.to_owned(),
        ]);
    }
    args
}

async fn start(template: bool) -> (FakeTwilio, TestApp, Client) {
    start_with(template, &[]).await
}

/// [`start`] with more flags (later flags win).
async fn start_with(template: bool, extra: &[&str]) -> (FakeTwilio, TestApp, Client) {
    let twilio = FakeTwilio::start().await;
    let mut args = twilio_args(&twilio, template);
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let app = TestApp::spawn_full(TestDb::new().await, &[], args).await;
    let client = app.admin().await;
    (twilio, app, client)
}

/// The seed's two agencies, each with its own number.
async fn agencies(client: &Client, twilio: &FakeTwilio) -> (proto::Order, proto::Order) {
    twilio.add_number(FEDERICO_NUMBER);
    twilio.add_number(GIANLUCA_NUMBER);
    let federico = client
        .orders()
        .create_order(sample_order("Iconacasa Federico"))
        .await
        .unwrap();
    let mut gianluca = sample_order("Tempocasa Gianluca");
    gianluca.default_agent = Some(proto::Agent {
        name: "Gianluca Verdi".to_owned(),
        whatsapp_number: "+393471112233".to_owned(),
    });
    gianluca.zones.clear();
    let gianluca = client.orders().create_order(gianluca).await.unwrap();
    for (order, number) in [(&federico, FEDERICO_NUMBER), (&gianluca, GIANLUCA_NUMBER)] {
        client
            .numbers()
            .assign_number(&order.id, number, "")
            .await
            .unwrap();
    }
    (federico, gianluca)
}

fn report(call_id: &str, number: &str, caller: &str, summary: &str, structured: Value) -> Value {
    // Started now, after the test gave the number to its order: a fixed time
    // fell before the assignment once the clock passed it, and every call
    // became an orphan.
    let started = chrono::Utc::now();
    let ended = started + chrono::Duration::seconds(232);
    let stamp =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    json!({"message": {
        "type": "end-of-call-report",
        "endedReason": "customer-ended-call",
        "startedAt": stamp(started),
        "endedAt": stamp(ended),
        "call": {"id": call_id, "type": "inboundPhoneCall"},
        "phoneNumber": {"number": number},
        "customer": {"number": caller},
        "artifact": {"transcript": "AI: Buongiorno.\nUser: Buongiorno, vorrei vendere casa."},
        "analysis": {"summary": summary, "structuredData": structured}
    }})
}

async fn post_report(app: &TestApp, body: &Value) -> Value {
    let response = reqwest::Client::new()
        .post(format!("http://{}/webhooks/vapi", app.http_addr))
        .header("X-Vapi-Secret", WEBHOOK_SECRET)
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    response.json().await.unwrap()
}

/// Posts `params` to a Twilio webhook path, signed as Twilio signs them.
async fn post_twilio(
    app: &TestApp,
    path: &str,
    params: &[(&str, &str)],
    token: &str,
) -> (u16, String) {
    let pairs: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let signature = twilio_signature::sign(token, &format!("{PUBLIC_URL}{path}"), &pairs);
    let response = reqwest::Client::new()
        .post(format!("http://{}{path}", app.http_addr))
        .header("X-Twilio-Signature", signature)
        .form(&pairs)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

async fn agent_writes(app: &TestApp, agent: &str, agency_number: &str) {
    let from = format!("whatsapp:{agent}");
    let to = format!("whatsapp:{agency_number}");
    let (status, _) = post_twilio(
        app,
        "/webhooks/twilio/inbound",
        &[
            ("From", from.as_str()),
            ("To", to.as_str()),
            ("Body", "Ok, grazie"),
            ("MessageSid", "SM00000000000000000000000000000abc"),
            ("ProfileName", "Giulia"),
        ],
        TWILIO_TOKEN,
    )
    .await;
    assert_eq!(status, 200);
}

async fn callback(app: &TestApp, sid: &str, status: &str, error_code: &str) -> (u16, String) {
    post_twilio(
        app,
        "/webhooks/twilio/status",
        &[
            ("MessageSid", sid),
            ("SmsSid", sid),
            ("MessageStatus", status),
            ("ErrorCode", error_code),
            ("ChannelPrefix", "whatsapp"),
            ("AccountSid", crate::fakes::TWILIO_ACCOUNT),
        ],
        TWILIO_TOKEN,
    )
    .await
}

async fn notifications(client: &Client, order_id: &str) -> Vec<proto::Notification> {
    client
        .notifications()
        .list_notifications(proto::ListNotificationsRequest {
            order_id: order_id.to_owned(),
            page_size: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .notifications
}

async fn get(client: &Client, id: &str) -> proto::Notification {
    client
        .notifications()
        .get_notification(proto::GetNotificationRequest { id: id.to_owned() })
        .await
        .unwrap()
        .into_inner()
        .notification
        .unwrap()
}

/// Waits until the order's only notification is in `status`.
async fn settled(
    client: &Client,
    order_id: &str,
    status: proto::NotificationStatus,
) -> proto::Notification {
    let found = eventually(10, &format!("a {status:?} notification"), || async {
        notifications(client, order_id)
            .await
            .into_iter()
            .find(|n| n.status == status as i32)
    })
    .await;
    get(client, &found.id).await
}

/// Twilio reports the message delivered; the notification ends DELIVERED.
async fn delivered(app: &TestApp, client: &Client, n: &proto::Notification) {
    let (status, _) = callback(app, &n.message_sid, "delivered", "").await;
    assert_eq!(status, 200);
    let n = get(client, &n.id).await;
    assert_eq!(status_of(&n), proto::NotificationStatus::Delivered);
}

fn status_of(n: &proto::Notification) -> proto::NotificationStatus {
    proto::NotificationStatus::try_from(n.status).unwrap()
}

#[tokio::test]
async fn the_seed_agencies_simultaneous_calls_each_send_from_their_own_number_to_the_right_agent() {
    let (twilio, app, client) = start(true).await;
    let (federico, gianluca) = agencies(&client, &twilio).await;

    // Federico's caller asks about Isola (postcode 20159, that zone's agent);
    // Gianluca's caller names no zone (the default agent).
    let isola = report(
        "call-federico",
        FEDERICO_NUMBER,
        "+393401111111",
        "Vuole vendere un trilocale in zona Isola.",
        json!({"nome": "Anna Neri", "richiesta": "vendita", "cap": "20159", "budget": "450000"}),
    );
    let plain = report(
        "call-gianluca",
        GIANLUCA_NUMBER,
        "+393402222222",
        "Cerca un bilocale in affitto.",
        json!({"nome": "Luca Blu", "richiesta": "affitto"}),
    );
    let (a, b) = tokio::join!(post_report(&app, &isola), post_report(&app, &plain));
    assert_eq!(a["replay"], false);
    assert_eq!(b["replay"], false);

    eventually(10, "two messages at Twilio", || async {
        (twilio.creates().len() >= 2).then_some(())
    })
    .await;
    let creates = twilio.creates();
    assert_eq!(creates.len(), 2, "one message per call, no more");
    let to_federico = creates
        .iter()
        .find(|c| c.get("From") == Some(&format!("whatsapp:{FEDERICO_NUMBER}")[..]))
        .expect("a message from Federico's own number");
    assert_eq!(
        to_federico.get("To"),
        Some(&format!("whatsapp:{ISOLA_AGENT}")[..])
    );
    assert_eq!(
        to_federico.get("ContentSid"),
        Some(TEMPLATE),
        "the agent never wrote: template"
    );
    let text = to_federico.text();
    assert!(
        text.contains("+393401111111") && text.contains("Anna Neri"),
        "{text}"
    );
    assert!(
        text.contains("Iconacasa Federico") && text.contains("Isola"),
        "{text}"
    );
    assert!(!text.contains("Luca Blu"), "no other call's data: {text}");

    let to_gianluca = creates
        .iter()
        .find(|c| c.get("From") == Some(&format!("whatsapp:{GIANLUCA_NUMBER}")[..]))
        .expect("a message from Gianluca's own number");
    assert_eq!(to_gianluca.get("To"), Some("whatsapp:+393471112233"));
    let text = to_gianluca.text();
    assert!(
        text.contains("+393402222222") && text.contains("Luca Blu"),
        "{text}"
    );
    assert!(!text.contains("Anna Neri"), "{text}");

    let n = settled(&client, &federico.id, proto::NotificationStatus::Sent).await;
    assert_eq!(n.route, proto::NotificationRoute::Zone as i32);
    assert_eq!(n.zone, "Isola");
    let n = settled(&client, &gianluca.id, proto::NotificationStatus::Sent).await;
    assert_eq!(n.route, proto::NotificationRoute::DefaultAgent as i32);
    assert_eq!(n.attempts.len(), 1);
    app.finish().await;
}

#[tokio::test]
async fn an_agent_who_wrote_within_24_hours_gets_the_text_and_one_who_never_wrote_the_template() {
    let (twilio, app, client) = start(true).await;
    let (federico, gianluca) = agencies(&client, &twilio).await;
    // Federico's default agent wrote to Federico's number; Gianluca's never did.
    agent_writes(&app, DEFAULT_AGENT, FEDERICO_NUMBER).await;

    post_report(
        &app,
        &report(
            "c-1",
            FEDERICO_NUMBER,
            "+393401111111",
            "Vuole una valutazione.",
            json!({}),
        ),
    )
    .await;
    post_report(
        &app,
        &report(
            "c-2",
            GIANLUCA_NUMBER,
            "+393402222222",
            "Vuole una valutazione.",
            json!({}),
        ),
    )
    .await;
    settled(&client, &federico.id, proto::NotificationStatus::Sent).await;
    settled(&client, &gianluca.id, proto::NotificationStatus::Sent).await;

    let creates = twilio.creates();
    let by_from = |number: &str| {
        creates
            .iter()
            .find(|c| c.get("From") == Some(&format!("whatsapp:{number}")[..]))
            .unwrap()
            .clone()
    };
    let text = by_from(FEDERICO_NUMBER);
    assert!(text.get("ContentSid").is_none());
    let body = text.get("Body").unwrap();
    assert!(
        body.contains("Nuova chiamata") && body.contains("+393401111111"),
        "{body}"
    );
    assert!(body.chars().count() <= 1600);
    let template = by_from(GIANLUCA_NUMBER);
    assert_eq!(template.get("ContentSid"), Some(TEMPLATE));
    assert!(template.get("Body").is_none());
    let vars = template.variables();
    assert_eq!(vars["1"], "Tempocasa Gianluca");
    for i in 1..=6 {
        let v = vars[i.to_string()].as_str().unwrap();
        assert!(
            !v.is_empty() && !v.contains('\n'),
            "variable {i} is single-line and non-empty: {v:?}"
        );
    }
    let callback = template.get("StatusCallback").unwrap();
    assert!(
        callback.starts_with(&format!("{PUBLIC_URL}/webhooks/twilio/status?n=")),
        "the callback URL names the notification and attempt: {callback}"
    );
    app.finish().await;
}

#[tokio::test]
async fn a_429_with_retry_after_is_waited_out_and_the_message_sent_once() {
    let (twilio, app, client) = start(true).await;
    let (federico, _) = agencies(&client, &twilio).await;
    twilio.fault(&[Fault::RetryAfter(1)]);

    post_report(
        &app,
        &report(
            "c-429",
            FEDERICO_NUMBER,
            "+393401111111",
            "Richiesta.",
            json!({}),
        ),
    )
    .await;
    let n = settled(&client, &federico.id, proto::NotificationStatus::Sent).await;

    let creates = twilio.creates();
    assert_eq!(creates.len(), 2, "the 429, then the one that went through");
    assert_eq!(twilio.created().len(), 1, "one message exists");
    let waited = creates[1].at - creates[0].at;
    assert!(
        waited >= Duration::from_millis(900),
        "Retry-After: 1 honoured, waited {waited:?}"
    );
    assert_eq!(n.message_sid, twilio.created()[0]["sid"]);
    delivered(&app, &client, &n).await;
    app.finish().await;
}

#[tokio::test]
async fn three_500s_then_success_send_one_message_after_looking_each_failure_up() {
    let (twilio, app, client) = start(true).await;
    let (federico, _) = agencies(&client, &twilio).await;
    twilio.fault(&[Fault::Status(500, None); 3]);

    post_report(
        &app,
        &report(
            "c-500",
            FEDERICO_NUMBER,
            "+393401111111",
            "Richiesta.",
            json!({}),
        ),
    )
    .await;
    let n = settled(&client, &federico.id, proto::NotificationStatus::Sent).await;

    assert_eq!(twilio.creates().len(), 4);
    assert_eq!(twilio.created().len(), 1, "sent once");
    assert!(
        twilio.lookups() >= 3,
        "a 500 may hide a created message: looked up before each resend"
    );
    assert_eq!(n.attempts.len(), 4);
    for failed in &n.attempts[..3] {
        assert_eq!(failed.status, "rejected", "{failed:?}");
    }
    assert_eq!(n.attempts[3].message_sid, n.message_sid);
    delivered(&app, &client, &n).await;
    app.finish().await;
}

#[tokio::test]
async fn a_create_that_hangs_past_the_timeout_is_looked_up_then_sent_once() {
    let (twilio, app, client) = start_with(true, &["--provider-timeout-ms", "300"]).await;
    let (federico, _) = agencies(&client, &twilio).await;
    twilio.fault(&[Fault::HangNotCreated(Duration::from_secs(2))]);

    post_report(
        &app,
        &report(
            "c-hang",
            FEDERICO_NUMBER,
            "+393401111111",
            "Richiesta.",
            json!({}),
        ),
    )
    .await;
    let n = settled(&client, &federico.id, proto::NotificationStatus::Sent).await;

    assert_eq!(
        twilio.creates().len(),
        2,
        "the hung request, then one resend"
    );
    assert_eq!(twilio.created().len(), 1);
    assert!(twilio.lookups() >= 1, "looked up before the resend");
    assert_eq!(n.attempts[0].status, "rejected");
    delivered(&app, &client, &n).await;
    app.finish().await;
}

#[tokio::test]
async fn a_lost_create_response_is_found_in_twilio_and_never_sent_again() {
    let (twilio, app, client) = start_with(true, &["--provider-timeout-ms", "300"]).await;
    let (federico, _) = agencies(&client, &twilio).await;
    twilio.fault(&[Fault::HangCreated(Duration::from_secs(2))]);

    post_report(
        &app,
        &report(
            "c-lost",
            FEDERICO_NUMBER,
            "+393401111111",
            "Richiesta.",
            json!({}),
        ),
    )
    .await;
    let n = settled(&client, &federico.id, proto::NotificationStatus::Sent).await;

    assert_eq!(twilio.creates().len(), 1, "never sent twice");
    assert_eq!(twilio.created().len(), 1);
    assert_eq!(
        n.message_sid,
        twilio.created()[0]["sid"],
        "the lost message was found"
    );
    assert_eq!(n.attempts.len(), 1);
    assert_eq!(n.attempts[0].message_sid, n.message_sid);
    delivered(&app, &client, &n).await;
    app.finish().await;
}

#[tokio::test]
async fn a_21211_fails_at_once_with_twilios_code_and_message() {
    let (twilio, app, client) = start(true).await;
    let (federico, _) = agencies(&client, &twilio).await;
    twilio.fault(&[Fault::Status(400, Some(21211))]);

    post_report(
        &app,
        &report(
            "c-21211",
            FEDERICO_NUMBER,
            "+393401111111",
            "Richiesta.",
            json!({}),
        ),
    )
    .await;
    let n = settled(&client, &federico.id, proto::NotificationStatus::Failed).await;

    assert_eq!(
        twilio.creates().len(),
        1,
        "a permanent error is not retried"
    );
    assert_eq!(n.reason_code, "REJECTED");
    assert!(n.reason.contains("21211"), "{}", n.reason);
    assert_eq!(n.attempts[0].error_code, 21211);
    app.finish().await;
}

#[tokio::test]
async fn a_63016_by_callback_resends_once_as_the_template_and_then_stops() {
    let (twilio, app, client) = start(true).await;
    let (federico, _) = agencies(&client, &twilio).await;
    agent_writes(&app, DEFAULT_AGENT, FEDERICO_NUMBER).await;

    post_report(
        &app,
        &report(
            "c-63016",
            FEDERICO_NUMBER,
            "+393401111111",
            "Richiesta.",
            json!({}),
        ),
    )
    .await;
    let first = settled(&client, &federico.id, proto::NotificationStatus::Sent).await;
    assert!(
        twilio.creates()[0].get("Body").is_some(),
        "free-form inside the window"
    );

    let (status, _) = callback(&app, &first.message_sid, "failed", "63016").await;
    assert_eq!(status, 200);
    eventually(10, "the template resend", || async {
        (twilio.creates().len() == 2).then_some(())
    })
    .await;
    assert_eq!(twilio.creates()[1].get("ContentSid"), Some(TEMPLATE));
    let second = settled(&client, &federico.id, proto::NotificationStatus::Sent).await;
    assert_eq!(second.attempts[1].trigger, "TEMPLATE_RESEND");

    // The template failing the same way is final: no third message.
    callback(&app, &second.message_sid, "undelivered", "63016").await;
    let failed = settled(&client, &federico.id, proto::NotificationStatus::Failed).await;
    assert_eq!(failed.reason_code, "UNDELIVERED");
    assert!(failed.reason.contains("63016"), "{}", failed.reason);
    assert_eq!(twilio.creates().len(), 2);
    app.finish().await;
}

#[tokio::test]
async fn status_callbacks_only_move_forward_and_unknown_or_repeated_ones_change_nothing() {
    let (twilio, app, client) = start(true).await;
    let (federico, _) = agencies(&client, &twilio).await;
    post_report(
        &app,
        &report(
            "c-cb",
            FEDERICO_NUMBER,
            "+393401111111",
            "Richiesta.",
            json!({}),
        ),
    )
    .await;
    let sent = settled(&client, &federico.id, proto::NotificationStatus::Sent).await;
    let sid = sent.message_sid.clone();

    let (_, body) = callback(&app, &sid, "delivered", "").await;
    assert!(body.contains("\"applied\":true"), "{body}");
    let (_, body) = callback(&app, &sid, "delivered", "").await;
    assert!(body.contains("\"applied\":false"), "a duplicate: {body}");
    let (_, body) = callback(&app, &sid, "sent", "").await;
    assert!(
        body.contains("\"applied\":false"),
        "late and out of order: {body}"
    );
    let n = get(&client, &sent.id).await;
    assert_eq!(status_of(&n), proto::NotificationStatus::Delivered);
    assert!(n.delivered_time.is_some());

    callback(&app, &sid, "read", "").await;
    callback(&app, &sid, "failed", "30008").await;
    let n = get(&client, &sent.id).await;
    assert_eq!(
        status_of(&n),
        proto::NotificationStatus::Read,
        "read, and a failure after it is ignored"
    );

    let (status, body) =
        callback(&app, "SM99999999999999999999999999999999", "delivered", "").await;
    assert_eq!(
        (status, body.contains("\"applied\":false")),
        (200, true),
        "unknown SID: {body}"
    );

    let checklist = client
        .orders()
        .get_setup_status(&federico.id)
        .await
        .unwrap();
    for name in ["first_whatsapp_delivered", "whatsapp_sender_enabled"] {
        let item = checklist.items.iter().find(|i| i.name == name).unwrap();
        assert_eq!(
            item.result,
            proto::CheckResult::Pass as i32,
            "{name}: {item:?}"
        );
    }
    app.finish().await;
}

#[tokio::test]
async fn a_bad_twilio_signature_is_refused_with_403_and_changes_nothing() {
    let (twilio, app, client) = start(true).await;
    let (federico, _) = agencies(&client, &twilio).await;
    post_report(
        &app,
        &report(
            "c-sig",
            FEDERICO_NUMBER,
            "+393401111111",
            "Richiesta.",
            json!({}),
        ),
    )
    .await;
    let sent = settled(&client, &federico.id, proto::NotificationStatus::Sent).await;

    let (status, body) = post_twilio(
        &app,
        "/webhooks/twilio/status",
        &[
            ("MessageSid", sent.message_sid.as_str()),
            ("MessageStatus", "delivered"),
        ],
        "not-the-auth-token",
    )
    .await;
    assert_eq!(status, 403);
    assert!(body.contains("BAD_SIGNATURE"), "{body}");
    let unsigned = reqwest::Client::new()
        .post(format!("http://{}/webhooks/twilio/inbound", app.http_addr))
        .form(&[
            ("From", "whatsapp:+393331234567"),
            ("To", "whatsapp:+390211112222"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status().as_u16(), 403);
    assert_eq!(
        status_of(&get(&client, &sent.id).await),
        proto::NotificationStatus::Sent
    );
    app.finish().await;
}

#[tokio::test]
async fn without_twilio_notifications_wait_as_pending_with_the_reason_and_go_out_once_configured() {
    let twilio = FakeTwilio::start().await;
    let app = TestApp::spawn_full(
        TestDb::new().await,
        &[],
        vec![
            "--vapi-webhook-secret".to_owned(),
            WEBHOOK_SECRET.to_owned(),
        ],
    )
    .await;
    let client = app.admin().await;
    let (federico, _) = agencies(&client, &twilio).await;
    post_report(
        &app,
        &report(
            "c-wait",
            FEDERICO_NUMBER,
            "+393401111111",
            "Richiesta.",
            json!({}),
        ),
    )
    .await;
    let waiting = settled(&client, &federico.id, proto::NotificationStatus::Pending).await;
    assert_eq!(waiting.reason_code, "TWILIO_NOT_CONFIGURED");
    let checklist = client
        .orders()
        .get_setup_status(&federico.id)
        .await
        .unwrap();
    let item = checklist
        .items
        .iter()
        .find(|i| i.name == "first_whatsapp_delivered")
        .unwrap();
    assert!(item.detail.contains("Twilio is not configured"), "{item:?}");

    // Configured: the same database, a server that can send.
    let db = app.stop().await;
    let app = TestApp::spawn_full(db, &[], twilio_args(&twilio, true)).await;
    let client = app.admin().await;
    let sent = settled(&client, &federico.id, proto::NotificationStatus::Sent).await;
    assert_eq!(sent.id, waiting.id);
    assert_eq!(twilio.creates().len(), 1);
    app.finish().await;
}

#[tokio::test]
async fn with_nobody_to_send_to_the_notification_fails_with_no_destination_and_the_checklist_says_so()
 {
    let (twilio, app, client) = start(true).await;
    let mut lonely = sample_order("Agenzia Senza Agenti");
    lonely.default_agent = None;
    lonely.zones.clear();
    let lonely = client.orders().create_order(lonely).await.unwrap();
    twilio.add_number(FEDERICO_NUMBER);
    client
        .numbers()
        .assign_number(&lonely.id, FEDERICO_NUMBER, "")
        .await
        .unwrap();

    post_report(
        &app,
        &report(
            "c-nobody",
            FEDERICO_NUMBER,
            "+393401111111",
            "Richiesta.",
            json!({}),
        ),
    )
    .await;
    let n = settled(&client, &lonely.id, proto::NotificationStatus::Failed).await;
    assert_eq!(n.reason_code, "NO_DESTINATION");
    assert!(
        n.reason.contains("TWILIO_DESTINATION_WHATSAPP"),
        "{}",
        n.reason
    );
    assert!(twilio.creates().is_empty());
    let checklist = client.orders().get_setup_status(&lonely.id).await.unwrap();
    let item = checklist
        .items
        .iter()
        .find(|i| i.name == "first_whatsapp_delivered")
        .unwrap();
    assert_eq!(item.result, proto::CheckResult::Fail as i32);
    assert!(item.detail.contains("NO_DESTINATION"), "{item:?}");

    // An admin gives the order an agent and retries: routed again, sent.
    let patch = proto::Order {
        id: lonely.id.clone(),
        default_agent: Some(proto::Agent {
            name: "Nuovo Agente".to_owned(),
            whatsapp_number: "+393475556666".to_owned(),
        }),
        ..Default::default()
    };
    client
        .orders()
        .update_order(patch, &["default_agent"])
        .await
        .unwrap();
    client
        .notifications()
        .retry_notification(proto::RetryNotificationRequest { id: n.id.clone() })
        .await
        .unwrap();
    let sent = settled(&client, &lonely.id, proto::NotificationStatus::Sent).await;
    assert_eq!(sent.to, "whatsapp:+393475556666");
    assert_eq!(sent.attempts[0].trigger, "ADMIN_RETRY");
    assert_eq!(twilio.creates().len(), 1);
    app.finish().await;
}

#[tokio::test]
async fn without_a_template_an_agent_outside_the_window_fails_naming_the_missing_setting() {
    let (twilio, app, client) = start(false).await;
    let (federico, _) = agencies(&client, &twilio).await;
    post_report(
        &app,
        &report(
            "c-notpl",
            FEDERICO_NUMBER,
            "+393401111111",
            "Richiesta.",
            json!({}),
        ),
    )
    .await;
    let n = settled(&client, &federico.id, proto::NotificationStatus::Failed).await;
    assert_eq!(n.reason_code, "TEMPLATE_NOT_CONFIGURED");
    assert!(
        n.reason.contains("TWILIO_WHATSAPP_TEMPLATE_SID"),
        "{}",
        n.reason
    );
    assert!(twilio.creates().is_empty());
    let checklist = client
        .orders()
        .get_setup_status(&federico.id)
        .await
        .unwrap();
    let item = checklist
        .items
        .iter()
        .find(|i| i.name == "first_whatsapp_delivered")
        .unwrap();
    assert!(
        item.remedy.contains("TWILIO_WHATSAPP_TEMPLATE_SID"),
        "{item:?}"
    );
    app.finish().await;
}

#[tokio::test]
async fn replays_and_orphans_write_no_notification_and_a_missed_call_still_notifies() {
    let (twilio, app, client) = start(true).await;
    let (federico, _) = agencies(&client, &twilio).await;
    // Inside the window, so the free-form text shows what the agent reads.
    agent_writes(&app, DEFAULT_AGENT, FEDERICO_NUMBER).await;
    let missed = json!({"message": {
        "type": "end-of-call-report",
        "endedReason": "customer-ended-call",
        "call": {"id": "c-missed", "type": "inboundPhoneCall"},
        "phoneNumber": {"number": FEDERICO_NUMBER},
        "customer": {"number": "anonymous"}
    }});
    post_report(&app, &missed).await;
    let replay = post_report(&app, &missed).await;
    assert_eq!(replay["replay"], true);
    let orphan = post_report(
        &app,
        &report("c-orphan", "+390299998888", "+393401111111", "x", json!({})),
    )
    .await;
    assert_eq!(orphan["orphan"], true);

    settled(&client, &federico.id, proto::NotificationStatus::Sent).await;
    assert_eq!(notifications(&client, &federico.id).await.len(), 1);
    let all = client
        .notifications()
        .list_notifications(proto::ListNotificationsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .notifications;
    assert_eq!(all.len(), 1, "nothing for the orphan");
    let text = twilio.creates()[0].text();
    assert!(
        text.contains("Chiamata senza messaggio da numero nascosto"),
        "{text}"
    );
    app.finish().await;
}

#[tokio::test]
async fn preview_renders_a_calls_message_without_sending_and_a_test_message_goes_to_the_default_agent()
 {
    let (twilio, app, client) = start(true).await;
    let (federico, _) = agencies(&client, &twilio).await;
    let long = "Il cliente descrive a lungo la casa. ".repeat(80);
    post_report(
        &app,
        &report(
            "c-prev",
            FEDERICO_NUMBER,
            "+393401111111",
            &long,
            json!({"nome": "Anna Neri"}),
        ),
    )
    .await;
    settled(&client, &federico.id, proto::NotificationStatus::Sent).await;
    let before = twilio.creates().len();

    let preview = client
        .notifications()
        .preview_notification(proto::PreviewNotificationRequest {
            call_id: "c-prev".to_owned(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(preview.body_length <= 1600, "{}", preview.body_length);
    assert!(
        preview.body.contains("+393401111111"),
        "the caller's number is never cut"
    );
    assert!(preview.body.contains('…'), "the summary was trimmed");
    assert_eq!(preview.from, format!("whatsapp:{FEDERICO_NUMBER}"));
    assert_eq!(preview.to, format!("whatsapp:{DEFAULT_AGENT}"));
    assert_eq!(twilio.creates().len(), before, "a preview sends nothing");

    let test = client
        .notifications()
        .send_test_message(proto::SendTestMessageRequest {
            order_id: federico.id.clone(),
            to: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .notification
        .unwrap();
    assert_eq!(test.kind, proto::NotificationKind::Test as i32);
    eventually(10, "the test message at Twilio", || async {
        (twilio.creates().len() == before + 1).then_some(())
    })
    .await;
    let sent = twilio.creates().pop().unwrap();
    assert_eq!(
        sent.get("To"),
        Some(&format!("whatsapp:{DEFAULT_AGENT}")[..])
    );
    assert_eq!(
        sent.get("From"),
        Some(&format!("whatsapp:{FEDERICO_NUMBER}")[..])
    );

    let err = client
        .notifications()
        .retry_notification(proto::RetryNotificationRequest {
            id: test.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        tonic::Code::FailedPrecondition,
        "only FAILED ones are retried"
    );
    app.finish().await;
}

#[tokio::test]
async fn a_status_callback_that_beats_the_create_answer_is_kept_and_never_undone() {
    let (twilio, app, client) = start(true).await;
    let (federico, _) = agencies(&client, &twilio).await;
    // Created at once, answered 800 ms later (well within the timeout).
    twilio.fault(&[Fault::HangCreated(Duration::from_millis(800))]);

    post_report(
        &app,
        &report(
            "c-early",
            FEDERICO_NUMBER,
            "+393401111111",
            "Richiesta.",
            json!({}),
        ),
    )
    .await;
    eventually(10, "the create request at Twilio", || async {
        (!twilio.created().is_empty()).then_some(())
    })
    .await;
    let sid = twilio.created()[0]["sid"].as_str().unwrap().to_owned();
    let callback_url = twilio.creates()[0]
        .get("StatusCallback")
        .unwrap()
        .to_owned();
    let path = callback_url.strip_prefix(PUBLIC_URL).unwrap();
    assert!(path.contains("?n=") && path.ends_with("&a=1"), "{path}");
    let (status, body) = post_twilio(
        &app,
        path,
        &[("MessageSid", sid.as_str()), ("MessageStatus", "delivered")],
        TWILIO_TOKEN,
    )
    .await;
    assert_eq!(
        (status, body.contains("\"applied\":true")),
        (200, true),
        "{body}"
    );

    // Once the create answer is recorded (it sets message_sid), the row is
    // still DELIVERED: the answer's "queued" did not undo the callback.
    let n = eventually(10, "the create answer recorded", || async {
        let n = notifications(&client, &federico.id).await.pop()?;
        (!n.message_sid.is_empty()).then_some(n)
    })
    .await;
    let n = get(&client, &n.id).await;
    assert_eq!(status_of(&n), proto::NotificationStatus::Delivered);
    assert_eq!(n.attempts[0].status, "delivered");
    assert_eq!(n.attempts[0].message_sid, sid);
    assert_eq!(twilio.creates().len(), 1);
    app.finish().await;
}

#[tokio::test]
async fn a_sent_message_whose_callback_never_came_is_read_back_from_twilio() {
    let (twilio, app, client) = start_with(true, &["--notify-refresh-secs", "1"]).await;
    let (federico, _) = agencies(&client, &twilio).await;
    post_report(
        &app,
        &report(
            "c-quiet",
            FEDERICO_NUMBER,
            "+393401111111",
            "Richiesta.",
            json!({}),
        ),
    )
    .await;
    let sent = settled(&client, &federico.id, proto::NotificationStatus::Sent).await;

    // No callback ever arrives; Twilio knows it was delivered.
    twilio.set_status(&sent.message_sid, "delivered");
    let n = settled(&client, &federico.id, proto::NotificationStatus::Delivered).await;
    assert_eq!(n.attempts[0].status, "delivered");
    assert_eq!(twilio.creates().len(), 1);
    app.finish().await;
}

#[tokio::test]
async fn a_viewer_sees_only_its_orders_notifications_and_the_ingest_key_only_records() {
    let (twilio, app, client) = start(true).await;
    let (federico, gianluca) = agencies(&client, &twilio).await;
    post_report(
        &app,
        &report(
            "c-v1",
            FEDERICO_NUMBER,
            "+393401111111",
            "Richiesta.",
            json!({}),
        ),
    )
    .await;
    post_report(
        &app,
        &report(
            "c-v2",
            GIANLUCA_NUMBER,
            "+393402222222",
            "Richiesta.",
            json!({}),
        ),
    )
    .await;
    let mine = settled(&client, &federico.id, proto::NotificationStatus::Sent).await;
    let theirs = settled(&client, &gianluca.id, proto::NotificationStatus::Sent).await;

    let db = app.stop().await;
    const VIEWER: &str = "viewer-key-of-federico-0001";
    let app = TestApp::spawn_full(
        db,
        &[format!("viewer:{}={VIEWER}", federico.id)],
        twilio_args(&twilio, true),
    )
    .await;
    let viewer = app.client(VIEWER).await;
    let listed = viewer
        .notifications()
        .list_notifications(proto::ListNotificationsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .notifications;
    assert_eq!(
        listed.iter().map(|n| &n.id).collect::<Vec<_>>(),
        vec![&mine.id]
    );
    let denied = viewer
        .notifications()
        .get_notification(proto::GetNotificationRequest {
            id: theirs.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    let denied = viewer
        .notifications()
        .send_test_message(proto::SendTestMessageRequest {
            order_id: federico.id.clone(),
            to: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        denied.code(),
        tonic::Code::PermissionDenied,
        "viewers write nothing"
    );

    let ingest = app.client(crate::helpers::INGEST_KEY).await;
    let denied = ingest
        .notifications()
        .list_notifications(proto::ListNotificationsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    let bad = ingest
        .notifications()
        .record_inbound_message(proto::RecordInboundMessageRequest {
            from: "whatsapp:not-a-number".to_owned(),
            to: String::new(),
            message_sid: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    let mut fields = crate::helpers::violated_fields(&bad);
    fields.sort();
    assert_eq!(fields, vec!["from", "to"]);
    app.finish().await;
}

#[tokio::test]
async fn the_fallback_sender_serves_only_an_order_without_a_number_of_its_own() {
    let (twilio, app, client) = start_with(
        true,
        &["--twilio-whatsapp-number", "whatsapp:+390299990000"],
    )
    .await;
    let (federico, _) = agencies(&client, &twilio).await;
    let numberless = client
        .orders()
        .create_order(sample_order("Agenzia Senza Numero"))
        .await
        .unwrap();
    for order in [&federico, &numberless] {
        client
            .notifications()
            .send_test_message(proto::SendTestMessageRequest {
                order_id: order.id.clone(),
                to: "+393478889999".to_owned(),
            })
            .await
            .unwrap();
    }
    eventually(10, "two test messages at Twilio", || async {
        (twilio.creates().len() == 2).then_some(())
    })
    .await;
    let mut froms: Vec<String> = twilio
        .creates()
        .iter()
        .map(|c| c.get("From").unwrap().to_owned())
        .collect();
    froms.sort();
    assert_eq!(
        froms,
        vec![
            format!("whatsapp:{FEDERICO_NUMBER}"),
            "whatsapp:+390299990000".to_owned()
        ],
        "the order with a number sends from it; the other from TWILIO_WHATSAPP_NUMBER"
    );
    assert!(
        twilio
            .creates()
            .iter()
            .all(|c| c.get("To") == Some("whatsapp:+393478889999"))
    );
    app.finish().await;
}
