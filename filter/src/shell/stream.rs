//! The HTTP context: one per request. It only moves bytes between Envoy and the core:
//! authenticate at the request headers, hold the request until its body is complete, apply the
//! decision, watch the response for the calls' outcomes, and queue the audit records at the end.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use acp_record::{Event, Outcome};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType};

use super::headers::Headers;
use super::host::Host;
use super::worker::Worker;
use crate::audit::correlation::Correlation;
use crate::audit::input::{self, Queued};
use crate::audit::outbox::Reservation;
use crate::audit::record::{self, Upstream};
use crate::auth::failure::AuthFailure;
use crate::auth::identity::Identity;
use crate::auth::keys::jwks::millis;
use crate::auth::keys::source::KeySource;
use crate::auth::token;
use crate::auth::trust;
use crate::config::audit::AuditFailureMode;
use crate::config::Config;
use crate::decide::answer::{self, OutputScan, Plan};
use crate::decide::request::{self, CallAudit, Request};
use crate::mcp::headers::McpHeaders;
use crate::mcp::response::{self, id_key, CallOutcome};
use crate::policy::rate_limit::{self, Bucket};
use crate::scan::settings::Oversized;

const IDENTITY_TENANT_HEADER: &str = "x-acp-tenant";
/// Reason of a call whose answer was refused for being too large to scan.
const OVERSIZED_ANSWER: &str = "output_too_large_to_scan";
/// Reason of a call whose answer came compressed: the filter cannot scan it.
const ENCODED_ANSWER: &str = "output_encoded";
const IDENTITY_SUB_HEADER: &str = "x-acp-sub";

/// The state of one request, reaching Envoy through `H`.
pub struct Stream<H> {
    host: H,
    worker: Rc<RefCell<Worker>>,
    config: Rc<Config>,
    started: Duration,
    tenant: String,
    auth: Result<Rc<Identity>, AuthFailure>,
    mcp_headers: McpHeaders,
    /// The records' correlation fields, from the request headers (and `source.address` once
    /// there are records to write).
    correlation: Correlation,
    content_encoding: Option<String>,
    /// The request is held for its body and not decided yet.
    body_pending: bool,
    /// Size of the request body buffered so far.
    body_size: usize,
    audits: Vec<CallAudit>,
    replied_locally: bool,
    status: u32,
    content_type: Option<String>,
    captured: Vec<u8>,
    capture_complete: bool,
    /// The outcomes read while processing a held answer (then nothing is captured).
    held_outcomes: Option<BTreeMap<String, CallOutcome>>,
    /// Answers to scan or filter; the response is held until complete when not empty.
    plan: Plan,
    output_scans: BTreeMap<String, OutputScan>,
    /// Why the answer cannot be scanned (too large, compressed): it is replaced by an error.
    answer_refused: Option<&'static str>,
    /// The error has been sent in place of the answer's first bytes; the rest are dropped.
    refusal_sent: bool,
    /// Size of the held answer buffered so far.
    answer_size: usize,
    /// Buffer room held for this request's records (`auditFailureMode: closed`).
    reservation: Option<Reservation>,
}

impl<H: Host> Stream<H> {
    pub fn new(host: H, worker: Rc<RefCell<Worker>>) -> Self {
        let config = Rc::clone(&worker.borrow().config);
        Stream {
            host,
            worker,
            config,
            started: Duration::ZERO,
            tenant: String::new(),
            auth: Err(AuthFailure::MissingToken),
            mcp_headers: McpHeaders::default(),
            correlation: Correlation::default(),
            content_encoding: None,
            body_pending: false,
            body_size: 0,
            audits: Vec::new(),
            replied_locally: false,
            status: 0,
            content_type: None,
            captured: Vec::new(),
            capture_complete: true,
            held_outcomes: None,
            plan: Plan::default(),
            output_scans: BTreeMap::new(),
            answer_refused: None,
            refusal_sent: false,
            answer_size: 0,
            reservation: None,
        }
    }

