//! Italian call-forwarding codes for an agency's landline.
//!
//! The agency diverts its own line to its Centralino (Twilio) number by dialling
//! GSM MMI codes (3GPP TS 22.030) from that line. Mobiles take the full
//! `**SC*number#` grammar; Italian fixed lines take only the single-`*` form of
//! unconditional forwarding. Pure functions: nothing here dials or stores.

use super::{Carrier, PhoneNumber};

/// Bounds and step of the no-answer timer that networks accept (TS 22.030).
const NO_ANSWER_MIN_SECONDS: u8 = 5;
const NO_ANSWER_MAX_SECONDS: u8 = 30;
const NO_ANSWER_STEP_SECONDS: u8 = 5;

/// What kind of line the landline is; it decides which codes exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LineKind {
    Mobile,
    Fixed,
}

impl LineKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LineKind::Mobile => "MOBILE",
            LineKind::Fixed => "FIXED",
        }
    }
}

/// What one code does when dialled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Purpose {
    Unconditional,
    Busy,
    NoAnswer,
    Unreachable,
    AllConditional,
    Check,
    Deactivate,
    DeactivateAll,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Unconditional => "UNCONDITIONAL",
            Purpose::Busy => "BUSY",
            Purpose::NoAnswer => "NO_ANSWER",
            Purpose::Unreachable => "UNREACHABLE",
            Purpose::AllConditional => "ALL_CONDITIONAL",
            Purpose::Check => "CHECK",
            Purpose::Deactivate => "DEACTIVATE",
            Purpose::DeactivateAll => "DEACTIVATE_ALL",
        }
    }
}

/// One code to dial from the landline, with an Italian explanation for the agency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardingCode {
    pub purpose: Purpose,
    pub code: String,
    pub description: String,
}

impl ForwardingCode {
    fn new(purpose: Purpose, code: String, description: &str) -> Self {
        Self {
            purpose,
            code,
            description: description.to_owned(),
        }
    }
}

/// Everything the agency needs to divert its landline to the Centralino number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardingInstructions {
    pub line_kind: LineKind,
    pub carrier: Carrier,
    pub target: PhoneNumber,
    /// On a mobile these are alternatives: unconditional, or any of the conditional ones.
    pub activate: Vec<ForwardingCode>,
    pub check: Vec<ForwardingCode>,
    pub deactivate: Vec<ForwardingCode>,
    /// Carrier-specific advice, in Italian.
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForwardingError {
    #[error("is the Centralino number itself; forwarding a line to itself would loop")]
    Loop,
    #[error("is not an Italian number; forwarding codes are known only for Italian lines")]
    NotItalian,
    /// Holds the first digits of the national number (e.g. `80`, `55`), never the
    /// whole number, so the error can be logged.
    #[error(
        "is neither an Italian mobile (3…) nor a fixed line (0…) but starts with {0}; \
         it cannot forward calls with these codes"
    )]
    UnsupportedLine(String),
}

/// Tells a mobile from a fixed line by the Italian national significant number.
pub fn line_kind(landline: &PhoneNumber) -> Result<LineKind, ForwardingError> {
    let national = landline
        .as_str()
        .strip_prefix("+39")
        .ok_or(ForwardingError::NotItalian)?;
    match national.as_bytes().first() {
        Some(b'3') => Ok(LineKind::Mobile),
        Some(b'0') => Ok(LineKind::Fixed),
        Some(_) | None => Err(ForwardingError::UnsupportedLine(
            national.chars().take(2).collect(),
        )),
    }
}

/// The no-answer timer the network will accept: 5–30 s, rounded to the nearest 5 s.
pub fn no_answer_delay(requested: u8) -> u8 {
    let clamped = requested.clamp(NO_ANSWER_MIN_SECONDS, NO_ANSWER_MAX_SECONDS);
    (clamped + NO_ANSWER_STEP_SECONDS / 2) / NO_ANSWER_STEP_SECONDS * NO_ANSWER_STEP_SECONDS
}

