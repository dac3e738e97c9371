//! The Italian WhatsApp summary of a call, for the agent.
//!
//! Two shapes of the same content:
//! - [`render`]: the free-form `Body` (inside the 24 h window), plain text
//!   with WhatsApp `*bold*`, at most [`MAX_BODY_CHARS`].
//! - [`template_variables`] + [`content_variables_json`]: the `{{1}}..{{6}}`
//!   of the approved Content template (outside the window), each single-line
//!   and non-empty, as Twilio rejects anything else with error 21656.
//!
//! Lengths are counted in UTF-16 code units: that is never fewer than the
//! characters, so a text within the limit in code units is within it however
//! Twilio counts (an emoji is one character but two code units).

use chrono::{DateTime, Datelike, Timelike, Utc};
use chrono_tz::Europe::Rome;
use serde_json::{Map, Value};

use super::lead::Intent;
use super::order::MAX_NAME_CHARS;
use super::phone::PhoneNumber;

/// Twilio's limit on a message `Body` (errors 21617 / 21658).
pub const MAX_BODY_CHARS: usize = 1600;

/// The summary in template variable `{{4}}`: Meta caps a template body at
/// 1024 characters, fixed text included.
const MAX_TEMPLATE_SUMMARY_CHARS: usize = 500;

/// Short fields (caller's name, zone, property type, budget) come from a
/// model's structured output and are not bounded upstream; capping them keeps
/// the fixed part of the message well under [`MAX_BODY_CHARS`], so only the
/// summary and the recommendation ever need trimming.
const MAX_FIELD_CHARS: usize = 100;

const WITHHELD: &str = "numero nascosto";
const EMPTY_VARIABLE: &str = "—";
const ELLIPSIS: char = '…';

/// What the summary says about one call.
#[derive(Debug, Clone, Copy, Default)]
pub struct SummaryInput<'a> {
    /// The order's display name.
    pub agency: &'a str,
    pub caller_name: Option<&'a str>,
    /// `None` when the caller withheld their number.
    pub caller_number: Option<&'a PhoneNumber>,
    pub intent: Option<Intent>,
    pub zone: Option<&'a str>,
    pub property_type: Option<&'a str>,
    pub budget: Option<&'a str>,
    pub summary: Option<&'a str>,
    pub recommendation: Option<&'a str>,
    pub started_at: Option<DateTime<Utc>>,
    pub duration_seconds: Option<f64>,
}

/// The free-form WhatsApp body, Italian, at most [`MAX_BODY_CHARS`]
/// characters: trims the summary (on a char boundary, with "…") first, then
/// the recommendation, never the caller's number or the header. Lines
/// without data are omitted; a call with no summary, intent or
/// recommendation gets the [`missed_call`] shape.
pub fn render(input: &SummaryInput) -> String {
    let summary = present(input.summary);
    let recommendation = present(input.recommendation);
    if summary.is_none() && input.intent.is_none() && recommendation.is_none() {
        return missed_call(input);
    }

    const SUMMARY_LABEL: &str = "*Riassunto:* ";
    const RECOMMENDATION_LABEL: &str = "*Raccomandazione:* ";

    let head = [
        Some(header(input)),
        Some(format!("*Cliente:* {}", caller(input))),
        request(input).map(|r| format!("*Richiesta:* {r}")),
    ];
    let tail = time_line(input);

    // Everything but the summary and recommendation text, newlines included.
    let fixed_lines = head.iter().flatten().chain(tail.iter());
    let mut fixed = 0;
    let mut lines: usize = 0;
    for line in fixed_lines {
        fixed += units(line);
        lines += 1;
    }
    if summary.is_some() {
        fixed += units(SUMMARY_LABEL);
        lines += 1;
    }
    if recommendation.is_some() {
        fixed += units(RECOMMENDATION_LABEL);
        lines += 1;
    }
    fixed += lines.saturating_sub(1);
    let mut room = MAX_BODY_CHARS.saturating_sub(fixed);

    // The summary gives way first, down to a bare "…" that still says there
    // was one; then the recommendation takes what is left.
    let summary_text = summary.map(|s| {
        let wanted = recommendation.map_or(0, units);
        let text = truncate(s, room.saturating_sub(wanted).max(1));
        room = room.saturating_sub(units(&text));
        text
    });
    let recommendation_text = recommendation.map(|r| truncate(r, room));

    let mut out: Vec<String> = head.into_iter().flatten().collect();
    out.extend(summary_text.map(|s| format!("{SUMMARY_LABEL}{s}")));
    out.extend(recommendation_text.map(|r| format!("{RECOMMENDATION_LABEL}{r}")));
    out.extend(tail);
    let body = out.join("\n");
    debug_assert!(units(&body) <= MAX_BODY_CHARS, "body over the limit");
    body
}

