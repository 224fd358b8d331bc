//! The HTTP headers MCP 2026-07-28 mirrors the body into (`MCP-Protocol-Version`, `Mcp-Method`,
//! `Mcp-Name`, `Mcp-Param-*`), and whether they agree with it. Proxies and gateways may route,
//! rate-limit or authorize on these headers while the server executes the body; any
//! disagreement would be a bypass, so the filter refuses it (JSON-RPC `-32020`).
//!
//! Header values that would not survive an HTTP field arrive base64-wrapped as
//! `=?base64?<payload>?=` and are compared decoded.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::Value;

use super::request::{McpRequest, Message};

/// Prefix of the headers a `tools/call` mirrors its `x-mcp-header`-annotated arguments into.
const PARAM_PREFIX: &str = "mcp-param-";

/// The MCP headers of one request, as sent (values not yet decoded).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct McpHeaders {
    pub method: Option<String>,
    pub name: Option<String>,
    pub protocol_version: Option<String>,
    /// Every `Mcp-Param-*` header: lowercase name and value, in order, duplicates kept.
    pub params: Vec<(String, String)>,
}

impl McpHeaders {
    /// Picks the MCP headers out of a request's headers (any case).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> McpHeaders {
        let mut headers = McpHeaders::default();
        for (name, value) in pairs {
            let name = name.to_ascii_lowercase();
            match name.as_str() {
                "mcp-method" => headers.method = Some(value.to_string()),
                "mcp-name" => headers.name = Some(value.to_string()),
                "mcp-protocol-version" => headers.protocol_version = Some(value.to_string()),
                _ if name.starts_with(PARAM_PREFIX) => {
                    headers.params.push((name, value.to_string()))
                }
                _ => {}
            }
        }
        headers
    }
}

/// A header value with its `=?base64?...?=` wrapping undone; `None` when the wrapping is
/// malformed (bad or non-canonical base64, not UTF-8), so it never matches a body value.
fn decode(value: &str) -> Option<String> {
    let Some(payload) = value
        .strip_prefix("=?base64?")
        .and_then(|v| v.strip_suffix("?="))
    else {
        return Some(value.to_string());
    };
    let bytes = STANDARD.decode(payload).ok()?;
    if STANDARD.encode(&bytes) != payload {
        return None;
    }
    String::from_utf8(bytes).ok()
}

/// Checks the `Mcp-Method` and `Mcp-Name` headers against the body, then the other headers
/// MCP mirrors the body into (`check`). Deciding on a header while the server
/// executes the body (or the reverse) would be an authorization bypass, so any disagreement is
/// refused; a batch cannot be described by one header and is refused too.
pub fn check_headers(req: &McpRequest, headers: &McpHeaders) -> Result<(), String> {
    if headers.method.is_none() && headers.name.is_none() {
        return check(req, headers);
    }
    let (false, [only]) = (req.batch, req.messages.as_slice()) else {
        return Err("Mcp-Method/Mcp-Name headers cannot describe a batch".into());
    };
    if let Some(header) = headers.method.as_deref() {
        if only.method() != Some(header) {
            return Err(format!(
                "Mcp-Method header {header:?} does not match the body's method {:?}",
                only.method().unwrap_or_default()
            ));
        }
    }
    if let Some(header) = headers.name.as_deref() {
        match &req.envelope.name {
            Some(Value::String(name)) if decode(header).as_ref() == Some(name) => {}
            Some(Value::String(name)) => {
                return Err(format!(
                    "Mcp-Name header {header:?} does not match the body's name {name:?}"
                ));
            }
            Some(_) => return Err("Mcp-Name header given but the body names nothing".into()),
            None => {}
        }
    }
    check(req, headers)
}

