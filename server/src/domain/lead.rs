//! Leads extracted from a call report.
//!
//! [`extract`] turns a Vapi end-of-call report (`analysis.structuredData`,
//! `analysis.summary`, `artifact.transcript`, the caller's number) into a
//! [`LeadDraft`]. It is deterministic: no model is called here.
//!
//! # `analysis.structuredData` schema
//!
//! An object. Keys are matched case-insensitively and ignoring `_`, `-` and
//! spaces, so snake_case and camelCase spellings are the same key. Italian and
//! English keys are accepted; when several aliases are present, the first in
//! this list wins.
//!
//! | field            | keys                                                          |
//! |------------------|---------------------------------------------------------------|
//! | `name`           | `name`, `nome`, `nome_cliente`, `customerName`                |
//! | `phone`          | `phone`, `telefono`, `numero`, `phoneNumber`, `cellulare`     |
//! | `intent`         | `intent`, `richiesta`, `intento`, `tipo_richiesta`            |
//! | `property_type`  | `property_type`, `tipo_immobile`, `propertyType`              |
//! | `zone`           | `zone`, `zona`, `quartiere`                                   |
//! | `postcode`       | `postcode`, `cap`, `postal_code`, `zip`                       |
//! | `address`        | `address`, `indirizzo`                                        |
//! | `budget`         | `budget`                                                      |
//! | `urgency`        | `urgency`, `urgenza`                                          |
//! | `recommendation` | `recommendation`, `raccomandazione`, `consiglio`              |
//!
//! Values may be strings or numbers (budget `250000` → `"250000"`; a numeric
//! `cap` is zero-padded, `184` → `"00184"`). Empty strings, `null`, booleans,
//! arrays and objects count as absent.
//!
//! Intent values (case- and accent-insensitive, any word of the value):
//! acquisto/comprare/compra/buy/purchase → Purchase; vendita/vendere/sell/sale
//! → Sale; affitto/affittare/locazione/rent → Rent; valutazione/stima/valuation
//! → Valuation; informazioni/info/information → Information (plus a few
//! inflections, see [`Intent::from_label`]).
//!
//! # Deterministic fill
//!
//! Structured values win over inferred ones; a structured value that does not
//! parse (a phone, an intent, a postcode) counts as absent.
//!
//! - `phone`: the structured phone if it parses, else the first Italian number
//!   spoken by the user in the transcript, else the caller's number.
//! - `intent`: the structured intent, else keywords in the summary, else in the
//!   user's lines, in the priority Valuation > Sale > Rent > Purchase >
//!   Information.
//! - `postcode`: the structured postcode, else a CAP in the structured address,
//!   else the first CAP in the user's lines ([`zone::find_postcode`]).
//! - `zone`: the name of the order's zone the structured zone names, else
//!   [`zone::match_zone`] over the postcode and the structured zone, address,
//!   summary and user lines. `None` when no zone of the order matches.
//! - `name`, `property_type`, `address`, `budget`, `urgency`,
//!   `recommendation`: structured only.
//!
//! Only the user's transcript lines (`User: …`) are read: the assistant's own
//! lines ("vuole comprare, vendere o affittare?") would match every intent.

use serde_json::{Map, Value};

use super::{PhoneNumber, RoutingZone, zone};

/// What the caller wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Intent {
    Purchase,
    Sale,
    Rent,
    Valuation,
    Information,
}

impl Intent {
    pub const ALL: [Intent; 5] = [
        Intent::Purchase,
        Intent::Sale,
        Intent::Rent,
        Intent::Valuation,
        Intent::Information,
    ];

