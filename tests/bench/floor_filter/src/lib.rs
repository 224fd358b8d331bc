//! The floor under any proxy-wasm filter in the benchmark (`make bench`): what Envoy's V8 costs
//! a filter that does no work of its own. Its plugin configuration picks the mode:
//! - `passthrough`: every callback returns at once (the cost of having a Wasm filter at all);
//! - `hold`: what ACP must do at the least: hold the request until its body is complete, read
//!   the body, then read the answer's headers and whole body, deciding nothing.

//!
//! Host calls go through `hostcalls` (which return errors) rather than the SDK's trait methods
//! (which unwrap them), as in the ACP filter.

use proxy_wasm::hostcalls::{get_buffer, get_map_bytes};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Floor { hold: false }) });
}}

struct Floor {
    hold: bool,
}

impl Context for Floor {}

impl RootContext for Floor {
    fn on_configure(&mut self, size: usize) -> bool {
        let configuration = get_buffer(BufferType::PluginConfiguration, 0, size);
        self.hold = matches!(configuration, Ok(Some(mode)) if mode == b"hold");
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Floor { hold: self.hold }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

impl HttpContext for Floor {
    fn on_http_request_headers(&mut self, _headers: usize, end_of_stream: bool) -> Action {
        if self.hold && !end_of_stream {
            Action::Pause
        } else {
            Action::Continue
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.hold_and_read(BufferType::HttpRequestBody, body_size, end_of_stream)
    }

    fn on_http_response_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        if self.hold {
            let _ = get_map_bytes(MapType::HttpResponseHeaders);
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.hold_and_read(BufferType::HttpResponseBody, body_size, end_of_stream)
    }
}

impl Floor {
    /// In `hold` mode: holds the body until it is complete, then reads it whole.
    fn hold_and_read(&self, body: BufferType, size: usize, end_of_stream: bool) -> Action {
        if !self.hold {
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        let _ = get_buffer(body, 0, size);
        Action::Continue
    }
}
