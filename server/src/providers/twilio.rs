//! Twilio REST client (IncomingPhoneNumbers, Messages).
//!
//! Real HTTP against an injectable base URL, HTTP Basic auth (Auth Token or
//! API key), typed errors from Twilio's JSON error body, and retries of
//! transient failures per [`RetryPolicy`]. Secrets never reach `Debug` or
//! logs; retries log the path only, never the query (it may hold a number).

use std::{fmt, time::Duration};

use reqwest::{Method, StatusCode};
use serde::{Deserialize, Deserializer, de::DeserializeOwned};
use tracing::{debug, warn};
use url::Url;

use crate::{
    config::Secret,
    domain::phone::{PhoneNumber, mask},
    providers::retry::{RetryPolicy, is_retryable_status, is_retryable_transport, retry_after},
};

/// Twilio's production REST endpoint.
pub const DEFAULT_BASE_URL: &str = "https://api.twilio.com";

/// Page size asked of list endpoints (Twilio's own default).
const PAGE_SIZE: &str = "50";

/// A bound on `next_page_uri` hops, so a server that keeps answering with a
/// next page cannot keep us looping forever.
const MAX_PAGES: usize = 1000;

/// Non-JSON error bodies (proxy HTML pages) are cut to this many chars.
const MAX_TEXT_MESSAGE: usize = 200;

/// How requests authenticate. The account SID always stays in the path.
#[derive(Debug, Clone)]
pub enum TwilioAuth {
    /// Basic `AccountSid:AuthToken`.
    AuthToken(Secret),
    /// Basic `ApiKeySid:ApiKeySecret` (`SK…`), Twilio's advice for REST calls.
    ApiKey { sid: String, secret: Secret },
}

#[derive(Debug, Clone)]
pub struct TwilioConfig {
    /// Scheme and host, optionally a path prefix; [`DEFAULT_BASE_URL`] in production.
    pub base_url: String,
    pub account_sid: String,
    pub auth: TwilioAuth,
    /// Whole-request timeout, connect to last body byte, per attempt.
    pub timeout: Duration,
    pub retry: RetryPolicy,
}

impl TwilioConfig {
    /// Production base URL, a 10 s timeout and the default retry policy.
    pub fn new(account_sid: impl Into<String>, auth: TwilioAuth) -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_owned(),
            account_sid: account_sid.into(),
            auth,
            timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
        }
    }
}

/// A number owned by the account. Unknown fields are kept in `extra`
/// because Twilio adds fields without notice.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct IncomingPhoneNumber {
    pub sid: String,
    pub phone_number: String,
    pub friendly_name: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub capabilities: Capabilities,
    pub status: Option<String>,
    pub voice_url: Option<String>,
    pub sms_url: Option<String>,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// What a number can do. AvailablePhoneNumbers spells the keys `SMS`/`MMS`,
/// IncomingPhoneNumbers `sms`/`mms`; missing keys read as false.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Capabilities {
    pub voice: bool,
    #[serde(alias = "SMS")]
    pub sms: bool,
    #[serde(alias = "MMS")]
    pub mms: bool,
    pub fax: Option<bool>,
}

/// An outbound message to send: `from`/`to` carry the channel prefix
/// (`whatsapp:+39…`). Exactly one of `body` and `content_sid` (an approved
/// `HX…` Content Template) must be set; `content_variables` is a JSON string
/// and goes with `content_sid` only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendMessage {
    pub from: String,
    pub to: String,
    pub body: Option<String>,
    pub content_sid: Option<String>,
    pub content_variables: Option<String>,
    pub status_callback: Option<String>,
}

/// A Message resource. Unknown fields are kept in `extra` because Twilio
/// adds fields without notice.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Message {
    pub sid: String,
    pub status: String,
    pub from: Option<String>,
    pub to: Option<String>,
    pub error_code: Option<i64>,
    pub error_message: Option<String>,
    pub date_created: Option<String>,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Message {
    /// `date_created`, parsed from Twilio's RFC 2822 form.
    pub fn created_at(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        self.date_created
            .as_deref()
            .and_then(|d| chrono::DateTime::parse_from_rfc2822(d).ok())
            .map(|d| d.with_timezone(&chrono::Utc))
    }

    /// The `body` Twilio echoes (for templates, the rendered text).
    pub fn body(&self) -> Option<&str> {
        self.extra.get("body").and_then(serde_json::Value::as_str)
    }
}

/// Twilio codes that no retry can fix (bad credentials, invalid `To`, geo
/// permissions, opted-out recipient, not a WhatsApp sender of the account).
const PERMANENT_CODES: [i64; 5] = [20003, 21211, 21408, 21610, 63007];

fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TwilioError {
    /// Twilio answered with a non-2xx status. `status` is the HTTP status;
    /// `code` is Twilio's error code when the body was its JSON error.
    #[error("{}", api_reason(*.status, *.code, .message))]
    Api {
        status: u16,
        code: Option<i64>,
        message: String,
        more_info: Option<String>,
    },
    #[error("twilio: request timed out")]
    Timeout,
    #[error("twilio: cannot reach the API: {0}")]
    Connect(String),
    #[error("twilio: unexpected response: {0}")]
    Decode(String),
    #[error("twilio: invalid SID {0:?}")]
    InvalidSid(String),
    /// Unusable settings (base URL, HTTP client) or a request that could
    /// not be built; retrying would not help.
    #[error("twilio: bad client configuration: {0}")]
    Config(String),
}

fn api_reason(status: u16, code: Option<i64>, message: &str) -> String {
    match code {
        Some(code) => format!("twilio {status} (code {code}): {message}"),
        None => format!("twilio {status}: {message}"),
    }
}

impl TwilioError {
    /// Worth another try: 429, 5xx, Twilio's 20429 concurrency limit (not
    /// processed, so safe), timeouts and connection failures.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Api { status, code, .. } => {
                *code == Some(20429) || StatusCode::from_u16(*status).is_ok_and(is_retryable_status)
            }
            Self::Timeout | Self::Connect(_) => true,
            Self::Decode(_) | Self::InvalidSid(_) | Self::Config(_) => false,
        }
    }

    /// Must fail at once, never retried: Twilio codes 20003, 21211, 21408,
    /// 21610 and 63007, any other 4xx except 429 and Twilio's 20429
    /// concurrency limit, and requests refused before sending (a bad SID, a
    /// bad [`SendMessage`] or client configuration). Timeouts, connection
    /// failures, 5xx and undecodable 2xx bodies are not permanent.
    pub fn is_permanent(&self) -> bool {
        match self {
            Self::Api { status, code, .. } => {
                code.is_some_and(|c| PERMANENT_CODES.contains(&c))
                    || ((400..500).contains(status) && *status != 429 && *code != Some(20429))
            }
            Self::InvalidSid(_) | Self::Config(_) => true,
            Self::Timeout | Self::Connect(_) | Self::Decode(_) => false,
        }
    }

    /// Twilio's error code, when the error came from its JSON error body.
    pub fn code(&self) -> Option<i64> {
        match self {
            Self::Api { code, .. } => *code,
            Self::Timeout
            | Self::Connect(_)
            | Self::Decode(_)
            | Self::InvalidSid(_)
            | Self::Config(_) => None,
        }
    }

    /// One line to store as a "reason", e.g.
    /// `twilio 404 (code 20404): The requested resource … was not found`.
    pub fn reason(&self) -> String {
        self.to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } => Some(*status),
            Self::Timeout
            | Self::Connect(_)
            | Self::Decode(_)
            | Self::InvalidSid(_)
            | Self::Config(_) => None,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Self::Api { .. } => "api",
            Self::Timeout => "timeout",
            Self::Connect(_) => "connect",
            Self::Decode(_) => "decode",
            Self::InvalidSid(_) => "invalid_sid",
            Self::Config(_) => "config",
        }
    }

    fn from_transport(err: reqwest::Error) -> Self {
        // The URL may carry a phone number in its query: drop it before the
        // error is formatted anywhere.
        let err = err.without_url();
        if err.is_timeout() {
            Self::Timeout
        } else if is_retryable_transport(&err) || err.is_body() {
            // Connect/send failures and a connection lost mid-body.
            Self::Connect(error_chain(&err))
        } else if err.is_decode() {
            Self::Decode(error_chain(&err))
        } else {
            // Builder and redirect errors: retrying will not change them.
            Self::Config(error_chain(&err))
        }
    }

    /// Builds [`TwilioError::Api`] from a non-2xx response body.
    fn from_body(status: StatusCode, body: &[u8]) -> Self {
        #[derive(Deserialize)]
        struct ErrorBody {
            code: Option<i64>,
            message: Option<String>,
            more_info: Option<String>,
        }
        let parsed = serde_json::from_slice::<ErrorBody>(body)
            .ok()
            .filter(|b| b.code.is_some() || b.message.is_some());
        match parsed {
            Some(b) => Self::Api {
                status: status.as_u16(),
                code: b.code,
                message: b.message.unwrap_or_else(|| fallback_message(status)),
                more_info: b.more_info,
            },
            None => Self::Api {
                status: status.as_u16(),
                code: None,
                message: short_text(body).unwrap_or_else(|| fallback_message(status)),
                more_info: None,
            },
        }
    }
}

