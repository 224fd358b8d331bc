//! What happens to the upstream's answer before the caller sees it: the results of forwarded
//! tool calls are scanned (a `block` hit replaces the result with a JSON-RPC error, `redact`
//! masks the value), and `tools/list` results lose the tools the caller may not call. Every other
//! message of an answer to tool calls (notifications, server requests, a response under another
//! id) is scanned too, so nothing in such an answer reaches the caller unscanned.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};

use super::request::codes;
use crate::config::Config;
use crate::mcp::response::{id_key, outcome, rewrite, CallOutcome};
use crate::scan::content::{self, Action, Hit, Rules};
use crate::scan::Detector;

/// Which responses of the answer to look at, by request id.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub tool_calls: BTreeSet<String>,
    pub tools_lists: BTreeSet<String>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.tool_calls.is_empty() && self.tools_lists.is_empty()
    }
}

/// What scanning one call's answer found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OutputScan {
    pub hits: Vec<Hit>,
    /// Set when a `block` hit replaced the answer with a JSON-RPC error.
    pub blocked: Option<Detector>,
}

#[derive(Debug, Default)]
pub struct Processed {
    /// The answer to send instead, when anything changed.
    pub body: Option<Vec<u8>>,
    pub scans: BTreeMap<String, OutputScan>,
    pub hidden_tools: usize,
    /// The outcome of every response in the answer as it goes on (after the changes above).
    pub outcomes: BTreeMap<String, CallOutcome>,
}

pub fn process(
    cfg: &Config,
    scopes: &[String],
    plan: &Plan,
    content_type: Option<&str>,
    body: &[u8],
) -> Processed {
    let mut scans: BTreeMap<String, OutputScan> = BTreeMap::new();
    let mut hidden_tools = 0;
    let mut other_hits = Vec::new();
    let mut outcomes = BTreeMap::new();
    let mut edit = |message: &mut Map<String, Value>| -> bool {
        let changed = match message.get("id").map(id_key) {
            Some(id) if plan.tool_calls.contains(&id) => {
                let (scan, changed) = scan_result(cfg, message);
                scans.insert(id, scan);
                changed
            }
            Some(id) if plan.tools_lists.contains(&id) => {
                let hidden = if cfg.filter_tools_list {
                    hide_tools(cfg, scopes, message)
                } else {
                    0
                };
                hidden_tools += hidden;
                hidden > 0
            }
            _ if !plan.tool_calls.is_empty() => scan_other(cfg, message, &mut other_hits),
            _ => false,
        };
        outcomes.extend(outcome(message));
        changed
    };
    let body = rewrite(content_type, body, &mut edit);
    // Which call another message belongs to is unknown: its findings go to every call answered.
    for id in plan.tool_calls.iter().filter(|_| !other_hits.is_empty()) {
        scans
            .entry(id.clone())
            .or_default()
            .hits
            .extend(other_hits.iter().cloned());
    }
    Processed {
        body,
        scans,
        hidden_tools,
        outcomes,
    }
}

fn scan_result(cfg: &Config, message: &mut Map<String, Value>) -> (OutputScan, bool) {
    let Some(result) = message.get("result") else {
        return (OutputScan::default(), false);
    };
    let scanned = content::scan(result, &cfg.scanning.output, "$.result");
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
    (
        OutputScan {
            hits: scanned.hits,
            blocked,
        },
        changed,
    )
}

/// Scans a message other than the calls' responses as a whole. Only a response can be replaced
/// by an error, so here `block` hits are masked like `redact` ones (and recorded as `redact`).
fn scan_other(cfg: &Config, message: &mut Map<String, Value>, hits: &mut Vec<Hit>) -> bool {
    let rules = Rules {
        actions: cfg
            .scanning
            .output
            .actions
            .iter()
            .map(|(d, a)| {
                (
                    *d,
                    if *a == Action::Block {
                        Action::Redact
                    } else {
                        *a
                    },
                )
            })
            .collect(),
        ssrf_allow: cfg.scanning.output.ssrf_allow.clone(),
    };
    let original = Value::Object(std::mem::take(message));
    let scanned = content::scan(&original, &rules, "$");
    hits.extend(scanned.hits);
    let changed = scanned.redacted.is_some();
    if let Value::Object(out) = scanned.redacted.unwrap_or(original) {
        *message = out;
    }
    changed
}