    /// The order keywords are tried in: the more specific request wins when a
    /// caller mentions several ("valutare prima di vendere" is a valuation).
    const PRIORITY: [Intent; 5] = [
        Intent::Valuation,
        Intent::Sale,
        Intent::Rent,
        Intent::Purchase,
        Intent::Information,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Intent::Purchase => "PURCHASE",
            Intent::Sale => "SALE",
            Intent::Rent => "RENT",
            Intent::Valuation => "VALUATION",
            Intent::Information => "INFORMATION",
        }
    }

    pub fn from_db(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|intent| intent.as_str() == s)
    }

    /// An intent named in free text, Italian or English ("Acquisto",
    /// "vendita", "RENT"): the first in priority order with a word in it.
    pub fn from_label(label: &str) -> Option<Self> {
        let words = zone::words(label);
        Self::PRIORITY
            .into_iter()
            .find(|intent| intent.phrases().iter().any(|p| has_phrase(&words, p)))
    }

    /// Normalised words and phrases (space-separated) that name the intent.
    fn phrases(self) -> &'static [&'static str] {
        match self {
            Intent::Valuation => &[
                "valutazione",
                "valutazioni",
                "valutare",
                "valutarla",
                "valutarlo",
                "stima",
                "stimare",
                "quanto vale",
                "valuation",
                "appraisal",
            ],
            Intent::Sale => &[
                "vendita", "vendere", "vendo", "venderla", "venderlo", "sell", "selling", "sale",
            ],
            Intent::Rent => &[
                "affitto",
                "affittare",
                "affittarla",
                "affittarlo",
                "affitti",
                "locazione",
                "rent",
                "renting",
                "rental",
            ],
            Intent::Purchase => &[
                "acquisto",
                "acquistare",
                "comprare",
                "compra",
                "compro",
                "comprarla",
                "comprarlo",
                "buy",
                "buying",
                "purchase",
                "cerco casa",
                "cerchiamo casa",
            ],
            Intent::Information => &["informazioni", "informazione", "info", "information"],
        }
    }
}

impl std::fmt::Display for Intent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A lead as read from one call; every field may be missing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeadDraft {
    pub name: Option<String>,
    pub phone: Option<PhoneNumber>,
    pub intent: Option<Intent>,
    pub property_type: Option<String>,
    /// The name of the order's zone the call matched.
    pub zone: Option<String>,
    pub postcode: Option<String>,
    pub address: Option<String>,
    pub budget: Option<String>,
    pub urgency: Option<String>,
    pub recommendation: Option<String>,
}

/// What [`extract`] reads from a call report and its order.
#[derive(Debug, Clone, Copy)]
pub struct LeadInput<'a> {
    /// `analysis.structuredData`.
    pub structured: Option<&'a Value>,
    /// `analysis.summary`.
    pub summary: Option<&'a str>,
    /// `artifact.transcript`, lines `AI: …` / `User: …`.
    pub transcript: Option<&'a str>,
    /// The caller's number (`customer.number`), if any.
    pub caller: Option<&'a PhoneNumber>,
    /// The order's routing zones.
    pub zones: &'a [RoutingZone],
}

/// The lead in a call report; see the module documentation for the rules.
pub fn extract(input: &LeadInput) -> LeadDraft {
    let fields = Fields::of(input.structured.and_then(Value::as_object));
    let user = input.transcript.map(user_lines).unwrap_or_default();

    let phone = phone_in(&fields, &user, input.caller);

    let intent = fields
        .text(&["intent", "richiesta", "intento", "tiporichiesta"])
        .and_then(|label| Intent::from_label(&label))
        .or_else(|| input.summary.and_then(intent_in_speech))
        .or_else(|| user.iter().find_map(|line| intent_in_speech(line)));

    let address = fields.text(&["address", "indirizzo"]);
    let postcode = fields
        .postcode(&["postcode", "cap", "postalcode", "zip"])
        .or_else(|| address.as_deref().and_then(zone::find_postcode))
        .or_else(|| user.iter().find_map(|line| zone::find_postcode(line)));

    let zone_text = fields.text(&["zone", "zona", "quartiere"]);
    let named_zone = zone_text.as_deref().and_then(|text| {
        let words = zone::words(text);
        input
            .zones
            .iter()
            .find(|z| !words.is_empty() && zone::words(&z.name) == words)
    });
    let zone = named_zone
        .or_else(|| {
            let mut texts: Vec<&str> = Vec::with_capacity(user.len() + 3);
            texts.extend(zone_text.as_deref());
            texts.extend(address.as_deref());
            texts.extend(input.summary);
            texts.extend(user.iter().copied());
            zone::match_zone(input.zones, postcode.as_deref(), &texts)
        })
        .map(|z| z.name.clone());

    LeadDraft {
        name: fields.text(&["name", "nome", "nomecliente", "customername"]),
        phone,
        intent,
        property_type: fields.text(&["propertytype", "tipoimmobile"]),
        zone,
        postcode,
        address,
        budget: fields.text(&["budget"]),
        urgency: fields.text(&["urgency", "urgenza"]),
        recommendation: fields.text(&["recommendation", "raccomandazione", "consiglio"]),
    }
}

