//! What a record keeps of a call's input, and how it enters the outbox: tool arguments longer
//! than `audit.maxInputBytes` are stored truncated, and under buffer pressure a record sheds
//! its input so that the who, what and when are kept. Either way the record carries the
//! input's size and SHA-256 (`inputSummary`) and its `input` is `null`.

use acp_record::{AuditRecord, InputOmission, InputSummary};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::outbox::Outbox;

/// What became of a record offered to the outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queued {
    /// Queued with what it had (an input over the limit already truncated).
    Kept,
    /// Queued without its input: the buffer had no room for it.
    Shed,
    /// Not queued: the buffer had no room even without the input (or it had none to shed).
    Dropped,
}

/// The summary of an input whose compact JSON is `text`; a truncated one keeps its first
/// `keep` bytes (cut back to a character boundary).
pub fn summary(text: &str, reason: InputOmission, keep: usize) -> InputSummary {
    let prefix = (reason == InputOmission::Truncated).then(|| {
        let mut end = keep.min(text.len());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text[..end].to_string()
    });
    InputSummary {
        bytes: text.len() as u64,
        sha256: format!("{:x}", Sha256::digest(text.as_bytes())),
        reason,
        prefix,
    }
}

/// A lower bound of the length of `value`'s compact JSON, found without writing it: its
/// strings and keys with their quotes, and the punctuation (escaping only adds).
fn json_len_at_least(value: &Value) -> usize {
    let commas = |n: usize| n.saturating_sub(1);
    match value {
        Value::Null | Value::Bool(_) | Value::Number(_) => 1,
        Value::String(s) => s.len() + 2,
        Value::Array(items) => {
            2 + commas(items.len()) + items.iter().map(json_len_at_least).sum::<usize>()
        }
        Value::Object(fields) => {
            let members: usize = fields
                .iter()
                .map(|(key, value)| key.len() + 3 + json_len_at_least(value))
                .sum();
            2 + commas(fields.len()) + members
        }
    }
}

/// Room for a record's fields other than its input and its input's prefix: the id, time,
/// identity, scan and correlation fields of a call take about 600 bytes.
const RECORD_FIELDS_BYTES: usize = 1024;

/// `record` as compact JSON, written into a buffer sized for it up front (one grown from small
/// would be copied over each time it doubles); `input_len` is what the caller knows of its
/// input's length ([`json_len_at_least`], 0 without an input): a size hint, never a limit.
fn record_json(record: &AuditRecord, input_len: usize) -> Result<Vec<u8>, serde_json::Error> {
    let prefix = record
        .input_summary
        .as_ref()
        .and_then(|s| s.prefix.as_ref())
        .map_or(0, String::len);
    let mut json = Vec::with_capacity(RECORD_FIELDS_BYTES + input_len + prefix);
    serde_json::to_writer(&mut json, record)?;
    Ok(json)
}

