//! The ACP audit record, defined once for the Envoy filter (which writes it) and the collector
//! (which validates, stores and exports it).
//!
//! The JSON form carries the fields of the product reference exactly (`timestamp`, `sub`,
//! `email`, `tool`, `input`, `scopes`, `scopeRequired`, `scopeResult`, `contentScan`, `result`,
//! `latencyMs`, `tenantId`, `clientType`, `delegationChain`) plus `id`, `event`, `reason` and
//! `clientId`. Unknown fields are rejected so that a record never silently loses data.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Path of the collector's ingest endpoint, where the filter posts [`IngestBatch`]es.
pub const INGEST_PATH: &str = "/v1/records";
/// Where the filter posts the policy document of each configuration it loads, in the same
/// batch shape (`{"records": [{"hash": ..., "policy": {...}}]}`).
pub const POLICY_PATH: &str = "/v1/policies";

/// One audit record: one per `tools/call` (allowed or denied) and one per failed authentication.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuditRecord {
    /// Unique record id (UUIDv7); the collector stores each id once.
    pub id: String,
    pub event: Event,
    /// When the request started: RFC 3339, UTC, millisecond precision (`2026-03-15T14:23:07.142Z`).
    pub timestamp: String,
    /// Subject of the verified token; `None` when authentication failed.
    pub sub: Option<String>,
    pub email: Option<String>,
    /// Tool name (`params.name` of a `tools/call`), when the request named one.
    pub tool: Option<String>,
    /// Tool arguments (`params.arguments`), when the request carried them.
    pub input: Option<Value>,
    /// Scopes the verified token granted (after the role-to-scope map).
    pub scopes: Vec<String>,
    /// Scopes the tool requires; `None` when authorization was not evaluated.
    pub scope_required: Option<Vec<String>>,
    pub scope_result: Option<ScopeResult>,
    /// What content inspection found; `None` when no content was inspected.
    pub content_scan: Option<ContentScan>,
    pub result: Outcome,
    /// Machine-readable cause of a non-success result (`expired`, `insufficient_scope`, ...).
    pub reason: Option<String>,
    /// Request start to response end, in milliseconds (sub-millisecond precision).
    pub latency_ms: f64,
    pub tenant_id: String,
    /// Client type mapped from the token's client id; `None` when the id is not mapped.
    pub client_type: Option<String>,
    /// The token's client id (`azp` or `client_id`).
    pub client_id: Option<String>,
    /// RFC 8693 `act` chain, outermost (current) actor first; `None` when not delegated.
    pub delegation_chain: Option<Vec<Value>>,
    /// The `Mcp-Session-Id` header of a handshake-era session, as the client sent it.
    #[serde(default)]
    pub session_id: Option<String>,
    /// Envoy's `x-request-id`: joins the record to its access-log line. A correlation id, as
    /// sent or generated, not identity.
    #[serde(default)]
    pub request_id: Option<String>,
    /// Trace id of the W3C `traceparent` header (32 lowercase hex digits).
    #[serde(default)]
    pub trace_id: Option<String>,
    /// Parent (span) id of the W3C `traceparent` header (16 lowercase hex digits).
    #[serde(default)]
    pub span_id: Option<String>,
    /// The downstream address as Envoy resolved it (`source.address`, after its XFF settings).
    #[serde(default)]
    pub source_address: Option<String>,
    /// The raw `User-Agent` header, bounded in length; `clientType` is what the token's client
    /// id maps to.
    #[serde(default)]
    pub user_agent: Option<String>,
    /// The MCP revision of the call (`MCP-Protocol-Version`).
    #[serde(default)]
    pub protocol_version: Option<String>,
    /// Set when the tool arguments were not stored whole: `input` is then `null`, and this
    /// says how large they were, their SHA-256, and why they are missing (with their first
    /// bytes when truncated). `None` when `input` is the arguments as sent (or there were none).
    #[serde(default)]
    pub input_summary: Option<InputSummary>,
}

/// What is kept of tool arguments that are not stored in the record's `input`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InputSummary {
    /// Length of the arguments' compact JSON (the text `input` would have held), in bytes.
    pub bytes: u64,
    /// SHA-256 of that text, 64 lowercase hex digits.
    pub sha256: String,
    pub reason: InputOmission,
    /// `truncated`: the first bytes of that text (at most the configured size, cut at a
    /// character boundary): text, not JSON that parses. Absent when the input was shed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

/// Why a record's `input` is `null` although the call had arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputOmission {
    /// Larger than the filter's `audit.maxInputBytes`: only its first bytes are kept.
    Truncated,
    /// The worker's audit buffer was full: the input was shed so that the record could be kept.
    BufferPressure,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    #[serde(rename = "tool.call")]
    ToolCall,
    #[serde(rename = "tool.denied")]
    ToolDenied,
    #[serde(rename = "auth.failed")]
    AuthFailed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The upstream answered the call without an HTTP or JSON-RPC error.
    Success,
    /// The upstream answered with an HTTP error status or a JSON-RPC error.
    Error,
    /// The filter refused the call (scopes, unknown tool, malformed request).
    Denied,
    /// Content scanning blocked the call's input or output.
    Blocked,
    /// The caller was over its rate limit.
    RateLimited,
    /// The caller's token was missing or invalid.
    AuthFailed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScopeResult {
    Pass,
    Fail,
}