/// Checks `MCP-Protocol-Version` against `params._meta` and every `Mcp-Param-*` header against
/// the arguments of the `tools/call` it describes (`Mcp-Method` / `Mcp-Name` are checked by
/// `check_headers`).
///
/// The filter does not hold the tools' input schemas, so it cannot tell which argument an
/// `Mcp-Param-*` header names; it checks that the header carries a value the body carries (a
/// scalar argument at some object depth, rendered as the SDKs render it). The MCP server checks
/// the exact binding against the schema.
fn check(req: &McpRequest, headers: &McpHeaders) -> Result<(), String> {
    if let Some(body_version) = req.envelope.protocol_version.as_ref() {
        if headers
            .protocol_version
            .as_deref()
            .map(Value::from)
            .as_ref()
            != Some(body_version)
        {
            return Err(format!(
                "MCP-Protocol-Version header {:?} does not match params._meta's protocol version {body_version}",
                headers.protocol_version.as_deref().unwrap_or_default()
            ));
        }
    }
    if headers.params.is_empty() {
        return Ok(());
    }
    let arguments = match (req.batch, req.messages.as_slice()) {
        (false, [Message::ToolCall { arguments, .. }]) => arguments.as_ref(),
        _ => return Err("Mcp-Param-* headers given but the body is not one tools/call".into()),
    };
    let mut seen = Vec::new();
    for (name, value) in &headers.params {
        if seen.contains(&name) {
            return Err(format!("header {name} given more than once"));
        }
        seen.push(name);
        let carried = decode(value).is_some_and(|v| arguments.is_some_and(|a| carries(a, &v)));
        if !carried {
            return Err(format!(
                "header {name} carries a value no argument of the body has"
            ));
        }
    }
    Ok(())
}