/// A missed call without analysis: "Chiamata senza messaggio da +39…" (or
/// "da numero nascosto" when withheld), plus agency and time. Zone, property
/// and budget, if the call yielded any, are kept on a request line.
pub fn missed_call(input: &SummaryInput) -> String {
    let mut lines = vec![
        header(input),
        format!("Chiamata senza messaggio da {}", caller(input)),
    ];
    lines.extend(request(input).map(|r| format!("*Richiesta:* {r}")));
    lines.extend(time_line(input));
    lines.join("\n")
}

/// Template variables for the approved Content template, in order
/// `{{1}}..{{6}}`: agency, caller (name + number or "numero nascosto"),
/// request (intent/zone/property/budget in one line or "non specificata"),
/// summary (single line, ≤ 500 chars), time "27/11/2026 10:41" Europe/Rome,
/// duration "3 min 52 s". Each is single-line (newlines/tabs → space, runs of
/// spaces collapsed) and never empty ("—" stands in).
pub fn template_variables(input: &SummaryInput) -> Vec<String> {
    let summary = present(input.summary)
        .map(|s| truncate(&single_line(s), MAX_TEMPLATE_SUMMARY_CHARS))
        .unwrap_or_default();
    [
        capped(input.agency, MAX_NAME_CHARS),
        caller(input),
        request(input).unwrap_or_else(|| "non specificata".to_owned()),
        summary,
        input.started_at.map(rome_time).unwrap_or_default(),
        input
            .duration_seconds
            .and_then(duration)
            .unwrap_or_default(),
    ]
    .into_iter()
    .map(|v| {
        let v = single_line(&v);
        if v.is_empty() {
            EMPTY_VARIABLE.to_owned()
        } else {
            v
        }
    })
    .collect()
}

/// The `ContentVariables` JSON string: `{"1": "...", "2": "..."}`.
pub fn content_variables_json(vars: &[String]) -> String {
    let map: Map<String, Value> = vars
        .iter()
        .enumerate()
        .map(|(i, v)| ((i + 1).to_string(), Value::String(v.clone())))
        .collect();
    Value::Object(map).to_string()
}

/// The Italian word for an intent, as the agent reads it.
pub fn intent_label(intent: Intent) -> &'static str {
    match intent {
        Intent::Purchase => "acquisto",
        Intent::Sale => "vendita",
        Intent::Rent => "affitto",
        Intent::Valuation => "valutazione",
        Intent::Information => "informazioni",
    }
}

fn header(input: &SummaryInput) -> String {
    format!(
        "📞 *Nuova chiamata — {}*",
        capped(input.agency, MAX_NAME_CHARS)
    )
}

/// "Mario Rossi (+393331112222)", "+393331112222", "Mario Rossi (numero
/// nascosto)" or "numero nascosto". The number stays E.164 so WhatsApp makes
/// it tappable.
fn caller(input: &SummaryInput) -> String {
    let number = input
        .caller_number
        .map_or(WITHHELD, |n| n.as_str())
        .to_owned();
    match present(input.caller_name) {
        Some(name) => format!("{} ({number})", capped(name, MAX_FIELD_CHARS)),
        None => number,
    }
}

/// "vendita · zona Isola · bilocale · budget 250000", or `None` if nothing
/// is known.
fn request(input: &SummaryInput) -> Option<String> {
    let field = |v: Option<&str>| present(v).map(|v| capped(v, MAX_FIELD_CHARS));
    let parts: Vec<String> = [
        input.intent.map(|i| intent_label(i).to_owned()),
        field(input.zone).map(|z| format!("zona {z}")),
        field(input.property_type),
        field(input.budget).map(|b| format!("budget {b}")),
    ]
    .into_iter()
    .flatten()
    .collect();
    (!parts.is_empty()).then(|| parts.join(" · "))
}

fn time_line(input: &SummaryInput) -> Option<String> {
    let parts: Vec<String> = [
        input.started_at.map(|t| format!("*Ora:* {}", rome_time(t))),
        input
            .duration_seconds
            .and_then(duration)
            .map(|d| format!("*Durata:* {d}")),
    ]
    .into_iter()
    .flatten()
    .collect();
    (!parts.is_empty()).then(|| parts.join(" · "))
}

