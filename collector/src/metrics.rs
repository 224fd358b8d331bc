//! The collector's Prometheus metrics: the counters and histograms the service updates as it
//! works ([`Metrics`]), and the gauges read from the store at each scrape ([`Snapshot`]), all
//! named `acp_collector_*` and encoded in the OpenMetrics text format ([`Metrics::encode`]).
//!
//! The exposition comes from `prometheus-client`, the Prometheus project's own Rust client
//! (prometheus/client_rust): it writes OpenMetrics text, keeps no global registry (each
//! collector process, and each test, has its own), and its label sets are typed, so every
//! family's labels are fixed here. The older `prometheus` crate has a global default registry
//! and pulls in protobuf; neither is needed.
//!
//! This module imports nothing from the rest of the collector: the domain code that updates a
//! metric (the writer, webhook delivery) is handed an `Arc<Metrics>`; `http::metrics` serves it.
//!
//! Labels are bounded: `outcome`, `reason`, `credential` and `format` take values from fixed
//! sets ([`RecordOutcome`], ...), `code` is an HTTP status code the collector answers, and
//! `tenant` and `webhook` name only tenants and endpoints that exist in the store.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

/// The prefix of every metric name.
pub const PREFIX: &str = "acp_collector";
/// The `Content-Type` of [`Metrics::encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type Labels = Vec<(&'static str, String)>;
type SecondsGauge = Gauge<f64, AtomicU64>;

/// What happened to one record of an ingest batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordOutcome {
    Accepted,
    Duplicate,
    Rejected,
}

impl RecordOutcome {
    pub const ALL: [Self; 3] = [Self::Accepted, Self::Duplicate, Self::Rejected];

    pub fn name(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Duplicate => "duplicate",
            Self::Rejected => "rejected",
        }
    }
}

/// Which credential a refused request carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    /// A tenant's export API key.
    ApiKey,
    /// The filter's ingest token.
    IngestToken,
}

/// Why a credential was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// No bearer token.
    Missing,
    /// Unknown, revoked or wrong.
    Invalid,
    /// An API key of another tenant.
    WrongTenant,
}

/// The outcome of one webhook delivery attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Delivered,
    Failed,
    Disabled,
}

/// The export formats, and `invalid` for a request naming none of them.
pub const EXPORT_FORMATS: [&str; 4] = ["json", "ndjson", "csv", "invalid"];

/// The counters and histograms of one collector process.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    records: Family<Labels, Counter>,
    ingest_requests: Family<Labels, Counter>,
    ingest_duration: Histogram,
    commit_duration: Histogram,
    commit_failures: Counter,
    deliveries: Family<Labels, Counter>,
    export_requests: Family<Labels, Counter>,
    auth_failures: Family<Labels, Counter>,
}

