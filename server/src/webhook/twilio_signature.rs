//! X-Twilio-Signature validation of Twilio webhooks.
//!
//! Twilio signs a form POST with base64(HMAC-SHA1(auth token, url + params)),
//! where params are the decoded body pairs sorted by name, then by value for a
//! repeated name, identical pairs once (the python/node rule; twilio-go's sort
//! of the concatenated `name+value` strings differs when one name prefixes
//! another, e.g. `To` and `ToCountry`). The check runs on the raw body bytes, before any
//! extractor parses them.

use axum::http::HeaderMap;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use subtle::ConstantTimeEq;

use crate::config::Secret;

type HmacSha1 = Hmac<Sha1>;

/// The header Twilio puts its signature in.
pub const SIGNATURE_HEADER: &str = "X-Twilio-Signature";

/// Why a Twilio webhook was refused. Messages never carry secret material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No X-Twilio-Signature header.
    #[error("missing X-Twilio-Signature header")]
    Missing,
    /// The header is repeated, not ASCII, not padded standard base64, or not
    /// 20 bytes (an HMAC-SHA1) once decoded.
    #[error("malformed X-Twilio-Signature header")]
    Malformed,
    /// Well formed, but matches none of the accepted URL forms.
    #[error("X-Twilio-Signature does not match")]
    Mismatch,
}

/// The signature of a form POST: base64(HMAC-SHA1(auth_token, url + sorted name+value pairs)).
pub fn sign(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    STANDARD.encode(mac(auth_token, url, params))
}

/// Decodes an application/x-www-form-urlencoded body into pairs, keeping empty values and repeats.
///
/// `+` becomes a space and invalid UTF-8 becomes U+FFFD, as in Twilio's own
/// helpers (which decode before signing). Identical repeats are kept here;
/// signing counts them once, as twilio-python (9.13.0) and twilio-node do.
pub fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body)
        .map(|(name, value)| (name.into_owned(), value.into_owned()))
        .collect()
}

