//! The state of one worker VM, shared by its root context and its streams.

use std::rc::Rc;

use crate::audit::outbox::Outbox;
use crate::auth::identity::TokenCache;
use crate::auth::keys::jwks::{KeySet, RefreshSchedule};
use crate::config::Config;

use super::host::Host;
use super::metrics::Metrics;

/// State of one worker VM, shared by its root context and its streams.
pub struct Worker {
    pub config: Rc<Config>,
    pub keys: Option<Rc<KeySet>>,
    pub refresh: Option<RefreshSchedule>,
    pub cache: TokenCache,
    pub outbox: Outbox,
    pub metrics: Metrics,
    /// `auditFailureMode: closed`: whether the last call was admitted (logged when it changes).
    pub admitting: bool,
    /// Keeps the UUIDv7 ids of this worker's records in order within a millisecond.
    pub record_ids: uuid::ContextV7,
    /// This worker's part of the `audit_records_buffered` gauge.
    buffered_reported: usize,
}

impl Worker {
    pub fn new(
        config: Config,
        keys: Option<Rc<KeySet>>,
        refresh: Option<RefreshSchedule>,
        outbox: Outbox,
        metrics: Metrics,
    ) -> Worker {
        Worker {
            cache: TokenCache::new(config.identity.token_cache_size),
            config: Rc::new(config),
            keys,
            refresh,
            outbox,
            metrics,
            admitting: true,
            record_ids: uuid::ContextV7::new(),
            buffered_reported: 0,
        }
    }

    /// Adds the counts of this worker's events since the last flush to Envoy's counters and
    /// brings its part of the `audit_records_buffered` gauge up to date.
    pub fn flush_metrics(&mut self, host: &impl Host) {
        let now = self.outbox.len();
        self.metrics
            .audit_buffered
            .shift(host, self.buffered_reported, now);
        self.buffered_reported = now;
        self.metrics.flush(host);
    }
}