/// reqwest's top-level message is terse ("error sending request"); the
/// causes say what actually went wrong.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

fn fallback_message(status: StatusCode) -> String {
    status
        .canonical_reason()
        .map_or_else(|| format!("HTTP {}", status.as_u16()), str::to_owned)
}

/// A non-JSON body as one short line, or None when it is blank.
fn short_text(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.is_empty() {
        return None;
    }
    if line.chars().count() <= MAX_TEXT_MESSAGE {
        return Some(line);
    }
    let mut cut: String = line.chars().take(MAX_TEXT_MESSAGE).collect();
    cut.push('…');
    Some(cut)
}

/// Twilio SIDs: a two-letter prefix and 32 hex digits.
fn is_sid(value: &str, prefix: &str) -> bool {
    value.len() == 34
        && value.starts_with(prefix)
        && value[prefix.len()..].bytes().all(|b| b.is_ascii_hexdigit())
}

fn check_sid(value: &str, prefix: &str) -> Result<(), TwilioError> {
    if is_sid(value, prefix) {
        Ok(())
    } else {
        Err(TwilioError::InvalidSid(value.to_owned()))
    }
}

/// `whatsapp:+393123456789` → `whatsapp:+39312***6789`, for logs.
fn mask_address(address: &str) -> String {
    match address.split_once(':') {
        Some((channel, number)) => format!("{channel}:{}", mask(number)),
        None => mask(address),
    }
}

/// A set, non-empty optional field.
fn present(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|v| !v.is_empty())
}

/// The form of a POST Messages, after checking what can be checked locally.
fn message_form(message: &SendMessage) -> Result<Vec<(&'static str, &str)>, TwilioError> {
    if message.from.trim().is_empty() || message.to.trim().is_empty() {
        return Err(TwilioError::Config(
            "a message needs both From and To".to_owned(),
        ));
    }
    let mut form = vec![("From", message.from.as_str()), ("To", message.to.as_str())];
    match (present(&message.body), present(&message.content_sid)) {
        (Some(body), None) => {
            if message.content_variables.is_some() {
                return Err(TwilioError::Config(
                    "content variables need a content SID".to_owned(),
                ));
            }
            form.push(("Body", body));
        }
        (None, Some(content_sid)) => {
            check_sid(content_sid, "HX")?;
            form.push(("ContentSid", content_sid));
            if let Some(variables) = message.content_variables.as_deref() {
                form.push(("ContentVariables", variables));
            }
        }
        (None, None) => {
            return Err(TwilioError::Config(
                "a message needs a body or a content SID".to_owned(),
            ));
        }
        (Some(_), Some(_)) => {
            return Err(TwilioError::Config(
                "a message takes a body or a content SID, not both".to_owned(),
            ));
        }
    }
    if let Some(callback) = present(&message.status_callback) {
        form.push(("StatusCallback", callback));
    }
    Ok(form)
}

/// Whether a failed POST Messages may be sent again: only when Twilio
/// surely did not create the message (429/20429: not processed; the
/// connection was never made). A timeout, a dropped connection or a 5xx may
/// hide a created message.
fn create_is_retryable(failure: &Failure) -> bool {
    let throttled = match &failure.error {
        TwilioError::Api { status, code, .. } => *status == 429 || *code == Some(20429),
        TwilioError::Timeout
        | TwilioError::Connect(_)
        | TwilioError::Decode(_)
        | TwilioError::InvalidSid(_)
        | TwilioError::Config(_) => false,
    };
    (throttled
        && !failure
            .error
            .code()
            .is_some_and(|c| PERMANENT_CODES.contains(&c)))
        || failure.unsent
}

fn any_retryable(failure: &Failure) -> bool {
    failure.error.is_retryable()
}

#[derive(Deserialize)]
struct MessagePage {
    messages: Vec<Message>,
}

#[derive(Deserialize)]
struct IncomingPhoneNumberPage {
    incoming_phone_numbers: Vec<IncomingPhoneNumber>,
    next_page_uri: Option<String>,
}

/// One request, kept as data so that each attempt can rebuild it.
struct Call<'a> {
    method: Method,
    url: Url,
    form: Option<&'a [(&'a str, &'a str)]>,
}

/// A failed attempt and the server's `Retry-After`, if it sent one.
struct Failure {
    error: TwilioError,
    retry_after: Option<Duration>,
    /// The connection was never made, so the request surely never reached
    /// Twilio (refused, DNS, TLS handshake).
    unsent: bool,
}

impl From<TwilioError> for Failure {
    fn from(error: TwilioError) -> Self {
        Self {
            error,
            retry_after: None,
            unsent: false,
        }
    }
}

impl Failure {
    fn from_send(err: reqwest::Error) -> Self {
        Self {
            unsent: err.is_connect(),
            error: TwilioError::from_transport(err),
            retry_after: None,
        }
    }
}

#[derive(Clone)]
pub struct TwilioClient {
    http: reqwest::Client,
    /// Without a trailing slash, so Twilio's absolute paths append cleanly.
    base_url: String,
    account_sid: String,
    auth: TwilioAuth,
    retry: RetryPolicy,
}

