//! The body of a delivery in each format.
//!
//! - `json`: `{"events":[{"id","type","time","tenant","seq"?,"data"}]}`, `data` being the
//!   audit record or the checkpoint as stored.
//! - `ocsf`: a JSON array of OCSF 1.3 events. Tool calls and denials are API Activity (6003),
//!   failed authentications Authentication (3002, Logon failure); checkpoints and policy
//!   changes, which OCSF has no class for, are Base Events (0) with the event in `unmapped`.
//!   A record's correlation fields go where OCSF has a place for them ([`correlation`]).
//! - `splunk-hec`: HTTP Event Collector events (`{"time","source","sourcetype","fields",
//!   "event"}`) one per line, each `event` being the `json` form of one event; `fields` (HEC's
//!   indexed fields) holds the tenant and the record's correlation fields that are set.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::events::{Event, Kind};
use crate::export::formats::CORRELATION_FIELDS;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    Json,
    Ocsf,
    SplunkHec,
}

const OCSF_VERSION: &str = "1.3.0";

/// The body of a delivery of `events` of `tenant`.
pub fn body(format: Format, tenant: &str, events: &[Event]) -> serde_json::Result<Vec<u8>> {
    match format {
        Format::Json => {
            let events: Vec<Value> = events.iter().map(|e| plain(tenant, e)).collect();
            serde_json::to_vec(&json!({ "events": events }))
        }
        Format::Ocsf => {
            let events: Vec<Value> = events.iter().map(|e| ocsf(tenant, e)).collect();
            serde_json::to_vec(&events)
        }
        Format::SplunkHec => {
            let mut out = Vec::new();
            for event in events {
                serde_json::to_writer(&mut out, &hec(tenant, event))?;
                out.push(b'\n');
            }
            Ok(out)
        }
    }
}

fn rfc3339(ms: i64) -> String {
    acp_record::format_timestamp(ms).unwrap_or_default()
}

fn plain(tenant: &str, event: &Event) -> Value {
    let mut out = json!({
        "id": event.id,
        "type": event.kind.name(),
        "time": rfc3339(event.time_ms),
        "tenant": tenant,
        "data": event.data,
    });
    if let Some(seq) = event.seq {
        out["seq"] = seq.into();
    }
    out
}

fn hec(tenant: &str, event: &Event) -> Value {
    let mut fields = Map::new();
    fields.insert("tenant".into(), tenant.into());
    for name in CORRELATION_FIELDS {
        if let Some(value) = event.data.get(name).filter(|v| v.is_string()) {
            fields.insert(name.into(), value.clone());
        }
    }
    json!({
        "time": event.time_ms as f64 / 1000.0,
        "source": "acp-collector",
        "sourcetype": format!("acp:{}", event.kind.name()),
        "fields": fields,
        "event": plain(tenant, event),
    })
}