/// The codes and notes for diverting `landline` to `target` (the Centralino number).
/// `no_answer_seconds` is normalised with [`no_answer_delay`].
pub fn instructions(
    landline: &PhoneNumber,
    carrier: Carrier,
    target: &PhoneNumber,
    no_answer_seconds: u8,
) -> Result<ForwardingInstructions, ForwardingError> {
    // First, so an operator who pasted the same number twice hears about that
    // rather than about the number's kind.
    if landline == target {
        return Err(ForwardingError::Loop);
    }
    let kind = line_kind(landline)?;
    let n = target.as_str();
    let (activate, check) = match kind {
        LineKind::Mobile => {
            let secs = no_answer_delay(no_answer_seconds);
            (
                vec![
                    ForwardingCode::new(
                        Purpose::Unconditional,
                        format!("**21*{n}#"),
                        "Inoltra sempre tutte le chiamate al numero Centralino \
                         (il telefono non squilla più).",
                    ),
                    ForwardingCode::new(
                        Purpose::Busy,
                        format!("**67*{n}#"),
                        "Inoltra le chiamate al numero Centralino quando la linea è occupata.",
                    ),
                    ForwardingCode {
                        purpose: Purpose::NoAnswer,
                        code: format!("**61*{n}**{secs}#"),
                        description: format!(
                            "Inoltra le chiamate al numero Centralino se non rispondi \
                             entro {secs} secondi."
                        ),
                    },
                    ForwardingCode::new(
                        Purpose::Unreachable,
                        format!("**62*{n}#"),
                        "Inoltra le chiamate al numero Centralino quando il telefono \
                         è spento o senza campo.",
                    ),
                    ForwardingCode::new(
                        Purpose::AllConditional,
                        format!("**004*{n}#"),
                        "Attiva in un colpo solo gli inoltri per occupato, mancata risposta \
                         (con il tempo d'attesa predefinito dell'operatore) e non raggiungibile.",
                    ),
                ],
                vec![ForwardingCode::new(
                    Purpose::Check,
                    "*#21#".to_owned(),
                    "Verifica se l'inoltro di tutte le chiamate è attivo e verso quale numero.",
                )],
            )
        }
        LineKind::Fixed => (
            vec![ForwardingCode::new(
                Purpose::Unconditional,
                format!("*21*{n}#"),
                "Inoltra sempre tutte le chiamate al numero Centralino \
                 (il telefono fisso non squilla più).",
            )],
            vec![ForwardingCode::new(
                Purpose::Check,
                "*#21#".to_owned(),
                "Verifica se l'inoltro delle chiamate è attivo.",
            )],
        ),
    };
    Ok(ForwardingInstructions {
        line_kind: kind,
        carrier,
        target: target.clone(),
        activate,
        check,
        deactivate: codes_to_deactivate(kind),
        notes: notes(kind, carrier),
    })
}

/// What to dial from `landline` to undo the forwarding (e.g. when an order is cancelled).
pub fn deactivation_codes(
    landline: &PhoneNumber,
    _carrier: Carrier,
) -> Result<Vec<ForwardingCode>, ForwardingError> {
    // The carrier does not change the codes today; it stays in the signature so
    // a carrier-specific code can be added without touching callers.
    Ok(codes_to_deactivate(line_kind(landline)?))
}

fn codes_to_deactivate(kind: LineKind) -> Vec<ForwardingCode> {
    match kind {
        // `##` erases the registered number too, so a stray `*21#` later cannot
        // silently revive forwarding to a number the agency no longer pays for.
        LineKind::Mobile => vec![
            ForwardingCode::new(
                Purpose::Deactivate,
                "##21#".to_owned(),
                "Disattiva l'inoltro di tutte le chiamate.",
            ),
            ForwardingCode::new(
                Purpose::DeactivateAll,
                "##002#".to_owned(),
                "Disattiva tutti gli inoltri, anche quelli per occupato, mancata risposta \
                 e non raggiungibile (su alcuni operatori anche la deviazione alla segreteria).",
            ),
        ],
        LineKind::Fixed => vec![ForwardingCode::new(
            Purpose::Deactivate,
            "#21#".to_owned(),
            "Disattiva l'inoltro delle chiamate.",
        )],
    }
}

