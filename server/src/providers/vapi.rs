//! Vapi REST client (phone numbers, assistants).
//!
//! Only what linking an order needs: import a Twilio number into Vapi, point
//! it at our webhook, unlink or delete it, and read an assistant to check
//! where it sends its messages. Transient failures are retried per
//! [`RetryPolicy`]; the API key, webhook header values, Twilio secrets and
//! full phone numbers never reach logs or `Debug` output.

use std::{collections::BTreeMap, fmt, time::Duration};

use reqwest::{
    Method, StatusCode,
    header::{ACCEPT, CONTENT_TYPE, HeaderMap},
};
use serde::{Deserialize, Serialize, Serializer};
use uuid::Uuid;

use crate::{
    config::Secret,
    domain::phone::{PhoneNumber, mask},
    providers::retry::{RetryPolicy, is_retryable_status, retry_after},
};

/// Vapi's public API.
pub const DEFAULT_BASE_URL: &str = "https://api.vapi.ai";

/// Vapi rejects longer phone-number names with a 400.
pub const MAX_NAME_CHARS: usize = 40;

/// The most numbers `GET /phone-number` returns in one page.
const LIST_LIMIT: &str = "1000";

/// `reason()` is stored in a column; a 400 can list many violations.
const MAX_REASON_CHARS: usize = 500;

/// How to reach Vapi.
#[derive(Debug, Clone)]
pub struct VapiConfig {
    /// Usually [`DEFAULT_BASE_URL`]; tests point it at a mock server.
    pub base_url: String,
    /// The org's private API key.
    pub api_key: Secret,
    /// Per attempt, connection and body included.
    pub timeout: Duration,
    pub retry: RetryPolicy,
}

impl VapiConfig {
    /// Vapi's public API, 10 s per attempt, the default retry policy.
    pub fn new(api_key: Secret) -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_owned(),
            api_key,
            timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
        }
    }
}

/// Why a Vapi call failed.
#[derive(Debug, thiserror::Error)]
pub enum VapiError {
    /// Vapi answered with a non-2xx status. `error` and `message` come from
    /// its NestJS body (`{statusCode, error, message: string | string[]}`),
    /// the message list joined with "; ".
    #[error("vapi {status}: {message}")]
    Api {
        status: u16,
        error: Option<String>,
        message: String,
    },
    #[error("vapi: request timed out")]
    Timeout,
    /// Vapi could not be reached (or the client could not be built).
    #[error("vapi: connection failed: {0}")]
    Connect(String),
    /// A 2xx whose body is not what the API documents.
    #[error("vapi: unreadable response: {0}")]
    Decode(String),
    /// An id that is not a UUID; no request was sent.
    #[error("vapi: invalid id {0:?} (expected a UUID)")]
    InvalidId(String),
}

impl VapiError {
    /// Worth trying again later: 429, 5xx, timeouts and connection failures.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Api { status, .. } => StatusCode::from_u16(*status)
                .map(is_retryable_status)
                .unwrap_or(false),
            Self::Timeout | Self::Connect(_) => true,
            Self::Decode(_) | Self::InvalidId(_) => false,
        }
    }

    /// The HTTP status when Vapi answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } => Some(*status),
            Self::Timeout | Self::Connect(_) | Self::Decode(_) | Self::InvalidId(_) => None,
        }
    }

    /// One bounded line to store, e.g. `vapi 400: property x should not exist`.
    pub fn reason(&self) -> String {
        let line = one_line(&self.to_string());
        if line.chars().count() > MAX_REASON_CHARS {
            let mut cut: String = line.chars().take(MAX_REASON_CHARS - 1).collect();
            cut.push('…');
            cut
        } else {
            line
        }
    }
}

/// Where Vapi sends server messages for a number or an assistant.
#[derive(Serialize, Deserialize, Clone, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct VapiServer {
    /// Defaults to empty so that a server object without a URL still reads.
    #[serde(default)]
    pub url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential_id: Option<String>,
    /// Static headers sent with every message; ours carry the webhook secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u32>,
}

// Header values hold our webhook secret: only their names are shown.
impl fmt::Debug for VapiServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers = self.headers.as_ref().map(|h| {
            h.keys()
                .map(|k| (k.as_str(), "***"))
                .collect::<BTreeMap<_, _>>()
        });
        f.debug_struct("VapiServer")
            .field("url", &self.url)
            .field("credential_id", &self.credential_id)
            .field("headers", &headers)
            .field("timeout_seconds", &self.timeout_seconds)
            .finish()
    }
}

/// How Vapi authenticates to Twilio for an imported number.
#[derive(Clone, Debug)]
pub enum TwilioAuth {
    /// The account's auth token.
    AuthToken(Secret),
    /// An API key (`SK…`) and its secret.
    ApiKey { key: String, secret: Secret },
}

/// `POST /phone-number` body importing a Twilio number (`provider: "twilio"`).
#[derive(Clone, Debug)]
pub struct CreatePhoneNumber {
    pub number: PhoneNumber,
    pub twilio_account_sid: String,
    pub twilio_auth: TwilioAuth,
    /// Cut to [`MAX_NAME_CHARS`] by [`CreatePhoneNumber::new`] and again
    /// when sent.
    pub name: String,
    pub assistant_id: Option<String>,
    pub server: VapiServer,
    /// True makes Vapi rewrite the Twilio SMS webhook; our numbers are voice-only.
    pub sms_enabled: bool,
}