/// Serializes `record` into `outbox`: its input truncated beyond `max_input_bytes`; when the
/// buffer (less the room reserved for admitted calls) has no room, shed of its input; else
/// dropped. The record of an admitted call (`auditFailureMode: closed`) is always kept whole.
pub fn queue(
    outbox: &mut Outbox,
    mut record: AuditRecord,
    admitted: bool,
    max_input_bytes: usize,
) -> Result<Queued, serde_json::Error> {
    // The input's text is part of the record's: only a record over the limit can hold one. An
    // input surely over it is serialised alone, never in a record it does not stay in.
    let input_len = record.input.as_ref().map_or(0, json_len_at_least);
    let mut json = if input_len > max_input_bytes {
        None
    } else {
        Some(record_json(&record, input_len)?)
    };
    let mut input_text = None;
    if json
        .as_ref()
        .is_none_or(|json| json.len() > max_input_bytes)
    {
        if let Some(input) = &record.input {
            let text = serde_json::to_string(input)?;
            if text.len() > max_input_bytes {
                record.input = None;
                record.input_summary =
                    Some(summary(&text, InputOmission::Truncated, max_input_bytes));
                json = None;
            }
            input_text = Some(text);
        }
    }
    let json = match json {
        Some(json) => json,
        // Only a record whose input was truncated gets here: it holds none.
        None => record_json(&record, 0)?,
    };
    if admitted {
        outbox.push_admitted(json);
        return Ok(Queued::Kept);
    }
    if outbox.push(json) {
        return Ok(Queued::Kept);
    }
    let shed = match (&record.input, &mut record.input_summary) {
        (_, Some(truncated)) => {
            truncated.reason = InputOmission::BufferPressure;
            truncated.prefix = None;
            true
        }
        (Some(input), None) => {
            let text = match input_text {
                Some(text) => text,
                None => serde_json::to_string(input)?,
            };
            record.input_summary = Some(summary(&text, InputOmission::BufferPressure, 0));
            record.input = None;
            true
        }
        (None, None) => false,
    };
    if shed && outbox.push(record_json(&record, 0)?) {
        return Ok(Queued::Shed);
    }
    Ok(Queued::Dropped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use acp_record::{Event, Outcome};
    use serde_json::{json, Value};
    use std::time::Duration;

    fn record(input: Option<Value>) -> AuditRecord {
        AuditRecord {
            id: "r1".into(),
            event: Event::ToolCall,
            timestamp: "2026-03-15T14:23:07.142Z".into(),
            sub: Some("alice".into()),
            email: None,
            tool: Some("salesforce.query".into()),
            input,
            scopes: vec![],
            scope_required: None,
            scope_result: None,
            content_scan: None,
            result: Outcome::Success,
            reason: None,
            latency_ms: 1.0,
            tenant_id: "org_acme_corp".into(),
            client_type: None,
            client_id: None,
            delegation_chain: None,
            session_id: None,
            request_id: None,
            trace_id: None,
            span_id: None,
            source_address: None,
            user_agent: None,
            protocol_version: None,
            input_summary: None,
        }
    }

    fn sha256_hex(text: &str) -> String {
        format!("{:x}", Sha256::digest(text.as_bytes()))
    }

    /// The records queued in `outbox`, parsed back from its next batch.
    fn queued(outbox: &mut Outbox) -> Vec<AuditRecord> {
        let batch: Value = serde_json::from_slice(outbox.next_batch(0, 1).unwrap()).unwrap();
        batch["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let r: AuditRecord = serde_json::from_value(r.clone()).unwrap();
                r.validate().unwrap();
                r
            })
            .collect()
    }

    #[test]
    fn an_input_over_the_limit_is_stored_truncated_with_its_size_and_hash() {
        let input = json!({"query": "é".repeat(400)});
        let text = input.to_string();
        let mut o = Outbox::new(10, 1 << 20, 10, Duration::from_secs(1));
        assert_eq!(
            queue(&mut o, record(Some(input)), false, 301).unwrap(),
            Queued::Kept
        );
        let r = &queued(&mut o)[0];
        assert_eq!(r.input, None);
        let s = r.input_summary.as_ref().unwrap();
        assert_eq!(s.reason, InputOmission::Truncated);
        assert_eq!(
            (s.bytes, s.sha256.as_str()),
            (text.len() as u64, &*sha256_hex(&text))
        );
        let prefix = s.prefix.as_deref().unwrap();
        assert_eq!(prefix.len(), 300, "cut back to a character boundary");
        assert!(text.starts_with(prefix));
    }

    #[test]
    fn an_input_over_the_limit_only_once_escaped_is_truncated_too() {
        // 100 newlines: 100 bytes of string, 200 once written as JSON.
        let input = json!({"query": "\n".repeat(100)});
        assert!(json_len_at_least(&input) <= 150);
        let text = input.to_string();
        let mut o = Outbox::new(10, 1 << 20, 10, Duration::from_secs(1));
        queue(&mut o, record(Some(input)), false, 150).unwrap();
        let s = queued(&mut o)[0].input_summary.clone().unwrap();
        assert_eq!(
            (s.reason, s.bytes),
            (InputOmission::Truncated, text.len() as u64)
        );
        assert_eq!(s.prefix.as_deref(), Some(&text[..150]));
    }

    #[test]
    fn the_lower_bound_of_a_json_length_never_exceeds_it() {
        let values = [
            json!(null),
            json!([]),
            json!({}),
            json!([1, -2.5e10, true, null, "a\"b", "\u{1}", "é"]),
            json!({"k": {"nested": [{"x": "y"}, [], {}]}, "empty": "", "n": 12345}),
        ];
        for value in values {
            let written = value.to_string().len();
            let bound = json_len_at_least(&value);
            assert!(bound <= written, "{value}: {bound} > {written}");
        }
        // Without escapes or numbers, it is the length.
        let plain = json!({"query": ["a", "bc"], "more": {"x": "y"}});
        assert_eq!(json_len_at_least(&plain), plain.to_string().len());
    }

    #[test]
    fn an_input_within_the_limit_is_kept_whole() {
        let input = json!({"query": "x".repeat(200)});
        let mut o = Outbox::new(10, 1 << 20, 10, Duration::from_secs(1));
        queue(&mut o, record(Some(input.clone())), false, 256).unwrap();
        let r = &queued(&mut o)[0];
        assert_eq!(
            (r.input.as_ref(), r.input_summary.as_ref()),
            (Some(&input), None)
        );
    }

    #[test]
    fn under_pressure_a_record_sheds_its_input_before_it_is_dropped() {
        let small = record(None);
        let small_len = serde_json::to_string(&small).unwrap().len();
        let input = json!({"query": "x".repeat(2000)});
        let text = input.to_string();
        // Room for two records without input, not for one with it.
        let mut o = Outbox::new(10, small_len * 2 + 400, 10, Duration::from_secs(1));
        assert_eq!(
            queue(&mut o, record(Some(input.clone())), false, 1 << 20).unwrap(),
            Queued::Shed
        );
        assert_eq!(
            queue(&mut o, record(Some(input.clone())), false, 1000).unwrap(),
            Queued::Shed,
            "a truncated input is shed as well"
        );
        assert_eq!(
            queue(&mut o, record(Some(input)), false, 1 << 20).unwrap(),
            Queued::Dropped
        );
        assert_eq!(
            queue(&mut o, small, false, 1 << 20).unwrap(),
            Queued::Dropped
        );
        for r in queued(&mut o) {
            let s = r.input_summary.unwrap();
            assert_eq!(r.input, None);
            assert_eq!(
                (s.bytes, s.sha256, s.reason, s.prefix),
                (
                    text.len() as u64,
                    sha256_hex(&text),
                    InputOmission::BufferPressure,
                    None
                )
            );
        }
    }

    #[test]
    fn a_record_of_an_admitted_call_is_kept_whole_whatever_the_pressure() {
        let input = json!({"query": "x".repeat(2000)});
        let mut o = Outbox::new(1, 1024, 10, Duration::from_secs(1));
        assert_eq!(
            queue(&mut o, record(Some(input.clone())), true, 1 << 20).unwrap(),
            Queued::Kept
        );
        assert_eq!(queued(&mut o)[0].input, Some(input));
    }
}