fn labels(pairs: &[(&'static str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()
}

/// Latency buckets from 0.5 ms to about 8 s.
fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 15))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix(PREFIX);
        let records = Family::<Labels, Counter>::default();
        registry.register(
            "ingest_records",
            "Audit records posted to /v1/records, by outcome (accepted: stored; duplicate: \
             already stored; rejected: invalid)",
            records.clone(),
        );
        let ingest_requests = Family::<Labels, Counter>::default();
        registry.register(
            "ingest_requests",
            "Answers to POST /v1/records, by HTTP status code",
            ingest_requests.clone(),
        );
        let ingest_duration = latency();
        registry.register_with_unit(
            "ingest_batch_duration",
            "Time to answer POST /v1/records, commit included",
            Unit::Seconds,
            ingest_duration.clone(),
        );
        let commit_duration = latency();
        registry.register_with_unit(
            "writer_commit_duration",
            "Time the writer takes to store and commit one group of batches",
            Unit::Seconds,
            commit_duration.clone(),
        );
        let commit_failures = Counter::default();
        registry.register(
            "writer_commit_failures",
            "Groups of batches whose transaction failed (nothing of them was stored)",
            commit_failures.clone(),
        );
        let deliveries = Family::<Labels, Counter>::default();
        registry.register(
            "webhook_deliveries",
            "Webhook delivery attempts, by outcome (delivered, failed, disabled: 410 Gone)",
            deliveries.clone(),
        );
        let export_requests = Family::<Labels, Counter>::default();
        registry.register(
            "export_requests",
            "Answers to GET /{tenant}/api/v1/audit, by format and HTTP status code",
            export_requests.clone(),
        );
        let auth_failures = Family::<Labels, Counter>::default();
        registry.register(
            "auth_failures",
            "Refused bearer credentials, by credential (api_key, ingest_token) and reason \
             (missing, invalid, wrong_tenant)",
            auth_failures.clone(),
        );
        let metrics = Self {
            registry,
            records,
            ingest_requests,
            ingest_duration,
            commit_duration,
            commit_failures,
            deliveries,
            export_requests,
            auth_failures,
        };
        // The series a dashboard or an alert expects from the start, at zero.
        for outcome in RecordOutcome::ALL {
            metrics.records_by(outcome, 0);
        }
        for outcome in [Delivery::Delivered, Delivery::Failed, Delivery::Disabled] {
            metrics
                .deliveries
                .get_or_create(&labels(&[("outcome", delivery_name(outcome))]))
                .inc_by(0);
        }
        metrics
    }

    /// Counts `n` records of an ingest batch with `outcome`.
    pub fn records_by(&self, outcome: RecordOutcome, n: usize) {
        self.records
            .get_or_create(&labels(&[("outcome", outcome.name())]))
            .inc_by(n as u64);
    }

    /// Counts one answer to an ingest request and how long it took.
    pub fn ingest_answered(&self, code: u16, seconds: f64) {
        self.ingest_requests
            .get_or_create(&labels(&[("code", &code.to_string())]))
            .inc();
        self.ingest_duration.observe(seconds);
    }

    /// Times one commit of the writer; `ok` is whether it committed.
    pub fn commit(&self, seconds: f64, ok: bool) {
        self.commit_duration.observe(seconds);
        if !ok {
            self.commit_failures.inc();
        }
    }

    pub fn delivery(&self, outcome: Delivery) {
        self.deliveries
            .get_or_create(&labels(&[("outcome", delivery_name(outcome))]))
            .inc();
    }

    /// Counts one answer to an export request; `format` is one of [`EXPORT_FORMATS`].
    pub fn export_answered(&self, format: &'static str, code: u16) {
        debug_assert!(EXPORT_FORMATS.contains(&format));
        self.export_requests
            .get_or_create(&labels(&[("format", format), ("code", &code.to_string())]))
            .inc();
    }

    pub fn auth_failed(&self, credential: Credential, reason: AuthFailure) {
        let credential = match credential {
            Credential::ApiKey => "api_key",
            Credential::IngestToken => "ingest_token",
        };
        let reason = match reason {
            AuthFailure::Missing => "missing",
            AuthFailure::Invalid => "invalid",
            AuthFailure::WrongTenant => "wrong_tenant",
        };
        self.auth_failures
            .get_or_create(&labels(&[("credential", credential), ("reason", reason)]))
            .inc();
    }

    /// The OpenMetrics text of these metrics and of `snapshot`'s gauges.
    pub fn encode(&self, snapshot: &Snapshot) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail; a failure would only come from a broken encoder.
        let encoded = encode_registry(&mut text, &self.registry)
            .and_then(|()| encode_registry(&mut text, &snapshot.registry()))
            .and_then(|()| encode_eof(&mut text));
        if let Err(err) = encoded {
            tracing::warn!(error = %err, "cannot encode the metrics");
        }
        text
    }
}

fn delivery_name(outcome: Delivery) -> &'static str {
    match outcome {
        Delivery::Delivered => "delivered",
        Delivery::Failed => "failed",
        Delivery::Disabled => "disabled",
    }
}

/// One tenant's tree, read from the store.
#[derive(Debug, Clone, PartialEq)]
pub struct TreeGauges {
    pub tenant: String,
    /// Records ever appended (expired ones included).
    pub size: u64,
    /// The latest checkpoint's tree size and when it was signed, if there is one.
    pub checkpoint: Option<(u64, i64)>,
}

