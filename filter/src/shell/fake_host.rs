//! A [`Host`] for native tests: it answers from what the test set up and records what the
//! shell asked of it.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::types::{BufferType, MapType, MetricType, Status};

use super::headers::Headers;
use super::host::Host;

/// A clone shares the same state, so a test keeps one while the plugin and streams hold others.
#[derive(Clone, Default)]
pub struct FakeHost(Rc<RefCell<State>>);

#[derive(Default)]
pub struct State {
    pub now: Duration,
    pub maps: HashMap<MapType, Vec<(String, String)>>,
    pub buffers: HashMap<BufferType, Vec<u8>>,
    pub metadata: Option<Vec<u8>>,
    /// The `source.address` property.
    pub source_address: Option<Vec<u8>>,
    shared: HashMap<String, (Vec<u8>, u32)>,
    /// Local replies sent, in order.
    pub replies: Vec<Reply>,
    /// HTTP calls dispatched, in order; a call's token is its index plus one.
    pub calls: Vec<Call>,
    /// Buffers replaced, in order: which, and with what.
    pub replaced: Vec<(BufferType, Vec<u8>)>,
    /// Headers removed, in order: whether from the request, and the name.
    pub removed: Vec<(bool, String)>,
    /// Headers set, in order: whether on the request, the name and the value.
    pub set: Vec<(bool, String, String)>,
    metric_names: Vec<String>,
    metric_values: HashMap<u32, i64>,
    pub tick_period: Option<Duration>,
    pub done: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u32,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub cluster: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    pub timeout: Duration,
}

impl Call {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(self.body.as_deref().unwrap_or_default()).into_owned()
    }
}

fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

impl FakeHost {
    pub fn state(&self) -> std::cell::RefMut<'_, State> {
        self.0.borrow_mut()
    }

    pub fn set_map(&self, map: MapType, pairs: &[(&str, &str)]) {
        self.state().maps.insert(map, owned(pairs));
    }

    pub fn set_buffer(&self, kind: BufferType, bytes: &[u8]) {
        self.state().buffers.insert(kind, bytes.to_vec());
    }

    pub fn advance(&self, by: Duration) {
        self.state().now += by;
    }

    /// Sets up the answer to an HTTP call: its status and body; returns the body's size.
    pub fn call_answer(&self, status: u32, body: &str) -> usize {
        self.set_map(
            MapType::HttpCallResponseHeaders,
            &[(":status", &status.to_string())],
        );
        self.set_buffer(BufferType::HttpCallResponseBody, body.as_bytes());
        body.len()
    }

    /// The token and the call with `:path` `path`, the last one dispatched.
    pub fn last_call_to(&self, path: &str) -> Option<(u32, Call)> {
        let state = self.0.borrow();
        let (i, call) = state
            .calls
            .iter()
            .enumerate()
            .rfind(|(_, c)| c.header(":path") == Some(path))?;
        Some((u32::try_from(i).ok()? + 1, call.clone()))
    }

    pub fn calls_to(&self, path: &str) -> usize {
        let state = self.0.borrow();
        state
            .calls
            .iter()
            .filter(|c| c.header(":path") == Some(path))
            .count()
    }

    /// The value of metric `name` (summed over its increments).
    pub fn metric(&self, name: &str) -> i64 {
        let state = self.0.borrow();
        state
            .metric_names
            .iter()
            .position(|n| n == name)
            .and_then(|i| state.metric_values.get(&u32::try_from(i).ok()?))
            .copied()
            .unwrap_or(0)
    }
}

impl Host for FakeHost {
    fn now(&self) -> Duration {
        self.0.borrow().now
    }

    fn headers(&self, map: MapType) -> Headers {
        let pairs = self.0.borrow().maps.get(&map).cloned().unwrap_or_default();
        let pairs: Vec<_> = pairs
            .iter()
            .map(|(n, v)| (n.as_bytes(), v.as_bytes()))
            .collect();
        Headers::from_map_bytes(super::headers::map_bytes(&pairs))
    }

    fn header(&self, map: MapType, name: &str) -> Option<String> {
        self.headers(map).get(name).map(str::to_string)
    }

    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        match path {
            ["metadata"] => self.0.borrow().metadata.clone(),
            ["source", "address"] => self.0.borrow().source_address.clone(),
            _ => None,
        }
    }

    fn buffer(&self, kind: BufferType, size: usize) -> Vec<u8> {
        let state = self.0.borrow();
        let bytes = state.buffers.get(&kind).map_or(&[][..], Vec::as_slice);
        bytes[..size.min(bytes.len())].to_vec()
    }

    fn replace_buffer(&self, kind: BufferType, size: usize, value: &[u8]) {
        let mut state = self.state();
        let buffer = state.buffers.entry(kind).or_default();
        let rest = buffer.split_off(size.min(buffer.len()));
        *buffer = [value, &rest].concat();
        state.replaced.push((kind, value.to_vec()));
    }

    fn set_header(&self, request: bool, name: &str, value: &str) {
        self.state()
            .set
            .push((request, name.to_string(), value.to_string()));
    }

    fn remove_header(&self, request: bool, name: &str) {
        self.state().removed.push((request, name.to_string()));
    }

    fn shared_data(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        match self.0.borrow().shared.get(key) {
            Some((value, cas)) => (Some(value.clone()), Some(*cas)),
            None => (None, None),
        }
    }

    fn set_shared_data(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), Status> {
        let mut state = self.state();
        let current = state.shared.get(key).map(|(_, c)| *c);
        if cas.is_some() && cas != current {
            return Err(Status::CasMismatch);
        }
        let next = current.unwrap_or(0) + 1;
        state.shared.insert(key.to_string(), (value.to_vec(), next));
        Ok(())
    }

    fn send_response(&self, status: u32, headers: &[(&str, String)], body: &str) {
        self.state().replies.push(Reply {
            status,
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.clone()))
                .collect(),
            body: body.to_string(),
        });
    }

    fn dispatch(
        &self,
        cluster: &str,
        headers: Vec<(&str, &str)>,
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Option<u32> {
        let mut state = self.state();
        state.calls.push(Call {
            cluster: cluster.to_string(),
            headers: owned(&headers),
            body: body.map(<[u8]>::to_vec),
            timeout,
        });
        u32::try_from(state.calls.len()).ok()
    }

    fn done(&self) {
        self.state().done = true;
    }

    fn set_tick_period(&self, period: Duration) {
        self.state().tick_period = Some(period);
    }

    fn define_metric(&self, _kind: MetricType, name: &str) -> Option<u32> {
        let mut state = self.state();
        state.metric_names.push(name.to_string());
        u32::try_from(state.metric_names.len() - 1).ok()
    }

    fn increment_metric(&self, id: u32, delta: i64) {
        *self.state().metric_values.entry(id).or_default() += delta;
    }
}