/// Agents are in Italy: the wall-clock time there, DST included.
fn rome_time(at: DateTime<Utc>) -> String {
    // Written by hand: `format` parses its pattern on every call.
    let at = at.with_timezone(&Rome);
    format!(
        "{:02}/{:02}/{} {:02}:{:02}",
        at.day(),
        at.month(),
        at.year(),
        at.hour(),
        at.minute()
    )
}

/// "3 min 52 s", "45 s", "1 h 2 min 5 s"; `None` for a nonsensical value.
fn duration(seconds: f64) -> Option<String> {
    if !seconds.is_finite() || seconds < 0.0 {
        return None;
    }
    // Saturating float-to-int cast: an absurd duration cannot panic.
    let total = seconds.round() as u64;
    let (h, m, s) = (total / 3600, total % 3600 / 60, total % 60);
    Some(match (h, m) {
        (0, 0) => format!("{s} s"),
        (0, _) => format!("{m} min {s} s"),
        _ => format!("{h} h {m} min {s} s"),
    })
}

/// A trimmed, non-empty value.
fn present(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|v| !v.is_empty())
}

/// A short field on one line, cut to `max` units.
fn capped(value: &str, max: usize) -> String {
    truncate(&single_line(value), max)
}

/// Whitespace and control characters become single spaces, trimmed: Twilio
/// rejects template variables with newlines, tabs or 4+ spaces (21656), and
/// a stray newline in a name would break the message's layout.
fn single_line(text: &str) -> String {
    text.split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Length as Twilio may count it (see the module documentation).
fn units(text: &str) -> usize {
    text.encode_utf16().count()
}

/// `text` trimmed, or cut on a char boundary so that it and a trailing "…"
/// fit in `max` units; empty when `max` is 0.
fn truncate(text: &str, max: usize) -> String {
    let text = text.trim();
    if units(text) <= max {
        return text.to_owned();
    }
    let Some(room) = max.checked_sub(ELLIPSIS.len_utf16()) else {
        return String::new();
    };
    let mut used = 0;
    let mut end = 0;
    for (i, c) in text.char_indices() {
        if used + c.len_utf16() > room {
            break;
        }
        used += c.len_utf16();
        end = i + c.len_utf8();
    }
    let mut out = text[..end].trim_end().to_owned();
    out.push(ELLIPSIS);
    out
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn phone() -> PhoneNumber {
        PhoneNumber::parse("+393331112222").unwrap()
    }

    fn full(number: &PhoneNumber) -> SummaryInput<'_> {
        SummaryInput {
            agency: "Immobiliare Rossi",
            caller_name: Some("Mario Rossi"),
            caller_number: Some(number),
            intent: Some(Intent::Sale),
            zone: Some("Isola"),
            property_type: Some("bilocale"),
            budget: Some("250000"),
            summary: Some("Vuole vendere il bilocale in via Borsieri, libero da gennaio."),
            recommendation: Some("Richiamare in mattinata per fissare la valutazione."),
            started_at: Some(Utc.with_ymd_and_hms(2026, 11, 27, 9, 41, 0).unwrap()),
            duration_seconds: Some(232.4),
        }
    }

    #[test]
    fn a_full_render_contains_every_field_and_fits_the_limit() {
        let number = phone();
        let body = render(&full(&number));
        for expected in [
            "📞 *Nuova chiamata — Immobiliare Rossi*",
            "Mario Rossi (+393331112222)",
            "vendita · zona Isola · bilocale · budget 250000",
            "Vuole vendere il bilocale in via Borsieri, libero da gennaio.",
            "Richiamare in mattinata per fissare la valutazione.",
            "27/11/2026 10:41",
            "3 min 52 s",
        ] {
            assert!(body.contains(expected), "{expected} missing from:\n{body}");
        }
        assert!(body.chars().count() <= MAX_BODY_CHARS);
        assert!(!body.contains("Chiamata senza messaggio"));
    }

    #[test]
    fn lines_without_data_are_omitted() {
        let input = SummaryInput {
            agency: "Agenzia",
            summary: Some("Chiede orari."),
            ..SummaryInput::default()
        };
        let body = render(&input);
        assert_eq!(
            body,
            "📞 *Nuova chiamata — Agenzia*\n*Cliente:* numero nascosto\n*Riassunto:* Chiede orari."
        );
    }

    #[test]
    fn a_long_summary_is_trimmed_to_fit_and_the_callers_number_is_intact() {
        let number = phone();
        let long = "Il cliente parla a lungo. ".repeat(200);
        assert!(long.chars().count() >= 5000);
        let input = SummaryInput {
            summary: Some(&long),
            ..full(&number)
        };
        let body = render(&input);
        assert!(units(&body) <= MAX_BODY_CHARS, "{}", units(&body));
        // Trimmed to the limit, not far below it.
        assert!(units(&body) >= MAX_BODY_CHARS - 5);
        assert!(body.contains("(+393331112222)"));
        assert!(body.starts_with("📞 *Nuova chiamata — Immobiliare Rossi*\n"));
        let summary_line = body
            .lines()
            .find(|l| l.starts_with("*Riassunto:*"))
            .unwrap();
        assert!(summary_line.ends_with('…'));
        // The recommendation was not touched: the summary gave way first.
        assert!(
            body.contains("*Raccomandazione:* Richiamare in mattinata per fissare la valutazione.")
        );
        assert!(body.ends_with("3 min 52 s"));
    }

    #[test]
    fn a_long_recommendation_is_trimmed_after_the_summary() {
        let number = phone();
        let long = "Richiamare. ".repeat(300);
        let input = SummaryInput {
            recommendation: Some(&long),
            ..full(&number)
        };
        let body = render(&input);
        assert!(units(&body) <= MAX_BODY_CHARS);
        assert!(body.contains("*Riassunto:* …"));
        let rec_line = body
            .lines()
            .find(|l| l.starts_with("*Raccomandazione:*"))
            .unwrap();
        assert!(rec_line.ends_with('…'));
        assert!(body.contains("+393331112222"));
    }

    #[test]
    fn every_field_at_its_worst_still_fits_and_keeps_the_number() {
        let number = phone();
        let huge = "🏠x".repeat(2000);
        let input = SummaryInput {
            agency: &huge,
            caller_name: Some(&huge),
            zone: Some(&huge),
            property_type: Some(&huge),
            budget: Some(&huge),
            summary: Some(&huge),
            recommendation: Some(&huge),
            ..full(&number)
        };
        let body = render(&input);
        assert!(units(&body) <= MAX_BODY_CHARS, "{}", units(&body));
        assert!(body.contains("(+393331112222)"));
        assert!(body.contains("*Riassunto:* "));
        assert!(body.contains("*Raccomandazione:* 🏠x"));
        for v in template_variables(&input) {
            assert!(units(&v) <= MAX_BODY_CHARS);
        }
    }

    #[test]
    fn multibyte_characters_are_never_split() {
        let number = phone();
        for unit in ["è", "€", "🏠", "aè€🏠"] {
            let long = unit.repeat(3000);
            let input = SummaryInput {
                summary: Some(&long),
                recommendation: Some(&long),
                ..full(&number)
            };
            // Slicing inside a character would have panicked; a valid String
            // also proves nothing was split.
            let body = render(&input);
            assert!(units(&body) <= MAX_BODY_CHARS, "{unit}");
            assert!(body.chars().count() <= MAX_BODY_CHARS, "{unit}");
            for line in body
                .lines()
                .filter(|l| l.starts_with("*Riassunto:*") || l.starts_with("*Raccomandazione:*"))
            {
                let text = line.split_once(":* ").unwrap().1;
                let text = text.strip_suffix('…').unwrap();
                assert!(text.chars().all(|c| unit.contains(c)), "{unit}");
            }
            let vars = template_variables(&input);
            assert!(units(&vars[3]) <= MAX_TEMPLATE_SUMMARY_CHARS);
        }
        assert_eq!(truncate("aé🏠b", 4), "aé…");
        assert_eq!(truncate("aé🏠b", 5), "aé🏠b");
        assert_eq!(truncate("aé🏠b", 0), "");
    }

    #[test]
    fn a_missed_call_names_the_number_or_says_it_was_withheld() {
        let number = phone();
        let at = Some(Utc.with_ymd_and_hms(2026, 11, 27, 9, 41, 0).unwrap());
        let with_number = SummaryInput {
            agency: "Immobiliare Rossi",
            caller_number: Some(&number),
            started_at: at,
            duration_seconds: Some(12.0),
            ..SummaryInput::default()
        };
        let text = render(&with_number);
        assert_eq!(text, missed_call(&with_number));
        assert_eq!(
            text,
            "📞 *Nuova chiamata — Immobiliare Rossi*\n\
             Chiamata senza messaggio da +393331112222\n\
             *Ora:* 27/11/2026 10:41 · *Durata:* 12 s"
        );

        let withheld = SummaryInput {
            caller_number: None,
            ..with_number
        };
        let text = render(&withheld);
        assert!(text.contains("Chiamata senza messaggio da numero nascosto"));
        assert!(text.contains("Immobiliare Rossi"));
        assert!(text.contains("27/11/2026 10:41"));
    }

    #[test]
    fn times_are_in_rome_summer_and_winter() {
        // CEST, UTC+2.
        let summer = Utc.with_ymd_and_hms(2026, 7, 15, 8, 41, 0).unwrap();
        assert_eq!(rome_time(summer), "15/07/2026 10:41");
        // CET, UTC+1.
        let winter = Utc.with_ymd_and_hms(2026, 1, 15, 9, 41, 0).unwrap();
        assert_eq!(rome_time(winter), "15/01/2026 10:41");
        // Across midnight, the Rome date wins.
        let late = Utc.with_ymd_and_hms(2026, 12, 31, 23, 30, 0).unwrap();
        assert_eq!(rome_time(late), "01/01/2027 00:30");
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(232.4).as_deref(), Some("3 min 52 s"));
        assert_eq!(duration(45.0).as_deref(), Some("45 s"));
        assert_eq!(duration(0.2).as_deref(), Some("0 s"));
        assert_eq!(duration(3725.0).as_deref(), Some("1 h 2 min 5 s"));
        assert_eq!(duration(-1.0), None);
        assert_eq!(duration(f64::NAN), None);
    }

    #[test]
    fn template_variables_are_six_single_line_and_never_empty() {
        let number = phone();
        let multiline = "Prima riga\n\nseconda\triga    con     spazi\r\nfine";
        let input = SummaryInput {
            summary: Some(multiline),
            caller_name: Some("Mario\nRossi"),
            ..full(&number)
        };
        let vars = template_variables(&input);
        assert_eq!(
            vars,
            [
                "Immobiliare Rossi",
                "Mario Rossi (+393331112222)",
                "vendita · zona Isola · bilocale · budget 250000",
                "Prima riga seconda riga con spazi fine",
                "27/11/2026 10:41",
                "3 min 52 s",
            ]
        );

        let empty = SummaryInput {
            agency: "  ",
            ..SummaryInput::default()
        };
        let vars = template_variables(&empty);
        assert_eq!(
            vars,
            ["—", "numero nascosto", "non specificata", "—", "—", "—"]
        );

        let long = "parola ".repeat(1000);
        let input = SummaryInput {
            summary: Some(&long),
            ..full(&number)
        };
        for vars in [template_variables(&input), template_variables(&empty)] {
            assert_eq!(vars.len(), 6);
            for v in &vars {
                assert!(!v.trim().is_empty());
                assert!(!v.contains(['\n', '\r', '\t']), "{v:?}");
                assert!(!v.contains("  "), "{v:?}");
                assert!(v.chars().count() <= MAX_BODY_CHARS);
            }
        }
        let summary = &template_variables(&input)[3];
        assert!(summary.chars().count() <= MAX_TEMPLATE_SUMMARY_CHARS);
        assert!(summary.ends_with('…'));
    }

    #[test]
    fn content_variables_json_is_valid_json_keyed_one_to_six() {
        let number = phone();
        let input = SummaryInput {
            summary: Some("Dice \"subito\" e usa \\ barre"),
            ..full(&number)
        };
        let vars = template_variables(&input);
        let json = content_variables_json(&vars);
        let parsed: Value = serde_json::from_str(&json).unwrap();
        let object = parsed.as_object().unwrap();
        assert_eq!(object.len(), 6);
        for (i, v) in vars.iter().enumerate() {
            assert_eq!(object[&(i + 1).to_string()], Value::String(v.clone()));
        }
        assert_eq!(
            content_variables_json(&["a".to_owned(), "b".to_owned()]),
            r#"{"1":"a","2":"b"}"#
        );
    }

    #[test]
    fn every_intent_has_an_italian_label() {
        let labels: Vec<_> = Intent::ALL.into_iter().map(intent_label).collect();
        assert_eq!(
            labels,
            [
                "acquisto",
                "vendita",
                "affitto",
                "valutazione",
                "informazioni"
            ]
        );
    }
}
