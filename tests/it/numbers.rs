//! Number provisioning against Vapi- and Twilio-shaped fakes.

use centralino_sdk::{proto, tonic::Code};
use serde_json::json;

use crate::{
    fakes::{self, ASSISTANT, FakeTwilio, FakeVapi, OTHER_ASSISTANT, PUBLIC_URL, WEBHOOK_SECRET},
    helpers::{TestApp, TestDb, eventually, reason, sample_order},
};

const NUMBER: &str = "+390287654321";

async fn spawn(vapi: Option<&FakeVapi>, twilio: &FakeTwilio) -> TestApp {
    TestApp::spawn_full(TestDb::new().await, &[], fakes::provider_args(vapi, twilio)).await
}

/// Fakes (Twilio knows NUMBER), a server pointed at them (with or without
/// Vapi configured) and an admin client.
async fn start(with_vapi: bool) -> (FakeVapi, FakeTwilio, TestApp, centralino_sdk::Client) {
    let (vapi, twilio) = (FakeVapi::start().await, FakeTwilio::start().await);
    twilio.add_number(NUMBER);
    let app = spawn(with_vapi.then_some(&vapi), &twilio).await;
    let client = app.admin().await;
    (vapi, twilio, app, client)
}

/// An order whose calls the test assistant answers.
async fn order_with_assistant(client: &centralino_sdk::Client, name: &str) -> proto::Order {
    let mut order = sample_order(name);
    order.vapi_assistant_id = ASSISTANT.to_owned();
    client.orders().create_order(order).await.unwrap()
}

fn link_state(n: &proto::PhoneNumberAssignment) -> proto::LinkState {
    proto::LinkState::try_from(n.link_state).unwrap()
}

#[tokio::test]
async fn assigning_a_number_links_it_in_vapi_with_exactly_our_fields() {
    let (vapi, twilio) = (FakeVapi::start().await, FakeTwilio::start().await);
    let sid = twilio.add_number(NUMBER);
    let app = spawn(Some(&vapi), &twilio).await;
    let client = app.admin().await;
    let mut order = sample_order("Tempocasa Milano Isola e Garibaldi, sede centrale");
    order.vapi_assistant_id = ASSISTANT.to_owned();
    let order = client.orders().create_order(order).await.unwrap();

    let number = client
        .numbers()
        .assign_number(&order.id, "02 8765 4321", "")
        .await
        .unwrap();

    assert_eq!(link_state(&number), proto::LinkState::Linked, "{number:?}");
    assert_eq!(number.phone_number, NUMBER);
    assert_eq!(number.twilio_sid, sid, "SID found in Twilio");
    assert_eq!(number.order_id, order.id);
    let stored = vapi.the_number();
    assert_eq!(number.vapi_phone_number_id, stored["id"]);
    assert_eq!(stored["provider"], "twilio");
    assert_eq!(stored["number"], NUMBER);
    assert_eq!(stored["twilioAccountSid"], fakes::TWILIO_ACCOUNT);
    assert_eq!(stored["twilioAuthToken"], fakes::TWILIO_TOKEN);
    assert_eq!(stored["assistantId"], ASSISTANT);
    assert_eq!(stored["smsEnabled"], false);
    assert_eq!(
        stored["server"],
        json!({"url": format!("{PUBLIC_URL}/webhooks/vapi"), "headers": {"X-Vapi-Secret": WEBHOOK_SECRET}})
    );
    assert_eq!(stored["name"], "Tempocasa Milano Isola e Garibaldi, sede");
    assert_eq!(stored["name"].as_str().unwrap().chars().count(), 40);

    // Assigning it again to the same order is harmless and imports nothing new.
    let again = client
        .numbers()
        .assign_number(&order.id, NUMBER, "")
        .await
        .unwrap();
    assert_eq!(link_state(&again), proto::LinkState::Linked);
    assert_eq!(vapi.numbers().len(), 1);
    app.finish().await;
}

