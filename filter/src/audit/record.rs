//! Turning a decided call plus what the upstream answered into the audit record.

use std::collections::BTreeMap;

use acp_record::{AuditRecord, ContentScan, Event, Finding, Outcome};

use super::correlation::Correlation;
use crate::auth::identity::Identity;
use crate::decide::answer::OutputScan;
use crate::decide::request::CallAudit;
use crate::mcp::response::{id_key, CallOutcome};
use crate::scan::content::{risk_score, Hit};
use crate::scan::Detector;

/// What the upstream answered, for calls that were forwarded.
pub struct Upstream<'a> {
    /// HTTP status; 0 when the stream ended without a response.
    pub status: u32,
    pub outcomes: &'a BTreeMap<String, CallOutcome>,
    /// False when the response body was too large to keep, so `outcomes` is incomplete.
    pub inspected: bool,
    /// Output scan results by request id (see [`crate::mcp::response::id_key`]); absent ids were
    /// not scanned.
    pub output_scans: &'a BTreeMap<String, OutputScan>,
    /// Set when the filter replaced the whole answer with an error (the reason).
    pub refused: Option<&'a str>,
}

/// The request-wide facts every record of a request shares.
pub struct Context<'a> {
    pub id: String,
    pub timestamp: String,
    pub latency_ms: f64,
    pub tenant: &'a str,
    pub identity: Option<&'a Identity>,
    /// Session, request and trace ids, source address, user agent and MCP revision.
    pub correlation: &'a Correlation,
}

pub fn build(call: CallAudit, ctx: Context, upstream: &Upstream) -> AuditRecord {
    let output = match (&call.refusal, &call.rpc_id) {
        (None, Some(id)) => upstream.output_scans.get(&id_key(id)),
        _ => None,
    };
    let (event, result, reason) = match (call.refusal, output.and_then(|o| o.blocked)) {
        (Some(r), _) => (r.event, r.result, Some(r.reason)),
        (None, _) if upstream.refused.is_some() => (
            Event::ToolDenied,
            Outcome::Blocked,
            upstream.refused.map(str::to_string),
        ),
        (None, Some(detector)) => (
            Event::ToolDenied,
            Outcome::Blocked,
            Some(format!("blocked_output_{}", detector.as_str())),
        ),
        (None, None) => {
            let (result, reason) = forwarded_outcome(call.rpc_id.as_ref(), upstream);
            (Event::ToolCall, result, reason)
        }
    };
    let content_scan = content_scan(call.input_hits.as_deref(), output);
    let id = ctx.identity;
    let c = ctx.correlation.clone();
    AuditRecord {
        id: ctx.id,
        event,
        timestamp: ctx.timestamp,
        sub: id.map(|i| i.sub.clone()),
        email: id.and_then(|i| i.email.clone()),
        tool: call.tool,
        input: call.input,
        scopes: id.map(|i| i.scopes.clone()).unwrap_or_default(),
        scope_required: call.scope_required,
        scope_result: call.scope_result,
        content_scan,
        result,
        reason,
        latency_ms: (ctx.latency_ms * 1000.0).round() / 1000.0,
        tenant_id: ctx.tenant.to_string(),
        client_type: id.and_then(|i| i.client_type.clone()),
        client_id: id.and_then(|i| i.client_id.clone()),
        delegation_chain: id.and_then(|i| i.delegation_chain.clone()),
        session_id: c.session_id,
        request_id: c.request_id,
        trace_id: c.trace_id,
        span_id: c.span_id,
        source_address: c.source_address,
        user_agent: c.user_agent,
        protocol_version: c.protocol_version,
        input_summary: None,
    }
}

/// The record's `contentScan`: `None` when neither the input nor the output was scanned.
fn content_scan(input: Option<&[Hit]>, output: Option<&OutputScan>) -> Option<ContentScan> {
    if input.is_none() && output.is_none() {
        return None;
    }
    let found = |hits: &[Hit], location: &str| -> Vec<Finding> {
        hits.iter()
            .map(|h| Finding {
                kind: h.detector.as_str().into(),
                location: location.into(),
                path: h.path.clone(),
                action: h.action.as_str().into(),
                normalized: h.normalized.to_record(),
            })
            .collect()
    };
    let input_hits = input.unwrap_or_default();
    let output_hits = output.map(|o| o.hits.as_slice()).unwrap_or_default();
    let all: Vec<Hit> = input_hits.iter().chain(output_hits).cloned().collect();
    Some(ContentScan {
        pii_detected: all.iter().any(|h| h.detector != Detector::Ssrf),
        risk_score: risk_score(&all),
        input_scanned: input.is_some(),
        output_scanned: output.is_some(),
        findings: [found(input_hits, "input"), found(output_hits, "output")].concat(),
    })
}