/// Content inspection summary. Only present when content was really inspected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContentScan {
    pub pii_detected: bool,
    /// Risk in `[0, 1]`.
    pub risk_score: f64,
    pub input_scanned: bool,
    pub output_scanned: bool,
    pub findings: Vec<Finding>,
}

/// One content-scan hit: what was found where, and what was done. Never the value itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Finding {
    /// Detector: `ssn`, `payment_card`, `email`, `phone`, `iban`, `secret`, `ssrf`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `input` (the tool arguments) or `output` (the tool's answer).
    pub location: String,
    /// JSON path of the string, e.g. `$.query` or `$.result.content[0].text`.
    pub path: String,
    /// `block`, `redact` or `log`.
    pub action: String,
    /// What was normalised before the match (e.g. `fullwidth_digits`), never the value;
    /// absent when the string matched as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub normalized: Option<Vec<String>>,
}

/// The body the filter posts to [`INGEST_PATH`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestBatch {
    pub records: Vec<Value>,
}

impl AuditRecord {
    /// Checks what serde cannot: non-empty identifiers, a well-formed timestamp, a finite
    /// non-negative latency, and that the event agrees with the result.
    pub fn validate(&self) -> Result<(), String> {
        if self.id.is_empty() || self.id.len() > 128 {
            return Err("id: must be 1 to 128 characters".into());
        }
        if self.tenant_id.is_empty() {
            return Err("tenantId: must not be empty".into());
        }
        if !is_rfc3339_utc_millis(&self.timestamp) {
            return Err(format!(
                "timestamp: {:?} is not RFC 3339 UTC with milliseconds (YYYY-MM-DDTHH:MM:SS.mmmZ)",
                self.timestamp
            ));
        }
        if !self.latency_ms.is_finite() || self.latency_ms < 0.0 {
            return Err("latencyMs: must be a finite, non-negative number".into());
        }
        let consistent = matches!(
            (self.event, self.result),
            (Event::ToolCall, Outcome::Success | Outcome::Error)
                | (
                    Event::ToolDenied,
                    Outcome::Denied | Outcome::Blocked | Outcome::RateLimited
                )
                | (Event::AuthFailed, Outcome::AuthFailed)
        );
        if !consistent {
            return Err(format!(
                "result: {:?} does not go with event {:?}",
                self.result, self.event
            ));
        }
        if let Some(summary) = &self.input_summary {
            summary.validate(self.input.is_some())?;
        }
        Ok(())
    }

    /// Milliseconds since the Unix epoch of [`AuditRecord::timestamp`] (valid after `validate`).
    pub fn timestamp_millis(&self) -> Option<i64> {
        parse_rfc3339_utc_millis(&self.timestamp)
    }
}

impl InputSummary {
    fn validate(&self, input_present: bool) -> Result<(), String> {
        if input_present {
            return Err("inputSummary: input must be null when inputSummary is set".into());
        }
        if self.sha256.len() != 64
            || !self
                .sha256
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err("inputSummary.sha256: must be 64 lowercase hex digits".into());
        }
        match (self.reason, &self.prefix) {
            (InputOmission::Truncated, Some(prefix)) if (prefix.len() as u64) < self.bytes => {
                Ok(())
            }
            (InputOmission::Truncated, _) => Err(
                "inputSummary.prefix: a truncated input keeps a prefix shorter than its bytes"
                    .into(),
            ),
            (InputOmission::BufferPressure, None) => Ok(()),
            (InputOmission::BufferPressure, Some(_)) => {
                Err("inputSummary.prefix: a shed input keeps no prefix".into())
            }
        }
    }
}

