//! Vapi- and Twilio-shaped fake servers (wiremock) with state, so tests can
//! read what Centralino wrote, make it drift, and make the fake fail.

use std::{
    collections::{BTreeMap, VecDeque},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate, matchers::any};

pub const VAPI_KEY: &str = "vapi-private-key-for-tests";
pub const WEBHOOK_SECRET: &str = "webhook-secret-for-tests";
pub const TWILIO_ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
pub const TWILIO_TOKEN: &str = "twilio-auth-token-for-tests";
pub const PUBLIC_URL: &str = "https://centralino.test";
pub const ASSISTANT: &str = "3f1c2a9e-7b4d-4e8f-9a6b-1c2d3e4f5a6b";
pub const OTHER_ASSISTANT: &str = "9b2d4c6e-1a3f-4b5d-8e7f-0a1b2c3d4e5f";

#[derive(Default)]
pub struct VapiState {
    pub numbers: BTreeMap<String, Value>,
    pub assistants: BTreeMap<String, Value>,
    /// Call objects served by GET /call.
    pub calls: Vec<Value>,
    /// Answer this many requests with 500 before behaving.
    pub fail_next: usize,
    pub requests: Vec<(String, String)>,
}

#[derive(Clone)]
pub struct FakeVapi {
    pub server: Arc<MockServer>,
    pub state: Arc<Mutex<VapiState>>,
}

struct VapiResponder(Arc<Mutex<VapiState>>);

fn nest(status: u16, error: &str, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status)
        .set_body_json(json!({"statusCode": status, "error": error, "message": message}))
}

impl Respond for VapiResponder {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let mut state = self.0.lock().unwrap();
        let method = request.method.to_string();
        let path = request.url.path().to_owned();
        state.requests.push((method.clone(), path.clone()));
        let auth = request
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if auth != format!("Bearer {VAPI_KEY}") {
            return nest(401, "Unauthorized", "Invalid Key.");
        }
        if state.fail_next > 0 {
            state.fail_next -= 1;
            return nest(500, "Internal Server Error", "Internal server error");
        }
        let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match (method.as_str(), segments.as_slice()) {
            ("POST", ["phone-number"]) => {
                let id = uuid::Uuid::new_v4().to_string();
                let mut number = body.clone();
                number["id"] = json!(id);
                number["orgId"] = json!("org-test");
                number["status"] = json!("active");
                number["createdAt"] = json!("2026-11-27T10:00:00.000Z");
                state.numbers.insert(id, number.clone());
                ResponseTemplate::new(201).set_body_json(number)
            }
            ("GET", ["phone-number"]) => ResponseTemplate::new(200)
                .set_body_json(state.numbers.values().cloned().collect::<Vec<_>>()),
            ("GET", ["phone-number", id]) => match state.numbers.get(*id) {
                Some(number) => ResponseTemplate::new(200).set_body_json(number),
                None => nest(404, "Not Found", "Phone number not found"),
            },
            ("PATCH", ["phone-number", id]) => match state.numbers.get_mut(*id) {
                Some(number) => {
                    if let Value::Object(fields) = &body {
                        for (key, value) in fields {
                            number[key] = value.clone();
                        }
                    }
                    ResponseTemplate::new(200).set_body_json(number.clone())
                }
                None => nest(404, "Not Found", "Phone number not found"),
            },
            ("DELETE", ["phone-number", id]) => match state.numbers.remove(*id) {
                Some(number) => ResponseTemplate::new(200).set_body_json(number),
                None => nest(404, "Not Found", "Phone number not found"),
            },
            ("GET", ["call"]) => {
                let query: BTreeMap<String, String> = request
                    .url
                    .query_pairs()
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect();
                let time = |v: &Value| {
                    v.as_str()
                        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                };
                let bound = |name: &str| query.get(name).and_then(|t| time(&json!(t)));
                let (after, before) = (bound("createdAtGt"), bound("createdAtLt"));
                let limit: usize = query
                    .get("limit")
                    .and_then(|l| l.parse().ok())
                    .unwrap_or(100);
                let mut calls: Vec<Value> = state
                    .calls
                    .iter()
                    .filter(|c| {
                        query
                            .get("phoneNumberId")
                            .is_none_or(|id| c["phoneNumberId"] == id.as_str())
                    })
                    .filter(|c| {
                        let at = time(&c["createdAt"]);
                        after.is_none_or(|a| at.is_some_and(|t| t > a))
                            && before.is_none_or(|b| at.is_some_and(|t| t < b))
                    })
                    .cloned()
                    .collect();
                calls.sort_by(|a, b| {
                    b["createdAt"]
                        .as_str()
                        .unwrap_or("")
                        .cmp(a["createdAt"].as_str().unwrap_or(""))
                });
                calls.truncate(limit);
                ResponseTemplate::new(200).set_body_json(calls)
            }
            ("GET", ["assistant", id]) => match state.assistants.get(*id) {
                Some(assistant) => ResponseTemplate::new(200).set_body_json(assistant),
                None => nest(404, "Not Found", "Assistant not found"),
            },
            _ => nest(404, "Not Found", "Cannot route"),
        }
    }
}

