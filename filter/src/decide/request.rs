//! The decision for one MCP request, as a plain function: given the authentication result, the
//! MCP headers and the body, either forward the request or answer it here (HTTP status,
//! `WWW-Authenticate`, JSON-RPC error), and say which audit records the request produces.

use acp_record::{Event, Outcome, ScopeResult};
use serde_json::{json, Value};

use crate::auth::failure::AuthFailure;
use crate::auth::identity::Identity;
use crate::config::Config;
use crate::mcp::headers::{check_headers, McpHeaders};
use crate::mcp::request::{self, McpRequest, Message, ParseError};
use crate::policy::scopes::ScopeCheck;
use crate::scan::content::{self, Hit};
use crate::scan::settings::Oversized;

/// JSON-RPC error codes the filter answers with.
pub mod codes {
    pub const PARSE_ERROR: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const INVALID_PARAMS: i64 = -32602;
    pub const UNAUTHORIZED: i64 = -32001;
    pub const FORBIDDEN: i64 = -32003;
    /// MCP: the `Mcp-Method`/`Mcp-Name` headers disagree with the body.
    pub const HEADER_MISMATCH: i64 = -32020;
    pub const RATE_LIMITED: i64 = -32029;
    /// The call's audit record cannot be buffered (`auditFailureMode: closed`).
    pub const AUDIT_UNAVAILABLE: i64 = -32050;
}

/// Takes one call from the caller's rate-limit budget for `tool`; `Err(seconds)` to wait.
pub type Limiter<'a> = dyn FnMut(&str) -> Result<(), u64> + 'a;

pub struct Request<'a> {
    pub auth: Result<&'a Identity, AuthFailure>,
    /// The MCP headers the body is mirrored into (`Mcp-Method`, `Mcp-Name`, ...).
    pub headers: &'a McpHeaders,
    /// `None` when the request has no body (e.g. the GET that opens an SSE stream).
    pub body: Option<&'a [u8]>,
    /// The request's `Content-Encoding` header.
    pub content_encoding: Option<&'a str>,
}

#[derive(Debug, PartialEq)]
pub struct Verdict {
    /// `None`: forward the request upstream.
    pub reply: Option<Reply>,
    /// The body to forward instead of the original, when scanning redacted tool arguments.
    pub rewritten_body: Option<String>,
    /// Ids of forwarded `tools/list` requests, whose answers are filtered by permission.
    pub tools_lists: Vec<Value>,
    /// One entry per audit record this request produces.
    pub audits: Vec<CallAudit>,
}

#[derive(Debug, PartialEq)]
pub struct Reply {
    pub status: u32,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

/// What is known of one audited call once the request is decided.
#[derive(Debug, Clone, PartialEq)]
pub struct CallAudit {
    pub rpc_id: Option<Value>,
    pub tool: Option<String>,
    pub input: Option<Value>,
    pub scope_required: Option<Vec<String>>,
    pub scope_result: Option<ScopeResult>,
    /// `None`: the call was forwarded and its result comes from the upstream's response.
    pub refusal: Option<Refusal>,
    /// Findings in the input, when it was scanned (`None`: not scanned).
    pub input_hits: Option<Vec<Hit>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub event: Event,
    pub result: Outcome,
    pub reason: String,
    status: u32,
    code: i64,
    message: String,
    headers: Vec<(&'static str, String)>,
}

impl Refusal {
    fn denied(reason: &str, status: u32, code: i64, message: String) -> Self {
        Refusal {
            event: Event::ToolDenied,
            result: Outcome::Denied,
            reason: reason.into(),
            status,
            code,
            message,
            headers: Vec::new(),
        }
    }