/// One webhook endpoint's delivery state, read from the store.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookGauges {
    pub tenant: String,
    pub id: String,
    pub enabled: bool,
    /// Records of its tenant not yet delivered, when it subscribes to record events.
    pub lag_records: Option<u64>,
    pub consecutive_failures: u32,
}

/// The gauges computed at scrape time: from the writer's queue and from the store.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub now_ms: i64,
    /// Whether the store answered the scrape's queries (the tree and webhook gauges are
    /// missing otherwise).
    pub store_up: bool,
    /// Whether the writer thread takes batches.
    pub writer_up: bool,
    /// Batches waiting for the writer, and how many may wait.
    pub queue_depth: usize,
    pub queue_capacity: usize,
    pub checkpoint_interval_seconds: f64,
    pub trees: Vec<TreeGauges>,
    pub webhooks: Vec<WebhookGauges>,
}

impl Snapshot {
    /// A registry of this snapshot's gauges, encoded after the process's own metrics.
    fn registry(&self) -> Registry {
        let mut registry = Registry::with_prefix(PREFIX);
        let gauge = |value: i64| {
            let g = Gauge::<i64>::default();
            g.set(value);
            g
        };
        registry.register(
            "store_up",
            "1 when the store answered this scrape's queries, else 0",
            gauge(i64::from(self.store_up)),
        );
        registry.register(
            "writer_up",
            "1 while the writer thread takes ingest batches, else 0",
            gauge(i64::from(self.writer_up)),
        );
        registry.register(
            "writer_queue_depth",
            "Ingest batches waiting for the writer",
            gauge(self.queue_depth as i64),
        );
        registry.register(
            "writer_queue_capacity",
            "Ingest batches that may wait for the writer before ingest requests are held back",
            gauge(self.queue_capacity as i64),
        );
        let interval = SecondsGauge::default();
        interval.set(self.checkpoint_interval_seconds);
        registry.register_with_unit(
            "checkpoint_interval",
            "How often the collector signs a checkpoint of every tree that has grown",
            Unit::Seconds,
            interval,
        );

        let size = Family::<Labels, Gauge>::default();
        let checkpointed = Family::<Labels, Gauge>::default();
        let age = Family::<Labels, SecondsGauge>::default();
        for tree in &self.trees {
            let tenant = labels(&[("tenant", &tree.tenant)]);
            size.get_or_create(&tenant).set(tree.size as i64);
            if let Some((checkpoint_size, created_ms)) = tree.checkpoint {
                checkpointed
                    .get_or_create(&tenant)
                    .set(checkpoint_size as i64);
                let seconds = (self.now_ms - created_ms).max(0) as f64 / 1000.0;
                age.get_or_create(&tenant).set(seconds);
            }
        }
        registry.register(
            "tree_size",
            "Records appended to the tenant's Merkle tree (expired ones included)",
            size,
        );
        registry.register(
            "checkpoint_tree_size",
            "Tree size of the tenant's latest signed checkpoint",
            checkpointed,
        );
        registry.register_with_unit(
            "checkpoint_age",
            "Time since the tenant's latest checkpoint was signed",
            Unit::Seconds,
            age,
        );

        let lag = Family::<Labels, Gauge>::default();
        let failures = Family::<Labels, Gauge>::default();
        let disabled = Family::<Labels, Gauge>::default();
        for hook in &self.webhooks {
            let endpoint = labels(&[("tenant", &hook.tenant), ("webhook", &hook.id)]);
            if let Some(records) = hook.lag_records {
                lag.get_or_create(&endpoint).set(records as i64);
            }
            failures
                .get_or_create(&endpoint)
                .set(i64::from(hook.consecutive_failures));
            disabled
                .get_or_create(&labels(&[("tenant", &hook.tenant)]))
                .inc_by(i64::from(!hook.enabled));
        }
        registry.register(
            "webhook_lag_records",
            "Records of the tenant not yet delivered to the webhook endpoint",
            lag,
        );
        registry.register(
            "webhook_consecutive_failures",
            "Failed delivery attempts to the endpoint since its last success",
            failures,
        );
        registry.register(
            "webhooks_disabled",
            "Disabled webhook endpoints of the tenant (410 Gone, until enabled again)",
            disabled,
        );
        registry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(text: &'a str, series: &str) -> Option<&'a str> {
        text.lines()
            .find(|l| l.split(' ').next() == Some(series))
            .and_then(|l| l.rsplit(' ').next())
    }

    #[test]
    fn counters_and_snapshot_gauges_are_encoded_once_with_their_labels() {
        let metrics = Metrics::new();
        metrics.records_by(RecordOutcome::Accepted, 3);
        metrics.records_by(RecordOutcome::Rejected, 1);
        metrics.ingest_answered(422, 0.002);
        metrics.export_answered("csv", 200);
        metrics.auth_failed(Credential::ApiKey, AuthFailure::WrongTenant);
        metrics.commit(0.001, false);
        let snapshot = Snapshot {
            now_ms: 10_500,
            store_up: true,
            writer_up: true,
            queue_depth: 2,
            queue_capacity: 256,
            checkpoint_interval_seconds: 60.0,
            trees: vec![
                TreeGauges {
                    tenant: "org_a".into(),
                    size: 7,
                    checkpoint: Some((5, 10_000)),
                },
                TreeGauges {
                    tenant: "org_b".into(),
                    size: 1,
                    checkpoint: None,
                },
            ],
            webhooks: vec![WebhookGauges {
                tenant: "org_a".into(),
                id: "wh_1".into(),
                enabled: false,
                lag_records: Some(4),
                consecutive_failures: 3,
            }],
        };
        let text = metrics.encode(&snapshot);
        let value =
            |series: &str| line(&text, series).unwrap_or_else(|| panic!("{series}\n{text}"));
        assert_eq!(
            value("acp_collector_ingest_records_total{outcome=\"accepted\"}"),
            "3"
        );
        assert_eq!(
            value("acp_collector_ingest_records_total{outcome=\"duplicate\"}"),
            "0"
        );
        assert_eq!(
            value("acp_collector_ingest_records_total{outcome=\"rejected\"}"),
            "1"
        );
        assert_eq!(
            value("acp_collector_ingest_requests_total{code=\"422\"}"),
            "1"
        );
        assert_eq!(
            value("acp_collector_ingest_batch_duration_seconds_count"),
            "1"
        );
        assert_eq!(value("acp_collector_writer_commit_failures_total"), "1");
        assert_eq!(
            value("acp_collector_export_requests_total{format=\"csv\",code=\"200\"}"),
            "1"
        );
        assert_eq!(
            value(
                "acp_collector_auth_failures_total{credential=\"api_key\",reason=\"wrong_tenant\"}"
            ),
            "1"
        );
        assert_eq!(value("acp_collector_writer_queue_depth"), "2");
        assert_eq!(value("acp_collector_store_up"), "1");
        assert_eq!(value("acp_collector_checkpoint_interval_seconds"), "60.0");
        assert_eq!(value("acp_collector_tree_size{tenant=\"org_a\"}"), "7");
        assert_eq!(value("acp_collector_tree_size{tenant=\"org_b\"}"), "1");
        assert_eq!(
            value("acp_collector_checkpoint_tree_size{tenant=\"org_a\"}"),
            "5"
        );
        assert_eq!(
            value("acp_collector_checkpoint_age_seconds{tenant=\"org_a\"}"),
            "0.5"
        );
        assert!(line(
            &text,
            "acp_collector_checkpoint_age_seconds{tenant=\"org_b\"}"
        )
        .is_none());
        assert_eq!(
            value("acp_collector_webhook_lag_records{tenant=\"org_a\",webhook=\"wh_1\"}"),
            "4"
        );
        assert_eq!(
            value("acp_collector_webhooks_disabled{tenant=\"org_a\"}"),
            "1"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert_eq!(text.matches("# EOF").count(), 1);
    }
}
