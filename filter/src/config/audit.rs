//! The `audit` section of the configuration: where and how audit records are delivered to the
//! collector, and what happens to calls when they cannot be.

use std::time::Duration;

use serde::Deserialize;

use crate::config_error::{at_least, non_empty, not_above, ConfigError};

/// Validated `audit` settings.
#[derive(Debug, Clone)]
pub struct Audit {
    pub cluster: String,
    pub authority: String,
    pub ingest_token: String,
    pub batch_size: usize,
    /// Records waiting that a tick sends without waiting for `flush_interval`.
    pub early_batch_size: usize,
    /// The longest records wait after the last batch before a tick sends them.
    pub flush_interval: Duration,
    pub max_buffered_records: usize,
    pub max_buffered_bytes: usize,
    /// Tool arguments whose JSON is longer are stored truncated to this many bytes, with their
    /// size and SHA-256 (`inputSummary`).
    pub max_input_bytes: usize,
    pub timeout: Duration,
    pub max_retry_delay: Duration,
}

/// The longest between two ticks: how soon `early_batch_size` waiting records are seen.
const EARLY_CHECK: Duration = Duration::from_millis(20);

impl Audit {
    /// How often the root context ticks: often enough to send a small batch soon after it is
    /// complete, and at least every `flush_interval`.
    pub fn tick_period(&self) -> Duration {
        self.flush_interval.min(EARLY_CHECK)
    }
}

/// What happens to a call whose audit record cannot be buffered (the collector is down or slow
/// and the worker's buffer is full).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditFailureMode {
    /// Calls go on; records beyond the buffer are dropped and counted.
    #[default]
    Open,
    /// No audit, no action: calls whose records would not fit are refused with 503.
    Closed,
}

/// `audit` as written in the plugin configuration.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawAudit {
    cluster: String,
    #[serde(default)]
    authority: Option<String>,
    ingest_token: String,
    #[serde(default = "default_batch")]
    batch_size: usize,
    #[serde(default = "default_early_batch")]
    early_batch_size: usize,
    #[serde(default = "default_flush")]
    flush_interval_ms: u64,
    #[serde(default = "default_buffer_records")]
    max_buffered_records: usize,
    #[serde(default = "default_buffer_bytes")]
    max_buffered_bytes: usize,
    #[serde(default = "default_max_input")]
    max_input_bytes: usize,
    #[serde(default = "default_audit_timeout")]
    timeout_ms: u64,
    #[serde(default = "default_retry_max")]
    max_retry_delay_ms: u64,
}

fn default_batch() -> usize {
    100
}
fn default_early_batch() -> usize {
    10
}
fn default_flush() -> u64 {
    200
}
fn default_buffer_records() -> usize {
    10_000
}
fn default_buffer_bytes() -> usize {
    16 << 20
}
fn default_max_input() -> usize {
    16 << 10
}
fn default_audit_timeout() -> u64 {
    5_000
}
fn default_retry_max() -> u64 {
    30_000
}

impl TryFrom<RawAudit> for Audit {
    type Error = ConfigError;

    fn try_from(raw: RawAudit) -> Result<Audit, ConfigError> {
        non_empty("audit.cluster", &raw.cluster)?;
        non_empty("audit.ingestToken", &raw.ingest_token)?;
        at_least("audit.batchSize", raw.batch_size as u64, 1)?;
        at_least("audit.earlyBatchSize", raw.early_batch_size as u64, 1)?;
        not_above(
            "audit.earlyBatchSize",
            raw.early_batch_size as u64,
            "audit.batchSize",
            raw.batch_size as u64,
        )?;
        at_least("audit.flushIntervalMs", raw.flush_interval_ms, 10)?;
        at_least(
            "audit.maxBufferedRecords",
            raw.max_buffered_records as u64,
            1,
        )?;
        at_least(
            "audit.maxBufferedBytes",
            raw.max_buffered_bytes as u64,
            1024,
        )?;
        at_least("audit.maxInputBytes", raw.max_input_bytes as u64, 256)?;
        not_above(
            "audit.maxInputBytes",
            raw.max_input_bytes as u64,
            "audit.maxBufferedBytes",
            raw.max_buffered_bytes as u64,
        )?;
        at_least("audit.timeoutMs", raw.timeout_ms, 1)?;
        at_least("audit.maxRetryDelayMs", raw.max_retry_delay_ms, 100)?;
        Ok(Audit {
            authority: raw.authority.unwrap_or_else(|| raw.cluster.clone()),
            cluster: raw.cluster,
            ingest_token: raw.ingest_token,
            batch_size: raw.batch_size,
            early_batch_size: raw.early_batch_size,
            flush_interval: Duration::from_millis(raw.flush_interval_ms),
            max_buffered_records: raw.max_buffered_records,
            max_buffered_bytes: raw.max_buffered_bytes,
            max_input_bytes: raw.max_input_bytes,
            timeout: Duration::from_millis(raw.timeout_ms),
            max_retry_delay: Duration::from_millis(raw.max_retry_delay_ms),
        })
    }
}
