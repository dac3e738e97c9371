//! Recovery of lost end-of-call reports: a fake Vapi that "drops" some
//! reports (never posts them) but lists every call on GET /call.

use std::collections::HashSet;

use centralino_sdk::{Client, proto};
use serde_json::{Value, json};

use crate::{
    fakes::{ASSISTANT, FakeTwilio, FakeVapi, WEBHOOK_SECRET, provider_args},
    helpers::{TestApp, TestDb, eventually, sample_order},
};

const NUMBER: &str = "+390211112222";
const CALLS: usize = 40;
/// One in twenty reports is lost: 5 %.
const DROPPED: [usize; 2] = [7, 26];

fn args(vapi: &FakeVapi, twilio: &FakeTwilio) -> Vec<String> {
    let mut args = provider_args(Some(vapi), twilio);
    args.extend(
        [
            "--twilio-whatsapp-template-sid",
            "HX0123456789abcdef0123456789abcdef",
            "--notify-sweep-ms",
            "20",
            "--recovery-interval-ms",
            "300",
            "--recovery-grace-secs",
            "0",
        ]
        .map(str::to_owned),
    );
    args
}

/// A Vapi Call object as GET /call returns it.
fn vapi_call(i: usize, phone_number_id: &str) -> Value {
    let now = chrono::Utc::now();
    let at = |offset_ms: i64| (now + chrono::Duration::milliseconds(offset_ms)).to_rfc3339();
    json!({
        "id": uuid::Uuid::new_v4().to_string(),
        "type": "inboundPhoneCall",
        "status": "ended",
        "endedReason": "customer-ended-call",
        "phoneNumberId": phone_number_id,
        "assistantId": ASSISTANT,
        "customer": {"number": format!("+39340{:07}", 1_000_000 + i)},
        "createdAt": at(i as i64),
        "updatedAt": at(i as i64 + 1),
        // After the number was assigned (calls belong to who held the number
        // when they started), and over by the time recovery looks.
        "startedAt": at(i as i64),
        "endedAt": at(i as i64 + 1),
        "cost": 0.1,
        "analysis": {
            "summary": format!("Chiamata numero {i}: vuole vendere casa."),
            "structuredData": {"nome": format!("Cliente {i}"), "richiesta": "vendita"}
        },
        "artifact": {"transcript": "AI: Buongiorno.\nUser: Vorrei vendere casa."}
    })
}

/// The end-of-call report Vapi would post for that call.
fn report_of(call: &Value) -> Value {
    json!({"message": {
        "type": "end-of-call-report",
        "endedReason": call["endedReason"],
        "startedAt": call["startedAt"],
        "endedAt": call["endedAt"],
        "call": {"id": call["id"], "type": "inboundPhoneCall", "phoneNumberId": call["phoneNumberId"]},
        "phoneNumber": {"number": NUMBER},
        "customer": call["customer"],
        "analysis": call["analysis"],
        "artifact": call["artifact"]
    }})
}

async fn all_calls(client: &Client, order_id: &str) -> Vec<proto::Call> {
    client
        .calls()
        .list_calls(proto::ListCallsRequest {
            order_id: order_id.to_owned(),
            page_size: 200,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .calls
}

#[tokio::test]
async fn reports_vapi_never_delivered_are_recovered_with_their_lead_and_exactly_one_whatsapp() {
    let (vapi, twilio) = (FakeVapi::start().await, FakeTwilio::start().await);
    twilio.add_number(NUMBER);
    let app = TestApp::spawn_full(TestDb::new().await, &[], args(&vapi, &twilio)).await;
    let client = app.admin().await;
    let order = client
        .orders()
        .create_order(sample_order("Agenzia Recupero"))
        .await
        .unwrap();
    let assigned = client
        .numbers()
        .assign_number(&order.id, NUMBER, "")
        .await
        .unwrap();
    assert_eq!(assigned.link_state, proto::LinkState::Linked as i32);
    let phone_number_id = vapi.the_number()["id"].as_str().unwrap().to_owned();

    let calls: Vec<Value> = (0..CALLS).map(|i| vapi_call(i, &phone_number_id)).collect();
    let http = reqwest::Client::new();
    for (i, call) in calls.iter().enumerate() {
        vapi.add_call(call.clone());
        if DROPPED.contains(&i) {
            continue; // Vapi never posts this one.
        }
        let response = http
            .post(format!("http://{}/webhooks/vapi", app.http_addr))
            .header("X-Vapi-Secret", WEBHOOK_SECRET)
            .json(&report_of(call))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
    }

    let stored = eventually(20, "every call stored with its report", || async {
        let stored = all_calls(&client, &order.id).await;
        let reported = stored
            .iter()
            .filter(|c| c.summary.starts_with("Chiamata"))
            .count();
        (reported == CALLS).then_some(stored)
    })
    .await;
    let wanted: HashSet<&str> = calls.iter().map(|c| c["id"].as_str().unwrap()).collect();
    let got: HashSet<&str> = stored.iter().map(|c| c.vapi_call_id.as_str()).collect();
    assert_eq!(wanted, got);
    for dropped in DROPPED {
        let id = calls[dropped]["id"].as_str().unwrap();
        let call = stored.iter().find(|c| c.vapi_call_id == id).unwrap();
        assert!(!call.lead_id.is_empty(), "the recovered call has its lead");
    }
    eventually(20, "one WhatsApp per call", || async {
        (twilio.creates().len() >= CALLS).then_some(())
    })
    .await;

    // A second process reconciling the same numbers at the same time.
    let listings = vapi.call_listings();
    let second = TestApp::spawn_full(
        crate::helpers::TestDb::shared(&app.db.url),
        &[],
        args(&vapi, &twilio),
    )
    .await;
    eventually(
        20,
        "both processes to list Vapi's calls a few more times",
        || async { (vapi.call_listings() >= listings + 6).then_some(()) },
    )
    .await;
    assert_eq!(
        twilio.creates().len(),
        CALLS,
        "exactly one WhatsApp per call"
    );
    let texts: HashSet<String> = twilio.creates().iter().map(|c| c.text()).collect();
    assert_eq!(texts.len(), CALLS, "each message is a different call's");
    assert_eq!(all_calls(&client, &order.id).await.len(), CALLS);
    second.stop().await;
    app.finish().await;
}