/// Whether `value` (an object of arguments) holds, at any depth of nested objects, a scalar
/// that renders as `header`: strings as they are, booleans as `true`/`false`, numbers in
/// decimal (an integer also matches `42.0`).
fn carries(value: &Value, header: &str) -> bool {
    match value {
        Value::Object(fields) => fields.values().any(|v| carries(v, header)),
        Value::String(s) => s == header,
        Value::Bool(b) => header == if *b { "true" } else { "false" },
        Value::Number(n) => {
            n.to_string() == header
                || n.as_i64().is_some_and(|i| {
                    header.split_once('.').is_some_and(|(whole, fraction)| {
                        whole.parse::<i64>() == Ok(i)
                            && !fraction.is_empty()
                            && fraction.bytes().all(|b| b == b'0')
                    })
                })
        }
        Value::Array(_) | Value::Null => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mcp::request::parse;
    use serde_json::json;

    const VERSION_KEY: &str = "io.modelcontextprotocol/protocolVersion";

    fn modern_call(arguments: Value) -> McpRequest {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
            "name": "files.read", "arguments": arguments,
            "_meta": {VERSION_KEY: "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}}});
        parse(body.to_string().as_bytes()).unwrap()
    }

    fn headers(version: Option<&str>, params: &[(&str, &str)]) -> McpHeaders {
        let mut pairs = vec![("Mcp-Method", "tools/call"), ("Mcp-Name", "files.read")];
        pairs.extend(version.map(|v| ("MCP-Protocol-Version", v)));
        pairs.extend(params.iter().copied());
        McpHeaders::from_pairs(pairs)
    }

    #[test]
    fn picks_the_mcp_headers_in_any_case() {
        let h = McpHeaders::from_pairs([
            ("MCP-PROTOCOL-VERSION", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("Mcp-Param-Region", "eu"),
            ("accept", "*/*"),
        ]);
        assert_eq!(h.protocol_version.as_deref(), Some("2026-07-28"));
        assert_eq!(h.method.as_deref(), Some("tools/call"));
        assert_eq!(
            h.params,
            [("mcp-param-region".to_string(), "eu".to_string())]
        );
    }

    #[test]
    fn decodes_the_base64_sentinel_and_refuses_malformed_ones() {
        assert_eq!(decode("plain").as_deref(), Some("plain"));
        assert_eq!(decode("=?base64?IGjDqSA=?=").as_deref(), Some(" hé "));
        assert_eq!(decode("=?base64?not base64?="), None);
        assert_eq!(
            decode("=?base64?IGjDqSB=?="),
            None,
            "non-canonical trailing bits"
        );
        assert_eq!(decode("=?base64?/w==?="), None, "not UTF-8");
    }

    #[test]
    fn protocol_version_header_must_match_the_envelope() {
        let call = modern_call(json!({}));
        assert!(check(&call, &headers(Some("2026-07-28"), &[])).is_ok());
        assert!(check(&call, &headers(Some("2025-11-25"), &[])).is_err());
        assert!(
            check(&call, &headers(None, &[])).is_err(),
            "the envelope names a version, the header must too"
        );
        // Handshake-era requests carry the header but no envelope.
        let legacy = parse(br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#).unwrap();
        assert!(check(
            &legacy,
            &McpHeaders::from_pairs([("mcp-protocol-version", "2025-06-18")])
        )
        .is_ok());
    }

    #[test]
    fn param_headers_must_carry_values_of_the_body() {
        let call = modern_call(
            json!({"path": "plans/q2.md", "opts": {"limit": 42, "raw": true}, "note": " hé "}),
        );
        let v = Some("2026-07-28");
        for ok in [
            ("Mcp-Param-Path", "plans/q2.md"),
            ("Mcp-Param-Limit", "42"),
            ("Mcp-Param-Limit", "42.00"),
            ("Mcp-Param-Raw", "true"),
            ("Mcp-Param-Note", "=?base64?IGjDqSA=?="),
        ] {
            assert!(check(&call, &headers(v, &[ok])).is_ok(), "{ok:?}");
        }
        for bad in [
            ("Mcp-Param-Path", "secrets.txt"),
            ("Mcp-Param-Limit", "42.5"),
            ("Mcp-Param-Raw", "false"),
            ("Mcp-Param-Note", "hé"),
            ("Mcp-Param-Note", "=?base64?broken?="),
        ] {
            assert!(check(&call, &headers(v, &[bad])).is_err(), "{bad:?}");
        }
        let twice = headers(
            v,
            &[
                ("Mcp-Param-Path", "plans/q2.md"),
                ("mcp-param-path", "plans/q2.md"),
            ],
        );
        assert!(check(&call, &twice).unwrap_err().contains("more than once"));
        assert!(check(
            &modern_call(Value::Null),
            &headers(v, &[("Mcp-Param-Path", "x")])
        )
        .is_err());
    }

    #[test]
    fn param_headers_only_describe_one_tools_call() {
        let list = parse(br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#).unwrap();
        assert!(check(&list, &McpHeaders::from_pairs([("Mcp-Param-Path", "x")])).is_err());
        let batch = parse(br#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{"p":"x"}}}]"#)
            .unwrap();
        assert!(check(&batch, &McpHeaders::from_pairs([("Mcp-Param-P", "x")])).is_err());
    }

    fn p(v: Value) -> McpRequest {
        parse(v.to_string().as_bytes()).unwrap()
    }

    fn h(method: Option<&str>, name: Option<&str>) -> McpHeaders {
        McpHeaders {
            method: method.map(Into::into),
            name: name.map(Into::into),
            ..McpHeaders::default()
        }
    }

    #[test]
    fn headers_must_match_the_body() {
        let call =
            p(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "a"}}));

        assert!(check_headers(&call, &h(None, None)).is_ok());
        assert!(check_headers(&call, &h(Some("tools/call"), Some("a"))).is_ok());
        assert!(check_headers(&call, &h(Some("tools/list"), None)).is_err());
        assert!(check_headers(&call, &h(Some("tools/call"), Some("b"))).is_err());
        let list = p(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}));
        assert!(check_headers(&list, &h(Some("tools/list"), None)).is_ok());
        let batch = p(json!([{"jsonrpc": "2.0", "id": 1, "method": "tools/list"}]));
        assert!(check_headers(&batch, &h(Some("tools/list"), None)).is_err());
    }

    #[test]
    fn mcp_name_mirrors_the_name_bearing_parameter_of_each_method() {
        let prompt = p(
            json!({"jsonrpc": "2.0", "id": 1, "method": "prompts/get", "params": {"name": "greet"}}),
        );
        assert!(check_headers(&prompt, &h(Some("prompts/get"), Some("greet"))).is_ok());
        assert!(check_headers(&prompt, &h(Some("prompts/get"), Some("other"))).is_err());
        let read = p(
            json!({"jsonrpc": "2.0", "id": 1, "method": "resources/read", "params": {"uri": "file:///a b"}}),
        );
        assert!(check_headers(
            &read,
            &h(Some("resources/read"), Some("=?base64?ZmlsZTovLy9hIGI=?="))
        )
        .is_ok());
        assert!(check_headers(&read, &h(Some("resources/read"), Some("file:///c"))).is_err());
        let call =
            p(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": 5}}));

        assert!(check_headers(&call, &h(Some("tools/call"), Some("5"))).is_err());
        let unnamed = p(json!({"jsonrpc": "2.0", "id": 1, "method": "prompts/get", "params": {}}));
        assert!(check_headers(&unnamed, &h(Some("prompts/get"), Some("greet"))).is_err());
        let discover =
            p(json!({"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {}}));

        assert!(check_headers(&discover, &h(Some("server/discover"), None)).is_ok());
        assert!(check_headers(&discover, &h(Some("server/discover"), Some("ignored"))).is_ok());
    }
}
