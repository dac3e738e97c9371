//! E.164 phone numbers, parsed once with libphonenumber's metadata.

use std::{fmt, str::FromStr};

use phonenumber::{Mode, country};

/// Inputs parsed lately, and what they gave; emptied when full.
static PARSED: std::sync::OnceLock<
    std::sync::Mutex<std::collections::HashMap<String, Result<PhoneNumber, PhoneError>>>,
> = std::sync::OnceLock::new();
const PARSED_MAX: usize = 4096;
/// Longer inputs are parsed without the cache (a phone number is shorter;
/// junk must not fill memory).
const PARSED_KEY_MAX: usize = 32;

/// A valid phone number, held in E.164 form (`+390212345678`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PhoneNumber(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    #[error("is empty")]
    Empty,
    #[error("must not carry a \"whatsapp:\" prefix; give the bare number in E.164 form")]
    WhatsappPrefix,
    #[error("is not a phone number; expected E.164 form such as +390212345678")]
    Unparsable,
    #[error("is not a valid number for its country; expected E.164 form such as +390212345678")]
    Invalid,
}

impl PhoneNumber {
    /// Parses E.164 (`+39 02 1234 5678`) or Italian national form (`02 1234 5678`).
    /// Italian fixed lines keep their leading 0 after the country code.
    pub fn parse(input: &str) -> Result<Self, PhoneError> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(PhoneError::Empty);
        }
        // The same few numbers come again and again (an agency's number on
        // each of its calls, a caller on each message of a call), and
        // libphonenumber's regexes cost microseconds each time.
        if trimmed.len() > PARSED_KEY_MAX {
            return Self::parse_uncached(trimmed);
        }
        let cache = PARSED.get_or_init(Default::default);
        if let Some(known) = cache.lock().ok().and_then(|c| c.get(trimmed).cloned()) {
            return known;
        }
        let parsed = Self::parse_uncached(trimmed);
        if let Ok(mut cache) = cache.lock() {
            if cache.len() >= PARSED_MAX {
                cache.clear();
            }
            cache.insert(trimmed.to_owned(), parsed.clone());
        }
        parsed
    }

    fn parse_uncached(trimmed: &str) -> Result<Self, PhoneError> {
        // libphonenumber strips this prefix silently; we want callers to know.
        if trimmed.to_ascii_lowercase().starts_with("whatsapp:") {
            return Err(PhoneError::WhatsappPrefix);
        }
        if !trimmed
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '+' | ' ' | '-' | '.' | '(' | ')'))
        {
            return Err(PhoneError::Unparsable);
        }
        let parsed = phonenumber::parse(Some(country::Id::IT), trimmed)
            .map_err(|_| PhoneError::Unparsable)?;
        if !phonenumber::is_valid(&parsed) {
            return Err(PhoneError::Invalid);
        }
        Ok(Self(parsed.format().mode(Mode::E164).to_string()))
    }

    /// A number the store wrote after [`PhoneNumber::parse`]: only its E.164
    /// shape is checked. Full parsing costs microseconds per number, and a
    /// page of 50 orders holds ~200 numbers.
    pub fn from_stored(stored: &str) -> Result<Self, PhoneError> {
        let digits = stored.strip_prefix('+').ok_or(PhoneError::Unparsable)?;
        let shaped = (8..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0');
        if shaped {
            Ok(Self(stored.to_owned()))
        } else {
            Err(PhoneError::Unparsable)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The number for logs: country code and a few digits, the middle hidden
    /// (`+39333***4567`). Callers' numbers are personal data.
    pub fn masked(&self) -> String {
        mask(&self.0)
    }
}

/// Loads libphonenumber's metadata now (it is decoded on first use, which
/// takes a noticeable time) so that the first request does not pay for it.
pub fn warm_up() {
    let _ = PhoneNumber::parse("+390212345678");
}

/// Masks any phone-like string for logs, valid or not.
pub fn mask(number: &str) -> String {
    let chars: Vec<char> = number.chars().collect();
    if chars.len() <= 8 {
        return "***".to_owned();
    }
    let head: String = chars[..6].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}***{tail}")
}

impl FromStr for PhoneNumber {
    type Err = PhoneError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

// Debug is masked too, so a stray `{:?}` of a struct never leaks a number.
impl fmt::Debug for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PhoneNumber({})", self.masked())
    }
}

impl AsRef<str> for PhoneNumber {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsing_again_gives_the_same_answer_from_the_cache_valid_or_not() {
        for _ in 0..2 {
            assert_eq!(
                PhoneNumber::parse(" +39 333 765 4321 ").unwrap().as_str(),
                "+393337654321"
            );
            assert_eq!(
                PhoneNumber::parse("333 765 4321").unwrap().as_str(),
                "+393337654321"
            );
            assert_eq!(PhoneNumber::parse("+39 02 12"), Err(PhoneError::Invalid));
            assert_eq!(
                PhoneNumber::parse("whatsapp:+393337654321"),
                Err(PhoneError::WhatsappPrefix)
            );
        }
        // Too long for the cache: parsed every time, refused alike.
        let long = format!("+39 {}", "3".repeat(40));
        assert!(PhoneNumber::parse(&long).is_err());
    }

    #[test]
    fn italian_fixed_lines_keep_their_leading_zero() {
        assert_eq!(
            PhoneNumber::parse("+39 02 1234 5678").unwrap().as_str(),
            "+390212345678"
        );
        assert_eq!(
            PhoneNumber::parse("02 1234 5678").unwrap().as_str(),
            "+390212345678"
        );
    }

    #[test]
    fn mobiles_parse_in_e164_and_national_form() {
        assert_eq!(
            PhoneNumber::parse("+39 339 419 7445").unwrap().as_str(),
            "+393394197445"
        );
        assert_eq!(
            PhoneNumber::parse("3394197445").unwrap().as_str(),
            "+393394197445"
        );
    }

    #[test]
    fn garbage_prefixes_and_short_numbers_are_rejected() {
        assert_eq!(PhoneNumber::parse(""), Err(PhoneError::Empty));
        assert_eq!(
            PhoneNumber::parse("whatsapp:+393394197445"),
            Err(PhoneError::WhatsappPrefix)
        );
        assert_eq!(
            PhoneNumber::parse("not a number"),
            Err(PhoneError::Unparsable)
        );
        assert!(PhoneNumber::parse("+39 12").is_err());
    }

    #[test]
    fn stored_numbers_are_checked_for_shape_only() {
        assert_eq!(
            PhoneNumber::from_stored("+390212345678").unwrap().as_str(),
            "+390212345678"
        );
        for bad in [
            "390212345678",
            "+39",
            "+39 02 1234",
            "+0212345678",
            "+3902123456789012",
        ] {
            assert!(PhoneNumber::from_stored(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn masked_numbers_hide_the_middle() {
        let n = PhoneNumber::parse("+393331234567").unwrap();
        assert_eq!(n.masked(), "+39333***4567");
        assert_eq!(format!("{n:?}"), "PhoneNumber(+39333***4567)");
    }
}