/// Formats milliseconds since the Unix epoch the way every record carries its timestamp.
pub fn format_timestamp(unix_millis: i64) -> Option<String> {
    let t = chrono::DateTime::from_timestamp_millis(unix_millis)?;
    Some(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

fn is_rfc3339_utc_millis(s: &str) -> bool {
    parse_rfc3339_utc_millis(s).is_some()
}

/// Parses exactly `YYYY-MM-DDTHH:MM:SS.mmmZ`, the one form [`format_timestamp`] writes.
fn parse_rfc3339_utc_millis(s: &str) -> Option<i64> {
    let t = chrono::DateTime::parse_from_rfc3339(s).ok()?;
    let millis = t.timestamp_millis();
    (format_timestamp(millis)? == s).then_some(millis)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> Value {
        json!({
            "id": "01890a5d-ac96-774b-bcce-b302099a8057",
            "event": "tool.call",
            "timestamp": "2026-03-15T14:23:07.142Z",
            "sub": "auth0|8f3a2b1c9d4e5f6a",
            "email": "alice@acme.com",
            "tool": "salesforce.query",
            "input": {"query": "SELECT Name FROM Opportunity"},
            "scopes": ["salesforce:read", "salesforce:write"],
            "scopeRequired": ["salesforce:read"],
            "scopeResult": "pass",
            "contentScan": null,
            "result": "success",
            "reason": null,
            "latencyMs": 142.0,
            "tenantId": "org_acme_corp",
            "clientType": "claude-desktop",
            "clientId": "claude-desktop-app",
            "delegationChain": null,
            "sessionId": null,
            "requestId": null,
            "traceId": null,
            "spanId": null,
            "sourceAddress": null,
            "userAgent": null,
            "protocolVersion": null,
            "inputSummary": null
        })
    }

    #[test]
    fn reference_record_round_trips() {
        let rec: AuditRecord = serde_json::from_value(sample()).unwrap();
        rec.validate().unwrap();
        assert_eq!(rec.timestamp_millis(), Some(1_773_584_587_142));
        assert_eq!(serde_json::to_value(&rec).unwrap(), sample());
    }

    #[test]
    fn record_written_before_the_correlation_and_input_summary_fields_still_parses() {
        let mut v = sample();
        for field in [
            "sessionId",
            "requestId",
            "traceId",
            "spanId",
            "sourceAddress",
            "userAgent",
            "protocolVersion",
            "inputSummary",
        ] {
            v.as_object_mut().unwrap().remove(field);
        }
        let rec: AuditRecord = serde_json::from_value(v).unwrap();
        rec.validate().unwrap();
        assert_eq!(rec.session_id, None);
    }

    #[test]
    fn an_omitted_input_is_summarised_unambiguously() {
        let sha = "ab".repeat(32);
        let mut v = sample();
        v["input"] = Value::Null;
        v["inputSummary"] = json!({"bytes": 70000, "sha256": sha, "reason": "truncated", "prefix": "{\"query\":\"Opp"});
        let rec: AuditRecord = serde_json::from_value(v.clone()).unwrap();
        rec.validate().unwrap();
        assert_eq!(serde_json::to_value(&rec).unwrap(), v);

        v["inputSummary"] = json!({"bytes": 70000, "sha256": sha, "reason": "buffer_pressure"});
        let rec: AuditRecord = serde_json::from_value(v.clone()).unwrap();
        rec.validate().unwrap();
        assert_eq!(serde_json::to_value(&rec).unwrap(), v);

        let refused = |summary: Value, input: Value| {
            let mut v = sample();
            v["input"] = input;
            v["inputSummary"] = summary;
            let rec: AuditRecord = serde_json::from_value(v).unwrap();
            rec.validate().unwrap_err()
        };
        let shed = json!({"bytes": 9, "sha256": sha, "reason": "buffer_pressure"});
        assert!(refused(shed.clone(), json!({"q": 1})).starts_with("inputSummary:"));
        let mut upper = shed.clone();
        upper["sha256"] = json!("AB".repeat(32));
        assert!(refused(upper, Value::Null).starts_with("inputSummary.sha256"));
        let mut with_prefix = shed;
        with_prefix["prefix"] = json!("{");
        assert!(refused(with_prefix, Value::Null).starts_with("inputSummary.prefix"));
        let no_prefix = json!({"bytes": 9, "sha256": sha, "reason": "truncated"});
        assert!(refused(no_prefix, Value::Null).starts_with("inputSummary.prefix"));
    }

    #[test]
    fn unknown_field_is_rejected() {
        let mut v = sample();
        v["extra"] = json!(1);
        let err = serde_json::from_value::<AuditRecord>(v).unwrap_err();
        assert!(err.to_string().contains("extra"), "{err}");
    }

    #[test]
    fn validation_names_the_field() {
        let mut v = sample();
        v["timestamp"] = json!("2026-02-30T00:00:00.000Z");
        let rec: AuditRecord = serde_json::from_value(v).unwrap();
        assert!(rec.validate().unwrap_err().starts_with("timestamp"));

        let mut v = sample();
        v["result"] = json!("denied");
        let rec: AuditRecord = serde_json::from_value(v).unwrap();
        assert!(rec.validate().unwrap_err().starts_with("result"));
    }

    #[test]
    fn epoch_and_leap_days() {
        assert_eq!(
            parse_rfc3339_utc_millis("1970-01-01T00:00:00.000Z"),
            Some(0)
        );
        assert_eq!(format_timestamp(0).unwrap(), "1970-01-01T00:00:00.000Z");
        assert!(parse_rfc3339_utc_millis("2026-03-15T14:23:07.142+00:00").is_none());
        assert!(parse_rfc3339_utc_millis("2024-02-29T23:59:59.999Z").is_some());
        assert!(parse_rfc3339_utc_millis("2023-02-29T00:00:00.000Z").is_none());
        assert!(parse_rfc3339_utc_millis("2026-03-15T14:23:07Z").is_none());
    }
}