impl CreatePhoneNumber {
    /// A voice-only import (`smsEnabled: false`) with no assistant yet; the
    /// name is cut to 40 characters.
    pub fn new(
        number: PhoneNumber,
        twilio_account_sid: impl Into<String>,
        twilio_auth: TwilioAuth,
        name: &str,
        server: VapiServer,
    ) -> Self {
        Self {
            number,
            twilio_account_sid: twilio_account_sid.into(),
            twilio_auth,
            name: truncate_name(name),
            assistant_id: None,
            server,
            sms_enabled: false,
        }
    }

    /// The assistant that answers the number's calls.
    pub fn with_assistant(mut self, assistant_id: impl Into<String>) -> Self {
        self.assistant_id = Some(assistant_id.into());
        self
    }
}

// A borrowed view in wire form, so the secrets are exposed only while
// serializing and never sit in a derived Debug.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CreateWire<'a> {
    provider: &'static str,
    number: &'a str,
    twilio_account_sid: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    twilio_auth_token: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    twilio_api_key: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    twilio_api_secret: Option<&'a str>,
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    assistant_id: Option<&'a str>,
    server: &'a VapiServer,
    sms_enabled: bool,
}

impl Serialize for CreatePhoneNumber {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let (token, api_key, api_secret) = match &self.twilio_auth {
            TwilioAuth::AuthToken(token) => (Some(token.expose()), None, None),
            TwilioAuth::ApiKey { key, secret } => (None, Some(key.as_str()), Some(secret.expose())),
        };
        CreateWire {
            provider: "twilio",
            number: self.number.as_str(),
            twilio_account_sid: &self.twilio_account_sid,
            twilio_auth_token: token,
            twilio_api_key: api_key,
            twilio_api_secret: api_secret,
            name: truncate_name(&self.name),
            assistant_id: self.assistant_id.as_deref(),
            server: &self.server,
            sms_enabled: self.sms_enabled,
        }
        .serialize(serializer)
    }
}

/// `PATCH /phone-number/{id}` body: `provider: "twilio"` (the discriminator)
/// plus only the fields that are set.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct UpdatePhoneNumber {
    /// `Some(None)` sends `"assistantId": null` (unlink); `None` leaves it.
    pub assistant_id: Option<Option<String>>,
    pub server: Option<VapiServer>,
    pub sms_enabled: Option<bool>,
    /// Cut to [`MAX_NAME_CHARS`] when sent.
    pub name: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UpdateWire<'a> {
    provider: &'static str,
    // Some(None) serializes as null, which is the point.
    #[serde(skip_serializing_if = "Option::is_none")]
    assistant_id: Option<Option<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    server: Option<&'a VapiServer>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sms_enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
}

impl Serialize for UpdatePhoneNumber {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        UpdateWire {
            provider: "twilio",
            assistant_id: self.assistant_id.as_ref().map(Option::as_deref),
            server: self.server.as_ref(),
            sms_enabled: self.sms_enabled,
            name: self.name.as_deref().map(truncate_name),
        }
        .serialize(serializer)
    }
}

/// A phone number as Vapi returns it. Unknown fields, Twilio secrets among
/// them, are dropped while reading.
#[derive(Deserialize, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VapiPhoneNumber {
    pub id: String,
    pub number: Option<String>,
    pub provider: Option<String>,
    pub name: Option<String>,
    pub assistant_id: Option<String>,
    pub server: Option<VapiServer>,
    pub sms_enabled: Option<bool>,
    /// `active`, `activating` or `blocked`.
    pub status: Option<String>,
    pub twilio_account_sid: Option<String>,
}

// The number is personal data: masked like every number in our logs.
impl fmt::Debug for VapiPhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VapiPhoneNumber")
            .field("id", &self.id)
            .field("number", &self.number.as_deref().map(mask))
            .field("provider", &self.provider)
            .field("name", &self.name)
            .field("assistant_id", &self.assistant_id)
            .field("server", &self.server)
            .field("sms_enabled", &self.sms_enabled)
            .field("status", &self.status)
            .field("twilio_account_sid", &self.twilio_account_sid)
            .finish()
    }
}

/// The parts of an assistant that decide where its messages go.
#[derive(Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VapiAssistant {
    pub id: String,
    pub name: Option<String>,
    /// When set, it wins over the number's server and diverts our messages.
    pub server: Option<VapiServer>,
    /// Must include `end-of-call-report` and `status-update`.
    pub server_messages: Option<Vec<String>>,
}

/// A Vapi REST client. Cheap to clone: clones share one connection pool.
#[derive(Clone)]
pub struct VapiClient {
    http: reqwest::Client,
    /// Without a trailing slash; paths start with one.
    base_url: String,
    api_key: Secret,
    retry: RetryPolicy,
}

impl fmt::Debug for VapiClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VapiClient")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

/// One request, replayable across attempts.
struct Call<'a> {
    method: Method,
    path: String,
    query: &'a [(&'a str, &'a str)],
    body: Option<Vec<u8>>,
    /// Whether repeating it after an unknown outcome is harmless.
    idempotent: bool,
}

/// One failed attempt.
struct Failure {
    error: VapiError,
    retry_after: Option<Duration>,
    /// Vapi certainly did not act on the request (connection refused, 429).
    not_processed: bool,
}