/// Where OCSF has a place for a record's correlation fields, in the record classes (API
/// Activity, Authentication): `sourceAddress` is `src_endpoint` (`ip`, and `port` when it has
/// one; an address that is not an IP stays in `unmapped`), `userAgent` is
/// `http_request.user_agent`, `requestId` is `metadata.correlation_uid`, `traceId` and `spanId`
/// are `trace.uid` and `trace.span.uid` (the trace profile; the span is the caller's, from
/// `traceparent`, timed as the call), `protocolVersion` (the MCP revision) is `api.version`.
/// The session goes to the class's session attribute (see [`ocsf`]). Absent or null fields
/// (every field of an earlier record) add nothing.
fn correlation(event: &Event, out: &mut Value) {
    let data = &event.data;
    let text = |field: &str| data.get(field).and_then(Value::as_str);
    if let Some(address) = text("sourceAddress") {
        let endpoint = match address.parse::<std::net::SocketAddr>() {
            Ok(socket) => Some(json!({ "ip": socket.ip().to_string(), "port": socket.port() })),
            Err(_) => address
                .parse::<std::net::IpAddr>()
                .ok()
                .map(|ip| json!({ "ip": ip.to_string() })),
        };
        match endpoint {
            Some(endpoint) => out["src_endpoint"] = endpoint,
            None => out["unmapped"]["sourceAddress"] = address.into(),
        }
    }
    if let Some(agent) = text("userAgent") {
        out["http_request"] = json!({ "user_agent": agent });
    }
    if let Some(request) = text("requestId") {
        out["metadata"]["correlation_uid"] = request.into();
    }
    if let Some(trace) = text("traceId") {
        out["trace"] = json!({ "uid": trace });
        if let Some(span) = text("spanId") {
            let latency = data["latencyMs"].as_f64().unwrap_or(0.0).round() as i64;
            out["trace"]["span"] = json!({
                "uid": span,
                "start_time": event.time_ms,
                "end_time": event.time_ms + latency,
                "operation": text("tool"),
            });
        }
        out["metadata"]["profiles"] = json!(["trace"]);
    }
    if let Some(version) = text("protocolVersion") {
        match event.kind {
            Kind::AuthFailed => out["unmapped"]["protocolVersion"] = version.into(),
            _ => out["api"]["version"] = version.into(),
        }
    }
}

fn ocsf(tenant: &str, event: &Event) -> Value {
    let data = &event.data;
    let text = |field: &str| data.get(field).filter(|v| !v.is_null()).cloned();
    let metadata = json!({
        "version": OCSF_VERSION,
        "uid": event.id,
        "tenant_uid": tenant,
        "product": { "name": "ACP", "vendor_name": "ACP" },
        "event_code": event.kind.name(),
    });
    let user = json!({ "uid": text("sub"), "email_addr": text("email") });
    let status = |ok: bool| if ok { (1, "Success") } else { (2, "Failure") };
    let mut out = match event.kind {
        Kind::ToolCall | Kind::ToolDenied => {
            let (status_id, status) = status(data["result"] == "success");
            let (severity_id, severity) = match event.kind {
                Kind::ToolDenied => (3, "Medium"),
                _ => (1, "Informational"),
            };
            json!({
                "class_uid": 6003, "class_name": "API Activity",
                "category_uid": 6, "category_name": "Application Activity",
                "activity_id": 99, "activity_name": "Tool Call",
                "type_uid": 600399, "type_name": "API Activity: Other",
                "severity_id": severity_id, "severity": severity,
                "status_id": status_id, "status": status,
                "status_code": text("result"), "status_detail": text("reason"),
                "duration": data["latencyMs"].as_f64().map(|ms| ms.round() as i64),
                "actor": {
                    "user": user,
                    "app_name": text("clientType"),
                    "app_uid": text("clientId"),
                    "session": text("sessionId").map(|uid| json!({ "uid": uid })),
                },
                "api": {
                    "operation": text("tool"),
                    "service": { "name": "mcp" },
                    "request": { "uid": event.id },
                },
                "unmapped": unmapped(data, &["scopes", "scopeRequired", "scopeResult",
                    "contentScan", "delegationChain", "input", "inputSummary", "event"]),
            })
        }
        Kind::AuthFailed => json!({
            "class_uid": 3002, "class_name": "Authentication",
            "category_uid": 3, "category_name": "Identity & Access Management",
            "activity_id": 1, "activity_name": "Logon",
            "type_uid": 300201, "type_name": "Authentication: Logon",
            "severity_id": 3, "severity": "Medium",
            "status_id": 2, "status": "Failure",
            "status_code": text("result"), "status_detail": text("reason"),
            "auth_protocol_id": 99, "auth_protocol": "OAuth 2.0 bearer JWT",
            "user": user,
            "session": text("sessionId").map(|uid| json!({ "uid": uid })),
            "actor": { "app_name": text("clientType"), "app_uid": text("clientId") },
            "service": { "name": text("tool") },
            "unmapped": unmapped(data, &["scopes", "delegationChain", "event"]),
        }),
        Kind::AuditCheckpoint | Kind::PolicyChanged => json!({
            "class_uid": 0, "class_name": "Base Event",
            "category_uid": 0, "category_name": "Uncategorized",
            "activity_id": 99, "activity_name": event.kind.name(),
            "type_uid": 99, "type_name": "Base Event: Other",
            "severity_id": 1, "severity": "Informational",
            "status_id": 1, "status": "Success",
            "unmapped": data,
        }),
    };
    out["time"] = event.time_ms.into();
    out["metadata"] = metadata;
    if !matches!(event.kind, Kind::AuditCheckpoint | Kind::PolicyChanged) {
        correlation(event, &mut out);
    }
    out
}