#[tokio::test]
async fn a_vapi_failure_leaves_the_number_failed_with_its_reason_until_link_number_succeeds() {
    let (vapi, _twilio, app, client) = start(true).await;
    let order = order_with_assistant(&client, "Agenzia Guasto").await;

    vapi.fail_next(1000);
    let number = client
        .numbers()
        .assign_number(&order.id, NUMBER, "")
        .await
        .unwrap();
    assert_eq!(link_state(&number), proto::LinkState::Failed, "{number:?}");
    assert!(number.link_reason.contains("500"), "{}", number.link_reason);
    assert!(number.link_attempts >= 1);
    assert!(number.next_link_time.is_some());

    vapi.fail_next(0);
    let number = client.numbers().link_number(&order.id).await.unwrap();
    assert_eq!(link_state(&number), proto::LinkState::Linked, "{number:?}");
    assert!(number.link_reason.is_empty());
    assert_eq!(vapi.numbers().len(), 1, "imported once");
    app.finish().await;
}

#[tokio::test]
async fn without_vapi_the_link_waits_with_its_reason_and_the_reconciler_links_once_configured() {
    let (vapi, twilio, app, client) = start(false).await;
    let order = order_with_assistant(&client, "Agenzia Attesa").await;
    let number = client
        .numbers()
        .assign_number(&order.id, NUMBER, "")
        .await
        .unwrap();
    assert_eq!(link_state(&number), proto::LinkState::Pending);
    assert!(
        number.link_reason.contains("VAPI_API_KEY"),
        "{}",
        number.link_reason
    );

    // Configured now: a restart with the key, and the reconciler catches up.
    let db = app.stop().await;
    let app = TestApp::spawn_full(db, &[], fakes::provider_args(Some(&vapi), &twilio)).await;
    let client = app.admin().await;
    let linked = eventually(10, "the reconciler to link the number", || {
        let numbers = client.numbers();
        let id = order.id.clone();
        async move {
            let n = numbers.get_number(&id).await.unwrap();
            (link_state(&n) == proto::LinkState::Linked).then_some(n)
        }
    })
    .await;
    assert_eq!(vapi.the_number()["assistantId"], ASSISTANT);
    assert_eq!(linked.vapi_phone_number_id, vapi.the_number()["id"]);
    app.finish().await;
}

#[tokio::test]
async fn a_drifted_vapi_number_is_repaired_by_the_reconciler() {
    let (vapi, _twilio, app, client) = start(true).await;
    let order = order_with_assistant(&client, "Agenzia Deriva").await;
    client
        .numbers()
        .assign_number(&order.id, NUMBER, "")
        .await
        .unwrap();

    vapi.tamper("assistantId", json!(OTHER_ASSISTANT));
    vapi.tamper(
        "server",
        json!({"url": "https://someone-else.example/hook"}),
    );
    vapi.tamper("smsEnabled", json!(true));
    eventually(10, "the drift to be repaired", || {
        let vapi = vapi.clone();
        async move {
            let n = vapi.the_number();
            (n["assistantId"] == ASSISTANT
                && n["server"]["url"] == format!("{PUBLIC_URL}/webhooks/vapi")
                && n["smsEnabled"] == false)
                .then_some(())
        }
    })
    .await;
    app.finish().await;
}

