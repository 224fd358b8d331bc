//! The root context: one per worker VM. It parses the configuration, owns the worker's state
//! (keys, token cache, audit outbox) shared with its streams, and on each tick fetches the
//! remote JWKS when due (through the issuer's discovery document when configured) and sends
//! audit batches to the collector.

use std::cell::RefCell;
use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType};

use super::host::Host;
use super::metrics::Metrics;
use super::stream::Stream;
use super::worker::Worker;
use crate::audit::outbox::{Delivery, Outbox};
use crate::audit::policy_snapshot;
use crate::auth::keys::discovery::{KeyDocument, KeyLocation, Target};
use crate::auth::keys::jwks::{KeySet, RefreshSchedule};
use crate::auth::keys::source::KeySource;
use crate::config::{self, audit::Audit};

/// The root context, reaching Envoy through `H`.
pub struct Plugin<H> {
    host: H,
    worker: Option<Rc<RefCell<Worker>>>,
    /// Where the remote keys are fetched from (none with inline keys or trust mode).
    location: Option<KeyLocation>,
    key_call: Option<(u32, KeyDocument)>,
    audit_call: Option<u32>,
    /// The policy document of this configuration until the collector has stored it
    /// ([`crate::audit::policy_snapshot`]); every VM sends it, the collector keeps it once.
    policy: Option<Outbox>,
    policy_call: Option<u32>,
    /// Envoy is removing this plugin; it reports done once its records are delivered.
    closing: bool,
}

