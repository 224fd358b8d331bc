//! The floor under any proxy-wasm filter in the benchmark (`make bench`): what Envoy's V8 costs
//! a filter that does no work of its own. Its plugin configuration picks the mode:
//! - `passthrough`: every callback returns at once (the cost of having a Wasm filter at all);
//! - `hold`: what ACP must do at the least: hold the request until its body is complete, read
//!   the body, then read the answer's headers and whole body, deciding nothing;
//! - `calls`: `hold`, plus the host calls ACP makes for a call, with no parsing, scanning or
//!   deciding: the request's header map and start time, the end time and the source address
//!   for the record; like ACP it holds the answer's headers with its body;
//! - `audit`: `calls`, plus one record per call, made from a template by writing in a fresh
//!   id, sent to the collector in batches as ACP sends them with its default settings (one
//!   batch in flight; on a 20 ms tick once 10 records wait, fewer 200 ms after the last batch;
//!   100 at once after an acknowledged batch). Its configuration is three lines: `audit`, the
//!   collector's ingest token, the record's JSON with `{ID}` where the id goes.
//!
//! Host calls go through `hostcalls` (which return errors) rather than the SDK's trait methods
//! (which unwrap them), as in the ACP filter.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use proxy_wasm::hostcalls::{
    dispatch_http_call, get_buffer, get_current_time, get_map_bytes, get_property, set_tick_period,
};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(Floor { mode: Mode::Passthrough, audit: None, in_flight: false })
    });
}}

const BATCH_SIZE: usize = 100;
const EARLY_BATCH_SIZE: usize = 10;
const TICK: Duration = Duration::from_millis(20);
const FLUSH_INTERVAL: Duration = Duration::from_millis(200);
const COLLECTOR_CLUSTER: &str = "acp_collector";
const INGEST_PATH: &str = "/v1/records";

/// Each mode does what the one before it does, and more.
#[derive(Clone, Copy, PartialEq, PartialOrd)]
enum Mode {
    Passthrough,
    Hold,
    Calls,
    Audit,
}

/// What `audit` mode shares between the root context and the streams of one VM.
struct Audit {
    authorization: String,
    /// The record's JSON before and after its id.
    template: (String, String),
    queue: Vec<String>,
    sequence: u64,
    last_sent_at: Option<SystemTime>,
}

struct Floor {
    mode: Mode,
    audit: Option<Rc<RefCell<Audit>>>,
    /// Root context: a batch is on its way to the collector.
    in_flight: bool,
}

impl Context for Floor {
    fn on_http_call_response(&mut self, _: u32, _: usize, _: usize, _: usize) {
        self.in_flight = false;
        self.flush(BATCH_SIZE);
    }
}

impl RootContext for Floor {
    fn on_configure(&mut self, size: usize) -> bool {
        let configuration = match get_buffer(BufferType::PluginConfiguration, 0, size) {
            Ok(Some(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
            _ => String::new(),
        };
        let mut lines = configuration.splitn(3, '\n');
        self.mode = match lines.next() {
            Some("hold") => Mode::Hold,
            Some("calls") => Mode::Calls,
            Some("audit") => Mode::Audit,
            _ => Mode::Passthrough,
        };
        if self.mode == Mode::Audit {
            let (Some(token), Some(record)) = (lines.next(), lines.next()) else {
                return false;
            };
            let Some((before, after)) = record.split_once("{ID}") else {
                return false;
            };
            self.audit = Some(Rc::new(RefCell::new(Audit {
                authorization: format!("Bearer {token}"),
                template: (before.to_string(), after.to_string()),
                queue: Vec::new(),
                sequence: 0,
                last_sent_at: None,
            })));
            let _ = set_tick_period(TICK);
        }
        true
    }

    fn on_tick(&mut self) {
        let waited = |audit: &Audit| {
            let since = audit.last_sent_at?;
            get_current_time().ok()?.duration_since(since).ok()
        };
        let due = match &self.audit {
            Some(audit) if waited(&audit.borrow()).is_some_and(|w| w < FLUSH_INTERVAL) => {
                EARLY_BATCH_SIZE
            }
            _ => 1,
        };
        self.flush(due);
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Floor {
            mode: self.mode,
            audit: self.audit.clone(),
            in_flight: false,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

impl HttpContext for Floor {
    fn on_http_request_headers(&mut self, _headers: usize, end_of_stream: bool) -> Action {
        if self.mode >= Mode::Calls {
            let _ = get_current_time();
            let _ = get_map_bytes(MapType::HttpRequestHeaders);
        }
        if self.mode != Mode::Passthrough && !end_of_stream {
            Action::Pause
        } else {
            Action::Continue
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.hold_and_read(BufferType::HttpRequestBody, body_size, end_of_stream)
    }

    fn on_http_response_headers(&mut self, _headers: usize, end_of_stream: bool) -> Action {
        if self.mode != Mode::Passthrough {
            let _ = get_map_bytes(MapType::HttpResponseHeaders);
        }
        if self.mode >= Mode::Calls && !end_of_stream {
            Action::Pause
        } else {
            Action::Continue
        }
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.hold_and_read(BufferType::HttpResponseBody, body_size, end_of_stream)
    }

    fn on_log(&mut self) {
        if self.mode < Mode::Calls {
            return;
        }
        let nanos = get_current_time()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        let _ = get_property(vec!["source", "address"]);
        let Some(audit) = &self.audit else { return };
        let mut audit = audit.borrow_mut();
        audit.sequence += 1;
        let id = format!(
            "{:08x}-{:04x}-7000-8000-{:012x}",
            (nanos >> 32) as u32,
            (nanos >> 16) as u16,
            audit.sequence
        );
        let (before, after) = &audit.template;
        let mut record = String::with_capacity(before.len() + id.len() + after.len());
        record.push_str(before);
        record.push_str(&id);
        record.push_str(after);
        audit.queue.push(record);
    }
}

impl Floor {
    /// Unless in `passthrough` mode: holds the body until it is complete, then reads it whole.
    fn hold_and_read(&self, body: BufferType, size: usize, end_of_stream: bool) -> Action {
        if self.mode == Mode::Passthrough {
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        let _ = get_buffer(body, 0, size);
        Action::Continue
    }

    /// Root context: sends up to a batch of waiting records when at least `min_records` wait
    /// and none are in flight (records a failed batch held are not retried: this is a floor).
    fn flush(&mut self, min_records: usize) {
        let Some(audit) = &self.audit else { return };
        let mut audit = audit.borrow_mut();
        if self.in_flight || audit.queue.is_empty() || audit.queue.len() < min_records {
            return;
        }
        let n = audit.queue.len().min(BATCH_SIZE);
        let records: Vec<String> = audit.queue.drain(..n).collect();
        let body = format!("{{\"records\":[{}]}}", records.join(","));
        audit.last_sent_at = get_current_time().ok();
        let headers = vec![
            (":method", "POST"),
            (":path", INGEST_PATH),
            (":authority", COLLECTOR_CLUSTER),
            ("content-type", "application/json"),
            ("authorization", audit.authorization.as_str()),
        ];
        self.in_flight = dispatch_http_call(
            COLLECTOR_CLUSTER,
            headers,
            Some(body.as_bytes()),
            vec![],
            Duration::from_secs(5),
        )
        .is_ok();
    }
}