impl FakeVapi {
    pub async fn start() -> Self {
        let server = MockServer::start().await;
        let state = Arc::new(Mutex::new(VapiState::default()));
        Mock::given(any())
            .respond_with(VapiResponder(state.clone()))
            .mount(&server)
            .await;
        let fake = Self {
            server: Arc::new(server),
            state,
        };
        fake.add_assistant(ASSISTANT, None, &["end-of-call-report", "status-update"]);
        fake.add_assistant(
            OTHER_ASSISTANT,
            None,
            &["end-of-call-report", "status-update"],
        );
        fake
    }

    pub fn url(&self) -> String {
        self.server.uri()
    }

    pub fn add_assistant(&self, id: &str, server_url: Option<&str>, messages: &[&str]) {
        let mut assistant = json!({"id": id, "orgId": "org-test", "name": "Receptionist", "serverMessages": messages});
        if let Some(url) = server_url {
            assistant["server"] = json!({"url": url});
        }
        self.state
            .lock()
            .unwrap()
            .assistants
            .insert(id.to_owned(), assistant);
    }

    /// Every imported number, as Vapi holds it.
    pub fn numbers(&self) -> Vec<Value> {
        self.state
            .lock()
            .unwrap()
            .numbers
            .values()
            .cloned()
            .collect()
    }

    pub fn the_number(&self) -> Value {
        let numbers = self.numbers();
        assert_eq!(numbers.len(), 1, "exactly one number in Vapi: {numbers:#?}");
        numbers.into_iter().next().unwrap()
    }

    /// Changes a field of the (only) number behind Centralino's back.
    pub fn tamper(&self, field: &str, value: Value) {
        let mut state = self.state.lock().unwrap();
        let number = state
            .numbers
            .values_mut()
            .next()
            .expect("a number to tamper with");
        number[field] = value;
    }

    /// A Call object Vapi will list on GET /call.
    pub fn add_call(&self, call: Value) {
        self.state.lock().unwrap().calls.push(call);
    }

    /// How many GET /call requests were made.
    pub fn call_listings(&self) -> usize {
        self.state
            .lock()
            .unwrap()
            .requests
            .iter()
            .filter(|(method, path)| method == "GET" && path == "/call")
            .count()
    }

    pub fn fail_next(&self, n: usize) {
        self.state.lock().unwrap().fail_next = n;
    }

    pub fn request_count(&self) -> usize {
        self.state.lock().unwrap().requests.len()
    }
}

/// What the next POST Messages.json meets instead of a plain 201.
#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// An error status with an optional Twilio code; nothing is created.
    Status(u16, Option<i64>),
    /// 429 (code 20429) asking to wait this many seconds; nothing is created.
    RetryAfter(u64),
    /// No answer before this delay, and nothing created (a hang).
    HangNotCreated(Duration),
    /// The message is created, but the answer comes after this delay (lost).
    HangCreated(Duration),
}

/// One POST Messages.json as the fake received it.
#[derive(Debug, Clone)]
pub struct CreateRequest {
    pub at: Instant,
    pub form: Vec<(String, String)>,
}

impl CreateRequest {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The ContentVariables JSON, parsed (templates only).
    pub fn variables(&self) -> Value {
        self.get("ContentVariables")
            .and_then(|v| serde_json::from_str(v).ok())
            .unwrap_or(Value::Null)
    }

    /// Body or, for a template, its variables: what the agent reads.
    pub fn text(&self) -> String {
        match self.get("Body") {
            Some(body) => body.to_owned(),
            None => self.variables().to_string(),
        }
    }
}

/// The Messages API's state: every create request, the messages that exist
/// and the faults still to serve.
#[derive(Default)]
pub struct MessagesState {
    pub creates: Vec<CreateRequest>,
    pub created: Vec<Value>,
    pub faults: VecDeque<Fault>,
    pub lookups: usize,
}