/// Removes from a `tools/list` result the tools the caller lacks scopes for; returns how many.
fn hide_tools(cfg: &Config, scopes: &[String], message: &mut Map<String, Value>) -> usize {
    let Some(Value::Array(tools)) = message.get_mut("result").and_then(|r| r.get_mut("tools"))
    else {
        return 0;
    };
    let before = tools.len();
    tools.retain(|tool| {
        let name = tool.get("name").and_then(Value::as_str).unwrap_or_default();
        matches!(
            cfg.tools.check(name, scopes),
            crate::policy::scopes::ScopeCheck::Pass { .. }
        )
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
        Plan {
            tool_calls: BTreeSet::new(),
            tools_lists: BTreeSet::from([id.to_string()]),
        }
    }

    #[test]
    fn tools_list_keeps_only_what_the_caller_may_call() {
        let body = list_answer().to_string();
        let out = process(
            &config(),
            &["salesforce:read".to_string()],
            &plan_lists("3"),
            Some("application/json"),
            body.as_bytes(),
        );
        assert_eq!(out.hidden_tools, 2);
        let v: Value = serde_json::from_slice(&out.body.unwrap()).unwrap();
        assert_eq!(
            v["result"]["tools"],
            json!([{"name": "salesforce.query"}, {"name": "ping"}])
        );
    }

    #[test]
    fn tools_list_in_sse_and_unrelated_answers_are_untouched() {
        let body = format!("event: message\ndata: {}\n\n", list_answer());
        let out = process(
            &config(),
            &[],
            &plan_lists("3"),
            Some("text/event-stream"),
            body.as_bytes(),
        );
        assert_eq!(out.hidden_tools, 3);
        let text = String::from_utf8(out.body.unwrap()).unwrap();
        assert!(text.starts_with("event: message\ndata: {"), "{text}");
        assert!(text.ends_with("\n\n"));
        assert!(text.contains(r#""tools":[{"name":"ping"}]"#), "{text}");

        let other = process(
            &config(),
            &[],
            &plan_lists("9"),
            Some("application/json"),
            list_answer().to_string().as_bytes(),
        );
        assert_eq!((other.body, other.hidden_tools), (None, 0));
    }

    #[test]
    fn every_message_of_an_answer_to_a_tool_call_is_scanned() {
        let plan = Plan {
            tool_calls: BTreeSet::from(["1".to_string()]),
            tools_lists: BTreeSet::new(),
        };
        let body = [
            json!({"jsonrpc": "2.0", "method": "notifications/message", "params": {"data": "ssn 536-22-1987"}}),
            json!({"jsonrpc": "2.0", "id": "1", "result": {"text": "card 4111 1111 1111 1111"}}),
            json!({"jsonrpc": "2.0", "id": 1, "result": {"text": "fine, mail alice@acme.com"}}),
        ]
        .iter()
        .map(|m| format!("event: message\ndata: {m}\n\n"))
        .collect::<String>();
        let out = process(
            &config(),
            &[],
            &plan,
            Some("text/event-stream"),
            body.as_bytes(),
        );
        let text = String::from_utf8(out.body.unwrap()).unwrap();
        assert!(
            !text.contains("536-22-1987") && !text.contains("4111"),
            "{text}"
        );
        assert!(text.contains("alice@acme.com"), "log hits stay: {text}");
        let found: Vec<(&str, &str, &str)> = out.scans["1"]
            .hits
            .iter()
            .map(|h| (h.detector.as_str(), h.path.as_str(), h.action.as_str()))
            .collect();
        assert_eq!(
            found,
            [
                ("email", "$.result.text", "log"),
                ("ssn", "$.params.data", "redact"),
                ("payment_card", "$.result.text", "redact")
            ]
        );
        assert_eq!(out.scans["1"].blocked, None);
    }
}
