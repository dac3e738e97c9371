//! Authentication of Vapi webhooks.
//!
//! Every check runs on the raw body bytes before anything is parsed, and every
//! comparison of secret material is constant time, so neither a timing side
//! channel nor a parser bug is reachable by an unauthenticated caller.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::Secret;

type HmacSha256 = Hmac<Sha256>;

/// The header our number link writes (Vapi's legacy `serverUrlSecret` header).
pub const DEFAULT_SECRET_HEADER: &str = "X-Vapi-Secret";
/// Vapi's default `signatureHeader` for an HMAC credential.
pub const DEFAULT_SIGNATURE_HEADER: &str = "x-signature";
/// Vapi's default `timestampHeader` for an HMAC credential.
pub const DEFAULT_TIMESTAMP_HEADER: &str = "x-timestamp";

/// Timestamps above this are milliseconds: 10^12 seconds is ~31,700 years
/// away, while 10^12 ms is September 2001, so the two ranges never overlap in
/// practice.
const MS_THRESHOLD: u64 = 1_000_000_000_000;

/// How Vapi proves a webhook is from Vapi. Default: the X-Vapi-Secret header our number link writes.
#[derive(Clone, Debug)]
pub enum WebhookAuth {
    /// A header whose value must equal the secret (default header "X-Vapi-Secret").
    SecretHeader { header: String, secret: Secret },
    /// `Authorization: Bearer <token>` (Vapi's bearer credential).
    Bearer { token: Secret },
    /// Vapi's HMAC credential: hex(HMAC-SHA256(secret, "{timestamp}.{body}")) in `signature_header`
    /// (optional `prefix` such as "sha256=" stripped), timestamp in `timestamp_header` (seconds or
    /// milliseconds since the epoch: values above 10^12 are ms), accepted within ±`window` of now.
    Hmac {
        secret: Secret,
        signature_header: String,
        timestamp_header: String,
        prefix: Option<String>,
        window: Duration,
    },
}

/// Why a webhook was refused. Messages name headers, never secret values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The named header is absent.
    #[error("missing credential header {0}")]
    Missing(String),
    /// The credential is well formed but wrong.
    #[error("credential does not match")]
    Mismatch,
    /// The credential cannot be read (not hex, wrong scheme, bad timestamp...).
    #[error("malformed credential: {0}")]
    Malformed(String),
    /// The signed timestamp is outside the accepted window.
    #[error("timestamp outside the accepted window")]
    Expired,
}

impl AuthError {
    /// A stable machine-readable code for responses and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Missing(_) => "MISSING_CREDENTIAL",
            AuthError::Mismatch => "BAD_CREDENTIAL",
            AuthError::Malformed(_) => "MALFORMED_CREDENTIAL",
            AuthError::Expired => "STALE_TIMESTAMP",
        }
    }
}

