//! Assistant requests are answered from memory, and two processes on one
//! database stay in step: what process B changes, process A answers within
//! a second.

use centralino_sdk::proto;
use serde_json::{Value, json};

use crate::{
    fakes::{ASSISTANT, OTHER_ASSISTANT},
    helpers::{TestApp, TestDb, eventually, sample_order},
};

const SECRET: &str = "routing-webhook-secret";
const NUMBER: &str = "+390211112222";

async fn spawn(db: TestDb) -> TestApp {
    TestApp::spawn_full(
        db,
        &[],
        vec![
            "--vapi-webhook-secret".to_owned(),
            SECRET.to_owned(),
            "--routing-poll-ms".to_owned(),
            "100".to_owned(),
        ],
    )
    .await
}

/// What `app` answers Vapi's assistant request for NUMBER.
async fn answer(app: &TestApp) -> Value {
    reqwest::Client::new()
        .post(format!("http://{}/webhooks/vapi", app.http_addr))
        .header("X-Vapi-Secret", SECRET)
        .json(&json!({"message": {
            "type": "assistant-request",
            "call": {"id": "ar-routing", "status": "ringing"},
            "phoneNumber": {"number": NUMBER},
            "customer": {"number": "+393471112223"}
        }}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn what_process_b_changes_process_a_answers_within_a_second() {
    let a = spawn(TestDb::new().await).await;
    let b = spawn(TestDb::shared(&a.db.url)).await;
    let (on_a, on_b) = (a.admin().await, b.admin().await);
    let mut first = sample_order("Agenzia Prima");
    first.vapi_assistant_id = ASSISTANT.to_owned();
    let first = on_a.orders().create_order(first).await.unwrap();
    let mut second = sample_order("Agenzia Seconda");
    second.vapi_assistant_id = OTHER_ASSISTANT.to_owned();
    let second = on_a.orders().create_order(second).await.unwrap();
    on_a.numbers()
        .assign_number(&first.id, NUMBER, "")
        .await
        .unwrap();
    // A assigned it: A answers at once, B after its next epoch poll.
    assert_eq!(answer(&a).await["assistantId"], ASSISTANT);
    eventually(1, "B to route the number to the first order", || async {
        (answer(&b).await["assistantId"] == ASSISTANT).then_some(())
    })
    .await;

    // B suspends the first order: A refuses the call within a second.
    for status in [proto::OrderStatus::Active, proto::OrderStatus::Suspended] {
        let patch = proto::Order {
            id: first.id.clone(),
            status: status as i32,
            ..Default::default()
        };
        on_b.orders()
            .update_order(patch, &["status"])
            .await
            .unwrap();
    }
    let refused = eventually(1, "A to refuse the suspended order's call", || async {
        let answer = answer(&a).await;
        answer["error"].as_str().map(str::to_owned)
    })
    .await;
    assert!(
        refused.contains("non è al momento disponibile"),
        "{refused}"
    );

    // B moves the number to the second order: A answers with its assistant.
    on_b.numbers()
        .release_number(&first.id, false)
        .await
        .unwrap();
    on_b.numbers()
        .assign_number(&second.id, NUMBER, "")
        .await
        .unwrap();
    eventually(1, "A to route the number to the second order", || async {
        (answer(&a).await["assistantId"] == OTHER_ASSISTANT).then_some(())
    })
    .await;

    // Released for good: nobody answers for it.
    on_b.numbers()
        .release_number(&second.id, false)
        .await
        .unwrap();
    let unknown = eventually(1, "A to refuse a number nobody holds", || async {
        answer(&a).await["error"].as_str().map(str::to_owned)
    })
    .await;
    assert!(unknown.contains("non è attivo"), "{unknown}");
    b.stop().await;
    a.finish().await;
}

#[tokio::test]
async fn concurrent_first_requests_all_get_the_assistant_not_an_empty_table() {
    let app = spawn(TestDb::new().await).await;
    let client = app.admin().await;
    let mut order = sample_order("Agenzia Fredda");
    order.vapi_assistant_id = ASSISTANT.to_owned();
    let order = client.orders().create_order(order).await.unwrap();
    client
        .numbers()
        .assign_number(&order.id, NUMBER, "")
        .await
        .unwrap();

    // The table has never been loaded: 32 calls ring at once. While one
    // request loads it, the others must wait for it, not answer from the
    // empty table ("questo numero non è attivo").
    let answers: Vec<_> = (0..32)
        .map(|_| {
            let url = format!("http://{}/webhooks/vapi", app.http_addr);
            tokio::spawn(async move {
                reqwest::Client::new()
                    .post(url)
                    .header("X-Vapi-Secret", SECRET)
                    .json(&json!({"message": {
                        "type": "assistant-request",
                        "call": {"id": "ar-cold", "status": "ringing"},
                        "phoneNumber": {"number": NUMBER},
                        "customer": {"number": "+393471112223"}
                    }}))
                    .send()
                    .await
                    .unwrap()
                    .json::<Value>()
                    .await
                    .unwrap()
            })
        })
        .collect();
    for answer in answers {
        let answer = answer.await.unwrap();
        assert_eq!(answer["assistantId"], ASSISTANT, "{answer}");
    }
    app.finish().await;
}