    /// `auditFailureMode: closed`: holds buffer room for the `records` this request produces;
    /// `false` when there is none, and the request is to be refused.
    fn admit(&mut self, records: usize, body_bytes: usize) -> bool {
        if records == 0 || self.config.audit_failure_mode == AuditFailureMode::Open {
            return true;
        }
        let mut w = self.worker.borrow_mut();
        if let Some(held) = self.reservation.take() {
            w.outbox.release(held);
        }
        let max_input = self.config.audit.max_input_bytes;
        self.reservation = w
            .outbox
            .reserve(Reservation::estimate(records, body_bytes, max_input));
        let admitted = self.reservation.is_some();
        if !admitted {
            w.metrics.calls_refused_audit_unavailable.add(records);
        }
        if admitted != w.admitting {
            w.admitting = admitted;
            if admitted {
                log::warn!("the audit buffer has room again: calls are admitted");
            } else {
                log::error!(
                    "the audit buffer is full ({} records waiting for the collector): calls are refused with 503 \
                     (auditFailureMode closed) until records are delivered",
                    w.outbox.len()
                );
            }
        }
        admitted
    }

    /// The caller's identity: verified here (token cache first), or in trust mode taken from
    /// what `jwt_authn` verified; then checked against the request's tenant.
    fn authenticate(&self, authorization: Option<&str>) -> Result<Rc<Identity>, AuthFailure> {
        let identity = match &self.config.identity.keys {
            KeySource::TrustJwtAuthn {
                payload_in_metadata,
            } => self.trusted(payload_in_metadata)?,
            _ => self.verified(authorization)?,
        };
        if !self.config.identity.claims.tenant.is_empty()
            && identity.tenant.as_deref() != Some(self.tenant.as_str())
        {
            return Err(AuthFailure::TenantMismatch);
        }
        Ok(identity)
    }

    fn verified(&self, authorization: Option<&str>) -> Result<Rc<Identity>, AuthFailure> {
        let token = token::bearer_token(authorization)?;
        let mut w = self.worker.borrow_mut();
        let now = self.started;
        if let Some(identity) = w.cache.get(token, now.as_secs()) {
            w.metrics.token_cache_hits.inc();
            return Ok(identity);
        }
        w.metrics.token_cache_misses.inc();
        let keys = w.keys.clone().ok_or(AuthFailure::KeysUnavailable)?;
        let claims = token::verify(token, &keys, &self.config.identity, now).inspect_err(|f| {
            if *f == AuthFailure::UnknownKid {
                if let Some(refresh) = w.refresh.as_mut() {
                    refresh.unknown_kid(self.host.now_millis());
                }
            }
        })?;
        let identity = Rc::new(Identity::from_claims(&claims, &self.config.identity));
        w.cache.insert(token, Rc::clone(&identity), now.as_secs());
        Ok(identity)
    }

    /// The identity of the payload `jwt_authn` verified; `missing_token` when it verified none.
    fn trusted(&self, payload_key: &str) -> Result<Rc<Identity>, AuthFailure> {
        let metadata = self.host.property(&["metadata"]).unwrap_or_default();
        let payload = trust::payload(&metadata, payload_key)
            .inspect_err(|e| log::error!("trust mode: {e}"))
            .map_err(|_| AuthFailure::Malformed)?
            .ok_or(AuthFailure::MissingToken)?;
        let claims = trust::claims(payload, &self.config.identity, self.started)?;
        Ok(Rc::new(Identity::from_claims(
            &claims,
            &self.config.identity,
        )))
    }