/// The named fields of a record that OCSF has no attribute for, when present.
fn unmapped(data: &Value, fields: &[&str]) -> Value {
    let map: Map<String, Value> = fields
        .iter()
        .filter_map(|f| {
            Some((
                (*f).to_owned(),
                data.get(*f).filter(|v| !v.is_null())?.clone(),
            ))
        })
        .collect();
    Value::Object(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record_event(kind: Kind, result: &str) -> Event {
        let mut data = crate::store::records::tests::sample("r1", "2026-03-15T14:23:07.142Z");
        data["result"] = result.into();
        Event {
            key: 7,
            id: "r1".into(),
            kind,
            time_ms: 1_773_584_587_142,
            seq: Some(7),
            data,
        }
    }

    #[test]
    fn json_carries_id_type_sequence_and_record() {
        let body = body(
            Format::Json,
            "t",
            &[record_event(Kind::ToolCall, "success")],
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        let e = &v["events"][0];
        assert_eq!(
            (&e["id"], &e["type"], &e["seq"]),
            (&json!("r1"), &json!("tool.call"), &json!(7))
        );
        assert_eq!(e["time"], "2026-03-15T14:23:07.142Z");
        assert_eq!(e["data"]["tool"], "salesforce.query");
    }

    #[test]
    fn ocsf_maps_tool_calls_and_failed_logons() {
        let body = body(
            Format::Ocsf,
            "t",
            &[
                record_event(Kind::ToolDenied, "denied"),
                record_event(Kind::AuthFailed, "auth_failed"),
            ],
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        let api = &v[0];
        assert_eq!(
            (&api["class_uid"], &api["type_uid"]),
            (&json!(6003), &json!(600399))
        );
        assert_eq!(
            (&api["status_id"], &api["status_code"]),
            (&json!(2), &json!("denied"))
        );
        assert_eq!(api["api"]["operation"], "salesforce.query");
        assert_eq!(api["actor"]["user"]["email_addr"], "alice@acme.com");
        assert_eq!(api["time"], 1_773_584_587_142i64);
        assert_eq!(api["duration"], 143);
        assert_eq!(api["unmapped"]["scopeResult"], "pass");
        let auth = &v[1];
        assert_eq!(
            (&auth["class_uid"], &auth["type_uid"]),
            (&json!(3002), &json!(300201))
        );
        assert_eq!(auth["user"]["uid"], "auth0|alice");
        assert_eq!(auth["metadata"]["uid"], "r1");
    }

    fn with_correlation(mut event: Event, source: &str) -> Event {
        for (name, value) in [
            ("sessionId", "sess-1"),
            ("requestId", "6f1c0e9a-req"),
            ("traceId", "4bf92f3577b34da6a3ce929d0e0e4736"),
            ("spanId", "00f067aa0ba902b7"),
            ("sourceAddress", source),
            ("userAgent", "claude-desktop/0.9"),
            ("protocolVersion", "2025-06-18"),
        ] {
            event.data[name] = value.into();
        }
        event
    }

    #[test]
    fn ocsf_maps_the_correlation_fields() {
        let events = [
            with_correlation(record_event(Kind::ToolCall, "success"), "[2001:db8::7]:443"),
            with_correlation(record_event(Kind::AuthFailed, "auth_failed"), "10.1.2.3"),
            with_correlation(record_event(Kind::ToolDenied, "denied"), "envoy-peer"),
        ];
        let v: Value = serde_json::from_slice(&body(Format::Ocsf, "t", &events).unwrap()).unwrap();
        let api = &v[0];
        assert_eq!(
            api["src_endpoint"],
            json!({"ip": "2001:db8::7", "port": 443})
        );
        assert_eq!(api["http_request"]["user_agent"], "claude-desktop/0.9");
        assert_eq!(api["metadata"]["correlation_uid"], "6f1c0e9a-req");
        assert_eq!(api["metadata"]["profiles"], json!(["trace"]));
        assert_eq!(api["trace"]["uid"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(
            api["trace"]["span"],
            json!({"uid": "00f067aa0ba902b7", "start_time": 1_773_584_587_142i64,
                   "end_time": 1_773_584_587_285i64, "operation": "salesforce.query"})
        );
        assert_eq!(api["actor"]["session"]["uid"], "sess-1");
        assert_eq!(api["api"]["version"], "2025-06-18");
        assert_eq!(api["api"]["operation"], "salesforce.query", "kept");
        let auth = &v[1];
        assert_eq!(auth["src_endpoint"], json!({"ip": "10.1.2.3"}));
        assert_eq!(auth["session"]["uid"], "sess-1");
        assert_eq!(auth["unmapped"]["protocolVersion"], "2025-06-18");
        assert_eq!(auth["metadata"]["correlation_uid"], "6f1c0e9a-req");
        let not_an_ip = &v[2];
        assert!(not_an_ip.get("src_endpoint").is_none());
        assert_eq!(not_an_ip["unmapped"]["sourceAddress"], "envoy-peer");
    }

    #[test]
    fn an_earlier_record_maps_as_before() {
        let v: Value = serde_json::from_slice(
            &body(
                Format::Ocsf,
                "t",
                &[record_event(Kind::ToolCall, "success")],
            )
            .unwrap(),
        )
        .unwrap();
        let api = &v[0];
        for absent in ["src_endpoint", "http_request", "trace"] {
            assert!(api.get(absent).is_none(), "{absent}: {api}");
        }
        assert!(api["metadata"].get("correlation_uid").is_none());
        assert!(api["api"].get("version").is_none());
        assert_eq!(api["actor"]["session"], Value::Null);
        let hec: Value = serde_json::from_slice(
            &body(
                Format::SplunkHec,
                "t",
                &[record_event(Kind::ToolCall, "success")],
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(hec["fields"], json!({"tenant": "t"}));
    }

    #[test]
    fn splunk_hec_indexes_the_correlation_fields() {
        let mut event = with_correlation(record_event(Kind::ToolCall, "success"), "10.0.0.9:5000");
        event.data["userAgent"] = Value::Null;
        let hec: Value =
            serde_json::from_slice(&body(Format::SplunkHec, "t", &[event]).unwrap()).unwrap();
        assert_eq!(
            hec["fields"],
            json!({"tenant": "t", "sessionId": "sess-1", "requestId": "6f1c0e9a-req",
                   "traceId": "4bf92f3577b34da6a3ce929d0e0e4736", "spanId": "00f067aa0ba902b7",
                   "sourceAddress": "10.0.0.9:5000", "protocolVersion": "2025-06-18"})
        );
        assert_eq!(hec["event"]["data"]["sessionId"], "sess-1");
    }

    #[test]
    fn splunk_hec_is_one_envelope_per_line() {
        let events = [
            record_event(Kind::ToolCall, "success"),
            record_event(Kind::ToolCall, "error"),
        ];
        let body = body(Format::SplunkHec, "t", &events).unwrap();
        let lines: Vec<Value> = body
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1]["sourcetype"], "acp:tool.call");
        assert_eq!(lines[1]["time"], 1_773_584_587.142);
        assert_eq!(lines[1]["event"]["data"]["result"], "error");
    }
}