    fn with_result(mut self, result: Outcome) -> Self {
        self.result = result;
        self
    }
}

pub fn decide(cfg: &Config, req: &Request, limiter: &mut Limiter) -> Verdict {
    let mut verdict = decide_unmasked(cfg, req, limiter);
    let scannable = req
        .body
        .is_some_and(|b| b.len() <= cfg.scanning.max_scan_bytes);
    for audit in verdict.audits.iter_mut().filter(|a| a.input_hits.is_none()) {
        audit.input = mask_for_record(cfg, audit.input.take(), scannable);
    }
    verdict
}

/// The input of a call refused before the content policy ran, as its record keeps it: with
/// every detected value masked all the same (the audit trail never holds one), and not at all
/// when it was too large to scan. Its `contentScan` stays null: no policy decision was made.
fn mask_for_record(cfg: &Config, input: Option<Value>, scannable: bool) -> Option<Value> {
    let input = input?;
    scannable.then(|| {
        content::scan(&input, &cfg.scanning.input, "$")
            .masked
            .unwrap_or(input)
    })
}

fn decide_unmasked(cfg: &Config, req: &Request, limiter: &mut Limiter) -> Verdict {
    let parsed = req.body.map(request::parse);
    let identity = match req.auth {
        Ok(identity) => identity,
        Err(failure) => {
            return auth_failed(cfg, failure, parsed.as_ref().and_then(|p| p.as_ref().ok()))
        }
    };
    if let Some(refusal) = encoded_body(req) {
        return refuse(vec![unnamed(refusal)], &[], false);
    }
    let mut mcp = match parsed {
        None => return forward(Vec::new()),
        Some(Ok(mcp)) => mcp,
        Some(Err(ParseError::NotJson)) => {
            let r = Refusal::denied(
                "parse_error",
                400,
                codes::PARSE_ERROR,
                "Parse error: the body is not JSON".into(),
            );
            return refuse(vec![unnamed(r)], &[], false);
        }
        Some(Err(ParseError::InvalidRequest(why))) => {
            let r = Refusal::denied(
                "invalid_request",
                400,
                codes::INVALID_REQUEST,
                format!("Invalid request: {why}"),
            );
            return refuse(vec![unnamed(r)], &[], false);
        }
        Some(Err(ParseError::DuplicateKey(key))) => {
            let r = Refusal::denied(
                "duplicate_key",
                400,
                codes::INVALID_REQUEST,
                format!("Invalid request: the key {key:?} appears twice in one object"),
            );
            return refuse(vec![unnamed(r)], &[], false);
        }
    };
    if mcp.batch && mcp.messages.len() > cfg.max_batch_size {
        let r = Refusal::denied(
            "batch_too_large",
            400,
            codes::INVALID_REQUEST,
            format!(
                "Invalid request: a batch of {} messages is over the limit of {}",
                mcp.messages.len(),
                cfg.max_batch_size
            ),
        );
        return refuse(vec![unnamed(r)], &[], false);
    }
    if let Err(why) = check_headers(&mcp, req.headers) {
        let r = Refusal::denied(
            "header_mismatch",
            400,
            codes::HEADER_MISMATCH,
            format!("Header mismatch: {why}"),
        );
        let mut audit = first_tool_call(&mcp).unwrap_or_else(|| unnamed(r.clone()));
        audit.refusal = Some(r);
        return refuse(vec![audit], &mcp.messages, mcp.batch);
    }
    let scan_inputs = req
        .body
        .is_some_and(|b| b.len() <= cfg.scanning.max_scan_bytes);
    let mut redactions = Vec::new();
    let mut audits = Vec::new();
    for (index, message) in mcp.messages.iter_mut().enumerate() {
        if let Some((audit, redacted)) = authorize(cfg, identity, message, scan_inputs, limiter) {
            if let Some(arguments) = redacted {
                redactions.push((index, arguments));
            }
            audits.push(audit);
        }
    }
    if audits.iter().any(|a| a.refusal.is_some()) {
        return refuse(audits, &mcp.messages, mcp.batch);
    }
    let mut verdict = forward(audits);
    verdict.tools_lists = mcp
        .messages
        .iter()
        .filter_map(|m| match m {
            Message::Other {
                id: Some(id),
                method: Some(method),
            } if method == "tools/list" => Some(id.clone()),
            _ => None,
        })
        .collect();
    if !redactions.is_empty() {
        verdict.rewritten_body = req
            .body
            .and_then(|body| rewrite_arguments(body, mcp.batch, redactions));
    }
    verdict
}

/// The records of a request Envoy answered itself before its body was complete (413: the body
/// is larger than the listener's buffer). The filter never saw the whole body, so no tool is
/// named; a failed authentication is recorded as such.
pub fn unread_body(cfg: &Config, auth: Result<&Identity, AuthFailure>) -> Vec<CallAudit> {
    match auth {
        Err(failure) => auth_failed(cfg, failure, None).audits,
        Ok(_) => vec![unnamed(Refusal::denied(
            "request_too_large",
            413,
            codes::INVALID_REQUEST,
            "Request larger than the listener's buffer".into(),
        ))],
    }
}

/// A compressed request body cannot be scanned or decided: it is refused (415), never passed on
/// unread. `identity` is no encoding.
fn encoded_body(req: &Request) -> Option<Refusal> {
    req.body?;
    let encoding = content_encoding(req.content_encoding)?;
    let mut r = Refusal::denied(
        "unsupported_content_encoding",
        415,
        codes::INVALID_REQUEST,
        format!("Unsupported Content-Encoding {encoding:?}: send the body uncompressed"),
    );
    r.headers.push(("accept-encoding", "identity".into()));
    Some(r)
}

/// The coding a `Content-Encoding` header value names, unless it is none or `identity`.
pub fn content_encoding(header: Option<&str>) -> Option<&str> {
    header
        .map(str::trim)
        .filter(|e| !e.is_empty() && !e.eq_ignore_ascii_case("identity"))
}

fn forward(audits: Vec<CallAudit>) -> Verdict {
    Verdict {
        reply: None,
        rewritten_body: None,
        tools_lists: Vec::new(),
        audits,
    }
}

/// The request body with the arguments of the given messages replaced by their redacted form.
fn rewrite_arguments(body: &[u8], batch: bool, redactions: Vec<(usize, Value)>) -> Option<String> {
    let mut value: Value = serde_json::from_slice(body).ok()?;
    for (index, arguments) in redactions {
        let message = if batch {
            value.get_mut(index)?
        } else {
            &mut value
        };
        *message.get_mut("params")?.get_mut("arguments")? = arguments;
    }
    Some(value.to_string())
}

/// The audit entry of a tool call, with its scope, rate-limit and input-scan decisions, and
/// the redacted arguments to forward when scanning masked some; `None` for other messages. A
/// scanned call's arguments move into its record.
fn authorize(
    cfg: &Config,
    identity: &Identity,
    message: &mut Message,
    scan_input: bool,
    limiter: &mut Limiter,
) -> Option<(CallAudit, Option<Value>)> {
    match message {
        Message::ToolCall {
            id,
            name,
            arguments,
        } => {
            let mut audit = CallAudit {
                rpc_id: id.clone(),
                tool: Some(name.clone()),
                // Set where the call ends: as sent when refused before the scan, else masked.
                input: None,
                scope_required: None,
                scope_result: Some(ScopeResult::Fail),
                refusal: None,
                input_hits: None,
            };
            let refused = |mut audit: CallAudit, refusal: Refusal| {
                audit.input = arguments.clone();
                audit.refusal = Some(refusal);
                Some((audit, None))
            };
            match cfg.tools.check(name, &identity.scopes) {
                ScopeCheck::Pass { required } => {
                    audit.scope_required = Some(required);
                    audit.scope_result = Some(ScopeResult::Pass);
                }
                ScopeCheck::Missing { required, missing } => {
                    let mut r = Refusal::denied(
                        "insufficient_scope",
                        403,
                        codes::FORBIDDEN,
                        format!(
                            "Insufficient scope: tool {name} requires {}",
                            missing.join(" ")
                        ),
                    );
                    r.headers.push((
                        "www-authenticate",
                        format!(
                            "Bearer error=\"insufficient_scope\", scope=\"{}\"",
                            required.join(" ")
                        ),
                    ));
                    audit.scope_required = Some(required);
                    return refused(audit, r);
                }
                ScopeCheck::UnknownTool => {
                    let r = Refusal::denied(
                        "unknown_tool",
                        403,
                        codes::FORBIDDEN,
                        format!("Tool {name} is not permitted: no policy names it"),
                    );
                    return refused(audit, r);
                }
            }
            if let Err(wait) = limiter(name) {
                let mut r = Refusal::denied(
                    "rate_limited",
                    429,
                    codes::RATE_LIMITED,
                    format!("Rate limited: retry in {wait} s"),
                )
                .with_result(Outcome::RateLimited);
                r.headers.push(("retry-after", wait.to_string()));
                return refused(audit, r);
            }
            let Some(arguments) = arguments else {
                audit.input_hits = Some(Vec::new());
                return Some((audit, None));
            };
            if !scan_input {
                audit.input_hits = None;
                if cfg.scanning.oversized == Oversized::Reject {
                    audit.refusal = Some(Refusal::denied(
                        "too_large_to_scan",
                        413,
                        codes::INVALID_REQUEST,
                        format!(
                            "Request too large to scan (over {} bytes)",
                            cfg.scanning.max_scan_bytes
                        ),
                    ));
                }
                return Some((audit, None));
            }
            let scanned = content::scan(arguments, &cfg.scanning.input, "$");
            let blocked_by = scanned.blocked_by();
            // The record keeps the arguments themselves when nothing was masked: the message's
            // copy is not needed after this (a refusal answers by id, a rewrite re-reads the body).
            audit.input = Some(scanned.masked.unwrap_or_else(|| std::mem::take(arguments)));
            if let Some(detector) = blocked_by {
                audit.refusal = Some(
                    Refusal::denied(
                        &format!("blocked_{}", detector.as_str()),
                        403,
                        codes::FORBIDDEN,
                        format!(
                            "Blocked: the arguments contain {} (content policy)",
                            detector.as_str()
                        ),
                    )
                    .with_result(Outcome::Blocked),
                );
            }
            let redacted = scanned.redacted;
            audit.input_hits = Some(scanned.hits);
            Some((audit, redacted))
        }
        Message::BadToolCall { id } => Some((
            CallAudit {
                rpc_id: id.clone(),
                ..unnamed(Refusal::denied(
                    "invalid_params",
                    400,
                    codes::INVALID_PARAMS,
                    "Invalid params: tools/call needs a string params.name".into(),
                ))
            },
            None,
        )),
        Message::Other { .. } => None,
    }
}

fn unnamed(refusal: Refusal) -> CallAudit {
    CallAudit {
        rpc_id: None,
        tool: None,
        input: None,
        scope_required: None,
        scope_result: None,
        refusal: Some(refusal),
        input_hits: None,
    }
}

fn first_tool_call(mcp: &McpRequest) -> Option<CallAudit> {
    mcp.messages.iter().find_map(|m| match m {
        Message::ToolCall {
            id,
            name,
            arguments,
        } => Some(CallAudit {
            rpc_id: id.clone(),
            tool: Some(name.clone()),
            input: arguments.clone(),
            scope_required: None,
            scope_result: None,
            refusal: None,
            input_hits: None,
        }),
        _ => None,
    })
}

/// One record per failed authentication, naming the tool when the request was one tool call.
fn auth_failed(cfg: &Config, failure: AuthFailure, mcp: Option<&McpRequest>) -> Verdict {
    let (status, challenge) = match failure {
        AuthFailure::KeysUnavailable => (503, None),
        AuthFailure::MissingToken => (401, Some("Bearer".to_string())),
        other => (
            401,
            Some(format!(
                "Bearer error=\"invalid_token\", error_description=\"{}\"",
                other.reason()
            )),
        ),
    };
    let challenge = challenge.map(|c| match &cfg.identity.resource_metadata_url {
        Some(url) if c == "Bearer" => format!("Bearer resource_metadata=\"{url}\""),
        Some(url) => format!("{c}, resource_metadata=\"{url}\""),
        None => c,
    });
    let refusal = Refusal {
        event: Event::AuthFailed,
        result: Outcome::AuthFailed,
        reason: failure.reason().into(),
        status,
        code: codes::UNAUTHORIZED,
        message: format!("Unauthorized: {}", failure.reason()),
        headers: challenge
            .map(|c| ("www-authenticate", c))
            .into_iter()
            .collect(),
    };
    let single = mcp.filter(|m| !m.batch);
    let mut audit = single
        .and_then(first_tool_call)
        .unwrap_or_else(|| unnamed(refusal.clone()));
    audit.refusal = Some(refusal);
    let rpc_id = single
        .and_then(|m| m.messages.first())
        .and_then(Message::id)
        .cloned();
    let reply = reply_for(
        audit.refusal.as_ref(),
        error_body(rpc_id.as_ref(), audit.refusal.as_ref()),
    );
    Verdict {
        reply: Some(reply),
        rewritten_body: None,
        tools_lists: Vec::new(),
        audits: vec![audit],
    }
}

/// Refuses the whole request. In a batch, calls that were allowed are refused too (reason
/// `batch_refused`): a batch is forwarded whole or not at all.
fn refuse(mut audits: Vec<CallAudit>, messages: &[Message], batch: bool) -> Verdict {
    let first = audits.iter().find_map(|a| a.refusal.clone());
    let batch_refusal = Refusal::denied(
        "batch_refused",
        403,
        codes::FORBIDDEN,
        "Refused: another call in the same batch was refused".into(),
    );
    for audit in &mut audits {
        if audit.refusal.is_none() {
            audit.refusal = Some(batch_refusal.clone());
        }
    }
    let body = if batch {
        let errors: Vec<Value> = messages
            .iter()
            .filter_map(Message::id)
            .map(|id| {
                let refusal = audits
                    .iter()
                    .find(|a| a.rpc_id.as_ref() == Some(id))
                    .and_then(|a| a.refusal.as_ref())
                    .unwrap_or(&batch_refusal);
                error_value(Some(id), refusal)
            })
            .collect();
        Value::Array(errors).to_string()
    } else {
        let id = messages.first().and_then(Message::id);
        error_body(id, first.as_ref())
    };
    Verdict {
        reply: Some(reply_for(first.as_ref(), body)),
        rewritten_body: None,
        tools_lists: Vec::new(),
        audits,
    }
}

/// The answer to a request refused because its audit records cannot be buffered
/// (`auditFailureMode: closed`): 503, `Retry-After`, and a JSON-RPC error for the request (one
/// per request of a batch). The refused request produces no record.
pub fn audit_unavailable(body: Option<&[u8]>) -> Verdict {
    let r = Refusal::denied(
        "audit_unavailable",
        503,
        codes::AUDIT_UNAVAILABLE,
        "Service unavailable: the audit trail cannot record this call right now; retry later"
            .into(),
    );
    let body = match body.map(request::parse) {
        Some(Ok(mcp)) if mcp.batch => Value::Array(
            mcp.messages
                .iter()
                .filter_map(Message::id)
                .map(|id| error_value(Some(id), &r))
                .collect(),
        )
        .to_string(),
        Some(Ok(mcp)) => error_body(mcp.messages.first().and_then(Message::id), Some(&r)),
        _ => error_body(None, Some(&r)),
    };
    Verdict {
        reply: Some(reply_for(Some(&r), body)),
        rewritten_body: None,
        tools_lists: Vec::new(),
        audits: Vec::new(),
    }
}

fn error_value(id: Option<&Value>, refusal: &Refusal) -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": id.cloned().unwrap_or(Value::Null),
        "error": {"code": refusal.code, "message": refusal.message, "data": {"reason": refusal.reason}}
    })
}

