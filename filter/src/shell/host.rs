//! The shell's only way to Envoy: the [`Host`] trait. [`Envoy`] implements it over
//! `proxy_wasm::hostcalls`, panic-free: the SDK's trait methods unwrap host errors, and a panic
//! kills the worker's VM (every later request then fails, or with fail-open skips the filter);
//! these wrappers log the error and carry on instead. Tests implement it with a recording fake.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType, MetricType, Status};

use super::headers::Headers;
use crate::auth::keys::jwks::millis;

/// What the shell asks of Envoy. Each method is one host call, as the shell made it before
/// the seam; the provided methods only combine them.
pub trait Host {
    /// Host wall-clock time since the Unix epoch.
    fn now(&self) -> Duration;
    /// Every header of `map`, in order (duplicates kept), in one host call.
    fn headers(&self, map: MapType) -> Headers;
    /// One header value of `map` as text.
    fn header(&self, map: MapType, name: &str) -> Option<String>;
    /// A property of the stream (e.g. `["metadata"]`, serialized as Envoy does); `None` if unset.
    fn property(&self, path: &[&str]) -> Option<Vec<u8>>;
    /// The first `size` bytes of a buffer.
    fn buffer(&self, kind: BufferType, size: usize) -> Vec<u8>;
    /// Replaces the first `size` bytes of a buffer with `value`.
    fn replace_buffer(&self, kind: BufferType, size: usize, value: &[u8]);
    /// Sets a request (`request: true`) or response header, replacing any value it had.
    fn set_header(&self, request: bool, name: &str, value: &str);
    /// Removes a request (`request: true`) or response header.
    fn remove_header(&self, request: bool, name: &str);
    /// Shared-data `key`: its value and compare-and-swap token.
    fn shared_data(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>);
    /// Sets shared-data `key` if its CAS token is still `cas`.
    fn set_shared_data(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), Status>;
    /// Answers the request locally.
    fn send_response(&self, status: u32, headers: &[(&str, String)], body: &str);
    /// Starts an HTTP call to `cluster`; its token, or `None` when it could not start.
    fn dispatch(
        &self,
        cluster: &str,
        headers: Vec<(&str, &str)>,
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Option<u32>;
    /// Tells Envoy that the root context, which answered `on_done` with `false`, has finished.
    fn done(&self);
    fn set_tick_period(&self, period: Duration);
    fn define_metric(&self, kind: MetricType, name: &str) -> Option<u32>;
    fn increment_metric(&self, id: u32, delta: i64);

    fn now_millis(&self) -> u64 {
        millis(self.now())
    }

    fn request_headers(&self) -> Headers {
        self.headers(MapType::HttpRequestHeaders)
    }

    fn response_headers(&self) -> Headers {
        self.headers(MapType::HttpResponseHeaders)
    }

    fn call_response_header(&self, name: &str) -> Option<String> {
        self.header(MapType::HttpCallResponseHeaders, name)
    }

    /// Updates shared-data `key` with compare-and-swap: `update` maps the current value to the
    /// new one and a result, retried on concurrent writes. `None` when the host refused or
    /// contention persisted (logged).
    fn update_shared<R>(
        &self,
        key: &str,
        update: impl Fn(Option<&[u8]>) -> (Vec<u8>, R),
    ) -> Option<R> {
        for _ in 0..16 {
            let (current, cas) = self.shared_data(key);
            let (next, result) = update(current.as_deref());
            match self.set_shared_data(key, &next, cas) {
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
}

/// The Envoy host, through `proxy_wasm::hostcalls`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Envoy;

impl Host for Envoy {
    fn now(&self) -> Duration {
        hostcalls::get_current_time()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).ok())
            .unwrap_or_default()
    }

    /// Read as one buffer ([`Headers::from_map_bytes`]): the SDK's readers copy each name and
    /// value into an allocation of its own and panic on text that is not UTF-8.
    fn headers(&self, map: MapType) -> Headers {
        let mut data: *mut u8 = std::ptr::null_mut();
        let mut size: usize = 0;
        // SAFETY: the host writes a buffer it allocated through this module's
        // `proxy_on_memory_allocate` (the global allocator) and hands it over.
        let status = unsafe { proxy_get_header_map_pairs(map, &mut data, &mut size) };
        match status {
            Status::Ok if data.is_null() => Headers::default(),
            // SAFETY: `data` is `size` bytes from the global allocator, now owned here.
            Status::Ok => Headers::from_map_bytes(unsafe { Vec::from_raw_parts(data, size, size) }),
            e => {
                log::warn!("reading the {map:?} failed: {e:?}");
                Headers::default()
            }
        }
    }

    /// The SDK's `get_map_value` would panic on a value that is not UTF-8.
    fn header(&self, map: MapType, name: &str) -> Option<String> {
        hostcalls::get_map_value_bytes(map, name)
            .ok()
            .flatten()
            .map(lossy)
    }

    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        match hostcalls::get_property(path.to_vec()) {
            Ok(value) => value,
            Err(status) => {
                log::warn!("reading property {path:?} failed: {status:?}");
                None
            }
        }
    }

    fn buffer(&self, kind: BufferType, size: usize) -> Vec<u8> {
        match hostcalls::get_buffer(kind, 0, size) {
            Ok(bytes) => bytes.unwrap_or_default(),
            Err(status) => {
                log::warn!("reading {kind:?} failed: {status:?}");
                Vec::new()
            }
        }
    }

    fn replace_buffer(&self, kind: BufferType, size: usize, value: &[u8]) {
        if let Err(e) = hostcalls::set_buffer(kind, 0, size, value) {
            log::error!("replacing {kind:?} failed: {e:?}");
        }
    }

    fn set_header(&self, request: bool, name: &str, value: &str) {
        if let Err(e) = hostcalls::set_map_value(header_map(request), name, Some(value)) {
            log::warn!("setting header {name} failed: {e:?}");
        }
    }

    fn remove_header(&self, request: bool, name: &str) {
        if let Err(e) = hostcalls::set_map_value(header_map(request), name, None) {
            log::warn!("removing header {name} failed: {e:?}");
        }
    }

    fn shared_data(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        hostcalls::get_shared_data(key).unwrap_or((None, None))
    }

    fn set_shared_data(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), Status> {
        hostcalls::set_shared_data(key, Some(value), cas)
    }

    fn send_response(&self, status: u32, headers: &[(&str, String)], body: &str) {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        if let Err(e) = hostcalls::send_http_response(status, headers, Some(body.as_bytes())) {
            log::error!("sending the local {status} reply failed: {e:?}");
        }
    }

    fn dispatch(
        &self,
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

    fn done(&self) {
        if let Err(e) = hostcalls::done() {
            log::error!("reporting the plugin done failed: {e:?}");
        }
    }

    fn set_tick_period(&self, period: Duration) {
        if let Err(e) = hostcalls::set_tick_period(period) {
            log::error!("setting the tick period failed: {e:?}");
        }
    }

    fn define_metric(&self, kind: MetricType, name: &str) -> Option<u32> {
        hostcalls::define_metric(kind, name).ok()
    }

    fn increment_metric(&self, id: u32, delta: i64) {
        let _ = hostcalls::increment_metric(id, delta);
    }
}

#[link(wasm_import_module = "env")]
extern "C" {
    /// The proxy-wasm ABI's header map read, which the SDK wraps in its copying readers.
    fn proxy_get_header_map_pairs(
        map_type: MapType,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> Status;
}

fn lossy(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// The request's (`request: true`) or the response's header map.
fn header_map(request: bool) -> MapType {
    if request {
        MapType::HttpRequestHeaders
    } else {
        MapType::HttpResponseHeaders
    }
}
