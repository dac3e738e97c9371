//! Vapi server messages, parsed from raw bytes.
//!
//! Pure parsing: no database, no phone-number normalisation. Only the fields
//! Centralino acts on are read; everything else in a payload is ignored so
//! that Vapi adding fields never breaks the webhook. Field paths in errors are
//! dotted paths into the body (`message.call.id`) or, for a Call object from
//! the REST API, into that object (`id`).

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

/// One Vapi server message, reduced to what Centralino needs.
#[derive(Debug, Clone, PartialEq)]
pub enum VapiMessage {
    AssistantRequest(AssistantRequest),
    StatusUpdate(StatusUpdate),
    /// Boxed: a report is much larger than the other variants.
    EndOfCallReport(Box<CallReport>),
    /// Any other type: answered 200 and ignored.
    Ignored {
        message_type: String,
    },
}

/// Identifies the call and the number/assistant it belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct CallRef {
    /// `call.id`.
    pub call_id: Option<String>,
    /// `call.phoneNumberId`, else `phoneNumber.id`.
    pub phone_number_id: Option<String>,
    /// `phoneNumber.number`, raw.
    pub called_number: Option<String>,
    /// `call.assistantId`.
    pub assistant_id: Option<String>,
    /// `customer.number`, else `call.customer.number`; raw string.
    pub customer_number: Option<String>,
}

/// `assistant-request`: an inbound call on a number with no assistant.
#[derive(Debug, Clone, PartialEq)]
pub struct AssistantRequest {
    pub call: CallRef,
}

/// `status-update`: the call's status changed.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusUpdate {
    /// `call_id` is always present.
    pub call: CallRef,
    /// Raw status (`ringing`, `in-progress`, `ended`, ...).
    pub status: String,
    pub ended_reason: Option<String>,
    /// `message.timestamp` (epoch milliseconds).
    pub at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
}

/// What an `end-of-call-report` (or a Call object, §11b) tells us to store.
#[derive(Debug, Clone, PartialEq)]
pub struct CallReport {
    /// `call_id` is always present: it is the idempotency key.
    pub call: CallRef,
    pub call_type: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    /// `durationSeconds`, else `durationMs / 1000`, else `endedAt - startedAt`.
    pub duration_seconds: Option<f64>,
    pub ended_reason: Option<String>,
    pub cost: Option<f64>,
    pub summary: Option<String>,
    pub transcript: Option<String>,
    /// `artifact.recording.mono.combinedUrl`, else `artifact.recordingUrl`,
    /// else top-level `recordingUrl`.
    pub recording_url: Option<String>,
    /// `artifact.recording.stereoUrl`, else `artifact.stereoRecordingUrl`,
    /// else top-level `stereoRecordingUrl`.
    pub stereo_recording_url: Option<String>,
    /// `analysis.structuredData` when it is a non-empty object.
    pub structured_data: Option<Value>,
    /// `analysis.successEvaluation`; booleans and numbers are stringified.
    pub success_evaluation: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("body is not JSON: {0}")]
    NotJson(String),
    #[error("missing field {0}")]
    Missing(&'static str),
    #[error("field {field} has the wrong type: expected {expected}")]
    WrongType {
        field: &'static str,
        expected: &'static str,
    },
}

impl ParseError {
    /// The dotted path of the offending field, if the error is about one.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            ParseError::NotJson(_) => None,
            ParseError::Missing(field) => Some(field),
            ParseError::WrongType { field, .. } => Some(field),
        }
    }
}

/// Parses a webhook body (`{"message": {...}}`).
pub fn parse(body: &[u8]) -> Result<VapiMessage, ParseError> {
    let body: Value =
        serde_json::from_slice(body).map_err(|e| ParseError::NotJson(e.to_string()))?;
    // A non-object body (e.g. `[]`) has no `message` either.
    let message = match body.as_object().and_then(|o| present(o.get("message"))) {
        None => return Err(ParseError::Missing("message")),
        Some(Value::Object(m)) => m,
        Some(_) => return Err(wrong("message", "object")),
    };
    let message_type = match present(message.get("type")) {
        None => return Err(ParseError::Missing("message.type")),
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(wrong("message.type", "string")),
    };
    let src = Src {
        shape: Shape::Message,
        root: &body,
    };
    match message_type {
        "assistant-request" => Ok(VapiMessage::AssistantRequest(AssistantRequest {
            call: src.call_ref()?,
        })),
        "status-update" => Ok(VapiMessage::StatusUpdate(status_update(&src)?)),
        "end-of-call-report" => Ok(VapiMessage::EndOfCallReport(Box::new(src.report()?))),
        other => Ok(VapiMessage::Ignored {
            message_type: other.to_owned(),
        }),
    }
}

