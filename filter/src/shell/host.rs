//! Panic-free access to the Envoy host. The SDK's trait methods unwrap host errors, and a panic
//! kills the worker's VM (every later request then fails, or with fail-open skips the filter);
//! these wrappers log the error and carry on instead.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType, MetricType, Status};

use super::headers::Headers;

/// Host wall-clock time since the Unix epoch.
pub fn now() -> Duration {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).ok())
        .unwrap_or_default()
}

pub fn now_millis() -> u64 {
    crate::auth::keys::jwks::millis(now())
}

/// Every request header, in order (duplicates kept).
pub fn request_headers() -> Headers {
    headers(MapType::HttpRequestHeaders)
}

pub fn response_headers() -> Headers {
    headers(MapType::HttpResponseHeaders)
}

/// A header map in one host call. Read as bytes: the SDK's `get_map` unwraps the UTF-8
/// conversion, so one non-UTF-8 header value would panic the VM; here such bytes become
/// U+FFFD, which no token, method or tool name contains.
fn headers(map: MapType) -> Headers {
    match hostcalls::get_map_bytes(map) {
        Ok(pairs) => Headers::new(
            pairs
                .into_iter()
                .map(|(name, value)| (name, lossy(value)))
                .collect(),
        ),
        Err(e) => {
            log::warn!("reading the {map:?} failed: {e:?}");
            Headers::default()
        }
    }
}

pub fn call_response_header(name: &str) -> Option<String> {
    header(MapType::HttpCallResponseHeaders, name)
}

/// A header value as text (the SDK's `get_map_value` would panic on a value that is not UTF-8).
fn header(map: MapType, name: &str) -> Option<String> {
    hostcalls::get_map_value_bytes(map, name)
        .ok()
        .flatten()
        .map(lossy)
}

fn lossy(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// A property of the stream (e.g. `["metadata"]`, serialized as Envoy does); `None` if unset.
pub fn property(path: &[&str]) -> Option<Vec<u8>> {
    match hostcalls::get_property(path.to_vec()) {
        Ok(value) => value,
        Err(status) => {
            log::warn!("reading property {path:?} failed: {status:?}");
            None
        }
    }
}

pub fn buffer(kind: BufferType, size: usize) -> Vec<u8> {
    match hostcalls::get_buffer(kind, 0, size) {
        Ok(bytes) => bytes.unwrap_or_default(),
        Err(status) => {
            log::warn!("reading {kind:?} failed: {status:?}");
            Vec::new()
        }
    }
}

pub fn replace_buffer(kind: BufferType, size: usize, value: &[u8]) {
    if let Err(e) = hostcalls::set_buffer(kind, 0, size, value) {
        log::error!("replacing {kind:?} failed: {e:?}");
    }
}

pub fn set_request_header(name: &str, value: &str) {
    if let Err(e) = hostcalls::set_map_value(MapType::HttpRequestHeaders, name, Some(value)) {
        log::warn!("setting header {name} failed: {e:?}");
    }
}

/// Removes a request (`request: true`) or response header.
pub fn remove_header(request: bool, name: &str) {
    let map = if request {
        MapType::HttpRequestHeaders
    } else {
        MapType::HttpResponseHeaders
    };
    if let Err(e) = hostcalls::set_map_value(map, name, None) {
        log::warn!("removing header {name} failed: {e:?}");
    }
}

/// Updates shared-data `key` with compare-and-swap: `update` maps the current value to the new
/// one and a result, retried on concurrent writes. `None` when the host refused or contention
/// persisted (logged).
pub fn update_shared<R>(key: &str, update: impl Fn(Option<&[u8]>) -> (Vec<u8>, R)) -> Option<R> {
    for _ in 0..16 {
        let (current, cas) = hostcalls::get_shared_data(key).unwrap_or((None, None));
        let (next, result) = update(current.as_deref());
        match hostcalls::set_shared_data(key, Some(&next), cas) {
            Ok(()) => return Some(result),
            Err(Status::CasMismatch) => continue,
            Err(e) => {
                log::error!("shared data {key:?} not updated: {e:?}");
                return None;
            }
        }
    }
    log::error!("shared data {key:?} not updated: too much contention");
    None
}

pub fn send_response(status: u32, headers: &[(&str, String)], body: &str) {
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    if let Err(e) = hostcalls::send_http_response(status, headers, Some(body.as_bytes())) {
        log::error!("sending the local {status} reply failed: {e:?}");
    }
}

pub fn dispatch(
    cluster: &str,
    headers: Vec<(&str, &str)>,
    body: Option<&[u8]>,
    timeout: Duration,
) -> Option<u32> {
    match hostcalls::dispatch_http_call(cluster, headers, body, vec![], timeout) {
        Ok(token) => Some(token),
        Err(status) => {
            log::warn!("HTTP call to cluster {cluster} could not start: {status:?}");
            None
        }
    }
}

/// Tells Envoy that the root context, which answered `on_done` with `false`, has finished.
pub fn done() {
    if let Err(e) = hostcalls::done() {
        log::error!("reporting the plugin done failed: {e:?}");
    }
}

pub fn set_tick_period(period: Duration) {
    if let Err(e) = hostcalls::set_tick_period(period) {
        log::error!("setting the tick period failed: {e:?}");
    }
}

/// A counter in Envoy's stats: `wasmcustom.acp.x` at `/stats`, `acp_x` at `/stats/prometheus`.
#[derive(Debug, Clone, Copy)]
pub struct Counter(Option<u32>);

impl Counter {
    pub fn define(name: &str) -> Counter {
        Counter(hostcalls::define_metric(MetricType::Counter, name).ok())
    }

    pub fn add(self, n: usize) {
        if let (Some(id), Ok(n)) = (self.0, i64::try_from(n)) {
            if n > 0 {
                let _ = hostcalls::increment_metric(id, n);
            }
        }
    }

    pub fn inc(self) {
        self.add(1);
    }
}

/// A gauge in Envoy's stats that every worker moves by its own changes, so that it shows the
/// sum over the workers (`wasmcustom.acp.x` at `/stats`, `acp_x` at `/stats/prometheus`).
#[derive(Debug, Clone, Copy)]
pub struct Gauge(Option<u32>);

impl Gauge {
    pub fn define(name: &str) -> Gauge {
        Gauge(hostcalls::define_metric(MetricType::Gauge, name).ok())
    }

    /// Moves the gauge from `from` to `to` (this worker's part of it).
    pub fn shift(self, from: usize, to: usize) {
        let delta = i64::try_from(to)
            .unwrap_or(i64::MAX)
            .saturating_sub(i64::try_from(from).unwrap_or(i64::MAX));
        if let (Some(id), true) = (self.0, delta != 0) {
            let _ = hostcalls::increment_metric(id, delta);
        }
    }
}