/// Twilio's IncomingPhoneNumbers, for the numbers the test registers, and
/// its Messages API.
#[derive(Clone)]
pub struct FakeTwilio {
    pub server: Arc<MockServer>,
    pub numbers: Arc<Mutex<BTreeMap<String, Value>>>,
    pub requests: Arc<Mutex<usize>>,
    pub messages: Arc<Mutex<MessagesState>>,
}

struct TwilioResponder {
    numbers: Arc<Mutex<BTreeMap<String, Value>>>,
    requests: Arc<Mutex<usize>>,
    messages: Arc<Mutex<MessagesState>>,
}

fn twilio_error(status: u16, code: Option<i64>, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({
        "code": code, "message": message,
        "more_info": code.map(|c| format!("https://www.twilio.com/docs/errors/{c}")),
        "status": status
    }))
}

impl TwilioResponder {
    fn messages(&self, request: &Request) -> ResponseTemplate {
        let mut state = self.messages.lock().unwrap();
        if request.method.as_str() == "GET" {
            state.lookups += 1;
            let query: Vec<(String, String)> = request
                .url
                .query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            let wanted = |name: &str| {
                query
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
            };
            let (to, from) = (wanted("To"), wanted("From"));
            let listed: Vec<Value> = state
                .created
                .iter()
                .rev()
                .filter(|m| to.as_deref().is_none_or(|t| m["to"] == t))
                .filter(|m| from.as_deref().is_none_or(|f| m["from"] == f))
                .cloned()
                .collect();
            return ResponseTemplate::new(200).set_body_json(json!({
                "messages": listed, "page": 0, "page_size": 50, "next_page_uri": null
            }));
        }
        let form: Vec<(String, String)> = url::form_urlencoded::parse(&request.body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let create = CreateRequest {
            at: Instant::now(),
            form,
        };
        let fault = state.faults.pop_front();
        let message = || {
            json!({
                "sid": format!("SM{}", uuid::Uuid::new_v4().simple()),
                "account_sid": TWILIO_ACCOUNT,
                "status": "queued",
                "from": create.get("From"),
                "to": create.get("To"),
                "body": create.get("Body").unwrap_or("template"),
                "date_created": chrono::Utc::now().to_rfc2822(),
                "date_sent": null,
                "direction": "outbound-api",
                "error_code": null,
                "error_message": null,
                "num_segments": "1",
                "price": null
            })
        };
        let response = match fault {
            None => {
                let created = message();
                state.created.push(created.clone());
                ResponseTemplate::new(201).set_body_json(created)
            }
            Some(Fault::Status(status, code)) => {
                twilio_error(status, code, "fault injected by the test")
            }
            Some(Fault::RetryAfter(seconds)) => twilio_error(429, Some(20429), "Too Many Requests")
                .insert_header("Retry-After", seconds.to_string().as_str()),
            Some(Fault::HangNotCreated(delay)) => {
                twilio_error(503, None, "never seen: the client gave up").set_delay(delay)
            }
            Some(Fault::HangCreated(delay)) => {
                let created = message();
                state.created.push(created.clone());
                ResponseTemplate::new(201)
                    .set_body_json(created)
                    .set_delay(delay)
            }
        };
        state.creates.push(create);
        response
    }
}

impl Respond for TwilioResponder {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        *self.requests.lock().unwrap() += 1;
        let path = request.url.path();
        let messages = format!("/2010-04-01/Accounts/{TWILIO_ACCOUNT}/Messages");
        if path == format!("{messages}.json") {
            return self.messages(request);
        }
        if let Some(sid) = path
            .strip_prefix(&format!("{messages}/"))
            .and_then(|rest| rest.strip_suffix(".json"))
        {
            let state = self.messages.lock().unwrap();
            return match state.created.iter().find(|m| m["sid"] == sid) {
                Some(message) => ResponseTemplate::new(200).set_body_json(message.clone()),
                None => twilio_error(404, Some(20404), "The requested resource was not found"),
            };
        }
        let numbers = self.numbers.lock().unwrap();
        let base = format!("/2010-04-01/Accounts/{TWILIO_ACCOUNT}/IncomingPhoneNumbers");
        let not_found = || {
            ResponseTemplate::new(404).set_body_json(json!({"code": 20404, "message": "The requested resource was not found", "more_info": "https://www.twilio.com/docs/errors/20404", "status": 404}))
        };
        if path == format!("{base}.json") {
            let wanted = request
                .url
                .query_pairs()
                .find(|(k, _)| k == "PhoneNumber")
                .map(|(_, v)| v.into_owned());
            let items: Vec<Value> = numbers
                .values()
                .filter(|n| wanted.as_deref().is_none_or(|w| n["phone_number"] == w))
                .cloned()
                .collect();
            return ResponseTemplate::new(200).set_body_json(json!({
                "incoming_phone_numbers": items, "page": 0, "page_size": 50, "start": 0, "end": 0,
                "uri": format!("{base}.json"), "first_page_uri": format!("{base}.json"),
                "next_page_uri": null, "previous_page_uri": null
            }));
        }
        let Some(sid) = path
            .strip_prefix(&format!("{base}/"))
            .and_then(|rest| rest.strip_suffix(".json"))
        else {
            return not_found();
        };
        let found = numbers.values().find(|n| n["sid"] == sid).cloned();
        drop(numbers);
        match (request.method.as_str(), found) {
            ("GET", Some(number)) => ResponseTemplate::new(200).set_body_json(number),
            ("DELETE", Some(number)) => {
                self.numbers
                    .lock()
                    .unwrap()
                    .remove(number["phone_number"].as_str().unwrap_or(""));
                ResponseTemplate::new(204)
            }
            (_, _) => not_found(),
        }
    }
}

