//! The MCP request as the filter sees it: a JSON-RPC 2.0 message or batch, with each
//! `tools/call` picked out (tool = `params.name`, input = `params.arguments`), and what MCP
//! mirrors of it into headers (checked in [`super::headers`]).

use serde_json::Value;

use super::strict_json::{self, StrictError};

#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    ToolCall {
        id: Option<Value>,
        name: String,
        arguments: Option<Value>,
    },
    /// A `tools/call` without a string `params.name`.
    BadToolCall { id: Option<Value> },
    /// Any other request, a notification, or a response the client sends back to the server.
    Other {
        id: Option<Value>,
        method: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct McpRequest {
    pub batch: bool,
    pub messages: Vec<Message>,
    /// What MCP 2026-07-28 mirrors into headers, for a single message (empty for a batch).
    pub envelope: Envelope,
}

/// Of a single message: the protocol version of its `params._meta` envelope (MCP 2026-07-28)
/// and, for the methods that have one, the value of the name-bearing parameter the `Mcp-Name`
/// header mirrors (`name` of `tools/call` and `prompts/get`, `uri` of `resources/read`; `Null`
/// when absent).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Envelope {
    pub protocol_version: Option<Value>,
    pub name: Option<Value>,
}

const PROTOCOL_VERSION_META_KEY: &str = "io.modelcontextprotocol/protocolVersion";