/// A Vapi Call object (GET /call, §11b) mapped to the same CallReport (for
/// recovery of lost reports).
pub fn report_from_call(call: &Value) -> Result<CallReport, ParseError> {
    if !call.is_object() {
        return Err(wrong("call", "object"));
    }
    Src {
        shape: Shape::Call,
        root: call,
    }
    .report()
}

fn status_update(src: &Src<'_>) -> Result<StatusUpdate, ParseError> {
    let call = src.call_ref()?;
    if call.call_id.is_none() {
        return Err(ParseError::Missing("message.call.id"));
    }
    let status = src
        .string("message.status")?
        .ok_or(ParseError::Missing("message.status"))?;
    Ok(StatusUpdate {
        call,
        status,
        ended_reason: src.first_string(&["message.endedReason", "message.call.endedReason"])?,
        at: src.epoch_ms("message.timestamp")?,
        started_at: src.first_time(&["message.startedAt", "message.call.startedAt"])?,
    })
}

/// Which document the paths are resolved against.
#[derive(Debug, Clone, Copy)]
enum Shape {
    /// A webhook body: report fields under `message`, call fields under `message.call`.
    Message,
    /// A Call object: both kinds of field at its top level.
    Call,
}

/// One mapping for both shapes: paths are written in webhook form and
/// rewritten for a Call object, so the two recovery paths cannot drift apart.
struct Src<'a> {
    shape: Shape,
    root: &'a Value,
}