impl FakeTwilio {
    pub async fn start() -> Self {
        let server = MockServer::start().await;
        let numbers = Arc::new(Mutex::new(BTreeMap::new()));
        let requests = Arc::new(Mutex::new(0));
        let messages = Arc::new(Mutex::new(MessagesState::default()));
        Mock::given(any())
            .respond_with(TwilioResponder {
                numbers: numbers.clone(),
                requests: requests.clone(),
                messages: messages.clone(),
            })
            .mount(&server)
            .await;
        Self {
            server: Arc::new(server),
            numbers,
            requests,
            messages,
        }
    }

    /// The next create requests meet these faults, in order.
    pub fn fault(&self, faults: &[Fault]) {
        self.messages
            .lock()
            .unwrap()
            .faults
            .extend(faults.iter().copied());
    }

    /// Every POST Messages.json so far.
    pub fn creates(&self) -> Vec<CreateRequest> {
        self.messages.lock().unwrap().creates.clone()
    }

    /// Messages that exist in the fake Twilio.
    pub fn created(&self) -> Vec<Value> {
        self.messages.lock().unwrap().created.clone()
    }

    /// What Twilio will say about a message from now on (GET by SID).
    pub fn set_status(&self, sid: &str, status: &str) {
        let mut state = self.messages.lock().unwrap();
        if let Some(message) = state.created.iter_mut().find(|m| m["sid"] == sid) {
            message["status"] = json!(status);
        }
    }

    pub fn lookups(&self) -> usize {
        self.messages.lock().unwrap().lookups
    }

    pub fn url(&self) -> String {
        self.server.uri()
    }

    /// Registers a voice-capable number; returns its PN SID.
    pub fn add_number(&self, e164: &str) -> String {
        let sid = format!("PN{}", uuid::Uuid::new_v4().simple());
        self.numbers.lock().unwrap().insert(
            e164.to_owned(),
            json!({
                "sid": sid, "account_sid": TWILIO_ACCOUNT, "phone_number": e164,
                "friendly_name": e164, "status": "in-use",
                "capabilities": {"voice": true, "sms": false, "mms": false, "fax": false}
            }),
        );
        sid
    }

    pub fn request_count(&self) -> usize {
        *self.requests.lock().unwrap()
    }
}

/// Flags that point a server at the fakes, with fast retries.
pub fn provider_args(vapi: Option<&FakeVapi>, twilio: &FakeTwilio) -> Vec<String> {
    let mut args = vec![
        "--public-url".to_owned(),
        PUBLIC_URL.to_owned(),
        "--vapi-webhook-secret".to_owned(),
        WEBHOOK_SECRET.to_owned(),
        "--twilio-account-sid".to_owned(),
        TWILIO_ACCOUNT.to_owned(),
        "--twilio-auth-token".to_owned(),
        TWILIO_TOKEN.to_owned(),
        "--twilio-base-url".to_owned(),
        twilio.url(),
        "--provider-retries".to_owned(),
        "2".to_owned(),
        "--provider-retry-min-ms".to_owned(),
        "1".to_owned(),
        "--provider-timeout-ms".to_owned(),
        "2000".to_owned(),
        "--link-retry-base-ms".to_owned(),
        "20".to_owned(),
        "--link-reconcile-interval-ms".to_owned(),
        "50".to_owned(),
        "--link-drift-check-ms".to_owned(),
        "100".to_owned(),
    ];
    if let Some(vapi) = vapi {
        args.extend([
            "--vapi-api-key".to_owned(),
            VAPI_KEY.to_owned(),
            "--vapi-base-url".to_owned(),
            vapi.url(),
        ]);
    }
    args
}
