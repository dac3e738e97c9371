//! The one zone matcher, shared by leads and WhatsApp routing.
//!
//! A zone is chosen by postcode first (exact match, zones in order), then by
//! the first zone with a keyword found as whole words in any of the texts.
//! Texts and keywords are compared after [`normalize`], so "Città Studi"
//! matches "citta studi" and "Isola" matches "zona isola," but not "isolato".

use super::RoutingZone;

/// The zone for a call: an exact postcode match wins; otherwise the first
/// zone (in order) with a keyword in any text.
pub fn match_zone<'a>(
    zones: &'a [RoutingZone],
    postcode: Option<&str>,
    texts: &[&str],
) -> Option<&'a RoutingZone> {
    if let Some(code) = postcode.map(str::trim).filter(|code| !code.is_empty())
        && let Some(zone) = zones
            .iter()
            .find(|zone| zone.postcodes.iter().any(|p| p.as_str() == code))
    {
        return Some(zone);
    }
    // Tokenised once: every keyword of every zone is looked up in the same texts.
    let texts: Vec<Vec<String>> = texts.iter().map(|text| words(text)).collect();
    zones.iter().find(|zone| {
        zone.keywords.iter().any(|keyword| {
            let keyword = words(keyword);
            texts.iter().any(|text| contains_phrase(text, &keyword))
        })
    })
}

/// Lower-case with Italian (and other common Latin) accents folded, so that
/// callers, transcribers and admins who spell "Città" as "Citta" agree.
pub fn normalize(text: &str) -> String {
    text.chars()
        .flat_map(char::to_lowercase)
        .filter_map(|c| match c {
            'à' | 'á' | 'â' | 'ä' | 'ã' | 'å' => Some('a'),
            'è' | 'é' | 'ê' | 'ë' => Some('e'),
            'ì' | 'í' | 'î' | 'ï' => Some('i'),
            'ò' | 'ó' | 'ô' | 'ö' | 'õ' => Some('o'),
            'ù' | 'ú' | 'û' | 'ü' => Some('u'),
            'ç' => Some('c'),
            'ñ' => Some('n'),
            // Combining accents, for text that arrives decomposed (e + U+0301).
            '\u{300}'..='\u{36f}' => None,
            other => Some(other),
        })
        .collect()
}

/// The first standalone five-digit group in a text (a CAP spoken in a
/// transcript). Groups inside longer digit runs, glued to letters, after a
/// `+`, or followed by a currency ("90000 euro": a budget) are skipped.
pub fn find_postcode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        // ASCII digits are one byte each, so these slices fall on char boundaries.
        let before = text[..start].chars().next_back();
        let after = text[i..].chars().next();
        let standalone = i - start == 5
            && !before.is_some_and(|c| c.is_alphanumeric() || c == '+' || c == '€')
            && !after.is_some_and(char::is_alphanumeric)
            && !is_money(&text[i..]);
        if standalone {
            return Some(text[start..i].to_owned());
        }
    }
    None
}

/// Whether the text right after a number names a currency.
fn is_money(rest: &str) -> bool {
    let rest = rest.trim_start();
    if rest.starts_with('€') {
        return true;
    }
    let word: String = rest
        .chars()
        .take_while(|c| c.is_alphanumeric())
        .collect::<String>()
        .to_lowercase();
    matches!(word.as_str(), "euro" | "eur" | "mila")
}