impl fmt::Debug for TwilioClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // TwilioAuth's Debug masks the secrets through Secret's Debug.
        f.debug_struct("TwilioClient")
            .field("base_url", &self.base_url)
            .field("account_sid", &self.account_sid)
            .field("auth", &self.auth)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl TwilioClient {
    pub fn new(config: TwilioConfig) -> Result<Self, TwilioError> {
        check_sid(&config.account_sid, "AC")?;
        match &config.auth {
            TwilioAuth::AuthToken(_) => {}
            TwilioAuth::ApiKey { sid, .. } => check_sid(sid, "SK")?,
        }
        let base_url = parse_base_url(&config.base_url)?;
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            // Twilio's REST API does not redirect; following one could send
            // the credentials somewhere else.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("centralino/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| TwilioError::Config(error_chain(&e)))?;
        Ok(Self {
            http,
            base_url,
            account_sid: config.account_sid,
            auth: config.auth,
            retry: config.retry,
        })
    }

    pub fn account_sid(&self) -> &str {
        &self.account_sid
    }

    /// GET `/2010-04-01/Accounts/{sid}/IncomingPhoneNumbers.json?PhoneNumber=<e164>&PageSize=50`,
    /// following `next_page_uri` verbatim (relative to the base URL) until it
    /// is null; returns every page's items. Twilio's `PhoneNumber` filter
    /// also matches partially: see [`TwilioClient::find_incoming_number`].
    pub async fn list_incoming_numbers(
        &self,
        phone_number: Option<&PhoneNumber>,
    ) -> Result<Vec<IncomingPhoneNumber>, TwilioError> {
        let mut url = self.url(&format!(
            "/2010-04-01/Accounts/{}/IncomingPhoneNumbers.json",
            self.account_sid
        ))?;
        {
            // Form-encodes `+` as `%2B`; a bare `+` would read as a space.
            let mut query = url.query_pairs_mut();
            if let Some(number) = phone_number {
                query.append_pair("PhoneNumber", number.as_str());
            }
            query.append_pair("PageSize", PAGE_SIZE);
        }
        let mut numbers = Vec::new();
        let mut pages = 0usize;
        loop {
            let page: IncomingPhoneNumberPage = decode(
                &self
                    .send(&Call {
                        method: Method::GET,
                        url,
                        form: None,
                    })
                    .await?,
            )?;
            numbers.extend(page.incoming_phone_numbers);
            pages += 1;
            match page.next_page_uri.filter(|uri| !uri.is_empty()) {
                None => break,
                Some(_) if pages >= MAX_PAGES => {
                    return Err(TwilioError::Decode(format!(
                        "more than {MAX_PAGES} pages of incoming phone numbers"
                    )));
                }
                Some(uri) => url = self.next_page_url(&uri)?,
            }
        }
        debug!(
            number = phone_number.map(PhoneNumber::masked),
            pages,
            count = numbers.len(),
            "twilio incoming numbers listed"
        );
        Ok(numbers)
    }

    /// The account's number whose `phone_number` is exactly `number`, or None.
    pub async fn find_incoming_number(
        &self,
        number: &PhoneNumber,
    ) -> Result<Option<IncomingPhoneNumber>, TwilioError> {
        let numbers = self.list_incoming_numbers(Some(number)).await?;
        Ok(numbers
            .into_iter()
            .find(|n| n.phone_number == number.as_str()))
    }

    /// GET `…/IncomingPhoneNumbers/{PN}.json`.
    pub async fn fetch_incoming_number(
        &self,
        sid: &str,
    ) -> Result<IncomingPhoneNumber, TwilioError> {
        let url = self.number_url(sid)?;
        decode(
            &self
                .send(&Call {
                    method: Method::GET,
                    url,
                    form: None,
                })
                .await?,
        )
    }

    /// POST `…/IncomingPhoneNumbers/{PN}.json` with form `params` (repeat a
    /// key for arrays; an empty value clears a field). Setting fields is
    /// idempotent, so retries are safe.
    pub async fn update_incoming_number(
        &self,
        sid: &str,
        params: &[(&str, &str)],
    ) -> Result<IncomingPhoneNumber, TwilioError> {
        let url = self.number_url(sid)?;
        decode(
            &self
                .send(&Call {
                    method: Method::POST,
                    url,
                    form: Some(params),
                })
                .await?,
        )
    }

    /// DELETE `…/IncomingPhoneNumbers/{PN}.json` (204). Irreversible. A 404
    /// after a retried timeout may mean the first attempt did release it.
    pub async fn release_incoming_number(&self, sid: &str) -> Result<(), TwilioError> {
        let url = self.number_url(sid)?;
        self.send(&Call {
            method: Method::DELETE,
            url,
            form: None,
        })
        .await?;
        Ok(())
    }

    /// POST `/2010-04-01/Accounts/{AC}/Messages.json` (form: `From`, `To`,
    /// `Body` or `ContentSid` + `ContentVariables`, `StatusCallback`).
    /// Checked first, with no request on error: [`TwilioError::Config`] for
    /// a message with neither or both of body and content SID (or content
    /// variables without a content SID, or an empty From/To),
    /// [`TwilioError::InvalidSid`] for a content SID that is not `HX…`.
    ///
    /// Retried on 429 and connection refusals only, never after a timeout or
    /// a 5xx: the message may exist, so the caller should look it up with
    /// [`TwilioClient::recent_messages`] before sending it again.
    pub async fn create_message(&self, message: &SendMessage) -> Result<Message, TwilioError> {
        let form = message_form(message)?;
        let url = self.messages_url()?;
        let created: Message = decode(
            &self
                .send_with(
                    &Call {
                        method: Method::POST,
                        url,
                        form: Some(&form),
                    },
                    create_is_retryable,
                )
                .await?,
        )?;
        debug!(
            sid = %created.sid,
            status = %created.status,
            to = %mask_address(&message.to),
            template = message.content_sid.is_some(),
            "twilio message created"
        );
        Ok(created)
    }

    /// GET `…/Messages/{SM|MM sid}.json`.
    pub async fn fetch_message(&self, sid: &str) -> Result<Message, TwilioError> {
        if !(is_sid(sid, "SM") || is_sid(sid, "MM")) {
            return Err(TwilioError::InvalidSid(sid.to_owned()));
        }
        let url = self.url(&format!(
            "/2010-04-01/Accounts/{}/Messages/{sid}.json",
            self.account_sid
        ))?;
        decode(
            &self
                .send(&Call {
                    method: Method::GET,
                    url,
                    form: None,
                })
                .await?,
        )
    }

    /// GET `…/Messages.json?To=<to>&From=<from>&PageSize=50`, first page
    /// only (newest first), keeping the messages created at or after
    /// `since`: to find a message whose create response was lost. Twilio's
    /// `DateSent` filter is not used because a message still queued has no
    /// `date_sent`; `date_created` (RFC 2822) is compared here instead, and a
    /// message without a readable one is kept (better a candidate too many
    /// than a resend).
    pub async fn recent_messages(
        &self,
        from: &str,
        to: &str,
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<Message>, TwilioError> {
        let mut url = self.messages_url()?;
        url.query_pairs_mut()
            .append_pair("To", to)
            .append_pair("From", from)
            .append_pair("PageSize", PAGE_SIZE);
        let page: MessagePage = decode(
            &self
                .send(&Call {
                    method: Method::GET,
                    url,
                    form: None,
                })
                .await?,
        )?;
        let listed = page.messages.len();
        let recent: Vec<Message> = page
            .messages
            .into_iter()
            .filter(|m| m.created_at().is_none_or(|at| at >= since))
            .collect();
        debug!(
            from = %mask_address(from),
            to = %mask_address(to),
            %since,
            listed,
            recent = recent.len(),
            "twilio recent messages listed"
        );
        Ok(recent)
    }

    fn messages_url(&self) -> Result<Url, TwilioError> {
        self.url(&format!(
            "/2010-04-01/Accounts/{}/Messages.json",
            self.account_sid
        ))
    }

    fn number_url(&self, sid: &str) -> Result<Url, TwilioError> {
        check_sid(sid, "PN")?;
        self.url(&format!(
            "/2010-04-01/Accounts/{}/IncomingPhoneNumbers/{sid}.json",
            self.account_sid
        ))
    }

    fn url(&self, path: &str) -> Result<Url, TwilioError> {
        Url::parse(&format!("{}{path}", self.base_url))
            .map_err(|e| TwilioError::Config(format!("cannot build a request URL: {e}")))
    }

    /// `next_page_uri` is an absolute path. Anything else (a full URL, or
    /// `@host` tricks) could carry our credentials to another host.
    fn next_page_url(&self, uri: &str) -> Result<Url, TwilioError> {
        if !uri.starts_with('/') {
            return Err(TwilioError::Decode(
                "next_page_uri is not an absolute path".to_owned(),
            ));
        }
        Url::parse(&format!("{}{uri}", self.base_url))
            .map_err(|e| TwilioError::Decode(format!("next_page_uri is not a valid URI: {e}")))
    }

    /// Sends `call`, retrying retryable failures per the policy. Returns the
    /// body of the 2xx response.
    async fn send(&self, call: &Call<'_>) -> Result<Vec<u8>, TwilioError> {
        self.send_with(call, any_retryable).await
    }

    /// [`Self::send`], retrying only the failures `retryable` accepts.
    async fn send_with(
        &self,
        call: &Call<'_>,
        retryable: fn(&Failure) -> bool,
    ) -> Result<Vec<u8>, TwilioError> {
        let mut delays = self.retry.delays();
        let mut attempt = 1usize;
        loop {
            let failure = match self.attempt(call).await {
                Ok(body) => return Ok(body),
                Err(failure) => failure,
            };
            if !retryable(&failure) {
                return Err(failure.error);
            }
            let Some(backoff) = delays.next() else {
                return Err(failure.error);
            };
            let wait = self.retry.wait(backoff, failure.retry_after);
            // Path only: the query may hold a phone number; headers hold auth.
            warn!(
                method = %call.method,
                path = call.url.path(),
                status = failure.error.status(),
                code = failure.error.code(),
                error = failure.error.kind(),
                attempt,
                wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                "twilio request failed, retrying"
            );
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    async fn attempt(&self, call: &Call<'_>) -> Result<Vec<u8>, Failure> {
        let mut request = self
            .http
            .request(call.method.clone(), call.url.clone())
            .header(reqwest::header::ACCEPT, "application/json");
        request = match &self.auth {
            TwilioAuth::AuthToken(token) => {
                request.basic_auth(&self.account_sid, Some(token.expose()))
            }
            TwilioAuth::ApiKey { sid, secret } => request.basic_auth(sid, Some(secret.expose())),
        };
        if let Some(form) = call.form {
            request = request.form(form);
        }
        let response = request.send().await.map_err(Failure::from_send)?;
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let body = response
            .bytes()
            .await
            .map_err(TwilioError::from_transport)?;
        if status.is_success() {
            Ok(body.to_vec())
        } else {
            Err(Failure {
                error: TwilioError::from_body(status, &body),
                retry_after,
                unsent: false,
            })
        }
    }
}

fn parse_base_url(raw: &str) -> Result<String, TwilioError> {
    let url = Url::parse(raw.trim())
        .map_err(|e| TwilioError::Config(format!("base URL {raw:?}: {e}")))?;
    let usable = matches!(url.scheme(), "http" | "https")
        && url.has_host()
        && url.query().is_none()
        && url.fragment().is_none()
        && url.username().is_empty()
        && url.password().is_none();
    if !usable {
        return Err(TwilioError::Config(format!(
            "base URL {raw:?} must be http(s)://host[/prefix] without query, fragment or credentials"
        )));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, TwilioError> {
    serde_json::from_slice(body).map_err(|e| TwilioError::Decode(e.to_string()))
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };

    use base64::Engine as _;
    use wiremock::{
        Mock, MockServer, Request, Respond, ResponseTemplate,
        matchers::{body_string, header, method, path, query_param, query_param_is_missing},
    };

    use super::*;

    const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
    const NUMBER_SID: &str = "PN0123456789abcdef0123456789abcdef";
    const OTHER_SID_1: &str = "PN00000000000000000000000000000001";
    const OTHER_SID_2: &str = "PN00000000000000000000000000000002";
    const OTHER_SID_9: &str = "PN00000000000000000000000000000009";
    const API_KEY_SID: &str = "SKfedcba9876543210fedcba9876543210";
    const TOKEN: &str = "tok-5f1e2d3c4b5a69788796a5b4c3d2e1f0";
    const API_SECRET: &str = "key-secret-0a1b2c3d4e5f60718293a4b5";
    const LIST_PATH: &str =
        "/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/IncomingPhoneNumbers.json";
    const NUMBER_PATH: &str = "/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/IncomingPhoneNumbers/PN0123456789abcdef0123456789abcdef.json";

    /// Twilio's answer to `?PhoneNumber=%2B393123456780` (reference example).
    const LIST_FILTERED: &str = r#"{
  "end": 0,
  "first_page_uri": "/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/IncomingPhoneNumbers.json?PhoneNumber=%2B393123456780&PageSize=50&Page=0",
  "incoming_phone_numbers": [
    {
      "account_sid": "AC0123456789abcdef0123456789abcdef",
      "address_requirements": "any",
      "address_sid": "AD0123456789abcdef0123456789abcdef",
      "api_version": "2010-04-01",
      "beta": false,
      "bundle_sid": "BU0123456789abcdef0123456789abcdef",
      "capabilities": {"fax": false, "mms": false, "sms": true, "voice": true},
      "date_created": "Tue, 14 Oct 2025 10:02:41 +0000",
      "date_updated": "Tue, 14 Oct 2025 10:02:41 +0000",
      "emergency_address_sid": null,
      "emergency_address_status": "unregistered",
      "emergency_status": "Inactive",
      "friendly_name": "acme-roma/ord-7f3a",
      "identity_sid": null,
      "origin": "twilio",
      "phone_number": "+393123456780",
      "sid": "PN0123456789abcdef0123456789abcdef",
      "sms_application_sid": "",
      "sms_fallback_method": "POST",
      "sms_fallback_url": "",
      "sms_method": "POST",
      "sms_url": "https://hooks.example.com/twilio/inbound?tenant=acme-roma",
      "status": "in-use",
      "status_callback": "",
      "status_callback_method": "POST",
      "subresource_uris": {
        "assigned_add_ons": "/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/IncomingPhoneNumbers/PN0123456789abcdef0123456789abcdef/AssignedAddOns.json"
      },
      "trunk_sid": null,
      "type": "mobile",
      "uri": "/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/IncomingPhoneNumbers/PN0123456789abcdef0123456789abcdef.json",
      "voice_application_sid": "",
      "voice_caller_id_lookup": false,
      "voice_fallback_method": "POST",
      "voice_fallback_url": "",
      "voice_method": "POST",
      "voice_receive_mode": "voice",
      "voice_url": "https://hooks.example.com/twilio/voice?tenant=acme-roma"
    }
  ],
  "next_page_uri": null,
  "page": 0,
  "page_size": 50,
  "previous_page_uri": null,
  "start": 0,
  "uri": "/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/IncomingPhoneNumbers.json?PhoneNumber=%2B393123456780&PageSize=50&Page=0"
}"#;

    const NOT_FOUND: &str = r#"{
  "code": 20404,
  "message": "The requested resource /2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/IncomingPhoneNumbers/PN0123456789abcdef0123456789abcdef.json was not found",
  "more_info": "https://www.twilio.com/docs/errors/20404",
  "status": 404
}"#;

    const BUNDLE_REQUIRED: &str = r#"{
  "code": 21649,
  "message": "Phone Number Requires a Bundle",
  "more_info": "https://www.twilio.com/docs/errors/21649",
  "status": 400
}"#;

    const TOO_MANY: &str = r#"{
  "code": 20429,
  "message": "Too Many Requests",
  "more_info": "https://www.twilio.com/docs/errors/20429",
  "status": 429
}"#;

    fn number_json(sid: &str, phone: &str) -> serde_json::Value {
        serde_json::json!({
            "sid": sid,
            "phone_number": phone,
            "friendly_name": phone,
            "capabilities": {"voice": true, "sms": true, "mms": false, "fax": false},
            "status": "in-use",
            "voice_url": null,
            "sms_url": null,
            "type": "mobile"
        })
    }

    fn one_number() -> serde_json::Value {
        let list: serde_json::Value = serde_json::from_str(LIST_FILTERED).unwrap();
        list["incoming_phone_numbers"][0].clone()
    }

    fn fast_retry() -> RetryPolicy {
        RetryPolicy {
            max_retries: 2,
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(1),
        }
    }

    fn config(server: &MockServer, auth: TwilioAuth) -> TwilioConfig {
        TwilioConfig {
            base_url: server.uri(),
            account_sid: ACCOUNT.to_owned(),
            auth,
            timeout: Duration::from_secs(5),
            retry: fast_retry(),
        }
    }

    fn token_auth() -> TwilioAuth {
        TwilioAuth::AuthToken(TOKEN.parse().unwrap())
    }

    fn key_auth() -> TwilioAuth {
        TwilioAuth::ApiKey {
            sid: API_KEY_SID.to_owned(),
            secret: API_SECRET.parse().unwrap(),
        }
    }

    fn client(server: &MockServer) -> TwilioClient {
        TwilioClient::new(config(server, token_auth())).unwrap()
    }

    fn basic(user: &str, password: &str) -> String {
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        format!("Basic {encoded}")
    }

    fn mobile() -> PhoneNumber {
        PhoneNumber::parse("+393123456780").unwrap()
    }

    /// 500 on the first call, then the given 200 body.
    struct FailOnceThen {
        calls: Arc<AtomicUsize>,
        body: serde_json::Value,
    }

    impl Respond for FailOnceThen {
        fn respond(&self, _: &Request) -> ResponseTemplate {
            if self.calls.fetch_add(1, Ordering::SeqCst) == 0 {
                ResponseTemplate::new(500).set_body_string("upstream exploded")
            } else {
                ResponseTemplate::new(200).set_body_json(self.body.clone())
            }
        }
    }

    #[tokio::test]
    async fn listing_by_number_sends_the_e164_filter_and_page_size_with_auth_token_basic_auth() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path(LIST_PATH))
            .and(query_param("PhoneNumber", "+393123456780"))
            .and(query_param("PageSize", "50"))
            .and(header("Authorization", basic(ACCOUNT, TOKEN).as_str()))
            .respond_with(
                ResponseTemplate::new(200).set_body_raw(LIST_FILTERED, "application/json"),
            )
            .expect(1)
            .mount(&server)
            .await;

        let numbers = client(&server)
            .list_incoming_numbers(Some(&mobile()))
            .await
            .unwrap();

        assert_eq!(numbers.len(), 1);
        let number = &numbers[0];
        assert_eq!(number.sid, NUMBER_SID);
        assert_eq!(number.phone_number, "+393123456780");
        assert_eq!(number.friendly_name.as_deref(), Some("acme-roma/ord-7f3a"));
        assert_eq!(number.status.as_deref(), Some("in-use"));
        assert_eq!(
            number.capabilities,
            Capabilities {
                voice: true,
                sms: true,
                mms: false,
                fax: Some(false)
            }
        );
        assert_eq!(number.extra["type"], "mobile");
        // `+` must travel percent-encoded, or Twilio reads a space.
        let requests = server.received_requests().await.unwrap();
        let query = requests[0].url.query().unwrap_or_default().to_owned();
        assert!(query.contains("PhoneNumber=%2B393123456780"), "{query}");
    }

    #[tokio::test]
    async fn an_api_key_authenticates_with_its_own_sid_while_the_path_keeps_the_account() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path(NUMBER_PATH))
            .and(header(
                "Authorization",
                basic(API_KEY_SID, API_SECRET).as_str(),
            ))
            .respond_with(ResponseTemplate::new(200).set_body_json(one_number()))
            .expect(1)
            .mount(&server)
            .await;

        let client = TwilioClient::new(config(&server, key_auth())).unwrap();
        let number = client.fetch_incoming_number(NUMBER_SID).await.unwrap();

        assert_eq!(number.sid, NUMBER_SID);
        assert_eq!(client.account_sid(), ACCOUNT);
    }

    #[tokio::test]
    async fn listing_without_a_number_asks_for_page_size_only() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path(LIST_PATH))
            .and(query_param_is_missing("PhoneNumber"))
            .and(query_param("PageSize", "50"))
            .respond_with(
                ResponseTemplate::new(200).set_body_raw(LIST_FILTERED, "application/json"),
            )
            .expect(1)
            .mount(&server)
            .await;

        let numbers = client(&server).list_incoming_numbers(None).await.unwrap();

        assert_eq!(numbers.len(), 1);
    }

    #[tokio::test]
    async fn listing_follows_next_page_uri_verbatim_and_returns_both_pages() {
        let server = MockServer::start().await;
        let next = format!("{LIST_PATH}?PageSize=50&Page=1&PageToken=PAabc123");
        Mock::given(method("GET"))
            .and(path(LIST_PATH))
            .and(query_param_is_missing("PageToken"))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "incoming_phone_numbers": [number_json(OTHER_SID_1, "+390212345601")],
                "page": 0,
                "page_size": 1,
                "next_page_uri": next,
            })))
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path(LIST_PATH))
            .and(query_param("Page", "1"))
            .and(query_param("PageToken", "PAabc123"))
            .and(header("Authorization", basic(ACCOUNT, TOKEN).as_str()))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "incoming_phone_numbers": [number_json(OTHER_SID_2, "+390212345602")],
                "page": 1,
                "page_size": 1,
                "next_page_uri": null,
            })))
            .expect(1)
            .mount(&server)
            .await;

        let numbers = client(&server).list_incoming_numbers(None).await.unwrap();

        let phones: Vec<&str> = numbers.iter().map(|n| n.phone_number.as_str()).collect();
        assert_eq!(phones, ["+390212345601", "+390212345602"]);
    }

    #[tokio::test]
    async fn a_next_page_uri_that_is_not_a_path_is_refused() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path(LIST_PATH))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "incoming_phone_numbers": [],
                "next_page_uri": "@evil.example/steal",
            })))
            .expect(1)
            .mount(&server)
            .await;

        let err = client(&server)
            .list_incoming_numbers(None)
            .await
            .unwrap_err();

        assert!(matches!(err, TwilioError::Decode(_)), "{err:?}");
    }

    #[tokio::test]
    async fn find_returns_only_the_exact_match() {
        let server = MockServer::start().await;
        // Twilio's filter matches partially: a longer number comes back too.
        Mock::given(method("GET"))
            .and(path(LIST_PATH))
            .and(query_param("PhoneNumber", "+393123456780"))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "incoming_phone_numbers": [
                    number_json(OTHER_SID_9, "+3931234567809"),
                    one_number(),
                ],
                "next_page_uri": null,
            })))
            .expect(1)
            .mount(&server)
            .await;

        let found = client(&server)
            .find_incoming_number(&mobile())
            .await
            .unwrap();

        assert_eq!(found.map(|n| n.sid), Some(NUMBER_SID.to_owned()));
    }

    #[tokio::test]
    async fn find_returns_none_when_the_list_is_empty() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path(LIST_PATH))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "incoming_phone_numbers": [],
                "next_page_uri": null,
                "page": 0,
                "page_size": 50,
            })))
            .expect(1)
            .mount(&server)
            .await;

        let found = client(&server)
            .find_incoming_number(&mobile())
            .await
            .unwrap();

        assert_eq!(found, None);
    }

    #[tokio::test]
    async fn update_posts_the_params_as_a_form() {
        let server = MockServer::start().await;
        let mut updated = one_number();
        updated["voice_url"] = "https://hooks.example.com/v?t=a b".into();
        Mock::given(method("POST"))
            .and(path(NUMBER_PATH))
            .and(header("Content-Type", "application/x-www-form-urlencoded"))
            .and(header("Authorization", basic(ACCOUNT, TOKEN).as_str()))
            .and(body_string(
                "VoiceUrl=https%3A%2F%2Fhooks.example.com%2Fv%3Ft%3Da+b&VoiceFallbackUrl=&FriendlyName=acme%2Broma",
            ))
            .respond_with(ResponseTemplate::new(200).set_body_json(updated))
            .expect(1)
            .mount(&server)
            .await;

        let number = client(&server)
            .update_incoming_number(
                NUMBER_SID,
                &[
                    ("VoiceUrl", "https://hooks.example.com/v?t=a b"),
                    ("VoiceFallbackUrl", ""),
                    ("FriendlyName", "acme+roma"),
                ],
            )
            .await
            .unwrap();

        assert_eq!(
            number.voice_url.as_deref(),
            Some("https://hooks.example.com/v?t=a b")
        );
    }

    #[tokio::test]
    async fn release_deletes_the_number_and_accepts_204() {
        let server = MockServer::start().await;
        Mock::given(method("DELETE"))
            .and(path(NUMBER_PATH))
            .and(header("Authorization", basic(ACCOUNT, TOKEN).as_str()))
            .respond_with(ResponseTemplate::new(204))
            .expect(1)
            .mount(&server)
            .await;

        client(&server)
            .release_incoming_number(NUMBER_SID)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_404_becomes_api_error_20404_and_is_not_retried() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path(NUMBER_PATH))
            .respond_with(ResponseTemplate::new(404).set_body_raw(NOT_FOUND, "application/json"))
            .expect(1)
            .mount(&server)
            .await;

        let err = client(&server)
            .fetch_incoming_number(NUMBER_SID)
            .await
            .unwrap_err();

        assert!(!err.is_retryable());
        assert_eq!(err.code(), Some(20404));
        let TwilioError::Api {
            status, more_info, ..
        } = &err
        else {
            panic!("expected an API error, got {err:?}");
        };
        assert_eq!(*status, 404);
        assert_eq!(
            more_info.as_deref(),
            Some("https://www.twilio.com/docs/errors/20404")
        );
        assert_eq!(
            err.reason(),
            format!("twilio 404 (code 20404): The requested resource {NUMBER_PATH} was not found")
        );
    }

    #[tokio::test]
    async fn a_400_bundle_error_keeps_twilio_code_and_message() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(NUMBER_PATH))
            .respond_with(
                ResponseTemplate::new(400).set_body_raw(BUNDLE_REQUIRED, "application/json"),
            )
            .expect(1)
            .mount(&server)
            .await;

        let err = client(&server)
            .update_incoming_number(NUMBER_SID, &[("BundleSid", "")])
            .await
            .unwrap_err();

        assert_eq!(err.code(), Some(21649));
        assert!(!err.is_retryable());
        assert_eq!(
            err.reason(),
            "twilio 400 (code 21649): Phone Number Requires a Bundle"
        );
    }

    #[tokio::test]
    async fn a_500_then_200_succeeds_after_one_retry() {
        let server = MockServer::start().await;
        let calls = Arc::new(AtomicUsize::new(0));
        Mock::given(method("GET"))
            .and(path(NUMBER_PATH))
            .respond_with(FailOnceThen {
                calls: Arc::clone(&calls),
                body: one_number(),
            })
            .expect(2)
            .mount(&server)
            .await;

        let number = client(&server)
            .fetch_incoming_number(NUMBER_SID)
            .await
            .unwrap();

        assert_eq!(number.sid, NUMBER_SID);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_429_with_retry_after_zero_is_retried() {
        let server = MockServer::start().await;
        Mock::given(method("DELETE"))
            .and(path(NUMBER_PATH))
            .respond_with(
                ResponseTemplate::new(429)
                    .insert_header("Retry-After", "0")
                    .set_body_raw(TOO_MANY, "application/json"),
            )
            .up_to_n_times(1)
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("DELETE"))
            .and(path(NUMBER_PATH))
            .respond_with(ResponseTemplate::new(204))
            .expect(1)
            .mount(&server)
            .await;

        client(&server)
            .release_incoming_number(NUMBER_SID)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn persistent_5xx_gives_up_after_the_policy_retries_with_a_short_text_message() {
        let server = MockServer::start().await;
        let html = format!(
            "<html>\n  <body>\n{}\n  </body>\n</html>",
            "Bad gateway from the edge proxy. ".repeat(20)
        );
        Mock::given(method("GET"))
            .and(path(NUMBER_PATH))
            .respond_with(ResponseTemplate::new(502).set_body_raw(html, "text/html"))
            .expect(3)
            .mount(&server)
            .await;

        let err = client(&server)
            .fetch_incoming_number(NUMBER_SID)
            .await
            .unwrap_err();

        let TwilioError::Api {
            status,
            code,
            message,
            ..
        } = &err
        else {
            panic!("expected an API error, got {err:?}");
        };
        assert_eq!((*status, *code), (502, None));
        assert!(
            message.starts_with("<html> <body> Bad gateway"),
            "{message}"
        );
        assert!(message.chars().count() <= MAX_TEXT_MESSAGE + 1);
        assert!(err.is_retryable());
        assert!(!err.reason().contains('\n'));
    }

    #[tokio::test]
    async fn a_slow_server_times_out_after_the_retries() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path(NUMBER_PATH))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(one_number())
                    .set_delay(Duration::from_millis(500)),
            )
            .expect(3)
            .mount(&server)
            .await;
        let mut config = config(&server, token_auth());
        config.timeout = Duration::from_millis(50);

        let err = TwilioClient::new(config)
            .unwrap()
            .fetch_incoming_number(NUMBER_SID)
            .await
            .unwrap_err();

        assert_eq!(err, TwilioError::Timeout);
        assert!(err.is_retryable());
    }

    #[tokio::test]
    async fn an_unreachable_server_is_a_connect_error() {
        // A port that was just free: nothing listens there any more.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let client = TwilioClient::new(TwilioConfig {
            base_url: format!("http://127.0.0.1:{port}"),
            account_sid: ACCOUNT.to_owned(),
            auth: token_auth(),
            timeout: Duration::from_secs(2),
            retry: fast_retry(),
        })
        .unwrap();

        let err = client
            .list_incoming_numbers(Some(&mobile()))
            .await
            .unwrap_err();

        assert!(matches!(err, TwilioError::Connect(_)), "{err:?}");
        // The request URL (and its PhoneNumber query) stays out of the message.
        assert!(!err.reason().contains("3123456780"), "{}", err.reason());
    }

    #[tokio::test]
    async fn a_bad_number_sid_sends_no_request() {
        let server = MockServer::start().await;
        Mock::given(wiremock::matchers::any())
            .respond_with(ResponseTemplate::new(200).set_body_json(one_number()))
            .expect(0)
            .mount(&server)
            .await;
        let client = client(&server);

        for bad in [
            "PN0123",
            "AC0123456789abcdef0123456789abcdef",
            "PN0123456789abcdef0123456789abcdeg",
            "PN0123456789abcdef0123456789abcdef/../../x",
        ] {
            let err = client.fetch_incoming_number(bad).await.unwrap_err();
            assert_eq!(err, TwilioError::InvalidSid(bad.to_owned()));
            let err = client
                .update_incoming_number(bad, &[("FriendlyName", "x")])
                .await
                .unwrap_err();
            assert!(matches!(err, TwilioError::InvalidSid(_)));
            let err = client.release_incoming_number(bad).await.unwrap_err();
            assert!(matches!(err, TwilioError::InvalidSid(_)));
        }
    }

    #[tokio::test]
    async fn a_bad_account_or_api_key_sid_is_refused_at_construction() {
        let server = MockServer::start().await;
        let mut bad_account = config(&server, token_auth());
        bad_account.account_sid = "AC123".to_owned();
        let bad_key = config(
            &server,
            TwilioAuth::ApiKey {
                sid: ACCOUNT.to_owned(),
                secret: API_SECRET.parse().unwrap(),
            },
        );

        assert_eq!(
            TwilioClient::new(bad_account).unwrap_err(),
            TwilioError::InvalidSid("AC123".to_owned())
        );
        assert_eq!(
            TwilioClient::new(bad_key).unwrap_err(),
            TwilioError::InvalidSid(ACCOUNT.to_owned())
        );
    }

    #[test]
    fn a_base_url_with_a_query_or_another_scheme_is_refused() {
        for bad in [
            "ftp://api.twilio.com",
            "https://api.twilio.com/?x=1",
            "not a url",
        ] {
            let mut config = TwilioConfig::new(ACCOUNT, token_auth());
            config.base_url = bad.to_owned();
            assert!(
                matches!(TwilioClient::new(config), Err(TwilioError::Config(_))),
                "{bad}"
            );
        }
        let client = TwilioClient::new(TwilioConfig::new(ACCOUNT, token_auth())).unwrap();
        assert_eq!(client.base_url, DEFAULT_BASE_URL);
    }

    #[test]
    fn capabilities_read_the_upper_case_keys_of_available_numbers() {
        // One entry of AvailablePhoneNumbers/IT/Local.json.
        let available = r#"{"voice": true, "SMS": false, "MMS": true}"#;
        let caps: Capabilities = serde_json::from_str(available).unwrap();
        assert_eq!(
            caps,
            Capabilities {
                voice: true,
                sms: false,
                mms: true,
                fax: None
            }
        );
        let missing: Capabilities = serde_json::from_str("{}").unwrap();
        assert_eq!(missing, Capabilities::default());
        let mut number = one_number();
        number["capabilities"] = serde_json::Value::Null;
        let number: IncomingPhoneNumber = serde_json::from_value(number).unwrap();
        assert_eq!(number.capabilities, Capabilities::default());
    }

    #[test]
    fn retryable_errors_are_429_5xx_20429_timeouts_and_connect_failures() {
        let api = |status, code| TwilioError::Api {
            status,
            code,
            message: "m".to_owned(),
            more_info: None,
        };
        assert!(api(429, Some(20429)).is_retryable());
        assert!(api(503, None).is_retryable());
        assert!(api(400, Some(20429)).is_retryable());
        assert!(!api(401, Some(20003)).is_retryable());
        assert!(!api(400, Some(21211)).is_retryable());
        assert!(TwilioError::Timeout.is_retryable());
        assert!(TwilioError::Connect("refused".to_owned()).is_retryable());
        assert!(!TwilioError::Decode("eof".to_owned()).is_retryable());
        assert!(!TwilioError::InvalidSid("x".to_owned()).is_retryable());
        assert_eq!(api(502, None).reason(), "twilio 502: m");
    }

    #[tokio::test]
    async fn debug_of_config_and_client_shows_no_secret() {
        let server = MockServer::start().await;
        for auth in [token_auth(), key_auth()] {
            let config = config(&server, auth);
            let client = TwilioClient::new(config.clone()).unwrap();
            for shown in [format!("{config:?}"), format!("{client:?}")] {
                assert!(!shown.contains(TOKEN), "{shown}");
                assert!(!shown.contains(API_SECRET), "{shown}");
                assert!(!shown.contains("tok-"), "{shown}");
                assert!(!shown.contains("key-secret"), "{shown}");
                assert!(shown.contains(ACCOUNT), "{shown}");
            }
        }
    }

    const MESSAGES_PATH: &str =
        "/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages.json";
    const MESSAGE_SID: &str = "SM5e1b6a2c9d3f40718293a4b5c6d7e8f9";
    const MESSAGE_PATH: &str = "/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages/SM5e1b6a2c9d3f40718293a4b5c6d7e8f9.json";
    const CONTENT_SID: &str = "HX0123456789abcdef0123456789abcdef";
    const SENDER: &str = "whatsapp:+390212345678";
    const RECIPIENT: &str = "whatsapp:+393123456789";
    const CALLBACK: &str = "https://hooks.example.com/twilio/status?t=acme";

    /// Twilio's answer to a POST Messages (reference example).
    const MESSAGE_QUEUED: &str = r#"{
  "account_sid": "AC0123456789abcdef0123456789abcdef",
  "api_version": "2010-04-01",
  "body": "Ciao Mario, il tuo ordine n. 4721 è in consegna oggi tra le 14 e le 16.",
  "date_created": "Tue, 14 Oct 2025 09:30:12 +0000",
  "date_sent": null,
  "date_updated": "Tue, 14 Oct 2025 09:30:12 +0000",
  "direction": "outbound-api",
  "error_code": null,
  "error_message": null,
  "from": "whatsapp:+390212345678",
  "messaging_service_sid": null,
  "num_media": "0",
  "num_segments": "1",
  "price": null,
  "price_unit": "USD",
  "sid": "SM5e1b6a2c9d3f40718293a4b5c6d7e8f9",
  "status": "queued",
  "subresource_uris": {
    "media": "/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages/SM5e1b6a2c9d3f40718293a4b5c6d7e8f9/Media.json"
  },
  "to": "whatsapp:+393123456789",
  "uri": "/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages/SM5e1b6a2c9d3f40718293a4b5c6d7e8f9.json"
}"#;

    const INVALID_TO: &str = r#"{
  "code": 21211,
  "message": "The 'To' number whatsapp:+39312345 is not a valid phone number.",
  "more_info": "https://www.twilio.com/docs/errors/21211",
  "status": 400
}"#;

    fn text_message() -> SendMessage {
        SendMessage {
            from: SENDER.to_owned(),
            to: RECIPIENT.to_owned(),
            body: Some("Ciao Mario, a presto".to_owned()),
            content_sid: None,
            content_variables: None,
            status_callback: Some(CALLBACK.to_owned()),
        }
    }

    fn template_message() -> SendMessage {
        SendMessage {
            body: None,
            content_sid: Some(CONTENT_SID.to_owned()),
            content_variables: Some(r#"{"1":"Mario","2":"4721"}"#.to_owned()),
            ..text_message()
        }
    }

    fn queued_created() -> ResponseTemplate {
        ResponseTemplate::new(201).set_body_raw(MESSAGE_QUEUED, "application/json")
    }

    #[tokio::test]
    async fn create_posts_from_to_body_and_status_callback_with_basic_auth_and_returns_the_queued_message()
     {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(MESSAGES_PATH))
            .and(header("Content-Type", "application/x-www-form-urlencoded"))
            .and(header("Authorization", basic(ACCOUNT, TOKEN).as_str()))
            .and(body_string(
                "From=whatsapp%3A%2B390212345678&To=whatsapp%3A%2B393123456789&Body=Ciao+Mario%2C+a+presto&StatusCallback=https%3A%2F%2Fhooks.example.com%2Ftwilio%2Fstatus%3Ft%3Dacme",
            ))
            .respond_with(queued_created())
            .expect(1)
            .mount(&server)
            .await;

        let message = client(&server)
            .create_message(&text_message())
            .await
            .unwrap();

        assert_eq!(message.sid, MESSAGE_SID);
        assert_eq!(message.status, "queued");
        assert_eq!(message.from.as_deref(), Some(SENDER));
        assert_eq!(message.to.as_deref(), Some(RECIPIENT));
        assert_eq!(message.error_code, None);
        assert_eq!(message.error_message, None);
        assert_eq!(
            message.date_created.as_deref(),
            Some("Tue, 14 Oct 2025 09:30:12 +0000")
        );
        assert_eq!(message.extra["num_segments"], "1");
        assert_eq!(message.extra["direction"], "outbound-api");
    }

    #[tokio::test]
    async fn create_with_a_template_sends_content_sid_and_variables_instead_of_a_body() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(MESSAGES_PATH))
            .respond_with(queued_created())
            .expect(1)
            .mount(&server)
            .await;

        client(&server)
            .create_message(&template_message())
            .await
            .unwrap();

        let requests = server.received_requests().await.unwrap();
        let form: Vec<(String, String)> = url::form_urlencoded::parse(&requests[0].body)
            .into_owned()
            .collect();
        let expected = [
            ("From", SENDER),
            ("To", RECIPIENT),
            ("ContentSid", CONTENT_SID),
            ("ContentVariables", r#"{"1":"Mario","2":"4721"}"#),
            ("StatusCallback", CALLBACK),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        assert_eq!(form, expected);
    }

    #[tokio::test]
    async fn an_invalid_to_fails_with_code_21211_at_once_and_is_permanent() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(MESSAGES_PATH))
            .respond_with(ResponseTemplate::new(400).set_body_raw(INVALID_TO, "application/json"))
            .expect(1)
            .mount(&server)
            .await;

        let err = client(&server)
            .create_message(&text_message())
            .await
            .unwrap_err();

        assert!(
            matches!(
                err,
                TwilioError::Api {
                    status: 400,
                    code: Some(21211),
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.is_permanent());
        assert!(!err.is_retryable());
    }

    #[tokio::test]
    async fn a_500_on_create_is_not_retried_because_the_message_may_exist() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(MESSAGES_PATH))
            .respond_with(ResponseTemplate::new(500).set_body_string("upstream exploded"))
            .expect(1)
            .mount(&server)
            .await;

        let err = client(&server)
            .create_message(&text_message())
            .await
            .unwrap_err();

        assert_eq!(err.code(), None);
        assert!(
            matches!(err, TwilioError::Api { status: 500, .. }),
            "{err:?}"
        );
        assert!(!err.is_permanent());
    }

    #[tokio::test]
    async fn a_timeout_on_create_is_not_retried() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(MESSAGES_PATH))
            .respond_with(queued_created().set_delay(Duration::from_millis(500)))
            .expect(1)
            .mount(&server)
            .await;
        let mut config = config(&server, token_auth());
        config.timeout = Duration::from_millis(50);

        let err = TwilioClient::new(config)
            .unwrap()
            .create_message(&text_message())
            .await
            .unwrap_err();

        assert_eq!(err, TwilioError::Timeout);
        assert!(!err.is_permanent());
    }

    #[tokio::test]
    async fn a_429_then_201_on_create_succeeds_after_two_requests() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(MESSAGES_PATH))
            .respond_with(ResponseTemplate::new(429).set_body_raw(TOO_MANY, "application/json"))
            .up_to_n_times(1)
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path(MESSAGES_PATH))
            .respond_with(queued_created())
            .expect(1)
            .mount(&server)
            .await;

        let message = client(&server)
            .create_message(&text_message())
            .await
            .unwrap();

        assert_eq!(message.sid, MESSAGE_SID);
        assert_eq!(server.received_requests().await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn create_on_an_unreachable_server_is_a_connect_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let client = TwilioClient::new(TwilioConfig {
            base_url: format!("http://127.0.0.1:{port}"),
            account_sid: ACCOUNT.to_owned(),
            auth: token_auth(),
            timeout: Duration::from_secs(2),
            retry: fast_retry(),
        })
        .unwrap();

        let err = client.create_message(&text_message()).await.unwrap_err();

        assert!(matches!(err, TwilioError::Connect(_)), "{err:?}");
        assert!(!err.is_permanent());
    }

    #[tokio::test]
    async fn fetch_message_parses_a_failed_status_and_its_error_code() {
        let server = MockServer::start().await;
        let mut failed: serde_json::Value = serde_json::from_str(MESSAGE_QUEUED).unwrap();
        failed["status"] = "undelivered".into();
        failed["error_code"] = 63016.into();
        failed["error_message"] = "Outside the allowed window".into();
        Mock::given(method("GET"))
            .and(path(MESSAGE_PATH))
            .and(header("Authorization", basic(ACCOUNT, TOKEN).as_str()))
            .respond_with(ResponseTemplate::new(200).set_body_json(failed))
            .expect(1)
            .mount(&server)
            .await;

        let message = client(&server).fetch_message(MESSAGE_SID).await.unwrap();

        assert_eq!(message.status, "undelivered");
        assert_eq!(message.error_code, Some(63016));
        assert_eq!(
            message.error_message.as_deref(),
            Some("Outside the allowed window")
        );
    }

    #[tokio::test]
    async fn recent_messages_sends_to_from_and_page_size_and_keeps_messages_created_since() {
        let server = MockServer::start().await;
        let queued: serde_json::Value = serde_json::from_str(MESSAGE_QUEUED).unwrap();
        Mock::given(method("GET"))
            .and(path(MESSAGES_PATH))
            .and(query_param("To", RECIPIENT))
            .and(query_param("From", SENDER))
            .and(query_param("PageSize", "50"))
            .and(header("Authorization", basic(ACCOUNT, TOKEN).as_str()))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "messages": [queued],
                "next_page_uri": "/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages.json?Page=1",
                "page": 0,
                "page_size": 50,
            })))
            .expect(2)
            .mount(&server)
            .await;

        let since = |rfc2822: &str| {
            chrono::DateTime::parse_from_rfc2822(rfc2822)
                .unwrap()
                .with_timezone(&chrono::Utc)
        };
        let created = queued["date_created"].as_str().unwrap().to_owned();
        let messages = client(&server)
            .recent_messages(SENDER, RECIPIENT, since(&created))
            .await
            .unwrap();
        let later = client(&server)
            .recent_messages(
                SENDER,
                RECIPIENT,
                since(&created) + chrono::Duration::seconds(1),
            )
            .await
            .unwrap();

        assert!(
            later.is_empty(),
            "a message created before `since` is left out"
        );
        assert_eq!(messages.len(), 1);
        assert_eq!(messages[0].sid, MESSAGE_SID);
        let requests = server.received_requests().await.unwrap();
        let query = requests[0].url.query().unwrap_or_default().to_owned();
        assert!(query.contains("To=whatsapp%3A%2B393123456789"), "{query}");
    }

    #[tokio::test]
    async fn a_message_without_body_and_content_sid_or_with_both_sends_nothing() {
        let server = MockServer::start().await;
        Mock::given(wiremock::matchers::any())
            .respond_with(queued_created())
            .expect(0)
            .mount(&server)
            .await;
        let client = client(&server);
        let neither = SendMessage {
            body: None,
            ..text_message()
        };
        let both = SendMessage {
            body: Some("Ciao".to_owned()),
            ..template_message()
        };
        let empty_body = SendMessage {
            body: Some(String::new()),
            ..text_message()
        };
        let variables_without_template = SendMessage {
            content_variables: Some("{}".to_owned()),
            ..text_message()
        };

        for bad in [neither, both, empty_body, variables_without_template] {
            let err = client.create_message(&bad).await.unwrap_err();
            assert!(matches!(err, TwilioError::Config(_)), "{bad:?}: {err:?}");
            assert!(err.is_permanent());
        }
    }

    #[tokio::test]
    async fn a_bad_content_or_message_sid_sends_no_request() {
        let server = MockServer::start().await;
        Mock::given(wiremock::matchers::any())
            .respond_with(queued_created())
            .expect(0)
            .mount(&server)
            .await;
        let client = client(&server);
        let bad_template = SendMessage {
            content_sid: Some("HX123".to_owned()),
            ..template_message()
        };

        assert_eq!(
            client.create_message(&bad_template).await.unwrap_err(),
            TwilioError::InvalidSid("HX123".to_owned())
        );
        for bad in [
            "SM0123",
            NUMBER_SID,
            "SM0123456789abcdef0123456789abcdeg",
            "SM0123456789abcdef0123456789abcdef/../x",
        ] {
            assert_eq!(
                client.fetch_message(bad).await.unwrap_err(),
                TwilioError::InvalidSid(bad.to_owned())
            );
        }
    }

    #[test]
    fn permanent_errors_are_the_listed_codes_and_4xx_other_than_429() {
        let api = |status, code| TwilioError::Api {
            status,
            code,
            message: "m".to_owned(),
            more_info: None,
        };
        for code in [20003, 21211, 21408, 21610, 63007] {
            let status = if code == 20003 { 401 } else { 400 };
            assert!(api(status, Some(code)).is_permanent(), "{code}");
            assert!(!api(status, Some(code)).is_retryable(), "{code}");
        }
        assert!(api(400, Some(21649)).is_permanent());
        assert!(api(404, None).is_permanent());
        assert!(!api(429, Some(20429)).is_permanent());
        assert!(!api(400, Some(20429)).is_permanent());
        assert!(!api(500, None).is_permanent());
        assert!(!api(503, Some(20500)).is_permanent());
        assert!(!TwilioError::Timeout.is_permanent());
        assert!(!TwilioError::Connect("refused".to_owned()).is_permanent());
        assert!(!TwilioError::Decode("eof".to_owned()).is_permanent());
        assert!(TwilioError::InvalidSid("x".to_owned()).is_permanent());
        assert!(TwilioError::Config("x".to_owned()).is_permanent());
    }

    #[test]
    fn addresses_are_masked_after_the_channel_prefix() {
        assert_eq!(mask_address(RECIPIENT), "whatsapp:+39312***6789");
        assert_eq!(mask_address("+393123456789"), "+39312***6789");
    }
}
