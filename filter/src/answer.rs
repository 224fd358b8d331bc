//! What happens to the upstream's answer before the caller sees it: the results of forwarded
//! tool calls are scanned (a `block` hit replaces the result with a JSON-RPC error, `redact`
//! masks the value), and `tools/list` results lose the tools the caller may not call.

use std::collections::{HashMap, HashSet};

use serde_json::{json, Map, Value};

use crate::audit::OutputScan;
use crate::config::Config;
use crate::content_scan;
use crate::decision::codes;
use crate::mcp_response::{id_key, rewrite};

/// Which responses of the answer to look at, by request id.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub tool_calls: HashSet<String>,
    pub tools_lists: HashSet<String>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.tool_calls.is_empty() && self.tools_lists.is_empty()
    }
}

#[derive(Debug, Default)]
pub struct Processed {
    /// The answer to send instead, when anything changed.
    pub body: Option<Vec<u8>>,
    pub scans: HashMap<String, OutputScan>,
    pub hidden_tools: usize,
}

pub fn process(cfg: &Config, scopes: &[String], plan: &Plan, content_type: Option<&str>, body: &[u8]) -> Processed {
    let mut scans = HashMap::new();
    let mut hidden_tools = 0;
    let mut edit = |message: &mut Map<String, Value>| -> bool {
        let Some(id) = message.get("id").map(id_key) else { return false };
        if plan.tool_calls.contains(&id) {
            let (scan, changed) = scan_result(cfg, message);
            scans.insert(id, scan);
            changed
        } else if plan.tools_lists.contains(&id) && cfg.filter_tools_list {
            let hidden = hide_tools(cfg, scopes, message);
            hidden_tools += hidden;
            hidden > 0
        } else {
            false
        }
    };
    let body = rewrite(content_type, body, &mut edit);
    Processed { body, scans, hidden_tools }
}

fn scan_result(cfg: &Config, message: &mut Map<String, Value>) -> (OutputScan, bool) {
    let Some(result) = message.get("result") else { return (OutputScan::default(), false) };
    let scanned = content_scan::scan(result, &cfg.scanning.output, "$.result");
    let blocked = scanned.blocked_by();
    let changed = if let Some(detector) = blocked {
        message.remove("result");
        message.insert(
            "error".into(),
            json!({"code": codes::FORBIDDEN,
                   "message": format!("Blocked: the tool's answer contains {} (content policy)", detector.as_str()),
                   "data": {"reason": format!("blocked_output_{}", detector.as_str())}}),
        );
        true
    } else if let Some(redacted) = scanned.redacted {
        message.insert("result".into(), redacted);
        true
    } else {
        false
    };
    (OutputScan { hits: scanned.hits, blocked }, changed)
}

/// Removes from a `tools/list` result the tools the caller lacks scopes for; returns how many.
fn hide_tools(cfg: &Config, scopes: &[String], message: &mut Map<String, Value>) -> usize {
    let Some(Value::Array(tools)) = message.get_mut("result").and_then(|r| r.get_mut("tools")) else {
        return 0;
    };
    let before = tools.len();
    tools.retain(|tool| {
        let name = tool.get("name").and_then(Value::as_str).unwrap_or_default();
        matches!(cfg.tools.check(name, scopes), crate::policy::ScopeCheck::Pass { .. })
    });
    before - tools.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse, tests::minimal};

    fn config() -> Config {
        let mut v = minimal();
        v["tools"] = json!({"salesforce.query": ["salesforce:read"], "github.*": ["github:write"], "ping": []});
        parse(v.to_string().as_bytes()).unwrap()
    }

    fn list_answer() -> Value {
        json!({"jsonrpc": "2.0", "id": 3, "result": {"tools": [
            {"name": "salesforce.query"}, {"name": "github.create_issue"}, {"name": "ping"}, {"name": "unlisted"}
        ]}})
    }

    fn plan_lists(id: &str) -> Plan {
        Plan { tool_calls: HashSet::new(), tools_lists: HashSet::from([id.to_string()]) }
    }

    #[test]
    fn tools_list_keeps_only_what_the_caller_may_call() {
        let body = list_answer().to_string();
        let out = process(&config(), &["salesforce:read".to_string()], &plan_lists("3"), Some("application/json"), body.as_bytes());
        assert_eq!(out.hidden_tools, 2);
        let v: Value = serde_json::from_slice(&out.body.unwrap()).unwrap();
        assert_eq!(v["result"]["tools"], json!([{"name": "salesforce.query"}, {"name": "ping"}]));
    }

    #[test]
    fn tools_list_in_sse_and_unrelated_answers_are_untouched() {
        let body = format!("event: message\ndata: {}\n\n", list_answer());
        let out = process(&config(), &[], &plan_lists("3"), Some("text/event-stream"), body.as_bytes());
        assert_eq!(out.hidden_tools, 3);
        let text = String::from_utf8(out.body.unwrap()).unwrap();
        assert!(text.starts_with("event: message\ndata: {"), "{text}");
        assert!(text.ends_with("\n\n"));
        assert!(text.contains(r#""tools":[{"name":"ping"}]"#), "{text}");

        let other = process(&config(), &[], &plan_lists("9"), Some("application/json"), list_answer().to_string().as_bytes());
        assert_eq!((other.body, other.hidden_tools), (None, 0));
    }
}