impl<'a> Src<'a> {
    /// The path as it exists in this shape. Slicing keeps it `'static`, which
    /// the error type needs.
    fn path(&self, path: &'static str) -> &'static str {
        match self.shape {
            Shape::Message => path,
            Shape::Call => path
                .strip_prefix("message.call.")
                .or_else(|| path.strip_prefix("message."))
                .unwrap_or(path),
        }
    }

    /// The value at `path`, `None` if absent or null. Every intermediate
    /// segment must be an object, else `WrongType` names that segment.
    fn get(&self, path: &'static str) -> Result<Option<&'a Value>, ParseError> {
        let path = self.path(path);
        let mut cur = self.root;
        // Length of the segments walked so far, each with its trailing dot.
        let mut walked: usize = 0;
        for seg in path.split('.') {
            let Value::Object(obj) = cur else {
                return Err(wrong(&path[..walked.saturating_sub(1)], "object"));
            };
            match present(obj.get(seg)) {
                Some(v) => cur = v,
                None => return Ok(None),
            }
            walked += seg.len() + 1;
        }
        Ok(Some(cur))
    }

    fn object(&self, path: &'static str) -> Result<Option<&'a Map<String, Value>>, ParseError> {
        match self.get(path)? {
            None => Ok(None),
            Some(Value::Object(o)) => Ok(Some(o)),
            Some(_) => Err(wrong(self.path(path), "object")),
        }
    }

    /// A string; empty strings count as absent.
    fn string(&self, path: &'static str) -> Result<Option<String>, ParseError> {
        match self.get(path)? {
            None => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(wrong(self.path(path), "string")),
        }
    }

    /// The first present string among fallbacks; a wrong type anywhere is
    /// still an error, so a malformed newer field is not silently skipped.
    fn first_string(&self, paths: &[&'static str]) -> Result<Option<String>, ParseError> {
        for path in paths {
            if let Some(s) = self.string(path)? {
                return Ok(Some(s));
            }
        }
        Ok(None)
    }

    fn number(&self, path: &'static str) -> Result<Option<f64>, ParseError> {
        match self.get(path)? {
            None => Ok(None),
            Some(Value::Number(n)) => Ok(n.as_f64()),
            Some(_) => Err(wrong(self.path(path), "number")),
        }
    }

    fn time(&self, path: &'static str) -> Result<Option<DateTime<Utc>>, ParseError> {
        match self.string(path)? {
            None => Ok(None),
            Some(s) => DateTime::parse_from_rfc3339(&s)
                .map(|t| Some(t.with_timezone(&Utc)))
                .map_err(|_| wrong(self.path(path), "RFC 3339 timestamp")),
        }
    }

    fn first_time(&self, paths: &[&'static str]) -> Result<Option<DateTime<Utc>>, ParseError> {
        for path in paths {
            if let Some(t) = self.time(path)? {
                return Ok(Some(t));
            }
        }
        Ok(None)
    }

    fn epoch_ms(&self, path: &'static str) -> Result<Option<DateTime<Utc>>, ParseError> {
        let bad = || wrong(self.path(path), "epoch milliseconds");
        match self.number(path)? {
            None => Ok(None),
            // Vapi sends integers; a float is rounded rather than rejected.
            Some(ms) if ms.is_finite() => DateTime::from_timestamp_millis(ms.round() as i64)
                .map(Some)
                .ok_or_else(bad),
            Some(_) => Err(bad()),
        }
    }

    fn call_ref(&self) -> Result<CallRef, ParseError> {
        // Type-check `call` itself, so `"call": 5` is reported as such; a
        // Call object is the call.
        if let Shape::Message = self.shape {
            self.object("message.call")?;
        }
        Ok(CallRef {
            call_id: self.string("message.call.id")?,
            phone_number_id: self
                .first_string(&["message.call.phoneNumberId", "message.phoneNumber.id"])?,
            called_number: self.string("message.phoneNumber.number")?,
            assistant_id: self.string("message.call.assistantId")?,
            customer_number: self
                .first_string(&["message.customer.number", "message.call.customer.number"])?,
        })
    }

    fn report(&self) -> Result<CallReport, ParseError> {
        let call = self.call_ref()?;
        if call.call_id.is_none() {
            return Err(ParseError::Missing(self.path("message.call.id")));
        }
        // The call snapshot in a report is taken at call start, so the
        // message-level timestamps win and the snapshot is only a fallback.
        let started_at = self.first_time(&["message.startedAt", "message.call.startedAt"])?;
        let ended_at = self.first_time(&["message.endedAt", "message.call.endedAt"])?;
        let duration_seconds = match self.number("message.durationSeconds")? {
            Some(s) => Some(s),
            None => match self.number("message.durationMs")? {
                Some(ms) => Some(ms / 1000.0),
                // A negative span means bad clocks, not a duration.
                None => started_at
                    .zip(ended_at)
                    .filter(|(s, e)| e >= s)
                    .map(|(s, e)| (e - s).num_milliseconds() as f64 / 1000.0),
            },
        };
        self.object("message.artifact")?;
        self.object("message.analysis")?;
        let structured_data = self
            .object("message.analysis.structuredData")?
            .filter(|o| !o.is_empty())
            .map(|o| Value::Object(o.clone()));
        let success_evaluation = match self.get("message.analysis.successEvaluation")? {
            None => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(Value::String(s)) => Some(s.clone()),
            // Depends on the rubric: some yield booleans or scores.
            Some(v @ (Value::Bool(_) | Value::Number(_))) => Some(v.to_string()),
            Some(Value::Array(_) | Value::Object(_) | Value::Null) => {
                return Err(wrong(
                    self.path("message.analysis.successEvaluation"),
                    "string, boolean or number",
                ));
            }
        };
        Ok(CallReport {
            call_type: self.string("message.call.type")?,
            started_at,
            ended_at,
            duration_seconds,
            ended_reason: self
                .first_string(&["message.endedReason", "message.call.endedReason"])?,
            cost: self.number("message.cost")?,
            // Older payloads put these at the top level of `message`.
            summary: self.first_string(&["message.analysis.summary", "message.summary"])?,
            transcript: self
                .first_string(&["message.artifact.transcript", "message.transcript"])?,
            // The `recording` object replaces the deprecated flat URLs.
            recording_url: self.first_string(&[
                "message.artifact.recording.mono.combinedUrl",
                "message.artifact.recordingUrl",
                "message.recordingUrl",
            ])?,
            stereo_recording_url: self.first_string(&[
                "message.artifact.recording.stereoUrl",
                "message.artifact.stereoRecordingUrl",
                "message.stereoRecordingUrl",
            ])?,
            structured_data,
            success_evaluation,
            call,
        })
    }
}

/// Null is treated as absent: Vapi serialises unset fields either way.
fn present(v: Option<&Value>) -> Option<&Value> {
    v.filter(|v| !v.is_null())
}

fn wrong(field: &'static str, expected: &'static str) -> ParseError {
    ParseError::WrongType { field, expected }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ts(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    /// `eocr_inbound_full_with_structured_data.json`, with `costs`,
    /// `artifact.messages*` and most of `phoneNumber` trimmed.
    const EOCR_FULL: &str = r#"{
      "message": {
        "type": "end-of-call-report",
        "timestamp": 1773308705310,
        "endedReason": "customer-ended-call",
        "startedAt": "2026-03-12T09:41:10.204Z",
        "endedAt": "2026-03-12T09:45:02.918Z",
        "durationMs": 232714,
        "durationSeconds": 232.714,
        "durationMinutes": 3.8786,
        "cost": 0.2043,
        "costs": [{"type": "transport", "provider": "twilio", "minutes": 3.8786, "cost": 0.0339}],
        "phoneNumber": {
          "id": "3f9b8c7d-2e1a-4d5c-9b8a-7c6d5e4f3a21",
          "provider": "twilio",
          "number": "+390200000101",
          "name": "Navigli vendite",
          "assistantId": "a7c3e2d1-4b5f-4e6a-8c9d-0f1e2d3c4b5a"
        },
        "customer": {"number": "+393400000177"},
        "assistant": {"name": "Giulia - Immobiliare Navigli"},
        "call": {
          "id": "01990c3a-5b7e-7c21-9f4d-2a6b8c0d1e3f",
          "type": "inboundPhoneCall",
          "phoneCallProvider": "twilio",
          "phoneNumberId": "3f9b8c7d-2e1a-4d5c-9b8a-7c6d5e4f3a21",
          "customer": {"number": "+393400000177"},
          "createdAt": "2026-03-12T09:41:07.512Z",
          "assistantId": "a7c3e2d1-4b5f-4e6a-8c9d-0f1e2d3c4b5a",
          "startedAt": "2026-03-12T09:41:10.204Z"
        },
        "artifact": {
          "messages": [{"role": "user", "message": "No, grazie, arrivederci.", "time": 1773308697104}],
          "transcript": "AI: Buongiorno, Immobiliare Navigli.\nUser: No, grazie, arrivederci.\n",
          "recordingUrl": "https://storage.vapi.ai/legacy-mono.wav",
          "stereoRecordingUrl": "https://storage.vapi.ai/legacy-stereo.wav",
          "recording": {
            "stereoUrl": "https://storage.vapi.ai/x-stereo.wav",
            "mono": {
              "combinedUrl": "https://storage.vapi.ai/x-mono.wav",
              "assistantUrl": "https://storage.vapi.ai/x-assistant.wav",
              "customerUrl": "https://storage.vapi.ai/x-customer.wav"
            }
          },
          "logUrl": "https://calllogs.vapi.ai/log.ndjson.gz"
        },
        "analysis": {
          "summary": "Marco Bellini cerca un trilocale a Porta Romana.",
          "structuredData": {
            "intento": "acquisto",
            "nome": "Marco Bellini",
            "budgetMaxEuro": 520000,
            "richiedeVisita": true
          },
          "successEvaluation": "true"
        }
      }
    }"#;

    const STATUS_RINGING: &str = r#"{
      "message": {
        "type": "status-update",
        "timestamp": 1773308467790,
        "status": "ringing",
        "phoneNumber": {
          "id": "3f9b8c7d-2e1a-4d5c-9b8a-7c6d5e4f3a21",
          "number": "+390200000101",
          "assistantId": "a7c3e2d1-4b5f-4e6a-8c9d-0f1e2d3c4b5a"
        },
        "customer": {"number": "+393400000177"},
        "call": {
          "id": "01990c3a-5b7e-7c21-9f4d-2a6b8c0d1e3f",
          "type": "inboundPhoneCall",
          "phoneNumberId": "3f9b8c7d-2e1a-4d5c-9b8a-7c6d5e4f3a21",
          "customer": {"number": "+393400000177"},
          "createdAt": "2026-03-12T09:41:07.512Z",
          "assistantId": "a7c3e2d1-4b5f-4e6a-8c9d-0f1e2d3c4b5a",
          "status": "ringing"
        }
      }
    }"#;

    const ASSISTANT_REQUEST: &str = r#"{
      "message": {
        "type": "assistant-request",
        "timestamp": 1773324131420,
        "phoneNumber": {
          "id": "8e7d6c5b-4a3f-4e2d-8c1b-0a9f8e7d6c5b",
          "provider": "twilio",
          "number": "+390200000202",
          "name": "Brera affitti",
          "fallbackDestination": {"type": "number", "number": "+390200000303"}
        },
        "customer": {"number": "+393480000412"},
        "call": {
          "id": "01990c90-4a5b-7c6d-8e9f-0a1b2c3d4e5f",
          "type": "inboundPhoneCall",
          "phoneNumberId": "8e7d6c5b-4a3f-4e2d-8c1b-0a9f8e7d6c5b",
          "customer": {"number": "+393480000412"},
          "status": "ringing"
        }
      }
    }"#;

    fn value(s: &str) -> Value {
        serde_json::from_str(s).unwrap()
    }

    fn parse_value(v: &Value) -> Result<VapiMessage, ParseError> {
        parse(v.to_string().as_bytes())
    }

    fn report(v: &Value) -> CallReport {
        let got = parse_value(v).unwrap();
        let VapiMessage::EndOfCallReport(r) = got else {
            panic!("expected a report, got {got:?}");
        };
        *r
    }

    fn full_report() -> CallReport {
        CallReport {
            call: CallRef {
                call_id: Some("01990c3a-5b7e-7c21-9f4d-2a6b8c0d1e3f".into()),
                phone_number_id: Some("3f9b8c7d-2e1a-4d5c-9b8a-7c6d5e4f3a21".into()),
                called_number: Some("+390200000101".into()),
                assistant_id: Some("a7c3e2d1-4b5f-4e6a-8c9d-0f1e2d3c4b5a".into()),
                customer_number: Some("+393400000177".into()),
            },
            call_type: Some("inboundPhoneCall".into()),
            started_at: Some(ts("2026-03-12T09:41:10.204Z")),
            ended_at: Some(ts("2026-03-12T09:45:02.918Z")),
            duration_seconds: Some(232.714),
            ended_reason: Some("customer-ended-call".into()),
            cost: Some(0.2043),
            summary: Some("Marco Bellini cerca un trilocale a Porta Romana.".into()),
            transcript: Some(
                "AI: Buongiorno, Immobiliare Navigli.\nUser: No, grazie, arrivederci.\n".into(),
            ),
            recording_url: Some("https://storage.vapi.ai/x-mono.wav".into()),
            stereo_recording_url: Some("https://storage.vapi.ai/x-stereo.wav".into()),
            structured_data: Some(json!({
                "intento": "acquisto",
                "nome": "Marco Bellini",
                "budgetMaxEuro": 520000,
                "richiedeVisita": true
            })),
            success_evaluation: Some("true".into()),
        }
    }

    #[test]
    fn the_full_end_of_call_report_maps_every_field() {
        assert_eq!(report(&value(EOCR_FULL)), full_report());
    }

    #[test]
    fn deprecated_artifact_recording_urls_are_the_fallback() {
        let mut v = value(EOCR_FULL);
        v["message"]["artifact"]
            .as_object_mut()
            .unwrap()
            .remove("recording");
        let r = report(&v);
        assert_eq!(
            r.recording_url.as_deref(),
            Some("https://storage.vapi.ai/legacy-mono.wav")
        );
        assert_eq!(
            r.stereo_recording_url.as_deref(),
            Some("https://storage.vapi.ai/legacy-stereo.wav")
        );
    }

    #[test]
    fn legacy_top_level_transcript_summary_and_recording_are_accepted() {
        let v = json!({"message": {
            "type": "end-of-call-report",
            "call": {"id": "c1"},
            "transcript": "AI: Ciao\n",
            "summary": "Breve.",
            "recordingUrl": "https://r/mono.wav",
            "stereoRecordingUrl": "https://r/stereo.wav",
            "messages": [],
            "artifact": {"transcript": ""},
            "analysis": {}
        }});
        let r = report(&v);
        assert_eq!(r.transcript.as_deref(), Some("AI: Ciao\n"));
        assert_eq!(r.summary.as_deref(), Some("Breve."));
        assert_eq!(r.recording_url.as_deref(), Some("https://r/mono.wav"));
        assert_eq!(
            r.stereo_recording_url.as_deref(),
            Some("https://r/stereo.wav")
        );
    }

    #[test]
    fn duration_is_computed_from_the_timestamps_when_absent() {
        let mut v = value(EOCR_FULL);
        let m = v["message"].as_object_mut().unwrap();
        m.remove("durationSeconds");
        m.remove("durationMs");
        assert_eq!(report(&v).duration_seconds, Some(232.714));
    }

    #[test]
    fn duration_falls_back_to_milliseconds() {
        let mut v = value(EOCR_FULL);
        v["message"]
            .as_object_mut()
            .unwrap()
            .remove("durationSeconds");
        v["message"]["durationMs"] = json!(1500);
        assert_eq!(report(&v).duration_seconds, Some(1.5));
    }

    #[test]
    fn an_empty_analysis_gives_no_structured_data() {
        let mut v = value(EOCR_FULL);
        v["message"]["analysis"] = json!({});
        let r = report(&v);
        assert_eq!(r.structured_data, None);
        assert_eq!(r.summary, None);
        assert_eq!(r.success_evaluation, None);

        v["message"]["analysis"] = json!({"structuredData": {}, "successEvaluation": false});
        let r = report(&v);
        assert_eq!(r.structured_data, None);
        assert_eq!(r.success_evaluation.as_deref(), Some("false"));
    }

    #[test]
    fn the_ringing_status_update_example_parses() {
        let got = parse(STATUS_RINGING.as_bytes()).unwrap();
        let want = VapiMessage::StatusUpdate(StatusUpdate {
            call: CallRef {
                call_id: Some("01990c3a-5b7e-7c21-9f4d-2a6b8c0d1e3f".into()),
                phone_number_id: Some("3f9b8c7d-2e1a-4d5c-9b8a-7c6d5e4f3a21".into()),
                called_number: Some("+390200000101".into()),
                assistant_id: Some("a7c3e2d1-4b5f-4e6a-8c9d-0f1e2d3c4b5a".into()),
                customer_number: Some("+393400000177".into()),
            },
            status: "ringing".into(),
            ended_reason: None,
            at: DateTime::from_timestamp_millis(1_773_308_467_790),
            started_at: None,
        });
        assert_eq!(got, want);
    }

    #[test]
    fn a_status_update_without_a_call_id_is_missing_it() {
        let v = json!({"message": {"type": "status-update", "status": "ended", "call": {}}});
        assert_eq!(parse_value(&v), Err(ParseError::Missing("message.call.id")));
    }

    #[test]
    fn the_assistant_request_example_gives_number_and_caller() {
        let got = parse(ASSISTANT_REQUEST.as_bytes()).unwrap();
        let want = VapiMessage::AssistantRequest(AssistantRequest {
            call: CallRef {
                call_id: Some("01990c90-4a5b-7c6d-8e9f-0a1b2c3d4e5f".into()),
                phone_number_id: Some("8e7d6c5b-4a3f-4e2d-8c1b-0a9f8e7d6c5b".into()),
                called_number: Some("+390200000202".into()),
                assistant_id: None,
                customer_number: Some("+393480000412".into()),
            },
        });
        assert_eq!(got, want);
    }

    #[test]
    fn an_assistant_request_falls_back_to_phone_number_id_and_call_customer() {
        let v = json!({"message": {
            "type": "assistant-request",
            "phoneNumber": {"id": "pn1", "number": "+390200000202"},
            "call": {"customer": {"number": "+393480000412"}}
        }});
        let VapiMessage::AssistantRequest(a) = parse_value(&v).unwrap() else {
            panic!("expected an assistant request");
        };
        assert_eq!(a.call.phone_number_id.as_deref(), Some("pn1"));
        assert_eq!(a.call.customer_number.as_deref(), Some("+393480000412"));
        assert_eq!(a.call.call_id, None);
    }

    #[test]
    fn an_unknown_type_is_ignored() {
        let v = json!({"message": {"type": "speech-update", "status": "started"}});
        assert_eq!(
            parse_value(&v),
            Ok(VapiMessage::Ignored {
                message_type: "speech-update".into()
            })
        );
    }

    #[test]
    fn truncated_json_is_not_json() {
        let body = &EOCR_FULL.as_bytes()[..200];
        assert!(matches!(parse(body), Err(ParseError::NotJson(_))));
        assert_eq!(parse(body).unwrap_err().field(), None);
    }

    #[test]
    fn a_body_without_message_is_missing_message() {
        assert_eq!(
            parse(br#"{"type": "status-update"}"#),
            Err(ParseError::Missing("message"))
        );
        assert_eq!(parse(b"[]"), Err(ParseError::Missing("message")));
        assert_eq!(
            parse(br#"{"message": "hi"}"#),
            Err(ParseError::WrongType {
                field: "message",
                expected: "object"
            })
        );
    }

    #[test]
    fn the_message_type_must_be_a_string() {
        assert_eq!(
            parse(br#"{"message": {}}"#),
            Err(ParseError::Missing("message.type"))
        );
        assert_eq!(
            parse(br#"{"message": {"type": 3}}"#).unwrap_err().field(),
            Some("message.type")
        );
    }

    #[test]
    fn a_report_without_a_call_id_is_missing_it() {
        let mut v = value(EOCR_FULL);
        v["message"]["call"].as_object_mut().unwrap().remove("id");
        assert_eq!(parse_value(&v), Err(ParseError::Missing("message.call.id")));

        v["message"]["call"]["id"] = json!("");
        assert_eq!(parse_value(&v), Err(ParseError::Missing("message.call.id")));
    }

    #[test]
    fn a_cost_given_as_a_string_is_the_wrong_type() {
        let mut v = value(EOCR_FULL);
        v["message"]["cost"] = json!("0.20");
        assert_eq!(
            parse_value(&v),
            Err(ParseError::WrongType {
                field: "message.cost",
                expected: "number"
            })
        );
    }

    #[test]
    fn wrong_types_name_the_dotted_field() {
        let cases = [
            (
                "/message/startedAt",
                json!(1773308470204_u64),
                "message.startedAt",
            ),
            ("/message/startedAt", json!("ieri"), "message.startedAt"),
            ("/message/call", json!(5), "message.call"),
            (
                "/message/artifact/recording",
                json!("x"),
                "message.artifact.recording",
            ),
            (
                "/message/analysis/successEvaluation",
                json!([]),
                "message.analysis.successEvaluation",
            ),
            ("/message/customer", json!("+39"), "message.customer"),
        ];
        for (pointer, bad, field) in cases {
            let mut v = value(EOCR_FULL);
            *v.pointer_mut(pointer).unwrap() = bad;
            let err = parse_value(&v).unwrap_err();
            assert_eq!(err.field(), Some(field), "{pointer}: {err}");
            assert!(
                matches!(err, ParseError::WrongType { .. }),
                "{pointer}: {err}"
            );
        }
    }

    #[test]
    fn the_same_report_as_a_call_object_gives_the_same_fields() {
        let m = &value(EOCR_FULL)["message"];
        let call = json!({
            "id": m["call"]["id"],
            "type": "inboundPhoneCall",
            "status": "ended",
            "phoneNumberId": m["call"]["phoneNumberId"],
            "assistantId": m["call"]["assistantId"],
            "customer": m["customer"],
            "startedAt": m["startedAt"],
            "endedAt": m["endedAt"],
            "endedReason": m["endedReason"],
            "cost": m["cost"],
            "costs": m["costs"],
            "analysis": m["analysis"],
            "artifact": m["artifact"],
            "createdAt": "2026-03-12T09:41:07.512Z",
            "updatedAt": "2026-03-12T09:45:05.310Z"
        });
        let mut want = full_report();
        // A Call carries only the number's id, not the number itself.
        want.call.called_number = None;
        assert_eq!(report_from_call(&call), Ok(want));
    }

    #[test]
    fn call_object_errors_use_its_own_field_paths() {
        assert_eq!(
            report_from_call(&json!({"status": "ended"})),
            Err(ParseError::Missing("id"))
        );
        assert_eq!(
            report_from_call(&json!({"id": "c1", "cost": "1"})),
            Err(ParseError::WrongType {
                field: "cost",
                expected: "number"
            })
        );
        assert_eq!(
            report_from_call(&json!([])).unwrap_err().field(),
            Some("call")
        );
    }
}