/// The normalised words of a text: letters and digits, split on everything
/// else (spaces, punctuation, apostrophes), which gives word boundaries.
pub(crate) fn words(text: &str) -> Vec<String> {
    normalize(text)
        .split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Whether `phrase` occurs as consecutive whole words in `text`.
pub(crate) fn contains_phrase(text: &[String], phrase: &[String]) -> bool {
    // An empty keyword (only punctuation) would otherwise match everything.
    !phrase.is_empty() && text.windows(phrase.len()).any(|window| window == phrase)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Agent, PhoneNumber, Postcode};

    fn zone(name: &str, postcodes: &[&str], keywords: &[&str]) -> RoutingZone {
        RoutingZone {
            name: name.to_owned(),
            postcodes: postcodes
                .iter()
                .map(|p| Postcode::parse(p).unwrap())
                .collect(),
            keywords: keywords.iter().map(|k| (*k).to_owned()).collect(),
            agent: Agent {
                name: format!("Agente {name}"),
                whatsapp: PhoneNumber::parse("+393331234567").unwrap(),
            },
        }
    }

    fn zones() -> Vec<RoutingZone> {
        vec![
            zone("Centro", &["20121", "20122"], &["Duomo", "Brera"]),
            zone("Nord", &["20159"], &["Isola", "Città Studi"]),
            zone("Sud", &["20141"], &["Porta Romana", "Navigli"]),
        ]
    }

    fn name(zone: Option<&RoutingZone>) -> Option<&str> {
        zone.map(|z| z.name.as_str())
    }

    #[test]
    fn an_exact_postcode_wins_over_keywords() {
        let zones = zones();
        assert_eq!(
            name(match_zone(&zones, Some("20141"), &["vicino al Duomo"])),
            Some("Sud")
        );
    }

    #[test]
    fn an_unknown_postcode_falls_back_to_keywords() {
        let zones = zones();
        assert_eq!(
            name(match_zone(&zones, Some("00184"), &["zona Brera"])),
            Some("Centro")
        );
        assert_eq!(name(match_zone(&zones, Some("00184"), &["Roma"])), None);
    }

    #[test]
    fn keywords_match_case_and_accent_insensitively_on_word_boundaries() {
        let zones = zones();
        assert_eq!(
            name(match_zone(&zones, None, &["cerco in zona isola, grazie"])),
            Some("Nord")
        );
        assert_eq!(
            name(match_zone(&zones, None, &["casa a CITTA' STUDI"])),
            Some("Nord")
        );
        assert_eq!(
            name(match_zone(&zones, None, &["", "verso porta-romana"])),
            Some("Sud")
        );
    }

    #[test]
    fn isolato_does_not_match_isola() {
        let zones = zones();
        assert_eq!(
            name(match_zone(&zones, None, &["un isolato più in là"])),
            None
        );
        // Multi-word keywords need every word, in order.
        assert_eq!(name(match_zone(&zones, None, &["porta la romana"])), None);
    }

    #[test]
    fn the_first_zone_in_order_wins_among_keywords() {
        let zones = zones();
        assert_eq!(
            name(match_zone(&zones, None, &["Navigli o Brera"])),
            Some("Centro")
        );
    }

    #[test]
    fn normalize_folds_case_and_accents() {
        assert_eq!(
            normalize("Città ÈÉ Più Ciò Virtù"),
            "citta ee piu cio virtu"
        );
        assert_eq!(normalize("Citte\u{301}"), "citte");
    }

    #[test]
    fn find_postcode_takes_the_first_standalone_five_digit_group() {
        assert_eq!(
            find_postcode("il CAP è 20121, Milano").as_deref(),
            Some("20121")
        );
        assert_eq!(find_postcode("CAP:00184").as_deref(), Some("00184"));
        assert_eq!(find_postcode("nessun numero"), None);
    }

    #[test]
    fn find_postcode_ignores_six_or_more_digit_runs() {
        assert_eq!(find_postcode("budget 250000"), None);
        assert_eq!(find_postcode("chiamate il 3331234567"), None);
        assert_eq!(
            find_postcode("budget 250000, cap 20159").as_deref(),
            Some("20159")
        );
        assert_eq!(find_postcode("1234 e 123456"), None);
    }

    #[test]
    fn find_postcode_skips_amounts_and_codes() {
        assert_eq!(find_postcode("spendo 90000 euro"), None);
        assert_eq!(find_postcode("€90000"), None);
        assert_eq!(find_postcode("codice AB12345"), None);
        assert_eq!(find_postcode("+39 12345"), Some("12345".to_owned()));
    }
}
