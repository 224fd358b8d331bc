//! The proxy-wasm shell, the only code that talks to Envoy: the root context (`plugin`) and the
//! HTTP context (`stream`) move bytes between the host and the decisions.

#[cfg(test)]
mod fake_host;
pub mod headers;
pub mod host;
pub mod metrics;
pub mod plugin;
pub mod stream;
#[cfg(test)]
mod tests;
pub mod worker;