/// The lead's phone alone, as [`extract`] finds it (the order's zones play
/// no part): known before the order is read.
pub fn caller_phone(input: &LeadInput) -> Option<PhoneNumber> {
    let fields = Fields::of(input.structured.and_then(Value::as_object));
    let user = input.transcript.map(user_lines).unwrap_or_default();
    phone_in(&fields, &user, input.caller)
}

fn phone_in(
    fields: &Fields<'_>,
    user: &[&str],
    caller: Option<&PhoneNumber>,
) -> Option<PhoneNumber> {
    fields
        .text(&["phone", "telefono", "numero", "phonenumber", "cellulare"])
        .and_then(|p| PhoneNumber::parse(&p).ok())
        .or_else(|| user.iter().find_map(|line| find_phone(line)))
        .or_else(|| caller.cloned())
}

/// The structured-data object, looked up by key aliases: each key in key
/// form once (not once per alias tried), in the object's order.
struct Fields<'a>(Vec<(String, &'a Value)>);

impl<'a> Fields<'a> {
    fn of(map: Option<&'a Map<String, Value>>) -> Self {
        Fields(
            map.into_iter()
                .flatten()
                .map(|(key, value)| (key_form(key), value))
                .collect(),
        )
    }

    /// The first alias (in key form, see [`key_form`]) with a usable value.
    fn value(&self, aliases: &[&str]) -> Option<&'a Value> {
        aliases.iter().find_map(|alias| {
            self.0
                .iter()
                .find(|(key, value)| key == alias && value_text(value).is_some())
                .map(|(_, value)| *value)
        })
    }

    fn text(&self, aliases: &[&str]) -> Option<String> {
        self.value(aliases).and_then(value_text)
    }

    /// A CAP: a number loses its leading zeros in JSON (Rome's 00184 → 184).
    fn postcode(&self, aliases: &[&str]) -> Option<String> {
        match self.value(aliases)? {
            Value::Number(n) => n
                .as_u64()
                .filter(|n| *n <= 99_999)
                .map(|n| format!("{n:05}")),
            Value::String(s) => zone::find_postcode(s),
            Value::Null | Value::Bool(_) | Value::Array(_) | Value::Object(_) => None,
        }
    }
}

/// A key without case, accents or separators: `customerName`, `customer_name`
/// and `Customer Name` are all `customername`.
fn key_form(key: &str) -> String {
    zone::normalize(key)
        .chars()
        .filter(|c| c.is_alphanumeric())
        .collect()
}

/// A value as text; strings and numbers only, empty strings are absent.
fn value_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.trim().to_owned()).filter(|s| !s.is_empty()),
        Value::Number(n) => Some(match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i.to_string(),
            (None, Some(u), _) => u.to_string(),
            // 250000.0 reads as the 250000 the caller said.
            (None, None, Some(f)) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{f:.0}"),
            (None, None, _) => n.to_string(),
        }),
        Value::Null | Value::Bool(_) | Value::Array(_) | Value::Object(_) => None,
    }
}