    /// Decides the request; answers it here when refused. Returns whether to go on upstream.
    fn decide(&mut self, body: Option<&[u8]>) -> bool {
        self.body_pending = false;
        let limit = self
            .config
            .rate_limits
            .as_ref()
            .map(|r| r.for_tenant(&self.tenant));
        let sub = self
            .auth
            .as_ref()
            .map(|i| i.sub.clone())
            .unwrap_or_default();
        // The clock read when the request started: no second read for the rate limit.
        let now_ms = millis(self.started);
        let tenant = self.tenant.clone();
        let mut limiter = |tool: &str| -> Result<(), u64> {
            let Some(limit) = limit else { return Ok(()) };
            let key = rate_limit::key(&tenant, &sub, limit.per_tool.then_some(tool));
            let taken = self.host.update_shared(&key, |current| {
                let (bucket, verdict) =
                    rate_limit::take(current.and_then(Bucket::decode), limit, now_ms);
                (bucket.encode().to_vec(), verdict)
            });
            // Shared data unavailable: the call goes on (logged); rate limits are not an
            // authentication boundary.
            taken.unwrap_or(Ok(()))
        };
        let mut verdict = request::decide(
            &self.config,
            &Request {
                auth: self.auth.as_deref().map_err(|f| *f),
                headers: &self.mcp_headers,
                body,
                content_encoding: self.content_encoding.as_deref(),
            },
            &mut limiter,
        );
        if !self.admit(verdict.audits.len(), body.map_or(0, <[u8]>::len)) {
            verdict = request::audit_unavailable(body);
        }
        self.audits = verdict.audits;
        self.plan = Plan {
            tool_calls: self
                .audits
                .iter()
                .filter(|a| a.refusal.is_none())
                .filter_map(|a| a.rpc_id.as_ref().map(id_key))
                .collect(),
            tools_lists: verdict.tools_lists.iter().map(id_key).collect(),
        };
        if let Some(rewritten) = verdict.rewritten_body {
            self.host.replace_buffer(
                BufferType::HttpRequestBody,
                self.body_size,
                rewritten.as_bytes(),
            );
            // The request's headers are still held: they go on with the new length.
            self.host
                .set_header(true, "content-length", &rewritten.len().to_string());
        }
        match verdict.reply {
            None => true,
            Some(reply) => {
                self.replied_locally = true;
                self.host
                    .send_response(reply.status, &reply.headers, &reply.body);
                false
            }
        }
    }

    fn decide_on_body(&mut self) -> Action {
        let body = self
            .host
            .buffer(BufferType::HttpRequestBody, self.body_size);
        if self.decide(Some(&body)) {
            Action::Continue
        } else {
            Action::Pause
        }
    }

    /// Replaces whatever `x-acp-*` identity headers the client sent with the verified ones
    /// (when configured), so nothing downstream of the filter can be fooled by a client's.
    fn identity_headers(&self, sent: &Headers) {
        for name in [IDENTITY_TENANT_HEADER, IDENTITY_SUB_HEADER] {
            if sent.get(name).is_some() {
                self.host.remove_header(true, name);
            }
        }
        if let (true, Ok(identity)) = (self.config.forward_identity_headers, &self.auth) {
            self.host
                .set_header(true, IDENTITY_TENANT_HEADER, &self.tenant);
            self.host
                .set_header(true, IDENTITY_SUB_HEADER, &identity.sub);
        }
    }