impl VapiClient {
    /// A client for `config.base_url`. Fails on a base URL that is not
    /// http(s); no request is sent.
    pub fn new(config: VapiConfig) -> Result<Self, VapiError> {
        let base = url::Url::parse(config.base_url.trim())
            .map_err(|e| VapiError::Connect(format!("invalid Vapi base URL: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(VapiError::Connect(
                "invalid Vapi base URL: expected http(s)".to_owned(),
            ));
        }
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(5)))
            .user_agent(concat!("centralino/", env!("CARGO_PKG_VERSION")))
            // The API does not redirect; a redirect is an error to report, not follow.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| VapiError::Connect(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            http,
            base_url: base.as_str().trim_end_matches('/').to_owned(),
            api_key: config.api_key,
            retry: config.retry,
        })
    }

    /// Imports a Twilio number (`POST /phone-number`, 201).
    ///
    /// Retried only when Vapi certainly did not act (connection refused,
    /// 429): after a timeout or a 5xx the number may exist already, so the
    /// caller should [`find_phone_number`](Self::find_phone_number) before
    /// creating again.
    pub async fn create_phone_number(
        &self,
        body: &CreatePhoneNumber,
    ) -> Result<VapiPhoneNumber, VapiError> {
        if let Some(assistant) = &body.assistant_id {
            uuid_id(assistant)?;
        }
        let call = Call {
            method: Method::POST,
            path: "/phone-number".to_owned(),
            query: &[],
            body: Some(to_json(body)?),
            idempotent: false,
        };
        let created: VapiPhoneNumber = decode(&self.send(call).await?, "phone number")?;
        tracing::info!(
            vapi_phone_number_id = %created.id,
            number = %body.number.masked(),
            "vapi number imported"
        );
        Ok(created)
    }

    /// `GET /phone-number/{id}`.
    pub async fn get_phone_number(&self, id: &str) -> Result<VapiPhoneNumber, VapiError> {
        self.get_by_id("/phone-number", id, "phone number").await
    }

    /// `PATCH /phone-number/{id}` with only the fields set in `patch`.
    pub async fn update_phone_number(
        &self,
        id: &str,
        patch: &UpdatePhoneNumber,
    ) -> Result<VapiPhoneNumber, VapiError> {
        let path = format!("/phone-number/{}", uuid_id(id)?);
        if let Some(Some(assistant)) = &patch.assistant_id {
            uuid_id(assistant)?;
        }
        let call = Call {
            method: Method::PATCH,
            path,
            query: &[],
            body: Some(to_json(patch)?),
            // The same patch applied twice leaves the same number.
            idempotent: true,
        };
        decode(&self.send(call).await?, "phone number")
    }

    /// `DELETE /phone-number/{id}`. A 404 counts as done: the number is gone,
    /// possibly by an earlier attempt of ours.
    pub async fn delete_phone_number(&self, id: &str) -> Result<(), VapiError> {
        let call = Call {
            method: Method::DELETE,
            path: format!("/phone-number/{}", uuid_id(id)?),
            query: &[],
            body: None,
            idempotent: true,
        };
        match self.send(call).await {
            // The body echoes the deleted number; nothing in it is needed.
            Ok(_) => Ok(()),
            Err(VapiError::Api { status: 404, .. }) => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// `GET /phone-number?limit=1000`: the org's numbers (the v1 list has no
    /// cursor; 1000 is its maximum page).
    pub async fn list_phone_numbers(&self) -> Result<Vec<VapiPhoneNumber>, VapiError> {
        let call = Call {
            method: Method::GET,
            path: "/phone-number".to_owned(),
            query: &[("limit", LIST_LIMIT)],
            body: None,
            idempotent: true,
        };
        decode(&self.send(call).await?, "phone number list")
    }

    /// An earlier import of the same E.164 number, if any. Digits are
    /// compared, so a stored number without `+` still matches.
    pub async fn find_phone_number(
        &self,
        number: &PhoneNumber,
    ) -> Result<Option<VapiPhoneNumber>, VapiError> {
        let wanted = digits(number.as_str());
        let found = self
            .list_phone_numbers()
            .await?
            .into_iter()
            .find(|candidate| {
                candidate
                    .number
                    .as_deref()
                    .is_some_and(|n| digits(n) == wanted)
            });
        tracing::debug!(
            number = %number.masked(),
            vapi_phone_number_id = found.as_ref().map(|f| f.id.as_str()),
            "vapi number lookup"
        );
        Ok(found)
    }

    /// `GET /call?phoneNumberId=&createdAtGt=&createdAtLt=&limit=`: one page
    /// of a number's calls, newest first, as raw Call objects (the report
    /// mapping in `webhook/messages.rs` reads them). Page by moving
    /// `created_before` to the oldest `createdAt` of the previous page.
    pub async fn list_calls(
        &self,
        phone_number_id: &str,
        created_after: chrono::DateTime<chrono::Utc>,
        created_before: Option<chrono::DateTime<chrono::Utc>>,
        limit: u32,
    ) -> Result<Vec<serde_json::Value>, VapiError> {
        let id = uuid_id(phone_number_id)?;
        let after = created_after.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let before = created_before.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
        let limit = limit.clamp(1, 1000).to_string();
        let mut query = vec![
            ("phoneNumberId", id.as_str()),
            ("createdAtGt", after.as_str()),
            ("limit", limit.as_str()),
        ];
        if let Some(before) = &before {
            query.push(("createdAtLt", before.as_str()));
        }
        let call = Call {
            method: Method::GET,
            path: "/call".to_owned(),
            query: &query,
            body: None,
            idempotent: true,
        };
        decode(&self.send(call).await?, "call list")
    }

    /// `GET <collection>/{id}` with the id checked as a UUID first.
    async fn get_by_id<T: serde::de::DeserializeOwned>(
        &self,
        collection: &str,
        id: &str,
        what: &'static str,
    ) -> Result<T, VapiError> {
        let call = Call {
            method: Method::GET,
            path: format!("{collection}/{}", uuid_id(id)?),
            query: &[],
            body: None,
            idempotent: true,
        };
        decode(&self.send(call).await?, what)
    }

    /// `GET /assistant/{id}`.
    pub async fn get_assistant(&self, id: &str) -> Result<VapiAssistant, VapiError> {
        self.get_by_id("/assistant", id, "assistant").await
    }

    /// Sends `call`, retrying retryable failures per the policy, and returns
    /// the 2xx body.
    async fn send(&self, call: Call<'_>) -> Result<Vec<u8>, VapiError> {
        let mut delays = self.retry.delays();
        let mut attempt: usize = 1;
        loop {
            let failure = match self.attempt(&call).await {
                Ok(body) => return Ok(body),
                Err(failure) => failure,
            };
            let repeatable =
                failure.error.is_retryable() && (call.idempotent || failure.not_processed);
            let Some(backoff) = delays.next().filter(|_| repeatable) else {
                return Err(failure.error);
            };
            let wait = self.retry.wait(backoff, failure.retry_after);
            tracing::warn!(
                method = %call.method,
                path = %call.path,
                status = failure.error.status(),
                attempt,
                wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                error = %failure.error.reason(),
                "vapi request failed; retrying"
            );
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    async fn attempt(&self, call: &Call<'_>) -> Result<Vec<u8>, Failure> {
        let url = format!("{}{}", self.base_url, call.path);
        let mut request = self
            .http
            .request(call.method.clone(), url)
            // bearer_auth marks the header sensitive, keeping it out of debug output.
            .bearer_auth(self.api_key.expose())
            .header(ACCEPT, "application/json");
        if !call.query.is_empty() {
            request = request.query(call.query);
        }
        if let Some(body) = &call.body {
            request = request
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone());
        }
        let response = request.send().await.map_err(transport_failure)?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await.map_err(transport_failure)?;
        if status.is_success() {
            return Ok(Vec::from(body));
        }
        Err(api_failure(status, &headers, &body))
    }
}

fn transport_failure(err: reqwest::Error) -> Failure {
    // Refused or unreachable: the request never got to Vapi.
    let not_processed = err.is_connect();
    let error = if err.is_timeout() {
        VapiError::Timeout
    } else {
        VapiError::Connect(error_chain(&err.without_url()))
    };
    Failure {
        error,
        retry_after: None,
        not_processed,
    }
}

fn api_failure(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Failure {
    let (error, message) = nest_error(status, body);
    Failure {
        error: VapiError::Api {
            status: status.as_u16(),
            error,
            message,
        },
        retry_after: retry_after(headers),
        // A rate-limited request was turned away before any work.
        not_processed: status == StatusCode::TOO_MANY_REQUESTS,
    }
}

/// Reads `{statusCode, error, message: string | string[]}`; anything else
/// falls back to the body's first line or the status's reason phrase.
fn nest_error(status: StatusCode, body: &[u8]) -> (Option<String>, String) {
    let parsed = serde_json::from_slice::<serde_json::Value>(body).ok();
    let field = |name: &str| parsed.as_ref().and_then(|v| v.get(name)).cloned();
    let error = field("error").and_then(|e| e.as_str().map(str::to_owned));
    let message = match field("message") {
        Some(serde_json::Value::String(text)) => Some(text),
        Some(serde_json::Value::Array(items)) => Some(
            items
                .iter()
                .map(|item| {
                    item.as_str()
                        .map_or_else(|| item.to_string(), str::to_owned)
                })
                .collect::<Vec<_>>()
                .join("; "),
        ),
        Some(
            serde_json::Value::Null
            | serde_json::Value::Bool(_)
            | serde_json::Value::Number(_)
            | serde_json::Value::Object(_),
        )
        | None => None,
    };
    let message = message
        .filter(|m| !m.trim().is_empty())
        .or_else(|| error.clone())
        .or_else(|| {
            // Not JSON (a proxy's HTML page, say): a short first line. Other
            // JSON is not echoed, since we cannot tell what it carries.
            if parsed.is_some() {
                return None;
            }
            let text = String::from_utf8_lossy(body);
            let first = text.lines().map(str::trim).find(|l| !l.is_empty())?;
            Some(first.chars().take(200).collect())
        })
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned());
    (error, message)
}

fn decode<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T, VapiError> {
    serde_json::from_slice(body)
        .map_err(|e| VapiError::Decode(format!("{what}: {}", redact_quoted(&e.to_string()))))
}

fn to_json<T: Serialize>(body: &T) -> Result<Vec<u8>, VapiError> {
    // Serializing these plain structs cannot fail; mapped anyway rather than panic.
    serde_json::to_vec(body).map_err(|e| VapiError::Decode(format!("request body: {e}")))
}

/// The hyphenated form of a UUID id, or `InvalidId` before any request.
fn uuid_id(id: &str) -> Result<String, VapiError> {
    Uuid::try_parse(id.trim())
        .map(|u| u.hyphenated().to_string())
        .map_err(|_| VapiError::InvalidId(id.chars().take(64).collect()))
}

fn truncate_name(name: &str) -> String {
    // Vapi counts characters (code points), so cut on a char boundary.
    let cut: String = name.trim().chars().take(MAX_NAME_CHARS).collect();
    cut.trim_end().to_owned()
}

fn digits(number: &str) -> String {
    number.chars().filter(char::is_ascii_digit).collect()
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// serde_json quotes offending string values (`invalid type: string "…"`);
/// those may be numbers or secrets, so they are hidden.
fn redact_quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut inside = false;
    for c in text.chars() {
        if c == '"' {
            if inside {
                out.push_str("…\"");
            } else {
                out.push('"');
            }
            inside = !inside;
        } else if !inside {
            out.push(c);
        }
    }
    out
}

/// The error and its causes, e.g. `error sending request: connection refused`.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use wiremock::{
        Mock, MockServer, ResponseTemplate,
        matchers::{any, body_json, header, method, path, query_param},
    };

    use super::*;

    const KEY: &str = "vapi-private-key-0123";
    const NUMBER_ID: &str = "3f9b8c7d-2e1a-4d5c-9b8a-7c6d5e4f3a21";
    const ASSISTANT_ID: &str = "a7c3e2d1-4b5f-4e6a-8c9d-0f1e2d3c4b5a";
    const WEBHOOK_SECRET: &str = "whsec-do-not-log-42";

    fn secret(value: &str) -> Secret {
        value.parse().unwrap()
    }

    fn fast_retries() -> RetryPolicy {
        RetryPolicy {
            max_retries: 3,
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(1),
        }
    }

    fn client_with(server: &MockServer, timeout: Duration, retry: RetryPolicy) -> VapiClient {
        VapiClient::new(VapiConfig {
            base_url: server.uri(),
            api_key: secret(KEY),
            timeout,
            retry,
        })
        .unwrap()
    }

    fn client(server: &MockServer) -> VapiClient {
        client_with(server, Duration::from_secs(5), fast_retries())
    }

    /// examples/vapi/phone_number_get_twilio.json, with an echoed auth token
    /// that must be dropped.
    fn phone_number_json(id: &str, number: &str) -> serde_json::Value {
        json!({
            "id": id,
            "orgId": "5f0c1a9e-6d2b-4c47-9a3e-2b7d8e1f4a10",
            "provider": "twilio",
            "number": number,
            "name": "Navigli vendite",
            "status": "active",
            "twilioAccountSid": "AC00000000000000000000000000000a01",
            "twilioAuthToken": "echoed-twilio-token",
            "smsEnabled": false,
            "server": {
                "url": "https://voce.example-immobiliare.it/vapi/webhook",
                "timeoutSeconds": 20
            },
            "createdAt": "2026-02-02T10:15:03.411Z",
            "updatedAt": "2026-02-20T16:02:47.090Z",
            "assistantId": ASSISTANT_ID
        })
    }

    fn our_server() -> VapiServer {
        VapiServer {
            url: "https://centralino.example.it/webhooks/vapi".to_owned(),
            headers: Some(BTreeMap::from([(
                "X-Vapi-Secret".to_owned(),
                WEBHOOK_SECRET.to_owned(),
            )])),
            ..VapiServer::default()
        }
    }

    fn number() -> PhoneNumber {
        PhoneNumber::parse("+390200000101").unwrap()
    }

    #[tokio::test]
    async fn create_sends_the_twilio_body_with_sms_off_and_the_name_cut_to_40_chars() {
        let server = MockServer::start().await;
        let long_name = format!("{}ßèé tail", "a".repeat(37));
        let expected_name = format!("{}ßèé", "a".repeat(37));
        Mock::given(method("POST"))
            .and(path("/phone-number"))
            .and(header("authorization", format!("Bearer {KEY}").as_str()))
            .and(body_json(json!({
                "provider": "twilio",
                "number": "+390200000101",
                "twilioAccountSid": "AC00000000000000000000000000000a01",
                "twilioAuthToken": "twilio-token",
                "name": expected_name,
                "assistantId": ASSISTANT_ID,
                "server": {
                    "url": "https://centralino.example.it/webhooks/vapi",
                    "headers": {"X-Vapi-Secret": WEBHOOK_SECRET}
                },
                "smsEnabled": false
            })))
            .respond_with(
                ResponseTemplate::new(201)
                    .set_body_json(phone_number_json(NUMBER_ID, "+390200000101")),
            )
            .expect(1)
            .mount(&server)
            .await;

        let body = CreatePhoneNumber::new(
            number(),
            "AC00000000000000000000000000000a01",
            TwilioAuth::AuthToken(secret("twilio-token")),
            &long_name,
            our_server(),
        )
        .with_assistant(ASSISTANT_ID);
        assert_eq!(body.name.chars().count(), 40);
        let created = client(&server).create_phone_number(&body).await.unwrap();
        assert_eq!(created.id, NUMBER_ID);
        assert_eq!(created.sms_enabled, Some(false));
    }

    #[tokio::test]
    async fn create_with_an_api_key_sends_key_and_secret_instead_of_the_token() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/phone-number"))
            .and(body_json(json!({
                "provider": "twilio",
                "number": "+390200000101",
                "twilioAccountSid": "AC1",
                "twilioApiKey": "SK1",
                "twilioApiSecret": "api-secret",
                "name": "Navigli",
                "server": {"url": "https://centralino.example.it/webhooks/vapi", "credentialId": "cred-1"},
                "smsEnabled": false
            })))
            .respond_with(
                ResponseTemplate::new(201).set_body_json(phone_number_json(NUMBER_ID, "+390200000101")),
            )
            .expect(1)
            .mount(&server)
            .await;

        let body = CreatePhoneNumber::new(
            number(),
            "AC1",
            TwilioAuth::ApiKey {
                key: "SK1".to_owned(),
                secret: secret("api-secret"),
            },
            "Navigli",
            VapiServer {
                url: "https://centralino.example.it/webhooks/vapi".to_owned(),
                credential_id: Some("cred-1".to_owned()),
                ..VapiServer::default()
            },
        );
        client(&server).create_phone_number(&body).await.unwrap();
    }

    #[tokio::test]
    async fn create_is_not_retried_after_a_server_error_because_the_number_may_exist() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(500))
            .expect(1)
            .mount(&server)
            .await;
        let body = CreatePhoneNumber::new(
            number(),
            "AC1",
            TwilioAuth::AuthToken(secret("t")),
            "n",
            our_server(),
        );
        let err = client(&server)
            .create_phone_number(&body)
            .await
            .unwrap_err();
        assert_eq!(err.status(), Some(500));
        assert!(err.is_retryable());
    }

    #[tokio::test]
    async fn create_is_retried_after_a_429() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(429))
            .up_to_n_times(1)
            .expect(1)
            .with_priority(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .respond_with(
                ResponseTemplate::new(201)
                    .set_body_json(phone_number_json(NUMBER_ID, "+390200000101")),
            )
            .expect(1)
            .mount(&server)
            .await;
        let body = CreatePhoneNumber::new(
            number(),
            "AC1",
            TwilioAuth::AuthToken(secret("t")),
            "n",
            our_server(),
        );
        client(&server).create_phone_number(&body).await.unwrap();
    }

    #[tokio::test]
    async fn patch_with_some_none_sends_assistant_id_null_and_nothing_else_unset() {
        let server = MockServer::start().await;
        Mock::given(method("PATCH"))
            .and(path(format!("/phone-number/{NUMBER_ID}")))
            .and(body_json(
                json!({"provider": "twilio", "assistantId": null}),
            ))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(phone_number_json(NUMBER_ID, "+390200000101")),
            )
            .expect(1)
            .mount(&server)
            .await;

        let patch = UpdatePhoneNumber {
            assistant_id: Some(None),
            ..UpdatePhoneNumber::default()
        };
        client(&server)
            .update_phone_number(NUMBER_ID, &patch)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn patch_sends_every_set_field_and_cuts_the_name() {
        let server = MockServer::start().await;
        Mock::given(method("PATCH"))
            .and(path(format!("/phone-number/{NUMBER_ID}")))
            .and(body_json(json!({
                "provider": "twilio",
                "assistantId": ASSISTANT_ID,
                "server": {
                    "url": "https://centralino.example.it/webhooks/vapi",
                    "headers": {"X-Vapi-Secret": WEBHOOK_SECRET}
                },
                "smsEnabled": false,
                "name": "b".repeat(40)
            })))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(phone_number_json(NUMBER_ID, "+390200000101")),
            )
            .expect(1)
            .mount(&server)
            .await;

        let patch = UpdatePhoneNumber {
            assistant_id: Some(Some(ASSISTANT_ID.to_owned())),
            server: Some(our_server()),
            sms_enabled: Some(false),
            name: Some("b".repeat(50)),
        };
        client(&server)
            .update_phone_number(NUMBER_ID, &patch)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn get_reads_the_twilio_number_and_drops_echoed_secrets() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path(format!("/phone-number/{NUMBER_ID}")))
            .and(header("authorization", format!("Bearer {KEY}").as_str()))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(phone_number_json(NUMBER_ID, "+390200000101")),
            )
            .expect(1)
            .mount(&server)
            .await;

        let got = client(&server).get_phone_number(NUMBER_ID).await.unwrap();
        assert_eq!(
            got,
            VapiPhoneNumber {
                id: NUMBER_ID.to_owned(),
                number: Some("+390200000101".to_owned()),
                provider: Some("twilio".to_owned()),
                name: Some("Navigli vendite".to_owned()),
                assistant_id: Some(ASSISTANT_ID.to_owned()),
                server: Some(VapiServer {
                    url: "https://voce.example-immobiliare.it/vapi/webhook".to_owned(),
                    timeout_seconds: Some(20),
                    ..VapiServer::default()
                }),
                sms_enabled: Some(false),
                status: Some("active".to_owned()),
                twilio_account_sid: Some("AC00000000000000000000000000000a01".to_owned()),
            }
        );
        let debug = format!("{got:?}");
        assert!(!debug.contains("echoed-twilio-token"));
        assert!(!debug.contains("+390200000101"), "{debug}");
    }

    #[tokio::test]
    async fn find_returns_the_matching_number_among_several() {
        let server = MockServer::start().await;
        let wanted_id = "11111111-2222-4333-8444-555555555555";
        Mock::given(method("GET"))
            .and(path("/phone-number"))
            .and(query_param("limit", "1000"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!([
                phone_number_json(NUMBER_ID, "+390200000999"),
                {"id": "99999999-2222-4333-8444-555555555555", "provider": "vapi"},
                phone_number_json(wanted_id, "+390200000101"),
            ])))
            .expect(1)
            .mount(&server)
            .await;

        let found = client(&server).find_phone_number(&number()).await.unwrap();
        assert_eq!(found.map(|f| f.id), Some(wanted_id.to_owned()));
    }

    #[tokio::test]
    async fn find_returns_none_when_no_number_matches() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/phone-number"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(json!([phone_number_json(NUMBER_ID, "+390200000999"),])),
            )
            .expect(1)
            .mount(&server)
            .await;

        assert_eq!(
            client(&server).find_phone_number(&number()).await.unwrap(),
            None
        );
    }

    #[tokio::test]
    async fn a_400_with_a_message_array_is_an_api_error_with_the_messages_joined_and_not_retried() {
        let server = MockServer::start().await;
        Mock::given(method("PATCH"))
            .respond_with(ResponseTemplate::new(400).set_body_json(json!({
                "message": [
                    "twilioAccountSid must be a string",
                    "property serverUrl should not exist"
                ],
                "error": "Bad Request",
                "statusCode": 400
            })))
            .expect(1)
            .mount(&server)
            .await;

        let err = client(&server)
            .update_phone_number(NUMBER_ID, &UpdatePhoneNumber::default())
            .await
            .unwrap_err();
        let VapiError::Api {
            status,
            error,
            message,
        } = &err
        else {
            panic!("expected an API error, got {err:?}");
        };
        assert_eq!(*status, 400);
        assert_eq!(error.as_deref(), Some("Bad Request"));
        assert_eq!(
            message,
            "twilioAccountSid must be a string; property serverUrl should not exist"
        );
        assert!(!err.is_retryable());
        assert_eq!(
            err.reason(),
            "vapi 400: twilioAccountSid must be a string; property serverUrl should not exist"
        );
    }

    #[tokio::test]
    async fn a_401_is_not_retried() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(401).set_body_json(json!({
                "message": "Invalid Key. Hot tip, you may be using the private key instead of the public key, or vice versa.",
                "error": "Unauthorized",
                "statusCode": 401
            })))
            .expect(1)
            .mount(&server)
            .await;

        let err = client(&server)
            .get_phone_number(NUMBER_ID)
            .await
            .unwrap_err();
        assert_eq!(err.status(), Some(401));
        assert!(!err.is_retryable());
        assert!(err.reason().starts_with("vapi 401: Invalid Key."));
    }

    #[tokio::test]
    async fn a_500_then_a_200_succeeds() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(
                ResponseTemplate::new(500).set_body_string("<html>\nupstream down</html>"),
            )
            .up_to_n_times(1)
            .expect(1)
            .with_priority(1)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(phone_number_json(NUMBER_ID, "+390200000101")),
            )
            .expect(1)
            .mount(&server)
            .await;

        let got = client(&server).get_phone_number(NUMBER_ID).await.unwrap();
        assert_eq!(got.id, NUMBER_ID);
    }

    #[tokio::test]
    async fn a_429_is_retried_until_the_retries_run_out() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "1"))
            .expect(4)
            .mount(&server)
            .await;

        let err = client(&server)
            .get_assistant(ASSISTANT_ID)
            .await
            .unwrap_err();
        assert_eq!(err.status(), Some(429));
        assert!(err.is_retryable());
        assert_eq!(err.reason(), "vapi 429: Too Many Requests");
    }

    #[tokio::test]
    async fn a_slow_answer_is_a_timeout_and_is_retried() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(phone_number_json(NUMBER_ID, "+390200000101"))
                    .set_delay(Duration::from_secs(2)),
            )
            .expect(2)
            .mount(&server)
            .await;
        let retry = RetryPolicy {
            max_retries: 1,
            ..fast_retries()
        };
        let err = client_with(&server, Duration::from_millis(100), retry)
            .get_phone_number(NUMBER_ID)
            .await
            .unwrap_err();
        assert!(matches!(err, VapiError::Timeout), "{err:?}");
        assert!(err.is_retryable());
    }

    #[tokio::test]
    async fn an_unreachable_server_is_a_retryable_connect_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let client = VapiClient::new(VapiConfig {
            base_url: format!("http://{addr}"),
            api_key: secret(KEY),
            timeout: Duration::from_secs(2),
            retry: fast_retries(),
        })
        .unwrap();
        let err = client.get_phone_number(NUMBER_ID).await.unwrap_err();
        assert!(matches!(err, VapiError::Connect(_)), "{err:?}");
        assert!(err.is_retryable());
        assert!(!err.reason().contains(KEY));
    }

    #[tokio::test]
    async fn deleting_a_number_that_is_already_gone_is_ok() {
        let server = MockServer::start().await;
        Mock::given(method("DELETE"))
            .and(path(format!("/phone-number/{NUMBER_ID}")))
            .respond_with(ResponseTemplate::new(404).set_body_json(json!({
                "message": "Not Found", "error": "Not Found", "statusCode": 404
            })))
            .expect(1)
            .mount(&server)
            .await;

        client(&server)
            .delete_phone_number(NUMBER_ID)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn deleting_ignores_the_echoed_number() {
        let server = MockServer::start().await;
        Mock::given(method("DELETE"))
            .and(path(format!("/phone-number/{NUMBER_ID}")))
            .respond_with(ResponseTemplate::new(200).set_body_string("not json at all"))
            .expect(1)
            .mount(&server)
            .await;

        client(&server)
            .delete_phone_number(NUMBER_ID)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_malformed_id_sends_no_request() {
        let server = MockServer::start().await;
        Mock::given(any())
            .respond_with(ResponseTemplate::new(200))
            .expect(0)
            .mount(&server)
            .await;
        let client = client(&server);

        let err = client.get_phone_number("../assistant").await.unwrap_err();
        assert!(matches!(err, VapiError::InvalidId(_)), "{err:?}");
        assert!(!err.is_retryable());
        assert!(matches!(
            client.delete_phone_number("").await,
            Err(VapiError::InvalidId(_))
        ));
        assert!(matches!(
            client.get_assistant("not-a-uuid").await,
            Err(VapiError::InvalidId(_))
        ));
        let unlink_to_bad = UpdatePhoneNumber {
            assistant_id: Some(Some("nope".to_owned())),
            ..UpdatePhoneNumber::default()
        };
        assert!(matches!(
            client.update_phone_number(NUMBER_ID, &unlink_to_bad).await,
            Err(VapiError::InvalidId(_))
        ));
    }

    #[tokio::test]
    async fn a_2xx_with_an_unexpected_body_is_a_decode_error_that_hides_values() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(json!({"id": NUMBER_ID, "smsEnabled": "+390200000101"})),
            )
            .expect(1)
            .mount(&server)
            .await;

        let err = client(&server)
            .get_phone_number(NUMBER_ID)
            .await
            .unwrap_err();
        assert!(matches!(err, VapiError::Decode(_)), "{err:?}");
        assert!(!err.is_retryable());
        assert!(!err.reason().contains("+390200000101"), "{}", err.reason());
    }

    #[tokio::test]
    async fn get_assistant_reads_server_messages_and_the_server_url() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path(format!("/assistant/{ASSISTANT_ID}")))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "id": ASSISTANT_ID,
                "orgId": "5f0c1a9e-6d2b-4c47-9a3e-2b7d8e1f4a10",
                "name": "Receptionist",
                "server": {"url": "https://elsewhere.example.com/hook", "timeoutSeconds": 20},
                "serverMessages": ["end-of-call-report", "status-update"],
                "clientMessages": ["transcript"],
                "model": {"provider": "openai", "model": "gpt-4o"},
                "createdAt": "2026-02-02T10:15:03.411Z",
                "updatedAt": "2026-02-20T16:02:47.090Z"
            })))
            .expect(1)
            .mount(&server)
            .await;

        let assistant = client(&server).get_assistant(ASSISTANT_ID).await.unwrap();
        assert_eq!(assistant.name.as_deref(), Some("Receptionist"));
        assert_eq!(
            assistant.server.map(|s| s.url).as_deref(),
            Some("https://elsewhere.example.com/hook")
        );
        assert_eq!(
            assistant.server_messages,
            Some(vec![
                "end-of-call-report".to_owned(),
                "status-update".to_owned()
            ])
        );
    }

    #[test]
    fn debug_output_shows_no_secret() {
        let client = VapiClient::new(VapiConfig::new(secret(KEY))).unwrap();
        let server = our_server();
        let body = CreatePhoneNumber::new(
            number(),
            "AC1",
            TwilioAuth::ApiKey {
                key: "SK1".to_owned(),
                secret: secret("twilio-api-secret"),
            },
            "n",
            server.clone(),
        );
        let token_body = CreatePhoneNumber::new(
            number(),
            "AC1",
            TwilioAuth::AuthToken(secret("twilio-auth-token")),
            "n",
            server.clone(),
        );
        let patch = UpdatePhoneNumber {
            server: Some(server.clone()),
            ..UpdatePhoneNumber::default()
        };
        let debug = format!("{client:?} {server:?} {body:?} {token_body:?} {patch:?}");
        for hidden in [
            KEY,
            WEBHOOK_SECRET,
            "twilio-api-secret",
            "twilio-auth-token",
            "+390200000101",
        ] {
            assert!(!debug.contains(hidden), "{hidden} leaked in {debug}");
        }
        assert!(debug.contains("X-Vapi-Secret"));
        assert!(debug.contains("api.vapi.ai"));
    }

    #[test]
    fn names_are_cut_on_a_char_boundary() {
        assert_eq!(truncate_name(&"é".repeat(45)), "é".repeat(40));
        assert_eq!(truncate_name("  Navigli  "), "Navigli");
    }

    #[test]
    fn a_base_url_that_is_not_http_is_refused() {
        assert!(matches!(
            VapiClient::new(VapiConfig {
                base_url: "mailto:ops@example.com".to_owned(),
                ..VapiConfig::new(secret(KEY))
            }),
            Err(VapiError::Connect(_))
        ));
    }
}