impl WebhookAuth {
    /// Checks on the raw body bytes, in constant time (subtle), before anything is parsed.
    pub fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: SystemTime,
    ) -> Result<(), AuthError> {
        match self {
            WebhookAuth::SecretHeader { header, secret } => {
                let value = single_header(headers, header)?;
                check_equal(value.as_bytes(), secret.expose().as_bytes())
            }
            WebhookAuth::Bearer { token } => {
                let name = axum::http::header::AUTHORIZATION.as_str();
                let value = single_header(headers, name)?.as_bytes();
                // The auth scheme is case-insensitive (RFC 9110 §11.1).
                let presented = value
                    .get(..7)
                    .filter(|scheme| scheme.eq_ignore_ascii_case(b"Bearer "))
                    .and_then(|_| value.get(7..))
                    .ok_or_else(|| {
                        AuthError::Malformed("Authorization: expected Bearer scheme".into())
                    })?;
                check_equal(presented, token.expose().as_bytes())
            }
            WebhookAuth::Hmac {
                secret,
                signature_header,
                timestamp_header,
                prefix,
                window,
            } => {
                let signature = single_header(headers, signature_header)?.as_bytes();
                let timestamp = single_header(headers, timestamp_header)?.as_bytes();
                let signature = match prefix.as_deref() {
                    Some(p) => signature.strip_prefix(p.as_bytes()).ok_or_else(|| {
                        AuthError::Malformed(format!("{signature_header}: expected prefix {p:?}"))
                    })?,
                    None => signature,
                };
                let signature = hex::decode(signature)
                    .map_err(|_| AuthError::Malformed(format!("{signature_header}: not hex")))?;
                let signed_at = parse_timestamp(timestamp).ok_or_else(|| {
                    AuthError::Malformed(format!("{timestamp_header}: not a Unix timestamp"))
                })?;
                // Signature first: only an authentic request learns that it is
                // merely stale, and the timestamp is trusted only once signed.
                mac_over(secret, timestamp, body)
                    .verify_slice(&signature)
                    .map_err(|_| AuthError::Mismatch)?;
                let now = now.duration_since(UNIX_EPOCH).unwrap_or_default();
                let skew = now.abs_diff(signed_at);
                if skew > *window {
                    return Err(AuthError::Expired);
                }
                Ok(())
            }
        }
    }

    /// For tests and tools: the headers that authenticate `body` at `now` (HMAC computes the signature).
    ///
    /// The HMAC timestamp is written in whole seconds.
    pub fn sign(&self, body: &[u8], now: SystemTime) -> Vec<(String, String)> {
        match self {
            WebhookAuth::SecretHeader { header, secret } => {
                vec![(header.clone(), secret.expose().to_owned())]
            }
            WebhookAuth::Bearer { token } => vec![(
                axum::http::header::AUTHORIZATION.as_str().to_owned(),
                format!("Bearer {}", token.expose()),
            )],
            WebhookAuth::Hmac {
                secret,
                signature_header,
                timestamp_header,
                prefix,
                window: _,
            } => {
                let timestamp = now
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs()
                    .to_string();
                let tag = mac_over(secret, timestamp.as_bytes(), body)
                    .finalize()
                    .into_bytes();
                let signature = format!("{}{}", prefix.as_deref().unwrap_or(""), hex::encode(tag));
                vec![
                    (signature_header.clone(), signature),
                    (timestamp_header.clone(), timestamp),
                ]
            }
        }
    }

    /// Parse from config: mode "secret" | "bearer" | "hmac" plus the secret and options.
    ///
    /// Options that do not apply to the chosen mode are ignored, so a config
    /// layer may pass its defaults for all of them. Unset header names take
    /// the defaults above; an empty prefix means none.
    pub fn from_config(
        mode: &str,
        secret: Secret,
        header: Option<&str>,
        signature_header: Option<&str>,
        timestamp_header: Option<&str>,
        prefix: Option<&str>,
        window_secs: u64,
    ) -> Result<Self, String> {
        // An empty secret would authenticate anyone who sends an empty header.
        if secret.expose().is_empty() {
            return Err("webhook secret is empty".into());
        }
        match mode.trim().to_ascii_lowercase().as_str() {
            "secret" => Ok(WebhookAuth::SecretHeader {
                header: header_name(header, DEFAULT_SECRET_HEADER)?,
                secret,
            }),
            "bearer" => Ok(WebhookAuth::Bearer { token: secret }),
            "hmac" => {
                // A zero window would reject nearly every honest request.
                if window_secs == 0 {
                    return Err("webhook HMAC window must be at least 1 second".into());
                }
                Ok(WebhookAuth::Hmac {
                    secret,
                    signature_header: header_name(signature_header, DEFAULT_SIGNATURE_HEADER)?,
                    timestamp_header: header_name(timestamp_header, DEFAULT_TIMESTAMP_HEADER)?,
                    prefix: prefix.filter(|p| !p.is_empty()).map(str::to_owned),
                    window: Duration::from_secs(window_secs),
                })
            }
            other => Err(format!(
                "unknown webhook auth mode {other:?} (expected secret, bearer or hmac)"
            )),
        }
    }
}

/// Exactly one value: a repeated credential header is ambiguous (which one
/// did a proxy add?), so it is refused rather than guessed.
fn single_header<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a HeaderValue, AuthError> {
    let mut values = headers.get_all(name).iter();
    let first = values
        .next()
        .ok_or_else(|| AuthError::Missing(name.to_owned()))?;
    if values.next().is_some() {
        return Err(AuthError::Malformed(format!("{name}: repeated header")));
    }
    Ok(first)
}