#[tokio::test]
async fn suspending_removes_the_assistant_in_vapi_and_resuming_restores_it() {
    let (vapi, _twilio, app, client) = start(true).await;
    let order = order_with_assistant(&client, "Agenzia Pausa").await;
    client
        .numbers()
        .assign_number(&order.id, NUMBER, "")
        .await
        .unwrap();
    let status = |s: proto::OrderStatus| proto::Order {
        id: order.id.clone(),
        status: s as i32,
        ..Default::default()
    };

    client
        .orders()
        .update_order(status(proto::OrderStatus::Active), &["status"])
        .await
        .unwrap();
    assert_eq!(vapi.the_number()["assistantId"], ASSISTANT);

    client
        .orders()
        .update_order(status(proto::OrderStatus::Suspended), &["status"])
        .await
        .unwrap();
    assert_eq!(
        vapi.the_number()["assistantId"],
        json!(null),
        "assistant-request mode"
    );
    let number = client.numbers().get_number(&order.id).await.unwrap();
    assert_eq!(
        number.answer_mode,
        proto::AnswerMode::AssistantRequest as i32
    );
    assert_eq!(link_state(&number), proto::LinkState::Linked);

    client
        .orders()
        .update_order(status(proto::OrderStatus::Active), &["status"])
        .await
        .unwrap();
    assert_eq!(vapi.the_number()["assistantId"], ASSISTANT);

    // A new assistant id is written at once.
    let change = proto::Order {
        id: order.id.clone(),
        vapi_assistant_id: OTHER_ASSISTANT.to_owned(),
        ..Default::default()
    };
    client
        .orders()
        .update_order(change, &["vapi_assistant_id"])
        .await
        .unwrap();
    assert_eq!(vapi.the_number()["assistantId"], OTHER_ASSISTANT);
    app.finish().await;
}

#[tokio::test]
async fn cancelling_an_order_releases_its_number_and_removes_it_from_vapi() {
    let (vapi, twilio) = (FakeVapi::start().await, FakeTwilio::start().await);
    twilio.add_number(NUMBER);
    let app = spawn(Some(&vapi), &twilio).await;
    let client = app.admin().await;
    let mut order = sample_order("Agenzia Chiusa");
    order.vapi_assistant_id = ASSISTANT.to_owned();
    order.landline_number = "+393471112223".to_owned();
    let order = client.orders().create_order(order).await.unwrap();
    client
        .numbers()
        .assign_number(&order.id, NUMBER, "")
        .await
        .unwrap();

    let cancelled = client.orders().cancel_order(&order.id, "").await.unwrap();
    assert_eq!(
        cancelled.order.unwrap().status,
        proto::OrderStatus::Cancelled as i32
    );
    assert_eq!(cancelled.released_number, NUMBER);
    let codes: Vec<&str> = cancelled
        .deactivation_codes
        .iter()
        .map(|c| c.code.as_str())
        .collect();
    assert!(
        codes.contains(&"##21#") && codes.contains(&"##002#"),
        "{codes:?}"
    );
    assert!(vapi.numbers().is_empty(), "removed from Vapi");
    let err = client.numbers().get_number(&order.id).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    // The number is free again, for another order, and its history is kept.
    let other = client
        .orders()
        .create_order(sample_order("Nuova agenzia"))
        .await
        .unwrap();
    let reassigned = client
        .numbers()
        .assign_number(&other.id, NUMBER, "")
        .await
        .unwrap();
    assert_eq!(reassigned.order_id, other.id);
    assert_eq!(
        twilio.numbers.lock().unwrap().len(),
        1,
        "not released in Twilio"
    );
    app.finish().await;
}