impl Envelope {
    fn of(message: &Value) -> Envelope {
        let params = message.get("params");
        let name_key = match message.get("method").and_then(Value::as_str) {
            Some("tools/call" | "prompts/get") => Some("name"),
            Some("resources/read") => Some("uri"),
            _ => None,
        };
        Envelope {
            protocol_version: params
                .and_then(|p| p.get("_meta")?.get(PROTOCOL_VERSION_META_KEY))
                .cloned(),
            name: name_key.map(|key| {
                params
                    .and_then(|p| p.get(key))
                    .cloned()
                    .unwrap_or(Value::Null)
            }),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// Not JSON at all (JSON-RPC -32700).
    NotJson,
    /// JSON, but not a JSON-RPC 2.0 message or batch (JSON-RPC -32600).
    InvalidRequest(String),
    /// JSON naming a key twice in one object: the MCP server might read the other one
    /// (JSON-RPC -32600).
    DuplicateKey(String),
}

impl Message {
    pub fn id(&self) -> Option<&Value> {
        match self {
            Message::ToolCall { id, .. }
            | Message::BadToolCall { id }
            | Message::Other { id, .. } => id.as_ref(),
        }
    }

    pub fn method(&self) -> Option<&str> {
        match self {
            Message::ToolCall { .. } | Message::BadToolCall { .. } => Some("tools/call"),
            Message::Other { method, .. } => method.as_deref(),
        }
    }
}

pub fn parse(body: &[u8]) -> Result<McpRequest, ParseError> {
    let value = strict_json::parse(body).map_err(|e| match e {
        StrictError::NotJson => ParseError::NotJson,
        StrictError::DuplicateKey(key) => ParseError::DuplicateKey(key),
    })?;
    match value {
        Value::Array(items) if items.is_empty() => {
            Err(ParseError::InvalidRequest("empty batch".into()))
        }
        Value::Array(items) => Ok(McpRequest {
            batch: true,
            envelope: Envelope::default(),
            messages: items
                .into_iter()
                .enumerate()
                .map(|(i, item)| {
                    message(item).map_err(|e| ParseError::InvalidRequest(format!("[{i}]: {e}")))
                })
                .collect::<Result<_, _>>()?,
        }),
        other => Ok(McpRequest {
            batch: false,
            envelope: Envelope::of(&other),
            messages: vec![message(other).map_err(ParseError::InvalidRequest)?],
        }),
    }
}

fn message(value: Value) -> Result<Message, String> {
    let Value::Object(mut obj) = value else {
        return Err("a JSON-RPC message must be an object".into());
    };
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err("`jsonrpc` must be \"2.0\"".into());
    }
    let id = obj.remove("id");
    if id
        .as_ref()
        .is_some_and(|id| !matches!(id, Value::String(_) | Value::Number(_) | Value::Null))
    {
        return Err("`id` must be a string, a number or null".into());
    }
    let method = match obj.remove("method") {
        None => None,
        Some(Value::String(m)) => Some(m),
        Some(_) => return Err("`method` must be a string".into()),
    };
    if method.as_deref() != Some("tools/call") {
        return Ok(Message::Other { id, method });
    }
    let mut params = match obj.remove("params") {
        Some(Value::Object(p)) => p,
        _ => return Ok(Message::BadToolCall { id }),
    };
    match params.remove("name") {
        Some(Value::String(name)) => Ok(Message::ToolCall {
            id,
            name,
            arguments: params.remove("arguments"),
        }),
        _ => Ok(Message::BadToolCall { id }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(v: Value) -> Result<McpRequest, ParseError> {
        parse(v.to_string().as_bytes())
    }

    #[test]
    fn single_tool_call() {
        let r = p(json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                         "params": {"name": "salesforce.query", "arguments": {"q": 1}}}))
        .unwrap();
        assert!(!r.batch);
        assert_eq!(
            r.messages,
            [Message::ToolCall {
                id: Some(json!(7)),
                name: "salesforce.query".into(),
                arguments: Some(json!({"q": 1}))
            }]
        );
    }

    #[test]
    fn batch_with_notification_other_methods_and_bad_calls() {
        let r = p(json!([
            {"jsonrpc": "2.0", "method": "notifications/initialized"},
            {"jsonrpc": "2.0", "id": "a", "method": "tools/list"},
            {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": 3}},
            {"jsonrpc": "2.0", "id": 3, "result": {}}
        ]))
        .unwrap();
        assert!(r.batch);
        assert_eq!(
            r.messages[0],
            Message::Other {
                id: None,
                method: Some("notifications/initialized".into())
            }
        );
        assert_eq!(r.messages[1].id(), Some(&json!("a")));
        assert_eq!(r.messages[2], Message::BadToolCall { id: Some(json!(2)) });
        assert_eq!(
            r.messages[3],
            Message::Other {
                id: Some(json!(3)),
                method: None
            }
        );
    }

    #[test]
    fn invalid_bodies() {
        assert_eq!(parse(b"{nope"), Err(ParseError::NotJson));
        assert_eq!(parse(b""), Err(ParseError::NotJson));
        for bad in [
            json!([]),
            json!(1),
            json!({"id": 1, "method": "x"}),
            json!([{"jsonrpc": "2.0", "method": 5}]),
            json!({"jsonrpc": "2.0", "id": {}, "method": "x"}),
        ] {
            assert!(
                matches!(p(bad.clone()), Err(ParseError::InvalidRequest(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn duplicate_keys_are_refused_not_resolved() {
        let body =
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","name":"b"}}"#;
        assert_eq!(parse(body), Err(ParseError::DuplicateKey("name".into())));
        let nested = br#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{"q":"x","q":"y"}}}]"#;
        assert_eq!(parse(nested), Err(ParseError::DuplicateKey("q".into())));
    }

    #[test]
    fn hostile_bodies_are_parse_errors() {
        assert_eq!(
            parse("[".repeat(100_000).as_bytes()),
            Err(ParseError::NotJson)
        );
        let deep_arguments = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"a","arguments":{}1{}}}}}"#,
            r#"{"a":"#.repeat(200),
            "}".repeat(200)
        );
        assert_eq!(parse(deep_arguments.as_bytes()), Err(ParseError::NotJson));
        assert_eq!(
            parse(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/\xff\"}"),
            Err(ParseError::NotJson)
        );
        let big = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"a","arguments":{{"s":"{}"}}}}}}"#,
            "x".repeat(1 << 20)
        );
        assert!(matches!(
            &parse(big.as_bytes()).unwrap().messages[0],
            Message::ToolCall { .. }
        ));
    }

    #[test]
    fn the_envelope_of_a_single_message_is_kept() {
        let r = p(
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "a",
            "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}}}),
        )
        .unwrap();
        assert_eq!(
            r.envelope,
            Envelope {
                protocol_version: Some(json!("2026-07-28")),
                name: Some(json!("a"))
            }
        );
        let batch = p(
            json!([{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "a"}}]),
        )
        .unwrap();
        assert_eq!(batch.envelope, Envelope::default());
    }
}