/// The root context's part of each Envoy callback.
impl<H: Host + Clone + 'static> Plugin<H> {
    pub fn new(host: H) -> Self {
        Plugin {
            host,
            worker: None,
            location: None,
            key_call: None,
            audit_call: None,
            policy: None,
            policy_call: None,
            closing: false,
        }
    }

    /// An HTTP call the root context started has its answer.
    pub fn settle_call(&mut self, token: u32, body_size: usize) {
        let status = self
            .host
            .call_response_header(":status")
            .and_then(|s| s.parse::<u32>().ok());
        let body = self
            .host
            .buffer(BufferType::HttpCallResponseBody, body_size);
        if let Some((_, document)) = self.key_call.filter(|(call, _)| *call == token) {
            self.key_call = None;
            match document {
                KeyDocument::Discovery => self.on_discovery(status, &body),
                KeyDocument::Jwks => self.on_jwks(status, &body),
            }
        } else if self.audit_call == Some(token) {
            self.audit_call = None;
            self.on_audit_response(status, &body);
            self.flush(Batch::Full);
            self.finish_closing();
        } else if self.policy_call == Some(token) {
            self.policy_call = None;
            self.on_policy_response(status, &body);
        }
    }

    /// Envoy removes the plugin (e.g. a listener update replaced its configuration): records
    /// still buffered are delivered first, then the root context reports done. `true`: done now.
    pub fn remove(&mut self) -> bool {
        self.flush_metrics();
        let waiting = self.worker.as_ref().map_or(0, |w| w.borrow().outbox.len());
        if waiting == 0 && self.audit_call.is_none() {
            return true;
        }
        log::info!("plugin removed with {waiting} audit record(s) buffered: delivering them before it ends");
        self.closing = true;
        false
    }

    /// Parses the configuration (`size` bytes) and sets up the worker; `false` refuses it.
    pub fn configure(&mut self, size: usize) -> bool {
        let bytes = self.host.buffer(BufferType::PluginConfiguration, size);
        let config = match config::parse(&bytes) {
            Ok(config) => config,
            Err(e) => {
                log::error!("invalid plugin configuration: {e}");
                return false;
            }
        };
        let (keys, refresh) = match &config.identity.keys {
            KeySource::Inline(set) => (Some(Rc::clone(set)), None),
            KeySource::Remote(remote) => (None, Some(RefreshSchedule::new(remote.clone()))),
            KeySource::TrustJwtAuthn { .. } => (None, None),
        };
        self.location = match &config.identity.keys {
            KeySource::Remote(remote) => Some(KeyLocation::new(remote)),
            _ => None,
        };
        let audit = &config.audit;
        let outbox = Outbox::new(
            audit.max_buffered_records,
            audit.max_buffered_bytes,
            audit.batch_size,
            audit.max_retry_delay,
        )
        .sending_early(audit.early_batch_size, audit.flush_interval);
        self.policy = match policy_snapshot::message(&bytes, &config) {
            Some(message) => {
                let mut policy = Outbox::new(1, usize::MAX, 1, audit.max_retry_delay);
                policy.push(message.into_bytes());
                Some(policy)
            }
            None => {
                log::error!(
                    "the policy document of this configuration could not be built; it is not sent"
                );
                None
            }
        };
        self.policy_call = None;
        self.host.set_tick_period(audit.tick_period());
        self.worker = Some(Rc::new(RefCell::new(Worker::new(
            config,
            keys,
            refresh,
            outbox,
            Metrics::define(&self.host),
        ))));
        true
    }

    /// Fetches the keys when due, then sends the policy document and waiting audit records.
    pub fn tick(&mut self) {
        self.fetch_jwks();
        self.send_policy();
        self.flush(Batch::Due);
        self.flush_metrics();
        self.finish_closing();
    }

    /// Adds the events counted in this VM since the last flush to Envoy's counters.
    pub fn flush_metrics(&self) {
        if let Some(worker) = &self.worker {
            worker.borrow_mut().flush_metrics(&self.host);
        }
    }

    /// The stream of a new request; none before a configuration was accepted.
    pub fn new_stream(&self) -> Option<Stream<H>> {
        let worker = self.worker.as_ref()?;
        Some(Stream::new(self.host.clone(), Rc::clone(worker)))
    }

    /// Starts the next key fetch when due: the discovery document, or the JWKS.
    fn fetch_jwks(&mut self) {
        let Some(worker) = &self.worker else { return };
        let due = {
            let mut w = worker.borrow_mut();
            let now = self.host.now_millis();
            w.refresh
                .as_mut()
                .is_some_and(|refresh| refresh.start_fetch(now))
        };
        if let (true, Some(location)) = (due, &self.location) {
            let (document, target) = location.next();
            let target = target.clone();
            self.dispatch_key_request(document, &target);
        }
    }

    fn dispatch_key_request(&mut self, document: KeyDocument, target: &Target) {
        let Some(worker) = &self.worker else { return };
        let timeout = worker
            .borrow()
            .refresh
            .as_ref()
            .map(|r| r.remote().timeout)
            .unwrap_or_default();
        let headers = vec![
            (":method", "GET"),
            (":path", target.path.as_str()),
            (":authority", target.authority.as_str()),
        ];
        match self.host.dispatch(&target.cluster, headers, None, timeout) {
            Some(call) => self.key_call = Some((call, document)),
            None => self.key_fetch_failed(document, "the request could not start"),
        }
    }

    fn on_discovery(&mut self, status: Option<u32>, body: &[u8]) {
        let Some(location) = self.location.as_mut() else {
            return;
        };
        match location.discovered(status, body) {
            Ok(target) => {
                let target = target.clone();
                log::info!(
                    "OpenID discovery: JWKS at {}{} through cluster {}",
                    target.authority,
                    target.path,
                    target.cluster
                );
                if let Some(worker) = &self.worker {
                    worker.borrow().metrics.discovery_fetched.inc();
                }
                self.dispatch_key_request(KeyDocument::Jwks, &target);
            }
            Err(e) => self.key_fetch_failed(KeyDocument::Discovery, &e),
        }
    }

    /// Schedules the retry (with backoff), counts and logs a failed key fetch. The previous
    /// keys stay in use; without any, requests are refused with 503 `keys_unavailable`.
    fn key_fetch_failed(&mut self, document: KeyDocument, error: &str) {
        let Some(worker) = &self.worker else { return };
        let mut w = worker.borrow_mut();
        if let Some(refresh) = w.refresh.as_mut() {
            refresh.failed(self.host.now_millis());
        }
        let what = match document {
            KeyDocument::Discovery => {
                w.metrics.discovery_failed.inc();
                "OpenID discovery document"
            }
            KeyDocument::Jwks => {
                w.metrics.jwks_fetch_failed.inc();
                if let Some(location) = self.location.as_mut() {
                    location.jwks_failed();
                }
                "JWKS"
            }
        };
        if w.keys.is_some() {
            log::warn!("{what} fetch failed ({error}); keeping the previous keys and retrying");
        } else {
            log::error!("{what} fetch failed ({error}); no signing keys yet: requests are refused with 503 keys_unavailable until keys arrive; retrying");
        }
    }

    fn on_jwks(&mut self, status: Option<u32>, body: &[u8]) {
        let parsed = match status {
            Some(200) => KeySet::from_jwks_bytes(body),
            other => Err(format!("HTTP status {other:?}")),
        };
        let set = match parsed {
            Ok(set) => set,
            Err(e) => return self.key_fetch_failed(KeyDocument::Jwks, &e),
        };
        let Some(worker) = &self.worker else { return };
        let mut w = worker.borrow_mut();
        if let Some(refresh) = w.refresh.as_mut() {
            refresh.fetched(self.host.now_millis());
        }
        log::info!("loaded {} signing key(s) from the JWKS", set.key_count());
        // Keys absent from the new set are retired, and identities they vouched for must be
        // verified again.
        w.keys = Some(Rc::new(set));
        w.cache.clear();
        w.metrics.jwks_fetched.inc();
    }

    /// Reports a closing plugin done once no record waits and no batch is in flight.
    fn finish_closing(&mut self) {
        let empty = self
            .worker
            .as_ref()
            .is_none_or(|w| w.borrow().outbox.is_empty());
        if self.closing && empty && self.audit_call.is_none() {
            self.flush_metrics();
            log::info!("buffered audit records delivered; the removed plugin ends");
            self.closing = false;
            self.host.done();
        }
    }

    /// Sends the next audit batch if none is in flight and enough records wait for `batch`.
    fn flush(&mut self, batch: Batch) {
        let Some(worker) = &self.worker else { return };
        if self.audit_call.is_some() {
            return;
        }
        let mut guard = worker.borrow_mut();
        // The batch borrows the outbox while the configuration is read beside it.
        let w = &mut *guard;
        let now = self.host.now_millis();
        let min_records = match batch {
            Batch::Full => w.outbox.batch_size(),
            // A removed plugin delivers what it holds without waiting.
            Batch::Due if self.closing => 1,
            Batch::Due => w.outbox.due(now),
        };
        let Some(body) = w.outbox.next_batch(now, min_records) else {
            return;
        };
        self.audit_call =
            post_to_collector(&self.host, &w.config.audit, acp_record::INGEST_PATH, body);
        if self.audit_call.is_none() {
            let n = w.outbox.settle(Delivery::Retry, now);
            w.metrics.audit_retried.add(n);
        }
    }

    /// Sends this configuration's policy document when it is not stored yet, none is in
    /// flight and any retry delay has passed.
    fn send_policy(&mut self) {
        let (Some(worker), Some(policy)) = (&self.worker, self.policy.as_mut()) else {
            return;
        };
        if self.policy_call.is_some() {
            return;
        }
        let now = self.host.now_millis();
        let Some(body) = policy.next_batch(now, 1) else {
            return;
        };
        let w = worker.borrow();
        self.policy_call =
            post_to_collector(&self.host, &w.config.audit, acp_record::POLICY_PATH, body);
        if self.policy_call.is_none() {
            policy.settle(Delivery::Retry, now);
            w.metrics.policy_retried.inc();
        }
    }

    fn on_policy_response(&mut self, status: Option<u32>, body: &[u8]) {
        let (Some(worker), Some(policy)) = (&self.worker, self.policy.as_mut()) else {
            return;
        };
        let w = worker.borrow();
        let m = &w.metrics;
        let delivery = Delivery::from_status(status);
        policy.settle(delivery, self.host.now_millis());
        match delivery {
            Delivery::Done if status == Some(422) => {
                m.policy_dropped.inc();
                log::error!(
                    "the collector refused the policy document: {}",
                    String::from_utf8_lossy(body)
                );
            }
            Delivery::Done => m.policy_sent.inc(),
            Delivery::Rejected => {
                m.policy_dropped.inc();
                log::error!(
                    "the collector refused the policy document (status {status:?}): {}",
                    String::from_utf8_lossy(body)
                );
            }
            Delivery::Retry => {
                m.policy_retried.inc();
                log::warn!("policy document not stored (status {status:?}); retrying");
            }
        }
    }

    fn on_audit_response(&mut self, status: Option<u32>, body: &[u8]) {
        let Some(worker) = &self.worker else { return };
        let mut w = worker.borrow_mut();
        let delivery = Delivery::from_status(status);
        let n = w.outbox.settle(delivery, self.host.now_millis());
        let m = &w.metrics;
        match delivery {
            Delivery::Done => {
                let refused = if status == Some(422) {
                    refused_count(body)
                } else {
                    0
                };
                m.audit_sent.add(n.saturating_sub(refused));
                if refused > 0 {
                    m.audit_dropped.add(refused);
                    log::error!(
                        "the collector refused {refused} audit record(s) as invalid: {}",
                        String::from_utf8_lossy(body)
                    );
                }
            }
            Delivery::Rejected => {
                m.audit_dropped.add(n);
                log::error!(
                    "the collector refused a batch of {n} audit records (status {status:?}): {}",
                    String::from_utf8_lossy(body)
                );
            }
            Delivery::Retry => {
                m.audit_retried.add(n);
                log::warn!("audit batch of {n} records not stored (status {status:?}); {} records wait for retry", w.outbox.len());
            }
        }
    }
}