#[tokio::test]
async fn bad_assignments_get_the_right_code_store_nothing_and_call_no_provider() {
    let (vapi, twilio) = (FakeVapi::start().await, FakeTwilio::start().await);
    let app = spawn(Some(&vapi), &twilio).await;
    let client = app.admin().await;
    let order = client
        .orders()
        .create_order(sample_order("Agenzia Rigore"))
        .await
        .unwrap();
    let cancelled = client
        .orders()
        .create_order(sample_order("Agenzia Cancellata"))
        .await
        .unwrap();
    client
        .orders()
        .delete_order(&cancelled.id, "")
        .await
        .unwrap();
    let missing = "0193a1b2-7c3d-7e4f-8a9b-0c1d2e3f4a5b";

    for (order_id, number, sid, code) in [
        (order.id.as_str(), "12", "", Code::InvalidArgument),
        (
            order.id.as_str(),
            "whatsapp:+390287654321",
            "",
            Code::InvalidArgument,
        ),
        (
            order.id.as_str(),
            "+41 44 668 18 00",
            "",
            Code::InvalidArgument,
        ),
        (order.id.as_str(), NUMBER, "PN123", Code::InvalidArgument),
        ("not-an-id", NUMBER, "", Code::InvalidArgument),
        (missing, NUMBER, "", Code::NotFound),
        (cancelled.id.as_str(), NUMBER, "", Code::FailedPrecondition),
    ] {
        let err = client
            .numbers()
            .assign_number(order_id, number, sid)
            .await
            .unwrap_err();
        assert_eq!(err.code(), code, "{order_id} {number} {sid}: {err:?}");
    }
    assert_eq!(vapi.request_count(), 0, "Vapi received nothing");
    assert_eq!(twilio.request_count(), 0, "Twilio received nothing");
    let err = client.numbers().get_number(&order.id).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "nothing stored");

    // A number Twilio does not have is refused before anything is stored.
    let err = client
        .numbers()
        .assign_number(&order.id, NUMBER, "")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(reason(&err).as_deref(), Some("NUMBER_NOT_IN_TWILIO"));
    assert_eq!(vapi.request_count(), 0);
    app.finish().await;
}

#[tokio::test]
async fn forwarding_instructions_follow_the_landline_and_refuse_a_loop() {
    let twilio = FakeTwilio::start().await;
    twilio.add_number(NUMBER);
    let app = spawn(None, &twilio).await;
    let client = app.admin().await;
    let mut order = sample_order("Agenzia Inoltro");
    order.landline_number = "+393471112223".to_owned();
    order.carrier = proto::Carrier::Vodafone as i32;
    let order = client.orders().create_order(order).await.unwrap();
    client
        .numbers()
        .assign_number(&order.id, NUMBER, "")
        .await
        .unwrap();

    let found = client
        .numbers()
        .get_forwarding_instructions(&order.id, 0)
        .await
        .unwrap();
    assert_eq!(found.line_kind, proto::LineKind::Mobile as i32);
    assert_eq!(found.target_number, NUMBER);
    let codes: Vec<&str> = found.activate.iter().map(|c| c.code.as_str()).collect();
    assert!(codes.contains(&"**21*+390287654321#"), "{codes:?}");
    assert!(codes.contains(&"**61*+390287654321**20#"), "{codes:?}");
    assert_eq!(found.check[0].code, "*#21#");

    // The landline set to the Centralino number itself would loop.
    let change = proto::Order {
        id: order.id.clone(),
        landline_number: NUMBER.to_owned(),
        ..Default::default()
    };
    client
        .orders()
        .update_order(change, &["landline_number"])
        .await
        .unwrap();
    let err = client
        .numbers()
        .get_forwarding_instructions(&order.id, 0)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(reason(&err).as_deref(), Some("FORWARDING_LOOP"));
    app.finish().await;
}

#[tokio::test]
async fn verify_number_passes_a_good_setup_and_names_what_diverts_messages() {
    let (vapi, _twilio, app, client) = start(true).await;
    let order = order_with_assistant(&client, "Agenzia Verifica").await;
    client
        .numbers()
        .assign_number(&order.id, NUMBER, "")
        .await
        .unwrap();

    let checks = client.numbers().verify_number(&order.id).await.unwrap();
    for check in &checks {
        assert_eq!(check.result, proto::CheckResult::Pass as i32, "{check:?}");
    }
    assert_eq!(checks.len(), 8);

    vapi.add_assistant(
        ASSISTANT,
        Some("https://other.example/vapi"),
        &["end-of-call-report"],
    );
    let checks = client.numbers().verify_number(&order.id).await.unwrap();
    let result = |name: &str| {
        let check = checks.iter().find(|c| c.name == name).unwrap();
        (
            proto::CheckResult::try_from(check.result).unwrap(),
            check.remedy.clone(),
        )
    };
    assert_eq!(result("assistant_server_url").0, proto::CheckResult::Fail);
    assert_eq!(
        result("assistant_server_messages").0,
        proto::CheckResult::Fail
    );
    assert!(
        !result("assistant_server_messages").1.is_empty(),
        "a remedy is given"
    );
    assert_eq!(result("vapi_assistant_linked").0, proto::CheckResult::Pass);
    app.finish().await;
}

