//! The proxy-wasm shell, the only code that talks to Envoy: the root context (`plugin`) and the
//! HTTP context (`stream`) move bytes between the host and the decisions.

pub mod headers;
pub mod host;
pub mod metrics;
pub mod plugin;
pub mod stream;
pub mod worker;