/// The user's lines of a transcript, without their `User:` label. Unlabelled
/// lines continue the previous speaker's turn.
fn user_lines(transcript: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let mut user = false;
    for line in transcript.lines().map(str::trim) {
        if let Some(rest) = strip_label(line, &["user:", "customer:"]) {
            user = true;
            lines.push(rest.trim());
        } else if strip_label(line, &["ai:", "assistant:", "bot:"]).is_some() {
            user = false;
        } else if user && !line.is_empty() {
            lines.push(line);
        }
    }
    lines
}

fn strip_label<'a>(line: &'a str, labels: &[&str]) -> Option<&'a str> {
    labels.iter().find_map(|label| {
        let head = line.get(..label.len())?;
        head.eq_ignore_ascii_case(label)
            .then(|| &line[label.len()..])
    })
}

/// The intent in speech (a summary or the user's words). Unlike a label,
/// speech says "sale" in Italian ("sale al piano") and "in vendita" about the
/// listing a buyer calls for; only "mettere in vendita" is a seller's.
fn intent_in_speech(text: &str) -> Option<Intent> {
    let words = zone::words(text);
    Intent::PRIORITY.into_iter().find(|intent| {
        intent
            .phrases()
            .iter()
            .filter(|phrase| **phrase != "sale")
            .any(|phrase| {
                phrase_positions(&words, phrase)
                    .any(|at| !(*phrase == "vendita" && is_listing(&words, at)))
            })
    })
}

/// Whether `words[at]` ("vendita") is "in vendita" not preceded by a form of
/// "mettere" within a few words ("mettere la casa in vendita").
fn is_listing(words: &[String], at: usize) -> bool {
    const PUT: [&str; 8] = [
        "mettere", "metterla", "metterlo", "metto", "mettiamo", "messo", "messa", "mettendo",
    ];
    if at == 0 || words[at - 1] != "in" {
        return false;
    }
    let from = at.saturating_sub(5);
    !words[from..at - 1]
        .iter()
        .any(|w| PUT.contains(&w.as_str()))
}

fn has_phrase(words: &[String], phrase: &str) -> bool {
    phrase_positions(words, phrase).next().is_some()
}

/// Where a space-separated normalised phrase starts in `words`.
fn phrase_positions<'a>(words: &'a [String], phrase: &'a str) -> impl Iterator<Item = usize> + 'a {
    let len = phrase.split(' ').count();
    words
        .windows(len)
        .enumerate()
        .filter(move |(_, window)| window.iter().map(String::as_str).eq(phrase.split(' ')))
        .map(|(at, _)| at)
}

/// At most this many digit groups make one spoken number ("+39 333 123 45 67").
const MAX_GROUPS: usize = 6;

/// The first valid Italian phone number in a line. Digit groups separated by
/// spaces or `-./()` form runs; within a run, the leftmost and then longest
/// span of groups that parses wins, so "CAP 20121 3331234567" still finds the
/// number.
fn find_phone(line: &str) -> Option<PhoneNumber> {
    for run in digit_runs(line) {
        for start in 0..run.len() {
            for end in (start + 1..=run.len().min(start + MAX_GROUPS)).rev() {
                let candidate = run[start..end].join(" ");
                let digits = candidate.bytes().filter(u8::is_ascii_digit).count();
                // Italian numbers have 6 to 11 national digits, plus 2 for +39.
                if (6..=13).contains(&digits)
                    && let Ok(phone) = PhoneNumber::parse(&candidate)
                {
                    return Some(phone);
                }
            }
        }
    }
    None
}

