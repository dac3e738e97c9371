//! Opaque keyset page tokens: the last key of the page plus a fingerprint of
//! the filters, so a token cannot be replayed against another query.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use chrono::{DateTime, Utc};

use super::ServiceError;

pub const DEFAULT_PAGE_SIZE: u64 = 50;
pub const MAX_PAGE_SIZE: u64 = 200;

#[derive(Serialize, Deserialize)]
struct Token {
    /// Version, so the format can change without misreading old tokens.
    v: u8,
    /// Last key of the previous page (exclusive lower bound).
    after: String,
    /// Fingerprint of the query's filters.
    q: String,
}

/// The filters' fingerprint: any string that identifies them.
pub fn fingerprint(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update([0u8]);
    }
    let digest = hasher.finalize();
    URL_SAFE_NO_PAD.encode(&digest[..12])
}

pub fn encode(after: &str, query_fingerprint: &str) -> String {
    let token = Token {
        v: 1,
        after: after.to_owned(),
        q: query_fingerprint.to_owned(),
    };
    // Serialising a struct of strings cannot fail.
    let json = serde_json::to_vec(&token).unwrap_or_default();
    URL_SAFE_NO_PAD.encode(json)
}

/// The key to continue after, or INVALID_ARGUMENT naming `page_token`.
pub fn decode(token: &str, query_fingerprint: &str) -> Result<Option<String>, ServiceError> {
    if token.is_empty() {
        return Ok(None);
    }
    let invalid = |why: &str| ServiceError::invalid("page_token", why);
    let bytes = URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| invalid("is not a page token returned by this API"))?;
    let token: Token = serde_json::from_slice(&bytes)
        .map_err(|_| invalid("is not a page token returned by this API"))?;
    if token.v != 1 {
        return Err(invalid("is not a page token returned by this API"));
    }
    if token.q != query_fingerprint {
        return Err(invalid(
            "was issued for other filters; repeat the same filters or start again without a token",
        ));
    }
    Ok(Some(token.after))
}

/// 0 means the default; above the cap is an error, not a silent clamp.
pub fn page_size(requested: i32) -> Result<u64, ServiceError> {
    match u64::try_from(requested) {
        Ok(0) => Ok(DEFAULT_PAGE_SIZE),
        Ok(n) if n <= MAX_PAGE_SIZE => Ok(n),
        Ok(_) => Err(ServiceError::invalid(
            "page_size",
            format!("must be at most {MAX_PAGE_SIZE}"),
        )),
        Err(_) => Err(ServiceError::invalid("page_size", "must not be negative")),
    }
}

/// Cursor "<rfc3339>|<id>" inside the opaque page token.
pub fn decode_time_cursor(
    after: Option<String>,
) -> Result<Option<(DateTime<Utc>, String)>, ServiceError> {
    let Some(after) = after else {
        return Ok(None);
    };
    let invalid =
        || ServiceError::invalid("page_token", "is not a page token returned by this API");
    let (at, id) = after.split_once('|').ok_or_else(invalid)?;
    let at = DateTime::parse_from_rfc3339(at)
        .map_err(|_| invalid())?
        .with_timezone(&Utc);
    Ok(Some((at, id.to_owned())))
}

pub fn next_time_token<T>(
    rows: &mut Vec<T>,
    size: u64,
    fingerprint: &str,
    key: impl Fn(&T) -> (DateTime<Utc>, String),
) -> String {
    if rows.len() as u64 > size {
        rows.truncate(size as usize);
        rows.last()
            .map(|last| {
                let (at, id) = key(last);
                encode(&format!("{}|{id}", at.to_rfc3339()), fingerprint)
            })
            .unwrap_or_default()
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_round_trips_for_the_same_filters_only() {
        let q = fingerprint(&["ACTIVE", "Tempocasa"]);
        let token = encode("abc", &q);
        assert_eq!(decode(&token, &q).unwrap().as_deref(), Some("abc"));
        let other = fingerprint(&["ACTIVE", "Iconacasa"]);
        assert!(decode(&token, &other).is_err());
    }

    #[test]
    fn forged_tokens_are_invalid_arguments() {
        for forged in ["x", "!!!", &URL_SAFE_NO_PAD.encode(b"{\"v\":2}")] {
            assert!(matches!(
                decode(forged, "q"),
                Err(ServiceError::InvalidArgument(_))
            ));
        }
    }

    #[test]
    fn page_sizes_default_and_cap() {
        assert_eq!(page_size(0).unwrap(), DEFAULT_PAGE_SIZE);
        assert_eq!(page_size(200).unwrap(), 200);
        assert!(page_size(201).is_err());
        assert!(page_size(-1).is_err());
    }
}