impl<H: Host + Clone + 'static> Context for Plugin<H> {
    fn on_http_call_response(
        &mut self,
        token: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        self.settle_call(token, body_size)
    }

    fn on_done(&mut self) -> bool {
        self.remove()
    }
}

impl<H: Host + Clone + 'static> RootContext for Plugin<H> {
    fn on_configure(&mut self, size: usize) -> bool {
        self.configure(size)
    }

    fn on_tick(&mut self) {
        self.tick()
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(self.new_stream()?))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// Which audit batch a flush may send.
#[derive(Clone, Copy)]
enum Batch {
    /// On the tick: what the outbox says is due (a small batch early, any after the interval).
    Due,
    /// After an acknowledged batch: only a full one, so that batches grow with the load.
    Full,
}

/// Posts `body` to the collector at `path` with the ingest token.
fn post_to_collector(host: &impl Host, audit: &Audit, path: &str, body: &[u8]) -> Option<u32> {
    let authorization = format!("Bearer {}", audit.ingest_token);
    let headers = vec![
        (":method", "POST"),
        (":path", path),
        (":authority", audit.authority.as_str()),
        ("content-type", "application/json"),
        ("authorization", authorization.as_str()),
    ];
    host.dispatch(&audit.cluster, headers, Some(body), audit.timeout)
}

/// How many records a 422 ingest answer lists as refused (`{"rejected": [...]}`).
fn refused_count(body: &[u8]) -> usize {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("rejected").and_then(|r| r.as_array()).map(Vec::len))
        .unwrap_or(0)
}