fn forwarded_outcome(
    rpc_id: Option<&serde_json::Value>,
    up: &Upstream,
) -> (Outcome, Option<String>) {
    if up.status == 0 {
        return (Outcome::Error, Some("no_response".into()));
    }
    if up.status >= 400 {
        return (
            Outcome::Error,
            Some(format!("upstream_status_{}", up.status)),
        );
    }
    let Some(rpc_id) = rpc_id else {
        // A notification gets no JSON-RPC response; the HTTP status is all there is.
        return (Outcome::Success, None);
    };
    match up.outcomes.get(&id_key(rpc_id)) {
        Some(CallOutcome::Success) => (Outcome::Success, None),
        Some(other) => (Outcome::Error, other.reason()),
        None if up.inspected => (Outcome::Error, Some("no_response".into())),
        None => (Outcome::Success, Some("response_not_inspected".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use acp_record::ScopeResult;
    use serde_json::json;

    fn forwarded(id: i64) -> CallAudit {
        CallAudit {
            rpc_id: Some(json!(id)),
            tool: Some("salesforce.query".into()),
            input: Some(json!({"query": "SELECT 1"})),
            scope_required: Some(vec!["salesforce:read".into()]),
            scope_result: Some(ScopeResult::Pass),
            refusal: None,
            input_hits: None,
        }
    }

    fn alice() -> Identity {
        Identity {
            sub: "alice".into(),
            email: Some("alice@acme.com".into()),
            tenant: Some("org_acme_corp".into()),
            scopes: vec!["salesforce:read".into()],
            client_id: Some("claude-desktop-app".into()),
            client_type: Some("claude-desktop".into()),
            delegation_chain: Some(vec![json!({"sub": "agent"})]),
            expires_at: 0,
        }
    }

    static NO_CORRELATION: Correlation = Correlation {
        session_id: None,
        request_id: None,
        trace_id: None,
        span_id: None,
        source_address: None,
        user_agent: None,
        protocol_version: None,
    };

    fn ctx(identity: Option<&Identity>) -> Context<'_> {
        Context {
            id: "r1".into(),
            timestamp: "2026-03-15T14:23:07.142Z".into(),
            latency_ms: 1.23456,
            tenant: "org_acme_corp",
            identity,
            correlation: &NO_CORRELATION,
        }
    }

    fn outcome_of(
        call: CallAudit,
        status: u32,
        outcomes: &[(&str, CallOutcome)],
        inspected: bool,
    ) -> (Outcome, Option<String>) {
        let outcomes: BTreeMap<String, CallOutcome> = outcomes
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        let id = alice();
        let r = build(
            call,
            ctx(Some(&id)),
            &Upstream {
                status,
                outcomes: &outcomes,
                inspected,
                output_scans: &BTreeMap::new(),
                refused: None,
            },
        );
        (r.result, r.reason)
    }

    #[test]
    fn success_record_carries_identity_decision_and_correlation() {
        let id = alice();
        let outcomes = BTreeMap::from([("1".to_string(), CallOutcome::Success)]);
        let correlation = Correlation {
            session_id: Some("s-1".into()),
            request_id: Some("r-1".into()),
            trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
            span_id: Some("00f067aa0ba902b7".into()),
            source_address: Some("127.0.0.1:43210".into()),
            user_agent: Some("claude-code/2.0".into()),
            protocol_version: Some("2025-06-18".into()),
        };
        let r = build(
            forwarded(1),
            Context {
                correlation: &correlation,
                ..ctx(Some(&id))
            },
            &Upstream {
                status: 200,
                outcomes: &outcomes,
                inspected: true,
                output_scans: &BTreeMap::new(),
                refused: None,
            },
        );
        r.validate().unwrap();
        assert_eq!(
            (r.event, r.result, r.reason),
            (Event::ToolCall, Outcome::Success, None)
        );
        assert_eq!(r.sub.as_deref(), Some("alice"));
        assert_eq!(r.email.as_deref(), Some("alice@acme.com"));
        assert_eq!(r.scopes, ["salesforce:read"]);
        assert_eq!(r.client_type.as_deref(), Some("claude-desktop"));
        assert_eq!(r.delegation_chain, Some(vec![json!({"sub": "agent"})]));
        assert_eq!(r.latency_ms, 1.235);
        assert_eq!(r.tenant_id, "org_acme_corp");
        assert_eq!(r.content_scan, None);
        let carried = Correlation {
            session_id: r.session_id,
            request_id: r.request_id,
            trace_id: r.trace_id,
            span_id: r.span_id,
            source_address: r.source_address,
            user_agent: r.user_agent,
            protocol_version: r.protocol_version,
        };
        assert_eq!(carried, correlation);
    }

    #[test]
    fn upstream_failures_are_errors_with_a_reason() {
        use CallOutcome::*;
        assert_eq!(
            outcome_of(forwarded(1), 502, &[], true),
            (Outcome::Error, Some("upstream_status_502".into()))
        );
        assert_eq!(
            outcome_of(forwarded(1), 0, &[], true),
            (Outcome::Error, Some("no_response".into()))
        );
        assert_eq!(
            outcome_of(forwarded(1), 200, &[("1", RpcError(-32602))], true),
            (Outcome::Error, Some("jsonrpc_error_-32602".into()))
        );
        assert_eq!(
            outcome_of(forwarded(1), 200, &[("1", ToolError)], true),
            (Outcome::Error, Some("tool_error".into()))
        );
        assert_eq!(
            outcome_of(forwarded(1), 200, &[("2", Success)], true),
            (Outcome::Error, Some("no_response".into()))
        );
        assert_eq!(
            outcome_of(forwarded(1), 200, &[], false),
            (Outcome::Success, Some("response_not_inspected".into()))
        );
        let notification = CallAudit {
            rpc_id: None,
            ..forwarded(0)
        };
        assert_eq!(
            outcome_of(notification, 202, &[], true),
            (Outcome::Success, None)
        );
    }
}