    /// Holds the answer until complete, then scans, filters and replaces it as needed. An
    /// answer growing above `maxScanBytes` is refused whole (its every byte replaced) or, with
    /// `oversized: pass`, released unscanned.
    fn hold_answer(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.answer_size = body_size;
        if self.answer_refused.is_none() && body_size > self.config.scanning.max_scan_bytes {
            self.capture_complete = false;
            self.plan = Plan::default();
            if self.config.scanning.oversized == Oversized::Pass {
                return Action::Continue;
            }
            self.answer_refused = Some(OVERSIZED_ANSWER);
        }
        if let Some(reason) = self.answer_refused {
            // The error goes out in place of the first part, every later part empty: that is the
            // answer's length, set while its headers are still held.
            let replacement = if self.refusal_sent {
                String::new()
            } else {
                let error = self.refused_answer_error(reason);
                self.host
                    .set_header(false, "content-length", &error.len().to_string());
                error
            };
            self.refusal_sent = true;
            self.host.replace_buffer(
                BufferType::HttpResponseBody,
                body_size,
                replacement.as_bytes(),
            );
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        let body = self.host.buffer(BufferType::HttpResponseBody, body_size);
        let scopes = self
            .auth
            .as_ref()
            .map(|i| i.scopes.clone())
            .unwrap_or_default();
        let processed = answer::process(
            &self.config,
            &scopes,
            &self.plan,
            self.content_type.as_deref(),
            &body,
        );
        self.worker
            .borrow()
            .metrics
            .tools_hidden
            .add(processed.hidden_tools);
        self.output_scans = processed.scans;
        let length = match processed.body {
            Some(new) => {
                self.host
                    .replace_buffer(BufferType::HttpResponseBody, body_size, &new);
                // The answer's headers were held with it (`response_headers`).
                self.host
                    .set_header(false, "content-length", &new.len().to_string());
                new.len()
            }
            None => body.len(),
        };
        // As for an answer read in passing: beyond `maxResponseCaptureBytes` the outcome comes
        // from the HTTP status.
        if length > self.config.max_response_capture_bytes {
            self.capture_complete = false;
        } else {
            self.held_outcomes = Some(processed.outcomes);
        }
        Action::Continue
    }

    /// The JSON-RPC error sent in place of an answer that cannot be scanned, framed as the
    /// answer was (an SSE event or a JSON body), for the first forwarded call.
    fn refused_answer_error(&self, reason: &str) -> String {
        let id = self
            .audits
            .iter()
            .find(|a| a.refusal.is_none())
            .and_then(|a| a.rpc_id.clone());
        let message = if reason == ENCODED_ANSWER {
            "Blocked: the answer is compressed (Content-Encoding) and cannot be scanned".to_string()
        } else {
            format!(
                "Blocked: the answer is larger than {} bytes and cannot be scanned",
                self.config.scanning.max_scan_bytes
            )
        };
        let error = serde_json::json!({
            "jsonrpc": "2.0",
            "id": id,
            "error": {"code": request::codes::FORBIDDEN, "message": message, "data": {"reason": reason}},
        })
        .to_string();
        if self
            .content_type
            .as_deref()
            .is_some_and(|ct| ct.starts_with("text/event-stream"))
        {
            format!("event: message\ndata: {error}\n\n")
        } else {
            error
        }
    }

    /// Keeps answer bytes for deciding the calls' outcomes, up to `maxResponseCaptureBytes`;
    /// beyond it nothing is kept and the outcome comes from the HTTP status.
    fn capture(&mut self, bytes: Vec<u8>) {
        if self.captured.len() + bytes.len() > self.config.max_response_capture_bytes {
            self.capture_complete = false;
            self.captured = Vec::new();
        } else if self.captured.is_empty() {
            self.captured = bytes;
        } else {
            self.captured.extend_from_slice(&bytes);
        }
    }

    fn expects_outcomes(&self) -> bool {
        !self.replied_locally && self.audits.iter().any(|a| a.refusal.is_none())
    }
}

/// The stream's part of each Envoy callback.
impl<H: Host> Stream<H> {
    pub fn request_headers(&mut self, end_of_stream: bool) -> Action {
        self.started = self.host.now();
        let headers = self.host.request_headers();
        if let Some(resource) = &self.config.protected_resource {
            if resource.serves(
                headers.get(":method").unwrap_or_default(),
                headers.get(":path").unwrap_or_default(),
            ) {
                // Public by design (RFC 9728): how a client without a token finds the IdP.
                self.replied_locally = true;
                let headers = [
                    ("content-type", "application/json".to_string()),
                    ("cache-control", "max-age=300".to_string()),
                ];
                self.host.send_response(200, &headers, &resource.document);
                return Action::Pause;
            }
        }
        self.tenant = self
            .config
            .tenant_for_host(headers.get(":authority"))
            .to_string();
        self.auth = self.authenticate(headers.get("authorization"));
        self.mcp_headers = McpHeaders::from_pairs(headers.pairs());
        self.correlation = Correlation::from_pairs(
            headers.pairs(),
            self.mcp_headers.protocol_version.as_deref(),
        );
        self.content_encoding = headers.get("content-encoding").map(str::to_string);
        self.identity_headers(&headers);
        // The filter reads every answer it scans or records: ask for it uncompressed.
        if headers.get("accept-encoding").is_some() {
            self.host.remove_header(true, "accept-encoding");
        }
        if !end_of_stream {
            // Hold the headers until the body is complete, so a refused call never goes upstream.
            self.body_pending = true;
            return Action::Pause;
        }
        if self.decide(None) {
            Action::Continue
        } else {
            Action::Pause
        }
    }

