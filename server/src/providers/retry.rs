//! One retry policy for outside APIs: 429, 5xx, timeouts and connection
//! errors are retried with exponential backoff and jitter, honouring
//! `Retry-After` (clamped) when the server sends one.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use reqwest::{StatusCode, header::HeaderMap};

/// How hard to try. Tests shrink the delays to milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: usize,
    pub min_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 3,
            min_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    pub fn none() -> Self {
        Self {
            max_retries: 0,
            ..Self::default()
        }
    }

    /// The jittered delays between attempts, at most `max_retries` of them.
    pub fn delays(&self) -> impl Iterator<Item = Duration> + use<> {
        ExponentialBuilder::default()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_max_times(self.max_retries)
            .with_jitter()
            .build()
    }

    /// The wait before the next attempt: the server's `Retry-After` when it
    /// gave one (never above `max_delay`), else the backoff's.
    pub fn wait(&self, backoff: Duration, retry_after: Option<Duration>) -> Duration {
        match retry_after {
            Some(asked) => asked.min(self.max_delay).max(backoff.min(self.max_delay)),
            None => backoff,
        }
    }
}

/// Statuses worth another try: rate limits and server-side trouble.
pub fn is_retryable_status(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

/// Transport failures worth another try: timeouts and connection trouble.
pub fn is_retryable_transport(err: &reqwest::Error) -> bool {
    err.is_timeout() || err.is_connect() || err.is_request()
}

/// `Retry-After` in seconds or as an HTTP date.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    if let Ok(secs) = value.trim().parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value.trim()).ok()?;
    at.duration_since(std::time::SystemTime::now()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_read_in_seconds_and_clamped() {
        let mut headers = HeaderMap::new();
        headers.insert(reqwest::header::RETRY_AFTER, "120".parse().unwrap());
        let asked = retry_after(&headers);
        assert_eq!(asked, Some(Duration::from_secs(120)));
        let policy = RetryPolicy::default();
        assert_eq!(
            policy.wait(Duration::from_millis(300), asked),
            policy.max_delay
        );
        assert_eq!(policy.delays().count(), 3);
    }
}
