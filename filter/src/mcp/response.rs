//! The upstream's answer to forwarded tool calls: JSON-RPC responses found in a JSON body or in
//! the events of a `text/event-stream` body, reduced to one outcome per request id.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallOutcome {
    Success,
    /// A JSON-RPC error response, with its code.
    RpcError(i64),
    /// A result with `isError: true`: the tool ran and reported a failure.
    ToolError,
}

impl CallOutcome {
    pub fn reason(&self) -> Option<String> {
        match self {
            CallOutcome::Success => None,
            CallOutcome::RpcError(code) => Some(format!("jsonrpc_error_{code}")),
            CallOutcome::ToolError => Some("tool_error".into()),
        }
    }
}

/// Canonical form of a JSON-RPC id, to match responses to requests.
pub fn id_key(id: &Value) -> String {
    id.to_string()
}

/// Outcomes by request id of every JSON-RPC response in `body`.
pub fn outcomes(content_type: Option<&str>, body: &[u8]) -> BTreeMap<String, CallOutcome> {
    let mut found = BTreeMap::new();
    if is_sse(content_type) {
        for data in sse_data(body) {
            if let Ok(value) = serde_json::from_str::<Value>(&data) {
                collect(&value, &mut found);
            }
        }
    } else if let Ok(value) = serde_json::from_slice::<Value>(body) {
        collect(&value, &mut found);
    }
    found
}

fn collect(value: &Value, found: &mut BTreeMap<String, CallOutcome>) {
    match value {
        Value::Array(items) => items.iter().for_each(|item| collect(item, found)),
        Value::Object(obj) => found.extend(outcome(obj)),
        _ => {}
    }
}

/// The outcome of one JSON-RPC message, with its request id; `None` unless it is a response.
pub fn outcome(message: &Map<String, Value>) -> Option<(String, CallOutcome)> {
    let id = message.get("id")?;
    let outcome = if let Some(error) = message.get("error") {
        CallOutcome::RpcError(error.get("code").and_then(Value::as_i64).unwrap_or(0))
    } else if message
        .get("result")?
        .get("isError")
        .and_then(Value::as_bool)
        == Some(true)
    {
        CallOutcome::ToolError
    } else {
        CallOutcome::Success
    };
    Some((id_key(id), outcome))
}

/// Rewrites the JSON-RPC messages of `body` (JSON, or each event of `text/event-stream`):
/// `edit` gets every message object and says whether it changed it. Returns the new body when
/// anything changed; events and messages that did not change keep their exact bytes' meaning.
pub fn rewrite(
    content_type: Option<&str>,
    body: &[u8],
    edit: &mut dyn FnMut(&mut Map<String, Value>) -> bool,
) -> Option<Vec<u8>> {
    if !is_sse(content_type) {
        let mut value: Value = serde_json::from_slice(body).ok()?;
        return edit_value(&mut value, edit).then(|| value.to_string().into_bytes());
    }
    let text = std::str::from_utf8(body).ok()?;
    let mut changed = false;
    let mut out = String::with_capacity(text.len());
    for event in sse_events(text) {
        let data: Vec<&str> = event
            .lines()
            .filter_map(|l| {
                l.strip_prefix("data:")
                    .map(|d| d.strip_prefix(' ').unwrap_or(d))
            })
            .collect();
        let edited = serde_json::from_str::<Value>(&data.join("\n"))
            .ok()
            .and_then(|mut v| edit_value(&mut v, edit).then_some(v));
        match edited {
            Some(value) => {
                changed = true;
                for line in event
                    .lines()
                    .filter(|l| !l.is_empty() && !l.starts_with("data:"))
                {
                    out.push_str(line);
                    out.push('\n');
                }
                out.push_str("data: ");
                out.push_str(&value.to_string());
                out.push_str("\n\n");
            }
            None => out.push_str(event),
        }
    }
    changed.then(|| out.into_bytes())
}