/// Compares fixed-length digests so that neither content nor length leaks
/// through timing.
fn check_equal(presented: &[u8], expected: &[u8]) -> Result<(), AuthError> {
    let a = Sha256::digest(presented);
    let b = Sha256::digest(expected);
    if bool::from(a[..].ct_eq(&b[..])) {
        Ok(())
    } else {
        Err(AuthError::Mismatch)
    }
}

/// The MAC over Vapi's `"{timestamp}.{body}"`, using the timestamp exactly as
/// sent (reformatting it would break the signature).
fn mac_over(secret: &Secret, timestamp: &[u8], body: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret.expose().as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(timestamp);
    mac.update(b".");
    mac.update(body);
    mac
}

/// Seconds or milliseconds since the epoch, as a duration.
fn parse_timestamp(raw: &[u8]) -> Option<Duration> {
    let value: u64 = std::str::from_utf8(raw).ok()?.trim().parse().ok()?;
    Some(if value > MS_THRESHOLD {
        Duration::from_millis(value)
    } else {
        Duration::from_secs(value)
    })
}

/// A configured header name, checked now so a typo fails at startup rather
/// than as "missing header" on every request.
fn header_name(configured: Option<&str>, default: &str) -> Result<String, String> {
    let name = configured
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .unwrap_or(default);
    HeaderName::from_bytes(name.as_bytes())
        .map(|_| name.to_owned())
        .map_err(|_| format!("invalid header name {name:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = br#"{"message":{"type":"status-update"}}"#;
    const T0: u64 = 1_700_000_000;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn secret(s: &str) -> Secret {
        s.parse().expect("infallible")
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).expect("valid name"),
                HeaderValue::from_str(value).expect("valid value"),
            );
        }
        map
    }

    fn signed(auth: &WebhookAuth, body: &[u8], now: SystemTime) -> HeaderMap {
        let pairs = auth.sign(body, now);
        let refs: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        headers(&refs)
    }

    fn secret_auth() -> WebhookAuth {
        WebhookAuth::SecretHeader {
            header: DEFAULT_SECRET_HEADER.into(),
            secret: secret("s3cret-value"),
        }
    }

    fn bearer_auth() -> WebhookAuth {
        WebhookAuth::Bearer {
            token: secret("tok-123"),
        }
    }

    fn hmac_auth(prefix: Option<&str>) -> WebhookAuth {
        WebhookAuth::Hmac {
            secret: secret("vapi-test-key"),
            signature_header: DEFAULT_SIGNATURE_HEADER.into(),
            timestamp_header: DEFAULT_TIMESTAMP_HEADER.into(),
            prefix: prefix.map(str::to_owned),
            window: Duration::from_secs(300),
        }
    }

    // Computed independently:
    // python3 -c "import hmac,hashlib;print(hmac.new(b'vapi-test-key',
    //   b'1700000000.{\"message\":{\"type\":\"status-update\"}}', hashlib.sha256).hexdigest())"
    const VECTOR: &str = "ca15b20405521afc4124832893a637094c1373353eae2ce831a410d7d4757974";

    #[test]
    fn secret_header_accepts_the_right_secret() {
        let h = headers(&[("X-Vapi-Secret", "s3cret-value")]);
        assert_eq!(secret_auth().verify(&h, BODY, at(T0)), Ok(()));
    }

    #[test]
    fn secret_header_rejects_a_wrong_secret() {
        for wrong in ["s3cret-valuf", "s3cret", "s3cret-value-and-more", ""] {
            let h = headers(&[("X-Vapi-Secret", wrong)]);
            assert_eq!(
                secret_auth().verify(&h, BODY, at(T0)),
                Err(AuthError::Mismatch)
            );
        }
    }

    #[test]
    fn secret_header_rejects_a_missing_header() {
        let h = headers(&[("X-Other", "s3cret-value")]);
        assert_eq!(
            secret_auth().verify(&h, BODY, at(T0)),
            Err(AuthError::Missing("X-Vapi-Secret".into()))
        );
    }

    #[test]
    fn secret_header_rejects_a_repeated_header() {
        let h = headers(&[
            ("X-Vapi-Secret", "wrong"),
            ("X-Vapi-Secret", "s3cret-value"),
        ]);
        let err = secret_auth().verify(&h, BODY, at(T0)).unwrap_err();
        assert_eq!(err.code(), "MALFORMED_CREDENTIAL");
    }

    #[test]
    fn header_lookup_is_case_insensitive() {
        let h = headers(&[("x-vapi-secret", "s3cret-value")]);
        assert_eq!(secret_auth().verify(&h, BODY, at(T0)), Ok(()));
        let h = headers(&[("authorization", "bearer tok-123")]);
        assert_eq!(bearer_auth().verify(&h, BODY, at(T0)), Ok(()));
        let h = headers(&[("X-SIGNATURE", VECTOR), ("X-Timestamp", "1700000000")]);
        assert_eq!(hmac_auth(None).verify(&h, BODY, at(T0)), Ok(()));
    }

    #[test]
    fn bearer_accepts_the_right_token() {
        let h = headers(&[("Authorization", "Bearer tok-123")]);
        assert_eq!(bearer_auth().verify(&h, BODY, at(T0)), Ok(()));
    }

    #[test]
    fn bearer_rejects_a_wrong_token() {
        let h = headers(&[("Authorization", "Bearer tok-124")]);
        assert_eq!(
            bearer_auth().verify(&h, BODY, at(T0)),
            Err(AuthError::Mismatch)
        );
    }

    #[test]
    fn bearer_rejects_a_missing_header() {
        assert_eq!(
            bearer_auth().verify(&HeaderMap::new(), BODY, at(T0)),
            Err(AuthError::Missing("authorization".into()))
        );
    }

    #[test]
    fn bearer_rejects_another_scheme_as_malformed() {
        for value in ["Basic tok-123", "tok-123", "Bearer"] {
            let h = headers(&[("Authorization", value)]);
            let err = bearer_auth().verify(&h, BODY, at(T0)).unwrap_err();
            assert!(matches!(err, AuthError::Malformed(_)), "{value}: {err:?}");
        }
    }

    #[test]
    fn hmac_accepts_the_independent_test_vector() {
        let h = headers(&[("x-signature", VECTOR), ("x-timestamp", "1700000000")]);
        assert_eq!(hmac_auth(None).verify(&h, BODY, at(T0)), Ok(()));
    }

    #[test]
    fn hmac_sign_reproduces_the_independent_test_vector() {
        let pairs = hmac_auth(Some("sha256=")).sign(BODY, at(T0));
        assert_eq!(
            pairs,
            vec![
                ("x-signature".to_owned(), format!("sha256={VECTOR}")),
                ("x-timestamp".to_owned(), "1700000000".to_owned()),
            ]
        );
    }

    #[test]
    fn hmac_strips_the_configured_prefix() {
        let h = headers(&[
            ("x-signature", &format!("sha256={VECTOR}")),
            ("x-timestamp", "1700000000"),
        ]);
        assert_eq!(hmac_auth(Some("sha256=")).verify(&h, BODY, at(T0)), Ok(()));
    }

    #[test]
    fn hmac_rejects_a_signature_without_the_configured_prefix() {
        let h = headers(&[("x-signature", VECTOR), ("x-timestamp", "1700000000")]);
        let err = hmac_auth(Some("sha256="))
            .verify(&h, BODY, at(T0))
            .unwrap_err();
        assert!(matches!(err, AuthError::Malformed(_)), "{err:?}");
    }

    #[test]
    fn hmac_rejects_a_wrong_signature() {
        let mut wrong = VECTOR.to_owned();
        wrong.replace_range(0..1, "d");
        let h = headers(&[("x-signature", &wrong), ("x-timestamp", "1700000000")]);
        assert_eq!(
            hmac_auth(None).verify(&h, BODY, at(T0)),
            Err(AuthError::Mismatch)
        );
    }

    #[test]
    fn hmac_rejects_a_truncated_signature() {
        let h = headers(&[
            ("x-signature", &VECTOR[..32]),
            ("x-timestamp", "1700000000"),
        ]);
        assert_eq!(
            hmac_auth(None).verify(&h, BODY, at(T0)),
            Err(AuthError::Mismatch)
        );
    }

    #[test]
    fn hmac_rejects_a_body_changed_by_one_byte() {
        let auth = hmac_auth(None);
        let h = signed(&auth, BODY, at(T0));
        let mut body = BODY.to_vec();
        body[12] ^= 1;
        assert_eq!(auth.verify(&h, &body, at(T0)), Err(AuthError::Mismatch));
    }

    #[test]
    fn hmac_rejects_a_signature_replayed_with_another_timestamp() {
        let h = headers(&[("x-signature", VECTOR), ("x-timestamp", "1700000001")]);
        assert_eq!(
            hmac_auth(None).verify(&h, BODY, at(T0)),
            Err(AuthError::Mismatch)
        );
    }

    #[test]
    fn hmac_rejects_a_missing_signature_or_timestamp() {
        let auth = hmac_auth(None);
        let h = headers(&[("x-timestamp", "1700000000")]);
        assert_eq!(
            auth.verify(&h, BODY, at(T0)),
            Err(AuthError::Missing("x-signature".into()))
        );
        let h = headers(&[("x-signature", VECTOR)]);
        assert_eq!(
            auth.verify(&h, BODY, at(T0)),
            Err(AuthError::Missing("x-timestamp".into()))
        );
    }

    #[test]
    fn hmac_rejects_a_malformed_hex_signature() {
        for bad in ["zz15b204", "abc", "not hex at all"] {
            let h = headers(&[("x-signature", bad), ("x-timestamp", "1700000000")]);
            let err = hmac_auth(None).verify(&h, BODY, at(T0)).unwrap_err();
            assert!(matches!(err, AuthError::Malformed(_)), "{bad}: {err:?}");
            assert_eq!(err.code(), "MALFORMED_CREDENTIAL");
        }
    }

    #[test]
    fn hmac_rejects_a_malformed_timestamp() {
        for bad in ["soon", "-5", "1.7e9"] {
            let h = headers(&[("x-signature", VECTOR), ("x-timestamp", bad)]);
            let err = hmac_auth(None).verify(&h, BODY, at(T0)).unwrap_err();
            assert!(matches!(err, AuthError::Malformed(_)), "{bad}: {err:?}");
        }
    }

    #[test]
    fn hmac_rejects_a_timestamp_too_far_in_the_past() {
        let auth = hmac_auth(None);
        let h = signed(&auth, BODY, at(T0));
        assert_eq!(auth.verify(&h, BODY, at(T0 + 300)), Ok(()));
        assert_eq!(auth.verify(&h, BODY, at(T0 + 301)), Err(AuthError::Expired));
    }

    #[test]
    fn hmac_rejects_a_timestamp_too_far_in_the_future() {
        let auth = hmac_auth(None);
        let h = signed(&auth, BODY, at(T0));
        assert_eq!(auth.verify(&h, BODY, at(T0 - 300)), Ok(()));
        assert_eq!(auth.verify(&h, BODY, at(T0 - 301)), Err(AuthError::Expired));
    }

    #[test]
    fn hmac_accepts_millisecond_timestamps() {
        let auth = hmac_auth(None);
        let ts = "1700000000123";
        let sig = hex::encode(
            mac_over(&secret("vapi-test-key"), ts.as_bytes(), BODY)
                .finalize()
                .into_bytes(),
        );
        let h = headers(&[("x-signature", &sig), ("x-timestamp", ts)]);
        assert_eq!(auth.verify(&h, BODY, at(T0)), Ok(()));
        // Read as seconds it would be ~50,000 years ahead; read as ms it is
        // still checked against the window.
        assert_eq!(auth.verify(&h, BODY, at(T0 + 301)), Err(AuthError::Expired));
    }

    #[test]
    fn hmac_accepts_second_timestamps() {
        let auth = hmac_auth(None);
        let h = headers(&[("x-signature", VECTOR), ("x-timestamp", "1700000000")]);
        assert_eq!(auth.verify(&h, BODY, at(T0 + 10)), Ok(()));
    }

    #[test]
    fn sign_output_verifies_in_every_mode() {
        for auth in [
            secret_auth(),
            bearer_auth(),
            hmac_auth(None),
            hmac_auth(Some("sha256=")),
        ] {
            let h = signed(&auth, BODY, at(T0));
            assert_eq!(auth.verify(&h, BODY, at(T0)), Ok(()), "{auth:?}");
        }
    }

    #[test]
    fn debug_and_errors_show_no_secret() {
        for auth in [secret_auth(), bearer_auth(), hmac_auth(Some("sha256="))] {
            let shown = format!("{auth:?}");
            for s in ["s3cret-value", "tok-123", "vapi-test-key"] {
                assert!(!shown.contains(s), "{shown}");
            }
        }
        let h = headers(&[("X-Vapi-Secret", "s3cret-valuX")]);
        let err = secret_auth().verify(&h, BODY, at(T0)).unwrap_err();
        assert!(!err.to_string().contains("s3cret"));
    }

    #[test]
    fn error_codes_are_stable() {
        assert_eq!(AuthError::Missing("x".into()).code(), "MISSING_CREDENTIAL");
        assert_eq!(AuthError::Mismatch.code(), "BAD_CREDENTIAL");
        assert_eq!(
            AuthError::Malformed("x".into()).code(),
            "MALFORMED_CREDENTIAL"
        );
        assert_eq!(AuthError::Expired.code(), "STALE_TIMESTAMP");
    }

    #[test]
    fn from_config_builds_each_mode_with_defaults() {
        let auth =
            WebhookAuth::from_config("secret", secret("k"), None, None, None, None, 300).unwrap();
        assert!(
            matches!(&auth, WebhookAuth::SecretHeader { header, .. } if header == DEFAULT_SECRET_HEADER)
        );
        let auth = WebhookAuth::from_config(
            "Bearer",
            secret("k"),
            Some("X-Ignored"),
            None,
            None,
            None,
            0,
        )
        .unwrap();
        assert!(matches!(auth, WebhookAuth::Bearer { .. }));
        let auth =
            WebhookAuth::from_config("hmac", secret("k"), None, None, None, Some(""), 120).unwrap();
        match auth {
            WebhookAuth::Hmac {
                signature_header,
                timestamp_header,
                prefix,
                window,
                secret: _,
            } => {
                assert_eq!(signature_header, DEFAULT_SIGNATURE_HEADER);
                assert_eq!(timestamp_header, DEFAULT_TIMESTAMP_HEADER);
                assert_eq!(prefix, None);
                assert_eq!(window, Duration::from_secs(120));
            }
            other @ (WebhookAuth::SecretHeader { .. } | WebhookAuth::Bearer { .. }) => {
                panic!("expected Hmac, got {other:?}")
            }
        }
    }

    #[test]
    fn from_config_takes_custom_headers_and_prefix() {
        let auth = WebhookAuth::from_config(
            "hmac",
            secret("vapi-test-key"),
            None,
            Some("X-Vapi-Signature"),
            Some("X-Vapi-Timestamp"),
            Some("sha256="),
            300,
        )
        .unwrap();
        let h = headers(&[
            ("x-vapi-signature", &format!("sha256={VECTOR}")),
            ("x-vapi-timestamp", "1700000000"),
        ]);
        assert_eq!(auth.verify(&h, BODY, at(T0)), Ok(()));
    }

    #[test]
    fn from_config_rejects_bad_settings() {
        let bad = [
            WebhookAuth::from_config("basic", secret("k"), None, None, None, None, 300),
            WebhookAuth::from_config("secret", secret(""), None, None, None, None, 300),
            WebhookAuth::from_config(
                "secret",
                secret("k"),
                Some("bad header"),
                None,
                None,
                None,
                300,
            ),
            WebhookAuth::from_config("hmac", secret("k"), None, Some("x:sig"), None, None, 300),
            WebhookAuth::from_config("hmac", secret("k"), None, None, None, None, 0),
        ];
        for result in bad {
            assert!(result.is_err(), "{result:?}");
        }
    }
}