/// Checks X-Twilio-Signature for a form POST received at `public_url` (the configured public URL + path + raw query, as Twilio requested it): tries the URL as given, and with the default port added (:443 for https, :80 for http) or removed, comparing in constant time.
pub fn verify(
    auth_token: &Secret,
    public_url: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), SignatureError> {
    let presented = presented_signature(headers)?;
    let params = form_pairs(body);
    let token = auth_token.expose();

    // Twilio is inconsistent about including the default port, so its helpers
    // accept both forms. Every candidate is checked (no early exit) so timing
    // does not tell which form matched.
    let mut matched = mac(token, public_url, &params)[..].ct_eq(&presented[..]);
    if let Some(other) = toggle_default_port(public_url) {
        matched |= mac(token, &other, &params)[..].ct_eq(&presented[..]);
    }
    if bool::from(matched) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// The raw MAC: `url` then, for each pair sorted by name and then value, the
/// name and value with no separators.
fn mac(auth_token: &str, url: &str, params: &[(String, String)]) -> [u8; 20] {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    // Tuple order on `String` is byte order on UTF-8: by name, then value.
    sorted.sort_unstable();
    // Identical pairs count once, as in twilio-python and twilio-node.
    sorted.dedup();
    let mut mac =
        HmacSha1::new_from_slice(auth_token.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    mac.finalize().into_bytes().into()
}

/// The decoded header. A repeated header is refused rather than guessed at
/// (which copy did a proxy add?).
fn presented_signature(headers: &HeaderMap) -> Result<[u8; 20], SignatureError> {
    let mut values = headers.get_all(SIGNATURE_HEADER).iter();
    let value = values.next().ok_or(SignatureError::Missing)?;
    if values.next().is_some() {
        return Err(SignatureError::Malformed);
    }
    let text = value.to_str().map_err(|_| SignatureError::Malformed)?;
    let bytes = STANDARD
        .decode(text)
        .map_err(|_| SignatureError::Malformed)?;
    // The length of an HMAC-SHA1 is public, so refusing other lengths early
    // leaks nothing.
    bytes.try_into().map_err(|_| SignatureError::Malformed)
}

/// `url` with its scheme's default port removed if present, or added if no
/// port is given; `None` for other schemes and non-default ports. Works on the
/// string, because `url::Url` would drop default ports and could re-encode
/// the query, and the signed URL must stay byte for byte as Twilio sent it.
fn toggle_default_port(url: &str) -> Option<String> {
    let (scheme_len, default_port) = if starts_with_ignore_case(url, "https://") {
        ("https://".len(), ":443")
    } else if starts_with_ignore_case(url, "http://") {
        ("http://".len(), ":80")
    } else {
        return None;
    };
    let rest = &url[scheme_len..];
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_len);
    // Userinfo may contain ':' too; the port follows the host, after any '@'.
    let host_start = authority.rfind('@').map_or(0, |at| at + 1);
    let host_port = &authority[host_start..];
    // A ':' inside an IPv6 literal (`[::1]`) is not a port separator.
    let port_sep = host_port
        .rfind(':')
        .filter(|&i| !host_port[i..].contains(']'));
    let new_authority = match port_sep {
        Some(i) if &host_port[i..] == default_port => {
            format!("{}{}", &authority[..host_start], &host_port[..i])
        }
        Some(_) => return None,
        None => format!("{authority}{default_port}"),
    };
    Some(format!("{}{}{}", &url[..scheme_len], new_authority, tail))
}

fn starts_with_ignore_case(text: &str, prefix: &str) -> bool {
    text.get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
}

#[cfg(test)]
mod tests {
    //! Expected signatures other than Twilio's published one were computed
    //! independently with python3 (hmac, hashlib, base64; pairs grouped by
    //! name, names sorted, each name's values sorted). The vectors in
    //! `testdata/twilio_signature_vectors.json` were computed by twilio-python's
    //! RequestValidator with `scripts/twilio-signature-vectors.py`.

    use axum::http::HeaderValue;

    use super::*;

    const TOKEN: &str = "12345";
    const URL: &str = "https://example.com/webhooks/twilio/messages";

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect()
    }

    fn secret(token: &str) -> Secret {
        token.parse().expect("infallible")
    }

    fn headers_with(signature: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            SIGNATURE_HEADER,
            HeaderValue::from_str(signature).expect("valid header value"),
        );
        headers
    }

    #[test]
    fn twilios_published_vector_signs_to_its_published_signature() {
        let params = pairs(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675309"),
            ("Digits", "1234"),
            ("From", "+14158675309"),
            ("To", "+18005551212"),
        ]);
        assert_eq!(
            sign(
                TOKEN,
                "https://mycompany.com/myapp.php?foo=1&bar=2",
                &params
            ),
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        );
    }

    #[test]
    fn a_name_that_prefixes_another_sorts_by_name_not_by_concatenation() {
        let params = pairs(&[
            ("To", "whatsapp:+393331234567"),
            ("ToCountry", "IT"),
            ("From", "whatsapp:+14155238886"),
        ]);
        let signature = sign(TOKEN, URL, &params);
        assert_eq!(signature, "EJZEgylhIK7/3LPVORHvaLlx3BE=");
        // What twilio-go's sort of the concatenated strings would produce.
        assert_ne!(signature, "9Pr8djBnThXbEYFRoT21sdKj/WM=");
    }

    #[test]
    fn an_empty_value_is_kept_and_signed() {
        let body =
            b"MessageStatus=undelivered&ErrorCode=&MessageSid=SM00000000000000000000000000000001";
        let params = form_pairs(body);
        assert!(params.contains(&("ErrorCode".to_owned(), String::new())));
        assert_eq!(sign(TOKEN, URL, &params), "LvliYUK1uv58T3GJbZMHROXIC9A=");
    }

    #[test]
    fn repeated_keys_are_kept_and_sorted_by_value() {
        let body = b"MediaUrl=https%3A%2F%2Fmedia.example%2Fb&NumMedia=2&MediaUrl=https%3A%2F%2Fmedia.example%2Fa";
        let params = form_pairs(body);
        assert_eq!(params.len(), 3);
        assert_eq!(sign(TOKEN, URL, &params), "Fe1UA+cSipAM9ViAZAu6JCu1Gd4=");
    }

    #[test]
    fn identical_repeats_are_signed_once_as_twilio_python_does() {
        let params = form_pairs(b"Tag=x&Tag=x");
        assert_eq!(params.len(), 2, "the pairs are kept");
        assert_eq!(
            sign(TOKEN, URL, &params),
            sign(TOKEN, URL, &form_pairs(b"Tag=x")),
            "but signed once"
        );
    }

    #[test]
    fn utf8_values_are_decoded_and_signed_as_utf8() {
        let body = b"Body=Citt%C3%A0+pi%C3%B9+bella+%E2%82%AC&From=whatsapp%3A%2B393331234567";
        let params = form_pairs(body);
        assert_eq!(
            params,
            pairs(&[
                ("Body", "Città più bella €"),
                ("From", "whatsapp:+393331234567")
            ])
        );
        assert_eq!(sign(TOKEN, URL, &params), "BVnGwTegGR71UYoeWDU2/1+uU+M=");
    }

    #[test]
    fn verify_accepts_a_signature_made_with_443_at_a_url_without_it() {
        let headers = headers_with("+tgtph7DAl8Hab+JSZgotUdPe+Q=");
        let url = "https://example.com/webhooks/twilio/messages?x=1";
        assert_eq!(verify(&secret(TOKEN), url, &headers, b"A=1"), Ok(()));
    }

    #[test]
    fn verify_accepts_a_signature_made_without_443_at_a_url_with_it() {
        let headers = headers_with("LW+2Xryox7F3JQaFeEBWmzx5u9g=");
        let url = "https://example.com:443/webhooks/twilio/messages?x=1";
        assert_eq!(verify(&secret(TOKEN), url, &headers, b"A=1"), Ok(()));
    }

    #[test]
    fn verify_accepts_the_url_as_given_both_with_and_without_443() {
        let with_port = "https://example.com:443/webhooks/twilio/messages?x=1";
        let without_port = "https://example.com/webhooks/twilio/messages?x=1";
        let with_sig = headers_with("+tgtph7DAl8Hab+JSZgotUdPe+Q=");
        let without_sig = headers_with("LW+2Xryox7F3JQaFeEBWmzx5u9g=");
        assert_eq!(verify(&secret(TOKEN), with_port, &with_sig, b"A=1"), Ok(()));
        assert_eq!(
            verify(&secret(TOKEN), without_port, &without_sig, b"A=1"),
            Ok(())
        );
    }

    #[test]
    fn verify_accepts_a_signature_made_with_80_for_plain_http() {
        let headers = headers_with("oboCFo78Z9kzWpFfpg6SNZsOv/o=");
        assert_eq!(
            verify(&secret(TOKEN), "http://example.com/hook", &headers, b"A=1"),
            Ok(())
        );
    }

    #[test]
    fn a_tampered_param_is_a_mismatch() {
        let headers = headers_with("BVnGwTegGR71UYoeWDU2/1+uU+M=");
        let body = b"Body=Citt%C3%A0+pi%C3%B9+bella+%E2%82%AC&From=whatsapp%3A%2B393331234568";
        assert_eq!(
            verify(&secret(TOKEN), URL, &headers, body),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn the_wrong_token_is_a_mismatch() {
        let headers = headers_with("BVnGwTegGR71UYoeWDU2/1+uU+M=");
        let body = b"Body=Citt%C3%A0+pi%C3%B9+bella+%E2%82%AC&From=whatsapp%3A%2B393331234567";
        assert_eq!(verify(&secret(TOKEN), URL, &headers, body), Ok(()));
        assert_eq!(
            verify(&secret("54321"), URL, &headers, body),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn a_missing_header_is_missing() {
        assert_eq!(
            verify(&secret(TOKEN), URL, &HeaderMap::new(), b"A=1"),
            Err(SignatureError::Missing)
        );
    }

    #[test]
    fn a_non_base64_header_is_malformed() {
        let headers = headers_with("not base64!");
        assert_eq!(
            verify(&secret(TOKEN), URL, &headers, b"A=1"),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn base64_of_the_wrong_length_is_malformed() {
        let headers = headers_with("AAAA");
        assert_eq!(
            verify(&secret(TOKEN), URL, &headers, b"A=1"),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn a_repeated_header_is_malformed() {
        let mut headers = headers_with("LW+2Xryox7F3JQaFeEBWmzx5u9g=");
        headers.append(
            SIGNATURE_HEADER,
            HeaderValue::from_static("LW+2Xryox7F3JQaFeEBWmzx5u9g="),
        );
        let url = "https://example.com/webhooks/twilio/messages?x=1";
        assert_eq!(
            verify(&secret(TOKEN), url, &headers, b"A=1"),
            Err(SignatureError::Malformed)
        );
    }

    /// A vector of `testdata/twilio_signature_vectors.json`, made by
    /// `scripts/twilio-signature-vectors.py` with twilio-python's RequestValidator.
    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Vector {
        name: String,
        auth_token: String,
        /// The URL the request was signed with.
        url: String,
        /// The URL we verify at (our configured public URL form).
        verify_url: String,
        /// The raw application/x-www-form-urlencoded body, as posted.
        body: String,
        signature: String,
        made_with: String,
    }

    fn vectors() -> Vec<Vector> {
        let vectors: Vec<Vector> =
            serde_json::from_str(include_str!("testdata/twilio_signature_vectors.json"))
                .expect("valid vectors file");
        assert!(!vectors.is_empty());
        vectors
    }

    #[test]
    fn the_vectors_include_twilios_published_example() {
        let published = vectors()
            .into_iter()
            .find(|v| v.name == "twilio_published_example")
            .expect("published vector present");
        assert_eq!(published.auth_token, "12345");
        assert_eq!(published.url, "https://mycompany.com/myapp.php?foo=1&bar=2");
        assert_eq!(published.signature, "RSOYDt4T1cUTdK1PDd93/VVr8B8=");
    }

    #[test]
    fn every_vector_was_made_by_twilio_pythons_request_validator() {
        for v in vectors() {
            assert!(
                v.made_with.starts_with("twilio-python ")
                    && v.made_with.ends_with(" RequestValidator.compute_signature"),
                "{}: made with {}",
                v.name,
                v.made_with
            );
        }
    }

    #[test]
    fn every_vector_signs_to_its_signature_at_the_url_it_was_signed_with() {
        for v in vectors() {
            let params = form_pairs(v.body.as_bytes());
            assert_eq!(
                sign(&v.auth_token, &v.url, &params),
                v.signature,
                "{}",
                v.name
            );
        }
    }

    #[test]
    fn every_vector_made_by_twilio_python_verifies() {
        for v in vectors() {
            let headers = headers_with(&v.signature);
            assert_eq!(
                verify(
                    &secret(&v.auth_token),
                    &v.verify_url,
                    &headers,
                    v.body.as_bytes()
                ),
                Ok(()),
                "{}",
                v.name
            );
        }
    }

    #[test]
    fn a_tampered_body_fails_every_vector() {
        for v in vectors() {
            // Appending a byte changes the last value (`...=1234` becomes `...=1234x`).
            let tampered = format!("{}x", v.body);
            let headers = headers_with(&v.signature);
            assert_eq!(
                verify(
                    &secret(&v.auth_token),
                    &v.verify_url,
                    &headers,
                    tampered.as_bytes()
                ),
                Err(SignatureError::Mismatch),
                "{}",
                v.name
            );
        }
    }

    #[test]
    fn the_default_port_is_toggled_only_for_its_own_scheme() {
        assert_eq!(
            toggle_default_port("https://h.example/p?q=%2F").as_deref(),
            Some("https://h.example:443/p?q=%2F")
        );
        assert_eq!(
            toggle_default_port("https://h.example:443").as_deref(),
            Some("https://h.example")
        );
        assert_eq!(
            toggle_default_port("http://u:p@h.example:80/p").as_deref(),
            Some("http://u:p@h.example/p")
        );
        assert_eq!(
            toggle_default_port("https://[::1]/p").as_deref(),
            Some("https://[::1]:443/p")
        );
        assert_eq!(toggle_default_port("https://h.example:80/p"), None);
        assert_eq!(toggle_default_port("https://h.example:8443/p"), None);
        assert_eq!(toggle_default_port("ftp://h.example/p"), None);
    }
}