#[tokio::test]
async fn the_setup_checklist_proves_what_it_can_and_claims_nothing_else() {
    let (_vapi, _twilio, app, client) = start(true).await;
    let order = order_with_assistant(&client, "Agenzia Checklist").await;

    let status = client.orders().get_setup_status(&order.id).await.unwrap();
    assert!(!status.complete);
    let item = |s: &proto::GetSetupStatusResponse, name: &str| {
        proto::CheckResult::try_from(s.items.iter().find(|i| i.name == name).unwrap().result)
            .unwrap()
    };
    assert_eq!(item(&status, "number_assigned"), proto::CheckResult::Fail);

    client
        .numbers()
        .assign_number(&order.id, NUMBER, "")
        .await
        .unwrap();
    let declare = proto::Order {
        id: order.id.clone(),
        whatsapp_sender_declared: true,
        ..Default::default()
    };
    client
        .orders()
        .update_order(declare, &["whatsapp_sender_declared"])
        .await
        .unwrap();
    let status = client.orders().get_setup_status(&order.id).await.unwrap();
    for (name, expected) in [
        ("number_assigned", proto::CheckResult::Pass),
        ("twilio_number_active", proto::CheckResult::Pass),
        ("vapi_assistant_linked", proto::CheckResult::Pass),
        ("vapi_webhook", proto::CheckResult::Pass),
        ("whatsapp_sender_enabled", proto::CheckResult::Declared),
        ("first_inbound_call", proto::CheckResult::Unknown),
        ("first_whatsapp_delivered", proto::CheckResult::Unknown),
    ] {
        assert_eq!(item(&status, name), expected, "{name}");
    }
    assert!(!status.complete, "DECLARED and UNKNOWN are not proof");
    app.finish().await;
}

#[tokio::test]
async fn release_number_can_also_release_it_in_twilio() {
    let (vapi, twilio, app, client) = start(true).await;
    let order = order_with_assistant(&client, "Agenzia Rilascio").await;
    client
        .numbers()
        .assign_number(&order.id, NUMBER, "")
        .await
        .unwrap();

    let released = client
        .numbers()
        .release_number(&order.id, true)
        .await
        .unwrap();
    let number = released.number.unwrap();
    assert_eq!(link_state(&number), proto::LinkState::Released);
    assert!(number.order_id.is_empty());
    assert!(vapi.numbers().is_empty(), "out of Vapi");
    assert!(
        twilio.numbers.lock().unwrap().is_empty(),
        "released in Twilio"
    );
    // The order is still there, without a number.
    let err = client.numbers().get_number(&order.id).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(
        client.orders().get_order(&order.id).await.unwrap().status,
        proto::OrderStatus::Setup as i32
    );
    app.finish().await;
}

#[tokio::test]
async fn a_release_that_vapi_cannot_confirm_frees_nothing() {
    let (vapi, _twilio, app, client) = start(true).await;
    let order = order_with_assistant(&client, "Agenzia Prudente").await;
    client
        .numbers()
        .assign_number(&order.id, NUMBER, "")
        .await
        .unwrap();

    vapi.fail_next(1000);
    let err = client
        .orders()
        .cancel_order(&order.id, "")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    vapi.fail_next(0);
    assert_eq!(
        client.orders().get_order(&order.id).await.unwrap().status,
        proto::OrderStatus::Setup as i32,
        "not cancelled"
    );
    assert_eq!(
        client
            .numbers()
            .get_number(&order.id)
            .await
            .unwrap()
            .order_id,
        order.id
    );
    assert_eq!(vapi.numbers().len(), 1, "still linked in Vapi");
    app.finish().await;
}
