//! The filter's Envoy counters, visible at the admin `/stats` and `/stats/prometheus`.

use super::host::{Counter, Gauge, Host};

#[derive(Debug, Clone, Copy)]
pub struct Metrics {
    /// Tool calls forwarded upstream.
    pub calls_allowed: Counter,
    /// Tool calls refused (scopes, unknown tool, malformed or mismatched request).
    pub calls_denied: Counter,
    /// Requests refused for a missing or invalid token.
    pub auth_failed: Counter,
    /// Forwarded tool calls the upstream answered with an HTTP or JSON-RPC error.
    pub calls_error: Counter,
    /// Tool calls refused (input) or answers replaced (output) by content scanning.
    pub calls_blocked: Counter,
    /// Tool calls refused for exceeding the caller's rate limit.
    pub calls_rate_limited: Counter,
    /// Tools removed from `tools/list` answers because the caller may not call them.
    pub tools_hidden: Counter,
    pub token_cache_hits: Counter,
    pub token_cache_misses: Counter,
    pub jwks_fetched: Counter,
    pub jwks_fetch_failed: Counter,
    /// OpenID discovery documents fetched and accepted, and fetches that failed or were refused.
    pub discovery_fetched: Counter,
    pub discovery_failed: Counter,
    /// Audit records created and queued for the collector.
    pub audit_queued: Counter,
    /// Audit records the collector acknowledged.
    pub audit_sent: Counter,
    /// Audit records in batches that failed and will be sent again.
    pub audit_retried: Counter,
    /// Audit records lost: the buffer was full, or the collector refused the batch for good.
    pub audit_dropped: Counter,
    /// Audit records waiting in the workers' buffers (sum over the workers).
    pub audit_buffered: Gauge,
    /// Calls refused with 503 because their audit records could not be buffered
    /// (`auditFailureMode: closed`).
    pub calls_refused_audit_unavailable: Counter,
    /// Policy documents (one per configuration loaded by a VM) the collector stored, that
    /// failed and will be sent again, and that it refused for good.
    pub policy_sent: Counter,
    pub policy_retried: Counter,
    pub policy_dropped: Counter,
}

impl Metrics {
    pub fn define(host: &impl Host) -> Metrics {
        Metrics {
            calls_allowed: Counter::define(host, "acp.calls_allowed"),
            calls_denied: Counter::define(host, "acp.calls_denied"),
            auth_failed: Counter::define(host, "acp.auth_failed"),
            calls_error: Counter::define(host, "acp.calls_error"),
            calls_blocked: Counter::define(host, "acp.calls_blocked"),
            calls_rate_limited: Counter::define(host, "acp.calls_rate_limited"),
            tools_hidden: Counter::define(host, "acp.tools_hidden"),
            token_cache_hits: Counter::define(host, "acp.token_cache_hits"),
            token_cache_misses: Counter::define(host, "acp.token_cache_misses"),
            jwks_fetched: Counter::define(host, "acp.jwks_fetched"),
            jwks_fetch_failed: Counter::define(host, "acp.jwks_fetch_failed"),
            discovery_fetched: Counter::define(host, "acp.discovery_fetched"),
            discovery_failed: Counter::define(host, "acp.discovery_failed"),
            audit_queued: Counter::define(host, "acp.audit_records_queued"),
            audit_sent: Counter::define(host, "acp.audit_records_sent"),
            audit_retried: Counter::define(host, "acp.audit_records_retried"),
            audit_dropped: Counter::define(host, "acp.audit_records_dropped"),
            audit_buffered: Gauge::define(host, "acp.audit_records_buffered"),
            calls_refused_audit_unavailable: Counter::define(
                host,
                "acp.calls_refused_audit_unavailable",
            ),
            policy_sent: Counter::define(host, "acp.policy_versions_sent"),
            policy_retried: Counter::define(host, "acp.policy_versions_retried"),
            policy_dropped: Counter::define(host, "acp.policy_versions_dropped"),
        }
    }
}