fn error_body(id: Option<&Value>, refusal: Option<&Refusal>) -> String {
    refusal
        .map(|r| error_value(id, r).to_string())
        .unwrap_or_default()
}

fn reply_for(refusal: Option<&Refusal>, body: String) -> Reply {
    let mut headers = vec![("content-type", "application/json".to_string())];
    let status = refusal.map_or(500, |r| r.status);
    headers.extend(refusal.iter().flat_map(|r| r.headers.iter().cloned()));
    if status == 503 {
        headers.push(("retry-after", "5".to_string()));
    }
    Reply {
        status,
        headers,
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse, tests::minimal};
    use serde_json::json;

    fn config() -> Config {
        let mut v = minimal();
        v["tools"] = json!({"salesforce.query": ["salesforce:read"], "github.*": ["github:write"]});
        v["identity"]["resourceMetadataUrl"] =
            json!("https://mcp.example/.well-known/oauth-protected-resource");
        parse(v.to_string().as_bytes()).unwrap()
    }

    fn alice(scopes: &[&str]) -> Identity {
        Identity {
            sub: "alice".into(),
            email: Some("alice@acme.com".into()),
            tenant: None,
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            client_id: None,
            client_type: None,
            delegation_chain: None,
            expires_at: u64::MAX,
        }
    }

    fn call(id: i64, tool: &str) -> Value {
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": {"q": id}}})
    }

    fn decide_with(
        identity: Result<&Identity, AuthFailure>,
        body: &Value,
        headers: (Option<&str>, Option<&str>),
    ) -> Verdict {
        let body = body.to_string();
        let headers = McpHeaders {
            method: headers.0.map(Into::into),
            name: headers.1.map(Into::into),
            ..McpHeaders::default()
        };
        decide(
            &config(),
            &Request {
                auth: identity,
                headers: &headers,
                body: Some(body.as_bytes()),
                content_encoding: None,
            },
            &mut |_| Ok(()),
        )
    }

    #[test]
    fn audit_unavailable_is_a_503_json_rpc_error_per_request() {
        let v = audit_unavailable(Some(call(7, "salesforce.query").to_string().as_bytes()));
        assert!(v.audits.is_empty());
        let reply = v.reply.unwrap();
        assert_eq!(
            (reply.status, header(&reply, "retry-after")),
            (503, Some("5"))
        );
        let b = body(&reply);
        assert_eq!(
            (b["id"].as_i64(), b["error"]["code"].as_i64()),
            (Some(7), Some(codes::AUDIT_UNAVAILABLE))
        );
        assert_eq!(b["error"]["data"]["reason"], "audit_unavailable");

        let batch =
            json!([call(1, "a"), {"jsonrpc": "2.0", "method": "notifications/x"}, call(2, "b")]);
        let b = body(
            &audit_unavailable(Some(batch.to_string().as_bytes()))
                .reply
                .unwrap(),
        );
        let ids: Vec<_> = b
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_i64())
            .collect();
        assert_eq!(ids, [Some(1), Some(2)]);

        let b = body(&audit_unavailable(Some(b"not json")).reply.unwrap());
        assert_eq!(
            (b["id"].is_null(), b["error"]["code"].as_i64()),
            (true, Some(codes::AUDIT_UNAVAILABLE))
        );
    }

    fn header<'a>(reply: &'a Reply, name: &str) -> Option<&'a str> {
        reply
            .headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    fn body(reply: &Reply) -> Value {
        serde_json::from_str(&reply.body).unwrap()
    }

    #[test]
    fn allowed_call_is_forwarded_with_its_audit() {
        let id = alice(&["salesforce:read"]);
        let v = decide_with(Ok(&id), &call(1, "salesforce.query"), (None, None));
        assert_eq!(v.reply, None);
        assert_eq!(
            v.audits,
            [CallAudit {
                rpc_id: Some(json!(1)),
                tool: Some("salesforce.query".into()),
                input: Some(json!({"q": 1})),
                scope_required: Some(vec!["salesforce:read".into()]),
                scope_result: Some(ScopeResult::Pass),
                refusal: None,
                input_hits: Some(vec![]),
            }]
        );
    }

    #[test]
    fn missing_scope_is_403_with_the_challenge_and_the_missing_scopes() {
        let id = alice(&["files:read"]);
        let v = decide_with(Ok(&id), &call(4, "salesforce.query"), (None, None));
        let reply = v.reply.unwrap();
        assert_eq!(reply.status, 403);
        assert_eq!(
            header(&reply, "www-authenticate"),
            Some("Bearer error=\"insufficient_scope\", scope=\"salesforce:read\"")
        );
        let b = body(&reply);
        assert_eq!(b["id"], 4);
        assert_eq!(b["error"]["code"], codes::FORBIDDEN);
        assert!(b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("salesforce:read"));
        let audit = &v.audits[0];
        assert_eq!(audit.scope_result, Some(ScopeResult::Fail));
        assert_eq!(
            audit.scope_required.as_deref(),
            Some(&["salesforce:read".to_string()][..])
        );
        assert_eq!(audit.refusal.as_ref().unwrap().reason, "insufficient_scope");
    }

    #[test]
    fn unknown_tool_is_denied() {
        let id = alice(&["salesforce:read"]);
        let v = decide_with(Ok(&id), &call(1, "shell.exec"), (None, None));
        assert_eq!(v.reply.unwrap().status, 403);
        assert_eq!(v.audits[0].refusal.as_ref().unwrap().reason, "unknown_tool");
        assert_eq!(v.audits[0].scope_required, None);
    }

    #[test]
    fn auth_failure_is_one_record_naming_the_tool() {
        let v = decide_with(
            Err(AuthFailure::Expired),
            &call(9, "salesforce.query"),
            (None, None),
        );
        let reply = v.reply.unwrap();
        assert_eq!(reply.status, 401);
        assert_eq!(
            header(&reply, "www-authenticate"),
            Some("Bearer error=\"invalid_token\", error_description=\"expired\", resource_metadata=\"https://mcp.example/.well-known/oauth-protected-resource\"")
        );
        assert_eq!(body(&reply)["id"], 9);
        assert_eq!(v.audits.len(), 1);
        let r = v.audits[0].refusal.as_ref().unwrap();
        assert_eq!(
            (r.event, r.result, r.reason.as_str()),
            (Event::AuthFailed, Outcome::AuthFailed, "expired")
        );
        assert_eq!(v.audits[0].tool.as_deref(), Some("salesforce.query"));

        let v = decide(
            &config(),
            &Request {
                auth: Err(AuthFailure::MissingToken),
                headers: &McpHeaders::default(),
                body: None,
                content_encoding: None,
            },
            &mut |_| Ok(()),
        );
        let reply = v.reply.unwrap();
        assert_eq!(header(&reply, "www-authenticate"), Some("Bearer resource_metadata=\"https://mcp.example/.well-known/oauth-protected-resource\""));
        assert_eq!(v.audits[0].tool, None);
        let v = decide(
            &config(),
            &Request {
                auth: Err(AuthFailure::KeysUnavailable),
                headers: &McpHeaders::default(),
                body: None,
                content_encoding: None,
            },
            &mut |_| Ok(()),
        );
        let reply = v.reply.unwrap();
        assert_eq!(
            (reply.status, header(&reply, "retry-after")),
            (503, Some("5"))
        );
    }

    fn refusal_of(v: &Verdict) -> (u32, Option<i64>, &str) {
        let reply = v.reply.as_ref().unwrap();
        (
            reply.status,
            body(reply)["error"]["code"].as_i64(),
            v.audits[0].refusal.as_ref().unwrap().reason.as_str(),
        )
    }

    #[test]
    fn hostile_bodies_are_refused_and_recorded_once() {
        let id = alice(&["salesforce:read"]);
        let raw = |body: &[u8], encoding: Option<&str>| {
            let req = Request {
                auth: Ok(&id),
                headers: &McpHeaders::default(),
                body: Some(body),
                content_encoding: encoding,
            };
            decide(&config(), &req, &mut |_| Ok(()))
        };
        let v = raw("[".repeat(100_000).as_bytes(), None);
        assert_eq!(
            refusal_of(&v),
            (400, Some(codes::PARSE_ERROR), "parse_error")
        );
        let v = raw(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"\xff\"}}", None);
        assert_eq!(
            refusal_of(&v),
            (400, Some(codes::PARSE_ERROR), "parse_error")
        );
        let v = raw(br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"salesforce.query","name":"github.delete"}}"#, None);
        assert_eq!(
            refusal_of(&v),
            (400, Some(codes::INVALID_REQUEST), "duplicate_key")
        );
        assert_eq!(v.audits.len(), 1);

        let batch: Vec<Value> = (0..101).map(|i| call(i, "salesforce.query")).collect();
        let v = decide_with(Ok(&id), &Value::Array(batch.clone()), (None, None));
        assert_eq!(
            refusal_of(&v),
            (400, Some(codes::INVALID_REQUEST), "batch_too_large")
        );
        assert_eq!(
            v.audits.len(),
            1,
            "one record for the refused batch, not one per message"
        );
        assert_eq!(
            decide_with(Ok(&id), &Value::Array(batch[..100].to_vec()), (None, None)).reply,
            None
        );

        let call = call(1, "salesforce.query").to_string();
        let v = raw(call.as_bytes(), Some("gzip"));
        assert_eq!(
            refusal_of(&v),
            (
                415,
                Some(codes::INVALID_REQUEST),
                "unsupported_content_encoding"
            )
        );
        assert_eq!(
            header(v.reply.as_ref().unwrap(), "accept-encoding"),
            Some("identity")
        );
        assert_eq!(raw(call.as_bytes(), Some("identity")).reply, None);
        let v2 = decide(
            &config(),
            &Request {
                auth: Err(AuthFailure::Expired),
                headers: &McpHeaders::default(),
                body: Some(call.as_bytes()),
                content_encoding: Some("gzip"),
            },
            &mut |_| Ok(()),
        );
        assert_eq!(
            (refusal_of(&v).2, refusal_of(&v2).2),
            ("unsupported_content_encoding", "expired"),
            "authentication first"
        );
    }

    #[test]
    fn a_body_envoy_refused_unread_is_recorded() {
        let id = alice(&[]);
        let [audit] = unread_body(&config(), Ok(&id)).try_into().unwrap();
        let r = audit.refusal.unwrap();
        assert_eq!(
            (r.event, r.result, r.reason.as_str(), audit.tool),
            (
                Event::ToolDenied,
                Outcome::Denied,
                "request_too_large",
                None
            )
        );
        let [audit] = unread_body(&config(), Err(AuthFailure::Expired))
            .try_into()
            .unwrap();
        assert_eq!(audit.refusal.unwrap().reason, "expired");
    }

    #[test]
    fn malformed_bodies_are_400_and_recorded() {
        let id = alice(&[]);
        let v = decide(
            &config(),
            &Request {
                auth: Ok(&id),
                headers: &McpHeaders::default(),
                body: Some(b"{"),
                content_encoding: None,
            },
            &mut |_| Ok(()),
        );
        let reply = v.reply.unwrap();
        assert_eq!(
            (reply.status, body(&reply)["error"]["code"].as_i64()),
            (400, Some(codes::PARSE_ERROR))
        );
        assert_eq!(body(&reply)["id"], Value::Null);
        assert_eq!(v.audits[0].refusal.as_ref().unwrap().reason, "parse_error");

        let v = decide_with(Ok(&id), &json!({"jsonrpc": "1.0"}), (None, None));
        assert_eq!(
            v.audits[0].refusal.as_ref().unwrap().reason,
            "invalid_request"
        );
        let v = decide_with(
            Ok(&id),
            &json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call"}),
            (None, None),
        );
        let reply = v.reply.unwrap();
        assert_eq!(
            (reply.status, body(&reply)["error"]["code"].as_i64()),
            (400, Some(codes::INVALID_PARAMS))
        );
    }

    #[test]
    fn header_mismatch_is_refused_and_recorded() {
        let id = alice(&["salesforce:read"]);
        let v = decide_with(
            Ok(&id),
            &call(1, "salesforce.query"),
            (Some("tools/call"), Some("github.create_issue")),
        );
        let reply = v.reply.unwrap();
        assert_eq!(
            (reply.status, body(&reply)["error"]["code"].as_i64()),
            (400, Some(codes::HEADER_MISMATCH))
        );
        assert_eq!(v.audits[0].tool.as_deref(), Some("salesforce.query"));
        assert_eq!(
            v.audits[0].refusal.as_ref().unwrap().reason,
            "header_mismatch"
        );
        let ok = decide_with(
            Ok(&id),
            &call(1, "salesforce.query"),
            (Some("tools/call"), Some("salesforce.query")),
        );
        assert_eq!(ok.reply, None);
    }

    #[test]
    fn modern_envelope_requests_are_checked_against_every_mirrored_header() {
        let id = alice(&["salesforce:read"]);
        let meta = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}});
        let mut request = call(1, "salesforce.query");
        request["params"]["_meta"] = meta.clone();
        let raw = request.to_string();
        let headers = |pairs: &[(&'static str, &'static str)]| {
            McpHeaders::from_pairs(
                [
                    ("mcp-method", "tools/call"),
                    ("mcp-name", "salesforce.query"),
                ]
                .into_iter()
                .chain(pairs.iter().copied()),
            )
        };
        let run = |h: &McpHeaders| {
            decide(
                &config(),
                &Request {
                    auth: Ok(&id),
                    headers: h,
                    body: Some(raw.as_bytes()),
                    content_encoding: None,
                },
                &mut |_| Ok(()),
            )
        };
        let ok = run(&headers(&[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-param-q", "1"),
        ]));
        assert_eq!(ok.reply, None);
        assert_eq!(
            ok.audits[0].input,
            Some(json!({"q": 1})),
            "_meta is not part of the recorded input"
        );
        for bad in [
            &[("mcp-protocol-version", "2025-11-25")][..],
            &[("mcp-protocol-version", "2026-07-28"), ("mcp-param-q", "2")],
        ] {
            let v = run(&headers(bad));
            let reply = v.reply.unwrap();
            assert_eq!(
                (reply.status, body(&reply)["error"]["code"].as_i64()),
                (400, Some(codes::HEADER_MISMATCH)),
                "{bad:?}"
            );
            assert_eq!(
                v.audits[0].refusal.as_ref().unwrap().reason,
                "header_mismatch"
            );
            assert_eq!(v.audits[0].tool.as_deref(), Some("salesforce.query"));
        }
        // A redacted call is forwarded with its envelope as sent.
        let mut redacting = minimal();
        redacting["tools"] = json!({"salesforce.query": ["salesforce:read"]});
        redacting["scanning"] = json!({"input": {"email": "redact"}});
        let redacting = parse(redacting.to_string().as_bytes()).unwrap();
        let mut with_email = request.clone();
        with_email["params"]["arguments"] = json!({"q": "bob@acme.com"});
        let raw_email = with_email.to_string();
        let h = headers(&[("mcp-protocol-version", "2026-07-28")]);
        let v = decide(
            &redacting,
            &Request {
                auth: Ok(&id),
                headers: &h,
                body: Some(raw_email.as_bytes()),
                content_encoding: None,
            },
            &mut |_| Ok(()),
        );
        let forwarded: Value = serde_json::from_str(v.rewritten_body.as_deref().unwrap()).unwrap();
        assert_eq!(forwarded["params"]["_meta"], meta);
        assert_eq!(forwarded["params"]["arguments"]["q"], "[REDACTED:email]");
        // server/discover is authenticated and forwarded, without a record.
        let discover = json!({"jsonrpc": "2.0", "id": 2, "method": "server/discover", "params": {"_meta": meta}}).to_string();
        let h = McpHeaders::from_pairs([
            ("mcp-method", "server/discover"),
            ("mcp-protocol-version", "2026-07-28"),
        ]);
        let v = decide(
            &config(),
            &Request {
                auth: Ok(&id),
                headers: &h,
                body: Some(discover.as_bytes()),
                content_encoding: None,
            },
            &mut |_| Ok(()),
        );
        assert_eq!((v.reply, v.audits.len()), (None, 0));
    }

    #[test]
    fn batches_are_decided_per_call_and_forwarded_whole_or_not_at_all() {
        let id = alice(&["salesforce:read"]);
        let list = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list"});
        let ok = decide_with(
            Ok(&id),
            &json!([
                call(1, "salesforce.query"),
                list,
                call(2, "salesforce.query")
            ]),
            (None, None),
        );
        assert_eq!((ok.reply, ok.audits.len()), (None, 2));

        let v = decide_with(
            Ok(&id),
            &json!([
                call(1, "salesforce.query"),
                list,
                call(2, "github.create_issue")
            ]),
            (None, None),
        );
        let reply = v.reply.unwrap();
        assert_eq!(reply.status, 403);
        let b = body(&reply);
        assert_eq!(b.as_array().unwrap().len(), 3);
        assert_eq!(b[2]["error"]["data"]["reason"], "insufficient_scope");
        assert_eq!(b[0]["error"]["data"]["reason"], "batch_refused");
        let reasons: Vec<_> = v
            .audits
            .iter()
            .map(|a| a.refusal.as_ref().unwrap().reason.as_str())
            .collect();
        assert_eq!(reasons, ["batch_refused", "insufficient_scope"]);
    }

    #[test]
    fn input_scanning_blocks_or_redacts_before_forwarding() {
        let id = alice(&["salesforce:read"]);
        let mut blocked = call(1, "salesforce.query");
        blocked["params"]["arguments"] = json!({"customer": {"ssn": "536-22-1987"}});
        let v = decide_with(Ok(&id), &blocked, (None, None));
        let reply = v.reply.unwrap();
        assert_eq!(
            (reply.status, body(&reply)["error"]["code"].as_i64()),
            (403, Some(codes::FORBIDDEN))
        );
        let audit = &v.audits[0];
        let r = audit.refusal.as_ref().unwrap();
        assert_eq!(
            (r.result, r.reason.as_str()),
            (Outcome::Blocked, "blocked_ssn")
        );
        assert_eq!(
            audit.input,
            Some(json!({"customer": {"ssn": "[REDACTED:ssn]"}})),
            "never the value"
        );
        assert_eq!(audit.input_hits.as_ref().unwrap()[0].path, "$.customer.ssn");

        let mut cfg = minimal();
        cfg["tools"] = json!({"salesforce.query": ["salesforce:read"]});
        cfg["scanning"] = json!({"input": {"email": "redact"}});
        let cfg = parse(cfg.to_string().as_bytes()).unwrap();
        let mut redact = call(2, "salesforce.query");
        redact["params"]["arguments"] = json!({"q": "mail bob@acme.com"});
        let raw = redact.to_string();
        let v = decide(
            &cfg,
            &Request {
                auth: Ok(&id),
                headers: &McpHeaders::default(),
                body: Some(raw.as_bytes()),
                content_encoding: None,
            },
            &mut |_| Ok(()),
        );
        assert_eq!(v.reply, None);
        let forwarded: Value = serde_json::from_str(v.rewritten_body.as_deref().unwrap()).unwrap();
        assert_eq!(
            forwarded["params"]["arguments"]["q"],
            "mail [REDACTED:email]"
        );
        assert_eq!(forwarded["id"], 2);
    }

    #[test]
    fn inputs_of_calls_refused_before_scanning_are_still_masked_in_the_record() {
        let id = alice(&["files:read"]);
        let mut denied = call(1, "salesforce.query");
        denied["params"]["arguments"] = json!({"q": "ssn 536-22-1987"});
        let v = decide_with(Ok(&id), &denied, (None, None));
        assert_eq!(
            v.audits[0].refusal.as_ref().unwrap().reason,
            "insufficient_scope"
        );
        assert_eq!(v.audits[0].input, Some(json!({"q": "ssn [REDACTED:ssn]"})));
        assert_eq!(v.audits[0].input_hits, None, "no content decision was made");
        let v = decide_with(Err(AuthFailure::Expired), &denied, (None, None));
        assert_eq!(v.audits[0].input, Some(json!({"q": "ssn [REDACTED:ssn]"})));
    }

    #[test]
    fn over_the_rate_limit_is_429_with_retry_after() {
        let id = alice(&["salesforce:read"]);
        let request = call(5, "salesforce.query").to_string();
        let mut asked = Vec::new();
        let v = decide(
            &config(),
            &Request {
                auth: Ok(&id),
                headers: &McpHeaders::default(),
                body: Some(request.as_bytes()),
                content_encoding: None,
            },
            &mut |tool| {
                asked.push(tool.to_string());
                Err(7)
            },
        );
        assert_eq!(asked, ["salesforce.query"]);
        let reply = v.reply.unwrap();
        assert_eq!(
            (reply.status, header(&reply, "retry-after")),
            (429, Some("7"))
        );
        assert_eq!(body(&reply)["error"]["code"], codes::RATE_LIMITED);
        let r = v.audits[0].refusal.as_ref().unwrap();
        assert_eq!(
            (r.event, r.result, r.reason.as_str()),
            (Event::ToolDenied, Outcome::RateLimited, "rate_limited")
        );
        // Refused calls never draw from the budget.
        let mut drawn = 0;
        let denied = call(6, "github.create_issue").to_string();
        decide(
            &config(),
            &Request {
                auth: Ok(&id),
                headers: &McpHeaders::default(),
                body: Some(denied.as_bytes()),
                content_encoding: None,
            },
            &mut |_| {
                drawn += 1;
                Ok(())
            },
        );
        assert_eq!(drawn, 0);
    }

    #[test]
    fn other_methods_and_bodiless_requests_pass_without_records() {
        let id = alice(&[]);
        let v = decide_with(
            Ok(&id),
            &json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}),
            (None, None),
        );
        assert_eq!(
            v,
            Verdict {
                reply: None,
                rewritten_body: None,
                tools_lists: vec![],
                audits: vec![]
            }
        );
        let v = decide_with(
            Ok(&id),
            &json!({"jsonrpc": "2.0", "id": 7, "method": "tools/list"}),
            (None, None),
        );
        assert_eq!(v.tools_lists, [json!(7)]);
        let v = decide(
            &config(),
            &Request {
                auth: Ok(&id),
                headers: &McpHeaders::default(),
                body: None,
                content_encoding: None,
            },
            &mut |_| Ok(()),
        );
        assert_eq!(
            v,
            Verdict {
                reply: None,
                rewritten_body: None,
                tools_lists: vec![],
                audits: vec![]
            }
        );
    }
}