fn notes(kind: LineKind, carrier: Carrier) -> Vec<String> {
    const TIM_187: &str = "Sulle linee fisse TIM il servizio di inoltro chiamata va prima \
                           attivato chiamando il 187 (o dall'area clienti online); \
                           solo dopo il codice funziona.";
    const ROUTER: &str = "Con un modem/router in fibra o VoIP l'inoltro può essere gestito \
                          dall'interfaccia web del router: se il codice non funziona, \
                          configuralo lì.";
    const ILIAD_AREA: &str = "L'inoltro si può impostare anche dall'area personale Iliad: \
                              Impostazioni → Inoltro chiamate.";
    const DIAL_FROM_LINE: &str = "Componi i codici dal telefono della linea da inoltrare, \
                                  come una normale chiamata.";
    const COST: &str = "Le chiamate inoltrate possono essere addebitate dal tuo operatore \
                        secondo il tuo piano tariffario.";

    let mut notes = vec![DIAL_FROM_LINE];
    match (kind, carrier) {
        (LineKind::Fixed, Carrier::Tim) => notes.push(TIM_187),
        (LineKind::Fixed, Carrier::Fastweb | Carrier::Other) => notes.push(ROUTER),
        // Unknown carrier: both pieces of advice, the TIM one phrased as conditional.
        (LineKind::Fixed, Carrier::Unspecified) => {
            notes.push(
                "Se la linea fissa è TIM, il servizio di inoltro chiamata va prima attivato \
                 chiamando il 187 (o dall'area clienti online).",
            );
            notes.push(ROUTER);
        }
        (LineKind::Fixed, Carrier::Vodafone | Carrier::WindTre | Carrier::Iliad) => {}
        (LineKind::Mobile, Carrier::Iliad) => notes.push(ILIAD_AREA),
        (
            LineKind::Mobile,
            Carrier::Unspecified
            | Carrier::Tim
            | Carrier::Vodafone
            | Carrier::WindTre
            | Carrier::Fastweb
            | Carrier::Other,
        ) => {}
    }
    notes.push(COST);
    notes.into_iter().map(str::to_owned).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phone(s: &str) -> PhoneNumber {
        PhoneNumber::parse(s).unwrap()
    }

    fn codes(list: &[ForwardingCode]) -> Vec<(Purpose, &str)> {
        list.iter().map(|c| (c.purpose, c.code.as_str())).collect()
    }

    const CENTRALINO: &str = "+390212345678";

    #[test]
    fn the_line_kind_comes_from_the_national_number() {
        assert_eq!(line_kind(&phone("+393331234567")), Ok(LineKind::Mobile));
        assert_eq!(line_kind(&phone("06 1234 5678")), Ok(LineKind::Fixed));
        assert_eq!(
            line_kind(&phone("+39 800 123456")),
            Err(ForwardingError::UnsupportedLine("80".to_owned()))
        );
    }

    #[test]
    fn a_vodafone_mobile_gets_the_full_set_of_gsm_codes() {
        let got = instructions(
            &phone("+393331234567"),
            Carrier::Vodafone,
            &phone(CENTRALINO),
            20,
        )
        .unwrap();
        assert_eq!(got.line_kind, LineKind::Mobile);
        assert_eq!(got.carrier, Carrier::Vodafone);
        assert_eq!(got.target.as_str(), CENTRALINO);
        assert_eq!(
            codes(&got.activate),
            [
                (Purpose::Unconditional, "**21*+390212345678#"),
                (Purpose::Busy, "**67*+390212345678#"),
                (Purpose::NoAnswer, "**61*+390212345678**20#"),
                (Purpose::Unreachable, "**62*+390212345678#"),
                (Purpose::AllConditional, "**004*+390212345678#"),
            ]
        );
        assert_eq!(codes(&got.check), [(Purpose::Check, "*#21#")]);
        assert_eq!(
            codes(&got.deactivate),
            [
                (Purpose::Deactivate, "##21#"),
                (Purpose::DeactivateAll, "##002#")
            ]
        );
        assert_eq!(
            got.activate[0].description,
            "Inoltra sempre tutte le chiamate al numero Centralino (il telefono non squilla più)."
        );
        assert!(got.notes.iter().all(|n| !n.contains("187")));
    }

    #[test]
    fn an_iliad_mobile_is_pointed_to_the_personal_area() {
        let got = instructions(
            &phone("+393511234567"),
            Carrier::Iliad,
            &phone(CENTRALINO),
            20,
        )
        .unwrap();
        assert!(
            got.notes
                .iter()
                .any(|n| n.contains("Impostazioni → Inoltro chiamate"))
        );
    }

    #[test]
    fn a_tim_landline_uses_the_single_star_form_and_needs_187_first() {
        let got = instructions(
            &phone("+39 06 1234 5678"),
            Carrier::Tim,
            &phone(CENTRALINO),
            20,
        )
        .unwrap();
        assert_eq!(got.line_kind, LineKind::Fixed);
        assert_eq!(
            codes(&got.activate),
            [(Purpose::Unconditional, "*21*+390212345678#")]
        );
        assert_eq!(codes(&got.check), [(Purpose::Check, "*#21#")]);
        assert_eq!(codes(&got.deactivate), [(Purpose::Deactivate, "#21#")]);
        assert!(got.notes.iter().any(|n| n.contains("187")));
        assert!(got.notes.iter().all(|n| !n.contains("router")));
    }

    #[test]
    fn fastweb_and_other_landlines_mention_the_router() {
        for carrier in [Carrier::Fastweb, Carrier::Other] {
            let got =
                instructions(&phone("+390612345678"), carrier, &phone(CENTRALINO), 20).unwrap();
            assert!(
                got.notes.iter().any(|n| n.contains("router")),
                "{carrier:?}"
            );
            assert!(got.notes.iter().all(|n| !n.contains("187")), "{carrier:?}");
        }
    }

    #[test]
    fn no_answer_seconds_are_clamped_and_rounded_to_five() {
        for (asked, used) in [
            (0, 5),
            (5, 5),
            (7, 5),
            (8, 10),
            (12, 10),
            (13, 15),
            (30, 30),
            (31, 30),
            (u8::MAX, 30),
        ] {
            assert_eq!(no_answer_delay(asked), used, "{asked}");
            let got = instructions(
                &phone("+393331234567"),
                Carrier::Tim,
                &phone(CENTRALINO),
                asked,
            )
            .unwrap();
            let no_answer = got
                .activate
                .iter()
                .find(|c| c.purpose == Purpose::NoAnswer)
                .unwrap();
            assert_eq!(no_answer.code, format!("**61*{CENTRALINO}**{used}#"));
            assert!(no_answer.description.contains(&format!("{used} secondi")));
        }
    }

    #[test]
    fn forwarding_a_line_to_itself_is_refused() {
        let line = phone(CENTRALINO);
        assert_eq!(
            instructions(&line, Carrier::Tim, &line, 20),
            Err(ForwardingError::Loop)
        );
        // The loop is reported even for a line that could not forward anyway.
        let foreign = phone("+41446681800");
        assert_eq!(
            instructions(&foreign, Carrier::Other, &foreign, 20),
            Err(ForwardingError::Loop)
        );
    }

    #[test]
    fn a_non_italian_landline_is_refused() {
        let foreign = phone("+41446681800");
        assert_eq!(
            instructions(&foreign, Carrier::Other, &phone(CENTRALINO), 20),
            Err(ForwardingError::NotItalian)
        );
        assert_eq!(
            deactivation_codes(&foreign, Carrier::Other),
            Err(ForwardingError::NotItalian)
        );
    }

    #[test]
    fn deactivation_codes_undo_forwarding_on_mobile_and_fixed_lines() {
        assert_eq!(
            codes(&deactivation_codes(&phone("+393331234567"), Carrier::WindTre).unwrap()),
            [
                (Purpose::Deactivate, "##21#"),
                (Purpose::DeactivateAll, "##002#")
            ]
        );
        assert_eq!(
            codes(&deactivation_codes(&phone("+390212345678"), Carrier::Tim).unwrap()),
            [(Purpose::Deactivate, "#21#")]
        );
    }
}