/// Runs of digit groups (each optionally led by `+`) with only separators
/// between them.
fn digit_runs(line: &str) -> Vec<Vec<&str>> {
    let mut runs: Vec<Vec<&str>> = Vec::new();
    let mut run: Vec<&str> = Vec::new();
    let mut chars = line.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        let starts_group = c.is_ascii_digit()
            || (c == '+' && chars.peek().is_some_and(|(_, next)| next.is_ascii_digit()));
        if starts_group {
            let mut end = at + c.len_utf8();
            while let Some((next_at, next)) = chars.peek().copied() {
                if !next.is_ascii_digit() {
                    break;
                }
                end = next_at + next.len_utf8();
                chars.next();
            }
            run.push(&line[at..end]);
        } else {
            let separator = c.is_whitespace() || matches!(c, '-' | '.' | '/' | '(' | ')');
            if !separator && !run.is_empty() {
                runs.push(std::mem::take(&mut run));
            }
        }
    }
    if !run.is_empty() {
        runs.push(run);
    }
    runs
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::domain::{Agent, Postcode};

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
                whatsapp: PhoneNumber::parse("+393470000000").unwrap(),
            },
        }
    }

    fn zones() -> Vec<RoutingZone> {
        vec![
            zone("Centro", &["20121"], &["Duomo", "Brera"]),
            zone("Nord", &["20159"], &["Isola", "Città Studi"]),
            zone("Sud", &["20141"], &["Porta Romana"]),
        ]
    }

    fn phone(s: &str) -> PhoneNumber {
        PhoneNumber::parse(s).unwrap()
    }

    fn input<'a>(
        structured: Option<&'a Value>,
        summary: Option<&'a str>,
        transcript: Option<&'a str>,
        caller: Option<&'a PhoneNumber>,
        zones: &'a [RoutingZone],
    ) -> LeadInput<'a> {
        LeadInput {
            structured,
            summary,
            transcript,
            caller,
            zones,
        }
    }

    #[test]
    fn italian_keys_and_english_keys_yield_the_same_lead_draft() {
        let zones = zones();
        let caller = phone("+390212345678");
        let italian = json!({
            "Nome_Cliente": "Mario Rossi",
            "telefono": "333 123 4567",
            "tipo_richiesta": "Acquisto",
            "tipo_immobile": "trilocale",
            "zona": "nord",
            "CAP": "20159",
            "indirizzo": "Via Borsieri 3",
            "budget": 250000,
            "urgenza": "alta",
            "consiglio": "richiamare in mattinata",
        });
        let english = json!({
            "customerName": "Mario Rossi",
            "phoneNumber": "+39 333 1234567",
            "intent": "purchase",
            "propertyType": "trilocale",
            "zone": "Nord",
            "postal_code": 20159,
            "address": "Via Borsieri 3",
            "budget": "250000",
            "urgency": "alta",
            "recommendation": "richiamare in mattinata",
        });
        let from_italian = extract(&input(Some(&italian), None, None, Some(&caller), &zones));
        let from_english = extract(&input(Some(&english), None, None, Some(&caller), &zones));
        assert_eq!(from_italian, from_english);
        assert_eq!(
            from_italian,
            LeadDraft {
                name: Some("Mario Rossi".to_owned()),
                phone: Some(phone("+393331234567")),
                intent: Some(Intent::Purchase),
                property_type: Some("trilocale".to_owned()),
                zone: Some("Nord".to_owned()),
                postcode: Some("20159".to_owned()),
                address: Some("Via Borsieri 3".to_owned()),
                budget: Some("250000".to_owned()),
                urgency: Some("alta".to_owned()),
                recommendation: Some("richiamare in mattinata".to_owned()),
            }
        );
    }

    #[test]
    fn an_empty_analysis_leaves_the_caller_as_the_phone() {
        let caller = phone("+393331234567");
        let empty = json!({});
        let draft = extract(&input(Some(&empty), None, None, Some(&caller), &[]));
        assert_eq!(
            draft,
            LeadDraft {
                phone: Some(caller),
                ..LeadDraft::default()
            }
        );
        assert_eq!(
            extract(&input(None, None, None, None, &[])),
            LeadDraft::default()
        );
    }

    #[test]
    fn empty_strings_and_unparsable_values_count_as_absent() {
        let caller = phone("+393331234567");
        let data = json!({ "nome": "  ", "name": "Anna", "telefono": "non so", "intent": "boh", "cap": "" });
        let draft = extract(&input(Some(&data), None, None, Some(&caller), &[]));
        assert_eq!(draft.name.as_deref(), Some("Anna"));
        assert_eq!(draft.phone, Some(caller));
        assert_eq!(draft.intent, None);
        assert_eq!(draft.postcode, None);
    }

    #[test]
    fn a_phone_spoken_by_the_user_is_found_and_the_ai_lines_are_ignored() {
        let caller = phone("+390212345678");
        let transcript = "AI: Mi conferma il numero 347 000 0000?\n\
                          User: No, mi richiami al 333 123 4567 per favore.\n\
                          AI: Perfetto.";
        let draft = extract(&input(None, None, Some(transcript), Some(&caller), &[]));
        assert_eq!(draft.phone, Some(phone("+393331234567")));

        for (said, expected) in [
            ("User: +39 333 1234567", "+393331234567"),
            ("User: il fisso è 02 1234 5678.", "+390212345678"),
            ("User: 3331234567", "+393331234567"),
            ("User: cap 20121 e numero 333-123-4567", "+393331234567"),
        ] {
            let draft = extract(&input(None, None, Some(said), None, &[]));
            assert_eq!(draft.phone, Some(phone(expected)), "{said}");
        }

        // Only the assistant said a number: the caller's stands.
        let ai_only = "AI: La richiamo al 333 123 4567.\nUser: Va bene, budget 250000.";
        let draft = extract(&input(None, None, Some(ai_only), Some(&caller), &[]));
        assert_eq!(draft.phone, Some(caller));
    }

    #[test]
    fn a_structured_phone_wins_over_the_transcript() {
        let data = json!({ "cellulare": 3471234567_u64 });
        let transcript = "User: 333 123 4567";
        let draft = extract(&input(Some(&data), None, Some(transcript), None, &[]));
        assert_eq!(draft.phone, Some(phone("+393471234567")));
    }

    #[test]
    fn the_intent_comes_from_keywords_in_priority_order() {
        let cases = [
            (
                "Il cliente vuole comprare casa a Milano.",
                Some(Intent::Purchase),
            ),
            ("Cerco casa in affitto", Some(Intent::Rent)),
            ("Vorrei vendere il mio bilocale", Some(Intent::Sale)),
            ("Vorrei una stima prima di vendere", Some(Intent::Valuation)),
            ("Quanto vale la mia casa?", Some(Intent::Valuation)),
            (
                "Chiedeva informazioni sugli orari",
                Some(Intent::Information),
            ),
            ("The caller wants to buy a flat", Some(Intent::Purchase)),
            // The listing a buyer calls about is not a sale...
            (
                "Interessato all'appartamento in vendita in via Roma, vuole comprarlo",
                Some(Intent::Purchase),
            ),
            // ...but putting one's own flat up for sale is.
            ("Vuole mettere la casa in vendita", Some(Intent::Sale)),
            // Italian "sale" is "goes up".
            ("Il prezzo sale ogni anno", None),
            ("Buongiorno", None),
        ];
        for (summary, expected) in cases {
            let draft = extract(&input(None, Some(summary), None, None, &[]));
            assert_eq!(draft.intent, expected, "{summary}");
        }

        // The assistant's menu of options is not the caller's intent.
        let transcript = "AI: Vuole comprare, vendere o affittare?\nUser: Affittare, un bilocale.";
        let draft = extract(&input(None, None, Some(transcript), None, &[]));
        assert_eq!(draft.intent, Some(Intent::Rent));

        // A structured intent wins over keywords.
        let data = json!({ "richiesta": "Valutazione" });
        let draft = extract(&input(Some(&data), Some("vuole comprare"), None, None, &[]));
        assert_eq!(draft.intent, Some(Intent::Valuation));
    }

    #[test]
    fn intents_round_trip_through_the_database_form() {
        for intent in Intent::ALL {
            assert_eq!(Intent::from_db(intent.as_str()), Some(intent));
            assert_eq!(Intent::from_label(intent.as_str()), Some(intent));
        }
        assert_eq!(Intent::from_db("purchase"), None);
    }

    #[test]
    fn the_zone_comes_from_the_postcode_or_a_keyword_with_accents() {
        let zones = zones();

        let by_postcode = "AI: In che zona?\nUser: Il CAP è 20141.";
        let draft = extract(&input(None, None, Some(by_postcode), None, &zones));
        assert_eq!(draft.postcode.as_deref(), Some("20141"));
        assert_eq!(draft.zone.as_deref(), Some("Sud"));

        let by_keyword = "AI: In che zona?\nUser: Zona CITTÀ STUDI, vicino al Politecnico.";
        let draft = extract(&input(None, None, Some(by_keyword), None, &zones));
        assert_eq!(draft.postcode, None);
        assert_eq!(draft.zone.as_deref(), Some("Nord"));

        // Only the assistant named a zone.
        let ai_only = "AI: Copriamo Brera e Isola.\nUser: Io cerco a Roma.";
        let draft = extract(&input(None, None, Some(ai_only), None, &zones));
        assert_eq!(draft.zone, None);

        // A structured zone that names a zone of the order wins over the postcode.
        let data = json!({ "quartiere": "centro", "cap": "20159" });
        let draft = extract(&input(Some(&data), None, None, None, &zones));
        assert_eq!(draft.zone.as_deref(), Some("Centro"));

        // A structured zone that is a keyword, or an address with a keyword.
        let data = json!({ "zona": "Porta Romana" });
        let draft = extract(&input(Some(&data), None, None, None, &zones));
        assert_eq!(draft.zone.as_deref(), Some("Sud"));
        let data = json!({ "indirizzo": "Piazza del Duomo 1" });
        let draft = extract(&input(Some(&data), None, None, None, &zones));
        assert_eq!(draft.zone.as_deref(), Some("Centro"));
    }

    #[test]
    fn isolato_does_not_match_isola() {
        let zones = zones();
        let transcript = "User: Abito un isolato più in là del Politecnico.";
        let draft = extract(&input(None, None, Some(transcript), None, &zones));
        assert_eq!(draft.zone, None);
        let transcript = "User: Cerco in zona Isola, grazie.";
        let draft = extract(&input(None, None, Some(transcript), None, &zones));
        assert_eq!(draft.zone.as_deref(), Some("Nord"));
    }

    #[test]
    fn a_budget_number_becomes_a_string() {
        for (budget, expected) in [
            (json!(250000), "250000"),
            (json!(250000.0), "250000"),
            (json!(1200.5), "1200.5"),
            (json!(" 300 mila "), "300 mila"),
        ] {
            let data = json!({ "budget": budget });
            let draft = extract(&input(Some(&data), None, None, None, &[]));
            assert_eq!(draft.budget.as_deref(), Some(expected));
        }
    }

    #[test]
    fn a_numeric_postcode_keeps_its_leading_zeros() {
        let data = json!({ "cap": 184 });
        let draft = extract(&input(Some(&data), None, None, None, &[]));
        assert_eq!(draft.postcode.as_deref(), Some("00184"));
    }

    #[test]
    fn find_postcode_ignores_six_or_more_digit_runs() {
        let transcript = "User: Budget 250000, numero 3331234567.\nUser: CAP 20121.";
        let draft = extract(&input(None, None, Some(transcript), None, &[]));
        assert_eq!(draft.postcode.as_deref(), Some("20121"));
    }
}