    pub fn request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.body_size = body_size;
        if !end_of_stream {
            return Action::Pause;
        }
        self.decide_on_body()
    }

    /// Trailers end the request after its last body chunk: the body is complete now. Without
    /// this, the paused request would resume undecided.
    pub fn request_trailers(&mut self) -> Action {
        self.decide_on_body()
    }

    /// The answer's headers. An answer that is held (to be scanned, filtered or refused) holds
    /// its headers too, so that a change of its length is written into them when it is
    /// released; one that is not changed keeps its `content-length` untouched.
    pub fn response_headers(&mut self, end_of_stream: bool) -> Action {
        if self.replied_locally {
            return Action::Continue;
        }
        let headers = self.host.response_headers();
        self.status = headers
            .get(":status")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        self.content_type = headers.get("content-type").map(str::to_string);
        let encoded = request::content_encoding(headers.get("content-encoding")).is_some();
        if encoded && (!self.plan.is_empty() || self.expects_outcomes()) {
            // Asked for an uncompressed answer (`accept-encoding` removed), the upstream
            // compressed it anyway: unscannable, so replaced by an error, never passed on.
            self.answer_refused = Some(ENCODED_ANSWER);
            self.capture_complete = false;
            self.plan = Plan::default();
            self.host.remove_header(false, "content-encoding");
        }
        if !end_of_stream && self.holds_answer() {
            Action::Pause
        } else {
            Action::Continue
        }
    }