/// The events of an SSE text, each with the blank line that ends it. Lines may end in LF or
/// CRLF (the SSE specification allows both): splitting on `\n\n` alone would read a CRLF
/// stream as one event, whose joined data is not JSON, and leave its messages unscanned.
fn sse_events(text: &str) -> Vec<&str> {
    let mut events = Vec::new();
    let (mut start, mut line_start) = (0, 0);
    for (i, _) in text.match_indices('\n') {
        if matches!(&text[line_start..i], "" | "\r") {
            events.push(&text[start..=i]);
            start = i + 1;
        }
        line_start = i + 1;
    }
    if start < text.len() {
        events.push(&text[start..]);
    }
    events
}

fn edit_value(value: &mut Value, edit: &mut dyn FnMut(&mut Map<String, Value>) -> bool) -> bool {
    match value {
        Value::Array(items) => items
            .iter_mut()
            .fold(false, |changed, item| edit_value(item, edit) | changed),
        Value::Object(obj) => edit(obj),
        _ => false,
    }
}

fn is_sse(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|ct| ct.trim_start().starts_with("text/event-stream"))
}

/// The `data` of each complete event of a `text/event-stream` body (data lines joined by `\n`,
/// as the SSE specification says). An unterminated last event is included: the stream ended.
fn sse_data(body: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(body);
    let mut events = Vec::new();
    let mut data: Option<String> = None;
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            events.extend(data.take());
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        if field == "data" {
            let value = value.strip_prefix(' ').unwrap_or(value);
            match data.as_mut() {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => data = Some(value.to_string()),
            }
        }
    }
    events.extend(data);
    events
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_body_single_and_batch() {
        let body = json!({"jsonrpc": "2.0", "id": 1, "result": {"content": []}}).to_string();
        assert_eq!(
            outcomes(Some("application/json"), body.as_bytes()),
            BTreeMap::from([("1".into(), CallOutcome::Success)])
        );
        let body = json!([
            {"jsonrpc": "2.0", "id": "a", "error": {"code": -32602, "message": "bad"}},
            {"jsonrpc": "2.0", "id": 2, "result": {"isError": true, "content": []}}
        ])
        .to_string();
        let got = outcomes(None, body.as_bytes());
        assert_eq!(got["\"a\""], CallOutcome::RpcError(-32602));
        assert_eq!(got["2"], CallOutcome::ToolError);
        assert_eq!(
            CallOutcome::RpcError(-32602).reason().unwrap(),
            "jsonrpc_error_-32602"
        );
    }

    #[test]
    fn sse_events_with_multiline_data_and_crlf() {
        let body = "event: message\r\nid: 1\r\ndata: {\"jsonrpc\":\"2.0\",\r\ndata: \"method\":\"notifications/progress\"}\r\n\r\n\
                    : comment\n\ndata: {\"jsonrpc\":\"2.0\",\"id\":5,\"result\":{}}\n";
        let got = outcomes(Some("text/event-stream; charset=utf-8"), body.as_bytes());
        assert_eq!(got, BTreeMap::from([("5".into(), CallOutcome::Success)]));
    }

    #[test]
    fn rewrite_sees_every_event_whatever_the_line_ends() {
        let event =
            |id: u32| format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{"text":"secret"}}}}"#);
        for eol in ["\n", "\r\n"] {
            let body = format!(
                "event: message{eol}data: {}{eol}{eol}event: message{eol}data: {}{eol}{eol}",
                event(1),
                event(2)
            );
            let mut seen = Vec::new();
            let out = rewrite(Some("text/event-stream"), body.as_bytes(), &mut |m| {
                seen.push(m["id"].clone());
                m.insert("result".into(), Value::Null);
                true
            });
            assert_eq!(seen, [1, 2], "{eol:?}");
            let text = String::from_utf8(out.unwrap()).unwrap();
            assert!(!text.contains("secret"), "{text}");
        }
    }

    #[test]
    fn garbage_yields_nothing() {
        assert!(outcomes(Some("application/json"), b"<html>").is_empty());
        assert!(outcomes(Some("text/event-stream"), b"data: nope\n\n").is_empty());
    }
}
