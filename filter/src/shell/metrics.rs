//! The filter's Envoy counters, visible at the admin `/stats` and `/stats/prometheus`. Events
//! are counted in the VM and added to Envoy's counters on each tick
//! ([`crate::config::audit::Audit::tick_period`]) and when the plugin is removed, so a request
//! makes no host call to count.

use std::cell::Cell;

use proxy_wasm::types::MetricType;

use super::host::Host;

/// A counter in Envoy's stats (`wasmcustom.acp.x` at `/stats`, `acp_x` at `/stats/prometheus`),
/// summed in the VM until [`Counter::flush`].
#[derive(Debug)]
pub struct Counter {
    id: Option<u32>,
    pending: Cell<u64>,
}

impl Counter {
    pub fn define(host: &impl Host, name: &str) -> Counter {
        Counter {
            id: host.define_metric(MetricType::Counter, name),
            pending: Cell::new(0),
        }
    }

    pub fn add(&self, n: usize) {
        self.pending
            .set(self.pending.get().saturating_add(n as u64));
    }

    pub fn inc(&self) {
        self.add(1);
    }

    /// Adds what was counted since the last flush to Envoy's counter.
    fn flush(&self, host: &impl Host) {
        let n = self.pending.take();
        if let (Some(id), Ok(n), true) = (self.id, i64::try_from(n), n > 0) {
            host.increment_metric(id, n);
        }
    }
}

/// A gauge in Envoy's stats that every worker moves by its own changes, so that it shows the
/// sum over the workers (`wasmcustom.acp.x` at `/stats`, `acp_x` at `/stats/prometheus`).
#[derive(Debug, Clone, Copy)]
pub struct Gauge(Option<u32>);

impl Gauge {
    pub fn define(host: &impl Host, name: &str) -> Gauge {
        Gauge(host.define_metric(MetricType::Gauge, name))
    }

    /// Moves the gauge from `from` to `to` (this worker's part of it).
    pub fn shift(self, host: &impl Host, from: usize, to: usize) {
        let delta = i64::try_from(to)
            .unwrap_or(i64::MAX)
            .saturating_sub(i64::try_from(from).unwrap_or(i64::MAX));
        if let (Some(id), true) = (self.0, delta != 0) {
            host.increment_metric(id, delta);
        }
    }
}

#[derive(Debug)]
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
    /// Audit records queued without their input (size and SHA-256 only): the buffer was full.
    pub audit_inputs_shed: Counter,
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
            audit_inputs_shed: Counter::define(host, "acp.audit_inputs_shed"),
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

    /// Adds the events counted since the last flush to Envoy's counters: one host call per
    /// counter that moved.
    pub fn flush(&self, host: &impl Host) {
        for counter in [
            &self.calls_allowed,
            &self.calls_denied,
            &self.auth_failed,
            &self.calls_error,
            &self.calls_blocked,
            &self.calls_rate_limited,
            &self.tools_hidden,
            &self.token_cache_hits,
            &self.token_cache_misses,
            &self.jwks_fetched,
            &self.jwks_fetch_failed,
            &self.discovery_fetched,
            &self.discovery_failed,
            &self.audit_queued,
            &self.audit_inputs_shed,
            &self.audit_sent,
            &self.audit_retried,
            &self.audit_dropped,
            &self.calls_refused_audit_unavailable,
            &self.policy_sent,
            &self.policy_retried,
            &self.policy_dropped,
        ] {
            counter.flush(host);
        }
    }
}