    pub fn response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.holds_answer() {
            return self.hold_answer(body_size, end_of_stream);
        }
        // Read what passes without holding it back: the outcome is decided at the end.
        if self.expects_outcomes() && self.capture_complete {
            let seen = self.host.buffer(BufferType::HttpResponseBody, body_size);
            self.capture(seen);
        }
        Action::Continue
    }

    /// Trailers end the answer after its last body chunk (an HTTP/2 upstream, or HTTP/1 with
    /// trailers enabled): a held answer is complete now. Without this, it would go on unscanned.
    pub fn response_trailers(&mut self) -> Action {
        if self.holds_answer() {
            return self.hold_answer(self.answer_size, true);
        }
        Action::Continue
    }

    /// Whether the answer is held until complete: to be scanned or filtered, or refused.
    fn holds_answer(&self) -> bool {
        self.answer_refused.is_some() || (!self.replied_locally && !self.plan.is_empty())
    }

    /// The stream ended: its calls' audit records go to the outbox.
    pub fn queue_records(&mut self) {
        if self.body_pending && self.status == 413 {
            self.audits = request::unread_body(&self.config, self.auth.as_deref().map_err(|f| *f));
        }
        if self.audits.is_empty() {
            return;
        }
        let now = self.host.now();
        // The downstream address as Envoy resolved it (after its XFF settings): one host call,
        // made only for a request that has records.
        let source = self.host.property(&["source", "address"]);
        self.correlation.set_source_address(source.as_deref());
        let latency_ms = now.saturating_sub(self.started).as_secs_f64() * 1000.0;
        let timestamp = i64::try_from(self.started.as_millis())
            .ok()
            .and_then(acp_record::format_timestamp)
            .unwrap_or_default();
        let outcomes = if let Some(outcomes) = self.held_outcomes.take() {
            outcomes
        } else if self.expects_outcomes() {
            response::outcomes(self.content_type.as_deref(), &self.captured)
        } else {
            BTreeMap::new()
        };
        let upstream = Upstream {
            status: self.status,
            outcomes: &outcomes,
            inspected: self.capture_complete,
            output_scans: &self.output_scans,
            refused: self.answer_refused,
        };
        let identity = self.auth.as_ref().ok().map(Rc::as_ref);
        let mut w = self.worker.borrow_mut();
        let admitted = self
            .reservation
            .take()
            .inspect(|r| w.outbox.release(*r))
            .is_some();
        let max_input = self.config.audit.max_input_bytes;
        for call in std::mem::take(&mut self.audits) {
            // The id's time is the clock read above: no second read of the clock.
            let id_time =
                uuid::Timestamp::from_unix(&w.record_ids, now.as_secs(), now.subsec_nanos());
            let ctx = record::Context {
                // Encoded directly: `to_string` goes through the formatting machinery.
                id: uuid::Uuid::new_v7(id_time)
                    .hyphenated()
                    .encode_lower(&mut uuid::Uuid::encode_buffer())
                    .to_owned(),
                timestamp: timestamp.clone(),
                latency_ms,
                tenant: &self.tenant,
                identity,
                correlation: &self.correlation,
            };
            let record = record::build(call, ctx, &upstream);
            let m = &w.metrics;
            match (record.event, record.result) {
                (Event::ToolCall, Outcome::Error) => {
                    m.calls_allowed.inc();
                    m.calls_error.inc();
                }
                (Event::ToolCall, _) => m.calls_allowed.inc(),
                (Event::ToolDenied, Outcome::Blocked) => m.calls_blocked.inc(),
                (Event::ToolDenied, Outcome::RateLimited) => m.calls_rate_limited.inc(),
                (Event::ToolDenied, _) => m.calls_denied.inc(),
                (Event::AuthFailed, _) => m.auth_failed.inc(),
            }
            let id = record.id.clone();
            let w = &mut *w;
            match input::queue(&mut w.outbox, record, admitted, max_input) {
                Ok(Queued::Kept) => w.metrics.audit_queued.inc(),
                Ok(Queued::Shed) => {
                    w.metrics.audit_queued.inc();
                    w.metrics.audit_inputs_shed.inc();
                }
                Ok(Queued::Dropped) => {
                    w.metrics.audit_dropped.inc();
                    log::error!(
                        "audit buffer full ({} records); dropped record {id}",
                        w.outbox.len()
                    );
                }
                Err(e) => {
                    w.metrics.audit_dropped.inc();
                    log::error!("audit record {id} could not be serialized: {e}");
                }
            }
        }
    }
}

impl<H: Host> Context for Stream<H> {}

impl<H: Host> HttpContext for Stream<H> {
    fn on_http_request_headers(&mut self, _headers: usize, end_of_stream: bool) -> Action {
        self.request_headers(end_of_stream)
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.request_body(body_size, end_of_stream)
    }

    fn on_http_request_trailers(&mut self, _trailers: usize) -> Action {
        self.request_trailers()
    }

    fn on_http_response_headers(&mut self, _headers: usize, end_of_stream: bool) -> Action {
        self.response_headers(end_of_stream)
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.response_body(body_size, end_of_stream)
    }

    fn on_http_response_trailers(&mut self, _trailers: usize) -> Action {
        self.response_trailers()
    }

    fn on_log(&mut self) {
        self.queue_records()
    }
}

impl<H> Drop for Stream<H> {
    /// Room held for a request that ended without `on_log` goes back to the buffer.
    fn drop(&mut self) {
        if let (Some(r), Ok(mut w)) = (self.reservation.take(), self.worker.try_borrow_mut()) {
            w.outbox.release(r);
        }
    }
}
